//! Segment-parallel encoding: a long source cut into spans on segment boundaries, each span's
//! whole ladder encoded on its own (any worker), the audio once for the whole file, then the
//! pieces assembled into the same layout `encode` writes (see the module docs of `pipeline`).
//!
//! ffmpeg starts every span's timeline at zero; its segments are moved to their place on the
//! whole file's timeline by rewriting each fragment's decode time (`tfdt`), so the assembled
//! renditions run on continuous timestamps and every span's init segment is the first span's
//! (they differ only in the edit list, which the first span's has right). A span's frames are
//! exactly the source's frames in `[start, start + duration)`, so the spans' frames add up to
//! the whole file's.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::encode::{Span, command};
use super::hls;
use super::input::Input;
use super::layout::{AUDIO, MASTER, PLAYLIST, Rung};
use super::package::{Packaged, avc_codec, package_sized};
use super::{EncodeSettings, MediaError, SourceInfo, Tools, failure, process};

/// One media segment of a track as stored: its name in the track's directory, its length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub uri: String,
    pub seconds: f64,
    pub bytes: u64,
}

/// A track's segments (a rung's name, or [`AUDIO`]), in playback order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackSegments {
    pub name: String,
    pub segments: Vec<Segment>,
}

/// Spans covering `duration`: the first of `first_seconds`, the others of `chunk_seconds`
/// (both rounded up to whole segments); a last piece shorter than a segment joins the span
/// before it. A short first span plays early; long ones keep the rate control's restarts few.
pub fn spans(duration_seconds: f64, first_seconds: u32, chunk_seconds: u32, segment_seconds: u32) -> Vec<Span> {
    let segment = segment_seconds.max(1);
    let whole = |seconds: u32| seconds.max(1).div_ceil(segment) * segment;
    let (first, chunk) = (whole(first_seconds), whole(chunk_seconds));
    let mut spans: Vec<Span> = Vec::new();
    let (mut start, mut first_segment) = (0.0, 0u64);
    while start < duration_seconds {
        let rest = duration_seconds - start;
        if rest < f64::from(segment)
            && let Some(last) = spans.last_mut()
        {
            last.duration_seconds += rest;
            break;
        }
        let length = if spans.is_empty() { first } else { chunk };
        spans.push(Span { start_seconds: start, duration_seconds: rest.min(f64::from(length)), first_segment });
        start += f64::from(length);
        first_segment += u64::from(length / segment);
    }
    // The last span reads to the end of the file, whatever the container said.
    if let Some(last) = spans.last_mut() {
        last.duration_seconds += 10.0;
    }
    spans
}

/// Encodes `span` of `input` into `out_dir` (`<rung>/init_<rung>.mp4`, `<rung>/seg_*.m4s`
/// numbered from the span's first segment) and moves its segments to their place on the
/// whole file's timeline. Returns every rung's segments.
#[allow(clippy::too_many_arguments)]
pub async fn encode_span(
    tools: &Tools,
    input: &Input,
    source: &SourceInfo,
    rungs: &[Rung],
    settings: &EncodeSettings,
    span: &Span,
    out_dir: &Path,
    cancel: CancellationToken,
) -> Result<Vec<TrackSegments>, MediaError> {
    tokio::fs::create_dir_all(out_dir).await?;
    let args = command(input, source, rungs, settings, out_dir, Some(span));
    let done = process::run(&tools.ffmpeg, tools.limits, &args, settings.timeout, &cancel, |_| {}).await?;
    if !done.status.success() {
        return Err(failure::judge("ffmpeg", done.status, &done.stderr, input, "the file is truncated or corrupt"));
    }
    let mut tracks = Vec::with_capacity(rungs.len());
    for rung in rungs {
        let track = read_track(out_dir, &rung.name).await?;
        let seconds: f64 = track.segments.iter().map(|s| s.seconds).sum();
        let expected = (source.duration_seconds - span.start_seconds).min(span.duration_seconds);
        if seconds < expected * 0.9 && expected - seconds > 1.0 {
            return Err(MediaError::Invalid(format!(
                "the file is truncated or corrupt: only {:.1} s of the {:.1} s from {:.0} s could be decoded",
                seconds, expected, span.start_seconds
            )));
        }
        let init = tokio::fs::read(out_dir.join(&rung.name).join(init_name(&rung.name))).await?;
        let timescale = super::dash::media_timescale(&init).unwrap_or(90_000);
        let offset = (span.start_seconds * timescale as f64).round() as u64;
        if offset > 0 {
            for segment in &track.segments {
                let path = out_dir.join(&rung.name).join(&segment.uri);
                let mut bytes = tokio::fs::read(&path).await?;
                retime(&mut bytes, offset)?;
                tokio::fs::write(&path, bytes).await?;
            }
        }
        tracks.push(track);
    }
    Ok(tracks)
}

/// Encodes the whole file's audio once into `out_dir/audio` (init and segments).
pub async fn encode_audio(
    tools: &Tools,
    input: &Input,
    source: &SourceInfo,
    settings: &EncodeSettings,
    out_dir: &Path,
    cancel: CancellationToken,
) -> Result<Option<TrackSegments>, MediaError> {
    let Some(stream) = source.audio_stream.filter(|_| source.has_audio) else {
        return Ok(None);
    };
    tokio::fs::create_dir_all(out_dir.join(AUDIO)).await?;
    let out = out_dir.to_string_lossy();
    let mut args: Vec<std::ffi::OsString> =
        ["-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y"].into_iter().map(Into::into).collect();
    args.extend(input.args());
    for a in [
        "-map".to_string(),
        format!("0:{stream}"),
        "-c:a".into(),
        "aac".into(),
        "-b:a".into(),
        format!("{}k", settings.audio_bitrate_kbps),
        "-ac".into(),
        "2".into(),
        "-map_metadata".into(),
        "-1".into(),
        "-map_chapters".into(),
        "-1".into(),
        "-f".into(),
        "hls".into(),
        "-hls_time".into(),
        settings.segment_seconds.max(1).to_string(),
        "-hls_playlist_type".into(),
        "vod".into(),
        "-hls_segment_type".into(),
        "fmp4".into(),
        "-hls_fmp4_init_filename".into(),
        init_name(AUDIO),
        "-hls_segment_filename".into(),
        format!("{out}/{AUDIO}/seg_%05d.m4s"),
        format!("{out}/{AUDIO}/{PLAYLIST}"),
    ] {
        args.push(a.into());
    }
    let done = process::run(&tools.ffmpeg, tools.limits, &args, settings.timeout, &cancel, |_| {}).await?;
    if !done.status.success() {
        return Err(failure::judge("ffmpeg", done.status, &done.stderr, input, "the file's audio is corrupt"));
    }
    Ok(Some(read_track(out_dir, AUDIO).await?))
}

/// Writes every track's VOD playlist and the master over `tracks` (the rungs' in ladder
/// order, then the audio's, if any) into `out_dir`, where each track's init segment already
/// is, then the DASH manifest: the same files `encode` leaves, without the media segments
/// (stored already by the spans' workers).
pub async fn assemble(
    source: &SourceInfo,
    rungs: &[Rung],
    settings: &EncodeSettings,
    tracks: &[TrackSegments],
    out_dir: &Path,
) -> Result<Packaged, MediaError> {
    let mut sizes = HashMap::new();
    for track in tracks {
        tokio::fs::write(out_dir.join(&track.name).join(PLAYLIST), media_playlist(track, true)).await?;
        for s in &track.segments {
            sizes.insert(PathBuf::from(&track.name).join(&s.uri), s.bytes);
        }
    }
    let has_audio = tracks.iter().any(|t| t.name == AUDIO);
    let mut codecs = Vec::with_capacity(rungs.len());
    for rung in rungs {
        let init = tokio::fs::read(out_dir.join(&rung.name).join(init_name(&rung.name))).await?;
        codecs.push(avc_codec(&init).unwrap_or_else(|| "avc1.640028".into()));
    }
    let master = master_playlist(rungs, &codecs, has_audio, settings.audio_bitrate_kbps);
    tokio::fs::write(out_dir.join(MASTER), master).await?;
    package_sized(source, rungs, out_dir, Some(&sizes)).await
}

/// The init segment's name in a track's directory.
pub fn init_name(track: &str) -> String {
    format!("init_{track}.mp4")
}

/// A track's segments as ffmpeg listed them, with their sizes.
async fn read_track(out_dir: &Path, name: &str) -> Result<TrackSegments, MediaError> {
    let corrupt = || MediaError::Invalid("the file is truncated or corrupt: no video could be decoded".into());
    let text = tokio::fs::read_to_string(out_dir.join(name).join(PLAYLIST)).await.map_err(|_| corrupt())?;
    let listed = hls::parse_media(&text);
    if listed.segments.is_empty() {
        return Err(corrupt());
    }
    let mut segments = Vec::with_capacity(listed.segments.len());
    for (uri, seconds) in listed.segments {
        let bytes = tokio::fs::metadata(out_dir.join(name).join(&uri)).await?.len();
        segments.push(Segment { uri, seconds, bytes });
    }
    Ok(TrackSegments { name: name.to_string(), segments })
}

/// A track's media playlist: VOD when `ended`, else a growing EVENT playlist (early playback).
pub fn media_playlist(track: &TrackSegments, ended: bool) -> String {
    let target = track.segments.iter().map(|s| s.seconds).fold(1.0_f64, f64::max).ceil() as u64;
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n{}\n#EXT-X-MAP:URI=\"{}\"\n",
        if ended { hls::VOD } else { hls::EVENT },
        init_name(&track.name)
    );
    for s in &track.segments {
        let _ = writeln!(out, "#EXTINF:{:.6},\n{}", s.seconds, s.uri);
    }
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// The HLS master over `rungs` (with each one's video codec, RFC 6381) and the audio group,
/// as ffmpeg writes it: the declared bitrates plus 10%, the audio-only variant last.
pub fn master_playlist(rungs: &[Rung], codecs: &[String], has_audio: bool, audio_kbps: u32) -> String {
    let audio_bps = if has_audio { u64::from(audio_kbps) * 1000 } else { 0 };
    let mut master = String::from("#EXTM3U\n#EXT-X-VERSION:7\n");
    if has_audio {
        let _ = writeln!(
            master,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"group_aud\",NAME=\"audio_0\",DEFAULT=YES,URI=\"{AUDIO}/{PLAYLIST}\""
        );
    }
    for (rung, video) in rungs.iter().zip(codecs) {
        let codecs = if has_audio { format!("{video},mp4a.40.2") } else { video.clone() };
        let bandwidth = (u64::from(rung.video_bitrate_kbps) * 1000 + audio_bps) * 11 / 10;
        let _ = write!(
            master,
            "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION={}x{},CODECS=\"{codecs}\"",
            rung.width, rung.height
        );
        if has_audio {
            master.push_str(",AUDIO=\"group_aud\"");
        }
        let _ = writeln!(master, "\n{}/{PLAYLIST}\n", rung.name);
    }
    if has_audio {
        let _ = writeln!(
            master,
            "#EXT-X-STREAM-INF:BANDWIDTH={},CODECS=\"mp4a.40.2\",AUDIO=\"group_aud\"\n{AUDIO}/{PLAYLIST}\n",
            audio_bps * 11 / 10
        );
    }
    master
}

/// Adds `offset` (in the track's timescale) to the decode time of every fragment of a
/// segment: its `moof/traf/tfdt` boxes.
pub(crate) fn retime(segment: &mut [u8], offset: u64) -> Result<(), MediaError> {
    let bad = |why: &str| MediaError::Tool(format!("cannot retime a segment: {why}"));
    let mut found = false;
    for (kind, body) in boxes(segment, 0, segment.len()).map_err(|_| bad("bad box"))? {
        if kind != *b"moof" {
            continue;
        }
        for (kind, traf) in boxes(segment, body.start, body.end).map_err(|_| bad("bad moof"))? {
            if kind != *b"traf" {
                continue;
            }
            for (kind, tfdt) in boxes(segment, traf.start, traf.end).map_err(|_| bad("bad traf"))? {
                if kind != *b"tfdt" {
                    continue;
                }
                // A full box: version (1 byte), flags (3), then the time (8 bytes in v1, 4 in v0).
                let at = tfdt.start + 4;
                if segment[tfdt.start] == 1 && tfdt.end >= at + 8 {
                    let field = &mut segment[at..at + 8];
                    let v = u64::from_be_bytes(field.try_into().expect("8 bytes")) + offset;
                    field.copy_from_slice(&v.to_be_bytes());
                } else if tfdt.end >= at + 4 {
                    let field = &mut segment[at..at + 4];
                    let v = u64::from(u32::from_be_bytes(field.try_into().expect("4 bytes"))) + offset;
                    let v = u32::try_from(v).map_err(|_| bad("decode time past a 32-bit tfdt"))?;
                    field.copy_from_slice(&v.to_be_bytes());
                } else {
                    return Err(bad("short tfdt"));
                }
                found = true;
            }
        }
    }
    if found { Ok(()) } else { Err(bad("no tfdt box")) }
}

/// An ISO BMFF box: its type and the range of its body.
type Mp4Box = ([u8; 4], std::ops::Range<usize>);

/// The boxes between `start` and `end`.
fn boxes(bytes: &[u8], start: usize, end: usize) -> Result<Vec<Mp4Box>, ()> {
    let mut out = Vec::new();
    let mut at = start;
    while at + 8 <= end {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().map_err(|_| ())?) as usize;
        let kind: [u8; 4] = bytes[at + 4..at + 8].try_into().map_err(|_| ())?;
        let (header, size) = match size {
            1 => {
                let large = bytes.get(at + 8..at + 16).ok_or(())?;
                (16, u64::from_be_bytes(large.try_into().map_err(|_| ())?) as usize)
            }
            0 => (8, end - at),
            n => (8, n),
        };
        if size < header || at + size > end {
            return Err(());
        }
        out.push((kind, at + header..at + size));
        at += size;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_the_file_on_segment_boundaries() {
        let s = spans(600.0, 60, 60, 4);
        assert_eq!(s.len(), 10);
        assert_eq!((s[1].start_seconds, s[1].duration_seconds, s[1].first_segment), (60.0, 60.0, 15));
        assert_eq!(s[9].start_seconds, 540.0);
        // 62 s: 60 s, and the 2 s left join it; chunk lengths round up to whole segments.
        let s = spans(62.0, 58, 58, 4);
        assert_eq!(s.len(), 1);
        assert!(s[0].duration_seconds >= 62.0);
        let s = spans(130.0, 60, 60, 4);
        assert_eq!(s.iter().map(|s| s.first_segment).collect::<Vec<_>>(), vec![0, 15, 30]);
        assert!(s[2].start_seconds + s[2].duration_seconds >= 130.0);
        // A short first span (to play early), then full ones, numbered on.
        let s = spans(600.0, 10, 60, 4);
        assert_eq!(s.len(), 11);
        assert_eq!((s[0].duration_seconds, s[1].start_seconds, s[1].first_segment), (12.0, 12.0, 3));
        assert_eq!((s[10].start_seconds, s[10].first_segment), (552.0, 138));
        assert!(s[10].start_seconds + s[10].duration_seconds >= 600.0);
    }

    fn fragment(version: u8, tfdt: u64) -> Vec<u8> {
        let tfdt_body: Vec<u8> = if version == 1 {
            [vec![1, 0, 0, 0], tfdt.to_be_bytes().to_vec()].concat()
        } else {
            [vec![0, 0, 0, 0], (tfdt as u32).to_be_bytes().to_vec()].concat()
        };
        let wrap = |kind: &[u8; 4], body: &[u8]| {
            [((body.len() + 8) as u32).to_be_bytes().to_vec(), kind.to_vec(), body.to_vec()].concat()
        };
        let traf = wrap(b"traf", &[wrap(b"tfhd", &[0; 8]), wrap(b"tfdt", &tfdt_body)].concat());
        let moof = wrap(b"moof", &[wrap(b"mfhd", &[0; 8]), traf].concat());
        [moof, wrap(b"mdat", b"frames")].concat()
    }

    #[test]
    fn retiming_moves_every_fragments_decode_time() {
        for version in [0, 1] {
            let mut seg = [fragment(version, 512), fragment(version, 1024)].concat();
            retime(&mut seg, 184_320).unwrap();
            let mut times = Vec::new();
            for (_, moof) in boxes(&seg, 0, seg.len()).unwrap().into_iter().filter(|(k, _)| k == b"moof") {
                let traf =
                    boxes(&seg, moof.start, moof.end).unwrap().into_iter().find(|(k, _)| k == b"traf").unwrap().1;
                let tfdt =
                    boxes(&seg, traf.start, traf.end).unwrap().into_iter().find(|(k, _)| k == b"tfdt").unwrap().1;
                times.push(if version == 1 {
                    u64::from_be_bytes(seg[tfdt.start + 4..tfdt.start + 12].try_into().unwrap())
                } else {
                    u64::from(u32::from_be_bytes(seg[tfdt.start + 4..tfdt.start + 8].try_into().unwrap()))
                });
            }
            assert_eq!(times, vec![184_832, 185_344]);
        }
        assert!(retime(&mut b"\0\0\0\x0cmdatxxxx".to_vec(), 1).is_err(), "no fragment: refused");
        assert!(retime(&mut b"\0\0\0\xffmoof".to_vec(), 1).is_err(), "a box past the end: refused");
    }

    #[test]
    fn playlists_are_vod_over_the_listed_segments() {
        let track = TrackSegments {
            name: "720p".into(),
            segments: vec![
                Segment { uri: "seg_00000.m4s".into(), seconds: 4.0, bytes: 10 },
                Segment { uri: "seg_00001.m4s".into(), seconds: 2.5, bytes: 5 },
            ],
        };
        let text = media_playlist(&track, true);
        assert!(!media_playlist(&track, false).contains("ENDLIST"));
        let parsed = hls::parse_media(&text);
        assert_eq!(parsed.init.as_deref(), Some("init_720p.mp4"));
        assert_eq!(parsed.segments.len(), 2);
        assert!(parsed.ended && text.contains(hls::VOD) && text.contains("#EXT-X-TARGETDURATION:4\n"));
    }
}
