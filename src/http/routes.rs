//! Routes by resource. `/.well-known/hearth` and `/oauth/*` are public (the token endpoint
//! checks its own DPoP proof); everything under `/api/v1` except registration and invite
//! previews goes through [`authed`], which authenticates before the handler runs.

use super::auth::{authenticate, verify_proof, Principal};
use super::error::{header_value, ApiError};
use super::{json, json_body, no_content, read_body, ApiResult, Req};
use crate::app::App;
use crate::model::{Id, UserId};
use crate::service::push;
use crate::service::{accounts, guilds, messages, Error};
use crate::system::now;
use serde::Deserialize;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;

type Server = tide::Server<Arc<App>>;

/// Wraps a handler that needs no authentication.
fn open<F, Fut>(f: F) -> impl tide::Endpoint<Arc<App>>
where
    F: Fn(Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ApiResult> + Send + 'static,
{
    move |req: Req| {
        let f = f.clone();
        async move { Ok(f(req).await.unwrap_or_else(ApiError::into_response)) }
    }
}

/// Wraps a handler that takes the authenticated [`Principal`].
fn authed<F, Fut>(f: F) -> impl tide::Endpoint<Arc<App>>
where
    F: Fn(Req, Principal) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ApiResult> + Send + 'static,
{
    move |req: Req| {
        let f = f.clone();
        async move {
            let result = match authenticate(&req).await {
                Ok(me) => f(req, me).await,
                Err(e) => Err(e),
            };
            Ok(result.unwrap_or_else(ApiError::into_response))
        }
    }
}

pub(super) fn id_param(req: &Req, name: &str) -> Result<Id, ApiError> {
    req.param(name).ok().and_then(Id::parse).ok_or_else(|| {
        ApiError::new(
            404,
            format!("unknown_{}", name.trim_end_matches("_id")),
            format!("{name} is not a valid id"),
        )
    })
}

pub(super) fn user_param(req: &Req, name: &str, me: &Principal) -> Result<UserId, ApiError> {
    let raw = req.param(name).unwrap_or("");
    if raw == "@me" {
        return Ok(me.user);
    }
    UserId::parse(raw).ok_or_else(|| ApiError::new(404, "unknown_user", "not a valid user id"))
}

fn text_param(req: &Req, name: &str) -> Result<String, ApiError> {
    let raw = req.param(name).unwrap_or("");
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::bad_request("invalid_path", format!("{name} is not valid UTF-8")))
}

fn services(req: &Req) -> &crate::service::Services {
    &req.state().services
}

/// What a rate limit counts.
#[derive(Clone, Copy)]
enum Action {
    Register,
    Message,
    Reaction,
    Upload,
}

/// Counts `action` for the client's address and, when signed in, for the user; 429 with
/// `Retry-After` once either limit of the window is spent.
fn throttle(req: &Req, action: Action, user: Option<UserId>) -> Result<(), ApiError> {
    let app = req.state();
    let limits = &app.services.config.throttle;
    let (name, per_address, per_user, window) = match action {
        Action::Register => (
            "register",
            limits.registrations_per_address_hour,
            None,
            3600,
        ),
        Action::Message => (
            "message",
            limits.messages_per_address_minute,
            Some(limits.messages_per_user_minute),
            60,
        ),
        Action::Reaction => (
            "reaction",
            limits.reactions_per_address_minute,
            Some(limits.reactions_per_user_minute),
            60,
        ),
        Action::Upload => (
            "upload",
            limits.uploads_per_address_minute,
            Some(limits.uploads_per_user_minute),
            60,
        ),
    };
    let t = now();
    let address = super::client_address(req);
    if let (Some(user), Some(limit)) = (user, per_user) {
        app.throttle
            .hit(format!("{name}:user:{}", user.to_text()), limit, window, t)?;
    }
    app.throttle
        .hit(format!("{name}:addr:{address}"), per_address, window, t)?;
    Ok(())
}

pub fn install(server: &mut Server) {
    server.at("/").get(super::web::index);
    server.at("/invite/:code").get(super::web::index);
    server.at("/web/:file").get(super::web::file);
    server.at("/.well-known/hearth").get(open(well_known));
    server.at("/oauth/token").post(open(token));
    server.at("/oauth/revoke").post(open(revoke));
    server.at("/api/v1/register").post(open(register));
    server.at("/api/v1/invites/:code").get(open(preview_invite));
    server.at("/api/v1/invites/:code").post(authed(join_invite));
    server
        .at("/api/v1/invites/:code")
        .delete(authed(revoke_invite));

    server.at("/api/v1/auth/logout").post(authed(logout));
    server
        .at("/api/v1/device-links")
        .post(open(super::links::open));
    server
        .at("/api/v1/device-links/:code")
        .get(authed(super::links::show))
        .post(authed(super::links::approve));
    server
        .at("/api/v1/device-links/mailbox/:mailbox")
        .get(open(super::links::poll))
        .delete(open(super::links::cancel));
    server
        .at("/federation/v1/:call")
        .post(open(super::federation::inbound));
    server
        .at("/api/v1/admin/peers")
        .get(authed(super::federation::list_peers))
        .post(authed(super::federation::add_peer))
        .delete(authed(super::federation::remove_peer));
    server
        .at("/api/v1/admin/discovered")
        .get(authed(super::federation::list_discovered))
        .post(authed(super::federation::add_discovered));
    server
        .at("/api/v1/admin/ban-notifications")
        .get(authed(ban_notifications));
    server
        .at("/api/v1/gateway/ticket")
        .post(authed(super::gateway::ticket));
    server
        .at("/api/v1/gateway")
        .get(open(super::gateway::upgrade));
    server
        .at("/api/v1/channels/:channel_id/voice")
        .post(authed(super::voice::ticket))
        .get(authed(super::voice::participants));
    server.at("/api/v1/voice").get(open(super::voice::upgrade));
    server
        .at("/api/v1/guilds/:guild_id/voice")
        .get(authed(super::voice::guild_states));
    server
        .at("/api/v1/guilds/:guild_id/voice/:user_id")
        .patch(authed(super::voice::moderate));
    server
        .at("/api/v1/channels/:channel_id/typing")
        .post(authed(typing));
    server
        .at("/api/v1/guilds/:guild_id/presences")
        .get(authed(presences));
    server
        .at("/api/v1/users/@me")
        .get(authed(me))
        .patch(authed(update_me))
        .delete(authed(delete_me));
    server.at("/api/v1/users/@me/relink").post(authed(relink));
    server.at("/api/v1/users/search").get(authed(search_users));
    server
        .at("/api/v1/users/@me/key-backup")
        .get(authed(key_backup));
    server.at("/api/v1/users/@me/devices").get(authed(devices));
    server
        .at("/api/v1/users/@me/devices/:device")
        .delete(authed(remove_device));
    server.at("/api/v1/users/@me/guilds").get(authed(my_guilds));
    server
        .at("/api/v1/users/@me/push-delegations")
        .get(authed(push_delegations))
        .put(authed(allow_push_delegation))
        .delete(authed(revoke_push_delegation));
    server.at("/api/v1/users/:user_id").get(authed(user));

    server.at("/api/v1/guilds").post(authed(create_guild));
    server
        .at("/api/v1/guilds/:guild_id")
        .get(authed(get_guild))
        .patch(authed(update_guild))
        .delete(authed(delete_guild));
    server
        .at("/api/v1/guilds/:guild_id/channels")
        .get(authed(list_channels))
        .post(authed(create_channel));
    server
        .at("/api/v1/guilds/:guild_id/roles")
        .get(authed(list_roles))
        .post(authed(create_role));
    server
        .at("/api/v1/guilds/:guild_id/roles/:role_id")
        .patch(authed(update_role))
        .delete(authed(delete_role));
    server
        .at("/api/v1/guilds/:guild_id/members")
        .get(authed(list_members));
    server
        .at("/api/v1/guilds/:guild_id/members/:user_id")
        .get(authed(get_member))
        .patch(authed(update_member))
        .delete(authed(remove_member));
    server
        .at("/api/v1/guilds/:guild_id/members/:user_id/roles/:role_id")
        .put(authed(add_member_role))
        .delete(authed(remove_member_role));
    server
        .at("/api/v1/guilds/:guild_id/bans")
        .get(authed(list_bans));
    server
        .at("/api/v1/guilds/:guild_id/bans/:user_id")
        .put(authed(ban))
        .delete(authed(unban));
    server
        .at("/api/v1/guilds/:guild_id/invites")
        .get(authed(list_invites));

    server
        .at("/api/v1/channels/:channel_id")
        .get(authed(get_channel))
        .patch(authed(update_channel))
        .delete(authed(delete_channel));
    server
        .at("/api/v1/channels/:channel_id/messages")
        .get(authed(list_messages))
        .post(authed(create_message));
    server
        .at("/api/v1/channels/:channel_id/messages/:message_id")
        .get(authed(get_message))
        .patch(authed(edit_message))
        .delete(authed(delete_message));
    server
        .at("/api/v1/channels/:channel_id/messages/:message_id/reactions/:emoji")
        .put(authed(add_reaction))
        .delete(authed(remove_own_reaction));
    server
        .at("/api/v1/channels/:channel_id/messages/:message_id/reactions/:emoji/:user_id")
        .delete(authed(remove_reaction));
    server
        .at("/api/v1/channels/:channel_id/pins")
        .get(authed(list_pins));
    server
        .at("/api/v1/channels/:channel_id/pins/:message_id")
        .put(authed(pin))
        .delete(authed(unpin));
    server
        .at("/api/v1/channels/:channel_id/invites")
        .post(authed(create_invite));
    server
        .at("/api/v1/channels/:channel_id/files")
        .post(authed(upload));
    server
        .at("/api/v1/channels/:channel_id/files/:file_id")
        .get(authed(download));
}

// ---- public ----

#[derive(serde::Deserialize)]
struct WellKnownQuery {
    challenge: Option<String>,
}

/// `GET /.well-known/hearth[?challenge=…]`: with a challenge (a peer measuring this
/// server's clock), the answer is signed for it with the server key.
async fn well_known(req: Req) -> ApiResult {
    let s = services(&req);
    let challenge = req
        .query::<WellKnownQuery>()
        .ok()
        .and_then(|q| q.challenge)
        .filter(|c| !c.is_empty() && c.len() <= crate::federation::signature::MAX_RID_LEN);
    let response = json(
        200,
        &json!({
            "name": s.config.name,
            "version": env!("CARGO_PKG_VERSION"),
            "server_key": s.server_key.public_key_b64u(),
            "origin": s.origin,
            "tls_fingerprint": req.state().tls_fingerprint.get(),
            "registration": s.config.registration,
            "token_endpoint": format!("{}/oauth/token", s.origin),
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
            "time": crate::system::now(),
        }),
    )?;
    match challenge {
        Some(challenge) => super::federation::sign_answer(req.state(), &challenge, response).await,
        None => Ok(response),
    }
}

/// Parses an `application/x-www-form-urlencoded` body; a repeated parameter is an error
/// (RFC 6749 §3.2).
fn parse_form(body: &[u8]) -> Result<std::collections::HashMap<String, String>, ApiError> {
    let mut out = std::collections::HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("parameter {k} is repeated"),
            ));
        }
    }
    Ok(out)
}

/// mzchat's login on a remote server: a certificate naming another home server gets a
/// shadow account here (if that home is a peer), so the grant can issue this server's own
/// tokens.
async fn remote_certificate_user(app: &App, certificate: &str, jkt: &str) -> Result<(), ApiError> {
    let Ok(cert) = crate::auth::device_cert::verify_device_certificate(certificate, now()) else {
        // The grant itself reports what is wrong with it.
        return Ok(());
    };
    if cert.homeserver == app.services.origin {
        return Ok(());
    }
    let user = UserId::parse(&cert.sub).ok_or_else(|| {
        oauth_error(
            "invalid_grant",
            "the certificate's subject is not a user id",
        )
    })?;
    let home = crate::federation::normalize_origin(&cert.homeserver)
        .map_err(|e| oauth_error("invalid_grant", e.to_string()))?;
    crate::federation::peer_key(&app.federation, &home)
        .await
        .map_err(|e| {
            oauth_error(
                "invalid_grant",
                format!("users of {home} are not accepted here: {e}"),
            )
        })?;
    let evidence = crate::federation::calls::HomeEvidence {
        certificate: Some(certificate),
        jkt,
    };
    crate::federation::calls::ensure_shadow(&app.federation, user, &home, evidence)
        .await
        .map_err(|e| oauth_error("invalid_grant", e.to_string()))
}

/// mzchat's migration at sign-in: the device-certificate grant with a Migration Proof
/// (`migration_new_homeserver`, `migration_timestamp`, `migration_signature`) and the old
/// servers to notify (`migration_targets`, comma-separated origins).
async fn migrate(
    app: &App,
    certificate: &str,
    form: &std::collections::HashMap<String, String>,
) -> Result<(), ApiError> {
    let cert = crate::auth::device_cert::verify_device_certificate(certificate, now())
        .map_err(|e| oauth_error("invalid_grant", format!("invalid device certificate: {e}")))?;
    let user = UserId::parse(&cert.sub).ok_or_else(|| {
        oauth_error(
            "invalid_grant",
            "the certificate's subject is not a user id",
        )
    })?;
    let get = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let proof = crate::auth::migration::MigrationProof {
        new_homeserver: get("migration_new_homeserver").to_string(),
        timestamp: get("migration_timestamp").parse().map_err(|_| {
            oauth_error(
                "invalid_request",
                "migration_timestamp must be unix seconds",
            )
        })?,
        signature: get("migration_signature").to_string(),
    };
    let targets = get("migration_targets")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    crate::federation::calls::migration::migrate_here(&app.federation, user, proof, targets)
        .await
        .map_err(|e| oauth_error("invalid_grant", e.to_string()))
}

fn oauth_error(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message)
}

async fn token(mut req: Req) -> ApiResult {
    let is_form = req
        .content_type()
        .is_some_and(|m| m.essence() == "application/x-www-form-urlencoded");
    if !is_form {
        return Err(oauth_error(
            "invalid_request",
            "the token endpoint takes application/x-www-form-urlencoded (RFC 6749)",
        ));
    }
    let limit = req.state().services.config.limits.max_body_bytes;
    let body = read_body(&mut req, limit).await?;
    let form = parse_form(&body)?;
    let app = req.state().clone();
    let proof = verify_proof(&req, None)
        .map_err(|e| ApiError::dpop_at_token_endpoint(&e, app.dpop.nonce(now())))?;
    let field = |name: &str| {
        form.get(name)
            .map(String::as_str)
            .ok_or_else(|| oauth_error("invalid_request", format!("missing parameter {name}")))
    };
    let s = &app.services;
    let grant = match field("grant_type")? {
        "password" => {
            let address = super::client_address(&req);
            s.password_grant(
                &app.login_limiter,
                field("username")?,
                field("password")?,
                &proof.jkt,
                &address,
            )
            .await
        }
        "refresh_token" => s.refresh_grant(field("refresh_token")?, &proof.jkt).await,
        crate::auth::DEVICE_CERTIFICATE_GRANT => {
            let certificate = field("device_certificate")?;
            if form.contains_key("migration_signature") {
                migrate(&app, certificate, &form).await?;
            }
            remote_certificate_user(&app, certificate, &proof.jkt).await?;
            let name = app.device_links.take_name(&proof.jkt);
            s.certificate_grant(certificate, &proof.jkt, name).await
        }
        other => {
            return Err(oauth_error(
                "unsupported_grant_type",
                format!("grant type {other} is not supported"),
            ));
        }
    };
    match grant {
        Ok(grant) => json(200, &grant),
        Err(crate::service::Error::Unauthorized(message)) => {
            Err(oauth_error("invalid_grant", message))
        }
        Err(e) => Err(e.into()),
    }
}

async fn revoke(mut req: Req) -> ApiResult {
    let limit = req.state().services.config.limits.max_body_bytes;
    let body = read_body(&mut req, limit).await?;
    let form = parse_form(&body)?;
    let token = form
        .get("token")
        .ok_or_else(|| oauth_error("invalid_request", "missing parameter token"))?;
    services(&req).revoke_refresh_token(token).await?;
    Ok(tide::Response::new(200))
}

async fn register(mut req: Req) -> ApiResult {
    throttle(&req, Action::Register, None)?;
    let body: accounts::Registration = json_body(&mut req).await?;
    let user = services(&req).register(body, "registered device").await?;
    json(
        201,
        &accounts::PublicUser::of(&user, &services(&req).origin),
    )
}

async fn preview_invite(req: Req) -> ApiResult {
    let code = text_param(&req, "code")?;
    json(200, &services(&req).preview_invite(&code)?)
}

async fn typing(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    crate::gateway::typing(req.state(), me.user, channel)?;
    no_content()
}

async fn presences(req: Req, me: Principal) -> ApiResult {
    let guild = id_param(&req, "guild_id")?;
    let app = req.state();
    json(
        200,
        &app.services
            .presences(me.user, guild, |u| app.gateway.hub.is_online(u))?,
    )
}

// ---- account ----

async fn logout(req: Req, me: Principal) -> ApiResult {
    services(&req).remove_device(me.user, &me.jkt).await?;
    req.state().services.signed_out(me.user, Some(&me.jkt));
    no_content()
}

async fn me(req: Req, me: Principal) -> ApiResult {
    json(200, &services(&req).own_user(me.user)?)
}

async fn update_me(mut req: Req, me: Principal) -> ApiResult {
    let update: accounts::ProfileUpdate = json_body(&mut req).await?;
    let own = services(&req).update_me(me.user, update).await?;
    json(200, &own)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteAccount {
    password: String,
}

async fn delete_me(mut req: Req, me: Principal) -> ApiResult {
    let body: DeleteAccount = json_body(&mut req).await?;
    let app = req.state().clone();
    app.services
        .delete_account(&app.login_limiter, me.user, &body.password)
        .await?;
    app.services.signed_out(me.user, None);
    no_content()
}

async fn relink(req: Req, me: Principal) -> ApiResult {
    let own = services(&req).relink(me.user).await?;
    json(200, &own)
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
    limit: Option<usize>,
}

async fn search_users(req: Req, _me: Principal) -> ApiResult {
    let query: SearchQuery = req
        .query()
        .map_err(|_| ApiError::bad_request("invalid_query", "q is text, limit a number"))?;
    let q = query.q.unwrap_or_default();
    crate::service::remote_users::check_query(&q).map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            format!(
                "q must be 1 to {} characters",
                crate::service::remote_users::MAX_QUERY_CHARS
            ),
        )
    })?;
    let limit = query
        .limit
        .unwrap_or(crate::service::remote_users::DEFAULT_SEARCH_LIMIT);
    let found = crate::federation::directory::search(&req.state().federation, &q, limit).await?;
    json(200, &found)
}

async fn key_backup(req: Req, me: Principal) -> ApiResult {
    json(
        200,
        &json!({ "key_backup": services(&req).key_backup(me.user)? }),
    )
}

async fn devices(req: Req, me: Principal) -> ApiResult {
    json(200, &services(&req).list_devices(me.user, &me.jkt)?)
}

async fn remove_device(req: Req, me: Principal) -> ApiResult {
    let device = text_param(&req, "device")?;
    services(&req).remove_device(me.user, &device).await?;
    req.state().services.signed_out(me.user, Some(&device));
    no_content()
}

async fn push_delegations(req: Req, me: Principal) -> ApiResult {
    let list = push::list_delegations(&req.state().services, me.user).map_err(Error::Store)?;
    json(200, &list)
}

#[derive(Deserialize)]
struct HostQuery {
    host: String,
}

fn host_query(req: &Req) -> Result<String, ApiError> {
    let query: HostQuery = req
        .query()
        .map_err(|_| ApiError::bad_request("invalid_query", "host is required"))?;
    crate::federation::normalize_origin(&query.host)
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))
}

/// `DELETE /users/@me/push-delegations?host=`: revokes the host's tokens and stops new ones.
async fn revoke_push_delegation(req: Req, me: Principal) -> ApiResult {
    let host = host_query(&req)?;
    let (tokens, already) = push::revoke_delegation(&req.state().services, me.user, host)
        .await
        .map_err(Error::Store)?;
    if tokens == 0 && already {
        return Err(ApiError::new(
            404,
            "unknown_delegation",
            "push to that host is already revoked",
        ));
    }
    no_content()
}

/// `PUT /users/@me/push-delegations?host=`: lets a revoked host get tokens again.
async fn allow_push_delegation(req: Req, me: Principal) -> ApiResult {
    let host = host_query(&req)?;
    if !push::allow_host(&req.state().services, me.user, host)
        .await
        .map_err(Error::Store)?
    {
        return Err(ApiError::new(
            404,
            "unknown_delegation",
            "push to that host was not revoked",
        ));
    }
    no_content()
}

#[derive(Deserialize)]
struct BanNotificationQuery {
    user_id: Option<String>,
}

async fn ban_notifications(req: Req, me: Principal) -> ApiResult {
    super::federation::require_admin_for(&req, &me, "see ban notifications")?;
    let query: BanNotificationQuery = req
        .query()
        .map_err(|_| ApiError::bad_request("invalid_query", "user_id must be a user id"))?;
    let user = query
        .user_id
        .map(|u| {
            UserId::parse(&u)
                .ok_or_else(|| ApiError::bad_request("invalid_query", "user_id must be a user id"))
        })
        .transpose()?;
    let list =
        crate::service::ban_notices::list(&req.state().services, user).map_err(Error::Store)?;
    json(
        200,
        &list
            .iter()
            .map(crate::service::ban_notices::view)
            .collect::<Vec<_>>(),
    )
}

async fn my_guilds(req: Req, me: Principal) -> ApiResult {
    json(200, &services(&req).my_guilds(me.user)?)
}

async fn user(req: Req, me: Principal) -> ApiResult {
    let id = user_param(&req, "user_id", &me)?;
    let app = req.state();
    // A shadow account's profile as cached here, or a remote user the directory knows.
    let user = crate::service::remote_users::lookup(&app.services, id)
        .map_err(Error::Store)?
        .ok_or(Error::NotFound("user"))?;
    if user.homeserver != app.services.origin {
        crate::federation::directory::refresh_on_lookup(&app.federation, &[id]).await;
    }
    json(200, &user)
}

/// Refreshes the stale profiles of the remote users among `members` (served as cached).
async fn refresh_members<'a>(app: &App, members: impl Iterator<Item = &'a guilds::MemberView>) {
    let remote: Vec<UserId> = members
        .filter(|m| {
            m.user
                .as_ref()
                .is_some_and(|u| u.homeserver != app.services.origin)
        })
        .map(|m| m.member.user_id)
        .collect();
    crate::federation::directory::refresh_on_lookup(&app.federation, &remote).await;
}

// ---- guilds ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GuildBody {
    name: Option<String>,
    description: Option<String>,
}

async fn create_guild(mut req: Req, me: Principal) -> ApiResult {
    let body: GuildBody = json_body(&mut req).await?;
    let name = body
        .name
        .ok_or_else(|| ApiError::bad_request("missing_field", "name is required"))?;
    let view = services(&req)
        .create_guild(me.user, &name, body.description.as_deref().unwrap_or(""))
        .await?;
    json(201, &view)
}

async fn get_guild(req: Req, me: Principal) -> ApiResult {
    json(
        200,
        &services(&req).get_guild(me.user, id_param(&req, "guild_id")?)?,
    )
}

async fn update_guild(mut req: Req, me: Principal) -> ApiResult {
    let body: GuildBody = json_body(&mut req).await?;
    let guild = id_param(&req, "guild_id")?;
    json(
        200,
        &services(&req)
            .update_guild(me.user, guild, body.name, body.description)
            .await?,
    )
}

async fn delete_guild(req: Req, me: Principal) -> ApiResult {
    services(&req)
        .delete_guild(me.user, id_param(&req, "guild_id")?)
        .await?;
    no_content()
}

async fn list_channels(req: Req, me: Principal) -> ApiResult {
    json(
        200,
        &services(&req).list_channels(me.user, id_param(&req, "guild_id")?)?,
    )
}

async fn create_channel(mut req: Req, me: Principal) -> ApiResult {
    let body: guilds::NewChannel = json_body(&mut req).await?;
    let guild = id_param(&req, "guild_id")?;
    json(
        201,
        &services(&req).create_channel(me.user, guild, body).await?,
    )
}

async fn list_roles(req: Req, me: Principal) -> ApiResult {
    json(
        200,
        &services(&req).list_roles(me.user, id_param(&req, "guild_id")?)?,
    )
}

async fn create_role(mut req: Req, me: Principal) -> ApiResult {
    let body: guilds::RoleUpdate = json_body(&mut req).await?;
    let guild = id_param(&req, "guild_id")?;
    json(
        201,
        &services(&req).create_role(me.user, guild, body).await?,
    )
}

async fn update_role(mut req: Req, me: Principal) -> ApiResult {
    let body: guilds::RoleUpdate = json_body(&mut req).await?;
    let guild = id_param(&req, "guild_id")?;
    let role = id_param(&req, "role_id")?;
    json(
        200,
        &services(&req)
            .update_role(me.user, guild, role, body)
            .await?,
    )
}

async fn delete_role(req: Req, me: Principal) -> ApiResult {
    let guild = id_param(&req, "guild_id")?;
    let role = id_param(&req, "role_id")?;
    services(&req).delete_role(me.user, guild, role).await?;
    no_content()
}

#[derive(Deserialize)]
struct MemberQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_members(req: Req, me: Principal) -> ApiResult {
    let guild = id_param(&req, "guild_id")?;
    let query: MemberQuery = req.query().map_err(|_| {
        ApiError::bad_request("invalid_query", "after must be a user id, limit a number")
    })?;
    let after = match query.after {
        Some(a) => Some(
            UserId::parse(&a)
                .ok_or_else(|| ApiError::bad_request("invalid_query", "after must be a user id"))?,
        ),
        None => None,
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let members = services(&req).list_members(me.user, guild, after, limit)?;
    refresh_members(req.state(), members.iter()).await;
    json(200, &members)
}

async fn get_member(req: Req, me: Principal) -> ApiResult {
    let guild = id_param(&req, "guild_id")?;
    let user = user_param(&req, "user_id", &me)?;
    let member = services(&req).get_member(me.user, guild, user)?;
    refresh_members(req.state(), std::iter::once(&member)).await;
    json(200, &member)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    nick: String,
}

async fn update_member(mut req: Req, me: Principal) -> ApiResult {
    let body: MemberBody = json_body(&mut req).await?;
    let guild = id_param(&req, "guild_id")?;
    let user = user_param(&req, "user_id", &me)?;
    if user != me.user {
        return Err(ApiError::new(
            403,
            "forbidden",
            "you can only change your own nickname",
        ));
    }
    json(
        200,
        &services(&req).set_nick(me.user, guild, body.nick).await?,
    )
}

async fn remove_member(req: Req, me: Principal) -> ApiResult {
    let guild = id_param(&req, "guild_id")?;
    let user = user_param(&req, "user_id", &me)?;
    if user == me.user {
        services(&req).leave_guild(me.user, guild).await?;
    } else {
        services(&req).kick(me.user, guild, user).await?;
    }
    no_content()
}

async fn add_member_role(req: Req, me: Principal) -> ApiResult {
    set_member_role(req, me, true).await
}

async fn remove_member_role(req: Req, me: Principal) -> ApiResult {
    set_member_role(req, me, false).await
}

async fn set_member_role(req: Req, me: Principal, assign: bool) -> ApiResult {
    let guild = id_param(&req, "guild_id")?;
    let user = user_param(&req, "user_id", &me)?;
    let role = id_param(&req, "role_id")?;
    json(
        200,
        &services(&req)
            .set_member_role(me.user, guild, user, role, assign)
            .await?,
    )
}

async fn list_bans(req: Req, me: Principal) -> ApiResult {
    json(
        200,
        &services(&req).list_bans(me.user, id_param(&req, "guild_id")?)?,
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BanBody {
    #[serde(default)]
    reason: String,
}

async fn ban(mut req: Req, me: Principal) -> ApiResult {
    let body: BanBody = if req.len().unwrap_or(0) == 0 {
        BanBody::default()
    } else {
        json_body(&mut req).await?
    };
    let guild = id_param(&req, "guild_id")?;
    let user = user_param(&req, "user_id", &me)?;
    let ban = services(&req)
        .ban(me.user, guild, user, body.reason)
        .await?;
    json(200, &ban)
}

async fn unban(req: Req, me: Principal) -> ApiResult {
    let guild = id_param(&req, "guild_id")?;
    let user = user_param(&req, "user_id", &me)?;
    services(&req).unban(me.user, guild, user).await?;
    no_content()
}

async fn list_invites(req: Req, me: Principal) -> ApiResult {
    json(
        200,
        &services(&req).list_invites(me.user, id_param(&req, "guild_id")?)?,
    )
}

async fn join_invite(req: Req, me: Principal) -> ApiResult {
    let code = text_param(&req, "code")?;
    json(200, &services(&req).join_invite(me.user, code).await?)
}

async fn revoke_invite(req: Req, me: Principal) -> ApiResult {
    let code = text_param(&req, "code")?;
    services(&req).revoke_invite(me.user, code).await?;
    no_content()
}

// ---- channels ----

async fn get_channel(req: Req, me: Principal) -> ApiResult {
    json(
        200,
        &services(&req).get_channel(me.user, id_param(&req, "channel_id")?)?,
    )
}

async fn update_channel(mut req: Req, me: Principal) -> ApiResult {
    let body: guilds::ChannelUpdate = json_body(&mut req).await?;
    let channel = id_param(&req, "channel_id")?;
    json(
        200,
        &services(&req)
            .update_channel(me.user, channel, body)
            .await?,
    )
}

async fn delete_channel(req: Req, me: Principal) -> ApiResult {
    services(&req)
        .delete_channel(me.user, id_param(&req, "channel_id")?)
        .await?;
    no_content()
}

#[derive(Deserialize)]
struct PageQuery {
    before: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_messages(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    let query: PageQuery = req.query().map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            "before/after must be ids and limit a number",
        )
    })?;
    let parse = |v: Option<String>| -> Result<Option<Id>, ApiError> {
        v.map(|t| {
            Id::parse(&t).ok_or_else(|| {
                ApiError::bad_request("invalid_query", "before/after must be message ids")
            })
        })
        .transpose()
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be 1-100",
        ));
    }
    let page = messages::Page {
        before: parse(query.before)?,
        after: parse(query.after)?,
        limit,
    };
    json(200, &services(&req).list_messages(me.user, channel, page)?)
}

async fn create_message(mut req: Req, me: Principal) -> ApiResult {
    throttle(&req, Action::Message, Some(me.user))?;
    let body: messages::NewMessage = json_body(&mut req).await?;
    let channel = id_param(&req, "channel_id")?;
    let posted = services(&req)
        .create_message(me.user, channel, body)
        .await?;
    json(201, &posted)
}

async fn get_message(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    let message = id_param(&req, "message_id")?;
    json(200, &services(&req).get_message(me.user, channel, message)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditBody {
    content: String,
}

async fn edit_message(mut req: Req, me: Principal) -> ApiResult {
    let body: EditBody = json_body(&mut req).await?;
    let channel = id_param(&req, "channel_id")?;
    let message = id_param(&req, "message_id")?;
    json(
        200,
        &services(&req)
            .edit_message(me.user, channel, message, body.content)
            .await?,
    )
}

async fn delete_message(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    let message = id_param(&req, "message_id")?;
    services(&req)
        .delete_message(me.user, channel, message)
        .await?;
    no_content()
}

async fn add_reaction(req: Req, me: Principal) -> ApiResult {
    throttle(&req, Action::Reaction, Some(me.user))?;
    let channel = id_param(&req, "channel_id")?;
    let message = id_param(&req, "message_id")?;
    let emoji = text_param(&req, "emoji")?;
    json(
        200,
        &services(&req)
            .add_reaction(me.user, channel, message, emoji)
            .await?,
    )
}

async fn remove_own_reaction(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    let message = id_param(&req, "message_id")?;
    let emoji = text_param(&req, "emoji")?;
    json(
        200,
        &services(&req)
            .remove_reaction(me.user, channel, message, emoji, me.user)
            .await?,
    )
}

async fn remove_reaction(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    let message = id_param(&req, "message_id")?;
    let emoji = text_param(&req, "emoji")?;
    let user = user_param(&req, "user_id", &me)?;
    json(
        200,
        &services(&req)
            .remove_reaction(me.user, channel, message, emoji, user)
            .await?,
    )
}

async fn list_pins(req: Req, me: Principal) -> ApiResult {
    json(
        200,
        &services(&req).list_pins(me.user, id_param(&req, "channel_id")?)?,
    )
}

async fn pin(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    let message = id_param(&req, "message_id")?;
    json(
        200,
        &services(&req)
            .set_pinned(me.user, channel, message, true)
            .await?,
    )
}

async fn unpin(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    let message = id_param(&req, "message_id")?;
    json(
        200,
        &services(&req)
            .set_pinned(me.user, channel, message, false)
            .await?,
    )
}

async fn create_invite(mut req: Req, me: Principal) -> ApiResult {
    let body: guilds::NewInvite = if req.len().unwrap_or(0) == 0 {
        guilds::NewInvite::default()
    } else {
        json_body(&mut req).await?
    };
    let channel = id_param(&req, "channel_id")?;
    json(
        201,
        &services(&req).create_invite(me.user, channel, body).await?,
    )
}

#[derive(Deserialize)]
struct UploadQuery {
    filename: Option<String>,
}

async fn upload(mut req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    let query: UploadQuery = req
        .query()
        .map_err(|_| ApiError::bad_request("invalid_query", "filename must be text"))?;
    let filename = query.filename.unwrap_or_else(|| "file".into());
    let content_type = req
        .content_type()
        .map(|m| m.to_string())
        .unwrap_or_else(|| "application/octet-stream".into());
    let limit = req.state().services.config.limits.max_upload_bytes;
    if req.len().is_some_and(|n| n > limit) {
        return Err(crate::service::Error::TooLarge { limit }.into());
    }
    throttle(&req, Action::Upload, Some(me.user))?;
    // Refused before a byte of the body is read: a refusal costs no upload.
    services(&req).check_upload(me.user, channel)?;
    let body = req.take_body();
    let app = req.state().clone();
    json(
        201,
        &app.services
            .upload_file(me.user, channel, &filename, &content_type, body)
            .await?,
    )
}

async fn download(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    let file = text_param(&req, "file_id")?;
    let (meta, file) = services(&req)
        .download_file(me.user, channel, &file)
        .await?;
    let mut response = tide::Response::new(200);
    // Streamed from disk: a client that reads slowly holds a buffer, not the file.
    response.set_body(tide::Body::from_reader(
        futures_lite::io::BufReader::new(file),
        usize::try_from(meta.size).ok(),
    ));
    response.insert_header("Content-Type", header_value(&meta.content_type));
    response.insert_header("X-Content-Type-Options", "nosniff");
    response.insert_header("Content-Disposition", content_disposition(&meta.filename));
    Ok(response)
}

/// Characters RFC 8187 lets stand unencoded in `filename*` (its `attr-char`).
const ATTR_CHAR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `Content-Disposition: attachment` for a stored filename (RFC 6266): a quoted ASCII
/// fallback in which anything else becomes `_`, plus `filename*=UTF-8''…` with the exact
/// name when the two differ. Nothing of the name can end the header or start another.
pub(super) fn content_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| match c {
            ' ' => ' ',
            '"' | '\\' => '_',
            c if c.is_ascii_graphic() => c,
            _ => '_',
        })
        .collect();
    if fallback == filename {
        format!("attachment; filename=\"{fallback}\"")
    } else {
        let exact = percent_encoding::utf8_percent_encode(filename, ATTR_CHAR);
        format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}")
    }
}
