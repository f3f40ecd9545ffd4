//! The gateway's wire protocol, sans I/O: what clients may send, and the frames the server
//! sends. Event frames are serialized once per event and shared by every receiver.

use crate::model::{Event, Id};
use async_tungstenite::tungstenite::Utf8Bytes;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Close codes the server uses (4000–4999 are for applications, RFC 6455 §7.4.2).
pub mod close {
    /// The ticket is missing, unknown, used or expired.
    pub const INVALID_TICKET: u16 = 4001;
    /// A frame was not valid JSON of a known shape, or binary.
    pub const MALFORMED: u16 = 4002;
    /// A frame exceeded the size limit.
    pub const TOO_LARGE: u16 = 4003;
    /// The first frame did not arrive in time, or was not `resume`/`start`.
    pub const NOT_STARTED: u16 = 4004;
    /// Too many connections for this user.
    pub const TOO_MANY: u16 = 4005;
    /// The client did not keep up; it may resume.
    pub const TOO_SLOW: u16 = 4008;
    /// The peer stopped answering heartbeats.
    pub const HEARTBEAT_TIMEOUT: u16 = 4009;
    /// The account or device was signed out.
    pub const SIGNED_OUT: u16 = 4010;
}

/// What a client may send.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientOp {
    /// Start after `seq`: replay every visible event after it, then go live.
    Resume {
        /// The last sequence number the client processed (0 for all that is retained).
        seq: u64,
    },
    /// Go live from now, without replay.
    Start,
    /// Application-level ping; answered with `pong`.
    Ping,
    /// The user is typing in a channel.
    Typing {
        /// The channel.
        channel_id: Id,
    },
}

/// Parses a client text frame.
pub fn parse_client(text: &str) -> Result<ClientOp, String> {
    let op: ClientOp = serde_json::from_str(text).map_err(|e| format!("malformed frame: {e}"))?;
    if matches!(op, ClientOp::Start | ClientOp::Ping) {
        // serde does not apply `deny_unknown_fields` to unit variants of a tagged enum.
        let fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| format!("malformed frame: {e}"))?;
        if let Some(extra) = fields.keys().find(|k| *k != "op") {
            return Err(format!("malformed frame: unknown field `{extra}`"));
        }
    }
    Ok(op)
}

/// A frame ready to send, shared among receivers.
#[derive(Debug)]
pub struct Dispatch {
    /// The event (for persistent ones), for visibility checks and sequence tracking.
    pub event: Option<Event>,
    /// Who may receive an ephemeral frame (persistent ones use `event.audience`).
    pub audience: crate::model::Audience,
    /// The serialized frame (cheap to clone: shared bytes).
    pub frame: Utf8Bytes,
}

/// The frame of a persistent event.
pub fn event_frame(event: &Event) -> Utf8Bytes {
    // `data` is already JSON; splice it in rather than parse and re-serialize it.
    let kind = serde_json::to_string(&event.kind).unwrap_or_else(|_| "\"unknown\"".into());
    format!(
        "{{\"op\":\"event\",\"seq\":{},\"type\":{},\"data\":{}}}",
        event.seq, kind, event.data
    )
    .into()
}

/// Wraps a persistent event for delivery.
pub fn dispatch_event(event: Event) -> Arc<Dispatch> {
    Arc::new(Dispatch {
        frame: event_frame(&event),
        audience: event.audience.clone(),
        event: Some(event),
    })
}

/// Wraps an ephemeral frame (`typing`, `presence`) for delivery.
pub fn dispatch_ephemeral(
    op: &str,
    audience: crate::model::Audience,
    data: serde_json::Value,
) -> Arc<Dispatch> {
    Arc::new(Dispatch {
        event: None,
        audience,
        frame: json!({ "op": op, "data": data }).to_string().into(),
    })
}

/// The first frame of a connection.
pub fn hello(heartbeat_ms: u64, last_seq: u64) -> String {
    json!({ "op": "hello", "heartbeat_interval_ms": heartbeat_ms, "last_seq": last_seq })
        .to_string()
}

/// End of replay: live events follow.
pub fn ready(seq: u64) -> String {
    json!({ "op": "ready", "seq": seq }).to_string()
}

/// The resume point is older than the log: refetch state; live events follow `seq`.
pub fn resync(seq: u64, oldest: Option<u64>) -> String {
    json!({ "op": "resync", "seq": seq, "oldest_available": oldest }).to_string()
}

/// Answer to `ping`.
pub fn pong() -> String {
    json!({ "op": "pong" }).to_string()
}

/// The reason text of a close frame that tells the client where to resume.
pub fn resume_reason(what: &str, seq: u64) -> String {
    format!("{what}; resume from seq {seq}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Audience;

    #[test]
    fn client_frames_parse_or_fail_clearly() {
        assert_eq!(
            parse_client(r#"{"op":"resume","seq":5}"#),
            Ok(ClientOp::Resume { seq: 5 })
        );
        assert_eq!(parse_client(r#"{"op":"start"}"#), Ok(ClientOp::Start));
        assert_eq!(
            parse_client(r#"{"op":"typing","channel_id":"12"}"#),
            Ok(ClientOp::Typing { channel_id: Id(12) })
        );
        assert!(parse_client("not json").is_err());
        assert!(parse_client(r#"{"op":"resume","seq":-1}"#).is_err());
        assert!(parse_client(r#"{"op":"unknown"}"#).is_err());
        assert!(parse_client(r#"{"op":"start","extra":1}"#).is_err());
    }

    #[test]
    fn event_frames_splice_the_payload_once() {
        let event = Event {
            seq: 7,
            kind: "message_create".into(),
            audience: Audience::default(),
            permission_change: None,
            data: r#"{"id":"1","content":"hi \"there\""}"#.into(),
            at_ms: 0,
        };
        let frame: serde_json::Value = serde_json::from_str(event_frame(&event).as_str()).unwrap();
        assert_eq!(frame["op"], "event");
        assert_eq!(frame["seq"], 7);
        assert_eq!(frame["type"], "message_create");
        assert_eq!(frame["data"]["content"], "hi \"there\"");
    }
}
