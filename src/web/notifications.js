// Notification settings per box, guild and channel (DMs are channels): all messages,
// mentions only, nothing, or as the level above; `@everyone` and role mentions
// suppressed; muted until a time. Each box keeps the settings of what it hosts and
// decides whom to push by them; the client loads them per box and applies the same rule
// to its in-app notifications. `notification_settings_update` events bring changes made
// on another device.

import { dialog, el } from './dom.js';
import { boxOfGuild, s } from './state.js';

const LEVELS = [
  ['default', 'As above'],
  ['all', 'All messages'],
  ['mentions', 'Mentions only'],
  ['nothing', 'Nothing'],
];
const MUTES = [
  [0, 'Not muted'],
  [3600, 'for 1 hour'],
  [8 * 3600, 'for 8 hours'],
  [24 * 3600, 'for 24 hours'],
  [7 * 24 * 3600, 'for a week'],
];

s.notify = new Map(); // box origin -> {box, guilds: {id: settings}, channels: {id: settings}}

/** Loads a box's notification settings for this person. */
export async function loadNotificationSettings(box) {
  if (!box.api) return;
  try {
    s.notify.set(box.origin, await box.api.request('GET', '/api/v1/users/@me/notification-settings'));
  } catch (e) {
    // Without them the box's defaults apply here as they do there.
  }
}

/** A change made on another device. */
export function applyNotificationSettings(box, data) {
  const current = s.notify.get(box.origin) || { box: null, guilds: {}, channels: {} };
  if (data.scope === 'box') current.box = data.settings;
  else if (data.scope === 'guild') current.guilds[data.id] = data.settings;
  else if (data.scope === 'channel') current.channels[data.id] = data.settings;
  else Object.assign(current, data);
  s.notify.set(box.origin, current);
}

/** The settings that apply in a channel: channel → guild → box, DMs default to all. */
export function resolved(channelId, guildId) {
  const box = boxOfGuild(guildId);
  const all = (box && s.notify.get(box.origin)) || { guilds: {}, channels: {} };
  const chain = [all.channels?.[channelId], guildId ? all.guilds?.[guildId] : null, all.box].filter(Boolean);
  const level = chain.map((x) => x.level).find((l) => l && l !== 'default') || (guildId ? 'mentions' : 'all');
  const now = Date.now() / 1000;
  return {
    level,
    suppressEveryone: chain.some((x) => x.suppress_everyone),
    suppressRoles: chain.some((x) => x.suppress_roles),
    muted: chain.some((x) => x.muted_until && x.muted_until > now),
  };
}

/** Whether a message should notify in the app, by the same rule the box pushes with. */
export function wants(m, mention) {
  const r = resolved(m.channel_id, m.guild_id);
  if (r.muted || r.level === 'nothing') return false;
  if (r.level === 'all') return true;
  if (!mention) return false;
  if (mention === 'everyone') return !r.suppressEveryone;
  if (mention === 'role') return !r.suppressRoles;
  return true;
}

/** The settings dialog for a scope: `{scope: 'box'|'guild'|'channel', id, box, title}`. */
export function notificationDialog({ scope, id, box, title }) {
  const all = s.notify.get(box.origin) || { guilds: {}, channels: {} };
  const current = (scope === 'box' ? all.box : scope === 'guild' ? all.guilds?.[id] : all.channels?.[id]) || {};
  const level = el('select', { 'aria-label': 'Notify me of', dataset: { testid: 'notify-level' } },
    ...LEVELS.filter(([v]) => scope !== 'box' || v !== 'default').map(([v, text]) => el('option', { value: v, text })));
  level.value = current.level || (scope === 'box' ? 'mentions' : 'default');
  const everyone = el('input', { type: 'checkbox', dataset: { testid: 'notify-suppress-everyone' } });
  everyone.checked = Boolean(current.suppress_everyone);
  const roles = el('input', { type: 'checkbox', dataset: { testid: 'notify-suppress-roles' } });
  roles.checked = Boolean(current.suppress_roles);
  const mute = el('select', { 'aria-label': 'Mute', dataset: { testid: 'notify-mute' } },
    ...MUTES.map(([v, text]) => el('option', { value: String(v), text })));
  const mutedUntil = current.muted_until && current.muted_until > Date.now() / 1000 ? current.muted_until : 0;
  const note = el('p', { class: 'muted', text: mutedUntil ? `Muted until ${new Date(mutedUntil * 1000).toLocaleString()}.` : '' });
  dialog(`Notifications: ${title}`, [
    el('label', {}, 'Notify me of', level),
    el('label', { class: 'check' }, everyone, ' Ignore @everyone and @here'),
    el('label', { class: 'check' }, roles, ' Ignore role mentions'),
    el('label', {}, 'Mute', mute),
    note,
  ], async () => {
    const body = {
      level: level.value,
      suppress_everyone: everyone.checked,
      suppress_roles: roles.checked,
      muted_until: Number(mute.value) ? Math.floor(Date.now() / 1000) + Number(mute.value) : (mutedUntil || null),
    };
    const path = scope === 'box' ? 'box' : `${scope === 'guild' ? 'guilds' : 'channels'}/${id}`;
    const saved = await box.api.request('PUT', `/api/v1/users/@me/notification-settings/${path}`, body);
    applyNotificationSettings(box, { scope, id, settings: saved || body });
  });
}
