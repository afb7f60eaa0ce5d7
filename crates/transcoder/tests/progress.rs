//! gRPC `GetProcessing` reports a running job's real progress: the percent its worker stores
//! on the video's row, read back by any replica, between 0 and 100 while the job runs and
//! never going back.

use flick_proto::transcoder::v1 as pb;
use flick_testkit::app::{Backend, TestApp, TestInfra};
use flick_transcoder::config::TranscoderConfigExt as _;
use std::time::Duration;
use uuid::Uuid;

flick_testkit::on_both_backends!(get_processing_reports_the_running_jobs_percent);

/// A clip long enough to take a few seconds to encode: testsrc2 with a tone.
fn clip(dir: &std::path::Path) -> Vec<u8> {
    let path = dir.join("long.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", "30"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"])
        .arg(&path)
        .status()
        .expect("ffmpeg is installed (scripts/tools.sh ffmpeg)");
    assert!(status.success(), "ffmpeg made the test clip");
    std::fs::read(path).unwrap()
}

async fn get_processing_reports_the_running_jobs_percent(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let source = clip(dir.path());
    let mut infra = TestInfra::new(backend).await;
    infra.config.transcoder_mut().public_base_url = "http://edge.test".into();
    infra.config.transcoder_mut().preset = "ultrafast".into();
    let app = TestApp::start(infra, |s| async move { flick_transcoder::build(&s).await }).await;
    let channel = tonic::transport::Endpoint::from_shared(app.url("")).unwrap().connect().await.unwrap();
    let mut grpc = pb::transcoder_service_client::TranscoderServiceClient::new(channel);
    let owner = Uuid::now_v7().to_string();
    let video_id = Uuid::now_v7().to_string();
    let mut create = tonic::Request::new(pb::CreateUploadRequest {
        video_id: video_id.clone(),
        size_bytes: 0,
        visibility: "PUBLIC".into(),
    });
    create.metadata_mut().insert("x-user-id", owner.parse().unwrap());
    let upload = grpc.create_upload(create).await.unwrap().into_inner();

    let processing = |grpc: &mut pb::transcoder_service_client::TranscoderServiceClient<_>| {
        let mut request = tonic::Request::new(pb::GetProcessingRequest { video_id: video_id.clone() });
        request.metadata_mut().insert("x-user-id", owner.parse().unwrap());
        let mut grpc = grpc.clone();
        async move { grpc.get_processing(request).await.unwrap().into_inner() }
    };
    let before = processing(&mut grpc).await;
    assert_eq!((before.stage.as_str(), before.percent), ("AWAITING_UPLOAD", 0.0));

    let path = upload.url.trim_start_matches("http://edge.test");
    let res = reqwest::Client::new()
        .patch(app.url(path))
        .header("tus-resumable", "1.0.0")
        .header("content-type", "application/offset+octet-stream")
        .header("x-user-id", &owner)
        .header("upload-offset", "0")
        .header("upload-length", source.len().to_string())
        .body(source)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);

    // Every answer until READY: the percents seen while PROCESSING.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let mut seen: Vec<f64> = Vec::new();
    let last = loop {
        let p = processing(&mut grpc).await;
        match p.stage.as_str() {
            "PROCESSING" => seen.push(p.percent),
            "READY" | "FAILED" => break p,
            _ => assert_eq!(p.percent, 0.0, "{p:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "the job did not finish in time; seen {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((last.stage.as_str(), last.percent), ("READY", 100.0), "{last:?}");
    assert!(
        seen.iter().any(|p| *p > 0.0 && *p < 100.0),
        "a percent strictly between 0 and 100 while the job ran: {seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "the stored percent never goes back: {seen:?}");
}
