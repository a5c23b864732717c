//! The database: SQLite by default (one file, WAL), opened with the migrations in
//! `migrations/` applied. All SQL lives in this module and `inbox.rs`.

pub mod inbox;
pub mod missions;

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{Mutex, OwnedMutexGuard};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// One front door to the database.
///
/// Every write goes through one connection, shared behind a fair async mutex: the
/// webhook writer and the event loop take turns and are woken when it is their turn.
/// Two SQLite connections competing for the write lock would instead wait in
/// SQLite's busy handler, which sleeps for up to 100 ms between tries. Reads use the
/// pool (WAL readers never wait for the writer).
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    writer: Arc<Mutex<Writer>>,
}

#[derive(Debug)]
struct Writer {
    conn: SqliteConnection,
    /// A write transaction was begun and neither committed nor rolled back (its
    /// future was dropped, e.g. on shutdown); the next user rolls it back first.
    open: bool,
}

impl Store {
    /// Opens (creating if needed) the database at `url` and applies migrations.
    pub async fn open(url: &str) -> anyhow::Result<Store> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("invalid database URL {url:?}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before it returns, so a 2xx really means stored.
            // Group commit in the ingest writer keeps that affordable.
            .synchronous(SqliteSynchronous::Full)
            // 8 KiB pages: a 17 KB payload spans fewer pages than with 4 KiB ones, while
            // the small row and index pages a commit rewrites stay small. Measured with
            // bench/ingest.sh (16 KiB made small commits dearer). Applies to new files.
            .page_size(8 * 1024)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create database directory {}", dir.display()))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot open database {url:?}"))?;
        MIGRATOR
            .run(&pool)
            .await
            .context("cannot apply database migrations")?;
        // The writer never checkpoints inside a commit (that would stall whoever is
        // waiting for the lock); `checkpoint` does it from a read connection.
        let conn = options
            .pragma("wal_autocheckpoint", "0")
            .connect()
            .await
            .context("cannot open the database's write connection")?;
        Ok(Store {
            pool,
            writer: Arc::new(Mutex::new(Writer { conn, open: false })),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Readiness: can we run a statement right now?
    pub async fn ping(&self) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    /// Waits for the write connection and begins a transaction on it that holds
    /// SQLite's write lock from the start (`BEGIN IMMEDIATE`). Its commit is on disk
    /// when `commit` returns (fsync).
    pub async fn begin_write(&self) -> anyhow::Result<WriteTx> {
        self.begin(Durability::Synced).await
    }

    /// Like `begin_write`, but the commit is not fsynced itself: it becomes durable,
    /// in order, with the next synced commit or checkpoint (a WAL property). A crash
    /// of the process loses nothing; a power loss can lose the newest such commits
    /// whole. For work that is redone from durable input when lost, like the event
    /// loop's (handler writes and the "processed" mark go together). Not for a
    /// transaction whose commit is followed by an effect outside the database.
    pub async fn begin_write_deferred(&self) -> anyhow::Result<WriteTx> {
        self.begin(Durability::Deferred).await
    }

    async fn begin(&self, durability: Durability) -> anyhow::Result<WriteTx> {
        let mut writer = self.writer.clone().lock_owned().await;
        writer.roll_back_abandoned().await?;
        // One round trip: the durability setting applies to this transaction's commit.
        let begin = match durability {
            Durability::Synced => "PRAGMA synchronous = FULL; BEGIN IMMEDIATE",
            Durability::Deferred => "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE",
        };
        // Marked open before BEGIN is sent: if this future is dropped while BEGIN is
        // in flight, the next user still cleans up.
        writer.open = true;
        sqlx::raw_sql(begin)
            .execute(&mut writer.conn)
            .await
            .context("cannot begin a database transaction")?;
        Ok(WriteTx {
            writer: Some(writer),
        })
    }

    /// Copies committed WAL pages into the database file without waiting for, or
    /// blocking, readers and the writer (SQLite's PASSIVE checkpoint).
    pub async fn checkpoint(&self) -> anyhow::Result<()> {
        sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&self.pool)
            .await
            .context("WAL checkpoint failed")?;
        Ok(())
    }

    /// On shutdown: copies the WAL into the database file and empties it, so the
    /// next start does not have to replay it, then closes the connections.
    pub async fn close(&self) {
        {
            let mut writer = self.writer.lock().await;
            let _ = writer.roll_back_abandoned().await;
            if let Err(e) = sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut writer.conn)
                .await
            {
                tracing::warn!(error = %e, "final WAL checkpoint failed; the next start replays the WAL");
            }
        }
        self.pool.close().await;
    }
}

impl Writer {
    /// Rolls back a transaction left open by a dropped `WriteTx` or a failed commit.
    /// SQLite may have ended it already (a failed COMMIT, an I/O error); "no
    /// transaction is active" then means there is nothing to undo, not a failure
    /// that should make every later write fail too.
    async fn roll_back_abandoned(&mut self) -> anyhow::Result<()> {
        if !self.open {
            return Ok(());
        }
        match sqlx::raw_sql("ROLLBACK").execute(&mut self.conn).await {
            Ok(_) => {}
            Err(e) if e.to_string().contains("no transaction is active") => {}
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context("cannot roll back an abandoned transaction")
                );
            }
        }
        self.open = false;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Durability {
    Synced,
    Deferred,
}

/// A write transaction on the shared write connection. Dropped without `commit`, it
/// is rolled back at once by a task that keeps the connection until done: an open
/// transaction holds SQLite's write lock, which other connections (the CLI, another
/// server) would otherwise wait on.
pub struct WriteTx {
    /// `None` once committed.
    writer: Option<OwnedMutexGuard<Writer>>,
}

impl WriteTx {
    pub async fn commit(mut self) -> anyhow::Result<()> {
        let writer = self.writer.as_mut().expect("not yet committed");
        let result = sqlx::raw_sql("COMMIT").execute(&mut writer.conn).await;
        match result {
            Ok(_) => {
                writer.open = false;
                self.writer = None;
                Ok(())
            }
            // Still marked open: dropping `self` rolls it back.
            Err(e) => Err(anyhow::Error::new(e).context("cannot commit")),
        }
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        if !writer.open {
            return;
        }
        // Outside a runtime the next user of the connection rolls back instead.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = writer.roll_back_abandoned().await {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "cannot roll back an abandoned transaction"
                    );
                }
            });
        }
    }
}

impl Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.writer.as_ref().expect("not yet committed").conn
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.writer.as_mut().expect("not yet committed").conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(store.pool())
            .await
            .unwrap();
        (dir, store)
    }

    async fn insert(conn: &mut SqliteConnection, x: i64) {
        sqlx::query("INSERT INTO t VALUES (?)")
            .bind(x)
            .execute(conn)
            .await
            .unwrap();
    }

    /// What is committed in `t`.
    async fn values(store: &Store) -> Vec<i64> {
        sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(store.pool())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_write_dropped_without_commit_is_rolled_back_by_the_next_writer() {
        let (_dir, store) = temp_store().await;
        let mut tx = store.begin_write().await.unwrap();
        insert(&mut tx, 1).await;
        drop(tx); // e.g. the task was cancelled mid-transaction
        let mut tx = store.begin_write().await.unwrap();
        insert(&mut tx, 2).await;
        tx.commit().await.unwrap();
        assert_eq!(values(&store).await, [2]);
    }

    #[tokio::test]
    async fn a_transaction_sqlite_already_ended_does_not_wedge_the_writer() {
        let (_dir, store) = temp_store().await;
        let mut tx = store.begin_write().await.unwrap();
        // As a failed COMMIT or an I/O error would: the transaction is gone, the
        // flag still says open.
        sqlx::raw_sql("ROLLBACK").execute(&mut *tx).await.unwrap();
        drop(tx);
        let mut tx = store.begin_write().await.unwrap();
        insert(&mut tx, 3).await;
        tx.commit().await.unwrap();
        assert_eq!(values(&store).await, [3]);
    }

    #[tokio::test]
    async fn a_dropped_transaction_releases_the_database_for_other_connections() {
        let (dir, store) = temp_store().await;
        let mut tx = store.begin_write().await.unwrap();
        insert(&mut tx, 1).await;
        drop(tx);
        // Another Store (as the CLI or a second server would be) can write at once,
        // without this store writing again first.
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let other = Store::open(&url).await.unwrap();
        let mut tx = tokio::time::timeout(Duration::from_secs(5), other.begin_write())
            .await
            .expect("the write lock was released")
            .unwrap();
        insert(&mut tx, 2).await;
        tx.commit().await.unwrap();
        assert_eq!(values(&store).await, [2]);
    }

    #[tokio::test]
    async fn writers_take_turns_on_the_one_write_connection() {
        let (_dir, store) = temp_store().await;
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut tx = store.begin_write().await.unwrap();
                    insert(&mut tx, i).await;
                    tokio::task::yield_now().await;
                    tx.commit().await.unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(values(&store).await, (0..20).collect::<Vec<i64>>());
        store.checkpoint().await.unwrap();
    }
}
