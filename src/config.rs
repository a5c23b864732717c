//! Server configuration: an optional TOML file, overridden by `MISSIONS_*`
//! environment variables whose names deployments rely on (see README).
//! Secrets are held in `SecretString`, so `Debug` and logs show `[REDACTED]`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://.missions-data/missions.db";
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";
/// Longest wait between two attempts of a failing handler, whatever the file says.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The environment variables read, in one place so docs and errors agree.
pub mod env {
    pub const LISTEN: &str = "MISSIONS_LISTEN";
    pub const DATABASE_URL: &str = "MISSIONS_DATABASE_URL";
    pub const WEBHOOK_SECRET: &str = "MISSIONS_WEBHOOK_SECRET";
    pub const APP_ID: &str = "MISSIONS_APP_ID";
    pub const PRIVATE_KEY_PATH: &str = "MISSIONS_PRIVATE_KEY_PATH";
    pub const PRIVATE_KEY: &str = "MISSIONS_PRIVATE_KEY";
    pub const GITHUB_API_URL: &str = "MISSIONS_GITHUB_API_URL";
    pub const CONTROL_TOKEN: &str = "MISSIONS_CONTROL_TOKEN";
    pub const CONTROL_HOSTS: &str = "MISSIONS_CONTROL_HOSTS";
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "missing setting: set {var} (or `{key}` in the config file){hint}",
        hint = hint.map(|h| format!("; {h}")).unwrap_or_default()
    )]
    Missing {
        var: &'static str,
        key: &'static str,
        hint: Option<&'static str>,
    },
    #[error("invalid {var}: {message}")]
    Invalid { var: &'static str, message: String },
    #[error("cannot read private key file {path} (from {var}): {source}")]
    PrivateKeyFile {
        var: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The config file as written by a person: every key optional, unknown keys rejected
/// so that a typo is an error rather than a silently ignored setting.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    database_url: Option<String>,
    webhook_secret: Option<SecretString>,
    /// Older secrets still accepted while a rotation is in progress.
    #[serde(default)]
    previous_webhook_secrets: Vec<SecretString>,
    app_id: Option<u64>,
    private_key_path: Option<PathBuf>,
    private_key: Option<SecretString>,
    github_api_url: Option<String>,
    #[serde(default)]
    inbox: InboxFileConfig,
    /// The model every role uses unless the repository's `.github/missions.yml` says otherwise.
    model: Option<crate::llm::config::ModelConfig>,
    #[serde(default)]
    missions: MissionsFileConfig,
    control_token: Option<SecretString>,
    control_hosts: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MissionsFileConfig {
    workflow_file: Option<String>,
    reconcile_every_secs: Option<u64>,
    job_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InboxFileConfig {
    max_attempts: Option<u32>,
    retry_base_ms: Option<u64>,
    retry_max_ms: Option<u64>,
}

/// Where the App's identity comes from, when configured.
#[derive(Debug, Clone)]
pub struct AppIdentity {
    pub app_id: u64,
    pub private_key_pem: SecretString,
}

/// How the event loop retries a failing handler before parking the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base: Duration::from_secs(2),
            max: Duration::from_secs(10 * 60),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff: base · 2^(attempt-1), capped at `max`.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.max)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Secret: a PostgreSQL URL may carry a password (`store::redact_url` for logs).
    pub database_url: SecretString,
    /// The current secret first, then any previous ones still accepted.
    pub webhook_secrets: Vec<SecretString>,
    /// `None` runs the server receive-only: webhooks are stored and handled,
    /// but nothing can call GitHub's API.
    pub app: Option<AppIdentity>,
    pub github_api_url: String,
    pub retry: RetryPolicy,
    /// Server-side default model settings (`[model]`), under each repository's `models:`.
    pub default_model: crate::llm::config::ModelConfig,
    /// How missions are run (`[missions]`).
    pub driver: crate::engine::missions::DriverConfig,
    /// Mission control's bearer token (`MISSIONS_CONTROL_TOKEN`, file `control_token`);
    /// without one the page and API answer requests made on this machine only
    /// (see `server::control`).
    pub control_token: Option<SecretString>,
    /// Host names, besides loopback's, that requests to mission control may be
    /// addressed to (`MISSIONS_CONTROL_HOSTS`, file `control_hosts`), lowercase.
    /// They count only with a control token.
    pub control_hosts: Vec<String>,
}

impl Config {
    /// Reads the optional file, then the process environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::load_with_env(path, &vars)
    }

    /// Same as [`Config::load`] with the environment given explicitly (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        vars: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let file = read_file(path)?;
        // An empty variable counts as unset: `FOO= missions serve` should not
        // override the file with an empty secret.
        let var = |name: &str| vars.get(name).filter(|v| !v.is_empty()).cloned();

        let listen_text = var(env::LISTEN)
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text.parse().map_err(|e| ConfigError::Invalid {
            var: env::LISTEN,
            message: format!("{listen_text:?} is not an address like 127.0.0.1:3000 ({e})"),
        })?;

        let database_url = database_url(file.database_url, vars)?;

        let secret = var(env::WEBHOOK_SECRET)
            .map(SecretString::from)
            .or(file.webhook_secret)
            .ok_or(ConfigError::Missing {
                var: env::WEBHOOK_SECRET,
                key: "webhook_secret",
                hint: Some("it is the secret set on the GitHub App's webhook"),
            })?;
        if secret.expose_secret().is_empty() {
            return Err(ConfigError::Invalid {
                var: env::WEBHOOK_SECRET,
                message: "the webhook secret is empty".into(),
            });
        }
        // An empty HMAC key is one anybody can sign with.
        if file
            .previous_webhook_secrets
            .iter()
            .any(|s| s.expose_secret().is_empty())
        {
            return Err(ConfigError::Invalid {
                var: "previous_webhook_secrets",
                message: "an entry is empty; remove it".into(),
            });
        }
        let mut webhook_secrets = vec![secret];
        webhook_secrets.extend(file.previous_webhook_secrets);

        let app_id = match var(env::APP_ID) {
            Some(text) => Some(text.parse::<u64>().map_err(|_| ConfigError::Invalid {
                var: env::APP_ID,
                message: format!(
                    "{text:?} is not a number (the App id is on the App's settings page)"
                ),
            })?),
            None => file.app_id,
        };
        let private_key = if let Some(pem) = var(env::PRIVATE_KEY) {
            Some(SecretString::from(pem))
        } else if let Some(path) = var(env::PRIVATE_KEY_PATH) {
            Some(read_key(env::PRIVATE_KEY_PATH, Path::new(&path))?)
        } else if let Some(pem) = file.private_key {
            Some(pem)
        } else if let Some(path) = file.private_key_path {
            Some(read_key("private_key_path", &path)?)
        } else {
            None
        };
        let app = match (app_id, private_key) {
            (Some(app_id), Some(private_key_pem)) => Some(AppIdentity {
                app_id,
                private_key_pem,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    var: env::PRIVATE_KEY_PATH,
                    key: "private_key_path",
                    hint: Some(
                        "the App id is set, so its private key is needed too (or MISSIONS_PRIVATE_KEY with the PEM)",
                    ),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    var: env::APP_ID,
                    key: "app_id",
                    hint: Some("a private key is set, so the App id it belongs to is needed too"),
                });
            }
        };

        let github_api_url = var(env::GITHUB_API_URL)
            .or(file.github_api_url)
            .unwrap_or_else(|| DEFAULT_GITHUB_API_URL.to_owned());
        if !(github_api_url.starts_with("https://") || github_api_url.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                var: env::GITHUB_API_URL,
                message: format!("{github_api_url:?} is not an http(s) URL"),
            });
        }

        let defaults = RetryPolicy::default();
        let retry = RetryPolicy {
            max_attempts: file
                .inbox
                .max_attempts
                .unwrap_or(defaults.max_attempts)
                .max(1),
            base: file
                .inbox
                .retry_base_ms
                .map(Duration::from_millis)
                .unwrap_or(defaults.base),
            max: file
                .inbox
                .retry_max_ms
                .map(Duration::from_millis)
                .unwrap_or(defaults.max)
                .min(MAX_RETRY_DELAY),
        };

        let default_model = file.model.unwrap_or_default();
        default_model
            .validate("[model] in the config file")
            .map_err(|e| ConfigError::Parse {
                path: path.map(Path::to_path_buf).unwrap_or_default(),
                message: e.to_string(),
            })?;

        let mut driver = crate::engine::missions::DriverConfig {
            server_model: default_model.clone(),
            ..Default::default()
        };
        if let Some(file_name) = file.missions.workflow_file {
            if file_name.is_empty() || file_name.contains('/') {
                return Err(ConfigError::Invalid {
                    var: "missions.workflow_file",
                    message: format!(
                        "{file_name:?} is not a file name under .github/workflows/ (e.g. missions.yml)"
                    ),
                });
            }
            driver.workflow_file = file_name;
        }
        if let Some(secs) = file.missions.reconcile_every_secs {
            driver.reconcile_every = Duration::from_secs(secs.max(1));
        }
        if let Some(secs) = file.missions.job_timeout_secs {
            driver.job_timeout = Duration::from_secs(secs.max(60));
        }

        let control_hosts = match var(env::CONTROL_HOSTS) {
            Some(list) => control_hosts(
                env::CONTROL_HOSTS,
                list.split(',').map(str::trim).filter(|h| !h.is_empty()),
            )?,
            None => control_hosts(
                "control_hosts",
                file.control_hosts.iter().flatten().map(String::as_str),
            )?,
        };

        Ok(Config {
            listen,
            database_url: SecretString::from(database_url),
            webhook_secrets,
            app,
            github_api_url,
            retry,
            default_model,
            driver,
            control_token: var(env::CONTROL_TOKEN)
                .map(SecretString::from)
                .or(file.control_token)
                .filter(|t| !t.expose_secret().is_empty()),
            control_hosts,
        })
    }
}

/// The names mission control may be addressed to, checked and lowercased: a
/// host name or IP address as a browser puts it in `Host`, without scheme,
/// port or path (the port does not matter to the check).
fn control_hosts<'a>(
    var: &'static str,
    names: impl Iterator<Item = &'a str>,
) -> Result<Vec<String>, ConfigError> {
    names
        .map(|name| {
            let plain = !name.is_empty()
                && name.parse::<axum::http::uri::Authority>().is_ok_and(|a| {
                    a.port().is_none() && a.as_str() == a.host() && !a.host().is_empty()
                });
            if plain {
                Ok(name.to_ascii_lowercase())
            } else {
                Err(ConfigError::Invalid {
                    var,
                    message: format!(
                        "{name:?} is not a host name; give names as a browser's address bar shows them, \
                         without scheme, port or path (e.g. missions.example.com)"
                    ),
                })
            }
        })
        .collect()
}

/// Only the database URL, for commands that need nothing else (`missions inbox`).
pub fn load_database_url(
    path: Option<&Path>,
    vars: &HashMap<String, String>,
) -> Result<String, ConfigError> {
    database_url(read_file(path)?.database_url, vars)
}

fn read_file(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str::<FileConfig>(&text).map_err(|e| {
        let line = e
            .span()
            .map(|span| text[..span.start].lines().count().max(1));
        ConfigError::Parse {
            path: path.to_owned(),
            message: format!(
                "{}{}",
                line.map(|l| format!("line {l}: ")).unwrap_or_default(),
                without_quoted_values(e.message())
            ),
        }
    })
}

/// toml quotes the offending value in backticks ("invalid type: integer `1234`");
/// that value may be a secret written without quotes, so it is left out. Other
/// messages quote key names ("unknown field `x`"), which stay.
fn without_quoted_values(message: &str) -> String {
    if !(message.starts_with("invalid type") || message.starts_with("invalid value")) {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('`').enumerate() {
        out.push_str(if i % 2 == 1 { "…" } else { part });
    }
    out
}

fn database_url(
    from_file: Option<String>,
    vars: &HashMap<String, String>,
) -> Result<String, ConfigError> {
    let url = vars
        .get(env::DATABASE_URL)
        .filter(|v| !v.is_empty())
        .cloned()
        .or(from_file)
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    if let Err(e) = crate::store::Engine::of_url(&url) {
        return Err(ConfigError::Invalid {
            var: env::DATABASE_URL,
            message: e.to_string(),
        });
    }
    Ok(url)
}

fn read_key(var: &'static str, path: &Path) -> Result<SecretString, ConfigError> {
    std::fs::read_to_string(path)
        .map(SecretString::from)
        .map_err(|source| ConfigError::PrivateKeyFile {
            var,
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The error from loading a config file holding `text`, with no environment.
    fn file_error(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missions.toml");
        std::fs::write(&path, text).unwrap();
        Config::load_with_env(Some(&path), &vars(&[]))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_server_default_model_comes_from_the_model_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missions.toml");
        std::fs::write(
            &path,
            "webhook_secret = \"s\"\n[model]\nprovider = \"openai\"\nmodel = \"gpt-4.1\"\nmax_tokens = 4096\n",
        )
        .unwrap();
        let config = Config::load_with_env(Some(&path), &vars(&[])).unwrap();
        assert_eq!(config.default_model.model, "gpt-4.1");
        assert_eq!(config.default_model.max_tokens, 4096);
        // Without the table: Anthropic's default model.
        let config = Config::load_with_env(None, &vars(&[(env::WEBHOOK_SECRET, "s")])).unwrap();
        assert_eq!(
            config.default_model,
            crate::llm::config::ModelConfig::default()
        );
        // A model without a built-in price must say what it costs.
        let err = file_error(
            "webhook_secret = \"s\"\n[model]\nprovider = \"openai\"\nmodel = \"my-llama\"\n",
        );
        assert!(err.contains("prices"), "{err}");
        let err = file_error("webhook_secret = \"s\"\n[model]\nmodle = \"x\"\n");
        assert!(err.contains("modle"), "{err}");
    }

    #[test]
    fn defaults_apply_when_only_the_secret_is_set() {
        let config =
            Config::load_with_env(None, &vars(&[(env::WEBHOOK_SECRET, "s3cret-value")])).unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.database_url.expose_secret(), DEFAULT_DATABASE_URL);
        assert_eq!(config.github_api_url, DEFAULT_GITHUB_API_URL);
        assert!(config.app.is_none());
        assert_eq!(config.retry, RetryPolicy::default());
    }

    #[test]
    fn missing_secret_is_a_one_line_error_naming_the_variable() {
        let err = Config::load_with_env(None, &vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MISSIONS_WEBHOOK_SECRET"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn app_id_without_key_names_the_key_variable() {
        let err = Config::load_with_env(
            None,
            &vars(&[(env::WEBHOOK_SECRET, "x"), (env::APP_ID, "42")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("MISSIONS_PRIVATE_KEY_PATH"), "{err}");
        let err = Config::load_with_env(
            None,
            &vars(&[(env::WEBHOOK_SECRET, "x"), (env::PRIVATE_KEY, "pem")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("MISSIONS_APP_ID"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("key.pem");
        std::fs::write(&key_path, "-----BEGIN RSA PRIVATE KEY-----\nfile-key\n").unwrap();
        let path = dir.path().join("missions.toml");
        std::fs::write(
            &path,
            format!(
                r#"
listen = "127.0.0.1:4000"
database_url = "sqlite://file.db"
webhook_secret = "from-file"
previous_webhook_secrets = ["older"]
app_id = 7
private_key_path = "{}"
github_api_url = "https://ghe.example/api/v3"
[inbox]
max_attempts = 3
retry_base_ms = 10
"#,
                key_path.display()
            ),
        )
        .unwrap();
        let config = Config::load_with_env(
            Some(&path),
            &vars(&[(env::LISTEN, "127.0.0.1:5000"), (env::APP_ID, "8")]),
        )
        .unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(config.database_url.expose_secret(), "sqlite://file.db");
        let secrets: Vec<&str> = config
            .webhook_secrets
            .iter()
            .map(|s| s.expose_secret())
            .collect();
        assert_eq!(secrets, ["from-file", "older"]);
        let app = config.app.as_ref().unwrap();
        assert_eq!(app.app_id, 8);
        assert!(app.private_key_pem.expose_secret().contains("file-key"));
        assert_eq!(config.github_api_url, "https://ghe.example/api/v3");
        assert_eq!(config.retry.max_attempts, 3);
        assert_eq!(config.retry.base, Duration::from_millis(10));
    }

    #[test]
    fn the_missions_table_sets_how_missions_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missions.toml");
        std::fs::write(
            &path,
            "webhook_secret = \"s\"\n[missions]\nworkflow_file = \"agents.yml\"\nreconcile_every_secs = 30\njob_timeout_secs = 7200\n",
        )
        .unwrap();
        let config = Config::load_with_env(Some(&path), &vars(&[])).unwrap();
        assert_eq!(config.driver.workflow_file, "agents.yml");
        assert_eq!(config.driver.reconcile_every, Duration::from_secs(30));
        assert_eq!(config.driver.job_timeout, Duration::from_secs(7200));
        let err = file_error(
            "webhook_secret = \"s\"\n[missions]\nworkflow_file = \".github/workflows/x.yml\"\n",
        );
        assert!(err.contains("workflow_file"), "{err}");
        let err = file_error("webhook_secret = \"s\"\n[missions]\nworkflow = \"x.yml\"\n");
        assert!(err.contains("workflow"), "{err}");
    }

    #[test]
    fn control_hosts_come_from_the_environment_or_the_file_and_must_be_host_names() {
        let config = Config::load_with_env(
            None,
            &vars(&[
                (env::WEBHOOK_SECRET, "s"),
                (
                    env::CONTROL_HOSTS,
                    "Missions.Example.com, ,10.0.0.5,[fd00::1]",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.control_hosts,
            ["missions.example.com", "10.0.0.5", "[fd00::1]"]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missions.toml");
        std::fs::write(
            &path,
            "webhook_secret = \"s\"\ncontrol_hosts = [\"ops.example\"]\n",
        )
        .unwrap();
        let config = Config::load_with_env(Some(&path), &vars(&[])).unwrap();
        assert_eq!(config.control_hosts, ["ops.example"]);
        let none = Config::load_with_env(None, &vars(&[(env::WEBHOOK_SECRET, "s")])).unwrap();
        assert!(none.control_hosts.is_empty());
        for wrong in [
            "https://ops.example",
            "ops.example:443",
            "ops.example/x",
            "a@ops.example",
        ] {
            let err = Config::load_with_env(
                None,
                &vars(&[(env::WEBHOOK_SECRET, "s"), (env::CONTROL_HOSTS, wrong)]),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("MISSIONS_CONTROL_HOSTS"), "{err}");
            assert!(err.contains("without scheme, port or path"), "{err}");
        }
        let err = file_error("webhook_secret = \"s\"\ncontrol_hosts = [\"ops.example:8443\"]\n");
        assert!(err.contains("control_hosts"), "{err}");
    }

    #[test]
    fn unknown_keys_in_the_file_are_rejected() {
        let err = file_error("webhook_secert = \"typo\"\n");
        assert!(err.contains("webhook_secert"), "{err}");
    }

    #[test]
    fn a_secret_in_a_mistyped_key_is_not_echoed_in_the_error() {
        let err = file_error("listen = \"127.0.0.1:1\"\nwebhook_secret = 987654321\n");
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("987654321"), "{err}");
    }

    #[test]
    fn an_empty_previous_secret_is_refused() {
        let err = file_error("webhook_secret = \"s\"\nprevious_webhook_secrets = [\"\"]\n");
        assert!(err.contains("previous_webhook_secrets"), "{err}");
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let config = Config::load_with_env(
            None,
            &vars(&[
                (env::WEBHOOK_SECRET, "canary-webhook-secret"),
                (env::APP_ID, "1"),
                (env::PRIVATE_KEY, "canary-private-key"),
                (
                    env::DATABASE_URL,
                    "postgres://missions:canary-db-password@db/missions",
                ),
            ]),
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("canary-webhook-secret"), "{debug}");
        assert!(!debug.contains("canary-private-key"), "{debug}");
        assert!(!debug.contains("canary-db-password"), "{debug}");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(1),
            max: Duration::from_secs(5),
        };
        let delays: Vec<u64> = (1..=5).map(|a| policy.delay_after(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
    }
}
