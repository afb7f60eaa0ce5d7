//! Reading what ffmpeg wrote after an encode: the master and media playlists (made VOD), the
//! init segments' timescales, segment sizes; then the DASH manifest and the list of files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::dash::{self, Kind, Track};
use super::hls::{self, MediaPlaylist};
use super::layout::{AUDIO, MANIFEST, MASTER, PLAYLIST, Rung, SEGMENT_PATTERN, output_frame_rate};
use super::{MediaError, SourceInfo};

/// One rendition as packaged. Paths are relative to `out_dir`. For the audio rendition width
/// and height are 0.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionInfo {
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// Bits per second, as the master playlist declares it (HLS: video plus audio, +10%).
    pub bandwidth: u64,
    /// RFC 6381 codec of this rendition alone, e.g. `avc1.64001f` or `mp4a.40.2`.
    pub codecs: String,
    pub playlist: PathBuf,
    pub init: PathBuf,
    pub segments: usize,
    pub duration_seconds: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Packaged {
    pub duration_seconds: f64,
    /// Highest first.
    pub renditions: Vec<RenditionInfo>,
    pub audio: Option<RenditionInfo>,
    /// `master.m3u8`.
    pub master: PathBuf,
    /// `manifest.mpd`.
    pub manifest: PathBuf,
    /// Every file written, relative to `out_dir`.
    pub files: Vec<PathBuf>,
}

/// Reads what ffmpeg wrote, writes `manifest.mpd`, and lists everything.
pub(crate) async fn package(source: &SourceInfo, rungs: &[Rung], out_dir: &Path) -> Result<Packaged, MediaError> {
    package_sized(source, rungs, out_dir, None).await
}

/// [`package`], with the media segments' sizes given (relative path → bytes) instead of read
/// from `out_dir`: an assembly has the playlists and init segments here, the segments stored.
pub(crate) async fn package_sized(
    source: &SourceInfo,
    rungs: &[Rung],
    out_dir: &Path,
    sizes: Option<&HashMap<PathBuf, u64>>,
) -> Result<Packaged, MediaError> {
    let corrupt = || MediaError::Invalid("the file is truncated or corrupt: no video could be decoded".into());
    let master_text = tokio::fs::read_to_string(out_dir.join(MASTER)).await.map_err(|_| corrupt())?;
    let variants = hls::parse_master(&master_text);
    let variant_of = |name: &str| variants.iter().find(|v| v.uri.split('/').next() == Some(name));
    let audio_codec = variant_of(AUDIO)
        .map(|v| v.codecs.clone())
        .or_else(|| variants.iter().flat_map(|v| v.codecs.split(',')).find(|c| is_audio(c)).map(str::to_string))
        .unwrap_or_else(|| "mp4a.40.2".into());

    let mut files = vec![PathBuf::from(MASTER), PathBuf::from(MANIFEST)];
    let mut renditions = Vec::new();
    let mut video_tracks = Vec::new();
    let (fps, _) = output_frame_rate(source);
    for r in rungs {
        let (playlist, media) = rendition(out_dir, &r.name).await?.ok_or_else(corrupt)?;
        let init_bytes = tokio::fs::read(out_dir.join(&r.name).join(playlist.init.as_deref().unwrap_or(""))).await?;
        let variant = variant_of(&r.name);
        let codecs = variant
            .and_then(|v| v.codecs.split(',').find(|c| !is_audio(c)).map(str::to_string))
            .or_else(|| avc_codec(&init_bytes))
            .unwrap_or_else(|| "avc1.640028".into());
        let (width, height) = variant.and_then(|v| v.resolution).unwrap_or((r.width, r.height));
        let track = track(
            out_dir,
            &r.name,
            &playlist,
            &init_bytes,
            &codecs,
            Kind::Video { width, height, frame_rate: dash::frame_rate(fps) },
            sizes,
        )
        .await?;
        files.extend(media.files.iter().cloned());
        renditions.push(RenditionInfo {
            bandwidth: variant.map(|v| v.bandwidth).filter(|b| *b > 0).unwrap_or(track.bandwidth),
            width,
            height,
            codecs,
            ..media.info
        });
        video_tracks.push(track);
    }
    let mut audio = None;
    let mut audio_track = None;
    if source.has_audio {
        let (playlist, media) = rendition(out_dir, AUDIO).await?.ok_or_else(corrupt)?;
        let init_bytes = tokio::fs::read(out_dir.join(AUDIO).join(playlist.init.as_deref().unwrap_or(""))).await?;
        let sample_rate = dash::media_timescale(&init_bytes).unwrap_or(48_000);
        let track = track(
            out_dir,
            AUDIO,
            &playlist,
            &init_bytes,
            &audio_codec,
            Kind::Audio { sample_rate, channels: 2 },
            sizes,
        )
        .await?;
        files.extend(media.files.iter().cloned());
        audio = Some(RenditionInfo {
            bandwidth: variant_of(AUDIO).map(|v| v.bandwidth).filter(|b| *b > 0).unwrap_or(track.bandwidth),
            codecs: audio_codec.clone(),
            ..media.info
        });
        audio_track = Some(track);
    }
    let duration_seconds = renditions.iter().chain(&audio).map(|r| r.duration_seconds).fold(0.0, f64::max);
    let mpd = dash::manifest(duration_seconds, &video_tracks, audio_track.as_ref());
    tokio::fs::write(out_dir.join(MANIFEST), mpd).await?;
    Ok(Packaged { duration_seconds, renditions, audio, master: MASTER.into(), manifest: MANIFEST.into(), files })
}

struct Media {
    info: RenditionInfo,
    files: Vec<PathBuf>,
}

/// A rendition's playlist and files; `None` when ffmpeg wrote no segment for it.
async fn rendition(out_dir: &Path, name: &str) -> Result<Option<(MediaPlaylist, Media)>, MediaError> {
    let Ok(text) = tokio::fs::read_to_string(out_dir.join(name).join(PLAYLIST)).await else {
        return Ok(None);
    };
    let playlist = hls::parse_media(&text);
    if text.contains(hls::EVENT) {
        let path = out_dir.join(name).join(PLAYLIST);
        let staged = out_dir.join(name).join("index.m3u8.vod");
        tokio::fs::write(&staged, text.replace(hls::EVENT, hls::VOD)).await?;
        tokio::fs::rename(&staged, &path).await?;
    }
    let Some(init) = playlist.init.clone().filter(|_| !playlist.segments.is_empty()) else {
        return Ok(None);
    };
    let dir = PathBuf::from(name);
    let mut files = vec![dir.join(PLAYLIST), dir.join(&init)];
    files.extend(playlist.segments.iter().map(|(uri, _)| dir.join(uri)));
    let info = RenditionInfo {
        name: name.to_string(),
        width: 0,
        height: 0,
        bandwidth: 0,
        codecs: String::new(),
        playlist: dir.join(PLAYLIST),
        init: dir.join(init),
        segments: playlist.segments.len(),
        duration_seconds: playlist.duration(),
    };
    Ok(Some((playlist, Media { info, files })))
}

/// The DASH view of one rendition: its timeline in its own timescale, and its peak bitrate
/// over one segment (what `bandwidth` promises with `minBufferTime` of one segment).
async fn track(
    out_dir: &Path,
    name: &str,
    playlist: &MediaPlaylist,
    init_bytes: &[u8],
    codecs: &str,
    kind: Kind,
    sizes: Option<&HashMap<PathBuf, u64>>,
) -> Result<Track, MediaError> {
    let timescale = dash::media_timescale(init_bytes).unwrap_or(90_000);
    let seconds: Vec<f64> = playlist.segments.iter().map(|(_, d)| *d).collect();
    let first = playlist.segments.first().map(|(uri, _)| uri.as_str()).unwrap_or_default();
    let start_number = first.trim_start_matches("seg_").trim_end_matches(".m4s").parse().unwrap_or(0);
    let mut bandwidth = 0u64;
    for (uri, d) in &playlist.segments {
        let size = match sizes {
            Some(sizes) => sizes.get(&Path::new(name).join(uri)).copied().unwrap_or(0),
            None => tokio::fs::metadata(out_dir.join(name).join(uri)).await?.len(),
        };
        if *d > 0.0 {
            bandwidth = bandwidth.max((size as f64 * 8.0 / d).ceil() as u64);
        }
    }
    Ok(Track {
        id: name.to_string(),
        init: format!("{name}/{}", playlist.init.as_deref().unwrap_or_default()),
        media: format!("{name}/{}", SEGMENT_PATTERN.replace("%05d", "$Number%05d$")),
        start_number,
        timescale,
        durations: dash::durations(&seconds, timescale),
        bandwidth: bandwidth.max(1),
        codecs: codecs.to_string(),
        kind,
    })
}

fn is_audio(codec: &str) -> bool {
    ["mp4a", "ac-3", "ec-3", "opus", "fLaC"].iter().any(|p| codec.starts_with(p))
}

/// `avc1.PPCCLL` from the init segment's `avcC` box, for a master playlist without CODECS.
pub fn avc_codec(init: &[u8]) -> Option<String> {
    let at = init.windows(4).position(|w| w == b"avcC")?;
    let b = init.get(at + 5..at + 8)?;
    Some(format!("avc1.{:02x}{:02x}{:02x}", b[0], b[1], b[2]))
}
