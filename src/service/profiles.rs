//! Remote profiles: the profile document a peer sends (in `user_created`,
//! `profile_updated`, VerifyUser's answer and search results), read leniently and cleaned
//! in one place, and the event that tells a user's guilds their profile changed.

use crate::model::*;
use crate::storage::{tables::*, Rows, StoreError, Tx};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// What others see of a user.
#[derive(Debug, Serialize)]
pub struct PublicUser {
    /// User id.
    pub id: UserId,
    /// Display name.
    pub name: String,
    /// Login name on the home server.
    pub username: String,
    /// Home server origin.
    pub homeserver: String,
    /// Avatar link.
    pub avatar_url: String,
    /// Avatar fallback colour.
    pub avatar_color: String,
    /// Bio.
    pub bio: String,
    /// Presence preference.
    pub presence: Presence,
}

impl PublicUser {
    /// What others see of `u`; `origin` is this server's, shown as the home server of
    /// local users (stored as an empty string, so the origin may change).
    pub fn of(u: &User, origin: &str) -> Self {
        PublicUser {
            id: u.id,
            name: u.profile.name.clone(),
            username: u.username.clone(),
            homeserver: if u.homeserver.is_empty() {
                origin.to_string()
            } else {
                u.homeserver.clone()
            },
            avatar_url: u.profile.avatar_url.clone(),
            avatar_color: u.profile.avatar_color.clone(),
            bio: u.profile.bio.clone(),
            presence: u.profile.presence,
        }
    }
}

/// A profile document as a peer sends it (`{id, name, username, homeserver, avatar_url,
/// avatar_color, bio, presence}`, what [`PublicUser`] shows). Read leniently: a field of
/// the wrong kind reads as empty, and fields this server does not know are ignored, so
/// the document may grow. [`ProfileDocument::cleaned`] is what a receiver keeps of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProfileDocument {
    /// User id.
    #[serde(default, deserialize_with = "text")]
    pub id: String,
    /// Display name.
    #[serde(default, deserialize_with = "text")]
    pub name: String,
    /// Login name on the home server.
    #[serde(default, deserialize_with = "text")]
    pub username: String,
    /// Home server origin.
    #[serde(default, deserialize_with = "text")]
    pub homeserver: String,
    /// Avatar link.
    #[serde(default, deserialize_with = "text")]
    pub avatar_url: String,
    /// Avatar fallback colour.
    #[serde(default, deserialize_with = "text")]
    pub avatar_color: String,
    /// Bio.
    #[serde(default, deserialize_with = "text")]
    pub bio: String,
    /// Presence preference.
    #[serde(default, deserialize_with = "presence")]
    pub presence: Presence,
}

/// A text field, or empty when it is not text.
pub(super) fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Value::deserialize(deserializer)?
        .as_str()
        .unwrap_or("")
        .to_string())
}

/// A presence, or the default when it is not one.
pub(super) fn presence<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Presence, D::Error> {
    Ok(serde_json::from_value(Value::deserialize(deserializer)?).unwrap_or_default())
}

/// A profile document, or an empty one when it is not an object.
pub(super) fn document<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<ProfileDocument, D::Error> {
    Ok(ProfileDocument::read(Value::deserialize(deserializer)?))
}

/// A version sent as a decimal string (or a number).
pub(super) fn version<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Ok(value
        .as_str()
        .and_then(|v| v.parse().ok())
        .or_else(|| value.as_u64())
        .unwrap_or(0))
}

/// Text, or `None` when it is not text.
pub(super) fn optional_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(Value::deserialize(deserializer)?
        .as_str()
        .map(str::to_string))
}

impl ProfileDocument {
    /// What others see of a user, as a document to send.
    pub fn of(user: &PublicUser) -> ProfileDocument {
        ProfileDocument {
            id: user.id.to_text(),
            name: user.name.clone(),
            username: user.username.clone(),
            homeserver: user.homeserver.clone(),
            avatar_url: user.avatar_url.clone(),
            avatar_color: user.avatar_color.clone(),
            bio: user.bio.clone(),
            presence: user.presence,
        }
    }

    /// Reads a document from any JSON value (anything but an object reads as empty).
    pub fn read(value: Value) -> ProfileDocument {
        serde_json::from_value(value).unwrap_or_default()
    }

    /// The user id the document names, if it is one.
    pub fn user_id(&self) -> Option<UserId> {
        UserId::parse(&self.id)
    }

    /// The username and profile a receiver keeps, cleaned: bounded lengths, no control
    /// characters, http(s) avatars only, `#rrggbb` colours.
    pub fn cleaned(&self) -> (String, Profile) {
        let text = |value: &str, max: usize| -> String {
            value
                .chars()
                .filter(|c| !c.is_control())
                .take(max)
                .collect()
        };
        let avatar_url = text(&self.avatar_url, 512);
        let avatar_url = if avatar_url.starts_with("http://") || avatar_url.starts_with("https://")
        {
            avatar_url
        } else {
            String::new()
        };
        let avatar_color = text(&self.avatar_color, 7);
        let avatar_color = if avatar_color.len() == 7
            && avatar_color.starts_with('#')
            && avatar_color[1..].bytes().all(|b| b.is_ascii_hexdigit())
        {
            avatar_color
        } else {
            String::new()
        };
        (
            text(&self.username, 32),
            Profile {
                name: text(&self.name, 100),
                avatar_url,
                avatar_color,
                bio: text(&self.bio, 1000),
                presence: self.presence,
            },
        )
    }
}

/// Tells the user's guilds (and the user) that their profile changed.
pub fn emit_user_update(tx: &Tx, user: &User) -> Result<(), StoreError> {
    let guilds = tx
        .rows(USER_GUILD, Rows::prefix(user.id))?
        .into_iter()
        .map(|((_, guild), _)| guild)
        .collect();
    tx.emit(
        "user_update",
        Audience {
            guilds,
            users: vec![user.id],
            ..Audience::default()
        },
        None,
        // Shadows always name their home, so this server's origin is not needed.
        &PublicUser::of(user, ""),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_profile_document_is_read_leniently_and_cleaned() {
        let document = ProfileDocument::read(json!({
            "id": 7,
            "name": "Ann\u{7}ie",
            "username": "annie",
            "avatar_url": "javascript:alert(1)",
            "avatar_color": "#12ab9F",
            "bio": ["not", "text"],
            "presence": "nonsense",
            "added_later": true,
        }));
        assert_eq!(document.id, "");
        assert_eq!(document.user_id(), None);
        let (username, profile) = document.cleaned();
        assert_eq!(username, "annie");
        assert_eq!(profile.name, "Annie");
        assert_eq!(profile.avatar_url, "");
        assert_eq!(profile.avatar_color, "#12ab9F");
        assert_eq!(profile.bio, "");
        assert_eq!(profile.presence, Presence::default());
        let (_, profile) = ProfileDocument::read(json!({
            "avatar_url": "https://example.org/a.png",
            "avatar_color": "#12345",
            "bio": "x".repeat(2000),
        }))
        .cleaned();
        assert_eq!(profile.avatar_url, "https://example.org/a.png");
        assert_eq!(profile.avatar_color, "");
        assert_eq!(profile.bio.chars().count(), 1000);
        assert!(ProfileDocument::read(json!("not an object")).id.is_empty());
    }
}
