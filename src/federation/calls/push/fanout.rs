//! A message's push fan-out job (a local outbox item queued with the message): planned by
//! `service::push::plan`, its notifications and deliveries are queued in the commit that
//! removes the job.

use crate::federation::{outbox, Federation};
use crate::model::*;
use crate::service::outbox::{enqueue, PushFanout};
use crate::service::push::plan;
use crate::storage::{tables::*, StoreError};
use crate::system::now_ms;

/// Runs a fan-out job: queues its notifications and deliveries in the commit that
/// removes it. On a storage failure it is retried with back-off.
pub async fn fan_out(fed: &Federation, item: OutboxItem) {
    let job = serde_json::from_str::<PushFanout>(&item.body).ok();
    let origin = fed.services.origin.clone();
    let planned = match job {
        Some(job) => fed
            .services
            .store
            .read(|tx| plan(tx, &origin, job.channel_id, job.message_id)),
        // A job this build cannot read plans nothing: it is dropped, not retried forever.
        None => Ok(Vec::new()),
    };
    let key = Id(item.id);
    let result = match planned {
        Ok(planned) => {
            let ids: Vec<Id> = planned.iter().map(|_| fed.services.next_id()).collect();
            fed.services
                .store
                .write(move |tx| {
                    if !tx.delete(OUTBOX, key)? {
                        return Ok(());
                    }
                    for (id, p) in ids.into_iter().zip(planned) {
                        enqueue(tx, id, &p.target, &p.call)?;
                    }
                    Ok::<_, StoreError>(())
                })
                .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        log::warn!("push fan-out failed, will retry: {e}");
        let mut item = item;
        item.attempts += 1;
        item.last_error = e.to_string();
        item.next_attempt_ms = now_ms()
            + outbox::backoff(item.attempts, fed.services.config.federation.max_retry_secs)
                .as_millis() as u64;
        let retry = fed
            .services
            .store
            .write(move |tx| tx.put(OUTBOX, key, &item))
            .await;
        if let Err(e) = retry {
            log::error!("outbox bookkeeping failed: {e}");
        }
    }
}
