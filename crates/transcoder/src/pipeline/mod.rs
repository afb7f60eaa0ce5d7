//! The media-processing core of the transcoder: no HTTP, database or bus, only files and the
//! ffmpeg/ffprobe binaries.
//!
//! A worker downloads the source to a local file, then calls [`probe`] (validate, describe),
//! [`ladder`] (which renditions), [`encode`] (one ffmpeg process: one decode, every rung, the
//! audio once, fMP4 segments shared by HLS and DASH) and [`thumbnails`], and uploads `out_dir`.
//!
//! Errors: [`MediaError::Invalid`] means the upload itself is unusable and carries a short reason
//! meant for the video's owner (never a server path); [`MediaError::Tool`] and
//! [`MediaError::Io`] are ours and worth a retry; [`MediaError::Cancelled`] follows the token.
//!
//! Layout of `out_dir` after `encode` and `thumbnails` (its names, the renditions' names and
//! the ladder's types are in `layout`, which every step imports and which imports none):
//! ```text
//! master.m3u8                      HLS master (variants, audio group)
//! manifest.mpd                     DASH, over the same segments
//! <rung>/index.m3u8                per rung: playlist, init segment, media segments
//! <rung>/init_<rung>.mp4
//! <rung>/seg_00000.m4s ...         numbered from 0
//! audio/index.m3u8, audio/init_audio.mp4, audio/seg_00000.m4s ...   (when the source has audio)
//! thumbs/poster.jpg, thumbs/still_1.jpg ..., thumbs/storyboard.jpg, thumbs/storyboard.vtt
//! ```

mod chunk;
mod dash;
mod encode;
mod failure;
pub(crate) mod hls;
mod input;
mod ladder;
mod layout;
mod package;
mod probe;
mod process;
mod progress;
mod sniff;
mod thumbs;

use std::path::PathBuf;

pub use chunk::{
    Segment, TrackSegments, assemble, encode_audio, encode_span, init_name, master_playlist, media_playlist, spans,
};
pub use encode::{EncodeSettings, Span, encode};
pub use hls::completed_segments;
pub use input::Input;
pub use ladder::{default_rungs, ladder};
pub use layout::{AUDIO, MANIFEST, MASTER, MAX_OUTPUT_FRAME_RATE, PLAYLIST, Rung, RungSpec, THUMBS, init_file};
pub use package::{Packaged, RenditionInfo, avc_codec};
pub use probe::{
    MAX_DIMENSION, MAX_DURATION_SECONDS, MAX_FRAME_RATE, MAX_PIXELS, MIN_DIMENSION, MIN_DURATION_SECONDS, SourceInfo,
    probe,
};
pub use progress::EncodeProgress;
pub use sniff::sniff;
pub use thumbs::{STILL_COUNT, Thumbnails, thumbnails, thumbnails_from};

/// Where the ffmpeg and ffprobe binaries are, and the limits every run of them gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    pub limits: Limits,
}

impl Default for Tools {
    /// Both from `PATH`, without limits.
    fn default() -> Self {
        Tools { ffmpeg: "ffmpeg".into(), ffprobe: "ffprobe".into(), limits: Limits::default() }
    }
}

/// Resource limits (setrlimit in the child before it runs the tool); 0 means none. A run
/// past one ends as `MediaError::Tool` naming the limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Address space (RLIMIT_AS), bytes: a decompression bomb gets ENOMEM, not the host's
    /// memory.
    pub memory_bytes: u64,
    /// CPU time of all its threads (RLIMIT_CPU), seconds: SIGXCPU, then SIGKILL.
    pub cpu_seconds: u64,
}

/// Why a media operation failed; see the module docs for who each variant is meant for.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The input is unusable; the reason is short, readable and safe to show to the owner.
    #[error("{0}")]
    Invalid(String),
    /// ffmpeg/ffprobe is missing, was killed, timed out, or failed for reasons of ours.
    #[error("media tool failed: {0}")]
    Tool(String),
    #[error("cancelled")]
    Cancelled,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl MediaError {
    /// Whether running the same job again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, MediaError::Tool(_) | MediaError::Io(_))
    }
}
