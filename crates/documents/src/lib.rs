//! The document store port: JSON documents in named collections, for high-write,
//! schema-flexible, time-keyed data (the activity service's playback sessions, history,
//! playlists, analytics buckets). MongoDB through the official `mongodb` crate in production,
//! SQLite (one file per service, a JSON column per document) as the embedded default.
//!
//! The operations are the subset both backends do the same way: single-document atomic
//! updates (`set`, `set_on_insert`, `inc`, `max`, `unset`, with a filter and upsert),
//! filtered, sorted, paged reads, counts, grouped sums, indexes (unique or not) created by
//! versioned migrations, and per-document expiry (MongoDB: a TTL index on `_expiresAt`;
//! SQLite: a column swept every minute). Reads never return expired documents on either.
//! Every document has a string `_id`.

mod mongo;
mod query;
mod sqlite;

pub use query::{Cond, Filter, Order, Update};
pub use serde_json::{Value, json};

use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("unsupported document store url {0:?}: use mongodb://… (or sqlite://… with {{service}})")]
    UnsupportedUrl(String),
    #[error("invalid request to the document store: {0}")]
    Invalid(String),
    #[error("a document with the same {0} exists")]
    Duplicate(String),
    #[error("document store unavailable: {0}")]
    Unavailable(String),
    #[error("document store migration {0} failed: {1}")]
    Migration(String, String),
}

/// An index of a collection, created by a migration.
#[derive(Debug, Clone, Copy)]
pub struct Index {
    pub name: &'static str,
    pub keys: &'static [(&'static str, Order)],
    pub unique: bool,
}

/// One versioned change of a component's collections: each collection is created with its
/// expiry support, then the indexes.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub collections: &'static [(&'static str, &'static [Index])],
}

/// One group of `Collection::group`: its key values (in the order asked), how many documents,
/// and the sums of the asked fields (missing fields count 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub key: Vec<Value>,
    pub count: u64,
    pub sums: Vec<f64>,
}

/// How `find` orders, skips and limits.
#[derive(Debug, Clone, Default)]
pub struct Find {
    pub sort: Vec<(String, Order)>,
    pub skip: u64,
    pub limit: Option<u64>,
}

impl Find {
    pub fn sort(mut self, field: &str, order: Order) -> Self {
        self.sort.push((field.to_string(), order));
        self
    }
    pub fn skip(mut self, n: u64) -> Self {
        self.skip = n;
        self
    }
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }
}

/// What a filtered update did.
#[derive(Debug, Clone, PartialEq)]
pub enum Updated {
    /// The document after the update (created when it did not exist and upsert was asked).
    Applied(Value),
    /// No document matched (and none was created).
    NotMatched,
}

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<sqlite::SqliteDocs>),
    Mongo(mongo::MongoDocs),
}

/// A connection to the store, cheap to clone.
#[derive(Clone)]
pub struct Documents {
    backend: Backend,
}

impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documents").field("backend", &self.backend_name()).finish()
    }
}

impl Documents {
    /// `url`: `mongodb://…` (the database is the URL's, else the service's name; `{service}`
    /// is replaced), `sqlite://…{service}…`, or None for `<data_dir>/db/<service>-documents.sqlite`.
    pub async fn connect(url: Option<&str>, data_dir: &Path, service: &str) -> Result<Self, DocError> {
        let backend = match url.filter(|u| !u.is_empty()) {
            Some(u) if u.starts_with("mongodb://") => Backend::Mongo(mongo::MongoDocs::connect(u, service).await?),
            Some(u) if u.starts_with("mongodb+srv://") => {
                return Err(DocError::UnsupportedUrl(format!("{u} (mongodb+srv: list the hosts in a mongodb:// url)")));
            }
            Some(u) if u.starts_with("sqlite:") => Backend::Sqlite(sqlite::SqliteDocs::connect(u, service).await?),
            None => {
                let path = data_dir.join("db").join(format!("{service}-documents.sqlite"));
                let url = format!("sqlite://{}?mode=rwc", path.display());
                Backend::Sqlite(sqlite::SqliteDocs::connect(&url, service).await?)
            }
            Some(u) => return Err(DocError::UnsupportedUrl(u.to_string())),
        };
        Ok(Self { backend })
    }

    /// `sqlite` or `mongodb`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Mongo(_) => "mongodb",
        }
    }

    /// Readiness: a round trip to the store.
    pub async fn ping(&self) -> Result<(), DocError> {
        match &self.backend {
            Backend::Sqlite(s) => s.ping().await,
            Backend::Mongo(m) => m.ping().await,
        }
    }

    /// Applies `component`'s pending migrations in order; returns the ones applied now.
    pub async fn migrate(&self, component: &str, migrations: &[Migration]) -> Result<Vec<String>, DocError> {
        for m in migrations {
            for (collection, indexes) in m.collections {
                check_collection(collection)?;
                for index in *indexes {
                    index.keys.iter().try_for_each(|(f, _)| query::check_field(f))?;
                    check_collection(index.name)?;
                }
            }
        }
        match &self.backend {
            Backend::Sqlite(s) => s.migrate(component, migrations).await,
            Backend::Mongo(m) => m.migrate(component, migrations).await,
        }
    }

    /// A collection (names: letters, digits, `_`). It exists once a migration created it;
    /// writes to one no migration created work, but without expiry on MongoDB.
    pub fn collection(&self, name: &str) -> Result<Collection, DocError> {
        check_collection(name)?;
        Ok(Collection { backend: self.backend.clone(), name: name.to_string() })
    }

    /// Deletes expired documents now (SQLite; MongoDB's TTL monitor does it on its own).
    pub async fn sweep_expired(&self) -> Result<u64, DocError> {
        match &self.backend {
            Backend::Sqlite(s) => s.sweep_expired().await,
            Backend::Mongo(_) => Ok(0),
        }
    }

    /// Drops everything this connection's database holds (tests).
    pub async fn drop_all(&self) -> Result<(), DocError> {
        match &self.backend {
            Backend::Sqlite(s) => s.drop_all().await,
            Backend::Mongo(m) => m.drop_all().await,
        }
    }
}

fn check_collection(name: &str) -> Result<(), DocError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("flick_");
    if ok { Ok(()) } else { Err(DocError::Invalid(format!("invalid collection or index name {name:?}"))) }
}

/// One collection's documents.
#[derive(Clone)]
pub struct Collection {
    backend: Backend,
    name: String,
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection").field("name", &self.name).finish()
    }
}

impl Collection {
    /// Inserts a new document (an object with a string `_id`); `Duplicate` when the id or a
    /// unique index's key is taken.
    pub async fn insert(&self, doc: Value, expires_at: Option<chrono::DateTime<chrono::Utc>>) -> Result<(), DocError> {
        let id = doc_id(&doc)?;
        query::check_keys(&doc, true)?;
        match &self.backend {
            Backend::Sqlite(s) => s.insert(&self.name, id, &doc, expires_at).await,
            Backend::Mongo(m) => m.insert(&self.name, doc, expires_at).await,
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<Value>, DocError> {
        Ok(self.find(&Filter::all().eq("_id", id), Find::default().limit(1)).await?.pop())
    }

    /// Applies `update` to the document `id` if it also matches `filter`; with `upsert`, a
    /// missing document is created from `_id`, the filter's equalities and the update (when
    /// the document exists but does not match, nothing happens: `NotMatched`).
    pub async fn update(&self, id: &str, filter: &Filter, update: &Update, upsert: bool) -> Result<Updated, DocError> {
        filter.validate()?;
        update.validate()?;
        match &self.backend {
            Backend::Sqlite(s) => s.update(&self.name, id, filter, update, upsert).await,
            Backend::Mongo(m) => m.update(&self.name, id, filter, update, upsert).await,
        }
    }

    /// Deletes the document; false when there was none.
    pub async fn delete(&self, id: &str) -> Result<bool, DocError> {
        Ok(self.delete_many(&Filter::all().eq("_id", id)).await? > 0)
    }

    /// Deletes the matching documents; returns how many.
    pub async fn delete_many(&self, filter: &Filter) -> Result<u64, DocError> {
        filter.validate()?;
        match &self.backend {
            Backend::Sqlite(s) => s.delete_many(&self.name, filter).await,
            Backend::Mongo(m) => m.delete_many(&self.name, filter).await,
        }
    }

    /// The matching documents, in `find`'s order (sort by keys that are unique together for a
    /// stable order: neither backend adds a tie-break).
    pub async fn find(&self, filter: &Filter, find: Find) -> Result<Vec<Value>, DocError> {
        filter.validate()?;
        find.sort.iter().try_for_each(|(f, _)| query::check_field(f))?;
        match &self.backend {
            Backend::Sqlite(s) => s.find(&self.name, filter, &find).await,
            Backend::Mongo(m) => m.find(&self.name, filter, &find).await,
        }
    }

    pub async fn count(&self, filter: &Filter) -> Result<u64, DocError> {
        filter.validate()?;
        match &self.backend {
            Backend::Sqlite(s) => s.count(&self.name, filter).await,
            Backend::Mongo(m) => m.count(&self.name, filter).await,
        }
    }

    /// Groups the matching documents by the values of `by` and sums `sums` in each group;
    /// groups come ordered by key (numbers, then strings; null first).
    pub async fn group(&self, filter: &Filter, by: &[&str], sums: &[&str]) -> Result<Vec<Group>, DocError> {
        filter.validate()?;
        by.iter().chain(sums).try_for_each(|f| query::check_field(f))?;
        let mut groups = match &self.backend {
            Backend::Sqlite(s) => s.group(&self.name, filter, by, sums).await?,
            Backend::Mongo(m) => m.group(&self.name, filter, by, sums).await?,
        };
        groups.sort_by(|a, b| compare_keys(&a.key, &b.key));
        Ok(groups)
    }
}

fn doc_id(doc: &Value) -> Result<&str, DocError> {
    doc.get("_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| DocError::Invalid("a document is an object with a non-empty string _id".into()))
}

fn compare_keys(a: &[Value], b: &[Value]) -> std::cmp::Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Number(_) => 1,
            Value::String(_) => 2,
            Value::Bool(_) => 3,
            _ => 4,
        }
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| rank(x).cmp(&rank(y)).then_with(|| query::compare(x, y).unwrap_or(std::cmp::Ordering::Equal)))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}
