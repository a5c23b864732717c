//! The mission lifecycle end to end, through the simulator: signed webhooks in,
//! REST calls out, real git, `missions job` run as a subprocess by the
//! simulator's Actions runner, the scripted model making real edits to the demo
//! project. Every assertion is on what a person sees on GitHub.

mod common;

use common::mission::MissionTest;
use common::scenario::{DEADLINE, Scenario};
use missions::demo::scripts::Story;
use missions::sim::FaultConfig;
use missions::sim::sample;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_two_milestones_three_features() {
    let m = MissionTest::start(Story {
        ask_question: true,
        ..Story::default()
    })
    .await;
    let issue = m.open_labeled_issue().await;
    m.t.expect_app_comment(issue, "Mission started by @alice")
        .await;

    // Scoping: a question, answered by the author.
    m.t.expect_app_comment(issue, "the orchestrator has questions")
        .await;
    m.comment(&m.alice(), issue, "Yes: compare words case-insensitively.")
        .await;

    // The plan PR, with the plan for people and for machines.
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    let plan_md =
        m.t.file(
            &format!(".missions/{issue}/plan.md"),
            &format!("missions/{issue}/plan"),
        )
        .await
        .unwrap();
    assert!(plan_md.contains("| A3 |"), "{plan_md}");
    let plan_json =
        m.t.file(
            &format!(".missions/{issue}/plan.json"),
            &format!("missions/{issue}/plan"),
        )
        .await
        .unwrap();
    let plan: missions::mission::Plan = serde_json::from_str(&plan_json).unwrap();
    assert_eq!(plan.milestones.len(), 2);

    assert_eq!(
        m.review(&m.alice(), plan_pr, "APPROVE", "Looks right.")
            .await,
        200
    );
    m.t.expect_app_comment(plan_pr, "Approved by @alice").await;

    let m1 = m
        .milestone_passes_and_is_merged(issue, "M1", &["F1", "F2"])
        .await;
    let m2 = m.milestone_passes_and_is_merged(issue, "M2", &["F3"]).await;

    m.expect_issue_closed(issue).await;
    let report = m.t.expect_app_comment(issue, "Mission complete").await;
    let report = report["body"].as_str().unwrap();
    assert!(
        report.contains(&format!("#{m1}")) && report.contains(&format!("#{m2}")),
        "{report}"
    );
    assert_eq!(m.pr_state(plan_pr).0, "closed");
    assert!(
        m.pr_state(m1).1 && m.pr_state(m2).1,
        "both milestone PRs merged"
    );

    // The work is really on the default branch, and its tests really pass.
    let program = m.t.file("textstats.py", "main").await.unwrap();
    assert!(program.contains("def top_words"), "{program}");
    for f in ["F1", "F2", "F3"] {
        assert!(
            m.t.file(&format!(".missions/{issue}/handoffs/{f}.json"), "main")
                .await
                .is_some(),
            "handoff {f} on main"
        );
    }
    // Reports went to the reports branch, never the milestone branch.
    assert!(
        m.t.file(
            &format!(".missions/{issue}/reports/M2-scrutiny.json"),
            &format!("missions/{issue}/reports")
        )
        .await
        .is_some()
    );
    assert!(
        m.t.file(
            &format!(".missions/{issue}/reports/M2-scrutiny.json"),
            "main"
        )
        .await
        .is_none()
    );

    // One job per step, in order, none twice.
    let jobs = m.dispatched_jobs();
    assert_eq!(
        jobs,
        [
            "scope-1.1",
            "scope-2.1",
            "feature-F1.1",
            "feature-F2.1",
            "M1-scrutiny-1.1",
            "M1-user-testing-1.1",
            "boundary-M1.1",
            "feature-F3.1",
            "M2-scrutiny-1.1",
            "M2-user-testing-1.1"
        ]
    );
    // Every run names its job, so the App matches runs to jobs exactly.
    let repo = m.repo();
    let names: Vec<(Option<String>, String)> = m.t.sim.read(|w| {
        w.repos[&repo]
            .runs
            .values()
            .map(|r| {
                (
                    r.run_name.clone(),
                    r.inputs["job"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    });
    for (name, job) in names {
        let name = name.expect("the template has a run-name");
        assert_eq!(
            missions::engine::missions::input::job_key_in_title(&name),
            Some(job.as_str()),
            "{name}"
        );
    }
    // Every check run sits on a head it judged: 2 per milestone, all green.
    let checks = m.checks();
    assert_eq!(checks.len(), 4, "{checks:?}");
    assert!(
        checks
            .iter()
            .all(|c| c.conclusion.as_deref() == Some("success"))
    );
    // Everything the App and its jobs sent, and every answer, in GitHub's shapes.
    assert_exchanges_conform(&m.t);
    m.t.stop().await;
}

/// Every REST exchange of the App (`installation:*`) and of its jobs (`job:*`)
/// conforms to GitHub's OpenAPI description: requests and answers.
fn assert_exchanges_conform(t: &Scenario) {
    let api = common::openapi::OpenApi::get();
    let mut violations = Vec::new();
    let mut checked = 0;
    for e in t.sim.exchanges() {
        if !(e.caller.starts_with("installation") || e.caller.starts_with("job")) {
            continue;
        }
        let template = e.route.replace("{*", "{");
        if api.operation(&e.method, &template).is_none() {
            violations.push(format!(
                "{} {} is not in GitHub's description",
                e.method, e.route
            ));
            continue;
        }
        checked += 1;
        let body = e.response.as_ref().unwrap_or(&Value::Null);
        // A raw answer is the file itself, which the description does not shape.
        if !e.raw
            && let Err(v) = api.check_response(&e.method, &template, e.status, body)
        {
            violations.push(format!(
                "{} {} → {}: {}",
                e.method,
                e.path,
                e.status,
                v.join("; ")
            ));
        }
        if let Some(body) = &e.request
            && let Err(v) = api.check_request(&e.method, &template, body)
        {
            violations.push(format!("request {} {}: {}", e.method, e.path, v.join("; ")));
        }
    }
    assert!(checked > 50, "only {checked} exchanges checked");
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_changes_revises_the_plan_then_approval_starts_it() {
    let m = MissionTest::start(Story {
        revise: true,
        ..Story::default()
    })
    .await;
    let issue = m.open_labeled_issue().await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    m.t.expect_app_comment(issue, "ready for review").await;
    let first =
        m.t.file(
            &format!(".missions/{issue}/plan.json"),
            &format!("missions/{issue}/plan"),
        )
        .await
        .unwrap();
    assert!(!first.contains("\"M2\""), "the draft has one milestone");

    assert_eq!(
        m.review(
            &m.alice(),
            plan_pr,
            "REQUEST_CHANGES",
            "Please also plan --top N, as its own milestone."
        )
        .await,
        200
    );
    m.t.expect_app_comment(plan_pr, "requested changes").await;
    m.t.expect_app_comment(plan_pr, "The plan was revised")
        .await;
    let revised =
        m.t.file(
            &format!(".missions/{issue}/plan.json"),
            &format!("missions/{issue}/plan"),
        )
        .await
        .unwrap();
    assert!(revised.contains("\"M2\""), "{revised}");
    // Still the same PR: the revision is a new commit on it.
    assert_eq!(
        m.expect_pr(&format!("missions/{issue}/plan")).await,
        plan_pr
    );

    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);
    let m1 = m.expect_pr(&format!("missions/{issue}/m1")).await;
    m.t.expect_app_comment(m1, "### Handoff: F1 ").await;
    assert_eq!(
        &m.dispatched_jobs()[..3],
        ["scope-1.1", "revise-1.1", "feature-F1.1"]
    );
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrutiny_failure_becomes_a_follow_up_feature_and_passes_on_the_new_head() {
    let m = MissionTest::start(Story {
        break_f2: true,
        ..Story::default()
    })
    .await;
    let issue = m.open_labeled_issue().await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);
    let pr = m.expect_pr(&format!("missions/{issue}/m1")).await;

    let (scrutiny, _) = m.expect_checks_completed(pr).await;
    assert_eq!(
        scrutiny.conclusion.as_deref(),
        Some("failure"),
        "{scrutiny:?}"
    );
    assert!(
        scrutiny.summary.contains("A2") && scrutiny.summary.contains("❌ fail"),
        "{}",
        scrutiny.summary
    );
    // The repository's own test command really failed.
    assert!(
        scrutiny.summary.contains("python3 -m unittest -q` | 1"),
        "{}",
        scrutiny.summary
    );
    assert!(scrutiny.title.contains("problem"), "{}", scrutiny.title);
    let failed_head = scrutiny.head_sha.clone();

    m.t.expect_app_comment(pr, "Follow-up to M1's failed validation")
        .await;
    m.t.expect_app_comment(pr, "### Handoff: F4 ").await;
    let repo = m.repo();
    let (scrutiny, user_testing) =
        m.t.sim
            .wait_for("checks on a new head", DEADLINE * 2, |s| {
                let head = s.read(|w| {
                    w.repos[&repo].issues[&pr]
                        .pull
                        .as_ref()
                        .unwrap()
                        .head_sha
                        .clone()
                });
                if head == failed_head {
                    return None;
                }
                let checks = m.checks();
                let done = |name: &str| {
                    checks
                        .iter()
                        .find(|c| c.head_sha == head && c.name == name && c.conclusion.is_some())
                        .cloned()
                };
                Some((
                    done("missions / scrutiny")?,
                    done("missions / user-testing")?,
                ))
            })
            .await
            .unwrap();
    assert_eq!(
        scrutiny.conclusion.as_deref(),
        Some("success"),
        "{scrutiny:?}"
    );
    assert_eq!(user_testing.conclusion.as_deref(), Some("success"));
    assert_eq!(scrutiny.head_sha, m.pr_head(pr));
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_failing_twice_pauses_the_mission_until_resume() {
    let m = MissionTest::start(Story {
        f1_failed_runs: 2,
        ..Story::default()
    })
    .await;
    let issue = m.open_labeled_issue().await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);

    let paused = m.t.expect_app_comment(issue, "The mission is paused").await;
    let body = paused["body"].as_str().unwrap();
    assert!(
        body.contains("feature F1 failed 2 times") && body.contains("/mission resume"),
        "{body}"
    );
    assert_eq!(
        m.dispatched_jobs()
            .iter()
            .filter(|j| j.starts_with("feature-F1"))
            .count(),
        2
    );

    // An outsider cannot resume it.
    m.comment(&m.bob(), issue, "/mission resume").await;
    m.t.expect_app_comment(issue, "@bob only people with write access")
        .await;

    m.comment(&m.alice(), issue, "/mission resume").await;
    m.t.expect_app_comment(issue, "Resumed by @alice").await;
    let pr = m.expect_pr(&format!("missions/{issue}/m1")).await;
    m.t.expect_app_comment(pr, "### Handoff: F1 ").await;
    assert!(m.dispatched_jobs().contains(&"feature-F1.3".to_owned()));
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_with_an_unresolved_issue_blocks_the_next_feature_until_triage() {
    let m = MissionTest::start(Story {
        f1_unresolved_issue: true,
        ..Story::default()
    })
    .await;
    let issue = m.open_labeled_issue().await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);
    let pr = m.expect_pr(&format!("missions/{issue}/m1")).await;
    let handoff = m.t.expect_app_comment(pr, "### Handoff: F1 ").await;
    assert!(
        handoff["body"]
            .as_str()
            .unwrap()
            .contains("Unresolved issues")
    );
    m.t.expect_app_comment(pr, "Triage of F1's handoff").await;
    m.t.expect_app_comment(pr, "### Handoff: F2 ").await;
    // A command on the milestone PR steers the mission too; the answer is on the issue.
    m.comment(&m.alice(), pr, "/mission status").await;
    let status = m.t.expect_app_comment(issue, "**Mission status**").await;
    assert!(
        status["body"]
            .as_str()
            .unwrap()
            .contains("| milestone | 1 of 2 |"),
        "{status}"
    );
    let jobs = m.dispatched_jobs();
    assert_eq!(
        &jobs[..4],
        ["scope-1.1", "feature-F1.1", "triage-F1.1", "feature-F2.1"]
    );
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_cannot_start_approve_or_steer_and_the_app_cannot_approve_itself() {
    let m = MissionTest::start(Story::default()).await;
    // bob (read access) cannot even label: GitHub itself refuses.
    let theirs =
        m.t.open_issue(&m.alice(), "Another idea", "Please do something.")
            .await;
    assert_eq!(m.t.label_issue(&m.bob(), theirs, "mission").await, 403);
    // carol (triage) can label, but not start a mission: a polite refusal, nothing dispatched.
    let carol = m.t.sim.add_user("carol");
    m.t.sim
        .set_permission(&m.repo(), "carol", missions::sim::state::Permission::Triage);
    let answer =
        m.t.http
            .post(format!(
                "{}/repos/{}/issues/{theirs}/labels",
                m.t.sim.url(),
                m.repo()
            ))
            .bearer_auth(&carol)
            .json(&json!({"labels": ["mission"]}))
            .send()
            .await
            .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    m.t.expect_app_comment(theirs, "@carol thanks for the interest")
        .await;

    let issue = m.open_labeled_issue().await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    m.t.expect_app_comment(issue, "ready for review").await;

    // bob's approval does not count.
    assert_eq!(m.review(&m.bob(), plan_pr, "APPROVE", "lgtm").await, 200);
    m.t.expect_app_comment(plan_pr, "@bob thanks for the review")
        .await;
    // Nor do his commands (he was told once, on the plan PR: no second reply).
    m.comment(&m.bob(), issue, "/mission abort").await;
    // A command quoted from someone else is not a command.
    m.comment(
        &m.alice(),
        issue,
        "> /mission abort\nbob asked for that; ignoring it.",
    )
    .await;

    // The App cannot approve its own plan PR: GitHub refuses, and so does the simulator.
    let token =
        m.t.github
            .installation_token(m.t.world.installation_id)
            .await
            .unwrap();
    let answer =
        m.t.http
            .post(format!(
                "{}/repos/{}/pulls/{plan_pr}/reviews",
                m.t.sim.url(),
                m.repo()
            ))
            .bearer_auth(secrecy::ExposeSecret::expose_secret(&token))
            .json(&json!({"event": "APPROVE", "body": "self-approval"}))
            .send()
            .await
            .unwrap();
    assert_eq!(answer.status().as_u16(), 422);
    // And were an approval by the App's bot account delivered (validly signed), it
    // would not count: bob's review delivery, rewritten as the bot's approval.
    let bobs = m
        .t
        .sim
        .deliveries()
        .into_iter()
        .find(|d| d.event == "pull_request_review" && d.payload["review"]["user"]["login"] == "bob")
        .expect("bob's review was delivered");
    let mut payload = bobs.payload.clone();
    for actor in ["/review/user", "/sender"] {
        let a = payload.pointer_mut(actor).unwrap();
        a["login"] = json!("missions[bot]");
        a["type"] = json!("Bot");
    }
    payload["review"]["state"] = json!("approved");
    let body = serde_json::to_vec(&payload).unwrap();
    let answer =
        m.t.http
            .post(format!("{}/webhook", m.t.app_url))
            .header("x-github-event", "pull_request_review")
            .header("x-github-delivery", "forged-bot-approval")
            .header(
                "x-hub-signature-256",
                missions::github::webhook::sign(common::SECRET.as_bytes(), &body),
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    // It was handled (not refused as unparseable), and changed nothing.
    m.t.expect_processed("forged-bot-approval").await;

    // Give the App every chance to act on all of that, then check nothing moved.
    let status_comment = {
        m.comment(&m.alice(), issue, "/mission status").await;
        m.t.expect_app_comment(issue, "**Mission status**").await
    };
    let body = status_comment["body"].as_str().unwrap();
    assert!(body.contains("plan in review"), "{body}");
    assert_eq!(m.dispatched_jobs(), ["scope-1.1"], "only scoping ran");
    assert_eq!(
        m.app_comments(theirs).len(),
        1,
        "only the refusal on the issue carol labelled"
    );
    assert!(
        !m.app_comments(issue).iter().any(|b| b.contains("@bob")),
        "{:#?}",
        m.app_comments(issue)
    );
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_completion_webhook_is_recovered_by_reconciliation() {
    let m = MissionTest::start_with(
        Story::default(),
        FaultConfig {
            drop_webhook_events: vec!["workflow_run.completed".into()],
            ..FaultConfig::default()
        },
    )
    .await;
    let issue = m.open_labeled_issue().await;
    // Every completion webhook is dropped; the plan PR still appears.
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);
    let pr = m.expect_pr(&format!("missions/{issue}/m1")).await;
    m.t.expect_app_comment(pr, "### Handoff: F1 ").await;
    let dropped: Vec<Value> = m
        .t
        .sim
        .deliveries()
        .into_iter()
        .filter(|d| {
            d.event == "workflow_run" && d.error.as_deref() == Some("dropped by fault injection")
        })
        .map(|d| json!(d.id))
        .collect();
    assert!(!dropped.is_empty(), "completions were really dropped");
    assert_eq!(&m.dispatched_jobs()[..2], ["scope-1.1", "feature-F1.1"]);
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_dispatch_pauses_and_resume_runs_the_step_once_fixed() {
    // The repository lacks the mission workflow (a setup mistake): GitHub
    // refuses the dispatch.
    let m = MissionTest::start_full(Story::default(), FaultConfig::default(), |mut spec| {
        spec.files
            .retain(|(path, _)| !path.starts_with(".github/workflows/"));
        spec
    })
    .await;
    let repo = m.repo();
    let path = format!("/repos/{repo}/contents/.github/workflows/missions.yml");
    let content = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(sample::WORKFLOW_YAML)
    };

    let issue = m.open_labeled_issue().await;
    let paused = m.t.expect_app_comment(issue, "The mission is paused").await;
    let body = paused["body"].as_str().unwrap();
    assert!(
        body.contains("GitHub refused to dispatch job `scope-1.1`"),
        "{body}"
    );
    assert!(m.dispatched_jobs().is_empty());

    // alice puts the workflow back on the default branch, where GitHub looks
    // it up, and on the plan branch, whose copy runs; then resumes.
    for branch in ["main".to_owned(), format!("missions/{issue}/plan")] {
        let restored = m
            .t
            .act(
                &m.alice(),
                "PUT",
                &path,
                Some(json!({"message": "restore the workflow", "content": content, "branch": branch})),
            )
            .await;
        assert_eq!(restored.status, 201, "{:?}", restored.body);
    }
    m.comment(&m.alice(), issue, "/mission resume").await;
    m.t.expect_app_comment(issue, "Resumed by @alice").await;
    m.expect_pr(&format!("missions/{issue}/plan")).await;
    assert_eq!(m.dispatched_jobs(), ["scope-1.2"]);
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sticky_comment_follows_the_mission_and_shows_the_apis_figures() {
    let m = MissionTest::start(Story::default()).await;
    let issue = m.open_labeled_issue().await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    let api = m.expect_sticky_matches_api(issue).await;
    assert_eq!(api["phase"], "plan in review", "{api:#}");
    assert_eq!(api["features"]["total"], 3);
    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);
    m.milestone_passes_and_is_merged(issue, "M1", &["F1", "F2"])
        .await;
    m.milestone_passes_and_is_merged(issue, "M2", &["F3"]).await;
    m.expect_issue_closed(issue).await;
    let api = m.expect_sticky_matches_api(issue).await;
    assert_eq!(api["phase"], "done");
    assert_eq!(api["assertions"]["done"], 3, "{api:#}");
    assert_eq!(api["features"]["done"], 3);
    assert_eq!(api["milestone"]["done"], 2);
    // Every job spent something, and the roles add up to the total.
    let by_role = api["budget"]["by_role"].as_object().unwrap();
    let sum: u64 = by_role
        .values()
        .map(|u| u["cost_micros"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, api["budget"]["spent_micros"].as_u64().unwrap());
    assert!(sum > 0);
    assert_eq!(
        api["timeline"].as_array().unwrap().len(),
        m.dispatched_jobs().len()
    );
    // One comment, edited in place all along.
    assert_eq!(m.stickies(issue).len(), 1);
    let list: Value =
        m.t.http
            .get(format!("{}/api/missions", m.t.app_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Prometheus sees the same mission: its jobs by role and outcome, and its
    // cost by role, as mission control shows them; and this server's own work.
    let metrics =
        m.t.http
            .get(format!("{}/metrics", m.t.app_url))
            .send()
            .await
            .unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        metrics.headers()
    );
    let text = metrics.text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"));
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => panic!("{name} is not a number: {:?}", s.value),
            })
            .sum()
    };
    let timeline = api["timeline"].as_array().unwrap();
    assert_eq!(
        value("missions_jobs_finished_total", &[]),
        timeline.len() as f64,
        "{text}"
    );
    assert_eq!(
        value("missions_jobs_dispatched_total", &[]),
        timeline.len() as f64,
        "{text}"
    );
    for job in timeline {
        let role = job["role"].as_str().unwrap();
        let outcome = job["outcome"].as_str().unwrap();
        let want = timeline
            .iter()
            .filter(|j| j["role"] == role && j["outcome"] == outcome)
            .count();
        assert_eq!(
            value(
                "missions_jobs_finished_total",
                &[("role", role), ("outcome", outcome)]
            ),
            want as f64,
            "{role} {outcome}: {text}"
        );
    }
    for (role, usage) in by_role {
        let cost = usage["cost_micros"].as_u64().unwrap() as f64 / 1e6;
        let seen = value("missions_model_cost_usd_total", &[("role", role)]);
        assert!(
            (seen - cost).abs() < 1e-9,
            "{role}: {seen} against {cost}: {text}"
        );
        assert_eq!(
            value(
                "missions_model_tokens_total",
                &[("role", role), ("kind", "input")]
            ),
            usage["input_tokens"].as_u64().unwrap() as f64,
            "{text}"
        );
    }
    let total_cost = value("missions_model_cost_usd_total", &[]);
    assert!((total_cost - sum as f64 / 1e6).abs() < 1e-9, "{text}");
    assert_eq!(
        value("missions_missions", &[("phase", "done")]),
        1.0,
        "{text}"
    );
    assert!(
        value(
            "missions_webhook_deliveries_total",
            &[("outcome", "stored")]
        ) > 0.0,
        "{text}"
    );
    assert!(
        value(
            "missions_deliveries_handled_total",
            &[("outcome", "processed")]
        ) > 0.0,
        "{text}"
    );
    assert!(
        value("missions_github_api_requests_total", &[("status", "200")]) > 0.0,
        "{text}"
    );
    assert!(
        value("missions_github_rate_limit_remaining", &[]) >= 0.0,
        "{text}"
    );
    // The queues are there (a last sticky update may still be on its way).
    for queue in [
        "missions_inbox_pending",
        "missions_inbox_oldest_pending_age_seconds",
        "missions_mission_inputs_pending",
        "missions_outbox_pending",
        "missions_outbox_oldest_pending_age_seconds",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == queue),
            "{queue}: {text}"
        );
        assert!(value(queue, &[]) >= 0.0, "{text}");
    }
    // Behind mission control's access rule: a request from elsewhere, without
    // the token, gets nothing (see the control tests); a proxied one neither.
    let proxied =
        m.t.http
            .get(format!("{}/metrics", m.t.app_url))
            .header("x-forwarded-for", "203.0.113.9")
            .send()
            .await
            .unwrap();
    assert_eq!(proxied.status(), 401);
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_budget_pauses_before_overspending_and_resumes_once_raised() {
    // Scoping may spend up to its own reserve ($0.06: enough for one call);
    // what it leaves is less than a worker's reserve.
    const SMALL: &str = "budget:\n  usd: 0.1\n  reserve: { orchestrator: 0.06, worker: 0.07, scrutiny: 0.07, user-testing: 0.07 }\n";
    let m = MissionTest::start_full(Story::default(), FaultConfig::default(), |mut spec| {
        for (path, content) in &mut spec.files {
            if path == ".github/missions.yml" {
                let text = String::from_utf8(content.clone()).unwrap();
                *content = text.replace("budget:\n  usd: 5\n", SMALL).into_bytes();
                assert!(String::from_utf8_lossy(content).contains("reserve"));
            }
        }
        spec
    })
    .await;
    let issue = m.open_labeled_issue().await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);
    let paused = m.t.expect_app_comment(issue, "The mission is paused").await;
    let body = paused["body"].as_str().unwrap();
    assert!(
        body.contains("reserved for feature F1") && body.contains("Raise `budget`"),
        "{body}"
    );
    let api = m.api(issue).await;
    assert!(
        api["budget"]["spent_micros"].as_u64().unwrap() <= 100_000,
        "{api:#}"
    );
    assert_eq!(m.dispatched_jobs(), ["scope-1.1"]);
    m.expect_sticky_matches_api(issue).await;

    // alice raises the budget on the default branch and resumes.
    let path = format!("/repos/{}/contents/.github/missions.yml", m.repo());
    let file = m.t.act(&m.alice(), "GET", &path, None).await;
    let text = {
        use base64::Engine;
        let raw = file.body["content"].as_str().unwrap().replace('\n', "");
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(raw)
                .unwrap(),
        )
        .unwrap()
    };
    let raised = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text.replace("usd: 0.1", "usd: 5"))
    };
    let put =
        m.t.act(
            &m.alice(),
            "PUT",
            &path,
            Some(json!({
                "message": "Raise the mission budget",
                "content": raised,
                "sha": file.body["sha"],
            })),
        )
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    m.comment(&m.alice(), issue, "/mission resume").await;
    m.t.expect_app_comment(issue, "Resumed by @alice").await;
    let pr = m.expect_pr(&format!("missions/{issue}/m1")).await;
    m.t.expect_app_comment(pr, "### Handoff: F1 ").await;
    let api = m.api(issue).await;
    assert_eq!(api["budget"]["limit"], "5.00");
    m.t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answer_review_and_merge_webhooks_are_found_by_reconciliation() {
    // GitHub loses every webhook of what people do after the label: the answer,
    // the approval, the merges. The mission still completes, each step once.
    let m = MissionTest::start_with(
        Story {
            ask_question: true,
            ..Story::default()
        },
        FaultConfig {
            drop_webhook_events: vec![
                "issue_comment".into(),
                "pull_request_review".into(),
                "pull_request.closed".into(),
            ],
            ..FaultConfig::default()
        },
    )
    .await;
    let issue = m.open_labeled_issue().await;
    m.t.expect_app_comment(issue, "the orchestrator has questions")
        .await;
    m.comment(&m.alice(), issue, "Yes: compare words case-insensitively.")
        .await;
    let plan_pr = m.expect_pr(&format!("missions/{issue}/plan")).await;
    assert_eq!(m.review(&m.alice(), plan_pr, "APPROVE", "").await, 200);
    m.t.expect_app_comment(plan_pr, "Approved by @alice").await;
    m.milestone_passes_and_is_merged(issue, "M1", &["F1", "F2"])
        .await;
    m.milestone_passes_and_is_merged(issue, "M2", &["F3"]).await;
    m.expect_issue_closed(issue).await;
    m.t.expect_app_comment(issue, "Mission complete").await;

    let lost = |event: &str| {
        m.t.sim
            .deliveries()
            .iter()
            .filter(|d| d.event == event && d.status.is_none())
            .count()
    };
    assert!(
        lost("issue_comment") > 0 && lost("pull_request_review") > 0 && lost("pull_request") > 0
    );
    assert_eq!(
        m.dispatched_jobs(),
        [
            "scope-1.1",
            "scope-2.1",
            "feature-F1.1",
            "feature-F2.1",
            "M1-scrutiny-1.1",
            "M1-user-testing-1.1",
            "boundary-M1.1",
            "feature-F3.1",
            "M2-scrutiny-1.1",
            "M2-user-testing-1.1"
        ]
    );
    m.t.stop().await;
}
