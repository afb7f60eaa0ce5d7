//! The aggregates heartbeats add to (`daily`, `retention`), summed in memory and written once
//! a second: every heartbeat of a popular video adds to the same two documents, and writing
//! them per heartbeat made those two documents the bottleneck (one writer at a time on
//! SQLite, one document lock on MongoDB). A write adds what this process summed, so replicas
//! add up; a crash loses at most the last second of this process's watch time and daily
//! views (never media's view count, which follows `video.viewed` through the outbox).

use crate::domain::VideoInfo;
use crate::store::{self, BUCKETS};
use flick_platform::documents::{DocError, Documents};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the sums are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Clone, PartialEq)]
struct DayDelta {
    watch_seconds: f64,
    views: i64,
    renditions: HashMap<String, f64>,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct VideoDelta {
    owner: String,
    days: HashMap<String, DayDelta>,
    /// Sessions that newly reached each 5% bucket.
    retention: Vec<i64>,
}

impl VideoDelta {
    fn merge(&mut self, other: VideoDelta) {
        for (day, d) in other.days {
            let mine = self.days.entry(day).or_default();
            mine.watch_seconds += d.watch_seconds;
            mine.views += d.views;
            for (r, s) in d.renditions {
                *mine.renditions.entry(r).or_default() += s;
            }
        }
        add_buckets(&mut self.retention, &other.retention);
    }
}

fn add_buckets(into: &mut Vec<i64>, from: &[i64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// Sums waiting to be written, per video.
#[derive(Default)]
pub struct Totals {
    pending: Mutex<HashMap<String, VideoDelta>>,
    /// One writer at a time, so a flush that returns has written everything added before it
    /// began (a report flushes first and then reads its own process's heartbeats).
    writing: tokio::sync::Mutex<()>,
}

impl Totals {
    fn with_video<R>(&self, video: &VideoInfo, f: impl FnOnce(&mut VideoDelta) -> R) -> R {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let delta = pending
            .entry(video.id.clone())
            .or_insert_with(|| VideoDelta { owner: video.owner.clone(), ..VideoDelta::default() });
        f(delta)
    }

    /// Watch time (and a view) on the video's `day`, the seconds to the rendition played.
    pub fn add_to_day(&self, video: &VideoInfo, day: &str, watched_seconds: f64, views: i64, rendition: Option<&str>) {
        self.with_video(video, |v| {
            let d = v.days.entry(day.to_string()).or_default();
            d.watch_seconds += watched_seconds;
            d.views += views;
            if let Some(r) = rendition {
                *d.renditions.entry(r.to_string()).or_default() += watched_seconds;
            }
        });
    }

    /// A session reached every bucket from `from` to `to` (inclusive).
    pub fn add_to_retention(&self, video: &VideoInfo, from: u32, to: u32) {
        if from > to.min(BUCKETS) {
            return;
        }
        self.with_video(video, |v| {
            let mut add = vec![0; (BUCKETS + 1) as usize];
            for b in from..=to.min(BUCKETS) {
                add[b as usize] = 1;
            }
            add_buckets(&mut v.retention, &add);
        });
    }

    /// The video was deleted: what it had pending is dropped.
    pub fn forget(&self, video_id: &str) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(video_id);
    }

    fn take(&self) -> HashMap<String, VideoDelta> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts back what could not be written, to be added next time.
    fn restore(&self, video_id: String, delta: VideoDelta) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match pending.get_mut(&video_id) {
            Some(v) => v.merge(delta),
            None => {
                pending.insert(video_id, delta);
            }
        }
    }

    /// Writes every sum added so far. A video deleted meanwhile (a tombstone, or the deletion
    /// of another replica) gets nothing written. What fails is kept for the next flush.
    pub async fn flush(&self, docs: &Documents) -> Result<(), DocError> {
        let _one_writer = self.writing.lock().await;
        let mut first_error = None;
        let mut batch = self.take().into_iter();
        while let Some((video_id, delta)) = batch.next() {
            if let Err(e) = write(docs, &video_id, &delta).await {
                self.restore(video_id, delta);
                // The store is likely down: keep the rest for later rather than fail each.
                for (id, d) in batch.by_ref() {
                    self.restore(id, d);
                }
                first_error = Some(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Flushes every [`FLUSH_EVERY`] until shutdown, then once more.
    pub async fn run(&self, docs: Documents, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            if let Err(e) = self.flush(&docs).await {
                tracing::warn!(error = %e, "activity aggregates not written; kept for the next try");
            }
        }
        if let Err(e) = self.flush(&docs).await {
            tracing::error!(error = %e, "activity aggregates lost at shutdown: the document store is unavailable");
        }
    }
}

async fn write(docs: &Documents, video_id: &str, delta: &VideoDelta) -> Result<(), DocError> {
    if store::video(docs, video_id).await?.is_none() {
        return Ok(()); // deleted: its aggregates are gone and stay gone
    }
    for (day, d) in &delta.days {
        let renditions: Vec<(&str, f64)> = d.renditions.iter().map(|(r, s)| (r.as_str(), *s)).collect();
        store::add_to_day(docs, video_id, &delta.owner, day, d.watch_seconds, d.views, &renditions).await?;
    }
    if delta.retention.iter().any(|n| *n != 0) {
        store::add_to_retention(docs, video_id, &delta.owner, &delta.retention).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Visibility;

    fn video() -> VideoInfo {
        VideoInfo { id: "v1".into(), owner: "u1".into(), visibility: Visibility::Public, duration_seconds: Some(100.0) }
    }

    #[test]
    fn heartbeats_sum_per_day_rendition_and_bucket() {
        let totals = Totals::default();
        let v = video();
        totals.add_to_day(&v, "2026-12-06", 10.0, 0, Some("720p"));
        totals.add_to_day(&v, "2026-12-06", 5.0, 1, Some("480p"));
        totals.add_to_day(&v, "2026-12-06", 2.5, 0, Some("720p"));
        totals.add_to_retention(&v, 0, 2);
        totals.add_to_retention(&v, 2, 3);
        totals.add_to_retention(&v, 5, 4); // nothing newly reached
        let pending = totals.take();
        let d = &pending["v1"].days["2026-12-06"];
        assert_eq!((d.watch_seconds, d.views), (17.5, 1));
        assert_eq!((d.renditions["720p"], d.renditions["480p"]), (12.5, 5.0));
        assert_eq!(&pending["v1"].retention[..5], &[1, 1, 2, 1, 0]);
        assert!(totals.take().is_empty(), "taken sums are not written twice");
    }

    #[test]
    fn sums_put_back_add_to_what_arrived_meanwhile() {
        let totals = Totals::default();
        let v = video();
        totals.add_to_day(&v, "d", 3.0, 1, None);
        totals.add_to_retention(&v, 0, 0);
        let (id, failed) = totals.take().into_iter().next().unwrap();
        totals.add_to_day(&v, "d", 4.0, 0, None);
        totals.restore(id, failed);
        let d = &totals.take()["v1"];
        assert_eq!((d.days["d"].watch_seconds, d.days["d"].views, d.retention[0]), (7.0, 1, 1));
    }

    #[test]
    fn a_deleted_videos_sums_are_dropped() {
        let totals = Totals::default();
        totals.add_to_day(&video(), "d", 3.0, 1, None);
        totals.forget("v1");
        assert!(totals.take().is_empty());
    }
}
