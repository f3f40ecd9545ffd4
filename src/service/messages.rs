//! Messages, replies, mentions, attachments, reactions and pins.

use super::access::channel_access;
use super::push;
use super::{check_text, invalid, Error, Result, Services};
use crate::model::*;
use crate::storage::{tables::*, Rows, Tx};
use crate::system::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A new message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// Text; mentions are written `<@USER_ID>`, `<@&ROLE_ID>` or `@everyone`.
    #[serde(default)]
    pub content: String,
    /// The message this one answers (same channel).
    #[serde(default)]
    pub reply_to: Option<Id>,
    /// Files uploaded to this channel before, by file id.
    #[serde(default)]
    pub attachments: Vec<String>,
}

/// Paging of a channel's history: newest first by default.
#[derive(Debug, Default, Clone, Copy)]
pub struct Page {
    /// Only messages older than this id.
    pub before: Option<Id>,
    /// Only messages newer than this id (returned oldest first).
    pub after: Option<Id>,
    /// At most this many (1–100).
    pub limit: usize,
}

/// Reactions of one emoji on a message.
#[derive(Debug, Serialize, PartialEq)]
pub struct ReactionView {
    /// The emoji.
    pub emoji: String,
    /// How many.
    pub count: usize,
    /// Whether the viewer is among them.
    pub me: bool,
}

/// A message with its reactions.
#[derive(Debug, Serialize)]
pub struct MessageView {
    /// The message.
    #[serde(flatten)]
    pub message: Message,
    /// Reactions, grouped by emoji.
    pub reactions: Vec<ReactionView>,
}

/// Longest emoji text accepted (a few code points, or a custom `:name:`).
const MAX_EMOJI_BYTES: usize = 64;

/// Whether `user` counts as mentioned in `channel`: a member of its guild, or a
/// participant of a DM.
fn may_be_mentioned(tx: &Tx, channel: &Channel, user: UserId) -> Result<bool> {
    if channel.kind.is_dm() {
        return Ok(tx
            .get(DM, channel.id)?
            .is_some_and(|dm| dm.recipients.contains(&user)));
    }
    Ok(tx.contains(GUILD_MEMBER, (channel.guild_id, user))?)
}

/// Finds mentions in message text: `<@USER_ID>`, `<@&ROLE_ID>`, `@everyone`.
pub fn parse_mentions(content: &str) -> (Vec<UserId>, Vec<Id>, bool) {
    let mut users = Vec::new();
    let mut roles = Vec::new();
    let mut rest = content;
    while let Some(start) = rest.find("<@") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('>') else { break };
        let inner = &after[..end];
        if let Some(role) = inner.strip_prefix('&') {
            if let Some(id) = Id::parse(role) {
                if !roles.contains(&id) {
                    roles.push(id);
                }
            }
        } else if let Some(user) = UserId::parse(inner) {
            if !users.contains(&user) {
                users.push(user);
            }
        }
        rest = &after[end + 1..];
    }
    (users, roles, content.contains("@everyone"))
}

fn check_emoji(emoji: &str) -> Result<()> {
    if emoji.is_empty()
        || emoji.len() > MAX_EMOJI_BYTES
        || emoji.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(invalid(
            "invalid_emoji",
            "emoji must be 1-64 bytes without spaces",
        ));
    }
    Ok(())
}

fn reactions_of(tx: &Tx, message: Id, viewer: UserId) -> Result<Vec<ReactionView>> {
    let mut out: Vec<ReactionView> = Vec::new();
    for ((_, emoji, user), _) in tx.rows(MESSAGE_REACTION, Rows::prefix(message))? {
        match out.last_mut() {
            Some(last) if last.emoji == emoji => {
                last.count += 1;
                last.me |= user == viewer;
            }
            _ => out.push(ReactionView {
                emoji,
                count: 1,
                me: user == viewer,
            }),
        }
    }
    Ok(out)
}

fn view(tx: &Tx, message: Message, viewer: UserId) -> Result<MessageView> {
    let reactions = reactions_of(tx, message.id, viewer)?;
    Ok(MessageView { message, reactions })
}

fn emit_reaction(
    tx: &Tx,
    kind: &str,
    channel: &Channel,
    message: Id,
    emoji: &str,
    user: UserId,
) -> Result<()> {
    tx.emit(
        kind,
        Audience::channel(channel.guild_id, channel.id),
        None,
        &json!({
            "message_id": message,
            "channel_id": channel.id,
            "guild_id": channel.guild_id,
            "user_id": user,
            "emoji": emoji,
        }),
    )?;
    Ok(())
}

fn load_message(tx: &Tx, channel: Id, message: Id) -> Result<Message> {
    tx.get(CHANNEL_MESSAGE, (channel, message))?
        .ok_or(Error::NotFound("message"))
}

impl Services {
    /// Posts a message (SEND_MESSAGES; attachments need ATTACH_FILES; `@everyone` only
    /// notifies with MENTION_EVERYONE). Mentions and `all` readers queue pushes in the same
    /// commit ([`push::queue_fanout`]).
    pub async fn create_message(
        &self,
        actor: UserId,
        channel_id: Id,
        new: NewMessage,
    ) -> Result<MessageView> {
        let limits = self.config.limits.clone();
        let content = check_text("content", &new.content, limits.max_message_chars)?;
        if content.trim().is_empty() && new.attachments.is_empty() {
            return Err(invalid(
                "empty_message",
                "a message needs text or an attachment",
            ));
        }
        if new.attachments.len() > limits.max_attachments_per_message {
            return Err(invalid(
                "too_many_items",
                format!("at most {} attachments", limits.max_attachments_per_message),
            ));
        }
        let (mentions, mention_roles, everyone) = parse_mentions(&content);
        if mentions.len() + mention_roles.len() > limits.max_mentions_per_message {
            return Err(invalid(
                "too_many_items",
                format!("at most {} mentions", limits.max_mentions_per_message),
            ));
        }
        let id = self.next_id();
        let push_id = self.next_id();
        self.store
            .write(move |tx| {
                let (channel, access) = channel_access(tx, channel_id, actor)?;
                if !channel.kind.holds_messages() {
                    return Err(invalid(
                        "not_a_text_channel",
                        "messages go in text channels",
                    ));
                }
                let mut needed = Permissions::SEND_MESSAGES;
                if !new.attachments.is_empty() {
                    needed |= Permissions::ATTACH_FILES;
                }
                let have = access.require_in(tx, &channel, needed)?;
                if let Some(reply) = new.reply_to {
                    load_message(tx, channel_id, reply).map_err(|_| {
                        invalid(
                            "invalid_reply",
                            "reply_to must be a message of this channel",
                        )
                    })?;
                }
                let mut attachments = Vec::with_capacity(new.attachments.len());
                for file_id in &new.attachments {
                    let Some(meta) = super::files::upload_meta(tx, channel_id, file_id, actor)?
                    else {
                        return Err(invalid(
                            "invalid_attachment",
                            format!("file {file_id} was not uploaded to this channel"),
                        ));
                    };
                    attachments.push(Attachment {
                        file_id: meta.file_id,
                        filename: meta.filename,
                        size: meta.size,
                        content_type: meta.content_type,
                    });
                }
                let mut users = Vec::new();
                for user in mentions {
                    if may_be_mentioned(tx, &channel, user)? {
                        users.push(user);
                    }
                }
                let mut roles = Vec::new();
                for role in mention_roles {
                    if let Some(r) = tx.get(GUILD_ROLE, (channel.guild_id, role))? {
                        if r.mentionable || have.contains(Permissions::MENTION_EVERYONE) {
                            roles.push(role);
                        }
                    }
                }
                let mut message = Message {
                    id,
                    channel_id,
                    guild_id: channel.guild_id,
                    author_id: actor,
                    content,
                    created_at: now_ms(),
                    edited_at: None,
                    reply_to: new.reply_to,
                    mentions: users,
                    mention_roles: roles,
                    mention_everyone: everyone && have.contains(Permissions::MENTION_EVERYONE),
                    attachments,
                    pinned: false,
                    seq: 0,
                };
                super::read_states::on_message_posted(tx, &mut message)?;
                tx.put(CHANNEL_MESSAGE, (channel_id, id), &message)?;
                tx.emit(
                    "message_create",
                    Audience::channel(message.guild_id, channel_id),
                    None,
                    &message,
                )?;
                // Mentions, and readers who chose `all`, are notified by push: a fan-out
                // job in this commit (queuing it wakes the outbox).
                if push::wants_push(tx, &message)? {
                    push::queue_fanout(tx, push_id, &message)?;
                }
                Ok(MessageView {
                    message,
                    reactions: Vec::new(),
                })
            })
            .await
    }

    /// One message (VIEW_CHANNEL and READ_MESSAGE_HISTORY).
    pub fn get_message(
        &self,
        actor: UserId,
        channel_id: Id,
        message_id: Id,
    ) -> Result<MessageView> {
        self.store.read(|tx| {
            let (channel, access) = channel_access(tx, channel_id, actor)?;
            access.require_in(tx, &channel, Permissions::READ_MESSAGE_HISTORY)?;
            view(tx, load_message(tx, channel_id, message_id)?, actor)
        })
    }

    /// A page of history: newest first before `before` (or the end); oldest first after
    /// `after`.
    pub fn list_messages(
        &self,
        actor: UserId,
        channel_id: Id,
        page: Page,
    ) -> Result<Vec<MessageView>> {
        let limit = page.limit.clamp(1, 100);
        self.store.read(|tx| {
            let (channel, access) = channel_access(tx, channel_id, actor)?;
            access.require_in(tx, &channel, Permissions::READ_MESSAGE_HISTORY)?;
            let mut rows = Rows::prefix(channel_id).limit(limit);
            if let Some(a) = page.after {
                rows = rows.at_or_after((channel_id, Id(a.0.saturating_add(1))));
            }
            if let Some(b) = page.before {
                rows = rows.before((channel_id, b));
            }
            if page.after.is_none() {
                rows = rows.reverse();
            }
            let rows = tx.rows(CHANNEL_MESSAGE, rows)?;
            rows.into_iter().map(|(_, m)| view(tx, m, actor)).collect()
        })
    }

    /// Edits one's own message.
    pub async fn edit_message(
        &self,
        actor: UserId,
        channel_id: Id,
        message_id: Id,
        content: String,
    ) -> Result<MessageView> {
        let content = check_text("content", &content, self.config.limits.max_message_chars)?;
        let (mentions, mention_roles, everyone) = parse_mentions(&content);
        if mentions.len() + mention_roles.len() > self.config.limits.max_mentions_per_message {
            return Err(invalid("too_many_items", "too many mentions"));
        }
        self.store
            .write(move |tx| {
                let (channel, access) = channel_access(tx, channel_id, actor)?;
                let have = access.require_in(tx, &channel, Permissions::VIEW_CHANNEL)?;
                let mut message = load_message(tx, channel_id, message_id)?;
                if message.author_id != actor {
                    return Err(Error::Forbidden(
                        "only the author may edit a message".into(),
                    ));
                }
                if content.trim().is_empty() && message.attachments.is_empty() {
                    return Err(invalid(
                        "empty_message",
                        "a message needs text or an attachment",
                    ));
                }
                let mut users = Vec::new();
                for user in mentions {
                    if may_be_mentioned(tx, &channel, user)? {
                        users.push(user);
                    }
                }
                message.mentions = users;
                // The same rule as when posting: a role that is not mentionable only
                // counts for someone with MENTION_EVERYONE.
                let mut roles = Vec::new();
                for role in mention_roles {
                    if let Some(r) = tx.get(GUILD_ROLE, (channel.guild_id, role))? {
                        if r.mentionable || have.contains(Permissions::MENTION_EVERYONE) {
                            roles.push(role);
                        }
                    }
                }
                message.mention_roles = roles;
                message.mention_everyone = everyone && have.contains(Permissions::MENTION_EVERYONE);
                message.content = content;
                message.edited_at = Some(now_ms());
                tx.put(CHANNEL_MESSAGE, (channel_id, message_id), &message)?;
                // An edit may be of a message from before the reader opened the channel:
                // history, like reading it over REST.
                tx.emit(
                    "message_update",
                    Audience::channel(message.guild_id, channel_id)
                        .requiring(Permissions::READ_MESSAGE_HISTORY),
                    None,
                    &message,
                )?;
                view(tx, message, actor)
            })
            .await
    }

    /// Deletes a message: one's own, or anyone's with MANAGE_MESSAGES.
    pub async fn delete_message(
        &self,
        actor: UserId,
        channel_id: Id,
        message_id: Id,
    ) -> Result<()> {
        self.store
            .write(move |tx| {
                let (channel, access) = channel_access(tx, channel_id, actor)?;
                let have = access.require_in(tx, &channel, Permissions::VIEW_CHANNEL)?;
                let message = load_message(tx, channel_id, message_id)?;
                if message.author_id != actor && !have.contains(Permissions::MANAGE_MESSAGES) {
                    return Err(super::access::missing(Permissions::MANAGE_MESSAGES));
                }
                tx.delete_rows(MESSAGE_REACTION, Rows::prefix(message_id))?;
                tx.delete(CHANNEL_PIN, (channel_id, message_id))?;
                tx.delete(CHANNEL_MESSAGE, (channel_id, message_id))?;
                super::read_states::on_message_deleted(tx, &message)?;
                tx.emit(
                    "message_delete",
                    Audience::channel(message.guild_id, channel_id),
                    None,
                    &json!({ "id": message_id, "channel_id": channel_id, "guild_id": message.guild_id }),
                )?;
                Ok(())
            })
            .await
    }

    /// Adds the actor's reaction (ADD_REACTIONS for a new emoji; joining an existing one
    /// needs only READ_MESSAGE_HISTORY).
    pub async fn add_reaction(
        &self,
        actor: UserId,
        channel_id: Id,
        message_id: Id,
        emoji: String,
    ) -> Result<Vec<ReactionView>> {
        check_emoji(&emoji)?;
        let max = self.config.limits.max_reactions_per_message;
        self.store
            .write(move |tx| {
                let (channel, access) = channel_access(tx, channel_id, actor)?;
                let have = access.require_in(tx, &channel, Permissions::READ_MESSAGE_HISTORY)?;
                load_message(tx, channel_id, message_id)?;
                let current = reactions_of(tx, message_id, actor)?;
                let exists = current.iter().any(|r| r.emoji == emoji);
                if !exists {
                    if !have.contains(Permissions::ADD_REACTIONS) {
                        return Err(super::access::missing(Permissions::ADD_REACTIONS));
                    }
                    if current.len() >= max {
                        return Err(Error::LimitReached(format!(
                            "at most {max} different reactions per message"
                        )));
                    }
                }
                tx.put(
                    MESSAGE_REACTION,
                    (message_id, emoji.as_str(), actor),
                    &Present,
                )?;
                emit_reaction(tx, "reaction_add", &channel, message_id, &emoji, actor)?;
                reactions_of(tx, message_id, actor)
            })
            .await
    }

    /// Removes a reaction: the actor's own, or another user's with MANAGE_MESSAGES.
    pub async fn remove_reaction(
        &self,
        actor: UserId,
        channel_id: Id,
        message_id: Id,
        emoji: String,
        user: UserId,
    ) -> Result<Vec<ReactionView>> {
        check_emoji(&emoji)?;
        self.store
            .write(move |tx| {
                let (channel, access) = channel_access(tx, channel_id, actor)?;
                let have = access.require_in(tx, &channel, Permissions::READ_MESSAGE_HISTORY)?;
                load_message(tx, channel_id, message_id)?;
                if user != actor && !have.contains(Permissions::MANAGE_MESSAGES) {
                    return Err(super::access::missing(Permissions::MANAGE_MESSAGES));
                }
                if !tx.delete(MESSAGE_REACTION, (message_id, emoji.as_str(), user))? {
                    return Err(Error::NotFound("reaction"));
                }
                emit_reaction(tx, "reaction_remove", &channel, message_id, &emoji, user)?;
                reactions_of(tx, message_id, actor)
            })
            .await
    }

    /// Pins or unpins a message (MANAGE_MESSAGES).
    pub async fn set_pinned(
        &self,
        actor: UserId,
        channel_id: Id,
        message_id: Id,
        pinned: bool,
    ) -> Result<MessageView> {
        let max = self.config.limits.max_pins_per_channel;
        self.store
            .write(move |tx| {
                let (channel, access) = channel_access(tx, channel_id, actor)?;
                access.require_in(tx, &channel, Permissions::MANAGE_MESSAGES)?;
                let mut message = load_message(tx, channel_id, message_id)?;
                if message.pinned != pinned {
                    if pinned
                        && tx.count(CHANNEL_PIN, Rows::prefix(channel_id).limit(max + 1))? >= max
                    {
                        return Err(Error::LimitReached(format!(
                            "at most {max} pins per channel"
                        )));
                    }
                    message.pinned = pinned;
                    let key = (channel_id, message_id);
                    if pinned {
                        tx.put(CHANNEL_PIN, key, &Present)?;
                    } else {
                        tx.delete(CHANNEL_PIN, key)?;
                    }
                    tx.put(CHANNEL_MESSAGE, key, &message)?;
                    tx.emit(
                        if pinned { "pin_add" } else { "pin_remove" },
                        Audience::channel(message.guild_id, channel_id)
                            .requiring(Permissions::READ_MESSAGE_HISTORY),
                        None,
                        &message,
                    )?;
                }
                view(tx, message, actor)
            })
            .await
    }

    /// Pinned messages of a channel, oldest pin first.
    pub fn list_pins(&self, actor: UserId, channel_id: Id) -> Result<Vec<MessageView>> {
        self.store.read(|tx| {
            let (channel, access) = channel_access(tx, channel_id, actor)?;
            access.require_in(tx, &channel, Permissions::READ_MESSAGE_HISTORY)?;
            let mut out = Vec::new();
            for ((_, id), _) in tx.rows(CHANNEL_PIN, Rows::prefix(channel_id))? {
                if let Ok(m) = load_message(tx, channel_id, id) {
                    out.push(view(tx, m, actor)?);
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_found_and_deduplicated() {
        let u = UserId([1; 32]).to_text();
        let text = format!("hi <@{u}> and <@{u}>, <@&42>, <@nonsense> @everyone <@");
        let (users, roles, everyone) = parse_mentions(&text);
        assert_eq!(users, vec![UserId([1; 32])]);
        assert_eq!(roles, vec![Id(42)]);
        assert!(everyone);
        assert_eq!(parse_mentions("plain"), (vec![], vec![], false));
    }
}
