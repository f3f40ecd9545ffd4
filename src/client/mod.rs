//! The Rust client library. It holds the device key K_dev (and K_id when it has it), makes
//! a DPoP proof for every request, keeps each server's nonce, refreshes tokens before
//! they expire, and sends every request to the origin named in its URL — so one client
//! uses several servers at once, each directly (direct participation).
//!
//! ```no_run
//! # async fn demo() -> Result<(), hearth::client::ClientError> {
//! let client = hearth::client::Client::new();
//! client.register("http://127.0.0.1:8080", "alice", "correct horse battery").await?;
//! let me = client.get("http://127.0.0.1:8080/api/v1/users/@me").await?.ok()?;
//! println!("{}", me.json()?["id"]);
//! # Ok(()) }
//! ```

mod events;
pub(crate) mod transport;
mod voice;

pub use events::{EventStream, GatewayMessage};
pub use voice::{VoiceConnection, VoiceEvent, VoicePlayer};

use crate::auth::dpop::make_proof;
use crate::auth::jose::SigningKey;
use crate::auth::{device_cert, keywrap, password::PasswordParams};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
pub use transport::Response;

/// Refresh the access token when it has less than this many seconds left.
const REFRESH_MARGIN_SECS: u64 = 30;

/// How long a connection attempt may take before the server counts as unreachable (an
/// unplugged box on the LAN answers nothing at all).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// While the home is unreachable, how long the client works with a host's own tokens
/// before it tries the home again (unless set with [`Client::set_home_retry`]).
const DEFAULT_HOME_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not an http(s) URL with a host.
    #[error("invalid URL {0}")]
    BadUrl(String),
    /// Connecting or talking to the server failed.
    #[error("network error talking to {origin}: {message}")]
    Network {
        /// Which server.
        origin: String,
        /// What happened.
        message: String,
    },
    /// The server answered with an error status.
    #[error("{status} {code}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The `error` field.
        code: String,
        /// The `message` field.
        message: String,
    },
    /// No session with the server that should authenticate this request.
    #[error("not signed in at {0}")]
    NotSignedIn(String),
    /// The answer was not what the protocol promises.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// The server's TLS certificate is not the one pinned for it: someone may be
    /// impersonating it, or its owner replaced the certificate. Nothing was sent.
    #[error("the TLS certificate of {origin} changed (pinned SHA-256 {pinned}, presented {presented}); refusing to connect")]
    CertificateChanged {
        /// Which server.
        origin: String,
        /// The fingerprint pinned at first use.
        pinned: String,
        /// The fingerprint it presented now.
        presented: String,
    },
    /// Key handling failed (e.g. wrong password for the key backup).
    #[error("key error: {0}")]
    Key(String),
}

/// A device link opened by a new device ([`Client::open_device_link`]).
#[derive(Clone, Debug)]
pub struct DeviceLink {
    /// The home server.
    pub origin: String,
    /// The code to show, `XXXX-XXXX`.
    pub code: String,
    /// The secret mailbox id the approval arrives in.
    pub mailbox: String,
    /// The thumbprint of this device's key, to show beside the code.
    pub jkt: String,
}

#[derive(Clone, Debug)]
struct Session {
    access_token: String,
    refresh_token: String,
    expires_at: u64,
    user_id: String,
    /// Made with the device certificate while the home was unreachable: used only while
    /// it still is, kept for the next time.
    fallback: bool,
}

/// A client of one or more Hearth servers.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    device_key: SigningKey,
    identity: Mutex<Option<ed25519_dalek::SigningKey>>,
    /// A device certificate received through a device link (when this device has no K_id).
    certificate: Mutex<Option<String>>,
    /// The home server's origin.
    home: Mutex<Option<String>>,
    /// Signed-in sessions by the origin that issued them.
    sessions: Mutex<HashMap<String, Session>>,
    /// The latest DPoP nonce of each origin.
    nonces: Mutex<HashMap<String, String>>,
    /// Until when the home counts as unreachable (its last refresh failed to connect).
    home_away_until: Mutex<Option<std::time::Instant>>,
    /// How long the home counts as unreachable after a failed attempt.
    home_retry: Mutex<std::time::Duration>,
    transport: transport::Transport,
}

fn now() -> u64 {
    crate::system::now()
}

/// A device certificate for the key `jkt` at `homeserver`, signed by K_id, valid a year.
fn certify(identity: &ed25519_dalek::SigningKey, jkt: &str, homeserver: &str) -> String {
    let issued = now();
    device_cert::issue_device_certificate(
        identity,
        &device_cert::DeviceCertificate {
            sub: device_cert::user_id_from_public(&identity.verifying_key().to_bytes()),
            jkt: jkt.to_string(),
            homeserver: homeserver.to_string(),
            iat: issued,
            exp: issued + 365 * 24 * 3600,
        },
    )
}

/// `scheme://host:port` of a URL.
pub fn origin_of(url: &str) -> Result<String, ClientError> {
    let parsed = url::Url::parse(url).map_err(|_| ClientError::BadUrl(url.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ClientError::BadUrl(url.to_string()));
    }
    Ok(parsed.origin().ascii_serialization())
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// The TLS certificate fingerprints this client pinned (at first use, or set by the
    /// caller, e.g. from a fingerprint the server's owner read out of its log or mDNS).
    pub fn tls_pins(&self) -> &crate::lan::tls::Pins {
        &self.inner.transport.pins
    }

    /// A client with a fresh ES256 device key (what a browser's WebCrypto would make).
    pub fn new() -> Client {
        Client::with_device_key(SigningKey::generate_es256())
    }

    /// A client with the given device key (ES256 or EdDSA).
    pub fn with_device_key(device_key: SigningKey) -> Client {
        Client {
            inner: Arc::new(Inner {
                device_key,
                identity: Mutex::new(None),
                certificate: Mutex::new(None),
                home: Mutex::new(None),
                sessions: Mutex::new(HashMap::new()),
                nonces: Mutex::new(HashMap::new()),
                home_away_until: Mutex::new(None),
                home_retry: Mutex::new(DEFAULT_HOME_RETRY),
                transport: transport::Transport::default(),
            }),
        }
    }

    /// The RFC 7638 thumbprint of this client's device key.
    pub fn device_thumbprint(&self) -> String {
        self.inner.device_key.public_jwk().thumbprint()
    }

    /// The device key.
    pub fn device_key(&self) -> &SigningKey {
        &self.inner.device_key
    }

    /// The identity key K_id, if this client has it.
    pub fn identity(&self) -> Option<ed25519_dalek::SigningKey> {
        self.inner
            .identity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Uses an existing identity key.
    pub fn set_identity(&self, key: ed25519_dalek::SigningKey) {
        *self
            .inner
            .identity
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(key);
    }

    /// The user id of the session at `origin`.
    pub fn user_id(&self, origin: &str) -> Option<String> {
        self.session(origin).map(|s| s.user_id)
    }

    /// The current access token at `origin` (for tests that exercise the server directly).
    pub fn access_token(&self, origin: &str) -> Option<String> {
        self.session(origin).map(|s| s.access_token)
    }

    /// The refresh token at `origin`.
    pub fn refresh_token(&self, origin: &str) -> Option<String> {
        self.session(origin).map(|s| s.refresh_token)
    }

    /// The origin whose tokens authenticate the next request to `origin`: its own session
    /// (signed in there), else the home server's; while the home is unreachable, the
    /// session `origin` gave this device for its certificate (mzchat's path).
    pub fn token_issuer(&self, origin: &str) -> Option<String> {
        let origin = origin_of(origin).ok()?;
        match self.session(&origin) {
            Some(s) if !s.fallback || self.home_away() => Some(origin),
            _ => self
                .home()
                .or_else(|| self.session(&origin).map(|_| origin)),
        }
    }

    /// How long to keep using hosts' own tokens after the home was found unreachable,
    /// before trying it again. Default 60 s.
    pub fn set_home_retry(&self, interval: std::time::Duration) {
        *self
            .inner
            .home_retry
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = interval;
    }

    fn home_away(&self) -> bool {
        self.inner
            .home_away_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| std::time::Instant::now() < until)
    }

    fn mark_home_away(&self, away: bool) {
        let retry = *self
            .inner
            .home_retry
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *self
            .inner
            .home_away_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = away.then(|| std::time::Instant::now() + retry);
    }

    /// The session to authenticate a request to `origin` with, refreshed when it is about
    /// to expire (or `force_refresh`). When the home's token must be refreshed and the home
    /// cannot be reached, signs in at `origin` itself with the device certificate, so the
    /// user keeps going on other servers while the home is unplugged; once the home
    /// answers again, its tokens are used again.
    async fn session_for(&self, origin: &str, force_refresh: bool) -> Result<Session, ClientError> {
        let not_signed_in = || ClientError::NotSignedIn(origin.to_string());
        let issuer = self.token_issuer(origin).ok_or_else(not_signed_in)?;
        let session = self.session(&issuer).ok_or_else(not_signed_in)?;
        if session.fallback {
            return self.fallback_session(origin, force_refresh).await;
        }
        if !force_refresh && session.expires_at > now() + REFRESH_MARGIN_SECS {
            return Ok(session);
        }
        match self.refresh(&issuer).await {
            Ok(()) => {
                if self.home().as_deref() == Some(issuer.as_str()) {
                    self.mark_home_away(false);
                }
                self.session(&issuer).ok_or_else(not_signed_in)
            }
            Err(ClientError::Network { .. })
                if issuer != origin && self.home().as_deref() == Some(issuer.as_str()) =>
            {
                self.mark_home_away(true);
                self.fallback_session(origin, false).await
            }
            Err(e) => Err(e),
        }
    }

    /// This device's own session at `origin` while the home is away: refreshed if it has
    /// one, else made with the device-certificate grant.
    async fn fallback_session(
        &self,
        origin: &str,
        force_refresh: bool,
    ) -> Result<Session, ClientError> {
        if let Some(session) = self.session(origin).filter(|s| s.fallback) {
            if !force_refresh && session.expires_at > now() + REFRESH_MARGIN_SECS {
                return Ok(session);
            }
            if self.refresh(origin).await.is_ok() {
                if let Some(session) = self.session(origin) {
                    return Ok(session);
                }
            }
        }
        self.certificate_sign_in(origin, true).await?;
        self.session(origin)
            .ok_or_else(|| ClientError::NotSignedIn(origin.to_string()))
    }

    /// The home server (the first server this client signed in at, unless set).
    pub fn home(&self) -> Option<String> {
        self.inner
            .home
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes `origin` the home server.
    pub fn set_home(&self, origin: &str) -> Result<(), ClientError> {
        *self.inner.home.lock().unwrap_or_else(|p| p.into_inner()) = Some(origin_of(origin)?);
        Ok(())
    }

    fn session(&self, origin: &str) -> Option<Session> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(origin)
            .cloned()
    }

    fn nonce(&self, origin: &str) -> Option<String> {
        self.inner
            .nonces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(origin)
            .cloned()
    }

    fn remember_nonce(&self, origin: &str, response: &Response) {
        if let Some(nonce) = response.header("DPoP-Nonce") {
            self.inner
                .nonces
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(origin.to_string(), nonce.to_string());
        }
    }

    /// Makes a DPoP proof for a request (public so tests can craft requests by hand).
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
    ) -> Result<String, ClientError> {
        let origin = origin_of(url)?;
        Ok(make_proof(
            &self.inner.device_key,
            method,
            url,
            access_token,
            self.nonce(&origin).as_deref(),
            now(),
        ))
    }

    /// Makes a new identity K_id, certifies this device with it, wraps K_id under the
    /// password, and creates the account; then signs in.
    pub async fn register(
        &self,
        origin: &str,
        username: &str,
        password: &str,
    ) -> Result<Value, ClientError> {
        let origin = origin_of(origin)?;
        let body = self.account_body(&origin, username, password)?;
        let created = self
            .send(
                &format!("{origin}/api/v1/register"),
                "POST",
                Some(body),
                false,
            )
            .await?
            .ok()?
            .json()?;
        self.login_password(&origin, username, password).await?;
        Ok(created)
    }

    /// The account a registration (or a claim of the box, as its `owner`) sends: K_id
    /// (made now unless this client has one), its certificate for this device at
    /// `origin`, and K_id wrapped under the password.
    pub fn account_body(
        &self,
        origin: &str,
        username: &str,
        password: &str,
    ) -> Result<Value, ClientError> {
        let origin = origin_of(origin)?;
        let identity = match self.identity() {
            Some(k) => k,
            None => {
                let SigningKey::EdDsa(k) = SigningKey::generate_ed25519() else {
                    return Err(ClientError::Key("could not make an Ed25519 key".into()));
                };
                self.set_identity(k.clone());
                k
            }
        };
        let user_id = device_cert::user_id_from_public(&identity.verifying_key().to_bytes());
        let certificate = self.certificate_for(&identity, &origin);
        // A light KDF setting keeps registration quick on small clients; the blob records
        // its own parameters.
        let params = PasswordParams {
            m_cost_kib: 19456,
            t_cost: 2,
            p_cost: 1,
        };
        let backup = keywrap::wrap_secret(&identity.to_bytes(), password, &params)
            .map_err(|e| ClientError::Key(e.to_string()))?;
        Ok(json!({
            "username": username,
            "password": password,
            "identity_key": user_id,
            "device_certificate": certificate,
            "key_backup": backup,
        }))
    }

    fn certificate_for(&self, identity: &ed25519_dalek::SigningKey, homeserver: &str) -> String {
        certify(identity, &self.device_thumbprint(), homeserver)
    }

    /// A device certificate for this client's device key: signed by K_id now, or the one
    /// received through a device link (which names the home it was made for).
    pub fn device_certificate(&self, homeserver: &str) -> Result<String, ClientError> {
        if let Some(identity) = self.identity() {
            return Ok(self.certificate_for(&identity, homeserver));
        }
        self.inner
            .certificate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| ClientError::Key("no identity key and no device certificate".into()))
    }

    /// New device: opens a device link at `origin` (the user's home) for this client's
    /// device key. Show [`DeviceLink::code`] (and the key's thumbprint) to the user, who
    /// approves it on a device already signed in; then [`Client::finish_device_link`].
    /// `username` (optional) names the account to join: only its owner may approve.
    pub async fn open_device_link(
        &self,
        origin: &str,
        username: Option<&str>,
        device_name: &str,
    ) -> Result<DeviceLink, ClientError> {
        let origin = origin_of(origin)?;
        let mut body = json!({
            "device_key": self.inner.device_key.public_jwk().to_json(),
            "device_name": device_name,
        });
        if let Some(username) = username {
            body["username"] = Value::from(username);
        }
        let opened = self
            .send(
                &format!("{origin}/api/v1/device-links"),
                "POST",
                Some(body),
                false,
            )
            .await?
            .ok()?
            .json()?;
        let field = |name: &str| {
            opened[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| ClientError::Protocol(format!("device link without {name}")))
        };
        Ok(DeviceLink {
            origin,
            code: field("code")?,
            mailbox: field("mailbox")?,
            jkt: field("jkt")?,
        })
    }

    /// Signed-in device with K_id: what the code typed by the user stands for
    /// (`{"code","jkt","device_key","device_name","expires_in"}`), to compare with the new
    /// device's screen.
    pub async fn show_device_link(&self, origin: &str, code: &str) -> Result<Value, ClientError> {
        let origin = origin_of(origin)?;
        let code = utf8_percent_encode(code, NON_ALPHANUMERIC).to_string();
        self.get(&format!("{origin}/api/v1/device-links/{code}"))
            .await?
            .ok()?
            .json()
    }

    /// Signed-in device with K_id: approves the link `code` for the device key `jkt` (the
    /// thumbprint the user confirmed), with a device certificate signed by K_id.
    pub async fn approve_device_link(
        &self,
        origin: &str,
        code: &str,
        jkt: &str,
    ) -> Result<(), ClientError> {
        let origin = origin_of(origin)?;
        let identity = self
            .identity()
            .ok_or_else(|| ClientError::Key("no identity key to sign with".into()))?;
        let certificate = certify(&identity, jkt, &origin);
        let code = utf8_percent_encode(code, NON_ALPHANUMERIC).to_string();
        self.post(
            &format!("{origin}/api/v1/device-links/{code}"),
            json!({ "device_certificate": certificate }),
        )
        .await?
        .ok()?;
        Ok(())
    }

    /// New device: waits (polling every half second, up to `timeout`) for the link to be
    /// approved, then signs in at the home with the certificate it brought.
    pub async fn finish_device_link(
        &self,
        link: &DeviceLink,
        timeout: std::time::Duration,
    ) -> Result<(), ClientError> {
        let url = format!(
            "{}/api/v1/device-links/mailbox/{}",
            link.origin, link.mailbox
        );
        let deadline = std::time::Instant::now() + timeout;
        let certificate = loop {
            let answer = self.send(&url, "GET", None, false).await?.ok()?.json()?;
            if answer["status"] == "approved" {
                break answer["device_certificate"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ClientError::Protocol("approval without certificate".into()))?;
            }
            if std::time::Instant::now() >= deadline {
                return Err(ClientError::Protocol(
                    "the device link was not approved in time".into(),
                ));
            }
            smol::Timer::after(std::time::Duration::from_millis(500)).await;
        };
        *self
            .inner
            .certificate
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(certificate);
        if self.home().is_none() {
            self.set_home(&link.origin)?;
        }
        self.login_certificate(&link.origin).await
    }

    /// Signs in with the password grant (RFC 6749 §4.3) bound to this device key.
    pub async fn login_password(
        &self,
        origin: &str,
        username: &str,
        password: &str,
    ) -> Result<(), ClientError> {
        let origin = origin_of(origin)?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "password")
            .append_pair("username", username)
            .append_pair("password", password)
            .finish();
        self.token_request(&origin, form).await
    }

    /// Signs in with a device certificate signed by K_id.
    pub async fn login_certificate(&self, origin: &str) -> Result<(), ClientError> {
        self.certificate_sign_in(origin, false).await
    }

    /// The device-certificate grant at `origin`; `fallback` marks the session as one made
    /// while the home was away.
    async fn certificate_sign_in(&self, origin: &str, fallback: bool) -> Result<(), ClientError> {
        let origin = origin_of(origin)?;
        // The certificate names the user's home; at another server this is mzchat's login
        // of a remote user, who gets that server's own tokens.
        let home = self.home().unwrap_or_else(|| origin.clone());
        let certificate = self.device_certificate(&home)?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", crate::auth::DEVICE_CERTIFICATE_GRANT)
            .append_pair("device_certificate", &certificate)
            .finish();
        self.token_request(&origin, form).await?;
        if let Some(session) = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&origin)
        {
            session.fallback = fallback;
        }
        Ok(())
    }

    /// Moves this user's home to `new_home` (mzchat's migration): signs in there with a
    /// device certificate naming it and a Migration Proof signed by K_id, and has it tell
    /// `old_homes` to stop acting as home. The user id stays the same.
    pub async fn migrate(&self, new_home: &str, old_homes: &[&str]) -> Result<(), ClientError> {
        let new_home = origin_of(new_home)?;
        let identity = self
            .identity()
            .ok_or_else(|| ClientError::Key("no identity key".into()))?;
        let proof = crate::auth::migration::make_proof(&identity, &new_home, now());
        let certificate = self.certificate_for(&identity, &new_home);
        let targets = old_homes
            .iter()
            .map(|o| origin_of(o))
            .collect::<Result<Vec<_>, _>>()?
            .join(",");
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", crate::auth::DEVICE_CERTIFICATE_GRANT)
            .append_pair("device_certificate", &certificate)
            .append_pair("migration_new_homeserver", &proof.new_homeserver)
            .append_pair("migration_timestamp", &proof.timestamp.to_string())
            .append_pair("migration_signature", &proof.signature)
            .append_pair("migration_targets", &targets)
            .finish();
        self.token_request(&new_home, form).await?;
        // The old homes no longer sign this user in; the new home's tokens serve there.
        let mut sessions = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for old in old_homes {
            if let Ok(origin) = origin_of(old) {
                if origin != new_home {
                    sessions.remove(&origin);
                }
            }
        }
        drop(sessions);
        self.set_home(&new_home)
    }

    /// Fetches the key backup and unwraps K_id with the password (a new device after a
    /// password login).
    pub async fn recover_identity(&self, origin: &str, password: &str) -> Result<(), ClientError> {
        let origin = origin_of(origin)?;
        let answer = self
            .get(&format!("{origin}/api/v1/users/@me/key-backup"))
            .await?
            .ok()?
            .json()?;
        let blob = answer["key_backup"]
            .as_str()
            .ok_or_else(|| ClientError::Key("the server holds no key backup".into()))?;
        let secret =
            keywrap::unwrap_secret(blob, password).map_err(|e| ClientError::Key(e.to_string()))?;
        let bytes: [u8; 32] = secret
            .as_slice()
            .try_into()
            .map_err(|_| ClientError::Key("the key backup holds no Ed25519 key".into()))?;
        self.set_identity(ed25519_dalek::SigningKey::from_bytes(&bytes));
        Ok(())
    }

    /// Uses the refresh token for a new access token.
    pub async fn refresh(&self, origin: &str) -> Result<(), ClientError> {
        let origin = origin_of(origin)?;
        let session = self
            .session(&origin)
            .ok_or_else(|| ClientError::NotSignedIn(origin.clone()))?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", &session.refresh_token)
            .finish();
        self.token_request(&origin, form).await
    }

    /// Signs this device out at `origin`.
    pub async fn logout(&self, origin: &str) -> Result<(), ClientError> {
        let origin = origin_of(origin)?;
        self.post(&format!("{origin}/api/v1/auth/logout"), json!({}))
            .await?
            .ok()?;
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&origin);
        Ok(())
    }

    async fn token_request(&self, origin: &str, form: String) -> Result<(), ClientError> {
        let url = format!("{origin}/oauth/token");
        let mut retried = false;
        loop {
            let proof = self.proof("POST", &url, None)?;
            let response = self
                .inner
                .transport
                .send(
                    &url,
                    "POST",
                    &[
                        ("DPoP", proof),
                        ("Content-Type", "application/x-www-form-urlencoded".into()),
                    ],
                    form.clone().into_bytes(),
                )
                .await?;
            self.remember_nonce(origin, &response);
            if response.status == 400
                && response.error_code().as_deref() == Some("use_dpop_nonce")
                && !retried
            {
                retried = true;
                continue;
            }
            let body = response.ok()?.json()?;
            let field = |name: &str| {
                body[name]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ClientError::Protocol(format!("token answer without {name}")))
            };
            let mut sessions = self
                .inner
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // A refresh keeps what the session is for.
            let fallback = sessions.get(origin).is_some_and(|s| s.fallback);
            let session = Session {
                access_token: field("access_token")?,
                refresh_token: field("refresh_token")?,
                expires_at: now() + body["expires_in"].as_u64().unwrap_or(0),
                user_id: field("user_id")?,
                fallback,
            };
            sessions.insert(origin.to_string(), session);
            drop(sessions);
            let mut home = self.inner.home.lock().unwrap_or_else(|p| p.into_inner());
            if home.is_none() {
                *home = Some(origin.to_string());
            }
            return Ok(());
        }
    }

    /// GET with authentication.
    pub async fn get(&self, url: &str) -> Result<Response, ClientError> {
        self.send(url, "GET", None, true).await
    }

    /// POST a JSON body with authentication.
    pub async fn post(&self, url: &str, body: Value) -> Result<Response, ClientError> {
        self.send(url, "POST", Some(body), true).await
    }

    /// PATCH a JSON body with authentication.
    pub async fn patch(&self, url: &str, body: Value) -> Result<Response, ClientError> {
        self.send(url, "PATCH", Some(body), true).await
    }

    /// PUT with authentication (JSON body optional).
    pub async fn put(&self, url: &str, body: Option<Value>) -> Result<Response, ClientError> {
        self.send(url, "PUT", body, true).await
    }

    /// DELETE with authentication.
    pub async fn delete(&self, url: &str) -> Result<Response, ClientError> {
        self.send(url, "DELETE", None, true).await
    }

    /// Sends a JSON request to the origin in `url`; with `auth`, adds the access token and
    /// a DPoP proof, refreshing or fetching a nonce and retrying once when needed.
    pub async fn send(
        &self,
        url: &str,
        method: &str,
        body: Option<Value>,
        auth: bool,
    ) -> Result<Response, ClientError> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let content_type = bytes.as_ref().map(|_| "application/json");
        self.send_bytes(url, method, content_type, bytes.unwrap_or_default(), auth)
            .await
    }

    /// Sends raw bytes (uploads, or malformed input in tests).
    pub async fn send_bytes(
        &self,
        url: &str,
        method: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        auth: bool,
    ) -> Result<Response, ClientError> {
        let origin = origin_of(url)?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut headers: Vec<(&str, String)> = Vec::new();
            if let Some(ct) = content_type {
                headers.push(("Content-Type", ct.to_string()));
            }
            if auth {
                // The server's own session if we have one, else our home's token, which
                // peers of the home accept (direct participation).
                let session = self.session_for(&origin, false).await?;
                if let Some(issuer) = self.token_issuer(&origin).filter(|i| *i != origin) {
                    // The home's token is the home's word only: the device certificate is
                    // the user's own evidence of which server is home (see
                    // `Services::ensure_shadow`).
                    if let Ok(certificate) = self.device_certificate(&issuer) {
                        headers.push((device_cert::HEADER, certificate));
                    }
                }
                headers.push(("Authorization", format!("DPoP {}", session.access_token)));
                headers.push((
                    "DPoP",
                    self.proof(method, url, Some(&session.access_token))?,
                ));
            }
            let response = self
                .inner
                .transport
                .send(url, method, &headers, body.clone())
                .await?;
            self.remember_nonce(&origin, &response);
            if auth && response.status == 401 && attempts < 3 {
                match response.error_code().as_deref() {
                    Some("use_dpop_nonce") => continue,
                    Some("invalid_token")
                        if attempts == 1 && self.session_for(&origin, true).await.is_ok() =>
                    {
                        continue
                    }
                    _ => {}
                }
            }
            return Ok(response);
        }
    }

    /// Sends a request exactly as given: no proof, no token, no retries (for tests of
    /// what the server does with hand-made or broken requests).
    pub async fn raw(
        &self,
        url: &str,
        method: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Response, ClientError> {
        let origin = origin_of(url)?;
        let response = self
            .inner
            .transport
            .send(url, method, headers, body)
            .await?;
        self.remember_nonce(&origin, &response);
        Ok(response)
    }

    /// Fetches a fresh nonce from `origin` (any response carries one).
    pub async fn fetch_nonce(&self, origin: &str) -> Result<String, ClientError> {
        let origin = origin_of(origin)?;
        let response = self
            .raw(
                &format!("{origin}/.well-known/hearth"),
                "GET",
                &[],
                Vec::new(),
            )
            .await?;
        response
            .header("DPoP-Nonce")
            .map(str::to_string)
            .ok_or_else(|| ClientError::Protocol("no DPoP-Nonce header".into()))
    }
}
