//! PropagateBan (host → home): `{id, user_id, guild_id, guild_name, reason}`. When a guild
//! bans a user whose home is another server, the host queues this call in the ban's
//! commit. The home records a ban notification (once per host and call id) and answers
//! 200 `{"recorded": true}` (`{"duplicate": true}` for a repeat), or 404 if the user is not
//! homed there. What the home does beyond recording is its administrators' policy: bans
//! stay local to the host; the home only keeps the notice, listed to its administrators
//! at `GET /api/v1/admin/ban-notifications`.

use super::Answer;
use crate::federation::Federation;
use crate::federation::FederationError;
use crate::service::ban_notices;
use crate::service::outbox::{Call, PropagateBan};
use serde_json::{json, Value};

/// The call's name.
pub const CALL: &str = Call::PROPAGATE_BAN;

/// Handles PropagateBan from `from` (a verified peer).
pub async fn propagate_ban(
    fed: &Federation,
    from: &str,
    body: &Value,
) -> Result<Answer, FederationError> {
    let call: PropagateBan = super::parse(body)?;
    let call_id = super::typed_call_id(call.id.as_deref())?;
    let notification = ban_notices::notification(
        call_id,
        from,
        call.user_id,
        call.guild_id,
        &call.guild_name,
        &call.reason,
    );
    let recorded = ban_notices::record(&fed.services, notification).await?;
    Ok(match recorded {
        None => Answer::NotFound(
            json!({ "error": "unknown_user", "message": "no such user homed here" }),
        ),
        Some(true) => Answer::Done(json!({ "recorded": true })),
        Some(false) => Answer::Done(json!({ "duplicate": true })),
    })
}
