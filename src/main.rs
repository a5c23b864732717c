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
    /// Run the App: webhook receiver, durable inbox, event loop.
    Serve,
    /// Look into the inbox of stored webhook deliveries.
    Inbox {
        #[command(subcommand)]
        command: InboxCommand,
    },
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
    init_tracing();
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

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
