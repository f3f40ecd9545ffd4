//! Linking a new device from one already signed in (docs/design.md §2, mzchat's mailbox flow):
//! the new device shows a code, the signed-in device approves it with a device
//! certificate signed by K_id, and the new device signs in with that certificate.

use crate::common::*;
use hearth::client::{Client, ClientError};
use serde_json::{json, Value};
use std::time::Duration;

async fn me(client: &Client, server: &TestServer) -> Value {
    client
        .get(&server.url("/api/v1/users/@me"))
        .await
        .unwrap()
        .ok()
        .expect("signed in")
        .json()
        .unwrap()
}

fn status_of<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Status { status, code, .. }) => (status, code),
        other => panic!("expected an error status, got {other:?}"),
    }
}

#[test]
fn a_new_device_is_linked_by_one_signed_in_and_signs_in_without_a_password() {
    let server = TestServer::start();
    block_on(async {
        let alice = user(&server, "alice").await;
        let alice_id = alice.user_id(&server.origin).unwrap();
        let laptop = Client::new();
        let link = laptop
            .open_device_link(&server.origin, Some("alice"), "laptop")
            .await
            .expect("open a link");
        assert_eq!(link.code.len(), 9, "XXXX-XXXX: {}", link.code);
        assert_eq!(link.jkt, laptop.device_thumbprint());

        // Not approved yet: the laptop cannot sign in.
        let early = laptop
            .finish_device_link(&link, Duration::from_millis(600))
            .await;
        assert!(early.is_err(), "signed in before approval: {early:?}");

        // Alice types the code (loosely) on her signed-in device and sees the laptop's key.
        let typed = link.code.to_lowercase().replace('-', " ");
        let shown = alice
            .show_device_link(&server.origin, &typed)
            .await
            .expect("show");
        assert_eq!(shown["jkt"], link.jkt.as_str());
        assert_eq!(shown["device_name"], "laptop");

        // A certificate for another key is refused, and the link stays open.
        let other = Client::new().device_thumbprint();
        assert_eq!(
            status_of(
                alice
                    .approve_device_link(&server.origin, &typed, &other)
                    .await
            ),
            (400, "invalid_device_certificate".into())
        );
        alice
            .approve_device_link(&server.origin, &typed, &link.jkt)
            .await
            .expect("approve");
        assert_eq!(
            status_of(
                alice
                    .approve_device_link(&server.origin, &typed, &link.jkt)
                    .await
            ),
            (409, "already_approved".into())
        );

        laptop
            .finish_device_link(&link, Duration::from_secs(5))
            .await
            .expect("the laptop signs in with its certificate");
        assert_eq!(me(&laptop, &server).await["id"], alice_id.as_str());
        assert_eq!(laptop.user_id(&server.origin).as_deref(), Some(&*alice_id));
        // The laptop is one of alice's devices, and can be signed out like any other.
        let devices: Value = alice
            .get(&server.url("/api/v1/users/@me/devices"))
            .await
            .unwrap()
            .ok()
            .unwrap()
            .json()
            .unwrap();
        assert!(
            devices
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["id"] == link.jkt.as_str() && d["name"] == "laptop"),
            "{devices}"
        );
        // The mailbox handed the certificate out once and is gone.
        let gone = Client::new()
            .send(
                &server.url(&format!("/api/v1/device-links/mailbox/{}", link.mailbox)),
                "GET",
                None,
                false,
            )
            .await
            .unwrap();
        assert_eq!(gone.status, 404);
        assert_eq!(gone.error_code().as_deref(), Some("unknown_device_link"));
    });
}

#[test]
fn only_the_named_account_may_approve_and_strangers_cannot_guess_codes() {
    let server = TestServer::start();
    block_on(async {
        let alice = user(&server, "alice").await;
        let mallory = user(&server, "mallory").await;
        let phone = Client::new();
        let link = phone
            .open_device_link(&server.origin, Some("alice"), "phone")
            .await
            .unwrap();
        // Mallory read the code over alice's shoulder: it is not hers to approve.
        assert_eq!(
            status_of(mallory.show_device_link(&server.origin, &link.code).await),
            (403, "other_account".into())
        );
        assert_eq!(
            status_of(
                mallory
                    .approve_device_link(&server.origin, &link.code, &link.jkt)
                    .await
            ),
            (403, "other_account".into())
        );
        // Without a token, nothing.
        let anonymous = Client::new()
            .send(
                &server.url(&format!("/api/v1/device-links/{}", link.code)),
                "GET",
                None,
                false,
            )
            .await
            .unwrap();
        assert_eq!(anonymous.status, 401);
        // Guessing codes stops after 20 tries per user.
        let mut last = (0, String::new());
        for i in 0..25 {
            last = status_of(
                mallory
                    .show_device_link(&server.origin, &format!("ZZZZ-ZZ{i:02}"))
                    .await,
            );
        }
        assert_eq!(last, (429, "too_many_lookups".into()));
        // Alice still approves.
        alice
            .approve_device_link(&server.origin, &link.code, &link.jkt)
            .await
            .expect("alice approves");
        phone
            .finish_device_link(&link, Duration::from_secs(5))
            .await
            .expect("signed in");
        assert_eq!(me(&phone, &server).await["username"], "alice");
    });
}

#[test]
fn bad_link_requests_get_clear_errors() {
    let server = TestServer::start();
    block_on(async {
        let raw = |body: Value| {
            let url = server.url("/api/v1/device-links");
            async move {
                let answer = Client::new()
                    .send(&url, "POST", Some(body), false)
                    .await
                    .unwrap();
                (answer.status, answer.error_code().unwrap_or_default())
            }
        };
        let key = hearth::auth::jose::SigningKey::generate_es256()
            .public_jwk()
            .to_json();
        let mut private = key.clone();
        private["d"] = json!("AAAA");
        assert_eq!(
            raw(json!({"device_key": private})).await,
            (400, "invalid_device_key".into())
        );
        assert_eq!(
            raw(json!({"device_key": {"kty": "RSA"}})).await,
            (400, "invalid_device_key".into())
        );
        assert_eq!(
            raw(json!({"device_key": key, "device_name": "x".repeat(65)})).await,
            (400, "invalid_device_name".into())
        );
        assert_eq!(raw(json!({"device_key": key, "surprise": 1})).await.0, 400);
        // An unknown name is not revealed; such a link just never gets approved.
        assert_eq!(
            raw(json!({"device_key": key, "username": "nobody"}))
                .await
                .0,
            201
        );
        // Five open links per address, then 429 until some expire.
        for _ in 0..4 {
            assert_eq!(raw(json!({"device_key": key})).await.0, 201);
        }
        assert_eq!(
            raw(json!({"device_key": key})).await,
            (429, "too_many_device_links".into())
        );
        let unknown = Client::new()
            .send(
                &server.url("/api/v1/device-links/mailbox/not-a-mailbox"),
                "DELETE",
                None,
                false,
            )
            .await
            .unwrap();
        assert_eq!(unknown.status, 404);
    });
}
