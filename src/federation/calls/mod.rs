//! The server-to-server calls: what the receiver does with each call, and what the sender
//! does with each answer. Bodies are JSON objects carrying the sender's call `id`; calls
//! that change state are deduplicated on (sender, id) in the commit that applies them, so
//! a retried delivery takes effect once.

pub mod ban;
pub mod devices;
pub mod dms;
pub mod migration;
pub mod push;
pub mod search;
pub mod users;

pub use crate::service::inbox::first_delivery;
pub use crate::service::push::PUSH_TOKEN_SECS;

use super::FederationError;
use crate::federation::Federation;
use crate::model::OutboxItem;
use crate::storage::{tables::INBOX, Rows, StoreError, Tx};
use crate::system::now;
use serde_json::{json, Value};

/// What an inbound call answers: done, or refused for a reason the HTTP layer maps to a
/// status. Each holds the JSON body sent back.
#[derive(Debug)]
pub enum Answer {
    /// Applied, or answered (200).
    Done(Value),
    /// The sender may not speak for this, or its token is refused (403).
    Forbidden(Value),
    /// No such user homed here, or no such call (404).
    NotFound(Value),
    /// A newer state is already applied (409).
    Conflict(Value),
    /// The user moved away; the body carries their Migration Proof (410).
    Moved(Value),
}

/// Whether an answer ends a call (delivered, or refused for good) rather than asking for
/// a retry.
pub fn is_final(status: u16) -> bool {
    (200..300).contains(&status) || matches!(status, 400 | 403 | 404 | 409 | 410 | 422)
}

/// [`is_final`] for one kind of outbox item: a UnifiedPush distributor is no peer, and any
/// 4xx from it but 408 and 429 is final.
pub fn is_final_for(call: &str, status: u16) -> bool {
    match call {
        push::DELIVERY => push::delivery_final(status),
        _ => is_final(status),
    }
}

/// How long an outbox item of `call` is retried before it is given up, seconds.
/// `update_homeserver` never is: until the old home applies it (or refuses it for good),
/// the old home would keep signing the user in, so only a definitive answer ends it.
pub fn give_up_secs(call: &str, configured: u64) -> u64 {
    match call {
        push::DELIVERY | push::NOTIFICATION | push::FANOUT => configured.min(push::GIVE_UP_SECS),
        migration::CALL => u64::MAX,
        _ => configured,
    }
}

/// Applies the answer to a delivered call, in the commit that removes it from the outbox.
pub fn on_answer(tx: &Tx, item: &OutboxItem, status: u16, body: &[u8]) -> Result<(), StoreError> {
    match item.call.as_str() {
        "verify_user" => crate::service::shadows::verify_user_answered(tx, item, status, body),
        push::NOTIFICATION => push::notification_answered(tx, item, status),
        _ => Ok(()),
    }
}

/// Handles an inbound call from `from` (already verified). Returns its answer (the HTTP layer gives it a status).
pub async fn handle(
    fed: &Federation,
    from: &str,
    call: &str,
    body: &Value,
) -> Result<Answer, FederationError> {
    match call {
        "verify_user" => {
            let call: crate::service::outbox::UserRef = parse(body)?;
            users::verify_user(fed, from, call.user_id).await
        }
        ban::CALL => ban::propagate_ban(fed, from, body).await,
        push::NOTIFICATION => push::push_notification(fed, from, body).await,
        migration::CALL => migration::update_homeserver(fed, from, body).await,
        "user_created" => users::user_created(fed, from, parse(body)?).await,
        "user_deleted" => users::user_deleted(fed, from, parse(body)?).await,
        "profile_updated" => users::profile_updated(fed, from, parse(body)?).await,
        crate::service::accounts::DEVICE_REMOVED_CALL => {
            devices::device_removed(fed, from, body).await
        }
        "search_users" => search::search_users(fed, body),
        "dm_joined" => dms::dm_joined(fed, from, parse(body)?).await,
        "dm_left" => dms::dm_left(fed, from, parse(body)?).await,
        other => Ok(Answer::NotFound(
            json!({ "error": "unknown_call", "message": format!("no call named {other}") }),
        )),
    }
}

/// Reads a call body into its typed form ([`crate::service::outbox`]'s structs refuse
/// unknown fields); a body that does not fit is an invalid call.
pub fn parse<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, FederationError> {
    serde_json::from_value(body.clone()).map_err(|e| FederationError::Invalid(e.to_string()))
}

/// The call id of a typed body (a decimal string).
pub fn typed_call_id(id: Option<&str>) -> Result<u64, FederationError> {
    id.and_then(|id| id.parse().ok())
        .ok_or_else(|| FederationError::Invalid("the call has no id".into()))
}

/// Forgets received call ids older than the longest a sender retries (plus a day), so the
/// deduplication table stays bounded.
pub async fn prune_inbox(fed: &Federation) -> Result<usize, StoreError> {
    let keep_secs = fed.services.config.federation.give_up_secs + 24 * 3600;
    let cutoff = now().saturating_sub(keep_secs);
    fed.services
        .store
        .write(move |tx| {
            let old: Vec<(String, u64)> = tx
                .rows(INBOX, Rows::all())?
                .into_iter()
                .filter(|(_, at)| *at < cutoff)
                .map(|(key, _)| key)
                .take(10_000)
                .collect();
            for (from, id) in &old {
                tx.delete(INBOX, (from.as_str(), *id))?;
            }
            Ok(old.len())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_never_given_up_by_time_and_pushes_soon_are() {
        assert_eq!(give_up_secs(migration::CALL, 3600), u64::MAX);
        assert_eq!(give_up_secs("verify_user", 3600), 3600);
        assert!(give_up_secs(push::DELIVERY, u64::MAX) <= push::GIVE_UP_SECS);
        assert!(is_final(409) && is_final(200) && !is_final(401) && !is_final(503));
    }
}
