//! Accounts: registration, the token grants (password, refresh, device certificate),
//! devices, logout, profiles and per-user settings.

use super::outbox::{self, Call, Flow};
use super::profiles::PublicUser;
use super::{check_name, check_text, invalid, Error, Result, Services};
use crate::auth::{device_cert, password, tokens};
use crate::model::*;
use crate::storage::{tables::*, Rows, Tx};
use crate::system::now;
use serde::{Deserialize, Serialize};

/// Refresh tokens kept per device; older ones are revoked when a new one is issued.
const REFRESH_TOKENS_PER_DEVICE: usize = 4;

/// What a client sends to create an account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Login name.
    pub username: String,
    /// Password (hashed with argon2id; never stored).
    pub password: String,
    /// K_id public key, base64url: becomes the user id.
    pub identity_key: String,
    /// Device certificate signed by K_id for the registering device.
    pub device_certificate: String,
    /// K_id wrapped by the client under the password (opaque).
    #[serde(default)]
    pub key_backup: Option<String>,
    /// Display name (defaults to the username).
    #[serde(default)]
    pub display_name: Option<String>,
    /// An invite code of this box: needed when registration is `invite`; the account
    /// joins its guild in the commit that makes it.
    #[serde(default)]
    pub invite: Option<String>,
}

/// A checked account, ready to be committed with [`Services::commit_account`].
pub(super) struct NewAccount {
    /// The user.
    pub user: User,
    /// The registering device.
    pub device: Device,
    /// Its certificate, signed by K_id (announced to peers as the user's word).
    pub certificate: String,
}

/// Tokens handed out by a grant.
#[derive(Debug, Serialize)]
pub struct TokenGrant {
    /// DPoP-bound access token.
    pub access_token: String,
    /// Always `DPoP`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// DPoP-bound refresh token.
    pub refresh_token: String,
    /// The user's id.
    pub user_id: String,
}

/// The user's own view: public fields plus private settings.
#[derive(Debug, Serialize)]
pub struct OwnUser {
    /// Public fields.
    #[serde(flatten)]
    pub public: PublicUser,
    /// Push subscriptions.
    pub push_subscriptions: Vec<PushSubscription>,
    /// FCM tokens.
    pub fcm_tokens: Vec<String>,
    /// Guild order.
    pub guild_order: Vec<Id>,
    /// Whether the user administers this server.
    pub is_admin: bool,
    /// Whether the profile here follows the home server (`false`: the user unlinked it
    /// here; always `true` on the home).
    pub profile_synced: bool,
}

/// A partial profile/settings update; absent fields stay as they are.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    /// Display name.
    pub name: Option<String>,
    /// Avatar link.
    pub avatar_url: Option<String>,
    /// Avatar colour `#rrggbb`.
    pub avatar_color: Option<String>,
    /// Bio.
    pub bio: Option<String>,
    /// Presence preference.
    pub presence: Option<Presence>,
    /// Guild order.
    pub guild_order: Option<Vec<Id>>,
    /// Push subscriptions (the whole list).
    pub push_subscriptions: Option<Vec<SubscriptionInput>>,
    /// FCM tokens.
    pub fcm_tokens: Option<Vec<String>>,
}

/// A push subscription as a client sends it: a W3C `PushSubscription.toJSON()`
/// (`expirationTime`, which browsers send as `null`, is ignored).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionInput {
    /// The push endpoint.
    pub endpoint: String,
    /// Ignored.
    #[serde(rename = "expirationTime", default)]
    pub expiration_time: Option<u64>,
    /// The keys to encrypt for.
    pub keys: SubscriptionKeysInput,
}

/// The keys of a [`SubscriptionInput`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionKeysInput {
    /// P-256 public key, base64url uncompressed point.
    pub p256dh: String,
    /// 16-byte secret, base64url.
    pub auth: String,
}

/// Checks a subscription: the endpoint an http(s) URL as every URL here, the keys what
/// RFC 8291 encrypts for (written back in unpadded base64url).
pub fn check_subscription(input: SubscriptionInput) -> Result<PushSubscription> {
    use crate::auth::{jose::b64u, webpush};
    let endpoint = check_url("push_subscriptions", &input.endpoint)?;
    let p256dh = webpush::parse_p256dh(&input.keys.p256dh)
        .map_err(|e| invalid("invalid_push_subscription", e.to_string()))?;
    let auth = webpush::parse_auth(&input.keys.auth)
        .map_err(|e| invalid("invalid_push_subscription", e.to_string()))?;
    Ok(PushSubscription {
        endpoint,
        keys: Some(PushKeys {
            p256dh: b64u(&p256dh),
            auth: b64u(&auth),
        }),
    })
}

/// A device as listed to its owner.
#[derive(Debug, Serialize)]
pub struct DeviceView {
    /// Thumbprint of the device key (its id).
    pub id: String,
    /// Label.
    pub name: String,
    /// Whether K_id certified it.
    pub certified: bool,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub last_seen: u64,
    /// Whether this is the device making the request.
    pub current: bool,
}

/// Login attempt counters (see [`super::rate`]).
pub type LoginLimiter = super::rate::RateLimiter;

/// Validates a login name: 1–32 of `a-z 0-9 _ . -`.
pub fn check_username(name: &str) -> Result<String> {
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty()
        || name.len() > 32
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
    {
        return Err(invalid(
            "invalid_username",
            "username must be 1-32 characters of a-z, 0-9, '_', '.', '-'",
        ));
    }
    Ok(name)
}

pub(super) fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < 8 || password.len() > 1024 {
        return Err(invalid(
            "invalid_password",
            "password must be 8 to 1024 bytes long",
        ));
    }
    Ok(())
}

/// Validates a URL the server will later POST to or show: http(s), at most 512 bytes.
pub fn check_url(field: &'static str, value: &str) -> Result<String> {
    if value.len() > 512 {
        return Err(invalid(
            "too_long",
            format!("{field} is longer than 512 bytes"),
        ));
    }
    match url::Url::parse(value) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {
            Ok(value.to_string())
        }
        _ => Err(invalid(
            "invalid_url",
            format!("{field} must be an http(s) URL"),
        )),
    }
}

fn check_color(value: &str) -> Result<String> {
    let ok = value.is_empty()
        || (value.len() == 7
            && value.starts_with('#')
            && value[1..].bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(value.to_string())
    } else {
        Err(invalid("invalid_color", "avatar_color must be #rrggbb"))
    }
}

impl Services {
    /// The hash unknown names are checked against (see [`Services::dummy_password_hash`]).
    async fn dummy_password_hash(&self) -> Result<String> {
        self.dummy_password_hash
            .get_or_try_init(|| async {
                let mut random = [0u8; 24];
                crate::system::random_bytes(&mut random);
                self.hash_password(crate::auth::jose::b64u(&random)).await
            })
            .await
            .cloned()
    }

    fn password_params(&self) -> password::PasswordParams {
        password::PasswordParams {
            m_cost_kib: self.config.auth.argon2_memory_kib,
            t_cost: self.config.auth.argon2_iterations,
            p_cost: 1,
        }
    }

    /// Creates a local account over HTTP: checks the identity key, the device certificate
    /// it signed, and the username; stores the argon2id hash and the opaque key backup.
    /// The box's registration mode decides who may: `closed` refuses, `invite` needs a
    /// usable invite of this box, whose guild the account joins in the same commit.
    pub async fn register(&self, req: Registration, device_name: &str) -> Result<User> {
        let mode = self.registration_mode()?;
        match mode {
            RegistrationMode::Closed => {
                return Err(Error::Refused {
                    code: "registration_closed",
                    message: "registration is closed on this box; ask its administrator for an account"
                        .into(),
                })
            }
            RegistrationMode::Invite if req.invite.as_deref().unwrap_or("").is_empty() => {
                return Err(Error::Refused {
                    code: "invite_required",
                    message: "this box registers only people with an invite: open an invite link of this box"
                        .into(),
                })
            }
            _ => {}
        }
        let invite = req
            .invite
            .clone()
            .filter(|_| mode == RegistrationMode::Invite);
        let account = self.check_account(&req, device_name, false).await?;
        let origin = self.origin.clone();
        let max_guilds = self.config.limits.max_guilds_per_user * 10;
        let checked = invite.clone();
        let id = account.user.id;
        self.commit_account(
            account,
            move |tx| match &checked {
                Some(code) => super::invites::check_new_member(tx, code, id)
                    .map(|_| ())
                    .map_err(|e| match e {
                        Error::NotFound(_) => Error::Refused {
                            code: "invalid_invite",
                            message: "this invite is not one of this box's".into(),
                        },
                        other => other,
                    }),
                None => Ok(()),
            },
            move |tx, user| {
                if let Some(code) = &invite {
                    super::invites::join_in(tx, code, user.id, &origin, max_guilds)?;
                }
                Ok(())
            },
        )
        .await
    }

    /// Checks a registration and hashes its password (nothing is written).
    pub(super) async fn check_account(
        &self,
        req: &Registration,
        device_name: &str,
        is_admin: bool,
    ) -> Result<NewAccount> {
        let username = check_username(&req.username)?;
        check_password(&req.password)?;
        let id = device_cert::parse_user_id(&req.identity_key)
            .map(UserId)
            .map_err(|e| invalid("invalid_identity_key", e.to_string()))?;
        let cert = device_cert::verify_device_certificate(&req.device_certificate, now())
            .map_err(|e| invalid("invalid_device_certificate", e.to_string()))?;
        if cert.sub != req.identity_key {
            return Err(invalid(
                "invalid_device_certificate",
                "the device certificate is not signed by this identity key",
            ));
        }
        if cert.homeserver != self.origin {
            return Err(invalid(
                "invalid_device_certificate",
                format!(
                    "the device certificate names {} as home server, not this server ({})",
                    cert.homeserver, self.origin
                ),
            ));
        }
        let display = match &req.display_name {
            Some(n) => check_name("display_name", n, self.config.limits.max_name_chars)?,
            None => username.clone(),
        };
        if let Some(blob) = &req.key_backup {
            if blob.len() > self.config.limits.max_key_backup_bytes {
                return Err(invalid("too_long", "key_backup is too large"));
            }
        }
        let hash = self.hash_password(req.password.clone()).await?;
        let device = Device {
            jkt: cert.jkt.clone(),
            name: check_text("device name", device_name, 64)?,
            certificate: Some(req.device_certificate.clone()),
            created_at: now(),
            last_seen: now(),
            refresh_hashes: Vec::new(),
        };
        let user = self.new_user(
            id,
            username,
            Some(hash),
            req.key_backup.clone(),
            display,
            is_admin,
        );
        Ok(NewAccount {
            user,
            device,
            certificate: req.device_certificate.clone(),
        })
    }

    /// Commits a checked account with its device, `user_created` queued to every peer, and
    /// whatever `write` writes in the same commit (an invite's use, a claim of the box).
    /// A failed job's writes are not rolled back (the batch commits), so everything that
    /// may refuse runs first: `check`, then the account's own checks, then the writes.
    pub(super) async fn commit_account(
        &self,
        account: NewAccount,
        check: impl FnOnce(&Tx) -> Result<()> + Clone + Send + 'static,
        write: impl FnOnce(&Tx, &User) -> Result<()> + Clone + Send + 'static,
    ) -> Result<User> {
        let NewAccount {
            user,
            device,
            certificate,
        } = account;
        let stored = user.clone();
        let origin = self.origin.clone();
        outbox::write_with_ids(self, outbox::peer_count(self)?, move |tx, ids| {
            let peers = outbox::peer_origins(tx)?;
            if peers.len() > ids.len() {
                return Ok(Flow::NeedIds(peers.len()));
            }
            check(tx)?;
            insert_user(tx, &stored)?;
            tx.put(USER_DEVICE, (stored.id, device.jkt.as_str()), &device)?;
            write(tx, &stored)?;
            announce_created(tx, ids, &peers, &stored, &origin, Some(&certificate))?;
            Ok::<_, Error>(Flow::Done(()))
        })
        .await?;
        Ok(user)
    }

    fn new_user(
        &self,
        id: UserId,
        username: String,
        password_hash: Option<String>,
        key_backup: Option<String>,
        display: String,
        is_admin: bool,
    ) -> User {
        User {
            id,
            profile: Profile {
                name: display,
                ..Profile::default()
            },
            username,
            password_hash,
            key_backup,
            homeserver: String::new(),
            profile_synced: true,
            push_subscriptions: Vec::new(),
            fcm_tokens: Vec::new(),
            guild_order: Vec::new(),
            is_admin,
            created_at: now(),
        }
    }

    /// Creates an account from the administrator's tools (`hearth user add`): the caller
    /// made K_id and wrapped it under the password itself.
    pub async fn add_user(
        &self,
        username: &str,
        password: &str,
        identity_key: &str,
        key_backup: String,
        is_admin: bool,
    ) -> Result<User> {
        let username = check_username(username)?;
        check_password(password)?;
        let id = device_cert::parse_user_id(identity_key)
            .map(UserId)
            .map_err(|e| invalid("invalid_identity_key", e.to_string()))?;
        let hash = self.hash_password(password.to_string()).await?;
        let user = self.new_user(
            id,
            username.clone(),
            Some(hash),
            Some(key_backup),
            username,
            is_admin,
        );
        let stored = user.clone();
        let origin = self.origin.clone();
        outbox::write_with_ids(self, outbox::peer_count(self)?, move |tx, ids| {
            let peers = outbox::peer_origins(tx)?;
            if peers.len() > ids.len() {
                return Ok(Flow::NeedIds(peers.len()));
            }
            insert_user(tx, &stored)?;
            if stored.is_admin {
                // An administrator made from the console claims the box.
                super::setup::mark_claimed(tx)?;
            }
            announce_created(tx, ids, &peers, &stored, &origin, None)?;
            Ok::<_, Error>(Flow::Done(()))
        })
        .await?;
        Ok(user)
    }

    pub(super) async fn hash_password(&self, password: String) -> Result<String> {
        let _slot = self.password_slots.acquire().await;
        let params = self.password_params();
        smol::unblock(move || password::hash_password(&password, &params))
            .await
            .map_err(|e| invalid("invalid_password", e.to_string()))
    }

    /// The password grant (RFC 6749 §4.3), bound to the DPoP key `jkt`.
    pub async fn password_grant(
        &self,
        limiter: &LoginLimiter,
        username: &str,
        password: &str,
        jkt: &str,
        address: &str,
    ) -> Result<TokenGrant> {
        let t = now();
        let auth = &self.config.auth;
        limiter.hit(
            format!("addr:{address}"),
            auth.login_attempts_per_address,
            60,
            t,
        )?;
        let name = username.trim().to_ascii_lowercase();
        let account_key = format!("user:{name}");
        limiter.check(&account_key, auth.login_failures_per_account, t)?;
        let user = self.store.read(|tx| find_user_by_name(tx, &name))?;
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let candidate = password.to_string();
        let ok = match hash {
            Some(hash) => {
                let _slot = self.password_slots.acquire().await;
                smol::unblock(move || password::verify_password(&candidate, &hash)).await
            }
            None => {
                // No such name (or no password): the same work as a wrong password.
                let dummy = self.dummy_password_hash().await?;
                let _slot = self.password_slots.acquire().await;
                smol::unblock(move || password::verify_password(&candidate, &dummy)).await;
                false
            }
        };
        let Some(user) = user.filter(|_| ok) else {
            limiter.hit(account_key, auth.login_failures_per_account, 60, t)?;
            return Err(Error::Unauthorized("wrong username or password".into()));
        };
        self.issue_tokens(user.id, jkt, None, "password login")
            .await
    }

    /// The device-certificate grant: K_id vouches for the DPoP key `jkt`.
    pub async fn certificate_grant(
        &self,
        certificate: &str,
        jkt: &str,
        device_name: Option<String>,
    ) -> Result<TokenGrant> {
        let cert = device_cert::verify_device_certificate(certificate, now())
            .map_err(|e| Error::Unauthorized(format!("invalid device certificate: {e}")))?;
        if cert.jkt != jkt {
            return Err(Error::Unauthorized(
                "the device certificate is for another key than the DPoP proof".into(),
            ));
        }
        let user = UserId(
            device_cert::parse_user_id(&cert.sub)
                .map_err(|e| Error::Unauthorized(format!("invalid device certificate: {e}")))?,
        );
        let known = self.store.read(|tx| tx.get(USER, user))?;
        let Some(known) = known else {
            return Err(Error::Unauthorized("unknown user".into()));
        };
        let home = if known.homeserver.is_empty() {
            &self.origin
        } else {
            &known.homeserver
        };
        if &cert.homeserver != home {
            return Err(Error::Unauthorized(format!(
                "the device certificate names {} as home server, but this user's home is {home}",
                cert.homeserver
            )));
        }
        let name = device_name.unwrap_or_else(|| "certified device".into());
        self.issue_tokens(user, jkt, Some(certificate.to_string()), &name)
            .await
    }

    /// The refresh grant: the refresh token must be used with the key it is bound to.
    pub async fn refresh_grant(&self, refresh_token: &str, jkt: &str) -> Result<TokenGrant> {
        let hash = tokens::hash_refresh_token(refresh_token);
        let stored = self.store.read(|tx| tx.get(REFRESH_TOKEN, &hash))?;
        let Some(stored) = stored else {
            return Err(Error::Unauthorized(
                "unknown or revoked refresh token".into(),
            ));
        };
        if stored.jkt != jkt {
            return Err(Error::Unauthorized(
                "the refresh token is bound to another DPoP key".into(),
            ));
        }
        if stored.expires_at <= now() {
            return Err(Error::Unauthorized("the refresh token has expired".into()));
        }
        let user = stored.user;
        let device_ok = self.store.read(|tx| {
            Ok::<_, Error>(tx.contains(USER, user)? && tx.contains(USER_DEVICE, (user, jkt))?)
        })?;
        if !device_ok {
            return Err(Error::Unauthorized(
                "this device has been signed out".into(),
            ));
        }
        let (access_token, claims) = tokens::mint_access_token(
            &self.server_key,
            &self.origin,
            &user.to_text(),
            jkt,
            now(),
            self.config.auth.access_token_secs,
        );
        Ok(TokenGrant {
            access_token,
            token_type: "DPoP",
            expires_in: claims.exp.saturating_sub(claims.iat),
            refresh_token: refresh_token.to_string(),
            user_id: user.to_text(),
        })
    }

    async fn issue_tokens(
        &self,
        user: UserId,
        jkt: &str,
        certificate: Option<String>,
        device_name: &str,
    ) -> Result<TokenGrant> {
        let (refresh_token, refresh_hash) = tokens::new_refresh_token();
        let t = now();
        let record = RefreshToken {
            user,
            jkt: jkt.to_string(),
            created_at: t,
            expires_at: t + self.config.auth.refresh_token_secs,
        };
        let jkt_owned = jkt.to_string();
        let device_name = device_name.to_string();
        let max_devices = self.config.limits.max_devices_per_user;
        self.store
            .write(move |tx| {
                if tx.contains(USER_DISABLED, user)? {
                    return Err(Error::Unauthorized(
                        "this account is disabled; ask the box's administrator".into(),
                    ));
                }
                let key = (user, jkt_owned.as_str());
                if certificate.is_none() {
                    // A password sign-in: whoever knows the password approves this key
                    // again, even if it was removed before.
                    tx.delete(USER_DEVICE_REMOVED, key)?;
                } else if tx
                    .get(USER_DEVICE_REMOVED, key)?
                    .is_some_and(|removed_at| removal_refused(removed_at, t))
                {
                    return Err(Error::Unauthorized(
                        "this device was removed from the account; its certificate no longer \
                         signs it in (sign in with your password, or link it as a new device)"
                            .into(),
                    ));
                }
                let mut device = match tx.get(USER_DEVICE, key)? {
                    Some(d) => d,
                    None => {
                        let count =
                            tx.count(USER_DEVICE, Rows::prefix(user).limit(max_devices + 1))?;
                        if count >= max_devices {
                            return Err(Error::LimitReached(format!(
                                "at most {max_devices} devices per user; remove one first"
                            )));
                        }
                        Device {
                            jkt: jkt_owned.clone(),
                            name: device_name,
                            certificate: None,
                            created_at: t,
                            last_seen: t,
                            refresh_hashes: Vec::new(),
                        }
                    }
                };
                if certificate.is_some() {
                    device.certificate = certificate;
                }
                device.last_seen = t;
                device.refresh_hashes.push(refresh_hash);
                while device.refresh_hashes.len() > REFRESH_TOKENS_PER_DEVICE {
                    let old = device.refresh_hashes.remove(0);
                    tx.delete(REFRESH_TOKEN, &old)?;
                }
                tx.put(REFRESH_TOKEN, &refresh_hash, &record)?;
                tx.put(USER_DEVICE, key, &device)?;
                Ok::<_, Error>(())
            })
            .await?;
        let (access_token, claims) = tokens::mint_access_token(
            &self.server_key,
            &self.origin,
            &user.to_text(),
            jkt,
            t,
            self.config.auth.access_token_secs,
        );
        Ok(TokenGrant {
            access_token,
            token_type: "DPoP",
            expires_in: claims.exp.saturating_sub(claims.iat),
            refresh_token,
            user_id: user.to_text(),
        })
    }

    /// The home of the user of a signed-in device (empty for a user homed here), or
    /// `None` when the device is signed out or the account is gone.
    pub fn active_device_home(&self, user: UserId, jkt: &str) -> Result<Option<String>> {
        self.store.read(|tx| {
            if !tx.contains(USER_DEVICE, (user, jkt))? {
                return Ok(None);
            }
            Ok(tx.get(USER, user)?.map(|u| u.homeserver))
        })
    }

    /// Whether `jkt` is a signed-in device of a live local user.
    pub fn device_active(&self, user: UserId, jkt: &str) -> Result<bool> {
        self.store
            .read(|tx| Ok(tx.contains(USER, user)? && tx.contains(USER_DEVICE, (user, jkt))?))
    }

    /// Revokes a refresh token by its text (RFC 7009). Unknown tokens are not an error.
    pub async fn revoke_refresh_token(&self, token: &str) -> Result<()> {
        let hash = tokens::hash_refresh_token(token);
        self.store
            .write(move |tx| {
                if let Some(record) = tx.get(REFRESH_TOKEN, &hash)? {
                    let key = (record.user, record.jkt.as_str());
                    if let Some(mut device) = tx.get(USER_DEVICE, key)? {
                        device.refresh_hashes.retain(|h| h != &hash);
                        tx.put(USER_DEVICE, key, &device)?;
                    }
                    tx.delete(REFRESH_TOKEN, &hash)?;
                }
                Ok::<_, Error>(())
            })
            .await
    }

    /// Signs a device out: removes it and revokes its refresh tokens; its access tokens
    /// stop working at once because every request checks that the device exists. Device
    /// certificates for its key are refused from now on (until any certificate issued
    /// before now has expired), so the certificate it holds cannot bring it back; a
    /// password sign-in with the same key approves it again. The peers that keep a shadow
    /// of the user hear of it (`device_removed`), so they refuse the key as well.
    pub async fn remove_device(&self, user: UserId, jkt: &str) -> Result<()> {
        let jkt = jkt.to_string();
        let removed_at = now();
        let estimate = outbox::tracked_count(self, user)?;
        outbox::write_with_ids(self, estimate, move |tx, ids| {
            let key = (user, jkt.as_str());
            let device = tx.get(USER_DEVICE, key)?.ok_or(Error::NotFound("device"))?;
            let local = tx.get(USER, user)?.is_some_and(|u| u.homeserver.is_empty());
            let targets = if local {
                outbox::tracked_peers(tx, user)?
            } else {
                Vec::new()
            };
            if targets.len() > ids.len() {
                return Ok(Flow::NeedIds(targets.len()));
            }
            for hash in &device.refresh_hashes {
                tx.delete(REFRESH_TOKEN, hash)?;
            }
            tx.delete(USER_DEVICE, key)?;
            tx.put(USER_DEVICE_REMOVED, key, &removed_at)?;
            let call = Call::DeviceRemoved(outbox::DeviceRemoved {
                id: None,
                user_id: user,
                jkt: jkt.clone(),
                removed_at,
            });
            outbox::queue_to(tx, ids, &targets, &call)?;
            Ok::<_, Error>(Flow::Done(()))
        })
        .await
    }

    /// Whether a token issued at `issued_at` by `user`'s home for the key `jkt` was made
    /// before the home removed that device (as the home told this server).
    pub fn issued_before_removal(&self, user: UserId, jkt: &str, issued_at: u64) -> Result<bool> {
        let removed = self
            .store
            .read(|tx| tx.get(USER_DEVICE_REMOVED, (user, jkt)))?;
        Ok(removed.is_some_and(|removed_at| issued_at <= removed_at))
    }

    /// The user's devices.
    pub fn list_devices(&self, user: UserId, current_jkt: &str) -> Result<Vec<DeviceView>> {
        let devices = self
            .store
            .read(|tx| tx.rows(USER_DEVICE, Rows::prefix(user)))?;
        Ok(devices
            .into_iter()
            .map(|(_, d)| DeviceView {
                current: d.jkt == current_jkt,
                id: d.jkt,
                name: d.name,
                certified: d.certificate.is_some(),
                created_at: d.created_at,
                last_seen: d.last_seen,
            })
            .collect())
    }

    /// A user by id.
    pub fn get_user(&self, id: UserId) -> Result<User> {
        self.store
            .read(|tx| tx.get(USER, id))?
            .ok_or(Error::NotFound("user"))
    }

    /// The key backup blob of a user, by login name (for a new device to recover K_id).
    pub fn key_backup(&self, user: UserId) -> Result<Option<String>> {
        Ok(self.get_user(user)?.key_backup)
    }

    /// The user's own view.
    pub fn own_user(&self, id: UserId) -> Result<OwnUser> {
        let user = self.get_user(id)?;
        Ok(OwnUser {
            public: PublicUser::of(&user, &self.origin),
            push_subscriptions: user.push_subscriptions,
            fcm_tokens: user.fcm_tokens,
            guild_order: user.guild_order,
            // Only a user homed here administers this server.
            is_admin: user.is_admin && user.homeserver.is_empty(),
            profile_synced: user.profile_synced,
        })
    }

    /// Updates the user's profile and settings.
    pub async fn update_me(&self, id: UserId, update: ProfileUpdate) -> Result<OwnUser> {
        let limits = &self.config.limits;
        let name = update
            .name
            .map(|n| check_name("name", &n, limits.max_name_chars))
            .transpose()?;
        let avatar_url = update
            .avatar_url
            .map(|u| {
                if u.is_empty() {
                    Ok(u)
                } else {
                    check_url("avatar_url", &u)
                }
            })
            .transpose()?;
        let avatar_color = update.avatar_color.map(|c| check_color(&c)).transpose()?;
        let bio = update
            .bio
            .map(|b| check_text("bio", &b, limits.max_text_chars))
            .transpose()?;
        if let Some(order) = &update.guild_order {
            if order.len() > limits.max_guilds_per_user * 10 {
                return Err(invalid("too_many_items", "guild_order is too long"));
            }
        }
        let push = update
            .push_subscriptions
            .map(|list| {
                if list.len() > limits.max_push_targets {
                    return Err(invalid(
                        "too_many_items",
                        format!("at most {} push subscriptions", limits.max_push_targets),
                    ));
                }
                let mut seen = std::collections::HashSet::new();
                let mut checked = Vec::new();
                for input in list {
                    let subscription = check_subscription(input)?;
                    // One subscription per endpoint: the first given wins.
                    if seen.insert(subscription.endpoint.clone()) {
                        checked.push(subscription);
                    }
                }
                Ok(checked)
            })
            .transpose()?;
        let fcm = update
            .fcm_tokens
            .map(|list| {
                if list.len() > limits.max_push_targets {
                    return Err(invalid(
                        "too_many_items",
                        format!("at most {} FCM tokens", limits.max_push_targets),
                    ));
                }
                list.iter()
                    .map(|t| {
                        if t.is_empty() || t.len() > 4096 || !t.is_ascii() {
                            Err(invalid(
                                "invalid_field",
                                "FCM tokens must be 1-4096 ASCII characters",
                            ))
                        } else {
                            Ok(t.clone())
                        }
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?;
        let presence = update.presence;
        let order = update.guild_order;
        let origin = self.origin.clone();
        // A remote user's own name, avatar or bio here unlinks their profile here
        // (mzchat's Unlinked): it stops following their home until they relink it.
        let unlinks =
            name.is_some() || avatar_url.is_some() || avatar_color.is_some() || bio.is_some();
        let push_updates = self.config.federation.push_profile_updates;
        let estimate = if push_updates {
            outbox::tracked_count(self, id)?
        } else {
            0
        };
        outbox::write_with_ids(self, estimate, move |tx, ids| {
            let mut user = tx.get(USER, id)?.ok_or(Error::NotFound("user"))?;
            let before = PublicUser::of(&user, &origin);
            if let Some(v) = name {
                user.profile.name = v;
            }
            if let Some(v) = avatar_url {
                user.profile.avatar_url = v;
            }
            if let Some(v) = avatar_color {
                user.profile.avatar_color = v;
            }
            if let Some(v) = bio {
                user.profile.bio = v;
            }
            if let Some(v) = presence {
                user.profile.presence = v;
            }
            if let Some(mut v) = order {
                let mut seen = std::collections::HashSet::new();
                v.retain(|g| seen.insert(*g));
                user.guild_order = v;
            }
            if let Some(v) = push {
                user.push_subscriptions = v;
            }
            if let Some(v) = fcm {
                user.fcm_tokens = v;
            }
            let local = user.homeserver.is_empty();
            if unlinks && !local {
                user.profile_synced = false;
            }
            let after = PublicUser::of(&user, &origin);
            let changed = serde_json::to_value(&before).ok() != serde_json::to_value(&after).ok();
            // The peers that keep a shadow of a local user hear of a new profile at once.
            let targets = if local && changed && push_updates {
                outbox::tracked_peers(tx, id)?
            } else {
                Vec::new()
            };
            if targets.len() > ids.len() {
                return Ok(Flow::NeedIds(targets.len()));
            }
            tx.put(USER, id, &user)?;
            let guilds = tx
                .rows(USER_GUILD, Rows::prefix(id))?
                .into_iter()
                .map(|((_, guild), _)| guild)
                .collect();
            let audience = Audience {
                guilds,
                users: vec![id],
                ..Audience::default()
            };
            tx.emit("user_update", audience, None, &after)?;
            let call = Call::ProfileUpdated(outbox::ProfileUpdated {
                id: None,
                user: super::profiles::ProfileDocument::of(&after),
            });
            outbox::queue_to(tx, ids, &targets, &call)?;
            Ok::<_, Error>(Flow::Done(()))
        })
        .await?;
        self.own_user(id)
    }

    /// Deletes a local account, confirmed with its password: memberships, devices and
    /// refresh tokens go (its access tokens stop working at once: every request checks
    /// the device), the username is freed, messages stay attributed to the id, and
    /// `user_deleted` is queued to every peer in the same commit. Refused while the user
    /// owns guilds (delete them first).
    pub async fn delete_account(
        &self,
        limiter: &LoginLimiter,
        id: UserId,
        password_text: &str,
    ) -> Result<()> {
        let user = self.get_user(id)?;
        if !user.homeserver.is_empty() {
            return Err(Error::Forbidden(format!(
                "your account lives on {}; delete it there",
                user.homeserver
            )));
        }
        let Some(hash) = user.password_hash.clone() else {
            return Err(Error::Forbidden(
                "this account has no password to confirm its deletion with".into(),
            ));
        };
        let t = now();
        let failures = self.config.auth.login_failures_per_account;
        let account_key = format!("user:{}", user.username);
        limiter.check(&account_key, failures, t)?;
        let candidate = password_text.to_string();
        let ok = {
            let _slot = self.password_slots.acquire().await;
            smol::unblock(move || password::verify_password(&candidate, &hash)).await
        };
        if !ok {
            limiter.hit(account_key, failures, 60, t)?;
            return Err(Error::Forbidden("wrong password".into()));
        }
        outbox::write_with_ids(self, outbox::peer_count(self)?, move |tx, ids| {
            if !tx.contains(USER, id)? {
                return Err(Error::NotFound("user"));
            }
            let mut owned = Vec::new();
            for ((_, guild), _) in tx.rows(USER_GUILD, Rows::prefix(id))? {
                if tx.get(GUILD, guild)?.is_some_and(|g| g.owner == id) {
                    owned.push(guild.to_string());
                }
            }
            if !owned.is_empty() {
                return Err(Error::Conflict {
                    code: "owns_guilds",
                    message: format!(
                        "you own guilds ({}); delete them before your account",
                        owned.join(", ")
                    ),
                });
            }
            let peers = outbox::peer_origins(tx)?;
            if peers.len() > ids.len() {
                return Ok(Flow::NeedIds(peers.len()));
            }
            super::lifecycle::remove_user_everywhere(tx, id)?;
            let call = Call::UserDeleted(outbox::UserRef {
                id: None,
                user_id: id,
            });
            outbox::queue_to(tx, ids, &peers, &call)?;
            Ok(Flow::Done(()))
        })
        .await
    }

    /// A remote user's relink of their profile here (mzchat's Synced): it follows their
    /// home again, and a VerifyUser refresh is queued unless one is on its way. Returns
    /// the own view, still with the old profile until the home answers.
    pub async fn relink(&self, id: UserId) -> Result<OwnUser> {
        let call_id = self.next_id();
        self.store
            .write(move |tx| {
                let mut user = tx.get(USER, id)?.ok_or(Error::NotFound("user"))?;
                if user.homeserver.is_empty() {
                    return Err(invalid(
                        "not_remote",
                        "your profile is kept on this server, your home; there is nothing to relink",
                    ));
                }
                let state = tx.get(SHADOW_SYNC, id)?.unwrap_or_default();
                let pending = match state.pending_call {
                    Some(call) => tx.contains(OUTBOX, Id(call))?,
                    None => false,
                };
                user.profile_synced = true;
                tx.put(USER, id, &user)?;
                if !pending {
                    outbox::queue_verify(tx, id, &user.homeserver, call_id)?;
                }
                Ok(())
            })
            .await?;
        self.own_user(id)
    }
}

/// Queues `user_created` for a new local user to each of `peers`.
fn announce_created(
    tx: &Tx,
    ids: &[Id],
    peers: &[String],
    user: &User,
    origin: &str,
    certificate: Option<&str>,
) -> Result<()> {
    let call = Call::UserCreated(outbox::UserCreated {
        id: None,
        user: super::profiles::ProfileDocument::of(&PublicUser::of(user, origin)),
        // The user's own word that this server is their home (see `directory`).
        certificate: certificate.map(str::to_string),
    });
    outbox::queue_to(tx, ids, peers, &call)?;
    Ok(())
}

/// Applies a remote user's device removal their home announced: the device's session
/// here ends, and its key is refused as at home (certificate grant here, and the
/// home's tokens issued before the removal). `false` if the device was already known
/// removed at that time.
pub fn remove_remote_device(tx: &Tx, user: UserId, jkt: &str, removed_at: u64) -> Result<bool> {
    let key = (user, jkt);
    if tx
        .get(USER_DEVICE_REMOVED, key)?
        .is_some_and(|known| known >= removed_at)
    {
        return Ok(false);
    }
    if let Some(device) = tx.get(USER_DEVICE, key)? {
        for hash in &device.refresh_hashes {
            tx.delete(REFRESH_TOKEN, hash)?;
        }
        tx.delete(USER_DEVICE, key)?;
    }
    tx.put(USER_DEVICE_REMOVED, key, &removed_at)?;
    Ok(true)
}

/// The server call a home sends to the peers that keep a shadow of a user when one of the
/// user's devices is removed: `{user_id, jkt, removed_at}`.
pub const DEVICE_REMOVED_CALL: &str = Call::DEVICE_REMOVED;

/// Whether a certificate grant for a key removed at `removed_at` is refused at `now`: until
/// every certificate issued before the removal has expired (they are accepted at most 60 s
/// ahead of their `iat` and live at most `MAX_CERT_LIFETIME_SECS`).
pub fn removal_refused(removed_at: u64, now: u64) -> bool {
    now < removed_at
        .saturating_add(60)
        .saturating_add(device_cert::MAX_CERT_LIFETIME_SECS)
}

fn insert_user(tx: &Tx, user: &User) -> Result<()> {
    if tx.contains(USERNAME_USER, user.username.as_str())? {
        return Err(Error::Conflict {
            code: "username_taken",
            message: format!("the username {} is taken", user.username),
        });
    }
    if tx.contains(USER, user.id)? {
        return Err(Error::Conflict {
            code: "identity_key_taken",
            message: "an account with this identity key exists".into(),
        });
    }
    tx.put(USER, user.id, user)?;
    tx.put(USERNAME_USER, user.username.as_str(), &user.id.0.to_vec())?;
    Ok(())
}

impl Services {
    /// The local account with this login name (case-insensitive), if any.
    pub fn user_by_username(&self, username: &str) -> Result<Option<UserId>> {
        let name = username.trim().to_ascii_lowercase();
        Ok(self
            .store
            .read(|tx| find_user_by_name(tx, &name))?
            .filter(|u| u.homeserver.is_empty() || u.homeserver == self.origin)
            .map(|u| u.id))
    }
}

/// Looks a local user up by login name.
pub fn find_user_by_name(tx: &Tx, name: &str) -> Result<Option<User>> {
    let Some(id) = tx.get(USERNAME_USER, name)? else {
        return Ok(None);
    };
    let Ok(bytes) = <[u8; 32]>::try_from(id.as_slice()) else {
        return Ok(None);
    };
    Ok(tx.get(USER, UserId(bytes))?)
}
