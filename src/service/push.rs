//! Push notifications for mentions (mzchat's PushNotification, DESIGN §3), the business side:
//!
//! - **Issuing.** A home answers VerifyUser with a Push Delegation Token: a compact JWS
//!   (`typ` `hearth-push+jwt`, EdDSA by the home's server key S) with `iss` (home origin),
//!   `aud` (the host's origin), `sub` (user id), `scope` `push`, `iat`, `exp`, `jti`. The
//!   home records each token it issues (table `push_grant`, by user, host and `jti`), so
//!   the user can list and revoke them and removing a peer revokes that peer's tokens.
//!   A user's revocation also stops new tokens for that host (VerifyUser then answers
//!   without `push_token`) until the user allows the host again.
//! - **Fan-out planning.** A message that mentions users (`<@USER>`, a mentionable
//!   `<@&ROLE>`, or an allowed `@everyone`), or that is posted where someone chose to hear
//!   every message (the `scope_notify_all` index has a row for the channel, its guild or
//!   the box), queues one `push_fanout` job in the message's commit. The outbox worker
//!   expands it ([`plan`]), in one read transaction: the candidates are the mentioned
//!   members and the indexed `all` readers; each one's channel, guild and box settings
//!   decide whether and as what (`mention`, `message`, `dm`) they are pushed
//!   ([`Covering::push`]: muted or `nothing` never, `mentions` only for mentions not
//!   suppressed). Each one pushed who may view the channel, except the author, gets a
//!   `push_delivery` per push subscription if homed here, or a `push_notification`
//!   call to their home if a Push Delegation Token is stored for them.
//!
//! Titles and bodies are at most 200 characters: the guild and channel name, and the
//! author's name with the start of the message.

use super::access;
use super::outbox::{enqueue, Call, PushDelivery, PushFanout, PushNotification};
use super::Services;
use crate::auth::jose::b64u;
use crate::model::*;
use crate::storage::{tables::*, Rows, StoreError, Tx};
use crate::system::now;
use serde_json::{json, Value};
use std::collections::HashSet;

/// Lifetime of a Push Delegation Token, seconds.
pub const PUSH_TOKEN_SECS: u64 = 30 * 24 * 3600;
/// The `typ` of Push Delegation Tokens.
pub const TOKEN_TYP: &str = "hearth-push+jwt";
/// Longest title and body of a notification, in characters.
pub const MAX_PREVIEW_CHARS: usize = 200;
/// Tokens kept per user and host: the newest few, so calls queued with an older one
/// still pass while a repeated VerifyUser cannot grow the table.
const GRANTS_PER_HOST: usize = 4;

/// Issues a Push Delegation Token for `user` to `host` and records it (durably, before
/// the caller hands it out). Older tokens beyond the newest few, and expired ones, are
/// forgotten in the same commit. `None` if the user revoked push for that host.
pub async fn issue_token(
    services: &Services,
    host: &str,
    user: UserId,
) -> Result<Option<String>, StoreError> {
    let mut id = [0u8; 16];
    crate::system::random_bytes(&mut id);
    let jti = b64u(&id);
    let issued_at = now();
    let expires_at = issued_at + PUSH_TOKEN_SECS;
    let mut header = serde_json::Map::new();
    header.insert("typ".into(), Value::from(TOKEN_TYP));
    let token = services.server_key.sign_jws(
        header,
        &json!({
            "iss": services.origin,
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
    let issued = services
        .store
        .write(move |tx| {
            if tx.contains(PUSH_REVOKED, (user, grant.host.as_str()))? {
                return Ok(false);
            }
            let mut existing = tx.rows(PUSH_GRANT, Rows::prefix((user, grant.host.as_str())))?;
            existing.sort_by_key(|(_, g)| std::cmp::Reverse(g.issued_at));
            for (index, ((_, host, jti), old)) in existing.iter().enumerate() {
                if index + 1 >= GRANTS_PER_HOST || old.expires_at <= issued_at {
                    tx.delete(PUSH_GRANT, (user, host.as_str(), jti.as_str()))?;
                }
            }
            tx.put(
                PUSH_GRANT,
                (user, grant.host.as_str(), grant.jti.as_str()),
                &grant,
            )?;
            Ok::<_, StoreError>(true)
        })
        .await?;
    Ok(issued.then_some(token))
}

/// Revokes every token issued to `host` (its peering was removed). Returns how many.
pub fn revoke_host(tx: &Tx, host: &str) -> Result<usize, StoreError> {
    let doomed: Vec<(UserId, String, String)> = tx
        .rows(PUSH_GRANT, Rows::all())?
        .into_iter()
        .filter(|(_, g)| g.host == host)
        .map(|(key, _)| key)
        .collect();
    for (user, host, jti) in &doomed {
        tx.delete(PUSH_GRANT, (*user, host.as_str(), jti.as_str()))?;
    }
    Ok(doomed.len())
}

/// A user's delegations, one entry per host: `{host, tokens, issued_at, expires_at}` (the
/// newest live token's times), then the hosts the user revoked: `{host, revoked_at}`.
pub fn list_delegations(services: &Services, user: UserId) -> Result<Vec<Value>, StoreError> {
    let t = now();
    let (grants, revoked) = services.store.read(|tx| {
        Ok::<_, StoreError>((
            tx.rows(PUSH_GRANT, Rows::prefix(user))?,
            tx.rows(PUSH_REVOKED, Rows::prefix(user))?,
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
    let blocked = revoked.into_iter().map(|((_, host), at)| {
        json!({
            "host": host,
            "revoked_at": at,
        })
    });
    Ok(live.chain(blocked).collect())
}

/// Revokes every token of `user` held by `host`, and stops new ones for it until
/// [`allow_host`]. Returns how many live tokens there were, and whether the host was
/// already revoked.
pub async fn revoke_delegation(
    services: &Services,
    user: UserId,
    host: String,
) -> Result<(usize, bool), StoreError> {
    services
        .store
        .write(move |tx| {
            let already = tx.contains(PUSH_REVOKED, (user, host.as_str()))?;
            let tokens = tx.delete_rows(PUSH_GRANT, Rows::prefix((user, host.as_str())))?;
            tx.put(PUSH_REVOKED, (user, host.as_str()), &now())?;
            Ok((tokens, already))
        })
        .await
}

/// Lets `host` receive Push Delegation Tokens for `user` again (from its next VerifyUser).
/// Returns whether it had been revoked.
pub async fn allow_host(
    services: &Services,
    user: UserId,
    host: String,
) -> Result<bool, StoreError> {
    services
        .store
        .write(move |tx| tx.delete(PUSH_REVOKED, (user, host.as_str())))
        .await
}

/// Text with control characters as spaces, trimmed, at most `max` characters (cut with
/// an ellipsis).
pub fn clean(text: &str, max: usize) -> String {
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

/// What a distributor receives.
pub struct Notice {
    /// The server hosting the message.
    pub host: String,
    /// The user notified.
    pub user: UserId,
    /// What the push is for.
    pub kind: PushKind,
    /// Guild of the message.
    pub guild_id: Id,
    /// Channel of the message.
    pub channel_id: Id,
    /// The message.
    pub message_id: Id,
    /// Title shown.
    pub title: String,
    /// Text shown.
    pub body: String,
}

impl Notice {
    /// The outbox item that posts this notice to a distributor.
    pub fn delivery_body(&self) -> Call {
        Call::PushDelivery(PushDelivery {
            id: None,
            kind: self.kind.as_str().into(),
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

/// Whether a message may push to anyone (and so queues a fan-out job): it mentions
/// someone, or someone chose `all` for its channel, its guild or the box. Three short
/// index reads, in the message's commit.
pub fn wants_push(tx: &Tx, message: &Message) -> Result<bool, StoreError> {
    // A DM pushes to its participants unless their settings say otherwise.
    if message.guild_id == NO_GUILD
        || !message.mentions.is_empty()
        || !message.mention_roles.is_empty()
        || message.mention_everyone
    {
        return Ok(true);
    }
    // Most boxes have no reader who chose `all`: one look settles it.
    if tx.count(SCOPE_NOTIFY_ALL, Rows::all().limit(1))? == 0 {
        return Ok(false);
    }
    for scope in [message.channel_id, message.guild_id, BOX_SCOPE] {
        if tx.count(SCOPE_NOTIFY_ALL, Rows::prefix(scope).limit(1))? > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The members a message could push to, with how it names each: those it mentions, then
/// the readers who chose `all` for the channel, the guild or the box (members only).
fn candidates(tx: &Tx, message: &Message) -> Result<Vec<(Member, Mentioned)>, StoreError> {
    let guild = message.guild_id;
    let mut seen: HashSet<UserId> = HashSet::new();
    let mut out = Vec::new();
    let by_role = |member: &Member| {
        member
            .roles
            .iter()
            .any(|r| message.mention_roles.contains(r))
    };
    for user in &message.mentions {
        if let Some(member) = tx.get(GUILD_MEMBER, (guild, *user))? {
            if seen.insert(member.user_id) {
                let named = Mentioned {
                    directly: true,
                    by_role: by_role(&member),
                    by_everyone: message.mention_everyone,
                };
                out.push((member, named));
            }
        }
    }
    if message.mention_everyone || !message.mention_roles.is_empty() {
        for (_, member) in tx.rows(GUILD_MEMBER, Rows::prefix(guild))? {
            let role = by_role(&member);
            if (message.mention_everyone || role) && seen.insert(member.user_id) {
                let named = Mentioned {
                    directly: false,
                    by_role: role,
                    by_everyone: message.mention_everyone,
                };
                out.push((member, named));
            }
        }
    }
    for scope in [message.channel_id, guild, BOX_SCOPE] {
        for ((_, user), _) in tx.rows(SCOPE_NOTIFY_ALL, Rows::prefix(scope))? {
            if seen.contains(&user) {
                continue;
            }
            if let Some(member) = tx.get(GUILD_MEMBER, (guild, user))? {
                seen.insert(user);
                out.push((member, Mentioned::default()));
            }
        }
    }
    Ok(out)
}

/// What `user`'s settings make of a message in `channel` of `guild` at `now`.
fn push_kind(
    tx: &Tx,
    user: UserId,
    guild: Id,
    channel: Id,
    named: Mentioned,
    now: u64,
) -> Result<Option<PushKind>, StoreError> {
    let in_channel = tx.get(USER_CHANNEL_NOTIFY, (user, channel))?;
    let in_guild = tx.get(USER_GUILD_NOTIFY, (user, guild))?;
    let on_box = tx.get(USER_NOTIFY_BOX, user)?;
    let covering = Covering {
        channel: in_channel.as_ref(),
        guild: in_guild.as_ref(),
        boxed: on_box.as_ref(),
        dm: false,
    };
    Ok(covering.push(named, now))
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
pub struct Planned {
    /// Peer origin or distributor URL.
    pub target: String,
    /// What to queue.
    pub call: Call,
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
                Some(role) => tx.get(GUILD_ROLE, (guild, role))?.map(|r| r.name),
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
    if let Some(member) = tx.get(GUILD_MEMBER, (guild, user))? {
        if !member.nick.is_empty() {
            return Ok(Some(member.nick));
        }
    }
    Ok(tx.get(USER, user)?.map(|u| u.profile.name))
}

/// Works out who a message notifies and what each gets.
pub fn plan(
    tx: &Tx,
    own_origin: &str,
    channel_id: Id,
    message_id: Id,
) -> Result<Vec<Planned>, StoreError> {
    let Some(message) = tx.get(CHANNEL_MESSAGE, (channel_id, message_id))? else {
        return Ok(Vec::new());
    };
    let Some(channel) = tx.get(CHANNEL, channel_id)? else {
        return Ok(Vec::new());
    };
    if channel.kind.is_dm() {
        return plan_dm(tx, own_origin, &message, &channel);
    }
    let Some(guild) = tx.get(GUILD, message.guild_id)? else {
        return Ok(Vec::new());
    };
    let roles = access::guild_roles(tx, guild.id).map_err(service_store)?;
    let at = now();
    let mut members: Vec<(Member, PushKind)> = Vec::new();
    for (member, named) in candidates(tx, &message)? {
        let user = member.user_id;
        if user == message.author_id {
            continue;
        }
        if let Some(kind) = push_kind(tx, user, guild.id, channel_id, named, at)? {
            members.push((member, kind));
        }
    }
    if members.is_empty() {
        return Ok(Vec::new());
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
    for (member, kind) in members {
        let user = member.user_id;
        let standing = access::GuildAccess::from_parts(guild.clone(), roles.clone(), member);
        let may_view = standing
            .channel_permissions(tx, &channel)
            .map_err(service_store)?
            .contains(Permissions::VIEW_CHANNEL);
        if !may_view {
            continue;
        }
        let preview = Preview {
            title: &title,
            body: &body,
        };
        planned.extend(deliveries(tx, own_origin, &message, user, kind, preview)?);
    }
    Ok(planned)
}

/// The title and body a push shows.
#[derive(Clone, Copy)]
struct Preview<'a> {
    title: &'a str,
    body: &'a str,
}

/// What pushing `message` to `user` as `kind` queues: a delivery per push subscription
/// if the user is homed here (unless they block the author), else a `push_notification`
/// to their home if it gave this box a Push Delegation Token.
fn deliveries(
    tx: &Tx,
    own_origin: &str,
    message: &Message,
    user: UserId,
    kind: PushKind,
    preview: Preview<'_>,
) -> Result<Vec<Planned>, StoreError> {
    let Some(account) = tx.get(USER, user)? else {
        return Ok(Vec::new());
    };
    if account.homeserver.is_empty() {
        // Nothing from someone the user blocks (their home's rule, and this is it).
        if tx.contains(USER_BLOCK, (user, message.author_id.to_text().as_str()))? {
            return Ok(Vec::new());
        }
        let notice = Notice {
            host: own_origin.to_string(),
            user,
            kind,
            guild_id: message.guild_id,
            channel_id: message.channel_id,
            message_id: message.id,
            title: preview.title.to_string(),
            body: preview.body.to_string(),
        };
        return Ok(account
            .push_subscriptions
            .iter()
            .map(|subscription| Planned {
                target: subscription.endpoint.clone(),
                call: notice.delivery_body(),
            })
            .collect());
    }
    Ok(tx
        .get(PUSH_DELEGATION, user)?
        .map(|token| Planned {
            target: account.homeserver.clone(),
            call: Call::PushNotification(PushNotification {
                id: None,
                token,
                user_id: user,
                kind,
                guild_id: message.guild_id,
                channel_id: message.channel_id,
                message_id: message.id,
                title: preview.title.to_string(),
                body: preview.body.to_string(),
                author_id: Some(message.author_id),
            }),
        })
        .into_iter()
        .collect())
}

/// [`plan`] for a message in a DM: every participant but the author, as their settings
/// for the DM and the box say (a DM's `default` is `all`).
fn plan_dm(
    tx: &Tx,
    own_origin: &str,
    message: &Message,
    channel: &Channel,
) -> Result<Vec<Planned>, StoreError> {
    let Some(dm) = tx.get(DM, channel.id)? else {
        return Ok(Vec::new());
    };
    let at = now();
    let author = tx
        .get(USER, message.author_id)?
        .map(|u| u.profile.name)
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| message.author_id.to_text().chars().take(8).collect());
    let text = readable(tx, NO_GUILD, &message.content)?;
    let body = if text.trim().is_empty() {
        format!("{author} sent an attachment")
    } else {
        format!("{author}: {text}")
    };
    let title = if dm.name.is_empty() {
        author.clone()
    } else {
        dm.name.clone()
    };
    let title = clean(&title, MAX_PREVIEW_CHARS);
    let body = clean(&body, MAX_PREVIEW_CHARS);
    let mut planned = Vec::new();
    for user in dm.recipients.iter().copied() {
        if user == message.author_id {
            continue;
        }
        let in_dm = tx.get(USER_CHANNEL_NOTIFY, (user, channel.id))?;
        let on_box = tx.get(USER_NOTIFY_BOX, user)?;
        let covering = Covering {
            channel: in_dm.as_ref(),
            guild: None,
            boxed: on_box.as_ref(),
            dm: true,
        };
        let named = Mentioned {
            directly: message.mentions.contains(&user),
            by_role: false,
            by_everyone: message.mention_everyone,
        };
        let Some(kind) = covering.push(named, at) else {
            continue;
        };
        let preview = Preview {
            title: &title,
            body: &body,
        };
        planned.extend(deliveries(tx, own_origin, message, user, kind, preview)?);
    }
    Ok(planned)
}

/// What the home did with a relayed notification ([`Services::relay_notification`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Relayed {
    /// The user is not homed here.
    NotHomed,
    /// The token's grant was revoked (by the user, or by removing the peer), or never
    /// recorded here.
    GrantRevoked,
    /// The call was applied already.
    Duplicate,
    /// This many deliveries were queued, one per distributor.
    Queued(usize),
}

impl Services {
    /// At the user's home: queues a delivery of `notice` to each of the user's
    /// distributors, if the grant `jti` (of a token already checked) still stands and the
    /// call (`notice.host`, `call_id`) was not applied before; all in one commit.
    pub async fn relay_notification(
        &self,
        notice: Notice,
        call_id: u64,
        jti: String,
    ) -> Result<Relayed, StoreError> {
        let user = notice.user;
        let distributors = self
            .store
            .read(|tx| tx.get(USER, user))?
            .map(|u| u.push_subscriptions.len())
            .unwrap_or(0);
        let ids: Vec<Id> = (0..distributors).map(|_| self.next_id()).collect();
        self.store
            .write(move |tx| {
                let Some(local) = tx.get(USER, user)?.filter(|u| u.homeserver.is_empty()) else {
                    return Ok(Relayed::NotHomed);
                };
                if !tx.contains(PUSH_GRANT, (user, notice.host.as_str(), jti.as_str()))? {
                    return Ok(Relayed::GrantRevoked);
                }
                if !super::inbox::first_delivery(tx, &notice.host, call_id)? {
                    return Ok(Relayed::Duplicate);
                }
                let body = notice.delivery_body();
                let mut queued = 0;
                for (id, subscription) in ids.into_iter().zip(&local.push_subscriptions) {
                    enqueue(tx, id, &subscription.endpoint, &body)?;
                    queued += 1;
                }
                Ok(Relayed::Queued(queued))
            })
            .await
    }

    /// Runs the fan-out job `job` (outbox item `job_id`): plans its notifications and
    /// deliveries and queues them in the commit that removes the job. A job body this
    /// build cannot read plans nothing and is removed, not retried forever.
    pub async fn run_push_fanout(&self, job_id: Id, job: &str) -> Result<(), StoreError> {
        let planned = match serde_json::from_str::<PushFanout>(job) {
            Ok(job) => self
                .store
                .read(|tx| plan(tx, &self.origin, job.channel_id, job.message_id))?,
            Err(_) => Vec::new(),
        };
        let ids: Vec<Id> = planned.iter().map(|_| self.next_id()).collect();
        self.store
            .write(move |tx| {
                if !tx.delete(OUTBOX, job_id)? {
                    return Ok(());
                }
                for (id, p) in ids.into_iter().zip(planned) {
                    enqueue(tx, id, &p.target, &p.call)?;
                }
                Ok(())
            })
            .await
    }
}

/// The home refused the token a PushNotification carried (`sent`, the queued call's
/// body): it is dropped here, unless a newer one arrived meanwhile, so this server stops
/// sending it. Runs in the commit that removes the call from the outbox.
pub fn token_refused(tx: &Tx, sent: &str) -> Result<(), StoreError> {
    let Ok(sent) = serde_json::from_str::<PushNotification>(sent) else {
        return Ok(());
    };
    let user = sent.user_id;
    if tx.get(PUSH_DELEGATION, user)?.as_deref() == Some(sent.token.as_str()) {
        tx.delete(PUSH_DELEGATION, user)?;
    }
    Ok(())
}
