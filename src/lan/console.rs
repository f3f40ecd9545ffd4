//! What the box tells an owner who has no console session: a text file with the setup
//! code (`[setup] code_file`, on the Pi image a file of the FAT boot partition that any
//! computer reads) while the box is unclaimed, and an issue file for agetty (`[setup]
//! issue_file`), the banner above the console's login prompt on HDMI and serial, with the
//! box's addresses, its TLS fingerprint and, until claimed, the setup code.
//!
//! Both are rewritten when what they say changes (an address from DHCP, the claim): the
//! task looks every few seconds while the box is unclaimed, every half minute after. The
//! code file is deleted once the box is claimed.

use crate::service::Services;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often the files are brought up to date while the box waits for its owner.
const UNCLAIMED_PERIOD: Duration = Duration::from_secs(2);
/// And after: only addresses change then.
const CLAIMED_PERIOD: Duration = Duration::from_secs(30);

/// What the files are made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The box's name.
    pub name: String,
    /// Where a browser reaches the box, the configured origin first.
    pub urls: Vec<String>,
    /// SHA-256 of the TLS certificate, lowercase hex (none when serving plain HTTP).
    pub fingerprint: Option<String>,
    /// The setup code, while one is needed.
    pub code: Option<String>,
    /// Whether the box has been claimed.
    pub claimed: bool,
}

/// The setup code file, CRLF-terminated so any computer's editor shows its lines.
pub fn code_file_text(facts: &Facts) -> Option<String> {
    let code = facts.code.as_ref()?;
    let mut lines = vec![
        format!("Set up {}", facts.name),
        String::new(),
        "Open this address in a browser:".to_string(),
    ];
    lines.extend(facts.urls.iter().map(|u| format!("    {u}/")));
    lines.push(String::new());
    lines.push("and enter this setup code:".into());
    lines.push(String::new());
    lines.push(format!("    {code}"));
    lines.push(String::new());
    if let Some(fp) = &facts.fingerprint {
        lines.push("Before you type a password, check that the browser shows this".into());
        lines.push("certificate fingerprint (SHA-256) for the box:".into());
        lines.push(format!("    {}", super::tls::display_fingerprint(fp)));
        lines.push(String::new());
    }
    lines.push("The box deletes this file once it is set up.".into());
    Some(lines.join("\r\n") + "\r\n")
}

/// The agetty issue text. A backslash starts an agetty escape: none is written.
pub fn issue_text(facts: &Facts) -> String {
    let clean = |s: &str| s.replace('\\', "/");
    let mut lines = vec![format!("{} (Hearth)", clean(&facts.name))];
    for url in &facts.urls {
        lines.push(format!("  Web: {}/", clean(url)));
    }
    if let Some(fp) = &facts.fingerprint {
        lines.push(format!(
            "  TLS certificate SHA-256: {}",
            super::tls::display_fingerprint(fp)
        ));
    }
    match (&facts.code, facts.claimed) {
        (Some(code), false) => lines.push(format!(
            "  Setup code: {code}  (open the address above in a browser)"
        )),
        (None, false) => lines.push("  Not set up yet: open the address above in a browser".into()),
        _ => {}
    }
    lines.join("\n") + "\n\n"
}

/// Where a browser reaches the box: the origin, then (when listening on every address)
/// the box's own addresses at the same scheme and port.
pub fn reachable_urls(origin: &str, scheme: &str, local: SocketAddr) -> Vec<String> {
    let mut urls = vec![origin.trim_end_matches('/').to_string()];
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port = if local.port() == default_port {
        String::new()
    } else {
        format!(":{}", local.port())
    };
    let mut add = |ip: IpAddr| {
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let url = format!("{scheme}://{host}{port}");
        if !urls.contains(&url) {
            urls.push(url);
        }
    };
    if local.ip().is_unspecified() {
        if let Ok(interfaces) = if_addrs::get_if_addrs() {
            for interface in interfaces {
                let ip = interface.ip();
                let link_local_v6 =
                    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
                if !ip.is_loopback() && !link_local_v6 {
                    add(ip);
                }
            }
        }
    } else if !local.ip().is_loopback() {
        add(local.ip());
    }
    urls
}

/// Writes `text` to `path` whole or not at all (temp file, then rename).
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".new");
    let temp = PathBuf::from(temp);
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, path)
}

/// The files to keep and where.
pub struct ConsoleFiles {
    /// `[setup] code_file`.
    pub code_file: Option<PathBuf>,
    /// `[setup] issue_file`.
    pub issue_file: Option<PathBuf>,
    /// The origin.
    pub origin: String,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The listening address.
    pub local: SocketAddr,
    /// The TLS fingerprint.
    pub fingerprint: Option<String>,
}

impl ConsoleFiles {
    fn facts(&self, services: &Services) -> Facts {
        let claimed = services.claimed().unwrap_or(false);
        Facts {
            name: services
                .box_name()
                .unwrap_or_else(|_| services.config.name.clone()),
            urls: reachable_urls(&self.origin, self.scheme, self.local),
            fingerprint: self.fingerprint.clone(),
            code: services.setup_code().ok().flatten().filter(|_| !claimed),
            claimed,
        }
    }

    /// Brings both files up to date with `facts` (unless they already say it).
    fn write(&self, facts: &Facts, last: &mut Option<Facts>) {
        if last.as_ref() == Some(facts) {
            return;
        }
        if let Some(path) = &self.code_file {
            let result = match code_file_text(facts) {
                Some(text) => write_atomically(path, &text),
                None => match std::fs::remove_file(path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    other => other,
                },
            };
            if let Err(e) = result {
                log::warn!("cannot update the setup code file {}: {e}", path.display());
            }
        }
        if let Some(path) = &self.issue_file {
            if let Err(e) = write_atomically(path, &issue_text(facts)) {
                log::warn!("cannot write the console banner {}: {e}", path.display());
            }
        }
        *last = Some(facts.clone());
    }

    /// Keeps the files current until the task is dropped; `None` when neither is
    /// configured. The first write happens before this returns.
    pub fn start(self, services: Arc<Services>) -> Option<smol::Task<()>> {
        if self.code_file.is_none() && self.issue_file.is_none() {
            return None;
        }
        let mut last = None;
        let facts = self.facts(&services);
        self.write(&facts, &mut last);
        Some(smol::spawn(async move {
            loop {
                let period = if last.as_ref().is_some_and(|f| f.claimed) {
                    CLAIMED_PERIOD
                } else {
                    UNCLAIMED_PERIOD
                };
                smol::Timer::after(period).await;
                let facts = self.facts(&services);
                self.write(&facts, &mut last);
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(code: Option<&str>, claimed: bool) -> Facts {
        Facts {
            name: "Hearth".into(),
            urls: vec!["https://hearth.local".into(), "https://192.168.1.20".into()],
            fingerprint: Some("ab01".into()),
            code: code.map(str::to_string),
            claimed,
        }
    }

    #[test]
    fn the_code_file_names_the_address_code_and_fingerprint() {
        let text = code_file_text(&facts(Some("ABCD-EFGH-JKMN"), false)).unwrap();
        assert!(text.contains("    https://hearth.local/\r\n"), "{text}");
        assert!(text.contains("    https://192.168.1.20/\r\n"), "{text}");
        assert!(text.contains("    ABCD-EFGH-JKMN\r\n"), "{text}");
        assert!(text.contains("    AB:01\r\n"), "{text}");
        assert!(code_file_text(&facts(None, true)).is_none());
    }

    #[test]
    fn the_banner_shows_the_code_until_claimed() {
        let text = issue_text(&facts(Some("ABCD-EFGH-JKMN"), false));
        assert!(text.contains("Web: https://hearth.local/"), "{text}");
        assert!(text.contains("TLS certificate SHA-256: AB:01"), "{text}");
        assert!(text.contains("Setup code: ABCD-EFGH-JKMN"), "{text}");
        let text = issue_text(&facts(None, true));
        assert!(!text.contains("Setup code"), "{text}");
        assert!(!text.contains('\\'));
    }
}
