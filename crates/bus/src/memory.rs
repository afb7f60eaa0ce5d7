//! In-process bus: the same semantics as the RabbitMQ adapter (topic routing, manual ack,
//! bounded retries with backoff, dead letters, redelivery of messages whose consumer died)
//! for one process, without persistence.

use crate::{BusOptions, DeadLetter, Delivery, Envelope, Handler, HandlerError, QueueSpec, run_handler, topic_matches};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct Message {
    envelope: Envelope,
    attempt: u32,
    redelivered: bool,
}

pub(crate) struct Queue {
    tx: mpsc::UnboundedSender<Message>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>,
    dead: Mutex<Vec<DeadLetter>>,
}

impl Queue {
    fn new() -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        Arc::new(Self { tx, rx: tokio::sync::Mutex::new(rx), dead: Mutex::new(Vec::new()) })
    }
}

pub struct MemoryBus {
    options: BusOptions,
    transient: tokio::sync::broadcast::Sender<Envelope>,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    bindings: Mutex<Vec<(String, String)>>,
}

/// Puts a message back on its queue if the consumer is dropped mid-message, like a broker
/// does when a consumer's connection dies before it acknowledged.
struct InFlight {
    message: Option<Message>,
    queue: Arc<Queue>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(mut m) = self.message.take() {
            m.redelivered = true;
            let _ = self.queue.tx.send(m);
        }
    }
}

impl MemoryBus {
    pub fn options(&self) -> &BusOptions {
        &self.options
    }

    pub fn new(options: BusOptions) -> Self {
        let (transient, _) = tokio::sync::broadcast::channel(crate::TRANSIENT_BUFFER);
        Self { options, transient, queues: Mutex::default(), bindings: Mutex::default() }
    }

    pub fn publish_transient(&self, envelope: &Envelope) -> crate::Result<()> {
        // No subscriber is not an error: transient messages are for whoever listens now.
        let _ = self.transient.send(envelope.clone());
        Ok(())
    }

    pub fn subscribe_transient(&self) -> tokio::sync::broadcast::Receiver<Envelope> {
        self.transient.subscribe()
    }

    fn queue(&self, name: &str) -> Arc<Queue> {
        self.queues.lock().expect("queues lock").entry(name.to_string()).or_insert_with(Queue::new).clone()
    }

    pub fn publish(&self, envelope: &Envelope) -> crate::Result<()> {
        let targets: Vec<String> = {
            let bindings = self.bindings.lock().expect("bindings lock");
            let mut names: Vec<String> = bindings
                .iter()
                .filter(|(pattern, _)| topic_matches(pattern, &envelope.r#type))
                .map(|(_, q)| q.clone())
                .collect();
            names.sort();
            names.dedup();
            names
        };
        for name in targets {
            let _ = self.queue(&name).tx.send(Message { envelope: envelope.clone(), attempt: 1, redelivered: false });
        }
        Ok(())
    }

    pub fn enqueue(&self, queue: &str, envelope: &Envelope) -> crate::Result<()> {
        let _ = self.queue(queue).tx.send(Message { envelope: envelope.clone(), attempt: 1, redelivered: false });
        Ok(())
    }

    /// Creates the queue and its bindings, so events published from now on are kept for it.
    pub(crate) fn declare(&self, spec: &QueueSpec) -> Arc<Queue> {
        let queue = self.queue(&spec.name);
        let mut bindings = self.bindings.lock().expect("bindings lock");
        for pattern in &spec.bindings {
            let binding = (pattern.clone(), spec.name.clone());
            if !bindings.contains(&binding) {
                bindings.push(binding);
            }
        }
        queue
    }

    pub fn consume(&self, spec: QueueSpec, handler: Handler, shutdown: CancellationToken) -> JoinHandle<()> {
        let queue = self.declare(&spec);
        let max_attempts = spec.attempts(&self.options);
        let options = self.options.clone();
        tokio::spawn(async move {
            loop {
                let message = {
                    let mut rx = queue.rx.lock().await;
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return,
                        m = rx.recv() => match m { Some(m) => m, None => return },
                    }
                };
                let delivery = Delivery {
                    envelope: message.envelope.clone(),
                    attempt: message.attempt,
                    redelivered: message.redelivered,
                };
                let mut in_flight = InFlight { message: Some(message), queue: queue.clone() };
                let outcome = run_handler(&spec.name, &handler, delivery).await;
                let message = in_flight.message.take().expect("message in flight");
                match outcome {
                    Ok(()) => {}
                    Err(HandlerError::Requeue(reason)) => {
                        tracing::info!(queue = %spec.name, attempt = message.attempt, reason = %reason, "message requeued");
                        let _ = queue.tx.send(Message { redelivered: true, ..message });
                    }
                    Err(HandlerError::Defer(reason)) => {
                        tracing::debug!(queue = %spec.name, attempt = message.attempt, reason = %reason, "message deferred");
                        let delay = options.retry_base;
                        let queue = queue.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = queue.tx.send(Message { redelivered: false, ..message });
                        });
                    }
                    Err(HandlerError::Retry(e)) if message.attempt < max_attempts => {
                        tracing::warn!(queue = %spec.name, attempt = message.attempt, error = %e, "handler failed; will retry");
                        let delay = options.backoff(message.attempt);
                        let queue = queue.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ =
                                queue.tx.send(Message { attempt: message.attempt + 1, redelivered: false, ..message });
                        });
                    }
                    Err(e) => {
                        tracing::error!(queue = %spec.name, attempt = message.attempt, error = %e, "message dead-lettered");
                        queue.dead.lock().expect("dead lock").push(DeadLetter {
                            envelope: Some(message.envelope),
                            error: e.to_string(),
                            attempts: message.attempt,
                        });
                    }
                }
            }
        })
    }

    pub fn delete_queue(&self, queue: &str) {
        self.queues.lock().expect("queues lock").remove(queue);
        self.bindings.lock().expect("bindings lock").retain(|(_, q)| q != queue);
    }

    pub fn take_dead_letters(&self, queue: &str, max: usize) -> Vec<DeadLetter> {
        let queue = self.queue(queue);
        let mut dead = queue.dead.lock().expect("dead lock");
        let n = dead.len().min(max);
        dead.drain(..n).collect()
    }
}
