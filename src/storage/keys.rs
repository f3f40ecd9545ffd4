//! Composite keys: fixed-width big-endian parts concatenated, so prefix scans run in order.
//! A table names its key shape with a [`KeyCodec`]; typed reads decode keys with it, so no
//! caller reads a key at a byte offset. An origin followed by another part ends with a 0
//! byte (origins never hold one), so one origin's rows are not mixed with those of a longer
//! origin that starts the same way; file ids are fixed-width hex and need none.

use crate::model::{Id, UserId};

/// Concatenates key parts.
fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// Key of one id.
fn id(a: Id) -> [u8; 8] {
    a.to_be()
}

/// Key of two ids.
fn id_id(a: Id, b: Id) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&a.to_be());
    out[8..].copy_from_slice(&b.to_be());
    out
}

/// Key of an id and a user.
fn id_user(a: Id, u: UserId) -> [u8; 40] {
    let mut out = [0; 40];
    out[..8].copy_from_slice(&a.to_be());
    out[8..].copy_from_slice(&u.0);
    out
}

/// Key of a user and an id.
fn user_id(u: UserId, a: Id) -> [u8; 40] {
    let mut out = [0; 40];
    out[..32].copy_from_slice(&u.0);
    out[32..].copy_from_slice(&a.to_be());
    out
}

/// Key of a reaction: message ‖ emoji length ‖ emoji ‖ user, so one message's reactions
/// group by emoji.
fn reaction(message: Id, emoji: &str, user: UserId) -> Vec<u8> {
    let len = [emoji.len().min(255) as u8];
    join(&[&message.to_be(), &len, emoji.as_bytes(), &user.0])
}

/// Splits a reaction key back into (emoji, user).
fn parse_reaction(key: &[u8]) -> Option<(String, UserId)> {
    let len = *key.get(8)? as usize;
    let emoji = std::str::from_utf8(key.get(9..9 + len)?).ok()?.to_string();
    let user: [u8; 32] = key.get(9 + len..)?.try_into().ok()?;
    Some((emoji, UserId(user)))
}

/// Reads a big-endian id at `offset`.
fn read_id(key: &[u8], offset: usize) -> Option<Id> {
    let bytes: [u8; 8] = key.get(offset..offset + 8)?.try_into().ok()?;
    Some(Id(u64::from_be_bytes(bytes)))
}

/// Reads a user id at `offset`.
fn read_user(key: &[u8], offset: usize) -> Option<UserId> {
    let bytes: [u8; 32] = key.get(offset..offset + 32)?.try_into().ok()?;
    Some(UserId(bytes))
}

/// The shape of a table's keys: how a key is written as bytes and read back.
pub trait KeyCodec {
    /// What a caller passes to name one row (borrowed where it can be).
    type Key<'a>;
    /// What typed reads return.
    type Owned;
    /// The key's bytes: an array for fixed-width shapes, so naming a row allocates nothing.
    type Bytes<'a>: AsRef<[u8]>;
    /// The key's bytes.
    fn encode(key: Self::Key<'_>) -> Self::Bytes<'_>;
    /// The key read back; `None` when the bytes do not have this shape.
    fn decode(bytes: &[u8]) -> Option<Self::Owned>;
}

/// A key shape whose rows can be scanned by a leading part `P` (the first part of a
/// composite key). The prefix's bytes are the first bytes of every key that starts so.
pub trait KeyPrefix<P>: KeyCodec {
    /// The prefix's bytes.
    fn encode_prefix(prefix: P) -> Vec<u8>;
}

/// Byte keys as they are (the shape of `META`'s names and `REFRESH_TOKEN`'s digests).
pub struct Raw;
/// One id.
pub struct IdKey;
/// Two ids: (guild, channel), (channel, message), ...
pub struct IdPair;
/// An id and a user: (guild, user).
pub struct IdUser;
/// A user.
pub struct UserKey;
/// A user and an id: (user, guild).
pub struct UserThenId;
/// A sequence number.
pub struct Seq;
/// A text: a name, a code, an origin, a file id.
pub struct Text;
/// An id and a text: (guild, invite code), (channel, file id).
pub struct IdText;
/// A user and a text: (user, origin), (user, device thumbprint).
pub struct UserText;
/// An origin ‖ 0 ‖ a user: (home, user).
pub struct OriginUser;
/// An origin ‖ 0 ‖ a number: (sender, call id).
pub struct OriginSeq;
/// A user ‖ origin ‖ 0 ‖ a number: (user, host, host's call id).
pub struct UserOriginSeq;
/// A user ‖ origin ‖ 0 ‖ a text: (user, host, token id).
pub struct UserOriginText;
/// A channel ‖ file id ‖ uploader: one upload (file ids are fixed-width hex, so no 0).
pub struct Upload;
/// A reaction: message ‖ emoji length ‖ emoji ‖ user (see [`reaction`]).
pub struct ReactionKey;
/// An id, a user and an id: (channel, user, message).
pub struct IdUserId;

impl KeyCodec for Raw {
    type Key<'a> = &'a [u8];
    type Owned = Vec<u8>;
    type Bytes<'a> = &'a [u8];
    fn encode(key: Self::Key<'_>) -> Self::Bytes<'_> {
        key
    }
    fn decode(bytes: &[u8]) -> Option<Vec<u8>> {
        Some(bytes.to_vec())
    }
}

impl KeyPrefix<&'_ [u8]> for Raw {
    fn encode_prefix(prefix: &[u8]) -> Vec<u8> {
        prefix.to_vec()
    }
}

/// The whole of `bytes` as an id.
fn whole_id(bytes: &[u8]) -> Option<Id> {
    (bytes.len() == 8).then(|| read_id(bytes, 0)).flatten()
}

/// The whole of `bytes` as a user.
fn whole_user(bytes: &[u8]) -> Option<UserId> {
    (bytes.len() == 32).then(|| read_user(bytes, 0)).flatten()
}

/// The whole of `bytes` as text.
fn whole_text(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_string)
}

/// Splits `origin ‖ 0 ‖ rest`.
fn split_origin(bytes: &[u8]) -> Option<(String, &[u8])> {
    let zero = bytes.iter().position(|&b| b == 0)?;
    Some((whole_text(&bytes[..zero])?, &bytes[zero + 1..]))
}

/// `origin ‖ 0`, the prefix of one origin's rows.
fn origin_prefix(origin: &str) -> Vec<u8> {
    join(&[origin.as_bytes(), &[0]])
}

impl KeyCodec for IdKey {
    type Key<'a> = Id;
    type Owned = Id;
    type Bytes<'a> = [u8; 8];
    fn encode(key: Self::Key<'_>) -> Self::Bytes<'_> {
        id(key)
    }
    fn decode(bytes: &[u8]) -> Option<Id> {
        whole_id(bytes)
    }
}

impl KeyCodec for IdPair {
    type Key<'a> = (Id, Id);
    type Owned = (Id, Id);
    type Bytes<'a> = [u8; 16];
    fn encode((a, b): Self::Key<'_>) -> Self::Bytes<'_> {
        id_id(a, b)
    }
    fn decode(bytes: &[u8]) -> Option<(Id, Id)> {
        (bytes.len() == 16).then_some((read_id(bytes, 0)?, read_id(bytes, 8)?))
    }
}

impl KeyPrefix<Id> for IdPair {
    fn encode_prefix(first: Id) -> Vec<u8> {
        id(first).to_vec()
    }
}

impl KeyCodec for IdUser {
    type Key<'a> = (Id, UserId);
    type Owned = (Id, UserId);
    type Bytes<'a> = [u8; 40];
    fn encode((a, u): Self::Key<'_>) -> Self::Bytes<'_> {
        id_user(a, u)
    }
    fn decode(bytes: &[u8]) -> Option<(Id, UserId)> {
        (bytes.len() == 40).then_some((read_id(bytes, 0)?, read_user(bytes, 8)?))
    }
}

impl KeyPrefix<Id> for IdUser {
    fn encode_prefix(first: Id) -> Vec<u8> {
        id(first).to_vec()
    }
}

impl KeyCodec for UserKey {
    type Key<'a> = UserId;
    type Owned = UserId;
    type Bytes<'a> = [u8; 32];
    fn encode(key: Self::Key<'_>) -> Self::Bytes<'_> {
        key.0
    }
    fn decode(bytes: &[u8]) -> Option<UserId> {
        whole_user(bytes)
    }
}

impl KeyCodec for UserThenId {
    type Key<'a> = (UserId, Id);
    type Owned = (UserId, Id);
    type Bytes<'a> = [u8; 40];
    fn encode((u, a): Self::Key<'_>) -> Self::Bytes<'_> {
        user_id(u, a)
    }
    fn decode(bytes: &[u8]) -> Option<(UserId, Id)> {
        (bytes.len() == 40).then_some((read_user(bytes, 0)?, read_id(bytes, 32)?))
    }
}

impl KeyPrefix<UserId> for UserThenId {
    fn encode_prefix(first: UserId) -> Vec<u8> {
        first.0.to_vec()
    }
}

impl KeyCodec for Seq {
    type Key<'a> = u64;
    type Owned = u64;
    type Bytes<'a> = [u8; 8];
    fn encode(key: Self::Key<'_>) -> Self::Bytes<'_> {
        key.to_be_bytes()
    }
    fn decode(bytes: &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(bytes.try_into().ok()?))
    }
}

impl KeyCodec for Text {
    type Key<'a> = &'a str;
    type Owned = String;
    type Bytes<'a> = &'a [u8];
    fn encode(key: Self::Key<'_>) -> Self::Bytes<'_> {
        key.as_bytes()
    }
    fn decode(bytes: &[u8]) -> Option<String> {
        whole_text(bytes)
    }
}

impl KeyCodec for IdText {
    type Key<'a> = (Id, &'a str);
    type Owned = (Id, String);
    type Bytes<'a> = Vec<u8>;
    fn encode((a, text): Self::Key<'_>) -> Self::Bytes<'_> {
        join(&[&id(a), text.as_bytes()])
    }
    fn decode(bytes: &[u8]) -> Option<(Id, String)> {
        Some((read_id(bytes, 0)?, whole_text(bytes.get(8..)?)?))
    }
}

impl KeyPrefix<Id> for IdText {
    fn encode_prefix(first: Id) -> Vec<u8> {
        id(first).to_vec()
    }
}

impl KeyCodec for UserText {
    type Key<'a> = (UserId, &'a str);
    type Owned = (UserId, String);
    type Bytes<'a> = Vec<u8>;
    fn encode((u, text): Self::Key<'_>) -> Self::Bytes<'_> {
        join(&[&u.0, text.as_bytes()])
    }
    fn decode(bytes: &[u8]) -> Option<(UserId, String)> {
        Some((read_user(bytes, 0)?, whole_text(bytes.get(32..)?)?))
    }
}

impl KeyPrefix<UserId> for UserText {
    fn encode_prefix(first: UserId) -> Vec<u8> {
        first.0.to_vec()
    }
}

impl KeyCodec for OriginUser {
    type Key<'a> = (&'a str, UserId);
    type Owned = (String, UserId);
    type Bytes<'a> = Vec<u8>;
    fn encode((origin, u): Self::Key<'_>) -> Self::Bytes<'_> {
        join(&[&origin_prefix(origin), &u.0])
    }
    fn decode(bytes: &[u8]) -> Option<(String, UserId)> {
        let (origin, rest) = split_origin(bytes)?;
        Some((origin, whole_user(rest)?))
    }
}

impl KeyPrefix<&'_ str> for OriginUser {
    fn encode_prefix(origin: &str) -> Vec<u8> {
        origin_prefix(origin)
    }
}

impl KeyCodec for OriginSeq {
    type Key<'a> = (&'a str, u64);
    type Owned = (String, u64);
    type Bytes<'a> = Vec<u8>;
    fn encode((origin, n): Self::Key<'_>) -> Self::Bytes<'_> {
        join(&[&origin_prefix(origin), &n.to_be_bytes()])
    }
    fn decode(bytes: &[u8]) -> Option<(String, u64)> {
        let (origin, rest) = split_origin(bytes)?;
        Some((origin, u64::from_be_bytes(rest.try_into().ok()?)))
    }
}

impl KeyPrefix<&'_ str> for OriginSeq {
    fn encode_prefix(origin: &str) -> Vec<u8> {
        origin_prefix(origin)
    }
}

impl KeyCodec for UserOriginSeq {
    type Key<'a> = (UserId, &'a str, u64);
    type Owned = (UserId, String, u64);
    type Bytes<'a> = Vec<u8>;
    fn encode((u, origin, n): Self::Key<'_>) -> Self::Bytes<'_> {
        join(&[&u.0, &origin_prefix(origin), &n.to_be_bytes()])
    }
    fn decode(bytes: &[u8]) -> Option<(UserId, String, u64)> {
        let (origin, rest) = split_origin(bytes.get(32..)?)?;
        Some((
            read_user(bytes, 0)?,
            origin,
            u64::from_be_bytes(rest.try_into().ok()?),
        ))
    }
}

impl KeyPrefix<UserId> for UserOriginSeq {
    fn encode_prefix(user: UserId) -> Vec<u8> {
        user.0.to_vec()
    }
}

impl KeyPrefix<(UserId, &'_ str)> for UserOriginSeq {
    fn encode_prefix((user, origin): (UserId, &str)) -> Vec<u8> {
        join(&[&user.0, &origin_prefix(origin)])
    }
}

impl KeyCodec for UserOriginText {
    type Key<'a> = (UserId, &'a str, &'a str);
    type Owned = (UserId, String, String);
    type Bytes<'a> = Vec<u8>;
    fn encode((u, origin, text): Self::Key<'_>) -> Self::Bytes<'_> {
        join(&[&u.0, &origin_prefix(origin), text.as_bytes()])
    }
    fn decode(bytes: &[u8]) -> Option<(UserId, String, String)> {
        let (origin, rest) = split_origin(bytes.get(32..)?)?;
        Some((read_user(bytes, 0)?, origin, whole_text(rest)?))
    }
}

impl KeyPrefix<UserId> for UserOriginText {
    fn encode_prefix(user: UserId) -> Vec<u8> {
        user.0.to_vec()
    }
}

impl KeyPrefix<(UserId, &'_ str)> for UserOriginText {
    fn encode_prefix((user, origin): (UserId, &str)) -> Vec<u8> {
        join(&[&user.0, &origin_prefix(origin)])
    }
}

impl KeyCodec for Upload {
    type Key<'a> = (Id, &'a str, UserId);
    type Owned = (Id, String, UserId);
    type Bytes<'a> = Vec<u8>;
    fn encode((channel, file_id, uploader): Self::Key<'_>) -> Self::Bytes<'_> {
        join(&[&id(channel), file_id.as_bytes(), &uploader.0])
    }
    fn decode(bytes: &[u8]) -> Option<(Id, String, UserId)> {
        let user_at = bytes.len().checked_sub(32).filter(|&at| at >= 8)?;
        Some((
            read_id(bytes, 0)?,
            whole_text(&bytes[8..user_at])?,
            read_user(bytes, user_at)?,
        ))
    }
}

impl KeyPrefix<Id> for Upload {
    fn encode_prefix(channel: Id) -> Vec<u8> {
        id(channel).to_vec()
    }
}

impl KeyPrefix<(Id, &'_ str)> for Upload {
    fn encode_prefix((channel, file_id): (Id, &str)) -> Vec<u8> {
        join(&[&id(channel), file_id.as_bytes()])
    }
}

impl KeyCodec for ReactionKey {
    type Key<'a> = (Id, &'a str, UserId);
    type Owned = (Id, String, UserId);
    type Bytes<'a> = Vec<u8>;
    fn encode((message, emoji, user): Self::Key<'_>) -> Self::Bytes<'_> {
        reaction(message, emoji, user)
    }
    fn decode(bytes: &[u8]) -> Option<(Id, String, UserId)> {
        let (emoji, user) = parse_reaction(bytes)?;
        Some((read_id(bytes, 0)?, emoji, user))
    }
}

impl KeyPrefix<Id> for ReactionKey {
    fn encode_prefix(message: Id) -> Vec<u8> {
        id(message).to_vec()
    }
}

impl KeyCodec for IdUserId {
    type Key<'a> = (Id, UserId, Id);
    type Owned = (Id, UserId, Id);
    type Bytes<'a> = [u8; 48];
    fn encode((a, u, b): Self::Key<'_>) -> Self::Bytes<'_> {
        let mut out = [0; 48];
        out[..40].copy_from_slice(&id_user(a, u));
        out[40..].copy_from_slice(&b.to_be());
        out
    }
    fn decode(bytes: &[u8]) -> Option<(Id, UserId, Id)> {
        (bytes.len() == 48).then_some((
            read_id(bytes, 0)?,
            read_user(bytes, 8)?,
            read_id(bytes, 40)?,
        ))
    }
}

impl KeyPrefix<Id> for IdUserId {
    fn encode_prefix(first: Id) -> Vec<u8> {
        id(first).to_vec()
    }
}

impl KeyPrefix<(Id, UserId)> for IdUserId {
    fn encode_prefix((a, u): (Id, UserId)) -> Vec<u8> {
        id_user(a, u).to_vec()
    }
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

    /// Encodes `key` and checks that it decodes to `owned`.
    fn round_trip<K: KeyCodec>(key: K::Key<'_>, owned: K::Owned) -> Vec<u8>
    where
        K::Owned: PartialEq + std::fmt::Debug,
    {
        let bytes = K::encode(key).as_ref().to_vec();
        assert_eq!(K::decode(&bytes), Some(owned));
        bytes
    }

    /// Checks that every cut of a fixed-width key, and the key with a byte more, decode to
    /// `None`.
    fn rejects_other_lengths<K: KeyCodec>(bytes: &[u8]) {
        for cut in 0..bytes.len() {
            assert!(K::decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(K::decode(&long).is_none());
    }

    #[test]
    fn fixed_width_keys_round_trip_and_reject_other_lengths() {
        let (a, b, u) = (Id(7), Id(1 << 40), UserId([9; 32]));
        rejects_other_lengths::<IdKey>(&round_trip::<IdKey>(a, a));
        rejects_other_lengths::<IdPair>(&round_trip::<IdPair>((a, b), (a, b)));
        rejects_other_lengths::<IdUser>(&round_trip::<IdUser>((a, u), (a, u)));
        rejects_other_lengths::<UserKey>(&round_trip::<UserKey>(u, u));
        rejects_other_lengths::<UserThenId>(&round_trip::<UserThenId>((u, b), (u, b)));
        rejects_other_lengths::<Seq>(&round_trip::<Seq>(42, 42));
        rejects_other_lengths::<IdUserId>(&round_trip::<IdUserId>((a, u, b), (a, u, b)));
    }

    #[test]
    fn keys_with_text_round_trip_and_reject_garbled_bytes() {
        let (a, u) = (Id(3), UserId([4; 32]));
        round_trip::<Raw>(b"server_key", b"server_key".to_vec());
        round_trip::<Text>("alice", "alice".to_string());
        round_trip::<IdText>((a, "code"), (a, "code".to_string()));
        round_trip::<UserText>((u, "https://b.example"), (u, "https://b.example".into()));
        round_trip::<OriginUser>(("https://b.example", u), ("https://b.example".into(), u));
        round_trip::<OriginSeq>(("https://b.example", 9), ("https://b.example".into(), 9));
        round_trip::<UserOriginSeq>((u, "https://h", 5), (u, "https://h".into(), 5));
        round_trip::<UserOriginText>(
            (u, "https://h", "jti"),
            (u, "https://h".into(), "jti".into()),
        );
        let file = "ab".repeat(32);
        round_trip::<Upload>((a, &file, u), (a, file.clone(), u));
        round_trip::<ReactionKey>((a, "👍", u), (a, "👍".to_string(), u));

        assert_eq!(Text::decode(&[0xff, 0xfe]), None);
        assert_eq!(IdText::decode(&[0; 7]), None);
        assert_eq!(IdText::decode(&[0, 0, 0, 0, 0, 0, 0, 1, 0xff]), None);
        assert_eq!(UserText::decode(&[0; 31]), None);
        assert_eq!(OriginUser::decode(b"no zero here"), None);
        assert_eq!(OriginUser::decode(b"https://b.example\0short"), None);
        assert_eq!(OriginSeq::decode(b"https://b.example\0\0\0"), None);
        assert_eq!(Upload::decode(&[0; 39]), None);
        assert_eq!(UserOriginSeq::decode(&[1; 40]), None);
        assert_eq!(UserOriginText::decode(&[1; 31]), None);
        assert_eq!(ReactionKey::decode(&[0; 9]), None);
        assert_eq!(
            ReactionKey::decode(&[0, 0, 0, 0, 0, 0, 0, 1, 200, b'x']),
            None
        );
    }

    /// Checks that `old` (a key as callers built it by hand before keys were typed) is the
    /// codec's encoding of `key` and decodes to `owned`: databases written then still read.
    fn reads_old_key<K: KeyCodec>(old: &[u8], key: K::Key<'_>, owned: K::Owned)
    where
        K::Owned: PartialEq + std::fmt::Debug,
    {
        assert_eq!(K::encode(key).as_ref(), old);
        assert_eq!(K::decode(old), Some(owned));
    }

    #[test]
    fn keys_built_the_old_way_read_the_new_way() {
        let (g, c, u) = (Id(0x0102_0304_0506_0708), Id(300), UserId([7; 32]));
        let (host, file) = ("https://h.example", "cd".repeat(32));
        reads_old_key::<IdKey>(&g.to_be(), g, g);
        reads_old_key::<IdPair>(&[g.to_be(), c.to_be()].concat(), (g, c), (g, c));
        reads_old_key::<IdUser>(&[&g.to_be()[..], &u.0].concat(), (g, u), (g, u));
        reads_old_key::<UserThenId>(&[&u.0[..], &g.to_be()].concat(), (u, g), (u, g));
        reads_old_key::<UserKey>(&u.0, u, u);
        reads_old_key::<Seq>(&42u64.to_be_bytes(), 42, 42);
        reads_old_key::<Text>(b"alice", "alice", "alice".into());
        reads_old_key::<IdText>(
            &[&g.to_be()[..], b"code"].concat(),
            (g, "code"),
            (g, "code".into()),
        );
        reads_old_key::<UserText>(
            &[&u.0[..], b"jkt-thumbprint"].concat(),
            (u, "jkt-thumbprint"),
            (u, "jkt-thumbprint".into()),
        );
        reads_old_key::<OriginUser>(
            &[host.as_bytes(), &[0], &u.0].concat(),
            (host, u),
            (host.into(), u),
        );
        reads_old_key::<OriginSeq>(
            &[host.as_bytes(), &[0], &9u64.to_be_bytes()].concat(),
            (host, 9),
            (host.into(), 9),
        );
        reads_old_key::<UserOriginSeq>(
            &[&u.0[..], host.as_bytes(), &[0], &5u64.to_be_bytes()].concat(),
            (u, host, 5),
            (u, host.into(), 5),
        );
        reads_old_key::<UserOriginText>(
            &[&u.0[..], host.as_bytes(), &[0], b"jti"].concat(),
            (u, host, "jti"),
            (u, host.into(), "jti".into()),
        );
        reads_old_key::<Upload>(
            &[&c.to_be()[..], file.as_bytes(), &u.0].concat(),
            (c, &file, u),
            (c, file.clone(), u),
        );
        reads_old_key::<ReactionKey>(
            &[&g.to_be()[..], &[4], "👍".as_bytes(), &u.0].concat(),
            (g, "👍", u),
            (g, "👍".into(), u),
        );
        // The prefixes callers scanned by.
        assert_eq!(
            OriginUser::encode_prefix(host),
            [host.as_bytes(), &[0]].concat()
        );
        assert_eq!(
            UserOriginText::encode_prefix((u, host)),
            [&u.0[..], host.as_bytes(), &[0]].concat()
        );
        assert_eq!(
            Upload::encode_prefix((c, file.as_str())),
            [&c.to_be()[..], file.as_bytes()].concat()
        );
        assert_eq!(UserText::encode_prefix(u), u.0);
        assert_eq!(IdUser::encode_prefix(g), g.to_be());
    }

    #[test]
    fn prefixes_start_their_keys_and_keep_order() {
        let (a, b, u) = (Id(1), Id(2), UserId([5; 32]));
        let cases = [
            (IdPair::encode_prefix(a), IdPair::encode((a, b)).to_vec()),
            (IdUser::encode_prefix(a), IdUser::encode((a, u)).to_vec()),
            (
                UserThenId::encode_prefix(u),
                UserThenId::encode((u, a)).to_vec(),
            ),
            (IdText::encode_prefix(a), IdText::encode((a, "x")).to_vec()),
            (
                UserText::encode_prefix(u),
                UserText::encode((u, "x")).to_vec(),
            ),
            (
                OriginUser::encode_prefix("o"),
                OriginUser::encode(("o", u)).to_vec(),
            ),
            (
                OriginSeq::encode_prefix("o"),
                OriginSeq::encode(("o", 1)).to_vec(),
            ),
            (
                Upload::encode_prefix(a),
                Upload::encode((a, "f", u)).to_vec(),
            ),
            (
                Upload::encode_prefix((a, "f")),
                Upload::encode((a, "f", u)).to_vec(),
            ),
            (
                ReactionKey::encode_prefix(a),
                ReactionKey::encode((a, "x", u)).to_vec(),
            ),
            (
                UserOriginSeq::encode_prefix(u),
                UserOriginSeq::encode((u, "o", 1)).to_vec(),
            ),
            (
                UserOriginSeq::encode_prefix((u, "o")),
                UserOriginSeq::encode((u, "o", 1)).to_vec(),
            ),
            (
                UserOriginText::encode_prefix((u, "o")),
                UserOriginText::encode((u, "o", "t")).to_vec(),
            ),
        ];
        for (prefix, key) in cases {
            assert!(key.starts_with(&prefix));
        }
        // Big-endian parts: numeric order is byte order, first part first.
        assert!(IdPair::encode((a, Id(300))) < IdPair::encode((b, Id(1))));
        assert!(IdPair::encode((a, Id(2))) < IdPair::encode((a, Id(300))));
        assert!(Seq::encode(255) < Seq::encode(256));
        assert!(OriginSeq::encode(("o", 1 << 20)) < OriginSeq::encode(("o", 1 << 21)));
        // One origin's rows do not take in a longer origin that starts the same way.
        let longer = OriginSeq::encode(("o.example", 1));
        assert!(!longer.starts_with(&OriginSeq::encode_prefix("o")));
    }
}
