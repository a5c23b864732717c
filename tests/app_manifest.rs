//! `missions app-manifest`: the manifest asks for exactly what the App uses, and
//! the redirect handler turns GitHub's answer into a config the server loads.
//!
//! - Events: every GitHub example payload (`../shared/github-fixtures/webhooks/`),
//!   as delivered and shaped like a mission's own deliveries, goes through the
//!   mission handler's filter; the events that yield an input are the manifest's.
//! - Permissions: a whole mission runs through the simulator; every REST call the
//!   App made with its installation token is mapped to the permission GitHub's
//!   REST reference requires for it, and the manifest must grant each, and ask
//!   for nothing that no call needs.
//! - The redirect handler runs against a fake `POST /app-manifests/{code}/conversions`.
//!   That operation is not in the REST subset of the fixtures, so its answer is
//!   built as GitHub documents it (`integration-from-manifest`: the `integration`
//!   object plus `client_id`, `client_secret`, `webhook_secret` (nullable) and
//!   `pem`), with the `integration` part validated against the subset's schema
//!   (that of `GET /app`) and the four extra fields checked by hand.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use common::openapi::OpenApi;
use common::scenario::{DEADLINE, Scenario, ScenarioOptions};
use missions::engine::missions::{DriverConfig, MissionInput};
use missions::github::events::WebhookEvent;
use missions::manifest::{self, EVENTS, Flow, FlowOptions, PERMISSIONS};
use missions::sim::sample;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

/// What a delivery that concerns a mission looks like, as edits applied to every
/// example payload wherever the field exists: the mission label, a merged pull
/// request, an approving review, a run of the dispatched mission workflow, and a
/// mission's branch.
const MISSION_SHAPED: &[(&str, &str)] = &[
    ("/label/name", r#""mission""#),
    ("/pull_request/merged", "true"),
    ("/pull_request/head/ref", r#""missions/1/m1""#),
    ("/review/state", r#""approved""#),
    ("/workflow_run/event", r#""workflow_dispatch""#),
    ("/workflow_run/head_branch", r#""missions/1/m1""#),
    ("/check_run/check_suite/head_branch", r#""missions/1/m1""#),
    ("/check_suite/head_branch", r#""missions/1/m1""#),
];

/// Whether the mission handler records an input for this delivery (its own
/// filter: an input, that may concern a mission, from an installation's repository).
fn consumed(event: &str, payload: &Value) -> bool {
    let bytes = serde_json::to_vec(payload).unwrap();
    let Ok(parsed) = WebhookEvent::parse(event, &bytes) else {
        return false;
    };
    MissionInput::from_event(&parsed)
        .filter(MissionInput::may_concern_a_mission)
        .is_some()
        && parsed.installation_id().is_some()
        && parsed.repository().is_some()
}

/// `merge_group` `checks_requested`, which the shared fixtures lack: built
/// from another fixture's repository, sender and installation and the
/// `merge_group` object of GitHub's webhook reference.
fn merge_group_example(fixtures: &[common::Fixture]) -> common::Fixture {
    let base = &fixtures
        .iter()
        .find(|f| f.event == "pull_request" && f.file == "closed.json")
        .expect("a pull_request example")
        .json;
    let head = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
    let json = json!({
        "action": "checks_requested",
        "merge_group": {
            "head_sha": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4",
            "head_ref": format!("refs/heads/gh-readonly-queue/main/pr-1-{head}"),
            "base_sha": "8a3e1f0b5a1e3c1f7e5d4c3b2a1908f7e6d5c4b3",
            "base_ref": "refs/heads/main",
            "head_commit": {
                "id": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4",
                "tree_id": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
                "message": "Merge pull request #1 from octo-org/missions/1/m1",
                "timestamp": "2026-12-07T05:00:00Z",
                "author": { "name": "Octocat", "email": "octocat@github.com" },
                "committer": { "name": "GitHub", "email": "noreply@github.com" },
            },
        },
        "repository": base["repository"],
        "sender": base["sender"],
        "installation": { "id": 1, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ==" },
    });
    common::Fixture {
        event: "merge_group".into(),
        file: "checks_requested.json".into(),
        body: serde_json::to_vec(&json).unwrap(),
        json,
    }
}

#[test]
fn the_manifest_subscribes_to_exactly_the_events_the_mission_handler_consumes() {
    let mut fixtures = common::webhook_fixtures();
    assert!(fixtures.len() >= 38, "only {} fixtures", fixtures.len());
    fixtures.push(merge_group_example(&fixtures));
    let mut consuming = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for f in &fixtures {
        seen.insert(f.event.clone());
        let mut shaped = f.json.clone();
        for (pointer, value) in MISSION_SHAPED {
            if let Some(slot) = shaped.pointer_mut(pointer) {
                *slot = serde_json::from_str(value).unwrap();
            }
        }
        for mut payload in [f.json.clone(), shaped] {
            // Deliveries to an App carry its installation.
            if payload.get("installation").is_none() {
                payload["installation"] =
                    json!({ "id": 1, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ==" });
            }
            if consumed(&f.event, &payload) {
                consuming.insert(f.event.clone());
            }
        }
    }
    // Every event the App has a type for has an example, so none is left untried.
    for event in WebhookEvent::KNOWN_EVENTS {
        assert!(seen.contains(event), "no example payload for {event}");
    }
    let subscribed: BTreeSet<String> = EVENTS.iter().map(|(e, _)| e.to_string()).collect();
    assert_eq!(
        subscribed, consuming,
        "the manifest's events (left) must be those the mission handler consumes (right)"
    );
    let m = manifest::manifest(
        "https://x.example/webhook",
        "https://x.example/redirect",
        "m",
    );
    let listed: BTreeSet<String> = m["default_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, subscribed);
}

// ---------------------------------------------------------------------------
// Permissions
// ---------------------------------------------------------------------------

/// (method, route, the permissions of which any one suffices)
type Route = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// Every REST route the App calls with its installation token, and the
/// repository permission GitHub's REST reference requires for it (any one of the
/// alternatives). A route missing here fails the test: add it, with GitHub's
/// documented permission, and the permission to `manifest::PERMISSIONS`.
const ROUTES: &[Route] = &[
    (
        "POST",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        &[("issues", "write")],
    ),
    (
        "PATCH",
        "/repos/{owner}/{repo}/issues/{issue_number}",
        &[("issues", "write")],
    ),
    // The mission's status (sticky) comment: found again, then edited.
    (
        "GET",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        &[("issues", "read"), ("pull_requests", "read")],
    ),
    (
        "PATCH",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}",
        &[("issues", "write"), ("pull_requests", "write")],
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/collaborators/{username}/permission",
        &[("metadata", "read")],
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/pulls",
        &[("pull_requests", "write")],
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/pulls",
        &[("pull_requests", "read")],
    ),
    (
        "PATCH",
        "/repos/{owner}/{repo}/pulls/{pull_number}",
        &[("pull_requests", "write")],
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/pulls/{pull_number}",
        &[("pull_requests", "read")],
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/pulls/{pull_number}/reviews",
        &[("pull_requests", "read")],
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/check-runs",
        &[("checks", "write")],
    ),
    (
        "PATCH",
        "/repos/{owner}/{repo}/check-runs/{check_run_id}",
        &[("checks", "write")],
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches",
        &[("actions", "write")],
    ),
    // Reconciliation only (a lost completion webhook).
    (
        "GET",
        "/repos/{owner}/{repo}/actions/runs/{run_id}",
        &[("actions", "read")],
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/branches/{branch}",
        &[("contents", "read"), ("metadata", "read")],
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/contents/{path}",
        &[("contents", "read")],
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/git/ref/{ref}",
        &[("contents", "read")],
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/git/refs",
        &[("contents", "write")],
    ),
    (
        "PATCH",
        "/repos/{owner}/{repo}/git/refs/{ref}",
        &[("contents", "write")],
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/git/commits",
        &[("contents", "write")],
    ),
    // The repository's own CI on a ready commit.
    (
        "GET",
        "/repos/{owner}/{repo}/commits/{ref}/check-runs",
        &[("checks", "read")],
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/commits/{ref}/status",
        &[("statuses", "read")],
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs",
        &[("actions", "read")],
    ),
    (
        "PUT",
        "/repos/{owner}/{repo}/contents/{path}",
        &[("contents", "write")],
    ),
];

fn rank(level: &str) -> u8 {
    match level {
        "read" => 1,
        "write" => 2,
        other => panic!("unknown access level {other}"),
    }
}

fn granted() -> BTreeMap<String, String> {
    let m = manifest::manifest(
        "https://x.example/webhook",
        "https://x.example/redirect",
        "m",
    );
    serde_json::from_value(m["default_permissions"].clone()).unwrap()
}

fn satisfied(granted: &BTreeMap<String, String>, needs: &[(&str, &str)]) -> bool {
    needs.iter().any(|(p, level)| {
        granted
            .get(*p)
            .is_some_and(|have| rank(have) >= rank(level))
    })
}

/// Every event the App subscribes to and the repository permission GitHub's
/// webhook reference requires to receive it (any one of the alternatives).
const EVENT_NEEDS: &[(&str, &[(&str, &str)])] = &[
    ("check_run", &[("checks", "read")]),
    ("check_suite", &[("checks", "read")]),
    ("issues", &[("issues", "read")]),
    (
        "issue_comment",
        &[("issues", "read"), ("pull_requests", "read")],
    ),
    ("merge_group", &[("merge_queues", "read")]),
    ("pull_request", &[("pull_requests", "read")]),
    ("pull_request_review", &[("pull_requests", "read")]),
    ("workflow_run", &[("actions", "read")]),
];

#[test]
fn every_permission_the_manifest_asks_for_is_needed_at_that_level() {
    let granted = granted();
    assert_eq!(granted.len(), PERMISSIONS.len());
    for (permission, level) in &granted {
        // Lowering it (or dropping it) must leave some route uncovered.
        let mut lowered = granted.clone();
        if level == "write" {
            lowered.insert(permission.clone(), "read".into());
        } else {
            lowered.remove(permission);
        }
        let needing: Vec<String> = ROUTES
            .iter()
            .filter(|(_, _, needs)| !satisfied(&lowered, needs))
            .map(|(m, r, _)| format!("{m} {r}"))
            .chain(
                EVENT_NEEDS
                    .iter()
                    .filter(|(_, needs)| !satisfied(&lowered, needs))
                    .map(|(e, _)| format!("the {e} event")),
            )
            .collect();
        assert!(
            !needing.is_empty(),
            "`{permission}: {level}` is more than any call or event of the App needs"
        );
    }
    let events: Vec<&str> = EVENT_NEEDS.iter().map(|(e, _)| *e).collect();
    assert_eq!(
        events,
        EVENTS.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
        "each subscribed event with the permission that receives it"
    );
    for (event, needs) in EVENT_NEEDS {
        assert!(satisfied(&granted, needs), "{event} needs one of {needs:?}");
    }
    for (method, route, needs) in ROUTES {
        assert!(
            satisfied(&granted, needs),
            "{method} {route} needs one of {needs:?}"
        );
    }
}

/// A whole mission (two milestones) through the simulator; every call the App
/// made with its installation token is allowed by the manifest's permissions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_a_mission_is_covered_by_the_manifest_permissions() {
    let scripts = tempfile::tempdir().unwrap();
    let story = missions::demo::scripts::Story::default();
    missions::demo::scripts::write(scripts.path(), &story).unwrap();
    let t = Scenario::start(ScenarioOptions {
        workflows: vec![(
            sample::WORKFLOW_FILE.to_owned(),
            missions::demo::job_command(Path::new(env!("CARGO_BIN_EXE_missions"))),
        )],
        missions: Some(DriverConfig {
            reconcile_every: Duration::from_secs(2),
            job_timeout: Duration::from_secs(120),
            ..DriverConfig::default()
        }),
        // Another CI service's status is a required check: the App reads
        // statuses and check runs on each ready commit.
        repo: Some(common::mission::with_settings(
            missions::demo::repo_spec(scripts.path()),
            |text| format!("{text}ci:\n  required: [ci/external]\n"),
        )),
        ..ScenarioOptions::default()
    })
    .await;
    let alice = t.world.maintainer.login.clone();
    let repo = t.world.repo.clone();

    let issue = t
        .open_issue(
            &alice,
            missions::demo::project::ISSUE_TITLE,
            missions::demo::project::ISSUE_BODY,
        )
        .await;
    assert_eq!(t.label_issue(&alice, issue, "mission").await, 200);
    let plan_pr = expect_pr(&t, &format!("missions/{issue}/plan")).await;
    let plan: missions::mission::Plan = serde_json::from_str(
        &t.file(
            &format!(".missions/{issue}/plan.json"),
            &format!("missions/{issue}/plan"),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let answer = t
        .act(
            &alice,
            "POST",
            &format!("/repos/{repo}/pulls/{plan_pr}/reviews"),
            Some(json!({ "event": "APPROVE", "body": "Looks right." })),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    for index in 1..=plan.milestones.len() {
        let pr = expect_pr(&t, &format!("missions/{issue}/m{index}")).await;
        expect_checks_passed(&t, pr).await;
        let head = t.sim.read(|w| {
            w.repos[&repo].issues[&pr]
                .pull
                .as_ref()
                .unwrap()
                .head_sha
                .clone()
        });
        let answer = t
            .act(
                &alice,
                "POST",
                &format!("/repos/{repo}/statuses/{head}"),
                Some(json!({ "state": "success", "context": "ci/external" })),
            )
            .await;
        assert_eq!(answer.status, 201, "status: {:?}", answer.body);
        t.expect_app_comment(pr, "Ready to merge").await;
        let answer = t
            .act(
                &alice,
                "PUT",
                &format!("/repos/{repo}/pulls/{pr}/merge"),
                Some(json!({})),
            )
            .await;
        assert_eq!(answer.status, 200, "merge: {:?}", answer.body);
    }
    t.sim
        .wait_for(&format!("#{issue} closed"), DEADLINE, |s| {
            s.read(|w| {
                (format!("{:?}", w.repos[&repo].issues[&issue].state).to_lowercase() == "closed")
                    .then_some(())
            })
        })
        .await
        .unwrap();

    let granted = granted();
    let mut called = BTreeSet::new();
    let mut problems = Vec::new();
    for e in t.sim.exchanges() {
        if !e.caller.starts_with("installation") {
            continue;
        }
        let route = e.route.replace("{*", "{");
        called.insert(format!("{} {route}", e.method));
        match ROUTES
            .iter()
            .find(|(m, r, _)| *m == e.method && *r == route)
        {
            None => problems.push(format!(
                "{} {route}: not in ROUTES (which permission does GitHub require for it?)",
                e.method
            )),
            Some((_, _, needs)) if !satisfied(&granted, needs) => problems.push(format!(
                "{} {route}: needs one of {needs:?}, the manifest grants {granted:?}",
                e.method
            )),
            Some(_) => {}
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The mission exercised the App's calls, not a handful.
    assert!(called.len() >= 13, "{called:#?}");
    // Every permission the manifest grants was used by some call of this
    // mission, or is what GitHub requires to send one of its events (a merge
    // queue's `merge_group`: no call needs `merge_queues`).
    for permission in granted.keys() {
        let called_with = ROUTES.iter().any(|(m, r, needs)| {
            called.contains(&format!("{m} {r}")) && needs.iter().any(|(p, _)| p == permission)
        });
        let receives = EVENT_NEEDS
            .iter()
            .any(|(_, needs)| matches!(needs, [(p, _)] if p == permission));
        assert!(
            called_with || receives,
            "no call of the mission used `{permission}`"
        );
    }
    t.stop().await;
}

async fn expect_pr(t: &Scenario, branch: &str) -> u64 {
    let repo = t.world.repo.clone();
    let branch = branch.to_owned();
    t.sim
        .wait_for(&format!("a pull request from {branch}"), DEADLINE, |s| {
            s.read(|w| {
                w.repos[&repo]
                    .issues
                    .values()
                    .find(|i| i.pull.as_ref().is_some_and(|p| p.head_ref == branch))
                    .map(|i| i.number)
            })
        })
        .await
        .unwrap()
}

async fn expect_checks_passed(t: &Scenario, pr: u64) {
    let repo = t.world.repo.clone();
    let conclusions = t
        .sim
        .wait_for(
            &format!("both check runs completed on #{pr}'s head"),
            DEADLINE * 2,
            |s| {
                s.read(|w| {
                    let r = &w.repos[&repo];
                    let head = &r.issues[&pr].pull.as_ref().unwrap().head_sha;
                    let find = |name: &str| {
                        r.check_runs
                            .values()
                            .find(|c| {
                                &c.head_sha == head && c.name == name && c.status == "completed"
                            })
                            .map(|c| c.conclusion.clone())
                    };
                    Some((
                        find("missions / scrutiny")?,
                        find("missions / user-testing")?,
                    ))
                })
            },
        )
        .await
        .unwrap();
    assert_eq!(
        conclusions,
        (Some("success".into()), Some("success".into()))
    );
}

// ---------------------------------------------------------------------------
// docs/install.md
// ---------------------------------------------------------------------------

/// The first two cells of the table rows between two markers.
fn table_rows(doc: &str, start: &str, end: &str) -> Vec<(String, String)> {
    let from = doc.find(start).unwrap_or_else(|| panic!("no {start}")) + start.len();
    let to = doc[from..].find(end).unwrap_or_else(|| panic!("no {end}")) + from;
    doc[from..to]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            (cells[0].trim_matches('`').to_owned(), cells[1].to_owned())
        })
        .collect()
}

#[test]
fn the_install_guide_lists_the_manifest_permissions_and_events() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/install.md")).unwrap();
    let permissions = table_rows(
        &doc,
        "<!-- permissions:start -->",
        "<!-- permissions:end -->",
    );
    let expected: Vec<(String, String)> = PERMISSIONS
        .iter()
        .map(|(p, level, _)| (p.to_string(), level.to_lowercase()))
        .collect();
    let listed: Vec<(String, String)> = permissions
        .into_iter()
        .map(|(p, level)| {
            (
                p,
                level
                    .to_lowercase()
                    .replace("read and write", "write")
                    .replace("read-only", "read"),
            )
        })
        .collect();
    assert_eq!(listed, expected, "docs/install.md's permission table");
    let events: Vec<String> = table_rows(&doc, "<!-- events:start -->", "<!-- events:end -->")
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    let expected: Vec<String> = EVENTS.iter().map(|(e, _)| e.to_string()).collect();
    assert_eq!(events, expected, "docs/install.md's event table");
}

// ---------------------------------------------------------------------------
// The redirect handler against a fake GitHub
// ---------------------------------------------------------------------------

const APP_ID: u64 = 424_242;
const WEBHOOK_SECRET: &str = "e340154128314309424b7c8e90325147d99fdafa";
const CLIENT_SECRET: &str = "1d4b2097ac622ba702d19de498f005747a8b21d3";

/// The App's private key as GitHub hands it over (PKCS#1 PEM).
fn app_pem() -> String {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&common::scenario::app_key().0).unwrap();
    key.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap()
        .to_string()
}

/// GitHub's documented 201 answer: the `integration` example of the REST
/// description, as the new App, plus its credentials.
fn conversion_answer(webhook_secret: Option<&str>) -> Value {
    let mut app = OpenApi::get().example("integration");
    app["id"] = json!(APP_ID);
    app["slug"] = json!("missions-test");
    app["name"] = json!("missions-test");
    app["html_url"] = json!("https://github.com/apps/missions-test");
    app["permissions"] =
        manifest::manifest("https://x/webhook", "https://x/redirect", "m")["default_permissions"]
            .clone();
    app["events"] = json!(EVENTS.iter().map(|(e, _)| *e).collect::<Vec<_>>());
    app["client_id"] = json!("Iv1.8a61f9b3a7aba766");
    app["client_secret"] = json!(CLIENT_SECRET);
    app["webhook_secret"] = json!(webhook_secret);
    app["pem"] = json!(app_pem());
    // The `integration` part, against GitHub's schema; the rest as documented.
    OpenApi::get()
        .check_response("GET", "/app", 200, &app)
        .unwrap_or_else(|v| panic!("the fake's answer is not an `integration`: {v:?}"));
    for field in ["client_id", "client_secret", "pem"] {
        assert!(app[field].is_string(), "{field}");
    }
    assert!(app["webhook_secret"].is_string() || app["webhook_secret"].is_null());
    app
}

#[derive(Clone, Default)]
struct Fake {
    answer: Arc<Mutex<(u16, Value)>>,
    /// (method, path, had an Authorization header)
    calls: Arc<Mutex<Vec<(String, String, bool)>>>,
}

impl Fake {
    fn answer(&self, status: u16, body: Value) {
        *self.answer.lock().unwrap() = (status, body);
    }

    fn calls(&self) -> Vec<(String, String, bool)> {
        self.calls.lock().unwrap().clone()
    }
}

async fn conversions(
    State(fake): State<Fake>,
    uri: Uri,
    headers: HeaderMap,
) -> (StatusCode, axum::Json<Value>) {
    fake.calls.lock().unwrap().push((
        "POST".into(),
        uri.path().to_owned(),
        headers.contains_key("authorization"),
    ));
    let (status, body) = fake.answer.lock().unwrap().clone();
    (StatusCode::from_u16(status).unwrap(), axum::Json(body))
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

struct Setup {
    fake: Fake,
    flow: Arc<Flow>,
    url: String,
    http: reqwest::Client,
    config: PathBuf,
    /// The cookie `GET /?token=` set (`name=value`), sent by [`Setup::get`].
    cookie: Mutex<Option<String>>,
    _dir: tempfile::TempDir,
}

const EXISTING: &str =
    "listen = \"127.0.0.1:3999\"\nwebhook_secret = \"old-secret\"\n\n[inbox]\nmax_attempts = 3\n";

fn options(api_url: String, config_path: PathBuf, port: u16) -> FlowOptions {
    FlowOptions {
        name: "missions-test".into(),
        webhook_url: "https://missions.example/webhook".into(),
        redirect_url: "https://missions.example/redirect".into(),
        github_url: "https://github.com".into(),
        api_url,
        org: None,
        config_path,
        port,
    }
}

/// The fake GitHub and the flow's server; the config file holds `existing` if given.
async fn setup(config_rel: &str, existing: Option<&str>) -> Setup {
    missions::llm::http::install_crypto_provider();
    let fake = Fake::default();
    let api = serve(
        Router::new()
            .route("/app-manifests/{code}/conversions", post(conversions))
            .with_state(fake.clone()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join(config_rel);
    if let Some(text) = existing {
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(&config, text).unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let flow = Flow::new(options(api, config.clone(), local.port())).unwrap();
    let router = flow.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Setup {
        fake,
        flow,
        url: format!("http://{local}"),
        http,
        config,
        cookie: Mutex::new(None),
        _dir: dir,
    }
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Setup {
    /// `GET path` with the cookie, if the flow was started.
    async fn get(&self, path: &str) -> (u16, String) {
        let cookie = self.cookie.lock().unwrap().clone();
        let a = self.request(path, cookie.as_deref(), None).await;
        (a.status, a.body)
    }

    async fn request(&self, path: &str, cookie: Option<&str>, host: Option<&str>) -> Answer {
        let mut request = self.http.get(format!("{}{path}", self.url));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(host) = host {
            request = request.header("host", host);
        }
        let r = request.send().await.unwrap();
        Answer {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }

    /// `/?token=…` from the URL the command prints.
    fn start_path(&self) -> String {
        let url = self.flow.start_url();
        let token = url
            .strip_prefix("https://missions.example/?token=")
            .unwrap_or_else(|| panic!("the one-time URL {url}"));
        assert!(token.len() >= 32, "{url}");
        format!("/?token={token}")
    }

    /// Opens the one-time URL: the cookie it sets (kept for [`Setup::get`]).
    async fn start(&self) -> String {
        let a = self.request(&self.start_path(), None, None).await;
        assert_eq!(a.status, 303, "{}", a.body);
        assert_eq!(a.headers["location"], "./");
        let set = a.headers["set-cookie"].to_str().unwrap().to_owned();
        let attributes: Vec<&str> = set.split(';').map(str::trim).collect();
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure"] {
            assert!(attributes.contains(&attribute), "{set}");
        }
        let cookie = attributes[0].to_owned();
        assert!(
            cookie.starts_with(&format!("{}=", manifest::COOKIE_NAME)),
            "{set}"
        );
        *self.cookie.lock().unwrap() = Some(cookie.clone());
        cookie
    }

    /// Starts the flow; the page's `state`, and its manifest (checked to be the table's).
    async fn state(&self) -> String {
        self.start().await;
        let (status, page) = self.get("/").await;
        assert_eq!(status, 200, "{page}");
        let action_start = page.find("action=\"").unwrap() + "action=\"".len();
        let action = &page[action_start..action_start + page[action_start..].find('"').unwrap()];
        let state = action
            .strip_prefix("https://github.com/settings/apps/new?state=")
            .unwrap_or_else(|| panic!("form action {action}"));
        let value_start =
            page.find("name=\"manifest\" value=\"").unwrap() + "name=\"manifest\" value=\"".len();
        let value = &page[value_start..value_start + page[value_start..].find('"').unwrap()];
        let json: Value = serde_json::from_str(&unescape(value)).unwrap();
        assert_eq!(json, self.flow.options().manifest());
        assert_eq!(
            json["hook_attributes"]["url"],
            "https://missions.example/webhook"
        );
        assert_eq!(json["redirect_url"], "https://missions.example/redirect");
        assert!(state.len() >= 32, "{state}");
        state.to_owned()
    }

    fn files(&self) -> BTreeSet<PathBuf> {
        let dir = self.config.parent().unwrap();
        match std::fs::read_dir(dir) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => BTreeSet::new(),
        }
    }
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_redirect_writes_the_app_identity_into_the_config() {
    let s = setup("config/missions.toml", Some(EXISTING)).await;
    let state = s.state().await;
    s.fake.answer(201, conversion_answer(Some(WEBHOOK_SECRET)));

    let (status, page) = s
        .get(&format!("/redirect?code=a1b2c3d4e5f6&state={state}"))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        s.fake.calls(),
        [(
            "POST".to_owned(),
            "/app-manifests/a1b2c3d4e5f6/conversions".to_owned(),
            false
        )]
    );
    // The page: where the App is and how to install it, never a credential.
    assert!(
        page.contains("https://github.com/apps/missions-test"),
        "{page}"
    );
    assert!(
        page.contains("https://github.com/apps/missions-test/installations/new"),
        "{page}"
    );
    assert!(page.contains("missions serve"), "{page}");
    let pem = app_pem();
    let key_body = pem.lines().nth(1).unwrap();
    for secret in [WEBHOOK_SECRET, CLIENT_SECRET, key_body, "PRIVATE KEY-----"] {
        assert!(!page.contains(secret), "the page shows {secret}");
    }

    // The config: the App's identity, the other keys kept.
    let text = std::fs::read_to_string(&s.config).unwrap();
    let table: toml::Table = text.parse().unwrap();
    assert_eq!(table["listen"].as_str(), Some("127.0.0.1:3999"));
    assert_eq!(table["inbox"]["max_attempts"].as_integer(), Some(3));
    assert_eq!(table["app_id"].as_integer(), Some(APP_ID as i64));
    assert_eq!(table["webhook_secret"].as_str(), Some(WEBHOOK_SECRET));
    // Not api.github.com, so the server is told where the API is.
    assert_eq!(
        table["github_api_url"].as_str(),
        Some(s.flow.options().api_url.as_str()),
        "{text}"
    );
    let key_path = PathBuf::from(table["private_key_path"].as_str().unwrap());
    assert!(key_path.is_absolute(), "{}", key_path.display());
    assert_eq!(
        key_path.parent().unwrap(),
        std::fs::canonicalize(s.config.parent().unwrap()).unwrap()
    );
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), pem);
    #[cfg(unix)]
    {
        assert_eq!(mode(&key_path), 0o600);
        assert_eq!(mode(&s.config), 0o600);
    }
    // Only the two files: no temporary left behind.
    assert_eq!(
        s.files(),
        BTreeSet::from([s.config.clone(), key_path.clone()])
    );

    // The server loads it, with the fake's App as its identity.
    let config = missions::config::Config::load_with_env(Some(&s.config), &HashMap::new()).unwrap();
    let app = config.app.expect("an App identity");
    assert_eq!(app.app_id, APP_ID);
    {
        use secrecy::ExposeSecret;
        assert_eq!(app.private_key_pem.expose_secret(), pem);
        assert_eq!(config.webhook_secrets[0].expose_secret(), WEBHOOK_SECRET);
    }
    assert_eq!(config.listen.to_string(), "127.0.0.1:3999");

    let written = s.flow.finished().borrow().clone().expect("finished");
    assert_eq!(written.app_id, APP_ID);
    assert_eq!(written.key_path, key_path);
    assert!(!written.generated_secret);

    // Once only: a second redirect writes nothing and asks GitHub nothing.
    let before = std::fs::read(&s.config).unwrap();
    let (status, _) = s.get(&format!("/redirect?code=ffff&state={state}")).await;
    assert_eq!(status, 409);
    assert_eq!(s.fake.calls().len(), 1);
    assert_eq!(std::fs::read(&s.config).unwrap(), before);
}

#[tokio::test]
async fn a_missing_config_directory_is_made_private() {
    let s = setup("fresh/config/missions.toml", None).await;
    // At startup, before GitHub is involved.
    assert!(s.config.parent().unwrap().is_dir());
    #[cfg(unix)]
    assert_eq!(mode(s.config.parent().unwrap()), 0o700);
    assert!(s.files().is_empty(), "{:?}", s.files());
    let state = s.state().await;
    s.fake.answer(201, conversion_answer(Some(WEBHOOK_SECRET)));
    let (status, page) = s.get(&format!("/redirect?code=c0de&state={state}")).await;
    assert_eq!(status, 200, "{page}");
    #[cfg(unix)]
    {
        assert_eq!(mode(s.config.parent().unwrap()), 0o700);
        assert_eq!(mode(&s.config), 0o600);
    }
    let config = missions::config::Config::load_with_env(Some(&s.config), &HashMap::new()).unwrap();
    assert_eq!(config.app.unwrap().app_id, APP_ID);
}

#[tokio::test]
async fn a_redirect_with_another_state_is_refused_and_writes_nothing() {
    let s = setup("config/missions.toml", Some(EXISTING)).await;
    let state = s.state().await;
    s.fake.answer(201, conversion_answer(Some(WEBHOOK_SECRET)));
    let wrong = format!("{}0", &state[..state.len() - 1]);
    let wrong = if wrong == state {
        format!("{}1", &state[..state.len() - 1])
    } else {
        wrong
    };
    for query in [
        format!("code=abc&state={wrong}"),
        "code=abc".to_owned(),
        "code=abc&state=".to_owned(),
    ] {
        let (status, page) = s.get(&format!("/redirect?{query}")).await;
        assert_eq!(status, 403, "{query}: {page}");
        assert!(page.contains("Nothing was written"), "{page}");
    }
    // A code that is not GitHub's shape never reaches a URL.
    let (status, _) = s
        .get(&format!("/redirect?code=..%2F..%2Fapp&state={state}"))
        .await;
    assert_eq!(status, 400);
    assert!(s.fake.calls().is_empty(), "GitHub was asked");
    assert_eq!(std::fs::read_to_string(&s.config).unwrap(), EXISTING);
    assert_eq!(s.files(), BTreeSet::from([s.config.clone()]));
    assert!(s.flow.finished().borrow().is_none());
}

#[tokio::test]
async fn github_refusing_the_code_shows_an_error_and_writes_nothing() {
    let s = setup("config/missions.toml", Some(EXISTING)).await;
    let state = s.state().await;
    for (status, message) in [(404, "Not Found"), (422, "Validation Failed")] {
        s.fake.answer(
            status,
            json!({
                "message": message,
                "documentation_url": "https://docs.github.com/rest/apps/apps#create-a-github-app-from-a-manifest"
            }),
        );
        let (answered, page) = s.get(&format!("/redirect?code=abc123&state={state}")).await;
        assert_eq!(answered, 502, "{page}");
        assert!(page.contains(&format!("HTTP {status}")), "{page}");
        assert!(page.contains(message), "{page}");
        assert!(page.contains("Nothing was written"), "{page}");
        assert_eq!(std::fs::read_to_string(&s.config).unwrap(), EXISTING);
        assert_eq!(s.files(), BTreeSet::from([s.config.clone()]));
    }
    // A 201 whose key is not a key is refused too.
    let mut bad = conversion_answer(Some(WEBHOOK_SECRET));
    bad["pem"] = json!("not a key");
    s.fake.answer(201, bad);
    let (answered, page) = s.get(&format!("/redirect?code=abc123&state={state}")).await;
    assert_eq!(answered, 502, "{page}");
    assert!(!page.contains(WEBHOOK_SECRET));
    assert_eq!(std::fs::read_to_string(&s.config).unwrap(), EXISTING);
    assert_eq!(s.files(), BTreeSet::from([s.config.clone()]));
    assert!(s.flow.finished().borrow().is_none());
    assert_eq!(s.fake.calls().len(), 3);
}

const BROKEN: &str = "listen = \"127.0.0.1:1\"\nwebhook_secret = \"s3cr3t-in-a-broken-file\n";

#[tokio::test]
async fn startup_refuses_a_config_it_could_not_write_into() {
    let dir = tempfile::tempdir().unwrap();
    // Unparsable TOML: refused before anything is served, without quoting it.
    let config = dir.path().join("config/missions.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, BROKEN).unwrap();
    let err = format!(
        "{:#}",
        Flow::new(options("https://api.github.com".into(), config.clone(), 1))
            .err()
            .expect("a broken config is refused")
    );
    assert!(err.contains("not valid TOML"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert!(!err.contains("s3cr3t-in-a-broken-file"), "{err}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), BROKEN);
    assert_eq!(
        std::fs::read_dir(config.parent().unwrap()).unwrap().count(),
        1
    );

    // A directory that cannot be made (a file is in the way).
    std::fs::write(dir.path().join("file"), "").unwrap();
    let err = format!(
        "{:#}",
        Flow::new(options(
            "https://api.github.com".into(),
            dir.path().join("file/missions.toml"),
            1
        ))
        .err()
        .expect("an unwritable place is refused")
    );
    assert!(err.contains("file/missions.toml"), "{err}");

    // A config that is not a file.
    let err = format!(
        "{:#}",
        Flow::new(options(
            "https://api.github.com".into(),
            config.parent().unwrap().to_owned(),
            1
        ))
        .err()
        .expect("a directory is refused")
    );
    assert!(err.contains("cannot read"), "{err}");
}

#[tokio::test]
async fn a_config_broken_after_startup_shows_an_error_and_leaves_no_key() {
    let s = setup("config/missions.toml", Some(EXISTING)).await;
    let state = s.state().await;
    let broken = BROKEN;
    std::fs::write(&s.config, broken).unwrap();
    s.fake.answer(201, conversion_answer(Some(WEBHOOK_SECRET)));
    let (status, page) = s.get(&format!("/redirect?code=abc&state={state}")).await;
    assert_eq!(status, 500, "{page}");
    assert!(page.contains("not valid TOML"), "{page}");
    assert!(!page.contains("s3cr3t-in-a-broken-file"), "{page}");
    assert!(!page.contains(WEBHOOK_SECRET), "{page}");
    assert_eq!(std::fs::read_to_string(&s.config).unwrap(), broken);
    assert_eq!(s.files(), BTreeSet::from([s.config.clone()]));
}

#[tokio::test]
async fn a_missing_webhook_secret_is_generated_and_flagged() {
    let s = setup("config/missions.toml", None).await;
    let state = s.state().await;
    s.fake.answer(201, conversion_answer(None));
    let (status, page) = s.get(&format!("/redirect?code=abc&state={state}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("returned no webhook secret"), "{page}");
    let table: toml::Table = std::fs::read_to_string(&s.config).unwrap().parse().unwrap();
    let secret = table["webhook_secret"].as_str().unwrap();
    assert_eq!(secret.len(), 64);
    assert!(!page.contains(secret));
    assert!(
        s.flow
            .finished()
            .borrow()
            .as_ref()
            .unwrap()
            .generated_secret
    );
}

#[tokio::test]
async fn the_start_page_needs_the_one_time_token() {
    let s = setup("config/missions.toml", Some(EXISTING)).await;
    let no_state =
        |page: &str| !page.contains("settings/apps/new") && !page.contains("name=\"manifest\"");
    // No token, a wrong one, an empty one: no page, no state, no cookie.
    let start = s.start_path();
    let wrong = format!("{}0", &start[..start.len() - 1]);
    let wrong = if wrong == start {
        format!("{}1", &start[..start.len() - 1])
    } else {
        wrong
    };
    for path in ["/", "/?token=", wrong.as_str(), "/?state=x"] {
        let a = s.request(path, None, None).await;
        assert_eq!(a.status, 403, "{path}: {}", a.body);
        assert!(no_state(&a.body), "{path}: {}", a.body);
        assert!(!a.headers.contains_key("set-cookie"), "{path}");
    }
    // A made-up cookie is no cookie.
    let forged = format!("{}={}", manifest::COOKIE_NAME, "0".repeat(64));
    let a = s.request("/", Some(&forged), None).await;
    assert_eq!(a.status, 403);
    assert!(no_state(&a.body));

    // The token works once: the browser that opened it gets the page (again and again).
    let cookie = s.start().await;
    let again = s.request(&start, None, None).await;
    assert_eq!(again.status, 403, "{}", again.body);
    assert!(again.body.contains("already opened"), "{}", again.body);
    assert!(!again.headers.contains_key("set-cookie"));
    for _ in 0..2 {
        let a = s.request("/", Some(&cookie), None).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.body.contains("settings/apps/new?state="));
        assert_eq!(a.headers["cache-control"], "no-store");
    }
    // Among other cookies too.
    let a = s
        .request("/", Some(&format!("a=b; {cookie}; c=d")), None)
        .await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn a_redirect_without_the_browser_cookie_is_refused_and_writes_nothing() {
    let s = setup("config/missions.toml", Some(EXISTING)).await;
    let state = s.state().await;
    let cookie = s.cookie.lock().unwrap().clone().unwrap();
    s.fake.answer(201, conversion_answer(Some(WEBHOOK_SECRET)));
    let path = format!("/redirect?code=a1b2c3&state={state}");
    // The right state from another browser (e.g. an attacker's own App's code).
    let forged = format!("{}={}", manifest::COOKIE_NAME, "0".repeat(64));
    for cookie in [None, Some(forged.as_str()), Some("missions_app_manifest=")] {
        let a = s.request(&path, cookie, None).await;
        assert_eq!(a.status, 403, "{cookie:?}: {}", a.body);
        assert!(a.body.contains("Nothing was written"), "{}", a.body);
        assert!(a.body.contains("did not start"), "{}", a.body);
    }
    assert!(s.fake.calls().is_empty(), "GitHub was asked");
    assert_eq!(std::fs::read_to_string(&s.config).unwrap(), EXISTING);
    assert_eq!(s.files(), BTreeSet::from([s.config.clone()]));
    assert!(s.flow.finished().borrow().is_none());

    // The browser that started it finishes it.
    let a = s.request(&path, Some(&cookie), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(s.fake.calls().len(), 1);
    let table: toml::Table = std::fs::read_to_string(&s.config).unwrap().parse().unwrap();
    assert_eq!(table["app_id"].as_integer(), Some(APP_ID as i64));
}

#[tokio::test]
async fn requests_naming_another_host_are_refused() {
    let s = setup("config/missions.toml", Some(EXISTING)).await;
    let port = s.flow.options().port;
    let start = s.start_path();
    for host in [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        "missions.example:8443".to_owned(),
        format!("user@127.0.0.1:{port}"),
    ] {
        for path in ["/", start.as_str(), "/redirect?code=abc&state=x"] {
            let a = s.request(path, None, Some(&host)).await;
            assert_eq!(a.status, 421, "{host} {path}: {}", a.body);
            assert!(!a.headers.contains_key("set-cookie"), "{host} {path}");
        }
    }
    // The token was not spent by the refused requests; the public host and
    // localhost are this server.
    for host in [
        "missions.example".to_owned(),
        "missions.example:443".to_owned(),
        format!("localhost:{port}"),
    ] {
        let a = s.request("/", None, Some(&host)).await;
        assert_eq!(a.status, 403, "{host}: {}", a.body);
    }
    let a = s.request(&start, None, Some("missions.example")).await;
    assert_eq!(a.status, 303, "{}", a.body);
    assert!(s.fake.calls().is_empty());
    assert_eq!(std::fs::read_to_string(&s.config).unwrap(), EXISTING);
}

#[tokio::test]
async fn registering_again_replaces_the_previous_app_entirely() {
    let previous = "webhook_secret = \"old-secret\"\nprevious_webhook_secrets = [\"older-secret\"]\n\
                    github_api_url = \"https://ghe.example/api/v3\"\napp_id = 7\n\
                    private_key_path = \"/somewhere/app-7.private-key.pem\"\n";
    let s = setup("config/missions.toml", Some(previous)).await;
    let state = s.state().await;
    s.fake.answer(201, conversion_answer(Some(WEBHOOK_SECRET)));
    let (status, page) = s.get(&format!("/redirect?code=abc&state={state}")).await;
    assert_eq!(status, 200, "{page}");
    let table: toml::Table = std::fs::read_to_string(&s.config).unwrap().parse().unwrap();
    assert!(!table.contains_key("previous_webhook_secrets"));
    assert_eq!(
        table["github_api_url"].as_str(),
        Some(s.flow.options().api_url.as_str())
    );
    let written = s.flow.finished().borrow().clone().unwrap();
    let removed = written.removed.join("\n");
    assert!(removed.contains("previous_webhook_secrets"), "{removed}");
    assert!(removed.contains("https://ghe.example/api/v3"), "{removed}");
    assert!(
        removed.contains("/somewhere/app-7.private-key.pem"),
        "{removed}"
    );
    assert!(page.contains("previous_webhook_secrets"), "{page}");
    for secret in ["old-secret", "older-secret", WEBHOOK_SECRET] {
        assert!(
            !page.contains(secret) && !removed.contains(secret),
            "{secret}"
        );
    }
    // The server accepts only the new App's secret.
    let config = missions::config::Config::load_with_env(Some(&s.config), &HashMap::new()).unwrap();
    assert_eq!(config.webhook_secrets.len(), 1);
    assert_eq!(config.app.unwrap().app_id, APP_ID);
}
