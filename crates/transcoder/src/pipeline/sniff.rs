//! Container detection by magic bytes, so an upload that is plainly no video (text, an image,
//! an archive, a program) is refused before it is stored or handed to ffmpeg.

/// The container a file's first bytes announce, or `None` when they match no video container.
///
/// 64 bytes recognise everything but MPEG-TS reliably; give 512 or more so a TS file is checked
/// at its second and third sync bytes (with fewer, a TS file is accepted only when it opens with
/// a PAT or SDT packet, as every muxer writes).
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(4, b"ftyp") {
        return Some(match head.get(8..12) {
            Some(b"qt  ") => "mov",
            Some(brand) if brand.starts_with(b"3g") => "3gp",
            _ => "mp4",
        });
    }
    // QuickTime files from before `ftyp` open with one of these boxes.
    if [b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"].iter().any(|b| at(4, *b)) && box_size_plausible(head) {
        return Some("mov");
    }
    if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        let webm = head.windows(4).any(|w| w == b"webm");
        return Some(if webm { "webm" } else { "matroska" });
    }
    if at(0, b"RIFF") && (at(8, b"AVI ") || at(8, b"AVIX")) {
        return Some("avi");
    }
    if at(0, b"FLV\x01") {
        return Some("flv");
    }
    if at(0, b"OggS") {
        return Some("ogg");
    }
    if at(0, &[0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11]) {
        return Some("asf");
    }
    if at(0, &[0x00, 0x00, 0x01, 0xBA]) {
        return Some("mpegps");
    }
    // SMPTE universal label of a partition pack.
    if at(0, &[0x06, 0x0E, 0x2B, 0x34, 0x02, 0x05, 0x01, 0x01]) {
        return Some("mxf");
    }
    if is_transport_stream(head, 0, 188) || is_transport_stream(head, 4, 192) {
        return Some("mpegts");
    }
    None
}

fn box_size_plausible(head: &[u8]) -> bool {
    head.get(0..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).is_some_and(|size| size == 1 || size >= 8)
}

/// 188-byte packets (or 192 with a 4-byte timecode, M2TS), each opening with 0x47.
fn is_transport_stream(head: &[u8], start: usize, packet: usize) -> bool {
    if head.get(start) != Some(&0x47) {
        return false;
    }
    let syncs: Vec<bool> = (1..3).filter_map(|k| head.get(start + k * packet).map(|b| *b == 0x47)).collect();
    if !syncs.is_empty() {
        return syncs.iter().all(|s| *s);
    }
    // Too short to see the next packet: accept a first packet carrying the PAT (PID 0) or the
    // SDT (PID 0x11) with payload_unit_start set, which text never looks like (it needs NULs).
    let Some(h) = head.get(start..start + 4) else { return false };
    let pid = (u16::from(h[1] & 0x1F) << 8) | u16::from(h[2]);
    h[1] & 0x80 == 0 && h[1] & 0x40 != 0 && (pid == 0 || pid == 0x11) && h[3] & 0x30 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_heads_never_panic() {
        for len in 0..16 {
            let _ = sniff(&b"\x00\x00\x00\x18ftypisom\x1a\x45\xdf\xa3"[..len]);
        }
    }

    #[test]
    fn a_lone_g_is_not_a_transport_stream() {
        assert_eq!(sniff(b"G"), None);
        assert_eq!(sniff(b"Good morning, this is text"), None);
        assert_eq!(sniff(&[0x47, 0x40, 0x11, 0x10, 0, 0]), Some("mpegts"));
    }
}
