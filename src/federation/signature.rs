//! Signed server-to-server requests. Every call carries `Hearth-Signature`: a compact JWS
//! (EdDSA, by the sender's server key S, header `typ` `hearth-s2s+jwt`) over
//! `{iss, aud, htm, htu, iat, jti, bsh}` — sender origin, receiver origin, method, path,
//! time, a unique id, and the base64url SHA-256 of the body. The receiver checks the
//! signature with the sender's pinned key, that it is the audience, the time window, the
//! body hash, and that the `jti` was not seen before. Pure: callers pass `now`.

use crate::auth::jose::{b64u, sha256_b64u, verify_ed25519_jws, Jws};
use crate::auth::server_key::ServerKey;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Mutex;

/// The request header that carries the signature.
pub const HEADER: &str = "Hearth-Signature";
/// The JWS `typ`.
pub const TYP: &str = "hearth-s2s+jwt";
/// The error code of a call refused for its time (the sender measures our clock and
/// tries again: see [`super::clock`]).
pub const CLOCK_SKEW: &str = "clock_skew";

/// Why a signed call was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// No or malformed signature.
    #[error("malformed server signature: {0}")]
    Malformed(String),
    /// The sender is not a peer of this server.
    #[error("{0} is not a peer of this server")]
    UnknownPeer(String),
    /// The signature does not verify with the sender's pinned key.
    #[error("the server signature does not verify with the pinned key of {0}")]
    BadSignature(String),
    /// Meant for another server.
    #[error("the call is addressed to {0}, not this server")]
    WrongAudience(String),
    /// Method or path differ from what was signed.
    #[error("the call was signed for another method or path")]
    WrongTarget,
    /// Outside the time window.
    #[error("the call's time is outside the accepted window")]
    Expired,
    /// The body is not the one signed.
    #[error("the body does not match the signed hash")]
    BodyMismatch,
    /// Seen before.
    #[error("this call was already received (replay)")]
    Replay,
}

/// What a verified signature says.
#[derive(Debug, Clone)]
pub struct SignedCall {
    /// Sender origin.
    pub iss: String,
    /// Unique id of this call.
    pub jti: String,
}

/// Signs a call from `iss` to `aud`.
pub fn sign(
    key: &ServerKey,
    iss: &str,
    aud: &str,
    method: &str,
    path: &str,
    body: &[u8],
    now: u64,
) -> String {
    let mut jti = [0u8; 16];
    crate::service::random_bytes(&mut jti);
    let mut header = Map::new();
    header.insert("typ".into(), Value::from(TYP));
    key.sign_jws(
        header,
        &json!({
            "iss": iss,
            "aud": aud,
            "htm": method,
            "htu": path,
            "iat": now,
            "jti": b64u(&jti),
            "bsh": sha256_b64u(body),
        }),
    )
}

/// The claimed sender, read without verifying (to pick the key).
pub fn peek_issuer(signature: &str) -> Result<String, SignatureError> {
    let jws = Jws::parse(signature).map_err(|e| SignatureError::Malformed(e.to_string()))?;
    jws.claim_str("iss")
        .map(str::to_string)
        .ok_or_else(|| SignatureError::Malformed("no iss".into()))
}

/// Verifies a call (everything but replay; see [`ReplayGuard`]).
#[allow(clippy::too_many_arguments)]
pub fn verify(
    signature: &str,
    sender_key: &[u8; 32],
    own_origin: &str,
    method: &str,
    path: &str,
    body: &[u8],
    now: u64,
    window_secs: u64,
) -> Result<SignedCall, SignatureError> {
    let jws = Jws::parse(signature).map_err(|e| SignatureError::Malformed(e.to_string()))?;
    let iss = jws
        .claim_str("iss")
        .ok_or_else(|| SignatureError::Malformed("no iss".into()))?
        .to_string();
    if jws.header_str("typ") != Some(TYP) {
        return Err(SignatureError::Malformed("wrong typ".into()));
    }
    verify_ed25519_jws(&jws, sender_key).map_err(|_| SignatureError::BadSignature(iss.clone()))?;
    let aud = jws.claim_str("aud").unwrap_or("");
    if aud != own_origin {
        return Err(SignatureError::WrongAudience(aud.to_string()));
    }
    if jws.claim_str("htm") != Some(method) || jws.claim_str("htu") != Some(path) {
        return Err(SignatureError::WrongTarget);
    }
    let iat = jws
        .claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(SignatureError::Expired)?;
    if iat + window_secs < now || iat > now + window_secs {
        return Err(SignatureError::Expired);
    }
    if jws.claim_str("bsh") != Some(sha256_b64u(body).as_str()) {
        return Err(SignatureError::BodyMismatch);
    }
    let jti = jws
        .claim_str("jti")
        .filter(|j| !j.is_empty() && j.len() <= 64)
        .ok_or_else(|| SignatureError::Malformed("bad jti".into()))?
        .to_string();
    Ok(SignedCall { iss, jti })
}

/// Remembers call ids for twice the time window, bounded in size: when full, calls are
/// refused (never forgotten early), so a replay can never slip through.
pub struct ReplayGuard {
    seen: Mutex<HashMap<(String, String), u64>>,
    capacity: usize,
}

impl ReplayGuard {
    /// A guard holding at most `capacity` ids.
    pub fn new(capacity: usize) -> ReplayGuard {
        ReplayGuard {
            seen: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// Records the call; fails if it was seen (or the guard is full of live ids).
    pub fn check(
        &self,
        call: &SignedCall,
        now: u64,
        window_secs: u64,
    ) -> Result<(), SignatureError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= self.capacity {
            seen.retain(|_, expires| *expires > now);
            if seen.len() >= self.capacity {
                return Err(SignatureError::Replay);
            }
        }
        let key = (call.iss.clone(), call.jti.clone());
        if seen.get(&key).is_some_and(|expires| *expires > now) {
            return Err(SignatureError::Replay);
        }
        seen.insert(key, now + 2 * window_secs + 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "http://a.example";
    const B: &str = "http://b.example";

    #[test]
    fn a_signed_call_verifies_once_and_only_as_signed() {
        let key = ServerKey::generate();
        let public = key.public_bytes();
        let body = br#"{"user":"x"}"#;
        let sig = sign(&key, A, B, "POST", "/federation/v1/verify_user", body, 1000);
        assert_eq!(peek_issuer(&sig).unwrap(), A);
        let call = verify(
            &sig,
            &public,
            B,
            "POST",
            "/federation/v1/verify_user",
            body,
            1000,
            60,
        )
        .unwrap();
        let guard = ReplayGuard::new(10);
        guard.check(&call, 1000, 60).unwrap();
        assert_eq!(guard.check(&call, 1001, 60), Err(SignatureError::Replay));

        let other = ServerKey::generate().public_bytes();
        assert!(matches!(
            verify(
                &sig,
                &other,
                B,
                "POST",
                "/federation/v1/verify_user",
                body,
                1000,
                60
            ),
            Err(SignatureError::BadSignature(_))
        ));
        assert!(matches!(
            verify(
                &sig,
                &public,
                A,
                "POST",
                "/federation/v1/verify_user",
                body,
                1000,
                60
            ),
            Err(SignatureError::WrongAudience(_))
        ));
        assert_eq!(
            verify(
                &sig,
                &public,
                B,
                "POST",
                "/federation/v1/other",
                body,
                1000,
                60
            )
            .unwrap_err(),
            SignatureError::WrongTarget
        );
        assert_eq!(
            verify(
                &sig,
                &public,
                B,
                "POST",
                "/federation/v1/verify_user",
                b"{}",
                1000,
                60
            )
            .unwrap_err(),
            SignatureError::BodyMismatch
        );
        assert_eq!(
            verify(
                &sig,
                &public,
                B,
                "POST",
                "/federation/v1/verify_user",
                body,
                1100,
                60
            )
            .unwrap_err(),
            SignatureError::Expired
        );
        assert!(matches!(
            peek_issuer("garbage"),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn a_full_replay_guard_refuses_rather_than_forgets() {
        let guard = ReplayGuard::new(2);
        let call = |j: &str| SignedCall {
            iss: A.into(),
            jti: j.into(),
        };
        guard.check(&call("1"), 100, 60).unwrap();
        guard.check(&call("2"), 100, 60).unwrap();
        assert_eq!(
            guard.check(&call("3"), 100, 60),
            Err(SignatureError::Replay)
        );
        // Once the old ids expire there is room again.
        guard.check(&call("3"), 300, 60).unwrap();
    }
}
