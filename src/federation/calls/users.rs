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
//! are deduplicated with `first_delivery`. The rules live in `service::shadows`; here the
//! calls are read and their results answered.

use super::Answer;
use crate::federation::{Federation, FederationError};
use crate::model::UserId;
use crate::service::outbox::{ProfileUpdated, UserCreated, UserRef};
use crate::service::profiles::ProfileDocument;
use crate::service::profiles::PublicUser;
use crate::service::shadows::{Announced, Verified};
use serde::Serialize;
use serde_json::json;

/// VerifyUser's answer for a user homed here: `{user, push_token?, version}`.
#[derive(Serialize)]
struct VerifyUserAnswer {
    /// The user's profile.
    user: PublicUser,
    /// The Push Delegation Token for the asking host, unless the user revoked push there.
    #[serde(skip_serializing_if = "Option::is_none")]
    push_token: Option<String>,
    /// The profile's version (an id, as a decimal string).
    version: String,
}

/// Answers VerifyUser for a user homed here, and notes that `from` keeps their shadow.
pub async fn verify_user(
    fed: &Federation,
    from: &str,
    user: UserId,
) -> Result<Answer, FederationError> {
    Ok(match fed.services.verify_user(from, user).await? {
        Verified::Moved(moved) => Answer::Moved(json!({
            "error": "moved",
            "message": format!("this user moved to {}", moved.new_homeserver),
            "moved": {
                "new_homeserver": moved.new_homeserver,
                "migration_timestamp": moved.timestamp,
                "migration_signature": moved.signature,
            },
        })),
        Verified::Unknown => Answer::NotFound(
            json!({ "error": "unknown_user", "message": "no such user homed here" }),
        ),
        Verified::Homed {
            user,
            push_token,
            version,
        } => Answer::Done(json!(VerifyUserAnswer {
            user,
            push_token,
            version: version.0.to_string(),
        })),
    })
}

fn not_home(message: impl Into<String>) -> Answer {
    Answer::Forbidden(json!({ "error": "not_home_server", "message": message.into() }))
}

/// The user a profile-carrying call is about.
fn announced_user(profile: &ProfileDocument) -> Result<UserId, FederationError> {
    profile
        .user_id()
        .ok_or_else(|| FederationError::Invalid("user.id is not a user id".into()))
}

/// The answer to an announcement: refused, or `{field: changed}`.
fn answer(announced: Announced, field: &str) -> Answer {
    match announced {
        Announced::NotHome(message) => not_home(message),
        Announced::Done(changed) => Answer::Done(json!({ field: changed })),
    }
}

/// `user_created` from the user's home: recorded in the directory.
pub async fn user_created(
    fed: &Federation,
    from: &str,
    call: UserCreated,
) -> Result<Answer, FederationError> {
    let id = super::typed_call_id(call.id.as_deref())?;
    let user = announced_user(&call.user)?;
    let announced = fed
        .services
        .user_created(from, id, user, call.user, call.certificate.as_deref())
        .await?;
    Ok(answer(announced, "recorded"))
}

/// `user_deleted` from the user's home: the shadow account goes, with its access.
pub async fn user_deleted(
    fed: &Federation,
    from: &str,
    call: UserRef,
) -> Result<Answer, FederationError> {
    let id = super::typed_call_id(call.id.as_deref())?;
    let announced = fed.services.user_deleted(from, id, call.user_id).await?;
    Ok(answer(announced, "removed"))
}

/// `profile_updated` from the user's home: applied to a synced shadow and the directory.
pub async fn profile_updated(
    fed: &Federation,
    from: &str,
    call: ProfileUpdated,
) -> Result<Answer, FederationError> {
    let id = super::typed_call_id(call.id.as_deref())?;
    let user = announced_user(&call.user)?;
    let announced = fed
        .services
        .profile_updated(from, id, user, call.user)
        .await?;
    Ok(answer(announced, "applied"))
}
