//! REST for a video's processing and playback: `GET/PATCH/DELETE /video/{id}` and the HLS
//! and DASH files under `/video/{id}/hls/…` and `/video/{id}/dash/…` (one set of CMAF
//! segments serves both), with range requests, content types and cache headers. Fetching
//! them is not a view: views come from the players' heartbeats to the activity service.

use crate::domain::{Transcoder, VideoStatus, Visibility, media_prefix, storage_error};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flick_kit::{AppError, Caller};

pub fn routes(transcoder: Transcoder) -> Router {
    Router::new()
        .route("/video/{id}", get(show).patch(retry).delete(remove))
        .route("/video/{id}/hls/{*path}", get(file))
        .route("/video/{id}/dash/{*path}", get(file))
        .with_state(transcoder)
}

async fn show(State(t): State<Transcoder>, caller: Caller, Path(id): Path<String>) -> Result<Response, AppError> {
    let video = t.watchable(&caller, &id).await?.ok_or_else(|| AppError::not_found("no such video"))?;
    Ok(axum::Json(t.view(&video, &caller)).into_response())
}

async fn retry(State(t): State<Transcoder>, caller: Caller, Path(id): Path<String>) -> Result<Response, AppError> {
    let video = t.retry(&caller, &id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(t.view(&video, &caller))).into_response())
}

async fn remove(State(t): State<Transcoder>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode, AppError> {
    t.delete_media(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "m3u8" => "application/vnd.apple.mpegurl",
        "mpd" => "application/dash+xml",
        "m4s" => "video/iso.segment",
        "mp4" => "video/mp4",
        "m4a" => "audio/mp4",
        "jpg" | "jpeg" => "image/jpeg",
        "vtt" => "text/vtt; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against an object of `size` bytes.
fn parse_range(value: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let spec = value.strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (a.parse().ok()?, size - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(size - 1)),
    };
    (start <= end && start < size).then_some(start..end + 1)
}

async fn file(
    State(t): State<Transcoder>,
    caller: Caller,
    Path((id, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let video = t.watchable(&caller, &id).await?.ok_or_else(|| AppError::not_found("no such video"))?;
    if !video.playable() {
        return Err(AppError::not_found("the video is not ready yet"));
    }
    if path.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(AppError::not_found("no such file"));
    }
    let key = format!("{}/{path}", media_prefix(&video.id));
    let info =
        t.storage().head(&key).await.map_err(storage_error)?.ok_or_else(|| AppError::not_found("no such file"))?;
    let etag = info.e_tag.clone().map(|e| if e.starts_with('"') { e } else { format!("\"{e}\"") });
    let mut out = HeaderMap::new();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&path)));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Segments never change for a given source; playlists may when a video is re-encoded.
    let playlist = path.ends_with(".m3u8") || path.ends_with(".mpd");
    // While a long video is still encoding its playlists grow: players must refetch them.
    let growing = playlist && video.status != VideoStatus::Ready;
    let scope = if video.visibility == Visibility::Private { "private" } else { "public" };
    let cache = match (growing, playlist) {
        (true, _) => "no-cache".to_string(),
        (false, true) => format!("{scope}, max-age=10"),
        (false, false) => format!("{scope}, max-age=86400"),
    };
    out.insert(header::CACHE_CONTROL, HeaderValue::from_str(&cache).expect("ascii"));
    if let Some(tag) = &etag
        && let Ok(v) = HeaderValue::from_str(tag)
    {
        out.insert(header::ETAG, v);
        if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(tag.as_str()) {
            return Ok((StatusCode::NOT_MODIFIED, out).into_response());
        }
    }
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    match range {
        Some(value) => {
            let Some(r) = parse_range(value, info.size) else {
                out.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{}", info.size)).expect("ascii"),
                );
                return Ok((StatusCode::RANGE_NOT_SATISFIABLE, out).into_response());
            };
            let bytes = t.storage().get_range(&key, r.clone()).await.map_err(storage_error)?;
            let content_range = format!("bytes {}-{}/{}", r.start, r.end - 1, info.size);
            out.insert(header::CONTENT_RANGE, HeaderValue::from_str(&content_range).expect("ascii"));
            Ok((StatusCode::PARTIAL_CONTENT, out, bytes).into_response())
        }
        None => {
            let stream = t.storage().get_stream(&key).await.map_err(storage_error)?;
            out.insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
            Ok((StatusCode::OK, out, Body::from_stream(stream)).into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_are_clamped_to_the_object() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some(0..100));
        assert_eq!(parse_range("bytes=900-", 1000), Some(900..1000));
        assert_eq!(parse_range("bytes=-100", 1000), Some(900..1000));
        assert_eq!(parse_range("bytes=990-2000", 1000), Some(990..1000));
        assert_eq!(parse_range("bytes=1000-", 1000), None);
        assert_eq!(parse_range("bytes=5-1", 1000), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
    }
}
