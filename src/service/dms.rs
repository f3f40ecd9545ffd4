//! Direct messages hosted on this box: opening one (a 1:1 DM that exists is returned),
//! listing, naming, adding and removing people, leaving. A DM is a channel of no guild
//! ([`NO_GUILD`]) whose participants hold [`DM_PERMISSIONS`] in it, so messages,
//! reactions, files, typing and voice go through the same checks as guild channels
//! ([`participant_access`] answers for [`super::access::channel_access`]).

use super::access::GuildAccess;
use super::outbox::{enqueue, Call};
use super::visibility::GuildVisibility;
use super::{check_text, invalid, Error, Result, Services};
use crate::model::*;
use crate::storage::{tables::*, Rows, StoreError, Tx};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;

/// `POST /dms`: whom to talk to, and a name for a group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDm {
    /// The other people (not the opener).
    pub recipients: Vec<UserId>,
    /// A group DM's name.
    #[serde(default)]
    pub name: Option<String>,
}

/// `PATCH /dms/:id`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmUpdate {
    /// New name (group DMs; empty clears it).
    pub name: String,
}

/// A DM as clients see it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DmView {
    /// Id (also its channel's: messages are under `/channels/:id/messages`).
    pub id: Id,
    /// `dm` or `group_dm`.
    pub kind: ChannelKind,
    /// The origin of the box hosting it, where its channel is used.
    pub host: String,
    /// Who owns it.
    pub owner_id: UserId,
    /// Name (may be empty).
    pub name: String,
    /// Everyone in it, the owner included.
    pub recipients: Vec<UserId>,
    /// Unix seconds.
    pub created_at: u64,
    /// Whether the last call to the host went through, for DMs a home lists from other
    /// boxes (`None`: not known, no call made since this box started); `true` for DMs
    /// hosted here.
    pub host_reachable: Option<bool>,
}

impl DmView {
    /// The view of a DM hosted at `host`.
    pub fn of(dm: &Dm, host: &str, host_reachable: Option<bool>) -> DmView {
        DmView {
            id: dm.id,
            kind: dm.kind,
            host: host.to_string(),
            owner_id: dm.owner,
            name: dm.name.clone(),
            recipients: dm.recipients.clone(),
            created_at: dm.created_at,
            host_reachable,
        }
    }
}

/// The standing of a participant in a DM channel, in the form the permission checks take:
/// a guild of one role holding [`DM_PERMISSIONS`], owned by nobody (so nobody holds more).
/// Someone not in it is told the channel does not exist.
pub fn participant_access(tx: &Tx, channel: &Channel, user: UserId) -> Result<GuildAccess> {
    let dm = tx.get(DM, channel.id)?.ok_or(Error::NotFound("channel"))?;
    if !dm.recipients.contains(&user) {
        return Err(Error::NotFound("channel"));
    }
    Ok(GuildAccess::from_parts(
        Guild {
            id: NO_GUILD,
            name: String::new(),
            description: String::new(),
            owner: UserId([0; 32]),
            created_at: dm.created_at,
            permission_version: 0,
        },
        vec![Role {
            id: NO_GUILD,
            guild_id: NO_GUILD,
            name: "@everyone".into(),
            color: 0,
            permissions: DM_PERMISSIONS,
            position: 0,
            mentionable: false,
        }],
        Member {
            guild_id: NO_GUILD,
            user_id: user,
            nick: String::new(),
            roles: Vec::new(),
            joined_at: dm.created_at,
        },
    ))
}

/// What realtime events of DMs a user receives: those of the DMs they are in here.
pub fn dm_visibility(tx: &Tx, user: UserId) -> Result<GuildVisibility> {
    let channels = tx
        .rows(USER_DM, Rows::prefix(user))?
        .into_iter()
        .map(|((_, id), _)| (id, DM_PERMISSIONS))
        .collect();
    Ok(GuildVisibility {
        guild: Permissions::NONE,
        channels,
        joined_seq: 0,
    })
}

/// The home origin of a user this box knows (an account here, a shadow account, or an
/// entry of the directory of peers' users); `None` for a stranger.
pub fn home_of(tx: &Tx, user: UserId, origin: &str) -> Result<Option<String>> {
    if let Some(u) = tx.get(USER, user)? {
        // Accounts made here before homes were recorded have none: this box is theirs.
        if u.homeserver.is_empty() {
            return Ok(Some(origin.to_string()));
        }
        return Ok(Some(u.homeserver));
    }
    Ok(tx.get(DIRECTORY, user)?.map(|entry| entry.home))
}

fn load_dm_of(tx: &Tx, id: Id, user: UserId) -> Result<Dm> {
    match tx.get(DM, id)? {
        Some(dm) if dm.recipients.contains(&user) => Ok(dm),
        _ => Err(Error::NotFound("dm")),
    }
}

/// Every participant receives it; a change of who is in a DM also changes which DM
/// channels their sessions admit, hence the permission change of [`NO_GUILD`].
fn emit_to(tx: &Tx, kind: &str, users: &[UserId], data: &impl Serialize) -> Result<()> {
    tx.emit(
        kind,
        Audience {
            users: users.to_vec(),
            ..Audience::default()
        },
        Some(NO_GUILD),
        data,
    )?;
    Ok(())
}

fn check_room(tx: &Tx, user: UserId, max: usize) -> Result<()> {
    if tx.count(USER_DM, Rows::prefix(user).limit(max))? >= max {
        return Err(Error::LimitReached(format!(
            "a user may be in at most {max} DMs on this server"
        )));
    }
    Ok(())
}

/// `dm_joined` (host → each participant's home): `{id, dm}`, the DM as it is now.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmJoined {
    /// The call id (set when queued).
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// The DM, its participants included.
    pub dm: Dm,
    /// Who made the change (opened the DM, added someone): a participant's home lists the
    /// DM for them the first time only if they accept DMs from this person.
    pub by: UserId,
    /// The participants who share a guild hosted by the sender with `by`.
    #[serde(default)]
    pub shared_guild_with: Vec<UserId>,
}

/// `dm_left` (host → the home of whoever left or was removed): `{id, dm_id, user_ids}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmLeft {
    /// The call id (set when queued).
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    /// The DM.
    pub dm_id: Id,
    /// Who is no longer in it.
    pub user_ids: Vec<UserId>,
}

/// Queues, in the commit of a change, `dm_joined` with the DM as it is now to the home
/// of every participant homed elsewhere, and `dm_left` to the homes of `removed`.
fn tell_homes(
    tx: &Tx,
    call_ids: &[Id],
    origin: &str,
    by: UserId,
    dm: Option<&Dm>,
    dm_id: Id,
    removed: &[UserId],
) -> Result<()> {
    let mut ids = call_ids.iter();
    // Enough ids for any DM within the size limit; only a DM made larger before the
    // limit was lowered can run out.
    let mut next = || {
        ids.next().copied().ok_or_else(|| {
            invalid(
                "too_many_items",
                "this DM has more people than this server allows now",
            )
        })
    };
    let mut told: Vec<String> = Vec::new();
    if let Some(dm) = dm {
        for user in &dm.recipients {
            match home_of(tx, *user, origin)? {
                Some(home) if home != origin && !told.contains(&home) => {
                    let mut shared_guild_with = Vec::new();
                    for other in &dm.recipients {
                        if super::dm_consent::share_a_guild_here(tx, *other, by)? {
                            shared_guild_with.push(*other);
                        }
                    }
                    let call = Call::DmJoined(DmJoined {
                        id: None,
                        dm: dm.clone(),
                        by,
                        shared_guild_with,
                    });
                    enqueue(tx, next()?, &home, &call)?;
                    told.push(home);
                }
                _ => {}
            }
        }
    }
    let mut left: HashMap<String, Vec<UserId>> = HashMap::new();
    for user in removed {
        if let Some(home) = home_of(tx, *user, origin)?.filter(|h| h != origin) {
            left.entry(home).or_default().push(*user);
        }
    }
    for (home, user_ids) in left {
        let call = Call::DmLeft(DmLeft {
            id: None,
            dm_id,
            user_ids,
        });
        enqueue(tx, next()?, &home, &call)?;
    }
    Ok(())
}

impl Services {
    /// Enough call ids for [`tell_homes`]: a home per participant, and one per person
    /// removed, with room for DMs made under a limit twice as high.
    fn home_call_ids(&self) -> Vec<Id> {
        (0..2 * self.config.limits.max_group_dm_members.max(2) + 2)
            .map(|_| self.next_id())
            .collect()
    }

    /// Checks a `POST /dms` body before anything is read: no duplicates, not the opener,
    /// at most the group size; returns the DM's kind and name.
    pub fn check_new_dm(&self, actor: UserId, new: &NewDm) -> Result<(ChannelKind, String)> {
        let limits = &self.config.limits;
        if new.recipients.is_empty() {
            return Err(invalid(
                "invalid_recipients",
                "recipients must name at least one other user",
            ));
        }
        if new.recipients.contains(&actor) {
            return Err(invalid(
                "invalid_recipients",
                "you cannot open a DM with yourself: list the other people only",
            ));
        }
        for (i, user) in new.recipients.iter().enumerate() {
            if new.recipients[..i].contains(user) {
                return Err(invalid(
                    "duplicate_recipient",
                    format!("{} is listed twice", user.to_text()),
                ));
            }
        }
        if new.recipients.len() + 1 > limits.max_group_dm_members {
            return Err(invalid(
                "too_many_items",
                format!(
                    "a group DM holds at most {} people, you included",
                    limits.max_group_dm_members
                ),
            ));
        }
        let name = match &new.name {
            Some(name) => check_text("name", name.trim(), limits.max_name_chars)?,
            None => String::new(),
        };
        let kind = if new.recipients.len() == 1 && new.name.is_none() {
            ChannelKind::Dm
        } else {
            ChannelKind::GroupDm
        };
        Ok((kind, name))
    }

    /// The 1:1 DM between `actor` and `other` hosted here, if one exists.
    pub fn existing_dm(&self, actor: UserId, other: UserId) -> Result<Option<Dm>> {
        self.store.read(|tx| {
            for ((_, id), _) in tx.rows(USER_DM, Rows::prefix(actor))? {
                if let Some(dm) = tx.get(DM, id)? {
                    if dm.kind == ChannelKind::Dm && dm.recipients.contains(&other) {
                        return Ok(Some(dm));
                    }
                }
            }
            Ok(None)
        })
    }

    /// The homes of the recipients, each recipient known here; 404 `unknown_user` for one
    /// who is not.
    pub fn recipient_homes(&self, users: &[UserId]) -> Result<HashMap<UserId, String>> {
        self.store.read(|tx| {
            let mut homes = HashMap::new();
            for user in users {
                let home = home_of(tx, *user, &self.origin)?.ok_or(Error::NotFound("user"))?;
                homes.insert(*user, home);
            }
            Ok(homes)
        })
    }

    /// Opens a DM hosted here: `actor` and `recipients` (already checked by
    /// [`Services::check_new_dm`]), each known here; the homes of those homed elsewhere are
    /// told in the same commit (`dm_joined`).
    pub async fn open_dm(
        &self,
        id: Id,
        actor: UserId,
        kind: ChannelKind,
        name: String,
        recipients: Vec<UserId>,
    ) -> Result<DmView> {
        let call_ids = self.home_call_ids();
        let max = self.config.limits.max_dms_per_user;
        let origin = self.origin.clone();
        self.store
            .write(move |tx| {
                let mut everyone = vec![actor];
                everyone.extend(recipients);
                for user in &everyone {
                    let home = home_of(tx, *user, &origin)?.ok_or(Error::NotFound("user"))?;
                    if *user != actor && home == origin {
                        super::dm_consent::check_consent(tx, *user, actor, false)?;
                    }
                    check_room(tx, *user, max)?;
                }
                let dm = Dm {
                    id,
                    kind,
                    owner: actor,
                    name,
                    recipients: everyone,
                    created_at: crate::system::now_ms() / 1000,
                };
                let channel = Channel {
                    id,
                    guild_id: NO_GUILD,
                    kind,
                    name: dm.name.clone(),
                    topic: String::new(),
                    position: 0,
                    parent_id: None,
                    overwrites: Vec::new(),
                };
                tx.put(CHANNEL, id, &channel)?;
                tx.put(DM, id, &dm)?;
                for user in &dm.recipients {
                    tx.put(USER_DM, (*user, id), &Present)?;
                }
                let view = DmView::of(&dm, &origin, Some(true));
                emit_to(tx, "dm_create", &dm.recipients, &view)?;
                tell_homes(tx, &call_ids, &origin, actor, Some(&dm), id, &[])?;
                Ok(view)
            })
            .await
    }

    /// The DMs hosted here that `actor` is in, newest first.
    pub fn hosted_dms(&self, actor: UserId) -> Result<Vec<DmView>> {
        self.store.read(|tx| {
            let mut out = Vec::new();
            for ((_, id), _) in tx.rows(USER_DM, Rows::prefix(actor).reverse())? {
                if let Some(dm) = tx.get(DM, id)? {
                    out.push(DmView::of(&dm, &self.origin, Some(true)));
                }
            }
            Ok(out)
        })
    }

    /// One DM hosted here that `actor` is in.
    pub fn get_dm(&self, actor: UserId, id: Id) -> Result<DmView> {
        self.store.read(|tx| {
            let dm = load_dm_of(tx, id, actor)?;
            Ok(DmView::of(&dm, &self.origin, Some(true)))
        })
    }

    /// Renames a group DM (any participant may).
    pub async fn rename_dm(&self, actor: UserId, id: Id, update: DmUpdate) -> Result<DmView> {
        let name = check_text(
            "name",
            update.name.trim(),
            self.config.limits.max_name_chars,
        )?;
        let call_ids = self.home_call_ids();
        let origin = self.origin.clone();
        self.store
            .write(move |tx| {
                let mut dm = load_dm_of(tx, id, actor)?;
                if dm.kind != ChannelKind::GroupDm {
                    return Err(invalid("not_a_group_dm", "only a group DM has a name"));
                }
                dm.name = name;
                tx.put(DM, id, &dm)?;
                if let Some(mut channel) = tx.get(CHANNEL, id)? {
                    channel.name = dm.name.clone();
                    tx.put(CHANNEL, id, &channel)?;
                }
                let view = DmView::of(&dm, &origin, Some(true));
                emit_to(tx, "dm_update", &dm.recipients, &view)?;
                tell_homes(tx, &call_ids, &origin, actor, Some(&dm), id, &[])?;
                Ok(view)
            })
            .await
    }

    /// Adds `user` to a group DM (any participant may; the user must be known here).
    pub async fn add_dm_recipient(&self, actor: UserId, id: Id, user: UserId) -> Result<DmView> {
        let limits = self.config.limits.clone();
        let call_ids = self.home_call_ids();
        let origin = self.origin.clone();
        self.store
            .write(move |tx| {
                let mut dm = load_dm_of(tx, id, actor)?;
                if dm.kind != ChannelKind::GroupDm {
                    return Err(invalid(
                        "not_a_group_dm",
                        "people are added to group DMs only: open a group DM instead",
                    ));
                }
                if dm.recipients.contains(&user) {
                    return Ok(DmView::of(&dm, &origin, Some(true)));
                }
                if dm.recipients.len() >= limits.max_group_dm_members {
                    return Err(invalid(
                        "too_many_items",
                        format!(
                            "a group DM holds at most {} people",
                            limits.max_group_dm_members
                        ),
                    ));
                }
                let home = home_of(tx, user, &origin)?.ok_or(Error::NotFound("user"))?;
                if home == origin {
                    super::dm_consent::check_consent(tx, user, actor, false)?;
                }
                check_room(tx, user, limits.max_dms_per_user)?;
                dm.recipients.push(user);
                tx.put(DM, id, &dm)?;
                tx.put(USER_DM, (user, id), &Present)?;
                let view = DmView::of(&dm, &origin, Some(true));
                let others: Vec<UserId> = dm
                    .recipients
                    .iter()
                    .copied()
                    .filter(|u| *u != user)
                    .collect();
                emit_to(tx, "dm_update", &others, &view)?;
                emit_to(tx, "dm_create", &[user], &view)?;
                tell_homes(tx, &call_ids, &origin, actor, Some(&dm), id, &[])?;
                Ok(view)
            })
            .await
    }

    /// Takes `user` out of a DM: themself (leaving, any DM), or another participant of a
    /// group DM by its owner. The owner leaving hands the group to the next person in it;
    /// the last one leaving deletes it with its messages.
    pub async fn remove_dm_recipient(&self, actor: UserId, id: Id, user: UserId) -> Result<()> {
        let origin = self.origin.clone();
        let call_ids = self.home_call_ids();
        self.store
            .write(move |tx| {
                let mut dm = load_dm_of(tx, id, actor)?;
                if user != actor {
                    if dm.kind != ChannelKind::GroupDm || dm.owner != actor {
                        return Err(Error::Forbidden(
                            "only the owner of a group DM removes others".into(),
                        ));
                    }
                    if !dm.recipients.contains(&user) {
                        return Err(Error::NotFound("user"));
                    }
                }
                dm.recipients.retain(|u| *u != user);
                tx.delete(USER_DM, (user, id))?;
                emit_to(
                    tx,
                    "dm_delete",
                    &[user],
                    &json!({ "id": id, "host": origin }),
                )?;
                let after = if dm.recipients.is_empty() {
                    if let Some(channel) = tx.get(CHANNEL, id)? {
                        super::guilds::delete_channel_rows(tx, &channel)?;
                    }
                    tx.delete(DM, id)?;
                    None
                } else {
                    if dm.owner == user {
                        dm.owner = dm.recipients[0];
                    }
                    tx.put(DM, id, &dm)?;
                    emit_to(
                        tx,
                        "dm_update",
                        &dm.recipients,
                        &DmView::of(&dm, &origin, Some(true)),
                    )?;
                    Some(dm)
                };
                tell_homes(tx, &call_ids, &origin, actor, after.as_ref(), id, &[user])
            })
            .await
    }
}

/// The DMs of other boxes a user's home lists for them.
pub struct RemoteDm {
    /// Its host's origin.
    pub host: String,
    /// The DM as the host last described it.
    pub dm: Dm,
}

impl Services {
    /// `dm_joined` from `host`: the DM is listed for each of its participants homed here
    /// (unless a later description was applied already), and their sessions hear of it;
    /// 403 `dm_refused` when one to whom it is new does not accept DMs from `by`.
    /// Returns how many were recorded (0 for a repeated call).
    pub async fn dm_joined_from(&self, host: &str, call_id: u64, call: DmJoined) -> Result<usize> {
        let host = host.to_string();
        let DmJoined {
            dm,
            by,
            shared_guild_with,
            ..
        } = call;
        let origin = self.origin.clone();
        let max = self.config.limits.max_dms_per_user;
        self.store
            .write(move |tx| {
                if !super::inbox::first_delivery(tx, &host, call_id)? {
                    return Ok(0);
                }
                let mut recorded = 0;
                for user in &dm.recipients {
                    match tx.get(USER, *user)? {
                        Some(u) if u.homeserver.is_empty() || u.homeserver == origin => {}
                        _ => continue,
                    }
                    let key = (*user, host.as_str(), dm.id.0);
                    let before = tx.get(USER_REMOTE_DM, key)?;
                    if before.as_ref().is_some_and(|e| e.version >= call_id) {
                        continue;
                    }
                    if before.is_none() {
                        // New to them: only from someone they accept DMs from. A refusal
                        // refuses the whole call, so the host refuses the DM.
                        super::dm_consent::check_consent(
                            tx,
                            *user,
                            by,
                            shared_guild_with.contains(user),
                        )?;
                        if tx.count(USER_REMOTE_DM, Rows::prefix(*user).limit(max))? >= max {
                            continue;
                        }
                    }
                    let entry = DmEntry {
                        host: host.clone(),
                        dm: dm.clone(),
                        version: call_id,
                    };
                    tx.put(USER_REMOTE_DM, key, &entry)?;
                    let kind = if before.is_some() {
                        "dm_update"
                    } else {
                        "dm_create"
                    };
                    tx.emit(
                        kind,
                        Audience::user(*user),
                        None,
                        &DmView::of(&dm, &host, Some(true)),
                    )?;
                    recorded += 1;
                }
                Ok(recorded)
            })
            .await
    }

    /// `dm_left` from `host`: the DM is no longer listed for those of `users` homed here.
    pub async fn dm_left_from(
        &self,
        host: &str,
        call_id: u64,
        dm_id: Id,
        users: Vec<UserId>,
    ) -> Result<usize> {
        let host = host.to_string();
        self.store
            .write(move |tx| {
                if !super::inbox::first_delivery(tx, &host, call_id)? {
                    return Ok(0);
                }
                let mut removed = 0;
                for user in users {
                    let key = (user, host.as_str(), dm_id.0);
                    // A later `dm_joined` (added again) delivered first stands.
                    if tx
                        .get(USER_REMOTE_DM, key)?
                        .is_some_and(|e| e.version > call_id)
                    {
                        continue;
                    }
                    if tx.delete(USER_REMOTE_DM, key)? {
                        tx.emit(
                            "dm_delete",
                            Audience::user(user),
                            None,
                            &json!({ "id": dm_id, "host": host }),
                        )?;
                        removed += 1;
                    }
                }
                Ok(removed)
            })
            .await
    }

    /// The DMs of other boxes `user` (homed here) is in, as their hosts last told.
    pub fn remote_dms(&self, user: UserId) -> Result<Vec<RemoteDm>> {
        self.store.read(|tx| {
            Ok(tx
                .rows(USER_REMOTE_DM, Rows::prefix(user))?
                .into_iter()
                .map(|(_, entry)| RemoteDm {
                    host: entry.host,
                    dm: entry.dm,
                })
                .collect())
        })
    }
}

/// Takes a deleted user out of every DM hosted here (a DM left empty goes, with its
/// messages) and forgets their DM settings, blocks and the DMs listed for them; in the
/// commit that removes the user. The others see them gone when they next read the DM.
pub fn forget_user(tx: &Tx, user: UserId) -> Result<(), StoreError> {
    for ((_, id), _) in tx.rows(USER_DM, Rows::prefix(user))? {
        let Some(mut dm) = tx.get(DM, id)? else {
            continue;
        };
        dm.recipients.retain(|u| *u != user);
        if dm.recipients.is_empty() {
            for (_, message) in tx.rows(CHANNEL_MESSAGE, Rows::prefix(id))? {
                tx.delete_rows(MESSAGE_REACTION, Rows::prefix(message.id))?;
            }
            tx.delete_rows(CHANNEL_MESSAGE, Rows::prefix(id))?;
            tx.delete_rows(CHANNEL_FILE, Rows::prefix(id))?;
            tx.delete_rows(CHANNEL_UPLOAD, Rows::prefix(id))?;
            tx.delete(CHANNEL, id)?;
            tx.delete(DM, id)?;
            continue;
        }
        if dm.owner == user {
            dm.owner = dm.recipients[0];
        }
        tx.put(DM, id, &dm)?;
    }
    tx.delete_rows(USER_DM, Rows::prefix(user))?;
    tx.delete_rows(USER_REMOTE_DM, Rows::prefix(user))?;
    tx.delete_rows(USER_BLOCK, Rows::prefix(user))?;
    tx.delete(USER_DM_POLICY, user)?;
    Ok(())
}
