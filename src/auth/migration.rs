//! Migration Proofs (mzchat's flow): `migration_signature` is the user's identity key
//! K_id's Ed25519 signature over the bytes `new_homeserver|migration_timestamp`. Making
//! and checking them is pure; applying a migration is federation's.

use crate::model::UserId;

/// Why a Migration Proof is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The signature is not base64url.
    #[error("migration_signature is not base64url")]
    NotBase64,
    /// The signature does not verify.
    #[error("the migration signature does not verify with the user's identity key")]
    BadSignature,
    /// The timestamp is outside the window.
    #[error("the migration timestamp is too far from now")]
    OutOfWindow,
}

/// A Migration Proof as the client sends it.
#[derive(Debug, Clone)]
pub struct MigrationProof {
    /// The new home's origin.
    pub new_homeserver: String,
    /// Unix seconds.
    pub timestamp: u64,
    /// base64url Ed25519 signature by K_id over `new_homeserver|timestamp`.
    pub signature: String,
}

/// The signed bytes.
pub fn signed_bytes(new_homeserver: &str, timestamp: u64) -> Vec<u8> {
    format!("{new_homeserver}|{timestamp}").into_bytes()
}

/// Makes a proof (client side).
pub fn make_proof(
    identity: &ed25519_dalek::SigningKey,
    new_homeserver: &str,
    timestamp: u64,
) -> MigrationProof {
    use ed25519_dalek::Signer;
    let signature = identity.sign(&signed_bytes(new_homeserver, timestamp));
    MigrationProof {
        new_homeserver: new_homeserver.to_string(),
        timestamp,
        signature: crate::auth::jose::b64u(&signature.to_bytes()),
    }
}

/// Checks that `user`'s identity key signed the proof.
pub fn check_signature(user: UserId, proof: &MigrationProof) -> Result<(), ProofError> {
    let signature =
        crate::auth::jose::b64u_decode(&proof.signature).map_err(|_| ProofError::NotBase64)?;
    if !crate::auth::server_key::verify_raw(
        &user.0,
        &signed_bytes(&proof.new_homeserver, proof.timestamp),
        &signature,
    ) {
        return Err(ProofError::BadSignature);
    }
    Ok(())
}

/// Checks a proof's signature by `user` and that its timestamp is within `window_secs` of
/// `now` (at sign-in on the new home, where the user presents it).
pub fn check_proof(
    user: UserId,
    proof: &MigrationProof,
    now: u64,
    window_secs: u64,
) -> Result<(), ProofError> {
    check_signature(user, proof)?;
    if proof.timestamp + window_secs < now || proof.timestamp > now + window_secs {
        return Err(ProofError::OutOfWindow);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_for_their_key_text_and_time() {
        let crate::auth::jose::SigningKey::EdDsa(key) =
            crate::auth::jose::SigningKey::generate_ed25519()
        else {
            unreachable!()
        };
        let user = UserId(key.verifying_key().to_bytes());
        let proof = make_proof(&key, "http://b.example", 1000);
        assert!(check_proof(user, &proof, 1000, 600).is_ok());
        assert!(check_proof(user, &proof, 1000 + 601, 600).is_err());
        let mut moved = proof.clone();
        moved.new_homeserver = "http://evil.example".into();
        assert!(check_proof(user, &moved, 1000, 600).is_err());
        assert!(check_proof(UserId([9; 32]), &proof, 1000, 600).is_err());
    }
}
