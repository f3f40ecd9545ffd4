//! The data model: ids, stored types and the permission rules. Pure: no I/O, no network.

pub mod event;
pub mod federation;
pub mod ids;
pub mod permissions;
pub mod types;

pub use event::{Audience, Event};
pub use federation::{OutboxItem, Peer};
pub use ids::{Id, IdGenerator, UserId};
pub use permissions::Permissions;
pub use types::*;
