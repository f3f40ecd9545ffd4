//! Push notifications for mentions, the network side (grants of tokens and fan-out
//! planning are `service::push`): [`tokens`] checks a Push Delegation Token, [`relay`]
//! takes a host's PushNotification at the user's home, [`fanout`] runs a message's
//! fan-out job, [`delivery`] posts to a push endpoint.
//!
//! - **PushNotification** (host → home): `{id, token, user_id, guild_id, channel_id,
//!   message_id, title, body}`. The home checks the token (its own key, `aud` = the calling
//!   peer, `sub` = `user_id`, scope `push`, not expired, not revoked) and that the user is
//!   still homed there, deduplicates on the call id, and queues a `push_delivery` per
//!   distributor. Answers: 200 `{"queued": n}` (or `{"duplicate": true}`), 403
//!   `invalid_push_token` / `push_token_expired` / `push_token_revoked`, 404 `unknown_user`.
//! - **Delivery.** A `push_delivery` outbox item is an RFC 8030 message to the
//!   subscription's endpoint: its JSON body encrypted for the subscription (RFC 8291) with
//!   a VAPID header (RFC 8292), through the SSRF guard, retried with back-off like every
//!   call, and given up after a day (a stale notification is worth nothing).

pub mod delivery;
pub mod fanout;
pub mod relay;
pub mod tokens;

pub use delivery::{deliver, delivery_final, post_to_distributor, seal, Sealed};
pub use fanout::fan_out;
pub use relay::{notification_answered, push_notification};
pub use tokens::{verify_token, TokenRefusal};

use crate::service::outbox::Call;

/// Host → home call carrying one notification.
pub const NOTIFICATION: &str = Call::PUSH_NOTIFICATION;
/// Outbox item: an encrypted POST to a push endpoint (the target is its URL).
pub const DELIVERY: &str = Call::PUSH_DELIVERY;
/// Outbox item: expand a message's mentions into notifications (local job, no target).
pub const FANOUT: &str = Call::PUSH_FANOUT;
pub use crate::service::push::TOKEN_TYP;
/// Notifications not delivered within a day are dropped.
pub const GIVE_UP_SECS: u64 = 24 * 3600;
