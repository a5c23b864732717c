//! The canary scan every scenario ends with (`tests/common/canary.rs`) is
//! real: secrets planted in each place it looks are found, named by place and
//! by slot, and fail the scenario — when the test calls `stop()` and when it
//! just drops the scenario.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::SECRET;
use common::canary::{self, Leak};
use common::scenario::{Scenario, ScenarioOptions, app_key};
use missions::sim::RepoSpec;
use missions::sim::sample;
use missions::sim::state::RunStatus;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

fn missions_yml(scripts: &std::path::Path) -> String {
    format!(
        "label: mission\n\
         models:\n  default:\n    provider: scripted\n    model: claude-sonnet-4-5\n    script: \"{}/{{agent}}.json\"\n",
        scripts.display()
    )
}

fn plan() -> Value {
    json!({
        "title": "Greetings",
        "summary": "Say hello.",
        "assertions": [{"id": "A1", "text": "`cat hello.txt` prints hello"}],
        "milestones": [{"id": "M1", "title": "Hello", "features": [
            {"id": "F1", "title": "Hello", "description": "Write hello.txt.", "assertions": ["A1"]}
        ]}]
    })
}

/// The leaks whose place contains `place` and whose slot contains `slot`.
fn matching<'a>(leaks: &'a [Leak], place: &str, slot: &str) -> Vec<&'a Leak> {
    leaks
        .iter()
        .filter(|l| l.place.contains(place) && l.slot.contains(slot))
        .collect()
}

fn assert_found(leaks: &[Leak], place: &str, slot: &str) {
    assert!(
        !matching(leaks, place, slot).is_empty(),
        "no leak of {slot:?} reported in {place:?}; found:\n{}",
        canary::report(leaks)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "secret canary found")]
async fn a_secret_planted_in_each_place_is_found_and_fails_the_scenario() {
    let scripts = tempfile::tempdir().unwrap();
    // A hostile job: before running `missions job` it prints a model key and
    // its token (both masked by the runner) and the webhook secret (which the
    // runner does not know to mask).
    let mut argv = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        format!(
            "echo \"key: $ANTHROPIC_API_KEY token: $GITHUB_TOKEN\"; echo 'hook: {SECRET}'; exec \"$@\""
        ),
        "sh".to_owned(),
    ];
    argv.extend(missions::demo::job_command(std::path::Path::new(env!(
        "CARGO_BIN_EXE_missions"
    ))));
    let spec = RepoSpec::new(sample::REPO)
        .file(
            ".github/workflows/missions.yml",
            sample::WORKFLOW_YAML.as_bytes().to_vec(),
        )
        .file(
            ".github/missions.yml",
            missions_yml(scripts.path()).into_bytes(),
        );
    let t = Scenario::start(ScenarioOptions {
        workflows: vec![(sample::WORKFLOW_FILE.to_owned(), argv)],
        repo: Some(spec),
        ..ScenarioOptions::default()
    })
    .await;
    let alice = t.world.maintainer.login.clone();
    let bob = t.world.reader.login.clone();
    let repo = t.world.repo.clone();

    // People post secrets: the webhook secret in a comment, a line of the
    // App's private key in an issue.
    let issue = t.open_issue(&alice, "Greet", "Please greet.").await;
    let answer = t
        .act(
            &alice,
            "POST",
            &format!("/repos/{repo}/issues/{issue}/comments"),
            Some(json!({"body": format!("the secret is {SECRET}")})),
        )
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let key_line = app_key()
        .0
        .lines()
        .find(|l| l.len() == 64)
        .unwrap()
        .to_owned();
    let other = t.open_issue(&bob, "A key", &key_line).await;

    // The App's installation token in a check run's summary.
    let main = t.expect_branch("main").await;
    let token = t
        .github
        .installation_token(t.world.installation_id)
        .await
        .unwrap();
    let client = t
        .github
        .installation(t.world.installation_id)
        .await
        .unwrap();
    let _: Value = client
        .post(
            &format!("/repos/{repo}/check-runs"),
            &json!({"name": "leaky", "head_sha": main,
                    "output": {"title": "t", "summary": token.expose_secret()}}),
        )
        .await
        .unwrap();

    // Alice's token in a log line of the test process.
    tracing::warn!("calling GitHub with {}", t.world.maintainer.token);

    // A hostile model: the worker writes the OpenAI key into a file, which the
    // harness commits; the next request to the model carries it too.
    let branch = format!("missions/{issue}/m1");
    let created = t
        .act(
            &alice,
            "POST",
            &format!("/repos/{repo}/git/refs"),
            Some(json!({"ref": format!("refs/heads/{branch}"), "sha": main})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let put = t
        .act(
            &alice,
            "PUT",
            &format!("/repos/{repo}/contents/.missions/{issue}/plan.json"),
            Some(json!({
                "message": "plan",
                "content": base64::engine::general_purpose::STANDARD.encode(plan().to_string()),
                "branch": branch,
            })),
        )
        .await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    let openai = canary::model_key("OPENAI_API_KEY");
    let turns = json!([
        {"tool_calls": [{"name": "write_file", "input": {"path": "leak.txt", "content": openai}}]},
        {"tool_calls": [{"name": "finish", "input": {
            "feature": "F1", "summary": "Done.", "completed": ["leak.txt"], "undone": [],
            "issues": [], "followed_procedures": true, "commands": []
        }}]}
    ]);
    std::fs::write(
        scripts.path().join("feature-F1.1.json"),
        serde_json::to_vec(&turns).unwrap(),
    )
    .unwrap();
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
                "inputs": {"role": "worker", "mission": issue.to_string(), "task": "feature",
                           "feature": "F1", "job": "feature-F1.1", "config_ref": "main"},
                "return_run_details": true,
            })),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let run_id = answer.body["workflow_run_id"].as_u64().unwrap();
    let conclusion = t
        .sim
        .wait_for("the job to end", Duration::from_secs(120), |s| {
            s.read(|w| {
                let run = &w.repos[&repo].runs[&run_id];
                (run.status == RunStatus::Completed).then(|| run.conclusion.clone())
            })
        })
        .await
        .unwrap();
    let log = t.sim.run_log(&repo, run_id).unwrap_or_default();
    assert_eq!(conclusion.as_deref(), Some("success"), "{log}");
    assert_eq!(t.file("leak.txt", &branch).await.as_deref(), Some(openai));
    // The webhook deliveries reached the App's inbox.
    t.expect_delivered("issue_comment", Some("created"), |_| true)
        .await;

    let leaks = t.leaks().await;
    // Each slot, each place, named.
    let hook = "the webhook secret";
    assert_found(&leaks, "comment", hook);
    assert_found(&leaks, &format!("on #{issue}"), hook);
    assert_found(&leaks, "webhook delivery", hook);
    assert_found(&leaks, "REST POST", hook);
    assert_found(&leaks, "the App's database: inbox", hook);
    assert_found(&leaks, &format!("workflow run {run_id} (job log)"), hook);
    assert_found(
        &leaks,
        &format!("the body of issue #{other}"),
        "private key",
    );
    assert_found(&leaks, "check run", "installation token");
    assert_found(&leaks, "a log line", "alice's personal access token");
    assert_found(&leaks, "the file leak.txt", "OPENAI_API_KEY");
    assert_found(&leaks, "model request", "OPENAI_API_KEY");
    let masked = matching(
        &leaks,
        &format!("workflow run {run_id} (job log)"),
        "a secret",
    );
    assert!(
        masked
            .iter()
            .any(|l| l.excerpt.contains("held 2 secret value(s)")),
        "{}",
        canary::report(&leaks)
    );
    // The report names slots and places, never the values.
    let report = canary::report(&leaks);
    for value in [SECRET, key_line.as_str(), token.expose_secret(), openai] {
        assert!(!report.contains(value), "the report holds a secret");
    }

    // And ending the scenario fails it.
    t.stop().await;
}

#[tokio::test]
#[should_panic(expected = "secret canary found")]
async fn a_scenario_dropped_without_stop_is_scanned_too() {
    let t = Scenario::start(ScenarioOptions::default()).await;
    let alice = t.world.maintainer.login.clone();
    t.open_issue(&alice, "A secret", &format!("hook secret: {SECRET}"))
        .await;
    drop(t);
}
