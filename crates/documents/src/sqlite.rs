//! The embedded default: a table per collection (`doc_<name>`: id, the JSON body, expiry),
//! indexes on JSON expressions, read-modify-write updates in a transaction on the one
//! connection (so they are atomic and serialised).

use crate::query::{Cond, Filter, Update};
use crate::{DocError, Find, Group, Migration, Order, Updated};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, QueryResult, SqlErr, TransactionTrait, Value as SqlValue};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How often expired documents are deleted (reads already skip them).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

pub(crate) struct SqliteDocs {
    db: DatabaseConnection,
    /// Tables known to exist, so that each collection is created once per process.
    tables: Mutex<HashSet<String>>,
}

fn table(collection: &str) -> String {
    format!("\"doc_{collection}\"")
}

/// The SQL expression of a field: the id column, or a JSON path into the body (field names are
/// checked to be plain dotted names, so they can be written into the path).
fn expr(field: &str) -> String {
    if field == "_id" { "id".to_string() } else { format!("json_extract(body, '$.{field}')") }
}

fn json_type(field: &str) -> String {
    if field == "_id" { "'text'".to_string() } else { format!("json_type(body, '$.{field}')") }
}

fn bind(v: &Value) -> SqlValue {
    match v {
        Value::String(s) => s.clone().into(),
        Value::Bool(b) => i64::from(*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        _ => SqlValue::String(None),
    }
}

/// The kinds of JSON value a range condition on `v` may compare with (MongoDB compares only
/// within a kind; SQLite would order every number below every string).
fn kinds(v: &Value) -> &'static str {
    match v {
        Value::Number(_) => "('integer', 'real')",
        Value::String(_) => "('text')",
        Value::Bool(_) => "('true', 'false')",
        _ => "('null')",
    }
}

/// A range condition: never true for null, and only within the value's kind.
fn range(field: &str, op: &str, v: &Value, values: &mut Vec<SqlValue>) -> String {
    if v.is_null() {
        return "0".to_string();
    }
    values.push(bind(v));
    format!("({} {op} ? AND {} IN {})", expr(field), json_type(field), kinds(v))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// WHERE clause (without the keyword) and its values; expired documents never match.
fn where_clause(filter: &Filter) -> (String, Vec<SqlValue>) {
    let mut parts = vec!["(expires_at IS NULL OR expires_at > ?)".to_string()];
    let mut values = vec![now_ms().into()];
    for (field, cond) in &filter.conds {
        let e = expr(field);
        let part = match cond {
            Cond::Eq(Value::Null) => format!("{e} IS NULL"),
            Cond::Ne(Value::Null) => format!("{e} IS NOT NULL"),
            Cond::Eq(v) => {
                values.push(bind(v));
                format!("{e} = ?")
            }
            Cond::Ne(v) => {
                values.push(bind(v));
                format!("({e} IS NULL OR {e} != ?)")
            }
            Cond::Gt(v) => range(field, ">", v, &mut values),
            Cond::Gte(v) => range(field, ">=", v, &mut values),
            Cond::Lt(v) => range(field, "<", v, &mut values),
            Cond::Lte(v) => range(field, "<=", v, &mut values),
            Cond::In(vs) => {
                let non_null: Vec<&Value> = vs.iter().filter(|v| !v.is_null()).collect();
                let mut alts = Vec::new();
                if !non_null.is_empty() {
                    values.extend(non_null.iter().map(|v| bind(v)));
                    alts.push(format!("{e} IN ({})", vec!["?"; non_null.len()].join(", ")));
                }
                if non_null.len() < vs.len() {
                    alts.push(format!("{e} IS NULL"));
                }
                if alts.is_empty() { "0".to_string() } else { format!("({})", alts.join(" OR ")) }
            }
            Cond::Exists(present) => {
                format!("{} IS {}NULL", json_type(field), if *present { "NOT " } else { "" })
            }
        };
        parts.push(part);
    }
    (parts.join(" AND "), values)
}

fn sql_err(e: DbErr) -> DocError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(m)) => DocError::Duplicate(m),
        _ => DocError::Unavailable(e.to_string()),
    }
}

fn body(row: &QueryResult) -> Result<Value, DocError> {
    let text: String = row.try_get("", "body").map_err(sql_err)?;
    serde_json::from_str(&text).map_err(|e| DocError::Unavailable(format!("a stored document is not JSON: {e}")))
}

impl SqliteDocs {
    pub(crate) async fn connect(url: &str, service: &str) -> Result<Arc<Self>, DocError> {
        if !url.contains("{service}") && !url.contains(":memory:") && !url.contains(&format!("{service}-documents")) {
            return Err(DocError::UnsupportedUrl(format!("{url} (a sqlite url must contain {{service}})")));
        }
        let url = url.replace("{service}", &format!("{service}-documents"));
        let db = flick_db::connect(&url, service, 1).await.map_err(|e| DocError::Unavailable(e.to_string()))?;
        db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS flick_doc_migrations (
                component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,
                applied_at TEXT NOT NULL, PRIMARY KEY (component, version))",
        )
        .await
        .map_err(sql_err)?;
        let docs = Arc::new(Self { db, tables: Mutex::new(HashSet::new()) });
        tokio::spawn(sweep_until_dropped(Arc::downgrade(&docs)));
        Ok(docs)
    }

    async fn ensure_table(&self, collection: &str) -> Result<(), DocError> {
        if self.tables.lock().unwrap_or_else(|p| p.into_inner()).contains(collection) {
            return Ok(());
        }
        let t = table(collection);
        self.db
            .execute_unprepared(&format!(
                "CREATE TABLE IF NOT EXISTS {t} (id TEXT PRIMARY KEY NOT NULL, body TEXT NOT NULL, expires_at INTEGER);
                 CREATE INDEX IF NOT EXISTS \"doc_{collection}__expires\" ON {t} (expires_at) WHERE expires_at IS NOT NULL"
            ))
            .await
            .map_err(sql_err)?;
        self.tables.lock().unwrap_or_else(|p| p.into_inner()).insert(collection.to_string());
        Ok(())
    }

    pub(crate) async fn ping(&self) -> Result<(), DocError> {
        self.db.ping().await.map_err(sql_err)
    }

    pub(crate) async fn migrate(&self, component: &str, migrations: &[Migration]) -> Result<Vec<String>, DocError> {
        let mut applied = Vec::new();
        for m in migrations {
            let label = format!("{component}/{:04}_{}", m.version, m.name);
            let wrap = |e: DocError| DocError::Migration(label.clone(), e.to_string());
            let done = self
                .db
                .query_one_raw(flick_db::stmt(
                    &self.db,
                    "SELECT 1 FROM flick_doc_migrations WHERE component = ? AND version = ?",
                    vec![component.into(), m.version.into()],
                ))
                .await
                .map_err(sql_err)?
                .is_some();
            if done {
                continue;
            }
            for (collection, indexes) in m.collections {
                self.ensure_table(collection).await.map_err(wrap)?;
                for index in *indexes {
                    let keys: Vec<String> = index
                        .keys
                        .iter()
                        .map(|(f, o)| format!("{} {}", expr(f), if *o == Order::Asc { "ASC" } else { "DESC" }))
                        .collect();
                    let sql = format!(
                        "CREATE {}INDEX IF NOT EXISTS \"doc_{collection}__{}\" ON {} ({})",
                        if index.unique { "UNIQUE " } else { "" },
                        index.name,
                        table(collection),
                        keys.join(", ")
                    );
                    self.db.execute_unprepared(&sql).await.map_err(|e| wrap(sql_err(e)))?;
                }
            }
            flick_db::exec(
                &self.db,
                "INSERT INTO flick_doc_migrations (component, version, name, applied_at) VALUES (?, ?, ?, ?)",
                vec![component.into(), m.version.into(), m.name.into(), chrono::Utc::now().to_rfc3339().into()],
            )
            .await
            .map_err(|e| wrap(sql_err(e)))?;
            tracing::info!(
                component,
                version = m.version,
                name = m.name,
                backend = "sqlite",
                "document migration applied"
            );
            applied.push(label);
        }
        Ok(applied)
    }

    pub(crate) async fn insert(
        &self,
        collection: &str,
        id: &str,
        doc: &Value,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), DocError> {
        self.ensure_table(collection).await?;
        let t = table(collection);
        let txn = self.db.begin().await.map_err(sql_err)?;
        // An expired document no longer holds its id.
        flick_db::exec(
            &txn,
            &format!("DELETE FROM {t} WHERE id = ? AND expires_at <= ?"),
            vec![id.into(), now_ms().into()],
        )
        .await
        .map_err(sql_err)?;
        flick_db::exec(
            &txn,
            &format!("INSERT INTO {t} (id, body, expires_at) VALUES (?, ?, ?)"),
            vec![id.into(), doc.to_string().into(), expires_at.map(|at| at.timestamp_millis()).into()],
        )
        .await
        .map_err(|e| match sql_err(e) {
            DocError::Duplicate(m) if m.contains(".id") => DocError::Duplicate("_id".into()),
            other => other,
        })?;
        txn.commit().await.map_err(sql_err)
    }

    pub(crate) async fn update(
        &self,
        collection: &str,
        id: &str,
        filter: &Filter,
        update: &Update,
        upsert: bool,
    ) -> Result<Updated, DocError> {
        self.ensure_table(collection).await?;
        let t = table(collection);
        let txn = self.db.begin().await.map_err(sql_err)?;
        let now = now_ms();
        let row = txn
            .query_one_raw(flick_db::stmt(
                &txn,
                &format!("SELECT body, expires_at FROM {t} WHERE id = ?"),
                vec![id.into()],
            ))
            .await
            .map_err(sql_err)?;
        let current = match row {
            Some(row) => {
                let expires_at: Option<i64> = row.try_get("", "expires_at").map_err(sql_err)?;
                if expires_at.is_some_and(|at| at <= now) { None } else { Some((body(&row)?, expires_at)) }
            }
            None => None,
        };
        let (mut doc, inserting, mut expires_at) = match current {
            Some((doc, expires_at)) => {
                if !filter.matches(&doc) {
                    return Ok(Updated::NotMatched);
                }
                (doc, false, expires_at)
            }
            None if upsert => {
                let mut doc = serde_json::json!({ "_id": id });
                let equalities = Update {
                    set: filter
                        .equalities()
                        .filter(|(f, _)| *f != "_id")
                        .map(|(f, v)| (f.to_string(), v.clone()))
                        .collect(),
                    ..Update::default()
                };
                equalities.apply(&mut doc, true)?;
                (doc, true, None)
            }
            None => return Ok(Updated::NotMatched),
        };
        update.apply(&mut doc, inserting)?;
        if let Some(at) = update.expires_at {
            expires_at = Some(at.timestamp_millis());
        }
        flick_db::exec(
            &txn,
            &format!(
                "INSERT INTO {t} (id, body, expires_at) VALUES (?, ?, ?)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body, expires_at = excluded.expires_at"
            ),
            vec![id.into(), doc.to_string().into(), expires_at.into()],
        )
        .await
        .map_err(sql_err)?;
        txn.commit().await.map_err(sql_err)?;
        Ok(Updated::Applied(doc))
    }

    pub(crate) async fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64, DocError> {
        self.ensure_table(collection).await?;
        let (w, values) = where_clause(filter);
        flick_db::exec(&self.db, &format!("DELETE FROM {} WHERE {w}", table(collection)), values).await.map_err(sql_err)
    }

    pub(crate) async fn find(&self, collection: &str, filter: &Filter, find: &Find) -> Result<Vec<Value>, DocError> {
        self.ensure_table(collection).await?;
        let (w, mut values) = where_clause(filter);
        let order = if find.sort.is_empty() {
            String::new()
        } else {
            let keys: Vec<String> = find
                .sort
                .iter()
                .map(|(f, o)| format!("{} {}", expr(f), if *o == Order::Asc { "ASC" } else { "DESC" }))
                .collect();
            format!(" ORDER BY {}", keys.join(", "))
        };
        values.push(find.limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)).into());
        values.push(i64::try_from(find.skip).unwrap_or(i64::MAX).into());
        let sql = format!("SELECT body FROM {} WHERE {w}{order} LIMIT ? OFFSET ?", table(collection));
        let rows = self.db.query_all_raw(flick_db::stmt(&self.db, &sql, values)).await.map_err(sql_err)?;
        rows.iter().map(body).collect()
    }

    pub(crate) async fn count(&self, collection: &str, filter: &Filter) -> Result<u64, DocError> {
        self.ensure_table(collection).await?;
        let (w, values) = where_clause(filter);
        let sql = format!("SELECT COUNT(*) AS n FROM {} WHERE {w}", table(collection));
        let row = self.db.query_one_raw(flick_db::stmt(&self.db, &sql, values)).await.map_err(sql_err)?;
        let n: i64 = row.map(|r| r.try_get("", "n")).transpose().map_err(sql_err)?.unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    pub(crate) async fn group(
        &self,
        collection: &str,
        filter: &Filter,
        by: &[&str],
        sums: &[&str],
    ) -> Result<Vec<Group>, DocError> {
        self.ensure_table(collection).await?;
        let (w, values) = where_clause(filter);
        // `->` gives each key as JSON text (a string stays a string, true stays true).
        let keys: Vec<String> = by
            .iter()
            .enumerate()
            .map(
                |(i, f)| {
                    if *f == "_id" { format!("json_quote(id) AS k{i}") } else { format!("body -> '$.{f}' AS k{i}") }
                },
            )
            .collect();
        let totals: Vec<String> = sums.iter().enumerate().map(|(i, f)| format!("TOTAL({}) AS s{i}", expr(f))).collect();
        let group_by = if by.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", (0..by.len()).map(|i| format!("k{i}")).collect::<Vec<_>>().join(", "))
        };
        let select: Vec<String> = keys.into_iter().chain(["COUNT(*) AS n".to_string()]).chain(totals).collect();
        let sql = format!("SELECT {} FROM {} WHERE {w}{group_by}", select.join(", "), table(collection));
        let rows = self.db.query_all_raw(flick_db::stmt(&self.db, &sql, values)).await.map_err(sql_err)?;
        let mut groups = Vec::with_capacity(rows.len());
        for row in rows {
            let count: i64 = row.try_get("", "n").map_err(sql_err)?;
            if count == 0 {
                continue; // no GROUP BY over no rows still gives one row
            }
            let mut key = Vec::with_capacity(by.len());
            for i in 0..by.len() {
                let text: Option<String> = row.try_get("", &format!("k{i}")).map_err(sql_err)?;
                key.push(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null));
            }
            let mut totals = Vec::with_capacity(sums.len());
            for i in 0..sums.len() {
                totals.push(row.try_get::<f64>("", &format!("s{i}")).map_err(sql_err)?);
            }
            groups.push(Group { key, count: count as u64, sums: totals });
        }
        Ok(groups)
    }

    pub(crate) async fn sweep_expired(&self) -> Result<u64, DocError> {
        let rows = self
            .db
            .query_all_raw(flick_db::stmt(
                &self.db,
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'doc\\_%' ESCAPE '\\'",
                vec![],
            ))
            .await
            .map_err(sql_err)?;
        let mut deleted = 0;
        for row in rows {
            let name: String = row.try_get("", "name").map_err(sql_err)?;
            deleted += flick_db::exec(
                &self.db,
                &format!("DELETE FROM \"{name}\" WHERE expires_at <= ?"),
                vec![now_ms().into()],
            )
            .await
            .map_err(sql_err)?;
        }
        Ok(deleted)
    }

    pub(crate) async fn drop_all(&self) -> Result<(), DocError> {
        let rows = self
            .db
            .query_all_raw(flick_db::stmt(
                &self.db,
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'doc\\_%' ESCAPE '\\'",
                vec![],
            ))
            .await
            .map_err(sql_err)?;
        for row in rows {
            let name: String = row.try_get("", "name").map_err(sql_err)?;
            self.db.execute_unprepared(&format!("DROP TABLE \"{name}\"")).await.map_err(sql_err)?;
        }
        self.db.execute_unprepared("DELETE FROM flick_doc_migrations").await.map_err(sql_err)?;
        self.tables.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }
}

async fn sweep_until_dropped(docs: Weak<SqliteDocs>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(docs) = docs.upgrade() else { return };
        match docs.sweep_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "expired documents deleted"),
            Err(e) => tracing::warn!(error = %e, "sweeping expired documents failed"),
        }
    }
}
