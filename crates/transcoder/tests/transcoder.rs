//! The transcoder through its tus routes, gRPC, playback routes and its worker with the real
//! ffmpeg, on both adapter sets (SQLite + local objects + in-process bus; PostgreSQL + S3 +
//! RabbitMQ).

use flick_platform::bus::envelope;
use flick_proto::events::v1 as events;
use flick_proto::transcoder::v1 as pb;
use flick_testkit::app::{Backend, TestApp, TestInfra};
use flick_testkit::eventually;
use flick_transcoder::config::TranscoderConfigExt as _;
use prost::Message;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

const TUS: (&str, &str) = ("tus-resumable", "1.0.0");
const OCTET: (&str, &str) = ("content-type", "application/offset+octet-stream");

/// The transcoder, its consumers (media's events, transcode jobs) consuming once started:
/// their queues are bound during build.
async fn app_with(infra: TestInfra) -> TestApp {
    TestApp::start(infra, |s| async move { flick_transcoder::build(&s).await }).await
}

async fn infra(backend: Backend) -> TestInfra {
    let mut infra = TestInfra::new(backend).await;
    infra.config.transcoder_mut().public_base_url = "http://edge.test".into();
    infra.config.transcoder_mut().preset = "ultrafast".into();
    infra.config.bus.retry_base_ms = 100;
    infra
}

/// A short clip made by ffmpeg: `seconds` of testsrc2 at `size` with a sine tone.
fn clip(dir: &std::path::Path, name: &str, size: &str, seconds: u32) -> PathBuf {
    let path = dir.join(name);
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", &format!("testsrc2=size={size}:rate=30")])
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"])
        .arg(&path)
        .status()
        .expect("ffmpeg is installed (scripts/services.sh installs it)");
    assert!(status.success(), "ffmpeg made the test clip");
    path
}

struct Client<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
}

impl<'a> Client<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self { app, http: reqwest::Client::new() }
    }

    /// Registers a video for `owner` and opens its upload, as media's createVideo does.
    async fn create_upload(&self, owner: &str, visibility: &str) -> (String, pb::Upload) {
        let video_id = Uuid::now_v7().to_string();
        let upload = self.register(owner, &video_id, visibility).await.unwrap();
        (video_id, upload)
    }

    /// gRPC `CreateUpload` for a video id media chose.
    async fn register(&self, owner: &str, video_id: &str, visibility: &str) -> Result<pb::Upload, tonic::Status> {
        let channel = tonic::transport::Endpoint::from_shared(self.app.url("")).unwrap().connect().await.unwrap();
        let mut grpc = pb::transcoder_service_client::TranscoderServiceClient::new(channel);
        let mut request = tonic::Request::new(pb::CreateUploadRequest {
            video_id: video_id.into(),
            size_bytes: 0,
            visibility: visibility.into(),
        });
        request.metadata_mut().insert("x-user-id", owner.parse().unwrap());
        grpc.create_upload(request).await.map(|r| r.into_inner())
    }

    /// Status of a file for `user` (anonymous: `None`).
    async fn play(&self, user: Option<&str>, id: &str, file: &str) -> u16 {
        let mut req = self.http.get(self.app.url(&format!("/video/{id}/{file}")));
        if let Some(u) = user {
            req = req.header("x-user-id", u);
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// Uploads `source` into the ticket's upload and waits for READY.
    async fn upload_until_ready(&self, owner: &str, id: &str, ticket: &pb::Upload, source: &[u8]) {
        let path = Self::path(&ticket.url);
        assert_eq!(self.patch(owner, &path, 0, Some(source.len() as u64), source.to_vec()).await.status(), 204);
        assert_eq!(self.settled(owner, id, Duration::from_secs(120)).await["state"], "READY");
    }

    fn path(url: &str) -> String {
        url.trim_start_matches("http://edge.test").to_string()
    }

    async fn head(&self, user: &str, upload_path: &str) -> reqwest::Response {
        self.http.head(self.app.url(upload_path)).header(TUS.0, TUS.1).header("x-user-id", user).send().await.unwrap()
    }

    async fn patch(
        &self,
        user: &str,
        upload_path: &str,
        offset: u64,
        length: Option<u64>,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .patch(self.app.url(upload_path))
            .header(TUS.0, TUS.1)
            .header(OCTET.0, OCTET.1)
            .header("x-user-id", user)
            .header("upload-offset", offset.to_string());
        if let Some(l) = length {
            req = req.header("upload-length", l.to_string());
        }
        req.body(body).send().await.unwrap()
    }

    /// `POST /video/upload` with `Upload-Concat: partial` for `length` bytes.
    async fn create_partial(&self, user: &str, length: u64) -> reqwest::Response {
        self.http
            .post(self.app.url("/video/upload"))
            .header(TUS.0, TUS.1)
            .header("x-user-id", user)
            .header("upload-concat", "partial")
            .header("upload-length", length.to_string())
            .send()
            .await
            .unwrap()
    }

    /// A partial upload of `length` bytes; its path.
    async fn partial(&self, user: &str, length: u64) -> String {
        let res = self.create_partial(user, length).await;
        assert_eq!(res.status(), 201, "{:?}", res.text().await);
        assert_eq!(res.headers()["upload-concat"], "partial");
        res.headers()["location"].to_str().unwrap().to_string()
    }

    /// `POST /video/upload` with `Upload-Concat: final;<urls>` for `video_id` (none: no
    /// metadata).
    async fn create_final(&self, user: &str, video_id: Option<&str>, urls: &[&str]) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.app.url("/video/upload"))
            .header(TUS.0, TUS.1)
            .header("x-user-id", user)
            .header("upload-concat", format!("final;{}", urls.join(" ")));
        if let Some(v) = video_id {
            req = req.header("upload-metadata", format!("videoId {},filename {}", b64(v), b64("f.mp4")));
        }
        req.send().await.unwrap()
    }

    async fn offset(&self, user: &str, upload_path: &str) -> u64 {
        let res = self.head(user, upload_path).await;
        assert_eq!(res.status(), 200);
        res.headers()["upload-offset"].to_str().unwrap().parse().unwrap()
    }

    async fn video(&self, user: Option<&str>, id: &str) -> (u16, Value) {
        let mut req = self.http.get(self.app.url(&format!("/video/{id}")));
        if let Some(u) = user {
            req = req.header("x-user-id", u);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Waits for the video to leave QUEUED/PROCESSING; returns its view.
    async fn settled(&self, owner: &str, id: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (_, v) = self.video(Some(owner), id).await;
            if v["state"] == "READY" || v["state"] == "FAILED" || tokio::time::Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn user() -> String {
    Uuid::now_v7().to_string()
}

/// The upload flow a tus client follows: a deferred length given with the first PATCH,
/// several chunks, one interrupted mid-body (the bytes that arrived are kept), then the
/// worker transcodes and playback is served with ranges and content types.
async fn chunked_upload_with_an_interruption_resumes_and_becomes_playable(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read(clip(dir.path(), "clip.mp4", "640x360", 3)).unwrap();
    let app = app_with(infra(backend).await).await;
    let c = Client::new(&app);
    let owner = user();
    let (video_id, upload) = c.create_upload(&owner, "PUBLIC").await;
    assert!(upload.url.starts_with("http://edge.test/video/upload/"), "{}", upload.url);
    let path = Client::path(&upload.url);
    let total = source.len() as u64;
    assert_eq!(c.offset(&owner, &path).await, 0);

    let first = source.len() / 3;
    assert_eq!(c.patch(&owner, &path, 0, Some(total), source[..first].to_vec()).await.status(), 204);
    assert_eq!(c.offset(&owner, &path).await, first as u64);

    // A body that breaks off after some bytes: the server keeps what arrived. The client
    // half-closes (every byte sent arrives before the end of the stream), then reads until
    // the server is done with the request, so exactly what was sent is what must be kept.
    let cut = first + 1000;
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut sock = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: {}\r\n{}: {}\r\n{}: {}\r\nx-user-id: {owner}\r\n\
             upload-offset: {first}\r\ncontent-length: {}\r\n\r\n",
            app.addr,
            TUS.0,
            TUS.1,
            OCTET.0,
            OCTET.1,
            source.len() - first,
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(&source[first..cut]).await.unwrap();
        sock.shutdown().await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), sock.read_to_end(&mut answer)).await.unwrap();
    }
    let resumed = c.offset(&owner, &path).await;
    assert_eq!(resumed, cut as u64, "every byte that arrived before the interruption is kept");

    // A stale offset is refused; the right one continues.
    assert_eq!(c.patch(&owner, &path, 0, None, vec![0; 10]).await.status(), 409);
    let res = c.patch(&owner, &path, resumed, None, source[resumed as usize..].to_vec()).await;
    assert_eq!(res.status(), 204);
    assert_eq!(res.headers()["upload-offset"].to_str().unwrap(), total.to_string());

    let v = c.settled(&owner, &video_id, Duration::from_secs(120)).await;
    assert_eq!(v["state"], "READY", "{v}");
    assert_eq!(v["hls_url"], format!("http://edge.test/video/{video_id}/hls/master.m3u8"));
    let names: Vec<&str> = v["renditions"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["360p", "240p"], "a 360p source is never upscaled");
    assert!((v["duration_seconds"].as_f64().unwrap() - 3.0).abs() < 0.5, "{v}");

    // Anyone may play a public video: playlists, segments with ranges, thumbnails.
    let master = c.http.get(app.url(&format!("/video/{video_id}/hls/master.m3u8"))).send().await.unwrap();
    assert_eq!(master.status(), 200);
    assert_eq!(master.headers()["content-type"], "application/vnd.apple.mpegurl");
    let master = master.text().await.unwrap();
    assert!(master.contains("360p/index.m3u8"), "{master}");
    let init = c
        .http
        .get(app.url(&format!("/video/{video_id}/dash/360p/init_360p.mp4")))
        .header("range", "bytes=0-7")
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 206);
    assert!(init.headers()["content-range"].to_str().unwrap().starts_with("bytes 0-7/"));
    assert_eq!(&init.bytes().await.unwrap()[4..8], b"ftyp", "an fMP4 init segment");
    let mpd = c.http.get(app.url(&format!("/video/{video_id}/dash/manifest.mpd"))).send().await.unwrap();
    assert_eq!(mpd.headers()["content-type"], "application/dash+xml");
    let poster = c
        .http
        .get(v["thumbnail_url"].as_str().unwrap().replace("http://edge.test", &app.url("")))
        .send()
        .await
        .unwrap();
    assert_eq!(poster.headers()["content-type"], "image/jpeg");
}

/// Creation-with-upload, checksums (a mismatch loses nothing already stored) and
/// termination.
async fn checksums_creation_with_upload_and_termination(backend: Backend) {
    use base64::Engine as _;
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read(clip(dir.path(), "c.mp4", "320x240", 1)).unwrap();
    let app = app_with(infra(backend).await).await;
    let c = Client::new(&app);
    let owner = user();
    let (video_id, _) = c.create_upload(&owner, "PRIVATE").await;
    let meta = format!("videoId {},filename {}", b64(&video_id), b64("c.mp4"));
    let head = &source[..4096];
    let res = c
        .http
        .post(app.url("/video/upload"))
        .header(TUS.0, TUS.1)
        .header(OCTET.0, OCTET.1)
        .header("x-user-id", &owner)
        .header("upload-length", source.len().to_string())
        .header("upload-metadata", &meta)
        .header(
            "upload-checksum",
            format!("sha1 {}", base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(head))),
        )
        .body(head.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["upload-offset"], "4096");
    assert!(res.headers().contains_key("upload-expires"));
    let path = res.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(c.head(&owner, &path).await.headers()["upload-metadata"].to_str().unwrap(), meta);

    let wrong = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"something else"));
    let res = c
        .http
        .patch(app.url(&path))
        .header(TUS.0, TUS.1)
        .header(OCTET.0, OCTET.1)
        .header("x-user-id", &owner)
        .header("upload-offset", "4096")
        .header("upload-checksum", format!("sha256 {wrong}"))
        .body(source[4096..8192].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 460);
    assert_eq!(c.offset(&owner, &path).await, 4096, "a chunk failing its checksum is discarded");

    let other = user();
    assert_eq!(c.head(&other, &path).await.status(), 403, "only the uploader");
    assert_eq!(c.patch(&other, &path, 4096, None, vec![1]).await.status(), 403);
    let anon = c.http.head(app.url(&path)).header(TUS.0, TUS.1).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    let no_tus = c.http.patch(app.url(&path)).header("x-user-id", &owner).body(vec![1]).send().await.unwrap();
    assert_eq!(no_tus.status(), 412, "tus requests must say Tus-Resumable");

    let del = c.http.delete(app.url(&path)).header(TUS.0, TUS.1).header("x-user-id", &owner).send().await.unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(c.head(&owner, &path).await.status(), 410, "a terminated upload is gone");

    let options = c.http.request(reqwest::Method::OPTIONS, app.url("/video/upload")).send().await.unwrap();
    assert_eq!(options.status(), 204);
    let ext = options.headers()["tus-extension"].to_str().unwrap();
    for e in ["creation", "creation-with-upload", "termination", "expiration", "checksum"] {
        assert!(ext.split(',').any(|x| x == e), "{e} in {ext}");
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Limits: the maximum size and the per-user quota answer 413 with a message; a file that
/// is no video is refused from its first bytes (415) and its upload is dropped.
async fn oversize_over_quota_and_non_media_uploads_are_refused(backend: Backend) {
    let mut infra = infra(backend).await;
    infra.config.transcoder_mut().max_upload_bytes = 1_000_000;
    infra.config.transcoder_mut().user_quota_bytes = 1_500_000;
    let app = app_with(infra).await;
    let c = Client::new(&app);
    let owner = user();
    let (video_id, ticket) = c.create_upload(&owner, "PUBLIC").await;
    let path = Client::path(&ticket.url);
    let res = c.patch(&owner, &path, 0, Some(2_000_000), vec![]).await;
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");
    assert!(body["error"]["message"].as_str().unwrap().contains("largest upload"), "{body}");

    let create = |length: u64| {
        c.http
            .post(app.url("/video/upload"))
            .header(TUS.0, TUS.1)
            .header("x-user-id", &owner)
            .header("upload-length", length.to_string())
            .header("upload-metadata", format!("videoId {}", b64(&video_id)))
            .send()
    };
    assert_eq!(create(900_000).await.unwrap().status(), 201);
    let res = create(900_000).await.unwrap();
    assert_eq!(res.status(), 413, "the second file would pass the quota");
    let body: Value = res.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("quota"), "{body}");

    let text = b"#!/bin/sh\necho this is a shell script, not a video at all, sorry\n".repeat(4);
    let res = c.patch(&owner, &path, 0, Some(text.len() as u64), text.clone()).await;
    assert_eq!(res.status(), 415);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("not a video"), "{body}");
    assert_eq!(c.head(&owner, &path).await.status(), 410);
    let (_, v) = c.video(Some(&owner), &video_id).await;
    assert_eq!(v["state"], "AWAITING_UPLOAD", "nothing was queued");
}

/// A length declared after some bytes (creation-defer-length) is checked against the quota
/// once: the upload's own bytes are not counted twice.
async fn a_deferred_length_may_use_the_whole_quota(backend: Backend) {
    let mut infra = infra(backend).await;
    infra.config.transcoder_mut().max_upload_bytes = 1_000_000;
    infra.config.transcoder_mut().user_quota_bytes = 1_000_000;
    let app = app_with(infra).await;
    let c = Client::new(&app);
    let owner = user();
    let (_, ticket) = c.create_upload(&owner, "PUBLIC").await;
    let path = Client::path(&ticket.url);
    let head = std::fs::read(clip(tempfile::tempdir().unwrap().path(), "d.mp4", "320x240", 1)).unwrap();
    assert_eq!(c.patch(&owner, &path, 0, None, head[..600].to_vec()).await.status(), 204);
    assert!(c.head(&owner, &path).await.headers().contains_key("upload-defer-length"));
    let res = c.patch(&owner, &path, 600, Some(1_000_000), head[600..1000].to_vec()).await;
    assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    assert_eq!(c.head(&owner, &path).await.headers()["upload-length"], "1000000");
}

/// A HEAD during a PATCH of the same upload answers with the offset that PATCH ends at, so a
/// client that gave up on a slow PATCH resumes from the right place.
async fn a_head_during_a_patch_waits_for_its_offset(backend: Backend) {
    let app = app_with(infra(backend).await).await;
    let c = Client::new(&app);
    let owner = user();
    let (_, ticket) = c.create_upload(&owner, "PUBLIC").await;
    let path = Client::path(&ticket.url);
    let data = std::fs::read(clip(tempfile::tempdir().unwrap().path(), "h.mp4", "320x240", 1)).unwrap();
    let (a, b) = (bytes::Bytes::copy_from_slice(&data[..3000]), bytes::Bytes::copy_from_slice(&data[3000..5000]));
    let first_sent = std::sync::Arc::new(tokio::sync::Notify::new());
    let sent = first_sent.clone();
    let slow = futures::stream::unfold(0, move |step| {
        let (a, b, sent) = (a.clone(), b.clone(), sent.clone());
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(a), 1)),
                1 => {
                    sent.notify_one();
                    // A slow client: the rest comes well after the HEAD was sent.
                    tokio::time::sleep(Duration::from_millis(1200)).await;
                    Some((Ok(b), 2))
                }
                _ => None,
            }
        }
    });
    let patch = c
        .http
        .patch(app.url(&path))
        .header(TUS.0, TUS.1)
        .header(OCTET.0, OCTET.1)
        .header("x-user-id", &owner)
        .header("upload-offset", "0")
        .header("upload-length", data.len().to_string())
        .body(reqwest::Body::wrap_stream(slow))
        .send();
    // The HEAD goes out once the PATCH's first part has been written (the stream is asked for
    // its second), while the PATCH still waits for the rest.
    let head = async {
        first_sent.notified().await;
        c.offset(&owner, &path).await
    };
    let (patched, offset) = tokio::join!(patch, head);
    assert_eq!(patched.unwrap().status(), 204);
    assert_eq!(offset, 5000, "the HEAD waited for the PATCH in flight");
}

/// The offset survives a restart: another process (a replica on the same stores) continues.
async fn an_upload_resumes_on_a_restarted_server(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read(clip(dir.path(), "r.mp4", "320x240", 1)).unwrap();
    let infra = infra(backend).await;
    let replica = infra.replica();
    let owner = user();
    let (video_id, path) = {
        let app = app_with(infra).await;
        let c = Client::new(&app);
        let (video_id, ticket) = c.create_upload(&owner, "PUBLIC").await;
        let path = Client::path(&ticket.url);
        assert_eq!(c.patch(&owner, &path, 0, Some(source.len() as u64), source[..5000].to_vec()).await.status(), 204);
        (video_id, path)
    };
    let app = app_with(replica).await;
    let c = Client::new(&app);
    assert_eq!(c.offset(&owner, &path).await, 5000);
    assert_eq!(c.patch(&owner, &path, 5000, None, source[5000..].to_vec()).await.status(), 204);
    let v = c.settled(&owner, &video_id, Duration::from_secs(120)).await;
    assert_eq!(v["state"], "READY", "{v}");
}

/// Broken input ends FAILED with a readable reason, its job lands in the dead-letter
/// queue, and the worker goes on to transcode the next video. A retry re-queues it.
async fn a_broken_video_fails_with_a_reason_and_the_worker_survives(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(clip(dir.path(), "g.mp4", "320x240", 1)).unwrap();
    // A valid MP4 header followed by garbage: it passes sniffing, not probing.
    let mut broken = good[..64].to_vec();
    broken.extend(std::iter::repeat_n(0x5au8, 20_000));
    let app = app_with(infra(backend).await).await;
    let c = Client::new(&app);
    let owner = user();
    let (bad_id, ticket) = c.create_upload(&owner, "PUBLIC").await;
    let path = Client::path(&ticket.url);
    assert_eq!(c.patch(&owner, &path, 0, Some(broken.len() as u64), broken).await.status(), 204);
    let v = c.settled(&owner, &bad_id, Duration::from_secs(60)).await;
    assert_eq!(v["state"], "FAILED", "{v}");
    let reason = v["error"].as_str().unwrap();
    assert!(!reason.is_empty() && !reason.contains("internal"), "a readable reason: {reason}");
    assert_eq!(c.video(Some(&user()), &bad_id).await.0, 404, "a video that never became ready is the owner's business");

    let bus = &app.shared.bus;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    assert!(
        eventually(Duration::from_secs(10), || {
            let seen = seen.clone();
            let bad_id = bad_id.clone();
            async move {
                let got = bus.take_dead_letters(flick_transcoder::JOBS_QUEUE, 10).await.unwrap();
                let mut seen = seen.lock().unwrap();
                seen.extend(got);
                seen.iter().any(|d| d.envelope.as_ref().is_some_and(|e| e.subject == bad_id))
            }
        })
        .await,
        "the failed job is dead-lettered"
    );

    let (good_id, ticket) = c.create_upload(&owner, "PUBLIC").await;
    let path = Client::path(&ticket.url);
    assert_eq!(c.patch(&owner, &path, 0, Some(good.len() as u64), good).await.status(), 204);
    assert_eq!(c.settled(&owner, &good_id, Duration::from_secs(120)).await["state"], "READY", "the worker survived");

    let retry = c.http.patch(app.url(&format!("/video/{bad_id}"))).header("x-user-id", &owner).send().await.unwrap();
    assert_eq!(retry.status(), 202);
    let v = c.settled(&owner, &bad_id, Duration::from_secs(60)).await;
    assert_eq!(v["state"], "FAILED", "the same broken source fails again");
    let other = c.http.patch(app.url(&format!("/video/{good_id}"))).header("x-user-id", &user()).send().await.unwrap();
    assert_eq!(other.status(), 403, "only the owner retries");
}

/// Whether the refusal is a 400 BAD_USER_INPUT whose message says `says`.
async fn refused_as_bad_input(res: reqwest::Response, says: &str) {
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BAD_USER_INPUT", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains(says), "{says:?} in {body}");
}

/// tus concatenation (what tus-js-client's `parallelUploads` does): three partial uploads,
/// the final created while the last is unfinished (no offset yet, PATCH refused), which
/// completes when that partial does; the source is the partials' bytes in order, transcoded
/// to READY. A later single upload of the video replaces it and its partials' objects go.
async fn partial_uploads_joined_by_a_final_become_the_source_and_play(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read(clip(dir.path(), "cat.mp4", "320x240", 2)).unwrap();
    let app = app_with(infra(backend).await).await;
    let c = Client::new(&app);
    let owner = user();
    let (video_id, ticket) = c.create_upload(&owner, "PUBLIC").await;
    let cuts = [0, source.len() / 3, source.len() * 2 / 3, source.len()];
    let mut paths = Vec::new();
    for range in cuts.windows(2) {
        paths.push(c.partial(&owner, (range[1] - range[0]) as u64).await);
    }
    // The first two complete, the last stops short of its end.
    for (i, path) in paths.iter().enumerate().take(2) {
        let res = c.patch(&owner, path, 0, None, source[cuts[i]..cuts[i + 1]].to_vec()).await;
        assert_eq!(res.status(), 204, "{:?}", res.text().await);
    }
    assert_eq!(c.patch(&owner, &paths[2], 0, None, source[cuts[2]..cuts[2] + 100].to_vec()).await.status(), 204);
    let head = c.head(&owner, &paths[2]).await;
    assert_eq!(head.headers()["upload-concat"], "partial");
    assert_eq!(head.headers()["upload-offset"], "100");

    let absolute = format!("http://edge.test{}", paths[0]);
    let urls = [absolute.as_str(), paths[1].as_str(), paths[2].as_str()];
    let res = c.create_final(&owner, Some(&video_id), &urls).await;
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
    let final_path = res.headers()["location"].to_str().unwrap().to_string();
    let head = c.head(&owner, &final_path).await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["upload-concat"].to_str().unwrap(), format!("final;{}", paths.join(" ")));
    assert!(!head.headers().contains_key("upload-offset"), "no offset before the partials are joined");
    assert_eq!(head.headers()["upload-length"], source.len().to_string().as_str());
    assert_eq!(c.patch(&owner, &final_path, 0, None, vec![0; 10]).await.status(), 403, "a final takes no bytes");
    let (_, v) = c.video(Some(&owner), &video_id).await;
    assert_eq!(v["state"], "AWAITING_UPLOAD", "nothing is queued before every partial is complete");

    let res = c.patch(&owner, &paths[2], 100, None, source[cuts[2] + 100..].to_vec()).await;
    assert_eq!(res.status(), 204, "{:?}", res.text().await);
    let head = c.head(&owner, &final_path).await;
    assert_eq!(head.headers()["upload-offset"], source.len().to_string().as_str(), "complete with its last partial");
    assert_eq!(head.headers()["upload-length"], source.len().to_string().as_str());
    assert_eq!(c.settled(&owner, &video_id, Duration::from_secs(120)).await["state"], "READY");

    // The source is the partials' objects, in order: the file's bytes, stored once.
    let storage = &app.shared.storage;
    let ids: Vec<&str> = paths.iter().map(|p| p.rsplit('/').next().unwrap()).collect();
    let mut joined = Vec::new();
    for id in &ids {
        joined.extend_from_slice(&storage.get(&format!("uploads/{id}/partial")).await.unwrap());
    }
    assert!(joined == source, "the partials hold the file's bytes in order");
    assert!(storage.list(&format!("videos/{video_id}/source")).await.unwrap().is_empty(), "no second copy");

    // A new upload of the video replaces the concatenated source; the partials go.
    c.upload_until_ready(&owner, &video_id, &ticket, &source).await;
    for id in &ids {
        assert!(storage.list(&format!("uploads/{id}")).await.unwrap().is_empty(), "partial {id} deleted");
        assert_eq!(c.head(&owner, &format!("/video/upload/{id}")).await.status(), 410);
    }
    assert_eq!(c.head(&owner, &final_path).await.status(), 410, "the final was replaced");
}

/// A PATCH longer than a part is stored in whole parts (the buffer holds one part at a time)
/// and its remainder kept for the next PATCH, which starts from it: the object holds every
/// byte once, in order.
async fn patches_longer_than_a_part_are_stored_byte_for_byte(backend: Backend) {
    use flick_platform::storage::PART_SIZE;
    let app = app_with(infra(backend).await).await;
    let c = Client::new(&app);
    let owner = user();
    // A partial upload: its bytes are sniffed by its final, not here. The pattern's period
    // (251) does not divide a part, so a part stored twice or out of order shows.
    let bytes: Vec<u8> = (0..2 * PART_SIZE + PART_SIZE / 2).map(|i| (i % 251) as u8).collect();
    let path = c.partial(&owner, bytes.len() as u64).await;
    let first = PART_SIZE + 1000;
    assert_eq!(c.patch(&owner, &path, 0, None, bytes[..first].to_vec()).await.status(), 204);
    assert_eq!(c.offset(&owner, &path).await, first as u64);
    let res = c.patch(&owner, &path, first as u64, None, bytes[first..].to_vec()).await;
    assert_eq!(res.status(), 204, "{:?}", res.text().await);
    let id = path.rsplit('/').next().unwrap();
    let stored = app.shared.storage.get(&format!("uploads/{id}/partial")).await.unwrap();
    assert_eq!(stored.len(), bytes.len());
    assert!(stored == bytes, "the stored object is the bytes sent, in order");
}

/// What a final upload may join, each refused with a 400 saying why; a non-video is refused
/// from the first partial's bytes (415) and its partials dropped; partials count toward the
/// quota once (the final adds nothing); terminating a final removes its partials.
async fn concatenation_refusals_quota_and_termination(backend: Backend) {
    let mut infra = infra(backend).await;
    infra.config.transcoder_mut().user_quota_bytes = 1_500_000;
    let app = app_with(infra).await;
    let c = Client::new(&app);
    let owner = user();
    let head = std::fs::read(clip(tempfile::tempdir().unwrap().path(), "r.mp4", "320x240", 1)).unwrap();
    let (video_id, ticket) = c.create_upload(&owner, "PUBLIC").await;
    let first = c.partial(&owner, 1000).await;
    assert_eq!(c.patch(&owner, &first, 0, None, head[..1000].to_vec()).await.status(), 204);
    let second = c.partial(&owner, 1000).await;

    refused_as_bad_input(c.create_final(&owner, None, &[&first, &second]).await, "videoId").await;
    let (theirs, _) = c.create_upload(&user(), "PUBLIC").await;
    refused_as_bad_input(c.create_final(&owner, Some(&theirs), &[&first, &second]).await, "no video of yours").await;
    let unknown = format!("/video/upload/{}", Uuid::now_v7());
    refused_as_bad_input(c.create_final(&owner, Some(&video_id), &[&first, &unknown]).await, "not one of your uploads")
        .await;
    let stranger = user();
    let foreign = c.partial(&stranger, 1000).await;
    refused_as_bad_input(c.create_final(&owner, Some(&video_id), &[&first, &foreign]).await, "not one of your uploads")
        .await;
    let single = Client::path(&ticket.url);
    refused_as_bad_input(c.create_final(&owner, Some(&video_id), &[&first, &single]).await, "not a partial upload")
        .await;
    refused_as_bad_input(c.create_final(&owner, Some(&video_id), &[&first, &first]).await, "twice").await;
    refused_as_bad_input(c.create_final(&owner, Some(&video_id), &[]).await, "names no partial upload").await;
    refused_as_bad_input(c.create_final(&owner, Some(&video_id), &["/video/other"]).await, "not an upload URL").await;
    let with_length = c
        .http
        .post(app.url("/video/upload"))
        .header(TUS.0, TUS.1)
        .header("x-user-id", &owner)
        .header("upload-concat", format!("final;{first}"))
        .header("upload-length", "1000")
        .header("upload-metadata", format!("videoId {}", b64(&video_id)))
        .send()
        .await
        .unwrap();
    refused_as_bad_input(with_length, "takes no Upload-Length").await;
    let no_length = c
        .http
        .post(app.url("/video/upload"))
        .header(TUS.0, TUS.1)
        .header("x-user-id", &owner)
        .header("upload-concat", "partial")
        .header("upload-defer-length", "1")
        .send()
        .await
        .unwrap();
    refused_as_bad_input(no_length, "needs Upload-Length").await;
    assert_eq!(c.head(&stranger, &first).await.status(), 403, "a partial is its uploader's only");

    // Joined once: a second final may not take a partial the first one holds.
    let res = c.create_final(&owner, Some(&video_id), &[&first, &second]).await;
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
    let final_path = res.headers()["location"].to_str().unwrap().to_string();
    let (other_video, _) = c.create_upload(&owner, "PUBLIC").await;
    let third = c.partial(&owner, 1000).await;
    refused_as_bad_input(c.create_final(&owner, Some(&other_video), &[&third, &second]).await, "another final upload")
        .await;

    // Quota: 1000 + 1000 + 1000 held by the partials; the final adds nothing.
    let res = c.create_partial(&owner, 1_500_000 - 3000 + 1).await;
    assert_eq!(res.status(), 413, "one byte over the quota");
    c.partial(&owner, 1_500_000 - 3000).await;
    assert_eq!(c.create_partial(&owner, 2000).await.status(), 413, "the quota is full");

    // Terminating the final removes its partials (the completed one's object too).
    let first_id = first.rsplit('/').next().unwrap().to_string();
    assert_eq!(c.patch(&owner, &second, 0, None, vec![7; 500]).await.status(), 204);
    let del =
        c.http.delete(app.url(&final_path)).header(TUS.0, TUS.1).header("x-user-id", &owner).send().await.unwrap();
    assert_eq!(del.status(), 204);
    for path in [&first, &second, &final_path] {
        assert_eq!(c.head(&owner, path).await.status(), 410, "{path} is gone");
    }
    let storage = &app.shared.storage;
    assert!(storage.list(&format!("uploads/{first_id}")).await.unwrap().is_empty(), "the completed partial's object");
    let freed = c.partial(&owner, 2000).await;
    let del = c.http.delete(app.url(&freed)).header(TUS.0, TUS.1).header("x-user-id", &owner).send().await.unwrap();
    assert_eq!(del.status(), 204, "their quota was free again; and a partial no final joined may be terminated");

    // A non-video: refused when its final finds the first bytes (415), partials dropped.
    let script = b"#!/bin/sh\necho this is a shell script, not a video at all, sorry\n".repeat(10);
    let text = c.partial(&owner, script.len() as u64).await;
    assert_eq!(c.patch(&owner, &text, 0, None, script.clone()).await.status(), 204, "a partial is not sniffed");
    let res = c.create_final(&owner, Some(&other_video), &[&text, &third]).await;
    assert_eq!(res.status(), 201, "not all there yet: nothing to sniff");
    let final_path = res.headers()["location"].to_str().unwrap().to_string();
    let res = c.patch(&owner, &third, 0, None, vec![0; 1000]).await;
    assert_eq!(res.status(), 415, "the last partial completes the final, whose first bytes are no video");
    let body: Value = res.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("not a video"), "{body}");
    for path in [&text, &third, &final_path] {
        assert_eq!(c.head(&owner, path).await.status(), 410, "{path} is gone");
    }
    let (_, v) = c.video(Some(&owner), &other_video).await;
    assert_eq!(v["state"], "AWAITING_UPLOAD", "nothing was queued");
}

/// Visibility: a private video plays for its owner only; deleting removes every object.
async fn private_videos_play_for_their_owner_only_and_deletion_removes_every_object(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read(clip(dir.path(), "p.mp4", "320x240", 1)).unwrap();
    let app = app_with(infra(backend).await).await;
    let c = Client::new(&app);
    let owner = user();
    let (id, ticket) = c.create_upload(&owner, "PRIVATE").await;
    let path = Client::path(&ticket.url);
    assert_eq!(c.patch(&owner, &path, 0, Some(source.len() as u64), source).await.status(), 204);
    assert_eq!(c.settled(&owner, &id, Duration::from_secs(120)).await["state"], "READY");
    let master = format!("/video/{id}/hls/master.m3u8");
    let get = |u: Option<String>| {
        let mut r = c.http.get(app.url(&master));
        if let Some(u) = u {
            r = r.header("x-user-id", u);
        }
        r.send()
    };
    assert_eq!(get(Some(owner.clone())).await.unwrap().status(), 200);
    assert_eq!(get(Some(user())).await.unwrap().status(), 404);
    assert_eq!(get(None).await.unwrap().status(), 404);
    assert_eq!(c.video(None, &id).await.0, 404);

    let storage = &app.shared.storage;
    assert!(!storage.list(&format!("videos/{id}")).await.unwrap().is_empty());
    let del = c.http.delete(app.url(&format!("/video/{id}"))).header("x-user-id", user()).send().await.unwrap();
    assert_eq!(del.status(), 404, "someone else's private video does not exist for them");
    let del = c.http.delete(app.url(&format!("/video/{id}"))).header("x-user-id", &owner).send().await.unwrap();
    assert_eq!(del.status(), 204);
    assert!(storage.list(&format!("videos/{id}")).await.unwrap().is_empty(), "renditions and source are gone");
    assert_eq!(get(Some(owner.clone())).await.unwrap().status(), 404);

    // Media deleting the video removes the transcoder's record too.
    let (gone, _) = c.create_upload(&owner, "PUBLIC").await;
    let payload = events::VideoChanged { video_id: gone.clone(), owner_id: owner.clone(), ..Default::default() };
    app.shared.bus.publish(&envelope("video.deleted", &gone, "media", payload.encode_to_vec())).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || async { c.video(Some(&owner), &gone).await.0 == 404 }).await);
}

/// Fetching the master playlist or the DASH manifest is not a view (prefetches and bounces
/// would count): views come from players' heartbeats to the activity service. The proof of
/// absence is ordered: an upload completed after the fetches goes out through the same
/// outbox, so once its event has arrived a view recorded before it would have too.
async fn playback_fetches_are_not_views(backend: Backend) {
    use flick_platform::bus::{Delivery, QueueSpec, handler};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read(clip(dir.path(), "v.mp4", "320x240", 1)).unwrap();
    let app = app_with(infra(backend).await).await;
    let c = Client::new(&app);
    let owner = user();
    let (id, ticket) = c.create_upload(&owner, "PUBLIC").await;
    let path = Client::path(&ticket.url);
    assert_eq!(c.patch(&owner, &path, 0, Some(source.len() as u64), source.clone()).await.status(), 204);
    assert_eq!(c.settled(&owner, &id, Duration::from_secs(120)).await["state"], "READY");

    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let record = seen.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let queue = format!("views-{}", Uuid::now_v7().simple());
    app.shared
        .bus
        .consume(
            QueueSpec::events(&queue, &["video.viewed", "upload.completed"]),
            handler(move |d: Delivery| {
                let record = record.clone();
                async move {
                    record.lock().unwrap().push((d.envelope.r#type.clone(), d.envelope.subject.clone()));
                    Ok(())
                }
            }),
            stop.clone(),
        )
        .await
        .unwrap();

    let fan = user();
    for (file, viewer) in
        [("hls/master.m3u8", None), ("dash/manifest.mpd", Some(&fan)), ("hls/master.m3u8", Some(&fan))]
    {
        let mut r = c.http.get(app.url(&format!("/video/{id}/{file}")));
        if let Some(u) = viewer {
            r = r.header("x-user-id", u.as_str());
        }
        assert_eq!(r.send().await.unwrap().status(), 200, "{file} plays");
    }
    let (later, ticket) = c.create_upload(&owner, "PUBLIC").await;
    let path = Client::path(&ticket.url);
    assert_eq!(c.patch(&owner, &path, 0, Some(source.len() as u64), source).await.status(), 204);
    let marker = ("upload.completed".to_string(), later.clone());
    assert!(
        eventually(Duration::from_secs(10), || async { seen.lock().unwrap().contains(&marker) }).await,
        "{:?}",
        seen.lock().unwrap()
    );
    let views: Vec<_> = seen.lock().unwrap().iter().filter(|(t, _)| t == "video.viewed").cloned().collect();
    assert!(views.is_empty(), "manifest fetches made views: {views:?}");
    stop.cancel();
    let _ = app.shared.bus.delete_queues(&queue).await;
}

/// A long video plays before its ladder is done: finished segments and growing playlists
/// are published while ffmpeg still encodes; at READY the playlists are complete.
async fn a_long_video_plays_before_its_ladder_finishes(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read(clip(dir.path(), "long.mp4", "640x360", 30)).unwrap();
    let mut infra = infra(backend).await;
    infra.config.transcoder_mut().early_playback_min_seconds = 10;
    // Slow enough that the encode outlasts a few publishing rounds.
    infra.config.transcoder_mut().preset = "medium".into();
    let app = app_with(infra).await;
    let c = Client::new(&app);
    let owner = user();
    let (id, ticket) = c.create_upload(&owner, "PUBLIC").await;
    let path = Client::path(&ticket.url);
    assert_eq!(c.patch(&owner, &path, 0, Some(source.len() as u64), source).await.status(), 204);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let early = loop {
        let (_, v) = c.video(Some(&owner), &id).await;
        if v["state"] == "PROCESSING" && v["hls_url"].is_string() {
            break v;
        }
        assert_ne!(v["state"], "READY", "the ladder finished before anything was published early");
        assert!(tokio::time::Instant::now() < deadline, "never playable: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(early["playable"], true);
    // GraphQL clients get the growing playlist too, as the router asks for the entity.
    let query = "query($id: ID!) { _entities(representations: [{__typename: \"Video\", id: $id}]) {
        ... on Video { processing { state playable } playback { hlsUrl dashUrl durationSeconds renditions { name } } } } }";
    let entity: Value = c
        .http
        .post(app.url("/graphql"))
        .json(&serde_json::json!({ "query": query, "variables": { "id": id } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let video = &entity["data"]["_entities"][0];
    assert_eq!(video["processing"]["state"], "PROCESSING", "{entity}");
    assert_eq!(video["playback"]["hlsUrl"], early["hls_url"], "{entity}");
    assert!(video["playback"]["dashUrl"].is_null(), "the DASH manifest comes at READY: {entity}");
    let duration = video["playback"]["durationSeconds"].as_f64().unwrap();
    assert!((duration - 30.0).abs() < 0.5, "the source's probed duration: {entity}");
    let (status, anyone) = c.video(None, &id).await;
    assert_eq!((status, anyone["playable"].clone()), (200, Value::Bool(true)), "a public video plays for anyone");
    let master = c.http.get(app.url(&format!("/video/{id}/hls/master.m3u8"))).send().await.unwrap();
    assert_eq!(master.status(), 200);
    assert_eq!(master.headers()["cache-control"], "no-cache", "a growing playlist is refetched");
    let playlist =
        c.http.get(app.url(&format!("/video/{id}/hls/240p/index.m3u8"))).send().await.unwrap().text().await.unwrap();
    assert!(!playlist.contains("#EXT-X-ENDLIST"), "still growing: {playlist}");
    let first = playlist.lines().find(|l| l.ends_with(".m4s")).expect("a finished segment is listed");
    let segment = c.http.get(app.url(&format!("/video/{id}/hls/240p/{first}"))).send().await.unwrap();
    assert_eq!(segment.status(), 200, "every listed segment is stored");

    let v = c.settled(&owner, &id, Duration::from_secs(180)).await;
    assert_eq!(v["state"], "READY", "{v}");
    let playlist =
        c.http.get(app.url(&format!("/video/{id}/hls/240p/index.m3u8"))).send().await.unwrap().text().await.unwrap();
    assert!(playlist.contains("#EXT-X-ENDLIST"), "complete at READY: {playlist}");
}

/// `<name>{<label>="<value>"}` of this process's metrics so far, summed. The recorder is
/// process-wide: this relies on nextest running each test in its own process (how the
/// workspace runs its tests), so the counts are this test's alone.
fn metric(name: &str, label: &str, value: &str) -> u64 {
    let metrics = flick_kit::telemetry::metrics_handle().render();
    let (prefix, label) = (format!("{name}{{"), format!("{label}=\"{value}\""));
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `<name>{outcome="<outcome>"}` so far (see `metric`).
fn counted(name: &str, outcome: &str) -> u64 {
    metric(name, "outcome", outcome)
}

/// A long video's job is split into parts (spans of the ladder, the audio and thumbnails)
/// that two transcoder processes take from the queue; the assembled video plays as one:
/// every segment numbered in order and stored, every frame once on one timeline, audio,
/// DASH, poster and storyboard, progress reported as parts finish.
async fn a_long_video_is_split_into_parts_that_workers_share_and_plays_as_one(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read(clip(dir.path(), "long.mp4", "640x360", 26)).unwrap();
    let mut infra = infra(backend).await;
    infra.config.transcoder_mut().chunk_min_seconds = 10;
    infra.config.transcoder_mut().chunk_seconds = 8;
    infra.config.transcoder_mut().chunk_first_seconds = 8;
    infra.config.transcoder_mut().early_playback_min_seconds = 10;
    // Slow enough that the spans after the first are still encoding when it is done.
    infra.config.transcoder_mut().preset = "medium".into();
    let replica = infra.replica();
    let app = app_with(infra).await;
    let _second = TestApp::start_beside(replica, &app, |s| async move { flick_transcoder::build(&s).await }).await;
    let log = progress_log(&app).await;
    let c = Client::new(&app);
    let owner = user();
    let (id, ticket) = c.create_upload(&owner, "PUBLIC").await;
    c.upload_until_ready(&owner, &id, &ticket, &source).await;

    // 26 s in 8 s spans: 0-8, 8-16, 16-26 (the 2 s left join the last), the audio, the thumbnails.
    assert_eq!(counted("transcode_jobs_total", "split"), 1);
    assert_eq!(counted("transcode_parts_total", "completed"), 5, "each part ran once");
    // The splitter's parts use its copy; the other process reads the stored source in place
    // (the file, or ranged GETs of a presigned URL): nobody downloads it again.
    let sources = |how: &str| metric("transcode_part_sources_total", "source", how);
    assert_eq!(sources("downloaded"), 0);
    assert!(sources("in_place") >= 1, "the second process took a part");
    // (A redelivered copy of a part that starts after its video is READY stops untimed.)
    assert!(sources("kept") + sources("in_place") >= 5);
    let timed = |kind: &str| metric("transcode_part_duration_seconds_count", "kind", kind);
    assert_eq!((timed("span"), timed("audio"), timed("thumbnails")), (3, 1, 1), "each part timed by its kind");
    // Progress events travel on their own exchange: `ready` may arrive after the state is READY.
    let stages =
        || -> Vec<String> { log.lock().unwrap().iter().filter(|(v, ..)| *v == id).map(|e| e.1.clone()).collect() };
    let reported = eventually(Duration::from_secs(10), || async { stages().iter().any(|s| s == "ready") }).await;
    let stages = stages();
    assert!(reported, "ready reported: {stages:?}");
    let encoding = stages.iter().filter(|s| *s == "encoding").count();
    assert!(encoding >= 5, "a report per part done: {stages:?}");
    // The audio and the first span done: the start plays while the other spans encode.
    let at = |stage: &str| stages.iter().position(|s| s == stage);
    assert!(at("playable").is_some_and(|p| Some(p) < at("ready")), "playable before ready: {stages:?}");

    let (_, v) = c.video(Some(&owner), &id).await;
    assert!((v["duration_seconds"].as_f64().unwrap() - 26.0).abs() < 0.2, "{v}");
    for url in ["dash_url", "thumbnail_url", "storyboard_url"] {
        let path = Client::path(v[url].as_str().unwrap_or_else(|| panic!("{url}: {v}")));
        assert_eq!(c.http.get(app.url(&path)).send().await.unwrap().status(), 200, "{path}");
    }
    let get = |file: String| {
        let (http, url) = (c.http.clone(), app.url(&format!("/video/{id}/hls/{file}")));
        async move {
            let res = http.get(&url).send().await.unwrap();
            assert_eq!(res.status(), 200, "{url}");
            res.bytes().await.unwrap()
        }
    };
    let master = String::from_utf8(get("master.m3u8".into()).await.to_vec()).unwrap();
    for variant in ["360p/index.m3u8", "240p/index.m3u8", "audio/index.m3u8"] {
        assert!(master.contains(variant), "{master}");
    }
    for rung in ["360p", "240p", "audio"] {
        let playlist = String::from_utf8(get(format!("{rung}/index.m3u8")).await.to_vec()).unwrap();
        assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
        let segments: Vec<&str> = playlist.lines().filter(|l| l.ends_with(".m4s")).collect();
        let expected: Vec<String> = (0..7).map(|n| format!("seg_{n:05}.m4s")).collect();
        assert_eq!(segments, expected, "{rung}: 26 s in 4 s segments, numbered across the parts");
        let mut joined = get(format!("{rung}/init_{rung}.mp4")).await.to_vec();
        for segment in segments {
            joined.extend(get(format!("{rung}/{segment}")).await);
        }
        if rung == "audio" {
            continue;
        }
        let file = dir.path().join(format!("{rung}.mp4"));
        std::fs::write(&file, joined).unwrap();
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v", "-show_entries", "packet=pts_time", "-of", "csv=p=0"])
            .arg(&file)
            .output()
            .unwrap();
        let mut pts: Vec<f64> =
            String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim_end_matches(',').parse().ok()).collect();
        pts.sort_by(f64::total_cmp);
        assert_eq!(pts.len(), 26 * 30, "{rung}: every frame once");
        assert!(
            pts.windows(2).all(|w| (w[1] - w[0] - 1.0 / 30.0).abs() < 0.002),
            "{rung}: one timeline, no gap or overlap at the parts' boundaries"
        );
    }
}

/// An ffmpeg that is killed (SIGKILL, as the OOM killer would) whenever it encodes the span
/// from 8 s: the first `times` runs of it, or every run when `times` is 0.
fn ffmpeg_killed_on_the_second_span(dir: &std::path::Path, times: u32) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let marks = dir.join("killed");
    std::fs::create_dir_all(&marks).unwrap();
    let path = dir.join("ffmpeg-killed");
    let limit = if times == 0 { "always".to_string() } else { times.to_string() };
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\ncase \"$*\" in *\"-ss 8.000000\"*)\n  n=$(ls {marks} | wc -l)\n  \
             if [ {limit} = always ] || [ \"$n\" -lt {times} ]; then touch {marks}/$$; kill -9 $$; fi;;\nesac\nexec ffmpeg \"$@\"\n",
            marks = marks.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_string_lossy().into_owned()
}

/// A part whose ffmpeg is killed is retried alone: the other parts run once and the video
/// becomes READY. A part that fails on every attempt fails the video with a reason naming
/// it; the owner's retry then runs the split job again from the start.
async fn a_failing_part_is_retried_alone_then_fails_the_video_with_its_reason(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read(clip(dir.path(), "long.mp4", "640x360", 26)).unwrap();
    for (times, expected) in [(1, "READY"), (2, "FAILED")] {
        let mut infra = infra(backend).await;
        let config = infra.config.transcoder_mut();
        config.chunk_min_seconds = 10;
        config.chunk_seconds = 8;
        config.chunk_first_seconds = 8;
        config.early_playback_min_seconds = 0;
        config.job_attempts = 2;
        let scratch = tempfile::tempdir().unwrap();
        config.ffmpeg = ffmpeg_killed_on_the_second_span(scratch.path(), times);
        let app = app_with(infra).await;
        let c = Client::new(&app);
        let owner = user();
        let (id, ticket) = c.create_upload(&owner, "PUBLIC").await;
        let path = Client::path(&ticket.url);
        assert_eq!(c.patch(&owner, &path, 0, Some(source.len() as u64), source.clone()).await.status(), 204);
        let v = c.settled(&owner, &id, Duration::from_secs(120)).await;
        assert_eq!(v["state"], expected, "{v}");
        if expected == "READY" {
            assert_eq!(counted("transcode_parts_total", "retried"), 1, "the killed part, once");
            assert_eq!(counted("transcode_parts_total", "completed"), 5, "every part done once");
            let playlist = c
                .http
                .get(app.url(&format!("/video/{id}/hls/240p/index.m3u8")))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert_eq!(playlist.matches(".m4s").count(), 7, "{playlist}");
        } else {
            let reason = v["error"].as_str().unwrap();
            assert!(reason.contains("part 2 failed 2 times") && reason.contains("killed"), "{reason}");
            // Killed twice only: the retry's run of that part goes through.
            let retry =
                c.http.patch(app.url(&format!("/video/{id}"))).header("x-user-id", &owner).send().await.unwrap();
            assert_eq!(retry.status(), 202);
            let v = c.settled(&owner, &id, Duration::from_secs(120)).await;
            assert_eq!(v["state"], "READY", "the retried split job: {v}");
        }
    }
}

/// An upload not finished in time expires (410); the sweeper drops its parts. So do an
/// unfinished partial upload's, and a completed partial's object no final joined.
async fn abandoned_uploads_expire_and_their_parts_are_dropped(backend: Backend) {
    let mut infra = infra(backend).await;
    infra.config.transcoder_mut().upload_expiry_seconds = 1;
    let data_dir = infra.config.data_dir.clone();
    let replica = infra.replica();
    let owner = user();
    let (path, partials) = {
        let app = app_with(infra).await;
        let c = Client::new(&app);
        // Made first: the uploads below have a second, ffmpeg on a busy machine may take more.
        let mut start = std::fs::read(clip(tempfile::tempdir().unwrap().path(), "e.mp4", "320x240", 1)).unwrap();
        start.truncate(2000);
        let (_, ticket) = c.create_upload(&owner, "PUBLIC").await;
        let path = Client::path(&ticket.url);
        let head = c.head(&owner, &path).await;
        assert!(head.headers()["upload-expires"].to_str().unwrap().ends_with(" GMT"), "an HTTP date");
        assert_eq!(c.patch(&owner, &path, 0, Some(1_000_000), start.clone()).await.status(), 204);
        let unfinished = c.partial(&owner, 1_000_000).await;
        assert_eq!(c.patch(&owner, &unfinished, 0, None, start.clone()).await.status(), 204);
        let unjoined = c.partial(&owner, 2000).await;
        assert_eq!(c.patch(&owner, &unjoined, 0, None, start).await.status(), 204);
        // The subject is time: the 1 s expiry must have passed.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_eq!(c.head(&owner, &path).await.status(), 410, "expired");
        assert_eq!(c.head(&owner, &unfinished).await.status(), 410, "expired");
        assert_eq!(c.patch(&owner, &path, 2000, None, vec![0; 10]).await.status(), 410);
        (path, [unfinished, unjoined])
    };
    // A restarted service sweeps at once (its sweeper's first run, in the background). Nothing
    // else touches the upload meanwhile: a request holding it would make the sweeper leave it
    // for its next round, a minute later.
    let app = app_with(replica).await;
    let ids: Vec<&str> = [&path, &partials[0], &partials[1]].iter().map(|p| p.rsplit('/').next().unwrap()).collect();
    let parts_left = || {
        let parts = data_dir.join("objects.multipart");
        std::fs::read_dir(&parts).map(|d| d.count()).unwrap_or(0)
    };
    let swept = eventually(Duration::from_secs(10), || async {
        let mut left = 0;
        for id in &ids {
            left += app.shared.storage.list(&format!("uploads/{id}")).await.unwrap().len();
        }
        (backend != Backend::Embedded || parts_left() == 0) && left == 0
    })
    .await;
    if backend == Backend::Embedded {
        assert_eq!(parts_left(), 0, "the multipart upload was aborted");
    }
    assert!(swept, "the tails and the completed partial's object are gone");
    let c = Client::new(&app);
    assert_eq!(c.head(&owner, &path).await.status(), 410);
    assert_eq!(c.head(&owner, &partials[1]).await.status(), 410, "the completed partial expired");
}

/// The same state through GraphQL (`Video.playback`, `Video.processing`, as the router
/// asks for entities) and gRPC (`GetProcessing`, `RetryJob`), with the visibility rules.
async fn graphql_and_grpc_report_processing_and_playback(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read(clip(dir.path(), "q.mp4", "320x240", 1)).unwrap();
    let app = app_with(infra(backend).await).await;
    let c = Client::new(&app);
    let owner = user();
    let (id, ticket) = c.create_upload(&owner, "UNLISTED").await;
    let query = "query($id: ID!) { _entities(representations: [{__typename: \"Video\", id: $id}]) {
        ... on Video { processing { state playable } playback { hlsUrl dashUrl durationSeconds thumbnailUrl renditions { name width height bitrate } } } } }";
    let gql = |viewer: Option<String>| {
        let mut req =
            c.http.post(app.url("/graphql")).json(&serde_json::json!({ "query": query, "variables": { "id": id } }));
        if let Some(v) = viewer {
            req = req.header("x-user-id", v);
        }
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let before = gql(Some(owner.clone())).await;
    assert_eq!(before["data"]["_entities"][0]["processing"]["state"], "AWAITING_UPLOAD", "{before}");
    assert!(before["data"]["_entities"][0]["playback"].is_null());
    let stranger = gql(Some(user())).await;
    assert!(stranger["data"]["_entities"][0]["processing"].is_null(), "not ready: nothing for others: {stranger}");

    let path = Client::path(&ticket.url);
    assert_eq!(c.patch(&owner, &path, 0, Some(source.len() as u64), source).await.status(), 204);
    assert_eq!(c.settled(&owner, &id, Duration::from_secs(120)).await["state"], "READY");
    let after = gql(None).await;
    let video = &after["data"]["_entities"][0];
    assert_eq!(video["processing"]["state"], "READY", "{after}");
    assert_eq!(video["playback"]["hlsUrl"], format!("http://edge.test/video/{id}/hls/master.m3u8"));
    assert_eq!(video["playback"]["dashUrl"], format!("http://edge.test/video/{id}/dash/manifest.mpd"));
    assert_eq!(video["playback"]["renditions"][0]["height"], 240, "an unlisted video plays by id for anyone");
    assert!(video["playback"]["renditions"][0]["bitrate"].as_i64().unwrap() > 0);
    assert!(video["playback"]["thumbnailUrl"].as_str().unwrap().ends_with(".jpg"));

    let channel = tonic::transport::Endpoint::from_shared(app.url("")).unwrap().connect().await.unwrap();
    let mut grpc = pb::transcoder_service_client::TranscoderServiceClient::new(channel);
    let processing = grpc.get_processing(pb::GetProcessingRequest { video_id: id.clone() }).await.unwrap().into_inner();
    assert_eq!((processing.stage.as_str(), processing.percent), ("READY", 100.0));
    assert!(processing.hls_url.unwrap().ends_with("/hls/master.m3u8"));
    let mut retry = tonic::Request::new(pb::RetryJobRequest { video_id: id.clone() });
    retry.metadata_mut().insert("x-user-id", owner.parse().unwrap());
    let refused = grpc.retry_job(retry).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists, "a ready video has nothing to retry: {refused:?}");
    let anonymous = grpc.retry_job(pb::RetryJobRequest { video_id: id.clone() }).await.unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
}

/// A deferred-length upload (what createVideo opens) counts toward the quota by the bytes
/// that arrive: a PATCH that would pass it is refused (413) and keeps what was stored.
async fn deferred_uploads_count_toward_the_quota_by_bytes_received(backend: Backend) {
    let mut infra = infra(backend).await;
    infra.config.transcoder_mut().max_upload_bytes = 10_000_000;
    infra.config.transcoder_mut().user_quota_bytes = 100_000;
    let app = app_with(infra).await;
    let c = Client::new(&app);
    let owner = user();
    let head = std::fs::read(clip(tempfile::tempdir().unwrap().path(), "q.mp4", "320x240", 1)).unwrap();
    let video_bytes = |n: usize| {
        let mut b = head[..head.len().min(n)].to_vec();
        b.resize(n, 0);
        b
    };
    let (_, first) = c.create_upload(&owner, "PUBLIC").await;
    let first = Client::path(&first.url);
    assert_eq!(c.patch(&owner, &first, 0, None, video_bytes(60_000)).await.status(), 204);
    let res = c.patch(&owner, &first, 60_000, None, vec![0; 60_000]).await;
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("quota"), "{body}");
    assert_eq!(c.offset(&owner, &first).await, 60_000, "nothing already stored is lost");

    // Another deferred upload shares the quota with the first one's bytes.
    let (_, second) = c.create_upload(&owner, "PUBLIC").await;
    let second = Client::path(&second.url);
    assert_eq!(c.patch(&owner, &second, 0, None, video_bytes(50_000)).await.status(), 413);
    assert_eq!(c.offset(&owner, &second).await, 0);
    assert_eq!(c.patch(&owner, &second, 0, None, video_bytes(40_000)).await.status(), 204, "what is left is usable");
    assert_eq!(c.patch(&owner, &second, 40_000, None, vec![0; 1]).await.status(), 413, "the quota is full");
    assert_eq!(c.offset(&owner, &first).await, 60_000);

    // Nothing left: a new deferred upload is refused when it is created.
    let video_id = Uuid::now_v7().to_string();
    assert!(c.register(&owner, &video_id, "PUBLIC").await.is_err(), "createVideo gets no ticket");
    let res = c
        .http
        .post(app.url("/video/upload"))
        .header(TUS.0, TUS.1)
        .header("x-user-id", &owner)
        .header("upload-defer-length", "1")
        .header("upload-metadata", format!("videoId {}", b64(&video_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    // Other users have their own quota.
    let other = user();
    let (_, theirs) = c.create_upload(&other, "PUBLIC").await;
    assert_eq!(c.patch(&other, &Client::path(&theirs.url), 0, None, video_bytes(60_000)).await.status(), 204);
}

/// A user may hold only `max_open_uploads_per_user` unfinished uploads (403 after that);
/// finishing or terminating one frees its place.
async fn open_uploads_per_user_are_capped(backend: Backend) {
    let mut infra = infra(backend).await;
    infra.config.transcoder_mut().max_open_uploads_per_user = 3;
    let app = app_with(infra).await;
    let c = Client::new(&app);
    let owner = user();
    let mut paths = Vec::new();
    for _ in 0..3 {
        paths.push(Client::path(&c.create_upload(&owner, "PUBLIC").await.1.url));
    }
    let video_id = Uuid::now_v7().to_string();
    let refused = c.register(&owner, &video_id, "PUBLIC").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("unfinished uploads"), "{refused:?}");
    let post = || {
        c.http
            .post(app.url("/video/upload"))
            .header(TUS.0, TUS.1)
            .header("x-user-id", &owner)
            .header("upload-length", "1000")
            .header("upload-metadata", format!("videoId {}", b64(&video_id)))
            .send()
    };
    let res = post().await.unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "FORBIDDEN", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("at most 3"), "{body}");
    assert!(c.register(&user(), &Uuid::now_v7().to_string(), "PUBLIC").await.is_ok(), "a cap per user");

    let del = c.http.delete(app.url(&paths[0])).header(TUS.0, TUS.1).header("x-user-id", &owner).send().await.unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(post().await.unwrap().status(), 201, "a terminated upload frees its place");
}

/// The first 512 bytes are sniffed however the PATCHes split them: a first PATCH of 10
/// bytes does not let a non-video through.
async fn the_first_bytes_are_sniffed_however_the_patches_split_them(backend: Backend) {
    let app = app_with(infra(backend).await).await;
    let c = Client::new(&app);
    let owner = user();
    let text = b"#!/bin/sh\necho this is a shell script, not a video at all, sorry\n".repeat(40);
    let (video_id, ticket) = c.create_upload(&owner, "PUBLIC").await;
    let path = Client::path(&ticket.url);
    let total = Some(text.len() as u64);
    assert_eq!(c.patch(&owner, &path, 0, total, text[..10].to_vec()).await.status(), 204, "too few bytes to judge");
    assert_eq!(c.patch(&owner, &path, 10, None, text[10..300].to_vec()).await.status(), 204, "still too few");
    let res = c.patch(&owner, &path, 300, None, text[300..].to_vec()).await;
    assert_eq!(res.status(), 415);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("not a video"), "{body}");
    assert_eq!(c.head(&owner, &path).await.status(), 410, "the upload was dropped");
    let (_, v) = c.video(Some(&owner), &video_id).await;
    assert_eq!(v["state"], "AWAITING_UPLOAD", "nothing was queued");

    // A real video split the same way goes through.
    let source = std::fs::read(clip(tempfile::tempdir().unwrap().path(), "s.mp4", "320x240", 1)).unwrap();
    let (_, ticket) = c.create_upload(&owner, "PUBLIC").await;
    let path = Client::path(&ticket.url);
    let total = Some(source.len() as u64);
    assert_eq!(c.patch(&owner, &path, 0, total, source[..10].to_vec()).await.status(), 204);
    assert_eq!(c.patch(&owner, &path, 10, None, source[10..300].to_vec()).await.status(), 204);
    let res = c.patch(&owner, &path, 300, None, source[300..].to_vec()).await;
    assert_eq!(res.status(), 204);
    assert_eq!(res.headers()["upload-offset"].to_str().unwrap(), source.len().to_string());
}

/// A PATCH whose client stops sending is cut off after the idle timeout: the bytes that
/// arrived are kept and the upload is free, so HEAD answers their offset and the upload
/// resumes from there while the stalled connection is still open.
async fn a_stalled_patch_times_out_keeps_its_bytes_and_frees_the_upload(backend: Backend) {
    let mut infra = infra(backend).await;
    infra.config.transcoder_mut().upload_idle_timeout_seconds = 1;
    let app = app_with(infra).await;
    let c = Client::new(&app);
    let owner = user();
    let (video_id, ticket) = c.create_upload(&owner, "PUBLIC").await;
    let path = Client::path(&ticket.url);
    let source = std::fs::read(clip(tempfile::tempdir().unwrap().path(), "t.mp4", "320x240", 1)).unwrap();
    let first = bytes::Bytes::copy_from_slice(&source[..3000]);
    // 3,000 bytes, then nothing, never ending.
    let stalled_body = futures::StreamExt::chain(
        futures::stream::iter(vec![Ok::<_, std::io::Error>(first)]),
        futures::stream::pending(),
    );
    let stalled = tokio::spawn(
        c.http
            .patch(app.url(&path))
            .header(TUS.0, TUS.1)
            .header(OCTET.0, OCTET.1)
            .header("x-user-id", &owner)
            .header("upload-offset", "0")
            .header("upload-length", source.len().to_string())
            .body(reqwest::Body::wrap_stream(stalled_body))
            .send(),
    );
    assert!(
        eventually(Duration::from_secs(15), || async { c.offset(&owner, &path).await == 3000 }).await,
        "the stalled PATCH's bytes were kept and HEAD got past it"
    );
    let res = c.patch(&owner, &path, 3000, None, source[3000..].to_vec()).await;
    assert_eq!(res.status(), 204, "the upload resumed while the stalled client still holds its connection");
    assert_eq!(res.headers()["upload-offset"].to_str().unwrap(), source.len().to_string());
    stalled.abort();
    assert_eq!(c.settled(&owner, &video_id, Duration::from_secs(120)).await["state"], "READY");
}

/// Media's events as media sends them (`VideoChanged` with its version).
async fn media_event(app: &TestApp, kind: &str, id: &str, owner: &str, visibility: &str, version: i64) {
    let payload = events::VideoChanged {
        video_id: id.into(),
        owner_id: owner.into(),
        visibility: visibility.into(),
        status: "READY".into(),
        version,
        ..Default::default()
    };
    app.shared.bus.publish(&envelope(kind, id, "media", payload.encode_to_vec())).await.unwrap();
}

/// Events are applied in order on one queue: once a video deleted after `kind` is gone,
/// everything sent before has been applied.
async fn events_applied(c: &Client<'_>, owner: &str) {
    let (marker, _) = c.create_upload(owner, "PRIVATE").await;
    media_event(c.app, "video.deleted", &marker, owner, "", 1).await;
    assert!(eventually(Duration::from_secs(10), || async { c.video(Some(owner), &marker).await.0 == 404 }).await);
}

/// Media's events may arrive late and out of order: an older `video.updated` never undoes
/// a newer one, and nothing brings a deleted video back.
async fn reordered_media_events_never_reveal_a_private_or_deleted_video(backend: Backend) {
    let source = std::fs::read(clip(tempfile::tempdir().unwrap().path(), "o.mp4", "320x240", 1)).unwrap();
    let app = app_with(infra(backend).await).await;
    let c = Client::new(&app);
    let owner = user();
    let (id, ticket) = c.create_upload(&owner, "PUBLIC").await;
    c.upload_until_ready(&owner, &id, &ticket, &source).await;
    assert_eq!(c.play(None, &id, "hls/master.m3u8").await, 200);

    media_event(&app, "video.updated", &id, &owner, "PRIVATE", 2_000).await;
    assert!(eventually(Duration::from_secs(10), || async { c.play(None, &id, "hls/master.m3u8").await == 404 }).await);
    // The update that made it public before arrives late.
    media_event(&app, "video.updated", &id, &owner, "PUBLIC", 1_000).await;
    events_applied(&c, &owner).await;
    assert_eq!(c.play(None, &id, "hls/master.m3u8").await, 404, "an older update was applied over a newer one");
    assert_eq!(c.play(Some(&owner), &id, "hls/master.m3u8").await, 200, "the owner still plays it");

    media_event(&app, "video.deleted", &id, &owner, "PRIVATE", 3_000).await;
    assert!(eventually(Duration::from_secs(10), || async { c.video(Some(&owner), &id).await.0 == 404 }).await);
    // An update from before the deletion, and a redelivered creation, arrive after it.
    media_event(&app, "video.updated", &id, &owner, "PUBLIC", 2_500).await;
    media_event(&app, "video.created", &id, &owner, "PUBLIC", 500).await;
    events_applied(&c, &owner).await;
    assert_eq!(c.video(Some(&owner), &id).await.0, 404, "a deleted video came back");
    assert_eq!(c.play(None, &id, "hls/master.m3u8").await, 404);
    assert!(c.register(&owner, &id, "PUBLIC").await.is_err(), "no upload for a deleted video");
}

/// The real media service over GraphQL, as a client calls it.
async fn media_graphql(media: &TestApp, user: &str, query: &str, variables: Value) -> Value {
    let res: Value = reqwest::Client::new()
        .post(media.url("/graphql"))
        .header("x-user-id", user)
        .json(&serde_json::json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(res["errors"].is_null(), "{res}");
    res["data"].clone()
}

/// `createVideo` with the file's size (issue 16): the ticket's upload carries that length, so
/// a tus client's HEAD on it needs no deferred length; a size over the quota is refused at
/// once, with the field named, and leaves no video behind.
async fn create_video_with_its_size_opens_an_upload_of_that_length(backend: Backend) {
    let mut infra = infra(backend).await;
    infra.config.transcoder_mut().user_quota_bytes = 100_000;
    let app = app_with(infra).await;
    let mut media_infra = TestInfra::new(backend).await;
    media_infra.config.endpoints.transcoder = Some(app.url(""));
    let media = TestApp::start(media_infra, |s| async move { flick_media::build(&s).await }).await;
    let c = Client::new(&app);
    let owner = user();
    let create = |size: Value| {
        let http = c.http.clone();
        let (url, owner) = (media.url("/graphql"), owner.clone());
        async move {
            let query = "mutation($i: CreateVideoInput!) { createVideo(input: $i) { video { id } upload { url } } }";
            let body = json!({ "query": query, "variables": { "i": { "title": "Sized", "sizeBytes": size } } });
            http.post(url).header("x-user-id", owner).json(&body).send().await.unwrap().json::<Value>().await.unwrap()
        }
    };
    let made = create(json!(50_000)).await;
    let url = made["data"]["createVideo"]["upload"]["url"].as_str().unwrap_or_else(|| panic!("a ticket: {made}"));
    let head = c.head(&owner, &Client::path(url)).await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["upload-length"], "50000", "the upload knows its length");
    assert!(head.headers().get("upload-defer-length").is_none());

    let refused = create(json!(200_000)).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE", "{refused}");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("quota"), "{refused}");
    assert!(refused["errors"][0]["extensions"]["fields"]["sizeBytes"].is_string(), "{refused}");
    let dashboard: Value = c
        .http
        .post(media.url("/graphql"))
        .header("x-user-id", &owner)
        .json(&json!({ "query": "{ dashboard { videos { id } } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let videos = dashboard["data"]["dashboard"]["videos"].as_array().unwrap_or_else(|| panic!("{dashboard}"));
    assert_eq!(videos.len(), 1, "the refused video is gone: {dashboard}");
    let fractional = create(json!(1.5)).await;
    assert_eq!(fractional["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{fractional}");
}

/// When the local copy of a video's visibility is older than `visibility_max_age_seconds`,
/// playback asks media (gRPC): a change whose event never reached the transcoder still
/// takes effect, and so does a deletion.
async fn playback_checks_a_stale_visibility_with_media(backend: Backend) {
    let source = std::fs::read(clip(tempfile::tempdir().unwrap().path(), "m.mp4", "320x240", 1)).unwrap();
    // Media on its own bus: none of its events reach this transcoder.
    let media = TestApp::start(TestInfra::new(backend).await, |s| async move { flick_media::build(&s).await }).await;
    let mut infra = infra(backend).await;
    infra.config.endpoints.media = Some(media.url(""));
    infra.config.transcoder_mut().visibility_max_age_seconds = 1;
    let app = app_with(infra).await;
    let c = Client::new(&app);
    let owner = user();
    let created = media_graphql(
        &media,
        &owner,
        "mutation { createVideo(input: { title: \"Stale\", visibility: PUBLIC }) { video { id } } }",
        Value::Null,
    )
    .await;
    let id = created["createVideo"]["video"]["id"].as_str().unwrap().to_string();
    // What media's createVideo does when it reaches the transcoder.
    let ticket = c.register(&owner, &id, "PUBLIC").await.unwrap();
    c.upload_until_ready(&owner, &id, &ticket, &source).await;
    assert_eq!(c.play(None, &id, "hls/master.m3u8").await, 200);

    let update = "mutation($id: ID!) { updateVideo(id: $id, input: { visibility: PRIVATE }) { id } }";
    media_graphql(&media, &owner, update, serde_json::json!({ "id": id })).await;
    assert!(
        eventually(Duration::from_secs(10), || async { c.play(None, &id, "hls/master.m3u8").await == 404 }).await,
        "a video made private stopped playing for others without its event"
    );
    assert_eq!(c.play(Some(&owner), &id, "hls/master.m3u8").await, 200, "its owner still plays it");

    let delete = "mutation($id: ID!) { deleteVideo(id: $id) }";
    media_graphql(&media, &owner, delete, serde_json::json!({ "id": id })).await;
    assert!(
        eventually(Duration::from_secs(10), || async { c.play(Some(&owner), &id, "hls/master.m3u8").await == 404 })
            .await,
        "a video media deleted stopped playing without its event"
    );
    assert_eq!(c.video(Some(&owner), &id).await.0, 404);
    // Hidden, not deleted: NOT_FOUND is also what media answers a caller whose identity it
    // did not take (a mesh secret being rotated), and dropped files are gone for good. The
    // files go with media's `video.deleted` event.
    let kept = app.shared.storage.list(&format!("videos/{id}")).await.unwrap();
    assert!(!kept.is_empty(), "a visibility check deleted the video's files");
}

/// Every `transcode.progress` this process sees: (video, stage, when it was published).
type ProgressLog = std::sync::Arc<std::sync::Mutex<Vec<(String, String, i64)>>>;

/// Starts recording progress messages; returns once the subscription receives (RabbitMQ
/// binds its queue on the first subscription: a probe message is sent until it arrives).
async fn progress_log(app: &TestApp) -> ProgressLog {
    let mut rx = app.shared.bus.subscribe_transient();
    let log = ProgressLog::default();
    let probed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (sink, seen) = (log.clone(), probed.clone());
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(e) if e.r#type == "transcode.progress" => {
                    if let Ok(p) = events::TranscodeProgress::decode(e.payload.as_slice()) {
                        sink.lock().unwrap().push((p.video_id, p.stage, e.occurred_at_ms));
                    }
                }
                Ok(e) if e.r#type == "test.probe" => seen.store(true, std::sync::atomic::Ordering::SeqCst),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let bus = app.shared.bus.clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            let (bus, probed) = (bus.clone(), probed.clone());
            async move {
                let _ = bus.publish_transient(&envelope("test.probe", "probe", "test", vec![])).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                probed.load(std::sync::atomic::Ordering::SeqCst)
            }
        })
        .await,
        "the transient subscription is live"
    );
    log
}

/// When each job of `video` started (its `downloading` stages), in order.
fn starts(log: &ProgressLog, video: &str) -> Vec<i64> {
    log.lock().unwrap().iter().filter(|(v, stage, _)| v == video && stage == "downloading").map(|e| e.2).collect()
}

/// `transcode_jobs_deferred_total{reason}` so far (see `metric`).
fn deferred(reason: &str) -> u64 {
    metric("transcode_jobs_deferred_total", "reason", reason)
}

/// `PATCH /video/{id}` retries a FAILED video at most `video_retries` times (then 409 with
/// the reason, and the video stays FAILED); a new upload of the video starts counting again.
async fn retries_of_a_video_are_limited_until_its_source_is_uploaded_again(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(clip(dir.path(), "g.mp4", "320x240", 1)).unwrap();
    // A valid MP4 header followed by garbage: it passes sniffing, not probing.
    let mut broken = good[..64].to_vec();
    broken.extend(std::iter::repeat_n(0x5au8, 20_000));
    let mut infra = infra(backend).await;
    infra.config.transcoder_mut().video_retries = 2;
    let app = app_with(infra).await;
    let c = Client::new(&app);
    let owner = user();
    let (id, ticket) = c.create_upload(&owner, "PUBLIC").await;
    let upload = |ticket: pb::Upload| {
        let (c, owner, broken) = (&c, owner.clone(), broken.clone());
        async move {
            let path = Client::path(&ticket.url);
            assert_eq!(c.patch(&owner, &path, 0, Some(broken.len() as u64), broken).await.status(), 204);
        }
    };
    let retry = || async {
        let res = c.http.patch(app.url(&format!("/video/{id}"))).header("x-user-id", &owner).send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    };
    upload(ticket).await;
    assert_eq!(c.settled(&owner, &id, Duration::from_secs(60)).await["state"], "FAILED");
    for n in 1..=2 {
        assert_eq!(retry().await.0, 202, "retry {n} of 2");
        assert_eq!(c.settled(&owner, &id, Duration::from_secs(60)).await["state"], "FAILED", "retry {n} ran");
    }
    let (status, body) = retry().await;
    assert_eq!(status, 409, "a third retry is refused: {body}");
    assert!(body.contains("retried 2 times"), "{body}");
    assert_eq!(c.video(Some(&owner), &id).await.1["state"], "FAILED", "the refused retry queued nothing");

    // The owner uploads the video's source again: its new job has retries of its own.
    let again = c.register(&owner, &id, "PUBLIC").await.unwrap();
    upload(again).await;
    assert!(
        eventually(Duration::from_secs(60), || async {
            let v = c.video(Some(&owner), &id).await.1;
            v["state"] == "FAILED" && v["error"].as_str().is_some_and(|e| !e.contains("retried"))
        })
        .await
    );
    assert_eq!(retry().await.0, 202, "a new upload starts counting again");
}

/// The job's time budget covers the thumbnails and storyboard too, not only the encode: with
/// a storyboard step that hangs (an ffmpeg wrapper that sleeps when asked for the storyboard
/// tiles) the job fails once `job_timeout_seconds` have passed, long before the storyboard
/// ffmpeg's own timeout (two minutes), and that ffmpeg is stopped.
async fn a_hung_storyboard_step_is_stopped_by_the_job_time_budget(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read(clip(dir.path(), "clip.mp4", "320x240", 2)).unwrap();
    let real = std::process::Command::new("sh").args(["-c", "command -v ffmpeg"]).output().unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_string();
    assert!(!real.is_empty(), "ffmpeg is on PATH");
    let marker = dir.path().join("storyboard.pid");
    let wrapper = dir.path().join("ffmpeg");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in *tile=*) echo $$ > '{}'; exec sleep 600;; esac; done\nexec '{real}' \"$@\"\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut infra = infra(backend).await;
    infra.config.transcoder_mut().ffmpeg = wrapper.to_string_lossy().into_owned();
    infra.config.transcoder_mut().job_timeout_seconds = 10;
    infra.config.transcoder_mut().job_attempts = 1;
    let app = app_with(infra).await;
    let c = Client::new(&app);
    let owner = user();
    let (id, ticket) = c.create_upload(&owner, "PUBLIC").await;
    let path = Client::path(&ticket.url);
    let started = std::time::Instant::now();
    assert_eq!(c.patch(&owner, &path, 0, Some(source.len() as u64), source).await.status(), 204);
    let v = c.settled(&owner, &id, Duration::from_secs(60)).await;
    let took = started.elapsed();
    assert_eq!(v["state"], "FAILED", "{v}");
    let reason = v["error"].as_str().unwrap_or_default();
    assert!(reason.contains("ran past its time limit of 10 s"), "{reason}");
    assert!(took < Duration::from_secs(60), "failed by the job's budget, not the storyboard's own timeout: {took:?}");
    let pid = std::fs::read_to_string(&marker).expect("the job reached the storyboard step before its budget ran out");
    let stat = format!("/proc/{}/stat", pid.trim());
    assert!(
        eventually(Duration::from_secs(10), || async {
            // Gone, or a zombie awaiting its reaper: either way no longer running.
            std::fs::read_to_string(&stat)
                .map_or(true, |s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')))
        })
        .await,
        "the hung storyboard ffmpeg was stopped"
    );
}

/// Fair scheduling: with `user_jobs_in_flight` 1 and two workers, user A's four jobs start
/// two at once (nobody else waits), but once user B's job is queued behind A's other two, A
/// keeps at most one job in flight (the others are deferred) and B's starts on the other
/// worker, instead of after A's whole queue.
async fn one_users_long_queue_does_not_hold_back_another_users_job(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read(clip(dir.path(), "clip.mp4", "640x360", 30)).unwrap();
    let mut infra = infra(backend).await;
    infra.config.transcoder_mut().workers = 2;
    infra.config.transcoder_mut().user_jobs_in_flight = 1;
    let app = app_with(infra).await;
    let log = progress_log(&app).await;
    let c = Client::new(&app);
    let (a, b) = (user(), user());
    let upload = |owner: String| {
        let (c, source) = (&c, source.clone());
        async move {
            let (id, ticket) = c.create_upload(&owner, "PUBLIC").await;
            let path = Client::path(&ticket.url);
            assert_eq!(c.patch(&owner, &path, 0, Some(source.len() as u64), source).await.status(), 204);
            id
        }
    };
    let mut mine = Vec::new();
    for _ in 0..4 {
        mine.push(upload(a.clone()).await);
    }
    assert!(
        eventually(Duration::from_secs(30), || async { mine[..2].iter().all(|v| !starts(&log, v).is_empty()) }).await,
        "A's first two jobs run at once while nobody else waits"
    );
    let theirs = upload(b.clone()).await;
    // The point of the test: B queued while A's first jobs still run and two more wait.
    for v in &mine[..2] {
        assert_eq!(c.video(Some(&a), v).await.1["state"], "PROCESSING", "the clip is long enough to queue B meanwhile");
    }
    for v in &mine[2..] {
        assert!(starts(&log, v).is_empty(), "A's later jobs wait for a worker");
    }
    for (owner, v) in mine.iter().map(|v| (&a, v)).chain([(&b, &theirs)]) {
        assert_eq!(c.settled(owner, v, Duration::from_secs(240)).await["state"], "READY", "{v}");
    }
    let first = |v: &String| starts(&log, v).first().copied().expect("the job started");
    // A may hold one job while B waits. Usually A's first jobs end apart, so the worker freed
    // first defers A's queued jobs and B starts before both; when both end at once, A is
    // below its cap and one of its queued jobs may take a worker, the other goes to B. Never
    // do both of A's queued jobs start before B's.
    let ahead_of_b = mine[2..].iter().filter(|v| first(v) < first(&theirs)).count();
    assert!(
        ahead_of_b <= 1,
        "B's job started ({}) after {ahead_of_b} of A's queued jobs: {:?}",
        first(&theirs),
        log.lock().unwrap().iter().filter(|e| e.1 == "downloading").collect::<Vec<_>>()
    );
    assert!(deferred("owner_busy") > 0, "A's jobs were deferred while B's waited");
}

/// A second delivery of a running job (as RabbitMQ makes after its consumer timeout or a
/// dropped connection; here a copy published while the job runs, with a second worker free
/// to take it) waits while the job's lease is held and is dropped once the job is READY:
/// one start, one completion. (Crashed workers need separate processes: crates/flick's
/// tests/worker.rs.)
async fn a_second_delivery_of_a_running_job_waits_and_the_job_runs_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read(clip(dir.path(), "clip.mp4", "640x360", 20)).unwrap();
    let mut infra = infra(backend).await;
    infra.config.transcoder_mut().workers = 2;
    let app = app_with(infra).await;
    let log = progress_log(&app).await;
    let c = Client::new(&app);
    let owner = user();
    let (id, ticket) = c.create_upload(&owner, "PUBLIC").await;
    let path = Client::path(&ticket.url);
    let upload_id = path.rsplit('/').next().unwrap().to_string();
    assert_eq!(c.patch(&owner, &path, 0, Some(source.len() as u64), source).await.status(), 204);
    assert!(eventually(Duration::from_secs(30), || async { !starts(&log, &id).is_empty() }).await, "the job started");
    let held_before = deferred("held");
    let copy = events::UploadCompleted { video_id: id.clone(), upload_id, size_bytes: 0 };
    app.shared.bus.publish(&envelope("upload.completed", &id, "test", copy.encode_to_vec())).await.unwrap();
    assert!(
        eventually(Duration::from_secs(30), || async { deferred("held") > held_before }).await,
        "the copy was delivered while the job ran, and waited"
    );
    assert_eq!(c.video(Some(&owner), &id).await.1["state"], "PROCESSING", "the copy came while the job ran");
    assert_eq!(c.settled(&owner, &id, Duration::from_secs(120)).await["state"], "READY");
    // The copy is dropped at its next delivery (READY): no further start, then or later.
    let ready = || log.lock().unwrap().iter().filter(|(v, stage, _)| *v == id && stage == "ready").count();
    assert!(eventually(Duration::from_secs(10), || async { ready() >= 1 }).await);
    assert_eq!(starts(&log, &id).len(), 1, "the job started once");
    assert_eq!(ready(), 1, "the job completed once");
}

flick_testkit::on_both_backends!(
    create_video_with_its_size_opens_an_upload_of_that_length,
    a_head_during_a_patch_waits_for_its_offset,
    a_deferred_length_may_use_the_whole_quota,
    graphql_and_grpc_report_processing_and_playback,
    abandoned_uploads_expire_and_their_parts_are_dropped,
    a_long_video_plays_before_its_ladder_finishes,
    chunked_upload_with_an_interruption_resumes_and_becomes_playable,
    checksums_creation_with_upload_and_termination,
    oversize_over_quota_and_non_media_uploads_are_refused,
    an_upload_resumes_on_a_restarted_server,
    a_broken_video_fails_with_a_reason_and_the_worker_survives,
    private_videos_play_for_their_owner_only_and_deletion_removes_every_object,
    playback_fetches_are_not_views,
    deferred_uploads_count_toward_the_quota_by_bytes_received,
    open_uploads_per_user_are_capped,
    the_first_bytes_are_sniffed_however_the_patches_split_them,
    a_stalled_patch_times_out_keeps_its_bytes_and_frees_the_upload,
    reordered_media_events_never_reveal_a_private_or_deleted_video,
    playback_checks_a_stale_visibility_with_media,
    retries_of_a_video_are_limited_until_its_source_is_uploaded_again,
    a_hung_storyboard_step_is_stopped_by_the_job_time_budget,
    one_users_long_queue_does_not_hold_back_another_users_job,
    a_second_delivery_of_a_running_job_waits_and_the_job_runs_once,
    partial_uploads_joined_by_a_final_become_the_source_and_play,
    patches_longer_than_a_part_are_stored_byte_for_byte,
    concatenation_refusals_quota_and_termination,
    a_long_video_is_split_into_parts_that_workers_share_and_plays_as_one,
    a_failing_part_is_retried_alone_then_fails_the_video_with_its_reason,
);
