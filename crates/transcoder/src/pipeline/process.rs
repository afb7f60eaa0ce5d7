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

use super::{Limits, MediaError};

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
    limits: Limits,
    args: &[OsString],
    timeout: Duration,
    cancel: &CancellationToken,
    mut on_stdout_line: impl FnMut(&str),
) -> Result<Finished, MediaError> {
    let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "tool".into());
    let mut command = if limits.memory_bytes > 0 || limits.cpu_seconds > 0 {
        // prlimit(1) sets the limits on itself and execs the tool (same pid: kill reaches it).
        let mut c = Command::new("prlimit");
        if limits.memory_bytes > 0 {
            c.arg(format!("--as={}", limits.memory_bytes));
            // glibc reserves 64 MiB of address space per malloc arena (up to 8 per CPU):
            // without a cap on arenas a many-core host would hit RLIMIT_AS before using memory.
            c.env("MALLOC_ARENA_MAX", "2");
        }
        if limits.cpu_seconds > 0 {
            // SIGXCPU at the soft limit; SIGKILL a few seconds on if it is ignored.
            c.arg(format!("--cpu={}:{}", limits.cpu_seconds, limits.cpu_seconds.saturating_add(5)));
        }
        c.arg("--").arg(program);
        c
    } else {
        Command::new(program)
    };
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound if limits != Limits::default() => {
            MediaError::Tool(format!("prlimit (util-linux) or {} is not installed", program.display()))
        }
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
    if let Some(exceeded) = exceeded(&name, limits, status, &stderr) {
        return Err(exceeded);
    }
    Ok(Finished { status, stderr })
}

/// A run that died of a limit: SIGXCPU/SIGKILL past the CPU limit, or an allocation failure
/// (abort, crash, or ffmpeg's own "Cannot allocate memory" exit) under the memory limit.
fn exceeded(name: &str, limits: Limits, status: ExitStatus, stderr: &StderrSummary) -> Option<MediaError> {
    use std::os::unix::process::ExitStatusExt as _;
    if status.success() {
        return None;
    }
    // Linux signal numbers.
    const SIGABRT: i32 = 6;
    const SIGBUS: i32 = 7;
    const SIGKILL: i32 = 9;
    const SIGSEGV: i32 = 11;
    const SIGXCPU: i32 = 24;
    let signal = status.signal();
    // ffmpeg catches SIGXCPU and exits with 255 (as after SIGTERM, which nobody here sends).
    let caught = status.code() == Some(255);
    if limits.cpu_seconds > 0 && (caught || matches!(signal, Some(SIGXCPU) | Some(SIGKILL))) {
        return Some(MediaError::Tool(format!(
            "{name} exceeded its CPU-time limit of {} s and was stopped",
            limits.cpu_seconds
        )));
    }
    let out_of_memory = stderr.tail.iter().any(|l| {
        let l = l.to_lowercase();
        // x264 says "malloc of size N failed"; threads that get no stack say EAGAIN; when the
        // allocation fails inside x264's open (seen under load), ffmpeg says only that the
        // encoder would not open (its parameters are checked before any run: `ladder`).
        [
            "cannot allocate memory",
            "out of memory",
            "failed to allocate",
            "malloc of size",
            "temporarily unavailable",
            "error while opening encoder",
        ]
        .iter()
        .any(|m| l.contains(m))
    });
    let crashed = matches!(signal, Some(SIGABRT) | Some(SIGSEGV) | Some(SIGBUS));
    if limits.memory_bytes > 0 && (out_of_memory || crashed) {
        return Some(MediaError::Tool(format!(
            "{name} exceeded its memory limit of {} MiB",
            limits.memory_bytes / (1024 * 1024)
        )));
    }
    None
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
