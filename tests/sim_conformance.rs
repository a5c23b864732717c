//! The simulator is held to GitHub's published description, not to our code:
//! every simulated REST operation is called (by the App's own client, so the
//! App's requests are checked too) and each answer is validated against the
//! OpenAPI subset; every webhook it sent is validated against GitHub's webhook
//! schemas, compared with GitHub's example payload, and parsed by the App.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use common::openapi::OpenApi;
use common::scenario::{Scenario, ScenarioOptions, app_key};
use common::webhook_schemas::{WebhookSchemas, example_for, missing_keys};
use missions::clock;
use missions::github::auth::{AppCredentials, AppJwtSigner};
use missions::github::client::{InstallationClient, Method};
use missions::github::events::WebhookEvent;
use missions::sim::sample;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

async fn call(
    client: &InstallationClient,
    method: Method,
    route: &str,
    body: Option<Value>,
) -> Value {
    client
        .request_json(method.clone(), route, body.as_ref())
        .await
        .unwrap_or_else(|e| panic!("{method} {route}: {e}"))
}

/// Calls every operation of the subset at least once with a success answer,
/// and a few with GitHub's error answers.
async fn exercise_every_operation(t: &Scenario) {
    let repo = &t.world.repo;
    let r = format!("/repos/{repo}");
    let client = t
        .github
        .installation(t.world.installation_id)
        .await
        .unwrap();

    // With the App's JWT (what only an App can call).
    let (private_pem, _) = app_key();
    let jwt = AppJwtSigner::new(
        &AppCredentials::new(sample::APP_ID, SecretString::from(private_pem.clone())),
        clock::system(),
    )
    .unwrap()
    .sign()
    .unwrap();
    for path in ["/app".to_owned(), format!("{r}/installation")] {
        let answer = t
            .http
            .get(format!("{}{path}", t.sim.url()))
            .bearer_auth(jwt.expose_secret())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }

    call(&client, Method::GET, "/rate_limit", None).await;
    call(&client, Method::GET, &r, None).await;
    call(
        &client,
        Method::GET,
        &format!("{r}/collaborators/alice/permission"),
        None,
    )
    .await;

    // Issues, labels, comments, reactions.
    let issue = call(
        &client,
        Method::POST,
        &format!("{r}/issues"),
        Some(json!({"title": "Conformance", "body": "x", "labels": ["triage"]})),
    )
    .await;
    let n = issue["number"].as_u64().unwrap();
    call(&client, Method::GET, &format!("{r}/issues/{n}"), None).await;
    call(
        &client,
        Method::PATCH,
        &format!("{r}/issues/{n}"),
        Some(json!({"title": "Conformance (edited)"})),
    )
    .await;
    call(
        &client,
        Method::POST,
        &format!("{r}/issues/{n}/labels"),
        Some(json!({"labels": ["mission", "bug"]})),
    )
    .await;
    call(
        &client,
        Method::DELETE,
        &format!("{r}/issues/{n}/labels/bug"),
        None,
    )
    .await;
    call(
        &client,
        Method::DELETE,
        &format!("{r}/issues/{n}/labels"),
        None,
    )
    .await;
    let comment = call(
        &client,
        Method::POST,
        &format!("{r}/issues/{n}/comments"),
        Some(json!({"body": "first"})),
    )
    .await;
    let comment_id = comment["id"].as_u64().unwrap();
    call(
        &client,
        Method::PATCH,
        &format!("{r}/issues/comments/{comment_id}"),
        Some(json!({"body": "first (edited)"})),
    )
    .await;
    call(
        &client,
        Method::GET,
        &format!("{r}/issues/{n}/comments"),
        None,
    )
    .await;
    call(
        &client,
        Method::DELETE,
        &format!("{r}/issues/comments/{comment_id}"),
        None,
    )
    .await;
    call(
        &client,
        Method::POST,
        &format!("{r}/issues/{n}/reactions"),
        Some(json!({"content": "eyes"})),
    )
    .await;
    call(
        &client,
        Method::PATCH,
        &format!("{r}/issues/{n}"),
        Some(json!({"state": "closed"})),
    )
    .await;

    // Git data: blob → tree → commit → ref, then move the ref.
    let main = call(
        &client,
        Method::GET,
        &format!("{r}/git/ref/heads/main"),
        None,
    )
    .await;
    let main_sha = main["object"]["sha"].as_str().unwrap().to_owned();
    let blob = call(
        &client,
        Method::POST,
        &format!("{r}/git/blobs"),
        Some(json!({"content": "aGVsbG8K", "encoding": "base64"})),
    )
    .await;
    let base_commit = call(&client, Method::GET, &format!("{r}/branches/main"), None).await;
    let base_tree = base_commit["commit"]["commit"]["tree"]["sha"]
        .as_str()
        .unwrap()
        .to_owned();
    let tree = call(&client, Method::POST, &format!("{r}/git/trees"), Some(json!({
        "base_tree": base_tree,
        "tree": [
            {"path": "docs/hello.txt", "mode": "100644", "type": "blob", "sha": blob["sha"]},
            {"path": "docs/inline.md", "mode": "100644", "type": "blob", "content": "# inline\n"},
        ],
    }))).await;
    let commit = call(
        &client,
        Method::POST,
        &format!("{r}/git/commits"),
        Some(json!({
            "message": "Add docs", "tree": tree["sha"], "parents": [main_sha],
        })),
    )
    .await;
    let commit_sha = commit["sha"].as_str().unwrap().to_owned();
    call(
        &client,
        Method::POST,
        &format!("{r}/git/refs"),
        Some(json!({"ref": "refs/heads/feature", "sha": main_sha})),
    )
    .await;
    call(
        &client,
        Method::PATCH,
        &format!("{r}/git/refs/heads/feature"),
        Some(json!({"sha": commit_sha, "force": false})),
    )
    .await;

    // Contents: create, update, read a file and a directory.
    let created = call(&client, Method::PUT, &format!("{r}/contents/notes/a.md"), Some(json!({
        "message": "Add a note", "content": base64::engine::general_purpose::STANDARD.encode("one\n"), "branch": "feature",
    }))).await;
    call(&client, Method::PUT, &format!("{r}/contents/notes/a.md"), Some(json!({
        "message": "Edit the note", "content": base64::engine::general_purpose::STANDARD.encode("two\n"),
        "branch": "feature", "sha": created["content"]["sha"],
    }))).await;
    let file = call(
        &client,
        Method::GET,
        &format!("{r}/contents/notes/a.md?ref=feature"),
        None,
    )
    .await;
    assert_eq!(file["type"], "file");
    let dir = call(
        &client,
        Method::GET,
        &format!("{r}/contents/docs?ref=feature"),
        None,
    )
    .await;
    assert_eq!(dir.as_array().map(Vec::len), Some(2));

    // Pull request, check runs, review, merge.
    let pr = call(
        &client,
        Method::POST,
        &format!("{r}/pulls"),
        Some(json!({"title": "Docs", "head": "feature", "base": "main", "body": "Adds docs"})),
    )
    .await;
    let p = pr["number"].as_u64().unwrap();
    // A new commit on the head branch: the PR is synchronized.
    call(&client, Method::PUT, &format!("{r}/contents/notes/b.md"), Some(json!({
        "message": "Another note", "content": base64::engine::general_purpose::STANDARD.encode("b\n"), "branch": "feature",
    }))).await;
    let pr = call(&client, Method::GET, &format!("{r}/pulls/{p}"), None).await;
    let head = pr["head"]["sha"].as_str().unwrap().to_owned();
    call(&client, Method::GET, &format!("{r}/pulls"), None).await;
    call(&client, Method::GET, &format!("{r}/pulls/{p}"), None).await;
    call(
        &client,
        Method::PATCH,
        &format!("{r}/pulls/{p}"),
        Some(json!({"body": "Adds docs (edited)"})),
    )
    .await;
    let check = call(
        &client,
        Method::POST,
        &format!("{r}/check-runs"),
        Some(json!({
            "name": "missions / scrutiny", "head_sha": head, "status": "in_progress",
            "output": {"title": "Scrutiny", "summary": "Running"},
        })),
    )
    .await;
    let check_id = check["id"].as_u64().unwrap();
    call(
        &client,
        Method::GET,
        &format!("{r}/check-runs/{check_id}"),
        None,
    )
    .await;
    call(&client, Method::PATCH, &format!("{r}/check-runs/{check_id}"), Some(json!({
        "conclusion": "success", "output": {"title": "Scrutiny", "summary": "All assertions pass"},
    }))).await;
    call(
        &client,
        Method::GET,
        &format!("{r}/commits/{head}/check-runs"),
        None,
    )
    .await;
    let review = t
        .act(
            "alice",
            "POST",
            &format!("{r}/pulls/{p}/reviews"),
            Some(json!({"event": "APPROVE"})),
        )
        .await;
    assert_eq!(review.status, 200, "{:?}", review.body);
    call(
        &client,
        Method::GET,
        &format!("{r}/pulls/{p}/reviews"),
        None,
    )
    .await;
    call(
        &client,
        Method::PUT,
        &format!("{r}/pulls/{p}/merge"),
        Some(json!({"merge_method": "merge", "sha": head})),
    )
    .await;

    // Actions: dispatch, then read the run and its jobs once it completed.
    call(
        &client,
        Method::POST,
        &format!("{r}/actions/workflows/{}/dispatches", sample::WORKFLOW_FILE),
        Some(json!({"ref": "main", "inputs": {"role": "worker", "mission": "1"}})),
    )
    .await;
    let run = t
        .expect_delivered("workflow_run", Some("completed"), |_| true)
        .await;
    let run_id = run.payload["workflow_run"]["id"].as_u64().unwrap();
    call(
        &client,
        Method::GET,
        &format!("{r}/actions/runs/{run_id}"),
        None,
    )
    .await;
    call(
        &client,
        Method::GET,
        &format!("{r}/actions/runs/{run_id}/jobs"),
        None,
    )
    .await;

    // GitHub's error answers, as documented for these operations.
    for (method, path, body, status) in [
        ("GET", format!("{r}/issues/9999"), None, 404),
        (
            "POST",
            format!("{r}/issues"),
            Some(json!({"body": "no title"})),
            422,
        ),
        (
            "POST",
            format!("{r}/git/refs"),
            Some(json!({"ref": "refs/heads/feature", "sha": commit_sha})),
            422,
        ),
        ("PUT", format!("{r}/pulls/{p}/merge"), Some(json!({})), 405),
        (
            "PUT",
            format!("{r}/contents/notes/a.md"),
            Some(
                json!({"message": "m", "content": "eA==", "branch": "feature", "sha": "0000000000000000000000000000000000000000"}),
            ),
            409,
        ),
    ] {
        let answer = t.act("alice", method, &path, body).await;
        assert_eq!(answer.status, status, "{method} {path}: {:?}", answer.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_githubs_description_says_and_every_webhook_matches() {
    let t = Scenario::start(ScenarioOptions {
        workflows: vec![(sample::WORKFLOW_FILE.into(), vec!["true".into()])],
        ..ScenarioOptions::default()
    })
    .await;
    exercise_every_operation(&t).await;
    // Let the last deliveries go out.
    t.sim
        .wait_for("all deliveries sent", Duration::from_secs(10), |s| {
            (s.deliveries_pending() == 0).then_some(())
        })
        .await
        .unwrap();

    // REST: every answer and every App request against the description.
    let api = OpenApi::get();
    let mut violations = Vec::new();
    let mut covered = BTreeSet::new();
    for e in t.sim.exchanges() {
        // The route template as the description writes it (`{*path}` → `{path}`).
        let template = e.route.replace("{*", "{");
        let Some((doc_template, _)) = api.operation(&e.method, &template) else {
            continue; // beyond the subset (submitting a review)
        };
        let body = e.response.as_ref().unwrap_or(&Value::Null);
        let result =
            if e.method == "PUT" && doc_template.ends_with("/contents/{path}") && e.status == 409 {
                // The description's 409 is `oneOf: [basic-error, repository-rule-violation-error]`,
                // two open schemas that every error body matches both of, so no answer can
                // pass it; GitHub answers a basic-error.
                api.check(&json!({"$ref": "#/components/schemas/basic-error"}), body)
            } else {
                api.check_response(&e.method, &template, e.status, body)
            };
        if let Err(v) = result {
            violations.push(format!(
                "{} {} → {}: {}",
                e.method,
                e.path,
                e.status,
                v.join("; ")
            ));
        }
        if let Some(body) = &e.request
            && e.caller != "anonymous"
            && e.caller.starts_with("installation")
            && let Err(v) = api.check_request(&e.method, &template, body)
        {
            violations.push(format!("request {} {}: {}", e.method, e.path, v.join("; ")));
        }
        if (200..300).contains(&e.status) {
            covered.insert(format!("{} {doc_template}", e.method));
        }
    }
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    let all: BTreeSet<String> = api
        .operations()
        .into_iter()
        .map(|(m, p)| format!("{} {p}", m.to_uppercase()))
        .collect();
    let missing: Vec<_> = all.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "operations never answered with success: {missing:?}"
    );
    assert_eq!(all.len(), 39);

    // Webhooks: schema, example structure, and the App's own parsing.
    let schemas = WebhookSchemas::get();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let mut unschemaed = BTreeSet::new();
    for d in t.sim.deliveries() {
        let key = format!("{}.{}", d.event, d.action.as_deref().unwrap_or("-"));
        seen.insert(key.clone());
        assert_eq!(
            d.status,
            Some(202),
            "{key} was accepted by the App: {:?}",
            d.error
        );
        // GitHub's fixtures have schemas for some actions only (not, say,
        // issues.closed); the others are held to their event's example and parsing.
        if schemas.schema_exists(&d.event, d.action.as_deref()) {
            if let Err(errors) = schemas.validate(&d.event, &d.payload) {
                problems.push(format!("{key} schema: {}", errors.join("; ")));
            }
        } else {
            unschemaed.insert(key.clone());
        }
        let example = example_for(&d.event, d.action.as_deref()).or_else(|| {
            // No example for this action: another of the event's, without the keys
            // that belong to that example's own action.
            let mut json = common::webhook_fixtures()
                .into_iter()
                .find(|f| f.event == d.event)?
                .json;
            for key in ["changes", "label"] {
                json.as_object_mut()?.remove(key);
            }
            Some(json)
        });
        if let Some(example) = example {
            let missing = missing_keys(&example, &d.payload, 2);
            if !missing.is_empty() {
                problems.push(format!("{key} lacks keys of GitHub's example: {missing:?}"));
            }
        }
        let bytes = serde_json::to_vec(&d.payload).unwrap();
        if let Err(e) = WebhookEvent::parse(&d.event, &bytes) {
            problems.push(format!("{key} does not parse: {e}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(
        unschemaed.into_iter().collect::<Vec<_>>(),
        [
            "check_run.created",
            "issue_comment.deleted",
            "issues.closed",
            "pull_request.edited",
            "workflow_job.in_progress"
        ],
        "the deliveries checked without a schema"
    );
    for expected in [
        "installation.created",
        "issues.opened",
        "issues.edited",
        "issues.labeled",
        "issues.unlabeled",
        "issues.closed",
        "issue_comment.created",
        "issue_comment.edited",
        "issue_comment.deleted",
        "push.-",
        "pull_request.opened",
        "pull_request.synchronize",
        "pull_request.edited",
        "pull_request.closed",
        "pull_request_review.submitted",
        "check_run.created",
        "check_run.completed",
        "workflow_run.requested",
        "workflow_run.in_progress",
        "workflow_run.completed",
        "workflow_job.queued",
        "workflow_job.in_progress",
        "workflow_job.completed",
    ] {
        assert!(
            seen.contains(expected),
            "no {expected} delivery; saw {seen:?}"
        );
    }
    t.stop().await;
}
