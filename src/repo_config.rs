//! `.github/missions.yml`: the repository's settings for missions, read from
//! the **default branch** only (never a mission branch, which agents can edit).
//!
//! ```yaml
//! label: mission               # the label that starts a mission
//! budget: { usd: 25 }          # per mission; absent: unbounded
//! max_attempts: 2              # failed runs of one step before the mission pauses
//! max_validation_rounds: 3     # validation rounds per milestone before it pauses
//! models: { … }                # see `llm::config`
//! commands:                    # what scrutiny runs before its reviews
//!   test: [cargo test]
//!   lint: [cargo clippy -- -D warnings]
//!   typecheck: []
//! app:                         # how user testing starts the application
//!   start: cargo run -- serve --port 8080
//!   url: http://127.0.0.1:8080/healthz
//!   ready_timeout_secs: 30
//! parallel:                    # read-only work inside one job, at most this many at once
//!   explorers: 4               # `explore` sub-agents of one model answer
//!   reviewers: 4               # scrutiny's per-feature reviewers
//! prompts_dir: .github/missions/prompts   # per-role prompt overrides (<role>.md)
//! protected_paths: [ci/, Makefile]        # kept as found in workers' commits (besides .github/)
//! ci:                          # the repository's own checks a milestone must pass
//!   required: [test]           # besides the base branch's required status checks
//!   wait_minutes: 60           # how long a round waits for them before the mission pauses
//! ```
//!
//! Everything is optional, and an absent file means the defaults. Unknown keys
//! are errors that name the key's path and line, so a typo never silently falls
//! back to a default.

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};

use crate::llm::config::{self, ConfigError, ModelsConfig, REPO_CONFIG_PATH};
use crate::mission::Settings;
use crate::mission::machine::{Family, Independence, IndependenceRule};

/// The label that starts a mission when nothing else is configured.
pub const DEFAULT_LABEL: &str = "mission";
/// Where per-role prompt overrides live when nothing else is configured.
pub const DEFAULT_PROMPTS_DIR: &str = ".github/missions/prompts";
/// How long user testing waits for `app.url` when nothing else is configured.
pub const DEFAULT_READY_TIMEOUT_SECS: u64 = 30;
const MAX_READY_TIMEOUT_SECS: u64 = 3600;
/// The longest `ci.wait_minutes` accepted: a day.
const MAX_CI_WAIT_MINUTES: i64 = 24 * 60;

/// The repository's settings, with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoConfig {
    pub label: String,
    /// The mission's budget in US dollars; `None`: unbounded.
    pub budget_usd: Option<f64>,
    /// Dollars that must remain of the budget before a job of each role starts.
    pub reserve: crate::mission::machine::Reserves,
    pub max_attempts: u32,
    pub max_validation_rounds: u32,
    pub models: ModelsConfig,
    pub commands: Commands,
    pub app: AppConfig,
    /// Relative to the repository root, without a trailing `/`.
    pub prompts_dir: String,
    /// Directories or files (from the root, no trailing `/`) that workers'
    /// commits keep as the job found them, besides `.missions/`, `.github/`
    /// and `prompts_dir`: what the repository's CI runs with its secrets.
    pub protected_paths: Vec<String>,
    /// `independent_validators`: warn (default), require or off.
    pub independent_validators: IndependenceRule,
    /// How much read-only work of one job runs at the same time.
    pub parallel: Parallel,
    /// The repository's own checks (its CI) a milestone's ready commit must pass.
    pub ci: CiConfig,
}

/// How much read-only work of one job runs at the same time (writes and
/// commands are always one at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallel {
    /// `explore` sub-agents of one model answer.
    pub explorers: usize,
    /// Scrutiny's per-feature reviewers.
    pub reviewers: usize,
}

/// The most of either [`Parallel`] figure accepted.
pub const MAX_PARALLEL: i64 = 16;

impl Default for Parallel {
    fn default() -> Self {
        Parallel {
            explorers: crate::agent::EXPLORERS_AT_ONCE,
            reviewers: 4,
        }
    }
}

/// What a worker's commit always keeps as the job found it: the mission's
/// state (only the harness writes there) and `.github/` (workflows, actions,
/// these settings, prompt overrides, CI scripts: what runs with the
/// repository's secrets, or steers the agents).
pub const ALWAYS_PROTECTED: [&str; 2] = [".missions", ".github"];

impl RepoConfig {
    /// Every path a worker's commit keeps as found: [`ALWAYS_PROTECTED`],
    /// `prompts_dir` and `protected_paths`, without any that lies inside
    /// another.
    pub fn pinned_paths(&self) -> Vec<String> {
        let mut all: Vec<String> = ALWAYS_PROTECTED.iter().map(|p| p.to_string()).collect();
        all.push(self.prompts_dir.clone());
        all.extend(self.protected_paths.iter().cloned());
        all.sort();
        all.dedup();
        let inside = |p: &String, q: &String| p != q && p.starts_with(&format!("{q}/"));
        all.iter()
            .filter(|p| !all.iter().any(|q| inside(p, q)))
            .cloned()
            .collect()
    }
}

/// Shell commands scrutiny runs (each with `bash -c`, in the checkout, with the
/// agent's stripped environment) before its reviewers read the code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commands {
    pub test: Vec<String>,
    pub lint: Vec<String>,
    pub typecheck: Vec<String>,
}

impl Commands {
    /// Every command with its kind (`test`, `lint`, `typecheck`), in that order.
    pub fn all(&self) -> Vec<(&'static str, &str)> {
        let kinds = [
            ("test", &self.test),
            ("lint", &self.lint),
            ("typecheck", &self.typecheck),
        ];
        kinds
            .into_iter()
            .flat_map(|(kind, list)| list.iter().map(move |c| (kind, c.as_str())))
            .collect()
    }
}

/// `ci:`: the repository's own checks (its CI, other apps) that a
/// milestone's ready commit must pass before it is ready to merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiConfig {
    /// Check names, besides the base branch's required status checks.
    pub required: Vec<String>,
    /// How long a validation round waits for them to conclude.
    pub wait_secs: u64,
}

impl Default for CiConfig {
    fn default() -> Self {
        CiConfig {
            required: Vec::new(),
            wait_secs: Settings::default().ci_wait_secs,
        }
    }
}

/// How user testing starts the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// A shell command that starts the app (it keeps running in the background
    /// while the tester works); `None`: the tester starts it itself, if at all.
    pub start: Option<String>,
    /// An http(s) URL that answers once the app is ready.
    pub url: Option<String>,
    pub ready_timeout_secs: u64,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            start: None,
            url: None,
            ready_timeout_secs: DEFAULT_READY_TIMEOUT_SECS,
        }
    }
}

impl Default for RepoConfig {
    fn default() -> Self {
        RepoConfig {
            label: DEFAULT_LABEL.to_owned(),
            budget_usd: None,
            reserve: crate::mission::machine::Reserves::default(),
            max_attempts: Settings::default().max_attempts,
            max_validation_rounds: Settings::default().max_validation_rounds,
            models: ModelsConfig::default(),
            commands: Commands::default(),
            app: AppConfig::default(),
            prompts_dir: DEFAULT_PROMPTS_DIR.to_owned(),
            protected_paths: Vec::new(),
            independent_validators: IndependenceRule::default(),
            parallel: Parallel::default(),
            ci: CiConfig::default(),
        }
    }
}

/// A path relative to the repository root: not empty, not absolute, no `.`
/// or `..` parts.
fn plain_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != ".." && part != ".")
}

/// What is wrong with `.github/missions.yml`.
#[derive(Debug, thiserror::Error)]
pub enum RepoConfigError {
    /// In the `models:` section (reported by [`config::parse_repo_config`]).
    #[error(transparent)]
    Models(#[from] ConfigError),
    /// Anywhere else: `key` is the setting's path (`commands.test`), empty for
    /// the file as a whole.
    #[error(
        "{REPO_CONFIG_PATH}{line}: {key}{message}",
        line = line.map(|l| format!(" line {l}")).unwrap_or_default(),
        key = if key.is_empty() { String::new() } else { format!("{key}: ") }
    )]
    Invalid {
        key: String,
        line: Option<usize>,
        message: String,
    },
}

fn invalid(key: &str, message: impl Into<String>) -> RepoConfigError {
    RepoConfigError::Invalid {
        key: key.to_owned(),
        line: None,
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of settings (label, budget, models, commands, app, …)"
)]
struct RawFile {
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    budget: Option<RawBudget>,
    #[serde(default)]
    max_attempts: Option<i64>,
    #[serde(default)]
    max_validation_rounds: Option<i64>,
    /// Read by `llm::config::parse_repo_config`.
    #[serde(default)]
    #[allow(dead_code)]
    models: Option<IgnoredAny>,
    #[serde(default)]
    commands: Option<RawCommands>,
    #[serde(default)]
    app: Option<RawApp>,
    #[serde(default)]
    prompts_dir: Option<String>,
    #[serde(default)]
    protected_paths: Option<Vec<String>>,
    #[serde(default)]
    independent_validators: Option<String>,
    #[serde(default)]
    parallel: Option<RawParallel>,
    #[serde(default)]
    ci: Option<RawCi>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping { required, wait_minutes }"
)]
struct RawCi {
    #[serde(default)]
    required: Option<Vec<String>>,
    #[serde(default)]
    wait_minutes: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping { explorers, reviewers }")]
struct RawParallel {
    #[serde(default)]
    explorers: Option<i64>,
    #[serde(default)]
    reviewers: Option<i64>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping { usd: <dollars>, reserve: { <role>: <dollars> } }"
)]
struct RawBudget {
    usd: f64,
    /// Dollars that must remain before a job of the role starts.
    #[serde(default)]
    reserve: Option<RawReserve>,
}

#[derive(Deserialize, Default)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a mapping of roles (orchestrator, worker, scrutiny, user-testing) to dollars"
)]
struct RawReserve {
    #[serde(default)]
    orchestrator: f64,
    #[serde(default)]
    worker: f64,
    #[serde(default)]
    scrutiny: f64,
    #[serde(default)]
    user_testing: f64,
}

#[derive(Deserialize, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of command lists (test, lint, typecheck)"
)]
struct RawCommands {
    #[serde(default, deserialize_with = "one_or_many")]
    test: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    lint: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    typecheck: Vec<String>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping { start, url, ready_timeout_secs }"
)]
struct RawApp {
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    ready_timeout_secs: Option<i64>,
}

/// A list of commands, or one command as a plain string.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a command or a list of commands")]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

impl RepoConfig {
    /// Reads the whole file's text. An empty file (or one of only comments)
    /// gives the defaults.
    pub fn parse(yaml: &str) -> Result<RepoConfig, RepoConfigError> {
        let empty = yaml
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
        if empty {
            return Ok(RepoConfig::default());
        }
        let models = config::parse_repo_config(yaml)?;
        let raw: RawFile = serde_path_to_error::deserialize(yaml_serde::Deserializer::from_str(
            yaml,
        ))
        .map_err(|e| {
            let path = e.path().to_string();
            let key = path
                .split('.')
                .take_while(|s| !matches!(*s, "" | "?"))
                .collect::<Vec<_>>()
                .join(".");
            let inner = e.inner();
            let line = inner.location().map(|l| l.line());
            RepoConfigError::Invalid {
                message: clean_message(&inner.to_string(), &key),
                key,
                line,
            }
        })?;
        let mut cfg = RepoConfig {
            models,
            ..RepoConfig::default()
        };
        if let Some(label) = raw.label {
            let label = label.trim().to_owned();
            if label.is_empty() || label.chars().count() > 50 {
                return Err(invalid(
                    "label",
                    "the label must be 1 to 50 characters, e.g. `mission`",
                ));
            }
            cfg.label = label;
        }
        if let Some(budget) = raw.budget {
            if !(budget.usd.is_finite() && budget.usd >= 0.0 && budget.usd <= 1e9) {
                return Err(invalid(
                    "budget.usd",
                    "the budget must be an amount of US dollars of 0 or more, e.g. `usd: 25`",
                ));
            }
            cfg.budget_usd = Some(budget.usd);
            if let Some(r) = budget.reserve {
                let micros = |key: &str, usd: f64| {
                    if usd.is_finite() && (0.0..=1e9).contains(&usd) {
                        Ok((usd * 1_000_000.0).round() as u64)
                    } else {
                        Err(invalid(
                            &format!("budget.reserve.{key}"),
                            "a reserve is an amount of US dollars of 0 or more, e.g. `worker: 0.5`",
                        ))
                    }
                };
                cfg.reserve = crate::mission::machine::Reserves {
                    orchestrator: micros("orchestrator", r.orchestrator)?,
                    worker: micros("worker", r.worker)?,
                    scrutiny: micros("scrutiny", r.scrutiny)?,
                    user_testing: micros("user-testing", r.user_testing)?,
                };
            }
        }
        let count = |key: &str, n: Option<i64>, default: u32| -> Result<u32, RepoConfigError> {
            match n {
                None => Ok(default),
                Some(n) if (1..=100).contains(&n) => Ok(n as u32),
                Some(n) => Err(invalid(
                    key,
                    format!("{n} is out of range; use a number from 1 to 100"),
                )),
            }
        };
        cfg.max_attempts = count("max_attempts", raw.max_attempts, cfg.max_attempts)?;
        cfg.max_validation_rounds = count(
            "max_validation_rounds",
            raw.max_validation_rounds,
            cfg.max_validation_rounds,
        )?;
        if let Some(parallel) = raw.parallel {
            let at_once = |key: &str, n: Option<i64>, default: usize| match n {
                None => Ok(default),
                Some(n) if (1..=MAX_PARALLEL).contains(&n) => Ok(n as usize),
                Some(n) => Err(invalid(
                    key,
                    format!(
                        "{n} is out of range; use a number from 1 (one at a time) to {MAX_PARALLEL}"
                    ),
                )),
            };
            cfg.parallel = Parallel {
                explorers: at_once(
                    "parallel.explorers",
                    parallel.explorers,
                    cfg.parallel.explorers,
                )?,
                reviewers: at_once(
                    "parallel.reviewers",
                    parallel.reviewers,
                    cfg.parallel.reviewers,
                )?,
            };
        }
        if let Some(ci) = raw.ci {
            for (i, name) in ci.required.iter().flatten().enumerate() {
                if name.trim().is_empty() || name.chars().count() > 255 {
                    return Err(invalid(
                        &format!("ci.required[{i}]"),
                        "a check's name is 1 to 255 characters, as GitHub shows it on a commit (e.g. `test`)",
                    ));
                }
            }
            cfg.ci.required = ci.required.unwrap_or_default();
            match ci.wait_minutes {
                None => {}
                Some(n) if (1..=MAX_CI_WAIT_MINUTES).contains(&n) => {
                    cfg.ci.wait_secs = n as u64 * 60
                }
                Some(n) => {
                    return Err(invalid(
                        "ci.wait_minutes",
                        format!(
                            "{n} is out of range; use a number of minutes from 1 to {MAX_CI_WAIT_MINUTES}"
                        ),
                    ));
                }
            }
        }
        if let Some(commands) = raw.commands {
            for (kind, list) in [
                ("test", &commands.test),
                ("lint", &commands.lint),
                ("typecheck", &commands.typecheck),
            ] {
                if list.iter().any(|c| c.trim().is_empty()) {
                    return Err(invalid(
                        &format!("commands.{kind}"),
                        "a command is empty; remove it or write the shell command to run",
                    ));
                }
            }
            cfg.commands = Commands {
                test: commands.test,
                lint: commands.lint,
                typecheck: commands.typecheck,
            };
        }
        if let Some(app) = raw.app {
            if let Some(start) = &app.start
                && start.trim().is_empty()
            {
                return Err(invalid(
                    "app.start",
                    "the start command is empty; remove `start` or write the shell command that starts the app",
                ));
            }
            if let Some(url) = &app.url {
                let rest = url
                    .strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"));
                if !rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/')) {
                    return Err(invalid(
                        "app.url",
                        format!(
                            "{url:?} is not an http(s) URL; write where the app answers, e.g. http://127.0.0.1:8080/"
                        ),
                    ));
                }
            }
            let timeout = match app.ready_timeout_secs {
                None => DEFAULT_READY_TIMEOUT_SECS,
                Some(n) if n >= 1 && n as u64 <= MAX_READY_TIMEOUT_SECS => n as u64,
                Some(n) => {
                    return Err(invalid(
                        "app.ready_timeout_secs",
                        format!(
                            "{n} is out of range; use a number of seconds from 1 to {MAX_READY_TIMEOUT_SECS}"
                        ),
                    ));
                }
            };
            cfg.app = AppConfig {
                start: app.start,
                url: app.url,
                ready_timeout_secs: timeout,
            };
        }
        if let Some(dir) = raw.prompts_dir {
            let dir = dir.trim().trim_end_matches('/').to_owned();
            if !plain_relative(&dir) {
                return Err(invalid(
                    "prompts_dir",
                    "write a directory relative to the repository root, without `..`, e.g. .github/missions/prompts",
                ));
            }
            cfg.prompts_dir = dir;
        }
        if let Some(paths) = raw.protected_paths {
            for (i, path) in paths.into_iter().enumerate() {
                let path = path.trim().trim_end_matches('/').to_owned();
                if !plain_relative(&path) {
                    return Err(invalid(
                        &format!("protected_paths[{i}]"),
                        "write a directory or file relative to the repository root, without `..`, e.g. ci/ or Makefile",
                    ));
                }
                cfg.protected_paths.push(path);
            }
        }
        if let Some(rule) = raw.independent_validators {
            cfg.independent_validators = match rule.trim() {
                "warn" => IndependenceRule::Warn,
                "require" => IndependenceRule::Require,
                "off" => IndependenceRule::Off,
                _ => {
                    return Err(invalid(
                        "independent_validators",
                        "write `warn` (the default), `require` or `off`",
                    ));
                }
            };
        }
        Ok(cfg)
    }

    /// The numbers the mission's state machine enforces, over the built-in
    /// default model.
    pub fn settings(&self) -> Settings {
        self.settings_over(&crate::llm::config::ModelConfig::default())
    }

    /// The numbers the mission's state machine enforces, the roles' models
    /// resolved over `server_model` (the server's `[model]`).
    pub fn settings_over(&self, server_model: &crate::llm::config::ModelConfig) -> Settings {
        use crate::llm::config::{ModelFamily, Role};
        let family = |role: Role| -> Option<ModelFamily> {
            self.models
                .resolve(role, server_model)
                .ok()
                .map(|m| m.family())
        };
        let worker = family(Role::Worker);
        let same = |role: Role| worker.is_some() && family(role) == worker;
        let (scrutiny_same, user_testing_same) = (same(Role::Scrutiny), same(Role::UserTesting));
        Settings {
            max_attempts: self.max_attempts,
            max_validation_rounds: self.max_validation_rounds,
            budget_micros: self
                .budget_usd
                .map(|usd| (usd * 1_000_000.0).round() as u64),
            reserve: self.reserve,
            independence: Independence {
                rule: self.independent_validators,
                family: worker.map(|f| match f {
                    ModelFamily::Anthropic => Family::Anthropic,
                    ModelFamily::OpenAi => Family::OpenAi,
                    ModelFamily::Other(_) => Family::Other,
                }),
                scrutiny_same,
                user_testing_same,
            },
            ci_wait_secs: self.ci.wait_secs,
        }
    }
}

/// The YAML crate's message without its position suffix and path prefix, with
/// serde's wording for unknown keys made plainer.
fn clean_message(full: &str, key: &str) -> String {
    let mut message = full;
    if let Some(at) = message.rfind(" at line ") {
        message = &message[..at];
    }
    if let Some((head, rest)) = message.split_once(": ")
        && !head.is_empty()
        && !head.contains(' ')
        && (head == key || key.starts_with(&format!("{head}.")) || head == ".")
    {
        message = rest;
    }
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((_, expected)) = rest.split_once("`, ")
    {
        return format!("unknown key; {}", expected.replace('`', ""));
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_means_the_defaults() {
        for text in ["", "\n", "# nothing here\n\n"] {
            let cfg = RepoConfig::parse(text).unwrap();
            assert_eq!(cfg, RepoConfig::default());
        }
        let cfg = RepoConfig::default();
        assert_eq!(cfg.label, "mission");
        assert_eq!(cfg.prompts_dir, ".github/missions/prompts");
        assert_eq!(cfg.app.ready_timeout_secs, 30);
        let settings = cfg.settings();
        assert_eq!(
            Settings {
                independence: Independence::default(),
                ..settings
            },
            Settings::default()
        );
        // Every seat on the built-in default model: the validators are not
        // independent of the workers.
        assert_eq!(settings.independence.family, Some(Family::Anthropic));
        assert!(settings.independence.scrutiny_same && settings.independence.user_testing_same);
    }

    #[test]
    fn every_setting_is_read() {
        let cfg = RepoConfig::parse(
            "label: build-it\n\
             budget: { usd: 12.5 }\n\
             max_attempts: 4\n\
             max_validation_rounds: 5\n\
             models:\n  default: { provider: scripted, model: demo, script: s.json }\n\
             commands:\n  test: [cargo test, ./check.sh]\n  lint: cargo clippy\n\
             app:\n  start: ./serve\n  url: http://127.0.0.1:8080/\n  ready_timeout_secs: 9\n\
             prompts_dir: ci/prompts/\n\
             protected_paths: [ci/, Makefile, .github/scripts]\n\
             parallel: { explorers: 2, reviewers: 8 }\n\
             ci: { required: [test, \"lint / clippy\"], wait_minutes: 90 }\n",
        )
        .unwrap();
        assert_eq!(cfg.label, "build-it");
        assert_eq!(cfg.ci.required, ["test", "lint / clippy"]);
        assert_eq!(
            cfg.settings(),
            Settings {
                max_attempts: 4,
                max_validation_rounds: 5,
                budget_micros: Some(12_500_000),
                reserve: Default::default(),
                // Every seat on the same model.
                independence: Independence {
                    rule: IndependenceRule::Warn,
                    family: Some(Family::Other),
                    scrutiny_same: true,
                    user_testing_same: true,
                },
                ci_wait_secs: 90 * 60,
            }
        );
        assert_eq!(cfg.commands.test, ["cargo test", "./check.sh"]);
        assert_eq!(cfg.commands.lint, ["cargo clippy"]);
        assert!(cfg.commands.typecheck.is_empty());
        assert_eq!(
            cfg.commands.all(),
            [
                ("test", "cargo test"),
                ("test", "./check.sh"),
                ("lint", "cargo clippy")
            ]
        );
        assert_eq!(cfg.app.start.as_deref(), Some("./serve"));
        assert_eq!(cfg.app.url.as_deref(), Some("http://127.0.0.1:8080/"));
        assert_eq!(cfg.app.ready_timeout_secs, 9);
        assert_eq!(cfg.prompts_dir, "ci/prompts");
        assert_eq!(
            cfg.parallel,
            Parallel {
                explorers: 2,
                reviewers: 8
            }
        );
        assert_eq!(RepoConfig::default().parallel.reviewers, 4);
        assert_eq!(RepoConfig::default().parallel.explorers, 4);
        assert_eq!(cfg.protected_paths, ["ci", "Makefile", ".github/scripts"]);
        // Inside another pinned path: pinned once, by the outer one.
        assert_eq!(
            cfg.pinned_paths(),
            [".github", ".missions", "Makefile", "ci"]
        );
        assert_eq!(
            RepoConfig::default().pinned_paths(),
            [".github", ".missions"]
        );
        assert_eq!(
            cfg.models.default.as_ref().unwrap().model.as_deref(),
            Some("demo")
        );
    }

    #[test]
    fn unknown_keys_are_errors_with_their_path_and_line() {
        let err = RepoConfig::parse("label: x\nlable: y\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(".github/missions.yml line 2: lable: unknown key"),
            "{text}"
        );
        let err = RepoConfig::parse("commands:\n  tests: [make]\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("line 2: commands.tests: unknown key"),
            "{text}"
        );
        assert!(text.contains("test, lint, typecheck"), "{text}");
        let err = RepoConfig::parse("app:\n  url: http://x\n  port: 3\n").unwrap_err();
        assert!(err.to_string().contains("app.port"), "{err}");
        // Inside models:, the models parser reports it.
        let err = RepoConfig::parse("models:\n  default:\n    modle: x\n").unwrap_err();
        assert!(matches!(err, RepoConfigError::Models(_)), "{err:?}");
        assert!(err.to_string().contains("models.default.modle"), "{err}");
    }

    #[test]
    fn bad_values_are_errors_naming_the_key() {
        for (yaml, key) in [
            ("budget: { usd: -1 }\n", "budget.usd"),
            ("budget: 5\n", "budget"),
            ("max_attempts: 0\n", "max_attempts"),
            ("parallel: { reviewers: 0 }\n", "parallel.reviewers"),
            ("parallel: { explorers: 17 }\n", "parallel.explorers"),
            ("max_validation_rounds: 1000\n", "max_validation_rounds"),
            ("commands: { test: [''] }\n", "commands.test"),
            ("app: { url: localhost:8080 }\n", "app.url"),
            ("app: { ready_timeout_secs: 0 }\n", "app.ready_timeout_secs"),
            ("app: { start: ' ' }\n", "app.start"),
            ("prompts_dir: ../elsewhere\n", "prompts_dir"),
            ("prompts_dir: /etc\n", "prompts_dir"),
            ("protected_paths: [ci, ../x]\n", "protected_paths[1]"),
            ("protected_paths: ci\n", "protected_paths"),
            ("label: ''\n", "label"),
            ("ci: { required: [test, ''] }\n", "ci.required[1]"),
            ("ci: { wait_minutes: 0 }\n", "ci.wait_minutes"),
            ("ci: { required: test }\n", "ci.required"),
        ] {
            let err = RepoConfig::parse(yaml).unwrap_err().to_string();
            assert!(err.contains(&format!("{key}: ")), "{yaml:?} → {err}");
        }
    }

    #[test]
    fn the_file_must_be_a_mapping() {
        let err = RepoConfig::parse("- a\n- b\n").unwrap_err().to_string();
        assert!(err.starts_with(".github/missions.yml"), "{err}");
    }

    #[test]
    fn validators_of_another_family_are_independent_and_the_rule_is_read() {
        let cfg = RepoConfig::parse(
            "independent_validators: require\n\
             models:\n  default:\n    provider: anthropic\n    model: claude-sonnet-4-5\n\
             \x20 scrutiny:\n    provider: openai\n    model: gpt-4.1\n",
        )
        .unwrap();
        let independence = cfg.settings().independence;
        assert_eq!(independence.rule, IndependenceRule::Require);
        assert!(!independence.scrutiny_same);
        assert!(independence.user_testing_same);
        assert_eq!(independence.warnings().len(), 1);
        assert!(independence.warnings()[0].contains("user-testing uses Anthropic's models"));
        // The server's model is the layer under `models:`.
        let bare = RepoConfig::parse("label: mission\n").unwrap();
        let server = crate::llm::config::ModelConfig::new(
            crate::llm::config::ProviderKind::OpenAi,
            "gpt-4.1",
        );
        assert_eq!(
            bare.settings_over(&server).independence.family,
            Some(Family::OpenAi)
        );
        let err = RepoConfig::parse("independent_validators: sometimes\n").unwrap_err();
        assert!(err.to_string().contains("independent_validators"), "{err}");
    }
}
