//! Accounts as the box's administrators manage them: listing and searching local users,
//! making accounts, making or unmaking administrators, disabling and deleting accounts,
//! and one-time password-reset links. The box never loses its last administrator: the
//! change that would leave it without one is refused (409 `last_admin`).
//!
//! Every operation here assumes the caller checked that the actor administers the box.

use super::accounts::{check_password, check_username};
use super::outbox::{self, Call, Flow};
use super::{invalid, Error, Result, Services};
use crate::auth::device_cert;
use crate::model::*;
use crate::storage::{tables::*, Rows, Tx};
use crate::system::now;
use serde::{Deserialize, Serialize};

/// Users listed in one page, at most (and by default 50).
pub const MAX_PAGE: usize = 200;
/// Longest search text, characters.
const MAX_QUERY: usize = 64;

/// A local user as administrators see them.
#[derive(Debug, Serialize)]
pub struct AdminUserView {
    /// User id.
    pub id: UserId,
    /// Login name.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Administers the box.
    pub admin: bool,
    /// Disabled by an administrator: cannot sign in, every device signed out.
    pub disabled: bool,
    /// Unix seconds.
    pub created_at: u64,
}

/// One page of users, by login name.
#[derive(Debug, Serialize)]
pub struct UserPage {
    /// The users.
    pub users: Vec<AdminUserView>,
    /// The `after` of the next page, when there may be one.
    pub next: Option<String>,
}

/// An account an administrator makes. The console's browser made K_id and wrapped it under
/// the password, as `hearth user add` and web sign-up do.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
    /// K_id public key (the user id).
    pub identity_key: String,
    /// K_id wrapped under the password.
    pub key_backup: String,
    /// Make them an administrator too.
    #[serde(default)]
    pub admin: bool,
}

/// A change of an account; absent fields stay.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// Administers the box.
    pub admin: Option<bool>,
    /// Disabled.
    pub disabled: Option<bool>,
}

/// A password-reset link as handed out.
#[derive(Debug, Serialize)]
pub struct ResetLink {
    /// The link to give the person: the web client's reset page.
    pub url: String,
    /// Unix seconds it stops working.
    pub expires_at: u64,
}

/// What the reset page shows before the new password is set.
#[derive(Debug, Serialize)]
pub struct ResetPreview {
    /// Whose password it resets.
    pub username: String,
    /// Unix seconds it stops working.
    pub expires_at: u64,
}

fn view(tx: &Tx, user: &User) -> Result<AdminUserView> {
    Ok(AdminUserView {
        id: user.id,
        username: user.username.clone(),
        display_name: user.profile.name.clone(),
        admin: user.is_admin,
        disabled: tx.contains(USER_DISABLED, user.id)?,
        created_at: user.created_at,
    })
}

/// A local account by id (404 for unknown ids and for users homed elsewhere).
fn local_user(tx: &Tx, id: UserId) -> Result<User> {
    tx.get(USER, id)?
        .filter(|u| u.homeserver.is_empty())
        .ok_or(Error::NotFound("user"))
}

/// Whether some administrator other than `except` can still act (homed here, enabled).
fn other_admin(tx: &Tx, except: UserId) -> Result<bool> {
    for (_, id) in tx.rows(USERNAME_USER, Rows::all())? {
        let Ok(bytes) = <[u8; 32]>::try_from(id.as_slice()) else {
            continue;
        };
        let user = UserId(bytes);
        if user == except || tx.contains(USER_DISABLED, user)? {
            continue;
        }
        if tx
            .get(USER, user)?
            .is_some_and(|u| u.is_admin && u.homeserver.is_empty())
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn last_admin() -> Error {
    Error::Conflict {
        code: "last_admin",
        message: "this is the box's last administrator: make someone else an administrator first"
            .into(),
    }
}

/// SHA-256 (hex) of a reset secret, the key it is stored under.
fn reset_key(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A usable reset by its secret (404 unknown or used, 410 expired).
fn usable_reset(tx: &Tx, secret: &str) -> Result<(String, PasswordReset)> {
    if secret.is_empty() || secret.len() > 128 {
        return Err(Error::NotFound("reset_link"));
    }
    let key = reset_key(secret);
    let reset = tx
        .get(PASSWORD_RESET, key.as_str())?
        .ok_or(Error::NotFound("reset_link"))?;
    if reset.expires_at <= now() {
        return Err(Error::Gone {
            code: "reset_link_expired",
            message: "this reset link has expired; ask the box's administrator for a new one"
                .into(),
        });
    }
    Ok((key, reset))
}

impl Services {
    /// Local users by login name, after `after`, whose login or display name contains
    /// `q` (case-insensitive).
    pub fn admin_list_users(&self, q: &str, after: &str, limit: usize) -> Result<UserPage> {
        if q.chars().count() > MAX_QUERY {
            return Err(invalid(
                "too_long",
                format!("q is longer than {MAX_QUERY} characters"),
            ));
        }
        let limit = limit.clamp(1, MAX_PAGE);
        let q = q.trim().to_lowercase();
        self.store.read(|tx| {
            let rows = if after.is_empty() {
                Rows::all()
            } else {
                Rows::all().after(after)
            };
            let mut users = Vec::new();
            let mut next = None;
            for (_, id) in tx.rows(USERNAME_USER, rows)? {
                let Ok(bytes) = <[u8; 32]>::try_from(id.as_slice()) else {
                    continue;
                };
                let Some(user) = tx.get(USER, UserId(bytes))? else {
                    continue;
                };
                if !q.is_empty()
                    && !user.username.contains(&q)
                    && !user.profile.name.to_lowercase().contains(&q)
                {
                    continue;
                }
                if users.len() == limit {
                    next = users.last().map(|u: &AdminUserView| u.username.clone());
                    break;
                }
                users.push(view(tx, &user)?);
            }
            Ok(UserPage { users, next })
        })
    }

    /// One local user.
    pub fn admin_user(&self, id: UserId) -> Result<AdminUserView> {
        self.store.read(|tx| view(tx, &local_user(tx, id)?))
    }

    /// Makes an account (K_id made and wrapped by the administrator's client).
    pub async fn admin_create_user(&self, new: NewUser) -> Result<AdminUserView> {
        check_username(&new.username)?;
        check_password(&new.password)?;
        device_cert::parse_user_id(&new.identity_key)
            .map_err(|e| invalid("invalid_identity_key", e.to_string()))?;
        if new.key_backup.is_empty()
            || new.key_backup.len() > self.config.limits.max_key_backup_bytes
        {
            return Err(invalid(
                "invalid_field",
                "key_backup is missing or too large",
            ));
        }
        let user = self
            .add_user(
                &new.username,
                &new.password,
                &new.identity_key,
                new.key_backup,
                new.admin,
            )
            .await?;
        self.admin_user(user.id)
    }

    /// Makes or unmakes an administrator, disables or enables an account. Disabling signs
    /// every device out at once (tokens refused, refresh refused, sockets closed) and
    /// refuses sign-in until enabled again.
    pub async fn admin_change_user(&self, id: UserId, change: UserChange) -> Result<AdminUserView> {
        let disabling = change.disabled == Some(true);
        self.store
            .write(move |tx| {
                let mut user = local_user(tx, id)?;
                let loses_admin = user.is_admin
                    && !tx.contains(USER_DISABLED, id)?
                    && (change.admin == Some(false) || change.disabled == Some(true));
                if loses_admin && !other_admin(tx, id)? {
                    return Err(last_admin());
                }
                if let Some(admin) = change.admin {
                    if admin != user.is_admin {
                        user.is_admin = admin;
                        tx.put(USER, id, &user)?;
                    }
                }
                match change.disabled {
                    Some(true) => {
                        if !tx.contains(USER_DISABLED, id)? {
                            tx.put(USER_DISABLED, id, &now())?;
                        }
                        super::lifecycle::sign_out_all_devices(tx, id)?;
                    }
                    Some(false) => {
                        tx.delete(USER_DISABLED, id)?;
                    }
                    None => {}
                }
                Ok::<_, Error>(())
            })
            .await?;
        if disabling {
            self.signed_out(id, None);
        }
        self.admin_user(id)
    }

    /// Deletes a local account as its owner's own deletion does (memberships and devices
    /// go, `user_deleted` to every peer). Refused for the last administrator and while the
    /// user owns guilds.
    pub async fn admin_delete_user(&self, id: UserId) -> Result<()> {
        outbox::write_with_ids(self, outbox::peer_count(self)?, move |tx, ids| {
            let user = local_user(tx, id)?;
            if user.is_admin && !tx.contains(USER_DISABLED, id)? && !other_admin(tx, id)? {
                return Err(last_admin());
            }
            for ((_, guild), _) in tx.rows(USER_GUILD, Rows::prefix(id))? {
                if tx.get(GUILD, guild)?.is_some_and(|g| g.owner == id) {
                    return Err(Error::Conflict {
                        code: "owns_guilds",
                        message: "this user owns guilds; they (or the guild's owner rights) must go first"
                            .into(),
                    });
                }
            }
            let peers = outbox::peer_origins(tx)?;
            if peers.len() > ids.len() {
                return Ok(Flow::NeedIds(peers.len()));
            }
            super::lifecycle::remove_user_everywhere(tx, id)?;
            tx.delete(USER_DISABLED, id)?;
            let call = Call::UserDeleted(outbox::UserRef {
                id: None,
                user_id: id,
            });
            outbox::queue_to(tx, ids, &peers, &call)?;
            Ok(Flow::Done(()))
        })
        .await?;
        self.signed_out(id, None);
        Ok(())
    }

    /// Makes a one-time password-reset link for a local user, valid for
    /// `auth.reset_link_secs`.
    pub async fn admin_reset_link(&self, id: UserId) -> Result<ResetLink> {
        let mut random = [0u8; 32];
        crate::system::random_bytes(&mut random);
        let secret = crate::auth::jose::b64u(&random);
        let key = reset_key(&secret);
        let t = now();
        let expires_at = t + self.config.auth.reset_link_secs;
        self.store
            .write(move |tx| {
                local_user(tx, id)?;
                tx.put(
                    PASSWORD_RESET,
                    key.as_str(),
                    &PasswordReset {
                        user: id,
                        created_at: t,
                        expires_at,
                    },
                )?;
                Ok::<_, Error>(())
            })
            .await?;
        Ok(ResetLink {
            url: format!("{}/#reset={secret}", self.origin),
            expires_at,
        })
    }

    /// Whose password a reset link resets.
    pub fn reset_preview(&self, secret: &str) -> Result<ResetPreview> {
        self.store.read(|tx| {
            let (_, reset) = usable_reset(tx, secret)?;
            let user = local_user(tx, reset.user)?;
            Ok(ResetPreview {
                username: user.username,
                expires_at: reset.expires_at,
            })
        })
    }

    /// Sets a new password with a reset link, which is used up in the same commit. The
    /// key backup, wrapped under the old password, is dropped: no one can open it without
    /// that password. A `key_backup` sent along (K_id wrapped anew by a client that has
    /// it) takes its place.
    pub async fn reset_password(
        &self,
        secret: &str,
        password: &str,
        key_backup: Option<String>,
    ) -> Result<String> {
        check_password(password)?;
        if key_backup
            .as_ref()
            .is_some_and(|b| b.len() > self.config.limits.max_key_backup_bytes)
        {
            return Err(invalid("too_long", "key_backup is too large"));
        }
        // Checked before the costly hash, and again in the commit.
        self.reset_preview(secret)?;
        let hash = self.hash_password(password.to_string()).await?;
        let secret = secret.to_string();
        self.store
            .write(move |tx| {
                let (key, reset) = usable_reset(tx, &secret)?;
                let mut user = local_user(tx, reset.user)?;
                user.password_hash = Some(hash);
                user.key_backup = key_backup;
                tx.put(USER, user.id, &user)?;
                tx.delete(PASSWORD_RESET, key.as_str())?;
                Ok::<_, Error>(user.username)
            })
            .await
    }
}
