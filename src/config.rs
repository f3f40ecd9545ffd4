//! Configuration: one serde struct, every field documented, every field defaulted, so an
//! empty (or absent) `hearth.toml` runs the server on its embedded defaults.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The whole configuration (`hearth.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Server name shown to users and peers. Default `"Hearth"`.
    pub name: String,
    /// Directory holding the database, keys and files. Default `./hearth-data`.
    pub data_dir: PathBuf,
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: String,
    /// The origin clients use to reach this server, e.g. `https://hearth.local`. It is the
    /// `iss` of the tokens this server signs. Default: `http://` + the bound address.
    pub public_url: Option<String>,
    /// Who may create accounts over HTTP: `open` (anyone who can reach the box) or
    /// `closed` (only `hearth user add`). Default `open`, for a LAN box.
    pub registration: Registration,
    /// Authentication settings.
    pub auth: AuthConfig,
    /// Size and count limits.
    pub limits: Limits,
    /// Storage settings.
    pub storage: StorageConfig,
    /// Event log and realtime gateway settings.
    pub gateway: GatewayConfig,
    /// Federation settings.
    pub federation: FederationConfig,
    /// Voice rooms and the mixer.
    pub voice: VoiceConfig,
    /// HTTPS.
    pub tls: TlsConfig,
    /// LAN discovery (mDNS / DNS-SD).
    pub discovery: DiscoveryConfig,
    /// Protection against a client exhausting the box: connection caps, request
    /// deadlines, rate limits and caps on outstanding tickets.
    pub throttle: ThrottleConfig,
    /// Names this server answers as, besides `public_url`.
    pub server: ServerConfig,
    /// The server's log.
    pub log: LogConfig,
    /// What `GET /healthz` counts as healthy.
    pub health: HealthConfig,
}

/// What `GET /healthz` counts as healthy. The checks run at most once a second, whoever
/// asks.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Free space the data directory's file system must keep, bytes. Default 64 MiB.
    pub min_free_bytes: u64,
    /// Calls waiting in the outbox beyond which peers are falling behind. Default 10,000.
    pub max_outbox_backlog: u64,
    /// How long the database's test write may take, milliseconds. Default 5,000.
    pub max_commit_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            min_free_bytes: 64 * 1024 * 1024,
            max_outbox_backlog: 10_000,
            max_commit_ms: 5_000,
        }
    }
}

/// The server's log: to the systemd journal (with priorities) when `hearth serve` runs as
/// a service whose standard error is the journal, else to standard error.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// The least severe messages written: `error`, `warn`, `info`, `debug` or `trace`.
    /// Messages of other crates than Hearth, rustls, mdns-sd and async-tungstenite show at
    /// `warn` and above unless this is `debug` or `trace`. `hearth serve --log-level`
    /// overrides it. Default `info`.
    pub level: LogLevel,
}

/// How much the server logs; each level includes the ones before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Only what the server cannot do that it should (a storage error, unsaved pins).
    Error,
    /// Also a peer or the LAN misbehaving, and retries.
    Warn,
    /// Also start-up facts: the address, the TLS fingerprint, LAN discovery.
    #[default]
    Info,
    /// Also chatter meant for debugging.
    Debug,
    /// Everything.
    Trace,
}

/// A log level that is none of `error`, `warn`, `info`, `debug`, `trace`.
#[derive(Debug, thiserror::Error)]
#[error("unknown log level `{0}` (expected error, warn, info, debug or trace)")]
pub struct UnknownLogLevel(String);

impl std::str::FromStr for LogLevel {
    type Err = UnknownLogLevel;

    fn from_str(s: &str) -> Result<LogLevel, UnknownLogLevel> {
        match s {
            "error" => Ok(LogLevel::Error),
            "warn" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            _ => Err(UnknownLogLevel(s.to_owned())),
        }
    }
}

/// Protection against a client exhausting the box. Rate limits count in fixed windows and
/// answer 429 with `Retry-After` once spent; a limit of 0 refuses the action entirely.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Open connections in total, websockets included; a further connection is answered
    /// 503 `too_many_connections` and closed. Lowered at start to fit the process's
    /// open-file limit (which `hearth serve` raises to its hard limit). Default 1024.
    pub max_connections: usize,
    /// Open connections from one client address (for IPv6, one /64 network). Default 128:
    /// a household of a dozen devices behind one NAT address, each with a few HTTP
    /// connections, its gateway websocket and a voice socket, stays well below it.
    pub max_connections_per_address: usize,
    /// Seconds a kept-alive connection may wait for its next request. Default 60.
    pub idle_secs: u64,
    /// Seconds from the first byte of a request to the last byte of its answer: head,
    /// body, handling and response together; slower requests are cut off (408 while the
    /// body is being read). Websockets are not limited once upgraded. Default 120 (an
    /// 8 MiB upload or download then needs 70 kB/s).
    pub request_secs: u64,
    /// Accounts one client address may register per hour. Default 10.
    pub registrations_per_address_hour: u32,
    /// Messages one user may post per minute. Default 60.
    pub messages_per_user_minute: u32,
    /// Messages posted from one client address per minute (all its users). Default 300.
    pub messages_per_address_minute: u32,
    /// Reactions one user may add per minute. Default 60.
    pub reactions_per_user_minute: u32,
    /// Reactions added from one client address per minute. Default 300.
    pub reactions_per_address_minute: u32,
    /// Files one user may upload per minute. Default 20.
    pub uploads_per_user_minute: u32,
    /// Files uploaded from one client address per minute. Default 60.
    pub uploads_per_address_minute: u32,
    /// Notification settings changes (PUT or DELETE) one user may make per minute.
    /// Default 60.
    pub settings_per_user_minute: u32,
    /// Notification settings changes from one client address per minute. Default 300.
    pub settings_per_address_minute: u32,
    /// Read markers one user may set per minute (a channel, a guild or the whole box
    /// marked read: each is a commit). Default 120.
    pub read_marks_per_user_minute: u32,
    /// Read markers set from one client address per minute. Default 600.
    pub read_marks_per_address_minute: u32,
    /// Direct messages one user may open per hour (opening one that exists counts too).
    /// Default 30.
    pub dms_per_user_hour: u32,
    /// Gateway or voice tickets one device may hold unused at once (each kind counted
    /// apart; a ticket is spent by opening its socket or expires after 30 s). Default 5.
    pub tickets_per_device: usize,
    /// Gateway or voice tickets one user may hold unused at once, over all their devices.
    /// Default 20.
    pub tickets_per_user: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_connections: 1024,
            max_connections_per_address: 128,
            idle_secs: 60,
            request_secs: 120,
            registrations_per_address_hour: 10,
            messages_per_user_minute: 60,
            messages_per_address_minute: 300,
            reactions_per_user_minute: 60,
            reactions_per_address_minute: 300,
            uploads_per_user_minute: 20,
            uploads_per_address_minute: 60,
            settings_per_user_minute: 60,
            settings_per_address_minute: 300,
            read_marks_per_user_minute: 120,
            read_marks_per_address_minute: 600,
            dms_per_user_hour: 30,
            tickets_per_device: 5,
            tickets_per_user: 20,
        }
    }
}

/// The names a server answers as. A DPoP proof is accepted only when its `htu` names one
/// of the origins the server serves: `public_url`, the `aliases` here, and, with TLS on,
/// every DNS name and IP address of its certificate at the port it listens on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Other origins clients reach this box at, e.g. `["https://192.168.1.20"]` when it is
    /// also used by address, or the outside name of a port forward. Each is
    /// `http(s)://host[:port]`. Default none.
    pub aliases: Vec<String>,
}

/// LAN discovery: the server announces itself as `_hearth._tcp.local.` over multicast DNS
/// and lists the other Hearth servers it hears, for administrators to peer with.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Announce this server and browse for others on the LAN. Default true. Nothing is
    /// sent while the server listens on loopback only (nobody on the LAN could reach it).
    pub enabled: bool,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig { enabled: true }
    }
}

/// HTTPS settings. TLS is on unless turned off; with no certificate configured the server
/// makes a self-signed one at first start and clients pin its fingerprint.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Serve HTTPS. Default true; `false` serves plain HTTP (development on localhost).
    pub enabled: bool,
    /// The owner's own certificate chain (PEM), with `key_file`. Default: a self-signed
    /// certificate in `DATA_DIR/tls/`, made at first start.
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM) of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// DNS names of the self-signed certificate (`localhost` and `HOSTNAME.local` are
    /// added). Default `["hearth.local"]`.
    pub names: Vec<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            enabled: true,
            cert_file: None,
            key_file: None,
            names: vec!["hearth.local".into()],
        }
    }
}

/// Voice rooms and the mixer. The defaults suit a Raspberry Pi 4.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VoiceConfig {
    /// Participants per voice room, at most. Default 100.
    pub max_participants: usize,
    /// Bitrate of the mixed stream each listener receives, bits/s (6,000..=128,000).
    /// Default 32,000: clear wideband speech at 4 kB/s per listener.
    pub bitrate: u32,
    /// Opus encoder complexity, 0 (cheapest) ..= 10 (best). Default 5: about 180 µs per
    /// frame on one x86 core here, a quarter of what 10 costs on a Pi for little audible loss.
    pub complexity: u8,
    /// Opus in-band forward error correction in the mixed stream, so a listener can
    /// recover a lost packet from the next one. Default on.
    pub fec: bool,
    /// Expected packet loss, percent (0..=50), which tunes how much FEC the encoder adds.
    /// Default 5.
    pub expected_loss_percent: u8,
    /// Largest Opus packet a client may send, bytes (excluding the 6-byte frame header).
    /// Default 1,275 (the largest single Opus frame).
    pub max_packet_bytes: usize,
    /// Longest playout delay the per-talker jitter buffer adapts to, in 20 ms frames
    /// (1..=50). Default 6 (120 ms).
    pub max_jitter_frames: u32,
    /// Frames queued to one listener before further frames to it are dropped (a listener
    /// that cannot keep up loses audio, never slows the room). Default 25 (500 ms).
    pub queue_frames: usize,
    /// Most people mixed at once: when more talk at the same moment, the loudest this
    /// many are heard. Bounds a tick's encodes whatever happens. Default 8.
    pub max_mixed_talkers: usize,
}

impl Default for VoiceConfig {
    fn default() -> Self {
        VoiceConfig {
            max_participants: 100,
            bitrate: 32_000,
            complexity: 5,
            fec: true,
            expected_loss_percent: 5,
            max_packet_bytes: 1275,
            max_jitter_frames: 6,
            queue_frames: 25,
            max_mixed_talkers: 8,
        }
    }
}

/// Which servers may federate with this one.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PeerPolicy {
    /// Only peers an administrator added (their keys pinned then).
    Allowlist,
    /// Any server; its key is pinned on first contact.
    Open,
}

/// Federation settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// `allowlist` (default) or `open`.
    pub policy: PeerPolicy,
    /// Let outgoing calls (federation, push) reach this box itself: loopback and its own
    /// addresses. Off by default: a peer or push URL must never point the server at its
    /// own services. Tests and single-machine development turn it on.
    pub allow_loopback: bool,
    /// URL prefixes of push distributors running on this box (e.g. ntfy at
    /// `http://hearth.local:2586/`) that deliveries may reach despite the rule above.
    /// Default none.
    pub local_push_distributors: Vec<String>,
    /// How far a signed call's time may differ from ours, seconds. Default 60.
    pub signature_window_secs: u64,
    /// Most server-call ids remembered for replay protection. Default 100,000.
    pub replay_capacity: usize,
    /// Longest wait between retries of an outgoing call, seconds. Default 600.
    pub max_retry_secs: u64,
    /// Seconds before an outgoing call is given up. Default 7 days.
    pub give_up_secs: u64,
    /// Timeout of one outgoing request, seconds. Default 10.
    pub request_timeout_secs: u64,
    /// A remote user's cached profile older than this many seconds is refreshed from
    /// their home (VerifyUser) when it is looked up; the cached one is served meanwhile.
    /// Default 3600.
    pub profile_refresh_secs: u64,
    /// Send `profile_updated` to the peers that keep a shadow of a local user when the
    /// user changes their profile, so peers see it at once rather than at the next
    /// refresh. Default true.
    pub push_profile_updates: bool,
    /// How long a user search waits for each peer's answer, milliseconds. Default 2000.
    pub search_timeout_ms: u64,
    /// Most directory entries (remote users announced by `user_created`) kept per peer.
    /// Default 20,000.
    pub directory_max_per_peer: usize,
    /// Migrations between homes.
    pub migration: MigrationConfig,
}

/// Migrations between homes (`[federation.migration]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MigrationConfig {
    /// How far a Migration Proof's timestamp may be from this server's clock when the user
    /// signs in with it at their new home, seconds. Default 600.
    pub proof_window_secs: u64,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        MigrationConfig {
            proof_window_secs: 600,
        }
    }
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            policy: PeerPolicy::Allowlist,
            allow_loopback: false,
            local_push_distributors: Vec::new(),
            signature_window_secs: 60,
            replay_capacity: 100_000,
            max_retry_secs: 600,
            give_up_secs: 7 * 24 * 3600,
            request_timeout_secs: 10,
            profile_refresh_secs: 3600,
            push_profile_updates: true,
            search_timeout_ms: 2000,
            directory_max_per_peer: 20_000,
            migration: MigrationConfig::default(),
        }
    }
}

/// Event log and realtime gateway settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Events kept for resuming clients, at most. Default 100,000.
    pub retention_events: u64,
    /// Events older than this many seconds are dropped. Default 7 days.
    pub retention_secs: u64,
    /// Events queued per connection before a slow client is cut off. Default 1024.
    pub queue_per_connection: usize,
    /// Seconds between server heartbeats; a peer silent for two intervals is dropped.
    /// Default 20.
    pub heartbeat_secs: u64,
    /// Largest frame a client may send, bytes. Default 16 KiB.
    pub max_frame_bytes: usize,
    /// Seconds a typing indicator lasts. Default 8.
    pub typing_secs: u64,
    /// Open gateway connections per user. Default 20.
    pub max_connections_per_user: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            retention_events: 100_000,
            retention_secs: 7 * 24 * 3600,
            queue_per_connection: 1024,
            heartbeat_secs: 20,
            max_frame_bytes: 16 * 1024,
            typing_secs: 8,
            max_connections_per_user: 20,
        }
    }
}

/// Who may register.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Anyone.
    Open,
    /// Only the administrator, with `hearth user add`.
    Closed,
}

/// Authentication settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Access-token lifetime in seconds (at most 900). Default 900.
    pub access_token_secs: u64,
    /// Refresh-token lifetime in seconds. Default 30 days.
    pub refresh_token_secs: u64,
    /// How far in the future a DPoP proof's `iat` may be. Default 60 s.
    pub dpop_iat_leeway_secs: u64,
    /// How old a DPoP proof may be. Default 300 s.
    pub dpop_max_age_secs: u64,
    /// Require server-issued DPoP nonces. Default true; turn off only for development.
    pub dpop_require_nonce: bool,
    /// How many recent proof ids the replay cache holds. Default 200,000 (≈ 8 MB full).
    pub dpop_jti_capacity: usize,
    /// How long a DPoP nonce lives, in seconds. Default 300.
    pub dpop_nonce_secs: u64,
    /// argon2id memory in KiB. Default 19456 (OWASP).
    pub argon2_memory_kib: u32,
    /// argon2id passes. Default 2.
    pub argon2_iterations: u32,
    /// Failed logins allowed per account per minute. Default 5.
    pub login_failures_per_account: u32,
    /// Login attempts allowed per client address per minute. Default 30.
    pub login_attempts_per_address: u32,
    /// How many verified access tokens to cache. Default 10,000.
    pub token_cache_capacity: usize,
    /// Longest time a peer's verified access token is served from the cache, seconds;
    /// after it the token's signature is checked again with the key pinned then.
    /// (Whether the peer is still pinned is checked on every request.) Default 60.
    pub peer_token_cache_secs: u64,
}

/// Limits on sizes and counts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest JSON or form request body, bytes. Default 64 KiB.
    pub max_body_bytes: usize,
    /// Largest file upload, bytes. Default 8 MiB.
    pub max_upload_bytes: usize,
    /// Longest message, characters. Default 4000.
    pub max_message_chars: usize,
    /// Longest name (guild, channel, role, display name), characters. Default 100.
    pub max_name_chars: usize,
    /// Longest free text (topic, bio, description, reason), characters. Default 1000.
    pub max_text_chars: usize,
    /// Guilds one user may own. Default 100.
    pub max_guilds_per_user: usize,
    /// Channels per guild. Default 500.
    pub max_channels_per_guild: usize,
    /// Roles per guild. Default 250.
    pub max_roles_per_guild: usize,
    /// Overwrites per channel. Default 100.
    pub max_overwrites_per_channel: usize,
    /// Attachments per message. Default 10.
    pub max_attachments_per_message: usize,
    /// Mentions per message. Default 50.
    pub max_mentions_per_message: usize,
    /// Distinct reactions per message. Default 50.
    pub max_reactions_per_message: usize,
    /// Pins per channel. Default 50.
    pub max_pins_per_channel: usize,
    /// Invites per guild. Default 1000.
    pub max_invites_per_guild: usize,
    /// Devices per user. Default 50.
    pub max_devices_per_user: usize,
    /// Push distributors / FCM tokens per user. Default 10.
    pub max_push_targets: usize,
    /// Largest key-backup blob, bytes. Default 4 KiB.
    pub max_key_backup_bytes: usize,
    /// Guild and channel notification settings one user keeps on this box. Default 1000.
    pub max_notification_settings: usize,
    /// People in a group DM, its owner included. Default 10.
    pub max_group_dm_members: usize,
    /// DMs one user may be in on this box (hosted here) and, at their home, listed from
    /// other boxes. Default 1000.
    pub max_dms_per_user: usize,
    /// Users one user may block. Default 1000.
    pub max_blocks_per_user: usize,
}

/// Storage settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// redb page cache, bytes. Default 16 MiB (fits a 1 GB Pi with room to spare).
    pub cache_bytes: usize,
    /// Most write requests grouped into one commit. Default 1024.
    pub max_batch: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "Hearth".into(),
            data_dir: PathBuf::from("./hearth-data"),
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            registration: Registration::Open,
            auth: AuthConfig::default(),
            limits: Limits::default(),
            storage: StorageConfig::default(),
            gateway: GatewayConfig::default(),
            federation: FederationConfig::default(),
            voice: VoiceConfig::default(),
            tls: TlsConfig::default(),
            discovery: DiscoveryConfig::default(),
            throttle: ThrottleConfig::default(),
            server: ServerConfig::default(),
            log: LogConfig::default(),
            health: HealthConfig::default(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_token_secs: 900,
            refresh_token_secs: 30 * 24 * 3600,
            dpop_iat_leeway_secs: 60,
            dpop_max_age_secs: 300,
            dpop_require_nonce: true,
            dpop_jti_capacity: 200_000,
            dpop_nonce_secs: 300,
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
            login_failures_per_account: 5,
            login_attempts_per_address: 30,
            token_cache_capacity: 10_000,
            peer_token_cache_secs: 60,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            max_upload_bytes: 8 * 1024 * 1024,
            max_message_chars: 4000,
            max_name_chars: 100,
            max_text_chars: 1000,
            max_guilds_per_user: 100,
            max_channels_per_guild: 500,
            max_roles_per_guild: 250,
            max_overwrites_per_channel: 100,
            max_attachments_per_message: 10,
            max_mentions_per_message: 50,
            max_reactions_per_message: 50,
            max_pins_per_channel: 50,
            max_invites_per_guild: 1000,
            max_devices_per_user: 50,
            max_push_targets: 10,
            max_key_backup_bytes: 4096,
            max_notification_settings: 1000,
            max_group_dm_members: 10,
            max_dms_per_user: 1000,
            max_blocks_per_user: 1000,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            cache_bytes: 16 * 1024 * 1024,
            max_batch: 1024,
        }
    }
}

/// Errors reading the configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this struct.
    #[error("invalid configuration in {path}: {message}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads a TOML file; a missing file yields the defaults.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults_and_fields_override() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        let c: Config =
            toml::from_str("listen = \"0.0.0.0:443\"\n[limits]\nmax_body_bytes = 10").unwrap();
        assert_eq!(c.listen, "0.0.0.0:443");
        assert_eq!(c.limits.max_body_bytes, 10);
        assert_eq!(c.limits.max_upload_bytes, 8 * 1024 * 1024);
        assert!(toml::from_str::<Config>("nonsense = 1").is_err());
    }

    #[test]
    fn log_level_defaults_to_info_and_refuses_unknown_words() {
        assert_eq!(Config::default().log.level, LogLevel::Info);
        let c: Config = toml::from_str("[log]\nlevel = \"debug\"").unwrap();
        assert_eq!(c.log.level, LogLevel::Debug);
        let bad = toml::from_str::<Config>("[log]\nlevel = \"loud\"").unwrap_err();
        assert!(bad.to_string().contains("loud"), "{bad}");
        assert_eq!("warn".parse::<LogLevel>().unwrap(), LogLevel::Warn);
        let bad = "WARNING".parse::<LogLevel>().unwrap_err();
        assert!(bad.to_string().contains("expected error, warn"), "{bad}");
    }
}
