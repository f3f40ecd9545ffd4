//! Claiming a fresh box from a browser (setup code, rate limits, one owner however many
//! claim at once, the code file and the console banner), registration modes, and what
//! administrators do with accounts: make them, make or unmake administrators, disable,
//! delete, hand out password-reset links; never leaving the box without an administrator.

use crate::common::*;
use hearth::client::{Client, GatewayMessage, Response};
use hearth::config::Config;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

const PASSWORD: &str = "password-of-some-length";

/// A box that offers the setup from a browser, its code and banner files in `files`.
fn fresh_box(files: &std::path::Path, adjust: impl FnOnce(&mut Config)) -> TestServer {
    let files = files.to_path_buf();
    TestServer::start_with(move |c| {
        c.setup.from_browser = true;
        c.setup.code_file = Some(files.join("hearth-setup.txt"));
        c.setup.issue_file = Some(files.join("hearth.issue"));
        adjust(c);
    })
}

async fn claim_as(
    server: &TestServer,
    who: &Client,
    code: Option<&str>,
    username: &str,
) -> Response {
    let owner = who
        .account_body(&server.origin, username, PASSWORD)
        .expect("account body");
    let body = json!({
        "code": code,
        "name": "Our box",
        "registration": "open",
        "owner": owner,
    });
    who.send(&server.url("/api/v1/setup"), "POST", Some(body), false)
        .await
        .expect("claim request")
}

async fn well_known(server: &TestServer) -> Value {
    Client::new()
        .send(&server.url("/.well-known/hearth"), "GET", None, false)
        .await
        .expect("well-known")
        .json()
        .expect("json")
}

fn setup_code_cli(server: &TestServer) -> std::process::Output {
    hearth_command(&["setup-code", "--data"])
        .arg(&server.data)
        .output()
        .expect("run hearth setup-code")
}

fn error_code(answer: &Response) -> String {
    answer.json().expect("json error")["error"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn read(path: &PathBuf) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[test]
fn the_setup_code_claims_the_box_once_and_wrong_codes_are_refused() {
    let files = tempfile::tempdir().unwrap();
    let code_file = files.path().join("hearth-setup.txt");
    let issue_file = files.path().join("hearth.issue");
    let server = fresh_box(files.path(), |_| {});
    block_on(async {
        let info = well_known(&server).await;
        assert_eq!(
            (
                &info["claimed"],
                &info["setup"],
                &info["setup_code_required"]
            ),
            (&json!(false), &json!(true), &json!(true)),
            "{info}"
        );
        // The code: from the CLI (through the admin socket), the file and the banner.
        let out = setup_code_cli(&server);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let code = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert_eq!(code.len(), 14, "{code}");
        let text = read(&code_file).expect("the code file is written");
        assert!(text.contains(&code), "{text}");
        assert!(text.contains(&server.origin), "{text}");
        let banner = read(&issue_file).expect("the banner is written");
        assert!(banner.contains(&format!("Setup code: {code}")), "{banner}");
        assert!(
            banner.contains(&format!("Web: {}/", server.origin)),
            "{banner}"
        );

        let owner = Client::new();
        // Only the box's own page may claim it from a browser.
        let body = json!({"code": code, "name": "x", "registration": "open",
            "owner": owner.account_body(&server.origin, "owner", PASSWORD).unwrap()});
        let foreign = owner
            .raw(
                &server.url("/api/v1/setup"),
                "POST",
                &[
                    ("Origin", "https://elsewhere.example".to_string()),
                    ("Content-Type", "application/json".to_string()),
                ],
                body.to_string().into_bytes(),
            )
            .await
            .unwrap();
        assert_eq!(
            (foreign.status, error_code(&foreign).as_str()),
            (403, "cross_origin_setup")
        );
        let wrong = claim_as(&server, &owner, Some("AAAA-BBBB-CCCC"), "owner").await;
        assert_eq!(
            (wrong.status, error_code(&wrong).as_str()),
            (403, "wrong_setup_code")
        );
        let missing = claim_as(&server, &owner, None, "owner").await;
        assert_eq!(missing.status, 403);

        // Typed in lower case with spaces: the same code.
        let typed = code.to_lowercase().replace('-', " ");
        let claimed = claim_as(&server, &owner, Some(&typed), "owner").await;
        assert_eq!(claimed.status, 201, "{:?}", claimed.json());
        owner
            .login_password(&server.origin, "owner", PASSWORD)
            .await
            .expect("the owner signs in");
        let me = api_json(&owner, "GET", &server.url("/api/v1/users/@me"), json!({})).await;
        assert_eq!(me["is_admin"], json!(true));
        let info = well_known(&server).await;
        assert_eq!(
            (&info["claimed"], &info["setup"]),
            (&json!(true), &json!(false))
        );
        assert_eq!(info["name"], json!("Our box"));

        let again = claim_as(&server, &Client::new(), Some(&code), "second").await;
        assert_eq!(
            (again.status, error_code(&again).as_str()),
            (410, "already_claimed")
        );

        // The code is gone: the file deleted, the banner without it, the CLI says so.
        let gone = eventually(Duration::from_secs(10), async || {
            !code_file.exists() && read(&issue_file).is_some_and(|b| !b.contains("Setup code"))
        })
        .await;
        assert!(gone, "banner: {:?}", read(&issue_file));
        let out = setup_code_cli(&server);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("set up already"));
    });
}

#[test]
fn setup_code_reads_the_database_when_no_server_runs() {
    let files = tempfile::tempdir().unwrap();
    let mut server = fresh_box(files.path(), |_| {});
    let running = setup_code_cli(&server);
    assert!(running.status.success());
    server.stop();
    let stopped = setup_code_cli(&server);
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    assert_eq!(
        stopped.stdout, running.stdout,
        "the code is kept until the claim"
    );
}

#[test]
fn wrong_codes_are_rate_limited_per_address_and_overall() {
    let files = tempfile::tempdir().unwrap();
    let server = fresh_box(files.path(), |c| c.setup.attempts_per_address_hour = 3);
    block_on(async {
        let code = String::from_utf8(setup_code_cli(&server).stdout).unwrap();
        let who = Client::new();
        for _ in 0..3 {
            let answer = claim_as(&server, &who, Some("AAAA-BBBB-CCCC"), "owner").await;
            assert_eq!(answer.status, 403);
        }
        // Spent: even the right code waits now.
        let answer = claim_as(&server, &who, Some(code.trim()), "owner").await;
        assert_eq!(
            (answer.status, error_code(&answer).as_str()),
            (429, "rate_limited")
        );
        assert!(answer.header("retry-after").is_some());
    });
    let files = tempfile::tempdir().unwrap();
    let server = fresh_box(files.path(), |c| c.setup.attempts_per_hour = 2);
    block_on(async {
        let who = Client::new();
        for _ in 0..2 {
            let answer = claim_as(&server, &who, Some("AAAA-BBBB-CCCC"), "owner").await;
            assert_eq!(answer.status, 403);
        }
        let answer = claim_as(&server, &who, Some("AAAA-BBBB-CCCD"), "owner").await;
        assert_eq!(answer.status, 429);
    });
}

#[test]
fn concurrent_claims_make_one_owner() {
    let files = tempfile::tempdir().unwrap();
    let server = fresh_box(files.path(), |_| {});
    let code = String::from_utf8(setup_code_cli(&server).stdout).unwrap();
    let code = code.trim().to_string();
    let statuses: Vec<u16> = block_on(async {
        let claims: Vec<_> = (0..6)
            .map(|i| {
                let (origin, code) = (server.origin.clone(), code.clone());
                smol::spawn(async move {
                    let who = Client::new();
                    let owner = who
                        .account_body(&origin, &format!("owner{i}"), PASSWORD)
                        .unwrap();
                    let body = json!({"code": code, "name": "Box", "registration": "invite", "owner": owner});
                    who.send(&format!("{origin}/api/v1/setup"), "POST", Some(body), false)
                        .await
                        .unwrap()
                        .status
                })
            })
            .collect();
        let mut out = Vec::new();
        for claim in claims {
            out.push(claim.await);
        }
        out
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 410),
        "{statuses:?}"
    );
    block_on(async {
        let info = well_known(&server).await;
        assert_eq!(info["registration"], json!("invite"));
        // The refused claims left no account behind.
        let mut accounts = 0;
        for i in 0..6 {
            let who = Client::new();
            if who
                .login_password(&server.origin, &format!("owner{i}"), PASSWORD)
                .await
                .is_ok()
            {
                accounts += 1;
            }
        }
        assert_eq!(accounts, 1);
    });
}

#[test]
fn the_first_visitor_claims_without_a_code_when_configured() {
    let files = tempfile::tempdir().unwrap();
    let server = fresh_box(files.path(), |c| c.setup.first_visitor_claims = true);
    block_on(async {
        let info = well_known(&server).await;
        assert_eq!(info["setup_code_required"], json!(false));
        assert!(!files.path().join("hearth-setup.txt").exists());
        let who = Client::new();
        let answer = claim_as(&server, &who, None, "first").await;
        assert_eq!(answer.status, 201, "{:?}", answer.json());
    });
}

/// A claimed box and its owner, signed in.
async fn claimed(server: &TestServer) -> Client {
    let code = String::from_utf8(setup_code_cli(server).stdout).unwrap();
    let owner = Client::new();
    let answer = claim_as(server, &owner, Some(code.trim()), "owner").await;
    assert_eq!(answer.status, 201);
    owner
        .login_password(&server.origin, "owner", PASSWORD)
        .await
        .unwrap();
    owner
}

async fn register_body(
    server: &TestServer,
    who: &Client,
    name: &str,
    invite: Option<&str>,
) -> Response {
    let mut body = who.account_body(&server.origin, name, PASSWORD).unwrap();
    if let Some(code) = invite {
        body["invite"] = json!(code);
    }
    who.send(&server.url("/api/v1/register"), "POST", Some(body), false)
        .await
        .unwrap()
}

async fn set_mode(server: &TestServer, owner: &Client, mode: &str) {
    let answer = owner
        .patch(
            &server.url("/api/v1/admin/settings"),
            json!({ "registration": mode }),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    assert_eq!(well_known(server).await["registration"], json!(mode));
}

#[test]
fn registration_modes_open_invite_closed() {
    let files = tempfile::tempdir().unwrap();
    let server = fresh_box(files.path(), |_| {});
    block_on(async {
        let owner = claimed(&server).await;
        let answer = register_body(&server, &Client::new(), "ann", None).await;
        assert_eq!(answer.status, 201);

        set_mode(&server, &owner, "closed").await;
        let answer = register_body(&server, &Client::new(), "bob", None).await;
        assert_eq!(
            (answer.status, error_code(&answer).as_str()),
            (403, "registration_closed")
        );

        set_mode(&server, &owner, "invite").await;
        let guild = guild_on(&owner, &server.origin, "Home").await;
        let answer = register_body(&server, &Client::new(), "bob", None).await;
        assert_eq!(
            (answer.status, error_code(&answer).as_str()),
            (403, "invite_required")
        );
        let answer = register_body(&server, &Client::new(), "bob", Some("nosuchcode")).await;
        assert_eq!(
            (answer.status, error_code(&answer).as_str()),
            (403, "invalid_invite")
        );
        let bob = Client::new();
        let answer = register_body(&server, &bob, "bob", Some(&guild.code)).await;
        assert_eq!(answer.status, 201, "{:?}", answer.json());
        bob.login_password(&server.origin, "bob", PASSWORD)
            .await
            .unwrap();
        let guilds = api_json(
            &bob,
            "GET",
            &server.url("/api/v1/users/@me/guilds"),
            json!({}),
        )
        .await;
        assert_eq!(
            guilds[0]["id"],
            json!(guild.id),
            "registered with the invite: a member"
        );
        let invites = api_json(
            &owner,
            "GET",
            &server.url(&format!("/api/v1/guilds/{}/invites", guild.id)),
            json!({}),
        )
        .await;
        assert_eq!(invites[0]["uses"], json!(1));

        // Settings round trip: description and a bounded icon.
        let icon = "data:image/png;base64,iVBORw0KGgo=";
        let answer = owner
            .patch(
                &server.url("/api/v1/admin/settings"),
                json!({"name": "Renamed", "description": "Our family's box", "icon": icon}),
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        let settings = api_json(
            &owner,
            "GET",
            &server.url("/api/v1/admin/settings"),
            json!({}),
        )
        .await;
        assert_eq!(
            (
                &settings["name"],
                &settings["description"],
                &settings["icon"]
            ),
            (&json!("Renamed"), &json!("Our family's box"), &json!(icon))
        );
        let info = well_known(&server).await;
        assert_eq!(info["icon_url"], json!(server.url("/api/v1/box/icon")));
        let bytes = Client::new()
            .send(&server.url("/api/v1/box/icon"), "GET", None, false)
            .await
            .unwrap();
        assert_eq!(
            (bytes.status, bytes.header("content-type")),
            (200, Some("image/png"))
        );
        let bad = owner
            .patch(
                &server.url("/api/v1/admin/settings"),
                json!({"icon": "data:image/svg+xml;base64,PHN2Zz4="}),
            )
            .await
            .unwrap();
        assert_eq!(
            (bad.status, error_code(&bad).as_str()),
            (400, "invalid_icon")
        );
    });
}

async fn create_user(server: &TestServer, admin: &Client, name: &str) -> (Client, String) {
    let person = Client::new();
    let mut body = person.account_body(&server.origin, name, PASSWORD).unwrap();
    body.as_object_mut().unwrap().remove("device_certificate");
    let made = api_json(admin, "POST", &server.url("/api/v1/admin/users"), body).await;
    person
        .login_password(&server.origin, name, PASSWORD)
        .await
        .unwrap();
    (person, made["id"].as_str().unwrap().to_string())
}

#[test]
fn administrators_manage_accounts_and_never_lose_the_last_administrator() {
    let files = tempfile::tempdir().unwrap();
    let server = fresh_box(files.path(), |_| {});
    block_on(async {
        let owner = claimed(&server).await;
        let owner_id = owner.user_id(&server.origin).unwrap();
        let (carol, carol_id) = create_user(&server, &owner, "carol").await;
        let (_dave, _) = create_user(&server, &owner, "dave").await;

        let page = api_json(
            &owner,
            "GET",
            &server.url("/api/v1/admin/users?limit=2"),
            json!({}),
        )
        .await;
        let names: Vec<&str> = page["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["carol", "dave"]);
        let after = page["next"].as_str().unwrap();
        let page = api_json(
            &owner,
            "GET",
            &server.url(&format!("/api/v1/admin/users?after={after}")),
            json!({}),
        )
        .await;
        assert_eq!(page["users"][0]["username"], json!("owner"));
        assert_eq!(page["users"][0]["admin"], json!(true));
        let found = api_json(
            &owner,
            "GET",
            &server.url("/api/v1/admin/users?q=AVE"),
            json!({}),
        )
        .await;
        assert_eq!(found["users"].as_array().unwrap().len(), 1);

        // The only administrator cannot be demoted, disabled or deleted.
        let me = server.url(&format!("/api/v1/admin/users/{owner_id}"));
        for change in [json!({"admin": false}), json!({"disabled": true})] {
            let answer = owner.patch(&me, change).await.unwrap();
            assert_eq!(
                (answer.status, error_code(&answer).as_str()),
                (409, "last_admin")
            );
        }
        let answer = owner.delete(&me).await.unwrap();
        assert_eq!(
            (answer.status, error_code(&answer).as_str()),
            (409, "last_admin")
        );

        // Carol becomes one; then the owner may step down.
        let carol_url = server.url(&format!("/api/v1/admin/users/{carol_id}"));
        let made = api_json(&owner, "PATCH", &carol_url, json!({"admin": true})).await;
        assert_eq!(made["admin"], json!(true));
        let answer = carol.patch(&me, json!({"admin": false})).await.unwrap();
        assert_eq!(answer.status, 200);
        let answer = owner.get(&server.url("/api/v1/admin/users")).await.unwrap();
        assert_eq!(answer.status, 403, "no longer an administrator");

        // Disabling: the token stops at once, the gateway socket closes, refresh and
        // sign-in are refused.
        let stream = owner.events(&server.origin, None).await.expect("events");
        // Connected first (the socket opens after `events` returns).
        loop {
            match stream.next().await {
                Some(GatewayMessage::Ready { .. }) => break,
                Some(GatewayMessage::Disconnected { reason, .. }) => panic!("{reason}"),
                Some(_) => continue,
                None => panic!("the event stream stopped"),
            }
        }
        let owner_url = server.url(&format!("/api/v1/admin/users/{owner_id}"));
        let disabled = api_json(&carol, "PATCH", &owner_url, json!({"disabled": true})).await;
        assert_eq!(disabled["disabled"], json!(true));
        let closed = futures_lite::future::or(
            async {
                loop {
                    match stream.next().await {
                        Some(GatewayMessage::Disconnected { code, .. }) => return code,
                        Some(_) => continue,
                        None => return None,
                    }
                }
            },
            async {
                smol::Timer::after(Duration::from_secs(10)).await;
                Some(0)
            },
        )
        .await;
        assert_eq!(
            closed,
            Some(4010),
            "the disabled user's socket is closed as signed out"
        );
        drop(stream);
        let answer = owner.get(&server.url("/api/v1/users/@me")).await.unwrap();
        assert_eq!(answer.status, 401);
        assert!(owner.refresh(&server.origin).await.is_err());
        assert!(owner
            .login_password(&server.origin, "owner", PASSWORD)
            .await
            .is_err());
        api_json(&carol, "PATCH", &owner_url, json!({"disabled": false})).await;
        owner
            .login_password(&server.origin, "owner", PASSWORD)
            .await
            .expect("enabled again");

        // Deleting.
        let answer = carol.delete(&owner_url).await.unwrap();
        assert_eq!(answer.status, 204);
        assert!(owner
            .login_password(&server.origin, "owner", PASSWORD)
            .await
            .is_err());
        let answer = carol.delete(&owner_url).await.unwrap();
        assert_eq!(answer.status, 404);
    });
}

#[test]
fn reset_links_work_once_and_expire() {
    let files = tempfile::tempdir().unwrap();
    let server = fresh_box(files.path(), |_| {});
    block_on(async {
        let owner = claimed(&server).await;
        let (_erin, erin_id) = create_user(&server, &owner, "erin").await;
        let link = api_json(
            &owner,
            "POST",
            &server.url(&format!("/api/v1/admin/users/{erin_id}/reset-link")),
            json!({}),
        )
        .await;
        let url = link["url"].as_str().unwrap();
        let secret = url
            .split("#reset=")
            .nth(1)
            .expect("the link carries its secret");
        assert!(url.starts_with(&server.origin));
        let path = server.url(&format!("/api/v1/password-resets/{secret}"));
        let anyone = Client::new();
        let preview = anyone
            .send(&path, "GET", None, false)
            .await
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(preview["username"], json!("erin"));
        let new_password = "a-brand-new-password";
        let answer = anyone
            .send(
                &path,
                "POST",
                Some(json!({"password": new_password})),
                false,
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{:?}", answer.json());
        let erin = Client::new();
        assert!(erin
            .login_password(&server.origin, "erin", PASSWORD)
            .await
            .is_err());
        erin.login_password(&server.origin, "erin", new_password)
            .await
            .expect("new password");
        let backup = api_json(
            &erin,
            "GET",
            &server.url("/api/v1/users/@me/key-backup"),
            json!({}),
        )
        .await;
        assert_eq!(
            backup["key_backup"],
            Value::Null,
            "the old backup cannot be opened: dropped"
        );
        let again = anyone
            .send(
                &path,
                "POST",
                Some(json!({"password": "yet-another-password"})),
                false,
            )
            .await
            .unwrap();
        assert_eq!(again.status, 404, "single use");
    });
    let files = tempfile::tempdir().unwrap();
    let server = fresh_box(files.path(), |c| c.auth.reset_link_secs = 0);
    block_on(async {
        let owner = claimed(&server).await;
        let id = owner.user_id(&server.origin).unwrap();
        let link = api_json(
            &owner,
            "POST",
            &server.url(&format!("/api/v1/admin/users/{id}/reset-link")),
            json!({}),
        )
        .await;
        let secret = link["url"]
            .as_str()
            .unwrap()
            .split("#reset=")
            .nth(1)
            .unwrap()
            .to_string();
        let answer = Client::new()
            .send(
                &server.url(&format!("/api/v1/password-resets/{secret}")),
                "GET",
                None,
                false,
            )
            .await
            .unwrap();
        assert_eq!(
            (answer.status, error_code(&answer).as_str()),
            (410, "reset_link_expired")
        );
    });
}

#[test]
fn non_administrators_get_403_on_every_admin_route() {
    let files = tempfile::tempdir().unwrap();
    let server = fresh_box(files.path(), |_| {});
    block_on(async {
        let owner = claimed(&server).await;
        let owner_id = owner.user_id(&server.origin).unwrap();
        let (someone, _) = create_user(&server, &owner, "frank").await;
        let user = format!("/api/v1/admin/users/{owner_id}");
        let reset = format!("{user}/reset-link");
        let routes: [(&str, &str, Option<Value>); 7] = [
            ("GET", "/api/v1/admin/settings", None),
            (
                "PATCH",
                "/api/v1/admin/settings",
                Some(json!({"name": "Mine"})),
            ),
            ("GET", "/api/v1/admin/users", None),
            ("POST", "/api/v1/admin/users", Some(json!({}))),
            ("PATCH", &user, Some(json!({"admin": false}))),
            ("DELETE", &user, None),
            ("POST", &reset, Some(json!({}))),
        ];
        for (method, path, body) in routes {
            let answer = someone
                .send(&server.url(path), method, body.clone(), true)
                .await
                .unwrap();
            assert_eq!(answer.status, 403, "{method} {path}");
            assert_eq!(error_code(&answer), "forbidden");
            let answer = Client::new()
                .send(&server.url(path), method, body, false)
                .await
                .unwrap();
            assert_eq!(answer.status, 401, "{method} {path} without a token");
        }
    });
}
