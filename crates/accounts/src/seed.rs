//! Demo and benchmark data: users who can log in with one shared password.

use crate::store::{self, NewUser};
use flick_platform::db::sea_orm::{DatabaseConnection, TransactionTrait};

/// The password of every seeded user.
pub const SEED_PASSWORD: &str = "flick-demo-password";

const FIRST: &[&str] = &["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Linus", "Frances", "Ken"];
const LAST: &[&str] =
    &["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Torvalds", "Allen", "Thompson"];

/// Creates `n` users (`seed_<k>@example.com`, username `seed_<k>`); returns their ids.
/// Existing seed users are kept, so seeding twice adds nothing new for the same `n`.
pub async fn seed_users(db: &DatabaseConnection, n: usize) -> anyhow::Result<Vec<String>> {
    let hash = crate::password::hash(SEED_PASSWORD.to_string()).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut ids = Vec::with_capacity(n);
    let txn = db.begin().await?;
    for k in 0..n {
        let username = format!("seed_{k}");
        if let Some(existing) = store::user_by_login(&txn, &username).await? {
            ids.push(existing.id);
            continue;
        }
        let id = uuid::Uuid::now_v7().to_string();
        let email = format!("{username}@example.com");
        let display = format!("{} {}", FIRST[k % FIRST.len()], LAST[(k / FIRST.len()) % LAST.len()]);
        store::insert_user(
            &txn,
            NewUser {
                id: &id,
                email: &email,
                email_key: &email,
                username: &username,
                display_name: &display,
                password_hash: &hash,
                now_ms: now,
            },
        )
        .await?;
        ids.push(id);
    }
    txn.commit().await?;
    Ok(ids)
}
