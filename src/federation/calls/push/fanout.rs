//! A message's push fan-out job (a local outbox item queued with the message), run from
//! the outbox worker: the service plans it and queues its notifications and deliveries in
//! the commit that removes the job; here it is retried with back-off when that fails.

use crate::federation::{outbox, Federation};
use crate::model::*;
use crate::storage::tables::OUTBOX;
use crate::system::now_ms;

/// Runs a fan-out job ([`crate::service::Services::run_push_fanout`]); on a storage
/// failure it is retried with back-off.
pub async fn fan_out(fed: &Federation, item: OutboxItem) {
    let key = Id(item.id);
    let result = fed.services.run_push_fanout(key, &item.body).await;
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
