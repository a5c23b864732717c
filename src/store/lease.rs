//! Leases: work that one server of a fleet does at a time. A lease is a row
//! naming its holder and when it expires; its holder renews it well before
//! then, and when the holder dies (or loses the database for longer than the
//! lease lasts) it expires and another server takes it. Time is the servers'
//! wall clock: servers of one fleet are assumed to agree to well within a
//! lease's length (NTP).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Store;

/// The lease of the mission driver: inputs, effects and reconciliation.
pub const MISSION_DRIVER: &str = "mission-driver";

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// This process, as a lease holder: its host, process id and start time, so that
/// a restarted process on the same host is a new holder.
pub fn holder_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".to_owned());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{host}/{}/{nanos:08x}", std::process::id())
}

/// Takes the lease `name` for `holder` until `ttl` from now, or renews it if
/// `holder` has it. True when `holder` holds it now; false when another holder
/// has it and it has not expired.
pub async fn acquire(
    store: &Store,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> anyhow::Result<bool> {
    let now = wall_ms();
    let mut tx = store.begin_write().await?;
    let taken: Option<String> = sqlx::query_scalar(
        "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE leases.holder = excluded.holder OR leases.expires_at < $4 \
         RETURNING holder",
    )
    .bind(name)
    .bind(holder)
    .bind(now + ttl.as_millis() as i64)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(taken.is_some())
}

/// Gives the lease up at once (on shutdown), so that another server need not
/// wait for it to expire. Nothing happens if `holder` does not hold it.
pub async fn release(store: &Store, name: &str, holder: &str) -> anyhow::Result<()> {
    let mut tx = store.begin_write().await?;
    sqlx::query("UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Fails unless `holder` holds the lease `name` now, and (on PostgreSQL) locks
/// its row until the transaction ends, so that it cannot change hands before
/// this transaction commits. Every write of the work under a lease runs this
/// first: a server that lost the lease while a step was under way (the
/// database was out of reach for longer than the lease) cannot record that
/// step's outcome over the new holder's work.
pub async fn fence(
    tx: &mut sqlx::AnyConnection,
    engine: super::Engine,
    name: &str,
    holder: &str,
) -> anyhow::Result<()> {
    // SQLite's BEGIN IMMEDIATE already keeps every other writer out.
    let sql = match engine {
        super::Engine::Postgres => {
            "SELECT holder FROM leases WHERE name = $1 AND holder = $2 AND expires_at > $3 FOR UPDATE"
        }
        super::Engine::Sqlite => {
            "SELECT holder FROM leases WHERE name = $1 AND holder = $2 AND expires_at > $3"
        }
    };
    let held: Option<String> = sqlx::query_scalar(sql)
        .bind(name)
        .bind(holder)
        .bind(wall_ms())
        .fetch_optional(&mut *tx)
        .await?;
    anyhow::ensure!(
        held.is_some(),
        "this server no longer holds the {name} lease (another server does that work now); the step is left to it"
    );
    Ok(())
}

/// Who holds the lease `name` now, if anyone (an expired lease is held by no one).
pub async fn holder(store: &Store, name: &str) -> anyhow::Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT holder FROM leases WHERE name = $1 AND expires_at >= $2")
            .bind(name)
            .bind(wall_ms())
            .fetch_optional(store.pool())
            .await?,
    )
}

/// Keeps trying to take, then to renew, the lease `name` every third of `ttl`,
/// until `stop`; the receiver says whether this process holds it. On stop the
/// lease is released. A renewal that fails (the database is unreachable) counts
/// as lost at once: the holder stops working before the lease can expire, so
/// that no two servers ever work under it together.
pub fn keep(
    store: Store,
    name: &'static str,
    holder: String,
    ttl: Duration,
    stop: CancellationToken,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (held, receiver) = watch::channel(false);
    let held = Arc::new(held);
    let task = tokio::spawn(async move {
        let every = ttl / 3;
        loop {
            // A renewal slower than a third of the lease counts as failed: the
            // lease may expire while it hangs.
            let renewal = tokio::time::timeout(every, acquire(&store, name, &holder, ttl)).await;
            let now_held = match renewal
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the database did not answer in time")))
            {
                Ok(taken) => taken,
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        lease = name,
                        "cannot renew a lease; stopping its work until it is renewed"
                    );
                    false
                }
            };
            let was_held = *held.borrow();
            if now_held != was_held {
                if now_held {
                    tracing::info!(lease = name, holder, "this server took the lease");
                } else {
                    tracing::warn!(lease = name, holder, "this server lost the lease");
                }
                held.send_replace(now_held);
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
        held.send_replace(false);
        if let Err(e) = release(&store, name, &holder).await {
            tracing::warn!(
                error = format!("{e:#}"),
                lease = name,
                "cannot release a lease; it expires on its own"
            );
        }
    });
    (receiver, task)
}
