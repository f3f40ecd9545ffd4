// Guilds, channels, members and invites: the lists and the header of the sidebar, picking a
// guild or a text channel, and the dialogs that create guilds and channels and join by invite.

import { publicRequest } from './api.js';
import { P } from './permissions.js';
import { $, dialog, el, field, showError } from './dom.js';
import { byId, can, nameOf, origin, s } from './state.js';
import { showVoice } from './voice-channel.js';
import { loadMessages, renderMessages, renderTyping } from './messages.js';

export async function loadGuilds() {
  const list = await s.api.request('GET', '/api/v1/users/@me/guilds');
  s.guildOrder = [];
  for (const g of list) {
    s.guildOrder.push(g.id);
    if (!s.guilds.has(g.id)) s.guilds.set(g.id, g);
  }
  renderGuilds();
  const first = s.guild && s.guilds.has(s.guild) ? s.guild : s.guildOrder[0];
  if (first) await selectGuild(first);
  else renderGuild();
}

export function renderGuilds() {
  const list = $('guild-list');
  list.replaceChildren(...s.guildOrder.map((id) => {
    const g = s.guilds.get(id);
    const name = g ? g.name : '?';
    const initials = name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => [...w][0]).join('').toUpperCase();
    return el('li', {},
      el('button', {
        class: `round${id === s.guild ? ' active' : ''}`,
        title: name,
        'aria-label': name,
        dataset: { testid: 'guild', guildId: id },
        onclick: () => selectGuild(id),
      }, initials || '#'));
  }));
}

export async function selectGuild(id) {
  s.guild = id;
  const view = await s.api.request('GET', `/api/v1/guilds/${id}`);
  s.guilds.set(id, view);
  renderGuilds();
  renderGuild();
  loadMembers(id);
  const channels = (view.channels || []).filter((c) => c.kind === 'text');
  const keep = channels.find((c) => c.id === s.channel);
  if (keep) await selectChannel(keep.id);
  else if (channels[0]) await selectChannel(channels[0].id);
  else renderMessages();
}

function renderGuild() {
  const g = s.guilds.get(s.guild);
  $('guild-name').textContent = g ? g.name : 'No guild yet';
  $('invite-create').hidden = !can(g, P.CREATE_INVITE);
  $('channel-add').hidden = !can(g, P.MANAGE_CHANNELS);
  $('invite-box').hidden = true;
  const list = $('channel-list');
  if (!g) {
    list.replaceChildren(el('li', { class: 'muted', text: 'Create a guild with +, or join one with an invite.' }));
    $('channel-name').textContent = '';
    return;
  }
  const channels = [...(g.channels || [])].sort((a, b) => a.position - b.position || byId(a, b));
  const categories = channels.filter((c) => c.kind === 'category');
  const item = (c) => el('li', {},
    el('button', {
      class: `channel ${c.kind}${c.id === s.channel ? ' active' : ''}`,
      dataset: { testid: 'channel', channelId: c.id, kind: c.kind },
      onclick: () => (c.kind === 'text' ? selectChannel(c.id) : showVoice(c)),
    }, `${c.kind === 'voice' ? '🔊 ' : '# '}${c.name}`));
  const rows = channels.filter((c) => c.kind !== 'category' && !c.parent_id).map(item);
  for (const cat of categories) {
    rows.push(el('li', { class: 'category', text: cat.name.toUpperCase() }));
    rows.push(...channels.filter((c) => c.kind !== 'category' && c.parent_id === cat.id).map(item));
  }
  list.replaceChildren(...rows);
}

export async function loadMembers(guildId) {
  try {
    const list = await s.api.request('GET', `/api/v1/guilds/${guildId}/members?limit=1000`);
    const map = new Map();
    for (const m of list) {
      map.set(m.user_id, m);
      if (m.user) s.users.set(m.user_id, m.user);
    }
    s.members.set(guildId, map);
    const online = await s.api.request('GET', `/api/v1/guilds/${guildId}/presences`);
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
  const members = [...(s.members.get(s.guild)?.values() || [])];
  members.sort((a, b) => nameOf(a.user_id, s.guild).localeCompare(nameOf(b.user_id, s.guild)));
  $('member-list').replaceChildren(...members.map((m) => el('li', { dataset: { testid: 'member' } },
    el('span', { class: `dot${s.online.has(m.user_id) ? ' online' : ''}`, title: s.online.has(m.user_id) ? 'online' : 'offline' }),
    nameOf(m.user_id, s.guild))));
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
  renderMessages(true);
  renderTyping();
}

export function createGuild() {
  const [row, name] = field('Name', { maxlength: '100', required: '', dataset: { testid: 'guild-name-input' } });
  dialog('Create a guild', [row], async () => {
    const g = await s.api.request('POST', '/api/v1/guilds', { name: name.value });
    s.guilds.set(g.id, g);
    if (!s.guildOrder.includes(g.id)) s.guildOrder.push(g.id);
    await selectGuild(g.id);
  });
}

export function createChannel() {
  const [row, name] = field('Name', { maxlength: '100', required: '', dataset: { testid: 'channel-name-input' } });
  const kind = el('select', { 'aria-label': 'Kind', dataset: { testid: 'channel-kind' } },
    el('option', { value: 'text', text: 'Text' }), el('option', { value: 'voice', text: 'Voice' }),
    el('option', { value: 'category', text: 'Category' }));
  dialog('New channel', [row, el('label', {}, 'Kind', kind)], async () => {
    const c = await s.api.request('POST', `/api/v1/guilds/${s.guild}/channels`, { name: name.value, kind: kind.value });
    const g = s.guilds.get(s.guild);
    if (g && !g.channels.some((x) => x.id === c.id)) g.channels.push(c);
    renderGuild();
    if (c.kind === 'text') await selectChannel(c.id);
  });
}

function inviteCode(text) {
  const t = text.trim();
  const m = t.match(/\/invite\/([^/?#\s]+)/);
  return m ? decodeURIComponent(m[1]) : t;
}

export function joinDialog() {
  const [row, input] = field('Invite link or code', { required: '', dataset: { testid: 'join-input' } });
  dialog('Join a guild', [row], async () => {
    await joinInvite(inviteCode(input.value));
  });
}

async function joinInvite(code) {
  const joined = await s.api.request('POST', `/api/v1/invites/${encodeURIComponent(code)}`, {});
  const guildId = joined.guild_id || joined.id;
  if (guildId && !s.guildOrder.includes(guildId)) s.guildOrder.push(guildId);
  if (guildId) await selectGuild(guildId);
  else await loadGuilds();
}

export async function offerInvite(code) {
  s.invite = null;
  history.replaceState(null, '', '/');
  let preview;
  try {
    preview = await publicRequest(origin, 'GET', `/api/v1/invites/${encodeURIComponent(code)}`);
  } catch (e) {
    dialog('Invite', [el('p', { text: `This invite does not work: ${e.message}` })], null);
    return;
  }
  dialog(`Join ${preview.guild_name}?`, [el('p', { text: preview.guild_description || `You were invited to #${preview.channel_name}.` })],
    () => joinInvite(code));
}

export async function createInvite() {
  try {
    const invite = await s.api.request('POST', `/api/v1/channels/${s.channel}/invites`, {});
    $('invite-link').value = `${origin}/invite/${invite.code}`;
    $('invite-box').hidden = false;
    $('invite-link').select();
  } catch (e) {
    showError('chat-error', e);
  }
}
