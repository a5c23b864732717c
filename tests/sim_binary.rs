//! `missions sim` as a person runs it beside `missions serve`: the sample world
//! on a port, webhooks to the App, users acting with the tokens it wrote.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::SECRET;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_missions");

/// Spawns `missions` and returns the child and a channel of its lines (stdout or stderr).
fn spawn(
    args: &[&str],
    envs: &[(&str, &str)],
    stdout: bool,
) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("RUST_LOG", "info");
    for (k, v) in envs {
        command.env(k, v);
    }
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let pipe: Box<dyn std::io::Read + Send> = if stdout {
        Box::new(child.stdout.take().unwrap())
    } else {
        Box::new(child.stderr.take().unwrap())
    };
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

fn wait_line(
    rx: &mpsc::Receiver<String>,
    what: &str,
    find: impl Fn(&str) -> Option<String>,
) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no {what} within 30 s"));
        if let Some(found) = find(&line) {
            return found;
        }
    }
}

fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    child.wait().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missions_sim_runs_standalone_and_sends_webhooks_to_missions_serve() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("app.db").display());
    let (mut serve, serve_log) = spawn(
        &["serve"],
        &[
            ("MISSIONS_LISTEN", "127.0.0.1:0"),
            ("MISSIONS_DATABASE_URL", &db),
            ("MISSIONS_WEBHOOK_SECRET", SECRET),
        ],
        false,
    );
    let app_addr = wait_line(&serve_log, "'listening' line", |l| {
        l.split("addr=")
            .nth(1)
            .map(|r| r.split_whitespace().next().unwrap().to_owned())
    });

    let data = dir.path().join("sim");
    let webhook_url = format!("http://{app_addr}/webhook");
    let (mut sim, sim_out) = spawn(
        &[
            "sim",
            "--port",
            "0",
            "--data-dir",
            data.to_str().unwrap(),
            "--webhook-url",
            &webhook_url,
        ],
        &[("MISSIONS_WEBHOOK_SECRET", SECRET)],
        true,
    );
    let url = wait_line(&sim_out, "simulator URL", |l| {
        l.strip_prefix("GitHub simulator at ").map(str::to_owned)
    });

    // The tokens file is private to its owner, and works.
    let tokens_path = data.join("tokens.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&tokens_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "tokens.json is readable by others: {mode:o}"
        );
        let key_mode = std::fs::metadata(data.join("app-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            key_mode & 0o077,
            0,
            "the App key is readable by others: {key_mode:o}"
        );
    }
    let tokens: Value = serde_json::from_slice(&std::fs::read(&tokens_path).unwrap()).unwrap();
    let alice = tokens["alice"].as_str().unwrap();
    missions::llm::http::install_crypto_provider();
    let http = reqwest::Client::new();
    let repo: Value = http
        .get(format!("{url}/repos/octo-org/demo"))
        .bearer_auth(alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(repo["default_branch"], "main");
    assert_eq!(repo["permissions"]["maintain"], true);

    // alice opens an issue; the App stores and handles the delivery.
    let answer = http
        .post(format!("{url}/repos/octo-org/demo/issues"))
        .bearer_auth(alice)
        .json(&json!({"title": "From the standalone simulator"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    // Another process: its delivery log over HTTP is all there is to watch, so poll it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let deliveries: Value = http
            .get(format!("{url}/_sim/deliveries"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let opened = deliveries
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["event"] == "issues" && d["action"] == "opened");
        if let Some(d) = opened {
            assert_eq!(d["status"], 202, "{d}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no issues.opened delivery: {deliveries}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert!(terminate(&mut sim).success());
    assert!(terminate(&mut serve).success());
    let stats = Command::new(BIN)
        .args(["inbox", "stats"])
        .env_clear()
        .env("MISSIONS_DATABASE_URL", &db)
        .output()
        .unwrap();
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert!(
        stats["processed"].as_i64().unwrap() >= 2,
        "installation.created and issues.opened: {stats}"
    );
}
