//! The document store port on both backends: SQLite (a temporary file) and the
//! MongoDB-compatible server `scripts/services.sh up` starts (secantusdb 0.7 reporting MongoDB
//! 8.2 locally; point FLICK_TEST_MONGO_URL at a real MongoDB to run them there). Each MongoDB
//! test gets its own database, dropped when it passes.

use flick_documents::{DocError, Documents, Filter, Find, Group, Index, Migration, Order, Update, Updated, json};
use flick_testkit::{TcpProxy, eventually, mongo_url, require};
use std::time::Duration;

async fn sqlite() -> (Documents, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Documents::connect(None, dir.path(), "test").await.unwrap(), dir)
}

async fn mongodb() -> Documents {
    let base = mongo_url();
    require("The MongoDB-compatible server", &base, 27017).await;
    let url = format!("{}/flick_test_{}", base.trim_end_matches('/'), uuid::Uuid::new_v4().simple());
    let docs = Documents::connect(Some(&url), std::path::Path::new("/nonexistent"), "test").await.unwrap();
    docs.ping().await.expect("ping the MongoDB-compatible server");
    docs
}

/// Runs each scenario `async fn name(docs: Documents)` on `sqlite::name` and `mongodb::name`.
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $scenario() {
                let (docs, _dir) = super::sqlite().await;
                assert_eq!(docs.backend_name(), "sqlite");
                super::$scenario(docs).await;
            })*
        }
        mod mongodb {
            $(#[tokio::test] async fn $scenario() {
                let docs = super::mongodb().await;
                assert_eq!(docs.backend_name(), "mongodb");
                super::$scenario(docs.clone()).await;
                docs.drop_all().await.unwrap();
            })*
        }
    };
}

on_both_stores!(
    documents_round_trip_and_refuse_bad_ones,
    updates_set_increment_keep_maxima_and_upsert,
    filtered_updates_apply_once_per_sequence_number,
    concurrent_upserts_of_one_new_document_all_count,
    concurrent_writes_each_get_their_own_answer,
    finds_filter_sort_and_page,
    groups_count_and_sum_by_keys,
    migrations_apply_once_and_unique_indexes_refuse_duplicates,
    documents_expire_and_free_their_id,
);

async fn documents_round_trip_and_refuse_bad_ones(docs: Documents) {
    let c = docs.collection("things").unwrap();
    let doc = json!({"_id": "a", "n": 1, "big": 9_007_199_254_740_993_i64, "f": 0.5, "s": "x", "sub": {"k": true}, "nil": null});
    c.insert(doc.clone(), None).await.unwrap();
    assert_eq!(c.get("a").await.unwrap(), Some(doc.clone()), "integers stay integers, exactly");
    assert!(matches!(c.insert(json!({"_id": "a"}), None).await, Err(DocError::Duplicate(k)) if k == "_id"));
    assert_eq!(c.get("b").await.unwrap(), None);
    for bad in [json!({"n": 1}), json!({"_id": 5}), json!({"_id": "c", "$where": 1}), json!({"_id": "c", "a.b": 1})] {
        assert!(matches!(c.insert(bad.clone(), None).await, Err(DocError::Invalid(_))), "{bad}");
    }
    assert!(docs.collection("no-dashes").is_err());
    assert!(matches!(c.find(&Filter::all().eq("a'b", 1), Find::default()).await, Err(DocError::Invalid(_))));
    assert!(c.delete("a").await.unwrap());
    assert!(!c.delete("a").await.unwrap());
    assert_eq!(c.get("a").await.unwrap(), None);
}

async fn updates_set_increment_keep_maxima_and_upsert(docs: Documents) {
    let c = docs.collection("progress").unwrap();
    let bump = |pos: i64, created: i64| {
        Update::new()
            .set("title", "t")
            .set_on_insert("created", created)
            .inc("views", 1)
            .inc("seconds", 2.5)
            .max("position", pos)
            .set("stats.last", pos)
    };
    let owned = Filter::all().eq("owner", "u1");
    assert_eq!(
        c.update("p", &owned, &bump(10, 5), false).await.unwrap(),
        Updated::NotMatched,
        "no upsert: nothing made"
    );
    assert_eq!(c.get("p").await.unwrap(), None);
    let first = c.update("p", &owned, &bump(10, 5), true).await.unwrap();
    let expected = json!({"_id": "p", "owner": "u1", "title": "t", "created": 5, "views": 1, "seconds": 2.5,
        "position": 10, "stats": {"last": 10}});
    assert_eq!(first, Updated::Applied(expected), "created from the id, the filter's equalities and the update");
    let second = c.update("p", &owned, &bump(3, 9), true).await.unwrap();
    let expected = json!({"_id": "p", "owner": "u1", "title": "t", "created": 5, "views": 2, "seconds": 5.0,
        "position": 10, "stats": {"last": 3}});
    assert_eq!(second, Updated::Applied(expected), "set_on_insert only once; max keeps the larger");
    let cleared = c.update("p", &Filter::all(), &Update::new().unset("stats").unset("missing"), false).await.unwrap();
    let Updated::Applied(cleared) = cleared else { panic!("applied") };
    assert!(cleared.get("stats").is_none());
    assert_eq!(c.update("p", &Filter::all(), &Update::new(), false).await.unwrap(), Updated::Applied(cleared.clone()));
    assert!(matches!(
        c.update("p", &Filter::all(), &Update::new().set("_id", "q"), false).await,
        Err(DocError::Invalid(_))
    ));
    assert_eq!(c.get("p").await.unwrap(), Some(cleared));
}

/// The heartbeat pattern: a retried or late request (a sequence number already seen) changes
/// nothing, also when it would create the document.
async fn filtered_updates_apply_once_per_sequence_number(docs: Documents) {
    let c = docs.collection("sessions").unwrap();
    let beat = |seq: i64| Update::new().set("seq", seq).inc("watched", 10);
    let newer = |seq: i64| Filter::all().lt("seq", seq);
    let applied = c.update("s1", &newer(1), &beat(1), true).await.unwrap();
    assert!(matches!(applied, Updated::Applied(ref d) if d["watched"] == 10), "{applied:?}");
    assert_eq!(c.update("s1", &newer(1), &beat(1), true).await.unwrap(), Updated::NotMatched, "a retry");
    assert!(matches!(c.update("s1", &newer(3), &beat(3), true).await.unwrap(), Updated::Applied(_)));
    assert_eq!(c.update("s1", &newer(2), &beat(2), true).await.unwrap(), Updated::NotMatched, "late");
    let doc = c.get("s1").await.unwrap().unwrap();
    assert_eq!((doc["seq"].as_i64(), doc["watched"].as_i64()), (Some(3), Some(20)));
}

async fn concurrent_upserts_of_one_new_document_all_count(docs: Documents) {
    let c = docs.collection("counters").unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.update("hits", &Filter::all(), &Update::new().inc("n", 1), true).await })
        })
        .collect();
    for t in tasks {
        let result = t.await.unwrap();
        assert!(matches!(result, Ok(Updated::Applied(_))), "{result:?}");
    }
    assert_eq!(c.get("hits").await.unwrap().unwrap()["n"], 20);
}

/// Writes that arrive together (SQLite commits them as one group) each get their own
/// answer: a write a unique index refuses fails alone; the others beside it are kept.
async fn concurrent_writes_each_get_their_own_answer(docs: Documents) {
    docs.migrate("test", MIGRATIONS).await.unwrap();
    let playlists = docs.collection("playlists").unwrap();
    let counters = docs.collection("counters").unwrap();
    // 90 inserts of 30 owners' "Later" (one each is kept), among 90 increments of a counter.
    let tasks: Vec<_> = (0..180)
        .map(|i| {
            let (playlists, counters) = (playlists.clone(), counters.clone());
            tokio::spawn(async move {
                if i % 2 == 0 {
                    let doc = json!({"_id": format!("p{i}"), "owner": format!("u{}", i / 2 % 30), "title": "Later"});
                    playlists.insert(doc, None).await.map(|_| "inserted")
                } else {
                    counters.update("c", &Filter::all(), &Update::new().inc("n", 1), true).await.map(|_| "counted")
                }
            })
        })
        .collect();
    let (mut inserted, mut duplicates, mut counted) = (0, 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok("inserted") => inserted += 1,
            Ok(_) => counted += 1,
            Err(DocError::Duplicate(_)) => duplicates += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((inserted, duplicates, counted), (30, 60, 90));
    assert_eq!(playlists.count(&Filter::all()).await.unwrap(), 30);
    assert_eq!(counters.get("c").await.unwrap().unwrap()["n"], 90);
}

async fn finds_filter_sort_and_page(docs: Documents) {
    let c = docs.collection("events").unwrap();
    for i in 0..10_i64 {
        let user = if i % 2 == 0 { "a" } else { "b" };
        let mut doc = json!({"_id": format!("e{i}"), "user": user, "at": i, "score": i as f64 / 2.0, "ok": i < 5});
        if i == 9 {
            doc["note"] = json!(null);
        }
        c.insert(doc, None).await.unwrap();
    }
    let ids = |docs: Vec<flick_documents::Value>| -> Vec<String> {
        docs.iter().map(|d| d["_id"].as_str().unwrap().to_string()).collect()
    };
    let newest_of_a = c.find(&Filter::all().eq("user", "a"), Find::default().sort("at", Order::Desc).limit(3)).await;
    assert_eq!(ids(newest_of_a.unwrap()), ["e8", "e6", "e4"]);
    let next = c.find(&Filter::all().eq("user", "a"), Find::default().sort("at", Order::Desc).skip(3).limit(3)).await;
    assert_eq!(ids(next.unwrap()), ["e2", "e0"]);
    let keyset = c.find(&Filter::all().eq("user", "a").lt("at", 4), Find::default().sort("at", Order::Desc)).await;
    assert_eq!(ids(keyset.unwrap()), ["e2", "e0"]);
    let range = Filter::all().gte("score", 1.0).lt("score", 2.5).ne("at", 3);
    assert_eq!(ids(c.find(&range, Find::default().sort("at", Order::Asc)).await.unwrap()), ["e2", "e4"]);
    let some = Filter::all().is_in("_id", ["e1", "e7", "zz"]).eq("ok", true);
    assert_eq!(ids(c.find(&some, Find::default()).await.unwrap()), ["e1"]);
    assert_eq!(c.count(&Filter::all().exists("note", true)).await.unwrap(), 1, "present, even as null");
    assert_eq!(c.count(&Filter::all().eq("note", json!(null))).await.unwrap(), 10, "null matches missing");
    assert_eq!(c.count(&Filter::all().gt("at", "0")).await.unwrap(), 0, "no order across kinds");
    assert_eq!(c.count(&Filter::all().is_in("user", Vec::<String>::new())).await.unwrap(), 0);
    assert_eq!(c.count(&Filter::all()).await.unwrap(), 10);
    assert_eq!(c.delete_many(&Filter::all().eq("user", "b").gte("at", 5)).await.unwrap(), 3);
    assert_eq!(c.count(&Filter::all()).await.unwrap(), 7);
    let empty = docs.collection("never_written").unwrap();
    assert!(empty.find(&Filter::all(), Find::default()).await.unwrap().is_empty());
}

async fn groups_count_and_sum_by_keys(docs: Documents) {
    let c = docs.collection("watch").unwrap();
    assert!(c.group(&Filter::all(), &["video"], &["seconds"]).await.unwrap().is_empty());
    let rows = [("v1", 1, 30), ("v1", 1, 15), ("v1", 2, 5), ("v2", 1, 60), ("v2", 2, 0)];
    for (i, (video, day, seconds)) in rows.iter().enumerate() {
        let doc = json!({"_id": format!("w{i}"), "video": video, "day": day, "seconds": seconds, "rendition": "720p"});
        c.insert(doc, None).await.unwrap();
    }
    c.insert(json!({"_id": "odd", "video": "v1", "day": 2}), None).await.unwrap();
    let g = |key: Vec<flick_documents::Value>, count: u64, sums: Vec<f64>| Group { key, count, sums };
    assert_eq!(
        c.group(&Filter::all().eq("video", "v1"), &["video", "day"], &["seconds"]).await.unwrap(),
        vec![g(vec![json!("v1"), json!(1)], 2, vec![45.0]), g(vec![json!("v1"), json!(2)], 2, vec![5.0])],
        "a missing field sums as 0"
    );
    assert_eq!(
        c.group(&Filter::all(), &["rendition"], &["seconds", "day"]).await.unwrap(),
        vec![g(vec![json!(null)], 1, vec![0.0, 2.0]), g(vec![json!("720p")], 5, vec![110.0, 7.0])],
        "a missing key groups as null, first"
    );
    assert_eq!(c.group(&Filter::all().gte("day", 2), &[], &["seconds"]).await.unwrap(), vec![g(vec![], 3, vec![5.0])]);
}

const INDEXES: &[Index] = &[
    Index { name: "by_owner_title", keys: &[("owner", Order::Asc), ("title", Order::Asc)], unique: true },
    Index { name: "by_owner_updated", keys: &[("owner", Order::Asc), ("updatedAt", Order::Desc)], unique: false },
];
const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "playlists", collections: &[("playlists", INDEXES)] },
    Migration { version: 2, name: "sessions", collections: &[("sessions", &[])] },
];

async fn migrations_apply_once_and_unique_indexes_refuse_duplicates(docs: Documents) {
    let applied = docs.migrate("test", MIGRATIONS).await.unwrap();
    assert_eq!(applied, ["test/0001_playlists", "test/0002_sessions"]);
    assert!(docs.migrate("test", MIGRATIONS).await.unwrap().is_empty(), "applied once");
    let c = docs.collection("playlists").unwrap();
    c.insert(json!({"_id": "p1", "owner": "u", "title": "Later"}), None).await.unwrap();
    c.insert(json!({"_id": "p2", "owner": "v", "title": "Later"}), None).await.unwrap();
    let taken = c.insert(json!({"_id": "p3", "owner": "u", "title": "Later"}), None).await;
    assert!(matches!(taken, Err(DocError::Duplicate(ref k)) if k != "_id"), "{taken:?}");
    let renamed = c.update("p2", &Filter::all(), &Update::new().set("owner", "u"), false).await;
    assert!(matches!(renamed, Err(DocError::Duplicate(_))), "{renamed:?}");
    let made = c.update("p4", &Filter::all().eq("owner", "u"), &Update::new().set("title", "Later"), true).await;
    assert!(matches!(made, Err(DocError::Duplicate(_))), "an upsert that would duplicate: {made:?}");
    assert_eq!(c.count(&Filter::all()).await.unwrap(), 2, "nothing written by the refused ones");
    let bad = [Migration {
        version: 1,
        name: "bad",
        collections: &[("x", &[Index { name: "i", keys: &[("a b", Order::Asc)], unique: false }])],
    }];
    assert!(matches!(docs.migrate("other", &bad).await, Err(DocError::Invalid(_))));
}

/// Per-document expiry: reads stop seeing a document when it expires (before storage is
/// reclaimed), and its id is free again.
async fn documents_expire_and_free_their_id(docs: Documents) {
    docs.migrate("test", MIGRATIONS).await.unwrap();
    let c = docs.collection("sessions").unwrap();
    let now = chrono::Utc::now();
    let ttl = Duration::from_millis(400);
    c.insert(json!({"_id": "old", "n": 1}), Some(now - chrono::Duration::seconds(1))).await.unwrap();
    c.insert(json!({"_id": "soon", "n": 1}), Some(now + ttl)).await.unwrap();
    c.insert(json!({"_id": "kept", "n": 1}), None).await.unwrap();
    assert_eq!(c.get("old").await.unwrap(), None, "already expired");
    assert!(c.get("soon").await.unwrap().is_some());
    let extended = Update::new().inc("n", 1).expires_at(now + chrono::Duration::hours(1));
    c.update("kept", &Filter::all(), &extended, false).await.unwrap();
    assert!(
        eventually(Duration::from_secs(3), || async { c.get("soon").await.unwrap().is_none() }).await,
        "expired after its time"
    );
    assert_eq!(c.count(&Filter::all()).await.unwrap(), 1);
    assert_eq!(c.update("soon", &Filter::all(), &Update::new().inc("n", 1), false).await.unwrap(), Updated::NotMatched);
    let renewed = c.update("soon", &Filter::all(), &Update::new().inc("n", 1), true).await.unwrap();
    assert_eq!(renewed, Updated::Applied(json!({"_id": "soon", "n": 1})), "a new document, not the expired one's");
    c.insert(json!({"_id": "old", "n": 7}), None).await.unwrap();
    assert_eq!(c.get("old").await.unwrap().unwrap()["n"], 7, "the expired id is free");
    assert_eq!(c.get("kept").await.unwrap().unwrap()["n"], 2);
    docs.sweep_expired().await.unwrap();
    assert_eq!(c.count(&Filter::all()).await.unwrap(), 3);
}

/// An outage is an `Unavailable` error (after the driver's 5 s server selection), never a
/// wrong answer, and the same connection works again once the server is back.
#[tokio::test]
async fn mongodb_outage_is_unavailable_and_the_connection_recovers() {
    require("The MongoDB-compatible server", &mongo_url(), 27017).await;
    let proxy = TcpProxy::start("127.0.0.1:27017").await;
    let url = format!("mongodb://{}/flick_test_{}?directConnection=true", proxy.addr, uuid::Uuid::new_v4().simple());
    let docs = Documents::connect(Some(&url), std::path::Path::new("/nonexistent"), "test").await.unwrap();
    let c = docs.collection("things").unwrap();
    c.insert(json!({"_id": "a", "n": 1}), None).await.unwrap();
    proxy.cut();
    let during = c.get("a").await;
    assert!(matches!(during, Err(DocError::Unavailable(_))), "{during:?}");
    proxy.restore();
    assert!(
        eventually(Duration::from_secs(10), || async { c.get("a").await.is_ok_and(|d| d.is_some()) }).await,
        "reads work again"
    );
    docs.drop_all().await.unwrap();
}
