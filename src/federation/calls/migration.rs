//! Migration to a new home server, mzchat's flow exactly. The user signs in on the new
//! home B with a device certificate and a Migration Proof: `migration_signature` is K_id's
//! Ed25519 signature over the bytes `new_homeserver|migration_timestamp`. B checks it,
//! becomes the user's home, and sends `update_homeserver` to the old servers the client
//! lists; each checks the same signature and that the call comes from the new home, then
//! stops acting as home for the user. The user id never changes. A proof older than the
//! last migration applied for the user is refused, so an old proof cannot move them back.
//! The records and the moves themselves are `service::migration`; here the proof of a
//! sign-in and of `update_homeserver` is checked, and the call answered.

use super::Answer;
use crate::auth::migration::MigrationProof;
use crate::federation::Federation;
use crate::federation::FederationError;
use crate::model::*;
use crate::service::migration::{MigrationRefused, MovedAway};
use crate::service::outbox::{Call, UpdateHomeserver};
use serde_json::{json, Value};

pub use crate::service::migration::MAX_TARGETS;

/// The call an old home gets from the new one.
pub const CALL: &str = Call::UPDATE_HOMESERVER;

impl From<MigrationRefused> for FederationError {
    fn from(error: MigrationRefused) -> FederationError {
        match error {
            MigrationRefused::Store(e) => FederationError::Store(e),
            other => FederationError::Invalid(other.to_string()),
        }
    }
}

/// On the new home: applies a migration at sign-in and queues `update_homeserver` to the
/// listed old servers (which must be peers). Creates the account if this server has never
/// seen the user.
pub async fn migrate_here(
    fed: &Federation,
    user: UserId,
    proof: MigrationProof,
    targets: Vec<String>,
) -> Result<(), FederationError> {
    fed.services.check_migration(user, &proof, targets.len())?;
    let mut origins = Vec::new();
    for target in &targets {
        let origin = crate::federation::normalize_origin(target)?;
        crate::federation::peer_key(fed, &origin).await?;
        if origin != fed.services.origin && !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    fed.services.migrate_here(user, proof, origins).await?;
    Ok(())
}

/// On an old server: `update_homeserver` from the new home.
pub async fn update_homeserver(
    fed: &Federation,
    from: &str,
    body: &Value,
) -> Result<Answer, FederationError> {
    let call: UpdateHomeserver = super::parse(body)?;
    let id = super::typed_call_id(call.id.as_deref())?;
    let proof = MigrationProof {
        new_homeserver: call.new_homeserver,
        timestamp: call.migration_timestamp,
        signature: call.migration_signature,
    };
    Ok(
        match fed
            .services
            .moved_away_from_here(from, id, call.user_id, proof)
            .await?
        {
            MovedAway::Applied => Answer::Done(json!({ "applied": true })),
            MovedAway::NotFromNewHome => Answer::Forbidden(
                json!({ "error": "forbidden", "message": "only the new home server announces a migration" }),
            ),
            MovedAway::UnknownUser => {
                Answer::NotFound(json!({ "error": "unknown_user", "message": "no such user here" }))
            }
            MovedAway::Stale => Answer::Conflict(
                json!({ "error": "stale_migration", "message": "a newer migration is already applied" }),
            ),
        },
    )
}
