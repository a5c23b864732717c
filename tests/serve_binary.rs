//! The real `missions serve` binary, as an operator runs it: configured by
//! environment, over real HTTP, stopped by SIGTERM, restarted on the same database.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{SECRET, delivery_id, fixture};
use missions::github::webhook::sign;

const BIN: &str = env!("CARGO_BIN_EXE_missions");

struct Running {
    child: Child,
    addr: String,
    stderr: mpsc::Receiver<String>,
}

/// Starts `missions serve` on a free port and waits for its "listening" line.
fn start(db_url: &str) -> Running {
    let mut child = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("MISSIONS_LISTEN", "127.0.0.1:0")
        .env("MISSIONS_DATABASE_URL", db_url)
        .env("MISSIONS_WEBHOOK_SECRET", SECRET)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start missions serve");
    let (lines, stderr) = mpsc::channel();
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let addr = loop {
        let line = stderr
            .recv_timeout(Duration::from_secs(30))
            .expect("missions serve printed no 'listening' line within 30 s");
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    Running {
        child,
        addr,
        stderr,
    }
}

impl Running {
    /// SIGTERM, then the exit status and everything it logged.
    fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let status = self.child.wait().unwrap();
        let logs: Vec<String> = self.stderr.try_iter().collect();
        (status, logs)
    }
}

fn inbox_stats(db_url: &str) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["inbox", "stats"])
        .env_clear()
        .env("MISSIONS_DATABASE_URL", db_url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn serve_receives_over_http_stops_on_sigterm_and_logs_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("m.db").display());
    let server = start(&db_url);
    let base = format!("http://{}", server.addr);
    missions::llm::http::install_crypto_provider();
    let client = reqwest::Client::new();

    let health = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let f = fixture("issues", "labeled.json");
    let id = delivery_id();
    let post = |signature: String| {
        client
            .post(format!("{base}/webhook"))
            .header("x-github-event", "issues")
            .header("x-github-delivery", &id)
            .header("x-hub-signature-256", signature)
            .header("content-type", "application/json")
            .body(f.body.clone())
            .send()
    };
    assert_eq!(post(sign(b"wrong", &f.body)).await.unwrap().status(), 401);
    assert_eq!(
        post(sign(SECRET.as_bytes(), &f.body))
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        post(sign(SECRET.as_bytes(), &f.body))
            .await
            .unwrap()
            .status(),
        200
    );

    let (status, logs) = server.terminate();
    assert!(
        status.success(),
        "exit on SIGTERM: {status:?}\n{}",
        logs.join("\n")
    );
    let all = logs.join("\n");
    assert!(all.contains("stopped"), "{all}");
    assert!(
        !all.contains(SECRET),
        "a log line shows the webhook secret:\n{all}"
    );
    // The logging handler's line carries the delivery id (from the span).
    assert!(
        logs.iter()
            .any(|l| l.contains(&id) && l.contains("event received")),
        "no log line with the delivery id:\n{all}"
    );

    // A clean stop leaves no WAL for the next start to replay.
    let wal = dir.path().join("m.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "WAL left behind after a clean stop");

    let stats = inbox_stats(&db_url);
    assert_eq!(stats["processed"], 1, "{stats}");
    assert_eq!(stats["pending"], 0, "{stats}");

    // A restart on the same database starts cleanly and keeps what was stored.
    let again = start(&db_url);
    let (status, _) = again.terminate();
    assert!(status.success());
    assert_eq!(inbox_stats(&db_url)["processed"], 1);
}

#[test]
fn a_missing_webhook_secret_is_a_one_line_error_naming_the_variable() {
    let out = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("MISSIONS_DATABASE_URL", "sqlite://unused.db")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("MISSIONS_WEBHOOK_SECRET"), "{stderr}");
}

#[test]
fn an_unreadable_private_key_path_names_the_variable_and_path() {
    let out = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("MISSIONS_WEBHOOK_SECRET", "x")
        .env("MISSIONS_APP_ID", "1")
        .env("MISSIONS_PRIVATE_KEY_PATH", "/nonexistent/key.pem")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("MISSIONS_PRIVATE_KEY_PATH") && stderr.contains("/nonexistent/key.pem"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_bad_private_key_stops_the_start_without_echoing_the_key() {
    let out = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("MISSIONS_WEBHOOK_SECRET", "x")
        .env("MISSIONS_APP_ID", "1")
        .env("MISSIONS_PRIVATE_KEY", "canary-not-a-pem-7f3a")
        .env("MISSIONS_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MISSIONS_PRIVATE_KEY"), "{stderr}");
    assert!(!stderr.contains("canary-not-a-pem-7f3a"), "{stderr}");
    assert!(!stderr.contains("listening"), "it must not start: {stderr}");
}
