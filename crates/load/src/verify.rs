//! After the load: every acknowledged write is in the database and in the counts the API
//! shows, every completed upload reaches READY, and the events reached their consumers once
//! (the recommender's likes and index, the transcoder's copy). Counts are eventually consistent (events,
//! cache), so each check waits for agreement up to a deadline and reports how long it took.

use crate::api::Api;
use crate::ledger::Ledger;
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

/// One check's outcome: problems found (empty: it holds) and how long it took to hold.
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub checked: usize,
    pub problems: Vec<String>,
    pub settled_after: Duration,
}

pub struct Verifier<'a> {
    pub api: &'a Api,
    pub database_url: &'a str,
    pub timeout: Duration,
}

impl Verifier<'_> {
    pub async fn all(&self, ledger: &Ledger) -> Result<Vec<Check>> {
        Ok(vec![
            self.uploads(ledger).await,
            self.eventually("likes in the database", ledger.likes.len(), || self.likes(ledger)).await?,
            self.eventually("comments in the database", ledger.comments.len(), || self.comments(ledger)).await?,
            self.eventually("subscriptions in the database", ledger.subscriptions.len(), || self.subscriptions(ledger))
                .await?,
            self.eventually("like and comment counts", ledger.touched_videos().len(), || self.video_counts(ledger))
                .await?,
            self.eventually("subscriber counts", ledger.touched_channels().len(), || self.channel_counts(ledger))
                .await?,
            self.eventually("recommender's likes and like counts", ledger.touched_videos().len(), || {
                self.recommender_likes(ledger)
            })
            .await?,
            self.eventually(
                "uploads in the recommender's index and READY in the transcoder",
                ledger.uploads.len(),
                || self.uploads_everywhere(ledger),
            )
            .await?,
        ])
    }

    async fn eventually<F, Fut>(&self, name: &'static str, checked: usize, check: F) -> Result<Check>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Vec<String>>>,
    {
        let start = Instant::now();
        loop {
            let problems = check().await?;
            if problems.is_empty() || start.elapsed() > self.timeout {
                return Ok(Check { name, checked, problems, settled_after: start.elapsed() });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn uploads(&self, ledger: &Ledger) -> Check {
        let start = Instant::now();
        let stuck = self.api.wait_ready(&ledger.uploads, self.timeout).await;
        let problems = stuck.into_iter().map(|(video, state)| format!("upload {video} is {state}")).collect();
        Check { name: "uploads reach READY", checked: ledger.uploads.len(), problems, settled_after: start.elapsed() }
    }

    async fn likes(&self, ledger: &Ledger) -> Result<Vec<String>> {
        let videos: BTreeSet<&str> = ledger.likes.keys().map(|(_, v)| v.as_str()).collect();
        let rows =
            self.rows(&format!("SELECT user_id, video_id FROM media.likes WHERE video_id IN ({})", list(videos)?))?;
        let stored: BTreeSet<(String, String)> = rows.into_iter().map(|r| (r[0].clone(), r[1].clone())).collect();
        Ok(mismatches("like", &ledger.likes, &stored))
    }

    async fn subscriptions(&self, ledger: &Ledger) -> Result<Vec<String>> {
        let channels: BTreeSet<&str> = ledger.subscriptions.keys().map(|(_, c)| c.as_str()).collect();
        let sql = format!(
            "SELECT subscriber_id, channel_id FROM media.channel_subscriptions WHERE channel_id IN ({})",
            list(channels)?
        );
        let stored: BTreeSet<(String, String)> =
            self.rows(&sql)?.into_iter().map(|r| (r[0].clone(), r[1].clone())).collect();
        Ok(mismatches("subscription", &ledger.subscriptions, &stored))
    }

    async fn comments(&self, ledger: &Ledger) -> Result<Vec<String>> {
        let ids: BTreeSet<&str> = ledger.comments.iter().map(|(_, id)| id.as_str()).collect();
        let stored: BTreeSet<String> = self
            .rows(&format!("SELECT id FROM media.comments WHERE id IN ({})", list(ids.iter().copied())?))?
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        Ok(ids
            .into_iter()
            .filter(|id| !stored.contains(*id))
            .map(|id| format!("acknowledged comment {id} is not stored"))
            .collect())
    }

    /// The API's likeCount and commentCount of each touched video equal the rows in the database.
    async fn video_counts(&self, ledger: &Ledger) -> Result<Vec<String>> {
        let videos = ledger.touched_videos();
        let sql = format!(
            "SELECT v.id, (SELECT count(*) FROM media.likes l WHERE l.video_id = v.id), \
             (SELECT count(*) FROM media.comments c WHERE c.video_id = v.id) FROM media.videos v WHERE v.id IN ({})",
            list(videos.iter().map(String::as_str))?
        );
        let stored: BTreeMap<String, (i64, i64)> = self
            .rows(&sql)?
            .into_iter()
            .map(|r| (r[0].clone(), (r[1].parse().unwrap_or(-1), r[2].parse().unwrap_or(-1))))
            .collect();
        let mut problems = Vec::new();
        for video in &videos {
            let data = self
                .api
                .graphql(None, "query($id: ID!) { video(id: $id) { likeCount commentCount } }", json!({"id": video}))
                .await?;
            let shown = (
                data["video"]["likeCount"].as_i64().unwrap_or(-1),
                data["video"]["commentCount"].as_i64().unwrap_or(-1),
            );
            let rows = stored.get(video).copied().unwrap_or((-1, -1));
            if shown != rows {
                problems
                    .push(format!("video {video}: API shows (likes, comments) {shown:?}, the database holds {rows:?}"));
            }
        }
        Ok(problems)
    }

    async fn channel_counts(&self, ledger: &Ledger) -> Result<Vec<String>> {
        let channels = ledger.touched_channels();
        let sql = format!(
            "SELECT channel_id, count(*) FROM media.channel_subscriptions WHERE channel_id IN ({}) GROUP BY channel_id",
            list(channels.iter().map(String::as_str))?
        );
        let stored: BTreeMap<String, i64> =
            self.rows(&sql)?.into_iter().map(|r| (r[0].clone(), r[1].parse().unwrap_or(-1))).collect();
        let mut problems = Vec::new();
        for channel in &channels {
            let data = self
                .api
                .graphql(None, "query($id: ID!) { user(id: $id) { subscriberCount } }", json!({"id": channel}))
                .await?;
            let shown = data["user"]["subscriberCount"].as_i64().unwrap_or(-1);
            let rows = stored.get(channel).copied().unwrap_or(0);
            if shown != rows {
                problems.push(format!("channel {channel}: API shows {shown} subscribers, the database holds {rows}"));
            }
        }
        Ok(problems)
    }

    /// Every like event reached the recommender once: its likes of each touched video equal
    /// media's rows, and so does the like count of the video's embedding (a like applied
    /// twice, or lost, shows here).
    async fn recommender_likes(&self, ledger: &Ledger) -> Result<Vec<String>> {
        let videos = ledger.touched_videos();
        let sql = format!(
            "SELECT v.id, (SELECT count(*) FROM media.likes l WHERE l.video_id = v.id), \
             (SELECT count(*) FROM recommender.user_likes u WHERE u.video_id = v.id), \
             COALESCE((SELECT e.like_count FROM recommender.video_embeddings e WHERE e.video_id = v.id), -1) \
             FROM media.videos v WHERE v.id IN ({})",
            list(videos.iter().map(String::as_str))?
        );
        Ok(self
            .rows(&sql)?
            .into_iter()
            .filter_map(|r| {
                let (media, likes, count) = (&r[1], &r[2], &r[3]);
                // -1: not embedded (yet); its count starts from the likes when it is.
                (likes != media || (count != "-1" && count != media)).then(|| {
                    format!("video {}: media holds {media} likes, the recommender {likes} (like count {count})", r[0])
                })
            })
            .collect())
    }

    /// Every completed upload's `video.published` reached the recommender (the video is
    /// embedded) and the transcoder's own copy of the video is READY.
    async fn uploads_everywhere(&self, ledger: &Ledger) -> Result<Vec<String>> {
        let ids = list(ledger.uploads.iter().map(|(_, video)| video.as_str()))?;
        let embedded: BTreeSet<String> = self
            .rows(&format!("SELECT video_id FROM recommender.video_embeddings WHERE video_id IN ({ids})"))?
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        let states: BTreeMap<String, String> = self
            .rows(&format!("SELECT id, state FROM transcoder.videos WHERE id IN ({ids})"))?
            .into_iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect();
        let mut problems = Vec::new();
        for (_, video) in &ledger.uploads {
            if !embedded.contains(video) {
                problems.push(format!("upload {video} is not in the recommender's index"));
            }
            match states.get(video).map(String::as_str) {
                Some("READY") => {}
                other => problems.push(format!("upload {video} is {other:?} in the transcoder")),
            }
        }
        Ok(problems)
    }

    fn rows(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        rows(self.database_url, sql)
    }
}

/// How many `transcode.completed` events the outbox holds for each video.
pub fn completions(database_url: &str, videos: &[&str]) -> Result<BTreeMap<String, usize>> {
    let sql = format!(
        "SELECT subject, count(*) FROM transcoder.outbox WHERE event_type = 'transcode.completed' AND subject IN ({}) GROUP BY subject",
        list(videos.iter().copied())?
    );
    Ok(rows(database_url, &sql)?.into_iter().map(|r| (r[0].clone(), r[1].parse().unwrap_or(0))).collect())
}

/// Rows of a query, columns split on tabs (psql's unaligned output).
fn rows(database_url: &str, sql: &str) -> Result<Vec<Vec<String>>> {
    let output = Command::new("psql")
        .args(["-X", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", database_url, "-c", sql])
        .output()
        .context("psql (the postgresql-client package)")?;
    if !output.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8(output.stdout)?;
    Ok(text.lines().filter(|l| !l.is_empty()).map(|l| l.split('\t').map(str::to_owned).collect()).collect())
}

/// Pairs whose acknowledged state disagrees with the rows (unknown pairs are not checked).
fn mismatches(
    what: &str,
    ledger: &BTreeMap<(String, String), Option<bool>>,
    stored: &BTreeSet<(String, String)>,
) -> Vec<String> {
    ledger
        .iter()
        .filter_map(|(pair, state)| {
            let want = (*state)?;
            (stored.contains(pair) != want)
                .then(|| format!("acknowledged {what} {pair:?} = {want}, the database says {}", !want))
        })
        .collect()
}

/// An SQL list of ids; ids come from the API, and only id characters are let through.
fn list<'a>(ids: impl IntoIterator<Item = &'a str>) -> Result<String> {
    let mut out = Vec::new();
    for id in ids {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            bail!("unexpected id {id:?}");
        }
        out.push(format!("'{id}'"));
    }
    if out.is_empty() {
        out.push("''".to_owned());
    }
    Ok(out.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_id_characters_reach_the_sql() {
        assert_eq!(list(["a-1", "b_2"]).unwrap(), "'a-1','b_2'");
        assert_eq!(list([]).unwrap(), "''");
        assert!(list(["x'); DROP TABLE likes; --"]).is_err());
    }

    #[test]
    fn unknown_pairs_are_not_checked_and_known_ones_must_match() {
        let pair = |u: &str, v: &str| (u.to_owned(), v.to_owned());
        let ledger = BTreeMap::from([
            (pair("u1", "v1"), Some(true)),
            (pair("u2", "v1"), Some(false)),
            (pair("u3", "v1"), None),
            (pair("u4", "v1"), Some(true)),
        ]);
        let stored = BTreeSet::from([pair("u1", "v1"), pair("u2", "v1"), pair("u3", "v1")]);
        let problems = mismatches("like", &ledger, &stored);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("u2")) && problems.iter().any(|p| p.contains("u4")));
    }
}
