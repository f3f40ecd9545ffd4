//! PropagateBan (host → home): `{id, user_id, guild_id, guild_name, reason}`. When a guild
//! bans a user whose home is another server, the host queues this call in the ban's
//! commit. The home records a ban notification (once per host and call id) and answers
//! 200 `{"recorded": true}` (`{"duplicate": true}` for a repeat), or 404 if the user is not
//! homed there. What the home does beyond recording is its administrators' policy: bans
//! stay local to the host; the home only keeps the notice, listed to its administrators
//! at `GET /api/v1/admin/ban-notifications`.

use crate::app::App;
use crate::federation::FederationError;
use crate::service::outbox::{self, Call, PropagateBan};
use crate::model::*;
use crate::storage::{keys, tables::*, StoreError, Tx};
use crate::system::now;
use serde_json::{json, Value};

/// The call's name.
pub const CALL: &str = Call::PROPAGATE_BAN;
/// Longest guild name kept.
const MAX_GUILD_NAME: usize = 100;
/// Longest reason kept.
const MAX_REASON: usize = 1000;
/// Most notifications listed at once.
const MAX_LISTED: usize = 1000;

/// Queues PropagateBan to the user's home, in the ban's commit, when the banned user is
/// a shadow account of a remote user. Returns whether a call was queued.
pub fn queue(tx: &Tx, call_id: Id, ban: &Ban, guild_name: &str) -> Result<bool, StoreError> {
    let Some(user) = tx.get(USER, &ban.user_id.0)? else {
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

fn clean(value: &Value, max: usize) -> String {
    value
        .as_str()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(max)
        .collect()
}

fn key(user: UserId, host: &str, call_id: u64) -> Vec<u8> {
    keys::join(&[&user.0, host.as_bytes(), &[0], &call_id.to_be_bytes()])
}

/// Handles PropagateBan from `from` (a verified peer).
pub async fn propagate_ban(
    app: &App,
    from: &str,
    body: &Value,
) -> Result<(u16, Value), FederationError> {
    let call_id = super::call_id(body)?;
    let user = super::body_user(body)?;
    let guild_id = body["guild_id"]
        .as_str()
        .and_then(Id::parse)
        .ok_or_else(|| FederationError::Invalid("guild_id is not an id".into()))?;
    let notification = BanNotification {
        call_id,
        host: from.to_string(),
        user_id: user,
        guild_id,
        guild_name: clean(&body["guild_name"], MAX_GUILD_NAME),
        reason: clean(&body["reason"], MAX_REASON),
        received_at: now(),
    };
    let recorded = app
        .services
        .store
        .write(move |tx| {
            let homed_here = tx
                .get(USER, &user.0)?
                .is_some_and(|u| u.homeserver.is_empty());
            if !homed_here {
                return Ok(None);
            }
            if !super::first_delivery(tx, &notification.host, notification.call_id)? {
                return Ok(Some(false));
            }
            tx.put(
                BAN_NOTIFICATION,
                &key(user, &notification.host, notification.call_id),
                &notification,
            )?;
            Ok::<_, StoreError>(Some(true))
        })
        .await?;
    Ok(match recorded {
        None => (
            404,
            json!({ "error": "unknown_user", "message": "no such user homed here" }),
        ),
        Some(true) => (200, json!({ "recorded": true })),
        Some(false) => (200, json!({ "duplicate": true })),
    })
}

/// Ban notifications received here, newest first (at most 1000), optionally only those
/// about `user`.
pub fn list(app: &App, user: Option<UserId>) -> Result<Vec<BanNotification>, StoreError> {
    let mut rows: Vec<BanNotification> = app
        .services
        .store
        .read(|tx| {
            let prefix: &[u8] = match &user {
                Some(u) => &u.0,
                None => &[],
            };
            tx.scan_prefix(BAN_NOTIFICATION, prefix, usize::MAX)
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
