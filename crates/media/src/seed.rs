//! Demo and benchmark data: public, ready videos with plausible titles, tags and numbers.

use crate::store;
use crate::video::{Video, VideoStatus, Visibility};
use flick_platform::db::sea_orm::{DatabaseConnection, TransactionTrait};

const SUBJECTS: &[&str] = &[
    "Flamingo",
    "Sourdough",
    "Mountain bike",
    "Rust async",
    "Street food",
    "Aurora",
    "Synth jam",
    "Chess opening",
    "Coral reef",
    "Vintage camera",
    "Marathon",
    "Origami crane",
    "Thunderstorm",
    "Espresso",
    "Bonsai",
    "Skateboard",
];
const FORMATS: &[&str] =
    &["in 60 seconds", "explained", "timelapse", "for beginners", "deep dive", "field notes", "live session", "review"];
const TAGS: &[&str] =
    &["nature", "food", "travel", "music", "tech", "howto", "sports", "science", "art", "slowmo", "4k", "tutorial"];
const CATEGORIES: &[&str] = &["pets", "howto", "travel", "music", "tech", "sports", "science", "education"];

/// Adds `n` public, ready videos owned round-robin by `owners`, published over the past year.
/// Likes are rows from some of `owners` (counts are computed from rows, so a seeded number
/// without rows would be "corrected" away); views are only a number, so the column is set.
pub async fn seed_videos(db: &DatabaseConnection, owners: &[String], n: usize) -> anyhow::Result<usize> {
    anyhow::ensure!(!owners.is_empty(), "seeding videos needs at least one owner");
    let now = chrono::Utc::now().timestamp_millis();
    let mut rng: u64 = 0x2545F4914F6CDD1D ^ now as u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let txn = db.begin().await?;
        for &k in chunk {
            let id = uuid::Uuid::now_v7().to_string();
            let subject = SUBJECTS[(next() % SUBJECTS.len() as u64) as usize];
            let title = format!("{subject} {} #{k}", FORMATS[(next() % FORMATS.len() as u64) as usize]);
            let tags: Vec<String> = (0..3)
                .map(|_| TAGS[(next() % TAGS.len() as u64) as usize].to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let description = format!("{title}. Shot and edited for Flick; tags: {}.", tags.join(", "));
            let published = now - (next() % (365 * 24 * 3600 * 1000)) as i64;
            let category = CATEGORIES[(next() % CATEGORIES.len() as u64) as usize];
            let likers = (next() % (owners.len().min(500) as u64 + 1)) as usize;
            let first = (next() % owners.len() as u64) as usize;
            let likers_ids: Vec<String> = (0..likers).map(|i| owners[(first + i) % owners.len()].clone()).collect();
            let video = Video {
                id,
                owner_id: owners[k % owners.len()].clone(),
                title,
                description,
                tags,
                category: Some(category.to_string()),
                visibility: Visibility::Public,
                status: VideoStatus::Ready,
                failure: None,
                created_at_ms: published,
                published_at_ms: Some(published),
                like_count: likers as i64,
                comment_count: 0,
                view_count: (next() % 50_000) as i64,
            };
            store::insert_video(&txn, &video).await?;
            store::insert_likes(&txn, &video.id, &likers_ids, published).await?;
        }
        txn.commit().await?;
    }
    Ok(n)
}
