//! The harness's git: fetching the default branch's settings, committing and
//! pushing. The model never does these; by the time they run, whatever the
//! agent wrote into `.git/` (hooks, config, a `commondir`, replace refs,
//! grafts, alternates) has been undone.
//!
//! Every git command is the system's `git` by absolute path (resolved before
//! any agent runs, see [`super::sandbox`]), with a clean environment (a fixed
//! system PATH and a private HOME; no system or global config), hooks and
//! fsmonitor off, replace objects and grafts ignored. When it talks to the
//! server, the token reaches it through a credential helper that reads an
//! inherited pipe: never in argv (visible in `/proc/*/cmdline`), never in the
//! environment (`/proc/*/environ`), never in `.git/config`.
//!
//! What the harness pins (`.missions/`, `.github/`, …) is compared with and
//! rebuilt from a listing of the start commit taken before the agent ran, not
//! from the object store, which the agent could have rewritten.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::io::AsyncWriteExt;

use super::env::JobEnv;

/// The descriptor a git process with credentials reads them from.
const CREDENTIAL_FD: i32 = 3;

/// The ref a job's commit travels under in its result bundle.
pub const RESULT_REF: &str = "refs/missions-harness/result";

/// Who the harness commits as when the App did not dispatch the run (see
/// [`JobEnv::commit_identity`](super::env::JobEnv::commit_identity)).
pub const BOT_NAME: &str = "missions[bot]";
pub const BOT_EMAIL: &str = "missions[bot]@users.noreply.github.com";

/// What one git command printed.
#[derive(Debug)]
pub struct Output {
    pub ok: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_owned()
    }
}

pub struct Git {
    /// The system's git, by absolute path.
    bin: PathBuf,
    checkout: PathBuf,
    git_dir: PathBuf,
    env: JobEnv,
    home: super::env::TempDir,
    /// Fetch head commits only, whatever the repository is (the publish
    /// job's empty repository needs no history).
    heads_only: bool,
}

/// The entries of a commit under some paths, as `git ls-tree -r -z
/// --full-tree` prints them, read before any agent ran.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// `(mode, object id, path)`.
    entries: Vec<(String, String, String)>,
}

impl Listing {
    fn under<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a (String, String, String)> {
        let prefix = format!("{path}/");
        self.entries
            .iter()
            .filter(move |(_, _, p)| p == path || p.starts_with(&prefix))
    }
}

/// A directory of the commit the harness decides alone (see
/// [`Git::commit_all`]).
pub struct Pin<'a> {
    /// A directory or file from the repository's root, without a trailing slash.
    pub dir: &'a str,
    /// Files (path from the root, under `dir`) on top of the parent's.
    pub files: &'a [(String, Vec<u8>)],
}

/// `.git` as it was before the agent ran.
#[derive(Debug, Clone)]
pub struct GitDirSnapshot {
    config: Vec<u8>,
    had_commondir: bool,
    had_worktree_config: bool,
    /// `.git/shallow` (a depth-1 checkout has one): which commits git treats
    /// as having no parents.
    shallow: Option<Vec<u8>>,
    /// `.git/info/grafts`: rewritten parents.
    grafts: Option<Vec<u8>>,
    /// `.git/objects/info/alternates`: other object stores git reads from.
    alternates: Option<Vec<u8>>,
}

impl Git {
    pub fn new(checkout: &Path, env: &JobEnv) -> anyhow::Result<Git> {
        let checkout = checkout
            .canonicalize()
            .with_context(|| format!("the checkout {} is not there", checkout.display()))?;
        let git_dir = checkout.join(".git");
        if !std::fs::symlink_metadata(&git_dir).is_ok_and(|m| m.is_dir()) {
            bail!(
                "{} is not a git checkout (no .git directory)",
                checkout.display()
            );
        }
        let bin = super::sandbox::trusted_binary("git")?;
        let home = super::env::TempDir::new("missions-job-git-")?;
        Ok(Git {
            bin,
            checkout,
            git_dir,
            env: env.clone(),
            home,
            heads_only: false,
        })
    }

    /// From now on every fetch takes the head commit only.
    pub fn fetch_heads_only(mut self) -> Git {
        self.heads_only = true;
        self
    }

    pub fn checkout(&self) -> &Path {
        &self.checkout
    }

    /// (name, e-mail) of the harness's commits.
    pub fn identity(&self) -> (String, String) {
        self.env.commit_identity()
    }

    fn command(&self) -> tokio::process::Command {
        let (name, email) = self.identity();
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.env_clear()
            .env("PATH", super::sandbox::TRUSTED_PATH)
            .env("HOME", self.home.path())
            .env("LANG", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            // An agent's `git replace` or `info/grafts` must not change what
            // the harness reads, pins or pushes (restore() removes them too).
            .env("GIT_NO_REPLACE_OBJECTS", "1")
            .env("GIT_GRAFT_FILE", self.home.path().join("no-grafts"))
            .env("GIT_DIR", &self.git_dir)
            .env("GIT_WORK_TREE", &self.checkout)
            .env("GIT_AUTHOR_NAME", &name)
            .env("GIT_AUTHOR_EMAIL", &email)
            .env("GIT_COMMITTER_NAME", &name)
            .env("GIT_COMMITTER_EMAIL", &email)
            .current_dir(&self.checkout)
            .args([
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "core.fsmonitor=false",
                "-c",
                "credential.helper=",
                "-c",
                "commit.gpgSign=false",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Gives `cmd` the token: a credential helper (a shell function, run by
    /// the system's `/bin/sh`) that prints what it reads from descriptor
    /// [`CREDENTIAL_FD`], a pipe holding the credential that only this git
    /// process and its children inherit. The returned reader must live until
    /// the command is spawned.
    fn with_credential(
        &self,
        cmd: &mut tokio::process::Command,
    ) -> anyhow::Result<std::io::PipeReader> {
        use std::io::Write as _;
        use std::os::fd::AsRawFd;
        let (reader, mut writer) = std::io::pipe().context("cannot create a pipe")?;
        // Far below a pipe's buffer, so the write never waits for a reader.
        writer.write_all(
            format!("username=x-access-token\npassword={}\n", self.env.token).as_bytes(),
        )?;
        drop(writer);
        cmd.arg("-c").arg(format!(
            "credential.helper=!f() {{ test \"$1\" = get && cat <&{CREDENTIAL_FD}; }}; f"
        ));
        let fd = reader.as_raw_fd();
        // SAFETY: between fork and exec only async-signal-safe calls (dup2,
        // fcntl) on descriptors this process owns.
        unsafe {
            cmd.pre_exec(move || {
                if fd == CREDENTIAL_FD {
                    // dup2 onto itself would keep close-on-exec set.
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, CREDENTIAL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(reader)
    }

    async fn output(
        &self,
        args: &[&str],
        auth: bool,
        stdin: Option<&[u8]>,
        extra_env: &[(&str, &Path)],
    ) -> anyhow::Result<Output> {
        let mut cmd = self.command();
        let credential = if auth {
            Some(self.with_credential(&mut cmd)?)
        } else {
            None
        };
        cmd.args(args);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let spawned = cmd.spawn();
        // Only the child holds the credential's pipe now.
        drop(credential);
        drop(cmd);
        let mut child = spawned.context("cannot run git")?;
        if let Some(bytes) = stdin {
            let mut pipe = child.stdin.take().expect("piped");
            pipe.write_all(bytes).await?;
            drop(pipe);
        }
        let out = child.wait_with_output().await?;
        Ok(Output {
            ok: out.status.success(),
            stdout: out.stdout,
            stderr: self.env.mask(String::from_utf8_lossy(&out.stderr).trim()),
        })
    }

    /// Runs git; an error names the command and what git said.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.run_with(args, false, None, &[]).await
    }

    async fn run_with(
        &self,
        args: &[&str],
        auth: bool,
        stdin: Option<&[u8]>,
        extra_env: &[(&str, &Path)],
    ) -> anyhow::Result<Output> {
        let out = self.output(args, auth, stdin, extra_env).await?;
        if !out.ok {
            bail!("`git {}` failed: {}", args.join(" "), out.stderr);
        }
        Ok(out)
    }

    /// The remote head of `branch`, or `None` when the branch does not exist.
    pub async fn remote_head(&self, branch: &str) -> anyhow::Result<Option<String>> {
        let url = self.env.clone_url();
        let refname = format!("refs/heads/{branch}");
        let out = self
            .run_with(&["ls-remote", &url, &refname], true, None, &[])
            .await?;
        Ok(out.text().lines().find_map(|l| {
            let (sha, name) = l.split_once('\t')?;
            (name == refname).then(|| sha.to_owned())
        }))
    }

    /// Fetches `branch` into a private ref; its head, or `None` when the
    /// branch does not exist on the server.
    pub async fn fetch(&self, branch: &str) -> anyhow::Result<Option<String>> {
        if self.heads_only {
            return self.fetch_into(branch, true).await;
        }
        let shallow = self
            .run(&["rev-parse", "--is-shallow-repository"])
            .await
            .map(|o| o.text() == "true")
            .unwrap_or(false);
        self.fetch_into(branch, shallow).await
    }

    /// [`Git::fetch`], of the head commit only when `depth_one`.
    async fn fetch_into(&self, branch: &str, depth_one: bool) -> anyhow::Result<Option<String>> {
        if self.remote_head(branch).await?.is_none() {
            return Ok(None);
        }
        let url = self.env.clone_url();
        let local = format!("refs/missions-harness/{branch}");
        let spec = format!("+refs/heads/{branch}:{local}");
        let mut args = vec!["fetch", "--quiet", "--no-tags", "--no-write-fetch-head"];
        if depth_one {
            args.push("--depth=1");
        }
        args.extend([url.as_str(), spec.as_str()]);
        self.run_with(&args, true, None, &[])
            .await
            .with_context(|| format!("cannot fetch {branch}"))?;
        let sha = self.run(&["rev-parse", "--verify", &local]).await?.text();
        Ok(Some(sha))
    }

    /// The file at `path` in commit `rev`, or `None` if there is none.
    pub async fn show(&self, rev: &str, path: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let spec = format!("{rev}:{path}");
        let kind = self
            .output(&["cat-file", "-t", &spec], false, None, &[])
            .await?;
        if !kind.ok || kind.text() != "blob" {
            return Ok(None);
        }
        Ok(Some(self.run(&["cat-file", "blob", &spec]).await?.stdout))
    }

    /// Writes the files of commit `rev` into `dir` (which must exist), through
    /// an index of its own: the checkout, its index and HEAD stay as they are.
    /// A plain tree, no `.git`: what runs there cannot reach the job's repository
    /// through it.
    pub async fn export(&self, rev: &str, dir: &Path) -> anyhow::Result<()> {
        let scratch = tempfile::tempdir().context("cannot make a temporary index")?;
        let index = scratch.path().join("index");
        let env = [("GIT_INDEX_FILE", index.as_path())];
        self.run_with(&["read-tree", rev], false, None, &env)
            .await?;
        let prefix = format!("--prefix={}/", dir.display());
        self.run_with(&["checkout-index", "-a", "-f", &prefix], false, None, &env)
            .await?;
        Ok(())
    }

    /// Files (paths from the root) under `dir` in commit `rev`.
    pub async fn list_files(&self, rev: &str, dir: &str) -> anyhow::Result<Vec<String>> {
        let dir = format!("{}/", dir.trim_end_matches('/'));
        let out = self
            .run(&["ls-tree", "-r", "--name-only", "-z", rev, "--", &dir])
            .await?;
        Ok(out
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect())
    }

    /// `.git` before the agent runs, to undo what it may write there.
    pub fn snapshot(&self) -> anyhow::Result<GitDirSnapshot> {
        let read = |path: &str| -> anyhow::Result<Option<Vec<u8>>> {
            match std::fs::read(self.git_dir.join(path)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("cannot read .git/{path}")),
            }
        };
        Ok(GitDirSnapshot {
            config: std::fs::read(self.git_dir.join("config"))
                .context("cannot read .git/config")?,
            had_commondir: self.git_dir.join("commondir").exists(),
            had_worktree_config: self.git_dir.join("config.worktree").exists(),
            shallow: read("shallow")?,
            grafts: read("info/grafts")?,
            alternates: read("objects/info/alternates")?,
        })
    }

    /// Undoes what an agent could have planted in `.git/` to run code when the
    /// harness commits, or to change what it reads: config (aliases,
    /// fsmonitor, filters, hooksPath, includes), hooks, a `commondir` pointing
    /// at another repository, replace refs, grafts, a changed shallow list,
    /// alternates. Returns what it refused for the job's report (replace
    /// refs, grafts, shallow and alternates changes); config and hooks are
    /// undone silently, as before.
    pub async fn restore(&self, snapshot: &GitDirSnapshot) -> anyhow::Result<Vec<String>> {
        if !std::fs::symlink_metadata(&self.git_dir).is_ok_and(|m| m.is_dir()) {
            bail!("the agent replaced .git in the checkout; refusing to commit");
        }
        let config = self.git_dir.join("config");
        remove_any(&config)?;
        std::fs::write(&config, &snapshot.config).context("cannot restore .git/config")?;
        let hooks = self.git_dir.join("hooks");
        remove_any(&hooks)?;
        std::fs::create_dir(&hooks)?;
        if !snapshot.had_commondir {
            remove_any(&self.git_dir.join("commondir"))?;
        }
        if !snapshot.had_worktree_config {
            remove_any(&self.git_dir.join("config.worktree"))?;
        }
        // A lock left behind would stop the harness's commit.
        remove_any(&self.git_dir.join("index.lock"))?;

        let mut refused = Vec::new();
        for (path, before, what) in [
            ("shallow", &snapshot.shallow, "the shallow list"),
            ("info/grafts", &snapshot.grafts, "grafts (info/grafts)"),
            (
                "objects/info/alternates",
                &snapshot.alternates,
                "alternate object stores",
            ),
        ] {
            let file = self.git_dir.join(path);
            let now = match std::fs::symlink_metadata(&file) {
                Ok(m) if m.is_file() => Some(std::fs::read(&file)?),
                Ok(_) => Some(Vec::new()),
                Err(_) => None,
            };
            if now.as_ref() != before.as_ref() {
                remove_any(&file)?;
                if let Some(bytes) = before {
                    std::fs::write(&file, bytes)
                        .with_context(|| format!("cannot restore .git/{path}"))?;
                }
                refused.push(format!("changed {what}"));
            }
        }
        // Replace refs, loose or packed: ignored by every harness git
        // (GIT_NO_REPLACE_OBJECTS), and deleted so nothing later reads them.
        let listed = self
            .output(
                &["for-each-ref", "--format=%(refname)", "refs/replace/"],
                false,
                None,
                &[],
            )
            .await?;
        let replaced: Vec<String> = if listed.ok {
            listed.text().lines().map(str::to_owned).collect()
        } else {
            Vec::new()
        };
        for name in &replaced {
            self.run(&["update-ref", "--no-deref", "-d", name]).await?;
        }
        remove_any(&self.git_dir.join("refs/replace"))?;
        if !replaced.is_empty() {
            refused.push(format!(
                "{} replace ref(s) (git replace: {})",
                replaced.len(),
                replaced
                    .iter()
                    .take(5)
                    .map(|r| r.trim_start_matches("refs/replace/"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(refused)
    }

    /// The entries of commit `rev` under `paths` (directories or files), to
    /// pin and compare against after the agent ran.
    pub async fn listing(&self, rev: &str, paths: &[&str]) -> anyhow::Result<Listing> {
        let mut args = vec!["ls-tree", "-r", "-z", "--full-tree", rev, "--"];
        args.extend(paths.iter().copied());
        let out = self.run(&args).await?;
        let mut entries = Vec::new();
        for line in out.stdout.split(|b| *b == 0).filter(|l| !l.is_empty()) {
            let line = String::from_utf8_lossy(line);
            let (meta, path) = line
                .split_once('\t')
                .with_context(|| format!("unexpected ls-tree line {line:?}"))?;
            let mut parts = meta.split(' ');
            let (Some(mode), Some(_kind), Some(id)) = (parts.next(), parts.next(), parts.next())
            else {
                bail!("unexpected ls-tree line {line:?}");
            };
            entries.push((mode.to_owned(), id.to_owned(), path.to_owned()));
        }
        Ok(Listing { entries })
    }

    /// The commit `HEAD` points at.
    pub async fn head(&self) -> anyhow::Result<String> {
        Ok(self
            .run(&["rev-parse", "--verify", "HEAD^{commit}"])
            .await?
            .text())
    }

    /// Paths under `dir` (no trailing slash; a file works too) that differ
    /// from `base` (the start commit's listing) in the working tree (ignored
    /// files included) or in the index: what an agent changed there,
    /// committed by itself or not. A working tree git cannot read there
    /// counts as `dir` itself changed.
    pub async fn changes_under(&self, base: &Listing, dir: &str) -> anyhow::Result<Vec<String>> {
        let before: std::collections::BTreeSet<(String, String, String)> =
            base.under(dir).cloned().collect();
        let staged_entries = |out: Output| -> std::collections::BTreeSet<(String, String, String)> {
            out.stdout
                .split(|b| *b == 0)
                .filter(|l| !l.is_empty())
                .filter_map(|l| {
                    // `<mode> <object> <stage>\t<path>`
                    let line = String::from_utf8_lossy(l).into_owned();
                    let (meta, path) = line.split_once('\t')?;
                    let mut parts = meta.split(' ');
                    Some((
                        parts.next()?.to_owned(),
                        parts.next()?.to_owned(),
                        path.to_owned(),
                    ))
                })
                .collect()
        };
        let list = ["ls-files", "--stage", "-z", "--", dir];
        let mut changed = Vec::new();
        let differs =
            |changed: &mut Vec<String>,
             after: std::collections::BTreeSet<(String, String, String)>| {
                for (_, _, path) in before.symmetric_difference(&after) {
                    changed.push(path.clone());
                }
            };
        // The index as the agent left it (`git add`, `update-index`, …).
        let staged = self.output(&list, false, None, &[]).await?;
        if staged.ok {
            differs(&mut changed, staged_entries(staged));
        } else {
            changed.push(dir.to_owned());
        }
        // The working tree, read into a fresh index (no flags the agent set
        // on entries, ignored files too) holding the start's entries.
        let in_tree = std::fs::symlink_metadata(self.checkout.join(dir)).is_ok();
        if in_tree || !before.is_empty() {
            let tmp = super::env::TempDir::new("missions-job-index-")?;
            let index = tmp.path().join("index");
            let env: [(&str, &Path); 1] = [("GIT_INDEX_FILE", &index)];
            self.run_with(&["read-tree", "--empty"], false, None, &env)
                .await?;
            self.index_entries(before.iter(), &env).await?;
            let added = self
                .output(&["add", "-A", "-f", "--", dir], false, None, &env)
                .await?;
            if added.ok {
                let after = staged_entries(self.run_with(&list, false, None, &env).await?);
                differs(&mut changed, after);
            } else {
                changed.push(dir.to_owned());
            }
        }
        changed.sort();
        changed.dedup();
        Ok(changed)
    }

    /// Adds `(mode, object, path)` entries to the index `env` names.
    async fn index_entries<'a>(
        &self,
        entries: impl Iterator<Item = &'a (String, String, String)>,
        env: &[(&str, &Path)],
    ) -> anyhow::Result<()> {
        let mut info = Vec::new();
        for (mode, id, path) in entries {
            let kind = if mode == "160000" { "commit" } else { "blob" };
            info.extend_from_slice(format!("{mode} {kind} {id}\t{path}").as_bytes());
            info.push(0);
        }
        if info.is_empty() {
            return Ok(());
        }
        self.run_with(
            &["update-index", "-z", "--index-info"],
            false,
            Some(&info),
            env,
        )
        .await?;
        Ok(())
    }

    /// Commits the checkout onto `parent`; returns the commit (pushed by
    /// the caller, or left for the publish job). Everything in the working
    /// tree is taken (and, forced past `.gitignore`, `force_paths`), except
    /// under each pin's `dir`, which holds exactly what it holds in `base`
    /// (the start commit's listing) plus the pin's `files`, whatever the
    /// agent did to the working tree or the index there. The commit is built
    /// with plumbing: no hook, no merge in progress, no commit the agent made
    /// itself changes what it is or what it descends from.
    pub async fn commit_all(
        &self,
        parent: &str,
        base: &Listing,
        force_paths: &[&str],
        pins: &[Pin<'_>],
        message: &str,
    ) -> anyhow::Result<String> {
        let excludes: Vec<String> = pins
            .iter()
            .map(|pin| format!(":(exclude){}", pin.dir))
            .collect();
        let mut add = vec!["add", "-A"];
        if !excludes.is_empty() {
            add.extend(["--", "."]);
            add.extend(excludes.iter().map(String::as_str));
        }
        self.run(&add).await?;
        for path in force_paths {
            self.run(&["add", "-f", "--", path]).await?;
        }
        for pin in pins {
            self.pin_index(base, pin).await?;
        }
        let tree = self.run(&["write-tree"]).await?.text();
        let commit = self
            .run(&["commit-tree", &tree, "-p", parent, "-m", message])
            .await?
            .text();
        Ok(commit)
    }

    /// Writes `commit` (on `parent`) into a bundle at `path`, under
    /// [`RESULT_REF`]: what the publish job pushes.
    pub async fn bundle(&self, commit: &str, parent: &str, path: &Path) -> anyhow::Result<()> {
        self.run(&["update-ref", "--no-deref", RESULT_REF, commit])
            .await?;
        let path = path.display().to_string();
        let exclude = format!("^{parent}");
        self.run(&["bundle", "create", "--quiet", &path, RESULT_REF, &exclude])
            .await?;
        Ok(())
    }

    /// Fetches only the head commit of `branch` into a private ref (what the
    /// publish job compares against); its id, or `None` when the branch does
    /// not exist.
    pub async fn fetch_head_only(&self, branch: &str) -> anyhow::Result<Option<String>> {
        self.fetch_into(branch, true).await
    }

    /// The index under `pin.dir`: `base`'s entries (the start commit's,
    /// listed before the agent ran), then `pin.files`.
    async fn pin_index(&self, base: &Listing, pin: &Pin<'_>) -> anyhow::Result<()> {
        let dir = pin.dir.trim_end_matches('/');
        self.run(&[
            "rm",
            "-r",
            "-f",
            "-q",
            "--cached",
            "--ignore-unmatch",
            "--",
            dir,
        ])
        .await?;
        let mut entries: Vec<(String, String, String)> = base.under(dir).cloned().collect();
        for (path, content) in pin.files {
            if !path.starts_with(&format!("{dir}/")) {
                bail!("{path} is not under {dir}");
            }
            let blob = self
                .run_with(&["hash-object", "-w", "--stdin"], false, Some(content), &[])
                .await?
                .text();
            entries.retain(|(_, _, p)| p != path);
            entries.push(("100644".to_owned(), blob, path.clone()));
        }
        self.index_entries(entries.iter(), &[]).await
    }

    pub async fn push(&self, commit: &str, branch: &str) -> anyhow::Result<()> {
        let url = self.env.clone_url();
        let spec = format!("{commit}:refs/heads/{branch}");
        let out = self
            .output(
                &["push", "--quiet", "--no-verify", &url, &spec],
                true,
                None,
                &[],
            )
            .await?;
        if !out.ok {
            if out.stderr.contains("GH013") && out.stderr.contains("verified signatures") {
                bail!(
                    "GitHub refused the push to {branch}: a repository ruleset requires signed \
                     commits there, and mission jobs do not sign their commits. Leave \
                     `missions/**` out of that rule (or let the jobs bypass it), then comment \
                     `/mission resume`. GitHub said: {}",
                    out.stderr.trim()
                );
            }
            bail!("git push to {branch} was rejected: {}", out.stderr);
        }
        Ok(())
    }

    /// Commits `files` (path from the root → content) onto `branch` on top of
    /// its remote head (a root commit if it does not exist yet) without
    /// touching the working tree or the index, and pushes it. If someone else
    /// moved the branch in between, builds again on the new head (a few times).
    pub async fn commit_files_to_branch(
        &self,
        branch: &str,
        files: &[(String, Vec<u8>)],
        message: &str,
    ) -> anyhow::Result<String> {
        let mut last_error = None;
        for _ in 0..3 {
            let parent = self.fetch(branch).await?;
            let commit = self.build_commit(parent.as_deref(), files, message).await?;
            match self.push(&commit, branch).await {
                Ok(()) => return Ok(commit),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("tried"))
    }

    async fn build_commit(
        &self,
        parent: Option<&str>,
        files: &[(String, Vec<u8>)],
        message: &str,
    ) -> anyhow::Result<String> {
        let dir = super::env::TempDir::new("missions-job-index-")?;
        let index = dir.path().join("index");
        let env: [(&str, &Path); 1] = [("GIT_INDEX_FILE", &index)];
        match parent {
            Some(p) => self.run_with(&["read-tree", p], false, None, &env).await?,
            None => {
                self.run_with(&["read-tree", "--empty"], false, None, &env)
                    .await?
            }
        };
        for (path, content) in files {
            let blob = self
                .run_with(&["hash-object", "-w", "--stdin"], false, Some(content), &[])
                .await?
                .text();
            let info = format!("100644,{blob},{path}");
            self.run_with(
                &["update-index", "--add", "--cacheinfo", &info],
                false,
                None,
                &env,
            )
            .await?;
        }
        let tree = self
            .run_with(&["write-tree"], false, None, &env)
            .await?
            .text();
        let mut args = vec!["commit-tree", tree.as_str(), "-m", message];
        if let Some(p) = parent {
            args.extend(["-p", p]);
        }
        Ok(self.run(&args).await?.text())
    }

    /// Commits on `HEAD` whose message has the line `line`, oldest first.
    pub async fn commits_with_line(&self, line: &str) -> anyhow::Result<Vec<String>> {
        let out = self
            .output(
                &[
                    "log",
                    "--reverse",
                    "--fixed-strings",
                    "--grep",
                    line,
                    "--format=%H%x1f%B%x1e",
                    "HEAD",
                ],
                false,
                None,
                &[],
            )
            .await?;
        if !out.ok {
            return Ok(Vec::new());
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .split('\x1e')
            .filter_map(|entry| {
                let (sha, body) = entry.trim_start().split_once('\x1f')?;
                body.lines()
                    .any(|l| l.trim() == line)
                    .then(|| sha.to_owned())
            })
            .collect())
    }
}

fn remove_any(path: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
        Ok(m) if m.is_dir() => Ok(std::fs::remove_dir_all(path)?),
        Ok(_) => Ok(std::fs::remove_file(path)?),
    }
}
