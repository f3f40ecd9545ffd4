// Direct messages: the list (from the home, which knows every DM of its user on any box,
// also while that box is down), opening one with anyone (a person's profile, or the
// picker searching every box in use), group DMs (name, add, remove, leave), blocking, and
// who may DM me. A DM is hosted by the box of the person who opened it; its messages go
// through that box's channel routes like a guild channel's, so the chat view shows it
// as one (its pseudo-guild `dm:ID` maps it to its host box).

import { unreachable } from './api.js';
import { $, dialog, el, showError } from './dom.js';
import { ensureUser, homeOrigin, nameOf, s } from './state.js';
import { connectBox, ensureBox, isHome, saveBoxes } from './boxes.js';
import { renderGuild, renderGuilds, renderMembers } from './guilds.js';
import { loadMessages, renderMessages, renderTyping } from './messages.js';
import { channelCounts, openedChannel } from './unread.js';
import { showVoice } from './voice-channel.js';

/** The sidebar's "guild" for DMs. */
export const DMS = '@dms';

s.dms = new Map(); // DM id -> DM view {id, kind, host, owner_id, name, recipients, host_reachable}
s.blocks = new Set(); // user ids this person blocks

/** Where a DM's messages live: its id, as a channel, belongs to the pseudo-guild of its
 *  host box. */
function place(dm) {
  const host = isHome(dm.host) ? homeOrigin() : new URL(dm.host).origin;
  s.guildBox.set(`dm:${dm.id}`, host);
  s.channelGuild.set(dm.id, `dm:${dm.id}`);
  s.dms.set(dm.id, dm);
  return host;
}

/** A DM this person is in: listed, its people's names loaded, and its host box reached
 *  (remembered in this browser, its gateway bringing the DM's messages). */
function adopt(dm) {
  const host = place(dm);
  for (const u of dm.recipients || []) ensureUser(u, `dm:${dm.id}`).then(() => { if (s.guild === DMS) renderGuild(); });
  if (!isHome(host)) {
    const box = ensureBox(host, {});
    if (!box.kept) {
      box.kept = true;
      saveBoxes().catch(() => {});
    }
    if (!box.gateway && !box.retryTimer) connectBox(box);
  }
}

/** Loads the DM list and the blocks from the home, and reaches the boxes hosting DMs. */
export async function loadDms() {
  let list = [];
  try {
    list = await s.api.request('GET', '/api/v1/users/@me/dms');
  } catch (e) {
    if (!unreachable(e)) return;
  }
  try {
    const blocked = await s.api.request('GET', '/api/v1/users/@me/blocks');
    s.blocks = new Set((blocked || []).map((b) => (typeof b === 'string' ? b : b.user_id)));
  } catch (e) {
    // Kept as it was.
  }
  for (const dm of list || []) adopt(dm);
  renderGuilds();
  if (s.guild === DMS) renderGuild();
}

/** The DM's name as shown: its name, else the other people in it. */
export function dmName(dm) {
  if (dm.name) return dm.name;
  const others = (dm.recipients || []).filter((u) => u !== s.me?.id);
  return others.map((u) => nameOf(u, `dm:${dm.id}`)).join(', ') || 'Just you';
}

/** Unread messages over every DM. */
export function dmUnread() {
  let total = 0;
  for (const id of s.dms.keys()) total += channelCounts(id).unread;
  return total;
}

/** The DM list in the sidebar (when the DM "guild" is selected). */
export function renderDmList() {
  $('guild-name').textContent = 'Direct messages';
  $('guild-box').textContent = '';
  for (const id of ['invite-create', 'channel-add', 'guild-read', 'guild-notify']) $(id).hidden = true;
  $('channel-notify').hidden = !s.channel;
  const dms = [...s.dms.values()].sort((a, b) => (BigInt(b.id) > BigInt(a.id) ? 1 : -1));
  const rows = [el('li', {}, el('button', { type: 'button', class: 'channel', dataset: { testid: 'dm-new' }, onclick: pickPeople }, '+ New message'))];
  for (const dm of dms) {
    const n = channelCounts(dm.id);
    const hostBox = s.boxes.get(s.guildBox.get(`dm:${dm.id}`));
    const away = dm.host_reachable === false || Boolean(hostBox?.problem);
    rows.push(el('li', {}, el('button', {
      type: 'button',
      class: `channel${dm.id === s.channel ? ' active' : ''}${n.unread && dm.id !== s.channel ? ' unread' : ''}`,
      dataset: { testid: 'dm', dmId: dm.id, unread: String(n.unread > 0 && dm.id !== s.channel), reachable: String(!away) },
      title: away ? `${dm.host} cannot be reached` : dm.host,
      onclick: () => selectDm(dm.id),
    }, `${dm.kind === 'group_dm' ? '👥 ' : '@ '}${dmName(dm)}${away ? ' (box unreachable)' : ''}`,
    n.unread && dm.id !== s.channel ? el('span', { class: 'badge', dataset: { testid: 'dm-unread' }, text: String(n.unread) }) : null)));
  }
  $('channel-list').replaceChildren(...rows);
  const dm = s.dms.get(s.channel);
  $('channel-name').textContent = dm ? dmName(dm) : '';
  $('channel-topic').textContent = dm && dm.kind === 'group_dm' ? `${dm.recipients.length} people` : '';
  $('dm-manage').hidden = !dm || dm.kind !== 'group_dm';
  $('dm-call').hidden = !dm;
}

/** Shows the DM list. */
export function selectDms() {
  s.guild = DMS;
  if (!s.dms.has(s.channel)) s.channel = null;
  $('invite-box').hidden = true;
  renderGuilds();
  renderGuild();
  renderMessages(true);
}

/** Opens a DM in the chat view. */
export async function selectDm(id) {
  const dm = s.dms.get(id);
  if (!dm) return;
  s.guild = DMS;
  s.channel = id;
  s.replyTo = null;
  $('chat-error').textContent = '';
  document.body.classList.remove('nav-open');
  renderGuilds();
  renderGuild();
  try {
    if (!s.messages.has(id)) await loadMessages(id, null);
  } catch (e) {
    showError('chat-error', unreachable(e) ? new Error(`${dm.host} cannot be reached right now.`) : e);
  }
  openedChannel(id);
  renderMessages(true);
  renderTyping();
  renderMembers();
}

/** Opens (or finds) a DM with `users` at the home, and shows it. */
export async function openDm(users, name) {
  const body = { recipients: users };
  if (name) body.name = name;
  const dm = await s.api.request('POST', '/api/v1/dms', body);
  adopt(dm);
  await selectDm(dm.id);
  return dm;
}

/** A DM event from a box (created, renamed, people added or removed, left). */
export function dmEvent(box, type, d) {
  if (type === 'dm_delete') {
    s.dms.delete(d.id);
    if (s.channel === d.id) s.channel = null;
  } else {
    adopt({ host: box.origin, ...d });
  }
  renderGuilds();
  if (s.guild === DMS) renderGuild();
}

/** Whether messages of `userId` are hidden behind "blocked message". */
export function blocked(userId) {
  return s.blocks.has(userId);
}

/** The picker: search every box in use, pick up to 9 people, name a group. */
export function pickPeople() {
  const query = el('input', { type: 'search', placeholder: 'Name or username', 'aria-label': 'Search people', dataset: { testid: 'dm-search' } });
  const results = el('ul', { class: 'settings-list', dataset: { testid: 'dm-results' } });
  const chosen = new Map(); // user id -> name
  const picked = el('p', { class: 'muted', dataset: { testid: 'dm-picked' } });
  const name = el('input', { maxlength: '100', placeholder: 'Group name (optional)', 'aria-label': 'Group name', dataset: { testid: 'dm-name' } });
  const showPicked = () => { picked.textContent = chosen.size ? `With: ${[...chosen.values()].join(', ')}` : 'Nobody picked yet.'; };
  let timer = null;
  const search = async () => {
    const q = query.value.trim();
    if (!q) return;
    const found = new Map();
    // The home asks its peers too; other boxes know their own people.
    const boxes = [...s.boxes.values()].filter((b) => b.status === 'online' || b.isHome);
    await Promise.all(boxes.map(async (box) => {
      try {
        const answer = await box.api.request('GET', `/api/v1/users/search?q=${encodeURIComponent(q)}&limit=20`);
        for (const u of answer.users || answer || []) if (u.id !== s.me?.id && !found.has(u.id)) found.set(u.id, u);
      } catch (e) {
        // A box that does not answer adds nobody.
      }
    }));
    results.replaceChildren(...[...found.values()].map((u) => el('li', { dataset: { testid: 'dm-result', userId: u.id } },
      el('span', { text: `${u.name || u.username} (${u.username}${u.homeserver ? ` at ${new URL(u.homeserver).host}` : ''})` }),
      el('button', {
        type: 'button',
        dataset: { testid: 'dm-pick' },
        onclick: () => {
          if (chosen.has(u.id)) chosen.delete(u.id);
          else if (chosen.size < 9) chosen.set(u.id, u.name || u.username);
          showPicked();
        },
      }, 'Pick'))));
    if (!found.size) results.replaceChildren(el('li', { class: 'muted', text: 'Nobody found.' }));
  };
  query.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(search, 250); });
  showPicked();
  dialog('New message', [query, results, picked, name], async () => {
    if (!chosen.size) throw new Error('Pick someone first.');
    await openDm([...chosen.keys()], chosen.size > 1 ? name.value.trim() : '');
  });
  $('dialog-ok').textContent = 'Open';
}

/** A person's card: message them, block or unblock them. */
export function profileDialog(userId, guildId) {
  const user = s.users.get(userId);
  const name = nameOf(userId, guildId);
  const isMe = userId === s.me?.id;
  const blockButton = el('button', {
    type: 'button',
    dataset: { testid: 'profile-block' },
    onclick: async () => {
      try {
        if (s.blocks.has(userId)) {
          await s.api.request('DELETE', `/api/v1/users/@me/blocks/${userId}`);
          s.blocks.delete(userId);
        } else {
          await s.api.request('PUT', `/api/v1/users/@me/blocks/${userId}`);
          s.blocks.add(userId);
        }
        blockButton.textContent = s.blocks.has(userId) ? 'Unblock' : 'Block';
        renderMessages();
      } catch (e) {
        showError('dialog-error', e);
      }
    },
  }, s.blocks.has(userId) ? 'Unblock' : 'Block');
  dialog(name, [
    el('p', { class: 'muted', text: user ? `${user.username}${user.homeserver ? ` at ${new URL(user.homeserver).host}` : ''}` : userId }),
    user?.bio ? el('p', { text: user.bio }) : null,
    isMe ? null : el('div', { class: 'row' }, blockButton),
  ], isMe ? null : async () => { await openDm([userId]); });
  if (!isMe) {
    $('dialog-ok').textContent = 'Message';
    $('dialog-ok').dataset.testid = 'dialog-ok';
  }
}

/** A call in the open DM: its voice room, at its host. */
export function callDm() {
  const dm = s.dms.get(s.channel);
  if (dm) showVoice({ id: dm.id, name: dmName(dm), kind: 'voice' });
}

/** Group DM: rename, add someone, remove someone (owner), leave. */
export function manageDm() {
  const dm = s.dms.get(s.channel);
  if (!dm) return;
  const api = s.boxes.get(s.guildBox.get(`dm:${dm.id}`))?.api || s.api;
  const name = el('input', { maxlength: '100', value: dm.name || '', 'aria-label': 'Group name', dataset: { testid: 'dm-rename' } });
  const people = el('ul', { class: 'settings-list' }, ...dm.recipients.map((u) => el('li', { dataset: { testid: 'dm-member', userId: u } },
    el('span', { text: nameOf(u, `dm:${dm.id}`) + (u === dm.owner_id ? ' (owner)' : '') }),
    u !== s.me?.id && dm.owner_id === s.me?.id ? el('button', {
      type: 'button',
      dataset: { testid: 'dm-remove' },
      onclick: async (e) => {
        try {
          await api.request('DELETE', `/api/v1/dms/${dm.id}/recipients/${u}`);
          e.target.closest('li').remove();
        } catch (err) {
          showError('dialog-error', err);
        }
      },
    }, 'Remove') : null)));
  const add = el('button', { type: 'button', dataset: { testid: 'dm-add' }, onclick: () => addToDm(dm, api) }, 'Add someone…');
  const leave = el('button', {
    type: 'button',
    class: 'danger',
    dataset: { testid: 'dm-leave' },
    onclick: async () => {
      try {
        await api.request('DELETE', `/api/v1/dms/${dm.id}/recipients/@me`);
        s.dms.delete(dm.id);
        s.channel = null;
        $('dialog').close();
        selectDms();
      } catch (e) {
        showError('dialog-error', e);
      }
    },
  }, 'Leave');
  dialog(dmName(dm), [el('label', {}, 'Name', name), people, el('div', { class: 'row' }, add, leave)], async () => {
    const renamed = await api.request('PATCH', `/api/v1/dms/${dm.id}`, { name: name.value.trim() });
    place({ host: dm.host, ...renamed });
    renderGuild();
  });
}

function addToDm(dm, api) {
  const query = el('input', { type: 'search', placeholder: 'Name or username', 'aria-label': 'Search people', dataset: { testid: 'dm-add-search' } });
  const results = el('ul', { class: 'settings-list' });
  query.addEventListener('input', async () => {
    const q = query.value.trim();
    if (!q) return;
    try {
      const answer = await s.api.request('GET', `/api/v1/users/search?q=${encodeURIComponent(q)}&limit=20`);
      results.replaceChildren(...(answer.users || []).filter((u) => !dm.recipients.includes(u.id)).map((u) => el('li', { dataset: { testid: 'dm-add-result' } },
        el('span', { text: u.name || u.username }),
        el('button', {
          type: 'button',
          dataset: { testid: 'dm-add-pick' },
          onclick: async () => {
            try {
              await api.request('PUT', `/api/v1/dms/${dm.id}/recipients/${u.id}`);
              const fresh = await api.request('GET', `/api/v1/dms/${dm.id}`);
              place({ host: dm.host, ...fresh });
              $('dialog').close();
              renderGuild();
            } catch (e) {
              showError('dialog-error', e);
            }
          },
        }, 'Add'))));
    } catch (e) {
      showError('dialog-error', e);
    }
  });
  dialog(`Add to ${dmName(dm)}`, [query, results], null);
}
