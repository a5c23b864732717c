//! What the job gets from Actions (or the simulator's runner): its environment,
//! and the secrets in it, kept where the agent's commands cannot read them.
//!
//! The agent's `bash` runs with a stripped environment, but a command could
//! still read this process's environment back through `/proc/$PPID/environ`.
//! So before anything else, [`protect_secrets`] moves every credential-like
//! variable ([`looks_secret`]) out of the environment: it re-executes this
//! binary with those variables removed and hands their values over through an
//! inherited pipe. The new image's `/proc/PID/environ` has no secret in it, and
//! the process is marked non-dumpable, so other users' processes cannot read its
//! memory either.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context, bail};

use crate::agent::looks_secret;

/// Names the inherited pipe's descriptor in the re-executed process.
const SECRETS_FD_VAR: &str = "MISSIONS_JOB_SECRETS_FD";
/// The variable that marks every process an agent run started (see
/// [`kill_marked`]).
pub const AGENT_MARKER_VAR: &str = "MISSIONS_AGENT_RUN";

static SECRETS: OnceLock<BTreeMap<String, String>> = OnceLock::new();

/// Call first thing in `missions job`, before any thread starts: on the first
/// call this replaces the process (same pid) with one whose environment holds
/// no credential; in the replacement it reads them back. Returns normally only
/// in a process whose environment is clean.
pub fn protect_secrets() -> anyhow::Result<()> {
    set_non_dumpable();
    if let Some(fd) = std::env::var_os(SECRETS_FD_VAR) {
        let fd: i32 = fd
            .to_str()
            .and_then(|s| s.parse().ok())
            .filter(|fd| *fd > 2)
            .context("invalid secrets descriptor")?;
        // SAFETY: the parent image opened this descriptor for us, left it
        // open across exec, and nothing else in this process uses it.
        let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut text = String::new();
        pipe.read_to_string(&mut text)
            .context("cannot read the job's secrets back")?;
        drop(pipe);
        let secrets: BTreeMap<String, String> =
            serde_json::from_str(&text).context("cannot read the job's secrets back")?;
        let _ = SECRETS.set(secrets);
        return Ok(());
    }
    let secrets: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| looks_secret(k))
        .collect();
    if secrets.is_empty() {
        let _ = SECRETS.set(secrets);
        return Ok(());
    }
    let payload = serde_json::to_vec(&secrets)?;
    // A pipe holds 64 KiB before a write blocks, and nobody reads until exec.
    if payload.len() > 60_000 {
        bail!("the job's credential-like environment variables are too large to hand over");
    }
    let (reader, mut writer) = std::io::pipe().context("cannot create a pipe")?;
    writer.write_all(&payload)?;
    drop(writer);
    // Keep the read end open across exec (std opens it close-on-exec).
    // SAFETY: fcntl on a descriptor we own; no memory is involved.
    if unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETFD, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot pass the pipe on");
    }
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "missions".into());
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg0(arg0).args(args);
    for name in secrets.keys() {
        cmd.env_remove(name);
    }
    cmd.env(SECRETS_FD_VAR, reader.as_raw_fd().to_string());
    let err = cmd.exec();
    Err(err).context("cannot re-execute the job without credentials in its environment")
}

#[cfg(target_os = "linux")]
fn set_non_dumpable() {
    // SAFETY: prctl(PR_SET_DUMPABLE) takes plain integers.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// Jobs run on Linux runners (the action refuses others); elsewhere the binary
/// still builds, for `serve`, `demo` and the other commands.
#[cfg(not(target_os = "linux"))]
fn set_non_dumpable() {}

/// A credential-like variable: from the handed-over secrets, else (when
/// [`protect_secrets`] did not run, e.g. in tests) from the environment.
pub fn secret(name: &str) -> Option<String> {
    SECRETS
        .get()
        .and_then(|s| s.get(name).cloned())
        .or_else(|| std::env::var(name).ok())
        .filter(|v| !v.is_empty())
}

/// What Actions tells a job about itself.
#[derive(Clone)]
pub struct JobEnv {
    pub token: String,
    /// REST root, e.g. `https://api.github.com`.
    pub api_url: String,
    /// Web and git root, e.g. `https://github.com`.
    pub server_url: String,
    /// `owner/repo`.
    pub repository: String,
    /// The branch the job runs on.
    pub ref_name: String,
    /// The checkout.
    pub workspace: PathBuf,
    pub run_id: String,
    /// `GITHUB_ACTOR`: who dispatched the run (the App's `<slug>[bot]` when
    /// the server did); may be empty.
    pub actor: String,
    /// `GITHUB_ACTOR_ID`: that account's id; may be empty.
    pub actor_id: String,
}

impl fmt::Debug for JobEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobEnv")
            .field("token", &"***")
            .field("api_url", &self.api_url)
            .field("server_url", &self.server_url)
            .field("repository", &self.repository)
            .field("ref_name", &self.ref_name)
            .field("workspace", &self.workspace)
            .field("run_id", &self.run_id)
            .field("actor", &self.actor)
            .finish()
    }
}

impl JobEnv {
    pub fn from_process() -> anyhow::Result<JobEnv> {
        let var = |name: &str| -> anyhow::Result<String> {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .with_context(|| {
                    format!("{name} is not set; `missions job` runs inside a GitHub Actions job")
                })
        };
        let token = secret("GITHUB_TOKEN").context(
            "GITHUB_TOKEN is not set; give the job `env: GITHUB_TOKEN: ${{ github.token }}`",
        )?;
        let repository = var("GITHUB_REPOSITORY")?;
        if repository.split('/').count() != 2 || repository.contains("..") {
            bail!("GITHUB_REPOSITORY {repository:?} is not owner/repo");
        }
        let workspace = match std::env::var_os("GITHUB_WORKSPACE") {
            Some(w) if !w.is_empty() => PathBuf::from(w),
            _ => std::env::current_dir().context("no GITHUB_WORKSPACE and no working directory")?,
        };
        Ok(JobEnv {
            token,
            api_url: var("GITHUB_API_URL")
                .unwrap_or_else(|_| "https://api.github.com".into())
                .trim_end_matches('/')
                .to_owned(),
            server_url: var("GITHUB_SERVER_URL")
                .unwrap_or_else(|_| "https://github.com".into())
                .trim_end_matches('/')
                .to_owned(),
            repository,
            ref_name: var("GITHUB_REF_NAME")?,
            workspace,
            run_id: var("GITHUB_RUN_ID").unwrap_or_default(),
            actor: var("GITHUB_ACTOR").unwrap_or_default(),
            actor_id: var("GITHUB_ACTOR_ID").unwrap_or_default(),
        })
    }

    /// Who the harness's commits are by: the App's bot, as GitHub links a
    /// commit to it (`<id>+<slug>[bot]@users.noreply.github.com`), when the
    /// App dispatched the run; else a plain `missions[bot]`.
    pub fn commit_identity(&self) -> (String, String) {
        let id = self.actor_id.trim();
        match self.app_bot() {
            Some(bot) if !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) => (
                bot.to_owned(),
                format!("{id}+{bot}@users.noreply.github.com"),
            ),
            _ => (
                super::git::BOT_NAME.to_owned(),
                super::git::BOT_EMAIL.to_owned(),
            ),
        }
    }

    /// Where git fetches and pushes (never with credentials in it).
    pub fn clone_url(&self) -> String {
        format!("{}/{}.git", self.server_url, self.repository)
    }

    /// The App's bot login, when the App dispatched this run (`GITHUB_ACTOR`
    /// is then `<slug>[bot]`); `None` when a person (or Actions itself) did,
    /// and the App's own comments are known only by their hidden marker.
    pub fn app_bot(&self) -> Option<&str> {
        let actor = self.actor.trim();
        (actor.ends_with("[bot]")
            && actor.len() > "[bot]".len()
            && !actor.eq_ignore_ascii_case("github-actions[bot]"))
        .then_some(actor)
    }

    /// `text` with the token replaced, for messages that quote other programs.
    pub fn mask(&self, text: &str) -> String {
        if self.token.is_empty() {
            text.to_owned()
        } else {
            text.replace(&self.token, "***")
        }
    }
}

/// Kills every process (but this one) whose environment carries
/// `AGENT_MARKER_VAR=marker`: what an agent's commands left running, even
/// after leaving their process group (`setsid`, daemons), so nothing of the
/// agent's outlives its run to watch the harness push. A process that cleared
/// its own environment escapes this sweep (as it escapes GitHub's runner).
pub fn kill_marked(marker: &str) {
    let needle = format!("{AGENT_MARKER_VAR}={marker}\0").into_bytes();
    kill_matching(|pid| {
        std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
            environ
                .windows(needle.len())
                .any(|w| w == needle.as_slice())
        })
    });
}

/// SIGKILLs every process (but this one) for which `matches(pid)` holds, in
/// a few sweeps: a process may fork while the previous one is killed, or be
/// in the middle of an exec (its `/proc` entries unreadable) during one sweep.
pub(super) fn kill_matching(mut matches: impl FnMut(u32) -> bool) {
    let me = std::process::id();
    for sweep in 0..5 {
        let mut found = false;
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != me && matches(pid) {
                found = true;
                // SAFETY: kill takes plain integers.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
        if !found && sweep > 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_masked_and_never_debug_printed() {
        let env = JobEnv {
            token: "ghs_secret123".into(),
            api_url: "http://x".into(),
            server_url: "http://x".into(),
            repository: "o/r".into(),
            ref_name: "main".into(),
            workspace: PathBuf::from("/tmp"),
            run_id: "1".into(),
            actor: "missions[bot]".into(),
            actor_id: "41898282".into(),
        };
        assert!(!format!("{env:?}").contains("ghs_secret123"));
        assert_eq!(env.mask("a ghs_secret123 b"), "a *** b");
        assert_eq!(env.clone_url(), "http://x/o/r.git");
        assert_eq!(env.app_bot(), Some("missions[bot]"));
        for actor in ["alice", "", "[bot]", "github-actions[bot]"] {
            let env = JobEnv {
                actor: actor.into(),
                ..env.clone()
            };
            assert_eq!(env.app_bot(), None, "{actor}");
            assert_eq!(
                env.commit_identity(),
                (
                    "missions[bot]".into(),
                    "missions[bot]@users.noreply.github.com".into()
                )
            );
        }
        // Dispatched by the App: GitHub's form, which links the commit to it.
        assert_eq!(
            env.commit_identity(),
            (
                "missions[bot]".into(),
                "41898282+missions[bot]@users.noreply.github.com".into()
            )
        );
        let renamed = JobEnv {
            actor: "acme-missions[bot]".into(),
            ..env.clone()
        };
        assert_eq!(
            renamed.commit_identity().1,
            "41898282+acme-missions[bot]@users.noreply.github.com"
        );
    }

    #[test]
    fn marked_processes_are_killed_even_outside_their_group() {
        let marker = uuid::Uuid::new_v4().simple().to_string();
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .env(AGENT_MARKER_VAR, &marker)
            .process_group(0)
            .spawn()
            .unwrap();
        // The child's environment is readable as soon as it exists.
        kill_marked(&marker);
        // SIGKILL is delivered at once; give the kernel a moment to reap.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("the marked process was not killed");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}

/// A private temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> std::io::Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("{prefix}{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(TempDir(dir))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
