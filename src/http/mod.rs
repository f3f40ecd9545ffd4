//! The HTTP layer: the smol accept loop handing each connection to async-h1, tide routes,
//! body limits, CORS, and error mapping. Only this module knows tide.
//!
//! CORS: `/api/`, `/oauth/`, `/.well-known/hearth` and the OAuth metadata answer any origin (`*`, never with
//! credentials: the DPoP headers are the credentials) and allow the headers a web client
//! served by another box sends; other paths grant nothing, preflights included. The
//! gateway and voice websockets check no `Origin`: the single-use ticket, got with a DPoP
//! request, is what authenticates, so a client served by another box connects as well.

pub mod auth;
pub mod conn;
pub mod error;
mod federation;
mod gateway;
mod handlers;
mod links;
mod routes;
mod voice;
mod web;

use crate::app::App;
use crate::model::{Id, UserId};
use crate::system::now;
use auth::Principal;
use error::ApiError;
use futures_lite::{AsyncReadExt, FutureExt};
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;
use std::sync::Arc;

/// How long a client has to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A request with the app as state.
pub type Req = tide::Request<Arc<App>>;
/// What handlers return.
pub type ApiResult = Result<tide::Response, ApiError>;

/// Builds the route table.
pub fn build(app: Arc<App>) -> tide::Server<Arc<App>> {
    let mut server = tide::with_state(app);
    server.with(Finish);
    routes::install(&mut server);
    server
}

/// Serves HTTP on `listener` until `shutdown` completes, on a small multi-threaded
/// executor of its own (one thread per core).
pub async fn serve(
    listener: smol::net::TcpListener,
    app: Arc<App>,
    tls: Option<futures_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let server = build(app.clone());
    let executor = app.executor.clone();
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut workers = Vec::new();
    for i in 0..threads {
        let executor = executor.clone();
        let stopped = stopped.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("hearth-http-{i}"))
            .spawn(move || {
                smol::block_on(executor.run(async move {
                    let _ = stopped.recv().await;
                }))
            });
        match spawned {
            Ok(handle) => workers.push(handle),
            Err(e) => log::error!("cannot start worker thread: {e}"),
        }
    }
    let throttle = &app.services.config.throttle;
    let limits = conn::ConnectionLimits::counted_in(
        max_connections(throttle.max_connections),
        throttle.max_connections_per_address,
        app.http_connections.clone(),
    );
    let idle = std::time::Duration::from_secs(throttle.idle_secs);
    let request = std::time::Duration::from_secs(throttle.request_secs);
    let accept_loop = async {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    // Over a cap the connection gets one write of a fixed answer, if the
                    // socket takes it at once, and is closed: it costs nothing more.
                    let Some(slot) = limits.admit(peer.ip()) else {
                        let mut stream = stream;
                        let _ = futures_lite::future::poll_once(
                            futures_lite::AsyncWriteExt::write(&mut stream, conn::OVER_CAPACITY),
                        )
                        .await;
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let server = server.clone();
                    let stopped = stopped.clone();
                    let tls = tls.clone();
                    executor
                        .spawn(async move {
                            let connection = async move {
                                match tls {
                                    None => {
                                        let (io, clock) =
                                            conn::Guarded::new(stream, slot, idle, request);
                                        serve_connection(io, clock, server, peer).await
                                    }
                                    Some(acceptor) => {
                                        let handshake =
                                            async { acceptor.accept(stream).await.ok() }
                                                .or(async {
                                                    smol::Timer::after(TLS_HANDSHAKE_TIMEOUT).await;
                                                    None
                                                })
                                                .await;
                                        match handshake {
                                            Some(tls) => {
                                                let (io, clock) = conn::Guarded::new(
                                                    crate::lan::tls::Shared::new(tls),
                                                    slot,
                                                    idle,
                                                    request,
                                                );
                                                serve_connection(io, clock, server, peer).await
                                            }
                                            None => Ok(()),
                                        }
                                    }
                                }
                            };
                            let _ = connection
                                .or(async {
                                    let _ = stopped.recv().await;
                                    Ok(())
                                })
                                .await;
                        })
                        .detach();
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    log::warn!("accept failed: {e}");
                    smol::Timer::after(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    };
    accept_loop.or(shutdown).await;
    // Close websockets cleanly (each gets a close frame with its resume point) before
    // the executor stops.
    app.gateway.hub.shutdown();
    app.voice.shutdown();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while (app.gateway.sessions_running() > 0 || app.voice.sessions_running() > 0)
        && std::time::Instant::now() < deadline
    {
        smol::Timer::after(std::time::Duration::from_millis(10)).await;
    }
    drop(stop);
    for worker in workers {
        let _ = worker.join();
    }
    // Connection tasks woken by `stop` that the workers left unrun still hold the app
    // (and the executor holds them): run them to their end here, or the app, and with it
    // the database and its lock, would outlive the server.
    while executor.try_tick() {}
}

/// File descriptors kept for the database, files being read or written, the admin socket
/// and outgoing federation calls.
const FD_RESERVE: u64 = 128;

/// The configured connection cap, lowered to fit the process's open-file limit (a full
/// descriptor table would fail the database and uploads, not just new connections).
fn max_connections(configured: usize) -> usize {
    match rlimit::Resource::NOFILE.get() {
        Ok((soft, _)) if (soft.saturating_sub(FD_RESERVE) as usize) < configured => {
            let fitted = soft.saturating_sub(FD_RESERVE).max(16) as usize;
            log::warn!(
                "at most {fitted} connections (max_connections is {configured}, the \
                 open-file limit {soft})"
            );
            fitted
        }
        _ => configured,
    }
}

/// Serves HTTP on one connection. http-types panics on a header value that is not ASCII
/// (async-h1 builds the request with it); such a request is answered 400 rather than
/// dropped, and a panic in a handler 500, and the connection closes.
async fn serve_connection<IO>(
    io: conn::Guarded<IO>,
    clock: conn::Clock,
    server: tide::Server<Arc<App>>,
    peer: std::net::SocketAddr,
) -> http_types::Result<()>
where
    IO: futures_lite::AsyncRead + futures_lite::AsyncWrite + Clone + Send + Sync + Unpin + 'static,
{
    use futures_lite::AsyncWriteExt;
    let mut writer = io.clone();
    let io = Primed::new(io);
    let mut primer = io.clone();
    let mut h1 = async_h1::server::Server::new(io, respond_with(server, peer, clock.clone()));
    // `async_h1::accept`'s loop, with each request's first byte awaited on smol's reactor
    // first (see `Primed`), under the same limit async-h1 puts on the wait for a head.
    let requests = async {
        loop {
            let arrived = primer
                .prime()
                .or(async {
                    smol::Timer::after(HEADERS_TIMEOUT).await;
                    Ok(false)
                })
                .await?;
            if !arrived || h1.accept_one().await? == async_h1::server::ConnectionStatus::Close {
                break;
            }
        }
        http_types::Result::Ok(())
    };
    let served = std::panic::AssertUnwindSafe(requests).catch_unwind().await;
    let Err(_) = served else {
        return served.unwrap_or(Ok(()));
    };
    let (status, error) = if clock.handling() {
        (
            "500 Internal Server Error",
            ApiError::new(
                500,
                "internal_error",
                "the server could not complete this request",
            ),
        )
    } else {
        (
            "400 Bad Request",
            ApiError::bad_request(
                "invalid_request",
                "the request head is not valid HTTP (header values must be ASCII)",
            ),
        )
    };
    let body = serde_json::json!({"error": error.code, "message": error.message}).to_string();
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    writer.write_all(answer.as_bytes()).await?;
    writer.flush().await?;
    Ok(())
}

/// How long async-h1 gives a client from the start of the wait for a request to its whole
/// head (its default; `async_h1::ServerOptions` has no setter).
const HEADERS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A connection whose next request's first byte is read before async-h1 reads the head.
///
/// async-h1 races every head against a timer of async-io 1.x, and the first such timer
/// polled starts a second reactor thread ("async-io") beside smol's, for good. The timer
/// is polled only when the head is not there at once: with its first byte read here (on
/// smol's reactor, within the connection's own idle deadline), a head sent in one piece,
/// as clients send it, is whole when async-h1 reads it, and that thread never starts.
#[derive(Clone)]
struct Primed<IO> {
    io: IO,
    /// The byte read ahead, or `NO_BYTE`.
    first: Arc<std::sync::atomic::AtomicU16>,
}

const NO_BYTE: u16 = u16::MAX;

impl<IO: futures_lite::AsyncRead + Unpin> Primed<IO> {
    fn new(io: IO) -> Primed<IO> {
        Primed {
            io,
            first: Arc::new(std::sync::atomic::AtomicU16::new(NO_BYTE)),
        }
    }

    /// Waits for the next request's first byte and keeps it for the next read; false at
    /// the end of the input.
    async fn prime(&mut self) -> std::io::Result<bool> {
        let mut byte = [0u8; 1];
        if self.io.read(&mut byte).await? == 0 {
            return Ok(false);
        }
        self.first
            .store(u16::from(byte[0]), std::sync::atomic::Ordering::Release);
        Ok(true)
    }
}

impl<IO: futures_lite::AsyncRead + Unpin> futures_lite::AsyncRead for Primed<IO> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::sync::atomic::Ordering;
        // A load first: every websocket frame is read through here, and it is cheaper
        // than the swap.
        if !buf.is_empty() && self.first.load(Ordering::Acquire) != NO_BYTE {
            let first = self.first.swap(NO_BYTE, Ordering::AcqRel);
            if let Ok(byte) = u8::try_from(first) {
                buf[0] = byte;
                return std::task::Poll::Ready(Ok(1));
            }
        }
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: futures_lite::AsyncWrite + Unpin> futures_lite::AsyncWrite for Primed<IO> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_close(cx)
    }
}

/// The handler async-h1 calls for each request of a connection: tide's routes, with the
/// peer's address on the request and each answer marked on the connection's clock.
fn respond_with(
    server: tide::Server<Arc<App>>,
    peer: std::net::SocketAddr,
    clock: conn::Clock,
) -> impl Fn(
    http_types::Request,
) -> std::pin::Pin<Box<dyn Future<Output = http_types::Result<http_types::Response>> + Send>> {
    move |mut req: http_types::Request| {
        req.set_peer_addr(Some(peer.to_string()));
        let server = server.clone();
        let clock = clock.clone();
        // A handler may lengthen its own request's deadline (`conn::Clock::extend_request`).
        req.ext_mut().insert(clock.clone());
        clock.handling_started();
        Box::pin(async move {
            let response: http_types::Response = server.respond(req).await?;
            let upgraded = response.status() == http_types::StatusCode::SwitchingProtocols;
            let closing = response
                .header("Connection")
                .is_some_and(|c| c.as_str().eq_ignore_ascii_case("close"));
            clock.answered(upgraded, closing);
            Ok(response)
        })
    }
}

/// The client's address as rate limits count it (see [`conn::address_key`]).
pub fn client_address(req: &Req) -> String {
    req.peer_addr()
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .map(|a| conn::address_key(a.ip()))
        .unwrap_or_default()
}

/// Adds `DPoP-Nonce` to every response and CORS headers to those of the routes a web
/// client served by another box calls, answers CORS preflights, and turns tide's empty
/// 404/405 into the JSON error shape.
struct Finish;

/// The request headers a web client sends to a box: its DPoP-bound token, the proof, a
/// JSON or form body, and, at a box other than its home, its device certificate.
const CORS_ALLOW_HEADERS: &str = "Authorization, DPoP, Content-Type, Hearth-Device-Certificate";
/// The answer headers it reads: the next nonce, why a token or proof was refused, and
/// when to try again.
const CORS_EXPOSE_HEADERS: &str = "DPoP-Nonce, WWW-Authenticate, Retry-After";
/// How long a browser may keep a preflight's answer, seconds (Chromium's ceiling).
const CORS_MAX_AGE: &str = "7200";

/// Whether a web client of another origin may call `path`: the API, OAuth and the box's
/// description. The page, its files, invite links and server-to-server calls are for
/// this origin or for servers only.
fn cross_origin_path(path: &str) -> bool {
    path.starts_with("/api/")
        || path.starts_with("/oauth/")
        || path == "/.well-known/hearth"
        || path == "/.well-known/oauth-authorization-server"
}

/// Grants any origin the cross-origin use of an answer. `*` without
/// `Access-Control-Allow-Credentials`: a request's credentials are its `Authorization`
/// and `DPoP` headers, never cookies, so a page of another origin gains nothing it could
/// not send itself.
fn grant_cross_origin(response: &mut tide::Response, preflight: bool) {
    response.insert_header("Access-Control-Allow-Origin", "*");
    response.insert_header("Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS);
    if preflight {
        response.insert_header("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS);
        response.insert_header(
            "Access-Control-Allow-Methods",
            "GET, POST, PUT, PATCH, DELETE, OPTIONS",
        );
        response.insert_header("Access-Control-Max-Age", CORS_MAX_AGE);
    }
}

#[tide::utils::async_trait]
impl tide::Middleware<Arc<App>> for Finish {
    async fn handle(&self, mut req: Req, next: tide::Next<'_, Arc<App>>) -> tide::Result {
        let app = req.state().clone();
        let body_read = watch_body(&mut req);
        let preflight = req.method() == tide::http::Method::Options;
        let cross_origin = cross_origin_path(req.url().path());
        let mut response = if preflight {
            tide::Response::new(204)
        } else {
            let mut response = next.run(req).await;
            let status = u16::from(response.status());
            if (status == 404 || status == 405)
                && response.is_empty() != Some(false)
                && response.content_type().is_none()
            {
                let (code, message) = if status == 404 {
                    ("not_found", "no such route")
                } else {
                    ("method_not_allowed", "this route does not take that method")
                };
                response = ApiError::new(status, code, message).into_response();
            }
            response
        };
        response.insert_header("DPoP-Nonce", app.dpop.nonce(crate::system::now()));
        if cross_origin {
            grant_cross_origin(&mut response, preflight);
        }
        if response.header("Cache-Control").is_none() {
            response.insert_header("Cache-Control", "no-store");
        }
        if !body_read.load(std::sync::atomic::Ordering::Relaxed) {
            // Answered without reading the whole body (an early error, or a route that
            // takes none). async-h1 drains the rest after the answer through a read-ahead
            // buffer that can swallow the client's next request on this connection, which
            // then waits for the 60 s header timeout. So this connection ends here.
            response.insert_header("Connection", "close");
        }
        Ok(response)
    }
}

/// Wraps the request body so the returned flag turns true once all of it has been read.
fn watch_body(req: &mut Req) -> Arc<std::sync::atomic::AtomicBool> {
    let read = Arc::new(std::sync::atomic::AtomicBool::new(req.len() == Some(0)));
    if !read.load(std::sync::atomic::Ordering::Relaxed) {
        let had_content_type = req.header("Content-Type").is_some();
        let body = req.take_body();
        let (length, mime) = (body.len(), body.mime().clone());
        let watched = WatchedBody {
            inner: body,
            remaining: length,
            read: read.clone(),
        };
        let mut body = tide::Body::from_reader(watched, length);
        body.set_mime(mime);
        req.set_body(body);
        if !had_content_type {
            // take_body/set_body fill in a Content-Type the client never sent.
            req.remove_header("Content-Type");
        }
    }
    read
}

struct WatchedBody {
    inner: tide::Body,
    remaining: Option<usize>,
    read: Arc<std::sync::atomic::AtomicBool>,
}

impl WatchedBody {
    fn note(&mut self, n: usize, asked: bool) {
        let rest = self.remaining.map(|r| r.saturating_sub(n));
        self.remaining = rest;
        if rest == Some(0) || (n == 0 && asked) {
            self.read.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

// The body is already buffered (async-h1 hands tide a buffered reader); delegating
// `AsyncBufRead` avoids a second 8 KiB buffer per request.
impl futures_lite::AsyncBufRead for WatchedBody {
    fn poll_fill_buf(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<&[u8]>> {
        let this = self.get_mut();
        let poll = std::pin::Pin::new(&mut this.inner).poll_fill_buf(cx);
        if let std::task::Poll::Ready(Ok(buf)) = &poll {
            if buf.is_empty() {
                this.read.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        poll
    }

    fn consume(mut self: std::pin::Pin<&mut Self>, amt: usize) {
        std::pin::Pin::new(&mut self.inner).consume(amt);
        self.note(amt, false);
    }
}

impl futures_lite::AsyncRead for WatchedBody {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let poll = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &poll {
            this.note(*n, !buf.is_empty());
        }
        poll
    }
}

/// Reads the body, refusing more than `limit` bytes with 413.
pub async fn read_body(req: &mut Req, limit: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            413,
            "body_too_large",
            format!("the request body is limited to {limit} bytes"),
        )
    };
    if req.len().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let body = req.take_body();
    let mut bytes = Vec::new();
    body.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| ApiError::from(crate::service::Error::Body(e)))?;
    if bytes.len() > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Reads and parses a JSON body within the configured limit.
pub async fn json_body<T: DeserializeOwned>(req: &mut Req) -> Result<T, ApiError> {
    let limit = req.state().services.config.limits.max_body_bytes;
    let bytes = read_body(req, limit).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body is not valid JSON for this request: {e}"),
        )
    })
}

/// A JSON response.
pub fn json<T: Serialize>(status: u16, value: &T) -> ApiResult {
    let mut response = tide::Response::new(status);
    response.set_body(tide::Body::from_json(value).map_err(|e| {
        ApiError::new(
            500,
            "internal_error",
            format!("could not encode the answer: {e}"),
        )
    })?);
    Ok(response)
}

/// An empty 204.
pub fn no_content() -> ApiResult {
    Ok(tide::Response::new(204))
}

/// The path parameter `name` as an id (404 when it is not one).
fn id_param(req: &Req, name: &str) -> Result<Id, ApiError> {
    req.param(name).ok().and_then(Id::parse).ok_or_else(|| {
        ApiError::new(
            404,
            format!("unknown_{}", name.trim_end_matches("_id")),
            format!("{name} is not a valid id"),
        )
    })
}

/// The path parameter `name` as a user id, `@me` being the signed-in user.
fn user_param(req: &Req, name: &str, me: &Principal) -> Result<UserId, ApiError> {
    let raw = req.param(name).unwrap_or("");
    if raw == "@me" {
        return Ok(me.user);
    }
    UserId::parse(raw).ok_or_else(|| ApiError::new(404, "unknown_user", "not a valid user id"))
}

/// The path parameter `name`, percent-decoded.
fn text_param(req: &Req, name: &str) -> Result<String, ApiError> {
    let raw = req.param(name).unwrap_or("");
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::bad_request("invalid_path", format!("{name} is not valid UTF-8")))
}

/// The services of the app serving the request.
fn services(req: &Req) -> &crate::service::Services {
    &req.state().services
}

/// What a rate limit counts.
#[derive(Clone, Copy)]
enum Action {
    Register,
    Message,
    Reaction,
    Upload,
    Settings,
    ReadMark,
}

/// Counts `action` for the client's address and, when signed in, for the user; 429 with
/// `Retry-After` once either limit of the window is spent.
fn throttle(req: &Req, action: Action, user: Option<UserId>) -> Result<(), ApiError> {
    let app = req.state();
    let limits = &app.services.config.throttle;
    let (name, per_address, per_user, window) = match action {
        Action::Register => (
            "register",
            limits.registrations_per_address_hour,
            None,
            3600,
        ),
        Action::Message => (
            "message",
            limits.messages_per_address_minute,
            Some(limits.messages_per_user_minute),
            60,
        ),
        Action::Reaction => (
            "reaction",
            limits.reactions_per_address_minute,
            Some(limits.reactions_per_user_minute),
            60,
        ),
        Action::Upload => (
            "upload",
            limits.uploads_per_address_minute,
            Some(limits.uploads_per_user_minute),
            60,
        ),
        Action::Settings => (
            "settings",
            limits.settings_per_address_minute,
            Some(limits.settings_per_user_minute),
            60,
        ),
        Action::ReadMark => (
            "read_mark",
            limits.read_marks_per_address_minute,
            Some(limits.read_marks_per_user_minute),
            60,
        ),
    };
    let t = now();
    let address = client_address(req);
    if let (Some(user), Some(limit)) = (user, per_user) {
        app.throttle
            .hit(format!("{name}:user:{}", user.to_text()), limit, window, t)?;
    }
    app.throttle
        .hit(format!("{name}:addr:{address}"), per_address, window, t)?;
    Ok(())
}
