//! Reading the playlists ffmpeg wrote: the master (variants, bandwidths, codecs) and each
//! rendition's media playlist (init segment, segments with durations). Line parsing only:
//! we read our own ffmpeg's output, not arbitrary HLS.

use std::path::{Path, PathBuf};

use super::layout::PLAYLIST;

pub(crate) const EVENT: &str = "#EXT-X-PLAYLIST-TYPE:EVENT";
pub(crate) const VOD: &str = "#EXT-X-PLAYLIST-TYPE:VOD";

/// One `#EXT-X-STREAM-INF` entry of a master playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Variant {
    pub uri: String,
    pub bandwidth: u64,
    pub resolution: Option<(u32, u32)>,
    pub codecs: String,
}

pub(crate) fn parse_master(text: &str) -> Vec<Variant> {
    let mut variants = Vec::new();
    let mut pending: Option<Variant> = None;
    for line in text.lines().map(str::trim) {
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            let mut v = Variant { uri: String::new(), bandwidth: 0, resolution: None, codecs: String::new() };
            for (key, value) in attributes(attrs) {
                match key {
                    "BANDWIDTH" => v.bandwidth = value.parse().unwrap_or(0),
                    "RESOLUTION" => {
                        v.resolution = value.split_once('x').and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                    }
                    "CODECS" => v.codecs = value.to_string(),
                    _ => {}
                }
            }
            pending = Some(v);
        } else if !line.is_empty()
            && !line.starts_with('#')
            && let Some(mut v) = pending.take()
        {
            v.uri = line.to_string();
            variants.push(v);
        }
    }
    variants
}

/// `KEY=value,KEY="quoted, with commas"` pairs.
fn attributes(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once('=') {
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((v, n)) => (v, n.strip_prefix(',').unwrap_or(n)),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        out.push((key.trim(), value));
        rest = next;
    }
    out
}

/// A rendition's media playlist.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MediaPlaylist {
    /// `#EXT-X-MAP` URI, relative to the playlist.
    pub init: Option<String>,
    /// Segment URIs and their `#EXTINF` durations, in order.
    pub segments: Vec<(String, f64)>,
    pub ended: bool,
}

impl MediaPlaylist {
    pub fn duration(&self) -> f64 {
        self.segments.iter().map(|(_, d)| d).sum()
    }
}

/// Parses a media playlist; a last line without its newline (a playlist being written) is
/// ignored, so only whole entries count.
pub(crate) fn parse_media(text: &str) -> MediaPlaylist {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    let mut playlist = MediaPlaylist::default();
    let mut duration: Option<f64> = None;
    for line in complete.lines().map(str::trim) {
        if let Some(attrs) = line.strip_prefix("#EXT-X-MAP:") {
            playlist.init = attributes(attrs).into_iter().find(|(k, _)| *k == "URI").map(|(_, v)| v.to_string());
        } else if let Some(info) = line.strip_prefix("#EXTINF:") {
            duration = info.split(',').next().and_then(|d| d.trim().parse().ok());
        } else if line == "#EXT-X-ENDLIST" {
            playlist.ended = true;
        } else if !line.is_empty()
            && !line.starts_with('#')
            && let Some(d) = duration.take()
        {
            playlist.segments.push((line.to_string(), d));
        }
    }
    playlist
}

/// Segments of `rung` (a rung name or "audio") that ffmpeg has finished and listed in the
/// rung's playlist so far, relative to `out_dir` (`720p/seg_00000.m4s`, …). Safe to call while
/// `encode` runs: ffmpeg writes segments and playlists under a temporary name and renames them
/// when complete. While encoding, `index.m3u8` is an EVENT playlist (growing, no ENDLIST; fine
/// to serve) and `master.m3u8` appears with the first segments; `encode` turns the playlists
/// into VOD ones before returning. The init segment ([`super::init_file`]) exists once a segment is
/// listed.
pub async fn completed_segments(out_dir: &Path, rung: &str) -> Vec<PathBuf> {
    let Ok(text) = tokio::fs::read_to_string(out_dir.join(rung).join(PLAYLIST)).await else {
        return Vec::new();
    };
    parse_media(&text).segments.into_iter().map(|(uri, _)| Path::new(rung).join(uri)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_entries_keep_quoted_commas_together() {
        let text = "#EXTM3U\n#EXT-X-VERSION:7\n\
            #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"group_aud\",NAME=\"audio_0\",DEFAULT=YES,URI=\"audio/index.m3u8\"\n\
            #EXT-X-STREAM-INF:BANDWIDTH=3220800,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\",AUDIO=\"group_aud\"\n\
            720p/index.m3u8\n\n\
            #EXT-X-STREAM-INF:BANDWIDTH=140800,CODECS=\"mp4a.40.2\",AUDIO=\"group_aud\"\naudio/index.m3u8\n";
        let v = parse_master(text);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].uri, "720p/index.m3u8");
        assert_eq!(v[0].bandwidth, 3_220_800);
        assert_eq!(v[0].resolution, Some((1280, 720)));
        assert_eq!(v[0].codecs, "avc1.64001f,mp4a.40.2");
        assert_eq!(v[1].resolution, None);
    }

    #[test]
    fn a_half_written_last_entry_is_not_listed() {
        let text = "#EXTM3U\n#EXT-X-MAP:URI=\"init_720p.mp4\"\n#EXTINF:4.000000,\nseg_00000.m4s\n#EXTINF:4.0,\nseg_000";
        let p = parse_media(text);
        assert_eq!(p.init.as_deref(), Some("init_720p.mp4"));
        assert_eq!(p.segments, vec![("seg_00000.m4s".to_string(), 4.0)]);
        assert!(!p.ended);
    }
}
