//! The transcoder service: resumable (tus) uploads into the object store, transcode jobs
//! from a durable queue (one ffmpeg decode, an H.264 ladder with the audio encoded once,
//! CMAF segments shared by HLS and DASH, thumbnails and a storyboard), progress on the
//! transient exchange, and playback. A federated subgraph (`Video.playback`,
//! `Video.processing`, `Subscription.videoProgress`) and gRPC `TranscoderService`.

mod domain;
mod events;
mod graphql;
mod grpc;
pub mod pipeline;
mod playback;
mod store;
mod tus;
mod uploads;
mod videos;
mod worker;

use flick_kit::Service;
use flick_kit::server::BackgroundTask;
use flick_platform::bus::{Delivery, HandlerError, QueueSpec, handler};
use flick_platform::db::MigrationSet;
use flick_platform::{ServiceInfra, Shared};
use std::time::Duration;

pub use domain::Transcoder;
pub use graphql::{TranscoderSchema, schema};
pub use worker::{JOB_EVENTS, JOBS_QUEUE};

pub const NAME: &str = "transcoder";

pub const MIGRATIONS: &[MigrationSet] = &[flick_platform::outbox::MIGRATIONS, store::MIGRATIONS];

/// Media's events the transcoder follows (owners and visibility of videos, deletions).
pub const EVENTS_QUEUE: &str = "transcoder.events";
const EVENT_PATTERNS: &[&str] = &["video.created", "video.updated", "video.deleted", "user.deleted"];

/// The subgraph SDL, without a network (composition and `flick sdl`).
pub fn sdl() -> String {
    flick_kit::graphql::federation_sdl(&schema(&Default::default(), None))
}

fn transcoder(infra: &ServiceInfra) -> Transcoder {
    Transcoder::new(
        infra.db.clone(),
        infra.shared.storage.clone(),
        infra.shared.bus.clone(),
        infra.relay.clone(),
        infra.shared.cache.clone(),
        infra.shared.config.transcoder.clone(),
    )
}

/// The service: HTTP (tus, playback, GraphQL), gRPC, media's events, the upload sweeper,
/// and `transcoder.workers` transcode workers.
/// The jobs queue: every process that may run workers consumes it with these settings.
fn jobs_queue(t: &Transcoder) -> QueueSpec {
    // One job at a time per worker: an idle worker must not wait behind a busy one.
    QueueSpec::events(JOBS_QUEUE, JOB_EVENTS).with_prefetch(1).with_max_attempts(t.config().job_attempts)
}

pub async fn build(shared: &Shared) -> anyhow::Result<Service> {
    let infra = shared.service(NAME, MIGRATIONS).await?;
    let mut t = transcoder(&infra);
    // Playback checks a stale local copy of a video's visibility with media.
    match &shared.config.endpoints.media {
        Some(url) => t = t.with_media(url)?,
        None => tracing::info!("no endpoints.media: playback trusts media's events alone for visibility"),
    }
    // Jobs published before any worker runs must wait in the queue, not be dropped by the
    // exchange. A broker that is down now gets the queue from the first worker instead.
    if let Err(e) = t.bus().declare(jobs_queue(&t)).await {
        tracing::warn!(error = %e, "could not declare the transcode jobs queue yet; workers will");
    }
    // videoProgress is for the owner: over a WebSocket through the router the caller is
    // known only by the token it sent in connection_init, checked with accounts.
    let verifier = shared.token_verifier()?;
    let graphql = schema(&shared.config.graphql, Some(t.clone()));
    let mut service = Service::new(NAME)
        .http(flick_kit::graphql::routes_with(graphql, &shared.config.graphql, verifier))
        .streaming_http(tus::routes(t.clone()).merge(playback::routes(t.clone())))
        .grpc(
            "flick.transcoder.v1.TranscoderService",
            flick_proto::transcoder::v1::transcoder_service_server::TranscoderServiceServer::new(grpc::TranscoderGrpc(
                t.clone(),
            )),
        )
        .task(infra.relay_task())
        .task(events_task(t.clone()))
        .task(sweeper_task(t.clone()));
    for task in worker_tasks(&t, shared.config.transcoder.workers) {
        service = service.task(task);
    }
    for check in infra.checks() {
        service = service.check(check);
    }
    Ok(service)
}

/// `flick worker`: only transcode workers (and the outbox relay for their events).
pub async fn build_worker(shared: &Shared, workers: usize) -> anyhow::Result<Service> {
    let infra = shared.service(NAME, MIGRATIONS).await?;
    let t = transcoder(&infra);
    let mut service = Service::new(NAME).task(infra.relay_task());
    for task in worker_tasks(&t, workers.max(1)) {
        service = service.task(task);
    }
    for check in infra.checks() {
        service = service.check(check);
    }
    Ok(service)
}

fn worker_tasks(t: &Transcoder, workers: usize) -> Vec<BackgroundTask> {
    (0..workers)
        .map(|_| {
            let t = t.clone();
            let task: BackgroundTask = Box::new(move |shutdown| {
                Box::pin(async move {
                    let stop = shutdown.clone();
                    let jobs = t.clone();
                    let h = handler(move |d: Delivery| {
                        let t = jobs.clone();
                        let stop = stop.clone();
                        async move { t.handle_job(d, stop).await }
                    });
                    match t.bus().consume(jobs_queue(&t), h, shutdown).await {
                        Ok(task) => {
                            let _ = task.await;
                        }
                        Err(e) => tracing::error!(error = %e, "transcode worker cannot consume jobs"),
                    }
                })
            });
            task
        })
        .collect()
}

fn events_task(t: Transcoder) -> BackgroundTask {
    Box::new(move |shutdown| {
        Box::pin(async move {
            let consumer = t.clone();
            let h = handler(move |d: Delivery| {
                let t = consumer.clone();
                async move {
                    t.apply_event(&d.envelope).await.map_err(|e| match e.code() {
                        flick_kit::ErrorCode::BadUserInput => HandlerError::Reject(e.message().to_string()),
                        _ => HandlerError::Retry(e.message().to_string()),
                    })
                }
            });
            match t.bus().consume(QueueSpec::events(EVENTS_QUEUE, EVENT_PATTERNS), h, shutdown).await {
                Ok(task) => {
                    let _ = task.await;
                }
                Err(e) => tracing::error!(error = %e, "transcoder cannot consume events"),
            }
        })
    })
}

/// Expires abandoned uploads (and aborts their multipart uploads) every minute.
fn sweeper_task(t: Transcoder) -> BackgroundTask {
    Box::new(move |shutdown| {
        Box::pin(async move {
            loop {
                if let Err(e) = t.expire_uploads().await {
                    tracing::warn!(error = e.message(), "expiring uploads failed; will try again");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            }
        })
    })
}
