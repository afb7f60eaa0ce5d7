//! One supervised ffmpeg/ffprobe child: killed on cancel, on timeout and when the future is
//! dropped; stdout handed over line by line; stderr reduced to a bounded summary.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::MediaError;

/// How many stderr lines are kept for building an error reason.
const TAIL_LINES: usize = 20;
/// Longest stderr line kept (ffmpeg's own lines are far shorter).
const MAX_LINE: usize = 400;
/// ffmpeg prints this once per packet it failed to decode.
const DECODE_ERROR: &str = "Error while decoding stream";

/// What a child wrote to stderr, bounded in memory however much it wrote.
#[derive(Debug, Default, Clone)]
pub(crate) struct StderrSummary {
    /// The last lines, oldest first.
    pub tail: Vec<String>,
    /// Packets the decoder rejected.
    pub decode_errors: u64,
    /// The first line that reported a decode problem, for the reason text.
    pub first_decode_error: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stderr: StderrSummary,
}

/// Runs `program args`, calling `on_stdout_line` for every stdout line, until it exits, the
/// token is cancelled (→ `Cancelled`) or `timeout` passes (→ `Tool("… timed out …")`). The
/// child is killed and reaped in both cases. A non-zero exit is returned, not judged: the
/// caller knows what the failure means.
pub(crate) async fn run(
    program: &Path,
    args: &[OsString],
    timeout: Duration,
    cancel: &CancellationToken,
    mut on_stdout_line: impl FnMut(&str),
) -> Result<Finished, MediaError> {
    let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "tool".into());
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => MediaError::Tool(format!("{} is not installed", program.display())),
            _ => MediaError::Tool(format!("cannot start {}: {e}", program.display())),
        })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let stderr_task = tokio::spawn(summarise(stderr));

    let mut stdout = BufReader::new(stdout);
    let mut line = Vec::new();
    let mut stdout_open = true;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let status = loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                kill(&mut child).await;
                return Err(MediaError::Cancelled);
            }
            _ = &mut deadline => {
                kill(&mut child).await;
                return Err(MediaError::Tool(format!("{name} timed out after {} s", timeout.as_secs())));
            }
            // read_until keeps partial data in `line` when another branch wins, so no byte is lost.
            read = stdout.read_until(b'\n', &mut line), if stdout_open => match read {
                Ok(0) | Err(_) => stdout_open = false,
                Ok(_) => {
                    on_stdout_line(String::from_utf8_lossy(&line).trim_end());
                    line.clear();
                }
            },
            status = child.wait(), if !stdout_open => {
                break status.map_err(|e| MediaError::Tool(format!("waiting for {name}: {e}")))?;
            }
        }
    };
    // The pipe closes when the child exits; the bound only guards against a stray grandchild.
    let stderr = match tokio::time::timeout(Duration::from_secs(5), stderr_task).await {
        Ok(Ok(summary)) => summary,
        _ => StderrSummary::default(),
    };
    Ok(Finished { status, stderr })
}

async fn kill(child: &mut Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

async fn summarise(stderr: impl AsyncRead + Unpin) -> StderrSummary {
    let mut reader = BufReader::new(stderr);
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut summary = StderrSummary::default();
    let mut buf = Vec::new();
    let mut last_was_decode_error = false;
    while let Ok(n) = reader.read_until(b'\n', &mut buf).await {
        if n == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim();
        if !text.is_empty() {
            let text: String = text.chars().take(MAX_LINE).collect();
            // av_log folds identical consecutive lines into "Last message repeated N times".
            let repeated: Option<u64> =
                text.strip_prefix("Last message repeated ").and_then(|r| r.split(' ').next()?.parse().ok());
            if let (Some(times), true) = (repeated, last_was_decode_error) {
                summary.decode_errors += times;
            }
            last_was_decode_error = text.contains(DECODE_ERROR) || (repeated.is_some() && last_was_decode_error);
            if text.contains(DECODE_ERROR) {
                summary.decode_errors += 1;
                if summary.first_decode_error.is_none() {
                    summary.first_decode_error = Some(text.clone());
                }
            }
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(text);
        }
        buf.clear();
    }
    summary.tail = tail.into();
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn folded_repeats_of_a_decode_error_are_counted() {
        let stderr: &[u8] = b"[h264 @ 0x1] bad\nError while decoding stream #0:0: Invalid data\n    Last message repeated 3 times\nok\n";
        let summary = summarise(stderr).await;
        assert_eq!(summary.decode_errors, 4);
        assert_eq!(summary.first_decode_error.as_deref(), Some("Error while decoding stream #0:0: Invalid data"));
        assert_eq!(summary.tail.len(), 4);
    }

    #[tokio::test]
    async fn the_tail_keeps_only_the_last_lines() {
        let stderr: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let summary = summarise(stderr.as_bytes()).await;
        assert_eq!(summary.tail.len(), TAIL_LINES);
        assert_eq!(summary.tail.last().map(String::as_str), Some("line 99"));
    }
}
