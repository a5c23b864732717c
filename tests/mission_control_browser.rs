//! Mission control in a real browser: `missions demo --keep` runs a mission, and
//! `tests/browser/check.mjs` (playwright-core driving Debian's headless Chromium)
//! follows its page live, compares the figures on it with the API's, and saves a
//! screenshot a person can look at: `target/mission-control.png`.
//!
//! Needs `/usr/bin/chromium` and `tests/browser/node_modules`, which `.ci/run`
//! installs; without them this test fails (set `MISSIONS_SKIP_BROWSER=1` to skip it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The demo, stopped however the test ends.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        // SIGTERM first: the demo shuts its server down gracefully on it.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> PathBuf {
    std::env::var_os("MISSIONS_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What is missing to run the browser test, if anything.
fn missing() -> Vec<String> {
    let mut missing = Vec::new();
    if !chromium().exists() {
        missing.push(format!("{} (Debian's `chromium`)", chromium().display()));
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node".to_owned());
    }
    if !Path::new(ROOT)
        .join("tests/browser/node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push("tests/browser/node_modules (playwright-core from npm)".to_owned());
    }
    missing
}

/// The mission's page, from the demo's output: its `mission control:` line, or
/// the App's address on its first line.
fn page_url(line: &str) -> Option<String> {
    if let Some(rest) = line.split("mission control: ").nth(1) {
        return rest.split_whitespace().next().map(str::to_owned);
    }
    let app = line.split("the App at ").nth(1)?;
    let app = app.split([';', ' ']).next()?;
    Some(format!("{app}/missions/octo-org/textstats/1"))
}

#[test]
fn the_mission_control_page_shows_the_apis_figures_live_in_chromium() {
    let missing = missing();
    if !missing.is_empty() {
        let why = format!(
            "the browser test needs {}: run `.ci/run` (or `apt-get install chromium` and \
             `npm ci --prefix tests/browser`)",
            missing.join(", ")
        );
        if std::env::var("MISSIONS_SKIP_BROWSER").as_deref() == Ok("1") {
            eprintln!("skipped (MISSIONS_SKIP_BROWSER=1): {why}");
            return;
        }
        panic!("{why}; or set MISSIONS_SKIP_BROWSER=1 to skip it");
    }

    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_missions"))
        .args(["demo", "--keep", "--dir"])
        .arg(dir.path())
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the missions binary starts");
    let stdout = child.stdout.take().unwrap();
    let demo = Demo(child);

    // Every line of the demo, as it comes (printed too, for a failure's log).
    let (lines_tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("demo | {line}");
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    // The `mission control:` line when the demo prints one soon after the App's
    // address; the address on the first line otherwise.
    let mut deadline = Instant::now() + Duration::from_secs(60);
    let mut fallback: Option<String> = None;
    let url = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains("mission control: ") => break page_url(&line).unwrap(),
            Ok(line) => {
                if fallback.is_none()
                    && let Some(url) = page_url(&line)
                {
                    fallback = Some(url);
                    deadline = Instant::now() + Duration::from_secs(2);
                }
            }
            Err(e) => match fallback {
                Some(url) => break url,
                None => panic!("the demo printed no App address within a minute ({e})"),
            },
        }
    };
    println!("mission control at {url}");
    // Keep draining the demo's output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});

    let screenshot = Path::new(ROOT).join("target/mission-control.png");
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&screenshot);
    let mut node = Command::new("node")
        .arg(Path::new(ROOT).join("tests/browser/check.mjs"))
        .arg(&url)
        .arg(&screenshot)
        .current_dir(ROOT)
        .env("MISSIONS_CHROMIUM", chromium())
        .stdin(Stdio::null())
        .spawn()
        .expect("node starts");
    let deadline = Instant::now() + Duration::from_secs(420);
    let status = loop {
        if let Some(status) = node.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = node.kill();
            let _ = node.wait();
            panic!("the browser check took more than 7 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(demo);
    assert!(
        status.success(),
        "the browser check failed ({status}); its output is above"
    );
    assert!(
        screenshot.exists(),
        "no screenshot at {}",
        screenshot.display()
    );
    println!("screenshot: {}", screenshot.display());
}

#[test]
fn the_page_url_comes_from_the_demos_output() {
    assert_eq!(
        page_url("[  0.2s] mission control: http://127.0.0.1:4000/missions/octo-org/textstats/1")
            .as_deref(),
        Some("http://127.0.0.1:4000/missions/octo-org/textstats/1")
    );
    assert_eq!(
        page_url("[  0.2s] GitHub simulator at http://127.0.0.1:1; the App at http://127.0.0.1:2; repository octo-org/textstats").as_deref(),
        Some("http://127.0.0.1:2/missions/octo-org/textstats/1")
    );
    assert_eq!(page_url("[  0.3s] alice added the label"), None);
}
