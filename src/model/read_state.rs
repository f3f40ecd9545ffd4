//! Read states: how far each user has read each channel, and the counters that make the
//! unread and mention counts cheap (no scan of messages). Everything is keyed by channel
//! id, so a channel of a guild and a channel without one work alike.

use super::ids::{Id, UserId};
use serde::{Deserialize, Serialize};

/// The reader under whose id a channel keeps its own [`ChannelCounter`], among its readers'
/// read states: the counter and the author's read position, both written when a message
/// is posted, then share one table and mostly one page. All zeros is a small-order point,
/// which no identity key can be (device certificates refuse weak keys), and it sorts
/// before every reader.
pub const COUNTER_ROW: UserId = UserId([0; 32]);

/// A channel's running count of posted messages and its newest message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCounter {
    /// Messages posted in the channel since counting began (deletions do not lower it).
    pub seq: u64,
    /// The newest message still there, if any.
    pub last_message_id: Option<Id>,
}

impl ChannelCounter {
    /// The counter as the channel's row among read states ([`COUNTER_ROW`]): as if a
    /// reader had read the newest message (`Id(0)`, never a message id, when there is
    /// none) at the full count.
    pub fn to_row(&self) -> ReadState {
        ReadState {
            last_read_id: self.last_message_id.unwrap_or(Id(0)),
            read_seq: self.seq,
        }
    }

    /// The counter kept in a channel's [`COUNTER_ROW`].
    pub fn from_row(row: &ReadState) -> ChannelCounter {
        ChannelCounter {
            seq: row.read_seq,
            last_message_id: (row.last_read_id != Id(0)).then_some(row.last_read_id),
        }
    }
}

/// How far one user has read one channel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadState {
    /// The last message read.
    pub last_read_id: Id,
    /// The channel's [`ChannelCounter::seq`] when that message was posted (its
    /// `Message::seq`).
    pub read_seq: u64,
}

/// A message that mentions roles or `@everyone`: kept once per message rather than once
/// per member, so posting it costs the same in a guild of 5 and of 5,000; each reader
/// matches it against their own roles when counting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadMention {
    /// The author (not mentioned by their own message).
    pub author_id: UserId,
    /// Roles mentioned.
    pub roles: Vec<Id>,
    /// Whether `@everyone` was mentioned.
    pub everyone: bool,
}

impl BroadMention {
    /// Whether the message mentions a member holding `roles`.
    pub fn names(&self, user: UserId, roles: &[Id]) -> bool {
        user != self.author_id && (self.everyone || self.roles.iter().any(|r| roles.contains(r)))
    }
}

/// Unread messages: those posted after the read position. A channel never read counts
/// every message posted since counting began.
pub fn unread(counter: &ChannelCounter, state: Option<&ReadState>) -> u64 {
    counter.seq.saturating_sub(state.map_or(0, |s| s.read_seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_is_the_distance_between_counters() {
        let counter = ChannelCounter {
            seq: 10,
            last_message_id: Some(Id(99)),
        };
        assert_eq!(unread(&counter, None), 10);
        let state = ReadState {
            last_read_id: Id(90),
            read_seq: 7,
        };
        assert_eq!(unread(&counter, Some(&state)), 3);
        let ahead = ReadState {
            last_read_id: Id(99),
            read_seq: 12,
        };
        assert_eq!(unread(&counter, Some(&ahead)), 0);
    }

    #[test]
    fn a_counter_survives_its_row() {
        for counter in [
            ChannelCounter::default(),
            ChannelCounter {
                seq: 4,
                last_message_id: Some(Id(77)),
            },
            ChannelCounter {
                seq: 9,
                last_message_id: None,
            },
        ] {
            assert_eq!(ChannelCounter::from_row(&counter.to_row()), counter);
        }
    }

    #[test]
    fn broad_mentions_name_role_holders_and_everyone_but_the_author() {
        let (author, bob) = (UserId([1; 32]), UserId([2; 32]));
        let roles = BroadMention {
            author_id: author,
            roles: vec![Id(5)],
            everyone: false,
        };
        assert!(roles.names(bob, &[Id(4), Id(5)]));
        assert!(!roles.names(bob, &[Id(4)]));
        assert!(!roles.names(author, &[Id(5)]));
        let everyone = BroadMention {
            everyone: true,
            roles: vec![],
            ..roles
        };
        assert!(everyone.names(bob, &[]));
        assert!(!everyone.names(author, &[]));
    }
}
