//! The activity's documents: collections, their indexes, and every read and write of them as
//! named functions over domain types. No other module names a collection or a field.
//!
//! | collection | one document per | kept |
//! | --- | --- | --- |
//! | `videos` | video: owner, visibility, duration (from media's and the transcoder's events) | until deleted (then a tombstone) |
//! | `sessions` | viewer and player session: sequence, position, watched seconds, counted | 90 days (expiry) |
//! | `views` | viewer and video counted in the current window | the window (expiry) |
//! | `history` | user and video: last position, share watched | until removed |
//! | `settings` | user: history paused | until the user is deleted |
//! | `daily` | video and UTC day: views, watch seconds, seconds per rendition | for ever (no viewer in it) |
//! | `retention` | video: sessions that reached each 5% of the duration | for ever |
//! | `playlists` | playlist: owner, title, description, visibility, item count (watch later too) | until deleted |
//! | `playlist_items` | playlist and video: its place (a number between its neighbours') | until removed |

use crate::domain::{HistoryEntry, Session, VideoInfo, Visibility};
use crate::playlists::{Playlist, PlaylistItem};
use flick_platform::documents::{
    DocError, Documents, Filter, Find, Index, Migration, Order, Update, Updated, Value, json,
};

const BY_USER: Index = Index { name: "by_user", keys: &[("user", Order::Asc)], unique: false };
const BY_VIDEO: Index = Index { name: "by_video", keys: &[("videoId", Order::Asc)], unique: false };

pub const DOCUMENTS: &[Migration] = &[
    Migration {
        version: 1,
        name: "activity",
        collections: &[
            ("videos", &[]),
            ("sessions", &[BY_USER, BY_VIDEO]),
            ("views", &[BY_USER, BY_VIDEO]),
            (
                "history",
                &[
                    Index {
                        name: "by_user_recent",
                        keys: &[("user", Order::Asc), ("sortKey", Order::Desc)],
                        unique: false,
                    },
                    BY_VIDEO,
                ],
            ),
            ("settings", &[]),
            (
                "daily",
                &[
                    Index {
                        name: "by_video_day",
                        keys: &[("videoId", Order::Asc), ("day", Order::Asc)],
                        unique: false,
                    },
                    Index { name: "by_owner_day", keys: &[("owner", Order::Asc), ("day", Order::Asc)], unique: false },
                ],
            ),
            ("retention", &[Index { name: "by_owner", keys: &[("owner", Order::Asc)], unique: false }]),
        ],
    },
    Migration {
        version: 2,
        name: "playlists",
        collections: &[
            (
                "playlists",
                &[Index {
                    name: "by_owner_created",
                    keys: &[("owner", Order::Asc), ("sortKey", Order::Desc)],
                    unique: false,
                }],
            ),
            (
                "playlist_items",
                &[
                    Index {
                        name: "by_playlist_place",
                        keys: &[("playlist", Order::Asc), ("place", Order::Asc)],
                        unique: false,
                    },
                    BY_VIDEO,
                ],
            ),
        ],
    },
];

/// Retention buckets: one per 5% of the duration, 0 (started) to 20 (the end).
pub const BUCKETS: u32 = 20;

fn str_of(d: &Value, field: &str) -> String {
    d.get(field).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn f64_of(d: &Value, field: &str) -> f64 {
    d.get(field).and_then(Value::as_f64).unwrap_or(0.0)
}

fn i64_of(d: &Value, field: &str) -> i64 {
    d.get(field).and_then(Value::as_i64).unwrap_or(0)
}

// ---------- videos ----------

pub async fn video(docs: &Documents, id: &str) -> Result<Option<VideoInfo>, DocError> {
    Ok(docs.collection("videos")?.get(id).await?.and_then(|d| video_of(&d)))
}

pub async fn videos(docs: &Documents, ids: &[String]) -> Result<Vec<VideoInfo>, DocError> {
    let found =
        docs.collection("videos")?.find(&Filter::all().is_in("_id", ids.iter().cloned()), Find::default()).await?;
    Ok(found.iter().filter_map(video_of).collect())
}

/// None for a tombstone or a video only the transcoder has told of so far.
fn video_of(d: &Value) -> Option<VideoInfo> {
    if d.get("deleted").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    Some(VideoInfo {
        id: str_of(d, "_id"),
        owner: d.get("owner").and_then(Value::as_str)?.to_string(),
        visibility: Visibility::parse(d.get("visibility").and_then(Value::as_str)?)?,
        duration_seconds: d.get("durationSeconds").and_then(Value::as_f64),
    })
}

/// Media's view of a video, applied when newer than what is stored (events may be reordered).
pub async fn save_video(
    docs: &Documents,
    id: &str,
    owner: &str,
    visibility: Visibility,
    version: i64,
) -> Result<bool, DocError> {
    let update = Update::new().set("owner", owner).set("visibility", visibility.as_str()).set("version", version);
    let applied = docs.collection("videos")?.update(id, &Filter::all().lt("version", version), &update, true).await?;
    Ok(matches!(applied, Updated::Applied(_)))
}

/// What media answered about a video no event has told of, kept at version 0 (any event
/// replaces it) unless an event's copy or a tombstone is there already; false then.
pub async fn remember_video(docs: &Documents, v: &VideoInfo) -> Result<bool, DocError> {
    let mut update = Update::new()
        .set("owner", v.owner.as_str())
        .set("visibility", v.visibility.as_str())
        .set_on_insert("version", 0);
    if let Some(d) = v.duration_seconds {
        update = update.set("durationSeconds", d);
    }
    let unknown = Filter::all().exists("owner", false).ne("deleted", true);
    let applied = docs.collection("videos")?.update(&v.id, &unknown, &update, true).await?;
    Ok(matches!(applied, Updated::Applied(_)))
}

/// The transcoder's duration; the video may not be known yet (its version starts at 0 then).
pub async fn set_duration(docs: &Documents, id: &str, seconds: f64) -> Result<(), DocError> {
    let update = Update::new().set("durationSeconds", seconds).set_on_insert("version", 0);
    docs.collection("videos")?.update(id, &Filter::all(), &update, true).await?;
    Ok(())
}

/// A deleted video stays as a tombstone, so late updates cannot bring it back.
pub async fn tombstone_video(docs: &Documents, id: &str) -> Result<(), DocError> {
    let update = Update::new().set("deleted", true).set("version", i64::MAX).unset("owner").unset("visibility");
    docs.collection("videos")?.update(id, &Filter::all(), &update, true).await?;
    Ok(())
}

/// Everything kept of a video's audience (it was deleted).
pub async fn delete_video_activity(docs: &Documents, id: &str) -> Result<u64, DocError> {
    let mut n = 0;
    for collection in ["sessions", "views", "history", "daily"] {
        n += docs.collection(collection)?.delete_many(&Filter::all().eq("videoId", id)).await?;
    }
    n += u64::from(docs.collection("retention")?.delete(id).await?);
    Ok(n)
}

/// Everything kept of a user as a viewer: sessions, views, history, settings. Daily
/// aggregates and retention counts hold no viewer and stay.
pub async fn delete_user_activity(docs: &Documents, user: &str) -> Result<u64, DocError> {
    let mut n = 0;
    for collection in ["sessions", "views", "history"] {
        n += docs.collection(collection)?.delete_many(&Filter::all().eq("user", user)).await?;
    }
    n += u64::from(docs.collection("settings")?.delete(user).await?);
    Ok(n)
}

// ---------- sessions ----------

pub async fn session(docs: &Documents, key: &str) -> Result<Option<Session>, DocError> {
    Ok(docs.collection("sessions")?.get(key).await?.map(|d| session_of(&d)))
}

fn session_of(d: &Value) -> Session {
    Session {
        key: str_of(d, "_id"),
        video_id: str_of(d, "videoId"),
        sequence: i64_of(d, "seq"),
        position_seconds: f64_of(d, "position"),
        max_position_seconds: f64_of(d, "maxPosition"),
        watched_seconds: f64_of(d, "watched"),
        updated_at_ms: i64_of(d, "updatedAt"),
        counted: d.get("counted").and_then(Value::as_bool).unwrap_or(false),
    }
}

/// One heartbeat's change of a session.
pub struct Beat<'a> {
    pub viewer: &'a str,
    pub user: Option<&'a str>,
    pub video_id: &'a str,
    pub sequence: i64,
    pub position_seconds: f64,
    pub watched_increment: f64,
    pub rendition: Option<&'a str>,
    pub now_ms: i64,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Applies a heartbeat if the session is still as `previous` saw it (optimistic: a
/// concurrent heartbeat of the same session makes this `None`, and the caller reads again).
pub async fn advance_session(
    docs: &Documents,
    key: &str,
    previous: Option<&Session>,
    beat: &Beat<'_>,
) -> Result<Option<Session>, DocError> {
    let mut update = Update::new()
        .set("seq", beat.sequence)
        .set("position", beat.position_seconds)
        .set("updatedAt", beat.now_ms)
        .inc("watched", beat.watched_increment)
        .max("maxPosition", beat.position_seconds)
        .expires_at(beat.expires_at);
    if let Some(r) = beat.rendition {
        update = update.set("rendition", r);
    }
    let filter = match previous {
        Some(p) => Filter::all().eq("seq", p.sequence),
        None => {
            update = update
                .set_on_insert("viewer", beat.viewer)
                .set_on_insert("videoId", beat.video_id)
                .set_on_insert("startedAt", beat.now_ms)
                .set_on_insert("counted", false);
            if let Some(user) = beat.user {
                update = update.set_on_insert("user", user);
            }
            Filter::all()
        }
    };
    let sessions = docs.collection("sessions")?;
    match sessions.update(key, &filter, &update, previous.is_none()).await {
        Ok(Updated::Applied(d)) => Ok(Some(session_of(&d))),
        Ok(Updated::NotMatched) => Ok(None),
        // Created meanwhile by a concurrent first heartbeat.
        Err(DocError::Duplicate(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Marks the session's view counted; false when another request did first.
pub async fn claim_view(docs: &Documents, key: &str, counted: bool) -> Result<bool, DocError> {
    let update = Update::new().set("counted", counted);
    let done = docs.collection("sessions")?.update(key, &Filter::all().eq("counted", !counted), &update, false).await?;
    Ok(matches!(done, Updated::Applied(_)))
}

/// Records that `viewer` was counted for the video until `until`; false when they already
/// were within the window.
pub async fn mark_viewed(
    docs: &Documents,
    viewer: &str,
    user: Option<&str>,
    video_id: &str,
    until: chrono::DateTime<chrono::Utc>,
) -> Result<bool, DocError> {
    let mut doc = json!({ "_id": format!("{viewer}|{video_id}"), "videoId": video_id });
    if let Some(user) = user {
        doc["user"] = json!(user);
    }
    match docs.collection("views")?.insert(doc, Some(until)).await {
        Ok(()) => Ok(true),
        Err(DocError::Duplicate(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

pub async fn unmark_viewed(docs: &Documents, viewer: &str, video_id: &str) -> Result<(), DocError> {
    docs.collection("views")?.delete(&format!("{viewer}|{video_id}")).await?;
    Ok(())
}

// ---------- aggregates ----------

/// Adds watch time (and views) to the video's day, and seconds to each rendition played.
pub async fn add_to_day(
    docs: &Documents,
    video_id: &str,
    owner: &str,
    day: &str,
    watched_seconds: f64,
    views: i64,
    renditions: &[(&str, f64)],
) -> Result<(), DocError> {
    let mut update = Update::new()
        .set_on_insert("videoId", video_id)
        .set_on_insert("owner", owner)
        .set_on_insert("day", day)
        .inc("watchSeconds", watched_seconds)
        .inc("views", views);
    for (r, seconds) in renditions {
        update = update.inc(&format!("renditions.{r}"), *seconds);
    }
    docs.collection("daily")?.update(&format!("{video_id}|{day}"), &Filter::all(), &update, true).await?;
    Ok(())
}

/// Adds `counts[b]` sessions to each retention bucket `b`.
pub async fn add_to_retention(docs: &Documents, video_id: &str, owner: &str, counts: &[i64]) -> Result<(), DocError> {
    let mut update = Update::new().set_on_insert("owner", owner);
    for (b, n) in counts.iter().enumerate().take(BUCKETS as usize + 1).filter(|(_, n)| **n != 0) {
        update = update.inc(&format!("b{b}"), *n);
    }
    docs.collection("retention")?.update(video_id, &Filter::all(), &update, true).await?;
    Ok(())
}

// ---------- history and settings ----------

pub async fn save_history(
    docs: &Documents,
    user: &str,
    video_id: &str,
    position_seconds: f64,
    watched_fraction: Option<f64>,
    now_ms: i64,
) -> Result<(), DocError> {
    let mut update = Update::new()
        .set("user", user)
        .set("videoId", video_id)
        .set("position", position_seconds)
        .set("updatedAt", now_ms)
        // Newest first with one string key: the time, zero-padded, then the video for ties.
        .set("sortKey", format!("{now_ms:015}|{video_id}"));
    update = match watched_fraction {
        Some(f) => update.set("fraction", f),
        None => update.unset("fraction"),
    };
    docs.collection("history")?.update(&format!("{user}|{video_id}"), &Filter::all(), &update, true).await?;
    Ok(())
}

fn history_of(d: &Value) -> HistoryEntry {
    HistoryEntry {
        video_id: str_of(d, "videoId"),
        position_seconds: f64_of(d, "position"),
        watched_fraction: d.get("fraction").and_then(Value::as_f64),
        updated_at_ms: i64_of(d, "updatedAt"),
        sort_key: str_of(d, "sortKey"),
    }
}

/// The user's entries for these videos.
pub async fn history_of_videos(
    docs: &Documents,
    user: &str,
    video_ids: &[String],
) -> Result<Vec<HistoryEntry>, DocError> {
    let keys = video_ids.iter().map(|v| format!("{user}|{v}"));
    let found = docs.collection("history")?.find(&Filter::all().is_in("_id", keys), Find::default()).await?;
    Ok(found.iter().map(history_of).collect())
}

/// Newest first, after the cursor's sort key; `unfinished` keeps entries started and watched
/// less than that share.
pub async fn history_page(
    docs: &Documents,
    user: &str,
    after: Option<&str>,
    limit: u64,
    unfinished: Option<f64>,
) -> Result<Vec<HistoryEntry>, DocError> {
    let mut filter = Filter::all().eq("user", user);
    if let Some(after) = after {
        filter = filter.lt("sortKey", after);
    }
    if let Some(share) = unfinished {
        filter = filter.lt("fraction", share).gt("position", 0.0);
    }
    let found =
        docs.collection("history")?.find(&filter, Find::default().sort("sortKey", Order::Desc).limit(limit)).await?;
    Ok(found.iter().map(history_of).collect())
}

pub async fn remove_history(docs: &Documents, user: &str, video_id: &str) -> Result<bool, DocError> {
    docs.collection("history")?.delete(&format!("{user}|{video_id}")).await
}

pub async fn clear_history(docs: &Documents, user: &str) -> Result<u64, DocError> {
    docs.collection("history")?.delete_many(&Filter::all().eq("user", user)).await
}

pub async fn history_paused(docs: &Documents, user: &str) -> Result<bool, DocError> {
    let settings = docs.collection("settings")?.get(user).await?;
    Ok(settings.and_then(|d| d.get("historyPaused").and_then(Value::as_bool)).unwrap_or(false))
}

pub async fn set_history_paused(docs: &Documents, user: &str, paused: bool) -> Result<(), DocError> {
    let update = Update::new().set("historyPaused", paused);
    docs.collection("settings")?.update(user, &Filter::all(), &update, true).await?;
    Ok(())
}

// ---------- analytics ----------

/// One video's day: views and watch seconds, seconds per rendition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Day {
    pub day: String,
    pub views: i64,
    pub watch_seconds: f64,
    pub renditions: Vec<(String, f64)>,
}

/// The video's days from `from` to `to` (inclusive, `YYYY-MM-DD`), oldest first.
pub async fn video_days(docs: &Documents, video_id: &str, from: &str, to: &str) -> Result<Vec<Day>, DocError> {
    let filter = Filter::all().eq("videoId", video_id).gte("day", from).lte("day", to);
    let found = docs.collection("daily")?.find(&filter, Find::default().sort("day", Order::Asc)).await?;
    Ok(found
        .iter()
        .map(|d| Day {
            day: str_of(d, "day"),
            views: i64_of(d, "views"),
            watch_seconds: f64_of(d, "watchSeconds"),
            renditions: d
                .get("renditions")
                .and_then(Value::as_object)
                .map(|r| r.iter().map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(0.0))).collect())
                .unwrap_or_default(),
        })
        .collect())
}

/// A channel's days (every video of `owner` summed per day), oldest first.
pub async fn channel_days(docs: &Documents, owner: &str, from: &str, to: &str) -> Result<Vec<Day>, DocError> {
    let filter = Filter::all().eq("owner", owner).gte("day", from).lte("day", to);
    let groups = docs.collection("daily")?.group(&filter, &["day"], &["views", "watchSeconds"]).await?;
    Ok(groups
        .into_iter()
        .map(|g| Day {
            day: g.key[0].as_str().unwrap_or_default().to_string(),
            views: g.sums[0] as i64,
            watch_seconds: g.sums[1],
            renditions: Vec::new(),
        })
        .collect())
}

/// A channel's videos with their views and watch seconds in the range, most viewed first.
pub async fn channel_videos(
    docs: &Documents,
    owner: &str,
    from: &str,
    to: &str,
) -> Result<Vec<(String, i64, f64)>, DocError> {
    let filter = Filter::all().eq("owner", owner).gte("day", from).lte("day", to);
    let groups = docs.collection("daily")?.group(&filter, &["videoId"], &["views", "watchSeconds"]).await?;
    let mut videos: Vec<(String, i64, f64)> = groups
        .into_iter()
        .map(|g| (g.key[0].as_str().unwrap_or_default().to_string(), g.sums[0] as i64, g.sums[1]))
        .collect();
    videos.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.total_cmp(&a.2)).then(a.0.cmp(&b.0)));
    Ok(videos)
}

/// Sessions that reached each retention bucket (0: started … 20: the end), since the first.
pub async fn retention(docs: &Documents, video_id: &str) -> Result<Vec<i64>, DocError> {
    let doc = docs.collection("retention")?.get(video_id).await?;
    Ok((0..=BUCKETS).map(|b| doc.as_ref().map_or(0, |d| i64_of(d, &format!("b{b}")))).collect())
}

// ---------- playlists ----------

fn playlist_of(d: &Value) -> Option<Playlist> {
    Some(Playlist {
        id: str_of(d, "_id"),
        owner: str_of(d, "owner"),
        title: str_of(d, "title"),
        description: str_of(d, "description"),
        visibility: Visibility::parse(d.get("visibility").and_then(Value::as_str)?)?,
        watch_later: d.get("watchLater").and_then(Value::as_bool).unwrap_or(false),
        item_count: i64_of(d, "itemCount"),
        created_at_ms: i64_of(d, "createdAt"),
        sort_key: str_of(d, "sortKey"),
    })
}

pub async fn playlist(docs: &Documents, id: &str) -> Result<Option<Playlist>, DocError> {
    Ok(docs.collection("playlists")?.get(id).await?.as_ref().and_then(playlist_of))
}

/// Creates the playlist; `Duplicate` when the id is taken (a user's watch later, made once).
pub async fn create_playlist(docs: &Documents, p: &Playlist) -> Result<(), DocError> {
    let doc = json!({
        "_id": p.id, "owner": p.owner, "title": p.title, "description": p.description,
        "visibility": p.visibility.as_str(), "watchLater": p.watch_later, "itemCount": 0,
        "createdAt": p.created_at_ms, "sortKey": p.sort_key,
    });
    docs.collection("playlists")?.insert(doc, None).await
}

pub async fn update_playlist(
    docs: &Documents,
    id: &str,
    title: Option<&str>,
    description: Option<&str>,
    visibility: Option<Visibility>,
) -> Result<Option<Playlist>, DocError> {
    let mut update = Update::new();
    if let Some(t) = title {
        update = update.set("title", t);
    }
    if let Some(d) = description {
        update = update.set("description", d);
    }
    if let Some(v) = visibility {
        update = update.set("visibility", v.as_str());
    }
    match docs.collection("playlists")?.update(id, &Filter::all(), &update, false).await? {
        Updated::Applied(d) => Ok(playlist_of(&d)),
        Updated::NotMatched => Ok(None),
    }
}

/// The owner's playlists, newest first, after the cursor's sort key.
pub async fn playlists_of(
    docs: &Documents,
    owner: &str,
    public_only: bool,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Playlist>, DocError> {
    let mut filter = Filter::all().eq("owner", owner);
    if let Some(after) = after {
        filter = filter.lt("sortKey", after);
    }
    if public_only {
        filter = filter.eq("visibility", Visibility::Public.as_str());
    }
    let found =
        docs.collection("playlists")?.find(&filter, Find::default().sort("sortKey", Order::Desc).limit(limit)).await?;
    Ok(found.iter().filter_map(playlist_of).collect())
}

/// Counts one more item unless the playlist is full; false when it is (or is gone).
pub async fn reserve_item(docs: &Documents, playlist: &str, max_items: i64) -> Result<bool, DocError> {
    let update = Update::new().inc("itemCount", 1);
    let done = docs
        .collection("playlists")?
        .update(playlist, &Filter::all().lt("itemCount", max_items), &update, false)
        .await?;
    Ok(matches!(done, Updated::Applied(_)))
}

pub async fn count_items(docs: &Documents, playlist: &str, by: i64) -> Result<(), DocError> {
    docs.collection("playlists")?.update(playlist, &Filter::all(), &Update::new().inc("itemCount", by), false).await?;
    Ok(())
}

fn item_of(d: &Value) -> PlaylistItem {
    PlaylistItem {
        playlist: str_of(d, "playlist"),
        video_id: str_of(d, "videoId"),
        place: f64_of(d, "place"),
        added_at_ms: i64_of(d, "addedAt"),
    }
}

/// Adds the video at `place`; false when it is in the playlist already.
pub async fn insert_item(docs: &Documents, item: &PlaylistItem) -> Result<bool, DocError> {
    let doc = json!({
        "_id": format!("{}|{}", item.playlist, item.video_id), "playlist": item.playlist,
        "videoId": item.video_id, "place": item.place, "addedAt": item.added_at_ms,
    });
    match docs.collection("playlist_items")?.insert(doc, None).await {
        Ok(()) => Ok(true),
        Err(DocError::Duplicate(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

pub async fn item(docs: &Documents, playlist: &str, video_id: &str) -> Result<Option<PlaylistItem>, DocError> {
    Ok(docs.collection("playlist_items")?.get(&format!("{playlist}|{video_id}")).await?.as_ref().map(item_of))
}

pub async fn delete_item(docs: &Documents, playlist: &str, video_id: &str) -> Result<bool, DocError> {
    docs.collection("playlist_items")?.delete(&format!("{playlist}|{video_id}")).await
}

pub async fn set_place(docs: &Documents, playlist: &str, video_id: &str, place: f64) -> Result<(), DocError> {
    let update = Update::new().set("place", place);
    docs.collection("playlist_items")?
        .update(&format!("{playlist}|{video_id}"), &Filter::all(), &update, false)
        .await?;
    Ok(())
}

/// Items in order, from the `skip`th; `after`: only places after this one.
pub async fn items(
    docs: &Documents,
    playlist: &str,
    after: Option<f64>,
    skip: u64,
    limit: u64,
) -> Result<Vec<PlaylistItem>, DocError> {
    let mut filter = Filter::all().eq("playlist", playlist);
    if let Some(place) = after {
        filter = filter.gt("place", place);
    }
    let find = Find::default().sort("place", Order::Asc).skip(skip).limit(limit);
    Ok(docs.collection("playlist_items")?.find(&filter, find).await?.iter().map(item_of).collect())
}

/// A video of a playlist and its place.
pub type PlaceOf = (String, f64);

/// Every item's place, in order (a move looks at its new neighbours).
pub async fn places(docs: &Documents, playlist: &str) -> Result<Vec<PlaceOf>, DocError> {
    let find = Find::default().sort("place", Order::Asc);
    let found = docs.collection("playlist_items")?.find(&Filter::all().eq("playlist", playlist), find).await?;
    Ok(found.iter().map(|d| (str_of(d, "videoId"), f64_of(d, "place"))).collect())
}

/// The last item's place (new items go after it).
pub async fn last_place(docs: &Documents, playlist: &str) -> Result<Option<f64>, DocError> {
    let find = Find::default().sort("place", Order::Desc).limit(1);
    let found = docs.collection("playlist_items")?.find(&Filter::all().eq("playlist", playlist), find).await?;
    Ok(found.first().map(|d| f64_of(d, "place")))
}

/// Deletes the playlist and its items.
pub async fn delete_playlist(docs: &Documents, id: &str) -> Result<bool, DocError> {
    docs.collection("playlist_items")?.delete_many(&Filter::all().eq("playlist", id)).await?;
    docs.collection("playlists")?.delete(id).await
}

/// Takes a deleted video out of every playlist (their counts follow).
pub async fn remove_video_everywhere(docs: &Documents, video_id: &str) -> Result<u64, DocError> {
    let items = docs.collection("playlist_items")?;
    let found = items.find(&Filter::all().eq("videoId", video_id), Find::default()).await?;
    for d in &found {
        let item = item_of(d);
        if items.delete(&format!("{}|{}", item.playlist, item.video_id)).await? {
            count_items(docs, &item.playlist, -1).await?;
        }
    }
    Ok(found.len() as u64)
}

/// A deleted user's playlists and their items.
pub async fn delete_playlists_of(docs: &Documents, owner: &str) -> Result<u64, DocError> {
    let mut n = 0;
    loop {
        let page = playlists_of(docs, owner, false, None, 100).await?;
        if page.is_empty() {
            return Ok(n);
        }
        for p in page {
            n += u64::from(delete_playlist(docs, &p.id).await?);
        }
    }
}
