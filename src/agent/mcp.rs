//! `finish` for third-party agents, through MCP.
//!
//! An ACP agent (Claude Code, Codex, …) reaches tools through MCP servers it
//! starts itself. The harness gives it one, `missions mcp-finish`: a stdio MCP
//! server offering a single tool, `finish`, with the role's schema. The stdio
//! server holds no rules of its own: each call goes over loopback HTTP to the
//! [`FinishEndpoint`] in the job, which checks it with the role's
//! [`FinishSpec`] (schema and checks, as in the built-in loop) and answers
//! with the violations or the acceptance. The endpoint's URL carries a
//! per-job random path; it is no credential (it can only hand the job a
//! result, which the agent may do anyway).

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::run::{FINISH_TOOL, FinishSpec};

/// The MCP protocol revision answered when the client asks for one this
/// server does not know.
const MCP_PROTOCOL_VERSION: &str = "2025-06-18";
const MCP_PROTOCOL_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// What the agent is told once its result is taken.
pub const ACCEPTED: &str = "Accepted: your result is recorded and your work in this job is done. End your turn now; do not call any more tools.";

#[derive(Default)]
struct EndpointState {
    accepted: Option<Value>,
    /// Calls answered with violations.
    rejected: u32,
    last_violations: Vec<String>,
}

struct Shared {
    spec: FinishSpec,
    secret_path: String,
    state: Mutex<EndpointState>,
    signal: tokio::sync::watch::Sender<bool>,
}

/// The job side of `finish`: a loopback HTTP endpoint that checks results.
pub struct FinishEndpoint {
    server: super::loopback::Loopback,
    shared: Arc<Shared>,
}

impl FinishEndpoint {
    pub async fn start(spec: FinishSpec) -> std::io::Result<FinishEndpoint> {
        let (signal, _) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            spec,
            secret_path: uuid::Uuid::new_v4().simple().to_string(),
            state: Mutex::new(EndpointState::default()),
            signal,
        });
        let app = Router::new()
            .route("/finish/{key}", get(describe).post(call))
            .with_state(shared.clone());
        Ok(FinishEndpoint {
            server: super::loopback::serve(app).await?,
            shared,
        })
    }

    /// The URL `missions mcp-finish --url` is given.
    pub fn url(&self) -> String {
        format!(
            "http://{}/finish/{}",
            self.server.addr, self.shared.secret_path
        )
    }

    /// The accepted result, once there is one.
    pub fn accepted(&self) -> Option<Value> {
        self.shared
            .state
            .lock()
            .expect("finish state")
            .accepted
            .clone()
    }

    /// Calls answered with violations so far, and the last ones' text.
    pub fn rejected(&self) -> (u32, Vec<String>) {
        let s = self.shared.state.lock().expect("finish state");
        (s.rejected, s.last_violations.clone())
    }

    /// Becomes `true` when a result is accepted.
    pub fn signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shared.signal.subscribe()
    }
}

async fn describe(State(shared): State<Arc<Shared>>, Path(key): Path<String>) -> Json<Value> {
    if key != shared.secret_path {
        return Json(json!({"error": "unknown endpoint"}));
    }
    let def = shared.spec.def();
    Json(json!({
        "name": def.name,
        "description": def.description,
        "inputSchema": def.input_schema,
    }))
}

/// `{"accepted": bool, "text": "..."}`: the text goes back to the agent.
async fn call(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
    Json(arguments): Json<Value>,
) -> Json<Value> {
    if key != shared.secret_path {
        return Json(json!({"accepted": false, "text": "unknown endpoint"}));
    }
    let mut state = shared.state.lock().expect("finish state");
    if state.accepted.is_some() {
        return Json(json!({"accepted": true, "text": ACCEPTED}));
    }
    let violations = shared.spec.violations(&arguments);
    if violations.is_empty() {
        state.accepted = Some(arguments);
        drop(state);
        let _ = shared.signal.send(true);
        return Json(json!({"accepted": true, "text": ACCEPTED}));
    }
    let lines: Vec<String> = violations.iter().map(|v| v.to_string()).collect();
    state.rejected += 1;
    state.last_violations = lines.clone();
    Json(json!({
        "accepted": false,
        "text": format!(
            "Not accepted; nothing was recorded. Fix these and call `{FINISH_TOOL}` again with the whole result:\n- {}",
            lines.join("\n- ")
        ),
    }))
}

/// `missions mcp-finish --url URL`: the stdio MCP server an agent starts.
/// Reads JSON-RPC messages, one per line, from stdin until it closes.
pub async fn serve_stdio(url: &str) -> anyhow::Result<()> {
    crate::llm::http::install_crypto_provider();
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(120))
        .build()?;
    let tool: Value = client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            let reply = json!({"jsonrpc": "2.0", "id": null,
                "error": {"code": -32700, "message": "parse error: not JSON"}});
            write_line(&mut stdout, &reply).await?;
            continue;
        };
        let Some(id) = message.get("id").cloned() else {
            continue; // a notification (`notifications/initialized`, …)
        };
        let method = message.get("method").and_then(Value::as_str).unwrap_or("");
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        let result = match method {
            "initialize" => {
                let asked = params.get("protocolVersion").and_then(Value::as_str);
                let version = asked
                    .filter(|v| MCP_PROTOCOL_VERSIONS.contains(v))
                    .unwrap_or(MCP_PROTOCOL_VERSION);
                Ok(json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": "missions", "version": env!("CARGO_PKG_VERSION")},
                    "instructions": "Call `finish` once, with your result, to end your work.",
                }))
            }
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({"tools": [tool]})),
            "tools/call" => {
                let name = params.get("name").and_then(Value::as_str).unwrap_or("");
                if name != FINISH_TOOL {
                    Err((
                        -32602,
                        format!("unknown tool `{name}`; this server has `finish` only"),
                    ))
                } else {
                    let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
                    match client.post(url).json(&arguments).send().await {
                        Ok(r) => match r.json::<Value>().await {
                            Ok(answer) => {
                                let accepted = answer["accepted"].as_bool().unwrap_or(false);
                                let text = answer["text"].as_str().unwrap_or("").to_owned();
                                Ok(json!({
                                    "content": [{"type": "text", "text": text}],
                                    "isError": !accepted,
                                }))
                            }
                            Err(e) => {
                                Err((-32603, format!("the job's answer was unreadable: {e}")))
                            }
                        },
                        Err(e) => Err((
                            -32603,
                            format!("the job did not answer: {}", e.without_url()),
                        )),
                    }
                }
            }
            "resources/list" => Ok(json!({"resources": []})),
            "prompts/list" => Ok(json!({"prompts": []})),
            other => Err((-32601, format!("method not found: {other}"))),
        };
        let reply = match result {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err((code, message)) => {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            }
        };
        write_line(&mut stdout, &reply).await?;
    }
    Ok(())
}

async fn write_line(out: &mut tokio::io::Stdout, value: &Value) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(value).expect("JSON serializes");
    bytes.push(b'\n');
    out.write_all(&bytes).await?;
    out.flush().await
}
