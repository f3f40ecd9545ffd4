//! The client side of voice: join a room on the server that hosts it, send 20 ms frames
//! (PCM the client encodes, or ready Opus packets), receive the mixed stream and decode it
//! with loss concealment.

use super::{Client, ClientError};
use crate::voice::wire::{self, EncoderSettings, VoiceFrame};
use crate::voice::{PcmFrame, FRAME_SAMPLES};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::Message;
use futures_lite::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

/// What arrives on a voice connection.
#[derive(Clone, Debug, PartialEq)]
pub enum VoiceEvent {
    /// A frame of the mix.
    Audio(VoiceFrame),
    /// A JSON op (`state`, `moved`, `pong`).
    Op(Value),
    /// The server closed the connection.
    Closed {
        /// Close code.
        code: Option<u16>,
        /// Reason.
        reason: String,
    },
}

type Ws = async_tungstenite::WebSocketStream<crate::lan::tls::ClientStream>;

/// One open voice connection. Dropping it closes the socket (the server sees a leave).
pub struct VoiceConnection {
    /// The server's `ready` op: guild, channel, own state, the first participants, audio
    /// format.
    pub ready: Value,
    /// Everyone in the room when this connection joined (`ready` and the `participants`
    /// pages that follow it), in the server's order.
    pub participants: Vec<Value>,
    sink: smol::lock::Mutex<async_tungstenite::WebSocketSender<crate::lan::tls::ClientStream>>,
    events: async_channel::Receiver<VoiceEvent>,
    encoder: std::sync::Mutex<(opus::Encoder, u16, u32)>,
    _reader: smol::Task<()>,
}

impl Client {
    /// Joins voice channel `channel` on the server at `origin` (which hosts it).
    pub async fn join_voice(
        &self,
        origin: &str,
        channel: &str,
    ) -> Result<VoiceConnection, ClientError> {
        let origin = super::origin_of(origin)?;
        let answer = self
            .post(
                &format!("{origin}/api/v1/channels/{channel}/voice"),
                json!({}),
            )
            .await?
            .ok()?
            .json()?;
        let url = answer["url"]
            .as_str()
            .ok_or_else(|| ClientError::Protocol("voice ticket without url".into()))?
            .to_string();
        VoiceConnection::open(&origin, &url, self.tls_pins()).await
    }
}

impl VoiceConnection {
    /// Opens the voice socket at `url` (from a ticket) and waits for `ready`.
    pub async fn open(
        origin: &str,
        url: &str,
        pins: &crate::lan::tls::Pins,
    ) -> Result<VoiceConnection, ClientError> {
        let network = |e: String| ClientError::Network {
            origin: origin.to_string(),
            message: e,
        };
        let stream = crate::lan::tls::connect_origin(origin, pins)
            .await
            .map_err(|e| super::transport::connect_error(origin, e))?;
        let (ws, _): (Ws, _) = async_tungstenite::client_async(url, stream)
            .await
            .map_err(|e| network(e.to_string()))?;
        let (sink, mut stream) = ws.split();
        // The first frame is `ready`, or a close saying why not.
        let first = futures_lite::future::or(async { stream.next().await }, async {
            smol::Timer::after(Duration::from_secs(10)).await;
            None
        })
        .await;
        let ready = match first {
            Some(Ok(Message::Text(text))) => serde_json::from_str::<Value>(text.as_str())
                .map_err(|e| ClientError::Protocol(format!("bad voice frame: {e}")))?,
            Some(Ok(Message::Close(Some(c)))) => {
                return Err(ClientError::Status {
                    status: u16::from(c.code),
                    code: "voice_closed".into(),
                    message: c.reason.to_string(),
                })
            }
            other => {
                return Err(ClientError::Protocol(format!(
                    "voice socket did not start: {other:?}"
                )))
            }
        };
        if ready["op"] != "ready" {
            return Err(ClientError::Protocol(format!(
                "expected ready, got {ready}"
            )));
        }
        // The rest of the participant list follows in pages, before any audio.
        let mut participants: Vec<Value> = ready["participants"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let count = ready["participant_count"]
            .as_u64()
            .map_or(participants.len(), |n| n as usize);
        while participants.len() < count {
            let page = futures_lite::future::or(async { stream.next().await }, async {
                smol::Timer::after(Duration::from_secs(10)).await;
                None
            })
            .await;
            let page: Value = match page {
                Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str())
                    .map_err(|e| ClientError::Protocol(format!("bad voice frame: {e}")))?,
                other => {
                    return Err(ClientError::Protocol(format!(
                        "expected the rest of the participants, got {other:?}"
                    )))
                }
            };
            match page["participants"].as_array() {
                Some(list) if page["op"] == "participants" && !list.is_empty() => {
                    participants.extend(list.iter().cloned())
                }
                _ => {
                    return Err(ClientError::Protocol(format!(
                        "expected a participants page, got {page}"
                    )))
                }
            }
        }
        let (tx, events) = async_channel::bounded(4096);
        let reader = smol::spawn(async move {
            while let Some(frame) = stream.next().await {
                let event = match frame {
                    Ok(Message::Binary(bytes)) => {
                        if bytes.len() < wire::HEADER_BYTES {
                            continue;
                        }
                        VoiceEvent::Audio(VoiceFrame {
                            seq: u16::from_be_bytes([bytes[0], bytes[1]]),
                            timestamp: u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]),
                            payload: bytes[wire::HEADER_BYTES..].to_vec(),
                        })
                    }
                    Ok(Message::Text(text)) => match serde_json::from_str(text.as_str()) {
                        Ok(value) => VoiceEvent::Op(value),
                        Err(_) => continue,
                    },
                    Ok(Message::Close(close)) => {
                        let (code, reason) = match close {
                            Some(c) => (Some(u16::from(c.code)), c.reason.to_string()),
                            None => (None, "closed".into()),
                        };
                        let _ = tx.send(VoiceEvent::Closed { code, reason }).await;
                        return;
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx
                            .send(VoiceEvent::Closed {
                                code: None,
                                reason: e.to_string(),
                            })
                            .await;
                        return;
                    }
                };
                if tx.send(event).await.is_err() {
                    return;
                }
            }
            let _ = tx
                .send(VoiceEvent::Closed {
                    code: None,
                    reason: "connection ended".into(),
                })
                .await;
        });
        let encoder = wire::encoder(EncoderSettings {
            expected_loss_percent: 10,
            ..EncoderSettings::default()
        })
        .map_err(|e| ClientError::Protocol(format!("opus encoder: {e}")))?;
        let mut start = [0u8; 6];
        crate::system::random_bytes(&mut start);
        Ok(VoiceConnection {
            ready,
            participants,
            sink: smol::lock::Mutex::new(sink),
            events,
            encoder: std::sync::Mutex::new((
                encoder,
                u16::from_be_bytes([start[0], start[1]]),
                u32::from_be_bytes([start[2], start[3], start[4], start[5]]),
            )),
            _reader: reader,
        })
    }

    /// Encodes the next 20 ms of audio; returns the frame (sequence number, timestamp and
    /// packet), ready for [`send_frame`](Self::send_frame). Each call advances the
    /// sequence number by one and the timestamp by 960.
    pub fn encode(&self, pcm: &PcmFrame) -> Result<VoiceFrame, ClientError> {
        let mut guard = self.encoder.lock().unwrap_or_else(|p| p.into_inner());
        let (encoder, seq, ts) = &mut *guard;
        let mut out = [0u8; wire::MAX_ENCODED_BYTES];
        let n = encoder
            .encode(&pcm[..], &mut out)
            .map_err(|e| ClientError::Protocol(format!("opus encode: {e}")))?;
        let frame = VoiceFrame {
            seq: *seq,
            timestamp: *ts,
            payload: out[..n].to_vec(),
        };
        *seq = seq.wrapping_add(1);
        *ts = ts.wrapping_add(wire::FRAME_TS);
        Ok(frame)
    }

    /// Marks `frames` frames as not sent (a pause: the next frame's timestamp moves on
    /// with the clock while its sequence number does not).
    pub fn skip(&self, frames: u32) {
        let mut guard = self.encoder.lock().unwrap_or_else(|p| p.into_inner());
        guard.2 = guard.2.wrapping_add(frames.wrapping_mul(wire::FRAME_TS));
    }

    /// Encodes and sends the next 20 ms of audio.
    pub async fn send_pcm(&self, pcm: &PcmFrame) -> Result<(), ClientError> {
        let frame = self.encode(pcm)?;
        self.send_frame(&frame).await
    }

    /// Sends one frame as given.
    pub async fn send_frame(&self, frame: &VoiceFrame) -> Result<(), ClientError> {
        self.send_raw(wire::encode_frame(
            frame.seq,
            frame.timestamp,
            &frame.payload,
        ))
        .await
    }

    /// Sends arbitrary bytes as a binary frame (tests use it for malformed input).
    pub async fn send_raw(&self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.send_message(Message::Binary(bytes.into())).await
    }

    /// Sends a JSON op.
    pub async fn send_op(&self, op: Value) -> Result<(), ClientError> {
        self.send_message(Message::Text(op.to_string().into()))
            .await
    }

    /// Sets own mute and deafen.
    pub async fn set_state(
        &self,
        self_mute: Option<bool>,
        self_deaf: Option<bool>,
    ) -> Result<(), ClientError> {
        self.send_op(json!({"op": "state", "self_mute": self_mute, "self_deaf": self_deaf}))
            .await
    }

    async fn send_message(&self, message: Message) -> Result<(), ClientError> {
        self.sink
            .lock()
            .await
            .send(message)
            .await
            .map_err(|e| ClientError::Network {
                origin: "voice".into(),
                message: e.to_string(),
            })
    }

    /// The next event within `timeout`.
    pub async fn recv(&self, timeout: Duration) -> Option<VoiceEvent> {
        futures_lite::future::or(async { self.events.recv().await.ok() }, async {
            smol::Timer::after(timeout).await;
            None
        })
        .await
    }

    /// Everything that arrived already, without waiting.
    pub fn drain(&self) -> Vec<VoiceEvent> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }

    /// Leaves the room (closes the socket).
    pub async fn leave(self) {
        let mut sink = self.sink.lock().await;
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "leaving".into(),
            })))
            .await;
        let _ = futures_lite::future::or(async { sink.close(None).await }, async {
            smol::Timer::after(Duration::from_secs(1)).await;
            Ok(())
        })
        .await;
    }
}

/// Decodes a received stream into continuous 20 ms frames: a missing sequence number is
/// concealed (Opus in-band FEC from the next packet for the last lost frame, PLC before
/// it), and a timestamp that jumps with no packet missing is silence (nobody talked).
pub struct VoicePlayer {
    decoder: opus::Decoder,
    last: Option<(u16, u32)>,
    /// Frames concealed because packets were missing.
    pub concealed: u64,
    /// Frames of silence inserted where nobody talked.
    pub silent: u64,
    /// Frames decoded from packets.
    pub decoded: u64,
}

/// Longest gap filled in one go, frames (one second); beyond it playback restarts.
const MAX_FILL: u32 = 50;

impl VoicePlayer {
    /// A player for a new stream.
    pub fn new() -> Result<VoicePlayer, ClientError> {
        Ok(VoicePlayer {
            decoder: wire::decoder().map_err(|e| ClientError::Protocol(e.to_string()))?,
            last: None,
            concealed: 0,
            silent: 0,
            decoded: 0,
        })
    }

    /// Plays one received frame; returns the audio it stands for, in order (the frames
    /// covering any gap before it, then its own). A stale or duplicate frame yields none.
    pub fn play(&mut self, frame: &VoiceFrame) -> Vec<Box<PcmFrame>> {
        let mut out = Vec::new();
        if let Some((seq, ts)) = self.last {
            let lost = frame.seq.wrapping_sub(seq).wrapping_sub(1);
            let behind = frame.seq.wrapping_sub(seq) as i16;
            if behind <= 0 && behind > -(MAX_FILL as i16) {
                return out; // a duplicate, or behind what was played
            }
            if lost >= 0x8000 || frame.timestamp.wrapping_sub(ts) >= 0x8000_0000 {
                // Far behind, or time ran backwards: a new stream (the server restarted
                // the room). Play it from here.
                self.last = None;
                return self.play(frame);
            }
            let frames_between =
                (frame.timestamp.wrapping_sub(ts) / wire::FRAME_TS).saturating_sub(1);
            let gap = frames_between.min(MAX_FILL);
            let lost = u32::from(lost).min(gap);
            // Frames in the gap that had packets nobody sent are silence; the missing
            // packets are the last `lost` frames of the gap.
            for _ in 0..gap - lost {
                out.push(Box::new([0; FRAME_SAMPLES]));
                self.silent += 1;
            }
            for i in 0..lost {
                let mut pcm = Box::new([0i16; FRAME_SAMPLES]);
                let fec = i + 1 == lost;
                let packet: &[u8] = if fec { &frame.payload } else { &[] };
                if self.decoder.decode(packet, &mut pcm[..], fec).is_err() {
                    let _ = self.decoder.decode(&[], &mut pcm[..], false);
                }
                out.push(pcm);
                self.concealed += 1;
            }
        }
        let mut pcm = Box::new([0i16; FRAME_SAMPLES]);
        if !matches!(
            self.decoder.decode(&frame.payload, &mut pcm[..], false),
            Ok(FRAME_SAMPLES)
        ) {
            let _ = self.decoder.decode(&[], &mut pcm[..], false);
            self.concealed += 1;
        } else {
            self.decoded += 1;
        }
        out.push(pcm);
        self.last = Some((frame.seq, frame.timestamp));
        out
    }
}
