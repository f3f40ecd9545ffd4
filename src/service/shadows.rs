//! Shadow accounts: the account a user homed elsewhere gets here on their own evidence (a
//! device certificate naming the home), VerifyUser on both sides (the home's answer, and
//! the host applying it), and what a home announces about its users (`user_created`,
//! `user_deleted`, `profile_updated`). The profiles themselves are read in
//! `service::profiles`; keeping them fresh is `service::refresh`.
//!
//! A profile's `version` is an id from the home's generator (the call id, or a fresh id in
//! VerifyUser's answer), so a late retry never overwrites a newer profile.

use super::inbox::first_delivery;
use super::lifecycle::{self, bury, deleted_by_home, remove_user_everywhere};
use super::migration::MovedAnswer;
use super::outbox::{queue_verify, UserRef};
use super::profiles::PublicUser;
use super::profiles::{document, emit_user_update, optional_text, version, ProfileDocument};
use super::{remote_users, Error, Services};
use crate::model::*;
use crate::storage::{tables::*, StoreError, Tx};
use crate::system::now;
use serde::Deserialize;

/// VerifyUser's answer from a home: `{user, push_token, version}` (read leniently, as a
/// [`ProfileDocument`] is).
#[derive(Debug, Default, Deserialize)]
struct VerifyUserAnswer {
    /// The user's profile.
    #[serde(default, deserialize_with = "document")]
    user: ProfileDocument,
    /// The Push Delegation Token for this host.
    #[serde(default, deserialize_with = "optional_text")]
    push_token: Option<String>,
    /// The profile's version.
    #[serde(default, deserialize_with = "version")]
    version: u64,
}

/// Applies a profile from `home` at `version` to a shadow account: notes that the profile
/// was confirmed now, and (if the user has not unlinked it and it is not older than what
/// was applied) takes it over. Returns whether the shadow changed.
fn apply_home_profile(
    tx: &Tx,
    shadow: &mut User,
    home: &str,
    version: u64,
    profile: &ProfileDocument,
) -> Result<bool, StoreError> {
    let mut state = tx.get(SHADOW_SYNC, shadow.id)?.unwrap_or_default();
    if state.home != home {
        state = ShadowSync {
            home: home.to_string(),
            pending_call: state.pending_call,
            ..ShadowSync::default()
        };
    }
    let newer = version >= state.version;
    state.synced_at = now();
    let mut changed = false;
    if newer {
        state.version = version;
        if shadow.profile_synced {
            let (username, fresh) = profile.cleaned();
            if shadow.profile != fresh || shadow.username != username {
                shadow.profile = fresh;
                shadow.username = username;
                tx.put(USER, shadow.id, shadow)?;
                emit_user_update(tx, shadow)?;
                changed = true;
            }
        }
    }
    tx.put(SHADOW_SYNC, shadow.id, &state)?;
    Ok(changed)
}

/// Applies VerifyUser's answer, in the commit that removes the call from the outbox.
pub fn verify_user_answered(
    tx: &Tx,
    item: &OutboxItem,
    status: u16,
    body: &[u8],
) -> Result<(), StoreError> {
    let Ok(request) = serde_json::from_str::<UserRef>(&item.body) else {
        return Ok(());
    };
    let user = request.user_id;
    let Some(mut shadow) = tx.get(USER, user)? else {
        return Ok(());
    };
    if shadow.homeserver != item.target {
        // Migrated meanwhile: this answer is no longer the authority.
        return Ok(());
    }
    if status == 404 {
        // The home says no such user: they go, and a tombstone refuses the same claim
        // until that home announces the user (`user_created`).
        remove_user_everywhere(tx, user)?;
        bury(tx, user, &item.target, 0)?;
        return Ok(());
    }
    if status == 410 {
        let answer: MovedAnswer = serde_json::from_slice(body).unwrap_or_default();
        if super::migration::follow_move(tx, &mut shadow, &item.target, answer.proof())? {
            return Ok(());
        }
    }
    let mut state = tx.get(SHADOW_SYNC, user)?.unwrap_or_default();
    if state.pending_call == Some(item.id) {
        state.pending_call = None;
        tx.put(SHADOW_SYNC, user, &state)?;
    }
    if !(200..300).contains(&status) {
        // Refused for good: try again after the refresh age, not at every lookup.
        state.synced_at = now();
        tx.put(SHADOW_SYNC, user, &state)?;
        return Ok(());
    }
    let answer: VerifyUserAnswer = serde_json::from_slice(body).unwrap_or_default();
    apply_home_profile(tx, &mut shadow, &item.target, answer.version, &answer.user)?;
    if let Some(token) = answer.push_token.filter(|t| t.len() <= 4096) {
        tx.put(PUSH_DELEGATION, user, &token)?;
    }
    Ok(())
}

/// What a client shows, the first time it uses this server with a peer's token, to prove
/// which server is its user's home: the device certificate K_id signed for the key that
/// signs the request's DPoP proof. A peer's token alone is only that peer's word.
#[derive(Debug, Clone, Copy)]
pub struct HomeEvidence<'a> {
    /// The device certificate (compact JWS), if the client sent one.
    pub certificate: Option<&'a str>,
    /// Thumbprint of the device key the request is proven with.
    pub jkt: &'a str,
}

/// Checks that `evidence` is K_id's word that `user`, on device `evidence.jkt`, is homed at
/// `home`.
fn check_home_evidence(user: UserId, home: &str, evidence: HomeEvidence<'_>) -> Result<(), Error> {
    let unproven = |why: String| {
        Error::HomeNotProven(format!(
            "{why}: the first request with a token of {home} must carry the device \
             certificate ({}) that the user's identity key signed naming {home} as home",
            crate::auth::device_cert::HEADER
        ))
    };
    let certificate = evidence
        .certificate
        .ok_or_else(|| unproven("no device certificate".into()))?;
    let cert = crate::auth::device_cert::verify_device_certificate(certificate, now())
        .map_err(|e| unproven(e.to_string()))?;
    if UserId::parse(&cert.sub) != Some(user) {
        return Err(unproven("the certificate is for another user".into()));
    }
    if cert.jkt != evidence.jkt {
        return Err(unproven(
            "the certificate is for another device key than the DPoP proof".into(),
        ));
    }
    if crate::origins::normalize_origin(&cert.homeserver)
        .ok()
        .as_deref()
        != Some(home)
    {
        return Err(unproven(format!(
            "the certificate names {} as home",
            cert.homeserver
        )));
    }
    Ok(())
}

/// Whether `from` may speak for `user` here: not a user homed here, not a shadow of a
/// user homed elsewhere, not a user the directory holds for another home (unless `proven`
/// by the user's certificate, against an entry that was not). Returns the refusal, if any.
fn check_home(
    tx: &Tx,
    user: UserId,
    from: &str,
    proven: bool,
) -> Result<Option<String>, StoreError> {
    if let Some(u) = tx.get(USER, user)? {
        if u.homeserver.is_empty() {
            return Ok(Some("this user is homed here".into()));
        }
        if u.homeserver != from {
            return Ok(Some(format!(
                "this user is homed at {}, not {from}",
                u.homeserver
            )));
        }
    } else if let Some(entry) = tx.get(DIRECTORY, user)? {
        let displaces = proven && !remote_users::proven_home(tx, user, &entry.home)?;
        if entry.home != from && !displaces {
            return Ok(Some(format!(
                "this user is homed at {}, not {from}",
                entry.home
            )));
        }
    }
    Ok(None)
}

/// Records a profile the user's home `from` announced (call `id`) in the directory.
fn record_announced(
    tx: &Tx,
    user: UserId,
    from: &str,
    id: u64,
    profile: &ProfileDocument,
    cap: usize,
) -> Result<bool, StoreError> {
    let (username, profile) = profile.cleaned();
    remote_users::record(
        tx,
        &RemoteUser {
            id: user,
            home: from.to_string(),
            username,
            profile,
            version: id,
            updated_at: now(),
        },
        cap,
    )
}

/// What a home's announcement about one of its users (`user_created`, `user_deleted`,
/// `profile_updated`) came to.
#[derive(Debug)]
pub enum Announced {
    /// The sender is not the user's home here; the text says why.
    NotHome(String),
    /// Handled: whether it changed something (recorded, removed, applied).
    Done(bool),
}

/// What VerifyUser answers about a user.
#[derive(Debug)]
pub enum Verified {
    /// The user is homed here: their profile, a Push Delegation Token for the asking
    /// host (none if the user revoked push for it), and the profile's version.
    Homed {
        /// The profile.
        user: PublicUser,
        /// The Push Delegation Token.
        push_token: Option<String>,
        /// The profile's version.
        version: Id,
    },
    /// The user moved away with this Migration Proof.
    Moved(MigrationRecord),
    /// No such user homed here.
    Unknown,
}

impl Services {
    /// Makes sure a remote user has a shadow account here homed at `home`, queueing
    /// VerifyUser to their home the first time. A new shadow is bound to its home only on
    /// the user's own evidence (a device certificate signed by K_id naming that home),
    /// never on a peer's word: so a peer cannot claim a user it does not home. Fails if
    /// the user is known here with another home (a move is followed only on a Migration
    /// Proof: VerifyUser to the known home is queued, which answers "moved" with it), or
    /// if that home deleted them.
    pub async fn ensure_shadow(
        &self,
        user: UserId,
        home: &str,
        evidence: HomeEvidence<'_>,
    ) -> Result<(), Error> {
        let (known, deleted) = self.store.read(|tx| {
            Ok::<_, StoreError>((tx.get(USER, user)?, deleted_by_home(tx, user, home)?))
        })?;
        match known {
            Some(u) if u.homeserver == home => return Ok(()),
            Some(u) => {
                if !u.homeserver.is_empty() {
                    self.verify_soon(user).await?;
                }
                return Err(Error::NotHome(format!(
                    "this user is not homed at {home} as far as this server knows"
                )));
            }
            None if deleted => return Err(Error::DeletedByHome),
            None => {}
        }
        check_home_evidence(user, home, evidence)?;
        let home = home.to_string();
        let call_id = self.next_id();
        self.store
            .write(move |tx| {
                if let Some(u) = tx.get(USER, user)? {
                    if u.homeserver == home {
                        return Ok(());
                    }
                    return Err(Error::NotHome(format!(
                        "this user is not homed at {home} as far as this server knows"
                    )));
                }
                if deleted_by_home(tx, user, &home)? {
                    return Err(Error::DeletedByHome);
                }
                // Start from what the home announced, if it did; VerifyUser confirms it. An
                // entry naming another home was that peer's word, which the user's own
                // certificate contradicts.
                let announced = match tx.get(DIRECTORY, user)? {
                    Some(entry) if entry.home == home => Some(entry),
                    Some(_) => {
                        remote_users::forget(tx, user)?;
                        None
                    }
                    None => None,
                };
                let (username, profile) = match announced {
                    Some(entry) => (entry.username, entry.profile),
                    None => (
                        String::new(),
                        Profile {
                            name: user.to_text().chars().take(8).collect(),
                            ..Profile::default()
                        },
                    ),
                };
                let shadow = User {
                    id: user,
                    username,
                    password_hash: None,
                    key_backup: None,
                    homeserver: home.clone(),
                    profile,
                    profile_synced: true,
                    push_subscriptions: Vec::new(),
                    fcm_tokens: Vec::new(),
                    guild_order: Vec::new(),
                    is_admin: false,
                    created_at: now(),
                };
                tx.put(USER, user, &shadow)?;
                queue_verify(tx, user, &home, call_id)?;
                Ok::<_, Error>(())
            })
            .await
    }

    /// Answers VerifyUser for a user homed here, and notes that `from` keeps their shadow.
    pub async fn verify_user(&self, from: &str, user: UserId) -> Result<Verified, StoreError> {
        // Made before the profile is read, so a `profile_updated` queued after this
        // answer's snapshot always carries a greater version.
        let version = self.next_id();
        let (local, moved) = self.store.read(|tx| {
            Ok::<_, StoreError>((tx.get(USER, user)?, super::migration::moved_away(tx, user)?))
        })?;
        if let Some(moved) = moved {
            // mzchat: the old home answers for a user who moved with their proof, so hosts
            // that were not told follow them rather than delete them.
            return Ok(Verified::Moved(moved));
        }
        let Some(local) = local.filter(|u| u.homeserver.is_empty()) else {
            return Ok(Verified::Unknown);
        };
        remote_users::track_peer(self, user, from).await?;
        // The Push Delegation Token handed out is one recorded here (push::issue_token),
        // so that it can be listed and revoked.
        let push_token = super::push::issue_token(self, from, user).await?;
        Ok(Verified::Homed {
            user: PublicUser::of(&local, &self.origin),
            push_token,
            version,
        })
    }

    /// `user_created` (call `id`) from `from` about the user `profile` names: recorded in
    /// the directory; lifts an earlier deletion of the same id by that home. `certificate`
    /// (the user's device certificate naming the sender as home) proves the entry.
    pub async fn user_created(
        &self,
        from: &str,
        id: u64,
        user: UserId,
        profile: ProfileDocument,
        certificate: Option<&str>,
    ) -> Result<Announced, StoreError> {
        if profile.homeserver != from {
            return Ok(Announced::NotHome(format!(
                "{from} may only announce users homed there"
            )));
        }
        // The user's own word, if the home sent it: a device certificate naming the sender.
        let proven = certificate.is_some_and(|certificate| {
            crate::auth::device_cert::verify_device_certificate(certificate, now()).is_ok_and(
                |cert| {
                    UserId::parse(&cert.sub) == Some(user)
                        && crate::origins::normalize_origin(&cert.homeserver)
                            .ok()
                            .as_deref()
                            == Some(from)
                },
            )
        });
        let from = from.to_string();
        let cap = self.config.federation.directory_max_per_peer;
        self.store
            .write(move |tx| {
                if let Some(refused) = check_home(tx, user, &from, proven)? {
                    return Ok(Announced::NotHome(refused));
                }
                let tombstone = lifecycle::deleted_at(tx, user, &from)?;
                if tombstone.is_some_and(|deleted| deleted > id) {
                    // Announced before the deletion we already applied.
                    return Ok(Announced::Done(false));
                }
                if !first_delivery(tx, &from, id)? {
                    return Ok(Announced::Done(false));
                }
                if tombstone.is_some() {
                    // The home made the account again after deleting it.
                    lifecycle::unbury(tx, user, &from)?;
                }
                let recorded = record_announced(tx, user, &from, id, &profile, cap)?;
                if recorded && proven {
                    tx.put(DIRECTORY_PROVEN, user, &from)?;
                } else if recorded && !remote_users::proven_home(tx, user, &from)? {
                    tx.delete(DIRECTORY_PROVEN, user)?;
                }
                Ok(Announced::Done(recorded))
            })
            .await
    }

    /// `user_deleted` (call `id`) from the user's home `from`: the shadow account goes
    /// with every membership and device, and a tombstone refuses the user's still-valid
    /// tokens and any new shadow from that home. `Done` says whether an account was known.
    pub async fn user_deleted(
        &self,
        from: &str,
        id: u64,
        user: UserId,
    ) -> Result<Announced, StoreError> {
        let from = from.to_string();
        let answer = self
            .store
            .write(move |tx| {
                if let Some(refused) = check_home(tx, user, &from, false)? {
                    return Ok::<_, StoreError>(Announced::NotHome(refused));
                }
                if !first_delivery(tx, &from, id)? {
                    return Ok(Announced::Done(false));
                }
                let known = tx.contains(USER, user)?;
                remove_user_everywhere(tx, user)?;
                bury(tx, user, &from, id)?;
                Ok(Announced::Done(known))
            })
            .await?;
        if matches!(answer, Announced::Done(_)) {
            self.signed_out(user, None);
        }
        Ok(answer)
    }

    /// `profile_updated` (call `id`) from the user's home `from`: applied to a synced
    /// shadow and to the directory. `Done` says whether the shadow changed.
    pub async fn profile_updated(
        &self,
        from: &str,
        id: u64,
        user: UserId,
        profile: ProfileDocument,
    ) -> Result<Announced, StoreError> {
        if profile.homeserver != from {
            return Ok(Announced::NotHome(format!(
                "{from} may only announce users homed there"
            )));
        }
        let from = from.to_string();
        let cap = self.config.federation.directory_max_per_peer;
        self.store
            .write(move |tx| {
                if let Some(refused) = check_home(tx, user, &from, false)? {
                    return Ok(Announced::NotHome(refused));
                }
                if !first_delivery(tx, &from, id)? {
                    return Ok(Announced::Done(false));
                }
                let mut applied = false;
                if let Some(mut shadow) = tx.get(USER, user)? {
                    applied = apply_home_profile(tx, &mut shadow, &from, id, &profile)?;
                }
                if tx.contains(DIRECTORY, user)? {
                    record_announced(tx, user, &from, id, &profile, cap)?;
                }
                Ok(Announced::Done(applied))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verify_users_answer_reads_versions_as_text_or_numbers() {
        let answer: VerifyUserAnswer =
            serde_json::from_value(json!({ "version": "42", "push_token": 5 })).unwrap();
        assert_eq!((answer.version, answer.push_token), (42, None));
        let answer: VerifyUserAnswer =
            serde_json::from_value(json!({ "version": 7, "user": "x" })).unwrap();
        assert_eq!(answer.version, 7);
        assert!(answer.user.username.is_empty());
    }
}
