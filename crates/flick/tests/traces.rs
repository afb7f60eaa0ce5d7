//! One trace across every hop: hive-router, media, the transcoder and a `flick worker`, each its
//! own process on real infrastructure (PostgreSQL, RabbitMQ, S3), export their spans over OTLP
//! to a receiver in this test. A client's createVideo (through the router) → upload →
//! transcode, sent with one W3C `traceparent`, must come back as one trace: the router's
//! request, media's request under it, the transcoder's gRPC call made by media, the upload, the
//! worker's job (through the outbox and the broker) and media's handling of the transcode's
//! outcome event; the worker's log lines name the trace.
//!
//! Real backends only: the in-process bus cannot reach another process. The router is the one
//! `scripts/tools.sh` installs (`make test` runs it first).

use flick_testkit::{TestDatabase, amqp_url, require, s3, unique};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{flick, free_port};

/// One exported span, as the collector saw it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    kind: i32,
    attributes: std::collections::HashMap<String, String>,
}

const SERVER: i32 = opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32;
const CONSUMER: i32 = opentelemetry_proto::tonic::trace::v1::span::SpanKind::Consumer as i32;

/// The OTLP/gRPC trace service of a collector, keeping what it receives.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Span>>>);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.0.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                kept.push(Span {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: span.kind,
                    attributes: span
                        .attributes
                        .iter()
                        .filter_map(|a| match a.value.as_ref()?.value.as_ref()? {
                            Value::StringValue(v) => Some((a.key.clone(), v.clone())),
                            _ => None,
                        })
                        .collect(),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Receiver {
    async fn serve(&self) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        port
    }

    fn trace(&self, trace_id: &str) -> Vec<Span> {
        self.0.lock().unwrap().iter().filter(|s| s.trace_id == trace_id).cloned().collect()
    }
}

/// A flick process; killed with its process group on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.wait();
    }
}

fn spawn(env: &[(String, String)], args: &[&str], log: &std::path::Path) -> Process {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = flick();
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("OTEL_")) {
        cmd.env_remove(key);
    }
    let out = std::fs::File::create(log).unwrap();
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(out.try_clone().unwrap())
        .stderr(if std::env::var_os("TEST_LOG").is_some() { Stdio::inherit() } else { out.into() });
    Process(cmd.process_group(0).spawn().unwrap())
}

/// hive-router in front of media and the transcoder, as in `make dev` but exporting its spans.
fn router(dir: &std::path::Path, port: u16, media: u16, transcoder: u16, otlp: u16, log: &std::path::Path) -> Process {
    use std::os::unix::process::CommandExt as _;
    let tools = std::env::var("FLICK_TOOLS_DIR").unwrap_or_else(|_| "/var/cache/flick/tools".into());
    let bin = std::path::Path::new(&tools).join("bin/hive_router");
    assert!(bin.exists(), "no hive-router at {} (scripts/tools.sh installs it; make test runs it)", bin.display());
    let supergraph = concat!(env!("CARGO_MANIFEST_DIR"), "/../../supergraph/supergraph.graphql");
    let config = format!(
        r#"supergraph: {{source: file, path: "{supergraph}"}}
http: {{host: 127.0.0.1, port: {port}}}
log: {{level: warn}}
override_subgraph_urls:
  subgraphs:
    media: {{url: "http://127.0.0.1:{media}/graphql"}}
    transcoder: {{url: "http://127.0.0.1:{transcoder}/graphql"}}
headers:
  all:
    request:
      - propagate: {{named: [traceparent, tracestate]}}
      - insert:
          name: x-user-id
          expression: 'if .request.url.path == "/graphql" {{ .request.headers."x-user-id" }} else {{ null }}'
telemetry:
  resource: {{attributes: {{service.name: flick-router}}}}
  tracing:
    collect: {{sampling: 1.0, parent_based_sampler: true}}
    exporters:
      - kind: otlp
        protocol: grpc
        endpoint: "http://127.0.0.1:{otlp}"
        batch_processor: {{scheduled_delay: 100ms}}
"#
    );
    let path = dir.join("router.yaml");
    std::fs::write(&path, config).unwrap();
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new(bin)
        .env("ROUTER_CONFIG_FILE_PATH", &path)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0)
        .spawn()
        .unwrap();
    Process(child)
}

/// Waits (60 s at most) until `url` answers 200; `what` names it when it never does.
async fn answers(http: &reqwest::Client, url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http.get(url).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < deadline, "{what} did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn healthy(http: &reqwest::Client, port: u16) {
    answers(http, &format!("http://127.0.0.1:{port}/healthz"), &format!("the service on {port}")).await;
}

#[tokio::test]
async fn one_trace_covers_create_upload_transcode_across_services_and_the_broker() {
    require("RabbitMQ", &amqp_url(), 5672).await;
    let storage = s3();
    require("the S3 server", &storage.endpoint, 9000).await;
    let db = TestDatabase::create().await;
    let receiver = Receiver::default();
    let otlp = receiver.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let run = unique("tr");
    let (media_port, transcoder_port) = (free_port(), free_port());
    let env: Vec<(String, String)> = [
        ("FLICK_DATA_DIR", dir.path().to_string_lossy().into_owned()),
        ("FLICK_DATABASE__URL", db.url.clone()),
        ("FLICK_DATABASE__MIGRATE_ON_START", "true".into()),
        ("FLICK_BUS__URL", amqp_url()),
        ("FLICK_BUS__EXCHANGE", format!("flick.{run}")),
        ("FLICK_BUS__QUEUE_PREFIX", format!("{run}.")),
        ("FLICK_STORAGE__URL", format!("s3://{}", storage.bucket)),
        ("FLICK_STORAGE__S3__ENDPOINT", storage.endpoint.clone()),
        ("FLICK_STORAGE__S3__ACCESS_KEY_ID", storage.access_key.clone()),
        ("FLICK_STORAGE__S3__SECRET_ACCESS_KEY", storage.secret_key.clone()),
        ("FLICK_SERVER__PORTS__MEDIA", media_port.to_string()),
        ("FLICK_SERVER__PORTS__TRANSCODER", transcoder_port.to_string()),
        ("FLICK_ENDPOINTS__MEDIA", format!("http://127.0.0.1:{media_port}")),
        ("FLICK_ENDPOINTS__TRANSCODER", format!("http://127.0.0.1:{transcoder_port}")),
        ("FLICK_TRANSCODER__PRESET", "ultrafast".into()),
        ("FLICK_TRANSCODER__WORK_DIR", dir.path().join("scratch").to_string_lossy().into_owned()),
        ("FLICK_TELEMETRY__OTLP_ENDPOINT", format!("http://127.0.0.1:{otlp}")),
        // Logs stay at info (the worker's job lines are checked); spans leave every 100 ms.
        ("FLICK_TELEMETRY__LOG_LEVEL", "info".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let _media = spawn(&env, &["serve", "--services", "media"], &logs.join("media.log"));
    let mut transcoder_env = env.clone();
    transcoder_env.push(("FLICK_TRANSCODER__WORKERS".into(), "0".into()));
    let _transcoder = spawn(&transcoder_env, &["serve", "--services", "transcoder"], &logs.join("transcoder.log"));
    let worker_log = logs.join("worker.log");
    let _worker = spawn(&env, &["worker"], &worker_log);
    let router_port = free_port();
    let _router = router(dir.path(), router_port, media_port, transcoder_port, otlp, &logs.join("router.log"));
    let http = reqwest::Client::new();
    healthy(&http, media_port).await;
    healthy(&http, transcoder_port).await;
    let router_log = logs.join("router.log");
    let readiness = format!("http://127.0.0.1:{router_port}/readiness");
    answers(&http, &readiness, &format!("the router (log: {})", router_log.display())).await;

    // The client's own span: everything below must join its trace.
    let trace_id = hex(uuid::Uuid::new_v4().as_bytes());
    let traceparent = format!("00-{trace_id}-{}-01", &hex(uuid::Uuid::new_v4().as_bytes())[..16]);
    let owner = uuid::Uuid::now_v7().to_string();
    let clip = dir.path().join("clip.mp4");
    let made = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(made.success());
    let data = std::fs::read(&clip).unwrap();
    let created: serde_json::Value = http
        .post(format!("http://127.0.0.1:{router_port}/graphql"))
        .header("x-user-id", &owner)
        .header("traceparent", &traceparent)
        .json(&serde_json::json!({
            "query": "mutation($input: CreateVideoInput!) { createVideo(input: $input) { video { id } upload { url } } }",
            "variables": { "input": { "title": "Traced", "sizeBytes": data.len() as f64 } }
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let video_id = created["data"]["createVideo"]["video"]["id"].as_str().unwrap_or_else(|| panic!("{created}"));
    let upload = created["data"]["createVideo"]["upload"]["url"].as_str().unwrap();
    let path = &upload[upload.find("/video/").expect("an upload url under /video")..];
    let patched = http
        .patch(format!("http://127.0.0.1:{transcoder_port}{path}"))
        .header("tus-resumable", "1.0.0")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", "0")
        .header("x-user-id", &owner)
        .header("traceparent", &traceparent)
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 204);

    // Wait for the whole trace: media's handling of the transcode's outcome is its last hop.
    let deadline = Instant::now() + Duration::from_secs(180);
    let spans = loop {
        let spans = receiver.trace(&trace_id);
        let media_consumed_outcome = spans.iter().any(|s| {
            s.service == "flick-media"
                && s.kind == CONSUMER
                && s.attributes.get("event_type").is_some_and(|t| t == "transcode.completed")
        });
        let routed = spans.iter().any(|s| s.service == "flick-router");
        if routed && media_consumed_outcome && spans.iter().any(|s| s.service == "flick-worker" && s.kind == CONSUMER) {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "the trace never reached media's handling of the outcome of video {video_id}; spans of the trace: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ids_of = |service: &str| -> Vec<&str> {
        spans.iter().filter(|s| s.service == service).map(|s| s.span_id.as_str()).collect()
    };
    let client_span = &traceparent[36..52];
    assert!(
        spans.iter().any(|s| s.service == "flick-router" && s.parent_span_id == client_span),
        "the router's request continues the client's span: {spans:#?}"
    );
    let create = spans
        .iter()
        .find(|s| s.service == "flick-media" && s.kind == SERVER && s.name == "POST /graphql")
        .unwrap_or_else(|| panic!("media's request span: {spans:#?}"));
    assert!(ids_of("flick-router").contains(&create.parent_span_id.as_str()), "the router's call carries its span");
    let grpc = spans
        .iter()
        .find(|s| s.service == "flick-transcoder" && s.kind == SERVER && s.name.ends_with("/CreateUpload"))
        .unwrap_or_else(|| panic!("the transcoder's CreateUpload span: {spans:#?}"));
    assert!(ids_of("flick-media").contains(&grpc.parent_span_id.as_str()), "the gRPC call carries media's span");
    assert!(
        spans.iter().any(|s| s.service == "flick-transcoder" && s.kind == SERVER && s.name.starts_with("PATCH ")),
        "the upload's request: {spans:#?}"
    );
    // Every consumer span hangs off a span of the trace: no hop started a trace of its own.
    let all_ids: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    for consumer in spans.iter().filter(|s| s.kind == CONSUMER) {
        assert!(all_ids.contains(&consumer.parent_span_id.as_str()), "{consumer:?} has its parent in the trace");
    }

    // The worker's log lines about the job name the trace.
    let worker_lines = std::fs::read_to_string(&worker_log).unwrap();
    let started = worker_lines
        .lines()
        .find(|l| l.contains("transcode started") && l.contains(video_id))
        .unwrap_or_else(|| panic!("no 'transcode started' line in the worker's log:\n{worker_lines}"));
    assert!(started.contains(&trace_id), "the worker's log line carries the trace id: {started}");
}
