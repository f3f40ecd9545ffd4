mod common;
use common::*;
use serde_json::json;

#[test]
fn register_login_and_post() {
    let server = TestServer::start();
    block_on(async {
        let alice = user(&server, "alice").await;
        let me = alice
            .get(&server.url("/api/v1/users/@me"))
            .await
            .unwrap()
            .ok()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(me["name"], "alice");
        let guild = alice
            .post(&server.url("/api/v1/guilds"), json!({"name": "Home"}))
            .await
            .unwrap()
            .ok()
            .unwrap()
            .json()
            .unwrap();
        let channel = guild["channels"][0]["id"].as_str().unwrap().to_string();
        let msg = alice
            .post(
                &server.url(&format!("/api/v1/channels/{channel}/messages")),
                json!({"content": "hello"}),
            )
            .await
            .unwrap()
            .ok()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(msg["content"], "hello");
        let list = alice
            .get(&server.url(&format!("/api/v1/channels/{channel}/messages")))
            .await
            .unwrap()
            .ok()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(list[0]["content"], "hello");
    });
}
