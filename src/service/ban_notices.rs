//! Ban notifications: a host queues PropagateBan to a banned user's home in the ban's
//! commit; the home records a notice (once per host and call id), listed to its
//! administrators. What the home does beyond recording is its administrators' policy:
//! bans stay local to the host.

use super::inbox::first_delivery;
use super::outbox::{self, Call, PropagateBan};
use super::Services;
use crate::model::*;
use crate::storage::{tables::*, Rows, StoreError, Tx};
use crate::system::now;
use serde_json::{json, Value};

/// Longest guild name kept.
const MAX_GUILD_NAME: usize = 100;
/// Longest reason kept.
const MAX_REASON: usize = 1000;
/// Most notifications listed at once.
const MAX_LISTED: usize = 1000;

/// Queues PropagateBan to the user's home, in the ban's commit, when the banned user is
/// a shadow account of a remote user. Returns whether a call was queued.
pub fn queue(tx: &Tx, call_id: Id, ban: &Ban, guild_name: &str) -> Result<bool, StoreError> {
    let Some(user) = tx.get(USER, ban.user_id)? else {
        return Ok(false);
    };
    if user.homeserver.is_empty() {
        return Ok(false);
    }
    outbox::enqueue(
        tx,
        call_id,
        &user.homeserver,
        &Call::PropagateBan(PropagateBan {
            id: None,
            user_id: ban.user_id,
            guild_id: ban.guild_id,
            guild_name: guild_name.to_string(),
            reason: ban.reason.clone(),
        }),
    )?;
    Ok(true)
}

fn clean(value: &str, max: usize) -> String {
    value
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(max)
        .collect()
}

/// A notification of PropagateBan call `call_id` from `host`, its texts cleaned and
/// bounded.
pub fn notification(
    call_id: u64,
    host: &str,
    user: UserId,
    guild_id: Id,
    guild_name: &str,
    reason: &str,
) -> BanNotification {
    BanNotification {
        call_id,
        host: host.to_string(),
        user_id: user,
        guild_id,
        guild_name: clean(guild_name, MAX_GUILD_NAME),
        reason: clean(reason, MAX_REASON),
        received_at: now(),
    }
}

/// Records a notification (once per host and call id): `None` if the user is not homed
/// here, `Some(false)` for a repeat, `Some(true)` when recorded.
pub async fn record(
    services: &Services,
    notification: BanNotification,
) -> Result<Option<bool>, StoreError> {
    let user = notification.user_id;
    services
        .store
        .write(move |tx| {
            let homed_here = tx.get(USER, user)?.is_some_and(|u| u.homeserver.is_empty());
            if !homed_here {
                return Ok(None);
            }
            if !first_delivery(tx, &notification.host, notification.call_id)? {
                return Ok(Some(false));
            }
            tx.put(
                BAN_NOTIFICATION,
                (user, notification.host.as_str(), notification.call_id),
                &notification,
            )?;
            Ok::<_, StoreError>(Some(true))
        })
        .await
}

/// Ban notifications received here, newest first (at most 1000), optionally only those
/// about `user`.
pub fn list(services: &Services, user: Option<UserId>) -> Result<Vec<BanNotification>, StoreError> {
    let mut rows: Vec<BanNotification> = services
        .store
        .read(|tx| {
            let rows = match user {
                Some(u) => Rows::prefix(u),
                None => Rows::all(),
            };
            tx.rows(BAN_NOTIFICATION, rows)
        })?
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    rows.sort_by(|a, b| {
        b.received_at
            .cmp(&a.received_at)
            .then(b.call_id.cmp(&a.call_id))
    });
    rows.truncate(MAX_LISTED);
    Ok(rows)
}

/// A notification as shown to administrators.
pub fn view(notification: &BanNotification) -> Value {
    json!({
        "call_id": notification.call_id.to_string(),
        "host": notification.host,
        "user_id": notification.user_id,
        "guild_id": notification.guild_id,
        "guild_name": notification.guild_name,
        "reason": notification.reason,
        "received_at": notification.received_at,
    })
}
