//! The canary scan every scenario ends with (issue 8): a canary value sits in
//! every secret slot — the webhook secret, the App's private key, every token
//! the simulator issues (users', installations', jobs' `GITHUB_TOKEN`) and the
//! model API keys in the jobs' environment — and none may appear anywhere a
//! leak could reach:
//!
//! - the simulator's world: issues and pull requests, comments, reviews, labels,
//!   check runs, workflow runs (inputs and logs), and anything else it holds;
//! - the webhook deliveries it sent the App (payloads, errors);
//! - every REST exchange it answered (path, request and answer bodies, base64
//!   file contents decoded), the one answer that issues a token excepted;
//! - every git object and ref of every repository (`cat-file --batch-all-objects`,
//!   so unreachable objects too);
//! - the logs of jobs that ran `missions job`: the text, and whether the
//!   runner had to mask a secret in the job's output (GitHub masks secrets in
//!   logs; a harness that prints one is still leaking it);
//! - every request the jobs' scripted models received (recorded by the
//!   scripted provider into [`RECORD_DIR_VAR`]);
//! - the log lines of this test process (the App and the simulator), captured
//!   by a tracing subscriber shared by all tests of the binary;
//! - every value of every table of the App's database (errors, outbox, inbox).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use missions::sim::Sim;
use missions::sim::state::{RunStatus, TokenSubject};
use serde_json::Value;

pub use missions::llm::scripted::RECORD_DIR_VAR;

/// The model key variables every job gets a canary in: the two providers'
/// defaults and a custom `api_key_env:` one.
pub const MODEL_KEY_VARS: [&str; 3] = ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY"];

/// (variable, canary value), one set per test binary.
pub fn model_keys() -> &'static [(String, String)] {
    static KEYS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        MODEL_KEY_VARS
            .iter()
            .map(|var| {
                let tag = var.trim_end_matches("_API_KEY").to_ascii_lowercase();
                let value = format!("sk-{tag}-canary-{}", uuid::Uuid::new_v4().simple());
                ((*var).to_owned(), value)
            })
            .collect()
    })
}

/// The canary in `var` (one of [`MODEL_KEY_VARS`]).
pub fn model_key(var: &str) -> &'static str {
    model_keys()
        .iter()
        .find(|(v, _)| v == var)
        .map(|(_, k)| k.as_str())
        .unwrap_or_else(|| panic!("no canary for {var}"))
}

/// One secret value and the slot it fills.
#[derive(Debug, Clone)]
pub struct Secret {
    pub slot: String,
    pub value: String,
}

/// A canary found where it must not be.
#[derive(Debug, Clone)]
pub struct Leak {
    /// Which secret (never its value).
    pub slot: String,
    /// Where it was found.
    pub place: String,
    /// The text around it, every secret replaced by `«slot»`.
    pub excerpt: String,
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}: {}", self.slot, self.place, self.excerpt)
    }
}

/// The failure message for `leaks`.
pub fn report(leaks: &[Leak]) -> String {
    let mut text = format!(
        "secret canary found in {} place(s) a secret must never reach:\n",
        leaks.len()
    );
    for leak in leaks {
        text.push_str(&format!("  - {leak}\n"));
    }
    text
}

// ---- log capture ------------------------------------------------------------

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Tee;

impl std::io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per test binary) the subscriber that formats every event of
/// the `missions` crate (all levels) and everything else at info and above
/// into a buffer the scans read. Tests run in parallel and share it; they
/// share the same canaries too, except tokens, which are per scenario.
pub fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| Tee);
        let filter = tracing_subscriber::EnvFilter::new("info,missions=trace");
        tracing_subscriber::registry()
            .with(layer)
            .with(filter)
            .try_init()
            .expect("no other tracing subscriber in a test binary using the scenario harness");
    });
}

/// How many bytes of log lines were captured so far.
pub fn log_len() -> usize {
    LOG.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// The log lines captured since `offset` (see [`log_len`]).
pub fn log_since(offset: usize) -> String {
    let log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(log.get(offset..).unwrap_or_default()).into_owned()
}

// ---- the scan ----------------------------------------------------------------

/// What one scenario's scan looks at (cheap to clone, so it can run from `Drop`).
#[derive(Clone)]
pub struct Scan {
    pub sim: Sim,
    /// The App's database.
    pub db_url: String,
    /// Where the jobs' scripted models record requests ([`RECORD_DIR_VAR`]).
    pub requests_dir: PathBuf,
    /// Log lines before this offset were written before the scenario started.
    pub log_from: usize,
    /// Workflow files whose jobs run `missions job` (the others run a test's
    /// own script, which may print its environment on purpose).
    pub harness_workflows: Vec<String>,
    pub webhook_secret: String,
    pub private_key_pem: String,
}

/// Whether `argv` runs this package's `missions` binary (directly, through a
/// shell, or from its directory as the action does).
pub fn runs_missions(argv: &[String]) -> bool {
    let binary = Path::new(env!("CARGO_BIN_EXE_missions"));
    let dir = binary.parent().unwrap().display().to_string();
    argv.iter().any(|a| a.contains(&dir))
}

impl Scan {
    /// Every secret of the scenario, with its slot.
    pub fn secrets(&self) -> Vec<Secret> {
        let mut secrets = vec![Secret {
            slot: "the webhook secret".into(),
            value: self.webhook_secret.clone(),
        }];
        // Every line of the key's base64 body: the PEM, the key on one line
        // or any part of it longer than two lines holds one of them whole.
        for line in self.private_key_pem.lines() {
            let line = line.trim();
            if line.len() >= 32 && !line.starts_with("-----") {
                secrets.push(Secret {
                    slot: "the App's private key".into(),
                    value: line.to_owned(),
                });
            }
        }
        let subjects: HashMap<String, TokenSubject> = self.sim.read(|w| {
            w.tokens
                .iter()
                .map(|(k, t)| (k.clone(), t.subject.clone()))
                .collect()
        });
        for token in self.sim.issued_tokens() {
            let slot = match subjects.get(&token) {
                Some(TokenSubject::User(login)) => format!("{login}'s personal access token"),
                Some(TokenSubject::Installation { id, .. }) => {
                    format!("an installation token of installation {id}")
                }
                Some(TokenSubject::Job { run_id, .. }) => {
                    format!("the GITHUB_TOKEN of workflow run {run_id}")
                }
                None => "a job's GITHUB_TOKEN (revoked since)".into(),
            };
            secrets.push(Secret { slot, value: token });
        }
        for (var, value) in model_keys() {
            secrets.push(Secret {
                slot: format!("the model key {var}"),
                value: value.clone(),
            });
        }
        secrets
    }

    /// Waits (briefly) for jobs the shutdown cancelled to record their logs.
    pub async fn settle(&self) {
        let _ = self
            .sim
            .wait_for("cancelled jobs to end", Duration::from_secs(15), |s| {
                s.read(|w| {
                    w.repos
                        .values()
                        .flat_map(|r| r.runs.values())
                        .all(|r| r.status != RunStatus::InProgress)
                })
                .then_some(())
            })
            .await;
    }

    /// Every place a canary was found; `pool` is the App's database (opened
    /// from `db_url` when `None`).
    pub async fn leaks(&self, pool: Option<&sqlx::AnyPool>) -> Vec<Leak> {
        let secrets = self.secrets();
        let mut found = Finder {
            secrets: &secrets,
            leaks: Vec::new(),
        };
        self.scan_world(&mut found);
        self.scan_deliveries(&mut found);
        self.scan_exchanges(&mut found);
        self.scan_git(&mut found);
        self.scan_model_requests(&mut found);
        for line in log_since(self.log_from).lines() {
            found.text("a log line of the test process", line);
        }
        match pool {
            Some(pool) => scan_database(pool, &mut found).await,
            None => match connect_any(&self.db_url).await {
                Ok(pool) => {
                    scan_database(&pool, &mut found).await;
                    pool.close().await;
                }
                Err(e) => panic!("cannot open the App's database to scan it: {e}"),
            },
        }
        found.leaks
    }

    fn scan_world(&self, found: &mut Finder<'_>) {
        self.sim.read(|w| {
            for (name, repo) in &w.repos {
                let before = found.leaks.len();
                if let Some(d) = &repo.description {
                    found.text(&format!("{name}: the description"), d);
                }
                for label in repo.labels.values() {
                    found.text(&format!("{name}: label {:?}", label.name), &label.name);
                    if let Some(d) = &label.description {
                        found.text(&format!("{name}: label {:?}", label.name), d);
                    }
                }
                for issue in repo.issues.values() {
                    let what = if issue.pull.is_some() {
                        "pull request"
                    } else {
                        "issue"
                    };
                    let n = issue.number;
                    found.text(&format!("{name}: the title of {what} #{n}"), &issue.title);
                    if let Some(body) = &issue.body {
                        found.text(&format!("{name}: the body of {what} #{n}"), body);
                    }
                    if let Some(pull) = &issue.pull {
                        found.text(&format!("{name}: the head of #{n}"), &pull.head_ref);
                        for review in &pull.reviews {
                            found.text(
                                &format!(
                                    "{name}: review {} by {} on #{n}",
                                    review.id, review.user
                                ),
                                &review.body,
                            );
                        }
                    }
                }
                for comment in repo.comments.values() {
                    found.text(
                        &format!(
                            "{name}: comment {} by {} on #{}",
                            comment.id, comment.user, comment.issue_number
                        ),
                        &comment.body,
                    );
                }
                for check in repo.check_runs.values() {
                    let place = format!("{name}: check run {} {:?}", check.id, check.name);
                    found.text(&place, &check.name);
                    for text in [
                        &check.output.title,
                        &check.output.summary,
                        &check.output.text,
                        &check.details_url,
                        &check.external_id,
                    ]
                    .into_iter()
                    .flatten()
                    {
                        found.text(&place, text);
                    }
                }
                for run in repo.runs.values() {
                    let place = format!("{name}: workflow run {}", run.id);
                    found.text(
                        &format!("{place} (inputs)"),
                        &Value::Object(run.inputs.clone()).to_string(),
                    );
                    if let Some(run_name) = &run.run_name {
                        found.text(&format!("{place} (name)"), run_name);
                    }
                    found.text(&format!("{place} (branch)"), &run.head_branch);
                    found.text(&format!("{place} (job log)"), &run.log);
                    let file = repo
                        .workflows
                        .iter()
                        .find(|wf| wf.id == run.workflow_id)
                        .and_then(|wf| wf.path.rsplit('/').next())
                        .unwrap_or_default();
                    if run.secrets_masked > 0 && self.harness_workflows.iter().any(|h| h == file)
                    {
                        found.leaks.push(Leak {
                            slot: "a secret".into(),
                            place: format!("{place} (job log)"),
                            excerpt: format!(
                                "the output of a job running `missions job` held {} secret value(s), masked as *** by the runner",
                                run.secrets_masked
                            ),
                        });
                    }
                }
                // Whatever the places above do not name.
                let named: Vec<String> =
                    found.leaks[before..].iter().map(|l| l.slot.clone()).collect();
                let mut rest = Finder {
                    secrets: found.secrets,
                    leaks: Vec::new(),
                };
                rest.text(&format!("{name}: the simulator's state"), &format!("{repo:?}"));
                found
                    .leaks
                    .extend(rest.leaks.into_iter().filter(|l| !named.contains(&l.slot)));
            }
            found.text(
                "the simulator's accounts and installations",
                &format!("{:?} {:?} {:?}", w.accounts, w.installations, w.app),
            );
        });
    }

    fn scan_deliveries(&self, found: &mut Finder<'_>) {
        for d in self.sim.deliveries() {
            let place = format!(
                "webhook delivery {} ({}.{})",
                d.id,
                d.event,
                d.action.as_deref().unwrap_or("-")
            );
            found.json(&format!("{place} payload"), &d.payload);
            if let Some(error) = &d.error {
                found.text(&format!("{place} error"), error);
            }
        }
    }

    fn scan_exchanges(&self, found: &mut Finder<'_>) {
        for x in self.sim.exchanges() {
            let place = format!(
                "REST {} {} (by {}, {})",
                x.method, x.path, x.caller, x.status
            );
            found.text(&format!("{place}: the path"), &x.path);
            if let Some(request) = &x.request {
                found.json(&format!("{place}: the request body"), request);
            }
            if let Some(response) = &x.response {
                let mut response = response.clone();
                // The one answer whose job is to hand out a token.
                if x.route.ends_with("/access_tokens")
                    && let Some(o) = response.as_object_mut()
                {
                    o.remove("token");
                }
                found.json(&format!("{place}: the answer"), &response);
            }
        }
    }

    fn scan_git(&self, found: &mut Finder<'_>) {
        let repos: Vec<String> = self.sim.read(|w| w.repos.keys().cloned().collect());
        for name in repos {
            let Ok(dir) = self.sim.git().repo_path(&name) else {
                continue;
            };
            if !dir.is_dir() {
                continue;
            }
            let refs = git(&dir, &["for-each-ref", "--format=%(refname)"]);
            found.text(
                &format!("{name}: a ref name"),
                &String::from_utf8_lossy(&refs),
            );
            let batch = git(&dir, &["cat-file", "--batch-all-objects", "--batch"]);
            let mut paths: Option<HashMap<String, String>> = None;
            for (sha, kind, content) in parse_batch(&batch) {
                let text = String::from_utf8_lossy(content);
                let before = found.leaks.len();
                found.text(&format!("{name}: git {kind} {sha}"), &text);
                if found.leaks.len() > before && kind == "blob" {
                    // Name the file: every path any ref's history gave it.
                    let paths = paths.get_or_insert_with(|| object_paths(&dir));
                    if let Some(path) = paths.get(sha) {
                        for leak in &mut found.leaks[before..] {
                            leak.place = format!("{name}: the file {path} (git blob {sha})");
                        }
                    }
                }
            }
        }
    }

    fn scan_model_requests(&self, found: &mut Finder<'_>) {
        let Ok(entries) = std::fs::read_dir(&self.requests_dir) else {
            return;
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for (n, line) in text.lines().enumerate() {
                let model = serde_json::from_str::<Value>(line)
                    .ok()
                    .and_then(|v| v["model"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                found.text(
                    &format!(
                        "model request {} to {model} ({})",
                        n + 1,
                        file.file_name().unwrap().to_string_lossy()
                    ),
                    line,
                );
            }
        }
    }
}

async fn connect_any(url: &str) -> sqlx::Result<sqlx::AnyPool> {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await
}

/// Every value of every table, as text (SQLite or PostgreSQL).
async fn scan_database(pool: &sqlx::AnyPool, found: &mut Finder<'_>) {
    let postgres = pool
        .connect_options()
        .database_url
        .scheme()
        .starts_with("postgres");
    let tables: Vec<String> = sqlx::query_scalar(if postgres {
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' ORDER BY table_name"
    } else {
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    })
    .fetch_all(pool)
    .await
    .expect("listing the App's tables");
    for table in tables {
        let quoted = table.replace('"', "\"\"");
        let columns: Vec<(String, String)> = sqlx::query_as(if postgres {
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1"
        } else {
            "SELECT name, type FROM pragma_table_info($1)"
        })
        .bind(&table)
        .fetch_all(pool)
        .await
        .expect("listing a table's columns");
        for (column, kind) in columns {
            let c = column.replace('"', "\"\"");
            // Names from the catalog, quoted: no injection. PostgreSQL's bytea is
            // read as it is; everything else as text, then as bytes.
            let sql = if !postgres {
                format!("SELECT CAST(\"{c}\" AS BLOB) FROM \"{quoted}\"")
            } else if kind == "bytea" {
                format!("SELECT \"{c}\" FROM \"{quoted}\"")
            } else {
                format!("SELECT convert_to(CAST(\"{c}\" AS TEXT), 'UTF8') FROM \"{quoted}\"")
            };
            let values: Vec<Option<Vec<u8>>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
                .expect("reading a column");
            for (row, value) in values.iter().enumerate() {
                if let Some(bytes) = value {
                    found.text(
                        &format!("the App's database: {table}.{column} (row {})", row + 1),
                        &String::from_utf8_lossy(bytes),
                    );
                }
            }
        }
    }
}

fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `cat-file --batch` output: `<sha> <type> <size>\n<content>\n`, repeated.
fn parse_batch(mut bytes: &[u8]) -> Vec<(&str, &str, &[u8])> {
    let mut objects = Vec::new();
    while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
        let header = std::str::from_utf8(&bytes[..nl]).expect("cat-file header");
        let mut parts = header.split(' ');
        let (Some(sha), Some(kind), Some(size)) = (parts.next(), parts.next(), parts.next()) else {
            panic!("unexpected cat-file header {header:?}");
        };
        let size: usize = size.parse().expect("object size");
        let start = nl + 1;
        objects.push((sha, kind, &bytes[start..start + size]));
        bytes = &bytes[(start + size + 1).min(bytes.len())..];
    }
    objects
}

/// Blob sha → a path it has in some ref's history.
fn object_paths(dir: &Path) -> HashMap<String, String> {
    String::from_utf8_lossy(&git(dir, &["rev-list", "--all", "--objects"]))
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(sha, path)| (sha.to_owned(), path.to_owned()))
        .collect()
}

struct Finder<'a> {
    secrets: &'a [Secret],
    leaks: Vec<Leak>,
}

impl Finder<'_> {
    fn text(&mut self, place: &str, text: &str) {
        for secret in self.secrets {
            if text.contains(&secret.value) {
                self.leaks.push(Leak {
                    slot: secret.slot.clone(),
                    place: place.to_owned(),
                    excerpt: excerpt(self.secrets, text, secret),
                });
            }
        }
    }

    /// A JSON value's text, and the decoded text of base64 `content` fields
    /// (files through the contents and git data APIs).
    fn json(&mut self, place: &str, value: &Value) {
        self.text(place, &value.to_string());
        let mut decoded = String::new();
        base64_contents(value, &mut decoded);
        if !decoded.is_empty() {
            self.text(&format!("{place} (a base64 file content)"), &decoded);
        }
    }
}

fn base64_contents(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "content"
                    && let Some(s) = v.as_str()
                {
                    let compact: String = s.split_whitespace().collect();
                    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(compact) {
                        out.push_str(&String::from_utf8_lossy(&bytes));
                        out.push('\n');
                    }
                }
                base64_contents(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| base64_contents(v, out)),
        _ => {}
    }
}

/// Up to 80 characters either side of the first `secret`, every secret masked.
fn excerpt(secrets: &[Secret], text: &str, secret: &Secret) -> String {
    let mut masked = text.to_owned();
    let mut ordered: Vec<&Secret> = secrets.iter().collect();
    ordered.sort_by_key(|s| std::cmp::Reverse(s.value.len()));
    for s in &ordered {
        masked = masked.replace(&s.value, &format!("«{}»", s.slot));
    }
    let marker = format!("«{}»", secret.slot);
    let at = masked.find(&marker).unwrap_or(0);
    let mut start = at.saturating_sub(80);
    while !masked.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + marker.len() + 80).min(masked.len());
    while !masked.is_char_boundary(end) {
        end += 1;
    }
    format!("{:?}", &masked[start..end])
}
