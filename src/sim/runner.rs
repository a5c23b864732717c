//! Local GitHub Actions job executor.
//!
//! The simulator's `workflow_dispatch` handler calls [`run_job`] to execute one job the
//! way a hosted runner would: a fresh workspace, an `actions/checkout`-style clone with
//! `persist-credentials: false`, the job's command under a clean, GitHub-shaped
//! environment, a GitHub-style log with secrets masked, and a hard timeout that kills
//! every process the job started. Failures of the runner itself (workspace, git) are
//! reported as a failed job with the reason in the log, never as a Rust error, because
//! that is what GitHub shows for them too.

use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::io;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::Command;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Reported as `RUNNER_NAME` and in the jobs API's `runner_name`.
pub const RUNNER_NAME: &str = "missions-sim-runner";
/// The identity `actions/checkout` users conventionally commit as.
pub const GIT_USER_NAME: &str = "github-actions[bot]";
pub const GIT_USER_EMAIL: &str = "41898282+github-actions[bot]@users.noreply.github.com";

/// Step names, in order, as the jobs API reports them.
pub const STEP_NAMES: [&str; 4] = ["Set up job", "Checkout", "Run", "Complete job"];

/// A partial line longer than this is flushed to the log without waiting for its
/// newline, so a process printing endlessly without newlines cannot grow memory.
const MAX_PENDING: usize = 8192;
/// How long to wait for output pipes to close after the job's processes were killed;
/// only a process that escaped both the process group and the tracking sweep (e.g. one
/// that cleared its environment) can keep them open longer.
const READER_GRACE: Duration = Duration::from_secs(2);
const FALLBACK_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Everything the caller knows about the job; the runner derives the rest.
#[derive(Clone)]
pub struct JobSpec {
    pub run_id: u64,
    pub run_number: u64,
    pub attempt: u32,
    /// The job id (`GITHUB_JOB`).
    pub job_name: String,
    pub workflow_name: String,
    /// `owner/repo`.
    pub repository: String,
    /// Full ref, e.g. `refs/heads/main`; a `refs/heads/X` ref is also checked out as
    /// local branch `X` so scripts can `git push origin HEAD:refs/heads/X`.
    pub git_ref: String,
    pub sha: String,
    /// `http(s)://…/owner/repo.git`, or `file://…` (tests); never contains credentials.
    pub clone_url: String,
    /// The installation token (`GITHUB_TOKEN`). Never logged: masked in the job log and
    /// redacted from `Debug`.
    pub token: String,
    pub api_url: String,
    pub server_url: String,
    pub actor: String,
    /// `GITHUB_ACTOR_ID`: the account id of `actor`.
    pub actor_id: u64,
    /// `GITHUB_EVENT_NAME`: what started the run (`workflow_dispatch`, `push`).
    pub event_name: String,
    /// Written to `GITHUB_EVENT_PATH`.
    pub event_payload: serde_json::Value,
    /// argv, run in the checkout; e.g. `["sh", "-c", "…"]`.
    pub command: Vec<String>,
    /// Applied last, so it can override anything (including `PATH`).
    pub extra_env: Vec<(String, String)>,
    /// Further secret values (e.g. provider keys in `extra_env`) masked in the log like
    /// the token is, as GitHub does for `secrets.*`.
    pub masked_values: Vec<String>,
    /// Covers the whole job, clone included.
    pub timeout: Duration,
    /// The per-job workspace is created under here (created if missing).
    pub work_root: PathBuf,
    /// Keep the workspace after the job, for debugging; its path is in the log.
    pub keep_workspace: bool,
    /// Cap on the returned log; the excess is dropped and counted in a final note.
    pub max_log_bytes: usize,
}

impl fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values of extra_env may be secrets as well, so only their names are shown.
        let extra_env: Vec<&str> = self.extra_env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("JobSpec")
            .field("run_id", &self.run_id)
            .field("run_number", &self.run_number)
            .field("attempt", &self.attempt)
            .field("job_name", &self.job_name)
            .field("workflow_name", &self.workflow_name)
            .field("repository", &self.repository)
            .field("git_ref", &self.git_ref)
            .field("sha", &self.sha)
            .field("clone_url", &self.clone_url)
            .field("token", &"***")
            .field("api_url", &self.api_url)
            .field("server_url", &self.server_url)
            .field("actor", &self.actor)
            .field("event_name", &self.event_name)
            .field("event_payload", &self.event_payload)
            .field("command", &self.command)
            .field("extra_env", &extra_env)
            .field(
                "masked_values",
                &format_args!("[{} redacted]", self.masked_values.len()),
            )
            .field("timeout", &self.timeout)
            .field("work_root", &self.work_root)
            .field("keep_workspace", &self.keep_workspace)
            .field("max_log_bytes", &self.max_log_bytes)
            .finish()
    }
}

/// GitHub's conclusion values. A job ends as `Success`, `Failure`, `Cancelled` or
/// `TimedOut`; `Skipped` is used for steps that never ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    Success,
    Failure,
    Cancelled,
    TimedOut,
    Skipped,
}

impl Conclusion {
    pub fn as_str(self) -> &'static str {
        match self {
            Conclusion::Success => "success",
            Conclusion::Failure => "failure",
            Conclusion::Cancelled => "cancelled",
            Conclusion::TimedOut => "timed_out",
            Conclusion::Skipped => "skipped",
        }
    }
}

impl fmt::Display for Conclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the jobs API's `steps` (all steps are `completed` once the job is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub name: String,
    /// 1-based, as in the API.
    pub number: u32,
    pub conclusion: Conclusion,
    /// Skipped steps get the time they were skipped for both timestamps.
    pub started_at: OffsetDateTime,
    pub completed_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub conclusion: Conclusion,
    /// The command's exit code; `None` if it never ran, was killed (timeout, cancel,
    /// signal) or could not be started.
    pub exit_code: Option<i32>,
    /// Masked and capped at `max_log_bytes` (plus the truncation note).
    pub log: String,
    /// How many secret values the job's own output held (masked in `log`);
    /// the runner's own lines are not counted. For tests that look for leaks.
    pub secrets_masked: usize,
    pub started_at: OffsetDateTime,
    pub completed_at: OffsetDateTime,
    /// Always the four [`STEP_NAMES`], in order.
    pub steps: Vec<StepOutcome>,
}

/// Runs one job to completion; see the module docs. Cancelling `cancel` (or the timeout
/// expiring) kills every process of the job and ends it as `Cancelled` (`TimedOut`).
/// Dropping the future also kills the job's processes and removes the workspace
/// (synchronously, from `Drop`), so aborting the task does not leak them.
pub async fn run_job(spec: JobSpec, cancel: CancellationToken) -> JobOutcome {
    let started_at = OffsetDateTime::now_utc();
    let deadline = Instant::now()
        .checked_add(spec.timeout)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600));
    let ctx = Ctx {
        spec: &spec,
        log: Log::new(spec.max_log_bytes, Masker::for_spec(&spec)),
        deadline,
        cancel,
        tracking_id: format!("missions_{}", uuid::Uuid::new_v4().simple()),
    };
    tracing::info!(run_id = spec.run_id, attempt = spec.attempt, job = %spec.job_name, "job started");

    let mut steps = Vec::with_capacity(STEP_NAMES.len());
    let mut step = |conclusion: Conclusion, started_at: OffsetDateTime| {
        let number = steps.len() as u32 + 1;
        steps.push(StepOutcome {
            name: STEP_NAMES[steps.len()].to_owned(),
            number,
            conclusion,
            started_at,
            completed_at: OffsetDateTime::now_utc(),
        });
    };
    // The conclusion that ends the job early, if any; later steps are then skipped.
    let mut ended: Option<Conclusion> = None;
    let mut exit_code = None;

    // 1. Set up job
    let t = OffsetDateTime::now_utc();
    let mut workspace = ctx.set_up().await;
    match workspace {
        Ok(_) => step(Conclusion::Success, t),
        Err(ref e) => {
            ctx.log
                .line(&format!("##[error]Failed to prepare the workspace: {e}"));
            ended = Some(Conclusion::Failure);
            step(Conclusion::Failure, t);
        }
    }

    // 2. Checkout
    let t = OffsetDateTime::now_utc();
    match &workspace {
        Ok(ws) if ctx.may_run(&mut ended) => match ctx.checkout(ws).await {
            Ok(()) => step(Conclusion::Success, t),
            Err(c) => {
                ended = Some(c);
                step(step_conclusion(c), t);
            }
        },
        _ => step(Conclusion::Skipped, t),
    }

    // 3. Run
    let t = OffsetDateTime::now_utc();
    match &workspace {
        Ok(ws) if ctx.may_run(&mut ended) => {
            let (result, code) = ctx.run_command(ws).await;
            exit_code = code;
            if let Err(c) = result {
                ended = Some(c);
                step(step_conclusion(c), t);
            } else {
                step(Conclusion::Success, t);
            }
        }
        _ => step(Conclusion::Skipped, t),
    }

    // 4. Complete job: runs whatever happened before, like GitHub's.
    let t = OffsetDateTime::now_utc();
    ctx.log.line("##[group]Complete job");
    ctx.log.line("Cleaning up orphan processes");
    let tracking = ctx.tracking_id.clone();
    // Each process's group is already gone; this catches anything that re-parented
    // itself into another group (setsid, daemons) but kept the job's environment.
    let _ = tokio::task::spawn_blocking(move || kill_orphans(None, &tracking)).await;
    if let Ok(ws) = &mut workspace {
        if ws.keep {
            ctx.log
                .line(&format!("Workspace kept at {}", ws.root.display()));
        } else if let Err(e) = ws.remove().await {
            // Not a job failure: the job's own work is done and reported.
            tracing::warn!(run_id = spec.run_id, path = %ws.root.display(), error = %e, "failed to remove job workspace");
            ctx.log
                .line(&format!("##[warning]Failed to remove the workspace: {e}"));
        }
    }
    ctx.log.line("##[endgroup]");
    step(Conclusion::Success, t);

    let conclusion = ended.unwrap_or(Conclusion::Success);
    tracing::info!(run_id = spec.run_id, attempt = spec.attempt, %conclusion, ?exit_code, "job finished");
    JobOutcome {
        conclusion,
        exit_code,
        log: ctx.log.finish(),
        secrets_masked: ctx.log.output_masked(),
        started_at,
        completed_at: OffsetDateTime::now_utc(),
        steps,
    }
}

/// GitHub reports the step that was running when a job timed out as cancelled.
fn step_conclusion(job: Conclusion) -> Conclusion {
    match job {
        Conclusion::TimedOut => Conclusion::Cancelled,
        c => c,
    }
}

struct Ctx<'a> {
    spec: &'a JobSpec,
    log: Log,
    deadline: Instant,
    cancel: CancellationToken,
    /// Set as `RUNNER_TRACKING_ID` in every process's environment (GitHub's runner does
    /// the same) so processes that left the process group can still be found and killed.
    tracking_id: String,
}

/// How a process run ended, from the job's point of view.
enum ProcessEnd {
    Exited(ExitStatus),
    Interrupted(Conclusion),
    /// Could not be spawned or waited for.
    Error(io::Error),
}

impl Ctx<'_> {
    fn interrupted(&self) -> Option<Conclusion> {
        if self.cancel.is_cancelled() {
            Some(Conclusion::Cancelled)
        } else if Instant::now() >= self.deadline {
            Some(Conclusion::TimedOut)
        } else {
            None
        }
    }

    /// Whether the next step may start. Not after the job has ended; and if it
    /// was cancelled or ran out of time between steps (no process to
    /// interrupt), the log still says why, as GitHub's does.
    fn may_run(&self, ended: &mut Option<Conclusion>) -> bool {
        if ended.is_some() {
            return false;
        }
        match self.interrupted() {
            Some(c) => {
                self.log_interruption(c);
                *ended = Some(c);
                false
            }
            None => true,
        }
    }

    fn log_interruption(&self, c: Conclusion) {
        if c == Conclusion::TimedOut {
            self.log.line(&format!(
                "##[error]The job running on runner {RUNNER_NAME} has exceeded the maximum execution time of {:?}.",
                self.spec.timeout
            ));
        }
        self.log.line("##[error]The operation was canceled.");
    }

    async fn set_up(&self) -> io::Result<Workspace> {
        let spec = self.spec;
        let log = &self.log;
        log.line("##[group]Set up job");
        log.line(&format!("Runner name: '{RUNNER_NAME}'"));
        log.line("Operating System: Linux");
        log.line(&format!(
            "Workflow: '{}', job: '{}', run: {} (number {}, attempt {})",
            spec.workflow_name, spec.job_name, spec.run_id, spec.run_number, spec.attempt
        ));
        let ws = Workspace::create(spec).await;
        if let Ok(ws) = &ws {
            log.line(&format!("Workspace: {}", ws.checkout.display()));
        }
        log.line("##[endgroup]");
        ws
    }

    /// `actions/checkout` with `persist-credentials: false`: the token is only on the
    /// clone's command line, so neither `.git/config` nor the job's scripts see it there.
    async fn checkout(&self, ws: &Workspace) -> Result<(), Conclusion> {
        let spec = self.spec;
        self.log.line("##[group]Run actions/checkout@v4");
        self.log.line("with:");
        self.log.line(&format!("  repository: {}", spec.repository));
        self.log.line(&format!("  ref: {}", spec.git_ref));
        self.log.line("  persist-credentials: false");
        self.log.line("##[endgroup]");
        self.log
            .line(&format!("Syncing repository: {}", spec.repository));

        let mut clone: Vec<OsString> = Vec::new();
        if !spec.token.is_empty() {
            clone.push("-c".into());
            clone.push(
                format!(
                    "http.extraHeader=Authorization: basic {}",
                    basic_credential(&spec.token)
                )
                .into(),
            );
        }
        // An empty helper list: never ask anyone else for credentials.
        clone.extend(
            [
                "-c",
                "credential.helper=",
                "clone",
                "--no-checkout",
                "--origin",
                "origin",
                "--",
            ]
            .map(OsString::from),
        );
        clone.push(spec.clone_url.clone().into());
        clone.push(ws.checkout.clone().into_os_string());
        self.git(ws, &ws.root, clone).await?;

        let checkout: Vec<&str> = match spec.git_ref.strip_prefix("refs/heads/") {
            Some(branch) => vec!["checkout", "--force", "--no-track", "-B", branch, &spec.sha],
            None => vec!["checkout", "--force", "--detach", &spec.sha],
        };
        self.git(ws, &ws.checkout, checkout).await?;
        self.git(
            ws,
            &ws.checkout,
            ["config", "--local", "user.name", GIT_USER_NAME],
        )
        .await?;
        self.git(
            ws,
            &ws.checkout,
            ["config", "--local", "user.email", GIT_USER_EMAIL],
        )
        .await?;
        Ok(())
    }

    async fn git<I, S>(&self, ws: &Workspace, cwd: &Path, args: I) -> Result<(), Conclusion>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        // Logged like actions/checkout does; the masker hides the credential.
        self.log
            .line(&format!("[command]git {}", shell_join(&args)));
        let mut cmd = Command::new("git");
        cmd.args(&args).current_dir(cwd);
        self.base_env(&mut cmd, ws);
        match self.run_process(cmd).await {
            ProcessEnd::Exited(status) if status.success() => Ok(()),
            ProcessEnd::Exited(status) => {
                self.log
                    .line(&format!("##[error]git failed: {}", describe_exit(status)));
                Err(Conclusion::Failure)
            }
            ProcessEnd::Interrupted(c) => {
                self.log_interruption(c);
                Err(c)
            }
            ProcessEnd::Error(e) => {
                self.log.line(&format!("##[error]Failed to run git: {e}"));
                Err(Conclusion::Failure)
            }
        }
    }

    /// Returns the step result and the command's exit code.
    async fn run_command(&self, ws: &Workspace) -> (Result<(), Conclusion>, Option<i32>) {
        let spec = self.spec;
        let argv: Vec<OsString> = spec.command.iter().map(OsString::from).collect();
        self.log
            .line(&format!("##[group]Run {}", shell_join(&argv)));
        self.log.line("##[endgroup]");
        let Some((program, args)) = spec.command.split_first() else {
            self.log.line("##[error]The job has no command to run.");
            return (Err(Conclusion::Failure), None);
        };
        let mut cmd = Command::new(program);
        cmd.args(args).current_dir(&ws.checkout);
        self.base_env(&mut cmd, ws);
        self.job_env(&mut cmd, ws);
        cmd.envs(spec.extra_env.iter().map(|(k, v)| (k, v)));
        match self.run_process(cmd).await {
            ProcessEnd::Exited(status) if status.success() => (Ok(()), Some(0)),
            ProcessEnd::Exited(status) => {
                let line = match status.code() {
                    Some(code) => format!("##[error]Process completed with exit code {code}."),
                    None => format!("##[error]Process {}.", describe_exit(status)),
                };
                self.log.line(&line);
                (Err(Conclusion::Failure), status.code())
            }
            ProcessEnd::Interrupted(c) => {
                self.log_interruption(c);
                (Err(c), None)
            }
            ProcessEnd::Error(e) => {
                self.log
                    .line(&format!("##[error]Failed to start {program}: {e}"));
                (Err(Conclusion::Failure), None)
            }
        }
    }

    /// What every process of the job gets, git included: nothing from the server's own
    /// environment except PATH, and a private HOME and git config.
    fn base_env(&self, cmd: &mut Command, ws: &Workspace) {
        cmd.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| FALLBACK_PATH.into()),
            )
            .env("HOME", &ws.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", &ws.gitconfig)
            // No tty to prompt on; a prompt would stop the (background) process group.
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("RUNNER_TRACKING_ID", &self.tracking_id);
    }

    fn job_env(&self, cmd: &mut Command, ws: &Workspace) {
        let spec = self.spec;
        let (ref_type, ref_name) = if let Some(tag) = spec.git_ref.strip_prefix("refs/tags/") {
            ("tag", tag)
        } else {
            (
                "branch",
                spec.git_ref
                    .strip_prefix("refs/heads/")
                    .unwrap_or(&spec.git_ref),
            )
        };
        let owner = spec.repository.split('/').next().unwrap_or_default();
        cmd.env("CI", "true")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_REPOSITORY", &spec.repository)
            .env("GITHUB_REPOSITORY_OWNER", owner)
            .env("GITHUB_REF", &spec.git_ref)
            .env("GITHUB_REF_NAME", ref_name)
            .env("GITHUB_REF_TYPE", ref_type)
            .env("GITHUB_SHA", &spec.sha)
            .env("GITHUB_RUN_ID", spec.run_id.to_string())
            .env("GITHUB_RUN_NUMBER", spec.run_number.to_string())
            .env("GITHUB_RUN_ATTEMPT", spec.attempt.to_string())
            .env("GITHUB_JOB", &spec.job_name)
            .env("GITHUB_WORKFLOW", &spec.workflow_name)
            .env("GITHUB_EVENT_NAME", &spec.event_name)
            .env("GITHUB_EVENT_PATH", &ws.event_path)
            .env("GITHUB_WORKSPACE", &ws.checkout)
            .env("GITHUB_TOKEN", &spec.token)
            .env("GITHUB_API_URL", &spec.api_url)
            .env("GITHUB_SERVER_URL", &spec.server_url)
            .env("GITHUB_ACTOR", &spec.actor)
            .env("GITHUB_ACTOR_ID", spec.actor_id.to_string())
            .env("RUNNER_TEMP", &ws.temp)
            .env("RUNNER_OS", "Linux")
            .env("RUNNER_NAME", RUNNER_NAME);
        // Scripts written for Actions append to these; they must exist.
        for (var, file) in FILE_COMMANDS {
            cmd.env(var, ws.temp.join(file));
        }
    }

    /// Runs `cmd` in its own process group with output streamed into the log, until it
    /// exits, the deadline passes or the job is cancelled. Whatever it left behind is
    /// killed either way, as GitHub's runner does at the end of a job.
    async fn run_process(&self, mut cmd: Command) -> ProcessEnd {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => return ProcessEnd::Error(e),
        };
        let mut guard = OrphanGuard {
            pgid: child.id().and_then(|pid| i32::try_from(pid).ok()),
            tracking_id: Some(self.tracking_id.clone()),
        };
        let readers = [
            child
                .stdout
                .take()
                .map(|r| tokio::spawn(pump(r, self.log.clone()))),
            child
                .stderr
                .take()
                .map(|r| tokio::spawn(pump(r, self.log.clone()))),
        ];

        let end = tokio::select! {
            biased;
            status = child.wait() => match status {
                Ok(status) => ProcessEnd::Exited(status),
                Err(e) => ProcessEnd::Error(e),
            },
            () = self.cancel.cancelled() => ProcessEnd::Interrupted(Conclusion::Cancelled),
            () = tokio::time::sleep_until(self.deadline) => ProcessEnd::Interrupted(Conclusion::TimedOut),
        };

        // Kill the group before reaping an interrupted child, so its pid (the pgid)
        // cannot have been reused by then.
        let (pgid, tracking_id) = (guard.pgid, guard.tracking_id.clone());
        let _ = tokio::task::spawn_blocking(move || {
            kill_orphans(pgid, tracking_id.as_deref().unwrap_or_default())
        })
        .await;
        guard.disarm();
        if !matches!(end, ProcessEnd::Exited(_)) {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }

        let aborts: Vec<_> = readers.iter().flatten().map(|h| h.abort_handle()).collect();
        let drained = tokio::time::timeout(READER_GRACE, async {
            for handle in readers.into_iter().flatten() {
                let _ = handle.await;
            }
        })
        .await;
        if drained.is_err() {
            for abort in &aborts {
                abort.abort();
            }
            self.log.line(
                "##[warning]Output streams were still open after the job's processes were killed.",
            );
        }
        end
    }
}

const FILE_COMMANDS: [(&str, &str); 5] = [
    ("GITHUB_OUTPUT", "_runner_file_commands/output"),
    ("GITHUB_ENV", "_runner_file_commands/env"),
    ("GITHUB_PATH", "_runner_file_commands/path"),
    ("GITHUB_STATE", "_runner_file_commands/state"),
    ("GITHUB_STEP_SUMMARY", "_runner_file_commands/step_summary"),
];

/// The Basic credential `actions/checkout` sends for an installation token.
fn basic_credential(token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
}

fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("terminated by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// For display only: quotes arguments the way a shell would need them.
fn shell_join(args: &[OsString]) -> String {
    args.iter()
        .map(|a| {
            let a = a.to_string_lossy();
            let plain = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@+,%".contains(&b));
            if plain {
                a.into_owned()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The job's directory tree. Removed on drop (unless kept) so an aborted job does not
/// leak it; the normal path removes it asynchronously via [`Workspace::remove`].
struct Workspace {
    root: PathBuf,
    /// `GITHUB_WORKSPACE`: the checkout.
    checkout: PathBuf,
    /// `RUNNER_TEMP`.
    temp: PathBuf,
    home: PathBuf,
    gitconfig: PathBuf,
    event_path: PathBuf,
    keep: bool,
    removed: bool,
}

impl Workspace {
    async fn create(spec: &JobSpec) -> io::Result<Self> {
        tokio::fs::create_dir_all(&spec.work_root).await?;
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let root = spec.work_root.join(format!(
            "run-{}-{}-{}",
            spec.run_id,
            spec.attempt,
            &unique[..8]
        ));
        // create_dir, not create_dir_all: fails rather than share another job's dir.
        tokio::fs::create_dir(&root).await?;
        // From here on, dropping `ws` cleans up.
        let mut ws = Workspace {
            checkout: root.join("workspace"),
            temp: root.join("temp"),
            home: root.join("home"),
            gitconfig: root.join("home").join(".gitconfig"),
            event_path: root.join("event.json"),
            root,
            keep: spec.keep_workspace,
            removed: false,
        };
        // Absolute paths for the job's environment even if work_root is relative.
        let root = tokio::fs::canonicalize(&ws.root).await?;
        ws.checkout = root.join("workspace");
        ws.temp = root.join("temp");
        ws.home = root.join("home");
        ws.gitconfig = ws.home.join(".gitconfig");
        ws.event_path = root.join("event.json");
        ws.root = root;

        tokio::fs::create_dir(&ws.checkout).await?;
        tokio::fs::create_dir_all(ws.temp.join("_runner_file_commands")).await?;
        tokio::fs::create_dir(&ws.home).await?;
        for (_, file) in FILE_COMMANDS {
            tokio::fs::write(ws.temp.join(file), b"").await?;
        }
        tokio::fs::write(
            &ws.gitconfig,
            "[advice]\n\tdetachedHead = false\n[init]\n\tdefaultBranch = main\n",
        )
        .await?;
        let event = serde_json::to_vec_pretty(&spec.event_payload).map_err(io::Error::other)?;
        tokio::fs::write(&ws.event_path, event).await?;
        Ok(ws)
    }

    async fn remove(&mut self) -> io::Result<()> {
        self.removed = true;
        tokio::fs::remove_dir_all(&self.root).await
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if !self.keep && !self.removed {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Kills a process's group and tracked processes if the future running it is dropped
/// (`kill_on_drop` alone would only kill the direct child).
struct OrphanGuard {
    pgid: Option<i32>,
    tracking_id: Option<String>,
}

impl OrphanGuard {
    fn disarm(&mut self) {
        self.pgid = None;
        self.tracking_id = None;
    }
}

impl Drop for OrphanGuard {
    fn drop(&mut self) {
        if self.pgid.is_some() || self.tracking_id.is_some() {
            kill_orphans(self.pgid, self.tracking_id.as_deref().unwrap_or_default());
        }
    }
}

/// SIGKILLs process group `pgid` and every process whose environment carries
/// `RUNNER_TRACKING_ID=tracking_id`. Blocking; neither libc nor nix is a dependency,
/// so signals go through the `kill` binary and processes are found via `/proc`.
fn kill_orphans(pgid: Option<i32>, tracking_id: &str) {
    if let Some(pgid) = pgid.filter(|&p| p > 1) {
        send_sigkill(&[format!("-{pgid}")]);
    }
    if tracking_id.is_empty() {
        return;
    }
    let marker = format!("RUNNER_TRACKING_ID={tracking_id}");
    // Repeat: a process may have forked between the scan and the kill.
    for _ in 0..10 {
        let pids = tracked_pids(marker.as_bytes());
        if pids.is_empty() {
            return;
        }
        send_sigkill(&pids);
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn send_sigkill(targets: &[String]) {
    for program in ["kill", "/bin/kill", "/usr/bin/kill"] {
        let status = std::process::Command::new(program)
            .args(["-s", "KILL", "--"])
            .args(targets)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Any exit status will do (ESRCH is expected); only a missing binary retries.
        if !matches!(&status, Err(e) if e.kind() == io::ErrorKind::NotFound) {
            return;
        }
    }
    tracing::warn!("no `kill` binary found; job processes may be left running");
}

/// Pids whose initial environment contains `marker` (zombies have none, so killed
/// processes drop out). Empty where `/proc` does not exist.
fn tracked_pids(marker: &[u8]) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id().to_string();
    dir.flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
                return None;
            }
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            environ
                .split(|&b| b == 0)
                .any(|kv| kv == marker)
                .then_some(name)
        })
        .collect()
}

/// Replaces secret values with `***`, longest first so a secret containing another is
/// masked whole.
struct Masker {
    secrets: Vec<Vec<u8>>,
}

impl Masker {
    fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<Vec<u8>> = values
            .into_iter()
            .filter(|v| !v.is_empty())
            .map(String::into_bytes)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Masker { secrets }
    }

    fn for_spec(spec: &JobSpec) -> Self {
        let mut values = spec.masked_values.clone();
        if !spec.token.is_empty() {
            values.push(spec.token.clone());
            // Would show up in e.g. GIT_TRACE output of the clone.
            values.push(basic_credential(&spec.token));
        }
        Masker::new(values)
    }

    fn max_len(&self) -> usize {
        self.secrets.first().map_or(0, Vec::len)
    }

    fn mask(&self, input: &[u8]) -> Vec<u8> {
        self.mask_counting(input).0
    }

    /// As [`Masker::mask`], with how many secrets were masked.
    fn mask_counting(&self, input: &[u8]) -> (Vec<u8>, usize) {
        if self.secrets.is_empty() {
            return (input.to_vec(), 0);
        }
        let mut out = Vec::with_capacity(input.len());
        let mut masked = 0;
        let mut i = 0;
        while i < input.len() {
            match self.secrets.iter().find(|s| input[i..].starts_with(s)) {
                Some(s) => {
                    out.extend_from_slice(b"***");
                    i += s.len();
                    masked += 1;
                }
                None => {
                    out.push(input[i]);
                    i += 1;
                }
            }
        }
        (out, masked)
    }
}

/// The job log, shared by the output readers; everything entering it is masked.
#[derive(Clone)]
struct Log {
    buf: Arc<Mutex<LogBuf>>,
    masker: Arc<Masker>,
    /// Secrets masked in the job's output (not in the runner's own lines).
    output_masked: Arc<std::sync::atomic::AtomicUsize>,
}

struct LogBuf {
    text: String,
    max: usize,
    dropped: usize,
}

impl Log {
    fn new(max: usize, masker: Masker) -> Self {
        Log {
            buf: Arc::new(Mutex::new(LogBuf {
                text: String::new(),
                max,
                dropped: 0,
            })),
            masker: Arc::new(masker),
            output_masked: Arc::default(),
        }
    }

    /// Masks the job's output, counting the secrets it held.
    fn mask_output(&self, bytes: &[u8]) -> Vec<u8> {
        let (masked, n) = self.masker.mask_counting(bytes);
        self.output_masked
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        masked
    }

    fn output_masked(&self) -> usize {
        self.output_masked
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A runner-written line.
    fn line(&self, line: &str) {
        let mut bytes = self.masker.mask(line.as_bytes());
        bytes.push(b'\n');
        self.push_masked(&bytes);
    }

    fn push_masked(&self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        // Once anything was dropped, drop everything after it too: a log with holes
        // would be more confusing than one cut off.
        if buf.dropped > 0 {
            buf.dropped += text.len();
            return;
        }
        let room = buf.max.saturating_sub(buf.text.len());
        if text.len() <= room {
            buf.text.push_str(&text);
        } else {
            let cut = floor_char_boundary(&text, room);
            buf.text.push_str(&text[..cut]);
            buf.dropped += text.len() - cut;
        }
    }

    fn finish(&self) -> String {
        let buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = buf.text.clone();
        if buf.dropped > 0 {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            let _ = writeln!(text, "[log truncated: {} bytes dropped]", buf.dropped);
        }
        text
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The largest `i <= at` that does not split a UTF-8 sequence in `bytes`.
fn utf8_cut(bytes: &[u8], mut at: usize) -> usize {
    at = at.min(bytes.len());
    // Step back at most 3 continuation bytes; beyond that the data is not UTF-8 anyway.
    for _ in 0..3 {
        if at == 0 || at == bytes.len() || bytes[at] & 0xC0 != 0x80 {
            break;
        }
        at -= 1;
    }
    at
}

/// Copies a process's output into the log line by line (so stdout and stderr
/// interleave at line granularity), masking before anything is written.
async fn pump<R: AsyncRead + Unpin>(mut reader: R, log: Log) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        if let Some(last_newline) = pending.iter().rposition(|&b| b == b'\n') {
            let rest = pending.split_off(last_newline + 1);
            log.push_masked(&log.mask_output(&pending));
            pending = rest;
        }
        if pending.len() >= MAX_PENDING {
            // Mask first, then keep back a tail that could be the start of a secret
            // continuing in the next read; everything before it is final.
            let masked = log.mask_output(&pending);
            let keep = log.masker.max_len().saturating_sub(1);
            let cut = utf8_cut(&masked, masked.len().saturating_sub(keep));
            log.push_masked(&masked[..cut]);
            pending = masked[cut..].to_vec();
        }
    }
    if !pending.is_empty() {
        pending.push(b'\n');
        log.push_masked(&log.mask_output(&pending));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const TOKEN: &str = "ghs_TestToken0123456789abcdef";

    fn git_env(cmd: &mut std::process::Command) -> &mut std::process::Command {
        cmd.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| FALLBACK_PATH.into()),
            )
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = git_env(&mut std::process::Command::new("git"))
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A bare repository with one commit on `main` (plus a second one on `main`, so the
    /// test can check out the first, non-tip commit).
    struct Fixture {
        dir: tempfile::TempDir,
        url: String,
        first_sha: String,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let bare = dir.path().join("origin.git");
            let src = dir.path().join("src");
            std::fs::create_dir(&src).unwrap();
            git(
                dir.path(),
                &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
            );
            git(&src, &["init", "-q", "-b", "main"]);
            std::fs::write(src.join("README.md"), "hello\n").unwrap();
            git(&src, &["add", "README.md"]);
            git(&src, &["commit", "-q", "-m", "first"]);
            let first_sha = git(&src, &["rev-parse", "HEAD"]);
            std::fs::write(src.join("README.md"), "hello again\n").unwrap();
            git(&src, &["commit", "-q", "-am", "second"]);
            git(&src, &["push", "-q", bare.to_str().unwrap(), "main"]);
            std::fs::create_dir(dir.path().join("work")).unwrap();
            Fixture {
                url: format!("file://{}", bare.display()),
                first_sha,
                dir,
            }
        }

        fn work_root(&self) -> PathBuf {
            self.dir.path().join("work")
        }

        fn spec(&self, script: &str) -> JobSpec {
            JobSpec {
                run_id: 42,
                run_number: 7,
                attempt: 2,
                job_name: "mission".into(),
                workflow_name: "Missions".into(),
                repository: "octo/repo".into(),
                git_ref: "refs/heads/main".into(),
                sha: self.first_sha.clone(),
                clone_url: self.url.clone(),
                token: TOKEN.into(),
                api_url: "http://127.0.0.1:1/api/v3".into(),
                server_url: "http://127.0.0.1:1".into(),
                actor: "octocat".into(),
                actor_id: 583231,
                event_name: "workflow_dispatch".into(),
                event_payload: serde_json::json!({"inputs": {"mission": "m-1"}}),
                command: vec!["sh".into(), "-c".into(), script.into()],
                extra_env: vec![("OUT".into(), self.dir.path().display().to_string())],
                masked_values: vec![],
                timeout: Duration::from_secs(60),
                work_root: self.work_root(),
                keep_workspace: false,
                max_log_bytes: 1 << 20,
            }
        }

        fn workspaces(&self) -> Vec<PathBuf> {
            std::fs::read_dir(self.work_root())
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect()
        }
    }

    fn step_conclusions(outcome: &JobOutcome) -> Vec<(&str, Conclusion)> {
        outcome
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.conclusion))
            .collect()
    }

    #[tokio::test]
    async fn success_runs_in_checkout_with_github_env() {
        let fx = Fixture::new();
        let script = r#"
            set -e
            env > "$OUT/env.txt"
            git rev-parse HEAD > "$OUT/head.txt"
            git rev-parse --abbrev-ref HEAD > "$OUT/branch.txt"
            git config user.name > "$OUT/user.txt"
            git config user.email >> "$OUT/user.txt"
            cat .git/config > "$OUT/gitconfig.txt"
            cp "$GITHUB_EVENT_PATH" "$OUT/event.json"
            echo "token=$GITHUB_TOKEN"
            echo "to stderr" >&2
            echo "ws=$GITHUB_WORKSPACE"
        "#;
        let spec = fx.spec(script);
        let outcome = run_job(spec, CancellationToken::new()).await;
        assert_eq!(outcome.conclusion, Conclusion::Success, "{}", outcome.log);
        assert_eq!(outcome.exit_code, Some(0));
        assert_eq!(
            step_conclusions(&outcome),
            STEP_NAMES
                .iter()
                .map(|n| (*n, Conclusion::Success))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            outcome.steps.iter().map(|s| s.number).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert!(outcome.started_at <= outcome.completed_at);

        // Token: in the child's environment, masked in the log.
        let log = &outcome.log;
        assert!(log.contains("token=***"), "{log}");
        assert!(!log.contains(TOKEN), "{log}");
        assert!(!log.contains(&basic_credential(TOKEN)), "{log}");
        assert!(log.contains("to stderr"));
        assert!(log.contains("##[group]Run sh -c"));
        assert!(
            log.contains("[command]git -c 'http.extraHeader=Authorization: basic ***'"),
            "{log}"
        );

        let env_txt = std::fs::read_to_string(fx.dir.path().join("env.txt")).unwrap();
        let env: HashMap<&str, &str> = env_txt.lines().filter_map(|l| l.split_once('=')).collect();
        let workspace = PathBuf::from(env["GITHUB_WORKSPACE"]);
        let root = workspace.parent().unwrap().to_path_buf();
        let expected = [
            ("CI", "true"),
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REPOSITORY", "octo/repo"),
            ("GITHUB_REPOSITORY_OWNER", "octo"),
            ("GITHUB_REF", "refs/heads/main"),
            ("GITHUB_REF_NAME", "main"),
            ("GITHUB_REF_TYPE", "branch"),
            ("GITHUB_SHA", fx.first_sha.as_str()),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_RUN_NUMBER", "7"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_JOB", "mission"),
            ("GITHUB_WORKFLOW", "Missions"),
            ("GITHUB_EVENT_NAME", "workflow_dispatch"),
            ("GITHUB_TOKEN", TOKEN),
            ("GITHUB_API_URL", "http://127.0.0.1:1/api/v3"),
            ("GITHUB_SERVER_URL", "http://127.0.0.1:1"),
            ("GITHUB_ACTOR", "octocat"),
            ("RUNNER_OS", "Linux"),
            ("RUNNER_NAME", RUNNER_NAME),
            ("GIT_CONFIG_NOSYSTEM", "1"),
        ];
        for (k, v) in expected {
            assert_eq!(env.get(k).copied(), Some(v), "{k}");
        }
        assert!(
            root.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("run-42-2-")
        );
        assert!(root.starts_with(std::fs::canonicalize(fx.work_root()).unwrap()));
        for k in [
            "HOME",
            "RUNNER_TEMP",
            "GITHUB_EVENT_PATH",
            "GIT_CONFIG_GLOBAL",
            "GITHUB_OUTPUT",
        ] {
            assert!(Path::new(env[k]).starts_with(&root), "{k}={}", env[k]);
        }
        assert!(!Path::new(env["GITHUB_EVENT_PATH"]).starts_with(&workspace));
        assert_ne!(Some(env["HOME"].to_owned()), std::env::var("HOME").ok());
        // A clean environment: nothing of the test process leaks (cargo sets CARGO_*).
        assert!(!env.keys().any(|k| k.starts_with("CARGO")), "{env_txt}");

        let read = |name: &str| std::fs::read_to_string(fx.dir.path().join(name)).unwrap();
        assert_eq!(read("head.txt").trim(), fx.first_sha);
        assert_eq!(read("branch.txt").trim(), "main");
        assert_eq!(
            read("user.txt"),
            format!("{GIT_USER_NAME}\n{GIT_USER_EMAIL}\n")
        );
        let gitconfig = read("gitconfig.txt").to_lowercase();
        assert!(
            !gitconfig.contains("extraheader") && !gitconfig.contains("authorization"),
            "{gitconfig}"
        );
        let event: serde_json::Value = serde_json::from_str(&read("event.json")).unwrap();
        assert_eq!(event["inputs"]["mission"], "m-1");

        assert!(!root.exists(), "workspace not removed");
        assert!(fx.workspaces().is_empty());
    }

    #[tokio::test]
    async fn nonzero_exit_is_failure() {
        let fx = Fixture::new();
        let outcome = run_job(fx.spec("echo failing; exit 3"), CancellationToken::new()).await;
        assert_eq!(outcome.conclusion, Conclusion::Failure);
        assert_eq!(outcome.exit_code, Some(3));
        assert!(outcome.log.contains("failing\n"));
        assert!(
            outcome
                .log
                .contains("##[error]Process completed with exit code 3.")
        );
        assert_eq!(outcome.steps[2].conclusion, Conclusion::Failure);
        assert_eq!(outcome.steps[3].conclusion, Conclusion::Success);
        assert!(fx.workspaces().is_empty());
    }

    #[tokio::test]
    async fn keep_workspace_keeps_it() {
        let fx = Fixture::new();
        let mut spec = fx.spec("echo kept > kept.txt");
        spec.keep_workspace = true;
        let outcome = run_job(spec, CancellationToken::new()).await;
        assert_eq!(outcome.conclusion, Conclusion::Success, "{}", outcome.log);
        let dirs = fx.workspaces();
        assert_eq!(dirs.len(), 1);
        assert!(dirs[0].join("workspace/kept.txt").exists());
        assert!(outcome.log.contains("Workspace kept at"));
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_tree() {
        let fx = Fixture::new();
        let marker = fx.dir.path().join("survived");
        let escaped = fx.dir.path().join("escaped");
        // A grandchild in the group, and one that left it via setsid.
        let script = format!(
            "(sleep 2; touch '{}') & setsid sh -c 'sleep 2; touch {}' & echo started; sleep 30; wait",
            marker.display(),
            escaped.display()
        );
        let mut spec = fx.spec(&script);
        spec.timeout = Duration::from_millis(1000);
        let begin = std::time::Instant::now();
        let outcome = run_job(spec, CancellationToken::new()).await;
        assert!(
            begin.elapsed() < Duration::from_secs(5),
            "took {:?}",
            begin.elapsed()
        );
        assert_eq!(outcome.conclusion, Conclusion::TimedOut, "{}", outcome.log);
        assert_eq!(outcome.exit_code, None);
        assert!(outcome.log.contains("started"));
        assert!(
            outcome
                .log
                .contains("has exceeded the maximum execution time")
        );
        assert_eq!(outcome.steps[2].conclusion, Conclusion::Cancelled);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert!(!marker.exists(), "grandchild survived the timeout");
        assert!(!escaped.exists(), "setsid grandchild survived the timeout");
        assert!(fx.workspaces().is_empty());
    }

    #[tokio::test]
    async fn short_timeout_still_times_out() {
        let fx = Fixture::new();
        let mut spec = fx.spec("sleep 30");
        spec.timeout = Duration::from_millis(500);
        let begin = std::time::Instant::now();
        let outcome = run_job(spec, CancellationToken::new()).await;
        assert!(
            begin.elapsed() < Duration::from_secs(4),
            "took {:?}",
            begin.elapsed()
        );
        assert_eq!(outcome.conclusion, Conclusion::TimedOut, "{}", outcome.log);
    }

    #[tokio::test]
    async fn background_leftovers_are_killed_after_success() {
        let fx = Fixture::new();
        let marker = fx.dir.path().join("survived");
        let script = format!("(sleep 1; touch '{}') & echo done", marker.display());
        let begin = std::time::Instant::now();
        let outcome = run_job(fx.spec(&script), CancellationToken::new()).await;
        assert_eq!(outcome.conclusion, Conclusion::Success, "{}", outcome.log);
        assert!(
            begin.elapsed() < Duration::from_secs(1),
            "waited for the orphan"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn cancel_stops_the_job() {
        let fx = Fixture::new();
        let cancel = CancellationToken::new();
        let job = tokio::spawn(run_job(fx.spec("echo started; sleep 30"), cancel.clone()));
        tokio::time::sleep(Duration::from_millis(700)).await;
        let begin = std::time::Instant::now();
        cancel.cancel();
        let outcome = job.await.unwrap();
        assert!(
            begin.elapsed() < Duration::from_secs(3),
            "took {:?}",
            begin.elapsed()
        );
        assert_eq!(outcome.conclusion, Conclusion::Cancelled, "{}", outcome.log);
        assert!(outcome.log.contains("The operation was canceled."));
        assert!(fx.workspaces().is_empty());
    }

    #[tokio::test]
    async fn cancelled_before_start_skips_steps() {
        let fx = Fixture::new();
        let cancel = CancellationToken::new();
        cancel.cancel();
        let outcome = run_job(fx.spec("exit 0"), cancel).await;
        assert_eq!(outcome.conclusion, Conclusion::Cancelled);
        assert_eq!(
            step_conclusions(&outcome),
            [
                ("Set up job", Conclusion::Success),
                ("Checkout", Conclusion::Skipped),
                ("Run", Conclusion::Skipped),
                ("Complete job", Conclusion::Success)
            ]
        );
    }

    #[tokio::test]
    async fn log_is_truncated() {
        let fx = Fixture::new();
        let mut spec = fx.spec(
            "i=0; while [ $i -lt 2000 ]; do echo \"line $i of some output\"; i=$((i+1)); done",
        );
        spec.max_log_bytes = 4096;
        let outcome = run_job(spec, CancellationToken::new()).await;
        assert_eq!(outcome.conclusion, Conclusion::Success, "{}", outcome.log);
        let (kept, note) = outcome
            .log
            .rsplit_once("[log truncated: ")
            .expect("truncation note");
        assert!(kept.len() <= 4096 + 1, "{}", kept.len());
        let dropped: usize = note
            .strip_suffix(" bytes dropped]\n")
            .unwrap()
            .parse()
            .unwrap();
        assert!(dropped > 30_000, "{dropped}");
        assert!(outcome.log.starts_with("##[group]Set up job\n"));
    }

    #[tokio::test]
    async fn bad_clone_url_fails_the_job() {
        let fx = Fixture::new();
        let mut spec = fx.spec("echo should-not-run");
        spec.clone_url = format!("file://{}/missing.git", fx.dir.path().display());
        let outcome = run_job(spec, CancellationToken::new()).await;
        assert_eq!(outcome.conclusion, Conclusion::Failure);
        assert_eq!(outcome.exit_code, None);
        assert!(outcome.log.contains("missing.git"), "{}", outcome.log);
        assert!(
            outcome.log.contains("##[error]git failed"),
            "{}",
            outcome.log
        );
        assert!(!outcome.log.contains("should-not-run\n"));
        assert!(!outcome.log.contains(TOKEN));
        assert_eq!(
            step_conclusions(&outcome),
            [
                ("Set up job", Conclusion::Success),
                ("Checkout", Conclusion::Failure),
                ("Run", Conclusion::Skipped),
                ("Complete job", Conclusion::Success)
            ]
        );
        assert!(fx.workspaces().is_empty());
    }

    #[tokio::test]
    async fn unknown_sha_fails_checkout() {
        let fx = Fixture::new();
        let mut spec = fx.spec("true");
        spec.sha = "0123456789012345678901234567890123456789".into();
        let outcome = run_job(spec, CancellationToken::new()).await;
        assert_eq!(outcome.conclusion, Conclusion::Failure, "{}", outcome.log);
        assert_eq!(outcome.steps[1].conclusion, Conclusion::Failure);
    }

    /// An HTTP server that records the first request's headers and answers 404: the
    /// clone must send the Basic credential in a header and fail cleanly.
    #[tokio::test]
    async fn http_clone_sends_basic_auth_header() {
        use tokio::io::AsyncWriteExt as _;
        let fx = Fixture::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            sock.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await
            .unwrap();
            String::from_utf8_lossy(&req).into_owned()
        });
        let mut spec = fx.spec("true");
        spec.clone_url = format!("http://127.0.0.1:{port}/octo/repo.git");
        let outcome = run_job(spec, CancellationToken::new()).await;
        let request = server.await.unwrap();
        assert!(
            request.starts_with("GET /octo/repo.git/info/refs?service=git-upload-pack"),
            "{request}"
        );
        let header = format!("authorization: basic {}", basic_credential(TOKEN));
        assert!(
            request.to_lowercase().contains(&header.to_lowercase()),
            "{request}"
        );
        assert_eq!(outcome.conclusion, Conclusion::Failure);
        assert!(!outcome.log.contains(TOKEN) && !outcome.log.contains(&basic_credential(TOKEN)));
    }

    #[tokio::test]
    async fn empty_command_fails() {
        let fx = Fixture::new();
        let mut spec = fx.spec("");
        spec.command.clear();
        let outcome = run_job(spec, CancellationToken::new()).await;
        assert_eq!(outcome.conclusion, Conclusion::Failure);
        assert!(outcome.log.contains("no command"));
    }

    #[tokio::test]
    async fn pump_masks_secret_across_flush_boundary() {
        let secret = "s3cr3t-value-XYZ";
        let log = Log::new(1 << 20, Masker::new([secret.to_owned()]));
        // The secret starts 2 bytes before the first 8192-byte read ends.
        let input = format!("{}{}{}", "a".repeat(8190), secret, "b".repeat(100));
        pump(input.as_bytes(), log.clone()).await;
        let text = log.finish();
        assert!(!text.contains(secret));
        assert_eq!(
            text,
            format!("{}***{}\n", "a".repeat(8190), "b".repeat(100))
        );
    }

    #[test]
    fn masker_prefers_longest() {
        let m = Masker::new(["abc".to_owned(), "abcdef".to_owned(), String::new()]);
        assert_eq!(m.mask(b"xabcdefy abc"), b"x***y ***");
    }

    #[test]
    fn debug_redacts_secrets() {
        let fx = Fixture::new();
        let mut spec = fx.spec("true");
        spec.extra_env
            .push(("PROVIDER_KEY".into(), "sk-very-secret".into()));
        spec.masked_values.push("sk-very-secret".into());
        let debug = format!("{spec:?}");
        assert!(
            !debug.contains(TOKEN) && !debug.contains("sk-very-secret"),
            "{debug}"
        );
        assert!(debug.contains("PROVIDER_KEY"));
    }

    #[test]
    fn conclusion_strings() {
        assert_eq!(Conclusion::TimedOut.as_str(), "timed_out");
        assert_eq!(
            serde_json::to_value(Conclusion::Cancelled).unwrap(),
            "cancelled"
        );
    }
}
