//! The mission workflow template (`templates/missions.yml`, which `missions init`
//! writes as `.github/workflows/missions.yml`) and the composite action it uses
//! (`action.yml`): their structure, checked against what the App dispatches and
//! what the job harness accepts, and the action's `missions job` step run
//! through the simulator's Actions runner with this build's binary.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
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

/// The input names of the App's `workflow_dispatch` (the `"inputs": {…}` object
/// in `effects.rs`'s `dispatch`): the one place the App spells them.
fn dispatched_inputs() -> BTreeSet<String> {
    let source = read("src/engine/missions/effects.rs");
    let start = source
        .find("async fn dispatch(")
        .expect("effects.rs has `dispatch`");
    let body = &source[start..];
    let inputs = &body[body.find("\"inputs\": {").expect("dispatch sends inputs")..];
    let inputs = &inputs[..inputs.find('}').unwrap()];
    let names: BTreeSet<String> = regex::Regex::new(r#""([a-z_]+)":"#)
        .unwrap()
        .captures_iter(inputs)
        .map(|c| c[1].to_owned())
        .filter(|name| name != "inputs")
        .collect();
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

/// The template's one job.
fn the_job(workflow: &Value) -> &Value {
    let jobs = workflow["jobs"].as_mapping().expect("jobs");
    assert_eq!(jobs.len(), 1, "the template has one job");
    jobs.values().next().unwrap()
}

fn steps(job_or_runs: &Value) -> &Vec<Value> {
    job_or_runs["steps"].as_sequence().expect("steps")
}

/// The step of the template that uses the missions action.
fn action_step(workflow: &Value) -> &Value {
    let uses: Vec<&Value> = steps(the_job(workflow))
        .iter()
        .filter(|s| s["uses"].as_str() == Some(ACTION_PLACEHOLDER))
        .collect();
    assert_eq!(uses.len(), 1, "one step uses {ACTION_PLACEHOLDER}");
    uses[0]
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
        assert_eq!(required, name != "feature", "{name}: required");
    }
    assert_eq!(inputs["feature"]["default"].as_str(), Some(""));

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
    let permissions: BTreeMap<String, String> = job["permissions"]
        .as_mapping()
        .expect("job permissions")
        .iter()
        .map(|(k, v)| (str_of(k).to_owned(), str_of(v).to_owned()))
        .collect();
    let least = BTreeMap::from([
        ("contents".to_owned(), "write".to_owned()),
        ("issues".to_owned(), "read".to_owned()),
        ("pull-requests".to_owned(), "read".to_owned()),
    ]);
    assert_eq!(permissions, least);

    // One job per mission at a time, never cancelled by the next.
    let concurrency = &workflow["concurrency"];
    assert!(
        str_of(&concurrency["group"]).contains("${{ inputs.mission }}"),
        "{concurrency:?}"
    );
    assert_eq!(concurrency["cancel-in-progress"].as_bool(), Some(false));

    let timeout = job["timeout-minutes"].as_u64().expect("timeout-minutes");
    assert!((1..=MAX_TIMEOUT_MINUTES).contains(&timeout), "{timeout}");

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
    // `missions init` replaces the placeholder: it appears exactly once.
    assert_eq!(
        read("templates/missions.yml")
            .matches(ACTION_PLACEHOLDER)
            .count(),
        1
    );
}

#[test]
fn the_template_passes_every_dispatch_input_to_the_action() {
    let workflow = template();
    let action = action();
    let with = &action_step(&workflow)["with"];
    let action_inputs = keys(&action["inputs"]);
    for name in keys(with) {
        assert!(
            action_inputs.contains(&name),
            "the action has no input {name}"
        );
    }
    for input in dispatched_inputs() {
        let action_input = input.replace('_', "-");
        let value = str_of(&with[action_input.as_str()]);
        assert_eq!(
            input_reference(value),
            Some(input.as_str()),
            "{action_input}: {value}"
        );
    }
    // The provider keys come from secrets, nowhere else.
    for (input, secret) in [
        ("anthropic-api-key", "ANTHROPIC_API_KEY"),
        ("openai-api-key", "OPENAI_API_KEY"),
    ] {
        assert_eq!(str_of(&with[input]), format!("${{{{ secrets.{secret} }}}}"));
    }
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
    // The binary is cached, keyed by what the first step chose.
    assert!(
        steps(&action["runs"]).iter().any(|s| s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/cache@"))),
        "the binary is cached"
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
    if expression == "github.token" {
        return None;
    }
    if expression.starts_with("secrets.") {
        // The test repository has no secrets: the scripted model needs no key.
        return Some(String::new());
    }
    panic!("unsupported expression in the template: {value}");
}

/// The argv the simulator runs for `missions.yml`: the action's run step, as
/// `bash -c SCRIPT` under `env` with the step's resolved environment.
fn action_step_command() -> Vec<String> {
    let workflow = template();
    let action = action();
    let with = &action_step(&workflow)["with"];
    let step = run_step(&action);
    let binary = Path::new(env!("CARGO_BIN_EXE_missions"));
    let bin_dir = binary.parent().unwrap();
    let dispatched = dispatched_inputs();
    let mut argv = vec!["env".to_owned()];
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
    let command = action_step_command();
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
        workflows: vec![(sample::WORKFLOW_FILE.to_owned(), command)],
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
    // The inputs reached the step's environment, and this build ran.
    for expected in [
        "MISSIONS_ROLE=worker",
        &format!("MISSIONS_MISSION={issue}"),
        "MISSIONS_TASK=feature",
        "MISSIONS_FEATURE=F1",
        &format!("MISSIONS_JOB={key}"),
        "MISSIONS_CONFIG_REF=main",
        &format!("missions {}", env!("CARGO_PKG_VERSION")),
    ] {
        assert!(log.contains(expected), "{expected} in {log}");
    }

    // `missions job` got them: the job's output, under its key, by its role.
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
