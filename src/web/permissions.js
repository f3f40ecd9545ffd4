// The permission bits the client checks before it offers an action, named as
// `Permissions::NAMES` in src/model/permissions.rs (a unit test there reads this file and
// fails if a name or a bit differs from the server's).

export const P = {
  VIEW_CHANNEL: 1 << 0,
  SEND_MESSAGES: 1 << 1,
  READ_MESSAGE_HISTORY: 1 << 2,
  ADD_REACTIONS: 1 << 3,
  ATTACH_FILES: 1 << 4,
  MENTION_EVERYONE: 1 << 5,
  MANAGE_MESSAGES: 1 << 6,
  MANAGE_CHANNELS: 1 << 7,
  MANAGE_ROLES: 1 << 8,
  MANAGE_GUILD: 1 << 9,
  KICK_MEMBERS: 1 << 10,
  BAN_MEMBERS: 1 << 11,
  CREATE_INVITE: 1 << 12,
  CONNECT: 1 << 13,
  SPEAK: 1 << 14,
  MUTE_MEMBERS: 1 << 15,
  DEAFEN_MEMBERS: 1 << 16,
  MOVE_MEMBERS: 1 << 17,
  CHANGE_NICKNAME: 1 << 18,
  ADMINISTRATOR: 1 << 19,
};
