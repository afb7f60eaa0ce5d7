//! `flick worker` as a separate process on real infrastructure (PostgreSQL, RabbitMQ, S3):
//! workers stopped (SIGTERM) or killed (SIGKILL) in the middle of a job lose nothing. The job
//! goes back to the queue without spending an attempt, the next worker finishes it, and it
//! completes exactly once with every output in place.
//!
//! Real backends only: a crash redelivery needs a broker that outlives the killed process
//! (the in-process bus dies with it, and with it the job), and a second process sharing the
//! database. The duplicate-delivery case without a crash also runs embedded, in
//! crates/transcoder/tests/transcoder.rs (`a_second_delivery_of_a_running_job_…`).

use flick_platform::db::sea_orm::{ConnectionTrait, Database, Statement};
use flick_platform::storage::{ObjectStorage, StorageOptions};
use flick_testkit::{TestDatabase, amqp_url, require, s3, unique};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{flick, free_port};

/// A flick process with the shared configuration; killed with its process group on drop.
struct Process(Child);

impl Process {
    /// SIGKILL to the process and its children (ffmpeg), as when a container is killed.
    fn kill_group(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_group();
    }
}

struct Stack {
    env: Vec<(String, String)>,
    port: u16,
    _dir: tempfile::TempDir,
    db_url: String,
    _db: TestDatabase,
    run: String,
}

impl Stack {
    async fn new() -> Self {
        require("RabbitMQ", &amqp_url(), 5672).await;
        let s3 = s3();
        require("the S3 server", &s3.endpoint, 9000).await;
        let db = TestDatabase::create().await;
        let dir = tempfile::tempdir().unwrap();
        let run = unique("w");
        let port = free_port();
        let env = vec![
            ("FLICK_DATA_DIR", dir.path().to_string_lossy().into_owned()),
            ("FLICK_DATABASE__URL", db.url.clone()),
            ("FLICK_DATABASE__MIGRATE_ON_START", "true".into()),
            ("FLICK_BUS__URL", amqp_url()),
            ("FLICK_BUS__EXCHANGE", format!("flick.{run}")),
            ("FLICK_BUS__QUEUE_PREFIX", format!("{run}.")),
            ("FLICK_BUS__RETRY_BASE_MS", "200".into()),
            ("FLICK_STORAGE__URL", format!("s3://{}", s3.bucket)),
            ("FLICK_STORAGE__S3__ENDPOINT", s3.endpoint),
            ("FLICK_STORAGE__S3__ACCESS_KEY_ID", s3.access_key),
            ("FLICK_STORAGE__S3__SECRET_ACCESS_KEY", s3.secret_key),
            ("FLICK_SERVER__PORTS__TRANSCODER", port.to_string()),
            ("FLICK_TRANSCODER__PRESET", "ultrafast".into()),
            ("FLICK_TRANSCODER__WORK_DIR", dir.path().join("scratch").to_string_lossy().into_owned()),
            ("FLICK_TELEMETRY__LOG_LEVEL", "warn".into()),
            // A killed worker's job lease lapses soon, so its redelivery does not wait long.
            ("FLICK_TRANSCODER__JOB_LEASE_SECONDS", "3".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self { env, port, _dir: dir, db_url: db.url.clone(), _db: db, run }
    }

    fn spawn(&self, args: &[&str], extra: &[(&str, &str)]) -> Process {
        let mut cmd = flick();
        cmd.args(args).envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.envs(extra.iter().copied());
        let quiet = std::env::var_os("TEST_LOG").is_none();
        if quiet {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        // Its own process group, so a kill takes its ffmpeg child along.
        Process(cmd.process_group(0).spawn().unwrap())
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn count(&self, sql: &str) -> i64 {
        let db = Database::connect(&self.db_url).await.unwrap();
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql.to_string()))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    }
}

impl Stack {
    async fn text(&self, sql: &str) -> String {
        let db = Database::connect(&self.db_url).await.unwrap();
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql.to_string()))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<String>(0).unwrap()
    }
}

/// Whether a job's scratch directory under `root` holds an encoded segment yet.
fn encoding(root: &std::path::Path) -> bool {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "m4s") {
                return true;
            }
        }
    }
    false
}

async fn state(http: &reqwest::Client, stack: &Stack, owner: &str, id: &str) -> serde_json::Value {
    match http.get(stack.url(&format!("/video/{id}"))).header("x-user-id", owner).send().await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

#[tokio::test]
async fn workers_killed_mid_job_lose_nothing_and_the_job_completes_exactly_once() {
    let stack = Stack::new().await;
    let http = reqwest::Client::new();
    // The service without workers (uploads, playback, the relay) and a clip long enough that a
    // kill lands mid-encode.
    let (_service, owner, video_id) = service_and_upload(&stack, &http, 40).await;

    // One worker gets SIGTERM mid-job (a deploy), the next SIGKILL (a crash), a third
    // finishes. Of two attempts the stop spends none, the crash one (a redelivery counts).
    let one_attempt = [("FLICK_TRANSCODER__JOB_ATTEMPTS", "2")];
    for victim in 0..2 {
        let mut worker = stack.spawn(&["worker"], &one_attempt);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = state(&http, &stack, &owner, &video_id).await;
            if v["state"] == "PROCESSING" {
                break;
            }
            assert_ne!(v["state"], "READY", "worker {victim} finished before it could be killed");
            assert!(Instant::now() < deadline, "worker {victim} never started the job: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Mid-encode: ffmpeg has written a segment into the job's scratch directory.
        while !encoding(&stack._dir.path().join("scratch")) {
            assert!(Instant::now() < deadline, "worker {victim} never started encoding");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if victim == 0 {
            let _ = Command::new("kill").args(["-TERM", &worker.0.id().to_string()]).status();
            let stopped = tokio::task::spawn_blocking(move || {
                let status = worker.0.wait();
                (worker, status)
            });
            let (_worker, status) = tokio::time::timeout(Duration::from_secs(30), stopped).await.unwrap().unwrap();
            assert!(status.unwrap().success(), "a worker stops cleanly on SIGTERM");
            let v = state(&http, &stack, &owner, &video_id).await;
            assert_eq!(v["state"], "QUEUED", "the job went back to the queue: {v}");
        } else {
            worker.kill_group();
            let v = state(&http, &stack, &owner, &video_id).await;
            assert_eq!(v["state"], "PROCESSING", "killed mid-job: {v}");
        }
    }
    let _last = stack.spawn(&["worker"], &one_attempt);
    let deadline = Instant::now() + Duration::from_secs(240);
    let view = loop {
        let v = state(&http, &stack, &owner, &video_id).await;
        if v["state"] == "READY" || v["state"] == "FAILED" {
            break v;
        }
        assert!(Instant::now() < deadline, "the job never completed: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(view["state"], "READY", "{view}");

    // Exactly once: one completion event, no failure.
    let completed = stack
        .count(&format!(
            "SELECT COUNT(*) FROM transcoder.outbox WHERE event_type = 'transcode.completed' AND subject = '{video_id}'"
        ))
        .await;
    let failed = stack
        .count(&format!(
            "SELECT COUNT(*) FROM transcoder.outbox WHERE event_type = 'transcode.failed' AND subject = '{video_id}'"
        ))
        .await;
    assert_eq!((completed, failed), (1, 0));

    // Every segment each playlist names is there, and nothing else is.
    let get = |p: String| {
        let http = http.clone();
        let url = stack.url(&format!("/video/{video_id}/hls/{p}"));
        async move { http.get(url).send().await.unwrap() }
    };
    let master = get("master.m3u8".into()).await.text().await.unwrap();
    let mut expected = vec!["master.m3u8".to_string()];
    for playlist in master
        .lines()
        .filter(|l| l.ends_with("index.m3u8") && !l.starts_with('#'))
        .map(str::to_owned)
        .chain(master.lines().filter_map(|l| l.split("URI=\"").nth(1)).map(|u| u.trim_end_matches('"').to_string()))
    {
        let rung = playlist.split('/').next().unwrap().to_string();
        let text = get(playlist.clone()).await.text().await.unwrap();
        expected.push(playlist.clone());
        for name in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            expected.push(format!("{rung}/{name}"));
        }
        let init = text.lines().find_map(|l| l.split("URI=\"").nth(1)).map(|u| u.trim_end_matches('"').to_string());
        expected.extend(init.map(|i| format!("{rung}/{i}")));
    }
    expected.sort();
    expected.dedup();
    for file in &expected {
        assert_eq!(get(file.clone()).await.status(), 200, "{file} is stored");
    }
    // And the store holds exactly those playlists and segments: no duplicates, no leftovers.
    let s3 = s3();
    let store = ObjectStorage::open(&StorageOptions {
        url: Some(format!("s3://{}", s3.bucket)),
        s3_endpoint: Some(s3.endpoint),
        s3_region: "us-east-1".into(),
        s3_access_key_id: Some(s3.access_key),
        s3_secret_access_key: Some(s3.secret_key),
        ..Default::default()
    })
    .unwrap();
    let prefix = format!("videos/{video_id}/media/");
    let stored: Vec<String> = store
        .list(&format!("videos/{video_id}/media"))
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.trim_start_matches(&prefix).to_string())
        .filter(|k| k.ends_with(".m4s") || k.ends_with(".m3u8") || k.ends_with(".mp4"))
        .collect();
    assert_eq!(stored, expected, "stored playlists and segments are exactly the referenced ones");
    let segments = expected.iter().filter(|f| f.ends_with(".m4s")).count();
    let scratch: Vec<_> =
        std::fs::read_dir(stack._dir.path().join("scratch")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(scratch.is_empty(), "the killed worker's scratch directory was swept: {scratch:?}");
    assert!(segments >= 4 * 10, "40 s in 4 s segments for 4 video rungs and audio: {segments}");
}

/// The service (no workers) up, and a `seconds`-long 720p clip uploaded: its job is queued.
async fn service_and_upload(stack: &Stack, http: &reqwest::Client, seconds: u32) -> (Process, String, String) {
    let service = stack.spawn(&["serve", "--services", "transcoder"], &[("FLICK_TRANSCODER__WORKERS", "0")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http.get(stack.url("/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < deadline, "the transcoder did not come up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    let made = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
        .args(["-f", "lavfi", "-i", "sine", "-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(made.success());
    let data = std::fs::read(&clip).unwrap();
    let owner = uuid::Uuid::now_v7().to_string();
    let video_id = uuid::Uuid::now_v7().to_string();
    let channel = tonic::transport::Endpoint::from_shared(stack.url("")).unwrap().connect().await.unwrap();
    let mut grpc = flick_proto::transcoder::v1::transcoder_service_client::TranscoderServiceClient::new(channel);
    let mut request = tonic::Request::new(flick_proto::transcoder::v1::CreateUploadRequest {
        video_id: video_id.clone(),
        size_bytes: data.len() as i64,
        visibility: "PUBLIC".into(),
    });
    request.metadata_mut().insert("x-user-id", owner.parse().unwrap());
    let upload = grpc.create_upload(request).await.unwrap().into_inner();
    let path = upload.url.trim_start_matches("http://127.0.0.1:8080").to_string();
    let res = http
        .patch(stack.url(&path))
        .header("tus-resumable", "1.0.0")
        .header("content-type", "application/offset+octet-stream")
        .header("x-user-id", &owner)
        .header("upload-offset", "0")
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    (service, owner, video_id)
}

async fn wait_for_state(
    http: &reqwest::Client,
    stack: &Stack,
    owner: &str,
    id: &str,
    want: &[&str],
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let v = state(http, stack, owner, id).await;
        if want.iter().any(|w| v["state"] == *w) {
            return v;
        }
        assert!(Instant::now() < deadline, "never reached {want:?}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn bus(stack: &Stack) -> flick_platform::bus::Bus {
    let options = flick_platform::bus::BusOptions {
        exchange: format!("flick.{}", stack.run),
        queue_prefix: format!("{}.", stack.run),
        ..Default::default()
    };
    flick_platform::bus::Bus::connect(Some(&amqp_url()), options).unwrap()
}

/// A job that kills its worker every time (here: SIGKILL mid-encode) is redelivered, and each
/// redelivery counts as an attempt: after `job_attempts` starts the video is FAILED with a
/// reason and the job is in the dead-letter queue, instead of crashing workers for ever.
#[tokio::test]
async fn a_job_that_kills_its_worker_every_time_ends_failed_and_dead_lettered() {
    let stack = Stack::new().await;
    let http = reqwest::Client::new();
    let (_service, owner, video_id) = service_and_upload(&stack, &http, 40).await;
    let two_attempts = [("FLICK_TRANSCODER__JOB_ATTEMPTS", "2")];
    for victim in 0..2 {
        let mut worker = stack.spawn(&["worker"], &two_attempts);
        let deadline = Instant::now() + Duration::from_secs(60);
        // PROCESSING with an encode under way (a playable early segment is not needed).
        loop {
            let v = state(&http, &stack, &owner, &video_id).await;
            let running = stack
                .count(&format!(
                    "SELECT COUNT(*) FROM transcoder.job_leases WHERE video_id = '{video_id}' AND runs = {} \
                     AND holder IS NOT NULL",
                    victim + 1
                ))
                .await;
            if v["state"] == "PROCESSING" && running == 1 {
                break;
            }
            assert_ne!(v["state"], "READY", "worker {victim} finished before it could be killed");
            assert!(Instant::now() < deadline, "worker {victim} never started the job: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        worker.kill_group();
    }
    let _last = stack.spawn(&["worker"], &two_attempts);
    let v = wait_for_state(&http, &stack, &owner, &video_id, &["READY", "FAILED"]).await;
    assert_eq!(v["state"], "FAILED", "{v}");
    let reason = v["error"].as_str().unwrap_or_default();
    assert!(reason.contains("never finished"), "{reason}");
    let bus = bus(&stack);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dead = bus.take_dead_letters(flick_transcoder::JOBS_QUEUE, 10).await.unwrap();
        if dead.iter().any(|d| d.envelope.as_ref().is_some_and(|e| e.subject == video_id)) {
            break;
        }
        assert!(Instant::now() < deadline, "the job is not dead-lettered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A second delivery of a job that is running (as RabbitMQ makes after its consumer timeout,
/// 30 minutes, or after a dropped connection) is not run beside it: the lease is held and its
/// heartbeat fresh, so the copy waits and is dropped once the job is READY. The job completes
/// once: one `transcode.completed`.
#[tokio::test]
async fn a_second_delivery_of_a_running_job_does_not_run_it_twice() {
    let stack = Stack::new().await;
    let http = reqwest::Client::new();
    let (_service, owner, video_id) = service_and_upload(&stack, &http, 20).await;
    // Two workers, so the copy finds one free.
    let _workers = stack.spawn(&["worker", "--jobs", "2"], &[]);
    wait_for_state(&http, &stack, &owner, &video_id, &["PROCESSING"]).await;
    let started = Instant::now();
    let upload_id = stack.text(&format!("SELECT job_id FROM transcoder.videos WHERE id = '{video_id}'")).await;
    // UploadCompleted { video_id = 1, upload_id = 2 } in protobuf's wire format (ids are short).
    let mut payload = Vec::new();
    for (tag, text) in [(0x0a_u8, &video_id), (0x12, &upload_id)] {
        payload.push(tag);
        payload.push(u8::try_from(text.len()).unwrap());
        payload.extend_from_slice(text.as_bytes());
    }
    let copy = flick_platform::bus::envelope("upload.completed", &video_id, "test", payload);
    bus(&stack).publish(&copy).await.unwrap();
    let v = wait_for_state(&http, &stack, &owner, &video_id, &["READY", "FAILED"]).await;
    assert_eq!(v["state"], "READY", "{v}");
    let took = started.elapsed();
    // A second run would have started about when the copy was published and taken about as
    // long: wait that long again for its completion, which must not come.
    let completed = format!(
        "SELECT COUNT(*) FROM transcoder.outbox WHERE event_type = 'transcode.completed' AND subject = '{video_id}'"
    );
    let deadline = Instant::now() + took + Duration::from_secs(5);
    while Instant::now() < deadline {
        assert_eq!(stack.count(&completed).await, 1, "the job ran twice");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let runs = stack.count(&format!("SELECT runs FROM transcoder.job_leases WHERE video_id = '{video_id}'")).await;
    assert_eq!(runs, 1, "one start of the job");
}
