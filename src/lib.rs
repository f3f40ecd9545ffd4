//! Hearth: a federated chat appliance (guilds, text and voice channels) for home hardware.
//!
//! # Layout
//!
//! Dependencies point one way: `http` (and the admin channel) → `service` → `storage`,
//! `model`. `model` and `auth` do no I/O; only `http` knows tide.
//!
//! - [`config`]: the one documented configuration struct with defaults.
//! - [`app`]: [`app::App`] holds config, store and services; [`app::run`] serves an already
//!   bound listener until a shutdown future completes (tests bind port 0).
//! - [`model`]: ids, stored types, and the pure permission rules.
//! - [`storage`]: redb tables, big-endian composite keys, versioned bincode values, the
//!   group-commit writer, and online backup.
//! - [`auth`]: JOSE (JWK thumbprints, compact JWS), DPoP proof verification (RFC 9449),
//!   access and refresh tokens, device certificates, linking a new device from a signed-in
//!   one (in-memory mailboxes), argon2id, client-side key wrapping.
//! - [`service`]: business rules — accounts and token grants, guilds, channels, roles,
//!   members, invites, bans, messages, reactions, pins, files (metadata per upload), and
//!   the rate-limit counters.
//! - [`gateway`]: realtime events over websockets — the fan-out hub with bounded
//!   per-connection queues, sessions with resume from the event log, typing and presence.
//! - [`federation`]: pinned peers, signed server-to-server calls, the durable outbox, the
//!   SSRF guard for every outgoing request, the inbound calls (VerifyUser, …), and peers'
//!   clock offsets (boxes without a real-time clock disagree after power cuts).
//! - [`discovery`]: LAN discovery over mDNS — announces `_hearth._tcp.local.` with the
//!   server key, and lists the servers heard (conflicting claims marked) for peering.
//! - [`http`]: the accept loop (smol + async-h1) with its connection caps and request
//!   deadlines, routes, rate limits, error mapping, DPoP middleware, and the web client's
//!   static files (`src/web/`, embedded in the binary).
//! - [`admin`]: the local Unix-socket admin channel used by the CLI.
//! - [`client`]: the Rust client library (DPoP proofs, token refresh, per-origin routing,
//!   event streams, voice) used by the CLI, the tests and the benches.
//! - [`voice`]: voice rooms — the wire format and its checks, one thread per active room
//!   on a 20 ms clock (jitter buffers, Opus FEC/PLC, talking detection, mix-minus with a
//!   limiter, one shared encode for everyone not talking), the in-memory registry of who
//!   is where, and tone generation/detection for tests.
//! - [`origins`]: the origins the server serves (public URL, aliases, the names in its
//!   certificate), which DPoP proofs and ticket URLs are checked against and built from.
//! - [`tls`]: the self-signed certificate made at first start, fingerprints, and pinning
//!   on first use for the client and for federation.
//!
//! `src/main.rs` is the thin CLI.

pub mod admin;
pub mod app;
pub mod auth;
pub mod client;
pub mod config;
pub mod federation;
pub mod gateway;
pub mod http;
pub mod lan;
pub mod logging;
pub mod model;
pub mod origins;
pub mod service;
pub mod storage;
pub mod system;
pub mod voice;
