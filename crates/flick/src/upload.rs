//! `flick upload FILE --title …`: creates the video through the edge's GraphQL, sends the
//! file over tus in 8 MiB chunks with a progress line, and resumes an interrupted upload
//! (the upload URL is remembered beside the file, keyed by its size and modification time).
//!
//! `--parallel N` cuts the file into N ranges sent at once as partial uploads, then joins
//! them with a final upload (tus concatenation); each range resumes as a single upload does.
//! Memory stays at one chunk per range in flight.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CHUNK: usize = 8 * 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// The video file.
    pub file: PathBuf,
    #[arg(long)]
    pub title: Option<String>,
    #[arg(long, default_value = "")]
    pub description: String,
    /// Comma-separated tags.
    #[arg(long, value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Who may watch the video.
    #[arg(long, value_enum, ignore_case = true, default_value_t = Visibility::Public)]
    pub visibility: Visibility,
    /// The platform's edge.
    #[arg(long, env = "FLICK_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An access token (from POST /auth/login).
    #[arg(long, env = "FLICK_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Send the file as this many partial uploads at once, joined at the end (tus
    /// concatenation); 1 sends it as one upload.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub parallel: u64,
}

/// Who may watch the video: GraphQL's `Visibility`, checked before anything is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Visibility {
    Public,
    Unlisted,
    Private,
}

impl Visibility {
    /// The GraphQL enum value.
    fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "PUBLIC",
            Visibility::Unlisted => "UNLISTED",
            Visibility::Private => "PRIVATE",
        }
    }
}

/// What is needed to continue an upload later: kept in `<file>.flick-upload`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Resume {
    size: u64,
    modified_ms: u128,
    video_id: String,
    upload_url: String,
    /// With `--parallel`: the partial uploads, one per range of the file, in order.
    #[serde(default)]
    partials: Vec<String>,
    /// The final upload joining them, once created.
    #[serde(default)]
    final_url: Option<String>,
}

fn resume_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".flick-upload");
    PathBuf::from(name)
}

fn modified_ms(meta: &std::fs::Metadata) -> u128 {
    meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_millis()).unwrap_or(0)
}

pub async fn run(args: UploadArgs) -> anyhow::Result<()> {
    let meta = std::fs::metadata(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let size = meta.len();
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build()?;
    let base = args.url.trim_end_matches('/').to_string();
    let auth = format!("Bearer {}", args.token);
    let saved = resume_path(&args.file);
    let previous: Option<Resume> = std::fs::read(&saved)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|r: &Resume| r.size == size && r.modified_ms == modified_ms(&meta));
    let mut resume = match previous {
        Some(r) => {
            eprintln!("resuming the upload of video {}", r.video_id);
            r
        }
        None => {
            let title = args.title.clone().unwrap_or_else(|| {
                args.file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "Untitled".into())
            });
            let mut r = create_video(&http, &base, &auth, &args, &title, size, modified_ms(&meta)).await?;
            std::fs::write(&saved, serde_json::to_vec(&r)?)?;
            eprintln!("created video {}", r.video_id);
            let parallel = args.parallel.min(size.max(1));
            if parallel > 1 {
                // The upload createVideo opened is not used: it would hold one of the
                // user's open uploads until it expired.
                let single = absolute(&base, &r.upload_url);
                let _ =
                    http.delete(&single).header("authorization", &auth).header("tus-resumable", "1.0.0").send().await;
                for (_, len) in ranges(size, parallel) {
                    r.partials.push(create_partial(&http, &base, &auth, len).await?);
                    std::fs::write(&saved, serde_json::to_vec(&r)?)?;
                }
                eprintln!("sending it as {parallel} partial uploads at once");
            }
            r
        }
    };
    let progress = Progress { size, sent: AtomicU64::new(0), started: Instant::now() };
    if resume.partials.is_empty() {
        let upload_url = absolute(&base, &resume.upload_url);
        send(&http, &upload_url, &auth, &args.file, (0, size), &progress).await?;
    } else {
        if resume.partials.len() as u64 != args.parallel {
            eprintln!("(continuing as the {} partial uploads this upload started with)", resume.partials.len());
        }
        if resume.final_url.is_none() {
            let sends =
                ranges(size, resume.partials.len() as u64).into_iter().zip(&resume.partials).map(|(range, url)| {
                    let url = absolute(&base, url);
                    let (http, auth, file, progress) = (&http, &auth, &args.file, &progress);
                    async move { send(http, &url, auth, file, range, progress).await }
                });
            futures::future::try_join_all(sends).await?;
            let url = create_final(&http, &base, &auth, &resume.video_id, &resume.partials).await?;
            resume.final_url = Some(url);
            std::fs::write(&saved, serde_json::to_vec(&resume)?)?;
        }
        let final_url = absolute(&base, resume.final_url.as_deref().unwrap_or_default());
        if offset_of(&http, &final_url, &auth).await? != size {
            bail!("the final upload {final_url} did not complete");
        }
    }
    let _ = std::fs::remove_file(&saved);
    eprintln!(
        "\nuploaded; transcoding. Follow it with: curl -H 'Authorization: {}…' {base}/video/{}",
        &auth[..12.min(auth.len())],
        resume.video_id
    );
    println!("{}", resume.video_id);
    Ok(())
}

async fn create_video(
    http: &reqwest::Client,
    base: &str,
    auth: &str,
    args: &UploadArgs,
    title: &str,
    size: u64,
    modified_ms: u128,
) -> anyhow::Result<Resume> {
    let query = "mutation($i: CreateVideoInput!) { createVideo(input: $i) { video { id } upload { url } } }";
    let input = json!({ "title": title, "description": args.description, "tags": args.tags, "visibility": args.visibility.as_str() });
    let res: Value = http
        .post(format!("{base}/graphql"))
        .header("authorization", auth)
        .json(&json!({ "query": query, "variables": { "i": input } }))
        .send()
        .await
        .context("reaching the platform")?
        .json()
        .await
        .context("reading createVideo's answer")?;
    if let Some(errors) = res.get("errors") {
        bail!("createVideo failed: {errors}");
    }
    let created = &res["data"]["createVideo"];
    let video_id = created["video"]["id"].as_str().context("createVideo returned no id")?.to_string();
    let upload_url = match created["upload"]["url"].as_str() {
        Some(url) => url.to_string(),
        None => bail!("the platform gave no upload location (is the transcoder running?)"),
    };
    Ok(Resume { size, modified_ms, video_id, upload_url, partials: Vec::new(), final_url: None })
}

fn absolute(base: &str, url: &str) -> String {
    if url.starts_with('/') { format!("{base}{url}") } else { url.to_string() }
}

/// `parts` ranges (start, length) covering `size` bytes in order; the last takes the rest.
fn ranges(size: u64, parts: u64) -> Vec<(u64, u64)> {
    let each = size / parts;
    (0..parts).map(|i| (i * each, if i + 1 == parts { size - i * each } else { each })).collect()
}

/// A tus creation of a partial upload of `length` bytes; its URL.
async fn create_partial(http: &reqwest::Client, base: &str, auth: &str, length: u64) -> anyhow::Result<String> {
    let r = http
        .post(format!("{base}/video/upload"))
        .header("authorization", auth)
        .header("tus-resumable", "1.0.0")
        .header("upload-concat", "partial")
        .header("upload-length", length.to_string())
        .send()
        .await
        .context("reaching the platform")?;
    created(r, "a partial upload").await
}

/// Joins the partial uploads (in order) into the video's final upload; its URL.
async fn create_final(
    http: &reqwest::Client,
    base: &str,
    auth: &str,
    video_id: &str,
    partials: &[String],
) -> anyhow::Result<String> {
    use base64::Engine as _;
    let video = base64::engine::general_purpose::STANDARD.encode(video_id);
    let r = http
        .post(format!("{base}/video/upload"))
        .header("authorization", auth)
        .header("tus-resumable", "1.0.0")
        .header("upload-concat", format!("final;{}", partials.join(" ")))
        .header("upload-metadata", format!("videoId {video}"))
        .send()
        .await
        .context("reaching the platform")?;
    created(r, "the final upload").await
}

async fn created(r: reqwest::Response, what: &str) -> anyhow::Result<String> {
    let status = r.status();
    if status.as_u16() != 201 {
        bail!("creating {what} was refused ({status}): {}", r.text().await.unwrap_or_default());
    }
    let location = r.headers().get("location").and_then(|v| v.to_str().ok());
    Ok(location.with_context(|| format!("no Location for {what}"))?.to_string())
}

/// Bytes sent by every range, for one progress line.
struct Progress {
    size: u64,
    sent: AtomicU64,
    started: Instant,
}

impl Progress {
    fn add(&self, n: u64) {
        let sent = self.sent.fetch_add(n, Ordering::Relaxed) + n;
        let rate = sent as f64 / self.started.elapsed().as_secs_f64().max(0.001) / 1_048_576.0;
        eprint!(
            "\r{:>5.1}%  {} / {} MiB  {rate:.1} MiB/s   ",
            sent as f64 * 100.0 / self.size.max(1) as f64,
            sent >> 20,
            self.size >> 20
        );
        let _ = std::io::stderr().flush();
    }
}

/// Sends the file's range (start, length) into the upload at `url`, from the server's offset
/// to the range's end, one PATCH per chunk; a failed chunk is retried after asking the
/// server where it stands. A whole-file upload (start 0, length the file's) gives its
/// length with its first PATCH (createVideo's upload defers it).
async fn send(
    http: &reqwest::Client,
    url: &str,
    auth: &str,
    file: &Path,
    (start, size): (u64, u64),
    progress: &Progress,
) -> anyhow::Result<()> {
    let mut input = std::fs::File::open(file)?;
    let mut failures = 0;
    let mut offset = offset_of(http, url, auth).await?;
    progress.add(offset);
    while offset < size {
        input.seek(SeekFrom::Start(start + offset))?;
        // A fresh buffer moved into the request: one chunk per range in memory, not two.
        let mut buf = vec![0u8; CHUNK.min((size - offset) as usize)];
        let n = read_full(&mut input, &mut buf)?;
        if n == 0 {
            bail!("{} is shorter than when its upload started", file.display());
        }
        buf.truncate(n);
        let mut req = http
            .patch(url)
            .header("authorization", auth)
            .header("tus-resumable", "1.0.0")
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", offset.to_string());
        if offset == 0 && start == 0 {
            req = req.header("upload-length", size.to_string());
        }
        match req.body(buf).send().await {
            Ok(r) if r.status().as_u16() == 204 => {
                let next = r
                    .headers()
                    .get("upload-offset")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(offset + n as u64);
                progress.add(next.saturating_sub(offset));
                offset = next;
                failures = 0;
            }
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 409 => {
                let status = r.status();
                bail!("the upload was refused ({status}): {}", r.text().await.unwrap_or_default());
            }
            outcome => {
                failures += 1;
                if failures > 5 {
                    bail!("the upload keeps failing: {outcome:?}");
                }
                tokio::time::sleep(Duration::from_secs(failures)).await;
                let now = offset_of(http, url, auth).await?;
                progress.add(now.saturating_sub(offset));
                offset = now;
            }
        }
    }
    Ok(())
}

async fn offset_of(http: &reqwest::Client, url: &str, auth: &str) -> anyhow::Result<u64> {
    let r = http.head(url).header("authorization", auth).header("tus-resumable", "1.0.0").send().await?;
    if !r.status().is_success() {
        bail!("the upload is not available any more ({}); delete the .flick-upload file to start over", r.status());
    }
    r.headers()
        .get("upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("no Upload-Offset in the server's answer")
}

fn read_full(input: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_cover_the_file_in_order() {
        assert_eq!(super::ranges(10, 3), [(0, 3), (3, 3), (6, 4)]);
        assert_eq!(super::ranges(8, 1), [(0, 8)]);
        assert_eq!(super::ranges(3, 3), [(0, 1), (1, 1), (2, 1)]);
    }
}
