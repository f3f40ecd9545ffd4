//! Device certificates: the user's identity key K_id signs a statement that a
//! device key K_dev (named by its RFC 7638 thumbprint) acts for the user on a
//! given homeserver. The user id is the identity public key itself, so a
//! certificate is checkable with nothing but its own contents.

use super::jose::{self, b64u, b64u_decode, Jws};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The request header in which a client using a server other than its home, with its
/// home's token, shows its device certificate (K_id's evidence of which server is home).
pub const HEADER: &str = "Hearth-Device-Certificate";
/// JOSE `typ` of device certificates.
pub const DEVICE_CERT_TYP: &str = "hearth-device+jwt";
/// Longest certificate lifetime accepted.
pub const MAX_CERT_LIFETIME_SECS: u64 = 400 * 24 * 3600;
/// How far in the future (by this server's clock) `iat` may be. Generous on purpose: a
/// Raspberry Pi has no real-time clock, and after a power cut on a LAN without NTP it runs
/// as far behind as the outage was long, while its users' devices keep the right time. A
/// certificate dated "in the future" proves nothing bad (its signer is the user); what
/// matters is `exp` and the lifetime cap.
pub const IAT_LEEWAY_SECS: u64 = 7 * 24 * 3600;

/// The claims of a device certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCertificate {
    /// User id: base64url Ed25519 public key of K_id (the signer).
    pub sub: String,
    /// RFC 7638 thumbprint of the device key K_dev.
    pub jkt: String,
    pub homeserver: String,
    pub iat: u64,
    pub exp: u64,
}

/// Why a device certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("malformed device certificate")]
    Malformed,
    #[error("device certificate has the wrong typ")]
    WrongType,
    #[error("device certificate alg must be EdDSA")]
    WrongAlgorithm,
    #[error("invalid user id")]
    InvalidUserId,
    #[error("device certificate signature is invalid")]
    BadSignature,
    #[error("device certificate issued in the future")]
    NotYetValid,
    #[error("device certificate expired")]
    Expired,
    #[error("device certificate lifetime exceeds 400 days")]
    LifetimeTooLong,
}

/// The user id for an identity public key: its 43-character base64url form.
pub fn user_id_from_public(pk: &[u8; 32]) -> String {
    b64u(pk)
}

/// Parses a user id back into an Ed25519 public key, refusing anything that
/// is not a canonical encoding of a valid, non-small-order point.
pub fn parse_user_id(id: &str) -> Result<[u8; 32], CertError> {
    if id.len() != 43 {
        return Err(CertError::InvalidUserId);
    }
    let pk: [u8; 32] = b64u_decode(id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(CertError::InvalidUserId)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&pk).map_err(|_| CertError::InvalidUserId)?;
    // Non-canonical encodings would give one user two ids.
    if key.is_weak() || key.to_edwards().compress().to_bytes() != pk {
        return Err(CertError::InvalidUserId);
    }
    Ok(pk)
}

/// Signs `cert` with the identity key as a compact EdDSA JWS. `cert.sub`
/// must be `user_id_from_public` of this key, or verification will fail.
pub fn issue_device_certificate(
    identity: &ed25519_dalek::SigningKey,
    cert: &DeviceCertificate,
) -> String {
    let claims = serde_json::json!({
        "sub": cert.sub, "jkt": cert.jkt, "homeserver": cert.homeserver,
        "iat": cert.iat, "exp": cert.exp,
    });
    let mut header = Map::new();
    header.insert("typ".into(), Value::from(DEVICE_CERT_TYP));
    jose::sign_compact(header, &claims, "EdDSA", |input| {
        ed25519_dalek::Signer::sign(identity, input)
            .to_bytes()
            .to_vec()
    })
}

/// Verifies a device certificate against the key named by its own `sub`,
/// and checks `iat ≤ now + 60`, `exp > now`, and a lifetime of at most 400
/// days. The caller checks `homeserver` and that `jkt` is the presenting
/// device's key.
pub fn verify_device_certificate(jws: &str, now: u64) -> Result<DeviceCertificate, CertError> {
    let jws = Jws::parse(jws).map_err(|_| CertError::Malformed)?;
    if jws.header_str("typ") != Some(DEVICE_CERT_TYP) {
        return Err(CertError::WrongType);
    }
    if jws.header_str("alg") != Some("EdDSA") {
        return Err(CertError::WrongAlgorithm);
    }
    let signer = parse_user_id(jws.claim_str("sub").ok_or(CertError::Malformed)?)?;
    jose::verify_ed25519_jws(&jws, &signer).map_err(|_| CertError::BadSignature)?;

    let cert: DeviceCertificate =
        serde_json::from_value(jws.claims).map_err(|_| CertError::Malformed)?;
    let jkt_ok = b64u_decode(&cert.jkt).is_ok_and(|d| d.len() == 32);
    if !jkt_ok || cert.homeserver.is_empty() {
        return Err(CertError::Malformed);
    }
    if cert.iat > now.saturating_add(IAT_LEEWAY_SECS) {
        return Err(CertError::NotYetValid);
    }
    if cert.exp <= now {
        return Err(CertError::Expired);
    }
    if cert
        .exp
        .checked_sub(cert.iat)
        .is_none_or(|life| life > MAX_CERT_LIFETIME_SECS)
    {
        return Err(CertError::LifetimeTooLong);
    }
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jose::SigningKey;

    const NOW: u64 = 1_700_000_000;
    const DAY: u64 = 24 * 3600;

    fn identity() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&crate::auth::random_array())
    }

    fn cert_for(id: &ed25519_dalek::SigningKey) -> DeviceCertificate {
        DeviceCertificate {
            sub: user_id_from_public(&id.verifying_key().to_bytes()),
            jkt: SigningKey::generate_es256().public_jwk().thumbprint(),
            homeserver: "hearth.example".into(),
            iat: NOW,
            exp: NOW + 30 * DAY,
        }
    }

    #[test]
    fn valid_certificate() {
        let id = identity();
        let cert = cert_for(&id);
        let jws = issue_device_certificate(&id, &cert);
        assert_eq!(verify_device_certificate(&jws, NOW + 1).unwrap(), cert);
        assert_eq!(
            parse_user_id(&cert.sub).unwrap(),
            id.verifying_key().to_bytes()
        );
        assert_eq!(cert.sub.len(), 43);
    }

    #[test]
    fn wrong_signer_expired_and_limits() {
        let id = identity();
        let cert = cert_for(&id);
        // Signed by a different key than the one `sub` names.
        let forged = issue_device_certificate(&identity(), &cert);
        assert_eq!(
            verify_device_certificate(&forged, NOW),
            Err(CertError::BadSignature)
        );

        let jws = issue_device_certificate(&id, &cert);
        assert_eq!(
            verify_device_certificate(&jws, cert.exp),
            Err(CertError::Expired)
        );
        assert_eq!(
            verify_device_certificate(&jws, NOW - IAT_LEEWAY_SECS - 1),
            Err(CertError::NotYetValid)
        );
        assert!(verify_device_certificate(&jws, NOW - IAT_LEEWAY_SECS).is_ok());

        let long = DeviceCertificate {
            exp: NOW + 401 * DAY,
            ..cert.clone()
        };
        let jws = issue_device_certificate(&id, &long);
        assert_eq!(
            verify_device_certificate(&jws, NOW),
            Err(CertError::LifetimeTooLong)
        );

        let bad_jkt = DeviceCertificate {
            jkt: "short".into(),
            ..cert.clone()
        };
        let jws = issue_device_certificate(&id, &bad_jkt);
        assert_eq!(
            verify_device_certificate(&jws, NOW),
            Err(CertError::Malformed)
        );

        // Right key, wrong typ.
        let mut header = Map::new();
        header.insert("typ".into(), "JWT".into());
        let claims = serde_json::to_value(&cert).unwrap();
        let jws = jose::sign_compact(header, &claims, "EdDSA", |m| {
            ed25519_dalek::Signer::sign(&id, m).to_bytes().to_vec()
        });
        assert_eq!(
            verify_device_certificate(&jws, NOW),
            Err(CertError::WrongType)
        );
        assert_eq!(
            verify_device_certificate("x.y.z", NOW),
            Err(CertError::Malformed)
        );
    }

    #[test]
    fn user_ids_are_strict() {
        assert_eq!(parse_user_id("abc"), Err(CertError::InvalidUserId));
        assert_eq!(
            parse_user_id(&"A".repeat(43)),
            Err(CertError::InvalidUserId)
        ); // small order
        assert_eq!(
            parse_user_id(&format!("{}=", &"A".repeat(42))),
            Err(CertError::InvalidUserId)
        );
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        assert_eq!(
            parse_user_id(&b64u(&identity_point)),
            Err(CertError::InvalidUserId)
        );
    }
}
