//! `missions demo --engine worker=ENGINE`: the demo mission with a real
//! third-party agent (Claude Code, Codex) in the worker's seat, offline by
//! construction — the demo runs in a network namespace with nothing but
//! loopback, so an agent that tried to reach its vendor, send telemetry or
//! update itself would fail the mission. The scripted model is served to the
//! agent over HTTP behind the job's key-holding proxy.
//!
//! Needs the engines installed (`missions engines`; `.ci/run` does it),
//! `unshare` (util-linux) and `ip` (iproute2), and root or user namespaces.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn git(args: &[&str]) -> String {
    let out = Command::new("git").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the demo offline with `engine` as the worker; returns its output.
fn offline_demo(engine: &str, dir: &Path) -> String {
    // A fresh network namespace has only a loopback device, and it is down.
    let script = "ip link set lo up && exec \"$0\" demo --engine \"$1\" --dir \"$2\"";
    let unshare_args: &[&str] = if unsafe_is_root() {
        &["--net"]
    } else {
        &["--map-root-user", "--net"]
    };
    let output = Command::new("unshare")
        .args(unshare_args)
        .args(["sh", "-c", script, env!("CARGO_BIN_EXE_missions")])
        .arg(format!("worker={engine}"))
        .arg(dir)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("RUST_LOG")
        .output()
        .expect("unshare (util-linux) runs the demo in a network namespace");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the offline demo with {engine} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

fn unsafe_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The story a maintainer sees, and the work on the merged default branch.
fn assert_mission_done_by(engine: &str, versions: &str, dir: &Path, stdout: &str) {
    assert!(
        stdout.contains(&format!("engine {engine}: {versions}")),
        "{stdout}"
    );
    assert!(stdout.contains("## Mission complete"), "{stdout}");
    assert!(stdout.contains("issue #1 closed"), "{stdout}");
    // Mission control's figures: the workers' tokens and cost are counted
    // with everyone else's (what the proxy metered).
    let report = stdout.split("## Mission complete").nth(1).unwrap();
    let cost: f64 = report
        .split("Cost: $")
        .nth(1)
        .and_then(|r| r.trim_end().trim_end_matches('.').parse().ok())
        .unwrap_or_else(|| panic!("no cost in the report: {report}"));
    assert!(cost > 0.0, "{report}");

    let repo = dir.join("check");
    let bare = dir.join("sim/git/octo-org/textstats.git");
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
    assert!(program.contains("def top_words"), "{program}");

    // Each worker's handoff lists the command the agent ran, from its own
    // tool calls, with its exit code.
    for feature in ["F1", "F2", "F3"] {
        let path = repo.join(format!(".missions/1/handoffs/{feature}.json"));
        let handoff: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let commands = handoff["commands"].as_array().unwrap();
        assert!(
            commands.iter().any(|c| {
                c["command"]
                    .as_str()
                    .unwrap()
                    .contains("python3 -m unittest -q")
                    && c["exit_code"] == 0
            }),
            "{feature}: {handoff}"
        );
    }
}

#[test]
fn the_demo_mission_completes_offline_with_claude_code_as_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = offline_demo("claude-code", dir.path());
    assert_mission_done_by(
        "claude-code",
        "@zed-industries/claude-agent-acp@0.23.1, @anthropic-ai/claude-code@2.1.332",
        dir.path(),
        &stdout,
    );
}

#[test]
fn the_demo_mission_completes_offline_with_codex_as_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = offline_demo("codex", dir.path());
    assert_mission_done_by(
        "codex",
        "@zed-industries/codex-acp@0.16.0",
        dir.path(),
        &stdout,
    );
}
