//! The transcoder service: resumable (tus) uploads into the object store, transcode jobs
//! from a durable queue (one ffmpeg decode, an H.264 ladder with the audio encoded once,
//! CMAF segments shared by HLS and DASH, thumbnails and a storyboard), progress on the
//! transient exchange, and playback. A federated subgraph (`Video.playback`,
//! `Video.processing`, `Subscription.videoProgress`) and gRPC `TranscoderService`.

mod concat;
pub mod config;
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

use crate::config::TranscoderConfigExt as _;
use anyhow::Context as _;
use flick_kit::Service;
use flick_kit::server::BackgroundTask;
use flick_platform::bus::{Delivery, HandlerError, QueueSpec, handler};
use flick_platform::db::MigrationSet;
use flick_platform::{EventError, ServiceInfra, Shared};
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
    flick_kit::graphql::federation_sdl(&schema(&Default::default(), flick_kit::graphql::CostCheck::PerEntity, None))
}

fn transcoder(infra: &ServiceInfra) -> Transcoder {
    Transcoder::new(
        infra.db.clone(),
        infra.shared.storage.clone(),
        infra.shared.bus.clone(),
        infra.relay.clone(),
        infra.shared.config.transcoder(),
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
    // exchange (this process may run no workers).
    t.bus().declare(jobs_queue(&t)).await.context("declaring the transcode jobs queue")?;
    // videoProgress is for the owner: over a WebSocket through the router the caller is
    // known only by the token it sent in connection_init, checked with accounts.
    let verifier = shared.token_verifier()?;
    let graphql = flick_kit::graphql::Subgraph::new(|check| schema(&shared.config.graphql, check, Some(t.clone())));
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
        .task(events_consumer(&infra, t.clone()).await?)
        .task(sweeper_task(t.clone()));
    for task in worker_tasks(&infra, &t, shared.config.transcoder().workers).await? {
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
    for task in worker_tasks(&infra, &t, workers.max(1)).await? {
        service = service.task(task);
    }
    for check in infra.checks() {
        service = service.check(check);
    }
    Ok(service)
}

/// `workers` consumers of the jobs queue, consuming from now on. Jobs are work, not events:
/// no inbox; `handle_job` owns a job's leases, retries and outcome, and gives the job back
/// when the service is stopping.
async fn worker_tasks(infra: &ServiceInfra, t: &Transcoder, workers: usize) -> anyhow::Result<Vec<BackgroundTask>> {
    let mut tasks = Vec::with_capacity(workers);
    if workers > 0 {
        // A worker SIGKILLed mid-job left its scratch directory; its restart clears it before
        // it answers /readyz, whether or not a job comes its way.
        t.sweep_dead_jobs_scratch();
    }
    for _ in 0..workers {
        let (jobs, stopping) = (t.clone(), infra.stopping());
        let h = handler(move |d: Delivery| {
            let (t, stopping) = (jobs.clone(), stopping.clone());
            async move { t.handle_job(d, stopping).await }
        });
        tasks.push(infra.consume(jobs_queue(t), h).await?);
    }
    Ok(tasks)
}

/// Media's events, consuming from now on.
///
/// Not through the inbox, on purpose: `apply_event` is idempotent by itself. A video's copy
/// carries media's `version` and is replaced only by a newer one (a redelivered or late event
/// changes nothing), and forgetting a video (a tombstone, then its files and rows) or a user's
/// videos deletes what is there, so doing it again deletes nothing more. It also deletes objects from the object store, outside any
/// database transaction: with an inbox, a crash between the commit and those deletions would
/// leave the redelivery marked applied and the files orphaned, while without one the
/// redelivery deletes them. A bad event (undecodable payload) is dead-lettered at once
/// (`EventError::Bad`), any other failure retried, as for the inbox consumers.
async fn events_consumer(infra: &ServiceInfra, t: Transcoder) -> anyhow::Result<BackgroundTask> {
    let h = handler(move |d: Delivery| {
        let t = t.clone();
        async move { t.apply_event(&d.envelope).await.map_err(|e| HandlerError::from(EventError::from(e))) }
    });
    infra.consume(QueueSpec::events(EVENTS_QUEUE, EVENT_PATTERNS), h).await
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
