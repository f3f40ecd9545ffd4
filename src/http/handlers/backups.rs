//! Handlers of the administrators' backups: the kept ones (list, make one now, download)
//! and a restore uploaded for the next start. Administrators of this box only.

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::federation::require_admin_for;
use crate::http::{json, no_content, text_param, ApiResult, Req};
use crate::storage::archive::Manifest;
use serde_json::{json, Value};

/// Refuses anyone but an administrator; for one, lengthens the request's deadline to
/// `[backup] transfer_secs`, since a whole box's archive takes long to make or move.
fn require_admin(req: &Req, me: &Principal) -> Result<(), ApiError> {
    require_admin_for(req, me, "manage backups")?;
    if let Some(clock) = req.ext::<crate::http::conn::Clock>() {
        let secs = req.state().services.config.backup.transfer_secs;
        clock.extend_request(std::time::Duration::from_secs(secs));
    }
    Ok(())
}

/// What the API shows of an archive's manifest.
fn manifest_view(manifest: &Manifest) -> Value {
    json!({
        "box_name": manifest.box_name,
        "created_at": manifest.created_at,
        "schema_version": manifest.schema_version,
        "hearth_version": manifest.hearth_version,
        "key_fingerprint": manifest.key_fingerprint,
        "tls_fingerprint": manifest.tls_fingerprint,
        "members": manifest.members.len(),
        "bytes": manifest.total_size(),
    })
}

/// `GET /api/v1/admin/backups`: the kept backups, newest first.
pub async fn list(req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    json(200, &req.state().services.list_backups()?)
}

/// `POST /api/v1/admin/backups`: makes a backup now; answered once it is written.
pub async fn create(req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let app = req.state().clone();
    let made = app
        .services
        .make_backup(app.tls_fingerprint.get().cloned())
        .await?;
    json(201, &made)
}

/// `GET /api/v1/admin/backups/:name`: the archive, streamed from disk.
pub async fn download(req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let name = text_param(&req, "name")?;
    let (info, path) = req.state().services.find_backup(&name)?;
    let file = smol::fs::File::open(&path)
        .await
        .map_err(|e| crate::service::Error::Store(e.into()))?;
    let mut response = tide::Response::new(200);
    response.set_body(tide::Body::from_reader(
        futures_lite::io::BufReader::with_capacity(256 * 1024, file),
        usize::try_from(info.size).ok(),
    ));
    response.insert_header("Content-Type", "application/gzip");
    // The name is of a fixed shape (`is_backup_name`): nothing in it needs quoting.
    response.insert_header(
        "Content-Disposition",
        format!("attachment; filename=\"{}\"", info.name),
    );
    Ok(response)
}

/// `POST /api/v1/admin/restore`: the body is an archive; checked completely, it is staged
/// and applied at the next start.
pub async fn stage_restore(mut req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let limit = req.state().services.config.backup.max_restore_bytes;
    if req.len().is_some_and(|n| n as u64 > limit) {
        return Err(crate::service::Error::TooLarge {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        }
        .into());
    }
    let body = req.take_body();
    let app = req.state().clone();
    let manifest = app.services.stage_restore(body).await?;
    json(
        202,
        &json!({ "restore": manifest_view(&manifest), "applies": "at the next start" }),
    )
}

/// `GET /api/v1/admin/restore`: the staged restore, if any.
pub async fn staged_restore(req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    match req.state().services.staged_restore()? {
        Some(manifest) => json(200, &json!({ "restore": manifest_view(&manifest) })),
        None => Err(crate::service::Error::NotFound("restore").into()),
    }
}

/// `DELETE /api/v1/admin/restore`: cancels the staged restore.
pub async fn cancel_restore(req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    if req.state().services.cancel_restore()? {
        no_content()
    } else {
        Err(crate::service::Error::NotFound("restore").into())
    }
}
