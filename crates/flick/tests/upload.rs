//! `flick upload` end to end: the binary against `flick serve` (accounts, media, the
//! transcoder on the embedded backend) behind a small edge doing what the platform's does for
//! these routes, until the uploaded video is READY.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::{flick, free_port};
use flick_testkit::eventually;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where the edge sends requests (deploy/traefik/dynamic.yml, for the routes `flick upload`
/// uses): `/graphql` to media, the only subgraph `createVideo` needs (subgraphs verify the
/// token themselves); `/video` to the transcoder after ForwardAuth at accounts'
/// `/user/token_verify?mode=optional`, whose `X-User-Id` is put on the forwarded request.
struct Edge {
    http: reqwest::Client,
    accounts: String,
    media: String,
    transcoder: String,
}

async fn forward(State(edge): State<Arc<Edge>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let mut headers = parts.headers.clone();
    for strip in ["host", "x-user-id", "x-user-role", "connection", "transfer-encoding"] {
        headers.remove(strip);
    }
    let target = if path.starts_with("/graphql") {
        &edge.media
    } else if path.starts_with("/video") {
        let mut verify = edge.http.get(format!("{}/user/token_verify?mode=optional", edge.accounts));
        if let Some(token) = parts.headers.get("authorization") {
            verify = verify.header("authorization", token);
        }
        let verdict = verify.send().await.unwrap();
        if !verdict.status().is_success() {
            return (verdict.status(), verdict.bytes().await.unwrap()).into_response();
        }
        for name in ["x-user-id", "x-user-role"] {
            if let Some(v) = verdict.headers().get(name) {
                headers.insert(name, v.clone());
            }
        }
        &edge.transcoder
    } else {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    };
    let sent = edge
        .http
        .request(parts.method, format!("{target}{path}"))
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    let answer = match sent {
        Ok(a) => a,
        Err(e) => return (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != "transfer-encoding" && name != "connection" {
            response = response.header(name, value);
        }
    }
    response.body(Body::from_stream(answer.bytes_stream())).unwrap()
}

/// The video's state once it leaves QUEUED/PROCESSING (or after two minutes), through the edge.
async fn settled(http: &reqwest::Client, edge: &str, token: &str, video_id: &str) -> String {
    let state = std::sync::Mutex::new(String::new());
    eventually(Duration::from_secs(120), || async {
        let view: serde_json::Value = http
            .get(format!("{edge}/video/{video_id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default();
        let now = view["state"].as_str().unwrap_or_default().to_string();
        let done = now == "READY" || now == "FAILED";
        *state.lock().unwrap() = now;
        done
    })
    .await;
    state.into_inner().unwrap()
}

/// `flick upload --parallel 3`: three partial uploads sent at once, joined by a final upload,
/// transcoded to READY; nothing is left to resume. Without `--parallel`, one upload as before.
#[tokio::test]
async fn upload_in_parallel_sends_partial_uploads_joined_into_a_ready_video() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clip = dir.path().join("clip.mp4");
    let made = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", "2"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"])
        .arg(&clip)
        .status()
        .expect("ffmpeg is installed (scripts/services.sh installs it)");
    assert!(made.success());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let edge_url = format!("http://{}", listener.local_addr().unwrap());
    let ports = [free_port(), free_port(), free_port()];
    let _serve = Running(
        flick()
            .args(["serve", "--services", "accounts,media,transcoder"])
            .env("FLICK_DATA_DIR", &data)
            .env("FLICK_SERVER__PORTS__ACCOUNTS", ports[0].to_string())
            .env("FLICK_SERVER__PORTS__MEDIA", ports[1].to_string())
            .env("FLICK_SERVER__PORTS__TRANSCODER", ports[2].to_string())
            .env("FLICK_TRANSCODER__PUBLIC_BASE_URL", &edge_url)
            .env("FLICK_TRANSCODER__PRESET", "ultrafast")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let [accounts, media, transcoder] = ports.map(|p| format!("http://127.0.0.1:{p}"));
    let http = reqwest::Client::new();
    for base in [&accounts, &media, &transcoder] {
        let ready = eventually(Duration::from_secs(60), || async {
            http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(ready, "flick serve did not come up ({base})");
    }
    let edge = Arc::new(Edge { http: http.clone(), accounts: accounts.clone(), media, transcoder });
    let app = axum::Router::new().fallback(forward).with_state(edge);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let account = serde_json::json!({ "email": "up@example.com", "username": "uploader", "password": "correct horse battery", "display_name": "Up" });
    let res = http.post(format!("{accounts}/auth/register")).json(&account).send().await.unwrap();
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
    let login = serde_json::json!({ "login": "uploader", "password": "correct horse battery" });
    let tokens: serde_json::Value =
        http.post(format!("{accounts}/auth/login")).json(&login).send().await.unwrap().json().await.unwrap();
    let token = tokens["access_token"].as_str().unwrap().to_string();

    let upload = |extra: &'static [&'static str]| {
        tokio::process::Command::from(flick())
            .arg("upload")
            .arg(&clip)
            .args(["--url", &edge_url, "--token", &token])
            .args(extra)
            .output()
    };
    let out = upload(&["--parallel", "3", "--title", "Parallel"]).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("as 3 partial uploads"), "{stderr}");
    let video_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(!clip.with_extension("mp4.flick-upload").exists(), "nothing left to resume");

    // Three partial objects hold the file, in order (their ids are time-ordered uuids).
    let partials = data.join("objects/uploads");
    let mut ids: Vec<_> = std::fs::read_dir(&partials).unwrap().map(|e| e.unwrap().path()).collect();
    ids.sort();
    let joined: Vec<u8> = ids.iter().flat_map(|d| std::fs::read(d.join("partial")).unwrap()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(joined == std::fs::read(&clip).unwrap(), "the partials are the file's bytes in order");

    assert_eq!(settled(&http, &edge_url, &token, &video_id).await, "READY");

    let out = upload(&["--title", "One stream"]).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("partial uploads"), "{stderr}");
    let single = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_ne!(single, video_id);
    assert_eq!(std::fs::read_dir(&partials).unwrap().count(), 3, "no partial upload this time");
    assert_eq!(settled(&http, &edge_url, &token, &single).await, "READY");
}
