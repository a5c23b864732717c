//! Runs the demo: the simulator, the App and a model (the scripted one by
//! default; `--model` for others) on this machine; plays the maintainer and
//! prints what happens on "GitHub" as it happens.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::local::{self, LocalModel};
use super::own_repo::{self, RepoCopy};
use super::scripts::{self, Story};
use super::{project, repo_spec, workflow_jobs};
use crate::clock;
use crate::config::RetryPolicy;
use crate::engine::HandlerRegistry;
use crate::engine::missions::DriverConfig;
use crate::github::auth::AppCredentials;
use crate::github::client::GitHubApp;
use crate::llm::config::{
    ConfigError, Engine, ModelConfig, ModelSection, ModelSpec, ModelSpecs, ProviderKind, Role,
    build_provider, is_loopback_url,
};
use crate::llm::pricing::{self, Prices};
use crate::mission::control::{STICKY_MARKER, sticky_figures};
use crate::server::{MissionsOptions, Server, ServerOptions};
use crate::sim::{RepoSpec, Sim, SimConfig, sample};
use crate::store::Store;

#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Leave everything running at the end, for a person to look at.
    pub keep: bool,
    /// Where the simulator, the database and the scripts live; a temporary
    /// directory when `None` (kept with `repo`, for fetching the result).
    pub dir: Option<PathBuf>,
    /// Longest the demo may take before it gives up (from its start: the
    /// local model's loading counts); `None`: 5 minutes with the scripted
    /// model, 60 with any other.
    pub timeout: Option<Duration>,
    /// `--model` values (see [`ModelSpecs`]); none: the scripted model.
    pub models: Vec<String>,
    /// `--engine` values: `ENGINE` for every role or `ROLE=ENGINE`.
    pub engines: Vec<String>,
    /// A repository on disk whose HEAD commit the mission works on, instead
    /// of the sample project.
    pub repo: Option<PathBuf>,
    /// The issue: its first line the title, the rest the body (needed with
    /// `repo`).
    pub issue_file: Option<PathBuf>,
    /// The `missions` binary the jobs run; this process's own when `None`
    /// (a bench or a test passes the built binary).
    pub missions_binary: Option<PathBuf>,
    /// Which sample project the mission works on.
    pub project: DemoProject,
}

/// The demo's sample projects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoProject {
    /// `textstats`, a small Python command-line program with tests.
    #[default]
    Textstats,
    /// `todo`, a to-do list served by Python's standard library: the user
    /// tester uses it in headless Chromium.
    Web,
}

/// The demo's default timeout with the scripted model.
pub const SCRIPTED_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The demo's default timeout with any other model.
pub const MODEL_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// The budget of the demo's mission.
pub const BUDGET_USD: f64 = 5.0;
/// What the maintainer answers the scripted orchestrator's question about
/// the sample issue.
pub const SAMPLE_ANSWER: &str = "Yes: compare words case-insensitively.";

/// How the demo's mission ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// The issue was closed with the final report.
    Done { report: String },
    /// The mission paused; the reason as on the issue.
    Paused { reason: String },
    /// The demo's timeout passed first; `job` is the job that was still
    /// running, if one was.
    TimedOut {
        after: Duration,
        job: Option<String>,
    },
    /// Ctrl-C or SIGTERM: the demo stopped its jobs.
    Interrupted,
}

/// One workflow run of the mission (a job), as the simulator kept it.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub id: u64,
    /// The job's key (`feature-F1.1`).
    pub job: String,
    pub role: String,
    /// `success`, `failure`, …; `None` while it runs.
    pub conclusion: Option<String>,
    /// Its log, as GitHub would show it (secrets masked).
    pub log: String,
}

/// What the demo did.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    pub ending: Ending,
    /// How far the mission got: `scoping`, `planned`, `milestone k of n`,
    /// `done` (the last phase shown before a pause).
    pub phase: String,
    pub runs: Vec<RunRecord>,
    pub elapsed: Duration,
    /// The error line of the last job that failed, if one did.
    pub last_job_error: Option<String>,
    /// The demo's directory, when it is kept (`--repo`, `--dir`).
    pub dir: Option<PathBuf>,
}

impl DemoSummary {
    /// The final report, if the mission completed.
    pub fn report(&self) -> Option<&str> {
        match &self.ending {
            Ending::Done { report } => Some(report),
            _ => None,
        }
    }

    /// The command line's result: the report, or why there is none.
    pub fn into_result(self) -> anyhow::Result<String> {
        let last = self
            .last_job_error
            .as_deref()
            .map(|e| {
                let hint = job_error_hint(e)
                    .map(|h| format!("\n{h}"))
                    .unwrap_or_default();
                format!("\nthe last failed job said: {e}{hint}")
            })
            .unwrap_or_default();
        match self.ending {
            Ending::Done { report } => Ok(report),
            Ending::Paused { reason } => bail!("the mission paused: {reason}{last}"),
            Ending::Interrupted => {
                bail!("interrupted: the demo stopped the mission's jobs{last}")
            }
            Ending::TimedOut { after, job } => bail!(
                "the demo mission did not finish within {} (reached: {}{}); a longer --timeout MINUTES gives it more time{last}",
                minutes(after),
                self.phase,
                job.map(|j| format!("; job {j} was still running"))
                    .unwrap_or_default()
            ),
        }
    }

    /// The agent figures of every job, summed (see [`AgentFigures`]).
    pub fn agent_figures(&self) -> AgentFigures {
        let mut sum = AgentFigures::default();
        for run in &self.runs {
            sum.add(&AgentFigures::of_log(&run.log));
        }
        sum
    }
}

fn minutes(d: Duration) -> String {
    let secs = d.as_secs();
    if secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{:.1} min", secs as f64 / 60.0)
    }
}

/// What the agent runs of some jobs took, from the jobs' logs: each agent run
/// ends with a line `agent NAME: KIND after T model call(s), C command(s), R
/// tool call(s) rejected, K compaction(s), I tokens in (H cached), O out,
/// $X.XX`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentFigures {
    pub agent_runs: u64,
    pub model_calls: u64,
    pub commands: u64,
    pub rejected_calls: u64,
    pub compactions: u64,
    pub tokens_in: u64,
    pub tokens_cached: u64,
    pub tokens_out: u64,
    pub cost_micros: u64,
}

impl AgentFigures {
    /// The figures of every agent line in `log`.
    pub fn of_log(log: &str) -> AgentFigures {
        static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        let re = RE.get_or_init(|| {
            regex::Regex::new(
                r"agent \S+: .+? after ([\d,]+) model call\(s\), ([\d,]+) command\(s\), (?:([\d,]+) tool call\(s\) rejected, )?(?:([\d,]+) compaction\(s\), )?([\d,]+) tokens in(?: \(([\d,]+) cached\))?, ([\d,]+) out, \$([\d,]+)\.(\d\d)",
            )
            .expect("the agent line pattern")
        });
        let mut sum = AgentFigures::default();
        for caps in re.captures_iter(log) {
            let n = |i: usize| {
                caps.get(i)
                    .map(|m| m.as_str().replace(',', "").parse::<u64>().unwrap_or(0))
                    .unwrap_or(0)
            };
            sum.agent_runs += 1;
            sum.model_calls += n(1);
            sum.commands += n(2);
            sum.rejected_calls += n(3);
            sum.compactions += n(4);
            sum.tokens_in += n(5);
            sum.tokens_cached += n(6);
            sum.tokens_out += n(7);
            sum.cost_micros += n(8) * 1_000_000 + n(9) * 10_000;
        }
        sum
    }

    pub fn add(&mut self, other: &AgentFigures) {
        self.agent_runs += other.agent_runs;
        self.model_calls += other.model_calls;
        self.commands += other.commands;
        self.rejected_calls += other.rejected_calls;
        self.compactions += other.compactions;
        self.tokens_in += other.tokens_in;
        self.tokens_cached += other.tokens_cached;
        self.tokens_out += other.tokens_out;
        self.cost_micros += other.cost_micros;
    }
}

const SECRET: &str = "demo-webhook-secret";

/// Prints as things happen, with the time since the start.
struct Printer {
    start: Instant,
}

impl Printer {
    fn line(&self, text: impl AsRef<str>) {
        println!(
            "[{:>5.1}s] {}",
            self.start.elapsed().as_secs_f64(),
            text.as_ref()
        );
    }
}

/// What the printer has already shown.
#[derive(Default)]
struct Seen {
    comments: BTreeSet<u64>,
    runs_started: BTreeSet<u64>,
    runs_done: BTreeSet<u64>,
    checks_done: BTreeSet<u64>,
    pulls: BTreeSet<u64>,
    /// The sticky comment's budget row when last shown.
    budget: Option<String>,
    /// The error line of the last job that failed.
    last_job_error: Option<String>,
}

/// The models of the demo's mission, settled before anything starts.
struct DemoModels {
    /// The `models:` section of `.github/missions.yml`.
    yaml: String,
    /// Model keys from this environment, for the agent jobs (masked).
    secrets: Vec<(String, String)>,
    /// `ANTHROPIC_BASE_URL` / `OPENAI_BASE_URL`, for every job.
    env: Vec<(String, String)>,
    /// Which role runs on what, for people (`None`: all scripted).
    described: Option<String>,
    /// The models counted at $0 because they run on this machine.
    free: Vec<String>,
}

/// The scripted model's settings: the demo's scripts, counted at Claude
/// Sonnet's prices.
fn scripted_section(script_dir: &Path) -> ModelSection {
    ModelSection {
        provider: Some(ProviderKind::Scripted),
        model: Some("scripted-demo".into()),
        script: Some(script_dir.join("{agent}.json")),
        prices: pricing::default_prices("claude-sonnet-4-5"),
        ..ModelSection::default()
    }
}

const FREE: Prices = Prices {
    input: 0.0,
    output: 0.0,
    cache_read: 0.0,
    cache_write: 0.0,
};

/// The local model's settings, at `url` (a placeholder before it runs).
fn local_section(url: &str, context: u32) -> ModelSection {
    ModelSection {
        provider: Some(ProviderKind::OpenAi),
        model: Some(local::MODEL.into()),
        base_url: Some(url.into()),
        prices: Some(FREE),
        context_window: Some(context),
        ..ModelSection::default()
    }
}

/// Settles the models: the `models:` section, and which keys and variables
/// of `env` the jobs get. Fails, before anything starts, on a model without
/// a price (unless it runs on this machine) or a missing key, naming what to
/// set.
fn settle_models(
    specs: &ModelSpecs,
    engines: &BTreeMap<Role, Engine>,
    script_dir: &Path,
    local: Option<(&str, u32)>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<DemoModels> {
    let set = |var: &str| env(var).filter(|v| !v.trim().is_empty());
    let (local_url, local_context) =
        local.unwrap_or(("http://127.0.0.1:1/v1", local::DEFAULT_CONTEXT));
    let free = std::cell::RefCell::new(Vec::<String>::new());
    let section = |spec: &ModelSpec| -> ModelSection {
        match spec {
            ModelSpec::Scripted => scripted_section(script_dir),
            ModelSpec::Local => {
                let mut free = free.borrow_mut();
                let name = format!("local ({})", local::MODEL);
                if !free.contains(&name) {
                    free.push(name);
                }
                local_section(local_url, local_context)
            }
            ModelSpec::Api(section) => {
                let mut section = section.clone();
                let model = section.model.clone().unwrap_or_default();
                let provider = section.provider.unwrap_or(ProviderKind::Anthropic);
                let url = section
                    .base_url
                    .clone()
                    .or_else(|| provider.base_url_env().and_then(set))
                    .unwrap_or_else(|| {
                        ModelConfig::new(provider, "")
                            .effective_base_url()
                            .to_owned()
                    });
                if section.prices.is_none()
                    && pricing::default_prices(&model).is_none()
                    && is_loopback_url(&url)
                {
                    section.prices = Some(FREE);
                    let mut free = free.borrow_mut();
                    let name = spec.describe();
                    if !free.contains(&name) {
                        free.push(name);
                    }
                }
                section
            }
        }
    };
    let mut models = specs.to_models_config(section);
    for (role, engine) in engines {
        models.section_mut(*role).engine = Some(engine.clone());
    }
    let free = free.into_inner();
    let mut secrets: Vec<(String, String)> = Vec::new();
    for role in Role::ALL {
        let spec = specs.for_role(role);
        let cfg = models
            .resolve(role, &ModelConfig::default())
            .map_err(|e| match e {
                ConfigError::MissingPrices { model, .. } => anyhow::anyhow!(
                    "--model {}: model {model:?} has no built-in price, and the demo counts a model at $0 only when it runs on this machine (a base URL on 127.0.0.1, localhost or [::1]); use a model with a built-in price (docs/configuration.md lists them)",
                    spec.describe()
                ),
                ConfigError::Invalid { key, message } if key.ends_with(".engine") => {
                    anyhow::anyhow!("--engine {role}={}: {message}", engines.get(&role).map(|e| e.to_string()).unwrap_or_default())
                }
                other => anyhow::anyhow!("--model {}: {other}", spec.describe()),
            })?;
        if cfg.provider == ProviderKind::Scripted || *spec == ModelSpec::Local {
            continue;
        }
        match build_provider(&cfg, env) {
            Ok(_) => {}
            Err(ConfigError::MissingKey { var, .. }) => bail!(
                "no API key for the {role}'s model ({}): set {var} in this shell; the demo hands it to the mission's agent jobs as a secret (masked in their logs) and never prints it or writes it into the repository",
                spec.describe()
            ),
            Err(other) => bail!("--model {}: {other}", spec.describe()),
        }
        let key_env = cfg.key_env().to_owned();
        if let Some(value) = set(&key_env)
            && !secrets.iter().any(|(k, _)| *k == key_env)
        {
            secrets.push((key_env, value));
        }
    }
    let env_vars = [ProviderKind::Anthropic, ProviderKind::OpenAi]
        .iter()
        .filter_map(|p| p.base_url_env())
        .filter_map(|var| set(var).map(|v| (var.to_owned(), v)))
        .collect();
    let described = (!specs.all_scripted()).then(|| {
        if specs.roles.values().all(|s| *s == specs.default) {
            format!("every role on {}", specs.default.describe())
        } else {
            Role::ALL
                .iter()
                .map(|&r| format!("{r} on {}", specs.for_role(r).describe()))
                .collect::<Vec<_>>()
                .join(", ")
        }
    });
    Ok(DemoModels {
        yaml: models.to_yaml(),
        secrets,
        env: env_vars,
        described,
        free,
    })
}

/// `--engine` values: `ENGINE` (every role) or `ROLE=ENGINE`; later ones win.
fn parse_engines(values: &[String]) -> anyhow::Result<BTreeMap<Role, Engine>> {
    let mut engines = BTreeMap::new();
    for value in values {
        let (roles, engine) = match value.split_once('=') {
            Some((role, engine)) if !role.contains(':') => {
                let role: Role = serde_json::from_value(json!(role.trim())).map_err(|_| {
                    anyhow::anyhow!(
                        "--engine {value}: unknown role `{role}`; use orchestrator, worker, scrutiny or user-testing"
                    )
                })?;
                (vec![role], engine)
            }
            _ => (Role::ALL.to_vec(), value.as_str()),
        };
        let engine: Engine = engine
            .parse()
            .map_err(|e| anyhow::anyhow!("--engine {value}: {e}"))?;
        for role in roles {
            if engine.is_builtin() {
                engines.remove(&role);
            } else {
                engines.insert(role, engine.clone());
            }
        }
    }
    Ok(engines)
}

/// Runs the demo mission to its end: done, paused, or out of time (all three
/// are a summary; `Err` is for what kept the demo from running).
pub async fn run(options: DemoOptions) -> anyhow::Result<DemoSummary> {
    crate::llm::http::install_crypto_provider();
    let printer = Printer {
        start: Instant::now(),
    };

    // Everything that can be refused is checked before anything starts.
    let specs = ModelSpecs::parse(&options.models)?;
    if options.repo.is_some() && options.issue_file.is_none() {
        bail!(
            "--repo needs --issue-file FILE: the issue the mission works on (its first line the title, a leading `# ` dropped; the rest the body)"
        );
    }
    let web = options.project == DemoProject::Web;
    if web {
        if options.repo.is_some() {
            bail!("--project web is a sample project and --repo is yours: give one of them");
        }
        if !options.engines.is_empty() {
            bail!("--project web runs on the built-in agent loop; drop --engine");
        }
        // The user tester's browser: without it the web demo shows nothing.
        let browser = crate::browser::BrowserConfig::new(Vec::new(), PathBuf::new());
        if !browser.chromium.is_file() {
            bail!(
                "--project web needs Chromium for its user tester, and there is none at {}: install it (Debian/Ubuntu: `sudo apt-get install chromium`) or set MISSIONS_CHROMIUM to a Chrome or Chromium binary",
                browser.chromium.display()
            );
        }
    }
    let issue_text = match &options.issue_file {
        Some(file) => Some(own_repo::read_issue(file)?),
        None => None,
    };
    let copy: Option<RepoCopy> = match &options.repo {
        Some(path) => Some(own_repo::read_head(path)?),
        None => None,
    };
    let uses_local = specs.uses(|m| *m == ModelSpec::Local);
    let local_context = if uses_local {
        local::check_installed().await?;
        local::context()?
    } else {
        local::DEFAULT_CONTEXT
    };
    let env = crate::llm::config::process_env;
    // The directory only matters for the scripted model's path, not its checks.
    let engines = parse_engines(&options.engines)?;
    settle_models(&specs, &engines, Path::new("/"), None, &env)?;
    let timeout = options.timeout.unwrap_or(if specs.all_scripted() {
        SCRIPTED_TIMEOUT
    } else {
        MODEL_TIMEOUT
    });
    // The whole run counts, the local model's loading included.
    let deadline = tokio::time::Instant::now() + timeout;

    let temp;
    let (dir, kept) = match &options.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (d.clone(), true)
        }
        None if options.repo.is_some() => {
            // Kept: the result is fetched from it afterwards.
            let d = tempfile::Builder::new()
                .prefix("missions-demo-")
                .tempdir()?
                .keep();
            (d, true)
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("missions-demo-")
                .tempdir()?;
            (temp.path().to_path_buf(), false)
        }
    };
    let script_dir = dir.join("scripts");
    // Where the web project's app answers while it is user-tested.
    let web_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    if web {
        super::web::write_scripts(&script_dir, &super::web::app_url(web_port))?;
    } else {
        scripts::write_for(
            &script_dir,
            &Story {
                ask_question: true,
                ..Story::default()
            },
            &engines,
        )?;
    }
    // Engines are installed before anything starts (a job would install one
    // on first use too, but inside its time limit), into the cache the jobs
    // are pointed at.
    let engines_dir = crate::agent::engine::engines_dir(&env);
    let mut distinct: Vec<&Engine> = Vec::new();
    for engine in engines.values() {
        if !distinct.contains(&engine) {
            distinct.push(engine);
        }
    }
    for engine in distinct {
        if let Some(preset) = crate::agent::engine::preset(engine) {
            let started = Instant::now();
            let installed = preset.ensure_installed(&engines_dir).await?;
            printer.line(format!(
                "engine {engine}: {} ({}, ready in {:.1}s)",
                preset.versions,
                installed.display(),
                started.elapsed().as_secs_f64()
            ));
        }
    }
    let exe = match &options.missions_binary {
        Some(p) => p.clone(),
        None => {
            std::env::current_exe().context("cannot find the missions binary to run jobs with")?
        }
    };

    // The local model first: the models' section needs its address.
    // Ctrl-C (or SIGTERM) stops the jobs and the local model before the demo
    // ends: left running, an agent job would go on calling its model.
    let mut interrupted = Box::pin(crate::server::shutdown_signal()?);
    let local_server = if uses_local {
        let started = Instant::now();
        printer.line(format!(
            "starting the local model ({}, context {local_context} tokens): {} serve",
            local::MODEL,
            local::script().display()
        ));
        let within = deadline.saturating_duration_since(tokio::time::Instant::now());
        let log = dir.join("local-model.log");
        let server = tokio::select! {
            server = LocalModel::start(
                &log,
                local_context,
                within.min(local::READY_WITHIN),
            ) => server?,
            // Dropping the start kills the server's process group.
            _ = &mut interrupted => bail!("interrupted while the local model was loading"),
        };
        printer.line(format!(
            "local model ready at {} in {:.1}s (its log: {})",
            server.url,
            started.elapsed().as_secs_f64(),
            server.log.display()
        ));
        Some(server)
    } else {
        None
    };
    let models = settle_models(
        &specs,
        &engines,
        &script_dir,
        local_server.as_ref().map(|s| (s.url.as_str(), s.context)),
        &env,
    )?;

    // The repository: the sample project, or the person's own.
    let (spec, repo_blurb) = match &copy {
        None if web => {
            let port = web_port;
            let mut spec = RepoSpec::new(super::web::REPO);
            for (path, content) in super::web::files(
                &script_dir.display().to_string(),
                sample::WORKFLOW_YAML,
                BUDGET_USD,
                port,
            ) {
                spec = spec.file(&path, content.into_bytes());
            }
            if !specs.all_scripted() {
                let mut yml = project::missions_yml_with_models(&models.yaml, BUDGET_USD, None);
                yml.push_str(&super::web::app_settings(port));
                replace_file(&mut spec, ".github/missions.yml", yml.into_bytes());
            }
            (
                spec,
                format!(
                    "a to-do list web app with tests, served at {} while it is user-tested",
                    super::web::app_url(port)
                ),
            )
        }
        None => {
            let mut spec = repo_spec(&script_dir);
            if !specs.all_scripted() || !engines.is_empty() {
                let yml = project::missions_yml_with_models(
                    &models.yaml,
                    BUDGET_USD,
                    Some(project::TEST_COMMAND),
                );
                replace_file(&mut spec, ".github/missions.yml", yml.into_bytes());
            }
            (spec, "a small Python program with tests".to_owned())
        }
        Some(copy) => {
            let mut spec = RepoSpec::new(&format!("{}/{}", sample::ORG, copy.name));
            spec.files.clear();
            let theirs = copy
                .files
                .iter()
                .find(|(p, _)| p == ".github/missions.yml")
                .map(|(_, c)| c.as_slice());
            let demo_yml = project::missions_yml_with_models(&models.yaml, BUDGET_USD, None);
            let yml = own_repo::merged_missions_yml(theirs, &demo_yml)?;
            crate::repo_config::RepoConfig::parse(&yml).map_err(|e| {
                anyhow::anyhow!(
                    "the demo's .github/missions.yml for {} does not read back: {e}",
                    copy.top.display()
                )
            })?;
            for (path, content) in &copy.files {
                if path != ".github/missions.yml" && path != ".github/workflows/missions.yml" {
                    spec = spec.file(path, content.clone());
                }
            }
            spec = spec.file(".github/missions.yml", yml.into_bytes()).file(
                ".github/workflows/missions.yml",
                sample::WORKFLOW_YAML.as_bytes().to_vec(),
            );
            let mut blurb = format!(
                "a copy of {} at {}",
                copy.top.display(),
                &copy.commit[..12.min(copy.commit.len())]
            );
            if !copy.submodules.is_empty() {
                blurb.push_str(&format!(
                    "; submodules not copied: {}",
                    copy.submodules.join(", ")
                ));
            }
            if theirs.is_some() {
                blurb.push_str("; its .github/missions.yml kept but for models, label and budget");
            }
            (spec, blurb)
        }
    };

    // GitHub, simulated.
    let clock = clock::system();
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
        .context("generating the App's key")?;
    let private_pem = key.to_pkcs8_pem(LineEnding::LF)?.to_string();
    let public_pem = key.to_public_key().to_public_key_pem(LineEnding::LF)?;
    let mut config = SimConfig::new(dir.join("sim"));
    config
        .workflow_jobs
        .insert(sample::WORKFLOW_FILE.into(), workflow_jobs(&exe));
    let job_timeout = if specs.all_scripted() {
        Duration::from_secs(120)
    } else {
        timeout
    };
    config.job_timeout = job_timeout;
    config.job_secrets = models.secrets.clone();
    config.job_env = models.env.clone();
    if !engines.is_empty() {
        config.job_env.push((
            crate::agent::engine::ENGINES_DIR_VAR.to_owned(),
            engines_dir.display().to_string(),
        ));
    }
    let sim = Sim::start(config, clock.clone()).await?;
    let world = sample::seed_with(&sim, &public_pem, spec).await?;
    let repo = world.repo.clone();
    let api = sim.url().to_owned();

    // The App.
    let github = Arc::new(GitHubApp::new(
        &api,
        AppCredentials::new(sample::APP_ID, SecretString::from(private_pem)),
        clock.clone(),
    )?);
    let store = Store::open(&format!("sqlite://{}", dir.join("missions.db").display())).await?;
    let server = Server::start(
        store.clone(),
        ServerOptions {
            webhook_secrets: vec![SecretString::from(SECRET)],
            handlers: HandlerRegistry::standard(),
            retry: RetryPolicy::default(),
            clock: clock.clone(),
            run_event_loop: true,
            missions: Some(MissionsOptions {
                control_token: None,
                control_hosts: Vec::new(),
                app: github,
                driver: DriverConfig {
                    reconcile_every: Duration::from_secs(5),
                    job_timeout,
                    ..DriverConfig::default()
                },
            }),
        },
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app_url = format!("http://{}", listener.local_addr()?);
    let stop = tokio_util::sync::CancellationToken::new();
    let shutdown = stop.clone().cancelled_owned();
    let server_task = tokio::spawn(async move { server.serve(listener, shutdown).await });
    sim.set_webhook_target(&format!("{app_url}/webhook"), SecretString::from(SECRET));

    printer.line(format!(
        "GitHub simulator at {api}; the App at {app_url}; repository {repo} ({repo_blurb})"
    ));
    if let Some(described) = &models.described {
        printer.line(format!("models: {described}"));
    }
    if !models.free.is_empty() {
        printer.line(format!(
            "{}: counted at $0: a model on this machine",
            models.free.join(", ")
        ));
    }

    let alice = Maintainer {
        http: reqwest::Client::new(),
        api: api.clone(),
        repo: repo.clone(),
        token: world.maintainer.token.clone(),
    };
    let mut seen = Seen::default();

    // Open and label the issue.
    let (title, body, answer) = match &issue_text {
        Some((title, body)) => (title.clone(), body.clone(), own_repo::NO_PREFERENCE),
        None if web => (
            super::web::ISSUE_TITLE.to_owned(),
            super::web::ISSUE_BODY.to_owned(),
            own_repo::NO_PREFERENCE,
        ),
        None => (
            project::ISSUE_TITLE.to_owned(),
            project::ISSUE_BODY.to_owned(),
            SAMPLE_ANSWER,
        ),
    };
    let issue = alice
        .call("POST", "/issues", json!({"title": title, "body": body}))
        .await?["number"]
        .as_u64()
        .context("issue number")?;
    printer.line(format!(
        "alice opened issue #{issue}: {title} ({api}/repos/{repo}/issues/{issue})"
    ));
    printer.line(format!(
        "mission control: {app_url}/missions/{repo}/{issue}"
    ));
    alice
        .call(
            "POST",
            &format!("/issues/{issue}/labels"),
            json!({"labels": ["mission"]}),
        )
        .await?;
    printer.line(format!("alice added the label `mission` to #{issue}"));

    // Rounds of questions answered: a real model may ask again after the
    // first answer; every round gets one (the first the sample's own answer).
    let mut answered = 0;
    let mut approved = false;
    let mut merged: BTreeSet<u64> = BTreeSet::new();
    let mut phase = "scoping".to_owned();
    let mut changes = sim.subscribe();
    let ending = loop {
        changes.borrow_and_update();
        report_news(&sim, &repo, &api, &printer, &mut seen);
        let state = Snapshot::take(&sim, &repo, issue);
        if let Some(p) = &state.phase {
            phase = p.clone();
        }
        if state.issue_closed {
            phase = "done".to_owned();
            break Ending::Done {
                report: state.final_report.unwrap_or_default(),
            };
        }
        if answered < state.questions_asked {
            let answer = if answered == 0 {
                answer
            } else {
                own_repo::NO_PREFERENCE
            };
            answered = state.questions_asked;
            alice
                .call(
                    "POST",
                    &format!("/issues/{issue}/comments"),
                    json!({ "body": answer }),
                )
                .await?;
            printer.line(format!("alice answered on #{issue}: \"{answer}\""));
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
            printer.line(format!("alice approved the plan PR #{pr}"));
        }
        for pr in state.ready_to_merge {
            if merged.insert(pr) {
                alice
                    .call("PUT", &format!("/pulls/{pr}/merge"), json!({}))
                    .await?;
                printer.line(format!(
                    "alice merged milestone PR #{pr} ({api}/repos/{repo}/pulls/{pr})"
                ));
            }
        }
        if let Some(paused) = state.paused {
            break Ending::Paused {
                reason: pause_reason(&paused),
            };
        }
        let waited = tokio::select! {
            waited = tokio::time::timeout_at(deadline, changes.changed()) => waited.is_ok(),
            _ = &mut interrupted => break Ending::Interrupted,
        };
        if !waited {
            let job = sim.read(|w| {
                w.repos[&repo]
                    .runs
                    .values()
                    .filter(|r| r.conclusion.is_none())
                    .filter_map(|r| r.inputs.get("job").and_then(Value::as_str))
                    .next_back()
                    .map(str::to_owned)
            });
            break Ending::TimedOut {
                after: timeout,
                job,
            };
        }
    };
    report_news(&sim, &repo, &api, &printer, &mut seen);
    match &ending {
        Ending::Done { report } => {
            printer.line(format!(
                "issue #{issue} closed with the mission's final report:"
            ));
            println!("\n{report}");
        }
        Ending::Paused { .. } => {}
        Ending::Interrupted => printer.line("interrupted: stopping the jobs"),
        Ending::TimedOut { after, .. } => {
            printer.line(format!(
                "stopping: the mission did not finish within {}",
                minutes(*after)
            ));
        }
    }
    if let Some(copy) = &copy {
        let bare = dir.join("sim/git").join(format!("{repo}.git"));
        println!(
            "\nThe mission's work is in the simulator's repository on disk (main has the merged milestones; missions/{issue}/… the branches):\n  {}\nFetch main into your checkout as the branch missions-result:\n  git -C {} fetch {} main:missions-result\nThe demo's files are kept in {} (delete it when done).",
            bare.display(),
            own_repo::shell_word(&copy.top),
            own_repo::shell_word(&bare),
            dir.display()
        );
    }
    let runs = sim.read(|w| {
        w.repos[&repo]
            .runs
            .values()
            .map(|r| RunRecord {
                id: r.id,
                job: r
                    .inputs
                    .get("job")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned(),
                role: r
                    .inputs
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned(),
                conclusion: r.conclusion.clone(),
                log: r.log.clone(),
            })
            .collect()
    });
    if options.keep && ending != Ending::Interrupted {
        println!(
            "Still running (Ctrl-C to stop):\n  simulator API  {api}/repos/{repo}\n  issue          {api}/repos/{repo}/issues/{issue}\n  git            git clone {api}/{repo}.git (token in {})\n  App            {app_url}/healthz\n  data           {}",
            dir.join("alice.token").display(),
            dir.display()
        );
        std::fs::write(dir.join("alice.token"), &world.maintainer.token)?;
        crate::server::shutdown_signal()?.await;
    }
    stop.cancel();
    server_task.await??;
    store.close().await;
    sim.shutdown();
    // The jobs still running end (killed with their process groups) before
    // the model server does and the demo returns.
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < until
        && sim.read(|w| w.repos[&repo].runs.values().any(|r| r.conclusion.is_none()))
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(server) = local_server {
        server.stop().await;
    }
    Ok(DemoSummary {
        ending,
        phase,
        runs,
        elapsed: printer.start.elapsed(),
        last_job_error: seen.last_job_error,
        dir: kept.then_some(dir),
    })
}

/// The reason of a pause comment (`⏸️ The mission is paused: REASON.` and
/// what to do), as one line.
fn pause_reason(comment: &str) -> String {
    let first = comment.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let reason = match first.split_once("The mission is paused: ") {
        Some((_, reason)) => reason,
        None => first,
    };
    reason.trim().trim_end_matches('.').to_owned()
}

/// What to do about a job's error, when the demo knows: a rejected key.
fn job_error_hint(error: &str) -> Option<String> {
    if !error.contains("rejected the API key") {
        return None;
    }
    let var = error
        .rsplit("check ")
        .next()?
        .trim()
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_');
    let valid = !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then(|| format!("set {var} to a valid key in this shell and run the demo again"))
}

/// Puts `content` at `path` in place of what the spec has there.
fn replace_file(spec: &mut RepoSpec, path: &str, content: Vec<u8>) {
    spec.files.retain(|(p, _)| p != path);
    spec.files.push((path.to_owned(), content));
}

struct Maintainer {
    http: reqwest::Client,
    api: String,
    repo: String,
    token: String,
}

impl Maintainer {
    async fn call(&self, method: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}/repos/{}{path}", self.api, self.repo);
        let response = self
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes())?, &url)
            .bearer_auth(&self.token)
            .header("accept", "application/vnd.github+json")
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {body}");
        }
        Ok(body)
    }
}

/// What the maintainer reacts to.
pub(super) struct Snapshot {
    /// How many times the orchestrator has asked questions on the issue.
    pub questions_asked: usize,
    pub plan_pr: Option<u64>,
    pub ready_to_merge: Vec<u64>,
    pub issue_closed: bool,
    pub final_report: Option<String>,
    pub paused: Option<String>,
    /// How far the mission is, from the sticky comment (`scoping`,
    /// `planned`, `milestone k of n`, `done`); `None` while paused or before
    /// the comment exists.
    pub phase: Option<String>,
}

impl Snapshot {
    pub fn take(sim: &Sim, repo: &str, issue: u64) -> Snapshot {
        let bot = format!("{}[bot]", sample::APP_SLUG);
        sim.read(|w| {
            let r = &w.repos[repo];
            let app_comments: Vec<_> = r.comments.values().filter(|c| c.user == bot).collect();
            let on_issue = |text: &str| {
                app_comments
                    .iter()
                    .find(|c| c.issue_number == issue && c.body.contains(text))
                    .map(|c| c.body.clone())
            };
            let plan_branch = format!("missions/{issue}/plan");
            let plan_pr = r
                .issues
                .values()
                .find(|i| i.pull.as_ref().is_some_and(|p| p.head_ref == plan_branch))
                .map(|i| i.number);
            let ready_to_merge = r
                .issues
                .values()
                .filter(|i| {
                    i.state == crate::sim::state::IssueState::Open
                        && i.pull.as_ref().is_some_and(|p| p.merged_at.is_none())
                        && app_comments.iter().any(|c| {
                            c.issue_number == i.number && c.body.contains("Ready to merge")
                        })
                })
                .map(|i| i.number)
                .collect();
            Snapshot {
                questions_asked: app_comments
                    .iter()
                    .filter(|c| {
                        c.issue_number == issue && c.body.contains("the orchestrator has questions")
                    })
                    .count(),
                plan_pr,
                ready_to_merge,
                issue_closed: r.issues[&issue].state == crate::sim::state::IssueState::Closed,
                final_report: on_issue("## Mission complete").map(|b| strip_marker(&b)),
                paused: on_issue("The mission is paused").map(|b| strip_marker(&b)),
                phase: on_issue(STICKY_MARKER).and_then(|b| sticky_phase(&b)),
            }
        })
    }
}

/// The mission's phase as the sticky comment shows it, in the demo's words.
fn sticky_phase(body: &str) -> Option<String> {
    let state = body
        .lines()
        .find_map(|l| l.trim().strip_prefix("**State**:"))?
        .trim();
    let figures = sticky_figures(body);
    // "██░░ 1 of 2 merged"
    let (merged, total) = figures.get("milestones").and_then(|m| {
        let words: Vec<&str> = m.split_whitespace().collect();
        let of = words.iter().position(|w| *w == "of")?;
        Some((
            words.get(of.checked_sub(1)?)?.parse::<u64>().ok()?,
            words.get(of + 1)?.parse::<u64>().ok()?,
        ))
    })?;
    Some(match state {
        "scoping" | "waiting for answers" => "scoping".into(),
        "plan in review" => "planned".into(),
        "building" | "validating" | "waiting for merge" => {
            format!("milestone {} of {total}", (merged + 1).min(total.max(1)))
        }
        "done" => "done".into(),
        "aborted" => "aborted".into(),
        // Paused (or a state this reading does not know): keep the last.
        _ => return None,
    })
}

/// The sticky comment's budget row, as the demo prints it: `spent $0.04 of
/// $5.00 (tokens 12,345 in, 678 out, 9,000 cache read)`; `None` before any
/// token was counted.
fn spend_line(budget_row: &str) -> Option<String> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            r"^\$\$?([0-9.]+)(?: of \$\$?([0-9.]+))? · tokens (\d+) in, (\d+) out, (\d+) cache read",
        )
        .expect("the budget row pattern")
    });
    let caps = re.captures(budget_row.trim())?;
    let n = |i: usize| caps[i].parse::<u64>().unwrap_or(0);
    let (tokens_in, out, cached) = (n(3), n(4), n(5));
    if tokens_in + out + cached == 0 {
        return None;
    }
    let limit = caps
        .get(2)
        .map(|l| format!(" of ${}", l.as_str()))
        .unwrap_or_default();
    Some(format!(
        "spent ${}{limit} (tokens {} in, {} out, {} cache read)",
        &caps[1],
        thousands(tokens_in),
        thousands(out),
        thousands(cached)
    ))
}

/// `12345` → `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The error a failed job's log ends with (`error: …`), if it has one.
fn job_error(log: &str) -> Option<String> {
    fn last_error(text: &str) -> Option<&str> {
        text.lines().map(str::trim).rfind(|l| {
            l.starts_with("error:")
                || (l.starts_with("##[error]") && !l.contains("Process completed with exit code"))
        })
    }
    // The agent's job says why it failed; the publish job, which runs
    // `always()`, only adds that it found no result.
    let agent = log.split("##[group]job publish").next().unwrap_or(log);
    let line = last_error(agent).or_else(|| last_error(log))?;
    let line = line.trim_start_matches("##[error]");
    Some(if line.chars().count() > 400 {
        format!("{}…", line.chars().take(400).collect::<String>())
    } else {
        line.to_owned()
    })
}

fn strip_marker(body: &str) -> String {
    body.lines()
        .filter(|l| !l.trim_start().starts_with("<!-- missions:"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_owned()
}

/// The comment's first line, and the line after it when the first introduces it
/// (ends with a colon): enough to follow the story.
fn first_line(body: &str) -> String {
    let mut lines = body
        .lines()
        .map(|l| l.trim())
        // Hidden markers (the sticky comment's, the effects') are not news.
        .filter(|l| !l.starts_with("<!--"))
        .map(|l| l.trim_start_matches('#').trim())
        .filter(|l| !l.is_empty());
    let mut line = lines.next().unwrap_or("").to_owned();
    if line.ends_with(':')
        && let Some(next) = lines.next()
    {
        line = format!("{line} {next}");
    }
    if line.chars().count() > 110 {
        format!("{}…", line.chars().take(110).collect::<String>())
    } else {
        line
    }
}

/// The contract's own checks in a body (the plan's baseline lint, a
/// handoff's negative controls), one line each, indented under its comment.
fn contract_lines(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| {
            let rest = l
                .strip_prefix("**Baseline lint**")
                .map(|r| ("baseline lint", r))
                .or_else(|| {
                    l.strip_prefix("**Negative controls**")
                        .map(|r| ("negative controls", r))
                })?;
            Some(format!("  {}{}", rest.0, rest.1.replace('`', "")))
        })
        .collect()
}

/// Prints what is new on the simulator since the last call.
fn report_news(sim: &Sim, repo: &str, api: &str, printer: &Printer, seen: &mut Seen) {
    let bot = format!("{}[bot]", sample::APP_SLUG);
    let mut lines = Vec::new();
    sim.read(|w| {
        let r = &w.repos[repo];
        for run in r.runs.values() {
            let job = run.inputs.get("job").and_then(Value::as_str).unwrap_or("?");
            let role = run
                .inputs
                .get("role")
                .and_then(Value::as_str)
                .unwrap_or("?");
            if seen.runs_started.insert(run.id) {
                lines.push(format!(
                    "job {job} ({role}) dispatched on {} ({api}/repos/{repo}/actions/runs/{})",
                    run.head_branch, run.id
                ));
            }
            if run.conclusion.is_some() && seen.runs_done.insert(run.id) {
                lines.push(format!(
                    "job {job} finished: {} (log: {api}/_sim/repos/{repo}/runs/{}/log)",
                    run.conclusion.as_deref().unwrap_or("?"),
                    run.id
                ));
                if run.conclusion.as_deref() != Some("success")
                    && let Some(error) = job_error(&run.log)
                {
                    lines.push(format!("job {job} said: {error}"));
                    seen.last_job_error = Some(error);
                }
            }
        }
        for issue in r.issues.values() {
            if let Some(pull) = &issue.pull
                && seen.pulls.insert(issue.number)
            {
                lines.push(format!(
                    "{} opened PR #{}: {} ({} → {})",
                    issue.user, issue.number, issue.title, pull.head_ref, pull.base_ref
                ));
                lines.extend(contract_lines(issue.body.as_deref().unwrap_or("")));
            }
        }
        for c in r.comments.values() {
            if c.user == bot && c.body.contains(STICKY_MARKER) {
                let row = sticky_figures(&c.body).remove("budget");
                if row.is_some() && row != seen.budget {
                    if let Some(line) = row.as_deref().and_then(spend_line) {
                        lines.push(line);
                    }
                    seen.budget = row;
                }
            }
            if c.user == bot && seen.comments.insert(c.id) {
                lines.push(format!(
                    "{bot} commented on #{}: {}",
                    c.issue_number,
                    first_line(&c.body)
                ));
                lines.extend(contract_lines(&c.body));
            }
        }
        for check in r.check_runs.values() {
            if let Some(conclusion) = &check.conclusion
                && seen.checks_done.insert(check.id)
            {
                lines.push(format!(
                    "check run `{}` on {}: {conclusion} — {}",
                    check.name,
                    &check.head_sha[..7.min(check.head_sha.len())],
                    check.output.title.as_deref().unwrap_or("")
                ));
            }
        }
    });
    for line in lines {
        printer.line(line);
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_failed_jobs_error_is_the_agents_not_the_publish_jobs() {
        let log = "##[group]job agent\nerror: Anthropic rejected the API key; check ANTHROPIC_API_KEY\n\
                   ##[error]Process completed with exit code 1.\n##[endgroup]\n\
                   ##[group]job publish\nerror: the agent job left no result\n##[endgroup]\n";
        assert_eq!(
            job_error(log).as_deref(),
            Some("error: Anthropic rejected the API key; check ANTHROPIC_API_KEY")
        );
        assert_eq!(
            job_error("##[group]job publish\nerror: no result\n").as_deref(),
            Some("error: no result")
        );
    }
    use super::*;

    #[test]
    fn the_budget_row_becomes_a_spend_line() {
        assert_eq!(
            spend_line("$0.04 of $5.00 · tokens 12345 in, 678 out, 9000 cache read").as_deref(),
            Some("spent $0.04 of $5.00 (tokens 12,345 in, 678 out, 9,000 cache read)")
        );
        assert_eq!(
            spend_line("$1.50 · tokens 1000000 in, 0 out, 0 cache read").as_deref(),
            Some("spent $1.50 (tokens 1,000,000 in, 0 out, 0 cache read)")
        );
        assert_eq!(
            spend_line("$0.00 of $5.00 · tokens 0 in, 0 out, 0 cache read"),
            None
        );
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
    }

    #[test]
    fn the_sticky_comment_tells_the_phase() {
        let sticky = |state: &str, merged: u64, total: u64| {
            format!(
                "{STICKY_MARKER}\n### Mission control\n\n**State**: {state}\n\n| | |\n|---|---|\n| milestones | ░░ {merged} of {total} merged |\n| budget | $0.10 of $5.00 · tokens 1 in, 1 out, 0 cache read |\n"
            )
        };
        assert_eq!(
            sticky_phase(&sticky("scoping", 0, 0)).as_deref(),
            Some("scoping")
        );
        assert_eq!(
            sticky_phase(&sticky("waiting for answers", 0, 0)).as_deref(),
            Some("scoping")
        );
        assert_eq!(
            sticky_phase(&sticky("plan in review", 0, 2)).as_deref(),
            Some("planned")
        );
        assert_eq!(
            sticky_phase(&sticky("building", 0, 2)).as_deref(),
            Some("milestone 1 of 2")
        );
        assert_eq!(
            sticky_phase(&sticky("waiting for merge", 1, 2)).as_deref(),
            Some("milestone 2 of 2")
        );
        assert_eq!(sticky_phase(&sticky("done", 2, 2)).as_deref(), Some("done"));
        assert_eq!(sticky_phase(&sticky("⏸️ paused: x", 1, 2)), None);
    }

    #[test]
    fn failed_jobs_and_pauses_are_read_for_people() {
        let log = "##[group]Run missions job\nsomething\nerror: scope-1.1: the model provider failed: anthropic rejected the API key (401): invalid x-api-key; check ANTHROPIC_API_KEY\n##[error]Process completed with exit code 1.\n";
        let error = job_error(log).unwrap();
        assert!(error.starts_with("error: scope-1.1:"), "{error}");
        assert_eq!(
            job_error_hint(&error).as_deref(),
            Some("set ANTHROPIC_API_KEY to a valid key in this shell and run the demo again")
        );
        assert_eq!(
            job_error("all fine\n##[error]Process completed with exit code 1.\n"),
            None
        );
        assert_eq!(
            job_error("##[error]The job was canceled.\n").as_deref(),
            Some("The job was canceled.")
        );
        assert_eq!(job_error_hint("error: something else"), None);
        assert_eq!(
            pause_reason(
                "⏸️ The mission is paused: scoping failed 2 times (last: x).\n\nLook at the last run's log."
            ),
            "scoping failed 2 times (last: x)"
        );
    }

    #[test]
    fn agent_lines_are_summed() {
        let log = "\
agent scope-1: finished after 12 model call(s), 30 command(s), 2 tool call(s) rejected, 1 compaction(s), 45000 tokens in (30000 cached), 1200 out, $0.05\n\
noise\n\
agent M1-scrutiny-1-review-F1: limit_reached after 3 model call(s), 4 command(s), 0 tool call(s) rejected, 0 compaction(s), 5,000 tokens in (0 cached), 100 out, $1.25\n";
        let figures = AgentFigures::of_log(log);
        assert_eq!(
            figures,
            AgentFigures {
                agent_runs: 2,
                model_calls: 15,
                commands: 34,
                rejected_calls: 2,
                compactions: 1,
                tokens_in: 50_000,
                tokens_cached: 30_000,
                tokens_out: 1_300,
                cost_micros: 1_300_000,
            }
        );
        // The older shape, without rejections and compactions, still counts.
        let old = AgentFigures::of_log(
            "agent F1: finished after 2 model call(s), 1 command(s), 10 tokens in, 5 out, $0.00\n",
        );
        assert_eq!((old.agent_runs, old.model_calls, old.tokens_in), (1, 2, 10));
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn models_are_settled_with_keys_from_the_environment_only() {
        let specs = ModelSpecs::parse(&[
            "anthropic:claude-sonnet-4-5",
            "worker=openai-compatible:my-coder@http://127.0.0.1:8080/v1",
            "user-testing=local",
        ])
        .unwrap();
        let env = env_of(&[
            ("ANTHROPIC_API_KEY", "sk-ant-secret"),
            ("OPENAI_API_KEY", ""),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9999"),
        ]);
        let models = settle_models(
            &specs,
            &BTreeMap::new(),
            Path::new("/s"),
            Some(("http://127.0.0.1:7777/v1", 16384)),
            &env,
        )
        .unwrap();
        assert!(!models.yaml.contains("sk-ant"), "{}", models.yaml);
        assert_eq!(
            models.secrets,
            vec![("ANTHROPIC_API_KEY".to_owned(), "sk-ant-secret".to_owned())]
        );
        assert_eq!(
            models.env,
            vec![(
                "ANTHROPIC_BASE_URL".to_owned(),
                "http://127.0.0.1:9999".to_owned()
            )]
        );
        assert_eq!(
            models.free,
            vec![
                "openai:my-coder@http://127.0.0.1:8080/v1".to_owned(),
                "local (qwen2.5-coder-1.5b-instruct)".to_owned()
            ]
        );
        let config = crate::llm::config::parse_repo_config(&models.yaml).unwrap();
        let tester = config
            .resolve(Role::UserTesting, &ModelConfig::default())
            .unwrap();
        assert_eq!(tester.base_url.as_deref(), Some("http://127.0.0.1:7777/v1"));
        assert_eq!(tester.context_window(), 16384);
        // Claude at a local proxy keeps its built-in price.
        let orchestrator = config
            .resolve(Role::Orchestrator, &ModelConfig::default())
            .unwrap();
        assert_eq!(orchestrator.prices, None);
        assert!(
            models
                .described
                .unwrap()
                .contains("worker on openai:my-coder@")
        );

        // All scripted: the scripted section, no keys passed on.
        let models = settle_models(
            &ModelSpecs::default(),
            &BTreeMap::new(),
            Path::new("/s"),
            None,
            &env,
        )
        .unwrap();
        assert!(models.secrets.is_empty() && models.described.is_none());
        assert!(
            models.yaml.contains("provider: scripted"),
            "{}",
            models.yaml
        );
    }
}
