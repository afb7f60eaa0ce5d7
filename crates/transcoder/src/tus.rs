//! tus 1.0 over HTTP (core, creation, creation-with-upload, creation-defer-length,
//! termination, expiration, checksum): header parsing and responses only; the work is in
//! `uploads`.

use crate::domain::{Transcoder, Upload, UploadState};
use crate::uploads::{CHECKSUM_ALGORITHMS, Checksum, NewUpload};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{options, post};
use flick_kit::{AppError, Caller, ErrorCode};

pub const TUS_VERSION: &str = "1.0.0";
const EXTENSIONS: &str = "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum";
const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

pub fn routes(transcoder: Transcoder) -> Router {
    Router::new()
        .route("/video/upload", post(create).options(discover))
        .route("/video/upload/{id}", options(discover).head(head).patch(patch).delete(terminate))
        .with_state(transcoder)
}

fn tus_headers(headers: &mut HeaderMap) {
    headers.insert(HeaderName::from_static("tus-resumable"), HeaderValue::from_static(TUS_VERSION));
}

/// An error with the tus headers a client expects on every response.
fn error(e: AppError) -> Response {
    let mut response = e.into_response();
    tus_headers(response.headers_mut());
    response
}

fn require_tus(headers: &HeaderMap) -> Result<(), AppError> {
    match headers.get("tus-resumable").and_then(|v| v.to_str().ok()) {
        Some(TUS_VERSION) => Ok(()),
        Some(other) => Err(AppError::new(
            ErrorCode::PreconditionFailed,
            format!("tus version {other} is not supported; use {TUS_VERSION}"),
        )),
        None => Err(AppError::new(ErrorCode::PreconditionFailed, "the Tus-Resumable: 1.0.0 header is required")),
    }
}

fn header_i64(headers: &HeaderMap, name: &str) -> Result<Option<i64>, AppError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| AppError::bad_input(format!("{name} must be a non-negative integer"))),
    }
}

/// `Upload-Metadata: key base64,key2 base64` → the value of `key`, decoded.
pub fn metadata_value(raw: &str, key: &str) -> Option<String> {
    use base64::Engine as _;
    raw.split(',').find_map(|pair| {
        let mut it = pair.trim().splitn(2, ' ');
        let k = it.next()?;
        if k != key {
            return None;
        }
        let v = it.next().unwrap_or("");
        base64::engine::general_purpose::STANDARD.decode(v.trim()).ok().and_then(|b| String::from_utf8(b).ok())
    })
}

fn http_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn upload_headers(upload: &Upload, headers: &mut HeaderMap) {
    tus_headers(headers);
    let set = |headers: &mut HeaderMap, name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set(headers, "upload-offset", upload.offset.to_string());
    match upload.length {
        Some(length) => set(headers, "upload-length", length.to_string()),
        None => set(headers, "upload-defer-length", "1".into()),
    }
    if upload.state == UploadState::Uploading {
        set(headers, "upload-expires", http_date(upload.expires_at_ms));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

async fn discover(State(t): State<Transcoder>) -> Response {
    let mut headers = HeaderMap::new();
    tus_headers(&mut headers);
    headers.insert(HeaderName::from_static("tus-version"), HeaderValue::from_static(TUS_VERSION));
    headers.insert(HeaderName::from_static("tus-extension"), HeaderValue::from_static(EXTENSIONS));
    headers.insert(HeaderName::from_static("tus-checksum-algorithm"), HeaderValue::from_static(CHECKSUM_ALGORITHMS));
    if let Ok(v) = HeaderValue::from_str(&t.config().max_upload_bytes.to_string()) {
        headers.insert(HeaderName::from_static("tus-max-size"), v);
    }
    (StatusCode::NO_CONTENT, headers).into_response()
}

/// POST /video/upload: `Upload-Length` (or `Upload-Defer-Length: 1`) and `Upload-Metadata`
/// with `videoId`; a body with `Content-Type: application/offset+octet-stream` is the first
/// chunk (creation-with-upload).
async fn create(State(t): State<Transcoder>, caller: Caller, headers: HeaderMap, body: Body) -> Response {
    match create_inner(&t, &caller, &headers, body).await {
        Ok(r) => r,
        Err(e) => error(e),
    }
}

async fn create_inner(t: &Transcoder, caller: &Caller, headers: &HeaderMap, body: Body) -> Result<Response, AppError> {
    require_tus(headers)?;
    caller.require_user()?;
    let length = header_i64(headers, "upload-length")?;
    let deferred = headers.get("upload-defer-length").and_then(|v| v.to_str().ok()) == Some("1");
    if length.is_none() && !deferred {
        return Err(AppError::bad_input("Upload-Length (or Upload-Defer-Length: 1) is required"));
    }
    let metadata = headers.get("upload-metadata").and_then(|v| v.to_str().ok()).unwrap_or("");
    let video_id =
        metadata_value(metadata, "videoId").or_else(|| metadata_value(metadata, "video_id")).ok_or_else(|| {
            AppError::bad_input("Upload-Metadata must carry videoId (create the video with createVideo first)")
        })?;
    let mut upload = t.create_upload(caller, NewUpload { video_id: &video_id, length, metadata }).await?;
    let with_body = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) == Some(OFFSET_OCTET_STREAM);
    if with_body {
        let checksum = checksum(headers)?;
        upload = t.append(caller, &upload.id, 0, None, checksum, body.into_data_stream()).await?;
    }
    let mut response = StatusCode::CREATED.into_response();
    upload_headers(&upload, response.headers_mut());
    if let Ok(v) = HeaderValue::from_str(&format!("/video/upload/{}", upload.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

fn checksum(headers: &HeaderMap) -> Result<Option<Checksum>, AppError> {
    headers.get("upload-checksum").and_then(|v| v.to_str().ok()).map(Checksum::parse).transpose()
}

async fn head(State(t): State<Transcoder>, caller: Caller, Path(id): Path<String>) -> Response {
    match t.upload_status(&caller, &id).await {
        Ok(upload) => {
            let mut response = StatusCode::OK.into_response();
            upload_headers(&upload, response.headers_mut());
            if let Ok(v) = HeaderValue::from_str(&upload.metadata)
                && !upload.metadata.is_empty()
            {
                response.headers_mut().insert(HeaderName::from_static("upload-metadata"), v);
            }
            response
        }
        // HEAD responses carry no body: the status says it.
        Err(e) => {
            let mut response = e.into_response();
            *response.body_mut() = Body::empty();
            tus_headers(response.headers_mut());
            response
        }
    }
}

async fn patch(
    State(t): State<Transcoder>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        require_tus(&headers)?;
        if headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) != Some(OFFSET_OCTET_STREAM) {
            return Err(AppError::new(
                ErrorCode::UnsupportedMediaType,
                format!("PATCH bodies must be sent as Content-Type: {OFFSET_OCTET_STREAM}"),
            ));
        }
        let offset =
            header_i64(&headers, "upload-offset")?.ok_or_else(|| AppError::bad_input("Upload-Offset is required"))?;
        let length = header_i64(&headers, "upload-length")?;
        let checksum = checksum(&headers)?;
        t.append(&caller, &id, offset, length, checksum, body.into_data_stream()).await
    }
    .await;
    match result {
        Ok(upload) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            upload_headers(&upload, response.headers_mut());
            response
        }
        Err(e) => error(e),
    }
}

async fn terminate(
    State(t): State<Transcoder>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        require_tus(&headers)?;
        t.terminate(&caller, &id).await
    }
    .await;
    match result {
        Ok(()) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            tus_headers(response.headers_mut());
            response
        }
        Err(e) => error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_values_are_base64_decoded_by_key() {
        let raw = "filename Y2F0Lm1wNA==,videoId MDE5MA==,empty";
        assert_eq!(metadata_value(raw, "filename").as_deref(), Some("cat.mp4"));
        assert_eq!(metadata_value(raw, "videoId").as_deref(), Some("0190"));
        assert_eq!(metadata_value(raw, "empty").as_deref(), Some(""));
        assert_eq!(metadata_value(raw, "missing"), None);
    }
}
