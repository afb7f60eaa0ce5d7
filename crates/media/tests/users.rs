//! Owners' details in media's gRPC answers: media asks a real accounts service (behind a
//! proxy that simulates its outage), caches what it learns and forgets it on `user.updated`
//! and `user.deleted`; on both adapter sets.

use flick_platform::bus::envelope;
use flick_proto::events::v1 as events;
use flick_proto::media::v1::{
    GetVideoRequest, GetVideosRequest, ListPublicVideosRequest, ListVideosByOwnerRequest, Video,
    media_service_client::MediaServiceClient,
};
use flick_testkit::app::{Backend, TestApp, TestInfra};
use flick_testkit::{TcpProxy, eventually, unique};
use prost::Message;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tonic::transport::Channel;

/// Accounts and media in one process (shared cache and bus, as `flick serve` runs them),
/// media reaching accounts' gRPC through `proxy`.
struct Services {
    accounts: TestApp,
    media: TestApp,
    proxy: TcpProxy,
    http: reqwest::Client,
}

async fn services(backend: Backend) -> Services {
    let infra = TestInfra::new(backend).await;
    let mut media_infra = infra.replica();
    let accounts = TestApp::start(infra, |s| async move { flick_accounts::build(&s).await }).await;
    let proxy = TcpProxy::start(&accounts.addr.to_string()).await;
    media_infra.config.endpoints.accounts = Some(format!("http://{}", proxy.addr));
    // Built means consuming: accounts' events from now on reach media.
    let media = TestApp::start_beside(media_infra, &accounts, |s| async move { flick_media::build(&s).await }).await;
    Services { accounts, media, proxy, http: reqwest::Client::new() }
}

/// A registered user: id, login name and access token.
struct User {
    id: String,
    token: String,
}

impl Services {
    async fn accounts_call(&self, method: Method, path: &str, body: Value, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.request(method, self.accounts.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
    }

    async fn register(&self, display_name: &str) -> User {
        let name = unique("u").replace('-', "")[..20].to_string();
        let (status, body) = self
            .accounts_call(
                Method::POST,
                "/auth/register",
                json!({ "email": format!("{name}@example.com"), "username": name, "password": "correct horse battery", "display_name": display_name }),
                None,
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        let (status, body) = self
            .accounts_call(
                Method::POST,
                "/auth/login",
                json!({ "login": name, "password": "correct horse battery" }),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        User { id, token: body["access_token"].as_str().unwrap().to_string() }
    }

    async fn gql(&self, user: &str, query: &str, variables: Value) -> Value {
        let res: Value = self
            .http
            .post(self.media.url("/graphql"))
            .header("x-user-id", user)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(res.get("errors").is_none(), "{res}");
        res["data"].clone()
    }

    /// A public video of `owner`, made READY the way the transcoder does (events).
    async fn ready_video(&self, owner: &str, title: &str) -> String {
        let data = self
            .gql(
                owner,
                "mutation($i: CreateVideoInput!) { createVideo(input: $i) { video { id } } }",
                json!({ "i": { "title": title, "visibility": "PUBLIC" } }),
            )
            .await;
        let id = data["createVideo"]["video"]["id"].as_str().unwrap().to_string();
        let bus = &self.media.shared.bus;
        bus.publish(&envelope("upload.completed", &id, "transcoder", vec![])).await.unwrap();
        let done = events::TranscodeCompleted { video_id: id.clone(), duration_seconds: 12.0, ..Default::default() };
        bus.publish(&envelope("transcode.completed", &id, "transcoder", done.encode_to_vec())).await.unwrap();
        let status = "query($id: ID!) { video(id: $id) { status } }";
        assert!(
            eventually(Duration::from_secs(10), || async {
                self.gql(owner, status, json!({ "id": id })).await["video"]["status"] == "READY"
            })
            .await,
            "the video becomes READY"
        );
        id
    }

    async fn grpc(&self) -> MediaServiceClient<Channel> {
        MediaServiceClient::new(Channel::from_shared(self.media.url("")).unwrap().connect().await.unwrap())
    }
}

async fn get_video(client: &mut MediaServiceClient<Channel>, id: &str) -> Video {
    client.get_video(GetVideoRequest { id: id.into() }).await.unwrap().into_inner()
}

/// `name{labels…}` of the process's Prometheus metrics (0 when absent).
/// The recorder is process-wide: this relies on nextest running each test in its own process
/// (how the workspace runs its tests), so the counts are this test's alone.
fn metric(name_and_labels: &str) -> u64 {
    let metrics = flick_kit::telemetry::metrics_handle().render();
    metrics
        .lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

fn directory(result: &str) -> u64 {
    metric(&format!("media_user_directory_total{{result=\"{result}\"}}"))
}

/// `GetUsers` calls accounts answered.
fn get_users_calls() -> u64 {
    metric("grpc_requests_total{service=\"accounts\",rpc=\"/flick.accounts.v1.AccountsService/GetUsers\",code=\"0\"}")
}

/// Every listing RPC carries the owner (one accounts call, then the cache) and the live counts
/// GraphQL shows; users accounts does not know have no owner.
async fn grpc_answers_carry_owners_and_counts(backend: Backend) {
    let s = services(backend).await;
    let owner = s.register("Ada Films").await;
    let id = s.ready_video(&owner.id, "Owned").await;
    let fan = uuid::Uuid::now_v7().to_string();
    s.gql(&fan, "mutation($id: ID!) { likeVideo(id: $id) { id } }", json!({ "id": id })).await;
    s.gql(&fan, "mutation($id: ID!) { addComment(videoId: $id, body: \"hi\") { id } }", json!({ "id": id })).await;
    let viewed = events::VideoViewed { video_id: id.clone(), viewer: format!("user:{fan}"), watched_seconds: 31.0 };
    s.media.shared.bus.publish(&envelope("video.viewed", &id, "activity", viewed.encode_to_vec())).await.unwrap();
    let counts = "query($id: ID!) { video(id: $id) { likeCount commentCount viewCount } }";
    assert!(
        eventually(Duration::from_secs(10), || async {
            s.gql(&fan, counts, json!({ "id": id })).await["video"]
                == json!({ "likeCount": 1, "commentCount": 1, "viewCount": 1 })
        })
        .await,
        "GraphQL counts the like, the comment and the view: {}",
        s.gql(&fan, counts, json!({ "id": id })).await
    );

    let mut client = s.grpc().await;
    let (misses, calls) = (directory("miss"), get_users_calls());
    let v = get_video(&mut client, &id).await;
    let o = v.owner.clone().expect("the owner's details");
    assert_eq!((o.id.as_str(), o.display_name.as_str(), o.avatar_url.as_str()), (owner.id.as_str(), "Ada Films", ""));
    assert!(!o.username.is_empty());
    assert_eq!((v.like_count, v.comment_count, v.view_count), (1, 1, 1), "the counts GraphQL shows");
    assert_eq!((directory("miss") - misses, get_users_calls() - calls), (1, 1), "one miss, one accounts call");

    // Warm: the next answers come from the cache, even with accounts unreachable.
    let hits = directory("hit");
    let many = client.get_videos(GetVideosRequest { ids: vec![id.clone()] }).await.unwrap().into_inner();
    assert_eq!(many.videos[0].owner, Some(o.clone()));
    assert_eq!((many.videos[0].like_count, many.videos[0].view_count), (1, 1));
    s.proxy.cut();
    let listed = client
        .list_videos_by_owner(ListVideosByOwnerRequest { owner_id: owner.id.clone(), first: 10, after: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.videos.len(), 1);
    assert_eq!(listed.videos[0].owner, Some(o.clone()), "from the cache while accounts is down");
    assert_eq!(get_users_calls() - calls, 1, "accounts was asked once");
    assert_eq!(directory("miss") - misses, 1);
    assert_eq!(directory("hit") - hits, 2);
    s.proxy.restore();

    // A user accounts does not know: absent, and the answer still comes, batched with the other.
    let stranger = uuid::Uuid::now_v7().to_string();
    let unknown = s.ready_video(&stranger, "Unknown owner").await;
    let calls = get_users_calls();
    let both = client.get_videos(GetVideosRequest { ids: vec![unknown.clone(), id.clone()] }).await.unwrap();
    let both = both.into_inner().videos;
    assert_eq!(both.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), vec![unknown.as_str(), id.as_str()]);
    assert_eq!((both[0].owner.as_ref(), both[1].owner.as_ref()), (None, Some(&o)));
    assert_eq!(get_users_calls() - calls, 1, "only the stranger was asked about");
    let feed = client.list_public_videos(ListPublicVideosRequest { first: 10, after: String::new() }).await.unwrap();
    let feed = feed.into_inner().videos;
    let ours = feed.iter().find(|v| v.id == id).expect("in the feed");
    assert_eq!((ours.owner.as_ref(), ours.like_count, ours.comment_count), (Some(&o), 1, 1));
}

/// A profile change reaches gRPC answers through `user.updated` (long before the cache's
/// TTL), and a deleted user's entry is dropped.
async fn profile_changes_reach_grpc_answers(backend: Backend) {
    let s = services(backend).await;
    let owner = s.register("Before").await;
    let id = s.ready_video(&owner.id, "Renamed").await;
    let mut client = s.grpc().await;
    assert_eq!(get_video(&mut client, &id).await.owner.unwrap().display_name, "Before");
    assert_eq!(get_video(&mut client, &id).await.owner.unwrap().display_name, "Before", "cached");

    let (status, body) = s
        .accounts_call(
            Method::PATCH,
            "/user/profile",
            json!({ "display_name": "After", "avatar_url": "https://img.example/a.png" }),
            Some(&owner.token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let seen = std::sync::Mutex::new(None);
    let renamed = eventually(Duration::from_secs(10), || {
        let (mut client, id, seen) = (client.clone(), id.clone(), &seen);
        async move {
            let o = get_video(&mut client, &id).await.owner.unwrap();
            let done = o.display_name == "After";
            *seen.lock().unwrap() = Some(o);
            done
        }
    })
    .await;
    let seen = seen.into_inner().unwrap().unwrap();
    assert!(renamed, "the new name shows: {seen:?}");
    assert_eq!(seen.avatar_url, "https://img.example/a.png");

    let key = format!("media:user:{}", owner.id);
    assert!(s.media.shared.cache.get(&key).await.unwrap().is_some(), "cached again");
    let (status, body) = s
        .accounts_call(
            Method::DELETE,
            "/user/profile",
            json!({ "current_password": "correct horse battery" }),
            Some(&owner.token),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert!(
        eventually(Duration::from_secs(10), || async { s.media.shared.cache.get(&key).await.unwrap().is_none() }).await,
        "user.deleted drops the cached details"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            client
                .clone()
                .get_video(GetVideoRequest { id: id.clone() })
                .await
                .is_err_and(|e| e.code() == tonic::Code::NotFound)
        })
        .await,
        "and the user's videos go"
    );
}

/// With accounts unreachable and nothing cached, answers still come, without owners; once
/// accounts is back, owners are back.
async fn without_accounts_answers_come_without_owners(backend: Backend) {
    let s = services(backend).await;
    let owner = s.register("Cold").await;
    let id = s.ready_video(&owner.id, "Alone").await;
    let mut client = s.grpc().await;
    s.proxy.cut();
    let unavailable = directory("unavailable");
    let v = get_video(&mut client, &id).await;
    assert_eq!((v.title.as_str(), v.owner_id.as_str(), v.owner.as_ref()), ("Alone", owner.id.as_str(), None));
    assert_eq!((v.like_count, v.comment_count, v.view_count), (0, 0, 0));
    assert_eq!(directory("unavailable") - unavailable, 1);
    let listed = client
        .list_videos_by_owner(ListVideosByOwnerRequest { owner_id: owner.id.clone(), first: 10, after: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((listed.videos.len(), listed.videos[0].owner.as_ref()), (1, None));

    s.proxy.restore();
    assert!(
        eventually(Duration::from_secs(10), || {
            let mut client = client.clone();
            let id = id.clone();
            async move { get_video(&mut client, &id).await.owner.is_some_and(|o| o.display_name == "Cold") }
        })
        .await,
        "owners return with accounts"
    );
}

/// Media answers `Video.owner { displayName }` itself (`@provides`: the router needs no
/// accounts call for a feed), from its directory, and a rename shows through `user.updated`.
async fn graphql_owners_display_names_come_from_media(backend: Backend) {
    let s = services(backend).await;
    let (ada, grace) = (s.register("Ada Films").await, s.register("Grace Films").await);
    let first = s.ready_video(&ada.id, "First").await;
    s.ready_video(&grace.id, "Second").await;
    let feed =
        s.gql(&ada.id, "{ feed(first: 50) { edges { node { id owner { id displayName } } } } }", json!({})).await;
    let names: std::collections::HashMap<String, String> = feed["feed"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["node"]["owner"]["id"].as_str().unwrap().into(),
                e["node"]["owner"]["displayName"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(names.get(&ada.id).map(String::as_str), Some("Ada Films"), "{feed}");
    assert_eq!(names.get(&grace.id).map(String::as_str), Some("Grace Films"), "{feed}");

    let (status, body) = s
        .accounts_call(Method::PATCH, "/user/profile", json!({ "display_name": "Ada Studio" }), Some(&ada.token))
        .await;
    assert_eq!(status, 200, "{body}");
    let q = "query($id: ID!) { video(id: $id) { owner { displayName } } }";
    assert!(
        eventually(Duration::from_secs(10), || async {
            s.gql(&ada.id, q, json!({ "id": first })).await["video"]["owner"]["displayName"] == "Ada Studio"
        })
        .await,
        "the new name shows"
    );
}

flick_testkit::on_both_backends!(
    graphql_owners_display_names_come_from_media,
    grpc_answers_carry_owners_and_counts,
    profile_changes_reach_grpc_answers,
    without_accounts_answers_come_without_owners,
);
