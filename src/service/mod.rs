//! Business rules, independent of HTTP: accounts and tokens, guilds, channels, roles,
//! members, invites, bans, messages, reactions, pins and files. Every operation takes the
//! acting user and checks permissions itself, so no route can forget to.

pub mod access;
pub mod accounts;
pub mod files;
pub mod guilds;
pub mod messages;
pub mod rate;
pub mod visibility;
pub mod voice;

use crate::auth::server_key::ServerKey;
use crate::config::Config;
use crate::model::{Id, IdGenerator};
use crate::storage::{Store, StoreError};
use std::sync::Arc;

pub use access::GuildAccess;

/// Errors of the service layer. The HTTP layer maps each to a status and a JSON body.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or breaks a rule about its content (400).
    #[error("{message}")]
    Invalid {
        /// Machine-readable code.
        code: &'static str,
        /// Human text.
        message: String,
    },
    /// Credentials are missing or wrong (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The user may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// The user is banned from the guild (403).
    #[error("you are banned from this guild")]
    Banned,
    /// The thing does not exist or is not visible to the user (404).
    #[error("unknown {0}")]
    NotFound(&'static str),
    /// The request conflicts with what exists (409).
    #[error("{message}")]
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// Human text.
        message: String,
    },
    /// The thing existed but is no longer usable (410).
    #[error("{message}")]
    Gone {
        /// Machine-readable code.
        code: &'static str,
        /// Human text.
        message: String,
    },
    /// A count limit is reached (400).
    #[error("{0}")]
    LimitReached(String),
    /// Too many attempts (429).
    #[error("too many attempts; retry in {retry_after} s")]
    RateLimited {
        /// Seconds until the next attempt may succeed.
        retry_after: u64,
    },
    /// The request body could not be read: the client stalled past the request deadline
    /// (408) or sent something broken (400).
    #[error("could not read the request body: {0}")]
    Body(std::io::Error),
    /// The request body is larger than allowed (413).
    #[error("the request body is limited to {limit} bytes")]
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// Storage failed (500).
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
}

/// Shorthand for results of this layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds an [`Error::Invalid`].
pub fn invalid(code: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        code,
        message: message.into(),
    }
}

/// Everything the business rules need; one per running server (no globals, so several
/// servers run in one test process).
pub struct Services {
    /// The database.
    pub store: Store,
    /// Configuration.
    pub config: Arc<Config>,
    /// The server's signing key S.
    pub server_key: ServerKey,
    /// This server's origin (token issuer, home server of its users).
    pub origin: String,
    /// Id source.
    pub ids: IdGenerator,
    /// Where uploaded files live.
    pub files_dir: std::path::PathBuf,
    /// Bounds how many argon2id computations (each ~19 MiB and tens of ms) run at once, so
    /// a burst of logins cannot exhaust a small box's memory or CPU.
    pub password_slots: smol::lock::Semaphore,
    /// A hash of a random password with this server's argon2 costs, made at the first
    /// login of an unknown name: a wrong login then costs one verification whether or not
    /// the name exists, so its timing does not tell.
    pub dummy_password_hash: smol::lock::OnceCell<String>,
}

/// argon2id computations allowed at once.
pub const PASSWORD_SLOTS: usize = 2;

impl Services {
    /// A fresh id.
    pub fn next_id(&self) -> Id {
        self.ids.next(now_ms())
    }
}

/// Unix time in seconds.
pub fn now() -> u64 {
    now_ms() / 1000
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Checks a name: trimmed, non-empty, at most `max` characters, no control characters.
pub fn check_name(field: &'static str, value: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid(
            "invalid_field",
            format!("{field} must not be empty"),
        ));
    }
    check_text(field, value, max)
}

/// Checks free text: at most `max` characters, no control characters except newlines/tabs.
pub fn check_text(field: &'static str, value: &str, max: usize) -> Result<String> {
    if value.chars().count() > max {
        return Err(invalid(
            "too_long",
            format!("{field} is longer than {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(invalid(
            "invalid_field",
            format!("{field} contains control characters"),
        ));
    }
    Ok(value.to_string())
}

/// Fills `buf` from the operating system's random source.
pub fn random_bytes(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        // Without randomness no key, token or code would be safe: stop rather than go on.
        panic!("the operating system's random source failed: {e}");
    }
}
