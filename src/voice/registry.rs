//! The server's voice rooms: who is connected where, with which mute and deafen state, and
//! the room threads. All in memory: a voice connection is live state that ends with its
//! socket (a restart disconnects everyone, and clients rejoin). Moderator mutes and
//! deafens are kept per guild and member while the server runs, so leaving and rejoining
//! does not lift them.
//!
//! A user has at most one voice connection per server: joining again (another device, a
//! reconnect) replaces the old one, which is closed with [`close::REPLACED`].

use super::jitter::JitterConfig;
use super::room::{self, Command, ConnId, Outbound, RoomShared, RoomThread, VoiceFlags};
use super::wire::{close, EncoderSettings};
use crate::config::VoiceConfig;
use crate::gateway::socket::{Running, SessionGuard};
use crate::gateway::tickets::{TicketBook, TicketCaps, TicketRefused};
use crate::gateway::Gateway;
use crate::model::{Audience, Id, UserId};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How long a voice ticket is valid, seconds.
pub const TICKET_SECS: u64 = 30;

/// Who a voice ticket was issued to, for which channel.
#[derive(Clone, Debug)]
pub struct VoiceTicket {
    /// The user.
    pub user: UserId,
    /// Their device key thumbprint.
    pub jkt: String,
    /// Whether their token is this server's own.
    pub local: bool,
    /// The voice channel.
    pub channel: Id,
    /// Its guild.
    pub guild: Id,
}

/// A participant as clients see it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct VoiceState {
    /// The guild.
    pub guild_id: Id,
    /// The channel, or `None` once they left.
    pub channel_id: Option<Id>,
    /// Who.
    pub user_id: UserId,
    /// Mute and deafen state.
    #[serde(flatten)]
    pub flags: VoiceFlags,
}

/// Why a join failed.
#[derive(Debug, PartialEq, Eq)]
pub enum JoinError {
    /// The room has `max_participants` already.
    Full,
    /// The server is shutting down.
    ShuttingDown,
    /// The room's thread could not start.
    NoThread,
    /// The user is not connected to voice here.
    NotConnected,
}

/// What a successful join hands the connection.
pub struct Joined {
    /// The connection's id.
    pub conn: ConnId,
    /// Where its packets go; the registry swaps it when the user is moved.
    pub route: Route,
    /// Their state.
    pub state: VoiceState,
    /// Everyone in the room, them included.
    pub participants: Vec<VoiceState>,
}

/// The room a connection's packets go to, swapped when the user is moved.
pub type Route = Arc<Mutex<Arc<RoomShared>>>;

struct Seat {
    conn: ConnId,
    stream: room::OutStream,
    guild: Id,
    channel: Id,
    flags: VoiceFlags,
    tx: async_channel::Sender<Outbound>,
    route: Route,
}

struct Room {
    thread: RoomThread,
    members: usize,
}

#[derive(Default)]
struct Registry {
    rooms: HashMap<Id, Room>,
    seats: HashMap<UserId, Seat>,
    /// Moderator mute and deafen by (guild, user).
    moderation: HashMap<(Id, UserId), (bool, bool)>,
    shutting_down: bool,
}

/// The voice side of one server.
pub struct Voice {
    /// Settings.
    pub config: VoiceConfig,
    gateway: Arc<Gateway>,
    tickets: TicketBook<VoiceTicket>,
    state: Mutex<Registry>,
    next_conn: AtomicU64,
    sessions: Running,
    /// Late and concealed frames of every room, summed.
    frames: Arc<room::FrameCounters>,
}

impl Voice {
    /// No rooms yet; tickets capped by `caps`.
    pub fn new(config: VoiceConfig, gateway: Arc<Gateway>, caps: TicketCaps) -> Voice {
        Voice {
            config,
            gateway,
            tickets: TicketBook::new(caps, TICKET_SECS),
            state: Mutex::new(Registry::default()),
            next_conn: AtomicU64::new(1),
            sessions: Running::default(),
            frames: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a voice socket as running until the guard drops.
    pub fn session_started(&self) -> SessionGuard<'_> {
        self.sessions.start()
    }

    /// Voice sockets still running.
    pub fn sessions_running(&self) -> usize {
        self.sessions.count()
    }

    /// Issues a single-use ticket for opening the voice socket of `channel`, unless the
    /// device, the user or the server holds too many unused ones.
    pub fn issue_ticket(
        &self,
        user: UserId,
        jkt: &str,
        local: bool,
        guild: Id,
        channel: Id,
        now: u64,
    ) -> Result<String, TicketRefused> {
        let ticket = VoiceTicket {
            user,
            jkt: jkt.to_string(),
            local,
            channel,
            guild,
        };
        self.tickets.issue(user, jkt, now, ticket)
    }

    /// Takes a ticket (it works once).
    pub fn redeem_ticket(&self, ticket: &str, now: u64) -> Option<VoiceTicket> {
        self.tickets.redeem(ticket, now)
    }

    /// Whether a room has space for `user` (who may be in it already on another device).
    pub fn has_room_for(&self, user: UserId, channel: Id) -> bool {
        let registry = self.lock();
        let members = registry.rooms.get(&channel).map_or(0, |r| r.members);
        let already = registry
            .seats
            .get(&user)
            .is_some_and(|s| s.channel == channel);
        already || members < self.config.max_participants
    }

    fn settings(&self) -> (EncoderSettings, JitterConfig) {
        (
            EncoderSettings::from_config(&self.config),
            JitterConfig {
                max_delay_frames: self.config.max_jitter_frames,
                ..JitterConfig::default()
            },
        )
    }

    /// Seats `user` in `channel` with a new connection whose frames go to `tx`.
    pub fn join(
        &self,
        user: UserId,
        guild: Id,
        channel: Id,
        self_flags: (bool, bool),
        suppress: bool,
        tx: async_channel::Sender<Outbound>,
    ) -> Result<Joined, JoinError> {
        let mut registry = self.lock();
        if registry.shutting_down {
            return Err(JoinError::ShuttingDown);
        }
        let replacing_here = registry
            .seats
            .get(&user)
            .is_some_and(|s| s.channel == channel);
        let members = registry.rooms.get(&channel).map_or(0, |r| r.members);
        if !replacing_here && members >= self.config.max_participants {
            return Err(JoinError::Full);
        }
        let mut events = Vec::new();
        if let Some(old) = registry.seats.remove(&user) {
            let _ = old.tx.try_send(Outbound::Close(
                close::REPLACED,
                "joined voice again from another connection".into(),
            ));
            self.vacate(&mut registry, old.channel, old.conn);
            if old.channel != channel {
                events.push(state_of(user, old.guild, None, old.flags, old.channel));
            }
        }
        let shared = match registry.rooms.get(&channel) {
            Some(room) => room.thread.shared.clone(),
            None => {
                let (settings, jitter) = self.settings();
                let shared = Arc::new(RoomShared::counting_into(
                    guild,
                    channel,
                    self.frames.clone(),
                ));
                let thread = room::spawn(
                    shared.clone(),
                    settings,
                    jitter,
                    self.config.max_mixed_talkers,
                    self.gateway.clone(),
                )
                .map_err(|_| JoinError::NoThread)?;
                registry.rooms.insert(channel, Room { thread, members: 0 });
                shared
            }
        };
        let (mute, deaf) = registry
            .moderation
            .get(&(guild, user))
            .copied()
            .unwrap_or((false, false));
        let flags = VoiceFlags {
            self_mute: self_flags.0,
            self_deaf: self_flags.1,
            mute,
            deaf,
            suppress,
        };
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let stream = room::OutStream::new();
        shared.command(Command::Join {
            conn,
            user,
            flags,
            tx: tx.clone(),
            stream: stream.clone(),
        });
        if let Some(room) = registry.rooms.get_mut(&channel) {
            room.members += 1;
            shared.set_members(room.members);
        }
        let route = Arc::new(Mutex::new(shared));
        registry.seats.insert(
            user,
            Seat {
                conn,
                stream,
                guild,
                channel,
                flags,
                tx,
                route: route.clone(),
            },
        );
        let state = VoiceState {
            guild_id: guild,
            channel_id: Some(channel),
            user_id: user,
            flags,
        };
        let participants = participants_in(&registry, channel);
        drop(registry);
        for (state, channel) in events {
            self.publish(&state, channel);
        }
        self.publish(&state, channel);
        Ok(Joined {
            conn,
            route,
            state,
            participants,
        })
    }

    /// Removes connection `conn` from the room it is in (its socket closed).
    pub fn leave(&self, user: UserId, conn: ConnId) {
        let mut registry = self.lock();
        if registry.seats.get(&user).is_none_or(|s| s.conn != conn) {
            return;
        }
        let Some(seat) = registry.seats.remove(&user) else {
            return;
        };
        self.vacate(&mut registry, seat.channel, conn);
        drop(registry);
        let (state, channel) = state_of(user, seat.guild, None, seat.flags, seat.channel);
        self.publish(&state, channel);
    }

    /// Takes `conn` out of `channel`'s room; stops the room when it is empty.
    fn vacate(&self, registry: &mut Registry, channel: Id, conn: ConnId) {
        let empty = match registry.rooms.get_mut(&channel) {
            Some(room) => {
                room.thread.shared.command(Command::Leave(conn));
                room.members = room.members.saturating_sub(1);
                room.thread.shared.set_members(room.members);
                room.members == 0
            }
            None => false,
        };
        if empty {
            if let Some(room) = registry.rooms.remove(&channel) {
                room.thread.stop_detached();
            }
        }
    }

    /// Changes a connection's own mute and deafen. Returns the new state.
    pub fn set_self(
        &self,
        user: UserId,
        conn: ConnId,
        self_mute: Option<bool>,
        self_deaf: Option<bool>,
    ) -> Option<VoiceState> {
        self.update(user, Some(conn), |f| {
            if let Some(m) = self_mute {
                f.self_mute = m;
            }
            if let Some(d) = self_deaf {
                f.self_deaf = d;
            }
        })
    }

    /// Changes whether a connection may speak (its SPEAK permission changed).
    pub fn set_suppress(&self, user: UserId, conn: ConnId, suppress: bool) -> Option<VoiceState> {
        self.update(user, Some(conn), |f| f.suppress = suppress)
    }

    fn update(
        &self,
        user: UserId,
        conn: Option<ConnId>,
        change: impl FnOnce(&mut VoiceFlags),
    ) -> Option<VoiceState> {
        let mut registry = self.lock();
        let registry = &mut *registry;
        let seat = registry.seats.get_mut(&user)?;
        if conn.is_some_and(|c| c != seat.conn) {
            return None;
        }
        let before = seat.flags;
        change(&mut seat.flags);
        let state = VoiceState {
            guild_id: seat.guild,
            channel_id: Some(seat.channel),
            user_id: user,
            flags: seat.flags,
        };
        if seat.flags != before {
            if let Some(room) = registry.rooms.get(&seat.channel) {
                room.thread
                    .shared
                    .command(Command::Flags(seat.conn, seat.flags));
            }
            let _ = seat.tx.try_send(Outbound::Text(
                serde_json::json!({"op": "state", "state": state}).to_string(),
            ));
            let channel = seat.channel;
            self.publish(&state, channel);
        }
        Some(state)
    }

    /// A moderator's mute and deafen of `user` in `guild`: kept while the server runs and
    /// applied at once if they are connected there. Returns their state if connected.
    pub fn moderate(
        &self,
        guild: Id,
        user: UserId,
        mute: Option<bool>,
        deaf: Option<bool>,
    ) -> Option<VoiceState> {
        {
            let mut registry = self.lock();
            let entry = registry.moderation.entry((guild, user)).or_default();
            if let Some(m) = mute {
                entry.0 = m;
            }
            if let Some(d) = deaf {
                entry.1 = d;
            }
            if *entry == (false, false) {
                registry.moderation.remove(&(guild, user));
            }
            if registry.seats.get(&user).is_none_or(|s| s.guild != guild) {
                return None;
            }
        }
        self.update(user, None, |f| {
            if let Some(m) = mute {
                f.mute = m;
            }
            if let Some(d) = deaf {
                f.deaf = d;
            }
        })
    }

    /// Where `user` is connected: (guild, channel).
    pub fn seat_of(&self, user: UserId) -> Option<(Id, Id)> {
        self.lock().seats.get(&user).map(|s| (s.guild, s.channel))
    }

    /// Moves a connected user to another voice channel of the same guild; their socket
    /// stays open and hears the new room from the next tick.
    pub fn move_user(&self, user: UserId, to: Id) -> Result<VoiceState, JoinError> {
        let mut registry = self.lock();
        let registry = &mut *registry;
        let Some(seat) = registry.seats.get(&user) else {
            return Err(JoinError::NotConnected);
        };
        let (conn, from, guild, flags, tx, seq) = (
            seat.conn,
            seat.channel,
            seat.guild,
            seat.flags,
            seat.tx.clone(),
            seat.stream.clone(),
        );
        if from == to {
            return Ok(VoiceState {
                guild_id: guild,
                channel_id: Some(to),
                user_id: user,
                flags,
            });
        }
        if registry.rooms.get(&to).map_or(0, |r| r.members) >= self.config.max_participants {
            return Err(JoinError::Full);
        }
        let shared = match registry.rooms.get(&to) {
            Some(room) => room.thread.shared.clone(),
            None => {
                let (settings, jitter) = self.settings();
                let shared = Arc::new(RoomShared::counting_into(guild, to, self.frames.clone()));
                let thread = room::spawn(
                    shared.clone(),
                    settings,
                    jitter,
                    self.config.max_mixed_talkers,
                    self.gateway.clone(),
                )
                .map_err(|_| JoinError::NoThread)?;
                registry.rooms.insert(to, Room { thread, members: 0 });
                shared
            }
        };
        self.vacate(registry, from, conn);
        shared.command(Command::Join {
            conn,
            user,
            flags,
            tx: tx.clone(),
            stream: seq,
        });
        if let Some(room) = registry.rooms.get_mut(&to) {
            room.members += 1;
            shared.set_members(room.members);
        }
        if let Some(seat) = registry.seats.get_mut(&user) {
            seat.channel = to;
            *seat.route.lock().unwrap_or_else(|p| p.into_inner()) = shared;
        }
        let _ = tx.try_send(Outbound::Text(
            serde_json::json!({"op": "moved", "guild_id": guild, "channel_id": to}).to_string(),
        ));
        let state = VoiceState {
            guild_id: guild,
            channel_id: Some(to),
            user_id: user,
            flags,
        };
        // Both rooms' audiences learn of it.
        self.publish(&state, from);
        self.publish(&state, to);
        Ok(state)
    }

    /// Disconnects a user from voice (a moderator's action, or access lost).
    pub fn disconnect(&self, user: UserId, code: u16, reason: &str) -> bool {
        let registry = self.lock();
        match registry.seats.get(&user) {
            Some(seat) => {
                let _ = seat.tx.try_send(Outbound::Close(code, reason.to_string()));
                true
            }
            None => false,
        }
    }

    /// Who is in a channel.
    pub fn participants(&self, channel: Id) -> Vec<VoiceState> {
        participants_in(&self.lock(), channel)
    }

    /// Counters of a channel's running room.
    pub fn room(&self, channel: Id) -> Option<Arc<RoomShared>> {
        self.lock()
            .rooms
            .get(&channel)
            .map(|r| r.thread.shared.clone())
    }

    /// Rooms running now.
    pub fn rooms_running(&self) -> usize {
        self.lock().rooms.len()
    }

    /// Late and concealed frames of every room since the start.
    pub fn frames(&self) -> &room::FrameCounters {
        &self.frames
    }

    /// Each running room's channel and guild, with who is in it now.
    pub fn rooms_now(&self) -> Vec<(Id, Id, Vec<VoiceState>)> {
        let registry = self.lock();
        registry
            .rooms
            .iter()
            .map(|(channel, room)| {
                (
                    *channel,
                    room.thread.shared.guild,
                    participants_in(&registry, *channel),
                )
            })
            .collect()
    }

    /// Closes every voice socket and stops every room (server shutdown).
    pub fn shutdown(&self) {
        let rooms: Vec<Room> = {
            let mut registry = self.lock();
            registry.shutting_down = true;
            for seat in registry.seats.values() {
                let _ = seat
                    .tx
                    .try_send(Outbound::Close(1001, "the server is shutting down".into()));
            }
            registry.rooms.drain().map(|(_, r)| r).collect()
        };
        for room in rooms {
            room.thread.stop();
        }
    }

    fn publish(&self, state: &VoiceState, channel: Id) {
        self.gateway.publish_ephemeral(
            "voice_state",
            Audience::channel(state.guild_id, channel),
            serde_json::to_value(state).unwrap_or_default(),
        );
    }
}

fn state_of(
    user: UserId,
    guild: Id,
    channel: Option<Id>,
    flags: VoiceFlags,
    audience_channel: Id,
) -> (VoiceState, Id) {
    (
        VoiceState {
            guild_id: guild,
            channel_id: channel,
            user_id: user,
            flags,
        },
        audience_channel,
    )
}

fn participants_in(registry: &Registry, channel: Id) -> Vec<VoiceState> {
    let mut out: Vec<VoiceState> = registry
        .seats
        .iter()
        .filter(|(_, s)| s.channel == channel)
        .map(|(user, s)| VoiceState {
            guild_id: s.guild,
            channel_id: Some(channel),
            user_id: *user,
            flags: s.flags,
        })
        .collect();
    out.sort_by_key(|s| s.user_id);
    out
}
