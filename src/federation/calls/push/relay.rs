//! PushNotification at the user's home: a host relays a notification for one of the
//! home's users; the home checks the token and the grant behind it, deduplicates on the
//! call id, and queues a delivery per distributor.

use super::super::{parse, typed_call_id, Answer};
use super::tokens::{verify_token, TokenRefusal};
use crate::federation::{Federation, FederationError};
use crate::model::*;
use crate::service::outbox::{enqueue, PushNotification};
use crate::service::push::{clean, Notice, MAX_PREVIEW_CHARS};
use crate::storage::{tables::*, StoreError, Tx};
use crate::system::now;
use serde_json::{json, Value};

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
    let call: PushNotification = parse(body)?;
    let call_id = typed_call_id(call.id.as_deref())?;
    let user = call.user_id;
    let notice = Notice {
        host: from.to_string(),
        user,
        guild_id: call.guild_id,
        channel_id: call.channel_id,
        message_id: call.message_id,
        title: clean(&call.title, MAX_PREVIEW_CHARS),
        body: clean(&call.body, MAX_PREVIEW_CHARS),
    };
    if call.token.is_empty() {
        return Ok(TokenRefusal::Malformed("no token".into()).answer(from));
    }
    let token = call.token.as_str();
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
            if !crate::service::inbox::first_delivery(tx, &notice.host, call_id)? {
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
    let Ok(sent) = serde_json::from_str::<PushNotification>(&item.body) else {
        return Ok(());
    };
    let user = sent.user_id;
    if tx.get(PUSH_DELEGATION, user)?.as_deref() == Some(sent.token.as_str()) {
        tx.delete(PUSH_DELEGATION, user)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_cut_to_200_characters() {
        let long = "é".repeat(500);
        let cut = clean(&long, MAX_PREVIEW_CHARS);
        assert_eq!(cut.chars().count(), MAX_PREVIEW_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(clean(" a\nb ", 10), "a b");
    }
}
