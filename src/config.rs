//! Configuration: one serde struct, every field documented, every field defaulted, so an
//! empty `hearth.toml` runs the server on its embedded defaults. Without `--config` the
//! command line reads `/etc/hearth/hearth.toml` (or the file `HEARTH_CONFIG` names) when
//! it exists, else the embedded defaults; a `--config` naming a missing file is an error.

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
    /// `iss` of the tokens this server signs. Default: the scheme and the bound address;
    /// for a wildcard address (`0.0.0.0`, `::`), the name the box is announced under on
    /// the LAN at its first start, kept in `DATA_DIR/origin`.
    pub public_url: Option<String>,
    /// Who may create accounts over HTTP: `open` (anyone who can reach the box), `invite`
    /// (someone holding an invite code of this box) or `closed` (only administrators).
    /// This is the mode of a fresh box; once set at setup or in the admin console, the
    /// box keeps its own. Default `open`, for a LAN box.
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
    /// Claiming a fresh box from a browser, and what the box tells its console.
    pub setup: SetupConfig,
    /// Backups kept on the box.
    pub backup: BackupConfig,
    /// The file this configuration was read from (none for the embedded defaults); a
    /// backup archive carries it.
    #[serde(skip)]
    pub loaded_from: Option<PathBuf>,
    /// What `GET /healthz` counts as healthy.
    pub health: HealthConfig,
}

/// Claiming the box from a browser (`[setup]`): while it has no administrator its web
/// client shows "Set up this Hearth", which needs the setup code the box made at first
/// start, and the box writes the code (and its addresses and TLS fingerprint) where the
/// owner can read them without a console.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SetupConfig {
    /// Offer the setup from the web client at all. `false` leaves making the first
    /// administrator to `hearth user add --admin`. Default true.
    pub from_browser: bool,
    /// Let whoever opens the setup page first claim the box, without a setup code. Only
    /// for those who trust everyone on their network until then. Default false.
    pub first_visitor_claims: bool,
    /// A text file the box writes the setup code to while it is unclaimed (with its
    /// addresses and TLS fingerprint), and deletes once claimed. The Pi image sets
    /// `/run/hearth/hearth-setup.txt`, which a root service copies to the boot partition
    /// (readable on any computer). Default none.
    pub code_file: Option<PathBuf>,
    /// An issue file for agetty (the console's login banner) the box keeps current with
    /// its addresses, TLS fingerprint and, until claimed, the setup code. The Pi image
    /// sets `/run/hearth/hearth.issue`, which `/etc/issue.d/hearth.issue` links to.
    /// Default none.
    pub issue_file: Option<PathBuf>,
    /// Wrong setup codes one client address may send per hour. Default 10.
    pub attempts_per_address_hour: u32,
    /// Wrong setup codes from all addresses together per hour. Default 100.
    pub attempts_per_hour: u32,
}

impl Default for SetupConfig {
    fn default() -> Self {
        SetupConfig {
            from_browser: true,
            first_visitor_claims: false,
            code_file: None,
            issue_file: None,
            attempts_per_address_hour: 10,
            attempts_per_hour: 100,
        }
    }
}

/// Backups the server makes by itself and keeps on the box (archives like `hearth backup
/// --archive`), and the limit of a restore uploaded through the admin API.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// Where kept backups go. Default `DATA_DIR/backups`. Another disk (a USB stick) is
    /// safer: a backup on the same SD card does not survive the card.
    pub dir: Option<PathBuf>,
    /// Hours between scheduled backups; 0 turns them off. Default 24. The first comes 10
    /// minutes after a start when none is kept.
    pub every_hours: u64,
    /// Scheduled backups kept; older ones are deleted after a new one is written. Backups
    /// made on request (the admin API) count too. Default 3.
    pub keep: usize,
    /// Largest archive accepted by `POST /api/v1/admin/restore`, bytes. Default 4 GiB.
    pub max_restore_bytes: u64,
    /// Seconds an administrator's backup download, restore upload or backup made on
    /// request may take, in place of `[throttle] request_secs`. Default 3600.
    pub transfer_secs: u64,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: None,
            every_hours: 24,
            keep: 3,
            max_restore_bytes: 4 << 30,
            transfer_secs: 3600,
        }
    }
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
    /// DNS names of the self-signed certificate (`localhost`, `HOSTNAME.local`, the name
    /// Avahi announces, Hearth's own mDNS host and the listening addresses are added).
    /// Default `["hearth.local"]`.
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
    /// Holders of an invite code of this box.
    Invite,
    /// Only administrators (the console, or `hearth user add`).
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
    /// How long a password-reset link an administrator hands out works, seconds.
    /// Default 24 hours.
    pub reset_link_secs: u64,
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
            setup: SetupConfig::default(),
            backup: BackupConfig::default(),
            loaded_from: None,
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
            reset_link_secs: 24 * 3600,
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
    /// The file named does not exist.
    #[error("no configuration file at {path}")]
    Missing {
        /// Which file.
        path: PathBuf,
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

/// The configuration file read when `--config` is not given, unless [`CONFIG_ENV`] names
/// another: where the Debian package and the Pi image put it.
pub const SYSTEM_CONFIG: &str = "/etc/hearth/hearth.toml";

/// The environment variable that replaces [`SYSTEM_CONFIG`] as the default configuration
/// file (tests, or a second server on one machine).
pub const CONFIG_ENV: &str = "HEARTH_CONFIG";

/// Where a configuration came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file: named by `--config`, or found at the default path.
    File(PathBuf),
    /// The embedded defaults: no `--config`, and nothing at the default path.
    Defaults {
        /// The default path that was looked at.
        looked_at: PathBuf,
    },
}

impl ConfigSource {
    /// The file read, if any.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            ConfigSource::File(path) => Some(path),
            ConfigSource::Defaults { .. } => None,
        }
    }
}

impl Config {
    /// The default configuration file: `$HEARTH_CONFIG` when set, else
    /// `/etc/hearth/hearth.toml`.
    pub fn default_path() -> PathBuf {
        match std::env::var_os(CONFIG_ENV) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => PathBuf::from(SYSTEM_CONFIG),
        }
    }

    /// The configuration the command line asks for: the file `explicit` names (which
    /// must exist), else the default file when it exists, else the embedded defaults.
    pub fn locate(
        explicit: Option<&std::path::Path>,
    ) -> Result<(Config, ConfigSource), ConfigError> {
        if let Some(path) = explicit {
            return Ok((Config::load_file(path)?, ConfigSource::File(path.into())));
        }
        let path = Config::default_path();
        match Config::load_file(&path) {
            Ok(config) => Ok((config, ConfigSource::File(path))),
            Err(ConfigError::Missing { .. }) => Ok((
                Config::default(),
                ConfigSource::Defaults { looked_at: path },
            )),
            Err(e) => Err(e),
        }
    }

    /// Reads a TOML file that must exist.
    pub fn load_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map(|config| Config {
                    loaded_from: std::path::absolute(path).ok(),
                    ..config
                })
                .map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ConfigError::Missing {
                path: path.to_path_buf(),
            }),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// What is wrong with the values of a configuration that parsed: ranges the server
    /// would clamp or refuse, origins that are not origins, addresses that are not
    /// `host:port`, half of a TLS pair. Empty when it is fine.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, problem: String| {
            if !ok {
                problems.push(problem);
            }
        };
        let host_port = self
            .listen
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        check(
            host_port,
            format!(
                "listen: {:?} is not host:port, e.g. \"0.0.0.0:443\"",
                self.listen
            ),
        );
        if let Some(url) = &self.public_url {
            check(
                is_origin(url),
                format!(
                    "public_url: {url:?} is not an http(s) origin such as \"https://hearth.local\""
                ),
            );
        }
        for alias in &self.server.aliases {
            check(
                is_origin(alias),
                format!("[server] aliases: {alias:?} is not an http(s) origin such as \"https://192.168.1.20\""),
            );
        }
        check(
            !self.data_dir.as_os_str().is_empty(),
            "data_dir: empty".into(),
        );
        check(
            (1..=900).contains(&self.auth.access_token_secs),
            format!(
                "[auth] access_token_secs: {} is not in 1..=900",
                self.auth.access_token_secs
            ),
        );
        check(
            self.auth.argon2_iterations >= 1 && self.auth.argon2_memory_kib >= 8,
            "[auth] argon2_iterations must be at least 1 and argon2_memory_kib at least 8".into(),
        );
        let voice = &self.voice;
        check(
            (6_000..=128_000).contains(&voice.bitrate),
            format!("[voice] bitrate: {} is not in 6000..=128000", voice.bitrate),
        );
        check(
            voice.complexity <= 10,
            format!("[voice] complexity: {} is not in 0..=10", voice.complexity),
        );
        check(
            voice.expected_loss_percent <= 50,
            format!(
                "[voice] expected_loss_percent: {} is not in 0..=50",
                voice.expected_loss_percent
            ),
        );
        check(
            (1..=50).contains(&voice.max_jitter_frames),
            format!(
                "[voice] max_jitter_frames: {} is not in 1..=50",
                voice.max_jitter_frames
            ),
        );
        check(
            self.storage.max_batch >= 1,
            "[storage] max_batch: must be at least 1".into(),
        );
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(cert), Some(key)) if self.tls.enabled => {
                for (field, path) in [("cert_file", cert), ("key_file", key)] {
                    check(
                        path.is_file(),
                        format!("[tls] {field}: no file at {}", path.display()),
                    );
                }
            }
            (Some(_), None) | (None, Some(_)) => check(
                false,
                "[tls] cert_file and key_file go together: give both or neither".into(),
            ),
            _ => {}
        }
        problems
    }

    /// Reads a TOML file; a missing file yields the defaults.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        match Config::load_file(path) {
            Err(ConfigError::Missing { .. }) => Ok(Config::default()),
            other => other,
        }
    }
}

/// `text` is `http(s)://host[:port]` with at most a `/` after it.
fn is_origin(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty()
    })
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
    fn the_defaults_have_no_problems_and_bad_values_are_named() {
        assert_eq!(Config::default().problems(), Vec::<String>::new());
        let c: Config = toml::from_str(
            "listen = \"8080\"\npublic_url = \"hearth.local\"\n\
             [auth]\naccess_token_secs = 3600\n[voice]\nbitrate = 1\n\
             [tls]\ncert_file = \"/x.pem\"",
        )
        .unwrap();
        let problems = c.problems().join("\n");
        for needle in [
            "listen",
            "public_url",
            "access_token_secs",
            "bitrate",
            "cert_file and key_file",
        ] {
            assert!(problems.contains(needle), "{needle} missing in {problems}");
        }
        assert_eq!(c.problems().len(), 5, "{problems}");
        let c: Config =
            toml::from_str("public_url = \"https://hearth.local/\"\nlisten = \"[::]:443\"")
                .unwrap();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
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
