//! Calls about users: `verify_user` (host → home): `{id, user_id}` → 200
//! `{user: profile, push_token}` when the user exists and is homed there, 404 otherwise.
//! The host then refreshes the shadow account's profile and keeps the Push Delegation
//! Token, or removes a user the home says does not exist.

use crate::app::App;
use crate::federation::{outbox, FederationError};
use crate::model::*;
use crate::service::accounts::PublicUser;
use crate::service::now;
use crate::storage::{keys, tables::*, StoreError, Tx};
use serde_json::{json, Value};

/// Lifetime of a Push Delegation Token, seconds.
pub const PUSH_TOKEN_SECS: u64 = 30 * 24 * 3600;

/// Applies VerifyUser's answer, in the commit that removes the call from the outbox.
pub fn verify_user_answered(
    tx: &Tx,
    item: &OutboxItem,
    status: u16,
    body: &[u8],
) -> Result<(), StoreError> {
    let request: Value = serde_json::from_str(&item.body).unwrap_or_default();
    let Some(user) = request["user_id"].as_str().and_then(UserId::parse) else {
        return Ok(());
    };
    let Some(mut shadow) = tx.get(USER, &user.0)? else {
        return Ok(());
    };
    if shadow.homeserver != item.target {
        // Migrated meanwhile: this answer is no longer the authority.
        return Ok(());
    }
    if status == 404 {
        remove_user_everywhere(tx, user)?;
        return Ok(());
    }
    if !(200..300).contains(&status) {
        return Ok(());
    }
    let answer: Value = serde_json::from_slice(body).unwrap_or_default();
    if shadow.profile_synced {
        let profile = &answer["user"];
        let text = |name: &str, max: usize| -> String {
            profile[name]
                .as_str()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .take(max)
                .collect()
        };
        shadow.profile.name = text("name", 100);
        shadow.profile.avatar_url = text("avatar_url", 512);
        shadow.profile.avatar_color = text("avatar_color", 7);
        shadow.profile.bio = text("bio", 1000);
        shadow.username = text("username", 32);
        shadow.profile.presence =
            serde_json::from_value(profile["presence"].clone()).unwrap_or_default();
        tx.put(USER, &user.0, &shadow)?;
    }
    if let Some(token) = answer["push_token"].as_str().filter(|t| t.len() <= 4096) {
        tx.put(PUSH_DELEGATION, &user.0, &token.to_string())?;
    }
    Ok(())
}

/// Deletes a user's account here with every membership and device (their messages stay,
/// attributed to the id).
pub fn remove_user_everywhere(tx: &Tx, user: UserId) -> Result<(), StoreError> {
    for (key, _) in tx.scan_prefix(USER_GUILD, &user.0, usize::MAX)? {
        if let Some(guild) = keys::read_id(&key, 32) {
            tx.delete(GUILD_MEMBER, &keys::id_user(guild, user))?;
            tx.emit(
                "member_remove",
                Audience::guild(guild).and_user(user),
                Some(guild),
                &json!({ "guild_id": guild, "user_id": user }),
            )?;
        }
    }
    tx.delete_prefix(USER_GUILD, &user.0)?;
    for (_, device) in tx.scan_prefix(USER_DEVICE, &user.0, usize::MAX)? {
        for hash in &device.refresh_hashes {
            tx.delete(REFRESH_TOKEN, hash)?;
        }
    }
    tx.delete_prefix(USER_DEVICE, &user.0)?;
    if let Some(u) = tx.get(USER, &user.0)? {
        if !u.username.is_empty() && u.homeserver.is_empty() {
            tx.delete(USERNAME_USER, u.username.as_bytes())?;
        }
    }
    tx.delete(PUSH_DELEGATION, &user.0)?;
    tx.delete(USER, &user.0)?;
    Ok(())
}

/// Makes sure a remote user has a shadow account here, queueing VerifyUser to their home
/// the first time. Fails if the user is known with another home server.
pub async fn ensure_shadow(app: &App, user: UserId, home: &str) -> Result<(), FederationError> {
    let known = app.services.store.read(|tx| tx.get(USER, &user.0))?;
    match known {
        Some(u) if u.homeserver == home => return Ok(()),
        Some(_) => {
            return Err(FederationError::Invalid(format!(
                "this user is not homed at {home}"
            )));
        }
        None => {}
    }
    let home = home.to_string();
    let call_id = app.services.next_id();
    let created = app
        .services
        .store
        .write(move |tx| {
            if tx.contains(USER, &user.0)? {
                return Ok(false);
            }
            let short: String = user.to_text().chars().take(8).collect();
            let shadow = User {
                id: user,
                username: String::new(),
                password_hash: None,
                key_backup: None,
                homeserver: home.clone(),
                profile: Profile {
                    name: short,
                    ..Profile::default()
                },
                profile_synced: true,
                push_distributors: Vec::new(),
                fcm_tokens: Vec::new(),
                guild_order: Vec::new(),
                is_admin: false,
                created_at: now(),
            };
            tx.put(USER, &user.0, &shadow)?;
            outbox::enqueue(
                tx,
                call_id,
                &home,
                "verify_user",
                json!({ "user_id": user }),
            )?;
            Ok::<_, StoreError>(true)
        })
        .await?;
    if created {
        app.federation.wake();
    }
    Ok(())
}

/// Answers VerifyUser for a user homed here.
pub fn verify_user(app: &App, from: &str, body: &Value) -> Result<(u16, Value), FederationError> {
    let user = body["user_id"]
        .as_str()
        .and_then(UserId::parse)
        .ok_or_else(|| FederationError::Invalid("user_id is not a user id".into()))?;
    let local = app.services.store.read(|tx| tx.get(USER, &user.0))?;
    let Some(local) = local.filter(|u| u.homeserver.is_empty()) else {
        return Ok((
            404,
            json!({ "error": "unknown_user", "message": "no such user homed here" }),
        ));
    };
    let t = now();
    let push_token = app.services.server_key.sign_jws(
        {
            let mut header = serde_json::Map::new();
            header.insert("typ".into(), Value::from("hearth-push+jwt"));
            header
        },
        &json!({
            "iss": app.services.origin,
            "aud": from,
            "sub": user,
            "scope": "push",
            "iat": t,
            "exp": t + PUSH_TOKEN_SECS,
        }),
    );
    Ok((
        200,
        json!({
            "user": PublicUser::of(&local, &app.services.origin),
            "push_token": push_token,
        }),
    ))
}
