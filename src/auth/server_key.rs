//! The homeserver's own Ed25519 signing key (access tokens, federation).

use super::jose::{self, b64u};
use serde_json::{Map, Value};

/// The server's Ed25519 key. `Debug` shows only the public half.
#[derive(Clone)]
pub struct ServerKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerKey({})", self.public_key_b64u())
    }
}

impl ServerKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        ServerKey(ed25519_dalek::SigningKey::from_bytes(&super::random_array()))
    }

    /// Restores a key from its 32-byte secret.
    pub fn from_bytes(secret: &[u8; 32]) -> Self {
        ServerKey(ed25519_dalek::SigningKey::from_bytes(secret))
    }

    /// The 32-byte secret, for persisting the key.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public key.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// The public key, base64url; also the `kid` of everything this key signs.
    pub fn public_key_b64u(&self) -> String {
        b64u(&self.public_bytes())
    }

    /// Signs `claims` as a compact EdDSA JWS. `alg` and `kid` (the public key,
    /// base64url) are set by this function and override `header_extra`.
    pub fn sign_jws(&self, mut header_extra: Map<String, Value>, claims: &Value) -> String {
        header_extra.insert("kid".into(), Value::from(self.public_key_b64u()));
        jose::sign_compact(header_extra, claims, "EdDSA", |input| {
            self.sign_raw(input).to_vec()
        })
    }

    /// A raw Ed25519 signature over `msg`.
    pub fn sign_raw(&self, msg: &[u8]) -> [u8; 64] {
        ed25519_dalek::Signer::sign(&self.0, msg).to_bytes()
    }
}

/// Strictly verifies a raw Ed25519 signature; any malformed input is `false`.
pub fn verify_raw(public: &[u8; 32], msg: &[u8], sig: &[u8]) -> bool {
    jose::ed25519_verify(public, msg, sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jose::{verify_ed25519_jws, Jws};
    use serde_json::json;

    #[test]
    fn raw_and_jws_signatures() {
        let key = ServerKey::generate();
        let restored = ServerKey::from_bytes(&key.to_bytes());
        assert_eq!(restored.public_bytes(), key.public_bytes());

        let sig = key.sign_raw(b"msg");
        assert!(verify_raw(&key.public_bytes(), b"msg", &sig));
        assert!(!verify_raw(&key.public_bytes(), b"other", &sig));
        assert!(!verify_raw(&key.public_bytes(), b"msg", &sig[..63]));
        assert!(!verify_raw(
            &ServerKey::generate().public_bytes(),
            b"msg",
            &sig
        ));

        let mut extra = Map::new();
        extra.insert("alg".into(), json!("none")); // must be overridden
        extra.insert("typ".into(), json!("x+jwt"));
        let jws = Jws::parse(&key.sign_jws(extra, &json!({"a": 1}))).unwrap();
        assert_eq!(jws.header_str("alg"), Some("EdDSA"));
        assert_eq!(jws.header_str("typ"), Some("x+jwt"));
        assert_eq!(jws.header_str("kid"), Some(key.public_key_b64u().as_str()));
        verify_ed25519_jws(&jws, &key.public_bytes()).unwrap();
        assert!(!format!("{key:?}").contains(&b64u(&key.to_bytes())));
    }
}
