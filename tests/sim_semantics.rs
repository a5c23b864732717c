//! What the GitHub simulator does that a GitHub App relies on, observed the way
//! a user or the App would observe it: webhook faults, job outcomes, the job's
//! environment and token, git permissions, pull requests and REST permissions.
//! Each test runs the App and the simulator in-process (see `common::scenario`)
//! and waits on the simulator's change feed, never on a bare sleep.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use base64::Engine as _;
use common::scenario::{Answer, DEADLINE, Scenario, ScenarioOptions};
use missions::github::client::Method;
use missions::sim::state::TokenSubject;
use missions::sim::{DeliveryRecord, FaultConfig, RepoSpec, sample};
use serde_json::{Value, json};

// ---- helpers ----------------------------------------------------------------

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn workflow(script: &str) -> Vec<(String, Vec<String>)> {
    vec![(sample::WORKFLOW_FILE.to_owned(), sh(script))]
}

async fn start(faults: FaultConfig, workflows: Vec<(String, Vec<String>)>) -> Scenario {
    Scenario::start(ScenarioOptions {
        faults,
        workflows,
        ..ScenarioOptions::default()
    })
    .await
}

/// A REST call with an arbitrary token (an installation's, a job's).
async fn call_as_token(
    t: &Scenario,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut request = t
        .http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", t.sim.url()),
        )
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/vnd.github+json");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// The App dispatches `workflow` on main with `inputs`, through its own client;
/// returns the run id (`return_run_details`).
async fn dispatch(t: &Scenario, workflow: &str, inputs: Value) -> u64 {
    let client = t
        .github
        .installation(t.world.installation_id)
        .await
        .unwrap();
    let answer = client
        .request_json(
            Method::POST,
            &format!(
                "/repos/{}/actions/workflows/{workflow}/dispatches",
                t.world.repo
            ),
            Some(&json!({"ref": "main", "inputs": inputs, "return_run_details": true})),
        )
        .await
        .unwrap();
    answer["workflow_run_id"].as_u64().expect("a run id")
}

async fn run_completed(t: &Scenario, run_id: u64) -> DeliveryRecord {
    t.expect_delivered("workflow_run", Some("completed"), |p| {
        p["workflow_run"]["id"] == run_id
    })
    .await
}

async fn job_completed(t: &Scenario, run_id: u64) -> DeliveryRecord {
    t.expect_delivered("workflow_job", Some("completed"), |p| {
        p["workflow_job"]["run_id"] == run_id
    })
    .await
}

fn step_conclusions(job: &Value) -> Vec<(String, String)> {
    job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["conclusion"].as_str().unwrap_or("null").to_owned(),
            )
        })
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

async fn inbox_count(t: &Scenario, sql: &'static str, bind: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(bind)
        .fetch_one(t.store.pool())
        .await
        .unwrap()
}

async fn main_sha(t: &Scenario) -> String {
    t.sim
        .git()
        .resolve_ref(&t.world.repo, "refs/heads/main")
        .await
        .unwrap()
        .unwrap()
}

/// The text between the line `start` and the line `end` in a job log.
fn section<'a>(log: &'a str, start: &str, end: &str) -> &'a str {
    let from = log
        .find(&format!("{start}\n"))
        .unwrap_or_else(|| panic!("{start:?} not in log:\n{log}"))
        + start.len()
        + 1;
    let to = from
        + log[from..]
            .find(&format!("{end}\n"))
            .unwrap_or_else(|| panic!("{end:?} not in log:\n{log}"));
    &log[from..to]
}

/// alice branches `branch` off main, commits `path` there through the contents
/// API and opens a pull request into main; the PR number and the commit answer
/// (whose head the PR shows).
async fn alice_opens_pull(t: &Scenario, branch: &str, path: &str, content: &str) -> (u64, Value) {
    let repo_path = format!("/repos/{}", t.world.repo);
    let sha = main_sha(t).await;
    let created = t
        .call(
            "alice",
            "POST",
            &format!("{repo_path}/git/refs"),
            Some(json!({"ref": format!("refs/heads/{branch}"), "sha": sha})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let put = t
        .call(
            "alice",
            "PUT",
            &format!("{repo_path}/contents/{path}"),
            Some(json!({
                "message": format!("Add {path}"),
                "content": base64::engine::general_purpose::STANDARD.encode(content),
                "branch": branch,
            })),
        )
        .await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    let pr = t
        .call(
            "alice",
            "POST",
            &format!("{repo_path}/pulls"),
            Some(json!({"title": path, "head": branch, "base": "main"})),
        )
        .await;
    assert_eq!(pr.status, 201, "{:?}", pr.body);
    assert_eq!(pr.body["head"]["sha"], put.body["commit"]["sha"]);
    (pr.body["number"].as_u64().unwrap(), put.body)
}

fn basic_auth(token: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    format!("http.extraHeader=Authorization: basic {b64}")
}

/// git as a user on this machine, with nothing from the developer's own config.
struct Git {
    home: tempfile::TempDir,
    url: String,
}

struct GitOutput {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Git {
    fn new(t: &Scenario) -> Self {
        Git {
            home: tempfile::tempdir().unwrap(),
            url: format!("{}/{}.git", t.sim.url(), t.world.repo),
        }
    }

    fn work(&self, name: &str) -> std::path::PathBuf {
        self.home.path().join(name)
    }

    async fn run(&self, cwd: &Path, token: Option<&str>, args: &[&str]) -> GitOutput {
        let mut cmd = tokio::process::Command::new("git");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .args([
                "-c",
                "user.name=Test User",
                "-c",
                "user.email=test@example.com",
            ])
            .args(["-c", "init.defaultBranch=main", "-c", "credential.helper="]);
        if let Some(token) = token {
            cmd.args(["-c", &basic_auth(token)]);
        }
        let out = cmd
            .args(args)
            .current_dir(cwd)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("git runs");
        GitOutput {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs git and fails the test if it fails; returns stdout.
    async fn ok(&self, cwd: &Path, token: Option<&str>, args: &[&str]) -> String {
        let out = self.run(cwd, token, args).await;
        assert!(out.ok, "git {args:?} failed:\n{}", out.stderr);
        out.stdout
    }

    /// Clones the sample repository into `name` as the owner of `token`.
    async fn clone(&self, token: &str, name: &str) -> std::path::PathBuf {
        let url = self.url.clone();
        let dir = self.work(name);
        self.ok(
            self.home.path(),
            Some(token),
            &["clone", "-q", &url, dir.to_str().unwrap()],
        )
        .await;
        dir
    }

    /// Writes `path` in `dir`, commits it, returns the new sha.
    async fn commit_file(&self, dir: &Path, path: &str, text: &str, message: &str) -> String {
        std::fs::write(dir.join(path), text).unwrap();
        self.ok(dir, None, &["add", path]).await;
        self.ok(dir, None, &["commit", "-q", "-m", message]).await;
        self.ok(dir, None, &["rev-parse", "HEAD"]).await
    }
}

// ---- 1. webhook faults --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_deliveries_are_recorded_and_never_reach_the_app() {
    let t = start(
        FaultConfig {
            webhook_drop_rate: 1.0,
            ..FaultConfig::default()
        },
        Vec::new(),
    )
    .await;
    let issue = t.open_issue("alice", "Lost in transit", "").await;
    let dropped = t
        .sim
        .wait_for("the issues.opened delivery record", DEADLINE, |s| {
            s.deliveries().into_iter().find(|d| {
                d.event == "issues"
                    && d.action.as_deref() == Some("opened")
                    && d.payload["issue"]["number"] == issue
            })
        })
        .await
        .unwrap();
    assert_eq!(dropped.error.as_deref(), Some("dropped by fault injection"));
    assert_eq!((dropped.status, dropped.sent), (None, 0));
    // Every delivery so far (installation.created included) was dropped, and
    // deliveries are sent one at a time in order, so none can still arrive.
    let all = t.sim.deliveries();
    assert!(all.len() >= 2, "{all:?}");
    assert!(all.iter().all(|d| d.sent == 0 && d.status.is_none()));
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox")
        .fetch_one(t.store.pool())
        .await
        .unwrap();
    assert_eq!(stored, 0);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_delivery_is_sent_twice_with_one_id_and_stored_once() {
    let t = start(
        FaultConfig {
            webhook_duplicate_rate: 1.0,
            ..FaultConfig::default()
        },
        Vec::new(),
    )
    .await;
    let issue = t.open_issue("alice", "Said twice", "").await;
    let opened = t
        .expect_delivered("issues", Some("opened"), |p| p["issue"]["number"] == issue)
        .await;
    assert_eq!(opened.sent, 2, "{opened:?}");
    // The App answered 202 (stored) and then 200 (already stored); the record
    // keeps the last answer.
    assert_eq!(opened.status, Some(200));
    t.expect_processed(&opened.id).await;
    assert_eq!(
        inbox_count(
            &t,
            "SELECT COUNT(*) FROM inbox WHERE delivery_id = $1",
            &opened.id
        )
        .await,
        1
    );
    // Every delivery was posted twice, and each is in the inbox exactly once.
    let deliveries = t.sim.deliveries();
    assert!(deliveries.iter().all(|d| d.sent == 2));
    let ids: BTreeSet<String> = deliveries.iter().map(|d| d.id.clone()).collect();
    let stored: Vec<String> = sqlx::query_scalar("SELECT delivery_id FROM inbox")
        .fetch_all(t.store.pool())
        .await
        .unwrap();
    assert_eq!(stored.len(), ids.len(), "{stored:?}");
    assert_eq!(stored.into_iter().collect::<BTreeSet<_>>(), ids);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_deliveries_all_arrive() {
    let t = start(
        FaultConfig {
            webhook_reorder_window: 4,
            seed: 11,
            ..FaultConfig::default()
        },
        Vec::new(),
    )
    .await;
    let issue = t.open_issue("alice", "Many labels", "").await;
    // Once this is out of the queue, the labels below fill windows on their own,
    // so the seeded shuffle is the same every run.
    t.expect_delivered("issues", Some("opened"), |p| p["issue"]["number"] == issue)
        .await;
    let labels = ["l1", "l2", "l3", "l4", "l5", "l6"];
    // One call: six `labeled` events queued back to back, in this order.
    let answer = t
        .act(
            "alice",
            "POST",
            &format!("/repos/{}/issues/{issue}/labels", t.world.repo),
            Some(json!({ "labels": labels })),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let labeled = t
        .sim
        .wait_for("six labeled deliveries accepted", DEADLINE, |s| {
            let got: Vec<DeliveryRecord> = s
                .deliveries()
                .into_iter()
                .filter(|d| d.action.as_deref() == Some("labeled"))
                .collect();
            (got.len() == labels.len() && got.iter().all(|d| d.status == Some(202))).then_some(got)
        })
        .await
        .unwrap();
    let arrived: Vec<&str> = labeled
        .iter()
        .map(|d| d.payload["label"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        arrived.iter().copied().collect::<BTreeSet<_>>(),
        labels.into_iter().collect(),
    );
    // With this seed the first window really is shuffled (so this test is not
    // passing merely because nothing was reordered).
    assert_ne!(arrived, labels, "not reordered");
    // The App stored each one, in the order they reached it.
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT delivery_id FROM inbox WHERE action = 'labeled' ORDER BY seq")
            .fetch_all(t.store.pool())
            .await
            .unwrap();
    let sent: Vec<String> = labeled.iter().map(|d| d.id.clone()).collect();
    assert_eq!(stored, sent);
    t.stop().await;
}

// ---- 2. job outcomes ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_and_an_unconfigured_workflow_fail_the_run() {
    let t = start(
        FaultConfig::default(),
        workflow("echo about to fail; exit 3"),
    )
    .await;
    let run_id = dispatch(&t, sample::WORKFLOW_FILE, json!({"role": "worker"})).await;
    let run = run_completed(&t, run_id).await;
    assert_eq!(run.payload["workflow_run"]["conclusion"], "failure");
    assert_eq!(run.payload["workflow_run"]["status"], "completed");
    let job = job_completed(&t, run_id).await;
    assert_eq!(job.payload["workflow_job"]["conclusion"], "failure");
    let expected = pairs(&[
        ("Set up job", "success"),
        ("Checkout", "success"),
        ("Run", "failure"),
        ("Complete job", "success"),
    ]);
    assert_eq!(step_conclusions(&job.payload["workflow_job"]), expected);
    // The jobs API says the same.
    let jobs = t
        .call(
            "alice",
            "GET",
            &format!("/repos/{}/actions/runs/{run_id}/jobs", t.world.repo),
            None,
        )
        .await;
    assert_eq!(jobs.status, 200);
    assert_eq!(step_conclusions(&jobs.body["jobs"][0]), expected);
    let log = t.sim.run_log(&t.world.repo, run_id).unwrap();
    assert!(log.contains("about to fail\n"), "{log}");
    assert!(
        log.contains("##[error]Process completed with exit code 3."),
        "{log}"
    );

    // A second workflow file the simulator has no command for: the run fails and
    // its log says why.
    let yaml = "name: other\non:\n  workflow_dispatch:\njobs: {}\n";
    let put = t
        .call(
            "alice",
            "PUT",
            &format!(
                "/repos/{}/contents/.github/workflows/unconfigured.yml",
                t.world.repo
            ),
            Some(json!({
                "message": "Add a workflow",
                "content": base64::engine::general_purpose::STANDARD.encode(yaml),
            })),
        )
        .await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    let run_id = dispatch(&t, "unconfigured.yml", json!({})).await;
    let run = run_completed(&t, run_id).await;
    assert_eq!(run.payload["workflow_run"]["conclusion"], "failure");
    assert_eq!(
        run.payload["workflow"]["path"],
        ".github/workflows/unconfigured.yml"
    );
    let log = t.sim.run_log(&t.world.repo, run_id).unwrap();
    assert!(
        log.contains("no command configured for .github/workflows/unconfigured.yml"),
        "{log}"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_runner_fails_the_job_without_running_it() {
    let t = start(
        FaultConfig {
            job_failure_rate: 1.0,
            ..FaultConfig::default()
        },
        workflow("echo the command ran"),
    )
    .await;
    let run_id = dispatch(&t, sample::WORKFLOW_FILE, json!({})).await;
    let run = run_completed(&t, run_id).await;
    assert_eq!(run.payload["workflow_run"]["conclusion"], "failure");
    let job = job_completed(&t, run_id).await;
    assert_eq!(job.payload["workflow_job"]["conclusion"], "failure");
    let steps: Vec<String> = step_conclusions(&job.payload["workflow_job"])
        .into_iter()
        .map(|(name, conclusion)| format!("{name}: {conclusion}"))
        .collect();
    assert_eq!(
        steps,
        [
            "Set up job: failure",
            "Checkout: skipped",
            "Run: skipped",
            "Complete job: skipped"
        ]
    );
    let log = t.sim.run_log(&t.world.repo, run_id).unwrap();
    assert!(log.contains("simulated runner failure"), "{log}");
    assert!(!log.contains("the command ran"), "{log}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_hits_its_timeout_is_timed_out() {
    let t = start(
        FaultConfig {
            job_timeout_rate: 1.0,
            ..FaultConfig::default()
        },
        workflow("echo the command ran"),
    )
    .await;
    let run_id = dispatch(&t, sample::WORKFLOW_FILE, json!({})).await;
    let run = run_completed(&t, run_id).await;
    assert_eq!(run.payload["workflow_run"]["conclusion"], "timed_out");
    let job = job_completed(&t, run_id).await;
    assert_eq!(job.payload["workflow_job"]["conclusion"], "timed_out");
    // The step that was due when time ran out and the ones after it did not succeed.
    let steps = step_conclusions(&job.payload["workflow_job"]);
    assert_eq!(steps.len(), 4, "{steps:?}");
    assert_ne!(steps[2].1, "success", "{steps:?}");
    let log = t.sim.run_log(&t.world.repo, run_id).unwrap();
    assert!(!log.contains("the command ran"), "{log}");
    assert!(log.contains("exceeded the maximum execution time"), "{log}");
    t.stop().await;
}

// ---- 3. the job environment ---------------------------------------------------

const ENV_SCRIPT: &str = r#"set -eu
echo '--- env ---'
env | grep -E '^(GITHUB_|RUNNER_TEMP|CI=)' | sort
echo '--- event ---'
cat "$GITHUB_EVENT_PATH"
echo
echo '--- end ---'
test -d "$RUNNER_TEMP" && test -f "$GITHUB_OUTPUT" && test "$(pwd)" = "$GITHUB_WORKSPACE"
test "$(git rev-parse HEAD)" = "$GITHUB_SHA"
echo "role=$1"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_sees_githubs_environment_and_its_event() {
    let mut command = sh(ENV_SCRIPT);
    command.extend(["job".into(), "${{ inputs.role }}".into()]);
    let t = start(
        FaultConfig::default(),
        vec![(sample::WORKFLOW_FILE.to_owned(), command)],
    )
    .await;
    let sha = main_sha(&t).await;
    let inputs = json!({"role": "worker", "mission": "7", "feature": "it's \"quoted\"; $(true)"});
    let run_id = dispatch(&t, sample::WORKFLOW_FILE, inputs.clone()).await;
    let run = run_completed(&t, run_id).await;
    let log = t.sim.run_log(&t.world.repo, run_id).unwrap();
    assert_eq!(
        run.payload["workflow_run"]["conclusion"], "success",
        "{log}"
    );
    assert_eq!(run.payload["workflow_run"]["head_sha"], sha.as_str());
    assert_eq!(run.payload["workflow_run"]["event"], "workflow_dispatch");
    assert!(log.contains("role=worker\n"), "{log}");

    let env: BTreeMap<&str, &str> = section(&log, "--- env ---", "--- event ---")
        .lines()
        .filter_map(|l| l.split_once('='))
        .collect();
    let url = t.sim.url();
    let run_id_text = run_id.to_string();
    for (name, value) in [
        ("CI", "true"),
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_REPOSITORY", sample::REPO),
        ("GITHUB_REPOSITORY_OWNER", sample::ORG),
        ("GITHUB_REF", "refs/heads/main"),
        ("GITHUB_REF_NAME", "main"),
        ("GITHUB_REF_TYPE", "branch"),
        ("GITHUB_SHA", sha.as_str()),
        ("GITHUB_RUN_ID", run_id_text.as_str()),
        ("GITHUB_RUN_NUMBER", "1"),
        ("GITHUB_RUN_ATTEMPT", "1"),
        ("GITHUB_EVENT_NAME", "workflow_dispatch"),
        ("GITHUB_API_URL", url),
        ("GITHUB_SERVER_URL", url),
        ("GITHUB_ACTOR", "missions[bot]"),
        // Masked in the log, as GitHub masks secrets.
        ("GITHUB_TOKEN", "***"),
    ] {
        assert_eq!(env.get(name).copied(), Some(value), "{name} in\n{log}");
    }
    for name in [
        "RUNNER_TEMP",
        "GITHUB_WORKSPACE",
        "GITHUB_EVENT_PATH",
        "GITHUB_OUTPUT",
    ] {
        assert!(env.get(name).is_some_and(|v| v.starts_with('/')), "{name}");
    }
    // No token of any kind leaks into the log.
    assert!(!log.contains("ghs_") && !log.contains("ghp_"), "{log}");

    let event: Value = serde_json::from_str(section(&log, "--- event ---", "--- end ---")).unwrap();
    assert_eq!(event["inputs"], inputs);
    assert_eq!(event["ref"], "refs/heads/main");
    assert_eq!(event["repository"]["full_name"], sample::REPO);
    assert_eq!(event["workflow"], ".github/workflows/missions.yml");
    assert_eq!(event["sender"]["login"], "missions[bot]");
    t.stop().await;
}

/// Which of a job's model keys and extra variables it got: `name=set|unset`.
const KEYS_SCRIPT: &str = r#"for v in ANTHROPIC_API_KEY OPENAI_API_KEY MISSIONS_SCRIPTED_RECORD_DIR; do
  if [ -n "$(printenv "$v")" ]; then echo "$GITHUB_JOB $v=set"; else echo "$GITHUB_JOB $v=unset"; fi
done
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_jobs_that_cannot_push_and_the_env_every_job() {
    let jobs = vec![
        missions::sim::SimJob {
            name: "agent".into(),
            command: sh(KEYS_SCRIPT),
            contents_write: false,
            always: false,
        },
        missions::sim::SimJob {
            name: "publish".into(),
            command: sh(KEYS_SCRIPT),
            contents_write: true,
            always: false,
        },
    ];
    let t = Scenario::start(ScenarioOptions {
        workflow_jobs: vec![(sample::WORKFLOW_FILE.to_owned(), jobs)],
        ..ScenarioOptions::default()
    })
    .await;
    let run_id = dispatch(&t, sample::WORKFLOW_FILE, json!({})).await;
    let run = run_completed(&t, run_id).await;
    let log = t.sim.run_log(&t.world.repo, run_id).unwrap();
    assert_eq!(
        run.payload["workflow_run"]["conclusion"], "success",
        "{log}"
    );
    for line in [
        "agent ANTHROPIC_API_KEY=set",
        "agent OPENAI_API_KEY=set",
        "agent MISSIONS_SCRIPTED_RECORD_DIR=set",
        // The job that pushes gets no model key, as in the mission workflow.
        "publish ANTHROPIC_API_KEY=unset",
        "publish OPENAI_API_KEY=unset",
        "publish MISSIONS_SCRIPTED_RECORD_DIR=set",
    ] {
        assert!(log.contains(line), "{line:?} not in\n{log}");
    }
    t.stop().await;

    // A one-command workflow is one job that runs and pushes: it gets them.
    let t = start(FaultConfig::default(), workflow(KEYS_SCRIPT)).await;
    let run_id = dispatch(&t, sample::WORKFLOW_FILE, json!({})).await;
    run_completed(&t, run_id).await;
    let log = t.sim.run_log(&t.world.repo, run_id).unwrap();
    assert!(log.contains("run ANTHROPIC_API_KEY=set"), "{log}");
    t.stop().await;
}

// ---- 4. tokens and git permissions ---------------------------------------------

/// Holds the job until the branch `release-job` exists, asking with its own token.
const HOLD_SCRIPT: &str = r#"set -eu
auth=$(printf 'x-access-token:%s' "$GITHUB_TOKEN" | base64 | tr -d '\n')
n=0
until git -c http.extraHeader="Authorization: basic $auth" ls-remote --exit-code origin refs/heads/release-job >/dev/null 2>&1; do
  n=$((n + 1))
  if [ "$n" -gt 600 ]; then echo "never released"; exit 9; fi
  sleep 0.05
done
echo released
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_token_works_for_its_repository_only_while_the_run_lasts() {
    let t = start(FaultConfig::default(), workflow(HOLD_SCRIPT)).await;
    // Private: GitHub lets any token read a public repository's metadata, and
    // the simulator does not model that for installation and job tokens.
    t.sim
        .create_repo(RepoSpec {
            private: true,
            ..RepoSpec::new("octo-org/other")
        })
        .await
        .unwrap();
    let run_id = dispatch(&t, sample::WORKFLOW_FILE, json!({})).await;
    // The simulator's own view: the token it handed the job.
    let token = t
        .sim
        .wait_for("the job's token", DEADLINE, |s| {
            s.read(|w| {
                w.tokens.iter().find_map(|(token, t)| {
                    (t.subject
                        == TokenSubject::Job {
                            repository: sample::REPO.into(),
                            run_id,
                            write: true,
                        })
                    .then(|| token.clone())
                })
            })
        })
        .await
        .unwrap();
    let repo_path = format!("/repos/{}", t.world.repo);
    let during = call_as_token(&t, &token, "GET", &repo_path, None).await;
    assert_eq!(during.status, 200, "{:?}", during.body);
    // One repository: not even another repository of the same owner.
    let other = call_as_token(&t, &token, "GET", "/repos/octo-org/other", None).await;
    assert_eq!(other.status, 404, "{:?}", other.body);

    // Release the job; it ends and its token with it.
    let sha = main_sha(&t).await;
    let created = t
        .call(
            "alice",
            "POST",
            &format!("{repo_path}/git/refs"),
            Some(json!({"ref": "refs/heads/release-job", "sha": sha})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let run = run_completed(&t, run_id).await;
    let log = t.sim.run_log(&t.world.repo, run_id).unwrap();
    assert_eq!(
        run.payload["workflow_run"]["conclusion"], "success",
        "{log}"
    );
    assert!(log.contains("released\n"), "{log}");

    let after = call_as_token(&t, &token, "GET", &repo_path, None).await;
    assert_eq!(after.status, 401, "{:?}", after.body);
    assert_eq!(after.body["message"], "Bad credentials");
    assert!(t.sim.read(|w| {
        w.tokens
            .values()
            .all(|t| !matches!(&t.subject, TokenSubject::Job { run_id: r, .. } if *r == run_id))
    }));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_cannot_push_and_a_maintainers_push_is_announced() {
    let t = start(FaultConfig::default(), Vec::new()).await;
    let git = Git::new(&t);

    // bob (read) can clone the repository but not push to it.
    let bob = git.clone(&t.world.reader.token, "bob").await;
    git.commit_file(&bob, "bob.txt", "from bob\n", "bob's change")
        .await;
    let push = git
        .run(
            &bob,
            Some(&t.world.reader.token),
            &["push", "-q", "origin", "HEAD:refs/heads/bob"],
        )
        .await;
    assert!(!push.ok, "bob's push succeeded");
    assert!(push.stderr.contains("403"), "{}", push.stderr);
    assert!(
        t.sim
            .git()
            .resolve_ref(&t.world.repo, "refs/heads/bob")
            .await
            .unwrap()
            .is_none()
    );
    // Without any credential, a push is refused too.
    let anonymous = git
        .run(&bob, None, &["push", "-q", "origin", "HEAD:refs/heads/bob"])
        .await;
    assert!(!anonymous.ok);

    // alice (maintain) pushes, and GitHub tells the App.
    let alice = git.clone(&t.world.maintainer.token, "alice").await;
    let sha = git
        .commit_file(&alice, "alice.txt", "from alice\n", "alice's change")
        .await;
    git.ok(
        &alice,
        Some(&t.world.maintainer.token),
        &["push", "-q", "origin", "HEAD:refs/heads/alice"],
    )
    .await;
    let push = t
        .expect_delivered("push", None, |p| p["ref"] == "refs/heads/alice")
        .await;
    assert_eq!(push.payload["after"], sha.as_str());
    assert_eq!(push.payload["created"], true);
    assert_eq!(push.payload["forced"], false);
    assert_eq!(push.payload["sender"]["login"], "alice");
    assert_eq!(push.payload["pusher"]["name"], "alice");
    assert_eq!(push.payload["head_commit"]["id"], sha.as_str());
    assert_eq!(t.expect_branch("alice").await, sha);
    // No push event was ever sent for bob's attempt.
    assert!(
        t.sim
            .deliveries()
            .iter()
            .all(|d| d.payload["ref"] != "refs/heads/bob")
    );
    t.stop().await;
}

// ---- 5. pull requests -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_synchronizes_conflicts_and_refuses_non_fast_forward_updates() {
    let t = start(FaultConfig::default(), Vec::new()).await;
    let repo_path = format!("/repos/{}", t.world.repo);
    let token = t.world.maintainer.token.clone();
    let git = Git::new(&t);
    let work = git.clone(&token, "alice").await;
    git.ok(&work, None, &["checkout", "-q", "-b", "feature"])
        .await;
    let first = git
        .commit_file(
            &work,
            "README.md",
            "# demo\n\nFrom the feature.\n",
            "Edit README",
        )
        .await;
    git.ok(&work, Some(&token), &["push", "-q", "origin", "feature"])
        .await;
    t.expect_delivered("push", None, |p| p["ref"] == "refs/heads/feature")
        .await;

    let opened = t
        .call(
            "alice",
            "POST",
            &format!("{repo_path}/pulls"),
            Some(
                json!({"title": "A feature", "head": "feature", "base": "main", "body": "Please."}),
            ),
        )
        .await;
    assert_eq!(opened.status, 201, "{:?}", opened.body);
    let number = opened.body["number"].as_u64().unwrap();
    assert_eq!(opened.body["head"]["sha"], first.as_str());
    t.expect_delivered("pull_request", Some("opened"), |p| p["number"] == number)
        .await;

    // A further push: `synchronize` with the new head.
    let second = git
        .commit_file(&work, "feature.txt", "more\n", "More feature")
        .await;
    git.ok(&work, Some(&token), &["push", "-q", "origin", "feature"])
        .await;
    let sync = t
        .expect_delivered("pull_request", Some("synchronize"), |p| {
            p["number"] == number && p["after"] == second.as_str()
        })
        .await;
    assert_eq!(sync.payload["before"], first.as_str());
    assert_eq!(sync.payload["pull_request"]["head"]["sha"], second.as_str());
    let pull = t
        .call("alice", "GET", &format!("{repo_path}/pulls/{number}"), None)
        .await;
    assert_eq!(pull.body["head"]["sha"], second.as_str());
    assert_eq!(pull.body["mergeable"], true);
    assert_eq!(pull.body["commits"], 2);

    // A conflicting change lands on main: the PR can no longer be merged.
    let readme = t
        .call(
            "alice",
            "GET",
            &format!("{repo_path}/contents/README.md?ref=main"),
            None,
        )
        .await;
    let put = t
        .call(
            "alice",
            "PUT",
            &format!("{repo_path}/contents/README.md"),
            Some(json!({
                "message": "Edit README on main",
                "content": base64::engine::general_purpose::STANDARD.encode("# demo\n\nFrom main.\n"),
                "sha": readme.body["sha"],
                "branch": "main",
            })),
        )
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    let new_main = put.body["commit"]["sha"].as_str().unwrap().to_owned();
    let pull = t
        .call("alice", "GET", &format!("{repo_path}/pulls/{number}"), None)
        .await;
    assert_eq!(pull.body["mergeable"], false, "{:?}", pull.body);
    assert_eq!(pull.body["mergeable_state"], "dirty");
    let merge = t
        .call(
            "alice",
            "PUT",
            &format!("{repo_path}/pulls/{number}/merge"),
            Some(json!({})),
        )
        .await;
    assert_eq!(merge.status, 405, "{:?}", merge.body);
    assert_eq!(merge.body["message"], "Pull Request is not mergeable");
    assert_eq!(main_sha(&t).await, new_main, "main is untouched");

    // Moving the branch to main's head is not a fast forward: refused without force.
    let refused = t
        .call(
            "alice",
            "PATCH",
            &format!("{repo_path}/git/refs/heads/feature"),
            Some(json!({"sha": new_main})),
        )
        .await;
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    assert_eq!(refused.body["message"], "Update is not a fast forward");
    assert_eq!(t.expect_branch("feature").await, second);
    let forced = t
        .call(
            "alice",
            "PATCH",
            &format!("{repo_path}/git/refs/heads/feature"),
            Some(json!({"sha": new_main, "force": true})),
        )
        .await;
    assert_eq!(forced.status, 200, "{:?}", forced.body);
    assert_eq!(forced.body["object"]["sha"], new_main.as_str());
    assert_eq!(t.expect_branch("feature").await, new_main);
    let push = t
        .expect_delivered("push", None, |p| {
            p["ref"] == "refs/heads/feature" && p["after"] == new_main.as_str()
        })
        .await;
    assert_eq!(push.payload["before"], second.as_str());
    assert_eq!(push.payload["forced"], true, "a forced update says so");
    t.expect_delivered("pull_request", Some("synchronize"), |p| {
        p["number"] == number && p["after"] == new_main.as_str()
    })
    .await;
    t.stop().await;
}

// ---- 6. permissions -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_are_enforced_per_caller() {
    let t = start(FaultConfig::default(), Vec::new()).await;
    let repo_path = format!("/repos/{}", t.world.repo);

    // bob (read) cannot label.
    let issue = t.open_issue("bob", "From a reader", "").await;
    let label = t
        .call(
            "bob",
            "POST",
            &format!("{repo_path}/issues/{issue}/labels"),
            Some(json!({"labels": ["mission"]})),
        )
        .await;
    assert_eq!(label.status, 403, "{:?}", label.body);

    // bob cannot start a workflow either.
    let dispatch = t
        .call(
            "bob",
            "POST",
            &format!(
                "{repo_path}/actions/workflows/{}/dispatches",
                sample::WORKFLOW_FILE
            ),
            Some(json!({"ref": "main"})),
        )
        .await;
    assert_eq!(dispatch.status, 403, "{:?}", dispatch.body);

    // alice opens a PR (a branch and a commit through REST); bob may review it.
    let sha = main_sha(&t).await;
    let (number, _) = alice_opens_pull(&t, "docs", "docs/guide.md", "# Guide\n").await;
    // bob (read) cannot open one.
    let bob_pr = t
        .call(
            "bob",
            "POST",
            &format!("{repo_path}/pulls"),
            Some(json!({"title": "Docs again", "head": "docs", "base": "main"})),
        )
        .await;
    assert_eq!(bob_pr.status, 403, "{:?}", bob_pr.body);
    let review = t
        .call(
            "bob",
            "POST",
            &format!("{repo_path}/pulls/{number}/reviews"),
            Some(json!({"event": "APPROVE"})),
        )
        .await;
    assert_eq!(review.status, 200, "{:?}", review.body);
    assert_eq!(review.body["state"], "APPROVED");
    let submitted = t
        .expect_delivered("pull_request_review", Some("submitted"), |p| {
            p["pull_request"]["number"] == number
        })
        .await;
    assert_eq!(submitted.payload["review"]["user"]["login"], "bob");
    // alice cannot approve her own.
    let own = t
        .call(
            "alice",
            "POST",
            &format!("{repo_path}/pulls/{number}/reviews"),
            Some(json!({"event": "APPROVE"})),
        )
        .await;
    assert_eq!(own.status, 422, "{:?}", own.body);

    // The App sees only the repositories it is installed on.
    t.sim
        .create_repo(RepoSpec {
            private: true,
            ..RepoSpec::new("someone/secret")
        })
        .await
        .unwrap();
    let client = t
        .github
        .installation(t.world.installation_id)
        .await
        .unwrap();
    let own_repo: Value = client.get(&repo_path).await.unwrap();
    assert_eq!(own_repo["full_name"], sample::REPO);
    let hidden = client
        .get::<Value>("/repos/someone/secret")
        .await
        .unwrap_err();
    assert_eq!(hidden.status(), Some(404), "{hidden}");
    // And alice, not a collaborator there, sees nothing either.
    assert_eq!(
        t.call("alice", "GET", "/repos/someone/secret", None)
            .await
            .status,
        404
    );

    // Check runs are the App's alone.
    let check = json!({"name": "ci", "head_sha": sha});
    let by_user = t
        .call(
            "alice",
            "POST",
            &format!("{repo_path}/check-runs"),
            Some(check.clone()),
        )
        .await;
    assert_eq!(by_user.status, 403, "{:?}", by_user.body);
    assert_eq!(
        by_user.body["message"],
        "You must authenticate via a GitHub App."
    );
    let by_app: Value = client
        .post(&format!("{repo_path}/check-runs"), &check)
        .await
        .unwrap();
    assert_eq!(by_app["app"]["id"], sample::APP_ID);
    t.stop().await;
}

/// A caller that hangs up mid-request (the App killed by SIGKILL) does not
/// leave half a change behind: the ref moves and the PR's head moves with it,
/// with its `synchronize`, as on GitHub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ref_update_whose_caller_hangs_up_is_applied_whole() {
    use tokio::io::AsyncWriteExt as _;

    let t = start(FaultConfig::default(), Vec::new()).await;
    let repo_path = format!("/repos/{}", t.world.repo);
    let (number, put) = alice_opens_pull(&t, "topic", "topic.txt", "topic\n").await;
    let head = put["commit"]["sha"].as_str().unwrap().to_owned();

    // A commit on top, then the ref update sent raw and the socket closed
    // before any answer, as a process killed right after sending leaves it.
    let tree = put["commit"]["tree"]["sha"].as_str().unwrap().to_owned();
    let commit = t
        .call(
            "alice",
            "POST",
            &format!("{repo_path}/git/commits"),
            Some(json!({"message": "Ready", "tree": tree, "parents": [head]})),
        )
        .await;
    assert_eq!(commit.status, 201, "{:?}", commit.body);
    let ready = commit.body["sha"].as_str().unwrap().to_owned();
    let url = reqwest::Url::parse(t.sim.url()).unwrap();
    let body = json!({"sha": ready, "force": false}).to_string();
    let request = format!(
        "PATCH {repo_path}/git/refs/heads/topic HTTP/1.1\r\nhost: {}\r\n\
         authorization: Bearer {}\r\naccept: application/vnd.github+json\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        url.authority(),
        t.world.maintainer.token,
        body.len()
    );
    let mut socket = tokio::net::TcpStream::connect((
        url.host_str().unwrap(),
        url.port_or_known_default().unwrap(),
    ))
    .await
    .unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    // Hang up as soon as the ref has moved: GitHub's follow-up (the PR's head,
    // `push`, `synchronize`) is then still under way.
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let at = t
            .sim
            .git()
            .resolve_ref(&t.world.repo, "refs/heads/topic")
            .await
            .unwrap();
        if at.as_deref() == Some(ready.as_str()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the ref never moved");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    drop(socket);

    let sync = t
        .expect_delivered("pull_request", Some("synchronize"), |p| {
            p["number"] == number && p["after"] == ready.as_str()
        })
        .await;
    assert_eq!(sync.payload["pull_request"]["head"]["sha"], ready.as_str());
    let pull = t
        .call("alice", "GET", &format!("{repo_path}/pulls/{number}"), None)
        .await;
    assert_eq!(pull.body["head"]["sha"], ready.as_str());
    t.stop().await;
}

/// GitHub's limits, as its documentation states them: the contents API's JSON
/// form leaves a file over 1 MB empty (the raw media type has it); bodies over
/// 65,536 characters are refused; a ruleset restricting creations refuses a
/// new branch with REST's generic 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_files_long_bodies_and_restricted_creations_are_answered_as_github_does() {
    let t = start(FaultConfig::default(), Vec::new()).await;
    let repo_path = format!("/repos/{}", t.world.repo);
    let big = "y".repeat(1_500_000);
    let (number, _) = alice_opens_pull(&t, "big", "big.txt", &big).await;

    let json_form = t
        .call(
            "alice",
            "GET",
            &format!("{repo_path}/contents/big.txt?ref=big"),
            None,
        )
        .await;
    assert_eq!(json_form.status, 200);
    assert_eq!(json_form.body["encoding"], "none");
    assert_eq!(json_form.body["content"], "");
    assert_eq!(json_form.body["size"], 1_500_000);
    let raw = reqwest::Client::new()
        .get(format!(
            "{}{repo_path}/contents/big.txt?ref=big",
            t.sim.url()
        ))
        .header(
            "authorization",
            format!("Bearer {}", t.world.maintainer.token),
        )
        .header("accept", "application/vnd.github.raw+json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.text().await.unwrap(), big);

    // 65,536 characters pass (multi-byte ones count once); one more does not.
    let at_limit = "é".repeat(65_536);
    for (path, method, field) in [
        (
            format!("{repo_path}/issues/{number}/comments"),
            "POST",
            "body",
        ),
        (format!("{repo_path}/pulls/{number}"), "PATCH", "body"),
    ] {
        let ok = t
            .call("alice", method, &path, Some(json!({ field: at_limit })))
            .await;
        assert!(ok.status < 300, "{path}: {:?}", ok.body);
        let long = t
            .call(
                "alice",
                method,
                &path,
                Some(json!({ field: format!("{at_limit}!") })),
            )
            .await;
        assert_eq!(long.status, 422, "{path}");
        assert_eq!(
            long.body["errors"][0]["message"],
            "Body is too long (maximum is 65536 characters)"
        );
    }

    t.sim.repo_settings(&t.world.repo, |r| {
        r.rulesets.push(missions::sim::state::Ruleset {
            name: "releases only".into(),
            include: vec!["refs/heads/missions/**".into()],
            restrict_creation: true,
            ..Default::default()
        })
    });
    let sha = main_sha(&t).await;
    for (branch, status) in [("missions/7/plan", 422), ("feature-x", 201)] {
        let created = t
            .call(
                "alice",
                "POST",
                &format!("{repo_path}/git/refs"),
                Some(json!({"ref": format!("refs/heads/{branch}"), "sha": sha})),
            )
            .await;
        assert_eq!(created.status, status, "{branch}: {:?}", created.body);
    }
}

/// A merge queue as GitHub runs it: a pull request is queued once its
/// required checks pass, a group commit on `gh-readonly-queue/…` gets
/// `merge_group`, a failed check on the group drops the pull request, and a
/// passing one merges it as `github-merge-queue[bot]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_queue_checks_its_group_and_merges_or_drops_the_pull_request() {
    let t = start(FaultConfig::default(), Vec::new()).await;
    let repo_path = format!("/repos/{}", t.world.repo);
    t.sim.repo_settings(&t.world.repo, |r| {
        r.protection.insert(
            "main".into(),
            missions::sim::state::BranchProtection {
                required_checks: vec!["ci".into()],
                strict: false,
            },
        );
        r.merge_queue.insert("main".into());
    });
    let client = t
        .github
        .installation(t.world.installation_id)
        .await
        .unwrap();
    let (number, put) = alice_opens_pull(&t, "queued", "q.txt", "queued\n").await;
    let head = put["commit"]["sha"].as_str().unwrap().to_owned();
    let report = |sha: String, conclusion: &'static str| {
        let client = client.clone();
        let repo_path = repo_path.clone();
        async move {
            let _: Value = client
                .post(
                    &format!("{repo_path}/check-runs"),
                    &json!({"name": "ci", "head_sha": sha, "status": "completed", "conclusion": conclusion}),
                )
                .await
                .unwrap();
        }
    };
    let error = t.sim.enqueue(&t.world.repo, number, "alice").await;
    assert_eq!(
        error.unwrap_err().to_string(),
        "Required status check \"ci\" is expected."
    );
    report(head.clone(), "success").await;
    let merge = t
        .call(
            "alice",
            "PUT",
            &format!("{repo_path}/pulls/{number}/merge"),
            Some(json!({})),
        )
        .await;
    assert_eq!(merge.status, 405);
    assert_eq!(
        merge.body["message"],
        "Changes must be made through the merge queue"
    );

    let group_of = |action: &'static str| {
        let sim = t.sim.clone();
        async move {
            sim.wait_for(&format!("merge_group {action}"), DEADLINE, |s| {
                s.deliveries()
                    .into_iter()
                    .filter(|d| d.event == "merge_group" && d.action.as_deref() == Some(action))
                    .map(|d| d.payload)
                    .next_back()
            })
            .await
            .unwrap()
        }
    };
    t.sim.enqueue(&t.world.repo, number, "alice").await.unwrap();
    let asked = group_of("checks_requested").await;
    let group = &asked["merge_group"];
    assert_eq!(
        group["head_ref"],
        format!("refs/heads/gh-readonly-queue/main/pr-{number}-{head}")
    );
    assert_eq!(group["base_ref"], "refs/heads/main");
    assert_eq!(group["base_sha"], main_sha(&t).await);
    let group_sha = group["head_sha"].as_str().unwrap().to_owned();
    assert_ne!(group_sha, head);

    // A failing check on the group drops the pull request from the queue.
    report(group_sha.clone(), "failure").await;
    let destroyed = group_of("destroyed").await;
    assert_eq!(destroyed["reason"], "dequeued");
    let open = t
        .call("alice", "GET", &format!("{repo_path}/pulls/{number}"), None)
        .await;
    assert_eq!(open.body["state"], "open");

    // Queued again, a new group; its check passes and the queue merges.
    t.sim.enqueue(&t.world.repo, number, "alice").await.unwrap();
    let second = t
        .sim
        .wait_for("a second group", DEADLINE, |s| {
            s.deliveries()
                .into_iter()
                .filter(|d| {
                    d.event == "merge_group" && d.action.as_deref() == Some("checks_requested")
                })
                .nth(1)
                .map(|d| d.payload)
        })
        .await
        .unwrap();
    let second_sha = second["merge_group"]["head_sha"]
        .as_str()
        .unwrap()
        .to_owned();
    report(second_sha.clone(), "success").await;
    let merged = t
        .sim
        .wait_for("the queue's merge", DEADLINE, |s| {
            s.deliveries()
                .into_iter()
                .find(|d| d.event == "pull_request" && d.action.as_deref() == Some("closed"))
                .map(|d| d.payload)
        })
        .await
        .unwrap();
    assert_eq!(merged["pull_request"]["merged"], true);
    assert_eq!(
        merged["pull_request"]["merged_by"]["login"],
        "github-merge-queue[bot]"
    );
    assert_eq!(merged["pull_request"]["merged_by"]["type"], "Bot");
    assert_eq!(main_sha(&t).await, second_sha);
    let gone = t
        .call(
            "alice",
            "GET",
            &format!("{repo_path}/git/ref/heads/gh-readonly-queue/main/pr-{number}-{head}"),
            None,
        )
        .await;
    assert_eq!(gone.status, 404);
    t.stop().await;
}

/// A ruleset that requires signed commits refuses an unsigned push to the
/// branches it covers, in GitHub's words (GH013); other branches take it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ruleset_requiring_signed_commits_refuses_unsigned_pushes_to_its_branches() {
    let t = start(FaultConfig::default(), Vec::new()).await;
    t.sim.repo_settings(&t.world.repo, |r| {
        r.rulesets.push(missions::sim::state::Ruleset {
            name: "signed missions".into(),
            include: vec!["refs/heads/missions/**".into()],
            require_signed_commits: true,
            ..Default::default()
        })
    });
    let git = Git::new(&t);
    let token = t.world.maintainer.token.clone();
    let dir = git.clone(&token, "work").await;
    let sha = git
        .commit_file(&dir, "notes.txt", "unsigned\n", "An unsigned commit")
        .await;
    let refused = git
        .run(
            &dir,
            Some(&token),
            &["push", "origin", "HEAD:refs/heads/missions/7/m1"],
        )
        .await;
    assert!(!refused.ok, "an unsigned push went through");
    assert!(
        refused
            .stderr
            .contains("GH013: Repository rule violations found for refs/heads/missions/7/m1."),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("Commits must have verified signatures."),
        "{}",
        refused.stderr
    );
    let missing = t
        .sim
        .git()
        .resolve_ref(&t.world.repo, "refs/heads/missions/7/m1")
        .await
        .unwrap();
    assert_eq!(missing, None);
    git.ok(
        &dir,
        Some(&token),
        &["push", "-q", "origin", "HEAD:refs/heads/topic"],
    )
    .await;
    let topic = t
        .sim
        .git()
        .resolve_ref(&t.world.repo, "refs/heads/topic")
        .await
        .unwrap();
    assert_eq!(topic.as_deref(), Some(sha.as_str()));
    t.stop().await;
}

// ---- 7. the repository's own CI -----------------------------------------------

/// GitHub Actions' App id: the owner of workflow jobs' check runs.
const ACTIONS_APP_ID: u64 = 15368;

/// A push-triggered workflow as a repository has it; the simulator runs the
/// configured command of its job `test` instead of the YAML.
const CI_YML: &str = "name: ci\non: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - run: '! grep -q bug src.txt'\n";

/// The CI job: says what started it, tries to push with its token, and fails
/// when `src.txt` holds a bug.
const CI_SCRIPT: &str = r#"set -u
echo "event=$GITHUB_EVENT_NAME ref=$GITHUB_REF sha=$GITHUB_SHA"
auth=$(printf 'x-access-token:%s' "$GITHUB_TOKEN" | base64 | tr -d '\n')
if git -c http.extraHeader="Authorization: basic $auth" push -q origin HEAD:refs/heads/from-ci 2>/dev/null; then
  echo "ci pushed"
else
  echo "ci push refused"
fi
if grep -q bug src.txt; then echo "found a bug"; exit 1; fi
echo "no bug"
"#;

/// A dispatched job that commits and pushes with its `GITHUB_TOKEN`.
const JOB_PUSH_SCRIPT: &str = r#"set -eu
auth=$(printf 'x-access-token:%s' "$GITHUB_TOKEN" | base64 | tr -d '\n')
echo "from the job" > job.txt
git add job.txt
git commit -qm "From the job"
git -c http.extraHeader="Authorization: basic $auth" push -q origin HEAD:refs/heads/from-job
"#;

/// The sample world whose repository has a CI workflow (`ci.yml`, on push,
/// one job `test`) and a dispatchable one whose job pushes.
async fn start_with_ci() -> Scenario {
    Scenario::start(ScenarioOptions {
        repo: Some(
            RepoSpec::new(sample::REPO)
                .file(".github/workflows/missions.yml", sample::WORKFLOW_YAML)
                .file(".github/workflows/ci.yml", CI_YML)
                .file("src.txt", "fine\n"),
        ),
        workflows: workflow(JOB_PUSH_SCRIPT),
        push_workflows: vec![(
            "ci.yml".into(),
            vec![missions::sim::SimJob {
                name: "test".into(),
                command: sh(CI_SCRIPT),
                contents_write: false,
                always: false,
            }],
        )],
        ..ScenarioOptions::default()
    })
    .await
}

/// alice writes `text` to `src.txt` on a new branch `branch` off main in her
/// clone `dir` and pushes it; the commit.
async fn push_src(git: &Git, dir: &Path, token: &str, branch: &str, text: &str) -> String {
    git.ok(dir, None, &["checkout", "-q", "-b", branch, "origin/main"])
        .await;
    let sha = git
        .commit_file(dir, "src.txt", text, &format!("src.txt on {branch}"))
        .await;
    git.ok(
        dir,
        Some(token),
        &["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")],
    )
    .await;
    sha
}

/// The `check_run` `completed` of GitHub Actions' job on `sha`.
async fn actions_check_completed(t: &Scenario, sha: &str) -> DeliveryRecord {
    t.expect_delivered("check_run", Some("completed"), |p| {
        p["check_run"]["head_sha"] == sha && p["check_run"]["app"]["id"] == ACTIONS_APP_ID
    })
    .await
}

/// A client that does not follow redirects, for what GitHub answers with one.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A job's log as the App reads it: `GET .../actions/jobs/{id}/logs` with its
/// installation token, then the redirect's address without any token.
async fn job_log(t: &Scenario, job_id: u64) -> String {
    use secrecy::ExposeSecret as _;
    let token = t
        .github
        .installation_token(t.world.installation_id)
        .await
        .unwrap();
    let answer = no_redirects()
        .get(format!(
            "{}/repos/{}/actions/jobs/{job_id}/logs",
            t.sim.url(),
            t.world.repo
        ))
        .bearer_auth(token.expose_secret())
        .header("accept", "application/vnd.github+json")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 302);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    let log = no_redirects().get(&location).send().await.unwrap();
    assert_eq!(log.status().as_u16(), 200, "{location}");
    assert!(
        log.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    log.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_runs_the_repositorys_ci_as_check_runs_of_github_actions() {
    let t = start_with_ci().await;
    let repo_path = format!("/repos/{}", t.world.repo);
    let client = t
        .github
        .installation(t.world.installation_id)
        .await
        .unwrap();
    let git = Git::new(&t);
    let token = t.world.maintainer.token.clone();
    let dir = git.clone(&token, "alice").await;

    // A commit without the workflow file runs nothing. (Its push is handled
    // long before the good commit's job below ends, so by then a run of
    // its own would show.)
    git.ok(
        &dir,
        None,
        &["checkout", "-q", "-b", "plain", "origin/main"],
    )
    .await;
    git.ok(&dir, None, &["rm", "-q", ".github/workflows/ci.yml"])
        .await;
    git.ok(&dir, None, &["commit", "-qm", "No CI here"]).await;
    let plain = git.ok(&dir, None, &["rev-parse", "HEAD"]).await;
    git.ok(
        &dir,
        Some(&token),
        &["push", "-q", "origin", "HEAD:refs/heads/plain"],
    )
    .await;
    // Nor does a push made with a job's GITHUB_TOKEN, as on GitHub.
    let run_id = dispatch(&t, sample::WORKFLOW_FILE, json!({})).await;
    let run = run_completed(&t, run_id).await;
    assert_eq!(
        run.payload["workflow_run"]["conclusion"],
        "success",
        "{}",
        t.sim.run_log(&t.world.repo, run_id).unwrap()
    );
    let from_job = t
        .expect_delivered("push", None, |p| p["ref"] == "refs/heads/from-job")
        .await;
    assert_eq!(from_job.payload["sender"]["login"], "github-actions[bot]");
    let from_job = from_job.payload["after"].as_str().unwrap().to_owned();

    // A good commit: the job `test` succeeds, as a check run of GitHub Actions.
    let good = push_src(&git, &dir, &token, "good", "all fine\n").await;
    let completed = actions_check_completed(&t, &good).await;
    let check = &completed.payload["check_run"];
    let job_id = check["id"].as_u64().unwrap();
    assert_eq!(check["name"], "test");
    assert_eq!(check["status"], "completed");
    assert_eq!(check["conclusion"], "success");
    assert_eq!(check["app"]["slug"], "github-actions");
    assert_eq!(check["app"]["name"], "GitHub Actions");
    assert_eq!(check["app"]["owner"]["login"], "github");
    assert_eq!(check["app"]["owner"]["type"], "Organization");
    assert!(check["completed_at"].is_string() && check["started_at"].is_string());
    let details = check["details_url"].as_str().unwrap();
    assert!(
        details.starts_with(&format!("{}/{}/actions/runs/", t.sim.url(), t.world.repo))
            && details.ends_with(&format!("/job/{job_id}")),
        "{details}"
    );
    assert_eq!(check["html_url"], details);
    assert_eq!(check["check_suite"]["head_branch"], "good");
    assert_eq!(check["check_suite"]["app"]["id"], ACTIONS_APP_ID);
    assert_eq!(completed.payload["sender"]["login"], "alice");
    // `created` (queued) came first, then `completed`, then the suite's end.
    let created = t
        .expect_delivered("check_run", Some("created"), |p| {
            p["check_run"]["id"] == job_id
        })
        .await;
    assert_eq!(created.payload["check_run"]["status"], "queued");
    assert_eq!(created.payload["check_run"]["conclusion"], Value::Null);
    let suite = t
        .expect_delivered("check_suite", Some("completed"), |p| {
            p["check_suite"]["head_sha"] == good.as_str()
        })
        .await;
    assert_eq!(suite.payload["check_suite"]["conclusion"], "success");
    assert_eq!(suite.payload["check_suite"]["app"]["id"], ACTIONS_APP_ID);
    assert_eq!(suite.payload["check_suite"]["latest_check_runs_count"], 1);
    assert_eq!(
        suite.payload["check_suite"]["id"],
        check["check_suite"]["id"]
    );
    let order: Vec<(String, Option<String>)> = t
        .sim
        .deliveries()
        .into_iter()
        .filter(|d| {
            d.payload["check_run"]["id"] == job_id
                || d.payload["check_suite"]["head_sha"] == good.as_str()
        })
        .map(|d| (d.event, d.action))
        .collect();
    assert_eq!(
        order,
        [
            ("check_run".to_owned(), Some("created".to_owned())),
            ("check_run".to_owned(), Some("completed".to_owned())),
            ("check_suite".to_owned(), Some("completed".to_owned())),
        ]
    );
    // As GitHub's schemas describe them, and as the App parses them.
    let schemas = common::webhook_schemas::WebhookSchemas::get();
    for d in [&completed, &suite] {
        if let Err(errors) = schemas.validate(&d.event, &d.payload) {
            panic!("{} against its schema: {errors:?}", d.event);
        }
        let bytes = serde_json::to_vec(&d.payload).unwrap();
        missions::github::events::WebhookEvent::parse(&d.event, &bytes).unwrap();
    }

    // Through REST: both kinds of check run are listed, `app_id` filters.
    let api = common::openapi::OpenApi::get();
    let listed_path = format!("{repo_path}/commits/{good}/check-runs");
    let all: Value = client.get(&listed_path).await.unwrap();
    api.check_response("GET", &listed_path, 200, &all).unwrap();
    assert_eq!(all["total_count"], 1);
    assert_eq!(all["check_runs"][0]["id"], job_id);
    assert_eq!(all["check_runs"][0]["app"]["id"], ACTIONS_APP_ID);
    let ours: Value = client
        .get(&format!("{listed_path}?app_id={}", sample::APP_ID))
        .await
        .unwrap();
    assert_eq!(ours["total_count"], 0);
    let theirs: Value = client
        .get(&format!("{listed_path}?app_id={ACTIONS_APP_ID}"))
        .await
        .unwrap();
    assert_eq!(theirs["total_count"], 1);

    // The job's log: a redirect to a signed address, the job's own output.
    let log = job_log(&t, job_id).await;
    assert!(
        log.contains(&format!("event=push ref=refs/heads/good sha={good}\n")),
        "{log}"
    );
    // Its token is read-only.
    assert!(log.contains("ci push refused\n"), "{log}");
    assert!(log.contains("no bug\n"), "{log}");
    assert!(!log.contains("ghs_"), "{log}");
    assert_eq!(t.sim.job_log(&t.world.repo, job_id).as_deref(), Some(&*log));
    // Without the signature, or for a job that does not exist, no log.
    let forged = no_redirects()
        .get(format!(
            "{}/_sim/job-logs/{}/{job_id}?token=guessed",
            t.sim.url(),
            t.world.repo
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let unknown = t
        .call(
            "alice",
            "GET",
            &format!("{repo_path}/actions/jobs/999999/logs"),
            None,
        )
        .await;
    assert_eq!(unknown.status, 404);
    // A dispatched run's job has its log there too.
    let dispatched_job = run_completed(&t, run_id).await.payload["workflow_run"]["id"]
        .as_u64()
        .and_then(|id| {
            t.sim
                .read(|w| w.repos[&t.world.repo].runs.get(&id).map(|r| r.job.id))
        })
        .unwrap();
    assert_eq!(
        job_log(&t, dispatched_job).await,
        t.sim.run_log(&t.world.repo, run_id).unwrap()
    );

    // A bad commit: the job fails; the log says why.
    let bad = push_src(&git, &dir, &token, "bad", "a bug\n").await;
    let failed = actions_check_completed(&t, &bad).await;
    let check = &failed.payload["check_run"];
    assert_eq!(check["conclusion"], "failure");
    // As on GitHub, the output stays empty (the reason is an annotation).
    assert_eq!(check["output"]["title"], Value::Null);
    let log = job_log(&t, check["id"].as_u64().unwrap()).await;
    assert!(log.contains("found a bug\n"), "{log}");
    assert!(log.contains("Process completed with exit code 1."), "{log}");
    let suite = t
        .expect_delivered("check_suite", Some("completed"), |p| {
            p["check_suite"]["head_sha"] == bad.as_str()
        })
        .await;
    assert_eq!(suite.payload["check_suite"]["conclusion"], "failure");

    // Nothing ran on the commit without the workflow, nor on the job's push;
    // and the CI job pushed nothing.
    for sha in [&plain, &from_job] {
        let listed: Value = client
            .get(&format!("{repo_path}/commits/{sha}/check-runs"))
            .await
            .unwrap();
        assert_eq!(listed["total_count"], 0, "{sha}: {listed}");
    }
    assert!(
        t.sim
            .deliveries()
            .iter()
            .all(|d| d.payload["check_run"]["head_sha"] != plain.as_str()
                && d.payload["check_run"]["head_sha"] != from_job.as_str())
    );
    assert_eq!(
        t.sim
            .git()
            .resolve_ref(&t.world.repo, "refs/heads/from-ci")
            .await
            .unwrap(),
        None
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_shows_its_protection_and_required_checks() {
    let t = start(FaultConfig::default(), Vec::new()).await;
    let repo_path = format!("/repos/{}", t.world.repo);
    t.sim.repo_settings(&t.world.repo, |r| {
        r.protection.insert(
            "main".into(),
            missions::sim::state::BranchProtection {
                required_checks: vec!["test".into(), "missions / scrutiny".into()],
                strict: true,
            },
        );
    });
    let api = common::openapi::OpenApi::get();
    // A reader sees it, as on GitHub.
    let main_path = format!("{repo_path}/branches/main");
    let main = t.call("bob", "GET", &main_path, None).await;
    assert_eq!(main.status, 200, "{:?}", main.body);
    api.check_response("GET", &main_path, 200, &main.body)
        .unwrap();
    assert_eq!(main.body["protected"], true);
    assert_eq!(main.body["protection"]["enabled"], true);
    assert_eq!(
        main.body["protection"]["required_status_checks"],
        json!({
            "enforcement_level": "non_admins",
            "contexts": ["test", "missions / scrutiny"],
            "checks": [
                {"context": "test", "app_id": null},
                {"context": "missions / scrutiny", "app_id": null},
            ],
            "strict": true,
        })
    );

    // Another branch is not protected.
    let created = t
        .call(
            "alice",
            "POST",
            &format!("{repo_path}/git/refs"),
            Some(json!({"ref": "refs/heads/topic", "sha": main_sha(&t).await})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let topic_path = format!("{repo_path}/branches/topic");
    let topic = t.call("bob", "GET", &topic_path, None).await;
    api.check_response("GET", &topic_path, 200, &topic.body)
        .unwrap();
    assert_eq!(topic.body["protected"], false);
    assert_eq!(topic.body["protection"]["enabled"], false);
    assert_eq!(
        topic.body["protection"]["required_status_checks"]["contexts"],
        json!([])
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_token_cannot_change_a_check_run_of_github_actions() {
    let t = start_with_ci().await;
    let repo_path = format!("/repos/{}", t.world.repo);
    let client = t
        .github
        .installation(t.world.installation_id)
        .await
        .unwrap();
    // A branch created through REST is a push too: CI runs on its commit.
    let sha = main_sha(&t).await;
    let created = t
        .call(
            "alice",
            "POST",
            &format!("{repo_path}/git/refs"),
            Some(json!({"ref": "refs/heads/topic", "sha": sha})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let completed = actions_check_completed(&t, &sha).await;
    let id = completed.payload["check_run"]["id"].as_u64().unwrap();
    assert_eq!(completed.payload["check_run"]["conclusion"], "success");

    // The App may not complete it otherwise, nor re-request it.
    let check_path = format!("{repo_path}/check-runs/{id}");
    let refused = client
        .patch::<Value, _>(&check_path, &json!({"conclusion": "failure"}))
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(403), "{refused}");
    assert!(
        refused
            .to_string()
            .contains("Invalid app_id `15368` - check run can only be modified by the GitHub App that created it."),
        "{refused}"
    );
    let rerequest = client
        .post::<Value, _>(&format!("{check_path}/rerequest"), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(rerequest.status(), Some(403), "{rerequest}");
    let unchanged: Value = client.get(&check_path).await.unwrap();
    common::openapi::OpenApi::get()
        .check_response("GET", &check_path, 200, &unchanged)
        .unwrap();
    assert_eq!(unchanged["conclusion"], "success");
    assert_eq!(unchanged["app"]["id"], ACTIONS_APP_ID);
    assert!(
        t.sim
            .deliveries()
            .iter()
            .all(|d| d.action.as_deref() != Some("rerequested"))
    );

    // Its own check run on the same commit it may change; it is in a suite
    // of its own, not GitHub Actions'.
    let own: Value = client
        .post(
            &format!("{repo_path}/check-runs"),
            &json!({"name": "missions / scrutiny", "head_sha": sha}),
        )
        .await
        .unwrap();
    let done: Value = client
        .patch(
            &format!("{repo_path}/check-runs/{}", own["id"]),
            &json!({"conclusion": "success"}),
        )
        .await
        .unwrap();
    assert_eq!(done["conclusion"], "success");
    assert_ne!(
        own["check_suite"]["id"],
        completed.payload["check_run"]["check_suite"]["id"]
    );
    let listed: Value = client
        .get(&format!("{repo_path}/commits/{sha}/check-runs"))
        .await
        .unwrap();
    assert_eq!(listed["total_count"], 2);
    t.stop().await;
}
