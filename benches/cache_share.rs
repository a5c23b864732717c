//! How much of a worker loop's input Anthropic serves from its prompt cache,
//! given the breakpoints the adapter places (`cargo bench --bench cache_share`).
//!
//! A 30-turn scripted worker loop runs through `llm::anthropic::Anthropic`
//! against a local fake of the Messages API that reports cache usage the way
//! the API does:
//! - a prompt is rendered as tools, then system, then messages; its tokens are
//!   counted as bytes / 4 of the canonical JSON of each block (cache_control
//!   markers left out, so moving a breakpoint does not change the content);
//! - a breakpoint whose prefix has at least 1,024 tokens (Claude Sonnet 4.5's
//!   minimum) writes that prefix to the cache;
//! - a request reads the longest cached prefix found at a breakpoint or at
//!   most 20 blocks before one (Anthropic's lookback), writes from there up to
//!   its last breakpoint, and pays the full input price for the rest.
//!
//! Each turn the fake model calls a tool (read_file, grep, bash, edit_file)
//! whose output, a few hundred to a few thousand bytes, the loop sends back as
//! a tool_result; the last turn ends the loop. Prices: `claude-sonnet-4-5`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use missions::llm::anthropic::Anthropic;
use missions::llm::pricing::{self, Prices};
use missions::llm::{
    ChatRequest, ContentBlock, Message, Provider, Role, StopReason, ToolDef, Usage,
};
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const TURNS: usize = 30;
const MODEL: &str = "claude-sonnet-4-5";
const MIN_CACHEABLE_TOKENS: u64 = 1024;
const LOOKBACK_BLOCKS: usize = 20;

/// The fake's memory: every prefix it cached, by hash, with its token count.
#[derive(Default)]
struct Cache {
    prefixes: HashMap<[u8; 32], u64>,
}

fn tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

fn without_cache_control(block: &Value) -> Value {
    let mut block = block.clone();
    if let Value::Object(map) = &mut block {
        map.remove("cache_control");
    }
    block
}

/// The request's blocks in render order: canonical bytes, and whether the
/// block carries a breakpoint.
fn blocks(body: &Value) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut push = |prefix: &str, block: &Value| {
        let canonical = format!("{prefix}{}", without_cache_control(block));
        out.push((canonical, block.get("cache_control").is_some()));
    };
    for tool in body["tools"].as_array().into_iter().flatten() {
        push("tool:", tool);
    }
    for block in body["system"].as_array().into_iter().flatten() {
        push("system:", block);
    }
    for message in body["messages"].as_array().into_iter().flatten() {
        let role = message["role"].as_str().unwrap_or_default();
        for (i, block) in message["content"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            push(
                &if i == 0 {
                    format!("{role}:")
                } else {
                    String::new()
                },
                block,
            );
        }
    }
    out
}

impl Cache {
    /// Usage as Anthropic would report it for this request body, updating the cache.
    fn usage(&mut self, body: &Value) -> (u64, u64, u64) {
        let blocks = blocks(body);
        let mut hasher = Sha256::new();
        let mut bytes = 0;
        let mut prefix = Vec::with_capacity(blocks.len());
        for (canonical, _) in &blocks {
            hasher.update(canonical.as_bytes());
            hasher.update([0]);
            bytes += canonical.len();
            prefix.push((<[u8; 32]>::from(hasher.clone().finalize()), tokens(bytes)));
        }
        let total = tokens(bytes);
        let breakpoints: Vec<usize> = (0..blocks.len())
            .filter(|&i| blocks[i].1 && prefix[i].1 >= MIN_CACHEABLE_TOKENS)
            .collect();
        let Some(&last) = breakpoints.last() else {
            return (0, 0, total);
        };
        let read = breakpoints
            .iter()
            .flat_map(|&b| b.saturating_sub(LOOKBACK_BLOCKS)..=b)
            .filter_map(|j| self.prefixes.get(&prefix[j].0).copied())
            .max()
            .unwrap_or(0);
        let cached_through = prefix[last].1;
        let write = cached_through.saturating_sub(read);
        for &b in &breakpoints {
            self.prefixes.insert(prefix[b].0, prefix[b].1);
        }
        (read, write, total - read.max(cached_through))
    }
}

#[derive(Clone)]
struct Fake {
    cache: Arc<Mutex<Cache>>,
}

/// What the scripted model does on `turn` (1-based): tool calls, or the end.
fn plan(turn: usize) -> Vec<(&'static str, Value)> {
    const FILES: [&str; 8] = [
        "src/engine/handler.rs",
        "src/store/mod.rs",
        "src/github/client.rs",
        "src/config.rs",
        "tests/engine.rs",
        "src/engine/event_loop.rs",
        "src/server/webhook.rs",
        "README.md",
    ];
    if turn >= TURNS {
        return vec![];
    }
    let file = FILES[turn % FILES.len()];
    match turn % 6 {
        1 => vec![("read_file", json!({"path": file}))],
        2 => vec![("grep", json!({"pattern": "fn handle_", "path": "src"}))],
        3 => vec![
            ("read_file", json!({"path": file})),
            (
                "read_file",
                json!({"path": FILES[(turn + 3) % FILES.len()]}),
            ),
        ],
        4 => vec![(
            "edit_file",
            json!({"path": file, "old": "let retries = 3;", "new": "let retries = config.retries;"}),
        )],
        5 => vec![(
            "bash",
            json!({"command": "cargo test --quiet 2>&1 | tail -40"}),
        )],
        _ => vec![(
            "bash",
            json!({"command": "git diff --stat && cargo clippy --quiet"}),
        )],
    }
}

fn answer(turn: usize) -> Value {
    let calls = plan(turn);
    let mut content = vec![json!({
        "type": "text",
        "text": format!("Turn {turn}: checking what the handler does next, then the tests."),
    })];
    for (i, (name, input)) in calls.iter().enumerate() {
        content.push(json!({
            "type": "tool_use",
            "id": format!("toolu_{turn:02}{i}"),
            "name": name,
            "input": input,
        }));
    }
    if calls.is_empty() {
        content[0]["text"] = json!(
            "Done: the retry count now comes from the config, with a test for each path; \
             `cargo test` and `cargo clippy` pass. Opening the pull request."
        );
    }
    json!({
        "id": format!("msg_bench_{turn:02}"),
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": if calls.is_empty() { "end_turn" } else { "tool_use" },
        "stop_sequence": null,
    })
}

async fn messages(State(fake): State<Fake>, body: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body: Value = serde_json::from_str(&body).expect("JSON body");
    let breakpoints = blocks(&body).iter().filter(|(_, cached)| *cached).count();
    if breakpoints > 4 {
        // What the API answers to a fifth breakpoint.
        let error = json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": format!("A maximum of 4 blocks with cache_control may be provided. Found {breakpoints}.")}});
        return (axum::http::StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    }
    let turn = body["messages"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["role"] == "assistant").count())
        .unwrap_or(0)
        + 1;
    let (read, write, input) = fake.cache.lock().unwrap().usage(&body);
    let mut answer = answer(turn);
    let output = tokens(answer["content"].to_string().len());
    answer["usage"] = json!({
        "input_tokens": input,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "output_tokens": output,
    });
    axum::Json(answer).into_response()
}

/// Deterministic "file contents" and command output of about `size` bytes.
fn tool_output(name: &str, input: &Value, seed: usize) -> String {
    let sizes = [
        2400, 900, 3800, 600, 1500, 3100, 350, 2000, 1200, 4200, 800, 2700,
    ];
    let size = sizes[seed % sizes.len()];
    let mut state = seed as u64 * 6364136223846793005 + 1442695040888963407;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    const WORDS: [&str; 16] = [
        "let",
        "delivery",
        "retries",
        "self.store",
        "await?",
        "match",
        "event",
        "Ok(())",
        "config",
        "handler",
        "tracing::info!",
        "installation",
        "repo",
        "Err(e)",
        "queue",
        "payload",
    ];
    let mut out = match name {
        "bash" => format!("$ {}\n", input["command"].as_str().unwrap_or_default()),
        "edit_file" => format!("edited {}\n", input["path"].as_str().unwrap_or_default()),
        _ => String::new(),
    };
    let mut line_no = 1;
    while out.len() < size {
        let indent = "    ".repeat(next() % 4);
        let words: Vec<&str> = (0..3 + next() % 8)
            .map(|_| WORDS[next() % WORDS.len()])
            .collect();
        out.push_str(&format!("{line_no:>4}: {indent}{};\n", words.join(" ")));
        line_no += 1;
    }
    out
}

fn system_prompt() -> String {
    let mut s = String::from(
        "You are the worker of a mission: you change a repository to resolve one GitHub issue, \
         then open a pull request. Work in small steps: read before you edit, run the tests \
         after each change, and keep the diff to what the issue asks.\n\n",
    );
    for (i, rule) in [
        "Never commit secrets, tokens or keys; never print environment variables.",
        "Prefer editing existing code to adding new files; follow the repository's style.",
        "Run `cargo test` and `cargo clippy` before you finish; fix what they report.",
        "When a tool fails, read its output and change your approach; do not repeat it blindly.",
        "Explain in the pull request body what changed and why, and how it was tested.",
        "Stay inside the repository; the network is not available to your commands.",
        "If the issue is ambiguous, choose the reading that changes least, and say so.",
        "Finish with a short summary of the change and anything left for a reviewer.",
    ]
    .iter()
    .enumerate()
    {
        s.push_str(&format!("{}. {rule}\n", i + 1));
    }
    s.push_str("\nRepository layout:\n");
    for dir in [
        "src/engine: the event loop and the handlers of each webhook event",
        "src/github: the App's authentication, API client and retries",
        "src/store: SQLite persistence of deliveries, missions and budgets",
        "src/server: the HTTP endpoints that receive webhooks",
        "src/llm: model providers, prices and usage",
        "tests: integration tests against a simulated GitHub",
    ] {
        s.push_str(&format!("- {dir}\n"));
    }
    s.repeat(3)
}

fn tools() -> Vec<ToolDef> {
    let tool = |name: &str, description: &str, properties: Value, required: &[&str]| ToolDef {
        name: name.into(),
        description: description.into(),
        input_schema: json!({"type": "object", "properties": properties, "required": required}),
    };
    vec![
        tool(
            "read_file",
            "Read a file of the repository, with line numbers. Large files are cut; use offset and limit to page.",
            json!({"path": {"type": "string", "description": "Path from the repository root"},
                   "offset": {"type": "integer"}, "limit": {"type": "integer"}}),
            &["path"],
        ),
        tool(
            "write_file",
            "Create or overwrite a file with the given content.",
            json!({"path": {"type": "string"}, "content": {"type": "string"}}),
            &["path", "content"],
        ),
        tool(
            "edit_file",
            "Replace one exact occurrence of `old` with `new` in a file; fails if `old` is missing or not unique.",
            json!({"path": {"type": "string"}, "old": {"type": "string"}, "new": {"type": "string"}}),
            &["path", "old", "new"],
        ),
        tool(
            "grep",
            "Search the repository for a regular expression; prints matching lines with paths and line numbers.",
            json!({"pattern": {"type": "string"}, "path": {"type": "string"}}),
            &["pattern"],
        ),
        tool(
            "bash",
            "Run a shell command in the repository with a time limit; prints its exit status, stdout and stderr.",
            json!({"command": {"type": "string"}, "timeout_secs": {"type": "integer"}}),
            &["command"],
        ),
        tool(
            "finish",
            "End the mission with a summary and the pull request title and body.",
            json!({"summary": {"type": "string"}, "title": {"type": "string"}, "body": {"type": "string"}}),
            &["summary", "title", "body"],
        ),
    ]
}

fn task() -> String {
    "Issue #42: webhook deliveries are retried a fixed 3 times\n\n\
     The handler retries a failed delivery exactly three times, whatever the repository's \
     `.github/missions.yml` says. Make the retry count come from the configuration \
     (`delivery.retries`, default 3), document it in the README, and add tests for 0, 1 and \
     the default. Steps to reproduce: set `delivery.retries: 5`, make the target return 500, \
     and count the attempts in the log: there are 3."
        .repeat(2)
}

struct Row {
    turn: usize,
    usage: Usage,
    cost: u64,
}

async fn run(prices: Prices) -> Vec<Row> {
    let fake = Fake {
        cache: Arc::new(Mutex::new(Cache::default())),
    };
    let app = Router::new()
        .route("/v1/messages", post(messages))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let anthropic = Anthropic::new(SecretString::from("sk-ant-bench"), Some(&url));
    let mut request = ChatRequest {
        model: MODEL.into(),
        system: system_prompt(),
        tools: tools(),
        messages: vec![Message::user_text(task())],
        max_tokens: 8192,
    };
    let mut rows = Vec::new();
    let mut seed = 0;
    for turn in 1..=TURNS {
        let response = anthropic.chat(&request).await.expect("the fake answers");
        rows.push(Row {
            turn,
            usage: response.usage,
            cost: prices.cost(&response.usage),
        });
        request.messages.push(response.message());
        if response.stop_reason != StopReason::ToolUse {
            break;
        }
        let results = response
            .content
            .iter()
            .filter_map(|block| match block {
                ContentBlock::ToolUse { id, name, input } => {
                    seed += 1;
                    Some(ContentBlock::ToolResult {
                        tool_use_id: id.clone(),
                        content: tool_output(name, input, seed),
                        is_error: false,
                    })
                }
                _ => None,
            })
            .collect();
        request.messages.push(Message {
            role: Role::User,
            content: results,
        });
    }
    rows
}

fn main() {
    let prices = pricing::default_prices(MODEL).expect("built-in prices for claude-sonnet-4-5");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let rows = runtime.block_on(run(prices));
    let elapsed = started.elapsed();

    println!(
        "cache_share: {} turns of a scripted worker loop through the Anthropic adapter, \
         fake Messages API (tokens = bytes/4, 1024-token minimum, 20-block lookback), \
         {MODEL} prices",
        rows.len()
    );
    println!(
        "{:>4} {:>9} {:>10} {:>11} {:>9} {:>7} {:>7} {:>10}",
        "turn", "input", "cache_read", "cache_write", "uncached", "output", "share", "cost"
    );
    let mut total = Usage::default();
    for row in &rows {
        let u = &row.usage;
        total.add(u);
        println!(
            "{:>4} {:>9} {:>10} {:>11} {:>9} {:>7} {:>6.1}% {:>10}",
            row.turn,
            u.total_input(),
            u.cache_read_tokens,
            u.cache_write_tokens,
            u.input_tokens,
            u.output_tokens,
            100.0 * u.cache_share(),
            format!("${:.4}", row.cost as f64 / 1e6),
        );
    }
    let cost = prices.cost(&total);
    let uncached = prices.cost(&Usage {
        input_tokens: total.total_input(),
        output_tokens: total.output_tokens,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
    });
    println!(
        "total {:>8} {:>10} {:>11} {:>9} {:>7} {:>6.1}% {:>10}",
        total.total_input(),
        total.cache_read_tokens,
        total.cache_write_tokens,
        total.input_tokens,
        total.output_tokens,
        100.0 * total.cache_share(),
        format!("${:.4}", cost as f64 / 1e6),
    );
    println!();
    println!(
        "cache-read share of input tokens: {:.1}% (target >= 85%)",
        100.0 * total.cache_share()
    );
    println!(
        "cost: {} ({cost} micro-dollars); without caching {} ({uncached} micro-dollars), {:.0}% less",
        pricing::dollars(cost),
        pricing::dollars(uncached),
        100.0 * (1.0 - cost as f64 / uncached as f64),
    );
    println!("wall time: {elapsed:.2?} for {} requests", rows.len());
}
