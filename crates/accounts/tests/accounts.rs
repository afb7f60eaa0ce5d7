//! Accounts over HTTP, gRPC and GraphQL, on both adapter sets: SQLite + in-memory cache +
//! in-process bus (`embedded_*`) and PostgreSQL + Redis + RabbitMQ (`real_*`).

use flick_accounts::config::AccountsConfigExt as _;
use flick_platform::bus::{Delivery, QueueSpec, handler};
use flick_testkit::app::{Backend, TestApp, TestInfra};
use flick_testkit::{TcpProxy, redis_url, unique};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

async fn app(backend: Backend) -> TestApp {
    start(TestInfra::new(backend).await).await
}

async fn start(infra: TestInfra) -> TestApp {
    TestApp::start(infra, |shared| async move { flick_accounts::build(&shared).await }).await
}

struct Client {
    http: reqwest::Client,
    base: String,
}

fn client(app: &TestApp) -> Client {
    Client { http: reqwest::Client::new(), base: app.url("") }
}

impl Client {
    async fn post(&self, path: &str, body: Value, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn register(&self, name: &str) -> Value {
        let (status, body) = self
            .post(
                "/auth/register",
                json!({ "email": format!("{name}@example.com"), "username": name, "password": "correct horse battery", "display_name": name }),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    async fn login(&self, login: &str, password: &str) -> (StatusCode, Value) {
        self.post("/auth/login", json!({ "login": login, "password": password }), None).await
    }

    async fn tokens(&self, login: &str) -> (String, String) {
        let (status, body) = self.login(login, "correct horse battery").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (body["access_token"].as_str().unwrap().to_string(), body["refresh_token"].as_str().unwrap().to_string())
    }

    /// ForwardAuth: the status and the X-User-Id it answers.
    async fn verify(&self, token: Option<&str>, optional: bool) -> (StatusCode, Option<String>) {
        let path = if optional { "/user/token_verify?mode=optional" } else { "/user/token_verify" };
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let user = res.headers().get("x-user-id").map(|v| v.to_str().unwrap().to_string());
        (res.status(), user)
    }

    async fn graphql(&self, query: &str, user: Option<&str>) -> Value {
        let mut req = self.http.post(format!("{}/graphql", self.base)).json(&json!({ "query": query }));
        if let Some(u) = user {
            req = req.header("x-user-id", u);
        }
        req.send().await.unwrap().json().await.unwrap()
    }
}

fn name() -> String {
    unique("u").replace('-', "")[..20].to_string()
}

// ---------- scenarios, each run on both backends ----------

async fn registration(backend: Backend) {
    let app = app(backend).await;
    let c = client(&app);
    let n = name();
    let user = c.register(&n).await;
    assert_eq!(user["username"], n.as_str());
    assert_eq!(user["email"], format!("{n}@example.com"));
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());
    for key in ["id", "display_name", "bio", "avatar_url", "created_at"] {
        assert!(user.get(key).is_some(), "user object has {key}: {user}");
    }

    // The same email and username, in upper case and full-width letters: taken.
    let fullwidth: String = n
        .to_uppercase()
        .chars()
        .map(|c| if c.is_ascii_alphabetic() { char::from_u32(c as u32 + 0xFEE0).unwrap() } else { c })
        .collect();
    let (status, body) = c
        .post(
            "/auth/register",
            json!({ "email": format!("{}@EXAMPLE.com", n.to_uppercase()), "username": fullwidth, "password": "another password", "display_name": "x" }),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "CONFLICT");
    assert!(body["error"]["fields"]["email"].is_string() && body["error"]["fields"]["username"].is_string(), "{body}");

    let (status, body) = c
        .post(
            "/auth/register",
            json!({ "email": "nope", "username": "x", "password": "short", "display_name": "" }),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "BAD_USER_INPUT");
    for field in ["email", "username", "password", "display_name"] {
        assert!(body["error"]["fields"][field].is_string(), "{field} named: {body}");
    }

    let res = c
        .http
        .post(format!("{}/auth/register", c.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BAD_USER_INPUT");
}

async fn login_and_verify(backend: Backend) {
    let app = app(backend).await;
    let c = client(&app);
    let n = name();
    let user = c.register(&n).await;
    let id = user["id"].as_str().unwrap();

    for login in [format!("{n}@example.com"), n.to_uppercase()] {
        let (status, body) = c.login(&login, "correct horse battery").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        let (status, who) = c.verify(body["access_token"].as_str(), false).await;
        assert_eq!((status, who.as_deref()), (StatusCode::OK, Some(id)));
    }

    // Unknown user and wrong password: the same answer.
    let (s1, wrong) = c.login(&n, "wrong password!").await;
    let (s2, unknown) = c.login(&name(), "wrong password!").await;
    assert_eq!((s1, s2), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
    assert_eq!(wrong, unknown);

    // ForwardAuth without a token, with a bad one, and in optional mode.
    assert_eq!(c.verify(None, false).await, (StatusCode::UNAUTHORIZED, None));
    assert_eq!(c.verify(None, true).await, (StatusCode::OK, None));
    assert_eq!(c.verify(Some("garbage"), true).await.0, StatusCode::UNAUTHORIZED);
    let res = c.http.get(format!("{}/user/token_verify", c.base)).send().await.unwrap();
    assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));

    // Istio's ext_authz asks with the client request's method and path (the chart's Istio edge).
    let (token, _) = c.tokens(&n).await;
    for method in [reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::PATCH, reqwest::Method::DELETE] {
        let verify = format!("{}/user/token_verify?path=/graphql", c.base);
        let res = c.http.request(method.clone(), &verify).bearer_auth(&token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{method}");
        assert_eq!(res.headers()["x-user-id"].to_str().unwrap(), id, "{method}");
        let res = c.http.request(method.clone(), &verify).bearer_auth("garbage").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method}");
    }
}

async fn login_throttling(backend: Backend) {
    let app = app(backend).await;
    let c = client(&app);
    let n = name();
    c.register(&n).await;
    for _ in 0..5 {
        assert_eq!(c.login(&n, "wrong password!").await.0, StatusCode::UNAUTHORIZED);
    }
    let res = c
        .http
        .post(format!("{}/auth/login", c.base))
        .json(&json!({ "login": n, "password": "correct horse battery" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "Retry-After {retry}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
}

async fn refresh_rotation_and_reuse(backend: Backend) {
    let app = app(backend).await;
    let c = client(&app);
    let n = name();
    c.register(&n).await;
    let (access, refresh) = c.tokens(&n).await;

    let (status, rotated) = c.post("/auth/refresh", json!({ "refresh_token": refresh }), None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_refresh = rotated["refresh_token"].as_str().unwrap();
    assert_ne!(new_refresh, refresh);
    assert_eq!(c.verify(rotated["access_token"].as_str(), false).await.0, StatusCode::OK);

    // The old refresh token again: someone copied it. The whole family dies.
    let (status, _) = c.post("/auth/refresh", json!({ "refresh_token": refresh }), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = c.post("/auth/refresh", json!({ "refresh_token": new_refresh }), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the newest token of the family is revoked too");
    assert_eq!(c.verify(Some(&access), false).await.0, StatusCode::UNAUTHORIZED, "and its access tokens");
    assert_eq!(c.verify(rotated["access_token"].as_str(), false).await.0, StatusCode::UNAUTHORIZED);

    let (status, _) = c.post("/auth/refresh", json!({ "refresh_token": "made-up" }), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn logout_revokes_at_once(backend: Backend) {
    let app = app(backend).await;
    let c = client(&app);
    let n = name();
    c.register(&n).await;
    let (access, refresh) = c.tokens(&n).await;
    let (other_access, _) = c.tokens(&n).await;
    assert_eq!(c.send(reqwest::Method::POST, "/auth/logout", None, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(c.send(reqwest::Method::POST, "/auth/logout", None, Some(&access)).await.0, StatusCode::NO_CONTENT);
    assert_eq!(c.verify(Some(&access), false).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(c.send(reqwest::Method::GET, "/user/profile", None, Some(&access)).await.0, StatusCode::UNAUTHORIZED);
    let (status, _) = c.post("/auth/refresh", json!({ "refresh_token": refresh }), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the session's refresh token is revoked");
    assert_eq!(c.verify(Some(&other_access), false).await.0, StatusCode::OK, "other sessions live on");
}

async fn profile_lifecycle(backend: Backend) {
    let app = app(backend).await;
    let c = client(&app);
    let n = name();
    let user = c.register(&n).await;
    let id = user["id"].as_str().unwrap().to_string();
    let (token, _) = c.tokens(&n).await;
    let (other_session, _) = c.tokens(&n).await;

    // Events of this user, as another service would receive them.
    let seen: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let stop = CancellationToken::new();
    let queue = unique("q.accounts-test");
    let record = seen.clone();
    app.shared
        .bus
        .consume(
            QueueSpec::events(&queue, &["user.*"]),
            handler(move |d: Delivery| {
                let record = record.clone();
                async move {
                    record.lock().unwrap().push(d);
                    Ok(())
                }
            }),
            stop.clone(),
        )
        .await
        .unwrap();

    let (status, me) = c.send(reqwest::Method::GET, "/user/profile", None, Some(&token)).await;
    assert_eq!((status, me["id"].as_str()), (StatusCode::OK, Some(id.as_str())));
    assert_eq!(c.send(reqwest::Method::GET, "/user/profile", None, None).await.0, StatusCode::UNAUTHORIZED);

    let (status, me) = c
        .send(
            reqwest::Method::PATCH,
            "/user/profile",
            Some(json!({ "bio": "I film birds", "avatar_url": "https://img.example/a.png" })),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!((me["bio"].as_str(), me["display_name"].as_str()), (Some("I film birds"), Some(n.as_str())));
    let (status, me) =
        c.send(reqwest::Method::PUT, "/user/profile", Some(json!({ "display_name": "Birder" })), Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        (me["display_name"].as_str(), me["bio"].as_str(), &me["avatar_url"]),
        (Some("Birder"), Some(""), &Value::Null)
    );
    let (status, body) =
        c.send(reqwest::Method::PATCH, "/user/profile", Some(json!({ "avatar_url": "ftp://x" })), Some(&token)).await;
    assert_eq!((status, &body["error"]["fields"]["avatar_url"].is_string()), (StatusCode::BAD_REQUEST, &true));

    // Password: the current one is required and must be right; other sessions end.
    let (status, body) = c
        .send(reqwest::Method::PATCH, "/user/profile", Some(json!({ "new_password": "a new password" })), Some(&token))
        .await;
    assert_eq!((status, body["error"]["fields"]["current_password"].is_string()), (StatusCode::BAD_REQUEST, true));
    let (status, _) = c
        .send(
            reqwest::Method::PATCH,
            "/user/profile",
            Some(json!({ "current_password": "wrong one!", "new_password": "a new password" })),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = c
        .send(
            reqwest::Method::PATCH,
            "/user/profile",
            Some(json!({ "current_password": "correct horse battery", "new_password": "a new password" })),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(c.verify(Some(&other_session), false).await.0, StatusCode::UNAUTHORIZED, "other sessions revoked");
    assert_eq!(c.verify(Some(&token), false).await.0, StatusCode::OK, "this session lives on");
    assert_eq!(c.login(&n, "correct horse battery").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(c.login(&n, "a new password").await.0, StatusCode::OK);

    let delete = json!({ "current_password": "a new password" });
    assert_eq!(
        c.send(reqwest::Method::DELETE, "/user/profile", Some(delete), Some(&token)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(c.verify(Some(&token), false).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(c.login(&n, "a new password").await.0, StatusCode::UNAUTHORIZED);
    let (_, list) = c.post("/user/list", json!({ "ids": [id] }), None).await;
    assert_eq!(list["users"], json!([]));

    let arrived = flick_testkit::eventually(Duration::from_secs(10), || async {
        let types: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.envelope.subject == id)
            .map(|d| d.envelope.r#type.clone())
            .collect();
        types.contains(&"user.deleted".to_string()) && types.contains(&"user.updated".to_string())
    })
    .await;
    assert!(arrived, "user.updated and user.deleted reach consumers through the outbox");
    stop.cancel();
    let _ = app.shared.bus.delete_queues(&queue).await;
}

async fn user_list(backend: Backend) {
    let app = app(backend).await;
    let c = client(&app);
    let (a, b) = (c.register(&name()).await, c.register(&name()).await);
    let ids = json!([b["id"], "0195f0a2-7c1e-7d3a-9b1e-2f8c4a6d9e01", a["id"], "not-a-uuid"]);
    let (status, body) = c.post("/user/list", json!({ "ids": ids }), None).await;
    assert_eq!(status, StatusCode::OK);
    let users = body["users"].as_array().unwrap();
    assert_eq!(users.len(), 2, "unknown ids are omitted: {body}");
    assert_eq!(users[0]["id"], b["id"], "in the order asked");
    assert!(users[0].get("email").is_none(), "no email in public details");
    let too_many: Vec<String> = (0..101).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    assert_eq!(c.post("/user/list", json!({ "ids": too_many }), None).await.0, StatusCode::BAD_REQUEST);
}

async fn graphql(backend: Backend) {
    let app = app(backend).await;
    let c = client(&app);
    let n = name();
    let user = c.register(&n).await;
    let id = user["id"].as_str().unwrap();
    let me = c.graphql("{ me { id username displayName email bio } }", Some(id)).await;
    assert_eq!(me["data"]["me"]["username"], n.as_str(), "{me}");
    assert_eq!(me["data"]["me"]["email"], format!("{n}@example.com"));
    assert_eq!(c.graphql("{ me { id } }", None).await["data"]["me"], Value::Null);
    let other = c.graphql(&format!(r#"{{ user(id: "{id}") {{ username email }} }}"#), None).await;
    assert_eq!(
        (other["data"]["user"]["username"].as_str(), &other["data"]["user"]["email"]),
        (Some(n.as_str()), &Value::Null)
    );
    let entity = c.graphql(&format!(r#"{{ _entities(representations: [{{__typename: "User", id: "{id}"}}]) {{ ... on User {{ displayName }} }} }}"#), None).await;
    assert_eq!(entity["data"]["_entities"][0]["displayName"], n.as_str(), "{entity}");

    let changed = c
        .graphql(
            r#"mutation { updateProfile(input: { displayName: "GraphQL Ada", bio: "hi" }) { displayName bio } }"#,
            Some(id),
        )
        .await;
    assert_eq!(changed["data"]["updateProfile"]["displayName"], "GraphQL Ada", "{changed}");
    let anonymous = c.graphql(r#"mutation { updateProfile(input: { bio: "x" }) { bio } }"#, None).await;
    assert_eq!(anonymous["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{anonymous}");
    let invalid = c.graphql(r#"mutation { updateProfile(input: { displayName: "" }) { bio } }"#, Some(id)).await;
    assert_eq!(invalid["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{invalid}");
}

async fn grpc(backend: Backend) {
    use flick_proto::accounts::v1::{
        GetUserRequest, GetUsersRequest, VerifyTokenRequest, accounts_service_client::AccountsServiceClient,
    };
    let app = app(backend).await;
    let c = client(&app);
    let n = name();
    let user = c.register(&n).await;
    let id = user["id"].as_str().unwrap().to_string();
    let (token, _) = c.tokens(&n).await;
    let channel = tonic::transport::Channel::from_shared(app.url("")).unwrap().connect().await.unwrap();
    let mut grpc = AccountsServiceClient::new(channel);
    let verified = grpc.verify_token(VerifyTokenRequest { access_token: token.clone() }).await.unwrap().into_inner();
    assert_eq!((verified.user_id.as_str(), verified.role.as_str()), (id.as_str(), "user"));
    let err = grpc.verify_token(VerifyTokenRequest { access_token: "bad".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let got = grpc.get_user(GetUserRequest { id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(got.username, n);
    let missing = grpc.get_user(GetUserRequest { id: uuid::Uuid::now_v7().to_string() }).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let many = grpc.get_users(GetUsersRequest { ids: vec![id.clone(), "nope".into()] }).await.unwrap().into_inner();
    assert_eq!(many.users.len(), 1);
}

async fn entities_batch_into_one_query(backend: Backend) {
    let app = app(backend).await;
    let c = client(&app);
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(c.register(&name()).await["id"].as_str().unwrap().to_string());
    }
    let representations: Vec<String> = ids.iter().map(|id| format!(r#"{{__typename: "User", id: "{id}"}}"#)).collect();
    let query = format!(
        "{{ _entities(representations: [{}]) {{ ... on User {{ id displayName }} }} }}",
        representations.join(", ")
    );
    // The outbox relay polls in the background; the least of three runs is the request's cost.
    let mut costs = Vec::new();
    for _ in 0..3 {
        let before = app.db_queries("accounts").await;
        let res = c.graphql(&query, None).await;
        costs.push(app.db_queries("accounts").await - before);
        let got: Vec<&str> =
            res["data"]["_entities"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
        assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>(), "{res}");
    }
    assert_eq!(costs.iter().min(), Some(&1), "five owners, one query: {costs:?}");
}

/// The service's `/metrics` value of `name` (a gauge or counter without labels).
async fn metric(app: &TestApp, name: &str) -> Option<f64> {
    let text = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Sends every request of `bodies` to `/auth/login` at once; their statuses and Retry-After.
async fn login_burst(c: &Client, bodies: Vec<Value>) -> Vec<(StatusCode, Option<u64>)> {
    let requests = bodies.into_iter().map(|body| {
        let req = c.http.post(format!("{}/auth/login", c.base)).json(&body);
        async move {
            let res = req.send().await.unwrap();
            let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
            (res.status(), retry)
        }
    });
    futures::future::join_all(requests).await
}

fn count(results: &[(StatusCode, Option<u64>)], status: StatusCode) -> usize {
    results.iter().filter(|(s, _)| *s == status).count()
}

/// Many parallel logins: at most the configured number of argon2 hashes (19 MiB each) run
/// at once; the others are turned away with 503 + Retry-After instead of taking memory.
async fn password_hashing_is_bounded(backend: Backend) {
    let mut infra = TestInfra::new(backend).await;
    infra.config.accounts_mut().password_hash_memory_mib = 38; // two hashes at once
    infra.config.accounts_mut().password_hash_wait_ms = 0;
    infra.config.accounts_mut().login_failures_per_address = 1000;
    let app = start(infra).await;
    let c = client(&app);
    // Unknown users: each still costs one hash (against the dummy), from separate accounts.
    let bodies = (0..48).map(|_| json!({ "login": name(), "password": "wrong password!" })).collect();
    let results = login_burst(&c, bodies).await;
    let (unauthorized, unavailable) =
        (count(&results, StatusCode::UNAUTHORIZED), count(&results, StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(unauthorized + unavailable, results.len(), "only 401 or 503: {results:?}");
    assert!(unauthorized >= 1 && unavailable >= 1, "some hashed, some were turned away: {results:?}");
    assert!(
        results.iter().filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE).all(|(_, retry)| retry.is_some()),
        "503s carry Retry-After: {results:?}"
    );
    assert_eq!(metric(&app, "accounts_password_hash_slots").await, Some(2.0));
    let peak = metric(&app, "accounts_password_hashes_in_flight_max").await.expect("peak gauge exported");
    assert!((1.0..=2.0).contains(&peak), "at most two hashes ran at once, saw {peak}");
    assert!(metric(&app, "accounts_password_hash_busy_total").await >= Some(unavailable as f64));
    // Once the burst is over, logins work again.
    let n = name();
    c.register(&n).await;
    assert_eq!(c.login(&n, "correct horse battery").await.0, StatusCode::OK);
}

/// A parallel burst of wrong passwords for one account from one address: every attempt is
/// counted before its hash, so no more than the limit are ever checked.
async fn login_burst_cannot_pass_the_limit(backend: Backend) {
    let mut infra = TestInfra::new(backend).await;
    infra.config.accounts_mut().login_failures_per_account_address = 3;
    infra.config.accounts_mut().login_failures_per_account = 3;
    infra.config.accounts_mut().password_hash_memory_mib = 19 * 16;
    infra.config.accounts_mut().password_hash_wait_ms = 60_000;
    let app = start(infra).await;
    let c = client(&app);
    let n = name();
    c.register(&n).await;
    let bodies = (0..16).map(|_| json!({ "login": n, "password": "wrong password!" })).collect();
    let results = login_burst(&c, bodies).await;
    assert!(count(&results, StatusCode::UNAUTHORIZED) <= 3, "at most 3 attempts checked: {results:?}");
    assert_eq!(count(&results, StatusCode::TOO_MANY_REQUESTS), 16 - count(&results, StatusCode::UNAUTHORIZED));
    assert!(results.iter().all(|(s, r)| *s != StatusCode::TOO_MANY_REQUESTS || r.is_some()), "{results:?}");
    assert_eq!(c.login(&n, "correct horse battery").await.0, StatusCode::TOO_MANY_REQUESTS);
}

/// Someone else's failures from a shared address (80 of them: one account hammered, many
/// sprayed) do not lock out a user with no failures of their own.
async fn other_peoples_failures_do_not_lock_out_a_correct_password(backend: Backend) {
    let app = app(backend).await;
    let c = client(&app);
    let victim = name();
    c.register(&victim).await;
    let mut bodies: Vec<Value> = (0..40).map(|_| json!({ "login": victim, "password": "wrong password!" })).collect();
    bodies.extend((0..40).map(|_| json!({ "login": name(), "password": "wrong password!" })));
    let mut results = Vec::new();
    for chunk in bodies.chunks(8) {
        results.extend(login_burst(&c, chunk.to_vec()).await);
    }
    assert_eq!(results.len(), 80);
    assert!(count(&results, StatusCode::OK) == 0 && count(&results, StatusCode::TOO_MANY_REQUESTS) > 0);
    assert_eq!(
        c.login(&victim, "correct horse battery").await.0,
        StatusCode::TOO_MANY_REQUESTS,
        "the victim's account is locked"
    );

    let newcomer = name();
    c.register(&newcomer).await;
    let (status, body) = c.login(&newcomer, "correct horse battery").await;
    assert_eq!(status, StatusCode::OK, "same address, no failures of their own: {body}");
}

/// A login longer than any account's is refused before any key is built from it.
async fn overlong_logins_are_refused_before_counting(backend: Backend) {
    let app = app(backend).await;
    let c = client(&app);
    for login in [format!("{}@example.com", "a".repeat(250)), "ｘ".repeat(300), "a".repeat(100_000)] {
        let (status, body) = c.login(&login, "wrong password!").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "BAD_USER_INPUT");
        assert!(body["error"]["fields"]["login"].is_string(), "{body}");
        let folded = unicode_normalization::UnicodeNormalization::nfkc(login.trim()).collect::<String>().to_lowercase();
        let cache = &app.shared.cache;
        assert_eq!(cache.rate_count(&format!("login:account:{folded}")).await.unwrap().0, 0);
    }
    assert_eq!(app.shared.cache.rate_count("login:address:127.0.0.1").await.unwrap().0, 0, "nothing counted");
    // 254 characters is still a login (of nobody).
    let (status, _) = c.login(&format!("{}@example.com", "a".repeat(242)), "wrong password!").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Deleting the account and changing the password need the current password, and guessing
/// it with a stolen access token is throttled like logins.
async fn deletion_and_password_change_need_the_current_password(backend: Backend) {
    let app = app(backend).await;
    let c = client(&app);
    let n = name();
    c.register(&n).await;
    let (token, _) = c.tokens(&n).await;
    let delete = |body: Option<Value>| c.send(reqwest::Method::DELETE, "/user/profile", body, Some(&token));
    let (status, body) = delete(None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["fields"]["current_password"].is_string(), "{body}");
    let (status, body) = delete(Some(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = delete(Some(json!({ "current_password": "wrong password!" }))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(c.verify(Some(&token), false).await.0, StatusCode::OK, "still there");
    let (status, body) = c
        .send(reqwest::Method::PATCH, "/user/profile", Some(json!({ "new_password": "a new password" })), Some(&token))
        .await;
    assert_eq!((status, body["error"]["fields"]["current_password"].is_string()), (StatusCode::BAD_REQUEST, true));

    // Guessing: 5 wrong in a window, then even the right one waits.
    for _ in 0..4 {
        let change = json!({ "current_password": "wrong password!", "new_password": "a new password" });
        assert_eq!(
            c.send(reqwest::Method::PATCH, "/user/profile", Some(change), Some(&token)).await.0,
            StatusCode::FORBIDDEN
        );
    }
    let (status, _) = delete(Some(json!({ "current_password": "correct horse battery" }))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    let other = name();
    c.register(&other).await;
    let (other_token, _) = c.tokens(&other).await;
    let (status, body) = c
        .send(
            reqwest::Method::DELETE,
            "/user/profile",
            Some(json!({ "current_password": "correct horse battery" })),
            Some(&other_token),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(c.verify(Some(&other_token), false).await.0, StatusCode::UNAUTHORIZED);
}

/// A session ends `session_lifetime_seconds` after its login, however often it is refreshed.
async fn refresh_refuses_expired_sessions(backend: Backend) {
    let mut infra = TestInfra::new(backend).await;
    infra.config.accounts_mut().session_lifetime_seconds = 2;
    let app = start(infra).await;
    let c = client(&app);
    let n = name();
    c.register(&n).await;
    let started = std::time::Instant::now();
    let (_, first) = c.tokens(&n).await;
    let latest = Mutex::new(first);
    let ended = flick_testkit::eventually(Duration::from_secs(15), || async {
        let current = latest.lock().unwrap().clone();
        let (status, body) = c.post("/auth/refresh", json!({ "refresh_token": current }), None).await;
        if status == StatusCode::OK {
            *latest.lock().unwrap() = body["refresh_token"].as_str().unwrap().to_string();
            return false;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        true
    })
    .await;
    assert!(ended, "refreshing every 50 ms kept the session alive past its lifetime");
    assert!(started.elapsed() >= Duration::from_secs(2), "refused only once expired: {:?}", started.elapsed());
}

flick_testkit::on_both_backends!(
    services_verify_tokens_themselves,
    registration,
    login_and_verify,
    login_throttling,
    refresh_rotation_and_reuse,
    logout_revokes_at_once,
    profile_lifecycle,
    user_list,
    graphql,
    grpc,
    entities_batch_into_one_query,
    password_hashing_is_bounded,
    login_burst_cannot_pass_the_limit,
    other_peoples_failures_do_not_lock_out_a_correct_password,
    overlong_logins_are_refused_before_counting,
    deletion_and_password_change_need_the_current_password,
    refresh_refuses_expired_sessions,
);

// ---------- replicas, outages, expiry ----------

#[tokio::test]
async fn real_logout_on_one_replica_is_seen_by_another_at_once() {
    let infra = TestInfra::new(Backend::Real).await;
    let replica = infra.replica();
    let a = start(infra).await;
    let b = start(replica).await;
    let (ca, cb) = (client(&a), client(&b));
    let n = name();
    ca.register(&n).await;
    let (token, _) = ca.tokens(&n).await;
    assert_eq!(
        cb.verify(Some(&token), false).await.0,
        StatusCode::OK,
        "b knows the signing key (shared key directory)"
    );
    assert_eq!(ca.send(reqwest::Method::POST, "/auth/logout", None, Some(&token)).await.0, StatusCode::NO_CONTENT);
    assert_eq!(cb.verify(Some(&token), false).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn real_revocation_holds_while_redis_is_unreachable() {
    let mut infra = TestInfra::new(Backend::Real).await;
    let proxy = TcpProxy::start("127.0.0.1:6379").await;
    infra.config.cache.url = Some(proxy.rewrite(&redis_url()));
    let app = start(infra).await;
    let c = client(&app);
    let n = name();
    c.register(&n).await;
    let (revoked_before, _) = c.tokens(&n).await;
    let (revoked_during, _) = c.tokens(&n).await;
    let (valid, _) = c.tokens(&n).await;
    assert_eq!(
        c.send(reqwest::Method::POST, "/auth/logout", None, Some(&revoked_before)).await.0,
        StatusCode::NO_CONTENT
    );

    proxy.cut();
    assert_eq!(c.verify(Some(&revoked_before), false).await.0, StatusCode::UNAUTHORIZED, "database fallback");
    assert_eq!(c.verify(Some(&valid), false).await.0, StatusCode::OK, "valid tokens still pass");
    assert_eq!(
        c.send(reqwest::Method::POST, "/auth/logout", None, Some(&revoked_during)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(c.verify(Some(&revoked_during), false).await.0, StatusCode::UNAUTHORIZED);

    proxy.restore();
    // Right after Redis returns, before the background retry has written the revocation: the
    // subject is that window of time, so the check is sampled across two seconds of it.
    for _ in 0..20 {
        assert_eq!(c.verify(Some(&revoked_during), false).await.0, StatusCode::UNAUTHORIZED, "never accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.verify(Some(&valid), false).await.0, StatusCode::OK);
}

/// With Redis cut off, attempts are still counted in the process: never fail open.
#[tokio::test]
async fn real_login_throttling_holds_while_redis_is_unreachable() {
    let mut infra = TestInfra::new(Backend::Real).await;
    let proxy = TcpProxy::start("127.0.0.1:6379").await;
    infra.config.cache.url = Some(proxy.rewrite(&redis_url()));
    infra.config.accounts_mut().login_failures_per_account = 5;
    let app = start(infra).await;
    let c = client(&app);
    let n = name();
    c.register(&n).await;
    assert_eq!(c.login(&n, "wrong password!").await.0, StatusCode::UNAUTHORIZED);
    proxy.cut();
    for _ in 0..4 {
        assert_eq!(c.login(&n, "wrong password!").await.0, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = c.login(&n, "correct horse battery").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the sixth attempt waits, cache or not: {body}");
    let results = login_burst(&c, (0..8).map(|_| json!({ "login": n, "password": "wrong password!" })).collect()).await;
    assert_eq!(count(&results, StatusCode::TOO_MANY_REQUESTS), 8, "{results:?}");

    // Another user from the same address is unaffected, with Redis still down.
    proxy.restore();
    let other = name();
    c.register(&other).await;
    proxy.cut();
    assert_eq!(c.login(&other, "correct horse battery").await.0, StatusCode::OK);
}

#[tokio::test]
async fn embedded_expired_tokens_are_refused() {
    let mut infra = TestInfra::new(Backend::Embedded).await;
    infra.config.accounts_mut().access_token_ttl_seconds = 1;
    let app = start(infra).await;
    let c = client(&app);
    let n = name();
    c.register(&n).await;
    let (token, refresh) = c.tokens(&n).await;
    assert_eq!(c.verify(Some(&token), false).await.0, StatusCode::OK);
    // The subject is time: the 1 s token must have expired (whole-second expiry, so 2 s).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = c.http.get(format!("{}/user/token_verify", c.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    let (status, _) = c.post("/auth/refresh", json!({ "refresh_token": refresh }), None).await;
    assert_eq!(status, StatusCode::OK, "the refresh token outlives the access token");
}

// ---------- services verify tokens themselves ----------

/// What another service holds: a token verifier pointed at `accounts`. On Real it has its own
/// Redis connection, so its own mirror of the revocation list (another process's view); on
/// Embedded it shares the process's in-memory list, as `flick serve` does.
async fn service_verifier(accounts: &TestApp, backend: Backend) -> flick_kit::identity::TokenVerifier {
    let mut config = (*accounts.shared.config).clone();
    config.endpoints.accounts = Some(accounts.url(""));
    let shared = match backend {
        Backend::Real => flick_platform::Shared::connect(config).await.unwrap(),
        Backend::Embedded => flick_platform::Shared { config: Arc::new(config), ..accounts.shared.clone() },
    };
    shared.token_verifier().unwrap().expect("an accounts endpoint is configured")
}

/// A token signed with accounts' own key (from its key directory), with claims of our choice.
fn token_signed_by_accounts(app: &TestApp, claims: &flick_kit::access_token::Claims) -> String {
    let ring = flick_accounts::Keyring::load_or_create(&app.shared.config.data_dir.join("keys")).unwrap();
    ring.sign(claims)
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A service checks tokens with accounts' public keys and the revocation list's local mirror:
/// a logout is refused on its next request, forged and expired tokens never identify anyone,
/// and once it holds the keys it needs no call to accounts at all (accounts stopped).
async fn services_verify_tokens_themselves(backend: Backend) {
    let accounts = app(backend).await;
    let c = client(&accounts);
    let n = name();
    let user = c.register(&n).await["id"].as_str().unwrap().to_string();
    let (token, refresh) = c.tokens(&n).await;
    let (status, refreshed) = c.post("/auth/refresh", json!({ "refresh_token": refresh }), None).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let same_session = refreshed["access_token"].as_str().unwrap().to_string();
    let verifier = service_verifier(&accounts, backend).await;
    assert_eq!(verifier.verify(&token).await.unwrap().user_id.unwrap().to_string(), user);

    let mut claims = flick_kit::access_token::Claims {
        sub: user.clone(),
        jti: unique("j"),
        sid: unique("s"),
        role: "admin".into(),
        iat: now_s() - 1000,
        exp: now_s() - 10,
    };
    let expired = token_signed_by_accounts(&accounts, &claims);
    assert_eq!(verifier.verify(&expired).await.unwrap_err().message(), "token expired");
    claims.exp = now_s() + 600;
    let forged = flick_kit::access_token::sign("k-forged", &ed25519_dalek::SigningKey::from_bytes(&[7; 32]), &claims);
    assert_eq!(verifier.verify(&forged).await.unwrap_err().message(), "invalid token");
    let (head, rest) = token.split_once('.').unwrap();
    let tampered = format!("{head}.{}", rest.replacen(|_: char| true, "x", 1));
    assert!(verifier.verify(&tampered).await.is_err(), "a tampered token identifies nobody");

    assert_eq!(c.send(reqwest::Method::POST, "/auth/logout", None, Some(&token)).await.0, StatusCode::NO_CONTENT);
    assert_eq!(verifier.verify(&token).await.unwrap_err().message(), "token revoked", "refused on the next request");
    assert_eq!(verifier.verify(&same_session).await.unwrap_err().message(), "token revoked", "the session ends");

    let (other, _) = c.tokens(&n).await;
    assert!(verifier.verify(&other).await.is_ok());
    let health = accounts.url("/healthz");
    drop(c);
    drop(accounts);
    let stopped =
        flick_testkit::eventually(Duration::from_secs(10), || async { reqwest::get(&health).await.is_err() }).await;
    assert!(stopped, "accounts did not stop");
    assert_eq!(
        verifier.verify(&other).await.unwrap().user_id.unwrap().to_string(),
        user,
        "verified with the keys held, no call to accounts"
    );
    assert_eq!(verifier.verify(&token).await.unwrap_err().message(), "token revoked");
}

/// While a service's view of the revocation list cannot answer (its Redis unreachable), it
/// asks accounts, which checks its database: a logout meanwhile is refused once the mirror
/// knows it may be behind (heartbeat, 3 s), and valid tokens keep working throughout.
#[tokio::test]
async fn real_services_ask_accounts_while_their_revocation_list_is_unreachable() {
    let accounts = app(Backend::Real).await;
    let c = client(&accounts);
    let n = name();
    c.register(&n).await;
    let (token, _) = c.tokens(&n).await;
    let (valid, _) = c.tokens(&n).await;
    let proxy = TcpProxy::start("127.0.0.1:6379").await;
    let mut config = (*accounts.shared.config).clone();
    config.endpoints.accounts = Some(accounts.url(""));
    config.cache.url = Some(proxy.rewrite(&redis_url()));
    let verifier = flick_platform::Shared::connect(config).await.unwrap().token_verifier().unwrap().unwrap();
    assert!(verifier.verify(&token).await.is_ok());

    proxy.cut();
    assert_eq!(c.send(reqwest::Method::POST, "/auth/logout", None, Some(&token)).await.0, StatusCode::NO_CONTENT);
    let refused = flick_testkit::eventually(Duration::from_secs(10), || async {
        verifier.verify(&token).await.is_err_and(|e| e.message() == "invalid or expired token")
    })
    .await;
    assert!(refused, "a logout during the outage was never refused");
    assert!(verifier.verify(&valid).await.is_ok(), "valid tokens pass through accounts");

    proxy.restore();
    // Back on the mirror later; until then (and after) the revoked token stays refused. The
    // subject is that stretch of time (no event marks its end), so it is sampled across a
    // second of it rather than waited for.
    for _ in 0..10 {
        assert!(verifier.verify(&token).await.is_err(), "never accepted again");
        assert!(verifier.verify(&valid).await.is_ok());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn openapi_document_is_served() {
    let app = app(Backend::Embedded).await;
    let doc: Value = reqwest::get(app.url("/auth/openapi.json")).await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/auth/login"]["post"].is_object());
}
