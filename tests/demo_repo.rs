//! `missions demo --repo PATH --issue-file FILE`: the mission on a repository
//! of one's own. The binary, as a person runs it: PATH's HEAD commit is copied
//! into the simulator, PATH stays untouched, and the printed fetch command
//! brings the result back.

use std::path::Path;
use std::process::{Command, Output};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The demo binary, as on a fresh machine (no keys, nothing from the developer).
fn demo(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_missions"))
        .arg("demo")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// A git repository holding the demo's sample project (without its `.github`
/// files) in one commit, and a file git ignores.
fn sample_checkout(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    for (file, content) in missions::demo::project::files("/nowhere", "") {
        if file.starts_with(".github/") {
            continue;
        }
        std::fs::write(path.join(&file), content).unwrap();
    }
    git(path, &["init", "-q", "-b", "main"]);
    git(
        path,
        &[
            "-c",
            "user.name=Pat",
            "-c",
            "user.email=pat@example.com",
            "add",
            "-A",
        ],
    );
    git(
        path,
        &[
            "-c",
            "user.name=Pat",
            "-c",
            "user.email=pat@example.com",
            "commit",
            "-q",
            "-m",
            "textstats",
        ],
    );
    // Not committed: must not reach the simulator.
    std::fs::write(path.join(".git/info/exclude"), "local.env\n").unwrap();
    std::fs::write(path.join("local.env"), "TOKEN=not-for-the-mission\n").unwrap();
}

#[test]
fn the_demo_works_on_a_repository_of_ones_own_and_leaves_it_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("textstats");
    sample_checkout(&path);
    let head = git(&path, &["rev-parse", "HEAD"]);
    let branches = git(&path, &["branch", "--list"]);
    let issue = tmp.path().join("issue.md");
    std::fs::write(
        &issue,
        format!(
            "# {}\n\n{}\n",
            missions::demo::project::ISSUE_TITLE,
            missions::demo::project::ISSUE_BODY
        ),
    )
    .unwrap();
    let demo_dir = tmp.path().join("demo");

    let output = demo(
        &[
            "--repo",
            path.to_str().unwrap(),
            "--issue-file",
            issue.to_str().unwrap(),
        ],
        &demo_dir,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("## Mission complete"), "{stdout}");
    assert!(stdout.contains("issue #1 closed"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "alice opened issue #1: {}",
            missions::demo::project::ISSUE_TITLE
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("repository octo-org/textstats (a copy of"),
        "{stdout}"
    );
    // The person's answer to the orchestrator's question.
    assert!(
        stdout.contains(missions::demo::own_repo::NO_PREFERENCE),
        "{stdout}"
    );

    // PATH untouched: no change in the work tree, the index or the refs.
    assert_eq!(git(&path, &["status", "--porcelain"]), "");
    assert_eq!(git(&path, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(&path, &["branch", "--list"]), branches);

    // The printed fetch command brings the result into PATH.
    let fetch = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("git -C "))
        .unwrap_or_else(|| panic!("no fetch command in\n{stdout}"));
    let words: Vec<&str> = fetch.split_whitespace().collect();
    assert_eq!(words[0], "git", "{fetch}");
    assert_eq!(words[2], path.to_str().unwrap(), "{fetch}");
    assert!(Path::new(words[4]).exists(), "{fetch}");
    let out = Command::new("git").args(&words[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{fetch}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let program = git(&path, &["show", "missions-result:textstats.py"]);
    assert!(program.contains("--top"), "{program}");
    // Only committed files went in.
    let files = git(&path, &["ls-tree", "-r", "--name-only", "missions-result"]);
    assert!(!files.contains("local.env"), "{files}");
    assert!(files.contains(".github/missions.yml"), "{files}");
}

#[test]
fn repo_needs_an_issue_file_and_a_repository_with_a_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let issue = tmp.path().join("issue.md");
    std::fs::write(&issue, "Fix it\n\nPlease.\n").unwrap();
    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    git(&empty, &["init", "-q"]);
    let untitled = tmp.path().join("untitled.md");
    std::fs::write(&untitled, "\nno title\n").unwrap();
    let checkout = tmp.path().join("checkout");
    sample_checkout(&checkout);

    for (args, says) in [
        (
            vec!["--repo", checkout.to_str().unwrap()],
            "--repo needs --issue-file FILE",
        ),
        (
            vec![
                "--repo",
                plain.to_str().unwrap(),
                "--issue-file",
                issue.to_str().unwrap(),
            ],
            "not a git repository",
        ),
        (
            vec![
                "--repo",
                empty.to_str().unwrap(),
                "--issue-file",
                issue.to_str().unwrap(),
            ],
            "has no commits yet",
        ),
        (
            vec![
                "--repo",
                checkout.to_str().unwrap(),
                "--issue-file",
                untitled.to_str().unwrap(),
            ],
            "write the issue's title there",
        ),
    ] {
        let output = demo(&args, &tmp.path().join("demo"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}: {stdout}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(
            !stdout.contains("GitHub simulator at"),
            "{args:?} started anyway: {stdout}"
        );
    }
}
