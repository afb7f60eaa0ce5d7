//! Which renditions to make of a source: never larger than the source, aspect kept, even sizes
//! (4:2:0 chroma needs them).

use super::SourceInfo;
use super::layout::{Rung, RungSpec};

/// 1080p down to 240p; peak rates 7% over the average.
pub fn default_rungs() -> Vec<RungSpec> {
    [
        ("1080p", 1080, 5000, 5350),
        ("720p", 720, 2800, 3000),
        ("480p", 480, 1400, 1500),
        ("360p", 360, 800, 856),
        ("240p", 240, 400, 428),
    ]
    .into_iter()
    .map(|(name, height, video_bitrate_kbps, max_bitrate_kbps)| RungSpec {
        name: name.into(),
        height,
        video_bitrate_kbps,
        max_bitrate_kbps,
    })
    .collect()
}

/// The rungs whose short side fits in the source's short side, highest first. A source
/// smaller than every rung gets one rung at its own (even) size, with the smallest rung's
/// bitrate scaled by pixel count.
pub fn ladder(source: &SourceInfo, specs: &[RungSpec]) -> Vec<Rung> {
    let (w, h) = (source.width.max(2), source.height.max(2));
    let (short, long) = (w.min(h), w.max(h));
    let portrait = h > w;
    let size = |short_side: u32| {
        let long_side = even_round(f64::from(short_side) * f64::from(long) / f64::from(short)).min(even_floor(long));
        if portrait { (short_side, long_side) } else { (long_side, short_side) }
    };
    let mut specs: Vec<&RungSpec> = specs.iter().collect();
    specs.sort_by_key(|s| std::cmp::Reverse(s.height));
    let mut rungs: Vec<Rung> = Vec::new();
    for spec in specs.iter().filter(|s| s.height > 0 && s.height <= short) {
        let (width, height) = size(even_floor(spec.height));
        if rungs.iter().any(|r| r.name == spec.name || (r.width, r.height) == (width, height)) {
            continue;
        }
        rungs.push(Rung {
            name: spec.name.clone(),
            width,
            height,
            video_bitrate_kbps: spec.video_bitrate_kbps,
            max_bitrate_kbps: spec.max_bitrate_kbps,
        });
    }
    if rungs.is_empty() {
        let (width, height) = size(even_floor(short));
        let smallest = specs.last();
        let scale = |kbps: u32, spec: &RungSpec| {
            let spec_pixels = f64::from(spec.height) * f64::from(spec.height) * 16.0 / 9.0;
            let ratio = (f64::from(width) * f64::from(height) / spec_pixels).min(1.0);
            ((f64::from(kbps) * ratio).round() as u32).max(64)
        };
        let (video, max) = match smallest {
            Some(s) => (scale(s.video_bitrate_kbps, s), scale(s.max_bitrate_kbps, s)),
            None => (400, 428),
        };
        rungs.push(Rung {
            name: format!("{}p", width.min(height)),
            width,
            height,
            video_bitrate_kbps: video,
            max_bitrate_kbps: max.max(video),
        });
    }
    rungs
}

fn even_round(x: f64) -> u32 {
    (((x / 2.0).round() as u32) * 2).max(2)
}

fn even_floor(x: u32) -> u32 {
    (x & !1).max(2)
}
