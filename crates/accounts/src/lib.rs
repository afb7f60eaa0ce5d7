//! The accounts service: users, sessions and the edge's ForwardAuth check.
//!
//! Foundation state: the `User` entity and `me` of the subgraph, and the ForwardAuth route
//! in its placeholder form (no token is valid until registration and login exist: only the
//! anonymous optional mode passes).

mod forward_auth;
mod graphql;

use flick_kit::Service;
use flick_platform::Shared;
use flick_platform::db::MigrationSet;

pub use graphql::{AccountsSchema, schema};

pub const NAME: &str = "accounts";

pub const MIGRATIONS: &[MigrationSet] = &[flick_platform::outbox::MIGRATIONS];

/// The subgraph SDL, without a network (composition and `flick sdl`).
pub fn sdl() -> String {
    flick_kit::graphql::federation_sdl(&schema(&Default::default()))
}

pub async fn build(shared: &Shared) -> anyhow::Result<Service> {
    let infra = shared.service(NAME, MIGRATIONS).await?;
    let schema = schema(&shared.config.graphql);
    let mut service = Service::new(NAME)
        .http(flick_kit::graphql::routes(schema, &shared.config.graphql))
        .http(forward_auth::routes())
        .task(infra.relay_task());
    for check in infra.checks() {
        service = service.check(check);
    }
    Ok(service)
}
