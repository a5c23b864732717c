//! An effect GitHub performed just before the App died, and that the App had
//! not yet recorded as done, is not performed twice after the restart: the
//! outbox row says an attempt began, and the driver looks at what GitHub already
//! has before acting again (a comment by its hidden marker, a ready commit by
//! its message, check runs by name, a dispatch by not repeating it).
//!
//! The crash is reproduced exactly: each effect is performed as the dead
//! process did (`effects::perform`), its row is left marked as started, and a
//! fresh driver takes over the same database.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::scenario::{Scenario, ScenarioOptions};
use missions::clock;
use missions::engine::missions::effects::{self, Attempt, Dispatcher};
use missions::engine::missions::{DriverConfig, MissionDriver};
use missions::mission::machine::{Effect, Mission, Settings};
use missions::sim::sample;
use missions::store::missions::{self as db, EffectScope};
use serde_json::Value;
use sqlx::Row;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_interrupted_after_github_did_them_are_not_done_again() {
    let t = Scenario::start(ScenarioOptions {
        workflows: vec![(sample::WORKFLOW_FILE.to_owned(), vec!["true".into()])],
        ..ScenarioOptions::default()
    })
    .await;
    let repo = t.world.repo.clone();
    let alice = t.world.maintainer.login.clone();
    let issue = t.open_issue(&alice, "Add a feature", "Please.").await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    // A mission as the dead process had recorded it, with its first effects and
    // a ready commit to make (on the plan branch, which its effects create).
    let (mission, mut start_effects) = Mission::start(
        repo.clone(),
        issue,
        alice.clone(),
        "main",
        Settings::default(),
        &alice,
        now,
    );
    start_effects.push(Effect::StartValidation {
        index: 0,
        round: 1,
        branch: format!("missions/{issue}/plan"),
        message: format!("Mission #{issue} M1: ready for validation (round 1)"),
    });
    assert!(
        start_effects
            .iter()
            .any(|e| matches!(e, Effect::Comment { .. }))
            && start_effects
                .iter()
                .any(|e| matches!(e, Effect::Dispatch { .. })),
        "{start_effects:?}"
    );
    let installation_id = t.world.installation_id as i64;
    let mut tx = t.store.begin_write().await.unwrap();
    let mission_id = db::insert(&mut tx, installation_id, &mission, 0)
        .await
        .unwrap();
    let scope = EffectScope {
        mission_id: Some(mission_id),
        installation_id,
        repo: repo.clone(),
        issue,
    };
    db::push_effects(&mut tx, &scope, &start_effects, 0)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // The dead process: every effect performed on GitHub, each row marked as
    // started and never finished.
    let client = t
        .github
        .installation(t.world.installation_id)
        .await
        .unwrap();
    let dispatcher = Dispatcher {
        workflow_file: sample::WORKFLOW_FILE.to_owned(),
        api_base: t.sim.url().to_owned(),
    };
    let rows = sqlx::query("SELECT id, effect FROM outbox ORDER BY id")
        .fetch_all(t.store.pool())
        .await
        .unwrap();
    for row in rows {
        let id: i64 = row.get("id");
        let effect: Effect = serde_json::from_str(row.get::<&str, _>("effect")).unwrap();
        effects::perform(
            &client,
            &dispatcher,
            &scope,
            Some(&mission),
            &effect,
            Attempt {
                effect_id: id,
                ..Attempt::default()
            },
            now,
        )
        .await
        .unwrap_or_else(|e| panic!("{effect:?}: {e}"));
        let mut tx = t.store.begin_write().await.unwrap();
        db::start_effect(&mut tx, id, 0).await.unwrap();
        tx.commit().await.unwrap();
    }
    let before = github_view(&t, &repo, issue).await;
    assert_eq!(before.runs, 1, "{before:?}");
    assert_eq!(before.checks_on_head, 2, "{before:?}");

    // The restart: a new driver on the same database.
    let driver = MissionDriver::new(
        t.store.clone(),
        Arc::clone(&t.github),
        DriverConfig {
            workflow_file: sample::WORKFLOW_FILE.to_owned(),
            reconcile_every: Duration::from_secs(3600),
            ..DriverConfig::default()
        },
        clock::system(),
    );
    while driver.pass().await.unwrap() {}
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE status != 'done'")
        .fetch_one(t.store.pool())
        .await
        .unwrap();
    assert_eq!(pending, 0, "every interrupted effect is settled");

    let after = github_view(&t, &repo, issue).await;
    assert_eq!(after.app_comments, before.app_comments, "no comment twice");
    assert_eq!(after.runs, 1, "no second dispatch");
    assert_eq!(after.plan_head, before.plan_head, "no second ready commit");
    assert_eq!(after.checks_on_head, 2, "no second pair of check runs");
    assert_eq!(after.check_runs, before.check_runs);
    t.stop().await;
}

/// What a person sees of the mission's effects.
#[derive(Debug, PartialEq)]
struct View {
    app_comments: Vec<String>,
    runs: usize,
    plan_head: String,
    check_runs: usize,
    checks_on_head: usize,
}

async fn github_view(t: &Scenario, repo: &str, issue: u64) -> View {
    let bot = format!("{}[bot]", sample::APP_SLUG);
    let plan_head = t
        .sim
        .git()
        .resolve_ref(repo, &format!("refs/heads/missions/{issue}/plan"))
        .await
        .unwrap()
        .expect("the plan branch exists");
    t.sim.read(|w| {
        let r = &w.repos[repo];
        let mut app_comments: Vec<String> = r
            .comments
            .values()
            // Mission control's comment is edited in place, not part of this.
            .filter(|c| {
                c.user == bot && c.issue_number == issue && !c.body.contains("missions:sticky")
            })
            .map(|c| c.body.clone())
            .collect();
        app_comments.sort();
        View {
            app_comments,
            runs: r
                .runs
                .values()
                .filter(|run| run.inputs.get("job").and_then(Value::as_str).is_some())
                .count(),
            check_runs: r.check_runs.len(),
            checks_on_head: r
                .check_runs
                .values()
                .filter(|c| c.head_sha == plan_head)
                .count(),
            plan_head,
        }
    })
}
