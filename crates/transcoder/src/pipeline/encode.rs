//! The ladder in one ffmpeg process: one decode, a `split` to every rung, the audio encoded
//! once as its own rendition, keyframes aligned to the segment length across rungs, fMP4 (CMAF)
//! segments under HLS playlists; then a DASH manifest over the same segments.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::input::Input;
use super::layout::{AUDIO, MASTER, Rung, SEGMENT_PATTERN, THUMBS, output_frame_rate};
use super::package::{Packaged, package};
use super::progress::{EncodeProgress, ProgressParser};
use super::{MediaError, SourceInfo, Tools, failure, process};

#[derive(Debug, Clone, PartialEq)]
pub struct EncodeSettings {
    /// x264 preset.
    pub preset: String,
    /// Segment length; keyframes are forced on every multiple of it.
    pub segment_seconds: u32,
    pub audio_bitrate_kbps: u32,
    /// For the whole ffmpeg run; past it the child is killed and `Tool("… timed out …")`.
    pub timeout: Duration,
}

impl Default for EncodeSettings {
    fn default() -> Self {
        EncodeSettings {
            preset: "veryfast".into(),
            segment_seconds: 4,
            audio_bitrate_kbps: 128,
            timeout: Duration::from_secs(2 * 3600),
        }
    }
}

/// Encodes `rungs` of `input` into `out_dir` (see the module docs for the layout). `out_dir`
/// should be empty. Progress is reported about twice a second and once at 100%.
#[allow(clippy::too_many_arguments)]
pub async fn encode(
    tools: &Tools,
    input: &Path,
    source: &SourceInfo,
    rungs: &[Rung],
    settings: &EncodeSettings,
    out_dir: &Path,
    mut on_progress: impl FnMut(EncodeProgress) + Send,
    cancel: CancellationToken,
) -> Result<Packaged, MediaError> {
    check_rungs(rungs)?;
    if out_dir.to_string_lossy().contains('%') {
        return Err(MediaError::Tool("the output directory's path must not contain '%' (ffmpeg patterns)".into()));
    }
    tokio::fs::create_dir_all(out_dir).await?;
    let args = command(&Input::file(input), source, rungs, settings, out_dir, None);
    let mut parser = ProgressParser::new(source.duration_seconds);
    // A container that claims less than its streams hold would be encoded past what it said
    // (and, claiming seconds of an endless stream, for ever): stopped once the output passes
    // the claim by more than the slack.
    let most = most_decoded_seconds(source.duration_seconds);
    let overran = cancel.child_token();
    let done = process::run(&tools.ffmpeg, tools.limits, &args, settings.timeout, &overran, |line| {
        if let Some(report) = parser.line(line) {
            if report.out_time_seconds > most {
                overran.cancel();
            }
            on_progress(report);
        }
    })
    .await;
    let done = match done {
        Err(MediaError::Cancelled) if !cancel.is_cancelled() => {
            return Err(duration_lie(source.duration_seconds, most));
        }
        other => other?,
    };
    if !done.status.success() {
        return Err(failure::judge("ffmpeg", done.status, &done.stderr, input, "the file is truncated or corrupt"));
    }
    let packaged = package(source, rungs, out_dir).await?;

    let expected_packets = source.duration_seconds * (source.frame_rate + if source.has_audio { 47.0 } else { 0.0 });
    if done.stderr.decode_errors as f64 > 10.0 + 0.05 * expected_packets {
        let example = done.stderr.first_decode_error.as_deref().map(|l| failure::clean(l, input)).unwrap_or_default();
        return Err(MediaError::Invalid(format!(
            "the file is corrupt: {} parts of it could not be decoded ({example})",
            done.stderr.decode_errors
        )));
    }
    if packaged.duration_seconds < source.duration_seconds * 0.9
        && source.duration_seconds - packaged.duration_seconds > 1.0
    {
        return Err(MediaError::Invalid(format!(
            "the file is truncated or corrupt: only {:.1} s of its {:.1} s could be decoded",
            packaged.duration_seconds, source.duration_seconds
        )));
    }
    if packaged.duration_seconds > most {
        return Err(duration_lie(source.duration_seconds, packaged.duration_seconds));
    }
    on_progress(parser.done());
    Ok(packaged)
}

/// The longest decode a probed duration allows: 10% or 2 s more, whichever is larger.
fn most_decoded_seconds(probed: f64) -> f64 {
    probed + (probed * 0.1).max(2.0)
}

fn duration_lie(probed: f64, decoded: f64) -> MediaError {
    MediaError::Invalid(format!(
        "the file's duration is wrong: its container says {probed:.1} s, but its streams hold more than {decoded:.1} s"
    ))
}

fn check_rungs(rungs: &[Rung]) -> Result<(), MediaError> {
    let bad = |why: String| Err(MediaError::Tool(format!("bad ladder: {why}")));
    if rungs.is_empty() {
        return bad("no rungs".into());
    }
    for (i, r) in rungs.iter().enumerate() {
        let name_ok = !r.name.is_empty() && r.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok || r.name == AUDIO || r.name == THUMBS {
            return bad(format!("rung name {:?} is not a plain name", r.name));
        }
        if rungs[..i].iter().any(|o| o.name == r.name) {
            return bad(format!("rung name {} twice", r.name));
        }
        if r.width < 2 || r.height < 2 || r.width % 2 == 1 || r.height % 2 == 1 {
            return bad(format!("rung {} is {}x{}; sizes must be even", r.name, r.width, r.height));
        }
    }
    Ok(())
}

/// A part of the source encoded on its own (segment-parallel jobs): from `start_seconds` (a
/// multiple of the segment length) for `duration_seconds`, video only, its segments numbered
/// from `first_segment` as in the whole-file encode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub start_seconds: f64,
    pub duration_seconds: f64,
    pub first_segment: u64,
}

pub(crate) fn command(
    input: &Input,
    source: &SourceInfo,
    rungs: &[Rung],
    settings: &EncodeSettings,
    out_dir: &Path,
    span: Option<&Span>,
) -> Vec<OsString> {
    let segment = settings.segment_seconds.max(1);
    let (fps, decimate) = output_frame_rate(source);
    let gop = ((fps * f64::from(segment)).round() as u64).max(1);

    // [0:1]fps=60,split=3[s0][s1][s2];[s0]scale=1280:720,setsar=1[v0];…
    let mut graph = format!("[0:{}]", source.video_stream);
    if decimate {
        let _ = write!(graph, "fps={fps:.6},");
    }
    if rungs.len() == 1 {
        let r = &rungs[0];
        let _ = write!(graph, "scale={}:{},setsar=1[v0]", r.width, r.height);
    } else {
        let _ = write!(graph, "split={}", rungs.len());
        for k in 0..rungs.len() {
            let _ = write!(graph, "[s{k}]");
        }
        for (k, r) in rungs.iter().enumerate() {
            let _ = write!(graph, ";[s{k}]scale={}:{},setsar=1[v{k}]", r.width, r.height);
        }
    }

    let mut args: Vec<OsString> =
        ["-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y"].into_iter().map(OsString::from).collect();
    if let Some(span) = span {
        // Before -i: seeks to the keyframe before the start and decodes from there, dropping
        // the frames before it (exact), then reads no further than the span.
        for a in [
            "-ss".to_string(),
            format!("{:.6}", span.start_seconds),
            "-t".into(),
            format!("{:.6}", span.duration_seconds),
        ] {
            args.push(a.into());
        }
    }
    args.extend(input.args());
    let mut push = |s: String| args.push(s.into());
    push("-filter_complex".into());
    push(graph);
    for (k, r) in rungs.iter().enumerate() {
        let profile = if r.height.min(r.width) >= 480 { "high" } else { "main" };
        for s in [
            "-map".into(),
            format!("[v{k}]"),
            format!("-c:v:{k}"),
            "libx264".into(),
            format!("-profile:v:{k}"),
            profile.into(),
            format!("-b:v:{k}"),
            format!("{}k", r.video_bitrate_kbps),
            format!("-maxrate:v:{k}"),
            format!("{}k", r.max_bitrate_kbps),
            format!("-bufsize:v:{k}"),
            format!("{}k", 2 * r.max_bitrate_kbps),
        ] {
            push(s);
        }
    }
    for s in [
        "-preset",
        &settings.preset,
        "-pix_fmt",
        "yuv420p",
        "-g",
        &gop.to_string(),
        "-keyint_min",
        &gop.to_string(),
        "-sc_threshold",
        "0",
        "-force_key_frames",
        &format!("expr:gte(t,n_forced*{segment})"),
        "-fps_mode",
        "vfr",
    ] {
        push(s.into());
    }
    let mut streams: Vec<String> = rungs.iter().enumerate().map(|(k, r)| format!("v:{k},name:{}", r.name)).collect();
    // A span is video only: the audio is encoded once for the whole file (no priming gap at
    // every boundary).
    if let Some(audio) = source.audio_stream.filter(|_| source.has_audio && span.is_none()) {
        for s in ["-map", &format!("0:{audio}"), "-c:a", "aac", "-b:a", &format!("{}k", settings.audio_bitrate_kbps)] {
            push(s.into());
        }
        push("-ac".into());
        push("2".into());
        // Listed last so no player starts on the audio-only variant.
        streams = streams.into_iter().map(|s| s.replacen(',', ",agroup:aud,", 1)).collect();
        streams.push(format!("a:0,agroup:aud,name:{AUDIO}"));
    }
    // With one variant ffmpeg does not substitute %v in the init name.
    let init = if streams.len() == 1 { format!("init_{}.mp4", rungs[0].name) } else { "init_%v.mp4".into() };
    let out = out_dir.to_string_lossy();
    for s in [
        // No source metadata (phones record where a video was shot) and no chapters.
        "-map_metadata".into(),
        "-1".into(),
        "-map_chapters".into(),
        "-1".into(),
        "-max_muxing_queue_size".into(),
        "4096".into(),
        "-f".into(),
        "hls".into(),
        "-hls_time".into(),
        segment.to_string(),
        // EVENT so ffmpeg rewrites the playlists after every segment (a VOD playlist is written
        // only at the end) and a worker can publish while encoding; `package` makes them VOD.
        "-hls_playlist_type".into(),
        "event".into(),
        // Segments and playlists appear under their final names only when complete.
        "-hls_flags".into(),
        "temp_file".into(),
        "-hls_segment_type".into(),
        "fmp4".into(),
        "-start_number".into(),
        span.map_or(0, |s| s.first_segment).to_string(),
        "-hls_fmp4_init_filename".into(),
        init,
        "-hls_segment_filename".into(),
        format!("{out}/%v/{SEGMENT_PATTERN}"),
        "-master_pl_name".into(),
        MASTER.into(),
        "-var_stream_map".into(),
        streams.join(" "),
        "-progress".into(),
        "pipe:1".into(),
        "-stats_period".into(),
        "0.5".into(),
        format!("{out}/%v/index.m3u8"),
    ] {
        push(s);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(has_audio: bool) -> SourceInfo {
        SourceInfo {
            duration_seconds: 10.0,
            width: 1280,
            height: 720,
            rotation: 0,
            frame_rate: 30.0,
            video_codec: "h264".into(),
            has_audio,
            container: "mp4".into(),
            demuxer: "mov".into(),
            size_bytes: 1,
            video_stream: 0,
            audio_stream: has_audio.then_some(1),
        }
    }

    fn line(args: &[OsString]) -> String {
        args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn one_process_splits_the_decode_and_maps_the_audio_once() {
        let rungs = super::super::ladder(&source(true), &super::super::default_rungs());
        let cmd = line(&command(
            &Input::file(Path::new("/w/source")),
            &source(true),
            &rungs,
            &EncodeSettings::default(),
            Path::new("/w/out"),
            None,
        ));
        assert!(cmd.contains(
            "-i file:/w/source -filter_complex [0:0]split=4[s0][s1][s2][s3];[s0]scale=1280:720,setsar=1[v0]"
        ));
        assert_eq!(cmd.matches("-map 0:1").count(), 1);
        assert!(cmd.contains("-g 120 -keyint_min 120 -sc_threshold 0 -force_key_frames expr:gte(t,n_forced*4)"));
        assert!(cmd.contains(
            "-var_stream_map v:0,agroup:aud,name:720p v:1,agroup:aud,name:480p v:2,agroup:aud,name:360p \
             v:3,agroup:aud,name:240p a:0,agroup:aud,name:audio"
        ));
        assert!(cmd.ends_with("-progress pipe:1 -stats_period 0.5 /w/out/%v/index.m3u8"));
    }

    #[test]
    fn a_single_variant_names_its_init_segment_itself() {
        let rungs = super::super::ladder(&SourceInfo { width: 200, height: 150, ..source(false) }, &[]);
        let cmd = line(&command(
            &Input::file(Path::new("/s")),
            &source(false),
            &rungs,
            &EncodeSettings::default(),
            Path::new("/o"),
            None,
        ));
        assert!(cmd.contains("-hls_fmp4_init_filename init_150p.mp4") && cmd.contains("-var_stream_map v:0,name:150p"));
        assert!(cmd.contains("[0:0]scale=200:150,setsar=1[v0]") && !cmd.contains("split"));
    }

    #[test]
    fn a_span_seeks_exactly_numbers_its_segments_on_and_leaves_the_audio_out() {
        let rungs = super::super::ladder(&source(true), &super::super::default_rungs());
        let span = Span { start_seconds: 60.0, duration_seconds: 60.0, first_segment: 15 };
        let cmd = line(&command(
            &Input::file(Path::new("/w/source")),
            &source(true),
            &rungs,
            &EncodeSettings::default(),
            Path::new("/w/out"),
            Some(&span),
        ));
        assert!(cmd.contains("-ss 60.000000 -t 60.000000 -protocol_whitelist file -i file:/w/source"), "{cmd}");
        assert!(cmd.contains("-start_number 15"), "{cmd}");
        assert!(!cmd.contains("-map 0:1") && !cmd.contains("agroup"), "{cmd}");
    }

    #[test]
    fn bad_ladders_are_refused_before_ffmpeg_runs() {
        let rung = |name: &str, width| Rung {
            name: name.into(),
            width,
            height: 240,
            video_bitrate_kbps: 400,
            max_bitrate_kbps: 428,
        };
        assert!(check_rungs(&[]).is_err());
        assert!(check_rungs(&[rung("audio", 426)]).is_err());
        assert!(check_rungs(&[rung("../x", 426)]).is_err());
        assert!(check_rungs(&[rung("240p", 425)]).is_err());
        assert!(check_rungs(&[rung("240p", 426), rung("240p", 426)]).is_err());
        assert!(check_rungs(&[rung("240p", 426)]).is_ok());
    }
}
