//! Protection of the accept loop: caps on open connections (in total and per client
//! address) and a deadline on every request, enforced on the connection's own reads and
//! writes so that no client can hold a connection, and the memory behind it, by sending
//! or reading slowly.
//!
//! A connection waits at most `idle_secs` for the first byte of a request; from that byte
//! the whole request (head, body, handling, the answer, and draining a body the handler
//! did not read) has `request_secs`; a request that ran out of time is answered 408 (when
//! its body was being read) and the connection closes. A connection upgraded to a
//! websocket has no deadline: the websocket's own heartbeats take over.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The answer to a connection over a cap (plain HTTP; a TLS client sees the connection
/// close).
pub const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: application/json\r\nRetry-After: 10\r\nConnection: close\r\nContent-Length: 85\r\n\r\n\
{\"error\":\"too_many_connections\",\"message\":\"too many open connections; retry shortly\"}";

/// How long an answer may still take to write after its request ran out of time.
const CLOSING_GRACE: Duration = Duration::from_secs(5);

/// The key connections are counted under: the IPv4 address, or the /64 network of an
/// IPv6 address (one household or host gets a whole /64).
pub fn address_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// Open connections, in total and per address.
pub struct ConnectionLimits {
    max_total: usize,
    max_per_address: usize,
    counts: Mutex<Counts>,
    /// Open connections, for metrics.
    open: Arc<crate::metrics::Gauge>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_address: HashMap<String, usize>,
}

impl ConnectionLimits {
    /// Limits of `max_total` connections, `max_per_address` from one address.
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<ConnectionLimits> {
        ConnectionLimits::counted_in(max_total, max_per_address, Arc::default())
    }

    /// Limits whose open connections are also counted in `open`.
    pub fn counted_in(
        max_total: usize,
        max_per_address: usize,
        open: Arc<crate::metrics::Gauge>,
    ) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_address,
            counts: Mutex::new(Counts::default()),
            open,
        })
    }

    /// A slot for a new connection from `ip`, or `None` when either cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let key = address_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let from_address = counts.per_address.get(&key).copied().unwrap_or(0);
        if counts.total >= self.max_total || from_address >= self.max_per_address {
            return None;
        }
        counts.total += 1;
        counts.per_address.insert(key.clone(), from_address + 1);
        self.open.inc();
        Some(Slot {
            limits: self.clone(),
            key,
        })
    }
}

/// One admitted connection; its count is given back when dropped.
pub struct Slot {
    limits: Arc<ConnectionLimits>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.limits.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        self.limits.open.dec();
        if let Some(n) = counts.per_address.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.per_address.remove(&self.key);
            }
        }
    }
}

/// Where a connection is in its request cycle.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Waiting for a request's first byte.
    Idle(Instant),
    /// A request is being read, handled or answered.
    Request(Instant),
    /// Answered; the next read starts the wait for another request, unless the answer
    /// closes the connection (then reads only drain the body, within the deadline).
    Answered { deadline: Instant, closing: bool },
    /// The request ran out of time: its answer may still be written, nothing more is read.
    TimedOut(Instant),
    /// A websocket: no deadline.
    Upgraded,
}

/// What a read or write may do now.
enum Gate {
    Until(Instant),
    EndOfInput,
    Free,
}

struct State {
    phase: Mutex<Phase>,
    /// A handler is working on a request (between its head and its answer).
    handling: std::sync::atomic::AtomicBool,
    /// Upgraded to a websocket: reads and writes (every audio frame) skip the lock.
    upgraded: std::sync::atomic::AtomicBool,
    idle: Duration,
    request: Duration,
    _slot: Slot,
}

impl State {
    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The per-connection handle the request handler uses to mark an answer.
#[derive(Clone)]
pub struct Clock(Arc<State>);

impl Clock {
    /// Called with each answer before it is written: a websocket upgrade lifts the
    /// deadline; otherwise the request's deadline goes on covering the write and, for a
    /// closing answer, the draining of its unread body.
    pub fn answered(&self, upgraded: bool, closing: bool) {
        self.0
            .handling
            .store(false, std::sync::atomic::Ordering::Relaxed);
        if upgraded {
            self.0
                .upgraded
                .store(true, std::sync::atomic::Ordering::Release);
        }
        let mut phase = self.0.phase();
        *phase = match *phase {
            _ if upgraded => Phase::Upgraded,
            Phase::Request(deadline) | Phase::Idle(deadline) => {
                Phase::Answered { deadline, closing }
            }
            Phase::Answered {
                deadline,
                closing: was,
            } => Phase::Answered {
                deadline,
                closing: was || closing,
            },
            Phase::TimedOut(deadline) => Phase::TimedOut(deadline),
            Phase::Upgraded => Phase::Upgraded,
        };
    }
}

impl Clock {
    /// A request's head was read and its handler starts.
    pub fn handling_started(&self) {
        self.0
            .handling
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a handler is working on a request (it has not answered yet).
    pub fn handling(&self) -> bool {
        self.0.handling.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Gives the request being handled until `by` from now, when that is later than its
    /// deadline: for the few routes, administrators' only, that move a whole box's
    /// backup, which `request_secs` would cut off on a big box or a slow link.
    pub fn extend_request(&self, by: Duration) {
        let mut phase = self.0.phase();
        if let Phase::Request(deadline) = *phase {
            *phase = Phase::Request(deadline.max(Instant::now() + by));
        }
    }
}

/// A connection whose reads and writes keep to the deadlines of its request cycle.
pub struct Guarded<IO> {
    io: IO,
    state: Arc<State>,
    timer: Option<(Instant, smol::Timer)>,
}

impl<IO: Clone> Clone for Guarded<IO> {
    fn clone(&self) -> Self {
        Guarded {
            io: self.io.clone(),
            state: self.state.clone(),
            timer: None,
        }
    }
}

impl<IO> Guarded<IO> {
    /// Wraps a new connection holding `slot`; the clock marks its answers.
    pub fn new(io: IO, slot: Slot, idle: Duration, request: Duration) -> (Guarded<IO>, Clock) {
        let state = Arc::new(State {
            phase: Mutex::new(Phase::Idle(Instant::now() + idle)),
            handling: std::sync::atomic::AtomicBool::new(false),
            upgraded: std::sync::atomic::AtomicBool::new(false),
            idle,
            request,
            _slot: slot,
        });
        let clock = Clock(state.clone());
        (
            Guarded {
                io,
                state,
                timer: None,
            },
            clock,
        )
    }

    fn read_gate(&self) -> Gate {
        if self
            .state
            .upgraded
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Gate::Free;
        }
        let mut phase = self.state.phase();
        match *phase {
            Phase::Upgraded => Gate::Free,
            Phase::TimedOut(_) => Gate::EndOfInput,
            // The rest of an unread body is drained (a client that writes its whole body
            // before reading would otherwise never see the answer), within the deadline.
            Phase::Answered {
                deadline,
                closing: true,
            } => Gate::Until(deadline),
            Phase::Answered { closing: false, .. } => {
                let deadline = Instant::now() + self.state.idle;
                *phase = Phase::Idle(deadline);
                Gate::Until(deadline)
            }
            Phase::Idle(deadline) | Phase::Request(deadline) => Gate::Until(deadline),
        }
    }

    fn write_gate(&self) -> Gate {
        if self
            .state
            .upgraded
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Gate::Free;
        }
        match *self.state.phase() {
            Phase::Upgraded => Gate::Free,
            Phase::Idle(deadline) | Phase::Request(deadline) => Gate::Until(deadline),
            Phase::Answered { deadline, .. } | Phase::TimedOut(deadline) => Gate::Until(deadline),
        }
    }

    /// The first byte of a request starts its deadline.
    fn got_bytes(&self) {
        if self
            .state
            .upgraded
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        let mut phase = self.state.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Request(Instant::now() + self.state.request);
        }
    }

    /// A read ran out of time: the answer saying so still gets a moment to be written,
    /// and then the connection closes.
    fn timed_out(&self) -> io::Error {
        let mut phase = self.state.phase();
        if !matches!(*phase, Phase::Upgraded) {
            *phase = Phase::TimedOut(Instant::now() + CLOSING_GRACE);
        }
        io::Error::new(io::ErrorKind::TimedOut, "the request took too long")
    }

    /// Whether `deadline` has passed; otherwise wakes the task when it does.
    fn expired(&mut self, cx: &mut Context<'_>, deadline: Instant) -> bool {
        if Instant::now() >= deadline {
            return true;
        }
        if !matches!(&self.timer, Some((at, _)) if *at == deadline) {
            self.timer = Some((deadline, smol::Timer::at(deadline)));
        }
        match &mut self.timer {
            Some((_, timer)) => Pin::new(timer).poll(cx).is_ready(),
            None => false,
        }
    }
}

use std::future::Future;

impl<IO: futures_lite::AsyncRead + Unpin> futures_lite::AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let deadline = match self.read_gate() {
            Gate::Free => None,
            Gate::EndOfInput => return Poll::Ready(Ok(0)),
            Gate::Until(deadline) => Some(deadline),
        };
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Poll::Ready(Err(self.timed_out()));
        }
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.got_bytes();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => match deadline {
                Some(d) if self.expired(cx, d) => Poll::Ready(Err(self.timed_out())),
                _ => Poll::Pending,
            },
            other => other,
        }
    }
}

impl<IO: futures_lite::AsyncWrite + Unpin> Guarded<IO> {
    fn poll_io<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut IO>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let deadline = match self.write_gate() {
            Gate::Until(deadline) => Some(deadline),
            _ => None,
        };
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "the answer took too long");
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Poll::Ready(Err(timed_out()));
        }
        match op(Pin::new(&mut self.io), cx) {
            Poll::Pending => match deadline {
                Some(d) if self.expired(cx, d) => Poll::Ready(Err(timed_out())),
                _ => Poll::Pending,
            },
            other => other,
        }
    }
}

impl<IO: futures_lite::AsyncWrite + Unpin> futures_lite::AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_io(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_io(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_over_capacity_answer_is_well_formed() {
        let text = std::str::from_utf8(OVER_CAPACITY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.ends_with(&format!("Content-Length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "too_many_connections");
    }

    #[test]
    fn addresses_count_per_host_and_ipv6_network() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let first = limits.admit(a).unwrap();
        let _second = limits.admit(mapped).unwrap();
        assert!(limits.admit(a).is_none(), "third from one address");
        let net1: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let net2: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let _third = limits.admit(net1).unwrap();
        assert!(limits.admit(net2).is_none(), "total reached");
        drop(first);
        assert!(limits.admit(a).is_some());
        assert_eq!(address_key(net2), "2001:db8:1:2::/64");
    }
}
