//! The demo mission once per worker engine, side by side (`cargo bench
//! --bench engines`): the built-in tool loop, Claude Code and Codex in the
//! worker's seat, each answered by the same scripted model (served over HTTP
//! to the third-party agents, behind the job's metering proxy). Prints one
//! table: how each mission ended, its jobs, the workers' model turns,
//! commands and tokens (summed from the worker jobs' `agent …` log lines),
//! the whole mission's tokens and cost, and the wall time.
//!
//! The engines must be installed (`missions engines`, which `.ci/run` runs).
//! Exits 1 if a mission does not complete.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use missions::demo::run::{self, AgentFigures, DemoOptions, Ending, thousands};

struct Column {
    engine: &'static str,
    ended: String,
    jobs: usize,
    worker: AgentFigures,
    all: AgentFigures,
    wall: Duration,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let columns: Vec<Column> = ["builtin", "claude-code", "codex"]
        .into_iter()
        .map(|engine| runtime.block_on(mission(engine)))
        .collect();
    println!("\n{}", table(&columns));
    let done = columns.iter().all(|c| c.ended == "done");
    std::process::exit(if done { 0 } else { 1 });
}

async fn mission(engine: &'static str) -> Column {
    let started = Instant::now();
    let options = DemoOptions {
        engines: vec![format!("worker={engine}")],
        missions_binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_missions"))),
        ..DemoOptions::default()
    };
    match run::run(options).await {
        Ok(summary) => {
            let mut worker = AgentFigures::default();
            for r in summary.runs.iter().filter(|r| r.role == "worker") {
                worker.add(&AgentFigures::of_log(&r.log));
            }
            Column {
                engine,
                ended: match &summary.ending {
                    Ending::Done { .. } => "done".into(),
                    Ending::Paused { reason } => format!("paused: {reason}"),
                    Ending::Interrupted => "interrupted".into(),
                    Ending::TimedOut { .. } => "timed out".into(),
                },
                jobs: summary.runs.len(),
                worker,
                all: summary.agent_figures(),
                wall: started.elapsed(),
            }
        }
        Err(e) => Column {
            engine,
            ended: format!("error: {e:#}"),
            jobs: 0,
            worker: AgentFigures::default(),
            all: AgentFigures::default(),
            wall: started.elapsed(),
        },
    }
}

fn table(columns: &[Column]) -> String {
    let dollars = |micros: u64| format!("${:.2}", micros as f64 / 1e6);
    type Cell = Box<dyn Fn(&Column) -> String>;
    let rows: Vec<(&str, Cell)> = vec![
        (
            "mission",
            Box::new(|c: &Column| c.ended.replace('|', "\\|")),
        ),
        ("jobs", Box::new(|c: &Column| c.jobs.to_string())),
        (
            "worker model turns",
            Box::new(|c: &Column| thousands(c.worker.model_calls)),
        ),
        (
            "worker commands",
            Box::new(|c: &Column| thousands(c.worker.commands)),
        ),
        (
            "worker tokens in",
            Box::new(|c: &Column| thousands(c.worker.tokens_in)),
        ),
        (
            "worker tokens out",
            Box::new(|c: &Column| thousands(c.worker.tokens_out)),
        ),
        (
            "mission tokens in",
            Box::new(|c: &Column| thousands(c.all.tokens_in)),
        ),
        (
            "mission cost (scripted, at Sonnet's prices)",
            Box::new(move |c: &Column| dollars(c.all.cost_micros)),
        ),
        (
            "wall time",
            Box::new(|c: &Column| format!("{:.1} s", c.wall.as_secs_f64())),
        ),
    ];
    let mut out = String::from("| engines: the demo mission, worker on |");
    for c in columns {
        out.push_str(&format!(" {} |", c.engine));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(columns.len()));
    out.push('\n');
    for (name, cell) in rows {
        out.push_str(&format!("| {name} |"));
        for c in columns {
            out.push_str(&format!(" {} |", cell(c)));
        }
        out.push('\n');
    }
    out
}
