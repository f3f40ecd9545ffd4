//! Web Push as an application server speaks it: the payload encrypted for one
//! subscription (RFC 8291 over the `aes128gcm` content coding of RFC 8188) and the
//! VAPID `Authorization` header that names this server to the push service (RFC 8292).
//!
//! Encryption, for the subscription's P-256 key `ua_public` (`keys.p256dh`) and 16-byte
//! `auth` secret (`keys.auth`), with a fresh P-256 key pair `as` and a random 16-byte salt
//! per message:
//!
//! - `ecdh = ECDH(as_private, ua_public)` (the shared point's x coordinate);
//! - `IKM = HKDF-SHA-256(salt = auth, ikm = ecdh, info = "WebPush: info" 0x00 ua_public
//!   as_public, 32 bytes)`;
//! - `CEK = HKDF(salt, IKM, "Content-Encoding: aes128gcm" 0x00, 16)`,
//!   `NONCE = HKDF(salt, IKM, "Content-Encoding: nonce" 0x00, 12)`;
//! - one record: AES-128-GCM of `plaintext 0x02 0x00…` (the delimiter of a last record,
//!   then zero padding) under CEK and NONCE;
//! - the body: `salt ‖ rs (u32, 4096) ‖ 65 ‖ as_public ‖ record`.

use super::jose::{self, b64u, b64u_decode};
use p256::elliptic_curve::point::AffineCoordinates as _;
use p256::elliptic_curve::sec1::ToSec1Point as _;
use serde_json::{json, Map, Value};

/// The record size announced in the header: push services accept bodies of at least
/// 4096 bytes (RFC 8030 §7.2), and one record is all a notification needs.
pub const RECORD_SIZE: u32 = 4096;
/// Bytes before the record: salt, record size, key id length, key id.
const HEADER_LEN: usize = 16 + 4 + 1 + 65;
/// Bytes the record adds to its plaintext: the delimiter and the GCM tag.
const RECORD_OVERHEAD: usize = 1 + 16;
/// Longest plaintext that fits one record of a body of at most [`RECORD_SIZE`] bytes.
pub const MAX_PLAINTEXT: usize = RECORD_SIZE as usize - HEADER_LEN - RECORD_OVERHEAD;
/// Plaintexts are padded up to a multiple of this, so the size on the wire tells only
/// roughly how long a notification is.
const PAD_TO: usize = 256;
/// Lifetime of a VAPID token, seconds (RFC 8292 allows at most 24 hours).
pub const VAPID_TOKEN_SECS: u64 = 12 * 3600;
const _: () = assert!(
    VAPID_TOKEN_SECS <= 24 * 3600,
    "RFC 8292 §2: exp at most 24 h ahead"
);

/// Why a payload could not be encrypted, or a subscription key not read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebPushError {
    /// `p256dh` is not base64url of an uncompressed P-256 point.
    #[error("p256dh must be a P-256 public key (base64url, uncompressed point)")]
    BadPublicKey,
    /// `auth` is not base64url of 16 bytes.
    #[error("auth must be 16 bytes, base64url")]
    BadAuthSecret,
    /// The plaintext does not fit one record.
    #[error("the payload is longer than {MAX_PLAINTEXT} bytes")]
    TooLong,
    /// The endpoint has no origin to name as `aud`.
    #[error("the endpoint is not an http(s) URL")]
    BadEndpoint,
}

fn decode_b64u(text: &str) -> Option<Vec<u8>> {
    // Browsers send base64url without padding; some libraries keep the '='.
    b64u_decode(text.trim_end_matches('=')).ok()
}

/// Reads `keys.p256dh`: an uncompressed P-256 point, base64url.
pub fn parse_p256dh(text: &str) -> Result<[u8; 65], WebPushError> {
    let bytes = decode_b64u(text).ok_or(WebPushError::BadPublicKey)?;
    let point: [u8; 65] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| WebPushError::BadPublicKey)?;
    if point[0] != 0x04 || p256::PublicKey::from_sec1_bytes(&point).is_err() {
        return Err(WebPushError::BadPublicKey);
    }
    Ok(point)
}

/// Reads `keys.auth`: 16 bytes, base64url.
pub fn parse_auth(text: &str) -> Result<[u8; 16], WebPushError> {
    decode_b64u(text)
        .and_then(|bytes| bytes.as_slice().try_into().ok())
        .ok_or(WebPushError::BadAuthSecret)
}

/// Encrypts `plaintext` for the subscription (`ua_public`, `auth`) as an `aes128gcm`
/// body, with a fresh key pair and salt and the plaintext padded.
pub fn encrypt(
    plaintext: &[u8],
    ua_public: &[u8; 65],
    auth: &[u8; 16],
) -> Result<Vec<u8>, WebPushError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(WebPushError::TooLong);
    }
    let ephemeral = loop {
        // Nearly every 32-byte string is a valid scalar; retry on the rare one that is not.
        if let Ok(key) = p256::SecretKey::from_slice(&super::random_array::<32>()) {
            break key;
        }
    };
    let salt: [u8; 16] = super::random_array();
    let padded = plaintext.len().div_ceil(PAD_TO).max(1) * PAD_TO;
    let padding = padded.min(MAX_PLAINTEXT) - plaintext.len();
    encrypt_with(plaintext, ua_public, auth, &salt, &ephemeral, padding)
}

struct Len(usize);

impl ring::hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) {
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, salt).extract(ikm);
    // Expanding fails only for more than 255 hash lengths; every length here is fixed
    // and at most 32 bytes.
    let filled = prk
        .expand(&[info], Len(out.len()))
        .and_then(|okm| okm.fill(out));
    if filled.is_err() {
        unreachable!("HKDF output of {} bytes refused", out.len());
    }
}

/// [`encrypt`] with the salt, the sender's key pair and the padding given (RFC 8291's
/// example fixes them).
fn encrypt_with(
    plaintext: &[u8],
    ua_public: &[u8; 65],
    auth: &[u8; 16],
    salt: &[u8; 16],
    as_secret: &p256::SecretKey,
    padding: usize,
) -> Result<Vec<u8>, WebPushError> {
    let ua = p256::PublicKey::from_sec1_bytes(ua_public).map_err(|_| WebPushError::BadPublicKey)?;
    let shared = (ua.to_projective() * *as_secret.to_nonzero_scalar()).to_affine();
    let ecdh_secret = shared.x();
    let as_public_point = as_secret.public_key().to_sec1_point(false);
    let as_public = as_public_point.as_bytes();

    let mut key_info = Vec::with_capacity(14 + 65 + 65);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(as_public);
    let mut ikm = [0u8; 32];
    hkdf(auth, ecdh_secret.as_ref(), &key_info, &mut ikm);
    let mut cek = [0u8; 16];
    hkdf(salt, &ikm, b"Content-Encoding: aes128gcm\0", &mut cek);
    let mut nonce = [0u8; 12];
    hkdf(salt, &ikm, b"Content-Encoding: nonce\0", &mut nonce);

    let mut record = Vec::with_capacity(plaintext.len() + 1 + padding + 16);
    record.extend_from_slice(plaintext);
    record.push(0x02);
    record.resize(plaintext.len() + 1 + padding, 0);
    let key = ring::aead::UnboundKey::new(&ring::aead::AES_128_GCM, &cek)
        .map(ring::aead::LessSafeKey::new)
        .map_err(|_| WebPushError::TooLong)?;
    // The only record of the message: its sequence number is 0, so its nonce is NONCE.
    key.seal_in_place_append_tag(
        ring::aead::Nonce::assume_unique_for_key(nonce),
        ring::aead::Aad::empty(),
        &mut record,
    )
    .map_err(|_| WebPushError::TooLong)?;

    let mut body = Vec::with_capacity(HEADER_LEN + record.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.len() as u8);
    body.extend_from_slice(as_public);
    body.extend_from_slice(&record);
    Ok(body)
}

/// The box's VAPID key pair (P-256), which signs every push request. `Debug` shows only
/// the public half.
#[derive(Clone)]
pub struct VapidKey(jose::SigningKey);

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VapidKey({})", self.public_key_b64u())
    }
}

impl VapidKey {
    /// The key whose private scalar is `secret`; `None` for the rare 32 bytes that are
    /// not a P-256 scalar (zero, or not below the group order).
    pub fn from_secret(secret: &[u8; 32]) -> Option<VapidKey> {
        p256::ecdsa::SigningKey::from_slice(secret)
            .ok()
            .map(|key| VapidKey(jose::SigningKey::Es256(key)))
    }

    /// The key made from a kept 32-byte `seed`: the first of SHA-256(`seed` ‖ n), n = 0,
    /// 1 …, that is a P-256 scalar (in practice the first), so every seed gives a key and
    /// the same one each start.
    pub fn from_seed(seed: &[u8; 32]) -> VapidKey {
        use sha2::Digest as _;
        let mut n: u32 = 0;
        loop {
            let candidate: [u8; 32] = sha2::Sha256::new()
                .chain_update(b"hearth vapid key\0")
                .chain_update(seed)
                .chain_update(n.to_be_bytes())
                .finalize()
                .into();
            if let Some(key) = VapidKey::from_secret(&candidate) {
                return key;
            }
            n += 1;
        }
    }

    /// The public key as an uncompressed point (65 bytes).
    pub fn public_bytes(&self) -> [u8; 65] {
        let mut point = [0u8; 65];
        if let jose::PublicJwk::P256 { x, y } = self.0.public_jwk() {
            point[0] = 0x04;
            point[1..33].copy_from_slice(&x);
            point[33..].copy_from_slice(&y);
        }
        point
    }

    /// The public key, base64url of the uncompressed point: what a browser's
    /// `applicationServerKey` takes and the `k` of the `Authorization` header.
    pub fn public_key_b64u(&self) -> String {
        b64u(&self.public_bytes())
    }

    /// The `Authorization` header of a request to `endpoint` (RFC 8292 §3):
    /// `vapid t=JWT, k=PUBLIC_KEY`, the JWT (ES256) with `aud` the endpoint's origin,
    /// `exp` [`VAPID_TOKEN_SECS`] after `now` and `sub` the `subject` (the box's origin).
    pub fn authorization(
        &self,
        endpoint: &str,
        subject: &str,
        now: u64,
    ) -> Result<String, WebPushError> {
        let origin = url::Url::parse(endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .map(|u| u.origin().ascii_serialization())
            .ok_or(WebPushError::BadEndpoint)?;
        let mut header = Map::new();
        header.insert("typ".into(), Value::from("JWT"));
        let token = self.0.sign_jws(
            header,
            &json!({
                "aud": origin,
                "exp": now + VAPID_TOKEN_SECS,
                "sub": subject,
            }),
        );
        Ok(format!("vapid t={token}, k={}", self.public_key_b64u()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(text: &str) -> Vec<u8> {
        b64u_decode(text).unwrap()
    }

    // RFC 8291, Appendix A.
    const PLAINTEXT: &str = "When I grow up, I want to be a watermelon";
    const AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
    const AS_PUBLIC: &str =
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const BODY: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

    #[test]
    fn rfc_8291_example_gives_exactly_its_body() {
        let as_secret = p256::SecretKey::from_slice(&b(AS_PRIVATE)).unwrap();
        assert_eq!(
            as_secret.public_key().to_sec1_point(false).as_bytes(),
            b(AS_PUBLIC).as_slice()
        );
        let body = encrypt_with(
            PLAINTEXT.as_bytes(),
            &parse_p256dh(UA_PUBLIC).unwrap(),
            &parse_auth(AUTH).unwrap(),
            &b(SALT).try_into().unwrap(),
            &as_secret,
            0,
        )
        .unwrap();
        assert_eq!(b64u(&body), BODY);
    }

    #[test]
    fn fresh_encryptions_differ_and_are_padded() {
        let ua = parse_p256dh(UA_PUBLIC).unwrap();
        let auth = parse_auth(AUTH).unwrap();
        let one = encrypt(PLAINTEXT.as_bytes(), &ua, &auth).unwrap();
        let two = encrypt(PLAINTEXT.as_bytes(), &ua, &auth).unwrap();
        assert_ne!(one, two, "salt and key are fresh per message");
        assert_eq!(one.len(), HEADER_LEN + PAD_TO + RECORD_OVERHEAD);
        assert_eq!(&one[16..21], &[0, 0, 0x10, 0, 65]);
        let longest = vec![b'x'; MAX_PLAINTEXT];
        assert_eq!(
            encrypt(&longest, &ua, &auth).unwrap().len(),
            RECORD_SIZE as usize
        );
        assert_eq!(
            encrypt(&[b'x'; MAX_PLAINTEXT + 1], &ua, &auth),
            Err(WebPushError::TooLong)
        );
    }

    #[test]
    fn subscription_keys_are_checked() {
        assert!(parse_p256dh(UA_PUBLIC).is_ok());
        assert!(parse_p256dh(&format!("{UA_PUBLIC}=")).is_ok());
        // Compressed, truncated, off the curve, not base64url.
        let mut compressed = b(UA_PUBLIC)[..33].to_vec();
        compressed[0] = 0x02;
        let mut off_curve = b(UA_PUBLIC);
        off_curve[64] ^= 1;
        for bad in [
            b64u(&compressed),
            UA_PUBLIC[..80].to_string(),
            b64u(&off_curve),
            "not base64!".to_string(),
        ] {
            assert_eq!(parse_p256dh(&bad), Err(WebPushError::BadPublicKey), "{bad}");
        }
        assert_eq!(parse_auth(AUTH).unwrap().len(), 16);
        assert_eq!(parse_auth("AAAA"), Err(WebPushError::BadAuthSecret));
        assert_eq!(parse_auth(SALT).map(|a| a.len()), Ok(16));
    }

    #[test]
    fn vapid_header_shape() {
        let key = VapidKey::from_secret(&b(AS_PRIVATE).try_into().unwrap()).unwrap();
        assert_eq!(key.public_key_b64u(), AS_PUBLIC);
        let header = key
            .authorization(
                "https://push.example.net:8443/wpush/v2/abc?x=1",
                "https://hearth.example",
                1_000,
            )
            .unwrap();
        let (token, k) = header
            .strip_prefix("vapid t=")
            .and_then(|rest| rest.split_once(", k="))
            .expect("vapid t=…, k=…");
        assert_eq!(k, AS_PUBLIC);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let head: Value = serde_json::from_slice(&b(parts[0])).unwrap();
        assert_eq!(head["alg"], "ES256");
        assert_eq!(head["typ"], "JWT");
        let claims: Value = serde_json::from_slice(&b(parts[1])).unwrap();
        assert_eq!(
            claims,
            json!({"aud": "https://push.example.net:8443", "exp": 1_000 + VAPID_TOKEN_SECS,
                   "sub": "https://hearth.example"})
        );
        let signature = b(parts[2]);
        assert_eq!(signature.len(), 64, "JWS ES256 is r||s");
        use p256::ecdsa::signature::Verifier as _;
        let verifying = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key.public_bytes()).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        verifying
            .verify(
                signed.as_bytes(),
                &p256::ecdsa::Signature::from_slice(&signature).unwrap(),
            )
            .expect("the token verifies with k");
        let seeded = VapidKey::from_seed(&[7; 32]);
        assert_eq!(
            seeded.public_bytes(),
            VapidKey::from_seed(&[7; 32]).public_bytes()
        );
        assert_ne!(
            seeded.public_bytes(),
            VapidKey::from_seed(&[8; 32]).public_bytes()
        );
        assert_eq!(
            key.authorization("mailto:x@example.org", "https://hearth.example", 0),
            Err(WebPushError::BadEndpoint)
        );
    }
}
