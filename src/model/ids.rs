//! Identifiers: time-ordered 64-bit ids for server-made objects, and user ids that are
//! Ed25519 public keys.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Milliseconds since 2024-01-01T00:00:00Z, the id epoch.
const ID_EPOCH_MS: u64 = 1_704_067_200_000;
/// Low bits of an id hold a per-millisecond sequence.
const SEQUENCE_BITS: u32 = 20;

/// A time-ordered id for guilds, channels, messages, roles and files made on this server.
/// Serialized to JSON as a decimal string, since JavaScript numbers lose precision past 2^53.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Id(pub u64);

impl Id {
    /// The id as 8 big-endian bytes, for composite keys that scan in order.
    pub fn to_be(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Unix time in milliseconds at which the id was made.
    pub fn timestamp_ms(self) -> u64 {
        (self.0 >> SEQUENCE_BITS) + ID_EPOCH_MS
    }

    /// Parses the decimal form used in URLs and JSON.
    pub fn parse(text: &str) -> Option<Id> {
        if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok().map(Id)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(&self.0)
        } else {
            s.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Either {
                Text(String),
                Number(u64),
            }
            match Either::deserialize(d)? {
                Either::Number(n) => Ok(Id(n)),
                Either::Text(t) => {
                    Id::parse(&t).ok_or_else(|| serde::de::Error::custom("invalid id"))
                }
            }
        } else {
            u64::deserialize(d).map(Id)
        }
    }
}

/// Makes ids that are unique and strictly increasing within one server process, and
/// increasing across restarts as long as the clock does not go back by more than the
/// ids already handed out (the last id is reloaded at start by the caller).
#[derive(Debug, Default)]
pub struct IdGenerator {
    last: AtomicU64,
}

impl IdGenerator {
    /// A generator that will never return an id at or below `floor`.
    pub fn new(floor: u64) -> Self {
        IdGenerator {
            last: AtomicU64::new(floor),
        }
    }

    /// The next id for the given wall-clock time in milliseconds.
    pub fn next(&self, now_ms: u64) -> Id {
        let from_clock = now_ms.saturating_sub(ID_EPOCH_MS) << SEQUENCE_BITS;
        let mut current = self.last.load(Ordering::Relaxed);
        loop {
            let candidate = from_clock.max(current + 1);
            match self.last.compare_exchange_weak(
                current,
                candidate,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Id(candidate),
                Err(seen) => current = seen,
            }
        }
    }
}

/// A user id: the base64url (unpadded) Ed25519 public key of the user's identity key K_id.
/// Stored in keys as the raw 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(pub [u8; 32]);

impl Serialize for UserId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            UserId::parse(&text).ok_or_else(|| serde::de::Error::custom("invalid user id"))
        } else {
            <[u8; 32]>::deserialize(d).map(UserId)
        }
    }
}

impl UserId {
    /// Parses the text form; checks only the encoding (43 base64url characters).
    pub fn parse(text: &str) -> Option<UserId> {
        use base64::Engine;
        if text.len() != 43 {
            return None;
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        bytes.try_into().ok().map(UserId)
    }

    /// The text form used in JSON and URLs.
    pub fn to_text(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.to_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_even_when_the_clock_stalls() {
        let ids = IdGenerator::new(0);
        let a = ids.next(ID_EPOCH_MS + 1000);
        let b = ids.next(ID_EPOCH_MS + 1000);
        let c = ids.next(ID_EPOCH_MS + 999);
        assert!(a < b && b < c);
        assert_eq!(a.timestamp_ms(), ID_EPOCH_MS + 1000);
    }

    #[test]
    fn ids_stay_above_the_floor_when_the_clock_is_behind() {
        let floor = (ID_EPOCH_MS + 10_000 - ID_EPOCH_MS) << SEQUENCE_BITS;
        let ids = IdGenerator::new(floor);
        assert!(ids.next(ID_EPOCH_MS + 5).0 > floor);
        assert!(ids.next(0).0 > floor + 1);
    }

    #[test]
    fn id_text_round_trip_and_rejects_junk() {
        assert_eq!(Id::parse("123"), Some(Id(123)));
        assert_eq!(Id::parse("-1"), None);
        assert_eq!(Id::parse(""), None);
        assert_eq!(Id::parse("99999999999999999999999"), None);
        let json = serde_json::to_string(&Id(42)).unwrap();
        assert_eq!(json, "\"42\"");
        let back: Id = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Id(42));
    }

    #[test]
    fn user_id_text_round_trip() {
        let id = UserId([7; 32]);
        assert_eq!(UserId::parse(&id.to_text()), Some(id));
        assert_eq!(UserId::parse("short"), None);
    }
}
