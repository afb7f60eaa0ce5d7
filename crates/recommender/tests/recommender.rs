//! The recommender through its events, GraphQL subgraph and gRPC, on both adapter sets, with
//! the real model (installed by `scripts/models.sh`).

use flick_platform::bus::{Envelope, envelope};
use flick_proto::events::v1 as events;
use flick_proto::recommender::v1 as pb;
use flick_recommender::config::RecommenderConfigExt as _;
use flick_testkit::app::{Backend, TestApp, TestInfra};
use flick_testkit::eventually;
use prost::Message;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// Fails with the setup command when the weights are missing (never skips).
fn require_model() {
    if let Err(e) = flick_recommender::model::check_files(&flick_recommender::model::default_dir()) {
        panic!("{e}");
    }
}

async fn app(backend: Backend) -> TestApp {
    app_with(TestInfra::new(backend).await).await
}

/// The recommender, consuming media's events once started (its queue is bound during build).
async fn app_with(infra: TestInfra) -> TestApp {
    require_model();
    TestApp::start(infra, |s| async move { flick_recommender::build(&s).await }).await
}

fn id() -> String {
    Uuid::now_v7().to_string()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

const MINUTE: i64 = 60_000;

struct Catalogue<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
}

fn catalogue(app: &TestApp) -> Catalogue<'_> {
    Catalogue { app, http: reqwest::Client::new() }
}

impl Catalogue<'_> {
    async fn send(&self, e: &Envelope) {
        self.app.shared.bus.publish(e).await.unwrap();
    }

    /// An event as media emits it, `minutes_ago` in the past.
    fn video_event(kind: &str, video: &str, owner: &str, title: &str, visibility: &str, minutes_ago: i64) -> Envelope {
        let payload = events::VideoChanged {
            video_id: video.into(),
            owner_id: owner.into(),
            title: title.into(),
            description: String::new(),
            tags: vec![],
            category: String::new(),
            visibility: visibility.into(),
            status: "READY".into(),
            version: 0,
        };
        let mut e = envelope(kind, video, "media", payload.encode_to_vec());
        e.occurred_at_ms = now_ms() - minutes_ago * MINUTE;
        e
    }

    /// Publishes a public video `minutes_ago`; returns its id.
    async fn publish(&self, owner: &str, title: &str, minutes_ago: i64) -> String {
        let video = id();
        self.send(&Self::video_event("video.published", &video, owner, title, "PUBLIC", minutes_ago)).await;
        video
    }

    fn like_event(kind: &str, user: &str, video: &str) -> Envelope {
        let payload = events::VideoLiked { video_id: video.into(), user_id: user.into() };
        envelope(kind, video, "media", payload.encode_to_vec())
    }

    async fn like(&self, user: &str, video: &str) {
        self.send(&Self::like_event("video.liked", user, video)).await;
    }

    /// A playback start as the transcoder reports it (`viewer`: "user:<id>" or "addr:<hash>").
    fn view_event(viewer: &str, video: &str, minutes_ago: i64) -> Envelope {
        let payload = events::VideoViewed { video_id: video.into(), viewer: viewer.into(), watched_seconds: 31.0 };
        let mut e = envelope("video.viewed", video, "activity", payload.encode_to_vec());
        e.occurred_at_ms = now_ms() - minutes_ago * MINUTE;
        e
    }

    async fn gql(&self, user: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self.http.post(self.app.url("/graphql")).json(&json!({ "query": query, "variables": variables }));
        if let Some(u) = user {
            req = req.header("x-user-id", u);
        }
        let res: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(res.get("errors").is_none(), "{res}");
        res["data"].clone()
    }

    fn ids(list: &Value) -> Vec<String> {
        list.as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap().to_string()).collect()
    }

    async fn related(&self, video: &str, first: i32) -> Vec<String> {
        let query = "query($id: ID!, $first: Int!) { _entities(representations: [{__typename: \"Video\", id: $id}]) { ... on Video { related(first: $first) { id } } } }";
        let data = self.gql(None, query, json!({ "id": video, "first": first })).await;
        Self::ids(&data["_entities"][0]["related"])
    }

    async fn for_me(&self, user: Option<&str>, first: i32) -> Vec<String> {
        let data = self
            .gql(user, "query($first: Int!) { recommendedForMe(first: $first) { id } }", json!({ "first": first }))
            .await;
        Self::ids(&data["recommendedForMe"])
    }

    /// Every indexed video, most liked first (what an anonymous caller is recommended).
    async fn indexed(&self) -> Vec<String> {
        self.for_me(None, 100).await
    }

    /// Waits (15 s at most) until `check` holds for the indexed videos; returns them.
    async fn until(&self, what: &str, check: impl Fn(&[String]) -> bool) -> Vec<String> {
        let ok = eventually(Duration::from_secs(15), || async { check(&self.indexed().await) }).await;
        let now = self.indexed().await;
        assert!(ok, "{what}: indexed {now:?}");
        now
    }

    async fn until_indexed(&self, videos: &[&String]) {
        self.until("all indexed", |now| videos.iter().all(|v| now.contains(v))).await;
    }

    /// The catalogue of the preference tests, indexed: a cat at the piano (by `cats`), the
    /// other cat and music titles, two unrelated ones, and curry, which someone liked (so it
    /// leads the popular list a new user gets).
    async fn preference_catalogue(&self, cats: &str, others: &str) -> PreferenceCatalogue {
        let piano = self.publish(cats, "cat playing the piano", 10).await;
        let kitten = self.publish(cats, "kitten plays a keyboard", 9).await;
        let cat_guitar = self.publish(others, "a cat sings along to a guitar", 8).await;
        let stocks = self.publish(others, "stock market news today", 7).await;
        let curry = self.publish(others, "chicken curry recipe", 6).await;
        self.until_indexed(&[&piano, &kitten, &cat_guitar, &stocks, &curry]).await;
        self.like(&id(), &curry).await;
        self.until("curry liked", |now| now.first() == Some(&curry)).await;
        PreferenceCatalogue { piano, kitten, cat_guitar, curry }
    }
}

struct PreferenceCatalogue {
    piano: String,
    kitten: String,
    cat_guitar: String,
    curry: String,
}

impl PreferenceCatalogue {
    /// For a user drawn to the piano cat: the other cat and music titles come first.
    fn assert_cat_ones_first(&self, picks: &[String]) {
        let mut top: Vec<_> = picks[..2].to_vec();
        top.sort();
        let mut cat_ones = vec![self.kitten.clone(), self.cat_guitar.clone()];
        cat_ones.sort();
        assert_eq!(top, cat_ones, "the other cat and music titles first: {picks:?}");
    }
}

async fn the_same_event_delivered_twice_is_applied_once(backend: Backend) {
    let app = app(backend).await;
    let c = catalogue(&app);
    let owner = id();
    let older = c.publish(&owner, "Sourdough bread at home", 10).await;
    let published = Catalogue::video_event("video.published", &id(), &owner, "Baguettes step by step", "PUBLIC", 5);
    let newer = published.subject.clone();
    c.send(&published).await;
    c.send(&published).await;
    // One like on the newer video, delivered twice; two distinct likes on the older one.
    let like = Catalogue::like_event("video.liked", &id(), &newer);
    c.send(&like).await;
    c.send(&like).await;
    c.like(&id(), &older).await;
    c.like(&id(), &older).await;
    // Events are consumed in order: once a later video is indexed, the likes are applied.
    let marker = c.publish(&owner, "Pretzels", 60 * 24 * 365).await;
    let now = c.until("marker indexed", |now| now.contains(&marker)).await;
    // Counted twice, the newer video would tie and win on recency.
    assert_eq!(now, vec![older.clone(), newer.clone(), marker], "one row per video, one like per event");
}

/// A video's related list is the same for every viewer: its vector search runs once and is
/// reused (for 5 s at most), so the next viewer's `related` costs no statement.
async fn related_lists_are_searched_once_for_every_viewer(backend: Backend) {
    let app = app(backend).await;
    let c = catalogue(&app);
    let (a, b) = (id(), id());
    let cat = c.publish(&a, "cat playing the piano", 3).await;
    let kitten = c.publish(&b, "kitten plays a keyboard", 2).await;
    c.until_indexed(&[&cat, &kitten]).await;
    assert_eq!(c.related(&cat, 10).await, vec![kitten.clone()]);
    // The least of three: the consumers poll in the background.
    let mut costs = Vec::new();
    for _ in 0..3 {
        let before = app.db_queries("recommender").await;
        assert_eq!(c.related(&cat, 10).await, vec![kitten.clone()]);
        costs.push(app.db_queries("recommender").await - before);
    }
    assert_eq!(costs.iter().min(), Some(&0), "the search ran again: {costs:?}");
}

async fn deleted_videos_leave_the_index(backend: Backend) {
    let app = app(backend).await;
    let c = catalogue(&app);
    let (a, b) = (id(), id());
    let cat = c.publish(&a, "cat playing the piano", 3).await;
    let kitten = c.publish(&b, "kitten plays a keyboard", 2).await;
    let bread = c.publish(&b, "baking bread", 1).await;
    c.until_indexed(&[&cat, &kitten, &bread]).await;
    assert_eq!(c.related(&cat, 10).await[0], kitten);

    c.send(&Catalogue::video_event("video.deleted", &kitten, &b, "kitten plays a keyboard", "PUBLIC", 0)).await;
    c.until("deleted", |now| !now.contains(&kitten)).await;
    assert_eq!(c.related(&cat, 10).await, vec![bread.clone()]);
    assert!(c.related(&kitten, 10).await.is_empty(), "a deleted video has no related videos");
}

async fn a_video_made_private_leaves_the_index_and_returns_when_public_again(backend: Backend) {
    let app = app(backend).await;
    let c = catalogue(&app);
    let owner = id();
    let video = c.publish(&owner, "Mountain biking in the Alps", 10).await;
    let other = c.publish(&id(), "Road cycling tips", 9).await;
    c.until_indexed(&[&video, &other]).await;

    c.send(&Catalogue::video_event("video.updated", &video, &owner, "Mountain biking in the Alps", "PRIVATE", 5)).await;
    c.until("private", |now| !now.contains(&video)).await;
    // An older event arriving late (a redelivery) does not bring it back.
    c.send(&Catalogue::video_event("video.updated", &video, &owner, "Mountain biking in the Alps", "PUBLIC", 8)).await;
    c.send(&Catalogue::video_event("video.updated", &other, &owner, "Road cycling tips", "UNLISTED", 1)).await;
    c.until("unlisted", |now| !now.contains(&other)).await;
    assert!(!c.indexed().await.contains(&video), "stale event ignored");

    c.send(&Catalogue::video_event("video.updated", &video, &owner, "Mountain biking in the Alps", "PUBLIC", 0)).await;
    c.until("public again", |now| now.contains(&video)).await;
}

async fn new_and_anonymous_callers_get_recent_popular_videos(backend: Backend) {
    let app = app(backend).await;
    let c = catalogue(&app);
    let newcomer = id();
    let old_hit = c.publish(&id(), "Classic guitar solo", 60 * 24 * 90).await;
    let quiet = c.publish(&id(), "Quiet morning", 3).await;
    let popular = c.publish(&id(), "Funny dogs compilation", 5).await;
    let newest = c.publish(&id(), "Street food tour", 1).await;
    let own = c.publish(&newcomer, "My first video", 2).await;
    for _ in 0..5 {
        c.like(&id(), &old_hit).await;
    }
    c.like(&id(), &popular).await;
    c.like(&id(), &popular).await;
    c.like(&id(), &own).await;
    let expected = vec![popular.clone(), own.clone(), newest.clone(), quiet.clone(), old_hit.clone()];
    c.until("popular first", |now| now == expected).await;
    // Recent videos by likes, then recency; older ones after them, however liked.
    assert_eq!(c.for_me(None, 2).await, vec![popular.clone(), own.clone()]);
    assert_eq!(
        c.for_me(Some(&newcomer), 20).await,
        vec![popular.clone(), newest.clone(), quiet.clone(), old_hit.clone()],
        "a new user: the same, without their own videos"
    );
}

async fn related_leaves_out_the_video_and_its_owners_others_while_enough_remain(backend: Backend) {
    let app = app(backend).await;
    let c = catalogue(&app);
    let (owner, other) = (id(), id());
    let piano = c.publish(&owner, "cat playing the piano", 6).await;
    let same_owner = c.publish(&owner, "my cat plays the piano again", 5).await;
    let kitten = c.publish(&other, "kitten plays a keyboard", 4).await;
    let tyre = c.publish(&other, "how to change a car tyre", 3).await;
    let stocks = c.publish(&id(), "stock market news today", 2).await;
    c.until_indexed(&[&piano, &same_owner, &kitten, &tyre, &stocks]).await;

    let two = c.related(&piano, 2).await;
    assert_eq!(two[0], kitten);
    assert!(!two.contains(&same_owner) && !two.contains(&piano), "{two:?}");
    // Only when the others run out do the owner's other videos come, nearest first.
    let all = c.related(&piano, 10).await;
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(all[3], same_owner);
    assert!(!all.contains(&piano));
    assert!(c.related(&id(), 10).await.is_empty(), "unknown video");
}

async fn recommended_for_me_follows_likes_without_own_or_liked_videos(backend: Backend) {
    let app = app(backend).await;
    let c = catalogue(&app);
    let me = id();
    let catalogue = c.preference_catalogue(&id(), &id()).await;
    let (liked, curry) = (&catalogue.piano, &catalogue.curry);
    let mine = c.publish(&me, "cats and pianos, my own take", 5).await;
    c.until_indexed(&[&mine]).await;
    assert_eq!(c.for_me(Some(&me), 1).await, vec![curry.clone()], "cold start: the popular one");

    c.like(&me, liked).await;
    let ok =
        eventually(Duration::from_secs(15), || async { c.for_me(Some(&me), 2).await.first() != Some(curry) }).await;
    assert!(ok, "a preference after the first like");
    let picks = c.for_me(Some(&me), 10).await;
    assert!(!picks.contains(liked) && !picks.contains(&mine), "{picks:?}");
    assert_eq!(picks.len(), 4, "the rest, nearest first: {picks:?}");
    catalogue.assert_cat_ones_first(&picks);

    c.send(&Catalogue::like_event("video.unliked", &me, liked)).await;
    let ok =
        eventually(Duration::from_secs(15), || async { c.for_me(Some(&me), 1).await == vec![curry.clone()] }).await;
    assert!(ok, "unliking the only like makes a new user again");
}

/// Likes and unlikes may arrive out of order (each media replica relays its own share of the
/// outbox: after a broker outage two relays drain the backlog at once). The index ends with
/// each user's last action and the video's like count agrees with it.
async fn reordered_likes_and_unlikes_end_as_each_users_last_action(backend: Backend) {
    use flick_platform::db::sea_orm::ConnectionTrait as _;
    use flick_recommender::store;
    let app = app(backend).await;
    let c = catalogue(&app);
    let video = c.publish(&id(), "cat playing the piano", 3).await;
    c.until_indexed(&[&video]).await;
    let db = flick_platform::connect_db(&app.shared.config, flick_recommender::NAME).await.unwrap();
    let counts = || async {
        let sql = "SELECT (SELECT COUNT(*) FROM user_likes WHERE video_id = ?) AS likes, \
                   (SELECT like_count FROM video_embeddings WHERE video_id = ?) AS like_count";
        let row =
            db.query_one_raw(flick_platform::db::stmt(&db, sql, vec![video.clone().into(), video.clone().into()]));
        let row = row.await.unwrap().unwrap();
        (row.try_get::<i64>("", "likes").unwrap(), row.try_get::<i64>("", "like_count").unwrap())
    };
    let (ann, bob) = (id(), id());
    let t = now_ms();
    // Ann liked at t and unliked at t+1; the unlike arrives first.
    assert!(!store::unlike(&db, &ann, &video, t + 1).await.unwrap(), "nothing to remove yet");
    assert!(!store::like(&db, &ann, &video, t).await.unwrap(), "a like older than the unlike stays undone");
    assert_eq!(counts().await, (0, 0));
    // Bob liked at t, unliked at t+1 and liked again at t+2; they arrive newest first.
    assert!(store::like(&db, &bob, &video, t + 2).await.unwrap());
    assert!(!store::unlike(&db, &bob, &video, t + 1).await.unwrap(), "an unlike older than the like is stale");
    assert!(!store::like(&db, &bob, &video, t).await.unwrap());
    assert_eq!(counts().await, (1, 1));
    // Carl liked at t, unliked at t+1, liked at t+2; both likes come before the unlike.
    let carl = id();
    assert!(store::like(&db, &carl, &video, t).await.unwrap());
    assert!(!store::like(&db, &carl, &video, t + 2).await.unwrap(), "one like per user");
    assert!(!store::unlike(&db, &carl, &video, t + 1).await.unwrap(), "the newer like stands");
    assert_eq!(counts().await, (2, 2));
    assert!(store::unlike(&db, &carl, &video, t + 3).await.unwrap(), "a newer unlike takes it");
    assert_eq!(counts().await, (1, 1));
    // Ann likes again after her unlike, then unlikes, in order.
    assert!(store::like(&db, &ann, &video, t + 3).await.unwrap(), "a newer like replaces the tombstone");
    assert_eq!(counts().await, (2, 2));
    assert!(store::unlike(&db, &ann, &video, t + 4).await.unwrap());
    assert!(!store::like(&db, &ann, &video, t + 3).await.unwrap(), "a late copy of the older like");
    assert_eq!(counts().await, (1, 1));
}

/// Most viewers never like anything: what a signed-in user watches shapes their
/// recommendations too, and what they watched is not recommended back to them.
async fn recommended_for_me_follows_what_a_user_watched(backend: Backend) {
    let app = app(backend).await;
    let c = catalogue(&app);
    let (me, owner) = (id(), id());
    let catalogue = c.preference_catalogue(&owner, &id()).await;
    let (watched, curry) = (&catalogue.piano, &catalogue.curry);

    // Anonymous viewers feed nobody's preference.
    c.send(&Catalogue::view_event("addr:0123456789abcdef0123456789abcdef", watched, 2)).await;
    let view = Catalogue::view_event(&format!("user:{me}"), watched, 1);
    c.send(&view).await;
    c.send(&view).await; // redelivered: applied once
    let ok =
        eventually(Duration::from_secs(15), || async { c.for_me(Some(&me), 1).await.first() != Some(curry) }).await;
    assert!(ok, "a preference after the first view");
    let picks = c.for_me(Some(&me), 10).await;
    assert!(!picks.contains(watched), "what I watched is not recommended back: {picks:?}");
    assert_eq!(picks.len(), 4, "{picks:?}");
    catalogue.assert_cat_ones_first(&picks);

    // Deleting the watched video forgets the view: the user is new again.
    c.send(&Catalogue::video_event("video.deleted", watched, &owner, "", "PUBLIC", 0)).await;
    let ok = eventually(Duration::from_secs(15), || async {
        let now = c.for_me(Some(&me), 10).await;
        now.first() == Some(curry) && !now.contains(watched)
    })
    .await;
    assert!(ok, "with the only watched video gone the user is new again: {:?}", c.for_me(Some(&me), 10).await);
}

async fn related_ranks_cat_and_music_titles_above_unrelated_ones(backend: Backend) {
    let app = app(backend).await;
    let c = catalogue(&app);
    let query = c.publish(&id(), "cat playing the piano", 20).await;
    let mut related = Vec::new();
    for title in [
        "kitten plays a tiny keyboard",
        "my cat sings along to the guitar",
        "piano lesson for beginners",
        "cats meowing to music",
    ] {
        related.push(c.publish(&id(), title, 10).await);
    }
    let mut unrelated = Vec::new();
    for title in [
        "how to change a car tyre",
        "stock market news today",
        "chicken curry recipe",
        "football highlights of the week",
        "fixing a leaking kitchen tap",
    ] {
        unrelated.push(c.publish(&id(), title, 10).await);
    }
    c.until("catalogue indexed", |now| now.len() == 10).await;
    let ranked = c.related(&query, 9).await;
    assert_eq!(ranked.len(), 9);
    let mut top: Vec<String> = ranked[..4].to_vec();
    top.sort();
    related.sort();
    assert_eq!(top, related, "cat and music titles first: {ranked:?}");
}

async fn grpc_serves_related_for_user_and_embed(backend: Backend) {
    let app = app(backend).await;
    let c = catalogue(&app);
    let (a, b) =
        (c.publish(&id(), "cat playing the piano", 2).await, c.publish(&id(), "kitten plays a keyboard", 1).await);
    c.until_indexed(&[&a, &b]).await;
    let mut client = pb::recommender_service_client::RecommenderServiceClient::connect(app.url("")).await.unwrap();
    let related = client.related(pb::RelatedRequest { video_id: a.clone(), first: 0 }).await.unwrap().into_inner();
    assert_eq!(related.ids, vec![b.clone()]);
    let for_user = client.for_user(pb::ForUserRequest { user_id: String::new(), first: 1 }).await.unwrap().into_inner();
    assert_eq!(for_user.ids, vec![b.clone()], "anonymous: newest first among equals");
    let bad = client.for_user(pb::ForUserRequest { user_id: "nobody".into(), first: 1 }).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let too_many = client.related(pb::RelatedRequest { video_id: a.clone(), first: 101 }).await.unwrap_err();
    assert_eq!(too_many.code(), tonic::Code::InvalidArgument);

    let texts = vec!["cat playing the piano".to_string(), "stock market news".to_string()];
    let embedded = client.embed(pb::EmbedRequest { texts }).await.unwrap().into_inner().embeddings;
    assert_eq!(embedded.len(), 2);
    for e in &embedded {
        assert_eq!(e.values.len(), 384);
        assert!((e.values.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
    }
    let over = client.embed(pb::EmbedRequest { texts: vec!["x".into(); 65] }).await.unwrap_err();
    assert_eq!(over.code(), tonic::Code::InvalidArgument);
}

async fn graphql_limits_first_and_answers_anonymous_callers(backend: Backend) {
    let app = app(backend).await;
    let c = catalogue(&app);
    let res: Value = c
        .http
        .post(app.url("/graphql"))
        .json(&json!({ "query": "{ recommendedForMe(first: 101) { id } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{res}");
    assert_eq!(c.for_me(None, 20).await, Vec::<String>::new(), "empty catalogue");
    let ready: Value = reqwest::get(app.url("/readyz")).await.unwrap().json().await.unwrap();
    assert_eq!(ready["checks"]["model"], "ok", "{ready}");
}

async fn deleted_users_take_their_videos_and_likes_with_them(backend: Backend) {
    let app = app(backend).await;
    let c = catalogue(&app);
    let (gone, stays) = (id(), id());
    let theirs = c.publish(&gone, "cat playing the piano", 3).await;
    let liked = c.publish(&stays, "kitten plays a keyboard", 2).await;
    let other = c.publish(&stays, "chicken curry recipe", 1).await;
    c.like(&gone, &liked).await;
    c.until("liked first", |now| now.len() == 3 && now[0] == liked && now.contains(&theirs)).await;
    let payload = events::UserDeleted { user_id: gone.clone() }.encode_to_vec();
    c.send(&envelope("user.deleted", &gone, "accounts", payload)).await;
    c.until("user forgotten", |now| now == [other.clone(), liked.clone()]).await;
}

/// A sample of the process's metrics (`name` exactly, any labels). The recorder is
/// process-wide: these tests rely on nextest running each test in its own process (how the
/// workspace runs its tests), so what they read is their own test's.
fn metric(name: &str) -> f64 {
    let text = flick_kit::telemetry::metrics_handle().render();
    text.lines()
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// 64 texts queued at once are embedded `batch_size` (32) at a time: exactly two forward
/// passes. The model's files appear only once all 64 are queued (until then embedding fails
/// and the texts wait), so how the passes fall does not depend on timing.
async fn a_burst_of_publications_is_embedded_in_batches(backend: Backend) {
    require_model();
    let mut infra = TestInfra::new(backend).await;
    let models = tempfile::tempdir().unwrap();
    infra.config.recommender_mut().model_dir = Some(models.path().to_path_buf());
    infra.config.recommender_mut().batch_size = 32;
    let app = app_with(infra).await;
    let c = catalogue(&app);
    for i in 0..64 {
        let e = Catalogue::video_event("video.published", &id(), &id(), &format!("video number {i}"), "PUBLIC", 1);
        c.send(&e).await;
    }
    use flick_platform::db::sea_orm::{ConnectionTrait, Statement};
    let db = flick_platform::connect_db(&app.shared.config, "recommender").await.unwrap();
    let applied = Statement::from_string(db.get_database_backend(), "SELECT COUNT(*) AS n FROM inbox");
    assert!(
        eventually(Duration::from_secs(30), || async {
            let row = db.query_one_raw(applied.clone()).await.unwrap().unwrap();
            row.try_get::<i64>("", "n").unwrap() == 64
        })
        .await,
        "all 64 events applied (their texts queued)"
    );
    assert_eq!(metric("recommender_texts_embedded_total"), 0.0, "nothing embedded without the model");
    for file in std::fs::read_dir(flick_recommender::model::default_dir()).unwrap() {
        let file = file.unwrap();
        std::os::unix::fs::symlink(file.path(), models.path().join(file.file_name())).unwrap();
    }
    // The embedder retries a failed pass with a doubling backoff, so allow for a few failures.
    let indexed = eventually(Duration::from_secs(90), || async { c.indexed().await.len() == 64 }).await;
    assert!(indexed, "all 64 indexed once the model is in place");
    let (texts, passes) = (metric("recommender_texts_embedded_total"), metric("recommender_embed_batch_seconds_count"));
    assert_eq!(texts, 64.0);
    assert_eq!(passes, 2.0, "64 texts in batches of 32");
}

/// `flick recommender backfill`: everything media lists (over gRPC, in pages) is indexed.
async fn backfill_indexes_every_public_video_media_lists(backend: Backend) {
    require_model();
    let media = TestApp::start(TestInfra::new(backend).await, |s| async move { flick_media::build(&s).await }).await;
    let http = reqwest::Client::new();
    let owner = id();
    let mut public = Vec::new();
    for (title, visibility) in [
        ("cat playing the piano", "PUBLIC"),
        ("kitten plays a keyboard", "PUBLIC"),
        ("secret cat", "PRIVATE"),
        ("chicken curry", "PUBLIC"),
    ] {
        let res: Value = http
            .post(media.url("/graphql"))
            .header("x-user-id", &owner)
            .json(&json!({ "query": "mutation($i: CreateVideoInput!) { createVideo(input: $i) { video { id } } }", "variables": { "i": { "title": title, "visibility": visibility, "tags": ["cats"] } } }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let video = res["data"]["createVideo"]["video"]["id"].as_str().unwrap_or_else(|| panic!("{res}")).to_string();
        media.shared.bus.publish(&envelope("upload.completed", &video, "transcoder", vec![])).await.unwrap();
        let done = events::TranscodeCompleted { video_id: video.clone(), duration_seconds: 3.0, ..Default::default() };
        media
            .shared
            .bus
            .publish(&envelope("transcode.completed", &video, "transcoder", done.encode_to_vec()))
            .await
            .unwrap();
        if visibility == "PUBLIC" {
            public.push(video);
        }
    }
    let feed = "{ feed(first: 10) { edges { node { id } } } }";
    let ready = eventually(Duration::from_secs(15), || async {
        let res: Value = http
            .post(media.url("/graphql"))
            .json(&json!({ "query": feed }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        res["data"]["feed"]["edges"].as_array().is_some_and(|e| e.len() == 3)
    })
    .await;
    assert!(ready, "media published the public videos");

    let infra = TestInfra::new(backend).await;
    let db = flick_platform::connect_db(&infra.config, "recommender").await.unwrap();
    flick_platform::db::migrate(&db, flick_recommender::MIGRATIONS).await.unwrap();
    let recommender = flick_recommender::recommender(db, &infra.config.recommender());
    let mut pages = 0;
    let done = flick_recommender::backfill(&recommender, &media.url(""), 2, |_| pages += 1).await.unwrap();
    assert_eq!((done.listed, done.indexed, pages), (3, 3, 2));
    let mut indexed = recommender.for_user(None, Some(100)).await.unwrap();
    indexed.sort();
    public.sort();
    assert_eq!(indexed, public);
    assert_eq!(recommender.related(&public[0], Some(1)).await.unwrap().len(), 1);
}

/// Media serving on `backend`, with an owner who creates videos there.
struct MediaSide {
    media: TestApp,
    http: reqwest::Client,
    owner: String,
}

impl MediaSide {
    async fn start(backend: Backend) -> Self {
        let media =
            TestApp::start(TestInfra::new(backend).await, |s| async move { flick_media::build(&s).await }).await;
        Self { media, http: reqwest::Client::new(), owner: id() }
    }

    async fn gql(&self, user: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req =
            self.http.post(self.media.url("/graphql")).json(&json!({ "query": query, "variables": variables }));
        if let Some(u) = user {
            req = req.header("x-user-id", u);
        }
        let res: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(res.get("errors").is_none(), "{res}");
        res["data"].clone()
    }

    /// Anyone sees the video (public and ready).
    async fn visible(&self, video: &str) -> bool {
        let data = self.gql(None, "query($id: ID!) { video(id: $id) { id } }", json!({ "id": video })).await;
        !data["video"].is_null()
    }

    /// A public video of `owner`, uploaded and transcoded (media's events, on media's bus).
    async fn ready_video(&self, title: &str) -> String {
        let create = "mutation($i: CreateVideoInput!) { createVideo(input: $i) { video { id } } }";
        let data =
            self.gql(Some(&self.owner), create, json!({ "i": { "title": title, "visibility": "PUBLIC" } })).await;
        let video = data["createVideo"]["video"]["id"].as_str().unwrap().to_string();
        let bus = &self.media.shared.bus;
        let done = events::TranscodeCompleted { video_id: video.clone(), duration_seconds: 3.0, ..Default::default() };
        // Events sent before media's consumer has bound its queue are dropped by the broker:
        // send them again (media applies each once) until the video shows.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            bus.publish(&envelope("upload.completed", &video, "transcoder", vec![])).await.unwrap();
            bus.publish(&envelope("transcode.completed", &video, "transcoder", done.encode_to_vec())).await.unwrap();
            if eventually(Duration::from_secs(2), || self.visible(&video)).await {
                return video;
            }
            assert!(tokio::time::Instant::now() < deadline, "media never made {video} public and ready");
        }
    }
}

/// The recommender beside media but on a bus of its own: media's events never reach it, the
/// test hands it only the publications (so a later hiding is an event it has not applied).
async fn recommender_beside(backend: Backend, media_url: &str) -> TestApp {
    let mut infra = TestInfra::new(backend).await;
    infra.config.endpoints.media = Some(media_url.to_string());
    app_with(infra).await
}

/// Issue 12 item 11: media hid a video (made private, or deleted) and the recommender has not
/// applied the event yet. `related` and `recommendedForMe` leave it out, full pages, no errors:
/// a hidden id in the answer makes the router's `_entities` join fail the whole list.
async fn lists_leave_out_videos_media_hid_before_the_recommender_heard_of_it(backend: Backend) {
    let m = MediaSide::start(backend).await;
    let titles = [
        "cat playing the piano",
        "kitten plays a keyboard",
        "a cat sings along to a guitar",
        "piano lesson for beginners",
        "cats meowing to music",
        "stock market news today",
    ];
    let mut videos = Vec::new();
    // Each one public and ready in media before the next (`ready_video` waits for it).
    for title in titles {
        videos.push(m.ready_video(title).await);
    }

    let app = recommender_beside(backend, &m.media.url("")).await;
    let c = catalogue(&app);
    // Only the query video belongs to someone else, so related ranks all five others.
    let query_owner = id();
    for (i, (video, title)) in videos.iter().zip(titles).enumerate() {
        let owner = if i == 0 { query_owner.as_str() } else { m.owner.as_str() };
        c.send(&Catalogue::video_event("video.published", video, owner, title, "PUBLIC", 10 - i as i64)).await;
    }
    c.until_indexed(&videos.iter().collect::<Vec<_>>()).await;
    let (query, private, deleted) = (&videos[0], &videos[1], &videos[2]);
    let before = c.related(query, 5).await;
    assert!(before.contains(private) && before.contains(deleted), "{before:?}");

    // Hidden in media; the recommender's index still holds both (their events are withheld).
    let hide = "mutation($id: ID!) { updateVideo(id: $id, input: { visibility: PRIVATE }) { id } }";
    m.gql(Some(&m.owner), hide, json!({ "id": private })).await;
    m.gql(Some(&m.owner), "mutation($id: ID!) { deleteVideo(id: $id) }", json!({ "id": deleted })).await;
    let hidden =
        eventually(Duration::from_secs(15), || async { !m.visible(private).await && !m.visible(deleted).await }).await;
    assert!(hidden, "media hides both");
    let db = flick_platform::connect_db(&app.shared.config, "recommender").await.unwrap();
    let index_alone = flick_recommender::recommender(db, &app.shared.config.recommender());
    let indexed = index_alone.for_user(None, Some(100)).await.unwrap();
    assert!(indexed.contains(private) && indexed.contains(deleted), "still indexed: {indexed:?}");

    let clean = |list: &[String], n: usize| list.len() == n && !list.contains(private) && !list.contains(deleted);
    // related(first: 3): three of the other three, as the page stays full.
    let ok = eventually(Duration::from_secs(15), || async { clean(&c.related(query, 3).await, 3) }).await;
    assert!(ok, "related without the hidden videos: {:?}", c.related(query, 3).await);
    let ok = eventually(Duration::from_secs(15), || async { clean(&c.for_me(None, 4).await, 4) }).await;
    assert!(ok, "anonymous recommendedForMe without them: {:?}", c.for_me(None, 4).await);
    let me = id();
    let ok = eventually(Duration::from_secs(15), || async { clean(&c.for_me(Some(&me), 4).await, 4) }).await;
    assert!(ok, "a new user's recommendedForMe without them: {:?}", c.for_me(Some(&me), 4).await);
    let mut client = pb::recommender_service_client::RecommenderServiceClient::connect(app.url("")).await.unwrap();
    let grpc = client.related(pb::RelatedRequest { video_id: query.clone(), first: 10 }).await.unwrap().into_inner();
    assert!(clean(&grpc.ids, 3), "gRPC Related without them: {:?}", grpc.ids);
}

/// Media cannot be asked: lists come from the index alone (what the router then joins), not
/// an error.
async fn lists_come_from_the_index_when_media_cannot_be_asked(backend: Backend) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = recommender_beside(backend, &url).await;
    let c = catalogue(&app);
    let owner = id();
    let piano = c.publish(&owner, "cat playing the piano", 3).await;
    let kitten = c.publish(&id(), "kitten plays a keyboard", 2).await;
    c.until_indexed(&[&piano, &kitten]).await;
    assert_eq!(c.related(&piano, 10).await, vec![kitten.clone()]);
    assert_eq!(c.for_me(None, 1).await, vec![kitten.clone()]);
}

flick_testkit::on_both_backends!(
    related_lists_are_searched_once_for_every_viewer,
    the_same_event_delivered_twice_is_applied_once,
    deleted_videos_leave_the_index,
    a_video_made_private_leaves_the_index_and_returns_when_public_again,
    new_and_anonymous_callers_get_recent_popular_videos,
    related_leaves_out_the_video_and_its_owners_others_while_enough_remain,
    recommended_for_me_follows_likes_without_own_or_liked_videos,
    reordered_likes_and_unlikes_end_as_each_users_last_action,
    recommended_for_me_follows_what_a_user_watched,
    related_ranks_cat_and_music_titles_above_unrelated_ones,
    grpc_serves_related_for_user_and_embed,
    graphql_limits_first_and_answers_anonymous_callers,
    deleted_users_take_their_videos_and_likes_with_them,
    backfill_indexes_every_public_video_media_lists,
    a_burst_of_publications_is_embedded_in_batches,
    lists_leave_out_videos_media_hid_before_the_recommender_heard_of_it,
    lists_come_from_the_index_when_media_cannot_be_asked,
);
