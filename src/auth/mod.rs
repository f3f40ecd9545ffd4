//! Authentication primitives for Hearth: JOSE (JWS/JWK), DPoP proofs (RFC 9449),
//! server-signed access tokens, device certificates, password hashing, the
//! client-side wrap of the identity key, and Web Push payload encryption with the box's
//! VAPID key.
//!
//! Everything here is pure computation: no files, no network, no clock. Callers
//! pass the current time as unix seconds (`now`).

pub mod device_cert;
pub mod device_link;
pub mod dpop;
pub mod jose;
pub mod keywrap;
pub mod migration;
pub mod password;
pub mod server_key;
pub mod tokens;
pub mod webpush;

pub use device_cert::{CertError, DeviceCertificate};
pub use dpop::{DpopConfig, DpopError, DpopRequest, DpopVerifier, VerifiedProof};
pub use jose::{JoseError, Jws, PublicJwk, SigningKey};
pub use keywrap::WrapError;
pub use password::{PasswordError, PasswordParams};
pub use server_key::ServerKey;
pub use tokens::{AccessClaims, AccessTokenCache, TokenError};

/// Returns `N` bytes from the operating system's CSPRNG.
///
/// Used where the public signature has no error channel (key generation,
/// token ids, proof ids). If the OS cannot supply randomness there is no safe
/// way to continue, since any fallback would mint guessable secrets, so this is
/// the module's one deliberate panic. It is not reachable from request input.
pub(crate) fn random_array<const N: usize>() -> [u8; N] {
    match try_random_array() {
        Ok(bytes) => bytes,
        Err(e) => panic!("operating system random number generator failed: {e}"),
    }
}

/// Returns `N` bytes from the operating system's CSPRNG, or the OS error.
pub(crate) fn try_random_array<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}

/// Compares two byte strings without an early exit, so the time taken does
/// not reveal how long a matching prefix an attacker has guessed.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The OAuth grant type of the device-certificate grant (K_id vouches for K_dev).
pub const DEVICE_CERTIFICATE_GRANT: &str = "urn:hearth:params:oauth:grant-type:device-certificate";
