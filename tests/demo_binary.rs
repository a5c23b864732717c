//! `missions demo`, the README's first command, run as a person runs it: the
//! binary, no network, no account. Its output must be the README's example output
//! (timings, ports, ids and shas aside), so the README never drifts from the program.

use std::collections::BTreeMap;
use std::process::Command;

/// A line with what differs between runs replaced: times, ports, ids, shas, counts.
fn normalize(line: &str) -> String {
    let re_time = regex::Regex::new(r"^\[\s*[0-9.]+s\] ").unwrap();
    let re_sha = regex::Regex::new(r"\b[0-9a-f]{7,40}\b").unwrap();
    // Counts are grouped by thousands (`12,345`), or not.
    let re_num = regex::Regex::new(r"[0-9]+(?:,[0-9]{3})*").unwrap();
    let line = re_time.replace(line.trim_end(), "[T] ");
    let line = re_sha.replace_all(&line, "SHA");
    re_num.replace_all(&line, "N").into_owned()
}

fn counts(text: &str) -> BTreeMap<String, usize> {
    let mut map = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        *map.entry(normalize(line)).or_insert(0) += 1;
    }
    map
}

/// The example output in the README: the first ```text block after the demo heading.
fn readme_example() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## A mission, end to end: `missions demo`")
        .nth(1)
        .expect("the README has the demo section");
    let block = section.split("```text\n").nth(1).expect("an example block");
    block.split("\n```").next().unwrap().to_owned()
}

#[test]
fn the_demo_completes_a_mission_and_prints_the_readme_example() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_missions"))
        .args(["demo", "--dir"])
        .arg(dir.path())
        // As on a fresh machine: no provider keys, no proxy, nothing from the developer.
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "the demo logs nothing at its default level:\n{stderr}"
    );
    assert!(stdout.contains("## Mission complete"), "{stdout}");
    assert!(stdout.contains("issue #1 closed"), "{stdout}");

    let got = counts(&stdout);
    let want = counts(&readme_example());
    let missing: Vec<_> = want
        .iter()
        .filter(|(l, n)| got.get(*l) != Some(n))
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|(l, n)| want.get(*l) != Some(n))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the demo's output and the README's example differ (update the README with a fresh run)\nonly in the README: {missing:#?}\nonly in the output: {extra:#?}"
    );

    // The work is real: the sample project's tests pass on the merged default branch.
    let repo = dir.path().join("check");
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let bare = dir.path().join("sim/git/octo-org/textstats.git");
    assert!(bare.exists(), "the simulator's repository is kept in --dir");
    git(&[
        "clone",
        "-q",
        bare.to_str().unwrap(),
        repo.to_str().unwrap(),
    ]);
    let tests = Command::new("python3")
        .args(["-m", "unittest", "-q"])
        .current_dir(&repo)
        .output()
        .unwrap();
    assert!(
        tests.status.success(),
        "{}",
        String::from_utf8_lossy(&tests.stderr)
    );
    let program = std::fs::read_to_string(repo.join("textstats.py")).unwrap();
    assert!(program.contains("def top_words"));
}
