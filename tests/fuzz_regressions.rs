//! Replays, on stable Rust, what the fuzz targets (`fuzz/`, docs/fuzzing.md) start
//! from and everything they ever found: each input goes through the same
//! `missions::fuzzing` function as its cargo-fuzz target, which asserts its
//! properties (a panic fails the test and names the input).
//!
//! - `fuzz/regressions/<target>/`: inputs that once crashed a target (kept
//!   forever, one file each);
//! - `fuzz/seeds/<target>/`: the hand-made seeds;
//! - the seeds `.ci/fuzz` generates at run time: GitHub's webhook examples
//!   (`../shared/github-fixtures/webhooks/<event>/*.json`) and the YAML examples
//!   of docs/configuration.md; plus every result the demo's scripted model
//!   finishes with.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use missions::demo::scripts::{self, Story};
use missions::fuzzing;

type Target = fn(&[u8]);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs every input through `target`; fails naming each input that panicked.
fn replay(name: &str, target: Target, inputs: &[(String, Vec<u8>)], at_least: usize) {
    assert!(
        inputs.len() >= at_least,
        "{name}: only {} inputs (expected at least {at_least}); is a directory missing?",
        inputs.len()
    );
    let failed: Vec<&str> = inputs
        .iter()
        .filter(|(_, data)| catch_unwind(AssertUnwindSafe(|| target(data))).is_err())
        .map(|(origin, _)| origin.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "{name}: {} of {} inputs fail (the panics are above):\n  {}\nreproduce one with `cargo fuzz run {name} <file>` in fuzz/ (docs/fuzzing.md)",
        failed.len(),
        inputs.len(),
        failed.join("\n  ")
    );
}

/// The files of `dir`, sorted; READMEs are not inputs. A missing directory has none.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.expect("read dir").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("README")
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).expect("read input");
            (p.display().to_string(), data)
        })
        .collect()
}

/// The committed seeds and regressions of a target.
fn committed(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = files(&root().join("fuzz/seeds").join(target));
    out.extend(files(&root().join("fuzz/regressions").join(target)));
    out
}

fn webhook_fixtures() -> PathBuf {
    let dir = match std::env::var_os("MISSIONS_FIXTURES_DIR") {
        Some(dir) => PathBuf::from(dir).join("webhooks"),
        None => root().join("../shared/github-fixtures/webhooks"),
    };
    assert!(
        dir.is_dir(),
        "webhook fixtures not found at {}; set MISSIONS_FIXTURES_DIR to the github-fixtures directory",
        dir.display()
    );
    dir
}

#[test]
fn webhook_inputs_hold() {
    let mut inputs = committed("webhook");
    let dir = webhook_fixtures();
    let mut events: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    events.sort();
    for event_dir in events {
        let event = event_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for (origin, body) in files(&event_dir) {
            // As .ci/fuzz writes them: no signature header (the target signs
            // the body itself); and as an event the App does not know.
            inputs.push((origin.clone(), fuzzing::webhook_input(&event, "", &body)));
            inputs.push((
                format!("{origin} (as `{event}_unknown`)"),
                fuzzing::webhook_input(&format!("{event}_unknown"), "sha256=", &body),
            ));
        }
    }
    replay("webhook", fuzzing::webhook, &inputs, 80);
}

#[test]
fn model_output_inputs_hold() {
    let mut inputs = committed("model_output");
    let stories = [
        Story::default(),
        Story {
            ask_question: true,
            revise: true,
            break_f2: true,
            f1_unresolved_issue: true,
            f1_failed_runs: 1,
            ..Story::default()
        },
        Story {
            trivial_check: true,
            keep_trivial_check: true,
            f1_without_lines: true,
            ..Story::default()
        },
    ];
    for (n, story) in stories.iter().enumerate() {
        for (name, turns) in scripts::scripts(story) {
            for turn in turns {
                let calls = turn["tool_calls"].as_array().cloned().unwrap_or_default();
                for call in calls.iter().filter(|c| c["name"] == "finish") {
                    let json = serde_json::to_vec(&call["input"]).unwrap();
                    inputs.push((format!("demo story {n}: {name}"), json));
                }
            }
        }
    }
    for one_milestone in [false, true] {
        let plan = serde_json::to_vec_pretty(&scripts::plan(one_milestone)).unwrap();
        inputs.push((format!("demo plan (one milestone: {one_milestone})"), plan));
    }
    replay("model_output", fuzzing::model_output, &inputs, 30);
}

#[test]
fn repo_config_inputs_hold() {
    let mut inputs = committed("repo_config");
    let docs = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    for (n, block) in yaml_blocks(&docs).into_iter().enumerate() {
        inputs.push((
            format!("docs/configuration.md yaml block {}", n + 1),
            block.into_bytes(),
        ));
    }
    let demo = missions::demo::project::missions_yml("/tmp/scripts", 2.5);
    inputs.push(("the demo's missions.yml".into(), demo.into_bytes()));
    replay("repo_config", fuzzing::repo_config, &inputs, 10);
}

/// The ```yaml blocks of a markdown file (as .ci/fuzz extracts them).
fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_start().starts_with("```yaml") => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_start().starts_with("```") => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}
