//! Pages of media's lists: sizes (the platform's rule, [`flick_kit::page`]) and keyset
//! cursors, opaque to clients.

use crate::domain::Media;
use crate::video::Video;
use flick_kit::AppError;
use flick_kit::page::{Page, page_size};

/// `first` when a list is asked for without one.
pub const DEFAULT_FIRST: usize = 20;

/// `first` as a limit of rows (the platform's bounds, media's default).
pub(crate) fn limit_of(first: Option<i32>) -> Result<u64, AppError> {
    Ok(page_size(first, DEFAULT_FIRST)? as u64)
}

/// The page of `limit` items from `rows` fetched with `limit + 1`.
pub(crate) fn page<T>(rows: Vec<T>, limit: u64) -> Page<T> {
    Page::from_rows(rows, limit as usize)
}

/// A keyset cursor: `(sort key, id)` in opaque base64.
pub fn encode_cursor(key: i64, id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{key}:{id}"))
}

pub fn decode_cursor(cursor: Option<&str>) -> Result<Option<(i64, String)>, AppError> {
    use base64::Engine;
    let Some(c) = cursor else { return Ok(None) };
    let bad = || AppError::bad_input("invalid cursor").with_field("after", "is not a cursor from this list");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (key, id) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some((key.parse().map_err(|_| bad())?, id.to_string())))
}

impl Media {
    /// Sort key of a row in the list it came from (for cursors).
    pub fn cursor_of(v: &Video, by_created: bool) -> String {
        let key = if by_created { v.created_at_ms } else { v.published_at_ms.unwrap_or(v.created_at_ms) };
        encode_cursor(key, &v.id)
    }
}
