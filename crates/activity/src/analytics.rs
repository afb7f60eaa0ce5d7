//! Creator analytics, owner only: views and watch time per day, average view duration, the
//! audience retention curve, the share of each rendition, the channel's top videos. Read from
//! aggregates the heartbeats keep up to date (`daily`, `retention`), so a figure costs the same
//! whatever the number of heartbeats behind it: at most one document per day and video.

use crate::domain::{Activity, doc_error};
use crate::store::{self, BUCKETS, Day};
use flick_kit::AppError;
use flick_kit::identity::Caller;

/// How far back a report looks, ending today (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // the GraphQL names (LAST_7_DAYS, …) say "days" each
pub enum Range {
    Last7Days,
    Last28Days,
    Last90Days,
}

impl Range {
    pub fn days(self) -> i64 {
        match self {
            Range::Last7Days => 7,
            Range::Last28Days => 28,
            Range::Last90Days => 90,
        }
    }

    /// First and last day, `YYYY-MM-DD`.
    fn bounds(self, today: chrono::NaiveDate) -> (chrono::NaiveDate, chrono::NaiveDate) {
        (today - chrono::Duration::days(self.days() - 1), today)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DayFigures {
    pub day: String,
    pub views: i64,
    pub watch_seconds: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetentionPoint {
    /// 0, 5, …, 100: how far into the video.
    pub percent: u32,
    /// Share of the sessions that started and got this far (0–1).
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RenditionShare {
    pub rendition: String,
    pub watch_seconds: f64,
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VideoReport {
    pub views: i64,
    pub watch_seconds: f64,
    /// Watch time over views; none without views.
    pub average_view_seconds: Option<f64>,
    /// Every day of the range, oldest first (days without activity are zeros).
    pub days: Vec<DayFigures>,
    /// Since the video's first heartbeat; empty until a session of a known duration started.
    pub retention: Vec<RetentionPoint>,
    pub renditions: Vec<RenditionShare>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VideoFigures {
    pub video_id: String,
    pub views: i64,
    pub watch_seconds: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChannelReport {
    pub views: i64,
    pub watch_seconds: f64,
    pub average_view_seconds: Option<f64>,
    pub days: Vec<DayFigures>,
    /// Most viewed first, at most 10.
    pub top_videos: Vec<VideoFigures>,
}

const TOP_VIDEOS: usize = 10;

/// Every day of `from..=to`, with the figures of the days that had any.
fn every_day(from: chrono::NaiveDate, to: chrono::NaiveDate, days: &[Day]) -> Vec<DayFigures> {
    from.iter_days()
        .take_while(|d| *d <= to)
        .map(|d| {
            let day = d.format("%Y-%m-%d").to_string();
            let found = days.iter().find(|x| x.day == day);
            DayFigures {
                views: found.map_or(0, |x| x.views),
                watch_seconds: found.map_or(0.0, |x| x.watch_seconds),
                day,
            }
        })
        .collect()
}

fn average(watch_seconds: f64, views: i64) -> Option<f64> {
    (views > 0).then(|| watch_seconds / views as f64)
}

impl Activity {
    /// A video's report, for its owner only (others: FORBIDDEN; a video the caller cannot
    /// see: NOT_FOUND; anonymous: UNAUTHENTICATED).
    pub async fn video_report(&self, caller: &Caller, video_id: &str, range: Range) -> Result<VideoReport, AppError> {
        let me = caller.require_user()?.to_string();
        let video = crate::store::video(self.documents(), video_id)
            .await
            .map_err(doc_error)?
            .filter(|v| v.watchable_by(caller))
            .ok_or_else(|| AppError::not_found("no such video"))?;
        if video.owner != me {
            return Err(AppError::forbidden("only the video's owner sees its analytics"));
        }
        self.flush_totals().await?;
        let (from, to) = range.bounds(chrono::Utc::now().date_naive());
        let (f, t) = (from.format("%Y-%m-%d").to_string(), to.format("%Y-%m-%d").to_string());
        let days = store::video_days(self.documents(), video_id, &f, &t).await.map_err(doc_error)?;
        let views: i64 = days.iter().map(|d| d.views).sum();
        let watch_seconds: f64 = days.iter().map(|d| d.watch_seconds).sum();
        let mut by_rendition: Vec<(String, f64)> = Vec::new();
        for (name, seconds) in days.iter().flat_map(|d| d.renditions.iter()) {
            match by_rendition.iter_mut().find(|(n, _)| n == name) {
                Some((_, s)) => *s += seconds,
                None => by_rendition.push((name.clone(), *seconds)),
            }
        }
        let rendition_total: f64 = by_rendition.iter().map(|(_, s)| s).sum();
        by_rendition.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let counts = store::retention(self.documents(), video_id).await.map_err(doc_error)?;
        let started = counts[0];
        let retention = if started > 0 {
            (0..=BUCKETS)
                .map(|b| RetentionPoint { percent: b * 5, share: counts[b as usize] as f64 / started as f64 })
                .collect()
        } else {
            Vec::new()
        };
        Ok(VideoReport {
            views,
            watch_seconds,
            average_view_seconds: average(watch_seconds, views),
            days: every_day(from, to, &days),
            retention,
            renditions: by_rendition
                .into_iter()
                .map(|(rendition, s)| RenditionShare {
                    rendition,
                    watch_seconds: s,
                    share: if rendition_total > 0.0 { s / rendition_total } else { 0.0 },
                })
                .collect(),
        })
    }

    /// The caller's channel: every video of theirs summed per day, and the top videos.
    pub async fn channel_report(&self, caller: &Caller, range: Range) -> Result<ChannelReport, AppError> {
        let me = caller.require_user()?.to_string();
        self.flush_totals().await?;
        let (from, to) = range.bounds(chrono::Utc::now().date_naive());
        let (f, t) = (from.format("%Y-%m-%d").to_string(), to.format("%Y-%m-%d").to_string());
        let days = store::channel_days(self.documents(), &me, &f, &t).await.map_err(doc_error)?;
        let videos = store::channel_videos(self.documents(), &me, &f, &t).await.map_err(doc_error)?;
        let views: i64 = days.iter().map(|d| d.views).sum();
        let watch_seconds: f64 = days.iter().map(|d| d.watch_seconds).sum();
        Ok(ChannelReport {
            views,
            watch_seconds,
            average_view_seconds: average(watch_seconds, views),
            days: every_day(from, to, &days),
            top_videos: videos
                .into_iter()
                .take(TOP_VIDEOS)
                .map(|(video_id, views, watch_seconds)| VideoFigures { video_id, views, watch_seconds })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_end_today_and_every_day_is_listed() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let (from, to) = Range::Last7Days.bounds(today);
        assert_eq!(from.to_string(), "2026-02-24");
        let days = vec![Day { day: "2026-02-28".into(), views: 3, watch_seconds: 90.0, renditions: vec![] }];
        let all = every_day(from, to, &days);
        assert_eq!(all.len(), 7);
        assert_eq!(all[4], DayFigures { day: "2026-02-28".into(), views: 3, watch_seconds: 90.0 });
        assert_eq!(all[6].day, "2026-03-02");
        assert_eq!(all.iter().map(|d| d.views).sum::<i64>(), 3);
    }
}
