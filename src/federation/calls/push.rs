//! Push notifications for mentions (mzchat's PushNotification, DESIGN §3).
//!
//! - **Issuing.** A home answers VerifyUser with a Push Delegation Token: a compact JWS
//!   (`typ` `hearth-push+jwt`, EdDSA by the home's server key S) with `iss` (home origin),
//!   `aud` (the host's origin), `sub` (user id), `scope` `push`, `iat`, `exp`, `jti`. The
//!   home records each token it issues (table `push_grant`, by user, host and `jti`), so
//!   the user can list and revoke them and removing a peer revokes that peer's tokens.
//!   A user's revocation also stops new tokens for that host (VerifyUser then answers
//!   without `push_token`) until the user allows the host again.
//! - **Fan-out.** A message that mentions users (`<@USER>`, a mentionable `<@&ROLE>`, or
//!   an allowed `@everyone`) queues one `push_fanout` job in the message's commit. The
//!   outbox worker expands it: every mentioned member who may view the channel, except
//!   the author, gets a `push_delivery` per UnifiedPush distributor if homed here, or a
//!   `push_notification` call to their home if a Push Delegation Token is stored for them.
//! - **PushNotification** (host → home): `{id, token, user_id, guild_id, channel_id,
//!   message_id, title, body}`. The home checks the token (its own key, `aud` = the calling
//!   peer, `sub` = `user_id`, scope `push`, not expired, not revoked) and that the user is
//!   still homed there, deduplicates on the call id, and queues a `push_delivery` per
//!   distributor. Answers: 200 `{"queued": n}` (or `{"duplicate": true}`), 403
//!   `invalid_push_token` / `push_token_expired` / `push_token_revoked`, 404 `unknown_user`.
//! - **Delivery.** A `push_delivery` outbox item is a plain HTTP POST of a small JSON body
//!   to the distributor URL, through the SSRF guard, retried with back-off like every
//!   call, and given up after a day (a stale notification is worth nothing).
//!
//! Titles and bodies are at most 200 characters: the guild and channel name, and the
//! author's name with the start of the message.

use crate::app::App;
use crate::auth::jose::{b64u, verify_ed25519_jws, Jws};
use crate::federation::{outbound, outbox, FederationError};
use crate::service::outbox::{enqueue, Call, PushDelivery, PushFanout};
use crate::model::*;
use crate::service::access;
use crate::storage::{keys, tables::*, StoreError, Tx};
use crate::system::{now, now_ms};
use serde_json::{json, Value};
use std::time::Duration;

/// Host → home call carrying one notification.
pub const NOTIFICATION: &str = Call::PUSH_NOTIFICATION;
/// Outbox item: POST to a UnifiedPush distributor (the target is its URL).
pub const DELIVERY: &str = Call::PUSH_DELIVERY;
/// Outbox item: expand a message's mentions into notifications (local job, no target).
pub const FANOUT: &str = Call::PUSH_FANOUT;
/// The `typ` of Push Delegation Tokens.
pub const TOKEN_TYP: &str = "hearth-push+jwt";
/// Longest title and body of a notification, in characters.
pub const MAX_PREVIEW_CHARS: usize = 200;
/// Notifications not delivered within a day are dropped.
pub const GIVE_UP_SECS: u64 = 24 * 3600;
/// Tokens kept per user and host: the newest few, so calls queued with an older one
/// still pass while a repeated VerifyUser cannot grow the table.
const GRANTS_PER_HOST: usize = 4;

// ---- tokens (home) ----

fn grant_prefix(user: UserId, host: &str) -> Vec<u8> {
    keys::join(&[&user.0, host.as_bytes(), &[0]])
}

fn grant_key(user: UserId, host: &str, jti: &str) -> Vec<u8> {
    keys::join(&[&grant_prefix(user, host), jti.as_bytes()])
}

fn revoked_key(user: UserId, host: &str) -> Vec<u8> {
    keys::join(&[&user.0, host.as_bytes()])
}

/// Issues a Push Delegation Token for `user` to `host` and records it (durably, before
/// the caller hands it out). Older tokens beyond the newest few, and expired ones, are
/// forgotten in the same commit. `None` if the user revoked push for that host.
pub async fn issue_token(
    app: &App,
    host: &str,
    user: UserId,
) -> Result<Option<String>, StoreError> {
    let mut id = [0u8; 16];
    crate::system::random_bytes(&mut id);
    let jti = b64u(&id);
    let issued_at = now();
    let expires_at = issued_at + super::PUSH_TOKEN_SECS;
    let mut header = serde_json::Map::new();
    header.insert("typ".into(), Value::from(TOKEN_TYP));
    let token = app.services.server_key.sign_jws(
        header,
        &json!({
            "iss": app.services.origin,
            "aud": host,
            "sub": user,
            "scope": "push",
            "iat": issued_at,
            "exp": expires_at,
            "jti": jti,
        }),
    );
    let grant = PushGrant {
        host: host.to_string(),
        user_id: user,
        jti,
        issued_at,
        expires_at,
    };
    let issued = app
        .services
        .store
        .write(move |tx| {
            if tx.contains(PUSH_REVOKED, &revoked_key(user, &grant.host))? {
                return Ok(false);
            }
            let prefix = grant_prefix(user, &grant.host);
            let mut existing = tx.scan_prefix(PUSH_GRANT, &prefix, usize::MAX)?;
            existing.sort_by_key(|(_, g)| std::cmp::Reverse(g.issued_at));
            for (index, (key, old)) in existing.iter().enumerate() {
                if index + 1 >= GRANTS_PER_HOST || old.expires_at <= issued_at {
                    tx.delete(PUSH_GRANT, key)?;
                }
            }
            tx.put(
                PUSH_GRANT,
                &grant_key(user, &grant.host, &grant.jti),
                &grant,
            )?;
            Ok::<_, StoreError>(true)
        })
        .await?;
    Ok(issued.then_some(token))
}

/// Revokes every token issued to `host` (its peering was removed). Returns how many.
pub fn revoke_host(tx: &Tx, host: &str) -> Result<usize, StoreError> {
    let doomed: Vec<Vec<u8>> = tx
        .range(PUSH_GRANT, &[], None, false, usize::MAX)?
        .into_iter()
        .filter(|(_, g)| g.host == host)
        .map(|(key, _)| key)
        .collect();
    for key in &doomed {
        tx.delete(PUSH_GRANT, key)?;
    }
    Ok(doomed.len())
}

/// A user's delegations, one entry per host: `{host, tokens, issued_at, expires_at}` (the
/// newest live token's times), then the hosts the user revoked: `{host, revoked_at}`.
pub fn list_delegations(app: &App, user: UserId) -> Result<Vec<Value>, StoreError> {
    let t = now();
    let (grants, revoked) = app.services.store.read(|tx| {
        Ok::<_, StoreError>((
            tx.scan_prefix(PUSH_GRANT, &user.0, usize::MAX)?,
            tx.scan_prefix(PUSH_REVOKED, &user.0, usize::MAX)?,
        ))
    })?;
    let mut out: Vec<(String, usize, u64, u64)> = Vec::new();
    for (_, grant) in grants.into_iter().filter(|(_, g)| g.expires_at > t) {
        match out.iter_mut().find(|(host, ..)| *host == grant.host) {
            Some(entry) => {
                entry.1 += 1;
                if grant.issued_at >= entry.2 {
                    entry.2 = grant.issued_at;
                    entry.3 = grant.expires_at;
                }
            }
            None => out.push((grant.host, 1, grant.issued_at, grant.expires_at)),
        }
    }
    let live = out
        .into_iter()
        .map(|(host, tokens, issued_at, expires_at)| {
            json!({
                "host": host,
                "tokens": tokens,
                "issued_at": issued_at,
                "expires_at": expires_at,
            })
        });
    let blocked = revoked.into_iter().map(|(key, at)| {
        json!({
            "host": String::from_utf8_lossy(key.get(32..).unwrap_or_default()),
            "revoked_at": at,
        })
    });
    Ok(live.chain(blocked).collect())
}

/// Revokes every token of `user` held by `host`, and stops new ones for it until
/// [`allow_host`]. Returns how many live tokens there were, and whether the host was
/// already revoked.
pub async fn revoke_delegation(
    app: &App,
    user: UserId,
    host: String,
) -> Result<(usize, bool), StoreError> {
    app.services
        .store
        .write(move |tx| {
            let already = tx.contains(PUSH_REVOKED, &revoked_key(user, &host))?;
            let tokens = tx.delete_prefix(PUSH_GRANT, &grant_prefix(user, &host))?;
            tx.put(PUSH_REVOKED, &revoked_key(user, &host), &now())?;
            Ok((tokens, already))
        })
        .await
}

/// Lets `host` receive Push Delegation Tokens for `user` again (from its next VerifyUser).
/// Returns whether it had been revoked.
pub async fn allow_host(app: &App, user: UserId, host: String) -> Result<bool, StoreError> {
    app.services
        .store
        .write(move |tx| tx.delete(PUSH_REVOKED, &revoked_key(user, &host)))
        .await
}

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
    pub fn answer(&self, caller: &str) -> (u16, Value) {
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
        (403, json!({ "error": code, "message": message }))
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

fn clean(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() <= max {
        return flat.to_string();
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn id_field(body: &Value, name: &str) -> Result<Id, FederationError> {
    body[name]
        .as_str()
        .and_then(Id::parse)
        .ok_or_else(|| FederationError::Invalid(format!("{name} is not an id")))
}

/// What a distributor receives.
struct Notice {
    host: String,
    user: UserId,
    guild_id: Id,
    channel_id: Id,
    message_id: Id,
    title: String,
    body: String,
}

impl Notice {
    fn delivery_body(&self) -> Call {
        Call::PushDelivery(PushDelivery {
            id: None,
            kind: "mention".into(),
            host: self.host.clone(),
            user_id: self.user,
            guild_id: self.guild_id,
            channel_id: self.channel_id,
            message_id: self.message_id,
            title: self.title.clone(),
            body: self.body.clone(),
        })
    }
}

enum Received {
    NotHomed,
    Refused(TokenRefusal),
    Duplicate,
    Queued(usize),
}

/// Handles PushNotification from `from` (a verified peer).
pub async fn push_notification(
    app: &App,
    from: &str,
    body: &Value,
) -> Result<(u16, Value), FederationError> {
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
        &app.services.server_key.public_bytes(),
        &app.services.origin,
        from,
        user,
        now(),
    ) {
        Ok(jti) => jti,
        Err(refusal) => return Ok(refusal.answer(from)),
    };
    let distributors = app
        .services
        .store
        .read(|tx| tx.get(USER, &user.0))?
        .map(|u| u.push_distributors.len())
        .unwrap_or(0);
    let ids: Vec<Id> = (0..distributors).map(|_| app.services.next_id()).collect();
    let received = app
        .services
        .store
        .write(move |tx| {
            let Some(local) = tx.get(USER, &user.0)?.filter(|u| u.homeserver.is_empty()) else {
                return Ok(Received::NotHomed);
            };
            if !tx.contains(PUSH_GRANT, &grant_key(user, &notice.host, &jti))? {
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
        Received::NotHomed => (
            404,
            json!({ "error": "unknown_user", "message": "no such user homed here" }),
        ),
        Received::Refused(refusal) => refusal.answer(from),
        Received::Duplicate => (200, json!({ "duplicate": true })),
        Received::Queued(n) => (200, json!({ "queued": n })),
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
    if tx.get(PUSH_DELEGATION, &user.0)?.as_deref() == Some(sent) {
        tx.delete(PUSH_DELEGATION, &user.0)?;
    }
    Ok(())
}

// ---- fan-out (the server hosting the message) ----

/// Whether a message mentions anyone (and so queues a fan-out job).
pub fn wants_push(message: &Message) -> bool {
    !message.mentions.is_empty() || !message.mention_roles.is_empty() || message.mention_everyone
}

/// Queues the fan-out job of a message, in the message's commit.
pub fn queue_fanout(tx: &Tx, id: Id, message: &Message) -> Result<(), StoreError> {
    enqueue(
        tx,
        id,
        "",
        &Call::PushFanout(PushFanout {
            id: None,
            channel_id: message.channel_id,
            message_id: message.id,
        }),
    )
}

/// One outbox item the fan-out will queue.
struct Planned {
    target: String,
    call: Call,
}

fn service_store(error: crate::service::Error) -> StoreError {
    match error {
        crate::service::Error::Store(e) => e,
        other => StoreError::Database(other.to_string()),
    }
}

/// Message text with `<@USER>` and `<@&ROLE>` written as `@name`, newlines as spaces,
/// only as much as a preview needs.
fn readable(tx: &Tx, guild: Id, content: &str) -> Result<String, StoreError> {
    let mut out = String::new();
    let mut rest = content;
    while let Some(start) = rest.find("<@") {
        if out.len() > 4 * MAX_PREVIEW_CHARS {
            break;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('>') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &after[..end];
        let name = match inner.strip_prefix('&') {
            Some(role) => match Id::parse(role) {
                Some(role) => tx
                    .get(GUILD_ROLE, &keys::id_id(guild, role))?
                    .map(|r| r.name),
                None => None,
            },
            None => match UserId::parse(inner) {
                Some(user) => display_name(tx, guild, user)?,
                None => None,
            },
        };
        match name {
            Some(name) => {
                out.push('@');
                out.push_str(&name);
            }
            None => out.push_str(&rest[start..start + 2 + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn display_name(tx: &Tx, guild: Id, user: UserId) -> Result<Option<String>, StoreError> {
    if let Some(member) = tx.get(GUILD_MEMBER, &keys::id_user(guild, user))? {
        if !member.nick.is_empty() {
            return Ok(Some(member.nick));
        }
    }
    Ok(tx.get(USER, &user.0)?.map(|u| u.profile.name))
}

/// Works out who a message notifies and what each gets.
fn plan(
    tx: &Tx,
    own_origin: &str,
    channel_id: Id,
    message_id: Id,
) -> Result<Vec<Planned>, StoreError> {
    let Some(message) = tx.get(CHANNEL_MESSAGE, &keys::id_id(channel_id, message_id))? else {
        return Ok(Vec::new());
    };
    let Some(channel) = tx.get(CHANNEL, &keys::id(channel_id))? else {
        return Ok(Vec::new());
    };
    let Some(guild) = tx.get(GUILD, &keys::id(message.guild_id))? else {
        return Ok(Vec::new());
    };
    let roles = access::guild_roles(tx, guild.id).map_err(service_store)?;
    let mut members: Vec<Member> = Vec::new();
    for user in &message.mentions {
        if let Some(member) = tx.get(GUILD_MEMBER, &keys::id_user(guild.id, *user))? {
            members.push(member);
        }
    }
    if message.mention_everyone || !message.mention_roles.is_empty() {
        for (_, member) in tx.scan_prefix(GUILD_MEMBER, &keys::id(guild.id), usize::MAX)? {
            let named = message.mention_everyone
                || member
                    .roles
                    .iter()
                    .any(|r| message.mention_roles.contains(r));
            if named && !message.mentions.contains(&member.user_id) {
                members.push(member);
            }
        }
    }
    let author = display_name(tx, guild.id, message.author_id)?
        .unwrap_or_else(|| message.author_id.to_text().chars().take(8).collect());
    let text = readable(tx, guild.id, &message.content)?;
    let body = if text.trim().is_empty() {
        format!("{author} sent an attachment")
    } else {
        format!("{author}: {text}")
    };
    let title = clean(
        &format!("{} #{}", guild.name, channel.name),
        MAX_PREVIEW_CHARS,
    );
    let body = clean(&body, MAX_PREVIEW_CHARS);
    let mut planned = Vec::new();
    for member in members {
        let user = member.user_id;
        if user == message.author_id {
            continue;
        }
        let standing = access::GuildAccess::from_parts(guild.clone(), roles.clone(), member);
        let may_view = standing
            .channel_permissions(tx, &channel)
            .map_err(service_store)?
            .contains(Permissions::VIEW_CHANNEL);
        if !may_view {
            continue;
        }
        let Some(account) = tx.get(USER, &user.0)? else {
            continue;
        };
        if account.homeserver.is_empty() {
            let notice = Notice {
                host: own_origin.to_string(),
                user,
                guild_id: guild.id,
                channel_id,
                message_id,
                title: title.clone(),
                body: body.clone(),
            };
            for url in &account.push_distributors {
                planned.push(Planned {
                    target: url.clone(),
                    call: notice.delivery_body(),
                });
            }
        } else if let Some(token) = tx.get(PUSH_DELEGATION, &user.0)? {
            planned.push(Planned {
                target: account.homeserver.clone(),
                call: Call::PushNotification(crate::service::outbox::PushNotification {
                    id: None,
                    token,
                    user_id: user,
                    guild_id: guild.id,
                    channel_id,
                    message_id,
                    title: title.clone(),
                    body: body.clone(),
                }),
            });
        }
    }
    Ok(planned)
}

/// Runs a fan-out job: queues its notifications and deliveries in the commit that
/// removes it. On a storage failure it is retried with back-off.
pub async fn fan_out(app: &App, item: OutboxItem) {
    let request: Value = serde_json::from_str(&item.body).unwrap_or_default();
    let ids = (
        request["channel_id"].as_str().and_then(Id::parse),
        request["message_id"].as_str().and_then(Id::parse),
    );
    let origin = app.services.origin.clone();
    let planned = match ids {
        (Some(channel), Some(message)) => app
            .services
            .store
            .read(|tx| plan(tx, &origin, channel, message)),
        _ => Ok(Vec::new()),
    };
    let key = Id(item.id).to_be();
    let result = match planned {
        Ok(planned) => {
            let ids: Vec<Id> = planned.iter().map(|_| app.services.next_id()).collect();
            app.services
                .store
                .write(move |tx| {
                    if !tx.delete(OUTBOX, &key)? {
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
        eprintln!("hearth: push fan-out failed, will retry: {e}");
        let mut item = item;
        item.attempts += 1;
        item.last_error = e.to_string();
        item.next_attempt_ms = now_ms()
            + outbox::backoff(item.attempts, app.services.config.federation.max_retry_secs)
                .as_millis() as u64;
        let retry = app
            .services
            .store
            .write(move |tx| tx.put(OUTBOX, &key, &item))
            .await;
        if let Err(e) = retry {
            eprintln!("hearth: outbox bookkeeping failed: {e}");
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
    pins: &crate::tls::Pins,
) -> Result<outbound::Answer, FederationError> {
    let refused = |why: String| {
        eprintln!("hearth: not delivering a push notification to {url}: {why}");
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
pub async fn deliver(app: &App, item: &OutboxItem) -> Result<outbound::Answer, FederationError> {
    let config = &app.services.config.federation;
    // A distributor the administrator named as running on this box may be reached.
    let allow_box = config.allow_loopback
        || outbound::under_prefix(&item.target, &config.local_push_distributors);
    post_to_distributor(
        &item.target,
        item.body.clone().into_bytes(),
        allow_box,
        Duration::from_secs(config.request_timeout_secs),
        &app.federation.tls_pins,
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
            &crate::tls::Pins::default(),
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
            &crate::tls::Pins::default(),
        ));
        assert!(sent.is_err(), "nobody answers HTTP on the test listener");
        assert!(
            listener.accept().is_ok(),
            "loopback allowed but not contacted"
        );
    }
}
