//! The App and the GitHub simulator end to end: a maintainer labels an issue,
//! the App (with a temporary handler) comments and dispatches a workflow, a job
//! clones the repository, commits and pushes, and the App hears back.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::scenario::{Scenario, ScenarioOptions};
use missions::engine::{Handler, HandlerContext, HandlerRegistry};
use missions::github::client::GitHubApp;
use missions::github::events::{IssuesAction, WebhookEvent};
use missions::sim::FaultConfig;
use missions::sim::sample;
use serde_json::json;
use tokio::sync::mpsc;

/// A stand-in for the mission handlers of later issues: on the `mission` label it
/// asks for a comment and a workflow dispatch. The GitHub calls happen outside
/// the handler (handlers never call GitHub inside their transaction), in a task
/// that uses the App's retrying client.
struct DispatchOnLabel {
    tx: mpsc::UnboundedSender<(u64, String, u64)>,
}

#[async_trait]
impl Handler for DispatchOnLabel {
    fn name(&self) -> &'static str {
        "dispatch-on-label"
    }

    async fn handle(
        &self,
        _cx: &mut HandlerContext<'_>,
        event: &WebhookEvent,
    ) -> anyhow::Result<()> {
        if let WebhookEvent::Issues(e) = event
            && e.action == IssuesAction::Labeled
            && e.label.as_ref().is_some_and(|l| l.name == "mission")
            && let Some(installation) = &e.installation
        {
            self.tx.send((
                installation.id,
                e.repository.full_name.clone(),
                e.issue.number,
            ))?;
        }
        Ok(())
    }
}

/// Errors of the effect task, which the test asserts are none.
type Errors = Arc<Mutex<Vec<String>>>;

fn app_with_effects(errors: Errors) -> Box<dyn FnOnce(Arc<GitHubApp>) -> HandlerRegistry + Send> {
    Box::new(move |github: Arc<GitHubApp>| {
        let (tx, mut rx) = mpsc::unbounded_channel::<(u64, String, u64)>();
        tokio::spawn(async move {
            while let Some((installation, repo, number)) = rx.recv().await {
                let result: anyhow::Result<()> = async {
                    let client = github.installation(installation).await?;
                    let _: serde_json::Value = client
                        .post(
                            &format!("/repos/{repo}/issues/{number}/comments"),
                            &json!({"body": format!("Mission accepted: dispatching a job for #{number}.")}),
                        )
                        .await?;
                    client
                        .send_no_content(
                            missions::github::client::Method::POST,
                            &format!("/repos/{repo}/actions/workflows/{}/dispatches", sample::WORKFLOW_FILE),
                            Some(&json!({"ref": "main", "inputs": {"role": "worker", "mission": number.to_string()}})),
                        )
                        .await?;
                    Ok(())
                }
                .await;
                if let Err(e) = result {
                    errors.lock().unwrap().push(format!("{e:#}"));
                }
            }
        });
        HandlerRegistry::new().with(DispatchOnLabel { tx })
    })
}

/// The job: write a file, commit, push to `missions/<mission>` with the job's token.
/// The mission number comes in as `$1` (an argv entry, never spliced into the script).
const JOB_SCRIPT: &str = r#"set -eu
mission="$1"
mkdir -p ".missions/$mission"
printf 'written by run %s on %s\n' "$GITHUB_RUN_ID" "$GITHUB_REPOSITORY" > ".missions/$mission/hello.txt"
git add .missions
git commit -q -m "Job output for mission $mission"
auth=$(printf 'x-access-token:%s' "$GITHUB_TOKEN" | base64 | tr -d '\n')
git -c http.extraHeader="Authorization: basic $auth" push -q origin "HEAD:refs/heads/missions/$mission"
echo "pushed missions/$mission"
"#;

fn options(faults: FaultConfig, errors: Errors) -> ScenarioOptions {
    ScenarioOptions {
        faults,
        workflows: vec![(
            sample::WORKFLOW_FILE.to_owned(),
            vec![
                "sh".into(),
                "-c".into(),
                JOB_SCRIPT.into(),
                "job".into(),
                "${{ inputs.mission }}".into(),
            ],
        )],
        handlers: app_with_effects(errors),
        ..ScenarioOptions::default()
    }
}

async fn label_comment_dispatch_push(t: &Scenario, errors: &Errors) {
    let alice = t.world.maintainer.login.clone();
    let issue = t
        .open_issue(&alice, "Add a greeting", "Please add a greeting file.")
        .await;

    // alice (maintainer) labels the issue `mission` …
    assert_eq!(t.label_issue(&alice, issue, "mission").await, 200);
    let labeled = t
        .expect_delivered("issues", Some("labeled"), |p| p["issue"]["number"] == issue)
        .await;
    assert_eq!(labeled.payload["sender"]["login"], alice.as_str());

    // … the App comments on the issue …
    let comment = t.expect_app_comment(issue, "Mission accepted").await;
    assert_eq!(comment["user"]["type"], "Bot");
    assert_eq!(comment["performed_via_github_app"]["id"], sample::APP_ID);

    // … and dispatches a job that clones, commits and pushes `missions/<issue>`.
    let run = t
        .expect_delivered("workflow_run", Some("completed"), |p| {
            p["workflow_run"]["head_branch"] == "main"
        })
        .await;
    let run_id = run.payload["workflow_run"]["id"].as_u64().unwrap();
    let log = t.sim.run_log(&t.world.repo, run_id).unwrap_or_default();
    assert_eq!(
        run.payload["workflow_run"]["conclusion"], "success",
        "job log:\n{log}"
    );
    assert!(log.contains(&format!("pushed missions/{issue}")), "{log}");
    t.expect_processed(&run.id).await;

    let branch = format!("missions/{issue}");
    let head = t.expect_branch(&branch).await;
    let text = t
        .file(&format!(".missions/{issue}/hello.txt"), &branch)
        .await;
    assert_eq!(
        text.as_deref(),
        Some(format!("written by run {run_id} on {}\n", t.world.repo).as_str())
    );
    assert_eq!(
        t.file(&format!(".missions/{issue}/hello.txt"), "main")
            .await,
        None,
        "main is untouched"
    );

    // GitHub tells the App about the push, with the job's commit.
    let push = t
        .expect_delivered("push", None, |p| p["ref"] == format!("refs/heads/{branch}"))
        .await;
    assert_eq!(push.payload["after"], head.as_str());
    assert_eq!(push.payload["created"], true);

    // The job lifecycle was sent in GitHub's order.
    let lifecycle: Vec<String> = t
        .sim
        .deliveries()
        .iter()
        .filter(|d| {
            d.event.starts_with("workflow_") && d.payload.to_string().contains(&run_id.to_string())
        })
        .map(|d| format!("{}.{}", d.event, d.action.as_deref().unwrap_or("-")))
        .collect();
    assert_eq!(
        lifecycle,
        [
            "workflow_run.requested",
            "workflow_job.queued",
            "workflow_job.in_progress",
            "workflow_run.in_progress",
            "workflow_job.completed",
            "workflow_run.completed",
        ]
    );
    assert!(
        errors.lock().unwrap().is_empty(),
        "App errors: {:?}",
        errors.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labeled_issue_gets_a_comment_and_a_job_that_pushes_a_commit() {
    let errors = Errors::default();
    let t = Scenario::start(options(FaultConfig::default(), errors.clone())).await;
    label_comment_dispatch_push(&t, &errors).await;
    // Without faults, every call the App made succeeded the first time.
    assert!(t.sim.exchanges().iter().all(|e| !e.faulted));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_scenario_passes_when_a_fifth_of_api_calls_fail() {
    let errors = Errors::default();
    let faults = FaultConfig {
        api_error_rate: 0.1,
        api_rate_limit_rate: 0.1,
        seed: 5,
        ..FaultConfig::default()
    };
    let t = Scenario::start(options(faults, errors.clone())).await;
    label_comment_dispatch_push(&t, &errors).await;
    let exchanges = t.sim.exchanges();
    // The App's own calls (token exchange included) met faults and retried through them.
    let app_faulted: Vec<String> = exchanges
        .iter()
        .filter(|e| e.faulted && (e.caller.starts_with("installation") || e.caller == "app"))
        .map(|e| format!("{} {} → {}", e.method, e.route, e.status))
        .collect();
    // Seed 5 gives the App a secondary rate limit (a 1 s retry-after) and a 5xx.
    assert!(
        app_faulted
            .iter()
            .any(|f| f.ends_with("429") || f.ends_with("403")),
        "{app_faulted:?}"
    );
    assert!(
        app_faulted
            .iter()
            .any(|f| f.ends_with("500") || f.ends_with("502") || f.ends_with("503")),
        "{app_faulted:?}"
    );
    // Exactly one comment and one run despite the retries (faults are answered
    // before the operation, so a retry does not duplicate).
    let app_calls = |route: &str| {
        exchanges
            .iter()
            .filter(|e| {
                !e.faulted && e.route.ends_with(route) && e.caller.starts_with("installation")
            })
            .count()
    };
    assert_eq!(app_calls("/comments"), 1);
    assert_eq!(app_calls("/dispatches"), 1);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_cannot_label_and_nothing_happens() {
    let errors = Errors::default();
    let t = Scenario::start(options(FaultConfig::default(), errors.clone())).await;
    let bob = t.world.reader.login.clone();
    let issue = t.open_issue(&bob, "Please do it", "").await;
    assert_eq!(t.label_issue(&bob, issue, "mission").await, 403);
    // The opened event arrives, but no labeled event and no App comment.
    t.expect_delivered("issues", Some("opened"), |p| p["issue"]["number"] == issue)
        .await;
    assert!(
        t.sim
            .deliveries()
            .iter()
            .all(|d| d.action.as_deref() != Some("labeled"))
    );
    assert!(t.comments(issue).await.is_empty());
    t.stop().await;
}
