//! Transactional outbox and idempotent consumers: SQLite + in-process bus, and
//! PostgreSQL + RabbitMQ including a broker outage.

use flick_bus::{Bus, BusOptions, Delivery, HandlerError, QueueSpec, envelope, handler};
use flick_db::sea_orm::DbErr;
use flick_db::sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};
use flick_db::{Migration, MigrationSet, connect, migrate};
use flick_outbox::{Applied, Relay, apply_once, record};
use flick_testkit::{TcpProxy, TestDatabase, amqp_url, eventually, require, unique};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const APPLIED: MigrationSet = MigrationSet {
    component: "test",
    migrations: &[Migration {
        version: 1,
        name: "applied",
        sqlite: "CREATE TABLE applied (event_id TEXT NOT NULL)",
        postgres: "CREATE TABLE applied (event_id TEXT NOT NULL)",
    }],
};

fn options() -> BusOptions {
    BusOptions {
        exchange: "flick.test".into(),
        max_attempts: 5,
        retry_base: Duration::from_millis(50),
        confirm_timeout: Duration::from_secs(2),
        ..BusOptions::default()
    }
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get("", "n").unwrap()
}

/// A consumer that applies each event once, recording it in `applied`; consuming when it
/// returns. The returned counter counts the deliveries it has finished (applied or not).
async fn start_consumer(
    bus: &Bus,
    db: &DatabaseConnection,
    queue: &str,
    pattern: &str,
    stop: &CancellationToken,
) -> Arc<AtomicUsize> {
    let db = db.clone();
    let handled = Arc::new(AtomicUsize::new(0));
    let done = handled.clone();
    let h = handler(move |d: Delivery| {
        let (db, done) = (db.clone(), done.clone());
        async move {
            let id = d.envelope.id.clone();
            apply_once(&db, "test-consumer", &d.envelope.id, move |txn| {
                Box::pin(async move {
                    let backend = txn.get_database_backend();
                    txn.execute_raw(Statement::from_sql_and_values(
                        backend,
                        flick_db::placeholders(backend, "INSERT INTO applied (event_id) VALUES (?)"),
                        [id.into()],
                    ))
                    .await
                })
            })
            .await
            .map(|_| {
                done.fetch_add(1, Ordering::SeqCst);
            })
            .map_err(|e| HandlerError::Retry(e.to_string()))
        }
    });
    bus.consume(QueueSpec::events(queue, &[pattern]), h, stop.clone()).await.unwrap();
    handled
}

async fn write_events(db: &DatabaseConnection, event_type: &str, n: usize) {
    for i in 0..n {
        let txn = db.begin().await.unwrap();
        record(&txn, &envelope(event_type, &format!("video-{i}"), "test", vec![i as u8])).await.unwrap();
        txn.commit().await.unwrap();
    }
}

async fn rolled_back_changes_emit_nothing_and_committed_ones_are_applied_once(db: DatabaseConnection, bus: Bus) {
    migrate(&db, &[flick_outbox::MIGRATIONS, APPLIED]).await.unwrap();
    let prefix = unique("t").replace('-', "");
    let event_type = format!("{prefix}.video.liked");
    let queue = unique("q.outbox");
    let stop = CancellationToken::new();
    let handled = start_consumer(&bus, &db, &queue, &format!("{prefix}.#"), &stop).await;

    let txn = db.begin().await.unwrap();
    record(&txn, &envelope(&event_type, "v", "test", vec![])).await.unwrap();
    txn.rollback().await.unwrap();
    let relay = Relay::new(db.clone(), bus.clone());
    assert_eq!(relay.pending().await.unwrap(), 0, "a rolled-back change leaves no event");

    write_events(&db, &event_type, 3).await;
    assert_eq!(relay.flush().await.unwrap(), 3);
    assert!(
        eventually(Duration::from_secs(10), || async { count(&db, "SELECT COUNT(*) AS n FROM applied").await == 3 })
            .await
    );

    // The relay crashed after publishing but before marking: everything goes out again.
    db.execute_unprepared("UPDATE outbox SET published_at_ms = NULL").await.unwrap();
    assert_eq!(relay.flush().await.unwrap(), 3);
    assert!(
        eventually(Duration::from_secs(10), || async { handled.load(Ordering::SeqCst) >= 6 }).await,
        "the three duplicates were delivered and handled"
    );
    assert_eq!(handled.load(Ordering::SeqCst), 6, "each event published twice, delivered twice");
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM applied").await, 3, "duplicates are applied once");
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM inbox").await, 3);
    stop.cancel();
    bus.delete_queues(&queue).await.unwrap();
}

#[tokio::test]
async fn sqlite_and_memory_bus_deliver_committed_events_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = flick_db::service_url(None, dir.path(), "media").unwrap();
    let db = connect(&url, "media", 4).await.unwrap();
    rolled_back_changes_emit_nothing_and_committed_ones_are_applied_once(db, Bus::memory(options())).await;
}

#[tokio::test]
async fn postgres_and_rabbitmq_deliver_committed_events_once() {
    require("RabbitMQ", &amqp_url(), 5672).await;
    let test_db = TestDatabase::create().await;
    let db = connect(&test_db.url, "media", 4).await.unwrap();
    let bus = Bus::connect(Some(&amqp_url()), options()).unwrap();
    rolled_back_changes_emit_nothing_and_committed_ones_are_applied_once(db, bus).await;
}

#[tokio::test]
async fn apply_once_ignores_a_second_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let url = flick_db::service_url(None, dir.path(), "media").unwrap();
    let db = connect(&url, "media", 4).await.unwrap();
    migrate(&db, &[flick_outbox::MIGRATIONS]).await.unwrap();
    let first = apply_once(&db, "c", "event-1", |_txn| Box::pin(async { Ok::<_, DbErr>(()) })).await.unwrap();
    let second = apply_once(&db, "c", "event-1", |_txn| {
        Box::pin(async { Err::<(), _>(flick_db::sea_orm::DbErr::Custom("applied twice".into())) })
    })
    .await
    .unwrap();
    assert_eq!((first, second), (Applied::Now(()), Applied::AlreadyApplied));
    let other_consumer = apply_once(&db, "d", "event-1", |_txn| Box::pin(async { Ok::<_, DbErr>(()) })).await.unwrap();
    assert_eq!(other_consumer, Applied::Now(()), "each consumer applies the event once");
}

#[tokio::test]
async fn events_written_while_rabbitmq_is_unreachable_are_delivered_once_after_it_returns() {
    require("RabbitMQ", &amqp_url(), 5672).await;
    let test_db = TestDatabase::create().await;
    let db = connect(&test_db.url, "media", 4).await.unwrap();
    migrate(&db, &[flick_outbox::MIGRATIONS, APPLIED]).await.unwrap();
    let prefix = unique("t").replace('-', "");
    let queue = unique("q.outage");
    let stop = CancellationToken::new();
    let consumer_bus = Bus::connect(Some(&amqp_url()), options()).unwrap();
    let handled = start_consumer(&consumer_bus, &db, &queue, &format!("{prefix}.#"), &stop).await;

    // The relay reaches RabbitMQ through a proxy we can cut.
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let relay_bus = Bus::connect(Some(&proxy.rewrite(&amqp_url())), options()).unwrap();
    let relay = Relay::new(db.clone(), relay_bus).with_poll_interval(Duration::from_millis(100));
    let relay_task = tokio::spawn(relay.clone().run(stop.clone()));

    proxy.cut();
    // Users keep writing: every change commits, its event waits in the outbox.
    write_events(&db, &format!("{prefix}.video.liked"), 10).await;
    // The relay counts its failed publishes per row: two failed tries on the oldest row show
    // it has been at work during the outage.
    assert!(
        eventually(Duration::from_secs(30), || async {
            count(&db, "SELECT COUNT(*) AS n FROM outbox WHERE attempts >= 2").await >= 1
        })
        .await,
        "the relay tried to publish during the outage"
    );
    assert_eq!(relay.pending().await.unwrap(), 10, "nothing was published during the outage");
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM applied").await, 0);

    proxy.restore();
    assert!(
        eventually(Duration::from_secs(30), || async { count(&db, "SELECT COUNT(*) AS n FROM applied").await == 10 })
            .await,
        "every event arrives after the broker returns"
    );
    // The relay marks rows published after the broker's confirms, which can come after the
    // consumer has already applied them.
    assert!(
        eventually(Duration::from_secs(10), || async { relay.pending().await.unwrap() == 0 }).await,
        "every outbox row is marked published"
    );
    // A publish whose confirm was lost in the outage is published again: duplicates may be
    // queued. A sentinel published now, after every relay publish was confirmed, comes behind
    // them all, so once it is handled every duplicate has been handled too.
    let sentinel = envelope(&format!("{prefix}.sentinel"), "sentinel", "test", vec![]);
    consumer_bus.publish(&sentinel).await.unwrap();
    let sentinel_applied = format!("SELECT COUNT(*) AS n FROM applied WHERE event_id = '{}'", sentinel.id);
    assert!(
        eventually(Duration::from_secs(10), || async { count(&db, &sentinel_applied).await == 1 }).await,
        "the sentinel is applied"
    );
    // The handler counts after apply_once's commit, so the count can trail the row just seen.
    assert!(
        eventually(Duration::from_secs(10), || async { handled.load(Ordering::SeqCst) >= 11 }).await,
        "every event and the sentinel were handled"
    );
    assert_eq!(count(&db, "SELECT COUNT(DISTINCT event_id) AS n FROM applied").await, 11, "each applied once");
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM applied").await, 11);
    stop.cancel();
    relay_task.await.unwrap();
    consumer_bus.delete_queues(&queue).await.unwrap();
}

/// The relay prunes published outbox rows and inbox rows older than the retention (rows
/// backdated in the store); unpublished rows and recent ones stay.
async fn old_published_and_applied_rows_are_pruned(db: DatabaseConnection, bus: Bus) {
    migrate(&db, &[flick_outbox::MIGRATIONS]).await.unwrap();
    let event_type = format!("{}.pruned", unique("t").replace('-', ""));
    write_events(&db, &event_type, 4).await;
    let relay = Relay::new(db.clone(), bus.clone());
    assert_eq!(relay.flush().await.unwrap(), 4);
    for i in 0..3 {
        apply_once(&db, "pruner", &format!("event-{i}"), |_| Box::pin(async { Ok::<_, flick_db::sea_orm::DbErr>(()) }))
            .await
            .unwrap();
    }
    let ten_days_ago = chrono::Utc::now().timestamp_millis() - 10 * 24 * 3600 * 1000;
    let backdate = |sql: String| {
        let db = db.clone();
        async move { db.execute_unprepared(&sql).await.unwrap() }
    };
    backdate(format!("UPDATE outbox SET published_at_ms = {ten_days_ago} WHERE subject IN ('video-0', 'video-1')"))
        .await;
    write_events(&db, &event_type, 1).await; // unpublished: kept whatever its age
    backdate(format!("UPDATE outbox SET occurred_at_ms = {ten_days_ago} WHERE published_at_ms IS NULL")).await;
    backdate(format!("UPDATE inbox SET applied_at_ms = {ten_days_ago} WHERE event_id IN ('event-0', 'event-1')")).await;
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM outbox").await, 5);

    // Old published and applied rows go; the old unpublished one and the recent ones stay.
    let week = Duration::from_secs(7 * 24 * 3600);
    assert_eq!(flick_outbox::prune(&db, week).await.unwrap(), (2, 2));
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM outbox WHERE subject = 'video-1'").await, 0);
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM outbox WHERE published_at_ms IS NULL").await, 1);
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM outbox").await, 3);
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM inbox").await, 1);

    // The running relay prunes periodically: rows that age past the retention go too.
    backdate(format!("UPDATE outbox SET published_at_ms = {ten_days_ago} WHERE subject = 'video-2'")).await;
    backdate(format!("UPDATE inbox SET applied_at_ms = {ten_days_ago}")).await;
    let stop = CancellationToken::new();
    let task = tokio::spawn(
        Relay::new(db.clone(), bus.clone()).with_retention(week, Duration::from_millis(100)).run(stop.clone()),
    );
    let pruned = eventually(Duration::from_secs(10), || async {
        count(&db, "SELECT COUNT(*) AS n FROM outbox WHERE subject = 'video-2'").await == 0
            && count(&db, "SELECT COUNT(*) AS n FROM inbox").await == 0
    })
    .await;
    assert!(pruned, "the relay pruned the rows that aged");
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM outbox").await, 2, "the recent rows stay");
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn sqlite_prunes_old_published_and_applied_rows() {
    let dir = tempfile::tempdir().unwrap();
    let url = flick_db::service_url(None, dir.path(), "media").unwrap();
    let db = connect(&url, "media", 4).await.unwrap();
    old_published_and_applied_rows_are_pruned(db, Bus::memory(options())).await;
}

#[tokio::test]
async fn postgres_prunes_old_published_and_applied_rows() {
    require("RabbitMQ", &amqp_url(), 5672).await;
    let test_db = TestDatabase::create().await;
    let db = connect(&test_db.url, "media", 4).await.unwrap();
    let bus = Bus::connect(Some(&amqp_url()), options()).unwrap();
    old_published_and_applied_rows_are_pruned(db, bus).await;
}

/// The outbox keeps each event's trace context until the relay publishes it, so the consumers'
/// spans join the trace of the request that made the change.
async fn events_leave_the_outbox_with_the_trace_context_they_were_recorded_with(db: DatabaseConnection, bus: Bus) {
    migrate(&db, &[flick_outbox::MIGRATIONS]).await.unwrap();
    let prefix = unique("t").replace('-', "");
    let queue = unique("q.outbox-trace");
    let seen: Arc<std::sync::Mutex<Vec<flick_bus::Envelope>>> = Arc::default();
    let stop = CancellationToken::new();
    let sink = seen.clone();
    let h = handler(move |d: Delivery| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push(d.envelope);
            Ok::<(), HandlerError>(())
        }
    });
    bus.consume(QueueSpec::events(&queue, &[&format!("{prefix}.#")]), h, stop.clone()).await.unwrap();

    let mut traced = envelope(&format!("{prefix}.video.liked"), "traced", "test", vec![]);
    traced.trace_context = [
        ("traceparent".to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string()),
        ("tracestate".to_string(), "flick=1,other=x".to_string()),
    ]
    .into();
    let untraced = envelope(&format!("{prefix}.video.liked"), "untraced", "test", vec![]);
    for e in [&traced, &untraced] {
        let txn = db.begin().await.unwrap();
        record(&txn, e).await.unwrap();
        txn.commit().await.unwrap();
    }
    assert_eq!(Relay::new(db.clone(), bus.clone()).flush().await.unwrap(), 2);
    assert!(eventually(Duration::from_secs(10), || async { seen.lock().unwrap().len() == 2 }).await);
    let seen = seen.lock().unwrap().clone();
    let by_subject = |s: &str| seen.iter().find(|e| e.subject == s).unwrap().trace_context.clone();
    assert_eq!(by_subject("traced"), traced.trace_context);
    assert!(by_subject("untraced").is_empty());
    stop.cancel();
    bus.delete_queues(&queue).await.unwrap();
}

#[tokio::test]
async fn sqlite_outbox_keeps_the_trace_context() {
    let dir = tempfile::tempdir().unwrap();
    let url = flick_db::service_url(None, dir.path(), "media").unwrap();
    let db = connect(&url, "media", 4).await.unwrap();
    events_leave_the_outbox_with_the_trace_context_they_were_recorded_with(db, Bus::memory(options())).await;
}

#[tokio::test]
async fn postgres_outbox_keeps_the_trace_context() {
    require("RabbitMQ", &amqp_url(), 5672).await;
    let test_db = TestDatabase::create().await;
    let db = connect(&test_db.url, "media", 4).await.unwrap();
    let bus = Bus::connect(Some(&amqp_url()), options()).unwrap();
    events_leave_the_outbox_with_the_trace_context_they_were_recorded_with(db, bus).await;
}
