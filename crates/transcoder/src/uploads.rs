//! Resumable uploads (the domain behind tus): creation with size and quota checks, appending
//! bytes straight into an object-store multipart upload, completion, termination, expiry.
//! Partial and final uploads (the concatenation extension) are in `concat`.
//!
//! Memory stays flat: bytes are cut into 8 MiB parts as they arrive (at most two part
//! uploads in flight); what is left after the last full part is kept as a small tail object,
//! so the offset survives a restart and any replica can take the next PATCH.

use crate::domain::{Transcoder, Upload, UploadKind, UploadState, db_error, now_ms, storage_error};
use crate::pipeline::sniff;
use crate::store;
use bytes::{Bytes, BytesMut};
use flick_kit::identity::Caller;
use flick_kit::{AppError, ErrorCode};
use flick_platform::bus::envelope;
use flick_platform::db::sea_orm::TransactionTrait;
use flick_platform::outbox;
use flick_platform::storage::PART_SIZE;
use flick_proto::events::v1 as events;
use futures::{Stream, StreamExt};
use prost::Message as _;
use sha2::Digest as _;
use std::sync::Arc;
use tokio::task::JoinSet;
use uuid::Uuid;

/// Bytes looked at to tell a media container from anything else (MPEG-TS needs a few
/// 188-byte packets to be told apart; shorter files are sniffed whole at completion).
pub(crate) const SNIFF_BYTES: usize = 512;
/// How long a HEAD waits for a PATCH of the same upload to finish before answering anyway.
const HEAD_WAITS_FOR_PATCH: std::time::Duration = std::time::Duration::from_secs(5);
/// Part uploads one PATCH keeps running while it reads the next part from the client.
const PARTS_IN_FLIGHT: usize = 2;
/// Part uploads (of `PART_SIZE` each) running at once in this process over all PATCHes: a
/// PATCH waits for a slot before reading on, so parallel streams (tus concatenation, many
/// users) share these instead of each holding `PARTS_IN_FLIGHT`.
pub(crate) const PART_SLOTS: usize = 4;

pub struct NewUpload<'a> {
    pub video_id: &'a str,
    /// `None`: deferred until a PATCH says it (tus creation-defer-length).
    pub length: Option<i64>,
    /// The raw `Upload-Metadata` header, echoed back on HEAD.
    pub metadata: &'a str,
}

/// A checksum the client sent for one PATCH body (tus checksum extension).
#[derive(Debug, Clone)]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    pub expected: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
pub enum ChecksumAlgorithm {
    Sha1,
    Sha256,
}

pub const CHECKSUM_ALGORITHMS: &str = "sha1,sha256";

impl Checksum {
    /// Parses `Upload-Checksum: <algorithm> <base64>`.
    pub fn parse(header: &str) -> Result<Self, AppError> {
        use base64::Engine as _;
        let (name, value) =
            header.trim().split_once(' ').ok_or_else(|| AppError::bad_input("malformed Upload-Checksum"))?;
        let algorithm = match name {
            "sha1" => ChecksumAlgorithm::Sha1,
            "sha256" => ChecksumAlgorithm::Sha256,
            other => {
                return Err(AppError::bad_input(format!(
                    "unsupported checksum algorithm {other:?}; use {CHECKSUM_ALGORITHMS}"
                )));
            }
        };
        let expected = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|_| AppError::bad_input("Upload-Checksum is not base64"))?;
        Ok(Self { algorithm, expected })
    }
}

enum Hasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    fn new(algorithm: ChecksumAlgorithm) -> Self {
        match algorithm {
            ChecksumAlgorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        }
    }
    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }
    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

pub fn source_key(video_id: &str, upload_id: &str) -> String {
    format!("videos/{video_id}/source/{upload_id}")
}

/// Where a partial upload's bytes are kept (no video is known when it is created).
pub fn partial_key(upload_id: &str) -> String {
    format!("uploads/{upload_id}/partial")
}

impl Transcoder {
    /// Starts an upload for a video the caller owns (tus creation).
    pub async fn create_upload(&self, caller: &Caller, new: NewUpload<'_>) -> Result<Upload, AppError> {
        let me = caller.require_user()?;
        let video = self.owned_video(caller, new.video_id).await?;
        let owner = me.to_string();
        self.check_open_uploads(&owner).await?;
        match new.length {
            Some(length) => self.check_size(&owner, length, None).await?,
            // A deferred length is counted by the bytes that arrive; none may be left.
            None => {
                let held = store::bytes_held_by(&self.db, &owner, "").await.map_err(db_error)? as u64;
                let quota = self.config.user_quota_bytes;
                if held >= quota {
                    return Err(quota_exceeded(held, quota, None));
                }
            }
        }
        let id = Uuid::now_v7().to_string();
        let object_key = source_key(&video.id, &id);
        let multipart_id = self.storage.multipart_start(&object_key).await.map_err(storage_error)?;
        let row = self.new_upload(id, video.id, owner, new.length, new.metadata, object_key, multipart_id);
        store::insert_upload(&self.db, &row).await.map_err(db_error)?;
        tracing::info!(upload.id = %row.id, video.id = %row.video_id, "upload created");
        Ok(row)
    }

    /// A new upload's row (a single upload; `concat` makes partial and final ones of it).
    #[expect(clippy::too_many_arguments, reason = "one row's fields")]
    pub(crate) fn new_upload(
        &self,
        id: String,
        video_id: String,
        owner_id: String,
        length: Option<i64>,
        metadata: &str,
        object_key: String,
        multipart_id: String,
    ) -> Upload {
        let now = now_ms();
        Upload {
            id,
            video_id,
            owner_id,
            length,
            offset: 0,
            metadata: metadata.to_string(),
            object_key,
            multipart_id,
            parts: Vec::new(),
            tail_key: None,
            tail_bytes: 0,
            state: UploadState::Uploading,
            created_at_ms: now,
            expires_at_ms: now + self.config.upload_expiry_seconds as i64 * 1000,
            kind: UploadKind::Single,
            partials: Vec::new(),
            final_id: None,
        }
    }

    /// Refuses a new upload to a user who has `max_open_uploads_per_user` unfinished ones.
    pub(crate) async fn check_open_uploads(&self, owner: &str) -> Result<(), AppError> {
        let open = store::open_uploads_of(&self.db, owner, now_ms()).await.map_err(db_error)?;
        let cap = self.config.max_open_uploads_per_user;
        if open >= cap as i64 {
            return Err(AppError::forbidden(format!(
                "too many unfinished uploads: {open} are open and at most {cap} are allowed; \
                 finish or terminate one first"
            )));
        }
        Ok(())
    }

    /// Refuses a length over the maximum or over what is left of the owner's quota.
    /// `this`: the upload being sized, when it already exists (a deferred length), so its own
    /// bytes are not counted twice.
    pub(crate) async fn check_size(&self, owner: &str, length: i64, this: Option<&str>) -> Result<(), AppError> {
        if length <= 0 {
            return Err(AppError::new(ErrorCode::UnsupportedMediaType, "an empty file is not a video"));
        }
        let max = self.config.max_upload_bytes;
        if length as u64 > max {
            return Err(AppError::new(
                ErrorCode::PayloadTooLarge,
                format!("the file is {length} bytes; the largest upload accepted is {max} bytes"),
            ));
        }
        let held = store::bytes_held_by(&self.db, owner, this.unwrap_or("")).await.map_err(db_error)? as u64;
        let quota = self.config.user_quota_bytes;
        if held + length as u64 > quota {
            return Err(quota_exceeded(held, quota, Some(length as u64)));
        }
        Ok(())
    }

    /// Takes the upload's lock, waiting at most for a stalled PATCH's idle timeout (and a
    /// margin for it to save what arrived): a request never queues behind one for long.
    async fn lock_upload(&self, id: &str) -> Result<tokio::sync::OwnedMutexGuard<()>, AppError> {
        let wait = self.idle_timeout() + std::time::Duration::from_secs(10);
        tokio::time::timeout(wait, self.upload_lock(id).lock_owned())
            .await
            .map_err(|_| AppError::conflict("another request of this upload is still running; retry with HEAD"))
    }

    fn idle_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.config.upload_idle_timeout_seconds.max(1))
    }

    /// The upload's state for a tus HEAD. A PATCH of it still running here (a client that
    /// lost its connection often asks while the server is still saving what arrived) is
    /// waited for, briefly, so the offset is the one the next PATCH must use.
    /// A final upload whose partials are all complete is completed here if it was not yet
    /// (its last partial's completion did not get to it).
    pub async fn upload_status(&self, caller: &Caller, id: &str) -> Result<Upload, AppError> {
        let lock = self.upload_lock(id);
        let _settled = tokio::time::timeout(HEAD_WAITS_FOR_PATCH, lock.lock()).await;
        let upload = self.upload_for_owner(caller, id).await?;
        match upload.kind {
            UploadKind::Final => self.complete_final_if_ready(upload).await,
            _ => Ok(upload),
        }
    }

    /// The upload, for its owner, refusing terminated and expired ones.
    pub async fn upload_for_owner(&self, caller: &Caller, id: &str) -> Result<Upload, AppError> {
        let me = caller.require_user()?;
        let not_found = || AppError::not_found("no such upload");
        if Uuid::parse_str(id).is_err() {
            return Err(not_found());
        }
        let upload = store::upload(&self.db, id).await.map_err(db_error)?.ok_or_else(not_found)?;
        if upload.owner_id != me.to_string() {
            return Err(AppError::forbidden("only the uploader may use this upload"));
        }
        match upload.state {
            UploadState::Uploading if upload.expires_at_ms < now_ms() => {
                Err(AppError::new(ErrorCode::Gone, "the upload expired"))
            }
            UploadState::Uploading | UploadState::Completed => Ok(upload),
            UploadState::Rejected => {
                Err(AppError::new(ErrorCode::Gone, "the upload was refused: it is not a video file"))
            }
            UploadState::Terminated | UploadState::Expired | UploadState::Replaced => {
                Err(AppError::new(ErrorCode::Gone, "the upload was terminated or expired"))
            }
        }
    }

    /// Appends `body` at `offset` (tus PATCH). On an interrupted body the bytes that arrived
    /// are kept (unless a checksum was given: then the whole PATCH is discarded).
    pub async fn append<S, E>(
        &self,
        caller: &Caller,
        id: &str,
        offset: i64,
        declared_length: Option<i64>,
        checksum: Option<Checksum>,
        body: S,
    ) -> Result<Upload, AppError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let _held = self.lock_upload(id).await?;
        let mut upload = self.upload_for_owner(caller, id).await?;
        if upload.kind == UploadKind::Final {
            return Err(AppError::forbidden(
                "a final upload takes no bytes of its own: send them to its partial uploads",
            ));
        }
        if offset != upload.offset {
            return Err(AppError::conflict(format!(
                "Upload-Offset is {offset} but the upload is at {}",
                upload.offset
            )));
        }
        match (upload.length, declared_length) {
            (Some(a), Some(b)) if a != b => return Err(AppError::bad_input("Upload-Length cannot change")),
            (None, Some(length)) => {
                if length < upload.offset {
                    return Err(AppError::bad_input("Upload-Length is below the bytes already received"));
                }
                self.check_size(&upload.owner_id, length, Some(&upload.id)).await?;
                upload.length = Some(length);
            }
            _ => {}
        }
        if upload.state == UploadState::Completed {
            return Ok(upload);
        }

        let start_offset = upload.offset;
        let mut buffer = BytesMut::with_capacity(PART_SIZE);
        if let Some(tail) = &upload.tail_key {
            buffer.extend_from_slice(&self.storage.get(tail).await.map_err(storage_error)?);
        }
        let mut hasher = checksum.as_ref().map(|c| Hasher::new(c.algorithm));
        let mut received: i64 = 0;
        // Below SNIFF_BYTES no part was cut yet, so the buffer holds the upload from byte 0:
        // the first bytes are sniffed however they were split across PATCHes. A partial
        // upload's first bytes may be anywhere in the file: its final sniffs the file's.
        let mut sniffed = upload.kind == UploadKind::Partial || start_offset >= SNIFF_BYTES as i64;
        // A deferred length counts toward the quota by the bytes that arrive: what the user
        // holds elsewhere, this upload's stored bytes, and this process's PATCHes in flight.
        let quota = match upload.length {
            Some(_) => None,
            None => Some(
                store::bytes_held_by(&self.db, &upload.owner_id, &upload.id).await.map_err(db_error)? as u64
                    + start_offset as u64,
            ),
        };
        let mut in_flight = InFlight::new(self, &upload.owner_id);
        let idle = self.idle_timeout();
        let mut parts: JoinSet<Result<(usize, String), AppError>> = JoinSet::new();
        let mut new_parts: Vec<(usize, String)> = Vec::new();
        let mut next_index = upload.parts.len();
        let mut interrupted = None;
        futures::pin_mut!(body);
        loop {
            let chunk = match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(Ok(c))) => c,
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    interrupted = Some(e.to_string());
                    break;
                }
                // A stalled client: keep what arrived and free the upload for HEAD, a resumed
                // PATCH and the sweeper.
                Err(_) => {
                    interrupted = Some(format!("no bytes for {} s", idle.as_secs()));
                    break;
                }
            };
            if now_ms() > upload.expires_at_ms {
                interrupted = Some("the upload expired".into());
                break;
            }
            if let Some(length) = upload.length
                && start_offset + received + chunk.len() as i64 > length
            {
                parts.abort_all();
                return Err(AppError::bad_input("the body goes past Upload-Length"));
            }
            if upload.length.is_none()
                && (start_offset + received + chunk.len() as i64) as u64 > self.config.max_upload_bytes
            {
                parts.abort_all();
                return Err(AppError::new(
                    ErrorCode::PayloadTooLarge,
                    "the upload is larger than the maximum accepted",
                ));
            }
            if let Some(stored) = quota {
                let user_in_flight = in_flight.add(chunk.len() as i64) as u64;
                let limit = self.config.user_quota_bytes;
                if stored + user_in_flight > limit {
                    parts.abort_all();
                    return Err(quota_exceeded(stored, limit, Some(user_in_flight)));
                }
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            received += chunk.len() as i64;
            // The buffer is filled to exactly one part, then handed over whole and replaced:
            // it never grows past PART_SIZE (a growing buffer doubles, copying and holding up
            // to twice a part per stream when a PATCH streams many parts).
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                if buffer.capacity() == 0 {
                    buffer.reserve(PART_SIZE);
                }
                let (now, later) = rest.split_at(rest.len().min(PART_SIZE.saturating_sub(buffer.len())));
                buffer.extend_from_slice(now);
                rest = later;
                if !sniffed && buffer.len() >= SNIFF_BYTES {
                    sniffed = true;
                    self.refuse_unless_media(&upload, &buffer).await?;
                }
                if buffer.len() >= PART_SIZE {
                    let part = std::mem::take(&mut buffer).freeze();
                    while parts.len() >= PARTS_IN_FLIGHT {
                        new_parts.push(join_part(&mut parts).await?);
                    }
                    self.spawn_part(&mut parts, &upload, next_index, part).await;
                    next_index += 1;
                }
            }
        }
        while !parts.is_empty() {
            new_parts.push(join_part(&mut parts).await?);
        }
        if let (Some(c), Some(h)) = (&checksum, hasher) {
            if interrupted.is_some() {
                return Err(AppError::bad_input("the body was interrupted; with a checksum it is discarded"));
            }
            if h.finish() != c.expected {
                return Err(AppError::new(ErrorCode::ChecksumMismatch, "the body does not match Upload-Checksum"));
            }
        }
        if quota.is_some() && received > 0 {
            // Again with what others committed meanwhile (their bytes moved from in flight
            // to the database after this PATCH took its first figure).
            let stored = store::bytes_held_by(&self.db, &upload.owner_id, &upload.id).await.map_err(db_error)? as u64
                + start_offset as u64;
            let user_in_flight = in_flight.add(0) as u64;
            let limit = self.config.user_quota_bytes;
            if stored + user_in_flight > limit {
                return Err(quota_exceeded(stored, limit, Some(user_in_flight)));
            }
        }
        new_parts.sort_by_key(|(i, _)| *i);
        upload.parts.extend(new_parts.into_iter().map(|(_, id)| id));
        upload.offset = start_offset + received;
        let complete = upload.length == Some(upload.offset);
        if complete && !sniffed {
            self.refuse_unless_media(&upload, &buffer).await?;
        }
        let old_tail = upload.tail_key.take();
        if complete {
            if !buffer.is_empty() || upload.parts.is_empty() {
                let index = upload.parts.len();
                let id = self
                    .storage
                    .multipart_put(&upload.object_key, &upload.multipart_id, index, buffer.freeze())
                    .await
                    .map_err(storage_error)?;
                upload.parts.push(id);
            }
            self.storage
                .multipart_complete(&upload.object_key, &upload.multipart_id, &upload.parts)
                .await
                .map_err(storage_error)?;
            upload.tail_bytes = 0;
            upload.state = UploadState::Completed;
        } else {
            upload.tail_bytes = buffer.len() as i64;
            if !buffer.is_empty() {
                let key = format!("uploads/{}/tail-{}", upload.id, upload.offset);
                self.storage.put(&key, buffer.freeze()).await.map_err(storage_error)?;
                upload.tail_key = Some(key);
            }
        }
        // A partial upload is no video's source by itself: its final may become one below.
        let source = complete && upload.kind == UploadKind::Single;
        self.commit_append(&upload, start_offset, source).await?;
        metrics::counter!("upload_bytes_total").increment(received as u64);
        if source {
            metrics::counter!("uploads_completed_total").increment(1);
        }
        if let Some(old) = old_tail
            && Some(&old) != upload.tail_key.as_ref()
        {
            let _ = self.storage.delete(&old).await;
        }
        if let Some(reason) = interrupted {
            tracing::info!(upload.id = %upload.id, offset = upload.offset, reason = %reason, "upload body interrupted; kept what arrived");
        }
        if complete && upload.kind == UploadKind::Partial {
            self.partial_completed(&upload.id).await?;
        }
        Ok(upload)
    }

    /// Starts storing `part` once a process-wide slot is free (the slot is held until the
    /// part is stored).
    async fn spawn_part(
        &self,
        parts: &mut JoinSet<Result<(usize, String), AppError>>,
        upload: &Upload,
        index: usize,
        part: Bytes,
    ) {
        let storage = self.storage.clone();
        let (key, multipart) = (upload.object_key.clone(), upload.multipart_id.clone());
        let slot = self.part_slots.clone().acquire_owned().await.expect("the part slots are never closed");
        parts.spawn(async move {
            let _slot = slot;
            let id = storage.multipart_put(&key, &multipart, index, part).await.map_err(storage_error)?;
            Ok((index, id))
        });
    }

    /// Records the new offset; a completed upload also becomes the video's source and its
    /// transcode job (`upload.completed`), in the same transaction.
    async fn commit_append(&self, upload: &Upload, from_offset: i64, complete: bool) -> Result<(), AppError> {
        let txn = self.db.begin().await.map_err(db_error)?;
        if !store::advance_upload(&txn, upload, from_offset).await.map_err(db_error)? {
            return Err(AppError::conflict("the upload moved on meanwhile (a concurrent PATCH)"));
        }
        if complete {
            self.record_source(&txn, upload, &[], upload.offset).await?;
        }
        txn.commit().await.map_err(db_error)?;
        if complete {
            self.relay.notify();
            tracing::info!(upload.id = %upload.id, video.id = %upload.video_id, bytes = upload.offset, "upload completed");
        }
        Ok(())
    }

    /// Makes the completed `upload` its video's source (`parts`: the objects of a
    /// concatenated one, in order) and its transcode job (`upload.completed`), within `txn`;
    /// the sources it replaces are deleted.
    pub(crate) async fn record_source<C: flick_platform::db::sea_orm::ConnectionTrait>(
        &self,
        txn: &C,
        upload: &Upload,
        parts: &[String],
        size: i64,
    ) -> Result<(), AppError> {
        store::queue_source(txn, &upload.video_id, &upload.id, &upload.object_key, parts, size, now_ms())
            .await
            .map_err(db_error)?;
        let payload = events::UploadCompleted {
            video_id: upload.video_id.clone(),
            upload_id: upload.id.clone(),
            size_bytes: size,
        };
        let event = envelope("upload.completed", &upload.video_id, crate::NAME, payload.encode_to_vec());
        outbox::record(txn, &event).await.map_err(db_error)?;
        // Older sources of this video (and a replaced final's partials) are replaced by this one.
        for old in store::replace_sources(txn, &upload.video_id, &upload.id).await.map_err(db_error)? {
            if old.kind != UploadKind::Final {
                let _ = self.storage.delete(&old.object_key).await;
            }
        }
        Ok(())
    }

    /// Sniffs the first bytes; a file that is no media container is refused and dropped.
    async fn refuse_unless_media(&self, upload: &Upload, head: &[u8]) -> Result<(), AppError> {
        if sniff(head).is_some() {
            return Ok(());
        }
        self.drop_upload(upload, UploadState::Rejected).await?;
        Err(AppError::new(
            ErrorCode::UnsupportedMediaType,
            "this file is not a video: its first bytes match no known video container (MP4, MOV, MKV, WebM, AVI, MPEG-TS, FLV, Ogg)",
        ))
    }

    /// Terminates the upload (tus termination): its parts and tail are removed; a final
    /// upload's partials go with it, and a partial's final with its other partials.
    pub async fn terminate(&self, caller: &Caller, id: &str) -> Result<(), AppError> {
        let _held = self.lock_upload(id).await?;
        let upload = self.upload_for_owner(caller, id).await?;
        if upload.state == UploadState::Completed && upload.kind != UploadKind::Partial {
            return Err(AppError::conflict("the upload is complete; delete the video instead"));
        }
        self.drop_upload(&upload, UploadState::Terminated).await
    }

    /// Ends the upload as `state` and drops its bytes. Concatenations go whole: a final
    /// upload with its partials, a partial with the final that joined it (which can no
    /// longer complete) and that final's other partials.
    pub(crate) async fn drop_upload(&self, upload: &Upload, state: UploadState) -> Result<(), AppError> {
        if let (UploadKind::Partial, Some(final_id)) = (upload.kind, &upload.final_id)
            && let Some(joined) = store::upload(&self.db, final_id).await.map_err(db_error)?
        {
            if joined.state == UploadState::Completed {
                return Err(AppError::conflict(
                    "this partial upload is part of a completed upload; delete the video instead",
                ));
            }
            return self.drop_final(&joined, state).await;
        }
        match upload.kind {
            UploadKind::Final => self.drop_final(upload, state).await,
            _ => self.drop_one(upload, state).await,
        }
    }

    async fn drop_final(&self, upload: &Upload, state: UploadState) -> Result<(), AppError> {
        for partial in store::uploads_by_ids(&self.db, &upload.partials).await.map_err(db_error)? {
            self.drop_one(&partial, state).await?;
        }
        self.drop_one(upload, state).await
    }

    /// Ends this one upload: an unfinished one's multipart upload is aborted and its tail
    /// deleted, a completed partial's object deleted; then the row is marked.
    pub(crate) async fn drop_one(&self, upload: &Upload, state: UploadState) -> Result<(), AppError> {
        match (upload.kind, upload.state) {
            (UploadKind::Final, _) => {}
            (_, UploadState::Uploading) => {
                self.storage.multipart_abort(&upload.object_key, &upload.multipart_id).await.map_err(storage_error)?;
                if let Some(tail) = &upload.tail_key {
                    self.storage.delete(tail).await.map_err(storage_error)?;
                }
            }
            (UploadKind::Partial, UploadState::Completed) => {
                self.storage.delete(&upload.object_key).await.map_err(storage_error)?;
            }
            _ => return Ok(()),
        }
        store::set_upload_state(&self.db, &upload.id, state, now_ms()).await.map_err(db_error)?;
        Ok(())
    }

    /// Expires unfinished uploads past their deadline; returns how many.
    pub async fn expire_uploads(&self) -> Result<usize, AppError> {
        let due = store::expired_uploads(&self.db, now_ms(), 100).await.map_err(db_error)?;
        let mut expired = 0;
        for upload in &due {
            // A PATCH still running here is left for the next round (it stops at the expiry
            // or its idle timeout): the sweeper never waits behind a client.
            let lock = self.upload_lock(&upload.id);
            let Ok(_held) = lock.try_lock() else { continue };
            self.drop_upload(upload, UploadState::Expired).await?;
            expired += 1;
            tracing::info!(upload.id = %upload.id, "upload expired; its parts were dropped");
        }
        // Finals whose last partial completed without completing them (a crash between the two).
        for upload in store::finals_ready(&self.db, 100).await.map_err(db_error)? {
            let id = upload.id.clone();
            if let Err(e) = self.complete_final_if_ready(upload).await {
                tracing::warn!(upload.id = %id, error = %e.message(), "a final upload whose partials are complete did not complete");
            }
        }
        Ok(expired)
    }

    fn upload_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.upload_locks.lock().expect("upload locks");
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(id.to_string()).or_default().clone()
    }
}

fn quota_exceeded(held: u64, quota: u64, needed: Option<u64>) -> AppError {
    let needed = match needed {
        Some(n) => format!(" and this upload needs {n} more"),
        None => String::new(),
    };
    AppError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "upload quota exceeded: {held} of {quota} bytes are in use{needed}; \
             delete videos or finish pending uploads first"
        ),
    )
}

/// Bytes of one PATCH of a deferred-length upload still streaming, counted in the user's
/// total while it runs.
struct InFlight {
    map: Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
    owner: String,
    bytes: i64,
}

impl InFlight {
    fn new(t: &Transcoder, owner: &str) -> Self {
        Self { map: t.upload_bytes_in_flight.clone(), owner: owner.to_string(), bytes: 0 }
    }

    /// Adds `n` bytes; returns the user's bytes in flight in this process.
    fn add(&mut self, n: i64) -> i64 {
        self.bytes += n;
        let mut map = self.map.lock().expect("bytes in flight");
        let total = map.entry(self.owner.clone()).or_default();
        *total += n;
        *total
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let mut map = self.map.lock().expect("bytes in flight");
        if let Some(total) = map.get_mut(&self.owner) {
            *total -= self.bytes;
            if *total <= 0 {
                map.remove(&self.owner);
            }
        }
    }
}

async fn join_part(parts: &mut JoinSet<Result<(usize, String), AppError>>) -> Result<(usize, String), AppError> {
    match parts.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(e)) => Err(AppError::internal(format!("part upload task: {e}"))),
        None => Err(AppError::internal("no part upload in flight")),
    }
}
