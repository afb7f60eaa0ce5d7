//! `ffprobe` of an upload, and the checks that turn an unusable one into a readable reason
//! before any encoding time is spent.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncReadExt as _;
use tokio_util::sync::CancellationToken;

use super::{Input, MediaError, Tools, failure, process, sniff};

/// Longer sources are refused (a declared duration this long is nearly always a broken header).
pub const MAX_DURATION_SECONDS: f64 = 12.0 * 3600.0;
/// Shorter sources are refused: a single frame is a picture, not a video.
pub const MIN_DURATION_SECONDS: f64 = 0.25;
/// Largest width or height accepted.
pub const MAX_DIMENSION: u32 = 8192;
/// Largest picture accepted (8K UHD).
pub const MAX_PIXELS: u64 = 8192 * 4320;
/// Smallest width or height accepted.
pub const MIN_DIMENSION: u32 = 16;
/// Highest frame rate believed (phones film 240 fps slow motion); above it the header is wrong.
pub const MAX_FRAME_RATE: f64 = 240.0;

const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// ffprobe's JSON for any real file is a few KiB; more means a pathological stream count.
const MAX_PROBE_OUTPUT: usize = 4 << 20;

/// What the worker needs to know about a source. `width`/`height` are the display size: the
/// sample aspect ratio and the rotation are applied.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceInfo {
    pub duration_seconds: f64,
    pub width: u32,
    pub height: u32,
    /// Rotation from the display matrix, normalised to 0, 90, 180 or 270.
    pub rotation: i32,
    pub frame_rate: f64,
    pub video_codec: String,
    pub has_audio: bool,
    /// From the magic bytes when recognised (see [`sniff`]), else ffprobe's first format name.
    pub container: String,
    /// ffprobe's demuxer for the file (its first name, `mov`, `matroska`): a part that reads
    /// the source over HTTP forces it. Empty in records of older versions.
    #[serde(default)]
    pub demuxer: String,
    pub size_bytes: u64,
    /// ffprobe's index of the video stream to encode (a cover picture is never chosen).
    pub video_stream: usize,
    /// ffprobe's index of the audio stream to encode, if any can be decoded.
    pub audio_stream: Option<usize>,
}

/// Probes and validates `input`; `Invalid` carries the reason to show the owner.
pub async fn probe(tools: &Tools, input: &Path) -> Result<SourceInfo, MediaError> {
    let size = tokio::fs::metadata(input).await?.len();
    if size == 0 {
        return Err(MediaError::Invalid("the file is empty".into()));
    }
    let mut head = Vec::with_capacity(512);
    tokio::fs::File::open(input).await?.take(512).read_to_end(&mut head).await?;
    if let Some(reason) = refuse_by_content(&head) {
        return Err(MediaError::Invalid(reason.into()));
    }

    let args: Vec<OsString> = ["-v", "error", "-print_format", "json", "-show_format", "-show_streams"]
        .iter()
        .map(OsString::from)
        .chain(Input::file(input).args())
        .collect();
    let mut json = String::new();
    let mut overflow = false;
    let done = process::run(&tools.ffprobe, tools.limits, &args, PROBE_TIMEOUT, &CancellationToken::new(), |line| {
        if json.len() + line.len() < MAX_PROBE_OUTPUT {
            json.push_str(line);
            json.push('\n');
        } else {
            overflow = true;
        }
    })
    .await?;
    if !done.status.success() {
        return Err(failure::judge(
            "ffprobe",
            done.status,
            &done.stderr,
            input,
            "not a video file or the file is corrupt",
        ));
    }
    if overflow {
        return Err(MediaError::Invalid("not a video file: far too many streams".into()));
    }
    let report: Report = serde_json::from_str(&json)
        .map_err(|e| MediaError::Tool(format!("ffprobe printed JSON we cannot read: {e}")))?;
    let decodable = decodable_codecs(&tools.ffmpeg).await?;
    validate(&report, sniff(&head), size, &|codec| decodable.contains(codec)).map_err(MediaError::Invalid)
}

/// Playlists and manifests make ffmpeg open the files they name (local ones: the protocol
/// whitelist stops the rest). They are refused before ffprobe reads them; the format check in
/// [`validate`] is the backstop.
fn refuse_by_content(head: &[u8]) -> Option<&'static str> {
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let text = &text[text.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(text.len())..];
    if text.starts_with(b"#EXTM3U") || text.starts_with(b"ffconcat version") {
        return Some("playlists are not accepted: upload the video file itself");
    }
    if text.starts_with(b"<") {
        return Some("not a video file (it is an HTML or XML document)");
    }
    None
}

#[derive(Debug, Default, Deserialize)]
struct Report {
    #[serde(default)]
    streams: Vec<Stream>,
    #[serde(default)]
    format: Format,
}

#[derive(Debug, Default, Deserialize)]
struct Format {
    format_name: Option<String>,
    duration: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Stream {
    index: usize,
    codec_type: Option<String>,
    codec_name: Option<String>,
    codec_tag_string: Option<String>,
    width: Option<i64>,
    height: Option<i64>,
    sample_aspect_ratio: Option<String>,
    r_frame_rate: Option<String>,
    avg_frame_rate: Option<String>,
    duration: Option<String>,
    nb_frames: Option<String>,
    // Values kept loose: a surprising type in a field we do not need must not fail the probe.
    #[serde(default)]
    disposition: HashMap<String, serde_json::Value>,
    #[serde(default)]
    tags: HashMap<String, serde_json::Value>,
    #[serde(default)]
    side_data_list: Vec<serde_json::Value>,
}

impl Stream {
    fn kind(&self) -> &str {
        self.codec_type.as_deref().unwrap_or("")
    }
    fn is_cover(&self) -> bool {
        self.disposition.get("attached_pic").and_then(serde_json::Value::as_i64) == Some(1)
    }
    fn codec(&self) -> Option<&str> {
        self.codec_name.as_deref().filter(|c| !c.is_empty() && *c != "none" && *c != "unknown")
    }
}

fn validate(
    report: &Report,
    sniffed: Option<&'static str>,
    size: u64,
    decodable: &dyn Fn(&str) -> bool,
) -> Result<SourceInfo, String> {
    let format = report.format.format_name.as_deref().unwrap_or("");
    if format == "image2" || format.ends_with("_pipe") {
        return Err("this is a picture, not a video".into());
    }
    if format == "tty" {
        return Err("not a video file (it looks like text)".into());
    }
    if ["hls", "dash", "concat", "imf"].contains(&format) {
        return Err("playlists are not accepted: upload the video file itself".into());
    }
    let Some(video) = report.streams.iter().find(|s| s.kind() == "video" && !s.is_cover()) else {
        return Err(match report.streams.iter().map(Stream::kind).collect::<HashSet<_>>() {
            k if k.contains("audio") => "no video stream (audio-only file)".into(),
            k if k.contains("subtitle") => "no video stream (the file holds only subtitles)".into(),
            k if k.contains("data") || k.contains("attachment") => "no video stream (only data tracks)".into(),
            _ => "not a video file: it holds no audio or video".into(),
        });
    };
    let codec = match video.codec() {
        Some(c) if decodable(c) => c,
        Some(c) => return Err(format!("unsupported video codec {c}")),
        None => {
            let tag = video.codec_tag_string.as_deref().filter(|t| t.chars().all(|c| c.is_ascii_alphanumeric()));
            return Err(match tag {
                Some(t) => format!("unsupported video codec {t}"),
                None => "unsupported video codec".into(),
            });
        }
    };
    let dim = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    let (w, h) = (dim(video.width), dim(video.height));
    if w == 0 || h == 0 {
        return Err("the video has no picture size: the file is corrupt".into());
    }
    if w > MAX_DIMENSION || h > MAX_DIMENSION || u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(format!("video is {w}x{h}, larger than {MAX_DIMENSION}x{MAX_DIMENSION} or 8K"));
    }
    if w < MIN_DIMENSION || h < MIN_DIMENSION {
        return Err(format!("video is {w}x{h}, smaller than {MIN_DIMENSION}x{MIN_DIMENSION}"));
    }
    if video.nb_frames.as_deref() == Some("0") {
        return Err("the video has no frames".into());
    }
    let duration = [report.format.duration.as_deref(), video.duration.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(|d| d.parse::<f64>().ok())
        .find(|d| d.is_finite() && *d > 0.0);
    let duration = match duration {
        None => return Err("duration is zero or unknown".into()),
        Some(d) if d > MAX_DURATION_SECONDS => {
            return Err(format!("the video claims to last {:.0} hours, more than 12", d / 3600.0));
        }
        Some(d) if d < MIN_DURATION_SECONDS => return Err(format!("the video is too short ({d:.2} s)")),
        Some(d) => d,
    };
    let frame_rate = [video.avg_frame_rate.as_deref(), video.r_frame_rate.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(rational)
        .find(|r| *r >= 0.1 && *r <= MAX_FRAME_RATE)
        .ok_or_else(|| "the video's frame rate is missing or absurd".to_string())?;

    let rotation = rotation(video);
    let (mut dw, mut dh) = (f64::from(w), f64::from(h));
    if let Some(sar) = video.sample_aspect_ratio.as_deref().and_then(rational).filter(|r| *r > 0.1 && *r < 10.0) {
        dw *= sar;
    }
    if rotation % 180 == 90 {
        std::mem::swap(&mut dw, &mut dh);
    }
    let audio = report.streams.iter().find(|s| s.kind() == "audio" && s.codec().is_some_and(decodable));
    Ok(SourceInfo {
        duration_seconds: duration,
        width: dw.round() as u32,
        height: dh.round() as u32,
        rotation,
        frame_rate,
        video_codec: codec.to_string(),
        has_audio: audio.is_some(),
        container: sniffed.map(str::to_string).unwrap_or_else(|| format.split(',').next().unwrap_or("").to_string()),
        demuxer: format.split(',').next().unwrap_or("").to_string(),
        size_bytes: size,
        video_stream: video.index,
        audio_stream: audio.map(|a| a.index),
    })
}

/// "30000/1001" → 29.97; "0/0" and junk → None.
fn rational(text: &str) -> Option<f64> {
    let (n, d) = text.split_once([':', '/']).unwrap_or((text, "1"));
    let (n, d) = (n.trim().parse::<f64>().ok()?, d.trim().parse::<f64>().ok()?);
    (d != 0.0 && n.is_finite() && d.is_finite()).then(|| n / d).filter(|r| *r > 0.0 && r.is_finite())
}

fn rotation(video: &Stream) -> i32 {
    let from_matrix = video.side_data_list.iter().find_map(|d| d.get("rotation")?.as_f64());
    let from_tag = video.tags.get("rotate").and_then(|r| r.as_str()?.parse::<f64>().ok());
    let degrees = from_matrix.or(from_tag).unwrap_or(0.0);
    (((degrees / 90.0).round() as i32) * 90).rem_euclid(360)
}

/// Codec names this ffmpeg can decode (`ffmpeg -codecs`, flag D), asked once per binary.
async fn decodable_codecs(ffmpeg: &Path) -> Result<Arc<HashSet<String>>, MediaError> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<HashSet<String>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(known) = cache.lock().expect("codec cache").get(ffmpeg) {
        return Ok(known.clone());
    }
    let mut codecs = HashSet::new();
    let args: Vec<OsString> = ["-hide_banner", "-codecs"].iter().map(OsString::from).collect();
    let done =
        process::run(ffmpeg, super::Limits::default(), &args, PROBE_TIMEOUT, &CancellationToken::new(), |line| {
            // " DEV.LS h264                 H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10 (decoders: …)"
            let mut words = line.split_whitespace();
            if let (Some(flags), Some(name)) = (words.next(), words.next())
                && flags.len() == 6
                && flags.starts_with('D')
            {
                codecs.insert(name.to_string());
            }
        })
        .await?;
    if !done.status.success() || codecs.is_empty() {
        return Err(MediaError::Tool(format!("`{} -codecs` failed ({})", ffmpeg.display(), done.status)));
    }
    let codecs = Arc::new(codecs);
    cache.lock().expect("codec cache").insert(ffmpeg.to_path_buf(), codecs.clone());
    Ok(codecs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(json: &str) -> Report {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_cover_picture_is_not_a_video() {
        let r = report(
            r#"{"streams":[{"index":0,"codec_type":"audio","codec_name":"mp3"},
                {"index":1,"codec_type":"video","codec_name":"mjpeg","width":320,"height":240,
                 "disposition":{"attached_pic":1}}],"format":{"format_name":"mp3","duration":"2.0"}}"#,
        );
        assert_eq!(validate(&r, None, 10, &|_| true).unwrap_err(), "no video stream (audio-only file)");
    }

    #[test]
    fn anamorphic_and_rotated_sources_report_their_display_size() {
        let r = report(
            r#"{"streams":[{"index":0,"codec_type":"video","codec_name":"h264","width":720,"height":576,
                "sample_aspect_ratio":"16:15","avg_frame_rate":"25/1",
                "side_data_list":[{"side_data_type":"Display Matrix","rotation":-90}]}],
                "format":{"format_name":"mov,mp4,m4a,3gp,3g2,mj2","duration":"5.0"}}"#,
        );
        let info = validate(&r, Some("mp4"), 10, &|_| true).unwrap();
        assert_eq!((info.width, info.height, info.rotation), (576, 768, 270));
        assert_eq!(info.frame_rate, 25.0);
        assert!(!info.has_audio);
    }

    #[test]
    fn rationals_reject_zero_and_junk() {
        assert_eq!(rational("0/0"), None);
        assert_eq!(rational("N/A"), None);
        assert!((rational("30000/1001").unwrap() - 29.97).abs() < 0.01);
    }
}
