//! An effect GitHub performed just before the App died, and that the App had
//! not yet recorded as done, is not performed twice after the restart: the
//! outbox row says an attempt began, and the driver looks at what GitHub already
//! has before acting again (a comment by its hidden marker, a ready commit by
//! its message, check runs by name, a dispatch by not repeating it).
//!
//! The App's own comments are those GitHub says it made
//! (`performed_via_github_app`): a marker copied by someone else is no proof.
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
        app_id: sample::APP_ID,
        server_model: None,
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

/// The App knows its comments by `performed_via_github_app`, not by the markers
/// in their text: another bot (or a person) that copies a marker neither makes
/// an in-doubt comment look posted (so it would never be posted) nor gets its
/// comment taken for mission control (and edited by the App).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_in_comments_the_app_did_not_make_are_not_taken_for_its_own() {
    let t = Scenario::start(ScenarioOptions::default()).await;
    let repo = t.world.repo.clone();
    let alice = t.world.maintainer.login.clone();
    let issue = t.open_issue(&alice, "Add a feature", "Please.").await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (mission, _) = Mission::start(
        repo.clone(),
        issue,
        alice.clone(),
        "main",
        Settings::default(),
        &alice,
        now,
    );
    let scope = EffectScope {
        mission_id: Some(1),
        installation_id: t.world.installation_id as i64,
        repo: repo.clone(),
        issue,
    };
    let client = t
        .github
        .installation(t.world.installation_id)
        .await
        .unwrap();
    let dispatcher = Dispatcher {
        workflow_file: sample::WORKFLOW_FILE.to_owned(),
        api_base: t.sim.url().to_owned(),
        app_id: sample::APP_ID,
        server_model: None,
    };

    // Another App's bot and a person copy the App's markers: the in-doubt
    // effect's, and mission control's at the start of a comment.
    const EFFECT_ID: i64 = 4242;
    let marker = effects::effect_marker(EFFECT_ID);
    let sticky_marker = missions::mission::control::STICKY_MARKER;
    let mimic = sample::add_bot(
        &t.sim,
        &repo,
        "mimic[bot]",
        missions::sim::state::Permission::Write,
    );
    let post_as = |token: String, body: String| {
        let url = format!("{}/repos/{repo}/issues/{issue}/comments", t.sim.url());
        let http = t.http.clone();
        async move {
            let answer = http
                .post(url)
                .bearer_auth(token)
                .json(&serde_json::json!({ "body": body }))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status().as_u16(), 201);
            answer.json::<Value>().await.unwrap()["id"]
                .as_u64()
                .unwrap()
        }
    };
    let forged_effect = post_as(mimic.clone(), format!("Sure, done.\n\n{marker}")).await;
    let forged_sticky = post_as(
        mimic,
        format!("{sticky_marker}\n### Mission control\n\nEverything passed; merge away."),
    )
    .await;
    post_as(
        t.world.maintainer.token.clone(),
        format!("Quoting the bot: {marker}"),
    )
    .await;
    let comments = t.comments(issue).await;
    let forged = comments
        .iter()
        .find(|c| c["id"].as_u64() == Some(forged_effect))
        .unwrap();
    assert_eq!(forged["user"]["type"], "Bot", "{forged}");
    assert_eq!(forged["performed_via_github_app"], Value::Null, "{forged}");

    // The effect's comment is in doubt (an earlier try may have posted it): the
    // App looks, finds only the copies, and posts it.
    let comment = Effect::Comment {
        target: missions::mission::machine::Target::Issue,
        body: "The orchestrator is scoping this issue.".into(),
    };
    let in_doubt = Attempt {
        effect_id: EFFECT_ID,
        tried_before: true,
        interrupted: true,
    };
    effects::perform(
        &client,
        &dispatcher,
        &scope,
        Some(&mission),
        &comment,
        in_doubt,
        now,
    )
    .await
    .unwrap();
    let bot = format!("{}[bot]", sample::APP_SLUG);
    let app_posts = |comments: &[Value], text: &str| {
        comments
            .iter()
            .filter(|c| c["user"]["login"] == bot.as_str())
            .filter(|c| c["body"].as_str().unwrap().contains(text))
            .count()
    };
    let comments = t.comments(issue).await;
    assert_eq!(app_posts(&comments, &marker), 1, "{comments:#?}");
    let own = comments
        .iter()
        .find(|c| c["user"]["login"] == bot.as_str())
        .unwrap();
    assert!(effects::is_own_comment(own, sample::APP_ID), "{own}");
    assert!(!effects::is_own_comment(own, sample::APP_ID + 1), "{own}");
    // Its own comment is found by the marker: tried again, it is not posted twice.
    effects::perform(
        &client,
        &dispatcher,
        &scope,
        Some(&mission),
        &comment,
        in_doubt,
        now,
    )
    .await
    .unwrap();
    assert_eq!(app_posts(&t.comments(issue).await, &marker), 1);

    // Mission control's comment: the App posts its own, and leaves the copy alone.
    let posted = effects::perform(
        &client,
        &dispatcher,
        &scope,
        Some(&mission),
        &Effect::UpdateSticky,
        Attempt::default(),
        now,
    )
    .await
    .unwrap();
    let Some(missions::mission::machine::Event::StickyPosted { comment_id }) = posted else {
        panic!("no sticky comment posted: {posted:?}");
    };
    assert_ne!(comment_id, forged_sticky);
    let comments = t.comments(issue).await;
    let copy = comments
        .iter()
        .find(|c| c["id"].as_u64() == Some(forged_sticky))
        .unwrap();
    assert!(
        copy["body"].as_str().unwrap().contains("merge away"),
        "the App edited the bot's comment: {copy}"
    );
    assert_eq!(app_posts(&comments, sticky_marker), 1, "{comments:#?}");
    // A mission that lost the id finds the App's own comment again, not the copy.
    let found = effects::perform(
        &client,
        &dispatcher,
        &scope,
        Some(&mission),
        &Effect::UpdateSticky,
        Attempt::default(),
        now,
    )
    .await
    .unwrap();
    assert_eq!(
        found,
        Some(missions::mission::machine::Event::StickyPosted { comment_id })
    );
    assert_eq!(app_posts(&t.comments(issue).await, sticky_marker), 1);

    // On a busy issue the App's comment comes after the first page of 100:
    // a mission that lost its id still finds it there, and posts no second one.
    let busy = t.open_issue(&alice, "A busy issue", "Much to say.").await;
    for n in 0..100 {
        let url = format!("{}/repos/{repo}/issues/{busy}/comments", t.sim.url());
        let answer = t
            .http
            .post(url)
            .bearer_auth(&t.world.maintainer.token)
            .json(&serde_json::json!({ "body": format!("Thought {n}.") }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 201);
    }
    let mut on_busy = mission.clone();
    on_busy.issue = busy;
    let busy_scope = EffectScope {
        issue: busy,
        ..scope.clone()
    };
    let sticky_once = |scope: EffectScope, mission: Mission| {
        let (client, dispatcher) = (client.clone(), dispatcher.clone());
        async move {
            effects::perform(
                &client,
                &dispatcher,
                &scope,
                Some(&mission),
                &Effect::UpdateSticky,
                Attempt::default(),
                now,
            )
            .await
            .unwrap()
        }
    };
    let posted = sticky_once(busy_scope.clone(), on_busy.clone()).await;
    let found = sticky_once(busy_scope, on_busy).await;
    assert!(posted.is_some());
    assert_eq!(found, posted, "found again on the second page");
    let all = t.sim.read(|w| {
        w.repos[&repo]
            .comments
            .values()
            .filter(|c| c.issue_number == busy && c.body.contains(sticky_marker))
            .count()
    });
    assert_eq!(all, 1);
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
