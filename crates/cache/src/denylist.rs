//! A grow-only set of expiring members shared by every replica (revoked tokens), answered
//! from local memory.
//!
//! With Redis the set is a sorted set (score = expiry, Unix ms) and each replica keeps a
//! whole mirror of it: loaded right after subscribing to the set's channel, then kept
//! current by the additions every replica publishes there. This is the pattern of Redis's
//! server-assisted client-side caching, and it takes the round trip off the lookup path.
//! Members are never removed before they expire, so a local "yes" is always right and a
//! local "no" is right while the mirror is current: subscribed, and its own heartbeat came
//! back less than `STALE_AFTER` ago. Otherwise lookups ask Redis, and fail when Redis
//! does, so callers can fall back to their own source of truth.

use crate::{Backend, Cache, Result};
use futures::StreamExt;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const CHANNEL_PREFIX: &str = "flick:denylist:";
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A mirror that heard nothing for this long (not even its own heartbeat) may have missed
/// an addition: a half-open connection looks alive until then.
const STALE_AFTER: Duration = Duration::from_secs(3);
/// How long `add` waits for its own message to come back. Redis writes a message to every
/// subscriber in one go, so once ours is back the other replicas have theirs on the wire.
const ECHO_WAIT: Duration = Duration::from_millis(250);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Denylist {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    /// `None` in memory, where the mirror is the whole set.
    redis: Option<ConnectionManager>,
    /// The sorted set's key, with the cache's prefix.
    key: String,
    channel: String,
    /// Tells this mirror's own messages apart.
    origin: String,
    members: RwLock<HashMap<String, i64>>,
    subscribed: AtomicBool,
    /// When the last message arrived, in ms on the monotonic clock of `mono_ms`.
    heard_at: AtomicI64,
    next_seq: AtomicU64,
    /// The highest sequence number of our own messages seen coming back.
    echoed: watch::Sender<u64>,
    /// Counts the additions this mirror learned of, so holders of long-lived sessions
    /// (subscriptions) can re-check at once instead of polling.
    additions: watch::Sender<u64>,
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn mono_ms() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as i64
}

impl Cache {
    /// The denylist `name`, mirrored in this process. With Redis this starts the listener
    /// that keeps the mirror current, so call it once per name and clone the handle.
    pub fn denylist(&self, name: &str) -> Denylist {
        let key = self.key(&format!("denylist:{name}"));
        let fresh = |redis| {
            Arc::new(Shared {
                redis,
                channel: format!("{CHANNEL_PREFIX}{key}"),
                key: key.clone(),
                origin: crate::uuid_like(),
                members: RwLock::new(HashMap::new()),
                subscribed: AtomicBool::new(false),
                heard_at: AtomicI64::new(0),
                next_seq: AtomicU64::new(1),
                echoed: watch::channel(0).0,
                additions: watch::channel(0).0,
            })
        };
        let shared = match &self.inner.backend {
            Backend::Redis(r) => {
                let shared = fresh(Some(r.conn.clone()));
                tokio::spawn(keep_current(Arc::downgrade(&shared), r.client.clone()));
                shared
            }
            // One process, one set: every handle of this cache shares it.
            Backend::Memory(m) => {
                let mut lists = m.denylists.lock().expect("denylist registry lock");
                lists.entry(key.clone()).or_insert_with(|| fresh(None)).clone()
            }
        };
        Denylist { shared }
    }
}

impl Denylist {
    /// Adds `member` until `ttl` from now, here and in every replica's mirror. Returns once
    /// the addition is in Redis and on its way to every subscribed replica.
    pub async fn add(&self, member: &str, ttl: Duration) -> Result<()> {
        let s = &self.shared;
        let expires = unix_ms() + ttl.as_millis() as i64;
        s.remember(member, expires);
        let Some(conn) = &s.redis else { return Ok(()) };
        let seq = s.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut echoed = s.echoed.subscribe();
        redis::pipe()
            .cmd("ZADD")
            .arg(&s.key)
            .arg("GT")
            .arg(expires)
            .arg(member)
            .ignore()
            .zrembyscore(&s.key, "-inf", unix_ms())
            .ignore()
            .publish(&s.channel, format!("{}|{seq}|{expires}|{member}", s.origin))
            .ignore()
            .query_async::<()>(&mut conn.clone())
            .await?;
        if self.is_current() {
            let _ = tokio::time::timeout(ECHO_WAIT, echoed.wait_for(|seen| *seen >= seq)).await;
        }
        Ok(())
    }

    /// True if any of `members` is on the list and not expired. Answered locally while the
    /// mirror is current; otherwise by Redis, and an error if Redis cannot answer.
    pub async fn contains_any(&self, members: &[&str]) -> Result<bool> {
        if let Some(answer) = self.mirrored(members) {
            return Ok(answer);
        }
        let s = &self.shared;
        let Some(conn) = &s.redis else { return Ok(false) };
        let scores: Vec<Option<f64>> =
            redis::cmd("ZMSCORE").arg(&s.key).arg(members).query_async(&mut conn.clone()).await?;
        let now = unix_ms();
        let mut found = false;
        for (member, score) in members.iter().zip(scores) {
            if let Some(expires) = score.map(|s| s as i64)
                && expires > now
            {
                s.remember(member, expires);
                found = true;
            }
        }
        Ok(found)
    }

    /// Changes whenever this mirror learns of an addition (here or from another replica).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.additions.subscribe()
    }

    /// The mirror's answer, or `None` when it may be missing additions.
    pub fn mirrored(&self, members: &[&str]) -> Option<bool> {
        let s = &self.shared;
        let now = unix_ms();
        let members_map = s.members.read().expect("denylist lock");
        if members.iter().any(|m| members_map.get(*m).is_some_and(|&expires| expires > now)) {
            return Some(true);
        }
        drop(members_map);
        self.is_current().then_some(false)
    }

    /// Whether a local "no" can be trusted: always in memory; with Redis, while subscribed
    /// and hearing from the channel.
    pub fn is_current(&self) -> bool {
        let s = &self.shared;
        s.redis.is_none()
            || (s.subscribed.load(Ordering::Acquire)
                && mono_ms() - s.heard_at.load(Ordering::Relaxed) < STALE_AFTER.as_millis() as i64)
    }
}

impl Shared {
    fn remember(&self, member: &str, expires: i64) {
        let mut members = self.members.write().expect("denylist lock");
        let known = members.get(member).copied();
        if known.is_some_and(|k| k >= expires) {
            return;
        }
        members.insert(member.to_string(), expires);
        drop(members);
        self.additions.send_modify(|n| *n += 1);
    }

    fn forget_expired(&self) {
        let now = unix_ms();
        self.members.write().expect("denylist lock").retain(|_, expires| *expires > now);
    }

    fn heard(&self) {
        self.heard_at.store(mono_ms(), Ordering::Relaxed);
    }

    /// Applies one channel message: `origin|seq|expires|member` (an empty member is a
    /// heartbeat).
    fn apply(&self, payload: &str) {
        self.heard();
        let mut parts = payload.splitn(4, '|');
        let (Some(origin), Some(seq), Some(expires), Some(member)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        if !member.is_empty()
            && let Ok(expires) = expires.parse::<i64>()
        {
            self.remember(member, expires);
        }
        if origin == self.origin
            && let Ok(seq) = seq.parse::<u64>()
        {
            self.echoed.send_if_modified(|seen| {
                let newer = seq > *seen;
                *seen = (*seen).max(seq);
                newer
            });
        }
    }

    /// Everything already in the set that has not expired.
    async fn load(&self) -> Result<()> {
        let Some(conn) = &self.redis else { return Ok(()) };
        let live: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(&self.key)
            .arg(format!("({}", unix_ms()))
            .arg("+inf")
            .arg("WITHSCORES")
            .query_async(&mut conn.clone())
            .await?;
        for (member, expires) in live {
            self.remember(&member, expires as i64);
        }
        Ok(())
    }

    async fn heartbeat(&self) {
        let Some(conn) = &self.redis else { return };
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let message = format!("{}|{seq}|0|", self.origin);
        let sent = redis::cmd("PUBLISH").arg(&self.channel).arg(message).query_async::<()>(&mut conn.clone()).await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "denylist heartbeat not sent");
        }
    }
}

/// Subscribes, loads the set, then applies additions until the connection ends; again and
/// again, until the denylist is dropped.
async fn keep_current(weak: Weak<Shared>, client: redis::Client) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let channel = shared.channel.clone();
        drop(shared);
        match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
            Ok(Ok(mut pubsub)) => {
                if let Err(e) = pubsub.subscribe(&channel).await {
                    tracing::debug!(error = %e, "denylist cannot subscribe");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
                let Some(shared) = weak.upgrade() else { return };
                // Subscribed first, loaded second: an addition is in the load or in a message.
                if let Err(e) = shared.load().await {
                    tracing::debug!(error = %e, "denylist cannot load; retrying");
                } else {
                    backoff = Duration::from_millis(100);
                    shared.heard();
                    shared.subscribed.store(true, Ordering::Release);
                    drop(shared);
                    follow(&weak, pubsub.into_on_message()).await;
                    if let Some(shared) = weak.upgrade() {
                        shared.subscribed.store(false, Ordering::Release);
                    }
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "denylist listener cannot connect"),
            Err(_) => tracing::debug!("denylist listener timed out connecting"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Applies messages and sends heartbeats until the subscription ends or goes quiet.
async fn follow(weak: &Weak<Shared>, mut messages: impl futures::Stream<Item = redis::Msg> + Unpin) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            msg = messages.next() => {
                let (Some(msg), Some(shared)) = (msg, weak.upgrade()) else { return };
                if let Ok(payload) = msg.get_payload::<String>() {
                    shared.apply(&payload);
                }
            }
            _ = tick.tick() => {
                let Some(shared) = weak.upgrade() else { return };
                if mono_ms() - shared.heard_at.load(Ordering::Relaxed) >= STALE_AFTER.as_millis() as i64 {
                    tracing::warn!(channel = %shared.channel, "denylist channel went quiet; resubscribing");
                    return;
                }
                shared.forget_expired();
                shared.heartbeat().await;
            }
        }
    }
}
