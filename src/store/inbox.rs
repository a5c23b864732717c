//! The inbox: verified deliveries, stored before the 2xx and processed in arrival order.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use sqlx::{AnyConnection, AnyPool, Row};
use time::OffsetDateTime;

/// Most rows per multi-row INSERT: 6 bound values each stays far below SQLite's limit.
pub const MAX_INSERT_BATCH: usize = 256;

/// A verified delivery, as the receiver hands it to the store.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<i64>,
    pub repository: Option<String>,
    pub payload: bytes::Bytes,
    pub received_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Stored,
    /// The delivery id was stored before (GitHub redelivers with the same id).
    Duplicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Processed,
    Failed,
}

impl Status {
    fn parse(text: &str) -> Status {
        match text {
            "processed" => Status::Processed,
            "failed" => Status::Failed,
            _ => Status::Pending,
        }
    }
}

/// A stored delivery, as the event loop and the CLI see it.
#[derive(Debug, Clone)]
pub struct StoredDelivery {
    pub seq: i64,
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<i64>,
    pub repository: Option<String>,
    pub payload: Vec<u8>,
    pub received_at: OffsetDateTime,
    pub status: Status,
    pub attempts: u32,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InboxCounts {
    pub pending: u64,
    pub processed: u64,
    pub failed: u64,
}

pub fn to_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Stores a batch, inside the caller's transaction (one commit, one fsync for all of
/// it): the rows in one multi-row INSERT, then the payloads of those that were new.
/// Returns one outcome per input, in order. A delivery id repeated inside the batch
/// is stored once: its first occurrence is `Stored`, the others `Duplicate`.
pub async fn insert_batch(
    conn: &mut AnyConnection,
    batch: &[&NewDelivery],
) -> sqlx::Result<Vec<InsertOutcome>> {
    let mut outcomes = Vec::with_capacity(batch.len());
    // On PostgreSQL, another server may be inserting some of the same ids at
    // the same moment (a redelivery racing the original): inserting in one
    // agreed order (by id) means the two wait for each other rather than
    // deadlock. SQLite has one writer; there the rows keep arrival order.
    let sorted = conn.backend_name() == <sqlx::Postgres as sqlx::Database>::NAME;
    for chunk in batch.chunks(MAX_INSERT_BATCH) {
        let mut rows_in_order: Vec<&NewDelivery> = chunk.to_vec();
        if sorted {
            rows_in_order.sort_by(|a, b| a.delivery_id.cmp(&b.delivery_id));
        }
        let sql = format!(
            "INSERT INTO inbox (delivery_id, event, action, installation_id, repository, received_at) \
             VALUES {} ON CONFLICT (delivery_id) DO NOTHING RETURNING seq, delivery_id",
            super::value_rows(chunk.len(), 6, 1)
        );
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql));
        for d in &rows_in_order {
            rows = rows
                .bind(d.delivery_id.as_str())
                .bind(d.event.as_str())
                .bind(d.action.as_deref())
                .bind(d.installation_id)
                .bind(d.repository.as_deref())
                .bind(to_millis(d.received_at));
        }
        let inserted: HashMap<String, i64> = rows
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|row| (row.get::<String, _>(1), row.get::<i64, _>(0)))
            .collect();

        let mut new = Vec::with_capacity(inserted.len());
        let mut taken = HashSet::with_capacity(inserted.len());
        for d in chunk {
            match inserted.get(&d.delivery_id) {
                // The first occurrence in the batch carries the payload.
                Some(&seq) if taken.insert(seq) => {
                    new.push((seq, &d.payload[..]));
                    outcomes.push(InsertOutcome::Stored);
                }
                _ => outcomes.push(InsertOutcome::Duplicate),
            }
        }
        if !new.is_empty() {
            let sql = format!(
                "INSERT INTO inbox_payloads (seq, payload) VALUES {}",
                super::value_rows(new.len(), 2, 1)
            );
            let mut payloads = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (seq, payload) in &new {
                payloads = payloads.bind(*seq).bind(*payload);
            }
            payloads.execute(&mut *conn).await?;
        }
    }
    Ok(outcomes)
}

const SELECT_COLUMNS: &str = "inbox.seq AS seq, delivery_id, event, action, installation_id, \
     repository, payload, received_at, status, attempts, last_error";
/// Every delivery with its payload.
const FROM_INBOX: &str = "FROM inbox JOIN inbox_payloads ON inbox_payloads.seq = inbox.seq";

fn from_row(row: &sqlx::any::AnyRow) -> StoredDelivery {
    StoredDelivery {
        seq: row.get("seq"),
        delivery_id: row.get("delivery_id"),
        event: row.get("event"),
        action: row.get("action"),
        installation_id: row.get("installation_id"),
        repository: row.get("repository"),
        payload: row.get("payload"),
        received_at: from_millis(row.get("received_at")),
        status: Status::parse(row.get::<&str, _>("status")),
        attempts: row.get::<i64, _>("attempts") as u32,
        last_error: row.get("last_error"),
    }
}

/// Pending deliveries whose retry time has come, oldest first.
pub async fn due(
    db: impl sqlx::Executor<'_, Database = sqlx::Any>,
    now: OffsetDateTime,
    limit: u32,
) -> sqlx::Result<Vec<StoredDelivery>> {
    let sql = format!(
        "SELECT {SELECT_COLUMNS} {FROM_INBOX} \
         WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY inbox.seq LIMIT $2"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(to_millis(now))
        .bind(i64::from(limit))
        .fetch_all(db)
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// When the earliest pending delivery that is waiting for a retry becomes due.
pub async fn next_retry_at(pool: &AnyPool) -> sqlx::Result<Option<OffsetDateTime>> {
    let ms: Option<i64> =
        sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM inbox WHERE status = 'pending'")
            .fetch_one(pool)
            .await?;
    Ok(ms.map(from_millis))
}

/// Marks deliveries processed; call it in the transaction that holds the handlers'
/// writes. Only pending rows change; returns how many did.
pub async fn mark_processed(
    conn: &mut AnyConnection,
    seqs: &[i64],
    now: OffsetDateTime,
) -> sqlx::Result<u64> {
    if seqs.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "UPDATE inbox SET status = 'processed', attempts = attempts + 1, last_error = NULL, \
         finished_at = $1 WHERE status = 'pending' AND seq IN {}",
        super::value_rows(1, seqs.len(), 2)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(to_millis(now));
    for seq in seqs {
        query = query.bind(*seq);
    }
    Ok(query.execute(conn).await?.rows_affected())
}

/// What happens to a delivery whose handling failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    RetryAt(OffsetDateTime),
    Park,
}

pub async fn record_failure(
    conn: &mut AnyConnection,
    seq: i64,
    error: &str,
    action: FailureAction,
    now: OffsetDateTime,
) -> sqlx::Result<()> {
    let query = match action {
        FailureAction::RetryAt(at) => sqlx::query(
            "UPDATE inbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2 \
             WHERE seq = $3 AND status = 'pending'",
        )
        .bind(error)
        .bind(to_millis(at)),
        FailureAction::Park => sqlx::query(
            "UPDATE inbox SET attempts = attempts + 1, last_error = $1, status = 'failed', \
             finished_at = $2 WHERE seq = $3 AND status = 'pending'",
        )
        .bind(error)
        .bind(to_millis(now)),
    };
    query.bind(seq).execute(conn).await?;
    Ok(())
}

pub async fn counts(pool: &AnyPool) -> sqlx::Result<InboxCounts> {
    let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM inbox GROUP BY status")
        .fetch_all(pool)
        .await?;
    let mut counts = InboxCounts::default();
    for row in rows {
        let n = row.get::<i64, _>("n") as u64;
        match Status::parse(row.get::<&str, _>("status")) {
            Status::Pending => counts.pending = n,
            Status::Processed => counts.processed = n,
            Status::Failed => counts.failed = n,
        }
    }
    Ok(counts)
}

pub async fn get(pool: &AnyPool, delivery_id: &str) -> sqlx::Result<Option<StoredDelivery>> {
    let sql = format!("SELECT {SELECT_COLUMNS} {FROM_INBOX} WHERE delivery_id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(delivery_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// The newest deliveries first, optionally only those with one status.
pub async fn list(
    pool: &AnyPool,
    status: Option<Status>,
    limit: u32,
) -> sqlx::Result<Vec<StoredDelivery>> {
    let filter = match status {
        Some(Status::Pending) => "WHERE status = 'pending'",
        Some(Status::Processed) => "WHERE status = 'processed'",
        Some(Status::Failed) => "WHERE status = 'failed'",
        None => "",
    };
    let sql =
        format!("SELECT {SELECT_COLUMNS} {FROM_INBOX} {filter} ORDER BY inbox.seq DESC LIMIT $1");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Puts a parked delivery back in line, with a fresh attempt count.
/// Returns false when there is no failed delivery with that id.
pub async fn requeue_failed(pool: &AnyPool, delivery_id: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE inbox SET status = 'pending', attempts = 0, next_attempt_at = 0, finished_at = NULL \
         WHERE delivery_id = $1 AND status = 'failed'",
    )
    .bind(delivery_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How many deliveries wait to be handled, and when the oldest of them arrived
/// (unix milliseconds).
pub async fn pending_depth(pool: &AnyPool) -> sqlx::Result<(u64, Option<i64>)> {
    let (count, oldest): (i64, Option<i64>) =
        sqlx::query_as("SELECT COUNT(*), MIN(received_at) FROM inbox WHERE status = 'pending'")
            .fetch_one(pool)
            .await?;
    Ok((count as u64, oldest))
}
