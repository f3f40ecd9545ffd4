//! Every integration test, in one binary so the crate is linked once: one module per
//! subject, each starting real servers (or the `hearth` binary) of its own, and `common`,
//! the harness and fixtures they share. `cargo test --test it gateway::` runs one module.

mod common;

mod backup;
mod bad_input;
mod cli;
mod clock;
mod cors;
mod deb;
mod device_link;
mod discovery;
mod dms;
mod dpop;
mod durability;
mod external_dpop;
mod federation;
mod federation_push;
mod federation_users;
mod gateway;
mod health;
mod journey;
mod layers;
mod notifications;
mod oauth_metadata;
mod permission_matrix;
mod push_encryption;
mod read_states;
mod security;
mod setup;
mod systemd;
mod tls;
mod voice;
mod web;
mod web_admin;
mod web_appliance;
mod web_boxes;
mod web_dms;
mod web_offline;
mod web_settings;
mod web_setup;
mod web_unread;
mod web_voice;
