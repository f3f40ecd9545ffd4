//! Notification settings (pure): what a user chose at the box, guild and channel level,
//! and the rule that turns them into "push this message or not, and as what".
//!
//! - **Level**: `all` (every message), `mentions` (only messages that mention the user),
//!   `nothing`, or `default` (inherit). A channel inherits from its guild, a guild from
//!   the box; the box's own default is `mentions`, a DM's is `all`.
//! - **Suppression** (`suppress_everyone`, `suppress_roles`) and **muting**
//!   (`muted_until`, unix seconds) apply when set at any level that covers the channel: a
//!   muted guild mutes its channels, whatever a channel says.

use super::ids::Id;
use serde::{Deserialize, Serialize};

/// The scope id that stands for the box itself in indexes keyed by guild or channel id
/// (no guild or channel is ever given id 0).
pub const BOX_SCOPE: Id = Id(0);

/// How much of a place notifies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyLevel {
    /// Every message.
    All,
    /// Messages that mention the user.
    Mentions,
    /// Nothing.
    Nothing,
    /// Inherit: channel → guild → box.
    #[default]
    Default,
}

/// One level's settings, as stored and as the API shows them. A request may leave fields
/// out (they take their defaults) but not add unknown ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifySettings {
    /// How much notifies.
    pub level: NotifyLevel,
    /// Ignore `@everyone` and `@here`.
    pub suppress_everyone: bool,
    /// Ignore role mentions.
    pub suppress_roles: bool,
    /// Unix seconds until which nothing notifies (`None`: not muted).
    pub muted_until: Option<u64>,
}

/// How a message names a user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mentioned {
    /// `<@USER>`.
    pub directly: bool,
    /// A role the user holds.
    pub by_role: bool,
    /// `@everyone` / `@here`.
    pub by_everyone: bool,
}

/// What a push says it is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushKind {
    /// The message mentions the user.
    #[default]
    Mention,
    /// A message in a place set to `all`.
    Message,
    /// A message in a DM.
    Dm,
}

impl PushKind {
    /// The wire name (`mention`, `message`, `dm`).
    pub fn as_str(self) -> &'static str {
        match self {
            PushKind::Mention => "mention",
            PushKind::Message => "message",
            PushKind::Dm => "dm",
        }
    }
}

/// The settings that cover one channel for one user, most specific first.
#[derive(Clone, Copy, Debug, Default)]
pub struct Covering<'a> {
    /// The channel's (or DM's) own settings.
    pub channel: Option<&'a NotifySettings>,
    /// The guild's (none for a DM).
    pub guild: Option<&'a NotifySettings>,
    /// The box's.
    pub boxed: Option<&'a NotifySettings>,
    /// Whether the channel is a DM (then `default` resolves to `all`).
    pub dm: bool,
}

impl Covering<'_> {
    fn each(&self) -> impl Iterator<Item = &NotifySettings> {
        [self.channel, self.guild, self.boxed].into_iter().flatten()
    }

    /// The level in force: the first one not `default`, else `mentions` (`all` in a DM).
    pub fn level(&self) -> NotifyLevel {
        self.each()
            .map(|s| s.level)
            .find(|l| *l != NotifyLevel::Default)
            .unwrap_or(if self.dm {
                NotifyLevel::All
            } else {
                NotifyLevel::Mentions
            })
    }

    /// Whether any level is muted at `now` (unix seconds).
    pub fn muted(&self, now: u64) -> bool {
        self.each().any(|s| s.muted_until.is_some_and(|t| t > now))
    }

    /// Whether a message that names the user as `mentioned` counts as a mention.
    pub fn counts_as_mention(&self, mentioned: Mentioned) -> bool {
        let no_everyone = self.each().any(|s| s.suppress_everyone);
        let no_roles = self.each().any(|s| s.suppress_roles);
        mentioned.directly
            || (mentioned.by_role && !no_roles)
            || (mentioned.by_everyone && !no_everyone)
    }

    /// Whether a message (not the user's own, in a channel they may read) is pushed to
    /// them at `now`, and as what.
    pub fn push(&self, mentioned: Mentioned, now: u64) -> Option<PushKind> {
        if self.muted(now) {
            return None;
        }
        let mention = self.counts_as_mention(mentioned);
        match self.level() {
            NotifyLevel::Nothing | NotifyLevel::Default => None,
            NotifyLevel::Mentions => mention.then_some(PushKind::Mention),
            NotifyLevel::All if mention => Some(PushKind::Mention),
            NotifyLevel::All if self.dm => Some(PushKind::Dm),
            NotifyLevel::All => Some(PushKind::Message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(level: NotifyLevel) -> NotifySettings {
        NotifySettings {
            level,
            ..NotifySettings::default()
        }
    }

    const DIRECT: Mentioned = Mentioned {
        directly: true,
        by_role: false,
        by_everyone: false,
    };
    const EVERYONE: Mentioned = Mentioned {
        directly: false,
        by_role: false,
        by_everyone: true,
    };
    const ROLE: Mentioned = Mentioned {
        directly: false,
        by_role: true,
        by_everyone: false,
    };
    const PLAIN: Mentioned = Mentioned {
        directly: false,
        by_role: false,
        by_everyone: false,
    };

    #[test]
    fn levels_inherit_from_channel_to_guild_to_box() {
        let all = with(NotifyLevel::All);
        let nothing = with(NotifyLevel::Nothing);
        let inherit = with(NotifyLevel::Default);
        assert_eq!(Covering::default().level(), NotifyLevel::Mentions);
        let dm = Covering {
            dm: true,
            ..Covering::default()
        };
        assert_eq!(dm.level(), NotifyLevel::All);
        assert_eq!(dm.push(PLAIN, 0), Some(PushKind::Dm));
        let guild_all = Covering {
            channel: Some(&inherit),
            guild: Some(&all),
            boxed: Some(&nothing),
            dm: false,
        };
        assert_eq!(guild_all.level(), NotifyLevel::All);
        assert_eq!(guild_all.push(PLAIN, 0), Some(PushKind::Message));
        assert_eq!(guild_all.push(DIRECT, 0), Some(PushKind::Mention));
        let channel_nothing = Covering {
            channel: Some(&nothing),
            ..guild_all
        };
        assert_eq!(channel_nothing.push(DIRECT, 0), None);
        let box_all = Covering {
            boxed: Some(&all),
            ..Covering::default()
        };
        assert_eq!(box_all.push(PLAIN, 0), Some(PushKind::Message));
    }

    #[test]
    fn mentions_only_pushes_unsuppressed_mentions() {
        let quiet = NotifySettings {
            level: NotifyLevel::Mentions,
            suppress_everyone: true,
            suppress_roles: false,
            muted_until: None,
        };
        let covering = Covering {
            guild: Some(&quiet),
            ..Covering::default()
        };
        assert_eq!(covering.push(PLAIN, 0), None);
        assert_eq!(covering.push(DIRECT, 0), Some(PushKind::Mention));
        assert_eq!(covering.push(EVERYONE, 0), None);
        assert_eq!(covering.push(ROLE, 0), Some(PushKind::Mention));
        let no_roles = NotifySettings {
            suppress_roles: true,
            ..NotifySettings::default()
        };
        let both = Covering {
            channel: Some(&no_roles),
            ..covering
        };
        assert_eq!(both.push(ROLE, 0), None);
        assert_eq!(both.push(DIRECT, 0), Some(PushKind::Mention));
    }

    #[test]
    fn a_mute_anywhere_silences_until_it_ends() {
        let muted = NotifySettings {
            muted_until: Some(100),
            ..NotifySettings::default()
        };
        let all = with(NotifyLevel::All);
        let covering = Covering {
            channel: Some(&all),
            guild: Some(&muted),
            ..Covering::default()
        };
        assert_eq!(covering.push(DIRECT, 99), None);
        assert_eq!(covering.push(DIRECT, 100), Some(PushKind::Mention));
        assert_eq!(covering.push(PLAIN, 101), Some(PushKind::Message));
    }

    #[test]
    fn settings_read_and_write_the_api_shape() {
        let parsed: NotifySettings = serde_json::from_str(
            r#"{"level":"all","suppress_everyone":true,"suppress_roles":false,"muted_until":5}"#,
        )
        .unwrap();
        assert_eq!(parsed.level, NotifyLevel::All);
        assert_eq!(parsed.muted_until, Some(5));
        assert!(serde_json::from_str::<NotifyLevel>(r#""loud""#).is_err());
    }
}
