//! Minimal JOSE: base64url, public JWKs (P-256 and Ed25519) with RFC 7638
//! thumbprints, and compact JWS signing/verification for ES256 and EdDSA.
//!
//! Only asymmetric algorithms exist here, so "none" and HMAC algorithms can
//! never be accepted by construction.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Largest compact JWS we are willing to parse, in bytes.
pub const MAX_JWS_LEN: usize = 8 * 1024;

const TAG_ES256: u8 = 1;
const TAG_EDDSA: u8 = 2;

/// Why a JOSE object was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    #[error("invalid base64url")]
    InvalidBase64,
    #[error("JWS longer than {MAX_JWS_LEN} bytes")]
    TooLarge,
    #[error("JWS must be three non-empty dot-separated parts")]
    Malformed,
    #[error("JWS part is not valid JSON")]
    InvalidJson,
    #[error("JWS header is not a JSON object")]
    HeaderNotObject,
    #[error("JWS payload is not a JSON object")]
    ClaimsNotObject,
    #[error("JWS header has no alg")]
    MissingAlg,
    #[error("unsupported JWS alg")]
    UnsupportedAlgorithm,
    #[error("JWS alg does not match the key type")]
    AlgorithmMismatch,
    #[error("JWS uses critical header extensions")]
    UnsupportedCritical,
    #[error("signature verification failed")]
    BadSignature,
    #[error("JWK is not a JSON object")]
    JwkNotObject,
    #[error("JWK contains a private key")]
    PrivateKeyInJwk,
    #[error("unsupported JWK key type or curve")]
    UnsupportedKeyType,
    #[error("JWK member missing or invalid: {0}")]
    InvalidJwkMember(&'static str),
    #[error("public key is not a valid curve point")]
    InvalidPoint,
    #[error("invalid private key encoding")]
    InvalidPrivateKey,
}

/// Base64url without padding (RFC 7515 §2).
pub fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; padding, other alphabets and
/// non-canonical trailing bits are errors.
pub fn b64u_decode(s: &str) -> Result<Vec<u8>, JoseError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JoseError::InvalidBase64)
}

/// base64url(SHA-256(data)), as used for thumbprints and `ath`.
pub fn sha256_b64u(data: &[u8]) -> String {
    b64u(&Sha256::digest(data))
}

/// A public key as carried in a JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicJwk {
    P256 { x: [u8; 32], y: [u8; 32] },
    Ed25519 { x: [u8; 32] },
}

impl PublicJwk {
    /// Parses an EC P-256 or OKP Ed25519 public JWK, checking that the point
    /// is valid. A JWK carrying the private member `d` is refused outright.
    pub fn from_json(v: &Value) -> Result<Self, JoseError> {
        let obj = v.as_object().ok_or(JoseError::JwkNotObject)?;
        if obj.contains_key("d") {
            return Err(JoseError::PrivateKeyInJwk);
        }
        let kty = str_member(obj, "kty")?;
        let crv = str_member(obj, "crv")?;
        match (kty, crv) {
            ("EC", "P-256") => {
                let (x, y) = (coordinate(obj, "x")?, coordinate(obj, "y")?);
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&uncompressed_point(&x, &y))
                    .map_err(|_| JoseError::InvalidPoint)?;
                Ok(PublicJwk::P256 { x, y })
            }
            ("OKP", "Ed25519") => {
                let x = coordinate(obj, "x")?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| JoseError::InvalidPoint)?;
                // Small-order keys make "valid" signatures trivial to forge.
                if key.is_weak() {
                    return Err(JoseError::InvalidPoint);
                }
                Ok(PublicJwk::Ed25519 { x })
            }
            _ => Err(JoseError::UnsupportedKeyType),
        }
    }

    /// The JWK with only its required members.
    pub fn to_json(&self) -> Value {
        match self {
            PublicJwk::P256 { x, y } => serde_json::json!({
                "kty": "EC", "crv": "P-256", "x": b64u(x), "y": b64u(y),
            }),
            PublicJwk::Ed25519 { x } => serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64u(x),
            }),
        }
    }

    /// RFC 7638 thumbprint: SHA-256 over the required members in
    /// lexicographic order with no whitespace, base64url-encoded.
    pub fn thumbprint(&self) -> String {
        // Built by hand rather than through serde_json so the member order
        // cannot change with serde_json's feature flags. Base64url values
        // never need JSON escaping.
        let canonical = match self {
            PublicJwk::P256 { x, y } => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                b64u(x),
                b64u(y)
            ),
            PublicJwk::Ed25519 { x } => {
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64u(x))
            }
        };
        sha256_b64u(canonical.as_bytes())
    }

    /// The JWS `alg` this key verifies.
    pub fn alg(&self) -> &'static str {
        match self {
            PublicJwk::P256 { .. } => "ES256",
            PublicJwk::Ed25519 { .. } => "EdDSA",
        }
    }
}

fn str_member<'a>(obj: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, JoseError> {
    obj.get(name)
        .and_then(Value::as_str)
        .ok_or(JoseError::InvalidJwkMember(name))
}

fn coordinate(obj: &Map<String, Value>, name: &'static str) -> Result<[u8; 32], JoseError> {
    let bytes =
        b64u_decode(str_member(obj, name)?).map_err(|_| JoseError::InvalidJwkMember(name))?;
    bytes
        .try_into()
        .map_err(|_| JoseError::InvalidJwkMember(name))
}

fn uncompressed_point(x: &[u8; 32], y: &[u8; 32]) -> [u8; 65] {
    let mut point = [0u8; 65];
    point[0] = 0x04;
    point[1..33].copy_from_slice(x);
    point[33..].copy_from_slice(y);
    point
}

/// A private signing key, ES256 (P-256) or EdDSA (Ed25519).
#[derive(Clone)]
pub enum SigningKey {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_dalek::SigningKey),
}

impl std::fmt::Debug for SigningKey {
    // Never print secret material; the thumbprint identifies the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SigningKey({}, {})",
            self.alg(),
            self.public_jwk().thumbprint()
        )
    }
}

impl SigningKey {
    /// A fresh random P-256 key.
    pub fn generate_es256() -> Self {
        loop {
            // Almost every 32-byte string is a valid scalar; retry on the
            // ~2^-128 chance it is zero or not below the group order.
            let secret: [u8; 32] = super::random_array();
            if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&secret) {
                return SigningKey::Es256(key);
            }
        }
    }

    /// A fresh random Ed25519 key.
    pub fn generate_ed25519() -> Self {
        SigningKey::EdDsa(ed25519_dalek::SigningKey::from_bytes(&super::random_array()))
    }

    /// The JWS `alg` this key signs with.
    pub fn alg(&self) -> &'static str {
        match self {
            SigningKey::Es256(_) => "ES256",
            SigningKey::EdDsa(_) => "EdDSA",
        }
    }

    /// The matching public JWK.
    pub fn public_jwk(&self) -> PublicJwk {
        match self {
            SigningKey::Es256(key) => {
                let point = key.verifying_key().to_sec1_point(false);
                let mut x = [0u8; 32];
                let mut y = [0u8; 32];
                // An uncompressed SEC1 point is always 0x04 || x || y.
                if let (Some(px), Some(py)) = (point.x(), point.y()) {
                    x.copy_from_slice(px);
                    y.copy_from_slice(py);
                }
                PublicJwk::P256 { x, y }
            }
            SigningKey::EdDsa(key) => PublicJwk::Ed25519 {
                x: key.verifying_key().to_bytes(),
            },
        }
    }

    /// Serializes as a 1-byte algorithm tag followed by the 32-byte secret,
    /// for storage on the client.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (tag, secret): (u8, [u8; 32]) = match self {
            SigningKey::Es256(key) => (TAG_ES256, key.to_bytes().into()),
            SigningKey::EdDsa(key) => (TAG_EDDSA, key.to_bytes()),
        };
        let mut out = Vec::with_capacity(33);
        out.push(tag);
        out.extend_from_slice(&secret);
        out
    }

    /// Inverse of [`SigningKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, JoseError> {
        let (&tag, rest) = bytes.split_first().ok_or(JoseError::InvalidPrivateKey)?;
        let secret: [u8; 32] = rest.try_into().map_err(|_| JoseError::InvalidPrivateKey)?;
        match tag {
            TAG_ES256 => p256::ecdsa::SigningKey::from_slice(&secret)
                .map(SigningKey::Es256)
                .map_err(|_| JoseError::InvalidPrivateKey),
            TAG_EDDSA => Ok(SigningKey::EdDsa(ed25519_dalek::SigningKey::from_bytes(
                &secret,
            ))),
            _ => Err(JoseError::InvalidPrivateKey),
        }
    }

    /// Signs `claims` as a compact JWS; `alg` is set in `header`.
    /// ES256 signatures use the fixed 64-byte r||s form JWS requires.
    pub fn sign_jws(&self, header: Map<String, Value>, claims: &Value) -> String {
        sign_compact(header, claims, self.alg(), |input| self.sign_bytes(input))
    }

    fn sign_bytes(&self, msg: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer as _;
        match self {
            SigningKey::Es256(key) => {
                let sig: p256::ecdsa::Signature = key.sign(msg);
                sig.to_bytes().to_vec()
            }
            SigningKey::EdDsa(key) => ed25519_dalek::Signer::sign(key, msg).to_bytes().to_vec(),
        }
    }
}

/// Builds `b64u(header).b64u(claims).b64u(sig)` with `alg` inserted in the header.
pub(crate) fn sign_compact(
    mut header: Map<String, Value>,
    claims: &Value,
    alg: &str,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> String {
    header.insert("alg".into(), Value::from(alg));
    let signing_input = format!(
        "{}.{}",
        b64u(Value::Object(header).to_string().as_bytes()),
        b64u(claims.to_string().as_bytes())
    );
    let signature = sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64u(&signature))
}

/// A parsed, not yet verified, compact JWS.
#[derive(Debug, Clone)]
pub struct Jws {
    pub header: Map<String, Value>,
    pub claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

impl Jws {
    /// Splits and decodes a compact JWS. Header and payload must be JSON
    /// objects; nothing is trusted until [`Jws::verify`] succeeds.
    pub fn parse(compact: &str) -> Result<Jws, JoseError> {
        if compact.len() > MAX_JWS_LEN {
            return Err(JoseError::TooLarge);
        }
        let mut parts = compact.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JoseError::Malformed);
        };
        if h.is_empty() || p.is_empty() || s.is_empty() {
            return Err(JoseError::Malformed);
        }
        let header = match serde_json::from_slice(&b64u_decode(h)?) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(JoseError::HeaderNotObject),
            Err(_) => return Err(JoseError::InvalidJson),
        };
        let claims: Value =
            serde_json::from_slice(&b64u_decode(p)?).map_err(|_| JoseError::InvalidJson)?;
        if !claims.is_object() {
            return Err(JoseError::ClaimsNotObject);
        }
        Ok(Jws {
            header,
            claims,
            signing_input: format!("{h}.{p}"),
            signature: b64u_decode(s)?,
        })
    }

    /// A string-valued header parameter.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// A string-valued claim.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// Verifies the signature with `key`. The header `alg` must be exactly
    /// the key's algorithm (ES256 for P-256, EdDSA for Ed25519).
    pub fn verify(&self, key: &PublicJwk) -> Result<(), JoseError> {
        // RFC 7515 §4.1.11: extensions we do not understand must be refused.
        if self.header.contains_key("crit") {
            return Err(JoseError::UnsupportedCritical);
        }
        let alg = self.header_str("alg").ok_or(JoseError::MissingAlg)?;
        let msg = self.signing_input.as_bytes();
        match (key, alg) {
            (PublicJwk::P256 { x, y }, "ES256") => {
                // ring verifies P-256 several times faster than the p256 crate.
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, uncompressed_point(x, y))
                    .verify(msg, &self.signature)
                    .map_err(|_| JoseError::BadSignature)
            }
            (PublicJwk::Ed25519 { x }, "EdDSA" | "Ed25519") => {
                ed25519_verify(x, msg, &self.signature)
            }
            (_, "ES256" | "EdDSA" | "Ed25519") => Err(JoseError::AlgorithmMismatch),
            _ => Err(JoseError::UnsupportedAlgorithm),
        }
    }
}

/// Verifies an EdDSA JWS against a raw Ed25519 public key.
pub fn verify_ed25519_jws(jws: &Jws, public_key: &[u8; 32]) -> Result<(), JoseError> {
    jws.verify(&PublicJwk::Ed25519 { x: *public_key })
}

/// Strict Ed25519 verification: rejects small-order keys and non-canonical
/// signatures, so a signature cannot be malleated into a second valid one.
pub(crate) fn ed25519_verify(public: &[u8; 32], msg: &[u8], sig: &[u8]) -> Result<(), JoseError> {
    let key =
        ed25519_dalek::VerifyingKey::from_bytes(public).map_err(|_| JoseError::InvalidPoint)?;
    let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| JoseError::BadSignature)?;
    key.verify_strict(msg, &sig)
        .map_err(|_| JoseError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The example key of RFC 9449 §4.1 (Figure 2) and §6.1 (Figure 9).
    fn rfc9449_jwk() -> Value {
        json!({"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
               "y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"})
    }

    fn compact(header: &Value, claims: &Value, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64u(header.to_string().as_bytes()),
            b64u(claims.to_string().as_bytes()),
            b64u(sig)
        )
    }

    #[test]
    fn base64url_is_strict() {
        assert_eq!(b64u(&[0xfb, 0xff]), "-_8");
        assert_eq!(b64u_decode("-_8").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(b64u_decode("AA=="), Err(JoseError::InvalidBase64));
        assert_eq!(b64u_decode("+/8"), Err(JoseError::InvalidBase64));
        assert_eq!(b64u_decode("AB"), Err(JoseError::InvalidBase64)); // trailing bits set
        assert_eq!(b64u_decode("a b"), Err(JoseError::InvalidBase64));
    }

    #[test]
    fn rfc9449_thumbprint_and_ath() {
        let jwk = PublicJwk::from_json(&rfc9449_jwk()).unwrap();
        assert_eq!(
            jwk.thumbprint(),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
        assert_eq!(PublicJwk::from_json(&jwk.to_json()).unwrap(), jwk);
        assert_eq!(jwk.alg(), "ES256");
        // RFC 9449 §7.1, Figures 13 and 14.
        assert_eq!(
            sha256_b64u(b"Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn rfc9449_example_proof_verifies_with_ring() {
        // RFC 9449 §4.1 Figure 2: an ES256 proof signed by another implementation.
        let proof = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik\
            VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5Ij\
            oiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMj\
            U2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi\
            8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg\
            8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
        let jws = Jws::parse(proof).unwrap();
        let jwk = PublicJwk::from_json(&jws.header["jwk"]).unwrap();
        jws.verify(&jwk).unwrap();
        assert_eq!(
            jws.claim_str("htu"),
            Some("https://server.example.com/token")
        );
    }

    #[test]
    fn jwk_validation() {
        let mut with_d = rfc9449_jwk();
        with_d["d"] = json!("AAAA");
        assert_eq!(
            PublicJwk::from_json(&with_d),
            Err(JoseError::PrivateKeyInJwk)
        );

        let mut off_curve = rfc9449_jwk();
        off_curve["y"] = json!(b64u(&[7u8; 32]));
        assert_eq!(
            PublicJwk::from_json(&off_curve),
            Err(JoseError::InvalidPoint)
        );

        let mut short = rfc9449_jwk();
        short["x"] = json!("AAAA");
        assert_eq!(
            PublicJwk::from_json(&short),
            Err(JoseError::InvalidJwkMember("x"))
        );

        let rsa = json!({"kty":"RSA","n":"AQAB","e":"AQAB","crv":"x"});
        assert_eq!(
            PublicJwk::from_json(&rsa),
            Err(JoseError::UnsupportedKeyType)
        );
        assert_eq!(
            PublicJwk::from_json(&json!("x")),
            Err(JoseError::JwkNotObject)
        );

        // The Ed25519 identity point has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = json!({"kty":"OKP","crv":"Ed25519","x": b64u(&identity)});
        assert_eq!(PublicJwk::from_json(&weak), Err(JoseError::InvalidPoint));
    }

    #[test]
    fn sign_and_verify_both_algorithms() {
        for key in [SigningKey::generate_es256(), SigningKey::generate_ed25519()] {
            let claims = json!({"hello": "world"});
            let token = key.sign_jws(Map::new(), &claims);
            let jws = Jws::parse(&token).unwrap();
            assert_eq!(jws.claims, claims);
            assert_eq!(jws.header_str("alg"), Some(key.alg()));
            assert_eq!(jws.signature.len(), 64);
            let jwk = key.public_jwk();
            jws.verify(&jwk).unwrap();
            assert_eq!(PublicJwk::from_json(&jwk.to_json()).unwrap(), jwk);

            // A different key of the same type does not verify.
            let other = match key {
                SigningKey::Es256(_) => SigningKey::generate_es256(),
                SigningKey::EdDsa(_) => SigningKey::generate_ed25519(),
            };
            assert_eq!(
                jws.verify(&other.public_jwk()),
                Err(JoseError::BadSignature)
            );

            // Tampering with the payload breaks the signature.
            let mut parts: Vec<&str> = token.split('.').collect();
            let forged = b64u(br#"{"hello":"there"}"#);
            parts[1] = &forged;
            let tampered = Jws::parse(&parts.join(".")).unwrap();
            assert_eq!(tampered.verify(&jwk), Err(JoseError::BadSignature));

            // Storage round trip.
            let restored = SigningKey::from_bytes(&key.to_bytes()).unwrap();
            assert_eq!(restored.public_jwk(), jwk);
        }
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        let ec = SigningKey::generate_es256();
        let ed = SigningKey::generate_ed25519();
        let token = ed.sign_jws(Map::new(), &json!({}));
        let jws = Jws::parse(&token).unwrap();
        assert_eq!(
            jws.verify(&ec.public_jwk()),
            Err(JoseError::AlgorithmMismatch)
        );

        for alg in ["none", "HS256", "RS256", "ES384"] {
            let t = compact(&json!({"alg": alg}), &json!({}), b"sig");
            let jws = Jws::parse(&t).unwrap();
            assert_eq!(
                jws.verify(&ed.public_jwk()),
                Err(JoseError::UnsupportedAlgorithm)
            );
        }
        let t = compact(&json!({"typ": "JWT"}), &json!({}), b"sig");
        assert_eq!(
            Jws::parse(&t).unwrap().verify(&ed.public_jwk()),
            Err(JoseError::MissingAlg)
        );
        let t = compact(
            &json!({"alg": "EdDSA", "crit": ["b64"]}),
            &json!({}),
            b"sig",
        );
        assert_eq!(
            Jws::parse(&t).unwrap().verify(&ed.public_jwk()),
            Err(JoseError::UnsupportedCritical)
        );
        let PublicJwk::Ed25519 { x } = ed.public_jwk() else {
            unreachable!()
        };
        assert!(verify_ed25519_jws(&Jws::parse(&token).unwrap(), &x).is_ok());
    }

    #[test]
    fn parse_rejects_malformed_input() {
        let ok = compact(&json!({"alg": "EdDSA"}), &json!({}), b"sig");
        assert!(Jws::parse(&ok).is_ok());
        let (h, rest) = ok.split_once('.').unwrap();
        let (p, s) = rest.split_once('.').unwrap();
        assert_eq!(
            Jws::parse(&format!("{h}.{p}")).unwrap_err(),
            JoseError::Malformed
        );
        assert_eq!(
            Jws::parse(&format!("{ok}.{s}")).unwrap_err(),
            JoseError::Malformed
        );
        assert_eq!(
            Jws::parse(&format!("{h}.{p}.")).unwrap_err(),
            JoseError::Malformed
        );
        assert_eq!(
            Jws::parse(&format!(".{p}.{s}")).unwrap_err(),
            JoseError::Malformed
        );
        assert_eq!(
            Jws::parse(&format!("{h}.{p}.a=")).unwrap_err(),
            JoseError::InvalidBase64
        );
        let arr = b64u(b"[1]");
        assert_eq!(
            Jws::parse(&format!("{arr}.{p}.{s}")).unwrap_err(),
            JoseError::HeaderNotObject
        );
        assert_eq!(
            Jws::parse(&format!("{h}.{arr}.{s}")).unwrap_err(),
            JoseError::ClaimsNotObject
        );
        let junk = b64u(b"{nope");
        assert_eq!(
            Jws::parse(&format!("{junk}.{p}.{s}")).unwrap_err(),
            JoseError::InvalidJson
        );
        let big = compact(
            &json!({"alg": "EdDSA"}),
            &json!({"pad": "x".repeat(8000)}),
            b"s",
        );
        assert_eq!(Jws::parse(&big).unwrap_err(), JoseError::TooLarge);
    }

    #[test]
    fn signing_key_bytes_are_checked() {
        assert_eq!(
            SigningKey::from_bytes(&[]).unwrap_err(),
            JoseError::InvalidPrivateKey
        );
        assert_eq!(
            SigningKey::from_bytes(&[1; 32]).unwrap_err(),
            JoseError::InvalidPrivateKey
        );
        assert_eq!(
            SigningKey::from_bytes(&[9; 33]).unwrap_err(),
            JoseError::InvalidPrivateKey
        );
        // Zero is not a valid P-256 scalar.
        let mut zero = vec![TAG_ES256];
        zero.extend([0u8; 32]);
        assert_eq!(
            SigningKey::from_bytes(&zero).unwrap_err(),
            JoseError::InvalidPrivateKey
        );
    }
}
