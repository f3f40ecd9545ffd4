//! The subscribed device of the push tests: one push subscription's keys, the
//! subscription as a browser's `toJSON()` gives it, and the device's side of RFC 8291
//! (decrypting an `aes128gcm` body), so sinks read pushes as a device would
//! (`push_encryption` checks the same bodies with an implementation written elsewhere).

use serde_json::{json, Value};

/// The private key and auth secret of the push subscription every test here registers.
pub fn device_keys() -> (p256::SecretKey, [u8; 16]) {
    (
        p256::SecretKey::from_slice(&[0x42; 32]).expect("a P-256 scalar"),
        [0x17; 16],
    )
}

/// A subscription to `endpoint` with [`device_keys`], as a browser's `toJSON()` gives it.
pub fn subscription(endpoint: &str) -> Value {
    use p256::elliptic_curve::sec1::ToSec1Point as _;
    let (secret, auth) = device_keys();
    json!({
        "endpoint": endpoint,
        "expirationTime": null,
        "keys": {
            "p256dh": hearth::auth::jose::b64u(secret.public_key().to_sec1_point(false).as_bytes()),
            "auth": hearth::auth::jose::b64u(&auth),
        },
    })
}

struct Len(usize);

impl ring::hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) {
    ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, salt)
        .extract(ikm)
        .expand(&[info], Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("hkdf");
}

/// The device's side of RFC 8291: the plaintext of an `aes128gcm` body of one record, or
/// `None` if it does not decrypt.
pub fn decrypt(body: &[u8]) -> Option<Vec<u8>> {
    use p256::elliptic_curve::point::AffineCoordinates as _;
    use p256::elliptic_curve::sec1::ToSec1Point as _;
    let (secret, auth) = device_keys();
    let salt = body.get(..16)?;
    let id_len = *body.get(20)? as usize;
    let as_public = body.get(21..21 + id_len)?;
    let mut record = body.get(21 + id_len..)?.to_vec();
    let sender = p256::PublicKey::from_sec1_bytes(as_public).ok()?;
    let shared = (sender.to_projective() * *secret.to_nonzero_scalar()).to_affine();
    let ua_public = secret.public_key().to_sec1_point(false);
    let mut info = b"WebPush: info\0".to_vec();
    info.extend_from_slice(ua_public.as_bytes());
    info.extend_from_slice(as_public);
    let mut ikm = [0u8; 32];
    hkdf(&auth, shared.x().as_ref(), &info, &mut ikm);
    let mut cek = [0u8; 16];
    hkdf(salt, &ikm, b"Content-Encoding: aes128gcm\0", &mut cek);
    let mut nonce = [0u8; 12];
    hkdf(salt, &ikm, b"Content-Encoding: nonce\0", &mut nonce);
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_128_GCM, &cek).ok()?,
    );
    let plain = key
        .open_in_place(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::empty(),
            &mut record,
        )
        .ok()?;
    // The last record: padding zeros after a 0x02 delimiter.
    let end = plain.iter().rposition(|&b| b != 0)?;
    (plain[end] == 2).then(|| plain[..end].to_vec())
}
