//! Queueing server-to-server calls in the commit of the change that causes them, so a
//! crash loses nothing. Each call is a [`Call`]: a name and a JSON body, stored as such in
//! the outbox (`OutboxItem`), with the body's `id` set to the call's outbox id, on which
//! receivers deduplicate. A commit that queued something wakes the outbox worker once it
//! is durable (the store's queued hook, set by the wiring).
//!
//! Broadcasts (Refrain): a home queues `user_created` and `user_deleted` to every peer,
//! and `profile_updated` and `device_removed` to the peers that keep a shadow account of
//! the user (those that asked VerifyUser for them), each in the commit of the change.

use super::Services;
use crate::model::{Id, OutboxItem, PushKind, UserId};
use crate::storage::{tables::*, Rows, StoreError, Tx};
use crate::system::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most items [`pending`] reads.
const SCAN_LIMIT: usize = 10_000;

/// `{id, user_id}`: `verify_user` and `user_deleted`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRef {
    /// The call id (set when queued).
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// The user.
    pub user_id: UserId,
}

/// `{id, user, certificate?}`: a home announces a new user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserCreated {
    /// The call id (set when queued).
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// The public profile.
    pub user: super::profiles::ProfileDocument,
    /// The device certificate the user signed at sign-up naming the sender as home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

/// `{id, user}`: a home announces a new profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdated {
    /// The call id (set when queued).
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// The public profile.
    pub user: super::profiles::ProfileDocument,
}

/// `{id, user_id, jkt, removed_at}`: a home removed one of the user's devices.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRemoved {
    /// The call id (set when queued).
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// The user.
    pub user_id: UserId,
    /// Thumbprint of the removed device's key.
    pub jkt: String,
    /// Unix seconds.
    pub removed_at: u64,
}

/// `{id, user_id, guild_id, guild_name, reason}`: a host banned a user homed elsewhere.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropagateBan {
    /// The call id (set when queued).
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// The banned user.
    pub user_id: UserId,
    /// The guild.
    pub guild_id: Id,
    /// The guild's name.
    #[serde(default)]
    pub guild_name: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// `{id, token, user_id, kind, guild_id, channel_id, message_id, title, body}`: a host
/// asks a home to notify one of its users.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushNotification {
    /// The call id (set when queued).
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// The Push Delegation Token the home issued (a missing one is refused as malformed,
    /// with the home's 403, like any bad token).
    #[serde(default)]
    pub token: String,
    /// The user.
    pub user_id: UserId,
    /// What the push is for: `mention` (the default, for hosts that predate the field),
    /// `message` or `dm`.
    #[serde(default)]
    pub kind: PushKind,
    /// Guild of the message.
    pub guild_id: Id,
    /// Channel of the message.
    pub channel_id: Id,
    /// The message.
    pub message_id: Id,
    /// Title shown.
    #[serde(default)]
    pub title: String,
    /// Text shown.
    #[serde(default)]
    pub body: String,
    /// The message's author: the home drops the notification when the user blocks them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_id: Option<UserId>,
}

/// `{id, channel_id, message_id}`: a local job expanding a message's mentions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushFanout {
    /// The call id (set when queued).
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// Channel of the message.
    pub channel_id: Id,
    /// The message.
    pub message_id: Id,
}

/// `{id, type, host, user_id, guild_id, channel_id, message_id, title, body}`: what a
/// UnifiedPush distributor is sent (`type`: `mention`, `message` or `dm`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushDelivery {
    /// The call id (set when queued).
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// What the push is for: `mention`, `message` or `dm`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The server hosting the message.
    pub host: String,
    /// The user.
    pub user_id: UserId,
    /// Guild of the message.
    pub guild_id: Id,
    /// Channel of the message.
    pub channel_id: Id,
    /// The message.
    pub message_id: Id,
    /// Title shown.
    pub title: String,
    /// Text shown.
    pub body: String,
}

/// `{id, user_id, new_homeserver, migration_timestamp, migration_signature}`: a user moved
/// here with a Migration Proof.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateHomeserver {
    /// The call id (set when queued).
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// The user.
    pub user_id: UserId,
    /// The new home's origin.
    #[serde(default)]
    pub new_homeserver: String,
    /// Unix seconds of the proof.
    #[serde(default)]
    pub migration_timestamp: u64,
    /// The proof's signature by K_id.
    #[serde(default)]
    pub migration_signature: String,
}

/// One queued item: a call to a peer, a delivery to a distributor, or a local job.
#[derive(Debug, Clone)]
pub enum Call {
    /// VerifyUser (host → home).
    VerifyUser(UserRef),
    /// A new user (home → every peer).
    UserCreated(UserCreated),
    /// A deleted user (home → every peer).
    UserDeleted(UserRef),
    /// A new profile (home → peers that keep a shadow).
    ProfileUpdated(ProfileUpdated),
    /// A removed device (home → peers that keep a shadow).
    DeviceRemoved(DeviceRemoved),
    /// A ban of a user homed elsewhere (host → home).
    PropagateBan(PropagateBan),
    /// A notification for a user homed elsewhere (host → home).
    PushNotification(PushNotification),
    /// Expands a message's mentions into notifications (local job).
    PushFanout(PushFanout),
    /// A POST to a UnifiedPush distributor.
    PushDelivery(PushDelivery),
    /// A user moved (new home → old home and peers).
    UpdateHomeserver(UpdateHomeserver),
    /// A DM its participants' homes list (host → home).
    DmJoined(super::dms::DmJoined),
    /// People left a DM (host → their home).
    DmLeft(super::dms::DmLeft),
}

impl Call {
    /// Name of VerifyUser.
    pub const VERIFY_USER: &'static str = "verify_user";
    /// Name of `user_created`.
    pub const USER_CREATED: &'static str = "user_created";
    /// Name of `user_deleted`.
    pub const USER_DELETED: &'static str = "user_deleted";
    /// Name of `profile_updated`.
    pub const PROFILE_UPDATED: &'static str = "profile_updated";
    /// Name of `device_removed`.
    pub const DEVICE_REMOVED: &'static str = "device_removed";
    /// Name of PropagateBan.
    pub const PROPAGATE_BAN: &'static str = "propagate_ban";
    /// Name of PushNotification.
    pub const PUSH_NOTIFICATION: &'static str = "push_notification";
    /// Name of the fan-out job.
    pub const PUSH_FANOUT: &'static str = "push_fanout";
    /// Name of a distributor delivery.
    pub const PUSH_DELIVERY: &'static str = "push_delivery";
    /// Name of `update_homeserver`.
    pub const UPDATE_HOMESERVER: &'static str = "update_homeserver";
    /// Name of `dm_joined`.
    pub const DM_JOINED: &'static str = "dm_joined";
    /// Name of `dm_left`.
    pub const DM_LEFT: &'static str = "dm_left";

    /// The call's name, as stored and as the last segment of its path.
    pub fn name(&self) -> &'static str {
        match self {
            Call::VerifyUser(_) => Self::VERIFY_USER,
            Call::UserCreated(_) => Self::USER_CREATED,
            Call::UserDeleted(_) => Self::USER_DELETED,
            Call::ProfileUpdated(_) => Self::PROFILE_UPDATED,
            Call::DeviceRemoved(_) => Self::DEVICE_REMOVED,
            Call::PropagateBan(_) => Self::PROPAGATE_BAN,
            Call::PushNotification(_) => Self::PUSH_NOTIFICATION,
            Call::PushFanout(_) => Self::PUSH_FANOUT,
            Call::PushDelivery(_) => Self::PUSH_DELIVERY,
            Call::UpdateHomeserver(_) => Self::UPDATE_HOMESERVER,
            Call::DmJoined(_) => Self::DM_JOINED,
            Call::DmLeft(_) => Self::DM_LEFT,
        }
    }

    /// The call's body, as a JSON object (without its id).
    pub fn body(&self) -> Value {
        let value = match self {
            Call::VerifyUser(b) | Call::UserDeleted(b) => serde_json::to_value(b),
            Call::UserCreated(b) => serde_json::to_value(b),
            Call::ProfileUpdated(b) => serde_json::to_value(b),
            Call::DeviceRemoved(b) => serde_json::to_value(b),
            Call::PropagateBan(b) => serde_json::to_value(b),
            Call::PushNotification(b) => serde_json::to_value(b),
            Call::PushFanout(b) => serde_json::to_value(b),
            Call::PushDelivery(b) => serde_json::to_value(b),
            Call::UpdateHomeserver(b) => serde_json::to_value(b),
            Call::DmJoined(b) => serde_json::to_value(b),
            Call::DmLeft(b) => serde_json::to_value(b),
        };
        // Plain structs of strings, numbers and JSON values always serialize.
        value.unwrap_or_default()
    }

    /// Reads a stored call (`None` if the name is unknown or the body does not fit it).
    pub fn parse(name: &str, body: &str) -> Option<Call> {
        let call = match name {
            Self::VERIFY_USER => Call::VerifyUser(serde_json::from_str(body).ok()?),
            Self::USER_CREATED => Call::UserCreated(serde_json::from_str(body).ok()?),
            Self::USER_DELETED => Call::UserDeleted(serde_json::from_str(body).ok()?),
            Self::PROFILE_UPDATED => Call::ProfileUpdated(serde_json::from_str(body).ok()?),
            Self::DEVICE_REMOVED => Call::DeviceRemoved(serde_json::from_str(body).ok()?),
            Self::PROPAGATE_BAN => Call::PropagateBan(serde_json::from_str(body).ok()?),
            Self::PUSH_NOTIFICATION => Call::PushNotification(serde_json::from_str(body).ok()?),
            Self::PUSH_FANOUT => Call::PushFanout(serde_json::from_str(body).ok()?),
            Self::PUSH_DELIVERY => Call::PushDelivery(serde_json::from_str(body).ok()?),
            Self::UPDATE_HOMESERVER => Call::UpdateHomeserver(serde_json::from_str(body).ok()?),
            Self::DM_JOINED => Call::DmJoined(serde_json::from_str(body).ok()?),
            Self::DM_LEFT => Call::DmLeft(serde_json::from_str(body).ok()?),
            _ => return None,
        };
        Some(call)
    }
}

/// Queues `call` to `target` (the body's `id` is set to the call id), and notes in the
/// commit that the outbox worker has work.
pub fn enqueue(tx: &Tx, id: Id, target: &str, call: &Call) -> Result<(), StoreError> {
    let mut body = call.body();
    if let Some(object) = body.as_object_mut() {
        object.insert("id".into(), Value::from(id.0.to_string()));
    }
    let t = now_ms();
    let item = OutboxItem {
        id: id.0,
        target: target.to_string(),
        call: call.name().to_string(),
        body: body.to_string(),
        attempts: 0,
        next_attempt_ms: t,
        created_ms: t,
        last_error: String::new(),
    };
    tx.put(OUTBOX, id, &item)?;
    tx.note_queued();
    Ok(())
}

/// Every queued call (for administrators, tests and the outbox worker).
pub fn pending(services: &Services) -> Result<Vec<OutboxItem>, StoreError> {
    Ok(services
        .store
        .read(|tx| tx.rows(OUTBOX, Rows::all().limit(SCAN_LIMIT)))?
        .into_iter()
        .map(|(_, item)| item)
        .collect())
}

// ---- writes that queue calls to several peers ----

/// What a job run by [`write_with_ids`] did: finished, or found it needs more call ids
/// than it was given (it must say so before its first write).
pub enum Flow<R> {
    /// Done, with this result.
    Done(R),
    /// Run again with at least this many ids.
    NeedIds(usize),
}

/// Runs `job` in one commit with `want` fresh ids for the calls it queues (one per
/// target peer). The targets are read inside the commit, so a peer added meanwhile may
/// need more ids than were made: the job then answers [`Flow::NeedIds`] before writing
/// anything, and runs again with enough.
pub async fn write_with_ids<R, E, F>(services: &Services, want: usize, job: F) -> Result<R, E>
where
    F: FnOnce(&Tx, &[Id]) -> Result<Flow<R>, E> + Clone + Send + 'static,
    R: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let mut want = want;
    loop {
        let ids: Vec<Id> = (0..want).map(|_| services.next_id()).collect();
        let job = job.clone();
        match services.store.write(move |tx| job(tx, &ids)).await? {
            Flow::Done(result) => return Ok(result),
            Flow::NeedIds(n) => want = n + 4,
        }
    }
}

/// Every pinned peer's origin.
pub fn peer_origins(tx: &Tx) -> Result<Vec<String>, StoreError> {
    Ok(tx
        .rows(PEER, Rows::all())?
        .into_iter()
        .map(|(_, peer)| peer.origin)
        .collect())
}

/// How many peers are pinned (an estimate of the ids a broadcast needs).
pub fn peer_count(services: &Services) -> Result<usize, StoreError> {
    services.store.read(|tx| tx.count(PEER, Rows::all()))
}

/// The peers that keep a shadow account of local user `user` (they asked VerifyUser for
/// them) and are still peers.
pub fn tracked_peers(tx: &Tx, user: UserId) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for ((_, origin), _) in tx.rows(USER_PEER, Rows::prefix(user))? {
        if tx.contains(PEER, origin.as_str())? {
            out.push(origin);
        }
    }
    Ok(out)
}

/// How many peers keep a shadow of `user` (an estimate of the ids `profile_updated` needs).
pub fn tracked_count(services: &Services, user: UserId) -> Result<usize, StoreError> {
    services
        .store
        .read(|tx| tx.count(USER_PEER, Rows::prefix(user)))
}

/// Queues `call` to each of `targets`, one id each (`ids` must be enough).
pub fn queue_to(tx: &Tx, ids: &[Id], targets: &[String], call: &Call) -> Result<(), StoreError> {
    for (target, id) in targets.iter().zip(ids) {
        enqueue(tx, *id, target, call)?;
    }
    Ok(())
}

/// Queues VerifyUser for `user` to `home` with `call_id` and notes it as pending.
pub fn queue_verify(tx: &Tx, user: UserId, home: &str, call_id: Id) -> Result<(), StoreError> {
    let mut state = tx.get(SHADOW_SYNC, user)?.unwrap_or_default();
    if state.home != home {
        state = crate::model::ShadowSync {
            home: home.to_string(),
            ..crate::model::ShadowSync::default()
        };
    }
    state.pending_call = Some(call_id.0);
    enqueue(
        tx,
        call_id,
        home,
        &Call::VerifyUser(UserRef {
            id: None,
            user_id: user,
        }),
    )?;
    tx.put(SHADOW_SYNC, user, &state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_keep_the_stored_format() {
        let user = UserId([7; 32]);
        let call = Call::DeviceRemoved(DeviceRemoved {
            id: None,
            user_id: user,
            jkt: "abc".into(),
            removed_at: 5,
        });
        assert_eq!(
            call.body(),
            serde_json::json!({ "user_id": user.to_text(), "jkt": "abc", "removed_at": 5 })
        );
        let stored =
            r#"{"id":"9","user_id":"U","jkt":"abc","removed_at":5}"#.replace('U', &user.to_text());
        assert!(matches!(
            Call::parse(Call::DEVICE_REMOVED, &stored),
            Some(Call::DeviceRemoved(DeviceRemoved { removed_at: 5, .. }))
        ));
        let created = Call::UserCreated(UserCreated {
            id: None,
            user: super::super::profiles::ProfileDocument {
                id: user.to_text(),
                ..Default::default()
            },
            certificate: None,
        });
        assert_eq!(
            created.body(),
            serde_json::json!({ "user": {
                "id": user, "name": "", "username": "", "homeserver": "", "avatar_url": "",
                "avatar_color": "", "bio": "", "presence": "online",
            } })
        );
    }
}
