//! `missions init`: adds the mission workflow (`.github/workflows/missions.yml`)
//! and a commented `.github/missions.yml` to a repository's work tree.
//!
//! Both files are checked before either is written: without `--force`, an
//! existing one makes the command refuse and change nothing. Each file is
//! written to a temporary file beside it and renamed into place, so a reader
//! never sees half a file. The settings template gets `commands.test` filled
//! in when the project's test command can be told from its build files.

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
/// The action reference in [`WORKFLOW_TEMPLATE`] that `--action-ref` replaces.
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
    /// The action the workflow uses: a ref of the missions action (a tag,
    /// branch or commit SHA, e.g. v0.3.1), or a whole reference
    /// (OWNER/REPO@REF, or ./PATH for a local copy).
    #[arg(long, value_name = "REF")]
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
    if let Some(r) = &args.action_ref {
        check_action_ref(r)?;
    }
    let root = repository_root(&args.repo)?;
    let test_command = detect_test_command(&root);
    let workflow = workflow_text(args.action_ref.as_deref());
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
        action_ref_ignored: args.action_ref.is_some()
            && !WORKFLOW_TEMPLATE.contains(ACTION_REF_LITERAL),
        label,
    })
}

/// The workflow template with its action reference replaced by `action_ref`:
/// a whole reference when it has an `@` or starts with `./`, else a ref of the
/// missions action. Unchanged when `None`, or when the template has no
/// [`ACTION_REF_LITERAL`].
pub fn workflow_text(action_ref: Option<&str>) -> String {
    let Some(r) = action_ref else {
        return WORKFLOW_TEMPLATE.to_owned();
    };
    let reference = if r.contains('@') || r.starts_with("./") {
        r.to_owned()
    } else {
        let repo = ACTION_REF_LITERAL
            .split_once('@')
            .map_or(ACTION_REF_LITERAL, |(repo, _)| repo);
        format!("{repo}@{r}")
    };
    WORKFLOW_TEMPLATE.replace(ACTION_REF_LITERAL, &reference)
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
            "--action-ref {r:?} is not an action reference; give a ref (v0.3.1, a branch or a commit SHA) or OWNER/REPO@REF"
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

/// Writes every file under `root`, or none: an existing file without `force`
/// refuses the whole set before anything (even a directory) is created, and
/// every file is staged in a temporary file beside its target before the
/// first is renamed into place.
fn write_all_or_nothing(
    root: &Path,
    files: &[(&'static str, String)],
    force: bool,
) -> anyhow::Result<Vec<Written>> {
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
    let mut staged = Vec::new();
    for (rel, text) in files {
        let target = root.join(rel);
        let dir = target.parent().unwrap_or(root);
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(".missions-init-").suffix(".tmp");
        #[cfg(unix)]
        {
            // Like any new file (the umask applies), not tempfile's 0600.
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let mut tmp = builder
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .with_context(|| format!("cannot write {}", tmp.path().display()))?;
        staged.push((tmp, target, *rel));
    }
    let mut written = Vec::new();
    for (tmp, target, rel) in staged {
        tmp.persist(&target)
            .with_context(|| format!("cannot write {}", target.display()))?;
        if let Some(dir) = target.parent()
            && let Ok(dir) = std::fs::File::open(dir)
        {
            // The rename itself, durable (best effort: not every system can).
            let _ = dir.sync_all();
        }
        written.push(Written {
            path: rel,
            replaced: existing.contains(&rel),
        });
    }
    Ok(written)
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
    fn action_refs_replace_the_literal_and_odd_ones_are_refused() {
        if WORKFLOW_TEMPLATE.contains(ACTION_REF_LITERAL) {
            let text = workflow_text(Some("v1.2.3"));
            assert!(text.contains("missions-app/missions@v1.2.3"), "{text}");
            assert!(!text.contains(ACTION_REF_LITERAL));
            let text = workflow_text(Some("me/fork@0123abc"));
            assert!(text.contains("me/fork@0123abc"));
        }
        assert_eq!(workflow_text(None), WORKFLOW_TEMPLATE);
        for good in ["v1", "0123abcdef", "main", "me/fork@v2", "./"] {
            check_action_ref(good).unwrap();
        }
        for bad in [
            "", "v1 # x", "v1\n", "${{ x }}", "a@b@c", "-x", "v1'", "me/fork@",
        ] {
            assert!(check_action_ref(bad).is_err(), "{bad:?}");
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

    #[test]
    fn a_dangling_symlink_counts_as_an_existing_file() {
        #[cfg(unix)]
        {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            std::fs::create_dir_all(root.join(".github")).unwrap();
            std::os::unix::fs::symlink("/nonexistent/x", root.join(REPO_CONFIG_PATH)).unwrap();
            let files = [(REPO_CONFIG_PATH, "x\n".to_owned())];
            assert!(write_all_or_nothing(root, &files, false).is_err());
        }
    }
}
