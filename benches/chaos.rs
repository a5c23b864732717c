//! The chaos table (`cargo bench --bench chaos -- --runs 20`): the demo mission
//! run N times with the App killed (SIGKILL) and restarted on its database at a
//! random moment of each run, every webhook sent twice, deliveries shuffled in
//! windows of 4, 10% of them dropped, and 20% of all REST calls answered 5xx or
//! with a secondary rate limit. Prints one line per run and the totals; exits 1
//! unless every run completed with no duplicate and no loss.
//!
//! Options: `--runs N` (20), `--seed S` (1), `--kills K` per run (1),
//! `--dir PATH` to keep each run's simulator, database and App log,
//! `--replicas R` (1) `missions serve` processes behind a round-robin load
//! balancer, `--database sqlite|postgres` (sqlite; several replicas need
//! postgres: a private server from Debian's packages, one database per run),
//! `--kill-driver` to kill the replica driving the missions rather than a
//! random one.

use std::path::PathBuf;

use missions::demo::chaos::{self, ChaosOptions};
use missions::store::Engine;

fn main() {
    let mut options = ChaosOptions::new(PathBuf::from(env!("CARGO_BIN_EXE_missions")));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match arg.as_str() {
            "--runs" => options.runs = value("--runs").parse().expect("--runs N"),
            "--seed" => options.seed = value("--seed").parse().expect("--seed S"),
            "--kills" => options.kills = value("--kills").parse().expect("--kills K"),
            "--dir" => options.dir = Some(PathBuf::from(value("--dir"))),
            "--kill-driver" => options.kill_driver = true,
            "--replicas" => options.replicas = value("--replicas").parse().expect("--replicas R"),
            "--database" => {
                options.database = match value("--database").as_str() {
                    "sqlite" => Engine::Sqlite,
                    "postgres" | "postgresql" => Engine::Postgres,
                    other => panic!("--database sqlite|postgres, not {other}"),
                }
            }
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
    let report = runtime
        .block_on(chaos::run(&options))
        .expect("the chaos runner could not run");
    println!("{}", report.table());
    if !report.meets_target() {
        std::process::exit(1);
    }
}
