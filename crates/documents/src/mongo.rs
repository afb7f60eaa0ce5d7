//! MongoDB through the official driver. Documents go in as BSON converted from JSON (integers
//! as 64-bit, floats as doubles) and come out as relaxed Extended JSON; expiry is a BSON date
//! in `_expiresAt` with a TTL index per collection, filtered on reads as well because the TTL
//! monitor only runs once a minute.

use crate::query::{Cond, Filter, Update};
use crate::{DocError, Find, Group, Migration, Order, Updated};
use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Database, IndexModel};
use serde_json::Value;
use std::time::Duration;

const EXPIRES: &str = "_expiresAt";
const DUPLICATE_KEY: i32 = 11000;

#[derive(Clone)]
pub(crate) struct MongoDocs {
    db: Database,
}

fn code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}

fn mongo_err(e: mongodb::error::Error) -> DocError {
    if code(&e) == Some(DUPLICATE_KEY) {
        // The server names the index in its message: `… index: <name> dup key: …`.
        let msg = e.to_string();
        let index = msg.split("index: ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or("key");
        let index = if index == "_id_" { "_id" } else { index };
        return DocError::Duplicate(index.to_string());
    }
    DocError::Unavailable(e.to_string())
}

fn to_bson(v: &Value) -> Result<Bson, DocError> {
    bson::to_bson(v).map_err(|e| DocError::Invalid(format!("not storable in MongoDB: {e}")))
}

fn to_json(mut d: Document) -> Value {
    d.remove(EXPIRES);
    Bson::Document(d).into_relaxed_extjson()
}

fn date(at: chrono::DateTime<chrono::Utc>) -> Bson {
    Bson::DateTime(bson::DateTime::from_millis(at.timestamp_millis()))
}

/// The query document of `filter`, with expired documents excluded.
fn query(filter: &Filter) -> Result<Document, DocError> {
    let mut and = vec![Bson::Document(doc! { "$or": [
        { EXPIRES: Bson::Null },
        { EXPIRES: { "$gt": date(chrono::Utc::now()) } },
    ] })];
    and.extend(conditions(filter)?);
    Ok(doc! { "$and": and })
}

/// The filter's query without the expiry condition (an upsert's query: its `$or` would
/// otherwise keep the upsert from copying the equalities into the new document).
fn query_without_expiry(filter: &Filter) -> Result<Document, DocError> {
    let and = conditions(filter)?;
    Ok(if and.is_empty() {
        Document::new()
    } else {
        doc! { "$and": and }
    })
}

fn conditions(filter: &Filter) -> Result<Vec<Bson>, DocError> {
    filter
        .conds
        .iter()
        .map(|(field, cond)| {
            let condition = match cond {
                Cond::Eq(v) => doc! { "$eq": to_bson(v)? },
                Cond::Ne(v) => doc! { "$ne": to_bson(v)? },
                Cond::Gt(v) => doc! { "$gt": to_bson(v)? },
                Cond::Gte(v) => doc! { "$gte": to_bson(v)? },
                Cond::Lt(v) => doc! { "$lt": to_bson(v)? },
                Cond::Lte(v) => doc! { "$lte": to_bson(v)? },
                Cond::In(vs) => doc! { "$in": vs.iter().map(to_bson).collect::<Result<Vec<_>, _>>()? },
                Cond::Exists(present) => doc! { "$exists": *present },
            };
            Ok(Bson::Document(doc! { field.as_str(): condition }))
        })
        .collect()
}

fn fields(pairs: &[(String, Value)]) -> Result<Document, DocError> {
    pairs.iter().map(|(f, v)| Ok((f.clone(), to_bson(v)?))).collect()
}

fn update_doc(update: &Update) -> Result<Document, DocError> {
    let mut set = fields(&update.set)?;
    if let Some(at) = update.expires_at {
        set.insert(EXPIRES, date(at));
    }
    let mut u = Document::new();
    for (op, d) in [
        ("$set", set),
        ("$setOnInsert", fields(&update.set_on_insert)?),
        ("$inc", fields(&update.inc)?),
        ("$max", fields(&update.max)?),
        ("$unset", update.unset.iter().map(|f| (f.clone(), Bson::String(String::new()))).collect()),
    ] {
        if !d.is_empty() {
            u.insert(op, d);
        }
    }
    if u.is_empty() {
        // An update must change something; setting _id to itself changes nothing.
        u.insert("$setOnInsert", Document::new());
    }
    Ok(u)
}

fn sort_doc(keys: &[(String, Order)]) -> Document {
    keys.iter().map(|(f, o)| (f.clone(), Bson::Int32(if *o == Order::Asc { 1 } else { -1 }))).collect()
}

impl MongoDocs {
    pub(crate) async fn connect(url: &str, service: &str) -> Result<Self, DocError> {
        let url = url.replace("{service}", service);
        let mut options =
            ClientOptions::parse(&url).await.map_err(|e| DocError::UnsupportedUrl(format!("{url}: {e}")))?;
        options.app_name = Some(format!("flick-{service}"));
        options.connect_timeout = Some(Duration::from_secs(5));
        options.server_selection_timeout = Some(Duration::from_secs(5));
        let name = options.default_database.clone().unwrap_or_else(|| service.to_string());
        let client = Client::with_options(options).map_err(mongo_err)?;
        Ok(Self { db: client.database(&name) })
    }

    pub(crate) async fn ping(&self) -> Result<(), DocError> {
        self.db.run_command(doc! { "ping": 1 }).await.map(drop).map_err(mongo_err)
    }

    fn coll(&self, name: &str) -> mongodb::Collection<Document> {
        self.db.collection(name)
    }

    pub(crate) async fn migrate(&self, component: &str, migrations: &[Migration]) -> Result<Vec<String>, DocError> {
        let done = self.db.collection::<Document>("flick_migrations");
        let mut applied = Vec::new();
        for m in migrations {
            let label = format!("{component}/{:04}_{}", m.version, m.name);
            let key = format!("{component}/{}", m.version);
            if done.find_one(doc! { "_id": &key }).await.map_err(mongo_err)?.is_some() {
                continue;
            }
            let wrap = |e: mongodb::error::Error| DocError::Migration(label.clone(), mongo_err(e).to_string());
            // Index creation is idempotent, so replicas migrating together agree.
            for (collection, indexes) in m.collections {
                let coll = self.coll(collection);
                let ttl = IndexModel::builder()
                    .keys(doc! { EXPIRES: 1 })
                    .options(IndexOptions::builder().name("expires".to_string()).expire_after(Duration::ZERO).build())
                    .build();
                coll.create_index(ttl).await.map_err(wrap)?;
                for index in *indexes {
                    let keys: Vec<(String, Order)> = index.keys.iter().map(|(f, o)| (f.to_string(), *o)).collect();
                    let model = IndexModel::builder()
                        .keys(sort_doc(&keys))
                        .options(IndexOptions::builder().name(index.name.to_string()).unique(index.unique).build())
                        .build();
                    coll.create_index(model).await.map_err(wrap)?;
                }
            }
            let record = doc! { "_id": &key, "name": m.name, "appliedAt": date(chrono::Utc::now()) };
            match done.insert_one(record).await {
                Ok(_) => {}
                Err(e) if code(&e) == Some(DUPLICATE_KEY) => continue, // another replica recorded it
                Err(e) => return Err(wrap(e)),
            }
            tracing::info!(
                component,
                version = m.version,
                name = m.name,
                backend = "mongodb",
                "document migration applied"
            );
            applied.push(label);
        }
        Ok(applied)
    }

    pub(crate) async fn insert(
        &self,
        collection: &str,
        doc: Value,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), DocError> {
        let Bson::Document(mut d) = to_bson(&doc)? else {
            return Err(DocError::Invalid("a document is an object".into()));
        };
        if let Some(at) = expires_at {
            d.insert(EXPIRES, date(at));
        }
        let coll = self.coll(collection);
        match coll.insert_one(&d).await {
            Err(e) if code(&e) == Some(DUPLICATE_KEY) => {
                // An expired document no longer holds its id (the TTL monitor may not have run).
                let id = d.get_str("_id").unwrap_or_default().to_string();
                let gone = coll
                    .delete_one(doc! { "_id": &id, EXPIRES: { "$lte": date(chrono::Utc::now()) } })
                    .await
                    .map_err(mongo_err)?;
                if gone.deleted_count == 0 {
                    return Err(mongo_err(e));
                }
                coll.insert_one(&d).await.map(drop).map_err(mongo_err)
            }
            other => other.map(drop).map_err(mongo_err),
        }
    }

    pub(crate) async fn update(
        &self,
        collection: &str,
        id: &str,
        filter: &Filter,
        update: &Update,
        upsert: bool,
    ) -> Result<Updated, DocError> {
        let coll = self.coll(collection);
        let with_id = filter.clone().eq("_id", id);
        let u = update_doc(update)?;
        let q = if upsert {
            // An expired document is replaced, as if it were gone; the upsert's new document
            // then takes the query's equalities, so the query holds only the caller's.
            coll.delete_one(doc! { "_id": id, EXPIRES: { "$lte": date(chrono::Utc::now()) } })
                .await
                .map_err(mongo_err)?;
            query_without_expiry(&with_id)?
        } else {
            query(&with_id)?
        };
        // Two upserts of a new id may race: the loser gets a duplicate key and, retried, updates.
        // A duplicate key with the id present means the document exists but did not match.
        for _ in 0..2 {
            let result = coll
                .find_one_and_update(q.clone(), u.clone())
                .upsert(upsert)
                .return_document(ReturnDocument::After)
                .await;
            match result {
                Ok(Some(d)) => return Ok(Updated::Applied(to_json(d))),
                Ok(None) if upsert => {
                    // An upsert always writes, so it never answers null; secantusdb 0.7 does
                    // when concurrent upserts race (it applied the update: the document is
                    // read back).
                    let now = coll.find_one(doc! { "_id": id }).await.map_err(mongo_err)?;
                    return Ok(now.map_or(Updated::NotMatched, |d| Updated::Applied(to_json(d))));
                }
                Ok(None) => return Ok(Updated::NotMatched),
                Err(e) if upsert && code(&e) == Some(DUPLICATE_KEY) => {
                    if coll.find_one(doc! { "_id": id }).await.map_err(mongo_err)?.is_none() {
                        return Err(mongo_err(e)); // another unique index
                    }
                }
                Err(e) => return Err(mongo_err(e)),
            }
        }
        Ok(Updated::NotMatched)
    }

    pub(crate) async fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64, DocError> {
        let r = self.coll(collection).delete_many(query(filter)?).await.map_err(mongo_err)?;
        Ok(r.deleted_count)
    }

    pub(crate) async fn find(&self, collection: &str, filter: &Filter, find: &Find) -> Result<Vec<Value>, DocError> {
        let coll = self.coll(collection);
        let mut action = coll.find(query(filter)?).skip(find.skip);
        if !find.sort.is_empty() {
            action = action.sort(sort_doc(&find.sort));
        }
        if let Some(n) = find.limit {
            action = action.limit(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let docs: Vec<Document> = action.await.map_err(mongo_err)?.try_collect().await.map_err(mongo_err)?;
        Ok(docs.into_iter().map(to_json).collect())
    }

    pub(crate) async fn count(&self, collection: &str, filter: &Filter) -> Result<u64, DocError> {
        self.coll(collection).count_documents(query(filter)?).await.map_err(mongo_err)
    }

    pub(crate) async fn group(
        &self,
        collection: &str,
        filter: &Filter,
        by: &[&str],
        sums: &[&str],
    ) -> Result<Vec<Group>, DocError> {
        let key: Document =
            by.iter().enumerate().map(|(i, f)| (format!("k{i}"), Bson::String(format!("${f}")))).collect();
        let mut group = doc! { "_id": key, "n": { "$sum": 1 } };
        for (i, f) in sums.iter().enumerate() {
            group.insert(format!("s{i}"), doc! { "$sum": format!("${f}") });
        }
        let pipeline = vec![doc! { "$match": query(filter)? }, doc! { "$group": group }];
        let rows: Vec<Document> = self
            .coll(collection)
            .aggregate(pipeline)
            .await
            .map_err(mongo_err)?
            .try_collect()
            .await
            .map_err(mongo_err)?;
        let number = |b: Option<&Bson>| match b {
            Some(Bson::Int32(n)) => f64::from(*n),
            Some(Bson::Int64(n)) => *n as f64,
            Some(Bson::Double(n)) => *n,
            _ => 0.0,
        };
        Ok(rows
            .into_iter()
            .map(|row| {
                let id = row.get_document("_id").cloned().unwrap_or_default();
                Group {
                    key: (0..by.len())
                        .map(|i| id.get(format!("k{i}")).cloned().map_or(Value::Null, Bson::into_relaxed_extjson))
                        .collect(),
                    count: number(row.get("n")) as u64,
                    sums: (0..sums.len()).map(|i| number(row.get(format!("s{i}")))).collect(),
                }
            })
            .collect())
    }

    pub(crate) async fn drop_all(&self) -> Result<(), DocError> {
        self.db.drop().await.map_err(mongo_err)
    }
}
