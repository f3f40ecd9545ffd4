//! Talking detection: is this talker speaking, frame by frame, without flapping.
//!
//! A frame is loud when its RMS level (dBFS) is some decibels above the talker's noise
//! floor. The floor is the quietest frame of the last couple of seconds (minimum
//! statistics): speech always has pauses between words, so the minimum finds the
//! background, and it follows a changing background within the window. The floor is capped
//! so that a sustained loud sound (a held note, a test tone) never becomes "background" and
//! goes unheard. Speaking starts after a few consecutive loud frames (attack: a click is
//! not speech) and ends after a run of quiet ones (hangover: the gaps between words do not
//! end it).

/// Level reported for digital silence, dBFS (below the quietest nonzero i16 signal).
const SILENCE_DBFS: f32 = -100.0;
/// Blocks in the noise-floor window; the floor is the minimum over these blocks and the
/// current one, so the window slides in steps of a block instead of every frame.
const FLOOR_BLOCKS: usize = 4;

/// A change in speaking state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speaking {
    /// The talker started speaking.
    Started,
    /// The talker stopped speaking.
    Stopped,
}

/// Tuning of a [`Vad`].
#[derive(Clone, Debug, PartialEq)]
pub struct VadConfig {
    /// How far above the noise floor a frame must be to count as loud, dB (default 10).
    pub margin_db: f32,
    /// Lowest noise floor assumed, dBFS (default −70): below it, faint hiss still needs the
    /// margin above this level to count.
    pub floor_min_dbfs: f32,
    /// Highest noise floor assumed, dBFS (default −45): anything `margin_db` above it is
    /// loud however long it lasts.
    pub floor_max_dbfs: f32,
    /// Consecutive loud frames before speaking starts (default 2 = 40 ms).
    pub attack_frames: u32,
    /// Consecutive quiet frames before speaking stops (default 10 = 200 ms).
    pub hangover_frames: u32,
    /// Frames over which the noise floor is the minimum (default 100 = 2 s).
    pub floor_window_frames: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            margin_db: 10.0,
            floor_min_dbfs: -70.0,
            floor_max_dbfs: -45.0,
            attack_frames: 2,
            hangover_frames: 10,
            floor_window_frames: 100,
        }
    }
}

/// The talking detector of one talker. Call [`update`](Self::update) with each decoded (or
/// concealed) frame, or [`idle`](Self::idle) for a tick with no audio.
#[derive(Clone, Debug)]
pub struct Vad {
    config: VadConfig,
    speaking: bool,
    /// Whether the last frame was above the threshold.
    loud: bool,
    loud_run: u32,
    quiet_run: u32,
    level_db: f32,
    /// Minimum level of each completed block, oldest overwritten first.
    blocks: [f32; FLOOR_BLOCKS],
    next_block: usize,
    /// Minimum level of the block being filled, and its frames so far.
    block_min: f32,
    block_frames: u32,
}

impl Default for Vad {
    fn default() -> Self {
        Vad::new(VadConfig::default())
    }
}

impl Vad {
    /// A detector that starts out not speaking. Non-finite or inverted settings are
    /// replaced by the defaults.
    pub fn new(config: VadConfig) -> Self {
        let defaults = VadConfig::default();
        let finite = |v: f32, d: f32| if v.is_finite() { v } else { d };
        let floor_min_dbfs = finite(config.floor_min_dbfs, defaults.floor_min_dbfs);
        let floor_max_dbfs = finite(config.floor_max_dbfs, defaults.floor_max_dbfs);
        let (floor_min_dbfs, floor_max_dbfs) = if floor_min_dbfs <= floor_max_dbfs {
            (floor_min_dbfs, floor_max_dbfs)
        } else {
            (defaults.floor_min_dbfs, defaults.floor_max_dbfs)
        };
        let config = VadConfig {
            margin_db: finite(config.margin_db, defaults.margin_db),
            floor_min_dbfs,
            floor_max_dbfs,
            attack_frames: config.attack_frames.max(1),
            hangover_frames: config.hangover_frames.max(1),
            floor_window_frames: config.floor_window_frames.max(FLOOR_BLOCKS as u32),
        };
        Vad {
            config,
            speaking: false,
            loud: false,
            loud_run: 0,
            quiet_run: 0,
            level_db: SILENCE_DBFS,
            // Empty blocks do not pull the floor down; the cap bounds it until they fill.
            blocks: [f32::MAX; FLOOR_BLOCKS],
            next_block: 0,
            block_min: f32::MAX,
            block_frames: 0,
        }
    }

    /// Takes one frame of audio; returns the change in speaking state, if any.
    pub fn update(&mut self, samples: &[i16]) -> Option<Speaking> {
        self.level_db = level_dbfs(samples);
        self.track_floor(self.level_db);
        self.loud = self.level_db > self.noise_floor_dbfs() + self.config.margin_db;
        self.step(self.loud)
    }

    /// A tick with no audio from this talker (not sending): counts as quiet for the
    /// hangover but leaves the noise floor alone, since absence is not background noise.
    pub fn idle(&mut self) -> Option<Speaking> {
        self.level_db = SILENCE_DBFS;
        self.loud = false;
        self.step(false)
    }

    /// Whether the talker is speaking: the debounced state behind the events.
    pub fn speaking(&self) -> bool {
        self.speaking
    }

    /// Whether the last frame was above the threshold, before attack and hangover. Mixing
    /// a talker while `speaking() || loud()` keeps the first frames of a word, which the
    /// attack delays, in the mix.
    pub fn loud(&self) -> bool {
        self.loud
    }

    /// The last frame's RMS level, dBFS (a full-scale sine is about −3).
    pub fn level_dbfs(&self) -> f32 {
        self.level_db
    }

    /// The current noise-floor estimate, dBFS.
    pub fn noise_floor_dbfs(&self) -> f32 {
        let oldest = self.blocks.iter().copied().fold(self.block_min, f32::min);
        oldest.clamp(self.config.floor_min_dbfs, self.config.floor_max_dbfs)
    }

    fn track_floor(&mut self, level: f32) {
        self.block_min = self.block_min.min(level);
        self.block_frames += 1;
        let block_len = self.config.floor_window_frames / FLOOR_BLOCKS as u32;
        if self.block_frames >= block_len {
            if let Some(slot) = self.blocks.get_mut(self.next_block) {
                *slot = self.block_min;
            }
            self.next_block = (self.next_block + 1) % FLOOR_BLOCKS;
            self.block_min = f32::MAX;
            self.block_frames = 0;
        }
    }

    fn step(&mut self, loud: bool) -> Option<Speaking> {
        if loud {
            self.loud_run = self.loud_run.saturating_add(1);
            self.quiet_run = 0;
        } else {
            self.quiet_run = self.quiet_run.saturating_add(1);
            self.loud_run = 0;
        }
        if !self.speaking && self.loud_run >= self.config.attack_frames {
            self.speaking = true;
            return Some(Speaking::Started);
        }
        if self.speaking && self.quiet_run >= self.config.hangover_frames {
            self.speaking = false;
            return Some(Speaking::Stopped);
        }
        None
    }
}

/// RMS level of `samples` in dBFS (relative to a full-scale square wave, so a full-scale
/// sine is about −3 dBFS); digital silence or an empty slice is −100.
pub fn level_dbfs(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return SILENCE_DBFS;
    }
    let energy = samples.iter().fold(0u64, |acc, &x| {
        let x = i64::from(x);
        acc.saturating_add((x * x) as u64)
    });
    let rms = (energy as f64 / samples.len() as f64).sqrt();
    if rms <= 0.0 {
        return SILENCE_DBFS;
    }
    ((20.0 * (rms / 32768.0).log10()) as f32).max(SILENCE_DBFS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::tone::sine;
    use crate::voice::{FRAME_SAMPLES, SAMPLE_RATE};
    use std::f64::consts::TAU;

    /// Deterministic white noise of peak `amplitude` (xorshift, no dependency).
    struct Noise(u64);
    impl Noise {
        fn frame(&mut self, amplitude: i32) -> Vec<i16> {
            (0..FRAME_SAMPLES)
                .map(|_| {
                    self.0 ^= self.0 << 13;
                    self.0 ^= self.0 >> 7;
                    self.0 ^= self.0 << 17;
                    let unit = (self.0 >> 40) as i64 % 2001 - 1000;
                    (unit * i64::from(amplitude) / 1000) as i16
                })
                .collect()
        }
    }

    fn tone(frame_index: usize, amplitude: f32) -> Vec<i16> {
        let phase = TAU * 300.0 * (frame_index * FRAME_SAMPLES) as f64 / f64::from(SAMPLE_RATE);
        sine(300.0, amplitude, FRAME_SAMPLES, phase)
    }

    fn add(a: &[i16], b: &[i16]) -> Vec<i16> {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| x.saturating_add(y))
            .collect()
    }

    /// Feeds frames and records (frame index, event).
    fn run(vad: &mut Vad, frames: impl IntoIterator<Item = Vec<i16>>) -> Vec<(usize, Speaking)> {
        frames
            .into_iter()
            .enumerate()
            .filter_map(|(i, f)| vad.update(&f).map(|e| (i, e)))
            .collect()
    }

    #[test]
    fn levels_in_dbfs() {
        assert_eq!(level_dbfs(&[]), SILENCE_DBFS);
        assert_eq!(level_dbfs(&[0; 960]), SILENCE_DBFS);
        assert!((level_dbfs(&[i16::MIN; 960])).abs() < 0.01);
        let full_sine = sine(1000.0, 32767.0, FRAME_SAMPLES, 0.0);
        assert!((level_dbfs(&full_sine) + 3.01).abs() < 0.05);
    }

    #[test]
    fn silence_never_speaks() {
        let mut vad = Vad::default();
        assert!(run(&mut vad, (0..500).map(|_| vec![0i16; FRAME_SAMPLES])).is_empty());
        assert!(!vad.speaking());
    }

    #[test]
    fn steady_noise_never_speaks() {
        for amplitude in [30, 300, 600] {
            let mut vad = Vad::default();
            let mut noise = Noise(amplitude as u64);
            let events = run(&mut vad, (0..500).map(|_| noise.frame(amplitude)));
            assert!(events.is_empty(), "noise {amplitude}: {events:?}");
        }
    }

    #[test]
    fn a_tone_burst_starts_after_the_attack_and_stops_after_the_hangover() {
        let mut vad = Vad::default();
        let mut noise = Noise(3);
        // 1 s of faint noise, 300 ms of tone, 1 s of noise.
        let frames = (0..115).map(|i| {
            let n = noise.frame(100);
            if (50..65).contains(&i) {
                add(&n, &tone(i, 8000.0))
            } else {
                n
            }
        });
        let mut loud = Vec::new();
        let events: Vec<_> = frames
            .enumerate()
            .filter_map(|(i, f)| {
                let event = vad.update(&f);
                loud.push(vad.loud());
                event.map(|e| (i, e))
            })
            .collect();
        assert_eq!(events, [(51, Speaking::Started), (74, Speaking::Stopped)]);
        // Loud exactly while the tone plays, from its first frame.
        assert!(loud
            .iter()
            .enumerate()
            .all(|(i, &l)| l == (50..65).contains(&i)));
    }

    #[test]
    fn gaps_between_words_do_not_flap() {
        let mut vad = Vad::default();
        let mut noise = Noise(5);
        // Five 200 ms "words" separated by 100 ms pauses, over noise.
        let frames = (0..98).map(|i| {
            let n = noise.frame(200);
            let in_word = (20..95).contains(&i) && (i - 20) % 15 < 10;
            if in_word {
                add(&n, &tone(i, 5000.0))
            } else {
                n
            }
        });
        let events = run(&mut vad, frames);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0], (21, Speaking::Started));
        assert!(vad.speaking());
    }

    #[test]
    fn a_single_click_is_not_speech() {
        let mut vad = Vad::default();
        let frames = (0..30).map(|i| {
            if i == 10 || i == 20 {
                vec![20_000i16; FRAME_SAMPLES]
            } else {
                vec![0i16; FRAME_SAMPLES]
            }
        });
        assert!(run(&mut vad, frames).is_empty());
    }

    #[test]
    fn a_long_tone_stays_speaking() {
        let mut vad = Vad::default();
        let events = run(&mut vad, (0..1000).map(|i| tone(i, 3000.0)));
        assert_eq!(events, [(1, Speaking::Started)]);
    }

    #[test]
    fn the_floor_follows_the_background() {
        let mut vad = Vad::default();
        let mut noise = Noise(9);
        // Quiet room: a soft voice counts.
        run(&mut vad, (0..200).map(|_| noise.frame(10)));
        assert!(vad.noise_floor_dbfs() < -60.0);
        let soft: Vec<_> = (0..5)
            .map(|i| add(&noise.frame(10), &tone(i, 100.0)))
            .collect();
        assert_eq!(run(&mut vad, soft).first(), Some(&(1, Speaking::Started)));
        run(&mut vad, (0..20).map(|_| noise.frame(10)));
        assert!(!vad.speaking());
        // Louder background: after the window the floor has risen, so that same soft voice
        // no longer does.
        run(&mut vad, (0..200).map(|_| noise.frame(400)));
        assert!(vad.noise_floor_dbfs() > -50.0, "{}", vad.noise_floor_dbfs());
        let soft: Vec<_> = (0..5)
            .map(|i| add(&noise.frame(400), &tone(i, 100.0)))
            .collect();
        assert!(run(&mut vad, soft).is_empty());
    }

    #[test]
    fn idle_ticks_end_speaking_after_the_hangover() {
        let mut vad = Vad::default();
        run(&mut vad, (0..5).map(|i| tone(i, 8000.0)));
        assert!(vad.speaking());
        let events: Vec<_> = (0..10).filter_map(|i| vad.idle().map(|e| (i, e))).collect();
        assert_eq!(events, [(9, Speaking::Stopped)]);
    }

    #[test]
    fn odd_settings_are_sanitised() {
        let mut vad = Vad::new(VadConfig {
            margin_db: f32::NAN,
            floor_min_dbfs: 0.0,
            floor_max_dbfs: -90.0,
            attack_frames: 0,
            hangover_frames: 0,
            floor_window_frames: 0,
        });
        for i in 0..20 {
            vad.update(&tone(i, 8000.0));
            vad.update(&[]);
            vad.idle();
        }
    }
}
