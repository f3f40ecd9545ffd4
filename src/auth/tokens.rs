//! Access tokens (RFC 9068-style JWTs signed by the server key and bound to
//! a DPoP key via `cnf.jkt`) and opaque refresh tokens.

use super::jose::{b64u, verify_ed25519_jws, Jws};
use super::server_key::ServerKey;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// Longest access-token lifetime we mint or accept.
pub const MAX_ACCESS_TTL_SECS: u64 = 900;
/// JOSE `typ` of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The claims of a verified access token. `jkt` travels as `"cnf": {"jkt": ..}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    pub jkt: String,
}

#[derive(Deserialize)]
struct WireClaims {
    iss: String,
    sub: String,
    iat: u64,
    exp: u64,
    jti: String,
    cnf: WireCnf,
}

#[derive(Deserialize)]
struct WireCnf {
    jkt: String,
}

impl AccessClaims {
    fn to_json(&self) -> Value {
        json!({
            "iss": self.iss, "sub": self.sub, "iat": self.iat, "exp": self.exp,
            "jti": self.jti, "cnf": {"jkt": self.jkt},
        })
    }
}

/// Why an access token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed access token")]
    Malformed,
    #[error("access token has the wrong typ")]
    WrongType,
    #[error("access token alg must be EdDSA")]
    WrongAlgorithm,
    #[error("access token signature is invalid")]
    BadSignature,
    #[error("access token issuer mismatch")]
    WrongIssuer,
    #[error("access token expired")]
    Expired,
    #[error("access token issued in the future")]
    NotYetValid,
    #[error("access token lifetime exceeds {MAX_ACCESS_TTL_SECS} s")]
    LifetimeTooLong,
    #[error("access token is not bound to a key (cnf.jkt)")]
    MissingBinding,
}

/// Mints an access token for `sub`, bound to the DPoP key thumbprint `jkt`.
/// The lifetime is `ttl_secs`, capped at [`MAX_ACCESS_TTL_SECS`].
pub fn mint_access_token(
    key: &ServerKey,
    iss: &str,
    sub: &str,
    jkt: &str,
    now: u64,
    ttl_secs: u64,
) -> (String, AccessClaims) {
    let jti: [u8; 16] = super::random_array();
    let claims = AccessClaims {
        iss: iss.to_owned(),
        sub: sub.to_owned(),
        iat: now,
        exp: now.saturating_add(ttl_secs.min(MAX_ACCESS_TTL_SECS)),
        jti: b64u(&jti),
        jkt: jkt.to_owned(),
    };
    let mut header = Map::new();
    header.insert("typ".into(), Value::from(ACCESS_TOKEN_TYP));
    (key.sign_jws(header, &claims.to_json()), claims)
}

/// Reads `iss` without verifying anything, so the caller can pick the
/// issuer's key. The result is untrusted until [`verify_access_token`].
pub fn peek_issuer(token: &str) -> Result<String, TokenError> {
    let jws = Jws::parse(token).map_err(|_| TokenError::Malformed)?;
    jws.claim_str("iss")
        .map(str::to_owned)
        .ok_or(TokenError::Malformed)
}

/// Fully verifies an access token: typ `at+jwt`, alg EdDSA, signature by
/// `issuer_public`, `iss`, expiry and issue time (both with `leeway`
/// seconds of clock skew), lifetime ≤ 900 s, and presence of `cnf.jkt`.
///
/// The caller must still check that the request's DPoP proof key matches
/// the returned `jkt`.
pub fn verify_access_token(
    token: &str,
    issuer_public: &[u8; 32],
    expected_iss: &str,
    now: u64,
    leeway: u64,
) -> Result<AccessClaims, TokenError> {
    let jws = Jws::parse(token).map_err(|_| TokenError::Malformed)?;
    // Media types compare case-insensitively; RFC 9068 allows the long form.
    let typ = jws.header_str("typ").unwrap_or_default();
    if !typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYP)
        && !typ.eq_ignore_ascii_case("application/at+jwt")
    {
        return Err(TokenError::WrongType);
    }
    if jws.header_str("alg") != Some("EdDSA") {
        return Err(TokenError::WrongAlgorithm);
    }
    verify_ed25519_jws(&jws, issuer_public).map_err(|_| TokenError::BadSignature)?;

    let jkt = jws
        .claims
        .get("cnf")
        .and_then(|c| c.get("jkt"))
        .and_then(Value::as_str);
    if jkt.is_none_or(str::is_empty) {
        return Err(TokenError::MissingBinding);
    }
    let c: WireClaims = serde_json::from_value(jws.claims).map_err(|_| TokenError::Malformed)?;
    if c.iss != expected_iss {
        return Err(TokenError::WrongIssuer);
    }
    if now >= c.exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if c.iat > now.saturating_add(leeway) {
        return Err(TokenError::NotYetValid);
    }
    if c.exp
        .checked_sub(c.iat)
        .is_none_or(|ttl| ttl > MAX_ACCESS_TTL_SECS)
    {
        return Err(TokenError::LifetimeTooLong);
    }
    Ok(AccessClaims {
        iss: c.iss,
        sub: c.sub,
        iat: c.iat,
        exp: c.exp,
        jti: c.jti,
        jkt: c.cnf.jkt,
    })
}

/// A bounded cache of verified access tokens, keyed by SHA-256 of the token
/// so the bearer strings themselves are not kept. It only saves signature
/// checks: losing an entry costs one re-verification.
#[derive(Debug)]
pub struct AccessTokenCache {
    capacity: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    entries: HashMap<[u8; 32], Cached>,
    /// Latest `now` seen by `get`; `insert` has no clock, so eviction of
    /// expired entries uses this.
    now: u64,
}

/// A cached token: its claims, and until when the cache may answer for it (its `exp`, or
/// sooner for tokens whose issuer's trust can change: a peer's).
#[derive(Debug)]
struct Cached {
    claims: AccessClaims,
    until: u64,
}

impl AccessTokenCache {
    /// A cache holding at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        AccessTokenCache {
            capacity,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // A panic elsewhere cannot leave this map inconsistent, so a
        // poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached claims for `token`, unless absent or expired at `now`.
    pub fn get(&self, token: &str, now: u64) -> Option<AccessClaims> {
        let key = hash_token(token);
        let mut inner = self.lock();
        inner.now = inner.now.max(now);
        let cached = inner.entries.get(&key)?;
        if now < cached.until {
            return Some(cached.claims.clone());
        }
        inner.entries.remove(&key);
        None
    }

    /// Remembers verified claims for `token`. When full, expired entries go
    /// first; if that frees nothing, an arbitrary eighth of the cache is
    /// dropped so the next inserts do not each pay for a full sweep.
    pub fn insert(&self, token: &str, claims: AccessClaims) {
        let until = claims.exp;
        self.insert_until(token, claims, until);
    }

    /// Like [`AccessTokenCache::insert`], answering for the token only until `until` (or
    /// its `exp`, if sooner).
    pub fn insert_until(&self, token: &str, claims: AccessClaims, until: u64) {
        if self.capacity == 0 {
            return;
        }
        let key = hash_token(token);
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.entries.len() >= self.capacity && !inner.entries.contains_key(&key) {
            let now = inner.now;
            inner.entries.retain(|_, c| c.until > now);
            if inner.entries.len() >= self.capacity {
                let drop_count = (self.capacity / 8).max(1);
                let victims: Vec<[u8; 32]> =
                    inner.entries.keys().take(drop_count).copied().collect();
                for victim in victims {
                    inner.entries.remove(&victim);
                }
            }
        }
        let until = until.min(claims.exp);
        inner.entries.insert(key, Cached { claims, until });
    }

    /// Drops every cached token issued by `issuer` (a peer that was removed or pinned
    /// anew), so the next request verifies against what is pinned now.
    pub fn forget_issuer(&self, issuer: &str) {
        self.lock().entries.retain(|_, c| c.claims.iss != issuer);
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new opaque refresh token (32 random bytes, base64url) and the SHA-256
/// of it, which is all the server should store.
pub fn new_refresh_token() -> (String, [u8; 32]) {
    let token = b64u(&super::random_array::<32>());
    let hash = hash_refresh_token(&token);
    (token, hash)
}

/// SHA-256 of a refresh token as presented by the client.
pub fn hash_refresh_token(token: &str) -> [u8; 32] {
    hash_token(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jose::b64u_decode;

    const ISS: &str = "https://hearth.example";
    const NOW: u64 = 1_700_000_000;

    fn mint(key: &ServerKey) -> String {
        mint_access_token(key, ISS, "alice", "thumb", NOW, 300).0
    }

    /// Signs arbitrary claims/header with the server key, to build bad tokens.
    fn forge(key: &ServerKey, typ: &str, claims: Value) -> String {
        let mut header = Map::new();
        header.insert("typ".into(), typ.into());
        key.sign_jws(header, &claims)
    }

    #[test]
    fn mint_and_verify() {
        let key = ServerKey::generate();
        let (token, claims) = mint_access_token(&key, ISS, "alice", "thumb", NOW, 300);
        assert_eq!(claims.exp, NOW + 300);
        assert_eq!(b64u_decode(&claims.jti).unwrap().len(), 16);
        let verified = verify_access_token(&token, &key.public_bytes(), ISS, NOW + 10, 60).unwrap();
        assert_eq!(verified, claims);
        assert_eq!(peek_issuer(&token).unwrap(), ISS);
        let jws = Jws::parse(&token).unwrap();
        assert_eq!(jws.header_str("typ"), Some("at+jwt"));
        assert_eq!(jws.claims["cnf"]["jkt"], "thumb");

        let (_, long) = mint_access_token(&key, ISS, "alice", "thumb", NOW, 86_400);
        assert_eq!(long.exp - long.iat, MAX_ACCESS_TTL_SECS);
    }

    #[test]
    fn refusals() {
        let key = ServerKey::generate();
        let pk = key.public_bytes();
        let token = mint(&key);
        let verify = |t: &str, now| verify_access_token(t, &pk, ISS, now, 60);

        assert_eq!(verify(&token, NOW + 300 + 60), Err(TokenError::Expired));
        assert!(verify(&token, NOW + 300 + 59).is_ok()); // within leeway
        assert_eq!(verify(&token, NOW - 61), Err(TokenError::NotYetValid));
        assert_eq!(
            verify_access_token(&token, &ServerKey::generate().public_bytes(), ISS, NOW, 60),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify_access_token(&token, &pk, "https://evil.example", NOW, 60),
            Err(TokenError::WrongIssuer)
        );

        // Tampered payload: swap in different claims under the old signature.
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims = Jws::parse(&token).unwrap().claims;
        claims["sub"] = "mallory".into();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64u(claims.to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(verify(&tampered, NOW), Err(TokenError::BadSignature));

        assert_eq!(verify("garbage", NOW), Err(TokenError::Malformed));
        assert_eq!(peek_issuer("a.b"), Err(TokenError::Malformed));

        let base = json!({"iss": ISS, "sub": "a", "iat": NOW, "exp": NOW + 60, "jti": "j",
                          "cnf": {"jkt": "t"}});
        assert!(verify(&forge(&key, "at+jwt", base.clone()), NOW).is_ok());
        assert!(verify(&forge(&key, "application/AT+JWT", base.clone()), NOW).is_ok());
        assert_eq!(
            verify(&forge(&key, "JWT", base.clone()), NOW),
            Err(TokenError::WrongType)
        );

        let mut unbound = base.clone();
        unbound.as_object_mut().unwrap().remove("cnf");
        assert_eq!(
            verify(&forge(&key, "at+jwt", unbound), NOW),
            Err(TokenError::MissingBinding)
        );

        let mut long = base.clone();
        long["exp"] = (NOW + 901).into();
        assert_eq!(
            verify(&forge(&key, "at+jwt", long), NOW),
            Err(TokenError::LifetimeTooLong)
        );

        let mut no_sub = base.clone();
        no_sub.as_object_mut().unwrap().remove("sub");
        assert_eq!(
            verify(&forge(&key, "at+jwt", no_sub), NOW),
            Err(TokenError::Malformed)
        );

        // A DPoP-style ES256 token is refused before any signature work.
        let es = crate::auth::jose::SigningKey::generate_es256();
        let mut h = Map::new();
        h.insert("typ".into(), "at+jwt".into());
        assert_eq!(
            verify(&es.sign_jws(h, &base), NOW),
            Err(TokenError::WrongAlgorithm)
        );
    }

    #[test]
    fn cache_is_bounded_and_expires() {
        let key = ServerKey::generate();
        let cache = AccessTokenCache::new(16);
        let (token, claims) = mint_access_token(&key, ISS, "alice", "thumb", NOW, 300);
        assert_eq!(cache.get(&token, NOW), None);
        cache.insert(&token, claims.clone());
        assert_eq!(cache.get(&token, NOW + 299), Some(claims));
        assert_eq!(cache.get(&token, NOW + 300), None);
        assert!(cache.is_empty());

        for i in 0..100u64 {
            let (t, c) = mint_access_token(&key, ISS, "alice", "thumb", NOW + i, 300);
            cache.insert(&t, c);
            assert!(cache.len() <= 16);
        }
        // Expired entries are evicted first once the clock moves on.
        let small = AccessTokenCache::new(4);
        for _ in 0..4 {
            let (t, c) = mint_access_token(&key, ISS, "alice", "thumb", NOW, 300);
            small.insert(&t, c);
        }
        assert_eq!(small.len(), 4);
        small.get("unknown", NOW + 10_000);
        let (t, c) = mint_access_token(&key, ISS, "bob", "thumb", NOW + 10_000, 300);
        small.insert(&t, c.clone());
        assert_eq!(small.len(), 1);
        assert_eq!(small.get(&t, NOW + 10_001), Some(c));
        assert!(AccessTokenCache::new(0).get(&t, NOW).is_none());

        // A shorter lifetime in the cache, and forgetting an issuer's tokens.
        let cache = AccessTokenCache::new(16);
        let (t, c) = mint_access_token(&key, ISS, "carol", "thumb", NOW, 300);
        cache.insert_until(&t, c.clone(), NOW + 60);
        assert_eq!(cache.get(&t, NOW + 59), Some(c.clone()));
        assert_eq!(cache.get(&t, NOW + 60), None);
        cache.insert(&t, c.clone());
        cache.forget_issuer("https://other.example");
        assert_eq!(cache.get(&t, NOW), Some(c));
        cache.forget_issuer(ISS);
        assert_eq!(cache.get(&t, NOW), None);
    }

    #[test]
    fn refresh_tokens() {
        let (token, hash) = new_refresh_token();
        assert_eq!(b64u_decode(&token).unwrap().len(), 32);
        assert_eq!(hash_refresh_token(&token), hash);
        assert_ne!(new_refresh_token().0, token);
    }
}
