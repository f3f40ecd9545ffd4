//! Handlers of direct messages: opening one, listing the user's, reading and naming one,
//! adding and removing people (leaving is removing oneself); and who may DM the user
//! (their policy and blocks). The messages of a DM go through the channel routes, with
//! the DM's id as the channel id.

use crate::app::App;
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::{
    id_param, json, json_body, no_content, now, services, user_param, ApiResult, Req,
};
use crate::model::{ChannelKind, Dm, UserId};
use crate::service::dm_consent::DmSettings;
use crate::service::dms::{DmJoined, DmUpdate, DmView, NewDm};
use crate::service::Error;
use std::time::Duration;

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

/// Asks the home of each of `newcomers` homed elsewhere, at once and waiting for the
/// answer, whether they accept the DM from `by` (`dm_joined`): a refusal is 403
/// `dm_refused`, and a home that does not answer is 502 `home_unreachable`, since who may
/// DM someone is theirs to say.
async fn ask_homes(app: &App, dm: &Dm, by: UserId, newcomers: &[UserId]) -> Result<(), ApiError> {
    let services = &app.services;
    let homes = services.recipient_homes(newcomers)?;
    let shared_guild_with = services.guild_sharers(by, &dm.recipients)?;
    let timeout = Duration::from_secs(services.config.federation.request_timeout_secs);
    let mut asked: Vec<&String> = Vec::new();
    for home in homes.values() {
        if *home == services.origin || asked.contains(&home) {
            continue;
        }
        asked.push(home);
        let body = serde_json::to_value(DmJoined {
            id: None,
            dm: dm.clone(),
            by,
            shared_guild_with: shared_guild_with.clone(),
        })
        .unwrap_or_default();
        let unreachable = |why: String| {
            ApiError::new(
                502,
                "home_unreachable",
                format!("{home}, the home of someone in this DM, did not answer: {why}"),
            )
        };
        let answer = crate::federation::directory::call_now(
            &app.federation,
            home,
            "dm_joined",
            body,
            timeout,
        )
        .await
        .map_err(|e| unreachable(e.to_string()))?;
        match answer.status {
            200..=299 => {}
            // The home's own words are not passed on: a peer's text would reach the user
            // unchecked (any length, any claim).
            403 => {
                return Err(Error::Refused {
                    code: "dm_refused",
                    message: "this person does not accept DMs from you".to_string(),
                }
                .into());
            }
            status => return Err(unreachable(format!("it answered {status}"))),
        }
    }
    Ok(())
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
        let other = body.recipients[0];
        if let Some(dm) = services.existing_dm(me.user, other)? {
            return json(200, &services.get_dm(me.user, dm.id)?);
        }
        // The other person may have opened it at their home: that one is the DM.
        if let Some(remote) = services
            .remote_dms(me.user)?
            .into_iter()
            .find(|r| r.dm.kind == ChannelKind::Dm && r.dm.recipients.contains(&other))
        {
            let reachable = app.federation.contacts.get(&remote.host).reachable;
            return json(200, &DmView::of(&remote.dm, &remote.host, reachable));
        }
    }
    let mut recipients = vec![me.user];
    recipients.extend(&body.recipients);
    let dm = Dm {
        id: services.next_id(),
        kind,
        owner: me.user,
        name,
        recipients,
        created_at: now(),
    };
    ask_homes(app, &dm, me.user, &body.recipients).await?;
    let view = services
        .open_dm(dm.id, me.user, kind, dm.name, body.recipients)
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
    let app = req.state();
    let current = app.services.get_dm(me.user, id)?;
    if current.kind == ChannelKind::GroupDm && !current.recipients.contains(&user) {
        let mut recipients = current.recipients;
        recipients.push(user);
        let dm = Dm {
            id,
            kind: current.kind,
            owner: current.owner_id,
            name: current.name,
            recipients,
            created_at: current.created_at,
        };
        ask_homes(app, &dm, me.user, &[user]).await?;
    }
    json(
        200,
        &app.services.add_dm_recipient(me.user, id, user).await?,
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

/// Who may DM the user, and blocks: kept at the user's home, so a peer's user is sent
/// there.
fn require_own_home(me: &Principal) -> Result<(), Error> {
    if me.local {
        Ok(())
    } else {
        Err(Error::NotHome(
            "who may DM you is kept at your home server".into(),
        ))
    }
}

pub async fn dm_settings(req: Req, me: Principal) -> ApiResult {
    require_own_home(&me)?;
    json(200, &services(&req).dm_settings(me.user)?)
}

pub async fn update_dm_settings(mut req: Req, me: Principal) -> ApiResult {
    let body: DmSettings = json_body(&mut req).await?;
    require_own_home(&me)?;
    json(200, &services(&req).set_dm_settings(me.user, body).await?)
}

pub async fn blocks(req: Req, me: Principal) -> ApiResult {
    require_own_home(&me)?;
    json(200, &services(&req).blocked(me.user)?)
}

pub async fn block(req: Req, me: Principal) -> ApiResult {
    require_own_home(&me)?;
    let other = user_param(&req, "user_id", &me)?;
    services(&req).block(me.user, other).await?;
    no_content()
}

pub async fn unblock(req: Req, me: Principal) -> ApiResult {
    require_own_home(&me)?;
    let other = user_param(&req, "user_id", &me)?;
    services(&req).unblock(me.user, other).await?;
    no_content()
}
