//! The HTTP layer: the smol accept loop handing each connection to async-h1, tide routes,
//! body limits, CORS, and error mapping. Only this module knows tide.

pub mod auth;
pub mod error;
mod gateway;
mod routes;

use crate::app::App;
use error::ApiError;
use futures_lite::{AsyncReadExt, FutureExt};
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;
use std::sync::Arc;

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
            Err(e) => eprintln!("hearth: cannot start worker thread: {e}"),
        }
    }
    let accept_loop = async {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let server = server.clone();
                    let stopped = stopped.clone();
                    executor
                        .spawn(async move {
                            let connection = async_h1::accept(stream, |mut req| {
                                req.set_peer_addr(Some(peer.to_string()));
                                let server = server.clone();
                                async move { server.respond(req).await }
                            });
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
                    eprintln!("hearth: accept failed: {e}");
                    smol::Timer::after(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    };
    accept_loop.or(shutdown).await;
    // Close websockets cleanly (each gets a close frame with its resume point) before
    // the executor stops.
    app.gateway.hub.shutdown();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while app.gateway.sessions_running() > 0 && std::time::Instant::now() < deadline {
        smol::Timer::after(std::time::Duration::from_millis(10)).await;
    }
    drop(stop);
    for worker in workers {
        let _ = worker.join();
    }
}

/// Adds `DPoP-Nonce` and CORS headers to every response, answers CORS preflights, and
/// turns tide's empty 404/405 into the JSON error shape.
struct Finish;

#[tide::utils::async_trait]
impl tide::Middleware<Arc<App>> for Finish {
    async fn handle(&self, req: Req, next: tide::Next<'_, Arc<App>>) -> tide::Result {
        let app = req.state().clone();
        let preflight = req.method() == tide::http::Method::Options;
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
        response.insert_header("DPoP-Nonce", app.dpop.nonce(crate::service::now()));
        response.insert_header("Access-Control-Allow-Origin", "*");
        response.insert_header(
            "Access-Control-Allow-Headers",
            "Authorization, DPoP, Content-Type",
        );
        response.insert_header(
            "Access-Control-Allow-Methods",
            "GET, POST, PUT, PATCH, DELETE, OPTIONS",
        );
        response.insert_header(
            "Access-Control-Expose-Headers",
            "DPoP-Nonce, WWW-Authenticate, Retry-After",
        );
        response.insert_header("Cache-Control", "no-store");
        Ok(response)
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
        .map_err(|e| {
            ApiError::bad_request("invalid_body", format!("could not read the body: {e}"))
        })?;
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
