//! A private PostgreSQL server for tests and benches: Debian's `postgresql`
//! binaries, a fresh cluster in a temporary directory, reached by a Unix socket
//! in that directory (no port to collide with). Not for production: it runs
//! without fsync, and lives only as long as the process that started it.
//!
//! The server is started by a small shell that waits on its standard input: when
//! the process that started it ends, however it ends (a panic, SIGKILL), the
//! pipe closes, and the shell stops the server and deletes its directory. So no
//! server outlives a killed test run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::Connection;

const HOW_TO_INSTALL: &str = "install Debian's PostgreSQL (`apt-get install postgresql`; .ci/run does), \
     or set MISSIONS_POSTGRES_BIN to the directory holding initdb and postgres";

/// A running private server. Dropped, it stops the server and deletes its files.
pub struct PostgresServer {
    dir: PathBuf,
    /// Closing it tells the watching shell to stop the server.
    stdin: Option<ChildStdin>,
    child: Child,
    databases: AtomicU64,
}

impl std::fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresServer")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Where initdb and postgres are: MISSIONS_POSTGRES_BIN, else the newest of
/// Debian's `/usr/lib/postgresql/<version>/bin`.
pub fn binaries() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MISSIONS_POSTGRES_BIN") {
        let dir = PathBuf::from(dir);
        if dir.join("postgres").is_file() {
            return Ok(dir);
        }
        bail!(
            "MISSIONS_POSTGRES_BIN={} has no postgres binary",
            dir.display()
        );
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!("no PostgreSQL server found: {HOW_TO_INSTALL}"),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command run as the `postgres` user when this process is root (PostgreSQL
/// refuses to run as root), as this user otherwise.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl PostgresServer {
    /// Creates a cluster in a new temporary directory and starts its server;
    /// returns once it accepts connections.
    pub fn start() -> anyhow::Result<PostgresServer> {
        let bin = binaries()?;
        let dir = tempfile::Builder::new()
            .prefix("missions-postgres-")
            .tempdir()
            .context("cannot create a directory for PostgreSQL")?
            .keep();
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:", "--"])
                .arg(&dir)
                .status();
            if !status.is_ok_and(|s| s.success()) {
                let _ = std::fs::remove_dir_all(&dir);
                bail!(
                    "cannot give {} to the postgres user (is Debian's postgresql installed? {HOW_TO_INSTALL})",
                    dir.display()
                );
            }
        }
        let data = dir.join("data");
        let output = as_server_user(&bin.join("initdb"))
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C",
                "-D",
            ])
            .arg(&data)
            .output()
            .with_context(|| format!("cannot run initdb: {HOW_TO_INSTALL}"))?;
        if !output.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        // The shell stops the server (immediate shutdown) and removes the
        // directory when its standard input closes.
        // It also stops the server when it is itself told to stop (a Ctrl-C to
        // the process group, a CI timeout's SIGTERM). A fixed port number names
        // the socket file, whatever PGPORT says.
        let script = r#"
            "$1" -D "$2/data" -k "$2" -p 5432 -c listen_addresses= -c fsync=off \
                 -c full_page_writes=off -c synchronous_commit=off -c max_connections=300 \
                 > "$2/server.log" 2>&1 &
            server=$!
            stop() { kill -QUIT "$server" 2>/dev/null; wait "$server"; rm -rf "$2"; exit 0; }
            trap stop INT TERM HUP
            read -r _
            stop
        "#;
        let spawned = as_server_user(Path::new("/bin/sh"))
            .args(["-c", script, "sh"])
            .arg(bin.join("postgres"))
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e).context("cannot start PostgreSQL");
            }
        };
        let stdin = child.stdin.take();
        let server = PostgresServer {
            dir,
            stdin,
            child,
            databases: AtomicU64::new(0),
        };
        server.wait_until_ready()?;
        Ok(server)
    }

    fn wait_until_ready(&self) -> anyhow::Result<()> {
        let socket = self.dir.join(".s.PGSQL.5432");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            // The socket appears once the server accepts connections; the lock
            // file's last line says "ready" at the same time.
            let lock =
                std::fs::read_to_string(self.dir.join("data/postmaster.pid")).unwrap_or_default();
            if socket.exists() && lock.lines().any(|l| l.trim() == "ready") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        bail!("PostgreSQL did not start within 60 s; its log:\n{log}")
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost/{database}?host={}",
            self.dir.display()
        )
    }

    /// Creates a new, empty database and returns its URL.
    pub async fn create_database(&self) -> anyhow::Result<String> {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("missions_{}_{n}", std::process::id());
        create_database(&self.url("postgres"), &name).await?;
        Ok(self.url(&name))
    }
}

/// Creates `name` on the server that `admin_url` reaches (a database such as
/// `postgres` that exists already) and returns the new database's URL.
pub async fn create_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "database name {name:?} must be letters, digits and underscores"
    );
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .with_context(|| format!("cannot connect to {}", super::redact_url(admin_url)))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .with_context(|| format!("cannot create database {name}"))?;
    admin.close().await?;
    let mut url = reqwest::Url::parse(admin_url).context("invalid PostgreSQL URL")?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let _ = self.child.wait();
    }
}

/// A fresh, empty PostgreSQL database for one test, or `None` when told to skip
/// PostgreSQL (`MISSIONS_SKIP_POSTGRES=1`; the caller says so and passes).
///
/// On the server MISSIONS_TEST_POSTGRES_URL names (an admin URL, such as
/// `postgres://postgres@localhost/postgres`), else on a private server started
/// once per process. Fails, saying what to install, when there is neither.
pub async fn test_database() -> anyhow::Result<Option<String>> {
    static SERVER: std::sync::OnceLock<Result<PostgresServer, String>> = std::sync::OnceLock::new();
    static NAMES: AtomicU64 = AtomicU64::new(0);
    if std::env::var_os("MISSIONS_SKIP_POSTGRES").is_some_and(|v| !v.is_empty() && v != "0") {
        eprintln!("MISSIONS_SKIP_POSTGRES is set: this test's PostgreSQL half is skipped");
        return Ok(None);
    }
    if let Ok(admin) = std::env::var("MISSIONS_TEST_POSTGRES_URL") {
        let n = NAMES.fetch_add(1, Ordering::SeqCst);
        let name = format!("missions_{}_{n}", std::process::id());
        return create_database(&admin, &name).await.map(Some);
    }
    let server = SERVER.get_or_init(|| PostgresServer::start().map_err(|e| format!("{e:#}")));
    match server {
        Ok(server) => server.create_database().await.map(Some),
        Err(e) => bail!(
            "this test needs PostgreSQL: {e}\n(set MISSIONS_TEST_POSTGRES_URL to use a running server, \
             or MISSIONS_SKIP_POSTGRES=1 to skip the PostgreSQL tests)"
        ),
    }
}
