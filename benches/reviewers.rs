//! Scrutiny of one milestone of eight features, its reviewers one at a time
//! against four at once (`cargo bench --bench reviewers`). Each run is a real
//! `missions job --role scrutiny` through the simulator's Actions runner;
//! each reviewer reads a file and then finishes, its scripted model taking a
//! fixed time per answer (`--latency-ms`, default 1000), as a real model's
//! does. Prints one table: reviewers running at once at most, the wall time
//! of the reviews (first start to last end, from the transcripts) and of the
//! whole job, and the speed-up. Exits 1 if the two reports differ.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::time::Duration;

use common::jobs::{Reviewed, review_eight_features};

fn main() {
    let latency_ms: u64 = std::env::args()
        .skip_while(|a| a != "--latency-ms")
        .nth(1)
        .map(|v| v.parse().expect("--latency-ms takes milliseconds"))
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let columns: Vec<(&str, Reviewed)> = [
        ("one at a time", "parallel:\n  reviewers: 1\n"),
        ("4 at once (default)", ""),
    ]
    .into_iter()
    .map(|(label, yml)| {
        eprintln!("== scrutiny of 8 features, reviewers {label}");
        (
            label,
            runtime.block_on(review_eight_features(yml, |_| latency_ms)),
        )
    })
    .collect();

    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let (serial, parallel) = (&columns[0].1, &columns[1].1);
    println!("\nscrutiny of 8 features, each reviewer 2 model answers of {latency_ms} ms\n");
    println!("| reviewers | at once (most) | reviews | whole job |");
    println!("|---|---:|---:|---:|");
    for (label, r) in &columns {
        println!(
            "| {label} | {} | {} | {} |",
            r.most_at_once,
            secs(r.reviews),
            secs(r.job)
        );
    }
    println!(
        "| speed-up | | {:.1}× | {:.1}× |",
        serial.reviews.as_secs_f64() / parallel.reviews.as_secs_f64(),
        serial.job.as_secs_f64() / parallel.job.as_secs_f64()
    );
    let same = serial.report == parallel.report;
    println!(
        "\nreports: {}",
        if same {
            "the same"
        } else {
            "DIFFERENT (a bug)"
        }
    );
    std::process::exit(if same { 0 } else { 1 });
}
