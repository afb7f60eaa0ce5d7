//! The embedded default: a table per collection (`doc_<name>`: id, the JSON body, expiry),
//! indexes on JSON expressions, and every write one statement (an upsert with a conditional
//! `DO UPDATE … WHERE`, its change a `json_set`/`json_remove` expression, `RETURNING` the
//! row), so a write is atomic by itself. Writes go through one task that commits the writes
//! waiting together in one transaction (group commit: SQLite's cost is per commit, and a
//! player's heartbeats arrive thousands a second); each caller gets its own statement's
//! answer once the group is committed.

use crate::query::{Cond, Filter, Update};
use crate::{DocError, Find, Group, Migration, Order, Updated};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, QueryResult, SqlErr, Statement, TransactionTrait, Value as SqlValue,
};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How often expired documents are deleted (reads already skip them).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Most writes committed in one transaction.
const MAX_GROUP: usize = 128;

pub(crate) struct SqliteDocs {
    db: DatabaseConnection,
    /// To the group-commit task ([`commit_groups`]).
    writes: mpsc::Sender<Write>,
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
    let mut values = vec![now_ms().into()];
    let conds = conditions(filter, &mut values);
    (format!("(expires_at IS NULL OR expires_at > ?) AND {conds}"), values)
}

/// The filter's conditions on a row (`1` for none), their values appended to `values`.
fn conditions(filter: &Filter, values: &mut Vec<SqlValue>) -> String {
    let mut parts = vec!["1".to_string()];
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
            Cond::Gt(v) => range(field, ">", v, values),
            Cond::Gte(v) => range(field, ">=", v, values),
            Cond::Lt(v) => range(field, "<", v, values),
            Cond::Lte(v) => range(field, "<=", v, values),
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
    parts.join(" AND ")
}

/// The JSON path of a field (checked to be a plain dotted name).
fn path(field: &str) -> String {
    format!("'$.{field}'")
}

/// The update as one SQL expression over the row's current `body`, its values appended to
/// `values` in the order of their placeholders. `set`: json_set with the value's JSON text;
/// `inc`: the current number (0 when missing) plus the increment; `max`: the larger of the two
/// within a kind; `unset`: json_remove.
fn update_expr(update: &Update, values: &mut Vec<SqlValue>) -> String {
    let mut expr = "body".to_string();
    if !update.set.is_empty() {
        let args: Vec<String> = update
            .set
            .iter()
            .map(|(f, v)| {
                values.push(v.to_string().into());
                format!("{}, json(?)", path(f))
            })
            .collect();
        expr = format!("json_set({expr}, {})", args.join(", "));
    }
    for (f, by) in &update.inc {
        values.push(bind(by));
        expr = format!("json_set({expr}, {}, coalesce({}, 0) + ?)", path(f), self::expr(f));
    }
    for (f, v) in &update.max {
        values.push(bind(v));
        values.push(bind(v));
        expr = format!(
            "json_set({expr}, {p}, CASE WHEN {e} IS NULL OR ({t} IN {k} AND {e} < ?) THEN ? ELSE {e} END)",
            p = path(f),
            e = self::expr(f),
            t = json_type(f),
            k = kinds(v)
        );
    }
    if !update.unset.is_empty() {
        let paths: Vec<String> = update.unset.iter().map(|f| path(f)).collect();
        expr = format!("json_remove({expr}, {})", paths.join(", "));
    }
    expr
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
        let (writes, queue) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(commit_groups(db.clone(), queue));
        let docs = Arc::new(Self { db, writes, tables: Mutex::new(HashSet::new()) });
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

    /// One statement: a new row, or the row of an expired document with the same id
    /// replaced; none returned means the id is taken.
    pub(crate) async fn insert(
        &self,
        collection: &str,
        id: &str,
        doc: &Value,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), DocError> {
        self.ensure_table(collection).await?;
        let sql = format!(
            "INSERT INTO {} (id, body, expires_at) VALUES (?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body, expires_at = excluded.expires_at
             WHERE expires_at IS NOT NULL AND expires_at <= ?
             RETURNING id",
            table(collection)
        );
        let values =
            vec![id.into(), doc.to_string().into(), expires_at.map(|at| at.timestamp_millis()).into(), now_ms().into()];
        if self.write(flick_db::stmt(&self.db, &sql, values), Returns::Row).await?.row()?.is_none() {
            return Err(DocError::Duplicate("_id".into()));
        }
        Ok(())
    }

    /// One statement (so concurrent updates of a document cannot interleave): an upsert
    /// inserts the document the update makes from the id and the filter's equalities, or
    /// changes the existing one when it matches the filter (an expired one is replaced as if it
    /// were gone); the row it wrote comes back, none means not matched.
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
        let now = now_ms();
        let new_expiry: Option<i64> = update.expires_at.map(|at| at.timestamp_millis());
        let (sql, values) = if upsert {
            let mut fresh = serde_json::json!({ "_id": id });
            let equalities = Update {
                set: filter
                    .equalities()
                    .filter(|(f, _)| *f != "_id")
                    .map(|(f, v)| (f.to_string(), v.clone()))
                    .collect(),
                ..Update::default()
            };
            equalities.apply(&mut fresh, true)?;
            update.apply(&mut fresh, true)?;
            let mut values: Vec<SqlValue> = vec![id.into(), fresh.to_string().into(), new_expiry.into(), now.into()];
            let change = update_expr(update, &mut values);
            values.push(now.into());
            values.push(new_expiry.into());
            values.push(now.into());
            let cond = conditions(filter, &mut values);
            let sql = format!(
                "INSERT INTO {t} (id, body, expires_at) VALUES (?, ?, ?)
                 ON CONFLICT (id) DO UPDATE SET
                   body = CASE WHEN expires_at IS NOT NULL AND expires_at <= ? THEN excluded.body ELSE {change} END,
                   expires_at = CASE WHEN expires_at IS NOT NULL AND expires_at <= ? THEN excluded.expires_at
                                     ELSE coalesce(?, expires_at) END
                 WHERE (expires_at IS NOT NULL AND expires_at <= ?) OR ({cond})
                 RETURNING body"
            );
            (sql, values)
        } else {
            let mut values: Vec<SqlValue> = Vec::new();
            let change = update_expr(update, &mut values);
            values.push(new_expiry.into());
            values.push(id.into());
            values.push(now.into());
            let cond = conditions(filter, &mut values);
            let sql = format!(
                "UPDATE {t} SET body = {change}, expires_at = coalesce(?, expires_at)
                 WHERE id = ? AND (expires_at IS NULL OR expires_at > ?) AND {cond}
                 RETURNING body"
            );
            (sql, values)
        };
        match self.write(flick_db::stmt(&self.db, &sql, values), Returns::Row).await?.row()? {
            Some(row) => Ok(Updated::Applied(body(&row)?)),
            None => Ok(Updated::NotMatched),
        }
    }

    pub(crate) async fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64, DocError> {
        self.ensure_table(collection).await?;
        let (w, values) = where_clause(filter);
        let sql = format!("DELETE FROM {} WHERE {w}", table(collection));
        match self.write(flick_db::stmt(&self.db, &sql, values), Returns::Count).await? {
            Answer::Count(n) => Ok(n),
            Answer::Row(_) => Err(DocError::Unavailable("a delete answered a row".into())),
        }
    }

    /// Runs one write through the group-commit task.
    async fn write(&self, statement: Statement, returns: Returns) -> Result<Answer, DocError> {
        let stopped = || DocError::Unavailable("the document writer stopped".into());
        let (reply, answer) = oneshot::channel();
        self.writes.send(Write { statement, returns, reply }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
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

    /// Every collection's table in the file (also those this process has not used).
    async fn doc_tables(&self) -> Result<Vec<String>, DocError> {
        let rows = self
            .db
            .query_all_raw(flick_db::stmt(
                &self.db,
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'doc\\_%' ESCAPE '\\'",
                vec![],
            ))
            .await
            .map_err(sql_err)?;
        rows.iter().map(|row| row.try_get::<String>("", "name").map_err(sql_err)).collect()
    }

    pub(crate) async fn sweep_expired(&self) -> Result<u64, DocError> {
        let mut deleted = 0;
        for name in self.doc_tables().await? {
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
        for name in self.doc_tables().await? {
            self.db.execute_unprepared(&format!("DROP TABLE \"{name}\"")).await.map_err(sql_err)?;
        }
        self.db.execute_unprepared("DELETE FROM flick_doc_migrations").await.map_err(sql_err)?;
        self.tables.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }
}

/// What a write's statement answers.
#[derive(Debug, Clone, Copy)]
enum Returns {
    /// Its `RETURNING` row, if any.
    Row,
    /// How many rows it changed.
    Count,
}

enum Answer {
    Row(Option<QueryResult>),
    Count(u64),
}

impl Answer {
    fn row(self) -> Result<Option<QueryResult>, DocError> {
        match self {
            Answer::Row(row) => Ok(row),
            Answer::Count(_) => Err(DocError::Unavailable("a write answered no row".into())),
        }
    }
}

struct Write {
    statement: Statement,
    returns: Returns,
    reply: oneshot::Sender<Result<Answer, DocError>>,
}

/// The writer: takes every write waiting (up to [`MAX_GROUP`]) and commits them in one
/// transaction; a write alone runs as its own statement. Ends when the store is dropped.
async fn commit_groups(db: DatabaseConnection, mut queue: mpsc::Receiver<Write>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while queue.recv_many(&mut group, MAX_GROUP).await > 0 {
        let answers = if group.len() == 1 { vec![run(&db, &group[0]).await] } else { run_group(&db, &group).await };
        for (write, answer) in group.drain(..).zip(answers) {
            let _ = write.reply.send(answer);
        }
    }
}

async fn run(c: &impl ConnectionTrait, w: &Write) -> Result<Answer, DocError> {
    match w.returns {
        Returns::Row => c.query_one_raw(w.statement.clone()).await.map(Answer::Row).map_err(sql_err),
        Returns::Count => {
            c.execute_raw(w.statement.clone()).await.map(|r| Answer::Count(r.rows_affected())).map_err(sql_err)
        }
    }
}

/// One transaction for the group: each write's answer once it is committed. A write that
/// breaks a unique index fails alone (SQLite undoes that statement only); any other failure
/// may have undone the transaction, so it, like a failed commit, fails every write of the
/// group and nothing of it is kept: each caller sees an error and may retry.
async fn run_group(db: &DatabaseConnection, group: &[Write]) -> Vec<Result<Answer, DocError>> {
    let fail_all = |e: String| group.iter().map(|_| Err(DocError::Unavailable(e.clone()))).collect();
    let txn = match db.begin().await {
        Ok(txn) => txn,
        Err(e) => return fail_all(e.to_string()),
    };
    let reason = |e: DocError| match e {
        DocError::Unavailable(m) => m,
        other => other.to_string(),
    };
    let mut answers = Vec::with_capacity(group.len());
    for write in group {
        match run(&txn, write).await {
            Err(e @ DocError::Duplicate(_)) => answers.push(Err(e)),
            Err(e) => {
                let _ = txn.rollback().await;
                return fail_all(reason(e));
            }
            ok => answers.push(ok),
        }
    }
    match txn.commit().await {
        Ok(()) => answers,
        Err(e) => fail_all(e.to_string()),
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
