//! Push notifications for mentions, the network side (tokens and fan-out planning are
//! `service::push`):
//!
//! - **PushNotification** (host → home): `{id, token, user_id, guild_id, channel_id,
//!   message_id, title, body}`. The home checks the token (its own key, `aud` = the calling
//!   peer, `sub` = `user_id`, scope `push`, not expired, not revoked) and that the user is
//!   still homed there, deduplicates on the call id, and queues a `push_delivery` per
//!   distributor. Answers: 200 `{"queued": n}` (or `{"duplicate": true}`), 403
//!   `invalid_push_token` / `push_token_expired` / `push_token_revoked`, 404 `unknown_user`.
//! - **Delivery.** A `push_delivery` outbox item is a plain HTTP POST of a small JSON body
//!   to the distributor URL, through the SSRF guard, retried with back-off like every
//!   call, and given up after a day (a stale notification is worth nothing).

use super::Answer;
use crate::auth::jose::{verify_ed25519_jws, Jws};
use crate::federation::Federation;
use crate::federation::{outbound, outbox, FederationError};
use crate::model::*;
use crate::service::outbox::{enqueue, Call};
use crate::service::push::{clean, plan, Notice, MAX_PREVIEW_CHARS};
use crate::storage::{tables::*, StoreError, Tx};
use crate::system::{now, now_ms};
use serde_json::{json, Value};
use std::time::Duration;

/// Host → home call carrying one notification.
pub const NOTIFICATION: &str = Call::PUSH_NOTIFICATION;
/// Outbox item: POST to a UnifiedPush distributor (the target is its URL).
pub const DELIVERY: &str = Call::PUSH_DELIVERY;
/// Outbox item: expand a message's mentions into notifications (local job, no target).
pub const FANOUT: &str = Call::PUSH_FANOUT;
pub use crate::service::push::TOKEN_TYP;
/// Notifications not delivered within a day are dropped.
pub const GIVE_UP_SECS: u64 = 24 * 3600;
/// Why a Push Delegation Token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Not a compact JWS of the right type and claims.
    Malformed(String),
    /// Not signed by this server's key (or not issued by this origin).
    NotOurs,
    /// Its scope is not `push`.
    WrongScope,
    /// Issued to another server than the caller.
    WrongAudience(String),
    /// Issued for another user than the notification's.
    OtherUser,
    /// Past its `exp`.
    Expired,
    /// Revoked (by the user, or by removing the peer), or never recorded here.
    Revoked,
}

impl TokenRefusal {
    /// The 403 answer for this refusal.
    pub fn answer(&self, caller: &str) -> Answer {
        let (code, message) = match self {
            TokenRefusal::Malformed(why) => (
                "invalid_push_token",
                format!("the push token is malformed: {why}"),
            ),
            TokenRefusal::NotOurs => (
                "invalid_push_token",
                "the push token was not issued by this server (bad signature)".to_string(),
            ),
            TokenRefusal::WrongScope => (
                "invalid_push_token",
                "the token does not grant push".to_string(),
            ),
            TokenRefusal::WrongAudience(aud) => (
                "invalid_push_token",
                format!("the push token was issued to {aud}, not to {caller}"),
            ),
            TokenRefusal::OtherUser => (
                "invalid_push_token",
                "the push token belongs to another user".to_string(),
            ),
            TokenRefusal::Expired => (
                "push_token_expired",
                "the push token has expired".to_string(),
            ),
            TokenRefusal::Revoked => (
                "push_token_revoked",
                "the push token was revoked".to_string(),
            ),
        };
        Answer::Forbidden(json!({ "error": code, "message": message }))
    }
}

/// Checks a Push Delegation Token's signature and claims (everything but revocation);
/// returns its `jti`. Pure: callers pass the key, origins and time.
pub fn verify_token(
    token: &str,
    own_key: &[u8; 32],
    own_origin: &str,
    caller: &str,
    user: UserId,
    now: u64,
) -> Result<String, TokenRefusal> {
    let jws = Jws::parse(token).map_err(|e| TokenRefusal::Malformed(e.to_string()))?;
    if jws.header_str("typ") != Some(TOKEN_TYP) {
        return Err(TokenRefusal::Malformed("not a push token".into()));
    }
    verify_ed25519_jws(&jws, own_key).map_err(|_| TokenRefusal::NotOurs)?;
    if jws.claim_str("iss") != Some(own_origin) {
        return Err(TokenRefusal::NotOurs);
    }
    if jws.claim_str("scope") != Some("push") {
        return Err(TokenRefusal::WrongScope);
    }
    let aud = jws.claim_str("aud").unwrap_or("");
    if aud != caller {
        return Err(TokenRefusal::WrongAudience(aud.to_string()));
    }
    if jws.claim_str("sub") != Some(user.to_text().as_str()) {
        return Err(TokenRefusal::OtherUser);
    }
    let exp = jws
        .claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or_else(|| TokenRefusal::Malformed("no exp".into()))?;
    if exp <= now {
        return Err(TokenRefusal::Expired);
    }
    // Tokens without an id predate revocation records: they cannot be checked, so they
    // count as revoked (the host gets a new one at its next VerifyUser).
    jws.claim_str("jti")
        .filter(|j| !j.is_empty() && j.len() <= 64)
        .map(str::to_string)
        .ok_or(TokenRefusal::Revoked)
}

// ---- PushNotification (home) ----

fn id_field(body: &Value, name: &str) -> Result<Id, FederationError> {
    body[name]
        .as_str()
        .and_then(Id::parse)
        .ok_or_else(|| FederationError::Invalid(format!("{name} is not an id")))
}

enum Received {
    NotHomed,
    Refused(TokenRefusal),
    Duplicate,
    Queued(usize),
}

/// Handles PushNotification from `from` (a verified peer).
pub async fn push_notification(
    fed: &Federation,
    from: &str,
    body: &Value,
) -> Result<Answer, FederationError> {
    let call_id = super::call_id(body)?;
    let user = super::body_user(body)?;
    let notice = Notice {
        host: from.to_string(),
        user,
        guild_id: id_field(body, "guild_id")?,
        channel_id: id_field(body, "channel_id")?,
        message_id: id_field(body, "message_id")?,
        title: clean(body["title"].as_str().unwrap_or(""), MAX_PREVIEW_CHARS),
        body: clean(body["body"].as_str().unwrap_or(""), MAX_PREVIEW_CHARS),
    };
    let Some(token) = body["token"].as_str() else {
        return Ok(TokenRefusal::Malformed("no token".into()).answer(from));
    };
    let jti = match verify_token(
        token,
        &fed.services.server_key.public_bytes(),
        &fed.services.origin,
        from,
        user,
        now(),
    ) {
        Ok(jti) => jti,
        Err(refusal) => return Ok(refusal.answer(from)),
    };
    let distributors = fed
        .services
        .store
        .read(|tx| tx.get(USER, user))?
        .map(|u| u.push_distributors.len())
        .unwrap_or(0);
    let ids: Vec<Id> = (0..distributors).map(|_| fed.services.next_id()).collect();
    let received = fed
        .services
        .store
        .write(move |tx| {
            let Some(local) = tx.get(USER, user)?.filter(|u| u.homeserver.is_empty()) else {
                return Ok(Received::NotHomed);
            };
            if !tx.contains(PUSH_GRANT, (user, notice.host.as_str(), jti.as_str()))? {
                return Ok(Received::Refused(TokenRefusal::Revoked));
            }
            if !super::first_delivery(tx, &notice.host, call_id)? {
                return Ok(Received::Duplicate);
            }
            let body = notice.delivery_body();
            let mut queued = 0;
            for (id, url) in ids.into_iter().zip(&local.push_distributors) {
                enqueue(tx, id, url, &body)?;
                queued += 1;
            }
            Ok::<_, StoreError>(Received::Queued(queued))
        })
        .await?;
    Ok(match received {
        Received::NotHomed => Answer::NotFound(
            json!({ "error": "unknown_user", "message": "no such user homed here" }),
        ),
        Received::Refused(refusal) => refusal.answer(from),
        Received::Duplicate => Answer::Done(json!({ "duplicate": true })),
        Received::Queued(n) => Answer::Done(json!({ "queued": n })),
    })
}

/// Applies the home's answer to a PushNotification: a token it refuses is dropped here
/// (unless a newer one arrived meanwhile), so this server stops sending it.
pub fn notification_answered(tx: &Tx, item: &OutboxItem, status: u16) -> Result<(), StoreError> {
    if status != 403 {
        return Ok(());
    }
    let request: Value = serde_json::from_str(&item.body).unwrap_or_default();
    let Some(user) = request["user_id"].as_str().and_then(UserId::parse) else {
        return Ok(());
    };
    let sent = request["token"].as_str().unwrap_or("");
    if tx.get(PUSH_DELEGATION, user)?.as_deref() == Some(sent) {
        tx.delete(PUSH_DELEGATION, user)?;
    }
    Ok(())
}

/// Runs a fan-out job: queues its notifications and deliveries in the commit that
/// removes it. On a storage failure it is retried with back-off.
pub async fn fan_out(fed: &Federation, item: OutboxItem) {
    let request: Value = serde_json::from_str(&item.body).unwrap_or_default();
    let ids = (
        request["channel_id"].as_str().and_then(Id::parse),
        request["message_id"].as_str().and_then(Id::parse),
    );
    let origin = fed.services.origin.clone();
    let planned = match ids {
        (Some(channel), Some(message)) => fed
            .services
            .store
            .read(|tx| plan(tx, &origin, channel, message)),
        _ => Ok(Vec::new()),
    };
    let key = Id(item.id);
    let result = match planned {
        Ok(planned) => {
            let ids: Vec<Id> = planned.iter().map(|_| fed.services.next_id()).collect();
            fed.services
                .store
                .write(move |tx| {
                    if !tx.delete(OUTBOX, key)? {
                        return Ok(());
                    }
                    for (id, p) in ids.into_iter().zip(planned) {
                        enqueue(tx, id, &p.target, &p.call)?;
                    }
                    Ok::<_, StoreError>(())
                })
                .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        log::warn!("push fan-out failed, will retry: {e}");
        let mut item = item;
        item.attempts += 1;
        item.last_error = e.to_string();
        item.next_attempt_ms = now_ms()
            + outbox::backoff(item.attempts, fed.services.config.federation.max_retry_secs)
                .as_millis() as u64;
        let retry = fed
            .services
            .store
            .write(move |tx| tx.put(OUTBOX, key, &item))
            .await;
        if let Err(e) = retry {
            log::error!("outbox bookkeeping failed: {e}");
        }
    }
}

// ---- delivery ----

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
    use crate::auth::server_key::ServerKey;

    const HOME: &str = "http://home.example";
    const HOST: &str = "http://host.example";

    fn token(key: &ServerKey, claims: Value) -> String {
        let mut header = serde_json::Map::new();
        header.insert("typ".into(), Value::from(TOKEN_TYP));
        key.sign_jws(header, &claims)
    }

    #[test]
    fn push_tokens_are_checked_claim_by_claim() {
        let key = ServerKey::generate();
        let public = key.public_bytes();
        let user = UserId([1; 32]);
        let good = json!({"iss": HOME, "aud": HOST, "sub": user, "scope": "push",
                          "iat": 100, "exp": 200, "jti": "abc"});
        let check = |t: &str| verify_token(t, &public, HOME, HOST, user, 150);
        assert_eq!(check(&token(&key, good.clone())), Ok("abc".to_string()));
        let with = |name: &str, value: Value| {
            let mut claims = good.clone();
            claims[name] = value;
            token(&key, claims)
        };
        assert_eq!(
            check(&token(&ServerKey::generate(), good.clone())),
            Err(TokenRefusal::NotOurs)
        );
        assert_eq!(check(&with("iss", json!(HOST))), Err(TokenRefusal::NotOurs));
        assert_eq!(
            check(&with("aud", json!("http://other.example"))),
            Err(TokenRefusal::WrongAudience("http://other.example".into()))
        );
        assert_eq!(
            check(&with("sub", json!(UserId([2; 32])))),
            Err(TokenRefusal::OtherUser)
        );
        assert_eq!(
            check(&with("scope", json!("read"))),
            Err(TokenRefusal::WrongScope)
        );
        assert_eq!(check(&with("exp", json!(150))), Err(TokenRefusal::Expired));
        assert_eq!(check(&with("jti", json!(""))), Err(TokenRefusal::Revoked));
        assert!(matches!(check("a.b.c"), Err(TokenRefusal::Malformed(_))));
        let access_token = {
            let mut header = serde_json::Map::new();
            header.insert("typ".into(), Value::from("at+jwt"));
            key.sign_jws(header, &good)
        };
        assert!(matches!(
            check(&access_token),
            Err(TokenRefusal::Malformed(_))
        ));
    }

    #[test]
    fn previews_are_cut_to_200_characters() {
        let long = "é".repeat(500);
        let cut = clean(&long, MAX_PREVIEW_CHARS);
        assert_eq!(cut.chars().count(), MAX_PREVIEW_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(clean(" a\nb ", 10), "a b");
    }

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
