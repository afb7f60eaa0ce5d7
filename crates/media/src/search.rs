//! Search: public, ready videos ranked by how well their title, tags and description match
//! the query's words, filtered by tags and a category. PostgreSQL ranks full-text matches and
//! similar titles itself; SQLite ranks FTS5 matches, and a query word a letter or two off finds
//! its title here, in Rust.

use crate::domain::{Media, db_error};
use crate::paging::{decode_cursor, limit_of, page};
use crate::store;
use crate::validation::CATEGORIES;
use crate::video::Video;
use flick_kit::AppError;
use flick_kit::page::Page;

impl Media {
    /// Ranked search of public, ready videos: words in the title count most, then tags, then
    /// the description; a word one or two letters off still finds its title. Tags and the
    /// category filter. Cursors are positions in the ranking.
    pub async fn search(
        &self,
        query: Option<&str>,
        tags: Option<Vec<String>>,
        category: Option<&str>,
        after: Option<&str>,
        first: Option<i32>,
    ) -> Result<Page<Video>, AppError> {
        let limit = limit_of(first)?;
        let offset = decode_cursor(after)?.map(|(n, _)| n.max(0) as u64).unwrap_or(0);
        let words: Vec<String> = query
            .unwrap_or_default()
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .take(12)
            .map(|w| w.chars().take(40).collect())
            .collect();
        let tags: Vec<String> = tags
            .unwrap_or_default()
            .iter()
            .map(|t| t.trim().to_lowercase())
            .filter(|t| !t.is_empty())
            .take(10)
            .collect();
        let category = category.map(|c| c.trim().to_lowercase()).filter(|c| !c.is_empty());
        if let Some(c) = &category
            && !CATEGORIES.contains(&c.as_str())
        {
            return Err(AppError::bad_input("unknown category").with_field("category", "is not a known category"));
        }
        let filter = store::SearchFilter { words: &words, tags: &tags, category: category.as_deref() };
        let rows = if words.is_empty() {
            store::filtered(&self.db, &filter, offset, limit + 1).await.map_err(db_error)?
        } else if self.db.get_database_backend() == flick_platform::db::sea_orm::DatabaseBackend::Postgres {
            store::search_postgres(&self.db, &filter, offset, limit + 1).await.map_err(db_error)?
        } else {
            let mut ranked = store::search_sqlite(&self.db, &filter, 0, offset + limit + 1).await.map_err(db_error)?;
            if (ranked.len() as u64) < offset + limit + 1 {
                // FTS5 has no typo tolerance: add close titles and tags, after the exact hits.
                let candidates = store::filtered(&self.db, &filter, 0, 5000).await.map_err(db_error)?;
                let known: std::collections::HashSet<String> = ranked.iter().map(|v| v.id.clone()).collect();
                ranked.extend(candidates.into_iter().filter(|v| !known.contains(&v.id) && fuzzy_match(&words, v)));
            }
            ranked.into_iter().skip(offset as usize).take(limit as usize + 1).collect()
        };
        Ok(page(rows, limit))
    }
}

/// Every query word of three letters or more is close to a word of the title or a tag:
/// within one edit (two for words of eight letters or more), or a prefix of it.
fn fuzzy_match(words: &[String], v: &Video) -> bool {
    let title = v.title.to_lowercase();
    let tokens: Vec<&str> = title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .chain(v.tags.iter().map(String::as_str))
        .collect();
    let words: Vec<&String> = words.iter().filter(|w| w.chars().count() >= 3).collect();
    !words.is_empty()
        && words.iter().all(|w| {
            let allowed = if w.chars().count() >= 8 { 2 } else { 1 };
            tokens.iter().any(|t| t.starts_with(w.as_str()) || edit_distance(w, t) <= allowed)
        })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 2 {
        return 3;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
