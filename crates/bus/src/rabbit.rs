//! RabbitMQ adapter (amqprs).
//!
//! Topology per consumed queue `q`: the durable queue `q` (bound to the events exchange for
//! event queues), retry queues `q.retry.<delay>ms` whose messages expire back into `q`
//! through the default exchange, and the dead-letter queue `q.dlq`. The attempt number
//! travels in the `x-flick-attempt` header. Every publish, including retries and dead
//! letters, waits for the broker's confirm before the original is acknowledged.

use crate::{
    BusError, BusOptions, DeadLetter, Delivery, Envelope, Handler, HandlerError, QueueSpec, Result, run_handler,
};
use amqprs::callbacks::ChannelCallback;
use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicGetArguments, BasicNackArguments, BasicPublishArguments,
    BasicQosArguments, Channel, ConfirmSelectArguments, ExchangeDeclareArguments, QueueBindArguments,
    QueueDeclareArguments, QueueDeleteArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, FieldTable, FieldValue, Nack, Return};
use prost::Message as _;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The messages of one registered consumer.
type ConsumerRx = mpsc::UnboundedReceiver<amqprs::channel::ConsumerMessage>;

const ATTEMPT_HEADER: &str = "x-flick-attempt";
const ERROR_HEADER: &str = "x-flick-error";
const CONTENT_TYPE: &str = "application/x-protobuf; proto=flick.events.v1.Envelope";

pub struct RabbitBus {
    args: OpenConnectionArguments,
    options: BusOptions,
    publisher: tokio::sync::Mutex<Option<Confirmed>>,
    /// Work queues this process has declared already (enqueue declares on first use).
    declared: Mutex<HashSet<String>>,
    /// Local fan-out of the transient exchange; its broker consumer starts on first subscribe.
    transient: tokio::sync::broadcast::Sender<Envelope>,
    transient_started: std::sync::Once,
}

/// A channel in confirm mode with its outstanding publishes.
struct Confirmed {
    connection: Connection,
    channel: Channel,
    confirms: Arc<Mutex<Confirms>>,
}

#[derive(Default)]
struct Confirms {
    next_seq: u64,
    waiters: BTreeMap<u64, oneshot::Sender<bool>>,
}

impl Confirms {
    fn settle(&mut self, tag: u64, multiple: bool, ok: bool) {
        if multiple {
            let rest = self.waiters.split_off(&(tag + 1));
            for (_, w) in std::mem::replace(&mut self.waiters, rest) {
                let _ = w.send(ok);
            }
        } else if let Some(w) = self.waiters.remove(&tag) {
            let _ = w.send(ok);
        }
    }
}

struct ConfirmCallback(Arc<Mutex<Confirms>>);

#[async_trait::async_trait]
impl ChannelCallback for ConfirmCallback {
    async fn close(
        &mut self,
        _channel: &Channel,
        close: CloseChannel,
    ) -> std::result::Result<(), amqprs::error::Error> {
        tracing::warn!(reason = %close, "broker closed the channel");
        // Dropping the senders fails every outstanding publish.
        self.0.lock().expect("confirms lock").waiters.clear();
        Ok(())
    }
    async fn cancel(&mut self, _channel: &Channel, _cancel: Cancel) -> std::result::Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _channel: &Channel, active: bool) -> std::result::Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _channel: &Channel, ack: Ack) {
        self.0.lock().expect("confirms lock").settle(ack.delivery_tag(), ack.mutiple(), true);
    }
    async fn publish_nack(&mut self, _channel: &Channel, nack: Nack) {
        self.0.lock().expect("confirms lock").settle(nack.delivery_tag(), nack.multiple(), false);
    }
    async fn publish_return(&mut self, _channel: &Channel, _ret: Return, _props: BasicProperties, _content: Vec<u8>) {}
}

impl Confirmed {
    async fn open(args: &OpenConnectionArguments) -> Result<Self> {
        let connection = Connection::open(args).await?;
        let channel = connection.open_channel(None).await?;
        let confirms = Arc::new(Mutex::new(Confirms::default()));
        channel.register_callback(ConfirmCallback(confirms.clone())).await?;
        channel.confirm_select(ConfirmSelectArguments::new(false)).await?;
        Ok(Self { connection, channel, confirms })
    }

    fn is_open(&self) -> bool {
        self.connection.is_open() && self.channel.is_open()
    }

    /// Sends one message and returns the receiver of its confirm.
    async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        props: BasicProperties,
        body: Vec<u8>,
    ) -> Result<oneshot::Receiver<bool>> {
        let (tx, rx) = oneshot::channel();
        {
            let mut c = self.confirms.lock().expect("confirms lock");
            c.next_seq += 1;
            let seq = c.next_seq;
            c.waiters.insert(seq, tx);
        }
        self.channel.basic_publish(props, body, BasicPublishArguments::new(exchange, routing_key)).await?;
        Ok(rx)
    }
}

async fn await_confirm(rx: oneshot::Receiver<bool>, timeout: Duration) -> Result<()> {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(BusError::Nacked),
        Ok(Err(_)) => Err(BusError::Unavailable("channel closed before the confirm".into())),
        Err(_) => Err(BusError::ConfirmTimeout(timeout)),
    }
}

fn properties(envelope: &Envelope, attempt: u32, error: Option<&str>) -> BasicProperties {
    let mut headers = FieldTable::new();
    headers.insert(ATTEMPT_HEADER.try_into().expect("short header name"), FieldValue::I(attempt as i32));
    if let Some(e) = error {
        let e: String = e.chars().take(1000).collect();
        headers.insert(ERROR_HEADER.try_into().expect("short header name"), FieldValue::from(e));
    }
    // The trace context also travels as the conventional AMQP headers, for tools that read
    // them; consumers here take it from the envelope.
    for (key, value) in &envelope.trace_context {
        if let Ok(key) = key.as_str().try_into() {
            headers.insert(key, FieldValue::from(value.clone()));
        }
    }
    BasicProperties::default()
        .with_persistence(true)
        .with_content_type(CONTENT_TYPE)
        .with_message_id(&envelope.id)
        .with_message_type(&envelope.r#type)
        .with_app_id(&envelope.producer)
        .with_timestamp(u64::try_from(envelope.occurred_at_ms / 1000).unwrap_or_default())
        .with_headers(headers)
        .finish()
}

fn header_u32(props: &BasicProperties, name: &str) -> Option<u32> {
    let key = name.try_into().ok()?;
    match props.headers()?.get(&key)? {
        FieldValue::I(v) => u32::try_from(*v).ok(),
        FieldValue::l(v) => u32::try_from(*v).ok(),
        _ => None,
    }
}

fn header_string(props: &BasicProperties, name: &str) -> Option<String> {
    let key = name.try_into().ok()?;
    String::try_from(props.headers()?.get(&key)?.clone()).ok()
}

fn retry_queue(queue: &str, delay: Duration) -> String {
    format!("{queue}.retry.{}ms", delay.as_millis())
}

/// Where deferred messages wait (`retry_base`) before they expire back into `queue`. Named by
/// its delay, like the retry queues: a queue's TTL cannot change once declared, so processes
/// configured with another `retry_base` declare their own instead of failing on this one.
fn defer_queue(queue: &str, delay: Duration) -> String {
    format!("{queue}.defer.{}ms", delay.as_millis())
}

fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// `amqp://user:pass@host:port/vhost` → connection arguments.
fn parse_url(raw: &str, name: &str) -> Result<OpenConnectionArguments> {
    let url = url::Url::parse(raw).map_err(|e| BusError::UnsupportedUrl(format!("{raw}: {e}")))?;
    let host = url.host_str().unwrap_or("localhost");
    let port = url.port().unwrap_or(5672);
    let user = if url.username().is_empty() { "guest" } else { url.username() };
    let password = url.password().unwrap_or("guest");
    let mut args = OpenConnectionArguments::new(host, port, user, password);
    let vhost = url.path().trim_start_matches('/');
    let vhost = if vhost.is_empty() { "/".to_string() } else { vhost.replace("%2f", "/").replace("%2F", "/") };
    args.virtual_host(&vhost).connection_name(name).heartbeat(30);
    Ok(args)
}

impl RabbitBus {
    pub fn options(&self) -> &BusOptions {
        &self.options
    }

    pub fn new(url: &str, options: BusOptions) -> Result<Self> {
        Ok(Self {
            args: parse_url(url, &options.connection_name)?,
            options,
            publisher: tokio::sync::Mutex::new(None),
            declared: Mutex::new(HashSet::new()),
            transient: tokio::sync::broadcast::channel(crate::TRANSIENT_BUFFER).0,
            transient_started: std::sync::Once::new(),
        })
    }

    /// The non-durable topic exchange of transient messages (progress), beside the events one.
    fn transient_exchange(&self) -> String {
        format!("{}.transient", self.options.exchange)
    }

    pub async fn publish_transient(&self, envelope: &Envelope) -> Result<()> {
        let props = BasicProperties::default()
            .with_persistence(false)
            .with_content_type(CONTENT_TYPE)
            .with_message_id(&envelope.id)
            .with_message_type(&envelope.r#type)
            .finish();
        self.publish_raw(&self.transient_exchange(), &envelope.r#type, props, envelope.encode_to_vec(), None).await
    }

    pub fn subscribe_transient(self: &Arc<Self>) -> tokio::sync::broadcast::Receiver<Envelope> {
        let rx = self.transient.subscribe();
        self.transient_started.call_once(|| {
            let bus = self.clone();
            tokio::spawn(async move {
                let mut backoff = Duration::from_millis(200);
                loop {
                    match bus.forward_transient().await {
                        Ok(()) => backoff = Duration::from_millis(200),
                        Err(e) => tracing::warn!(error = %e, "transient subscription lost; reconnecting"),
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            });
        });
        rx
    }

    /// Consumes a server-named exclusive queue bound to the transient exchange until the
    /// connection drops, forwarding every message to the local subscribers.
    async fn forward_transient(&self) -> Result<()> {
        let connection = tokio::time::timeout(Duration::from_secs(5), Connection::open(&self.args))
            .await
            .map_err(|_| BusError::Unavailable("connecting to RabbitMQ timed out".into()))??;
        let channel = connection.open_channel(None).await?;
        let exchange = self.transient_exchange();
        channel.exchange_declare(ExchangeDeclareArguments::new(&exchange, "topic").durable(false).finish()).await?;
        let (queue, _, _) = channel
            .queue_declare(QueueDeclareArguments::exclusive_server_named())
            .await?
            .ok_or_else(|| BusError::Unavailable("no queue name from the broker".into()))?;
        channel.queue_bind(QueueBindArguments::new(&queue, &exchange, "#")).await?;
        let (_, mut rx) =
            channel.basic_consume_rx(BasicConsumeArguments::new(&queue, "").manual_ack(false).finish()).await?;
        while let Some(message) = rx.recv().await {
            if let Some(content) = message.content
                && let Ok(envelope) = Envelope::decode(content.as_slice())
            {
                let _ = self.transient.send(envelope);
            }
        }
        let _ = connection.close().await;
        Err(BusError::Unavailable("transient consumer channel closed".into()))
    }

    /// Publishes through the shared confirm channel, reopening it after a failure.
    async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        props: BasicProperties,
        body: Vec<u8>,
        declare: Option<&str>,
    ) -> Result<()> {
        let rx = {
            let mut guard = self.publisher.lock().await;
            if !guard.as_ref().is_some_and(Confirmed::is_open) {
                let fresh = tokio::time::timeout(Duration::from_secs(5), Confirmed::open(&self.args))
                    .await
                    .map_err(|_| BusError::Unavailable("connecting to RabbitMQ timed out".into()))??;
                fresh
                    .channel
                    .exchange_declare(
                        ExchangeDeclareArguments::new(&self.options.exchange, "topic").durable(true).finish(),
                    )
                    .await?;
                fresh
                    .channel
                    .exchange_declare(
                        ExchangeDeclareArguments::new(&self.transient_exchange(), "topic").durable(false).finish(),
                    )
                    .await?;
                self.declared.lock().expect("declared lock").clear();
                *guard = Some(fresh);
            }
            let publisher = guard.as_ref().expect("publisher is open");
            if let Some(queue) = declare {
                let known = self.declared.lock().expect("declared lock").contains(queue);
                if !known {
                    publisher.channel.queue_declare(QueueDeclareArguments::durable_client_named(queue)).await?;
                    self.declared.lock().expect("declared lock").insert(queue.to_string());
                }
            }
            match publisher.send(exchange, routing_key, props, body).await {
                Ok(rx) => rx,
                Err(e) => {
                    *guard = None;
                    return Err(e);
                }
            }
        };
        let result = await_confirm(rx, self.options.confirm_timeout).await;
        if result.is_err() {
            // The channel may be wedged: start over on the next publish.
            *self.publisher.lock().await = None;
        }
        result
    }

    pub async fn publish(&self, envelope: &Envelope) -> Result<()> {
        let props = properties(envelope, 1, None);
        self.publish_raw(&self.options.exchange, &envelope.r#type, props, envelope.encode_to_vec(), None).await
    }

    pub async fn enqueue(&self, queue: &str, envelope: &Envelope) -> Result<()> {
        let props = properties(envelope, 1, None);
        self.publish_raw("", queue, props, envelope.encode_to_vec(), Some(queue)).await
    }

    pub async fn ping(&self) -> Result<()> {
        let mut guard = self.publisher.lock().await;
        if guard.as_ref().is_some_and(Confirmed::is_open) {
            return Ok(());
        }
        let fresh = tokio::time::timeout(Duration::from_secs(2), Confirmed::open(&self.args))
            .await
            .map_err(|_| BusError::Unavailable("connecting to RabbitMQ timed out".into()))??;
        *guard = Some(fresh);
        Ok(())
    }

    /// Declares `spec`'s topology on a short-lived connection.
    pub async fn declare_queue(&self, spec: &QueueSpec) -> Result<()> {
        let connection = tokio::time::timeout(Duration::from_secs(5), Connection::open(&self.args))
            .await
            .map_err(|_| BusError::Unavailable("connecting to RabbitMQ timed out".into()))??;
        let channel = connection.open_channel(None).await?;
        let declared = self.declare(&channel, spec).await;
        let _ = channel.close().await;
        let _ = connection.close().await;
        declared
    }

    /// Declares `spec`'s queue with its retry and dead-letter queues.
    async fn declare(&self, channel: &Channel, spec: &QueueSpec) -> Result<()> {
        channel
            .exchange_declare(ExchangeDeclareArguments::new(&self.options.exchange, "topic").durable(true).finish())
            .await?;
        channel.queue_declare(QueueDeclareArguments::durable_client_named(&spec.name)).await?;
        for pattern in &spec.bindings {
            channel.queue_bind(QueueBindArguments::new(&spec.name, &self.options.exchange, pattern)).await?;
        }
        for attempt in 1..spec.attempts(&self.options) {
            let delay = self.options.backoff(attempt);
            let mut args = FieldTable::new();
            args.insert("x-message-ttl".try_into().expect("name"), FieldValue::l(delay.as_millis() as i64));
            args.insert("x-dead-letter-exchange".try_into().expect("name"), FieldValue::from(""));
            args.insert("x-dead-letter-routing-key".try_into().expect("name"), FieldValue::from(spec.name.as_str()));
            channel
                .queue_declare(
                    QueueDeclareArguments::durable_client_named(&retry_queue(&spec.name, delay))
                        .arguments(args)
                        .finish(),
                )
                .await?;
        }
        let mut args = FieldTable::new();
        args.insert(
            "x-message-ttl".try_into().expect("name"),
            FieldValue::l(self.options.retry_base.as_millis() as i64),
        );
        args.insert("x-dead-letter-exchange".try_into().expect("name"), FieldValue::from(""));
        args.insert("x-dead-letter-routing-key".try_into().expect("name"), FieldValue::from(spec.name.as_str()));
        channel
            .queue_declare(
                QueueDeclareArguments::durable_client_named(&defer_queue(&spec.name, self.options.retry_base))
                    .arguments(args)
                    .finish(),
            )
            .await?;
        channel.queue_declare(QueueDeclareArguments::durable_client_named(&dead_letter_queue(&spec.name))).await?;
        Ok(())
    }

    /// Connects, declares `spec`'s topology and registers the consumer before it returns (its
    /// error is the caller's); the returned task consumes until `shutdown`, reconnecting with
    /// backoff whenever the broker is lost.
    pub async fn consume(
        self: &Arc<Self>,
        spec: QueueSpec,
        handler: Handler,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>> {
        let first = self.open_consumer(&spec).await?;
        let bus = self.clone();
        Ok(tokio::spawn(async move {
            let mut session = Some(first);
            let mut backoff = Duration::from_millis(200);
            while !shutdown.is_cancelled() {
                let opened = match session.take() {
                    Some(open) => Ok(open),
                    None => bus.open_consumer(&spec).await,
                };
                let result = match opened {
                    Ok((side, rx)) => {
                        backoff = Duration::from_millis(200);
                        bus.run_consumer(side, rx, &spec, &handler, &shutdown).await
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(queue = %spec.name, error = %e, retry_in_ms = backoff.as_millis() as u64, "consumer lost the broker; reconnecting");
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }))
    }

    /// Opens a consumer's connection: confirm channel, `spec`'s topology, QoS, and the
    /// registered consumer, whose messages arrive on the returned receiver.
    async fn open_consumer(&self, spec: &QueueSpec) -> Result<(Confirmed, ConsumerRx)> {
        let connection = tokio::time::timeout(Duration::from_secs(5), Connection::open(&self.args))
            .await
            .map_err(|_| BusError::Unavailable("connecting to RabbitMQ timed out".into()))??;
        let channel = connection.open_channel(None).await?;
        let confirms = Arc::new(Mutex::new(Confirms::default()));
        channel.register_callback(ConfirmCallback(confirms.clone())).await?;
        channel.confirm_select(ConfirmSelectArguments::new(false)).await?;
        self.declare(&channel, spec).await?;
        channel.basic_qos(BasicQosArguments::new(0, spec.prefetch.unwrap_or(self.options.prefetch), false)).await?;
        let side = Confirmed { connection, channel, confirms };
        let (tag, rx) =
            side.channel.basic_consume_rx(BasicConsumeArguments::new(&spec.name, "").manual_ack(true).finish()).await?;
        tracing::info!(queue = %spec.name, consumer = %tag, "consuming");
        Ok((side, rx))
    }

    /// One connection's worth of consuming; returns Ok on shutdown, Err when the broker is lost.
    async fn run_consumer(
        &self,
        side: Confirmed,
        mut rx: ConsumerRx,
        spec: &QueueSpec,
        handler: &Handler,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        loop {
            let message = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    // Unacknowledged prefetched messages go back to the queue on close.
                    let _ = side.channel.close().await;
                    let _ = side.connection.close().await;
                    return Ok(());
                }
                m = rx.recv() => m,
            };
            let Some(message) = message else {
                return Err(BusError::Unavailable("consumer channel closed".into()));
            };
            let (Some(deliver), Some(props), Some(content)) =
                (message.deliver, message.basic_properties, message.content)
            else {
                continue;
            };
            let tag = deliver.delivery_tag();
            let attempt = header_u32(&props, ATTEMPT_HEADER).unwrap_or(1).max(1);
            let outcome = match Envelope::decode(content.as_slice()) {
                Ok(envelope) => {
                    let delivery = Delivery { envelope: envelope.clone(), attempt, redelivered: deliver.redelivered() };
                    (Some(envelope), run_handler(&spec.name, handler, delivery).await)
                }
                Err(e) => (None, Err(HandlerError::Reject(format!("undecodable envelope: {e}")))),
            };
            self.settle(&side, spec, tag, attempt, props, content, outcome).await?;
        }
    }

    /// Acks after success; otherwise schedules a retry or dead-letters, then acks. If the
    /// republish is not confirmed the original is requeued, so nothing is lost.
    #[expect(clippy::too_many_arguments, reason = "one delivery's parts, settled in one place")]
    async fn settle(
        &self,
        side: &Confirmed,
        spec: &QueueSpec,
        tag: u64,
        attempt: u32,
        props: BasicProperties,
        content: Vec<u8>,
        outcome: (Option<Envelope>, std::result::Result<(), HandlerError>),
    ) -> Result<()> {
        let (envelope, result) = outcome;
        if let Err(HandlerError::Requeue(reason)) = &result {
            tracing::info!(queue = %spec.name, attempt, reason = %reason, "message requeued");
            side.channel.basic_nack(BasicNackArguments::new(tag, false, true)).await?;
            return Ok(());
        }
        let republish = match result {
            Ok(()) => None,
            Err(HandlerError::Defer(reason)) => {
                tracing::debug!(queue = %spec.name, attempt, reason = %reason, "message deferred");
                let envelope = envelope.expect("deferred messages decoded");
                Some((defer_queue(&spec.name, self.options.retry_base), properties(&envelope, attempt, None)))
            }
            Err(HandlerError::Retry(e)) if attempt < spec.attempts(&self.options) => {
                let delay = self.options.backoff(attempt);
                tracing::warn!(queue = %spec.name, attempt, error = %e, retry_in_ms = delay.as_millis() as u64, "handler failed; will retry");
                let envelope = envelope.expect("retried messages decoded");
                Some((retry_queue(&spec.name, delay), properties(&envelope, attempt + 1, Some(&e))))
            }
            Err(e) => {
                tracing::error!(queue = %spec.name, attempt, error = %e, "message dead-lettered");
                let props = match &envelope {
                    Some(env) => properties(env, attempt, Some(&e.to_string())),
                    None => {
                        let mut headers = props.headers().cloned().unwrap_or_default();
                        headers.insert(ERROR_HEADER.try_into().expect("name"), FieldValue::from(e.to_string()));
                        props.clone().with_headers(headers).finish()
                    }
                };
                Some((dead_letter_queue(&spec.name), props))
            }
        };
        if let Some((queue, props)) = republish {
            let confirmed = match side.send("", &queue, props, content).await {
                Ok(rx) => await_confirm(rx, self.options.confirm_timeout).await,
                Err(e) => Err(e),
            };
            if let Err(e) = confirmed {
                side.channel.basic_nack(BasicNackArguments::new(tag, false, true)).await?;
                return Err(e);
            }
        }
        side.channel.basic_ack(BasicAckArguments::new(tag, false)).await?;
        Ok(())
    }

    /// Deletes `queue` with its retry and dead-letter queues (tests and admin clean-up).
    pub async fn delete_queues(&self, queue: &str) -> Result<()> {
        let connection = Connection::open(&self.args).await?;
        let channel = connection.open_channel(None).await?;
        let mut names = vec![queue.to_string(), dead_letter_queue(queue), defer_queue(queue, self.options.retry_base)];
        names.extend((1..self.options.max_attempts.max(1)).map(|a| retry_queue(queue, self.options.backoff(a))));
        for name in names {
            channel.queue_delete(QueueDeleteArguments::new(&name)).await?;
        }
        let _ = channel.close().await;
        let _ = connection.close().await;
        Ok(())
    }

    pub async fn take_dead_letters(&self, queue: &str, max: usize) -> Result<Vec<DeadLetter>> {
        let connection = Connection::open(&self.args).await?;
        let channel = connection.open_channel(None).await?;
        let dlq = dead_letter_queue(queue);
        channel.queue_declare(QueueDeclareArguments::durable_client_named(&dlq)).await?;
        let mut out = Vec::new();
        while out.len() < max {
            let Some((get_ok, props, content)) = channel.basic_get(BasicGetArguments::new(&dlq)).await? else {
                break;
            };
            out.push(DeadLetter {
                envelope: Envelope::decode(content.as_slice()).ok(),
                error: header_string(&props, ERROR_HEADER).unwrap_or_default(),
                attempts: header_u32(&props, ATTEMPT_HEADER).unwrap_or(1),
            });
            channel.basic_ack(BasicAckArguments::new(get_ok.delivery_tag(), false)).await?;
        }
        let _ = channel.close().await;
        let _ = connection.close().await;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_settle_single_and_multiple_tags() {
        let mut c = Confirms::default();
        let mut rxs = Vec::new();
        for seq in 1..=4 {
            let (tx, rx) = oneshot::channel();
            c.waiters.insert(seq, tx);
            rxs.push(rx);
        }
        c.settle(3, true, true);
        assert_eq!(c.waiters.keys().copied().collect::<Vec<_>>(), vec![4]);
        c.settle(4, false, false);
        let results: Vec<bool> = rxs.into_iter().map(|mut r| r.try_recv().unwrap()).collect();
        assert_eq!(results, vec![true, true, true, false]);
    }

    #[test]
    fn urls_become_connection_arguments() {
        let args = parse_url("amqp://flick:pw@mq.internal:5673/prod", "t").unwrap();
        assert_eq!(args.get_host(), "mq.internal");
        assert_eq!(args.get_port(), 5673);
        assert_eq!(args.get_virtual_host(), "prod");
        let args = parse_url("amqp://127.0.0.1", "t").unwrap();
        assert_eq!(args.get_virtual_host(), "/");
    }
}
