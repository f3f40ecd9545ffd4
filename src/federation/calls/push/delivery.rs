//! Delivery to a push endpoint (a UnifiedPush distributor, a browser's push service): an
//! RFC 8030 message, the notification's JSON encrypted for the subscription (RFC 8291,
//! `Content-Encoding: aes128gcm`) and signed for by the box's VAPID key (RFC 8292), POSTed
//! through the SSRF guard, retried with back-off like every call, given up after a day.
//! An `https` endpoint's certificate is pinned at first contact, as a peer's is; a changed
//! one is refused and logged. Nothing is ever sent in the clear: a subscription without
//! keys (a bare URL stored before subscriptions had them), or one the user removed since
//! the delivery was queued, is dropped.

use crate::auth::webpush;
use crate::federation::{outbound, Federation, FederationError};
use crate::model::{OutboxItem, UserId};
use crate::service::Services;
use crate::storage::tables::USER;
use std::time::Duration;

/// How long a push service keeps a message for an offline device, seconds (the `TTL`
/// header): a mention is worth little after a day.
pub const TTL_SECS: u64 = 24 * 3600;

/// Whether a distributor's answer ends a delivery: success, or a refusal that a retry
/// will not change (any 4xx but 408 and 429).
pub fn delivery_final(status: u16) -> bool {
    (200..300).contains(&status) || ((400..500).contains(&status) && !matches!(status, 408 | 429))
}

/// An answer that ends a delivery that was not sent, after logging why.
fn dropped(url: &str, why: String) -> outbound::Answer {
    log::warn!("not delivering a push notification to {url}: {why}");
    outbound::Answer {
        status: 403,
        body: why.into_bytes(),
        signature: None,
    }
}

/// POSTs an encrypted message (`body`, with its `headers`) to a push endpoint through the
/// SSRF guard. A URL the guard refuses will never be accepted, so it is answered as a
/// final 403 instead of an error to retry; a changed certificate is logged and retried
/// (the owner may put the old one back), until the delivery is given up.
pub async fn post_to_distributor(
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    allow_loopback: bool,
    timeout: Duration,
    pins: &crate::lan::tls::Pins,
) -> Result<outbound::Answer, FederationError> {
    match outbound::send(
        url,
        http_types::Method::Post,
        headers,
        body,
        allow_loopback,
        timeout,
        pins,
    )
    .await
    {
        Ok(answer) => Ok(answer),
        Err(e @ (outbound::OutboundError::Forbidden(_) | outbound::OutboundError::BadUrl(_))) => {
            Ok(dropped(url, e.to_string()))
        }
        Err(e @ outbound::OutboundError::CertificateChanged { .. }) => {
            log::warn!("push delivery refused: {e}");
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// What to do with one queued notification.
#[derive(Debug)]
pub enum Sealed {
    /// Send this request.
    Send {
        /// Its headers (content coding, TTL, VAPID authorization).
        headers: Vec<(&'static str, String)>,
        /// The encrypted body.
        body: Vec<u8>,
    },
    /// Drop it, for this reason.
    Drop(String),
}

/// The request for one queued notification (`payload`, the `push_delivery` body) to
/// `endpoint`, or why it must not be sent.
pub fn seal(
    services: &Services,
    endpoint: &str,
    payload: &str,
    now: u64,
) -> Result<Sealed, FederationError> {
    let Some(user) = serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v["user_id"].as_str().and_then(UserId::parse))
    else {
        return Ok(Sealed::Drop("the queued notification names no user".into()));
    };
    let subscription = services.store.read(|tx| tx.get(USER, user))?.and_then(|u| {
        u.push_subscriptions
            .into_iter()
            .find(|s| s.endpoint == endpoint)
    });
    let Some(subscription) = subscription else {
        return Ok(Sealed::Drop(
            "the user no longer has this push subscription".into(),
        ));
    };
    let Some(keys) = subscription.keys else {
        return Ok(Sealed::Drop(
            "the subscription has no keys (a URL stored before push was encrypted); \
             it is never sent in the clear: subscribe again to be notified there"
                .into(),
        ));
    };
    let sealed = webpush::parse_p256dh(&keys.p256dh)
        .and_then(|ua_public| {
            let auth = webpush::parse_auth(&keys.auth)?;
            webpush::encrypt(payload.as_bytes(), &ua_public, &auth)
        })
        .and_then(|body| {
            let authorization =
                services
                    .vapid_key
                    .authorization(endpoint, &services.origin, now)?;
            Ok((body, authorization))
        });
    Ok(match sealed {
        Ok((body, authorization)) => Sealed::Send {
            headers: vec![
                ("Content-Type", "application/octet-stream".to_string()),
                ("Content-Encoding", "aes128gcm".to_string()),
                ("TTL", TTL_SECS.to_string()),
                ("Urgency", "high".to_string()),
                ("Authorization", authorization),
            ],
            body,
        },
        Err(e) => Sealed::Drop(e.to_string()),
    })
}

/// Sends a `push_delivery` outbox item.
pub async fn deliver(
    fed: &Federation,
    item: &OutboxItem,
) -> Result<outbound::Answer, FederationError> {
    let services = &fed.services;
    let config = &services.config.federation;
    let (headers, body) = match seal(services, &item.target, &item.body, crate::system::now())? {
        Sealed::Send { headers, body } => (headers, body),
        Sealed::Drop(why) => return Ok(dropped(&item.target, why)),
    };
    // A distributor the administrator named as running on this box may be reached.
    let allow_box = config.allow_loopback
        || outbound::under_prefix(&item.target, &config.local_push_distributors);
    post_to_distributor(
        &item.target,
        &headers,
        body,
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
            &[],
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
            &[],
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
