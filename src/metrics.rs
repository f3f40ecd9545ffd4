//! Counters, gauges and histograms that cost one atomic operation to update, and the
//! Prometheus text exposition format (version 0.0.4) they are read out in. A leaf: any
//! layer may own a counter without pointing upward.
//!
//! The text format is written here rather than with a crate: what `/metrics` serves is a
//! dozen lines of `name value`, and `prometheus-client` would add a registry, its
//! encoder and their dependencies to a binary that runs on a Pi for what a `write!` does.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A count that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (open connections).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one away.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// The value now (never below zero).
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed).max(0) as u64
    }
}

/// Upper bounds of the latency buckets, microseconds: from a commit that hit the page
/// cache (well under a millisecond) to an SD card stalling on a flush (seconds).
pub const LATENCY_BUCKETS_MICROS: [u64; 12] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000,
];

/// A histogram of durations over [`LATENCY_BUCKETS_MICROS`]: one atomic add per bucket
/// hit, plus the count and the sum.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative; the last counts those above every bound).
    buckets: [AtomicU64; LATENCY_BUCKETS_MICROS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, took: std::time::Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(LATENCY_BUCKETS_MICROS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Cumulative counts at each bound (Prometheus' `le` buckets, `+Inf` last), the
    /// count, and the sum in microseconds.
    pub fn snapshot(&self) -> (Vec<u64>, u64, u64) {
        let mut running = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Ordering::Relaxed);
                running
            })
            .collect();
        (
            cumulative,
            self.count.load(Ordering::Relaxed),
            self.sum_micros.load(Ordering::Relaxed),
        )
    }
}

/// One `/metrics` answer being written.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// An empty answer.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    fn head(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// A counter (its name should end in `_total`).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.head(name, help, "counter");
        let _ = writeln!(self.text, "{name} {value}");
    }

    /// A gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.head(name, help, "gauge");
        let _ = writeln!(self.text, "{name} {value}");
    }

    /// A histogram of durations, in seconds as Prometheus names them.
    pub fn seconds_histogram(&mut self, name: &str, help: &str, histogram: &Histogram) {
        self.head(name, help, "histogram");
        let (cumulative, count, sum_micros) = histogram.snapshot();
        for (bound, n) in LATENCY_BUCKETS_MICROS.iter().zip(&cumulative) {
            let le = *bound as f64 / 1e6;
            let _ = writeln!(self.text, "{name}_bucket{{le=\"{le}\"}} {n}");
        }
        let all = cumulative.last().copied().unwrap_or(0);
        let _ = writeln!(self.text, "{name}_bucket{{le=\"+Inf\"}} {all}");
        let _ = writeln!(self.text, "{name}_sum {}", sum_micros as f64 / 1e6);
        let _ = writeln!(self.text, "{name}_count {count}");
    }

    /// The text, for `Content-Type: text/plain; version=0.0.4`.
    pub fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(30));
        let (cumulative, count, sum) = h.snapshot();
        assert_eq!(count, 4);
        assert_eq!(sum, 300 + 500 + 7_000 + 30_000_000);
        assert_eq!(cumulative[0], 2, "≤ 0.5 ms");
        assert_eq!(cumulative[3], 2, "≤ 5 ms");
        assert_eq!(cumulative[4], 3, "≤ 10 ms");
        assert_eq!(cumulative[LATENCY_BUCKETS_MICROS.len() - 1], 3);
        assert_eq!(*cumulative.last().unwrap(), 4, "+Inf");

        let mut out = Exposition::new();
        out.seconds_histogram("x_seconds", "X.", &h);
        out.counter("y_total", "Y.", 3);
        out.gauge("z", "Z.", 0);
        let text = out.finish();
        assert!(text.contains("# TYPE x_seconds histogram\n"));
        assert!(text.contains("x_seconds_bucket{le=\"0.0005\"} 2\n"));
        assert!(text.contains("x_seconds_bucket{le=\"0.01\"} 3\n"));
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("x_seconds_count 4\n"));
        assert!(text.contains("# TYPE y_total counter\ny_total 3\n"));
        assert!(text.contains("# TYPE z gauge\nz 0\n"));
    }

    #[test]
    fn a_gauge_never_reads_below_zero() {
        let g = Gauge::default();
        g.inc();
        g.dec();
        g.dec();
        assert_eq!(g.get(), 0);
        g.inc();
        g.inc();
        assert_eq!(g.get(), 1);
    }
}
