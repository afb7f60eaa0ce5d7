//! tus 1.0 over HTTP (core, creation, creation-with-upload, creation-defer-length,
//! termination, expiration, checksum, concatenation with concatenation-unfinished): header
//! parsing and responses only; the work is in `uploads` and `concat`.

use crate::concat::{NewFinal, NewPartial};
use crate::domain::{Transcoder, Upload, UploadKind, UploadState};
use crate::uploads::{CHECKSUM_ALGORITHMS, Checksum, NewUpload};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{options, post};
use flick_kit::{AppError, Caller, ErrorCode};

pub const TUS_VERSION: &str = "1.0.0";
const EXTENSIONS: &str = "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum,\
                          concatenation,concatenation-unfinished";
/// Where an upload is, as `Upload-Concat: final;…` names it (an absolute URL ending so is
/// accepted too).
const UPLOAD_PATH: &str = "/video/upload/";
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
    match upload.kind {
        UploadKind::Single => {}
        UploadKind::Partial => set(headers, "upload-concat", "partial".into()),
        UploadKind::Final => {
            let urls: Vec<String> = upload.partials.iter().map(|id| format!("{UPLOAD_PATH}{id}")).collect();
            set(headers, "upload-concat", format!("final;{}", urls.join(" ")));
        }
    }
    // A final upload has no offset until its partials are joined (tus concatenation).
    if upload.kind != UploadKind::Final || upload.state == UploadState::Completed {
        set(headers, "upload-offset", upload.offset.to_string());
    }
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
    let metadata = headers.get("upload-metadata").and_then(|v| v.to_str().ok()).unwrap_or("");
    let video_id = || {
        metadata_value(metadata, "videoId").or_else(|| metadata_value(metadata, "video_id")).ok_or_else(|| {
            AppError::bad_input("Upload-Metadata must carry videoId (create the video with createVideo first)")
        })
    };
    let with_body = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) == Some(OFFSET_OCTET_STREAM);
    let concat = headers
        .get("upload-concat")
        .map(|v| v.to_str().map_err(|_| AppError::bad_input("Upload-Concat is not readable text")))
        .transpose()?;
    let mut upload = match concat.map(str::trim) {
        None => {
            if length.is_none() && !deferred {
                return Err(AppError::bad_input("Upload-Length (or Upload-Defer-Length: 1) is required"));
            }
            t.create_upload(caller, NewUpload { video_id: &video_id()?, length, metadata }).await?
        }
        Some("partial") => {
            let length = length.ok_or_else(|| AppError::bad_input("a partial upload needs Upload-Length"))?;
            t.create_partial(caller, NewPartial { length, metadata }).await?
        }
        Some(value) if value.starts_with("final;") => {
            if length.is_some() || deferred {
                return Err(AppError::bad_input(
                    "a final upload takes no Upload-Length: its length is the sum of its partial uploads'",
                ));
            }
            if with_body {
                return Err(AppError::bad_input("a final upload takes no bytes: send them to its partial uploads"));
            }
            let partials = value["final;".len()..].split_whitespace().map(partial_id).collect::<Result<_, _>>()?;
            let upload = t.create_final(caller, NewFinal { video_id: &video_id()?, partials, metadata }).await?;
            return Ok(created(&upload));
        }
        Some(other) => {
            return Err(AppError::bad_input(format!(
                "Upload-Concat must be `partial` or `final;<upload URLs>`, not {other:?}"
            )));
        }
    };
    if with_body {
        let checksum = checksum(headers)?;
        upload = t.append(caller, &upload.id, 0, None, checksum, body.into_data_stream()).await?;
    }
    Ok(created(&upload))
}

fn created(upload: &Upload) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    upload_headers(upload, response.headers_mut());
    if let Ok(v) = HeaderValue::from_str(&format!("{UPLOAD_PATH}{}", upload.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// The upload id in one URL of `Upload-Concat: final;…`: `/video/upload/<id>`, or an
/// absolute URL with that path.
fn partial_id(url: &str) -> Result<String, AppError> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rfind(UPLOAD_PATH)
        .map(|at| &path[at + UPLOAD_PATH.len()..])
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .map(str::to_string)
        .ok_or_else(|| AppError::bad_input(format!("Upload-Concat: {url:?} is not an upload URL ({UPLOAD_PATH}<id>)")))
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
    fn final_concatenations_name_uploads_by_path_or_absolute_url() {
        assert_eq!(partial_id("/video/upload/0190-a").unwrap(), "0190-a");
        assert_eq!(partial_id("https://edge.example/video/upload/0190-b?x=1").unwrap(), "0190-b");
        for bad in ["/video/upload/", "/video/0190", "https://edge.example/video/upload/a/b", "0190"] {
            let e = partial_id(bad).unwrap_err();
            assert_eq!(e.code(), ErrorCode::BadUserInput, "{bad}");
        }
    }

    #[test]
    fn metadata_values_are_base64_decoded_by_key() {
        let raw = "filename Y2F0Lm1wNA==,videoId MDE5MA==,empty";
        assert_eq!(metadata_value(raw, "filename").as_deref(), Some("cat.mp4"));
        assert_eq!(metadata_value(raw, "videoId").as_deref(), Some("0190"));
        assert_eq!(metadata_value(raw, "empty").as_deref(), Some(""));
        assert_eq!(metadata_value(raw, "missing"), None);
    }
}
