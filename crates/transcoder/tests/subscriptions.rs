//! `videoProgress` over graphql-ws at the transcoder's port, as the router opens it, beside a
//! real accounts service, on both adapter sets: a connection's identity comes only from a
//! token accounts verified (never from identity headers a client could have written into
//! `connection_init`, even with the mesh secret), and a subscription ends when that token is
//! revoked or expires, when a video's upload never comes, and past a per-user cap.

use flick_accounts::config::AccountsConfigExt as _;
use flick_proto::transcoder::v1 as pb;
use flick_testkit::app::{Backend, TestApp, TestInfra};
use flick_transcoder::config::TranscoderConfigExt as _;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

/// The mesh secret of these tests: a client that learned it still cannot pick an identity
/// over a WebSocket.
const MESH: &str = "0123456789abcdef0123456789abcdef-test";

struct Platform {
    accounts: TestApp,
    transcoder: TestApp,
    /// The configuration both run on, with `endpoints.accounts` set, for more services.
    infra: TestInfra,
}

/// Accounts, and a transcoder that verifies tokens with it (sharing its cache and bus, as
/// `flick serve` does). `tune` adjusts the transcoder's configuration.
async fn platform(backend: Backend, tune: impl FnOnce(&mut flick_kit::Config)) -> Platform {
    flick_kit::identity::require_mesh_secret(Some(MESH));
    let mut infra = TestInfra::new(backend).await;
    tune(&mut infra.config);
    let transcoder_infra = infra.replica();
    let accounts = TestApp::start(infra, |s| async move { flick_accounts::build(&s).await }).await;
    let mut transcoder_infra = transcoder_infra;
    transcoder_infra.config.endpoints.accounts = Some(accounts.url(""));
    let infra = transcoder_infra.replica();
    let transcoder =
        TestApp::start_beside(transcoder_infra, &accounts, |s| async move { flick_transcoder::build(&s).await }).await;
    Platform { accounts, transcoder, infra }
}

impl Platform {
    /// A new user: (id, access token).
    async fn user(&self) -> (String, String) {
        let name = format!("u{}", &Uuid::now_v7().simple().to_string()[20..]);
        let http = reqwest::Client::new();
        let body = json!({ "email": format!("{name}@example.com"), "username": name,
            "password": "correct horse battery", "display_name": name });
        let res = http.post(self.accounts.url("/auth/register")).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 201, "register");
        let res = http
            .post(self.accounts.url("/auth/login"))
            .json(&json!({ "login": name, "password": "correct horse battery" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "login");
        let tokens: Value = res.json().await.unwrap();
        let token = tokens["access_token"].as_str().unwrap().to_string();
        let me: Value = http
            .get(self.accounts.url("/user/profile"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (me["id"].as_str().expect("profile id").to_string(), token)
    }

    async fn logout(&self, token: &str) {
        let res =
            reqwest::Client::new().post(self.accounts.url("/auth/logout")).bearer_auth(token).send().await.unwrap();
        assert!(res.status().is_success(), "logout: {}", res.status());
    }

    /// A video of `owner` awaiting its upload (gRPC `CreateUpload`, as media's createVideo).
    async fn video(&self, owner: &str) -> String {
        let channel =
            tonic::transport::Endpoint::from_shared(self.transcoder.url("")).unwrap().connect().await.unwrap();
        let mut grpc = pb::transcoder_service_client::TranscoderServiceClient::new(channel);
        let video_id = Uuid::now_v7().to_string();
        let mut request = tonic::Request::new(pb::CreateUploadRequest {
            video_id: video_id.clone(),
            size_bytes: 0,
            visibility: "PUBLIC".into(),
        });
        request.metadata_mut().insert("x-user-id", owner.parse().unwrap());
        request.metadata_mut().insert("x-flick-mesh", MESH.parse().unwrap());
        grpc.create_upload(request).await.expect("CreateUpload");
        video_id
    }

    async fn ws(&self, init: Value, headers: &[(&str, &str)]) -> Result<Ws, String> {
        Ws::open(&self.transcoder, init, headers).await
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A graphql-transport-ws client, as hive-router is to a subgraph.
struct Ws {
    socket: Socket,
}

#[derive(Debug)]
enum Frame {
    Message(Value),
    Closed(u16, String),
    Nothing,
}

impl Ws {
    /// Connects and sends `connection_init` with `init`; `Err` with the server's reason when
    /// it refuses the connection.
    async fn open(app: &TestApp, init: Value, headers: &[(&str, &str)]) -> Result<Self, String> {
        let mut request = format!("ws://{}/ws", app.addr).into_client_request().unwrap();
        request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
        for (k, v) in headers {
            let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            request.headers_mut().insert(name, v.parse().unwrap());
        }
        let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("WebSocket upgrade");
        let mut ws = Self { socket };
        ws.send(json!({ "type": "connection_init", "payload": init })).await;
        match ws.next(Duration::from_secs(10)).await {
            Frame::Message(m) if m["type"] == "connection_ack" => Ok(ws),
            Frame::Closed(code, reason) => Err(format!("{code} {reason}")),
            other => panic!("unexpected answer to connection_init: {other:?}"),
        }
    }

    async fn send(&mut self, message: Value) {
        self.socket.send(Message::Text(message.to_string().into())).await.unwrap();
    }

    async fn subscribe(&mut self, id: &str, video_id: &str) {
        let query = "subscription($id: ID!) { videoProgress(videoId: $id) { stage percent } }";
        let payload = json!({ "query": query, "variables": { "id": video_id } });
        self.send(json!({ "id": id, "type": "subscribe", "payload": payload })).await;
    }

    /// The next graphql-ws message or the close, skipping pings; `Nothing` after `within`.
    async fn next(&mut self, within: Duration) -> Frame {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Frame::Nothing,
                Ok(None) => return Frame::Closed(1006, "no close frame".into()),
                Ok(Some(Err(e))) => return Frame::Closed(1006, e.to_string()),
                Ok(Some(Ok(frame))) => frame,
            };
            match frame {
                Message::Text(text) => {
                    let m: Value = serde_json::from_str(&text).unwrap();
                    if m["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return Frame::Message(m);
                }
                Message::Close(frame) => {
                    return frame
                        .map(|f| Frame::Closed(f.code.into(), f.reason.to_string()))
                        .unwrap_or(Frame::Closed(1005, String::new()));
                }
                _ => continue,
            }
        }
    }

    /// The first message of subscription `id`: its `next` payload, or its error (the ends of
    /// earlier operations are passed over).
    async fn first(&mut self, id: &str) -> Value {
        loop {
            match self.next(Duration::from_secs(10)).await {
                Frame::Message(m) if m["id"] == id => return m,
                Frame::Message(m) if m["type"] == "complete" => continue,
                other => panic!("subscription {id}: {other:?}"),
            }
        }
    }
}

/// The message of an operation's error: a graphql-ws `error`, or a `next` whose field failed.
fn error_message(m: &Value) -> String {
    let errors = match m["type"].as_str() {
        Some("error") => &m["payload"],
        Some("next") => &m["payload"]["errors"],
        _ => panic!("expected an error: {m}"),
    };
    errors[0]["message"].as_str().unwrap_or_else(|| panic!("expected an error: {m}")).to_string()
}

/// The router fills `connection_init` with what a WebSocket client wrote. Identity headers
/// there (with the right mesh secret, nested or not) or on the upgrade request prove nothing;
/// only a token accounts verifies does, and a bad token is refused.
async fn websocket_identity_comes_only_from_a_verified_token(backend: Backend) {
    let p = platform(backend, |_| {}).await;
    let (owner, token) = p.user().await;
    let video = p.video(&owner).await;
    let forged = [
        json!({ "headers": { "x-user-id": owner, "x-user-role": "user", "x-flick-mesh": MESH } }),
        json!({ "X-User-Id": owner, "X-Flick-Mesh": MESH }),
    ];
    for init in forged {
        let mut ws = p.ws(init.clone(), &[]).await.expect("an anonymous connection is allowed");
        ws.subscribe("1", &video).await;
        let m = ws.first("1").await;
        assert!(error_message(&m).contains("login required"), "{init}: {m}");
    }
    let mut ws = p.ws(json!({}), &[("x-user-id", &owner), ("x-flick-mesh", MESH)]).await.unwrap();
    ws.subscribe("1", &video).await;
    assert!(error_message(&ws.first("1").await).contains("login required"), "identity headers on the upgrade");

    let refused = p.ws(json!({ "headers": { "authorization": "Bearer not-a-token" } }), &[]).await;
    assert!(refused.is_err(), "a bad token is refused at connection_init");

    let mut ws = p.ws(json!({ "headers": { "Authorization": format!("Bearer {token}") } }), &[]).await.unwrap();
    ws.subscribe("1", &video).await;
    let m = ws.first("1").await;
    assert_eq!(m["type"], "next", "{m}");
    assert_eq!(m["payload"]["data"]["videoProgress"]["stage"], "awaiting_upload", "{m}");
}

/// A logout ends the subscriptions its token opened at once (the shared revocation list
/// wakes them), long before the periodic re-check would.
async fn a_logout_ends_the_subscriptions_its_token_opened(backend: Backend) {
    let p = platform(backend, |c| c.graphql.subscription_recheck_seconds = 3600).await;
    let (owner, token) = p.user().await;
    let video = p.video(&owner).await;
    let mut ws = p.ws(json!({ "authorization": format!("Bearer {token}") }), &[]).await.unwrap();
    ws.subscribe("1", &video).await;
    assert_eq!(ws.first("1").await["type"], "next");
    let started = Instant::now();
    p.logout(&token).await;
    match ws.next(Duration::from_secs(10)).await {
        Frame::Closed(4403, reason) => assert_eq!(reason, "token revoked"),
        other => panic!("the subscription outlived its token's logout: {other:?}"),
    }
    eprintln!("subscription ended {:?} after the logout began", started.elapsed());
    assert!(p.ws(json!({ "authorization": format!("Bearer {token}") }), &[]).await.is_err(), "the token is dead");
}

/// An access token that expires ends its subscriptions at its expiry.
async fn an_expired_token_ends_its_subscriptions(backend: Backend) {
    let p = platform(backend, |c| {
        c.accounts_mut().access_token_ttl_seconds = 3;
        c.graphql.subscription_recheck_seconds = 3600;
    })
    .await;
    let (owner, token) = p.user().await;
    let video = p.video(&owner).await;
    let mut ws = p.ws(json!({ "authorization": format!("Bearer {token}") }), &[]).await.unwrap();
    ws.subscribe("1", &video).await;
    assert_eq!(ws.first("1").await["type"], "next");
    match ws.next(Duration::from_secs(15)).await {
        Frame::Closed(4403, reason) => assert_eq!(reason, "token expired"),
        other => panic!("the subscription outlived its token: {other:?}"),
    }
}

/// Each user holds at most `max_subscriptions_per_user` open; a finished one frees its slot.
async fn open_subscriptions_per_user_are_capped(backend: Backend) {
    let p = platform(backend, |c| c.graphql.max_subscriptions_per_user = 2).await;
    let (owner, token) = p.user().await;
    let video = p.video(&owner).await;
    let mut ws = p.ws(json!({ "authorization": format!("Bearer {token}") }), &[]).await.unwrap();
    for id in ["1", "2"] {
        ws.subscribe(id, &video).await;
        assert_eq!(ws.first(id).await["type"], "next", "subscription {id} within the cap");
    }
    // Another connection of the same user counts too.
    let mut other = p.ws(json!({ "authorization": format!("Bearer {token}") }), &[]).await.unwrap();
    other.subscribe("3", &video).await;
    let m = other.first("3").await;
    assert!(error_message(&m).contains("too many open subscriptions"), "{m}");
    // Another user is not affected.
    let (someone, their_token) = p.user().await;
    let theirs = p.video(&someone).await;
    let mut third = p.ws(json!({ "authorization": format!("Bearer {their_token}") }), &[]).await.unwrap();
    third.subscribe("1", &theirs).await;
    assert_eq!(third.first("1").await["type"], "next");
    // Completing one frees a slot.
    ws.send(json!({ "id": "1", "type": "complete" })).await;
    // The server drops the completed stream on its own time: try until a slot is free.
    let deadline = Instant::now() + Duration::from_secs(5);
    for attempt in 0.. {
        let id = format!("retry-{attempt}");
        other.subscribe(&id, &video).await;
        let m = other.first(&id).await;
        if m["type"] == "next" {
            break;
        }
        assert!(error_message(&m).contains("too many open subscriptions"), "{m}");
        assert!(Instant::now() < deadline, "a completed subscription never freed its slot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `videoProgress` of a video whose upload never comes ends once the upload would have
/// expired, instead of holding a connection (and a slot) for ever.
async fn progress_of_a_video_never_uploaded_ends_after_the_upload_expiry(backend: Backend) {
    let p = platform(backend, |c| c.transcoder_mut().upload_expiry_seconds = 2).await;
    let (owner, token) = p.user().await;
    let video = p.video(&owner).await;
    let mut ws = p.ws(json!({ "authorization": format!("Bearer {token}") }), &[]).await.unwrap();
    ws.subscribe("1", &video).await;
    assert_eq!(ws.first("1").await["payload"]["data"]["videoProgress"]["stage"], "awaiting_upload");
    match ws.next(Duration::from_secs(15)).await {
        Frame::Message(m) if m["type"] == "complete" && m["id"] == "1" => {}
        other => panic!("the subscription outlived the upload expiry: {other:?}"),
    }
}

/// A subscription opened before the upload follows the job and completes right after
/// `ready`: no further message is needed to end it (issue 16).
async fn progress_completes_right_after_ready(backend: Backend) {
    let p = platform(backend, |_| {}).await;
    let (owner, token) = p.user().await;
    let video = p.video(&owner).await;
    let mut ws = p.ws(json!({ "authorization": format!("Bearer {token}") }), &[]).await.unwrap();
    ws.subscribe("1", &video).await;
    assert_eq!(ws.first("1").await["payload"]["data"]["videoProgress"]["stage"], "awaiting_upload");
    let bus = &p.transcoder.shared.bus;
    let progress = |stage: &str, percent: f64| {
        let payload = flick_proto::events::v1::TranscodeProgress {
            video_id: video.clone(),
            owner_id: owner.clone(),
            stage: stage.into(),
            percent,
            ..Default::default()
        };
        flick_platform::bus::envelope("transcode.progress", &video, "transcoder", payload.encode_to_vec())
    };
    // Progress is transient: RabbitMQ's listener binds its queue once the first subscription
    // asks, so the first message is sent again until it arrives (as the worker's come each
    // second).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        bus.publish_transient(&progress("encoding", 40.0)).await.unwrap();
        match ws.next(Duration::from_millis(300)).await {
            Frame::Message(m) if m["type"] == "next" => {
                assert_eq!(m["payload"]["data"]["videoProgress"]["stage"], "encoding", "{m}");
                break;
            }
            Frame::Nothing if Instant::now() < deadline => continue,
            other => panic!("no encoding message: {other:?}"),
        }
    }
    bus.publish_transient(&progress("ready", 100.0)).await.unwrap();
    match ws.next(Duration::from_secs(10)).await {
        Frame::Message(m) if m["type"] == "next" => assert_eq!(m["payload"]["data"]["videoProgress"]["stage"], "ready"),
        other => panic!("no ready message: {other:?}"),
    }
    match ws.next(Duration::from_secs(5)).await {
        Frame::Message(m) if m["type"] == "complete" && m["id"] == "1" => {}
        other => panic!("the subscription did not complete after ready: {other:?}"),
    }
}

/// The router sends a WebSocket client's queries over HTTP with only its token: subgraphs
/// identify such a request by the token (accounts verifies it), never by an identity header
/// without the mesh secret, and refuse a bad token.
async fn http_requests_with_only_a_token_are_identified_by_it(backend: Backend) {
    let p = platform(backend, |_| {}).await;
    let (owner, token) = p.user().await;
    // An accounts replica that checks tokens with the first, as every service does.
    let replica =
        TestApp::start_beside(p.infra.replica(), &p.accounts, |s| async move { flick_accounts::build(&s).await }).await;
    let http = reqwest::Client::new();
    let query = json!({ "query": "{ me { id } }" });
    let url = replica.url("/graphql");
    let me: Value = http.post(&url).bearer_auth(&token).json(&query).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["data"]["me"]["id"], owner.as_str(), "{me}");
    let (someone, _) = p.user().await;
    let forged = http.post(&url).header("x-user-id", &someone).bearer_auth(&token).json(&query).send().await.unwrap();
    let forged: Value = forged.json().await.unwrap();
    assert_eq!(forged["data"]["me"]["id"], owner.as_str(), "a header without the mesh secret is ignored: {forged}");
    let bad: Value =
        http.post(&url).bearer_auth("not-a-token").json(&query).send().await.unwrap().json().await.unwrap();
    assert_eq!(bad["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{bad}");
    assert_eq!(bad["errors"][0]["message"], "invalid token", "{bad}");
    assert!(bad["data"].is_null(), "no data for a refused token: {bad}");
}

flick_testkit::on_both_backends!(
    websocket_identity_comes_only_from_a_verified_token,
    a_logout_ends_the_subscriptions_its_token_opened,
    an_expired_token_ends_its_subscriptions,
    open_subscriptions_per_user_are_capped,
    progress_of_a_video_never_uploaded_ends_after_the_upload_expiry,
    progress_completes_right_after_ready,
    http_requests_with_only_a_token_are_identified_by_it,
);
