//! The media pipeline against the real ffmpeg/ffprobe: clips are generated with lavfi, broken
//! inputs are made from them by cutting and patching bytes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flick_transcoder::pipeline::{
    self, EncodeProgress, EncodeSettings, Limits, MediaError, Packaged, Rung, RungSpec, SourceInfo, Tools,
    default_rungs, ladder, sniff,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------
// helpers

fn tools() -> Tools {
    Tools::default()
}

/// Runs ffmpeg to make a test input; panics on failure.
async fn ffmpeg(args: &[&str]) {
    let out = tokio::process::Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A testsrc2 clip (with a 440 Hz tone when `audio`), H.264 ultrafast; every source is bounded
/// by its own `duration` so no input runs forever.
async fn clip(dir: &Path, name: &str, size: &str, seconds: u32, audio: bool, extra: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let video = format!("testsrc2=size={size}:rate=30:duration={seconds}");
    let tone = format!("sine=frequency=440:duration={seconds}");
    let mut args = vec!["-f", "lavfi", "-i", &video];
    if audio {
        args.extend(["-f", "lavfi", "-i", &tone, "-c:a", "aac"]);
    }
    args.extend(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]);
    args.extend(extra);
    let out = path.to_string_lossy().into_owned();
    args.push(&out);
    ffmpeg(&args).await;
    path
}

async fn ffprobe_json(args: &[&str], path: &Path) -> Value {
    let out = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json"])
        .args(args)
        .arg(path)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "ffprobe {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn specs(names: &[&str]) -> Vec<RungSpec> {
    default_rungs().into_iter().filter(|s| names.contains(&s.name.as_str())).collect()
}

fn source(width: u32, height: u32) -> SourceInfo {
    SourceInfo {
        duration_seconds: 10.0,
        width,
        height,
        rotation: 0,
        frame_rate: 30.0,
        video_codec: "h264".into(),
        has_audio: true,
        container: "mp4".into(),
        demuxer: "mov".into(),
        size_bytes: 1,
        video_stream: 0,
        audio_stream: Some(1),
    }
}

fn sizes(rungs: &[Rung]) -> Vec<(u32, u32)> {
    rungs.iter().map(|r| (r.width, r.height)).collect()
}

/// Cheaper than the production preset; the ladder logic is the same.
fn fast_settings() -> EncodeSettings {
    EncodeSettings { preset: "ultrafast".into(), timeout: Duration::from_secs(60), ..EncodeSettings::default() }
}

async fn encode(input: &Path, info: &SourceInfo, rungs: &[Rung], settings: &EncodeSettings, out: &Path) -> Packaged {
    pipeline::encode(&tools(), input, info, rungs, settings, out, |_| {}, CancellationToken::new()).await.unwrap()
}

/// `(duration, uri)` of each segment of a media playlist.
fn extinfs(playlist: &str) -> Vec<f64> {
    playlist.lines().filter_map(|l| l.strip_prefix("#EXTINF:")?.split(',').next()?.parse().ok()).collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Processes whose command line mentions `needle` (ours only: the needle is a fresh temp dir).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(cmd);
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// probe

#[tokio::test]
async fn probe_of_a_720p_clip_reports_duration_size_frame_rate_and_audio() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "source", "1280x720", 3, true, &["-f", "mp4"]).await;
    let info = pipeline::probe(&tools(), &input).await.unwrap();
    assert!((info.duration_seconds - 3.0).abs() < 0.1, "{info:?}");
    assert_eq!((info.width, info.height, info.rotation), (1280, 720, 0));
    assert_eq!(info.frame_rate, 30.0);
    assert!(info.has_audio);
    assert_eq!(info.video_codec, "h264");
    assert_eq!(info.container, "mp4");
    assert_eq!(info.size_bytes, std::fs::metadata(&input).unwrap().len());
}

#[tokio::test]
async fn a_rotated_clip_is_probed_and_encoded_at_its_display_size() {
    let dir = tempfile::tempdir().unwrap();
    let plain = clip(dir.path(), "plain.mp4", "640x360", 2, false, &[]).await;
    let rotated = dir.path().join("rotated.mp4");
    ffmpeg(&["-i", plain.to_str().unwrap(), "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated.to_str().unwrap()])
        .await;
    let info = pipeline::probe(&tools(), &rotated).await.unwrap();
    assert_eq!((info.width, info.height), (360, 640));
    assert_eq!(info.rotation % 180, 90);

    let rungs = ladder(&info, &default_rungs());
    assert_eq!(sizes(&rungs), vec![(360, 640), (240, 426)]);
    let out = dir.path().join("out");
    encode(&rotated, &info, &rungs, &fast_settings(), &out).await;
    let probed = ffprobe_json(&["-show_streams"], &out.join("360p/index.m3u8")).await;
    let stream = &probed["streams"][0];
    assert_eq!((stream["width"].as_u64(), stream["height"].as_u64()), (Some(360), Some(640)));
}

// ---------------------------------------------------------------------------------------------
// ladder (pure)

#[test]
fn ladder_of_a_1080p_source_has_all_five_rungs() {
    let rungs = ladder(&source(1920, 1080), &default_rungs());
    assert_eq!(sizes(&rungs), vec![(1920, 1080), (1280, 720), (854, 480), (640, 360), (426, 240)]);
    assert_eq!(rungs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["1080p", "720p", "480p", "360p", "240p"]);
    assert_eq!((rungs[0].video_bitrate_kbps, rungs[0].max_bitrate_kbps), (5000, 5350));
}

#[test]
fn ladder_of_a_720p_clip_is_720_480_360_240_and_never_upscales() {
    let rungs = ladder(&source(1280, 720), &default_rungs());
    assert_eq!(sizes(&rungs), vec![(1280, 720), (854, 480), (640, 360), (426, 240)]);
}

#[test]
fn ladder_of_a_500p_source_starts_at_480() {
    let rungs = ladder(&source(888, 500), &default_rungs());
    assert_eq!(rungs.iter().map(|r| r.height).collect::<Vec<_>>(), [480, 360, 240]);
    assert!(rungs.iter().all(|r| r.width <= 888));
}

#[test]
fn ladder_of_a_200p_source_is_one_rung_at_its_own_size() {
    let rungs = ladder(&source(355, 200), &default_rungs());
    assert_eq!(sizes(&rungs), vec![(354, 200)]);
    assert_eq!(rungs[0].name, "200p");
    assert!(rungs[0].video_bitrate_kbps <= 400 && rungs[0].video_bitrate_kbps >= 64);
}

#[test]
fn ladder_of_a_portrait_source_compares_the_short_side() {
    let rungs = ladder(&source(720, 1280), &default_rungs());
    assert_eq!(sizes(&rungs), vec![(720, 1280), (480, 854), (360, 640), (240, 426)]);
}

#[test]
fn ladder_sizes_are_even_and_within_the_source_for_odd_sources() {
    for (w, h) in [(1279, 719), (853, 481), (641, 361), (999, 333), (17, 17)] {
        for r in ladder(&source(w, h), &default_rungs()) {
            assert!(r.width % 2 == 0 && r.height % 2 == 0, "{w}x{h} → {r:?}");
            assert!(r.width <= w && r.height <= h, "{w}x{h} → {r:?}");
        }
    }
}

#[test]
fn ladder_is_sorted_highest_first_whatever_the_spec_order() {
    let mut specs = default_rungs();
    specs.reverse();
    let rungs = ladder(&source(1920, 1080), &specs);
    assert!(rungs.windows(2).all(|p| p[0].height > p[1].height));
}

// ---------------------------------------------------------------------------------------------
// encode

#[tokio::test]
async fn encode_of_a_10s_720p_clip_makes_hls_and_dash_over_the_same_segments() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "source", "1280x720", 10, true, &["-f", "mp4"]).await;
    let info = pipeline::probe(&tools(), &input).await.unwrap();
    let rungs = ladder(&info, &specs(&["720p", "480p", "240p"]));
    assert_eq!(sizes(&rungs), vec![(1280, 720), (854, 480), (426, 240)]);
    let out = dir.path().join("out");
    let mut reports: Vec<EncodeProgress> = Vec::new();
    let started = Instant::now();
    let packaged = pipeline::encode(
        &tools(),
        &input,
        &info,
        &rungs,
        &EncodeSettings::default(),
        &out,
        |p| reports.push(p),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    eprintln!("10 s 720p → 720/480/240 + audio, veryfast: {:.2} s", started.elapsed().as_secs_f64());

    // Progress: increasing, ending at exactly 100 once.
    assert!(reports.len() >= 2, "{reports:?}");
    assert!(reports.windows(2).all(|p| p[0].percent <= p[1].percent));
    assert_eq!(reports.last().unwrap().percent, 100.0);
    assert_eq!(reports.iter().filter(|p| p.percent >= 100.0).count(), 1);

    // Master: three video variants in ladder order and one audio group, relative URIs.
    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    let variants: Vec<&str> = master.lines().filter(|l| l.starts_with("#EXT-X-STREAM-INF:")).collect();
    let video: Vec<&&str> = variants.iter().filter(|l| l.contains("RESOLUTION=")).collect();
    assert_eq!(video.len(), 3, "{master}");
    assert!(video[0].contains("RESOLUTION=1280x720") && video[2].contains("RESOLUTION=426x240"), "{master}");
    assert!(video.iter().all(|l| l.contains("AUDIO=\"group_aud\"")), "{master}");
    assert!(master.contains("#EXT-X-MEDIA:TYPE=AUDIO") && master.contains("URI=\"audio/index.m3u8\""), "{master}");
    for name in ["720p", "480p", "240p"] {
        assert!(master.lines().any(|l| l == format!("{name}/index.m3u8")), "{master}");
    }

    // Each rung: right size, square pixels, ~10 s, ~4 s segments, relative init and segments.
    for (rung, (w, h)) in rungs.iter().zip([(1280, 720), (854, 480), (426, 240)]) {
        let playlist_path = out.join(&rung.name).join("index.m3u8");
        let probed = ffprobe_json(&["-show_streams", "-show_format"], &playlist_path).await;
        let s = &probed["streams"][0];
        assert_eq!((s["width"].as_u64(), s["height"].as_u64()), (Some(w), Some(h)), "{}", rung.name);
        assert_eq!(s["sample_aspect_ratio"].as_str(), Some("1:1"), "{}", rung.name);
        let duration: f64 = probed["format"]["duration"].as_str().unwrap().parse().unwrap();
        assert!((duration - 10.0).abs() <= 0.5, "{}: {duration}", rung.name);

        let playlist = std::fs::read_to_string(&playlist_path).unwrap();
        let segments = extinfs(&playlist);
        assert_eq!(segments.len(), 3, "{playlist}");
        assert!(segments[..2].iter().all(|d| (d - 4.0).abs() < 0.1), "{playlist}");
        assert!(playlist.contains(&format!("#EXT-X-MAP:URI=\"init_{}.mp4\"", rung.name)), "{playlist}");
        assert!(playlist.lines().any(|l| l == "seg_00000.m4s"), "{playlist}");
        assert!(
            playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD\n") && playlist.ends_with("#EXT-X-ENDLIST\n"),
            "{playlist}"
        );
    }

    // What encode returns matches what it wrote.
    assert_eq!(packaged.renditions.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["720p", "480p", "240p"]);
    assert!((packaged.duration_seconds - 10.0).abs() < 0.5);
    let r720 = &packaged.renditions[0];
    assert_eq!((r720.width, r720.height), (1280, 720));
    assert!(r720.codecs.starts_with("avc1.64"), "{r720:?}");
    assert!(r720.bandwidth > 2_800_000, "{r720:?}");
    let audio = packaged.audio.as_ref().unwrap();
    assert_eq!(audio.codecs, "mp4a.40.2");
    assert_eq!(files_under(&out), {
        let mut files = packaged.files.clone();
        files.sort();
        files
    });
    assert_eq!(
        pipeline::completed_segments(&out, "720p").await,
        ["seg_00000.m4s", "seg_00001.m4s", "seg_00002.m4s"].map(|s| Path::new("720p").join(s))
    );

    // DASH over the same files: ffmpeg's own dash demuxer opens it and reads every packet.
    let mpd = std::fs::read_to_string(out.join("manifest.mpd")).unwrap();
    assert!(mpd.contains("media=\"720p/seg_$Number%05d$.m4s\"") && mpd.contains("startNumber=\"0\""), "{mpd}");
    let probed = ffprobe_json(&["-show_streams"], &out.join("manifest.mpd")).await;
    let streams = probed["streams"].as_array().unwrap();
    let mut video_sizes: Vec<(u64, u64)> = streams
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .map(|s| (s["width"].as_u64().unwrap(), s["height"].as_u64().unwrap()))
        .collect();
    video_sizes.sort();
    assert_eq!(video_sizes, vec![(426, 240), (854, 480), (1280, 720)]);
    assert_eq!(streams.iter().filter(|s| s["codec_type"] == "audio").count(), 1);
    // One representation at a time: reading all at once, the demuxer stops at the first EOF.
    for (select, packets) in [("v:0", "300"), ("v:1", "300"), ("v:2", "300"), ("a:0", "432")] {
        let args = ["-select_streams", select, "-count_packets", "-show_entries", "stream=nb_read_packets"];
        let counted = ffprobe_json(&args, &out.join("manifest.mpd")).await;
        assert_eq!(counted["streams"][0]["nb_read_packets"].as_str(), Some(packets), "{select}");
    }
}

#[tokio::test]
async fn encode_without_audio_has_no_audio_group() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "source", "640x360", 4, false, &["-f", "mp4"]).await;
    let info = pipeline::probe(&tools(), &input).await.unwrap();
    assert!(!info.has_audio);
    let rungs = ladder(&info, &default_rungs());
    let out = dir.path().join("out");
    let packaged = encode(&input, &info, &rungs, &fast_settings(), &out).await;
    assert!(packaged.audio.is_none());
    assert_eq!(packaged.renditions.len(), 2);
    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    assert!(!master.contains("AUDIO") && !out.join("audio").exists(), "{master}");
    let mpd = std::fs::read_to_string(out.join("manifest.mpd")).unwrap();
    assert!(!mpd.contains("contentType=\"audio\""), "{mpd}");
    let probed = ffprobe_json(&["-show_streams"], &out.join("manifest.mpd")).await;
    assert_eq!(probed["streams"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn finished_segments_are_listed_while_the_encode_runs_then_cancelling_stops_it_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "source", "1280x720", 10, true, &["-f", "mp4"]).await;
    let info = pipeline::probe(&tools(), &input).await.unwrap();
    let rungs = ladder(&info, &default_rungs());
    let out = dir.path().join("out");
    let cancel = CancellationToken::new();
    let task = {
        let (input, out, cancel) = (input.clone(), out.clone(), cancel.clone());
        tokio::spawn(async move {
            pipeline::encode(&tools(), &input, &info, &rungs, &EncodeSettings::default(), &out, |_| {}, cancel).await
        })
    };
    // The first segment of every rung is published (listed, complete) long before the end.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = pipeline::completed_segments(&out, "240p").await;
        if (!listed.is_empty() && out.join("master.m3u8").exists()) || Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(listed.first().map(PathBuf::as_path), Some(Path::new("240p/seg_00000.m4s")), "{listed:?}");
    assert!(out.join(&listed[0]).exists() && out.join(pipeline::init_file("240p")).exists());
    let master = std::fs::read_to_string(out.join("master.m3u8")).unwrap();
    assert!(master.contains("240p/index.m3u8"), "{master}");
    assert!(!task.is_finished() && !processes_mentioning(out.to_str().unwrap()).is_empty(), "still encoding");
    let cancelled_at = Instant::now();
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    assert!(matches!(result, Err(MediaError::Cancelled)), "{result:?}");
    assert!(cancelled_at.elapsed() < Duration::from_secs(2), "{:?}", cancelled_at.elapsed());
    assert_eq!(processes_mentioning(out.to_str().unwrap()), Vec::<String>::new());
}

#[tokio::test]
async fn an_encode_past_its_timeout_is_a_tool_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "source", "640x360", 10, false, &["-f", "mp4"]).await;
    let info = pipeline::probe(&tools(), &input).await.unwrap();
    let rungs = ladder(&info, &default_rungs());
    let out = dir.path().join("out");
    let settings = EncodeSettings { timeout: Duration::from_millis(300), ..EncodeSettings::default() };
    let result =
        pipeline::encode(&tools(), &input, &info, &rungs, &settings, &out, |_| {}, CancellationToken::new()).await;
    assert!(matches!(&result, Err(MediaError::Tool(m)) if m.contains("timed out")), "{result:?}");
    assert!(result.unwrap_err().is_transient());
    assert_eq!(processes_mentioning(out.to_str().unwrap()), Vec::<String>::new());
}

/// ffmpeg runs under an address-space limit: an encode that needs more memory fails as a
/// tool error naming the limit (retried, not blamed on the upload), and leaves no ffmpeg.
#[tokio::test]
async fn an_encode_over_its_memory_limit_is_a_tool_error_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "source.mp4", "1920x1080", 2, true, &[]).await;
    let info = pipeline::probe(&tools(), &input).await.unwrap();
    let rungs = ladder(&info, &default_rungs());
    let out = dir.path().join("out");
    let limited = Tools { limits: Limits { memory_bytes: 400 * 1000 * 1000, cpu_seconds: 0 }, ..tools() };
    let result =
        pipeline::encode(&limited, &input, &info, &rungs, &fast_settings(), &out, |_| {}, CancellationToken::new())
            .await;
    assert!(matches!(&result, Err(MediaError::Tool(m)) if m.contains("memory limit of 381 MiB")), "{result:?}");
    assert!(result.unwrap_err().is_transient());
    assert_eq!(processes_mentioning(out.to_str().unwrap()), Vec::<String>::new());
}

/// ffmpeg runs under a CPU-time limit (all its threads): past it the kernel stops it.
#[tokio::test]
async fn an_encode_over_its_cpu_time_limit_is_stopped_and_a_tool_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "source.mp4", "1280x720", 20, false, &[]).await;
    let info = pipeline::probe(&tools(), &input).await.unwrap();
    let rungs = ladder(&info, &default_rungs());
    let out = dir.path().join("out");
    let limited = Tools { limits: Limits { memory_bytes: 0, cpu_seconds: 1 }, ..tools() };
    let started = Instant::now();
    let result =
        pipeline::encode(&limited, &input, &info, &rungs, &fast_settings(), &out, |_| {}, CancellationToken::new())
            .await;
    assert!(matches!(&result, Err(MediaError::Tool(m)) if m.contains("CPU-time limit of 1 s")), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(30), "stopped by the limit, not the timeout");
    assert_eq!(processes_mentioning(out.to_str().unwrap()), Vec::<String>::new());
}

/// A container whose header claims less than its streams hold (a Matroska `Duration` patched
/// from 12 s to 2 s) fails clearly as invalid, stopped soon after the claim is passed, instead
/// of being encoded for as long as the streams go on under a wrong duration.
#[tokio::test]
async fn a_container_lying_about_its_duration_fails_as_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let honest = clip(dir.path(), "honest.mkv", "320x240", 12, false, &[]).await;
    let bytes = std::fs::read(&honest).unwrap();
    // EBML Duration (0x4489), 8-byte float, in milliseconds.
    let at = bytes.windows(3).position(|w| w == [0x44, 0x89, 0x88]).expect("a Duration element") + 3;
    assert_eq!(f64::from_be_bytes(bytes[at..at + 8].try_into().unwrap()), 12000.0);
    let mut lying = bytes.clone();
    lying[at..at + 8].copy_from_slice(&2000.0f64.to_be_bytes());
    let input = dir.path().join("lying.mkv");
    std::fs::write(&input, lying).unwrap();
    let info = pipeline::probe(&tools(), &input).await.unwrap();
    assert!((info.duration_seconds - 2.0).abs() < 0.1, "ffprobe believes the header: {}", info.duration_seconds);
    let rungs = ladder(&info, &specs(&["240p"]));
    let out = dir.path().join("out");
    let result =
        pipeline::encode(&tools(), &input, &info, &rungs, &fast_settings(), &out, |_| {}, CancellationToken::new())
            .await;
    assert!(
        matches!(&result, Err(MediaError::Invalid(m)) if m.contains("duration is wrong") && m.contains("2.0 s")),
        "{result:?}"
    );
    assert_eq!(processes_mentioning(out.to_str().unwrap()), Vec::<String>::new());
}

#[tokio::test]
async fn a_missing_ffmpeg_is_a_tool_error_not_the_uploaders_fault() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("source");
    std::fs::write(&input, b"\x00\x00\x00\x18ftypisom").unwrap();
    let missing =
        Tools { ffmpeg: "/nonexistent/ffmpeg".into(), ffprobe: "/nonexistent/ffprobe".into(), ..Tools::default() };
    let result = pipeline::probe(&missing, &input).await;
    assert!(matches!(&result, Err(MediaError::Tool(m)) if m.contains("not installed")), "{result:?}");
}

/// Every video packet of `file` (init and segments joined): pts and duration, in decode order.
async fn packets(file: &Path) -> Vec<(i64, i64)> {
    let v = ffprobe_json(&["-select_streams", "v", "-show_entries", "packet=pts,duration"], file).await;
    v["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["pts"].as_i64().unwrap(), p["duration"].as_i64().unwrap_or(0)))
        .collect()
}

/// A rendition's init segment and media segments, in playlist order, as one file.
fn joined(out: &Path, rung: &str, to: &Path) -> PathBuf {
    let playlist = std::fs::read_to_string(out.join(rung).join("index.m3u8")).unwrap();
    let mut bytes = std::fs::read(out.join(rung).join(format!("init_{rung}.mp4"))).unwrap();
    for line in playlist.lines().filter(|l| l.ends_with(".m4s")) {
        bytes.extend(std::fs::read(out.join(rung).join(line)).unwrap());
    }
    std::fs::write(to, bytes).unwrap();
    to.to_path_buf()
}

/// PSNR (average, dB) of `encoded` against `source` scaled to `rung`.
async fn psnr(encoded: &Path, source: &Path, rung: &Rung) -> f64 {
    let graph = format!("[1:v]scale={}:{}[ref];[0:v][ref]psnr", rung.width, rung.height);
    let out = tokio::process::Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-i"])
        .arg(encoded)
        .arg("-i")
        .arg(source)
        .args(["-lavfi", &graph, "-f", "null", "-"])
        .output()
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log.lines().find(|l| l.contains("PSNR y:")).unwrap_or_else(|| panic!("no PSNR: {log}"));
    line.split("average:").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_source_encoded_in_spans_and_assembled_matches_the_whole_file_encode() {
    let dir = tempfile::tempdir().unwrap();
    // Keyframes every 50 frames: the second span's start (20 s) falls between them, so it
    // decodes from the keyframe before its start and drops what precedes it.
    let input = clip(dir.path(), "source.mp4", "854x480", 42, true, &["-g", "50"]).await;
    let info = pipeline::probe(&tools(), &input).await.unwrap();
    let rungs = ladder(&info, &specs(&["480p", "240p"]));
    // The production preset: B-frames, so decode and presentation times differ.
    let settings = EncodeSettings { timeout: Duration::from_secs(120), ..EncodeSettings::default() };
    let whole = dir.path().join("whole");
    encode(&input, &info, &rungs, &settings, &whole).await;

    // 20 s spans, a third of the default: x264's rate control starts afresh in every span and
    // undershoots for its first seconds (measured on this clip's 240p: -0.8 dB with 8 s spans,
    // -0.23 dB with 20 s), so a span must be long for the quality to hold.
    let spans = pipeline::spans(info.duration_seconds, 20, 20, settings.segment_seconds);
    assert_eq!(spans.len(), 2, "{spans:?}");
    let source = pipeline::Input::file(&input);
    let assembled = dir.path().join("assembled");
    let mut tracks: Vec<pipeline::TrackSegments> =
        rungs.iter().map(|r| pipeline::TrackSegments { name: r.name.clone(), segments: vec![] }).collect();
    for (k, span) in spans.iter().enumerate() {
        // Each span in a directory of its own, as on separate workers.
        let out = dir.path().join(format!("span{k}"));
        let made =
            pipeline::encode_span(&tools(), &source, &info, &rungs, &settings, span, &out, CancellationToken::new())
                .await
                .unwrap();
        for (track, part) in tracks.iter_mut().zip(made) {
            std::fs::create_dir_all(assembled.join(&track.name)).unwrap();
            for s in &part.segments {
                std::fs::copy(out.join(&track.name).join(&s.uri), assembled.join(&track.name).join(&s.uri)).unwrap();
            }
            if k == 0 {
                let init = pipeline::init_name(&track.name);
                std::fs::copy(out.join(&track.name).join(&init), assembled.join(&track.name).join(&init)).unwrap();
            }
            track.segments.extend(part.segments);
        }
    }
    let audio = pipeline::encode_audio(&tools(), &source, &info, &settings, &assembled, CancellationToken::new())
        .await
        .unwrap()
        .expect("the source has audio");
    tracks.push(audio);
    let packaged = pipeline::assemble(&info, &rungs, &settings, &tracks, &assembled).await.unwrap();
    assert!((packaged.duration_seconds - 42.0).abs() < 0.2, "{packaged:?}");
    assert!(packaged.audio.is_some());

    // The same playlists as the whole-file encode: segment names and lengths.
    for name in rungs.iter().map(|r| r.name.as_str()).chain(["audio"]) {
        let ours = std::fs::read_to_string(assembled.join(name).join("index.m3u8")).unwrap();
        let theirs = std::fs::read_to_string(whole.join(name).join("index.m3u8")).unwrap();
        let names = |p: &str| p.lines().filter(|l| l.ends_with(".m4s")).map(str::to_string).collect::<Vec<_>>();
        assert_eq!(names(&ours), names(&theirs), "{name}");
        for (a, b) in extinfs(&ours).iter().zip(extinfs(&theirs)) {
            assert!((a - b).abs() <= 1.0 / 30.0 + 1e-3, "{name}: {ours}\nvs\n{theirs}");
        }
    }
    let master = std::fs::read_to_string(assembled.join("master.m3u8")).unwrap();
    let variants = |m: &str| {
        pipeline_variants(m).into_iter().map(|(uri, resolution)| format!("{uri} {resolution}")).collect::<Vec<_>>()
    };
    assert_eq!(variants(&master), variants(&std::fs::read_to_string(whole.join("master.m3u8")).unwrap()));
    assert!(std::fs::read_to_string(assembled.join("manifest.mpd")).unwrap().contains("id=\"240p\""));

    for rung in &rungs {
        let ours = joined(&assembled, &rung.name, &dir.path().join(format!("ours_{}.mp4", rung.name)));
        let theirs = joined(&whole, &rung.name, &dir.path().join(format!("theirs_{}.mp4", rung.name)));
        // Every frame once, at the whole-file encode's time: no frame missing or repeated at
        // a boundary, so the audio (one encode for both) lines up everywhere as it does there.
        let (a, b) = (packets(&ours).await, packets(&theirs).await);
        assert_eq!(a.len(), 1260, "{}: 42 s at 30 fps", rung.name);
        let pts = |p: &[(i64, i64)]| {
            let mut v: Vec<i64> = p.iter().map(|(pts, _)| *pts).collect();
            v.sort_unstable();
            v
        };
        assert_eq!(pts(&a), pts(&b), "{}: the frames' presentation times", rung.name);
        let (q_ours, q_theirs) = (psnr(&ours, &input, rung).await, psnr(&theirs, &input, rung).await);
        assert!((q_ours - q_theirs).abs() <= 0.3, "{}: PSNR {q_ours:.2} dB in spans vs {q_theirs:.2} whole", rung.name);
    }
}

/// `(uri, RESOLUTION)` of each variant of a master playlist, CODECS and BANDWIDTH aside.
fn pipeline_variants(master: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut resolution = None;
    for line in master.lines() {
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            resolution = Some(attrs.split(',').find_map(|a| a.strip_prefix("RESOLUTION=")).unwrap_or("").to_string());
        } else if let Some(r) = resolution.take().filter(|_| !line.starts_with('#') && !line.is_empty()) {
            out.push((line.to_string(), r));
        }
    }
    out
}

#[tokio::test]
async fn a_120_fps_source_is_encoded_at_60_fps() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("source");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=120:duration=2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-f",
        "mp4",
        input.to_str().unwrap(),
    ])
    .await;
    let info = pipeline::probe(&tools(), &input).await.unwrap();
    assert_eq!(info.frame_rate, 120.0);
    let out = dir.path().join("out");
    let packaged = encode(&input, &info, &ladder(&info, &default_rungs()), &fast_settings(), &out).await;
    let probed = ffprobe_json(&["-count_packets", "-show_streams"], &out.join(&packaged.renditions[0].playlist)).await;
    assert_eq!(probed["streams"][0]["avg_frame_rate"].as_str(), Some("60/1"));
    assert_eq!(probed["streams"][0]["nb_read_packets"].as_str(), Some("120"));
    assert!(std::fs::read_to_string(out.join("manifest.mpd")).unwrap().contains("frameRate=\"60\""));
}

// ---------------------------------------------------------------------------------------------
// thumbnails

#[tokio::test]
async fn thumbnails_are_a_poster_stills_and_a_storyboard_whose_cues_cover_the_duration() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "source", "1280x720", 10, false, &["-f", "mp4"]).await;
    let info = pipeline::probe(&tools(), &input).await.unwrap();
    let out = dir.path().join("out");
    let thumbs = pipeline::thumbnails(&tools(), &pipeline::Input::file(&input), &info, &out).await.unwrap();

    assert_eq!(thumbs.poster, Path::new("thumbs/poster.jpg"));
    let poster = std::fs::read(out.join(&thumbs.poster)).unwrap();
    assert_eq!(&poster[..3], b"\xFF\xD8\xFF", "a JPEG");
    let probed = ffprobe_json(&["-show_streams"], &out.join(&thumbs.poster)).await;
    assert_eq!(probed["streams"][0]["width"].as_u64(), Some(1280));
    assert_eq!(thumbs.stills.len(), 3);
    for still in &thumbs.stills {
        assert!(std::fs::metadata(out.join(still)).unwrap().len() > 1000);
    }

    let sprite = ffprobe_json(&["-show_streams"], &out.join(&thumbs.storyboard)).await;
    let (sw, sh) = (sprite["streams"][0]["width"].as_u64().unwrap(), sprite["streams"][0]["height"].as_u64().unwrap());
    assert_eq!((sw, sh), (1600, 90));
    let vtt = std::fs::read_to_string(out.join(&thumbs.storyboard_vtt)).unwrap();
    assert!(vtt.starts_with("WEBVTT\n"));
    let mut cues = Vec::new();
    let lines: Vec<&str> = vtt.lines().collect();
    for pair in lines.windows(2) {
        if let Some((start, end)) = pair[0].split_once(" --> ") {
            let (file, xywh) = pair[1].split_once("#xywh=").unwrap();
            assert_eq!(file, "storyboard.jpg");
            let v: Vec<u64> = xywh.split(',').map(|n| n.parse().unwrap()).collect();
            cues.push((seconds(start), seconds(end), v));
        }
    }
    assert_eq!(cues.len(), 10);
    assert_eq!(cues[0].0, 0.0);
    assert!(cues.windows(2).all(|c| c[0].1 == c[1].0), "contiguous");
    assert!((cues.last().unwrap().1 - info.duration_seconds).abs() < 0.01);
    for (_, _, v) in &cues {
        assert_eq!((v[2], v[3]), (160, 90));
        assert!(v[0] + v[2] <= sw && v[1] + v[3] <= sh, "{v:?} outside {sw}x{sh}");
    }
}

fn seconds(ts: &str) -> f64 {
    let parts: Vec<f64> = ts.split(':').map(|p| p.parse().unwrap()).collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

// ---------------------------------------------------------------------------------------------
// broken and odd inputs

/// Box surgery on MP4 files, for making broken inputs.
mod mp4 {
    /// `(offset, size, type)` of the boxes in `b[start..end]`.
    pub fn boxes(b: &[u8], start: usize, end: usize) -> Vec<(usize, usize, [u8; 4])> {
        let mut out = Vec::new();
        let mut off = start;
        while off + 8 <= end {
            let size = u32::from_be_bytes(b[off..off + 4].try_into().unwrap()) as usize;
            let kind: [u8; 4] = b[off + 4..off + 8].try_into().unwrap();
            if size < 8 || off + size > end {
                break;
            }
            out.push((off, size, kind));
            off += size;
        }
        out
    }

    pub fn find(b: &[u8], kind: &[u8; 4]) -> (usize, usize) {
        boxes(b, 0, b.len()).into_iter().find(|(_, _, k)| k == kind).map(|(o, s, _)| (o, s)).unwrap()
    }

    /// Drops the `trak` holding video (the one with a `vmhd`) from `moov`; `moov` must be last.
    pub fn without_video_track(b: &[u8]) -> Vec<u8> {
        let (moov, size) = find(b, b"moov");
        assert_eq!(moov + size, b.len(), "moov at the end");
        let mut body = Vec::new();
        for (o, s, k) in boxes(b, moov + 8, moov + size) {
            let chunk = &b[o..o + s];
            if &k == b"trak" && chunk.windows(4).any(|w| w == b"vmhd") {
                continue;
            }
            body.extend_from_slice(chunk);
        }
        let mut out = b[..moov].to_vec();
        out.extend_from_slice(&(body.len() as u32 + 8).to_be_bytes());
        out.extend_from_slice(b"moov");
        out.extend_from_slice(&body);
        out
    }

    /// Sets the (version 0) durations of `mvhd`, `tkhd` and `mdhd` to nearly 2^32 ticks.
    pub fn with_huge_durations(b: &[u8]) -> Vec<u8> {
        let mut out = b.to_vec();
        for (kind, offset) in [(b"mvhd", 16), (b"tkhd", 20), (b"mdhd", 16)] {
            let mut at = 0;
            while let Some(i) = out[at..].windows(4).position(|w| w == kind) {
                let p = at + i + 4;
                if out[p] == 0 {
                    out[p + offset..p + offset + 4].copy_from_slice(&0xFFFF_FFF0_u32.to_be_bytes());
                }
                at = p;
            }
        }
        out
    }
}

fn replace_all(b: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = b.to_vec();
    let mut at = 0;
    while let Some(i) = out[at..].windows(from.len()).position(|w| w == from) {
        out[at + i..at + i + to.len()].copy_from_slice(to);
        at += i + from.len();
    }
    out
}

/// Deterministic noise (xorshift), so a failure reproduces.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// Runs the worker's sequence; the first error ends it.
async fn transcode(input: &Path, out: &Path) -> Result<(SourceInfo, Packaged), MediaError> {
    let info = pipeline::probe(&tools(), input).await?;
    let rungs = ladder(&info, &default_rungs());
    let packaged =
        pipeline::encode(&tools(), input, &info, &rungs, &fast_settings(), out, |_| {}, CancellationToken::new())
            .await?;
    pipeline::thumbnails(&tools(), &pipeline::Input::file(input), &info, out).await?;
    Ok((info, packaged))
}

/// Makes the broken inputs: `(case, file, expected fragment of the reason)`.
async fn broken_corpus(dir: &Path) -> Vec<(&'static str, PathBuf, &'static str)> {
    let d = |name: &str| dir.join(name);
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let good = clip(dir, "good.mp4", "320x240", 3, true, &[]).await;
    let fast = clip(dir, "fast.mp4", "320x240", 3, true, &["-movflags", "+faststart"]).await;
    let good_bytes = std::fs::read(&good).unwrap();
    let fast_bytes = std::fs::read(&fast).unwrap();
    let mut cases = Vec::new();
    let mut write = |case: &'static str, name: &str, bytes: &[u8], expect: &'static str| {
        std::fs::write(d(name), bytes).unwrap();
        cases.push((case, d(name), expect));
    };

    write("zero bytes", "empty.mp4", b"", "empty");
    write("random bytes", "random.mp4", &noise(65536, 7), "not a video file");
    write("1 MiB of zeros", "zeros.mp4", &vec![0; 1 << 20], "not a video file");
    write(
        "text renamed .mp4",
        "text.mp4",
        b"Hello, this is a plain text file and not a video at all.\n",
        "not a video",
    );
    write(
        "HTML page",
        "page.mp4",
        b"<!doctype html><html><head><title>x</title></head><body>hi</body></html>\n",
        "not a video file (it is an HTML or XML document)",
    );
    write("JSON", "data.mp4", br#"{"video": true, "frames": [1, 2, 3]}"#, "not a video file");
    write(
        "PDF",
        "doc.mp4",
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
        "not a video file or the file is corrupt",
    );
    write("ELF program", "prog.mp4", &std::fs::read("/bin/true").unwrap(), "not a video file");
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x00\x00".to_vec();
    zip.extend(noise(4096, 3));
    write("ZIP archive", "archive.mp4", &zip, "not a video file");
    let gz = tokio::process::Command::new("gzip").arg("-c").arg(&good).output().await.unwrap().stdout;
    write("gzip of an mp4", "video.mp4.gz", &gz, "not a video file");
    write("truncated mp4, index at the end", "cut.mp4", &good_bytes[..good_bytes.len() * 3 / 10], "corrupt");
    write("truncated mp4, index first", "cut_fast.mp4", &fast_bytes[..fast_bytes.len() * 3 / 10], "truncated");
    let (mdat, mdat_size) = mp4::find(&fast_bytes, b"mdat");
    let mut zeroed = fast_bytes.clone();
    zeroed[mdat + 8..mdat + mdat_size].fill(0);
    write("mp4 with its media data zeroed", "zeroed.mp4", &zeroed, "corrupt");
    let mut garbled = fast_bytes.clone();
    for (k, i) in (mdat + 8..mdat + mdat_size).step_by(50).enumerate() {
        garbled[i] = noise(1, k as u64 + 1)[0];
    }
    write("mp4 with its media data garbled", "garbled.mp4", &garbled, "corrupt");
    write("unsupported codec (avc1 patched to zzzz)", "zzzz.mp4", &replace_all(&good_bytes, b"avc1", b"zzzz"), "codec");
    write("absurd declared duration", "long.mp4", &mp4::with_huge_durations(&good_bytes), "hours");

    let made = |case: &'static str, name: &str, args: Vec<String>, expect: &'static str| {
        let path = d(name);
        let mut args = args;
        args.push(s(&path));
        (case, path, expect, args)
    };
    let cover = d("cover.jpg");
    let subs = d("subs.srt");
    std::fs::write(&subs, "1\n00:00:00,000 --> 00:00:02,000\nhello\n\n2\n00:00:02,000 --> 00:00:03,000\nbye\n")
        .unwrap();
    let lavfi = |spec: &str| ["-f".to_string(), "lavfi".into(), "-i".into(), spec.into()];
    let v = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let generated = vec![
        made(
            "a JPEG picture",
            "cover.jpg",
            [&lavfi("testsrc2=size=320x240")[..], &v(&["-frames:v", "1"])].concat(),
            "picture",
        ),
        made(
            "a PNG picture",
            "picture.mp4",
            [&lavfi("testsrc2=size=320x240")[..], &v(&["-frames:v", "1", "-c:v", "png", "-f", "image2"])].concat(),
            "picture",
        ),
        made(
            "audio-only m4a",
            "audio.m4a",
            [&lavfi("sine=duration=2")[..], &v(&["-c:a", "aac"])].concat(),
            "audio-only",
        ),
        made(
            "mp3 with cover art",
            "song.mp3",
            [
                &lavfi("sine=duration=2")[..],
                &v(&["-i", &s(&cover), "-map", "0", "-map", "1", "-c:a", "libmp3lame", "-c:v", "copy"]),
                &v(&["-disposition:v", "attached_pic"]),
            ]
            .concat(),
            "audio-only",
        ),
        made("WAV", "sound.wav", lavfi("sine=duration=2").to_vec(), "audio-only"),
        made(
            "mp4 with zero frames",
            "noframes.mp4",
            [&lavfi("testsrc2=size=320x240:duration=1")[..], &v(&["-frames:v", "0", "-c:v", "libx264"])].concat(),
            "no audio or video",
        ),
        made(
            "a single frame",
            "oneframe.mp4",
            [&lavfi("testsrc2=size=320x240")[..], &v(&["-frames:v", "1", "-c:v", "libx264"])].concat(),
            "too short",
        ),
        made("subtitles only (srt)", "subs_only.srt", v(&["-i", &s(&subs)]), "subtitles"),
        made("subtitles only (mkv)", "subs.mkv", v(&["-i", &s(&subs)]), "subtitles"),
        made(
            "8200 pixels wide",
            "wide.mov",
            [&lavfi("color=size=8200x256:rate=1:duration=1")[..], &v(&["-c:v", "mjpeg"])].concat(),
            "larger than",
        ),
        made(
            "8000x8000 (more pixels than 8K)",
            "huge.mov",
            [&lavfi("color=size=8000x8000:rate=1:duration=1")[..], &v(&["-c:v", "mjpeg"])].concat(),
            "larger than",
        ),
        made(
            "8x8 pixels",
            "tiny.mp4",
            [&lavfi("testsrc2=size=8x8:rate=30:duration=1")[..], &v(&["-c:v", "libx264"])].concat(),
            "smaller than",
        ),
        made(
            "a timecode track only",
            "timecode.mov",
            [
                &lavfi("testsrc2=size=320x240:rate=30:duration=1")[..],
                &v(&["-c:v", "libx264", "-timecode", "01:00:00:00"]),
            ]
            .concat(),
            "",
        ),
    ];
    for (case, path, expect, args) in generated {
        ffmpeg(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
        if case == "a timecode track only" {
            let bytes = mp4::without_video_track(&std::fs::read(&path).unwrap());
            std::fs::write(&path, bytes).unwrap();
            cases.push((case, path, "only data tracks"));
        } else {
            cases.push((case, path, expect));
        }
    }

    // Playlists would make ffmpeg read other files: refused even when they point at local media.
    let playlist = d("playlist.mp4");
    std::fs::write(&playlist, format!("#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3,\n{}\n#EXT-X-ENDLIST\n", s(&good)))
        .unwrap();
    cases.push(("an HLS playlist naming a local file", playlist, "playlists are not accepted"));
    let concat = d("concat.mp4");
    std::fs::write(&concat, "ffconcat version 1.0\nfile good.mp4\n").unwrap();
    cases.push(("an ffconcat script", concat, "playlists are not accepted"));
    cases
}

#[tokio::test]
async fn broken_inputs_each_end_invalid_with_a_readable_reason_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = broken_corpus(dir.path()).await;
    assert!(corpus.len() >= 20, "{} cases", corpus.len());
    let started = Instant::now();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    // Each file twice: as named, and as the worker stores it (no extension to hint at a format).
    let mut runs = Vec::new();
    for (i, (case, input, expect)) in corpus.iter().enumerate() {
        let bare = dir.path().join(format!("bare{i}"));
        std::fs::create_dir(&bare).unwrap();
        std::fs::copy(input, bare.join("source")).unwrap();
        runs.push((case.to_string(), input.clone(), *expect));
        runs.push((format!("{case} (no extension)"), bare.join("source"), *expect));
    }
    for (i, (case, input, expect)) in runs.iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        let t = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(60), transcode(input, &out)).await;
        let elapsed = t.elapsed();
        match result {
            Ok(Err(MediaError::Invalid(reason))) => {
                report.push(format!("{case:60} {:>6.2}s  {reason}", elapsed.as_secs_f64()));
                let readable = !reason.is_empty()
                    && !reason.contains(dir.path().to_str().unwrap())
                    && !reason.contains(" @ 0x")
                    && reason.len() <= 200;
                if !readable || !reason.to_lowercase().contains(&expect.to_lowercase()) {
                    failures.push(format!("{case}: reason {reason:?} should contain {expect:?} and be readable"));
                }
            }
            Ok(other) => failures.push(format!("{case}: expected Invalid, got {:?}", other.map(|(info, _)| info))),
            Err(_) => failures.push(format!("{case}: no answer within 60 s")),
        }
    }
    eprintln!("{}\n{} runs in {:.1} s", report.join("\n"), runs.len(), started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn odd_but_valid_inputs_are_transcoded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mkv = clip(d, "matroska_named.mp4", "320x240", 2, true, &["-f", "matroska"]).await;
    let ts = clip(d, "clip.ts", "320x240", 2, true, &["-f", "mpegts"]).await;
    let tiny = clip(d, "tiny.mp4", "16x16", 1, false, &[]).await;
    let webm = d.join("clip.webm");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30:duration=2",
        "-f",
        "lavfi",
        "-i",
        "sine=duration=2",
        "-c:v",
        "libvpx-vp9",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-c:a",
        "libopus",
        webm.to_str().unwrap(),
    ])
    .await;
    for (input, container, codec, rungs) in [
        (&mkv, "matroska", "h264", 1),
        (&ts, "mpegts", "h264", 1),
        (&webm, "webm", "vp9", 1),
        (&tiny, "mp4", "h264", 1),
    ] {
        let out = d.join(format!("out_{container}"));
        let (info, packaged) = tokio::time::timeout(Duration::from_secs(60), transcode(input, &out))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{}: {e:?}", input.display()));
        assert_eq!((info.container.as_str(), info.video_codec.as_str()), (container, codec));
        assert_eq!(packaged.renditions.len(), rungs, "{container}");
        assert!(packaged.duration_seconds > 0.9, "{container}: {packaged:?}");
        assert!(out.join("manifest.mpd").exists() && out.join("thumbs/storyboard.vtt").exists());
    }
}

// ---------------------------------------------------------------------------------------------
// sniff

#[tokio::test]
async fn sniff_recognises_video_containers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (format, name, expected) in [
        ("mp4", "a.mp4", "mp4"),
        ("mov", "a.mov", "mov"),
        ("3gp", "a.3gp", "3gp"),
        ("matroska", "a.mkv", "matroska"),
        ("webm", "a.webm", "webm"),
        ("avi", "a.avi", "avi"),
        ("mpegts", "a.ts", "mpegts"),
        ("flv", "a.flv", "flv"),
        ("ogg", "a.ogv", "ogg"),
        ("asf", "a.wmv", "asf"),
        ("vob", "a.mpg", "mpegps"),
    ] {
        let codec = match format {
            "webm" => "libvpx",
            "ogg" => "libtheora",
            "3gp" => "mpeg4",
            "asf" => "wmv2",
            "vob" | "avi" | "flv" => "mpeg2video",
            _ => "libx264",
        };
        let codec = if format == "flv" { "flv" } else { codec };
        let path = d.join(name);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=176x144:rate=15:duration=1",
            "-c:v",
            codec,
            "-f",
            format,
            path.to_str().unwrap(),
        ])
        .await;
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(sniff(&bytes[..512.min(bytes.len())]), Some(expected), "{format}");
        if format != "mpegts" {
            assert_eq!(sniff(&bytes[..64]), Some(expected), "{format} from 64 bytes");
        }
    }
}

#[test]
fn sniff_refuses_text_images_archives_and_programs() {
    let elf = std::fs::read("/bin/true").unwrap();
    for (what, head) in [
        ("empty", &b""[..]),
        ("text", b"Hello, world. This is text, not a video.\n"),
        ("html", b"<!doctype html><html>"),
        ("json", br#"{"a": 1}"#),
        ("jpeg", b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01"),
        ("png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
        ("gif", b"GIF89a\x01\x00\x01\x00"),
        ("zip", b"PK\x03\x04\x14\x00\x00\x00"),
        ("gzip", b"\x1f\x8b\x08\x00\x00\x00\x00\x00"),
        ("pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3"),
        ("elf", &elf[..64]),
        ("wav", b"RIFF\x24\x08\x00\x00WAVEfmt "),
        ("mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00"),
    ] {
        assert_eq!(sniff(head), None, "{what}");
    }
}
