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
    let post = |path: &str, body: Value, token: Option<String>| {
        let mut req = http.post(app.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let password = "Sup3r-Secret-Passw0rd";
    post(
        "/auth/register",
        json!({ "email": "sec@example.com", "username": "secretive", "password": password, "display_name": "S" }),
        None,
    )
    .await
    .unwrap();
    let _ = post("/auth/login", json!({ "login": "secretive", "password": "Wr0ng-Passw0rd-123" }), None).await.unwrap();
    let tokens: Value = post("/auth/login", json!({ "login": "secretive", "password": password }), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let rotated: Value =
        post("/auth/refresh", json!({ "refresh_token": refresh }), None).await.unwrap().json().await.unwrap();
    let _ = post("/auth/refresh", json!({ "refresh_token": refresh }), None).await.unwrap();
    let _ = http.get(app.url("/user/token_verify")).bearer_auth(&access).send().await.unwrap();
    let _ = http
        .patch(app.url("/user/profile"))
        .bearer_auth(rotated["access_token"].as_str().unwrap())
        .json(&json!({ "current_password": "Wr0ng-Passw0rd-123", "new_password": "N3w-Passw0rd-456" }))
        .send()
        .await
        .unwrap();
    let _ = post("/auth/logout", json!({}), Some(access.clone())).await.unwrap();

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
