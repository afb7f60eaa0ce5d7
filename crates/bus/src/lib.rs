//! The event bus and work-queue port.
//!
//! - Domain events go to one durable topic exchange; the routing key is the event type.
//! - Work queues are durable queues fed directly.
//! - Consumers acknowledge manually, after their handler succeeded. A failing message is
//!   retried a bounded number of times with exponential backoff, then parked in the
//!   queue's dead-letter queue (`<queue>.dlq`); a message that cannot be decoded, or that the
//!   handler rejects as poison, goes there at once. Publishes wait for broker confirms.
//!
//! Backends: in-process channels (the embedded default) and RabbitMQ (amqprs).

mod memory;
mod rabbit;
mod topic;
pub mod trace;

use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use flick_proto::events::v1::Envelope;
pub use topic::topic_matches;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("broker refused the message (nack)")]
    Nacked,
    #[error("no publish confirm within {0:?}")]
    ConfirmTimeout(Duration),
    #[error("unsupported bus url {0:?}: use memory:// or amqp://")]
    UnsupportedUrl(String),
}

impl From<amqprs::error::Error> for BusError {
    fn from(e: amqprs::error::Error) -> Self {
        BusError::Unavailable(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, BusError>;

/// Transient messages a slow local subscriber may fall behind by before it loses the oldest.
pub(crate) const TRANSIENT_BUFFER: usize = 1024;

/// Builds an event envelope with a fresh time-ordered id, carrying the current trace context.
pub fn envelope(event_type: &str, subject: &str, producer: &str, payload: Vec<u8>) -> Envelope {
    Envelope {
        id: uuid::Uuid::now_v7().to_string(),
        r#type: event_type.to_string(),
        occurred_at_ms: chrono::Utc::now().timestamp_millis(),
        subject: subject.to_string(),
        producer: producer.to_string(),
        payload,
        trace_context: trace::current_context(),
    }
}

/// One message handed to a handler.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub envelope: Envelope,
    /// 1 for the first try, counting retries after handler failures.
    pub attempt: u32,
    /// The broker delivered it before without an acknowledgement (a consumer died).
    pub redelivered: bool,
}

/// Why a handler did not finish a message.
#[derive(Debug, Clone)]
pub enum HandlerError {
    /// Transient (a dependency is down): retry later, up to the attempt limit.
    Retry(String),
    /// The message itself is bad: straight to the dead-letter queue.
    Reject(String),
    /// Not this consumer's failure (it is shutting down): back on the queue as it was, for
    /// another consumer, without counting an attempt.
    Requeue(String),
    /// Not now (the work is held by another consumer, or must wait its turn): back on the
    /// queue after `BusOptions::retry_base`, keeping its attempt number, so any consumer may
    /// take it then. Nothing is lost if this consumer dies meanwhile.
    Defer(String),
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandlerError::Retry(e) => write!(f, "retryable: {e}"),
            HandlerError::Reject(e) => write!(f, "rejected: {e}"),
            HandlerError::Requeue(e) => write!(f, "requeued: {e}"),
            HandlerError::Defer(e) => write!(f, "deferred: {e}"),
        }
    }
}

pub type Handler = Arc<dyn Fn(Delivery) -> BoxFuture<'static, std::result::Result<(), HandlerError>> + Send + Sync>;

/// Wraps an async closure as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), HandlerError>> + Send + 'static,
{
    Arc::new(move |d| Box::pin(f(d)))
}

/// A message parked in a dead-letter queue, with the reason.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub envelope: Option<Envelope>,
    pub error: String,
    pub attempts: u32,
}

/// A queue to consume: a work queue (no bindings) or an event queue bound to the topic
/// exchange with routing patterns (`video.*`, `user.deleted`, `#`).
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: String,
    pub bindings: Vec<String>,
    /// Unacknowledged messages one consumer holds (default: `BusOptions::prefetch`). Long jobs
    /// want 1, so an idle worker is not starved by a busy one.
    pub prefetch: Option<u16>,
    /// Attempts before dead-lettering (default: `BusOptions::max_attempts`).
    pub max_attempts: Option<u32>,
}

impl QueueSpec {
    pub fn work(name: &str) -> Self {
        Self { name: name.to_string(), bindings: Vec::new(), prefetch: None, max_attempts: None }
    }
    pub fn events(name: &str, patterns: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            bindings: patterns.iter().map(|p| p.to_string()).collect(),
            prefetch: None,
            max_attempts: None,
        }
    }
    pub fn with_prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = Some(prefetch.max(1));
        self
    }
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }
    pub(crate) fn attempts(&self, options: &BusOptions) -> u32 {
        self.max_attempts.unwrap_or(options.max_attempts).max(1)
    }
}

#[derive(Debug, Clone)]
pub struct BusOptions {
    pub exchange: String,
    pub prefetch: u16,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub confirm_timeout: Duration,
    /// Names this process's connections in the broker's management UI.
    pub connection_name: String,
    /// Prepended to every queue name (isolates test runs or tenants sharing a broker).
    pub queue_prefix: String,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            exchange: "flick.events".into(),
            prefetch: 16,
            max_attempts: 5,
            retry_base: Duration::from_secs(1),
            confirm_timeout: Duration::from_secs(10),
            connection_name: "flick".into(),
            queue_prefix: String::new(),
        }
    }
}

impl BusOptions {
    /// Delay before attempt `attempt + 1`, doubling each time.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        self.retry_base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
    }
}

#[derive(Clone)]
pub enum Bus {
    Memory(Arc<memory::MemoryBus>),
    Rabbit(Arc<rabbit::RabbitBus>),
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bus::Memory(_) => "Bus(memory)",
            Bus::Rabbit(_) => "Bus(rabbitmq)",
        })
    }
}

impl Bus {
    fn options(&self) -> &BusOptions {
        match self {
            Bus::Memory(b) => b.options(),
            Bus::Rabbit(b) => b.options(),
        }
    }

    fn queue(&self, name: &str) -> String {
        format!("{}{name}", self.options().queue_prefix)
    }

    pub fn memory(options: BusOptions) -> Self {
        Bus::Memory(Arc::new(memory::MemoryBus::new(options)))
    }

    /// `memory://` or empty for in-process, `amqp://user:pass@host:port/vhost` for RabbitMQ.
    /// RabbitMQ connects lazily for publishing (an outage delays publishes, it does not stop
    /// the process); [`Bus::consume`] connects before it returns, so a consumer cannot start
    /// while the broker is unreachable.
    pub fn connect(url: Option<&str>, options: BusOptions) -> Result<Self> {
        match url {
            None | Some("") | Some("memory://") => Ok(Self::memory(options)),
            Some(u) if u.starts_with("amqp://") => Ok(Bus::Rabbit(Arc::new(rabbit::RabbitBus::new(u, options)?))),
            Some(u) => Err(BusError::UnsupportedUrl(u.to_string())),
        }
    }

    /// Publishes a domain event; returns once the broker has confirmed it.
    pub async fn publish(&self, envelope: &Envelope) -> Result<()> {
        match self {
            Bus::Memory(b) => b.publish(envelope),
            Bus::Rabbit(b) => b.publish(envelope).await,
        }
    }

    /// Puts a job on a durable work queue; returns once the broker has confirmed it.
    pub async fn enqueue(&self, queue: &str, envelope: &Envelope) -> Result<()> {
        let queue = &self.queue(queue);
        match self {
            Bus::Memory(b) => b.enqueue(queue, envelope),
            Bus::Rabbit(b) => b.enqueue(queue, envelope).await,
        }
    }

    /// Declares the queue with its bindings, retry and dead-letter queues, without consuming:
    /// a producer calls it so that messages published before any consumer runs are kept.
    pub async fn declare(&self, mut spec: QueueSpec) -> Result<()> {
        spec.name = self.queue(&spec.name);
        match self {
            Bus::Memory(b) => {
                b.declare(&spec);
                Ok(())
            }
            Bus::Rabbit(b) => b.declare_queue(&spec).await,
        }
    }

    /// Declares the queue (with its bindings, retry and dead-letter queues) and registers the
    /// consumer, then consumes it in the returned task until `shutdown`; the message in hand is
    /// finished first.
    ///
    /// Returns once the queue exists, is bound and the consumer is registered: a message
    /// published after it returns is handled, and a broker that cannot be reached (or refuses
    /// the topology) is the returned error. Later losses of the broker are the task's: it
    /// reconnects with backoff until `shutdown`.
    pub async fn consume(
        &self,
        mut spec: QueueSpec,
        handler: Handler,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>> {
        spec.name = self.queue(&spec.name);
        match self {
            Bus::Memory(b) => Ok(b.consume(spec, handler, shutdown)),
            Bus::Rabbit(b) => b.consume(spec, handler, shutdown).await,
        }
    }

    /// Removes and returns up to `max` messages from `queue`'s dead-letter queue.
    pub async fn take_dead_letters(&self, queue: &str, max: usize) -> Result<Vec<DeadLetter>> {
        let queue = &self.queue(queue);
        match self {
            Bus::Memory(b) => Ok(b.take_dead_letters(queue, max)),
            Bus::Rabbit(b) => b.take_dead_letters(queue, max).await,
        }
    }

    /// Deletes a consumed queue and its retry and dead-letter queues.
    pub async fn delete_queues(&self, queue: &str) -> Result<()> {
        let queue = &self.queue(queue);
        match self {
            Bus::Memory(b) => {
                b.delete_queue(queue);
                Ok(())
            }
            Bus::Rabbit(b) => b.delete_queues(queue).await,
        }
    }

    /// Publishes a transient message (progress) to every process's [`Bus::subscribe_transient`]:
    /// not persisted, not queued for absent subscribers, at most once.
    pub async fn publish_transient(&self, envelope: &Envelope) -> Result<()> {
        match self {
            Bus::Memory(b) => b.publish_transient(envelope),
            Bus::Rabbit(b) => b.publish_transient(envelope).await,
        }
    }

    /// Transient messages from every producer, from now on. One broker subscription per
    /// process, fanned out locally; a lagging receiver loses the oldest messages.
    pub fn subscribe_transient(&self) -> tokio::sync::broadcast::Receiver<Envelope> {
        match self {
            Bus::Memory(b) => b.subscribe_transient(),
            Bus::Rabbit(b) => b.subscribe_transient(),
        }
    }

    /// Readiness: the broker accepts a connection.
    pub async fn ping(&self) -> Result<()> {
        match self {
            Bus::Memory(_) => Ok(()),
            Bus::Rabbit(b) => b.ping().await,
        }
    }
}

/// Runs a handler so that a panic counts as a retryable failure instead of killing the
/// consumer.
pub(crate) async fn run_handler(
    queue: &str,
    handler: &Handler,
    delivery: Delivery,
) -> std::result::Result<(), HandlerError> {
    use tracing::Instrument as _;
    let span = trace::consumer_span(queue, &delivery.envelope);
    match tokio::spawn((handler)(delivery).instrument(span)).await {
        Ok(result) => result,
        Err(e) => Err(HandlerError::Retry(format!("handler panicked: {e}"))),
    }
}
