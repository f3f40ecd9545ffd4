// Guilds, channels, members and invites: the lists and the header of the sidebar, picking a
// guild or a text channel, and the dialogs that create guilds and channels and join by invite.

import { publicRequest, unreachable } from './api.js';
import { P } from './permissions.js';
import { $, dialog, el, field, showError } from './dom.js';
import { apiFor, apiForChannel, boxOfGuild, byId, can, homeOrigin, nameOf, placeGuild, s } from './state.js';
import { boxDialog, boxProblem, checkBox, connectBox, ensureBox, isHome, mismatchWarning, normalizeFingerprint, orderedBoxes, saveBoxes } from './boxes.js';
import { showVoice } from './voice-channel.js';
import { loadMessages, renderMessages, renderTyping } from './messages.js';
import { loadNotificationSettings } from './notifications.js';
import { DMS, dmUnread, profileDialog, renderDmList, selectDms } from './dms.js';
import { badge, boxCounts, channelCounts, guildCounts, loadReadStates, openedChannel } from './unread.js';

/** Loads the guilds the user is in on one box. */
export async function loadBoxGuilds(box) {
  const list = await box.api.request('GET', '/api/v1/users/@me/guilds');
  box.guildOrder = [];
  for (const g of list) {
    box.guildOrder.push(g.id);
    if (!s.guilds.has(g.id)) s.guilds.set(g.id, g);
    placeGuild(g, box.origin);
  }
  box.loaded = true;
  loadReadStates(box);
  loadNotificationSettings(box);
  renderGuilds();
  // Nothing picked yet (or it went away): the first guild; the DM list stays where it is.
  if (s.guild !== DMS && (!s.guild || !s.guilds.has(s.guild))) {
    const first = orderedBoxes().flatMap((b) => b.guildOrder)[0];
    if (first) await selectGuild(first);
    else renderGuild();
  }
}

/** Loads every box's guilds again (after missed events). */
export async function loadGuilds(box) {
  box.loaded = false;
  await loadBoxGuilds(box);
  if (s.guild && box.guildOrder.includes(s.guild)) await selectGuild(s.guild);
}

function initials(name) {
  return name.split(/[\s.:-]+/).filter(Boolean).slice(0, 2).map((w) => [...w][0]).join('').toUpperCase();
}

const STATUS_TEXT = {
  connecting: 'connecting…',
  online: 'connected',
  unreachable: 'cannot be reached',
  certificate: 'certificate not accepted yet?',
  mismatch: 'certificate differs from the pinned one',
};

/** The sidebar: each box with its status, and under it the guilds it hosts. */
export function renderGuilds() {
  const current = s.guild && s.guilds.has(s.guild) ? boxOfGuild(s.guild) : s.boxes.get(homeOrigin());
  $('connection').classList.toggle('online', current?.status === 'online');
  $('connection').title = current ? `${current.name}: ${STATUS_TEXT[current.status] || current.status}` : '';
  const list = $('guild-list');
  const unreadDms = dmUnread();
  const dms = el('li', { class: 'box dms' }, el('button', {
    type: 'button',
    class: `round${s.guild === DMS ? ' active' : ''}${unreadDms ? ' unread' : ''}`,
    title: 'Direct messages',
    'aria-label': 'Direct messages',
    dataset: { testid: 'dm-home', unread: String(unreadDms > 0) },
    onclick: selectDms,
  }, '✉'), badge(unreadDms, 'dm-home-unread'));
  list.replaceChildren(dms, ...orderedBoxes().map((box) => el('li', { class: `box ${box.status}`, dataset: { testid: 'box', origin: box.origin } },
    el('button', {
      type: 'button',
      class: 'box-head',
      title: `${box.name} (${box.origin}): ${STATUS_TEXT[box.status] || box.status}${box.detail ? ` (${box.detail})` : ''}`,
      dataset: { testid: 'box-name' },
      onclick: () => boxDialog(box),
    }, el('span', { class: `box-status ${box.status}`, dataset: { testid: 'box-status', status: box.status } }), box.isHome ? 'Home' : box.name,
    badge(boxCounts(box).mentions, 'box-mentions')),
    el('ul', {}, ...box.guildOrder.map((id) => {
      const g = s.guilds.get(id);
      const name = g ? g.name : '?';
      const counts = guildCounts(id);
      return el('li', { class: 'guild-item' },
        el('button', {
          class: `round${id === s.guild ? ' active' : ''}${counts.unread ? ' unread' : ''}`,
          title: `${name} on ${box.name}`,
          'aria-label': name,
          dataset: { testid: 'guild', guildId: id, unread: String(counts.unread > 0) },
          onclick: () => selectGuild(id),
        }, initials(name) || '#'),
        badge(counts.mentions, 'guild-mentions'));
    })))));
}

export async function selectGuild(id) {
  if (s.guild !== id) $('invite-box').hidden = true;
  s.guild = id;
  const box = boxOfGuild(id);
  let view;
  try {
    view = await box.api.request('GET', `/api/v1/guilds/${id}`);
  } catch (e) {
    // A box that went away: show what was loaded last, and why nothing changes.
    renderGuilds();
    renderGuild();
    showError('chat-error', unreachable(e) ? new Error(`${box.name} cannot be reached right now.`) : e);
    return;
  }
  s.guilds.set(id, view);
  placeGuild(view, box.origin);
  renderGuilds();
  renderGuild();
  loadMembers(id);
  const channels = (view.channels || []).filter((c) => c.kind === 'text');
  const keep = channels.find((c) => c.id === s.channel);
  if (keep) await selectChannel(keep.id);
  else if (channels[0]) await selectChannel(channels[0].id);
  else renderMessages();
}

export function renderGuild() {
  if (s.guild === DMS) {
    renderDmList();
    return;
  }
  $('dm-manage').hidden = true;
  $('dm-call').hidden = true;
  const g = s.guilds.get(s.guild);
  const box = g ? boxOfGuild(s.guild) : null;
  $('guild-name').textContent = g ? g.name : 'No guild yet';
  $('guild-box').textContent = box && !box.isHome ? `on ${box.name}` : '';
  $('invite-create').hidden = !can(g, P.CREATE_INVITE);
  $('channel-add').hidden = !can(g, P.MANAGE_CHANNELS);
  $('guild-read').hidden = !g || guildCounts(s.guild).unread === 0;
  $('guild-notify').hidden = !g;
  $('channel-notify').hidden = !g || !s.channel;
  const list = $('channel-list');
  if (!g) {
    list.replaceChildren(el('li', { class: 'muted', text: 'Create a guild with +, or join one with an invite.' }));
    $('channel-name').textContent = '';
    return;
  }
  const channels = [...(g.channels || [])].sort((a, b) => a.position - b.position || byId(a, b));
  const categories = channels.filter((c) => c.kind === 'category');
  const item = (c) => {
    const counts = channelCounts(c.id);
    const unread = counts.unread > 0 && c.id !== s.channel;
    return el('li', {},
      el('button', {
        class: `channel ${c.kind}${c.id === s.channel ? ' active' : ''}${unread ? ' unread' : ''}`,
        dataset: { testid: 'channel', channelId: c.id, kind: c.kind, unread: String(unread) },
        onclick: () => (c.kind === 'text' ? selectChannel(c.id) : showVoice(c)),
      }, `${c.kind === 'voice' ? '🔊 ' : '# '}${c.name}`, badge(counts.mentions, 'channel-mentions')));
  };
  const rows = channels.filter((c) => c.kind !== 'category' && !c.parent_id).map(item);
  for (const cat of categories) {
    rows.push(el('li', { class: 'category', text: cat.name.toUpperCase() }));
    rows.push(...channels.filter((c) => c.kind !== 'category' && c.parent_id === cat.id).map(item));
  }
  list.replaceChildren(...rows);
}

export async function loadMembers(guildId) {
  try {
    const api = apiFor(guildId);
    const list = await api.request('GET', `/api/v1/guilds/${guildId}/members?limit=1000`);
    const map = new Map();
    for (const m of list) {
      map.set(m.user_id, m);
      if (m.user) s.users.set(m.user_id, m.user);
    }
    s.members.set(guildId, map);
    const online = await api.request('GET', `/api/v1/guilds/${guildId}/presences`);
    for (const p of online) {
      if (p.status === 'offline') s.online.delete(p.user_id);
      else s.online.add(p.user_id);
    }
  } catch (e) {
    // The list stays as it was.
  }
  if (guildId === s.guild) {
    renderMembers();
    renderMessages();
  }
}

export function renderMembers() {
  // In a DM, its people; in a guild, its members. A name opens the person's card.
  const dm = s.guild === DMS ? s.dms.get(s.channel) : null;
  const place = dm ? `dm:${dm.id}` : s.guild;
  const members = dm
    ? dm.recipients.map((user_id) => ({ user_id }))
    : [...(s.members.get(s.guild)?.values() || [])];
  members.sort((a, b) => nameOf(a.user_id, place).localeCompare(nameOf(b.user_id, place)));
  $('member-list').replaceChildren(...members.map((m) => el('li', { dataset: { testid: 'member', userId: m.user_id } },
    el('span', { class: `dot${s.online.has(m.user_id) ? ' online' : ''}`, title: s.online.has(m.user_id) ? 'online' : 'offline' }),
    el('button', { type: 'button', class: 'member-name', onclick: () => profileDialog(m.user_id, place) }, nameOf(m.user_id, place)))));
}

async function selectChannel(id) {
  s.channel = id;
  s.replyTo = null;
  $('reply-bar').hidden = true;
  $('chat-error').textContent = '';
  document.body.classList.remove('nav-open');
  renderGuild();
  const g = s.guilds.get(s.guild);
  const c = g?.channels?.find((x) => x.id === id);
  $('channel-name').textContent = c ? `# ${c.name}` : '';
  $('channel-topic').textContent = c?.topic || '';
  if (!s.messages.has(id)) await loadMessages(id, null);
  openedChannel(id);
  renderMessages(true);
  renderTyping();
}

export function createGuild() {
  const [row, name] = field('Name', { maxlength: '100', required: '', dataset: { testid: 'guild-name-input' } });
  dialog('Create a guild', [row], async () => {
    const g = await s.api.request('POST', '/api/v1/guilds', { name: name.value });
    s.guilds.set(g.id, g);
    placeGuild(g, homeOrigin());
    const home = s.boxes.get(homeOrigin());
    if (home && !home.guildOrder.includes(g.id)) home.guildOrder.push(g.id);
    await selectGuild(g.id);
  });
}

export function createChannel() {
  const [row, name] = field('Name', { maxlength: '100', required: '', dataset: { testid: 'channel-name-input' } });
  const kind = el('select', { 'aria-label': 'Kind', dataset: { testid: 'channel-kind' } },
    el('option', { value: 'text', text: 'Text' }), el('option', { value: 'voice', text: 'Voice' }),
    el('option', { value: 'category', text: 'Category' }));
  dialog('New channel', [row, el('label', {}, 'Kind', kind)], async () => {
    const c = await apiFor(s.guild).request('POST', `/api/v1/guilds/${s.guild}/channels`, { name: name.value, kind: kind.value });
    s.channelGuild.set(c.id, s.guild);
    const g = s.guilds.get(s.guild);
    if (g && !g.channels.some((x) => x.id === c.id)) g.channels.push(c);
    renderGuild();
    if (c.kind === 'text') await selectChannel(c.id);
  });
}

/** An invite as pasted: a link (`https://box/invite/CODE#fp=HEX`) or a bare code (for
 *  this box). */
export function parseInvite(text) {
  const t = text.trim();
  try {
    const url = new URL(t);
    const m = url.pathname.match(/^\/invite\/([^/]+)$/);
    if ((url.protocol === 'https:' || url.protocol === 'http:') && m) {
      const fp = new URLSearchParams(url.hash.slice(1)).get('fp');
      return { origin: url.origin, code: decodeURIComponent(m[1]), fingerprint: normalizeFingerprint(fp) };
    }
  } catch (e) {
    // Not a link: a code.
  }
  const m = t.match(/\/invite\/([^/?#\s]+)/);
  return { origin: null, code: m ? decodeURIComponent(m[1]) : t, fingerprint: null };
}

export function joinDialog() {
  const [row, input] = field('Invite link or code', { required: '', dataset: { testid: 'join-input' } });
  dialog('Join a guild', [row], async () => {
    await offerInvite(parseInvite(input.value));
  });
}

/** Joins through an invite, on whichever box made it, with the home identity. */
export async function joinInvite(box, code) {
  const joined = await box.api.request('POST', `/api/v1/invites/${encodeURIComponent(code)}`, {});
  const guildId = joined.guild_id || joined.id;
  if (guildId && !box.guildOrder.includes(guildId)) box.guildOrder.push(guildId);
  if (!box.isHome) {
    box.kept = true;
    await saveBoxes();
  }
  if (guildId) s.guildBox.set(guildId, box.origin);
  if (!box.gateway || !box.loaded) await connectBox(box);
  if (guildId) await selectGuild(guildId);
}

/** Shows an invite's preview from the box that made it, and joins on OK. A box whose
 *  certificate differs from the pinned one is never contacted. */
export async function offerInvite(invite) {
  const link = typeof invite === 'string' ? { origin: null, code: invite, fingerprint: null } : invite;
  s.invite = null;
  if (location.pathname !== '/') history.replaceState(null, '', '/');
  const box = link.origin && !isHome(link.origin)
    ? ensureBox(link.origin, { fingerprint: link.fingerprint })
    : s.boxes.get(homeOrigin());
  if (!box.isHome) {
    if (link.fingerprint) box.linkFingerprint = link.fingerprint;
    if (!(await checkBox(box))) {
      dialog(`Join a guild on ${box.name}?`, [boxProblem(box) || mismatchWarning(box)], null);
      return;
    }
  }
  let preview;
  try {
    preview = await publicRequest(box.origin, 'GET', `/api/v1/invites/${encodeURIComponent(link.code)}`);
  } catch (e) {
    dialog('Invite', [el('p', { text: `This invite does not work: ${e.message}` })], null);
    return;
  }
  const where = box.isHome ? null : el('p', { class: 'muted', dataset: { testid: 'invite-box' }, text: `on ${box.name} (${box.origin}), with your home identity` });
  dialog(`Join ${preview.guild_name}?`, [el('p', { text: preview.guild_description || `You were invited to #${preview.channel_name}.` }), where],
    () => joinInvite(box, link.code));
}

export async function createInvite() {
  try {
    const box = boxOfGuild(s.guild);
    const invite = await apiForChannel(s.channel).request('POST', `/api/v1/channels/${s.channel}/invites`, {});
    $('invite-link').value = invite.url || `${box.origin}/invite/${invite.code}`;
    $('invite-box').hidden = false;
    $('invite-link').select();
  } catch (e) {
    showError('chat-error', e);
  }
}
