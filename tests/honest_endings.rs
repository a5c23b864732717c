//! Honest endings: every check run the App opens ends with a conclusion a
//! person can act on, whatever stopped its validator: a job past its time
//! limit, a pause, an abort. Each story drives the whole App through the
//! simulator and reads what a maintainer would see on the pull request and
//! the issue.

mod common;

use std::path::Path;
use std::time::Duration;

use common::mission::{Check, DEMO_COMMANDS, MissionTest, with_settings};
use common::scenario::DEADLINE;
use missions::demo::scripts::Story;
use missions::sim::FaultConfig;

/// A shell command that waits until `marker` exists.
fn wait_for_file(marker: &Path) -> String {
    format!("while [ ! -e {} ]; do sleep 0.2; done", marker.display())
}

/// The newest check run named `name` on the PR's head whose conclusion
/// `accept` takes.
async fn expect_check(
    m: &MissionTest,
    pr: u64,
    name: &str,
    accept: impl Fn(&str) -> bool,
) -> Check {
    m.t.sim
        .wait_for(&format!("{name} on #{pr}'s head"), DEADLINE * 2, |_| {
            let head = m.pr_head(pr);
            m.checks()
                .into_iter()
                .rev()
                .find(|c| c.head_sha == head && c.name == name)
                .filter(|c| c.conclusion.as_deref().is_some_and(&accept))
        })
        .await
        .unwrap()
}

/// A pull request's description as GitHub shows it.
fn pr_body(m: &MissionTest, pr: u64) -> String {
    let repo = m.repo();
    m.t.sim
        .read(|w| w.repos[&repo].issues[&pr].body.clone().unwrap_or_default())
}

/// Every check run the App opened, and whether any is still in progress.
fn open_checks(m: &MissionTest) -> Vec<Check> {
    m.checks()
        .into_iter()
        .filter(|c| c.conclusion.is_none())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrutiny_job_killed_by_its_timeout_ends_its_check_run_as_timed_out_and_says_how_to_retry()
 {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("scrutiny-may-finish");
    // Scrutiny's second command hangs until the marker exists; the runner
    // kills the job at its 25 s limit first. One attempt per step.
    let hang = format!("test -e {} || sleep 300", marker.display());
    let m = MissionTest::start_timed(
        Story::default(),
        FaultConfig::default(),
        |spec| {
            with_settings(spec, |text| {
                text.replace(
                    DEMO_COMMANDS,
                    &format!(
                        "max_attempts: 1\ncommands:\n  test: [\"python3 -m unittest -q\", \"{hang}\"]\n"
                    ),
                )
            })
        },
        Some(Duration::from_secs(25)),
    )
    .await;
    let issue = m.open_labeled_issue().await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);
    let pr = m.expect_pr(&format!("missions/{issue}/m1")).await;

    // On the pull request: scrutiny timed out, with the job and what to do.
    let scrutiny = expect_check(&m, pr, "missions / scrutiny", |c| c != "success").await;
    assert_eq!(
        scrutiny.conclusion.as_deref(),
        Some("timed_out"),
        "{scrutiny:?}"
    );
    assert_eq!(scrutiny.title, "The scrutiny job timed out");
    assert!(
        scrutiny.summary.contains("`M1-scrutiny-1.1`")
            && scrutiny.summary.contains("timed out")
            && scrutiny.summary.contains("`/mission resume`"),
        "{}",
        scrutiny.summary
    );
    // User testing never ran on this commit: cancelled, saying why.
    let user_testing = expect_check(&m, pr, "missions / user-testing", |_| true).await;
    assert_eq!(user_testing.conclusion.as_deref(), Some("cancelled"));
    assert_eq!(user_testing.title, "Mission paused");
    assert!(
        user_testing.summary.contains("timed out")
            && user_testing.summary.contains("`/mission resume`"),
        "{}",
        user_testing.summary
    );
    // On the issue: what happened and how to go on.
    let paused = m.t.expect_app_comment(issue, "The mission is paused").await;
    let body = paused["body"].as_str().unwrap();
    assert!(
        body.contains("scrutiny of M1 failed once")
            && body.contains("timed out")
            && body.contains("/mission resume"),
        "{body}"
    );
    assert!(open_checks(&m).is_empty(), "{:?}", open_checks(&m));

    // The maintainer fixes the cause and resumes: scrutiny runs again on a
    // new check run of the same commit, and the milestone passes.
    std::fs::write(&marker, b"").unwrap();
    m.comment(&m.alice(), issue, "/mission resume").await;
    let scrutiny = expect_check(&m, pr, "missions / scrutiny", |c| c == "success").await;
    assert!(scrutiny.summary.contains("✅ pass"), "{}", scrutiny.summary);
    expect_check(&m, pr, "missions / user-testing", |c| c == "success").await;
    m.t.expect_app_comment(pr, "Ready to merge").await;
    let names: Vec<String> = m
        .checks()
        .iter()
        .map(|c| c.conclusion.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        ["timed_out", "cancelled", "success", "success"],
        "one check run per try, each ended"
    );
    assert_eq!(
        m.dispatched_jobs()
            .iter()
            .filter(|j| j.starts_with("M1-scrutiny"))
            .collect::<Vec<_>>(),
        ["M1-scrutiny-1.1", "M1-scrutiny-1.2"]
    );
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_during_validation_cancels_the_check_run_nothing_will_run_for_until_resume() {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("scrutiny-may-finish");
    let hold = wait_for_file(&marker);
    let m = MissionTest::start_full(Story::default(), FaultConfig::default(), |spec| {
        with_settings(spec, |text| {
            text.replace(
                DEMO_COMMANDS,
                &format!("commands:\n  test: [\"python3 -m unittest -q\", \"{hold}\"]\n"),
            )
        })
    })
    .await;
    let issue = m.open_labeled_issue().await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);
    let pr = m.expect_pr(&format!("missions/{issue}/m1")).await;
    m.t.sim
        .wait_for("scrutiny's job running", DEADLINE * 2, |_| {
            m.dispatched_jobs()
                .contains(&"M1-scrutiny-1.1".to_owned())
                .then_some(())
        })
        .await
        .unwrap();

    // alice pauses while scrutiny runs: the running job finishes, nothing new
    // starts, so user testing's check run is cancelled once scrutiny ends.
    m.comment(&m.alice(), issue, "/mission pause").await;
    m.t.expect_app_comment(issue, "Paused by @alice").await;
    std::fs::write(&marker, b"").unwrap();
    let scrutiny = expect_check(&m, pr, "missions / scrutiny", |_| true).await;
    assert_eq!(
        scrutiny.conclusion.as_deref(),
        Some("success"),
        "{scrutiny:?}"
    );
    let user_testing = expect_check(&m, pr, "missions / user-testing", |_| true).await;
    assert_eq!(user_testing.conclusion.as_deref(), Some("cancelled"));
    assert_eq!(user_testing.title, "Mission paused");
    assert!(
        user_testing.summary.contains("paused by @alice")
            && user_testing.summary.contains("`/mission resume`"),
        "{}",
        user_testing.summary
    );
    assert!(open_checks(&m).is_empty(), "{:?}", open_checks(&m));
    assert!(
        !m.dispatched_jobs()
            .iter()
            .any(|j| j.contains("user-testing")),
        "{:?}",
        m.dispatched_jobs()
    );

    // The resume runs user testing on a new check run; the milestone is ready.
    m.comment(&m.alice(), issue, "/mission resume").await;
    expect_check(&m, pr, "missions / user-testing", |c| c == "success").await;
    m.t.expect_app_comment(pr, "Ready to merge").await;
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_during_user_testing_cancels_its_check_run_at_once() {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("app-may-start");
    // The application user testing starts comes up only once the marker
    // exists, which holds the user tester in its first step.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let start = format!(
        "{}; exec python3 -m http.server {port} --bind 127.0.0.1",
        wait_for_file(&marker)
    );
    let m = MissionTest::start_full(Story::default(), FaultConfig::default(), |spec| {
        with_settings(spec, |text| {
            format!(
                "{text}app:\n  start: \"{start}\"\n  url: http://127.0.0.1:{port}/\n  ready_timeout_secs: 120\n"
            )
        })
    })
    .await;
    let issue = m.open_labeled_issue().await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);
    let pr = m.expect_pr(&format!("missions/{issue}/m1")).await;
    let scrutiny = expect_check(&m, pr, "missions / scrutiny", |_| true).await;
    assert_eq!(
        scrutiny.conclusion.as_deref(),
        Some("success"),
        "{scrutiny:?}"
    );
    m.t.sim
        .wait_for("user testing's job running", DEADLINE * 2, |_| {
            m.dispatched_jobs()
                .contains(&"M1-user-testing-1.1".to_owned())
                .then_some(())
        })
        .await
        .unwrap();

    m.comment(&m.alice(), issue, "/mission abort").await;
    m.t.expect_app_comment(issue, "Aborted by @alice").await;
    let user_testing = expect_check(&m, pr, "missions / user-testing", |_| true).await;
    assert_eq!(user_testing.conclusion.as_deref(), Some("cancelled"));
    assert_eq!(user_testing.title, "Mission ended");
    assert!(
        user_testing.summary.contains("aborted by @alice"),
        "{}",
        user_testing.summary
    );
    assert!(open_checks(&m).is_empty(), "{:?}", open_checks(&m));

    // The job still ends; its report changes nothing on the pull request.
    std::fs::write(&marker, b"").unwrap();
    let repo = m.repo();
    m.t.sim
        .wait_for("the user-testing run to complete", DEADLINE * 2, |s| {
            s.read(|w| {
                w.repos[&repo]
                    .runs
                    .values()
                    .all(|r| r.conclusion.is_some())
                    .then_some(())
            })
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let user_testing = expect_check(&m, pr, "missions / user-testing", |_| true).await;
    assert_eq!(user_testing.conclusion.as_deref(), Some("cancelled"));
    assert_eq!(m.checks().len(), 2);
    m.t.stop().await;
}

/// The log and conclusion of the run of job `key`.
fn run_of(m: &MissionTest, key: &str) -> Option<(Option<String>, String)> {
    let repo = m.repo();
    m.t.sim.read(|w| {
        w.repos[&repo]
            .runs
            .values()
            .find(|r| r.inputs.get("job").and_then(|j| j.as_str()) == Some(key))
            .map(|r| (r.conclusion.clone(), r.log.clone()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_past_its_turn_limit_fails_its_run_with_an_annotation_and_the_step_is_retried() {
    let m = MissionTest::start(Story::default()).await;
    // F1's first try only ever reads a file: 201 model calls, past the
    // worker's 200 (each reports a small usage, so the budget holds).
    let reads: Vec<serde_json::Value> = (0..201)
        .map(|_| {
            serde_json::json!({
                "tool_calls": [{"name": "read_file", "input": {"path": "textstats.py"}}],
                "usage": {"input_tokens": 100, "output_tokens": 10},
            })
        })
        .collect();
    std::fs::write(
        m.scripts_dir().join("feature-F1.1.json"),
        serde_json::to_vec(&reads).unwrap(),
    )
    .unwrap();
    let issue = m.open_labeled_issue().await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);

    let (conclusion, log) =
        m.t.sim
            .wait_for("F1's first run to end", DEADLINE * 4, |_| {
                run_of(&m, "feature-F1.1").filter(|(c, _)| c.is_some())
            })
            .await
            .unwrap();
    assert_eq!(conclusion.as_deref(), Some("failure"), "{log}");
    // The second try does the work; the milestone goes on as usual.
    let pr = m.expect_pr(&format!("missions/{issue}/m1")).await;
    m.t.expect_app_comment(pr, "### Handoff: F1 ").await;
    assert!(
        log.contains("::error title=missions worker incomplete::") && log.contains("200"),
        "{log}"
    );
    let (conclusion, _) = run_of(&m, "feature-F1.2").expect("F1's second run");
    assert_eq!(conclusion.as_deref(), Some("success"));

    // Mission control shows the failed try with its reason and its cost.
    let api = m.api(issue).await;
    let timeline = api["timeline"].as_array().expect("a timeline");
    let first = timeline
        .iter()
        .find(|j| j["key"] == "feature-F1.1")
        .unwrap_or_else(|| panic!("{api:#}"));
    assert!(
        first["outcome"]
            .as_str()
            .unwrap()
            .contains("the agent stopped"),
        "{first:#}"
    );
    assert!(first["cost_micros"].as_u64().unwrap() > 0, "{first:#}");
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_would_spend_three_dollars_of_a_one_dollar_budget_stops_inside_its_job() {
    let m = MissionTest::start_full(Story::default(), FaultConfig::default(), |spec| {
        with_settings(spec, |text| {
            text.replace("budget:\n  usd: 5\n", "budget:\n  usd: 1\n")
        })
    })
    .await;
    // F1's worker would make ten calls of 100,000 input tokens each: $0.30
    // apiece at the demo's prices, $3 in all.
    let expensive: Vec<serde_json::Value> = (0..10)
        .map(|_| {
            serde_json::json!({
                "tool_calls": [{"name": "read_file", "input": {"path": "textstats.py"}}],
                "usage": {"input_tokens": 100000, "output_tokens": 0},
            })
        })
        .collect();
    std::fs::write(
        m.scripts_dir().join("feature-F1.json"),
        serde_json::to_vec(&expensive).unwrap(),
    )
    .unwrap();
    let issue = m.open_labeled_issue().await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);

    // The issue says the budget stopped it, and how to go on.
    let paused = m.t.expect_app_comment(issue, "The mission is paused").await;
    let body = paused["body"].as_str().unwrap();
    assert!(
        body.contains("the budget is spent: feature F1 stopped before a model call that could pass its spending limit")
            && body.contains("of $1.00 spent")
            && body.contains("Raise `budget`"),
        "{body}"
    );
    // It stopped inside the job, under the budget, after three calls ($0.90).
    let (conclusion, log) = run_of(&m, "feature-F1.1").expect("F1's run");
    assert_eq!(conclusion.as_deref(), Some("failure"), "{log}");
    assert!(
        log.contains("::error title=missions worker incomplete::")
            && log.contains("spending limit reached"),
        "{log}"
    );
    assert!(
        log.contains(": limit_reached after 3 model call(s)"),
        "{log}"
    );
    let api = m.expect_sticky_matches_api(issue).await;
    let spent = api["budget"]["spent_micros"].as_u64().unwrap();
    assert!((600_000..=1_000_000).contains(&spent), "{api:#}");
    // No second try: another would stop the same way.
    assert_eq!(m.dispatched_jobs(), ["scope-1.1", "feature-F1.1"]);
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_dies_after_three_model_calls_still_counts_them() {
    let m = MissionTest::start_timed(
        Story::default(),
        FaultConfig::default(),
        |spec| spec,
        Some(Duration::from_secs(20)),
    )
    .await;
    // F1's first try: three answers of 10,000 input tokens ($0.03 each at
    // the demo's prices), the third a command that outlives the job's limit.
    let call = |tool: serde_json::Value| serde_json::json!({"tool_calls": [tool], "usage": {"input_tokens": 10000, "output_tokens": 0}});
    let script = vec![
        call(serde_json::json!({"name": "read_file", "input": {"path": "textstats.py"}})),
        call(serde_json::json!({"name": "read_file", "input": {"path": "README.md"}})),
        call(serde_json::json!({"name": "bash", "input": {"command": "sleep 300"}})),
    ];
    std::fs::write(
        m.scripts_dir().join("feature-F1.1.json"),
        serde_json::to_vec(&script).unwrap(),
    )
    .unwrap();
    let issue = m.open_labeled_issue().await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);

    // The runner kills the job; its usage ledger still reaches the App.
    let pr = m.expect_pr(&format!("missions/{issue}/m1")).await;
    m.t.expect_app_comment(pr, "### Handoff: F1 ").await;
    let (conclusion, log) = run_of(&m, "feature-F1.1").expect("F1's first run");
    assert_eq!(conclusion.as_deref(), Some("timed_out"), "{log}");
    assert!(
        log.contains("its usage (3 model call(s), 30000 tokens in, 0 out, $0.09) is recorded on missions/1/reports"),
        "{log}"
    );
    let api = m.expect_sticky_matches_api(issue).await;
    let timeline = api["timeline"].as_array().unwrap();
    let died = timeline
        .iter()
        .find(|j| j["key"] == "feature-F1.1")
        .unwrap_or_else(|| panic!("{api:#}"));
    assert_eq!(died["cost_micros"], 90_000, "{died:#}");
    assert_eq!(died["estimated"], false, "{died:#}");
    assert!(
        died["outcome"].as_str().unwrap().contains("timed out"),
        "{died:#}"
    );
    // The mission's spend is the sum of its jobs', the dead one included.
    let sum: u64 = timeline
        .iter()
        .map(|j| j["cost_micros"].as_u64().unwrap())
        .sum();
    assert_eq!(api["budget"]["spent_micros"].as_u64().unwrap(), sum);
    assert_eq!(api["budget"]["estimated"], serde_json::Value::Null);
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_figure_a_user_sees_agrees_and_the_plan_pr_shows_the_forecast() {
    use missions::mission::machine::dollars;
    let m = MissionTest::start(Story::default()).await;
    let issue = m.open_labeled_issue().await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;

    // The plan PR: the forecast next to the budget, and a warning, since the
    // default costs of three workers and two validations pass $5.
    let body = pr_body(&m, plan_pr);
    assert!(
        body.contains("**Cost forecast**: about $")
            && body.contains("3 feature(s)")
            && body.contains("2 milestone(s)")
            && body.contains("budget $5.00"),
        "{body}"
    );
    assert!(
        body.contains("⚠️ The forecast") && body.contains("Raise `budget`"),
        "{body}"
    );

    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);
    let pr = m.expect_pr(&format!("missions/{issue}/m1")).await;
    m.expect_checks_completed(pr).await;
    m.t.expect_app_comment(pr, "Ready to merge").await;
    let api = m.expect_sticky_matches_api(issue).await;
    let timeline = api["timeline"].as_array().unwrap();
    let points = api["usage"].as_array().unwrap();
    assert_eq!(timeline.len(), points.len());
    // Each job's cost and the mission's total after it, as the API has them.
    let expected = |key: &str| -> (String, String) {
        let i = timeline
            .iter()
            .position(|j| j["key"] == key)
            .unwrap_or_else(|| panic!("{key} is not in the timeline: {api:#}"));
        (
            dollars(timeline[i]["cost_micros"].as_u64().unwrap()),
            dollars(points[i]["total_cost_micros"].as_u64().unwrap()),
        )
    };
    let note = regex::Regex::new(
        r"\*\*Cost\*\*: job `([^`]+)` \$([0-9.]+) \(.*\) · mission so far \$([0-9.]+) of \$5\.00",
    )
    .unwrap();
    let mut seen = 0;
    // The handoff comments on the milestone PR.
    for body in m.app_comments(pr) {
        if let Some(c) = note.captures(&body) {
            assert_eq!(
                expected(&c[1]),
                (c[2].to_owned(), c[3].to_owned()),
                "{body}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 2, "a cost line in each of F1's and F2's handoffs");
    // The check runs' summaries.
    for check in m.checks() {
        let c = note
            .captures(&check.summary)
            .unwrap_or_else(|| panic!("no cost line: {}", check.summary));
        assert_eq!(
            expected(&c[1]),
            (c[2].to_owned(), c[3].to_owned()),
            "{}",
            check.summary
        );
        seen += 1;
    }
    assert_eq!(seen, 4);
    // And the total is the sum of the jobs, in the API and the sticky comment.
    let sum: u64 = timeline
        .iter()
        .map(|j| j["cost_micros"].as_u64().unwrap())
        .sum();
    assert_eq!(api["budget"]["spent_micros"].as_u64().unwrap(), sum);
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_model_reaches_the_jobs_and_a_required_independent_validator_is_asked_for() {
    // The repository names no model at all: every seat resolves over the
    // server's `[model]` (the scripted model here), and user testing must
    // come from another family than the workers'.
    let m = MissionTest::start_served(
        Story::default(),
        FaultConfig::default(),
        |spec| {
            with_settings(spec, |text| {
                let start = text.find("models:").unwrap();
                let end = text.find("commands:").unwrap();
                format!(
                    "{}independent_validators: require\n{}",
                    &text[..start],
                    &text[end..]
                )
            })
        },
        None,
        |scripts| {
            let mut model = missions::llm::config::ModelConfig::new(
                missions::llm::config::ProviderKind::Scripted,
                "scripted-demo",
            );
            model.script = Some(scripts.join("{agent}.json"));
            model.prices = Some(missions::llm::pricing::Prices {
                input: 3.0,
                output: 15.0,
                cache_read: 0.3,
                cache_write: 3.75,
            });
            Some(model)
        },
    )
    .await;
    let issue = m.open_labeled_issue().await;
    // Scoping ran on the server's model: the plan PR is there, and it says
    // the validators share the workers' model.
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    let body = pr_body(&m, plan_pr);
    assert!(
        body.contains("⚠️ scrutiny uses the same models, like the workers")
            && body.contains("⚠️ user-testing uses the same models")
            && body.contains("refuses to run it"),
        "{body}"
    );
    let (_, log) = run_of(&m, "scope-1.1").unwrap();
    assert!(log.contains("--server-model"), "{log}");
    assert!(log.contains("model scripted-demo (scripted)"), "{log}");

    // The features run; scrutiny is refused: its check run asks for action
    // and the mission pauses saying what to change.
    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);
    let pr = m.expect_pr(&format!("missions/{issue}/m1")).await;
    let scrutiny = expect_check(&m, pr, "missions / scrutiny", |_| true).await;
    assert_eq!(
        scrutiny.conclusion.as_deref(),
        Some("action_required"),
        "{scrutiny:?}"
    );
    assert!(
        scrutiny.summary.contains("`models.scrutiny`"),
        "{}",
        scrutiny.summary
    );
    let paused = m.t.expect_app_comment(issue, "The mission is paused").await;
    let body = paused["body"].as_str().unwrap();
    assert!(
        body.contains("independent_validators: require") && body.contains("`models.scrutiny`"),
        "{body}"
    );
    assert!(!m.dispatched_jobs().iter().any(|j| j.contains("scrutiny")));
    // User testing's check run, which nothing will run for, ends too.
    let user_testing = expect_check(&m, pr, "missions / user-testing", |_| true).await;
    assert_eq!(user_testing.conclusion.as_deref(), Some("cancelled"));
    assert!(open_checks(&m).is_empty(), "{:?}", open_checks(&m));
    let sticky = m.stickies(issue).pop().unwrap();
    assert!(
        sticky.contains("⚠️ scrutiny uses the same models"),
        "{sticky}"
    );
    m.t.stop().await;
}
