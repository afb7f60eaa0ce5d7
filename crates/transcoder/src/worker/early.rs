//! Early publishing: a long video's segments go to the object store while ffmpeg still
//! encodes, so it plays before its ladder is done.

use crate::domain::{Stage, Transcoder, media_prefix, now_ms};
use crate::pipeline::{self, hls};
use crate::store;
use std::collections::HashSet;
use std::path::PathBuf;

/// A long video's segments, published while ffmpeg still encodes: each finished segment is
/// stored once, then each track's growing (EVENT) playlist as it stood when read, so a
/// playlist never names a segment that is not stored yet; the master goes up once every
/// track has a segment, and the video becomes playable.
pub(super) struct Early {
    video_id: String,
    job_id: String,
    out: PathBuf,
    tracks: Vec<String>,
    /// The source's probed duration (what players show before the ladder's is known).
    duration_seconds: f64,
    /// Paths relative to `out` that are stored already.
    pub(super) uploaded: HashSet<String>,
    published: bool,
}

impl Early {
    /// For `tracks` (the rungs' names, and the audio's) under `out`.
    pub(super) fn new(video_id: &str, job_id: &str, out: PathBuf, tracks: Vec<String>, duration_seconds: f64) -> Self {
        Early {
            video_id: video_id.to_string(),
            job_id: job_id.to_string(),
            out,
            tracks,
            duration_seconds,
            uploaded: HashSet::new(),
            published: false,
        }
    }

    /// Stores what is new since the last call; the first time every track has a segment, the
    /// master too, and the video becomes playable.
    pub(super) async fn sync(&mut self, t: &Transcoder) -> Result<(), String> {
        let prefix = media_prefix(&self.video_id);
        let mut playlists = Vec::new();
        for track in &self.tracks {
            let relative = format!("{track}/{}", pipeline::PLAYLIST);
            let Ok(text) = tokio::fs::read_to_string(self.out.join(&relative)).await else {
                return Ok(());
            };
            // Whole lines only: what the parser skips is not published either.
            let text = text.get(..text.rfind('\n').map_or(0, |end| end + 1)).unwrap_or_default().to_string();
            let playlist = hls::parse_media(&text);
            if playlist.segments.is_empty() {
                return Ok(());
            }
            let files: Vec<String> = playlist
                .init
                .iter()
                .chain(playlist.segments.iter().map(|(uri, _)| uri))
                .map(|uri| format!("{track}/{uri}"))
                .collect();
            for file in files {
                if self.uploaded.contains(&file) {
                    continue;
                }
                let data = tokio::fs::read(self.out.join(&file)).await.map_err(|e| format!("reading {file}: {e}"))?;
                t.storage.put(&format!("{prefix}/{file}"), data.into()).await.map_err(|e| e.to_string())?;
                self.uploaded.insert(file);
            }
            playlists.push((relative, text));
        }
        for (relative, text) in playlists {
            t.storage
                .put(&format!("{prefix}/{relative}"), text.into_bytes().into())
                .await
                .map_err(|e| e.to_string())?;
        }
        if !self.published {
            let master = tokio::fs::read(self.out.join(pipeline::MASTER))
                .await
                .map_err(|e| format!("reading the master: {e}"))?;
            t.storage.put(&format!("{prefix}/{}", pipeline::MASTER), master.into()).await.map_err(|e| e.to_string())?;
            store::set_playable(&t.db, &self.video_id, &self.job_id, self.duration_seconds, now_ms())
                .await
                .map_err(|e| e.to_string())?;
            self.published = true;
            tracing::info!(video.id = %self.video_id, "playable before the ladder finished");
            let owner =
                store::video(&t.db, &self.video_id).await.ok().flatten().map(|v| v.owner_id).unwrap_or_default();
            t.publish_stage(&self.video_id, &owner, Stage::Playable, 50.0, None);
        }
        Ok(())
    }
}
