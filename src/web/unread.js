// Unread state: per channel the last message read with its unread and mention counts,
// as the box hosting the channel keeps them (one request per box at start, then
// `read_state_update` events, which also carry what the person read on another device);
// the badges on channels, guilds and boxes; the "new messages" divider of an opened
// channel; marking read as the person reads; and browser notifications while the tab is
// hidden.

import { apiFor, apiForChannel, s } from './state.js';
import { renderGuilds, renderGuild } from './guilds.js';
import { wants } from './notifications.js';

const READ_DELAY_MS = 200;

s.reads = new Map(); // channel id -> {last_read_id, last_message_id, unread, mentions}
let divider = null; // {channel, after}: where the opened channel's new messages start
const sending = new Map(); // channel id -> timer of the read marker about to be sent

const newer = (a, b) => BigInt(a) > BigInt(b);

function rerender() {
  renderGuilds();
  renderGuild();
}

/** Loads a box's read states: one request for every channel the person can see there. */
export async function loadReadStates(box) {
  if (!box.api) return;
  let list;
  try {
    list = await box.api.request('GET', '/api/v1/users/@me/read-states');
  } catch (e) {
    return;
  }
  for (const r of Array.isArray(list) ? list : list.read_states || []) s.reads.set(r.channel_id, { ...r });
  rerender();
}

/** A read state from the box (this or another device of the person read something). */
export function applyReadState(r) {
  s.reads.set(r.channel_id, { ...(s.reads.get(r.channel_id) || {}), ...r });
  rerender();
}

/** {unread, mentions} of a channel. */
export function channelCounts(channelId) {
  const r = s.reads.get(channelId);
  return { unread: r?.unread || 0, mentions: r?.mentions || 0 };
}

/** {unread, mentions} summed over a guild's channels. */
export function guildCounts(guildId) {
  const total = { unread: 0, mentions: 0 };
  for (const c of s.guilds.get(guildId)?.channels || []) {
    const n = channelCounts(c.id);
    total.unread += n.unread;
    total.mentions += n.mentions;
  }
  return total;
}

/** {unread, mentions} summed over a box's guilds. */
export function boxCounts(box) {
  const total = { unread: 0, mentions: 0 };
  for (const id of box.guildOrder) {
    const n = guildCounts(id);
    total.unread += n.unread;
    total.mentions += n.mentions;
  }
  return total;
}

/** How a message mentions this person: 'direct', 'everyone', 'role', or null. */
function mentionOf(m) {
  if (!s.me) return null;
  const text = m.content || '';
  if (text.includes(`<@${s.me.id}>`)) return 'direct';
  if (/@everyone|@here/.test(text) || m.mention_everyone) return 'everyone';
  const member = s.members.get(m.guild_id)?.get(s.me.id);
  return (member?.roles || []).some((role) => text.includes(`<@&${role}>`)) ? 'role' : null;
}

/** A message arrived: counted unread, or read at once when its channel is in view. */
export function onMessage(m) {
  if (!s.me || m.author_id === s.me.id) return;
  const r = { unread: 0, mentions: 0, ...(s.reads.get(m.channel_id) || {}) };
  r.last_message_id = m.id;
  const inView = m.channel_id === s.channel && document.visibilityState === 'visible';
  if (inView) {
    s.reads.set(m.channel_id, r);
    markRead(m.channel_id, m.id);
    return;
  }
  const mention = mentionOf(m);
  r.unread += 1;
  if (mention) r.mentions += 1;
  s.reads.set(m.channel_id, r);
  rerender();
  if (document.visibilityState === 'hidden' && wants(m, mention)) notify(m);
}

/** Marks a channel read up to `messageId` (never backwards); the box is told shortly. */
export function markRead(channelId, messageId) {
  const r = s.reads.get(channelId) || {};
  if (r.last_read_id && !newer(messageId, r.last_read_id) && !r.unread) return;
  s.reads.set(channelId, { ...r, last_read_id: messageId, unread: 0, mentions: 0 });
  rerender();
  clearTimeout(sending.get(channelId));
  sending.set(channelId, setTimeout(() => {
    sending.delete(channelId);
    // Signed out meanwhile: nothing to tell.
    apiForChannel(channelId)?.request('PUT', `/api/v1/channels/${channelId}/read`, { message_id: messageId }).catch(() => {});
  }, READ_DELAY_MS));
}

/** A channel was opened: where its new messages start, and it is read now. */
export function openedChannel(channelId) {
  const list = s.messages.get(channelId) || [];
  const last = list[list.length - 1];
  const r = s.reads.get(channelId);
  const after = r?.last_read_id || null;
  divider = last && (r?.unread || 0) > 0 && (!after || newer(last.id, after)) ? { channel: channelId, after } : null;
  if (last) markRead(channelId, last.id);
}

/** The message id the "new messages" divider follows in `channelId` ('' before all). */
export function dividerAfter(channelId) {
  if (!divider || divider.channel !== channelId) return null;
  return divider.after || '';
}

/** The tab is back in view: the open channel is read. */
export function visible() {
  if (document.visibilityState !== 'visible' || !s.channel) return;
  const list = s.messages.get(s.channel) || [];
  if (list.length) markRead(s.channel, list[list.length - 1].id);
}

/** "Mark as read" for a guild, or for everything on a box. */
export async function markGuildRead(guildId) {
  await apiFor(guildId).request('POST', `/api/v1/guilds/${guildId}/read`, {});
  for (const c of s.guilds.get(guildId)?.channels || []) {
    const r = s.reads.get(c.id);
    if (r) s.reads.set(c.id, { ...r, unread: 0, mentions: 0, last_read_id: r.last_message_id || r.last_read_id });
  }
  rerender();
}

export async function markBoxRead(box) {
  await box.api.request('POST', '/api/v1/users/@me/read', {});
  for (const id of box.guildOrder) {
    for (const c of s.guilds.get(id)?.channels || []) {
      const r = s.reads.get(c.id);
      if (r) s.reads.set(c.id, { ...r, unread: 0, mentions: 0, last_read_id: r.last_message_id || r.last_read_id });
    }
  }
  rerender();
}

/** A browser notification while the tab is hidden (when allowed and wanted). */
function notify(m) {
  if (typeof Notification === 'undefined' || Notification.permission !== 'granted') return;
  const g = s.guilds.get(m.guild_id);
  const author = s.users.get(m.author_id);
  const n = new Notification(`${author?.name || author?.username || 'Someone'}${g ? ` in ${g.name}` : ''}`, {
    body: (m.content || '').slice(0, 200),
    tag: `hearth-${m.channel_id}`,
  });
  n.onclick = () => {
    window.focus();
    n.close();
  };
}

/** Asks the browser for permission to show notifications (from a click). */
export async function allowNotifications() {
  if (typeof Notification === 'undefined') return 'unsupported';
  return Notification.requestPermission();
}

export function badge(count, testid) {
  if (!count) return null;
  const b = document.createElement('span');
  b.className = 'badge';
  b.dataset.testid = testid;
  b.textContent = count > 99 ? '99+' : String(count);
  return b;
}
