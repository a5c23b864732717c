//! The GitHub simulator: GitHub's REST subset, git hosting and a local Actions
//! runner over in-memory state, so the App runs whole missions offline.
//!
//! One process, one origin: `http://127.0.0.1:PORT` serves the REST API (as
//! `api.github.com` would), git smart HTTP at `/{owner}/{repo}.git` (as
//! `github.com` would), and a small admin API under `/_sim/` (not GitHub's).
//! State changes send the webhooks GitHub would send to the one App the
//! simulator hosts. Tests drive it in-process through [`Sim`]; `missions sim`
//! runs it standalone.
//!
//! - [`state`]: the world (users, repos, issues, PRs, check runs, runs).
//! - [`render`]: GitHub's JSON for each object, shared by REST and webhooks.
//! - [`api`]: the REST handlers; [`actions`]: workflow dispatch and runs;
//!   [`ci`]: push-triggered workflows (the repository's own CI).
//! - [`git`]: bare repositories on disk and `git http-backend`.
//! - [`runner`]: runs one job in a fresh clone; [`hooks`]: webhooks out.
//! - [`gitapi`]: git data, contents and branches over REST, and git smart HTTP.
//! - [`faults`]: fault injection, off by default.
//! - [`sample`]: the sample world; [`standalone`]: `missions sim`.

mod actions;
mod api;
mod ci;
pub mod faults;
pub mod git;
mod gitapi;
mod hooks;
pub mod queue;
pub mod render;
pub mod runner;
pub mod sample;
pub mod standalone;
pub mod state;
mod webhook_shape;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
pub use faults::FaultConfig;
pub use hooks::{DeliveryRecord, WebhookTarget};
use render::{RepoTimes, Urls};
use state::{AccountKind, App, Installation, Permission, Repo, Token, TokenSubject, World};

/// How long an installation token lives (GitHub: one hour).
pub const INSTALLATION_TOKEN_TTL: time::Duration = time::Duration::hours(1);

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Holds `git/` (bare repositories) and `jobs/` (job workspaces).
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub webhook: WebhookTarget,
    pub faults: FaultConfig,
    /// Workflow file name (`missions.yml`) → the argv a job runs. `${{ inputs.X }}`
    /// in an argument is replaced by the dispatch input X (as in a `run:` step).
    pub workflow_commands: HashMap<String, Vec<String>>,
    /// Workflows of several jobs, run one after another in one run (each
    /// only if the one before succeeded, as `needs:` does), each with a fresh
    /// checkout and its own `GITHUB_TOKEN`; takes precedence over
    /// `workflow_commands` for the same file. `${{ sim.artifacts }}` in an
    /// argument is a directory the run's jobs share (what upload-artifact and
    /// download-artifact carry between jobs on GitHub).
    pub workflow_jobs: HashMap<String, Vec<SimJob>>,
    /// The repository's own CI: workflow file name (`ci.yml`) → its jobs, run
    /// when a branch moves to a commit (REST ref create/update, contents API,
    /// git push, merges) whose `.github/workflows/<file>` declares a push
    /// trigger. That test is textual: a line `on: push`, `on: [.., push, ..]`,
    /// a `push:` key or a `- push` item; branch and path filters are not
    /// interpreted. Pushes made with a job's `GITHUB_TOKEN` start no
    /// workflow, as on GitHub. The jobs run independently (no `needs:`),
    /// each in a fresh checkout of the pushed commit with a read-only token
    /// and no `job_secrets`, and each is a check run of GitHub Actions (the
    /// `github-actions` App, not the installed one) named after the job,
    /// with the job's id; `always` and `contents_write` are ignored.
    pub push_workflows: HashMap<String, Vec<SimJob>>,
    /// Extra environment for every job.
    pub job_env: Vec<(String, String)>,
    /// Secrets (a workflow maps `secrets.*` into `env:`), masked in every
    /// job's log as GitHub masks them. They reach the jobs of
    /// `workflow_jobs` whose `contents_write` is false (the mission
    /// workflow's `agent` job, not `publish`), and the one job of a
    /// `workflow_commands` workflow.
    pub job_secrets: Vec<(String, String)>,
    pub job_timeout: Duration,
    pub max_concurrent_jobs: usize,
    pub keep_job_workspaces: bool,
    pub max_log_bytes: usize,
}

/// One job of a workflow the simulator runs (see [`SimConfig::workflow_jobs`]
/// and [`SimConfig::push_workflows`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimJob {
    /// The job's id in the workflow (`GITHUB_JOB`), e.g. `agent`.
    pub name: String,
    /// The argv it runs in its checkout; `${{ inputs.X }}` and
    /// `${{ sim.artifacts }}` are replaced inside single arguments.
    pub command: Vec<String>,
    /// Whether its token may push (`permissions: contents: write`).
    pub contents_write: bool,
    /// `if: always()`: it runs even when an earlier job failed or timed out.
    pub always: bool,
}

impl SimConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            webhook: WebhookTarget::default(),
            faults: FaultConfig::default(),
            workflow_commands: HashMap::new(),
            workflow_jobs: HashMap::new(),
            push_workflows: HashMap::new(),
            job_env: Vec::new(),
            job_secrets: Vec::new(),
            job_timeout: Duration::from_secs(6 * 60 * 60),
            max_concurrent_jobs: 2,
            keep_job_workspaces: false,
            max_log_bytes: 1 << 20,
        }
    }
}

/// One REST call as the simulator saw it (for conformance tests).
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    /// The route template, e.g. `/repos/{owner}/{repo}/issues/{issue_number}`.
    pub route: String,
    pub path: String,
    pub status: u16,
    pub request: Option<Value>,
    pub response: Option<Value>,
    /// Answered by fault injection, not by the operation.
    pub faulted: bool,
    /// Answered in the raw media type (a file's bytes, not JSON).
    pub raw: bool,
    /// `user:<login>`, `installation:<id>`, `job:<run>`, `app`, or `anonymous`.
    pub caller: String,
}

pub(crate) struct SimInner {
    pub world: Mutex<World>,
    pub git: git::GitHost,
    pub urls: Urls,
    pub hooks: hooks::Hooks,
    pub faults: Arc<faults::Faults>,
    pub config: SimConfig,
    pub clock: SharedClock,
    pub changed: watch::Sender<u64>,
    pub exchanges: Mutex<Vec<Exchange>>,
    pub job_slots: Arc<Semaphore>,
    pub shutdown: CancellationToken,
}

/// A running simulator. Cheap to clone.
#[derive(Clone)]
pub struct Sim {
    pub(crate) inner: Arc<SimInner>,
}

/// A repository to create.
#[derive(Debug, Clone)]
pub struct RepoSpec {
    pub owner: String,
    pub name: String,
    pub private: bool,
    pub default_branch: String,
    /// Files of the initial commit (path → bytes).
    pub files: Vec<(String, Vec<u8>)>,
}

impl RepoSpec {
    pub fn new(full_name: &str) -> Self {
        let (owner, name) = full_name.split_once('/').expect("owner/name");
        Self {
            owner: owner.into(),
            name: name.into(),
            private: false,
            default_branch: "main".into(),
            files: vec![("README.md".into(), format!("# {name}\n").into_bytes())],
        }
    }

    pub fn file(mut self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.into(), content.into()));
        self
    }
}

impl Sim {
    /// Binds, then serves until [`Sim::shutdown`].
    pub async fn start(config: SimConfig, clock: SharedClock) -> anyhow::Result<Self> {
        use anyhow::Context;
        std::fs::create_dir_all(config.data_dir.join("git"))
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        std::fs::create_dir_all(config.data_dir.join("jobs"))?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the simulator to {}", config.listen))?;
        let addr = listener.local_addr()?;
        let origin = format!("http://{addr}");
        let (changed, _) = watch::channel(0);
        let faults = Arc::new(faults::Faults::new(config.faults.clone()));
        let hooks = hooks::Hooks::start(config.webhook.clone(), faults.clone(), changed.clone());
        let inner = Arc::new(SimInner {
            world: Mutex::new(World::default()),
            git: git::GitHost::new(config.data_dir.join("git")),
            urls: Urls {
                api: origin.clone(),
                web: origin,
            },
            hooks,
            faults,
            job_slots: Arc::new(Semaphore::new(config.max_concurrent_jobs.max(1))),
            config,
            clock,
            changed,
            exchanges: Mutex::default(),
            shutdown: CancellationToken::new(),
        });
        let router = api::router(inner.clone());
        let stop = inner.shutdown.clone();
        tokio::spawn(async move {
            let serve =
                axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "the GitHub simulator stopped serving");
            }
        });
        tracing::info!(%addr, "GitHub simulator listening");
        Ok(Self { inner })
    }

    /// `http://127.0.0.1:PORT`: the REST base URL and the git server URL.
    pub fn url(&self) -> &str {
        &self.inner.urls.api
    }

    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    pub fn set_webhook_target(&self, url: &str, secret: SecretString) {
        *self.inner.hooks.target.lock().expect("target") = WebhookTarget {
            url: Some(url.to_owned()),
            secret: Some(secret),
        };
    }

    /// Registers the App whose JWTs are signed with the key whose public half is given.
    pub fn register_app(&self, id: u64, slug: &str, owner: &str, public_key_pem: &str) {
        let mut world = self.world();
        world.ensure_account(owner, AccountKind::Organization);
        let bot_login = format!("{slug}[bot]");
        world.ensure_account(&bot_login, AccountKind::Bot);
        world.ensure_account("github-actions[bot]", AccountKind::Bot);
        world.app = Some(App {
            id,
            slug: slug.to_owned(),
            name: slug.to_owned(),
            owner: owner.to_owned(),
            public_key_pem: public_key_pem.to_owned(),
            created_at: self.inner.clock.now(),
            bot_login,
        });
    }

    /// A user and a personal access token for them.
    pub fn add_user(&self, login: &str) -> String {
        let mut world = self.world();
        world.ensure_account(login, AccountKind::User);
        let token = format!("ghp_sim{}", uuid::Uuid::new_v4().simple());
        world.issue_token(
            token.clone(),
            Token {
                subject: TokenSubject::User(login.to_owned()),
                expires_at: None,
            },
        );
        token
    }

    pub fn add_org(&self, login: &str) {
        self.world()
            .ensure_account(login, AccountKind::Organization);
    }

    pub fn set_permission(&self, full_name: &str, login: &str, permission: Permission) {
        let mut world = self.world();
        world.ensure_account(login, AccountKind::User);
        if let Some(repo) = world.repos.get_mut(full_name) {
            repo.collaborators.insert(login.to_owned(), permission);
        }
    }

    /// A repository with one commit holding `spec.files` on its default branch.
    pub async fn create_repo(&self, spec: RepoSpec) -> anyhow::Result<String> {
        let full_name = format!("{}/{}", spec.owner, spec.name);
        let now = self.inner.clock.now();
        let author = git::Signature {
            name: spec.owner.clone(),
            email: format!("{}@users.noreply.sim", spec.owner),
            date: now,
        };
        let sha = self
            .inner
            .git
            .create_repo(
                &full_name,
                &spec.default_branch,
                &spec.files,
                &author,
                "Initial commit",
            )
            .await?;
        let mut world = self.world();
        if !world.accounts.contains_key(&spec.owner) {
            world.ensure_account(&spec.owner, AccountKind::User);
        }
        let id = world.next_id();
        let mut repo = Repo {
            id,
            owner: spec.owner.clone(),
            name: spec.name.clone(),
            private: spec.private,
            default_branch: spec.default_branch.clone(),
            description: None,
            created_at: now,
            updated_at: now,
            pushed_at: now,
            collaborators: Default::default(),
            labels: Default::default(),
            next_number: 1,
            issues: Default::default(),
            comments: Default::default(),
            reactions: Vec::new(),
            check_runs: Default::default(),
            statuses: Vec::new(),
            check_suites: Default::default(),
            workflows: Vec::new(),
            rulesets: Vec::new(),
            protection: Default::default(),
            merge_queue: Default::default(),
            merge_groups: Vec::new(),
            runs: Default::default(),
            push_runs: Default::default(),
            job_logs: Default::default(),
        };
        for (path, _) in &spec.files {
            if let Some(file) = path.strip_prefix(".github/workflows/") {
                let wf_id = world.next_id();
                repo.workflows.push(state::Workflow {
                    id: wf_id,
                    name: file
                        .trim_end_matches(".yml")
                        .trim_end_matches(".yaml")
                        .to_owned(),
                    path: path.clone(),
                    created_at: now,
                });
            }
        }
        world.repos.insert(full_name.clone(), repo);
        drop(world);
        self.bump();
        Ok(sha)
    }

    /// Installs the App on `account` for `repositories` and sends `installation.created`.
    pub fn install_app(&self, account: &str, repositories: &[&str]) -> u64 {
        let mut world = self.world();
        let id = world.next_id();
        world.installations.insert(
            id,
            Installation {
                id,
                account: account.to_owned(),
                repositories: repositories.iter().map(|r| (*r).to_owned()).collect(),
                created_at: self.inner.clock.now(),
            },
        );
        let urls = &self.inner.urls;
        if let Some(app) = world.app.clone() {
            let inst = world.installations[&id].clone();
            let repos: Vec<Value> = inst
                .repositories
                .iter()
                .filter_map(|r| world.repos.get(r))
                .map(|r| {
                    json!({"id": r.id, "node_id": format!("R_{}", r.id), "name": r.name,
                           "full_name": r.full_name(), "private": r.private})
                })
                .collect();
            let payload = json!({
                "action": "created",
                "installation": render::installation(urls, &world, &app, &inst),
                "repositories": repos,
                "sender": render::user_by_login(urls, &world, account),
            });
            self.inner.hooks.send("installation", payload);
        }
        drop(world);
        self.bump();
        id
    }

    /// Everything the App was sent, in the order it was sent.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.inner.hooks.log.lock().expect("delivery log").clone()
    }

    /// Deliveries queued or being sent right now.
    pub fn deliveries_pending(&self) -> usize {
        self.inner.hooks.pending()
    }

    /// Every REST call answered so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.inner.exchanges.lock().expect("exchanges").clone()
    }

    /// Reads the world (do not hold it across an await).
    pub fn read<T>(&self, f: impl FnOnce(&World) -> T) -> T {
        f(&self.world())
    }

    /// Every bearer token issued so far: users', installations', jobs' (also
    /// those since revoked), for tests that look for leaked secrets.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.read(|w| w.issued_tokens().to_vec())
    }

    /// The log of a workflow run's job (masked, as GitHub shows it).
    pub fn run_log(&self, full_name: &str, run_id: u64) -> Option<String> {
        self.read(|w| {
            w.repos
                .get(full_name)?
                .runs
                .get(&run_id)
                .map(|r| r.log.clone())
        })
    }

    /// The log of job `job_id` (masked, as GitHub shows it), once it ended:
    /// a push-triggered workflow's job, or a dispatched run's one job.
    pub fn job_log(&self, full_name: &str, job_id: u64) -> Option<String> {
        self.read(|w| ci::job_log(w.repos.get(full_name)?, job_id))
    }

    pub fn git(&self) -> &git::GitHost {
        &self.inner.git
    }

    /// A watch that changes whenever the world changes or a delivery completes:
    /// tests wait on it instead of sleeping.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// Waits until `check` returns Some, re-checking at every change, or fails at the deadline.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Sim) -> Option<T>,
    ) -> anyhow::Result<T> {
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if let Some(v) = check(self) {
                return Ok(v);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                anyhow::bail!("timed out after {timeout:?} waiting for {what}");
            }
        }
    }

    pub(crate) fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.inner.world()
    }

    /// Changes a repository's settings as its admin would in GitHub's web
    /// interface (rulesets, branch protection); no webhook follows.
    pub fn repo_settings<T>(&self, full_name: &str, f: impl FnOnce(&mut state::Repo) -> T) -> T {
        let mut world = self.world();
        let repo = world
            .repos
            .get_mut(full_name)
            .unwrap_or_else(|| panic!("no repository {full_name}"));
        f(repo)
    }

    /// Spends installation `installation_id`'s primary rate limit until
    /// `resets_in` from now: GitHub answers its token 403 until then.
    pub fn spend_rate_limit(&self, installation_id: u64, resets_in: Duration) {
        let now = self.inner.clock.now().unix_timestamp();
        let reset = now + resets_in.as_secs().max(1) as i64;
        self.world().rate_limits.insert(
            format!("installation:{installation_id}"),
            state::RateWindow {
                limit: state::RateWindow::LIMIT,
                used: state::RateWindow::LIMIT,
                reset,
            },
        );
    }

    /// `login` presses *Merge when ready* on pull request `number` of a base
    /// whose rules require a merge queue (GitHub offers this through GraphQL
    /// only); see [`queue`].
    pub async fn enqueue(&self, full_name: &str, number: u64, login: &str) -> anyhow::Result<()> {
        queue::enqueue(&self.inner, full_name, number, login).await
    }

    fn bump(&self) {
        self.inner.bump();
    }
}

impl SimInner {
    pub fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Sends `event` for `repo`: adds `repository`, `sender`, `installation`
    /// (and `organization` for an org-owned repo) to `fields`, as GitHub does.
    /// Nothing is sent for a repository the App is not installed on.
    pub fn emit(
        &self,
        world: &World,
        event: &str,
        full_name: &str,
        sender: &str,
        mut fields: serde_json::Map<String, Value>,
    ) {
        // GitHub writes the repository's timestamps as Unix seconds in `push` only.
        let times = if event == "push" {
            RepoTimes::PushEvent
        } else {
            RepoTimes::Iso
        };
        let Some(repo) = world.repos.get(full_name) else {
            return;
        };
        let Some(installation) = world.installation_for(full_name) else {
            return;
        };
        let urls = &self.urls;
        fields.insert(
            "repository".into(),
            render::repository(urls, world, repo, times),
        );
        let owner = world.account(&repo.owner);
        if owner.kind == AccountKind::Organization {
            fields.insert("organization".into(), render::organization(urls, &owner));
        }
        fields.insert("sender".into(), render::user_by_login(urls, world, sender));
        fields.insert(
            "installation".into(),
            json!({"id": installation.id, "node_id": format!("MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u{}", installation.id)}),
        );
        self.hooks.send(event, Value::Object(fields));
    }
}

/// Builds a JSON object from `key => value` pairs.
#[macro_export]
#[doc(hidden)]
macro_rules! sim_fields {
    ($($k:literal => $v:expr),* $(,)?) => {{
        let mut m = serde_json::Map::new();
        $( m.insert($k.to_owned(), serde_json::json!($v)); )*
        m
    }};
}
