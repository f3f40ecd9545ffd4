//! Hearth: a federated chat appliance (guilds, text and voice channels) for home hardware.
//!
//! # Layout
//!
//! Layers point one way, and `tests/it/layers.rs` fails the build's tests when a file
//! imports a module on its own floor or above (it also fails when anything outside
//! `http` names tide). From the bottom:
//!
//! 0. [`system`] (the time and random bytes: a leaf), [`model`] (ids, stored types, the
//!    pure permission rules), [`config`] (the one documented configuration struct with
//!    defaults), [`origins`] (the origins the server answers as, which DPoP proofs and
//!    ticket URLs are checked against and built from), [`metrics`] (counters, gauges and
//!    histograms updated with one atomic operation, and the Prometheus text format).
//! 1. [`storage`] (redb tables typed by key and value, versioned bincode values, the
//!    group-commit writer that publishes events and wakes the outbox after a commit,
//!    schema migrations, backup archives and their restore, and the portable export); [`auth`] (JOSE, DPoP proof verification per RFC 9449, access and
//!    refresh tokens, device certificates, migration proofs, device links, argon2id,
//!    client-side key wrapping, Web Push encryption and VAPID); [`logging`] (the `log` backend: the journal with
//!    priorities under systemd, stderr otherwise, and a ring of the latest warnings and
//!    errors for the console). None of these does business.
//! 2. [`service`]: the business rules, independent of HTTP: accounts and token grants,
//!    guilds, channels, roles, members (kick/ban), invites, messages, reactions, pins,
//!    files, read states (unread and mention counts), rate limits, the user life cycle,
//!    the remote-user directory, shadow accounts and remote profiles (their refresh, the
//!    profile document a peer sends), migration records, ban notices, push grants and
//!    fan-out planning, notification settings, the box's own settings and its first-boot
//!    claim (setup code, registration mode), account administration and password-reset
//!    links, backups kept on the box (scheduled, rotated) and restores staged for the next
//!    start, the box's health checks and machine figures (memory, CPU, free space), and
//!    the outbox queueing of server-to-server calls (a typed `Call`,
//!    queued in the commit of the change). Every operation checks its actor's permissions
//!    itself.
//! 3. [`gateway`] (realtime events over websockets: the fan-out hub with bounded queues,
//!    sessions with resume from the event log, typing and presence, and the socket loop
//!    both websocket sessions share); [`lan`] (mDNS announcement and discovery, the table
//!    of what was heard, TLS: the self-signed certificate and pinning on first use, and the
//!    console: the setup code file and agetty's banner).
//! 4. [`voice`]: rooms mixed on the box (jitter buffers, Opus FEC/PLC, talking detection,
//!    mix-minus with a limiter, one shared encode), the registry of who is where, the
//!    voice websocket session, and tone generation/detection for tests.
//! 5. [`federation`]: the network between boxes only: signed calls and answers, the
//!    outbound client with its SSRF guard, the outbox worker, pinned peers and peering
//!    with a discovered one, peers' clocks, and inbound calls parsed into typed bodies
//!    and handed to `service`.
//! 6. [`app`]: [`app::App`], the state one running server shares between connections.
//! 7. [`http`] (the accept loop with its connection caps and request deadlines, the route
//!    table, one handler file per resource, DPoP middleware, error mapping, and the web
//!    client's static files from `src/web/`), [`admin`] (the local Unix-socket admin
//!    channel the CLI uses), and [`client`] (the Rust client library: DPoP proofs, token
//!    refresh, per-origin routing, event streams, voice; used by the CLI, tests, benches).
//! 8. [`server`]: the one place that starts a server: it opens the [`app::App`] and wires
//!    HTTP, the admin channel, LAN discovery and the outbox worker together until
//!    shutdown. Tests bind port 0 and call [`server::run`].
//!
//! `src/main.rs` is the thin CLI on top.

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
pub mod metrics;
pub mod model;
pub mod origins;
pub mod server;
pub mod service;
pub mod storage;
pub mod system;
pub mod voice;
