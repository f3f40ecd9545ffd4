//! The outbox worker. A call is queued in the same commit as the change that causes it
//! (`service::outbox`), so a crash loses nothing; the worker delivers queued calls, signed, retrying with
//! exponential back-off while the peer is down, and gives up only after
//! `give_up_secs` (never for `update_homeserver`: see [`calls::give_up_secs`]). Each call carries its outbox id, on which receivers deduplicate.
//! Two kinds of item are no calls to a peer (see [`calls::push`]): `push_fanout`, a local
//! job that expands a message's mentions into notifications, and `push_delivery`, an
//! encrypted push message POSTed to a subscription's endpoint (through the same SSRF guard).

use super::{calls, outbound, FederationError};
use crate::federation::Federation;
use crate::model::{Id, OutboxItem};
use crate::service::outbox::pending;
use crate::storage::tables::OUTBOX;
use crate::system::now_ms;
use std::sync::Arc;
use std::time::Duration;

/// Most calls in flight at once.
const PARALLEL: usize = 8;

/// Delay before attempt `attempts + 1`: 1 s, 2 s, 4 s … up to `max_secs`.
pub fn backoff(attempts: u32, max_secs: u64) -> Duration {
    let secs = 1u64
        .checked_shl(attempts.min(20))
        .unwrap_or(u64::MAX)
        .min(max_secs.max(1));
    Duration::from_secs(secs)
}

/// Signs and sends one call.
async fn send(fed: &Federation, item: &OutboxItem) -> Result<outbound::Answer, FederationError> {
    if item.call == calls::push::DELIVERY {
        // Not a server call: an encrypted push message to a subscription's endpoint.
        return calls::push::deliver(fed, item).await;
    }
    let config = &fed.services.config.federation;
    let path = format!("/federation/v1/{}", item.call);
    super::send_signed(
        fed,
        &item.target,
        &path,
        item.body.clone().into_bytes(),
        Duration::from_secs(config.request_timeout_secs),
    )
    .await
}

/// Attempts one item and records the outcome.
async fn attempt(fed: &Federation, item: OutboxItem) {
    if item.call == calls::push::FANOUT {
        // A local job: expands into notifications and deliveries.
        return calls::push::fan_out(fed, item).await;
    }
    let config = fed.services.config.federation.clone();
    let outcome = send(fed, &item).await;
    let key = Id(item.id);
    let result = match outcome {
        Ok(answer) if calls::is_final_for(&item.call, answer.status) => {
            let item = item.clone();
            fed.services
                .store
                .write(move |tx| {
                    tx.delete(OUTBOX, key)?;
                    calls::on_answer(tx, &item, answer.status, &answer.body)
                })
                .await
        }
        failure => {
            let message = match failure {
                Ok(answer) => format!("peer answered {}", answer.status),
                Err(e) => e.to_string(),
            };
            let mut item = item;
            item.attempts += 1;
            item.last_error = message;
            let give_up = now_ms().saturating_sub(item.created_ms)
                > calls::give_up_secs(&item.call, config.give_up_secs).saturating_mul(1000);
            item.next_attempt_ms =
                now_ms() + backoff(item.attempts, config.max_retry_secs).as_millis() as u64;
            fed.services
                .store
                .write(move |tx| {
                    if give_up {
                        log::warn!(
                            "giving up {} to {} after {} attempts: {}",
                            item.call,
                            item.target,
                            item.attempts,
                            item.last_error
                        );
                        tx.delete(OUTBOX, key)?;
                    } else {
                        tx.put(OUTBOX, key, &item)?;
                    }
                    Ok(())
                })
                .await
        }
    };
    if let Err(e) = result {
        log::error!("outbox bookkeeping failed: {e}");
    }
}

/// Delivers queued calls until `stop` closes.
pub async fn run(fed: Arc<Federation>, stop: async_channel::Receiver<()>) {
    use futures_lite::FutureExt;
    let mut next_prune = std::time::Instant::now();
    loop {
        if std::time::Instant::now() >= next_prune {
            if let Err(e) = calls::prune_inbox(&fed).await {
                log::error!("cannot prune received call ids: {e}");
            }
            next_prune = std::time::Instant::now() + Duration::from_secs(3600);
        }
        let items = match pending(&fed.services) {
            Ok(items) => items,
            Err(e) => {
                log::error!("cannot read the outbox: {e}");
                Vec::new()
            }
        };
        let t = now_ms();
        let (due, waiting): (Vec<_>, Vec<_>) =
            items.into_iter().partition(|i| i.next_attempt_ms <= t);
        for chunk in due.chunks(PARALLEL) {
            let tasks: Vec<_> = chunk
                .iter()
                .cloned()
                .map(|item| {
                    let fed = fed.clone();
                    fed.executor
                        .clone()
                        .spawn(async move { attempt(&fed, item).await })
                })
                .collect();
            for task in tasks {
                task.await;
            }
        }
        if !due.is_empty() {
            continue;
        }
        let next = waiting.iter().map(|i| i.next_attempt_ms).min();
        let sleep = next
            .map(|n| Duration::from_millis(n.saturating_sub(now_ms())))
            .unwrap_or(Duration::from_secs(3600))
            .min(Duration::from_secs(3600));
        let stopped = async {
            let _ = stop.recv().await;
            true
        }
        .or(async {
            let _ = fed.wakeups().recv().await;
            false
        })
        .or(async {
            smol::Timer::after(sleep).await;
            false
        })
        .await;
        if stopped {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(0, 600), Duration::from_secs(1));
        assert_eq!(backoff(3, 600), Duration::from_secs(8));
        assert_eq!(backoff(30, 600), Duration::from_secs(600));
    }
}
