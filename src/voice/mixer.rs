//! Mix-minus with clipping protection.
//!
//! Each tick the talkers' decoded frames are summed once in i32. The full mix (for everyone
//! not talking, encoded once and shared) is that sum; each talker's own mix is the sum
//! minus their own frame. So a tick costs N+1 output buffers for N talkers, whatever the
//! number of listeners, and the work per talker is one subtraction per sample rather than
//! a sum over the others.
//!
//! Sums of several loud voices exceed i16. Every output has its own limiter: a gain taken
//! from the frame's peak, applied within a millisecond when it must fall (attack) and
//! recovering over about 120 ms when it may rise (release), ramped across the frame so
//! there are no steps. A gain (rather than a sample-by-sample soft clip) keeps the waveform
//! shape: a clipper would add harmonics and intermodulation products that can land on
//! another talker's pitch, and the tone tests would "hear" a tone nobody sent. The limiter
//! state is kept per talker across ticks, and a new talker's own mix starts from the full
//! mix's gain, which is what they were hearing until then.

use super::{PcmFrame, FRAME_SAMPLES};

/// Peak the limiter aims for, about −1 dBFS: some headroom for the codec's own overshoot.
const LIMIT: f32 = 29_000.0;
/// Samples over which a falling gain is reached (1 ms at 48 kHz): fast enough that only the
/// first millisecond of a sudden shout can exceed the limit, slow enough not to click.
const ATTACK_SAMPLES: usize = 48;
/// Fraction of the distance to the wanted gain recovered per 20 ms frame when the gain may
/// rise again: a time constant of about 120 ms, so the level does not pump between words.
const RELEASE: f32 = 0.15;
/// Within this of unity the gain snaps to exactly 1, so quiet mixes are bit-exact sums.
const SNAP: f32 = 1e-3;
/// At most this many talkers are mixed: 65 535 full-scale frames still sum within i32, so
/// the sum can never overflow whatever the caller passes.
pub const MAX_TALKERS: usize = 65_535;

/// One output's limiter state, kept across ticks.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Limiter {
    /// The gain at the end of the previous frame; 1.0 = untouched.
    gain: f32,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter { gain: 1.0 }
    }
}

impl Limiter {
    /// Writes `input` (whose largest magnitude is `peak`) to `out` within the i16 range,
    /// attenuated as needed, and updates the gain.
    fn apply(&mut self, input: &[i32; FRAME_SAMPLES], peak: u32, out: &mut PcmFrame) {
        let wanted = if peak as f32 > LIMIT {
            LIMIT / peak as f32
        } else {
            1.0
        };
        if wanted >= 1.0 && self.gain >= 1.0 {
            // Below the limit and fully released: an exact copy.
            for (o, &x) in out.iter_mut().zip(input) {
                *o = x.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            }
            return;
        }
        let start = self.gain;
        if wanted < start {
            // Attack: reach the wanted gain within a millisecond, and hold samples in that
            // millisecond to the limit so the ramp itself cannot overshoot.
            let step = (wanted - start) / ATTACK_SAMPLES as f32;
            for (i, (o, &x)) in out.iter_mut().zip(input).enumerate() {
                let mut g = if i < ATTACK_SAMPLES {
                    start + step * (i + 1) as f32
                } else {
                    wanted
                };
                let magnitude = x.unsigned_abs() as f32;
                if magnitude * g > LIMIT {
                    g = LIMIT / magnitude;
                }
                *o = scale(x, g);
            }
            self.gain = wanted;
        } else {
            // Release: move part of the way towards the wanted gain, ramped over the frame.
            // Every gain on the ramp is at most `wanted`, so nothing exceeds the limit.
            let mut end = start + (wanted - start) * RELEASE;
            if wanted - end < SNAP {
                end = wanted;
            }
            let step = (end - start) / FRAME_SAMPLES as f32;
            for (i, (o, &x)) in out.iter_mut().zip(input).enumerate() {
                *o = scale(x, start + step * (i + 1) as f32);
            }
            self.gain = end;
        }
    }
}

/// `x · gain` rounded (half away from zero) and saturated into i16: a float-to-int cast
/// saturates, so even a wrong gain cannot wrap. Written with `copysign` rather than
/// `round()`, which is a libm call on baseline x86-64 and stops the loop vectorising.
#[inline]
fn scale(x: i32, gain: f32) -> i16 {
    let y = x as f32 * gain;
    (y + 0.5f32.copysign(y)) as i16
}

/// One talker's output buffer and limiter.
#[derive(Debug)]
struct Output<T> {
    id: T,
    limiter: Limiter,
    frame: Box<PcmFrame>,
}

/// The mixer of one room. Buffers are kept between ticks, so once it has seen the largest
/// number of talkers it does not allocate again.
#[derive(Debug)]
pub struct Mixer<T> {
    /// The sum of all talkers.
    sum: Box<[i32; FRAME_SAMPLES]>,
    /// One talker's mix-minus before limiting.
    scratch: Box<[i32; FRAME_SAMPLES]>,
    full: Box<PcmFrame>,
    full_limiter: Limiter,
    /// Aligned with the last tick's talkers, in their order.
    outputs: Vec<Output<T>>,
    /// Buffers of talkers who stopped, for the next ones who start. Boxed so a buffer
    /// moves between a talker and this pool as a pointer, not a 1920-byte copy.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<PcmFrame>>,
}

impl<T: Copy + PartialEq> Default for Mixer<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + PartialEq> Mixer<T> {
    /// A mixer with no talkers.
    pub fn new() -> Self {
        Mixer {
            sum: Box::new([0; FRAME_SAMPLES]),
            scratch: Box::new([0; FRAME_SAMPLES]),
            full: Box::new([0; FRAME_SAMPLES]),
            full_limiter: Limiter::default(),
            outputs: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Mixes one tick. `talkers` holds this tick's decoded (or concealed) frame of each
    /// talker, with ids that should be distinct (a repeated id gets its own output, and
    /// hears itself in the other's). Talkers beyond [`MAX_TALKERS`] are ignored. Returns
    /// the full mix and, per talker in the same order, the mix without them.
    pub fn mix(&mut self, talkers: &[(T, &PcmFrame)]) -> Mix<'_, T> {
        let talkers = &talkers[..talkers.len().min(MAX_TALKERS)];
        self.match_outputs(talkers);

        self.sum.fill(0);
        for (_, frame) in talkers {
            for (s, &x) in self.sum.iter_mut().zip(frame.iter()) {
                *s += i32::from(x);
            }
        }
        let peak = self.sum.iter().map(|x| x.unsigned_abs()).max().unwrap_or(0);
        self.full_limiter.apply(&self.sum, peak, &mut self.full);

        for (output, (_, own)) in self.outputs.iter_mut().zip(talkers) {
            let mut peak = 0u32;
            for ((m, &s), &x) in self.scratch.iter_mut().zip(self.sum.iter()).zip(own.iter()) {
                *m = s - i32::from(x);
                peak = peak.max(m.unsigned_abs());
            }
            output.limiter.apply(&self.scratch, peak, &mut output.frame);
        }
        self.last_mix()
    }

    /// The result of the last [`Mixer::mix`] again (until the next one).
    pub fn last_mix(&self) -> Mix<'_, T> {
        Mix {
            full: &self.full,
            full_gain: self.full_limiter.gain,
            outputs: &self.outputs,
        }
    }

    /// Reorders the per-talker state to match `talkers`, creating state for new talkers and
    /// retiring the state of those who left. Linear in the number of talkers when the set
    /// and order are unchanged, which is the common case.
    fn match_outputs(&mut self, talkers: &[(T, &PcmFrame)]) {
        for (i, &(id, _)) in talkers.iter().enumerate() {
            let found = self
                .outputs
                .iter()
                .skip(i)
                .position(|o| o.id == id)
                .map(|j| i + j);
            match found {
                Some(j) => self.outputs.swap(i, j),
                None => {
                    let frame = self
                        .spare
                        .pop()
                        .unwrap_or_else(|| Box::new([0; FRAME_SAMPLES]));
                    // Until now this talker heard the full mix: continue from its gain.
                    self.outputs.push(Output {
                        id,
                        limiter: self.full_limiter,
                        frame,
                    });
                    // The state displaced from position i moves to the end, where a later
                    // talker may still find it.
                    let last = self.outputs.len() - 1;
                    self.outputs.swap(i, last);
                }
            }
        }
        while self.outputs.len() > talkers.len() {
            if let Some(output) = self.outputs.pop() {
                self.spare.push(output.frame);
            }
        }
    }
}

/// The result of one tick, borrowed from the [`Mixer`] until the next.
#[derive(Debug)]
pub struct Mix<'a, T> {
    full: &'a PcmFrame,
    full_gain: f32,
    outputs: &'a [Output<T>],
}

impl<'a, T: Copy + PartialEq> Mix<'a, T> {
    /// The mix of every talker: what everyone who is not talking hears (one shared encode).
    pub fn full(&self) -> &'a PcmFrame {
        self.full
    }

    /// The limiter gain applied at the end of the full mix (1.0 = none).
    pub fn full_gain(&self) -> f32 {
        self.full_gain
    }

    /// Number of talkers, hence of mix-minus outputs.
    pub fn len(&self) -> usize {
        self.outputs.len()
    }

    /// Whether nobody talked this tick.
    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// The mix without talker `id`: what they hear. `None` if `id` did not talk this tick
    /// (they hear [`full`](Self::full)).
    pub fn minus(&self, id: T) -> Option<&'a PcmFrame> {
        let outputs: &'a [Output<T>] = self.outputs;
        outputs.iter().find(|o| o.id == id).map(|o| &*o.frame)
    }

    /// Each talker with the mix without them, in the order they were passed to
    /// [`Mixer::mix`].
    pub fn iter(&self) -> impl Iterator<Item = (T, &'a PcmFrame)> + 'a {
        let outputs: &'a [Output<T>] = self.outputs;
        outputs.iter().map(|o| (o.id, &*o.frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::tone::{sine, tone_power};
    use crate::voice::SAMPLE_RATE;
    use std::f64::consts::TAU;

    fn constant(level: i16) -> PcmFrame {
        [level; FRAME_SAMPLES]
    }

    fn tone_frame(freq: f32, amplitude: f32, frame_index: usize) -> PcmFrame {
        let phase =
            TAU * f64::from(freq) * (frame_index * FRAME_SAMPLES) as f64 / f64::from(SAMPLE_RATE);
        let mut out = [0; FRAME_SAMPLES];
        out.copy_from_slice(&sine(freq, amplitude, FRAME_SAMPLES, phase));
        out
    }

    #[test]
    fn each_mix_minus_is_the_sum_of_the_others() {
        let mut mixer = Mixer::new();
        let (a, b, c) = (constant(1000), constant(-3000), constant(5000));
        let mix = mixer.mix(&[(1u32, &a), (2, &b), (3, &c)]);
        assert!(mix.full().iter().all(|&x| x == 3000));
        assert_eq!(mix.len(), 3);
        let expect = [(1u32, 2000i16), (2, 6000), (3, -2000)];
        for (id, level) in expect {
            assert!(mix.minus(id).unwrap().iter().all(|&x| x == level), "{id}");
        }
        assert!(mix.minus(4).is_none());
        let ids: Vec<u32> = mix.iter().map(|(id, _)| id).collect();
        assert_eq!(ids, [1, 2, 3]);
    }

    #[test]
    fn zero_talkers_is_silence() {
        let mut mixer = Mixer::<u32>::new();
        let mix = mixer.mix(&[]);
        assert!(mix.full().iter().all(|&x| x == 0));
        assert!(mix.is_empty());
        // Also right after loud talkers left, while the limiter is releasing.
        let loud = constant(30_000);
        mixer.mix(&[(1, &loud), (2, &loud)]);
        let mix = mixer.mix(&[]);
        assert!(mix.full().iter().all(|&x| x == 0));
    }

    #[test]
    fn a_talkers_own_signal_is_absent_from_their_output() {
        let mut mixer = Mixer::new();
        let freqs = [440.0f32, 660.0, 990.0, 1320.0];
        // Loud enough that the limiter engages: subtraction happens before limiting, so
        // the own signal is still removed exactly.
        for tick in 0..10 {
            let frames: Vec<PcmFrame> = freqs
                .iter()
                .map(|&f| tone_frame(f, 12_000.0, tick))
                .collect();
            let talkers: Vec<(usize, &PcmFrame)> = frames.iter().enumerate().collect();
            let mix = mixer.mix(&talkers);
            for (i, out) in mix.iter() {
                for (j, &f) in freqs.iter().enumerate() {
                    let p = tone_power(out, f, SAMPLE_RATE);
                    // Own tone: only the window's leakage from the others (about −50 dB).
                    if i == j {
                        assert!(p < 1e-5, "talker {i} hears itself at tick {tick}: {p}");
                    } else {
                        assert!(p > 1e-2, "talker {i} misses {f} Hz: {p}");
                    }
                }
            }
            for &f in &freqs {
                assert!(tone_power(mix.full(), f, SAMPLE_RATE) > 1e-2);
            }
        }
    }

    #[test]
    fn many_loud_talkers_never_wrap_and_are_limited_smoothly() {
        let mut mixer = Mixer::new();
        let n = 40;
        let mut previous_gain = 1.0f32;
        let mut previous_last = 0i16;
        for tick in 0..50 {
            // All in phase at 0.9 of full scale: the sum reaches 36 × full scale.
            let frame = tone_frame(500.0, 29_500.0, tick);
            let talkers: Vec<(u32, &PcmFrame)> = (0..n).map(|i| (i, &frame)).collect();
            let mix = mixer.mix(&talkers);
            let full = mix.full();
            // No wrap: every output sample has the sign of the (in-phase) input.
            for (&o, &x) in full.iter().zip(frame.iter()) {
                assert!(i32::from(o) * i32::from(x) >= 0, "wrapped: {o} from {x}");
            }
            let peak = full.iter().map(|x| x.unsigned_abs()).max().unwrap_or(0);
            assert!(f32::from(peak) <= LIMIT + 1.0, "{peak}");
            if tick > 0 {
                // Engaged and steady: near the limit, one shape, no clipping harmonics.
                assert!(f32::from(peak) > LIMIT * 0.95, "{peak}");
                let fundamental = tone_power(full, 500.0, SAMPLE_RATE);
                let third = tone_power(full, 1500.0, SAMPLE_RATE);
                assert!(third < fundamental * 1e-5, "{third} vs {fundamental}");
                // Continuous across the frame boundary (a 500 Hz step is under 2000).
                let jump = (i32::from(full[0]) - i32::from(previous_last)).abs();
                assert!(jump < 2_500, "step {jump} at tick {tick}");
            }
            previous_last = full[FRAME_SAMPLES - 1];
            assert!(mix.full_gain() <= previous_gain);
            previous_gain = mix.full_gain();
            for (_, out) in mix.iter() {
                let peak = out.iter().map(|x| x.unsigned_abs()).max().unwrap_or(0);
                assert!(f32::from(peak) <= LIMIT + 1.0);
            }
        }
        assert!(previous_gain < 0.05);
        // When the crowd falls silent but one, the gain recovers gradually, not in a step.
        let mut gains = Vec::new();
        for tick in 50..150 {
            let frame = tone_frame(500.0, 10_000.0, tick);
            let mix = mixer.mix(&[(0, &frame)]);
            gains.push(mix.full_gain());
        }
        assert!(gains.windows(2).all(|w| w[1] >= w[0]));
        assert!(gains[0] < 0.2, "{}", gains[0]);
        assert!(gains[5] < 0.8, "{}", gains[5]);
        assert_eq!(*gains.last().unwrap_or(&0.0), 1.0);
    }

    #[test]
    fn extreme_frames_stay_in_range() {
        let mut mixer = Mixer::new();
        let max = constant(i16::MAX);
        let min = constant(i16::MIN);
        for _ in 0..3 {
            let talkers: Vec<(u8, &PcmFrame)> = (0..200u8)
                .map(|i| (i, if i % 3 == 0 { &min } else { &max }))
                .collect();
            let mix = mixer.mix(&talkers);
            assert!(mix.full().iter().all(|&x| x > 0));
            for (id, out) in mix.iter() {
                assert!(out.iter().all(|&x| x > 0), "{id}");
            }
        }
    }

    #[test]
    fn state_follows_talkers_as_they_come_go_and_reorder() {
        let mut mixer = Mixer::new();
        let (a, b, c) = (constant(100), constant(200), constant(400));
        mixer.mix(&[(1u32, &a), (2, &b)]);
        let mix = mixer.mix(&[(3, &c), (1, &a)]);
        assert!(mix.minus(3).unwrap().iter().all(|&x| x == 100));
        assert!(mix.minus(1).unwrap().iter().all(|&x| x == 400));
        assert!(mix.minus(2).is_none());
        let mix = mixer.mix(&[(2, &b), (1, &a), (3, &c), (2, &b)]);
        assert_eq!(mix.len(), 4);
        assert!(mix.full().iter().all(|&x| x == 900));
        let outs: Vec<(u32, i16)> = mix.iter().map(|(id, f)| (id, f[0])).collect();
        assert_eq!(outs, [(2, 700), (1, 800), (3, 500), (2, 700)]);
        // Buffers are reused: after warm-up the number of buffers does not grow.
        mixer.mix(&[(5, &a)]);
        mixer.mix(&[(6, &b), (7, &c)]);
        let held = mixer.outputs.len() + mixer.spare.len();
        for _ in 0..10 {
            mixer.mix(&[(5, &a)]);
            mixer.mix(&[(6, &b), (7, &c)]);
        }
        assert_eq!(mixer.outputs.len() + mixer.spare.len(), held);
    }
}
