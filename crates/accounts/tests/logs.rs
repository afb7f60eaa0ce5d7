//! No password, token or hash reaches a log line, at any level, on any path.

use flick_testkit::app::{Backend, TestApp, TestInfra};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_is_ever_logged() {
    let sink = Sink::default();
    let writer = sink.clone();
    tracing_subscriber::fmt().json().with_max_level(tracing::Level::TRACE).with_writer(move || writer.clone()).init();

    let app =
        TestApp::start(TestInfra::new(Backend::Embedded).await, |s| async move { flick_accounts::build(&s).await })
            .await;
    let http = reqwest::Client::new();
    // Every step must take the path it is meant to (a flow that failed early would log less).
    let send = |req: reqwest::RequestBuilder, expected: u16, step: &'static str| async move {
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(status, expected, "{step}: {body}");
        body
    };
    let post = |path: &str, body: Value, token: Option<&str>| {
        let mut req = http.post(app.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req
    };
    let password = "Sup3r-Secret-Passw0rd";
    let register =
        json!({ "email": "sec@example.com", "username": "secretive", "password": password, "display_name": "S" });
    send(post("/auth/register", register, None), 201, "register").await;
    let wrong = json!({ "login": "secretive", "password": "Wr0ng-Passw0rd-123" });
    send(post("/auth/login", wrong, None), 401, "a wrong password").await;
    let tokens =
        send(post("/auth/login", json!({ "login": "secretive", "password": password }), None), 200, "login").await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let rotated = send(post("/auth/refresh", json!({ "refresh_token": refresh }), None), 200, "refresh").await;
    let rotated_access = rotated["access_token"].as_str().unwrap().to_string();
    send(http.get(app.url("/user/token_verify")).bearer_auth(&rotated_access), 200, "verify").await;
    let profile = |body: Value| http.patch(app.url("/user/profile")).bearer_auth(&rotated_access).json(&body);
    let change = json!({ "current_password": "Wr0ng-Passw0rd-123", "new_password": "N3w-Passw0rd-456" });
    send(profile(change), 403, "a password change with a wrong current password").await;
    let change = json!({ "current_password": password, "new_password": "N3w-Passw0rd-456" });
    send(profile(change), 200, "a password change").await;
    send(post("/auth/logout", json!({}), Some(&rotated_access)), 204, "logout").await;
    // Last: reusing a rotated refresh token revokes its whole family.
    send(post("/auth/refresh", json!({ "refresh_token": refresh }), None), 401, "a reused refresh token").await;

    let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("login"), "the flows were logged at all: {logs}");
    for secret in [
        password,
        "Wr0ng-Passw0rd-123",
        "N3w-Passw0rd-456",
        &access,
        &refresh,
        rotated["refresh_token"].as_str().unwrap(),
        "$argon2id$",
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs: {secret}");
    }
    // Nor any fragment of a token (its signature part, its refresh hash).
    let signature = access.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature));
}
