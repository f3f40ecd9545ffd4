//! Composite keys: fixed-width big-endian parts concatenated, so prefix scans run in order.

use crate::model::{Id, UserId};

/// Concatenates key parts.
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// Key of one id.
pub fn id(a: Id) -> [u8; 8] {
    a.to_be()
}

/// Key of two ids.
pub fn id_id(a: Id, b: Id) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&a.to_be());
    out[8..].copy_from_slice(&b.to_be());
    out
}

/// Key of an id and a user.
pub fn id_user(a: Id, u: UserId) -> [u8; 40] {
    let mut out = [0; 40];
    out[..8].copy_from_slice(&a.to_be());
    out[8..].copy_from_slice(&u.0);
    out
}

/// Key of a user and an id.
pub fn user_id(u: UserId, a: Id) -> [u8; 40] {
    let mut out = [0; 40];
    out[..32].copy_from_slice(&u.0);
    out[32..].copy_from_slice(&a.to_be());
    out
}

/// Key of a reaction: message ‖ emoji length ‖ emoji ‖ user, so one message's reactions
/// group by emoji.
pub fn reaction(message: Id, emoji: &str, user: UserId) -> Vec<u8> {
    let len = [emoji.len().min(255) as u8];
    join(&[&message.to_be(), &len, emoji.as_bytes(), &user.0])
}

/// Splits a reaction key back into (emoji, user).
pub fn parse_reaction(key: &[u8]) -> Option<(String, UserId)> {
    let len = *key.get(8)? as usize;
    let emoji = std::str::from_utf8(key.get(9..9 + len)?).ok()?.to_string();
    let user: [u8; 32] = key.get(9 + len..)?.try_into().ok()?;
    Some((emoji, UserId(user)))
}

/// Reads a big-endian id at `offset`.
pub fn read_id(key: &[u8], offset: usize) -> Option<Id> {
    let bytes: [u8; 8] = key.get(offset..offset + 8)?.try_into().ok()?;
    Some(Id(u64::from_be_bytes(bytes)))
}

/// Reads a user id at `offset`.
pub fn read_user(key: &[u8], offset: usize) -> Option<UserId> {
    let bytes: [u8; 32] = key.get(offset..offset + 32)?.try_into().ok()?;
    Some(UserId(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_keys_sort_by_their_parts() {
        let a = id_id(Id(1), Id(300));
        let b = id_id(Id(2), Id(1));
        let c = id_id(Id(1), Id(2));
        assert!(c < a && a < b);
    }

    #[test]
    fn reaction_keys_round_trip() {
        let key = reaction(Id(5), "👍", UserId([3; 32]));
        assert_eq!(
            parse_reaction(&key),
            Some(("👍".to_string(), UserId([3; 32])))
        );
        assert_eq!(parse_reaction(&key[..10]), None);
    }
}
