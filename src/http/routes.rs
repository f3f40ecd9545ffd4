//! Routes by resource. `/.well-known/hearth` and `/oauth/*` are public (the token endpoint
//! checks its own DPoP proof); everything under `/api/v1` except registration and invite
//! previews goes through [`authed`], which authenticates before the handler runs.
//!
//! The handlers live in [`super::handlers`], one file per resource.

use super::auth::{authenticate, Principal};
use super::error::ApiError;
use super::handlers::{
    account, backups, box_admin, channels, dms, files, guilds, invites, members, messages,
    notifications, oauth_metadata, public, read_states, roles, status, users,
};
use super::{ApiResult, Req};
use crate::app::App;
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

pub fn install(server: &mut Server) {
    server.at("/").get(super::web::index);
    server.at("/invite/:code").get(super::web::index);
    server.at("/web/:file").get(super::web::file);
    server.at("/sw.js").get(super::web::service_worker_file);
    server
        .at("/manifest.webmanifest")
        .get(super::web::web_manifest);
    server
        .at("/.well-known/hearth")
        .get(open(public::well_known));
    server
        .at("/.well-known/oauth-authorization-server")
        .get(open(oauth_metadata::authorization_server));
    server.at("/oauth/token").post(open(public::token));
    server.at("/oauth/revoke").post(open(public::revoke));
    server.at("/api/v1/register").post(open(public::register));
    server.at("/api/v1/setup").post(open(box_admin::claim));
    server.at("/api/v1/box/icon").get(open(box_admin::icon));
    server
        .at("/api/v1/password-resets/:secret")
        .get(open(box_admin::reset_preview))
        .post(open(box_admin::reset_password));
    server
        .at("/api/v1/admin/settings")
        .get(authed(box_admin::get_settings))
        .patch(authed(box_admin::update_settings));
    server
        .at("/api/v1/admin/users")
        .get(authed(box_admin::list_users))
        .post(authed(box_admin::create_user));
    server
        .at("/api/v1/admin/users/:user_id")
        .patch(authed(box_admin::change_user))
        .delete(authed(box_admin::delete_user));
    server
        .at("/api/v1/admin/users/:user_id/reset-link")
        .post(authed(box_admin::reset_link));
    server
        .at("/api/v1/invites/:code")
        .get(open(invites::preview_invite));
    server
        .at("/api/v1/invites/:code")
        .post(authed(invites::join_invite));
    server
        .at("/api/v1/invites/:code")
        .delete(authed(invites::revoke_invite));

    server
        .at("/api/v1/auth/logout")
        .post(authed(account::logout));
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
        .at("/api/v1/peers")
        .get(authed(super::federation::peer_status));
    server
        .at("/api/v1/admin/peers/preview")
        .get(authed(super::federation::preview_peer));
    server.at("/healthz").get(open(status::healthz));
    server.at("/metrics").get(open(status::metrics));
    server
        .at("/api/v1/admin/status")
        .get(authed(status::status));
    server.at("/api/v1/admin/voice").get(authed(status::voice));
    server.at("/api/v1/admin/log").get(authed(status::log));
    server
        .at("/api/v1/admin/tls")
        .get(authed(status::get_tls))
        .put(authed(status::put_tls));
    server
        .at("/api/v1/admin/discovered")
        .get(authed(super::federation::list_discovered))
        .post(authed(super::federation::add_discovered));
    server
        .at("/api/v1/admin/backups")
        .get(authed(backups::list))
        .post(authed(backups::create));
    server
        .at("/api/v1/admin/backups/:name")
        .get(authed(backups::download));
    server
        .at("/api/v1/admin/restore")
        .get(authed(backups::staged_restore))
        .post(authed(backups::stage_restore))
        .delete(authed(backups::cancel_restore));
    server
        .at("/api/v1/admin/ban-notifications")
        .get(authed(members::ban_notifications));
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
        .post(authed(channels::typing));
    server
        .at("/api/v1/guilds/:guild_id/presences")
        .get(authed(guilds::presences));
    server
        .at("/api/v1/users/@me")
        .get(authed(account::me))
        .patch(authed(account::update_me))
        .delete(authed(account::delete_me));
    server
        .at("/api/v1/users/@me/relink")
        .post(authed(account::relink));
    server
        .at("/api/v1/users/search")
        .get(authed(users::search_users));
    server
        .at("/api/v1/users/@me/key-backup")
        .get(authed(account::key_backup));
    server
        .at("/api/v1/users/@me/devices")
        .get(authed(account::devices));
    server
        .at("/api/v1/users/@me/devices/:device")
        .delete(authed(account::remove_device));
    server
        .at("/api/v1/users/@me/guilds")
        .get(authed(guilds::my_guilds));
    server
        .at("/api/v1/users/@me/push-delegations")
        .get(authed(account::push_delegations))
        .put(authed(account::allow_push_delegation))
        .delete(authed(account::revoke_push_delegation));
    server
        .at("/api/v1/users/@me/notification-settings")
        .get(authed(notifications::list));
    server
        .at("/api/v1/users/@me/notification-settings/box")
        .put(authed(notifications::put_box));
    server
        .at("/api/v1/users/@me/notification-settings/guilds/:guild_id")
        .put(authed(notifications::put_guild))
        .delete(authed(notifications::delete_guild));
    server
        .at("/api/v1/users/@me/notification-settings/channels/:channel_id")
        .put(authed(notifications::put_channel))
        .delete(authed(notifications::delete_channel));
    server
        .at("/api/v1/users/@me/read-states")
        .get(authed(read_states::summary));
    server
        .at("/api/v1/users/@me/read")
        .post(authed(read_states::mark_box));
    server
        .at("/api/v1/guilds/:guild_id/read")
        .post(authed(read_states::mark_guild));
    server
        .at("/api/v1/channels/:channel_id/read")
        .put(authed(read_states::mark_channel));
    server.at("/api/v1/users/:user_id").get(authed(users::user));
    server.at("/api/v1/dms").post(authed(dms::open_dm));
    server.at("/api/v1/users/@me/dms").get(authed(dms::my_dms));
    server
        .at("/api/v1/users/@me/dm-settings")
        .get(authed(dms::dm_settings))
        .patch(authed(dms::update_dm_settings));
    server
        .at("/api/v1/users/@me/blocks")
        .get(authed(dms::blocks));
    server
        .at("/api/v1/users/@me/blocks/:user_id")
        .put(authed(dms::block))
        .delete(authed(dms::unblock));
    server
        .at("/api/v1/dms/:dm_id")
        .get(authed(dms::get_dm))
        .patch(authed(dms::update_dm));
    server
        .at("/api/v1/dms/:dm_id/recipients/:user_id")
        .put(authed(dms::add_recipient))
        .delete(authed(dms::remove_recipient));

    server
        .at("/api/v1/guilds")
        .post(authed(guilds::create_guild));
    server
        .at("/api/v1/guilds/:guild_id")
        .get(authed(guilds::get_guild))
        .patch(authed(guilds::update_guild))
        .delete(authed(guilds::delete_guild));
    server
        .at("/api/v1/guilds/:guild_id/channels")
        .get(authed(channels::list_channels))
        .post(authed(channels::create_channel));
    server
        .at("/api/v1/guilds/:guild_id/roles")
        .get(authed(roles::list_roles))
        .post(authed(roles::create_role));
    server
        .at("/api/v1/guilds/:guild_id/roles/:role_id")
        .patch(authed(roles::update_role))
        .delete(authed(roles::delete_role));
    server
        .at("/api/v1/guilds/:guild_id/members")
        .get(authed(members::list_members));
    server
        .at("/api/v1/guilds/:guild_id/members/:user_id")
        .get(authed(members::get_member))
        .patch(authed(members::update_member))
        .delete(authed(members::remove_member));
    server
        .at("/api/v1/guilds/:guild_id/members/:user_id/roles/:role_id")
        .put(authed(members::add_member_role))
        .delete(authed(members::remove_member_role));
    server
        .at("/api/v1/guilds/:guild_id/bans")
        .get(authed(members::list_bans));
    server
        .at("/api/v1/guilds/:guild_id/bans/:user_id")
        .put(authed(members::ban))
        .delete(authed(members::unban));
    server
        .at("/api/v1/guilds/:guild_id/invites")
        .get(authed(invites::list_invites));

    server
        .at("/api/v1/channels/:channel_id")
        .get(authed(channels::get_channel))
        .patch(authed(channels::update_channel))
        .delete(authed(channels::delete_channel));
    server
        .at("/api/v1/channels/:channel_id/messages")
        .get(authed(messages::list_messages))
        .post(authed(messages::create_message));
    server
        .at("/api/v1/channels/:channel_id/messages/:message_id")
        .get(authed(messages::get_message))
        .patch(authed(messages::edit_message))
        .delete(authed(messages::delete_message));
    server
        .at("/api/v1/channels/:channel_id/messages/:message_id/reactions/:emoji")
        .put(authed(messages::add_reaction))
        .delete(authed(messages::remove_own_reaction));
    server
        .at("/api/v1/channels/:channel_id/messages/:message_id/reactions/:emoji/:user_id")
        .delete(authed(messages::remove_reaction));
    server
        .at("/api/v1/channels/:channel_id/pins")
        .get(authed(messages::list_pins));
    server
        .at("/api/v1/channels/:channel_id/pins/:message_id")
        .put(authed(messages::pin))
        .delete(authed(messages::unpin));
    server
        .at("/api/v1/channels/:channel_id/invites")
        .post(authed(invites::create_invite));
    server
        .at("/api/v1/channels/:channel_id/files")
        .post(authed(files::upload));
    server
        .at("/api/v1/channels/:channel_id/files/:file_id")
        .get(authed(files::download));
}
