//! Deciding whose fault a failed ffmpeg/ffprobe run was, and turning its stderr into a reason a
//! video owner can read (no addresses, no server paths).

use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;

use super::MediaError;
use super::process::StderrSummary;

/// stderr fragments that mean the machine, not the upload, is at fault (lower case).
const OURS: &[&str] = &[
    "no space left",
    "cannot allocate memory",
    "out of memory",
    "permission denied",
    "read-only file system",
    "too many open files",
    "unknown encoder",
    "encoder not found",
    "unrecognized option",
    "option not found",
    "error opening output",
    "error initializing output stream",
    "broken pipe",
    "resource temporarily unavailable",
    // Reading the source from the object store (a part of a split job).
    "server returned",
    "http error",
    "connection refused",
    "connection reset",
    "connection timed out",
    "network is unreachable",
    "input/output error",
    "protocol not on whitelist",
];

/// stderr fragments that mean the input is broken or unsupported (lower case).
const THEIRS: &[&str] = &[
    "invalid data found",
    "moov atom not found",
    "partial file",
    "corrupt",
    "error while decoding",
    "invalid nal",
    "error splitting",
    "could not find codec parameters",
    "decoder (codec",
    "not found for input stream",
    "does not contain any stream",
    "output file is empty",
    "nothing was encoded",
    "end of file",
    "truncat",
    "cannot determine format",
    "invalid frame",
    "header missing",
    "missing picture",
    "no frame",
    "unsupported",
    "not supported",
    "error reading header",
    "failed to read",
    "invalid argument",
    "error marking filters as finished",
];

/// Judges a non-zero exit of a run over `input`. `prefix` opens the owner-facing reason, e.g.
/// "the file is truncated or corrupt".
pub(crate) fn judge<I: AsRef<OsStr> + ?Sized>(
    tool: &str,
    status: ExitStatus,
    stderr: &StderrSummary,
    input: &I,
    prefix: &str,
) -> MediaError {
    if let Some(signal) = status.signal() {
        return MediaError::Tool(format!("{tool} was killed by signal {signal}"));
    }
    let lower: Vec<String> = stderr.tail.iter().map(|l| l.to_lowercase()).collect();
    if let Some(i) = lower.iter().position(|l| OURS.iter().any(|p| l.contains(p))) {
        return MediaError::Tool(format!("{tool} failed ({status}): {}", clean(&stderr.tail[i], input)));
    }
    let theirs = lower.iter().position(|l| THEIRS.iter().any(|p| l.contains(p)));
    match theirs {
        Some(i) => {
            let line = stderr.first_decode_error.as_deref().unwrap_or(&stderr.tail[i]);
            MediaError::Invalid(format!("{prefix}: {}", clean(line, input)))
        }
        None => {
            let last = stderr.tail.last().map(|l| clean(l, input)).unwrap_or_else(|| "no error message".into());
            MediaError::Tool(format!("{tool} failed ({status}): {last}"))
        }
    }
}

/// Strips what only makes sense on our machine: the `[h264 @ 0x55…]` context, the input's
/// path or URL (and any other URL: a signed one is a credential), stream numbers; then
/// bounds the length.
pub(crate) fn clean<I: AsRef<OsStr> + ?Sized>(line: &str, input: &I) -> String {
    let mut text = line.to_string();
    let path = input.as_ref().to_string_lossy();
    for p in [format!("file:{path}"), path.to_string()] {
        if !p.is_empty() {
            text = text.replace(&p, "");
        }
    }
    text = without_urls(&text);
    // "[mov,mp4,m4a @ 0x5588…] moov atom not found" → "moov atom not found"
    while let Some(rest) = text.strip_prefix('[').and_then(|t| t.split_once("] ").map(|(_, r)| r.to_string())) {
        text = rest;
    }
    if let Some((_, reason)) = text.strip_prefix("Error while decoding stream #").and_then(|r| r.split_once(": ")) {
        text = reason.to_string();
    }
    let text = friendly(text.trim_start_matches([':', ' ']).trim());
    let mut out: String = text.chars().take(160).collect();
    if out.is_empty() {
        out = "unreadable".into();
    }
    out
}

/// Every `http://…`/`https://…` up to the next space or quote becomes "the source".
fn without_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["http://", "https://"].iter().filter_map(|s| rest.find(s)).min() {
        out.push_str(&rest[..at]);
        out.push_str("the source");
        let end = rest[at..].find(|c: char| c.is_whitespace() || c == '\'' || c == '"').map_or(rest.len(), |e| at + e);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// ffmpeg's jargon for the commonest problems, in words an uploader can act on.
fn friendly(text: &str) -> &str {
    const PLAIN: &[(&str, &str)] = &[
        ("moov atom not found", "its MP4 index (moov) is missing; the upload may be incomplete"),
        ("Invalid data found when processing input", "its data is unrecognised or damaged"),
        ("partial file", "the file ends early"),
        ("Invalid NAL unit size", "the H.264 data is damaged"),
        ("Error splitting the input into NAL units", "the H.264 data is damaged"),
    ];
    PLAIN.iter().find(|(jargon, _)| text.contains(jargon)).map(|(_, plain)| *plain).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn clean_drops_context_paths_and_stream_numbers() {
        let input = Path::new("/tmp/job/source");
        assert_eq!(
            clean("[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d1] moov atom not found", input),
            "its MP4 index (moov) is missing; the upload may be incomplete"
        );
        assert_eq!(
            clean("file:/tmp/job/source: Invalid data found when processing input", input),
            "its data is unrecognised or damaged"
        );
        assert_eq!(
            clean("Error while decoding stream #0:1: channel element 0.0 is not allocated", input),
            "channel element 0.0 is not allocated"
        );
        assert_eq!(clean("[h264 @ 0x1] /tmp/job/source is odd", input), "is odd");
    }

    #[test]
    fn no_url_survives_and_http_failures_are_ours() {
        let url = "http://127.0.0.1:9000/b/uploads/v?X-Amz-Signature=abc";
        let status = ExitStatus::from_raw(1 << 8);
        let line = format!("[http @ 0x1] {url}: Server returned 403 Forbidden (access denied)");
        let summary = StderrSummary { tail: vec![line.clone()], ..Default::default() };
        match judge("ffmpeg", status, &summary, url, "bad") {
            MediaError::Tool(reason) => assert!(!reason.contains("Signature") && reason.contains("403"), "{reason}"),
            other => panic!("an unreachable source is ours to retry: {other:?}"),
        }
        let other = "Opening 'https://s3.example/k?X-Amz-Credential=id' failed";
        assert_eq!(clean(other, Path::new("/x")), "Opening 'the source' failed");
    }

    #[test]
    fn machine_problems_are_ours_and_input_problems_theirs() {
        let status = ExitStatus::from_raw(1 << 8);
        let summary = |line: &str| StderrSummary { tail: vec![line.to_string()], ..Default::default() };
        let input = Path::new("/x");
        assert!(matches!(
            judge("ffmpeg", status, &summary("out/720p/seg_00001.m4s: No space left on device"), input, "bad"),
            MediaError::Tool(_)
        ));
        assert!(matches!(
            judge("ffmpeg", status, &summary("/x: Invalid data found when processing input"), input, "bad"),
            MediaError::Invalid(r) if r == "bad: its data is unrecognised or damaged"
        ));
        assert!(matches!(judge("ffmpeg", status, &summary("something odd"), input, "bad"), MediaError::Tool(_)));
        assert!(matches!(judge("ffmpeg", ExitStatus::from_raw(9), &summary(""), input, "bad"), MediaError::Tool(_)));
    }
}
