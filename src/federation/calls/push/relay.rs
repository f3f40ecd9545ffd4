//! PushNotification at the user's home: a host relays a notification for one of the
//! home's users; the home checks the token and the grant behind it, deduplicates on the
//! call id, and queues a delivery per distributor.

use super::super::{parse, typed_call_id, Answer};
use super::tokens::{verify_token, TokenRefusal};
use crate::federation::{Federation, FederationError};
use crate::model::*;
use crate::service::outbox::PushNotification;
use crate::service::push::{clean, token_refused, Notice, Relayed, MAX_PREVIEW_CHARS};
use crate::storage::{StoreError, Tx};
use crate::system::now;
use serde_json::{json, Value};

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
        kind: call.kind,
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
    if let Some(author) = call.author_id {
        // Checked once the token is: only a host holding one learns of it. Answered as
        // done, so the host does not retry what the user will never see.
        if fed.services.is_blocked_by(user, author)? {
            return Ok(Answer::Done(json!({ "dropped": "blocked" })));
        }
    }
    let received = fed
        .services
        .relay_notification(notice, call_id, jti)
        .await?;
    Ok(match received {
        Relayed::NotHomed => Answer::NotFound(
            json!({ "error": "unknown_user", "message": "no such user homed here" }),
        ),
        Relayed::GrantRevoked => TokenRefusal::Revoked.answer(from),
        Relayed::Duplicate => Answer::Done(json!({ "duplicate": true })),
        Relayed::Queued(n) => Answer::Done(json!({ "queued": n })),
    })
}

/// Applies the home's answer to a PushNotification: a token it refuses is dropped here
/// (unless a newer one arrived meanwhile), so this server stops sending it.
pub fn notification_answered(tx: &Tx, item: &OutboxItem, status: u16) -> Result<(), StoreError> {
    if status != 403 {
        return Ok(());
    }
    token_refused(tx, &item.body)
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
