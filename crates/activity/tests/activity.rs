//! The activity service on both backends: SQLite documents + in-process bus, and MongoDB
//! (secantusdb here) + PostgreSQL outbox + Redis + RabbitMQ. Videos become known to it through
//! media's and the transcoder's events, as in production.

use flick_platform::bus::{Delivery, QueueSpec, envelope, handler};
use flick_proto::events::v1 as events;
use flick_testkit::app::{Backend, TestApp, TestInfra};
use flick_testkit::{eventually, on_both_backends};
use prost::Message as _;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

on_both_backends!(
    a_view_counts_after_thirty_seconds_once_per_viewer_and_window,
    short_videos_count_at_half_their_length,
    retried_and_late_heartbeats_change_nothing,
    watch_time_is_bounded_by_the_clock_and_bad_reports_are_refused,
    history_resumes_where_the_viewer_stopped,
    history_can_be_removed_cleared_and_paused,
    deleted_users_and_videos_leave_no_activity,
    rest_heartbeat_batches_answer_item_by_item,
    creators_see_their_audience_and_nobody_else_does,
    playlists_are_their_owners_to_change_and_list_what_viewers_may_see,
    watch_later_is_each_users_own_and_deletions_empty_playlists,
    grpc_records_playback_and_answers_progress_and_history,
    one_sessions_heartbeats_through_two_replicas_apply_in_order_once_each,
    videos_no_event_told_of_are_asked_of_media,
);

/// The service with its default limits (`strict`), or with room for tests that do not measure
/// them: a session's first heartbeat may report its 30 s at once, and a test may send its
/// heartbeats as fast as it likes.
async fn start(backend: Backend, strict: bool) -> TestApp {
    use flick_activity::config::ActivityConfigExt as _;
    let mut infra = TestInfra::new(backend).await.with_documents().await;
    if !strict {
        let cfg = infra.config.activity_mut();
        cfg.heartbeat_slack_seconds = 600.0;
        cfg.heartbeats_per_second = 1000;
    }
    infra.config.activity_mut().max_playlist_items = 6;
    TestApp::start(infra, |s| async move { flick_activity::build(&s).await }).await
}

async fn app(backend: Backend) -> TestApp {
    start(backend, false).await
}

fn user() -> String {
    Uuid::now_v7().to_string()
}

fn session() -> String {
    Uuid::new_v4().simple().to_string()
}

struct Client<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
}

impl<'a> Client<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self { app, http: reqwest::Client::new() }
    }

    async fn gql(&self, user: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self.http.post(self.app.url("/graphql")).json(&json!({ "query": query, "variables": variables }));
        if let Some(u) = user {
            req = req.header("x-user-id", u);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    async fn ok(&self, user: Option<&str>, query: &str, variables: Value) -> Value {
        let res = self.gql(user, query, variables).await;
        assert!(res.get("errors").is_none(), "{res}");
        res["data"].clone()
    }

    /// The error code and the field it names.
    async fn refused(&self, user: Option<&str>, query: &str, variables: Value) -> (String, Option<String>) {
        let res = self.gql(user, query, variables).await;
        let e = &res["errors"][0]["extensions"];
        let code = e["code"].as_str().unwrap_or_else(|| panic!("expected an error: {res}")).to_string();
        (code, e["fields"].as_object().and_then(|f| f.keys().next().cloned()))
    }

    /// One heartbeat through GraphQL; the raw response.
    async fn beat(&self, user: Option<&str>, video: &str, session: &str, seq: i64, pos: f64, watched: f64) -> Value {
        let q = "mutation($i: PlaybackInput!) { recordPlayback(input: $i) { applied viewCounted positionSeconds watchedSeconds } }";
        let i = json!({ "videoId": video, "sessionId": session, "sequence": seq, "positionSeconds": pos,
            "watchedSeconds": watched, "rendition": "720p" });
        self.gql(user, q, json!({ "i": i })).await
    }

    async fn beat_ok(&self, user: Option<&str>, video: &str, session: &str, seq: i64, pos: f64, watched: f64) -> Value {
        let res = self.beat(user, video, session, seq, pos, watched).await;
        assert!(res.get("errors").is_none(), "{res}");
        res["data"]["recordPlayback"].clone()
    }

    /// Tells the service of a video (media's event, then the transcoder's duration) and waits
    /// until it plays.
    async fn video(&self, owner: &str, visibility: &str, duration: f64) -> String {
        let id = Uuid::now_v7().to_string();
        let changed = events::VideoChanged {
            video_id: id.clone(),
            owner_id: owner.into(),
            visibility: visibility.into(),
            status: "READY".into(),
            version: 1,
            ..Default::default()
        };
        let bus = &self.app.shared.bus;
        bus.publish(&envelope("video.created", &id, "media", changed.encode_to_vec())).await.unwrap();
        let done =
            events::TranscodeCompleted { video_id: id.clone(), duration_seconds: duration, ..Default::default() };
        bus.publish(&envelope("transcode.completed", &id, "transcoder", done.encode_to_vec())).await.unwrap();
        // Known once a report plays; its duration known once a position past it is clamped.
        // (The probes are the owner's, each a fresh session.)
        let known = eventually(Duration::from_secs(10), || async {
            let res = self.beat(Some(owner), &id, &session(), 1, 86_000.0, 0.0).await;
            res["data"]["recordPlayback"]["positionSeconds"].as_f64() == Some(duration)
        })
        .await;
        assert!(known, "the video's events reached the activity service");
        id
    }

    async fn publish(&self, event_type: &str, subject: &str, payload: Vec<u8>) {
        self.app.shared.bus.publish(&envelope(event_type, subject, "test", payload)).await.unwrap();
    }
}

/// Collects the `video.viewed` events the service sends.
async fn views(app: &TestApp) -> Arc<Mutex<Vec<events::VideoViewed>>> {
    let seen: Arc<Mutex<Vec<events::VideoViewed>>> = Arc::default();
    let record = seen.clone();
    let queue = flick_testkit::unique("views");
    app.shared
        .bus
        .consume(
            QueueSpec::events(&queue, &["video.viewed"]),
            handler(move |d: Delivery| {
                let record = record.clone();
                async move {
                    record.lock().unwrap().push(events::VideoViewed::decode(d.envelope.payload.as_slice()).unwrap());
                    Ok(())
                }
            }),
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap();
    seen
}

async fn a_view_counts_after_thirty_seconds_once_per_viewer_and_window(backend: Backend) {
    let app = app(backend).await;
    let c = Client::new(&app);
    let seen = views(&app).await;
    let video = c.video(&user(), "PUBLIC", 600.0).await;
    let fan = user();
    let s1 = session();
    let first = c.beat_ok(Some(&fan), &video, &s1, 1, 10.0, 10.0).await;
    assert_eq!((first["applied"].as_bool(), first["viewCounted"].as_bool()), (Some(true), Some(false)));
    let second = c.beat_ok(Some(&fan), &video, &s1, 2, 29.0, 19.0).await;
    assert_eq!(second["viewCounted"], false, "29 s is not a view: {second}");
    let third = c.beat_ok(Some(&fan), &video, &s1, 3, 31.0, 2.0).await;
    assert_eq!(third["viewCounted"], true, "31 s is: {third}");
    assert_eq!(third["watchedSeconds"], 31.0);
    let fourth = c.beat_ok(Some(&fan), &video, &s1, 4, 60.0, 29.0).await;
    assert_eq!(fourth["viewCounted"], false, "counted once per session");
    let again = c.beat_ok(Some(&fan), &video, &session(), 1, 40.0, 40.0).await;
    assert_eq!(again["viewCounted"], false, "a second session within the window is the same viewer: {again}");
    // Anonymous viewers are viewers too, one per session without an address.
    let anonymous = c.beat_ok(None, &video, &session(), 1, 35.0, 35.0).await;
    assert_eq!(anonymous["viewCounted"], true);
    // A last, distinct viewer: views go out through the outbox in order, so once its view has
    // arrived, every view counted before it has too.
    let last = user();
    assert_eq!(c.beat_ok(Some(&last), &video, &session(), 1, 30.0, 30.0).await["viewCounted"], true);
    let last_viewer = format!("user:{last}");
    assert!(
        eventually(Duration::from_secs(10), || async { seen.lock().unwrap().iter().any(|v| v.viewer == last_viewer) })
            .await
    );
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].viewer, format!("user:{fan}"));
    assert!(got[1].viewer.starts_with("session:"), "{got:?}");
    assert!(got.iter().all(|v| v.video_id == video && v.watched_seconds >= 30.0), "{got:?}");
}

async fn short_videos_count_at_half_their_length(backend: Backend) {
    let app = app(backend).await;
    let c = Client::new(&app);
    let clip = c.video(&user(), "UNLISTED", 20.0).await;
    let s = session();
    let viewer = user();
    assert_eq!(c.beat_ok(Some(&viewer), &clip, &s, 1, 9.0, 9.0).await["viewCounted"], false);
    assert_eq!(c.beat_ok(Some(&viewer), &clip, &s, 2, 10.0, 1.0).await["viewCounted"], true, "half of 20 s");
    let long = c.video(&user(), "PUBLIC", 119.0).await;
    assert_eq!(c.beat_ok(Some(&viewer), &long, &session(), 1, 29.0, 29.0).await["viewCounted"], false, "not short");
}

async fn retried_and_late_heartbeats_change_nothing(backend: Backend) {
    let app = app(backend).await;
    let c = Client::new(&app);
    let video = c.video(&user(), "PUBLIC", 600.0).await;
    let (fan, s) = (user(), session());
    c.beat_ok(Some(&fan), &video, &s, 1, 10.0, 10.0).await;
    let two = c.beat_ok(Some(&fan), &video, &s, 2, 20.0, 10.0).await;
    assert_eq!((two["applied"].as_bool(), two["watchedSeconds"].as_f64()), (Some(true), Some(20.0)));
    let retried = c.beat_ok(Some(&fan), &video, &s, 2, 20.0, 10.0).await;
    assert_eq!(
        retried,
        json!({"applied": false, "viewCounted": false, "positionSeconds": 20.0, "watchedSeconds": 20.0})
    );
    let late = c.beat_ok(Some(&fan), &video, &s, 1, 5.0, 10.0).await;
    assert_eq!(late["applied"], false);
    let resumed = c.beat_ok(Some(&fan), &video, &s, 3, 25.0, 5.0).await;
    assert_eq!(resumed["watchedSeconds"], 25.0, "only applied reports add up");
    let other = c.video(&user(), "PUBLIC", 600.0).await;
    assert_eq!(
        c.refused(Some(&fan), "mutation($i: PlaybackInput!) { recordPlayback(input: $i) { applied } }",
            json!({"i": {"videoId": other, "sessionId": s, "sequence": 9, "positionSeconds": 1.0, "watchedSeconds": 1.0}}))
            .await,
        ("BAD_USER_INPUT".to_string(), Some("sessionId".to_string())),
        "a session is one video's"
    );
}

async fn watch_time_is_bounded_by_the_clock_and_bad_reports_are_refused(backend: Backend) {
    let app = start(backend, true).await;
    let c = Client::new(&app);
    let owner = user();
    let video = c.video(&owner, "PUBLIC", 600.0).await;
    let (fan, s) = (user(), session());
    let first = c.beat_ok(Some(&fan), &video, &s, 1, 30.0, 30.0).await;
    assert_eq!((first["watchedSeconds"].as_f64(), first["viewCounted"].as_bool()), (Some(5.0), Some(false)), "{first}");
    let flood = c.beat_ok(Some(&fan), &video, &s, 2, 60.0, 30.0).await;
    assert!(flood["watchedSeconds"].as_f64().unwrap() < 11.0, "a report right after is bounded: {flood}");
    assert_eq!(flood["viewCounted"], false);
    let beyond = c.beat_ok(Some(&fan), &video, &session(), 1, 5000.0, 0.0).await;
    assert_eq!(beyond["positionSeconds"], 600.0, "positions past the end are the end");

    let q = "mutation($i: PlaybackInput!) { recordPlayback(input: $i) { applied } }";
    let input = |f: &dyn Fn(&mut Value)| {
        let mut i = json!({"videoId": video, "sessionId": session(), "sequence": 1, "positionSeconds": 1.0, "watchedSeconds": 1.0});
        f(&mut i);
        json!({ "i": i })
    };
    let bad = |code: &str, field: &str| (code.to_string(), Some(field.to_string()));
    assert_eq!(
        c.refused(Some(&fan), q, input(&|i| i["watchedSeconds"] = json!(-1.0))).await,
        bad("BAD_USER_INPUT", "watchedSeconds")
    );
    assert_eq!(
        c.refused(Some(&fan), q, input(&|i| i["watchedSeconds"] = json!(1e7))).await,
        bad("BAD_USER_INPUT", "watchedSeconds")
    );
    assert_eq!(
        c.refused(Some(&fan), q, input(&|i| i["positionSeconds"] = json!(-3.0))).await,
        bad("BAD_USER_INPUT", "positionSeconds")
    );
    assert_eq!(
        c.refused(Some(&fan), q, input(&|i| i["sessionId"] = json!("x"))).await,
        bad("BAD_USER_INPUT", "sessionId")
    );
    assert_eq!(
        c.refused(Some(&fan), q, input(&|i| i["sequence"] = json!(-1))).await,
        bad("BAD_USER_INPUT", "sequence")
    );
    assert_eq!(c.refused(Some(&fan), q, input(&|i| i["videoId"] = json!(user()))).await, bad("NOT_FOUND", "videoId"));
    let private = c.video(&owner, "PRIVATE", 60.0).await;
    assert_eq!(c.refused(Some(&fan), q, input(&|i| i["videoId"] = json!(private))).await, bad("NOT_FOUND", "videoId"));
    assert_eq!(c.refused(None, q, input(&|i| i["videoId"] = json!(private))).await, bad("NOT_FOUND", "videoId"));
    // Many reports of one session in one second: past the limit they are refused.
    let s = session();
    let mut codes = Vec::new();
    for seq in 1..=8 {
        let res = c.beat(Some(&fan), &video, &s, seq, 1.0, 0.0).await;
        codes.push(res["errors"][0]["extensions"]["code"].as_str().unwrap_or("ok").to_string());
    }
    assert!(codes.iter().any(|c| c == "RATE_LIMITED"), "{codes:?}");
    // A player sending what it kept while offline: one batch counts once against the limit.
    let kept = session();
    let batch: Vec<Value> = (1..=8)
        .map(|seq| json!({"videoId": video, "sessionId": kept, "sequence": seq, "positionSeconds": seq as f64, "watchedSeconds": 1.0}))
        .collect();
    let res = c
        .http
        .post(app.url("/activity/heartbeat"))
        .header("x-user-id", fan.as_str())
        .json(&json!({ "heartbeats": batch }))
        .send()
        .await
        .unwrap();
    let res: Value = res.json().await.unwrap();
    let applied = res["results"].as_array().unwrap().iter().filter(|r| r["applied"] == true).count();
    assert_eq!(applied, 8, "every kept heartbeat of one batch is recorded: {res}");
}

const PROGRESS: &str = "query($id: ID!) { _entities(representations: [{__typename: \"Video\", id: $id}]) { ... on Video { viewerProgress { positionSeconds watchedFraction updatedAt } } } }";
const HISTORY: &str = "query($first: Int, $after: String) { watchHistory(first: $first, after: $after) { edges { cursor node { video { id } positionSeconds watchedFraction } } pageInfo { hasNextPage endCursor } } }";
const CONTINUE: &str = "{ continueWatching { edges { node { video { id } positionSeconds watchedFraction } } } }";

fn ids(page: &Value, list: &str) -> Vec<String> {
    page[list]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["video"]["id"].as_str().unwrap().to_string())
        .collect()
}

async fn history_resumes_where_the_viewer_stopped(backend: Backend) {
    let app = app(backend).await;
    let c = Client::new(&app);
    let owner = user();
    let (a, b, d) = (
        c.video(&owner, "PUBLIC", 600.0).await,
        c.video(&owner, "PUBLIC", 600.0).await,
        c.video(&owner, "PUBLIC", 600.0).await,
    );
    let fan = user();
    c.beat_ok(Some(&fan), &a, &session(), 1, 120.0, 30.0).await;
    c.beat_ok(Some(&fan), &b, &session(), 1, 590.0, 30.0).await;
    let sd = session();
    c.beat_ok(Some(&fan), &d, &sd, 1, 30.0, 30.0).await;
    c.beat_ok(Some(&fan), &d, &sd, 2, 300.0, 1.0).await;

    let progress = c.ok(Some(&fan), PROGRESS, json!({ "id": a })).await;
    let p = &progress["_entities"][0]["viewerProgress"];
    assert_eq!((p["positionSeconds"].as_f64(), p["watchedFraction"].as_f64()), (Some(120.0), Some(0.2)), "{p}");
    assert!(p["updatedAt"].is_string());
    let anonymous = c.ok(None, PROGRESS, json!({ "id": a })).await;
    assert_eq!(anonymous["_entities"][0]["viewerProgress"], Value::Null);
    let stranger = c.ok(Some(&user()), PROGRESS, json!({ "id": a })).await;
    assert_eq!(stranger["_entities"][0]["viewerProgress"], Value::Null, "each viewer's own");

    let all = c.ok(Some(&fan), HISTORY, json!({})).await;
    assert_eq!(ids(&all, "watchHistory"), [d.clone(), b.clone(), a.clone()], "newest first, one entry per video");
    assert_eq!(all["watchHistory"]["edges"][0]["node"]["positionSeconds"], 300.0, "the last position");
    let one = c.ok(Some(&fan), HISTORY, json!({ "first": 1 })).await;
    assert_eq!(ids(&one, "watchHistory"), [d.as_str()]);
    assert_eq!(one["watchHistory"]["pageInfo"]["hasNextPage"], true);
    let after = one["watchHistory"]["pageInfo"]["endCursor"].clone();
    let rest = c.ok(Some(&fan), HISTORY, json!({ "first": 5, "after": after })).await;
    assert_eq!(ids(&rest, "watchHistory"), [b.clone(), a.clone()]);
    assert_eq!(rest["watchHistory"]["pageInfo"]["hasNextPage"], false);
    let cont = c.ok(Some(&fan), CONTINUE, json!({})).await;
    assert_eq!(ids(&cont, "continueWatching"), [d.clone(), a.clone()], "under 90% watched");

    assert_eq!(c.refused(None, HISTORY, json!({})).await.0, "UNAUTHENTICATED");
    assert_eq!(c.refused(Some(&fan), HISTORY, json!({ "first": 101 })).await.0, "BAD_USER_INPUT");
    assert_eq!(c.refused(Some(&fan), HISTORY, json!({ "after": "%%%" })).await.0, "BAD_USER_INPUT");
    // A video that became private leaves the history of those who may no longer watch it.
    let hidden = events::VideoChanged {
        video_id: a.clone(),
        owner_id: owner.clone(),
        visibility: "PRIVATE".into(),
        version: 2,
        ..Default::default()
    };
    c.publish("video.updated", &a, hidden.encode_to_vec()).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            ids(&c.ok(Some(&fan), HISTORY, json!({})).await, "watchHistory").len() == 2
        })
        .await,
        "the private video left the history"
    );
    // The newest entry hidden too: a first page of one skips it rather than answering empty.
    let hidden = events::VideoChanged {
        video_id: d.clone(),
        owner_id: owner.clone(),
        visibility: "PRIVATE".into(),
        version: 2,
        ..Default::default()
    };
    c.publish("video.updated", &d, hidden.encode_to_vec()).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            ids(&c.ok(Some(&fan), HISTORY, json!({})).await, "watchHistory") == [b.as_str()]
        })
        .await,
        "the second private video left the history"
    );
    let first = c.ok(Some(&fan), HISTORY, json!({ "first": 1 })).await;
    assert_eq!(ids(&first, "watchHistory"), [b.as_str()], "a hidden first page is skipped: {first}");
}

async fn history_can_be_removed_cleared_and_paused(backend: Backend) {
    let app = app(backend).await;
    let c = Client::new(&app);
    let owner = user();
    let (a, b) = (c.video(&owner, "PUBLIC", 600.0).await, c.video(&owner, "PUBLIC", 600.0).await);
    let fan = user();
    c.beat_ok(Some(&fan), &a, &session(), 1, 10.0, 10.0).await;
    c.beat_ok(Some(&fan), &b, &session(), 1, 10.0, 10.0).await;
    let remove = "mutation($v: ID!) { removeFromHistory(videoId: $v) }";
    assert_eq!(c.ok(Some(&fan), remove, json!({ "v": a })).await["removeFromHistory"], true);
    assert_eq!(c.ok(Some(&fan), remove, json!({ "v": a })).await["removeFromHistory"], false);
    assert_eq!(ids(&c.ok(Some(&fan), HISTORY, json!({})).await, "watchHistory"), [b.as_str()]);
    assert_eq!(c.ok(Some(&fan), "mutation { clearHistory }", json!({})).await["clearHistory"], 1);
    assert!(ids(&c.ok(Some(&fan), HISTORY, json!({})).await, "watchHistory").is_empty());

    assert_eq!(c.ok(Some(&fan), "{ historyPaused }", json!({})).await["historyPaused"], false);
    let pause = "mutation($p: Boolean!) { setHistoryPaused(paused: $p) }";
    assert_eq!(c.ok(Some(&fan), pause, json!({ "p": true })).await["setHistoryPaused"], true);
    assert_eq!(c.ok(Some(&fan), "{ historyPaused }", json!({})).await["historyPaused"], true);
    let counted = c.beat_ok(Some(&fan), &a, &session(), 1, 40.0, 40.0).await;
    assert_eq!(counted["viewCounted"], true, "a paused history still counts views");
    assert!(ids(&c.ok(Some(&fan), HISTORY, json!({})).await, "watchHistory").is_empty(), "but keeps nothing");
    c.ok(Some(&fan), pause, json!({ "p": false })).await;
    c.beat_ok(Some(&fan), &a, &session(), 1, 50.0, 1.0).await;
    assert_eq!(ids(&c.ok(Some(&fan), HISTORY, json!({})).await, "watchHistory"), [a.as_str()]);

    for q in [remove, "mutation { clearHistory }", "{ historyPaused }"] {
        assert_eq!(c.refused(None, q, json!({ "v": a, "p": true })).await.0, "UNAUTHENTICATED", "{q}");
    }
}

async fn deleted_users_and_videos_leave_no_activity(backend: Backend) {
    let app = app(backend).await;
    let c = Client::new(&app);
    let owner = user();
    let (kept, gone) = (c.video(&owner, "PUBLIC", 600.0).await, c.video(&owner, "PUBLIC", 600.0).await);
    let (leaver, stayer) = (user(), user());
    for viewer in [leaver.as_str(), stayer.as_str()] {
        c.beat_ok(Some(viewer), &kept, &session(), 1, 10.0, 10.0).await;
        c.beat_ok(Some(viewer), &gone, &session(), 1, 10.0, 10.0).await;
    }
    c.publish("user.deleted", &leaver, events::UserDeleted { user_id: leaver.clone() }.encode_to_vec()).await;
    let deleted =
        events::VideoChanged { video_id: gone.clone(), owner_id: owner.clone(), version: 5, ..Default::default() };
    c.publish("video.deleted", &gone, deleted.encode_to_vec()).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            ids(&c.ok(Some(&stayer), HISTORY, json!({})).await, "watchHistory") == [kept.clone()]
                && ids(&c.ok(Some(&leaver), HISTORY, json!({})).await, "watchHistory").is_empty()
        })
        .await,
        "the deleted user's history and the deleted video's entries went"
    );
    // Its watch time summed in memory before the deletion is not written after it.
    let channel = c.ok(Some(&owner), CHANNEL, json!({})).await["channelAnalytics"].clone();
    let top: Vec<&str> =
        channel["topVideos"].as_array().unwrap().iter().map(|v| v["video"]["id"].as_str().unwrap()).collect();
    assert_eq!(top, [kept.as_str()], "{channel}");
    let late = events::VideoChanged {
        video_id: gone.clone(),
        owner_id: owner.clone(),
        visibility: "PUBLIC".into(),
        version: 4,
        ..Default::default()
    };
    c.publish("video.updated", &gone, late.encode_to_vec()).await;
    // One consumer applies its queue in order: once this marker video plays, the late update
    // published before it has been applied (and refused).
    let _marker = c.video(&owner, "PUBLIC", 60.0).await;
    let res = c.beat(Some(&stayer), &gone, &session(), 1, 1.0, 1.0).await;
    assert_eq!(res["errors"][0]["extensions"]["code"], "NOT_FOUND", "a late update does not bring it back: {res}");
}

async fn rest_heartbeat_batches_answer_item_by_item(backend: Backend) {
    let app = app(backend).await;
    let c = Client::new(&app);
    let video = c.video(&user(), "PUBLIC", 600.0).await;
    let s = session();
    let beat = |seq: i64, watched: f64| json!({"videoId": video, "sessionId": s, "sequence": seq, "positionSeconds": seq as f64 * 10.0, "watchedSeconds": watched, "rendition": "480p"});
    let post = |body: Value| {
        let req = c.http.post(app.url("/activity/heartbeat")).header("x-forwarded-for", "203.0.113.5").json(&body);
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, body) =
        post(json!({ "heartbeats": [beat(1, 10.0), beat(2, -1.0), beat(3, 25.0), beat(3, 25.0)] })).await;
    assert_eq!(status, 200, "{body}");
    let r = body["results"].as_array().unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!((r[0]["applied"].as_bool(), r[0]["viewCounted"].as_bool()), (Some(true), Some(false)));
    assert_eq!(r[1]["error"]["code"], "BAD_USER_INPUT", "{}", r[1]);
    assert_eq!(r[2]["viewCounted"], true, "35 s: {}", r[2]);
    assert_eq!(r[3]["applied"], false, "the repeat");
    // The same address is the same anonymous viewer in another session: not counted again.
    let other = json!({"videoId": video, "sessionId": session(), "sequence": 1, "positionSeconds": 40.0, "watchedSeconds": 40.0});
    let (_, again) = post(json!({ "heartbeats": [other] })).await;
    assert_eq!(again["results"][0]["viewCounted"], false, "{again}");

    let (status, body) = post(json!({ "heartbeats": [] })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("BAD_USER_INPUT")));
    let many: Vec<Value> = (1..=51).map(|i| beat(100 + i, 0.0)).collect();
    assert_eq!(post(json!({ "heartbeats": many })).await.0, 400);
    assert_eq!(post(json!({ "beats": [] })).await.0, 400, "unknown fields are refused");
    let raw = c
        .http
        .post(app.url("/activity/heartbeat"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
}

const ANALYTICS: &str = "query($id: ID!) { _entities(representations: [{__typename: \"Video\", id: $id}]) { ... on Video { analytics(range: LAST_7_DAYS) { views watchSeconds averageViewSeconds days { day views watchSeconds } retention { percent share } renditions { rendition watchSeconds share } } } } }";
const CHANNEL: &str = "{ channelAnalytics { views watchSeconds averageViewSeconds days { day views } topVideos { video { id } views watchSeconds } } }";

async fn creators_see_their_audience_and_nobody_else_does(backend: Backend) {
    let app = app(backend).await;
    let c = Client::new(&app);
    let owner = user();
    // `video` probes with one session of the owner's at the end of the video (clamped): it is
    // a playback like any other, at 0 s watched.
    let (video, other) = (c.video(&owner, "PUBLIC", 100.0).await, c.video(&owner, "PUBLIC", 100.0).await);
    let (a, b) = (user(), user());
    let sa = session();
    c.beat_ok(Some(&a), &video, &sa, 1, 10.0, 10.0).await;
    assert_eq!(c.beat_ok(Some(&a), &video, &sa, 2, 40.0, 30.0).await["viewCounted"], true);
    let rest = json!({ "heartbeats": [{"videoId": video, "sessionId": session(), "sequence": 1, "positionSeconds": 100.0,
        "watchedSeconds": 35.0, "rendition": "480p"}] });
    let res =
        c.http.post(app.url("/activity/heartbeat")).header("x-user-id", b.as_str()).json(&rest).send().await.unwrap();
    let res: Value = res.json().await.unwrap();
    assert_eq!(res["results"][0]["viewCounted"], true, "{res}");
    assert_eq!(c.beat_ok(Some(&a), &other, &session(), 1, 40.0, 40.0).await["viewCounted"], true);

    let report = c.ok(Some(&owner), ANALYTICS, json!({ "id": video })).await;
    let r = &report["_entities"][0]["analytics"];
    assert_eq!(
        (r["views"].as_i64(), r["watchSeconds"].as_f64(), r["averageViewSeconds"].as_f64()),
        (Some(2), Some(75.0), Some(37.5)),
        "{r}"
    );
    let days = r["days"].as_array().unwrap();
    assert_eq!(days.len(), 7, "every day of the range");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(days[6], json!({ "day": today, "views": 2, "watchSeconds": 75.0 }));
    assert!(days[..6].iter().all(|d| d["views"] == 0));
    // Sessions: the owner's probe (to the end), a's (to 40%), b's (to the end).
    let share = |percent: i64| {
        r["retention"].as_array().unwrap().iter().find(|p| p["percent"] == percent).unwrap()["share"].as_f64().unwrap()
    };
    assert_eq!(r["retention"].as_array().unwrap().len(), 21);
    assert_eq!((share(0), share(40)), (1.0, 1.0));
    assert!((share(45) - 2.0 / 3.0).abs() < 1e-9 && (share(100) - 2.0 / 3.0).abs() < 1e-9, "{}", r["retention"]);
    assert_eq!(
        r["renditions"],
        json!([
            {"rendition": "720p", "watchSeconds": 40.0, "share": 40.0 / 75.0},
            {"rendition": "480p", "watchSeconds": 35.0, "share": 35.0 / 75.0},
        ])
    );

    let channel = c.ok(Some(&owner), CHANNEL, json!({})).await["channelAnalytics"].clone();
    assert_eq!((channel["views"].as_i64(), channel["watchSeconds"].as_f64()), (Some(3), Some(115.0)), "{channel}");
    assert_eq!(channel["days"].as_array().unwrap().len(), 28, "the last 28 days by default");
    let top: Vec<(String, i64)> = channel["topVideos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["video"]["id"].as_str().unwrap().to_string(), v["views"].as_i64().unwrap()))
        .collect();
    assert_eq!(top, [(video.clone(), 2), (other.clone(), 1)], "most viewed first");
    // Media's owner dashboard carries the same figures (the router joins them by the owner).
    let dashboard = "query($o: ID!) { _entities(representations: [{__typename: \"Dashboard\", ownerId: $o}]) { ... on Dashboard { analytics { views watchSeconds } } } }";
    let joined = c.ok(Some(&owner), dashboard, json!({ "o": owner })).await;
    assert_eq!(joined["_entities"][0]["analytics"], json!({ "views": 3, "watchSeconds": 115.0 }));
    assert_eq!(c.refused(Some(&a), dashboard, json!({ "o": owner })).await.0, "FORBIDDEN", "another's dashboard");
    let nobody = c.ok(Some(&a), CHANNEL, json!({})).await["channelAnalytics"].clone();
    assert_eq!(
        (nobody["views"].as_i64(), nobody["topVideos"].as_array().map(Vec::len)),
        (Some(0), Some(0)),
        "only one's own channel"
    );

    assert_eq!(c.refused(Some(&a), ANALYTICS, json!({ "id": video })).await.0, "FORBIDDEN");
    assert_eq!(c.refused(None, ANALYTICS, json!({ "id": video })).await.0, "UNAUTHENTICATED");
    assert_eq!(c.refused(None, CHANNEL, json!({})).await.0, "UNAUTHENTICATED");
    let private = c.video(&user(), "PRIVATE", 60.0).await;
    assert_eq!(c.refused(Some(&a), ANALYTICS, json!({ "id": private })).await.0, "NOT_FOUND");
}

const PLAYLIST: &str = "query($id: ID!, $first: Int, $after: String) { playlist(id: $id) { id title description visibility itemCount isWatchLater owner { id } items(first: $first, after: $after) { edges { node { video { id } } } pageInfo { hasNextPage endCursor } } } }";
const CREATE: &str =
    "mutation($i: CreatePlaylistInput!) { createPlaylist(input: $i) { id title visibility itemCount } }";
const ADD: &str = "mutation($p: ID!, $v: ID!) { addToPlaylist(playlistId: $p, videoId: $v) { itemCount } }";
const MOVE: &str =
    "mutation($p: ID!, $v: ID!, $at: Int!) { movePlaylistItem(playlistId: $p, videoId: $v, position: $at) { id } }";

fn item_ids(data: &Value) -> Vec<&str> {
    data["playlist"]["items"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["video"]["id"].as_str().unwrap())
        .collect()
}

async fn playlists_are_their_owners_to_change_and_list_what_viewers_may_see(backend: Backend) {
    let app = app(backend).await;
    let c = Client::new(&app);
    let (owner, stranger) = (user(), user());
    let mut v = Vec::new();
    for _ in 0..3 {
        v.push(c.video(&user(), "PUBLIC", 60.0).await);
    }
    let hidden = c.video(&owner, "PRIVATE", 60.0).await;
    let made = c.ok(Some(&owner), CREATE, json!({ "i": { "title": "  Birds ", "visibility": "PUBLIC" } })).await;
    assert_eq!(
        (made["createPlaylist"]["title"].as_str(), made["createPlaylist"]["itemCount"].as_i64()),
        (Some("Birds"), Some(0))
    );
    let id = made["createPlaylist"]["id"].as_str().unwrap().to_string();
    for video in v.iter().chain([&hidden]) {
        c.ok(Some(&owner), ADD, json!({ "p": id, "v": video })).await;
    }
    assert_eq!(
        c.ok(Some(&owner), ADD, json!({ "p": id, "v": v[0] })).await["addToPlaylist"]["itemCount"],
        4,
        "already there: no second entry"
    );
    let mine = c.ok(Some(&owner), PLAYLIST, json!({ "id": id })).await;
    assert_eq!(item_ids(&mine), [v[0].as_str(), v[1].as_str(), v[2].as_str(), hidden.as_str()], "in the order added");
    let theirs = c.ok(Some(&stranger), PLAYLIST, json!({ "id": id })).await;
    assert_eq!(
        item_ids(&theirs),
        [v[0].as_str(), v[1].as_str(), v[2].as_str()],
        "the owner's private video is not listed to others"
    );
    assert_eq!(theirs["playlist"]["itemCount"], 4);

    c.ok(Some(&owner), MOVE, json!({ "p": id, "v": v[2], "at": 0 })).await;
    assert_eq!(
        item_ids(&c.ok(Some(&owner), PLAYLIST, json!({ "id": id })).await),
        [v[2].as_str(), v[0].as_str(), v[1].as_str(), hidden.as_str()]
    );
    c.ok(Some(&owner), MOVE, json!({ "p": id, "v": v[2], "at": 2 })).await;
    assert_eq!(
        item_ids(&c.ok(Some(&owner), PLAYLIST, json!({ "id": id })).await),
        [v[0].as_str(), v[1].as_str(), v[2].as_str(), hidden.as_str()]
    );
    c.ok(Some(&owner), MOVE, json!({ "p": id, "v": v[0], "at": 99 })).await;
    assert_eq!(
        item_ids(&c.ok(Some(&owner), PLAYLIST, json!({ "id": id })).await),
        [v[1].as_str(), v[2].as_str(), hidden.as_str(), v[0].as_str()],
        "past the end: last"
    );
    // Many moves between the same two neighbours: places get renumbered, the order holds.
    for _ in 0..60 {
        c.ok(Some(&owner), MOVE, json!({ "p": id, "v": v[0], "at": 1 })).await;
        c.ok(Some(&owner), MOVE, json!({ "p": id, "v": v[2], "at": 1 })).await;
    }
    assert_eq!(
        item_ids(&c.ok(Some(&owner), PLAYLIST, json!({ "id": id })).await),
        [v[1].as_str(), v[2].as_str(), v[0].as_str(), hidden.as_str()]
    );
    let page = c.ok(Some(&owner), PLAYLIST, json!({ "id": id, "first": 2 })).await;
    assert_eq!(item_ids(&page), [v[1].as_str(), v[2].as_str()]);
    let after = page["playlist"]["items"]["pageInfo"]["endCursor"].clone();
    assert_eq!(
        item_ids(&c.ok(Some(&owner), PLAYLIST, json!({ "id": id, "first": 2, "after": after })).await),
        [v[0].as_str(), hidden.as_str()]
    );

    let update = "mutation($p: ID!, $i: UpdatePlaylistInput!) { updatePlaylist(id: $p, input: $i) { title description visibility } }";
    let renamed = c
        .ok(Some(&owner), update, json!({ "p": id, "i": { "title": "Birds of prey", "description": "raptors" } }))
        .await;
    assert_eq!(
        renamed["updatePlaylist"],
        json!({ "title": "Birds of prey", "description": "raptors", "visibility": "PUBLIC" })
    );
    assert_eq!(
        c.refused(Some(&owner), update, json!({ "p": id, "i": { "title": " " } })).await,
        ("BAD_USER_INPUT".into(), Some("title".into()))
    );
    assert_eq!(c.refused(Some(&stranger), update, json!({ "p": id, "i": { "title": "Mine" } })).await.0, "FORBIDDEN");
    assert_eq!(c.refused(Some(&stranger), ADD, json!({ "p": id, "v": v[0] })).await.0, "FORBIDDEN");
    assert_eq!(c.refused(None, ADD, json!({ "p": id, "v": v[0] })).await.0, "UNAUTHENTICATED");
    assert_eq!(c.refused(None, CREATE, json!({ "i": { "title": "x" } })).await.0, "UNAUTHENTICATED");
    assert_eq!(
        c.refused(Some(&owner), ADD, json!({ "p": id, "v": user() })).await,
        ("NOT_FOUND".into(), Some("videoId".into()))
    );
    let others_private = c.video(&stranger, "PRIVATE", 60.0).await;
    assert_eq!(
        c.refused(Some(&owner), ADD, json!({ "p": id, "v": others_private })).await.0,
        "NOT_FOUND",
        "a video one cannot watch"
    );

    // Private: others cannot see it at all.
    c.ok(Some(&owner), update, json!({ "p": id, "i": { "visibility": "PRIVATE" } })).await;
    assert_eq!(c.ok(Some(&stranger), PLAYLIST, json!({ "id": id })).await["playlist"], Value::Null);
    assert_eq!(c.refused(Some(&stranger), ADD, json!({ "p": id, "v": v[0] })).await.0, "NOT_FOUND");
    let remove = "mutation($p: ID!, $v: ID!) { removeFromPlaylist(playlistId: $p, videoId: $v) { itemCount } }";
    assert_eq!(c.ok(Some(&owner), remove, json!({ "p": id, "v": v[1] })).await["removeFromPlaylist"]["itemCount"], 3);
    assert_eq!(
        c.ok(Some(&owner), remove, json!({ "p": id, "v": v[1] })).await["removeFromPlaylist"]["itemCount"],
        3,
        "gone already"
    );

    // Full at max_playlist_items (6 in these tests; 5,000 by default).
    let (a, b, d) = (
        c.video(&user(), "PUBLIC", 60.0).await,
        c.video(&user(), "PUBLIC", 60.0).await,
        c.video(&user(), "PUBLIC", 60.0).await,
    );
    c.ok(Some(&owner), ADD, json!({ "p": id, "v": a })).await;
    c.ok(Some(&owner), ADD, json!({ "p": id, "v": b })).await;
    assert_eq!(c.ok(Some(&owner), ADD, json!({ "p": id, "v": v[1] })).await["addToPlaylist"]["itemCount"], 6);
    assert_eq!(c.refused(Some(&owner), ADD, json!({ "p": id, "v": d })).await.0, "BAD_USER_INPUT", "a seventh video");

    let delete = "mutation($p: ID!) { deletePlaylist(id: $p) }";
    assert_eq!(c.refused(Some(&stranger), delete, json!({ "p": id })).await.0, "NOT_FOUND");
    assert_eq!(c.ok(Some(&owner), delete, json!({ "p": id })).await["deletePlaylist"], true);
    assert_eq!(c.ok(Some(&owner), PLAYLIST, json!({ "id": id })).await["playlist"], Value::Null);
}

const MINE: &str = "{ myPlaylists { edges { node { id title isWatchLater visibility itemCount } } } }";
const USER_PLAYLISTS: &str = "query($u: ID!) { _entities(representations: [{__typename: \"User\", id: $u}]) { ... on User { playlists { edges { node { id title } } } } } }";

async fn watch_later_is_each_users_own_and_deletions_empty_playlists(backend: Backend) {
    let app = app(backend).await;
    let c = Client::new(&app);
    let (owner, fan) = (user(), user());
    let (kept, gone) = (c.video(&owner, "PUBLIC", 60.0).await, c.video(&owner, "PUBLIC", 60.0).await);
    let later = "mutation($v: ID!) { addToWatchLater(videoId: $v) { id title isWatchLater visibility itemCount } }";
    let wl = c.ok(Some(&fan), later, json!({ "v": kept })).await["addToWatchLater"].clone();
    assert_eq!(
        (wl["title"].as_str(), wl["isWatchLater"].as_bool(), wl["visibility"].as_str(), wl["itemCount"].as_i64()),
        (Some("Watch later"), Some(true), Some("PRIVATE"), Some(1))
    );
    c.ok(Some(&fan), later, json!({ "v": gone })).await;
    let wl_id = wl["id"].as_str().unwrap().to_string();
    assert_eq!(
        c.ok(Some(&fan), "{ watchLater { id itemCount } }", json!({})).await["watchLater"],
        json!({ "id": wl_id, "itemCount": 2 })
    );
    assert_eq!(
        c.refused(Some(&fan), "mutation($p: ID!) { deletePlaylist(id: $p) }", json!({ "p": wl_id })).await.0,
        "BAD_USER_INPUT"
    );
    assert_eq!(
        c.ok(Some(&owner), PLAYLIST, json!({ "id": wl_id })).await["playlist"],
        Value::Null,
        "private to its user"
    );
    assert_eq!(c.refused(None, "{ watchLater { id } }", json!({})).await.0, "UNAUTHENTICATED");

    let public =
        c.ok(Some(&fan), CREATE, json!({ "i": { "title": "Shared", "visibility": "PUBLIC" } })).await["createPlaylist"]
            ["id"]
            .as_str()
            .unwrap()
            .to_string();
    c.ok(Some(&fan), ADD, json!({ "p": public, "v": gone })).await;
    let private = c.ok(Some(&fan), CREATE, json!({ "i": { "title": "Secret" } })).await["createPlaylist"].clone();
    assert_eq!(private["visibility"], "PRIVATE", "private unless said otherwise");
    let mine: Vec<String> = c.ok(Some(&fan), MINE, json!({})).await["myPlaylists"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(mine, ["Watch later", "Secret", "Shared"], "Watch later first, then newest first");
    let seen = c.ok(Some(&owner), USER_PLAYLISTS, json!({ "u": fan })).await;
    let titles: Vec<&str> = seen["_entities"][0]["playlists"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Shared"], "others see a user's public playlists");

    // The video is deleted: it leaves every playlist, and their counts follow.
    let deleted =
        events::VideoChanged { video_id: gone.clone(), owner_id: owner.clone(), version: 9, ..Default::default() };
    c.publish("video.deleted", &gone, deleted.encode_to_vec()).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            let wl = c.ok(Some(&fan), "{ watchLater { itemCount } }", json!({})).await;
            let shared = c.ok(Some(&fan), PLAYLIST, json!({ "id": public })).await;
            wl["watchLater"]["itemCount"] == 1 && shared["playlist"]["itemCount"] == 0
        })
        .await,
        "the deleted video left both playlists"
    );
    // The user is deleted: their playlists go.
    c.publish("user.deleted", &fan, events::UserDeleted { user_id: fan.clone() }.encode_to_vec()).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            c.ok(Some(&owner), PLAYLIST, json!({ "id": public })).await["playlist"].is_null()
        })
        .await,
        "a deleted user's playlists are gone"
    );
}

async fn grpc_records_playback_and_answers_progress_and_history(backend: Backend) {
    use flick_proto::activity::v1 as pb;
    let app = app(backend).await;
    let c = Client::new(&app);
    let video = c.video(&user(), "PUBLIC", 100.0).await;
    let fan = user();
    let mut client = pb::activity_service_client::ActivityServiceClient::connect(app.url("")).await.unwrap();
    fn as_user<T>(user: Option<&str>, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(u) = user {
            r.metadata_mut().insert("x-user-id", u.parse().unwrap());
        }
        r
    }
    let report = |seq: i64, pos: f64, watched: f64| pb::RecordPlaybackRequest {
        video_id: video.clone(),
        session_id: "grpc-session-1".into(),
        sequence: seq,
        position_seconds: pos,
        watched_seconds: watched,
        rendition: Some("1080p".into()),
        client_address: String::new(),
    };
    let first = client.record_playback(as_user(Some(&fan), report(1, 20.0, 20.0))).await.unwrap().into_inner();
    assert_eq!((first.applied, first.view_counted), (true, false));
    let second = client.record_playback(as_user(Some(&fan), report(2, 50.0, 30.0))).await.unwrap().into_inner();
    assert_eq!((second.view_counted, second.watched_seconds), (true, 50.0));
    let again = client.record_playback(as_user(Some(&fan), report(2, 50.0, 30.0))).await.unwrap().into_inner();
    assert!(!again.applied, "a retry changes nothing");

    let progress = client
        .viewer_progress(as_user(Some(&fan), pb::ViewerProgressRequest { video_ids: vec![video.clone(), user()] }))
        .await
        .unwrap()
        .into_inner()
        .progress;
    assert_eq!(progress.len(), 1);
    assert_eq!((progress[0].position_seconds, progress[0].watched_fraction), (50.0, Some(0.5)));
    let history = client
        .watch_history(as_user(Some(&fan), pb::WatchHistoryRequest { first: 5, ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((history.entries.len(), history.has_next), (1, false));
    assert_eq!(history.entries[0].video_id, video);

    let anonymous = client.watch_history(as_user(None, pb::WatchHistoryRequest::default())).await.unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    let bad =
        client.record_playback(as_user(None, pb::RecordPlaybackRequest { sequence: -1, ..report(1, 1.0, 1.0) })).await;
    assert_eq!(bad.unwrap_err().code(), tonic::Code::InvalidArgument);
}

/// Two replicas on one store: each keeps its own copy of the sessions it wrote, so the second
/// replica's heartbeat makes the first one's copy stale. Every heartbeat still applies in
/// order exactly once, retries and late ones change nothing, and the view counts once.
async fn one_sessions_heartbeats_through_two_replicas_apply_in_order_once_each(backend: Backend) {
    use flick_activity::config::ActivityConfigExt as _;
    let app = app(backend).await;
    let c = Client::new(&app);
    let seen = views(&app).await;
    let infra = app.shared.service(flick_activity::NAME, flick_activity::MIGRATIONS).await.unwrap();
    let (docs, _) = infra.documents(flick_activity::DOCUMENTS).await.unwrap();
    let mut config = app.shared.config.activity();
    config.heartbeat_slack_seconds = 600.0;
    let replica =
        flick_activity::Activity::new(docs, infra.db.clone(), infra.relay.clone(), app.shared.cache.clone(), config);

    let owner = user();
    let video = c.video(&owner, "PUBLIC", 600.0).await;
    let viewer = user();
    let caller = flick_kit::Caller::user(viewer.parse().unwrap(), "user");
    let s = session();
    let through_replica = |seq: i64| {
        let hb = flick_activity::Heartbeat {
            video_id: video.clone(),
            session_id: s.clone(),
            sequence: seq,
            position_seconds: 10.0 * seq as f64,
            watched_seconds: 10.0,
            rendition: Some("720p".into()),
        };
        let (replica, caller, key) = (&replica, &caller, format!("user:{viewer}"));
        async move { replica.record(caller, &key, &hb).await.unwrap() }
    };
    let a1 = c.beat_ok(Some(&viewer), &video, &s, 1, 10.0, 10.0).await;
    assert_eq!((a1["applied"].as_bool(), a1["watchedSeconds"].as_f64()), (Some(true), Some(10.0)));
    let b2 = through_replica(2).await;
    assert!(b2.applied && b2.watched_seconds == 20.0, "{b2:?}");
    // The first replica's copy says sequence 1: its update does not match, it reads again.
    let a3 = c.beat_ok(Some(&viewer), &video, &s, 3, 30.0, 10.0).await;
    assert_eq!(
        (a3["applied"].as_bool(), a3["watchedSeconds"].as_f64(), a3["viewCounted"].as_bool()),
        (Some(true), Some(30.0), Some(true)),
        "{a3}"
    );
    let retried = through_replica(3).await;
    assert!(!retried.applied && !retried.view_counted && retried.watched_seconds == 30.0, "{retried:?}");
    let late = c.beat_ok(Some(&viewer), &video, &s, 2, 20.0, 10.0).await;
    assert_eq!((late["applied"].as_bool(), late["watchedSeconds"].as_f64()), (Some(false), Some(30.0)));
    let b4 = through_replica(4).await;
    assert!(b4.applied && b4.watched_seconds == 40.0 && !b4.view_counted, "{b4:?}");
    assert!(
        eventually(Duration::from_secs(10), || async { !seen.lock().unwrap().is_empty() }).await,
        "video.viewed was sent"
    );
    let sent: Vec<_> = seen.lock().unwrap().iter().filter(|v| v.video_id == video).cloned().collect();
    assert_eq!(sent.len(), 1, "one view: {sent:?}");
}

/// A video no event has told of (older than the activity service, or its events late):
/// heartbeats and playlists ask media, as the caller may see it; the answer is kept until an
/// event replaces it; what media does not show the caller stays unknown.
async fn videos_no_event_told_of_are_asked_of_media(backend: Backend) {
    use flick_activity::config::ActivityConfigExt as _;
    // Media on its own bus: none of its events reach this activity service.
    let media = TestApp::start(TestInfra::new(backend).await, |s| async move { flick_media::build(&s).await }).await;
    let mut infra = TestInfra::new(backend).await.with_documents().await;
    infra.config.endpoints.media = Some(media.url(""));
    infra.config.activity_mut().heartbeat_slack_seconds = 600.0;
    let app = TestApp::start(infra, |s| async move { flick_activity::build(&s).await }).await;
    let c = Client::new(&app);
    let seen = views(&app).await;
    let owner = user();
    // The same client, pointed at media's subgraph.
    let m = Client::new(&media);
    let create =
        "mutation($v: Visibility!) { createVideo(input: { title: \"Old\", visibility: $v }) { video { id } } }";
    let create = |visibility: &'static str| {
        let m = &m;
        let owner = owner.clone();
        async move {
            let data = m.ok(Some(&owner), create, json!({ "v": visibility })).await;
            data["createVideo"]["video"]["id"].as_str().unwrap_or_else(|| panic!("{data}")).to_string()
        }
    };
    let (public, private) = (create("PUBLIC").await, create("PRIVATE").await);
    // Transcoded, as far as media knows (others see only ready videos).
    for video in [&public, &private] {
        let bus = &media.shared.bus;
        bus.publish(&envelope("upload.completed", video, "transcoder", vec![])).await.unwrap();
        let done =
            events::TranscodeCompleted { video_id: video.clone(), duration_seconds: 600.0, ..Default::default() };
        bus.publish(&envelope("transcode.completed", video, "transcoder", done.encode_to_vec())).await.unwrap();
    }
    let ready = eventually(Duration::from_secs(10), || async {
        let res = m.gql(None, "query($id: ID!) { video(id: $id) { id } }", json!({ "id": public })).await;
        res["data"]["video"]["id"] == public.as_str()
    })
    .await;
    assert!(ready, "media shows the public video to everyone");

    let first = c.beat_ok(None, &public, &session(), 1, 31.0, 31.0).await;
    assert_eq!((first["applied"].as_bool(), first["viewCounted"].as_bool()), (Some(true), Some(true)), "{first}");
    assert!(eventually(Duration::from_secs(10), || async { seen.lock().unwrap().len() == 1 }).await);
    let fan = user();
    let later = "mutation($v: ID!) { addToWatchLater(videoId: $v) { itemCount } }";
    assert_eq!(c.ok(Some(&fan), later, json!({ "v": public })).await["addToWatchLater"]["itemCount"], 1);

    let hidden = c.beat(Some(&fan), &private, &session(), 1, 5.0, 5.0).await;
    assert_eq!(hidden["errors"][0]["extensions"]["code"], "NOT_FOUND", "not the fan's to see: {hidden}");
    assert_eq!(c.beat_ok(Some(&owner), &private, &session(), 1, 5.0, 5.0).await["applied"], true, "the owner's");
    let nowhere = c.beat(None, &Uuid::now_v7().to_string(), &session(), 1, 5.0, 5.0).await;
    assert_eq!(nowhere["errors"][0]["extensions"]["code"], "NOT_FOUND", "{nowhere}");

    // An event (any version) replaces what media said: made private, others stop seeing it.
    let changed = events::VideoChanged {
        video_id: public.clone(),
        owner_id: owner.clone(),
        visibility: "PRIVATE".into(),
        status: "READY".into(),
        version: 1,
        ..Default::default()
    };
    c.publish("video.updated", &public, changed.encode_to_vec()).await;
    let refused = eventually(Duration::from_secs(10), || async {
        c.beat(None, &public, &session(), 1, 5.0, 5.0).await["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    })
    .await;
    assert!(refused, "the event's copy replaced media's answer");
}
