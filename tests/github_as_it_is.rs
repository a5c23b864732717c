//! GitHub as it really behaves, not as a friendly simulator would: bodies it
//! will not take, files its contents API leaves empty, rulesets that refuse a
//! branch. Each story drives the whole App through the simulator, which keeps
//! GitHub's limits, and reads what a maintainer would see.

mod common;

use common::mission::{DEMO_COMMANDS, MissionTest, with_settings};
use common::scenario::DEADLINE;
use missions::demo::scripts::Story;
use missions::sim::FaultConfig;
use missions::sim::state::{BranchProtection, Ruleset};
use serde_json::{Value, json};

/// Puts `turn` before the scripted turns of agent run `name`.
fn prepend_turn(m: &MissionTest, name: &str, turn: Value) {
    let path = m.scripts_dir().join(format!("{name}.json"));
    let mut turns: Vec<Value> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    turns.insert(0, turn);
    std::fs::write(&path, serde_json::to_vec(&turns).unwrap()).unwrap();
}

/// One model turn running `commands`. Its usage is given: the scripted model
/// would count the long commands as output tokens past the budget.
fn bash_calls(commands: impl IntoIterator<Item = String>) -> Value {
    let calls: Vec<Value> = commands
        .into_iter()
        .map(|c| json!({"name": "bash", "input": {"command": c}}))
        .collect();
    json!({ "tool_calls": calls, "usage": {"input_tokens": 1000, "output_tokens": 1000} })
}

/// The mission starts and its plan is approved; returns (issue, M1's PR).
async fn approved(m: &MissionTest) -> (u64, u64) {
    let issue = m.open_labeled_issue().await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);
    let pr = m.expect_pr(&format!("missions/{issue}/m1")).await;
    (issue, pr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_too_long_for_github_is_posted_cut_with_a_link_to_the_whole_and_the_mission_goes_on()
 {
    let m = MissionTest::start(Story::default()).await;
    // F1's worker first runs 800 commands of 250 characters: 200 KB of
    // commands, each a row of its handoff's table.
    prepend_turn(
        &m,
        "feature-F1",
        bash_calls((0..800).map(|i| format!("echo {i:04} {} > /dev/null", "x".repeat(230)))),
    );
    let (issue, pr) = approved(&m).await;

    let handoff = m.t.expect_app_comment(pr, "### Handoff: F1 ").await;
    let body = handoff["body"].as_str().unwrap();
    assert!(body.chars().count() <= 65_536, "{} characters", body.len());
    assert!(
        body.starts_with("*This text is ") && body.contains("it is cut below"),
        "{}",
        &body[..500]
    );
    assert!(
        body.contains("| `echo 0000 xxx"),
        "the first commands are shown"
    );
    assert!(!body.contains("echo 0799"), "the last ones are cut");
    // The link leads to the whole text, saved on the reports branch.
    let folder = format!(".missions/{issue}/comments/");
    let start = body.find(&folder).expect("a path to the whole text");
    let path = &body[start..start + body[start..].find(".md").unwrap() + 3];
    let reports = format!("missions/{issue}/reports");
    assert!(
        body.contains(&format!("/{}/blob/{reports}/{path})", m.repo())),
        "{}",
        &body[..500]
    );
    let whole = m.t.file(path, &reports).await.expect("the whole text");
    assert!(whole.starts_with("### Handoff: F1 "), "{}", &whole[..200]);
    assert!(whole.contains("| `echo 0799 xxx") && whole.len() > 200_000);

    // Nothing paused: F2 follows and the milestone passes.
    m.milestone_passes(issue, "M1", &["F1", "F2"]).await;
    assert!(
        !m.app_comments(issue).iter().any(|c| c.contains("paused")),
        "{:?}",
        m.app_comments(issue)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_output_of_two_megabytes_is_read_whole() {
    let m = MissionTest::start(Story::default()).await;
    // F1's worker writes 18 files of 120 KB with heredocs: the commands, kept
    // whole in its output, make that file over 2 MB, past the 1 MB up to
    // which GitHub's contents API returns a file inside its JSON.
    let chunk = "0123456789abcdef".repeat(7_500);
    prepend_turn(
        &m,
        "feature-F1",
        bash_calls((0..18).map(|i| format!("cat > /tmp/chunk-{i} <<'EOF'\n{chunk}\nEOF"))),
    );
    let (issue, pr) = approved(&m).await;

    let output =
        m.t.file(
            &format!(".missions/{issue}/jobs/feature-F1.1.json"),
            &format!("missions/{issue}/m1"),
        )
        .await
        .expect("F1's output");
    assert!(output.len() > 2_000_000, "{} bytes", output.len());
    // The App read it: the handoff is posted, each heredoc cut to a line.
    let handoff = m.t.expect_app_comment(pr, "### Handoff: F1 ").await;
    let body = handoff["body"].as_str().unwrap();
    assert!(body.len() < 20_000, "{} bytes", body.len());
    assert_eq!(
        body.matches(" characters in all)` | 0 |").count(),
        18,
        "{body}"
    );
    m.milestone_passes(issue, "M1", &["F1", "F2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ruleset_that_refuses_the_missions_branches_pauses_the_mission_saying_so() {
    let m = MissionTest::start(Story::default()).await;
    // The organisation restricts creating branches, and the App is not on
    // the ruleset's bypass list.
    m.t.sim.repo_settings(&m.repo(), |r| {
        r.rulesets.push(Ruleset {
            name: "no new branches".into(),
            include: vec!["~ALL".into()],
            restrict_creation: true,
            ..Default::default()
        })
    });
    let issue = m.open_labeled_issue().await;

    let paused = m.t.expect_app_comment(issue, "The mission is paused").await;
    let body = paused["body"].as_str().unwrap();
    assert!(
        body.contains(&format!(
            "GitHub did not create branch `missions/{issue}/plan`"
        )) && body.contains("422 (Reference update failed)")
            && body.contains("ruleset that restricts creating branches")
            && body.contains("bypass list")
            && body.contains("`/mission resume`"),
        "{body}"
    );
    // Said once, not again for the dispatch that found no branch.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let pauses = m
        .app_comments(issue)
        .into_iter()
        .filter(|c| c.contains("The mission is paused"))
        .count();
    assert_eq!(pauses, 1, "{:?}", m.app_comments(issue));

    // The maintainer adds the App to the bypass list (here: drops the rule)
    // and resumes: the branch is made and the plan is proposed.
    m.t.sim.repo_settings(&m.repo(), |r| r.rulesets.clear());
    m.comment(&m.alice(), issue, "/mission resume").await;
    m.t.expect_app_comment(issue, "Resumed by @").await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    assert!(plan_pr > issue);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_run_on_a_failed_scrutiny_check_runs_scrutiny_again_on_a_fresh_check_run() {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("tests-may-pass");
    // Scrutiny's second command fails until the marker exists (a flaky
    // service, say): its report fails the milestone.
    let flaky = format!("test -e {}", marker.display());
    let m = MissionTest::start_full(Story::default(), FaultConfig::default(), |spec| {
        with_settings(spec, |text| {
            text.replace(
                DEMO_COMMANDS,
                &format!("commands:\n  test: [\"python3 -m unittest -q\", \"{flaky}\"]\n"),
            )
        })
    })
    .await;
    // User testing waits until the Re-run is pressed: the round is on then.
    let hold = marker_dir.path().join("user-testing-may-start");
    prepend_turn(
        &m,
        "M1-user-testing-1",
        bash_calls([format!(
            "while [ ! -e {} ]; do sleep 0.2; done",
            hold.display()
        )]),
    );
    let (issue, pr) = approved(&m).await;
    let failed =
        m.t.sim
            .wait_for("a failed scrutiny check run", DEADLINE * 2, |_| {
                m.checks().into_iter().find(|c| {
                    c.name == "missions / scrutiny"
                        && c.conclusion.as_deref().is_some_and(|c| c != "success")
                })
            })
            .await
            .unwrap();
    assert_eq!(failed.head_sha, m.pr_head(pr));

    // The maintainer fixes the cause and presses Re-run on that check run.
    std::fs::write(&marker, "").unwrap();
    let rerun =
        m.t.act(
            &m.alice(),
            "POST",
            &format!("/repos/{}/check-runs/{}/rerequest", m.repo(), failed.id),
            None,
        )
        .await;
    assert_eq!(rerun.status, 201, "{:?}", rerun.body);
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let note =
        m.t.expect_app_comment(pr, "asked to re-run `missions / scrutiny`")
            .await;
    std::fs::write(&hold, "").unwrap();
    assert!(
        note["body"].as_str().unwrap().contains("fresh check run"),
        "{note}"
    );
    // Scrutiny runs again on a new check run of the same commit and passes.
    let again =
        m.t.sim
            .wait_for("scrutiny again", DEADLINE * 2, |_| {
                m.checks().into_iter().find(|c| {
                    c.name == "missions / scrutiny"
                        && c.id != failed.id
                        && c.conclusion.as_deref() == Some("success")
                })
            })
            .await
            .unwrap();
    assert_eq!(again.head_sha, failed.head_sha);
    m.t.expect_app_comment(pr, "Ready to merge").await;
    let user_testing: Vec<_> = m
        .checks()
        .into_iter()
        .filter(|c| c.name == "missions / user-testing" && c.head_sha == failed.head_sha)
        .collect();
    assert!(
        user_testing
            .last()
            .is_some_and(|c| c.conclusion.as_deref() == Some("success")),
        "{user_testing:?}"
    );
    assert!(m.checks().iter().all(|c| c.conclusion.is_some()));
    // Nothing paused on the way: the failure went to a second try, not to
    // follow-up work.
    assert!(
        !m.app_comments(issue).iter().any(|c| c.contains("paused")),
        "{:?}",
        m.app_comments(issue)
    );
    assert!(
        !m.dispatched_jobs()
            .iter()
            .any(|j| j.starts_with("followup-")),
        "{:?}",
        m.dispatched_jobs()
    );
}

#[test]
fn a_merge_is_judged_by_who_merged_not_by_who_sent_the_event() {
    use missions::engine::missions::MissionInput;
    use missions::github::events::WebhookEvent;
    // A merge queue or auto-merge sends `closed` with a sender other than the
    // person who merged: `merged_by` says who did, as the reconciliation reads.
    let fixture = common::webhook_fixtures()
        .into_iter()
        .find(|f| f.event == "pull_request" && f.file == "closed.json")
        .expect("GitHub's example of a closed pull request");
    let mut payload = fixture.json;
    payload["pull_request"]["merged"] = true.into();
    payload["pull_request"]["merged_at"] = "2026-12-07T05:00:00Z".into();
    payload["pull_request"]["head"]["ref"] = "missions/1/m1".into();
    let mut merger = payload["sender"].clone();
    merger["login"] = "alice".into();
    payload["pull_request"]["merged_by"] = merger;
    payload["sender"]["login"] = "merge-queue".into();
    let event =
        WebhookEvent::parse("pull_request", &serde_json::to_vec(&payload).unwrap()).unwrap();
    match MissionInput::from_event(&event) {
        Some(MissionInput::Merged { sender, .. }) => assert_eq!(sender.login, "alice"),
        other => panic!("{other:?}"),
    }
}

/// main's branch protection requires both validators' check runs (and, when
/// `strict`, branches up to date before merging).
fn require_both_validators(repo: &mut missions::sim::state::Repo, strict: bool) {
    repo.protection.insert(
        "main".into(),
        BranchProtection {
            required_checks: vec![
                "missions / scrutiny".into(),
                "missions / user-testing".into(),
            ],
            strict,
        },
    );
}

/// Agent run `to` follows the script of `from` (a second validation round
/// that judges as the first did).
fn copy_script(m: &MissionTest, from: &str, to: &str) {
    let dir = m.scripts_dir();
    std::fs::copy(
        dir.join(format!("{from}.json")),
        dir.join(format!("{to}.json")),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_branch_on_a_validated_milestone_pr_validates_the_new_head_and_its_merge_advances() {
    let m = MissionTest::start(Story::default()).await;
    // main requires both validators and branches up to date before merging.
    m.t.sim
        .repo_settings(&m.repo(), |r| require_both_validators(r, true));
    for (from, to) in [
        ("M1-user-testing-1", "M1-user-testing-2"),
        ("M1-scrutiny-1-review-F1", "M1-scrutiny-2-review-F1"),
        ("M1-scrutiny-1-review-F2", "M1-scrutiny-2-review-F2"),
    ] {
        copy_script(&m, from, to);
    }
    let (issue, pr) = approved(&m).await;
    m.milestone_passes(issue, "M1", &["F1", "F2"]).await;
    let validated = m.pr_head(pr);

    // Meanwhile a change lands on main: the PR is behind, GitHub refuses the merge.
    let put = m
        .t
        .act(
            &m.alice(),
            "PUT",
            &format!("/repos/{}/contents/NOTES.md", m.repo()),
            Some(json!({
                "message": "Add notes",
                "content": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "notes\n"),
                "branch": "main",
            })),
        )
        .await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    let merge =
        m.t.act(
            &m.alice(),
            "PUT",
            &format!("/repos/{}/pulls/{pr}/merge", m.repo()),
            Some(json!({})),
        )
        .await;
    assert_eq!(merge.status, 405, "{:?}", merge.body);
    assert_eq!(
        merge.body["message"],
        "Head branch is not up to date with the base branch"
    );

    // The maintainer presses Update branch: a new head, which the App validates.
    let update =
        m.t.act(
            &m.alice(),
            "PUT",
            &format!("/repos/{}/pulls/{pr}/update-branch", m.repo()),
            None,
        )
        .await;
    assert_eq!(update.status, 202, "{:?}", update.body);
    m.t.expect_app_comment(pr, "so the App validates the new head")
        .await;
    let ready =
        m.t.sim
            .wait_for("a second Ready to merge", DEADLINE * 4, |_| {
                (m.app_comments(pr)
                    .iter()
                    .filter(|c| c.contains("Ready to merge"))
                    .count()
                    == 2)
                    .then_some(())
            })
            .await;
    assert!(ready.is_ok(), "{:#?}", m.app_comments(pr));
    let head = m.pr_head(pr);
    assert_ne!(head, validated);
    for name in ["missions / scrutiny", "missions / user-testing"] {
        assert!(
            m.checks().iter().any(|c| c.head_sha == head
                && c.name == name
                && c.conclusion.as_deref() == Some("success")),
            "{name} on the new head: {:?}",
            m.checks()
        );
    }
    // The new head holds main's change, so GitHub merges it, and the mission goes on.
    m.merge(pr).await;
    m.t.expect_app_comment(issue, "M1 was merged by @alice")
        .await;
    m.expect_pr(&format!("missions/{issue}/m2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_dispatch_names_its_run_and_a_workflow_missing_on_the_default_branch_is_said_so() {
    // GitHub returns the run of a dispatch when asked (`return_run_details`):
    // the App asks, and records the run before any webhook about it.
    let m = MissionTest::start(Story::default()).await;
    let issue = m.open_labeled_issue().await;
    m.expect_pr(&format!("missions/{issue}/plan")).await;
    let dispatches: Vec<_> =
        m.t.sim
            .exchanges()
            .into_iter()
            .filter(|e| e.route.ends_with("/dispatches") && !e.faulted)
            .collect();
    assert!(!dispatches.is_empty());
    for d in &dispatches {
        assert_eq!(d.request.as_ref().unwrap()["return_run_details"], true);
        assert_eq!(d.status, 200, "{:?}", d.response);
        assert!(d.response.as_ref().unwrap()["workflow_run_id"].is_u64());
    }

    // A repository whose default branch lacks the mission workflow: GitHub
    // answers 404, and the pause says where the workflow must be.
    let m = MissionTest::start_full(Story::default(), FaultConfig::default(), |mut spec| {
        spec.files
            .retain(|(path, _)| path != ".github/workflows/missions.yml");
        spec
    })
    .await;
    let issue = m.open_labeled_issue().await;
    let paused = m.t.expect_app_comment(issue, "The mission is paused").await;
    let body = paused["body"].as_str().unwrap();
    assert!(
        body.contains("only for workflows on the default branch")
            && body.contains(".github/workflows/missions.yml"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_queue_merge_advances_the_mission() {
    let m = MissionTest::start(Story::default()).await;
    // main merges only through a merge queue, once both validators passed.
    m.t.sim.repo_settings(&m.repo(), |r| {
        require_both_validators(r, false);
        r.merge_queue.insert("main".into());
    });
    let (issue, pr) = approved(&m).await;
    m.milestone_passes(issue, "M1", &["F1", "F2"]).await;
    let validated = m.pr_head(pr);
    // The jobs' commits are the App's, in the form GitHub links to its bot.
    let bot_id = m.t.sim.read(|w| w.account("missions[bot]").id);
    let plan_head =
        m.t.sim
            .git()
            .resolve_ref(&m.repo(), &format!("refs/heads/missions/{issue}/plan"))
            .await
            .unwrap()
            .unwrap();
    let commit =
        m.t.sim
            .git()
            .commit(&m.repo(), &plan_head)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(commit.author.name, "missions[bot]");
    assert_eq!(
        commit.author.email,
        format!("{bot_id}+missions[bot]@users.noreply.github.com")
    );

    // A plain merge is refused: main takes changes through its queue.
    let merge =
        m.t.act(
            &m.alice(),
            "PUT",
            &format!("/repos/{}/pulls/{pr}/merge", m.repo()),
            Some(json!({})),
        )
        .await;
    assert_eq!(merge.status, 405, "{:?}", merge.body);

    // Alice presses "Merge when ready": GitHub builds the group's commit and
    // asks for the required checks there; the App reports both validators'
    // verdict on it, the queue merges, and the mission goes on.
    m.t.sim.enqueue(&m.repo(), pr, "alice").await.unwrap();
    m.t.expect_app_comment(issue, "M1 was merged by the merge queue")
        .await;
    let group = m
        .checks()
        .into_iter()
        .filter(|c| c.head_sha != validated && c.name == "missions / scrutiny")
        .find(|c| c.conclusion.as_deref() == Some("success"))
        .expect("scrutiny's check run on the group's commit");
    for name in ["missions / scrutiny", "missions / user-testing"] {
        let on_group: Vec<_> = m
            .checks()
            .into_iter()
            .filter(|c| c.head_sha == group.head_sha && c.name == name)
            .collect();
        assert_eq!(on_group.len(), 1, "{name}: {on_group:?}");
        assert_eq!(on_group[0].conclusion.as_deref(), Some("success"));
    }
    let (merged_by, main) = m.t.sim.read(|w| {
        let repo = &w.repos[&m.repo()];
        let pull = repo.issues[&pr].pull.clone().unwrap();
        (pull.merged_by, pull.merge_commit_sha)
    });
    assert_eq!(merged_by.as_deref(), Some("github-merge-queue[bot]"));
    assert_eq!(main.as_deref(), Some(group.head_sha.as_str()));
    m.expect_pr(&format!("missions/{issue}/m2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_sent_while_the_rate_limit_is_spent_is_handled_after_the_reset_while_other_installations_go_on()
 {
    let clock = missions::clock::OffsetClock::new();
    let m = MissionTest::start_clocked(Story::default(), std::sync::Arc::new(clock.clone())).await;
    // A second organisation installs the App on its own copy of the project.
    let mut spec = missions::demo::repo_spec(m.scripts_dir());
    spec.owner = "other-org".into();
    let other = "other-org/textstats";
    m.t.sim.add_org("other-org");
    m.t.sim.create_repo(spec).await.unwrap();
    m.t.sim.set_permission(
        other,
        &m.alice(),
        missions::sim::state::Permission::Maintain,
    );
    let other_installation = m.t.sim.install_app("other-org", &[other]);
    let ours = m.t.world.installation_id;
    assert_ne!(ours, other_installation);

    // octo-org's installation has spent its hourly limit: GitHub refuses its
    // token until the reset. Alice labels an issue there, and one at other-org.
    m.t.sim
        .spend_rate_limit(ours, std::time::Duration::from_secs(3600));
    let issue = m.open_labeled_issue().await;
    let created =
        m.t.act(
            &m.alice(),
            "POST",
            &format!("/repos/{other}/issues"),
            Some(json!({
                "title": missions::demo::project::ISSUE_TITLE,
                "body": missions::demo::project::ISSUE_BODY,
                // Labeled as it is opened: GitHub sends `labeled` for it too.
                "labels": ["mission"],
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let other_issue = created.body["number"].as_u64().unwrap();

    // The other installation's mission moves on: its plan is proposed.
    let plan_branch = format!("missions/{other_issue}/plan");
    m.t.sim
        .wait_for("the other organisation's plan PR", DEADLINE * 2, |s| {
            s.read(|w| {
                w.repos[other]
                    .issues
                    .values()
                    .any(|i| i.pull.as_ref().is_some_and(|p| p.head_ref == plan_branch))
                    .then_some(())
            })
        })
        .await
        .unwrap();
    // Meanwhile nothing happened on octo-org's issue, and the App did not
    // keep knocking: once refused, it waits for the reset.
    assert!(
        m.app_comments(issue).is_empty(),
        "{:?}",
        m.app_comments(issue)
    );
    let refused =
        m.t.sim
            .exchanges()
            .into_iter()
            .filter(|e| e.caller == format!("installation:{ours}") && e.status == 403)
            .count();
    assert!((1..=2).contains(&refused), "{refused} refused requests");

    // An hour later the limit resets, and the label is handled then.
    clock.advance(time::Duration::seconds(3601));
    m.expect_pr(&format!("missions/{issue}/plan")).await;
    let refused_after =
        m.t.sim
            .exchanges()
            .into_iter()
            .filter(|e| e.caller == format!("installation:{ours}") && e.status == 403)
            .count();
    assert_eq!(refused_after, refused, "no request before the reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ruleset_requiring_signed_commits_on_the_missions_branches_is_named_where_the_job_fails()
{
    let m = MissionTest::start(Story::default()).await;
    m.t.sim.repo_settings(&m.repo(), |r| {
        r.rulesets.push(Ruleset {
            name: "signed commits".into(),
            include: vec!["refs/heads/missions/**".into()],
            require_signed_commits: true,
            ..Default::default()
        })
    });
    let issue = m.open_labeled_issue().await;
    // The orchestrator's job cannot push the plan: its run fails saying why,
    // in the Actions log a maintainer opens from the mission's comments.
    let repo = m.repo();
    let log =
        m.t.sim
            .wait_for("a run that names the ruleset", DEADLINE * 2, |s| {
                s.read(|w| {
                    w.repos[&repo]
                        .runs
                        .values()
                        .find(|r| r.log.contains("requires signed commits"))
                        .map(|r| r.log.clone())
                })
            })
            .await
            .unwrap();
    assert!(log.contains("GH013"), "{log}");
    assert!(
        log.contains("Leave `missions/**` out of that rule"),
        "{log}"
    );
    // No job gets through, so the mission stops and says so; nothing was pushed.
    m.t.expect_app_comment(issue, "The mission is paused").await;
    let plan =
        m.t.sim
            .git()
            .resolve_ref(&repo, &format!("refs/heads/missions/{issue}/plan"))
            .await
            .unwrap();
    let main =
        m.t.sim
            .git()
            .resolve_ref(&repo, "refs/heads/main")
            .await
            .unwrap();
    assert_eq!(plan, main, "the plan branch holds no commit of the job");
}

/// The user tester's screenshots on a check run: GitHub shows `output.images`
/// with the run, fetched from their address, so the App gives each
/// screenshot's raw address on the reports branch, as the contents API's
/// `download_url` for the file would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_testing_check_run_shows_the_screenshots_on_the_reports_branch() {
    use missions::engine::missions::effects::{self, Attempt, Dispatcher};
    use missions::mission::machine::{CheckConclusion, Effect};
    use missions::store::missions::EffectScope;

    let t = common::scenario::Scenario::start(common::scenario::ScenarioOptions::default()).await;
    let repo = t.world.repo.clone();
    let alice = t.world.maintainer.login.clone();
    let issue = t.open_issue(&alice, "A form", "Please.").await;
    let client = t
        .github
        .installation(t.world.installation_id)
        .await
        .unwrap();
    let head = t.expect_branch("main").await;
    let run = client
        .request_json(
            missions::github::client::Method::POST,
            &format!("/repos/{repo}/check-runs"),
            Some(&json!({"name": "missions / user-testing", "head_sha": head, "status": "in_progress"})),
        )
        .await
        .unwrap();
    let check_run_id = run["id"].as_u64().unwrap();
    let shot = format!(".missions/{issue}/reports/M1-user-testing/01-filled-form.png");
    let complete = Effect::CompleteCheck {
        check_run_id,
        conclusion: CheckConclusion::Success,
        title: "1 assertion passed".into(),
        summary: "The form adds the item.".into(),
        images: vec![shot.clone()],
    };
    effects::perform(
        &client,
        &Dispatcher {
            workflow_file: missions::sim::sample::WORKFLOW_FILE.to_owned(),
            api_base: t.sim.url().to_owned(),
            app_id: missions::sim::sample::APP_ID,
            server_model: None,
        },
        &EffectScope {
            mission_id: None,
            installation_id: t.world.installation_id as i64,
            repo: repo.clone(),
            issue,
        },
        None,
        &complete,
        Attempt::default(),
        0,
    )
    .await
    .unwrap();
    let images = t.sim.read(|w| {
        w.repos[&repo].check_runs[&check_run_id]
            .output
            .images
            .clone()
    });
    // The address the contents API gives the file once it is on the branch.
    let branch = format!("missions/{issue}/reports");
    let made = t
        .act(
            &alice,
            "POST",
            &format!("/repos/{repo}/git/refs"),
            Some(json!({"ref": format!("refs/heads/{branch}"), "sha": head})),
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let put = t
        .act(
            &alice,
            "PUT",
            &format!("/repos/{repo}/contents/{shot}"),
            Some(json!({"message": "a screenshot", "content": "iVBORw0KGgo=", "branch": branch})),
        )
        .await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    let file = client
        .request_json(
            missions::github::client::Method::GET,
            &format!("/repos/{repo}/contents/{shot}?ref={branch}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        images,
        [(
            "01-filled-form.png".to_owned(),
            file["download_url"].as_str().unwrap().to_owned()
        )]
    );
}
