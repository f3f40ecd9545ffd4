//! The voice wire format and the Opus settings both ends use.
//!
//! Every binary websocket frame, in both directions, is one 20 ms mono 48 kHz Opus packet
//! behind a 6-byte header:
//!
//! ```text
//! offset 0  u16 big-endian  sequence number: +1 per packet sent, wrapping
//! offset 2  u32 big-endian  timestamp: 48 kHz sample index of the frame's first sample,
//!                           +960 per 20 ms frame, wrapping (a pause in sending advances it
//!                           by the frames not sent)
//! offset 6  ..              the Opus packet (one 20 ms frame, mono)
//! ```

use super::{FRAME_SAMPLES, SAMPLE_RATE};

/// Bytes before the Opus packet.
pub const HEADER_BYTES: usize = 6;
/// Timestamp units per frame.
pub const FRAME_TS: u32 = FRAME_SAMPLES as u32;
/// Room for the largest Opus packet the encoders here produce.
pub const MAX_ENCODED_BYTES: usize = 1275;

/// One frame on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoiceFrame {
    /// Sequence number.
    pub seq: u16,
    /// Timestamp (48 kHz samples).
    pub timestamp: u32,
    /// The Opus packet.
    pub payload: Vec<u8>,
}

/// Writes a frame's bytes.
pub fn encode_frame(seq: u16, timestamp: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Why a frame was refused. Each maps to a websocket close code and a reason a person can
/// act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Not a voice frame at all (short header, empty or malformed Opus packet).
    Malformed(String),
    /// Larger than the configured packet limit: (frame bytes, the limit on frames).
    TooLarge(usize, usize),
    /// A valid Opus packet, but not 20 ms mono 48 kHz.
    WrongFormat(String),
}

impl Reject {
    /// Close code for the voice websocket.
    pub fn close_code(&self) -> u16 {
        match self {
            Reject::Malformed(_) => close::MALFORMED,
            Reject::TooLarge(..) => close::TOO_LARGE,
            Reject::WrongFormat(_) => close::WRONG_FORMAT,
        }
    }

    /// Human reason (fits a websocket close frame's 123 bytes).
    pub fn reason(&self) -> String {
        let mut text = match self {
            Reject::Malformed(why) => format!("malformed voice frame: {why}"),
            Reject::TooLarge(n, limit) => {
                format!("voice frame too large: {n} bytes (at most {limit})")
            }
            Reject::WrongFormat(why) => {
                format!("expected 20 ms mono 48 kHz Opus: {why}")
            }
        };
        if text.len() > 120 {
            let mut end = 120;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        text
    }
}

/// Close codes of the voice websocket (docs/protocol.md, "Voice").
pub mod close {
    /// The ticket is missing, unknown, used or expired.
    pub const INVALID_TICKET: u16 = 4001;
    /// Not a voice frame, or a text frame that is not a known JSON op.
    pub const MALFORMED: u16 = 4002;
    /// A frame exceeded the size limit.
    pub const TOO_LARGE: u16 = 4003;
    /// No longer allowed in the channel (CONNECT lost, kicked, banned, channel deleted).
    pub const NOT_ALLOWED: u16 = 4004;
    /// The room is full.
    pub const ROOM_FULL: u16 = 4005;
    /// A valid Opus packet that is not 20 ms mono 48 kHz, or timestamps that do not
    /// advance by 960 per frame.
    pub const WRONG_FORMAT: u16 = 4006;
    /// The same user joined voice again elsewhere on this server.
    pub const REPLACED: u16 = 4007;
    /// Frames arrive much faster than real time.
    pub const TOO_FAST: u16 = 4008;
    /// The client stopped answering pings.
    pub const HEARTBEAT_TIMEOUT: u16 = 4009;
    /// The account or device was signed out.
    pub const SIGNED_OUT: u16 = 4010;
    /// A moderator disconnected the user from voice.
    pub const DISCONNECTED: u16 = 4011;
}

/// Splits and checks a frame from a client: the header, and an Opus packet that is one
/// 20 ms mono frame at 48 kHz within `max_packet` bytes.
pub fn parse_frame(bytes: &[u8], max_packet: usize) -> Result<VoiceFrame, Reject> {
    if bytes.len() < HEADER_BYTES {
        return Err(Reject::Malformed(format!(
            "{} bytes is shorter than the {HEADER_BYTES}-byte header",
            bytes.len()
        )));
    }
    let payload = &bytes[HEADER_BYTES..];
    if payload.len() > max_packet {
        return Err(Reject::TooLarge(bytes.len(), HEADER_BYTES + max_packet));
    }
    check_packet(payload)?;
    Ok(VoiceFrame {
        seq: u16::from_be_bytes([bytes[0], bytes[1]]),
        timestamp: u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]),
        payload: payload.to_vec(),
    })
}

/// Checks that `packet` is a well-formed Opus packet of one 20 ms mono frame.
pub fn check_packet(packet: &[u8]) -> Result<(), Reject> {
    if packet.is_empty() {
        return Err(Reject::Malformed("empty Opus packet".into()));
    }
    let parsed = opus::packet::parse(packet)
        .map_err(|e| Reject::Malformed(format!("not an Opus packet ({})", e.description())))?;
    if parsed.frames.is_empty() {
        return Err(Reject::Malformed("Opus packet without frames".into()));
    }
    let samples = opus::packet::get_nb_samples(packet, SAMPLE_RATE)
        .map_err(|e| Reject::Malformed(format!("not an Opus packet ({})", e.description())))?;
    if samples != FRAME_SAMPLES {
        return Err(Reject::WrongFormat(format!(
            "packet holds {} ms of audio",
            samples as f32 / 48.0
        )));
    }
    match opus::packet::get_nb_channels(packet) {
        Ok(opus::Channels::Mono) => Ok(()),
        Ok(opus::Channels::Stereo) => Err(Reject::WrongFormat("packet is stereo".into())),
        Err(e) => Err(Reject::Malformed(format!(
            "not an Opus packet ({})",
            e.description()
        ))),
    }
}

/// Checks the timestamp of a client's frame against the previous one: timestamps are 48 kHz
/// sample counts, so between any two frames they differ by a whole number of 960-sample
/// frames. A client sending another rate's timestamps (320 per frame at 16 kHz, 441 at
/// 44.1 kHz…) fails this at its second frame.
pub fn check_timestamp_step(previous: u32, timestamp: u32) -> Result<(), Reject> {
    let step = timestamp.wrapping_sub(previous) as i32;
    if step % FRAME_TS as i32 == 0 {
        Ok(())
    } else {
        Err(Reject::WrongFormat(format!(
            "timestamps moved by {step}, not a multiple of 960 (48 kHz, 20 ms frames)"
        )))
    }
}

/// Opus encoder settings.
#[derive(Clone, Copy, Debug)]
pub struct EncoderSettings {
    /// Bits per second.
    pub bitrate: u32,
    /// 0..=10.
    pub complexity: u8,
    /// In-band FEC.
    pub fec: bool,
    /// Expected loss, percent.
    pub expected_loss_percent: u8,
}

impl EncoderSettings {
    /// The server's settings from its configuration.
    pub fn from_config(config: &crate::config::VoiceConfig) -> EncoderSettings {
        EncoderSettings {
            bitrate: config.bitrate,
            complexity: config.complexity,
            fec: config.fec,
            expected_loss_percent: config.expected_loss_percent,
        }
    }
}

impl Default for EncoderSettings {
    fn default() -> Self {
        EncoderSettings::from_config(&crate::config::VoiceConfig::default())
    }
}

/// A 48 kHz mono VoIP encoder with `settings` (values clamped to what Opus accepts).
pub fn encoder(settings: EncoderSettings) -> Result<opus::Encoder, opus::Error> {
    let mut encoder =
        opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
    encoder.set_bitrate(opus::Bitrate::Bits(
        settings.bitrate.clamp(6_000, 128_000) as i32
    ))?;
    encoder.set_complexity(i32::from(settings.complexity.min(10)))?;
    encoder.set_signal(opus::Signal::Voice)?;
    encoder.set_inband_fec(settings.fec)?;
    encoder.set_packet_loss_perc(i32::from(settings.expected_loss_percent.min(50)))?;
    Ok(encoder)
}

/// A 48 kHz mono decoder.
pub fn decoder() -> Result<opus::Decoder, opus::Error> {
    opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(ms: f32, channels: opus::Channels) -> Vec<u8> {
        let mut e = opus::Encoder::new(48_000, channels, opus::Application::Voip).unwrap();
        let per_channel = (48.0 * ms) as usize;
        let n = per_channel
            * if channels == opus::Channels::Stereo {
                2
            } else {
                1
            };
        let pcm = crate::voice::sine(440.0, 8000.0, n, 0.0);
        e.encode_vec(&pcm, 1500).unwrap()
    }

    #[test]
    fn a_20ms_mono_frame_round_trips() {
        let p = packet(20.0, opus::Channels::Mono);
        let bytes = encode_frame(65535, 4_294_966_000, &p);
        let f = parse_frame(&bytes, 1275).unwrap();
        assert_eq!((f.seq, f.timestamp), (65535, 4_294_966_000));
        assert_eq!(f.payload, p);
    }

    #[test]
    fn wrong_shapes_are_refused_with_their_reason() {
        assert!(matches!(
            parse_frame(&[1, 2, 3], 1275),
            Err(Reject::Malformed(_))
        ));
        assert!(matches!(
            parse_frame(&encode_frame(1, 1, &[]), 1275),
            Err(Reject::Malformed(_))
        ));
        // Code 3 (arbitrary frame count) with a count of zero is not a valid packet.
        assert!(matches!(
            parse_frame(&encode_frame(1, 1, &[0x03, 0x00]), 1275),
            Err(Reject::Malformed(_))
        ));
        assert!(matches!(
            parse_frame(&encode_frame(1, 1, &vec![0xfc; 2000]), 1275),
            Err(Reject::TooLarge(..))
        ));
        let ten_ms = packet(10.0, opus::Channels::Mono);
        assert!(matches!(
            parse_frame(&encode_frame(1, 1, &ten_ms), 1275),
            Err(Reject::WrongFormat(_))
        ));
        let stereo = packet(20.0, opus::Channels::Stereo);
        let r = parse_frame(&encode_frame(1, 1, &stereo), 1275).unwrap_err();
        assert_eq!(r.close_code(), close::WRONG_FORMAT);
        assert!(r.reason().contains("stereo"), "{}", r.reason());
    }

    #[test]
    fn timestamps_must_step_in_whole_48k_frames() {
        assert!(check_timestamp_step(0, 960).is_ok());
        assert!(check_timestamp_step(u32::MAX - 100, 859).is_ok()); // wraps
        assert!(check_timestamp_step(1920, 960).is_ok()); // reordered
        assert!(check_timestamp_step(0, 960 * 50).is_ok()); // a pause
        assert!(check_timestamp_step(0, 320).is_err()); // 16 kHz
        assert!(check_timestamp_step(0, 882).is_err()); // 44.1 kHz
    }
}
