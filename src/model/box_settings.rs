//! The box's own settings as its administrators keep them (name, description, icon, who
//! may register), the state of its first-boot claim, and password-reset links. Plain data.

use super::ids::UserId;
use serde::{Deserialize, Serialize};

/// Who may create an account on the box over HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    /// Anyone who can reach the box.
    Open,
    /// Only someone holding a valid invite code of this box; the account is made and the
    /// invite used (its guild joined) in one commit.
    Invite,
    /// Only administrators make accounts.
    Closed,
}

impl RegistrationMode {
    /// The word used in the API and the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationMode::Open => "open",
            RegistrationMode::Invite => "invite",
            RegistrationMode::Closed => "closed",
        }
    }
}

/// The box's settings. A field left `None` falls back to the configuration, so a fresh
/// box runs on its `hearth.toml` until an administrator changes something.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BoxSettings {
    /// The box's name (else `name` of the configuration).
    pub name: Option<String>,
    /// Free text shown with the name.
    pub description: String,
    /// The icon: `(content type, image bytes)`.
    pub icon: Option<(String, Vec<u8>)>,
    /// Who may register (else `registration` of the configuration).
    pub registration: Option<RegistrationMode>,
    /// Unix seconds the box was claimed (its first administrator made); `None` until then.
    pub claimed_at: Option<u64>,
    /// The setup code that claiming from a browser needs, while unclaimed.
    pub setup_code: Option<String>,
}

/// A one-time password-reset link an administrator handed out, stored by the SHA-256 of
/// its secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PasswordReset {
    /// Whose password it resets.
    pub user: UserId,
    /// Unix seconds it was made.
    pub created_at: u64,
    /// Unix seconds after which it no longer works.
    pub expires_at: u64,
}
