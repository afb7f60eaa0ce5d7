//! Text embeddings with all-MiniLM-L6-v2 (384 dimensions) on the CPU: candle's `BertModel`,
//! the model's own WordPiece tokenizer (padding to the longest text of a batch, truncation at
//! 256 tokens), mean pooling over the attention mask, L2 normalisation — what
//! sentence-transformers computes for this model.
//!
//! The weights are files that `scripts/models.sh` installs; their sha256 is checked when they
//! are loaded. The model loads on first use, once per process, on the blocking pool, and every
//! forward pass runs there too.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Dimensions of an embedding.
pub const DIMENSIONS: usize = 384;
/// Tokens kept of a text (the model's `max_seq_length`).
pub const MAX_TOKENS: usize = 256;

/// The files of the model and their pinned sha256 (as in `scripts/models.sh`).
pub const FILES: &[(&str, &str)] = &[
    ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
    ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
];

/// Where the model is when `recommender.model_dir` is not set: where `scripts/models.sh`
/// puts it, `$FLICK_TOOLS_DIR/models/all-MiniLM-L6-v2`.
pub fn default_dir() -> PathBuf {
    let tools = std::env::var_os("FLICK_TOOLS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/flick/tools"));
    tools.join("models").join("all-MiniLM-L6-v2")
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    #[error(
        "embedding model missing: {0} not found; install it with `scripts/models.sh` (or set recommender.model_dir)"
    )]
    Missing(String),
    #[error("embedding model file {file} has sha256 {got}, expected {want}; reinstall it with `scripts/models.sh`")]
    Checksum { file: String, got: String, want: String },
    #[error("embedding model cannot be used: {0}")]
    Failed(String),
}

fn failed(e: impl std::fmt::Display) -> ModelError {
    ModelError::Failed(e.to_string())
}

/// Checks that every file is there (cheap: no hashing), for readiness.
pub fn check_files(dir: &Path) -> Result<(), ModelError> {
    for (name, _) in FILES {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(ModelError::Missing(path.display().to_string()));
        }
    }
    Ok(())
}

/// Reads a model file and checks its pinned sha256.
fn read_verified(dir: &Path, name: &str, want: &str) -> Result<Vec<u8>, ModelError> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ModelError::Missing(path.display().to_string()),
        _ => failed(format!("reading {}: {e}", path.display())),
    })?;
    let got = hex::encode(Sha256::digest(&bytes));
    if got != want {
        return Err(ModelError::Checksum { file: path.display().to_string(), got, want: want.to_string() });
    }
    Ok(bytes)
}

/// The loaded model and tokenizer; `embed` is CPU-bound: call it on the blocking pool.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Embedder(all-MiniLM-L6-v2)")
    }
}

impl Embedder {
    /// Loads and verifies the files in `dir` (blocking: reads ~90 MB).
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        check_files(dir)?;
        let mut files = FILES.iter().map(|(name, sum)| read_verified(dir, name, sum));
        let (weights, tokenizer, config) = match (files.next(), files.next(), files.next()) {
            (Some(w), Some(t), Some(c)) => (w?, t?, c?),
            _ => return Err(failed("model file list is incomplete")),
        };
        let config: BertConfig = serde_json::from_slice(&config).map_err(|e| failed(format!("config.json: {e}")))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu).map_err(failed)?;
        let model = BertModel::load(vb, &config).map_err(failed)?;
        let mut tokenizer = Tokenizer::from_bytes(&tokenizer).map_err(|e| failed(format!("tokenizer.json: {e}")))?;
        // The file pads every text to 128 tokens; padding to the batch's longest is 10-15x faster.
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
            .map_err(|e| failed(format!("tokenizer truncation: {e}")))?;
        Ok(Self { model, tokenizer })
    }

    /// Unit-length embeddings of `texts`, in one forward pass.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings =
            self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| failed(format!("tokenizing: {e}")))?;
        let rows = encodings.len();
        let width = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let device = Device::Cpu;
        let ids = Tensor::from_vec(ids, (rows, width), &device).map_err(failed)?;
        let mask = Tensor::from_vec(mask, (rows, width), &device).map_err(failed)?;
        let types = ids.zeros_like().map_err(failed)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask)).map_err(failed)?;
        let pooled = mean_pool(&hidden, &mask).map_err(failed)?;
        pooled.to_vec2::<f32>().map_err(failed)
    }
}

/// Mean of the token vectors the mask keeps, then L2-normalised: `[rows, width, dim]` ->
/// `[rows, dim]`.
fn mean_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1e-9, f32::MAX)?;
    let mean = summed.broadcast_div(&counts)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
    mean.broadcast_div(&norm)
}

/// The model of one process: loaded on first use (and again after a failure, so installing
/// the files later needs no restart), shared by every caller; forward passes run one at a
/// time on the blocking pool (two cores gain nothing from running them side by side).
#[derive(Clone)]
pub struct Model {
    dir: PathBuf,
    batch_size: usize,
    loaded: Arc<tokio::sync::Mutex<Option<Arc<Embedder>>>>,
    forward: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("dir", &self.dir).field("batch_size", &self.batch_size).finish()
    }
}

impl Model {
    pub fn new(dir: PathBuf, batch_size: usize) -> Self {
        Self {
            dir,
            batch_size: batch_size.max(1),
            loaded: Arc::default(),
            forward: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Readiness: loaded, or at least its files are in place.
    pub async fn check(&self) -> Result<(), ModelError> {
        if self.loaded.lock().await.is_some() {
            return Ok(());
        }
        check_files(&self.dir)
    }

    /// The embedder, loading it first if needed.
    pub async fn embedder(&self) -> Result<Arc<Embedder>, ModelError> {
        let mut loaded = self.loaded.lock().await;
        if let Some(e) = loaded.as_ref() {
            return Ok(e.clone());
        }
        let dir = self.dir.clone();
        let started = std::time::Instant::now();
        let embedder = tokio::task::spawn_blocking(move || Embedder::load(&dir)).await.map_err(failed)??;
        tracing::info!(dir = %self.dir.display(), load_ms = started.elapsed().as_millis() as u64, "embedding model loaded");
        let embedder = Arc::new(embedder);
        *loaded = Some(embedder.clone());
        Ok(embedder)
    }

    /// Embeddings of `texts`, `batch_size` texts per forward pass.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ModelError> {
        let embedder = self.embedder().await?;
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch_size) {
            let _turn = self.forward.acquire().await.map_err(failed)?;
            let (embedder, chunk) = (embedder.clone(), chunk.to_vec());
            let started = std::time::Instant::now();
            let n = chunk.len();
            let vectors = tokio::task::spawn_blocking(move || embedder.embed(&chunk)).await.map_err(failed)??;
            metrics::counter!("recommender_texts_embedded_total").increment(n as u64);
            metrics::histogram!("recommender_embed_batch_seconds").record(started.elapsed().as_secs_f64());
            out.extend(vectors);
        }
        Ok(out)
    }
}
