//! Pure-tone generation and detection, for tests: every participant of a test room sends a
//! different sine, and every listener must find the others' tones in its mix and not its
//! own. A Goertzel filter measures one frequency in O(n) without an FFT.

use super::SAMPLE_RATE;
use std::f64::consts::TAU;

/// Power of the component at `freq_hz` in `samples` taken at `rate` Hz, relative to a
/// full-scale sine: a sine of amplitude `a` (in sample units) at exactly `freq_hz` gives
/// about `(a / 32768)²`, so 1.0 is 0 dBFS and 1e-4 is −40 dBFS.
///
/// The samples are Hann-windowed first. Without a window a tone that does not sit exactly on
/// a bin of the block leaks into frequencies far away at −30 dB and more, which would let a
/// loud 440 Hz look like a faint 880 Hz. With it, in a 20 ms block (50 Hz bins), a tone
/// leaks about −48 dB into a frequency 220 Hz away and −64 dB at 340 Hz; longer blocks
/// separate proportionally closer tones. Returns 0.0 for an empty block, a non-finite
/// frequency or a zero rate.
pub fn tone_power(samples: &[i16], freq_hz: f32, rate: u32) -> f32 {
    let n = samples.len();
    if n < 2 || rate == 0 || !freq_hz.is_finite() {
        return 0.0;
    }
    let omega = TAU * f64::from(freq_hz) / f64::from(rate);
    let coeff = 2.0 * omega.cos();
    // The window's step, for a cosine recurrence instead of one cos() per sample.
    let step = TAU / (n - 1) as f64;
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut window_sum = 0.0f64;
    for (i, &x) in samples.iter().enumerate() {
        let w = 0.5 - 0.5 * (step * i as f64).cos();
        window_sum += w;
        let s = f64::from(x) * w + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    // |X|² from the last two states of the recurrence.
    let mag2 = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    if window_sum <= 0.0 || !mag2.is_finite() {
        return 0.0;
    }
    // A sine of amplitude a gives |X| = a·Σw/2, so this recovers (a / full scale)².
    let amplitude = 2.0 * mag2.max(0.0).sqrt() / window_sum;
    let relative = amplitude / 32768.0;
    (relative * relative) as f32
}

/// Whether `samples` (at 48 kHz) hold a tone at `freq_hz` with at least `threshold` power in
/// the units of [`tone_power`] (for example 1e-4 for "louder than −40 dBFS").
pub fn detects(samples: &[i16], freq_hz: f32, threshold: f32) -> bool {
    tone_power(samples, freq_hz, SAMPLE_RATE) >= threshold
}

/// `n` samples at 48 kHz of a sine at `freq_hz` with peak `amplitude` (in sample units,
/// clamped to the i16 range) starting at `phase` radians.
///
/// To continue a tone across frames, pass `phase = 2π · freq_hz · start / 48000` where
/// `start` is the index of the frame's first sample; the phase is reduced in f64 so long
/// runs stay exact.
pub fn sine(freq_hz: f32, amplitude: f32, n: usize, phase: f64) -> Vec<i16> {
    let amplitude = if amplitude.is_finite() {
        f64::from(amplitude).clamp(-32767.0, 32767.0)
    } else {
        0.0
    };
    let freq = if freq_hz.is_finite() {
        f64::from(freq_hz)
    } else {
        0.0
    };
    let phase = if phase.is_finite() {
        phase.rem_euclid(TAU)
    } else {
        0.0
    };
    let step = TAU * freq / f64::from(SAMPLE_RATE);
    (0..n)
        .map(|i| {
            // Reduce per sample so the argument never grows large enough to lose precision.
            let arg = (phase + step * i as f64).rem_euclid(TAU);
            (amplitude * arg.sin()).round() as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::FRAME_SAMPLES;

    fn mix(a: &[i16], b: &[i16]) -> Vec<i16> {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (i32::from(x) + i32::from(y)).clamp(-32768, 32767) as i16)
            .collect()
    }

    #[test]
    fn two_tones_are_found_and_a_third_is_not() {
        let signal = mix(
            &sine(440.0, 8000.0, FRAME_SAMPLES, 0.0),
            &sine(660.0, 8000.0, FRAME_SAMPLES, 1.0),
        );
        let expected = (8000.0f32 / 32768.0).powi(2);
        for f in [440.0, 660.0] {
            let p = tone_power(&signal, f, SAMPLE_RATE);
            assert!(
                (p / expected - 1.0).abs() < 0.1,
                "{f} Hz: {p} vs {expected}"
            );
            assert!(detects(&signal, f, 1e-3));
        }
        let p880 = tone_power(&signal, 880.0, SAMPLE_RATE);
        assert!(p880 < expected * 1e-4, "880 Hz leaked: {p880}");
        assert!(!detects(&signal, 880.0, 1e-4));
    }

    #[test]
    fn sine_continues_across_frames() {
        let f = 523.0;
        let whole = sine(f, 10_000.0, 2 * FRAME_SAMPLES, 0.0);
        let phase = TAU * f64::from(f) * FRAME_SAMPLES as f64 / f64::from(SAMPLE_RATE);
        let second = sine(f, 10_000.0, FRAME_SAMPLES, phase);
        for (a, b) in whole[FRAME_SAMPLES..].iter().zip(&second) {
            assert!((i32::from(*a) - i32::from(*b)).abs() <= 1);
        }
    }

    #[test]
    fn silence_and_odd_inputs_give_no_power() {
        assert_eq!(tone_power(&[], 440.0, SAMPLE_RATE), 0.0);
        assert_eq!(tone_power(&[0; 960], 440.0, SAMPLE_RATE), 0.0);
        assert_eq!(tone_power(&[1000; 960], f32::NAN, SAMPLE_RATE), 0.0);
        assert_eq!(tone_power(&[1000; 960], 440.0, 0), 0.0);
        assert!(sine(f32::INFINITY, f32::NAN, 4, f64::NAN)
            .iter()
            .all(|&x| x == 0));
        let loud = sine(1000.0, 1e9, FRAME_SAMPLES, 0.0);
        assert!(loud.iter().all(|&x| x.unsigned_abs() <= 32767));
    }
}
