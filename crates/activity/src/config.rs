//! The activity service's section of the configuration (`[activity]`, `FLICK_ACTIVITY__*`).
//! Loaded, checked and printed with the rest by `flick_kit::config` once the binary registers
//! it (`SectionSpec::of`): a key it does not have is an error, in a file or in a variable.

use flick_kit::Config;
use flick_kit::config::ConfigSection;
use serde::{Deserialize, Serialize};

/// Playback sessions, views and watch history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ActivityConfig {
    /// A view counts once a viewer has watched this long (or half of a video shorter than
    /// twice this).
    pub view_after_seconds: f64,
    /// A viewer counts once per video in this window.
    pub view_window_minutes: u64,
    /// Raw playback sessions are kept this long (daily aggregates for ever).
    pub session_retention_days: i64,
    /// Most heartbeats one session may send per second (more are refused, RATE_LIMITED).
    pub heartbeats_per_second: u64,
    /// Watched seconds a heartbeat may report beyond twice the time since its session's
    /// previous one (the first heartbeat of a session: at most this).
    pub heartbeat_slack_seconds: f64,
    /// Most videos one playlist holds.
    pub max_playlist_items: i64,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        Self {
            view_after_seconds: 30.0,
            view_window_minutes: 30,
            session_retention_days: 90,
            heartbeats_per_second: 4,
            heartbeat_slack_seconds: 5.0,
            max_playlist_items: 5_000,
        }
    }
}

impl ConfigSection for ActivityConfig {
    const NAME: &'static str = "activity";
}

/// `config.activity()` reads this section (its defaults when the configuration has none),
/// `config.activity_mut()` changes it (tests).
pub trait ActivityConfigExt {
    fn activity(&self) -> ActivityConfig;
    fn activity_mut(&mut self) -> &mut ActivityConfig;
}

impl ActivityConfigExt for Config {
    fn activity(&self) -> ActivityConfig {
        self.section::<ActivityConfig>()
    }

    fn activity_mut(&mut self) -> &mut ActivityConfig {
        self.section_mut::<ActivityConfig>()
    }
}
