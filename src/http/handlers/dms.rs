//! Handlers of direct messages: opening one, listing the user's, reading and naming one,
//! adding and removing people (leaving is removing oneself). The messages of a DM go
//! through the channel routes, with the DM's id as the channel id.

use crate::http::auth::Principal;
use crate::http::{
    id_param, json, json_body, no_content, now, services, user_param, ApiResult, Req,
};
use crate::model::ChannelKind;
use crate::service::dms::{DmUpdate, DmView, NewDm};
use crate::service::Error;

/// DMs are hosted by the home of whoever opens them: a user signed in with a peer's token
/// opens theirs at their own home.
fn require_home(me: &Principal) -> Result<(), Error> {
    if me.local {
        Ok(())
    } else {
        Err(Error::NotHome(
            "open DMs from your home server: it hosts the DMs you open".into(),
        ))
    }
}

pub async fn open_dm(mut req: Req, me: Principal) -> ApiResult {
    let body: NewDm = json_body(&mut req).await?;
    require_home(&me)?;
    let app = req.state();
    let services = &app.services;
    let (kind, name) = services.check_new_dm(me.user, &body)?;
    app.throttle.hit(
        format!("dm_open:user:{}", me.user.to_text()),
        services.config.throttle.dms_per_user_hour,
        3600,
        now(),
    )?;
    services.recipient_homes(&body.recipients)?;
    if kind == ChannelKind::Dm {
        if let Some(dm) = services.existing_dm(me.user, body.recipients[0])? {
            return json(200, &services.get_dm(me.user, dm.id)?);
        }
    }
    let view = services
        .open_dm(me.user, kind, name, body.recipients)
        .await?;
    json(201, &view)
}

/// The DMs hosted here, and at the user's home also those of other boxes as their hosts
/// told, each with whether its host answered the last call this box made to it.
pub async fn my_dms(req: Req, me: Principal) -> ApiResult {
    let app = req.state();
    let mut list = app.services.hosted_dms(me.user)?;
    if me.local {
        for remote in app.services.remote_dms(me.user)? {
            let reachable = app.federation.contacts.get(&remote.host).reachable;
            list.push(DmView::of(&remote.dm, &remote.host, reachable));
        }
    }
    json(200, &list)
}

pub async fn get_dm(req: Req, me: Principal) -> ApiResult {
    json(
        200,
        &services(&req).get_dm(me.user, id_param(&req, "dm_id")?)?,
    )
}

pub async fn update_dm(mut req: Req, me: Principal) -> ApiResult {
    let body: DmUpdate = json_body(&mut req).await?;
    let id = id_param(&req, "dm_id")?;
    json(200, &services(&req).rename_dm(me.user, id, body).await?)
}

pub async fn add_recipient(req: Req, me: Principal) -> ApiResult {
    let id = id_param(&req, "dm_id")?;
    let user = user_param(&req, "user_id", &me)?;
    json(
        200,
        &services(&req).add_dm_recipient(me.user, id, user).await?,
    )
}

pub async fn remove_recipient(req: Req, me: Principal) -> ApiResult {
    let id = id_param(&req, "dm_id")?;
    let user = user_param(&req, "user_id", &me)?;
    services(&req)
        .remove_dm_recipient(me.user, id, user)
        .await?;
    no_content()
}
