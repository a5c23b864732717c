//! What the harness trusts and where agent code runs.
//!
//! An agent runs as the job's user, so anything that user can write is the
//! agent's: the directories at the front of a runner's PATH (`~/.local/bin`,
//! `~/.cargo/bin`), the checkout's `.git`, processes it starts. Two rules
//! follow:
//!
//! - **Trusted binaries.** The harness runs `git` (and `unshare`) by absolute
//!   path, found before any agent runs in a fixed list of system directories
//!   that only root can write, and gives them that fixed PATH: a `git` an agent
//!   planted on the job's PATH never runs with the harness's credentials.
//! - **Containment.** Every command an agent runs (and the app user testing
//!   starts) lives in a PID namespace of its own: when its shell exits, the
//!   kernel kills everything left in it, whatever session or environment a
//!   process gave itself (`setsid env -i …` escapes a process group and the
//!   marker sweep, not a namespace), and it sees no process of the harness in
//!   its `/proc`. Where namespaces are refused (an unprivileged user whose
//!   kernel forbids user namespaces), the harness instead kills every process
//!   of its user started after it that is not one of its ancestors — on an
//!   Actions runner only, where that user runs nothing else of ours.

use std::path::{Path, PathBuf};

use anyhow::bail;

/// The PATH of every program the harness runs itself: system directories
/// only, in Debian's order.
pub const TRUSTED_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `name` in [`TRUSTED_PATH`]: the first executable file whose every
/// component is owned by root and writable by no one else. An error says how
/// to fix the runner.
pub fn trusted_binary(name: &str) -> anyhow::Result<PathBuf> {
    let mut refused = Vec::new();
    for dir in TRUSTED_PATH.split(':') {
        let candidate = Path::new(dir).join(name);
        let Ok(real) = candidate.canonicalize() else {
            continue;
        };
        if !is_executable_file(&real) {
            continue;
        }
        match root_owned_chain(&real) {
            Ok(()) => return Ok(real),
            Err(why) => refused.push(format!("{}: {why}", real.display())),
        }
    }
    if refused.is_empty() {
        bail!(
            "no `{name}` in the system directories ({TRUSTED_PATH}); install it from the \
             runner's packages (the harness never runs one from the job's PATH, which agents \
             can write)"
        );
    }
    bail!(
        "no `{name}` the harness can trust: {}; it must be owned by root and writable by no \
         one else",
        refused.join("; ")
    )
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `path` and each directory above it: owned by root, not group- or
/// world-writable (a sticky directory such as /tmp does not qualify either).
fn root_owned_chain(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let mut current = Some(path);
    while let Some(p) = current {
        let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if meta.uid() != 0 {
            return Err(format!("{} is owned by uid {}", p.display(), meta.uid()));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!("{} is writable by others", p.display()));
        }
        current = p.parent();
    }
    Ok(())
}

/// How the processes of an agent's commands are ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Containment {
    /// Each command in a new PID namespace (with a user namespace when the
    /// harness is not root), `/proc` remounted to show only that namespace.
    PidNamespace {
        unshare: PathBuf,
        user_namespace: bool,
    },
    /// No namespace could be made: before the harness uses git or its token,
    /// every process of this user started after the harness that is not one
    /// of its ancestors is killed.
    UserSweep,
    /// No namespace, and sweeping the user would reach processes that are not
    /// the agent's (root, or outside an Actions runner): only the marker sweep
    /// and process groups remain. The job's log says so.
    MarkerOnly,
}

/// Whether `wrapper` starts a shell that exits 0.
fn runs(wrapper: &[String]) -> bool {
    let Some((program, args)) = wrapper.split_first() else {
        return false;
    };
    std::process::Command::new(program)
        .args(args)
        .args(["/bin/sh", "-c", "exit 0"])
        .env_clear()
        .env("PATH", TRUSTED_PATH)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Containment {
    /// Tries a namespace once (a few milliseconds) and picks the strongest
    /// mode this runner allows.
    pub fn detect() -> Containment {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if let Ok(unshare) = trusted_binary("unshare") {
            let mode = Containment::PidNamespace {
                unshare,
                user_namespace: !root,
            };
            if runs(&mode.wrapper()) {
                return mode;
            }
        }
        // A real Actions runner sets RUNNER_ENVIRONMENT (the simulator and a
        // developer's machine do not): only there is every later process of
        // this user the job's own.
        let on_runner = std::env::var_os("RUNNER_ENVIRONMENT").is_some_and(|v| !v.is_empty());
        if !root && on_runner {
            Containment::UserSweep
        } else {
            Containment::MarkerOnly
        }
    }

    /// As [`Containment::wrapper`], with a network namespace of its own too
    /// (no interface but a loopback that is down): for commands that run
    /// before anyone approved them. `None` when this runner cannot make one;
    /// tried once (a few milliseconds).
    pub fn offline_wrapper(&self) -> Option<Vec<String>> {
        let mut argv = self.wrapper();
        let at = argv.iter().position(|a| a == "--pid")?;
        argv.insert(at, "--net".to_owned());
        runs(&argv).then_some(argv)
    }

    /// The argv prefix an agent's shell runs under (empty: none).
    pub fn wrapper(&self) -> Vec<String> {
        match self {
            Containment::PidNamespace {
                unshare,
                user_namespace,
            } => {
                let mut argv = vec![unshare.display().to_string()];
                if *user_namespace {
                    argv.extend(["--user".into(), "--map-current-user".into()]);
                }
                argv.extend(
                    ["--pid", "--fork", "--kill-child", "--mount-proc", "--"].map(str::to_owned),
                );
                argv
            }
            Containment::UserSweep | Containment::MarkerOnly => Vec::new(),
        }
    }

    /// One line for the job's log.
    pub fn describe(&self) -> &'static str {
        match self {
            Containment::PidNamespace { .. } => {
                "agent commands run in PID namespaces of their own (nothing they start outlives them)"
            }
            Containment::UserSweep => {
                "no PID namespace on this runner: the harness kills every later process of its user before it uses git"
            }
            Containment::MarkerOnly => {
                "warning: no PID namespace on this runner and no user sweep (root, or not an Actions runner): a process an agent detaches with a clean environment may outlive its command"
            }
        }
    }

    /// Before any git or token use after agent code ran: ends what is left.
    pub fn sweep(&self) {
        if *self == Containment::UserSweep {
            kill_later_processes_of_user();
        }
    }
}

/// `(start time in clock ticks since boot, parent pid, real uid)` of `pid`.
fn proc_stat(pid: u32) -> Option<(u64, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces or ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields from the state (3rd of the line): ppid is the 4th, starttime the 22nd.
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    let uid = std::fs::metadata(format!("/proc/{pid}")).ok()?.uid();
    Some((start, ppid, uid))
}

/// Kills every process of this user that started after this one and is not
/// one of its ancestors.
fn kill_later_processes_of_user() {
    let me = std::process::id();
    let Some((my_start, _, my_uid)) = proc_stat(me) else {
        return;
    };
    let mut ancestors = std::collections::BTreeSet::new();
    let mut pid = me;
    while let Some((_, ppid, _)) = proc_stat(pid) {
        if ppid == 0 || !ancestors.insert(ppid) {
            break;
        }
        pid = ppid;
    }
    super::env::kill_matching(|pid| {
        !ancestors.contains(&pid)
            && proc_stat(pid).is_some_and(|(start, _, uid)| uid == my_uid && start >= my_start)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_is_found_in_system_directories_only() {
        let git = trusted_binary("git").unwrap();
        assert!(
            TRUSTED_PATH
                .split(':')
                .any(|d| git.starts_with(Path::new(d).canonicalize().unwrap())),
            "{}",
            git.display()
        );
        assert!(trusted_binary("surely-no-such-binary-here").is_err());
    }

    #[test]
    fn a_binary_in_a_directory_others_write_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("git");
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        // /tmp is world-writable (sticky), so nothing below it qualifies.
        assert!(root_owned_chain(&path).is_err());
        assert!(root_owned_chain(Path::new("/usr/bin")).is_ok());
    }

    #[test]
    fn stat_fields_are_read_past_a_name_with_parentheses() {
        let (start, ppid, _) = proc_stat(std::process::id()).unwrap();
        assert!(start > 0);
        assert_eq!(ppid, std::os::unix::process::parent_id());
    }

    #[test]
    fn a_detached_process_dies_with_its_namespace() {
        let mode = Containment::detect();
        let Containment::PidNamespace { .. } = mode else {
            // Without namespaces there is nothing to test here; the scenario
            // test in tests/job_harness.rs says which mode the job used.
            eprintln!("skipped: no PID namespace on this machine ({mode:?})");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let beats = dir.path().join("beats");
        let script = format!(
            "setsid env -i /bin/sh -c 'while :; do echo x >> {}; sleep 0.05; done' \
             </dev/null >/dev/null 2>&1 & sleep 0.3",
            beats.display()
        );
        let argv = mode.wrapper();
        let status = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .args(["/bin/sh", "-c", &script])
            .status()
            .unwrap();
        assert!(status.success());
        let len = || std::fs::metadata(&beats).map(|m| m.len()).unwrap_or(0);
        let before = len();
        assert!(before > 0, "the detached loop never ran");
        std::thread::sleep(std::time::Duration::from_millis(400));
        assert_eq!(len(), before, "the detached loop outlived its namespace");
    }
}
