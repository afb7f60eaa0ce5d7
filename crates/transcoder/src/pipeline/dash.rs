//! A static DASH manifest over the fMP4 segments ffmpeg wrote for HLS, so both protocols serve
//! the same files. Written by hand: the document is small and every name in it is ours.

use std::fmt::Write as _;

/// One representation: where its files are and how its segments are timed.
#[derive(Debug, Clone)]
pub(crate) struct Track {
    pub id: String,
    /// Init segment, relative to the manifest.
    pub init: String,
    /// Media template relative to the manifest, e.g. `720p/seg_$Number%05d$.m4s`.
    pub media: String,
    pub start_number: u64,
    /// Units per second of `durations` (the track's own timescale, from its init segment).
    pub timescale: u64,
    pub durations: Vec<u64>,
    pub bandwidth: u64,
    pub codecs: String,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Video { width: u32, height: u32, frame_rate: Option<String> },
    Audio { sample_rate: u64, channels: u32 },
}

/// Segment durations in `timescale` units from `#EXTINF` seconds, rounded on the running
/// total so no rounding error accumulates.
pub(crate) fn durations(seconds: &[f64], timescale: u64) -> Vec<u64> {
    let mut total = 0.0;
    let mut previous = 0u64;
    seconds
        .iter()
        .map(|s| {
            total += s;
            let end = (total * timescale as f64).round() as u64;
            let d = end.saturating_sub(previous);
            previous = end;
            d
        })
        .collect()
}

/// The first track's timescale from an init segment's `mdhd` box (for audio, the sample rate).
pub(crate) fn media_timescale(init: &[u8]) -> Option<u64> {
    let at = init.windows(4).position(|w| w == b"mdhd")? + 4;
    // version (1), flags (3), then creation and modification times: 4 bytes each in v0, 8 in v1.
    let offset = if *init.get(at)? == 1 { at + 4 + 16 } else { at + 4 + 8 };
    let b = init.get(offset..offset + 4)?;
    Some(u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))).filter(|t| *t > 0)
}

/// DASH `frameRate` (an integer or a ratio, never a decimal).
pub(crate) fn frame_rate(fps: f64) -> Option<String> {
    if !(fps.is_finite() && fps > 0.0) {
        return None;
    }
    if (fps - fps.round()).abs() < 0.01 {
        return Some(format!("{}", fps.round() as u64));
    }
    let ntsc = fps * 1.001;
    if (ntsc - ntsc.round()).abs() < 0.01 {
        return Some(format!("{}/1001", ntsc.round() as u64 * 1000));
    }
    Some(format!("{}/1000", (fps * 1000.0).round() as u64))
}

pub(crate) fn manifest(duration_seconds: f64, video: &[Track], audio: Option<&Track>) -> String {
    let max_segment = video
        .iter()
        .chain(audio)
        .flat_map(|t| t.durations.iter().map(move |d| *d as f64 / t.timescale as f64))
        .fold(0.0_f64, f64::max);
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" \
         type=\"static\" mediaPresentationDuration=\"{}\" maxSegmentDuration=\"{}\" minBufferTime=\"{}\">",
        iso(duration_seconds),
        iso(max_segment),
        iso(max_segment.max(2.0)),
    );
    out.push_str("  <Period id=\"0\" start=\"PT0S\">\n");
    if !video.is_empty() {
        let (max_w, max_h) = video.iter().fold((0, 0), |(w, h), t| match t.kind {
            Kind::Video { width, height, .. } => (w.max(width), h.max(height)),
            Kind::Audio { .. } => (w, h),
        });
        let _ = writeln!(
            out,
            "    <AdaptationSet id=\"0\" contentType=\"video\" mimeType=\"video/mp4\" segmentAlignment=\"true\" \
             startWithSAP=\"1\" maxWidth=\"{max_w}\" maxHeight=\"{max_h}\">"
        );
        for t in video {
            representation(&mut out, t);
        }
        out.push_str("    </AdaptationSet>\n");
    }
    if let Some(t) = audio {
        out.push_str(
            "    <AdaptationSet id=\"1\" contentType=\"audio\" mimeType=\"audio/mp4\" segmentAlignment=\"true\" \
             startWithSAP=\"1\" lang=\"und\">\n",
        );
        representation(&mut out, t);
        out.push_str("    </AdaptationSet>\n");
    }
    out.push_str("  </Period>\n</MPD>\n");
    out
}

fn representation(out: &mut String, t: &Track) {
    let _ = write!(out, "      <Representation id=\"{}\" codecs=\"{}\" bandwidth=\"{}\"", t.id, t.codecs, t.bandwidth);
    match &t.kind {
        Kind::Video { width, height, frame_rate } => {
            let _ = write!(out, " width=\"{width}\" height=\"{height}\" sar=\"1:1\"");
            if let Some(f) = frame_rate {
                let _ = write!(out, " frameRate=\"{f}\"");
            }
            out.push_str(">\n");
        }
        Kind::Audio { sample_rate, channels } => {
            let _ = writeln!(out, " audioSamplingRate=\"{sample_rate}\">");
            let _ = writeln!(
                out,
                "        <AudioChannelConfiguration \
                 schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{channels}\"/>"
            );
        }
    }
    let _ = writeln!(
        out,
        "        <SegmentTemplate timescale=\"{}\" initialization=\"{}\" media=\"{}\" startNumber=\"{}\">",
        t.timescale, t.init, t.media, t.start_number
    );
    out.push_str("          <SegmentTimeline>\n");
    let mut first = true;
    for run in t.durations.chunk_by(|a, b| a == b) {
        let t0 = if first { " t=\"0\"" } else { "" };
        first = false;
        let repeat = if run.len() > 1 { format!(" r=\"{}\"", run.len() - 1) } else { String::new() };
        let _ = writeln!(out, "            <S{t0} d=\"{}\"{repeat}/>", run[0]);
    }
    out.push_str("          </SegmentTimeline>\n        </SegmentTemplate>\n      </Representation>\n");
}

/// xs:duration with millisecond precision: `PT10.017S`.
fn iso(seconds: f64) -> String {
    format!("PT{:.3}S", seconds.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_on_the_running_total() {
        assert_eq!(durations(&[4.017052, 3.993832, 2.020136], 44100), vec![177152, 176128, 89088]);
        assert_eq!(durations(&[4.0, 4.0, 2.0], 15360), vec![61440, 61440, 30720]);
    }

    #[test]
    fn frame_rates_are_integers_or_ratios() {
        assert_eq!(frame_rate(30.0).as_deref(), Some("30"));
        assert_eq!(frame_rate(29.97).as_deref(), Some("30000/1001"));
        assert_eq!(frame_rate(12.5).as_deref(), Some("12500/1000"));
    }

    #[test]
    fn equal_segments_collapse_into_repeats() {
        let t = Track {
            id: "720p".into(),
            init: "720p/init_720p.mp4".into(),
            media: "720p/seg_$Number%05d$.m4s".into(),
            start_number: 0,
            timescale: 15360,
            durations: vec![61440, 61440, 30720],
            bandwidth: 3_000_000,
            codecs: "avc1.64001f".into(),
            kind: Kind::Video { width: 1280, height: 720, frame_rate: Some("30".into()) },
        };
        let mpd = manifest(10.0, &[t], None);
        assert!(mpd.contains("<S t=\"0\" d=\"61440\" r=\"1\"/>\n            <S d=\"30720\"/>"), "{mpd}");
        assert!(mpd.contains("mediaPresentationDuration=\"PT10.000S\""));
    }
}
