//! The recommender's section of the configuration (`[recommender]`, `FLICK_RECOMMENDER__*`).
//! Loaded, checked and printed with the rest by `flick_kit::config` once the binary registers
//! it (`SectionSpec::of`): a key it does not have is an error, in a file or in a variable.

use flick_kit::Config;
use flick_kit::config::ConfigSection;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Text embeddings and recommendations.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RecommenderConfig {
    /// all-MiniLM-L6-v2's `model.safetensors`, `tokenizer.json` and `config.json`, as
    /// `scripts/models.sh` installs them; empty: `$FLICK_TOOLS_DIR/models/all-MiniLM-L6-v2`
    /// (`/var/cache/flick/tools/...` when `FLICK_TOOLS_DIR` is unset).
    pub model_dir: Option<PathBuf>,
    /// Most texts embedded in one forward pass.
    pub batch_size: usize,
}

impl Default for RecommenderConfig {
    fn default() -> Self {
        Self { model_dir: None, batch_size: 32 }
    }
}

impl ConfigSection for RecommenderConfig {
    const NAME: &'static str = "recommender";
}

/// `config.recommender()` reads this section (its defaults when the configuration has none),
/// `config.recommender_mut()` changes it (tests).
pub trait RecommenderConfigExt {
    fn recommender(&self) -> RecommenderConfig;
    fn recommender_mut(&mut self) -> &mut RecommenderConfig;
}

impl RecommenderConfigExt for Config {
    fn recommender(&self) -> RecommenderConfig {
        self.section::<RecommenderConfig>()
    }

    fn recommender_mut(&mut self) -> &mut RecommenderConfig {
        self.section_mut::<RecommenderConfig>()
    }
}
