//! `flick upload FILE --title …`: creates the video through the edge's GraphQL, sends the
//! file over tus in 8 MiB chunks with a progress line, and resumes an interrupted upload
//! (the upload URL is remembered beside the file, keyed by its size and modification time).

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
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
    let resume = match previous {
        Some(r) => {
            eprintln!("resuming the upload of video {}", r.video_id);
            r
        }
        None => {
            let title = args.title.clone().unwrap_or_else(|| {
                args.file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "Untitled".into())
            });
            let r = create_video(&http, &base, &auth, &args, &title, size, modified_ms(&meta)).await?;
            std::fs::write(&saved, serde_json::to_vec(&r)?)?;
            eprintln!("created video {}", r.video_id);
            r
        }
    };
    let upload_url = if resume.upload_url.starts_with('/') {
        format!("{base}{}", resume.upload_url)
    } else {
        resume.upload_url.clone()
    };
    send(&http, &upload_url, &auth, &args.file, size).await?;
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
    Ok(Resume { size, modified_ms, video_id, upload_url })
}

/// Sends the file from the server's offset to the end, one PATCH per chunk; a failed chunk
/// is retried after asking the server where it stands.
async fn send(http: &reqwest::Client, url: &str, auth: &str, file: &Path, size: u64) -> anyhow::Result<()> {
    let mut input = std::fs::File::open(file)?;
    let started = Instant::now();
    let mut failures = 0;
    let mut offset = offset_of(http, url, auth).await?;
    let first = offset;
    let mut buf = vec![0u8; CHUNK];
    while offset < size {
        input.seek(SeekFrom::Start(offset))?;
        let n = read_full(&mut input, &mut buf)?;
        let mut req = http
            .patch(url)
            .header("authorization", auth)
            .header("tus-resumable", "1.0.0")
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", offset.to_string());
        if offset == 0 {
            req = req.header("upload-length", size.to_string());
        }
        match req.body(buf[..n].to_vec()).send().await {
            Ok(r) if r.status().as_u16() == 204 => {
                offset = r
                    .headers()
                    .get("upload-offset")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(offset + n as u64);
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
                offset = offset_of(http, url, auth).await?;
            }
        }
        let rate = (offset - first) as f64 / started.elapsed().as_secs_f64().max(0.001) / 1_048_576.0;
        eprint!(
            "\r{:>5.1}%  {} / {} MiB  {rate:.1} MiB/s   ",
            offset as f64 * 100.0 / size.max(1) as f64,
            offset >> 20,
            size >> 20
        );
        let _ = std::io::stderr().flush();
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
