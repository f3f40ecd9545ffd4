//! The route handlers, one file per resource; [`super::routes`] maps paths to them.

pub mod account;
pub mod backups;
pub mod box_admin;
pub mod channels;
pub mod dms;
pub mod files;
pub mod guilds;
pub mod invites;
pub mod members;
pub mod messages;
pub mod notifications;
pub mod oauth_metadata;
pub mod public;
pub mod read_states;
pub mod roles;
pub mod status;
pub mod users;
