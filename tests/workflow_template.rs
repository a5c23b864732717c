//! The mission workflow template (`templates/missions.yml`, which `missions init`
//! writes as `.github/workflows/missions.yml`) and the composite action it uses
//! (`action.yml`): their structure, checked against what the App dispatches and
//! what the job harness accepts; the action's install steps run against fake
//! releases in local directories; the action's `missions job` step run
//! through the simulator's Actions runner with this build's binary; and the
//! release workflow's tag filter and version check.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use common::scenario::{Scenario, ScenarioOptions};
use missions::job::TaskKind;
use missions::mission::JobRole;
use missions::sim::RepoSpec;
use missions::sim::sample;
use missions::sim::state::RunStatus;
use serde_json::{Value as Json, json};
use yaml_serde::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// What `missions init` replaces in the template with the App's own
/// repository and release.
const ACTION_PLACEHOLDER: &str = "missions-app/missions@v0";
/// The name of the action step that runs `missions job`.
const RUN_STEP: &str = "Run missions job";
/// Actions' own limit for a job on GitHub-hosted runners.
const MAX_TIMEOUT_MINUTES: u64 = 360;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn yaml(path: &str) -> Value {
    yaml_serde::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn template() -> Value {
    yaml("templates/missions.yml")
}

fn action() -> Value {
    yaml("action.yml")
}

fn str_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v:?}"))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_mapping()
        .unwrap_or_else(|| panic!("expected a mapping, got {v:?}"))
        .keys()
        .map(|k| str_of(k).to_owned())
        .collect()
}

/// `on:` of a workflow (a YAML 1.1 reader may have made the key `true`).
fn triggers(workflow: &Value) -> &Value {
    let on = workflow
        .get("on")
        .or_else(|| workflow.get(Value::Bool(true)));
    on.expect("the workflow has `on:`")
}

/// The input names of the App's `workflow_dispatch` (the `inputs` object in
/// `effects.rs`'s `dispatch`, and the ones it adds to it): the one place the
/// App spells them.
fn dispatched_inputs() -> BTreeSet<String> {
    let source = read("src/engine/missions/effects.rs");
    let start = source
        .find("async fn dispatch(")
        .expect("effects.rs has `dispatch`");
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").expect("dispatch ends")];
    let inputs = &body[body
        .find("let mut inputs = json!({")
        .expect("dispatch sends inputs")..];
    let inputs = &inputs[..inputs.find('}').unwrap()];
    let mut names: BTreeSet<String> = regex::Regex::new(r#""([a-z_0-9]+)":"#)
        .unwrap()
        .captures_iter(inputs)
        .map(|c| c[1].to_owned())
        .collect();
    names.extend(
        regex::Regex::new(r#"inputs\["([a-z_0-9]+)"\]"#)
            .unwrap()
            .captures_iter(body)
            .map(|c| c[1].to_owned()),
    );
    assert!(names.len() >= 5, "{names:?}");
    names
}

/// `${{ inputs.NAME }}` → NAME (the whole value being that one expression).
fn input_reference(value: &str) -> Option<&str> {
    let inner = value.trim().strip_prefix("${{")?.strip_suffix("}}")?.trim();
    inner.strip_prefix("inputs.")
}

fn all_roles() -> Vec<JobRole> {
    // Exhaustive: a new role must be added to the template's choices.
    let all = [
        JobRole::Orchestrator,
        JobRole::Worker,
        JobRole::Scrutiny,
        JobRole::UserTesting,
    ];
    for role in all {
        match role {
            JobRole::Orchestrator | JobRole::Worker | JobRole::Scrutiny | JobRole::UserTesting => {}
        }
    }
    all.to_vec()
}

fn all_tasks() -> Vec<TaskKind> {
    let all = [
        TaskKind::Scope,
        TaskKind::Revise,
        TaskKind::Feature,
        TaskKind::Triage,
        TaskKind::FollowUp,
        TaskKind::Replan,
        TaskKind::Boundary,
        TaskKind::Validate,
    ];
    for task in all {
        match task {
            TaskKind::Scope
            | TaskKind::Revise
            | TaskKind::Feature
            | TaskKind::Triage
            | TaskKind::FollowUp
            | TaskKind::Replan
            | TaskKind::Boundary
            | TaskKind::Validate => {}
        }
    }
    all.to_vec()
}

fn choice_options(input: &Value) -> Vec<String> {
    assert_eq!(input["type"].as_str(), Some("choice"), "{input:?}");
    input["options"]
        .as_sequence()
        .expect("options")
        .iter()
        .map(|o| str_of(o).to_owned())
        .collect()
}

/// The template's job `name` (it has exactly `agent` and `publish`).
fn job_named<'a>(workflow: &'a Value, name: &str) -> &'a Value {
    let jobs = workflow["jobs"].as_mapping().expect("jobs");
    let names: BTreeSet<String> = jobs.keys().map(|k| str_of(k).to_owned()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["agent".to_owned(), "publish".to_owned()]),
        "the template runs the agent and publishes its result in two jobs"
    );
    &workflow["jobs"][name]
}

/// The job that runs the agent (read-only token).
fn the_job(workflow: &Value) -> &Value {
    job_named(workflow, "agent")
}

/// The job that checks and pushes the agent's result (write token).
fn publish_job(workflow: &Value) -> &Value {
    job_named(workflow, "publish")
}

fn steps(job_or_runs: &Value) -> &Vec<Value> {
    job_or_runs["steps"].as_sequence().expect("steps")
}

/// The step of `job` that uses the missions action.
fn missions_step(job: &Value) -> &Value {
    let uses: Vec<&Value> = steps(job)
        .iter()
        .filter(|s| s["uses"].as_str() == Some(ACTION_PLACEHOLDER))
        .collect();
    assert_eq!(
        uses.len(),
        1,
        "one step of the job uses {ACTION_PLACEHOLDER}"
    );
    uses[0]
}

/// The agent job's step that uses the missions action.
fn action_step(workflow: &Value) -> &Value {
    missions_step(the_job(workflow))
}

fn run_step(action: &Value) -> &Value {
    steps(&action["runs"])
        .iter()
        .find(|s| s["name"].as_str() == Some(RUN_STEP))
        .unwrap_or_else(|| panic!("action.yml has no step {RUN_STEP:?}"))
}

/// Every step's `run:` script in a document, with where it is.
fn run_scripts(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Mapping(map) => {
            for (k, v) in map {
                let key = k.as_str().unwrap_or("?");
                let here = format!("{at}.{key}");
                if key == "steps" {
                    for (i, step) in v.as_sequence().expect("steps").iter().enumerate() {
                        if let Some(script) = step.get("run") {
                            out.push((format!("{here}[{i}]"), str_of(script).to_owned()));
                        }
                    }
                }
                run_scripts(v, &here, out);
            }
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter().enumerate() {
                run_scripts(v, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The text of a YAML file's comments, lines joined by single spaces.
fn comment_text(text: &str) -> String {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix('#'))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every mapping key anywhere in a document.
fn all_keys(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Mapping(map) => {
            for (k, v) in map {
                if let Some(k) = k.as_str() {
                    out.insert(k.to_owned());
                }
                all_keys(v, out);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| all_keys(v, out)),
        _ => {}
    }
}

#[test]
fn the_template_takes_exactly_the_inputs_the_app_dispatches() {
    let workflow = template();
    let on = triggers(&workflow);
    assert_eq!(
        keys(on),
        BTreeSet::from(["workflow_dispatch".to_owned()]),
        "only the App's dispatch starts a mission job"
    );
    let inputs = &on["workflow_dispatch"]["inputs"];
    let dispatched = dispatched_inputs();
    assert_eq!(keys(inputs), dispatched);

    // The simulator's (and the demo's) job command takes the same inputs.
    let command = missions::demo::job_command(Path::new("missions"));
    let in_command: BTreeSet<String> = command
        .iter()
        .filter_map(|a| input_reference(a))
        .map(str::to_owned)
        .collect();
    assert_eq!(in_command, dispatched);

    // Typed: the choices are exactly the roles and tasks the harness knows.
    let roles = choice_options(&inputs["role"]);
    let expected: Vec<String> = all_roles().iter().map(|r| r.as_str().to_owned()).collect();
    assert_eq!(roles, expected);
    for role in &roles {
        assert_eq!(missions::job::parse_role(role).unwrap().as_str(), role);
    }
    let tasks = choice_options(&inputs["task"]);
    let expected: Vec<String> = all_tasks().iter().map(|t| t.as_str().to_owned()).collect();
    assert_eq!(tasks, expected);
    for task in &tasks {
        assert_eq!(TaskKind::from_str(task).unwrap().as_str(), task);
    }

    // `feature` is empty for most tasks; every other input is always sent.
    for (name, input) in inputs.as_mapping().unwrap() {
        let name = str_of(name);
        assert!(
            !str_of(&input["description"]).trim().is_empty(),
            "{name} is described"
        );
        let required = input["required"].as_bool() == Some(true);
        assert_eq!(
            required,
            !["feature", "issue_sha256", "spend_limit_usd", "server_model"].contains(&name),
            "{name}: required"
        );
    }
    assert_eq!(inputs["feature"]["default"].as_str(), Some(""));
    // Missions without a budget send no limit.
    assert_eq!(inputs["spend_limit_usd"]["default"].as_str(), Some(""));
    // Missions started before the App kept the issue's text send none.
    assert_eq!(inputs["issue_sha256"]["default"].as_str(), Some(""));

    // The run's name carries the job key (the App may match runs by it).
    let run_name = str_of(&workflow["run-name"]);
    assert!(run_name.contains("inputs.job"), "{run_name}");
    assert!(run_name.contains("inputs.mission"), "{run_name}");
}

#[test]
fn the_template_asks_for_the_least_permissions_and_runs_a_mission_serially() {
    let workflow = template();
    let top = workflow["permissions"]
        .as_mapping()
        .expect("top-level permissions: {}");
    assert!(top.is_empty(), "no workflow-wide permissions: {top:?}");

    let job = the_job(&workflow);
    let permissions_of = |job: &Value| -> BTreeMap<String, String> {
        job["permissions"]
            .as_mapping()
            .expect("job permissions")
            .iter()
            .map(|(k, v)| (str_of(k).to_owned(), str_of(v).to_owned()))
            .collect()
    };
    // The agent's job can only read: the write token never shares a job
    // with agent code.
    let least = BTreeMap::from([
        ("contents".to_owned(), "read".to_owned()),
        ("issues".to_owned(), "read".to_owned()),
        ("pull-requests".to_owned(), "read".to_owned()),
    ]);
    assert_eq!(permissions_of(job), least);
    // The publish job writes, after the agent's job, with no model key, no
    // checkout and nothing but the artifact and the missions action.
    let publish = publish_job(&workflow);
    assert_eq!(
        permissions_of(publish),
        BTreeMap::from([("contents".to_owned(), "write".to_owned())])
    );
    assert_eq!(publish["needs"].as_str(), Some("agent"));
    let publish_text = yaml_serde::to_string(publish).unwrap();
    assert!(!publish_text.contains("secrets."), "{publish_text}");
    assert!(!publish_text.contains("actions/checkout"), "{publish_text}");
    let publish_steps = steps(publish);
    assert_eq!(publish_steps.len(), 2, "{publish_steps:?}");
    assert!(
        str_of(&publish_steps[0]["uses"]).starts_with("actions/download-artifact@"),
        "{:?}",
        publish_steps[0]
    );
    assert_eq!(publish_steps[1]["uses"].as_str(), Some(ACTION_PLACEHOLDER));
    assert_eq!(publish_steps[1]["with"]["mode"].as_str(), Some("publish"));
    // The artifact travels from the agent's job's last step to the publish
    // job's first, under one name and path.
    let upload = steps(job).last().unwrap();
    assert!(
        str_of(&upload["uses"]).starts_with("actions/upload-artifact@"),
        "{upload:?}"
    );
    for key in ["name", "path"] {
        assert_eq!(upload["with"][key], publish_steps[0]["with"][key], "{key}");
    }
    assert_eq!(
        str_of(&upload["with"]["path"]),
        "${{ runner.temp }}/missions-result"
    );
    assert_eq!(
        action_step(&workflow)["with"]["mode"].as_str(),
        Some("agent")
    );

    // One job per mission at a time, never cancelled by the next.
    let concurrency = &workflow["concurrency"];
    assert!(
        str_of(&concurrency["group"]).contains("${{ inputs.mission }}"),
        "{concurrency:?}"
    );
    assert_eq!(concurrency["cancel-in-progress"].as_bool(), Some(false));

    let timeout = job["timeout-minutes"].as_u64().expect("timeout-minutes");
    assert!((1..=MAX_TIMEOUT_MINUTES).contains(&timeout), "{timeout}");
    // The App's job_timeout counts from the dispatch (queueing included).
    let comments = comment_text(&read("templates/missions.yml"));
    assert!(
        comments.contains(
            "keep it well below the App's `job_timeout` (6 h by default), which counts from the dispatch"
        ),
        "{comments}"
    );
    assert!(!comments.contains("at most 360"), "{comments}");

    // No job-wide `env:`: an extra provider key goes on the action's step
    // (the example says so), where the checkout never sees it.
    assert!(job.get("env").is_none(), "no job-level env");
    let text = read("templates/missions.yml");
    let uses_at = text.find(ACTION_PLACEHOLDER).unwrap();
    let example_at = text
        .find("#   OPENROUTER_API_KEY: ${{ secrets.OPENROUTER_API_KEY }}")
        .expect("the example of another provider's key");
    assert!(example_at > uses_at, "the example is on the action's step");
    let example_indent = text[..example_at].rsplit('\n').next().unwrap().len();
    let uses_line = text[..uses_at].rsplit('\n').next().unwrap();
    assert_eq!(
        example_indent,
        uses_line.len() - uses_line.trim_start().len(),
        "the example's `env:` is a key of the action's step"
    );
    assert!(text[example_at..].starts_with(&format!(
        "#   OPENROUTER_API_KEY: ${{{{ secrets.OPENROUTER_API_KEY }}}}\n{}with:",
        " ".repeat(example_indent)
    )));

    // Nothing a fork could trigger.
    let mut names = BTreeSet::new();
    all_keys(&workflow, &mut names);
    for dangerous in ["pull_request_target", "workflow_run", "pull_request"] {
        assert!(!names.contains(dangerous), "{dangerous}");
    }

    // The checkout keeps no credentials, then the action runs.
    let steps = steps(job);
    let checkout = &steps[0];
    assert!(
        str_of(&checkout["uses"]).starts_with("actions/checkout@"),
        "{checkout:?}"
    );
    assert_eq!(
        checkout["with"]["persist-credentials"].as_bool(),
        Some(false)
    );
    let position = steps
        .iter()
        .position(|s| s["uses"].as_str() == Some(ACTION_PLACEHOLDER))
        .expect("the action step");
    assert!(position > 0, "the action runs after the checkout");
    // `missions init` replaces the placeholder: once per job.
    assert_eq!(
        read("templates/missions.yml")
            .matches(ACTION_PLACEHOLDER)
            .count(),
        2
    );
}

#[test]
fn the_template_passes_every_dispatch_input_to_the_action() {
    let workflow = template();
    let action_inputs = keys(&action()["inputs"]);
    // Both jobs' missions steps take only the action's inputs, and every
    // dispatch input as itself (the publish job names the same job; it
    // spends nothing, so it takes no spending limit).
    let checked_with = |job: &str| -> &Value {
        let with = &missions_step(job_named(&workflow, job))["with"];
        for name in keys(with) {
            assert!(
                action_inputs.contains(&name),
                "{job}: the action has no input {name}"
            );
        }
        for input in dispatched_inputs() {
            if job == "publish" && ["spend_limit_usd", "server_model"].contains(&input.as_str()) {
                assert!(with.get(input.replace('_', "-").as_str()).is_none());
                continue;
            }
            let action_input = input.replace('_', "-");
            let value = str_of(&with[action_input.as_str()]);
            assert_eq!(
                input_reference(value),
                Some(input.as_str()),
                "{job}: {action_input}: {value}"
            );
        }
        with
    };
    // The provider keys come from secrets, nowhere else, and only to the
    // agent's job.
    let with = checked_with("agent");
    for (input, secret) in [
        ("anthropic-api-key", "ANTHROPIC_API_KEY"),
        ("openai-api-key", "OPENAI_API_KEY"),
    ] {
        assert_eq!(str_of(&with[input]), format!("${{{{ secrets.{secret} }}}}"));
    }
    let with = checked_with("publish");
    assert!(with.get("anthropic-api-key").is_none());
    assert!(with.get("openai-api-key").is_none());
}

#[test]
fn the_action_documents_its_inputs_and_keeps_credentials_in_one_step() {
    let action = action();
    assert_eq!(action["runs"]["using"].as_str(), Some("composite"));
    assert!(!str_of(&action["description"]).trim().is_empty());
    let inputs = action["inputs"].as_mapping().unwrap();
    for (name, input) in inputs {
        assert!(
            str_of(&input["description"]).trim().len() > 20,
            "{name:?} is documented"
        );
    }
    let required: BTreeSet<String> = inputs
        .iter()
        .filter(|(_, i)| i["required"].as_bool() == Some(true))
        .map(|(n, _)| str_of(n).to_owned())
        .collect();
    let expected: BTreeSet<String> = ["role", "mission", "task", "job"].map(str::to_owned).into();
    assert_eq!(required, expected);
    let default = |name: &str| {
        action["inputs"][name]["default"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(default("feature").as_deref(), Some(""));
    assert_eq!(default("config").as_deref(), Some(".github/missions.yml"));
    assert_eq!(
        default("github-token").as_deref(),
        Some("${{ github.token }}")
    );
    assert_eq!(default("version").as_deref(), Some(""));
    // Older workflows (one job) keep working, with a warning.
    assert_eq!(default("mode").as_deref(), Some("job"));

    // The token and the keys are in the environment of the step that runs
    // `missions job`, and of no other step.
    let secret_inputs = ["github-token", "anthropic-api-key", "openai-api-key"];
    for step in steps(&action["runs"]) {
        let text = yaml_serde::to_string(step).unwrap();
        let is_run_step = step["name"].as_str() == Some(RUN_STEP);
        for input in secret_inputs {
            assert_eq!(
                text.contains(&format!("inputs.{input}")),
                is_run_step,
                "{input} in {:?}",
                step["name"]
            );
        }
    }
    let env = &run_step(&action)["env"];
    assert_eq!(
        env["GITHUB_TOKEN"].as_str(),
        Some("${{ inputs.github-token }}")
    );
    assert_eq!(
        env["ANTHROPIC_API_KEY"].as_str(),
        Some("${{ inputs.anthropic-api-key }}")
    );
    assert_eq!(
        env["OPENAI_API_KEY"].as_str(),
        Some("${{ inputs.openai-api-key }}")
    );
}

#[test]
fn no_expression_is_interpolated_into_a_script() {
    for path in [
        "templates/missions.yml",
        "action.yml",
        ".github/workflows/ci.yml",
        ".github/workflows/release.yml",
    ] {
        let mut scripts = Vec::new();
        run_scripts(&yaml(path), "", &mut scripts);
        assert!(
            !scripts.is_empty() || path == "templates/missions.yml",
            "{path}"
        );
        for (at, script) in scripts {
            assert!(!script.contains("${{"), "{path}{at}: {script}");
        }
    }
    // The action's scripts are bash, and parse.
    for step in steps(&action()["runs"]) {
        let Some(script) = step["run"].as_str() else {
            continue;
        };
        assert_eq!(step["shell"].as_str(), Some("bash"), "{:?}", step["name"]);
        let out = Command::new("bash")
            .args(["-n", "-c", script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{:?}: {}",
            step["name"],
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_action_refuses_a_settings_path_it_cannot_honour() {
    let action = action();
    let script = str_of(&run_step(&action)["run"]);
    let out = Command::new("bash")
        .args(["-c", script])
        .env("MISSIONS_CONFIG", "ci/missions.yml")
        .env("MISSIONS_BIN_DIR", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("only .github/missions.yml is supported"),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------
// The action's install steps, run as the runner would run them, against fake
// releases in local directories (`MISSIONS_ACTION_TEST_RELEASES`).

const RESOLVE_STEP: &str = "Choose the missions build";
const INSTALL_STEP: &str = "Install missions";
const RESTORE_STEP: &str = "Restore the missions release archive";
const SAVE_STEP: &str = "Save the missions release archive";
/// The crate's version, which the fake releases are tagged with.
const TAG: &str = concat!("v", env!("CARGO_PKG_VERSION"));
const REPOSITORY: &str = "missions-app/missions";

fn action_step_named<'a>(action: &'a Value, name: &str) -> &'a Value {
    steps(&action["runs"])
        .iter()
        .find(|s| s["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("action.yml has no step {name:?}"))
}

fn step_position(action: &Value, name: &str) -> usize {
    steps(&action["runs"])
        .iter()
        .position(|s| s["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("action.yml has no step {name:?}"))
}

/// `RUNNER_ARCH` and the release target of this machine.
fn runner_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("X64", "x86_64-unknown-linux-gnu"),
        "aarch64" => ("ARM64", "aarch64-unknown-linux-gnu"),
        other => panic!("no release target for {other}"),
    }
}

fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

fn sh(script: &str) {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tarball holding `binary` as `missions`, as release.yml packs it.
fn pack(binary: &Path, tarball: &Path) {
    let staging = tarball.with_extension("staging");
    std::fs::create_dir_all(&staging).unwrap();
    std::os::unix::fs::symlink(binary, staging.join("missions")).unwrap();
    // `-h`: the binary, not the link; `gzip -1`: a debug binary is large.
    sh(&format!(
        "tar -h -C '{}' -cf - missions | gzip -1 > '{}'",
        staging.display(),
        tarball.display()
    ));
    std::fs::remove_dir_all(&staging).unwrap();
}

/// What one step of the action did.
struct StepRun {
    success: bool,
    /// stdout then stderr.
    log: String,
    outputs: BTreeMap<String, String>,
}

/// The fake releases, a fake `cargo`, and a checkout, shared by the cases.
struct Install {
    root: tempfile::TempDir,
    target: &'static str,
    arch: &'static str,
    /// PATH with the fake `cargo` first.
    path: String,
}

/// One job's settings for the install steps.
#[derive(Clone, Copy)]
struct JobSpec<'a> {
    action_ref: &'a str,
    repository: &'a str,
    /// `MISSIONS_ACTION_TEST_RELEASES`.
    releases: &'a Path,
    /// What actions/cache/restore finds under the key: a saved archive dir.
    cache: Option<&'a Path>,
    /// Whether the fake `cargo` is on PATH.
    cargo: bool,
    /// Run as on Actions (`GITHUB_ACTIONS=true`).
    on_actions: bool,
}

/// What the install steps of one job left.
struct JobRun {
    resolve: StepRun,
    install: StepRun,
    runner_temp: PathBuf,
    /// The binary the run step would start.
    bin: PathBuf,
    /// The archive dir actions/cache/save would save, when the save step runs.
    saved: Option<PathBuf>,
}

impl Install {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let (arch, target) = runner_arch();
        let fake = root.path().join("fake-bin");
        std::fs::create_dir_all(&fake).unwrap();
        let cargo_log = root.path().join("cargo.log");
        std::fs::write(
            fake.join("cargo"),
            format!(
                "#!/bin/sh\n\
                 {{ echo \"cwd=$(pwd)\"; echo \"RUSTUP_TOOLCHAIN=${{RUSTUP_TOOLCHAIN:-}}\"; echo \"args=$*\"; }} > '{}'\n\
                 root=''\n\
                 while [ $# -gt 0 ]; do [ \"$1\" = --root ] && root=\"$2\"; shift; done\n\
                 mkdir -p \"$root/bin\"\n\
                 printf '#!/bin/sh\\necho missions compiled from source\\n' > \"$root/bin/missions\"\n\
                 chmod 0755 \"$root/bin/missions\"\n",
                cargo_log.display()
            ),
        )
        .unwrap();
        sh(&format!("chmod 0755 '{}'", fake.join("cargo").display()));
        // The checkout: an agent could have written a toolchain file there.
        let workspace = root.path().join("workspace");
        std::fs::create_dir_all(&workspace).unwrap();
        std::fs::write(
            workspace.join("rust-toolchain.toml"),
            "[toolchain]\npath = \"/nonexistent/evil-toolchain\"\n",
        )
        .unwrap();

        // The releases: a good one (this build's binary), one whose checksum
        // does not match, one without SHA256SUMS.
        let asset = format!("missions-{target}.tar.gz");
        let good = root.path().join("releases-good").join(TAG);
        std::fs::create_dir_all(&good).unwrap();
        pack(
            Path::new(env!("CARGO_BIN_EXE_missions")),
            &good.join(&asset),
        );
        let sum = sha256_file(&good.join(&asset));
        std::fs::write(
            good.join("SHA256SUMS"),
            format!(
                "{sum}  {asset}\n{}  missions-other.tar.gz\n",
                "0".repeat(64)
            ),
        )
        .unwrap();
        let bad = root.path().join("releases-bad-sum").join(TAG);
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::hard_link(good.join(&asset), bad.join(&asset)).unwrap();
        let wrong: String = sum
            .chars()
            .map(|c| if c == '0' { '1' } else { '0' })
            .collect();
        std::fs::write(bad.join("SHA256SUMS"), format!("{wrong}  {asset}\n")).unwrap();
        let no_sums = root.path().join("releases-no-sums").join(TAG);
        std::fs::create_dir_all(&no_sums).unwrap();
        std::fs::hard_link(good.join(&asset), no_sums.join(&asset)).unwrap();

        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            fake.display()
        );
        Install {
            root,
            target,
            arch,
            path,
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn asset(&self) -> String {
        format!("missions-{}.tar.gz", self.target)
    }

    fn cargo_log(&self) -> Option<String> {
        std::fs::read_to_string(self.dir("cargo.log")).ok()
    }

    /// Runs the action's step `name` with its `env:` resolved from `context`
    /// (expression → value; an output of a step that did not set it is empty,
    /// as on Actions).
    fn run_step(
        &self,
        name: &str,
        context: &BTreeMap<String, String>,
        runner: &BTreeMap<&str, String>,
    ) -> StepRun {
        let action = action();
        let step = action_step_named(&action, name);
        assert_eq!(step["shell"].as_str(), Some("bash"));
        let output_file =
            runner["RUNNER_TEMP"].clone() + &format!("/output-{}", step["id"].as_str().unwrap());
        std::fs::write(&output_file, "").unwrap();
        let mut cmd = Command::new("bash");
        // As the runner runs `shell: bash`.
        cmd.args(["--noprofile", "--norc", "-e", "-o", "pipefail", "-c"])
            .arg(str_of(&step["run"]))
            .env_clear()
            .envs(runner.iter().map(|(k, v)| (*k, v.as_str())))
            .env("GITHUB_OUTPUT", &output_file)
            .current_dir(&runner["GITHUB_WORKSPACE"]);
        for (key, value) in step["env"].as_mapping().expect("the step's env") {
            let value = str_of(value);
            let resolved = match input_reference(value) {
                _ if !value.contains("${{") => value.to_owned(),
                Some(input) => context
                    .get(&format!("inputs.{input}"))
                    .cloned()
                    .or_else(|| {
                        action["inputs"][input]["default"]
                            .as_str()
                            .map(str::to_owned)
                    })
                    .unwrap_or_default(),
                None => {
                    let expression = value
                        .trim()
                        .trim_start_matches("${{")
                        .trim_end_matches("}}")
                        .trim();
                    match context.get(expression) {
                        Some(v) => v.clone(),
                        None if expression.starts_with("steps.") => String::new(),
                        None => panic!("{name}: unsupported expression {value}"),
                    }
                }
            };
            cmd.env(str_of(key), resolved);
        }
        let out = cmd.output().unwrap();
        let outputs = std::fs::read_to_string(&output_file)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        StepRun {
            success: out.status.success(),
            log: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            outputs,
        }
    }

    /// The action's steps up to the run step, in a fresh job (its own
    /// RUNNER_TEMP and tool cache), with actions/cache simulated: `spec.cache`
    /// is what the restore step finds; the save step's `if:` decides `saved`.
    fn job(&self, label: &str, spec: JobSpec) -> JobRun {
        let job = self.dir(&format!("job-{label}"));
        let runner_temp = job.join("temp");
        let tool_cache = job.join("tool-cache");
        let home = job.join("home");
        for dir in [&runner_temp, &tool_cache, &home] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let mut runner = BTreeMap::from([
            ("HOME", home.display().to_string()),
            (
                "PATH",
                if spec.cargo {
                    self.path.clone()
                } else {
                    self.path.split_once(':').unwrap().1.to_owned()
                },
            ),
            ("RUNNER_OS", "Linux".to_owned()),
            ("RUNNER_ARCH", self.arch.to_owned()),
            ("RUNNER_TEMP", runner_temp.display().to_string()),
            ("RUNNER_TOOL_CACHE", tool_cache.display().to_string()),
            ("GITHUB_ACTION_PATH", ROOT.to_owned()),
            (
                "GITHUB_WORKSPACE",
                self.dir("workspace").display().to_string(),
            ),
            // Nothing listens there: a download from "GitHub" fails at once.
            ("GITHUB_SERVER_URL", "https://127.0.0.1:9".to_owned()),
            (
                "MISSIONS_ACTION_TEST_RELEASES",
                spec.releases.display().to_string(),
            ),
        ]);
        if spec.on_actions {
            runner.insert("GITHUB_ACTIONS", "true".to_owned());
        }
        let mut context = BTreeMap::from([
            ("github.action_ref".to_owned(), spec.action_ref.to_owned()),
            (
                "github.action_repository".to_owned(),
                spec.repository.to_owned(),
            ),
        ]);
        let resolve = self.run_step(RESOLVE_STEP, &context, &runner);
        assert!(resolve.success, "{}", resolve.log);
        for (k, v) in &resolve.outputs {
            context.insert(format!("steps.resolve.outputs.{k}"), v.clone());
        }
        let tag = resolve.outputs["tag"].clone();
        // actions/cache/restore (its `if:` is on the tag).
        let action = action();
        assert_eq!(
            action_step_named(&action, RESTORE_STEP)["if"].as_str(),
            Some("steps.resolve.outputs.tag != ''")
        );
        if let (false, Some(saved)) = (tag.is_empty(), spec.cache) {
            let archive = PathBuf::from(&resolve.outputs["archive"]);
            std::fs::create_dir_all(&archive).unwrap();
            for entry in std::fs::read_dir(saved).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), archive.join(entry.file_name())).unwrap();
            }
            context.insert(
                "steps.cache.outputs.cache-hit".to_owned(),
                "true".to_owned(),
            );
        }
        let install = self.run_step(INSTALL_STEP, &context, &runner);
        // actions/cache/save, if its `if:` holds: a copy of the archive dir.
        assert_eq!(
            action_step_named(&action, SAVE_STEP)["if"].as_str(),
            Some("steps.install.outputs.save == 'true'")
        );
        let saved = (install.outputs.get("save").map(String::as_str) == Some("true")).then(|| {
            let store = job.join("saved");
            std::fs::create_dir_all(&store).unwrap();
            for entry in std::fs::read_dir(&resolve.outputs["archive"]).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), store.join(entry.file_name())).unwrap();
            }
            store
        });
        let bin = PathBuf::from(&resolve.outputs["bin"]).join("missions");
        JobRun {
            resolve,
            install,
            runner_temp,
            bin,
            saved,
        }
    }
}

impl JobRun {
    fn runs(&self) -> String {
        let out = Command::new(&self.bin).arg("--version").output().unwrap();
        assert!(out.status.success(), "{}", self.install.log);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// No temporary directory of the install step is left behind.
    fn assert_clean(&self) {
        let left: Vec<String> = std::fs::read_dir(&self.runner_temp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("missions-install"))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

#[test]
fn the_install_step_runs_only_a_verified_release_build_and_caches_only_that() {
    let fx = Install::new();
    let asset = fx.asset();
    let good = fx.dir("releases-good");
    let version_line = format!("missions {}", env!("CARGO_PKG_VERSION"));
    let base = JobSpec {
        action_ref: "v0",
        repository: REPOSITORY,
        releases: &good,
        cache: None,
        cargo: true,
        on_actions: false,
    };

    // A good release, found through the moving tag v0: downloaded, verified,
    // installed, and its archive (only) saved to the cache.
    let first = fx.job("good", JobSpec { ..base });
    assert!(first.install.success, "{}", first.install.log);
    assert!(
        first
            .install
            .log
            .contains("verified against its SHA256SUMS"),
        "{}",
        first.install.log
    );
    assert!(first.runs().contains(&version_line));
    assert_eq!(first.resolve.outputs["tag"], TAG);
    let key = &first.resolve.outputs["key"];
    assert!(key.contains(REPOSITORY) && key.contains(TAG), "{key}");
    let saved = first
        .saved
        .as_deref()
        .expect("a downloaded release is saved");
    let files: Vec<_> = std::fs::read_dir(saved)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, [std::ffi::OsString::from(&asset)]);
    assert_eq!(
        sha256_file(&saved.join(&asset)),
        sha256_file(&good.join(TAG).join(&asset))
    );
    assert!(fx.cargo_log().is_none(), "nothing compiled");
    first.assert_clean();

    // A fork at the same tag has a key of its own.
    let fork = fx.job(
        "fork",
        JobSpec {
            repository: "someone/missions",
            ..base
        },
    );
    assert_ne!(&fork.resolve.outputs["key"], key);
    assert!(fork.resolve.outputs["key"].contains("someone/missions"));

    // The next job restores it: verified again, not saved again.
    let hit = fx.job(
        "hit",
        JobSpec {
            cache: Some(saved),
            ..base
        },
    );
    assert!(hit.install.success, "{}", hit.install.log);
    assert!(hit.install.log.contains("(cache)"), "{}", hit.install.log);
    assert!(hit.runs().contains(&version_line));
    assert!(hit.saved.is_none(), "a restored archive is not saved again");
    hit.assert_clean();

    // A poisoned cache entry: the restored archive is not the release's.
    let poisoned = fx.dir("poisoned");
    std::fs::create_dir_all(&poisoned).unwrap();
    let impostor = fx.dir("impostor");
    std::fs::write(&impostor, "#!/bin/sh\necho pwned\n").unwrap();
    pack(&impostor, &poisoned.join(&asset));
    let refused = fx.job(
        "poisoned",
        JobSpec {
            cache: Some(&poisoned),
            ..base
        },
    );
    assert!(!refused.install.success);
    assert!(
        refused
            .install
            .log
            .contains(&format!("the cached {asset} does not match SHA256SUMS")),
        "{}",
        refused.install.log
    );
    assert!(!refused.bin.exists(), "nothing installed");
    refused.assert_clean();

    // A download that does not match SHA256SUMS: an error, nothing installed,
    // nothing cached, no compiling instead.
    let bad = fx.dir("releases-bad-sum");
    let mismatch = fx.job(
        "bad-sum",
        JobSpec {
            action_ref: TAG,
            releases: &bad,
            ..base
        },
    );
    assert!(!mismatch.install.success);
    assert!(
        mismatch.install.log.contains(&format!(
            "::error title=missions::{asset} of release {TAG} does not match its SHA256SUMS; not running it"
        )),
        "{}",
        mismatch.install.log
    );
    assert!(!mismatch.bin.exists(), "nothing installed");
    assert!(mismatch.saved.is_none());
    assert!(
        !Path::new(&mismatch.resolve.outputs["archive"])
            .join(&asset)
            .exists(),
        "nothing kept for the cache"
    );
    assert!(fx.cargo_log().is_none(), "no compiling after a mismatch");
    mismatch.assert_clean();

    // No SHA256SUMS: said so, and (as documented) compiled from the action's
    // source, outside the checkout, with the stable toolchain; not cached.
    let no_sums = fx.dir("releases-no-sums");
    let compiled = fx.job(
        "no-sums",
        JobSpec {
            releases: &no_sums,
            ..base
        },
    );
    assert!(compiled.install.success, "{}", compiled.install.log);
    let log = &compiled.install.log;
    assert!(
        log.contains(&format!("release {TAG} has no SHA256SUMS"))
            && log.contains("compiling")
            && log.contains("as documented"),
        "{log}"
    );
    assert!(!log.contains(&format!("has no {asset}")), "{log}");
    assert!(compiled.runs().contains("compiled from source"));
    assert!(compiled.saved.is_none(), "a compiled build is never cached");
    let cargo = fx.cargo_log().expect("cargo ran");
    assert!(cargo.contains(&format!("cwd={ROOT}\n")), "{cargo}");
    assert!(!cargo.contains("workspace"), "not in the checkout: {cargo}");
    assert!(cargo.contains("RUSTUP_TOOLCHAIN=stable\n"), "{cargo}");
    assert!(
        cargo.contains("install --locked") && cargo.contains(&format!("--path {ROOT}")),
        "{cargo}"
    );
    compiled.assert_clean();
    std::fs::remove_file(fx.dir("cargo.log")).unwrap();

    // On Actions the test setting is ignored: the release comes from GitHub
    // (unreachable here), so it is compiled, never read from the directory.
    let on_actions = fx.job(
        "on-actions",
        JobSpec {
            on_actions: true,
            ..base
        },
    );
    assert!(on_actions.install.success, "{}", on_actions.install.log);
    assert!(!on_actions.install.log.contains("test setting"));
    assert!(on_actions.runs().contains("compiled from source"));
    std::fs::remove_file(fx.dir("cargo.log")).unwrap();

    // No release build and no cargo: an error that says both.
    let system_cargo = fx
        .path
        .split(':')
        .skip(1)
        .any(|dir| Path::new(dir).join("cargo").exists());
    if !system_cargo {
        let none = fx.job(
            "no-cargo",
            JobSpec {
                releases: &no_sums,
                cargo: false,
                ..base
            },
        );
        assert!(!none.install.success);
        assert!(
            none.install.log.contains("no cargo"),
            "{}",
            none.install.log
        );
        assert!(!none.bin.exists());
        none.assert_clean();
    }
}

#[test]
fn the_action_downloads_over_https_only() {
    let action = action();
    let script = str_of(&action_step_named(&action, INSTALL_STEP)["run"]);
    assert!(
        script.contains("curl --proto '=https' --tlsv1.2 -fsSL"),
        "{script}"
    );
    // Every curl is either that one or the test-only file:// one.
    for line in script.lines().filter(|l| l.contains("curl ")) {
        assert!(
            line.contains("--proto '=https' --tlsv1.2") || line.contains("--proto '=file'"),
            "{line}"
        );
    }
    // The test setting is no input, and no step's `env:` sets it.
    assert!(!keys(&action["inputs"]).iter().any(|i| i.contains("test")));
    for step in steps(&action["runs"]) {
        if let Some(env) = step.get("env") {
            assert!(
                !keys(env).contains("MISSIONS_ACTION_TEST_RELEASES"),
                "{:?}",
                step["name"]
            );
        }
    }
}

#[test]
fn the_action_caches_only_a_verified_release_archive_before_the_agent_runs() {
    let action = action();
    let uses = |name: &str| str_of(&action_step_named(&action, name)["uses"]).to_owned();
    let restore = uses(RESTORE_STEP);
    let save = uses(SAVE_STEP);
    let (restore_path, restore_sha) = restore.split_once('@').unwrap();
    let (save_path, save_sha) = save.split_once('@').unwrap();
    assert_eq!(restore_path, "actions/cache/restore");
    assert_eq!(save_path, "actions/cache/save");
    assert_eq!(restore_sha, save_sha, "one commit of actions/cache");
    assert!(
        restore_sha.len() == 40 && restore_sha.chars().all(|c| c.is_ascii_hexdigit()),
        "hash-pinned: {restore}"
    );
    // No step caches with a post step (actions/cache saves after the agent).
    for step in steps(&action["runs"]) {
        if let Some(uses) = step["uses"].as_str() {
            assert!(!uses.starts_with("actions/cache@"), "{uses}");
        }
    }
    // restore → install → save → run: saved before the agent runs.
    let order =
        [RESTORE_STEP, INSTALL_STEP, SAVE_STEP, RUN_STEP].map(|s| step_position(&action, s));
    assert!(order.is_sorted(), "{order:?}");
    for name in [RESTORE_STEP, SAVE_STEP] {
        let with = &action_step_named(&action, name)["with"];
        assert_eq!(
            str_of(&with["path"]),
            "${{ steps.resolve.outputs.archive }}"
        );
        assert_eq!(str_of(&with["key"]), "${{ steps.resolve.outputs.key }}");
    }
}

#[test]
fn releases_start_only_from_a_full_version_tag_equal_to_the_crates_version() {
    let release = yaml(".github/workflows/release.yml");
    let patterns: Vec<String> = triggers(&release)["push"]["tags"]
        .as_sequence()
        .expect("push: tags:")
        .iter()
        .map(|p| str_of(p).to_owned())
        .collect();
    // GitHub's filter patterns: `+` one or more of the previous character or
    // class, `*` anything but `/`, `?` zero or one; `.` is literal.
    let matches = |tag: &str| {
        patterns.iter().any(|p| {
            let mut re = String::from("^");
            for c in p.chars() {
                match c {
                    '*' => re.push_str("[^/]*"),
                    '.' => re.push_str("\\."),
                    '+' | '?' | '[' | ']' | '-' => re.push(c),
                    c if c.is_ascii_alphanumeric() => re.push(c),
                    c => re.push_str(&regex::escape(&c.to_string())),
                }
            }
            re.push('$');
            regex::Regex::new(&re).unwrap().is_match(tag)
        })
    };
    for tag in ["v0.1.0", "v12.3.45", "v1.0.0-rc.1"] {
        assert!(matches(tag), "{tag} releases: {patterns:?}");
    }
    for tag in ["v0", "v1", "v0.1", "vx", "v1.x.0", "latest", "0.1.0"] {
        assert!(!matches(tag), "{tag} must not release: {patterns:?}");
    }

    // The first job refuses a tag other than v + Cargo.toml's version.
    let check = &release["jobs"]["check"];
    let script = steps(check)
        .iter()
        .find_map(|s| s["run"].as_str())
        .expect("the check job's script");
    for (tag, ok) in [(TAG, true), ("v99.0.0", false), ("v0.1.0-rc.1x", false)] {
        let out = Command::new("bash")
            .args(["-eo", "pipefail", "-c", script])
            .current_dir(ROOT)
            .env("TAG", tag)
            .output()
            .unwrap();
        assert_eq!(out.status.success(), ok, "{tag}: {out:?}");
    }
    assert_eq!(
        release["jobs"]["build"]["needs"].as_str(),
        Some("check"),
        "the builds wait for the check"
    );
    // Every target, macOS included, is required.
    let build = &release["jobs"]["build"];
    assert!(build.get("continue-on-error").is_none());
    assert!(release["jobs"]["publish"].get("if").is_none());
}

// ---------------------------------------------------------------------------
// The action's `missions job` step, through the simulator's Actions runner.

/// Resolves one value of the run step's `env:` as Actions would for the
/// template's job: `${{ inputs.X }}` of the action → the template's `with:`
/// (or the input's default); of the workflow → left for the simulator, which
/// substitutes dispatch inputs in each argument. `None`: leave the runner's
/// own value (`github.token` is the job token the runner sets as GITHUB_TOKEN).
fn resolve_action_env(
    value: &str,
    action: &Value,
    with: &Value,
    bin_dir: &Path,
    dispatched: &BTreeSet<String>,
) -> Option<String> {
    if !value.contains("${{") {
        return Some(value.to_owned());
    }
    let expression = value
        .trim()
        .strip_prefix("${{")
        .and_then(|v| v.strip_suffix("}}"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("unsupported expression in the action's env: {value}"));
    if expression == "steps.resolve.outputs.bin" {
        return Some(bin_dir.display().to_string());
    }
    let Some(input) = expression.strip_prefix("inputs.") else {
        panic!("unsupported expression in the action's env: {value}");
    };
    let given = with
        .get(input)
        .or_else(|| action["inputs"][input].get("default"))
        .map(str_of)
        .unwrap_or("");
    resolve_workflow_value(given, dispatched)
}

fn resolve_workflow_value(value: &str, dispatched: &BTreeSet<String>) -> Option<String> {
    if !value.contains("${{") {
        return Some(value.to_owned());
    }
    if let Some(name) = input_reference(value) {
        assert!(dispatched.contains(name), "{name} is not dispatched");
        // The simulator substitutes it per argument, as a `run:` step would.
        return Some(format!("${{{{ inputs.{name} }}}}"));
    }
    let expression = value
        .trim()
        .trim_start_matches("${{")
        .trim_end_matches("}}")
        .trim();
    // Left to the job's environment: the simulator's runner sets the job's
    // GITHUB_TOKEN, and the scenario's secrets (canary model keys, see
    // tests/common/canary.rs) as a repository's secrets would be.
    if expression == "github.token" || expression.starts_with("secrets.") {
        return None;
    }
    panic!("unsupported expression in the template: {value}");
}

/// The argv the simulator runs for one job of `missions.yml`: the action's
/// run step with that job's `with:`, as `bash -c SCRIPT` under `env` with the
/// step's resolved environment; the result directory is the run's artifacts
/// (what upload-artifact and download-artifact carry between the jobs).
fn action_step_command(job: &Value) -> Vec<String> {
    let action = action();
    let with = &missions_step(job)["with"];
    let step = run_step(&action);
    let binary = Path::new(env!("CARGO_BIN_EXE_missions"));
    let bin_dir = binary.parent().unwrap();
    let dispatched = dispatched_inputs();
    let mut argv = vec![
        "env".to_owned(),
        "MISSIONS_RESULT_DIR=${{ sim.artifacts }}/missions-result".to_owned(),
    ];
    for (name, value) in step["env"].as_mapping().expect("the run step's env") {
        let name = str_of(name);
        if let Some(value) = resolve_action_env(str_of(value), &action, with, bin_dir, &dispatched)
        {
            argv.push(format!("{name}={value}"));
        }
    }
    argv.extend([
        "bash".to_owned(),
        "-c".to_owned(),
        str_of(&step["run"]).to_owned(),
    ]);
    argv
}

/// The template's two jobs as the simulator runs them.
fn template_jobs() -> Vec<missions::sim::SimJob> {
    let workflow = template();
    ["agent", "publish"]
        .into_iter()
        .map(|name| {
            let job = job_named(&workflow, name);
            let write = job["permissions"]["contents"].as_str() == Some("write");
            missions::sim::SimJob {
                name: name.to_owned(),
                command: action_step_command(job),
                contents_write: write,
                always: job["if"].as_str().is_some_and(|c| c.contains("always()")),
            }
        })
        .collect()
}

fn settings(scripts: &Path) -> String {
    format!(
        "label: mission\n\
         models:\n  default:\n    provider: scripted\n    model: claude-sonnet-4-5\n    script: \"{}/{{agent}}.json\"\n",
        scripts.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_templates_job_runs_missions_job_with_the_dispatched_inputs() {
    let scripts = tempfile::tempdir().unwrap();
    // The simulated repository's workflow is the template itself, and the
    // command the runner runs for it is the template's action step (the
    // action's run step with the template's `with:`).
    assert_eq!(sample::WORKFLOW_YAML, read("templates/missions.yml"));
    let jobs = template_jobs();
    let spec = RepoSpec::new(sample::REPO)
        .file(
            ".github/workflows/missions.yml",
            sample::WORKFLOW_YAML.as_bytes().to_vec(),
        )
        .file("README.md", b"# demo\n".to_vec())
        .file(
            ".github/missions.yml",
            settings(scripts.path()).into_bytes(),
        );
    let t = Scenario::start(ScenarioOptions {
        workflow_jobs: vec![(sample::WORKFLOW_FILE.to_owned(), jobs)],
        repo: Some(spec),
        ..ScenarioOptions::default()
    })
    .await;
    let alice = t.world.maintainer.login.clone();
    let repo = t.world.repo.clone();

    // A milestone branch with an approved plan, as the App leaves it.
    let issue = t.open_issue(&alice, "Greet", "Please greet.").await;
    let branch = format!("missions/{issue}/m1");
    let main = t.expect_branch("main").await;
    let answer = t
        .act(
            &alice,
            "POST",
            &format!("/repos/{repo}/git/refs"),
            Some(json!({"ref": format!("refs/heads/{branch}"), "sha": main})),
        )
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let plan = json!({
        "title": "Greetings",
        "summary": "Say hello.",
        "assertions": [{"id": "A1", "text": "`cat hello.txt` prints hello"}],
        "milestones": [{"id": "M1", "title": "Hello", "features": [
            {"id": "F1", "title": "Hello", "description": "Write hello.txt.", "assertions": ["A1"]}
        ]}]
    });
    let answer = t
        .act(
            &alice,
            "PUT",
            &format!("/repos/{repo}/contents/.missions/{issue}/plan.json"),
            Some(json!({
                "message": "plan",
                "content": base64::engine::general_purpose::STANDARD.encode(plan.to_string()),
                "branch": branch,
            })),
        )
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);

    // The worker's model: write the file, then hand off.
    let turns = json!([
        {"tool_calls": [{"name": "write_file", "input": {"path": "hello.txt", "content": "hello\n"}}]},
        {"tool_calls": [{"name": "finish", "input": {
            "feature": "F1", "summary": "Done.", "completed": ["hello.txt"], "undone": [],
            "issues": [], "followed_procedures": true, "commands": []
        }}]}
    ]);
    std::fs::write(
        scripts.path().join("feature-F1.json"),
        serde_json::to_vec(&turns).unwrap(),
    )
    .unwrap();

    // Dispatched as the App dispatches (effects.rs `dispatch`).
    let key = "feature-F1.1";
    let answer = t
        .act(
            &alice,
            "POST",
            &format!(
                "/repos/{repo}/actions/workflows/{}/dispatches",
                sample::WORKFLOW_FILE
            ),
            Some(json!({
                "ref": branch,
                "inputs": {
                    "role": "worker",
                    "mission": issue.to_string(),
                    "task": "feature",
                    "feature": "F1",
                    "job": key,
                    "config_ref": "main",
                },
                "return_run_details": true,
            })),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let run_id = answer.body["workflow_run_id"].as_u64().unwrap();
    let conclusion = t
        .sim
        .wait_for(
            &format!("run {run_id} to complete"),
            Duration::from_secs(120),
            |s| {
                s.read(|w| {
                    let run = &w.repos[&repo].runs[&run_id];
                    (run.status == RunStatus::Completed)
                        .then(|| run.conclusion.clone().unwrap_or_default())
                })
            },
        )
        .await
        .unwrap();
    let log = t.sim.run_log(&repo, run_id).unwrap_or_default();
    assert_eq!(conclusion, "success", "{log}");
    // This build ran (the run step's `missions --version`), in both jobs:
    // the agent's left its result, the publish job checked and pushed it.
    let version = format!("missions {}", env!("CARGO_PKG_VERSION"));
    assert_eq!(log.matches(&version).count(), 2, "{version} twice in {log}");
    assert!(log.contains("left in"), "{log}");
    assert!(
        log.contains(&format!(
            "missions publish: checked {key}'s result and pushed"
        )),
        "{log}"
    );

    // `missions job` got the dispatched inputs, as the job's own output shows
    // (not the argv this test built): the mission (where it wrote, on the
    // dispatched branch), the job key, the role, the task and the feature.
    let envelope: Json = serde_json::from_str(
        &t.file(&format!(".missions/{issue}/jobs/{key}.json"), &branch)
            .await
            .unwrap_or_else(|| panic!("no job output on {branch}: {log}")),
    )
    .unwrap();
    assert_eq!(envelope["job"], key);
    assert_eq!(envelope["result"]["role"], "worker");
    assert_eq!(envelope["result"]["handoff"]["feature"], "F1");
    assert_eq!(
        t.file("hello.txt", &branch).await.as_deref(),
        Some("hello\n")
    );
    let handoff: Json = serde_json::from_str(
        &t.file(&format!(".missions/{issue}/handoffs/F1.json"), &branch)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(handoff["feature"], "F1");
    t.stop().await;
}
