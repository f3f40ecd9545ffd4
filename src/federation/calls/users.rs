//! Calls about users. Bodies carry the sender's call `id` (a decimal string).
//!
//! - `verify_user` (host → home): `{id, user_id}` → 200 `{user: profile, push_token,
//!   version}` when the user exists and is homed there; 410 `{error: "moved", moved:
//!   {new_homeserver, migration_timestamp, migration_signature}}` when they moved away
//!   (the Migration Proof the old home applied); 404 otherwise. The home notes that the
//!   host keeps a shadow of the user (so it sends it `profile_updated`). The host
//!   refreshes the shadow account's profile (unless the user unlinked it there) and keeps
//!   the Push Delegation Token; follows a move whose proof the user signed (the shadow
//!   keeps its memberships and is homed at the new home); or removes a user the home says
//!   does not exist, with a tombstone that refuses the same claim until the home
//!   announces the user.
//! - `user_created` (home → every peer): `{id, user: profile, certificate?}`. Recorded in
//!   the directory of remote users; lifts an earlier deletion of the same id by that home.
//!   `certificate`, the device certificate the user signed at sign-up naming the sender as
//!   home, proves the entry: it then replaces another peer's unproven claim of the id.
//! - `user_deleted` (home → every peer): `{id, user_id}`. The receiver removes the shadow
//!   account with every membership and device (`remove_user_everywhere`) and records a
//!   tombstone, so the user's still-valid access tokens and any new shadow account from
//!   that home are refused at once. From a server that is not the user's home: 403.
//! - `profile_updated` (home → peers that keep a shadow): `{id, user: profile}`. Applied
//!   to a synced shadow and to the directory. From a server that is not the home: 403.
//!
//! A profile's `version` is an id from the home's generator (the call id, or a fresh id in
//! VerifyUser's answer), so a late retry never overwrites a newer profile. State changes
//! are deduplicated with `first_delivery`.

use super::first_delivery;
use super::Answer;
use crate::federation::Federation;
use crate::federation::{directory, FederationError};
use crate::model::*;
use crate::service::accounts::PublicUser;
use crate::service::lifecycle::{self, bury, deleted_by_home, remove_user_everywhere};
use crate::service::outbox::{queue_verify, UserRef};
use crate::service::push::PUSH_TOKEN_SECS;
use crate::service::remote_users;
use crate::storage::{tables::*, Rows, StoreError, Tx};
use crate::system::now;
use serde_json::{json, Value};

/// Reads a profile a peer sent (`{username, name, avatar_url, avatar_color, bio,
/// presence}`), cleaned: bounded lengths, no control characters, http(s) avatars only.
pub fn profile_from_json(value: &Value) -> (String, Profile) {
    let text = |name: &str, max: usize| -> String {
        value[name]
            .as_str()
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(max)
            .collect()
    };
    let avatar_url = text("avatar_url", 512);
    let avatar_url = if avatar_url.starts_with("http://") || avatar_url.starts_with("https://") {
        avatar_url
    } else {
        String::new()
    };
    let avatar_color = text("avatar_color", 7);
    let avatar_color = if avatar_color.len() == 7
        && avatar_color.starts_with('#')
        && avatar_color[1..].bytes().all(|b| b.is_ascii_hexdigit())
    {
        avatar_color
    } else {
        String::new()
    };
    (
        text("username", 32),
        Profile {
            name: text("name", 100),
            avatar_url,
            avatar_color,
            bio: text("bio", 1000),
            presence: serde_json::from_value(value["presence"].clone()).unwrap_or_default(),
        },
    )
}

/// A version sent as a decimal string (or a number).
fn version_of(value: &Value) -> u64 {
    value
        .as_str()
        .and_then(|v| v.parse().ok())
        .or_else(|| value.as_u64())
        .unwrap_or(0)
}

/// Tells the user's guilds (and the user) that their profile changed.
pub(super) fn emit_user_update(tx: &Tx, user: &User) -> Result<(), StoreError> {
    let guilds = tx
        .rows(USER_GUILD, Rows::prefix(user.id))?
        .into_iter()
        .map(|((_, guild), _)| guild)
        .collect();
    tx.emit(
        "user_update",
        Audience {
            guilds,
            users: vec![user.id],
            ..Audience::default()
        },
        None,
        // Shadows always name their home, so this server's origin is not needed.
        &PublicUser::of(user, ""),
    )?;
    Ok(())
}

/// Applies a profile from `home` at `version` to a shadow account: notes that the profile
/// was confirmed now, and (if the user has not unlinked it and it is not older than what
/// was applied) takes it over. Returns whether the shadow changed.
fn apply_home_profile(
    tx: &Tx,
    shadow: &mut User,
    home: &str,
    version: u64,
    profile: &Value,
) -> Result<bool, StoreError> {
    let mut state = tx.get(SHADOW_SYNC, shadow.id)?.unwrap_or_default();
    if state.home != home {
        state = ShadowSync {
            home: home.to_string(),
            pending_call: state.pending_call,
            ..ShadowSync::default()
        };
    }
    let newer = version >= state.version;
    state.synced_at = now();
    let mut changed = false;
    if newer {
        state.version = version;
        if shadow.profile_synced {
            let (username, fresh) = profile_from_json(profile);
            if shadow.profile != fresh || shadow.username != username {
                shadow.profile = fresh;
                shadow.username = username;
                tx.put(USER, shadow.id, shadow)?;
                emit_user_update(tx, shadow)?;
                changed = true;
            }
        }
    }
    tx.put(SHADOW_SYNC, shadow.id, &state)?;
    Ok(changed)
}

/// Applies VerifyUser's answer, in the commit that removes the call from the outbox.
pub fn verify_user_answered(
    tx: &Tx,
    item: &OutboxItem,
    status: u16,
    body: &[u8],
) -> Result<(), StoreError> {
    let request: Value = serde_json::from_str(&item.body).unwrap_or_default();
    let Some(user) = request["user_id"].as_str().and_then(UserId::parse) else {
        return Ok(());
    };
    let Some(mut shadow) = tx.get(USER, user)? else {
        return Ok(());
    };
    if shadow.homeserver != item.target {
        // Migrated meanwhile: this answer is no longer the authority.
        return Ok(());
    }
    if status == 404 {
        // The home says no such user: they go, and a tombstone refuses the same claim
        // until that home announces the user (`user_created`).
        remove_user_everywhere(tx, user)?;
        bury(tx, user, &item.target, 0)?;
        return Ok(());
    }
    if status == 410 {
        let answer: Value = serde_json::from_slice(body).unwrap_or_default();
        if super::migration::follow_move(tx, &mut shadow, &item.target, &answer["moved"])? {
            return Ok(());
        }
    }
    let mut state = tx.get(SHADOW_SYNC, user)?.unwrap_or_default();
    if state.pending_call == Some(item.id) {
        state.pending_call = None;
        tx.put(SHADOW_SYNC, user, &state)?;
    }
    if !(200..300).contains(&status) {
        // Refused for good: try again after the refresh age, not at every lookup.
        state.synced_at = now();
        tx.put(SHADOW_SYNC, user, &state)?;
        return Ok(());
    }
    let answer: Value = serde_json::from_slice(body).unwrap_or_default();
    apply_home_profile(
        tx,
        &mut shadow,
        &item.target,
        version_of(&answer["version"]),
        &answer["user"],
    )?;
    if let Some(token) = answer["push_token"].as_str().filter(|t| t.len() <= 4096) {
        tx.put(PUSH_DELEGATION, user, &token.to_string())?;
    }
    Ok(())
}

fn deleted_error() -> FederationError {
    FederationError::Service(crate::service::Error::Forbidden(
        "this account was deleted by its home server".into(),
    ))
}

/// What a client shows, the first time it uses this server with a peer's token, to prove
/// which server is its user's home: the device certificate K_id signed for the key that
/// signs the request's DPoP proof. A peer's token alone is only that peer's word.
#[derive(Debug, Clone, Copy)]
pub struct HomeEvidence<'a> {
    /// The device certificate (compact JWS), if the client sent one.
    pub certificate: Option<&'a str>,
    /// Thumbprint of the device key the request is proven with.
    pub jkt: &'a str,
}

/// Checks that `evidence` is K_id's word that `user`, on device `evidence.jkt`, is homed at
/// `home`.
fn check_home_evidence(
    user: UserId,
    home: &str,
    evidence: HomeEvidence<'_>,
) -> Result<(), FederationError> {
    let unproven = |why: String| {
        FederationError::HomeNotProven(format!(
            "{why}: the first request with a token of {home} must carry the device \
             certificate ({}) that the user's identity key signed naming {home} as home",
            crate::auth::device_cert::HEADER
        ))
    };
    let certificate = evidence
        .certificate
        .ok_or_else(|| unproven("no device certificate".into()))?;
    let cert = crate::auth::device_cert::verify_device_certificate(certificate, now())
        .map_err(|e| unproven(e.to_string()))?;
    if UserId::parse(&cert.sub) != Some(user) {
        return Err(unproven("the certificate is for another user".into()));
    }
    if cert.jkt != evidence.jkt {
        return Err(unproven(
            "the certificate is for another device key than the DPoP proof".into(),
        ));
    }
    if crate::federation::normalize_origin(&cert.homeserver)
        .ok()
        .as_deref()
        != Some(home)
    {
        return Err(unproven(format!(
            "the certificate names {} as home",
            cert.homeserver
        )));
    }
    Ok(())
}

/// Makes sure a remote user has a shadow account here homed at `home`, queueing
/// VerifyUser to their home the first time. A new shadow is bound to its home only on the
/// user's own evidence (a device certificate signed by K_id naming that home), never on
/// a peer's word: so a peer cannot claim a user it does not home. Fails if the user is
/// known here with another home (a move is followed only on a Migration Proof: VerifyUser
/// to the known home is queued, which answers "moved" with it), or if that home deleted
/// them.
pub async fn ensure_shadow(
    fed: &Federation,
    user: UserId,
    home: &str,
    evidence: HomeEvidence<'_>,
) -> Result<(), FederationError> {
    let (known, deleted) = fed
        .services
        .store
        .read(|tx| Ok::<_, StoreError>((tx.get(USER, user)?, deleted_by_home(tx, user, home)?)))?;
    match known {
        Some(u) if u.homeserver == home => return Ok(()),
        Some(u) => {
            if !u.homeserver.is_empty() {
                directory::verify_soon(fed, user).await?;
            }
            return Err(FederationError::NotHome(format!(
                "this user is not homed at {home} as far as this server knows"
            )));
        }
        None if deleted => return Err(deleted_error()),
        None => {}
    }
    check_home_evidence(user, home, evidence)?;
    let home = home.to_string();
    let call_id = fed.services.next_id();
    fed.services
        .store
        .write(move |tx| {
            if let Some(u) = tx.get(USER, user)? {
                if u.homeserver == home {
                    return Ok(());
                }
                return Err(FederationError::NotHome(format!(
                    "this user is not homed at {home} as far as this server knows"
                )));
            }
            if deleted_by_home(tx, user, &home)? {
                return Err(deleted_error());
            }
            // Start from what the home announced, if it did; VerifyUser confirms it. An
            // entry naming another home was that peer's word, which the user's own
            // certificate contradicts.
            let announced = match tx.get(DIRECTORY, user)? {
                Some(entry) if entry.home == home => Some(entry),
                Some(_) => {
                    remote_users::forget(tx, user)?;
                    None
                }
                None => None,
            };
            let (username, profile) = match announced {
                Some(entry) => (entry.username, entry.profile),
                None => (
                    String::new(),
                    Profile {
                        name: user.to_text().chars().take(8).collect(),
                        ..Profile::default()
                    },
                ),
            };
            let shadow = User {
                id: user,
                username,
                password_hash: None,
                key_backup: None,
                homeserver: home.clone(),
                profile,
                profile_synced: true,
                push_distributors: Vec::new(),
                fcm_tokens: Vec::new(),
                guild_order: Vec::new(),
                is_admin: false,
                created_at: now(),
            };
            tx.put(USER, user, &shadow)?;
            queue_verify(tx, user, &home, call_id)?;
            Ok::<_, FederationError>(())
        })
        .await
}

/// Answers VerifyUser for a user homed here, and notes that `from` keeps their shadow.
pub async fn verify_user(
    fed: &Federation,
    from: &str,
    user: UserId,
) -> Result<Answer, FederationError> {
    // Made before the profile is read, so a `profile_updated` queued after this answer's
    // snapshot always carries a greater version.
    let version = fed.services.next_id();
    let (local, moved) = fed.services.store.read(|tx| {
        Ok::<_, StoreError>((tx.get(USER, user)?, super::migration::moved_away(tx, user)?))
    })?;
    if let Some(moved) = moved {
        // mzchat: the old home answers for a user who moved with their proof, so hosts
        // that were not told follow them rather than delete them.
        return Ok(Answer::Moved(json!({
            "error": "moved",
            "message": format!("this user moved to {}", moved.new_homeserver),
            "moved": {
                "new_homeserver": moved.new_homeserver,
                "migration_timestamp": moved.timestamp,
                "migration_signature": moved.signature,
            },
        })));
    }
    let Some(local) = local.filter(|u| u.homeserver.is_empty()) else {
        return Ok(Answer::NotFound(
            json!({ "error": "unknown_user", "message": "no such user homed here" }),
        ));
    };
    remote_users::track_peer(&fed.services, user, from).await?;
    let t = now();
    let push_token = fed.services.server_key.sign_jws(
        {
            let mut header = serde_json::Map::new();
            header.insert("typ".into(), Value::from("hearth-push+jwt"));
            header
        },
        &json!({
            "iss": fed.services.origin,
            "aud": from,
            "sub": user,
            "scope": "push",
            "iat": t,
            "exp": t + PUSH_TOKEN_SECS,
        }),
    );
    Ok(Answer::Done(json!({
        "user": PublicUser::of(&local, &fed.services.origin),
        "push_token": push_token,
        "version": version.0.to_string(),
    })))
}

fn not_home(message: impl Into<String>) -> Answer {
    Answer::Forbidden(json!({ "error": "not_home_server", "message": message.into() }))
}

/// The user a profile-carrying call is about, checked to be homed at the sender.
fn announced_user(from: &str, body: &Value) -> Result<Result<UserId, Answer>, FederationError> {
    let user = body["user"]["id"]
        .as_str()
        .and_then(UserId::parse)
        .ok_or_else(|| FederationError::Invalid("user.id is not a user id".into()))?;
    if body["user"]["homeserver"].as_str() != Some(from) {
        return Ok(Err(not_home(format!(
            "{from} may only announce users homed there"
        ))));
    }
    Ok(Ok(user))
}

/// Whether `from` may speak for `user` here: not a user homed here, not a shadow of a
/// user homed elsewhere, not a user the directory holds for another home (unless `proven`
/// by the user's certificate, against an entry that was not).
fn check_home(
    tx: &Tx,
    user: UserId,
    from: &str,
    proven: bool,
) -> Result<Option<Answer>, StoreError> {
    if let Some(u) = tx.get(USER, user)? {
        if u.homeserver.is_empty() {
            return Ok(Some(not_home("this user is homed here")));
        }
        if u.homeserver != from {
            return Ok(Some(not_home(format!(
                "this user is homed at {}, not {from}",
                u.homeserver
            ))));
        }
    } else if let Some(entry) = tx.get(DIRECTORY, user)? {
        let displaces = proven && !remote_users::proven_home(tx, user, &entry.home)?;
        if entry.home != from && !displaces {
            return Ok(Some(not_home(format!(
                "this user is homed at {}, not {from}",
                entry.home
            ))));
        }
    }
    Ok(None)
}

/// Records a profile the user's home `from` announced (call `id`) in the directory.
fn record_announced(
    tx: &Tx,
    user: UserId,
    from: &str,
    id: u64,
    profile: &Value,
    cap: usize,
) -> Result<bool, StoreError> {
    let (username, profile) = profile_from_json(profile);
    remote_users::record(
        tx,
        &RemoteUser {
            id: user,
            home: from.to_string(),
            username,
            profile,
            version: id,
            updated_at: now(),
        },
        cap,
    )
}

/// `user_created` from the user's home: recorded in the directory.
pub async fn user_created(
    fed: &Federation,
    from: &str,
    body: &Value,
) -> Result<Answer, FederationError> {
    let id = super::call_id(body)?;
    let user = match announced_user(from, body)? {
        Ok(user) => user,
        Err(refused) => return Ok(refused),
    };
    // The user's own word, if the home sent it: a device certificate naming the sender.
    let proven = body["certificate"].as_str().is_some_and(|certificate| {
        crate::auth::device_cert::verify_device_certificate(certificate, now()).is_ok_and(|cert| {
            UserId::parse(&cert.sub) == Some(user)
                && crate::federation::normalize_origin(&cert.homeserver)
                    .ok()
                    .as_deref()
                    == Some(from)
        })
    });
    let from = from.to_string();
    let profile = body["user"].clone();
    let cap = fed.services.config.federation.directory_max_per_peer;
    fed.services
        .store
        .write(move |tx| {
            if let Some(refused) = check_home(tx, user, &from, proven)? {
                return Ok(refused);
            }
            let tombstone = lifecycle::deleted_at(tx, user, &from)?;
            if tombstone.is_some_and(|deleted| deleted > id) {
                // Announced before the deletion we already applied.
                return Ok(Answer::Done(json!({ "recorded": false })));
            }
            if !first_delivery(tx, &from, id)? {
                return Ok(Answer::Done(json!({ "recorded": false })));
            }
            if tombstone.is_some() {
                // The home made the account again after deleting it.
                lifecycle::unbury(tx, user, &from)?;
            }
            let recorded = record_announced(tx, user, &from, id, &profile, cap)?;
            if recorded && proven {
                tx.put(DIRECTORY_PROVEN, user, &from)?;
            } else if recorded && !remote_users::proven_home(tx, user, &from)? {
                tx.delete(DIRECTORY_PROVEN, user)?;
            }
            Ok(Answer::Done(json!({ "recorded": recorded })))
        })
        .await
}

/// `user_deleted` from the user's home: the shadow account goes, with its access.
pub async fn user_deleted(
    fed: &Federation,
    from: &str,
    body: &Value,
) -> Result<Answer, FederationError> {
    let call: UserRef = super::parse(body)?;
    let id = super::typed_call_id(call.id.as_deref())?;
    let user = call.user_id;
    let from = from.to_string();
    let answer = fed
        .services
        .store
        .write(move |tx| {
            if let Some(refused) = check_home(tx, user, &from, false)? {
                return Ok::<_, FederationError>(refused);
            }
            if !first_delivery(tx, &from, id)? {
                return Ok(Answer::Done(json!({ "removed": false })));
            }
            let known = tx.contains(USER, user)?;
            remove_user_everywhere(tx, user)?;
            bury(tx, user, &from, id)?;
            Ok(Answer::Done(json!({ "removed": known })))
        })
        .await?;
    if matches!(answer, Answer::Done(_)) {
        fed.services.signed_out(user, None);
    }
    Ok(answer)
}

/// `profile_updated` from the user's home: applied to a synced shadow and the directory.
pub async fn profile_updated(
    fed: &Federation,
    from: &str,
    body: &Value,
) -> Result<Answer, FederationError> {
    let id = super::call_id(body)?;
    let user = match announced_user(from, body)? {
        Ok(user) => user,
        Err(refused) => return Ok(refused),
    };
    let from = from.to_string();
    let profile = body["user"].clone();
    let cap = fed.services.config.federation.directory_max_per_peer;
    fed.services
        .store
        .write(move |tx| {
            if let Some(refused) = check_home(tx, user, &from, false)? {
                return Ok(refused);
            }
            if !first_delivery(tx, &from, id)? {
                return Ok(Answer::Done(json!({ "applied": false })));
            }
            let mut applied = false;
            if let Some(mut shadow) = tx.get(USER, user)? {
                applied = apply_home_profile(tx, &mut shadow, &from, id, &profile)?;
            }
            if tx.contains(DIRECTORY, user)? {
                record_announced(tx, user, &from, id, &profile, cap)?;
            }
            Ok(Answer::Done(json!({ "applied": applied })))
        })
        .await
}
