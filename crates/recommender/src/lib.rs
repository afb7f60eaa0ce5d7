//! The recommender service: embeds public videos' title, tags and description with
//! all-MiniLM-L6-v2 (candle, on the CPU), indexes them in pgvector (HNSW, cosine) or, on the
//! embedded default, SQLite with an exact search, and answers `Video.related` and
//! `Query.recommendedForMe` (GraphQL subgraph) and `RecommenderService` (gRPC). It follows
//! media through events: publications, edits, deletions and likes.

mod backfill;
pub mod config;
mod domain;
mod events;
mod graphql;
mod grpc;
pub mod model;
pub mod store;

use crate::config::{RecommenderConfig, RecommenderConfigExt as _};
use flick_kit::Service;
use flick_platform::Shared;
use flick_platform::bus::QueueSpec;
use flick_platform::db::MigrationSet;
use flick_platform::db::sea_orm::DatabaseConnection;

pub use backfill::{Progress, backfill};
pub use domain::{MAX_FIRST, Recommender, video_text, with_spares};
pub use graphql::{RecommenderSchema, schema};
pub use model::{Embedder, Model, ModelError};

pub const NAME: &str = "recommender";

pub const MIGRATIONS: &[MigrationSet] = &[flick_platform::outbox::MIGRATIONS, store::MIGRATIONS];

/// Events the recommender follows, on its own durable queue.
pub const EVENTS_QUEUE: &str = "recommender.events";
pub const EVENT_PATTERNS: &[&str] = &[
    "video.published",
    "video.updated",
    "video.deleted",
    "video.liked",
    "video.unliked",
    "video.viewed",
    "user.deleted",
];

/// The subgraph SDL, without a network (composition and `flick sdl`).
pub fn sdl() -> String {
    flick_kit::graphql::federation_sdl(&schema(&Default::default(), flick_kit::graphql::CostCheck::PerEntity, None))
}

/// The model as configured (not loaded until first used).
pub fn model(cfg: &RecommenderConfig) -> Model {
    Model::new(cfg.model_dir.clone().unwrap_or_else(model::default_dir), cfg.batch_size)
}

/// The domain on an open database (the service, `flick recommender backfill`, benches).
pub fn recommender(db: DatabaseConnection, cfg: &RecommenderConfig) -> Recommender {
    Recommender::new(db, model(cfg))
}

pub async fn build(shared: &Shared) -> anyhow::Result<Service> {
    let infra = shared.service(NAME, MIGRATIONS).await?;
    let mut recommender = recommender(infra.db.clone(), &shared.config.recommender());
    // Candidates are checked with media before a list is answered (videos hidden since).
    match &shared.config.endpoints.media {
        Some(url) => recommender = recommender.with_media(url)?,
        None => tracing::info!("no endpoints.media: related and recommendedForMe trust media's events alone"),
    }
    if let Err(e) = model::check_files(recommender.model().dir()) {
        // Still serves what is indexed; embeddings wait in their queue until the files exist.
        tracing::error!(error = %e, "recommender starts without its embedding model");
    }
    // Consuming from now on: events published once the service is built are kept for it.
    let events = infra.consume_events(QueueSpec::events(EVENTS_QUEUE, EVENT_PATTERNS), recommender.clone()).await?;
    let embedder = recommender.clone();
    let checked = recommender.model().clone();
    let mut service = Service::new(NAME)
        .http(flick_kit::graphql::routes_with(
            flick_kit::graphql::Subgraph::new(|check| schema(&shared.config.graphql, check, Some(recommender.clone()))),
            &shared.config.graphql,
            shared.token_verifier()?,
        ))
        .grpc(
            "flick.recommender.v1.RecommenderService",
            flick_proto::recommender::v1::recommender_service_server::RecommenderServiceServer::new(
                grpc::RecommenderGrpc(recommender),
            ),
        )
        .task(infra.relay_task())
        .task(Box::new(move |shutdown| Box::pin(embedder.run_embedder(shutdown))))
        .task(events)
        .check(flick_kit::ReadyCheck::new("model", move || {
            let model = checked.clone();
            async move { model.check().await }
        }));
    for check in infra.checks() {
        service = service.check(check);
    }
    Ok(service)
}
