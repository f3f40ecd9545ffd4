//! Delivery to a UnifiedPush distributor: a plain HTTP POST of a small JSON body through
//! the SSRF guard, retried with back-off like every call, given up after a day.

use crate::federation::{outbound, Federation, FederationError};
use crate::model::OutboxItem;
use std::time::Duration;

/// Whether a distributor's answer ends a delivery: success, or a refusal that a retry
/// will not change (any 4xx but 408 and 429).
pub fn delivery_final(status: u16) -> bool {
    (200..300).contains(&status) || ((400..500).contains(&status) && !matches!(status, 408 | 429))
}

/// POSTs a notification to a distributor through the SSRF guard. A URL the guard (or this
/// build: https is not spoken yet) refuses will never be accepted, so it is answered as a
/// final 403 instead of an error to retry.
pub async fn post_to_distributor(
    url: &str,
    body: Vec<u8>,
    allow_loopback: bool,
    timeout: Duration,
    pins: &crate::lan::tls::Pins,
) -> Result<outbound::Answer, FederationError> {
    let refused = |why: String| {
        log::warn!("not delivering a push notification to {url}: {why}");
        Ok(outbound::Answer {
            status: 403,
            body: why.into_bytes(),
            signature: None,
        })
    };
    match outbound::send(
        url,
        http_types::Method::Post,
        &[("Content-Type", "application/json".into())],
        body,
        allow_loopback,
        timeout,
        pins,
    )
    .await
    {
        Ok(answer) => Ok(answer),
        Err(e @ (outbound::OutboundError::Forbidden(_) | outbound::OutboundError::BadUrl(_))) => {
            refused(e.to_string())
        }
        Err(e) => Err(e.into()),
    }
}

/// Sends a `push_delivery` outbox item.
pub async fn deliver(
    fed: &Federation,
    item: &OutboxItem,
) -> Result<outbound::Answer, FederationError> {
    let config = &fed.services.config.federation;
    // A distributor the administrator named as running on this box may be reached.
    let allow_box = config.allow_loopback
        || outbound::under_prefix(&item.target, &config.local_push_distributors);
    post_to_distributor(
        &item.target,
        item.body.clone().into_bytes(),
        allow_box,
        Duration::from_secs(config.request_timeout_secs),
        &fed.tls_pins,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributor_answers_that_end_a_delivery() {
        for status in [200, 201, 204, 400, 403, 404, 410, 413] {
            assert!(delivery_final(status), "{status}");
        }
        for status in [408, 429, 500, 502, 503] {
            assert!(!delivery_final(status), "{status}");
        }
    }

    #[test]
    fn a_distributor_on_the_box_itself_is_never_contacted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/up/topic", listener.local_addr().unwrap());
        let answer = smol::block_on(post_to_distributor(
            &url,
            b"{}".to_vec(),
            false,
            Duration::from_secs(2),
            &crate::lan::tls::Pins::default(),
        ))
        .expect("a refusal is a final answer, not an error to retry");
        assert_eq!(answer.status, 403);
        assert!(delivery_final(answer.status));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            listener.accept().map_err(|e| e.kind()).err(),
            Some(std::io::ErrorKind::WouldBlock),
            "the guard let a connection through"
        );
        // With loopback allowed (development), the same URL is contacted.
        let sent = smol::block_on(post_to_distributor(
            &url,
            b"{}".to_vec(),
            true,
            Duration::from_millis(300),
            &crate::lan::tls::Pins::default(),
        ));
        assert!(sent.is_err(), "nobody answers HTTP on the test listener");
        assert!(
            listener.accept().is_ok(),
            "loopback allowed but not contacted"
        );
    }
}
