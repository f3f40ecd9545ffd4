//! Handlers of direct messages: opening one, listing the user's, reading and naming one,
//! adding and removing people (leaving is removing oneself). The messages of a DM go
//! through the channel routes, with the DM's id as the channel id.

use crate::http::auth::Principal;
use crate::http::{
    id_param, json, json_body, no_content, now, services, user_param, ApiResult, Req,
};
use crate::model::ChannelKind;
use crate::service::dms::{DmUpdate, NewDm};
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
        .open_dm(me.user, kind, name, body.recipients, |_, _| Ok(()))
        .await?;
    json(201, &view)
}

pub async fn my_dms(req: Req, me: Principal) -> ApiResult {
    json(200, &services(&req).hosted_dms(me.user)?)
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
    json(
        200,
        &services(&req)
            .rename_dm(me.user, id, body, |_, _| Ok(()))
            .await?,
    )
}

pub async fn add_recipient(req: Req, me: Principal) -> ApiResult {
    let id = id_param(&req, "dm_id")?;
    let user = user_param(&req, "user_id", &me)?;
    json(
        200,
        &services(&req)
            .add_dm_recipient(me.user, id, user, |_, _| Ok(()))
            .await?,
    )
}

pub async fn remove_recipient(req: Req, me: Principal) -> ApiResult {
    let id = id_param(&req, "dm_id")?;
    let user = user_param(&req, "user_id", &me)?;
    services(&req)
        .remove_dm_recipient(me.user, id, user, |_, _| Ok(()))
        .await?;
    no_content()
}
