//! The activity service: what viewers do with videos, on the document store (MongoDB in
//! production, SQLite embedded). Players report playback (`recordPlayback`, `POST
//! /activity/heartbeat`); from those heartbeats it counts views (and sends `video.viewed`
//! through the outbox), keeps daily watch time and retention per video, and each signed-in
//! viewer's history and resume positions (`Video.viewerProgress`, `watchHistory`,
//! `continueWatching`). It follows media's videos, the transcoder's durations and accounts'
//! deletions through events.

mod analytics;
pub mod config;
mod domain;
mod events;
mod graphql;
mod grpc;
mod lookup;
mod playlists;
mod rest;
mod store;
mod totals;

use crate::config::ActivityConfigExt as _;
use flick_kit::Service;
use flick_platform::Shared;
use flick_platform::bus::{Delivery, QueueSpec, handler};
use flick_platform::db::MigrationSet;

pub use domain::{Activity, Heartbeat, HistoryEntry, Recorded, viewer_key};
pub use graphql::{ActivitySchema, schema};
pub use rest::MAX_BATCH;
pub use store::DOCUMENTS;

pub const NAME: &str = "activity";

/// The relational side holds only the outbox (`video.viewed`); the activity is documents.
pub const MIGRATIONS: &[MigrationSet] = &[flick_platform::outbox::MIGRATIONS];

/// Events the activity service follows, on its own durable queue.
pub const EVENTS_QUEUE: &str = "activity.events";
pub use events::EVENT_PATTERNS;

/// The subgraph SDL, without a network (composition and `flick sdl`).
pub fn sdl() -> String {
    flick_kit::graphql::federation_sdl(&schema(&Default::default(), flick_kit::graphql::CostCheck::PerEntity, None))
}

pub async fn build(shared: &Shared) -> anyhow::Result<Service> {
    let infra = shared.service(NAME, MIGRATIONS).await?;
    let (docs, docs_check) = infra.documents(DOCUMENTS).await?;
    let mut activity =
        Activity::new(docs, infra.db.clone(), infra.relay.clone(), shared.cache.clone(), shared.config.activity());
    let endpoints = &shared.config.endpoints;
    match &endpoints.media {
        Some(media) => activity = activity.with_lookup(media, endpoints.transcoder.as_deref())?,
        None => tracing::info!("no endpoints.media: videos are known to activity through their events alone"),
    }
    // Idempotent by itself (events.rs says why): no inbox.
    let totals = activity.totals_task();
    let applier = activity.clone();
    let events = infra
        .consume(
            QueueSpec::events(EVENTS_QUEUE, EVENT_PATTERNS),
            handler(move |d: Delivery| {
                let applier = applier.clone();
                async move { applier.apply_event(d).await }
            }),
        )
        .await?;
    let mut service = Service::new(NAME)
        .http(flick_kit::graphql::routes_with(
            flick_kit::graphql::Subgraph::new(|check| schema(&shared.config.graphql, check, Some(activity.clone()))),
            &shared.config.graphql,
            shared.token_verifier()?,
        ))
        .http(rest::routes(activity.clone()))
        .grpc(
            "flick.activity.v1.ActivityService",
            flick_proto::activity::v1::activity_service_server::ActivityServiceServer::new(grpc::ActivityGrpc(
                activity,
            )),
        )
        .task(infra.relay_task())
        .task(totals)
        .task(events)
        .check(docs_check);
    for check in infra.checks() {
        service = service.check(check);
    }
    Ok(service)
}
