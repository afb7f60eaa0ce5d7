//! Poster, stills and a storyboard sprite with its WebVTT index. Two ffmpeg runs: the pictures
//! by fast seeks (one input per seek, so only a GOP is decoded each), the sprite by one pass.
//! To cancel, drop the future: the children are killed.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::input::Input;
use super::layout::THUMBS;
use super::{MediaError, SourceInfo, Tools, failure, process};

pub const STILL_COUNT: usize = 3;
/// The poster is at most this wide.
pub const POSTER_MAX_WIDTH: u32 = 1280;
/// Storyboard tiles have this long side (160x90 for 16:9, 90x160 portrait).
pub const TILE_LONG_SIDE: u32 = 160;
pub const MAX_TILES: u32 = 100;
const COLUMNS: u32 = 10;
/// From this sampling interval on, the storyboard decodes keyframes only: a tile every few
/// seconds of a long video does not need every frame decoded.
const KEYFRAMES_ONLY_FROM_SECONDS: u32 = 5;

/// Paths are relative to `out_dir`.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnails {
    pub poster: PathBuf,
    pub stills: Vec<PathBuf>,
    pub storyboard: PathBuf,
    pub storyboard_vtt: PathBuf,
    /// Seconds between storyboard tiles.
    pub storyboard_interval_seconds: u32,
    pub tile_width: u32,
    pub tile_height: u32,
    pub tiles: u32,
}

pub async fn thumbnails(
    tools: &Tools,
    input: &Input,
    source: &SourceInfo,
    out_dir: &Path,
) -> Result<Thumbnails, MediaError> {
    thumbnails_from(tools, input, input, source, out_dir).await
}

/// [`thumbnails`] with the poster and stills taken from `pictures` and the storyboard from
/// `tiles`: after an encode, the top rendition (keyframes every segment: cheap seeks) and the
/// lowest (a tenth of the pixels to decode), instead of decoding the source once more. Both
/// are read as the video stream 0 of a file of `source`'s display size and duration.
pub async fn thumbnails_from(
    tools: &Tools,
    pictures: &Input,
    tiles: &Input,
    source: &SourceInfo,
    out_dir: &Path,
) -> Result<Thumbnails, MediaError> {
    let input = pictures;
    let dir = PathBuf::from(THUMBS);
    tokio::fs::create_dir_all(out_dir.join(&dir)).await?;
    let d = source.duration_seconds;

    let poster = dir.join("poster.jpg");
    let stills: Vec<PathBuf> = (1..=STILL_COUNT).map(|i| dir.join(format!("still_{i}.jpg"))).collect();
    let mut shots = vec![(d * 0.10, poster.clone())];
    shots.extend(stills.iter().enumerate().map(|(i, p)| (d * (i + 1) as f64 / (STILL_COUNT + 1) as f64, p.clone())));
    let pw = POSTER_MAX_WIDTH.min(source.width);
    let (pw, ph) = (even(f64::from(pw)), even(f64::from(pw) * f64::from(source.height) / f64::from(source.width)));
    grab(tools, input, source, out_dir, &shots, (pw, ph)).await?;
    // A seek past the last frame (audio longer than video) writes nothing: take the first frame.
    let mut missing = Vec::new();
    for (_, path) in &shots {
        if !tokio::fs::try_exists(out_dir.join(path)).await? {
            missing.push((0.0, path.clone()));
        }
    }
    if !missing.is_empty() {
        grab(tools, input, source, out_dir, &missing, (pw, ph)).await?;
        for (_, path) in &missing {
            if !tokio::fs::try_exists(out_dir.join(path)).await? {
                return Err(MediaError::Invalid("the file is corrupt: no picture could be decoded".into()));
            }
        }
    }

    let board = storyboard(tools, tiles, source, out_dir, &dir).await?;
    Ok(Thumbnails { poster, stills, ..board })
}

/// One ffmpeg, one input per seek (`-ss` before `-i`: keyframe seek, then decode to the time).
async fn grab(
    tools: &Tools,
    input: &Input,
    source: &SourceInfo,
    out_dir: &Path,
    shots: &[(f64, PathBuf)],
    (w, h): (u32, u32),
) -> Result<(), MediaError> {
    let mut args: Vec<OsString> = common_args();
    for (t, _) in shots {
        args.extend(["-ss".into(), format!("{t:.3}").into()]);
        args.extend(input.args());
    }
    for (k, (_, path)) in shots.iter().enumerate() {
        for s in [
            "-map".to_string(),
            format!("{k}:{}", source.video_stream),
            "-vf".into(),
            format!("scale={w}:{h},setsar=1"),
            "-frames:v".into(),
            "1".into(),
            "-update".into(),
            "1".into(),
            "-q:v".into(),
            "3".into(),
        ] {
            args.push(s.into());
        }
        args.push(out_dir.join(path).into());
    }
    run(tools, input, &args, Duration::from_secs(120)).await
}

async fn storyboard(
    tools: &Tools,
    input: &Input,
    source: &SourceInfo,
    out_dir: &Path,
    dir: &Path,
) -> Result<Thumbnails, MediaError> {
    let d = source.duration_seconds;
    let interval = ((d / f64::from(MAX_TILES)).ceil() as u32).max(1);
    let tiles = ((d / f64::from(interval)).ceil() as u32).clamp(1, MAX_TILES);
    let (w, h) = (f64::from(source.width), f64::from(source.height));
    let long = f64::from(TILE_LONG_SIDE);
    let (tw, th) = if w >= h { (TILE_LONG_SIDE, even(long * h / w)) } else { (even(long * w / h), TILE_LONG_SIDE) };
    let columns = tiles.min(COLUMNS);
    let rows = tiles.div_ceil(columns);

    let sprite = dir.join("storyboard.jpg");
    let mut args = common_args();
    if interval >= KEYFRAMES_ONLY_FROM_SECONDS {
        args.extend(["-skip_frame", "nokey"].map(OsString::from));
    }
    args.extend(input.args());
    for s in [
        "-map".to_string(),
        format!("0:{}", source.video_stream),
        "-vf".into(),
        format!("fps=1/{interval}:round=down,scale={tw}:{th},setsar=1,tile={columns}x{rows}"),
        "-frames:v".into(),
        "1".into(),
        "-update".into(),
        "1".into(),
        "-q:v".into(),
        "4".into(),
    ] {
        args.push(s.into());
    }
    args.push(out_dir.join(&sprite).into());
    run(tools, input, &args, Duration::from_secs(120) + Duration::from_secs_f64(d * 0.5)).await?;
    if !tokio::fs::try_exists(out_dir.join(&sprite)).await? {
        return Err(MediaError::Invalid("the file is corrupt: no picture could be decoded".into()));
    }

    let vtt = dir.join("storyboard.vtt");
    let mut text = String::from("WEBVTT\n");
    for k in 0..tiles {
        let start = f64::from(k * interval);
        let end = (f64::from((k + 1) * interval)).min(d);
        let (x, y) = ((k % columns) * tw, (k / columns) * th);
        let _ = write!(text, "\n{} --> {}\nstoryboard.jpg#xywh={x},{y},{tw},{th}\n", timestamp(start), timestamp(end));
    }
    tokio::fs::write(out_dir.join(&vtt), text).await?;
    Ok(Thumbnails {
        poster: PathBuf::new(),
        stills: Vec::new(),
        storyboard: sprite,
        storyboard_vtt: vtt,
        storyboard_interval_seconds: interval,
        tile_width: tw,
        tile_height: th,
        tiles,
    })
}

fn common_args() -> Vec<OsString> {
    ["-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y"].map(OsString::from).to_vec()
}

async fn run(tools: &Tools, input: &Input, args: &[OsString], timeout: Duration) -> Result<(), MediaError> {
    let done = process::run(&tools.ffmpeg, tools.limits, args, timeout, &CancellationToken::new(), |_| {}).await?;
    if !done.status.success() {
        return Err(failure::judge("ffmpeg", done.status, &done.stderr, input, "the file is truncated or corrupt"));
    }
    Ok(())
}

fn even(x: f64) -> u32 {
    (((x / 2.0).round() as u32) * 2).max(2)
}

/// WebVTT `HH:MM:SS.mmm`.
fn timestamp(seconds: f64) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtt_timestamps_have_hours_and_milliseconds() {
        assert_eq!(timestamp(0.0), "00:00:00.000");
        assert_eq!(timestamp(3723.5), "01:02:03.500");
    }
}
