//! The box's health and numbers: `GET /healthz` (public), `GET /metrics` (Prometheus
//! text, for administrators and loopback), and the administrators' status API under
//! `/api/v1/admin/`: `status`, `voice`, `log` and `tls` (read, and upload your own).

use super::super::auth::{authenticate, Principal};
use super::super::error::ApiError;
use super::super::federation::require_admin_for;
use super::super::{json, read_body, ApiResult, Req};
use crate::app::App;
use crate::lan::tls;
use crate::metrics::Exposition;
use crate::service::health;
use serde::Deserialize;
use serde_json::{json, Value};

/// `GET /healthz`: 200 `{"status": "ok", …}` when every check passes, else 503 with the
/// same shape and the failing checks named in `failing`. Nothing in it is secret: free
/// space, the outbox backlog and how long a commit took.
pub async fn healthz(req: Req) -> ApiResult {
    let app = req.state();
    let report = app.health.report(&app.services).await;
    let status = if report.healthy() { 200 } else { 503 };
    let mut response = json(status, &report)?;
    if status == 503 {
        response.insert_header("Retry-After", "5");
    }
    Ok(response)
}

/// Whether `peer` (the socket's address, `ip:port`) is this machine's loopback.
pub fn from_loopback(peer: Option<&str>) -> bool {
    peer.and_then(|p| p.parse::<std::net::SocketAddr>().ok())
        .is_some_and(|a| a.ip().to_canonical().is_loopback())
}

/// `GET /metrics`: Prometheus text. A scraper on the box itself (loopback) needs no
/// token; anyone else must be an administrator of this box with a DPoP access token.
pub async fn metrics(req: Req) -> ApiResult {
    if !from_loopback(req.peer_addr()) {
        let me = authenticate(&req).await?;
        require_admin_for(&req, &me, "read metrics from another machine")?;
    }
    let text = exposition(req.state())?;
    let mut response = tide::Response::new(200);
    response.set_body(text);
    response.insert_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    Ok(response)
}

fn exposition(app: &App) -> Result<String, ApiError> {
    let mut out = Exposition::new();
    let rooms = app.voice.rooms_now();
    let participants: usize = rooms.iter().map(|(_, _, people)| people.len()).sum();
    let frames = app.voice.frames();
    let outbox = app
        .services
        .store
        .table_len(crate::storage::tables::OUTBOX)
        .map_err(crate::service::Error::Store)?;
    let process = health::process_stats();
    out.gauge(
        "hearth_http_connections",
        "Open HTTP connections, websockets included.",
        app.http_connections.get(),
    );
    out.gauge(
        "hearth_gateway_sockets",
        "Open realtime gateway websockets.",
        app.gateway.sessions_running() as u64,
    );
    out.gauge(
        "hearth_voice_sockets",
        "Open voice websockets.",
        app.voice.sessions_running() as u64,
    );
    out.gauge(
        "hearth_voice_rooms",
        "Voice rooms running.",
        rooms.len() as u64,
    );
    out.gauge(
        "hearth_voice_participants",
        "People in voice rooms.",
        participants as u64,
    );
    out.counter(
        "hearth_voice_late_frames_total",
        "Voice packets dropped because they arrived after their playout time.",
        frames.late.get(),
    );
    out.counter(
        "hearth_voice_concealed_frames_total",
        "Voice frames concealed (FEC or PLC) because their packet was missing.",
        frames.concealed.get(),
    );
    out.gauge(
        "hearth_outbox_depth",
        "Server-to-server calls waiting in the outbox.",
        outbox,
    );
    out.seconds_histogram(
        "hearth_commit_seconds",
        "Group commits, from the start of the write transaction to its durable end.",
        app.services.store.commit_times(),
    );
    out.gauge(
        "process_resident_memory_bytes",
        "Resident memory of the server process.",
        process.rss_bytes,
    );
    out.gauge(
        "hearth_uptime_seconds",
        "Seconds since the server started.",
        app.started.elapsed().as_secs(),
    );
    Ok(out.finish())
}

fn require_admin(req: &Req, me: &Principal) -> Result<(), ApiError> {
    require_admin_for(req, me, "see the box's status")
}

/// `GET /api/v1/admin/status`: version, uptime, memory, CPU time, load, storage, the
/// connections and sockets open, voice now, the outbox, health and the TLS certificate.
pub async fn status(req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let app = req.state().clone();
    let config = &app.services.config;
    let report = app.health.report(&app.services).await;
    let database = crate::app::database_path(config);
    let database_bytes = smol::unblock(move || std::fs::metadata(&database).map(|m| m.len()))
        .await
        .unwrap_or(0);
    let (files_bytes, files_partial) = app.health.files_bytes(&app.services.files_dir).await;
    let space = app.health.space().await.ok();
    let process = health::process_stats();
    let rooms = app.voice.rooms_now();
    let participants: usize = rooms.iter().map(|(_, _, people)| people.len()).sum();
    json(
        200,
        &json!({
            "name": config.name,
            "origin": app.services.origin,
            "fingerprint": crate::model::federation::fingerprint(
                &app.services.server_key.public_bytes()
            ),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": app.started.elapsed().as_secs(),
            "memory": {"rss_bytes": process.rss_bytes},
            "cpu": {
                "user_secs": process.cpu_user_secs,
                "system_secs": process.cpu_system_secs,
                "load": process.load,
            },
            "storage": {
                "database_bytes": database_bytes,
                "files_bytes": files_bytes,
                "files_bytes_partial": files_partial,
                "free_bytes": space.map(|s| s.free),
                "total_bytes": space.map(|s| s.total),
            },
            "connections": app.http_connections.get(),
            "gateway_sockets": app.gateway.sessions_running(),
            "voice": {
                "rooms": rooms.len(),
                "participants": participants,
                "late_frames": app.voice.frames().late.get(),
                "concealed_frames": app.voice.frames().concealed.get(),
            },
            "outbox": {"waiting": report.outbox_backlog},
            "health": report,
            "tls": tls_view(&app),
        }),
    )
}

/// `GET /api/v1/admin/voice`: the voice rooms running now, each with who is in it.
pub async fn voice(req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let app = req.state();
    let mut rooms = app.voice.rooms_now();
    rooms.sort_by_key(|(channel, _, _)| *channel);
    let listing: Vec<Value> = rooms
        .into_iter()
        .map(|(channel, guild, people)| {
            let channel_name = app
                .services
                .store
                .read(|tx| tx.get(crate::storage::tables::CHANNEL, channel))
                .ok()
                .flatten()
                .map(|c| c.name);
            json!({
                "channel_id": channel,
                "guild_id": guild,
                "channel_name": channel_name,
                "participants": people,
            })
        })
        .collect();
    json(200, &json!({ "rooms": listing }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /api/v1/admin/log?limit=N`: the latest warnings and errors, newest first.
pub async fn log(req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let query: LogQuery = req
        .query()
        .map_err(|_| ApiError::bad_request("invalid_query", "limit must be a number of records"))?;
    let limit = query
        .limit
        .unwrap_or(crate::logging::RECENT_CAPACITY)
        .min(crate::logging::RECENT_CAPACITY);
    json(
        200,
        &json!({
            "capacity": crate::logging::RECENT_CAPACITY,
            "records": crate::logging::recent().latest(limit),
        }),
    )
}

/// The certificate served now and, when it differs, the one the next start loads.
fn tls_view(app: &App) -> Value {
    let config = &app.services.config;
    if !config.tls.enabled {
        return json!({"enabled": false});
    }
    let next = tls::read_leaf(&tls::certificate_path(&config.tls, &config.data_dir)).ok();
    let serving = app.tls_certificate.get();
    let pending = next.filter(|n| serving.is_none_or(|s| s.fingerprint != n.fingerprint));
    json!({
        "enabled": true,
        "certificate": serving,
        "pending": pending,
        "configured_in_file": config.tls.cert_file.is_some(),
        "uploaded": config.tls.cert_file.is_none() && tls::is_uploaded(&config.data_dir),
        "upload_allowed": config.tls.cert_file.is_none(),
    })
}

/// `GET /api/v1/admin/tls`.
pub async fn get_tls(req: Req, me: Principal) -> ApiResult {
    require_admin_for(&req, &me, "see the TLS certificate")?;
    json(200, &tls_view(req.state()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsUpload {
    /// The certificate chain, leaf first (PEM).
    certificate: String,
    /// The leaf's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    key: String,
}

/// `PUT /api/v1/admin/tls` `{"certificate", "key"}` (PEM): checks the pair (it parses,
/// the key is the certificate's, it has not expired) and writes it to `DATA_DIR/tls/`,
/// served from the next start (see docs/design.md, "TLS upload").
pub async fn put_tls(mut req: Req, me: Principal) -> ApiResult {
    require_admin_for(&req, &me, "change the TLS certificate")?;
    let config = &req.state().services.config;
    if !config.tls.enabled {
        return Err(ApiError::new(
            409,
            "tls_disabled",
            "this box serves plain HTTP ([tls] enabled = false)",
        ));
    }
    if config.tls.cert_file.is_some() {
        return Err(ApiError::new(
            409,
            "tls_configured",
            "the certificate is set in the configuration file ([tls] cert_file); change it there",
        ));
    }
    let bytes = read_body(&mut req, 2 * tls::MAX_PEM_BYTES + 1024).await?;
    let upload: TlsUpload = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body must be {{\"certificate\", \"key\"}} in PEM: {e}"),
        )
    })?;
    let now = crate::system::now() as i64;
    let info = tls::check_pair(&upload.certificate, &upload.key, now)
        .map_err(|e| ApiError::bad_request("invalid_certificate", e.to_string()))?;
    let data_dir = req.state().services.config.data_dir.clone();
    smol::unblock(move || tls::install_uploaded(&data_dir, &upload.certificate, &upload.key))
        .await
        .map_err(|e| {
            log::error!("storing an uploaded TLS certificate: {e}");
            ApiError::new(500, "storage_error", e.to_string())
        })?;
    log::info!(
        "TLS certificate uploaded (SHA-256 {}); served from the next start",
        tls::display_fingerprint(&info.fingerprint)
    );
    json(
        200,
        &json!({
            "pending": info,
            "applies": "at the next start",
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::from_loopback;

    #[test]
    fn only_loopback_peers_count_as_the_box_itself() {
        assert!(from_loopback(Some("127.0.0.1:5000")));
        assert!(from_loopback(Some("127.0.0.2:5000")));
        assert!(from_loopback(Some("[::1]:5000")));
        assert!(from_loopback(Some("[::ffff:127.0.0.1]:5000")));
        assert!(!from_loopback(Some("192.168.1.20:5000")));
        assert!(!from_loopback(Some("[fe80::1]:5000")));
        assert!(!from_loopback(Some("[::ffff:10.0.0.1]:5000")));
        assert!(!from_loopback(Some("localhost:5000")));
        assert!(!from_loopback(None));
    }
}
