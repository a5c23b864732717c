//! The agent loop against a scripted model in a real git checkout: tools act on
//! disk, results go back in order, the conversation only grows, and every
//! limit ends the run with a reason.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use missions::agent::{
    AgentConfig, AgentResult, BashConfig, EXPLORERS_AT_ONCE, Explorer, ExplorerProvider,
    FinishSpec, Limit, NUDGE, Tool, ToolSet, Workspace, run_agent,
};
use missions::llm::pricing::Prices;
use missions::llm::{
    ChatRequest, ChatResponse, ContentBlock, LlmError, Message, Provider, Role, StopReason, Usage,
};
use serde_json::{Value, json};

/// Replays responses in order and keeps every request it was sent.
struct Script {
    responses: Mutex<VecDeque<Result<ChatResponse, LlmError>>>,
    requests: Mutex<Vec<ChatRequest>>,
}

impl Script {
    fn new(responses: Vec<ChatResponse>) -> Self {
        Self::answering(responses.into_iter().map(Ok).collect())
    }

    /// Answers, errors included, in order.
    fn answering(responses: Vec<Result<ChatResponse, LlmError>>) -> Self {
        Script {
            responses: Mutex::new(responses.into()),
            requests: Mutex::new(Vec::new()),
        }
    }

    fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().unwrap().clone()
    }
}

#[async_trait]
impl Provider for Script {
    fn name(&self) -> &str {
        "test-script"
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.requests.lock().unwrap().push(request.clone());
        self.responses
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Err(LlmError::Script("out of responses".into())))
    }
}

fn usage(n: u64) -> Usage {
    Usage {
        input_tokens: 10 * n,
        output_tokens: n,
        cache_read_tokens: 100 * n,
        cache_write_tokens: 5 * n,
    }
}

/// An assistant turn calling tools: `(id, name, input)`.
fn calls(n: u64, calls: &[(&str, &str, Value)]) -> ChatResponse {
    let mut content = vec![ContentBlock::Text {
        text: format!("turn {n}"),
    }];
    content.extend(calls.iter().map(|(id, name, input)| ContentBlock::ToolUse {
        id: id.to_string(),
        name: name.to_string(),
        input: input.clone(),
    }));
    ChatResponse {
        content,
        stop_reason: StopReason::ToolUse,
        usage: usage(n),
        model: "scripted-model".into(),
    }
}

fn call(n: u64, id: &str, name: &str, input: Value) -> ChatResponse {
    calls(n, &[(id, name, input)])
}

fn text(n: u64, text: &str) -> ChatResponse {
    ChatResponse {
        content: vec![ContentBlock::Text { text: text.into() }],
        stop_reason: StopReason::EndTurn,
        usage: usage(n),
        model: "scripted-model".into(),
    }
}

fn finish_spec() -> FinishSpec {
    FinishSpec::new(
        json!({
            "type": "object",
            "properties": {
                "summary": {"type": "string", "minLength": 1},
                "tests_pass": {"type": "boolean"}
            },
            "required": ["summary", "tests_pass"],
            "additionalProperties": false
        }),
        "Your handoff.",
    )
    .unwrap()
}

fn config() -> AgentConfig {
    AgentConfig::new(
        "scripted-model",
        "You are a worker.",
        "Mission: make test.sh pass.",
        finish_spec(),
    )
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// A git checkout with one commit.
fn checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README.md"), "# demo\n").unwrap();
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "init"]);
    dir
}

/// The tool results of a user message: (tool_use_id, content, is_error).
fn results(message: &Message) -> Vec<(String, String, bool)> {
    assert_eq!(message.role, Role::User);
    message
        .content
        .iter()
        .map(|b| match b {
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => (tool_use_id.clone(), content.clone(), *is_error),
            other => panic!("expected a tool result, got {other:?}"),
        })
        .collect()
}

const FAILING_TEST: &str = r#"actual=$((2 + 1))
echo "checking"
echo "checking"
if [ "$actual" -ne 4 ]; then echo "FAIL: expected 4, got $actual" >&2; exit 1; fi
echo PASS
"#;

#[tokio::test]
async fn a_worker_writes_runs_fixes_and_finishes() {
    let dir = checkout();
    let script = Script::new(vec![
        call(
            1,
            "w1",
            "write_file",
            json!({"path": "tests/test.sh", "content": FAILING_TEST}),
        ),
        call(2, "b1", "bash", json!({"command": "sh tests/test.sh"})),
        calls(
            3,
            &[
                (
                    "e1",
                    "edit_file",
                    json!({"path": "tests/test.sh", "old_string": "echo \"checking\"", "new_string": "true"}),
                ),
                (
                    "e2",
                    "edit_file",
                    json!({"path": "tests/test.sh", "old_string": "$((2 + 1))", "new_string": "$((2 + 2))"}),
                ),
            ],
        ),
        call(4, "b2", "bash", json!({"command": "sh tests/test.sh"})),
        text(5, "The test passes now."),
        call(6, "f1", "finish", json!({"summary": 5, "tests_pass": true})),
        call(
            7,
            "f2",
            "finish",
            json!({"summary": "fixed the sum", "tests_pass": true}),
        ),
    ]);
    let outcome = run_agent(&script, config(), dir.path()).await;

    assert_eq!(
        outcome.result,
        AgentResult::Finished(json!({"summary": "fixed the sum", "tests_pass": true}))
    );
    assert_eq!(outcome.turns, 7);
    let mut expected_usage = Usage::default();
    for n in 1..=7 {
        expected_usage.add(&usage(n));
    }
    assert_eq!(outcome.usage, expected_usage);

    // Files on disk.
    let fixed = std::fs::read_to_string(dir.path().join("tests/test.sh")).unwrap();
    assert_eq!(fixed, FAILING_TEST.replace("$((2 + 1))", "$((2 + 2))"));

    // The command log.
    let log: Vec<_> = outcome
        .commands
        .iter()
        .map(|c| (c.command.as_str(), c.exit_code, c.timed_out))
        .collect();
    assert_eq!(
        log,
        [
            ("sh tests/test.sh", Some(1), false),
            ("sh tests/test.sh", Some(0), false)
        ]
    );

    // What the model was sent.
    let requests = script.requests();
    assert_eq!(requests.len(), 7);
    for pair in requests.windows(2) {
        assert!(
            pair[1].messages.starts_with(&pair[0].messages),
            "messages are never rewritten"
        );
        assert_eq!(pair[1].messages.len(), pair[0].messages.len() + 2);
        assert_eq!(
            (&pair[1].system, &pair[1].tools),
            (&pair[0].system, &pair[0].tools)
        );
    }
    assert_eq!(
        requests[0].messages,
        [Message::user_text("Mission: make test.sh pass.")]
    );
    let names: Vec<_> = requests[0].tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "bash",
            "read_file",
            "write_file",
            "edit_file",
            "list_files",
            "grep",
            "finish"
        ]
    );
    assert_eq!(requests[0].tools[6].input_schema, *finish_spec().schema());

    let last = |i: usize| requests[i].messages.last().unwrap().clone();
    let r = results(&last(1));
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].0.as_str(), r[0].2), ("w1", false));
    assert!(r[0].1.contains("tests/test.sh"), "{}", r[0].1);

    let r = results(&last(2));
    assert_eq!((r[0].0.as_str(), r[0].2), ("b1", false));
    assert!(r[0].1.starts_with("exit code 1 ("), "{}", r[0].1);
    assert!(
        r[0].1
            .contains("checking\nchecking\nFAIL: expected 4, got 3"),
        "{}",
        r[0].1
    );

    let r = results(&last(3));
    let ids: Vec<_> = r.iter().map(|(id, _, err)| (id.as_str(), *err)).collect();
    assert_eq!(ids, [("e1", true), ("e2", false)], "results in call order");
    assert_eq!(
        r[0].1,
        "old_string occurs 2 times in tests/test.sh; include more context to make it unique"
    );

    let r = results(&last(4));
    assert_eq!((r[0].0.as_str(), r[0].2), ("b2", false));
    assert!(r[0].1.starts_with("exit code 0 ("), "{}", r[0].1);
    assert!(r[0].1.ends_with("checking\nchecking\nPASS\n"), "{}", r[0].1);

    assert_eq!(last(5), Message::user_text(NUDGE));

    let r = results(&last(6));
    assert_eq!((r[0].0.as_str(), r[0].2), ("f1", true));
    assert!(
        r[0].1.contains("- /summary: 5 is not of type \"string\""),
        "{}",
        r[0].1
    );

    // The transcript is the last request plus the final answer.
    assert_eq!(outcome.transcript.len(), requests[6].messages.len() + 1);
    assert!(outcome.transcript.starts_with(&requests[6].messages));
}

#[tokio::test]
async fn paths_cannot_leave_the_checkout() {
    let dir = checkout();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "s3cret").unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("nothing"), dir.path().join("dangling"))
        .unwrap();
    std::os::unix::fs::symlink("README.md", dir.path().join("readme-link")).unwrap();
    let ws = Workspace::new(dir.path(), BashConfig::default()).unwrap();
    let absolute = outside.path().join("secret").display().to_string();

    let cases = [
        (
            Tool::ReadFile,
            json!({"path": "../x"}),
            "escapes the checkout root",
        ),
        (
            Tool::ReadFile,
            json!({"path": "a/../../x"}),
            "escapes the checkout root",
        ),
        (Tool::ReadFile, json!({"path": absolute}), "is absolute"),
        (
            Tool::ReadFile,
            json!({"path": "out/secret"}),
            "outside the checkout root through a symlink",
        ),
        (
            Tool::WriteFile,
            json!({"path": "out/new", "content": "x"}),
            "through a symlink",
        ),
        (
            Tool::WriteFile,
            json!({"path": "out/sub/new", "content": "x"}),
            "through a symlink",
        ),
        (
            Tool::WriteFile,
            json!({"path": "dangling", "content": "x"}),
            "broken symlink",
        ),
        (
            Tool::WriteFile,
            json!({"path": "../x", "content": "x"}),
            "escapes",
        ),
        (
            Tool::WriteFile,
            json!({"path": ".git/hooks/pre-commit", "content": "x"}),
            "inside .git",
        ),
        (
            Tool::EditFile,
            json!({"path": "out/secret", "old_string": "s", "new_string": "x"}),
            "through a symlink",
        ),
        (Tool::ListFiles, json!({"path": "out"}), "through a symlink"),
        (
            Tool::Grep,
            json!({"pattern": "s3", "path": "out"}),
            "through a symlink",
        ),
        (
            Tool::Grep,
            json!({"pattern": "s3", "path": ".."}),
            "escapes",
        ),
    ];
    for (tool, input, expected) in cases {
        let out = ws.execute(tool, &input, None).await;
        assert!(out.is_error, "{tool:?} {input}: {}", out.content);
        assert!(
            out.content.contains(expected),
            "{tool:?} {input}: {}",
            out.content
        );
    }
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        1,
        "nothing written outside"
    );
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret")).unwrap(),
        "s3cret"
    );
    assert!(!outside.path().join("nothing").exists());

    // A symlink that stays inside is fine.
    let out = ws
        .execute(Tool::ReadFile, &json!({"path": "readme-link"}), None)
        .await;
    assert_eq!(
        (out.content.as_str(), out.is_error),
        ("     1\t# demo\n", false)
    );
}

#[tokio::test]
async fn file_tools_read_list_and_search() {
    let dir = checkout();
    let ws = Workspace::new(dir.path(), BashConfig::default()).unwrap();
    let lines: String = (1..=5).map(|i| format!("line {i}\n")).collect();
    let out = ws
        .execute(
            Tool::WriteFile,
            &json!({"path": "src/deep/a.txt", "content": lines}),
            None,
        )
        .await;
    assert!(!out.is_error, "{}", out.content);

    let out = ws
        .execute(
            Tool::ReadFile,
            &json!({"path": "src/deep/a.txt", "offset": 2, "limit": 2}),
            None,
        )
        .await;
    assert_eq!(
        out.content,
        "     2\tline 2\n     3\tline 3\n[lines 2-3 of 5; call read_file with offset=4 to read on]"
    );
    let out = ws
        .execute(Tool::ReadFile, &json!({"path": "missing.txt"}), None)
        .await;
    assert!(
        out.is_error && out.content.contains("no such file"),
        "{}",
        out.content
    );
    let out = ws
        .execute(Tool::ReadFile, &json!({"file": "x"}), None)
        .await;
    assert!(
        out.is_error && out.content.contains("missing field `path`"),
        "{}",
        out.content
    );

    let out = ws.execute(Tool::ListFiles, &json!({}), None).await;
    assert_eq!(out.content, "README.md\nsrc/");
    let out = ws
        .execute(Tool::ListFiles, &json!({"recursive": true}), None)
        .await;
    assert_eq!(out.content, "README.md\nsrc/\nsrc/deep/\nsrc/deep/a.txt");

    let out = ws
        .execute(Tool::Grep, &json!({"pattern": "line [35]|demo"}), None)
        .await;
    assert_eq!(
        out.content,
        "README.md:1: # demo\nsrc/deep/a.txt:3: line 3\nsrc/deep/a.txt:5: line 5"
    );
    let out = ws.execute(Tool::Grep, &json!({"pattern": "("}), None).await;
    assert!(out.is_error && out.content.contains("invalid regular expression"));

    let out = ws
        .execute(
            Tool::EditFile,
            &json!({"path": "src/deep/a.txt", "old_string": "line 9", "new_string": "x"}),
            None,
        )
        .await;
    assert!(out.is_error);
    assert!(
        out.content
            .starts_with("old_string not found in src/deep/a.txt"),
        "{}",
        out.content
    );
}

#[tokio::test]
async fn commands_get_no_credentials_and_a_throwaway_home() {
    // SAFETY: these variables exist only for this test; nothing else in this
    // test binary reads them, and std's environment access is locked.
    unsafe {
        std::env::set_var("ANTHROPIC_API_KEY", "sk-ant-test-must-not-leak");
        std::env::set_var("MISSIONS_TEST_ALLOWED", "visible");
    }
    let dir = checkout();
    let bash = BashConfig {
        pass_env: vec![
            "MISSIONS_TEST_ALLOWED".into(),
            "ANTHROPIC_API_KEY".into(), // listed by mistake: still never passed
        ],
        set_env: vec![
            ("GH_TOKEN".into(), "ghs_must_not_leak".into()),
            ("EXTRA".into(), "1".into()),
        ],
        ..BashConfig::default()
    };
    let ws = Workspace::new(dir.path(), bash).unwrap();
    let home = ws.home().to_path_buf();
    let out = ws
        .execute(Tool::Bash, &json!({"command": "env"}), None)
        .await;
    assert!(!out.content.contains("must-not-leak") && !out.content.contains("must_not_leak"));
    let mut names: Vec<&str> = out
        .content
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .filter(|k| !["PWD", "SHLVL", "_", "OLDPWD"].contains(k))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "CI",
            "EXTRA",
            "HOME",
            "LANG",
            "MISSIONS_TEST_ALLOWED",
            "PATH",
            "TERM"
        ],
        "{}",
        out.content
    );
    assert!(out.content.contains(&format!("HOME={}\n", home.display())));
    assert!(out.content.contains("MISSIONS_TEST_ALLOWED=visible\n"));
    assert_ne!(Some(home.clone()), std::env::var_os("HOME").map(Into::into));
    assert!(home.is_dir());

    // The working directory is the checkout.
    let out = ws
        .execute(Tool::Bash, &json!({"command": "pwd"}), None)
        .await;
    assert_eq!(
        out.content.lines().nth(1).unwrap(),
        dir.path().canonicalize().unwrap().display().to_string()
    );
    drop(ws);
    assert!(!home.exists(), "HOME is removed with the workspace");
}

#[tokio::test]
async fn a_command_that_times_out_is_killed_with_everything_it_started() {
    let dir = checkout();
    let ws = Workspace::new(dir.path(), BashConfig::default()).unwrap();
    let started = Instant::now();
    let out = ws
        .execute(
            Tool::Bash,
            &json!({"command": "sleep 300 & echo $! > bg.pid; echo started; sleep 300", "timeout_secs": 1}),
            None,
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let record = out.command.unwrap();
    assert_eq!((record.exit_code, record.timed_out), (None, true));
    assert!(record.duration_ms >= 1000);
    assert_eq!(
        out.content,
        "timed out after 1 s; the command and every process it started were killed\nstarted\n"
    );
    let pid = std::fs::read_to_string(dir.path().join("bg.pid")).unwrap();
    assert!(!running(pid.trim()), "the background sleep was killed");

    // A background process also ends with a command that exits normally.
    let out = ws
        .execute(
            Tool::Bash,
            &json!({"command": "sleep 300 & echo $! > bg2.pid"}),
            None,
        )
        .await;
    assert_eq!(out.command.unwrap().exit_code, Some(0));
    let pid = std::fs::read_to_string(dir.path().join("bg2.pid")).unwrap();
    assert!(!running(pid.trim()));
}

/// Alive and not a zombie (a container's init may not reap).
fn running(pid: &str) -> bool {
    for _ in 0..50 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return false,
            Ok(stat) => {
                let state = stat.rsplit(") ").next().unwrap_or("").chars().next();
                if state == Some('Z') || state == Some('X') {
                    return false;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[tokio::test]
async fn long_output_keeps_its_head_and_tail() {
    let dir = checkout();
    let bash = BashConfig {
        output_limit: 1000,
        ..BashConfig::default()
    };
    let ws = Workspace::new(dir.path(), bash).unwrap();
    let out = ws
        .execute(Tool::Bash, &json!({"command": "seq 1 10000"}), None)
        .await;
    let full: String = (1..=10000).map(|i| format!("{i}\n")).collect();
    let omitted = full.len() - 1000;
    let expected = format!(
        "{}\n[output truncated: {omitted} bytes omitted]\n{}",
        &full[..500],
        &full[full.len() - 500..]
    );
    let body = out.content.split_once('\n').unwrap().1;
    assert_eq!(body, expected);
    assert!(out.content.starts_with("exit code 0 ("));
}

#[tokio::test]
async fn the_turn_limit_ends_a_run_that_never_finishes() {
    let dir = checkout();
    let script = Script::new(
        (1..=5)
            .map(|n| call(n, &format!("b{n}"), "bash", json!({"command": "true"})))
            .collect(),
    );
    let mut config = config();
    config.limits.max_turns = 3;
    let outcome = run_agent(&script, config, dir.path()).await;
    assert_eq!(
        outcome.result,
        AgentResult::LimitReached(Limit::Turns { max: 3 })
    );
    assert_eq!(outcome.turns, 3);
    assert_eq!(script.requests().len(), 3);
    assert_eq!(outcome.commands.len(), 3);
}

#[tokio::test]
async fn the_token_limit_counts_every_token() {
    let dir = checkout();
    let script = Script::new(
        (1..=3)
            .map(|n| call(n, &format!("b{n}"), "bash", json!({"command": "true"})))
            .collect(),
    );
    let mut config = config();
    // usage(1) is 116 tokens, usage(2) 232.
    config.limits.max_total_tokens = 300;
    let outcome = run_agent(&script, config, dir.path()).await;
    assert_eq!(
        outcome.result,
        AgentResult::LimitReached(Limit::Tokens {
            max: 300,
            used: 348
        })
    );
    assert_eq!(outcome.turns, 2);
}

#[tokio::test]
async fn a_reviewer_cannot_write_or_run_commands() {
    assert_eq!(
        ToolSet::read_only().tools(),
        [Tool::ReadFile, Tool::ListFiles, Tool::Grep]
    );
    assert!(ToolSet::read_only().with(Tool::Bash).contains(Tool::Bash));

    let dir = checkout();
    let script = Script::new(vec![
        calls(
            1,
            &[
                ("w", "write_file", json!({"path": "x.txt", "content": "x"})),
                ("b", "bash", json!({"command": "touch y.txt"})),
                ("r", "read_file", json!({"path": "README.md"})),
            ],
        ),
        call(
            2,
            "f",
            "finish",
            json!({"summary": "looked", "tests_pass": false}),
        ),
    ]);
    let mut config = config();
    config.tools = ToolSet::read_only();
    let outcome = run_agent(&script, config, dir.path()).await;
    assert!(matches!(outcome.result, AgentResult::Finished(_)));
    let requests = script.requests();
    let names: Vec<_> = requests[0].tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["read_file", "list_files", "grep", "finish"]);
    let r = results(requests[1].messages.last().unwrap());
    assert_eq!(
        r.iter().map(|(_, _, e)| *e).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert_eq!(
        r[0].1,
        "there is no tool `write_file` in this run; available: read_file, list_files, grep, finish"
    );
    assert!(!dir.path().join("x.txt").exists() && !dir.path().join("y.txt").exists());
    assert!(outcome.commands.is_empty());
}

#[tokio::test]
async fn repeated_invalid_finishes_end_the_run() {
    let dir = checkout();
    let script = Script::new(vec![
        call(1, "f1", "finish", json!({"summary": ""})),
        call(2, "f2", "finish", json!({"summary": "", "extra": 1})),
    ]);
    let mut config = config();
    config.max_invalid_finish = 1;
    let outcome = run_agent(&script, config, dir.path()).await;
    let AgentResult::InvalidFinish(violations) = &outcome.result else {
        panic!("{:?}", outcome.result);
    };
    let paths: Vec<_> = violations.iter().map(|v| v.path.as_str()).collect();
    assert!(
        paths.contains(&"/summary") && paths.contains(&""),
        "{violations:?}"
    );
    let first = results(script.requests()[1].messages.last().unwrap());
    assert!(first[0].2);
    assert!(
        first[0]
            .1
            .contains("- (root): \"tests_pass\" is a required property"),
        "{}",
        first[0].1
    );
    assert!(
        first[0].1.contains("1 more invalid call will end the run"),
        "{}",
        first[0].1
    );
}

#[tokio::test]
async fn provider_errors_end_the_run_without_panicking() {
    let dir = checkout();
    let script = Script::new(vec![text(1, "thinking")]);
    let outcome = run_agent(&script, config(), dir.path()).await;
    assert_eq!(
        outcome.result,
        AgentResult::ProviderError("scripted model: out of responses".into())
    );
    assert_eq!(outcome.turns, 1);

    let outcome = run_agent(
        &Script::new(vec![]),
        config(),
        Path::new("/nonexistent/checkout"),
    )
    .await;
    assert!(matches!(outcome.result, AgentResult::SetupError(_)));
}

#[test]
fn finish_schemas_must_describe_objects() {
    assert!(FinishSpec::new(json!({"type": "string"}), "").is_err());
    assert!(
        FinishSpec::new(
            json!({"type": "object", "properties": {"a": {"type": 5}}}),
            ""
        )
        .is_err()
    );
}

#[tokio::test]
async fn the_wall_time_limit_cuts_a_long_command_and_ends_the_run() {
    let dir = checkout();
    let script = Script::new(vec![
        call(
            1,
            "b1",
            "bash",
            json!({"command": "sleep 30", "timeout_secs": 60}),
        ),
        call(2, "b2", "bash", json!({"command": "true"})),
    ]);
    let mut config = config();
    config.limits.max_wall_time = Duration::from_secs(1);
    let started = Instant::now();
    let outcome = run_agent(&script, config, dir.path()).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        outcome.result,
        AgentResult::LimitReached(Limit::WallTime { max_secs: 1 })
    );
    assert_eq!(outcome.commands.len(), 1);
    assert!(outcome.commands[0].timed_out);
    let last = results(outcome.transcript.last().unwrap());
    assert!(last[0].1.starts_with("[timeout cut to"), "{}", last[0].1);
}

/// The same worker, driven by the crate's scripted provider from a script file
/// (what the offline demo uses): edits a file in a git checkout, runs a failing
/// then a passing command, and ends with a schema-valid `finish`.
#[tokio::test]
async fn a_scripted_worker_from_a_script_file_fixes_a_test_and_hands_off() {
    let repo = checkout();
    let script = json!([
        {"text": "I'll add the test first.", "tool_calls": [
            {"name": "write_file", "input": {"path": "test.sh", "content": FAILING_TEST}}]},
        {"tool_calls": [{"name": "bash", "input": {"command": "sh test.sh"}}]},
        {"tool_calls": [{"name": "edit_file", "input": {
            "path": "test.sh", "old_string": "$((2 + 1))", "new_string": "$((2 + 2))"}}]},
        {"tool_calls": [{"name": "bash", "input": {"command": "sh test.sh"}}]},
        {"tool_calls": [{"name": "finish", "input": {"summary": "test.sh passes", "tests_pass": true}}]}
    ]);
    let script_file = repo.path().join("..").join(format!(
        "script-{}.json",
        repo.path().file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&script_file, serde_json::to_vec_pretty(&script).unwrap()).unwrap();
    let provider = missions::llm::scripted::Scripted::from_file(&script_file).unwrap();
    std::fs::remove_file(&script_file).unwrap();

    let outcome = run_agent(&provider, config(), repo.path()).await;

    assert_eq!(
        outcome.result,
        AgentResult::Finished(json!({"summary": "test.sh passes", "tests_pass": true}))
    );
    let commands: Vec<(String, Option<i32>)> = outcome
        .commands
        .iter()
        .map(|c| (c.command.clone(), c.exit_code))
        .collect();
    assert_eq!(
        commands,
        [
            ("sh test.sh".to_owned(), Some(1)),
            ("sh test.sh".to_owned(), Some(0))
        ]
    );
    assert!(
        std::fs::read_to_string(repo.path().join("test.sh"))
            .unwrap()
            .contains("$((2 + 2))")
    );
    // Five model calls; each request's messages extend the previous one's.
    let requests = provider.requests();
    assert_eq!(requests.len(), 5);
    for pair in requests.windows(2) {
        assert!(pair[1].messages.starts_with(&pair[0].messages));
    }
    // Usage is estimated by the scripted provider, and summed by the loop.
    assert!(outcome.usage.input_tokens > 0 && outcome.usage.output_tokens > 0);
}

// ---------------------------------------------------------------- real models
//
// What real models do that scripted ones did not: several calls at once,
// malformed or unknown calls, prose instead of a call, the same failing call
// again and again, and conversations longer than their window.

fn good_finish(n: u64) -> ChatResponse {
    call(
        n,
        &format!("f{n}"),
        "finish",
        json!({"summary": "done", "tests_pass": true}),
    )
}

#[tokio::test]
async fn several_calls_in_one_answer_run_in_order_and_are_answered_in_order() {
    let dir = checkout();
    let script = Script::new(vec![
        calls(
            1,
            &[
                (
                    "w",
                    "write_file",
                    json!({"path": "notes.txt", "content": "one\n"}),
                ),
                ("r", "read_file", json!({"path": "notes.txt"})),
                (
                    "b",
                    "bash",
                    json!({"command": "cat notes.txt; echo two >> notes.txt"}),
                ),
                ("l", "list_files", json!({"path": "."})),
            ],
        ),
        good_finish(2),
    ]);
    let outcome = run_agent(&script, config(), dir.path()).await;
    assert!(
        matches!(outcome.result, AgentResult::Finished(_)),
        "{:?}",
        outcome.result
    );
    let answered = results(script.requests()[1].messages.last().unwrap());
    let ids: Vec<&str> = answered.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, ["w", "r", "b", "l"]);
    // Each call saw the effect of the one before it.
    assert!(answered[1].1.contains("one"), "{}", answered[1].1);
    assert!(answered[2].1.ends_with("one\n"), "{}", answered[2].1);
    assert!(answered[3].1.contains("notes.txt"), "{}", answered[3].1);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "one\ntwo\n"
    );
    assert_eq!(outcome.rejected_calls, 0);
}

#[tokio::test]
async fn malformed_and_unknown_calls_get_errors_the_model_can_act_on() {
    let dir = checkout();
    let script = Script::new(vec![
        calls(
            1,
            &[
                // Arguments that were not JSON (the OpenAI adapter keeps them as a string).
                ("m", "read_file", json!("{\"path\": \"READ")),
                // A misspelt field.
                ("s", "read_file", json!({"paht": "README.md"})),
                ("u", "open_browser", json!({"url": "http://x"})),
                ("ok", "read_file", json!({"path": "README.md"})),
            ],
        ),
        good_finish(2),
    ]);
    let outcome = run_agent(&script, config(), dir.path()).await;
    assert!(
        matches!(outcome.result, AgentResult::Finished(_)),
        "{:?}",
        outcome.result
    );
    assert_eq!(outcome.rejected_calls, 3);
    let r = results(script.requests()[1].messages.last().unwrap());
    assert!(r[0].2 && r[0].1.contains("not a JSON object"), "{}", r[0].1);
    assert!(
        r[0].1.contains("{\\\"path\\\": \\\"READ"),
        "the model sees what it sent: {}",
        r[0].1
    );
    assert!(
        r[1].2 && r[1].1.contains("do not match its schema"),
        "{}",
        r[1].1
    );
    assert!(
        r[1].1.contains("\"path\" is a required property"),
        "{}",
        r[1].1
    );
    assert!(
        r[2].2 && r[2].1.contains("no tool `open_browser`"),
        "{}",
        r[2].1
    );
    assert!(r[2].1.contains("available: "), "{}", r[2].1);
    assert_eq!(
        (r[3].1.contains("# demo"), r[3].2),
        (true, false),
        "{}",
        r[3].1
    );
}

#[tokio::test]
async fn an_answer_without_a_call_is_nudged_once_then_ends_the_run() {
    let dir = checkout();
    // Prose, a call, prose: each prose answer is nudged (the call in between
    // resets the count), and the run finishes.
    let script = Script::new(vec![
        text(1, "I will look around."),
        call(2, "l", "list_files", json!({"path": "."})),
        text(3, "Looks fine."),
        good_finish(4),
    ]);
    let outcome = run_agent(&script, config(), dir.path()).await;
    assert!(
        matches!(outcome.result, AgentResult::Finished(_)),
        "{:?}",
        outcome.result
    );
    let requests = script.requests();
    assert_eq!(
        requests[1].messages.last().unwrap(),
        &Message::user_text(NUDGE)
    );
    assert_eq!(
        requests[3].messages.last().unwrap(),
        &Message::user_text(NUDGE)
    );

    // Two prose answers in a row: incomplete, with what the model said.
    let script = Script::new(vec![
        text(1, "Let me think."),
        text(2, "The feature is done, I believe."),
        good_finish(3),
    ]);
    let outcome = run_agent(&script, config(), dir.path()).await;
    assert_eq!(
        outcome.result,
        AgentResult::NoToolCall("The feature is done, I believe.".into())
    );
    assert_eq!(outcome.turns, 2);
    assert_eq!(outcome.result.kind(), "no_tool_call");
}

#[tokio::test]
async fn the_same_failing_call_again_and_again_is_stopped_with_a_note() {
    let dir = checkout();
    let failing = || json!({"command": "echo 'no such module: foo' >&2; exit 3"});
    let script = Script::new(
        (1..=10)
            .map(|n| call(n, &format!("b{n}"), "bash", failing()))
            .collect(),
    );
    let outcome = run_agent(&script, config(), dir.path()).await;
    let AgentResult::Repeating {
        call: repeated,
        times,
        error,
    } = &outcome.result
    else {
        panic!("{:?}", outcome.result);
    };
    assert_eq!(*times, 3);
    assert!(
        repeated.starts_with("bash {\"command\":\"echo 'no such module: foo'"),
        "{repeated}"
    );
    assert!(error.contains("no such module: foo"), "{error}");
    assert_eq!(outcome.turns, 3, "stopped at the third identical failure");
    let second = results(script.requests()[2].messages.last().unwrap());
    assert!(
        second[0]
            .1
            .contains("failed the same way 2 times in a row; once more ends the run"),
        "the model is warned before: {}",
        second[0].1
    );

    // Changing the checkout in between makes running the command again fair.
    let script = Script::new(vec![
        call(1, "b1", "bash", failing()),
        call(2, "b2", "bash", failing()),
        call(
            3,
            "w",
            "write_file",
            json!({"path": "foo.py", "content": "x = 1\n"}),
        ),
        call(4, "b3", "bash", failing()),
        call(5, "b4", "bash", failing()),
        good_finish(6),
    ]);
    let outcome = run_agent(&script, config(), dir.path()).await;
    assert!(
        matches!(outcome.result, AgentResult::Finished(_)),
        "{:?}",
        outcome.result
    );
}

/// A 9,000-byte file to read again and again.
fn big_checkout() -> tempfile::TempDir {
    let dir = checkout();
    let text: String = (0..300)
        .map(|i| format!("line {i:04} of a long file\n"))
        .collect();
    std::fs::write(dir.path().join("big.txt"), text).unwrap();
    dir
}

#[tokio::test]
async fn compaction_keeps_the_prefix_byte_identical_and_the_conversation_under_the_window() {
    let dir = big_checkout();
    let mut answers: Vec<ChatResponse> = (1..=30)
        .map(|n| call(n, &format!("r{n}"), "read_file", json!({"path": "big.txt"})))
        .collect();
    answers.push(good_finish(31));
    let script = Script::new(answers);
    let mut config = config();
    config.context_window = 16_000;
    config.max_tokens = 1_000;
    let budget = missions::agent::prompt_budget(config.context_window, config.max_tokens);
    let outcome = run_agent(&script, config, dir.path()).await;
    assert!(
        matches!(outcome.result, AgentResult::Finished(_)),
        "{:?}",
        outcome.result
    );
    assert!(
        outcome.compactions >= 2,
        "{} compactions",
        outcome.compactions
    );

    let requests = script.requests();
    assert_eq!(requests.len(), 31);
    let first = &requests[0];
    for (i, r) in requests.iter().enumerate() {
        // The stable prefix, byte for byte: the prompt cache keeps serving it.
        assert_eq!(
            serde_json::to_string(&(&r.system, &r.tools, &r.messages[0])).unwrap(),
            serde_json::to_string(&(&first.system, &first.tools, &first.messages[0])).unwrap(),
            "request {i}"
        );
        let tokens = missions::agent::request_tokens(r);
        assert!(tokens <= budget, "request {i}: {tokens} > {budget}");
        // Every tool result still follows its call.
        for (m, next) in r.messages.iter().zip(r.messages.iter().skip(1)) {
            let called: Vec<&str> = m.tool_uses().map(|(id, _, _)| id).collect();
            if !called.is_empty() {
                let answered: Vec<String> =
                    results(next).into_iter().map(|(id, _, _)| id).collect();
                assert_eq!(called, answered, "request {i}");
            }
        }
    }
    // Without compaction the last request would have been far over the window.
    let uncompacted: usize = 30 * 9_000;
    assert!(uncompacted as u64 / 3 > 4 * budget);
    let last = requests.last().unwrap();
    assert!(
        last.messages[1]
            .text()
            .starts_with(missions::agent::SUMMARY_HEADER)
    );
    assert!(
        last.messages[1]
            .text()
            .contains("read_file {\"path\":\"big.txt\"} → ok")
    );
}

#[tokio::test]
async fn a_context_too_long_error_compacts_harder_and_tries_again() {
    let dir = big_checkout();
    let mut answers: Vec<Result<ChatResponse, LlmError>> = (1..=4)
        .map(|n| {
            Ok(call(
                n,
                &format!("r{n}"),
                "read_file",
                json!({"path": "big.txt"}),
            ))
        })
        .collect();
    // The provider counts differently from the estimate.
    answers.push(Err(LlmError::ContextTooLong {
        provider: "test".into(),
        message: "prompt is too long".into(),
    }));
    answers.push(Ok(good_finish(5)));
    let script = Script::answering(answers);
    let outcome = run_agent(&script, config(), dir.path()).await;
    assert!(
        matches!(outcome.result, AgentResult::Finished(_)),
        "{:?}",
        outcome.result
    );
    assert_eq!(outcome.compactions, 1);
    let requests = script.requests();
    assert_eq!(requests.len(), 6);
    let (refused, retried) = (&requests[4], &requests[5]);
    assert!(
        missions::agent::request_tokens(retried) < missions::agent::request_tokens(refused) / 2
    );
    assert_eq!(retried.messages[0], refused.messages[0]);

    // A second refusal in the same turn ends the run with the provider's error.
    let answers = vec![
        Ok(call(1, "r1", "read_file", json!({"path": "big.txt"}))),
        Ok(call(2, "r2", "read_file", json!({"path": "big.txt"}))),
        Err(LlmError::ContextTooLong {
            provider: "test".into(),
            message: "too long".into(),
        }),
        Err(LlmError::ContextTooLong {
            provider: "test".into(),
            message: "still too long".into(),
        }),
    ];
    let outcome = run_agent(&Script::answering(answers), config(), dir.path()).await;
    assert!(
        matches!(&outcome.result, AgentResult::ProviderError(e) if e.contains("still too long")),
        "{:?}",
        outcome.result
    );
}

#[tokio::test]
async fn a_finish_beside_other_calls_is_not_taken_before_their_results_are_seen() {
    let dir = checkout();
    let script = Script::new(vec![
        // What a small model does: look, and "finish" in the same breath with
        // values it could not know yet.
        calls(
            1,
            &[
                ("l", "list_files", json!({"path": "."})),
                (
                    "f1",
                    "finish",
                    json!({"summary": "invented", "tests_pass": true}),
                ),
            ],
        ),
        good_finish(2),
    ]);
    let outcome = run_agent(&script, config(), dir.path()).await;
    assert_eq!(
        outcome.result,
        AgentResult::Finished(json!({"summary": "done", "tests_pass": true}))
    );
    assert_eq!(outcome.rejected_calls, 1);
    let r = results(script.requests()[1].messages.last().unwrap());
    assert_eq!((r[0].0.as_str(), r[0].2), ("l", false));
    assert_eq!(
        (r[1].0.as_str(), r[1].1.as_str(), r[1].2),
        ("f1", missions::agent::FINISH_NOT_ALONE, true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_one_turn_run_at_once_while_writes_keep_their_place() {
    let dir = checkout();
    // Two named pipes: a read of one waits until something writes it. The
    // feeder writes `second` first and `first` only after, so the reads
    // end only if the agent has both open at once.
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    for pipe in [&first, &second] {
        let made = Command::new("mkfifo").arg(pipe).status().unwrap();
        assert!(made.success());
    }
    let script = Script::new(vec![
        calls(
            1,
            &[
                ("a", "read_file", json!({"path": "first"})),
                ("b", "read_file", json!({"path": "second"})),
                (
                    "w",
                    "write_file",
                    json!({"path": "notes.txt", "content": "one\n"}),
                ),
                ("r", "read_file", json!({"path": "notes.txt"})),
                (
                    "w2",
                    "write_file",
                    json!({"path": "notes.txt", "content": "two\n"}),
                ),
                ("r2", "read_file", json!({"path": "notes.txt"})),
            ],
        ),
        good_finish(2),
    ]);
    // A plain thread: opening a pipe to write waits for its reader.
    let (to_first, to_second) = (first.clone(), second.clone());
    std::thread::spawn(move || {
        std::fs::write(to_second, "B\n").unwrap();
        std::fs::write(to_first, "A\n").unwrap();
    });
    let run = tokio::time::timeout(
        Duration::from_secs(60),
        run_agent(&script, config(), dir.path()),
    )
    .await;
    let Ok(outcome) = run else {
        // Serial reads: release the agent's read of `first` (a read-write
        // open of a pipe does not wait), then fail.
        use std::io::Write as _;
        let mut pipe = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&first)
            .unwrap();
        pipe.write_all(b"A\n").unwrap();
        panic!("the two reads of one turn did not run at the same time");
    };
    assert!(
        matches!(outcome.result, AgentResult::Finished(_)),
        "{:?}",
        outcome.result
    );
    let answered = results(script.requests()[1].messages.last().unwrap());
    let ids: Vec<&str> = answered.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "w", "r", "w2", "r2"]);
    assert!(answered[0].1.contains('A'), "{}", answered[0].1);
    assert!(answered[1].1.contains('B'), "{}", answered[1].1);
    // Each read after a write saw that write, not the next one.
    assert!(answered[3].1.contains("one"), "{}", answered[3].1);
    assert!(answered[5].1.contains("two"), "{}", answered[5].1);
    assert!(!answered[3].1.contains("two"), "{}", answered[3].1);
}

/// An explorer whose scripts are handed out by call number; `gate`, when
/// set, holds every explorer's first model call until all have made one.
fn explorer(
    scripts: Vec<Vec<ChatResponse>>,
    gate: Option<std::sync::Arc<tokio::sync::Barrier>>,
) -> (Explorer, std::sync::Arc<Mutex<Vec<std::sync::Arc<Script>>>>) {
    let made: std::sync::Arc<Mutex<Vec<std::sync::Arc<Script>>>> = Default::default();
    let scripts = Mutex::new(scripts.into_iter().map(Some).collect::<Vec<_>>());
    let kept = made.clone();
    let provider: ExplorerProvider = std::sync::Arc::new(move |n: u32| {
        let responses = scripts.lock().unwrap()[n as usize - 1]
            .take()
            .ok_or_else(|| format!("explorer {n} asked for twice"))?;
        let script = std::sync::Arc::new(Script::new(responses));
        kept.lock().unwrap().push(script.clone());
        let provider: std::sync::Arc<dyn Provider> = std::sync::Arc::new(Gated {
            inner: script,
            gate: gate.clone(),
            waited: Mutex::new(false),
        });
        Ok(provider)
    });
    let explorer = Explorer {
        provider,
        model: "scripted-explorer".into(),
        prices: Prices {
            input: 1.0,
            output: 2.0,
            cache_read: 0.0,
            cache_write: 0.0,
        },
        system: "You answer questions about a checkout.".into(),
        limits: Explorer::LIMITS,
        max_tokens: 4096,
        context_window: 200_000,
        at_once: EXPLORERS_AT_ONCE,
    };
    (explorer, made)
}

/// A provider whose first call waits at a barrier.
struct Gated {
    inner: std::sync::Arc<Script>,
    gate: Option<std::sync::Arc<tokio::sync::Barrier>>,
    waited: Mutex<bool>,
}

#[async_trait]
impl Provider for Gated {
    fn name(&self) -> &str {
        "gated-script"
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let first = !std::mem::replace(&mut *self.waited.lock().unwrap(), true);
        if let (true, Some(gate)) = (first, &self.gate) {
            tokio::time::timeout(Duration::from_secs(30), gate.wait())
                .await
                .map_err(|_| LlmError::Script("the other explorers never started".into()))?;
        }
        self.inner.chat(request).await
    }
}

fn explorer_answer(n: u64, answer: &str) -> ChatResponse {
    call(
        n,
        "done",
        "finish",
        json!({"answer": answer, "files": ["README.md"]}),
    )
}

#[tokio::test]
async fn a_worker_asks_an_explorer_that_can_only_look_and_gets_its_answer() {
    let dir = checkout();
    let script = Script::new(vec![
        call(
            1,
            "e",
            "explore",
            json!({"question": "What does the README say?", "paths": ["README.md"]}),
        ),
        good_finish(2),
    ]);
    let (explorer, explorers) = explorer(
        vec![vec![
            calls(
                3,
                &[
                    ("r", "read_file", json!({"path": "README.md"})),
                    ("w", "write_file", json!({"path": "x.txt", "content": "x"})),
                    ("b", "bash", json!({"command": "curl https://example.com"})),
                    ("x", "explore", json!({"question": "and you?"})),
                ],
            ),
            explorer_answer(4, "The README is a one-line title: `# demo`."),
        ]],
        None,
    );
    let mut config = config();
    config.explorer = Some(explorer);
    let outcome = run_agent(&script, config, dir.path()).await;
    assert!(
        matches!(outcome.result, AgentResult::Finished(_)),
        "{:?}",
        outcome.result
    );

    // The worker was offered `explore` and got the explorer's answer back.
    let requests = script.requests();
    let names: Vec<_> = requests[0].tools.iter().map(|t| t.name.as_str()).collect();
    assert!(names.contains(&"explore"), "{names:?}");
    let answered = results(requests[1].messages.last().unwrap());
    assert_eq!(answered.len(), 1);
    assert!(!answered[0].2, "{}", answered[0].1);
    assert!(
        answered[0].1.contains("a one-line title: `# demo`") && answered[0].1.contains("README.md"),
        "{}",
        answered[0].1
    );

    // The explorer saw only the question and could only look: no writes, no
    // commands (so nothing that reaches the network), no explorers of its own.
    let explorer = explorers.lock().unwrap()[0].clone();
    let asked = explorer.requests();
    let names: Vec<_> = asked[0].tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["read_file", "list_files", "grep", "finish"]);
    assert_eq!(asked[0].model, "scripted-explorer");
    assert_eq!(asked[0].messages.len(), 1, "a fresh conversation");
    let first = asked[0].messages[0].text();
    assert!(
        first.contains("What does the README say?") && first.contains("`README.md`"),
        "{first}"
    );
    let tools = results(asked[1].messages.last().unwrap());
    assert!(
        !tools[0].2 && tools[0].1.contains("# demo"),
        "{:?}",
        tools[0]
    );
    for (i, tool) in [(1, "write_file"), (2, "bash"), (3, "explore")] {
        assert!(tools[i].2, "{:?}", tools[i]);
        assert!(
            tools[i]
                .1
                .starts_with(&format!("there is no tool `{tool}` in this run")),
            "{}",
            tools[i].1
        );
    }
    assert!(!dir.path().join("x.txt").exists());

    // Its tokens are counted apart from the worker's, and priced at its model.
    assert_eq!(outcome.explorations, 1);
    let mut theirs = usage(3);
    theirs.add(&usage(4));
    assert_eq!(outcome.explorer_usage, theirs);
    let mut mine = usage(1);
    mine.add(&usage(2));
    assert_eq!(outcome.usage, mine);
    assert_eq!(outcome.explorer_cost_micros, 70 + 14);
}

#[tokio::test]
async fn explorers_of_one_answer_run_at_once_and_answer_in_the_order_asked() {
    let dir = checkout();
    let script = Script::new(vec![
        calls(
            1,
            &[
                ("e1", "explore", json!({"question": "Where is the title?"})),
                ("e2", "explore", json!({"question": "Is there a licence?"})),
                ("r", "read_file", json!({"path": "README.md"})),
            ],
        ),
        good_finish(2),
    ]);
    // Both explorers must be asking their models at the same time, or the
    // barrier never opens; the first one then takes a turn more (its call
    // to a tool it does not have), so they are likely to end in the other
    // order.
    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let (explorer, _) = explorer(
        vec![
            vec![
                call(3, "slow", "bash", json!({"command": "sleep 1"})),
                explorer_answer(4, "first: in README.md, line 1"),
            ],
            vec![explorer_answer(5, "second: there is no licence file")],
        ],
        Some(gate),
    );
    let mut config = config();
    config.explorer = Some(explorer);
    let outcome = run_agent(&script, config, dir.path()).await;
    assert!(
        matches!(outcome.result, AgentResult::Finished(_)),
        "{:?}",
        outcome.result
    );
    let answered = results(script.requests()[1].messages.last().unwrap());
    let ids: Vec<&str> = answered.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, ["e1", "e2", "r"]);
    assert!(answered[0].1.starts_with("first:"), "{}", answered[0].1);
    assert!(answered[1].1.starts_with("second:"), "{}", answered[1].1);
    assert!(answered[2].1.contains("# demo"), "{}", answered[2].1);
    assert_eq!(outcome.explorations, 2);
    let mut summed = usage(3);
    summed.add(&usage(4));
    summed.add(&usage(5));
    assert_eq!(outcome.explorer_usage, summed);
}

#[tokio::test]
async fn an_explore_call_without_a_question_is_answered_with_what_is_wrong() {
    let dir = checkout();
    let script = Script::new(vec![
        call(1, "e", "explore", json!({"paths": ["README.md"]})),
        good_finish(2),
    ]);
    let (explorer, made) = explorer(vec![], None);
    let mut config = config();
    config.explorer = Some(explorer);
    let outcome = run_agent(&script, config, dir.path()).await;
    assert!(matches!(outcome.result, AgentResult::Finished(_)));
    let answered = results(script.requests()[1].messages.last().unwrap());
    assert!(answered[0].2);
    assert!(
        answered[0].1.contains("do not match its schema") && answered[0].1.contains("question"),
        "{}",
        answered[0].1
    );
    assert_eq!(outcome.rejected_calls, 1);
    assert!(made.lock().unwrap().is_empty(), "no explorer started");
}

#[tokio::test]
async fn an_explorer_that_does_not_answer_is_an_error_the_caller_can_act_on() {
    let dir = checkout();
    let script = Script::new(vec![
        call(1, "e", "explore", json!({"question": "Anything?"})),
        good_finish(2),
    ]);
    let (mut explorer, _) = explorer(
        vec![vec![
            call(3, "r", "read_file", json!({"path": "README.md"})),
            call(4, "r", "read_file", json!({"path": "README.md"})),
        ]],
        None,
    );
    explorer.limits.max_turns = 2;
    let mut config = config();
    config.explorer = Some(explorer);
    let outcome = run_agent(&script, config, dir.path()).await;
    assert!(matches!(outcome.result, AgentResult::Finished(_)));
    let answered = results(script.requests()[1].messages.last().unwrap());
    assert!(answered[0].2);
    assert_eq!(
        answered[0].1,
        "the explorer ended without an answer after 2 model call(s): turn limit reached (2 model calls)"
    );
    assert_eq!(outcome.explorer_usage.output_tokens, 3 + 4);
}
