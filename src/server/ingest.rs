//! Group commit for the inbox. Every request hands its delivery to one writer task
//! and waits for the answer; the writer stores everything that queued up while the
//! previous commit was on its way to disk in a single statement, so N concurrent
//! deliveries cost one fsync instead of N — and no request is answered before its
//! delivery is durable.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::store::Store;
use crate::store::inbox::{self, InsertOutcome, NewDelivery};

/// How many deliveries may wait for the writer before requests wait to enqueue.
const QUEUE_DEPTH: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the inbox could not store the delivery: {0}")]
    Database(String),
    #[error("the inbox writer has stopped (the server is shutting down)")]
    Stopped,
}

struct Job {
    delivery: NewDelivery,
    reply: oneshot::Sender<Result<InsertOutcome, IngestError>>,
}

/// The receiver's side: cheap to clone, one per request.
#[derive(Clone, Debug)]
pub struct Ingest {
    queue: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("delivery_id", &self.delivery.delivery_id)
            .finish()
    }
}

impl Ingest {
    /// Starts the writer on its own connection. `stored` is notified after every
    /// commit that stored something new (the event loop waits on it).
    /// On `stop`, the writer stores what is already queued, refuses what comes
    /// after, and ends.
    pub fn start(
        store: Store,
        stored: Arc<Notify>,
        stop: CancellationToken,
    ) -> (Ingest, tokio::task::JoinHandle<()>) {
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        let writer = tokio::spawn(write_loop(store, jobs, stored, stop));
        (Ingest { queue }, writer)
    }

    /// Returns once the delivery is durably stored (or known from before).
    pub async fn store(&self, delivery: NewDelivery) -> Result<InsertOutcome, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { delivery, reply })
            .await
            .map_err(|_| IngestError::Stopped)?;
        answer.await.map_err(|_| IngestError::Stopped)?
    }
}

/// Runs until stopped (or every `Ingest` handle is gone) and the queue is drained,
/// so a graceful shutdown answers every request that was already queued.
async fn write_loop(
    store: Store,
    mut jobs: mpsc::Receiver<Job>,
    stored: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(inbox::MAX_INSERT_BATCH);
    loop {
        let received = tokio::select! {
            biased;
            n = jobs.recv_many(&mut batch, inbox::MAX_INSERT_BATCH) => {
                // Let requests that are ready right now reach the queue too, so that
                // under load one commit covers many of them.
                tokio::task::yield_now().await;
                while batch.len() < inbox::MAX_INSERT_BATCH {
                    match jobs.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                n.max(batch.len())
            }
            _ = stop.cancelled() => {
                // New senders now get `Stopped`; what is queued is still written.
                jobs.close();
                jobs.recv_many(&mut batch, inbox::MAX_INSERT_BATCH).await
            }
        };
        if received == 0 {
            break;
        }
        let deliveries: Vec<&NewDelivery> = batch.iter().map(|j| &j.delivery).collect();
        let result = store_batch(&store, &deliveries).await;
        drop(deliveries);
        match result {
            Ok(outcomes) => {
                if outcomes.contains(&InsertOutcome::Stored) {
                    stored.notify_one();
                }
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    // A requester that went away (client hung up) needs no answer;
                    // its delivery is stored all the same.
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let error = format!("{e:#}");
                tracing::error!(%error, deliveries = batch.len(), "inbox write failed; answering 503 so GitHub can redeliver");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(IngestError::Database(error.clone())));
                }
            }
        }
    }
}

/// One transaction, one commit, for the whole batch. PostgreSQL may abort it
/// when another server's batch and this one wait on each other; it is tried
/// again then (nothing of it was stored).
async fn store_batch(
    store: &Store,
    deliveries: &[&NewDelivery],
) -> anyhow::Result<Vec<InsertOutcome>> {
    let mut attempt = 1;
    loop {
        let result = async {
            let mut tx = store.begin_write().await?;
            let outcomes = inbox::insert_batch(&mut tx, deliveries).await?;
            tx.commit().await?;
            anyhow::Ok(outcomes)
        }
        .await;
        match result {
            Err(e) if attempt < 3 && crate::store::is_transient(&e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    attempt,
                    "inbox write collided with another server's; trying again"
                );
                attempt += 1;
            }
            other => return other,
        }
    }
}
