//! DPoP proof verification (RFC 9449 §4.3), server nonces (§8/§9) and jti
//! replay protection, plus client-side proof creation.
//!
//! Nonces are stateless: `b64u(epoch_be ‖ HMAC-SHA256(secret, epoch_be)[..16])`.
//! The current and previous epoch are accepted. Seen `jti`s are kept per
//! epoch generation, and a generation is dropped once its nonces can no
//! longer be accepted, which bounds the replay cache without ever forgetting
//! a proof that could still be replayed. The epoch advances with time and
//! also early whenever the current generation fills half the cache. A client
//! flooding valid proofs can therefore rotate nonces faster, which costs
//! honest clients one `use_dpop_nonce` retry, never a missed replay.
//!
//! Check 11 (creation time) uses the nonce when the proof carries one: §4.3 allows "a
//! server managed timestamp via the nonce claim", and a nonce of the current or previous
//! epoch proves the proof was made within the last two epochs by the server's own clock.
//! The client's `iat` is then not compared with the server's clock at all. This matters on
//! a Raspberry Pi, which has no real-time clock: after a power cut on a LAN without NTP it
//! runs hours behind its users' phones, and an `iat` window would refuse every proof.
//! Without a nonce (only when `require_nonce` is off) the `iat` window applies.
//!
//! Binding a proof to an access token is the caller's check: compare
//! [`VerifiedProof::jkt`] with the token's `cnf.jkt`.

use super::jose::{b64u, b64u_decode, sha256_b64u, JoseError, Jws, PublicJwk, SigningKey};
use ring::hmac;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

/// JOSE `typ` of DPoP proofs.
pub const DPOP_TYP: &str = "dpop+jwt";
/// Value for the `algs` parameter of `WWW-Authenticate: DPoP`.
pub const SUPPORTED_ALGS: &str = "ES256 EdDSA";
/// Longest `jti` accepted.
pub const MAX_JTI_LEN: usize = 256;

/// Verifier settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DpopConfig {
    /// How far in the future `iat` may be (clock skew).
    pub iat_leeway_secs: u64,
    /// How old `iat` may be.
    pub max_age_secs: u64,
    /// Require a server nonce. Only turn off for tests or development: the
    /// replay cache is then bounded by the `iat` window alone and refuses
    /// proofs with [`DpopError::ReplayCacheFull`] when full.
    pub require_nonce: bool,
    /// Maximum number of remembered `jti`s.
    pub jti_capacity: usize,
    /// Length of a nonce epoch in seconds.
    pub nonce_epoch_secs: u64,
}

impl Default for DpopConfig {
    fn default() -> Self {
        DpopConfig {
            iat_leeway_secs: 60,
            max_age_secs: 300,
            require_nonce: true,
            jti_capacity: 200_000,
            nonce_epoch_secs: 300,
        }
    }
}

/// The request a proof is checked against. Deliberately not `Debug`: it
/// holds the bearer token.
#[derive(Clone, Copy)]
pub struct DpopRequest<'a> {
    /// Every `DPoP` header value received.
    pub proofs: &'a [&'a str],
    pub method: &'a str,
    /// The request's target URI under each origin this server serves (its public
    /// origin, aliases, the names in its certificate), never built from a request
    /// header; the proof's `htu` must name one of them. Query and fragment are ignored.
    pub urls: &'a [&'a str],
    /// The access token for resource requests; then `ath` is required.
    pub access_token: Option<&'a str>,
}

/// A proof that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// RFC 7638 thumbprint of the proof key; compare with the token's `cnf.jkt`.
    pub jkt: String,
    pub jwk: PublicJwk,
    pub jti: String,
    pub iat: u64,
    /// The proof's `htu`: which of the request's URIs the client addressed.
    pub htu: String,
}

/// Why a DPoP proof was refused. Each RFC 9449 §4.3 check has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("missing DPoP proof")]
    Missing,
    #[error("more than one DPoP proof")]
    MultipleProofs,
    #[error("DPoP proof is not a well-formed JWT")]
    Malformed,
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("missing {0} claim")]
    MissingClaim(&'static str),
    #[error("invalid {0} claim")]
    InvalidClaim(&'static str),
    #[error("typ is not dpop+jwt")]
    WrongType,
    #[error("unsupported alg")]
    UnsupportedAlgorithm,
    #[error("alg does not match jwk")]
    AlgorithmKeyMismatch,
    #[error("invalid jwk")]
    InvalidJwk,
    #[error("jwk contains a private key")]
    PrivateKeyInJwk,
    #[error("invalid signature")]
    BadSignature,
    #[error("htm mismatch")]
    HtmMismatch,
    #[error("htu mismatch")]
    HtuMismatch,
    #[error("nonce required")]
    NonceRequired,
    #[error("invalid nonce")]
    InvalidNonce,
    #[error("stale nonce")]
    StaleNonce,
    #[error("iat too old")]
    IatTooOld,
    #[error("iat in the future")]
    IatInFuture,
    #[error("ath mismatch")]
    AthMismatch,
    #[error("jti too long")]
    JtiTooLong,
    #[error("jti already used")]
    Replay,
    #[error("replay cache full, retry later")]
    ReplayCacheFull,
}

impl DpopError {
    /// The OAuth error code: `use_dpop_nonce` when the client should retry
    /// with the nonce from the `DPoP-Nonce` header, else `invalid_dpop_proof`.
    pub fn error_code(&self) -> &'static str {
        match self {
            DpopError::NonceRequired | DpopError::InvalidNonce | DpopError::StaleNonce => {
                "use_dpop_nonce"
            }
            _ => "invalid_dpop_proof",
        }
    }

    /// A short, specific reason such as "iat too old" or "htu mismatch".
    pub fn description(&self) -> String {
        self.to_string()
    }

    /// The RFC 9449 §7.1 challenge, e.g.
    /// `DPoP error="invalid_dpop_proof", error_description="htu mismatch", algs="ES256 EdDSA"`.
    pub fn www_authenticate(&self, algs: &str) -> String {
        let mut out = format!(
            r#"DPoP error="{}", error_description="{}""#,
            self.error_code(),
            quote_escape(&self.description())
        );
        if !algs.is_empty() {
            out.push_str(&format!(r#", algs="{}""#, quote_escape(algs)));
        }
        out
    }
}

/// Escapes for an HTTP quoted-string.
fn quote_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Verifies DPoP proofs and issues nonces. Share one per server.
pub struct DpopVerifier {
    nonce_key: hmac::Key,
    config: DpopConfig,
    state: Mutex<ReplayState>,
}

impl std::fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopVerifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// 16 bytes of SHA-256(jkt ‖ "." ‖ jti): fixed-size, and per key so one
/// client cannot burn another's jti.
type ReplayKey = [u8; 16];

#[derive(Debug, Default)]
struct ReplayState {
    /// Current nonce epoch; never moves backwards.
    epoch: u64,
    /// Early advances so far, added to the time-derived epoch.
    early: u64,
    /// jtis first seen during the current and the previous epoch.
    current: HashSet<ReplayKey>,
    previous: HashSet<ReplayKey>,
    /// Without nonces: jti → last `now` at which its proof is still fresh.
    timed: HashMap<ReplayKey, u64>,
    last_sweep: u64,
}

impl ReplayState {
    fn advance(&mut self, now: u64, epoch_secs: u64) -> u64 {
        self.rotate_to((now / epoch_secs).saturating_add(self.early));
        self.epoch
    }

    fn rotate_to(&mut self, target: u64) {
        if target <= self.epoch {
            return;
        }
        // Proofs recorded two generations back carry nonces that are now
        // refused as stale, so their jtis can be forgotten safely.
        if target == self.epoch + 1 {
            self.previous = std::mem::take(&mut self.current);
        } else {
            self.previous.clear();
            self.current.clear();
        }
        self.epoch = target;
    }
}

impl DpopVerifier {
    /// A verifier whose nonces are keyed by `secret`. Use a fresh random
    /// secret on each start: the replay cache lives in memory, so nonces
    /// from before a restart must not be accepted after it.
    pub fn new(secret: [u8; 32], config: DpopConfig) -> Self {
        let config = DpopConfig {
            nonce_epoch_secs: config.nonce_epoch_secs.max(1),
            ..config
        };
        DpopVerifier {
            nonce_key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            config,
            state: Mutex::new(ReplayState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ReplayState> {
        // The state stays consistent across a panic elsewhere; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The nonce to hand out in `DPoP-Nonce` at `now`.
    pub fn nonce(&self, now: u64) -> String {
        let epoch = self.lock().advance(now, self.config.nonce_epoch_secs);
        let mut bytes = [0u8; 24];
        bytes[..8].copy_from_slice(&epoch.to_be_bytes());
        bytes[8..].copy_from_slice(&self.nonce_tag(epoch));
        b64u(&bytes)
    }

    fn nonce_tag(&self, epoch: u64) -> [u8; 16] {
        let tag = hmac::sign(&self.nonce_key, &epoch.to_be_bytes());
        let mut out = [0u8; 16];
        out.iter_mut().zip(tag.as_ref()).for_each(|(o, t)| *o = *t);
        out
    }

    /// Authenticates a nonce and returns its epoch.
    fn nonce_epoch(&self, nonce: &str) -> Result<u64, DpopError> {
        let bytes: [u8; 24] = b64u_decode(nonce)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(DpopError::InvalidNonce)?;
        let (epoch, tag) = bytes.split_at(8);
        let epoch = u64::from_be_bytes(epoch.try_into().map_err(|_| DpopError::InvalidNonce)?);
        if !super::ct_eq(tag, &self.nonce_tag(epoch)) {
            return Err(DpopError::InvalidNonce);
        }
        Ok(epoch)
    }

    /// Number of remembered jtis (for metrics and tests).
    pub fn replay_cache_len(&self) -> usize {
        let s = self.lock();
        s.current.len() + s.previous.len() + s.timed.len()
    }

    /// Runs every RFC 9449 §4.3 check on the request's proof and records its
    /// `jti`. Cheap checks run before the signature; the jti is recorded only
    /// after everything else passed, so forged proofs cannot fill the cache.
    pub fn verify(&self, req: &DpopRequest<'_>, now: u64) -> Result<VerifiedProof, DpopError> {
        // (1) exactly one DPoP header.
        let proof = match req.proofs {
            [] => return Err(DpopError::Missing),
            [proof] => *proof,
            _ => return Err(DpopError::MultipleProofs),
        };
        // (2) a single well-formed JWT.
        let jws = Jws::parse(proof).map_err(|_| DpopError::Malformed)?;

        // (3) required header parameters and claims.
        let header = |name| jws.header_str(name).ok_or(DpopError::MissingHeader(name));
        let (typ, alg) = (header("typ")?, header("alg")?);
        let jwk_json = jws
            .header
            .get("jwk")
            .ok_or(DpopError::MissingHeader("jwk"))?;
        let claim = |name| match jws.claims.get(name) {
            None => Err(DpopError::MissingClaim(name)),
            Some(v) => v.as_str().ok_or(DpopError::InvalidClaim(name)),
        };
        let (jti, htm, htu) = (claim("jti")?, claim("htm")?, claim("htu")?);
        let iat = match jws.claims.get("iat") {
            None => return Err(DpopError::MissingClaim("iat")),
            Some(v) => v.as_u64().ok_or(DpopError::InvalidClaim("iat"))?,
        };
        let ath = match req.access_token {
            Some(_) => Some(claim("ath")?),
            None => None,
        };
        let nonce = match jws.claims.get("nonce") {
            None if self.config.require_nonce => return Err(DpopError::NonceRequired),
            None => None,
            Some(v) => Some(v.as_str().ok_or(DpopError::InvalidNonce)?),
        };
        if jti.is_empty() {
            return Err(DpopError::InvalidClaim("jti"));
        }
        if jti.len() > MAX_JTI_LEN {
            return Err(DpopError::JtiTooLong);
        }

        // (4) typ.
        if typ != DPOP_TYP {
            return Err(DpopError::WrongType);
        }
        // (5) an asymmetric algorithm we support; "none" and HS*/RS* fail here.
        // "Ed25519" is the fully specified name of EdDSA over Ed25519 (RFC 9864), which
        // some DPoP libraries use.
        if alg != "ES256" && alg != "EdDSA" && alg != "Ed25519" {
            return Err(DpopError::UnsupportedAlgorithm);
        }
        // (7) the jwk is a valid public key with no private part.
        let jwk = PublicJwk::from_json(jwk_json).map_err(|e| match e {
            JoseError::PrivateKeyInJwk => DpopError::PrivateKeyInJwk,
            _ => DpopError::InvalidJwk,
        })?;
        let alg_fits_key = jwk.alg() == alg || (alg == "Ed25519" && jwk.alg() == "EdDSA");
        if !alg_fits_key {
            return Err(DpopError::AlgorithmKeyMismatch);
        }
        // (8) htm, exact and case-sensitive.
        if htm != req.method {
            return Err(DpopError::HtmMismatch);
        }
        // (9) htu, after syntax- and scheme-based normalization.
        if !req.urls.iter().any(|url| htu_matches(htu, url)) {
            return Err(DpopError::HtuMismatch);
        }
        // (10) nonce: authentic, and of the current or previous epoch.
        let nonce_epoch = nonce.map(|n| self.nonce_epoch(n)).transpose()?;
        if let Some(epoch) = nonce_epoch {
            let current = self.lock().advance(now, self.config.nonce_epoch_secs);
            check_epoch(epoch, current)?;
        }
        // (11) creation time: by the nonce's epoch when there is a nonce (just checked),
        // else by the iat window.
        if nonce_epoch.is_none() {
            if iat > now.saturating_add(self.config.iat_leeway_secs) {
                return Err(DpopError::IatInFuture);
            }
            if iat < now.saturating_sub(self.config.max_age_secs) {
                return Err(DpopError::IatTooOld);
            }
        }
        // (12) ath binds the proof to the presented access token.
        if let (Some(token), Some(ath)) = (req.access_token, ath) {
            if !super::ct_eq(ath.as_bytes(), sha256_b64u(token.as_bytes()).as_bytes()) {
                return Err(DpopError::AthMismatch);
            }
        }
        // (6) signature, with the key from the header.
        jws.verify(&jwk).map_err(|e| match e {
            JoseError::UnsupportedCritical => DpopError::Malformed,
            _ => DpopError::BadSignature,
        })?;

        let jkt = jwk.thumbprint();
        self.record(replay_key(&jkt, jti), nonce_epoch, iat, now)?;
        Ok(VerifiedProof {
            jkt,
            jwk,
            jti: jti.to_owned(),
            iat,
            htu: htu.to_owned(),
        })
    }

    /// Remembers a jti, refusing replays. Re-checks the nonce epoch under the
    /// lock because another request may have advanced it meanwhile.
    fn record(
        &self,
        key: ReplayKey,
        nonce_epoch: Option<u64>,
        iat: u64,
        now: u64,
    ) -> Result<(), DpopError> {
        let mut s = self.lock();
        let current = s.advance(now, self.config.nonce_epoch_secs);
        if let Some(epoch) = nonce_epoch {
            check_epoch(epoch, current)?;
        }
        if !self.config.require_nonce {
            return self.record_timed(&mut s, key, iat, now);
        }
        if s.previous.contains(&key) || !s.current.insert(key) {
            return Err(DpopError::Replay);
        }
        // Early advance: each generation holds at most half the capacity,
        // so both together stay within it.
        if s.current.len() >= (self.config.jti_capacity / 2).max(1) {
            s.early += 1;
            let next = s.epoch.saturating_add(1);
            s.rotate_to(next);
        }
        Ok(())
    }

    /// Without nonces only the iat window limits how long a jti must be
    /// remembered; when full we refuse rather than forget.
    fn record_timed(
        &self,
        s: &mut ReplayState,
        key: ReplayKey,
        iat: u64,
        now: u64,
    ) -> Result<(), DpopError> {
        if s.timed.contains_key(&key) {
            return Err(DpopError::Replay);
        }
        if s.timed.len() >= self.config.jti_capacity && now > s.last_sweep {
            // At most one sweep per second keeps a full cache from costing a
            // full scan on every request.
            s.timed.retain(|_, fresh_until| *fresh_until >= now);
            s.last_sweep = now;
        }
        if s.timed.len() >= self.config.jti_capacity {
            return Err(DpopError::ReplayCacheFull);
        }
        s.timed
            .insert(key, iat.saturating_add(self.config.max_age_secs));
        Ok(())
    }
}

fn check_epoch(nonce_epoch: u64, current: u64) -> Result<(), DpopError> {
    match current.checked_sub(nonce_epoch) {
        Some(0 | 1) => Ok(()),
        _ => Err(DpopError::StaleNonce),
    }
}

fn replay_key(jkt: &str, jti: &str) -> ReplayKey {
    let digest = Sha256::new()
        .chain_update(jkt.as_bytes())
        .chain_update(b".")
        .chain_update(jti.as_bytes())
        .finalize();
    let mut key = [0u8; 16];
    key.iter_mut().zip(digest.iter()).for_each(|(k, d)| *k = *d);
    key
}

/// Whether `htu` names the same resource as the request URI, ignoring query
/// and fragment, after RFC 3986 §6.2.2/§6.2.3 normalization.
fn htu_matches(htu: &str, request_url: &str) -> bool {
    match (normalize_uri(htu), normalize_uri(request_url)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The `url` crate lowercases scheme and host, drops default ports, turns an
/// empty path into "/" and removes dot segments; percent-encoding is made
/// canonical here (uppercase hex, unreserved characters decoded).
fn normalize_uri(s: &str) -> Option<String> {
    let mut url = url::Url::parse(s).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    let origin = url.as_str().strip_suffix(url.path())?;
    Some(format!(
        "{origin}{}",
        normalize_percent_encoding(url.path())
    ))
}

fn normalize_percent_encoding(path: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        let (Some(&h), Some(&l)) = (bytes.get(i), bytes.get(i + 1)) else {
            out.push(char::from(b));
            continue;
        };
        match (b, hex(h), hex(l)) {
            (b'%', Some(hi), Some(lo)) => {
                let v = hi << 4 | lo;
                if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                    out.push(char::from(v));
                } else {
                    out.extend([
                        '%',
                        char::from(h.to_ascii_uppercase()),
                        char::from(l.to_ascii_uppercase()),
                    ]);
                }
                i += 2;
            }
            _ => out.push(char::from(b)),
        }
    }
    out
}

/// Creates a DPoP proof (client side). `htu` is `url` without query and
/// fragment; `ath` is included when an access token is given.
pub fn make_proof(
    key: &SigningKey,
    method: &str,
    url: &str,
    access_token: Option<&str>,
    nonce: Option<&str>,
    now: u64,
) -> String {
    let htu = url.split(['?', '#']).next().unwrap_or(url);
    let mut claims = Map::new();
    claims.insert(
        "jti".into(),
        Value::from(b64u(&super::random_array::<16>())),
    );
    claims.insert("htm".into(), Value::from(method));
    claims.insert("htu".into(), Value::from(htu));
    claims.insert("iat".into(), Value::from(now));
    if let Some(token) = access_token {
        claims.insert("ath".into(), Value::from(sha256_b64u(token.as_bytes())));
    }
    if let Some(nonce) = nonce {
        claims.insert("nonce".into(), Value::from(nonce));
    }
    let mut header = Map::new();
    header.insert("typ".into(), Value::from(DPOP_TYP));
    header.insert("jwk".into(), key.public_jwk().to_json());
    key.sign_jws(header, &Value::Object(claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;
    const URL: &str = "https://hearth.example/api/rooms?since=5";
    const TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";

    fn verifier() -> DpopVerifier {
        DpopVerifier::new([7u8; 32], DpopConfig::default())
    }

    fn request<'a>(proofs: &'a [&'a str], token: Option<&'a str>) -> DpopRequest<'a> {
        DpopRequest {
            proofs,
            method: "GET",
            urls: &[URL],
            access_token: token,
        }
    }

    fn check(
        v: &DpopVerifier,
        proof: &str,
        token: Option<&str>,
    ) -> Result<VerifiedProof, DpopError> {
        v.verify(&request(&[proof], token), NOW)
    }

    /// A valid resource-request proof, as header and claims to tamper with.
    fn parts(key: &SigningKey, v: &DpopVerifier) -> (Map<String, Value>, Map<String, Value>) {
        let proof = make_proof(key, "GET", URL, Some(TOKEN), Some(&v.nonce(NOW)), NOW);
        let jws = Jws::parse(&proof).unwrap();
        let Value::Object(claims) = jws.claims else {
            unreachable!()
        };
        (jws.header, claims)
    }

    /// Re-signs tampered parts with `key`. A missing or foreign `alg` gets a
    /// dummy signature: those proofs must fail before the signature matters.
    fn sign(
        key: &SigningKey,
        mut header: Map<String, Value>,
        claims: Map<String, Value>,
    ) -> String {
        let claims = Value::Object(claims);
        if header.get("alg").is_some_and(|alg| alg == key.alg()) {
            header.remove("alg");
            return key.sign_jws(header, &claims);
        }
        let header = Value::Object(header).to_string();
        format!(
            "{}.{}.{}",
            b64u(header.as_bytes()),
            b64u(claims.to_string().as_bytes()),
            b64u(&[1; 64])
        )
    }

    fn tampered(
        key: &SigningKey,
        v: &DpopVerifier,
        f: impl FnOnce(&mut Map<String, Value>, &mut Map<String, Value>),
    ) -> String {
        let (mut header, mut claims) = parts(key, v);
        f(&mut header, &mut claims);
        sign(key, header, claims)
    }

    #[test]
    fn valid_proofs_round_trip_for_both_algorithms() {
        let v = verifier();
        for key in [SigningKey::generate_es256(), SigningKey::generate_ed25519()] {
            let proof = make_proof(&key, "GET", URL, Some(TOKEN), Some(&v.nonce(NOW)), NOW);
            let ok = check(&v, &proof, Some(TOKEN)).unwrap();
            assert_eq!(ok.jkt, key.public_jwk().thumbprint());
            assert_eq!(ok.jwk, key.public_jwk());
            assert_eq!(ok.iat, NOW);
            // Token-endpoint style: no access token, so no ath needed.
            let proof = make_proof(
                &key,
                "POST",
                "https://hearth.example/token",
                None,
                Some(&v.nonce(NOW)),
                NOW,
            );
            let req = DpopRequest {
                proofs: &[&proof],
                method: "POST",
                urls: &["https://hearth.example/token"],
                access_token: None,
            };
            assert!(v.verify(&req, NOW).is_ok());
        }
    }

    #[test]
    fn rfc9449_example_proof() {
        let proof = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik\
            VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5Ij\
            oiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMj\
            U2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi\
            8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg\
            8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
        let config = DpopConfig {
            require_nonce: false,
            ..DpopConfig::default()
        };
        let v = DpopVerifier::new([0; 32], config);
        let req = DpopRequest {
            proofs: &[proof],
            method: "POST",
            urls: &["https://server.example.com/token"],
            access_token: None,
        };
        let ok = v.verify(&req, 1_562_262_616).unwrap();
        assert_eq!(ok.jkt, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
        assert_eq!(v.verify(&req, 1_562_262_616), Err(DpopError::Replay));
    }

    #[test]
    fn check_1_exactly_one_header() {
        let v = verifier();
        assert_eq!(v.verify(&request(&[], None), NOW), Err(DpopError::Missing));
        let key = SigningKey::generate_ed25519();
        let p = make_proof(&key, "GET", URL, None, Some(&v.nonce(NOW)), NOW);
        assert_eq!(
            v.verify(&request(&[&p, &p], None), NOW),
            Err(DpopError::MultipleProofs)
        );
    }

    #[test]
    fn check_2_well_formed_jwt() {
        let v = verifier();
        for bad in ["", "abc", "a.b", "a.b.c.d", "e30.e30.", "!!.e30.AA"] {
            assert_eq!(check(&v, bad, None), Err(DpopError::Malformed), "{bad}");
        }
        let key = SigningKey::generate_ed25519();
        let p = tampered(&key, &v, |h, _| {
            drop(h.insert("crit".into(), json!(["exp"])))
        });
        assert_eq!(check(&v, &p, None), Err(DpopError::Malformed));
    }

    #[test]
    fn check_3_required_members() {
        let v = verifier();
        let key = SigningKey::generate_es256();
        for name in ["typ", "alg", "jwk"] {
            let p = tampered(&key, &v, |h, _| drop(h.remove(name)));
            assert_eq!(
                check(&v, &p, Some(TOKEN)),
                Err(DpopError::MissingHeader(name))
            );
        }
        let p = tampered(&key, &v, |h, _| {
            h.insert("alg".into(), json!(7)).map(drop).unwrap_or(())
        });
        assert_eq!(
            check(&v, &p, Some(TOKEN)),
            Err(DpopError::MissingHeader("alg"))
        );
        for name in ["jti", "htm", "htu", "iat", "ath"] {
            let p = tampered(&key, &v, |_, c| drop(c.remove(name)));
            assert_eq!(
                check(&v, &p, Some(TOKEN)),
                Err(DpopError::MissingClaim(name))
            );
        }
        let p = tampered(&key, &v, |_, c| drop(c.insert("iat".into(), json!("soon"))));
        assert_eq!(
            check(&v, &p, Some(TOKEN)),
            Err(DpopError::InvalidClaim("iat"))
        );
        let p = tampered(&key, &v, |_, c| {
            drop(c.insert("jti".into(), json!("x".repeat(257))))
        });
        assert_eq!(check(&v, &p, Some(TOKEN)), Err(DpopError::JtiTooLong));
        let p = tampered(&key, &v, |_, c| drop(c.remove("nonce")));
        let err = check(&v, &p, Some(TOKEN)).unwrap_err();
        assert_eq!(err, DpopError::NonceRequired);
        assert_eq!(err.error_code(), "use_dpop_nonce");
    }

    #[test]
    fn check_4_typ() {
        let v = verifier();
        let key = SigningKey::generate_ed25519();
        let p = tampered(&key, &v, |h, _| drop(h.insert("typ".into(), json!("JWT"))));
        assert_eq!(check(&v, &p, Some(TOKEN)), Err(DpopError::WrongType));
    }

    #[test]
    fn check_5_algorithm() {
        let v = verifier();
        let key = SigningKey::generate_es256();
        for alg in ["none", "HS256", "RS256", "ES384", "ES256K"] {
            let p = tampered(&key, &v, |h, _| drop(h.insert("alg".into(), json!(alg))));
            assert_eq!(
                check(&v, &p, Some(TOKEN)),
                Err(DpopError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
        // ES256 with an Ed25519 jwk.
        let ed = SigningKey::generate_ed25519().public_jwk().to_json();
        let p = tampered(&key, &v, |h, _| drop(h.insert("jwk".into(), ed)));
        assert_eq!(
            check(&v, &p, Some(TOKEN)),
            Err(DpopError::AlgorithmKeyMismatch)
        );
    }

    #[test]
    fn check_6_signature_by_the_header_key() {
        let v = verifier();
        for (signer, other) in [
            (SigningKey::generate_es256(), SigningKey::generate_es256()),
            (
                SigningKey::generate_ed25519(),
                SigningKey::generate_ed25519(),
            ),
        ] {
            // Header names `other`'s key, but `signer` signs.
            let jwk = other.public_jwk().to_json();
            let p = tampered(&signer, &v, |h, _| drop(h.insert("jwk".into(), jwk)));
            assert_eq!(check(&v, &p, Some(TOKEN)), Err(DpopError::BadSignature));
        }
        let mut off_curve = SigningKey::generate_es256().public_jwk().to_json();
        off_curve["y"] = json!(b64u(&[3u8; 32]));
        let key = SigningKey::generate_es256();
        let p = tampered(&key, &v, |h, _| drop(h.insert("jwk".into(), off_curve)));
        assert_eq!(check(&v, &p, Some(TOKEN)), Err(DpopError::InvalidJwk));
    }

    #[test]
    fn check_7_no_private_key() {
        let v = verifier();
        let key = SigningKey::generate_ed25519();
        let p = tampered(&key, &v, |h, _| {
            h.get_mut("jwk")
                .and_then(Value::as_object_mut)
                .map(|j| j.insert("d".into(), json!("AAAA")));
        });
        assert_eq!(check(&v, &p, Some(TOKEN)), Err(DpopError::PrivateKeyInJwk));
    }

    #[test]
    fn check_8_htm() {
        let v = verifier();
        let key = SigningKey::generate_ed25519();
        let p = tampered(&key, &v, |_, c| drop(c.insert("htm".into(), json!("get"))));
        assert_eq!(check(&v, &p, Some(TOKEN)), Err(DpopError::HtmMismatch));
    }

    #[test]
    fn check_9_htu_with_normalization() {
        let v = verifier();
        let key = SigningKey::generate_es256();
        let equivalent = [
            "https://hearth.example/api/rooms",
            "HTTPS://Hearth.EXAMPLE:443/api/rooms",
            "https://hearth.example/api/./x/../rooms#frag",
            "https://hearth.example/%61pi/rooms?other=query",
        ];
        for htu in equivalent {
            let p = tampered(&key, &v, |_, c| drop(c.insert("htu".into(), json!(htu))));
            assert!(check(&v, &p, Some(TOKEN)).is_ok(), "{htu}");
        }
        let different = [
            "http://hearth.example/api/rooms",
            "https://hearth.example:8443/api/rooms",
            "https://evil.example/api/rooms",
            "https://hearth.example/api/rooms/",
            "https://hearth.example/api/Rooms",
            "/api/rooms",
            "not a url",
        ];
        for htu in different {
            let p = tampered(&key, &v, |_, c| drop(c.insert("htu".into(), json!(htu))));
            assert_eq!(
                check(&v, &p, Some(TOKEN)),
                Err(DpopError::HtuMismatch),
                "{htu}"
            );
        }
        // Any of the request's URIs (one per origin the server serves) will do; no other.
        let p = tampered(&key, &v, |_, c| {
            drop(c.insert("htu".into(), json!("https://alias.example/api/rooms")))
        });
        let urls = [
            "https://hearth.example/api/rooms",
            "https://alias.example/api/rooms",
        ];
        let proofs = [p.as_str()];
        let req = DpopRequest {
            urls: &urls,
            ..request(&proofs, Some(TOKEN))
        };
        assert_eq!(
            v.verify(&req, NOW).map(|ok| ok.htu),
            Ok("https://alias.example/api/rooms".to_string())
        );
        assert!(htu_matches("https://a.example", "https://A.example:443/"));
        assert!(htu_matches(
            "https://a.example/%7euser/%2f",
            "https://a.example/~user/%2F"
        ));
        assert!(!htu_matches("https://a.example/%2f", "https://a.example//"));
        assert!(!htu_matches("ftp://a.example/", "ftp://a.example/"));
        for (raw, norm) in [
            ("/%41%7e%2f%2F", "/A~%2F%2F"),
            ("/%", "/%"),
            ("/%4", "/%4"),
            ("/%zz%", "/%zz%"),
        ] {
            assert_eq!(normalize_percent_encoding(raw), norm);
        }
    }

    #[test]
    fn check_10_nonce() {
        let v = verifier();
        let key = SigningKey::generate_ed25519();
        let other = DpopVerifier::new([8u8; 32], DpopConfig::default());
        let foreign = other.nonce(NOW);
        let p = tampered(&key, &v, |_, c| {
            drop(c.insert("nonce".into(), json!(foreign)))
        });
        assert_eq!(check(&v, &p, Some(TOKEN)), Err(DpopError::InvalidNonce));
        let p = tampered(&key, &v, |_, c| {
            drop(c.insert("nonce".into(), json!("junk")))
        });
        assert_eq!(check(&v, &p, Some(TOKEN)), Err(DpopError::InvalidNonce));

        // A nonce from the previous epoch is still good, older is stale.
        let old = v.nonce(NOW - 300);
        let p = tampered(&key, &v, |_, c| drop(c.insert("nonce".into(), json!(old))));
        assert!(check(&v, &p, Some(TOKEN)).is_ok());
        let later = NOW + 600;
        let p = make_proof(&key, "GET", URL, Some(TOKEN), Some(&v.nonce(NOW)), later);
        let err = v.verify(&request(&[&p], Some(TOKEN)), later).unwrap_err();
        assert_eq!(err, DpopError::StaleNonce);
        assert_eq!(err.error_code(), "use_dpop_nonce");
        assert_eq!(
            err.www_authenticate(SUPPORTED_ALGS),
            r#"DPoP error="use_dpop_nonce", error_description="stale nonce", algs="ES256 EdDSA""#
        );
    }

    #[test]
    fn check_11_creation_time_by_nonce_or_iat() {
        // With a nonce, the nonce dates the proof: a client clock hours away from the
        // server's (a Pi without RTC after a power cut) does not matter.
        let v = verifier();
        let key = SigningKey::generate_es256();
        for iat in [NOW - 3 * 3600, NOW + 3 * 3600, NOW - 301, NOW + 61, NOW] {
            let p = tampered(&key, &v, |_, c| drop(c.insert("iat".into(), json!(iat))));
            assert!(check(&v, &p, Some(TOKEN)).is_ok(), "iat {iat} with a nonce");
        }
        // ... but the nonce itself must be recent (two epochs at most).
        let later = NOW + 600;
        let p = make_proof(&key, "GET", URL, Some(TOKEN), Some(&v.nonce(NOW)), later);
        let err = v.verify(&request(&[&p], Some(TOKEN)), later).unwrap_err();
        assert_eq!(err, DpopError::StaleNonce);

        // Without nonces (development only), the iat window applies.
        let v = DpopVerifier::new(
            [7u8; 32],
            DpopConfig {
                require_nonce: false,
                ..DpopConfig::default()
            },
        );
        let at = |iat: u64| make_proof(&key, "GET", URL, Some(TOKEN), None, iat);
        let p = at(NOW - 301);
        assert_eq!(
            v.verify(&request(&[&p], Some(TOKEN)), NOW).unwrap_err(),
            DpopError::IatTooOld
        );
        let p = at(NOW + 61);
        assert_eq!(
            v.verify(&request(&[&p], Some(TOKEN)), NOW).unwrap_err(),
            DpopError::IatInFuture
        );
        for iat in [NOW - 300, NOW + 60] {
            let p = at(iat);
            assert!(v.verify(&request(&[&p], Some(TOKEN)), NOW).is_ok());
        }
    }

    #[test]
    fn check_12_ath() {
        let v = verifier();
        let key = SigningKey::generate_ed25519();
        let p = make_proof(&key, "GET", URL, Some(TOKEN), Some(&v.nonce(NOW)), NOW);
        let err = check(&v, &p, Some("another-token")).unwrap_err();
        assert_eq!(err, DpopError::AthMismatch);
        assert_eq!(
            err.www_authenticate(SUPPORTED_ALGS),
            r#"DPoP error="invalid_dpop_proof", error_description="ath mismatch", algs="ES256 EdDSA""#
        );
        let claims = Jws::parse(&p).unwrap().claims;
        assert_eq!(claims["ath"], "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
        assert_eq!(claims["htu"], "https://hearth.example/api/rooms");
    }

    #[test]
    fn replay_is_refused() {
        let v = verifier();
        let key = SigningKey::generate_es256();
        let p = make_proof(&key, "GET", URL, Some(TOKEN), Some(&v.nonce(NOW)), NOW);
        assert!(check(&v, &p, Some(TOKEN)).is_ok());
        assert_eq!(check(&v, &p, Some(TOKEN)), Err(DpopError::Replay));
        // Still refused after an epoch rollover, while its nonce is valid.
        assert_eq!(
            v.verify(&request(&[&p], Some(TOKEN)), NOW + 300),
            Err(DpopError::Replay)
        );
        // A failed proof does not consume its jti.
        let q = make_proof(&key, "GET", URL, Some(TOKEN), Some(&v.nonce(NOW)), NOW);
        assert_eq!(check(&v, &q, Some("wrong")), Err(DpopError::AthMismatch));
        assert!(check(&v, &q, Some(TOKEN)).is_ok());
    }

    #[test]
    fn early_epoch_advance_bounds_memory() {
        let config = DpopConfig {
            jti_capacity: 10,
            ..DpopConfig::default()
        };
        let v = DpopVerifier::new([9u8; 32], config);
        let key = SigningKey::generate_ed25519();
        let first_nonce = v.nonce(NOW);
        let mut last = String::new();
        for _ in 0..25 {
            last = make_proof(&key, "GET", URL, None, Some(&v.nonce(NOW)), NOW);
            assert!(v.verify(&request(&[&last], None), NOW).is_ok());
            assert!(v.replay_cache_len() <= 10, "{}", v.replay_cache_len());
        }
        // The clock did not move, yet the first nonce is now refused...
        let old = make_proof(&key, "GET", URL, None, Some(&first_nonce), NOW);
        assert_eq!(
            v.verify(&request(&[&old], None), NOW),
            Err(DpopError::StaleNonce)
        );
        // ...while recent proofs are still remembered.
        assert_eq!(
            v.verify(&request(&[&last], None), NOW),
            Err(DpopError::Replay)
        );
    }

    #[test]
    fn without_nonces_a_full_cache_refuses() {
        let config = DpopConfig {
            require_nonce: false,
            jti_capacity: 3,
            ..DpopConfig::default()
        };
        let v = DpopVerifier::new([1u8; 32], config);
        let key = SigningKey::generate_es256();
        for _ in 0..3 {
            let p = make_proof(&key, "GET", URL, None, None, NOW);
            assert!(check(&v, &p, None).is_ok());
        }
        let p = make_proof(&key, "GET", URL, None, None, NOW);
        assert_eq!(check(&v, &p, None), Err(DpopError::ReplayCacheFull));
        // Once the old proofs are too old to replay, their slots free up.
        let later = NOW + 301;
        let p = make_proof(&key, "GET", URL, None, None, later);
        assert!(v.verify(&request(&[&p], None), later).is_ok());
        assert_eq!(v.replay_cache_len(), 1);
    }

    #[test]
    fn error_rendering() {
        let e = DpopError::HtuMismatch;
        assert_eq!(e.error_code(), "invalid_dpop_proof");
        assert_eq!(e.description(), "htu mismatch");
        assert_eq!(DpopError::IatTooOld.description(), "iat too old");
        assert_eq!(
            e.www_authenticate(""),
            r#"DPoP error="invalid_dpop_proof", error_description="htu mismatch""#
        );
        assert_eq!(quote_escape(r#"a"b\c"#), r#"a\"b\\c"#);
    }

    /// `cargo test --release -- --ignored --nocapture verify_speed`
    #[test]
    #[ignore]
    fn verify_speed() {
        use std::time::Instant;
        const N: u32 = 2000;
        for key in [SigningKey::generate_es256(), SigningKey::generate_ed25519()] {
            let config = DpopConfig {
                jti_capacity: 1_000_000,
                ..DpopConfig::default()
            };
            let v = DpopVerifier::new([5u8; 32], config);
            let nonce = v.nonce(NOW);
            let proofs: Vec<String> = (0..N)
                .map(|_| make_proof(&key, "GET", URL, Some(TOKEN), Some(&nonce), NOW))
                .collect();
            let jws = Jws::parse(&proofs[0]).unwrap();
            let jwk = key.public_jwk();
            let start = Instant::now();
            for _ in 0..N {
                jws.verify(&jwk).unwrap();
            }
            let sig_only = start.elapsed() / N;
            let start = Instant::now();
            for p in &proofs {
                v.verify(&request(&[p], Some(TOKEN)), NOW).unwrap();
            }
            let full = start.elapsed() / N;
            println!(
                "{}: signature {sig_only:?}, full DPoP check {full:?}",
                key.alg()
            );
            if let SigningKey::Es256(sk) = &key {
                use p256::ecdsa::signature::Verifier as _;
                let (input, sig) = proofs[0].rsplit_once('.').unwrap();
                let sig = p256::ecdsa::Signature::from_slice(&b64u_decode(sig).unwrap()).unwrap();
                let start = Instant::now();
                for _ in 0..N {
                    sk.verifying_key().verify(input.as_bytes(), &sig).unwrap();
                }
                println!(
                    "ES256 with the p256 crate instead of ring: {:?}",
                    start.elapsed() / N
                );
            }
        }
    }
}
