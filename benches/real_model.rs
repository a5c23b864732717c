//! The demo mission on a real, open-weight model (`cargo bench --bench
//! real_model -- --minutes 45`): the sample project's issue with `--model
//! local` in every seat (Qwen2.5-Coder-1.5B-Instruct served on this machine
//! by `scripts/local-model`, which must have been fetched once). Prints one
//! table: how far the mission got, what the agents did (summed from each
//! job's `agent …` log lines), the tokens, the wall time, and how it ended:
//! `done`, `paused: <reason as on the issue>`, or stopped by the cap. It never
//! waits past the cap (plus a minute to stop). It exits 0 when the mission
//! ended where a person sees it (done or paused), 1 otherwise.
//!
//! The job figures come from finished jobs only (a job's log is complete
//! when it ends); the model server's own log adds what it answered, the job
//! still running at the cap included.
//!
//! Options: `--minutes N` (45), the cap on the whole run; `--dir PATH` keeps
//! the simulator, the database and the model server's log there.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use missions::demo::local;
use missions::demo::run::{self, DemoOptions, DemoSummary, Ending, thousands};

fn main() {
    let mut minutes: f64 = 45.0;
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match arg.as_str() {
            "--minutes" => {
                minutes = value("--minutes")
                    .parse()
                    .ok()
                    .filter(|m: &f64| m.is_finite() && *m > 0.0)
                    .expect("--minutes N, more than 0")
            }
            "--dir" => dir = Some(PathBuf::from(value("--dir"))),
            // `cargo bench` passes `--bench`; filters are not used.
            "--bench" => {}
            other if other.starts_with("--") => panic!("unknown option {other}"),
            _ => {}
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let code = runtime.block_on(bench(minutes, dir));
    // Whatever is left (it should be nothing) does not keep the bench alive.
    std::process::exit(code);
}

async fn bench(minutes: f64, dir: Option<PathBuf>) -> i32 {
    if let Err(e) = local::check_installed().await {
        eprintln!("{e:#}");
        eprintln!(
            "Install it once with `scripts/local-model fetch`, then run `cargo bench --bench real_model` again."
        );
        return 1;
    }
    let cap = Duration::from_secs_f64(minutes * 60.0);
    let started = Instant::now();
    // A directory that outlives the demo, for the model server's log.
    let temp = tempfile::Builder::new()
        .prefix("missions-real-model-")
        .tempdir()
        .expect("a temporary directory");
    let dir = dir.unwrap_or_else(|| temp.path().to_path_buf());
    let server_log = dir.join("local-model.log");
    let options = DemoOptions {
        dir: Some(dir),
        timeout: Some(cap),
        models: vec!["local".into()],
        missions_binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_missions"))),
        ..DemoOptions::default()
    };
    // The demo stops itself at the cap; this is the net under it.
    let result = tokio::time::timeout(cap + Duration::from_secs(60), run::run(options)).await;
    let cap_text = format!("{} min", trim(minutes));
    let (summary, ended) = match result {
        Ok(Ok(summary)) => {
            let ended = match &summary.ending {
                Ending::Done { .. } => "done".to_owned(),
                Ending::Paused { reason } => format!("paused: {reason}"),
                Ending::Interrupted => "interrupted".to_owned(),
                Ending::TimedOut { job, .. } => format!(
                    "stopped by the bench's cap after {cap_text} ({})",
                    if job.is_some() {
                        "the last job was still running"
                    } else {
                        "no job was running"
                    }
                ),
            };
            (Some(summary), ended)
        }
        Ok(Err(e)) if started.elapsed() >= cap => (
            None,
            format!(
                "stopped by the bench's cap after {cap_text} (before the mission began: {e:#})"
            ),
        ),
        Ok(Err(e)) => (None, format!("error: {e:#}")),
        Err(_) => (
            None,
            format!(
                "stopped by the bench's cap after {cap_text} (the demo did not stop by itself)"
            ),
        ),
    };
    let served = std::fs::read_to_string(&server_log).unwrap_or_default();
    println!(
        "\n{}",
        table(summary.as_ref(), &served, &ended, started.elapsed())
    );
    // A measurement, not a test of the model: a mission that ends in a state
    // a person sees (done, or paused with its reason on the issue) is a
    // result; one that did not end by the cap, or a demo that failed, is not.
    match summary.map(|s| s.ending) {
        Some(Ending::Done { .. } | Ending::Paused { .. }) => 0,
        _ => 1,
    }
}

fn trim(minutes: f64) -> String {
    if minutes.fract() == 0.0 {
        format!("{minutes:.0}")
    } else {
        format!("{minutes}")
    }
}

/// What the model server's log says it answered: `request: prompt P tokens
/// (cached C, evaluated E), completion K tokens, Ts, …` per request.
fn served(log: &str) -> Option<String> {
    let re = regex::Regex::new(
        r"request: prompt (\d+) tokens \(cached (\d+), evaluated \d+\), completion (\d+) tokens, ([\d.]+)s",
    )
    .expect("the server's request line");
    let (mut n, mut prompt, mut cached, mut completion, mut secs) = (0u64, 0u64, 0u64, 0u64, 0f64);
    for caps in re.captures_iter(log) {
        n += 1;
        prompt += caps[1].parse::<u64>().unwrap_or(0);
        cached += caps[2].parse::<u64>().unwrap_or(0);
        completion += caps[3].parse::<u64>().unwrap_or(0);
        secs += caps[4].parse::<f64>().unwrap_or(0.0);
    }
    (n > 0).then(|| {
        format!(
            "{n}: {} prompt tokens ({} cached), {} completion tokens, {:.1} min answering",
            thousands(prompt),
            thousands(cached),
            thousands(completion),
            secs / 60.0
        )
    })
}

fn table(summary: Option<&DemoSummary>, server_log: &str, ended: &str, wall: Duration) -> String {
    let mut rows: Vec<(&str, String)> = vec![(
        "model",
        format!(
            "{} (local, {} tokens of context)",
            local::MODEL,
            local::context().unwrap_or(local::DEFAULT_CONTEXT)
        ),
    )];
    match summary {
        Some(s) => {
            let f = s.agent_figures();
            let failed = s
                .runs
                .iter()
                .filter(|r| r.conclusion.as_deref().is_some_and(|c| c != "success"))
                .count();
            let running = s.runs.iter().filter(|r| r.conclusion.is_none()).count();
            rows.extend([
                ("phase reached", s.phase.clone()),
                (
                    "jobs run",
                    format!(
                        "{} ({failed} failed, {running} still running; {} agent runs in the finished ones)",
                        s.runs.len(),
                        f.agent_runs
                    ),
                ),
                ("model turns", thousands(f.model_calls)),
                ("commands run", thousands(f.commands)),
                ("tool calls rejected", thousands(f.rejected_calls)),
                ("compactions", thousands(f.compactions)),
                ("tokens in", thousands(f.tokens_in)),
                ("tokens cached", thousands(f.tokens_cached)),
                ("tokens out", thousands(f.tokens_out)),
            ]);
        }
        None => rows.push(("phase reached", "none (the mission did not start)".into())),
    }
    rows.push((
        "requests the model server answered",
        served(server_log).unwrap_or_else(|| "none in its log".into()),
    ));
    rows.push(("wall time", format!("{:.1} min", wall.as_secs_f64() / 60.0)));
    rows.push(("ended", ended.replace('|', "\\|").replace('\n', " ")));
    let mut out = String::from("| real_model | |\n|---|---|\n");
    for (k, v) in rows {
        out.push_str(&format!("| {k} | {v} |\n"));
    }
    out
}
