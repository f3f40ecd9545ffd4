// Realtime: the session's gateway, each event it delivers applied to the state and the
// screen, and typing notices sent while someone writes.

import { Gateway } from './gateway.js';
import { $ } from './dom.js';
import { boxOfGuild, ensureUser, placeGuild, s } from './state.js';
import { setStatus } from './boxes.js';
import { applyReadState, onMessage } from './unread.js';
import { applyNotificationSettings } from './notifications.js';
import { dmEvent } from './dms.js';
import { loadGuilds, loadMembers, renderGuilds, renderMembers, selectGuild } from './guilds.js';
import { refreshMessage, removeMessage, renderMessages, renderTyping, upsertMessage } from './messages.js';

/** Opens a box's gateway; its events update the page from then on. */
export function connectGateway(box) {
  box.gateway = new Gateway(box.api);
  box.gateway.connect((frame) => onGatewayEvent(box, frame));
}

function onGatewayEvent(box, frame) {
  if (frame.op === 'status') {
    const online = frame.status === 'online';
    setStatus(box, online ? 'online' : 'unreachable', online ? '' : frame.message || '');
    if (online && box.isHome) refreshMe();
    return;
  }
  if (frame.op === 'resync') {
    for (const id of box.guildOrder) {
      for (const c of s.guilds.get(id)?.channels || []) {
        s.messages.delete(c.id);
        s.complete.delete(c.id);
      }
    }
    loadGuilds(box).catch(() => {});
    return;
  }
  if (frame.op === 'typing') {
    const d = frame.data;
    if (!s.typing.has(d.channel_id)) s.typing.set(d.channel_id, new Map());
    s.typing.get(d.channel_id).set(d.user_id, Date.now() + (d.expires_in_ms || 8000));
    ensureUser(d.user_id, s.channelGuild.get(d.channel_id)).then(renderTyping);
    setTimeout(renderTyping, (d.expires_in_ms || 8000) + 50);
    return;
  }
  if (frame.op === 'presence') {
    if (frame.data.status === 'offline') s.online.delete(frame.data.user_id);
    else s.online.add(frame.data.user_id);
    renderMembers();
    return;
  }
  const d = frame.data || {};
  switch (frame.type) {
    case 'message_create':
    case 'message_update': {
      const typing = s.typing.get(d.channel_id);
      if (typing) typing.delete(d.author_id);
      upsertMessage(d);
      renderTyping();
      if (frame.type === 'message_create') onMessage(d);
      break;
    }
    case 'dm_create':
    case 'dm_update':
    case 'dm_delete':
      dmEvent(box, frame.type, d);
      break;
    case 'read_state_update':
      applyReadState(d);
      break;
    case 'notification_settings_update':
      applyNotificationSettings(box, d);
      break;
    case 'message_delete':
      removeMessage(d.channel_id, d.id);
      break;
    case 'reaction_add':
    case 'reaction_remove':
    case 'pin_add':
    case 'pin_remove':
      if (s.messages.has(d.channel_id)) refreshMessage(d.channel_id, d.message_id || d.id);
      break;
    case 'guild_create':
    case 'guild_update':
    case 'channel_create':
    case 'channel_update':
    case 'channel_delete':
    case 'role_create':
    case 'role_update':
    case 'role_delete': {
      const guildId = d.guild_id || d.id;
      if (frame.type === 'guild_create') {
        s.guildBox.set(guildId, box.origin);
        if (!box.guildOrder.includes(guildId)) box.guildOrder.push(guildId);
      }
      if (guildId === s.guild) selectGuild(guildId);
      else if (box.guildOrder.includes(guildId)) {
        box.api.request('GET', `/api/v1/guilds/${guildId}`).then((g) => {
          s.guilds.set(guildId, g);
          placeGuild(g, box.origin);
          renderGuilds();
        }).catch(() => {});
      }
      break;
    }
    case 'guild_delete':
      leftGuild(box, d.id);
      break;
    case 'member_add':
    case 'member_update':
    case 'member_remove':
      if (d.user_id === s.me?.id && frame.type === 'member_remove') leftGuild(box, d.guild_id);
      else if (s.members.has(d.guild_id)) loadMembers(d.guild_id);
      break;
    case 'user_update':
      if (d.id) {
        s.users.set(d.id, d);
        renderMessages();
        renderMembers();
      }
      break;
    default:
      break;
  }
}

/** The user left a guild or it was deleted: it goes from its box's list. */
function leftGuild(box, guildId) {
  s.guilds.delete(guildId);
  box.guildOrder = box.guildOrder.filter((x) => x !== guildId);
  if (s.guild === guildId) {
    s.guild = null;
    s.channel = null;
    loadGuilds(box).catch(() => {});
  } else renderGuilds();
}

/** The home answers again: the profile shown is its current one. */
async function refreshMe() {
  try {
    s.me = await s.api.request('GET', '/api/v1/users/@me');
    s.users.set(s.me.id, s.me);
    $('me-name').textContent = s.me.name || s.me.username;
  } catch (e) {
    // Shown as it was.
  }
}

export function typed() {
  const now = Date.now();
  if (s.channel && now - s.lastTypingSent > 4000 && $('composer-text').value) {
    s.lastTypingSent = now;
    boxOfGuild(s.channelGuild.get(s.channel))?.gateway?.send({ op: 'typing', channel_id: s.channel });
  }
}
