// Messages: loading pages of history, rendering them (mentions, replies, attachments,
// reactions, pins), typing indicators, and sending, editing, reacting and deleting.

import { P } from './permissions.js';
import { $, dialog, el, showError } from './dom.js';
import { apiForChannel, byId, can, currentPlace, ensureUser, nameOf, s } from './state.js';
import { dividerAfter } from './unread.js';

const REACTIONS = ['👍', '❤️', '😂', '🎉'];
const PAGE = 50;

export async function loadMessages(channelId, before) {
  const q = before ? `&before=${before}` : '';
  const page = await apiForChannel(channelId).request('GET', `/api/v1/channels/${channelId}/messages?limit=${PAGE}${q}`);
  const have = s.messages.get(channelId) || [];
  const known = new Set(have.map((m) => m.id));
  const merged = have.concat(page.filter((m) => !known.has(m.id))).sort(byId);
  s.messages.set(channelId, merged);
  if (page.length < PAGE) s.complete.add(channelId);
  await Promise.all(page.map((m) => ensureUser(m.author_id, s.channelGuild.get(channelId))));
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
  const api = apiForChannel(message.channel_id);
  // A render that lands as the person signs out (an event already on its way) has no box
  // to fetch from: the file's name stands in.
  if (!api) return el('span', { class: 'muted', text: a.filename });
  const key = `${api.origin}${path}`;
  if (a.content_type.startsWith('image/')) {
    const img = el('img', { class: 'attachment-image', alt: a.filename, dataset: { testid: 'attachment-image' } });
    // Fetched once (files need DPoP), then reused by every re-render.
    if (!s.blobs.has(key)) s.blobs.set(key, api.fetchBlob(path).then((blob) => URL.createObjectURL(blob)));
    s.blobs.get(key).then((url) => { img.src = url; }).catch(() => {
      s.blobs.delete(key);
      img.alt = `${a.filename} (unavailable)`;
    });
    return img;
  }
  return el('button', {
    class: 'attachment-file',
    dataset: { testid: 'attachment-file' },
    onclick: async () => {
      const blob = await api.fetchBlob(path);
      const link = el('a', { href: URL.createObjectURL(blob), download: a.filename });
      link.click();
    },
  }, `📄 ${a.filename} (${Math.ceil(a.size / 1024)} KiB)`);
}

function messageNode(m) {
  if (s.blocks?.has(m.author_id) && !s.revealed?.has(m.id)) {
    // Someone this person blocks: hidden until asked for.
    return el('li', { class: 'message blocked muted', dataset: { testid: 'blocked-message', id: m.id } },
      'Blocked message ',
      el('button', {
        type: 'button',
        dataset: { testid: 'blocked-show' },
        onclick: () => {
          s.revealed = s.revealed || new Set();
          s.revealed.add(m.id);
          renderMessages();
        },
      }, 'Show'));
  }
  const g = currentPlace();
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
  if (can(g, P.ADD_REACTIONS)) {
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

export function renderMessages(scroll) {
  const list = s.messages.get(s.channel) || [];
  const box = $('message-scroll');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  const nodes = list.map(messageNode);
  // The "new messages" divider before the first message after the last one read.
  const after = dividerAfter(s.channel);
  let line = null;
  if (after !== null) {
    const first = list.findIndex((m) => after === '' || BigInt(m.id) > BigInt(after));
    if (first >= 0) {
      line = el('li', { class: 'new-divider', dataset: { testid: 'new-divider' } }, el('span', { text: 'New messages' }));
      nodes.splice(first, 0, line);
    }
  }
  $('messages').replaceChildren(...nodes);
  $('empty').hidden = list.length > 0 || !s.channel;
  $('load-older').hidden = !s.channel || s.complete.has(s.channel);
  // Opening a channel jumps to its first unread message, else to the newest.
  if (scroll && line) line.scrollIntoView({ block: 'start' });
  else if (scroll || atBottom) box.scrollTop = box.scrollHeight;
}

export function renderTyping() {
  const now = Date.now();
  const map = s.typing.get(s.channel) || new Map();
  const names = [...map.entries()].filter(([u, t]) => t > now && u !== s.me?.id).map(([u]) => nameOf(u, s.guild));
  $('typing').textContent = names.length === 0 ? '' : `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…`;
}

function startReply(m) {
  s.replyTo = m.id;
  $('reply-text').textContent = `Replying to ${nameOf(m.author_id, m.guild_id)}`;
  $('reply-bar').hidden = false;
  $('composer-text').focus();
}

export async function send() {
  const box = $('composer-text');
  const content = box.value;
  const file = $('attach').files[0];
  const channel = s.channel;
  if (!channel || (!content.trim() && !file)) return;
  $('chat-error').textContent = '';
  // The composer is free at once for the next message (typed while this one is on its
  // way); what was sent comes back if it fails and nothing new was typed.
  const replyTo = s.replyTo;
  box.value = '';
  $('attach').value = '';
  s.replyTo = null;
  $('reply-bar').hidden = true;
  try {
    const body = { content };
    if (replyTo) body.reply_to = replyTo;
    if (file) {
      const up = await apiForChannel(channel).upload(
        `/api/v1/channels/${channel}/files?filename=${encodeURIComponent(file.name)}`, file, file.type || 'application/octet-stream');
      body.attachments = [up.file_id];
    }
    upsertMessage(await apiForChannel(channel).request('POST', `/api/v1/channels/${channel}/messages`, body));
  } catch (e) {
    if (!box.value && s.channel === channel) {
      box.value = content;
      if (file && !$('attach').files.length) {
        const again = new DataTransfer();
        again.items.add(file);
        $('attach').files = again.files;
      }
    }
    showError('chat-error', e);
  }
}

async function react(m, emoji, mine) {
  const path = `/api/v1/channels/${m.channel_id}/messages/${m.id}/reactions/${encodeURIComponent(emoji)}`;
  try {
    await apiForChannel(m.channel_id).request(mine ? 'DELETE' : 'PUT', path);
    await refreshMessage(m.channel_id, m.id);
  } catch (e) {
    showError('chat-error', e);
  }
}

export async function refreshMessage(channelId, id) {
  try {
    upsertMessage(await apiForChannel(channelId).request('GET', `/api/v1/channels/${channelId}/messages/${id}`));
  } catch (e) {
    // Deleted meanwhile: the event removes it.
  }
}

function editMessage(m) {
  const input = el('textarea', { rows: '4', 'aria-label': 'Message', dataset: { testid: 'edit-text' } });
  input.value = m.content;
  dialog('Edit message', [input], async () => {
    upsertMessage(await apiForChannel(m.channel_id).request('PATCH', `/api/v1/channels/${m.channel_id}/messages/${m.id}`, { content: input.value }));
  });
}

async function deleteMessage(m) {
  try {
    await apiForChannel(m.channel_id).request('DELETE', `/api/v1/channels/${m.channel_id}/messages/${m.id}`);
    removeMessage(m.channel_id, m.id);
  } catch (e) {
    showError('chat-error', e);
  }
}

export function upsertMessage(m) {
  const list = s.messages.get(m.channel_id);
  if (!list) return;
  const i = list.findIndex((x) => x.id === m.id);
  if (i >= 0) list[i] = { ...list[i], ...m };
  else {
    list.push(m);
    list.sort(byId);
  }
  ensureUser(m.author_id, s.channelGuild.get(m.channel_id)).then(() => { if (m.channel_id === s.channel) renderMessages(); });
  if (m.channel_id === s.channel) renderMessages();
}

export function removeMessage(channelId, id) {
  const list = s.messages.get(channelId);
  if (!list) return;
  const i = list.findIndex((x) => x.id === id);
  if (i >= 0) list.splice(i, 1);
  if (channelId === s.channel) renderMessages();
}
