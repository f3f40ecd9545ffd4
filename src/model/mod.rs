//! The data model: ids, stored types and the permission rules. Pure: no I/O, no network.

pub mod box_settings;
pub mod dm;
pub mod event;
pub mod federation;
pub mod ids;
pub mod notify;
pub mod notify_settings;
pub mod permissions;
pub mod read_state;
pub mod types;

pub use box_settings::{BoxSettings, PasswordReset, RegistrationMode};
pub use dm::{Dm, DmEntry, DmPolicy, DM_PERMISSIONS, NO_GUILD};
pub use event::{Audience, Event};
pub use federation::{MigrationRecord, OutboxItem, Peer, RemoteUser, ShadowSync};
pub use ids::{Id, IdGenerator, UserId};
pub use notify::{BanNotification, PushGrant};
pub use notify_settings::{Covering, Mentioned, NotifyLevel, NotifySettings, PushKind, BOX_SCOPE};
pub use permissions::Permissions;
pub use read_state::{BroadMention, ChannelCounter, ReadState, COUNTER_ROW};
pub use types::*;
