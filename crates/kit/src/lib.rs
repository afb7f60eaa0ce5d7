//! The runtime every Flick service shares: configuration, telemetry, the server bootstrap,
//! the error model, caller identity and GraphQL plumbing. No domain code lives here.

pub mod access_token;
pub mod config;
pub mod error;
pub mod graphql;
pub mod identity;
pub mod page;
pub mod rest;
pub mod server;
pub mod shutdown;
pub mod telemetry;

pub use config::Config;
pub use error::{AppError, ErrorCode};
pub use identity::Caller;
pub use server::{BoundService, ReadyCheck, ServerOptions, Service};
