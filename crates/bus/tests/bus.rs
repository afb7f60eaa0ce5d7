//! The bus against the in-process default and a real RabbitMQ: routing, manual ack,
//! bounded retries, dead letters, redelivery after a consumer dies, publish failures.

use flick_bus::{Bus, BusOptions, Delivery, HandlerError, QueueSpec, envelope, handler};
use flick_testkit::{TcpProxy, amqp_url, eventually, require, unique};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn options() -> BusOptions {
    BusOptions {
        exchange: "flick.test".into(),
        max_attempts: 3,
        retry_base: Duration::from_millis(50),
        confirm_timeout: Duration::from_secs(3),
        ..BusOptions::default()
    }
}

async fn rabbit() -> Bus {
    require("RabbitMQ", &amqp_url(), 5672).await;
    Bus::connect(Some(&amqp_url()), options()).unwrap()
}

fn memory() -> Bus {
    Bus::memory(options())
}

type Seen = Arc<Mutex<Vec<Delivery>>>;

fn recorder(seen: &Seen, fail_first: u32, reject: bool) -> flick_bus::Handler {
    let seen = seen.clone();
    handler(move |d: Delivery| {
        let seen = seen.clone();
        async move {
            let attempt = d.attempt;
            seen.lock().unwrap().push(d);
            if reject {
                return Err(HandlerError::Reject("poison".into()));
            }
            if attempt <= fail_first { Err(HandlerError::Retry(format!("failure {attempt}"))) } else { Ok(()) }
        }
    })
}

async fn wait_for(seen: &Seen, n: usize) -> bool {
    eventually(Duration::from_secs(10), || async { seen.lock().unwrap().len() >= n }).await
}

/// Takes the queue's dead letters, waiting up to 5 s for the first.
async fn dead_letters(bus: &Bus, queue: &str) -> Vec<flick_bus::DeadLetter> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = bus.take_dead_letters(queue, 10).await.unwrap();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops `task`'s consumer, then shows what `queue` still holds for a consumer: a fresh one
/// gets every message left (unacknowledged ones go back where they were), then a sentinel
/// enqueued now. Returns the subjects that fresh consumer saw, the sentinel's last, so
/// `["sentinel"]` proves every earlier message was acknowledged once and for all.
async fn left_after_stopping(
    bus: &Bus,
    queue: &str,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
) -> Vec<String> {
    stop.cancel();
    task.await.unwrap();
    let seen: Seen = Arc::default();
    let again = CancellationToken::new();
    let task = bus.consume(QueueSpec::work(queue), recorder(&seen, 0, false), again.clone()).await.unwrap();
    bus.enqueue(queue, &envelope("job", "sentinel", "test", vec![])).await.unwrap();
    let arrived = eventually(Duration::from_secs(10), || async {
        seen.lock().unwrap().iter().any(|d| d.envelope.subject == "sentinel")
    })
    .await;
    assert!(arrived, "the sentinel arrives");
    again.cancel();
    task.await.unwrap();
    seen.lock().unwrap().iter().map(|d| d.envelope.subject.clone()).collect()
}

async fn events_reach_queues_whose_patterns_match(bus: Bus) {
    let prefix = unique("t").replace('-', "");
    let queue = unique("q.routing");
    let seen: Seen = Arc::default();
    let stop = CancellationToken::new();
    let pattern = format!("{prefix}.video.*");
    // No wait between consume and publish: consume returns once the queue is bound.
    bus.consume(QueueSpec::events(&queue, &[&pattern]), recorder(&seen, 0, false), stop.clone()).await.unwrap();
    bus.publish(&envelope(&format!("{prefix}.user.deleted"), "u1", "test", vec![])).await.unwrap();
    let liked = envelope(&format!("{prefix}.video.liked"), "v1", "test", b"payload".to_vec());
    bus.publish(&liked).await.unwrap();
    assert!(wait_for(&seen, 1).await);
    // One queue, one consumer, in order: had the earlier non-matching event been routed
    // here, it would have arrived first.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "only the matching event arrives");
    assert_eq!(seen[0].envelope, liked, "the envelope arrives intact");
    assert_eq!(seen[0].attempt, 1);
    stop.cancel();
    bus.delete_queues(&queue).await.unwrap();
}

async fn acknowledged_jobs_are_processed_once(bus: Bus) {
    let queue = unique("q.work");
    let seen: Seen = Arc::default();
    let stop = CancellationToken::new();
    let task = bus.consume(QueueSpec::work(&queue), recorder(&seen, 0, false), stop.clone()).await.unwrap();
    for i in 0..5 {
        bus.enqueue(&queue, &envelope("transcode.requested", &format!("v{i}"), "test", vec![])).await.unwrap();
    }
    assert!(wait_for(&seen, 5).await);
    let subjects: Vec<String> = seen.lock().unwrap().iter().map(|d| d.envelope.subject.clone()).collect();
    assert_eq!(subjects, ["v0", "v1", "v2", "v3", "v4"], "each job once, in order");
    assert_eq!(left_after_stopping(&bus, &queue, stop, task).await, ["sentinel"], "every job was acknowledged");
    assert_eq!(seen.lock().unwrap().len(), 5, "no job is delivered twice");
    bus.delete_queues(&queue).await.unwrap();
}

async fn failing_messages_are_retried_with_backoff_then_succeed(bus: Bus) {
    let queue = unique("q.retry");
    let seen: Seen = Arc::default();
    let stop = CancellationToken::new();
    let task = bus.consume(QueueSpec::work(&queue), recorder(&seen, 2, false), stop.clone()).await.unwrap();
    let started = Instant::now();
    bus.enqueue(&queue, &envelope("job", "x", "test", vec![])).await.unwrap();
    assert!(wait_for(&seen, 3).await);
    let attempts: Vec<u32> = seen.lock().unwrap().iter().map(|d| d.attempt).collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert!(started.elapsed() >= Duration::from_millis(150), "backoff 50 ms + 100 ms was respected");
    assert_eq!(left_after_stopping(&bus, &queue, stop, task).await, ["sentinel"], "the success was acknowledged");
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert!(bus.take_dead_letters(&queue, 10).await.unwrap().is_empty());
    bus.delete_queues(&queue).await.unwrap();
}

async fn a_message_failing_every_attempt_lands_in_the_dead_letter_queue(bus: Bus) {
    let queue = unique("q.dlq");
    let seen: Seen = Arc::default();
    let stop = CancellationToken::new();
    let task = bus.consume(QueueSpec::work(&queue), recorder(&seen, u32::MAX, false), stop.clone()).await.unwrap();
    let job = envelope("job", "poison", "test", vec![1, 2, 3]);
    bus.enqueue(&queue, &job).await.unwrap();
    assert!(wait_for(&seen, 3).await);
    let dead = dead_letters(&bus, &queue).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].envelope.as_ref(), Some(&job));
    assert_eq!(dead[0].attempts, 3);
    assert!(dead[0].error.contains("failure 3"), "{}", dead[0].error);
    assert_eq!(left_after_stopping(&bus, &queue, stop, task).await, ["sentinel"], "the last attempt was acknowledged");
    assert_eq!(seen.lock().unwrap().len(), 3, "exactly max_attempts deliveries");
    bus.delete_queues(&queue).await.unwrap();
}

async fn rejected_messages_skip_retries(bus: Bus) {
    let queue = unique("q.reject");
    let seen: Seen = Arc::default();
    let stop = CancellationToken::new();
    let task = bus.consume(QueueSpec::work(&queue), recorder(&seen, 0, true), stop.clone()).await.unwrap();
    bus.enqueue(&queue, &envelope("job", "bad", "test", vec![])).await.unwrap();
    assert!(wait_for(&seen, 1).await);
    let dead = dead_letters(&bus, &queue).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1);
    assert!(dead[0].error.contains("poison"), "{}", dead[0].error);
    assert_eq!(left_after_stopping(&bus, &queue, stop, task).await, ["sentinel"], "the rejection was acknowledged");
    assert_eq!(seen.lock().unwrap().len(), 1);
    bus.delete_queues(&queue).await.unwrap();
}

/// A handler that reports the message it got and then never finishes.
fn stuck(got: Arc<tokio::sync::Notify>) -> flick_bus::Handler {
    handler(move |_d: Delivery| {
        let got = got.clone();
        async move {
            got.notify_one();
            std::future::pending::<()>().await;
            Ok(())
        }
    })
}

#[tokio::test]
async fn memory_events_reach_queues_whose_patterns_match() {
    events_reach_queues_whose_patterns_match(memory()).await;
}
#[tokio::test]
async fn rabbitmq_events_reach_queues_whose_patterns_match() {
    events_reach_queues_whose_patterns_match(rabbit().await).await;
}
#[tokio::test]
async fn memory_acknowledged_jobs_are_processed_once() {
    acknowledged_jobs_are_processed_once(memory()).await;
}
#[tokio::test]
async fn rabbitmq_acknowledged_jobs_are_processed_once() {
    acknowledged_jobs_are_processed_once(rabbit().await).await;
}
#[tokio::test]
async fn memory_failing_messages_are_retried_with_backoff() {
    failing_messages_are_retried_with_backoff_then_succeed(memory()).await;
}
#[tokio::test]
async fn rabbitmq_failing_messages_are_retried_with_backoff() {
    failing_messages_are_retried_with_backoff_then_succeed(rabbit().await).await;
}
#[tokio::test]
async fn memory_message_failing_every_attempt_is_dead_lettered() {
    a_message_failing_every_attempt_lands_in_the_dead_letter_queue(memory()).await;
}
#[tokio::test]
async fn rabbitmq_message_failing_every_attempt_is_dead_lettered() {
    a_message_failing_every_attempt_lands_in_the_dead_letter_queue(rabbit().await).await;
}
#[tokio::test]
async fn memory_rejected_messages_skip_retries() {
    rejected_messages_skip_retries(memory()).await;
}
#[tokio::test]
async fn rabbitmq_rejected_messages_skip_retries() {
    rejected_messages_skip_retries(rabbit().await).await;
}

#[tokio::test]
async fn rabbitmq_consumer_killed_mid_message_gets_it_redelivered() {
    require("RabbitMQ", &amqp_url(), 5672).await;
    let queue = unique("q.kill");
    // The doomed consumer reaches the broker through a proxy, so cutting the proxy is what
    // the broker sees when a worker process dies: its TCP connection drops.
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let doomed = Bus::connect(Some(&proxy.rewrite(&amqp_url())), options()).unwrap();
    let got = Arc::new(tokio::sync::Notify::new());
    let stop_doomed = CancellationToken::new();
    let doomed_task = doomed.consume(QueueSpec::work(&queue), stuck(got.clone()), stop_doomed.clone()).await.unwrap();
    let publisher = rabbit().await;
    let job = envelope("job", "survivor", "test", vec![]);
    publisher.enqueue(&queue, &job).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), got.notified()).await.expect("the doomed consumer got the job");
    proxy.cut();
    doomed_task.abort();

    let seen: Seen = Arc::default();
    let stop = CancellationToken::new();
    publisher.consume(QueueSpec::work(&queue), recorder(&seen, 0, false), stop.clone()).await.unwrap();
    assert!(wait_for(&seen, 1).await, "the job is redelivered to a live consumer");
    let delivery = seen.lock().unwrap()[0].clone();
    assert_eq!(delivery.envelope, job);
    assert!(delivery.redelivered, "the broker marks it redelivered");
    stop.cancel();
    stop_doomed.cancel();
    publisher.delete_queues(&queue).await.unwrap();
}

#[tokio::test]
async fn memory_consumer_killed_mid_message_gets_it_redelivered() {
    let bus = memory();
    let queue = unique("q.kill");
    let got = Arc::new(tokio::sync::Notify::new());
    let doomed = bus.consume(QueueSpec::work(&queue), stuck(got.clone()), CancellationToken::new()).await.unwrap();
    bus.enqueue(&queue, &envelope("job", "survivor", "test", vec![])).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), got.notified()).await.unwrap();
    doomed.abort();
    let _ = doomed.await;
    let seen: Seen = Arc::default();
    bus.consume(QueueSpec::work(&queue), recorder(&seen, 0, false), CancellationToken::new()).await.unwrap();
    assert!(wait_for(&seen, 1).await);
    assert!(seen.lock().unwrap()[0].redelivered);
}

#[tokio::test]
async fn rabbitmq_publish_fails_fast_while_the_broker_is_unreachable_and_recovers() {
    require("RabbitMQ", &amqp_url(), 5672).await;
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let bus = Bus::connect(Some(&proxy.rewrite(&amqp_url())), options()).unwrap();
    bus.publish(&envelope("test.ping", "x", "test", vec![])).await.unwrap();
    proxy.cut();
    let started = Instant::now();
    assert!(bus.publish(&envelope("test.ping", "x", "test", vec![])).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(12), "failed within the confirm/connect timeouts");
    assert!(bus.ping().await.is_err());
    proxy.restore();
    bus.publish(&envelope("test.ping", "x", "test", vec![])).await.unwrap();
}

#[tokio::test]
async fn rabbitmq_consume_returns_the_error_when_the_broker_cannot_be_reached() {
    require("RabbitMQ", &amqp_url(), 5672).await;
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    proxy.cut();
    let bus = Bus::connect(Some(&proxy.rewrite(&amqp_url())), options()).unwrap();
    let queue = unique("q.unreachable");
    let seen: Seen = Arc::default();
    let started = Instant::now();
    let result = bus.consume(QueueSpec::work(&queue), recorder(&seen, 0, false), CancellationToken::new()).await;
    let error = result.expect_err("consume fails instead of starting a consumer that never binds");
    assert!(matches!(error, flick_bus::BusError::Unavailable(_)), "{error}");
    assert!(started.elapsed() < Duration::from_secs(8), "within the connect timeout");
}

#[tokio::test]
async fn rabbitmq_queue_prefixes_keep_environments_apart() {
    require("RabbitMQ", &amqp_url(), 5672).await;
    let prefixed =
        |p: &str| Bus::connect(Some(&amqp_url()), BusOptions { queue_prefix: format!("{p}."), ..options() }).unwrap();
    let (a, b) = (prefixed(&unique("env")), prefixed(&unique("env")));
    let (seen_a, seen_b): (Seen, Seen) = (Arc::default(), Arc::default());
    let stop = CancellationToken::new();
    a.consume(QueueSpec::work("jobs"), recorder(&seen_a, 0, false), stop.clone()).await.unwrap();
    b.consume(QueueSpec::work("jobs"), recorder(&seen_b, 0, false), stop.clone()).await.unwrap();
    a.enqueue("jobs", &envelope("job", "for-a", "test", vec![])).await.unwrap();
    assert!(wait_for(&seen_a, 1).await);
    // Enqueued after a's job was confirmed: had that job reached b's queue, it would come first.
    b.enqueue("jobs", &envelope("job", "for-b", "test", vec![])).await.unwrap();
    assert!(wait_for(&seen_b, 1).await);
    let subjects = |seen: &Seen| seen.lock().unwrap().iter().map(|d| d.envelope.subject.clone()).collect::<Vec<_>>();
    assert_eq!(subjects(&seen_a), ["for-a"]);
    assert_eq!(subjects(&seen_b), ["for-b"], "the same queue name in another environment stays apart");
    stop.cancel();
    a.delete_queues("jobs").await.unwrap();
    b.delete_queues("jobs").await.unwrap();
}

/// A queue may allow fewer attempts than the bus default (transcode jobs: 3 of 5).
async fn a_queue_with_its_own_attempt_limit_dead_letters_after_it(bus: Bus) {
    let queue = unique("q.limit");
    let seen: Seen = Arc::default();
    let stop = CancellationToken::new();
    let spec = QueueSpec::work(&queue).with_max_attempts(2).with_prefetch(1);
    let task = bus.consume(spec, recorder(&seen, u32::MAX, false), stop.clone()).await.unwrap();
    bus.enqueue(&queue, &envelope("job", "twice", "test", vec![])).await.unwrap();
    assert!(wait_for(&seen, 2).await);
    let dead = dead_letters(&bus, &queue).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(left_after_stopping(&bus, &queue, stop, task).await, ["sentinel"], "the last attempt was acknowledged");
    assert_eq!(seen.lock().unwrap().len(), 2, "the queue's own limit, not the bus's 3");
    bus.delete_queues(&queue).await.unwrap();
}

/// Transient messages reach every current subscriber, none are queued for later ones.
async fn transient_messages_reach_every_current_subscriber(bus: Bus) {
    let mut first = bus.subscribe_transient();
    let mut second = bus.subscribe_transient();
    // RabbitMQ binds the process's transient subscription in the background, and transient
    // messages published before that are lost by design: probe until both receivers get one.
    let probe = unique("probe");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut bound = false;
    while !bound && Instant::now() < deadline {
        bus.publish_transient(&envelope("transcode.progress", &probe, "test", vec![])).await.unwrap();
        bound = true;
        for rx in [&mut first, &mut second] {
            let got = tokio::time::timeout(Duration::from_millis(100), async {
                loop {
                    if rx.recv().await.unwrap().subject == probe {
                        return;
                    }
                }
            });
            bound &= got.await.is_ok();
        }
    }
    assert!(bound, "the transient subscription is bound");
    let subject = unique("v");
    let progress = envelope("transcode.progress", &subject, "test", b"50%".to_vec());
    bus.publish_transient(&progress).await.unwrap();
    for rx in [&mut first, &mut second] {
        let got = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let e = rx.recv().await.unwrap();
                if e.subject == subject {
                    return e;
                }
            }
        })
        .await
        .expect("the message arrives");
        assert_eq!(got, progress);
    }
}

#[tokio::test]
async fn memory_queue_with_its_own_attempt_limit_dead_letters_after_it() {
    a_queue_with_its_own_attempt_limit_dead_letters_after_it(memory()).await;
}
#[tokio::test]
async fn rabbitmq_queue_with_its_own_attempt_limit_dead_letters_after_it() {
    a_queue_with_its_own_attempt_limit_dead_letters_after_it(rabbit().await).await;
}
#[tokio::test]
async fn memory_transient_messages_reach_every_current_subscriber() {
    transient_messages_reach_every_current_subscriber(memory()).await;
}
#[tokio::test]
async fn rabbitmq_transient_messages_reach_every_current_subscriber() {
    transient_messages_reach_every_current_subscriber(rabbit().await).await;
}

/// A consumer that gives a message back (it is stopping) does not spend an attempt.
async fn a_requeued_message_comes_back_without_spending_an_attempt(bus: Bus) {
    let queue = unique("q.requeue");
    let seen: Seen = Arc::default();
    let stop = CancellationToken::new();
    let record = seen.clone();
    let h = handler(move |d: Delivery| {
        let seen = record.clone();
        async move {
            let first = {
                let mut seen = seen.lock().unwrap();
                seen.push(d);
                seen.len() == 1
            };
            if first { Err(HandlerError::Requeue("stopping".into())) } else { Ok(()) }
        }
    });
    let task = bus.consume(QueueSpec::work(&queue).with_max_attempts(1), h, stop.clone()).await.unwrap();
    bus.enqueue(&queue, &envelope("job", "again", "test", vec![])).await.unwrap();
    assert!(wait_for(&seen, 2).await);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].attempt, 1, "still the first attempt");
    assert!(seen[1].redelivered);
    // A dead letter is written (and confirmed) before the message is settled, so it would be
    // there by the time of the second delivery.
    assert!(bus.take_dead_letters(&queue, 10).await.unwrap().is_empty(), "a limit of 1 attempt was not spent");
    assert_eq!(
        left_after_stopping(&bus, &queue, stop, task).await,
        ["sentinel"],
        "the second delivery was acknowledged"
    );
    bus.delete_queues(&queue).await.unwrap();
}

#[tokio::test]
async fn memory_requeued_message_comes_back_without_spending_an_attempt() {
    a_requeued_message_comes_back_without_spending_an_attempt(memory()).await;
}
#[tokio::test]
async fn rabbitmq_requeued_message_comes_back_without_spending_an_attempt() {
    a_requeued_message_comes_back_without_spending_an_attempt(rabbit().await).await;
}

/// A deferred message (its work is held elsewhere, or must wait its turn) comes back after
/// `retry_base` with its attempt unchanged, however often it is deferred, and never lands in
/// the dead-letter queue; the consumer is free meanwhile, so a message behind it goes first.
async fn a_deferred_message_comes_back_later_without_spending_an_attempt(bus: Bus) {
    let queue = unique("q.defer");
    let seen: Arc<Mutex<Vec<(String, u32, Instant)>>> = Arc::default();
    let record = seen.clone();
    let h = handler(move |d: Delivery| {
        let seen = record.clone();
        async move {
            let deferred = {
                let mut seen = seen.lock().unwrap();
                seen.push((d.envelope.subject.clone(), d.attempt, Instant::now()));
                d.envelope.subject == "held" && seen.iter().filter(|(s, _, _)| s == "held").count() <= 3
            };
            if deferred { Err(HandlerError::Defer("held elsewhere".into())) } else { Ok(()) }
        }
    });
    let spec = QueueSpec::work(&queue).with_max_attempts(1).with_prefetch(1);
    bus.declare(spec.clone()).await.unwrap();
    let stop = CancellationToken::new();
    bus.consume(spec, h, stop.clone()).await.unwrap();
    bus.enqueue(&queue, &envelope("job", "held", "test", vec![])).await.unwrap();
    bus.enqueue(&queue, &envelope("job", "behind", "test", vec![])).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            seen.lock().unwrap().iter().filter(|(s, _, _)| s == "held").count() >= 4
        })
        .await,
        "the deferred message came back until it was taken: {:?}",
        seen.lock().unwrap()
    );
    let seen = seen.lock().unwrap().clone();
    let held: Vec<_> = seen.iter().filter(|(s, _, _)| s == "held").collect();
    assert!(held.iter().all(|(_, attempt, _)| *attempt == 1), "no attempt spent: {seen:?}");
    for pair in held.windows(2) {
        assert!(pair[1].2 - pair[0].2 >= Duration::from_millis(45), "back after retry_base, not at once: {seen:?}");
    }
    let behind = seen.iter().position(|(s, _, _)| s == "behind").expect("the message behind was handled");
    assert!(behind < seen.len() - 1, "the message behind did not wait for the deferred one: {seen:?}");
    // Had "held" been dead-lettered it would not have come back a fourth time, and "behind"
    // succeeded: nothing can be in the dead-letter queue.
    assert!(bus.take_dead_letters(&queue, 10).await.unwrap().is_empty(), "a limit of 1 attempt was not spent");
    stop.cancel();
    bus.delete_queues(&queue).await.unwrap();
}

#[tokio::test]
async fn memory_deferred_message_comes_back_later_without_spending_an_attempt() {
    a_deferred_message_comes_back_later_without_spending_an_attempt(memory()).await;
}
#[tokio::test]
async fn rabbitmq_deferred_message_comes_back_later_without_spending_an_attempt() {
    a_deferred_message_comes_back_later_without_spending_an_attempt(rabbit().await).await;
}

/// Traces spans (without exporting them) and propagates W3C trace context, as
/// `flick_kit::telemetry::init` does with an OTLP endpoint. Once per test process.
fn trace_spans() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();
    });
}

fn trace_id(span: &tracing::Span) -> opentelemetry::trace::TraceId {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    span.context().span().span_context().trace_id()
}

/// A handler that reports the trace its work runs in.
fn trace_reporter(tx: tokio::sync::mpsc::UnboundedSender<opentelemetry::trace::TraceId>) -> flick_bus::Handler {
    handler(move |_d: Delivery| {
        let tx = tx.clone();
        async move {
            tx.send(trace_id(&tracing::Span::current())).unwrap();
            Ok(())
        }
    })
}

async fn consumers_continue_the_trace_of_the_work_that_sent_the_message(bus: Bus) {
    use opentelemetry::trace::TraceId;
    trace_spans();
    let prefix = unique("t").replace('-', "");
    let (jobs, events) = (unique("q.traced-jobs"), unique("q.traced-events"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    bus.consume(QueueSpec::work(&jobs), trace_reporter(tx.clone()), stop.clone()).await.unwrap();
    let pattern = format!("{prefix}.video.*");
    bus.consume(QueueSpec::events(&events, &[&pattern]), trace_reporter(tx), stop.clone()).await.unwrap();
    let mut next = async || tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();

    let request = tracing::info_span!("request");
    let request_trace = trace_id(&request);
    assert_ne!(request_trace, TraceId::INVALID);
    let (job, event) = {
        let _in_request = request.enter();
        (
            envelope("transcode.requested", "v1", "test", vec![]),
            envelope(&format!("{prefix}.video.liked"), "v1", "test", vec![]),
        )
    };
    assert!(job.trace_context["traceparent"].contains(&request_trace.to_string()), "{:?}", job.trace_context);
    bus.enqueue(&jobs, &job).await.unwrap();
    assert_eq!(next().await, request_trace, "a job's worker works in the trace of the request that queued it");
    bus.publish(&event).await.unwrap();
    assert_eq!(next().await, request_trace, "an event's consumer works in the trace of the request that emitted it");

    // Sent outside any trace: the consumer starts a trace of its own, not someone else's.
    let untraced = envelope("transcode.requested", "v2", "test", vec![]);
    assert!(untraced.trace_context.is_empty());
    bus.enqueue(&jobs, &untraced).await.unwrap();
    let own = next().await;
    assert!(own != TraceId::INVALID && own != request_trace);
    stop.cancel();
    bus.delete_queues(&jobs).await.unwrap();
    bus.delete_queues(&events).await.unwrap();
}

#[tokio::test]
async fn memory_consumers_continue_the_trace_of_the_work_that_sent_the_message() {
    consumers_continue_the_trace_of_the_work_that_sent_the_message(memory()).await;
}
#[tokio::test]
async fn rabbitmq_consumers_continue_the_trace_of_the_work_that_sent_the_message() {
    consumers_continue_the_trace_of_the_work_that_sent_the_message(rabbit().await).await;
}
