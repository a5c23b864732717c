//! The job harness as an ACP (Agent Client Protocol) client: an off-the-shelf
//! coding agent (Claude Code through `claude-agent-acp`, Codex through
//! `codex-acp`, …) runs as a subprocess speaking JSON-RPC on its stdin and
//! stdout, and this module drives it: `initialize`, `session/new` in the
//! checkout with the harness's MCP servers, `session/prompt` until the role's
//! `finish` is accepted (through the MCP server, out of this module's sight)
//! or the prompts run out, answering `session/request_permission` by a
//! [`PermissionPolicy`] and recording every `session/update`.
//!
//! The agent gets no file system or terminal capability from us: it uses its
//! own tools, and the permission answers are the one lever this side has over
//! them. Adapters do not ask for everything (Claude Code runs commands it
//! considers read-only, and reads files, without asking), so the policy is a
//! guard rail, not the containment: that is the job's sandbox.
//!
//! The process gets only the environment it is given, runs in its own process
//! group, and the whole group is killed when the run ends, however it ends.
//! Every wait is bounded by the run's wall time.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Component, Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::schema::{
    ClientCapabilities, EnvVariable, Implementation, InitializeRequest, McpServer, McpServerStdio,
    NewSessionRequest, PermissionOptionKind, RequestPermissionOutcome, RequestPermissionResponse,
    SelectedPermissionOutcome,
};
use agent_client_protocol::{Agent, Client, UntypedMessage};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::tools::CommandRecord;

/// How long the agent gets to end its prompt turn after `session/cancel`.
pub const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// How much of the agent's stderr is kept for errors.
const STDERR_TAIL_BYTES: usize = 4096;

/// How to start the agent process: env is cleared and only `env` is set.
#[derive(Debug, Clone)]
pub struct AcpCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// An MCP server the agent should start (stdio), passed in session/new.
#[derive(Debug, Clone)]
pub struct McpStdio {
    pub name: String,
    pub command: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// How permission requests are answered.
#[derive(Debug, Clone, Default)]
pub struct PermissionPolicy {
    /// Reviewers: edits, deletes, moves, command execution and fetches are refused.
    pub read_only: bool,
    /// Paths relative to the checkout (e.g. ".missions/", ".github/workflows/") nobody may write:
    /// a tool call of kind edit/delete/move with a location under one of them is refused.
    pub protected: Vec<String>,
}

/// One run of an ACP agent.
#[derive(Debug, Clone)]
pub struct AcpRun {
    pub command: AcpCommand,
    /// The checkout; session/new's cwd.
    pub cwd: PathBuf,
    pub mcp_servers: Vec<McpStdio>,
    /// The first session/prompt text (role prompt + mission state).
    pub prompt: String,
    pub policy: PermissionPolicy,
    /// First prompt + re-prompts when the agent ends its turn without finishing.
    pub max_prompts: u32,
    /// The whole run; on expiry: session/cancel, [`CANCEL_GRACE`], kill.
    pub wall_time: Duration,
    /// The text of the re-prompt.
    pub reprompt: String,
    /// Optional `_meta` for session/new (adapter-specific); only an object is sent.
    pub meta: Option<Value>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcpEnded {
    /// `finished` reported true, or the finish signal fired.
    Finished,
    /// Every prompt ended without a finish.
    NoFinish {
        prompts: u32,
    },
    TimedOut {
        secs: u64,
    },
    /// The process exited, the protocol broke, or initialize or session/new
    /// was refused; what happened, then the tail of the agent's stderr.
    AgentFailed(String),
}

impl AcpEnded {
    /// A short name for logs and statuses.
    pub fn kind(&self) -> &'static str {
        match self {
            AcpEnded::Finished => "finished",
            AcpEnded::NoFinish { .. } => "no_finish",
            AcpEnded::TimedOut { .. } => "timed_out",
            AcpEnded::AgentFailed(_) => "agent_failed",
        }
    }
}

/// The result and what it took.
#[derive(Debug, Clone)]
pub struct AcpOutcome {
    pub ended: AcpEnded,
    /// session/prompt requests sent.
    pub prompts: u32,
    /// Distinct tool calls the agent reported.
    pub tool_calls: u32,
    pub refused_permissions: u32,
    /// Commands the agent ran (tool calls of kind `execute`), in the order
    /// they started, with exit codes. A command whose permission was refused
    /// never ran and is not listed; one still running when the run ended has
    /// no exit code.
    pub commands: Vec<CommandRecord>,
    /// Every session/update notification's params (`sessionId`, `update`)
    /// as JSON, in order: the job's transcript.
    pub transcript: Vec<Value>,
    /// `name version` from initialize's `agentInfo`.
    pub agent_info: Option<String>,
}

/// `finished` is polled after each prompt turn ends; `finish_signal` fires
/// when the harness accepted a `finish` call (through the MCP server, out of
/// this module's sight): on it, send session/cancel, wait up to
/// [`CANCEL_GRACE`] for the prompt to return, then stop the agent.
///
/// An accepted finish wins over every other ending: when `finished()` is true
/// at the end, the run is [`AcpEnded::Finished`] whatever else happened.
pub async fn run_acp(
    run: AcpRun,
    finished: impl Fn() -> bool,
    finish_signal: watch::Receiver<bool>,
) -> AcpOutcome {
    let deadline = Instant::now() + run.wall_time;
    let cwd = std::path::absolute(&run.cwd).unwrap_or_else(|_| run.cwd.clone());
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let mut agent_info = None;
    let mut prompts = 0;
    let ended = match Session::start(&run, &cwd, tracker.clone(), finish_signal, deadline) {
        Err(e) => AcpEnded::AgentFailed(format!(
            "could not start {}: {e}",
            run.command.program.display()
        )),
        Ok(mut session) => {
            let ended = session
                .drive(&run, &cwd, &finished, &mut agent_info, &mut prompts)
                .await;
            session.stop().await;
            ended
        }
    };
    let ended = if finished() {
        AcpEnded::Finished
    } else {
        ended
    };
    let tracker = std::mem::take(&mut *lock(&tracker));
    let commands = tracker.commands(matches!(ended, AcpEnded::TimedOut { .. }));
    AcpOutcome {
        ended,
        prompts,
        tool_calls: tracker.calls.len() as u32,
        refused_permissions: tracker.refusals,
        commands,
        transcript: tracker.transcript,
        agent_info,
    }
}

fn lock(tracker: &Mutex<Tracker>) -> std::sync::MutexGuard<'_, Tracker> {
    tracker.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a bounded wait did not get its value.
enum Interrupt {
    Deadline,
    Finish,
    Exited(std::io::Result<ExitStatus>),
}

/// The running agent: its process, its stderr tail, the connection.
struct Session {
    child: Child,
    pgid: Option<i32>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
    stderr_task: tokio::task::JoinHandle<()>,
    connection: tokio::task::JoinHandle<agent_client_protocol::Result<()>>,
    cx: Option<oneshot::Receiver<agent_client_protocol::v1::ConnectionTo<Agent>>>,
    stop: Option<oneshot::Sender<()>>,
    finish_signal: watch::Receiver<bool>,
    deadline: Instant,
    exited: bool,
}

impl Session {
    fn start(
        run: &AcpRun,
        cwd: &Path,
        tracker: Arc<Mutex<Tracker>>,
        finish_signal: watch::Receiver<bool>,
        deadline: Instant,
    ) -> std::io::Result<Session> {
        let mut command = Command::new(&run.command.program);
        command
            .args(&run.command.args)
            .env_clear()
            .envs(run.command.env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        tracing::debug!(program = %run.command.program.display(), "starting ACP agent");
        let mut child = command.spawn()?;
        let pgid = child.id().map(|id| id as i32);
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");

        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_task = tokio::spawn({
            let stderr = stderr.clone();
            async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr_pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut tail = stderr.lock().unwrap_or_else(|e| e.into_inner());
                    tail.extend(&buf[..n]);
                    let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
                    tail.drain(..excess);
                }
            }
        });

        // Newline-delimited JSON-RPC over the pipes.
        let incoming =
            futures::stream::unfold(Some(BufReader::new(stdout).lines()), |lines| async move {
                let mut lines = lines?;
                match lines.next_line().await {
                    Ok(Some(line)) => Some((Ok(line), Some(lines))),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), None)),
                }
            });
        let outgoing = futures::sink::unfold(stdin, |mut stdin, line: String| async move {
            stdin.write_all(line.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await?;
            Ok::<_, std::io::Error>(stdin)
        });
        let transport = agent_client_protocol::Lines::new(Box::pin(outgoing), Box::pin(incoming));

        let policy = run.policy.clone();
        let cwd = cwd.to_path_buf();
        let (cx_tx, cx_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let updates = tracker.clone();
        let connection = Client
            .v1()
            .name("missions")
            .on_receive_notification(
                async move |message: UntypedMessage, _cx| {
                    if message.method == "session/update" {
                        lock(&updates).update(message.params);
                    }
                    Ok(())
                },
                agent_client_protocol::on_receive_notification!(),
            )
            .on_receive_request(
                async move |message: UntypedMessage,
                            responder: agent_client_protocol::v1::Responder<Value>,
                            _cx| {
                    if message.method != "session/request_permission" {
                        // No fs or terminal capability was offered.
                        return responder
                            .respond_with_error(agent_client_protocol::Error::method_not_found());
                    }
                    let answer = lock(&tracker).permission(&policy, &cwd, &message.params);
                    responder.respond(answer)
                },
                agent_client_protocol::on_receive_request!(),
            )
            .connect_with(transport, async move |cx| {
                let _ = cx_tx.send(cx);
                let _ = stop_rx.await;
                Ok(())
            });
        let connection = tokio::spawn(connection);
        Ok(Session {
            child,
            pgid,
            stderr,
            stderr_task,
            connection,
            cx: Some(cx_rx),
            stop: Some(stop_tx),
            finish_signal,
            deadline,
            exited: false,
        })
    }

    /// Waits for `future` unless the deadline passes, the finish signal fires
    /// (when `on_finish`), or the agent exits.
    async fn bounded<T>(
        &mut self,
        future: impl Future<Output = T>,
        on_finish: bool,
    ) -> Result<T, Interrupt> {
        let finish_signal = &mut self.finish_signal;
        let finish = async {
            if !on_finish || finish_signal.wait_for(|v| *v).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let child = &mut self.child;
        let exited = self.exited;
        let exit = async {
            if exited {
                std::future::pending::<()>().await;
            }
            child.wait().await
        };
        tokio::select! {
            biased;
            value = future => Ok(value),
            () = finish => Err(Interrupt::Finish),
            status = exit => {
                self.exited = true;
                Err(Interrupt::Exited(status))
            }
            () = tokio::time::sleep_until(self.deadline) => Err(Interrupt::Deadline),
        }
    }

    async fn drive(
        &mut self,
        run: &AcpRun,
        cwd: &Path,
        finished: &impl Fn() -> bool,
        agent_info: &mut Option<String>,
        prompts: &mut u32,
    ) -> AcpEnded {
        let secs = run.wall_time.as_secs();
        let cx_rx = self.cx.take().expect("drive runs once");
        let cx = match self.bounded(cx_rx, false).await {
            Ok(Ok(cx)) => cx,
            Ok(Err(_)) => return self.failed("the connection ended before it started").await,
            Err(i) => return self.interrupted(i, "starting", secs).await,
        };

        let initialize = InitializeRequest::new(ProtocolVersion::V1)
            .client_capabilities(ClientCapabilities::default())
            .client_info(Implementation::new("missions", env!("CARGO_PKG_VERSION")));
        let init = match self
            .bounded(cx.send_request(initialize).block_task(), false)
            .await
        {
            Ok(Ok(init)) => init,
            Ok(Err(e)) => return self.failed(&format!("initialize failed: {e}")).await,
            Err(i) => return self.interrupted(i, "initialize", secs).await,
        };
        *agent_info = init
            .agent_info
            .as_ref()
            .map(|i| format!("{} {}", i.name, i.version));
        if init.protocol_version != ProtocolVersion::V1 {
            return self
                .failed(&format!(
                    "the agent speaks ACP version {}, not 1",
                    init.protocol_version
                ))
                .await;
        }

        let mut new_session = NewSessionRequest::new(cwd).mcp_servers(
            run.mcp_servers
                .iter()
                .map(|s| {
                    McpServer::Stdio(
                        McpServerStdio::new(s.name.clone(), s.command.clone())
                            .args(s.args.clone())
                            .env(
                                s.env
                                    .iter()
                                    .map(|(k, v)| EnvVariable::new(k.clone(), v.clone()))
                                    .collect(),
                            ),
                    )
                })
                .collect(),
        );
        match &run.meta {
            Some(Value::Object(meta)) => new_session = new_session.meta(meta.clone()),
            Some(_) => tracing::warn!("ACP session meta is not an object; not sent"),
            None => {}
        }
        let session_id = match self
            .bounded(cx.send_request(new_session).block_task(), true)
            .await
        {
            Ok(Ok(session)) => session.session_id,
            Ok(Err(e)) => return self.failed(&format!("session/new failed: {e}")).await,
            Err(Interrupt::Finish) => return AcpEnded::Finished,
            Err(i) => return self.interrupted(i, "session/new", secs).await,
        };

        while *prompts < run.max_prompts.max(1) {
            if *self.finish_signal.borrow() {
                return AcpEnded::Finished;
            }
            let text = if *prompts == 0 {
                &run.prompt
            } else {
                &run.reprompt
            };
            let request = match UntypedMessage::new(
                "session/prompt",
                json!({
                    "sessionId": session_id,
                    "prompt": [{"type": "text", "text": text}],
                }),
            ) {
                Ok(request) => request,
                Err(e) => return self.failed(&format!("session/prompt: {e}")).await,
            };
            *prompts += 1;
            let turn = cx.send_request(request).block_task();
            tokio::pin!(turn);
            match self.bounded(&mut turn, true).await {
                Ok(Ok(response)) => {
                    let stop = response
                        .get("stopReason")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown");
                    tracing::debug!(prompt = *prompts, stop, "ACP prompt turn ended");
                    if finished() {
                        return AcpEnded::Finished;
                    }
                }
                Ok(Err(e)) => {
                    if finished() {
                        return AcpEnded::Finished;
                    }
                    return self.failed(&format!("session/prompt failed: {e}")).await;
                }
                Err(interrupt @ (Interrupt::Finish | Interrupt::Deadline)) => {
                    let cancel = agent_client_protocol::v1::schema::CancelNotification::new(
                        session_id.clone(),
                    );
                    if let Err(e) = cx.send_notification(cancel) {
                        tracing::debug!("session/cancel not sent: {e}");
                    }
                    // The grace is its own bound: the deadline may have passed.
                    let _ = tokio::time::timeout(CANCEL_GRACE, &mut turn).await;
                    return match interrupt {
                        Interrupt::Finish => AcpEnded::Finished,
                        _ => AcpEnded::TimedOut { secs },
                    };
                }
                Err(i @ Interrupt::Exited(_)) => {
                    return self.interrupted(i, "session/prompt", secs).await;
                }
            }
        }
        AcpEnded::NoFinish { prompts: *prompts }
    }

    async fn interrupted(&mut self, interrupt: Interrupt, during: &str, secs: u64) -> AcpEnded {
        match interrupt {
            Interrupt::Deadline => AcpEnded::TimedOut { secs },
            Interrupt::Finish => AcpEnded::Finished,
            Interrupt::Exited(status) => {
                let status = match status {
                    Ok(status) => status.to_string(),
                    Err(e) => format!("unknown status ({e})"),
                };
                self.failed(&format!("the agent exited during {during}: {status}"))
                    .await
            }
        }
    }

    /// `what`, then the stderr tail (once the pipe is drained, if the process is gone).
    async fn failed(&mut self, what: &str) -> AcpEnded {
        if self.exited || matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.stderr_task).await;
        }
        let tail = {
            let tail = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
            String::from_utf8_lossy(&tail.iter().copied().collect::<Vec<u8>>()).into_owned()
        };
        let tail = tail.trim();
        if tail.is_empty() {
            AcpEnded::AgentFailed(format!("{what} (stderr empty)"))
        } else {
            AcpEnded::AgentFailed(format!("{what}\nstderr (tail):\n{tail}"))
        }
    }

    /// Ends the connection and kills the process group.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(pgid) = self.pgid {
            // SAFETY: killpg has no memory-safety preconditions; the group is
            // the agent's own (process_group(0) made it its leader).
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.connection).await;
        self.connection.abort();
        self.stderr_task.abort();
    }
}

/// What the updates said about one tool call.
#[derive(Debug, Default)]
struct CallState {
    kind: Option<String>,
    raw_input: Option<Value>,
    started: Option<Instant>,
    /// Set by the final update (status completed or failed).
    exit_code: Option<i32>,
    done: bool,
    duration_ms: u64,
}

/// The run's record, fed by the connection's handlers.
#[derive(Debug, Default)]
struct Tracker {
    transcript: Vec<Value>,
    /// Tool call ids in the order they were first seen.
    order: Vec<String>,
    calls: HashMap<String, CallState>,
    /// Tool calls refused at least once.
    refused: HashSet<String>,
    refusals: u32,
}

impl Tracker {
    fn update(&mut self, params: Value) {
        if let Some(update) = params.get("update") {
            let kind = update.get("sessionUpdate").and_then(Value::as_str);
            if matches!(kind, Some("tool_call" | "tool_call_update"))
                && let Some(id) = update.get("toolCallId").and_then(Value::as_str)
            {
                let call = self.call(id);
                if let Some(kind) = update.get("kind").and_then(Value::as_str) {
                    call.kind = Some(kind.to_string());
                }
                if let Some(input) = update.get("rawInput")
                    && !is_empty(input)
                {
                    call.raw_input = Some(input.clone());
                }
                if !call.done
                    && let Some(code) = final_exit_code(update)
                {
                    call.exit_code = Some(code);
                    call.done = true;
                    call.duration_ms = reported_duration_ms(update).unwrap_or_else(|| {
                        call.started
                            .map(|s| s.elapsed().as_millis() as u64)
                            .unwrap_or(0)
                    });
                }
            }
        }
        self.transcript.push(params);
    }

    fn call(&mut self, id: &str) -> &mut CallState {
        if !self.calls.contains_key(id) {
            self.order.push(id.to_string());
        }
        self.calls
            .entry(id.to_string())
            .or_insert_with(|| CallState {
                started: Some(Instant::now()),
                ..CallState::default()
            })
    }

    /// The answer to a session/request_permission, as its JSON result.
    fn permission(&mut self, policy: &PermissionPolicy, cwd: &Path, params: &Value) -> Value {
        let tool_call = params.get("toolCall").cloned().unwrap_or(Value::Null);
        let id = tool_call.get("toolCallId").and_then(Value::as_str);
        let known_kind = id
            .and_then(|id| self.calls.get(id))
            .and_then(|c| c.kind.clone());
        let decision = decide(policy, cwd, &tool_call, known_kind.as_deref());
        let options = params
            .get("options")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let (outcome, refused) = match &decision {
            Decision::Allow => (
                pick_option(
                    &options,
                    &[
                        PermissionOptionKind::AllowOnce,
                        PermissionOptionKind::AllowAlways,
                    ],
                ),
                false,
            ),
            Decision::Refuse(reason) => {
                tracing::info!(
                    tool_call = id.unwrap_or("?"),
                    reason,
                    "ACP permission refused"
                );
                (
                    pick_option(
                        &options,
                        &[
                            PermissionOptionKind::RejectOnce,
                            PermissionOptionKind::RejectAlways,
                        ],
                    ),
                    true,
                )
            }
        };
        if refused {
            self.refusals += 1;
            let key = id
                .map(str::to_string)
                .unwrap_or_else(|| format!("#{}", self.refused.len()));
            self.refused.insert(key);
        }
        serde_json::to_value(RequestPermissionResponse::new(outcome))
            .unwrap_or_else(|_| json!({"outcome": {"outcome": "cancelled"}}))
    }

    /// The execute tool calls that were not refused; `timed_out`: the run's
    /// wall time ended those still running.
    fn commands(&self, timed_out: bool) -> Vec<CommandRecord> {
        self.order
            .iter()
            .filter(|id| !self.refused.contains(*id))
            .filter_map(|id| {
                let call = &self.calls[id];
                // Codex reports a shell command that only reads (`cat`,
                // `rg`, `ls`) as kind read/search, still with its argv.
                let argv = call
                    .raw_input
                    .as_ref()
                    .is_some_and(|i| i.get("command").is_some_and(Value::is_array));
                if call.kind.as_deref() != Some("execute") && !argv {
                    return None;
                }
                let command = call.raw_input.as_ref().and_then(command_text)?;
                Some(CommandRecord {
                    command,
                    exit_code: if call.done { call.exit_code } else { None },
                    duration_ms: if call.done {
                        call.duration_ms
                    } else {
                        call.started
                            .map(|s| s.elapsed().as_millis() as u64)
                            .unwrap_or(0)
                    },
                    timed_out: timed_out && !call.done,
                })
            })
            .collect()
    }
}

/// The first option of the first kind in `kinds` the agent offered;
/// Cancelled when it offered none of them.
fn pick_option(options: &[Value], kinds: &[PermissionOptionKind]) -> RequestPermissionOutcome {
    kinds
        .iter()
        .find_map(|kind| {
            let kind = serde_json::to_value(kind).ok()?;
            options
                .iter()
                .find(|o| o.get("kind") == Some(&kind))
                .and_then(|o| o.get("optionId").and_then(Value::as_str))
        })
        .map(|id| {
            RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new(id.to_string()))
        })
        .unwrap_or(RequestPermissionOutcome::Cancelled)
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// A permission answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Allow,
    Refuse(String),
}

/// Decides a permission request by the tool call's kind (or `known_kind`,
/// from earlier updates, when the request has none) and the paths it names.
fn decide(
    policy: &PermissionPolicy,
    cwd: &Path,
    tool_call: &Value,
    known_kind: Option<&str>,
) -> Decision {
    let kind = tool_call
        .get("kind")
        .and_then(Value::as_str)
        .or(known_kind)
        .unwrap_or("other");
    match kind {
        "edit" | "delete" | "move" => {
            if policy.read_only {
                return Decision::Refuse(format!("{kind} in a read-only run"));
            }
            let paths = write_paths(tool_call);
            if paths.is_empty() && !policy.protected.is_empty() {
                return Decision::Refuse(format!("{kind} without a path to check"));
            }
            for path in paths {
                let Some(rel) = relative_to(cwd, Path::new(&path)) else {
                    return Decision::Refuse(format!("{path} is outside the checkout"));
                };
                if let Some(p) = policy.protected.iter().find(|p| is_under(&rel, p)) {
                    return Decision::Refuse(format!("{path} is under protected {p}"));
                }
            }
            Decision::Allow
        }
        "execute" | "fetch" if policy.read_only => {
            Decision::Refuse(format!("{kind} in a read-only run"))
        }
        _ => Decision::Allow,
    }
}

/// The paths a writing tool call names: its locations, and the path fields
/// of its raw input (also the keys of a `changes` map, as patch tools send).
fn write_paths(tool_call: &Value) -> Vec<String> {
    let mut paths = Vec::new();
    if let Some(locations) = tool_call.get("locations").and_then(Value::as_array) {
        paths.extend(
            locations
                .iter()
                .filter_map(|l| l.get("path").and_then(Value::as_str))
                .map(str::to_string),
        );
    }
    if let Some(input) = tool_call.get("rawInput").and_then(Value::as_object) {
        for key in [
            "file_path",
            "filePath",
            "path",
            "notebook_path",
            "source",
            "destination",
            "old_path",
            "new_path",
            "move_path",
        ] {
            if let Some(p) = input.get(key).and_then(Value::as_str) {
                paths.push(p.to_string());
            }
        }
        if let Some(changes) = input.get("changes").and_then(Value::as_object) {
            paths.extend(changes.keys().cloned());
            for change in changes.values() {
                if let Some(p) = change.get("move_path").and_then(Value::as_str) {
                    paths.push(p.to_string());
                }
            }
        }
    }
    paths.retain(|p| !p.is_empty());
    paths.dedup();
    paths
}

/// `path` relative to `cwd`, `..` resolved lexically and symlinks of the
/// part that exists followed; `None` when it is outside `cwd`.
fn relative_to(cwd: &Path, path: &Path) -> Option<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let joined = normalize(&joined)?;
    let cwd_real = std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_path_buf());
    let resolved = resolve_existing(&joined);
    if let Ok(rel) = resolved.strip_prefix(&cwd_real) {
        return Some(rel.to_path_buf());
    }
    let cwd_lexical = normalize(cwd)?;
    // A path that resolves outside through a symlink is outside.
    if resolved != joined {
        return None;
    }
    joined
        .strip_prefix(&cwd_lexical)
        .ok()
        .map(Path::to_path_buf)
}

/// Removes `.` and resolves `..` without touching the file system; `None`
/// when `..` climbs above the root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// Canonicalizes the longest existing ancestor and appends the rest.
fn resolve_existing(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut out = real;
            out.extend(rest.iter().rev());
            return out;
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Whether `rel` (relative to the checkout) is `prefix` or under it.
fn is_under(rel: &Path, prefix: &str) -> bool {
    let prefix = prefix.trim_start_matches("./").trim_end_matches('/');
    rel.starts_with(Path::new(prefix))
}

/// The command of an `execute` tool call's raw input: `command` (or `cmd`)
/// as a string, or an argv array shown the way a shell would take it.
fn command_text(raw_input: &Value) -> Option<String> {
    let command = raw_input.get("command").or_else(|| raw_input.get("cmd"))?;
    match command {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Array(parts) if !parts.is_empty() => {
            let parts: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
            (!parts.is_empty()).then(|| {
                parts
                    .iter()
                    .map(|p| shell_quote(p))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        }
        _ => None,
    }
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The exit code a final tool call update (status completed or failed)
/// reports: `rawOutput`'s `exit_code`/`exitCode`/`code`, else "Exit code N"
/// in its text or content, else 0 for completed and 1 for failed. `None`
/// when the update is not final.
fn final_exit_code(update: &Value) -> Option<i32> {
    let status = update.get("status").and_then(Value::as_str)?;
    if !matches!(status, "completed" | "failed") {
        return None;
    }
    let raw = update.get("rawOutput");
    let from_fields = raw.and_then(|raw| {
        ["exit_code", "exitCode", "code"]
            .iter()
            .find_map(|k| raw.get(*k).and_then(Value::as_i64))
    });
    let from_text = || {
        let mut texts: Vec<&str> = Vec::new();
        match raw {
            Some(Value::String(s)) => texts.push(s),
            Some(raw) => {
                for k in [
                    "output",
                    "formatted_output",
                    "aggregated_output",
                    "stdout",
                    "stderr",
                ] {
                    if let Some(s) = raw.get(k).and_then(Value::as_str) {
                        texts.push(s);
                    }
                }
            }
            None => {}
        }
        if let Some(content) = update.get("content").and_then(Value::as_array) {
            texts.extend(
                content
                    .iter()
                    .filter_map(|c| c.pointer("/content/text").and_then(Value::as_str)),
            );
        }
        texts.into_iter().find_map(parse_exit_code)
    };
    let code = from_fields
        .map(|c| c as i32)
        .or_else(from_text)
        .unwrap_or(if status == "completed" { 0 } else { 1 });
    Some(code)
}

/// `rawOutput.duration` as Codex reports it (`{"secs": …, "nanos": …}`).
fn reported_duration_ms(update: &Value) -> Option<u64> {
    let duration = update.pointer("/rawOutput/duration")?;
    let secs = duration.get("secs")?.as_u64()?;
    let nanos = duration.get("nanos").and_then(Value::as_u64).unwrap_or(0);
    Some(secs * 1000 + nanos / 1_000_000)
}

/// N from the first "Exit code N" in `text`.
fn parse_exit_code(text: &str) -> Option<i32> {
    let at = text.find("Exit code ")?;
    let rest = &text[at + "Exit code ".len()..];
    let end = rest
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || (*i == 0 && *c == '-')))
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(read_only: bool) -> PermissionPolicy {
        PermissionPolicy {
            read_only,
            protected: vec![".missions/".into(), ".github/workflows/".into()],
        }
    }

    const CWD: &str = "/nonexistent-checkout/ws";

    /// claude-agent-acp 0.23.1: the permission request for a `Write`.
    fn write_request(path: &str) -> Value {
        json!({
            "options": [
                {"kind": "allow_always", "name": "Always Allow", "optionId": "allow_always"},
                {"kind": "allow_once", "name": "Allow", "optionId": "allow"},
                {"kind": "reject_once", "name": "Reject", "optionId": "reject"}
            ],
            "sessionId": "6e376020-de4f-4868-9154-78501c5013ac",
            "toolCall": {
                "toolCallId": "toolu_0002",
                "rawInput": {"file_path": path, "content": "hi\n"},
                "title": "Write .missions/x.txt",
                "kind": "edit",
                "content": [{"type": "diff", "path": path, "oldText": null, "newText": "hi\n"}],
                "locations": [{"path": path}]
            }
        })
    }

    /// claude-agent-acp 0.23.1: the permission request for a `Bash`.
    fn bash_request() -> Value {
        json!({
            "options": [
                {"kind": "allow_always", "name": "Always Allow", "optionId": "allow_always"},
                {"kind": "allow_once", "name": "Allow", "optionId": "allow"},
                {"kind": "reject_once", "name": "Reject", "optionId": "reject"}
            ],
            "sessionId": "6e376020-de4f-4868-9154-78501c5013ac",
            "toolCall": {
                "toolCallId": "toolu_0001",
                "rawInput": {"command": "ls -la && exit 3", "description": "List files"},
                "title": "ls -la && exit 3",
                "kind": "execute",
                "content": [{"type": "content", "content": {"type": "text", "text": "List files"}}]
            }
        })
    }

    /// claude-agent-acp 0.23.1: MCP tools are `mcp__<server>__<tool>`, kind
    /// `other`, and ask for permission too.
    fn mcp_request() -> Value {
        json!({
            "options": [
                {"kind": "allow_always", "name": "Always Allow", "optionId": "allow_always"},
                {"kind": "allow_once", "name": "Allow", "optionId": "allow"},
                {"kind": "reject_once", "name": "Reject", "optionId": "reject"}
            ],
            "sessionId": "6e376020-de4f-4868-9154-78501c5013ac",
            "toolCall": {
                "toolCallId": "toolu_0004",
                "rawInput": {"summary": "done"},
                "title": "mcp__missions__finish",
                "kind": "other",
                "content": []
            }
        })
    }

    fn answer(tracker: &mut Tracker, policy: &PermissionPolicy, request: &Value) -> Value {
        tracker.permission(policy, Path::new(CWD), request)
    }

    fn selected(id: &str) -> Value {
        json!({"outcome": {"outcome": "selected", "optionId": id}})
    }

    #[test]
    fn writes_inside_the_checkout_are_allowed_once() {
        let mut t = Tracker::default();
        let r = answer(
            &mut t,
            &policy(false),
            &write_request(&format!("{CWD}/src/a.rs")),
        );
        assert_eq!(r, selected("allow"));
        let r = answer(&mut t, &policy(false), &write_request("src/./b.rs"));
        assert_eq!(r, selected("allow"));
        assert!(t.refused.is_empty());
    }

    #[test]
    fn protected_and_outside_writes_are_refused() {
        let mut t = Tracker::default();
        for path in [
            format!("{CWD}/.missions/x.txt"),
            format!("{CWD}/.missions"),
            format!("{CWD}/src/../.github/workflows/ci.yml"),
            ".missions/state.json".to_string(),
            format!("{CWD}/../other/file"),
            "/etc/passwd".to_string(),
            "../../x".to_string(),
        ] {
            let r = answer(&mut t, &policy(false), &write_request(&path));
            assert_eq!(r, selected("reject"), "{path}");
        }
        assert_eq!(t.refusals, 7);
        assert_eq!(
            t.refused.len(),
            1,
            "one tool call id, refused several times"
        );
        // Similar names are not under the prefix.
        let r = answer(
            &mut t,
            &policy(false),
            &write_request(&format!("{CWD}/.missionsX/a")),
        );
        assert_eq!(r, selected("allow"));
        let r = answer(
            &mut t,
            &policy(false),
            &write_request(&format!("{CWD}/.github/ci.yml")),
        );
        assert_eq!(r, selected("allow"));
    }

    #[test]
    fn raw_input_paths_count_when_locations_are_missing() {
        let tool_call = json!({
            "toolCallId": "t", "kind": "edit",
            "rawInput": {"file_path": format!("{CWD}/.github/workflows/x.yml"), "old_string": "a", "new_string": "b"}
        });
        assert!(matches!(
            decide(&policy(false), Path::new(CWD), &tool_call, None),
            Decision::Refuse(_)
        ));
        // Codex-style patch changes, keyed by path.
        let tool_call = json!({
            "toolCallId": "t", "kind": "edit",
            "rawInput": {"changes": {format!("{CWD}/src/a.rs"): {"type": "update"}, format!("{CWD}/.missions/m"): {"type": "add"}}}
        });
        assert!(matches!(
            decide(&policy(false), Path::new(CWD), &tool_call, None),
            Decision::Refuse(_)
        ));
        // An edit naming no path cannot be checked.
        let tool_call = json!({"toolCallId": "t", "kind": "edit", "rawInput": {}});
        assert!(matches!(
            decide(&policy(false), Path::new(CWD), &tool_call, None),
            Decision::Refuse(_)
        ));
        // The kind may come from earlier updates.
        let tool_call = json!({"toolCallId": "t", "locations": [{"path": ".missions/a"}]});
        assert!(matches!(
            decide(&policy(false), Path::new(CWD), &tool_call, Some("delete")),
            Decision::Refuse(_)
        ));
        assert_eq!(
            decide(&policy(false), Path::new(CWD), &tool_call, None),
            Decision::Allow
        );
    }

    #[test]
    fn read_only_refuses_writes_commands_and_fetches_but_not_reads_or_mcp() {
        let mut t = Tracker::default();
        let ro = policy(true);
        assert_eq!(answer(&mut t, &ro, &bash_request()), selected("reject"));
        assert_eq!(
            answer(&mut t, &ro, &write_request(&format!("{CWD}/src/a.rs"))),
            selected("reject")
        );
        let mut fetch = bash_request();
        fetch["toolCall"]["kind"] = json!("fetch");
        fetch["toolCall"]["toolCallId"] = json!("toolu_0009");
        assert_eq!(answer(&mut t, &ro, &fetch), selected("reject"));
        assert_eq!(t.refused.len(), 3);
        assert_eq!(answer(&mut t, &ro, &mcp_request()), selected("allow"));
        let mut read = mcp_request();
        read["toolCall"]["kind"] = json!("read");
        assert_eq!(answer(&mut t, &ro, &read), selected("allow"));
        // A worker may run commands.
        assert_eq!(
            answer(&mut t, &policy(false), &bash_request()),
            selected("allow")
        );
    }

    #[test]
    fn options_fall_back_by_kind() {
        let only_always = json!([
            {"kind": "allow_always", "optionId": "a"},
            {"kind": "reject_always", "optionId": "r"}
        ]);
        let options = only_always.as_array().unwrap();
        assert_eq!(
            serde_json::to_value(pick_option(
                options,
                &[
                    PermissionOptionKind::AllowOnce,
                    PermissionOptionKind::AllowAlways
                ]
            ))
            .unwrap(),
            json!({"outcome": "selected", "optionId": "a"})
        );
        assert_eq!(
            serde_json::to_value(pick_option(
                options,
                &[
                    PermissionOptionKind::RejectOnce,
                    PermissionOptionKind::RejectAlways
                ]
            ))
            .unwrap(),
            json!({"outcome": "selected", "optionId": "r"})
        );
        let allow_only = json!([{"kind": "allow_once", "optionId": "a"}]);
        assert_eq!(
            serde_json::to_value(pick_option(
                allow_only.as_array().unwrap(),
                &[
                    PermissionOptionKind::RejectOnce,
                    PermissionOptionKind::RejectAlways
                ]
            ))
            .unwrap(),
            json!({"outcome": "cancelled"})
        );
    }

    fn update(update: Value) -> Value {
        json!({"sessionId": "6e376020-de4f-4868-9154-78501c5013ac", "update": update})
    }

    /// The updates claude-agent-acp 0.23.1 sent for `ls -la && exit 3`.
    fn claude_failed_bash() -> Vec<Value> {
        vec![
            update(
                json!({"_meta": {"claudeCode": {"toolName": "Bash"}}, "toolCallId": "toolu_0001", "sessionUpdate": "tool_call", "rawInput": {}, "status": "pending", "title": "Terminal", "kind": "execute", "content": []}),
            ),
            update(
                json!({"_meta": {"claudeCode": {"toolName": "Bash"}}, "toolCallId": "toolu_0001", "sessionUpdate": "tool_call_update", "rawInput": {"command": "ls -la && exit 3", "description": "List files"}, "title": "ls -la && exit 3", "kind": "execute", "content": [{"type": "content", "content": {"type": "text", "text": "List files"}}]}),
            ),
            update(
                json!({"_meta": {"claudeCode": {"toolName": "Bash"}}, "toolCallId": "toolu_0001", "sessionUpdate": "tool_call_update", "status": "failed", "rawOutput": "Exit code 3\ntotal 16\ndrwxr-xr-x 3 root root 4096 Dec  6 22:15 .\n-rw-r--r-- 1 root root    2 Dec  6 22:15 a.txt", "content": [{"type": "content", "content": {"type": "text", "text": "```\nExit code 3\ntotal 16\ndrwxr-xr-x 3 root root 4096 Dec  6 22:15 .\n-rw-r--r-- 1 root root    2 Dec  6 22:15 a.txt\n```"}}]}),
            ),
        ]
    }

    /// The updates claude-agent-acp 0.23.1 sent for `echo hi; sleep 1` (no
    /// permission was asked) and a `Read`.
    fn claude_ok_bash_and_read() -> Vec<Value> {
        vec![
            update(
                json!({"_meta": {"claudeCode": {"toolName": "Bash"}}, "toolCallId": "toolu_0011", "sessionUpdate": "tool_call", "rawInput": {}, "status": "pending", "title": "Terminal", "kind": "execute", "content": []}),
            ),
            update(
                json!({"_meta": {"claudeCode": {"toolName": "Bash"}}, "toolCallId": "toolu_0011", "sessionUpdate": "tool_call_update", "rawInput": {"command": "echo hi; sleep 1", "description": "Say hi"}, "title": "echo hi; sleep 1", "kind": "execute", "content": [{"type": "content", "content": {"type": "text", "text": "Say hi"}}]}),
            ),
            update(
                json!({"_meta": {"claudeCode": {"toolResponse": {"stdout": "hi", "stderr": "", "interrupted": false, "isImage": false, "noOutputExpected": false}, "toolName": "Bash"}}, "toolCallId": "toolu_0011", "sessionUpdate": "tool_call_update"}),
            ),
            update(
                json!({"_meta": {"claudeCode": {"toolName": "Bash"}}, "toolCallId": "toolu_0011", "sessionUpdate": "tool_call_update", "status": "completed", "rawOutput": "hi", "content": [{"type": "content", "content": {"type": "text", "text": "```console\nhi\n```"}}]}),
            ),
            update(
                json!({"_meta": {"claudeCode": {"toolName": "Read"}}, "toolCallId": "toolu_0012", "sessionUpdate": "tool_call", "rawInput": {}, "status": "pending", "title": "Read File", "kind": "read", "locations": [], "content": []}),
            ),
            update(
                json!({"_meta": {"claudeCode": {"toolName": "Read"}}, "toolCallId": "toolu_0012", "sessionUpdate": "tool_call_update", "status": "completed", "rawOutput": "1\ta\n2\t", "content": [{"type": "content", "content": {"type": "text", "text": "```\n1\ta\n2\t\n```"}}]}),
            ),
            update(
                json!({"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "All done."}}),
            ),
        ]
    }

    #[test]
    fn commands_come_from_execute_tool_calls_in_order() {
        let mut t = Tracker::default();
        for u in claude_failed_bash()
            .into_iter()
            .chain(claude_ok_bash_and_read())
        {
            t.update(u);
        }
        assert_eq!(t.transcript.len(), 10);
        assert_eq!(t.calls.len(), 3);
        let commands = t.commands(false);
        assert_eq!(
            commands
                .iter()
                .map(|c| (c.command.as_str(), c.exit_code))
                .collect::<Vec<_>>(),
            vec![("ls -la && exit 3", Some(3)), ("echo hi; sleep 1", Some(0))]
        );
    }

    #[test]
    fn refused_and_unfinished_commands() {
        let mut t = Tracker::default();
        let updates = claude_failed_bash();
        t.update(updates[0].clone());
        t.update(updates[1].clone());
        // Not finished yet: listed without an exit code.
        assert_eq!(t.commands(false)[0].exit_code, None);
        // Refused: it never ran, whatever the agent reports after.
        answer(&mut t, &policy(true), &bash_request());
        t.update(updates[2].clone());
        assert!(t.commands(false).is_empty());
        assert_eq!(t.refused.len(), 1);
    }

    /// The updates codex-acp 0.16.0 sent for `exec_command` {"cmd": "ls -la; exit 3"}
    /// (outputs shortened), and for an MCP tool call.
    #[test]
    fn codex_commands() {
        let mut t = Tracker::default();
        t.update(update(json!({"sessionUpdate": "tool_call", "toolCallId": "call_0001", "title": "ls -la; exit 3", "kind": "execute", "status": "in_progress", "rawInput": {"call_id": "call_0001", "process_id": "16858", "turn_id": "01a24d78-cd70-7ec2-86ac-237007b93cbf", "started_at_ms": 1796596092713u64, "command": ["/bin/bash", "-lc", "ls -la; exit 3"], "cwd": "/tmp/acp-work/ws", "parsed_cmd": [{"type": "unknown", "cmd": "ls -la; exit 3"}], "source": "unified_exec_startup"}})));
        t.update(update(json!({"sessionUpdate": "tool_call_update", "toolCallId": "call_0001", "status": "failed", "rawOutput": {"call_id": "call_0001", "process_id": "16858", "completed_at_ms": 1796596092713u64, "command": ["/bin/bash", "-lc", "ls -la; exit 3"], "cwd": "/tmp/acp-work/ws", "stdout": "total 16\n", "stderr": "", "aggregated_output": "total 16\n", "exit_code": 3, "duration": {"secs": 1, "nanos": 250_000_000}, "formatted_output": "total 16\n", "status": "failed"}})));
        t.update(update(json!({"sessionUpdate": "tool_call", "toolCallId": "call_0003", "title": "Tool: missions/finish", "status": "in_progress", "rawInput": {"server": "missions", "tool": "finish", "arguments": {"summary": "done"}}})));
        t.update(update(json!({"sessionUpdate": "tool_call_update", "toolCallId": "call_0003", "status": "completed", "content": [{"type": "content", "content": {"type": "text", "text": "accepted"}}], "rawOutput": {"content": [{"type": "text", "text": "accepted"}]}})));
        assert_eq!(
            t.commands(false),
            vec![CommandRecord {
                command: "/bin/bash -lc 'ls -la; exit 3'".into(),
                exit_code: Some(3),
                duration_ms: 1250,
                timed_out: false,
            }]
        );
        assert_eq!(t.calls.len(), 2);
    }

    #[test]
    fn unfinished_commands_time_out_with_the_run() {
        let mut t = Tracker::default();
        for u in &claude_failed_bash()[..2] {
            t.update(u.clone());
        }
        let commands = t.commands(true);
        assert_eq!((commands[0].exit_code, commands[0].timed_out), (None, true));
    }

    #[test]
    fn argv_commands_stay_readable() {
        assert_eq!(
            command_text(&json!({"command": ["bash", "-lc", "cargo test"], "cwd": "/w"}))
                .as_deref(),
            Some("bash -lc 'cargo test'")
        );
        assert_eq!(
            command_text(&json!({"command": ["git", "log", "--format=%h it's"]})).as_deref(),
            Some(r"git log '--format=%h it'\''s'")
        );
        assert_eq!(command_text(&json!({"cmd": "ls"})).as_deref(), Some("ls"));
        assert_eq!(command_text(&json!({})), None);
        assert_eq!(command_text(&json!({"command": []})), None);
    }

    #[test]
    fn exit_codes_from_fields_text_or_status() {
        let u = |status: &str, raw: Value| json!({"status": status, "rawOutput": raw});
        assert_eq!(
            final_exit_code(&u("completed", json!({"exit_code": 2}))),
            Some(2)
        );
        assert_eq!(
            final_exit_code(&u("failed", json!({"exitCode": 127}))),
            Some(127)
        );
        assert_eq!(
            final_exit_code(&u("completed", json!({"code": -1}))),
            Some(-1)
        );
        assert_eq!(
            final_exit_code(&u("failed", json!("Exit code 42\nboom"))),
            Some(42)
        );
        assert_eq!(
            final_exit_code(&u("failed", json!({"formatted_output": "x\nExit code 9"}))),
            Some(9)
        );
        assert_eq!(final_exit_code(&u("completed", json!("fine"))), Some(0));
        assert_eq!(
            final_exit_code(&u("failed", json!("Command timed out"))),
            Some(1)
        );
        assert_eq!(final_exit_code(&json!({"status": "failed"})), Some(1));
        assert_eq!(
            final_exit_code(&u("in_progress", json!({"exit_code": 2}))),
            None
        );
        assert_eq!(
            final_exit_code(&json!({"rawOutput": {"exit_code": 2}})),
            None
        );
        assert_eq!(parse_exit_code("Exit code x"), None);
    }

    #[test]
    fn symlinks_out_of_the_checkout_are_outside() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(ws.join(".missions")).unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::os::unix::fs::symlink(ws.join(".missions"), ws.join("state")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), ws.join("out")).unwrap();
        assert_eq!(
            relative_to(&ws, Path::new("state/new.json")),
            Some(PathBuf::from(".missions/new.json"))
        );
        assert_eq!(relative_to(&ws, &ws.join("out/x")), None);
        assert_eq!(
            relative_to(&ws, &ws.join("src/new/file.rs")),
            Some(PathBuf::from("src/new/file.rs"))
        );
    }
}
