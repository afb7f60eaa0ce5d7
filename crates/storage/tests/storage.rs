//! Object storage against a local directory and a real S3 server (SeaweedFS or MinIO).

use bytes::Bytes;
use flick_storage::{ObjectStorage, StorageError, StorageOptions};
use flick_testkit::{require, s3, unique};
use std::time::Duration;

fn local(dir: &std::path::Path) -> ObjectStorage {
    ObjectStorage::open(&StorageOptions {
        data_dir: dir.to_path_buf(),
        signing_key: Some("test-key".into()),
        public_base_url: "http://127.0.0.1:8080/video/objects".into(),
        ..Default::default()
    })
    .unwrap()
}

async fn real_s3() -> ObjectStorage {
    let s = s3();
    require("the S3 server", &s.endpoint, 9000).await;
    ObjectStorage::open(&StorageOptions {
        url: Some(format!("s3://{}", s.bucket)),
        s3_endpoint: Some(s.endpoint),
        s3_region: "us-east-1".into(),
        s3_access_key_id: Some(s.access_key),
        s3_secret_access_key: Some(s.secret_key),
        ..Default::default()
    })
    .unwrap()
}

/// 20 MiB of a recognisable pattern, streamed in 1 MiB chunks (three multipart parts).
fn pattern() -> Vec<u8> {
    (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect()
}

async fn streams_multipart_and_reads_ranges(store: ObjectStorage) {
    let prefix = unique("it");
    let key = format!("{prefix}/source.bin");
    let data = pattern();
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        data.chunks(1024 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let counted = format!("storage_bytes_written_total{{backend=\"{}\"}}", if store.is_s3() { "s3" } else { "local" });
    let before = flick_testkit::metric(&counted);
    let written = store.put_stream(&key, futures::stream::iter(chunks)).await.unwrap();
    assert_eq!(written, data.len() as u64);
    assert_eq!(flick_testkit::metric(&counted) - before, data.len() as f64, "the bytes written are counted");
    assert_eq!(store.head(&key).await.unwrap().unwrap().size, data.len() as u64);
    let range = 9 * 1024 * 1024 - 10..9 * 1024 * 1024 + 10;
    let got = store.get_range(&key, range.start as u64..range.end as u64).await.unwrap();
    assert_eq!(&got[..], &data[range], "a range across a part boundary");
    assert_eq!(store.get(&key).await.unwrap().len(), data.len());

    store.put(&format!("{prefix}/hls/master.m3u8"), Bytes::from_static(b"#EXTM3U\n")).await.unwrap();
    assert_eq!(store.list(&prefix).await.unwrap(), vec![format!("{prefix}/hls/master.m3u8"), key.clone()]);
    assert_eq!(store.delete_prefix(&prefix).await.unwrap(), 2);
    assert!(store.head(&key).await.unwrap().is_none());
    assert!(matches!(store.get(&key).await, Err(StorageError::NotFound(_))));
}

async fn a_failing_source_leaves_no_object(store: ObjectStorage) {
    let key = format!("{}/broken.bin", unique("it"));
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        vec![Ok(Bytes::from(vec![0u8; 9 * 1024 * 1024])), Err(std::io::Error::other("client went away"))];
    let err = store.put_stream(&key, futures::stream::iter(chunks)).await.unwrap_err();
    assert!(matches!(err, StorageError::Source(_)), "{err}");
    assert!(store.head(&key).await.unwrap().is_none());
}

/// A multipart upload started by one handle is continued and completed by another (a
/// restarted server), with a part replaced on the way; aborting another leaves nothing.
async fn multipart_uploads_continue_across_handles(first: ObjectStorage, second: ObjectStorage) {
    let key = format!("{}/source", unique("mp"));
    let data = pattern();
    let (a, rest) = data.split_at(8 * 1024 * 1024);
    let (b, c) = rest.split_at(8 * 1024 * 1024);
    let id = first.multipart_start(&key).await.unwrap();
    let p0 = first.multipart_put(&key, &id, 0, Bytes::copy_from_slice(a)).await.unwrap();
    let _stale = first.multipart_put(&key, &id, 1, Bytes::from(vec![7u8; 8 * 1024 * 1024])).await.unwrap();
    let p1 = second.multipart_put(&key, &id, 1, Bytes::copy_from_slice(b)).await.unwrap();
    let p2 = second.multipart_put(&key, &id, 2, Bytes::copy_from_slice(c)).await.unwrap();
    assert!(second.head(&key).await.unwrap().is_none(), "nothing is visible before completion");
    second.multipart_complete(&key, &id, &[p0, p1, p2]).await.unwrap();
    assert_eq!(second.get(&key).await.unwrap().as_ref(), &data[..]);

    let gone = format!("{}/abandoned", unique("mp"));
    let id = first.multipart_start(&gone).await.unwrap();
    first.multipart_put(&gone, &id, 0, Bytes::from(vec![1u8; 1024])).await.unwrap();
    second.multipart_abort(&gone, &id).await.unwrap();
    second.multipart_abort(&gone, &id).await.unwrap();
    assert!(second.head(&gone).await.unwrap().is_none());
    first.delete(&key).await.unwrap();
}

#[tokio::test]
async fn local_multipart_uploads_continue_across_handles() {
    let dir = tempfile::tempdir().unwrap();
    multipart_uploads_continue_across_handles(local(dir.path()), local(dir.path())).await;
    let leftovers = std::fs::read_dir(dir.path().join("objects.multipart")).unwrap().count();
    assert_eq!(leftovers, 0, "completed and aborted uploads leave no parts behind");
}

#[tokio::test]
async fn s3_multipart_uploads_continue_across_handles() {
    multipart_uploads_continue_across_handles(real_s3().await, real_s3().await).await;
}

#[tokio::test]
async fn local_streams_multipart_and_reads_ranges() {
    let dir = tempfile::tempdir().unwrap();
    streams_multipart_and_reads_ranges(local(dir.path())).await;
}

#[tokio::test]
async fn s3_streams_multipart_and_reads_ranges() {
    streams_multipart_and_reads_ranges(real_s3().await).await;
}

#[tokio::test]
async fn local_failing_source_leaves_no_object() {
    let dir = tempfile::tempdir().unwrap();
    a_failing_source_leaves_no_object(local(dir.path())).await;
}

#[tokio::test]
async fn s3_failing_source_leaves_no_object() {
    a_failing_source_leaves_no_object(real_s3().await).await;
}

#[tokio::test]
async fn s3_presigned_get_serves_the_object_until_it_expires() {
    let store = real_s3().await;
    let key = format!("{}/thumb.jpg", unique("it"));
    store.put(&key, Bytes::from_static(b"jpeg bytes")).await.unwrap();
    let url = store.presigned_get(&key, Duration::from_secs(60)).await.unwrap();
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(&response.bytes().await.unwrap()[..], b"jpeg bytes");

    let tampered = url.replace("thumb.jpg", "other.jpg");
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 403, "the signature covers the key");
    let short = store.presigned_get(&key, Duration::from_secs(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(reqwest::get(&short).await.unwrap().status(), 403, "expired URLs are refused");
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn local_presigned_urls_verify_key_expiry_and_signature() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(dir.path());
    let url = store.presigned_get("videos/v1/thumb.jpg", Duration::from_secs(60)).await.unwrap();
    let parsed = url::Url::parse(&url).unwrap();
    assert_eq!(parsed.path(), "/video/objects/videos/v1/thumb.jpg");
    let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
    let expires: i64 = q["expires"].parse().unwrap();
    let sig = &q["signature"];
    assert!(store.verify_local_signature("videos/v1/thumb.jpg", expires, sig));
    assert!(!store.verify_local_signature("videos/v2/thumb.jpg", expires, sig), "other key");
    assert!(!store.verify_local_signature("videos/v1/thumb.jpg", expires + 1, sig), "other expiry");
    assert!(!store.verify_local_signature("videos/v1/thumb.jpg", 1, sig), "expired");
}
