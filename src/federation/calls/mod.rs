//! The server-to-server calls: what the receiver does with each call, and what the sender
//! does with each answer. Bodies are JSON objects carrying the sender's call `id`; calls
//! that change state are deduplicated on (sender, id) in the commit that applies them, so
//! a retried delivery takes effect once.

pub mod migration;
pub mod users;

pub use users::{ensure_shadow, remove_user_everywhere, PUSH_TOKEN_SECS};

use super::FederationError;
use crate::app::App;
use crate::model::OutboxItem;
use crate::service::now;
use crate::storage::{keys, tables::INBOX, StoreError, Tx};
use serde_json::{json, Value};

/// Whether an answer ends a call (delivered, or refused for good) rather than asking for
/// a retry.
pub fn is_final(status: u16) -> bool {
    (200..300).contains(&status) || matches!(status, 400 | 403 | 404 | 409 | 410 | 422)
}

/// Applies the answer to a delivered call, in the commit that removes it from the outbox.
pub fn on_answer(tx: &Tx, item: &OutboxItem, status: u16, body: &[u8]) -> Result<(), StoreError> {
    match item.call.as_str() {
        "verify_user" => users::verify_user_answered(tx, item, status, body),
        _ => Ok(()),
    }
}

/// Handles an inbound call from `from` (already verified). Returns status and body.
pub async fn handle(
    app: &App,
    from: &str,
    call: &str,
    body: &Value,
) -> Result<(u16, Value), FederationError> {
    match call {
        "verify_user" => users::verify_user(app, from, body),
        "update_homeserver" => migration::update_homeserver(app, from, body).await,
        other => Ok((
            404,
            json!({ "error": "unknown_call", "message": format!("no call named {other}") }),
        )),
    }
}

/// The call id a sender put in the body.
pub fn call_id(body: &Value) -> Result<u64, FederationError> {
    body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| FederationError::Invalid("the call has no id".into()))
}

/// Records that the call (`from`, `id`) was applied; `false` if it had been already, in
/// which case the caller must not apply it again. Use in the commit that applies it.
pub fn first_delivery(tx: &Tx, from: &str, id: u64) -> Result<bool, StoreError> {
    let key = keys::join(&[from.as_bytes(), &[0], &id.to_be_bytes()]);
    if tx.contains(INBOX, &key)? {
        return Ok(false);
    }
    tx.put(INBOX, &key, &now())?;
    Ok(true)
}

/// Forgets received call ids older than the longest a sender retries (plus a day), so the
/// deduplication table stays bounded.
pub async fn prune_inbox(app: &App) -> Result<usize, StoreError> {
    let keep_secs = app.services.config.federation.give_up_secs + 24 * 3600;
    let cutoff = now().saturating_sub(keep_secs);
    app.services
        .store
        .write(move |tx| {
            let old: Vec<Vec<u8>> = tx
                .range(INBOX, &[], None, false, usize::MAX)?
                .into_iter()
                .filter(|(_, at)| *at < cutoff)
                .map(|(key, _)| key)
                .take(10_000)
                .collect();
            for key in &old {
                tx.delete(INBOX, key)?;
            }
            Ok(old.len())
        })
        .await
}
