//! One run of a job: the source downloaded into a scratch directory, probed, encoded (with
//! early publishing for long videos), thumbnails made, every output stored.

use super::early::Early;
use super::progress::Reporter;
use super::sources::CachedSource;
use super::{JobError, scratch, transient};
use crate::domain::{Playback, Stage, Transcoder, media_prefix};
use crate::pipeline::{self, EncodeSettings, RungSpec, Tools, hls};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

impl Transcoder {
    /// Runs the job; `None` when a long source was split into parts instead (`parts`).
    pub(super) async fn transcode(
        &self,
        video_id: &str,
        owner_id: &str,
        job_id: &str,
        sources: &[String],
        shutdown: CancellationToken,
    ) -> Result<Option<Playback>, JobError> {
        let (work, alive) = scratch::job_dir(&self.scratch_root()).map_err(|e| transient("work dir")(e.to_string()))?;
        let source = work.path().join("source");
        let out = work.path().join("out");
        std::fs::create_dir_all(&out).map_err(|e| transient("work dir")(e.to_string()))?;

        let progress = Reporter::new(self, video_id, owner_id, job_id);
        progress.stage(Stage::Downloading, 0.0);
        self.download(sources, &source).await?;
        let tools = self.tools();
        progress.stage(Stage::Probing, 0.0);
        let info = pipeline::probe(&tools, &source).await?;
        if let Some(spans) = self.split_spans(info.duration_seconds) {
            progress.stage(Stage::Encoding, 0.0);
            let cached = CachedSource { input: pipeline::Input::File(source), info, _copy: Some((work, alive)) };
            self.split(video_id, job_id, &spans, std::sync::Arc::new(cached)).await?;
            return Ok(None);
        }
        let rungs = self.rungs_for(&info);
        let settings = self.encode_settings();
        let ladder_names = rungs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(",");
        let encoding = progress.clone();
        let encode = pipeline::encode(
            &tools,
            &source,
            &info,
            &rungs,
            &settings,
            &out,
            move |p| encoding.encoding(&p, &ladder_names),
            shutdown.child_token(),
        );
        let min_early = f64::from(self.config.early_playback_min_seconds);
        let mut early = (min_early > 0.0 && info.duration_seconds >= min_early).then(|| {
            let mut tracks: Vec<String> = rungs.iter().map(|r| r.name.clone()).collect();
            if info.has_audio {
                tracks.push(pipeline::AUDIO.into());
            }
            Early::new(video_id, job_id, out.clone(), tracks, info.duration_seconds)
        });
        tokio::pin!(encode);
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let packaged = loop {
            tokio::select! {
                done = &mut encode => break done?,
                _ = tick.tick(), if early.is_some() => {
                    if let Some(e) = early.as_mut()
                        && let Err(err) = e.sync(self).await
                    {
                        // Early playback is a bonus: the job goes on and stores everything at the end.
                        tracing::warn!(video.id = %video_id, error = %err, "early playback paused");
                    }
                }
            }
        };
        progress.stage(Stage::Thumbnails, 90.0);
        let thumbs = self.thumbnails(&tools, &source, &info, &out, &packaged).await?;
        progress.stage(Stage::Uploading, 95.0);
        let already = early.map(|e| e.uploaded).unwrap_or_default();
        self.store_outputs(video_id, &out, &already).await?;
        let path = |p: &Path| p.to_string_lossy().replace('\\', "/");
        Ok(Some(Playback::of(
            &packaged,
            info.has_audio,
            Some(path(&thumbs.poster)),
            Some(path(&thumbs.storyboard)),
            Some(path(&thumbs.storyboard_vtt)),
        )))
    }

    /// The configured ladder, sized for `info` (never upscaled).
    pub(super) fn rungs_for(&self, info: &pipeline::SourceInfo) -> Vec<pipeline::Rung> {
        let specs: Vec<RungSpec> = self
            .config
            .rungs
            .iter()
            .map(|r| RungSpec {
                name: r.name.clone(),
                height: r.height,
                video_bitrate_kbps: r.video_bitrate_kbps,
                max_bitrate_kbps: r.max_bitrate_kbps,
            })
            .collect();
        pipeline::ladder(info, &specs)
    }

    pub(super) fn encode_settings(&self) -> EncodeSettings {
        EncodeSettings {
            preset: self.config.preset.clone(),
            segment_seconds: self.config.segment_seconds,
            audio_bitrate_kbps: self.config.audio_bitrate_kbps,
            timeout: Duration::from_secs(self.config.job_timeout_seconds),
        }
    }

    /// ffmpeg and ffprobe with their limits: `ffmpeg_memory_bytes`, and `ffmpeg_cpu_seconds`
    /// (unset: the job's time limit on every CPU).
    pub(super) fn tools(&self) -> Tools {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let cpu_seconds = match self.config.ffmpeg_cpu_seconds {
            0 => self.config.job_timeout_seconds.saturating_mul(cpus),
            n => n,
        };
        Tools {
            ffmpeg: self.config.ffmpeg.clone().into(),
            ffprobe: self.config.ffprobe.clone().into(),
            limits: pipeline::Limits { memory_bytes: self.config.ffmpeg_memory_bytes, cpu_seconds },
        }
    }

    /// Poster, stills and storyboard from the renditions just made (no third decode of the
    /// source); from the source if that fails.
    async fn thumbnails(
        &self,
        tools: &Tools,
        source: &Path,
        info: &pipeline::SourceInfo,
        out: &Path,
        packaged: &pipeline::Packaged,
    ) -> Result<pipeline::Thumbnails, JobError> {
        if let (Some(top), Some(low)) = (packaged.renditions.first(), packaged.renditions.last()) {
            let rendition = pipeline::SourceInfo { video_stream: 0, ..info.clone() };
            // Beside `out`, never in it: these are scratch files, not outputs.
            let scratch = out.parent().unwrap_or(out);
            let joined = async {
                let pictures = join_fragments(out, &top.name, &scratch.join("pictures.mp4")).await?;
                let tiles = join_fragments(out, &low.name, &scratch.join("tiles.mp4")).await?;
                Ok::<_, std::io::Error>((pictures, tiles))
            };
            match joined.await {
                Ok((pictures, tiles)) => {
                    let (pictures, tiles) = (pipeline::Input::File(pictures), pipeline::Input::File(tiles));
                    match pipeline::thumbnails_from(tools, &pictures, &tiles, &rendition, out).await {
                        Ok(t) => return Ok(t),
                        Err(e) => tracing::warn!(error = %e, "thumbnails from the renditions failed; from the source"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, "joining a rendition failed; thumbnails from the source"),
            }
        }
        Ok(pipeline::thumbnails(tools, &pipeline::Input::file(source), info, out).await?)
    }

    /// Writes the source's objects, one after the other, into `to` (one object, or the
    /// partial uploads of a concatenation in order).
    pub(super) async fn download(&self, keys: &[String], to: &Path) -> Result<(), JobError> {
        use futures::StreamExt as _;
        use tokio::io::AsyncWriteExt as _;
        let mut file = tokio::fs::File::create(to).await.map_err(|e| transient("writing the source")(e.to_string()))?;
        for key in keys {
            let mut stream =
                self.storage.get_stream(key).await.map_err(|e| transient("reading the source")(e.to_string()))?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| transient("reading the source")(e.to_string()))?;
                file.write_all(&chunk).await.map_err(|e| transient("writing the source")(e.to_string()))?;
            }
        }
        file.flush().await.map_err(|e| transient("writing the source")(e.to_string()))?;
        Ok(())
    }

    /// Uploads every output under the video's media prefix (same keys on every run), then
    /// removes keys a previous run left that this one did not write.
    async fn store_outputs(&self, video_id: &str, out: &Path, already: &HashSet<String>) -> Result<(), JobError> {
        let prefix = media_prefix(video_id);
        let mut written = HashSet::new();
        let mut stack = vec![out.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let mut entries =
                tokio::fs::read_dir(&dir).await.map_err(|e| transient("listing outputs")(e.to_string()))?;
            while let Some(entry) =
                entries.next_entry().await.map_err(|e| transient("listing outputs")(e.to_string()))?
            {
                let path = entry.path();
                if entry.file_type().await.map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(path);
                    continue;
                }
                let relative = path.strip_prefix(out).expect("under out").to_string_lossy().replace('\\', "/");
                let key = format!("{prefix}/{relative}");
                // Segments published early are final; playlists are rewritten at the end.
                if !already.contains(&relative) {
                    let data =
                        tokio::fs::read(&path).await.map_err(|e| transient("reading an output")(e.to_string()))?;
                    self.storage
                        .put(&key, data.into())
                        .await
                        .map_err(|e| transient("storing an output")(e.to_string()))?;
                }
                written.insert(key);
            }
        }
        for stale in self.storage.list(&prefix).await.map_err(|e| transient("listing stored outputs")(e.to_string()))? {
            if !written.contains(&stale) {
                self.storage.delete(&stale).await.map_err(|e| transient("removing a stale output")(e.to_string()))?;
            }
        }
        Ok(())
    }
}

/// One rendition as a single fragmented MP4 (its init segment, then its media segments in
/// playlist order): a file ffmpeg seeks in cheaply, unlike 5.1's HLS reader over fMP4.
async fn join_fragments(out: &Path, rung: &str, to: &Path) -> std::io::Result<std::path::PathBuf> {
    use tokio::io::AsyncWriteExt as _;
    let playlist = hls::parse_media(&tokio::fs::read_to_string(out.join(rung).join(pipeline::PLAYLIST)).await?);
    let mut file = tokio::fs::File::create(to).await?;
    for name in playlist.init.iter().chain(playlist.segments.iter().map(|(uri, _)| uri)) {
        file.write_all(&tokio::fs::read(out.join(rung).join(name)).await?).await?;
    }
    file.flush().await?;
    Ok(to.to_path_buf())
}
