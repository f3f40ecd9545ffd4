//! Linking a new device from one already signed in (docs/design.md §2, mzchat's mailbox flow).
//!
//! 1. The new device makes its device key K_dev and opens a link: the server answers a
//!    short code to show (`XXXX-XXXX`, 40 bits) and a long secret mailbox id to poll.
//! 2. On a device already signed in, the user types the code; that device is shown the
//!    new device's key thumbprint (and name), the user checks it matches what the new
//!    device shows, and the device signs a device certificate for K_dev with K_id.
//!    It may add an opaque `key_transfer` blob (e.g. K_id encrypted to the new device),
//!    which the server only passes on.
//! 3. The new device, polling its mailbox, gets the certificate and signs in with the
//!    device-certificate grant. The link is then gone.
//!
//! Links live in memory for [`LINK_TTL_SECS`] (a restart drops the pending ones: the new
//! device opens another). Bounded: at most [`MAX_LINKS`] open, [`MAX_LINKS_PER_ADDRESS`]
//! per client address, and a signed-in user may look up at most [`LOOKUPS_PER_USER`] codes
//! per [`LINK_TTL_SECS`], so codes cannot be enumerated.

use crate::model::UserId;
use std::collections::HashMap;
use std::sync::Mutex;

/// How long a link stays open, seconds.
pub const LINK_TTL_SECS: u64 = 600;
/// Open links at most, server-wide.
pub const MAX_LINKS: usize = 1000;
/// Open links at most per client address.
pub const MAX_LINKS_PER_ADDRESS: usize = 5;
/// Code lookups and approvals per signed-in user per [`LINK_TTL_SECS`].
pub const LOOKUPS_PER_USER: u32 = 20;
/// Longest device name.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest `key_transfer` blob, bytes.
pub const MAX_KEY_TRANSFER_BYTES: usize = 16 * 1024;

/// Crockford's base32 alphabet: no I, L, O or U, so codes read aloud and typed well.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Why a link operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("no such device link (codes expire after 10 minutes)")]
    Unknown,
    #[error("too many device links are open; try again in a few minutes")]
    TooMany,
    #[error("too many device-link codes tried; wait a few minutes")]
    TooManyLookups,
    #[error("this device link was already approved")]
    AlreadyApproved,
    #[error("this device link is for another account")]
    OtherUser,
}

/// What an approved link delivers to the new device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The user who approved.
    pub user: UserId,
    /// Their device certificate for the new device's key.
    pub certificate: String,
    /// Opaque blob from the approving device.
    pub key_transfer: Option<String>,
}

/// One open link.
#[derive(Debug, Clone)]
pub struct Link {
    /// The code shown on the new device (`XXXXXXXX`, without the dash).
    pub code: String,
    /// RFC 7638 thumbprint of the new device's key.
    pub jkt: String,
    /// Its public JWK, as sent.
    pub device_key: serde_json::Value,
    /// A name the new device gave itself.
    pub device_name: String,
    /// The account the new device wants to join, if it said (only that user may approve).
    pub for_user: Option<UserId>,
    /// Opened at (Unix seconds).
    pub created_at: u64,
    address: String,
    approval: Option<Approval>,
}

impl Link {
    /// Seconds left.
    pub fn expires_in(&self, now: u64) -> u64 {
        (self.created_at + LINK_TTL_SECS).saturating_sub(now)
    }
}

/// What polling a mailbox finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mailbox {
    /// Not approved yet; seconds left.
    Waiting(u64),
    /// Approved: delivered once, the link is gone.
    Approved(Approval),
}

#[derive(Default)]
struct Inner {
    /// By mailbox id.
    links: HashMap<String, Link>,
    /// Code → mailbox id.
    codes: HashMap<String, String>,
    /// User → (window start, lookups in it).
    lookups: HashMap<UserId, (u64, u32)>,
    /// Device key thumbprint → (name, delivered at) of links handed out, so the device's
    /// sign-in that follows can carry the name it gave itself.
    delivered: HashMap<String, (String, u64)>,
}

/// The open links.
#[derive(Default)]
pub struct DeviceLinks {
    inner: Mutex<Inner>,
}

/// Normalizes a typed code: case-insensitive, dashes and spaces ignored, and the letters
/// Crockford reads as digits (O → 0, I and L → 1).
pub fn normalize_code(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect()
}

/// `XXXX-XXXX`, as shown.
pub fn display_code(code: &str) -> String {
    if code.len() == 8 {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_string()
    }
}

impl DeviceLinks {
    /// No open links.
    pub fn new() -> DeviceLinks {
        DeviceLinks::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sweep(inner: &mut Inner, now: u64) {
        inner
            .links
            .retain(|_, link| link.created_at + LINK_TTL_SECS > now);
        let Inner { links, codes, .. } = inner;
        codes.retain(|_, mailbox| links.contains_key(mailbox));
        inner
            .lookups
            .retain(|_, (start, _)| *start + LINK_TTL_SECS > now);
        inner
            .delivered
            .retain(|_, (_, at)| *at + LINK_TTL_SECS > now);
    }

    /// Opens a link for a device key; returns (code, mailbox id).
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &self,
        jkt: String,
        device_key: serde_json::Value,
        device_name: String,
        for_user: Option<UserId>,
        address: &str,
        now: u64,
    ) -> Result<(String, String), LinkError> {
        let mut inner = self.lock();
        Self::sweep(&mut inner, now);
        let from_here = inner
            .links
            .values()
            .filter(|l| l.address == address)
            .count();
        if inner.links.len() >= MAX_LINKS || from_here >= MAX_LINKS_PER_ADDRESS {
            return Err(LinkError::TooMany);
        }
        let code = loop {
            let mut bytes = [0u8; 8];
            crate::system::random_bytes(&mut bytes);
            let code: String = bytes
                .iter()
                .map(|b| ALPHABET[(*b & 31) as usize] as char)
                .collect();
            if !inner.codes.contains_key(&code) {
                break code;
            }
        };
        let mut secret = [0u8; 32];
        crate::system::random_bytes(&mut secret);
        let mailbox = crate::auth::jose::b64u(&secret);
        inner.codes.insert(code.clone(), mailbox.clone());
        inner.links.insert(
            mailbox.clone(),
            Link {
                code: code.clone(),
                jkt,
                device_key,
                device_name,
                for_user,
                created_at: now,
                address: address.to_string(),
                approval: None,
            },
        );
        Ok((code, mailbox))
    }

    /// Counts one lookup or approval by `user`.
    fn count_lookup(inner: &mut Inner, user: UserId, now: u64) -> Result<(), LinkError> {
        let entry = inner.lookups.entry(user).or_insert((now, 0));
        if entry.0 + LINK_TTL_SECS <= now {
            *entry = (now, 0);
        }
        if entry.1 >= LOOKUPS_PER_USER {
            return Err(LinkError::TooManyLookups);
        }
        entry.1 += 1;
        Ok(())
    }

    /// The open, unapproved link behind a typed code (counted against `user`).
    pub fn lookup(&self, typed: &str, user: UserId, now: u64) -> Result<Link, LinkError> {
        let mut inner = self.lock();
        Self::sweep(&mut inner, now);
        Self::count_lookup(&mut inner, user, now)?;
        let code = normalize_code(typed);
        let link = inner
            .codes
            .get(&code)
            .and_then(|mailbox| inner.links.get(mailbox))
            .ok_or(LinkError::Unknown)?;
        if link.for_user.is_some_and(|u| u != user) {
            return Err(LinkError::OtherUser);
        }
        if link.approval.is_some() {
            return Err(LinkError::AlreadyApproved);
        }
        Ok(link.clone())
    }

    /// Approves the link behind a code with a certificate `check` accepts for its
    /// thumbprint (counted against `user`).
    pub fn approve<E>(
        &self,
        typed: &str,
        user: UserId,
        now: u64,
        check: impl FnOnce(&Link) -> Result<Approval, E>,
    ) -> Result<Result<(), E>, LinkError> {
        let mut inner = self.lock();
        Self::sweep(&mut inner, now);
        Self::count_lookup(&mut inner, user, now)?;
        let code = normalize_code(typed);
        let mailbox = inner.codes.get(&code).cloned().ok_or(LinkError::Unknown)?;
        let link = inner.links.get_mut(&mailbox).ok_or(LinkError::Unknown)?;
        if link.for_user.is_some_and(|u| u != user) {
            return Err(LinkError::OtherUser);
        }
        if link.approval.is_some() {
            return Err(LinkError::AlreadyApproved);
        }
        Ok(check(link).map(|approval| link.approval = Some(approval)))
    }

    /// Polls a mailbox; an approval is handed out once and the link removed.
    pub fn poll(&self, mailbox: &str, now: u64) -> Result<Mailbox, LinkError> {
        let mut inner = self.lock();
        Self::sweep(&mut inner, now);
        let link = inner.links.get(mailbox).ok_or(LinkError::Unknown)?;
        if link.approval.is_none() {
            return Ok(Mailbox::Waiting(link.expires_in(now)));
        }
        let link = inner.links.remove(mailbox).ok_or(LinkError::Unknown)?;
        inner.codes.remove(&link.code);
        if !link.device_name.is_empty() && inner.delivered.len() < MAX_LINKS {
            inner
                .delivered
                .insert(link.jkt.clone(), (link.device_name.clone(), now));
        }
        Ok(Mailbox::Approved(link.approval.ok_or(LinkError::Unknown)?))
    }

    /// The name a recently linked device gave itself, once (for its device list entry).
    pub fn take_name(&self, jkt: &str) -> Option<String> {
        self.lock().delivered.remove(jkt).map(|(name, _)| name)
    }

    /// Closes a link (the new device gave up).
    pub fn cancel(&self, mailbox: &str) -> Result<(), LinkError> {
        let mut inner = self.lock();
        let link = inner.links.remove(mailbox).ok_or(LinkError::Unknown)?;
        inner.codes.remove(&link.code);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(b: u8) -> UserId {
        UserId([b; 32])
    }

    fn approval(link: &Link) -> Result<Approval, String> {
        Ok(Approval {
            user: user(1),
            certificate: format!("cert-for-{}", link.jkt),
            key_transfer: None,
        })
    }

    #[test]
    fn a_link_is_approved_once_and_delivered_once() {
        let links = DeviceLinks::new();
        let (code, mailbox) = links
            .open(
                "jkt1".into(),
                serde_json::json!({}),
                "phone".into(),
                None,
                "a",
                100,
            )
            .unwrap();
        assert_eq!(code.len(), 8);
        assert!(code.bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(links.poll(&mailbox, 101), Ok(Mailbox::Waiting(599)));
        // Typed loosely: lower case, with a dash, O for 0.
        let typed = display_code(&code).to_lowercase().replace('0', "o");
        assert_eq!(links.lookup(&typed, user(1), 102).unwrap().jkt, "jkt1");
        assert_eq!(links.approve(&typed, user(1), 103, approval), Ok(Ok(())));
        assert_eq!(
            links.approve(&typed, user(1), 104, approval),
            Err(LinkError::AlreadyApproved)
        );
        match links.poll(&mailbox, 105) {
            Ok(Mailbox::Approved(a)) => assert_eq!(a.certificate, "cert-for-jkt1"),
            other => panic!("{other:?}"),
        }
        assert_eq!(links.poll(&mailbox, 106), Err(LinkError::Unknown));
        assert_eq!(
            links.lookup(&code, user(1), 107).unwrap_err(),
            LinkError::Unknown
        );
    }

    #[test]
    fn a_refused_certificate_leaves_the_link_open() {
        let links = DeviceLinks::new();
        let (code, mailbox) = links
            .open(
                "jkt".into(),
                serde_json::json!({}),
                String::new(),
                None,
                "a",
                0,
            )
            .unwrap();
        assert_eq!(
            links.approve(&code, user(2), 1, |_| Err::<Approval, _>("bad")),
            Ok(Err("bad"))
        );
        assert_eq!(links.poll(&mailbox, 2), Ok(Mailbox::Waiting(598)));
    }

    #[test]
    fn links_expire_and_are_bounded() {
        let links = DeviceLinks::new();
        let (code, mailbox) = links
            .open(
                "j".into(),
                serde_json::json!({}),
                String::new(),
                None,
                "a",
                0,
            )
            .unwrap();
        assert_eq!(
            links.lookup(&code, user(1), LINK_TTL_SECS).unwrap_err(),
            LinkError::Unknown
        );
        assert_eq!(links.poll(&mailbox, LINK_TTL_SECS), Err(LinkError::Unknown));
        for _ in 0..MAX_LINKS_PER_ADDRESS {
            links
                .open(
                    "j".into(),
                    serde_json::json!({}),
                    String::new(),
                    None,
                    "b",
                    1000,
                )
                .unwrap();
        }
        assert_eq!(
            links
                .open(
                    "j".into(),
                    serde_json::json!({}),
                    String::new(),
                    None,
                    "b",
                    1000
                )
                .unwrap_err(),
            LinkError::TooMany
        );
        // Another address still may, and the first one again once its links expired.
        assert!(links
            .open(
                "j".into(),
                serde_json::json!({}),
                String::new(),
                None,
                "c",
                1000
            )
            .is_ok());
        assert!(links
            .open(
                "j".into(),
                serde_json::json!({}),
                String::new(),
                None,
                "b",
                1000 + LINK_TTL_SECS
            )
            .is_ok());
    }

    #[test]
    fn code_guessing_is_rate_limited_per_user() {
        let links = DeviceLinks::new();
        for _ in 0..LOOKUPS_PER_USER {
            assert_eq!(
                links.lookup("AAAA-AAAA", user(3), 10).unwrap_err(),
                LinkError::Unknown
            );
        }
        assert_eq!(
            links.lookup("AAAA-AAAA", user(3), 11).unwrap_err(),
            LinkError::TooManyLookups
        );
        assert_eq!(
            links.lookup("AAAA-AAAA", user(4), 11).unwrap_err(),
            LinkError::Unknown
        );
        assert_eq!(
            links
                .lookup("AAAA-AAAA", user(3), 10 + LINK_TTL_SECS)
                .unwrap_err(),
            LinkError::Unknown
        );
    }

    #[test]
    fn a_link_for_one_account_is_only_for_that_account() {
        let links = DeviceLinks::new();
        let (code, _) = links
            .open(
                "j".into(),
                serde_json::json!({}),
                String::new(),
                Some(user(1)),
                "a",
                0,
            )
            .unwrap();
        assert_eq!(
            links.lookup(&code, user(2), 1).unwrap_err(),
            LinkError::OtherUser
        );
        assert_eq!(
            links.approve(&code, user(2), 1, approval),
            Err(LinkError::OtherUser)
        );
        assert!(links.lookup(&code, user(1), 1).is_ok());
        assert_eq!(links.approve(&code, user(1), 1, approval), Ok(Ok(())));
    }

    #[test]
    fn cancelled_links_are_gone() {
        let links = DeviceLinks::new();
        let (code, mailbox) = links
            .open(
                "j".into(),
                serde_json::json!({}),
                String::new(),
                None,
                "a",
                0,
            )
            .unwrap();
        links.cancel(&mailbox).unwrap();
        assert_eq!(
            links.lookup(&code, user(1), 1).unwrap_err(),
            LinkError::Unknown
        );
        assert_eq!(links.cancel(&mailbox), Err(LinkError::Unknown));
    }
}
