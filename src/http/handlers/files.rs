//! Handlers of files: upload to a channel and download, with the `Content-Disposition`
//! the download is served with.

use crate::http::auth::Principal;
use crate::http::error::{header_value, ApiError};
use crate::http::{id_param, json, services, text_param, throttle, Action, ApiResult, Req};
use serde::Deserialize;

#[derive(Deserialize)]
struct UploadQuery {
    filename: Option<String>,
}

pub async fn upload(mut req: Req, me: Principal) -> ApiResult {
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

pub async fn download(req: Req, me: Principal) -> ApiResult {
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
