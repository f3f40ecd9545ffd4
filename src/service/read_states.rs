//! Read states: how far each user has read each channel hosted here, with unread and
//! mention counts that cost a few key lookups per channel, never a scan of messages.
//!
//! - **Counting.** Each channel keeps a [`ChannelCounter`] bumped in the commit of every
//!   message posted, as its own row among its readers' states ([`COUNTER_ROW`]); the
//!   message carries its counter value (`Message::seq`). A read state keeps the counter
//!   value of the message read, so unread = counter − read counter. A deleted message
//!   lowers nothing: it stays counted until the reader marks the channel read.
//! - **Mentions.** A message naming a user records (channel, user, message) in its commit;
//!   one naming roles or `@everyone` records one [`BroadMention`] row for the message,
//!   matched against the reader's roles when counting. The count is the rows after the
//!   read position (a short range read), at most [`MAX_COUNTED_MENTIONS`]; marking read
//!   drops the user's rows up to the position. Deleting a message drops its rows.
//! - **Posting reads.** The author has read the channel up to their own message: posting
//!   moves their read state there in the same commit, without an event (their other
//!   devices see their own `message_create` and clear the channel themselves).
//! - **Sync.** Every change of a user's read state emits `read_state_update` addressed to
//!   that user alone, so only their own sessions on this box receive it.
//!
//! Everything is keyed by channel id: a channel outside any guild is read the same way.

use super::access::{channel_access, GuildAccess};
use super::{invalid, Result, Services};
use crate::model::read_state::unread;
use crate::model::*;
use crate::storage::{tables::*, Rows, Tx};
use serde::Serialize;
use std::collections::HashSet;

/// Mentions counted per channel at most (clients show "99+"); it bounds the range reads
/// of the start-up summary however long a user stayed away.
pub const MAX_COUNTED_MENTIONS: usize = 100;

/// A user's mention rows dropped per channel and commit at most when reading it: the rest
/// (only left by a flood of mentions) lie before the read position, where counting never
/// looks, and go with the next read.
const MENTION_PRUNE_PER_COMMIT: usize = 1000;

/// One channel's read state as clients see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReadStateView {
    /// The channel.
    pub channel_id: Id,
    /// Its guild; `None` for a direct message.
    pub guild_id: Option<Id>,
    /// The last message read, `None` if never read.
    pub last_read_id: Option<Id>,
    /// The channel's newest message, `None` if it has none.
    pub last_message_id: Option<Id>,
    /// Messages posted after the last one read.
    pub unread: u64,
    /// Messages after the last one read that mention the user (by name, by one of their
    /// roles, or `@everyone`), at most [`MAX_COUNTED_MENTIONS`].
    pub mentions: u64,
}

/// A channel a user can see, with what counting their mentions needs.
struct Seen {
    channel: Channel,
    /// The user's roles there (the guild's `@everyone` role included).
    roles: Vec<Id>,
}

/// The counter of a channel. Channels with messages from before counters existed have
/// none: their newest message is looked up, and their old messages count as read.
fn counter_of(tx: &Tx, channel: Id) -> Result<ChannelCounter> {
    if let Some(row) = tx.get(CHANNEL_READ_STATE, (channel, COUNTER_ROW))? {
        return Ok(ChannelCounter::from_row(&row));
    }
    Ok(ChannelCounter {
        seq: 0,
        last_message_id: newest_message(tx, channel)?,
    })
}

fn newest_message(tx: &Tx, channel: Id) -> Result<Option<Id>> {
    Ok(tx
        .rows(CHANNEL_MESSAGE, Rows::prefix(channel).reverse().limit(1))?
        .pop()
        .map(|((_, id), _)| id))
}

/// Mentions of `user` after `after` in `channel`, at most [`MAX_COUNTED_MENTIONS`]; a
/// message naming the user and one of their roles counts once.
fn count_mentions(
    tx: &Tx,
    channel: Id,
    user: UserId,
    roles: &[Id],
    after: Option<Id>,
) -> Result<u64> {
    let mut direct = Rows::prefix((channel, user)).limit(MAX_COUNTED_MENTIONS);
    let mut broad = Rows::prefix(channel).limit(MAX_COUNTED_MENTIONS);
    if let Some(after) = after {
        direct = direct.after((channel, user, after));
        broad = broad.after((channel, after));
    }
    let named: HashSet<Id> = tx
        .rows(CHANNEL_USER_MENTION, direct)?
        .into_iter()
        .map(|((_, _, message), _)| message)
        .collect();
    let by_role = tx
        .rows(CHANNEL_BROAD_MENTION, broad)?
        .into_iter()
        .filter(|((_, message), m)| !named.contains(message) && m.names(user, roles))
        .count();
    Ok((named.len() + by_role).min(MAX_COUNTED_MENTIONS) as u64)
}

fn view_of(tx: &Tx, user: UserId, seen: &Seen) -> Result<ReadStateView> {
    let channel = seen.channel.id;
    let counter = counter_of(tx, channel)?;
    let state = tx.get(CHANNEL_READ_STATE, (channel, user))?;
    let last_read_id = state.as_ref().map(|s| s.last_read_id);
    Ok(ReadStateView {
        channel_id: channel,
        guild_id: (!seen.channel.kind.is_dm()).then_some(seen.channel.guild_id),
        last_read_id,
        last_message_id: counter.last_message_id,
        unread: unread(&counter, state.as_ref()),
        mentions: count_mentions(tx, channel, user, &seen.roles, last_read_id)?,
    })
}

fn roles_of(access: &GuildAccess) -> Vec<Id> {
    let mut roles = access.member.roles.clone();
    roles.push(access.guild.id);
    roles
}

/// The text channels of one guild the user can view.
fn seen_in_guild(tx: &Tx, access: &GuildAccess) -> Result<Vec<Seen>> {
    let roles = roles_of(access);
    let mut out = Vec::new();
    for ((_, id), _) in tx.rows(GUILD_CHANNEL, Rows::prefix(access.guild.id))? {
        let Some(channel) = tx.get(CHANNEL, id)? else {
            continue;
        };
        if channel.kind != ChannelKind::Text
            || !access
                .channel_permissions(tx, &channel)?
                .contains(Permissions::VIEW_CHANNEL)
        {
            continue;
        }
        out.push(Seen {
            channel,
            roles: roles.clone(),
        });
    }
    Ok(out)
}

/// Every channel hosted here that the user can see: the text channels of their guilds,
/// and their direct messages hosted here.
fn seen_on_box(tx: &Tx, user: UserId) -> Result<Vec<Seen>> {
    let mut out = Vec::new();
    for ((_, guild), _) in tx.rows(USER_GUILD, Rows::prefix(user))? {
        let access = match GuildAccess::load(tx, guild, user) {
            Ok(access) => access,
            Err(super::Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        out.extend(seen_in_guild(tx, &access)?);
    }
    for ((_, dm), _) in tx.rows(USER_DM, Rows::prefix(user))? {
        match seen_channel(tx, dm, user) {
            Ok(seen) => out.push(seen),
            Err(super::Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// One channel the user can see (404 otherwise, as for its messages).
fn seen_channel(tx: &Tx, channel_id: Id, user: UserId) -> Result<Seen> {
    let (channel, access) = channel_access(tx, channel_id, user)?;
    access.require_in(tx, &channel, Permissions::VIEW_CHANNEL)?;
    if !channel.kind.holds_messages() {
        return Err(invalid(
            "not_a_text_channel",
            "only text channels and DMs are read",
        ));
    }
    Ok(Seen {
        roles: roles_of(&access),
        channel,
    })
}

/// Moves the user's read position in `seen` to message `to`, posted at counter `seq`, if
/// that is ahead of where it is (never back); drops their mention rows up to it and emits
/// `read_state_update` to them. Returns the new view, `None` when nothing changed.
fn advance(tx: &Tx, user: UserId, seen: &Seen, to: Id, seq: u64) -> Result<Option<ReadStateView>> {
    let channel = seen.channel.id;
    let old = tx.get(CHANNEL_READ_STATE, (channel, user))?;
    if let Some(old) = &old {
        // The same message again still moves the counter when messages after it were
        // deleted, so that reading the channel's newest message clears the count.
        if to < old.last_read_id || (to == old.last_read_id && seq <= old.read_seq) {
            return Ok(None);
        }
    }
    let state = ReadState {
        last_read_id: to,
        read_seq: seq.max(old.map_or(0, |o| o.read_seq)),
    };
    tx.put(CHANNEL_READ_STATE, (channel, user), &state)?;
    prune_mentions(tx, channel, user, to)?;
    let view = view_of(tx, user, seen)?;
    tx.emit("read_state_update", Audience::user(user), None, &view)?;
    Ok(Some(view))
}

fn prune_mentions(tx: &Tx, channel: Id, user: UserId, through: Id) -> Result<()> {
    tx.delete_rows(
        CHANNEL_USER_MENTION,
        Rows::prefix((channel, user))
            .before((channel, user, Id(through.0.saturating_add(1))))
            .limit(MENTION_PRUNE_PER_COMMIT),
    )?;
    Ok(())
}

/// Marks the whole of each channel read; returns the views that changed.
fn read_all(tx: &Tx, user: UserId, seen: &[Seen]) -> Result<Vec<ReadStateView>> {
    let mut changed = Vec::new();
    for seen in seen {
        let counter = counter_of(tx, seen.channel.id)?;
        let to = match counter.last_message_id {
            Some(last) => last,
            // Every message was deleted: keep the position, take the count.
            None => match tx.get(CHANNEL_READ_STATE, (seen.channel.id, user))? {
                Some(state) => state.last_read_id,
                None if counter.seq == 0 => continue,
                None => Id(0),
            },
        };
        if let Some(view) = advance(tx, user, seen, to, counter.seq)? {
            changed.push(view);
        }
    }
    Ok(changed)
}

/// In the commit of a new message, before it is stored: bumps the channel's counter and
/// numbers the message with it, records whom it mentions, and moves the author's read
/// position to it. Public for tools that fill a box in bulk (the `unread` bench), which
/// must keep the counters as posting does.
pub fn on_message_posted(tx: &Tx, message: &mut Message) -> Result<()> {
    let channel = message.channel_id;
    let author = message.author_id;
    // The counter and the author's position: one table, opened once.
    let mut states = tx.open_mut(CHANNEL_READ_STATE)?;
    let mut counter = match states.get((channel, COUNTER_ROW))? {
        Some(row) => ChannelCounter::from_row(&row),
        None => ChannelCounter {
            seq: 0,
            last_message_id: newest_message(tx, channel)?,
        },
    };
    counter.seq += 1;
    // Ids are made before the commit, so a message may commit after a newer one.
    if counter.last_message_id.is_none_or(|last| message.id > last) {
        counter.last_message_id = Some(message.id);
    }
    message.seq = counter.seq;
    states.put((channel, COUNTER_ROW), &counter.to_row())?;
    let ahead = states
        .get((channel, author))?
        .is_none_or(|s| s.last_read_id < message.id);
    // The author's older mention rows stay until their next read marker: counting starts
    // after the read position, so they no longer count, and posting stays a few writes.
    if ahead {
        let state = ReadState {
            last_read_id: message.id,
            read_seq: counter.seq,
        };
        states.put((channel, author), &state)?;
    }
    drop(states);
    for user in &message.mentions {
        if *user != message.author_id {
            tx.put(CHANNEL_USER_MENTION, (channel, *user, message.id), &Present)?;
        }
    }
    if message.mention_everyone || !message.mention_roles.is_empty() {
        tx.put(
            CHANNEL_BROAD_MENTION,
            (channel, message.id),
            &BroadMention {
                author_id: message.author_id,
                roles: message.mention_roles.clone(),
                everyone: message.mention_everyone,
            },
        )?;
    }
    Ok(())
}

/// In the commit that deletes a message (after its row is gone): drops its mention rows
/// and, if it was the newest, makes the one before it the channel's newest.
pub(super) fn on_message_deleted(tx: &Tx, message: &Message) -> Result<()> {
    let channel = message.channel_id;
    tx.delete(CHANNEL_BROAD_MENTION, (channel, message.id))?;
    for user in &message.mentions {
        tx.delete(CHANNEL_USER_MENTION, (channel, *user, message.id))?;
    }
    if let Some(row) = tx.get(CHANNEL_READ_STATE, (channel, COUNTER_ROW))? {
        let mut counter = ChannelCounter::from_row(&row);
        if counter.last_message_id == Some(message.id) {
            counter.last_message_id = newest_message(tx, channel)?;
            tx.put(
                CHANNEL_READ_STATE,
                (channel, COUNTER_ROW),
                &counter.to_row(),
            )?;
        }
    }
    Ok(())
}

/// In the commit that deletes a channel: its counter, read states and mention rows.
pub(super) fn on_channel_deleted(tx: &Tx, channel: Id) -> Result<()> {
    tx.delete_rows(CHANNEL_READ_STATE, Rows::prefix(channel))?;
    tx.delete_rows(CHANNEL_USER_MENTION, Rows::prefix(channel))?;
    tx.delete_rows(CHANNEL_BROAD_MENTION, Rows::prefix(channel))?;
    Ok(())
}

impl Services {
    /// The read state of every text channel hosted here that the user can see, in one
    /// snapshot.
    pub fn read_states(&self, actor: UserId) -> Result<Vec<ReadStateView>> {
        self.store.read(|tx| {
            seen_on_box(tx, actor)?
                .iter()
                .map(|seen| view_of(tx, actor, seen))
                .collect()
        })
    }

    /// Marks a channel read up to `message_id`, a message of that channel (never
    /// backwards: an older message leaves the state as it is). Returns the state.
    pub async fn mark_read(
        &self,
        actor: UserId,
        channel_id: Id,
        message_id: Id,
    ) -> Result<ReadStateView> {
        self.store
            .write(move |tx| {
                let seen = seen_channel(tx, channel_id, actor)?;
                let Some(message) = tx.get(CHANNEL_MESSAGE, (channel_id, message_id))? else {
                    return Err(invalid(
                        "invalid_message",
                        "message_id must be a message of this channel",
                    ));
                };
                let counter = counter_of(tx, channel_id)?;
                // The newest message takes the whole count, so that messages deleted
                // after it stop counting; an older one its own counter value (0 for a
                // message from before counters, which all later ones count from).
                let seq = if counter.last_message_id == Some(message_id) {
                    counter.seq
                } else {
                    message.seq
                };
                match advance(tx, actor, &seen, message_id, seq)? {
                    Some(view) => Ok(view),
                    None => view_of(tx, actor, &seen),
                }
            })
            .await
    }

    /// Marks every text channel of a guild the user can see read. Returns the states that
    /// changed.
    pub async fn mark_guild_read(&self, actor: UserId, guild_id: Id) -> Result<Vec<ReadStateView>> {
        self.store
            .write(move |tx| {
                let access = GuildAccess::load(tx, guild_id, actor)?;
                read_all(tx, actor, &seen_in_guild(tx, &access)?)
            })
            .await
    }

    /// Marks every channel hosted here that the user can see read. Returns the states that
    /// changed.
    pub async fn mark_all_read(&self, actor: UserId) -> Result<Vec<ReadStateView>> {
        self.store
            .write(move |tx| read_all(tx, actor, &seen_on_box(tx, actor)?))
            .await
    }
}
