mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn messages_arrive_on_the_other_users_socket() {
    let server = TestServer::start();
    block_on(async {
        let alice = user(&server, "alice").await;
        let bob = user(&server, "bob").await;
        let guild = alice.post(&server.url("/api/v1/guilds"), json!({"name": "Home"})).await.unwrap().ok().unwrap().json().unwrap();
        let channel = guild["channels"][0]["id"].as_str().unwrap().to_string();
        let invite = alice.post(&server.url(&format!("/api/v1/channels/{channel}/invites")), json!({})).await.unwrap().ok().unwrap().json().unwrap();
        let code = invite["code"].as_str().unwrap();
        bob.post(&server.url(&format!("/api/v1/invites/{code}")), json!({})).await.unwrap().ok().unwrap();
        let events = bob.events(&server.origin, None).await.unwrap();
        // Wait for ready.
        loop {
            if let Some(hearth::client::GatewayMessage::Ready { .. }) = events.next().await { break; }
        }
        alice.post(&server.url(&format!("/api/v1/channels/{channel}/messages")), json!({"content": "hi bob"})).await.unwrap().ok().unwrap();
        let (_, kind, data) = events.next_event(Duration::from_secs(5)).await.expect("event");
        assert_eq!(kind, "message_create");
        assert_eq!(data["content"], "hi bob");
    });
}
