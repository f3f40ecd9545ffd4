//! The mDNS daemon (`mdns-sd`, its own thread): announces this server and browses for
//! others; a task on smol's global executor reads its events into the [`Discovered`]
//! table. [`start`] never fails the server: without multicast it logs once and the
//! server runs on.

use super::announce::{
    instance_label, instance_name, parse_announcement, reachable_origin, PROTOCOL_VERSION,
    SERVICE_TYPE,
};
use super::heard::{Discovered, Observed};
use crate::auth::jose::b64u;
use crate::model::federation::fingerprint;
use crate::service::Services;
use crate::system::now;
use futures_lite::FutureExt;
use mdns_sd::{DaemonEvent, IfKind, Receiver, ServiceDaemon, ServiceEvent, ServiceInfo};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The running announcement and browse; [`Discovery::stop`] withdraws the announcement.
pub struct Discovery {
    daemon: ServiceDaemon,
    fullname: Option<String>,
    /// The web client's announcement (`_https._tcp`), when made.
    web_fullname: Option<String>,
    task: Option<smol::Task<()>>,
    stopped: bool,
}

fn log_off(discovered: &Discovered, level: log::Level, reason: String) {
    log::log!(level, "LAN discovery off: {reason}");
    discovered.set_status(|s| {
        s.running = false;
        s.note = Some(reason);
    });
}

/// What this server announces, for a server listening on `local`.
fn announcement(
    services: &Services,
    tls_fingerprint: Option<&str>,
    local: SocketAddr,
) -> Result<ServiceInfo, String> {
    let origin = &services.origin;
    if !reachable_origin(origin) {
        return Err(format!(
            "its origin {origin} names no host others can reach; set public_url (e.g. \"https://hearth.local:{}\")",
            local.port()
        ));
    }
    let key = services.server_key.public_bytes();
    let key_fp = fingerprint(&key);
    let host = announced_host(&key);
    let mut txt = vec![
        ("origin".to_string(), origin.clone()),
        ("key".to_string(), b64u(&key)),
        ("key_fp".to_string(), key_fp),
    ];
    if let Some(tls) = tls_fingerprint {
        txt.push(("tls".to_string(), tls.to_string()));
    }
    txt.push(("v".to_string(), PROTOCOL_VERSION.to_string()));
    let instance = instance_label(&services.config.name);
    service_info(SERVICE_TYPE, &instance, &host, local, &txt)
}

/// The mDNS host name this server's announcements point at: `hearth-` and the start of
/// its key's fingerprint, so two boxes never claim one name (and none claims the name
/// the system's own mDNS responder, Avahi on the image, answers for).
pub fn announced_host(server_key: &[u8; 32]) -> String {
    format!(
        "hearth-{}.local.",
        fingerprint(server_key)
            .replace(':', "")
            .get(..8)
            .unwrap_or("0")
    )
}

/// One service at `host`, port `local.port()`, whose addresses follow the interfaces (one
/// that comes up later is announced on then), limited to the listening address, or to
/// its family for a wildcard.
fn service_info(
    service_type: &str,
    instance: &str,
    host: &str,
    local: SocketAddr,
    txt: &[(String, String)],
) -> Result<ServiceInfo, String> {
    let ip = local.ip();
    let info = ServiceInfo::new(service_type, instance, host, (), local.port(), txt).map(|info| {
        let mut info = info.enable_addr_auto();
        info.set_interfaces(vec![match ip {
            IpAddr::V4(v4) if v4.is_unspecified() => IfKind::IPv4,
            IpAddr::V6(v6) if v6.is_unspecified() => IfKind::All,
            ip => IfKind::Addr(ip),
        }]);
        info
    });
    info.map_err(|e| format!("cannot build the announcement: {e}"))
}

/// The web client's announcement: `_https._tcp` (or `_http._tcp` without TLS) with TXT
/// `path=/` (RFC 6763 §7 and the DNS-SD service registry's `path` key), at the same
/// host and port as the Hearth announcement, so that phones, browsers and Home
/// Assistant list the box as a web page. It proposes nothing and carries no key.
pub fn web_announcement(
    name: &str,
    host: &str,
    local: SocketAddr,
    https: bool,
) -> Result<ServiceInfo, String> {
    let service_type = if https {
        WEB_SERVICE_TYPE_HTTPS
    } else {
        WEB_SERVICE_TYPE_HTTP
    };
    let txt = [("path".to_string(), "/".to_string())];
    service_info(service_type, &instance_label(name), host, local, &txt)
}

/// The DNS-SD type under which a box serving HTTPS announces its web client.
pub const WEB_SERVICE_TYPE_HTTPS: &str = "_https._tcp.local.";
/// The DNS-SD type under which a box serving plain HTTP announces its web client.
pub const WEB_SERVICE_TYPE_HTTP: &str = "_http._tcp.local.";

/// Starts announcing this server (listening on `local`) and browsing for others, unless
/// turned off or bound to loopback only. Returns at once; trouble with multicast is
/// logged once and leaves the server running without discovery. What is heard goes into
/// `discovered`; `tls_fingerprint` is announced when the server serves HTTPS.
pub fn start(
    services: &Services,
    discovered: Arc<Discovered>,
    tls_fingerprint: Option<&str>,
    local: SocketAddr,
) -> Option<Discovery> {
    if !services.config.discovery.enabled {
        discovered.set_status(|s| {
            s.note = Some("turned off in the configuration ([discovery] enabled = false)".into())
        });
        return None;
    }
    if local.ip().is_loopback() {
        log_off(
            &discovered,
            log::Level::Info,
            format!("listening on {local}, which nobody on the LAN can reach"),
        );
        return None;
    }
    let daemon = match ServiceDaemon::new() {
        Ok(d) => d,
        Err(e) => {
            log_off(
                &discovered,
                log::Level::Warn,
                format!("cannot start mDNS: {e}"),
            );
            return None;
        }
    };
    // Only where the server listens: its own interface, or (for a wildcard) every
    // interface of its address family. Never loopback.
    let ip = local.ip();
    let selected = if ip.is_unspecified() {
        let mut off = vec![IfKind::LoopbackV4, IfKind::LoopbackV6];
        if ip.is_ipv4() {
            off.push(IfKind::IPv6);
        }
        daemon.disable_interface(off)
    } else {
        daemon
            .disable_interface(IfKind::All)
            .and_then(|()| daemon.enable_interface(IfKind::Addr(ip)))
    };
    if let Err(e) = selected {
        log_off(
            &discovered,
            log::Level::Warn,
            format!("cannot choose mDNS interfaces: {e}"),
        );
        let _ = daemon.shutdown();
        return None;
    }
    let monitor = daemon.monitor().ok();
    let mut fullname = None;
    let mut note = None;
    match announcement(services, tls_fingerprint, local) {
        Ok(info) => {
            let name = info.get_fullname().to_string();
            match daemon.register(info) {
                Ok(()) => fullname = Some(name),
                Err(e) => note = Some(format!("not announced: {e}")),
            }
        }
        Err(reason) => note = Some(format!("not announced: {reason}")),
    }
    let mut web_fullname = None;
    if fullname.is_some() {
        let host = announced_host(&services.server_key.public_bytes());
        let web = web_announcement(
            &services.config.name,
            &host,
            local,
            tls_fingerprint.is_some(),
        )
        .and_then(|info| {
            let name = info.get_fullname().to_string();
            daemon
                .register(info)
                .map(|()| name)
                .map_err(|e| e.to_string())
        });
        match web {
            Ok(name) => web_fullname = Some(name),
            Err(e) => log::warn!("LAN discovery: the web client is not announced: {e}"),
        }
    }
    if let Some(note) = &note {
        log::warn!("LAN discovery: {note}");
    }
    let events = match daemon.browse(SERVICE_TYPE) {
        Ok(events) => events,
        Err(e) => {
            log_off(
                &discovered,
                log::Level::Warn,
                format!("cannot browse for {SERVICE_TYPE}: {e}"),
            );
            let _ = daemon.shutdown();
            return None;
        }
    };
    let advertised_as = fullname.as_deref().map(instance_name);
    if let Some(name) = &advertised_as {
        log::info!(
            "LAN discovery: announcing \"{name}\" as {SERVICE_TYPE} on port {}",
            local.port()
        );
    }
    discovered.set_status(|s| {
        s.running = true;
        s.advertised_as = advertised_as;
        s.note = note;
    });
    let task = smol::spawn(run(
        daemon.clone(),
        discovered,
        events,
        monitor,
        fullname.clone(),
    ));
    Some(Discovery {
        daemon,
        fullname,
        web_fullname,
        task: Some(task),
        stopped: false,
    })
}

enum Step {
    Service(Option<ServiceEvent>),
    Daemon(Option<DaemonEvent>),
    Browse,
}

async fn next<T>(receiver: &Option<Receiver<T>>) -> Option<T> {
    match receiver {
        Some(r) => r.recv_async().await.ok(),
        None => std::future::pending().await,
    }
}

/// Reads the daemon's events into the table until cancelled.
async fn run(
    daemon: ServiceDaemon,
    table: Arc<Discovered>,
    events: Receiver<ServiceEvent>,
    monitor: Option<Receiver<DaemonEvent>>,
    mut fullname: Option<String>,
) {
    let mut events = Some(events);
    let mut monitor = monitor;
    // When the browse must be started again (its subscription ended).
    let mut browse_again: Option<Instant> = None;
    let mut logged_error = false;
    loop {
        let step = async { Step::Service(next(&events).await) }
            .or(async { Step::Daemon(next(&monitor).await) })
            .or(async {
                match browse_again {
                    Some(at) => {
                        smol::Timer::at(at).await;
                    }
                    None => std::future::pending::<()>().await,
                }
                Step::Browse
            })
            .await;
        match step {
            Step::Service(Some(event)) => handle(&table, event),
            Step::Service(None) => {
                // The subscription ended (the daemon found us too slow): browse again soon.
                events = None;
                browse_again = Some(Instant::now() + Duration::from_secs(1));
            }
            Step::Daemon(Some(DaemonEvent::Error(e))) => {
                if !logged_error {
                    logged_error = true;
                    log::warn!("LAN discovery: mDNS error (further ones not logged): {e}");
                    table.set_status(|s| s.note = Some(format!("mDNS error: {e}")));
                }
            }
            Step::Daemon(Some(DaemonEvent::NameChange(change))) => {
                if fullname
                    .as_deref()
                    .is_some_and(|f| f.eq_ignore_ascii_case(&change.original))
                {
                    let name = instance_name(&change.new_name);
                    log::warn!(
                        "LAN discovery: another service has this server's name; announcing as \"{name}\""
                    );
                    fullname = Some(change.new_name.clone());
                    table.set_status(|s| s.advertised_as = Some(name));
                }
            }
            Step::Daemon(Some(_)) => {}
            Step::Daemon(None) => monitor = None,
            Step::Browse => {
                // A new browse also re-reads every announcement still in the cache.
                match daemon.browse(SERVICE_TYPE) {
                    Ok(renewed) => {
                        events = Some(renewed);
                        browse_again = None;
                    }
                    Err(e) => {
                        if !logged_error {
                            logged_error = true;
                            log::warn!("LAN discovery: cannot browse: {e}");
                        }
                        browse_again = Some(Instant::now() + Duration::from_secs(10));
                    }
                }
            }
        }
    }
}

fn handle(table: &Discovered, event: ServiceEvent) {
    match event {
        ServiceEvent::ServiceResolved(resolved) => {
            let mut txt = HashMap::new();
            for property in resolved.get_properties().iter() {
                // RFC 6763 §6.4: only the first occurrence of a key counts.
                txt.entry(property.key().to_ascii_lowercase())
                    .or_insert_with(|| property.val_str().to_string());
            }
            let addresses: Vec<IpAddr> = resolved
                .get_addresses()
                .iter()
                .map(|a| a.to_ip_addr())
                .collect();
            let Ok(found) = parse_announcement(
                resolved.get_fullname(),
                resolved.get_hostname(),
                resolved.get_port(),
                &addresses,
                &txt,
                now(),
            ) else {
                return;
            };
            let (name, origin, fp) = (
                found.name.clone(),
                found.origin.clone(),
                fingerprint(&found.key),
            );
            match table.observe(found) {
                Observed::New { clash: false } => {
                    log::info!("LAN discovery: found \"{name}\" at {origin}, key fingerprint {fp}");
                }
                Observed::New { clash: true } => {
                    log::warn!(
                        "LAN discovery: CONFLICT: \"{name}\" at {origin} (key fingerprint {fp}) claims the origin or name of a server known under another key, or another TLS certificate or host for a known one; not trusted"
                    );
                }
                Observed::Own | Observed::Refreshed => {}
            }
        }
        ServiceEvent::ServiceRemoved(_, fullname) => table.removed(&fullname),
        _ => {}
    }
}

impl Discovery {
    /// Withdraws the announcement (mDNS goodbye) and stops the daemon, waiting at most a
    /// second for each.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.cancel().await;
        }
        let wait = |receiver: Option<Receiver<_>>| async move {
            if let Some(receiver) = receiver {
                let _ = async { receiver.recv_async().await.ok() }
                    .or(async {
                        smol::Timer::after(Duration::from_secs(1)).await;
                        None
                    })
                    .await;
            }
        };
        for fullname in [&self.web_fullname, &self.fullname].into_iter().flatten() {
            wait(self.daemon.unregister(fullname).ok()).await;
        }
        if let Ok(status) = self.daemon.shutdown() {
            self.stopped = true;
            let _ = async { status.recv_async().await.ok() }
                .or(async {
                    smol::Timer::after(Duration::from_secs(1)).await;
                    None
                })
                .await;
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        if !self.stopped {
            // Not stopped cleanly: the daemon still says goodbye as it exits.
            let _ = self.daemon.shutdown();
        }
    }
}
