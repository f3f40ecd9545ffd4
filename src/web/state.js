// The client state: the session, what is loaded (guilds, channels, messages, members,
// users, files), what is selected, and the lookups over it.

import { P } from './permissions.js';

export const origin = location.origin;

export const s = {
  state: null, // persisted: device key, identity, refresh token, user id, username
  api: null,
  gateway: null, // the realtime Gateway of this session
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

export const byId = (a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : BigInt(a.id) > BigInt(b.id) ? 1 : 0);

export function can(guild, bit) {
  if (!guild) return false;
  if (s.me && guild.owner === s.me.id) return true;
  const p = Number(guild.my_permissions || 0);
  return (p & P.ADMINISTRATOR) !== 0 || (p & bit) !== 0;
}

export function nameOf(userId, guildId) {
  const member = guildId && s.members.get(guildId)?.get(userId);
  if (member && member.nick) return member.nick;
  const user = s.users.get(userId) || member?.user;
  if (user) return user.name || user.username;
  return `${userId.slice(0, 8)}…`;
}

export async function ensureUser(userId) {
  if (s.users.has(userId)) return;
  s.users.set(userId, null);
  try {
    s.users.set(userId, await s.api.request('GET', `/api/v1/users/${userId}`));
  } catch (e) {
    s.users.delete(userId);
  }
}

export function resetData() {
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
