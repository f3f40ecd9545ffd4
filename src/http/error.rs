//! The one place errors become HTTP: status, `{"error": code, "message": text}` and, for
//! authentication failures, the RFC 6750 / RFC 9449 `WWW-Authenticate` header.

use crate::auth::dpop::DpopError;
use crate::service::Error;
use crate::storage::StoreError;
use serde_json::json;

/// The DPoP algorithms this server accepts, for `WWW-Authenticate`.
pub const DPOP_ALGS: &str = "ES256 EdDSA";

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable code.
    pub code: String,
    /// Human text.
    pub message: String,
    /// Extra headers (`WWW-Authenticate`, `DPoP-Nonce`, `Retry-After`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// An error with no extra headers.
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// 400 bad request.
    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, code, message)
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }

    /// 401 for a request without credentials (RFC 6750 §3.1: no error attribute).
    pub fn no_credentials() -> ApiError {
        ApiError::new(
            401,
            "unauthorized",
            "this request needs a DPoP access token",
        )
        .with_header("WWW-Authenticate", format!("DPoP algs=\"{DPOP_ALGS}\""))
    }

    /// 401 for a bad access token.
    pub fn invalid_token(message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::new(401, "invalid_token", message.clone()).with_header(
            "WWW-Authenticate",
            format!(
                "DPoP error=\"invalid_token\", error_description=\"{}\", algs=\"{DPOP_ALGS}\"",
                quote_safe(&message)
            ),
        )
    }

    /// 401 for a bad DPoP proof at a resource (RFC 9449 §7.1), with a fresh nonce.
    pub fn dpop(error: &DpopError, nonce: String) -> ApiError {
        ApiError::new(401, error.error_code(), error.description())
            .with_header("WWW-Authenticate", error.www_authenticate(DPOP_ALGS))
            .with_header("DPoP-Nonce", nonce)
    }

    /// 400 for a bad DPoP proof at the token endpoint (RFC 9449 §5, §8).
    pub fn dpop_at_token_endpoint(error: &DpopError, nonce: String) -> ApiError {
        ApiError::new(400, error.error_code(), error.description()).with_header("DPoP-Nonce", nonce)
    }

    /// Builds the response.
    pub fn into_response(self) -> tide::Response {
        let body = json!({
            "error": self.code,
            "message": self.message,
            "error_description": self.message,
        });
        let mut response = tide::Response::new(self.status);
        response.set_body(tide::Body::from_json(&body).unwrap_or_else(|_| tide::Body::empty()));
        response.set_content_type(tide::http::mime::JSON);
        for (name, value) in self.headers {
            response.append_header(name, header_value(&value));
        }
        response
    }
}

/// A header value that cannot break the answer: http-types panics on anything but
/// visible ASCII, and a line break would start a new header. Other characters become `?`.
pub fn header_value(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c == ' ' || c == '\t' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn quote_safe(text: &str) -> String {
    header_value(text).replace(['"', '\\'], "")
}

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        let message = error.to_string();
        match error {
            Error::Invalid { code, .. } => ApiError::new(400, code, message),
            Error::Unauthorized(_) => ApiError::new(401, "unauthorized", message),
            Error::Forbidden(_) => ApiError::new(403, "forbidden", message),
            Error::HomeNotProven(_) => ApiError::new(401, "home_not_proven", message),
            Error::NotHome(_) => ApiError::new(403, "not_home_server", message),
            Error::DeletedByHome => ApiError::new(403, "forbidden", message),
            Error::Banned => ApiError::new(403, "banned", message),
            Error::Refused { code, .. } => ApiError::new(403, code, message),
            Error::NotFound(what) => ApiError::new(404, format!("unknown_{what}"), message),
            Error::Conflict { code, .. } => ApiError::new(409, code, message),
            Error::Gone { code, .. } => ApiError::new(410, code, message),
            Error::LimitReached(_) => ApiError::new(400, "limit_reached", message),
            Error::RateLimited { retry_after } => ApiError::new(429, "rate_limited", message)
                .with_header("Retry-After", retry_after.to_string()),
            Error::Body(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                ApiError::new(408, "request_timeout", message)
            }
            Error::Body(_) => ApiError::new(400, "invalid_body", message),
            Error::TooLarge { .. } => ApiError::new(413, "body_too_large", message),
            Error::Store(e) => {
                log::error!("storage error: {e}");
                // 507 tells a client the request may work once the operator frees space,
                // which no other storage failure promises.
                if matches!(e, StoreError::DiskFull(_)) {
                    return ApiError::new(
                        507,
                        "insufficient_storage",
                        "the server is out of storage space",
                    );
                }
                ApiError::new(
                    500,
                    "internal_error",
                    "the server could not complete this request",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_507_and_other_storage_errors_500() {
        let full = StoreError::from(std::io::Error::from(std::io::ErrorKind::StorageFull));
        let answer = ApiError::from(Error::Store(full));
        assert_eq!(
            (answer.status, answer.code.as_str()),
            (507, "insufficient_storage")
        );
        let damaged = StoreError::Corrupted("bad page".into());
        let answer = ApiError::from(Error::Store(damaged));
        assert_eq!(
            (answer.status, answer.code.as_str()),
            (500, "internal_error")
        );
    }
}
