//! A per-talker adaptive, bounded jitter buffer.
//!
//! Packets are placed in slots by timestamp relative to the playout position, so
//! reordering and duplicates fall out of the slotting, wrap-around is handled by wrapping
//! differences, and a sender that stops sending for a while (DTX, push-to-talk) resumes at
//! the right place without being mistaken for a loss. The sequence number is used only to
//! tell a loss (a sequence number is missing) from a pause (none is).
//!
//! The playout delay adapts to the measured jitter. For each packet the buffer computes its
//! transit time (arrival minus the sender's timestamp, on an unknown common offset) and how
//! much later it was than the quickest packet of the last two seconds: the delay that
//! packet needed. A peak-following EWMA of that (rises at once, decays over some seconds)
//! becomes the target delay in frames, clamped to 1..=max. The buffer steers the average
//! number of packets it holds at each tick towards the target: it waits one tick (a
//! concealed frame, preferably at an underrun where one is needed anyway) when the delay
//! is too short, and skips a frame when it is clearly too long.
//!
//! The RFC 3550 interarrival jitter (an EWMA of the deviation between arrival spacing and
//! timestamp spacing) is also kept, for reporting. It is not used for the target because
//! it compares neighbours: packets swapped in pairs read as twice the delay they need,
//! while a slow drift of a whole burst reads as none.
//!
//! Memory is bounded: at most `capacity_frames` slots of the timeline are held, and a
//! packet beyond them pushes the oldest out.

use super::FRAME_MICROS;
use std::collections::VecDeque;

/// Timestamp units (48 kHz samples) per 20 ms frame.
const FRAME_TS: u32 = 960;
/// Microseconds per timestamp unit, as a float for the jitter arithmetic.
const MICROS_PER_TS: f64 = FRAME_MICROS as f64 / FRAME_TS as f64;
/// Weight of a new sample in the jitter and buffer-level averages: 1/16 as in RFC 3550, which
/// settles in about 16 packets (a third of a second) and smooths single outliers.
const EWMA_GAIN: f32 = 1.0 / 16.0;
/// Weight of a new sample when the needed delay falls: slower than it rises (at once), so
/// the delay covers the late tail of the jitter rather than its average, and one quiet
/// second does not throw away what a jittery path taught.
const NEED_DECAY: f32 = 1.0 / 256.0;
/// Packets per block of the sliding minimum of transit times; the window is
/// `TRANSIT_BLOCKS` blocks (about two seconds at one packet per 20 ms).
const TRANSIT_BLOCK: u32 = 25;
/// Blocks in the sliding minimum of transit times.
const TRANSIT_BLOCKS: usize = 4;
/// Needed delay below this fraction of a frame adds no frame of delay: without it any
/// measurable jitter, even a few hundred microseconds, would cost 20 ms.
const JITTER_DEADZONE: f32 = 0.25;
/// A frame is skipped only when the average level is this many frames above the target,
/// so the buffer does not oscillate between skipping and waiting.
const SKIP_MARGIN: f32 = 1.5;
/// A frame is waited for while one is due only when the level is this far below the
/// target; smaller shortfalls wait for an underrun, where the concealment is free.
const STALL_MARGIN: f32 = 1.0;
/// An underrun waits for its packet (rather than concealing and moving on) only when the
/// level is this far below the target, so a plain loss at the target delay stays one
/// concealed frame.
const UNDERRUN_STALL_MARGIN: f32 = 0.5;
/// Ticks between two skips when the level is one frame too high; fewer when it is more,
/// so a burst drains quickly while a small excess drains gently.
const SKIP_COOLDOWN: u32 = 25;
/// Ticks between two waits.
const STALL_COOLDOWN: u32 = 4;
/// A packet whose sequence number is at most this far behind the last played one is a
/// stale copy, even if its timestamp is far off; beyond it the sender probably restarted.
const STALE_SEQ_WINDOW: u16 = 64;

/// What to play for one talker at one 20 ms tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Playout {
    /// The packet due now; decode it normally.
    Frame(Vec<u8>),
    /// The packet due now is missing (lost, late, or the buffer is waiting to grow its
    /// delay). Conceal it: if `next` is the following packet, decode it with Opus in-band
    /// FEC to recover this frame (it stays buffered and comes as `Frame` next tick);
    /// otherwise decode with no packet (Opus PLC).
    Lost {
        /// The immediately following packet, when it has already arrived.
        next: Option<Vec<u8>>,
    },
    /// The talker is not sending: nothing to decode or mix this tick.
    Idle,
}

/// Tuning of a [`JitterBuffer`]. Out-of-range values are clamped by [`JitterBuffer::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JitterConfig {
    /// Largest playout delay the buffer adapts to, in frames (1..=50; default 6 = 120 ms).
    pub max_delay_frames: u32,
    /// Slots of the timeline held at once, in frames; a packet further ahead pushes the
    /// oldest out (at least `max_delay_frames + 2`, at most 100; default 16 = 320 ms).
    pub capacity_frames: u32,
    /// Ticks of concealment after the last packet before the talker counts as not sending
    /// (default 5 = 100 ms, about as long as Opus PLC sounds natural).
    pub conceal_frames: u32,
    /// Ticks without any packet after which the buffer forgets the talker's timeline and
    /// the next packet starts afresh (`capacity_frames`..=3000; default 50 = 1 s).
    pub reset_after_frames: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            max_delay_frames: 6,
            capacity_frames: 16,
            conceal_frames: 5,
            reset_after_frames: 50,
        }
    }
}

impl JitterConfig {
    /// The configuration with every field in range.
    fn clamped(&self) -> JitterConfig {
        let max_delay_frames = self.max_delay_frames.clamp(1, 50);
        let capacity_frames = self.capacity_frames.clamp(max_delay_frames + 2, 100);
        JitterConfig {
            max_delay_frames,
            capacity_frames,
            conceal_frames: self.conceal_frames.min(capacity_frames),
            reset_after_frames: self.reset_after_frames.clamp(capacity_frames, 3000),
        }
    }
}

/// Counters of what a [`JitterBuffer`] did, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets pushed.
    pub received: u64,
    /// Packets played as [`Playout::Frame`].
    pub played: u64,
    /// Packets dropped because their slot already held one.
    pub duplicates: u64,
    /// Packets dropped because their playout time had passed.
    pub late: u64,
    /// Packets dropped to keep the buffer within its capacity.
    pub overflow: u64,
    /// Ticks answered with [`Playout::Lost`].
    pub concealed: u64,
    /// Frames skipped to shorten the delay.
    pub skipped: u64,
    /// Ticks waited (answered `Lost` without advancing) to lengthen the delay.
    pub stalls: u64,
    /// Times the timeline was forgotten (long silence or a sender restart).
    pub resets: u64,
    /// Times the timeline restarted at a late packet because the path got slower.
    pub restarts: u64,
}

/// A buffered packet; its timestamp is implied by its slot.
#[derive(Debug)]
struct Packet {
    seq: u16,
    payload: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No timeline: the next packet starts one.
    Empty,
    /// Packets are collecting until the target delay is buffered or has elapsed.
    Buffering { ticks: u32 },
    /// One slot is played per tick.
    Playing,
}

/// The jitter buffer of one talker. Call [`push`](Self::push) for every packet received and
/// [`pop`](Self::pop) exactly once per 20 ms mixer tick.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    /// `slots[i]` holds the packet with timestamp `base_ts + i·960`, if it has arrived.
    slots: VecDeque<Option<Packet>>,
    /// Timestamp of `slots[0]`: while playing, the frame the next pop plays.
    base_ts: u32,
    state: State,
    /// Sequence number of the last packet played, to tell a pause from a loss.
    last_seq: Option<u16>,
    /// Bit i set: sequence number `last_seq - i` was played. Tells a copy of a played
    /// packet (no news about the network) from a packet that really came too late.
    played: u64,
    /// Pops since the last packet arrived.
    quiet_ticks: u32,
    /// Consecutive pops that found the buffer empty.
    underruns: u32,
    /// Late packets dropped in a row.
    late_run: u32,
    /// Arrival time and timestamp of the previous packet, for the jitter estimate.
    previous: Option<(u64, u32)>,
    /// RFC 3550 interarrival jitter, microseconds (reported, not steered by).
    jitter_us: f32,
    /// The sender's timestamp of the previous packet, unwrapped (48 kHz units).
    sender_ts: i64,
    /// Minimum transit time of each completed block, and of the block being filled, µs.
    transit_blocks: [f64; TRANSIT_BLOCKS],
    next_block: usize,
    block_min: f64,
    block_packets: u32,
    /// Peak-following average of how much later than the quickest packet packets arrive:
    /// the delay the path needs, microseconds.
    need_us: f32,
    /// Average number of packets held at a tick, the one due included: the delay in frames.
    mean_level: f32,
    /// Ticks before the delay may be adjusted again.
    cooldown: u32,
    stats: JitterStats,
}

impl Default for JitterBuffer {
    fn default() -> Self {
        JitterBuffer::new(JitterConfig::default())
    }
}

impl JitterBuffer {
    /// An empty buffer with `config` (clamped to sane ranges).
    pub fn new(config: JitterConfig) -> Self {
        let config = config.clamped();
        JitterBuffer {
            // Reserved up front so steady playout never reallocates.
            slots: VecDeque::with_capacity(config.capacity_frames as usize),
            config,
            base_ts: 0,
            state: State::Empty,
            last_seq: None,
            played: 0,
            quiet_ticks: 0,
            underruns: 0,
            late_run: 0,
            previous: None,
            jitter_us: 0.0,
            sender_ts: 0,
            transit_blocks: [f64::MAX; TRANSIT_BLOCKS],
            next_block: 0,
            block_min: f64::MAX,
            block_packets: 0,
            need_us: 0.0,
            mean_level: 0.0,
            cooldown: 0,
            stats: JitterStats::default(),
        }
    }

    /// Accepts one packet: `seq` (+1 per packet, wrapping), `timestamp` (48 kHz index of the
    /// frame's first sample, +960 per frame, wrapping), the Opus `payload`, and its
    /// `arrival` time in microseconds on any monotonic clock. Late packets and duplicates
    /// are dropped; nothing here fails or panics, whatever the values.
    pub fn push(&mut self, seq: u16, timestamp: u32, payload: Vec<u8>, arrival: u64) {
        self.stats.received = self.stats.received.saturating_add(1);
        self.quiet_ticks = 0;
        let long_silence = self.previous.is_some_and(|(previous, _)| {
            arrival.saturating_sub(previous) > self.reset_after_micros()
        });
        if long_silence && self.state != State::Empty {
            // The sender's clock may have moved relative to ours during the silence; a
            // fresh start re-centres the delay instead of inheriting a stale timeline.
            self.reset();
        }
        if self.state == State::Empty {
            self.measure_jitter(timestamp, arrival);
            self.start(seq, timestamp, payload);
            return;
        }
        let slot = self.slot_of(timestamp);
        if slot.unsigned_abs() > u64::from(self.config.reset_after_frames) {
            if self.is_stale(seq) {
                self.stats.late = self.stats.late.saturating_add(1);
            } else {
                // Far from the timeline and not an old copy: the sender restarted.
                self.reset();
                self.previous = None;
                self.measure_jitter(timestamp, arrival);
                self.start(seq, timestamp, payload);
            }
            return;
        }
        // A copy of a packet already held or played says nothing about the network's timing.
        let held = slot >= 0 && matches!(self.slots.get(slot as usize), Some(Some(_)));
        if held || (slot < 0 && self.was_played(seq)) {
            self.stats.duplicates = self.stats.duplicates.saturating_add(1);
            return;
        }
        self.measure_jitter(timestamp, arrival);
        let capacity = i64::from(self.config.capacity_frames);
        let mut slot = slot;
        if slot < 0 {
            let room = capacity - self.slots.len() as i64;
            if matches!(self.state, State::Buffering { .. }) && -slot <= room {
                // Reordered before the first packet while still buffering: extend the
                // timeline backwards.
                for _ in 0..-slot {
                    self.slots.push_front(None);
                }
                self.base_ts = self
                    .base_ts
                    .wrapping_sub(FRAME_TS.wrapping_mul(-slot as u32));
                slot = 0;
            } else {
                self.stats.late = self.stats.late.saturating_add(1);
                self.late_run = self.late_run.saturating_add(1);
                // Late packets while nothing is held: the path got slower for good (a
                // latency step, a sender clock running slow). Dropping every packet from
                // now on would silence the talker while they keep talking; restart the
                // timeline at this packet instead, which adds the delay they now need.
                if self.is_empty() && (self.underruns > 0 || self.late_run >= 2) {
                    self.stats.restarts = self.stats.restarts.saturating_add(1);
                    self.start(seq, timestamp, payload);
                }
                return;
            }
        }
        self.late_run = 0;
        if slot >= capacity {
            // Too far ahead to hold: drop the oldest slots to make room (a burst, or a
            // sender running ahead of us).
            let excess = slot - capacity + 1;
            for _ in 0..excess {
                self.advance(true);
            }
            slot -= excess;
            if matches!(self.state, State::Buffering { .. }) {
                // The timeline starts at the oldest packet held, or at this one if none is.
                self.trim_front();
                if self.slots.is_empty() {
                    self.base_ts = timestamp;
                }
                slot = self.slot_of(timestamp);
            }
        }
        let index = slot as usize;
        while self.slots.len() <= index {
            self.slots.push_back(None);
        }
        match self.slots.get_mut(index) {
            Some(entry @ None) => *entry = Some(Packet { seq, payload }),
            _ => self.stats.duplicates = self.stats.duplicates.saturating_add(1),
        }
    }

    /// What to play at this tick; call exactly once per 20 ms.
    pub fn pop(&mut self) -> Playout {
        self.quiet_ticks = self.quiet_ticks.saturating_add(1);
        match self.state {
            State::Empty => Playout::Idle,
            _ if self.quiet_ticks > self.config.reset_after_frames => {
                self.reset();
                Playout::Idle
            }
            State::Buffering { ticks } => {
                let ticks = ticks.saturating_add(1);
                let target = self.target_frames();
                // Start once the target delay is buffered, or has elapsed, so a short
                // burst (or a lone packet) still plays.
                if self.slots.len() as u32 >= target || ticks >= target {
                    self.state = State::Playing;
                    // As if the level had been what it is now all along.
                    self.mean_level = self.len() as f32;
                    self.cooldown = 0;
                    self.underruns = 0;
                    self.play()
                } else {
                    self.state = State::Buffering { ticks };
                    Playout::Idle
                }
            }
            State::Playing => self.play(),
        }
    }

    /// The playout delay the buffer is steering towards, in frames (1..=max).
    pub fn target_frames(&self) -> u32 {
        let frames = (self.need_us / FRAME_MICROS as f32 - JITTER_DEADZONE).ceil();
        // The float-to-int cast saturates, so a huge estimate cannot overflow.
        (frames.max(0.0) as u32)
            .saturating_add(1)
            .clamp(1, self.config.max_delay_frames)
    }

    /// The measured interarrival jitter (RFC 3550 §6.4.1), milliseconds.
    pub fn jitter_ms(&self) -> f32 {
        self.jitter_us / 1000.0
    }

    /// The extra delay the path currently needs (how much later than the quickest packets
    /// the late ones arrive), milliseconds; [`target_frames`](Self::target_frames) is
    /// derived from it.
    pub fn needed_delay_ms(&self) -> f32 {
        self.need_us / 1000.0
    }

    /// The current playout delay the buffer adds, in frames: the average number of packets
    /// held at a tick, the one due included (0 when not playing).
    pub fn delay_frames(&self) -> f32 {
        if self.state == State::Playing {
            self.mean_level.max(0.0)
        } else {
            0.0
        }
    }

    /// Packets currently held.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Whether no packet is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of payload currently held.
    pub fn buffered_bytes(&self) -> usize {
        self.slots.iter().flatten().map(|p| p.payload.len()).sum()
    }

    /// What the buffer has done so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Plays the due slot, adjusting the delay first when it is off target.
    fn play(&mut self) -> Playout {
        self.cooldown = self.cooldown.saturating_sub(1);
        let target = self.target_frames() as f32;
        let level = self.len() as f32;
        // The second and later empty ticks in a row are a pause in sending, not a measure
        // of the network: they would drag the level down for no reason.
        if level > 0.0 || self.underruns == 0 {
            self.mean_level += (level - self.mean_level) * EWMA_GAIN;
        }
        let next_present = matches!(self.slots.get(1), Some(Some(_)));
        let excess = self.mean_level - target;
        if self.cooldown == 0 && excess > SKIP_MARGIN && level > target + 1.0 && next_present {
            // Too much delay: drop the due slot (a frame, or a hole that then needs no
            // concealment) and play the next one now.
            if let Some(Some(_)) = self.slots.front() {
                self.stats.skipped = self.stats.skipped.saturating_add(1);
            }
            self.advance(false);
            self.mean_level -= 1.0;
            self.cooldown = ((SKIP_COOLDOWN as f32 / excess) as u32).max(2);
        }
        if let Some(Some(_)) = self.slots.front() {
            self.underruns = 0;
            if self.cooldown == 0 && self.mean_level < target - STALL_MARGIN && level < target {
                // Far too little delay: conceal one frame and play this one next tick.
                return self.stall();
            }
            return match self.slots.pop_front().flatten() {
                Some(packet) => {
                    self.base_ts = self.base_ts.wrapping_add(FRAME_TS);
                    self.mark_played(packet.seq);
                    self.stats.played = self.stats.played.saturating_add(1);
                    Playout::Frame(packet.payload)
                }
                None => Playout::Idle,
            };
        }
        // The due frame is missing.
        let first_later = self.slots.iter().skip(1).flatten().next().map(|p| p.seq);
        if let Some(later_seq) = first_later {
            self.underruns = 0;
            // No sequence number is missing between the last frame played and the next
            // one buffered: the sender skipped this frame on purpose (DTX).
            let paused = self.last_seq.map(|s| s.wrapping_add(1)) == Some(later_seq);
            let next = match self.slots.get(1) {
                Some(Some(p)) if !paused => Some(p.payload.clone()),
                _ => None,
            };
            self.advance(false);
            if paused {
                return Playout::Idle;
            }
            return self.conceal(next);
        }
        // Nothing buffered: the packet is late, lost, or the talker stopped.
        self.underruns = self.underruns.saturating_add(1);
        if self.underruns > self.config.conceal_frames {
            // Keep the timeline running so packets after a pause land in the right slot.
            self.advance(false);
            return Playout::Idle;
        }
        if self.underruns == 1
            && self.cooldown == 0
            && self.mean_level < target - UNDERRUN_STALL_MARGIN
        {
            // An underrun with too little delay is most likely a late packet: wait for
            // it here, where the frame is concealed anyway, instead of dropping it.
            return self.stall();
        }
        self.advance(false);
        self.conceal(None)
    }

    /// Answers `Lost` without advancing, lengthening the delay by one frame.
    fn stall(&mut self) -> Playout {
        self.stats.stalls = self.stats.stalls.saturating_add(1);
        self.mean_level += 1.0;
        self.cooldown = STALL_COOLDOWN;
        self.conceal(None)
    }

    fn conceal(&mut self, next: Option<Vec<u8>>) -> Playout {
        self.stats.concealed = self.stats.concealed.saturating_add(1);
        Playout::Lost { next }
    }

    /// Moves the timeline one frame on, dropping the due slot.
    fn advance(&mut self, overflow: bool) {
        if let Some(Some(_)) = self.slots.pop_front() {
            if overflow {
                self.stats.overflow = self.stats.overflow.saturating_add(1);
            }
        }
        self.base_ts = self.base_ts.wrapping_add(FRAME_TS);
    }

    /// While buffering, the timeline starts at the oldest packet held.
    fn trim_front(&mut self) {
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base_ts = self.base_ts.wrapping_add(FRAME_TS);
        }
    }

    /// Starts a timeline with this packet.
    fn start(&mut self, seq: u16, timestamp: u32, payload: Vec<u8>) {
        self.slots.clear();
        self.slots.push_back(Some(Packet { seq, payload }));
        self.base_ts = timestamp;
        self.state = State::Buffering { ticks: 0 };
        self.underruns = 0;
        self.late_run = 0;
    }

    /// Forgets the timeline; the jitter estimate is kept, since it describes the path.
    fn reset(&mut self) {
        self.slots.clear();
        self.state = State::Empty;
        self.last_seq = None;
        self.played = 0;
        self.underruns = 0;
        self.mean_level = 0.0;
        self.cooldown = 0;
        self.stats.resets = self.stats.resets.saturating_add(1);
    }

    /// The slot of `timestamp` relative to `base_ts`, rounding timestamps that are off the
    /// 960 grid to the nearest frame.
    fn slot_of(&self, timestamp: u32) -> i64 {
        let lead = i64::from(timestamp.wrapping_sub(self.base_ts) as i32);
        (lead + i64::from(FRAME_TS / 2)).div_euclid(i64::from(FRAME_TS))
    }

    /// Records `seq` as played.
    fn mark_played(&mut self, seq: u16) {
        let shift = match self.last_seq {
            Some(last) => seq.wrapping_sub(last) as i16,
            None => i16::MAX,
        };
        self.played = match shift {
            1..=63 => (self.played << shift) | 1,
            // At or behind the last one (cannot happen, but stay defined): note it in place.
            i16::MIN..=0 => {
                self.played
                    | 1u64
                        .checked_shl(u32::from(shift.unsigned_abs()))
                        .unwrap_or(0)
            }
            _ => 1,
        };
        if shift > 0 {
            self.last_seq = Some(seq);
        }
    }

    /// Whether `seq` is a packet already played.
    fn was_played(&self, seq: u16) -> bool {
        self.last_seq.is_some_and(|last| {
            let back = u32::from(last.wrapping_sub(seq));
            back < 64 && self.played & (1u64 << back) != 0
        })
    }

    /// Whether `seq` is at or a little behind the last played sequence number.
    fn is_stale(&self, seq: u16) -> bool {
        self.last_seq
            .is_some_and(|last| last.wrapping_sub(seq) < STALE_SEQ_WINDOW)
    }

    /// Microseconds without packets after which the timeline is forgotten.
    fn reset_after_micros(&self) -> u64 {
        u64::from(self.config.reset_after_frames) * FRAME_MICROS
    }

    /// Updates the jitter measures with a packet that is not a duplicate.
    fn measure_jitter(&mut self, timestamp: u32, arrival: u64) {
        let previous = self.previous.replace((arrival, timestamp));
        let mut continuous = false;
        if let Some((prev_arrival, prev_ts)) = previous {
            let spacing = arrival as f64 - prev_arrival as f64;
            let ts_step = timestamp.wrapping_sub(prev_ts) as i32;
            let deviation = (spacing - f64::from(ts_step) * MICROS_PER_TS).abs();
            // A deviation as long as a reset is a restart or a pause, not network jitter;
            // so is a silence that long even when the timestamps followed the clock
            // through it (push-to-talk, a capture restart): the sender may come back on
            // another sub-frame phase, which is not network delay.
            let limit = self.reset_after_micros() as f64;
            if deviation.is_finite() && deviation < limit && spacing < limit {
                self.jitter_us += (deviation as f32 - self.jitter_us) * EWMA_GAIN;
                self.sender_ts = self.sender_ts.wrapping_add(i64::from(ts_step));
                continuous = true;
            }
        }
        if !continuous {
            // A new sender clock: transit times from before are on another offset.
            self.sender_ts = 0;
            self.transit_blocks = [f64::MAX; TRANSIT_BLOCKS];
            self.block_min = f64::MAX;
            self.block_packets = 0;
        }
        let transit = arrival as f64 - self.sender_ts as f64 * MICROS_PER_TS;
        self.block_min = self.block_min.min(transit);
        let quickest = self
            .transit_blocks
            .iter()
            .copied()
            .fold(self.block_min, f64::min);
        self.block_packets += 1;
        if self.block_packets >= TRANSIT_BLOCK {
            if let Some(block) = self.transit_blocks.get_mut(self.next_block) {
                *block = self.block_min;
            }
            self.next_block = (self.next_block + 1) % TRANSIT_BLOCKS;
            self.block_min = f64::MAX;
            self.block_packets = 0;
        }
        let late_by = (transit - quickest).clamp(0.0, self.reset_after_micros() as f64) as f32;
        if late_by > self.need_us {
            self.need_us = late_by;
        } else {
            self.need_us += (late_by - self.need_us) * NEED_DECAY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic PRNG (xorshift64*), so tests need no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        /// Uniform in [lo, hi].
        fn range(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (self.next() % (hi - lo + 1) as u64) as i64
        }
    }

    fn payload(k: u32) -> Vec<u8> {
        k.to_be_bytes().to_vec()
    }

    fn frame_no(p: &[u8]) -> u32 {
        u32::from_be_bytes([p[0], p[1], p[2], p[3]])
    }

    /// What one tick played, reduced to the frame number for comparisons.
    #[derive(Debug, PartialEq, Eq, Clone, Copy)]
    enum Out {
        F(u32),
        L,
        I,
    }

    fn out(p: Playout) -> Out {
        match p {
            Playout::Frame(p) => Out::F(frame_no(&p)),
            Playout::Lost { .. } => Out::L,
            Playout::Idle => Out::I,
        }
    }

    /// Pushes frame `k` of a sender whose sequence and timestamp start at the given values.
    fn push_k(jb: &mut JitterBuffer, k: u32, seq0: u16, ts0: u32, arrival: u64) {
        jb.push(
            seq0.wrapping_add(k as u16),
            ts0.wrapping_add(k.wrapping_mul(FRAME_TS)),
            payload(k),
            arrival,
        );
    }

    /// Runs a sender of `frames` frames through a buffer with one pop per tick, frame `k`
    /// arriving at `arrival(k)` µs (None = lost) and pops at `k·20 ms + phase`.
    fn simulate(
        frames: u32,
        phase: u64,
        seq0: u16,
        ts0: u32,
        arrival: impl Fn(u32) -> Option<u64>,
    ) -> (Vec<Out>, JitterBuffer) {
        let mut jb = JitterBuffer::default();
        let mut arrivals: Vec<(u64, u32)> = (0..frames)
            .filter_map(|k| arrival(k).map(|t| (t, k)))
            .collect();
        arrivals.sort();
        let mut outs = Vec::new();
        let mut next = 0;
        let end = arrivals.last().map_or(0, |a| a.0) + 10 * FRAME_MICROS;
        let mut tick = 0u64;
        loop {
            let now = tick * FRAME_MICROS + phase;
            if now > end {
                break;
            }
            while next < arrivals.len() && arrivals[next].0 <= now {
                let (t, k) = arrivals[next];
                push_k(&mut jb, k, seq0, ts0, t);
                next += 1;
            }
            outs.push(out(jb.pop()));
            tick += 1;
        }
        (outs, jb)
    }

    /// The played sequence with leading idles removed.
    fn trimmed(outs: &[Out]) -> &[Out] {
        let start = outs.iter().position(|o| *o != Out::I).unwrap_or(outs.len());
        &outs[start..]
    }

    #[test]
    fn in_order_plays_every_frame_in_order() {
        let (outs, jb) = simulate(100, 5_000, 7, 1234, |k| Some(u64::from(k) * FRAME_MICROS));
        let played: Vec<u32> = outs
            .iter()
            .filter_map(|o| match o {
                Out::F(k) => Some(*k),
                _ => None,
            })
            .collect();
        assert_eq!(played, (0..100).collect::<Vec<_>>());
        // Frames are contiguous: no concealment between the first and the last.
        let body = trimmed(&outs);
        assert!(
            body[..100].iter().all(|o| matches!(o, Out::F(_))),
            "{body:?}"
        );
        assert_eq!(jb.target_frames(), 1);
        // After the last frame: a few concealed frames (PLC fading out), then idle.
        assert_eq!(&body[100..105], [Out::L; 5]);
        assert!(body[105..].iter().all(|o| *o == Out::I));
        assert_eq!(jb.stats().concealed, 5);
    }

    #[test]
    fn reordering_within_the_window_is_undone() {
        // Pairs swapped from the start: 1,0,3,2,… each one tick early or late. The first
        // packets teach the buffer that it needs some delay; from then on every frame plays
        // in order.
        let (outs, jb) = simulate(400, 10_000, 0, 0, |k| {
            let swapped = if k % 2 == 0 { k + 1 } else { k - 1 };
            Some(u64::from(swapped) * FRAME_MICROS)
        });
        let body = trimmed(&outs);
        let start = body
            .iter()
            .position(|o| *o == Out::F(50))
            .unwrap_or(body.len());
        let expected: Vec<Out> = (50..398).map(Out::F).collect();
        assert_eq!(&body[start..start + expected.len()], expected.as_slice());
        assert!(jb.target_frames() >= 2);
    }

    #[test]
    fn reordering_inside_the_buffer_fills_the_slot() {
        let mut jb = JitterBuffer::default();
        // Frames 0 and 2 arrive first (2 is 21 ms early); 1 arrives 5 ms late, still before
        // it is due, and plays in place.
        push_k(&mut jb, 0, 0, 0, 0);
        push_k(&mut jb, 2, 0, 0, 19_000);
        assert_eq!(out(jb.pop()), Out::F(0));
        push_k(&mut jb, 1, 0, 0, 25_000);
        assert_eq!(out(jb.pop()), Out::F(1));
        // The buffer may wait a tick to grow its delay (it just saw 26 ms of jitter), but
        // drops nothing.
        let next: Vec<Out> = (0..2).map(|_| out(jb.pop())).collect();
        assert!(
            next == [Out::F(2), Out::L] || next == [Out::L, Out::F(2)],
            "{next:?}"
        );
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn duplicates_are_ignored() {
        let mut jb = JitterBuffer::default();
        let mut outs = Vec::new();
        for k in 0..20u32 {
            let t = u64::from(k) * FRAME_MICROS;
            push_k(&mut jb, k, 0, 0, t);
            push_k(&mut jb, k, 0, 0, t + 100);
            if k > 0 {
                // A copy of one already played is dropped too.
                push_k(&mut jb, k - 1, 0, 0, t + 200);
            }
            outs.push(out(jb.pop()));
        }
        assert_eq!(outs, (0..20).map(Out::F).collect::<Vec<_>>());
        let stats = jb.stats();
        assert_eq!(stats.duplicates, 39);
        assert_eq!(stats.late, 0);
        assert_eq!(stats.played, 20);
    }

    #[test]
    fn ten_percent_loss_is_lost_exactly_where_missing() {
        let mut rng = Rng(0x5eed);
        let lost: Vec<bool> = (0..500).map(|k| k > 0 && rng.range(0, 9) == 0).collect();
        let (outs, jb) = simulate(500, 10_000, 0, 0, |k| {
            (!lost[k as usize]).then_some(u64::from(k) * FRAME_MICROS)
        });
        let body = trimmed(&outs);
        // Count runs to check the seed exercises consecutive losses but none longer than
        // the concealment limit.
        assert!(lost.windows(2).any(|w| w[0] && w[1]));
        for (k, o) in body[..500].iter().enumerate() {
            let expected = if lost[k] { Out::L } else { Out::F(k as u32) };
            assert_eq!(*o, expected, "frame {k}");
        }
        let n_lost = lost.iter().filter(|&&l| l).count() as u64;
        // The five more are the fade-out after the stream ends.
        assert_eq!(jb.stats().concealed, n_lost + 5);
        assert_eq!(jb.stats().stalls, 0);
        assert!((30..=70).contains(&n_lost));
    }

    #[test]
    fn lost_carries_the_next_packet_for_fec() {
        let mut jb = JitterBuffer::default();
        // One frame of margin: frame 2 is lost, frame 3 is already buffered when 2 is due.
        push_k(&mut jb, 0, 0, 0, 0);
        push_k(&mut jb, 1, 0, 0, 20_000);
        assert_eq!(jb.pop(), Playout::Frame(payload(0)));
        push_k(&mut jb, 3, 0, 0, 60_000);
        assert_eq!(jb.pop(), Playout::Frame(payload(1)));
        assert_eq!(
            jb.pop(),
            Playout::Lost {
                next: Some(payload(3))
            }
        );
        assert_eq!(jb.pop(), Playout::Frame(payload(3)));
    }

    /// Longest run of consecutive `Lost` in `outs`.
    fn longest_gap(outs: &[Out]) -> usize {
        let mut best = 0;
        let mut run = 0;
        for o in outs {
            if *o == Out::L {
                run += 1;
                best = best.max(run);
            } else {
                run = 0;
            }
        }
        best
    }

    #[test]
    fn thirty_ms_jitter_never_gaps_more_than_a_frame_once_adapted() {
        for seed in 1..=8u64 {
            let mut rng = Rng(seed * 0x9e37_79b9);
            let offsets: Vec<i64> = (0..3000).map(|_| rng.range(-30_000, 30_000)).collect();
            let phase = rng.range(0, 19_999) as u64;
            let (outs, jb) = simulate(3000, phase, seed as u16, seed as u32, |k| {
                Some((i64::from(k) * FRAME_MICROS as i64 + 30_000 + offsets[k as usize]) as u64)
            });
            let body = trimmed(&outs);
            // Adapted after two seconds; everything sent before the end is played.
            let adapted = &body[100..2900];
            assert!(longest_gap(adapted) <= 1, "seed {seed}: {:?}", jb.stats());
            assert!(!adapted.contains(&Out::I), "seed {seed}");
            let lost = adapted.iter().filter(|o| **o == Out::L).count();
            assert!(lost <= 2, "seed {seed}: {lost} concealed, {:?}", jb.stats());
            // About the 60 ms the spread needs, not the 120 ms maximum.
            let target = jb.target_frames();
            assert!((3..=4).contains(&target), "seed {seed}: target {target}");
            assert!(
                jb.delay_frames() <= 5.0,
                "seed {seed}: {}",
                jb.delay_frames()
            );
        }
    }

    #[test]
    fn loss_and_jitter_together_stay_continuous() {
        let mut rng = Rng(0xfeed);
        let arrivals: Vec<Option<u64>> = (0..3000)
            .map(|k| {
                let offset = rng.range(-30_000, 30_000);
                let lost = rng.range(0, 9) == 0;
                (!lost).then_some((k * FRAME_MICROS as i64 + 30_000 + offset) as u64)
            })
            .collect();
        let n_lost = arrivals[100..2900].iter().filter(|a| a.is_none()).count();
        let (outs, jb) = simulate(3000, 4_000, 0, 0, |k| arrivals[k as usize]);
        let body = trimmed(&outs);
        let adapted = &body[100..2900];
        // Never idle while the talker sends: every tick is a frame or a concealed frame.
        assert!(!adapted.contains(&Out::I));
        let concealed = adapted.iter().filter(|o| **o == Out::L).count();
        assert!(
            concealed <= n_lost + 3,
            "{concealed} concealed for {n_lost} lost: {:?}",
            jb.stats()
        );
    }

    #[test]
    fn small_jitter_keeps_a_small_delay() {
        let mut rng = Rng(42);
        let offsets: Vec<i64> = (0..1000).map(|_| rng.range(-2_000, 2_000)).collect();
        let (outs, jb) = simulate(1000, 3_000, 0, 0, |k| {
            Some((i64::from(k) * FRAME_MICROS as i64 + 5_000 + offsets[k as usize]) as u64)
        });
        let body = trimmed(&outs);
        assert_eq!(longest_gap(&body[50..990]), 0, "{:?}", jb.stats());
        assert!(jb.target_frames() <= 2);
        assert!(jb.delay_frames() <= 3.0, "{}", jb.delay_frames());
    }

    #[test]
    fn sequence_and_timestamp_wrap_around() {
        // Both counters wrap in the middle of the stream.
        let (outs, jb) = simulate(200, 1_000, 65_500, u32::MAX - 960 * 50, |k| {
            Some(u64::from(k) * FRAME_MICROS)
        });
        let body = trimmed(&outs);
        assert_eq!(&body[..200], (0..200).map(Out::F).collect::<Vec<_>>());
        assert_eq!(jb.stats().resets, 0);
    }

    #[test]
    fn a_pause_in_sending_is_idle_not_lost_and_resumes_in_place() {
        let mut jb = JitterBuffer::default();
        let mut outs = Vec::new();
        // Frames 0..10, then nothing for 300 ms (DTX: sequence continues, timestamp jumps),
        // then frames 25..35 with sequence numbers 10..20.
        for tick in 0..40u32 {
            let k = tick;
            if k < 10 {
                jb.push(
                    k as u16,
                    k * FRAME_TS,
                    payload(k),
                    u64::from(tick) * FRAME_MICROS,
                );
            } else if (25..35).contains(&k) {
                jb.push(
                    (k - 15) as u16,
                    k * FRAME_TS,
                    payload(k),
                    u64::from(tick) * FRAME_MICROS,
                );
            }
            outs.push(out(jb.pop()));
        }
        let mut expected: Vec<Out> = (0..10).map(Out::F).collect();
        // The end of the talk spurt is concealed for a few frames (PLC fades), then idle.
        expected.extend([Out::L; 5]);
        expected.extend([Out::I; 10]);
        expected.extend((25..35).map(Out::F));
        expected.extend([Out::L; 5]);
        assert_eq!(outs, expected);
        assert_eq!(jb.stats().resets, 0);
    }

    #[test]
    fn a_gap_in_timestamps_with_contiguous_sequence_is_idle() {
        let mut jb = JitterBuffer::default();
        jb.push(1, 0, payload(0), 0);
        jb.push(2, 3 * FRAME_TS, payload(3), 1);
        assert_eq!(out(jb.pop()), Out::F(0));
        assert_eq!(out(jb.pop()), Out::I);
        assert_eq!(out(jb.pop()), Out::I);
        assert_eq!(out(jb.pop()), Out::F(3));
    }

    #[test]
    fn late_packets_are_dropped() {
        let mut jb = JitterBuffer::default();
        push_k(&mut jb, 0, 0, 0, 0);
        assert_eq!(out(jb.pop()), Out::F(0));
        // Frame 1 is missing at its tick…
        assert_eq!(out(jb.pop()), Out::L);
        push_k(&mut jb, 2, 0, 0, 40_000);
        // …arrives after it was concealed, and is not played.
        push_k(&mut jb, 1, 0, 0, 41_000);
        assert_eq!(jb.stats().late, 1);
        // The buffer learns it needs more delay (it may wait a tick), then plays frame 2.
        let next: Vec<Out> = (0..3).map(|_| out(jb.pop())).collect();
        assert!(!next.contains(&Out::F(1)), "{next:?}");
        assert!(next.contains(&Out::F(2)), "{next:?}");
        assert!(jb.target_frames() >= 2);
    }

    #[test]
    fn a_long_silence_resets_the_timeline() {
        let mut jb = JitterBuffer::default();
        for k in 0..10u32 {
            push_k(&mut jb, k, 0, 0, u64::from(k) * FRAME_MICROS);
            jb.pop();
        }
        for _ in 0..60 {
            jb.pop();
        }
        assert_eq!(jb.stats().resets, 1);
        // The sender restarts with unrelated counters; playout starts afresh.
        jb.push(40_000, 7, payload(99), 2_000_000);
        assert_eq!(out(jb.pop()), Out::F(99));
    }

    #[test]
    fn a_restarted_sender_is_followed_without_waiting() {
        let mut jb = JitterBuffer::default();
        for k in 0..10u32 {
            push_k(&mut jb, k, 0, 0, u64::from(k) * FRAME_MICROS);
            jb.pop();
        }
        // Same clock, new random counters: a jump far outside the timeline.
        for k in 0..10u32 {
            push_k(
                &mut jb,
                k,
                9_000,
                77_777_777,
                u64::from(10 + k) * FRAME_MICROS,
            );
            assert_eq!(out(jb.pop()), Out::F(k));
        }
        assert_eq!(jb.stats().resets, 1);
    }

    #[test]
    fn a_burst_keeps_the_newest_within_capacity() {
        let mut jb = JitterBuffer::default();
        push_k(&mut jb, 0, 0, 0, 0);
        assert_eq!(out(jb.pop()), Out::F(0));
        // A stalled network delivers 40 frames at once.
        for k in 1..=40u32 {
            push_k(&mut jb, k, 0, 0, 1_000_000);
        }
        assert!(jb.len() <= 16);
        assert_eq!(jb.stats().overflow, 40 - 16);
        // The oldest were dropped: playout continues with the newest 16, in order.
        let first = match out(jb.pop()) {
            Out::F(k) => k,
            other => panic!("{other:?}"),
        };
        assert_eq!(first, 25);
        // The flow resumes; everything plays in order, and frames are skipped until the delay
        // is back near the target.
        let mut played = vec![first];
        for k in 41..300u32 {
            push_k(
                &mut jb,
                k,
                0,
                0,
                1_000_000 + u64::from(k - 40) * FRAME_MICROS,
            );
            if let Out::F(k) = out(jb.pop()) {
                played.push(k);
            }
        }
        assert!(played.windows(2).all(|w| w[0] < w[1]), "{played:?}");
        assert!(jb.stats().skipped > 0);
        assert!(jb.delay_frames() <= jb.target_frames() as f32 + 2.0);
        let accounted = played.len() as u64 + jb.stats().skipped + jb.len() as u64;
        assert_eq!(accounted, 300 - 25);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood() {
        let mut jb = JitterBuffer::default();
        let mut rng = Rng(7);
        for i in 0..100_000u64 {
            let seq = rng.next() as u16;
            // Mostly near the timeline, sometimes anywhere.
            let ts = if i % 3 == 0 {
                rng.next() as u32
            } else {
                (i as u32).wrapping_mul(FRAME_TS / 3)
            };
            jb.push(seq, ts, vec![0; 100], i);
            if i % 100 == 0 {
                jb.pop();
            }
            assert!(jb.len() <= 16);
            assert!(jb.slots.len() <= 16);
            assert!(jb.buffered_bytes() <= 1600);
        }
        // And an ordered flood without any pop.
        let mut jb = JitterBuffer::default();
        for k in 0..100_000u32 {
            push_k(&mut jb, k, 0, 0, u64::from(k));
            assert!(jb.slots.len() <= 16);
        }
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let mut jb = JitterBuffer::new(JitterConfig {
            max_delay_frames: 0,
            capacity_frames: 0,
            conceal_frames: u32::MAX,
            reset_after_frames: 0,
        });
        let values = [0u32, 1, 479, 480, 481, 959, 960, u32::MAX / 2, u32::MAX];
        for (i, &ts) in values.iter().enumerate() {
            for &arrival in &[0u64, u64::MAX, 1, u64::MAX / 2] {
                jb.push(i as u16, ts, Vec::new(), arrival);
                jb.pop();
            }
        }
        let mut jb = JitterBuffer::new(JitterConfig {
            max_delay_frames: u32::MAX,
            capacity_frames: u32::MAX,
            conceal_frames: 0,
            reset_after_frames: u32::MAX,
        });
        for (i, &ts) in values.iter().enumerate() {
            jb.push(u16::MAX - i as u16, ts, vec![1], u64::MAX - i as u64);
            jb.pop();
            assert!(jb.slots.len() <= 100);
        }
        assert!(jb.target_frames() >= 1);
    }

    #[test]
    fn a_lasting_latency_step_is_absorbed_not_silenced() {
        // Steady arrivals, then from frame 100 on every packet comes 100 ms later than
        // before, and the sender never pauses.
        for phase in [0, 3_000, 9_000, 17_000] {
            let (outs, jb) = simulate(400, phase, 7, 1000, |k| {
                let step = if k >= 100 { 100_000 } else { 0 };
                Some(u64::from(k) * FRAME_MICROS + 1_000 + step)
            });
            // Well after the step the talker is heard again, frame after frame.
            let tail = &outs[outs.len() - 150..outs.len() - 20];
            let frames = tail.iter().filter(|o| matches!(o, Out::F(_))).count();
            assert!(
                frames >= tail.len() - 2,
                "phase {phase}: only {frames} of {} ticks played a frame; stats {:?}",
                tail.len(),
                jb.stats()
            );
        }
    }

    #[test]
    fn a_slow_sender_clock_does_not_silence_the_talker() {
        // The sender's clock runs 0.5% slow: packets drift later and later.
        let (outs, jb) = simulate(3000, 5_000, 1, 0, |k| {
            Some(u64::from(k) * FRAME_MICROS * 1005 / 1000 + 2_000)
        });
        let tail = &outs[outs.len() - 500..outs.len() - 20];
        let frames = tail.iter().filter(|o| matches!(o, Out::F(_))).count();
        assert!(
            frames * 100 >= tail.len() * 95,
            "only {frames} of {} ticks played; stats {:?}",
            tail.len(),
            jb.stats()
        );
    }

    #[test]
    fn a_talker_coming_back_on_another_phase_after_a_pause_gets_no_extra_delay() {
        // Two seconds of silence whose timestamps follow the clock (push-to-talk), and the
        // sender resumes 8 ms later within the frame: a new phase, not network delay.
        let (_, jb) = simulate(300, 0, 3, 0, |k| match k {
            0..100 => Some(u64::from(k) * FRAME_MICROS + 1_000),
            100..200 => None,
            _ => Some(u64::from(k) * FRAME_MICROS + 9_000),
        });
        assert_eq!(jb.target_frames(), 1, "stats {:?}", jb.stats());
    }
}
