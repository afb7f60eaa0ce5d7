//! The tus concatenation extension: partial uploads, each holding a range of a file in its
//! own object, joined by a final upload whose source is their objects read in order (no byte
//! is copied again: the worker downloads the parts one after the other).
//!
//! - A partial upload (`Upload-Concat: partial`) needs its length and no video: it is no
//!   video's source by itself. It counts toward its owner's quota and open uploads as any
//!   upload does, and expires as they do (a completed one no final joined too).
//! - A final upload (`Upload-Concat: final;<urls>`) names the caller's video and partial
//!   uploads of the caller that no other final joined; its length is theirs summed, its own
//!   bytes none (it is not counted in the quota: its partials are). It may come before the
//!   partials finish; it completes — becomes the video's source, `upload.completed` — when
//!   the last of them does, after the file's first bytes are sniffed.
//! - Ending one ends all: a terminated or expired final drops its partials, a dropped
//!   partial its final; a replaced final's partials are deleted with it.

use crate::domain::{Transcoder, Upload, UploadKind, UploadState, db_error, now_ms, storage_error};
use crate::pipeline::sniff;
use crate::store;
use crate::uploads::{SNIFF_BYTES, partial_key, source_key};
use flick_kit::identity::Caller;
use flick_kit::{AppError, ErrorCode};
use flick_platform::db::sea_orm::TransactionTrait;
use uuid::Uuid;

pub struct NewPartial<'a> {
    pub length: i64,
    /// The raw `Upload-Metadata` header (kept and echoed; no key is needed).
    pub metadata: &'a str,
}

pub struct NewFinal<'a> {
    pub video_id: &'a str,
    /// The partial uploads' ids, in the order their bytes are joined.
    pub partials: Vec<String>,
    pub metadata: &'a str,
}

impl Transcoder {
    /// Starts a partial upload (`Upload-Concat: partial`): the size, quota and open-upload
    /// rules of any upload, no video.
    pub async fn create_partial(&self, caller: &Caller, new: NewPartial<'_>) -> Result<Upload, AppError> {
        let owner = caller.require_user()?.to_string();
        self.check_open_uploads(&owner).await?;
        self.check_size(&owner, new.length, None).await?;
        let id = Uuid::now_v7().to_string();
        let object_key = partial_key(&id);
        let multipart_id = self.storage.multipart_start(&object_key).await.map_err(storage_error)?;
        let mut row =
            self.new_upload(id, String::new(), owner, Some(new.length), new.metadata, object_key, multipart_id);
        row.kind = UploadKind::Partial;
        store::insert_upload(&self.db, &row).await.map_err(db_error)?;
        tracing::info!(upload.id = %row.id, bytes = new.length, "partial upload created");
        Ok(row)
    }

    /// Joins the caller's partial uploads into a final upload for the caller's video
    /// (`Upload-Concat: final;…`). Completes it at once when they are complete.
    pub async fn create_final(&self, caller: &Caller, new: NewFinal<'_>) -> Result<Upload, AppError> {
        let owner = caller.require_user()?.to_string();
        let video = self.owned_video(caller, new.video_id).await.map_err(|e| match e.code() {
            ErrorCode::NotFound | ErrorCode::Forbidden => AppError::bad_input(
                "Upload-Metadata videoId names no video of yours (create it with createVideo first)",
            ),
            _ => e,
        })?;
        if new.partials.is_empty() {
            return Err(AppError::bad_input("Upload-Concat: final names no partial upload"));
        }
        for (i, id) in new.partials.iter().enumerate() {
            if new.partials[..i].contains(id) {
                return Err(AppError::bad_input(format!("Upload-Concat: final names the upload {id} twice")));
            }
        }
        let ids: Vec<String> = new.partials.iter().filter(|id| Uuid::parse_str(id).is_ok()).cloned().collect();
        let found = store::uploads_by_ids(&self.db, &ids).await.map_err(db_error)?;
        let now = now_ms();
        let mut length = 0i64;
        for id in &new.partials {
            let Some(p) = found.iter().find(|u| &u.id == id && u.owner_id == owner) else {
                return Err(AppError::bad_input(format!("Upload-Concat: {id} is not one of your uploads")));
            };
            if p.kind != UploadKind::Partial {
                return Err(AppError::bad_input(format!(
                    "Upload-Concat: {id} is not a partial upload (create those with Upload-Concat: partial)"
                )));
            }
            let open = p.state == UploadState::Uploading && p.expires_at_ms >= now;
            if !(open || p.state == UploadState::Completed) {
                return Err(AppError::bad_input(format!("Upload-Concat: the partial upload {id} ended ({})", p.state)));
            }
            if p.final_id.is_some() {
                return Err(AppError::bad_input(format!(
                    "Upload-Concat: the partial upload {id} is already part of another final upload"
                )));
            }
            length += p.length.unwrap_or(0);
        }
        let max = self.config.max_upload_bytes;
        if length as u64 > max {
            return Err(AppError::new(
                ErrorCode::PayloadTooLarge,
                format!("the partial uploads join into {length} bytes; the largest upload accepted is {max} bytes"),
            ));
        }
        self.check_open_uploads(&owner).await?;
        let id = Uuid::now_v7().to_string();
        let object_key = source_key(&video.id, &id);
        let mut row =
            self.new_upload(id, video.id.clone(), owner.clone(), Some(length), new.metadata, object_key, "".into());
        row.kind = UploadKind::Final;
        row.partials = new.partials;
        let txn = self.db.begin().await.map_err(db_error)?;
        store::insert_upload(&txn, &row).await.map_err(db_error)?;
        for partial in &row.partials {
            // Re-checked where it is written: two finals racing for one partial, one wins.
            if !store::join_partial(&txn, partial, &owner, &row.id, &video.id).await.map_err(db_error)? {
                txn.rollback().await.map_err(db_error)?;
                return Err(AppError::bad_input(format!(
                    "Upload-Concat: the partial upload {partial} is already part of another final upload"
                )));
            }
        }
        txn.commit().await.map_err(db_error)?;
        tracing::info!(upload.id = %row.id, video.id = %row.video_id, partials = row.partials.len(), bytes = length, "final upload created");
        self.complete_final_if_ready(row).await
    }

    /// A partial upload completed: its final, if one joined it, may be complete now.
    pub(crate) async fn partial_completed(&self, partial_id: &str) -> Result<(), AppError> {
        // Read again after the commit: a final may have joined it while its PATCH ran.
        let partial = store::upload(&self.db, partial_id).await.map_err(db_error)?;
        let Some(final_id) = partial.and_then(|p| p.final_id) else { return Ok(()) };
        if let Some(joined) = store::upload(&self.db, &final_id).await.map_err(db_error)? {
            self.complete_final_if_ready(joined).await?;
        }
        Ok(())
    }

    /// Completes the final upload if every partial is complete: its first bytes are sniffed
    /// (a non-video drops it with its partials, 415), then it becomes the video's source in
    /// one transaction, once (whoever gets there first: the last partial's PATCH, the final's
    /// creation, a HEAD, the sweeper). Returns the final as it stands.
    pub(crate) async fn complete_final_if_ready(&self, mut upload: Upload) -> Result<Upload, AppError> {
        if upload.kind != UploadKind::Final || upload.state != UploadState::Uploading {
            return Ok(upload);
        }
        let partials = store::uploads_by_ids(&self.db, &upload.partials).await.map_err(db_error)?;
        if partials.len() != upload.partials.len() || partials.iter().any(|p| p.state != UploadState::Completed) {
            return Ok(upload);
        }
        let head = self.head_of(&partials).await?;
        if sniff(&head).is_none() {
            self.drop_upload(&upload, UploadState::Rejected).await?;
            return Err(AppError::new(
                ErrorCode::UnsupportedMediaType,
                "this file is not a video: its first bytes (those of the first partial upload) match no known video \
                 container (MP4, MOV, MKV, WebM, AVI, MPEG-TS, FLV, Ogg)",
            ));
        }
        let length: i64 = partials.iter().map(|p| p.offset).sum();
        let keys: Vec<String> = partials.iter().map(|p| p.object_key.clone()).collect();
        let txn = self.db.begin().await.map_err(db_error)?;
        if !store::complete_final(&txn, &upload.id, length, now_ms()).await.map_err(db_error)? {
            txn.rollback().await.map_err(db_error)?;
            return store::upload(&self.db, &upload.id)
                .await
                .map_err(db_error)?
                .ok_or_else(|| AppError::new(ErrorCode::Gone, "the upload was terminated or expired"));
        }
        self.record_source(&txn, &upload, &keys, length).await?;
        txn.commit().await.map_err(db_error)?;
        self.relay.notify();
        metrics::counter!("uploads_completed_total").increment(1);
        tracing::info!(upload.id = %upload.id, video.id = %upload.video_id, bytes = length, partials = keys.len(), "final upload completed");
        upload.state = UploadState::Completed;
        upload.offset = length;
        upload.length = Some(length);
        Ok(upload)
    }

    /// The file's first `SNIFF_BYTES` (fewer for a smaller file), from the completed
    /// partials' objects in order.
    async fn head_of(&self, partials: &[Upload]) -> Result<Vec<u8>, AppError> {
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        for p in partials {
            let want = (SNIFF_BYTES - head.len()).min(p.offset.max(0) as usize);
            if want > 0 {
                head.extend_from_slice(
                    &self.storage.get_range(&p.object_key, 0..want as u64).await.map_err(storage_error)?,
                );
            }
            if head.len() >= SNIFF_BYTES {
                break;
            }
        }
        Ok(head)
    }
}
