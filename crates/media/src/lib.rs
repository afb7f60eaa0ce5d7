//! The media service: videos' metadata, visibility, the feed, a user's videos, likes,
//! comments, channel subscriptions and the owner dashboard, as a federated subgraph and over
//! gRPC (`MediaService`); it follows transcoder and accounts through events.

mod domain;
mod graphql;
mod grpc;
mod seed;
mod store;
mod uploads;

use flick_kit::Service;
use flick_platform::Shared;
use flick_platform::bus::{Delivery, HandlerError, QueueSpec, handler};
use flick_platform::db::MigrationSet;

pub use domain::Media;
pub use graphql::{MediaSchema, schema};
pub use seed::seed_videos;

pub const NAME: &str = "media";

pub const MIGRATIONS: &[MigrationSet] = &[flick_platform::outbox::MIGRATIONS, store::MIGRATIONS];

/// Events media follows, on its own durable queue.
pub const EVENTS_QUEUE: &str = "media.events";
const EVENT_PATTERNS: &[&str] =
    &["upload.completed", "transcode.requested", "transcode.completed", "transcode.failed", "user.deleted"];

/// The subgraph SDL, without a network (composition and `flick sdl`).
pub fn sdl() -> String {
    flick_kit::graphql::federation_sdl(&schema(&Default::default(), None))
}

pub async fn build(shared: &Shared) -> anyhow::Result<Service> {
    let infra = shared.service(NAME, MIGRATIONS).await?;
    let mut media = Media::new(infra.db.clone(), infra.relay.clone());
    if let Some(url) = &shared.config.endpoints.transcoder {
        media = media.with_uploads(uploads::Uploads::connect_lazy(url)?);
    }
    let consumer = media.clone();
    let bus = shared.bus.clone();
    let mut service = Service::new(NAME)
        .http(flick_kit::graphql::routes(schema(&shared.config.graphql, Some(media.clone())), &shared.config.graphql))
        .grpc(
            "flick.media.v1.MediaService",
            flick_proto::media::v1::media_service_server::MediaServiceServer::new(grpc::MediaGrpc(media)),
        )
        .task(infra.relay_task())
        .task(Box::new(move |shutdown| {
            Box::pin(async move {
                // Each event is applied once (inbox), whatever the broker redelivers.
                let h = handler(move |d: Delivery| {
                    let media = consumer.clone();
                    async move {
                        let db = media.db().clone();
                        let envelope = d.envelope;
                        let applier = media.clone();
                        let applied =
                            flick_platform::outbox::apply_once(&db, "media", &envelope.id.clone(), move |txn| {
                                Box::pin(async move { applier.apply(txn, &envelope).await })
                            })
                            .await;
                        match applied {
                            Ok(_) => {
                                media.events_recorded();
                                Ok(())
                            }
                            Err(e) => Err(HandlerError::Retry(e.to_string())),
                        }
                    }
                });
                match bus.consume(QueueSpec::events(EVENTS_QUEUE, EVENT_PATTERNS), h, shutdown.clone()).await {
                    Ok(task) => {
                        let _ = task.await;
                    }
                    Err(e) => tracing::error!(error = %e, "media cannot consume events"),
                }
            })
        }));
    for check in infra.checks() {
        service = service.check(check);
    }
    Ok(service)
}
