//! Black-box tests of the `flick` binary: zero-configuration start, health, readiness,
//! metrics, gRPC health and reflection, GraphQL, configuration errors and redaction,
//! graceful shutdown on SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{flick, free_port};

struct Running {
    child: Child,
    ports: [u16; 5],
}

impl Running {
    fn url(&self, service: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[service])
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `flick serve` on free ports, once every service answers /healthz. A port picked free may
/// be taken by a parallel test before flick binds it: flick then exits, and it is started
/// again on other ports.
async fn serve(data_dir: &std::path::Path) -> Running {
    // Beside the data directory, which flick creates itself when it is missing.
    let log = tempfile::NamedTempFile::new().unwrap();
    for _attempt in 0..3 {
        let ports = [free_port(), free_port(), free_port(), free_port(), free_port()];
        let child = flick()
            .arg("serve")
            .env("FLICK_DATA_DIR", data_dir)
            .env("FLICK_SERVER__PORTS__ACCOUNTS", ports[0].to_string())
            .env("FLICK_SERVER__PORTS__MEDIA", ports[1].to_string())
            .env("FLICK_SERVER__PORTS__TRANSCODER", ports[2].to_string())
            .env("FLICK_SERVER__PORTS__RECOMMENDER", ports[3].to_string())
            .env("FLICK_SERVER__PORTS__ACTIVITY", ports[4].to_string())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut running = Running { child, ports };
        // Generous: the whole workspace's tests start at once on 2 cores.
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut up = 0;
        while up < ports.len() {
            if reqwest::get(running.url(up, "/healthz")).await.is_ok_and(|r| r.status() == 200) {
                up += 1;
                continue;
            }
            if running.child.try_wait().unwrap().is_some() {
                break; // exited: a port was taken meanwhile (the log says), try other ports
            }
            let said = std::fs::read_to_string(log.path()).unwrap_or_default();
            assert!(Instant::now() < deadline, "flick serve did not come up; it said:\n{said}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if up == ports.len() {
            return running;
        }
    }
    panic!("flick serve exited three times; it said:\n{}", std::fs::read_to_string(log.path()).unwrap_or_default());
}

/// POSTs `body` as JSON and returns the JSON answer.
async fn post_json(url: String, body: serde_json::Value) -> serde_json::Value {
    reqwest::Client::new().post(url).json(&body).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn serve_with_no_configuration_creates_its_data_and_answers_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let app = serve(&data).await;
    for service in ["accounts", "media", "transcoder", "recommender", "activity"] {
        assert!(data.join(format!("db/{service}.sqlite")).exists(), "{service} database created");
    }
    assert!(data.join("db/activity-documents.sqlite").exists(), "activity's document store created");
    assert!(data.join("objects").is_dir(), "object storage directory created");

    for i in 0..app.ports.len() {
        let ready = reqwest::get(app.url(i, "/readyz")).await.unwrap();
        assert_eq!(ready.status(), 200);
        let body: serde_json::Value = ready.json().await.unwrap();
        for check in ["database", "cache", "bus", "storage"] {
            assert_eq!(body["checks"][check], "ok", "{body}");
        }
    }
    let missing = reqwest::get(app.url(1, "/no/such/route")).await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    let wrong_method = reqwest::get(app.url(0, "/auth/login")).await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    let body: serde_json::Value = wrong_method.json().await.unwrap();
    assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED");

    let metrics = reqwest::get(app.url(1, "/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"http_requests_total{service="media",method="GET",route="/readyz",status="200"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("http_request_duration_seconds_bucket"), "latency histogram exported");
}

#[tokio::test]
async fn subgraphs_answer_graphql_with_identity_from_the_mesh_header() {
    let dir = tempfile::tempdir().unwrap();
    let app = serve(dir.path()).await;
    let client = reqwest::Client::new();
    let query = serde_json::json!({ "query": "{ me { id } }" });
    let anonymous: serde_json::Value = post_json(app.url(0, "/graphql"), query.clone()).await;
    assert_eq!(anonymous["data"]["me"], serde_json::Value::Null);
    let registered: serde_json::Value = post_json(app.url(0, "/auth/register"), serde_json::json!({ "email": "mesh@example.com", "username": "mesh", "password": "correct horse battery", "display_name": "Mesh" })).await;
    let user = registered["id"].as_str().unwrap();
    let me: serde_json::Value = client
        .post(app.url(0, "/graphql"))
        .header("x-user-id", user)
        .json(&query)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["data"]["me"]["id"], user);

    let sdl: serde_json::Value =
        post_json(app.url(1, "/graphql"), serde_json::json!({ "query": "{ _service { sdl } }" })).await;
    assert!(sdl["data"]["_service"]["sdl"].as_str().unwrap().contains("@key(fields: \"id\")"));

    // 16 levels of selection, past the default limit of 12.
    let too_deep = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
        "ofType {".repeat(12),
        "}".repeat(12)
    );
    let limited: serde_json::Value = post_json(app.url(1, "/graphql"), serde_json::json!({ "query": too_deep })).await;
    assert!(limited["errors"][0]["message"].as_str().unwrap_or_default().contains("nested too deep"), "{limited}");
    assert_eq!(limited["errors"][0]["extensions"]["code"], "QUERY_TOO_DEEP", "{limited}");
}

#[tokio::test]
async fn grpc_health_and_reflection_are_served_on_the_service_port() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let dir = tempfile::tempdir().unwrap();
    let app = serve(dir.path()).await;
    let channel = tonic::transport::Channel::from_shared(app.url(2, "")).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);
    let status = health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner().status;
    assert_eq!(status, ServingStatus::Serving as i32);
    let metrics = reqwest::get(app.url(2, "/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"grpc_requests_total{service="transcoder",rpc="/grpc.health.v1.Health/Check",code="0"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn sigterm_stops_every_service_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = serve(dir.path()).await;
    let pid = app.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = app.child.try_wait().unwrap() {
            assert!(status.success(), "clean exit after SIGTERM: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "still running 15 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn config_prints_effective_values_with_secrets_redacted() {
    let out = flick()
        .arg("config")
        .env("FLICK_DATABASE__URL", "postgres://flick:hunter2@db:5432/flick")
        .env("FLICK_STORAGE__S3__SECRET_ACCESS_KEY", "s3cr3t")
        .env("FLICK_BUS__MAX_ATTEMPTS", "9")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("max_attempts = 9"), "{text}");
    assert!(text.contains("postgres://flick:REDACTED@db:5432/flick"), "{text}");
    assert!(!text.contains("hunter2") && !text.contains("s3cr3t"), "{text}");
}

#[test]
fn unknown_configuration_keys_are_errors() {
    let out = flick().arg("config").env("FLICK_SERVR__HOST", "0.0.0.0").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("servr"), "{err}");
}

/// Each service's section lives in its crate, yet `flick config` prints all four where they
/// always were (between `documents` and `endpoints`), and `FLICK_<SERVICE>__<KEY>` reaches it.
#[test]
fn service_sections_take_their_environment_overrides_and_print_in_place() {
    let out = flick()
        .arg("config")
        .env("FLICK_ACCOUNTS__ACCESS_TOKEN_TTL_SECONDS", "61")
        .env("FLICK_MEDIA__COUNTER_TTL_SECONDS", "62")
        .env("FLICK_TRANSCODER__PRESET", "slow")
        .env("FLICK_RECOMMENDER__BATCH_SIZE", "63")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let config: toml::Table = text.parse().unwrap();
    assert_eq!(config["accounts"]["access_token_ttl_seconds"].as_integer(), Some(61), "{text}");
    assert_eq!(config["accounts"]["session_lifetime_seconds"].as_integer(), Some(30 * 24 * 3600), "{text}");
    assert_eq!(config["media"]["counter_ttl_seconds"].as_integer(), Some(62), "{text}");
    assert_eq!(config["media"]["reconcile_interval_seconds"].as_integer(), Some(30), "{text}");
    assert_eq!(config["transcoder"]["preset"].as_str(), Some("slow"), "{text}");
    assert_eq!(config["transcoder"]["rungs"].as_array().map(Vec::len), Some(5), "{text}");
    assert_eq!(config["recommender"]["batch_size"].as_integer(), Some(63), "{text}");
    let at = |header: &str| text.find(header).unwrap_or_else(|| panic!("{header} missing: {text}"));
    let order =
        ["[documents]", "[accounts]", "[media]", "[transcoder]", "[[transcoder.rungs]]", "[recommender]", "[activity]"];
    for pair in order.windows(2).chain([["[activity]", "[endpoints]"].as_slice()]) {
        assert!(at(pair[0]) < at(pair[1]), "{} before {}: {text}", pair[0], pair[1]);
    }
}

/// A service's section is as strict as the platform's: an unknown key in it, from a variable or
/// a file, is an error naming the key and where it came from, and so is a misspelt section.
#[test]
fn unknown_keys_in_service_sections_are_errors() {
    let refused = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{cmd:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    };
    let err = refused(flick().arg("config").env("FLICK_MEDIA__NOPE", "1"));
    assert!(
        err.contains("unknown field: found `nope`, expected ``reconcile_interval_seconds` or `counter_ttl_seconds``")
            && err.contains(r#"for key "MEDIA.NOPE" in `FLICK_` environment variable(s)"#),
        "{err}"
    );
    let err = refused(flick().arg("config").env("FLICK_RECOMMENDER__NOPE", "1"));
    assert!(err.contains("found `nope`") && err.contains(r#""RECOMMENDER.NOPE""#), "{err}");
    let err = refused(flick().arg("config").env("FLICK_TRANSCODER__WORKERS", "many"));
    assert!(err.contains(r#"found string "many", expected usize for key "TRANSCODER.WORKERS""#), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flick.toml");
    std::fs::write(
        &file,
        "[transcoder]\npreset = \"fast\"\n[[transcoder.rungs]]\nname = \"x\"\nheight = 1\nwidth = 2\n",
    )
    .unwrap();
    let err = refused(flick().arg("--config").arg(&file).arg("config"));
    assert!(err.contains("found `width`") && err.contains(r#"for key "default.transcoder.rungs.0.width""#), "{err}");
    std::fs::write(&file, "[accounts]\nnope = 1\n").unwrap();
    let err = refused(flick().arg("--config").arg(&file).arg("config"));
    assert!(err.contains("found `nope`") && err.contains(r#"for key "default.accounts.nope""#), "{err}");

    // A misspelt section is unknown, and the error lists the services' sections among the known.
    let err = refused(flick().arg("config").env("FLICK_MEDAI__COUNTER_TTL_SECONDS", "1"));
    assert!(
        err.contains("found `medai`")
            && err.contains("`documents`, `accounts`, `media`, `transcoder`, `recommender`, `activity`, `endpoints`"),
        "{err}"
    );
    // A service that does not run still has its section checked.
    let data = tempfile::tempdir().unwrap();
    let out = flick()
        .args(["migrate", "--services", "media"])
        .env("FLICK_DATA_DIR", data.path())
        .env("FLICK_TRANSCODER__NOPE", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(r#"for key "TRANSCODER.NOPE""#), "{err}");
}

/// The running service reads its section: the transcoder announces `transcoder.max_upload_bytes`
/// as set in the environment (`Tus-Max-Size`).
#[tokio::test]
async fn a_running_service_uses_its_section_from_the_environment() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = flick()
        .args(["serve", "--services", "transcoder"])
        .env("FLICK_DATA_DIR", data.path())
        .env("FLICK_SERVER__PORTS__TRANSCODER", port.to_string())
        .env("FLICK_TRANSCODER__WORKERS", "0")
        .env("FLICK_TRANSCODER__MAX_UPLOAD_BYTES", "123456789")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running { child, ports: [port; 5] };
    let deadline = Instant::now() + Duration::from_secs(30);
    let http = reqwest::Client::new();
    let discovered = loop {
        if let Ok(r) = http.request(reqwest::Method::OPTIONS, running.url(0, "/video/upload")).send().await {
            break r;
        }
        assert!(Instant::now() < deadline, "the transcoder never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(discovered.status(), 204);
    assert_eq!(discovered.headers()["tus-max-size"], "123456789");
}

/// Identity headers are trusted only beside the mesh secret, so a service reachable from other
/// hosts must not start without one (an empty value, as from an empty Kubernetes Secret key,
/// counts as none), nor with a short or published one; loopback may.
#[tokio::test]
async fn serving_beyond_loopback_needs_a_real_mesh_secret() {
    let data = tempfile::tempdir().unwrap();
    let refused = |secret: Option<&str>| {
        let mut cmd = flick();
        cmd.args(["serve", "--services", "accounts"])
            .env("FLICK_DATA_DIR", data.path())
            .env("FLICK_SERVER__HOST", "0.0.0.0")
            .env("FLICK_SERVER__PORTS__ACCOUNTS", free_port().to_string());
        if let Some(secret) = secret {
            cmd.env("FLICK_IDENTITY__MESH_SECRET", secret);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "started on 0.0.0.0 with mesh secret {secret:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    let err = refused(None);
    assert!(err.contains("refusing to serve on 0.0.0.0 without identity.mesh_secret"), "{err}");
    let err = refused(Some(""));
    assert!(err.contains("without identity.mesh_secret"), "{err}");
    let err = refused(Some("short-secret"));
    assert!(err.contains("at least 32"), "{err}");
    let err = refused(Some("flick-dev-mesh-secret-change-me"));
    assert!(err.contains("published example"), "{err}");

    // A real secret starts it; health answers on the loopback side of 0.0.0.0.
    let port = free_port();
    let child = flick()
        .args(["serve", "--services", "accounts"])
        .env("FLICK_DATA_DIR", data.path())
        .env("FLICK_SERVER__HOST", "0.0.0.0")
        .env("FLICK_SERVER__PORTS__ACCOUNTS", port.to_string())
        .env("FLICK_IDENTITY__MESH_SECRET", "0f1e2d3c4b5a69788796a5b4c3d2e1f0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running { child, ports: [port; 5] };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(running.url(0, "/healthz")).await
            && r.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "accounts with a mesh secret on 0.0.0.0 never answered /healthz");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn version_and_sdl_work_offline() {
    let out = flick().arg("--version").output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), format!("flick {}", env!("CARGO_PKG_VERSION")));
    let out = flick().args(["sdl", "accounts"]).output().unwrap();
    let sdl = String::from_utf8(out.stdout).unwrap();
    assert!(sdl.contains("type User @key(fields: \"id\")"), "{sdl}");
    assert!(sdl.contains("federation/v2"), "{sdl}");
    assert!(!flick().args(["sdl", "nope"]).output().unwrap().status.success());
}

/// The service registry has no default service: an unknown name anywhere is refused, and the
/// error names the known ones.
#[test]
fn unknown_service_names_are_errors_naming_the_known_ones() {
    let data = tempfile::tempdir().unwrap();
    for args in [
        &["serve", "--services", "nope"][..],
        &["serve", "--services", "media,nope"],
        &["migrate", "--services", "nope"],
        &["sdl", "nope"],
    ] {
        let out = flick().args(args).env("FLICK_DATA_DIR", data.path()).output().unwrap();
        assert!(!out.status.success(), "flick {args:?} succeeded");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains(r#"unknown service "nope"; known: accounts, media, transcoder, recommender, activity"#),
            "flick {args:?}: {err}"
        );
    }
    assert!(std::fs::read_dir(data.path()).unwrap().next().is_none(), "nothing started, nothing written");
}

#[tokio::test]
async fn migrate_applies_pending_migrations_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = || flick().args(["migrate", "--services", "media"]).env("FLICK_DATA_DIR", dir.path()).output().unwrap();
    let first = String::from_utf8(run().stdout).unwrap();
    assert!(first.contains("media: ") && !first.contains("media: 0 migration(s)"), "{first}");
    assert!(first.contains("media/0001_videos_likes_comments_subscriptions"), "{first}");
    let second = String::from_utf8(run().stdout).unwrap();
    assert!(second.contains("media: 0 migration(s) applied"), "{second}");
}

/// A service on the document store gets its collections and indexes from `flick migrate` too
/// (the chart's migrate Job runs before any replica starts).
#[tokio::test]
async fn migrate_creates_the_document_stores_collections_and_indexes_once() {
    let dir = tempfile::tempdir().unwrap();
    let run =
        || flick().args(["migrate", "--services", "activity"]).env("FLICK_DATA_DIR", dir.path()).output().unwrap();
    let first = String::from_utf8(run().stdout).unwrap();
    assert!(first.contains("activity: 2 document migration(s) applied"), "{first}");
    assert!(first.contains("activity/0001_activity") && first.contains("activity/0002_playlists"), "{first}");
    let second = String::from_utf8(run().stdout).unwrap();
    assert!(second.contains("activity: 0 document migration(s) applied"), "{second}");
}

#[tokio::test]
async fn seed_fills_the_embedded_databases_with_ready_public_videos() {
    let dir = tempfile::tempdir().unwrap();
    let out = flick()
        .args(["seed", "--videos", "45", "--users", "3"])
        .env("FLICK_DATA_DIR", dir.path())
        .env("FLICK_TELEMETRY__LOG_LEVEL", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8(out.stdout).unwrap().contains("seeded 3 users"));
    let app = serve(dir.path()).await;
    let feed: serde_json::Value = post_json(app.url(1, "/graphql"), serde_json::json!({ "query": "{ feed(first: 20) { edges { node { title owner { id } } } pageInfo { hasNextPage } } }" })).await;
    assert_eq!(feed["data"]["feed"]["edges"].as_array().unwrap().len(), 20, "{feed}");
    assert_eq!(feed["data"]["feed"]["pageInfo"]["hasNextPage"], true);
    let login: serde_json::Value = post_json(
        app.url(0, "/auth/login"),
        serde_json::json!({ "login": "seed_0", "password": "flick-demo-password" }),
    )
    .await;
    assert!(login["access_token"].is_string(), "seeded users can log in: {login}");
}

#[tokio::test]
async fn malformed_or_oversize_graphql_requests_get_graphql_errors() {
    let dir = tempfile::tempdir().unwrap();
    let app = serve(dir.path()).await;
    let client = reqwest::Client::new();
    let res = client
        .post(app.url(1, "/graphql"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{body}");

    let huge = serde_json::json!({ "query": format!("{{ {} }}", "a".repeat(2 * 1024 * 1024)) }).to_string();
    let res =
        client.post(app.url(1, "/graphql")).header("content-type", "application/json").body(huge).send().await.unwrap();
    assert_eq!(res.status(), 413);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE");
}

#[test]
fn keys_rotate_adds_a_key_that_sorts_last() {
    let dir = tempfile::tempdir().unwrap();
    let run = |action: &str| {
        let out = flick().args(["keys", action]).env("FLICK_DATA_DIR", dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    run("rotate");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let out = run("rotate");
    let kids: Vec<&str> = out.lines().filter(|l| l.starts_with('k')).collect();
    assert_eq!(kids.len(), 2, "{out}");
    assert!(out.contains(&format!("added signing key {}", kids[1])), "the new key sorts last: {out}");
    assert_eq!(run("list").lines().count(), 2);
}
