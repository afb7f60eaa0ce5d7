//! Media through its GraphQL subgraph, gRPC and events, on both adapter sets.

use flick_media::config::MediaConfigExt as _;
use flick_platform::bus::{Delivery, QueueSpec, envelope, handler};
use flick_proto::events::v1 as events;
use flick_testkit::app::{Backend, TestApp, TestInfra};
use flick_testkit::eventually;
use prost::Message;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Media, consuming its events once started (its queue is bound during build).
async fn app(backend: Backend) -> TestApp {
    TestApp::start(TestInfra::new(backend).await, |s| async move { flick_media::build(&s).await }).await
}

struct Gql<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
}

fn gql(app: &TestApp) -> Gql<'_> {
    Gql { app, http: reqwest::Client::new() }
}

impl Gql<'_> {
    async fn run(&self, user: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self.http.post(self.app.url("/graphql")).json(&json!({ "query": query, "variables": variables }));
        if let Some(u) = user {
            req = req.header("x-user-id", u);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    async fn ok(&self, user: Option<&str>, query: &str, variables: Value) -> Value {
        let res = self.run(user, query, variables).await;
        assert!(res.get("errors").is_none(), "{res}");
        res["data"].clone()
    }

    async fn code(&self, user: Option<&str>, query: &str, variables: Value) -> String {
        let res = self.run(user, query, variables).await;
        res["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error: {res}"))
            .to_string()
    }

    async fn create(&self, owner: &str, title: &str, visibility: &str) -> String {
        let data = self
            .ok(
                Some(owner),
                "mutation($i: CreateVideoInput!) { createVideo(input: $i) { video { id status visibility tags } } }",
                json!({ "i": { "title": title, "description": format!("about {title}"), "tags": ["Birds", "birds", " Nature "], "category": "Pets", "visibility": visibility } }),
            )
            .await;
        let video = &data["createVideo"]["video"];
        assert_eq!(video["status"], "AWAITING_UPLOAD");
        assert_eq!(video["tags"], json!(["birds", "nature"]), "tags normalised and deduplicated");
        video["id"].as_str().unwrap().to_string()
    }

    /// Drives a video to READY the way the transcoder does: through events.
    async fn make_ready(&self, owner: &str, id: &str) {
        let bus = &self.app.shared.bus;
        bus.publish(&envelope("upload.completed", id, "transcoder", vec![])).await.unwrap();
        let payload = events::TranscodeCompleted { video_id: id.into(), duration_seconds: 12.0, ..Default::default() }
            .encode_to_vec();
        bus.publish(&envelope("transcode.completed", id, "transcoder", payload)).await.unwrap();
        let owner_view = self.status_of(owner, id).await;
        assert_eq!(owner_view, "READY");
    }

    /// Waits (10 s at most) for the video to be READY; returns the last status seen.
    async fn status_of(&self, owner: &str, id: &str) -> String {
        let query = "query($id: ID!) { _entities(representations: [{__typename: \"Video\", id: $id}]) { ... on Video { status } } }";
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let res = self.run(Some(owner), query, json!({ "id": id })).await;
            let status = res["data"]["_entities"][0]["status"].as_str().unwrap_or_default().to_string();
            if status == "READY" || tokio::time::Instant::now() > deadline {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn user() -> String {
    Uuid::now_v7().to_string()
}

const VIDEO: &str = "query($id: ID!) { video(id: $id) { id title status visibility likeCount viewerHasLiked commentCount owner { id } } }";

async fn owner_matrix(backend: Backend) {
    let app = app(backend).await;
    let g = gql(&app);
    let (owner, other) = (user(), user());
    let id = g.create(&owner, "Owned", "PUBLIC").await;
    assert_eq!(
        g.code(None, "mutation { createVideo(input: {title: \"x\"}) { video { id } } }", json!({})).await,
        "UNAUTHENTICATED"
    );
    // Before it is ready, the video does not exist for anyone but its owner.
    let hidden = "mutation($id: ID!) { updateVideo(id: $id, input: {title: \"x\"}) { title } }";
    assert_eq!(g.code(Some(&other), hidden, json!({ "id": id })).await, "NOT_FOUND");
    g.make_ready(&owner, &id).await;

    let update = "mutation($id: ID!) { updateVideo(id: $id, input: {title: \"New title\"}) { title } }";
    assert_eq!(g.code(None, update, json!({ "id": id })).await, "UNAUTHENTICATED");
    assert_eq!(g.code(Some(&other), update, json!({ "id": id })).await, "FORBIDDEN");
    assert_eq!(g.ok(Some(&owner), update, json!({ "id": id })).await["updateVideo"]["title"], "New title");

    let comment = g
        .ok(Some(&other), "mutation($id: ID!) { addComment(videoId: $id, body: \"nice\") { id } }", json!({ "id": id }))
        .await["addComment"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let edit = "mutation($id: ID!) { editComment(id: $id, body: \"edited\") { body editedAt } }";
    assert_eq!(g.code(None, edit, json!({ "id": comment })).await, "UNAUTHENTICATED");
    assert_eq!(
        g.code(Some(&owner), edit, json!({ "id": comment })).await,
        "FORBIDDEN",
        "not even the video's owner edits"
    );
    assert_eq!(g.ok(Some(&other), edit, json!({ "id": comment })).await["editComment"]["body"], "edited");
    let del_comment = "mutation($id: ID!) { deleteComment(id: $id) }";
    let third = user();
    assert_eq!(g.code(None, del_comment, json!({ "id": comment })).await, "UNAUTHENTICATED");
    assert_eq!(g.code(Some(&third), del_comment, json!({ "id": comment })).await, "FORBIDDEN");
    assert_eq!(
        g.ok(Some(&owner), del_comment, json!({ "id": comment })).await["deleteComment"],
        comment.as_str(),
        "the video's owner may"
    );

    for anonymous_write in [
        "mutation($id: ID!) { likeVideo(id: $id) { id } }",
        "mutation($id: ID!) { unlikeVideo(id: $id) { id } }",
        "mutation($id: ID!) { addComment(videoId: $id, body: \"x\") { id } }",
        "mutation($id: ID!) { subscribe(channelId: $id) { id } }",
        "mutation($id: ID!) { unsubscribe(channelId: $id) { id } }",
    ] {
        assert_eq!(g.code(None, anonymous_write, json!({ "id": id })).await, "UNAUTHENTICATED", "{anonymous_write}");
    }

    let delete = "mutation($id: ID!) { deleteVideo(id: $id) }";
    assert_eq!(g.code(None, delete, json!({ "id": id })).await, "UNAUTHENTICATED");
    assert_eq!(g.code(Some(&other), delete, json!({ "id": id })).await, "FORBIDDEN");
    assert_eq!(g.ok(Some(&owner), delete, json!({ "id": id })).await["deleteVideo"], id.as_str());
    assert_eq!(g.ok(Some(&owner), VIDEO, json!({ "id": id })).await["video"], Value::Null);
}

async fn validation(backend: Backend) {
    let app = app(backend).await;
    let g = gql(&app);
    let owner = user();
    let res = g
        .run(
            Some(&owner),
            "mutation($i: CreateVideoInput!) { createVideo(input: $i) { video { id } } }",
            json!({ "i": { "title": "", "description": "x".repeat(5001), "tags": (0..11).map(|i| format!("t{i}")).collect::<Vec<_>>(), "category": "nope" } }),
        )
        .await;
    assert_eq!(res["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    for field in ["title", "description", "tags", "category"] {
        assert!(res["errors"][0]["extensions"]["fields"][field].is_string(), "{field}: {res}");
    }
    // Clients offer the categories the schema lists, and each of them is accepted.
    let listed = g.ok(None, "{ categories }", json!({})).await["categories"].clone();
    let listed: Vec<String> = serde_json::from_value(listed).unwrap();
    assert!(listed.len() > 10 && listed.contains(&"pets".to_string()), "{listed:?}");
    for category in &listed {
        let res = g
            .run(
                Some(&owner),
                "mutation($i: CreateVideoInput!) { createVideo(input: $i) { video { category } } }",
                json!({ "i": { "title": "Listed", "category": category } }),
            )
            .await;
        assert_eq!(res["data"]["createVideo"]["video"]["category"], json!(category), "{res}");
    }
    assert_eq!(g.code(None, "{ feed(first: 1000) { edges { cursor } } }", json!({})).await, "BAD_USER_INPUT");
    assert_eq!(g.code(None, "{ feed(after: \"garbage\") { edges { cursor } } }", json!({})).await, "BAD_USER_INPUT");
}

async fn visibility_and_status(backend: Backend) {
    let app = app(backend).await;
    let g = gql(&app);
    let (owner, other) = (user(), user());
    let public = g.create(&owner, "Public", "PUBLIC").await;
    let unlisted = g.create(&owner, "Unlisted", "UNLISTED").await;
    let private = g.create(&owner, "Private", "PRIVATE").await;

    // Before processing, only the owner sees them.
    assert_eq!(g.ok(Some(&other), VIDEO, json!({ "id": public })).await["video"], Value::Null);
    assert_eq!(g.ok(Some(&owner), VIDEO, json!({ "id": public })).await["video"]["status"], "AWAITING_UPLOAD");

    // Events from the transcoder move the status along, and publish public videos.
    let published: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = published.clone();
    let stop = CancellationToken::new();
    app.shared
        .bus
        .consume(
            QueueSpec::events("published-watch", &["video.published"]),
            handler(move |d: Delivery| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(d.envelope.subject);
                    Ok(())
                }
            }),
            stop.clone(),
        )
        .await
        .unwrap();
    app.shared.bus.publish(&envelope("upload.completed", &public, "transcoder", vec![])).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            g.ok(Some(&owner), VIDEO, json!({ "id": public })).await["video"]["status"] == "PROCESSING"
        })
        .await
    );
    for id in [&public, &unlisted, &private] {
        g.make_ready(&owner, id).await;
    }
    assert!(
        eventually(Duration::from_secs(10), || async { published.lock().unwrap().clone() == vec![public.clone()] })
            .await,
        "only the public video is published"
    );

    assert_eq!(g.ok(Some(&other), VIDEO, json!({ "id": public })).await["video"]["title"], "Public");
    assert_eq!(
        g.ok(Some(&other), VIDEO, json!({ "id": unlisted })).await["video"]["title"],
        "Unlisted",
        "unlisted by id"
    );
    assert_eq!(g.ok(Some(&other), VIDEO, json!({ "id": private })).await["video"], Value::Null, "private: owner only");
    assert_eq!(g.ok(None, VIDEO, json!({ "id": private })).await["video"], Value::Null);
    assert_eq!(g.ok(Some(&owner), VIDEO, json!({ "id": private })).await["video"]["title"], "Private");

    let feed = g.ok(None, "{ feed(first: 50) { edges { node { id } } } }", json!({})).await;
    let ids: Vec<&str> =
        feed["feed"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&public.as_str()));
    assert!(!ids.contains(&unlisted.as_str()) && !ids.contains(&private.as_str()), "never in the feed");

    // Failure reaches the owner with its reason.
    let broken = g.create(&owner, "Broken", "PUBLIC").await;
    let failed =
        events::TranscodeFailed { video_id: broken.clone(), reason: "not a video: text file".into() }.encode_to_vec();
    app.shared.bus.publish(&envelope("transcode.failed", &broken, "transcoder", failed)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            let v = g
                .ok(Some(&owner), "query($id: ID!) { video(id: $id) { status failure } }", json!({ "id": broken }))
                .await;
            v["video"]["status"] == "FAILED" && v["video"]["failure"] == "not a video: text file"
        })
        .await
    );
    stop.cancel();
    let _ = app.shared.bus.delete_queues("published-watch").await;
}

async fn feed_pagination(backend: Backend) {
    let app = app(backend).await;
    let g = gql(&app);
    let owner = user();
    let mut created = Vec::new();
    for i in 0..7 {
        let id = g.create(&owner, &format!("Clip {i}"), "PUBLIC").await;
        g.make_ready(&owner, &id).await;
        created.push(id);
    }
    let page = "query($after: String) { feed(first: 3, after: $after) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }";
    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let data = g.ok(None, page, json!({ "after": after })).await;
        let feed = &data["feed"];
        seen.extend(feed["edges"].as_array().unwrap().iter().map(|e| e["node"]["id"].as_str().unwrap().to_string()));
        pages += 1;
        if pages == 1 {
            // A video published while a client pages must not shift later pages.
            let late = g.create(&owner, "Late", "PUBLIC").await;
            g.make_ready(&owner, &late).await;
        }
        if feed["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = feed["pageInfo"]["endCursor"].clone();
    }
    let expected: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(seen, expected, "newest first, no duplicates, nothing skipped");
    assert_eq!(pages, 3);
}

async fn likes(backend: Backend) {
    let app = app(backend).await;
    let g = gql(&app);
    let (owner, fan) = (user(), user());
    let id = g.create(&owner, "Likeable", "PUBLIC").await;
    g.make_ready(&owner, &id).await;
    let like = "mutation($id: ID!) { likeVideo(id: $id) { likeCount viewerHasLiked } }";
    for _ in 0..2 {
        let v = g.ok(Some(&fan), like, json!({ "id": id })).await;
        assert_eq!(v["likeVideo"], json!({ "likeCount": 1, "viewerHasLiked": true }), "idempotent");
    }
    g.ok(Some(&owner), like, json!({ "id": id })).await;
    let v = g.ok(Some(&owner), VIDEO, json!({ "id": id })).await;
    assert_eq!((v["video"]["likeCount"].as_i64(), v["video"]["viewerHasLiked"].as_bool()), (Some(2), Some(true)));
    let anon = g.ok(None, VIDEO, json!({ "id": id })).await;
    assert_eq!(anon["video"]["viewerHasLiked"], false);
    let unlike = "mutation($id: ID!) { unlikeVideo(id: $id) { likeCount viewerHasLiked } }";
    for _ in 0..2 {
        let v = g.ok(Some(&fan), unlike, json!({ "id": id })).await;
        assert_eq!(v["unlikeVideo"], json!({ "likeCount": 1, "viewerHasLiked": false }));
    }
    let private = g.create(&owner, "Hidden", "PRIVATE").await;
    assert_eq!(
        g.code(Some(&fan), like, json!({ "id": private })).await,
        "NOT_FOUND",
        "cannot like what you cannot see"
    );
}

async fn comments(backend: Backend) {
    let app = app(backend).await;
    let g = gql(&app);
    let (owner, a, b) = (user(), user(), user());
    let id = g.create(&owner, "Discussed", "PUBLIC").await;
    g.make_ready(&owner, &id).await;
    let add = "mutation($id: ID!, $body: String!, $parent: ID) { addComment(videoId: $id, body: $body, parentId: $parent) { id parentId author { id } } }";
    let first = g.ok(Some(&a), add, json!({ "id": id, "body": "first!" })).await["addComment"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = g.ok(Some(&b), add, json!({ "id": id, "body": "reply", "parent": first })).await;
    assert_eq!(reply["addComment"]["parentId"], first.as_str());
    for i in 0..3 {
        g.ok(Some(&b), add, json!({ "id": id, "body": format!("more {i}") })).await;
    }
    assert_eq!(g.code(Some(&a), add, json!({ "id": id, "body": "   " })).await, "BAD_USER_INPUT");
    assert_eq!(
        g.code(Some(&a), add, json!({ "id": id, "body": "x", "parent": Uuid::now_v7().to_string() })).await,
        "BAD_USER_INPUT"
    );

    let list = "query($id: ID!, $after: String) { video(id: $id) { commentCount comments(first: 2, after: $after) { edges { node { body } } pageInfo { hasNextPage endCursor } } } }";
    let mut bodies = Vec::new();
    let mut after = Value::Null;
    loop {
        let v = g.ok(None, list, json!({ "id": id, "after": after })).await;
        assert_eq!(v["video"]["commentCount"], 5);
        let conn = &v["video"]["comments"];
        bodies
            .extend(conn["edges"].as_array().unwrap().iter().map(|e| e["node"]["body"].as_str().unwrap().to_string()));
        if conn["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(bodies, ["first!", "reply", "more 0", "more 1", "more 2"], "oldest first across pages");

    // Deleting a comment takes its replies along.
    g.ok(Some(&a), "mutation($id: ID!) { deleteComment(id: $id) }", json!({ "id": first })).await;
    assert_eq!(g.ok(None, list, json!({ "id": id, "after": Value::Null })).await["video"]["commentCount"], 3);
}

async fn channels_and_dashboard(backend: Backend) {
    let app = app(backend).await;
    let g = gql(&app);
    let (creator, fan) = (user(), user());
    let ready = g.create(&creator, "Channel clip", "PUBLIC").await;
    g.make_ready(&creator, &ready).await;
    let _pending = g.create(&creator, "Still uploading", "PUBLIC").await;
    let secret = g.create(&creator, "Secret", "PRIVATE").await;
    g.make_ready(&creator, &secret).await;

    let sub = "mutation($c: ID!) { subscribe(channelId: $c) { id subscriberCount viewerIsSubscribed } }";
    for _ in 0..2 {
        let s = g.ok(Some(&fan), sub, json!({ "c": creator })).await;
        assert_eq!(s["subscribe"], json!({ "id": creator, "subscriberCount": 1, "viewerIsSubscribed": true }));
    }
    assert_eq!(g.code(Some(&creator), sub, json!({ "c": creator })).await, "BAD_USER_INPUT");
    let feed = g.ok(Some(&fan), "{ subscriptionsFeed { edges { node { id } } } }", json!({})).await;
    assert_eq!(feed["subscriptionsFeed"]["edges"], json!([{ "node": { "id": ready } }]));
    assert_eq!(g.code(None, "{ subscriptionsFeed { edges { cursor } } }", json!({})).await, "UNAUTHENTICATED");

    // A user's videos: everything for the user, public ready ones for others.
    let videos = "query($u: ID!) { _entities(representations: [{__typename: \"User\", id: $u}]) { ... on User { videos { edges { node { title } } } } } }";
    let mine = g.ok(Some(&creator), videos, json!({ "u": creator })).await;
    assert_eq!(mine["_entities"][0]["videos"]["edges"].as_array().unwrap().len(), 3);
    let theirs = g.ok(Some(&fan), videos, json!({ "u": creator })).await;
    assert_eq!(theirs["_entities"][0]["videos"]["edges"], json!([{ "node": { "title": "Channel clip" } }]));

    g.ok(Some(&fan), "mutation($id: ID!) { likeVideo(id: $id) { id } }", json!({ "id": ready })).await;
    let dash = g
        .ok(Some(&creator), "{ dashboard { totalLikes totalComments videos { title status visibility } } }", json!({}))
        .await;
    assert_eq!(dash["dashboard"]["videos"].as_array().unwrap().len(), 3, "private and unprocessed included: {dash}");
    assert_eq!(dash["dashboard"]["totalLikes"], 1);
    assert_eq!(g.code(None, "{ dashboard { totalLikes } }", json!({})).await, "UNAUTHENTICATED");

    let un = g
        .ok(
            Some(&fan),
            "mutation($c: ID!) { unsubscribe(channelId: $c) { subscriberCount viewerIsSubscribed } }",
            json!({ "c": creator }),
        )
        .await;
    assert_eq!(un["unsubscribe"], json!({ "subscriberCount": 0, "viewerIsSubscribed": false }));
}

async fn deleted_users_leave_nothing(backend: Backend) {
    let app = app(backend).await;
    let g = gql(&app);
    let (leaver, other) = (user(), user());
    let theirs = g.create(&leaver, "Leaving", "PUBLIC").await;
    let mine = g.create(&other, "Staying", "PUBLIC").await;
    g.make_ready(&leaver, &theirs).await;
    g.make_ready(&other, &mine).await;
    g.ok(Some(&leaver), "mutation($id: ID!) { likeVideo(id: $id) { id } }", json!({ "id": mine })).await;
    g.ok(Some(&leaver), "mutation($id: ID!) { addComment(videoId: $id, body: \"bye\") { id } }", json!({ "id": mine }))
        .await;
    g.ok(Some(&leaver), "mutation($c: ID!) { subscribe(channelId: $c) { id } }", json!({ "c": other })).await;
    // Cached counts now exist: the deletion must not leave them behind.
    let v = g.ok(Some(&other), VIDEO, json!({ "id": mine })).await;
    assert_eq!((v["video"]["likeCount"].as_i64(), v["video"]["commentCount"].as_i64()), (Some(1), Some(1)), "{v}");

    let deleted = events::UserDeleted { user_id: leaver.clone() }.encode_to_vec();
    let event = envelope("user.deleted", &leaver, "accounts", deleted);
    app.shared.bus.publish(&event).await.unwrap();
    app.shared.bus.publish(&event).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            g.ok(Some(&leaver), VIDEO, json!({ "id": theirs })).await["video"].is_null()
        })
        .await
    );
    // The recount lands with the deletion, but the cached counts are dropped after the rows
    // (the handler's order): a reader may see the video gone a moment before the counts drop.
    let counts = || async {
        let v = g.ok(Some(&other), VIDEO, json!({ "id": mine })).await;
        (v["video"]["likeCount"].as_i64(), v["video"]["commentCount"].as_i64())
    };
    assert!(
        eventually(Duration::from_secs(10), || async { counts().await == (Some(0), Some(0)) }).await,
        "{:?}",
        counts().await
    );
    // A channel's subscriber count is shared for at most its TTL (2 s) after a deletion.
    let subscribers = || async {
        let s = g.ok(None, "query($u: ID!) { _entities(representations: [{__typename: \"User\", id: $u}]) { ... on User { subscriberCount } } }", json!({ "u": other })).await;
        s["_entities"][0]["subscriberCount"].as_i64()
    };
    assert!(
        eventually(Duration::from_secs(10), || async { subscribers().await == Some(0) }).await,
        "{:?}",
        subscribers().await
    );
}

async fn grpc(backend: Backend) {
    use flick_proto::media::v1::{
        GetVideoRequest, GetVideosRequest, ListVideosByOwnerRequest, ListedVideoIdsRequest,
        media_service_client::MediaServiceClient,
    };
    let app = app(backend).await;
    let g = gql(&app);
    let owner = user();
    let public = g.create(&owner, "Over gRPC", "PUBLIC").await;
    g.make_ready(&owner, &public).await;
    let private = g.create(&owner, "Private gRPC", "PRIVATE").await;
    let channel = tonic::transport::Channel::from_shared(app.url("")).unwrap().connect().await.unwrap();
    let mut client = MediaServiceClient::new(channel);
    let v = client.get_video(GetVideoRequest { id: public.clone() }).await.unwrap().into_inner();
    assert_eq!((v.title.as_str(), v.status.as_str(), v.owner_id.as_str()), ("Over gRPC", "READY", owner.as_str()));
    let hidden = client.get_video(GetVideoRequest { id: private.clone() }).await.unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);
    let mut as_owner = tonic::Request::new(GetVideoRequest { id: private.clone() });
    as_owner.metadata_mut().insert("x-user-id", owner.parse().unwrap());
    assert_eq!(client.get_video(as_owner).await.unwrap().into_inner().title, "Private gRPC");
    let many = client
        .get_videos(GetVideosRequest { ids: vec![private.clone(), public.clone(), "bad".into()] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(many.videos.len(), 1);
    let listed = client
        .list_videos_by_owner(ListVideosByOwnerRequest { owner_id: owner.clone(), first: 10, after: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.videos.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), vec![public.as_str()]);
    // Whoever asks, only what is public and ready, in the order asked.
    let unknown = Uuid::now_v7().to_string();
    let asked = vec![unknown, private.clone(), "bad".into(), public.clone()];
    let mut as_owner = tonic::Request::new(ListedVideoIdsRequest { ids: asked });
    as_owner.metadata_mut().insert("x-user-id", owner.parse().unwrap());
    assert_eq!(client.listed_video_ids(as_owner).await.unwrap().into_inner().ids, vec![public.clone()]);
    let too_many = client.listed_video_ids(ListedVideoIdsRequest { ids: vec![public.clone(); 201] }).await.unwrap_err();
    assert_eq!(too_many.code(), tonic::Code::InvalidArgument);
}

async fn search(backend: Backend) {
    let app = app(backend).await;
    let g = gql(&app);
    let owner = user();
    let create = "mutation($i: CreateVideoInput!) { createVideo(input: $i) { video { id } } }";
    let make = |title: &'static str, description: &'static str, tags: Vec<&'static str>, category: &'static str| {
        let g = &g;
        let owner = owner.clone();
        async move {
            let data = g
                .ok(
                    Some(&owner),
                    create,
                    json!({ "i": { "title": title, "description": description, "tags": tags, "category": category } }),
                )
                .await;
            let id = data["createVideo"]["video"]["id"].as_str().unwrap().to_string();
            g.make_ready(&owner, &id).await;
            id
        }
    };
    let in_title = make("Flamingo courtship dance", "Filmed at dawn on the lake", vec!["birds"], "pets").await;
    let in_description =
        make("Morning at the lake", "A flamingo walks past the camera", vec!["nature"], "travel").await;
    let in_tags = make("Pink birds", "Slow motion", vec!["flamingo"], "pets").await;
    let _other = make("Cooking pasta", "Carbonara, the real way", vec!["food"], "howto").await;
    let private =
        g.ok(Some(&owner), create, json!({ "i": { "title": "Flamingo secret", "visibility": "PRIVATE" } })).await;
    let private = private["createVideo"]["video"]["id"].as_str().unwrap().to_string();
    g.make_ready(&owner, &private).await;

    let q = "query($q: String, $tags: [String!], $c: String, $after: String, $first: Int) { search(query: $q, tags: $tags, category: $c, after: $after, first: $first) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }";
    let ids = |v: &Value| -> Vec<String> {
        v["search"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["id"].as_str().unwrap().to_string()).collect()
    };
    let hits = ids(&g.ok(None, q, json!({ "q": "flamingo" })).await);
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert_eq!(hits[0], in_title, "a title match ranks first");
    assert_eq!(hits.last().unwrap(), &in_description, "a description match ranks last");
    assert!(!hits.contains(&private), "private videos are never found");

    assert!(
        ids(&g.ok(None, q, json!({ "q": "flamngo courtship" })).await).contains(&in_title),
        "a one-letter typo still finds the title"
    );
    assert_eq!(
        ids(&g.ok(None, q, json!({ "q": "flamingo", "c": "pets", "tags": ["birds"] })).await),
        vec![in_title.clone()],
        "filters combine"
    );
    assert_eq!(ids(&g.ok(None, q, json!({ "tags": ["flamingo"] })).await), vec![in_tags.clone()]);

    let first_page = g.ok(None, q, json!({ "q": "flamingo", "first": 2 })).await;
    assert_eq!(first_page["search"]["pageInfo"]["hasNextPage"], true);
    let rest = g
        .ok(None, q, json!({ "q": "flamingo", "first": 2, "after": first_page["search"]["pageInfo"]["endCursor"] }))
        .await;
    let mut paged = ids(&first_page);
    paged.extend(ids(&rest));
    assert_eq!(paged, hits, "pages follow the ranking");

    // Hostile and random queries never error.
    let mut hostile: Vec<String> = [
        "",
        " ",
        "\"",
        "'",
        "''; DROP TABLE videos; --",
        "*",
        "AND OR NOT",
        "NEAR(",
        "title:",
        "\\",
        "%_%",
        "😀🎬",
        "((((",
        "-",
        "a\u{0}b",
        "${jndi:ldap://x}",
        "<script>alert(1)</script>",
        "select * from videos",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut seed: u64 = 0x9E3779B97F4A7C15;
    for _ in 0..300 {
        let len = (seed % 40) as usize;
        let text: String = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from_u32((seed % 0x2FF) as u32 + 0x20).unwrap_or('?')
            })
            .collect();
        hostile.push(text);
    }
    for text in hostile {
        let res = g.run(None, q, json!({ "q": text })).await;
        assert!(res.get("errors").is_none(), "query {text:?} failed: {res}");
    }
    assert_eq!(g.code(None, q, json!({ "c": "nonsense" })).await, "BAD_USER_INPUT");
}

async fn feed_costs_a_fixed_number_of_queries(backend: Backend) {
    let app = app(backend).await;
    let g = gql(&app);
    let viewer = user();
    for i in 0..22 {
        let owner = user();
        let id = g.create(&owner, &format!("N+1 probe {i}"), "PUBLIC").await;
        g.make_ready(&owner, &id).await;
        if i % 2 == 0 {
            g.ok(Some(&viewer), "mutation($id: ID!) { likeVideo(id: $id) { id } }", json!({ "id": id })).await;
        }
    }
    let query = "{ feed(first: 20) { edges { node { id title likeCount viewerHasLiked commentCount \
                 owner { id subscriberCount viewerIsSubscribed } } } } }";
    // The outbox relay polls in the background; the least of three runs is the request's cost.
    let mut costs = Vec::new();
    for _ in 0..3 {
        let before = app.db_queries("media").await;
        let data = g.ok(Some(&viewer), query, json!({})).await;
        costs.push(app.db_queries("media").await - before);
        assert_eq!(data["feed"]["edges"].as_array().unwrap().len(), 20);
    }
    // The first run reads the page, its counts, the owners' subscriber counts, the viewer's
    // likes and follows (one statement each, all of them then cached); warm, none at all.
    assert!(costs[0] >= 5, "a cold cache costs one statement per kind: {costs:?}");
    assert_eq!(
        costs.iter().min(),
        Some(&0),
        "a 20-item feed: the shared feed head, cached counts and subscriber counts, the viewer's cached likes \
         and follows, {costs:?}"
    );
}

/// The least of three runs of `query` as `who`: the statements media ran for it (the outbox
/// relay polls in the background), with the last answer.
async fn least_statements(app: &TestApp, who: Option<&str>, query: &str, variables: Value) -> (u64, Value) {
    let g = gql(app);
    let (mut least, mut data) = (u64::MAX, Value::Null);
    for _ in 0..3 {
        let before = app.db_queries("media").await;
        data = g.ok(who, query, variables.clone()).await;
        least = least.min(app.db_queries("media").await - before);
    }
    (least, data)
}

/// The router asks media for the ten videos `related` names (a playlist's too) in one
/// `_entities` call: one statement for all the rows media has not shared yet, and for the
/// viewer's likes only when `viewerHasLiked` is asked (then cached); each video is still shown
/// only to whom may see it. A warm watch page costs no statement.
async fn entity_calls_for_many_videos_cost_one_statement(backend: Backend) {
    let app = app(backend).await;
    let g = gql(&app);
    let (owner, viewer) = (user(), user());
    // Three lists of eleven, each asked once cold (the least of three is the call's cost: the
    // outbox relay polls in the background).
    let mut lists = Vec::new();
    for list in 0..3 {
        let mut ids = Vec::new();
        for i in 0..10 {
            let id = g.create(&owner, &format!("Related {list}.{i}"), "PUBLIC").await;
            g.make_ready(&owner, &id).await;
            ids.push(id);
        }
        let private = g.create(&owner, "Not yours", "PRIVATE").await;
        g.make_ready(&owner, &private).await;
        ids.insert(3, private);
        g.ok(Some(&viewer), "mutation($id: ID!) { likeVideo(id: $id) { id } }", json!({ "id": ids[5] })).await;
        lists.push(ids);
    }
    // Waiting for READY read each video through the shared rows, which may have kept them
    // (when the poll came after the readiness write dropped them): drop them, as a write
    // does, so the calls below start cold.
    for id in lists.iter().flatten() {
        app.shared.cache.invalidate(&format!("media:shared:video:{id}")).await.unwrap();
    }
    let mut cold = u64::MAX;
    for ids in &lists {
        let (query, variables) = entities("Video", ids, "id title viewerHasLiked");
        let before = app.db_queries("media").await;
        let data = g.ok(Some(&viewer), &query, variables).await;
        cold = cold.min(app.db_queries("media").await - before);
        let seen: Vec<Value> = data["_entities"].as_array().unwrap().clone();
        assert_eq!(seen.len(), 11, "one answer per representation, in order: {data}");
        assert!(seen[3].is_null(), "another's private video is not shown: {data}");
        for (i, v) in seen.iter().enumerate().filter(|(i, _)| *i != 3) {
            assert_eq!(v["id"], ids[i].as_str(), "in the order asked: {data}");
            assert_eq!(v["viewerHasLiked"], i == 5, "only the liked one: {data}");
        }
    }
    assert_eq!(cold, 1, "the eleven rows in one statement (the viewer's likes: read once, then cached)");

    let (query, variables) = entities("Video", &lists[0], "id title viewerHasLiked");
    let (warm, _) = least_statements(&app, Some(&viewer), &query, variables).await;
    assert_eq!(warm, 0, "the rows are shared, the likes cached");
    let (query, variables) = entities("Video", &lists[0], "id title");
    let (cost, data) = least_statements(&app, Some(&owner), &query, variables).await;
    assert_eq!(data["_entities"][3]["title"], "Not yours", "its owner sees it from the same shared row");
    assert_eq!(cost, 0);
    let page = "query($id: ID!) { video(id: $id) { id title viewerHasLiked owner { id subscriberCount \
                viewerIsSubscribed } comments(first: 20) { edges { node { id body } } } } }";
    let (cost, data) = least_statements(&app, None, page, json!({ "id": lists[1][0] })).await;
    assert_eq!(data["video"]["viewerHasLiked"], false);
    assert_eq!(cost, 0, "anonymous: the shared row, first comments and subscriber count; no likes looked up");
    let (cost, data) = least_statements(&app, Some(&viewer), page, json!({ "id": lists[1][5] })).await;
    assert_eq!(
        (&data["video"]["viewerHasLiked"], &data["video"]["owner"]["viewerIsSubscribed"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(cost, 0, "signed in: the viewer's likes and follows are cached too");
}

/// The titles of the feed's first five videos, with whether `who` liked each.
async fn feed_titles(g: &Gql<'_>, who: Option<&str>) -> Vec<(String, bool)> {
    let data = g.ok(who, "{ feed(first: 5) { edges { node { title viewerHasLiked } } } }", json!({})).await;
    data["feed"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["node"]["title"].as_str().unwrap().to_string(), e["node"]["viewerHasLiked"] == true))
        .collect()
}

/// Two media replicas on one database, each with its own near cache.
async fn two_replicas(backend: Backend) -> (TestApp, TestApp) {
    let infra = TestInfra::new(backend).await;
    let replica = infra.replica();
    let a = TestApp::start(infra, |s| async move { flick_media::build(&s).await }).await;
    let b = match backend {
        // Its own Redis connection: its own near cache, as another process.
        Backend::Real => TestApp::start(replica, |s| async move { flick_media::build(&s).await }).await,
        Backend::Embedded => TestApp::start_beside(replica, &a, |s| async move { flick_media::build(&s).await }).await,
    };
    (a, b)
}

/// The feed's first page is read once and shared by every viewer (only `viewerHasLiked` is
/// theirs), and every write that changes it shows at once on the replica that took it and
/// within the invalidation's hop on another.
async fn the_shared_feed_head_follows_writes_on_every_replica(backend: Backend) {
    let (a, b) = two_replicas(backend).await;
    let (ga, gb) = (gql(&a), gql(&b));
    let (owner, viewer) = (user(), user());
    let first = ga.create(&owner, "First", "PUBLIC").await;
    ga.make_ready(&owner, &first).await;
    assert_eq!(feed_titles(&gb, None).await, vec![("First".to_string(), false)]);
    // The viewer's likes are cached on both replicas; a like drops them at once on the one that
    // took it, and within the invalidation's hop on the other.
    assert_eq!(feed_titles(&ga, Some(&viewer)).await, vec![("First".to_string(), false)]);
    assert_eq!(feed_titles(&gb, Some(&viewer)).await, vec![("First".to_string(), false)]);
    let like = "mutation($id: ID!) { likeVideo(id: $id) { viewerHasLiked } }";
    let liked = ga.ok(Some(&viewer), like, json!({ "id": first })).await;
    assert_eq!(liked["likeVideo"]["viewerHasLiked"], true);
    assert_eq!(feed_titles(&ga, Some(&viewer)).await, vec![("First".to_string(), true)], "at once where it was liked");
    let liked_on_b = |want: bool| {
        let (gb, viewer) = (&gb, &viewer);
        eventually(Duration::from_secs(1), move || async move {
            feed_titles(gb, Some(viewer)).await == vec![("First".to_string(), want)]
        })
    };
    assert!(liked_on_b(true).await, "the other replica");
    assert_eq!(feed_titles(&gb, None).await, vec![("First".to_string(), false)], "likes are nobody else's");
    let unliked = gb
        .ok(Some(&viewer), "mutation($id: ID!) { unlikeVideo(id: $id) { viewerHasLiked } }", json!({ "id": first }))
        .await;
    assert_eq!(unliked["unlikeVideo"]["viewerHasLiked"], false);
    assert_eq!(feed_titles(&gb, Some(&viewer)).await, vec![("First".to_string(), false)], "an unlike, at once");
    assert!(
        eventually(Duration::from_secs(1), || async {
            feed_titles(&ga, Some(&viewer)).await == vec![("First".to_string(), false)]
        })
        .await,
        "and on the replica that took the like"
    );

    // An edit, a new publication, a visibility change and a deletion: each shows at once.
    assert_eq!(feed_titles(&ga, None).await, vec![("First".to_string(), false)]);
    let edit = "mutation($id: ID!, $i: UpdateVideoInput!) { updateVideo(id: $id, input: $i) { id } }";
    ga.ok(Some(&owner), edit, json!({ "id": first, "i": { "title": "First, renamed" } })).await;
    assert_eq!(feed_titles(&ga, None).await, vec![("First, renamed".to_string(), false)], "on the replica that wrote");
    let on_b = |want: Vec<&'static str>| {
        let gb = &gb;
        async move {
            let want: Vec<String> = want.into_iter().map(str::to_string).collect();
            eventually(Duration::from_secs(1), || async {
                feed_titles(gb, None).await.into_iter().map(|(t, _)| t).collect::<Vec<_>>() == want
            })
            .await
        }
    };
    assert!(on_b(vec!["First, renamed"]).await, "the other replica");
    let second = ga.create(&owner, "Second", "PUBLIC").await;
    ga.make_ready(&owner, &second).await;
    assert!(on_b(vec!["Second", "First, renamed"]).await, "a publication");
    ga.ok(Some(&owner), edit, json!({ "id": second, "i": { "visibility": "PRIVATE" } })).await;
    assert!(on_b(vec!["First, renamed"]).await, "made private");
    ga.ok(Some(&owner), "mutation($id: ID!) { deleteVideo(id: $id) }", json!({ "id": first })).await;
    assert!(on_b(vec![]).await, "a deletion");
}

/// What a watch page shows that media shares between viewers or keeps per viewer: the title,
/// the owner's subscriber count, whether `who` follows the owner, the comments' bodies.
async fn watch_page(g: &Gql<'_>, who: Option<&str>, id: &str) -> (String, i64, bool, Vec<String>) {
    let query = "query($id: ID!) { video(id: $id) { title owner { subscriberCount viewerIsSubscribed } \
                 comments(first: 5) { edges { node { body } } } } }";
    let data = g.ok(who, query, json!({ "id": id })).await;
    let v = &data["video"];
    let bodies = v["comments"]["edges"].as_array().unwrap().iter();
    (
        v["title"].as_str().unwrap().to_string(),
        v["owner"]["subscriberCount"].as_i64().unwrap(),
        v["owner"]["viewerIsSubscribed"] == true,
        bodies.map(|e| e["node"]["body"].as_str().unwrap().to_string()).collect(),
    )
}

/// Whether `viewer`'s watch page on `g` shows `want` within the invalidation's hop, and what
/// it shows then.
async fn watch_page_settles(
    g: &Gql<'_>,
    viewer: &str,
    id: &str,
    want: (String, i64, bool, Vec<String>),
) -> (bool, (String, i64, bool, Vec<String>)) {
    let ok = eventually(Duration::from_secs(1), || async { watch_page(g, Some(viewer), id).await == want }).await;
    (ok, watch_page(g, Some(viewer), id).await)
}

/// A watch page's row, first comments and subscriber count are shared by every viewer, and
/// each viewer's follows are cached: every write shows at once on the replica that took it
/// and within the invalidation's hop on another.
async fn the_shared_watch_page_follows_writes_on_every_replica(backend: Backend) {
    let (a, b) = two_replicas(backend).await;
    let (ga, gb) = (gql(&a), gql(&b));
    let (owner, viewer) = (user(), user());
    let id = ga.create(&owner, "Watched", "PUBLIC").await;
    ga.make_ready(&owner, &id).await;
    let page = |title: &str, subscribers: i64, following: bool, bodies: &[&str]| {
        (title.to_string(), subscribers, following, bodies.iter().map(|b| b.to_string()).collect::<Vec<_>>())
    };
    let settles = |g, want| watch_page_settles(g, &viewer, &id, want);
    for g in [&ga, &gb] {
        assert_eq!(watch_page(g, Some(&viewer), &id).await, page("Watched", 0, false, &[]), "cached on both");
    }

    let subscribe = "mutation($c: ID!) { subscribe(channelId: $c) { id } }";
    ga.ok(Some(&viewer), subscribe, json!({ "c": owner })).await;
    assert_eq!(watch_page(&ga, Some(&viewer), &id).await, page("Watched", 1, true, &[]), "a subscription, at once");
    let (ok, seen) = settles(&gb, page("Watched", 1, true, &[])).await;
    assert!(ok, "and on the other replica: {seen:?}");

    let comment = "mutation($id: ID!, $b: String!) { addComment(videoId: $id, body: $b) { id } }";
    let c = gb.ok(Some(&viewer), comment, json!({ "id": id, "b": "First!" })).await;
    let comment_id = c["addComment"]["id"].as_str().unwrap().to_string();
    assert_eq!(watch_page(&gb, Some(&viewer), &id).await, page("Watched", 1, true, &["First!"]), "a comment, at once");
    let (ok, seen) = settles(&ga, page("Watched", 1, true, &["First!"])).await;
    assert!(ok, "and on the other replica: {seen:?}");
    let edit = "mutation($id: ID!, $b: String!) { editComment(id: $id, body: $b) { id } }";
    gb.ok(Some(&viewer), edit, json!({ "id": comment_id, "b": "Edited" })).await;
    assert_eq!(watch_page(&gb, Some(&viewer), &id).await.3, vec!["Edited"], "an edit, at once");
    let (ok, seen) = settles(&ga, page("Watched", 1, true, &["Edited"])).await;
    assert!(ok, "and on the other replica: {seen:?}");

    let rename = "mutation($id: ID!, $i: UpdateVideoInput!) { updateVideo(id: $id, input: $i) { id } }";
    ga.ok(Some(&owner), rename, json!({ "id": id, "i": { "title": "Renamed" } })).await;
    assert_eq!(watch_page(&ga, Some(&viewer), &id).await.0, "Renamed", "a rename, at once");
    let (ok, seen) = settles(&gb, page("Renamed", 1, true, &["Edited"])).await;
    assert!(ok, "and on the other replica: {seen:?}");

    gb.ok(Some(&viewer), "mutation($id: ID!) { deleteComment(id: $id) }", json!({ "id": comment_id })).await;
    gb.ok(Some(&viewer), "mutation($c: ID!) { unsubscribe(channelId: $c) { id } }", json!({ "c": owner })).await;
    assert_eq!(watch_page(&gb, Some(&viewer), &id).await, page("Renamed", 0, false, &[]), "at once");
    let (ok, seen) = settles(&ga, page("Renamed", 0, false, &[])).await;
    assert!(ok, "and on the other replica: {seen:?}");

    ga.ok(Some(&owner), rename, json!({ "id": id, "i": { "visibility": "PRIVATE" } })).await;
    let hidden = "query($id: ID!) { video(id: $id) { id } }";
    assert_eq!(ga.ok(Some(&viewer), hidden, json!({ "id": id })).await["video"], Value::Null, "made private, at once");
    assert!(
        eventually(Duration::from_secs(1), || async {
            gb.ok(Some(&viewer), hidden, json!({ "id": id })).await["video"].is_null()
        })
        .await,
        "and on the other replica"
    );
    assert_eq!(
        gb.ok(Some(&owner), hidden, json!({ "id": id })).await["video"]["id"],
        id.as_str(),
        "its owner still sees it"
    );
}

/// Issue 12's fan-out: 100 videos, each owner's 100 videos, each of their owner's 100 videos.
const FAN_OUT: &str = "{ feed(first: 100) { edges { node { id owner { videos(first: 100) { edges { node { \
                       owner { videos(first: 100) { edges { node { id title } } } } } } } } } } } }";

/// `copies` aliased copies of `field` in one query.
fn aliased(field: &str, copies: usize) -> String {
    let body: Vec<String> = (0..copies).map(|i| format!("a{i}: {field}")).collect();
    format!("{{ {} }}", body.join(" "))
}

/// The router's `_entities` call for `count` representations of `typename`.
fn entities(typename: &str, ids: &[String], selection: &str) -> (String, Value) {
    let reps: Vec<Value> = ids.iter().map(|id| json!({ "__typename": typename, "id": id })).collect();
    let query =
        format!("query($r: [_Any!]!) {{ _entities(representations: $r) {{ ... on {typename} {{ {selection} }} }} }}");
    (query, json!({ "r": reps }))
}

const BENCH_FEED: &str =
    "{ feed(first: 20) { edges { node { id title owner { displayName } likeCount viewerHasLiked } } } }";
const SMOKE_FEED: &str = "{ feed(first: 5) { edges { node { id title owner { displayName } likeCount } } } }";
const SMOKE_DASHBOARD: &str = "{ dashboard { videos { title owner { id displayName } } } }";
/// The video page's media part: the video, its owner, counts and the first comments.
const VIDEO_PAGE: &str = "query($id: ID!) { video(id: $id) { id title description tags category visibility status \
    createdAt publishedAt viewCount likeCount commentCount viewerHasLiked \
    owner { id displayName subscriberCount viewerIsSubscribed } \
    comments(first: 20) { edges { cursor node { id body createdAt editedAt parentId author { id } } } \
    pageInfo { hasNextPage endCursor } } } }";
/// What the router asks media for the videos `related` names, and for a feed's owners.
const RELATED_VIDEOS: &str = "id title viewCount createdAt owner { id displayName }";
const OWNER_FIELDS: &str = "subscriberCount viewerIsSubscribed";

/// The fan-out (plain, aliased, or through `_entities`) is refused before any statement runs,
/// with `QUERY_TOO_COMPLEX`; the app's real queries, and the router's entity calls for a full
/// page, pass.
async fn fan_out_is_refused_before_it_runs(backend: Backend) {
    let app = app(backend).await;
    let g = gql(&app);
    let owner = user();
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = g.create(&owner, &format!("Fan-out {i}"), "PUBLIC").await;
        g.make_ready(&owner, &id).await;
        ids.push(id);
    }
    let hundred_users: Vec<String> = (0..99).map(|_| user()).chain([owner.clone()]).collect();
    let (users_videos, users_vars) =
        entities("User", &hundred_users, "videos(first: 100) { edges { node { id title } } }");
    let refused = [
        (FAN_OUT.to_string(), json!({})),
        (aliased(&FAN_OUT[2..FAN_OUT.len() - 2], 5), json!({})),
        // Each copy passes alone; eight of them are over the limit.
        (aliased("feed(first: 100) { edges { node { id title likeCount } } }", 8), json!({})),
        (users_videos, users_vars),
    ];
    for (query, variables) in &refused {
        // The outbox relay polls in the background: the least of three runs is the request's.
        let mut statements = Vec::new();
        for _ in 0..3 {
            let before = app.db_queries("media").await;
            let res = g.run(None, query, variables.clone()).await;
            statements.push(app.db_queries("media").await - before);
            assert_eq!(res["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX", "{query}: {res}");
            assert!(res["errors"][0]["message"].as_str().unwrap().contains("over the limit 2000"), "{res}");
            assert!(res.get("data").is_none_or(Value::is_null), "nothing ran: {res}");
        }
        assert_eq!(statements.iter().min(), Some(&0), "{query}: {statements:?}");
    }

    // The app's queries pass (display names are accounts' and no accounts runs here: those
    // fields fail on their own, unrelated to the cost).
    let passes = |user: String, query: String, variables: Value| {
        let g = &g;
        async move {
            let res = g.run(Some(&user), &query, variables).await;
            let refused =
                res["errors"].as_array().into_iter().flatten().any(|e| {
                    e["extensions"]["code"] == "QUERY_TOO_COMPLEX" || e["extensions"]["code"] == "QUERY_TOO_DEEP"
                });
            assert!(!refused, "{query}: {res}");
            let data = res["data"].as_object().unwrap_or_else(|| panic!("{query}: {res}")).clone();
            assert!(!data.values().any(Value::is_null), "{query}: {res}");
            data
        }
    };
    let viewer = user();
    for (query, variables) in [
        (BENCH_FEED.to_string(), json!({})),
        (SMOKE_FEED.to_string(), json!({})),
        (SMOKE_DASHBOARD.to_string(), json!({})),
        (VIDEO_PAGE.to_string(), json!({ "id": ids[0] })),
        (
            "{ feed(first: 100) { edges { node { id title likeCount viewCount owner { displayName } } } } }".into(),
            json!({}),
        ),
    ] {
        passes(owner.clone(), query.clone(), variables.clone()).await;
        passes(viewer.clone(), query, variables).await;
    }
    // The router's entity calls: `related(first: 100)`'s videos, a 100-video feed's owners.
    let many: Vec<String> = ids.iter().cycle().take(100).cloned().collect();
    let (query, variables) = entities("Video", &many, RELATED_VIDEOS);
    let data = passes(viewer.clone(), query, variables).await;
    assert_eq!(data["_entities"].as_array().unwrap().len(), 100);
    assert_eq!(data["_entities"][0]["title"], "Fan-out 0");
    let (query, variables) = entities("User", &hundred_users, OWNER_FIELDS);
    assert_eq!(passes(viewer, query, variables).await["_entities"].as_array().unwrap().len(), 100);
}

/// The cost of each real query against the limit, from the refusal's message on a schema with
/// a limit of 0 (nothing runs). Prints them for ARCHITECTURE.md; the real ones keep headroom.
#[tokio::test]
async fn real_queries_cost_well_under_the_limit() {
    let limit = flick_kit::config::GraphqlConfig::default().max_complexity;
    let schema = flick_media::schema(
        &flick_kit::config::GraphqlConfig { max_complexity: 0, ..Default::default() },
        flick_kit::graphql::CostCheck::PerEntity,
        None,
    );
    let cost = |query: String, variables: Value| {
        let schema = schema.clone();
        async move {
            let request =
                async_graphql::Request::new(query.clone()).variables(async_graphql::Variables::from_json(variables));
            let res = serde_json::to_value(schema.execute(request).await).unwrap();
            let message = res["errors"][0]["message"].as_str().unwrap_or_else(|| panic!("{query}: {res}")).to_string();
            let words: Vec<&str> = message.split(' ').collect();
            let n =
                |after: &str| words.iter().position(|w| *w == after).map(|i| words[i + 1].parse::<usize>().unwrap());
            // "cost C per entity × N entities" or "cost C is over".
            n("cost").unwrap() * n("×").unwrap_or(1)
        }
    };
    let ten: Vec<String> = (0..10).map(|_| user()).collect();
    let twenty: Vec<String> = (0..20).map(|_| user()).collect();
    let real = [
        ("bench feed", BENCH_FEED.to_string(), json!({})),
        ("smoke feed", SMOKE_FEED.to_string(), json!({})),
        ("smoke dashboard", SMOKE_DASHBOARD.to_string(), json!({})),
        ("video page", VIDEO_PAGE.to_string(), json!({ "id": user() })),
        (
            "_entities: related(first: 10)'s videos",
            entities("Video", &ten, RELATED_VIDEOS).0,
            entities("Video", &ten, RELATED_VIDEOS).1,
        ),
        (
            "_entities: a 20-video feed's owners",
            entities("User", &twenty, OWNER_FIELDS).0,
            entities("User", &twenty, OWNER_FIELDS).1,
        ),
    ];
    for (name, query, variables) in real {
        let c = cost(query, variables).await;
        println!("{name}: {c}");
        assert!(c * 4 <= limit, "{name} costs {c}, too close to the limit {limit}");
    }
    let fan_out = cost(FAN_OUT.to_string(), json!({})).await;
    println!("fan-out: {fan_out}");
    assert!(fan_out > limit * 1000);
}

/// Metric labels never come from the request as sent: an unknown gRPC path is `unknown`, an
/// extension method `OTHER` (`/metrics` gains no value named after either).
#[tokio::test]
async fn request_labels_on_metrics_are_bounded() {
    let app = app(Backend::Embedded).await;
    let http = reqwest::Client::new();
    let tag = Uuid::now_v7().simple().to_string();
    let rpc = format!("/flick.media.v1.MediaService/Probe{tag}");
    let res =
        http.post(app.url(&rpc)).header("content-type", "application/grpc").body(vec![0u8; 5]).send().await.unwrap();
    assert!(res.status().is_client_error() || res.headers().contains_key("grpc-status"), "{res:?}");
    let method = reqwest::Method::from_bytes(format!("BREW{tag}").to_uppercase().as_bytes()).unwrap();
    http.request(method, app.url("/graphql")).send().await.unwrap();
    // A real RPC keeps its name.
    let known = "/grpc.health.v1.Health/Check";
    http.post(app.url(known)).header("content-type", "application/grpc").body(vec![0u8; 5]).send().await.unwrap();
    let metrics = http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.to_lowercase().contains(&tag), "a label names the request: {metrics}");
    assert!(metrics.contains(r#"rpc="unknown""#), "{metrics}");
    assert!(metrics.contains(r#"method="OTHER""#), "{metrics}");
    assert!(metrics.contains(&format!(r#"rpc="{known}""#)), "{metrics}");
}

/// A service whose reconciler runs only when the test calls it, and its `Media`.
async fn app_with_media(mut infra: TestInfra) -> (TestApp, flick_media::Media) {
    infra.config.media_mut().reconcile_interval_seconds = 3600;
    let slot: Arc<Mutex<Option<flick_media::Media>>> = Arc::default();
    let put = slot.clone();
    let app = TestApp::start(infra, move |s| async move {
        let (service, media) = flick_media::build_with_handle(&s).await?;
        *put.lock().unwrap() = Some(media);
        Ok(service)
    })
    .await;
    let media = slot.lock().unwrap().take().unwrap();
    (app, media)
}

/// `(like_count, comment_count, view_count)` as persisted in `videos`.
async fn columns(media: &flick_media::Media, id: &str) -> (i64, i64, i64) {
    use flick_platform::db::sea_orm::ConnectionTrait;
    let db = media.db();
    let sql = "SELECT like_count, comment_count, view_count FROM videos WHERE id = ?";
    let row = db.query_one_raw(flick_platform::db::stmt(db, sql, vec![id.into()])).await.unwrap().unwrap();
    (
        row.try_get("", "like_count").unwrap(),
        row.try_get("", "comment_count").unwrap(),
        row.try_get("", "view_count").unwrap(),
    )
}

const COUNTS: &str = "query($id: ID!) { video(id: $id) { likeCount commentCount viewCount } }";

async fn counts(g: &Gql<'_>, id: &str) -> (i64, i64, i64) {
    let v = g.ok(None, COUNTS, json!({ "id": id })).await;
    let n = |f: &str| v["video"][f].as_i64().unwrap_or_else(|| panic!("{f}: {v}"));
    (n("likeCount"), n("commentCount"), n("viewCount"))
}

async fn like_as(g: &Gql<'_>, user: &str, id: &str, like: bool) {
    let m = if like { "likeVideo" } else { "unlikeVideo" };
    g.ok(Some(user), &format!("mutation($id: ID!) {{ {m}(id: $id) {{ id }} }}"), json!({ "id": id })).await;
}

async fn comment_as(g: &Gql<'_>, user: &str, id: &str) -> String {
    let add = "mutation($id: ID!) { addComment(videoId: $id, body: \"hi\") { id } }";
    g.ok(Some(user), add, json!({ "id": id })).await["addComment"]["id"].as_str().unwrap().to_string()
}

/// Writes move the counts GraphQL shows at once; a lost cache entry is recounted from rows.
async fn counts_follow_writes_and_are_recounted_when_the_cache_loses_them(backend: Backend) {
    let (app, _media) = app_with_media(TestInfra::new(backend).await).await;
    let g = gql(&app);
    let (owner, a, b) = (user(), user(), user());
    let id = g.create(&owner, "Counted", "PUBLIC").await;
    g.make_ready(&owner, &id).await;
    assert_eq!(counts(&g, &id).await, (0, 0, 0), "cold: counted from the rows, and cached");
    like_as(&g, &a, &id, true).await;
    like_as(&g, &b, &id, true).await;
    like_as(&g, &b, &id, true).await;
    let c1 = comment_as(&g, &a, &id).await;
    comment_as(&g, &b, &id).await;
    assert_eq!(counts(&g, &id).await, (2, 2, 0), "the cached counts moved with the writes");
    like_as(&g, &a, &id, false).await;
    g.ok(Some(&a), "mutation($id: ID!) { deleteComment(id: $id) }", json!({ "id": c1 })).await;
    assert_eq!(counts(&g, &id).await, (1, 1, 0));

    let cache = &app.shared.cache;
    cache.delete_counter(&format!("media:likes:{id}")).await.unwrap();
    cache.delete_counter(&format!("media:comments:{id}")).await.unwrap();
    assert_eq!(counts(&g, &id).await, (1, 1, 0), "recounted from the rows");
    assert_eq!(cache.counter(&format!("media:likes:{id}")).await.unwrap(), Some(1), "and cached again");
    like_as(&g, &a, &id, true).await;
    assert_eq!(counts(&g, &id).await, (2, 1, 0));
}

/// A wrong cached count (and the columns, never written by likes) are put right by a
/// reconcile run; the columns then match the rows.
async fn a_reconcile_corrects_a_corrupted_counter_and_the_columns(backend: Backend) {
    let (app, media) = app_with_media(TestInfra::new(backend).await).await;
    let g = gql(&app);
    let (owner, a) = (user(), user());
    let id = g.create(&owner, "Drifting", "PUBLIC").await;
    g.make_ready(&owner, &id).await;
    like_as(&g, &a, &id, true).await;
    like_as(&g, &owner, &id, true).await;
    comment_as(&g, &a, &id).await;
    assert_eq!(counts(&g, &id).await, (2, 1, 0));
    assert_eq!(columns(&media, &id).await, (0, 0, 0), "writes do not touch the videos row");
    media.reconcile().await.unwrap();
    assert_eq!(columns(&media, &id).await, (2, 1, 0), "dirty videos are written back");

    // Nothing marks the video dirty now: the sweep finds the drift.
    app.shared.cache.set_counters(&[(&format!("media:likes:{id}"), 42)], Duration::from_secs(600)).await.unwrap();
    assert_eq!(counts(&g, &id).await, (42, 1, 0), "reads trust the cache");
    assert!(media.reconcile().await.unwrap() >= 1);
    assert_eq!(counts(&g, &id).await, (2, 1, 0), "corrected from the rows");
    assert_eq!(columns(&media, &id).await, (2, 1, 0));
}

/// `flick seed` writes like rows behind its numbers, so counting the rows gives them back.
async fn seeded_counts_are_their_rows(backend: Backend) {
    let (app, media) = app_with_media(TestInfra::new(backend).await).await;
    let g = gql(&app);
    let owners: Vec<String> = (0..7).map(|_| user()).collect();
    assert_eq!(flick_media::seed_videos(media.db(), &owners, 12).await.unwrap(), 12);
    let feed = g.ok(None, "{ feed(first: 50) { edges { node { id likeCount viewCount } } } }", json!({})).await;
    let edges = feed["feed"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 12);
    let mut liked = 0;
    for e in edges {
        let id = e["node"]["id"].as_str().unwrap();
        let (likes, _, views) = columns(&media, id).await;
        assert_eq!(e["node"]["likeCount"].as_i64(), Some(likes), "rows counted = seeded column");
        assert_eq!(e["node"]["viewCount"].as_i64(), Some(views));
        liked += i64::from(likes > 0);
    }
    assert!(liked > 0, "some seeded videos have likes");
    media.reconcile().await.unwrap();
    for e in edges {
        let id = e["node"]["id"].as_str().unwrap();
        assert_eq!(Some(columns(&media, id).await.0), e["node"]["likeCount"].as_i64(), "the sweep changed nothing");
    }
}

/// `video.viewed` adds a pending view at once; a reconcile moves it into the column.
async fn views_are_pending_in_the_cache_until_a_reconcile_flushes_them(backend: Backend) {
    let (app, media) = app_with_media(TestInfra::new(backend).await).await;
    let g = gql(&app);
    let owner = user();
    let id = g.create(&owner, "Watched", "PUBLIC").await;
    g.make_ready(&owner, &id).await;
    let view = || {
        let payload =
            events::VideoViewed { video_id: id.clone(), viewer: format!("user:{}", user()), watched_seconds: 31.0 };
        envelope("video.viewed", &id, "activity", payload.encode_to_vec())
    };
    let first = view();
    for e in [&first, &first, &view(), &view()] {
        app.shared.bus.publish(e).await.unwrap();
    }
    assert!(
        eventually(Duration::from_secs(10), || async { counts(&g, &id).await.2 == 3 }).await,
        "three views (one event delivered twice): {:?}",
        counts(&g, &id).await
    );
    assert_eq!(columns(&media, &id).await.2, 0, "still pending");
    media.reconcile().await.unwrap();
    assert_eq!(columns(&media, &id).await.2, 3, "flushed");
    assert_eq!(counts(&g, &id).await.2, 3, "column + nothing pending");
    assert_eq!(app.shared.cache.counter(&format!("media:views:pending:{id}")).await.unwrap(), None);
    app.shared.bus.publish(&view()).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || async { counts(&g, &id).await.2 == 4 }).await);
    media.reconcile().await.unwrap();
    assert_eq!(columns(&media, &id).await.2, 4);
}

flick_testkit::on_both_backends!(
    owner_matrix,
    validation,
    visibility_and_status,
    feed_pagination,
    likes,
    comments,
    channels_and_dashboard,
    deleted_users_leave_nothing,
    grpc,
    search,
    feed_costs_a_fixed_number_of_queries,
    entity_calls_for_many_videos_cost_one_statement,
    the_shared_feed_head_follows_writes_on_every_replica,
    the_shared_watch_page_follows_writes_on_every_replica,
    fan_out_is_refused_before_it_runs,
    counts_follow_writes_and_are_recounted_when_the_cache_loses_them,
    a_reconcile_corrects_a_corrupted_counter_and_the_columns,
    views_are_pending_in_the_cache_until_a_reconcile_flushes_them,
    seeded_counts_are_their_rows,
);

/// With Redis unreachable, likes and views still count (the rows and the column are the
/// truth) and reads come from the database; once it is back a reconcile heals the cache.
#[tokio::test]
async fn real_likes_and_views_count_from_the_database_while_redis_is_down() {
    use flick_testkit::{TcpProxy, redis_url};
    let mut infra = TestInfra::new(Backend::Real).await;
    let proxy = TcpProxy::start("127.0.0.1:6379").await;
    infra.config.cache.url = Some(proxy.rewrite(&redis_url()));
    let (app, media) = app_with_media(infra).await;
    let g = gql(&app);
    let (owner, a, b) = (user(), user(), user());
    let id = g.create(&owner, "Outage", "PUBLIC").await;
    g.make_ready(&owner, &id).await;
    like_as(&g, &a, &id, true).await;
    assert_eq!(counts(&g, &id).await, (1, 0, 0), "cached before the outage");

    proxy.cut();
    like_as(&g, &b, &id, true).await;
    comment_as(&g, &b, &id).await;
    assert_eq!(counts(&g, &id).await, (2, 1, 0), "from the rows while the cache is down");
    let payload = events::VideoViewed { video_id: id.clone(), viewer: "addr:192.0.2.1".into(), watched_seconds: 31.0 };
    app.shared.bus.publish(&envelope("video.viewed", &id, "activity", payload.encode_to_vec())).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async { counts(&g, &id).await.2 == 1 }).await,
        "the view went straight into the column: {:?}",
        counts(&g, &id).await
    );
    assert_eq!(columns(&media, &id).await.2, 1);
    media.reconcile().await.unwrap();
    assert_eq!(columns(&media, &id).await, (2, 1, 1), "the columns follow the rows without the cache");

    // Redis kept its old count (1) through the outage; the next reconcile overwrites it.
    proxy.restore();
    assert!(
        eventually(Duration::from_secs(15), || async {
            media.reconcile().await.is_ok()
                && app.shared.cache.counter(&format!("media:likes:{id}")).await.ok().flatten() == Some(2)
        })
        .await
    );
    assert_eq!(counts(&g, &id).await, (2, 1, 1));
}

/// Quality bar: with the broker down, user writes still succeed; their events arrive once it
/// is back (outbox).
#[tokio::test]
async fn real_writes_succeed_while_rabbitmq_is_down_and_their_events_follow() {
    use flick_platform::bus::{Bus, BusOptions};
    use flick_testkit::{TcpProxy, amqp_url};
    let mut infra = TestInfra::new(Backend::Real).await;
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    infra.config.bus.url = Some(proxy.rewrite(&amqp_url()));
    let exchange = infra.config.bus.exchange.clone();
    let app = TestApp::start(infra, |s| async move { flick_media::build(&s).await }).await;
    let g = gql(&app);

    // Another service's view of the events, connected to the broker directly.
    let watcher = Bus::connect(Some(&amqp_url()), BusOptions { exchange, ..BusOptions::default() }).unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let stop = CancellationToken::new();
    let queue = format!("watch-{}", Uuid::now_v7().simple());
    watcher
        .consume(
            QueueSpec::events(&queue, &["video.*", "comment.*"]),
            handler(move |d: Delivery| {
                let record = record.clone();
                async move {
                    record.lock().unwrap().push(d.envelope.r#type);
                    Ok(())
                }
            }),
            stop.clone(),
        )
        .await
        .unwrap();

    let owner = user();
    let id = g.create(&owner, "Made during an outage", "UNLISTED").await;
    assert!(
        eventually(Duration::from_secs(10), || async { seen.lock().unwrap().len() == 1 }).await,
        "the first create's event goes out while the broker is up"
    );
    proxy.cut();
    // Status events cannot arrive now; the owner still sees and changes the video.
    g.ok(
        Some(&owner),
        "mutation($id: ID!) { updateVideo(id: $id, input: {title: \"Still works\"}) { id } }",
        json!({ "id": id }),
    )
    .await;
    for i in 0..3 {
        g.ok(
            Some(&owner),
            "mutation($i: CreateVideoInput!) { createVideo(input: $i) { video { id } } }",
            json!({ "i": { "title": format!("offline {i}") } }),
        )
        .await;
    }
    // The relay counts its failed publishes in the outbox: a failed try shows it was at work
    // during the outage.
    use flick_platform::db::sea_orm::{ConnectionTrait, Statement};
    let db = flick_platform::connect_db(&app.shared.config, "media").await.unwrap();
    let failed_tries = Statement::from_string(
        db.get_database_backend(),
        "SELECT COUNT(*) AS n FROM outbox WHERE attempts >= 1 AND published_at_ms IS NULL",
    );
    assert!(
        eventually(Duration::from_secs(30), || async {
            let row = db.query_one_raw(failed_tries.clone()).await.unwrap().unwrap();
            row.try_get::<i64>("", "n").unwrap() >= 1
        })
        .await,
        "the relay tried to publish during the outage"
    );
    let during = seen.lock().unwrap().clone();
    proxy.restore();
    assert!(
        eventually(Duration::from_secs(30), || async {
            let s = seen.lock().unwrap();
            s.iter().filter(|t| *t == "video.created").count() == 4 && s.iter().any(|t| t == "video.updated")
        })
        .await,
        "every event arrives after the broker returns: {:?}",
        seen.lock().unwrap()
    );
    assert_eq!(during, ["video.created"], "nothing but the first create went out during the outage");
    stop.cancel();
    let _ = watcher.delete_queues(&queue).await;
}
