//! `missions init` on temporary git repositories: what it writes parses (and
//! lints, when actionlint is at hand), it never writes the template's
//! placeholder action, never overwrites without `--force`, never follows a
//! symbolic link out of the repository, and never writes half of its files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use missions::init::{ACTION_REF_LITERAL, WORKFLOW_PATH, WORKFLOW_TEMPLATE};
use missions::repo_config::RepoConfig;

const CONFIG_PATH: &str = ".github/missions.yml";
/// A whole action reference pinned to a commit, as docs/install.md recommends.
const REF: &str = "my-org/missions@0123456789abcdef0123456789abcdef01234567";

/// The workflow `init --action-ref REF` writes.
fn expected_workflow() -> String {
    WORKFLOW_TEMPLATE.replace(ACTION_REF_LITERAL, REF)
}

/// A fresh `git init`ed directory.
fn git_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("git")
        .args(["init", "-q"])
        .current_dir(dir.path())
        .output()
        .expect("git is needed by this test");
    assert!(out.status.success(), "git init: {out:?}");
    dir
}

/// `missions init ARGS` run in `cwd`.
fn init_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_missions"))
        .arg("init")
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// `missions init --repo REPO ARGS`.
fn init_bare(repo: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--repo", repo.to_str().unwrap()];
    all.extend_from_slice(args);
    init_in(Path::new(env!("CARGO_MANIFEST_DIR")), &all)
}

/// `missions init --repo REPO --action-ref REF ARGS`.
fn init(repo: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--action-ref", REF];
    all.extend_from_slice(args);
    init_bare(repo, &all)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read(repo: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(repo.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn config(repo: &Path) -> RepoConfig {
    let text = String::from_utf8(read(repo, CONFIG_PATH)).unwrap();
    RepoConfig::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn init_writes_a_workflow_and_settings_that_parse() {
    let repo = git_repo();
    // From inside the repository, with no --repo: the current directory.
    let out = init_in(repo.path(), &["--action-ref", REF]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    for expected in [
        WORKFLOW_PATH,
        CONFIG_PATH,
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "missions / scrutiny",
        "missions / user-testing",
        "default branch",
        "docs/install.md",
    ] {
        assert!(printed.contains(expected), "{expected} not in:\n{printed}");
    }

    let cfg = config(repo.path());
    assert_eq!(cfg.label, "mission");
    assert!(cfg.budget_usd.is_some());
    // Nothing to tell the test command from: the example stays commented.
    assert!(cfg.commands.test.is_empty());
    assert!(printed.contains("No test command found"), "{printed}");

    let workflow: yaml_serde::Value =
        yaml_serde::from_slice(&read(repo.path(), WORKFLOW_PATH)).unwrap();
    assert!(
        workflow["on"].get("workflow_dispatch").is_some(),
        "no on.workflow_dispatch in {workflow:?}"
    );
    assert_eq!(
        read(repo.path(), WORKFLOW_PATH),
        expected_workflow().as_bytes()
    );
    // Pinned to a commit: no advice to pin.
    assert!(!printed.contains("pin a full commit SHA"), "{printed}");
    actionlint(&repo.path().join(WORKFLOW_PATH));

    // No temporary files left beside them.
    for dir in [".github", ".github/workflows"] {
        for entry in std::fs::read_dir(repo.path().join(dir)).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(!name.to_string_lossy().ends_with(".tmp"), "{name:?}");
        }
    }
}

#[test]
fn init_second_run_refuses_and_changes_nothing_until_forced() {
    let repo = git_repo();
    let root = repo.path();
    assert!(init(root, &[]).status.success());
    let workflow = read(root, WORKFLOW_PATH);
    let config = read(root, CONFIG_PATH);

    let out = init(root, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(WORKFLOW_PATH) && err.contains(CONFIG_PATH),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    assert_eq!(read(root, WORKFLOW_PATH), workflow);
    assert_eq!(read(root, CONFIG_PATH), config);

    // Only the settings exist (edited by hand): the workflow is not written either.
    std::fs::remove_file(root.join(WORKFLOW_PATH)).unwrap();
    std::fs::write(root.join(CONFIG_PATH), "label: build-it\n").unwrap();
    let out = init(root, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(CONFIG_PATH), "{err}");
    assert!(!err.contains(WORKFLOW_PATH), "{err}");
    assert!(!root.join(WORKFLOW_PATH).exists());
    assert_eq!(read(root, CONFIG_PATH), b"label: build-it\n");

    // Only the workflow exists: the settings are not written.
    std::fs::remove_file(root.join(CONFIG_PATH)).unwrap();
    std::fs::write(root.join(WORKFLOW_PATH), "# mine\n").unwrap();
    let out = init(root, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(WORKFLOW_PATH), "{}", stderr(&out));
    assert!(!root.join(CONFIG_PATH).exists());
    assert_eq!(read(root, WORKFLOW_PATH), b"# mine\n");

    // --force replaces what is there and writes what is missing.
    let out = init(root, &["--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("replaced"), "{}", stdout(&out));
    assert_eq!(read(root, WORKFLOW_PATH), workflow);
    assert_eq!(read(root, CONFIG_PATH), config);
}

#[test]
fn init_refuses_a_directory_that_is_not_a_repository() {
    let dir = tempfile::tempdir().unwrap();
    let out = init(dir.path(), &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("not a git repository"), "{err}");
    assert!(!dir.path().join(".github").exists());

    // A subdirectory of a repository: refused, naming the root.
    let repo = git_repo();
    let sub = repo.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let out = init(&sub, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("not at its root"), "{err}");
    assert!(!sub.join(".github").exists() && !repo.path().join(".github").exists());

    let out = init(&repo.path().join("missing"), &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
}

#[test]
fn init_fills_in_the_test_command_of_cargo_and_python_projects() {
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("Cargo.toml", "[package]\nname = \"x\"\n")], "cargo test"),
        (
            &[
                ("textstats.py", "def f():\n    pass\n"),
                ("tests/test_textstats.py", "import unittest\n"),
            ],
            "python3 -m unittest",
        ),
        (
            &[(
                "pyproject.toml",
                "[project]\nname = \"x\"\n[tool.pytest.ini_options]\n",
            )],
            "python3 -m pytest",
        ),
    ];
    for (files, command) in cases {
        let repo = git_repo();
        for (path, text) in files {
            let path = repo.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let out = init(repo.path(), &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(config(repo.path()).commands.test, [command]);
        assert!(stdout(&out).contains(command), "{}", stdout(&out));
    }
}

#[test]
fn init_requires_a_whole_action_reference_and_never_writes_the_placeholder() {
    let repo = git_repo();
    let root = repo.path();
    if WORKFLOW_TEMPLATE.contains(ACTION_REF_LITERAL) {
        // None given: refused, saying what to pass and why, nothing written.
        let out = init_bare(root, &[]);
        assert!(!out.status.success());
        let err = stderr(&out);
        for expected in [
            "--action-ref OWNER/REPO@REF",
            "placeholder",
            "commit SHA",
            "docs/install.md",
        ] {
            assert!(err.contains(expected), "{expected} not in {err}");
        }
        assert!(!root.join(".github").exists());
        // A bare ref names no repository; the placeholder's is refused.
        for (bad, says) in [
            ("v9.8.7", "OWNER/REPO@v9.8.7"),
            ("missions-app/missions@v9.8.7", "placeholder repository"),
        ] {
            let out = init_bare(root, &["--action-ref", bad]);
            assert!(!out.status.success(), "{bad}");
            assert!(stderr(&out).contains(says), "{}", stderr(&out));
            assert!(!root.join(".github").exists());
        }
    } else {
        // The template names no placeholder: nothing to require.
        let out = init_bare(root, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::remove_dir_all(root.join(".github")).unwrap();
    }

    // A tag: written, with advice to pin a commit instead.
    let out = init_bare(root, &["--action-ref", "my-org/missions@v9.8.7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let workflow = String::from_utf8(read(root, WORKFLOW_PATH)).unwrap();
    assert!(!workflow.contains(ACTION_REF_LITERAL), "{workflow}");
    if WORKFLOW_TEMPLATE.contains(ACTION_REF_LITERAL) {
        assert!(
            workflow.contains("uses: my-org/missions@v9.8.7"),
            "{workflow}"
        );
        assert!(
            stdout(&out).contains("pin a full commit SHA"),
            "{}",
            stdout(&out)
        );
    } else {
        assert_eq!(workflow, WORKFLOW_TEMPLATE);
        assert!(stdout(&out).contains("changed nothing"), "{}", stdout(&out));
    }

    // A reference that would break out of the YAML value is refused, before
    // anything is written.
    let repo = git_repo();
    let out = init_bare(repo.path(), &["--action-ref", "me/x@v1 # x"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--action-ref"), "{}", stderr(&out));
    assert!(!repo.path().join(".github").exists());
}

#[cfg(unix)]
#[test]
fn init_follows_no_symbolic_link_out_of_the_repository() {
    use std::os::unix::fs::symlink;
    let outside = tempfile::tempdir().unwrap();
    for link in [".github", ".github/workflows", WORKFLOW_PATH] {
        let repo = git_repo();
        let root = repo.path();
        let link_path = root.join(link);
        std::fs::create_dir_all(link_path.parent().unwrap()).unwrap();
        if link == WORKFLOW_PATH {
            let to = outside.path().join("victim.yml");
            std::fs::write(&to, "precious\n").unwrap();
            symlink(&to, &link_path).unwrap();
        } else {
            symlink(outside.path(), &link_path).unwrap();
        }
        for args in [&[][..], &["--force"][..]] {
            let out = init(root, args);
            assert!(!out.status.success(), "{link} {args:?}");
            let err = stderr(&out);
            assert!(
                err.contains("symbolic link") && err.contains(link),
                "{link}: {err}"
            );
        }
        assert!(!root.join(CONFIG_PATH).is_file(), "{link}");
    }
    // Nothing was written through the links.
    let mut names: Vec<String> = std::fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["victim.yml"]);
    assert_eq!(
        std::fs::read(outside.path().join("victim.yml")).unwrap(),
        b"precious\n"
    );
}

/// actionlint on `workflow`, when it is installed (on PATH, or where `.ci/run`
/// puts it: target/ci-tools/bin or the virtualenv target/ci-tools/venv/bin);
/// otherwise skipped with a note, since CI runs it.
fn actionlint(workflow: &Path) {
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ci-tools");
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("actionlint"))
            .find(|p| p.is_file())
    });
    let installed = ["bin/actionlint", "venv/bin/actionlint"]
        .into_iter()
        .map(|p| tools.join(p))
        .find(|p| p.is_file());
    let Some(bin) = on_path.or(installed) else {
        eprintln!(
            "note: actionlint is not installed (PATH or target/ci-tools); skipped linting the generated workflow (.ci/run lints the template)"
        );
        return;
    };
    let mut command = Command::new(&bin);
    command.args(["-no-color", "-oneline"]);
    // shellcheck beside it (the virtualenv's) checks the `run:` scripts too.
    let shellcheck = bin.with_file_name("shellcheck");
    if shellcheck.is_file() {
        command.arg("-shellcheck").arg(&shellcheck);
    }
    let out = command
        .arg(workflow)
        .current_dir(workflow.ancestors().nth(3).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "actionlint ({}) found problems in the generated workflow:\n{}{}",
        bin.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
