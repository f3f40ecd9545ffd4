//! HTTP/1.1 over smol TCP with async-h1, keeping idle connections per origin for reuse.

use super::{origin_of, ClientError};
use crate::lan::tls::{connect_origin, ClientStream, ConnectError, Pins};
use futures_lite::AsyncReadExt;
use std::collections::HashMap;
use std::sync::Mutex;

/// Idle connections kept per origin.
const POOL_PER_ORIGIN: usize = 32;
/// Largest response body the client reads.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// An HTTP response, fully read.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ClientError::Protocol(format!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            ))
        })
    }

    /// The `error` code of a JSON error body.
    pub fn error_code(&self) -> Option<String> {
        self.json().ok()?.get("error")?.as_str().map(str::to_string)
    }

    /// `Ok(self)` for 2xx, else the error.
    pub fn ok(self) -> Result<Response, ClientError> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let body = self.json().unwrap_or_default();
        Err(ClientError::Status {
            status: self.status,
            code: body["error"].as_str().unwrap_or("").to_string(),
            message: body["message"].as_str().unwrap_or("").to_string(),
        })
    }
}

/// Connection pool and sender.
#[derive(Default)]
pub struct Transport {
    idle: Mutex<HashMap<String, Vec<ClientStream>>>,
    /// TLS certificate fingerprints pinned per origin.
    pub pins: Pins,
}

/// Maps a failed connection to the client's error.
pub fn connect_error(origin: &str, e: ConnectError) -> ClientError {
    match e {
        ConnectError::Changed { pinned, presented } => ClientError::CertificateChanged {
            origin: origin.to_string(),
            pinned,
            presented,
        },
        ConnectError::Other(message) => ClientError::Network {
            origin: origin.to_string(),
            message,
        },
    }
}

impl Transport {
    async fn connect(&self, origin: &str) -> Result<ClientStream, ClientError> {
        let timeout = async {
            smol::Timer::after(super::CONNECT_TIMEOUT).await;
            Err(ConnectError::Other(format!(
                "no answer within {} s",
                super::CONNECT_TIMEOUT.as_secs()
            )))
        };
        futures_lite::future::or(connect_origin(origin, &self.pins), timeout)
            .await
            .map_err(|e| connect_error(origin, e))
    }

    /// An idle connection the server has not closed (one whose read side would block).
    async fn take_idle(&self, origin: &str) -> Option<ClientStream> {
        loop {
            let stream = self
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(origin)?
                .pop()?;
            if !stream.idle_poisoned().await {
                return Some(stream);
            }
        }
    }

    fn put_idle(&self, origin: &str, stream: ClientStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(origin.to_string()).or_default();
        if list.len() < POOL_PER_ORIGIN {
            list.push(stream);
        }
    }

    /// Sends one request; a reused connection that turns out dead is replaced once.
    pub async fn send(
        &self,
        url: &str,
        method: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Response, ClientError> {
        let origin = origin_of(url)?;
        let parsed_url =
            http_types::Url::parse(url).map_err(|_| ClientError::BadUrl(url.to_string()))?;
        let method: http_types::Method = method
            .parse()
            .map_err(|_| ClientError::Protocol(format!("unknown method {method}")))?;
        let build = || {
            let mut req = http_types::Request::new(method, parsed_url.clone());
            for (name, value) in headers {
                req.append_header(*name, value.as_str());
            }
            req.set_body(body.clone());
            req
        };
        let pooled = self.take_idle(&origin).await;
        // Only requests that may safely run twice are retried on a fresh connection: a
        // POST that failed mid-way may already have been committed.
        let idempotent = matches!(
            method,
            http_types::Method::Get
                | http_types::Method::Put
                | http_types::Method::Delete
                | http_types::Method::Head
        );
        let reused = pooled.is_some() && idempotent;
        let stream = match pooled {
            Some(s) => s,
            None => self.connect(&origin).await?,
        };
        match self.exchange(&origin, stream, build()).await {
            Ok(r) => Ok(r),
            Err(_) if reused => {
                let stream = self.connect(&origin).await?;
                self.exchange(&origin, stream, build()).await
            }
            Err(e) => Err(e),
        }
    }

    async fn exchange(
        &self,
        origin: &str,
        stream: ClientStream,
        req: http_types::Request,
    ) -> Result<Response, ClientError> {
        let network = |message: String| ClientError::Network {
            origin: origin.to_string(),
            message,
        };
        let mut response = async_h1::connect(stream.clone(), req)
            .await
            .map_err(|e| network(e.to_string()))?;
        let mut body = Vec::new();
        response
            .take_body()
            .take(MAX_RESPONSE_BYTES)
            .read_to_end(&mut body)
            .await
            .map_err(|e| network(e.to_string()))?;
        let keep_alive = response
            .header("connection")
            .map(|v| !v.as_str().eq_ignore_ascii_case("close"))
            .unwrap_or(true);
        let headers = response
            .iter()
            .flat_map(|(name, values)| {
                values
                    .iter()
                    .map(|v| (name.as_str().to_ascii_lowercase(), v.as_str().to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        if keep_alive {
            self.put_idle(origin, stream);
        }
        Ok(Response {
            status: response.status().into(),
            headers,
            body,
        })
    }
}
