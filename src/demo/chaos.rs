//! The chaos runner: the demo mission, run again and again while everything
//! that can go wrong between GitHub and the App does. The App runs as its own
//! `missions serve` process on one database and is killed with SIGKILL at a
//! random moment of each run, then restarted; the simulator sends every webhook
//! twice, shuffles deliveries, drops some, and answers a share of all REST calls
//! with 5xx or secondary rate limits. After each run it checks what a maintainer
//! would check: the mission finished, no step ran twice, no comment was posted
//! twice, every handoff and report is on its branch, every check run agrees with
//! its report.
//!
//! With `replicas` > 1 the App runs as that many `missions serve` processes
//! sharing one PostgreSQL database (a private server from Debian's packages),
//! behind a round-robin load balancer, and each kill takes a random replica.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::run::Snapshot;
use super::scripts::{self, Story};
use super::{project, repo_spec, workflow_jobs};
use crate::clock;
use crate::mission::control::STICKY_MARKER;
use crate::mission::outputs::{JobOutput, JobResult, ValidationReport, Validator};
use crate::mission::plan::Plan;
use crate::sim::git::PathContent;
use crate::sim::{FaultConfig, Sim, SimConfig, sample};
use crate::store::Engine;
use crate::store::postgres_server::PostgresServer;

#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub runs: usize,
    /// Seeds every run's faults and kill time: the same seed repeats a run.
    pub seed: u64,
    /// The `missions` binary: the App's process and the jobs.
    pub binary: PathBuf,
    /// Longest one run may take before it counts as not completed.
    pub run_timeout: Duration,
    /// Share of REST calls answered 5xx or with a secondary rate limit.
    pub api_fault_rate: f64,
    /// Share of webhook deliveries lost.
    pub webhook_drop_rate: f64,
    /// Deliveries are shuffled within windows of this many.
    pub reorder_window: usize,
    /// How many times per run the App is killed and restarted.
    pub kills: usize,
    /// Where each run's data and the App's logs go; a temporary directory when `None`.
    pub dir: Option<PathBuf>,
    /// How many `missions serve` processes share the work.
    pub replicas: usize,
    /// The database they share: SQLite (one replica only) or PostgreSQL.
    pub database: Engine,
    /// With several replicas: kill the one driving the missions (holding the
    /// driver's lease) rather than a random one, to see another take over.
    pub kill_driver: bool,
    /// Print each run's line as it ends.
    pub verbose: bool,
}

impl ChaosOptions {
    pub fn new(binary: PathBuf) -> Self {
        ChaosOptions {
            runs: 20,
            seed: 1,
            binary,
            run_timeout: Duration::from_secs(300),
            api_fault_rate: 0.2,
            webhook_drop_rate: 0.1,
            reorder_window: 4,
            kills: 1,
            dir: None,
            replicas: 1,
            database: Engine::Sqlite,
            kill_driver: false,
            verbose: true,
        }
    }
}

/// What one run came to.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    pub seed: u64,
    pub completed: bool,
    /// Why it did not complete.
    pub error: Option<String>,
    pub took: Duration,
    /// When the App was killed, from the start of the run.
    pub kills_at: Vec<Duration>,
    /// Which replica (from 1) each kill took.
    pub killed_replicas: Vec<usize>,
    /// Whether each kill took the replica that was driving the missions.
    pub killed_driver: Vec<bool>,
    /// Deliveries the simulator dropped or could not deliver (the App was down).
    pub deliveries_lost: usize,
    pub deliveries_sent: usize,
    /// REST calls answered with an injected fault (all callers).
    pub api_faults: usize,
    pub api_calls: usize,
    /// Times the maintainer added the label again because the mission had not
    /// started (the labeled webhook was lost; GitHub offers no way to list it).
    pub relabels: usize,
    /// A job key dispatched more than once, a comment posted twice, a check run
    /// made twice for one commit.
    pub duplicates: Vec<String>,
    /// A handoff or report missing from its branch, a check run that disagrees
    /// with its report or never completed.
    pub losses: Vec<String>,
    /// Steps that ran again as a new try (after a failed or lost job): not a
    /// duplicate, but worth seeing.
    pub retried_steps: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ChaosReport {
    pub runs: Vec<RunOutcome>,
    /// How many replicas each run had.
    pub replicas: usize,
}

impl ChaosReport {
    pub fn completed(&self) -> usize {
        self.runs.iter().filter(|r| r.completed).count()
    }

    pub fn duplicates(&self) -> usize {
        self.runs.iter().map(|r| r.duplicates.len()).sum()
    }

    pub fn losses(&self) -> usize {
        self.runs.iter().map(|r| r.losses.len()).sum()
    }

    /// Every run completed, with no duplicate and no loss.
    pub fn meets_target(&self) -> bool {
        self.completed() == self.runs.len() && self.duplicates() == 0 && self.losses() == 0
    }

    /// The per-run lines, the totals, and each problem in full.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| run | seed | completed | took | killed at | webhooks lost/sent | API faults/calls | relabels | retried steps | duplicates | losses |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
        for (i, r) in self.runs.iter().enumerate() {
            let kills: Vec<String> = r
                .kills_at
                .iter()
                .enumerate()
                .map(|(k, d)| match r.killed_replicas.get(k) {
                    Some(replica) if self.replicas > 1 => format!(
                        "{:.1}s (replica {replica}{})",
                        d.as_secs_f64(),
                        if r.killed_driver.get(k).copied().unwrap_or_default() {
                            ", driving"
                        } else {
                            ""
                        }
                    ),
                    _ => format!("{:.1}s", d.as_secs_f64()),
                })
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1}s | {} | {}/{} | {}/{} | {} | {} | {} | {} |",
                i + 1,
                r.seed,
                if r.completed { "yes" } else { "NO" },
                r.took.as_secs_f64(),
                kills.join(", "),
                r.deliveries_lost,
                r.deliveries_sent,
                r.api_faults,
                r.api_calls,
                r.relabels,
                r.retried_steps.len(),
                r.duplicates.len(),
                r.losses.len(),
            );
        }
        let _ = writeln!(
            out,
            "\nreplicas: {} · runs: {} · completed: {} · duplicates: {} · losses: {}",
            self.replicas.max(1),
            self.runs.len(),
            self.completed(),
            self.duplicates(),
            self.losses()
        );
        for (i, r) in self.runs.iter().enumerate() {
            for (what, items) in [
                ("not completed", r.error.iter().cloned().collect::<Vec<_>>()),
                ("duplicate", r.duplicates.clone()),
                ("loss", r.losses.clone()),
                ("retried step", r.retried_steps.clone()),
            ] {
                for item in items {
                    let _ = writeln!(out, "run {} (seed {}): {what}: {item}", i + 1, r.seed);
                }
            }
        }
        out
    }
}

const SECRET: &str = "chaos-webhook-secret";

/// Runs the demo mission `options.runs` times under faults.
pub async fn run(options: &ChaosOptions) -> anyhow::Result<ChaosReport> {
    crate::llm::http::install_crypto_provider();
    if options.replicas > 1 && options.database != Engine::Postgres {
        bail!("several replicas share a PostgreSQL database: add --database postgres");
    }
    // One server for all runs, a database for each.
    let postgres = match options.database {
        Engine::Postgres => Some(
            tokio::task::spawn_blocking(PostgresServer::start)
                .await?
                .context("cannot start PostgreSQL for the replicas")?,
        ),
        Engine::Sqlite => None,
    };
    let temp;
    let root = match &options.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("missions-chaos-")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    // One key for all runs: generating one takes a moment.
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
        .context("generating the App's key")?;
    let keys = (
        key.to_pkcs8_pem(LineEnding::LF)?.to_string(),
        key.to_public_key().to_public_key_pem(LineEnding::LF)?,
    );
    let mut report = ChaosReport {
        replicas: options.replicas,
        ..ChaosReport::default()
    };
    for i in 0..options.runs {
        let seed = options.seed.wrapping_add(i as u64);
        let dir = root.join(format!("run-{}", i + 1));
        std::fs::create_dir_all(&dir)?;
        let database_url = match &postgres {
            Some(server) => server.create_database().await?,
            None => format!("sqlite://{}", dir.join("missions.db").display()),
        };
        let outcome = one_run(options, seed, &dir, &database_url, &keys).await?;
        if options.verbose {
            eprintln!(
                "chaos run {}/{} (seed {seed}): {} in {:.1}s, {} duplicates, {} losses{}",
                i + 1,
                options.runs,
                if outcome.completed {
                    "completed"
                } else {
                    "NOT completed"
                },
                outcome.took.as_secs_f64(),
                outcome.duplicates.len(),
                outcome.losses.len(),
                outcome
                    .error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }
        report.runs.push(outcome);
    }
    Ok(report)
}

/// The App as its own process, killed and restarted by the runner.
struct AppProcess {
    child: tokio::process::Child,
    addr: String,
}

async fn start_app(binary: &Path, config: &Path, log: &Path) -> anyhow::Result<AppProcess> {
    let mut child = tokio::process::Command::new(binary)
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stderr = child.stderr.take().context("the App's stderr")?;
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .await?;
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut lines = BufReader::new(stderr).lines();
        let mut addr_tx = Some(addr_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = file.write_all(format!("{line}\n").as_bytes()).await;
            if let Some(rest) = line.split("addr=").nth(1)
                && let Some(tx) = addr_tx.take()
            {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    });
    let addr = tokio::time::timeout(Duration::from_secs(30), addr_rx)
        .await
        .context("the App printed no 'listening' line within 30 s")?
        .with_context(|| format!("the App exited at start; see {}", log.display()))?;
    Ok(AppProcess { child, addr })
}

async fn one_run(
    options: &ChaosOptions,
    seed: u64,
    dir: &Path,
    database_url: &str,
    (private_pem, public_pem): &(String, String),
) -> anyhow::Result<RunOutcome> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut outcome = RunOutcome {
        seed,
        ..RunOutcome::default()
    };
    let script_dir = dir.join("scripts");
    scripts::write(
        &script_dir,
        &Story {
            ask_question: true,
            ..Story::default()
        },
    )?;

    let mut config = SimConfig::new(dir.join("sim"));
    config
        .workflow_jobs
        .insert(sample::WORKFLOW_FILE.into(), workflow_jobs(&options.binary));
    config.job_timeout = Duration::from_secs(120);
    config.faults = FaultConfig {
        api_error_rate: options.api_fault_rate / 2.0,
        api_rate_limit_rate: options.api_fault_rate / 2.0,
        rate_limit_retry_after: Duration::from_secs(1),
        webhook_drop_rate: options.webhook_drop_rate,
        webhook_duplicate_rate: 1.0,
        webhook_reorder_window: options.reorder_window,
        seed,
        ..FaultConfig::default()
    };
    let sim = Sim::start(config, clock::system()).await?;
    let world = sample::seed_with(&sim, public_pem, repo_spec(&script_dir)).await?;
    let repo = world.repo.clone();

    let key_path = dir.join("app.pem");
    std::fs::write(&key_path, private_pem)?;
    let config_path = dir.join("missions.toml");
    std::fs::write(
        &config_path,
        format!(
            "listen = \"127.0.0.1:0\"\n\
             database_url = \"{database_url}\"\n\
             webhook_secret = \"{SECRET}\"\n\
             app_id = {app_id}\n\
             private_key_path = \"{key}\"\n\
             github_api_url = \"{api}\"\n\
             [missions]\n\
             reconcile_every_secs = 2\n\
             job_timeout_secs = 60\n",
            app_id = sample::APP_ID,
            key = key_path.display(),
            api = sim.url(),
        ),
    )?;
    let replicas = options.replicas.max(1);
    // The runner's own view of the shared database: who holds the driver's lease.
    let shared = match replicas {
        1 => None,
        _ => Some(crate::store::Store::open(database_url).await?),
    };
    let log_of = |replica: usize| match replicas {
        1 => dir.join("app.log"),
        _ => dir.join(format!("app-{}.log", replica + 1)),
    };
    let mut apps = Vec::with_capacity(replicas);
    for replica in 0..replicas {
        apps.push(start_app(&options.binary, &config_path, &log_of(replica)).await?);
    }
    // GitHub reaches the replicas through a load balancer, as it would in a
    // fleet; with one replica, directly.
    let balancer = Balancer::start(apps.iter().map(|a| a.addr.clone()).collect()).await?;
    let target = match replicas {
        1 => apps[0].addr.clone(),
        _ => balancer.addr.clone(),
    };
    sim.set_webhook_target(
        &format!("http://{target}/webhook"),
        SecretString::from(SECRET),
    );

    // The kills: at random moments within the first part of a typical run.
    let mut kills: Vec<Duration> = (0..options.kills)
        .map(|_| Duration::from_millis(rng.gen_range(500..30_000)))
        .collect();
    kills.sort();
    let mut kills = kills.into_iter().peekable();

    let alice = User {
        http: reqwest::Client::new(),
        api: sim.url().to_owned(),
        repo: repo.clone(),
        token: world.maintainer.token.clone(),
    };
    let driven = async {
        let issue = alice
            .call(
                "POST",
                "/issues",
                json!({"title": project::ISSUE_TITLE, "body": project::ISSUE_BODY}),
            )
            .await?["number"]
            .as_u64()
            .context("issue number")?;
        alice
            .call(
                "POST",
                &format!("/issues/{issue}/labels"),
                json!({"labels": ["mission"]}),
            )
            .await?;
        let mut labeled_at = Instant::now();
        let mut answered = false;
        let mut approved = false;
        let mut merged: BTreeSet<u64> = BTreeSet::new();
        let deadline = Instant::now() + options.run_timeout;
        loop {
            if kills.peek().is_some_and(|at| started.elapsed() >= *at) {
                let at = kills.next().unwrap_or_default();
                let driver = match &shared {
                    Some(store) => {
                        let holder =
                            crate::store::lease::holder(store, crate::store::lease::MISSION_DRIVER)
                                .await?;
                        // A holder is "host/pid/…".
                        let pid = holder.as_deref().and_then(|h| h.split('/').nth(1));
                        apps.iter()
                            .position(|a| a.child.id().map(|id| id.to_string()).as_deref() == pid)
                    }
                    None => Some(0),
                };
                let victim = match driver {
                    Some(driver) if options.kill_driver => driver,
                    _ => rng.gen_range(0..replicas),
                };
                outcome.killed_driver.push(driver == Some(victim));
                outcome.kills_at.push(at);
                outcome.killed_replicas.push(victim + 1);
                balancer.set(victim, None);
                apps[victim].child.start_kill()?;
                apps[victim].child.wait().await?;
                // Down for a moment: deliveries in between fail (or, behind the
                // balancer, go to the other replicas), as they would.
                tokio::time::sleep(Duration::from_millis(rng.gen_range(100..2_000))).await;
                apps[victim] = start_app(&options.binary, &config_path, &log_of(victim)).await?;
                balancer.set(victim, Some(apps[victim].addr.clone()));
                if replicas == 1 {
                    sim.set_webhook_target(
                        &format!("http://{}/webhook", apps[0].addr),
                        SecretString::from(SECRET),
                    );
                }
            }
            let state = Snapshot::take(&sim, &repo, issue);
            if state.issue_closed {
                return Ok(issue);
            }
            if let Some(paused) = state.paused {
                bail!("the mission paused: {}", first_line(&paused));
            }
            let started_comment = sim.read(|w| {
                w.repos[&repo]
                    .comments
                    .values()
                    .any(|c| c.issue_number == issue && c.body.contains("Mission started by @"))
            });
            if !started_comment && labeled_at.elapsed() > Duration::from_secs(20) {
                // As a person would: the label did nothing, so add it again.
                outcome.relabels += 1;
                alice
                    .call(
                        "DELETE",
                        &format!("/issues/{issue}/labels/mission"),
                        Value::Null,
                    )
                    .await?;
                alice
                    .call(
                        "POST",
                        &format!("/issues/{issue}/labels"),
                        json!({"labels": ["mission"]}),
                    )
                    .await?;
                labeled_at = Instant::now();
            }
            if !answered && state.questions_asked > 0 {
                answered = true;
                alice
                    .call(
                        "POST",
                        &format!("/issues/{issue}/comments"),
                        json!({"body": "Yes: compare words case-insensitively."}),
                    )
                    .await?;
            }
            if !approved && let Some(pr) = state.plan_pr {
                approved = true;
                alice
                    .call(
                        "POST",
                        &format!("/pulls/{pr}/reviews"),
                        json!({"event": "APPROVE", "body": "The plan looks right."}),
                    )
                    .await?;
            }
            for pr in state.ready_to_merge {
                if merged.insert(pr) {
                    alice
                        .call("PUT", &format!("/pulls/{pr}/merge"), json!({}))
                        .await?;
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the mission did not finish within {:?}",
                    options.run_timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let result: anyhow::Result<u64> = driven.await;
    outcome.took = started.elapsed();
    match &result {
        Ok(_) => outcome.completed = true,
        Err(e) => outcome.error = Some(format!("{e:#}")),
    }
    // Let the App settle (the last sticky update, the close) before judging.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for app in &mut apps {
        let _ = app.child.start_kill();
        let _ = app.child.wait().await;
    }
    balancer.stop();
    if let Some(store) = shared {
        store.close().await;
    }

    let deliveries = sim.deliveries();
    outcome.deliveries_sent = deliveries.len();
    outcome.deliveries_lost = deliveries.iter().filter(|d| d.status.is_none()).count();
    let exchanges = sim.exchanges();
    outcome.api_calls = exchanges.len();
    outcome.api_faults = exchanges.iter().filter(|e| e.faulted).count();

    let issue = match result {
        Ok(issue) => Some(issue),
        Err(_) => sim.read(|w| {
            w.repos[&repo]
                .issues
                .values()
                .find(|i| i.pull.is_none())
                .map(|i| i.number)
        }),
    };
    if let Some(issue) = issue {
        judge(&sim, &repo, issue, outcome.completed, &mut outcome).await?;
    }
    sim.shutdown();
    Ok(outcome)
}

/// A round-robin load balancer in front of the replicas, as a fleet has: each
/// request goes to the next replica in turn; a replica that is down (known to
/// be, or refusing the connection) is skipped, as a balancer's health checks
/// would. A request a replica received and did not answer (it was killed) is
/// answered 502, as a balancer would: GitHub counts that delivery as failed.
/// The replicas' addresses, whose turn is next, and the client to forward with.
type BalancerState = (
    Arc<Mutex<Vec<Option<String>>>>,
    Arc<AtomicUsize>,
    reqwest::Client,
);

struct Balancer {
    addr: String,
    replicas: Arc<Mutex<Vec<Option<String>>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl Balancer {
    async fn start(replicas: Vec<String>) -> anyhow::Result<Balancer> {
        let replicas = Arc::new(Mutex::new(
            replicas.into_iter().map(Some).collect::<Vec<_>>(),
        ));
        let next = Arc::new(AtomicUsize::new(0));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let stop = tokio_util::sync::CancellationToken::new();
        let state: BalancerState = (replicas.clone(), next, http);
        let app = axum::Router::new()
            .fallback(
                |axum::extract::State((replicas, next, http)): axum::extract::State<
                    BalancerState,
                >,
                 request: axum::extract::Request| async move {
                    forward(&replicas, &next, &http, request).await
                },
            )
            .with_state(state);
        let shutdown = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
        });
        Ok(Balancer {
            addr,
            replicas,
            stop,
        })
    }

    /// Where replica `index` listens now; `None` while it is down.
    fn set(&self, index: usize, addr: Option<String>) {
        self.replicas.lock().expect("replicas")[index] = addr;
    }

    fn stop(&self) {
        self.stop.cancel();
    }
}

async fn forward(
    replicas: &Mutex<Vec<Option<String>>>,
    next: &AtomicUsize,
    http: &reqwest::Client,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        return (axum::http::StatusCode::BAD_REQUEST, "unreadable body").into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let count = replicas.lock().expect("replicas").len();
    for _ in 0..count {
        let turn = next.fetch_add(1, Ordering::SeqCst) % count;
        let Some(addr) = replicas.lock().expect("replicas")[turn].clone() else {
            continue;
        };
        let mut outgoing = http.request(parts.method.clone(), format!("http://{addr}{path}"));
        for (name, value) in &parts.headers {
            if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
                outgoing = outgoing.header(name, value);
            }
        }
        match outgoing.body(body.clone()).send().await {
            Ok(response) => {
                let status = response.status();
                let bytes = response.bytes().await.unwrap_or_default();
                return (status, bytes).into_response();
            }
            // Never reached the replica: try the next one.
            Err(e) if e.is_connect() => continue,
            Err(_) => {
                return (
                    axum::http::StatusCode::BAD_GATEWAY,
                    "the replica did not answer",
                )
                    .into_response();
            }
        }
    }
    (axum::http::StatusCode::BAD_GATEWAY, "no replica is up").into_response()
}

fn first_line(text: &str) -> String {
    text.lines()
        .find(|l| !l.trim().is_empty() && !l.contains("<!--"))
        .unwrap_or_default()
        .to_owned()
}

/// What a maintainer would check after the mission.
async fn judge(
    sim: &Sim,
    repo: &str,
    issue: u64,
    completed: bool,
    outcome: &mut RunOutcome,
) -> anyhow::Result<()> {
    let bot = format!("{}[bot]", sample::APP_SLUG);
    // Dispatches: one run per job key; a new try of a step is counted apart.
    let jobs: Vec<String> = sim.read(|w| {
        w.repos[repo]
            .runs
            .values()
            .filter_map(|r| {
                r.inputs
                    .get("job")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect()
    });
    let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_step: BTreeMap<&str, usize> = BTreeMap::new();
    for job in &jobs {
        *per_key.entry(job).or_default() += 1;
        let step = job.rsplit_once('.').map_or(job.as_str(), |(s, _)| s);
        *per_step.entry(step).or_default() += 1;
    }
    for (key, n) in per_key.iter().filter(|(_, n)| **n > 1) {
        outcome
            .duplicates
            .push(format!("job {key} was dispatched {n} times"));
    }
    for (step, n) in per_step.iter().filter(|(_, n)| **n > 1) {
        outcome.retried_steps.push(format!("{step} ran {n} times"));
    }

    // Comments: each outbox effect posts once (its marker), one sticky per issue.
    let comments: Vec<(u64, String)> = sim.read(|w| {
        w.repos[repo]
            .comments
            .values()
            .filter(|c| c.user == bot)
            .map(|c| (c.issue_number, c.body.clone()))
            .collect()
    });
    let mut markers: BTreeMap<String, usize> = BTreeMap::new();
    let mut stickies: BTreeMap<u64, usize> = BTreeMap::new();
    for (number, body) in &comments {
        if body.starts_with(STICKY_MARKER) {
            *stickies.entry(*number).or_default() += 1;
        }
        for marker in body.match_indices("<!-- missions:effect:") {
            let rest = &body[marker.0..];
            let end = rest.find("-->").map_or(rest.len(), |e| e + 3);
            *markers.entry(rest[..end].to_owned()).or_default() += 1;
        }
        if !body.starts_with(STICKY_MARKER) && !body.contains("<!-- missions:effect:") {
            outcome.duplicates.push(format!(
                "a comment on #{number} without its effect marker: {}",
                first_line(body)
            ));
        }
    }
    for (marker, n) in markers.iter().filter(|(_, n)| **n > 1) {
        outcome
            .duplicates
            .push(format!("the comment of {marker} was posted {n} times"));
    }
    for (number, n) in stickies.iter().filter(|(_, n)| **n > 1) {
        outcome
            .duplicates
            .push(format!("#{number} has {n} mission control comments"));
    }
    if completed && !stickies.contains_key(&issue) {
        outcome
            .losses
            .push(format!("#{issue} has no mission control comment"));
    }

    // Check runs: one per validator and commit, all completed.
    let checks: Vec<(u64, String, String, String, Option<String>)> = sim.read(|w| {
        w.repos[repo]
            .check_runs
            .values()
            .map(|c| {
                (
                    c.id,
                    c.name.clone(),
                    c.head_sha.clone(),
                    c.status.clone(),
                    c.conclusion.clone(),
                )
            })
            .collect()
    });
    let mut per_commit: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (id, name, sha, status, _) in &checks {
        *per_commit.entry((name, sha)).or_default() += 1;
        if status != "completed" {
            outcome.losses.push(format!(
                "check run {id} ({name} on {}) never completed",
                &sha[..sha.len().min(7)]
            ));
        }
    }
    for ((name, sha), n) in per_commit.iter().filter(|(_, n)| **n > 1) {
        outcome.duplicates.push(format!(
            "{n} check runs {name} on {}",
            &sha[..sha.len().min(7)]
        ));
    }

    if !completed {
        return Ok(());
    }
    // Handoffs on the default branch, reports on the reports branch, and each
    // validator's last check run agreeing with its report.
    let git = sim.git();
    let read = |branch: String, path: String| async move {
        match git.read_path(repo, &branch, &path).await {
            Ok(Some(PathContent::File { content, .. })) => {
                Some(String::from_utf8_lossy(&content).into_owned())
            }
            _ => None,
        }
    };
    let Some(plan) = read("main".into(), format!(".missions/{issue}/plan.json")).await else {
        outcome
            .losses
            .push("the plan is not on the default branch".into());
        return Ok(());
    };
    let plan: Plan = serde_json::from_str(&plan).context("the plan on main")?;
    // The message of each checked commit: a ready commit names its milestone.
    let mut messages: BTreeMap<&str, String> = BTreeMap::new();
    for (_, _, sha, ..) in &checks {
        if let Ok(Some(commit)) = git.commit(repo, sha).await {
            messages.insert(sha, commit.message);
        }
    }
    let of_milestone = |sha: &str, id: &str| {
        messages
            .get(sha)
            .is_some_and(|m| m.contains(&format!(" {id}: ready for validation")))
    };
    for (index, milestone) in plan.milestones.iter().enumerate() {
        for feature in &milestone.features {
            if read(
                "main".into(),
                format!(".missions/{issue}/handoffs/{}.json", feature.id),
            )
            .await
            .is_none()
            {
                outcome
                    .losses
                    .push(format!("the handoff of {} is not on main", feature.id));
            }
        }
        for validator in Validator::ALL {
            let path = format!(
                ".missions/{issue}/reports/{}-{}.json",
                milestone.id,
                validator.as_str()
            );
            let Some(text) = read(format!("missions/{issue}/reports"), path.clone()).await else {
                outcome
                    .losses
                    .push(format!("{path} is not on the reports branch"));
                continue;
            };
            let report =
                report_of(&text).with_context(|| format!("{path} is not a validation report"))?;
            let passed = report.passed(&plan.milestone_assertions(index));
            let last = checks
                .iter()
                .filter(|(_, name, ..)| name == validator.check_name())
                .filter(|(_, _, sha, ..)| of_milestone(sha, &milestone.id))
                .max_by_key(|(id, ..)| *id);
            match last {
                None => outcome.losses.push(format!(
                    "no {} check run for {}",
                    validator.check_name(),
                    milestone.id
                )),
                Some((id, _, _, _, conclusion)) => {
                    let expected = if passed { "success" } else { "failure" };
                    if conclusion.as_deref() != Some(expected) {
                        outcome.losses.push(format!(
                            "check run {id} says {conclusion:?}, its report {path} says {expected}"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// A report file: the report itself, or the job output that carries it.
fn report_of(text: &str) -> Option<ValidationReport> {
    if let Ok(report) = serde_json::from_str::<ValidationReport>(text) {
        return Some(report);
    }
    match serde_json::from_str::<JobOutput>(text).ok()?.result {
        JobResult::Validator { report } => Some(report),
        _ => None,
    }
}

/// The maintainer's REST calls, retried as a person (or their tool) would
/// when GitHub answers 5xx or asks to slow down.
struct User {
    http: reqwest::Client,
    api: String,
    repo: String,
    token: String,
}

impl User {
    async fn call(&self, method: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}/repos/{}{path}", self.api, self.repo);
        let mut last = String::new();
        for _ in 0..30 {
            let mut request = self
                .http
                .request(reqwest::Method::from_bytes(method.as_bytes())?, &url)
                .bearer_auth(&self.token)
                .header("accept", "application/vnd.github+json");
            if !body.is_null() {
                request = request.json(&body);
            }
            let response = request.send().await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(answer);
            }
            if status.is_server_error() || retry_after.is_some() {
                last = format!("{status}");
                let wait = retry_after.map_or(Duration::from_millis(200), Duration::from_secs);
                tokio::time::sleep(wait).await;
                continue;
            }
            bail!("{method} {path} answered {status}: {answer}");
        }
        bail!("{method} {path} kept failing ({last})")
    }
}
