//! The object storage port over `object_store`: a local directory (the embedded default) or
//! any S3 API (MinIO, SeaweedFS, AWS). Streaming multipart writes keep memory flat; reads
//! can be ranged; presigned GET URLs let clients fetch objects directly.

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use hmac::{Hmac, Mac};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use sha2::Sha256;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Parts are this big (S3 needs ≥ 5 MiB for all but the last part).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts in flight at once: bounds memory to about `PART_SIZE * MAX_PARTS_IN_FLIGHT`.
const MAX_PARTS_IN_FLIGHT: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object {0} not found")]
    NotFound(String),
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    #[error("unsupported storage url {0:?}: use file:// or s3://")]
    UnsupportedUrl(String),
    #[error("reading the upload stream failed: {0}")]
    Source(String),
    #[error(transparent)]
    Store(#[from] object_store::Error),
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// How to reach the store.
#[derive(Debug, Clone, Default)]
pub struct StorageOptions {
    /// `file:///dir`, `s3://bucket`, or `None` for `<data_dir>/objects`.
    pub url: Option<String>,
    pub data_dir: PathBuf,
    pub s3_endpoint: Option<String>,
    pub s3_region: String,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<String>,
    /// Key for local presigned URLs (a random one is made when empty).
    pub signing_key: Option<String>,
    /// Public base the local backend's presigned URLs start with.
    pub public_base_url: String,
}

/// Where an object can be read with seeks ([`ObjectStorage::seekable`]).
#[derive(Clone, PartialEq, Eq)]
pub enum Seekable {
    File(PathBuf),
    /// Presigned: a credential until it expires.
    Url(String),
}

impl std::fmt::Debug for Seekable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seekable::File(p) => write!(f, "Seekable::File({})", p.display()),
            Seekable::Url(_) => write!(f, "Seekable::Url(presigned)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub e_tag: Option<String>,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

#[derive(Clone)]
pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Local { root: PathBuf, signing_key: Arc<[u8]>, public_base_url: String },
    S3 { s3: Arc<AmazonS3> },
}

impl std::fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Local { root, .. } => write!(f, "ObjectStorage(local {})", root.display()),
            Backend::S3 { .. } => write!(f, "ObjectStorage(s3)"),
        }
    }
}

fn key_path(key: &str) -> Result<ObjectPath> {
    if key.is_empty() || key.contains("..") || key.starts_with('/') {
        return Err(StorageError::InvalidKey(key.to_string()));
    }
    ObjectPath::parse(key).map_err(|_| StorageError::InvalidKey(key.to_string()))
}

fn not_found(key: &str, e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound(key.to_string()),
        other => StorageError::Store(other),
    }
}

impl ObjectStorage {
    pub fn open(options: &StorageOptions) -> Result<Self> {
        match options.url.as_deref() {
            None | Some("") => Self::local(options.data_dir.join("objects"), options),
            Some(u) if u.starts_with("file://") => Self::local(PathBuf::from(&u["file://".len()..]), options),
            Some(u) if u.starts_with("s3://") => {
                let bucket = u["s3://".len()..].trim_end_matches('/');
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(&options.s3_region)
                    .with_virtual_hosted_style_request(false);
                if let Some(endpoint) = &options.s3_endpoint {
                    builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
                }
                if let (Some(id), Some(secret)) = (&options.s3_access_key_id, &options.s3_secret_access_key) {
                    builder = builder.with_access_key_id(id).with_secret_access_key(secret);
                }
                let s3 = Arc::new(builder.build()?);
                Ok(Self { store: s3.clone(), backend: Backend::S3 { s3 } })
            }
            Some(u) => Err(StorageError::UnsupportedUrl(u.to_string())),
        }
    }

    fn local(root: PathBuf, options: &StorageOptions) -> Result<Self> {
        std::fs::create_dir_all(&root)
            .map_err(|e| StorageError::Source(format!("creating {}: {e}", root.display())))?;
        let store = LocalFileSystem::new_with_prefix(&root)?.with_automatic_cleanup(true);
        let signing_key: Arc<[u8]> = match &options.signing_key {
            Some(k) if !k.is_empty() => k.as_bytes().into(),
            _ => rand::random::<[u8; 32]>().to_vec().into(),
        };
        Ok(Self {
            store: Arc::new(store),
            backend: Backend::Local {
                root,
                signing_key,
                public_base_url: options.public_base_url.trim_end_matches('/').to_string(),
            },
        })
    }

    pub fn is_s3(&self) -> bool {
        matches!(self.backend, Backend::S3 { .. })
    }

    /// Counts bytes stored (`storage_bytes_written_total{backend}`): what a layout costs in
    /// writes, overwrites included.
    fn wrote(&self, bytes: u64) {
        let backend = if self.is_s3() { "s3" } else { "local" };
        metrics::counter!("storage_bytes_written_total", "backend" => backend).increment(bytes);
    }

    pub async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let len = data.len() as u64;
        self.store.put(&key_path(key)?, PutPayload::from(data)).await?;
        self.wrote(len);
        Ok(())
    }

    /// Streams `source` into `key` as a multipart upload with bounded memory; aborts the
    /// upload if the source fails. Returns the bytes written.
    pub async fn put_stream<S, E>(&self, key: &str, source: S) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let upload = self.store.put_multipart(&key_path(key)?).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut written = 0u64;
        futures::pin_mut!(source);
        while let Some(chunk) = source.next().await {
            match chunk {
                Ok(bytes) => {
                    written += bytes.len() as u64;
                    writer.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await?;
                    writer.write(&bytes);
                }
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(StorageError::Source(e.to_string()));
                }
            }
        }
        writer.finish().await?;
        self.wrote(written);
        Ok(written)
    }

    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let result = self.store.get(&key_path(key)?).await.map_err(|e| not_found(key, e))?;
        Ok(result.bytes().await?)
    }

    /// Bytes `range.start..range.end` of the object.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.store.get_range(&key_path(key)?, range).await.map_err(|e| not_found(key, e))
    }

    /// The object as a stream of chunks (for serving large files).
    pub async fn get_stream(&self, key: &str) -> Result<impl Stream<Item = Result<Bytes>> + use<>> {
        let result = self.store.get(&key_path(key)?).await.map_err(|e| not_found(key, e))?;
        Ok(result.into_stream().map_err(StorageError::from))
    }

    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        match self.store.head(&key_path(key)?).await {
            Ok(meta) => Ok(Some(ObjectInfo {
                key: key.to_string(),
                size: meta.size,
                e_tag: meta.e_tag,
                last_modified: meta.last_modified,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&key_path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Keys under `prefix` (recursive), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let prefix = key_path(prefix)?;
        let mut keys: Vec<String> =
            self.store.list(Some(&prefix)).map_ok(|m| m.location.to_string()).try_collect().await?;
        keys.sort();
        Ok(keys)
    }

    /// Deletes every object under `prefix`.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize> {
        let keys = self.list(prefix).await?;
        for key in &keys {
            self.delete(key).await?;
        }
        Ok(keys.len())
    }

    /// Starts a multipart upload whose state lives with the caller (ids, not a handle), so
    /// it can be continued by another process or after a restart. Returns its id.
    pub async fn multipart_start(&self, key: &str) -> Result<String> {
        let path = key_path(key)?;
        match &self.backend {
            Backend::S3 { s3 } => Ok(s3.create_multipart(&path).await?),
            Backend::Local { root, .. } => {
                let id = uuid::Uuid::now_v7().simple().to_string();
                tokio::fs::create_dir_all(local_parts_dir(root, &id))
                    .await
                    .map_err(|e| StorageError::Source(format!("creating a multipart directory: {e}")))?;
                Ok(id)
            }
        }
    }

    /// Uploads part `index` (0-based; all but the last must be ≥ 5 MiB on S3). Uploading the
    /// same index again replaces it. Returns the part's id for [`Self::multipart_complete`].
    pub async fn multipart_put(&self, key: &str, upload_id: &str, index: usize, data: Bytes) -> Result<String> {
        let path = key_path(key)?;
        let len = data.len() as u64;
        let id = match &self.backend {
            Backend::S3 { s3 } => {
                s3.put_part(&path, &upload_id.to_string(), index, PutPayload::from(data)).await?.content_id
            }
            Backend::Local { root, .. } => {
                let dir = local_parts_dir(root, &local_id(upload_id)?);
                let part = dir.join(format!("{index:06}"));
                let tmp = dir.join(format!("{index:06}.tmp"));
                let io = |e: std::io::Error| StorageError::Source(format!("writing part {index}: {e}"));
                tokio::fs::write(&tmp, &data).await.map_err(io)?;
                tokio::fs::rename(&tmp, &part).await.map_err(io)?;
                format!("{index:06}")
            }
        };
        self.wrote(len);
        Ok(id)
    }

    /// Joins the parts, in the order given, into the object `key`.
    pub async fn multipart_complete(&self, key: &str, upload_id: &str, parts: &[String]) -> Result<()> {
        let path = key_path(key)?;
        match &self.backend {
            Backend::S3 { s3 } => {
                let parts = parts.iter().map(|p| PartId { content_id: p.clone() }).collect();
                s3.complete_multipart(&path, &upload_id.to_string(), parts).await?;
                Ok(())
            }
            Backend::Local { root, .. } => {
                let dir = local_parts_dir(root, &local_id(upload_id)?);
                let target = root.join(key);
                let io = |e: std::io::Error| StorageError::Source(format!("joining parts: {e}"));
                if let Some(parent) = target.parent() {
                    tokio::fs::create_dir_all(parent).await.map_err(io)?;
                }
                let tmp = dir.join("joined.tmp");
                let mut out = tokio::fs::File::create(&tmp).await.map_err(io)?;
                for part in parts {
                    let mut input = tokio::fs::File::open(dir.join(part)).await.map_err(io)?;
                    tokio::io::copy(&mut input, &mut out).await.map_err(io)?;
                }
                out.sync_all().await.map_err(io)?;
                tokio::fs::rename(&tmp, &target).await.map_err(io)?;
                tokio::fs::remove_dir_all(&dir).await.map_err(io)?;
                Ok(())
            }
        }
    }

    /// Drops a multipart upload and its parts (an unknown id is already gone).
    pub async fn multipart_abort(&self, key: &str, upload_id: &str) -> Result<()> {
        let path = key_path(key)?;
        match &self.backend {
            Backend::S3 { s3 } => match s3.abort_multipart(&path, &upload_id.to_string()).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            },
            Backend::Local { root, .. } => {
                match tokio::fs::remove_dir_all(local_parts_dir(root, &local_id(upload_id)?)).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(StorageError::Source(format!("removing parts: {e}"))),
                }
            }
        }
    }

    /// Where a reader that seeks (ffmpeg reading a part of a video) finds `key` without a copy:
    /// the file itself on the local backend, a presigned URL (ranged GETs) on S3.
    pub async fn seekable(&self, key: &str, expires_in: Duration) -> Result<Seekable> {
        match &self.backend {
            Backend::Local { root, .. } => {
                key_path(key)?;
                Ok(Seekable::File(root.join(key)))
            }
            Backend::S3 { .. } => Ok(Seekable::Url(self.presigned_get(key, expires_in).await?)),
        }
    }

    /// A URL that lets anyone GET `key` until it expires.
    pub async fn presigned_get(&self, key: &str, expires_in: Duration) -> Result<String> {
        let path = key_path(key)?;
        match &self.backend {
            Backend::S3 { s3 } => Ok(s3.signed_url(http::Method::GET, &path, expires_in).await?.to_string()),
            Backend::Local { signing_key, public_base_url, .. } => {
                let expires = chrono::Utc::now().timestamp() + expires_in.as_secs() as i64;
                let signature = sign(signing_key, key, expires);
                Ok(format!("{public_base_url}/{key}?expires={expires}&signature={signature}"))
            }
        }
    }

    /// Checks a local presigned URL's parameters (the route serving local objects calls it).
    pub fn verify_local_signature(&self, key: &str, expires: i64, signature: &str) -> bool {
        let Backend::Local { signing_key, .. } = &self.backend else {
            return false;
        };
        if expires < chrono::Utc::now().timestamp() {
            return false;
        }
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(signing_key).expect("hmac takes any key length");
        mac.update(format!("{key}\n{expires}").as_bytes());
        mac.verify_slice(&given).is_ok()
    }

    /// Readiness: the store answers (a missing probe object is a healthy answer).
    pub async fn ping(&self) -> Result<()> {
        match self.store.head(&ObjectPath::from("_flick/ping")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Parts of local multipart uploads live beside the object root, never inside it, so they
/// are not listed as objects.
fn local_parts_dir(root: &std::path::Path, upload_id: &str) -> PathBuf {
    let mut dir = root.as_os_str().to_owned();
    dir.push(".multipart");
    PathBuf::from(dir).join(upload_id)
}

fn local_id(upload_id: &str) -> Result<String> {
    if upload_id.is_empty() || !upload_id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(StorageError::InvalidKey(upload_id.to_string()));
    }
    Ok(upload_id.to_string())
}

fn sign(key: &[u8], object_key: &str, expires: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes any key length");
    mac.update(format!("{object_key}\n{expires}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_store() {
        for bad in ["", "../etc/passwd", "/abs", "a/../../b"] {
            assert!(key_path(bad).is_err(), "{bad}");
        }
        assert!(key_path("videos/1/hls/master.m3u8").is_ok());
    }
}
