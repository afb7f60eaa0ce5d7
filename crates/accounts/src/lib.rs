//! The accounts service: registration, login, refresh-token rotation, logout with
//! revocation, profiles, the edge's ForwardAuth check and user lookups, over REST (`/auth`,
//! `/user`), gRPC (`AccountsService`) and GraphQL (`User`, `me`, `user`, `updateProfile`).

pub mod config;
mod domain;
mod graphql;
mod grpc;
mod password;
mod rest;
mod seed;
mod store;
mod throttle;
mod tokens;
mod validate;

use crate::config::AccountsConfigExt as _;
use flick_kit::Service;
use flick_platform::Shared;
use flick_platform::db::MigrationSet;
use std::sync::Arc;
use std::time::Duration;

pub use domain::{Accounts, Limits};
pub use graphql::{AccountsSchema, schema};
pub use seed::{SEED_PASSWORD, seed_users};
pub use tokens::Keyring;

pub const NAME: &str = "accounts";

pub const MIGRATIONS: &[MigrationSet] = &[flick_platform::outbox::MIGRATIONS, store::MIGRATIONS];

/// The subgraph SDL, without a network (composition and `flick sdl`).
pub fn sdl() -> String {
    flick_kit::graphql::federation_sdl(&schema(&Default::default(), flick_kit::graphql::CostCheck::PerEntity, None))
}

/// The service's signing keys: `accounts.jwt_keys_dir`, or `data_dir/keys` (created).
pub fn keyring(shared: &Shared) -> anyhow::Result<Keyring> {
    let dir = shared.config.accounts().jwt_keys_dir.clone().unwrap_or_else(|| shared.config.data_dir.join("keys"));
    Keyring::load_or_create(&dir)
}

pub async fn build(shared: &Shared) -> anyhow::Result<Service> {
    let infra = shared.service(NAME, MIGRATIONS).await?;
    let limits = Limits::from(&shared.config.accounts());
    let accounts =
        Accounts::new(infra.db.clone(), shared.cache.clone(), infra.relay.clone(), Arc::new(keyring(shared)?), limits);
    let schema =
        flick_kit::graphql::Subgraph::new(|check| schema(&shared.config.graphql, check, Some(accounts.clone())));
    let pruner = accounts.clone();
    let mut service = Service::new(NAME)
        .http(flick_kit::graphql::routes_with(schema, &shared.config.graphql, shared.token_verifier()?))
        .http(rest::routes(accounts.clone()))
        .grpc(
            "flick.accounts.v1.AccountsService",
            flick_proto::accounts::v1::accounts_service_server::AccountsServiceServer::new(grpc::AccountsGrpc(
                accounts,
            )),
        )
        .task(infra.relay_task())
        .task(Box::new(move |shutdown| {
            Box::pin(async move {
                loop {
                    if let Err(e) = pruner.prune().await {
                        tracing::warn!(error = ?e, "pruning expired sessions failed");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                    }
                }
            })
        }));
    for check in infra.checks() {
        service = service.check(check);
    }
    Ok(service)
}
