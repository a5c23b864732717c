//! Runs the demo: the simulator, the App and a scripted model on this machine;
//! plays the maintainer and prints what happens on "GitHub" as it happens.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::scripts::{self, Story};
use super::{project, repo_spec, workflow_jobs};
use crate::clock;
use crate::config::RetryPolicy;
use crate::engine::HandlerRegistry;
use crate::engine::missions::DriverConfig;
use crate::github::auth::AppCredentials;
use crate::github::client::GitHubApp;
use crate::server::{MissionsOptions, Server, ServerOptions};
use crate::sim::{Sim, SimConfig, sample};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Leave everything running at the end, for a person to look at.
    pub keep: bool,
    /// Where the simulator, the database and the scripts live; a temporary
    /// directory when `None`.
    pub dir: Option<PathBuf>,
    /// Longest the mission may take before the demo gives up.
    pub timeout: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            keep: false,
            dir: None,
            timeout: Duration::from_secs(300),
        }
    }
}

const SECRET: &str = "demo-webhook-secret";

/// Prints as things happen, with the time since the start.
struct Printer {
    start: Instant,
}

impl Printer {
    fn line(&self, text: impl AsRef<str>) {
        println!(
            "[{:>5.1}s] {}",
            self.start.elapsed().as_secs_f64(),
            text.as_ref()
        );
    }
}

/// What the printer has already shown.
#[derive(Default)]
struct Seen {
    comments: BTreeSet<u64>,
    runs_started: BTreeSet<u64>,
    runs_done: BTreeSet<u64>,
    checks_done: BTreeSet<u64>,
    pulls: BTreeSet<u64>,
}

pub async fn run(options: DemoOptions) -> anyhow::Result<String> {
    crate::llm::http::install_crypto_provider();
    let printer = Printer {
        start: Instant::now(),
    };
    let temp;
    let dir = match &options.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("missions-demo-")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let script_dir = dir.join("scripts");
    scripts::write(
        &script_dir,
        &Story {
            ask_question: true,
            ..Story::default()
        },
    )?;
    let exe =
        std::env::current_exe().context("cannot find the missions binary to run jobs with")?;

    // GitHub, simulated.
    let clock = clock::system();
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
        .context("generating the App's key")?;
    let private_pem = key.to_pkcs8_pem(LineEnding::LF)?.to_string();
    let public_pem = key.to_public_key().to_public_key_pem(LineEnding::LF)?;
    let mut config = SimConfig::new(dir.join("sim"));
    config
        .workflow_jobs
        .insert(sample::WORKFLOW_FILE.into(), workflow_jobs(&exe));
    config.job_timeout = Duration::from_secs(120);
    let sim = Sim::start(config, clock.clone()).await?;
    let world = sample::seed_with(&sim, &public_pem, repo_spec(&script_dir)).await?;
    let repo = world.repo.clone();
    let api = sim.url().to_owned();

    // The App.
    let github = Arc::new(GitHubApp::new(
        &api,
        AppCredentials::new(sample::APP_ID, SecretString::from(private_pem)),
        clock.clone(),
    )?);
    let store = Store::open(&format!("sqlite://{}", dir.join("missions.db").display())).await?;
    let server = Server::start(
        store.clone(),
        ServerOptions {
            webhook_secrets: vec![SecretString::from(SECRET)],
            handlers: HandlerRegistry::standard(),
            retry: RetryPolicy::default(),
            clock: clock.clone(),
            run_event_loop: true,
            missions: Some(MissionsOptions {
                control_token: None,
                control_hosts: Vec::new(),
                app: github,
                driver: DriverConfig {
                    reconcile_every: Duration::from_secs(5),
                    job_timeout: Duration::from_secs(120),
                    ..DriverConfig::default()
                },
            }),
        },
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app_url = format!("http://{}", listener.local_addr()?);
    let stop = tokio_util::sync::CancellationToken::new();
    let shutdown = stop.clone().cancelled_owned();
    let server_task = tokio::spawn(async move { server.serve(listener, shutdown).await });
    sim.set_webhook_target(&format!("{app_url}/webhook"), SecretString::from(SECRET));

    printer.line(format!("GitHub simulator at {api}; the App at {app_url}; repository {repo} (a small Python program with tests)"));

    let alice = Maintainer {
        http: reqwest::Client::new(),
        api: api.clone(),
        repo: repo.clone(),
        token: world.maintainer.token.clone(),
    };
    let mut seen = Seen::default();
    let deadline = tokio::time::Instant::now() + options.timeout;

    // Open and label the issue.
    let issue = alice
        .call(
            "POST",
            "/issues",
            json!({"title": project::ISSUE_TITLE, "body": project::ISSUE_BODY}),
        )
        .await?["number"]
        .as_u64()
        .context("issue number")?;
    printer.line(format!(
        "alice opened issue #{issue}: {} ({api}/repos/{repo}/issues/{issue})",
        project::ISSUE_TITLE
    ));
    printer.line(format!(
        "mission control: {app_url}/missions/{repo}/{issue}"
    ));
    alice
        .call(
            "POST",
            &format!("/issues/{issue}/labels"),
            json!({"labels": ["mission"]}),
        )
        .await?;
    printer.line(format!("alice added the label `mission` to #{issue}"));

    let mut answered = false;
    let mut approved = false;
    let mut merged: BTreeSet<u64> = BTreeSet::new();
    let mut changes = sim.subscribe();
    let report = loop {
        changes.borrow_and_update();
        report_news(&sim, &repo, &api, &printer, &mut seen);
        let state = Snapshot::take(&sim, &repo, issue);
        if state.issue_closed {
            break state.final_report.unwrap_or_default();
        }
        if !answered && state.questions_asked {
            answered = true;
            alice
                .call(
                    "POST",
                    &format!("/issues/{issue}/comments"),
                    json!({"body": "Yes: compare words case-insensitively."}),
                )
                .await?;
            printer.line(format!(
                "alice answered on #{issue}: \"Yes: compare words case-insensitively.\""
            ));
        }
        if !approved && let Some(pr) = state.plan_pr {
            approved = true;
            alice
                .call(
                    "POST",
                    &format!("/pulls/{pr}/reviews"),
                    json!({"event": "APPROVE", "body": "The plan looks right."}),
                )
                .await?;
            printer.line(format!("alice approved the plan PR #{pr}"));
        }
        for pr in state.ready_to_merge {
            if merged.insert(pr) {
                alice
                    .call("PUT", &format!("/pulls/{pr}/merge"), json!({}))
                    .await?;
                printer.line(format!(
                    "alice merged milestone PR #{pr} ({api}/repos/{repo}/pulls/{pr})"
                ));
            }
        }
        if let Some(paused) = state.paused {
            bail!("the mission paused: {paused}");
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            bail!(
                "the demo mission did not finish within {:?}",
                options.timeout
            );
        }
    };
    report_news(&sim, &repo, &api, &printer, &mut seen);
    printer.line(format!(
        "issue #{issue} closed with the mission's final report:"
    ));
    println!("\n{report}");
    if options.keep {
        println!(
            "Still running (Ctrl-C to stop):\n  simulator API  {api}/repos/{repo}\n  issue          {api}/repos/{repo}/issues/{issue}\n  git            git clone {api}/{repo}.git (token in {})\n  App            {app_url}/healthz\n  data           {}",
            dir.join("alice.token").display(),
            dir.display()
        );
        std::fs::write(dir.join("alice.token"), &world.maintainer.token)?;
        crate::server::shutdown_signal()?.await;
    }
    stop.cancel();
    server_task.await??;
    store.close().await;
    sim.shutdown();
    Ok(report)
}

struct Maintainer {
    http: reqwest::Client,
    api: String,
    repo: String,
    token: String,
}

impl Maintainer {
    async fn call(&self, method: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}/repos/{}{path}", self.api, self.repo);
        let response = self
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes())?, &url)
            .bearer_auth(&self.token)
            .header("accept", "application/vnd.github+json")
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {body}");
        }
        Ok(body)
    }
}

/// What the maintainer reacts to.
pub(super) struct Snapshot {
    pub questions_asked: bool,
    pub plan_pr: Option<u64>,
    pub ready_to_merge: Vec<u64>,
    pub issue_closed: bool,
    pub final_report: Option<String>,
    pub paused: Option<String>,
}

impl Snapshot {
    pub fn take(sim: &Sim, repo: &str, issue: u64) -> Snapshot {
        let bot = format!("{}[bot]", sample::APP_SLUG);
        sim.read(|w| {
            let r = &w.repos[repo];
            let app_comments: Vec<_> = r.comments.values().filter(|c| c.user == bot).collect();
            let on_issue = |text: &str| {
                app_comments
                    .iter()
                    .find(|c| c.issue_number == issue && c.body.contains(text))
                    .map(|c| c.body.clone())
            };
            let plan_branch = format!("missions/{issue}/plan");
            let plan_pr = r
                .issues
                .values()
                .find(|i| i.pull.as_ref().is_some_and(|p| p.head_ref == plan_branch))
                .map(|i| i.number);
            let ready_to_merge = r
                .issues
                .values()
                .filter(|i| {
                    i.state == crate::sim::state::IssueState::Open
                        && i.pull.as_ref().is_some_and(|p| p.merged_at.is_none())
                        && app_comments.iter().any(|c| {
                            c.issue_number == i.number && c.body.contains("Ready to merge")
                        })
                })
                .map(|i| i.number)
                .collect();
            Snapshot {
                questions_asked: on_issue("the orchestrator has questions").is_some(),
                plan_pr,
                ready_to_merge,
                issue_closed: r.issues[&issue].state == crate::sim::state::IssueState::Closed,
                final_report: on_issue("## Mission complete").map(|b| strip_marker(&b)),
                paused: on_issue("The mission is paused").map(|b| strip_marker(&b)),
            }
        })
    }
}

fn strip_marker(body: &str) -> String {
    body.lines()
        .filter(|l| !l.trim_start().starts_with("<!-- missions:"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_owned()
}

/// The comment's first line, and the line after it when the first introduces it
/// (ends with a colon): enough to follow the story.
fn first_line(body: &str) -> String {
    let mut lines = body
        .lines()
        .map(|l| l.trim())
        // Hidden markers (the sticky comment's, the effects') are not news.
        .filter(|l| !l.starts_with("<!--"))
        .map(|l| l.trim_start_matches('#').trim())
        .filter(|l| !l.is_empty());
    let mut line = lines.next().unwrap_or("").to_owned();
    if line.ends_with(':')
        && let Some(next) = lines.next()
    {
        line = format!("{line} {next}");
    }
    if line.chars().count() > 110 {
        format!("{}…", line.chars().take(110).collect::<String>())
    } else {
        line
    }
}

/// Prints what is new on the simulator since the last call.
fn report_news(sim: &Sim, repo: &str, api: &str, printer: &Printer, seen: &mut Seen) {
    let bot = format!("{}[bot]", sample::APP_SLUG);
    let mut lines = Vec::new();
    sim.read(|w| {
        let r = &w.repos[repo];
        for run in r.runs.values() {
            let job = run.inputs.get("job").and_then(Value::as_str).unwrap_or("?");
            let role = run
                .inputs
                .get("role")
                .and_then(Value::as_str)
                .unwrap_or("?");
            if seen.runs_started.insert(run.id) {
                lines.push(format!(
                    "job {job} ({role}) dispatched on {} ({api}/repos/{repo}/actions/runs/{})",
                    run.head_branch, run.id
                ));
            }
            if run.conclusion.is_some() && seen.runs_done.insert(run.id) {
                lines.push(format!(
                    "job {job} finished: {} (log: {api}/_sim/repos/{repo}/runs/{}/log)",
                    run.conclusion.as_deref().unwrap_or("?"),
                    run.id
                ));
            }
        }
        for issue in r.issues.values() {
            if let Some(pull) = &issue.pull
                && seen.pulls.insert(issue.number)
            {
                lines.push(format!(
                    "{} opened PR #{}: {} ({} → {})",
                    issue.user, issue.number, issue.title, pull.head_ref, pull.base_ref
                ));
            }
        }
        for c in r.comments.values() {
            if c.user == bot && seen.comments.insert(c.id) {
                lines.push(format!(
                    "{bot} commented on #{}: {}",
                    c.issue_number,
                    first_line(&c.body)
                ));
            }
        }
        for check in r.check_runs.values() {
            if let Some(conclusion) = &check.conclusion
                && seen.checks_done.insert(check.id)
            {
                lines.push(format!(
                    "check run `{}` on {}: {conclusion} — {}",
                    check.name,
                    &check.head_sha[..7.min(check.head_sha.len())],
                    check.output.title.as_deref().unwrap_or("")
                ));
            }
        }
    });
    for line in lines {
        printer.line(line);
    }
}
