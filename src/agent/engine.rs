//! Engine presets: how a third-party agent is installed and started so that
//! it talks ACP on stdio, calls its model only through the job's
//! [`super::proxy::ModelProxy`], and sends nothing anywhere else.
//!
//! Each preset pins exact npm versions in a committed lockfile (`engines/NAME/`,
//! compiled into the binary), installed with `npm ci --ignore-scripts` into a
//! cache outside the checkout ([`engines_dir`]), one directory per lockfile
//! hash, so a second run on the same machine reuses it and a changed lockfile
//! never mixes with an old install.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::llm::config::Engine;

/// Where installs go when `MISSIONS_ENGINES_DIR` is not set: under the
/// user's cache (`$XDG_CACHE_HOME` or `~/.cache`), `missions/engines`.
pub const ENGINES_DIR_VAR: &str = "MISSIONS_ENGINES_DIR";

/// A packaged agent.
#[derive(Debug)]
pub struct Preset {
    pub name: &'static str,
    package_json: &'static str,
    lockfile: &'static str,
    /// The packages and versions, for people (README, errors).
    pub versions: &'static str,
}

pub const CLAUDE_CODE: Preset = Preset {
    name: "claude-code",
    package_json: include_str!("../../engines/claude-code/package.json"),
    lockfile: include_str!("../../engines/claude-code/package-lock.json"),
    versions: "@zed-industries/claude-agent-acp@0.23.1, @anthropic-ai/claude-code@2.1.332",
};

pub const CODEX: Preset = Preset {
    name: "codex",
    package_json: include_str!("../../engines/codex/package.json"),
    lockfile: include_str!("../../engines/codex/package-lock.json"),
    versions: "@zed-industries/codex-acp@0.16.0",
};

pub const PRESETS: [&Preset; 2] = [&CLAUDE_CODE, &CODEX];

/// The preset an engine installs, if it is one (`acp:COMMAND` brings its own).
pub fn preset(engine: &Engine) -> Option<&'static Preset> {
    match engine {
        Engine::ClaudeCode => Some(&CLAUDE_CODE),
        Engine::Codex => Some(&CODEX),
        Engine::Builtin | Engine::Acp(_) => None,
    }
}

/// The cache engines are installed into.
pub fn engines_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(dir) = env(ENGINES_DIR_VAR).filter(|d| !d.trim().is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = env("XDG_CACHE_HOME")
        .filter(|d| !d.trim().is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("missions").join("engines")
}

impl Preset {
    /// `NAME-HASH`: the lockfile's hash names the install, so a new lockfile
    /// installs beside the old one.
    pub fn install_name(&self) -> String {
        let hash = hex::encode(Sha256::digest(self.lockfile.as_bytes()));
        format!("{}-{}", self.name, &hash[..12])
    }

    pub fn install_dir(&self, engines_dir: &Path) -> PathBuf {
        engines_dir.join(self.install_name())
    }

    /// Installs the preset unless it is there already; returns its directory.
    /// The install is made in a scratch directory and renamed into place,
    /// so a half-finished one is never taken for done.
    pub async fn ensure_installed(&self, engines_dir: &Path) -> anyhow::Result<PathBuf> {
        let dir = self.install_dir(engines_dir);
        if dir.join(STAMP).is_file() {
            return Ok(dir);
        }
        std::fs::create_dir_all(engines_dir)
            .with_context(|| format!("cannot create {}", engines_dir.display()))?;
        let scratch = engines_dir.join(format!(
            ".{}-{}",
            self.install_name(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&scratch)?;
        std::fs::write(scratch.join("package.json"), self.package_json)?;
        std::fs::write(scratch.join("package-lock.json"), self.lockfile)?;
        let output = tokio::process::Command::new("npm")
            .args([
                "ci",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ])
            .current_dir(&scratch)
            .env("npm_config_update_notifier", "false")
            .kill_on_drop(true)
            .output()
            .await;
        let output = match output {
            Ok(o) => o,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                bail!(
                    "cannot run npm to install the {} engine ({}): {e}; install Node.js 20 or later with npm",
                    self.name,
                    self.versions
                );
            }
        };
        if !output.status.success() {
            let _ = std::fs::remove_dir_all(&scratch);
            bail!(
                "npm could not install the {} engine ({}): {}",
                self.name,
                self.versions,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        std::fs::write(scratch.join(STAMP), self.versions)?;
        match std::fs::rename(&scratch, &dir) {
            Ok(()) => {}
            // Another job installed it meanwhile: use theirs.
            Err(_) if dir.join(STAMP).is_file() => {
                let _ = std::fs::remove_dir_all(&scratch);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(e)
                    .with_context(|| format!("cannot move the install to {}", dir.display()));
            }
        }
        Ok(dir)
    }
}

/// Written last into a finished install.
const STAMP: &str = ".missions-installed";

/// The npm platform suffix of this machine's native packages.
fn npm_platform() -> anyhow::Result<&'static str> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Ok("linux-x64"),
        ("linux", "aarch64") => Ok("linux-arm64"),
        ("macos", "x86_64") => Ok("darwin-x64"),
        ("macos", "aarch64") => Ok("darwin-arm64"),
        (os, arch) => bail!("no engine packages for {os}/{arch}"),
    }
}

/// How to start an agent, and with what environment (nothing else is
/// inherited).
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// What a launch is built from. No real key: `token` is the proxy's.
pub struct LaunchSpec<'a> {
    /// The proxy's base URL for the engine's API.
    pub proxy_url: &'a str,
    pub token: &'a str,
    pub model: &'a str,
    /// The agent's own HOME (a temporary directory).
    pub home: &'a Path,
    /// Reviewers: the agent's own sandbox, where it has one, is read-only.
    pub read_only: bool,
}

/// Settings every Claude Code run gets: no telemetry, no auto-update, no
/// error reports, no other traffic; MCP tools loaded up front (2.1.3xx
/// defers them behind a tool search otherwise).
const CLAUDE_CODE_ENV: &[(&str, &str)] = &[
    ("DISABLE_TELEMETRY", "1"),
    ("DISABLE_AUTOUPDATER", "1"),
    ("DISABLE_ERROR_REPORTING", "1"),
    ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
    ("ENABLE_TOOL_SEARCH", "false"),
];

/// The command line and environment of a preset installed in `dir`.
pub fn launch(engine: &Engine, dir: &Path, spec: &LaunchSpec) -> anyhow::Result<Launch> {
    let modules = dir.join("node_modules");
    let home = spec.home.to_string_lossy().into_owned();
    let mut env: Vec<(String, String)> = vec![("HOME".into(), home.clone())];
    let set = |env: &mut Vec<(String, String)>, k: &str, v: &str| env.push((k.into(), v.into()));
    match engine {
        Engine::ClaudeCode => {
            let executable = modules
                .join(format!("@anthropic-ai/claude-code-{}", npm_platform()?))
                .join("claude");
            for (k, v) in CLAUDE_CODE_ENV {
                set(&mut env, k, v);
            }
            set(
                &mut env,
                "CLAUDE_CODE_EXECUTABLE",
                &executable.to_string_lossy(),
            );
            set(&mut env, "ANTHROPIC_BASE_URL", spec.proxy_url);
            set(&mut env, "ANTHROPIC_API_KEY", spec.token);
            set(&mut env, "ANTHROPIC_MODEL", spec.model);
            // Side calls (titles, summaries) on the seat's model too, so the
            // seat's prices apply to every call.
            set(&mut env, "ANTHROPIC_SMALL_FAST_MODEL", spec.model);
            set(&mut env, "ANTHROPIC_DEFAULT_HAIKU_MODEL", spec.model);
            set(&mut env, "CLAUDE_CONFIG_DIR", &format!("{home}/.claude"));
            // As root, Claude Code refuses to skip permission prompts unless
            // told it is sandboxed; `1` (not `yes`, which breaks the adapter).
            if is_root() {
                set(&mut env, "IS_SANDBOX", "1");
            }
            Ok(Launch {
                program: PathBuf::from("node"),
                args: vec![
                    modules
                        .join("@zed-industries/claude-agent-acp/dist/index.js")
                        .to_string_lossy()
                        .into_owned(),
                ],
                env,
            })
        }
        Engine::Codex => {
            let program = modules
                .join(format!("@zed-industries/codex-acp-{}", npm_platform()?))
                .join("bin/codex-acp");
            // Codex refuses a CODEX_HOME that does not exist.
            let codex_home = spec.home.join(".codex");
            std::fs::create_dir_all(&codex_home)
                .with_context(|| format!("cannot create {}", codex_home.display()))?;
            set(&mut env, "CODEX_HOME", &codex_home.to_string_lossy());
            set(&mut env, "OPENAI_API_KEY", spec.token);
            let toml = |s: &str| format!("{s:?}");
            // Codex's own sandboxes need bubblewrap. A writer runs without
            // one, as the built-in loop's bash does: the job's containment
            // and its restore-before-commit are the backstop. A reviewer
            // keeps Codex's read-only sandbox (bubblewrap on the runner).
            let sandbox = if spec.read_only {
                "read-only"
            } else {
                "danger-full-access"
            };
            let args = [
                format!("model={}", toml(spec.model)),
                "model_provider=\"missions\"".into(),
                "model_providers.missions.name=\"missions proxy\"".into(),
                format!("model_providers.missions.base_url={}", toml(spec.proxy_url)),
                "model_providers.missions.wire_api=\"responses\"".into(),
                "model_providers.missions.env_key=\"OPENAI_API_KEY\"".into(),
                format!("sandbox_mode={}", toml(sandbox)),
                "analytics.enabled=false".into(),
                "check_for_update_on_startup=false".into(),
            ];
            Ok(Launch {
                program,
                args: args
                    .into_iter()
                    .flat_map(|a| ["-c".to_owned(), a])
                    .collect(),
                env,
            })
        }
        Engine::Acp(command) => {
            let mut words = command.split_whitespace().map(str::to_owned);
            let program = words.next().context("`acp:` names no command")?;
            set(&mut env, "ANTHROPIC_BASE_URL", spec.proxy_url);
            set(&mut env, "ANTHROPIC_API_KEY", spec.token);
            set(&mut env, "OPENAI_BASE_URL", spec.proxy_url);
            set(&mut env, "OPENAI_API_KEY", spec.token);
            Ok(Launch {
                program: PathBuf::from(program),
                args: words.collect(),
                env,
            })
        }
        Engine::Builtin => bail!("the built-in engine is not launched as a process"),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_are_named_by_their_lockfile() {
        assert!(CLAUDE_CODE.install_name().starts_with("claude-code-"));
        assert_ne!(CLAUDE_CODE.install_name(), CODEX.install_name());
        assert!(
            CLAUDE_CODE
                .lockfile
                .contains("\"@zed-industries/claude-agent-acp\": \"0.23.1\"")
        );
        assert!(
            CODEX
                .lockfile
                .contains("\"@zed-industries/codex-acp\": \"0.16.0\"")
        );
    }

    #[test]
    fn a_launch_carries_the_proxy_token_and_never_a_key_variable_of_its_own() {
        let spec = LaunchSpec {
            proxy_url: "http://127.0.0.1:9/v1",
            token: "missions-proxy-abc",
            model: "gpt-5-codex",
            home: &std::env::temp_dir().join(format!("missions-launch-{}", std::process::id())),
            read_only: true,
        };
        let codex = launch(&Engine::Codex, Path::new("/e"), &spec).unwrap();
        assert!(
            codex
                .args
                .contains(&"sandbox_mode=\"read-only\"".to_owned())
        );
        assert!(
            codex.args.contains(
                &"model_providers.missions.base_url=\"http://127.0.0.1:9/v1\"".to_owned()
            )
        );
        let claude = launch(&Engine::ClaudeCode, Path::new("/e"), &spec).unwrap();
        let get = |k: &str| {
            claude
                .env
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("ANTHROPIC_API_KEY"), Some("missions-proxy-abc"));
        assert_eq!(get("ENABLE_TOOL_SEARCH"), Some("false"));
        assert_eq!(get("DISABLE_TELEMETRY"), Some("1"));
    }

    #[test]
    fn the_cache_is_outside_any_checkout() {
        let env = |k: &str| (k == "HOME").then(|| "/home/u".to_owned());
        assert_eq!(
            engines_dir(&env),
            PathBuf::from("/home/u/.cache/missions/engines")
        );
        let env = |k: &str| (k == ENGINES_DIR_VAR).then(|| "/c".to_owned());
        assert_eq!(engines_dir(&env), PathBuf::from("/c"));
    }
}
