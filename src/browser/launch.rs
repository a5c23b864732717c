//! Starting Chromium ourselves rather than through `chromiumoxide::Browser::launch`:
//! that one passes our whole environment on (API keys included) and kills only
//! the first process, while here Chromium gets a cleared environment, its own
//! process group (so `close` ends the zygote and renderers too) and a profile
//! in a temporary directory that goes when it does.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};

use super::BrowserError;

/// How long Chromium may take to print its DevTools address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of Chromium's stderr kept for error messages.
const STDERR_TAIL: usize = 40;

/// Variables Chromium is given besides PATH and HOME: what it needs to find a
/// display (headless needs none, but a headful debug run does), fonts and the
/// locale.
const PASSED_VARS: &[&str] = &[
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XDG_RUNTIME_DIR",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "FONTCONFIG_FILE",
    "FONTCONFIG_PATH",
];

/// A running Chromium: its first process, the group it leads and its
/// throwaway home and profile.
pub(super) struct Chromium {
    child: Child,
    pgid: libc::pid_t,
    pub ws_url: String,
    stderr: Arc<Mutex<VecDeque<String>>>,
    // Dropped (removed) after the processes are killed: see `Drop`.
    home: Option<tempfile::TempDir>,
}

impl Chromium {
    /// Starts `binary` under `wrapper` (an argv prefix, e.g. the job's PID
    /// namespace; empty: none).
    pub async fn start(
        binary: &Path,
        allowed_hosts: &[String],
        wrapper: &[String],
    ) -> Result<Self, BrowserError> {
        if !binary.is_file() {
            return Err(BrowserError::NotInstalled {
                path: binary.to_owned(),
            });
        }
        let home = tempfile::Builder::new()
            .prefix("missions-chromium-")
            .tempdir()
            .map_err(|e| BrowserError::Launch {
                path: binary.to_owned(),
                reason: format!("cannot create its temporary profile directory: {e}"),
            })?;
        let profile = home.path().join("profile");

        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .args(args(&profile, allowed_hosts))
            .env_clear()
            .envs(environment(home.path(), std::env::vars_os()))
            .current_dir(home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own group, so one `killpg` ends the zygote and renderers too.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| BrowserError::Launch {
            path: binary.to_owned(),
            reason: format!("{e} (is it an executable Chrome or Chromium?)"),
        })?;
        let pgid = child.id().map(|id| id as libc::pid_t).unwrap_or(0);
        let stderr_lines = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = child.stderr.take().expect("stderr is piped");

        let mut chromium = Chromium {
            child,
            pgid,
            ws_url: String::new(),
            stderr: stderr_lines.clone(),
            home: Some(home),
        };
        match tokio::time::timeout(START_TIMEOUT, read_ws_url(stderr, stderr_lines)).await {
            Ok(Some(url)) => {
                chromium.ws_url = url;
                Ok(chromium)
            }
            Ok(None) => {
                let status = chromium.child.wait().await.ok();
                Err(BrowserError::Launch {
                    path: binary.to_owned(),
                    reason: format!(
                        "it exited ({}) before listening for DevTools; it printed:\n{}",
                        status.map_or("status unknown".to_owned(), |s| s.to_string()),
                        chromium.stderr_tail()
                    ),
                })
            }
            Err(_) => Err(BrowserError::Launch {
                path: binary.to_owned(),
                reason: format!(
                    "it printed no DevTools address within {} s; it printed:\n{}",
                    START_TIMEOUT.as_secs(),
                    chromium.stderr_tail()
                ),
            }),
        }
    }

    /// The last lines Chromium wrote to stderr, for error messages.
    pub fn stderr_tail(&self) -> String {
        let lines = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        if lines.is_empty() {
            "(nothing)".to_owned()
        } else {
            lines.iter().cloned().collect::<Vec<_>>().join("\n")
        }
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `grace` for Chromium to exit by itself, then kills its whole
    /// process group and reaps the first process.
    pub async fn stop(&mut self, grace: Duration) {
        let _ = tokio::time::timeout(grace, self.child.wait()).await;
        self.kill_group();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    fn kill_group(&mut self) {
        if self.pgid > 0 {
            // SAFETY: plain syscall; the group is the one this Chromium leads.
            unsafe {
                libc::killpg(self.pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        self.kill_group();
        // Best effort: a process still dying may write into the profile while
        // it is removed; `close` waits for the exit first.
        if let Some(home) = self.home.take() {
            let _ = home.close();
        }
    }
}

/// Chromium's command line.
pub(super) fn args(profile: &Path, allowed_hosts: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless=new",
        // The job runs as root in a container, where Chromium's setuid/namespace
        // sandbox cannot start; the container and the origin allow-list are the
        // boundary instead.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--disable-breakpad",
        "--disable-crash-reporter",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--metrics-recording-only",
        "--password-store=basic",
        "--mute-audio",
        "--hide-scrollbars",
        "--window-size=1280,800",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.push(format!(
        "--host-resolver-rules={}",
        host_resolver_rules(allowed_hosts)
    ));
    args.push("about:blank".to_owned());
    args
}

/// Every host name resolves to nothing except the allowed origins' hosts:
/// defence in depth behind the request interception.
pub(super) fn host_resolver_rules(allowed_hosts: &[String]) -> String {
    let mut rules = vec!["MAP * ~NOTFOUND".to_owned()];
    let mut hosts: Vec<&str> = allowed_hosts.iter().map(String::as_str).collect();
    hosts.sort_unstable();
    hosts.dedup();
    rules.extend(hosts.into_iter().map(|host| format!("EXCLUDE {host}")));
    rules.join(", ")
}

/// Chromium's environment: PATH, HOME (the temporary directory) and the
/// display and locale variables in [`PASSED_VARS`]; never anything whose name
/// suggests a credential.
pub(super) fn environment(
    home: &Path,
    vars: impl Iterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    let mut env = vec![(OsString::from("HOME"), home.as_os_str().to_owned())];
    for (name, value) in vars {
        let Some(text) = name.to_str() else { continue };
        if (text == "PATH" || PASSED_VARS.contains(&text)) && !secret_like(text) {
            env.push((name, value));
        }
    }
    env
}

pub(super) fn secret_like(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD"]
        .iter()
        .any(|word| upper.contains(word))
}

/// Reads stderr until Chromium prints `DevTools listening on ws://…`, then
/// keeps draining it (a full pipe would stall Chromium) into `tail`.
async fn read_ws_url(stderr: ChildStderr, tail: Arc<Mutex<VecDeque<String>>>) -> Option<String> {
    let mut lines = BufReader::new(stderr).lines();
    let remember = |tail: &Mutex<VecDeque<String>>, line: String| {
        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    while let Ok(Some(line)) = lines.next_line().await {
        let url = line
            .split_once("DevTools listening on ")
            .map(|(_, url)| url.trim().to_owned())
            .filter(|url| url.starts_with("ws://"));
        remember(&tail, line);
        if let Some(url) = url {
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    remember(&tail, line);
                }
            });
            return Some(url);
        }
    }
    None
}

/// Where Chromium or Chrome is looked for, in order, without
/// `MISSIONS_CHROMIUM`: Debian's package, Ubuntu's older one, and Google
/// Chrome as GitHub-hosted Ubuntu runners have it.
const KNOWN_BINARIES: [&str; 3] = [
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
];

/// The Chromium binary: `$MISSIONS_CHROMIUM`, else the first of
/// [`KNOWN_BINARIES`] that exists, else Debian's `/usr/bin/chromium` (named in
/// the error that says how to install it).
pub(super) fn default_binary() -> PathBuf {
    std::env::var_os("MISSIONS_CHROMIUM")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            KNOWN_BINARIES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from(KNOWN_BINARIES[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_path_home_and_display_and_locale_variables_reach_chromium() {
        let vars = [
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
            ("LANG", "C.UTF-8"),
            ("ANTHROPIC_API_KEY", "sk-secret"),
            ("GITHUB_TOKEN", "ghs_x"),
            ("RUST_LOG", "debug"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = environment(Path::new("/tmp/home"), vars.into_iter());
        let names: Vec<_> = env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(names, ["HOME", "PATH", "LANG"]);
        assert_eq!(env[0].1, "/tmp/home");
        assert!(secret_like("MY_Password_FILE"));
    }

    #[test]
    fn every_host_but_the_allowed_ones_resolves_to_nothing() {
        let rules =
            host_resolver_rules(&["localhost".into(), "127.0.0.1".into(), "127.0.0.1".into()]);
        assert_eq!(
            rules,
            "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"
        );
        let args = args(Path::new("/tmp/p"), &["127.0.0.1".into()]);
        assert!(args.contains(&"--headless=new".to_owned()));
        assert!(args.contains(&"--user-data-dir=/tmp/p".to_owned()));
    }
}
