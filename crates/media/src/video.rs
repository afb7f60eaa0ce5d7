//! Media's domain types: a video with its typed states, a comment, and the fields a write
//! changes. The store builds them from rows and the transports from them; the text of a state
//! (`"PUBLIC"`, `"READY"`, ...) exists only in [`Visibility::as_str`] and
//! [`VideoStatus::as_str`] (the columns, the events and gRPC carry that text).

use async_graphql::Enum;
use std::fmt;
use std::str::FromStr;

// The GraphQL enum `Visibility` as well as the domain's: `//` comments, as a doc comment
// would change the SDL. Who may see a video besides its owner: anyone in lists (public),
// anyone with its id (unlisted), nobody (private).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Visibility {
    Public,
    Unlisted,
    Private,
}

// The GraphQL enum `VideoStatus` too: `AWAITING_UPLOAD → PROCESSING → READY | FAILED` (a new
// upload or a retry processes a failed video again).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum VideoStatus {
    AwaitingUpload,
    Processing,
    Ready,
    Failed,
}

/// A state's text that names no state (a column or a message written by something else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownState {
    pub kind: &'static str,
    pub text: String,
}

impl fmt::Display for UnknownState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a {}", self.text, self.kind)
    }
}

impl std::error::Error for UnknownState {}

impl Visibility {
    pub const ALL: [Visibility; 3] = [Visibility::Public, Visibility::Unlisted, Visibility::Private];

    /// The text of the column, the events and gRPC (the same as the GraphQL name).
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "PUBLIC",
            Visibility::Unlisted => "UNLISTED",
            Visibility::Private => "PRIVATE",
        }
    }
}

impl FromStr for Visibility {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, UnknownState> {
        Visibility::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownState { kind: "visibility", text: s.to_string() })
    }
}

impl VideoStatus {
    pub const ALL: [VideoStatus; 4] =
        [VideoStatus::AwaitingUpload, VideoStatus::Processing, VideoStatus::Ready, VideoStatus::Failed];

    /// The text of the column, the events and gRPC (the same as the GraphQL name).
    pub fn as_str(self) -> &'static str {
        match self {
            VideoStatus::AwaitingUpload => "AWAITING_UPLOAD",
            VideoStatus::Processing => "PROCESSING",
            VideoStatus::Ready => "READY",
            VideoStatus::Failed => "FAILED",
        }
    }
}

impl FromStr for VideoStatus {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, UnknownState> {
        VideoStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownState { kind: "video status", text: s.to_string() })
    }
}

/// A video's metadata, states and persisted counts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Video {
    pub id: String,
    pub owner_id: String,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub category: Option<String>,
    pub visibility: Visibility,
    pub status: VideoStatus,
    /// Why processing failed (shown to the owner only).
    pub failure: Option<String>,
    pub created_at_ms: i64,
    pub published_at_ms: Option<i64>,
    /// The reconciler's persisted copies (the live counts are in `Counters`).
    pub like_count: i64,
    pub comment_count: i64,
    pub view_count: i64,
}

impl Video {
    /// Public and ready: what anyone may be shown in a list (the feed, search, a channel).
    pub fn is_listed(&self) -> bool {
        self.visibility == Visibility::Public && self.status == VideoStatus::Ready
    }

    /// Whether `viewer_id` owns the video.
    pub fn is_owned_by(&self, viewer_id: Option<&str>) -> bool {
        viewer_id == Some(self.owner_id.as_str())
    }
}

/// A comment on a video, or a reply to one (`parent_id`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Comment {
    pub id: String,
    pub video_id: String,
    pub author_id: String,
    pub parent_id: Option<String>,
    pub body: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Fields of a new or changed video; `None` keeps the current value on update.
#[derive(Debug, Default, Clone)]
pub struct VideoInput {
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub category: Option<Option<String>>,
    pub visibility: Option<Visibility>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_text_and_unknown_text_is_an_error() {
        for v in Visibility::ALL {
            assert_eq!(v.as_str().parse::<Visibility>(), Ok(v));
        }
        for s in VideoStatus::ALL {
            assert_eq!(s.as_str().parse::<VideoStatus>(), Ok(s));
        }
        assert_eq!("public".parse::<Visibility>(), Err(UnknownState { kind: "visibility", text: "public".into() }));
        assert!("".parse::<VideoStatus>().is_err());
        assert!("QUEUED".parse::<VideoStatus>().is_err());
    }

    #[test]
    fn the_text_is_the_graphql_name() {
        use async_graphql::EnumType;
        for (v, item) in Visibility::ALL.into_iter().zip(<Visibility as EnumType>::items()) {
            assert_eq!((item.value, item.name), (v, v.as_str()));
        }
        for (s, item) in VideoStatus::ALL.into_iter().zip(<VideoStatus as EnumType>::items()) {
            assert_eq!((item.value, item.name), (s, s.as_str()));
        }
    }
}
