//! The client's event stream for one server: it fetches a ticket, opens the websocket,
//! resumes from the last sequence number it saw, and reconnects with back-off whenever the
//! connection drops, so the caller sees every event once, in order.

use super::{Client, ClientError};
use async_tungstenite::tungstenite::Message;
use futures_lite::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

/// What the stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayMessage {
    /// A persistent event.
    Event {
        /// Sequence number.
        seq: u64,
        /// Event type, e.g. `message_create`.
        kind: String,
        /// Payload.
        data: Value,
    },
    /// Replay is done; live events follow.
    Ready {
        /// Last sequence number covered.
        seq: u64,
    },
    /// The resume point was too old: state must be refetched.
    Resync {
        /// Live events follow this sequence number.
        seq: u64,
    },
    /// An ephemeral frame (`typing`, `presence`, `pong`).
    Ephemeral {
        /// The `op`.
        op: String,
        /// Its data.
        data: Value,
    },
    /// The connection dropped (the stream reconnects by itself).
    Disconnected {
        /// Close code, when the server sent one.
        code: Option<u16>,
        /// Why.
        reason: String,
    },
}

/// A running event stream; dropping it closes the connection.
pub struct EventStream {
    messages: async_channel::Receiver<GatewayMessage>,
    _task: smol::Task<()>,
}

impl EventStream {
    /// The next message, or `None` once the stream has stopped for good.
    pub async fn next(&self) -> Option<GatewayMessage> {
        self.messages.recv().await.ok()
    }

    /// The next persistent event, skipping everything else, within `timeout`.
    pub async fn next_event(&self, timeout: Duration) -> Option<(u64, String, Value)> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let message = futures_lite::future::or(async { self.next().await }, async {
                smol::Timer::after(left).await;
                None
            })
            .await?;
            if let GatewayMessage::Event { seq, kind, data } = message {
                return Some((seq, kind, data));
            }
        }
    }
}

impl Client {
    /// Opens an event stream with the server at `origin`. With `resume_after` the stream
    /// first replays every event after that sequence number; without it, it starts live.
    pub async fn events(
        &self,
        origin: &str,
        resume_after: Option<u64>,
    ) -> Result<EventStream, ClientError> {
        let origin = super::origin_of(origin)?;
        // Check credentials now, so a caller learns of a bad session at once.
        self.gateway_ticket(&origin).await?;
        let (tx, messages) = async_channel::bounded(4096);
        let client = self.clone();
        let task = smol::spawn(async move {
            let mut last = resume_after;
            let mut backoff = Duration::from_millis(50);
            loop {
                let outcome = client.run_connection(&origin, &mut last, &tx).await;
                if tx.is_closed() {
                    return;
                }
                let (code, reason) = match outcome {
                    Ok(closed) => closed,
                    Err(e) => (None, e.to_string()),
                };
                if tx
                    .send(GatewayMessage::Disconnected { code, reason })
                    .await
                    .is_err()
                {
                    return;
                }
                smol::Timer::after(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
        Ok(EventStream {
            messages,
            _task: task,
        })
    }

    async fn gateway_ticket(&self, origin: &str) -> Result<String, ClientError> {
        let answer = self
            .post(&format!("{origin}/api/v1/gateway/ticket"), json!({}))
            .await?
            .ok()?
            .json()?;
        answer["url"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Protocol("ticket answer without url".into()))
    }

    /// One connection's life; returns the close code and reason.
    async fn run_connection(
        &self,
        origin: &str,
        last: &mut Option<u64>,
        out: &async_channel::Sender<GatewayMessage>,
    ) -> Result<(Option<u16>, String), ClientError> {
        let url = self.gateway_ticket(origin).await?;
        let network = |e: String| ClientError::Network {
            origin: origin.to_string(),
            message: e,
        };
        let stream = crate::lan::tls::connect_origin(origin, self.tls_pins())
            .await
            .map_err(|e| super::transport::connect_error(origin, e))?;
        let (mut ws, _) = async_tungstenite::client_async(url.as_str(), stream)
            .await
            .map_err(|e| network(e.to_string()))?;
        let start = match last {
            Some(seq) => json!({ "op": "resume", "seq": seq }),
            None => json!({ "op": "start" }),
        };
        ws.send(Message::Text(start.to_string().into()))
            .await
            .map_err(|e| network(e.to_string()))?;
        while let Some(frame) = ws.next().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => return Ok((None, e.to_string())),
            };
            let text = match frame {
                Message::Text(t) => t,
                Message::Close(close) => {
                    return Ok(match close {
                        Some(c) => (Some(c.code.into()), c.reason.to_string()),
                        None => (None, "closed".into()),
                    })
                }
                _ => continue,
            };
            let value: Value = serde_json::from_str(text.as_str())
                .map_err(|e| ClientError::Protocol(format!("bad gateway frame: {e}")))?;
            let seq = value["seq"].as_u64().unwrap_or(0);
            let message = match value["op"].as_str().unwrap_or("") {
                "hello" => continue,
                "event" => {
                    if last.is_some_and(|l| seq <= l) {
                        continue;
                    }
                    *last = Some(seq);
                    GatewayMessage::Event {
                        seq,
                        kind: value["type"].as_str().unwrap_or("").to_string(),
                        data: value["data"].clone(),
                    }
                }
                "ready" => {
                    *last = Some(last.unwrap_or(0).max(seq));
                    GatewayMessage::Ready { seq }
                }
                "resync" => {
                    *last = Some(seq);
                    GatewayMessage::Resync { seq }
                }
                op => GatewayMessage::Ephemeral {
                    op: op.to_string(),
                    data: value["data"].clone(),
                },
            };
            if out.send(message).await.is_err() {
                return Ok((None, "stream dropped".into()));
            }
        }
        Ok((None, "connection ended".into()))
    }
}
