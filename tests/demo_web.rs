//! `missions demo --project web`: a mission on a small web application whose
//! user tester uses it in Debian's headless Chromium, as a person would —
//! types an item into the form, submits it, reads the list — and whose report
//! on the reports branch carries the screenshot of the filled form. Offline
//! by construction: the demo runs in a network namespace with nothing but
//! loopback.
//!
//! Needs `/usr/bin/chromium` (`.ci/run` installs it), `unshare` and `ip`;
//! `MISSIONS_SKIP_BROWSER=1` skips it.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn skipped() -> bool {
    if std::env::var_os("MISSIONS_SKIP_BROWSER").is_some() {
        eprintln!("skipped: MISSIONS_SKIP_BROWSER is set");
        return true;
    }
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "this test needs Debian's chromium (`apt-get install chromium`; .ci/run installs it)"
    );
    false
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `git` in the simulator's bare repository of the demo.
fn git_bytes(bare: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(bare)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn the_web_demo_is_user_tested_in_a_browser_offline_with_a_screenshot_of_the_filled_form() {
    if skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A fresh network namespace has only a loopback device, and it is down.
    let script = "ip link set lo up && exec \"$0\" demo --project web --dir \"$1\"";
    let namespace: &[&str] = if is_root() {
        &["--net"]
    } else {
        &["--map-root-user", "--net"]
    };
    let output = Command::new("unshare")
        .args(namespace)
        .args(["sh", "-c", script, env!("CARGO_BIN_EXE_missions")])
        .arg(dir.path())
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("RUST_LOG")
        .output()
        .expect("unshare (util-linux) runs the demo in a network namespace");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the web demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("a to-do list web app"), "{stdout}");
    assert!(stdout.contains("## Mission complete"), "{stdout}");
    assert!(stdout.contains("issue #1 closed"), "{stdout}");

    // The user tester's report passed, and names its screenshots.
    let bare = dir.path().join("sim/git/octo-org/todo.git");
    let reports = "missions/1/reports";
    let report: Value = serde_json::from_slice(&git_bytes(
        &bare,
        &[
            "show",
            &format!("{reports}:.missions/1/reports/M1-user-testing.json"),
        ],
    ))
    .unwrap();
    assert!(
        report["assertions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status"] == "pass"),
        "{report}"
    );
    let filled = ".missions/1/reports/M1-user-testing/01-filled-form.png";
    let shots: Vec<&str> = report["screenshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        shots,
        [
            filled,
            ".missions/1/reports/M1-user-testing/02-after-adding.png"
        ]
    );
    // The screenshot of the filled form is a real PNG of a real page.
    let png = git_bytes(&bare, &["cat-file", "blob", &format!("{reports}:{filled}")]);
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert!(width >= 200 && height >= 100, "{width}x{height}");
    // Taken before and after the submit: a tester whose browser showed no
    // page would have taken the same blank picture twice.
    let after = git_bytes(
        &bare,
        &["cat-file", "blob", &format!("{reports}:{}", shots[1])],
    );
    assert_ne!(
        png, after,
        "the form before and after the submit look the same"
    );

    // The merged app has the form.
    let app = String::from_utf8(git_bytes(&bare, &["show", "main:todo.py"])).unwrap();
    assert!(app.contains("<form method=post action=/add>"), "{app}");
}

#[test]
fn without_chromium_the_web_demo_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_missions"))
        .args(["demo", "--project", "web", "--dir"])
        .arg(dir.path())
        .env("MISSIONS_CHROMIUM", dir.path().join("no-chromium-here"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("needs Chromium") && stderr.contains("apt-get install chromium"),
        "{stderr}"
    );
}
