// Hearth's web client: accounts, guilds, channels, messages, invites, realtime events.
// Everything the server sends is shown with textContent, never parsed as HTML.

import { Api, ApiError, publicRequest } from './api.js';
import * as keys from './crypto.js';

const origin = location.origin;
const $ = (id) => document.getElementById(id);

const P = {
  VIEW: 1 << 0, SEND: 1 << 1, HISTORY: 1 << 2, REACT: 1 << 3, ATTACH: 1 << 4,
  MANAGE_MESSAGES: 1 << 6, MANAGE_CHANNELS: 1 << 7, CREATE_INVITE: 1 << 12, ADMIN: 1 << 19,
};
const REACTIONS = ['👍', '❤️', '😂', '🎉'];
const PAGE = 50;

const s = {
  state: null, // persisted: device key, identity, refresh token, user id, username
  api: null,
  me: null,
  guilds: new Map(), // id -> guild view
  guildOrder: [],
  guild: null,
  channel: null,
  messages: new Map(), // channel id -> [message] oldest first
  complete: new Set(), // channels whose oldest message is loaded
  users: new Map(), // user id -> public user
  blobs: new Map(), // file path -> Promise of an object URL
  members: new Map(), // guild id -> Map user id -> member
  online: new Set(),
  typing: new Map(), // channel id -> Map user id -> expires (ms)
  lastTypingSent: 0,
  replyTo: null,
  voice: null, // {call, channel, guild, name, muted, deafened} while in a voice channel
  invite: null, // code from /invite/CODE
  link: null, // the device link this browser waits on
  identityNote: '',
};

// ---------------------------------------------------------------- helpers

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

const byId = (a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : BigInt(a.id) > BigInt(b.id) ? 1 : 0);

function can(guild, bit) {
  if (!guild) return false;
  if (s.me && guild.owner === s.me.id) return true;
  const p = Number(guild.my_permissions || 0);
  return (p & P.ADMIN) !== 0 || (p & bit) !== 0;
}

function showError(where, e) {
  const text = e instanceof ApiError ? e.message : String(e && e.message ? e.message : e);
  $(where).textContent = text;
}

function nameOf(userId, guildId) {
  const member = guildId && s.members.get(guildId)?.get(userId);
  if (member && member.nick) return member.nick;
  const user = s.users.get(userId) || member?.user;
  if (user) return user.name || user.username;
  return `${userId.slice(0, 8)}…`;
}

async function ensureUser(userId) {
  if (s.users.has(userId)) return;
  s.users.set(userId, null);
  try {
    s.users.set(userId, await s.api.request('GET', `/api/v1/users/${userId}`));
  } catch (e) {
    s.users.delete(userId);
  }
}

async function saveState() {
  await keys.saveState(s.state);
}

// ---------------------------------------------------------------- accounts

function authMode(signup) {
  $('tab-signin').setAttribute('aria-selected', String(!signup));
  $('tab-signup').setAttribute('aria-selected', String(signup));
  $('auth-display-row').hidden = !signup;
  $('auth-submit').textContent = signup ? 'Create account' : 'Sign in';
  $('auth-password').autocomplete = signup ? 'new-password' : 'current-password';
  $('auth-form').dataset.mode = signup ? 'signup' : 'signin';
  $('auth-error').textContent = '';
}

async function freshDevice() {
  const deviceKey = await keys.newDeviceKey();
  const jwk = await keys.publicJwk(deviceKey);
  return { deviceKey, jwk, jkt: await keys.thumbprint(jwk) };
}

async function signUp(username, password, display) {
  const device = await freshDevice();
  const identity = await keys.newIdentityKey();
  const wellKnown = await publicRequest(origin, 'GET', '/.well-known/hearth');
  $('auth-status').textContent = 'Making your keys…';
  const body = {
    username,
    password,
    identity_key: await keys.userIdOf(identity),
    device_certificate: await keys.deviceCertificate(identity, device.jkt, wellKnown.origin),
    key_backup: await keys.wrapIdentity(identity, password),
  };
  if (display) body.display_name = display;
  await publicRequest(origin, 'POST', '/api/v1/register', body);
  s.state = { ...device, identity, username };
  s.api = newApi();
  await s.api.login(username, password);
}

async function signIn(username, password) {
  s.state = { ...(await freshDevice()), username };
  s.api = newApi();
  await s.api.login(username, password);
  // The identity key, from the backup only this password opens.
  try {
    const answer = await s.api.request('GET', '/api/v1/users/@me/key-backup');
    if (answer && answer.key_backup) {
      s.state.identity = await keys.unwrapIdentity(answer.key_backup, password, s.state.userId);
      s.identityNote = 'identity key recovered from your backup';
    } else {
      s.identityNote = 'no key backup on the server';
    }
  } catch (e) {
    s.identityNote = e.reason === 'unsupported' ? e.message : `identity key not recovered: ${e.message}`;
  }
  await saveState();
}

// Linking this browser from a device already signed in (no password typed here).
const CERT_GRANT = 'urn:hearth:params:oauth:grant-type:device-certificate';

async function startLink() {
  $('auth-error').textContent = '';
  const device = await freshDevice();
  const username = $('auth-username').value.trim();
  const body = { device_key: device.jwk, device_name: `Browser (${navigator.platform || 'web'})` };
  if (username) body.username = username;
  let link;
  try {
    link = await publicRequest(origin, 'POST', '/api/v1/device-links', body);
  } catch (e) {
    showError('auth-error', e);
    return;
  }
  $('link-code').textContent = link.code;
  $('link-jkt').textContent = link.jkt.slice(0, 12);
  $('link-box').hidden = false;
  $('link-start').hidden = true;
  s.link = link;
  const deadline = Date.now() + link.expires_in * 1000;
  while (s.link === link && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1500));
    if (s.link !== link) return;
    let answer;
    try {
      answer = await publicRequest(origin, 'GET', `/api/v1/device-links/mailbox/${link.mailbox}`);
    } catch (e) {
      break;
    }
    if (answer.status !== 'approved') continue;
    s.link = null;
    s.state = { ...device, username: username || '' };
    s.api = newApi();
    try {
      await s.api.token({ grant_type: CERT_GRANT, device_certificate: answer.device_certificate });
      s.identityNote = 'signed in by another device (its identity key stays there)';
      await saveState();
      $('link-box').hidden = true;
      $('link-start').hidden = false;
      await showApp();
    } catch (e) {
      s.state = null;
      s.api = null;
      showError('auth-error', e);
    }
    return;
  }
  if (s.link === link) {
    s.link = null;
    $('link-box').hidden = true;
    $('link-start').hidden = false;
    $('auth-error').textContent = 'The code expired; start again.';
  }
}

async function cancelLink() {
  const link = s.link;
  s.link = null;
  $('link-box').hidden = true;
  $('link-start').hidden = false;
  if (link) await publicRequest(origin, 'DELETE', `/api/v1/device-links/mailbox/${link.mailbox}`).catch(() => {});
}

function approveLinkDialog() {
  const [row, code] = field('Code shown on the new device', { required: '', maxlength: '12', dataset: { testid: 'link-code-input' } });
  const shown = el('p', { class: 'muted', dataset: { testid: 'link-device' } });
  let checked = null;
  dialog('Link a new device', [row, shown], async () => {
    if (!checked || checked.typed !== code.value) {
      // First look: show the device's name and key, then approve on the second press.
      const link = await s.api.request('GET', `/api/v1/device-links/${encodeURIComponent(code.value)}`);
      checked = { typed: code.value, link };
      shown.textContent = `${link.device_name || 'A device'} with key ${link.jkt.slice(0, 12)}: if the new device shows the same, press OK again.`;
      throw new Error('Check the key, then press OK again.');
    }
    const wk = await publicRequest(origin, 'GET', '/.well-known/hearth');
    const certificate = await keys.deviceCertificate(s.state.identity, checked.link.jkt, wk.origin);
    await s.api.request('POST', `/api/v1/device-links/${encodeURIComponent(code.value)}`, { device_certificate: certificate });
  });
}

function newApi() {
  const api = new Api(origin, s.state);
  api.onSession = saveState;
  api.onSignedOut = () => signedOut('You were signed out.');
  return api;
}

async function signedOut(message) {
  if (s.voice) await leaveVoice().catch(() => {});
  if (s.api) s.api.close();
  s.api = null;
  s.state = null;
  await keys.clearState();
  resetData();
  showAuth();
  if (message) $('auth-error').textContent = message;
}

function resetData() {
  for (const url of s.blobs.values()) url.then((u) => URL.revokeObjectURL(u)).catch(() => {});
  s.blobs.clear();
  s.guilds.clear();
  s.messages.clear();
  s.complete.clear();
  s.members.clear();
  s.users.clear();
  s.typing.clear();
  s.guild = null;
  s.channel = null;
}

async function signOut() {
  try {
    await s.api.request('POST', '/api/v1/auth/logout', {});
  } catch (e) {
    // Signed out here either way.
  }
  await signedOut('');
}

// ---------------------------------------------------------------- screens

async function showAuth() {
  $('app').hidden = true;
  $('auth').hidden = false;
  authMode($('auth-form').dataset.mode === 'signup');
  if (s.invite) {
    try {
      const preview = await publicRequest(origin, 'GET', `/api/v1/invites/${encodeURIComponent(s.invite)}`);
      const box = $('invite-preview');
      box.replaceChildren(
        el('p', { text: 'You are invited to join' }),
        el('strong', { text: preview.guild_name }),
        el('p', { class: 'muted', text: 'Sign in or create an account to join.' }),
      );
      box.hidden = false;
    } catch (e) {
      $('invite-preview').hidden = false;
      $('invite-preview').textContent = `This invite does not work: ${e.message}`;
    }
  }
}

async function showApp() {
  $('auth').hidden = true;
  $('app').hidden = false;
  s.me = await s.api.request('GET', '/api/v1/users/@me');
  s.users.set(s.me.id, s.me);
  $('me-name').textContent = s.me.name || s.me.username;
  $('me-name').title = s.identityNote || (s.state.identity ? 'identity key on this device' : 'no identity key on this device');
  $('me-name').dataset.identity = s.state.identity ? 'present' : 'absent';
  await loadGuilds();
  s.api.connect(onGatewayEvent);
  if (s.invite) await offerInvite(s.invite);
}

async function loadGuilds() {
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

function renderGuilds() {
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

async function selectGuild(id) {
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

async function showVoice(channel) {
  let people = [];
  try {
    people = await s.api.request('GET', `/api/v1/channels/${channel.id}/voice`);
  } catch (e) {
    people = [];
  }
  for (const p of people) await ensureUser(p.user_id);
  const names = people.map((p) => nameOf(p.user_id, s.guild));
  const here = s.voice && s.voice.channel === channel.id;
  dialog(`🔊 ${channel.name}`, [
    el('p', { text: names.length ? `In this voice channel: ${names.join(', ')}` : 'Nobody is in this voice channel.' }),
  ], here ? null : () => joinVoiceChannel(channel));
  $('dialog-ok').textContent = 'Join voice';
}

async function joinVoiceChannel(channel) {
  const { joinVoice } = await import('./voice.js');
  if (s.voice) await leaveVoice();
  const guild = s.guild;
  const call = await joinVoice({
    ticketUrl: async () => (await s.api.request('POST', `/api/v1/channels/${channel.id}/voice`, {})).url,
    onEvent: (e) => {
      if (e.type === 'closed' && s.voice && s.voice.call === call) {
        s.voice = null;
        renderVoice(e.code === 1000 ? '' : `Voice ended: ${e.reason || e.code}`);
      }
    },
  });
  s.voice = { call, channel: channel.id, guild, name: channel.name, muted: false, deafened: false };
  renderVoice('');
}

async function leaveVoice() {
  const v = s.voice;
  s.voice = null;
  if (v) await v.call.leave();
  renderVoice('');
}

function renderVoice(message) {
  const bar = $('voice-bar');
  if (!s.voice) {
    bar.hidden = !message;
    bar.replaceChildren(message ? el('span', { class: 'muted', text: message }) : '');
    return;
  }
  const v = s.voice;
  bar.hidden = false;
  bar.replaceChildren(
    el('span', { class: 'voice-name', dataset: { testid: 'voice-connected' }, text: `🔊 ${v.name}` }),
    el('button', {
      'aria-pressed': String(v.muted),
      dataset: { testid: 'voice-mute' },
      onclick: () => { v.muted = !v.muted; v.call.setMuted(v.muted); renderVoice(''); },
    }, v.muted ? 'Unmute' : 'Mute'),
    el('button', {
      'aria-pressed': String(v.deafened),
      onclick: () => { v.deafened = !v.deafened; v.call.setDeafened(v.deafened); renderVoice(''); },
    }, v.deafened ? 'Undeafen' : 'Deafen'),
    el('button', { class: 'danger', dataset: { testid: 'voice-leave' }, onclick: leaveVoice }, 'Leave'));
}

async function loadMembers(guildId) {
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

function renderMembers() {
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

async function loadMessages(channelId, before) {
  const q = before ? `&before=${before}` : '';
  const page = await s.api.request('GET', `/api/v1/channels/${channelId}/messages?limit=${PAGE}${q}`);
  const have = s.messages.get(channelId) || [];
  const known = new Set(have.map((m) => m.id));
  const merged = have.concat(page.filter((m) => !known.has(m.id))).sort(byId);
  s.messages.set(channelId, merged);
  if (page.length < PAGE) s.complete.add(channelId);
  await Promise.all(page.map((m) => ensureUser(m.author_id)));
}

function renderContent(text, guildId) {
  const out = [];
  const re = /<@(&?)([A-Za-z0-9_-]+)>|@everyone/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
    if (m[0] === '@everyone') out.push(el('span', { class: 'mention', text: '@everyone' }));
    else if (m[1] === '&') {
      const role = s.guilds.get(guildId)?.roles?.find((r) => r.id === m[2]);
      out.push(el('span', { class: 'mention', text: `@${role ? role.name : 'role'}` }));
    } else {
      out.push(el('span', { class: 'mention', text: `@${nameOf(m[2], guildId)}` }));
    }
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}

function attachmentNode(message, a) {
  const path = `/api/v1/channels/${message.channel_id}/files/${encodeURIComponent(a.file_id)}`;
  if (a.content_type.startsWith('image/')) {
    const img = el('img', { class: 'attachment-image', alt: a.filename, dataset: { testid: 'attachment-image' } });
    // Fetched once (files need DPoP), then reused by every re-render.
    if (!s.blobs.has(path)) s.blobs.set(path, s.api.fetchBlob(path).then((blob) => URL.createObjectURL(blob)));
    s.blobs.get(path).then((url) => { img.src = url; }).catch(() => {
      s.blobs.delete(path);
      img.alt = `${a.filename} (unavailable)`;
    });
    return img;
  }
  return el('button', {
    class: 'attachment-file',
    dataset: { testid: 'attachment-file' },
    onclick: async () => {
      const blob = await s.api.fetchBlob(path);
      const link = el('a', { href: URL.createObjectURL(blob), download: a.filename });
      link.click();
    },
  }, `📄 ${a.filename} (${Math.ceil(a.size / 1024)} KiB)`);
}

function messageNode(m) {
  const g = s.guilds.get(s.guild);
  const mine = s.me && m.author_id === s.me.id;
  const time = new Date(m.created_at);
  const body = el('div', { class: 'content', dataset: { testid: 'message-content' } }, ...renderContent(m.content, m.guild_id));
  const node = el('li', { class: 'message', dataset: { testid: 'message', id: m.id } });
  if (m.reply_to) {
    const original = (s.messages.get(m.channel_id) || []).find((x) => x.id === m.reply_to);
    node.append(el('div', { class: 'reply-to muted', text: original ? `↪ ${nameOf(original.author_id, m.guild_id)}: ${original.content.slice(0, 80)}` : '↪ an earlier message' }));
  }
  node.append(el('div', { class: 'meta' },
    el('strong', { class: 'author', dataset: { testid: 'message-author' }, text: nameOf(m.author_id, m.guild_id) }),
    el('time', { datetime: time.toISOString(), text: time.toLocaleString() }),
    m.edited_at ? el('span', { class: 'muted', dataset: { testid: 'edited' }, text: '(edited)' }) : null,
    m.pinned ? el('span', { class: 'muted', text: '📌' }) : null), body);
  for (const a of m.attachments || []) node.append(attachmentNode(m, a));
  const reactions = el('div', { class: 'reactions' });
  for (const r of m.reactions || []) {
    reactions.append(el('button', {
      class: `reaction${r.me ? ' mine' : ''}`,
      dataset: { testid: 'reaction', emoji: r.emoji },
      onclick: () => react(m, r.emoji, r.me),
    }, `${r.emoji} ${r.count}`));
  }
  node.append(reactions);
  const actions = el('div', { class: 'actions' });
  actions.append(el('button', { title: 'Reply', 'aria-label': 'Reply', onclick: () => startReply(m) }, '↩'));
  if (can(g, P.REACT)) {
    for (const e of REACTIONS) {
      actions.append(el('button', { title: `React ${e}`, dataset: { testid: 'react', emoji: e }, onclick: () => react(m, e, false) }, e));
    }
  }
  if (mine) actions.append(el('button', { title: 'Edit', dataset: { testid: 'edit' }, onclick: () => editMessage(m) }, '✎'));
  if (mine || can(g, P.MANAGE_MESSAGES)) {
    actions.append(el('button', { title: 'Delete', dataset: { testid: 'delete' }, onclick: () => deleteMessage(m) }, '🗑'));
  }
  node.append(actions);
  return node;
}

function renderMessages(scroll) {
  const list = s.messages.get(s.channel) || [];
  const box = $('message-scroll');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  $('messages').replaceChildren(...list.map(messageNode));
  $('empty').hidden = list.length > 0 || !s.channel;
  $('load-older').hidden = !s.channel || s.complete.has(s.channel);
  if (scroll || atBottom) box.scrollTop = box.scrollHeight;
}

function renderTyping() {
  const now = Date.now();
  const map = s.typing.get(s.channel) || new Map();
  const names = [...map.entries()].filter(([u, t]) => t > now && u !== s.me?.id).map(([u]) => nameOf(u, s.guild));
  $('typing').textContent = names.length === 0 ? '' : `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…`;
}

// ---------------------------------------------------------------- actions

function startReply(m) {
  s.replyTo = m.id;
  $('reply-text').textContent = `Replying to ${nameOf(m.author_id, m.guild_id)}`;
  $('reply-bar').hidden = false;
  $('composer-text').focus();
}

async function send() {
  const box = $('composer-text');
  const content = box.value;
  const file = $('attach').files[0];
  if (!s.channel || (!content.trim() && !file)) return;
  $('chat-error').textContent = '';
  try {
    const body = { content };
    if (s.replyTo) body.reply_to = s.replyTo;
    if (file) {
      const up = await s.api.upload(
        `/api/v1/channels/${s.channel}/files?filename=${encodeURIComponent(file.name)}`, file, file.type || 'application/octet-stream');
      body.attachments = [up.file_id];
    }
    const m = await s.api.request('POST', `/api/v1/channels/${s.channel}/messages`, body);
    upsertMessage(m);
    box.value = '';
    $('attach').value = '';
    s.replyTo = null;
    $('reply-bar').hidden = true;
  } catch (e) {
    showError('chat-error', e);
  }
}

async function react(m, emoji, mine) {
  const path = `/api/v1/channels/${m.channel_id}/messages/${m.id}/reactions/${encodeURIComponent(emoji)}`;
  try {
    await s.api.request(mine ? 'DELETE' : 'PUT', path);
    await refreshMessage(m.channel_id, m.id);
  } catch (e) {
    showError('chat-error', e);
  }
}

async function refreshMessage(channelId, id) {
  try {
    upsertMessage(await s.api.request('GET', `/api/v1/channels/${channelId}/messages/${id}`));
  } catch (e) {
    // Deleted meanwhile: the event removes it.
  }
}

function editMessage(m) {
  const input = el('textarea', { rows: '4', 'aria-label': 'Message', dataset: { testid: 'edit-text' } });
  input.value = m.content;
  dialog('Edit message', [input], async () => {
    upsertMessage(await s.api.request('PATCH', `/api/v1/channels/${m.channel_id}/messages/${m.id}`, { content: input.value }));
  });
}

async function deleteMessage(m) {
  try {
    await s.api.request('DELETE', `/api/v1/channels/${m.channel_id}/messages/${m.id}`);
    removeMessage(m.channel_id, m.id);
  } catch (e) {
    showError('chat-error', e);
  }
}

function upsertMessage(m) {
  const list = s.messages.get(m.channel_id);
  if (!list) return;
  const i = list.findIndex((x) => x.id === m.id);
  if (i >= 0) list[i] = { ...list[i], ...m };
  else {
    list.push(m);
    list.sort(byId);
  }
  ensureUser(m.author_id).then(() => { if (m.channel_id === s.channel) renderMessages(); });
  if (m.channel_id === s.channel) renderMessages();
}

function removeMessage(channelId, id) {
  const list = s.messages.get(channelId);
  if (!list) return;
  const i = list.findIndex((x) => x.id === id);
  if (i >= 0) list.splice(i, 1);
  if (channelId === s.channel) renderMessages();
}

function dialog(title, content, onOk) {
  const d = $('dialog');
  $('dialog-title').textContent = title;
  $('dialog-body').replaceChildren(...content.filter((c) => c != null));
  $('dialog-error').textContent = '';
  $('dialog-ok').hidden = !onOk;
  $('dialog-ok').textContent = 'OK';
  $('dialog-cancel').textContent = onOk ? 'Cancel' : 'Close';
  d.onsubmitAction = onOk;
  d.showModal();
  const first = d.querySelector('input, textarea, select');
  if (first) first.focus();
}

function field(label, props) {
  const input = el('input', props);
  return [el('label', {}, label, input), input];
}

function createGuild() {
  const [row, name] = field('Name', { maxlength: '100', required: '', dataset: { testid: 'guild-name-input' } });
  dialog('Create a guild', [row], async () => {
    const g = await s.api.request('POST', '/api/v1/guilds', { name: name.value });
    s.guilds.set(g.id, g);
    if (!s.guildOrder.includes(g.id)) s.guildOrder.push(g.id);
    await selectGuild(g.id);
  });
}

function createChannel() {
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

function joinDialog() {
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

async function offerInvite(code) {
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

async function createInvite() {
  try {
    const invite = await s.api.request('POST', `/api/v1/channels/${s.channel}/invites`, {});
    $('invite-link').value = `${origin}/invite/${invite.code}`;
    $('invite-box').hidden = false;
    $('invite-link').select();
  } catch (e) {
    showError('chat-error', e);
  }
}

function settings() {
  const [row, name] = field('Display name', { maxlength: '64', dataset: { testid: 'settings-name' } });
  name.value = s.me?.name || '';
  const devices = el('ul', { class: 'devices' });
  s.api.request('GET', '/api/v1/users/@me/devices').then((list) => {
    devices.replaceChildren(...list.map((d) => el('li', { dataset: { id: d.id } },
      `${d.name}${d.current ? ' (this browser)' : ''} `,
      d.current ? null : el('button', {
        type: 'button',
        onclick: async () => {
          await s.api.request('DELETE', `/api/v1/users/@me/devices/${encodeURIComponent(d.id)}`);
          devices.querySelector(`[data-id="${CSS.escape(d.id)}"]`)?.remove();
        },
      }, 'Sign out'))));
  }).catch(() => {});
  const link = s.state.identity ? el('button', {
    type: 'button',
    dataset: { testid: 'link-approve' },
    onclick: () => { $('dialog').close(); approveLinkDialog(); },
  }, 'Link a new device') : null;
  const out = el('button', { type: 'button', class: 'danger', dataset: { testid: 'sign-out' }, onclick: () => { $('dialog').close(); signOut(); } }, 'Sign out of this browser');
  const identity = el('p', { class: 'muted', dataset: { testid: 'identity-status' }, text: s.state.identity ? 'Your identity key is on this device.' : `No identity key on this device. ${s.identityNote}` });
  dialog('Settings', [row, el('h4', { text: 'Devices' }), devices, identity, link, out], async () => {
    s.me = await s.api.request('PATCH', '/api/v1/users/@me', { name: name.value });
    s.users.set(s.me.id, s.me);
    $('me-name').textContent = s.me.name || s.me.username;
    renderMessages();
  });
}

// ---------------------------------------------------------------- realtime

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

function typed() {
  const now = Date.now();
  if (s.channel && now - s.lastTypingSent > 4000 && $('composer-text').value) {
    s.lastTypingSent = now;
    s.api.sendGateway({ op: 'typing', channel_id: s.channel });
  }
}

// ---------------------------------------------------------------- start

function wire() {
  $('link-start').addEventListener('click', startLink);
  $('link-cancel').addEventListener('click', cancelLink);
  $('tab-signin').addEventListener('click', () => authMode(false));
  $('tab-signup').addEventListener('click', () => authMode(true));
  $('auth-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const username = $('auth-username').value.trim();
    const password = $('auth-password').value;
    $('auth-error').textContent = '';
    $('auth-submit').disabled = true;
    try {
      if ($('auth-form').dataset.mode === 'signup') await signUp(username, password, $('auth-display').value.trim());
      else await signIn(username, password);
      $('auth-password').value = '';
      $('auth-status').textContent = '';
      await showApp();
    } catch (err) {
      s.state = null;
      s.api = null;
      $('auth-status').textContent = '';
      showError('auth-error', err);
    } finally {
      $('auth-submit').disabled = false;
    }
  });
  $('composer').addEventListener('submit', (e) => { e.preventDefault(); send(); });
  $('composer-text').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  $('composer-text').addEventListener('input', typed);
  $('load-older').addEventListener('click', async () => {
    const list = s.messages.get(s.channel) || [];
    const box = $('message-scroll');
    const before = box.scrollHeight;
    try {
      await loadMessages(s.channel, list[0]?.id || null);
    } catch (e) {
      showError('chat-error', e);
    }
    renderMessages();
    box.scrollTop = box.scrollHeight - before;
  });
  $('guild-add').addEventListener('click', createGuild);
  $('guild-join').addEventListener('click', joinDialog);
  $('channel-add').addEventListener('click', createChannel);
  $('invite-create').addEventListener('click', createInvite);
  $('invite-copy').addEventListener('click', () => navigator.clipboard?.writeText($('invite-link').value));
  $('settings-open').addEventListener('click', settings);
  $('reply-cancel').addEventListener('click', () => { s.replyTo = null; $('reply-bar').hidden = true; });
  $('nav-toggle').addEventListener('click', () => document.body.classList.toggle('nav-open'));
  $('dialog-cancel').addEventListener('click', () => $('dialog').close());
  $('dialog-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const action = $('dialog').onsubmitAction;
    if (!action) {
      $('dialog').close();
      return;
    }
    $('dialog-ok').disabled = true;
    try {
      await action();
      $('dialog').close();
    } catch (err) {
      showError('dialog-error', err);
    } finally {
      $('dialog-ok').disabled = false;
    }
  });
}

async function start() {
  wire();
  const m = location.pathname.match(/^\/invite\/([^/]+)$/);
  if (m) s.invite = decodeURIComponent(m[1]);
  try {
    const wk = await publicRequest(origin, 'GET', '/.well-known/hearth');
    $('server-name').textContent = wk.name;
    document.title = wk.name;
  } catch (e) {
    // The name stays "Hearth".
  }
  const unsupported = await keys.supported();
  if (unsupported) {
    await showAuth();
    $('auth-error').textContent = `Hearth cannot run here: ${unsupported}.`;
    $('auth-submit').disabled = true;
    return;
  }
  s.state = await keys.loadState().catch(() => null);
  if (s.state && s.state.refreshToken) {
    s.api = newApi();
    try {
      await s.api.refresh();
      await showApp();
      return;
    } catch (e) {
      s.state = null;
      s.api = null;
    }
  }
  await showAuth();
  document.body.dataset.ready = 'true';
}

start().then(() => { document.body.dataset.ready = 'true'; });
