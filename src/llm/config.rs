//! Which model each role runs on: the `models:` section of
//! `.github/missions.yml` in the target repository (read from its default
//! branch), over the server's defaults.
//!
//! ```yaml
//! models:
//!   default:            # applies to every role unless overridden
//!     provider: anthropic          # anthropic | openai | scripted
//!     model: claude-sonnet-4-5
//!     max_tokens: 8192
//!   orchestrator:
//!     model: claude-opus-4-1
//!   scrutiny:
//!     provider: openai
//!     model: gpt-4.1
//!     base_url: https://openrouter.ai/api/v1     # optional, OpenAI-compatible servers
//!     api_key_env: OPENROUTER_API_KEY            # optional, which env var holds the key
//!     prices: { input: 2.0, output: 8.0, cache_read: 0.5, cache_write: 0 }
//!     context_window: 1047576                    # optional, tokens the model reads at most
//! ```
//!
//! Role sections are `orchestrator`, `worker`, `scrutiny` and `user-testing`
//! (`user_testing` is accepted too). `explorer:` is the model of the `explore`
//! sub-agents every role may call: laid over the calling role's model, so
//! that without it an explorer runs on its role's model, and with, say,
//! `explorer: { model: claude-haiku-4-5 }` on a cheaper one of the same
//! provider (it takes no `engine`: explorers run on the built-in loop). A role's model is resolved field by
//! field: its own section, then `default:`, then the server's defaults, with
//! two exceptions that keep a setting from landing on something it was not
//! written for:
//!
//! - `base_url`, `api_key_env` and `script` belong to a provider: a section
//!   that changes the provider does not inherit them from below;
//! - `prices` and `context_window` belong to a model: a section that
//!   changes the model does not inherit them from below (the new model gets
//!   its built-in price and context window, or needs its own).
//!
//! A model's context window ([`ModelConfig::context_window`]) is its
//! `context_window:`, else the built-in figure for its name
//! ([`default_context_window`]: `claude-*` 200 000 tokens, `gpt-4.1*`
//! 1 047 576, `gpt-4o*` 128 000, `o3`/`o4-mini` 200 000, `qwen2.5-coder*`
//! 32 768), else 32 768.
//!
//! Where requests go: `base_url`, else the SDKs' variable
//! `ANTHROPIC_BASE_URL` or `OPENAI_BASE_URL` in the job's environment, else
//! the provider's public API ([`ModelConfig::request_base_url`]).
//!
//! Every model must have a price, explicit (`prices:`, USD per million
//! tokens) or built in ([`pricing::default_prices`]): a model that costs
//! nothing on paper would make budgets meaningless. The scripted provider is
//! the exception: it costs what its model's built-in price says, or nothing.
//!
//! The rest of the file (other top-level keys) belongs to other parts of the
//! App and is not read here; unknown keys inside `models:` are errors that
//! name the key and its line, so that a typo does not silently fall back to a
//! default.
//!
//! [`ModelSpecs`] reads `missions demo --model` values (`anthropic:MODEL`,
//! `openai:MODEL`, `openai-compatible:MODEL@URL`, `scripted`, `local`, each
//! for every role or as `ROLE=…` for one) into these types.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use secrecy::SecretString;
use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};

use super::anthropic::{self, Anthropic};
use super::openai::{self, OpenAi};
use super::pricing::{self, Prices};
use super::scripted::Scripted;
use super::{LlmError, Provider};

/// Where the repository's configuration lives, named in errors.
pub const REPO_CONFIG_PATH: &str = ".github/missions.yml";
/// `max_tokens` when nothing sets it.
pub const DEFAULT_MAX_TOKENS: u32 = 8192;
/// The largest `max_tokens` accepted.
pub const MAX_MAX_TOKENS: u32 = 128_000;
/// The model the server uses when nothing else is configured.
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
/// How errors name the server's defaults (the layer under the repository's file).
pub const SERVER_DEFAULTS: &str = "the server's default model settings";
/// The context window of a model the built-in table does not know, in tokens.
pub const DEFAULT_CONTEXT_WINDOW: u32 = 32_768;
/// The largest `context_window` accepted, in tokens.
pub const MAX_CONTEXT_WINDOW: u32 = 100_000_000;

/// The agent roles, each of which can run on its own model. (Not to be
/// confused with [`super::Role`], the author of a message.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Orchestrator,
    Worker,
    Scrutiny,
    #[serde(alias = "user_testing")]
    UserTesting,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Orchestrator,
        Role::Worker,
        Role::Scrutiny,
        Role::UserTesting,
    ];

    /// The key of the role's section under `models:` (`user-testing`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Orchestrator => "orchestrator",
            Role::Worker => "worker",
            Role::Scrutiny => "scrutiny",
            Role::UserTesting => "user-testing",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    /// `orchestrator`, `worker`, `scrutiny`, `user-testing` or `user_testing`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "orchestrator" => Ok(Role::Orchestrator),
            "worker" => Ok(Role::Worker),
            "scrutiny" => Ok(Role::Scrutiny),
            "user-testing" | "user_testing" => Ok(Role::UserTesting),
            other => Err(format!(
                "unknown role {other:?}; expected orchestrator, worker, scrutiny or user-testing"
            )),
        }
    }
}

/// Which API serves a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// The Anthropic Messages API.
    Anthropic,
    /// The OpenAI Chat Completions API, or a server compatible with it.
    OpenAi,
    /// Replays a script file (tests, the offline demo).
    Scripted,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenAi => "openai",
            ProviderKind::Scripted => "scripted",
        }
    }

    /// The variable the provider's own SDKs read a base URL from
    /// (`ANTHROPIC_BASE_URL`, `OPENAI_BASE_URL`); none for `scripted`.
    pub fn base_url_env(self) -> Option<&'static str> {
        match self {
            ProviderKind::Anthropic => Some("ANTHROPIC_BASE_URL"),
            ProviderKind::OpenAi => Some("OPENAI_BASE_URL"),
            ProviderKind::Scripted => None,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The agent in a seat: the built-in tool loop, or a third-party agent
/// driven through the Agent Client Protocol. Written `builtin` (the
/// default), `claude-code`, `codex`, or `acp:COMMAND` for any ACP agent
/// (the command is split on whitespace and run from the runner's PATH).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Engine {
    #[default]
    Builtin,
    /// Claude Code through Zed's `claude-agent-acp` adapter (Anthropic API).
    ClaudeCode,
    /// Codex through Zed's `codex-acp` (OpenAI Responses API).
    Codex,
    /// Any agent that speaks ACP over stdio; it is given the proxy as both
    /// `ANTHROPIC_BASE_URL` and `OPENAI_BASE_URL`.
    Acp(String),
}

impl Engine {
    pub fn is_builtin(&self) -> bool {
        *self == Engine::Builtin
    }

    /// The API the engine's agent calls, for those that call exactly one.
    pub fn provider(&self) -> Option<ProviderKind> {
        match self {
            Engine::ClaudeCode => Some(ProviderKind::Anthropic),
            Engine::Codex => Some(ProviderKind::OpenAi),
            Engine::Builtin | Engine::Acp(_) => None,
        }
    }
}

/// Whose models a seat runs on, for reviewer independence: a validator on
/// the same family as the workers shares their blind spots.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelFamily {
    Anthropic,
    OpenAi,
    /// Any other model, by name (an open-weight model, a local server's).
    Other(String),
}

impl ModelConfig {
    /// The family of the seat: an engine that calls one vendor's API is that
    /// vendor's (Claude Code is Anthropic's, Codex OpenAI's); otherwise the
    /// model's name decides (`claude-*`; `gpt-*`, `o1`/`o3`/`o4-*`, `codex-*`),
    /// whatever API serves it.
    pub fn family(&self) -> ModelFamily {
        match self.engine.provider() {
            Some(ProviderKind::Anthropic) => return ModelFamily::Anthropic,
            Some(ProviderKind::OpenAi) => return ModelFamily::OpenAi,
            _ => {}
        }
        let model = self.model.to_ascii_lowercase();
        let name = model.rsplit('/').next().unwrap_or(&model);
        if name.starts_with("claude") {
            ModelFamily::Anthropic
        } else if name.starts_with("gpt")
            || name.starts_with("codex")
            || ["o1", "o3", "o4"]
                .iter()
                .any(|p| name == *p || name.starts_with(&format!("{p}-")))
        {
            ModelFamily::OpenAi
        } else {
            ModelFamily::Other(name.to_owned())
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Engine::Builtin => f.write_str("builtin"),
            Engine::ClaudeCode => f.write_str("claude-code"),
            Engine::Codex => f.write_str("codex"),
            Engine::Acp(command) => write!(f, "acp:{command}"),
        }
    }
}

impl FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "builtin" => Ok(Engine::Builtin),
            "claude-code" => Ok(Engine::ClaudeCode),
            "codex" => Ok(Engine::Codex),
            other => match other.strip_prefix("acp:").map(str::trim) {
                Some(command) if !command.is_empty() => Ok(Engine::Acp(command.to_owned())),
                Some(_) => Err(
                    "`acp:` needs the agent's command after it, e.g. `acp:my-agent --acp`".into(),
                ),
                None => Err(format!(
                    "unknown engine `{other}`; use builtin, claude-code, codex or acp:COMMAND"
                )),
            },
        }
    }
}

impl Serialize for Engine {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Engine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }
}

/// One role's model, fully resolved. Holds no secret: the key is read from
/// the environment variable [`ModelConfig::key_env`] names, by
/// [`build_provider`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub provider: ProviderKind,
    pub model: String,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// The API root; the provider's public endpoint when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The environment variable holding the API key; the provider's usual
    /// one when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Explicit prices; the built-in ones for the model when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<Prices>,
    /// The script file, for `scripted` only (relative paths are relative to
    /// the working directory: the repository's checkout in a job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<PathBuf>,
    /// The most tokens the model reads in one request; the built-in figure
    /// for the model when `None` (see [`ModelConfig::context_window`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
    /// Which agent runs in the seat: the built-in tool loop, or a
    /// third-party agent through ACP (see [`Engine`]).
    #[serde(default, skip_serializing_if = "Engine::is_builtin")]
    pub engine: Engine,
}

fn default_max_tokens() -> u32 {
    DEFAULT_MAX_TOKENS
}

impl Default for ModelConfig {
    /// Anthropic's [`DEFAULT_MODEL`], [`DEFAULT_MAX_TOKENS`].
    fn default() -> Self {
        Self::new(ProviderKind::Anthropic, DEFAULT_MODEL)
    }
}

impl ModelConfig {
    /// `model` on `provider` with [`DEFAULT_MAX_TOKENS`] and nothing else set.
    pub fn new(provider: ProviderKind, model: impl Into<String>) -> Self {
        Self {
            provider,
            model: model.into(),
            max_tokens: DEFAULT_MAX_TOKENS,
            base_url: None,
            api_key_env: None,
            prices: None,
            script: None,
            context_window: None,
            engine: Engine::Builtin,
        }
    }

    /// The most tokens the model reads in one request: `context_window`,
    /// else the built-in figure for the model's name
    /// ([`default_context_window`]).
    pub fn context_window(&self) -> u32 {
        self.context_window
            .unwrap_or_else(|| default_context_window(&self.model))
    }

    /// What the model costs: the explicit prices, else the built-in ones for
    /// the model, else zero (only a `scripted` model can be unpriced once
    /// [`validate`](Self::validate)d).
    pub fn prices(&self) -> Prices {
        self.prices
            .or_else(|| pricing::default_prices(&self.model))
            .unwrap_or(Prices {
                input: 0.0,
                output: 0.0,
                cache_read: 0.0,
                cache_write: 0.0,
            })
    }

    /// The environment variable the API key is read from: `api_key_env`, else
    /// `ANTHROPIC_API_KEY` or `OPENAI_API_KEY` (empty for `scripted`, which
    /// needs no key).
    pub fn key_env(&self) -> &str {
        match (&self.api_key_env, self.provider) {
            (Some(var), _) => var,
            (None, ProviderKind::Anthropic) => anthropic::DEFAULT_KEY_ENV,
            (None, ProviderKind::OpenAi) => openai::DEFAULT_KEY_ENV,
            (None, ProviderKind::Scripted) => "",
        }
    }

    /// The API root requests go to as configured, ignoring the environment
    /// (empty for `scripted`); [`request_base_url`](Self::request_base_url)
    /// is where they really go.
    pub fn effective_base_url(&self) -> &str {
        match (&self.base_url, self.provider) {
            (Some(url), _) => url,
            (None, ProviderKind::Anthropic) => anthropic::DEFAULT_BASE_URL,
            (None, ProviderKind::OpenAi) => openai::DEFAULT_BASE_URL,
            (None, ProviderKind::Scripted) => "",
        }
    }

    /// The API root requests go to: `base_url`; else the provider's
    /// [`base_url_env`](ProviderKind::base_url_env) variable, read through
    /// `env`, when set and not empty; else the provider's public API (empty
    /// for `scripted`). A variable that holds no http(s) URL is an error
    /// naming it.
    pub fn request_base_url(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ConfigError> {
        if let Some(url) = &self.base_url {
            return Ok(url.clone());
        }
        if let Some(var) = self.provider.base_url_env()
            && let Some(url) = env(var).map(|u| u.trim().to_owned())
            && !url.is_empty()
        {
            check_base_url(&url).map_err(|message| ConfigError::InvalidEnv {
                var: var.to_owned(),
                message,
            })?;
            return Ok(url);
        }
        Ok(self.effective_base_url().to_owned())
    }

    /// Checks a resolved config on its own: the checks [`ModelsConfig::resolve`]
    /// makes, for a config built some other way (the server's defaults).
    /// Errors are attributed to `at` (e.g. [`SERVER_DEFAULTS`]).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let sources = Sources::all(at);
        validate_resolved(self, &sources)
    }
}

/// One section of `models:` (`default:` or a role's) as written: every field
/// optional, unknown fields rejected. Values are checked as they are read, so
/// their errors carry a line number.
///
/// It serializes back to the same YAML (unset fields left out), which is how
/// `missions demo` writes the models it was given.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of model settings (provider, model, max_tokens, …)"
)]
pub struct ModelSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderKind>,
    #[serde(
        default,
        deserialize_with = "de_model",
        skip_serializing_if = "Option::is_none"
    )]
    pub model: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_max_tokens",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_tokens: Option<u32>,
    #[serde(
        default,
        deserialize_with = "de_base_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub base_url: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_key_env",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_key_env: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_prices",
        skip_serializing_if = "Option::is_none"
    )]
    pub prices: Option<Prices>,
    #[serde(
        default,
        deserialize_with = "de_script",
        skip_serializing_if = "Option::is_none"
    )]
    pub script: Option<PathBuf>,
    /// Tokens; model-bound, like `prices`.
    #[serde(
        default,
        deserialize_with = "de_context_window",
        skip_serializing_if = "Option::is_none"
    )]
    pub context_window: Option<u32>,
    /// Seat-bound: inherited whatever the provider; checked against the
    /// resolved provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
}

/// The `models:` section of `.github/missions.yml`. Everything is optional:
/// a repository without the section runs every role on the server's defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping from `default`, a role or `explorer` to its model settings"
)]
pub struct ModelsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<ModelSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<ModelSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<ModelSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrutiny: Option<ModelSection>,
    #[serde(
        default,
        rename = "user-testing",
        alias = "user_testing",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_testing: Option<ModelSection>,
    /// The `explore` sub-agents of every role: laid over the calling role's
    /// model (so an empty section, or none, means the role's own model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explorer: Option<ModelSection>,
}

impl ModelsConfig {
    /// The `models:` section as YAML (`models:` and its mapping), as
    /// [`parse_repo_config`] reads it back.
    pub fn to_yaml(&self) -> String {
        #[derive(Serialize)]
        struct File<'a> {
            models: &'a ModelsConfig,
        }
        yaml_serde::to_string(&File { models: self }).expect("model settings serialize")
    }

    /// The role's own section, mutable, created empty when missing.
    pub fn section_mut(&mut self, role: Role) -> &mut ModelSection {
        match role {
            Role::Orchestrator => self.orchestrator.get_or_insert_default(),
            Role::Worker => self.worker.get_or_insert_default(),
            Role::Scrutiny => self.scrutiny.get_or_insert_default(),
            Role::UserTesting => self.user_testing.get_or_insert_default(),
        }
    }

    /// The role's own section, if the file has one.
    pub fn section(&self, role: Role) -> Option<&ModelSection> {
        match role {
            Role::Orchestrator => self.orchestrator.as_ref(),
            Role::Worker => self.worker.as_ref(),
            Role::Scrutiny => self.scrutiny.as_ref(),
            Role::UserTesting => self.user_testing.as_ref(),
        }
    }

    /// The checks that look at several fields of one section (the others are
    /// made while parsing). [`parse_repo_config`] calls this; call it
    /// yourself when deserializing the section some other way.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let sections = std::iter::once(("models.default".to_owned(), self.default.as_ref()))
            .chain(
                Role::ALL
                    .iter()
                    .map(|&role| (format!("models.{role}"), self.section(role))),
            )
            .chain(std::iter::once((
                "models.explorer".to_owned(),
                self.explorer.as_ref(),
            )));
        if let Some(section) = &self.explorer
            && section.engine.is_some()
        {
            return Err(ConfigError::Invalid {
                key: "models.explorer.engine".into(),
                message: "explorers run on the built-in agent loop; remove `engine`".into(),
            });
        }
        for (key, section) in sections {
            let Some(section) = section else { continue };
            match section.provider {
                Some(ProviderKind::Scripted) => {
                    for (field, set) in [
                        ("base_url", section.base_url.is_some()),
                        ("api_key_env", section.api_key_env.is_some()),
                    ] {
                        if set {
                            return Err(ConfigError::Invalid {
                                key: format!("{key}.{field}"),
                                message: format!(
                                    "the scripted provider calls no API; remove `{field}`"
                                ),
                            });
                        }
                    }
                }
                Some(other) if section.script.is_some() => {
                    return Err(ConfigError::Invalid {
                        key: format!("{key}.script"),
                        message: format!(
                            "`script` is only for `provider: scripted`, not {other}; remove it"
                        ),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The role's model: its section over `default:` over `server_defaults`,
    /// field by field (see the module docs for the provider- and model-bound
    /// fields), checked as a whole.
    pub fn resolve(
        &self,
        role: Role,
        server_defaults: &ModelConfig,
    ) -> Result<ModelConfig, ConfigError> {
        self.validate()?;
        let mut cfg = server_defaults.clone();
        let mut sources = Sources::all(SERVER_DEFAULTS);
        if let Some(section) = &self.default {
            apply(&mut cfg, &mut sources, section, "models.default");
        }
        if let Some(section) = self.section(role) {
            apply(&mut cfg, &mut sources, section, &format!("models.{role}"));
        }
        validate_resolved(&cfg, &sources)?;
        Ok(cfg)
    }

    /// The model of `role`'s explorers: `explorer:` laid over the role's
    /// model, field by field as for a role.
    pub fn resolve_explorer(
        &self,
        role: Role,
        server_defaults: &ModelConfig,
    ) -> Result<ModelConfig, ConfigError> {
        let mut cfg = self.resolve(role, server_defaults)?;
        if let Some(section) = &self.explorer {
            let mut sources = Sources::all(&format!("models.{role}"));
            apply(&mut cfg, &mut sources, section, "models.explorer");
            cfg.engine = Engine::default();
            validate_resolved(&cfg, &sources)?;
        }
        Ok(cfg)
    }
}

/// Which layer each field of a resolved config came from, for errors.
#[derive(Debug, Clone)]
struct Sources {
    provider: String,
    model: String,
    max_tokens: String,
    base_url: String,
    api_key_env: String,
    prices: String,
    script: String,
    context_window: String,
    engine: String,
}

impl Sources {
    fn all(at: &str) -> Self {
        Self {
            provider: at.to_owned(),
            model: at.to_owned(),
            max_tokens: at.to_owned(),
            base_url: at.to_owned(),
            api_key_env: at.to_owned(),
            prices: at.to_owned(),
            script: at.to_owned(),
            context_window: at.to_owned(),
            engine: at.to_owned(),
        }
    }
}

/// Lays `section` over `cfg`.
fn apply(cfg: &mut ModelConfig, sources: &mut Sources, section: &ModelSection, at: &str) {
    let same_provider = section.provider.is_none_or(|p| p == cfg.provider);
    let same_model = section.model.as_ref().is_none_or(|m| *m == cfg.model);
    if let Some(provider) = section.provider {
        cfg.provider = provider;
        sources.provider = at.to_owned();
    }
    if let Some(model) = &section.model {
        cfg.model = model.clone();
        sources.model = at.to_owned();
    }
    if let Some(max_tokens) = section.max_tokens {
        cfg.max_tokens = max_tokens;
        sources.max_tokens = at.to_owned();
    }
    if let Some(engine) = &section.engine {
        cfg.engine = engine.clone();
        sources.engine = at.to_owned();
    }
    // Provider-bound fields: kept from below only for the same provider.
    if section.base_url.is_some() || !same_provider {
        cfg.base_url = section.base_url.clone();
        sources.base_url = at.to_owned();
    }
    if section.api_key_env.is_some() || !same_provider {
        cfg.api_key_env = section.api_key_env.clone();
        sources.api_key_env = at.to_owned();
    }
    if section.script.is_some() || !same_provider {
        cfg.script = section.script.clone();
        sources.script = at.to_owned();
    }
    // Model-bound: kept from below only for the same model.
    if section.prices.is_some() || !same_model {
        cfg.prices = section.prices;
        sources.prices = at.to_owned();
    }
    if section.context_window.is_some() || !same_model {
        cfg.context_window = section.context_window;
        sources.context_window = at.to_owned();
    }
}

fn validate_resolved(cfg: &ModelConfig, from: &Sources) -> Result<(), ConfigError> {
    let invalid = |at: &str, field: &str, message: String| ConfigError::Invalid {
        key: format!("{at}.{field}"),
        message,
    };
    check_model(&cfg.model).map_err(|m| invalid(&from.model, "model", m))?;
    check_max_tokens(cfg.max_tokens).map_err(|m| invalid(&from.max_tokens, "max_tokens", m))?;
    if let Some(url) = &cfg.base_url {
        check_base_url(url).map_err(|m| invalid(&from.base_url, "base_url", m))?;
    }
    if let Some(var) = &cfg.api_key_env {
        check_key_env(var).map_err(|m| invalid(&from.api_key_env, "api_key_env", m))?;
    }
    if let Some(prices) = &cfg.prices {
        check_prices(prices).map_err(|m| invalid(&from.prices, "prices", m))?;
    }
    if let Some(n) = cfg.context_window {
        check_context_window(n).map_err(|m| invalid(&from.context_window, "context_window", m))?;
    }
    if let Some(needs) = cfg.engine.provider()
        && cfg.provider != needs
        && cfg.provider != ProviderKind::Scripted
    {
        return Err(invalid(
            &from.engine,
            "engine",
            format!(
                "the {} engine speaks the {} API, and this role's provider is {}; set `provider: {needs}` (or `scripted`), or another engine",
                cfg.engine, needs, cfg.provider
            ),
        ));
    }
    match cfg.provider {
        ProviderKind::Scripted => {
            if cfg.script.is_none() {
                return Err(invalid(
                    &from.provider,
                    "script",
                    "the scripted provider needs `script:`, the path of its script file".into(),
                ));
            }
            if cfg.base_url.is_some() {
                return Err(invalid(
                    &from.base_url,
                    "base_url",
                    "the scripted provider calls no API; remove `base_url`".into(),
                ));
            }
            if cfg.api_key_env.is_some() {
                return Err(invalid(
                    &from.api_key_env,
                    "api_key_env",
                    "the scripted provider calls no API; remove `api_key_env`".into(),
                ));
            }
        }
        other => {
            if cfg.script.is_some() {
                return Err(invalid(
                    &from.script,
                    "script",
                    format!(
                        "`script` is only for `provider: scripted`, and this role's provider is {other}; remove it"
                    ),
                ));
            }
            if cfg.prices.is_none() && pricing::default_prices(&cfg.model).is_none() {
                return Err(ConfigError::MissingPrices {
                    key: from.model.clone(),
                    model: cfg.model.clone(),
                });
            }
        }
    }
    Ok(())
}

// Value checks, shared by parsing (which adds line numbers) and resolution.

fn check_model(model: &str) -> Result<(), String> {
    if model.trim().is_empty() {
        Err("the model name is empty; name the model, e.g. claude-sonnet-4-5".into())
    } else {
        Ok(())
    }
}

fn check_max_tokens(n: u32) -> Result<(), String> {
    if n == 0 || n > MAX_MAX_TOKENS {
        Err(format!(
            "{n} is out of range; use a number from 1 to {MAX_MAX_TOKENS}"
        ))
    } else {
        Ok(())
    }
}

fn check_context_window(n: u32) -> Result<(), String> {
    if !(1024..=MAX_CONTEXT_WINDOW).contains(&n) {
        Err(format!(
            "{n} is out of range; write the model's context window in tokens, from 1024 to {MAX_CONTEXT_WINDOW}, e.g. 200000"
        ))
    } else {
        Ok(())
    }
}

fn check_base_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err(format!(
            "{url:?} is not an http(s) URL; write the API root, e.g. https://openrouter.ai/api/v1"
        )),
    }
}

/// A variable name, not a key: the value is never echoed (it may be a key
/// pasted in the wrong place).
fn check_key_env(var: &str) -> Result<(), String> {
    let mut chars = var.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err("not an environment variable name (letters, digits and _); write the name of the variable that holds the key, e.g. OPENROUTER_API_KEY, never the key itself".into())
    }
}

fn check_prices(prices: &Prices) -> Result<(), String> {
    for (name, value) in [
        ("input", prices.input),
        ("output", prices.output),
        ("cache_read", prices.cache_read),
        ("cache_write", prices.cache_write),
    ] {
        if !(value.is_finite() && value >= 0.0) {
            return Err(format!(
                "`{name}` must be a price of 0 or more, in USD per million tokens"
            ));
        }
    }
    Ok(())
}

fn checked<'de, D, T>(
    deserializer: D,
    check: impl FnOnce(&T) -> Result<(), String>,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let value = Option::<T>::deserialize(deserializer)?;
    if let Some(value) = &value {
        check(value).map_err(D::Error::custom)?;
    }
    Ok(value)
}

fn de_model<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    checked(d, |m: &String| check_model(m))
}

fn de_max_tokens<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    // Read as i64 so that a negative or huge number gets the range message.
    let n = checked(d, |n: &i64| {
        u32::try_from(*n)
            .map_err(|_| format!("{n} is out of range; use a number from 1 to {MAX_MAX_TOKENS}"))
            .and_then(check_max_tokens)
    })?;
    Ok(n.map(|n| n as u32))
}

fn de_context_window<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    // Read as i64 so that a negative or huge number gets the range message.
    let n = checked(d, |n: &i64| {
        u32::try_from(*n)
            .map_err(|_| {
                format!(
                    "{n} is out of range; write the model's context window in tokens, from 1024 to {MAX_CONTEXT_WINDOW}"
                )
            })
            .and_then(check_context_window)
    })?;
    Ok(n.map(|n| n as u32))
}

fn de_base_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    checked(d, |u: &String| check_base_url(u))
}

fn de_key_env<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    checked(d, |v: &String| check_key_env(v))
}

fn de_prices<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Prices>, D::Error> {
    checked(d, check_prices)
}

fn de_script<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    checked(d, |p: &PathBuf| {
        if p.as_os_str().is_empty() {
            Err("the script path is empty".into())
        } else {
            Ok(())
        }
    })
}

/// The whole repository file: only `models` is read here; other top-level
/// keys belong to other parts of the App.
#[derive(Deserialize)]
#[serde(expecting = "a mapping of top-level keys (models, …)")]
struct RepoFile {
    #[serde(default)]
    models: Option<ModelsConfig>,
}

/// Reads the `models:` section of `.github/missions.yml` (the whole file's
/// text). An empty file, or one without `models:`, gives an empty config.
pub fn parse_repo_config(yaml: &str) -> Result<ModelsConfig, ConfigError> {
    let deserializer = yaml_serde::Deserializer::from_str(yaml);
    let file: RepoFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        // `.` is the root; `?` a map key that could not be read.
        let path = e.path().to_string();
        let key = path
            .split('.')
            .take_while(|segment| !matches!(*segment, "" | "?"))
            .collect::<Vec<_>>()
            .join(".");
        let inner = e.inner();
        let location = inner.location();
        let message = yaml_message(
            &inner.to_string(),
            &key,
            location.as_ref().map(|l| (l.line(), l.column())),
        );
        ConfigError::Parse {
            key,
            line: location.map(|l| l.line()),
            message,
        }
    })?;
    let models = file.models.unwrap_or_default();
    models.validate()?;
    Ok(models)
}

/// The YAML crate's message without its own path prefix and position suffix
/// (given separately), and serde's wording for unknown keys made plainer:
/// "unknown field `modle`, expected one of `provider`, …" becomes
/// "unknown field; expected one of provider, …" (the key is in the path).
fn yaml_message(full: &str, key: &str, position: Option<(usize, usize)>) -> String {
    let mut message = full;
    if let Some((line, column)) = position {
        let suffix = format!(" at line {line} column {column}");
        message = message.strip_suffix(suffix.as_str()).unwrap_or(message);
    }
    // The crate prefixes the path it knows (for an unknown key, the parent's).
    if let Some((head, rest)) = message.split_once(": ")
        && !head.is_empty()
        && (head == key || key.starts_with(&format!("{head}.")))
    {
        message = rest;
    }
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((_, expected)) = rest.split_once("`, ")
    {
        return format!("unknown field; {}", expected.replace('`', ""));
    }
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((value, expected)) = rest.split_once("`, ")
    {
        return format!("unknown value {value:?}; {}", expected.replace('`', ""));
    }
    message.replace(
        "struct Prices",
        "a mapping { input, output, cache_read, cache_write }",
    )
}

/// Builds the role's provider. The API key is read from the variable
/// [`ModelConfig::key_env`] names, through `env` (e.g. [`process_env`]); an
/// empty value counts as missing. Requests go to
/// [`ModelConfig::request_base_url`]: `base_url`, else `ANTHROPIC_BASE_URL` /
/// `OPENAI_BASE_URL` from `env`, else the public API. An `openai` model at a
/// non-default base URL may go without a key (local servers need none)
/// unless `api_key_env` is set explicitly.
pub fn build_provider(
    cfg: &ModelConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Box<dyn Provider>, ConfigError> {
    let key_env = cfg.key_env();
    let key = || {
        env(key_env)
            .filter(|k| !k.trim().is_empty())
            .map(SecretString::from)
    };
    let missing = || ConfigError::MissingKey {
        provider: cfg.provider,
        var: key_env.to_owned(),
    };
    match cfg.provider {
        ProviderKind::Anthropic => {
            let base_url = cfg.request_base_url(env)?;
            let key = key().ok_or_else(missing)?;
            Ok(Box::new(
                Anthropic::new(key, Some(&base_url)).with_key_env(key_env),
            ))
        }
        ProviderKind::OpenAi => {
            let base_url = cfg.request_base_url(env)?;
            let base_url = base_url.as_str();
            let local = cfg.api_key_env.is_none()
                && base_url.trim_end_matches('/') != openai::DEFAULT_BASE_URL;
            let key = match key() {
                Some(key) => Some(key),
                None if local => None,
                None => return Err(missing()),
            };
            Ok(Box::new(OpenAi::new(key, base_url).with_key_env(key_env)))
        }
        ProviderKind::Scripted => {
            let path = cfg.script.as_ref().ok_or_else(|| ConfigError::Invalid {
                key: "script".into(),
                message: "the scripted provider needs `script:`, the path of its script file"
                    .into(),
            })?;
            let scripted = Scripted::from_file(path).map_err(|e| ConfigError::Script {
                path: path.clone(),
                message: match e {
                    LlmError::Script(m) => m,
                    other => other.to_string(),
                },
            })?;
            Ok(Box::new(scripted))
        }
    }
}

/// The process environment, for [`build_provider`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The built-in context window of a model, in tokens, by prefix of its name:
/// `claude-*` 200 000; `gpt-4.1*` 1 047 576; `gpt-4o*` 128 000; `o3*`,
/// `o4-mini*` 200 000; `qwen2.5-coder*` 32 768; anything else
/// [`DEFAULT_CONTEXT_WINDOW`].
pub fn default_context_window(model: &str) -> u32 {
    const TABLE: &[(&str, u32)] = &[
        ("claude-", 200_000),
        ("gpt-4.1", 1_047_576),
        ("gpt-4o", 128_000),
        ("o4-mini", 200_000),
        ("o3", 200_000),
        ("qwen2.5-coder", 32_768),
    ];
    TABLE
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map_or(DEFAULT_CONTEXT_WINDOW, |(_, n)| *n)
}

/// Whether an API root is on this machine: its host is `localhost`, a
/// loopback address (`127.0.0.0/8`) or `[::1]`.
pub fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One `--model` value's model, for every role or for one.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
    /// The demo's scripted model (its script is the demo's to name).
    Scripted,
    /// The open-weight model `scripts/local-model` serves on this machine
    /// (its address is known once the server runs).
    Local,
    /// A model behind an API: `provider` and `model` set, and `base_url`
    /// for `openai-compatible:` (or any provider's `@URL`).
    Api(ModelSection),
}

impl ModelSpec {
    /// The spec as written (`anthropic:claude-sonnet-4-5`, `local`, …).
    pub fn describe(&self) -> String {
        match self {
            ModelSpec::Scripted => "scripted".into(),
            ModelSpec::Local => "local".into(),
            ModelSpec::Api(section) => {
                let provider = section.provider.map_or("?", ProviderKind::as_str);
                let model = section.model.as_deref().unwrap_or("?");
                match &section.base_url {
                    Some(url) => format!("{provider}:{model}@{url}"),
                    None => format!("{provider}:{model}"),
                }
            }
        }
    }
}

/// What a `--model` value may look like, for errors.
pub const MODEL_SPEC_FORMS: &str = "expected PROVIDER:MODEL (anthropic:claude-sonnet-4-5, openai:gpt-4.1, openai-compatible:MODEL@http://HOST:PORT/v1), scripted or local, for every role, or ROLE=… for one role (orchestrator, worker, scrutiny, user-testing), e.g. --model anthropic:claude-sonnet-4-5 --model scrutiny=openai:gpt-4.1";

/// A `--model` value that cannot be read. Carries the value (a model name,
/// never a key: keys come from the environment only).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("--model {spec:?}: {message}; {MODEL_SPEC_FORMS}")]
pub struct ModelSpecError {
    pub spec: String,
    pub message: String,
}

/// A parsed `--model` value: a role (`None`: every role) and its model.
#[derive(Debug, Clone, PartialEq)]
pub struct SeatSpec {
    pub role: Option<Role>,
    pub model: ModelSpec,
}

impl FromStr for SeatSpec {
    type Err = ModelSpecError;

    /// `[ROLE=]SPEC`, SPEC one of `scripted`, `local`, `anthropic:MODEL`,
    /// `openai:MODEL`, `openai-compatible:MODEL@URL` (and `@URL` after any
    /// provider's model).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |message: String| ModelSpecError {
            spec: text.to_owned(),
            message,
        };
        let text_trimmed = text.trim();
        // `ROLE=` comes before any `:` or `@` (a URL may hold `=`).
        let (role, spec) = match text_trimmed.split_once('=') {
            Some((head, rest)) if !head.contains([':', '@']) => {
                let role = head.trim().parse::<Role>().map_err(err)?;
                (Some(role), rest.trim())
            }
            _ => (None, text_trimmed),
        };
        let model = match spec {
            "" => return Err(err("no model given".into())),
            "scripted" => ModelSpec::Scripted,
            "local" => ModelSpec::Local,
            _ => {
                let Some((provider, rest)) = spec.split_once(':') else {
                    return Err(err(format!("{spec:?} names no provider")));
                };
                let (kind, needs_url) = match provider.trim() {
                    "anthropic" => (ProviderKind::Anthropic, false),
                    "openai" => (ProviderKind::OpenAi, false),
                    "openai-compatible" => (ProviderKind::OpenAi, true),
                    "scripted" => {
                        return Err(err(
                            "the scripted model takes no model name: write `scripted`".into(),
                        ));
                    }
                    other => {
                        return Err(err(format!(
                            "unknown provider {other:?} (anthropic, openai or openai-compatible)"
                        )));
                    }
                };
                let (model, base_url) = match rest.split_once('@') {
                    Some((model, url)) => (model.trim(), Some(url.trim().to_owned())),
                    None => (rest.trim(), None),
                };
                check_model(model).map_err(|m| {
                    err(m.replace("e.g. claude-sonnet-4-5", "e.g. anthropic:claude-sonnet-4-5"))
                })?;
                match &base_url {
                    Some(url) => check_base_url(url).map_err(err)?,
                    None if needs_url => {
                        return Err(err(format!(
                            "openai-compatible needs the server's API root after `@`: openai-compatible:{model}@http://127.0.0.1:8080/v1"
                        )));
                    }
                    None => {}
                }
                ModelSpec::Api(ModelSection {
                    provider: Some(kind),
                    model: Some(model.to_owned()),
                    base_url,
                    ..ModelSection::default()
                })
            }
        };
        Ok(SeatSpec { role, model })
    }
}

/// Every `--model` value of one command: a model for every role (the
/// scripted one when none is given) and per-role overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpecs {
    pub default: ModelSpec,
    pub roles: BTreeMap<Role, ModelSpec>,
}

impl Default for ModelSpecs {
    /// The scripted model in every seat.
    fn default() -> Self {
        ModelSpecs {
            default: ModelSpec::Scripted,
            roles: BTreeMap::new(),
        }
    }
}

impl ModelSpecs {
    /// Reads `--model` values in order. Each role may be named once, and
    /// one value may go without a role.
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<Self, ModelSpecError> {
        let mut out = ModelSpecs::default();
        let mut default_from: Option<String> = None;
        for text in specs {
            let text = text.as_ref();
            let seat: SeatSpec = text.parse()?;
            match seat.role {
                None => {
                    if let Some(first) = &default_from {
                        return Err(ModelSpecError {
                            spec: text.to_owned(),
                            message: format!(
                                "a model for every role was already given ({first}); give one, and ROLE=… for the roles that differ"
                            ),
                        });
                    }
                    default_from = Some(text.to_owned());
                    out.default = seat.model;
                }
                Some(role) => {
                    if out.roles.insert(role, seat.model).is_some() {
                        return Err(ModelSpecError {
                            spec: text.to_owned(),
                            message: format!("the {role} was given a model twice"),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// The model of `role`.
    pub fn for_role(&self, role: Role) -> &ModelSpec {
        self.roles.get(&role).unwrap_or(&self.default)
    }

    /// Whether some role runs on `spec`.
    pub fn uses(&self, pred: impl Fn(&ModelSpec) -> bool) -> bool {
        Role::ALL.iter().any(|&r| pred(self.for_role(r)))
    }

    /// Whether every role runs on the scripted model.
    pub fn all_scripted(&self) -> bool {
        Role::ALL
            .iter()
            .all(|&r| *self.for_role(r) == ModelSpec::Scripted)
    }

    /// The `models:` section. One model for every role is `default:`;
    /// otherwise each role gets a whole section of its own and there is no
    /// `default:` (a role section over a `default:` of the same provider
    /// would inherit its `base_url`). `section` turns each spec into its
    /// settings (the caller knows the scripted model's script, the local
    /// server's address, prices).
    pub fn to_models_config(&self, section: impl Fn(&ModelSpec) -> ModelSection) -> ModelsConfig {
        let mut config = ModelsConfig::default();
        if self.roles.values().all(|spec| *spec == self.default) {
            config.default = Some(section(&self.default));
        } else {
            for role in Role::ALL {
                *config.section_mut(role) = section(self.for_role(role));
            }
        }
        config
    }
}

/// What is wrong with a model configuration, and what to do about it. No
/// variant carries an API key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read as YAML of the expected shape. `key` is the
    /// path (`models.scrutiny.modle`), empty for the file as a whole.
    #[error(
        "{REPO_CONFIG_PATH}{line}: {key}{message}",
        line = line.map(|l| format!(" line {l}")).unwrap_or_default(),
        key = if key.is_empty() { String::new() } else { format!("{key}: ") }
    )]
    Parse {
        key: String,
        line: Option<usize>,
        message: String,
    },
    /// A value, or a combination of values, that cannot work. `key` is the
    /// path of the setting (`models.default.max_tokens`), or starts with
    /// [`SERVER_DEFAULTS`].
    #[error("{at}{key}: {message}", at = in_file(key))]
    Invalid { key: String, message: String },
    /// A model with neither `prices:` nor a built-in price. `key` is the
    /// section that chose the model.
    #[error(
        "{at}{key}: model {model:?} has no built-in price, and a model without a price would make budgets meaningless; add `prices: {{ input: …, output: …, cache_read: …, cache_write: … }}` (USD per million tokens) next to its `model:`",
        at = in_file(key)
    )]
    MissingPrices { key: String, model: String },
    /// An environment variable read as a setting (`ANTHROPIC_BASE_URL`,
    /// `OPENAI_BASE_URL`) holds a value that cannot work.
    #[error("the environment variable {var}: {message}")]
    InvalidEnv { var: String, message: String },
    /// The API key's environment variable is unset or empty.
    #[error(
        "no API key for the {provider} model: the environment variable {var} is not set; add the key as a repository secret and map it into the job's env (`env: {var}: ${{{{ secrets.{var} }}}}`), or set `api_key_env:` in {REPO_CONFIG_PATH} to the variable that holds it"
    )]
    MissingKey { provider: ProviderKind, var: String },
    /// The scripted provider's script could not be loaded.
    #[error(
        "cannot load the script {} for the scripted model: {message}; check `script:` in {REPO_CONFIG_PATH}",
        path.display()
    )]
    Script { path: PathBuf, message: String },
}

/// `.github/missions.yml: ` for keys of the repository's file.
fn in_file(key: &str) -> String {
    if key.starts_with("models") {
        format!("{REPO_CONFIG_PATH}: ")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_messages_lose_the_crates_prefix_and_position() {
        assert_eq!(
            yaml_message(
                "models.default: unknown field `modle`, expected one of `provider`, `model` at line 4 column 5",
                "models.default.modle",
                Some((4, 5)),
            ),
            "unknown field; expected one of provider, model"
        );
        assert_eq!(
            yaml_message(
                "models.scrutiny.provider: unknown variant `foo`, expected one of `anthropic`, `openai`, `scripted` at line 3 column 15",
                "models.scrutiny.provider",
                Some((3, 15)),
            ),
            "unknown value \"foo\"; expected one of anthropic, openai, scripted"
        );
        assert_eq!(
            yaml_message("models: missing field `x`", "models", None),
            "missing field `x`"
        );
        assert_eq!(yaml_message("oops: something", "", None), "oops: something");
    }

    #[test]
    fn key_env_names_are_checked_without_echoing_the_value() {
        assert!(check_key_env("OPENROUTER_API_KEY").is_ok());
        assert!(check_key_env("_X1").is_ok());
        let err = check_key_env("sk-ant-api03-secret").unwrap_err();
        assert!(!err.contains("sk-ant"), "{err}");
        assert!(check_key_env("").is_err());
        assert!(check_key_env("1ABC").is_err());
    }

    #[test]
    fn base_urls_must_be_http() {
        assert!(check_base_url("http://localhost:11434/v1").is_ok());
        assert!(check_base_url("https://openrouter.ai/api/v1").is_ok());
        assert!(check_base_url("ftp://x").is_err());
        assert!(check_base_url("https://").is_err());
        assert!(check_base_url("openrouter.ai").is_err());
    }

    fn api(provider: ProviderKind, model: &str, base_url: Option<&str>) -> ModelSpec {
        ModelSpec::Api(ModelSection {
            provider: Some(provider),
            model: Some(model.into()),
            base_url: base_url.map(str::to_owned),
            ..ModelSection::default()
        })
    }

    #[test]
    fn model_specs_name_a_provider_and_a_model_for_every_role_or_one() {
        let seat: SeatSpec = "anthropic:claude-sonnet-4-5".parse().unwrap();
        assert_eq!(seat.role, None);
        assert_eq!(
            seat.model,
            api(ProviderKind::Anthropic, "claude-sonnet-4-5", None)
        );
        let seat: SeatSpec = "scrutiny=openai:gpt-4.1".parse().unwrap();
        assert_eq!(seat.role, Some(Role::Scrutiny));
        assert_eq!(seat.model, api(ProviderKind::OpenAi, "gpt-4.1", None));
        let seat: SeatSpec = "openai-compatible:qwen2.5-coder@http://127.0.0.1:8080/v1"
            .parse()
            .unwrap();
        assert_eq!(
            seat.model,
            api(
                ProviderKind::OpenAi,
                "qwen2.5-coder",
                Some("http://127.0.0.1:8080/v1")
            )
        );
        assert_eq!(
            seat.model.describe(),
            "openai:qwen2.5-coder@http://127.0.0.1:8080/v1"
        );
        // A model name with a colon (Ollama's tags) keeps it.
        let seat: SeatSpec =
            "user-testing=openai-compatible:qwen2.5-coder:32b@http://localhost:11434/v1?x=1"
                .parse()
                .unwrap();
        assert_eq!(seat.role, Some(Role::UserTesting));
        assert_eq!(
            seat.model,
            api(
                ProviderKind::OpenAi,
                "qwen2.5-coder:32b",
                Some("http://localhost:11434/v1?x=1")
            )
        );
        assert_eq!(
            "scripted".parse::<SeatSpec>().unwrap().model,
            ModelSpec::Scripted
        );
        let seat: SeatSpec = "worker=local".parse().unwrap();
        assert_eq!(
            (seat.role, seat.model),
            (Some(Role::Worker), ModelSpec::Local)
        );
        assert_eq!(
            "user_testing=local".parse::<SeatSpec>().unwrap().role,
            Some(Role::UserTesting)
        );
    }

    #[test]
    fn bad_model_specs_say_which_form_is_expected() {
        for (spec, says) in [
            ("", "no model given"),
            ("claude-sonnet-4-5", "names no provider"),
            ("gemini:pro", "unknown provider \"gemini\""),
            ("anthropic:", "the model name is empty"),
            (
                "openai-compatible:qwen",
                "needs the server's API root after `@`",
            ),
            (
                "openai-compatible:qwen@localhost:8080",
                "not an http(s) URL",
            ),
            ("tester=local", "unknown role \"tester\""),
            ("worker=", "no model given"),
            ("scripted:x", "takes no model name"),
        ] {
            let err = spec.parse::<SeatSpec>().unwrap_err().to_string();
            assert!(err.contains(says), "{spec:?}: {err}");
            assert!(err.contains("expected PROVIDER:MODEL"), "{err}");
            assert!(err.contains("ROLE="), "{err}");
        }
    }

    #[test]
    fn a_set_of_model_specs_has_one_model_per_role() {
        let specs = ModelSpecs::parse::<&str>(&[]).unwrap();
        assert!(specs.all_scripted());
        let specs = ModelSpecs::parse(&[
            "anthropic:claude-sonnet-4-5",
            "scrutiny=openai:gpt-4.1",
            "worker=local",
        ])
        .unwrap();
        assert!(!specs.all_scripted());
        assert!(specs.uses(|m| *m == ModelSpec::Local));
        assert_eq!(
            *specs.for_role(Role::Orchestrator),
            api(ProviderKind::Anthropic, "claude-sonnet-4-5", None)
        );
        assert_eq!(
            *specs.for_role(Role::Scrutiny),
            api(ProviderKind::OpenAi, "gpt-4.1", None)
        );
        assert_eq!(*specs.for_role(Role::Worker), ModelSpec::Local);
        // Roles only: the others stay scripted.
        let specs = ModelSpecs::parse(&["worker=anthropic:claude-haiku-4-5"]).unwrap();
        assert_eq!(*specs.for_role(Role::Scrutiny), ModelSpec::Scripted);

        let err = ModelSpecs::parse(&["anthropic:claude-sonnet-4-5", "openai:gpt-4.1"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("already given"), "{err}");
        let err = ModelSpecs::parse(&["worker=local", "worker=scripted"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("the worker was given a model twice"), "{err}");
    }

    #[test]
    fn model_specs_become_a_models_section_that_reads_back() {
        let section = |spec: &ModelSpec| match spec {
            ModelSpec::Api(s) => s.clone(),
            ModelSpec::Local => ModelSection {
                provider: Some(ProviderKind::OpenAi),
                model: Some("qwen2.5-coder-1.5b-instruct".into()),
                base_url: Some("http://127.0.0.1:9000/v1".into()),
                prices: Some(Prices {
                    input: 0.0,
                    output: 0.0,
                    cache_read: 0.0,
                    cache_write: 0.0,
                }),
                context_window: Some(16384),
                ..ModelSection::default()
            },
            ModelSpec::Scripted => ModelSection {
                provider: Some(ProviderKind::Scripted),
                model: Some("scripted-demo".into()),
                script: Some("/tmp/s/{agent}.json".into()),
                ..ModelSection::default()
            },
        };
        // One model: `default:` only.
        let one = ModelSpecs::parse(&["anthropic:claude-sonnet-4-5"])
            .unwrap()
            .to_models_config(section);
        assert!(one.default.is_some() && one.worker.is_none());
        let yaml = one.to_yaml();
        assert!(yaml.starts_with("models:\n  default:\n"), "{yaml}");
        assert_eq!(parse_repo_config(&yaml).unwrap(), one);

        // Several: a whole section per role, no `default:` to inherit from.
        let mixed = ModelSpecs::parse(&[
            "openai-compatible:qwen@http://127.0.0.1:8080/v1",
            "scrutiny=openai:gpt-4.1",
            "worker=local",
            "user-testing=scripted",
        ])
        .unwrap()
        .to_models_config(section);
        assert!(mixed.default.is_none());
        let yaml = mixed.to_yaml();
        assert!(yaml.contains("user-testing:"), "{yaml}");
        let back = parse_repo_config(&yaml).unwrap();
        assert_eq!(back, mixed);
        let defaults = ModelConfig::default();
        let scrutiny = back.resolve(Role::Scrutiny, &defaults);
        // gpt-4.1 goes to OpenAI, not the orchestrator's local server.
        let scrutiny = scrutiny.unwrap();
        assert_eq!(scrutiny.base_url, None);
        assert_eq!(scrutiny.model, "gpt-4.1");
        let worker = back.resolve(Role::Worker, &defaults).unwrap();
        assert_eq!(worker.context_window(), 16384);
        assert_eq!(worker.prices().input, 0.0);
        let tester = back.resolve(Role::UserTesting, &defaults).unwrap();
        assert_eq!(tester.provider, ProviderKind::Scripted);
        // An unpriced model elsewhere than this machine still needs prices.
        let err = back.resolve(Role::Orchestrator, &defaults).unwrap_err();
        assert!(matches!(err, ConfigError::MissingPrices { .. }), "{err:?}");
    }

    #[test]
    fn context_windows_come_from_the_config_or_the_models_name() {
        let window = |model: &str| ModelConfig::new(ProviderKind::OpenAi, model).context_window();
        assert_eq!(window("claude-sonnet-4-5"), 200_000);
        assert_eq!(window("claude-3-5-haiku-latest"), 200_000);
        assert_eq!(window("gpt-4.1-mini"), 1_047_576);
        assert_eq!(window("gpt-4o-2024-08-06"), 128_000);
        assert_eq!(window("o3"), 200_000);
        assert_eq!(window("o4-mini"), 200_000);
        assert_eq!(window("qwen2.5-coder-1.5b-instruct"), 32_768);
        assert_eq!(window("my-llama"), DEFAULT_CONTEXT_WINDOW);
        let set = ModelConfig {
            context_window: Some(16_384),
            ..ModelConfig::new(ProviderKind::OpenAi, "gpt-4.1")
        };
        assert_eq!(set.context_window(), 16_384);

        // Model-bound: a section that changes the model does not inherit it.
        let yaml = "models:\n  default:\n    model: claude-sonnet-4-5\n    context_window: 100000\n  worker:\n    model: claude-haiku-4-5\n  scrutiny:\n    max_tokens: 4000\n";
        let models = parse_repo_config(yaml).unwrap();
        let defaults = ModelConfig::default();
        let orchestrator = models.resolve(Role::Orchestrator, &defaults).unwrap();
        assert_eq!(orchestrator.context_window(), 100_000);
        let worker = models.resolve(Role::Worker, &defaults).unwrap();
        assert_eq!(worker.context_window, None);
        assert_eq!(worker.context_window(), 200_000);
        let scrutiny = models.resolve(Role::Scrutiny, &defaults).unwrap();
        assert_eq!(scrutiny.context_window(), 100_000);

        for bad in ["0", "-5", "100", "1000000000000"] {
            let yaml = format!("models:\n  default:\n    context_window: {bad}\n");
            let err = parse_repo_config(&yaml).unwrap_err().to_string();
            assert!(
                err.contains("models.default.context_window") && err.contains("out of range"),
                "{err}"
            );
        }
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
    fn base_urls_come_from_the_sdk_variables_when_the_config_sets_none() {
        let claude = ModelConfig::new(ProviderKind::Anthropic, "claude-sonnet-4-5");
        let gpt = ModelConfig::new(ProviderKind::OpenAi, "gpt-4.1");
        let none = env_of(&[]);
        assert_eq!(
            claude.request_base_url(&none).unwrap(),
            anthropic::DEFAULT_BASE_URL
        );
        assert_eq!(
            gpt.request_base_url(&none).unwrap(),
            openai::DEFAULT_BASE_URL
        );
        let set = env_of(&[
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/"),
            ("OPENAI_BASE_URL", "https://proxy.example/v1"),
        ]);
        assert_eq!(
            claude.request_base_url(&set).unwrap(),
            "http://127.0.0.1:9/"
        );
        assert_eq!(
            gpt.request_base_url(&set).unwrap(),
            "https://proxy.example/v1"
        );
        // The configured one wins; an empty variable is unset.
        let configured = ModelConfig {
            base_url: Some("https://openrouter.ai/api/v1".into()),
            ..gpt.clone()
        };
        assert_eq!(
            configured.request_base_url(&set).unwrap(),
            "https://openrouter.ai/api/v1"
        );
        let empty = env_of(&[("ANTHROPIC_BASE_URL", " ")]);
        assert_eq!(
            claude.request_base_url(&empty).unwrap(),
            anthropic::DEFAULT_BASE_URL
        );

        // An invalid one is an error naming the variable.
        let bad = env_of(&[
            ("ANTHROPIC_BASE_URL", "api.anthropic.com"),
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
        ]);
        let err = build_provider(&claude, &bad).err().expect("invalid URL");
        assert!(matches!(err, ConfigError::InvalidEnv { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("ANTHROPIC_BASE_URL"), "{text}");
        assert!(!text.contains("sk-ant-test"), "{text}");

        // OpenAI at another base URL (from the variable) needs no key, unless
        // `api_key_env` names one; at OpenAI's own, it does.
        let local = env_of(&[("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")]);
        assert!(build_provider(&gpt, &local).is_ok());
        let named = ModelConfig {
            api_key_env: Some("LOCAL_KEY".into()),
            ..gpt.clone()
        };
        let err = build_provider(&named, &local).err().expect("missing key");
        assert!(matches!(err, ConfigError::MissingKey { .. }), "{err:?}");
        let err = build_provider(&gpt, &none).err().expect("missing key");
        assert!(err.to_string().contains("OPENAI_API_KEY"), "{err}");
        // Anthropic always needs its key.
        let err = build_provider(&claude, &set).err().expect("missing key");
        assert!(err.to_string().contains("ANTHROPIC_API_KEY"), "{err}");
    }

    #[test]
    fn loopback_urls_are_this_machine() {
        for url in [
            "http://127.0.0.1:8080/v1",
            "http://localhost/v1",
            "https://LOCALHOST:1",
            "http://[::1]:8080/v1",
            "http://127.1.2.3/",
            "http://user@127.0.0.1:1/v1",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "https://api.openai.com/v1",
            "http://10.0.0.1:8080/v1",
            "http://localhost.example.com/v1",
            "http://127.0.0.1.nip.io/",
            "localhost:8080",
            "http://[::2]/",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }

    #[test]
    fn roles_parse_both_spellings_of_user_testing() {
        assert_eq!("user-testing".parse::<Role>(), Ok(Role::UserTesting));
        assert_eq!("user_testing".parse::<Role>(), Ok(Role::UserTesting));
        assert_eq!(Role::UserTesting.to_string(), "user-testing");
        assert!("tester".parse::<Role>().is_err());
    }
}
