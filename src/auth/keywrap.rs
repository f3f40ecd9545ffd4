//! Client-side wrap of the identity key under the user's password.
//!
//! The server stores the resulting blob but cannot open it: the wrapping key
//! is derived from the password, which never leaves the client, and the secret is
//! sealed with AES-256-GCM (additional data `hearth-keywrap-v1`). Two KDFs:
//!
//! - `argon2id` (what this crate writes): `{"v":1,"kdf":"argon2id","m","t","p","salt",
//!   "nonce","ct"}`.
//! - `pbkdf2-sha256` (what the web client writes, since browsers' WebCrypto has PBKDF2
//!   but no Argon2): `{"v":1,"kdf":"pbkdf2-sha256","i","salt","nonce","ct"}`, key =
//!   PBKDF2-HMAC-SHA256(password, salt, i iterations, 32 bytes).
//!
//! Both are opened here, so a key backed up from a browser can be recovered by the CLI.

use super::jose::{b64u, b64u_decode};
use super::password::PasswordParams;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde::{Deserialize, Serialize};

/// Largest blob we parse; real ones are a few hundred bytes.
const MAX_BLOB_LEN: usize = 16 * 1024;
/// Binds ciphertexts to this format so they cannot be replayed elsewhere.
const AAD: &[u8] = b"hearth-keywrap-v1";

/// Why a secret could not be wrapped or unwrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WrapError {
    #[error("malformed key-wrap blob")]
    Malformed,
    #[error("unsupported key-wrap version or KDF")]
    Unsupported,
    #[error("key-wrap KDF parameters out of range")]
    ParamsOutOfRange,
    #[error("wrong password")]
    WrongPassword,
    #[error("random number generator failed")]
    Rng,
    #[error("key derivation or encryption failed")]
    Crypto,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Blob {
    v: u32,
    kdf: String,
    m: u32,
    t: u32,
    p: u32,
    salt: String,
    nonce: String,
    ct: String,
}

fn aead_key(
    password: &str,
    salt: &[u8],
    params: &PasswordParams,
) -> Result<LessSafeKey, WrapError> {
    let argon2 = params.argon2().ok_or(WrapError::ParamsOutOfRange)?;
    let mut key = [0u8; 32];
    argon2
        .hash_password_into(password.as_bytes(), salt, &mut key)
        .map_err(|_| WrapError::Crypto)?;
    let unbound = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| WrapError::Crypto)?;
    Ok(LessSafeKey::new(unbound))
}

/// Encrypts `secret` under a key derived from `password`, returning compact
/// JSON: `{"v":1,"kdf":"argon2id","m":..,"t":..,"p":..,"salt":..,"nonce":..,"ct":..}`.
pub fn wrap_secret(
    secret: &[u8],
    password: &str,
    params: &PasswordParams,
) -> Result<String, WrapError> {
    let salt: [u8; 16] = super::try_random_array().map_err(|_| WrapError::Rng)?;
    let nonce: [u8; 12] = super::try_random_array().map_err(|_| WrapError::Rng)?;
    let key = aead_key(password, &salt, params)?;
    let mut ct = secret.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(AAD), &mut ct)
        .map_err(|_| WrapError::Crypto)?;
    let blob = Blob {
        v: 1,
        kdf: "argon2id".into(),
        m: params.m_cost_kib,
        t: params.t_cost,
        p: params.p_cost,
        salt: b64u(&salt),
        nonce: b64u(&nonce),
        ct: b64u(&ct),
    };
    serde_json::to_string(&blob).map_err(|_| WrapError::Crypto)
}

/// The web client's form of the blob.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pbkdf2Blob {
    v: u32,
    kdf: String,
    i: u32,
    salt: String,
    nonce: String,
    ct: String,
}

/// Most PBKDF2 iterations a blob may ask for (about 3 s on a Raspberry Pi 4), so a hostile
/// blob cannot make a client spin; the web client writes 600,000 (OWASP 2023).
pub const MAX_PBKDF2_ITERATIONS: u32 = 5_000_000;

fn pbkdf2_key(password: &str, salt: &[u8], iterations: u32) -> Result<LessSafeKey, WrapError> {
    let iterations = std::num::NonZeroU32::new(iterations)
        .filter(|i| i.get() <= MAX_PBKDF2_ITERATIONS)
        .ok_or(WrapError::ParamsOutOfRange)?;
    let mut key = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        password.as_bytes(),
        &mut key,
    );
    let unbound = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| WrapError::Crypto)?;
    Ok(LessSafeKey::new(unbound))
}

/// Salt, nonce and ciphertext of a blob.
type SealedParts = (Vec<u8>, [u8; 12], Vec<u8>);

/// Decodes salt (16 bytes), nonce (12) and ciphertext (at least a tag).
fn sealed_parts(salt: &str, nonce: &str, ct: &str) -> Result<SealedParts, WrapError> {
    let salt = b64u_decode(salt).map_err(|_| WrapError::Malformed)?;
    let nonce: [u8; 12] = b64u_decode(nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or(WrapError::Malformed)?;
    let ct = b64u_decode(ct).map_err(|_| WrapError::Malformed)?;
    if salt.len() != 16 || ct.len() < AES_256_GCM.tag_len() {
        return Err(WrapError::Malformed);
    }
    Ok((salt, nonce, ct))
}

/// Decrypts a blob from [`wrap_secret`] or from the web client. KDF costs are capped (see
/// [`super::password::MAX_M_COST_KIB`] and friends, [`MAX_PBKDF2_ITERATIONS`]) before any
/// work is done, so a hostile blob cannot exhaust memory or CPU.
pub fn unwrap_secret(blob: &str, password: &str) -> Result<Vec<u8>, WrapError> {
    if blob.len() > MAX_BLOB_LEN {
        return Err(WrapError::Malformed);
    }
    let value: serde_json::Value = serde_json::from_str(blob).map_err(|_| WrapError::Malformed)?;
    if value["v"] != 1 {
        return Err(WrapError::Unsupported);
    }
    let (key, nonce, mut ct) = match value["kdf"].as_str() {
        Some("argon2id") => {
            let blob: Blob = serde_json::from_value(value).map_err(|_| WrapError::Malformed)?;
            let (salt, nonce, ct) = sealed_parts(&blob.salt, &blob.nonce, &blob.ct)?;
            let params = PasswordParams {
                m_cost_kib: blob.m,
                t_cost: blob.t,
                p_cost: blob.p,
            };
            (aead_key(password, &salt, &params)?, nonce, ct)
        }
        Some("pbkdf2-sha256") => {
            let blob: Pbkdf2Blob =
                serde_json::from_value(value).map_err(|_| WrapError::Malformed)?;
            let (salt, nonce, ct) = sealed_parts(&blob.salt, &blob.nonce, &blob.ct)?;
            (pbkdf2_key(password, &salt, blob.i)?, nonce, ct)
        }
        _ => return Err(WrapError::Unsupported),
    };
    // With valid parameters, an authentication failure means the key was
    // wrong, i.e. the password (or the blob was tampered with).
    let plain = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(AAD), &mut ct)
        .map_err(|_| WrapError::WrongPassword)?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const FAST: PasswordParams = PasswordParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    #[test]
    fn round_trip_and_wrong_password() {
        let secret = [42u8; 32];
        let blob = wrap_secret(&secret, "hunter2", &FAST).unwrap();
        let v: Value = serde_json::from_str(&blob).unwrap();
        assert_eq!(v["v"], 1);
        assert_eq!(v["kdf"], "argon2id");
        assert_eq!(
            (v["m"].as_u64(), v["t"].as_u64(), v["p"].as_u64()),
            (Some(64), Some(1), Some(1))
        );
        assert!(!blob.contains(&b64u(&secret)));

        assert_eq!(unwrap_secret(&blob, "hunter2").unwrap(), secret);
        assert_eq!(
            unwrap_secret(&blob, "hunter3"),
            Err(WrapError::WrongPassword)
        );
    }

    /// A blob as the web client writes it (WebCrypto PBKDF2 + AES-GCM), made here with
    /// ring the same way: the CLI must open what a browser backed up.
    fn pbkdf2_blob(secret: &[u8], password: &str, iterations: u32) -> String {
        let salt = [7u8; 16];
        let nonce = [9u8; 12];
        let key = pbkdf2_key(password, &salt, iterations).unwrap();
        let mut ct = secret.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(AAD), &mut ct)
            .unwrap();
        serde_json::json!({
            "v": 1, "kdf": "pbkdf2-sha256", "i": iterations,
            "salt": b64u(&salt), "nonce": b64u(&nonce), "ct": b64u(&ct),
        })
        .to_string()
    }

    #[test]
    fn web_client_pbkdf2_blobs_open() {
        let secret = [5u8; 32];
        let blob = pbkdf2_blob(&secret, "correct horse", 1000);
        assert_eq!(unwrap_secret(&blob, "correct horse").unwrap(), secret);
        assert_eq!(
            unwrap_secret(&blob, "wrong horse"),
            Err(WrapError::WrongPassword)
        );
        let mut v: Value = serde_json::from_str(&blob).unwrap();
        v["i"] = (MAX_PBKDF2_ITERATIONS + 1).into();
        assert_eq!(
            unwrap_secret(&v.to_string(), "correct horse"),
            Err(WrapError::ParamsOutOfRange)
        );
        v["i"] = 0.into();
        assert_eq!(
            unwrap_secret(&v.to_string(), "correct horse"),
            Err(WrapError::ParamsOutOfRange)
        );
        v["i"] = 1000.into();
        v["m"] = 64.into();
        assert_eq!(
            unwrap_secret(&v.to_string(), "correct horse"),
            Err(WrapError::Malformed)
        );
    }

    #[test]
    fn pbkdf2_known_answer() {
        // Made independently with Python (hashlib.pbkdf2_hmac and the `cryptography`
        // package's AESGCM): secret 00..1f, password "correct horse", 1000 iterations,
        // salt 16 × 07, nonce 12 × 09.
        let blob = r#"{"v":1,"kdf":"pbkdf2-sha256","i":1000,"salt":"BwcHBwcHBwcHBwcHBwcHBw","nonce":"CQkJCQkJCQkJCQkJ","ct":"VgRkbjPLXAy2G8IQ1VHS0OU-xTQlw63L7EnDBbLCutUiGCgQQS91nXQlx5dfu6_J"}"#;
        let expected: Vec<u8> = (0u8..32).collect();
        assert_eq!(unwrap_secret(blob, "correct horse").unwrap(), expected);
    }

    #[test]
    fn hostile_blobs_are_refused() {
        let blob = wrap_secret(b"s", "pw", &FAST).unwrap();
        let mut v: Value = serde_json::from_str(&blob).unwrap();

        let mut greedy = v.clone();
        greedy["m"] = 4_000_000.into();
        assert_eq!(
            unwrap_secret(&greedy.to_string(), "pw"),
            Err(WrapError::ParamsOutOfRange)
        );
        let mut slow = v.clone();
        slow["t"] = 11.into();
        assert_eq!(
            unwrap_secret(&slow.to_string(), "pw"),
            Err(WrapError::ParamsOutOfRange)
        );
        let mut wide = v.clone();
        wide["p"] = 5.into();
        assert_eq!(
            unwrap_secret(&wide.to_string(), "pw"),
            Err(WrapError::ParamsOutOfRange)
        );

        let mut v2 = v.clone();
        v2["v"] = 2.into();
        assert_eq!(
            unwrap_secret(&v2.to_string(), "pw"),
            Err(WrapError::Unsupported)
        );
        let mut short_nonce = v.clone();
        short_nonce["nonce"] = "AAAA".into();
        assert_eq!(
            unwrap_secret(&short_nonce.to_string(), "pw"),
            Err(WrapError::Malformed)
        );
        assert_eq!(unwrap_secret("not json", "pw"), Err(WrapError::Malformed));
        assert_eq!(
            unwrap_secret(&"x".repeat(MAX_BLOB_LEN + 1), "pw"),
            Err(WrapError::Malformed)
        );

        // Flipping ciphertext bits fails authentication.
        let mut ct = b64u_decode(v["ct"].as_str().unwrap()).unwrap();
        ct[0] ^= 1;
        v["ct"] = b64u(&ct).into();
        assert_eq!(
            unwrap_secret(&v.to_string(), "pw"),
            Err(WrapError::WrongPassword)
        );
    }
}
