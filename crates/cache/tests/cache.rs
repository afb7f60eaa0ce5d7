//! The cache port against the in-memory default and a real Redis.

use flick_cache::{Cache, Lookup};
use flick_testkit::{TcpProxy, eventually, redis_url, require, unique};
use std::time::{Duration, Instant};

/// Waits until `ttl` has passed since `since`: for tests whose subject is expiry itself, the
/// only waits on the clock here. The check that follows then allows a short grace for the
/// backend's own clock (Redis expires on its side).
async fn outlive(since: tokio::time::Instant, ttl: Duration) {
    tokio::time::sleep_until(since + ttl).await;
}

/// How long after a TTL a backend may still show the key (clock granularity, a round trip).
const EXPIRY_GRACE: Duration = Duration::from_secs(1);

async fn redis() -> Cache {
    require("Redis", &redis_url(), 6379).await;
    Cache::connect(Some(&redis_url())).await.unwrap()
}

async fn values_expire_after_their_ttl(cache: Cache) {
    let key = unique("ttl");
    assert_eq!(cache.get(&key).await.unwrap(), None);
    let (set_at, ttl) = (tokio::time::Instant::now(), Duration::from_millis(300));
    cache.set(&key, b"hello", ttl).await.unwrap();
    assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some(&b"hello"[..]));
    outlive(set_at, ttl).await;
    assert!(eventually(EXPIRY_GRACE, || async { cache.get(&key).await.unwrap().is_none() }).await, "expired");
}

async fn counters_are_atomic_under_concurrency(cache: Cache) {
    let key = unique("counter");
    assert_eq!(cache.counter(&key).await.unwrap(), None);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (cache, key) = (cache.clone(), key.clone());
            tokio::spawn(async move { cache.incr(&key, 2).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(cache.counter(&key).await.unwrap(), Some(100));
    assert_eq!(cache.incr(&key, -1).await.unwrap(), 99);
    cache.set_counter(&key, 7).await.unwrap();
    assert_eq!(cache.counter(&key).await.unwrap(), Some(7));
    cache.delete_counter(&key).await.unwrap();
    assert_eq!(cache.counter(&key).await.unwrap(), None);
}

/// Cached copies of counts: only existing counters move; batches read, seed and take.
async fn counter_batches_and_conditional_increments(cache: Cache) {
    let (a, b, c) = (unique("likes"), unique("likes"), unique("pending"));
    assert_eq!(cache.incr_if_present(&a, 1).await.unwrap(), None, "absent: nothing created");
    assert_eq!(cache.counter(&a).await.unwrap(), None);
    let (seeded_at, ttl) = (tokio::time::Instant::now(), Duration::from_millis(400));
    cache.set_counters_if_absent(&[(&a, 5), (&b, 0)], ttl).await.unwrap();
    cache.set_counters_if_absent(&[(&a, 99)], Duration::from_secs(60)).await.unwrap();
    assert_eq!(cache.incr_if_present(&a, 2).await.unwrap(), Some(7), "the first value stays and moves");
    assert_eq!(cache.counters(&[&a, &c, &b]).await.unwrap(), vec![Some(7), None, Some(0)]);
    cache.set_counters(&[(&b, 3)], Duration::from_secs(60)).await.unwrap();
    assert_eq!(cache.counter(&b).await.unwrap(), Some(3), "overwritten");
    outlive(seeded_at, ttl).await;
    assert!(
        eventually(EXPIRY_GRACE, || async { cache.counter(&a).await.unwrap().is_none() }).await,
        "the TTL survived the increment"
    );
    assert_eq!(cache.incr_if_present(&a, 1).await.unwrap(), None);
    cache.incr(&c, 4).await.unwrap();
    assert_eq!(cache.take_counters(&[&c, &a]).await.unwrap(), vec![Some(4), None]);
    assert_eq!(cache.counter(&c).await.unwrap(), None, "taken once");
    assert!(cache.counters(&[]).await.unwrap().is_empty());

    let set = unique("dirty");
    cache.set_add(&set, &["x", "y", "x"]).await.unwrap();
    cache.set_add(&set, &["z"]).await.unwrap();
    let mut popped = cache.set_pop(&set, 2).await.unwrap();
    assert_eq!(popped.len(), 2);
    popped.extend(cache.set_pop(&set, 10).await.unwrap());
    popped.sort();
    assert_eq!(popped, ["x", "y", "z"]);
    assert!(cache.set_pop(&set, 10).await.unwrap().is_empty());
}

async fn rate_limit_allows_the_limit_then_refuses_until_the_window_resets(cache: Cache) {
    let key = unique("login");
    let window = Duration::from_millis(600);
    for i in 0..3 {
        let d = cache.rate_limit(&key, 3, window).await.unwrap();
        assert!(d.allowed, "attempt {i} allowed");
        assert_eq!(d.remaining, 2 - i);
    }
    let refused = cache.rate_limit(&key, 3, window).await.unwrap();
    assert!(!refused.allowed);
    assert!(refused.reset_after <= window && refused.reset_after > Duration::ZERO);
    // The window's end is the subject: wait for it, then the next attempt opens a new one.
    outlive(tokio::time::Instant::now(), refused.reset_after).await;
    assert!(
        eventually(EXPIRY_GRACE, || async { cache.rate_count(&key).await.unwrap().0 == 0 }).await,
        "the window resets"
    );
    assert!(cache.rate_limit(&key, 3, window).await.unwrap().allowed);
}

async fn invalidation_reaches_every_replica(a: Cache) {
    let b = a.replica();
    let key = unique("user");
    assert!(eventually(Duration::from_secs(5), || async { b.is_listening() }).await, "b never subscribed");
    a.set(&key, b"v1", Duration::from_secs(60)).await.unwrap();
    assert_eq!(b.get(&key).await.unwrap().as_deref(), Some(&b"v1"[..]), "b now holds a local copy");
    a.set(&key, b"v2", Duration::from_secs(60)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(2), || async { b.get(&key).await.unwrap().as_deref() == Some(&b"v2"[..]) })
            .await,
        "b sees the new value, not its stale copy"
    );
    a.invalidate(&key).await.unwrap();
    assert!(
        eventually(Duration::from_secs(2), || async { b.get(&key).await.unwrap().is_none() }).await,
        "b drops its copy"
    );
}

#[tokio::test]
async fn memory_values_expire_after_their_ttl() {
    values_expire_after_their_ttl(Cache::memory()).await;
}

#[tokio::test]
async fn redis_values_expire_after_their_ttl() {
    values_expire_after_their_ttl(redis().await).await;
}

#[tokio::test]
async fn memory_counters_are_atomic_under_concurrency() {
    counters_are_atomic_under_concurrency(Cache::memory()).await;
}

#[tokio::test]
async fn redis_counters_are_atomic_under_concurrency() {
    counters_are_atomic_under_concurrency(redis().await).await;
}

#[tokio::test]
async fn memory_counter_batches_and_conditional_increments() {
    counter_batches_and_conditional_increments(Cache::memory()).await;
}

#[tokio::test]
async fn redis_counter_batches_and_conditional_increments() {
    counter_batches_and_conditional_increments(redis().await).await;
}

#[tokio::test]
async fn memory_rate_limit_refuses_past_the_limit() {
    rate_limit_allows_the_limit_then_refuses_until_the_window_resets(Cache::memory()).await;
}

#[tokio::test]
async fn redis_rate_limit_refuses_past_the_limit() {
    rate_limit_allows_the_limit_then_refuses_until_the_window_resets(redis().await).await;
}

/// The race a read-through cache must not lose: a reader misses, reads the source, and an
/// update's invalidation lands before it stores what it read. Replica `b` does the reading.
async fn fills_refuse_values_an_invalidation_overtook(a: Cache) {
    let b = a.replica();
    let key = unique("fill");
    let Lookup::Miss(before) = b.lookup(&key).await.unwrap() else { panic!("a new key is a miss") };
    a.invalidate(&key).await.unwrap();
    assert!(!b.fill(&key, &before, b"stale", Duration::from_secs(60)).await.unwrap(), "refused");
    assert_eq!(b.get(&key).await.unwrap(), None, "the tombstone reads as absent");
    assert_eq!(a.get(&key).await.unwrap(), None);

    // A reader that began after the invalidation stores at once.
    let Lookup::Miss(after) = b.lookup(&key).await.unwrap() else { panic!("still a miss") };
    assert_ne!(after, before, "it saw the tombstone");
    assert!(b.fill(&key, &after, b"fresh", Duration::from_secs(60)).await.unwrap());
    assert_eq!(b.lookup(&key).await.unwrap(), Lookup::Hit(b"fresh".to_vec()));
    assert_eq!(a.get(&key).await.unwrap().as_deref(), Some(&b"fresh"[..]));
    // Once filled, the same token stores nothing more (a concurrent reader's copy stays).
    assert!(!b.fill(&key, &after, b"other", Duration::from_secs(60)).await.unwrap());
    assert_eq!(a.get(&key).await.unwrap().as_deref(), Some(&b"fresh"[..]));

    // Invalidating a stored value works the same way.
    a.invalidate(&key).await.unwrap();
    assert!(
        eventually(Duration::from_secs(2), || async { matches!(b.lookup(&key).await.unwrap(), Lookup::Miss(_)) }).await,
        "b drops its copy"
    );
    assert!(!b.fill(&key, &after, b"stale again", Duration::from_secs(60)).await.unwrap());
    // A plain set still overwrites a tombstone: it is a writer's own value, not a read.
    a.set(&key, b"written", Duration::from_secs(60)).await.unwrap();
    assert_eq!(a.get(&key).await.unwrap().as_deref(), Some(&b"written"[..]));
}

#[tokio::test]
async fn memory_fills_refuse_values_an_invalidation_overtook() {
    fills_refuse_values_an_invalidation_overtook(Cache::memory()).await;
}

#[tokio::test]
async fn redis_fills_refuse_values_an_invalidation_overtook() {
    fills_refuse_values_an_invalidation_overtook(redis().await).await;
}

#[tokio::test]
async fn memory_invalidation_reaches_every_replica() {
    invalidation_reaches_every_replica(Cache::memory()).await;
}

#[tokio::test]
async fn redis_invalidation_reaches_every_replica() {
    invalidation_reaches_every_replica(redis().await).await;
}

#[tokio::test]
async fn redis_outage_fails_fast_and_recovers() {
    require("Redis", &redis_url(), 6379).await;
    let proxy = TcpProxy::start("127.0.0.1:6379").await;
    let cache = Cache::connect(Some(&proxy.rewrite(&redis_url()))).await.unwrap();
    let key = unique("outage");
    cache.incr(&key, 1).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || async { cache.is_listening() }).await, "never subscribed");
    proxy.cut();
    assert!(
        eventually(Duration::from_secs(5), || async { !cache.is_listening() }).await,
        "a cut invalidation channel is noticed (near copies may be stale)"
    );
    let started = Instant::now();
    assert!(cache.incr(&key, 1).await.is_err(), "an unreachable cache is an error, not a hang");
    assert!(started.elapsed() < Duration::from_secs(3), "failed in {:?}", started.elapsed());
    assert!(cache.ping().await.is_err());
    proxy.restore();
    assert!(
        eventually(Duration::from_secs(10), || async { cache.incr(&key, 1).await.is_ok() }).await,
        "the cache reconnects when Redis is back"
    );
    assert!(eventually(Duration::from_secs(10), || async { cache.is_listening() }).await, "listens again");
}

#[tokio::test]
async fn redis_key_prefixes_keep_environments_apart() {
    require("Redis", &redis_url(), 6379).await;
    let a = Cache::connect_with_prefix(Some(&redis_url()), &format!("{}:", unique("env"))).await.unwrap();
    let b = Cache::connect_with_prefix(Some(&redis_url()), &format!("{}:", unique("env"))).await.unwrap();
    a.incr("hits", 5).await.unwrap();
    assert_eq!(b.counter("hits").await.unwrap(), None);
    assert!(a.rate_limit("login", 1, Duration::from_secs(5)).await.unwrap().allowed);
    assert!(b.rate_limit("login", 1, Duration::from_secs(5)).await.unwrap().allowed, "separate windows");
    a.delete_counter("hits").await.unwrap();
}

async fn denylist_members_expire(cache: Cache) {
    let list = cache.denylist(&unique("expiry"));
    let (short, long) = (unique("short"), unique("long"));
    let (added_at, ttl) = (tokio::time::Instant::now(), Duration::from_millis(300));
    list.add(&short, ttl).await.unwrap();
    list.add(&long, Duration::from_secs(60)).await.unwrap();
    assert!(list.contains_any(&[&short]).await.unwrap());
    assert!(!list.contains_any(&["never-added"]).await.unwrap());
    outlive(added_at, ttl).await;
    assert!(eventually(EXPIRY_GRACE, || async { !list.contains_any(&[&short]).await.unwrap() }).await, "expired");
    assert!(list.contains_any(&["never-added", &long]).await.unwrap(), "any of several");
}

#[tokio::test]
async fn memory_denylist_members_expire() {
    denylist_members_expire(Cache::memory()).await;
}

#[tokio::test]
async fn redis_denylist_members_expire() {
    denylist_members_expire(redis().await).await;
}

#[tokio::test]
async fn memory_denylist_is_shared_by_every_handle() {
    let cache = Cache::memory();
    let name = unique("shared");
    cache.denylist(&name).add("m", Duration::from_secs(60)).await.unwrap();
    assert_eq!(cache.replica().denylist(&name).mirrored(&["m"]), Some(true));
}

/// Long-lived sessions (subscriptions) wake on `changes()` when another handle or replica
/// adds a member, instead of polling; re-adding a member it already holds is no change.
async fn denylist_changes_wake_watchers(writer: Cache, watcher: Cache) {
    let name = unique("changes");
    let (on_writer, on_watcher) = (writer.denylist(&name), watcher.denylist(&name));
    current(&on_writer).await;
    current(&on_watcher).await;
    let mut changes = on_watcher.changes();
    changes.mark_unchanged();
    on_writer.add("sid:1", Duration::from_secs(60)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("the watcher was never told of the addition")
        .unwrap();
    assert_eq!(on_watcher.mirrored(&["sid:1"]), Some(true));
    let seen = *changes.borrow_and_update();
    on_watcher.add("sid:1", Duration::from_secs(30)).await.unwrap();
    assert_eq!(*changes.borrow(), seen, "a member already held for longer is not news");
}

#[tokio::test]
async fn memory_denylist_changes_wake_watchers() {
    let cache = Cache::memory();
    denylist_changes_wake_watchers(cache.clone(), cache.replica()).await;
}

#[tokio::test]
async fn redis_denylist_changes_wake_watchers() {
    let a = redis().await;
    let b = a.replica();
    denylist_changes_wake_watchers(a, b).await;
}

async fn current(list: &flick_cache::Denylist) {
    assert!(eventually(Duration::from_secs(5), || async { list.is_current() }).await, "mirror never became current");
}

/// The property logout relies on: once `add` returns on one replica, every other replica's
/// mirror already answers yes, without asking Redis.
#[tokio::test]
async fn redis_denylist_additions_are_mirrored_by_every_replica_when_add_returns() {
    let a = redis().await;
    let b = a.replica();
    let name = unique("replicas");
    let (on_a, on_b) = (a.denylist(&name), b.denylist(&name));
    current(&on_a).await;
    current(&on_b).await;
    for i in 0..300 {
        let member = format!("jti-{i}");
        on_a.add(&member, Duration::from_secs(60)).await.unwrap();
        assert_eq!(on_b.mirrored(&[&member]), Some(true), "addition {i} not yet mirrored by b");
    }
    assert_eq!(on_b.mirrored(&["jti-never"]), Some(false), "a current mirror answers no locally");
}

#[tokio::test]
async fn redis_denylist_loads_what_was_added_before_it_started() {
    let a = redis().await;
    let name = unique("late");
    a.denylist(&name).add("early", Duration::from_secs(60)).await.unwrap();
    let late = a.replica().denylist(&name);
    // Before its first load it asks Redis; after, it answers from its mirror.
    assert!(late.contains_any(&["early"]).await.unwrap());
    current(&late).await;
    assert_eq!(late.mirrored(&["early"]), Some(true));
}

/// A mirror that lost its subscription does not answer no: lookups go to Redis and fail
/// while it is down; additions made meanwhile are loaded when it is back.
#[tokio::test]
async fn redis_denylist_outage_fails_lookups_and_resyncs_after() {
    require("Redis", &redis_url(), 6379).await;
    let proxy = TcpProxy::start("127.0.0.1:6379").await;
    let behind = Cache::connect(Some(&proxy.rewrite(&redis_url()))).await.unwrap();
    let direct = redis().await;
    let name = unique("outage");
    let (mirror, writer) = (behind.denylist(&name), direct.denylist(&name));
    current(&mirror).await;
    proxy.cut();
    assert!(
        eventually(Duration::from_secs(2), || async { !mirror.is_current() }).await,
        "a cut subscription is noticed"
    );
    assert_eq!(mirror.mirrored(&["during"]), None);
    assert!(mirror.contains_any(&["during"]).await.is_err(), "no answer rather than a wrong no");
    writer.add("during", Duration::from_secs(60)).await.unwrap();
    proxy.restore();
    current(&mirror).await;
    assert_eq!(mirror.mirrored(&["during"]), Some(true), "loaded on resubscribe");
}
