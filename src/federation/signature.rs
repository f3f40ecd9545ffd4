//! Signed server-to-server requests. Every call carries `Hearth-Signature`: a compact JWS
//! (EdDSA, by the sender's server key S, header `typ` `hearth-s2s+jwt`) over
//! `{iss, aud, htm, htu, iat, jti, bsh}` — sender origin, receiver origin, method, path,
//! time, a unique id, and the base64url SHA-256 of the body. The receiver checks the
//! signature with the sender's pinned key, that it is the audience, the time window, the
//! body hash, and that the `jti` was not seen before. Pure: callers pass `now`.
//!
//! Every answer to a verified call carries `Hearth-Signature` too: a compact JWS (EdDSA, by
//! the answering server's key, `typ` `hearth-s2s-answer+jwt`) over `{iss, rid, sta, bsh}`
//! — the answering origin, the `jti` of the call it answers, the HTTP status, and the
//! base64url SHA-256 of the answer body. The caller checks it with the pinned key of the
//! server it called, so whoever answers in its place (an mDNS spoofer, anyone on the
//! path of plain HTTP) cannot make it act on a made-up answer. The call's `jti` is the
//! caller's fresh random value, so an answer cannot be replayed to another call, and no
//! clock is needed. A challenge sent to `/.well-known/hearth` is answered the same way.

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

/// The JWS `typ` of a signed answer.
pub const ANSWER_TYP: &str = "hearth-s2s-answer+jwt";
/// Longest challenge (or call id) an answer is signed for.
pub const MAX_RID_LEN: usize = 64;

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
    /// An answer without a valid signature of the server that was called.
    #[error("the answer of {0} is not signed with its pinned key")]
    UnsignedAnswer(String),
    /// A signed answer, but to another call, with another status or body.
    #[error("the signed answer of {0} does not match the call, its status or its body")]
    AnswerMismatch(String),
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
    crate::system::random_bytes(&mut jti);
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

/// The `jti` of a call's signature (the id its answer is signed for), unverified.
pub fn peek_jti(signature: &str) -> Result<String, SignatureError> {
    let jws = Jws::parse(signature).map_err(|e| SignatureError::Malformed(e.to_string()))?;
    jws.claim_str("jti")
        .map(str::to_string)
        .ok_or_else(|| SignatureError::Malformed("no jti".into()))
}

/// Signs an answer of `iss` with `status` and `body` to the call (or challenge) `rid`.
pub fn sign_answer(key: &ServerKey, iss: &str, rid: &str, status: u16, body: &[u8]) -> String {
    let mut header = Map::new();
    header.insert("typ".into(), Value::from(ANSWER_TYP));
    key.sign_jws(
        header,
        &json!({
            "iss": iss,
            "rid": rid,
            "sta": status,
            "bsh": sha256_b64u(body),
        }),
    )
}

/// Verifies that `signature` is `peer`'s signature (with its pinned `peer_key`) of an
/// answer with `status` and `body` to the call (or challenge) `rid`.
pub fn verify_answer(
    signature: Option<&str>,
    peer_key: &[u8; 32],
    peer: &str,
    rid: &str,
    status: u16,
    body: &[u8],
) -> Result<(), SignatureError> {
    let unsigned = || SignatureError::UnsignedAnswer(peer.to_string());
    let jws = Jws::parse(signature.ok_or_else(unsigned)?).map_err(|_| unsigned())?;
    if jws.header_str("typ") != Some(ANSWER_TYP) {
        return Err(unsigned());
    }
    verify_ed25519_jws(&jws, peer_key).map_err(|_| unsigned())?;
    let matches = jws.claim_str("iss") == Some(peer)
        && jws.claim_str("rid") == Some(rid)
        && jws.claims.get("sta").and_then(Value::as_u64) == Some(u64::from(status))
        && jws.claim_str("bsh") == Some(sha256_b64u(body).as_str());
    if !matches {
        return Err(SignatureError::AnswerMismatch(peer.to_string()));
    }
    Ok(())
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
    fn an_answer_verifies_only_for_its_call_status_body_and_signer() {
        let key = ServerKey::generate();
        let public = key.public_bytes();
        let body = br#"{"error":"unknown_user"}"#;
        let sig = sign_answer(&key, A, "call-1", 404, body);
        assert_eq!(
            verify_answer(Some(&sig), &public, A, "call-1", 404, body),
            Ok(())
        );
        assert_eq!(
            verify_answer(None, &public, A, "call-1", 404, body),
            Err(SignatureError::UnsignedAnswer(A.into()))
        );
        let stranger = ServerKey::generate().public_bytes();
        assert_eq!(
            verify_answer(Some(&sig), &stranger, A, "call-1", 404, body),
            Err(SignatureError::UnsignedAnswer(A.into()))
        );
        for (peer, rid, status, body) in [
            (B, "call-1", 404, &body[..]),
            (A, "call-2", 404, &body[..]),
            (A, "call-1", 200, &body[..]),
            (A, "call-1", 404, &b"{}"[..]),
        ] {
            assert_eq!(
                verify_answer(Some(&sig), &public, peer, rid, status, body),
                Err(SignatureError::AnswerMismatch(peer.into()))
            );
        }
        // A call's signature is no answer's.
        let call = sign(&key, A, B, "POST", "/federation/v1/verify_user", body, 1);
        assert!(verify_answer(Some(&call), &public, A, "call-1", 404, body).is_err());
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
