// Realtime: the session's gateway, each event it delivers applied to the state and the
// screen, and typing notices sent while someone writes.

import { Gateway } from './gateway.js';
import { $ } from './dom.js';
import { ensureUser, s } from './state.js';
import { loadGuilds, loadMembers, renderGuilds, renderMembers, selectGuild } from './guilds.js';
import { refreshMessage, removeMessage, renderMessages, renderTyping, upsertMessage } from './messages.js';

/** Opens the gateway of the signed-in session; its events update the page from then on. */
export function connectRealtime() {
  s.gateway = new Gateway(s.api);
  s.gateway.connect(onGatewayEvent);
}

function onGatewayEvent(frame) {
  if (frame.op === 'status') {
    $('connection').classList.toggle('online', frame.status === 'online');
    $('connection').title = frame.status === 'online' ? 'Connected' : `Reconnecting… ${frame.message || ''}`;
    return;
  }
  if (frame.op === 'resync') {
    s.messages.clear();
    s.complete.clear();
    loadGuilds();
    return;
  }
  if (frame.op === 'typing') {
    const d = frame.data;
    if (!s.typing.has(d.channel_id)) s.typing.set(d.channel_id, new Map());
    s.typing.get(d.channel_id).set(d.user_id, Date.now() + (d.expires_in_ms || 8000));
    ensureUser(d.user_id).then(renderTyping);
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
      break;
    }
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
      if (frame.type === 'guild_create' && !s.guildOrder.includes(guildId)) s.guildOrder.push(guildId);
      if (guildId === s.guild) selectGuild(guildId);
      else if (s.guilds.has(guildId)) {
        s.api.request('GET', `/api/v1/guilds/${guildId}`).then((g) => { s.guilds.set(guildId, g); renderGuilds(); }).catch(() => {});
      }
      break;
    }
    case 'guild_delete':
      s.guilds.delete(d.id);
      s.guildOrder = s.guildOrder.filter((x) => x !== d.id);
      if (s.guild === d.id) {
        s.guild = null;
        s.channel = null;
        loadGuilds();
      } else renderGuilds();
      break;
    case 'member_add':
    case 'member_update':
    case 'member_remove':
      if (d.user_id === s.me?.id && frame.type === 'member_remove') {
        s.guilds.delete(d.guild_id);
        s.guildOrder = s.guildOrder.filter((x) => x !== d.guild_id);
        if (s.guild === d.guild_id) {
          s.guild = null;
          loadGuilds();
        } else renderGuilds();
      } else if (s.members.has(d.guild_id)) loadMembers(d.guild_id);
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

export function typed() {
  const now = Date.now();
  if (s.channel && now - s.lastTypingSent > 4000 && $('composer-text').value) {
    s.lastTypingSent = now;
    s.gateway?.send({ op: 'typing', channel_id: s.channel });
  }
}
