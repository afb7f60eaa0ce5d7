//! The cache port against the in-memory default and a real Redis.

use flick_cache::Cache;
use flick_testkit::{TcpProxy, eventually, redis_url, require, unique};
use std::time::{Duration, Instant};

async fn redis() -> Cache {
    require("Redis", &redis_url(), 6379).await;
    Cache::connect(Some(&redis_url())).await.unwrap()
}

async fn values_expire_after_their_ttl(cache: Cache) {
    let key = unique("ttl");
    assert_eq!(cache.get(&key).await.unwrap(), None);
    cache.set(&key, b"hello", Duration::from_millis(300)).await.unwrap();
    assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some(&b"hello"[..]));
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(cache.get(&key).await.unwrap(), None);
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
    tokio::time::sleep(refused.reset_after + Duration::from_millis(100)).await;
    assert!(cache.rate_limit(&key, 3, window).await.unwrap().allowed);
}

async fn invalidation_reaches_every_replica(a: Cache) {
    let b = a.replica();
    let key = unique("user");
    // Let b's invalidation listener subscribe.
    tokio::time::sleep(Duration::from_millis(200)).await;
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
async fn memory_rate_limit_refuses_past_the_limit() {
    rate_limit_allows_the_limit_then_refuses_until_the_window_resets(Cache::memory()).await;
}

#[tokio::test]
async fn redis_rate_limit_refuses_past_the_limit() {
    rate_limit_allows_the_limit_then_refuses_until_the_window_resets(redis().await).await;
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
    proxy.cut();
    let started = Instant::now();
    assert!(cache.incr(&key, 1).await.is_err(), "an unreachable cache is an error, not a hang");
    assert!(started.elapsed() < Duration::from_secs(3), "failed in {:?}", started.elapsed());
    assert!(cache.ping().await.is_err());
    proxy.restore();
    assert!(
        eventually(Duration::from_secs(10), || async { cache.incr(&key, 1).await.is_ok() }).await,
        "the cache reconnects when Redis is back"
    );
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
