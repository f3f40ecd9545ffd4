//! `device_removed` (home → peers that keep a shadow of the user): `{id, user_id, jkt,
//! removed_at}`. A user removed (or signed out) one of their devices at home; the host
//! ends that device's session here and refuses its key as the home does: the certificate
//! grant here, and the home's tokens for the key issued before the removal. Only the
//! user's home may send it.

use super::Answer;
use crate::federation::Federation;
use crate::federation::FederationError;
use crate::service::lifecycle::DeviceRemoval;
use crate::service::outbox::DeviceRemoved;
use serde_json::{json, Value};

/// Longest device thumbprint accepted (a SHA-256 in base64url is 43 characters).
const MAX_JKT_LEN: usize = 128;

/// Applies `device_removed` from `from`.
pub async fn device_removed(
    fed: &Federation,
    from: &str,
    body: &Value,
) -> Result<Answer, FederationError> {
    let call: DeviceRemoved = super::parse(body)?;
    let id = super::typed_call_id(call.id.as_deref())?;
    let user = call.user_id;
    let jkt = Some(call.jkt.as_str())
        .filter(|j| {
            !j.is_empty()
                && j.len() <= MAX_JKT_LEN
                && j.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .ok_or_else(|| FederationError::Invalid("jkt is not a key thumbprint".into()))?
        .to_string();
    // A removal time ahead of our clock would refuse the key longer than the home does.
    let removed_at = call.removed_at.min(crate::system::now());
    let removal = fed
        .services
        .apply_device_removed(from.to_string(), id, user, jkt, removed_at)
        .await?;
    Ok(match removal {
        DeviceRemoval::UnknownUser => Answer::Done(json!({ "applied": false })),
        DeviceRemoval::NotHome => Answer::Forbidden(json!({
            "error": "not_home",
            "message": format!("{from} is not this user's home"),
        })),
        DeviceRemoval::Applied(applied) => Answer::Done(json!({ "applied": applied })),
    })
}
