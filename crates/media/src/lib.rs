//! The media service: videos' metadata, visibility, the feed, a user's videos, likes,
//! comments, channel subscriptions and the owner dashboard, as a federated subgraph and over
//! gRPC (`MediaService`); it follows transcoder and accounts through events.

pub mod config;
mod counters;
mod domain;
mod events;
mod feed_head;
mod graphql;
mod grpc;
mod paging;
mod search;
mod seed;
mod shared;
mod store;
mod uploads;
mod users;
mod validation;
mod video;
mod viewer_sets;

use crate::config::MediaConfigExt as _;
use flick_kit::Service;
use flick_kit::server::BackgroundTask;
use flick_platform::Shared;
use flick_platform::bus::QueueSpec;
use flick_platform::db::MigrationSet;
use std::time::Duration;

pub use counters::Live;
pub use domain::Media;
pub use graphql::{MediaSchema, schema};
pub use seed::seed_videos;
pub use users::UserDirectory;

pub const NAME: &str = "media";

pub const MIGRATIONS: &[MigrationSet] = &[flick_platform::outbox::MIGRATIONS, store::MIGRATIONS];

/// Events media follows, on its own durable queue.
pub const EVENTS_QUEUE: &str = "media.events";
const EVENT_PATTERNS: &[&str] = &[
    "upload.completed",
    "transcode.requested",
    "transcode.completed",
    "transcode.failed",
    "user.deleted",
    "user.updated",
    "video.viewed",
];

/// The subgraph SDL, without a network (composition and `flick sdl`).
pub fn sdl() -> String {
    flick_kit::graphql::federation_sdl(&schema(&Default::default(), flick_kit::graphql::CostCheck::PerEntity, None))
}

pub async fn build(shared: &Shared) -> anyhow::Result<Service> {
    Ok(build_with_handle(shared).await?.0)
}

/// The service and its `Media`, for callers that drive it directly (tests run the
/// reconciler on demand with [`Media::reconcile`]).
pub async fn build_with_handle(shared: &Shared) -> anyhow::Result<(Service, Media)> {
    let infra = shared.service(NAME, MIGRATIONS).await?;
    let mut media = Media::new(infra.db.clone(), infra.relay.clone(), shared.cache.clone(), &shared.config.media());
    if let Some(url) = &shared.config.endpoints.transcoder {
        media = media.with_uploads(uploads::Uploads::connect_lazy(url)?);
    }
    match &shared.config.endpoints.accounts {
        Some(url) => media = media.with_users(UserDirectory::new(shared.cache.clone()).with_accounts(url)?),
        None => tracing::info!("no endpoints.accounts: gRPC answers carry no owner details"),
    }
    // Consuming from now on: events published once the service is built are kept for it.
    let events = infra.consume_events(QueueSpec::events(EVENTS_QUEUE, EVENT_PATTERNS), media.clone()).await?;
    let mut service = Service::new(NAME)
        .http(flick_kit::graphql::routes_with(
            flick_kit::graphql::Subgraph::new(|check| schema(&shared.config.graphql, check, Some(media.clone()))),
            &shared.config.graphql,
            shared.token_verifier()?,
        ))
        .grpc(
            "flick.media.v1.MediaService",
            flick_proto::media::v1::media_service_server::MediaServiceServer::new(grpc::MediaGrpc(media.clone())),
        )
        .task(infra.relay_task())
        .task(reconciler_task(
            media.clone(),
            Duration::from_secs(shared.config.media().reconcile_interval_seconds.max(1)),
        ))
        .task(events);
    for check in infra.checks() {
        service = service.check(check);
    }
    Ok((service, media))
}

/// Reconciles counters every `interval` (and once more at shutdown, so pending views are
/// flushed).
fn reconciler_task(media: Media, interval: Duration) -> BackgroundTask {
    Box::new(move |shutdown| {
        Box::pin(async move {
            loop {
                let stopping = tokio::select! {
                    _ = shutdown.cancelled() => true,
                    _ = tokio::time::sleep(interval) => false,
                };
                if let Err(e) = media.reconcile().await {
                    tracing::warn!(error = e.message(), "reconciling counters failed; will try again");
                }
                if stopping {
                    return;
                }
            }
        })
    })
}
