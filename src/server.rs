//! Starting a server: the one place that opens the [`App`] and wires HTTP, the local
//! admin channel, LAN discovery and the outbox worker together, and stops them in order.

use crate::app::{admin_socket_path, origin_for, prepare_data_dir, scheme_of, App, StartError};
use crate::config::Config;
use std::future::Future;
use std::sync::Arc;

/// Runs a server on an already bound listener until `shutdown` completes. Tests bind
/// port 0 and call this; `hearth serve` binds the configured address.
pub async fn run(
    listener: smol::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    run_with(listener, config, shutdown, |_| {}).await
}

/// Like [`run`], calling `ready` with the origin once the database, keys and admin
/// channel are open and requests will be served.
pub async fn run_with(
    listener: smol::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(&str),
) -> Result<(), StartError> {
    let local = listener.local_addr()?;
    let origin = origin_for(&config, local);
    // The directory exists before its admin socket path is worked out, so the server and
    // the CLI derive the same path (it depends on the directory's owner and real path).
    prepare_data_dir(&config.data_dir)?;
    let admin_path = admin_socket_path(&config);
    let tls = if config.tls.enabled {
        let tls = crate::lan::tls::ServerTls::load_or_make(&config.tls, &config.data_dir)?;
        log::info!(
            "TLS certificate {} SHA-256 fingerprint {}",
            tls.source.display(),
            crate::lan::tls::display_fingerprint(&tls.fingerprint)
        );
        Some(tls)
    } else {
        None
    };
    let scheme = scheme_of(&config);
    let origins = crate::origins::ServedOrigins::new(
        &origin,
        &config.server.aliases,
        tls.as_ref().map(|t| t.leaf_der.as_slice()),
        local.port(),
    )?
    .listening_on(scheme, local);
    let mut app = App::open(config, origin, scheme)?;
    app.origins = origins;
    let app = Arc::new(app);
    if let Some(tls) = &tls {
        let _ = app.tls_fingerprint.set(tls.fingerprint.clone());
        if let Ok(info) = crate::lan::tls::cert_info(&tls.leaf_der) {
            let _ = app.tls_certificate.set(info);
        }
    }
    let admin = crate::admin::serve(admin_path.clone(), app.clone())?;
    ready(&app.services.origin);
    // LAN discovery starts once requests are served; it never holds up or fails the start.
    let discovery = crate::lan::start(
        &app.services,
        app.discovered.clone(),
        app.tls_fingerprint.get().map(String::as_str),
        local,
    );
    let (stop_outbox, outbox_stopped) = async_channel::bounded::<()>(1);
    let outbox = app.executor.spawn(crate::federation::outbox::run(
        app.federation.clone(),
        outbox_stopped,
    ));
    crate::http::serve(listener, app.clone(), tls.map(|t| t.acceptor), shutdown).await;
    // Withdraw the announcement (mDNS goodbye) before anything else stops.
    if let Some(discovery) = discovery {
        discovery.stop().await;
    }
    // The executor's threads have stopped: run the outbox worker here until it sees the
    // stop and lets go of the app.
    drop(stop_outbox);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while !outbox.is_finished() && std::time::Instant::now() < deadline {
        if !app.executor.try_tick() {
            smol::Timer::after(std::time::Duration::from_millis(2)).await;
        }
    }
    drop(outbox);
    drop(admin);
    // Cancelled tasks (the admin listener's) let go of the app a moment later on their
    // executor's thread: wait for that (briefly), so that the database is closed and its
    // lock released when this returns and a new server can open the same data.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while Arc::strong_count(&app) > 1 && std::time::Instant::now() < deadline {
        smol::Timer::after(std::time::Duration::from_millis(2)).await;
    }
    let _ = std::fs::remove_file(&admin_path);
    Ok(())
}
