//! `POST /activity/heartbeat`: players that prefer REST report playback in batches (a player
//! that was offline sends what it kept). The edge routes `/activity` here with its ForwardAuth
//! (the caller, or anonymous) and the client's address in `X-Forwarded-For`.

use crate::domain::{Activity, Heartbeat, viewer_key};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use flick_kit::rest::Json;
use flick_kit::{AppError, Caller};
use serde::Deserialize;
use std::net::SocketAddr;

/// Most heartbeats in one request.
pub const MAX_BATCH: usize = 50;

pub fn routes(activity: Activity) -> Router {
    Router::new().route("/activity/heartbeat", post(heartbeats)).with_state(activity)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    heartbeats: Vec<HeartbeatBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HeartbeatBody {
    video_id: String,
    session_id: String,
    sequence: i64,
    position_seconds: f64,
    watched_seconds: f64,
    #[serde(default)]
    rendition: Option<String>,
}

/// Each heartbeat is recorded on its own, in order (a session counts once against the rate
/// limit per batch): the answer has one result per heartbeat, what it did or its error
/// (`{"error": {"code", "message", "fields"}}`), so one bad item does not lose the others.
async fn heartbeats(
    State(activity): State<Activity>,
    caller: Caller,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Json(batch): Json<Batch>,
) -> Result<Response, AppError> {
    if batch.heartbeats.is_empty() || batch.heartbeats.len() > MAX_BATCH {
        return Err(AppError::bad_input(format!("heartbeats must hold 1 to {MAX_BATCH} items"))
            .with_field("heartbeats", "1 to 50 items"));
    }
    let address = flick_kit::identity::client_address(&headers, peer.map(|Extension(ConnectInfo(a))| a));
    let pseudonym = address.as_deref().map(flick_kit::identity::address_pseudonym);
    let beats: Vec<(String, Heartbeat)> = batch
        .heartbeats
        .into_iter()
        .map(|b| {
            let viewer = viewer_key(&caller, pseudonym.clone(), &b.session_id);
            let hb = Heartbeat {
                video_id: b.video_id,
                session_id: b.session_id,
                sequence: b.sequence,
                position_seconds: b.position_seconds,
                watched_seconds: b.watched_seconds,
                rendition: b.rendition,
            };
            (viewer, hb)
        })
        .collect();
    let results: Vec<serde_json::Value> = activity
        .record_batch(&caller, &beats)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(r) => serde_json::json!({
                "applied": r.applied,
                "viewCounted": r.view_counted,
                "positionSeconds": r.position_seconds,
                "watchedSeconds": r.watched_seconds,
            }),
            Err(e) => e.body(),
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "results": results })).into_response())
}
