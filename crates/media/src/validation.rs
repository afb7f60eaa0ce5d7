//! What makes a video's metadata and a comment valid, and the categories a video may be in.

use crate::video::Video;
use flick_kit::AppError;

/// The categories a video may be in (lower-case).
pub const CATEGORIES: &[&str] = &[
    "autos",
    "comedy",
    "education",
    "entertainment",
    "film",
    "gaming",
    "howto",
    "music",
    "news",
    "nonprofit",
    "people",
    "pets",
    "science",
    "sports",
    "tech",
    "travel",
];

/// Title 1–100, description ≤ 5,000, ≤ 10 tags (lower-case, 1–30 chars, deduplicated), a
/// known category.
pub(crate) fn validate(v: &mut Video) -> Result<(), AppError> {
    let mut err: Option<AppError> = None;
    let mut problem = |field: &str, text: &str| {
        err = Some(err.take().unwrap_or_else(|| AppError::bad_input("invalid video")).with_field(field, text));
    };
    v.title = v.title.trim().to_string();
    if !(1..=100).contains(&v.title.chars().count()) {
        problem("title", "must be 1 to 100 characters");
    }
    v.description = v.description.trim().to_string();
    if v.description.chars().count() > 5000 {
        problem("description", "must be at most 5000 characters");
    }
    let mut tags: Vec<String> = Vec::new();
    for tag in &v.tags {
        let t: String = tag.trim().to_lowercase().split_whitespace().collect::<Vec<_>>().join("-");
        if t.is_empty() || t.chars().count() > 30 || !t.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_') {
            problem("tags", "each tag is 1 to 30 letters, digits, - or _");
        } else if !tags.contains(&t) {
            tags.push(t);
        }
    }
    if tags.len() > 10 {
        problem("tags", "at most 10 tags");
    }
    v.tags = tags;
    if let Some(c) = &v.category {
        let c = c.trim().to_lowercase();
        if !CATEGORIES.contains(&c.as_str()) {
            problem("category", &format!("must be one of {}", CATEGORIES.join(", ")));
        }
        v.category = Some(c);
    }
    err.map_or(Ok(()), Err)
}

/// A comment's body: trimmed, 1 to 5,000 characters.
pub(crate) fn check_body(body: &str) -> Result<String, AppError> {
    let body = body.trim().to_string();
    if !(1..=5000).contains(&body.chars().count()) {
        return Err(AppError::bad_input("invalid comment").with_field("body", "must be 1 to 5000 characters"));
    }
    Ok(body)
}
