//! The event loop: takes due deliveries from the inbox in arrival order, parses
//! them into typed events, runs the handlers, and marks each delivery processed in
//! the same transaction as the handlers' writes. A crash at any point leaves a
//! delivery either fully handled or still pending — never half-done, never lost.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use sqlx::AnyConnection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::SharedClock;
use crate::config::RetryPolicy;
use crate::engine::handler::{DeliveryInfo, HandlerContext, HandlerRegistry};
use crate::github::events::{EventParseError, WebhookEvent};
use crate::store::Store;
use crate::store::inbox::{self, FailureAction, StoredDelivery};

/// Deliveries handled per transaction. Small enough that the write lock is held
/// briefly (the webhook receiver commits through the same lock).
const BATCH: u32 = 32;
/// Longest a handler may take by default. Handlers only write to the database
/// (effects on GitHub go through an outbox), so this is generous; a handler runs
/// while holding the write connection, so past it, ingest would stall.
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest idle wait; a safety net should a wake-up ever be missed.
const MAX_IDLE: Duration = Duration::from_secs(30);
/// Longest idle wait when servers share the database: a delivery another server
/// stored and did not live to handle wakes no one, so every server looks this often.
const SHARED_IDLE: Duration = Duration::from_secs(1);

/// What one pass over the inbox did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub processed: usize,
    pub retried: usize,
    pub parked: usize,
}

impl PassReport {
    pub fn total(&self) -> usize {
        self.processed + self.retried + self.parked
    }
}

pub struct EventLoop {
    store: Store,
    handlers: HandlerRegistry,
    retry: RetryPolicy,
    clock: SharedClock,
    wake: Arc<Notify>,
    handler_timeout: Duration,
    /// Bumped after every committed batch: lets watchers (tests, later the
    /// mission control page) react to handled deliveries without polling.
    progress: tokio::sync::watch::Sender<u64>,
}

enum Outcome {
    Processed,
    Retry,
    Parked,
}

impl EventLoop {
    pub fn new(
        store: Store,
        handlers: HandlerRegistry,
        retry: RetryPolicy,
        clock: SharedClock,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            handlers,
            retry,
            clock,
            wake,
            handler_timeout: HANDLER_TIMEOUT,
            progress: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Changes after every committed batch of handled deliveries.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.progress.subscribe()
    }

    pub fn with_handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = timeout;
        self
    }

    /// Handles every delivery that is due now, batch after batch, then returns.
    pub async fn run_until_idle(&self) -> anyhow::Result<PassReport> {
        self.run_pass(&CancellationToken::new()).await
    }

    /// Like `run_until_idle`, but stops between batches once `stop` is cancelled.
    async fn run_pass(&self, stop: &CancellationToken) -> anyhow::Result<PassReport> {
        let mut report = PassReport::default();
        loop {
            let (batch, full) = self.process_batch().await?;
            report.processed += batch.processed;
            report.retried += batch.retried;
            report.parked += batch.parked;
            if !full || stop.is_cancelled() {
                return Ok(report);
            }
        }
    }

    /// Runs until `shutdown` is cancelled. A batch in progress is finished first;
    /// a backlog is left pending for the next start.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        let mut checkpoints = CheckpointSchedule::default();
        // The earliest retry time among pending deliveries, as last read (None: unknown).
        let mut next_retry: Option<Option<time::OffsetDateTime>> = None;
        loop {
            let wait = match self.run_pass(&shutdown).await {
                Ok(pass) => {
                    failures = 0;
                    checkpoints.after_pass(&self.store, pass.total()).await;
                    // Ask the database for the next retry only when it can have changed.
                    let stale = match next_retry {
                        None => true,
                        Some(Some(at)) => at <= self.clock.now(),
                        Some(None) => false,
                    };
                    if pass.retried > 0 || stale {
                        next_retry = inbox::next_retry_at(self.store.pool()).await.ok();
                    }
                    self.wait_until_retry(next_retry.flatten())
                }
                Err(e) => {
                    // Database trouble: the deliveries stay pending; try again later.
                    failures += 1;
                    let wait = self.retry.delay_after(failures).min(MAX_IDLE);
                    tracing::error!(
                        error = format!("{e:#}"),
                        retry_in_ms = wait.as_millis() as u64,
                        "event loop pass failed"
                    );
                    wait
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!("event loop stopped");
    }

    /// How long to sleep when nothing is due: until the next retry, at most
    /// MAX_IDLE (new deliveries wake the loop sooner).
    fn wait_until_retry(&self, next_retry: Option<time::OffsetDateTime>) -> Duration {
        let longest = if self.store.is_shared() {
            SHARED_IDLE
        } else {
            MAX_IDLE
        };
        match next_retry {
            Some(at) => Duration::try_from(at - self.clock.now())
                .unwrap_or(Duration::ZERO)
                .min(longest),
            None => longest,
        }
    }

    /// Handles up to BATCH due deliveries; says whether the batch was full (so
    /// more may be due).
    async fn process_batch(&self) -> anyhow::Result<(PassReport, bool)> {
        let now = self.clock.now();
        let mut report = PassReport::default();
        let (due, tx) = if self.store.is_shared() {
            // Several servers: the inbox lock first, then what is still due, so
            // that no two servers handle a delivery and inputs keep arrival order.
            let mut tx = self.store.begin_write_deferred().await?;
            tx.lock_inbox().await?;
            let due = inbox::due(&mut *tx, now, BATCH).await?;
            (due, Some(tx))
        } else {
            // One server: read before taking the write lock, so that parsing
            // (pure CPU) does not hold up the webhook receiver's commits.
            (inbox::due(self.store.pool(), now, BATCH).await?, None)
        };
        let full = due.len() == BATCH as usize;
        if due.is_empty() {
            if let Some(tx) = tx {
                tx.commit().await?;
            }
            return Ok((report, full));
        }
        let parsed: Vec<_> = due
            .iter()
            .map(|d| WebhookEvent::parse(&d.event, &d.payload))
            .collect();
        // Not fsynced on its own: durable with the next synced commit. Should a power
        // loss drop it, its handler writes go with it and the deliveries, still
        // pending in the (synced) inbox, are handled again.
        let mut tx = match tx {
            Some(tx) => tx,
            None => self.store.begin_write_deferred().await?,
        };
        let mut processed = Vec::with_capacity(due.len());
        let mut outcomes = Vec::with_capacity(due.len());
        for (delivery, event) in due.iter().zip(parsed) {
            // Error level, so the span (and the delivery id on every line inside it)
            // exists whatever the log filter: warnings about a delivery need its id most.
            let span = tracing::error_span!(
                "delivery",
                delivery = %delivery.delivery_id,
                event = %delivery.event,
                action = delivery.action.as_deref().unwrap_or("-"),
            );
            let outcome = self
                .process_one(&mut tx, delivery, event)
                .instrument(span)
                .await?;
            let name = match outcome {
                Outcome::Processed => {
                    processed.push(delivery.seq);
                    "processed"
                }
                Outcome::Retry => {
                    report.retried += 1;
                    "retried"
                }
                Outcome::Parked => {
                    report.parked += 1;
                    "parked"
                }
            };
            outcomes.push((&delivery.event, name));
        }
        let marked = inbox::mark_processed(&mut tx, &processed, now).await?;
        // Only pending rows are marked. Fewer means another server on this database
        // finished some between our read and our write lock: drop the whole batch
        // (handler writes included) and read again.
        anyhow::ensure!(
            marked == processed.len() as u64,
            "another server handled some of this batch ({marked} of {} still pending); rolled back, reading again",
            processed.len()
        );
        tx.commit().await?;
        // Counted once committed: a batch rolled back is handled again.
        for (event, outcome) in outcomes {
            crate::metrics::delivery_handled(event, outcome);
        }
        self.progress.send_modify(|batches| *batches += 1);
        report.processed = processed.len();
        Ok((report, full))
    }

    /// Handles one delivery; on failure its handlers' writes are undone (see
    /// `HandlerContext::db`) and the failure is recorded.
    async fn process_one(
        &self,
        tx: &mut AnyConnection,
        delivery: &StoredDelivery,
        event: Result<WebhookEvent, EventParseError>,
    ) -> anyhow::Result<Outcome> {
        let now = self.clock.now();
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                // The same bytes will never parse: retrying cannot help.
                tracing::warn!(error = %e, "payload does not parse; parked as failed");
                inbox::record_failure(tx, delivery.seq, &e.to_string(), FailureAction::Park, now)
                    .await?;
                return Ok(Outcome::Parked);
            }
        };
        if !event.is_known() {
            tracing::debug!("event not used by the App; acknowledged and ignored");
            return Ok(Outcome::Processed);
        }

        let info = DeliveryInfo {
            seq: delivery.seq,
            delivery_id: delivery.delivery_id.clone(),
            event: delivery.event.clone(),
            action: delivery.action.clone(),
            attempt: delivery.attempts + 1,
        };
        let mut cx = HandlerContext::new(&info, tx);
        let result = self.run_handlers(&mut cx, &event).await;
        cx.finish(result.is_ok()).await?;
        let Err(error) = result else {
            return Ok(Outcome::Processed);
        };
        let attempt = info.attempt;
        if attempt >= self.retry.max_attempts {
            tracing::error!(%error, attempt, "handler failed; attempts exhausted, parked as failed (see `missions inbox`)");
            inbox::record_failure(tx, delivery.seq, &error, FailureAction::Park, now).await?;
            Ok(Outcome::Parked)
        } else {
            let delay = self.retry.delay_after(attempt);
            tracing::warn!(%error, attempt, retry_in_ms = delay.as_millis() as u64, "handler failed; will retry");
            let at = FailureAction::RetryAt(now + delay);
            inbox::record_failure(tx, delivery.seq, &error, at, now).await?;
            Ok(Outcome::Retry)
        }
    }

    /// Runs every handler in order; the first error (or panic) stops the rest.
    async fn run_handlers(
        &self,
        cx: &mut HandlerContext<'_>,
        event: &WebhookEvent,
    ) -> Result<(), String> {
        for handler in self.handlers.iter() {
            // A handler runs while the event loop holds the write connection the
            // webhook receiver also needs, so it gets a deadline.
            let run = AssertUnwindSafe(handler.handle(cx, event)).catch_unwind();
            match tokio::time::timeout(self.handler_timeout, run).await {
                Err(_) => {
                    return Err(format!(
                        "handler {} did not finish within {} ms",
                        handler.name(),
                        self.handler_timeout.as_millis()
                    ));
                }
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => return Err(format!("handler {}: {e:#}", handler.name())),
                Ok(Err(panic)) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    return Err(format!("handler {} panicked: {message}", handler.name()));
                }
            }
        }
        Ok(())
    }
}

/// When to copy the WAL into the database file. Each checkpoint costs an fsync of
/// the database file, so it runs after enough deliveries or time, not every pass.
#[derive(Debug)]
struct CheckpointSchedule {
    since_last: usize,
    last: std::time::Instant,
}

impl Default for CheckpointSchedule {
    fn default() -> Self {
        Self {
            since_last: 0,
            last: std::time::Instant::now(),
        }
    }
}

impl CheckpointSchedule {
    // Small and frequent under load: a large checkpoint competes with commits for
    // the disk and showed as 100-300 ms stalls; rare when quiet (measured).
    const EVERY_DELIVERIES: usize = 64;
    const EVERY: Duration = Duration::from_secs(1);

    async fn after_pass(&mut self, store: &Store, handled: usize) {
        self.since_last += handled;
        let due = self.since_last >= Self::EVERY_DELIVERIES
            || (self.since_last > 0 && self.last.elapsed() >= Self::EVERY);
        if !due {
            return;
        }
        match store.checkpoint().await {
            Ok(()) => {
                self.since_last = 0;
                self.last = std::time::Instant::now();
            }
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "WAL checkpoint failed; will try again"
            ),
        }
    }
}
