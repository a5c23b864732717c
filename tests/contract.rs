//! A contract that is tested, not only counted: the plan's checks are linted
//! on the base before anyone approves them, and each feature's checks are
//! run with and without the feature. Each story is told through the
//! simulator, as alice sees it on GitHub.

mod common;

use common::mission::{MissionTest, with_settings};
use common::scenario::DEADLINE;
use missions::demo::scripts::{Story, TRIVIAL_CHECK};
use missions::sim::FaultConfig;
use serde_json::{Value, json};

fn pr_body(m: &MissionTest, pr: u64) -> String {
    let repo = m.repo();
    m.t.sim
        .read(|w| w.repos[&repo].issues[&pr].body.clone().unwrap_or_default())
}

async fn main_head(m: &MissionTest) -> String {
    m.t.sim
        .git()
        .resolve_ref(&m.repo(), "refs/heads/main")
        .await
        .unwrap()
        .expect("main exists")
}

async fn plan_json(m: &MissionTest, issue: u64) -> Value {
    let text =
        m.t.file(
            &format!(".missions/{issue}/plan.json"),
            &format!("missions/{issue}/plan"),
        )
        .await
        .expect("plan.json on the plan branch");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_already_passes_on_main_goes_back_to_the_orchestrator_once_and_is_fixed() {
    let m = MissionTest::start(Story {
        trivial_check: true,
        ..Story::default()
    })
    .await;
    let base = main_head(&m).await;
    let issue = m.open_labeled_issue().await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;

    // The orchestrator's first plan gave A1 a check that passes on main; the
    // job sent it back once, and the plan alice reviews has A1's real check.
    let body = pr_body(&m, plan_pr);
    assert!(
        body.contains("The first plan went back to the orchestrator once: A1 passed on main."),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "**Baseline lint**: 3 of 3 check(s) fail on `{}` (main, before any feature)",
            &base[..12]
        )),
        "{body}"
    );
    assert!(!body.contains("[!WARNING]"), "{body}");
    let plan = plan_json(&m, issue).await;
    let a1 = &plan["assertions"][0];
    assert_eq!(a1["id"], "A1");
    assert_ne!(a1["check"], TRIVIAL_CHECK, "{plan}");
    assert!(a1["check"].as_str().unwrap().contains("--lines"), "{plan}");
    // The send-back happened inside the one scoping job.
    assert_eq!(m.dispatched_jobs(), ["scope-1.1"]);

    // Approval pins the commit the plan was linted on as the mission's base.
    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);
    let approved = m.t.expect_app_comment(plan_pr, "Approved by @alice").await;
    assert!(
        approved["body"].as_str().unwrap().contains(&format!(
            "The plan was linted on `{}`, now the mission's pinned base.",
            &base[..12]
        )),
        "{approved}"
    );
    // F1's check fails without F1 and passes with it: its control holds.
    let pr = m.expect_pr(&format!("missions/{issue}/m1")).await;
    let handoff = m.t.expect_app_comment(pr, "### Handoff: F1 ").await;
    let text = handoff["body"].as_str().unwrap();
    assert!(
        text.contains("**Negative controls**: 1 of 1 check(s) fail without F1 and pass with it."),
        "{text}"
    );
    assert!(
        text.contains("| A1 | `python3 textstats.py sample.txt --lines \\| grep -qx 'lines: 3'` | fails (exit 1) | passes |"),
        "{text}"
    );
    assert!(!text.contains("Unresolved issues"), "{text}");
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_still_passing_on_main_after_its_one_send_back_is_shown_to_the_approver() {
    let m = MissionTest::start(Story {
        trivial_check: true,
        keep_trivial_check: true,
        ..Story::default()
    })
    .await;
    let issue = m.open_labeled_issue().await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    let body = pr_body(&m, plan_pr);
    assert!(
        body.contains("**Baseline lint**: 2 of 3 check(s) fail"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "> [!WARNING]\n> A1 already passes on main: it tests nothing new (`{}`).",
            TRIVIAL_CHECK.replace('|', "\\|")
        )),
        "{body}"
    );
    assert!(
        body.contains("The first plan went back to the orchestrator once: A1 passed on main."),
        "{body}"
    );
    // It went back once only: the plan stands, flagged, for alice to judge.
    assert_eq!(
        plan_json(&m, issue).await["assertions"][0]["check"],
        TRIVIAL_CHECK
    );
    assert_eq!(m.dispatched_jobs(), ["scope-1.1"]);
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feature_that_does_not_make_its_check_pass_fails_its_negative_control_and_is_triaged() {
    let m = MissionTest::start(Story {
        f1_without_lines: true,
        ..Story::default()
    })
    .await;
    let (issue, _) = m.plan_approved().await;
    let pr = m.expect_pr(&format!("missions/{issue}/m1")).await;

    // F1's worker said it was done, but its check fails with F1 as without.
    let handoff = m.t.expect_app_comment(pr, "### Handoff: F1 ").await;
    let text = handoff["body"].as_str().unwrap();
    assert!(
        text.contains("**Negative controls**: 0 of 1 check(s) fail without F1 and pass with it."),
        "{text}"
    );
    assert!(
        text.contains("| A1 ⚠ | `python3 textstats.py sample.txt --lines \\| grep -qx 'lines: 3'` | fails (exit 1) | fails (exit 1) |"),
        "{text}"
    );
    assert!(
        text.contains(
            "- Negative control of A1: its check `python3 textstats.py sample.txt --lines \\| grep -qx 'lines: 3'` still fails with F1 (exit 1): F1 does not make A1 true yet"
        ),
        "{text}"
    );
    // The handoff on the branch carries the controls the harness ran.
    let saved: Value = serde_json::from_str(
        &m.t.file(
            &format!(".missions/{issue}/handoffs/F1.json"),
            &format!("missions/{issue}/m1"),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(saved["controls"][0]["with_feature"], 1, "{saved}");
    assert_eq!(saved["controls"][0]["without_feature"], 1, "{saved}");

    // So the orchestrator triages it before F2, and adds the missing work.
    let triage =
        m.t.expect_app_comment(pr, "### Triage of F1's handoff")
            .await;
    assert!(
        triage["body"]
            .as_str()
            .unwrap()
            .contains("- F5: Add the --lines flag"),
        "{triage}"
    );
    m.t.expect_app_comment(pr, "### Handoff: F2 ").await;
    assert_eq!(
        &m.dispatched_jobs()[..4],
        ["scope-1.1", "feature-F1.1", "triage-F1.1", "feature-F2.1"]
    );
    m.t.stop().await;
}

/// The first model request of each agent run whose task names `needle`.
fn requests_about(m: &MissionTest, needle: &str) -> Vec<String> {
    m.t.model_requests()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_m1_merges_the_orchestrator_replans_m2_and_its_workers_read_the_new_skill() {
    let m = MissionTest::start(Story {
        replan_m2: true,
        ..Story::default()
    })
    .await;
    let (issue, _) = m.plan_approved().await;
    m.milestone_passes_and_is_merged(issue, "M1", &["F1", "F2"])
        .await;

    // Before M2 starts, the orchestrator re-plans it; the issue shows what
    // changed, and since it only adds, it applies at once.
    let replan = m.t.expect_app_comment(issue, "### Re-plan before M2").await;
    let text = replan["body"].as_str().unwrap();
    for line in [
        "M1 taught that words must be lower-cased for --top",
        "- **changed** F3: description",
        "- **added** F6 to M2: Document the flags (makes A5 true)",
        "- **added** A5: README.md documents `--top N`",
        "- **updated** skill `run-tests`",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    let m2 = m.milestone_passes(issue, "M2", &["F3", "F6"]).await;

    // M2's workers were given the rewritten skill and the orchestrator's notes.
    for feature in ["F3", "F6"] {
        let asked = requests_about(&m, &format!("Implement feature **{feature}**"));
        assert!(!asked.is_empty(), "no request for {feature}");
        for request in &asked {
            assert!(
                request.contains(missions::demo::scripts::UPDATED_SKILL),
                "{request}"
            );
            assert!(
                request.contains("M1 taught that words must be lower-cased"),
                "{request}"
            );
        }
    }
    // The shared state on M2's branch is the revised one.
    let branch = format!("missions/{issue}/m2");
    let plan: Value = serde_json::from_str(
        &m.t.file(&format!(".missions/{issue}/plan.json"), &branch)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(plan["milestones"][1]["features"][1]["id"], "F6", "{plan}");
    assert_eq!(plan["assertions"][3]["id"], "A5", "{plan}");
    let skill =
        m.t.file(&format!(".missions/{issue}/skills/run-tests.md"), &branch)
            .await
            .unwrap();
    assert_eq!(skill.trim(), missions::demo::scripts::UPDATED_SKILL);
    // F6's check fails without F6 and passes with it.
    let f6 = m.t.expect_app_comment(m2, "### Handoff: F6 ").await;
    assert!(
        f6["body"]
            .as_str()
            .unwrap()
            .contains("**Negative controls**: 1 of 1 check(s) fail without F6 and pass with it."),
        "{f6}"
    );
    let jobs = m.dispatched_jobs();
    let at = jobs.iter().position(|j| j == "boundary-M1.1").unwrap();
    assert_eq!(
        &jobs[at..at + 3],
        ["boundary-M1.1", "feature-F3.1", "feature-F6.1"]
    );
    // No pull request asked for approval: nothing approved was taken away.
    let repo = m.repo();
    let revision_prs = m.t.sim.read(|w| {
        w.repos[&repo]
            .issues
            .values()
            .filter(|i| {
                i.pull
                    .as_ref()
                    .is_some_and(|p| p.head_ref.ends_with("-replan"))
            })
            .count()
    });
    assert_eq!(revision_prs, 0);
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replan_that_drops_an_approved_assertion_waits_for_an_approving_review() {
    let m = MissionTest::start(Story {
        replan_drops_a3: true,
        ..Story::default()
    })
    .await;
    let (issue, _) = m.plan_approved().await;
    m.milestone_passes_and_is_merged(issue, "M1", &["F1", "F2"])
        .await;

    // The re-plan drops A3, which alice approved: it comes to her as a pull request.
    let revision = m.expect_pr(&format!("missions/{issue}/m1-replan")).await;
    let body = pr_body(&m, revision);
    assert!(
        body.contains("**It removes or changes assertions you approved**"),
        "{body}"
    );
    assert!(body.contains("- A3 removed (was: `python3 textstats.py FILE --top N` prints the N most frequent words"), "{body}");
    assert!(body.contains("- **removed** A3:"), "{body}");
    assert!(body.contains("- **added** A5:"), "{body}");
    m.t.expect_app_comment(
        issue,
        "The re-plan before M2 removes or changes assertions that were approved",
    )
    .await;
    // Nothing of M2 runs until a writer approves: not on a reader's approval.
    assert_eq!(m.review(&m.bob(), revision, "APPROVE", "").await, 200);
    m.t.expect_app_comment(revision, "@bob thanks for the review")
        .await;
    assert_eq!(m.dispatched_jobs().last().unwrap(), "boundary-M1.1");
    assert!(
        m.t.sim
            .git()
            .resolve_ref(&m.repo(), &format!("refs/heads/missions/{issue}/m2"))
            .await
            .unwrap()
            .is_none(),
        "M2's branch exists before the revision is approved"
    );

    assert_eq!(m.review(&m.alice(), revision, "APPROVE", "").await, 200);
    m.t.expect_app_comment(
        revision,
        "Approved by @alice: the revised plan stands, and M2 starts on",
    )
    .await;
    m.milestone_passes(issue, "M2", &["F3"]).await;
    let plan: Value = serde_json::from_str(
        &m.t.file(
            &format!(".missions/{issue}/plan.json"),
            &format!("missions/{issue}/m2"),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let ids: Vec<&str> = plan["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["A1", "A2", "A5"]);
    assert_eq!(m.pr_state(revision).0, "closed");
    m.t.stop().await;
}

/// The repository's CI as the CI story has it: a push-triggered workflow
/// whose one job, `lint`, refuses TODO markers in the program.
const CI_WORKFLOW: &str = "name: ci\non: push\npermissions:\n  contents: read\njobs:\n  lint:\n    \
    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - run: ./lint.sh\n";

/// `lint`'s check runs on `sha`, oldest first: (conclusion, details URL).
fn lint_runs(m: &MissionTest, sha: &str) -> Vec<(Option<String>, Option<String>)> {
    let repo = m.repo();
    m.t.sim.read(|w| {
        w.repos[&repo]
            .check_runs
            .values()
            .filter(|r| r.name == "lint" && r.head_sha == sha)
            .map(|r| (r.conclusion.clone(), r.details_url.clone()))
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repositorys_own_ci_failing_on_the_ready_commit_becomes_a_follow_up_and_the_milestone_is_ready_only_once_it_passes()
 {
    // The repository runs its own CI on every push, and main requires its
    // `lint` check. The mission's settings know nothing of it.
    let m = MissionTest::start_with_ci(
        Story {
            ci_lint_f2: true,
            ..Story::default()
        },
        |mut spec| {
            spec.files
                .push((".github/workflows/ci.yml".into(), CI_WORKFLOW.into()));
            spec
        },
        vec![(
            "ci.yml".to_owned(),
            vec![missions::sim::SimJob {
                name: "lint".into(),
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    missions::demo::scripts::CI_LINT.into(),
                ],
                contents_write: false,
                always: false,
            }],
        )],
    )
    .await;
    let repo = m.repo();
    m.t.sim.repo_settings(&repo, |r| {
        r.protection.insert(
            "main".into(),
            missions::sim::state::BranchProtection {
                required_checks: vec!["lint".into()],
                strict: false,
            },
        );
    });
    let (issue, _) = m.plan_approved().await;
    let pr = m.expect_pr(&format!("missions/{issue}/m1")).await;

    // Round 1: both validators pass, but the repository's lint fails on the
    // ready commit. The milestone is not ready; alice is told why.
    let failed =
        m.t.expect_app_comment(pr, "❌ The repository's own CI failed")
            .await;
    let text = failed["body"].as_str().unwrap();
    assert!(text.contains("(round 1)"), "{text}");
    assert!(text.contains("`lint`"), "{text}");
    assert!(text.contains(": failure"), "{text}");
    assert!(
        text.contains(&format!(".missions/{issue}/reports/M1-ci.json")),
        "{text}"
    );
    let round_1 = text
        .split_whitespace()
        .map(|w| w.trim_end_matches(','))
        .find(|w| w.len() == 40 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .expect("the ready commit's sha")
        .to_owned();
    let runs = lint_runs(&m, &round_1);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].0.as_deref(), Some("failure"));
    let scrutiny_1 = m
        .checks()
        .into_iter()
        .find(|c| c.name == "missions / scrutiny" && c.head_sha == round_1)
        .expect("scrutiny judged round 1");
    assert_eq!(scrutiny_1.conclusion.as_deref(), Some("success"));
    assert!(
        !m.app_comments(pr)
            .iter()
            .any(|c| c.contains("Ready to merge") && c.contains(&round_1)),
        "round 1 was called ready"
    );

    // The report the follow-up reads holds the failing job's log.
    let report: Value = serde_json::from_str(
        &m.t.file(
            &format!(".missions/{issue}/reports/M1-ci.json"),
            &format!("missions/{issue}/reports"),
        )
        .await
        .expect("the CI report on the reports branch"),
    )
    .unwrap();
    assert_eq!(report["sha"], round_1.as_str(), "{report}");
    assert_eq!(report["round"], 1, "{report}");
    assert_eq!(report["failed"], true, "{report}");
    assert_eq!(report["checks"][0]["name"], "lint", "{report}");
    assert_eq!(report["checks"][0]["state"], "failed", "{report}");
    assert_eq!(report["checks"][0]["conclusion"], "failure", "{report}");
    let log = report["checks"][0]["log_tail"].as_str().unwrap_or_default();
    assert!(
        log.contains("TODO markers are not allowed on main"),
        "{report}"
    );
    assert!(log.contains("# TODO: count characters"), "{report}");
    // F4 removes the TODO; round 2 passes the validators and the lint, and
    // only then is the milestone ready.
    m.t.expect_app_comment(pr, "### Handoff: F4 ").await;
    // The follow-up orchestrator was given the report.
    let asked = requests_about(&m, "Task: **follow-up**");
    assert!(!asked.is_empty(), "no follow-up request");
    assert!(
        asked
            .iter()
            .all(|r| r.contains("TODO markers are not allowed on main")),
        "{asked:?}"
    );

    let ready = m.t.expect_app_comment(pr, "Ready to merge").await;
    let text = ready["body"].as_str().unwrap();
    assert!(
        text.contains("passed both validators and the repository's required check(s) `lint`"),
        "{text}"
    );
    let round_2 = m.pr_head(pr);
    assert_ne!(round_2, round_1);
    assert!(text.contains(&round_2), "{text}");
    let runs = lint_runs(&m, &round_2);
    assert_eq!(
        runs.last().and_then(|r| r.0.as_deref()),
        Some("success"),
        "{runs:?}"
    );
    let jobs = m.dispatched_jobs();
    let at = jobs
        .iter()
        .position(|j| j == "followup-M1-1.1")
        .expect("a follow-up");
    assert_eq!(jobs[at + 1], "feature-F4.1", "{jobs:?}");

    // Mission control shows the check, and main's rule lets alice merge.
    m.t.sim
        .wait_for("mission control showing the lint passed", DEADLINE, |_| {
            m.stickies(issue)
                .pop()
                .filter(|s| s.contains("| repository checks | ✅ [`lint`]"))
        })
        .await
        .unwrap();
    m.merge(pr).await;
    assert_eq!(m.pr_state(pr), ("closed".into(), true));
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_status_named_in_the_settings_holds_the_milestone_until_it_succeeds() {
    // Another CI service reports commit statuses; a ruleset on the default
    // branch requires its `ci/external`, and so the settings name it (the App
    // reads branch protection, not rulesets). No webhook the App reads tells
    // of a status: the App asks GitHub when the validators are done, and
    // again on each reconciliation.
    let m = MissionTest::start_full(Story::default(), FaultConfig::default(), |spec| {
        with_settings(spec, |text| {
            format!("{text}ci:\n  required: [ci/external]\n  wait_minutes: 30\n")
        })
    })
    .await;
    m.t.sim.repo_settings(&m.repo(), |r| {
        r.rulesets.push(missions::sim::state::Ruleset {
            name: "checks on main".into(),
            include: vec!["refs/heads/main".into()],
            required_checks: vec!["ci/external".into()],
            ..Default::default()
        })
    });
    let (issue, _) = m.plan_approved().await;
    let pr = m.expect_pr(&format!("missions/{issue}/m1")).await;
    let (scrutiny, user_testing) = m.expect_checks_completed(pr).await;
    assert_eq!(scrutiny.conclusion.as_deref(), Some("success"));
    assert_eq!(user_testing.conclusion.as_deref(), Some("success"));
    let ready_sha = scrutiny.head_sha.clone();

    // Both validators passed, but the external CI has not reported: the
    // milestone waits, and mission control says for what.
    let repo = m.repo();
    m.t.sim
        .wait_for(
            "mission control showing the pending status",
            DEADLINE,
            |_| {
                m.stickies(issue)
                    .pop()
                    .filter(|s| s.contains("| repository checks | ⏳ `ci/external` |"))
            },
        )
        .await
        .unwrap();
    let status = |state: &str| json!({"state": state, "context": "ci/external", "target_url": "https://ci.example.com/builds/7"});
    let path = format!("/repos/{repo}/statuses/{ready_sha}");
    let answer =
        m.t.call(&m.alice(), "POST", &path, Some(status("pending")))
            .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    // A reconciliation sees it pending; nothing is ready yet.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert!(
        !m.app_comments(pr)
            .iter()
            .any(|c| c.contains("Ready to merge")),
        "ready before the required status succeeded"
    );

    let answer =
        m.t.call(&m.alice(), "POST", &path, Some(status("success")))
            .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let ready = m.t.expect_app_comment(pr, "Ready to merge").await;
    let text = ready["body"].as_str().unwrap();
    assert!(
        text.contains(
            "passed both validators and the repository's required check(s) `ci/external`"
        ),
        "{text}"
    );
    assert!(text.contains(&ready_sha), "{text}");
    m.t.sim
        .wait_for(
            "mission control showing the status passed",
            DEADLINE,
            |_| {
                m.stickies(issue).pop().filter(|s| {
                    s.contains(
                    "| repository checks | ✅ [`ci/external`](https://ci.example.com/builds/7) |",
                )
                })
            },
        )
        .await
        .unwrap();
    m.t.stop().await;
}
