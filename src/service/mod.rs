//! Business rules, independent of HTTP: accounts and tokens, guilds, channels, roles,
//! members, invites, bans, messages, reactions, pins and files; and what a server keeps of
//! users homed elsewhere (shadow accounts, remote profiles, migrations). Every operation
//! takes the acting user and checks permissions itself, so no route can forget to.

pub mod access;
pub mod accounts;
pub mod admin_users;
pub mod backups;
pub mod ban_notices;
pub mod channels;
pub mod dm_consent;
pub mod dms;
pub mod files;
pub mod guilds;
pub mod health;
pub mod inbox;
pub mod invites;
pub mod lifecycle;
pub mod members;
pub mod messages;
pub mod migration;
pub mod notifications;
pub mod outbox;
pub mod profiles;
pub mod push;
pub mod rate;
pub mod read_states;
pub mod refresh;
pub mod remote_users;
pub mod roles;
pub mod setup;
pub mod shadows;
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
    /// A user's home was claimed without the user's own evidence (a device certificate
    /// signed by K_id naming it) (401, `home_not_proven`).
    #[error("{0}")]
    HomeNotProven(String),
    /// The user is known here with another home (403, `not_home_server`).
    #[error("{0}")]
    NotHome(String),
    /// The user's home deleted the account, and has not announced it again (403,
    /// `forbidden`).
    #[error("this account was deleted by its home server")]
    DeletedByHome,
    /// The user will not have it, by a choice of theirs (e.g. who may DM them) (403, with
    /// the code).
    #[error("{message}")]
    Refused {
        /// Machine-readable code.
        code: &'static str,
        /// Human text.
        message: String,
    },
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
    /// The box's VAPID key, which signs push requests (made at first start and kept).
    pub vapid_key: crate::auth::webpush::VapidKey,
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
    /// Told when devices must stop working at once (signed out, removed, the user gone):
    /// the layers above that hold live connections register here, so this layer need not
    /// know them.
    sign_out_hooks: std::sync::RwLock<Vec<SignOutHook>>,
}

/// Called with a user and one device (its key thumbprint), or `None` for all of them.
pub type SignOutHook = Box<dyn Fn(crate::model::UserId, Option<&str>) + Send + Sync>;

/// argon2id computations allowed at once.
pub const PASSWORD_SLOTS: usize = 2;

impl Services {
    /// Services over an open store, with no sign-out hooks yet.
    pub fn new(
        store: Store,
        config: Arc<Config>,
        server_key: ServerKey,
        vapid_key: crate::auth::webpush::VapidKey,
        origin: String,
        ids: IdGenerator,
        files_dir: std::path::PathBuf,
    ) -> Services {
        Services {
            store,
            config,
            server_key,
            vapid_key,
            origin,
            ids,
            files_dir,
            password_slots: smol::lock::Semaphore::new(PASSWORD_SLOTS),
            dummy_password_hash: smol::lock::OnceCell::new(),
            sign_out_hooks: std::sync::RwLock::new(Vec::new()),
        }
    }

    /// Registers `hook` to hear of every sign-out.
    pub fn on_sign_out(
        &self,
        hook: impl Fn(crate::model::UserId, Option<&str>) + Send + Sync + 'static,
    ) {
        self.sign_out_hooks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(hook));
    }

    /// Tells every hook that `user`'s device `jkt` (or every device) is signed out; call
    /// after the commit that made it so.
    pub fn signed_out(&self, user: crate::model::UserId, jkt: Option<&str>) {
        for hook in self
            .sign_out_hooks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            hook(user, jkt);
        }
    }

    /// A fresh id.
    pub fn next_id(&self) -> Id {
        self.ids.next(crate::system::now_ms())
    }
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
