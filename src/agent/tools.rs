//! The tools an agent works with, all confined to one checkout directory.
//!
//! Every failure is returned as text for the model to act on (a wrong path, an
//! ambiguous edit, a failing command), never as a Rust error: the loop sends it
//! back as an `is_error` tool result and the model tries again.
//!
//! `bash` runs with a stripped environment (no API keys or tokens, whatever
//! this process holds) and a throwaway `HOME`, in its own process group so a
//! timeout kills everything the command started.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::llm::ToolDef;

/// One tool the model may be offered. `finish` is not here: the loop owns it,
/// because its schema belongs to the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tool {
    Bash,
    ReadFile,
    WriteFile,
    EditFile,
    ListFiles,
    Grep,
}

impl Tool {
    pub const ALL: [Tool; 6] = [
        Tool::Bash,
        Tool::ReadFile,
        Tool::WriteFile,
        Tool::EditFile,
        Tool::ListFiles,
        Tool::Grep,
    ];

    /// The name the model calls it by.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Bash => "bash",
            Tool::ReadFile => "read_file",
            Tool::WriteFile => "write_file",
            Tool::EditFile => "edit_file",
            Tool::ListFiles => "list_files",
            Tool::Grep => "grep",
        }
    }

    /// Only looks: calls of these in one turn may run at the same time.
    pub fn is_read_only(self) -> bool {
        matches!(self, Tool::ReadFile | Tool::ListFiles | Tool::Grep)
    }

    pub fn from_name(name: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The definition sent to the model. `bash` states the run's timeouts, so
    /// it depends on the settings (fixed for a run, so the prompt prefix stays
    /// cacheable).
    pub fn def(self, bash: &BashConfig) -> ToolDef {
        let (description, input_schema) = match self {
            Tool::Bash => (
                format!(
                    "Run a shell command with `bash -c` in the checkout root (the working directory \
                     at the start of every call; `cd` does not carry over between calls). Returns the \
                     exit code, the duration and the output, stdout and stderr interleaved as they \
                     were written. Output longer than {} bytes is cut in the middle, keeping its \
                     start and end. The command times out after `timeout_secs` (default {}, at most \
                     {}); on timeout it and every process it started are killed. Background \
                     processes do not outlive the call: start a server and test it in the same \
                     command. The environment has no credentials; HOME is an empty temporary \
                     directory; stdin is empty, so never wait for input.",
                    bash.output_limit,
                    bash.default_timeout.as_secs(),
                    bash.max_timeout.as_secs()
                ),
                json!({
                    "type": "object",
                    "properties": {
                        "command": {"type": "string", "description": "The shell command to run."},
                        "timeout_secs": {
                            "type": "integer",
                            "minimum": 1,
                            "description": "Seconds before the command is killed."
                        }
                    },
                    "required": ["command"],
                    "additionalProperties": false
                }),
            ),
            Tool::ReadFile => (
                format!(
                    "Read a text file. Returns lines prefixed with their 1-based line numbers and a \
                     tab (the numbers are not part of the file). Reads at most `limit` lines \
                     (default {READ_DEFAULT_LINES}) from line `offset` (default 1) and at most \
                     {READ_MAX_BYTES} bytes; a note at the end says how to read on. Paths are \
                     relative to the checkout root."
                ),
                json!({
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "File path relative to the checkout root."},
                        "offset": {"type": "integer", "minimum": 1, "description": "First line to read (1-based)."},
                        "limit": {"type": "integer", "minimum": 1, "description": "Number of lines to read."}
                    },
                    "required": ["path"],
                    "additionalProperties": false
                }),
            ),
            Tool::WriteFile => (
                "Create or overwrite a file with the given content, creating parent directories \
                 as needed. Prefer edit_file for changing part of an existing file. Paths are \
                 relative to the checkout root."
                    .to_string(),
                json!({
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "File path relative to the checkout root."},
                        "content": {"type": "string", "description": "The whole new content of the file."}
                    },
                    "required": ["path", "content"],
                    "additionalProperties": false
                }),
            ),
            Tool::EditFile => (
                "Replace one exact occurrence of `old_string` in a file with `new_string`. \
                 `old_string` must match the file exactly (whitespace and indentation included, \
                 without read_file's line-number prefixes) and occur exactly once; include enough \
                 surrounding lines to make it unique."
                    .to_string(),
                json!({
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "File path relative to the checkout root."},
                        "old_string": {"type": "string", "description": "The exact text to replace."},
                        "new_string": {"type": "string", "description": "The text to put in its place."}
                    },
                    "required": ["path", "old_string", "new_string"],
                    "additionalProperties": false
                }),
            ),
            Tool::ListFiles => (
                format!(
                    "List a directory of the checkout (default: the root). Directories end with `/`, \
                     symlinks show their target; `.git` is skipped. With `recursive`, lists the \
                     whole tree below it. At most {LIST_MAX_ENTRIES} entries."
                ),
                json!({
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "Directory relative to the checkout root."},
                        "recursive": {"type": "boolean", "description": "List subdirectories too (default false)."}
                    },
                    "additionalProperties": false
                }),
            ),
            Tool::Grep => (
                format!(
                    "Search file contents with a regular expression (Rust `regex` syntax; `(?i)` \
                     for case-insensitive). Searches every text file under `path` (default: the \
                     whole checkout, `.git` skipped) and returns matches as `path:line: text`, at \
                     most {GREP_MAX_MATCHES}."
                ),
                json!({
                    "type": "object",
                    "properties": {
                        "pattern": {"type": "string", "description": "The regular expression."},
                        "path": {"type": "string", "description": "File or directory relative to the checkout root."}
                    },
                    "required": ["pattern"],
                    "additionalProperties": false
                }),
            ),
        };
        ToolDef {
            name: self.name().to_string(),
            description,
            input_schema,
        }
    }
}

/// The tools a role is offered, in the order the model sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolSet(Vec<Tool>);

impl ToolSet {
    /// Everything: for the orchestrator and workers.
    pub fn full() -> Self {
        ToolSet(Tool::ALL.to_vec())
    }

    /// Looking only (read_file, list_files, grep): reviewers cannot change the
    /// work they judge. Add `bash` with [`ToolSet::with`] if a role must run
    /// the validators.
    pub fn read_only() -> Self {
        ToolSet(vec![Tool::ReadFile, Tool::ListFiles, Tool::Grep])
    }

    pub fn with(mut self, tool: Tool) -> Self {
        if !self.0.contains(&tool) {
            self.0.push(tool);
        }
        self
    }

    pub fn contains(&self, tool: Tool) -> bool {
        self.0.contains(&tool)
    }

    pub fn tools(&self) -> &[Tool] {
        &self.0
    }

    pub fn defs(&self, bash: &BashConfig) -> Vec<ToolDef> {
        self.0.iter().map(|t| t.def(bash)).collect()
    }
}

/// How `bash` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BashConfig {
    /// When the model gives no `timeout_secs`.
    pub default_timeout: Duration,
    /// The most the model may ask for.
    pub max_timeout: Duration,
    /// Bytes of output the model sees per command (head and tail kept).
    pub output_limit: usize,
    /// Variables copied from this process's environment when set (e.g.
    /// [`BashConfig::TOOLCHAIN_VARS`]). Names that look like credentials are
    /// never passed, see [`looks_secret`].
    pub pass_env: Vec<String>,
    /// Variables set explicitly (applied after `pass_env`; may override PATH).
    /// The same credential filter applies.
    pub set_env: Vec<(String, String)>,
    /// An argv prefix every command's shell runs under, e.g. `unshare --pid
    /// --fork …` so that nothing a command starts outlives it (empty: none).
    pub wrapper: Vec<String>,
}

impl BashConfig {
    /// Toolchain locations a CI runner sets and builds need once HOME is
    /// replaced (rustup and cargo otherwise look in the empty HOME). None is
    /// passed unless the caller lists it in `pass_env`.
    pub const TOOLCHAIN_VARS: &[&str] = &[
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "GOROOT",
        "GOPATH",
        "JAVA_HOME",
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "NODE_PATH",
    ];
}

impl Default for BashConfig {
    fn default() -> Self {
        BashConfig {
            default_timeout: Duration::from_secs(120),
            max_timeout: Duration::from_secs(600),
            output_limit: 30_000,
            pass_env: Vec::new(),
            set_env: Vec::new(),
            wrapper: Vec::new(),
        }
    }
}

/// Whether an environment variable name looks like it holds a credential
/// (`*KEY*`, `*TOKEN*`, `*SECRET*`, `*PASSWORD*`, `*PASSWD*`, `*CREDENTIAL*`,
/// case-insensitive). Such variables never reach an agent's commands, even if
/// a caller lists them.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"]
        .iter()
        .any(|w| upper.contains(w))
}

/// A bash command the agent ran, for the handoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub command: String,
    /// `None` when it timed out or a signal ended it.
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub timed_out: bool,
}

/// What a tool call gives back to the model (and, for bash, to the record).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub content: String,
    pub is_error: bool,
    pub command: Option<CommandRecord>,
}

impl ToolOutput {
    fn ok(content: impl Into<String>) -> Self {
        ToolOutput {
            content: content.into(),
            is_error: false,
            command: None,
        }
    }

    fn error(content: impl Into<String>) -> Self {
        ToolOutput {
            content: content.into(),
            is_error: true,
            command: None,
        }
    }
}

const READ_DEFAULT_LINES: usize = 2000;
const READ_MAX_BYTES: usize = 100_000;
const READ_MAX_LINE_CHARS: usize = 2000;
const READ_MAX_FILE_BYTES: u64 = 50_000_000;
const LIST_MAX_ENTRIES: usize = 2000;
const GREP_MAX_MATCHES: usize = 200;
const GREP_MAX_LINE_CHARS: usize = 300;
const GREP_MAX_FILE_BYTES: u64 = 5_000_000;
/// How long to keep reading a command's output after it ended, in case a
/// process that left its group still holds the pipe open.
const OUTPUT_DRAIN_GRACE: Duration = Duration::from_secs(2);

/// A checkout the tools act on, with the per-run HOME and the environment
/// `bash` gets. Dropping it removes the HOME directory.
#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    home: TempHome,
    bash: BashConfig,
    env: Vec<(String, String)>,
    shell: &'static str,
}

impl Workspace {
    /// `root` must be an existing directory; it is canonicalized so symlink
    /// checks compare like with like.
    pub fn new(root: &Path, bash: BashConfig) -> io::Result<Self> {
        let root = root.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        let home = TempHome::create()?;
        let env = tool_env(&bash, &home.0);
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let shell = if std::env::split_paths(&path).any(|d| d.join("bash").is_file()) {
            "bash"
        } else {
            "sh"
        };
        Ok(Workspace {
            root,
            home,
            bash,
            env,
            shell,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The throwaway HOME commands run with.
    pub fn home(&self) -> &Path {
        &self.home.0
    }

    pub fn bash_config(&self) -> &BashConfig {
        &self.bash
    }

    /// The complete environment `bash` commands get.
    pub fn command_env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Runs one tool call. `deadline` (the run's wall-time limit) caps a
    /// command's timeout.
    pub async fn execute(
        &self,
        tool: Tool,
        input: &Value,
        deadline: Option<Instant>,
    ) -> ToolOutput {
        match tool {
            Tool::Bash => {
                let input: BashInput = match parse(tool, input) {
                    Ok(i) => i,
                    Err(e) => return e,
                };
                self.bash(input, deadline).await
            }
            _ => {
                let root = self.root.clone();
                let input = input.clone();
                tokio::task::spawn_blocking(move || file_tool(&root, tool, &input))
                    .await
                    .unwrap_or_else(|e| ToolOutput::error(format!("{} failed: {e}", tool.name())))
            }
        }
    }

    async fn bash(&self, input: BashInput, deadline: Option<Instant>) -> ToolOutput {
        let mut notes = String::new();
        let requested = input
            .timeout_secs
            .map(|s| Duration::from_secs(s.max(1)))
            .unwrap_or(self.bash.default_timeout);
        let mut timeout = requested;
        if timeout > self.bash.max_timeout {
            timeout = self.bash.max_timeout;
            let _ = writeln!(
                notes,
                "[timeout_secs capped at {}]",
                self.bash.max_timeout.as_secs()
            );
        }
        if let Some(deadline) = deadline {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1));
            if left < timeout {
                timeout = left;
                let _ = writeln!(
                    notes,
                    "[timeout cut to {} s: the run's time limit is near]",
                    left.as_secs()
                );
            }
        }
        let started = Instant::now();
        let run = run_command(
            &self.bash.wrapper,
            self.shell,
            &input.command,
            &self.root,
            &self.env,
            timeout,
            self.bash.output_limit,
        )
        .await;
        let duration = started.elapsed();
        let (exit_code, timed_out, signal, output) = match run {
            Ok(r) => r,
            Err(e) => {
                return ToolOutput {
                    content: format!("could not start `{}`: {e}", self.shell),
                    is_error: true,
                    command: Some(CommandRecord {
                        command: input.command,
                        exit_code: None,
                        duration_ms: duration.as_millis() as u64,
                        timed_out: false,
                    }),
                };
            }
        };
        let secs = duration.as_secs_f64();
        let mut content = notes;
        if timed_out {
            let _ = writeln!(
                content,
                "timed out after {} s; the command and every process it started were killed",
                timeout.as_secs()
            );
        } else if let Some(code) = exit_code {
            let _ = writeln!(content, "exit code {code} ({secs:.1} s)");
        } else {
            let _ = writeln!(
                content,
                "killed by signal {} ({secs:.1} s)",
                signal.unwrap_or_default()
            );
        }
        if output.is_empty() {
            content.push_str("(no output)");
        } else {
            content.push_str(&output);
        }
        ToolOutput {
            content,
            // A failing command is information, not a tool failure: the model
            // reads the exit code.
            is_error: false,
            command: Some(CommandRecord {
                command: input.command,
                exit_code,
                duration_ms: duration.as_millis() as u64,
                timed_out,
            }),
        }
    }
}

/// A per-run HOME, so commands never see the real one (its git credentials,
/// cloud configs, shell history).
#[derive(Debug)]
struct TempHome(PathBuf);

impl TempHome {
    fn create() -> io::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("missions-agent-home-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(TempHome(dir))
    }
}

impl Drop for TempHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The whole environment of a command: nothing inherited but PATH and what the
/// caller allows, minus anything that looks like a credential.
fn tool_env(bash: &BashConfig, home: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        ),
        ("HOME".into(), home.display().to_string()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TERM".into(), "dumb".into()),
        ("CI".into(), "true".into()),
    ];
    let mut set = |name: &str, value: String| {
        if looks_secret(name) {
            tracing::warn!(
                name,
                "not passing a credential-like variable to agent commands"
            );
            return;
        }
        match env.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => env.push((name.to_string(), value)),
        }
    };
    for name in &bash.pass_env {
        if let Ok(value) = std::env::var(name) {
            set(name, value);
        }
    }
    for (name, value) in &bash.set_env {
        set(name, value.clone());
    }
    env
}

/// Runs `[wrapper…] shell -c command` in its own process group; returns (exit code,
/// timed out, signal, output for the model).
async fn run_command(
    wrapper: &[String],
    shell: &str,
    command: &str,
    root: &Path,
    env: &[(String, String)],
    timeout: Duration,
    output_limit: usize,
) -> io::Result<(Option<i32>, bool, Option<i32>, String)> {
    // One pipe for both streams, so the model sees them interleaved as written.
    let (mut reader, writer) = io::pipe()?;
    let writer_err = writer.try_clone()?;
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args).arg(shell);
            cmd
        }
        None => tokio::process::Command::new(shell),
    };
    cmd.arg("-c")
        .arg(command)
        .current_dir(root)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_err)
        .process_group(0)
        .kill_on_drop(true);
    let spawned = cmd.spawn();
    // The command holds our copies of the write end; only once they are
    // closed does the reader see end-of-file when the command's processes exit.
    drop(cmd);
    let mut child = spawned?;
    let pgid = child.id();

    let collected = Arc::new(Mutex::new(Collector::new(output_limit)));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    {
        let collected = collected.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => collected.lock().unwrap().push(&buf[..n]),
                }
            }
            let _ = done_tx.send(());
        });
    }

    let kill_group = || {
        if let Some(pgid) = pgid {
            // SAFETY: killpg has no memory-safety preconditions; the group is
            // the one `process_group(0)` created for this command.
            unsafe {
                libc::killpg(pgid as libc::pid_t, libc::SIGKILL);
            }
        }
    };
    let (status, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => {
            // Leftover background processes would hold the pipe open and
            // keep running into the next command: end them.
            kill_group();
            (status?, false)
        }
        Err(_) => {
            kill_group();
            (child.wait().await?, true)
        }
    };
    let _ = tokio::time::timeout(OUTPUT_DRAIN_GRACE, done_rx).await;
    let output = collected.lock().unwrap().render();
    use std::os::unix::process::ExitStatusExt;
    let exit_code = if timed_out { None } else { status.code() };
    Ok((exit_code, timed_out, status.signal(), output))
}

/// Keeps the first and last `limit / 2` bytes of a stream, counting the rest.
struct Collector {
    half: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: usize,
}

impl Collector {
    fn new(limit: usize) -> Self {
        Collector {
            half: limit / 2,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len();
        let room = self.half.saturating_sub(self.head.len());
        let take = room.min(bytes.len());
        self.head.extend_from_slice(&bytes[..take]);
        bytes = &bytes[take..];
        if bytes.len() >= self.half {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.half..]);
        } else {
            self.tail.extend(bytes);
            let excess = self.tail.len().saturating_sub(self.half);
            self.tail.drain(..excess);
        }
    }

    fn render(&self) -> String {
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let omitted = self.total - self.head.len() - tail.len();
        let mut out = String::from_utf8_lossy(&self.head).into_owned();
        if omitted > 0 {
            let _ = write!(out, "\n[output truncated: {omitted} bytes omitted]\n");
        }
        out.push_str(&String::from_utf8_lossy(&tail));
        out
    }
}

#[derive(Deserialize)]
struct BashInput {
    command: String,
    timeout_secs: Option<u64>,
}

#[derive(Deserialize)]
struct ReadInput {
    path: String,
    offset: Option<usize>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct WriteInput {
    path: String,
    content: String,
}

#[derive(Deserialize)]
struct EditInput {
    path: String,
    old_string: String,
    new_string: String,
}

#[derive(Deserialize)]
struct ListInput {
    path: Option<String>,
    #[serde(default)]
    recursive: bool,
}

#[derive(Deserialize)]
struct GrepInput {
    pattern: String,
    path: Option<String>,
}

fn parse<T: serde::de::DeserializeOwned>(tool: Tool, input: &Value) -> Result<T, ToolOutput> {
    serde_json::from_value(input.clone())
        .map_err(|e| ToolOutput::error(format!("invalid input for {}: {e}", tool.name())))
}

fn file_tool(root: &Path, tool: Tool, input: &Value) -> ToolOutput {
    let result = match tool {
        Tool::ReadFile => parse(tool, input).and_then(|i| read_file(root, i)),
        Tool::WriteFile => parse(tool, input).and_then(|i| write_file(root, i)),
        Tool::EditFile => parse(tool, input).and_then(|i| edit_file(root, i)),
        Tool::ListFiles => parse(tool, input).and_then(|i| list_files(root, i)),
        Tool::Grep => parse(tool, input).and_then(|i| grep(root, i)),
        Tool::Bash => Err(ToolOutput::error("bash is not a file tool")),
    };
    result.unwrap_or_else(|e| e)
}

/// A path the model gave, checked to stay inside the checkout.
#[derive(Debug)]
struct Resolved {
    /// Under the root (not canonicalized, so messages read naturally).
    full: PathBuf,
    /// Normalized and relative, for messages: `src/main.rs`, `.` for the root.
    shown: String,
    /// The first component is `.git`.
    in_git_dir: bool,
}

/// Resolves `rel` against the canonical `root`: rejects absolute paths, `..`
/// that climbs out, and symlinks (anywhere along the path) that lead out.
fn resolve(root: &Path, rel: &str) -> Result<Resolved, ToolOutput> {
    let given = Path::new(rel);
    if given.is_absolute() || rel.starts_with('~') {
        return Err(ToolOutput::error(format!(
            "path `{rel}` is absolute; tools take paths relative to the checkout root (e.g. `src/main.rs`)"
        )));
    }
    let mut normal = PathBuf::new();
    for component in given.components() {
        match component {
            Component::Normal(part) => normal.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !normal.pop() {
                    return Err(ToolOutput::error(format!(
                        "path `{rel}` escapes the checkout root; use a path inside it"
                    )));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ToolOutput::error(format!(
                    "path `{rel}` is absolute; tools take paths relative to the checkout root"
                )));
            }
        }
    }
    let full = root.join(&normal);
    // The deepest part of the path that exists decides where it really leads;
    // what does not exist yet will be created as plain directories and files.
    let mut probe = full.clone();
    loop {
        match std::fs::symlink_metadata(&probe) {
            Ok(_) => {
                match probe.canonicalize() {
                    Ok(real) if real.starts_with(root) => {}
                    Ok(_) => {
                        return Err(ToolOutput::error(format!(
                            "path `{rel}` leads outside the checkout root through a symlink"
                        )));
                    }
                    Err(_) => {
                        return Err(ToolOutput::error(format!(
                            "path `{rel}` goes through a broken symlink (`{}`)",
                            probe.strip_prefix(root).unwrap_or(&probe).display()
                        )));
                    }
                }
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !probe.pop() || !probe.starts_with(root) {
                    break;
                }
            }
            // Not a directory and the like: the operation itself reports it.
            Err(_) => break,
        }
    }
    let shown = if normal.as_os_str().is_empty() {
        ".".to_string()
    } else {
        normal.display().to_string()
    };
    let in_git_dir = normal.components().next() == Some(Component::Normal(".git".as_ref()));
    Ok(Resolved {
        full,
        shown,
        in_git_dir,
    })
}

fn resolve_required(root: &Path, rel: &str) -> Result<Resolved, ToolOutput> {
    if rel.trim().is_empty() {
        return Err(ToolOutput::error(
            "path is empty; give a file path relative to the checkout root",
        ));
    }
    resolve(root, rel)
}

fn resolve_writable(root: &Path, rel: &str) -> Result<Resolved, ToolOutput> {
    let resolved = resolve_required(root, rel)?;
    if resolved.in_git_dir {
        return Err(ToolOutput::error(format!(
            "`{}` is inside .git, which these tools do not change",
            resolved.shown
        )));
    }
    Ok(resolved)
}

fn io_error(action: &str, shown: &str, e: io::Error) -> ToolOutput {
    let why = match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    ToolOutput::error(format!("cannot {action} `{shown}`: {why}"))
}

fn read_file(root: &Path, input: ReadInput) -> Result<ToolOutput, ToolOutput> {
    let r = resolve_required(root, &input.path)?;
    let meta = std::fs::metadata(&r.full).map_err(|e| io_error("read", &r.shown, e))?;
    if meta.is_dir() {
        return Err(ToolOutput::error(format!(
            "`{}` is a directory; use list_files",
            r.shown
        )));
    }
    if meta.len() > READ_MAX_FILE_BYTES {
        return Err(ToolOutput::error(format!(
            "`{}` is {} bytes, too large to read; search it with grep",
            r.shown,
            meta.len()
        )));
    }
    let bytes = std::fs::read(&r.full).map_err(|e| io_error("read", &r.shown, e))?;
    if bytes[..bytes.len().min(8000)].contains(&0) {
        return Err(ToolOutput::error(format!(
            "`{}` is a binary file ({} bytes)",
            r.shown,
            bytes.len()
        )));
    }
    let text = String::from_utf8_lossy(&bytes);
    if text.is_empty() {
        return Ok(ToolOutput::ok(format!("`{}` is empty", r.shown)));
    }
    let lines: Vec<&str> = text.lines().collect();
    let offset = input.offset.unwrap_or(1).max(1);
    let limit = input.limit.unwrap_or(READ_DEFAULT_LINES).max(1);
    if offset > lines.len() {
        return Err(ToolOutput::error(format!(
            "offset {offset} is past the end of `{}` ({} lines)",
            r.shown,
            lines.len()
        )));
    }
    let mut out = String::new();
    let mut last = offset - 1;
    for (i, line) in lines.iter().enumerate().skip(offset - 1).take(limit) {
        let line = match line.char_indices().nth(READ_MAX_LINE_CHARS) {
            Some((cut, _)) => format!(
                "{}… [line cut at {READ_MAX_LINE_CHARS} characters]",
                &line[..cut]
            ),
            None => line.to_string(),
        };
        let numbered = format!("{:>6}\t{line}\n", i + 1);
        if out.len() + numbered.len() > READ_MAX_BYTES && last >= offset {
            break;
        }
        out.push_str(&numbered);
        last = i + 1;
    }
    if last < lines.len() {
        let _ = write!(
            out,
            "[lines {offset}-{last} of {}; call read_file with offset={} to read on]",
            lines.len(),
            last + 1
        );
    }
    Ok(ToolOutput::ok(out))
}

fn write_file(root: &Path, input: WriteInput) -> Result<ToolOutput, ToolOutput> {
    let r = resolve_writable(root, &input.path)?;
    if r.full.is_dir() {
        return Err(ToolOutput::error(format!("`{}` is a directory", r.shown)));
    }
    if let Some(parent) = r.full.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| io_error("create the parent of", &r.shown, e))?;
    }
    std::fs::write(&r.full, &input.content).map_err(|e| io_error("write", &r.shown, e))?;
    Ok(ToolOutput::ok(format!(
        "wrote {} bytes to `{}`",
        input.content.len(),
        r.shown
    )))
}

fn edit_file(root: &Path, input: EditInput) -> Result<ToolOutput, ToolOutput> {
    let r = resolve_writable(root, &input.path)?;
    if input.old_string.is_empty() {
        return Err(ToolOutput::error(
            "old_string is empty; give the exact text to replace (use write_file to create a file)",
        ));
    }
    let text = std::fs::read_to_string(&r.full).map_err(|e| io_error("edit", &r.shown, e))?;
    match text.matches(&input.old_string).count() {
        0 => Err(ToolOutput::error(format!(
            "old_string not found in {}; read the file again and copy the text exactly",
            r.shown
        ))),
        1 => {
            let new = text.replacen(&input.old_string, &input.new_string, 1);
            std::fs::write(&r.full, new).map_err(|e| io_error("write", &r.shown, e))?;
            Ok(ToolOutput::ok(format!("edited `{}`", r.shown)))
        }
        n => Err(ToolOutput::error(format!(
            "old_string occurs {n} times in {}; include more context to make it unique",
            r.shown
        ))),
    }
}

/// Walks `dir` depth-first in name order, never into `.git` or through
/// symlinks; `visit` returns false to stop.
fn walk(
    dir: &Path,
    recursive: bool,
    visit: &mut dyn FnMut(&Path, &std::fs::FileType) -> bool,
) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if entry.file_name() == ".git" {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if !visit(&path, &kind) {
            return false;
        }
        if recursive && kind.is_dir() && !walk(&path, recursive, visit) {
            return false;
        }
    }
    true
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn list_files(root: &Path, input: ListInput) -> Result<ToolOutput, ToolOutput> {
    let r = resolve(root, input.path.as_deref().unwrap_or("."))?;
    let meta = std::fs::metadata(&r.full).map_err(|e| io_error("list", &r.shown, e))?;
    if !meta.is_dir() {
        return Err(ToolOutput::error(format!(
            "`{}` is a file, not a directory",
            r.shown
        )));
    }
    // Show paths relative to the checkout root, whatever was listed.
    let base = r.full.canonicalize().unwrap_or(r.full.clone());
    let mut lines = Vec::new();
    let complete = walk(&base, input.recursive, &mut |path, kind| {
        if lines.len() == LIST_MAX_ENTRIES {
            return false;
        }
        let shown = relative(root, path);
        lines.push(if kind.is_dir() {
            format!("{shown}/")
        } else if kind.is_symlink() {
            let target = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            format!("{shown} -> {target}")
        } else {
            shown
        });
        true
    });
    let mut out = lines.join("\n");
    if out.is_empty() {
        out = format!("`{}` is empty", r.shown);
    }
    if !complete {
        let _ = write!(
            out,
            "\n[listing stopped at {LIST_MAX_ENTRIES} entries; list a subdirectory]"
        );
    }
    Ok(ToolOutput::ok(out))
}

fn grep(root: &Path, input: GrepInput) -> Result<ToolOutput, ToolOutput> {
    let regex = regex::Regex::new(&input.pattern)
        .map_err(|e| ToolOutput::error(format!("invalid regular expression: {e}")))?;
    let r = resolve(root, input.path.as_deref().unwrap_or("."))?;
    let meta = std::fs::metadata(&r.full).map_err(|e| io_error("search", &r.shown, e))?;
    let base = r.full.canonicalize().unwrap_or(r.full.clone());
    let mut matches = Vec::new();
    let mut search = |path: &Path| -> bool {
        let Ok(meta) = std::fs::metadata(path) else {
            return true;
        };
        if meta.len() > GREP_MAX_FILE_BYTES {
            return true;
        }
        let Ok(bytes) = std::fs::read(path) else {
            return true;
        };
        if bytes[..bytes.len().min(8000)].contains(&0) {
            return true;
        }
        let text = String::from_utf8_lossy(&bytes);
        let shown = relative(root, path);
        for (i, line) in text.lines().enumerate() {
            if regex.is_match(line) {
                if matches.len() == GREP_MAX_MATCHES {
                    return false;
                }
                let line = match line.char_indices().nth(GREP_MAX_LINE_CHARS) {
                    Some((cut, _)) => format!("{}…", &line[..cut]),
                    None => line.to_string(),
                };
                matches.push(format!("{shown}:{}: {line}", i + 1));
            }
        }
        true
    };
    let complete = if meta.is_dir() {
        walk(&base, true, &mut |path, kind| {
            !kind.is_file() || search(path)
        })
    } else {
        search(&base)
    };
    if matches.is_empty() {
        return Ok(ToolOutput::ok(format!(
            "no matches for `{}` in `{}`",
            input.pattern, r.shown
        )));
    }
    let mut out = matches.join("\n");
    if !complete {
        let _ = write!(
            out,
            "\n[stopped after {GREP_MAX_MATCHES} matches; narrow the pattern or the path]"
        );
    }
    Ok(ToolOutput::ok(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_keeps_head_and_tail_and_counts_the_rest() {
        let mut c = Collector::new(10);
        c.push(b"abc");
        c.push(b"defgh");
        c.push(b"ijklmnopq");
        c.push(b"rs");
        // 19 bytes: head "abcde", tail "opqrs", 9 omitted.
        assert_eq!(
            c.render(),
            "abcde\n[output truncated: 9 bytes omitted]\nopqrs"
        );
        let mut small = Collector::new(10);
        small.push(b"0123456789");
        assert_eq!(small.render(), "0123456789");
    }

    #[test]
    fn credential_names_are_recognised() {
        for name in [
            "ANTHROPIC_API_KEY",
            "GITHUB_TOKEN",
            "openai_api_key",
            "AWS_SECRET_ACCESS_KEY",
            "DB_PASSWORD",
            "GOOGLE_APPLICATION_CREDENTIALS",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in ["PATH", "CARGO_HOME", "GIT_AUTHOR_NAME", "RUSTUP_TOOLCHAIN"] {
            assert!(!looks_secret(name), "{name}");
        }
    }

    #[test]
    fn paths_normalise_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let r = resolve(&root, "./src/../src/lib.rs").unwrap();
        assert_eq!(r.shown, "src/lib.rs");
        assert_eq!(r.full, root.join("src/lib.rs"));
        assert_eq!(resolve(&root, ".").unwrap().shown, ".");
        assert!(resolve(&root, ".git/config").unwrap().in_git_dir);
        assert!(
            resolve(&root, "a/../../b")
                .unwrap_err()
                .content
                .contains("escapes")
        );
        assert!(
            resolve(&root, "/etc/passwd")
                .unwrap_err()
                .content
                .contains("absolute")
        );
    }
}
