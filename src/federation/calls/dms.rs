//! Calls about direct messages, from the box hosting a DM to the homes of its
//! participants, so that each home lists every DM its users are in, also while the host
//! is down.
//!
//! - `dm_joined` (host → the home of each participant homed elsewhere, queued in the
//!   commit of the change): `{id, dm: {id, kind, owner, name, recipients, created_at}}`,
//!   the DM as it is now, after it was opened, renamed, or someone was added or removed.
//!   The home lists it for each participant homed there under the sender's origin (a host
//!   speaks only for the DMs it hosts), unless a later call's description is applied
//!   already. Answer 200 `{recorded: n}`.
//! - `dm_left` (host → the home of whoever left or was removed): `{id, dm_id, user_ids}`.
//!   The home stops listing it for them. Answer 200 `{removed: n}`.

use super::Answer;
use crate::federation::{Federation, FederationError};
use crate::service::dms::{DmJoined, DmLeft};
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
    let recorded = fed.services.dm_joined_from(from, id, call.dm).await?;
    Ok(Answer::Done(json!({ "recorded": recorded })))
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
