//! Push Delegation Tokens as the home checks them when a host relays a notification:
//! signature and claims here (pure); revocation against the stored grants in [`super::relay`].

use super::super::Answer;
use super::TOKEN_TYP;
use crate::auth::jose::{verify_ed25519_jws, Jws};
use crate::model::UserId;
use serde_json::{json, Value};

/// Why a Push Delegation Token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Not a compact JWS of the right type and claims.
    Malformed(String),
    /// Not signed by this server's key (or not issued by this origin).
    NotOurs,
    /// Its scope is not `push`.
    WrongScope,
    /// Issued to another server than the caller.
    WrongAudience(String),
    /// Issued for another user than the notification's.
    OtherUser,
    /// Past its `exp`.
    Expired,
    /// Revoked (by the user, or by removing the peer), or never recorded here.
    Revoked,
}

impl TokenRefusal {
    /// The 403 answer for this refusal.
    pub fn answer(&self, caller: &str) -> Answer {
        let (code, message) = match self {
            TokenRefusal::Malformed(why) => (
                "invalid_push_token",
                format!("the push token is malformed: {why}"),
            ),
            TokenRefusal::NotOurs => (
                "invalid_push_token",
                "the push token was not issued by this server (bad signature)".to_string(),
            ),
            TokenRefusal::WrongScope => (
                "invalid_push_token",
                "the token does not grant push".to_string(),
            ),
            TokenRefusal::WrongAudience(aud) => (
                "invalid_push_token",
                format!("the push token was issued to {aud}, not to {caller}"),
            ),
            TokenRefusal::OtherUser => (
                "invalid_push_token",
                "the push token belongs to another user".to_string(),
            ),
            TokenRefusal::Expired => (
                "push_token_expired",
                "the push token has expired".to_string(),
            ),
            TokenRefusal::Revoked => (
                "push_token_revoked",
                "the push token was revoked".to_string(),
            ),
        };
        Answer::Forbidden(json!({ "error": code, "message": message }))
    }
}

/// Checks a Push Delegation Token's signature and claims (everything but revocation);
/// returns its `jti`. Pure: callers pass the key, origins and time.
pub fn verify_token(
    token: &str,
    own_key: &[u8; 32],
    own_origin: &str,
    caller: &str,
    user: UserId,
    now: u64,
) -> Result<String, TokenRefusal> {
    let jws = Jws::parse(token).map_err(|e| TokenRefusal::Malformed(e.to_string()))?;
    if jws.header_str("typ") != Some(TOKEN_TYP) {
        return Err(TokenRefusal::Malformed("not a push token".into()));
    }
    verify_ed25519_jws(&jws, own_key).map_err(|_| TokenRefusal::NotOurs)?;
    if jws.claim_str("iss") != Some(own_origin) {
        return Err(TokenRefusal::NotOurs);
    }
    if jws.claim_str("scope") != Some("push") {
        return Err(TokenRefusal::WrongScope);
    }
    let aud = jws.claim_str("aud").unwrap_or("");
    if aud != caller {
        return Err(TokenRefusal::WrongAudience(aud.to_string()));
    }
    if jws.claim_str("sub") != Some(user.to_text().as_str()) {
        return Err(TokenRefusal::OtherUser);
    }
    let exp = jws
        .claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or_else(|| TokenRefusal::Malformed("no exp".into()))?;
    if exp <= now {
        return Err(TokenRefusal::Expired);
    }
    // Tokens without an id predate revocation records: they cannot be checked, so they
    // count as revoked (the host gets a new one at its next VerifyUser).
    jws.claim_str("jti")
        .filter(|j| !j.is_empty() && j.len() <= 64)
        .map(str::to_string)
        .ok_or(TokenRefusal::Revoked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::server_key::ServerKey;

    const HOME: &str = "http://home.example";
    const HOST: &str = "http://host.example";

    fn token(key: &ServerKey, claims: Value) -> String {
        let mut header = serde_json::Map::new();
        header.insert("typ".into(), Value::from(TOKEN_TYP));
        key.sign_jws(header, &claims)
    }

    #[test]
    fn push_tokens_are_checked_claim_by_claim() {
        let key = ServerKey::generate();
        let public = key.public_bytes();
        let user = UserId([1; 32]);
        let good = json!({"iss": HOME, "aud": HOST, "sub": user, "scope": "push",
                          "iat": 100, "exp": 200, "jti": "abc"});
        let check = |t: &str| verify_token(t, &public, HOME, HOST, user, 150);
        assert_eq!(check(&token(&key, good.clone())), Ok("abc".to_string()));
        let with = |name: &str, value: Value| {
            let mut claims = good.clone();
            claims[name] = value;
            token(&key, claims)
        };
        assert_eq!(
            check(&token(&ServerKey::generate(), good.clone())),
            Err(TokenRefusal::NotOurs)
        );
        assert_eq!(check(&with("iss", json!(HOST))), Err(TokenRefusal::NotOurs));
        assert_eq!(
            check(&with("aud", json!("http://other.example"))),
            Err(TokenRefusal::WrongAudience("http://other.example".into()))
        );
        assert_eq!(
            check(&with("sub", json!(UserId([2; 32])))),
            Err(TokenRefusal::OtherUser)
        );
        assert_eq!(
            check(&with("scope", json!("read"))),
            Err(TokenRefusal::WrongScope)
        );
        assert_eq!(check(&with("exp", json!(150))), Err(TokenRefusal::Expired));
        assert_eq!(check(&with("jti", json!(""))), Err(TokenRefusal::Revoked));
        assert!(matches!(check("a.b.c"), Err(TokenRefusal::Malformed(_))));
        let access_token = {
            let mut header = serde_json::Map::new();
            header.insert("typ".into(), Value::from("at+jwt"));
            key.sign_jws(header, &good)
        };
        assert!(matches!(
            check(&access_token),
            Err(TokenRefusal::Malformed(_))
        ));
    }
}
