//! Announcements read, names cut, the table of what was heard, conflicts, the listing.

use super::announce::*;
use super::heard::*;
use crate::auth::jose::b64u;
use crate::model::{federation::fingerprint, Peer};
use serde_json::json;
use std::collections::HashMap;

fn txt(origin: &str, key: &[u8; 32], tls: Option<&str>) -> HashMap<String, String> {
    let mut map = HashMap::new();
    map.insert("origin".into(), origin.into());
    map.insert("key".into(), b64u(key));
    map.insert("key_fp".into(), fingerprint(key));
    if let Some(tls) = tls {
        map.insert("tls".into(), tls.into());
    }
    map.insert("v".into(), "1".into());
    map
}

fn found(name: &str, origin: &str, key: u8, now: u64) -> Found {
    parse_announcement(
        &format!("{name}._hearth._tcp.local."),
        "hearth-x.local.",
        8443,
        &["10.0.0.2".parse().unwrap()],
        &txt(origin, &[key; 32], Some(&"ab".repeat(32))),
        now,
    )
    .unwrap()
}

fn peer(origin: &str, name: &str, key: u8) -> Peer {
    Peer {
        origin: origin.into(),
        name: name.into(),
        server_key: [key; 32],
        added_at: 0,
        approved: true,
    }
}

const OWN: Own<'static> = Own {
    origin: "https://10.0.0.1:8443",
    name: "Home",
    key: [1; 32],
};

#[test]
fn parses_valid_announcements_and_refuses_bad_ones() {
    let key = [7u8; 32];
    let ok = parse_announcement(
        "Hearth B\\.x._hearth._tcp.local.",
        "hearth-1.local.",
        8443,
        &["10.0.0.3".parse().unwrap(), "10.0.0.2".parse().unwrap()],
        &txt("https://10.0.0.2:8443/", &key, Some(&"AB".repeat(32))),
        5,
    )
    .unwrap();
    assert_eq!(ok.name, "Hearth B.x");
    assert_eq!(ok.origin, "https://10.0.0.2:8443");
    assert_eq!(ok.key, key);
    assert_eq!(ok.tls_fingerprint, Some("ab".repeat(32)));
    assert_eq!(ok.addresses[0].to_string(), "10.0.0.2");
    let parse = |map: &HashMap<String, String>| {
        parse_announcement("x._hearth._tcp.local.", "h.local.", 1, &[], map, 0)
    };
    let mut bad = txt("https://10.0.0.2:8443", &key, None);
    bad.insert("v".into(), "2".into());
    assert!(parse(&bad).is_err(), "another protocol version");
    let mut bad = txt("https://10.0.0.2:8443", &key, None);
    bad.insert("key_fp".into(), fingerprint(&[8; 32]));
    assert!(parse(&bad).is_err(), "key_fp of another key");
    let mut bad = txt("https://10.0.0.2:8443", &key, None);
    bad.insert("key".into(), "short".into());
    assert!(parse(&bad).is_err(), "invalid key");
    assert!(parse(&txt("https://0.0.0.0:8443", &key, None)).is_err());
    assert!(parse(&txt("https://127.0.0.1:8443", &key, None)).is_err());
    assert!(parse(&txt("ftp://host", &key, None)).is_err());
    assert!(parse(&txt("https://h.local", &key, Some("nothex"))).is_err());
    assert!(parse(&txt("https://h.local", &key, None)).is_ok());
}

#[test]
fn names() {
    assert_eq!(base_name("Hearth B (2)"), "hearth b");
    assert_eq!(base_name("Hearth B"), "hearth b");
    assert_eq!(base_name("Hearth (B)"), "hearth (b)");
    let long = "x".repeat(80);
    assert_eq!(
        base_name(&long),
        base_name(&format!("{} (2)", instance_label(&long)))
    );
    assert_eq!(instance_label("  \u{7}Kitchen\n "), "Kitchen");
    assert_eq!(instance_label(""), "Hearth");
    assert!(instance_label(&"é".repeat(100)).len() <= MAX_INSTANCE_BYTES);
    assert!(same_fingerprint("AB:cd", "abcd"));
    assert!(!same_fingerprint("", ""));
}

#[test]
fn table_ignores_its_own_key_refreshes_and_expires() {
    let table = Discovered::new([1; 32], "https://10.0.0.1:8443", "Home");
    assert_eq!(
        table.observe(found("Home", "https://10.0.0.1:8443", 1, 0)),
        Observed::Own
    );
    assert_eq!(
        table.observe(found("B", "https://10.0.0.2:8443", 2, 10)),
        Observed::New { clash: false }
    );
    assert_eq!(
        table.observe(found("B", "https://10.0.0.2:8443", 2, 20)),
        Observed::Refreshed
    );
    let entries = table.entries(20);
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].first_seen, entries[0].last_seen), (10, 20));
    // Still announced: kept however long ago it was first heard.
    assert_eq!(table.entries(20 + 5 * EXPIRE_SECS).len(), 1);
    let later = 20 + 5 * EXPIRE_SECS;
    assert_eq!(table.entries(later).len(), 1, "kept while announced");
    table.removed("b._hearth._tcp.local.");
    assert!(!table.entries(later)[0].present);
    assert_eq!(table.entries(later + EXPIRE_SECS).len(), 1);
    assert!(table.entries(later + EXPIRE_SECS + 1).is_empty());
}

#[test]
fn a_known_key_announced_with_another_tls_certificate_or_host_is_a_conflict() {
    let table = Discovered::new([1; 32], "https://10.0.0.1:8443", "Home");
    let real = found("B", "https://10.0.0.2:8443", 2, 10);
    assert_eq!(table.observe(real.clone()), Observed::New { clash: false });
    let other_tls = Found {
        tls_fingerprint: Some("cd".repeat(32)),
        ..real.clone()
    };
    assert_eq!(
        table.observe(other_tls.clone()),
        Observed::New { clash: true }
    );
    // Repeating the changed claim refreshes it; it stays a conflict beside the first.
    assert_eq!(table.observe(other_tls), Observed::Refreshed);
    let other_host = Found {
        host: "spoof.local.".into(),
        ..real.clone()
    };
    assert_eq!(table.observe(other_host), Observed::New { clash: true });
    let entries = table.entries(20);
    assert_eq!(entries.len(), 3);
    let assessed = assess(&entries, &[], &OWN);
    assert!(assessed.iter().all(Assessed::conflict), "{assessed:?}");
    assert!(assessed
        .iter()
        .any(|a| a.conflicts.iter().any(|c| c.contains("TLS certificate"))));
    assert!(assessed
        .iter()
        .any(|a| a.conflicts.iter().any(|c| c.contains("from host"))));
    // The unchanged claim alone is none.
    assert!(!assess(&[real], &[], &OWN)[0].conflict());
}

#[test]
fn claims_of_this_server_clash() {
    let table = Discovered::new([1; 32], "https://10.0.0.1:8443", "Home");
    let clash = Observed::New { clash: true };
    assert_eq!(
        table.observe(found("home (2)", "https://10.0.0.9:8443", 5, 0)),
        clash
    );
    assert_eq!(
        table.observe(found("Other", "https://10.0.0.1:8443", 6, 0)),
        clash
    );
    assert_eq!(
        table.observe(found("Third", "https://10.0.0.3:8443", 7, 0)),
        Observed::New { clash: false }
    );
}

#[test]
fn listing_text() {
    let real = found("B", "https://10.0.0.2:8443", 2, 0);
    let spoof = found("B (2)", "https://10.0.0.2:8443", 9, 0);
    let listing = json!({
        "running": true,
        "advertised_as": "Home",
        "self": {"origin": OWN.origin, "fingerprint": fingerprint(&OWN.key)},
        "servers": assess(&[real, spoof], &[], &OWN).iter().map(view).collect::<Vec<_>>(),
    });
    let text = format_listing(&listing);
    assert!(text.contains("announced as \"Home\""), "{text}");
    assert!(text.contains("2 server(s) heard"), "{text}");
    assert!(text.contains(&fingerprint(&[9; 32])), "{text}");
    assert_eq!(text.matches("CONFLICT: not trusted").count(), 2, "{text}");
    assert!(!text.contains("--discovered"), "nothing to add: {text}");
    let off = format_listing(&json!({"running": false, "note": "turned off", "servers": []}));
    assert!(
        off.contains("off: turned off") && off.contains("0 server(s)"),
        "{off}"
    );
}

#[test]
fn table_is_bounded() {
    let table = Discovered::new([1; 32], "https://10.0.0.1:8443", "Home");
    for i in 0..(MAX_ENTRIES as u64 + 10) {
        let mut f = found(
            &format!("S{i}"),
            &format!("https://10.0.{}.{}:1", i / 200, i % 200 + 2),
            2,
            i,
        );
        f.key[0] = (i % 250) as u8 + 2;
        f.key[1] = (i / 250) as u8;
        table.observe(f);
    }
    let entries = table.entries(MAX_ENTRIES as u64);
    assert_eq!(entries.len(), MAX_ENTRIES);
    assert!(
        entries.iter().all(|e| e.first_seen >= 10),
        "the oldest went first"
    );
}

#[test]
fn conflicts_are_marked_on_both_sides_and_against_peers_and_self() {
    let real = found("B", "https://10.0.0.2:8443", 2, 0);
    let plain = found("C", "https://10.0.0.3:8443", 3, 0);
    let assessed = assess(&[real.clone(), plain.clone()], &[], &OWN);
    assert!(assessed.iter().all(|a| !a.conflict() && !a.peer));

    // Same origin, another key: both marked.
    let spoof = found("B (2)", "https://10.0.0.2:8443", 9, 0);
    let assessed = assess(&[real.clone(), spoof.clone(), plain.clone()], &[], &OWN);
    let by_key = |k: u8| assessed.iter().find(|a| a.found.key == [k; 32]).unwrap();
    assert!(by_key(2).conflict() && by_key(9).conflict());
    assert!(!by_key(3).conflict());

    // Same name (after the mDNS rename suffix), another origin and key.
    let namesake = found("b (3)", "https://10.0.0.9:8443", 8, 0);
    let assessed = assess(&[real.clone(), namesake], &[], &OWN);
    assert!(assessed.iter().all(Assessed::conflict));

    // A pinned peer's origin or name under another key; the same key is a peer.
    let pinned = [peer("https://10.0.0.2:8443", "B", 2)];
    let assessed = assess(&[real.clone(), spoof.clone()], &pinned, &OWN);
    let real_view = assessed.iter().find(|a| a.found.key == [2; 32]).unwrap();
    assert!(real_view.peer);
    let spoof_view = assessed.iter().find(|a| a.found.key == [9; 32]).unwrap();
    assert!(spoof_view.conflict() && !spoof_view.peer);
    let elsewhere = found("B", "https://10.0.0.7:8443", 7, 0);
    let assessed = assess(&[elsewhere], &pinned, &OWN);
    assert!(
        assessed[0].conflict(),
        "the name of a pinned peer, another key"
    );
    let assessed = assess(&[plain], &[peer("https://10.0.0.3:8443", "C", 4)], &OWN);
    assert!(
        assessed[0].conflict(),
        "the origin of a pinned peer, another key"
    );

    // This server's origin or name under another key.
    let me_too = found("Home", "https://10.0.0.5:8443", 5, 0);
    assert!(assess(&[me_too], &[], &OWN)[0].conflict());
    let my_origin = found("X", OWN.origin, 6, 0);
    assert!(assess(&[my_origin], &[], &OWN)[0].conflict());

    let v = view(&assess(&[real], &[], &OWN)[0]);
    assert_eq!(v["conflict"], false);
    assert_eq!(v["fingerprint"], fingerprint(&[2; 32]));
    assert_eq!(v["tls_fingerprint"], "ab".repeat(32));
}

#[test]
fn the_web_client_is_announced_as_https_with_path() {
    use super::mdns::{announced_host, web_announcement};
    let key = [7u8; 32];
    let host = announced_host(&key);
    assert!(
        host.starts_with("hearth-") && host.ends_with(".local."),
        "{host}"
    );
    let local: std::net::SocketAddr = "0.0.0.0:443".parse().unwrap();
    let info = web_announcement("Kitchen Hearth", &host, local, true).unwrap();
    assert_eq!(info.get_type(), "_https._tcp.local.");
    assert_eq!(info.get_fullname(), "Kitchen Hearth._https._tcp.local.");
    assert_eq!(info.get_hostname(), host);
    assert_eq!(info.get_port(), 443);
    let properties = info.get_properties();
    assert_eq!(properties.len(), 1, "only path: no key, no origin");
    assert_eq!(properties.get_property_val_str("path"), Some("/"));
    let plain = web_announcement(
        "Kitchen Hearth",
        &host,
        "0.0.0.0:8080".parse().unwrap(),
        false,
    )
    .unwrap();
    assert_eq!(plain.get_type(), "_http._tcp.local.");
}

#[test]
fn pins_files_of_certificates_alone_still_load_and_keys_are_kept() {
    use super::tls::Pins;
    let dir = std::env::temp_dir().join(format!("hearth-pins-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pins");
    let (cert, key) = ("ab".repeat(32), "cd".repeat(32));
    // As an older version wrote it: `origin certificate`.
    std::fs::write(
        &file,
        format!("https://b.local {cert}\nhttps://c.local {cert} {key}\n"),
    )
    .unwrap();
    let pins = Pins::in_file(file.clone());
    assert_eq!(pins.get("https://b.local"), Some(cert.clone()));
    assert_eq!(pins.key("https://b.local"), None);
    assert_eq!(pins.key("https://c.local"), Some(key.clone()));
    pins.set("https://d.local", &cert.to_uppercase());
    let again = Pins::in_file(file);
    assert_eq!(again.key("https://c.local"), Some(key));
    assert_eq!(again.get("https://d.local"), Some(cert));
    std::fs::remove_dir_all(&dir).unwrap();
}
