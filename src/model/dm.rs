//! Direct messages: a DM is a channel of no guild, hosted by the box of the person who
//! opened it, with its participants; and what a participant's home keeps of the DMs its
//! users take part in on any box.

use super::ids::{Id, UserId};
use super::permissions::Permissions;
use super::types::ChannelKind;
use serde::{Deserialize, Serialize};

/// The `guild_id` of a DM channel and its messages: no guild has it (ids start above 0),
/// and realtime events of DMs are addressed to it, the viewer's DMs being its channels.
pub const NO_GUILD: Id = Id(0);

/// What every participant may do in a DM: talk, react, attach files, read the history and
/// join its voice room. Nobody moderates a DM: a participant deletes only their own
/// messages, and pins need a moderator, so there are none.
pub const DM_PERMISSIONS: Permissions = Permissions(
    Permissions::VIEW_CHANNEL.0
        | Permissions::SEND_MESSAGES.0
        | Permissions::READ_MESSAGE_HISTORY.0
        | Permissions::ADD_REACTIONS.0
        | Permissions::ATTACH_FILES.0
        | Permissions::CONNECT.0
        | Permissions::SPEAK.0,
);

/// A DM as its host stores it. Its channel (same id, `guild_id` [`NO_GUILD`]) holds the
/// messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dm {
    /// Id, also the channel's.
    pub id: Id,
    /// [`ChannelKind::Dm`] or [`ChannelKind::GroupDm`].
    pub kind: ChannelKind,
    /// Who opened it (a group DM's owner removes others; passes on when they leave).
    pub owner: UserId,
    /// Name (group DMs; may be empty).
    pub name: String,
    /// Everyone in it, the owner included, in the order they came.
    pub recipients: Vec<UserId>,
    /// Unix seconds.
    pub created_at: u64,
}

/// What a user's home keeps of one DM hosted on another box (from `dm_joined`), so it
/// lists it while that box is down.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DmEntry {
    /// The hosting box's origin.
    pub host: String,
    /// The DM as the host last described it.
    pub dm: Dm,
    /// The host's call id of that description (later calls compare greater).
    pub version: u64,
}

/// Who may open a DM with a user (or add them to a group DM); their home decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DmPolicy {
    /// Anyone not blocked.
    #[default]
    Everyone,
    /// People who share a guild with them: a guild hosted by their home, or one hosted by
    /// the DM's host, as that host attests.
    SharedGuild,
    /// Nobody.
    Nobody,
}
