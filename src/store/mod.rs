//! The database: SQLite by default (one file, WAL), PostgreSQL when the URL says
//! `postgres://` (several servers sharing one database). Opened with the
//! engine's migrations (`migrations/sqlite`, `migrations/postgres`) applied.
//! All SQL lives in this module and its children; queries are written once,
//! with `$N` placeholders, which both engines accept, and run through sqlx's
//! `Any` driver. What differs between the engines is here and named: how a
//! write transaction begins and how durable its commit is, the WAL checkpoints
//! (SQLite), and the inbox lock (PostgreSQL).

pub mod inbox;
pub mod lease;
pub mod missions;
pub mod postgres_server;

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::AnyPoolOptions;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Connection};
use tokio::sync::{Mutex, OwnedMutexGuard};
#[cfg(test)]
use tokio_util::sync::CancellationToken;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The engine a database URL names, or an error saying which URLs work.
    pub fn of_url(url: &str) -> anyhow::Result<Engine> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Engine::Sqlite),
            "postgres" | "postgresql" => Ok(Engine::Postgres),
            _ => anyhow::bail!(
                "unsupported database URL {:?}: use sqlite://<file> (the default, one server) \
                 or postgres://<user>@<host>/<database> (several servers sharing one database)",
                redact_url(url)
            ),
        }
    }
}

/// A database URL with any password replaced (in the user part or a
/// `password=` parameter), safe for logs and errors.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            if parsed
                .query_pairs()
                .any(|(k, _)| k.eq_ignore_ascii_case("password"))
            {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k.eq_ignore_ascii_case("password") {
                            "***".to_owned()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        // Not a URL: say nothing of it beyond its scheme.
        Err(_) => format!("{}:…", url.split(':').next().unwrap_or_default()),
    }
}

/// One front door to the database.
///
/// On SQLite, every write goes through one connection, shared behind a fair async
/// mutex: the webhook writer and the event loop take turns and are woken when it
/// is their turn. Two SQLite connections competing for the write lock would
/// instead wait in SQLite's busy handler, which sleeps for up to 100 ms between
/// tries. Reads use the pool (WAL readers never wait for the writer).
///
/// On PostgreSQL, writes take a pooled connection each: the server orders
/// concurrent transactions itself, and other servers write to the same database
/// anyway. What must happen once across the fleet takes a lock or a lease
/// (`WriteTx::lock_inbox`, [`lease`]).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
    /// SQLite's one write connection; `None` on PostgreSQL.
    writer: Option<Arc<Mutex<Writer>>>,
}

#[derive(Debug)]
struct Writer {
    conn: AnyConnection,
    /// A write transaction was begun and neither committed nor rolled back (its
    /// future was dropped, e.g. on shutdown); the next user rolls it back first.
    open: bool,
}

impl Store {
    /// Opens (creating if needed, for SQLite) the database at `url` and applies
    /// migrations.
    pub async fn open(url: &str) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        match Engine::of_url(url)? {
            Engine::Sqlite => Self::open_sqlite(url).await,
            Engine::Postgres => Self::open_postgres(url).await,
        }
    }

    async fn open_sqlite(url: &str) -> anyhow::Result<Store> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("invalid database URL {url:?}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // 8 KiB pages: a 17 KB payload spans fewer pages than with 4 KiB ones, while
            // the small row and index pages a commit rewrites stay small. Measured with
            // bench/ingest.sh (16 KiB made small commits dearer). Applies to new files.
            .page_size(8 * 1024)
            .busy_timeout(Duration::from_secs(10));
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create database directory {}", dir.display()))?;
        }
        // Creates the file with its page size and WAL mode (both stay with the
        // file); the `Any` connections below open it by URL.
        options
            .connect()
            .await
            .with_context(|| format!("cannot open database {url:?}"))?
            .close()
            .await?;
        // Every connection, each time it opens: wait for locks rather than fail,
        // and enforce the foreign keys.
        const EACH_CONNECTION: &str =
            "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL";
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql(EACH_CONNECTION).execute(conn).await?;
                    Ok(())
                })
            })
            .connect(url)
            .await
            .with_context(|| format!("cannot open database {url:?}"))?;
        SQLITE_MIGRATOR
            .run(&pool)
            .await
            .context("cannot apply database migrations")?;
        let mut conn = AnyConnection::connect(url)
            .await
            .context("cannot open the database's write connection")?;
        // The writer never checkpoints inside a commit (that would stall whoever is
        // waiting for the lock); `checkpoint` does it from a read connection.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "{EACH_CONNECTION}; PRAGMA wal_autocheckpoint = 0"
        )))
        .execute(&mut conn)
        .await
        .context("cannot set up the database's write connection")?;
        Ok(Store {
            pool,
            engine: Engine::Sqlite,
            writer: Some(Arc::new(Mutex::new(Writer { conn, open: false }))),
        })
    }

    async fn open_postgres(url: &str) -> anyhow::Result<Store> {
        let shown = redact_url(url);
        // Every connection: a replica that vanishes without closing its socket
        // (power loss, a partition) must not hold the inbox lock, a lease's row
        // or a half-done insert for the kernel's default two hours. Its
        // connection is dropped after 30 s of silence (keepalives) or a minute
        // idle inside a transaction, and no one waits on a lock for more than
        // 30 s (they fail, and try again).
        const EACH_CONNECTION: &str = "SET idle_in_transaction_session_timeout = '60s'; \
             SET lock_timeout = '30s'; SET statement_timeout = '120s'; \
             SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; \
             SET tcp_keepalives_count = 3";
        let pool = AnyPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql(EACH_CONNECTION).execute(conn).await?;
                    Ok(())
                })
            })
            .connect(url)
            .await
            .with_context(|| {
                format!("cannot connect to PostgreSQL at {shown} (is the server running, and the database created?)")
            })?;
        // Several servers may start at once: the migrator takes PostgreSQL's
        // advisory lock, so one of them applies the migrations and the others
        // wait. Migrations newer than this binary's are allowed: during a
        // rolling upgrade an old replica may restart after a new one migrated
        // (migrations only add). The migrator's fields are sqlx's, pinned by
        // Cargo.lock.
        let mut migrator = sqlx::migrate::Migrator {
            migrations: POSTGRES_MIGRATOR.migrations.clone(),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        migrator.set_ignore_missing(true);
        migrator
            .run(&pool)
            .await
            .context("cannot apply database migrations")?;
        Ok(Store {
            pool,
            engine: Engine::Postgres,
            writer: None,
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Whether other servers may share this database (and so the work).
    pub fn is_shared(&self) -> bool {
        self.engine == Engine::Postgres
    }

    /// Readiness: can we run a statement right now?
    pub async fn ping(&self) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    /// Begins a write transaction; its commit is durable when `commit` returns
    /// (SQLite: fsync; PostgreSQL: `synchronous_commit` as the server has it).
    /// On SQLite it waits for the one write connection and holds SQLite's write
    /// lock from the start (`BEGIN IMMEDIATE`).
    pub async fn begin_write(&self) -> anyhow::Result<WriteTx> {
        self.begin(Durability::Synced).await
    }

    /// Like `begin_write`, but the commit is not flushed itself: it becomes durable,
    /// in order, with the next synced commit or checkpoint (SQLite's WAL;
    /// PostgreSQL's `synchronous_commit = off`). A crash of the process loses
    /// nothing; a power loss can lose the newest such commits whole. For work that
    /// is redone from durable input when lost, like the event loop's (handler
    /// writes and the "processed" mark go together). Not for a transaction whose
    /// commit is followed by an effect outside the database.
    pub async fn begin_write_deferred(&self) -> anyhow::Result<WriteTx> {
        self.begin(Durability::Deferred).await
    }

    async fn begin(&self, durability: Durability) -> anyhow::Result<WriteTx> {
        let Some(writer) = &self.writer else {
            let conn = self
                .pool
                .acquire()
                .await
                .context("cannot reach the database for a write")?;
            // Wrapped before BEGIN is sent: if this future is dropped while
            // BEGIN is in flight, dropping the `WriteTx` closes the connection
            // rather than handing it back to the pool inside a transaction.
            let mut tx = WriteTx {
                conn: Some(TxConn::Pooled(conn)),
                engine: self.engine,
            };
            let begin = match durability {
                Durability::Synced => "BEGIN",
                Durability::Deferred => "BEGIN; SET LOCAL synchronous_commit = off",
            };
            sqlx::raw_sql(begin)
                .execute(&mut *tx)
                .await
                .context("cannot begin a database transaction")?;
            return Ok(tx);
        };
        let mut writer = writer.clone().lock_owned().await;
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
            conn: Some(TxConn::Shared(writer)),
            engine: self.engine,
        })
    }

    /// Copies committed WAL pages into the database file without waiting for, or
    /// blocking, readers and the writer (SQLite's PASSIVE checkpoint). Nothing to
    /// do on PostgreSQL, which checkpoints itself.
    pub async fn checkpoint(&self) -> anyhow::Result<()> {
        if self.engine == Engine::Sqlite {
            sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&self.pool)
                .await
                .context("WAL checkpoint failed")?;
        }
        Ok(())
    }

    /// On shutdown: on SQLite, copies the WAL into the database file and empties
    /// it, so the next start does not have to replay it; then closes the
    /// connections.
    pub async fn close(&self) {
        if let Some(writer) = &self.writer {
            let mut writer = writer.lock().await;
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

/// Whether `error` is one PostgreSQL asks to retry: a deadlock (40P01) or a
/// serialization failure (40001) rolled the transaction back whole.
pub fn is_transient(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .and_then(|e| e.code())
            .is_some_and(|code| code == "40P01" || code == "40001")
    })
}

/// `($1, $2), ($3, $4), …`: `rows` groups of `columns` numbered placeholders
/// from `$first`, which both engines read (sqlx's query builder writes `?` for
/// the `Any` driver, which PostgreSQL does not).
pub(crate) fn value_rows(rows: usize, columns: usize, first: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(first + row * columns + column).to_string());
        }
        sql.push(')');
    }
    sql
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

/// A write transaction. Dropped without `commit`, it is rolled back: on SQLite
/// at once, by a task that keeps the write connection until done (an open
/// transaction holds SQLite's write lock, which other connections would wait
/// on); on PostgreSQL the connection is closed, which ends the transaction.
pub struct WriteTx {
    /// `None` once committed.
    conn: Option<TxConn>,
    engine: Engine,
}

enum TxConn {
    Shared(OwnedMutexGuard<Writer>),
    Pooled(PoolConnection<Any>),
}

impl WriteTx {
    pub async fn commit(mut self) -> anyhow::Result<()> {
        let result = sqlx::raw_sql("COMMIT").execute(&mut *self).await;
        match (result, self.conn.take().expect("not yet committed")) {
            (Ok(_), TxConn::Shared(mut writer)) => {
                writer.open = false;
                Ok(())
            }
            (Ok(_), TxConn::Pooled(_)) => Ok(()),
            (Err(e), conn) => {
                // Still marked open: dropping it rolls it back.
                self.conn = Some(conn);
                Err(anyhow::Error::new(e).context("cannot commit"))
            }
        }
    }

    /// PostgreSQL: waits for, and holds until this transaction ends, the lock
    /// that lets one server at a time handle inbox deliveries, so that every
    /// delivery is handled once and their inputs are recorded in arrival order
    /// across the fleet. On SQLite `BEGIN IMMEDIATE` already holds the only
    /// write lock.
    pub async fn lock_inbox(&mut self) -> anyhow::Result<()> {
        if self.engine == Engine::Postgres {
            // Any 64-bit key that no other lock of the App uses.
            sqlx::raw_sql("SELECT pg_advisory_xact_lock(7201000001)")
                .execute(&mut **self)
                .await
                .context("cannot take the inbox lock")?;
        }
        Ok(())
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        match self.conn.take() {
            None => {}
            Some(TxConn::Pooled(mut conn)) => {
                // Closing the connection ends the transaction on the server; it
                // is not handed to anyone else mid-transaction.
                conn.close_on_drop();
            }
            Some(TxConn::Shared(mut writer)) => {
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
    }
}

impl Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self.conn.as_ref().expect("not yet committed") {
            TxConn::Shared(writer) => &writer.conn,
            TxConn::Pooled(conn) => conn,
        }
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self.conn.as_mut().expect("not yet committed") {
            TxConn::Shared(writer) => &mut writer.conn,
            TxConn::Pooled(conn) => conn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh store on `engine` with a table `t`; `None` when PostgreSQL is
    /// skipped on purpose. The directory holds the SQLite file.
    async fn temp_store(engine: Engine) -> Option<(tempfile::TempDir, Store)> {
        let dir = tempfile::tempdir().unwrap();
        let url = match engine {
            Engine::Sqlite => format!("sqlite://{}", dir.path().join("t.db").display()),
            Engine::Postgres => postgres_server::test_database().await.unwrap()?,
        };
        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.engine(), engine);
        sqlx::query("CREATE TABLE t (x BIGINT)")
            .execute(store.pool())
            .await
            .unwrap();
        Some((dir, store))
    }

    async fn insert(conn: &mut AnyConnection, x: i64) {
        sqlx::query("INSERT INTO t VALUES ($1)")
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

    async fn a_write_dropped_without_commit_is_rolled_back(engine: Engine) {
        let Some((_dir, store)) = temp_store(engine).await else {
            return;
        };
        let mut tx = store.begin_write().await.unwrap();
        insert(&mut tx, 1).await;
        drop(tx); // e.g. the task was cancelled mid-transaction
        let mut tx = store.begin_write().await.unwrap();
        insert(&mut tx, 2).await;
        tx.commit().await.unwrap();
        assert_eq!(values(&store).await, [2]);
    }

    #[tokio::test]
    async fn a_write_dropped_without_commit_is_rolled_back_by_the_next_writer() {
        a_write_dropped_without_commit_is_rolled_back(Engine::Sqlite).await;
    }

    #[tokio::test]
    async fn a_write_dropped_without_commit_is_rolled_back_on_postgres() {
        a_write_dropped_without_commit_is_rolled_back(Engine::Postgres).await;
    }

    #[tokio::test]
    async fn a_transaction_sqlite_already_ended_does_not_wedge_the_writer() {
        let (_dir, store) = temp_store(Engine::Sqlite).await.unwrap();
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
        let (dir, store) = temp_store(Engine::Sqlite).await.unwrap();
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

    async fn writers_take_turns(engine: Engine) {
        let Some((_dir, store)) = temp_store(engine).await else {
            return;
        };
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

    #[tokio::test]
    async fn writers_take_turns_on_the_one_write_connection() {
        writers_take_turns(Engine::Sqlite).await;
    }

    #[tokio::test]
    async fn concurrent_writers_all_commit_on_postgres() {
        writers_take_turns(Engine::Postgres).await;
    }

    /// Two stores on one PostgreSQL database, as two servers are: the inbox
    /// lock lets one of them at a time through, and the second waits for the
    /// first to end its transaction.
    #[tokio::test]
    async fn the_inbox_lock_lets_one_server_at_a_time_through() {
        let Some((_dir, first)) = temp_store(Engine::Postgres).await else {
            return;
        };
        let mut holding = first.begin_write().await.unwrap();
        holding.lock_inbox().await.unwrap();
        insert(&mut holding, 1).await;
        let second = first.clone();
        let waiting = tokio::spawn(async move {
            let mut tx = second.begin_write().await.unwrap();
            tx.lock_inbox().await.unwrap();
            // By the time the lock is ours, the first transaction has committed.
            let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            insert(&mut tx, 2).await;
            tx.commit().await.unwrap();
            seen
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiting.is_finished(),
            "the second transaction waited for the lock"
        );
        holding.commit().await.unwrap();
        assert_eq!(waiting.await.unwrap(), 1);
        assert_eq!(values(&first).await, [1, 2]);
    }

    async fn a_lease_is_held_by_one_holder_until_it_expires(engine: Engine) {
        let Some((_dir, store)) = temp_store(engine).await else {
            return;
        };
        let ttl = Duration::from_millis(400);
        assert!(lease::acquire(&store, "work", "a", ttl).await.unwrap());
        assert!(
            !lease::acquire(&store, "work", "b", ttl).await.unwrap(),
            "b waits while a holds it"
        );
        assert!(
            lease::acquire(&store, "work", "a", ttl).await.unwrap(),
            "a renews"
        );
        assert!(
            lease::acquire(&store, "other", "b", ttl).await.unwrap(),
            "leases are independent"
        );
        assert_eq!(
            lease::holder(&store, "work").await.unwrap().as_deref(),
            Some("a")
        );
        // a dies: its lease expires and b takes it.
        tokio::time::sleep(ttl + Duration::from_millis(100)).await;
        assert_eq!(lease::holder(&store, "work").await.unwrap(), None);
        assert!(lease::acquire(&store, "work", "b", ttl).await.unwrap());
        assert!(
            !lease::acquire(&store, "work", "a", ttl).await.unwrap(),
            "a cannot take it back"
        );
        // Nor can a, still finishing a step it began while it held the lease,
        // write that step's outcome: its writes are fenced.
        let mut tx = store.begin_write().await.unwrap();
        let fenced = lease::fence(&mut tx, engine, "work", "a")
            .await
            .unwrap_err();
        assert!(fenced.to_string().contains("no longer holds"), "{fenced}");
        drop(tx);
        let mut tx = store.begin_write().await.unwrap();
        lease::fence(&mut tx, engine, "work", "b").await.unwrap();
        tx.commit().await.unwrap();
        // b shuts down cleanly and hands it over at once.
        lease::release(&store, "work", "b").await.unwrap();
        assert!(lease::acquire(&store, "work", "a", ttl).await.unwrap());
    }

    #[tokio::test]
    async fn a_lease_is_held_by_one_holder_until_it_expires_on_sqlite() {
        a_lease_is_held_by_one_holder_until_it_expires(Engine::Sqlite).await;
    }

    #[tokio::test]
    async fn a_lease_is_held_by_one_holder_until_it_expires_on_postgres() {
        a_lease_is_held_by_one_holder_until_it_expires(Engine::Postgres).await;
    }

    #[tokio::test]
    async fn of_many_keepers_exactly_one_holds_the_lease_and_another_takes_over_when_it_stops() {
        let Some((_dir, store)) = temp_store(Engine::Postgres).await else {
            return;
        };
        let ttl = Duration::from_millis(600);
        let stops: Vec<_> = (0..3).map(|_| CancellationToken::new()).collect::<Vec<_>>();
        let keepers: Vec<_> = stops
            .iter()
            .enumerate()
            .map(|(i, stop)| {
                lease::keep(
                    store.clone(),
                    "work",
                    format!("keeper-{i}"),
                    ttl,
                    stop.clone(),
                )
            })
            .collect();
        let holders = |keepers: &[(tokio::sync::watch::Receiver<bool>, _)]| {
            keepers.iter().filter(|(held, _)| *held.borrow()).count()
        };
        tokio::time::sleep(ttl).await;
        assert_eq!(holders(&keepers), 1);
        let first = keepers.iter().position(|(held, _)| *held.borrow()).unwrap();
        stops[first].cancel();
        // Released on stop: another takes it at its next try, within a third of the lease.
        tokio::time::sleep(ttl / 3 + Duration::from_millis(300)).await;
        assert_eq!(holders(&keepers), 1);
        assert!(!*keepers[first].0.borrow());
        for stop in &stops {
            stop.cancel();
        }
    }

    #[test]
    fn value_rows_numbers_placeholders_row_by_row() {
        assert_eq!(value_rows(2, 3, 1), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(value_rows(1, 3, 2), "($2, $3, $4)");
    }

    #[test]
    fn database_urls_name_their_engine_and_hide_passwords() {
        assert_eq!(Engine::of_url("sqlite://m.db").unwrap(), Engine::Sqlite);
        assert_eq!(
            Engine::of_url("postgres://u@h/db").unwrap(),
            Engine::Postgres
        );
        assert_eq!(
            Engine::of_url("postgresql://u@h/db").unwrap(),
            Engine::Postgres
        );
        let error = Engine::of_url("mysql://u:hunter2@h/db")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("postgres://") && !error.contains("hunter2"),
            "{error}"
        );
        assert_eq!(
            redact_url("postgres://u:hunter2@h/db"),
            "postgres://u:***@h/db"
        );
        let shown = redact_url("postgres://u@h/db?sslmode=require&password=hunter2");
        assert!(
            !shown.contains("hunter2") && shown.contains("sslmode=require"),
            "{shown}"
        );
    }
}
