//! Voice rooms mixed on the box (docs/design.md §6). [`jitter`], [`mixer`], [`vad`] and
//! [`tone`] are pure (no I/O, no codec, no clock); [`room`] wires them to Opus and a
//! 20 ms clock on a thread per active room; [`registry`] knows who is where; [`wire`] is
//! the frame format; [`session`] runs one voice socket. The client side is `crate::client`
//! (`VoiceConnection`, `VoicePlayer`).
//!
//! # Design
//!
//! Audio is 48 kHz mono in 20 ms frames of [`FRAME_SAMPLES`] i16 samples. Each client sends
//! one Opus packet per frame with a sequence number (+1 per packet sent) and a timestamp
//! (48 kHz sample index of the frame's first sample, +960 per frame, both wrapping), and
//! receives one Opus stream, however many people are in the room.
//!
//! - **Per-room 20 ms clock.** One thread per active room ticks every 20 ms from a fixed
//!   start instant (deadline = start + k·20 ms, not "sleep 20 ms", so it does not drift).
//!   Every tick pops one frame from every talker's jitter buffer, mixes, encodes, sends. A
//!   room with nobody in it has no thread.
//! - **Jitter buffer per talker** ([`jitter::JitterBuffer`]): packets are slotted by
//!   timestamp, so reordering, duplicates, wrap-around and pauses in sending (DTX) are
//!   handled in one place; the playout delay adapts to the measured arrival jitter between
//!   1 and 6 frames, and the buffer is bounded whatever a sender does.
//! - **Loss concealment.** The buffer reports a gap as [`jitter::Playout::Lost`]: the caller
//!   decodes the *next* packet with Opus in-band FEC when it is already buffered, and
//!   otherwise runs Opus PLC (decode with no packet). Either way the talker's decoder stays
//!   in step and the listener hears no hole. [`jitter::Playout::Idle`] means the talker is
//!   not sending: nothing is decoded or mixed for them.
//! - **Talking detection** ([`vad::Vad`]) on each decoded frame: energy against an adaptive
//!   noise floor, with attack and hangover so speaking events do not flap. A talker is
//!   mixed while `speaking() || loud()`, which keeps open microphones out of the mix and
//!   out of the cost without clipping the start of words.
//! - **Mix-minus** ([`mixer::Mixer`]): the talkers' frames are summed once in i32; each
//!   talker's own output is that sum minus their own frame, so N talkers cost N+1 buffers,
//!   not N². A smooth limiter with per-output state across ticks keeps sums inside i16
//!   without wrapping or hard clipping.
//! - **One shared encode for everyone not talking.** Listeners who are not talking all
//!   hear the same full mix, so it is encoded once and the same packet is sent to each of
//!   them; only talkers get their own encode. Cost grows with talkers, not listeners.
//!
//! [`tone`] holds the Goertzel detector and sine generator used by the tests.

pub mod jitter;
pub mod mixer;
pub mod tone;
pub mod vad;

pub use jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
pub use mixer::{Mix, Mixer};
pub use tone::{detects, sine, tone_power};
pub use vad::{Speaking, Vad, VadConfig};

/// Sample rate of all voice audio, Hz.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame at 48 kHz (mono).
pub const FRAME_SAMPLES: usize = 960;
/// Length of one frame in microseconds: the mixer's tick.
pub const FRAME_MICROS: u64 = 20_000;
/// One decoded 20 ms frame.
pub type PcmFrame = [i16; FRAME_SAMPLES];

pub mod registry;
pub mod room;
pub mod session;
pub mod wire;

pub use registry::{Voice, VoiceState, VoiceTicket};
pub use room::{MixMode, RoomCore, VoiceFlags};

/// Microseconds on a process-wide monotonic clock: packet arrival times for the jitter
/// buffers.
pub fn now_micros() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

/// The mixed streams' timestamp for "now": a process-wide 48 kHz clock from a random
/// start, in whole frames. Rooms start their timelines from it, so a listener moved to
/// another room sees timestamps move on by the time that passed.
pub fn stream_timestamp_now() -> u32 {
    static BASE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let mut bytes = [0u8; 4];
        crate::system::random_bytes(&mut bytes);
        u32::from_be_bytes(bytes)
    });
    let frames = now_micros() / FRAME_MICROS;
    base.wrapping_add((frames as u32).wrapping_mul(FRAME_SAMPLES as u32))
}
