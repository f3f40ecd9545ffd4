//! One voice room: the participants, their jitter buffers and decoders, the mixer and the
//! encoders, driven by a 20 ms clock on a thread of its own.
//!
//! [`RoomCore`] is the clock-free part: [`RoomCore::tick`] takes this tick's packets and
//! produces everyone's frame. [`spawn`] runs it on a thread that wakes at
//! `start + k·20 ms` (deadlines from a fixed start, so it does not drift), takes what the
//! websocket tasks left in the room's inbox, and ticks. The thread exits when the registry
//! stops the room (its last participant left), so an empty room costs nothing.
//!
//! Mixing runs on its own thread rather than on the async executor: a tick with several
//! talkers is a millisecond or more of Opus work, which would delay every HTTP request and
//! websocket queued behind it, and a plain thread sleeping to a deadline keeps the most
//! regular clock.

use super::jitter::{JitterBuffer, JitterConfig, Playout};
use super::mixer::Mixer;
use super::vad::{Speaking, Vad, VadConfig};
use super::wire::{self, EncoderSettings};
use super::{PcmFrame, FRAME_MICROS, FRAME_SAMPLES};
use crate::model::{Audience, Id, UserId};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Identifies one voice connection (a user may reconnect; each socket is its own).
pub type ConnId = u64;

/// What the room sends a participant's websocket task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outbound {
    /// A binary frame: header and Opus packet.
    Audio(Vec<u8>),
    /// A JSON text frame.
    Text(String),
    /// Close the socket with this code and reason.
    Close(u16, String),
}

/// A participant's mute and deafen state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VoiceFlags {
    /// Muted themselves.
    pub self_mute: bool,
    /// Deafened themselves (which also mutes).
    pub self_deaf: bool,
    /// Muted by a moderator.
    pub mute: bool,
    /// Deafened by a moderator.
    pub deaf: bool,
    /// Lacks the SPEAK permission in the channel: may listen only.
    pub suppress: bool,
}

impl VoiceFlags {
    /// Whether their audio reaches the mix.
    pub fn may_send(&self) -> bool {
        !(self.self_mute || self.self_deaf || self.mute || self.deaf || self.suppress)
    }

    /// Whether they receive the mix.
    pub fn hears(&self) -> bool {
        !(self.self_deaf || self.deaf)
    }
}

/// A change the room applies at its next tick.
#[derive(Debug)]
pub enum Command {
    /// A participant joins.
    Join {
        /// Their connection.
        conn: ConnId,
        /// Who they are.
        user: UserId,
        /// Their state.
        flags: VoiceFlags,
        /// Where their frames go.
        tx: async_channel::Sender<Outbound>,
        /// Their outgoing stream's numbering; kept by the connection, so a move to
        /// another room continues their stream.
        stream: OutStream,
    },
    /// A participant leaves (their socket closed, they moved or were disconnected).
    Leave(ConnId),
    /// A participant's state changed.
    Flags(ConnId, VoiceFlags),
    /// The room closes: the thread exits.
    Stop,
}

/// One packet from a participant, checked by their websocket task.
#[derive(Debug)]
pub struct Inbound {
    /// From whom.
    pub conn: ConnId,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// Opus packet.
    pub payload: Vec<u8>,
    /// Arrival, microseconds on [`super::now_micros`]'s clock.
    pub arrival: u64,
}

/// Counters of a room, readable while it runs.
#[derive(Debug, Default)]
pub struct RoomStats {
    /// Ticks run.
    pub ticks: AtomicU64,
    /// Ticks skipped because the thread woke far too late (the machine stalled).
    pub skipped: AtomicU64,
    /// Opus packets decoded (including FEC and PLC).
    pub decodes: AtomicU64,
    /// Opus frames encoded.
    pub encodes: AtomicU64,
    /// Frames sent to listeners.
    pub sent: AtomicU64,
    /// Frames not sent because a listener's queue was full.
    pub dropped: AtomicU64,
    /// Total time spent in ticks, microseconds.
    pub busy_micros: AtomicU64,
    /// Longest tick, microseconds.
    pub max_tick_micros: AtomicU64,
    /// Late and concealed frames, shared by every room of the server (for `/metrics`).
    pub frames: Arc<FrameCounters>,
}

/// What the jitter buffers of all rooms did, summed: one atomic add per event.
#[derive(Debug, Default)]
pub struct FrameCounters {
    /// Packets dropped because their playout time had passed.
    pub late: crate::metrics::Counter,
    /// Frames concealed (FEC or PLC) because their packet was missing at playout.
    pub concealed: crate::metrics::Counter,
}

/// What the websocket tasks share with a room's thread.
#[derive(Debug)]
pub struct RoomShared {
    /// The voice channel.
    pub channel: Id,
    /// Its guild.
    pub guild: Id,
    inbox: Mutex<Inbox>,
    members: std::sync::atomic::AtomicUsize,
    /// Counters.
    pub stats: RoomStats,
}

#[derive(Debug, Default)]
struct Inbox {
    commands: Vec<Command>,
    packets: Vec<Inbound>,
}

/// Packets held in a room's inbox between two ticks, at most, per participant slot: a
/// client bursting far beyond real time cannot grow it without bound.
const INBOX_PACKETS_PER_PARTICIPANT: usize = 16;

impl RoomShared {
    /// A room's shared half.
    pub fn new(guild: Id, channel: Id) -> RoomShared {
        RoomShared::counting_into(guild, channel, Arc::default())
    }

    /// A room's shared half whose late and concealed frames add to `frames`.
    pub fn counting_into(guild: Id, channel: Id, frames: Arc<FrameCounters>) -> RoomShared {
        RoomShared {
            channel,
            guild,
            inbox: Mutex::new(Inbox::default()),
            members: std::sync::atomic::AtomicUsize::new(0),
            stats: RoomStats {
                frames,
                ..RoomStats::default()
            },
        }
    }

    /// Queues a command for the next tick.
    pub fn command(&self, command: Command) {
        self.lock().commands.push(command);
    }

    /// Records how many participants the room has (bounds the inbox).
    pub fn set_members(&self, members: usize) {
        self.members.store(members, Ordering::Relaxed);
    }

    /// Queues a packet for the next tick; false when the inbox is full (it is dropped).
    /// Each connection has its own share, so one sender's burst cannot crowd out the
    /// others' packets.
    pub fn packet(&self, packet: Inbound) -> bool {
        let participants = self.members.load(Ordering::Relaxed).max(1);
        let mut inbox = self.lock();
        let mine = inbox
            .packets
            .iter()
            .filter(|p| p.conn == packet.conn)
            .count();
        if mine >= INBOX_PACKETS_PER_PARTICIPANT
            || inbox.packets.len() >= INBOX_PACKETS_PER_PARTICIPANT * participants
        {
            return false;
        }
        inbox.packets.push(packet);
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, commands: &mut Vec<Command>, packets: &mut Vec<Inbound>) {
        let mut inbox = self.lock();
        std::mem::swap(&mut inbox.commands, commands);
        std::mem::swap(&mut inbox.packets, packets);
    }
}

/// The numbering of one listener's stream: sequence numbers +1 per frame sent, and
/// timestamps that never go back, also when the listener is moved to a room whose clock
/// started at another moment.
#[derive(Clone, Debug)]
pub struct OutStream(Arc<Mutex<(u16, Option<u32>)>>);

impl OutStream {
    /// A stream starting at a random sequence number.
    pub fn new() -> OutStream {
        let mut start = [0u8; 2];
        crate::system::random_bytes(&mut start);
        OutStream(Arc::new(Mutex::new((u16::from_be_bytes(start), None))))
    }

    /// Numbers the next frame, stamped `timestamp` by its room: (seq, timestamp), the
    /// timestamp at least one frame after the previous one.
    pub fn next(&self, timestamp: u32) -> (u16, u32) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (seq, last) = *state;
        let stamp = match last {
            Some(last) if (timestamp.wrapping_sub(last) as i32) < wire::FRAME_TS as i32 => {
                last.wrapping_add(wire::FRAME_TS)
            }
            _ => timestamp,
        };
        *state = (seq.wrapping_add(1), Some(stamp));
        (seq, stamp)
    }
}

impl Default for OutStream {
    fn default() -> Self {
        OutStream::new()
    }
}

/// Slots at the end of every participant's queue that audio never takes, so control
/// messages (state, moved, close) always fit.
pub const CONTROL_SLOTS: usize = 8;

/// How listeners who are not talking get their audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MixMode {
    /// One encode of the full mix, the same packet sent to each of them (what Hearth does).
    Shared,
    /// One encoder per listener, each encoding its own copy (the naive design, kept for the
    /// bench's comparison).
    PerListener,
}

/// Ticks a talker's own encoder is kept after they stop talking, so a pause between two
/// sentences does not reallocate it (10 s).
const KEEP_ENCODER_TICKS: u32 = 500;

struct Participant {
    conn: ConnId,
    user: UserId,
    flags: VoiceFlags,
    tx: async_channel::Sender<Outbound>,
    jitter: JitterBuffer,
    decoder: Option<opus::Decoder>,
    vad: Vad,
    pcm: Box<PcmFrame>,
    /// Whether `pcm` holds audio for this tick, and whether it goes into the mix.
    talking: bool,
    encoder: Option<opus::Encoder>,
    ticks_since_talking: u32,
    out: OutStream,
}

/// A speaking change, reported after a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpeakingChange {
    /// Who.
    pub user: UserId,
    /// Now speaking or not.
    pub speaking: bool,
}

/// The clock-free room: participants, mixer, encoders.
pub struct RoomCore {
    participants: Vec<Participant>,
    index: HashMap<ConnId, usize>,
    mixer: Mixer<ConnId>,
    shared_encoder: Option<opus::Encoder>,
    settings: EncoderSettings,
    jitter: JitterConfig,
    mode: MixMode,
    encoded: Vec<u8>,
    out_ts_base: u32,
    speaking: Vec<SpeakingChange>,
    /// Per-listener encoders for [`MixMode::PerListener`].
    naive: HashMap<ConnId, opus::Encoder>,
    /// Most talkers mixed per tick: the loudest this many.
    max_mixed: usize,
}

impl RoomCore {
    /// An empty room.
    pub fn new(settings: EncoderSettings, jitter: JitterConfig, mode: MixMode) -> RoomCore {
        let mut base = [0u8; 4];
        crate::system::random_bytes(&mut base);
        RoomCore {
            participants: Vec::new(),
            index: HashMap::new(),
            mixer: Mixer::new(),
            shared_encoder: None,
            settings,
            jitter,
            mode,
            encoded: vec![0; wire::MAX_ENCODED_BYTES],
            out_ts_base: u32::from_be_bytes(base),
            speaking: Vec::new(),
            naive: HashMap::new(),
            max_mixed: usize::MAX,
        }
    }

    /// Sets the timestamp of tick 0 (the room thread derives it from a process-wide clock,
    /// so a listener moved between rooms sees time move on, not jump at random).
    pub fn set_timestamp_base(&mut self, base: u32) {
        self.out_ts_base = base;
    }

    /// Mixes only the `k` loudest talkers of each tick (at least 1). Everyone else talking
    /// at the same moment is left out of the mix and hears it like a listener, so a room
    /// where everybody talks at once costs N decodes and k + 1 encodes per tick, not N
    /// encodes. Default: no limit.
    pub fn set_max_mixed(&mut self, k: usize) {
        self.max_mixed = k.max(1);
    }

    /// Participants in the room.
    pub fn len(&self) -> usize {
        self.participants.len()
    }

    /// Whether nobody is in the room.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    /// Applies a command; false for [`Command::Stop`].
    pub fn apply(&mut self, command: Command) -> bool {
        match command {
            Command::Join {
                conn,
                user,
                flags,
                tx,
                stream,
            } => {
                if self.index.contains_key(&conn) {
                    return true;
                }
                self.index.insert(conn, self.participants.len());
                self.participants.push(Participant {
                    conn,
                    user,
                    flags,
                    tx,
                    jitter: JitterBuffer::new(self.jitter.clone()),
                    decoder: None,
                    vad: Vad::new(VadConfig::default()),
                    pcm: Box::new([0; FRAME_SAMPLES]),
                    talking: false,
                    encoder: None,
                    ticks_since_talking: KEEP_ENCODER_TICKS,
                    out: stream,
                });
            }
            Command::Leave(conn) => {
                if let Some(i) = self.index.remove(&conn) {
                    let gone = self.participants.swap_remove(i);
                    if let Some(moved) = self.participants.get(i) {
                        self.index.insert(moved.conn, i);
                    }
                    if gone.vad.speaking() {
                        self.speaking.push(SpeakingChange {
                            user: gone.user,
                            speaking: false,
                        });
                    }
                    self.naive.remove(&conn);
                }
            }
            Command::Flags(conn, flags) => {
                if let Some(&i) = self.index.get(&conn) {
                    let p = &mut self.participants[i];
                    p.flags = flags;
                    if !flags.may_send() {
                        // Muted: drop what is buffered and end any speaking at once.
                        p.jitter = JitterBuffer::new(self.jitter.clone());
                        if p.vad.speaking() {
                            self.speaking.push(SpeakingChange {
                                user: p.user,
                                speaking: false,
                            });
                        }
                        p.vad = Vad::new(VadConfig::default());
                        p.talking = false;
                    }
                }
            }
            Command::Stop => return false,
        }
        true
    }

    /// Takes one packet into its sender's jitter buffer (dropped when they may not send).
    /// True when the buffer dropped it as late.
    pub fn receive(&mut self, packet: Inbound) -> bool {
        let Some(&i) = self.index.get(&packet.conn) else {
            return false;
        };
        let p = &mut self.participants[i];
        if !p.flags.may_send() {
            return false;
        }
        let late = p.jitter.stats().late;
        p.jitter
            .push(packet.seq, packet.timestamp, packet.payload, packet.arrival);
        p.jitter.stats().late > late
    }

    /// Speaking changes since the last call.
    pub fn take_speaking(&mut self) -> Vec<SpeakingChange> {
        std::mem::take(&mut self.speaking)
    }

    /// Runs tick number `tick`: plays out one frame per talker, mixes, encodes and queues
    /// each listener's frame. Returns the number of talkers mixed.
    pub fn tick(&mut self, tick: u64, stats: &RoomStats) -> usize {
        self.play_out(stats);
        let talking = self.mix();
        if talking == 0 {
            // Silence: nothing is sent; listeners see the timestamp jump.
            return 0;
        }
        self.encode_and_send(tick, talking, stats);
        talking
    }

    /// The first phase of a tick: pops one frame from the jitter buffer of everyone who
    /// may send, decodes it (the next packet's FEC for a gap when it is buffered, PLC
    /// otherwise), runs talking detection on it, and marks who talks this tick: at most
    /// the loudest `max_mixed`.
    fn play_out(&mut self, stats: &RoomStats) {
        let mut decodes = 0u64;
        let mut concealed = 0u64;
        for p in &mut self.participants {
            p.talking = false;
            if !p.flags.may_send() {
                continue;
            }
            let playout = p.jitter.pop();
            if matches!(playout, Playout::Lost { .. }) {
                concealed += 1;
            }
            let decoded = match playout {
                Playout::Idle => None,
                Playout::Frame(packet) => Some(decode(&mut p.decoder, &packet, false, &mut p.pcm)),
                Playout::Lost { next: Some(next) } => {
                    Some(decode(&mut p.decoder, &next, true, &mut p.pcm))
                }
                Playout::Lost { next: None } => {
                    Some(decode(&mut p.decoder, &[], false, &mut p.pcm))
                }
            };
            let change = match decoded {
                Some(true) => {
                    decodes += 1;
                    p.vad.update(&p.pcm[..])
                }
                Some(false) | None => p.vad.idle(),
            };
            if let Some(change) = change {
                self.speaking.push(SpeakingChange {
                    user: p.user,
                    speaking: change == Speaking::Started,
                });
            }
            p.talking = decoded == Some(true) && (p.vad.speaking() || p.vad.loud());
            if p.talking {
                p.ticks_since_talking = 0;
            } else {
                p.ticks_since_talking = p.ticks_since_talking.saturating_add(1);
                if p.ticks_since_talking > KEEP_ENCODER_TICKS {
                    p.encoder = None;
                }
            }
        }
        stats.decodes.fetch_add(decodes, Ordering::Relaxed);
        if concealed > 0 {
            stats.frames.concealed.add(concealed);
        }
        let candidates = self.participants.iter().filter(|p| p.talking).count();
        if candidates > self.max_mixed {
            // Keep the loudest; the others hear the mix like everyone else this tick.
            let mut levels: Vec<f32> = self
                .participants
                .iter()
                .filter(|p| p.talking)
                .map(|p| p.vad.level_dbfs())
                .collect();
            levels.sort_by(|a, b| b.total_cmp(a));
            let threshold = levels[self.max_mixed - 1];
            let mut kept = 0;
            for p in &mut self.participants {
                if p.talking {
                    if kept < self.max_mixed && p.vad.level_dbfs() >= threshold {
                        kept += 1;
                    } else {
                        p.talking = false;
                    }
                }
            }
        }
    }

    /// The second phase of a tick: mixes the frames of those talking, the full mix and
    /// each talker's mix-minus, into the mixer's buffers. Returns how many talk; with
    /// nobody talking the mixer is left as it was.
    fn mix(&mut self) -> usize {
        let talkers: Vec<(ConnId, &PcmFrame)> = self
            .participants
            .iter()
            .filter(|p| p.talking)
            .map(|p| (p.conn, &*p.pcm))
            .collect();
        if !talkers.is_empty() {
            self.mixer.mix(&talkers);
        }
        talkers.len()
    }

    /// The third phase of a tick: encodes the mix of tick number `tick` (one shared encode
    /// for everyone not talking, an own one per talker who hears others, or one per
    /// listener in [`MixMode::PerListener`]) and queues each listener's frame, dropping it
    /// for a listener whose queue is full.
    fn encode_and_send(&mut self, tick: u64, talking: usize, stats: &RoomStats) {
        let timestamp = self
            .out_ts_base
            .wrapping_add((tick as u32).wrapping_mul(wire::FRAME_TS));
        let mix = self.mixer.last_mix();
        let settings = self.settings;
        let mut encodes = 0u64;
        let mut sent = 0u64;
        let mut dropped = 0u64;
        let mut deliver = |p: &mut Participant, payload: &[u8]| {
            let (seq, timestamp) = p.out.next(timestamp);
            let frame = wire::encode_frame(seq, timestamp, payload);
            // The last slots of a queue are kept for control messages (a moderator's
            // disconnect must get through to a listener who is behind).
            let full =
                p.tx.capacity()
                    .is_some_and(|c| p.tx.len() + CONTROL_SLOTS >= c);
            if full {
                dropped += 1;
                return;
            }
            match p.tx.try_send(Outbound::Audio(frame)) {
                Ok(()) => sent += 1,
                Err(_) => dropped += 1,
            }
        };

        match self.mode {
            MixMode::Shared => {
                // The full mix, encoded once, for everyone who hears and is not talking.
                let listeners = self
                    .participants
                    .iter()
                    .any(|p| !p.talking && p.flags.hears());
                let mut shared_len = 0;
                if listeners {
                    let encoder = self
                        .shared_encoder
                        .get_or_insert_with(|| new_encoder(settings));
                    shared_len = encoder.encode(mix.full(), &mut self.encoded).unwrap_or(0);
                    encodes += 1;
                }
                let shared = &self.encoded[..shared_len];
                let mut own = [0u8; wire::MAX_ENCODED_BYTES];
                for p in &mut self.participants {
                    if !p.flags.hears() {
                        continue;
                    }
                    if p.talking {
                        // A lone talker hears nobody: nothing to encode or send.
                        if talking < 2 {
                            continue;
                        }
                        let Some(minus) = mix.minus(p.conn) else {
                            continue;
                        };
                        let encoder = p.encoder.get_or_insert_with(|| new_encoder(settings));
                        let n = encoder.encode(minus, &mut own).unwrap_or(0);
                        encodes += 1;
                        if n > 0 {
                            deliver(p, &own[..n]);
                        }
                    } else if shared_len > 0 {
                        deliver(p, shared);
                    }
                }
            }
            MixMode::PerListener => {
                let mut own = [0u8; wire::MAX_ENCODED_BYTES];
                for p in &mut self.participants {
                    if !p.flags.hears() || (p.talking && talking < 2) {
                        continue;
                    }
                    let frame = if p.talking {
                        mix.minus(p.conn).unwrap_or(mix.full())
                    } else {
                        mix.full()
                    };
                    let encoder = self
                        .naive
                        .entry(p.conn)
                        .or_insert_with(|| new_encoder(settings));
                    let n = encoder.encode(frame, &mut own).unwrap_or(0);
                    encodes += 1;
                    if n > 0 {
                        deliver(p, &own[..n]);
                    }
                }
            }
        }
        stats.encodes.fetch_add(encodes, Ordering::Relaxed);
        stats.sent.fetch_add(sent, Ordering::Relaxed);
        stats.dropped.fetch_add(dropped, Ordering::Relaxed);
    }
}

/// Decodes `packet` (empty: conceal) into `pcm`; false when there is nothing to decode
/// yet (concealment before the talker's first packet) or the packet would not decode (it
/// is then concealed).
fn decode(
    decoder: &mut Option<opus::Decoder>,
    packet: &[u8],
    fec: bool,
    pcm: &mut PcmFrame,
) -> bool {
    if decoder.is_none() {
        if packet.is_empty() {
            return false;
        }
        match wire::decoder() {
            Ok(d) => *decoder = Some(d),
            Err(_) => return false,
        }
    }
    let Some(d) = decoder.as_mut() else {
        return false;
    };
    match d.decode(packet, &mut pcm[..], fec) {
        Ok(FRAME_SAMPLES) => true,
        _ => matches!(d.decode(&[], &mut pcm[..], false), Ok(FRAME_SAMPLES)),
    }
}

fn new_encoder(settings: EncoderSettings) -> opus::Encoder {
    // The settings are clamped to what Opus accepts and 48 kHz mono VoIP always exists,
    // so this fails only when memory does.
    wire::encoder(settings).expect("an Opus encoder for 48 kHz mono")
}

/// A running room.
pub struct RoomThread {
    /// What the websocket tasks use.
    pub shared: Arc<RoomShared>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl RoomThread {
    /// Stops the room and waits for its thread.
    pub fn stop(mut self) {
        self.shared.command(Command::Stop);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }

    /// Asks the room to stop without waiting.
    pub fn stop_detached(mut self) {
        self.shared.command(Command::Stop);
        self.handle.take();
    }
}

/// Ticks a room this far behind its schedule (the machine stalled) skip ahead instead of
/// running a burst of late ticks.
const MAX_BEHIND: Duration = Duration::from_millis(100);

/// Starts a room's thread. `speaking` is called on the thread with each tick's speaking
/// changes.
pub fn spawn(
    shared: Arc<RoomShared>,
    settings: EncoderSettings,
    jitter: JitterConfig,
    max_mixed: usize,
    gateway: Arc<crate::gateway::Gateway>,
) -> std::io::Result<RoomThread> {
    let thread_shared = shared.clone();
    let handle = std::thread::Builder::new()
        .name(format!("voice-{}", shared.channel.0))
        .stack_size(1024 * 1024)
        .spawn(move || run(thread_shared, settings, jitter, max_mixed, gateway))?;
    Ok(RoomThread {
        shared,
        handle: Some(handle),
    })
}

fn run(
    shared: Arc<RoomShared>,
    settings: EncoderSettings,
    jitter: JitterConfig,
    max_mixed: usize,
    gateway: Arc<crate::gateway::Gateway>,
) {
    let mut core = RoomCore::new(settings, jitter, MixMode::Shared);
    core.set_max_mixed(max_mixed);
    core.set_timestamp_base(super::stream_timestamp_now());
    let mut commands = Vec::new();
    let mut packets = Vec::new();
    let frame = Duration::from_micros(FRAME_MICROS);
    let mut start = Instant::now();
    let mut tick: u64 = 0;
    loop {
        let deadline = start + frame * (tick as u32);
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        } else if now - deadline > MAX_BEHIND {
            let behind = ((now - deadline).as_micros() / u128::from(FRAME_MICROS)) as u64;
            shared.stats.skipped.fetch_add(behind, Ordering::Relaxed);
            tick += behind;
            start = now - frame * (tick as u32);
        }
        let began = Instant::now();
        shared.take(&mut commands, &mut packets);
        let mut stop = false;
        for command in commands.drain(..) {
            stop |= !core.apply(command);
        }
        if stop {
            publish_speaking(&gateway, &shared, core.take_speaking());
            return;
        }
        for packet in packets.drain(..) {
            if core.receive(packet) {
                shared.stats.frames.late.add(1);
            }
        }
        core.tick(tick, &shared.stats);
        publish_speaking(&gateway, &shared, core.take_speaking());
        let took = began.elapsed().as_micros() as u64;
        shared.stats.ticks.fetch_add(1, Ordering::Relaxed);
        shared.stats.busy_micros.fetch_add(took, Ordering::Relaxed);
        shared
            .stats
            .max_tick_micros
            .fetch_max(took, Ordering::Relaxed);
        tick += 1;
    }
}

fn publish_speaking(
    gateway: &crate::gateway::Gateway,
    room: &RoomShared,
    changes: Vec<SpeakingChange>,
) {
    for change in changes {
        gateway.publish_ephemeral(
            "voice_speaking",
            Audience::channel(room.guild, room.channel),
            serde_json::json!({
                "guild_id": room.guild,
                "channel_id": room.channel,
                "user_id": change.user,
                "speaking": change.speaking,
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::{sine, tone_power, SAMPLE_RATE};

    fn user(i: u8) -> UserId {
        UserId([i; 32])
    }

    /// Runs a room where talkers 0..n send tones of the given frequencies and amplitudes
    /// and one listener (conn 100) listens; returns what the listener decoded over the
    /// last 25 ticks.
    fn listen(talkers: &[(f32, f32)], max_mixed: usize) -> Vec<i16> {
        let mut core = RoomCore::new(
            EncoderSettings::default(),
            JitterConfig::default(),
            MixMode::Shared,
        );
        core.set_max_mixed(max_mixed);
        let (tx, rx) = async_channel::bounded(1000);
        core.apply(Command::Join {
            conn: 100,
            user: user(100),
            flags: VoiceFlags::default(),
            tx,
            stream: OutStream::new(),
        });
        let mut encoders = Vec::new();
        let mut talker_queues = Vec::new();
        for i in 0..talkers.len() {
            let (tx, rx) = async_channel::bounded(1000);
            talker_queues.push(rx);
            core.apply(Command::Join {
                conn: i as u64,
                user: user(i as u8),
                flags: VoiceFlags::default(),
                tx,
                stream: OutStream::new(),
            });
            encoders.push(wire::encoder(EncoderSettings::default()).unwrap());
        }
        let stats = RoomStats::default();
        let mut decoder = wire::decoder().unwrap();
        let mut heard = Vec::new();
        for k in 0..100u32 {
            for (i, &(freq, amp)) in talkers.iter().enumerate() {
                let start = f64::from(k) * FRAME_SAMPLES as f64;
                let pcm = sine(
                    freq,
                    amp,
                    FRAME_SAMPLES,
                    std::f64::consts::TAU * f64::from(freq) * start / 48_000.0,
                );
                let packet = encoders[i].encode_vec(&pcm, 1500).unwrap();
                core.receive(Inbound {
                    conn: i as u64,
                    seq: k as u16,
                    timestamp: k * 960,
                    payload: packet,
                    arrival: u64::from(k) * FRAME_MICROS,
                });
            }
            core.tick(u64::from(k), &stats);
            while let Ok(Outbound::Audio(frame)) = rx.try_recv() {
                let mut pcm = [0i16; FRAME_SAMPLES];
                decoder
                    .decode(&frame[wire::HEADER_BYTES..], &mut pcm, false)
                    .unwrap();
                if k >= 75 {
                    heard.extend_from_slice(&pcm);
                }
            }
        }
        heard
    }

    #[test]
    fn only_the_loudest_talkers_are_mixed_beyond_the_limit() {
        let talkers = [
            (400.0, 9000.0),
            (700.0, 7000.0),
            (1100.0, 2000.0),
            (1600.0, 1500.0),
        ];
        let all = listen(&talkers, usize::MAX);
        for (freq, _) in talkers {
            assert!(
                tone_power(&all, freq, SAMPLE_RATE) > 1e-4,
                "{freq} Hz missing"
            );
        }
        let two = listen(&talkers, 2);
        assert!(tone_power(&two, 400.0, SAMPLE_RATE) > 1e-3);
        assert!(tone_power(&two, 700.0, SAMPLE_RATE) > 1e-3);
        assert!(
            tone_power(&two, 1100.0, SAMPLE_RATE) < 1e-5,
            "a quiet talker was mixed"
        );
        assert!(
            tone_power(&two, 1600.0, SAMPLE_RATE) < 1e-5,
            "a quiet talker was mixed"
        );
    }
}
