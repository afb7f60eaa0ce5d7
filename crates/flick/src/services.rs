//! The registry of the services this binary runs: the one list of their names, and what each
//! one provides (schema, migrations, start-up, port, endpoint). Every match on a service is
//! exhaustive, so a new service is added here once and the compiler points at the rest; an
//! unknown name is an error that lists the known ones, never a default.

use flick_kit::Service;
use flick_kit::config::{EndpointsConfig, SectionSpec, ServicePorts};
use flick_platform::Shared;
use flick_platform::db::MigrationSet;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceName {
    Accounts,
    Media,
    Transcoder,
    Recommender,
    Activity,
}

impl ServiceName {
    /// Every service, in start-up order.
    pub const ALL: [ServiceName; 5] = [
        ServiceName::Accounts,
        ServiceName::Media,
        ServiceName::Transcoder,
        ServiceName::Recommender,
        ServiceName::Activity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceName::Accounts => "accounts",
            ServiceName::Media => "media",
            ServiceName::Transcoder => "transcoder",
            ServiceName::Recommender => "recommender",
            ServiceName::Activity => "activity",
        }
    }

    /// The services named in a `--services` list; all of them when it is empty.
    pub fn parse_list(names: &[String]) -> Result<Vec<Self>, UnknownService> {
        if names.is_empty() {
            return Ok(Self::ALL.to_vec());
        }
        names.iter().map(|name| name.parse()).collect()
    }

    /// The service's GraphQL subgraph SDL.
    pub fn sdl(self) -> String {
        match self {
            ServiceName::Accounts => flick_accounts::sdl(),
            ServiceName::Media => flick_media::sdl(),
            ServiceName::Transcoder => flick_transcoder::sdl(),
            ServiceName::Recommender => flick_recommender::sdl(),
            ServiceName::Activity => flick_activity::sdl(),
        }
    }

    pub fn migrations(self) -> &'static [MigrationSet] {
        match self {
            ServiceName::Accounts => flick_accounts::MIGRATIONS,
            ServiceName::Media => flick_media::MIGRATIONS,
            ServiceName::Transcoder => flick_transcoder::MIGRATIONS,
            ServiceName::Recommender => flick_recommender::MIGRATIONS,
            ServiceName::Activity => flick_activity::MIGRATIONS,
        }
    }

    /// The document store's migrations (collections, indexes, expiry), for the services
    /// that keep documents.
    pub fn document_migrations(self) -> Option<&'static [flick_platform::documents::Migration]> {
        match self {
            ServiceName::Activity => Some(flick_activity::DOCUMENTS),
            _ => None,
        }
    }

    /// Builds the service on the shared adapters, ready to bind.
    pub async fn build(self, shared: &Shared) -> anyhow::Result<Service> {
        match self {
            ServiceName::Accounts => flick_accounts::build(shared).await,
            ServiceName::Media => flick_media::build(shared).await,
            ServiceName::Transcoder => flick_transcoder::build(shared).await,
            ServiceName::Recommender => flick_recommender::build(shared).await,
            ServiceName::Activity => flick_activity::build(shared).await,
        }
    }

    /// The service's own section of the configuration (`[media]`, `FLICK_MEDIA__*`).
    pub fn config_section(self) -> SectionSpec {
        match self {
            ServiceName::Accounts => SectionSpec::of::<flick_accounts::config::AccountsConfig>(),
            ServiceName::Media => SectionSpec::of::<flick_media::config::MediaConfig>(),
            ServiceName::Transcoder => SectionSpec::of::<flick_transcoder::config::TranscoderConfig>(),
            ServiceName::Recommender => SectionSpec::of::<flick_recommender::config::RecommenderConfig>(),
            ServiceName::Activity => SectionSpec::of::<flick_activity::config::ActivityConfig>(),
        }
    }

    /// Every service's section, in [`ServiceName::ALL`]'s order (`flick config` prints them so).
    pub fn config_sections() -> [SectionSpec; 5] {
        Self::ALL.map(Self::config_section)
    }

    /// The port the service listens on.
    pub fn port(self, ports: &ServicePorts) -> u16 {
        match self {
            ServiceName::Accounts => ports.accounts,
            ServiceName::Media => ports.media,
            ServiceName::Transcoder => ports.transcoder,
            ServiceName::Recommender => ports.recommender,
            ServiceName::Activity => ports.activity,
        }
    }

    /// Where the other services reach this one over gRPC.
    pub fn endpoint(self, endpoints: &mut EndpointsConfig) -> &mut Option<String> {
        match self {
            ServiceName::Accounts => &mut endpoints.accounts,
            ServiceName::Media => &mut endpoints.media,
            ServiceName::Transcoder => &mut endpoints.transcoder,
            ServiceName::Recommender => &mut endpoints.recommender,
            ServiceName::Activity => &mut endpoints.activity,
        }
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServiceName {
    type Err = UnknownService;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let trimmed = name.trim();
        Self::ALL.into_iter().find(|s| s.as_str() == trimmed).ok_or_else(|| UnknownService(name.to_string()))
    }
}

/// A name that is not a service: says which ones are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownService(pub String);

impl fmt::Display for UnknownService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<&str> = ServiceName::ALL.iter().map(|s| s.as_str()).collect();
        write!(f, "unknown service {:?}; known: {}", self.0, known.join(", "))
    }
}

impl std::error::Error for UnknownService {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_parses_from_its_own_name() {
        for service in ServiceName::ALL {
            assert_eq!(service.as_str().parse::<ServiceName>(), Ok(service));
            assert_eq!(format!(" {service} ").parse::<ServiceName>(), Ok(service), "spaces around a name");
        }
    }

    #[test]
    fn unknown_names_are_errors_that_list_the_known_ones() {
        for name in ["nope", "", "Media", "recommender2"] {
            let err = name.parse::<ServiceName>().unwrap_err().to_string();
            assert_eq!(
                err,
                format!("unknown service {name:?}; known: accounts, media, transcoder, recommender, activity")
            );
        }
        let err = ServiceName::parse_list(&["media".into(), "nope".into()]).unwrap_err();
        assert_eq!(err, UnknownService("nope".into()));
    }

    #[test]
    fn an_empty_list_is_every_service() {
        assert_eq!(ServiceName::parse_list(&[]).unwrap(), ServiceName::ALL);
        assert_eq!(
            ServiceName::parse_list(&["transcoder".into(), "accounts".into()]).unwrap(),
            [ServiceName::Transcoder, ServiceName::Accounts]
        );
    }

    #[test]
    fn every_service_has_its_configuration_section_under_its_own_name() {
        let names: Vec<&str> = ServiceName::config_sections().iter().map(|s| s.name()).collect();
        assert_eq!(names, ServiceName::ALL.map(ServiceName::as_str));
    }

    #[test]
    fn every_service_has_its_own_port() {
        let ports = ServicePorts::default();
        let mut seen: Vec<u16> = ServiceName::ALL.iter().map(|s| s.port(&ports)).collect();
        seen.dedup();
        assert_eq!(seen, [8081, 8082, 8083, 8084, 8086]);
    }
}
