//! The recommender's quality-bar figures (run in release by `scripts/bench-recommender.sh`):
//!
//! - embedding throughput: titles per second in batches of 32 (bar: >= 150/s on 2 cores);
//! - `related(first: 10)` with 100k vectors in pgvector (HNSW): latency of the domain call
//!   (PostgreSQL round trips included; p99 bar <= 20 ms) and recall@10 against an exact search
//!   with the same exclusions (bar >= 0.95), with the HNSW parameters used.
//!
//! The 100k vectors are synthetic (unit vectors scattered around 1,000 random centres, pairs
//! in one cluster at cosine ~0.2-0.8, from tight to barely distinguishable), plus
//! real embeddings of a sample of generated titles; queries come from both.
//! env: FLICK_BENCH_VECTORS (100000), FLICK_BENCH_QUERIES (500), FLICK_BENCH_RUNS (3).

use flick_platform::db::sea_orm::ConnectionTrait;
use flick_recommender::model::{self, DIMENSIONS, Embedder};
use flick_recommender::store::{self, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const ADJECTIVES: &[&str] = &[
    "funny",
    "quick",
    "relaxing",
    "epic",
    "beginner",
    "advanced",
    "live",
    "slow",
    "tiny",
    "giant",
    "rainy",
    "late-night",
];
const TOPICS: &[&str] = &[
    "cat",
    "piano",
    "guitar",
    "sourdough",
    "football",
    "chess",
    "drone",
    "volcano",
    "espresso",
    "python",
    "origami",
    "skateboard",
    "thunderstorm",
    "puppy",
    "bicycle",
    "sushi",
];
const FORMATS: &[&str] =
    &["tutorial", "compilation", "review", "highlights", "timelapse", "vlog", "lesson", "challenge", "documentary"];

fn titles(rng: &mut StdRng, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let pick = |rng: &mut StdRng, words: &[&str]| words[rng.random_range(0..words.len())].to_string();
            format!("{} {} {} #{i}", pick(rng, ADJECTIVES), pick(rng, TOPICS), pick(rng, FORMATS))
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn gaussian(rng: &mut StdRng) -> f32 {
    // Box-Muller.
    let (u, v): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
    ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
}

fn unit(rng: &mut StdRng) -> Vec<f32> {
    store::normalised((0..DIMENSIONS).map(|_| gaussian(rng)).collect())
}

struct Video {
    id: String,
    owner: String,
    vector: Vec<f32>,
}

fn embedding_throughput(embedder: &Embedder, rng: &mut StdRng, runs: usize) -> f64 {
    let batches: Vec<Vec<String>> = (0..10).map(|_| titles(rng, 32)).collect();
    embedder.embed(&batches[0]).expect("warm-up batch");
    let mut rates = Vec::new();
    for run in 1..=runs {
        let started = Instant::now();
        for b in &batches {
            embedder.embed(b).expect("embedding");
        }
        let rate = (batches.len() * 32) as f64 / started.elapsed().as_secs_f64();
        println!("  run {run}: {rate:.0} titles/s");
        rates.push(rate);
    }
    median(rates)
}

/// Exact top `k` for `query` among `videos`, without itself and its owner's videos.
fn exact(videos: &[Video], query: &Video, k: usize) -> Vec<String> {
    let mut scored: Vec<(f32, &str)> = videos
        .iter()
        .filter(|v| v.owner != query.owner && v.id != query.id)
        .map(|v| (store::dot(&v.vector, &query.vector), v.id.as_str()))
        .collect();
    let k = k.min(scored.len());
    scored.select_nth_unstable_by(k.saturating_sub(1), |a, b| b.0.total_cmp(&a.0));
    scored.truncate(k);
    scored.into_iter().map(|(_, id)| id.to_string()).collect()
}

async fn related(r: &flick_recommender::Recommender, id: &str) -> anyhow::Result<Vec<String>> {
    r.related(id, Some(10)).await.map_err(|e| anyhow::anyhow!("related: {e:?}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total = env("FLICK_BENCH_VECTORS", 100_000);
    let queries = env("FLICK_BENCH_QUERIES", 500);
    let runs = env("FLICK_BENCH_RUNS", 3).max(1);
    let mut rng = StdRng::seed_from_u64(7);

    println!("recommender bench: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let started = Instant::now();
    let embedder = Embedder::load(&model::default_dir()).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("model loaded (sha256 checked) in {:.2}s", started.elapsed().as_secs_f64());
    println!("embedding, batch 32, {runs} runs of 320 titles:");
    let rate = embedding_throughput(&embedder, &mut rng, runs);
    println!("embedding throughput: {rate:.0} titles/s (median; bar >= 150)");

    // ---------- 100k vectors in pgvector ----------
    let real = (total / 50).clamp(1, 2_000);
    println!("\nindexing {total} vectors ({real} real title embeddings, the rest synthetic around 1,000 centres)");
    let sample = titles(&mut rng, real);
    let mut real_vectors = Vec::with_capacity(real);
    for chunk in sample.chunks(32) {
        real_vectors.extend(embedder.embed(chunk).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    let centres: Vec<Vec<f32>> = (0..1_000).map(|_| unit(&mut rng)).collect();
    let owners = (total / 5).max(1);
    let mut videos: Vec<Video> = Vec::with_capacity(total);
    for i in 0..total {
        let vector = if let Some(v) = real_vectors.get(i) {
            v.clone()
        } else {
            let c = &centres[rng.random_range(0..centres.len())];
            let spread = rng.random_range(0.5..2.0f32) / (DIMENSIONS as f32).sqrt();
            store::normalised(c.iter().map(|x| x + spread * gaussian(&mut rng)).collect())
        };
        let owner = format!("00000000-0000-7000-8000-{:012}", rng.random_range(0..owners));
        videos.push(Video { id: uuid::Uuid::now_v7().to_string(), owner, vector });
    }

    let pg = flick_testkit::TestDatabase::create().await;
    let db = flick_platform::db::connect(&pg.url, "recommender", 4).await?;
    flick_platform::db::migrate(&db, flick_recommender::MIGRATIONS).await?;
    // Bulk load without the index, then build it once (as a restore would).
    db.execute_unprepared("DROP INDEX video_embeddings_hnsw").await?;
    let load = Instant::now();
    let now = chrono::Utc::now().timestamp_millis();
    for chunk in videos.chunks(500) {
        let rows: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "('{}', '{}', '{}', 'bench', {}, {}, 0, 0)",
                    v.id,
                    v.owner,
                    store::vector_text(&v.vector),
                    now - i as i64,
                    i % 7
                )
            })
            .collect();
        db.execute_unprepared(&format!(
            "INSERT INTO video_embeddings (video_id, owner_id, embedding, text, published_at_ms, like_count, event_ms, embedded_at_ms) VALUES {}",
            rows.join(", ")
        ))
        .await?;
    }
    println!("loaded in {:.1}s", load.elapsed().as_secs_f64());
    let build = Instant::now();
    db.execute_unprepared("SET maintenance_work_mem = '1GB'").await?;
    db.execute_unprepared(&format!(
        "CREATE INDEX video_embeddings_hnsw ON video_embeddings USING hnsw (embedding vector_cosine_ops) \
         WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
    ))
    .await?;
    db.execute_unprepared("ANALYZE video_embeddings").await?;
    println!(
        "HNSW m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}: built in {:.1}s; queries use ef_search = {HNSW_EF_SEARCH}, iterative_scan = relaxed_order",
        build.elapsed().as_secs_f64()
    );

    let recommender = flick_recommender::recommender(db.clone(), &Default::default());
    let picks: Vec<usize> =
        (0..queries).map(|i| if i % 5 == 0 { rng.random_range(0..real) } else { rng.random_range(0..total) }).collect();
    for &i in picks.iter().take(20) {
        related(&recommender, &videos[i].id).await?; // warm-up: index pages into the cache
    }
    let mut p99s = Vec::new();
    let mut p50s = Vec::new();
    let mut found = Vec::new();
    for run in 1..=runs {
        let mut latencies = Vec::with_capacity(picks.len());
        found.clear();
        for &i in &picks {
            let started = Instant::now();
            let ids = related(&recommender, &videos[i].id).await?;
            latencies.push(started.elapsed());
            found.push(ids);
        }
        latencies.sort();
        let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
        println!(
            "  run {run}: related(first: 10) x {}: p50 {:.2} ms, p99 {:.2} ms",
            picks.len(),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        p50s.push(p50.as_secs_f64() * 1e3);
        p99s.push(p99.as_secs_f64() * 1e3);
    }
    // The searches went through the HNSW index (not a sequential scan): its scan count.
    tokio::time::sleep(Duration::from_secs(2)).await; // statistics are flushed about once a second
    let scans = db
        .query_one_raw(flick_platform::db::sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT idx_scan AS n FROM pg_stat_user_indexes WHERE indexrelname = 'video_embeddings_hnsw'",
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    println!("HNSW index scans: {scans} for {} related() calls", picks.len() * runs + 20);
    let mut hits = 0;
    let mut real_hits = (0, 0);
    for (&i, ids) in picks.iter().zip(&found) {
        let truth: HashSet<String> = exact(&videos, &videos[i], 10).into_iter().collect();
        let h = ids.iter().filter(|id| truth.contains(*id)).count();
        hits += h;
        if i < real {
            real_hits.0 += h;
            real_hits.1 += 10;
        }
    }
    let recall = hits as f64 / (picks.len() * 10) as f64;
    println!(
        "related(first: 10) with {total} vectors: p50 {:.2} ms, p99 {:.2} ms (median of {runs} runs; bar <= 20 ms)",
        median(p50s),
        median(p99s)
    );
    println!(
        "recall@10 vs exact search: {recall:.3} (real-embedding queries: {:.3}; bar >= 0.95)",
        real_hits.0 as f64 / real_hits.1.max(1) as f64
    );
    Ok(())
}
