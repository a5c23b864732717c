//! `missions init`: adds the mission workflow (`.github/workflows/missions.yml`)
//! and a commented `.github/missions.yml` to a repository's work tree.
//!
//! Both files are checked before either is written: without `--force`, an
//! existing one makes the command refuse and change nothing, and a symbolic
//! link on the way (`.github`, `.github/workflows` or a target file) is refused
//! even with it, since it could lead outside the repository. Each file is
//! written to a temporary file beside it and renamed into place, so a reader
//! never sees half a file; without `--force` the rename never replaces a file
//! that appeared meanwhile, and when a later rename fails the earlier files
//! (and the directories `init` made) are removed again. The settings template
//! gets `commands.test` filled in when the project's test command can be told
//! from its build files.
//!
//! The workflow template's action reference is a placeholder
//! ([`ACTION_REF_LITERAL`]) whose owner nobody vouches for, and the action runs
//! with `contents: write` and the model keys: `init` never writes it, and
//! requires `--action-ref OWNER/REPO@REF` while the template holds it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::llm::config::REPO_CONFIG_PATH;
use crate::repo_config::RepoConfig;

/// The mission workflow, as `init` writes it (before `--action-ref`).
pub const WORKFLOW_TEMPLATE: &str = include_str!("../templates/missions.yml");
/// The commented `.github/missions.yml`, as `init` writes it when it finds no
/// test command.
pub const CONFIG_TEMPLATE: &str = include_str!("../templates/missions-config.yml");
/// Where the workflow goes (the server's `[missions] workflow_file` default).
pub const WORKFLOW_PATH: &str = ".github/workflows/missions.yml";
/// The placeholder action reference in [`WORKFLOW_TEMPLATE`] that
/// `--action-ref` replaces. `init` never writes it: nobody is known to own
/// `missions-app`, and whoever registered it would run code with
/// `contents: write` and the provider keys in every repository using it.
pub const ACTION_REF_LITERAL: &str = "missions-app/missions@v0";

/// The commented `commands:` example in [`CONFIG_TEMPLATE`] that a detected
/// test command replaces (a unit test keeps the two in step).
const COMMANDS_EXAMPLE: &str = "# commands:\n#   test: cargo test\n";

/// `missions init`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// The repository's work tree root.
    #[arg(long, value_name = "PATH", default_value = ".")]
    pub repo: PathBuf,
    /// Replace the files if they exist.
    #[arg(long)]
    pub force: bool,
    /// The missions action the workflow runs, as a whole reference:
    /// OWNER/REPO@REF (your fork or the project's repository, at a commit SHA
    /// or a release tag), or ./PATH for a copy inside the repository.
    /// Required: there is no default repository (see docs/install.md).
    #[arg(long, value_name = "OWNER/REPO@REF")]
    pub action_ref: Option<String>,
}

/// A test command told from the project's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub command: &'static str,
    /// What gave it away (`Cargo.toml`, …), for the summary.
    pub because: String,
}

/// One file `init` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Relative to the repository root.
    pub path: &'static str,
    /// It existed before (`--force`).
    pub replaced: bool,
}

/// What `init` did.
#[derive(Debug, Clone)]
pub struct InitReport {
    pub root: PathBuf,
    pub written: Vec<Written>,
    pub test_command: Option<Detected>,
    /// The action reference written into the workflow (`None`: the template
    /// has no [`ACTION_REF_LITERAL`], and was written as it is).
    pub action_ref: Option<String>,
    /// `--action-ref` was given but the template has no [`ACTION_REF_LITERAL`].
    pub action_ref_ignored: bool,
    /// The label that starts a mission, from the written settings.
    pub label: String,
}

/// The subcommand: writes the files, then prints what it did and what is left
/// to do.
pub fn main(args: InitArgs) -> anyhow::Result<()> {
    let report = run(&args)?;
    print!("{}", summary(&report));
    Ok(())
}

/// Writes both files into the repository at `args.repo` (see the module docs).
pub fn run(args: &InitArgs) -> anyhow::Result<InitReport> {
    let action_ref = action_reference(WORKFLOW_TEMPLATE, args.action_ref.as_deref())?;
    let root = repository_root(&args.repo)?;
    let test_command = detect_test_command(&root);
    let workflow = workflow_text(action_ref.as_deref());
    let config = config_text(test_command.as_ref().map(|d| d.command));
    // What is written must be what the App accepts.
    let label = RepoConfig::parse(&config)
        .context("the generated .github/missions.yml does not parse (a bug in missions)")?
        .label;
    let files = [(WORKFLOW_PATH, workflow), (REPO_CONFIG_PATH, config)];
    let written = write_all_or_nothing(&root, &files, args.force)?;
    Ok(InitReport {
        root,
        written,
        test_command,
        action_ref_ignored: args.action_ref.is_some() && action_ref.is_none(),
        action_ref,
        label,
    })
}

/// The placeholder's repository (`missions-app/missions`).
fn placeholder_repository() -> &'static str {
    ACTION_REF_LITERAL
        .split_once('@')
        .map_or(ACTION_REF_LITERAL, |(repo, _)| repo)
}

/// The action reference to write in place of [`ACTION_REF_LITERAL`] in
/// `template`: `action_ref`, checked. `None` when the template has no
/// placeholder (then `action_ref` is optional, and unused). While it has one,
/// `action_ref` is required, and must be a whole reference (OWNER/REPO@REF or
/// ./PATH) that is not the placeholder's repository.
pub fn action_reference(
    template: &str,
    action_ref: Option<&str>,
) -> anyhow::Result<Option<String>> {
    if let Some(r) = action_ref {
        check_action_ref(r)?;
    }
    if !template.contains(ACTION_REF_LITERAL) {
        return Ok(None);
    }
    let placeholder = placeholder_repository();
    let why = format!(
        "`{placeholder}` in the workflow template is a placeholder that nobody is known to own, and the \
         action runs with `contents: write` and your model keys, so init will not write it and there is no \
         default repository"
    );
    let how = "pass the repository you take the missions action from (your fork, or the project's own \
               repository) pinned to a commit SHA (recommended) or a release tag, e.g. \
               `missions init --action-ref OWNER/missions@<40-character commit SHA>` \
               (docs/install.md, \"Install the App and add the workflow\", explains the choice); nothing was written";
    let Some(r) = action_ref else {
        bail!("missions init needs --action-ref OWNER/REPO@REF: {why}; {how}");
    };
    if r.starts_with("./") {
        if r.contains('@') {
            bail!("--action-ref {r}: a local action (./PATH) takes no @REF; {how}");
        }
        return Ok(Some(r.to_owned()));
    }
    let Some((repo, _)) = r.split_once('@') else {
        bail!(
            "--action-ref {r} is only a ref; give the whole reference OWNER/REPO@{r}: {why}; {how}"
        );
    };
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() < 2
        || parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        bail!("--action-ref {r} is not OWNER/REPO@REF; {how}");
    }
    if format!("{}/{}", parts[0], parts[1]).eq_ignore_ascii_case(placeholder) {
        bail!("--action-ref {r} names the placeholder repository: {why}; {how}");
    }
    Ok(Some(r.to_owned()))
}

/// Whether a reference's ref (after the `@`) is a full commit SHA, which
/// nobody can move (a tag or a branch its owner can).
fn pinned_to_a_commit(reference: &str) -> bool {
    reference.split_once('@').is_some_and(|(_, r)| {
        (r.len() == 40 || r.len() == 64) && r.chars().all(|c| c.is_ascii_hexdigit())
    })
}

/// The workflow template with its [`ACTION_REF_LITERAL`] replaced by
/// `reference` (a whole reference, see [`action_reference`]). Unchanged when
/// `None`, or when the template has no placeholder.
pub fn workflow_text(reference: Option<&str>) -> String {
    match reference {
        Some(r) => WORKFLOW_TEMPLATE.replace(ACTION_REF_LITERAL, r),
        None => WORKFLOW_TEMPLATE.to_owned(),
    }
}

/// A reference goes into YAML unquoted: only the characters refs and paths
/// are made of.
fn check_action_ref(r: &str) -> anyhow::Result<()> {
    let plain = !r.is_empty()
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '@'))
        && !r.starts_with(['-', '@', '/'])
        && !r.ends_with('@')
        && r.matches('@').count() <= 1;
    if !plain {
        bail!(
            "--action-ref {r:?} is not an action reference; give OWNER/REPO@REF (REF a commit SHA or a release tag), or ./PATH"
        );
    }
    Ok(())
}

/// The settings template, with `commands.test` set to `test_command` when
/// given (the lint and type-check examples stay commented).
pub fn config_text(test_command: Option<&str>) -> String {
    match test_command {
        None => CONFIG_TEMPLATE.to_owned(),
        Some(command) => CONFIG_TEMPLATE.replacen(
            COMMANDS_EXAMPLE,
            &format!(
                "commands:\n  test: {command}    # found by `missions init`: check it runs on a fresh checkout\n"
            ),
            1,
        ),
    }
}

/// The project's test command, from its build files: `Cargo.toml`, then
/// `package.json` with a real `test` script, then Python (`pytest` when the
/// project mentions it, else `unittest`). Reads a handful of small files.
pub fn detect_test_command(root: &Path) -> Option<Detected> {
    let found = |command, because: &str| {
        Some(Detected {
            command,
            because: because.to_owned(),
        })
    };
    if root.join("Cargo.toml").is_file() {
        return found("cargo test", "Cargo.toml");
    }
    if let Some(text) = small_file(&root.join("package.json"))
        && let Ok(json) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(test) = json.pointer("/scripts/test").and_then(|t| t.as_str())
        // `npm init` writes a test script that only fails.
        && !test.trim().is_empty()
        && !test.contains("no test specified")
    {
        return found("npm test", "the test script in package.json");
    }
    let python_marker = ["pyproject.toml", "setup.py", "setup.cfg"]
        .into_iter()
        .find(|f| root.join(f).is_file())
        .map(str::to_owned)
        .or_else(|| {
            ["tests", "test"]
                .into_iter()
                .find(|d| has_python_file(&root.join(d), |_| true))
                .map(|d| format!("Python files in {d}/"))
        })
        .or_else(|| {
            has_python_file(root, |name| {
                name.starts_with("test_") || name.ends_with("_test.py")
            })
            .then(|| "Python test files".to_owned())
        })?;
    let uses_pytest = ["pytest.ini", "conftest.py", "tests/conftest.py"]
        .into_iter()
        .any(|f| root.join(f).is_file())
        || [
            "pyproject.toml",
            "setup.cfg",
            "tox.ini",
            "setup.py",
            "requirements.txt",
            "requirements-dev.txt",
            "requirements-test.txt",
            "dev-requirements.txt",
        ]
        .into_iter()
        .filter_map(|f| small_file(&root.join(f)))
        .any(|text| text.contains("pytest"));
    if uses_pytest {
        found(
            "python3 -m pytest",
            &format!("{python_marker}, with pytest"),
        )
    } else {
        found("python3 -m unittest", &python_marker)
    }
}

/// A file's text, if it exists and is small enough to be a build file.
fn small_file(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > 1 << 20 {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// Whether `dir` directly holds a `.py` file whose name passes `keep`.
fn has_python_file(dir: &Path, keep: impl Fn(&str) -> bool) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.ends_with(".py") && keep(&name) && e.path().is_file()
    })
}

/// `path` itself, if it is a git work tree's root (it holds `.git`, a
/// directory or, for worktrees and submodules, a file).
fn repository_root(path: &Path) -> anyhow::Result<PathBuf> {
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("cannot use --repo {shown}"))?;
    if !meta.is_dir() {
        bail!("--repo {shown} is not a directory; give the repository's root directory");
    }
    if path.join(".git").symlink_metadata().is_ok() {
        // Absolute, for the summary.
        return Ok(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()));
    }
    // Inside a work tree, but not at its root? Say where the root is.
    let inside = std::process::Command::new("git")
        .arg("-C")
        .arg(path)
        .args(["rev-parse", "--show-toplevel"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|top| !top.is_empty());
    match inside {
        Some(top) => bail!(
            "{shown} is inside the git repository {top}, not at its root; run `missions init --repo {top}` (the files go under the root's .github/)"
        ),
        None => bail!(
            "{shown} is not a git repository (it has no .git); run `git init` there first, or give the repository's root with --repo PATH"
        ),
    }
}

/// Refuses `rel` (under `root`) when any of its components that exists is a
/// symbolic link: `init` writes only inside the repository, and a linked
/// `.github`, `.github/workflows` or target file could lead anywhere.
fn refuse_symlinks(root: &Path, rel: &str) -> anyhow::Result<()> {
    let mut path = root.to_path_buf();
    let mut shown = PathBuf::new();
    let components: Vec<_> = Path::new(rel).components().collect();
    for (i, component) in components.iter().enumerate() {
        path.push(component);
        shown.push(component);
        let meta = match path.symlink_metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot inspect {}", path.display()));
            }
        };
        let last = i + 1 == components.len();
        if meta.file_type().is_symlink() {
            let to = std::fs::read_link(&path)
                .map(|t| format!(" (to {})", t.display()))
                .unwrap_or_default();
            let what = if last { "file" } else { "directory" };
            bail!(
                "{} in {} is a symbolic link{to}; missions init writes only inside the repository and follows no links, \
                 so nothing was written (--force does not change this): replace the link with a real {what}, or remove it, then run again",
                shown.display(),
                root.display(),
            );
        }
        if !last && !meta.is_dir() {
            bail!(
                "{} in {} is not a directory, so {rel} cannot be written; nothing was written",
                shown.display(),
                root.display(),
            );
        }
    }
    Ok(())
}

/// Writes every file under `root`, or none: a symbolic link on the way
/// refuses the whole set, as does an existing file without `force`, before
/// anything (even a directory) is created; every file is staged in a temporary
/// file beside its target before the first is renamed into place; and when a
/// step fails, the files already renamed into place (unless they replaced
/// one, with `force`) and the directories made are removed again.
fn write_all_or_nothing(
    root: &Path,
    files: &[(&'static str, String)],
    force: bool,
) -> anyhow::Result<Vec<Written>> {
    for (rel, _) in files {
        refuse_symlinks(root, rel)?;
    }
    let existing: Vec<&str> = files
        .iter()
        .map(|(rel, _)| *rel)
        .filter(|rel| root.join(rel).symlink_metadata().is_ok())
        .collect();
    if !existing.is_empty() && !force {
        let (them, verb) = if existing.len() == 1 {
            ("it", "exists")
        } else {
            ("them", "exist")
        };
        bail!(
            "{} already {verb} in {}; nothing was written (run again with --force to replace {them})",
            existing.join(" and "),
            root.display(),
        );
    }
    let mut made_dirs = Vec::new();
    let result = stage_and_persist(root, files, force, &mut made_dirs);
    if result.is_err() {
        // Emptied by the rollback (or never filled): remove what init made,
        // deepest first; a directory something else filled meanwhile stays.
        for dir in made_dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    result
}

/// [`write_all_or_nothing`]'s writing, once the checks passed; the
/// directories it creates are pushed on `made_dirs`.
fn stage_and_persist(
    root: &Path,
    files: &[(&'static str, String)],
    force: bool,
    made_dirs: &mut Vec<PathBuf>,
) -> anyhow::Result<Vec<Written>> {
    let mut staged = Vec::new();
    for (rel, text) in files {
        let target = root.join(rel);
        let dir = target.parent().unwrap_or(root).to_path_buf();
        make_dirs(root, &dir, made_dirs)?;
        // Checked again now that the directories exist.
        refuse_symlinks(root, rel)?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(".missions-init-").suffix(".tmp");
        #[cfg(unix)]
        {
            // Like any new file (the umask applies), not tempfile's 0600.
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let mut tmp = builder
            .tempfile_in(&dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .with_context(|| format!("cannot write {}", tmp.path().display()))?;
        staged.push((tmp, target, *rel));
    }
    let mut written: Vec<Written> = Vec::new();
    for (tmp, target, rel) in staged {
        // Once more, right before the rename.
        let outcome = refuse_symlinks(root, rel).and_then(|()| {
            // With --force, whether this rename replaces a file (decided now,
            // not at the check: the rollback must not remove another's file).
            let replaced = force && target.symlink_metadata().is_ok();
            persist(tmp, &target, rel, root, force).map(|()| replaced)
        });
        match outcome {
            Ok(replaced) => written.push(Written {
                path: rel,
                replaced,
            }),
            Err(e) => return Err(roll_back(root, &written, rel, e)),
        }
        if let Some(dir) = target.parent()
            && let Ok(dir) = std::fs::File::open(dir)
        {
            // The rename itself, durable (best effort: not every system can).
            let _ = dir.sync_all();
        }
    }
    Ok(written)
}

/// Creates `dir` (under `root`) and its missing parents one by one, pushing
/// each on `made_dirs`.
fn make_dirs(root: &Path, dir: &Path, made_dirs: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let Ok(rel) = dir.strip_prefix(root) else {
        return Ok(());
    };
    let mut path = root.to_path_buf();
    for component in rel.components() {
        path.push(component);
        match std::fs::create_dir(&path) {
            Ok(()) => made_dirs.push(path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", path.display()));
            }
        }
    }
    Ok(())
}

/// Renames `tmp` to `target`: over an existing file only with `force`.
fn persist(
    tmp: tempfile::NamedTempFile,
    target: &Path,
    rel: &str,
    root: &Path,
    force: bool,
) -> anyhow::Result<()> {
    let result = if force {
        tmp.persist(target)
    } else {
        tmp.persist_noclobber(target)
    };
    match result {
        Ok(_) => Ok(()),
        Err(e) if !force && e.error.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{rel} appeared in {} while missions init was writing (something else created it after the check), \
             and was left as it is",
            root.display()
        ),
        Err(e) => Err(e.error).with_context(|| format!("cannot write {}", target.display())),
    }
}

/// The error for a failure at `failed` after `done` were renamed into place:
/// removes again those that were created, and says what the repository holds.
fn roll_back(root: &Path, done: &[Written], failed: &str, error: anyhow::Error) -> anyhow::Error {
    let mut removed = Vec::new();
    let mut left = Vec::new();
    let mut replaced = Vec::new();
    for w in done.iter().rev() {
        if w.replaced {
            replaced.push(w.path);
        } else {
            match std::fs::remove_file(root.join(w.path)) {
                Ok(()) => removed.push(w.path),
                Err(e) => left.push(format!(
                    "{} was written and could not be removed again ({e}): delete it by hand",
                    w.path
                )),
            }
        }
    }
    let mut state = Vec::new();
    if !removed.is_empty() {
        state.push(format!(
            "{} had been written and was removed again",
            removed.join(" and ")
        ));
    }
    state.extend(left);
    if !replaced.is_empty() {
        state.push(format!(
            "{} already holds the new version (--force replaced the old one, which is gone: \
             `git checkout -- {}` restores the committed one)",
            replaced.join(" and "),
            replaced.join(" "),
        ));
        let failed_state = if root.join(failed).symlink_metadata().is_ok() {
            "is as it was"
        } else {
            "was not created"
        };
        state.push(format!(
            "{failed} {failed_state}; run `missions init --force` again to write both"
        ));
    } else if state.iter().all(|s| !s.contains("by hand")) {
        state.push("nothing was written".to_owned());
    }
    let state = state.join("; ");
    error.context(format!(
        "missions init could not write {failed} in {}; {state}",
        root.display()
    ))
}

/// What `init` prints: the files, the test command it found, the next steps.
pub fn summary(report: &InitReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Wrote into {}:", report.root.display());
    for w in &report.written {
        let what = if w.path == WORKFLOW_PATH {
            "the mission workflow: one agent turn per job, dispatched by the App"
        } else {
            "the settings: label, budget, models per role, validator commands, how to start the app"
        };
        let verb = if w.replaced { "replaced" } else { "created " };
        let _ = writeln!(out, "  {verb} {:<31} {what}", w.path);
    }
    match &report.test_command {
        Some(d) => {
            let _ = writeln!(
                out,
                "  commands.test is `{}` (from {}); check it runs on a fresh checkout.",
                d.command, d.because
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  No test command found: set `commands:` in {REPO_CONFIG_PATH} so scrutiny runs your tests."
            );
        }
    }
    if let Some(reference) = &report.action_ref
        && !reference.starts_with("./")
        && !pinned_to_a_commit(reference)
    {
        let _ = writeln!(
            out,
            "  note: the workflow uses {reference}; whoever controls that repository can move a tag or a branch, \
             so pin a full commit SHA instead (docs/install.md, step 3)."
        );
    }
    if report.action_ref_ignored {
        let _ = writeln!(
            out,
            "  note: the workflow template has no `{ACTION_REF_LITERAL}` to replace, so --action-ref changed nothing."
        );
    }
    let label = &report.label;
    let _ = write!(
        out,
        "\nNext steps (docs/install.md in the missions repository has the details):\n\
         \x20 1. Install the missions GitHub App on this repository (register your own with \
         `missions app-manifest`).\n\
         \x20 2. Add the model keys as repository secrets (Settings > Secrets and variables > \
         Actions): ANTHROPIC_API_KEY for Anthropic models (the default), OPENAI_API_KEY for \
         `provider: openai`, and any variable a model's `api_key_env` names. Never put a key \
         in a file.\n\
         \x20 3. Read both files, then commit and push them to the default branch: the App \
         reads {REPO_CONFIG_PATH} only from there, and GitHub dispatches only workflows that \
         are on it.\n\
         \x20 4. Protect the default branch (branch protection or a ruleset) requiring the \
         check runs `missions / scrutiny` and `missions / user-testing`, so that a milestone \
         merges only once both validators passed.\n\
         \x20 5. Add the label `{label}` to an issue to start a mission.\n"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn detect(files: &[(&str, &str)]) -> Option<&'static str> {
        detect_test_command(dir_with(files).path()).map(|d| d.command)
    }

    #[test]
    fn the_test_command_is_told_from_build_files() {
        assert_eq!(
            detect(&[("Cargo.toml", "[package]\n"), ("package.json", "{}")]),
            Some("cargo test")
        );
        assert_eq!(
            detect(&[("package.json", r#"{"scripts": {"test": "jest"}}"#)]),
            Some("npm test")
        );
        // `npm init`'s placeholder script is no test command, nor is an unreadable file.
        let placeholder = r#"{"scripts": {"test": "echo \"Error: no test specified\" && exit 1"}}"#;
        assert_eq!(detect(&[("package.json", placeholder)]), None);
        assert_eq!(detect(&[("package.json", "{not json")]), None);
        assert_eq!(
            detect(&[("pyproject.toml", "[project]\nname = \"x\"\n")]),
            Some("python3 -m unittest")
        );
        assert_eq!(
            detect(&[(
                "pyproject.toml",
                "[project.optional-dependencies]\ntest = [\"pytest\"]\n"
            )]),
            Some("python3 -m pytest")
        );
        assert_eq!(
            detect(&[("setup.py", ""), ("requirements-dev.txt", "pytest>=8\n")]),
            Some("python3 -m pytest")
        );
        assert_eq!(
            detect(&[("tests/test_x.py", ""), ("tests/conftest.py", "")]),
            Some("python3 -m pytest")
        );
        assert_eq!(
            detect(&[("tests/test_x.py", "import unittest\n")]),
            Some("python3 -m unittest")
        );
        // The demo's layout: the tests beside the module.
        assert_eq!(
            detect(&[("textstats.py", ""), ("test_textstats.py", "")]),
            Some("python3 -m unittest")
        );
        // A tests directory of another language, or nothing at all.
        assert_eq!(detect(&[("tests/run.sh", "")]), None);
        assert_eq!(detect(&[("README.md", "# hello\n")]), None);
    }

    #[test]
    fn the_config_template_parses_with_and_without_a_test_command() {
        assert!(CONFIG_TEMPLATE.contains(COMMANDS_EXAMPLE));
        let plain = RepoConfig::parse(&config_text(None)).unwrap();
        assert_eq!(plain.label, "mission");
        assert_eq!(plain.budget_usd, Some(25.0));
        assert!(plain.commands.test.is_empty());
        let defaults = RepoConfig::default();
        assert_eq!(plain.max_attempts, defaults.max_attempts);
        assert_eq!(plain.max_validation_rounds, defaults.max_validation_rounds);
        assert_eq!(plain.prompts_dir, defaults.prompts_dir);
        assert_eq!(plain.app, defaults.app);
        for command in [
            "cargo test",
            "npm test",
            "python3 -m pytest",
            "python3 -m unittest",
        ] {
            let cfg = RepoConfig::parse(&config_text(Some(command))).unwrap();
            assert_eq!(cfg.commands.test, [command]);
            assert!(cfg.commands.lint.is_empty() && cfg.commands.typecheck.is_empty());
        }
    }

    #[test]
    fn the_template_names_every_key_the_parser_accepts() {
        for key in [
            "label:",
            "budget:",
            "usd:",
            "max_attempts:",
            "max_validation_rounds:",
            "models:",
            "default:",
            "orchestrator:",
            "worker:",
            "scrutiny:",
            "user-testing:",
            "provider:",
            "model:",
            "max_tokens:",
            "base_url:",
            "api_key_env:",
            "prices:",
            "commands:",
            "test:",
            "lint:",
            "typecheck:",
            "app:",
            "start:",
            "url:",
            "ready_timeout_secs:",
            "prompts_dir:",
        ] {
            assert!(CONFIG_TEMPLATE.contains(key), "the template lacks {key}");
        }
    }

    #[test]
    fn every_commented_example_in_the_template_is_valid() {
        // Uncomment each line whose text after `# ` starts with a key.
        let keys = [
            "commands",
            "test",
            "lint",
            "typecheck",
            "app",
            "start",
            "url",
            "ready_timeout_secs",
            "orchestrator",
            "worker",
            "scrutiny",
            "user-testing",
            "provider",
            "model",
            "max_tokens",
            "base_url",
            "api_key_env",
            "prices",
        ];
        let uncommented: Vec<String> = CONFIG_TEMPLATE
            .lines()
            .map(|line| {
                let text = line.trim_start();
                let indent = &line[..line.len() - text.len()];
                match text.strip_prefix("# ") {
                    Some(rest)
                        if keys
                            .iter()
                            .any(|k| rest.trim_start().starts_with(&format!("{k}:"))) =>
                    {
                        format!("{indent}{rest}")
                    }
                    _ => line.to_owned(),
                }
            })
            .collect();
        let cfg = RepoConfig::parse(&uncommented.join("\n")).unwrap();
        assert_eq!(cfg.commands.test, ["cargo test"]);
        assert_eq!(cfg.commands.lint.len(), 2);
        assert_eq!(cfg.commands.typecheck.len(), 1);
        assert!(cfg.app.start.is_some() && cfg.app.url.is_some());
        let defaults = crate::llm::config::ModelConfig::default();
        for role in crate::llm::config::Role::ALL {
            assert!(cfg.models.section(role).is_some(), "{role}");
            cfg.models.resolve(role, &defaults).unwrap();
        }
    }

    #[test]
    fn the_placeholder_is_never_written_and_a_whole_reference_is_required() {
        let template = format!("uses: {ACTION_REF_LITERAL}\n");
        let err = |r: Option<&str>| {
            action_reference(&template, r)
                .expect_err(&format!("{r:?}"))
                .to_string()
        };
        // None at all: says what to pass, why, and where to read more.
        let missing = err(None);
        for expected in [
            "--action-ref OWNER/REPO@REF",
            "placeholder",
            "contents: write",
            "commit SHA",
            "docs/install.md",
            "nothing was written",
        ] {
            assert!(missing.contains(expected), "{expected} not in {missing}");
        }
        // A bare ref no longer picks a repository.
        let bare = err(Some("v1.2.3"));
        assert!(bare.contains("OWNER/REPO@v1.2.3"), "{bare}");
        // The placeholder's repository itself, in any case.
        for placeholder in ["missions-app/missions@v1", "Missions-App/missions@0123abc"] {
            assert!(
                err(Some(placeholder)).contains("placeholder"),
                "{placeholder}"
            );
        }
        for bad in ["me@v1", "/x@v1", "me//x@v1", "me/../x@v1", "./x@v1"] {
            err(Some(bad));
        }
        for good in [
            "me/fork@0123456789abcdef0123456789abcdef01234567",
            "me/fork@v2",
            "me/fork/sub@v2",
            "./",
            "./vendor/missions",
        ] {
            assert_eq!(
                action_reference(&template, Some(good)).unwrap().as_deref(),
                Some(good)
            );
        }
        // A template without the placeholder needs no --action-ref, and
        // ignores one (still refusing a malformed one).
        assert_eq!(action_reference("uses: x/y@v1\n", None).unwrap(), None);
        assert_eq!(
            action_reference("uses: x/y@v1\n", Some("me/fork@v2")).unwrap(),
            None
        );
        assert!(action_reference("uses: x/y@v1\n", Some("v1 # x")).is_err());
        // The real template: never written with the placeholder.
        if WORKFLOW_TEMPLATE.contains(ACTION_REF_LITERAL) {
            assert!(action_reference(WORKFLOW_TEMPLATE, None).is_err());
            let text = workflow_text(Some("me/fork@0123abc"));
            assert!(text.contains("uses: me/fork@0123abc"), "{text}");
            assert!(!text.contains(ACTION_REF_LITERAL));
        }
        assert_eq!(workflow_text(None), WORKFLOW_TEMPLATE);
    }

    #[test]
    fn odd_action_refs_are_refused_and_unpinned_ones_noted() {
        for good in ["v1", "0123abcdef", "main", "me/fork@v2", "./"] {
            check_action_ref(good).unwrap();
        }
        for bad in [
            "", "v1 # x", "v1\n", "${{ x }}", "a@b@c", "-x", "v1'", "me/fork@",
        ] {
            assert!(check_action_ref(bad).is_err(), "{bad:?}");
        }
        assert!(pinned_to_a_commit(
            "me/fork@0123456789abcdef0123456789abcdef01234567"
        ));
        for unpinned in ["me/fork@v1.2.3", "me/fork@main", "me/fork@0123abc"] {
            assert!(!pinned_to_a_commit(unpinned), "{unpinned}");
        }
    }

    #[test]
    fn a_refusal_writes_nothing_and_force_writes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let files = [
            (WORKFLOW_PATH, "new workflow\n".to_owned()),
            (REPO_CONFIG_PATH, "new config\n".to_owned()),
        ];
        // Only the second file exists: the first is not written either, and
        // not even its directory is created.
        std::fs::create_dir_all(root.join(".github")).unwrap();
        std::fs::write(root.join(REPO_CONFIG_PATH), "old config\n").unwrap();
        let err = write_all_or_nothing(root, &files, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains(REPO_CONFIG_PATH), "{err}");
        assert!(!err.contains(WORKFLOW_PATH), "{err}");
        assert!(err.contains("--force"), "{err}");
        assert!(!root.join(".github/workflows").exists());
        assert_eq!(
            std::fs::read_to_string(root.join(REPO_CONFIG_PATH)).unwrap(),
            "old config\n"
        );
        // Forced: both written, the old one reported as replaced, no temporary
        // files left behind.
        let written = write_all_or_nothing(root, &files, true).unwrap();
        assert_eq!(
            written,
            [
                Written {
                    path: WORKFLOW_PATH,
                    replaced: false
                },
                Written {
                    path: REPO_CONFIG_PATH,
                    replaced: true
                },
            ]
        );
        assert_eq!(
            std::fs::read_to_string(root.join(REPO_CONFIG_PATH)).unwrap(),
            "new config\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join(WORKFLOW_PATH)).unwrap(),
            "new workflow\n"
        );
        for d in [".github", ".github/workflows"] {
            let names: Vec<String> = std::fs::read_dir(root.join(d))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        }
        // Both exist now: refused, naming both.
        let err = write_all_or_nothing(root, &files, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(WORKFLOW_PATH) && err.contains(REPO_CONFIG_PATH),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_on_the_way_are_refused_even_with_force() {
        use std::os::unix::fs::symlink;
        let files = [
            (WORKFLOW_PATH, "new workflow\n".to_owned()),
            (REPO_CONFIG_PATH, "new config\n".to_owned()),
        ];
        let outside = tempfile::tempdir().unwrap();
        let cases: [(&str, &str); 4] = [
            (".github", "directory"),
            (".github/workflows", "directory"),
            (REPO_CONFIG_PATH, "file"),
            (WORKFLOW_PATH, "file"),
        ];
        for (link, what) in cases {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            let link_path = root.join(link);
            std::fs::create_dir_all(link_path.parent().unwrap()).unwrap();
            let to = outside.path().join(link.replace('/', "_"));
            if what == "directory" {
                std::fs::create_dir_all(&to).unwrap();
            }
            symlink(&to, &link_path).unwrap();
            for force in [false, true] {
                let err = write_all_or_nothing(root, &files, force)
                    .unwrap_err()
                    .to_string();
                assert!(err.contains("symbolic link"), "{link}: {err}");
                assert!(err.contains(link), "{link}: {err}");
                assert!(err.contains(&format!("real {what}")), "{link}: {err}");
            }
            // Nothing written, outside or inside.
            assert_eq!(
                std::fs::read_dir(outside.path())
                    .unwrap()
                    .flatten()
                    .filter(|e| e.path().is_file())
                    .count(),
                0,
                "{link}"
            );
            assert!(!root.join(REPO_CONFIG_PATH).is_file(), "{link}");
            assert!(!root.join(WORKFLOW_PATH).is_file(), "{link}");
        }
        // A dangling link counts too.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".github")).unwrap();
        symlink("/nonexistent/x", dir.path().join(REPO_CONFIG_PATH)).unwrap();
        assert!(write_all_or_nothing(dir.path(), &files, true).is_err());
    }

    #[test]
    fn a_file_that_appears_after_the_check_is_left_alone() {
        // The race itself: the target is created between the check and the
        // rename; without --force the rename does not replace it.
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f.yml");
        let mut tmp = tempfile::NamedTempFile::new_in(dir.path()).unwrap();
        tmp.write_all(b"new\n").unwrap();
        std::fs::write(&target, "theirs\n").unwrap();
        let err = persist(tmp, &target, "f.yml", dir.path(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("f.yml appeared"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "theirs\n");
        // No temporary file left.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_second_rename_undoes_the_first() {
        // The settings' target is a directory (so only --force goes ahead),
        // which the rename cannot replace: the workflow written just before is
        // removed again, and so are the directories made for it.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(REPO_CONFIG_PATH).join("x")).unwrap();
        let files = [
            (WORKFLOW_PATH, "new workflow\n".to_owned()),
            (REPO_CONFIG_PATH, "new config\n".to_owned()),
        ];
        let err = format!(
            "{:#}",
            write_all_or_nothing(root, &files, true).unwrap_err()
        );
        assert!(
            err.contains(&format!("could not write {REPO_CONFIG_PATH}")),
            "{err}"
        );
        assert!(
            err.contains("removed again") && err.contains("nothing was written"),
            "{err}"
        );
        assert!(!root.join(".github/workflows").exists(), "{err}");
        assert!(root.join(REPO_CONFIG_PATH).join("x").is_dir());

        // The workflow existed and --force replaced it: that cannot be undone,
        // and the error says what the repository now holds.
        std::fs::create_dir_all(root.join(".github/workflows")).unwrap();
        std::fs::write(root.join(WORKFLOW_PATH), "old workflow\n").unwrap();
        let err = format!(
            "{:#}",
            write_all_or_nothing(root, &files, true).unwrap_err()
        );
        assert!(err.contains("already holds the new version"), "{err}");
        assert!(
            err.contains(&format!("git checkout -- {WORKFLOW_PATH}")),
            "{err}"
        );
        assert!(
            err.contains(&format!("{REPO_CONFIG_PATH} is as it was")),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(root.join(WORKFLOW_PATH)).unwrap(),
            "new workflow\n"
        );
        for d in [".github", ".github/workflows"] {
            let names: Vec<String> = std::fs::read_dir(root.join(d))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        }
    }
}
