//! The layout of an encode's output, shared by every step that writes or reads it (`encode`
//! writes it through ffmpeg, `package` and `hls` read it back, `thumbs` adds to it): file and
//! directory names, the renditions' names and the ladder's types. It imports no other step,
//! so none of them imports another for a name.

use std::path::{Path, PathBuf};

use super::SourceInfo;

/// The HLS master playlist, at the top of `out_dir`.
pub const MASTER: &str = "master.m3u8";
/// The DASH manifest, at the top of `out_dir`, over the same segments.
pub const MANIFEST: &str = "manifest.mpd";
/// Each rendition's media playlist, in the rendition's directory.
pub const PLAYLIST: &str = "index.m3u8";
/// ffmpeg's segment names; DASH's template says the same as `seg_$Number%05d$.m4s`.
pub(crate) const SEGMENT_PATTERN: &str = "seg_%05d.m4s";
/// The audio rendition's name (directory and var-stream name).
pub const AUDIO: &str = "audio";
/// The thumbnails' directory (poster, stills, storyboard): no rendition may be named so.
pub const THUMBS: &str = "thumbs";

/// The init segment ffmpeg writes for `rung`, relative to `out_dir` (it names them after the
/// rendition: `720p/init_720p.mp4`).
pub fn init_file(rung: &str) -> PathBuf {
    Path::new(rung).join(format!("init_{rung}.mp4"))
}

/// Above this the output is decimated (120 → 60, 240 → 60, 100 → 50): phones' slow-motion
/// rates would double the encoding cost for frames nobody sees at normal speed.
pub const MAX_OUTPUT_FRAME_RATE: f64 = 60.0;

/// Output frame rate: the source's, decimated below [`MAX_OUTPUT_FRAME_RATE`].
pub(crate) fn output_frame_rate(source: &SourceInfo) -> (f64, bool) {
    if source.frame_rate <= MAX_OUTPUT_FRAME_RATE {
        return (source.frame_rate, false);
    }
    let divisor = (source.frame_rate / MAX_OUTPUT_FRAME_RATE).ceil();
    (source.frame_rate / divisor, true)
}

/// A rung of the configured ladder: `height` is the short side ("720p" is 1280x720 landscape,
/// 720x1280 portrait).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RungSpec {
    pub name: String,
    pub height: u32,
    pub video_bitrate_kbps: u32,
    pub max_bitrate_kbps: u32,
}

/// A rendition to encode, sized for one source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rung {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub video_bitrate_kbps: u32,
    pub max_bitrate_kbps: u32,
}
