//! Calls about direct messages, from the box hosting a DM to the homes of its
//! participants, so that each home lists every DM its users are in, also while the host
//! is down.
//!
//! - `dm_joined` (host → the home of each participant homed elsewhere):
//!   `{id, dm: {id, kind, owner, name, recipients, created_at}, by, shared_guild_with}`,
//!   the DM as it is now. Sent at once, answer awaited, before a DM is opened or someone
//!   is added (the opener learns of a refusal at once), and queued in the commit of every
//!   change (opened, renamed, someone added or removed). The home lists it for each
//!   participant homed there under the sender's origin (a host speaks only for the DMs
//!   it hosts), unless a later call's description is applied already. To a participant
//!   who does not list it yet it is listed only if they accept DMs from `by` (who opened
//!   it or added them): not blocked, and their `dm_policy` allows it, `shared_guild`
//!   counting guilds of the home and the host's attestation `shared_guild_with`.
//!   Answer 200 `{recorded: n}`, or 403 `{error: "dm_refused"}`.
//! - `dm_left` (host → the home of whoever left or was removed): `{id, dm_id, user_ids}`.
//!   The home stops listing it for them. Answer 200 `{removed: n}`.

use super::Answer;
use crate::federation::{Federation, FederationError};
use crate::service::dms::{DmJoined, DmLeft};
use crate::service::Error;
use serde_json::json;

/// `dm_joined`.
pub async fn dm_joined(
    fed: &Federation,
    from: &str,
    call: DmJoined,
) -> Result<Answer, FederationError> {
    let id = super::typed_call_id(call.id.as_deref())?;
    if !call.dm.kind.is_dm() {
        return Err(FederationError::Invalid(
            "dm.kind must be dm or group_dm".into(),
        ));
    }
    match fed.services.dm_joined_from(from, id, call).await {
        Ok(recorded) => Ok(Answer::Done(json!({ "recorded": recorded }))),
        Err(Error::Refused { code, message }) => Ok(Answer::Forbidden(
            json!({ "error": code, "message": message }),
        )),
        Err(e) => Err(e.into()),
    }
}

/// `dm_left`.
pub async fn dm_left(
    fed: &Federation,
    from: &str,
    call: DmLeft,
) -> Result<Answer, FederationError> {
    let id = super::typed_call_id(call.id.as_deref())?;
    let removed = fed
        .services
        .dm_left_from(from, id, call.dm_id, call.user_ids)
        .await?;
    Ok(Answer::Done(json!({ "removed": removed })))
}
