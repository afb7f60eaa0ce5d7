//! Playlists and "Watch later" (each user's built-in, private playlist). Owner-only writes:
//! another user gets FORBIDDEN for a playlist they can see and NOT_FOUND for one they cannot;
//! anonymous callers UNAUTHENTICATED. A playlist lists only the videos its viewer may watch;
//! its `itemCount` counts every item. At most `max_playlist_items` (5,000) items; `first` ≤ 100.
//!
//! Order: each item has a place (a number); a new item goes after the last, a moved one
//! between its new neighbours (their mean), and the playlist is renumbered when two places get
//! too close to split.

use crate::domain::{Activity, Visibility, decode_cursor, doc_error, encode_cursor};
use crate::store;
use flick_kit::AppError;
use flick_kit::identity::Caller;
use flick_kit::page::{Page, page_size};

const TITLE_MAX: usize = 150;
const DESCRIPTION_MAX: usize = 5_000;
/// Places closer than this are renumbered before a move between them.
const MIN_GAP: f64 = 1e-9;

#[derive(Debug, Clone, PartialEq)]
pub struct Playlist {
    pub id: String,
    pub owner: String,
    pub title: String,
    pub description: String,
    pub visibility: Visibility,
    pub watch_later: bool,
    pub item_count: i64,
    pub created_at_ms: i64,
    pub(crate) sort_key: String,
}

impl Playlist {
    pub fn visible_to(&self, caller: &Caller) -> bool {
        self.visibility != Visibility::Private || self.is_owned_by(caller)
    }

    fn is_owned_by(&self, caller: &Caller) -> bool {
        caller.user_id.is_some_and(|u| u.to_string() == self.owner)
    }

    pub fn cursor(&self) -> String {
        encode_cursor(&self.sort_key)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlaylistItem {
    pub playlist: String,
    pub video_id: String,
    pub place: f64,
    pub added_at_ms: i64,
}

impl PlaylistItem {
    pub fn cursor(&self) -> String {
        encode_cursor(&format!("{}", self.place))
    }
}

/// What a create or update sets (None: unchanged).
#[derive(Debug, Clone, Default)]
pub struct PlaylistChange {
    pub title: Option<String>,
    pub description: Option<String>,
    pub visibility: Option<Visibility>,
}

fn check(change: &PlaylistChange) -> Result<(), AppError> {
    if let Some(t) = &change.title {
        let n = t.trim().chars().count();
        if n == 0 || n > TITLE_MAX {
            return Err(
                AppError::bad_input("title must be 1 to 150 characters").with_field("title", "1 to 150 characters")
            );
        }
    }
    if let Some(d) = &change.description
        && d.chars().count() > DESCRIPTION_MAX
    {
        return Err(AppError::bad_input("description must be at most 5000 characters")
            .with_field("description", "at most 5000 characters"));
    }
    Ok(())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn watch_later_id(user: &str) -> String {
    format!("watch-later-{user}")
}

impl Activity {
    pub async fn create_playlist(&self, caller: &Caller, change: PlaylistChange) -> Result<Playlist, AppError> {
        let me = caller.require_user()?.to_string();
        if change.title.is_none() {
            return Err(AppError::bad_input("title is required").with_field("title", "required"));
        }
        check(&change)?;
        let created = now_ms();
        let id = uuid::Uuid::now_v7().to_string();
        let p = Playlist {
            sort_key: format!("{created:015}|{id}"),
            id,
            owner: me,
            title: change.title.unwrap_or_default().trim().to_string(),
            description: change.description.unwrap_or_default(),
            visibility: change.visibility.unwrap_or(Visibility::Private),
            watch_later: false,
            item_count: 0,
            created_at_ms: created,
        };
        store::create_playlist(self.documents(), &p).await.map_err(doc_error)?;
        Ok(p)
    }

    /// The caller's "Watch later", made on first use.
    pub async fn watch_later(&self, caller: &Caller) -> Result<Playlist, AppError> {
        let me = caller.require_user()?.to_string();
        let id = watch_later_id(&me);
        if let Some(p) = store::playlist(self.documents(), &id).await.map_err(doc_error)? {
            return Ok(p);
        }
        let p = Playlist {
            // "~" sorts after every time: Watch later comes first in the owner's list.
            sort_key: format!("~|{id}"),
            id: id.clone(),
            owner: me,
            title: "Watch later".into(),
            description: String::new(),
            visibility: Visibility::Private,
            watch_later: true,
            item_count: 0,
            created_at_ms: now_ms(),
        };
        match store::create_playlist(self.documents(), &p).await {
            Ok(()) => Ok(p),
            // Made meanwhile by a concurrent request.
            Err(flick_platform::documents::DocError::Duplicate(_)) => store::playlist(self.documents(), &id)
                .await
                .map_err(doc_error)?
                .ok_or_else(|| AppError::internal("watch later vanished")),
            Err(e) => Err(doc_error(e)),
        }
    }

    /// A playlist the caller may see.
    pub async fn playlist(&self, caller: &Caller, id: &str) -> Result<Option<Playlist>, AppError> {
        let p = store::playlist(self.documents(), id).await.map_err(doc_error)?;
        Ok(p.filter(|p| p.visible_to(caller)))
    }

    /// A playlist the caller may change.
    async fn owned(&self, caller: &Caller, id: &str) -> Result<Playlist, AppError> {
        caller.require_user()?;
        let p = self.playlist(caller, id).await?.ok_or_else(|| AppError::not_found("no such playlist"))?;
        if !p.is_owned_by(caller) {
            return Err(AppError::forbidden("only the playlist's owner may change it"));
        }
        Ok(p)
    }

    pub async fn update_playlist(
        &self,
        caller: &Caller,
        id: &str,
        change: PlaylistChange,
    ) -> Result<Playlist, AppError> {
        let p = self.owned(caller, id).await?;
        check(&change)?;
        if p.watch_later && (change.title.is_some() || change.visibility.is_some()) {
            return Err(AppError::bad_input("Watch later keeps its name and stays private"));
        }
        let title = change.title.as_deref().map(str::trim);
        store::update_playlist(self.documents(), id, title, change.description.as_deref(), change.visibility)
            .await
            .map_err(doc_error)?
            .ok_or_else(|| AppError::not_found("no such playlist"))
    }

    pub async fn delete_playlist(&self, caller: &Caller, id: &str) -> Result<bool, AppError> {
        let p = self.owned(caller, id).await?;
        if p.watch_later {
            return Err(AppError::bad_input("Watch later cannot be deleted; remove its videos instead"));
        }
        store::delete_playlist(self.documents(), id).await.map_err(doc_error)
    }

    /// Adds a video the caller may watch at the end; a video already there stays where it is.
    pub async fn add_to_playlist(&self, caller: &Caller, id: &str, video_id: &str) -> Result<Playlist, AppError> {
        let p = self.owned(caller, id).await?;
        let docs = self.documents();
        self.video(caller, video_id)
            .await?
            .filter(|v| v.watchable_by(caller))
            .ok_or_else(|| AppError::not_found("no such video").with_field("videoId", "no such video"))?;
        if store::item(docs, id, video_id).await.map_err(doc_error)?.is_some() {
            return Ok(p);
        }
        let max = self.config().max_playlist_items;
        if !store::reserve_item(docs, id, max).await.map_err(doc_error)? {
            return Err(AppError::bad_input(format!("a playlist holds at most {max} videos")));
        }
        let place = store::last_place(docs, id).await.map_err(doc_error)?.map_or(1.0, |last| last.floor() + 1.0);
        let item = PlaylistItem { playlist: id.into(), video_id: video_id.into(), place, added_at_ms: now_ms() };
        match store::insert_item(docs, &item).await {
            Ok(true) => {}
            Ok(false) => store::count_items(docs, id, -1).await.map_err(doc_error)?, // added meanwhile
            Err(e) => {
                let _ = store::count_items(docs, id, -1).await;
                return Err(doc_error(e));
            }
        }
        self.reread(id).await
    }

    pub async fn remove_from_playlist(&self, caller: &Caller, id: &str, video_id: &str) -> Result<Playlist, AppError> {
        self.owned(caller, id).await?;
        if store::delete_item(self.documents(), id, video_id).await.map_err(doc_error)? {
            store::count_items(self.documents(), id, -1).await.map_err(doc_error)?;
        }
        self.reread(id).await
    }

    /// Moves a video to `position` (0: first; past the end: last).
    pub async fn move_item(
        &self,
        caller: &Caller,
        id: &str,
        video_id: &str,
        position: i32,
    ) -> Result<Playlist, AppError> {
        let p = self.owned(caller, id).await?;
        if position < 0 {
            return Err(AppError::bad_input("position must not be negative").with_field("position", "not negative"));
        }
        let docs = self.documents();
        store::item(docs, id, video_id).await.map_err(doc_error)?.ok_or_else(|| {
            AppError::not_found("the video is not in this playlist").with_field("videoId", "not in the playlist")
        })?;
        let mut others: Vec<store::PlaceOf> = store::places(docs, id).await.map_err(doc_error)?;
        others.retain(|(v, _)| v != video_id);
        let at = (position as usize).min(others.len());
        let place =
            |others: &[store::PlaceOf]| match (at.checked_sub(1).map(|i| others[i].1), others.get(at).map(|o| o.1)) {
                (None, None) => Some(1.0),
                (None, Some(next)) => Some(next - 1.0),
                (Some(prev), None) => Some(prev + 1.0),
                (Some(prev), Some(next)) => (next - prev > MIN_GAP).then_some((prev + next) / 2.0),
            };
        let new_place = match place(&others) {
            Some(x) => x,
            None => {
                // Too close to split: number the others 1, 2, … and move between two of them.
                for (i, other) in others.iter_mut().enumerate() {
                    other.1 = (i + 1) as f64;
                    store::set_place(docs, id, &other.0, other.1).await.map_err(doc_error)?;
                }
                place(&others).unwrap_or(1.0)
            }
        };
        store::set_place(docs, id, video_id, new_place).await.map_err(doc_error)?;
        Ok(p)
    }

    /// A page of a playlist's items the caller may watch, in order.
    pub async fn playlist_items(
        &self,
        caller: &Caller,
        id: &str,
        after: Option<&str>,
        first: Option<i32>,
    ) -> Result<Page<PlaylistItem>, AppError> {
        let limit = page_size(first, 20)?;
        let after = match decode_cursor(after)? {
            Some(text) => Some(text.parse::<f64>().map_err(|_| {
                AppError::bad_input("invalid cursor").with_field("after", "is not a cursor from this list")
            })?),
            None => None,
        };
        self.playlist(caller, id).await?.ok_or_else(|| AppError::not_found("no such playlist"))?;
        let mut after = after;
        // A page of videos the viewer may not watch is skipped (up to a few), as in history.
        for _ in 0..crate::domain::HIDDEN_PAGES {
            let rows = store::items(self.documents(), id, after, 0, limit as u64 + 1).await.map_err(doc_error)?;
            let page = Page::from_rows(rows, limit);
            let last = page.items.last().map(|i| i.place);
            let ids: Vec<String> = page.items.iter().map(|i| i.video_id.clone()).collect();
            let visible = self.watchable(caller, &ids).await?;
            let items: Vec<PlaylistItem> = page.items.into_iter().filter(|i| visible.contains(&i.video_id)).collect();
            if !items.is_empty() || !page.has_next || limit == 0 {
                return Ok(Page { items, has_next: page.has_next });
            }
            after = last;
        }
        Ok(Page { items: Vec::new(), has_next: true })
    }

    /// A user's playlists, newest first (Watch later first): all of them for the user, the
    /// public ones for others.
    pub async fn playlists_of(
        &self,
        caller: &Caller,
        owner: &str,
        after: Option<&str>,
        first: Option<i32>,
    ) -> Result<Page<Playlist>, AppError> {
        let limit = page_size(first, 20)?;
        let after = decode_cursor(after)?;
        let mine = caller.user_id.is_some_and(|u| u.to_string() == owner);
        let rows = store::playlists_of(self.documents(), owner, !mine, after.as_deref(), limit as u64 + 1)
            .await
            .map_err(doc_error)?;
        Ok(Page::from_rows(rows, limit))
    }

    async fn reread(&self, id: &str) -> Result<Playlist, AppError> {
        store::playlist(self.documents(), id)
            .await
            .map_err(doc_error)?
            .ok_or_else(|| AppError::not_found("no such playlist"))
    }
}
