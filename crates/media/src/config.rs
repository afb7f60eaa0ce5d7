//! Media's section of the configuration (`[media]`, `FLICK_MEDIA__*`).
//! Loaded, checked and printed with the rest by `flick_kit::config` once the binary registers
//! it (`SectionSpec::of`): a key it does not have is an error, in a file or in a variable.

use flick_kit::Config;
use flick_kit::config::ConfigSection;
use serde::{Deserialize, Serialize};

/// Media's counters (likes, comments, views): cached, with the database as truth.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// How often the reconciler recomputes changed videos' counts from their rows and
    /// flushes pending views into the database.
    pub reconcile_interval_seconds: u64,
    /// How long a cached count lives without being refreshed.
    pub counter_ttl_seconds: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self { reconcile_interval_seconds: 30, counter_ttl_seconds: 3600 }
    }
}

impl ConfigSection for MediaConfig {
    const NAME: &'static str = "media";
}

/// `config.media()` reads this section (its defaults when the configuration has none),
/// `config.media_mut()` changes it (tests).
pub trait MediaConfigExt {
    fn media(&self) -> MediaConfig;
    fn media_mut(&mut self) -> &mut MediaConfig;
}

impl MediaConfigExt for Config {
    fn media(&self) -> MediaConfig {
        self.section::<MediaConfig>()
    }

    fn media_mut(&mut self) -> &mut MediaConfig {
        self.section_mut::<MediaConfig>()
    }
}
