//! Voice: what one 20 ms mixer tick costs and how many participants fit on a core, with
//! the shared encode (`MixMode::Shared`, what Hearth does) beside the naive mixer with one
//! encoder per listener (`MixMode::PerListener`); the mouth-to-ear latency a real server
//! adds; and the bytes per second a listener receives.
//!
//! `cargo bench --bench voice` (about two minutes, bounded). Linux, loopback only.
//! `cargo bench --bench voice -- mixing`, `-- latency` or `-- sockets` runs one part.
//!
//! **Mixing cost.** `RoomCore` is driven directly on the bench's thread: no sockets, no
//! room thread, a synthetic clock. Each talker's input is a speech-like signal (eight
//! harmonics of a 95–245 Hz voice shaped by two formants, with vibrato, a little noise and
//! amplitude modulation at a syllable rate of 3–5.5 Hz, never quieter than the VAD's
//! threshold), different for every talker, encoded once beforehand with the client's Opus
//! settings. Every tick the room receives one packet per talker (arrivals exactly 20 ms
//! apart, so each jitter buffer stays at its one-frame minimum) and ticks; `receive` plus
//! `tick` is timed, which is the room thread's work per tick minus taking its inbox, both as
//! the thread's CPU time (the cost, which other processes do not inflate; means, fits and
//! capacities use it) and as elapsed time (which shows preemption on a busy machine). Each
//! participant's queue is drained after every tick (not timed) and its bytes counted
//! (6-byte header + Opus packet, no websocket or TCP framing). A configuration warms up for
//! 50 ticks (or 1.5 s) and is measured for 250 ticks (or 3 s, at least 20 ticks). Scenarios:
//! (a) 4 talkers + N listeners, (b) N people all talking. `rooms/core` is 20 ms / mean
//! CPU per tick and `people/core` that times the room's size. The largest N whose mean tick fits
//! in 20 ms, and in 10 ms (a 50 % margin), is solved from a straight-line fit of the sweep
//! (the work is linear in decodes, encodes and sends) and then checked with a run at that
//! N (capped at 10,000 listeners / 400 talkers). What this leaves out: the websocket tasks
//! that write each listener's frame to its socket (they run on the executor, not the room
//! thread), and publishing speaking events.
//!
//! **Mouth-to-ear latency.** The release binary serves on 127.0.0.1 (light argon2); two
//! users join one voice channel. A sends on an absolute 20 ms schedule: a pause of 1.1 s
//! after which A's timestamps restart 2 s further on (the room's jitter buffer takes it as
//! a new sender clock and starts afresh) and its frames arrive at a new phase relative to
//! the room's tick (each cycle shifts it by 2 ms, covering the 0–20 ms wait for the tick
//! evenly), 1 s of digital silence, then a 1 kHz tone at −12 dBFS for 0.4 s
//! starting at the first sample of a frame; ten such onsets. B, a listener, decodes every
//! frame it receives and notes when the first loud one (above −40 dBFS) of each burst has
//! been decoded. "frame" is from just before A's client encodes and sends the first tone
//! frame to that moment: the loopback network, the server's websocket tasks, its jitter
//! buffer, the wait for the next tick, decode, mix, encode, and B's decode. "sound" adds
//! where the tone starts inside B's frame, which is mostly the Opus encoders' look-ahead
//! (A's and the server's). Not included: capturing 20 ms at A before the frame can be
//! sent, and any playout buffer at B. For scale, the round trip of the voice socket's
//! `ping` op is printed too (loopback and the server's executor, no room). The jitter
//! buffer follows A's timing: when a busy machine makes A's sends late by more than 5 ms
//! (printed per onset) it rightly adds a frame of delay for some seconds, so run this on a
//! quiet machine (the load average is printed). Then A talks (speech-like signal) for 5 s
//! and B's received bytes per second are measured in the steady state.
//!
//! **Sockets: the whole server per listener.** The mixing cost above leaves out writing
//! each listener's frame to its websocket. Here the release binary serves one voice room
//! where 4 talkers (real voice sockets, speech-like packets on an absolute 20 ms schedule)
//! talk while listeners are added: 0, 100, 250, 500, 1,000 (each a user with its own
//! voice socket, reading on this process's executor). At each step, after 2 s to settle,
//! the server process's CPU time (user + system, from `/proc/PID/stat`) and resident
//! memory are read over 5 s, and the frames each listener received are counted. The
//! slope of CPU against listeners is what one more listener costs the whole server:
//! room thread, websocket tasks, TCP writes. This process (talkers and listeners) runs on
//! the same two cores and competes with the server, so the figures are upper bounds.

use hearth::auth::jose::SigningKey;
use hearth::client::{Client, VoiceConnection, VoiceEvent, VoicePlayer};
use hearth::model::UserId;
use hearth::voice::room::{Command, Inbound, MixMode, Outbound, RoomCore, RoomStats};
use hearth::voice::vad::level_dbfs;
use hearth::voice::wire::{self, EncoderSettings};
use hearth::voice::{JitterConfig, PcmFrame, VoiceFlags, FRAME_MICROS, FRAME_SAMPLES};
use serde_json::{json, Value};
use std::f64::consts::TAU;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames of pre-encoded audio per talker (6.4 s), played in a loop.
const VOICE_FRAMES: usize = 320;
/// The tick budget: one 20 ms frame, microseconds.
const TICK_BUDGET_US: f64 = FRAME_MICROS as f64;
const PASSWORD: &str = "benchmark password of some length";

// ---------------------------------------------------------------- signals

/// A small deterministic generator (xorshift64*), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `frames` frames of a speech-like signal, different for every `talker`.
fn speech_like(talker: usize, frames: usize) -> Vec<i16> {
    let mut rng = Rng::new(talker as u64 + 1);
    let f0 = 95.0 + 150.0 * rng.unit();
    let syllable_hz = 3.0 + 2.5 * rng.unit();
    let syllable_phase = TAU * rng.unit();
    let vibrato_hz = 4.0 + 2.0 * rng.unit();
    let formant1 = 500.0 + 400.0 * rng.unit();
    let formant2 = 1200.0 + 1000.0 * rng.unit();
    let rate = f64::from(hearth::voice::SAMPLE_RATE);
    let mut phase = 0.0f64;
    let mut out = Vec::with_capacity(frames * FRAME_SAMPLES);
    for frame in 0..frames {
        // The formants' weight of each harmonic, from the pitch in the middle of the frame.
        let t_mid = (frame * FRAME_SAMPLES + FRAME_SAMPLES / 2) as f64 / rate;
        let f_mid = f0 * (1.0 + 0.03 * (TAU * vibrato_hz * t_mid).sin());
        let weights: [f64; 8] = std::array::from_fn(|i| {
            let h = (i + 1) as f64;
            let fh = f_mid * h;
            (1.0 + 2.0 * (-((fh - formant1) / 150.0).powi(2)).exp()
                + 1.5 * (-((fh - formant2) / 250.0).powi(2)).exp())
                / h
        });
        for i in 0..FRAME_SAMPLES {
            let t = (frame * FRAME_SAMPLES + i) as f64 / rate;
            let f = f0 * (1.0 + 0.03 * (TAU * vibrato_hz * t).sin());
            phase = (phase + TAU * f / rate) % TAU;
            // sin(hθ) by the Chebyshev recurrence: one sin and one cos per sample.
            let (sin1, cos1) = phase.sin_cos();
            let (mut previous, mut current) = (0.0, sin1);
            let mut voiced = 0.0;
            for w in weights {
                voiced += w * current;
                let next = 2.0 * cos1 * current - previous;
                previous = current;
                current = next;
            }
            let noise = rng.unit() * 2.0 - 1.0;
            let envelope =
                0.45 + 0.55 * (0.5 + 0.5 * (TAU * syllable_hz * t + syllable_phase).sin());
            out.push(
                ((voiced * 0.25 + noise * 0.08) * envelope * 9000.0).clamp(-32767.0, 32767.0)
                    as i16,
            );
        }
    }
    out
}

/// The Opus settings a client encodes with (`VoiceConnection::open`).
fn client_settings() -> EncoderSettings {
    EncoderSettings {
        expected_loss_percent: 10,
        ..EncoderSettings::default()
    }
}

/// Pre-encoded talkers: `VOICE_FRAMES` Opus packets each, made on demand.
struct Voices(Vec<Vec<Vec<u8>>>);

impl Voices {
    fn ensure(&mut self, talkers: usize) {
        let have = self.0.len();
        if talkers <= have {
            return;
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let wanted: Vec<usize> = (have..talkers).collect();
        let mut made: Vec<(usize, Vec<Vec<u8>>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = wanted
                .chunks(wanted.len().div_ceil(threads))
                .map(|chunk| {
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|&talker| (talker, encode_voice(talker)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("encoder thread"))
                .collect()
        });
        made.sort_by_key(|(talker, _)| *talker);
        self.0.extend(made.into_iter().map(|(_, packets)| packets));
    }
}

fn encode_voice(talker: usize) -> Vec<Vec<u8>> {
    let mut encoder = wire::encoder(client_settings()).expect("opus encoder");
    let pcm = speech_like(talker, VOICE_FRAMES);
    let mut out = [0u8; wire::MAX_ENCODED_BYTES];
    pcm.chunks_exact(FRAME_SAMPLES)
        .map(|frame| {
            let n = encoder.encode(frame, &mut out).expect("encode");
            out[..n].to_vec()
        })
        .collect()
}

// ---------------------------------------------------------------- mixing cost

#[derive(Clone, Copy)]
struct Budget {
    warm_ticks: u64,
    warm_time: Duration,
    measure_ticks: usize,
    measure_time: Duration,
    min_measure: usize,
}

const SWEEP: Budget = Budget {
    warm_ticks: 50,
    warm_time: Duration::from_millis(1500),
    measure_ticks: 250,
    measure_time: Duration::from_secs(3),
    min_measure: 20,
};

const CHECK: Budget = Budget {
    warm_ticks: 20,
    warm_time: Duration::from_secs(1),
    measure_ticks: 100,
    measure_time: Duration::from_secs(2),
    min_measure: 10,
};

struct RunResult {
    talkers: usize,
    listeners: usize,
    ticks: usize,
    /// Thread CPU time per tick: the work, whatever else the machine runs.
    mean_us: f64,
    p99_us: f64,
    /// Wall-clock time per tick: includes being preempted by other processes.
    wall_p99_us: f64,
    wall_max_us: f64,
    /// Talkers mixed per tick, on average (should be `talkers`).
    mixed: f64,
    encodes_per_tick: f64,
    decodes_per_tick: f64,
    /// Bytes per second a listener receives, on average (header + Opus).
    listener_bps: f64,
    /// Bytes per second a talker receives (their mix-minus).
    talker_bps: f64,
    dropped: u64,
}

impl RunResult {
    fn people(&self) -> usize {
        self.talkers + self.listeners
    }

    fn rooms_per_core(&self) -> f64 {
        TICK_BUDGET_US / self.mean_us
    }
}

/// This thread's CPU time, microseconds.
fn thread_cpu_us() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

fn user_id(i: usize) -> UserId {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
    bytes[31] = 1;
    UserId(bytes)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// One room of `talkers` + `listeners` in `mode`, ticked until `budget` is spent.
/// Most talkers mixed per tick in the runs (the server's `[voice] max_mixed_talkers`);
/// unlimited for (a) and (b), the server's default for (c).
static MAX_MIXED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(usize::MAX);

fn run_room(
    mode: MixMode,
    talkers: usize,
    listeners: usize,
    voices: &mut Voices,
    budget: Budget,
) -> RunResult {
    voices.ensure(talkers);
    let voices = &voices.0;
    let mut core = RoomCore::new(EncoderSettings::default(), JitterConfig::default(), mode);
    core.set_max_mixed(MAX_MIXED.load(std::sync::atomic::Ordering::Relaxed));
    let stats = RoomStats::default();
    let people = talkers + listeners;
    let mut queues = Vec::with_capacity(people);
    for i in 0..people {
        // The server's default queue: 25 frames.
        let (tx, rx) = async_channel::bounded(25);
        core.apply(Command::Join {
            conn: i as u64,
            user: user_id(i),
            flags: VoiceFlags::default(),
            tx,
            stream: Default::default(),
        });
        queues.push(rx);
    }
    // Each talker starts at its own sequence number and timestamp.
    let starts: Vec<(u16, u32)> = (0..talkers)
        .map(|i| {
            let r = Rng::new(1000 + i as u64).next();
            (r as u16, (r >> 16) as u32)
        })
        .collect();
    let mut bytes = vec![0u64; people];
    let mut times = Vec::with_capacity(budget.measure_ticks);
    let mut walls = Vec::with_capacity(budget.measure_ticks);
    let mut mixed = 0usize;
    let mut packets = Vec::with_capacity(talkers);
    let began = Instant::now();
    let mut measure_began = None;
    let (mut encodes0, mut decodes0) = (0, 0);
    let mut tick: u64 = 0;
    loop {
        let measuring = match measure_began {
            Some(at) => {
                let enough = times.len() >= budget.measure_ticks
                    || (times.len() >= budget.min_measure
                        && Instant::now().duration_since(at) >= budget.measure_time);
                if enough {
                    break;
                }
                true
            }
            None => {
                let warm =
                    tick >= budget.warm_ticks || (tick >= 5 && began.elapsed() >= budget.warm_time);
                if warm {
                    measure_began = Some(Instant::now());
                    encodes0 = stats.encodes.load(Ordering::Relaxed);
                    decodes0 = stats.decodes.load(Ordering::Relaxed);
                }
                warm
            }
        };
        // This tick's packets, made before the clock starts (the websocket tasks allocate
        // them in the server); they "arrived" 7 ms before the tick.
        let arrival = tick * FRAME_MICROS + 7_000;
        for (i, &(seq, ts)) in starts.iter().enumerate() {
            let voice = &voices[i];
            packets.push(Inbound {
                conn: i as u64,
                seq: seq.wrapping_add(tick as u16),
                timestamp: ts.wrapping_add((tick as u32).wrapping_mul(wire::FRAME_TS)),
                payload: voice[tick as usize % voice.len()].clone(),
                arrival,
            });
        }
        let t0 = Instant::now();
        let cpu0 = thread_cpu_us();
        for packet in packets.drain(..) {
            core.receive(packet);
        }
        let n = core.tick(tick, &stats);
        let cpu = thread_cpu_us() - cpu0;
        let took = t0.elapsed();
        let _ = core.take_speaking();
        for (i, rx) in queues.iter().enumerate() {
            while let Ok(out) = rx.try_recv() {
                if let (true, Outbound::Audio(frame)) = (measuring, out) {
                    bytes[i] += frame.len() as u64;
                }
            }
        }
        if measuring {
            times.push(cpu);
            walls.push(took.as_secs_f64() * 1e6);
            mixed += n;
        }
        tick += 1;
    }
    let measured = times.len();
    let seconds = measured as f64 * FRAME_MICROS as f64 / 1e6;
    let mean_of = |range: std::ops::Range<usize>| {
        let n = range.len();
        if n == 0 {
            0.0
        } else {
            bytes[range].iter().sum::<u64>() as f64 / n as f64 / seconds
        }
    };
    let talker_bps = mean_of(0..talkers);
    let listener_bps = mean_of(talkers..people);
    let mean_us = times.iter().sum::<f64>() / measured as f64;
    times.sort_by(f64::total_cmp);
    walls.sort_by(f64::total_cmp);
    RunResult {
        talkers,
        listeners,
        ticks: measured,
        mean_us,
        p99_us: percentile(&times, 0.99),
        wall_p99_us: percentile(&walls, 0.99),
        wall_max_us: walls.last().copied().unwrap_or(0.0),
        mixed: mixed as f64 / measured as f64,
        encodes_per_tick: (stats.encodes.load(Ordering::Relaxed) - encodes0) as f64
            / measured as f64,
        decodes_per_tick: (stats.decodes.load(Ordering::Relaxed) - decodes0) as f64
            / measured as f64,
        listener_bps,
        talker_bps,
        dropped: stats.dropped.load(Ordering::Relaxed),
    }
}

fn mode_name(mode: MixMode) -> &'static str {
    match mode {
        MixMode::Shared => "shared",
        MixMode::PerListener => "per-listener",
    }
}

fn print_header() {
    println!(
        "{:>6} {:>6} {:>12} {:>6} {:>6} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>6} {:>10} {:>11} {:>9} {:>9} {:>8}",
        "N",
        "people",
        "mode",
        "ticks",
        "mixed",
        "dec/tick",
        "enc/tick",
        "cpu mean",
        "cpu p99",
        "wall p99",
        "wall max",
        "%20ms",
        "rooms/core",
        "people/core",
        "B/s lstn",
        "B/s talk",
        "×shared"
    );
}

fn print_row(n: usize, mode: MixMode, r: &RunResult, shared: Option<&RunResult>) {
    let bps = |v: f64, present: bool| {
        if present {
            format!("{v:.0}")
        } else {
            "-".into()
        }
    };
    let ratio = shared.map_or("".into(), |s| format!("{:.1}", r.mean_us / s.mean_us));
    println!(
        "{:>6} {:>6} {:>12} {:>6} {:>6.1} {:>8.1} {:>8.1} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>5.1}% {:>10.1} {:>11.0} {:>9} {:>9} {:>8}{}",
        n,
        r.people(),
        mode_name(mode),
        r.ticks,
        r.mixed,
        r.decodes_per_tick,
        r.encodes_per_tick,
        r.mean_us,
        r.p99_us,
        r.wall_p99_us,
        r.wall_max_us,
        r.mean_us / TICK_BUDGET_US * 100.0,
        r.rooms_per_core(),
        r.rooms_per_core() * r.people() as f64,
        bps(r.listener_bps, r.listeners > 0),
        bps(r.talker_bps, r.talkers > 1),
        ratio,
        if r.dropped > 0 {
            format!("  ({} frames dropped!)", r.dropped)
        } else {
            String::new()
        },
    );
}

/// Least-squares line through (x, mean µs).
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let sx: f64 = points.iter().map(|p| p.0).sum();
    let sy: f64 = points.iter().map(|p| p.1).sum();
    let sxx: f64 = points.iter().map(|p| p.0 * p.0).sum();
    let sxy: f64 = points.iter().map(|p| p.0 * p.1).sum();
    let slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
    (sy / n - slope * sx / n, slope)
}

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    /// 4 talkers + N listeners.
    FourTalkers,
    /// N talkers.
    AllTalking,
}

impl Scenario {
    fn room(self, n: usize) -> (usize, usize) {
        match self {
            Scenario::FourTalkers => (4, n),
            Scenario::AllTalking => (n, 0),
        }
    }

    fn cap(self) -> usize {
        match self {
            Scenario::FourTalkers => 10_000,
            Scenario::AllTalking => 400,
        }
    }
}

struct Capacity {
    scenario: &'static str,
    mode: MixMode,
    fit: (f64, f64),
    checks: Vec<Check>,
}

/// The largest N for one budget.
struct Check {
    /// Microseconds per tick.
    budget: f64,
    /// N from the fitted line.
    solved: f64,
    /// Whether that was beyond what is checked.
    capped: bool,
    /// (N, mean µs) of each check run; the last is `run`.
    tried: Vec<(usize, f64)>,
    run: RunResult,
}

fn sweep(
    title: &str,
    scenario: Scenario,
    ns: &[usize],
    voices: &mut Voices,
) -> Vec<(MixMode, Vec<(usize, RunResult)>)> {
    println!("\n{title}");
    print_header();
    let mut shared = Vec::new();
    let mut naive = Vec::new();
    for &n in ns {
        let (talkers, listeners) = scenario.room(n);
        let s = run_room(MixMode::Shared, talkers, listeners, voices, SWEEP);
        print_row(n, MixMode::Shared, &s, None);
        let p = run_room(MixMode::PerListener, talkers, listeners, voices, SWEEP);
        print_row(n, MixMode::PerListener, &p, Some(&s));
        shared.push((n, s));
        naive.push((n, p));
    }
    vec![(MixMode::Shared, shared), (MixMode::PerListener, naive)]
}

fn capacity(
    name: &'static str,
    scenario: Scenario,
    mode: MixMode,
    points: &[(usize, RunResult)],
    voices: &mut Voices,
) -> Capacity {
    let xy: Vec<(f64, f64)> = points.iter().map(|(n, r)| (*n as f64, r.mean_us)).collect();
    let line = fit(&xy);
    let mut checks = Vec::new();
    for budget in [TICK_BUDGET_US / 2.0, TICK_BUDGET_US] {
        let solved = if line.1 > 0.0 {
            ((budget - line.0) / line.1).floor().max(1.0)
        } else {
            f64::INFINITY
        };
        let capped = solved > scenario.cap() as f64;
        let n = if capped {
            scenario.cap()
        } else {
            solved as usize
        };
        // Check at N; when it does not fit, step down along the fitted slope and check
        // again (twice at most): the sweep's points are noisy on shared cores.
        let mut n = n;
        let mut tried = Vec::new();
        let run = loop {
            let (talkers, listeners) = scenario.room(n);
            let run = run_room(mode, talkers, listeners, voices, CHECK);
            tried.push((n, run.mean_us));
            if run.mean_us <= budget || tried.len() >= 3 || n <= 1 {
                break run;
            }
            let over = (run.mean_us - budget) / line.1.max(1e-3) * 1.05;
            n = (n as f64 - over.max(1.0)).floor().max(1.0) as usize;
        };
        checks.push(Check {
            budget,
            solved,
            capped,
            tried,
            run,
        });
    }
    Capacity {
        scenario: name,
        mode,
        fit: line,
        checks,
    }
}

fn print_capacity(c: &Capacity) {
    let (a, b) = c.fit;
    for check in &c.checks {
        let label = if check.budget < TICK_BUDGET_US {
            "10 ms (50 % margin)"
        } else {
            "20 ms (no margin)  "
        };
        let run = &check.run;
        let n = check.tried.last().map_or(0, |t| t.0);
        let verdict = if run.mean_us <= check.budget {
            "fits"
        } else {
            "DOES NOT FIT"
        };
        let tried = check
            .tried
            .iter()
            .map(|(n, mean)| format!("{n}: {:.1} ms", mean / 1000.0))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{:<22} {:>12}  fit {:>5.0} µs + {:>6.1} µs·N → {:>8.0}   {label}: N {}{:<5} = {:>5} people (cpu p99 {:>5.1} ms, wall max {:>5.1} ms) {verdict}   [checked {tried}]",
            c.scenario,
            mode_name(c.mode),
            a,
            b,
            check.solved,
            if check.capped && n == check.tried[0].0 { "≥ " } else { "" },
            n,
            run.people(),
            run.p99_us / 1000.0,
            run.wall_max_us / 1000.0,
        );
    }
}

// ---------------------------------------------------------------- real server

struct Server {
    child: Child,
    origin: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the release binary on 127.0.0.1 with plain HTTP (`[tls] enabled = false`; a
/// build without that section is started without it).
fn start_server() -> Server {
    start_server_with("")
}

/// [`start_server`] with more configuration (TOML sections) appended.
fn start_server_with(extra: &str) -> Server {
    for tls_section in [true, false] {
        if let Some(server) = try_start_server(tls_section, extra) {
            return server;
        }
    }
    panic!("hearth serve did not start (see its messages above)");
}

fn try_start_server(tls_section: bool, extra: &str) -> Option<Server> {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("hearth.toml");
    let mut text = String::from(
        "[auth]\nargon2_memory_kib = 256\nargon2_iterations = 1\nlogin_failures_per_account = 1000\nlogin_attempts_per_address = 100000\n[discovery]\nenabled = false\n[throttle]\nmax_connections = 8192\nmax_connections_per_address = 8192\nregistrations_per_address_hour = 1000000\nmessages_per_user_minute = 1000000\nmessages_per_address_minute = 1000000\nreactions_per_user_minute = 1000000\nreactions_per_address_minute = 1000000\nuploads_per_user_minute = 1000000\nuploads_per_address_minute = 1000000\n",
    );
    if tls_section {
        text.push_str("[tls]\nenabled = false\n");
    }
    text.push_str(extra);
    std::fs::File::create(&config)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["--config", config.to_str().unwrap_or_default(), "--data"])
        .arg(dir.path().join("data"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hearth");
    let stderr = child.stderr.take().expect("stderr");
    // From here on the child is killed however this ends.
    let mut server = Server {
        child,
        origin: String::new(),
        _dir: dir,
    };
    let mut reader = BufReader::new(stderr);
    let mut said = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            // Exited before listening: the config was refused.
            if !tls_section {
                eprint!("{said}");
            }
            return None;
        }
        if line.contains("listening on") {
            server.origin = line
                .split_whitespace()
                .find(|w| w.starts_with("http://"))
                .expect("listen address")
                .to_string();
            break;
        }
        said.push_str(&line);
    }
    // Keep reading the server's log so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    Some(server)
}

async fn post(client: &Client, url: &str, body: Value) -> Value {
    client
        .post(url, body)
        .await
        .expect("request")
        .ok()
        .expect("request ok")
        .json()
        .expect("json")
}

/// `owner` makes a guild with a voice channel at `origin`; returns (invite code, voice
/// channel id).
async fn voice_guild(owner: &Client, origin: &str) -> (String, String) {
    let guild = post(
        owner,
        &format!("{origin}/api/v1/guilds"),
        json!({"name": "Bench"}),
    )
    .await;
    let gid = guild["id"].as_str().expect("guild id").to_string();
    let text = guild["channels"][0]["id"]
        .as_str()
        .expect("channel")
        .to_string();
    let voice = post(
        owner,
        &format!("{origin}/api/v1/guilds/{gid}/channels"),
        json!({"name": "voice", "kind": "voice"}),
    )
    .await;
    let invite = post(
        owner,
        &format!("{origin}/api/v1/channels/{text}/invites"),
        json!({}),
    )
    .await;
    (
        invite["code"].as_str().expect("code").to_string(),
        voice["id"].as_str().expect("voice id").to_string(),
    )
}

/// Two users in one voice channel: (A, B).
async fn two_in_voice(origin: &str) -> (VoiceConnection, VoiceConnection) {
    let a = Client::with_device_key(SigningKey::generate_ed25519());
    a.register(origin, "alice", PASSWORD)
        .await
        .expect("register");
    let b = Client::with_device_key(SigningKey::generate_ed25519());
    b.register(origin, "bob", PASSWORD).await.expect("register");
    let (code, vid) = voice_guild(&a, origin).await;
    post(&b, &format!("{origin}/api/v1/invites/{code}"), json!({})).await;
    let va = a.join_voice(origin, &vid).await.expect("A joins voice");
    let vb = b.join_voice(origin, &vid).await.expect("B joins voice");
    (va, vb)
}

const ONSETS: usize = 10;
/// Frames A sends nothing before each cycle: longer than the jitter buffer's 1 s reset.
const PAUSE_FRAMES: u32 = 55;
/// Frames A's timestamps jump beyond the pause, so that the room's jitter buffer takes the
/// next packet as a new sender clock (arrival and timestamp spacing differ by more than its
/// one-second reset) and forgets its transit times too. Were the timestamps to follow the
/// pause exactly, the buffer would read each cycle's 2 ms phase shift as 2 ms more network
/// delay and, after a few cycles, add a frame.
const RESTART_FRAMES: u32 = 100;
const QUIET_FRAMES: usize = 50;
const BURST_FRAMES: usize = 20;
const STEADY_FRAMES: usize = 250;
const TONE_HZ: f32 = 1000.0;
const TONE_AMPLITUDE: f32 = 8000.0;
/// A decoded frame above this is loud.
const LOUD_DBFS: f32 = -40.0;

/// What the sender did, for pairing with what B heard.
#[derive(Default)]
struct Sent {
    onsets: Vec<Instant>,
    /// Per cycle, how late A's worst send was against its schedule.
    late: Vec<Duration>,
    steady: Option<(Instant, Instant)>,
    steady_bytes: u64,
}

/// A frame B received: when it had been decoded, its bytes on the wire (header + Opus),
/// its level, and where a tone starts in it (sample index), if one does.
struct Heard {
    at: Instant,
    bytes: usize,
    level: f32,
    onset_sample: Option<usize>,
}

async fn sleep_until(deadline: Instant) {
    if let Some(d) = deadline.checked_duration_since(Instant::now()) {
        smol::Timer::after(d).await;
    }
}

fn to_frame(samples: &[i16]) -> &PcmFrame {
    samples.try_into().expect("one frame")
}

async fn talk(va: &VoiceConnection) -> Sent {
    let mut sent = Sent::default();
    let silence = [0i16; FRAME_SAMPLES];
    let rate = hearth::voice::SAMPLE_RATE as f64;
    let frame = Duration::from_micros(FRAME_MICROS);
    let mut deadline = Instant::now() + frame;
    for _ in 0..ONSETS {
        // A pause that also moves the send phase by 2 ms against the room's tick.
        va.skip(PAUSE_FRAMES + RESTART_FRAMES);
        deadline += frame * PAUSE_FRAMES + Duration::from_millis(2);
        let mut late = Duration::ZERO;
        for _ in 0..QUIET_FRAMES {
            sleep_until(deadline).await;
            late = late.max(Instant::now().saturating_duration_since(deadline));
            va.send_pcm(&silence).await.expect("send");
            deadline += frame;
        }
        for f in 0..BURST_FRAMES {
            let phase = TAU * f64::from(TONE_HZ) * (f * FRAME_SAMPLES) as f64 / rate;
            let tone = hearth::voice::sine(TONE_HZ, TONE_AMPLITUDE, FRAME_SAMPLES, phase);
            sleep_until(deadline).await;
            let now = Instant::now();
            late = late.max(now.saturating_duration_since(deadline));
            if f == 0 {
                sent.onsets.push(now);
            }
            va.send_pcm(to_frame(&tone)).await.expect("send");
            deadline += frame;
        }
        sent.late.push(late);
    }
    // Steady talking, for bytes per second.
    va.skip(PAUSE_FRAMES);
    deadline += frame * PAUSE_FRAMES;
    let speech = speech_like(7, STEADY_FRAMES);
    let mut began = None;
    for chunk in speech.chunks_exact(FRAME_SAMPLES) {
        sleep_until(deadline).await;
        began.get_or_insert_with(Instant::now);
        let encoded = va.encode(to_frame(chunk)).expect("encode");
        sent.steady_bytes += (wire::HEADER_BYTES + encoded.payload.len()) as u64;
        va.send_frame(&encoded).await.expect("send");
        deadline += frame;
    }
    sent.steady = began.map(|b| (b, Instant::now()));
    sleep_until(deadline + Duration::from_millis(500)).await;
    sent
}

async fn listen(vb: Arc<VoiceConnection>, done: Arc<AtomicBool>) -> Vec<Heard> {
    let mut player = VoicePlayer::new().expect("player");
    let mut heard = Vec::new();
    let mut pings = Instant::now();
    loop {
        if pings.elapsed() > Duration::from_secs(5) {
            pings = Instant::now();
            let _ = vb.send_op(json!({"op": "ping"})).await;
        }
        match vb.recv(Duration::from_millis(100)).await {
            Some(VoiceEvent::Audio(frame)) => {
                let pcm = player.play(&frame);
                let at = Instant::now();
                let own = pcm.last().expect("a frame");
                let threshold = (TONE_AMPLITUDE / 4.0) as i16;
                heard.push(Heard {
                    at,
                    bytes: wire::HEADER_BYTES + frame.payload.len(),
                    level: level_dbfs(&own[..]),
                    onset_sample: own.iter().position(|x| x.unsigned_abs() > threshold as u16),
                });
            }
            Some(VoiceEvent::Closed { code, reason }) => {
                panic!("B's voice socket closed: {code:?} {reason}")
            }
            Some(VoiceEvent::Op(_)) => {}
            None if done.load(Ordering::Relaxed) => return heard,
            None => {}
        }
    }
}

/// Round trips of the voice socket's `ping` op, milliseconds.
async fn ping_round_trips(vb: &VoiceConnection, count: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for _ in 0..count {
        let sent = Instant::now();
        vb.send_op(json!({"op": "ping"})).await.expect("ping");
        loop {
            match vb.recv(Duration::from_secs(2)).await {
                Some(VoiceEvent::Op(op)) if op["op"] == "pong" => {
                    out.push(ms(sent.elapsed()));
                    break;
                }
                Some(_) => continue,
                None => break,
            }
        }
        smol::Timer::after(Duration::from_millis(5)).await;
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    percentile(&s, 0.5)
}

fn real_server() {
    let server = start_server();
    let origin = server.origin.clone();
    println!(
        "\nmouth-to-ear through the release server on {origin} (A talks, B listens; {ONSETS} onsets)"
    );
    let (va, vb) = smol::block_on(two_in_voice(&origin));
    let rtt = smol::block_on(ping_round_trips(&vb, 20));
    let vb = Arc::new(vb);
    let done = Arc::new(AtomicBool::new(false));
    // B listens on smol's global executor thread (where its socket reader runs), so its
    // arrival times do not wait behind A's encoding on this thread.
    let listener = smol::spawn(listen(vb.clone(), done.clone()));
    let sent = smol::block_on(talk(&va));
    done.store(true, Ordering::Relaxed);
    let heard = smol::block_on(listener);

    // Pair each onset with the first loud frame B decoded after it.
    let mut frame_ms = Vec::new();
    let mut sound_ms = Vec::new();
    let mut lines = Vec::new();
    let late = |k: usize| sent.late.get(k).map_or(0.0, |d| ms(*d));
    for (k, &onset) in sent.onsets.iter().enumerate() {
        let window = onset + Duration::from_millis(500);
        let Some(i) = heard
            .iter()
            .position(|h| h.at > onset && h.at < window && h.level > LOUD_DBFS)
        else {
            lines.push(format!("#{k}: not heard"));
            continue;
        };
        let h = &heard[i];
        // Where the tone starts: in this frame, or else in the next one.
        let offset = match h.onset_sample {
            Some(s) => Some(s),
            None => heard
                .get(i + 1)
                .and_then(|n| n.onset_sample)
                .map(|s| s + FRAME_SAMPLES),
        };
        let frame = ms(h.at - onset);
        frame_ms.push(frame);
        match offset {
            Some(s) => {
                let sound = frame + s as f64 / 48.0;
                sound_ms.push(sound);
                lines.push(format!("#{k}: {frame:.1}/{sound:.1} ({:.1})", late(k)));
            }
            None => lines.push(format!("#{k}: {frame:.1}/? ({:.1})", late(k))),
        }
    }
    let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    let min = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::min);
    println!(
        "{:<44} {:>8} {:>8} {:>8} {:>6}",
        "mouth-to-ear added by the box", "median", "min", "max", "heard"
    );
    println!(
        "{:<44} {:>5.1} ms {:>5.1} ms {:>5.1} ms {:>3}/{}",
        "  frame: send → B decoded first loud frame",
        median(&frame_ms),
        min(&frame_ms),
        max(&frame_ms),
        frame_ms.len(),
        ONSETS
    );
    println!(
        "{:<44} {:>5.1} ms {:>5.1} ms {:>5.1} ms {:>3}/{}",
        "  sound: + where the tone starts in it",
        median(&sound_ms),
        min(&sound_ms),
        max(&sound_ms),
        sound_ms.len(),
        ONSETS
    );
    println!(
        "  for scale: voice-socket ping → pong round trip B ↔ server (executor + loopback, twice): median {:.2} ms, max {:.2} ms",
        median(&rtt),
        max(&rtt)
    );
    println!("  per onset, frame/sound ms (A's latest send in that cycle, ms behind schedule):");
    for chunk in lines.chunks(5) {
        println!("    {}", chunk.join("  "));
    }
    if sent.late.iter().any(|d| *d > Duration::from_millis(5)) {
        println!(
            "  A sent late by more than 5 ms in some cycle (a busy machine): the room's jitter \
             buffer may rightly add a frame of delay after it, for some seconds"
        );
    }

    if let Some((began, ended)) = sent.steady {
        // Skip the first second (the room's buffers starting), stop at the last send.
        let from = began + Duration::from_secs(1);
        let frames: Vec<&Heard> = heard
            .iter()
            .filter(|h| h.at >= from && h.at <= ended)
            .collect();
        let seconds = (ended - from).as_secs_f64();
        let bytes: usize = frames.iter().map(|h| h.bytes).sum();
        let sent_seconds = (ended - began).as_secs_f64();
        println!(
            "steady talking: B receives {:.0} B/s ({:.1} frames/s, {:.0} B per frame, header + Opus; \
             add 2 B websocket framing per frame); A sends {:.0} B/s",
            bytes as f64 / seconds,
            frames.len() as f64 / seconds,
            bytes as f64 / frames.len().max(1) as f64,
            sent.steady_bytes as f64 / sent_seconds,
        );
    }
    smol::block_on(async {
        va.leave().await;
    });
    drop(vb);
    drop(server);
}

// ---------------------------------------------------------------- main

fn main() {
    let started = Instant::now();
    // `cargo bench` passes `--bench`; a plain word picks one half.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |part: &str| only.as_deref().is_none_or(|o| o == part);
    println!("load average at start: {}", load_average());
    if run("mixing") {
        mixing();
    }
    if run("latency") {
        real_server();
    }
    if run("sockets") {
        sockets();
    }
    println!(
        "\nvoice bench took {:.0} s; load average at the end: {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews every number here.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn mixing() {
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "voice bench: Opus {} kb/s, complexity {}, FEC {}; {} cores visible; one room on one thread",
        EncoderSettings::default().bitrate / 1000,
        EncoderSettings::default().complexity,
        EncoderSettings::default().fec,
        cores
    );
    let mut voices = Voices(Vec::new());
    let t = Instant::now();
    voices.ensure(150);
    let levels: Vec<f32> = speech_like(0, 100)
        .chunks_exact(FRAME_SAMPLES)
        .map(level_dbfs)
        .collect();
    println!(
        "pre-encoded 150 talkers × {VOICE_FRAMES} frames in {:.1} s (talker 0's frame levels {:.1}..{:.1} dBFS)",
        t.elapsed().as_secs_f64(),
        levels.iter().copied().fold(f32::MAX, f32::min),
        levels.iter().copied().fold(f32::MIN, f32::max),
    );
    println!(
        "columns: mixed = talkers mixed per tick; dec/tick, enc/tick = Opus decodes, encodes per tick; µs of \
         receive + tick per 20 ms tick, as this thread's CPU time (cpu) and as elapsed time (wall, which includes \
         preemption by whatever else runs); %20ms = share of one core; B/s = header + Opus bytes per second \
         received by a listener / by a talker; ×shared = per-listener mean ÷ shared mean"
    );

    let four = sweep(
        "(a) 4 talkers + N listeners",
        Scenario::FourTalkers,
        &[0, 10, 50, 100, 250, 500, 1000],
        &mut voices,
    );
    let all = sweep(
        "(b) N people, all talking",
        Scenario::AllTalking,
        &[4, 10, 25, 50, 100, 150],
        &mut voices,
    );

    // (c) The server as configured by default: everyone talks, the loudest 8 are mixed.
    let default_cap = hearth::config::VoiceConfig::default().max_mixed_talkers;
    MAX_MIXED.store(default_cap, std::sync::atomic::Ordering::Relaxed);
    sweep(
        &format!("(c) N people, all talking, loudest {default_cap} mixed (server default)"),
        Scenario::AllTalking,
        &[25, 50, 100, 150],
        &mut voices,
    );
    MAX_MIXED.store(usize::MAX, std::sync::atomic::Ordering::Relaxed);

    println!(
        "\nlargest room whose mean tick fits on one core (straight-line fit of the sweep, then a check run)"
    );
    for (name, scenario, results) in [
        ("(a) 4 talkers + N lstn", Scenario::FourTalkers, &four),
        ("(b) N all talking", Scenario::AllTalking, &all),
    ] {
        for (mode, points) in results.iter() {
            let c = capacity(name, scenario, *mode, points, &mut voices);
            print_capacity(&c);
        }
    }
    println!("goals: ≥ 500 people with 4 talkers, ≥ 100 all talking, in one core's 20 ms");
    println!("mixing part took {:.0} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------- sockets

/// Listeners in the room at each step of the end-to-end run.
const SOCKET_STEPS: [usize; 5] = [0, 100, 250, 500, 1000];
const SOCKET_TALKERS: usize = 4;
const SOCKET_SETTLE: Duration = Duration::from_secs(2);
const SOCKET_WINDOW: Duration = Duration::from_secs(5);

/// CPU seconds (user + system) the process `pid` has used.
fn process_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command's closing parenthesis, from field 3 (state) on.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks / per_second
}

/// Resident memory of the process `pid`, MiB.
fn process_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A new user, member of the guild behind `code`.
async fn member(origin: &str, name: &str, code: &str) -> Client {
    let client = Client::with_device_key(SigningKey::generate_ed25519());
    client
        .register(origin, name, PASSWORD)
        .await
        .expect("register");
    post(
        &client,
        &format!("{origin}/api/v1/invites/{code}"),
        json!({}),
    )
    .await;
    client
}

/// A new user, member of the guild behind `code`, in the voice channel `voice`.
async fn voice_member(origin: &str, name: &str, code: &str, voice: &str) -> VoiceConnection {
    member(origin, name, code)
        .await
        .join_voice(origin, voice)
        .await
        .expect("join voice")
}

fn sockets() {
    let most = *SOCKET_STEPS.iter().max().unwrap_or(&0);
    let server = start_server_with(&format!(
        "[voice]\nmax_participants = {}\n",
        most + SOCKET_TALKERS + 1
    ));
    let origin = server.origin.clone();
    let pid = server.child.id();
    println!(
        "\nsockets: the release server on {origin}, one room, {SOCKET_TALKERS} talkers, listeners added step by step"
    );
    let owner = Client::with_device_key(SigningKey::generate_ed25519());
    let (code, voice) = smol::block_on(async {
        owner
            .register(&origin, "owner", PASSWORD)
            .await
            .expect("register");
        voice_guild(&owner, &origin).await
    });

    // Talkers on their own thread, on an absolute 20 ms schedule.
    let mut voices = Voices(Vec::new());
    voices.ensure(SOCKET_TALKERS);
    let talkers: Vec<VoiceConnection> = smol::block_on(async {
        let mut talkers = Vec::new();
        for t in 0..SOCKET_TALKERS {
            talkers.push(voice_member(&origin, &format!("talker{t}"), &code, &voice).await);
        }
        talkers
    });
    let done = Arc::new(AtomicBool::new(false));
    let talking = {
        let done = done.clone();
        let packets: Vec<Vec<Vec<u8>>> = voices.0[..SOCKET_TALKERS].to_vec();
        std::thread::spawn(move || {
            smol::block_on(async {
                let start = Instant::now();
                let mut k: u32 = 0;
                while !done.load(Ordering::Relaxed) {
                    smol::Timer::at(start + Duration::from_micros(FRAME_MICROS) * k).await;
                    for (t, talker) in talkers.iter().enumerate() {
                        let frame = hearth::voice::wire::VoiceFrame {
                            seq: k as u16,
                            timestamp: k.wrapping_mul(FRAME_SAMPLES as u32),
                            payload: packets[t][k as usize % packets[t].len()].clone(),
                        };
                        let _ = talker.send_frame(&frame).await;
                    }
                    k += 1;
                }
                for talker in talkers {
                    talker.leave().await;
                }
            })
        })
    };

    println!(
        "{:>9} {:>10} {:>12} {:>14} {:>10} {:>16} {:>10}",
        "listeners",
        "server CPU",
        "CPU/listener",
        "RSS before MiB",
        "RSS MiB",
        "frames/s each",
        "cut off"
    );
    let mut listeners: Vec<VoiceConnection> = Vec::new();
    let mut points: Vec<(f64, f64)> = Vec::new();
    let mut rss: Vec<(f64, f64)> = Vec::new();
    for &n in &SOCKET_STEPS {
        // Users first (registration, login, joining the guild), then their voice sockets:
        // the memory before and after shows what the sockets take.
        let users: Vec<Client> = smol::block_on(async {
            let mut users = Vec::new();
            for i in listeners.len()..n {
                users.push(member(&origin, &format!("listener{i}"), &code).await);
            }
            users
        });
        let before = process_rss_mib(pid);
        smol::block_on(async {
            for user in &users {
                listeners.push(user.join_voice(&origin, &voice).await.expect("join voice"));
            }
        });
        std::thread::sleep(SOCKET_SETTLE);
        for l in &listeners {
            l.drain();
        }
        let cpu0 = process_cpu_secs(pid);
        let t0 = Instant::now();
        std::thread::sleep(SOCKET_WINDOW);
        let cpu = process_cpu_secs(pid) - cpu0;
        let wall = t0.elapsed().as_secs_f64();
        let mut per_second = Vec::new();
        let mut cut = 0;
        for l in &listeners {
            let events = l.drain();
            if events
                .iter()
                .any(|e| matches!(e, VoiceEvent::Closed { .. }))
            {
                cut += 1;
            }
            let audio = events
                .iter()
                .filter(|e| matches!(e, VoiceEvent::Audio(_)))
                .count();
            per_second.push(audio as f64 / wall);
        }
        let load = cpu / wall;
        points.push((n as f64, load));
        let memory = process_rss_mib(pid);
        rss.push((n as f64, memory));
        let (mean, min) = if per_second.is_empty() {
            (0.0, 0.0)
        } else {
            (
                per_second.iter().sum::<f64>() / per_second.len() as f64,
                per_second.iter().cloned().fold(f64::INFINITY, f64::min),
            )
        };
        let per_listener = if n > 0 {
            format!(
                "{:.1} µs/frame",
                (load - points[0].1) * 1e6 / (n as f64 * 50.0)
            )
        } else {
            "—".into()
        };
        println!(
            "{:>9} {:>9.1}% {:>12} {:>14.1} {:>10.1} {:>16} {:>10}",
            n,
            load * 100.0,
            per_listener,
            before,
            memory,
            if n > 0 {
                format!("{mean:.1} (min {min:.1})")
            } else {
                "—".into()
            },
            cut
        );
    }
    done.store(true, Ordering::Relaxed);
    let _ = talking.join();
    let (_, slope) = fit(&points);
    let (_, rss_slope) = fit(&rss);
    println!(
        "fit: each listener adds {:.2} % of a core ({:.1} µs CPU per frame sent), so one core carries about {:.0} listeners with the room; {:.1} KiB of server memory per listener",
        slope * 100.0,
        slope * 1e6 / 50.0,
        if slope > 0.0 { 1.0 / slope } else { f64::INFINITY },
        rss_slope * 1024.0
    );
}
