//! Starting a server: the one place that opens the [`App`] and wires HTTP, the local
//! admin channel, LAN discovery and the outbox worker together, and stops them in order.

use crate::app::{admin_socket_path, origin_for, prepare_data_dir, scheme_of, App, StartError};
use crate::config::Config;
use crate::lan::names;
use std::future::Future;
use std::sync::Arc;

/// The origin of a server listening on `local`: `public_url`; else, listening on every
/// address, the name the box was first announced under (kept in the data directory from
/// the first start on); else the bound address.
fn choose_origin(
    config: &Config,
    local: std::net::SocketAddr,
    announced_name: impl FnOnce() -> String,
) -> Result<String, StartError> {
    if config.public_url.is_some() {
        return Ok(origin_for(config, local));
    }
    let data_dir = &config.data_dir;
    let Some(origin) = names::default_origin(data_dir, scheme_of(config), local, announced_name)
    else {
        return Ok(origin_for(config, local));
    };
    if names::remembered_origin(data_dir).is_none() {
        names::remember_origin(data_dir, &origin)?;
        log::info!(
            "no public_url: this box is {origin}, the name it is announced under on the LAN \
             (kept in {})",
            data_dir.join(names::ORIGIN_FILE).display()
        );
    }
    Ok(origin)
}

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
    // The directory exists before its admin socket path is worked out, so the server and
    // the CLI derive the same path (it depends on the directory's owner and real path).
    prepare_data_dir(&config.data_dir)?;
    let admin_path = admin_socket_path(&config);
    let scheme = scheme_of(&config);
    // Asking Avahi may wait for it to settle: once, for the origin and the certificate.
    let announced = std::cell::OnceCell::new();
    let announced_name = || announced.get_or_init(names::announced_name).clone();
    let origin = choose_origin(&config, local, announced_name)?;
    let mut app = App::open(config, origin, scheme)?;
    let config = app.services.config.clone();
    // The certificate names the host of its own mDNS announcements, which comes from the
    // server key: it is made once the app (and the key) is open.
    let tls = if config.tls.enabled {
        let mdns_host = config
            .discovery
            .enabled
            .then(|| crate::lan::mdns::announced_host(&app.services.server_key.public_bytes()));
        let names = names::certificate_names(
            &config.tls.names,
            Some(&announced_name()),
            mdns_host.as_deref(),
            &app.services.origin,
            local,
        );
        let tls = crate::lan::tls::ServerTls::load_or_make(&config.tls, &config.data_dir, &names)?;
        log::info!(
            "TLS certificate {} SHA-256 fingerprint {}",
            tls.source.display(),
            crate::lan::tls::display_fingerprint(&tls.fingerprint)
        );
        Some(tls)
    } else {
        None
    };
    app.origins = crate::origins::ServedOrigins::new(
        &app.services.origin,
        &config.server.aliases,
        tls.as_ref().map(|t| t.leaf_der.as_slice()),
        local.port(),
    )?
    .listening_on(scheme, local);
    let app = Arc::new(app);
    if let Some(tls) = &tls {
        let _ = app.tls_fingerprint.set(tls.fingerprint.clone());
        if let Ok(info) = crate::lan::tls::cert_info(&tls.leaf_der) {
            let _ = app.tls_certificate.set(info);
        }
    }
    let setup_code = app
        .services
        .prepare_setup()
        .await
        .map_err(|e| StartError::Invalid(format!("cannot prepare the setup: {e}")))?;
    let admin = crate::admin::serve(admin_path.clone(), app.clone())?;
    if setup_code.is_some() || !app.services.claimed().unwrap_or(true) {
        log::info!(
            "this box has no administrator yet: open {} in a browser to set it up              (`hearth setup-code` prints the setup code)",
            app.services.origin
        );
    }
    let console = crate::lan::console::ConsoleFiles {
        code_file: app.services.config.setup.code_file.clone(),
        issue_file: app.services.config.setup.issue_file.clone(),
        origin: app.services.origin.clone(),
        scheme,
        local,
        fingerprint: app.tls_fingerprint.get().cloned(),
    }
    .start(app.services.clone());
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
    let (stop_backups, backups_stopped) = async_channel::bounded::<()>(1);
    let backups = app.executor.spawn(crate::service::backups::schedule(
        app.services.clone(),
        app.tls_fingerprint.get().cloned(),
        backups_stopped,
    ));
    crate::http::serve(listener, app.clone(), tls.map(|t| t.acceptor), shutdown).await;
    drop(stop_backups);
    drop(backups);
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
    if let Some(console) = console {
        console.cancel().await;
    }
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
