//! What the gateway and voice websockets share: sending with a deadline, closing with a
//! code and reason, the reading half that reports what the client sent, the count of
//! running sessions, and the loop of a started session (frames from a bounded queue out,
//! the client's frames in, heartbeats), generic over the frames and ops that differ.

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_lite::{AsyncRead, AsyncWrite, FutureExt, StreamExt};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The sending half of a websocket.
pub type Sink<S> = async_tungstenite::WebSocketSender<S>;

/// The receiving half of a websocket.
pub type Stream<S> = async_tungstenite::WebSocketReceiver<S>;

/// Counts the running sessions of one kind (shutdown waits for them to close cleanly).
#[derive(Debug, Default)]
pub struct Running(AtomicUsize);

/// Counts a running session while alive.
pub struct SessionGuard<'a>(&'a AtomicUsize);

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Running {
    /// Marks a session as running until the guard drops.
    pub fn start(&self) -> SessionGuard<'_> {
        self.0.fetch_add(1, Ordering::AcqRel);
        SessionGuard(&self.0)
    }

    /// Sessions still running.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

fn close_frame(code: u16, reason: String) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

/// Sends with a deadline, so a client that stopped reading cannot hold the task forever.
pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    sink: &mut Sink<S>,
    message: Message,
    within: Duration,
) -> bool {
    let sent = async { sink.send(message).await.is_ok() };
    sent.or(async {
        smol::Timer::after(within).await;
        false
    })
    .await
}

/// Closes with `code` and `reason`, giving each step two seconds.
pub async fn close_with<S: AsyncRead + AsyncWrite + Unpin>(
    sink: &mut Sink<S>,
    code: u16,
    reason: String,
) {
    let _ = send(sink, close_frame(code, reason), Duration::from_secs(2)).await;
    let _ = async { sink.close(None).await }
        .or(async {
            smol::Timer::after(Duration::from_secs(2)).await;
            Ok(())
        })
        .await;
}

/// Closes our side once the client has closed, giving it a second.
async fn hang_up<S: AsyncRead + AsyncWrite + Unpin>(sink: &mut Sink<S>) {
    let _ = async { sink.close(None).await }
        .or(async {
            smol::Timer::after(Duration::from_secs(1)).await;
            Ok(())
        })
        .await;
}

/// What the reading half reports to the session.
pub enum FromClient<Op> {
    /// A text op.
    Op(Op),
    /// A sign of life (a pong, or audio already handed to its room).
    Heard,
    /// Something refused: the session closes with this code and reason.
    Reject(u16, String),
    /// The client closed, or the connection ended.
    Closed,
}

/// What the reading half of a session makes of the frames that carry data.
pub trait Frames: Send {
    /// The text ops of the protocol.
    type Op: Send;
    /// Close code of a malformed frame.
    const MALFORMED: u16;
    /// What a text or binary frame means.
    fn data(&mut self, message: Message) -> FromClient<Self::Op>;
    /// Close code and reason for a frame over the size limit.
    fn too_large(&self) -> (u16, String);
}

/// Reads the client's frames and reports them to the session, until the client closes,
/// sends something refused, or the session stops listening.
pub async fn read<S, F>(
    mut stream: Stream<S>,
    mut frames: F,
    to_session: async_channel::Sender<FromClient<F::Op>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Frames,
{
    loop {
        let item = match stream.next().await {
            None => FromClient::Closed,
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => frames.data(message),
            Some(Ok(Message::Close(_))) => FromClient::Closed,
            Some(Ok(_)) => FromClient::Heard,
            Some(Err(WsError::Capacity(_))) => {
                let (code, reason) = frames.too_large();
                FromClient::Reject(code, reason)
            }
            Some(Err(e)) => FromClient::Reject(F::MALFORMED, format!("websocket error: {e}")),
        };
        let end = matches!(item, FromClient::Reject(..) | FromClient::Closed);
        // Audio is already with the room; only tell the session that the peer is alive,
        // without waiting on it (what is queued ahead tells it as much).
        let delivered = if matches!(item, FromClient::Heard) {
            !matches!(
                to_session.try_send(item),
                Err(async_channel::TrySendError::Closed(_))
            )
        } else {
            to_session.send(item).await.is_ok()
        };
        if !delivered || end {
            break;
        }
    }
}

/// When the loop of [`serve`] checks on the client.
#[derive(Clone, Copy, Debug)]
pub enum Beat {
    /// Every heartbeat: a client silent for two heartbeats is closed, otherwise pinged.
    EveryHeartbeat,
    /// After everything that happens, and at least this often: a client silent for two
    /// heartbeats is closed, and one not pinged for a heartbeat is pinged.
    Polled(Duration),
}

/// How the loop of [`serve`] keeps time.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How often the client is pinged; silent for twice this, it is closed.
    pub heartbeat: Duration,
    /// When the client is checked on.
    pub beat: Beat,
    /// How long sending one frame may take.
    pub within: Duration,
    /// When the client was last heard before the loop started.
    pub last_heard: Instant,
}

/// What differs between the sessions that [`serve`] runs.
pub trait Handler<S>: Send {
    /// What the session's queue holds.
    type Out: Send;
    /// The text ops of the protocol.
    type Op: Send;
    /// Sends (or acts on) one item of the queue; false ends the session.
    fn out(&mut self, sink: &mut Sink<S>, out: Self::Out) -> impl Future<Output = bool> + Send;
    /// Close code and reason once the queue has been closed.
    fn queue_closed(&self) -> (u16, String);
    /// Answers an op of the client; false ends the session.
    fn op(&mut self, sink: &mut Sink<S>, op: Self::Op) -> impl Future<Output = bool> + Send;
    /// Close code and reason for a client silent for two heartbeats.
    fn silent(&self) -> (u16, String);
    /// Runs at the end of each turn of the loop, after the client was checked on; false
    /// ends the session.
    fn after_turn(&mut self, _sink: &mut Sink<S>) -> impl Future<Output = bool> + Send {
        async { true }
    }
}

enum Input<Out, Op> {
    Out(Out),
    OutClosed,
    Client(FromClient<Op>),
    Tick,
}

/// Runs a started session to its end: delivers its queue, hands the client's ops to
/// `handler`, closes with the client's refused frames, answers a close, and pings.
pub async fn serve<S, H>(
    sink: &mut Sink<S>,
    handler: &mut H,
    queue: &async_channel::Receiver<H::Out>,
    from_client: &async_channel::Receiver<FromClient<H::Op>>,
    timing: Timing,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    H: Handler<S>,
{
    let Timing {
        heartbeat,
        beat,
        within,
        mut last_heard,
    } = timing;
    let mut last_ping = Instant::now();
    let mut ticker = smol::Timer::interval(heartbeat);
    loop {
        let input = async {
            match queue.recv().await {
                Ok(out) => Input::Out(out),
                Err(_) => Input::OutClosed,
            }
        }
        .or(async {
            from_client
                .recv()
                .await
                .map(Input::Client)
                .unwrap_or(Input::Client(FromClient::Closed))
        })
        .or(async {
            match beat {
                Beat::EveryHeartbeat => {
                    ticker.next().await;
                }
                Beat::Polled(every) => {
                    smol::Timer::after(every).await;
                }
            }
            Input::Tick
        })
        .await;
        let tick = matches!(input, Input::Tick);
        match input {
            Input::Out(out) => {
                if !handler.out(sink, out).await {
                    return;
                }
            }
            Input::OutClosed => {
                let (code, reason) = handler.queue_closed();
                close_with(sink, code, reason).await;
                return;
            }
            Input::Client(FromClient::Op(op)) => {
                last_heard = Instant::now();
                if !handler.op(sink, op).await {
                    return;
                }
            }
            Input::Client(FromClient::Heard) => last_heard = Instant::now(),
            Input::Client(FromClient::Reject(code, reason)) => {
                close_with(sink, code, reason).await;
                return;
            }
            Input::Client(FromClient::Closed) => {
                hang_up(sink).await;
                return;
            }
            Input::Tick => {}
        }
        let now = Instant::now();
        let (check, ping_due) = match beat {
            Beat::EveryHeartbeat => (tick, tick),
            Beat::Polled(_) => (true, now.duration_since(last_ping) >= heartbeat),
        };
        if check {
            if now.duration_since(last_heard) > heartbeat * 2 {
                let (code, reason) = handler.silent();
                close_with(sink, code, reason).await;
                return;
            }
            if ping_due {
                last_ping = now;
                if !send(sink, Message::Ping(Vec::new().into()), within).await {
                    return;
                }
            }
        }
        if !handler.after_turn(sink).await {
            return;
        }
    }
}
