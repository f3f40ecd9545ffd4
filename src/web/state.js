// The client state: the session, what is loaded (guilds, channels, messages, members,
// users, files), what is selected, and the lookups over it.

import { P } from './permissions.js';

/** The box that served this page (IndexedDB belongs to it): the user's home unless the
 *  user moved their home to another box since. */
export const origin = location.origin;

/** Where the user's home is reached: this page's box, or the box the home moved to. */
export function homeOrigin() {
  return s.state?.homeAt || origin;
}

export const s = {
  state: null, // persisted: device key, identity, refresh token, user id, username
  api: null, // the home's Api (accounts, devices, settings)
  boxes: new Map(), // origin -> Box (boxes.js): the home and every other box in use
  me: null,
  guilds: new Map(), // id -> guild view
  guildBox: new Map(), // guild id -> origin of the box that hosts it
  channelGuild: new Map(), // channel id -> guild id
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

/** What a participant of a DM may do there (as the server grants it to all of them). */
export const DM_PLACE = {
  id: '@dms',
  my_permissions: String(P.VIEW_CHANNEL | P.SEND_MESSAGES | P.READ_MESSAGE_HISTORY | P.ADD_REACTIONS
    | P.ATTACH_FILES | P.CONNECT | P.SPEAK),
};

/** The guild view of the place being looked at: a guild, or the DMs. */
export function currentPlace() {
  return s.guild === DM_PLACE.id ? DM_PLACE : s.guilds.get(s.guild);
}

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

/** The box hosting a guild (the home when unknown). */
export function boxOfGuild(guildId) {
  return s.boxes.get(s.guildBox.get(guildId)) || s.boxes.get(homeOrigin());
}

/** The Api of the box hosting a guild. */
export function apiFor(guildId) {
  return boxOfGuild(guildId)?.api || s.api;
}

/** The Api of the box hosting a channel. */
export function apiForChannel(channelId) {
  return apiFor(s.channelGuild.get(channelId));
}

/** Remembers which box hosts a guild and its channels. */
export function placeGuild(view, boxOrigin) {
  s.guildBox.set(view.id, boxOrigin);
  for (const c of view.channels || []) s.channelGuild.set(c.id, view.id);
}

/** Loads a user's public profile from the box of `guildId` (which knows them there). */
export async function ensureUser(userId, guildId) {
  if (s.users.has(userId)) return;
  s.users.set(userId, null);
  const there = apiFor(guildId || s.guild);
  try {
    s.users.set(userId, await there.request('GET', `/api/v1/users/${userId}`));
  } catch (e) {
    // That box may be away: the home knows its peers' people too.
    try {
      if (!s.api || there === s.api) throw e;
      s.users.set(userId, await s.api.request('GET', `/api/v1/users/${userId}`));
    } catch (again) {
      s.users.delete(userId);
    }
  }
}

export function resetData() {
  for (const url of s.blobs.values()) url.then((u) => URL.revokeObjectURL(u)).catch(() => {});
  s.blobs.clear();
  s.guilds.clear();
  s.guildBox.clear();
  s.channelGuild.clear();
  s.reads?.clear();
  s.messages.clear();
  s.complete.clear();
  s.members.clear();
  s.users.clear();
  s.typing.clear();
  s.guild = null;
  s.channel = null;
}
