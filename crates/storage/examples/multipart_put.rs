//! The direct-upload side of the upload bench (`scripts/bench-transcode.sh`): streams a file
//! into the S3 server with [`ObjectStorage::put_stream`] (8 MiB parts, up to 4 in flight) and
//! prints how long it took.
//!
//! usage: multipart_put FILE KEY [--keep]
//! env:   S3_ENDPOINT (http://127.0.0.1:9000), S3_BUCKET (flick-test),
//!        S3_ACCESS_KEY (flick), S3_SECRET_KEY (flicksecret), S3_REGION (us-east-1)
//! prints one line: `bytes=N seconds=S mib_per_s=R` (the object is deleted afterwards
//! unless --keep).

use bytes::{Bytes, BytesMut};
use flick_storage::{ObjectStorage, StorageOptions};
use std::time::Instant;
use tokio::io::AsyncReadExt as _;

/// Bytes read from the file at a time (the store cuts them into 8 MiB parts).
const READ_SIZE: usize = 1024 * 1024;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let keep = args.iter().any(|a| a == "--keep");
    let [file, key] = positional[..] else {
        eprintln!("usage: multipart_put FILE KEY [--keep]");
        std::process::exit(2);
    };
    let storage = ObjectStorage::open(&StorageOptions {
        url: Some(format!("s3://{}", env_or("S3_BUCKET", "flick-test"))),
        s3_endpoint: Some(env_or("S3_ENDPOINT", "http://127.0.0.1:9000")),
        s3_region: env_or("S3_REGION", "us-east-1"),
        s3_access_key_id: Some(env_or("S3_ACCESS_KEY", "flick")),
        s3_secret_access_key: Some(env_or("S3_SECRET_KEY", "flicksecret")),
        ..Default::default()
    })?;

    let input = tokio::fs::File::open(file).await?;
    // The file as a stream of 1 MiB chunks, read with tokio as the upload goes.
    let chunks = futures::stream::try_unfold(input, |mut input| async move {
        let mut buf = BytesMut::zeroed(READ_SIZE);
        let mut filled = 0;
        while filled < READ_SIZE {
            let n = input.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buf.truncate(filled);
        Ok(Some((Bytes::from(buf), input)))
    });

    let started = Instant::now();
    let written = storage.put_stream(key, chunks).await?;
    let seconds = started.elapsed().as_secs_f64();
    if !keep {
        storage.delete(key).await?;
    }
    println!("bytes={written} seconds={seconds:.3} mib_per_s={:.1}", written as f64 / 1_048_576.0 / seconds.max(1e-9));
    Ok(())
}
