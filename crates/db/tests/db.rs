//! The relational store against the embedded SQLite file and a real PostgreSQL 18 + pgvector.

use flick_db::sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use flick_db::{Migration, MigrationSet, connect, migrate, service_url};
use flick_testkit::TestDatabase;

const NOTES: MigrationSet = MigrationSet {
    component: "notes",
    migrations: &[
        Migration {
            version: 1,
            name: "create_notes",
            sqlite: "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
            postgres: "CREATE TABLE notes (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL)",
        },
        Migration {
            version: 2,
            name: "add_author",
            sqlite: "ALTER TABLE notes ADD COLUMN author TEXT",
            postgres: "ALTER TABLE notes ADD COLUMN author TEXT",
        },
    ],
};

async fn count_notes(db: &DatabaseConnection) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), "SELECT COUNT(*) AS n FROM notes"))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

async fn migrations_apply_once_and_tables_work(db: &DatabaseConnection) {
    let applied = migrate(db, &[NOTES]).await.unwrap();
    assert_eq!(applied, vec!["notes/0001_create_notes", "notes/0002_add_author"]);
    assert!(migrate(db, &[NOTES]).await.unwrap().is_empty(), "second run applies nothing");
    db.execute_unprepared("INSERT INTO notes (body, author) VALUES ('hello', 'ada')").await.unwrap();
    assert_eq!(count_notes(db).await, 1);
}

#[tokio::test]
async fn sqlite_creates_one_file_per_service_and_migrates_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = service_url(None, dir.path(), "media").unwrap();
    let db = connect(&url, "media", 4).await.unwrap();
    migrations_apply_once_and_tables_work(&db).await;
    assert!(dir.path().join("db/media.sqlite").exists());
}

#[tokio::test]
async fn sqlite_writes_reach_the_database_file_without_the_writer_checkpointing() {
    let dir = tempfile::tempdir().unwrap();
    let url = service_url(None, dir.path(), "media").unwrap();
    let db = connect(&url, "media", 1).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), "PRAGMA wal_autocheckpoint"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), 0, "the writer never checkpoints itself");
    migrate(&db, &[NOTES]).await.unwrap();
    let body = "x".repeat(1000);
    for _ in 0..4 {
        db.execute_unprepared(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
             INSERT INTO notes (body) SELECT '{body}' FROM n"
        ))
        .await
        .unwrap();
    }
    // 2 MB written to the WAL; the background checkpoint copies it into the file.
    let file = dir.path().join("db/media.sqlite");
    let checkpointed = flick_testkit::eventually(std::time::Duration::from_secs(10), || async {
        std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) > 2_000_000
    })
    .await;
    assert!(checkpointed, "the WAL was not checkpointed into {}", file.display());
    assert_eq!(count_notes(&db).await, 2000);
}

#[tokio::test]
async fn postgres_migrates_once_into_the_service_schema() {
    let test_db = TestDatabase::create().await;
    let db = connect(&test_db.url, "media", 4).await.unwrap();
    migrations_apply_once_and_tables_work(&db).await;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'notes'",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<String>("", "table_schema").unwrap(), "media");
}

#[tokio::test]
async fn postgres_services_sharing_a_database_keep_their_tables_apart() {
    let test_db = TestDatabase::create().await;
    let media = connect(&test_db.url, "media", 2).await.unwrap();
    let accounts = connect(&test_db.url, "accounts", 2).await.unwrap();
    migrate(&media, &[NOTES]).await.unwrap();
    migrate(&accounts, &[NOTES]).await.unwrap();
    media.execute_unprepared("INSERT INTO notes (body) VALUES ('a'), ('b')").await.unwrap();
    assert_eq!(count_notes(&media).await, 2);
    assert_eq!(count_notes(&accounts).await, 0);
}

#[tokio::test]
async fn postgres_replicas_migrating_together_apply_each_migration_once() {
    let test_db = TestDatabase::create().await;
    let a = connect(&test_db.url, "media", 2).await.unwrap();
    let b = connect(&test_db.url, "media", 2).await.unwrap();
    let (ra, rb) = tokio::join!(migrate(&a, &[NOTES]), migrate(&b, &[NOTES]));
    let total = ra.unwrap().len() + rb.unwrap().len();
    assert_eq!(total, 2, "each migration applied by exactly one replica");
}

#[tokio::test]
async fn postgres_has_pgvector_with_hnsw_cosine_search() {
    let test_db = TestDatabase::create().await;
    let db = connect(&test_db.url, "recommender", 2).await.unwrap();
    db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS vector").await.unwrap();
    db.execute_unprepared(
        "CREATE TABLE items (id INT PRIMARY KEY, e vector(3));
         INSERT INTO items VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0.9,0.1,0]');
         CREATE INDEX ON items USING hnsw (e vector_cosine_ops);",
    )
    .await
    .unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id FROM items ORDER BY e <=> '[1,0,0]' LIMIT 2",
        ))
        .await
        .unwrap();
    let ids: Vec<i32> = rows.iter().map(|r| r.try_get("", "id").unwrap()).collect();
    assert_eq!(ids, vec![1, 3]);
    let version = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT current_setting('server_version_num')::int AS v",
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(version.try_get::<i32>("", "v").unwrap() >= 180000, "tests run against PostgreSQL 18");
}
