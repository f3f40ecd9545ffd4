//! Invites: making, listing and revoking them, the preview anyone with the link sees,
//! joining by one, and invites made from the administrator's tools.

use super::access::{channel_access, GuildAccess};
use super::guilds::{add_member, guild_channels, load_channel_in, sorted_channels, GuildView};
use super::members::MemberView;
use super::profiles::PublicUser;
use super::{invalid, Error, Result, Services};
use crate::model::*;
use crate::storage::{tables::*, Rows, Tx};
use crate::system::now;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What anyone with the link may see of an invite.
#[derive(Debug, Serialize)]
pub struct InvitePreview {
    /// Code.
    pub code: String,
    /// Guild id.
    pub guild_id: Id,
    /// Guild name.
    pub guild_name: String,
    /// Guild description.
    pub guild_description: String,
    /// Channel id.
    pub channel_id: Id,
    /// Channel name.
    pub channel_name: String,
    /// Members.
    pub member_count: usize,
    /// Unix seconds.
    pub expires_at: Option<u64>,
}

/// New invite.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewInvite {
    /// Lifetime in seconds (default 7 days; 0 = never expires).
    pub max_age_secs: Option<u64>,
    /// Uses allowed (default unlimited).
    pub max_uses: Option<u32>,
}

const MAX_MEMBER_COUNT: usize = 1_000_000;

/// The link people share for an invite: `{origin}/invite/{code}`, and, when the box serves
/// TLS, `#fp={tls_fingerprint}`, the SHA-256 of its certificate as `/.well-known/hearth`
/// gives it. A browser never sends the fragment, so the box plays no part in it: a client
/// that opens the link compares what the box presents with what the link's maker saw.
pub fn invite_url(origin: &str, code: &str, tls_fingerprint: Option<&str>) -> String {
    match tls_fingerprint {
        Some(fingerprint) => format!("{origin}/invite/{code}#fp={fingerprint}"),
        None => format!("{origin}/invite/{code}"),
    }
}

fn make_invite_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 10];
    crate::system::random_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

impl Services {
    /// Makes an invite to a channel (CREATE_INVITE there).
    pub async fn create_invite(
        &self,
        actor: UserId,
        channel_id: Id,
        new: NewInvite,
    ) -> Result<Invite> {
        let max_invites = self.config.limits.max_invites_per_guild;
        let max_age = new.max_age_secs.unwrap_or(7 * 24 * 3600);
        if max_age > 365 * 24 * 3600 {
            return Err(invalid("invalid_field", "max_age_secs is at most one year"));
        }
        if new.max_uses == Some(0) {
            return Err(invalid(
                "invalid_field",
                "max_uses must be at least 1 (omit it for unlimited)",
            ));
        }
        let code = make_invite_code();
        self.store
            .write(move |tx| {
                let (channel, access) = channel_access(tx, channel_id, actor)?;
                access.require_in(tx, &channel, Permissions::CREATE_INVITE)?;
                let count = tx.count(
                    GUILD_INVITE,
                    Rows::prefix(channel.guild_id).limit(max_invites + 1),
                )?;
                if count >= max_invites {
                    return Err(Error::LimitReached(format!(
                        "at most {max_invites} invites per guild"
                    )));
                }
                let t = now();
                let invite = Invite {
                    code: code.clone(),
                    guild_id: channel.guild_id,
                    channel_id,
                    creator: actor,
                    created_at: t,
                    expires_at: (max_age > 0).then_some(t + max_age),
                    max_uses: new.max_uses,
                    uses: 0,
                    revoked: false,
                };
                tx.put(INVITE, code.as_str(), &invite)?;
                tx.put(GUILD_INVITE, (channel.guild_id, code.as_str()), &Present)?;
                // A code lets anyone in: only those who may list invites hear of it, and
                // its creator (who has it from the answer already).
                tx.emit(
                    "invite_create",
                    Audience::guild(invite.guild_id)
                        .requiring(Permissions::MANAGE_GUILD)
                        .and_user(actor),
                    None,
                    &invite,
                )?;
                Ok(invite)
            })
            .await
    }

    /// Invites of a guild (MANAGE_GUILD).
    pub fn list_invites(&self, actor: UserId, guild_id: Id) -> Result<Vec<Invite>> {
        self.store.read(|tx| {
            GuildAccess::load(tx, guild_id, actor)?.require(Permissions::MANAGE_GUILD)?;
            let mut out = Vec::new();
            for ((_, code), _) in tx.rows(GUILD_INVITE, Rows::prefix(guild_id))? {
                if let Some(invite) = tx.get(INVITE, code.as_str())? {
                    out.push(invite);
                }
            }
            Ok(out)
        })
    }

    /// Revokes an invite (its creator, or MANAGE_GUILD).
    pub async fn revoke_invite(&self, actor: UserId, code: String) -> Result<()> {
        self.store
            .write(move |tx| {
                let mut invite = tx
                    .get(INVITE, code.as_str())?
                    .ok_or(Error::NotFound("invite"))?;
                let access = GuildAccess::load(tx, invite.guild_id, actor)
                    .map_err(|_| Error::NotFound("invite"))?;
                if invite.creator != actor {
                    access.require(Permissions::MANAGE_GUILD)?;
                }
                invite.revoked = true;
                tx.put(INVITE, code.as_str(), &invite)?;
                tx.emit(
                    "invite_delete",
                    Audience::guild(invite.guild_id)
                        .requiring(Permissions::MANAGE_GUILD)
                        .and_user(invite.creator),
                    None,
                    &json!({ "code": invite.code, "guild_id": invite.guild_id }),
                )?;
                Ok(())
            })
            .await
    }

    /// What an invite leads to; needs no account.
    pub fn preview_invite(&self, code: &str) -> Result<InvitePreview> {
        self.store.read(|tx| {
            let invite = usable_invite(tx, code)?;
            let guild = tx
                .get(GUILD, invite.guild_id)?
                .ok_or(Error::NotFound("invite"))?;
            let channel = tx.get(CHANNEL, invite.channel_id)?;
            Ok(InvitePreview {
                code: invite.code,
                guild_id: guild.id,
                guild_name: guild.name,
                guild_description: guild.description,
                channel_id: invite.channel_id,
                channel_name: channel.map(|c| c.name).unwrap_or_default(),
                member_count: tx
                    .count(GUILD_MEMBER, Rows::prefix(guild.id).limit(MAX_MEMBER_COUNT))?,
                expires_at: invite.expires_at,
            })
        })
    }

    /// Joins the guild of an invite (gets `@everyone`). Joining a guild one is already in
    /// uses nothing up and succeeds.
    pub async fn join_invite(&self, actor: UserId, code: String) -> Result<GuildView> {
        let max_guilds = self.config.limits.max_guilds_per_user * 10;
        let origin = self.origin.clone();
        let guild_id = self
            .store
            .write(move |tx| join_in(tx, &code, actor, &origin, max_guilds))
            .await?;
        self.get_guild(actor, guild_id)
    }

    /// Makes an invite from the administrator's tools, in the guild owner's name.
    pub async fn admin_create_invite(
        &self,
        guild_id: Id,
        channel: Option<Id>,
        new: NewInvite,
    ) -> Result<Invite> {
        let (owner, channel) = self.store.read(|tx| {
            let guild = tx.get(GUILD, guild_id)?.ok_or(Error::NotFound("guild"))?;
            let channel = match channel {
                Some(c) => load_channel_in(tx, guild_id, c)?.id,
                None => {
                    sorted_channels(guild_channels(tx, guild_id)?)
                        .into_iter()
                        .find(|c| c.kind == ChannelKind::Text)
                        .ok_or(Error::NotFound("channel"))?
                        .id
                }
            };
            Ok::<_, Error>((guild.owner, channel))
        })?;
        self.create_invite(owner, channel, new).await
    }
}

/// Joins `actor` to the guild of invite `code` inside a write: the invite is used (unless
/// they are a member already) and `member_add` emitted. Registration with an invite calls
/// it in the commit that makes the account.
pub(super) fn join_in(
    tx: &Tx,
    code: &str,
    actor: UserId,
    origin: &str,
    max_guilds: usize,
) -> Result<Id> {
    let mut invite = check_new_member(tx, code, actor)?;
    let guild_id = invite.guild_id;
    if tx.contains(GUILD_MEMBER, (guild_id, actor))? {
        return Ok(guild_id);
    }
    if !tx.contains(USER, actor)? {
        return Err(Error::NotFound("user"));
    }
    if tx.count(USER_GUILD, Rows::prefix(actor).limit(max_guilds + 1))? >= max_guilds {
        return Err(Error::LimitReached(format!(
            "you may be in at most {max_guilds} guilds"
        )));
    }
    invite.uses += 1;
    tx.put(INVITE, code, &invite)?;
    let member = add_member(tx, guild_id, actor)?;
    let user = tx.get(USER, actor)?.map(|u| PublicUser::of(&u, origin));
    let seq = tx.emit(
        "member_add",
        Audience::guild(guild_id).and_user(actor),
        Some(guild_id),
        &MemberView { member, user },
    )?;
    tx.put(GUILD_MEMBER_SINCE, (guild_id, actor), &seq)?;
    Ok(guild_id)
}

/// The invite `code` if it is usable and `actor` is not banned from its guild (nothing is
/// written: registration checks this before it writes anything).
pub(super) fn check_new_member(tx: &Tx, code: &str, actor: UserId) -> Result<Invite> {
    let invite = usable_invite(tx, code)?;
    if tx.contains(GUILD_BAN, (invite.guild_id, actor))? {
        return Err(Error::Banned);
    }
    Ok(invite)
}

fn usable_invite(tx: &Tx, code: &str) -> Result<Invite> {
    if code.is_empty() || code.len() > 32 {
        return Err(Error::NotFound("invite"));
    }
    let invite = tx.get(INVITE, code)?.ok_or(Error::NotFound("invite"))?;
    let gone = |m: &str| Error::Gone {
        code: "invite_expired",
        message: m.to_string(),
    };
    if invite.revoked {
        return Err(gone("this invite has been revoked"));
    }
    if invite.expires_at.is_some_and(|e| e <= now()) {
        return Err(gone("this invite has expired"));
    }
    if invite.max_uses.is_some_and(|m| invite.uses >= m) {
        return Err(gone("this invite has been used up"));
    }
    if !tx.contains(GUILD, invite.guild_id)? {
        return Err(Error::NotFound("invite"));
    }
    Ok(invite)
}
