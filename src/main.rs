use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use missions::config::{self, Config};
use missions::store::Store;
use missions::store::inbox::{self, Status};

#[derive(Parser)]
#[command(
    name = "missions",
    version,
    about = "A GitHub App that runs long software tasks as missions"
)]
struct Cli {
    /// TOML config file; MISSIONS_* environment variables override it.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole mission on this machine: the App, a GitHub simulator and a
    /// scripted model, with no account and no network. Start here.
    Demo(DemoArgs),
    /// Run the App: webhook receiver, durable inbox, event loop.
    Serve,
    /// Look into the inbox of stored webhook deliveries.
    Inbox {
        #[command(subcommand)]
        command: InboxCommand,
    },
    /// Run the GitHub simulator standalone (REST subset, git hosting, local Actions
    /// runner) with a sample repository, for trying the App offline.
    Sim(SimArgs),
    /// One turn of one role inside a GitHub Actions job (what the mission workflow runs).
    Job(JobCliArgs),
    /// Check an agent job's result and push it, in a job of its own with the write
    /// token and no agent code (the mission workflow's second job).
    Publish(PublishCliArgs),
    /// Register the GitHub App with GitHub's manifest flow and write its id, private
    /// key and webhook secret into the config file (--config, default config/missions.toml).
    AppManifest(missions::manifest::AppManifestArgs),
    /// Add the mission workflow and a commented .github/missions.yml to a repository.
    Init(missions::init::InitArgs),
    /// Install third-party agent engines (Claude Code, Codex) at their pinned
    /// versions into the cache (MISSIONS_ENGINES_DIR, else ~/.cache/missions/engines).
    Engines {
        /// Which: claude-code, codex (default: both).
        names: Vec<String>,
    },
    /// The stdio MCP server a third-party agent starts to call `finish` (the job
    /// harness passes it to the agent; not for people to run).
    #[command(hide = true)]
    McpFinish {
        /// The job's finish endpoint.
        #[arg(long)]
        url: String,
    },
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Leave the simulator and the App running at the end, to look around.
    #[arg(long)]
    keep: bool,
    /// Keep the demo's files (simulator repositories, database, scripts) here
    /// instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The model: PROVIDER:MODEL for every role (anthropic:claude-sonnet-4-5,
    /// openai:gpt-4.1, openai-compatible:MODEL@http://HOST:PORT/v1), `scripted`
    /// (the default), or `local` (the open-weight model of scripts/local-model);
    /// ROLE=SPEC for one role (orchestrator, worker, scrutiny, user-testing).
    /// Repeatable. Keys come from ANTHROPIC_API_KEY / OPENAI_API_KEY.
    #[arg(long = "model", value_name = "SPEC")]
    models: Vec<String>,
    /// The agent in a seat: ENGINE for every role or ROLE=ENGINE for one
    /// (claude-code, codex, builtin, acp:COMMAND); e.g. --engine worker=claude-code.
    /// Presets are installed at their pinned versions on first use.
    #[arg(long = "engine", value_name = "[ROLE=]ENGINE")]
    engines: Vec<String>,
    /// Work on this repository's HEAD commit (committed files only; the
    /// checkout is not changed) instead of the sample project. Needs --issue-file.
    #[arg(long, value_name = "PATH")]
    repo: Option<PathBuf>,
    /// The issue to work on: the first line is its title (a leading `# ` is
    /// dropped), the rest its body.
    #[arg(long, value_name = "FILE")]
    issue_file: Option<PathBuf>,
    /// Give up after this many minutes (default: 5 with the scripted model, 60
    /// with any other).
    #[arg(long, value_name = "MINUTES")]
    timeout: Option<f64>,
    /// The sample project: `textstats` (a command-line program) or `web` (a
    /// to-do list the user tester uses in headless Chromium; needs Chromium).
    #[arg(long, value_enum, default_value_t)]
    project: missions::demo::run::DemoProject,
}

/// The dispatch inputs that name a job, for `missions job` and `missions publish`.
#[derive(clap::Args)]
struct JobInputs {
    /// orchestrator, worker, scrutiny or user-testing.
    #[arg(long, value_parser = missions::job::parse_role)]
    role: missions::mission::JobRole,
    /// The mission's issue number.
    #[arg(long)]
    mission: u64,
    /// The job key the server dispatched (e.g. feature-F2.1).
    #[arg(long)]
    job: String,
    /// The feature of a feature or triage task ("" for none).
    #[arg(long, default_value = "")]
    feature: String,
    /// The repository's default branch, where settings are read (default: ask the API).
    #[arg(long, default_value = "")]
    config_ref: String,
}

#[derive(clap::Args)]
struct JobCliArgs {
    #[command(flatten)]
    inputs: JobInputs,
    /// scope, revise, feature, triage, follow-up, replan or validate.
    #[arg(long)]
    task: missions::job::TaskKind,
    /// For debugging: write each agent run's conversation into this directory.
    #[arg(long, value_name = "DIR")]
    transcript_dir: Option<PathBuf>,
    /// Leave the result in this directory for `missions publish` instead of
    /// pushing it (the agent's job has a read-only token).
    #[arg(long, value_name = "DIR")]
    result_dir: Option<PathBuf>,
    /// The hash of the issue's title and description the App took in ("": read
    /// the issue as it is).
    #[arg(long, default_value = "")]
    issue_sha256: String,
    /// What this job may spend, in US dollars: the mission's remaining budget
    /// less the other roles' reserves ("": the repository's whole budget).
    #[arg(long, default_value = "")]
    spend_limit_usd: String,
    /// The App's `[model]` as JSON: what the repository's `models:` resolve
    /// over ("": the built-in default model).
    #[arg(long, default_value = "")]
    server_model: String,
}

#[derive(clap::Args)]
struct PublishCliArgs {
    #[command(flatten)]
    inputs: JobInputs,
    /// Where the agent's job left its result (downloaded artifact).
    #[arg(long, value_name = "DIR")]
    result_dir: PathBuf,
}

#[derive(clap::Args)]
struct SimArgs {
    #[arg(long, default_value_t = 3001)]
    port: u16,
    /// Where repositories and job workspaces live (default: a new temporary directory).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The App's private key (PEM); made there if missing. Default: DATA_DIR/app-key.pem.
    #[arg(long, value_name = "PATH")]
    app_key: Option<PathBuf>,
    /// Where to send webhooks, e.g. http://127.0.0.1:3000/webhook (signed with
    /// MISSIONS_WEBHOOK_SECRET).
    #[arg(long, value_name = "URL")]
    webhook_url: Option<String>,
    /// FILE=COMMAND: what a dispatch of .github/workflows/FILE runs (with `sh -c`,
    /// in a fresh clone, with GitHub Actions' environment). Repeatable.
    #[arg(long = "workflow-command", value_name = "FILE=COMMAND")]
    workflow_commands: Vec<String>,
    /// Fraction of API calls answered 5xx (fault injection).
    #[arg(long, default_value_t = 0.0)]
    api_error_rate: f64,
    /// Fraction of API calls answered with a secondary rate limit.
    #[arg(long, default_value_t = 0.0)]
    rate_limit_rate: f64,
    /// Fraction of webhook deliveries dropped.
    #[arg(long, default_value_t = 0.0)]
    drop_webhooks: f64,
    /// Seed of the fault injection.
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    /// A job's time limit in seconds.
    #[arg(long, default_value_t = 3600)]
    job_timeout: u64,
}

#[derive(Subcommand)]
enum InboxCommand {
    /// Counts of pending, processed and failed deliveries.
    Stats,
    /// The newest deliveries, newest first.
    List {
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Put a delivery parked as failed back in line (after fixing the cause).
    Retry { delivery_id: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum StatusArg {
    Pending,
    Processed,
    Failed,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Job(_) | Command::Publish(_)) {
        // Before any thread exists: re-executes without credentials in the
        // environment, so the agent's commands cannot read them back.
        if let Err(e) = missions::job::protect_secrets() {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    // Stdout is the MCP stream there: nothing else may write to it.
    if let Command::McpFinish { url } = &cli.command {
        return match tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(missions::agent::mcp::serve_stdio(url)))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // The demo prints its own story; the App's log would drown it.
    init_tracing(if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    });
    // One TLS crypto provider (ring) for every HTTPS client the process builds.
    missions::llm::http::install_crypto_provider();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: what went wrong, with its causes.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve => {
            let config = Config::load(cli.config.as_deref())?;
            missions::server::run(config, missions::clock::system()).await
        }
        Command::Sim(args) => run_sim(args).await,
        Command::Demo(args) => {
            let timeout = match args.timeout {
                Some(m) if m.is_finite() && m > 0.0 && m <= 7.0 * 24.0 * 60.0 => {
                    Some(std::time::Duration::from_secs_f64(m * 60.0))
                }
                Some(m) => anyhow::bail!(
                    "--timeout {m}: give the minutes the mission may take, more than 0 (e.g. --timeout 90)"
                ),
                None => None,
            };
            missions::demo::run::run(missions::demo::run::DemoOptions {
                keep: args.keep,
                dir: args.dir,
                timeout,
                models: args.models,
                engines: args.engines,
                repo: args.repo,
                issue_file: args.issue_file,
                missions_binary: None,
                project: args.project,
            })
            .await?
            .into_result()
            .map(|_| ())
        }
        Command::Job(args) => run_job(args).await,
        Command::Publish(args) => run_publish(args).await,
        Command::AppManifest(args) => missions::manifest::run(args, cli.config).await,
        Command::Init(args) => missions::init::main(args),
        Command::Engines { names } => install_engines(&names).await,
        Command::McpFinish { .. } => unreachable!("served before the runtime starts"),
        Command::Inbox { command } => {
            let vars: HashMap<String, String> = std::env::vars().collect();
            let url = config::load_database_url(cli.config.as_deref(), &vars)?;
            let store = Store::open(&url).await?;
            let result = inbox_command(&store, command).await;
            store.close().await;
            result
        }
    }
}

async fn install_engines(names: &[String]) -> anyhow::Result<()> {
    use missions::agent::engine::{self, PRESETS};
    let chosen: Vec<&engine::Preset> = if names.is_empty() {
        PRESETS.to_vec()
    } else {
        names
            .iter()
            .map(|n| {
                PRESETS
                    .iter()
                    .copied()
                    .find(|p| p.name == n)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "unknown engine `{n}`; the presets are claude-code and codex"
                        )
                    })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let dir = engine::engines_dir(&|k| std::env::var(k).ok());
    for preset in chosen {
        let installed = preset.ensure_installed(&dir).await?;
        println!(
            "{}: {} in {}",
            preset.name,
            preset.versions,
            installed.display()
        );
    }
    Ok(())
}

async fn run_job(args: JobCliArgs) -> anyhow::Result<()> {
    let non_empty = |s: String| Some(s).filter(|s| !s.trim().is_empty());
    let args = missions::job::JobArgs {
        role: args.inputs.role,
        mission: args.inputs.mission,
        task: args.task,
        job: args.inputs.job,
        feature: non_empty(args.inputs.feature),
        config_ref: non_empty(args.inputs.config_ref),
        transcript_dir: args.transcript_dir,
        result_dir: args.result_dir,
        issue_sha256: non_empty(args.issue_sha256),
        spend_limit_micros: missions::job::parse_usd(&args.spend_limit_usd)?,
        server_model: missions::job::parse_server_model(&args.server_model)?,
    };
    let role = args.role;
    let summary = match missions::job::run(args).await {
        Ok(summary) => summary,
        Err(e) => {
            println!(
                "{}",
                missions::job::annotation(
                    &format!("missions {} job failed", role.as_str()),
                    &format!("{e:#}")
                )
            );
            return Err(e);
        }
    };
    for line in &summary.lines {
        println!("{line}");
    }
    // An agent that stopped early left a result (the publish job pushes it
    // and the App reads it), but the run must not look green.
    if let missions::mission::JobResult::Incomplete { reason } = &summary.output.result {
        println!(
            "{}",
            missions::job::annotation(&format!("missions {} incomplete", role.as_str()), reason)
        );
        anyhow::bail!(
            "the {} agent ended incomplete: {reason} (its result is left for the publish job)",
            role.as_str()
        );
    }
    Ok(())
}

async fn run_publish(args: PublishCliArgs) -> anyhow::Result<()> {
    let non_empty = |s: String| Some(s).filter(|s| !s.trim().is_empty());
    let role = args.inputs.role;
    let published = missions::job::publish(missions::job::PublishArgs {
        role: args.inputs.role,
        mission: args.inputs.mission,
        job: args.inputs.job,
        feature: non_empty(args.inputs.feature),
        config_ref: non_empty(args.inputs.config_ref),
        result_dir: args.result_dir,
    })
    .await;
    let lines = published.inspect_err(|e| {
        println!(
            "{}",
            missions::job::annotation(
                &format!("missions publish ({}) failed", role.as_str()),
                &format!("{e:#}")
            )
        );
    })?;
    for line in &lines {
        println!("{line}");
    }
    Ok(())
}

async fn inbox_command(store: &Store, command: InboxCommand) -> anyhow::Result<()> {
    match command {
        InboxCommand::Stats => {
            let counts = inbox::counts(store.pool()).await?;
            println!("{}", serde_json::to_string(&counts)?);
        }
        InboxCommand::List { status, limit } => {
            let status = status.map(|s| match s {
                StatusArg::Pending => Status::Pending,
                StatusArg::Processed => Status::Processed,
                StatusArg::Failed => Status::Failed,
            });
            for d in inbox::list(store.pool(), status, limit).await? {
                let received = d
                    .received_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_else(|_| d.received_at.to_string());
                let status = serde_json::to_value(d.status)?;
                println!(
                    "{}\t{}\t{}.{}\t{}\t{}\tattempts={}{}",
                    received,
                    d.delivery_id,
                    d.event,
                    d.action.as_deref().unwrap_or("-"),
                    d.repository.as_deref().unwrap_or("-"),
                    status.as_str().unwrap_or("?"),
                    d.attempts,
                    d.last_error
                        .map(|e| format!("\terror: {e}"))
                        .unwrap_or_default(),
                );
            }
        }
        InboxCommand::Retry { delivery_id } => {
            let requeued = inbox::requeue_failed(store.pool(), &delivery_id)
                .await
                .context("cannot requeue")?;
            if !requeued {
                anyhow::bail!(
                    "no failed delivery {delivery_id:?} (see `missions inbox list --status failed`)"
                );
            }
            println!("requeued {delivery_id}; a running server picks it up within 30 s");
        }
    }
    Ok(())
}

async fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    use missions::sim::{FaultConfig, standalone};
    for (name, rate) in [
        ("--api-error-rate", args.api_error_rate),
        ("--rate-limit-rate", args.rate_limit_rate),
        ("--drop-webhooks", args.drop_webhooks),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&rate),
            "{name} must be between 0 and 1, not {rate}"
        );
    }
    let (data_dir, temporary) = match args.data_dir {
        Some(dir) => (dir, false),
        None => (
            std::env::temp_dir().join(format!("missions-sim-{}", std::process::id())),
            true,
        ),
    };
    let secret = std::env::var(config::env::WEBHOOK_SECRET)
        .ok()
        .filter(|s| !s.is_empty())
        .map(secrecy::SecretString::from);
    let options = standalone::StandaloneOptions {
        port: args.port,
        app_key: args.app_key.unwrap_or_else(|| data_dir.join("app-key.pem")),
        data_dir: data_dir.clone(),
        webhook_url: args.webhook_url,
        webhook_secret: secret,
        workflow_commands: args.workflow_commands,
        faults: FaultConfig {
            api_error_rate: args.api_error_rate,
            api_rate_limit_rate: args.rate_limit_rate,
            webhook_drop_rate: args.drop_webhooks,
            seed: args.seed,
            ..FaultConfig::default()
        },
        job_timeout: std::time::Duration::from_secs(args.job_timeout),
    };
    let stop = missions::server::shutdown_signal()?;
    let sim = standalone::start(options).await?;
    stop.await;
    sim.shutdown();
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    Ok(())
}

/// `default` applies when RUST_LOG is unset.
fn init_tracing(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
