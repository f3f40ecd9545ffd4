//! The state one running server shares between connections ([`App`]): it opens storage,
//! loads or makes the server's keys, and builds the services, the gateway, voice rooms
//! and the federation handle. [`crate::server`] starts and stops a server around it.

use crate::auth::dpop::{DpopConfig, DpopVerifier};
use crate::auth::server_key::ServerKey;
use crate::auth::tokens::AccessTokenCache;
use crate::config::Config;
use crate::model::IdGenerator;
use crate::service::accounts::LoginLimiter;
use crate::service::Services;
use crate::storage::{tables::META, Store, StoreError, Tx};
use std::sync::Arc;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Storage could not be opened.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// File system trouble.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Something stored is unusable.
    #[error("{0}")]
    Invalid(String),
    /// The TLS certificate or key is unusable.
    #[error("TLS: {0}")]
    Tls(#[from] crate::lan::tls::TlsError),
    /// The served origins could not be worked out.
    #[error("{0}")]
    Origins(#[from] crate::origins::OriginError),
}

/// One running server's state, shared by every connection.
pub struct App {
    /// Business rules and storage.
    pub services: Arc<Services>,
    /// DPoP proof checks (nonces, replay cache).
    pub dpop: DpopVerifier,
    /// Verified access tokens, so only the proof costs per request.
    pub token_cache: Arc<AccessTokenCache>,
    /// Login attempt counters.
    pub login_limiter: LoginLimiter,
    /// Rate limits of registration, posting, reactions and uploads.
    pub throttle: crate::service::rate::RateLimiter,
    /// Device links waiting for approval (in memory).
    pub device_links: crate::auth::device_link::DeviceLinks,
    /// `http` or `https`, as the listener serves it.
    pub scheme: &'static str,
    /// SHA-256 of the TLS certificate (lowercase hex), when serving HTTPS.
    pub tls_fingerprint: std::sync::OnceLock<String>,
    /// The realtime gateway.
    pub gateway: Arc<crate::gateway::Gateway>,
    /// Voice rooms.
    pub voice: Arc<crate::voice::Voice>,
    /// Federation state (replay guard, outbox wake-ups) and its handle on the services.
    pub federation: Arc<crate::federation::Federation>,
    /// Runs connections and websocket sessions (threads started by [`crate::http::serve`]).
    pub executor: Arc<smol::Executor<'static>>,
    /// Hearth servers heard on the LAN (mDNS), filled while [`crate::server::run_with`] runs.
    pub discovered: Arc<crate::lan::Discovered>,
    /// Every origin this server answers as; proofs' `htu` and ticket URLs use these.
    pub origins: crate::origins::ServedOrigins,
    /// Open HTTP connections (websockets included), for metrics.
    pub http_connections: Arc<crate::metrics::Gauge>,
    /// The last health report (`GET /healthz`).
    pub health: crate::service::health::Health,
    /// When this server started (its uptime).
    pub started: std::time::Instant,
    /// The TLS certificate served, when serving HTTPS.
    pub tls_certificate: std::sync::OnceLock<crate::lan::tls::CertInfo>,
}

fn load_or_make_secret(store: &Store, name: &'static [u8]) -> Result<[u8; 32], StartError> {
    let existing = store.read(|tx: &Tx| tx.get(META, name))?;
    if let Some(bytes) = existing {
        return bytes.as_slice().try_into().map_err(|_| {
            StartError::Invalid(format!(
                "stored {} is corrupt",
                String::from_utf8_lossy(name)
            ))
        });
    }
    let mut secret = [0u8; 32];
    crate::system::random_bytes(&mut secret);
    let value = secret.to_vec();
    store
        .write_blocking(move |tx| {
            // Another start may have raced us; keep whichever landed first.
            match tx.get(META, name)? {
                Some(v) => Ok::<_, StoreError>(v),
                None => {
                    tx.put(META, name, &value)?;
                    Ok(value)
                }
            }
        })?
        .as_slice()
        .try_into()
        .map_err(|_| StartError::Invalid("secret has the wrong length".into()))
}

/// Makes the data directory, or tightens an existing one, to mode 0700: it holds the
/// server key, the database and the TLS key, whether or not systemd made it.
pub fn prepare_data_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot make {} private (mode 0700): {e}", dir.display()),
            )
        })?;
    }
    apply_staged_restore(dir);
    Ok(())
}

/// Applies a restore staged through the admin API, before anything (the TLS certificate,
/// the database) is read from the directory. One that fails leaves the data as it was:
/// a box with no console must still start, and the log says why.
fn apply_staged_restore(dir: &std::path::Path) {
    use crate::storage::archive;
    // Another process runs on this directory (its open below will fail): what is there
    // is its own.
    if !matches!(archive::database_in_use(dir), Ok(false)) {
        return;
    }
    if let Err(e) = archive::remove_leftovers(dir) {
        log::warn!("cannot remove what an interrupted backup or restore left: {e}");
    }
    match archive::apply_pending(dir) {
        Ok(Some(restored)) => log::warn!(
            "restored the staged backup of {:?} made at {} (unix seconds)",
            restored.box_name,
            restored.created_at
        ),
        Ok(None) => {}
        Err(e) => log::error!(
            "the staged restore was not applied and the data is unchanged: {e} (the archive \
             is kept as restore/rejected.tar.gz)"
        ),
    }
}

/// Path of the database file inside the data directory.
pub fn database_path(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("hearth.redb")
}

/// Longest Unix socket path that fits `sun_path` with room to spare.
const MAX_SOCKET_PATH: usize = 100;

/// Path of the local admin socket: `DIR/admin.sock`, or, when that path is too long for a
/// Unix socket, a socket in a private (0700) directory under the system temp dir named
/// after the data directory.
pub fn admin_socket_path(config: &Config) -> std::path::PathBuf {
    let in_data = config.data_dir.join("admin.sock");
    if in_data.as_os_str().len() < MAX_SOCKET_PATH {
        return in_data;
    }
    use sha2::{Digest, Sha256};
    let canonical =
        std::fs::canonicalize(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let uid = std::fs::metadata(&config.data_dir)
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        // SAFETY: geteuid has no preconditions and cannot fail.
        .unwrap_or_else(|_| unsafe { libc::geteuid() });
    std::env::temp_dir()
        .join(format!("hearth-{uid}"))
        .join(format!("{name}.sock"))
}

impl App {
    /// Opens the data directory (creating it and the server key on first start).
    pub fn open(config: Config, origin: String, scheme: &'static str) -> Result<App, StartError> {
        prepare_data_dir(&config.data_dir)?;
        let data_dir = config.data_dir.clone();
        let files_dir = config.data_dir.join("files");
        std::fs::create_dir_all(&files_dir)?;
        let store = Store::open(
            &database_path(&config),
            config.storage.cache_bytes,
            config.storage.max_batch,
            crate::storage::Retention {
                max_events: config.gateway.retention_events,
                max_age_secs: config.gateway.retention_secs,
            },
        )?;
        let server_key = ServerKey::from_bytes(&load_or_make_secret(&store, b"server_key")?);
        let vapid_key =
            crate::auth::webpush::VapidKey::from_seed(&load_or_make_secret(&store, b"vapid_key")?);
        // A fresh nonce secret each start: the replay cache lives in memory, so nonces
        // from before a restart must stop working, or a proof captured just before it
        // could be replayed once after.
        let mut dpop_secret = [0u8; 32];
        crate::system::random_bytes(&mut dpop_secret);
        let auth = &config.auth;
        let dpop = DpopVerifier::new(
            dpop_secret,
            DpopConfig {
                iat_leeway_secs: auth.dpop_iat_leeway_secs,
                max_age_secs: auth.dpop_max_age_secs,
                require_nonce: auth.dpop_require_nonce,
                jti_capacity: auth.dpop_jti_capacity,
                nonce_epoch_secs: auth.dpop_nonce_secs,
            },
        );
        let token_cache = Arc::new(AccessTokenCache::new(auth.token_cache_capacity));
        let highest = highest_id(&store)?;
        let ticket_caps = crate::gateway::tickets::TicketCaps {
            per_device: config.throttle.tickets_per_device,
            per_user: config.throttle.tickets_per_user,
        };
        let gateway = Arc::new(crate::gateway::Gateway::new(
            config.gateway.clone(),
            ticket_caps,
        ));
        crate::gateway::connect_store(&gateway, &store);
        let voice = Arc::new(crate::voice::Voice::new(
            config.voice.clone(),
            gateway.clone(),
            ticket_caps,
        ));
        let discovered = Arc::new(crate::lan::Discovered::new(
            server_key.public_bytes(),
            &origin,
            &config.name,
        ));
        let services = Arc::new(Services::new(
            store,
            Arc::new(config),
            server_key,
            vapid_key,
            origin,
            IdGenerator::new(highest),
            files_dir,
        ));
        let hub_gateway = gateway.clone();
        services.on_sign_out(move |user, jkt| hub_gateway.hub.sign_out(user, jkt));
        let executor = Arc::new(smol::Executor::new());
        let federation = Arc::new(crate::federation::Federation::new(
            services.clone(),
            token_cache.clone(),
            executor.clone(),
        ));
        // A commit that queued a call wakes the outbox worker once it is durable.
        let waker = federation.waker();
        services.store.on_queued(move || waker.wake());
        Ok(App {
            origins: crate::origins::ServedOrigins::only(&services.origin),
            discovered,
            voice,
            federation,
            gateway,
            executor,
            services,
            dpop,
            token_cache,
            device_links: crate::auth::device_link::DeviceLinks::new(),
            login_limiter: LoginLimiter::default(),
            throttle: crate::service::rate::RateLimiter::default(),
            scheme,
            tls_fingerprint: std::sync::OnceLock::new(),
            http_connections: Arc::default(),
            health: crate::service::health::Health::new(&data_dir)?,
            started: std::time::Instant::now(),
            tls_certificate: std::sync::OnceLock::new(),
        })
    }
}

/// The highest id in use, so new ids stay above it even when the clock went back (a Pi
/// has no real-time clock and may boot with an old time when there is no network).
fn highest_id(store: &Store) -> Result<u64, StoreError> {
    use crate::storage::{tables::*, Rows};
    store.read(|tx: &Tx| {
        let mut highest = 0u64;
        for (id, _) in tx.rows(GUILD, Rows::all().reverse().limit(1))? {
            highest = highest.max(id.0);
        }
        let channels = tx.rows(CHANNEL, Rows::all())?;
        for (channel, _) in &channels {
            highest = highest.max(channel.0);
            let last = tx.rows(CHANNEL_MESSAGE, Rows::prefix(*channel).reverse().limit(1))?;
            for ((_, message), _) in last {
                highest = highest.max(message.0);
            }
        }
        for ((_, role), _) in tx.rows(GUILD_ROLE, Rows::all())? {
            highest = highest.max(role.0);
        }
        Ok(highest)
    })
}

/// The origin a server bound to `listener` is reached at, unless configured.
pub fn origin_for(config: &Config, local: std::net::SocketAddr) -> String {
    match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("{}://{local}", scheme_of(config)),
    }
}

/// `https` unless TLS is turned off.
pub fn scheme_of(config: &Config) -> &'static str {
    if config.tls.enabled {
        "https"
    } else {
        "http"
    }
}
