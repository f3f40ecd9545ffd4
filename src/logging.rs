//! The server's log: the backend of the `log` facade, writing to the systemd journal with
//! priorities when standard error is connected to it, and to standard error otherwise.
//!
//! Both go through standard error. Under systemd with `StandardError=journal` (the
//! default), journald reads a `<N>` at the start of a line as its syslog priority
//! (sd-daemon(3), `SyslogLevelPrefix=` in systemd.exec(5)), so each line is written as
//! `<3>text`; the journal itself names the unit and process. Anywhere else each line is
//! `hearth: text`, as the server has always written it, with no level word, so whatever
//! reads the log finds the same lines.
//!
//! The last [`RECENT_CAPACITY`] warnings and errors are also kept in memory ([`recent`]),
//! for the administrators' console. The ring is the process's, like the `log` facade
//! it hangs off: every server a process runs (tests run several) writes into one log.

use crate::config::LogLevel;
use log::{Level, LevelFilter, Log, Metadata, Record};
use serde::Serialize;
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::Write;
use std::sync::Mutex;

/// How many warnings and errors [`recent`] keeps.
pub const RECENT_CAPACITY: usize = 200;

/// Longest message kept in the ring, characters (the rest is cut).
pub const RECENT_MESSAGE_CHARS: usize = 1000;

/// One warning or error as the console shows it.
#[derive(Clone, Debug, Serialize)]
pub struct LogRecord {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// `warn` or `error`.
    pub level: &'static str,
    /// The module that logged it.
    pub target: String,
    /// The text (at most [`RECENT_MESSAGE_CHARS`] characters).
    pub message: String,
}

/// A bounded ring of the latest warnings and errors.
pub struct Recent {
    records: Mutex<VecDeque<LogRecord>>,
}

static RECENT: Recent = Recent {
    records: Mutex::new(VecDeque::new()),
};

/// The warnings and errors this process logged last.
pub fn recent() -> &'static Recent {
    &RECENT
}

impl Recent {
    /// Keeps a warning or an error (other levels are ignored), forgetting the oldest
    /// beyond [`RECENT_CAPACITY`].
    pub fn record(&self, level: Level, target: &str, text: &str) {
        let level = match level {
            Level::Error => "error",
            Level::Warn => "warn",
            _ => return,
        };
        let record = LogRecord {
            at_ms: crate::system::now_ms(),
            level,
            target: target.chars().take(100).collect(),
            message: text.chars().take(RECENT_MESSAGE_CHARS).collect(),
        };
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() >= RECENT_CAPACITY {
            records.pop_front();
        }
        records.push_back(record);
    }

    /// The records kept, newest first, at most `limit`.
    pub fn latest(&self, limit: usize) -> Vec<LogRecord> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.iter().rev().take(limit).cloned().collect()
    }
}

/// Crates whose messages show at the configured level. Every other crate's show at `warn`
/// and above unless the level is `debug` or `trace`: their `info` is chatter to an
/// administrator.
const FOLLOW_LEVEL: &[&str] = &[
    "hearth",
    "rustls",
    "mdns_sd",
    "async_tungstenite",
    "tungstenite",
];

/// Where log lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Standard error is the systemd journal: lines carry their priority.
    Journal,
    /// Plain standard error: lines start with `hearth: `.
    Stderr,
}

/// The `log` filter for a configured level.
pub fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::Error,
        LogLevel::Warn => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::Trace => LevelFilter::Trace,
    }
}

/// Where to log, given `$JOURNAL_STREAM` and the device and inode numbers of standard
/// error. systemd sets the variable to `DEVICE:INODE` of the stream it connected to the
/// journal (systemd.exec(5)); it is inherited by children whose standard error may be
/// something else, so only a match counts.
pub fn destination(journal_stream: Option<&OsStr>, stderr: Option<(u64, u64)>) -> Destination {
    let stream = journal_stream
        .and_then(OsStr::to_str)
        .and_then(parse_journal_stream);
    match (stream, stderr) {
        (Some(stream), Some(stderr)) if stream == stderr => Destination::Journal,
        _ => Destination::Stderr,
    }
}

/// `DEVICE:INODE`, both decimal.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (device, inode) = value.split_once(':')?;
    Some((device.parse().ok()?, inode.parse().ok()?))
}

/// The device and inode numbers of this process's standard error, if it is open.
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let metadata = std::fs::File::from(fd).metadata().ok()?;
    Some((metadata.dev(), metadata.ino()))
}

/// The syslog priority journald records for a level.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The `log` backend.
#[derive(Debug)]
pub struct Logger {
    level: LevelFilter,
    destination: Destination,
}

impl Logger {
    /// A logger writing messages at `level` and above to `destination`.
    pub fn new(level: LevelFilter, destination: Destination) -> Logger {
        Logger { level, destination }
    }

    /// The lines written for one message (each ending in a newline): every line of the
    /// text is prefixed, so a continuation line keeps the priority in the journal.
    /// Messages from other crates name their module.
    pub fn lines(&self, level: Level, target: &str, text: &str) -> String {
        let prefix = match self.destination {
            Destination::Journal => format!("<{}>", priority(level)),
            Destination::Stderr => "hearth: ".to_owned(),
        };
        let from_us = target == "hearth" || target.starts_with("hearth::");
        let mut out = String::new();
        for line in text.lines() {
            out.push_str(&prefix);
            if !from_us {
                out.push_str(target);
                out.push_str(": ");
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        let target = metadata.target();
        let krate = target.split("::").next().unwrap_or(target);
        let limit = if FOLLOW_LEVEL.contains(&krate) || self.level >= LevelFilter::Debug {
            self.level
        } else {
            self.level.min(LevelFilter::Warn)
        };
        metadata.level() <= limit
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = record.args().to_string();
        recent().record(record.level(), record.target(), &text);
        let lines = self.lines(record.level(), record.target(), &text);
        // One write per message, so lines of different threads do not interleave; a log
        // that cannot be written has nowhere to report that.
        let _ = std::io::stderr().lock().write_all(lines.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the logger for this process at `level`, to the journal if standard error is
/// connected to it. Fails if a logger is already installed.
pub fn init(level: LogLevel) -> Result<Destination, log::SetLoggerError> {
    let destination = destination(
        std::env::var_os("JOURNAL_STREAM").as_deref(),
        stderr_identity(),
    );
    let filter = level_filter(level);
    log::set_logger(Box::leak(Box::new(Logger::new(filter, destination))))?;
    log::set_max_level(filter);
    Ok(destination)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_only_when_journal_stream_names_stderr() {
        let ours = Some((64769, 123456));
        let stream = |s: &str| destination(Some(OsStr::new(s)), ours);
        assert_eq!(stream("64769:123456"), Destination::Journal);
        // Inherited from a parent whose standard error was the journal.
        assert_eq!(stream("64769:999"), Destination::Stderr);
        assert_eq!(stream("1:123456"), Destination::Stderr);
        for bad in [
            "",
            "64769",
            "64769:",
            ":123456",
            "a:b",
            "64769:123456:1",
            "-1:2",
        ] {
            assert_eq!(stream(bad), Destination::Stderr, "{bad:?}");
        }
        assert_eq!(destination(None, ours), Destination::Stderr);
        assert_eq!(
            destination(Some(OsStr::new("64769:123456")), None),
            Destination::Stderr
        );
    }

    #[test]
    fn stderr_lines_keep_the_hearth_prefix_and_journal_lines_carry_priorities() {
        let stderr = Logger::new(LevelFilter::Info, Destination::Stderr);
        assert_eq!(
            stderr.lines(Level::Warn, "hearth::lan::mdns", "LAN discovery off: x"),
            "hearth: LAN discovery off: x\n"
        );
        assert_eq!(
            stderr.lines(Level::Warn, "rustls::conn", "sent fatal alert"),
            "hearth: rustls::conn: sent fatal alert\n"
        );
        let journal = Logger::new(LevelFilter::Info, Destination::Journal);
        assert_eq!(
            journal.lines(Level::Error, "hearth::http::error", "storage error: x"),
            "<3>storage error: x\n"
        );
        assert_eq!(journal.lines(Level::Warn, "hearth", "a"), "<4>a\n");
        assert_eq!(journal.lines(Level::Info, "hearth", "a\nb"), "<6>a\n<6>b\n");
        assert_eq!(journal.lines(Level::Debug, "hearth", "a"), "<7>a\n");
        assert_eq!(journal.lines(Level::Trace, "hearth", "a"), "<7>a\n");
    }

    #[test]
    fn the_ring_keeps_the_latest_warnings_and_errors() {
        let ring = Recent {
            records: Mutex::new(VecDeque::new()),
        };
        ring.record(Level::Info, "hearth", "chatter");
        for i in 0..RECENT_CAPACITY + 5 {
            ring.record(Level::Warn, "hearth::x", &format!("w{i}"));
        }
        ring.record(Level::Error, "hearth::y", &"e".repeat(5000));
        let latest = ring.latest(usize::MAX);
        assert_eq!(latest.len(), RECENT_CAPACITY);
        assert_eq!(latest[0].level, "error");
        assert_eq!(latest[0].message.len(), RECENT_MESSAGE_CHARS);
        assert_eq!(latest[1].message, format!("w{}", RECENT_CAPACITY + 4));
        assert_eq!(latest.last().unwrap().message, "w6");
        assert_eq!(ring.latest(3).len(), 3);
    }

    #[test]
    fn other_crates_show_at_warn_unless_debugging() {
        let enabled = |logger: &Logger, level: Level, target: &str| {
            logger.enabled(&Metadata::builder().level(level).target(target).build())
        };
        let info = Logger::new(level_filter(LogLevel::Info), Destination::Stderr);
        assert!(enabled(&info, Level::Info, "hearth::app"));
        assert!(!enabled(&info, Level::Debug, "hearth::app"));
        assert!(enabled(&info, Level::Info, "mdns_sd::service_daemon"));
        assert!(enabled(&info, Level::Info, "rustls::server"));
        assert!(enabled(&info, Level::Info, "async_tungstenite"));
        assert!(!enabled(&info, Level::Info, "tide::log"));
        assert!(enabled(&info, Level::Warn, "tide::log"));
        assert!(!enabled(&info, Level::Info, "hearthish"));
        let error = Logger::new(level_filter(LogLevel::Error), Destination::Stderr);
        assert!(!enabled(&error, Level::Warn, "hearth::lan::mdns"));
        assert!(!enabled(&error, Level::Warn, "tide::log"));
        assert!(enabled(&error, Level::Error, "tide::log"));
        let debug = Logger::new(level_filter(LogLevel::Debug), Destination::Stderr);
        assert!(enabled(&debug, Level::Debug, "async_h1::server"));
        assert!(!enabled(&debug, Level::Trace, "rustls::conn"));
    }
}
