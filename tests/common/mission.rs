//! The mission tester: the whole App and the simulator with the demo
//! repository, its jobs run by `missions job` with the scripted model, and the
//! moves of the people (label, answer, review, merge) as REST calls.

use std::time::Duration;

use super::scenario::{DEADLINE, Scenario, ScenarioOptions};
use missions::demo::{self, scripts::Story};
use missions::engine::missions::DriverConfig;
use missions::sim::FaultConfig;
use missions::sim::sample;
use serde_json::{Value, json};

/// The demo repository's commands in `.github/missions.yml`.
#[allow(dead_code)]
pub const DEMO_COMMANDS: &str = "commands:\n  test: [\"python3 -m unittest -q\"]\n";

/// The demo repository with `.github/missions.yml` edited by `change`.
#[allow(dead_code)]
pub fn with_settings(
    spec: missions::sim::RepoSpec,
    change: impl Fn(&str) -> String,
) -> missions::sim::RepoSpec {
    let mut spec = spec;
    for (path, content) in &mut spec.files {
        if path == ".github/missions.yml" {
            let text = String::from_utf8(content.clone()).unwrap();
            let changed = change(&text);
            assert_ne!(changed, text, "the settings did not change");
            *content = changed.into_bytes();
        }
    }
    spec
}

/// A scenario with the demo repository and the mission driver running.
pub struct MissionTest {
    pub t: Scenario,
    _scripts: tempfile::TempDir,
}

/// What a person sees of a check run.
#[derive(Debug, Clone)]
pub struct Check {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    pub conclusion: Option<String>,
    pub title: String,
    pub summary: String,
}

impl MissionTest {
    pub async fn start(story: Story) -> MissionTest {
        Self::start_with(story, FaultConfig::default()).await
    }

    pub async fn start_with(story: Story, faults: FaultConfig) -> MissionTest {
        Self::start_full(story, faults, |spec| spec).await
    }

    /// With the demo repository as `edit` changes it.
    pub async fn start_full(
        story: Story,
        faults: FaultConfig,
        edit: impl FnOnce(missions::sim::RepoSpec) -> missions::sim::RepoSpec,
    ) -> MissionTest {
        Self::start_timed(story, faults, edit, None).await
    }

    /// As [`MissionTest::start_full`], with the runner's limit on one job.
    pub async fn start_timed(
        story: Story,
        faults: FaultConfig,
        edit: impl FnOnce(missions::sim::RepoSpec) -> missions::sim::RepoSpec,
        job_timeout: Option<Duration>,
    ) -> MissionTest {
        Self::start_served(story, faults, edit, job_timeout, |_| None).await
    }

    /// As [`MissionTest::start_timed`], with the server's `[model]` that
    /// `server_model` makes from the scripts' directory.
    pub async fn start_served(
        story: Story,
        faults: FaultConfig,
        edit: impl FnOnce(missions::sim::RepoSpec) -> missions::sim::RepoSpec,
        job_timeout: Option<Duration>,
        server_model: impl FnOnce(&std::path::Path) -> Option<missions::llm::config::ModelConfig>,
    ) -> MissionTest {
        Self::start_inner(
            story,
            faults,
            edit,
            job_timeout,
            server_model,
            None,
            Vec::new(),
        )
        .await
    }

    /// With the repository's own CI: push-triggered workflows (file → its
    /// jobs) the simulator runs on every push, as GitHub Actions does.
    #[allow(dead_code)]
    pub async fn start_with_ci(
        story: Story,
        edit: impl FnOnce(missions::sim::RepoSpec) -> missions::sim::RepoSpec,
        push_workflows: Vec<(String, Vec<missions::sim::SimJob>)>,
    ) -> MissionTest {
        Self::start_inner(
            story,
            FaultConfig::default(),
            edit,
            None,
            |_| None,
            None,
            push_workflows,
        )
        .await
    }

    /// With `clock` as the simulator's and the App's clock.
    pub async fn start_clocked(story: Story, clock: missions::clock::SharedClock) -> MissionTest {
        Self::start_inner(
            story,
            FaultConfig::default(),
            |spec| spec,
            None,
            |_| None,
            Some(clock),
            Vec::new(),
        )
        .await
    }

    async fn start_inner(
        story: Story,
        faults: FaultConfig,
        edit: impl FnOnce(missions::sim::RepoSpec) -> missions::sim::RepoSpec,
        job_timeout: Option<Duration>,
        server_model: impl FnOnce(&std::path::Path) -> Option<missions::llm::config::ModelConfig>,
        clock: Option<missions::clock::SharedClock>,
        push_workflows: Vec<(String, Vec<missions::sim::SimJob>)>,
    ) -> MissionTest {
        let scripts = tempfile::tempdir().unwrap();
        demo::scripts::write(scripts.path(), &story).unwrap();
        let t = Scenario::start(ScenarioOptions {
            faults,
            workflow_jobs: vec![(
                sample::WORKFLOW_FILE.to_owned(),
                demo::workflow_jobs(std::path::Path::new(env!("CARGO_BIN_EXE_missions"))),
            )],
            missions: Some(DriverConfig {
                reconcile_every: Duration::from_secs(2),
                job_timeout: Duration::from_secs(120),
                server_model: server_model(scripts.path()).unwrap_or_default(),
                ..DriverConfig::default()
            }),
            repo: Some(edit(demo::repo_spec(scripts.path()))),
            job_timeout,
            clock,
            push_workflows,
            ..ScenarioOptions::default()
        })
        .await;
        MissionTest {
            t,
            _scripts: scripts,
        }
    }

    pub fn repo(&self) -> String {
        self.t.world.repo.clone()
    }

    /// Where the scripted model's scripts are (`<agent>.json`); a test may
    /// replace one before its job runs.
    pub fn scripts_dir(&self) -> &std::path::Path {
        self._scripts.path()
    }

    pub fn alice(&self) -> String {
        self.t.world.maintainer.login.clone()
    }

    pub fn bob(&self) -> String {
        self.t.world.reader.login.clone()
    }

    pub async fn open_labeled_issue(&self) -> u64 {
        let issue = self
            .t
            .open_issue(
                &self.alice(),
                demo::project::ISSUE_TITLE,
                demo::project::ISSUE_BODY,
            )
            .await;
        assert_eq!(
            self.t.label_issue(&self.alice(), issue, "mission").await,
            200
        );
        issue
    }

    pub async fn comment(&self, login: &str, number: u64, body: &str) {
        let answer = self
            .t
            .act(
                login,
                "POST",
                &format!("/repos/{}/issues/{number}/comments", self.repo()),
                Some(json!({ "body": body })),
            )
            .await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
    }

    pub async fn review(&self, login: &str, pr: u64, event: &str, body: &str) -> u16 {
        self.t
            .act(
                login,
                "POST",
                &format!("/repos/{}/pulls/{pr}/reviews", self.repo()),
                Some(json!({ "event": event, "body": body })),
            )
            .await
            .status
    }

    pub async fn merge(&self, pr: u64) {
        let answer = self
            .t
            .act(
                &self.alice(),
                "PUT",
                &format!("/repos/{}/pulls/{pr}/merge", self.repo()),
                Some(json!({})),
            )
            .await;
        assert_eq!(answer.status, 200, "merge: {:?}", answer.body);
    }

    /// The PR whose head is `branch`, once it exists.
    pub async fn expect_pr(&self, branch: &str) -> u64 {
        let repo = self.repo();
        let branch = branch.to_owned();
        self.t
            .sim
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

    pub fn pr_head(&self, pr: u64) -> String {
        let repo = self.repo();
        self.t.sim.read(|w| {
            w.repos[&repo].issues[&pr]
                .pull
                .as_ref()
                .unwrap()
                .head_sha
                .clone()
        })
    }

    pub fn pr_state(&self, pr: u64) -> (String, bool) {
        let repo = self.repo();
        self.t.sim.read(|w| {
            let issue = &w.repos[&repo].issues[&pr];
            (
                format!("{:?}", issue.state).to_lowercase(),
                issue.pull.as_ref().unwrap().merged_at.is_some(),
            )
        })
    }

    pub fn checks(&self) -> Vec<Check> {
        let repo = self.repo();
        self.t.sim.read(|w| {
            w.repos[&repo]
                .check_runs
                .values()
                .map(|c| Check {
                    id: c.id,
                    name: c.name.clone(),
                    head_sha: c.head_sha.clone(),
                    conclusion: c.conclusion.clone(),
                    title: c.output.title.clone().unwrap_or_default(),
                    summary: c.output.summary.clone().unwrap_or_default(),
                })
                .collect()
        })
    }

    /// Both validator check runs completed on the PR's current head.
    pub async fn expect_checks_completed(&self, pr: u64) -> (Check, Check) {
        let repo = self.repo();
        self.t
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
                                .map(|c| Check {
                                    id: c.id,
                                    name: c.name.clone(),
                                    head_sha: c.head_sha.clone(),
                                    conclusion: c.conclusion.clone(),
                                    title: c.output.title.clone().unwrap_or_default(),
                                    summary: c.output.summary.clone().unwrap_or_default(),
                                })
                        };
                        Some((
                            find("missions / scrutiny")?,
                            find("missions / user-testing")?,
                        ))
                    })
                },
            )
            .await
            .unwrap()
    }

    pub async fn expect_issue_closed(&self, issue: u64) {
        let repo = self.repo();
        self.t
            .sim
            .wait_for(&format!("#{issue} closed"), DEADLINE, |s| {
                s.read(|w| {
                    (format!("{:?}", w.repos[&repo].issues[&issue].state).to_lowercase()
                        == "closed")
                        .then_some(())
                })
            })
            .await
            .unwrap();
    }

    /// The `job` input of every workflow run, in dispatch order.
    pub fn dispatched_jobs(&self) -> Vec<String> {
        let repo = self.repo();
        self.t.sim.read(|w| {
            let mut runs: Vec<_> = w.repos[&repo]
                .runs
                .values()
                .map(|r| {
                    (
                        r.id,
                        r.inputs
                            .get("job")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                    )
                })
                .collect();
            runs.sort();
            runs.into_iter().map(|(_, j)| j).collect()
        })
    }

    pub fn app_comments(&self, number: u64) -> Vec<String> {
        let repo = self.repo();
        let bot = format!("{}[bot]", sample::APP_SLUG);
        self.t.sim.read(|w| {
            w.repos[&repo]
                .comments
                .values()
                .filter(|c| c.issue_number == number && c.user == bot)
                .map(|c| c.body.clone())
                .collect()
        })
    }

    /// An issue labeled, and its plan PR approved by alice: (issue, plan PR).
    #[allow(dead_code)]
    pub async fn plan_approved(&self) -> (u64, u64) {
        let issue = self.open_labeled_issue().await;
        let plan_pr = self.expect_pr(&format!("missions/{issue}/plan")).await;
        assert_eq!(
            self.review(&self.alice(), plan_pr, "APPROVE", "").await,
            200
        );
        (issue, plan_pr)
    }

    /// Runs a milestone from its PR appearing to its merge; returns the PR.
    pub async fn milestone_passes_and_is_merged(
        &self,
        issue: u64,
        id: &str,
        features: &[&str],
    ) -> u64 {
        let pr = self.milestone_passes(issue, id, features).await;
        self.merge(pr).await;
        pr
    }

    /// Runs a milestone from its PR appearing to "Ready to merge"; returns the PR.
    #[allow(dead_code)]
    pub async fn milestone_passes(&self, issue: u64, id: &str, features: &[&str]) -> u64 {
        let pr = self
            .expect_pr(&format!("missions/{issue}/{}", id.to_lowercase()))
            .await;
        for f in features {
            self.t
                .expect_app_comment(pr, &format!("### Handoff: {f} "))
                .await;
        }
        let (scrutiny, user_testing) = self.expect_checks_completed(pr).await;
        assert_eq!(
            scrutiny.conclusion.as_deref(),
            Some("success"),
            "{scrutiny:?}"
        );
        assert_eq!(
            user_testing.conclusion.as_deref(),
            Some("success"),
            "{user_testing:?}"
        );
        assert!(scrutiny.summary.contains("✅ pass"), "{}", scrutiny.summary);
        self.t.expect_app_comment(pr, "Ready to merge").await;
        pr
    }

    /// The mission as the JSON API shows it.
    pub async fn api(&self, issue: u64) -> Value {
        let url = format!("{}/api/missions/{}/{issue}", self.t.app_url, self.repo());
        let response = self.t.http.get(url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.json().await.unwrap()
    }

    /// The App's mission control comments on the issue.
    pub fn stickies(&self, issue: u64) -> Vec<String> {
        self.app_comments(issue)
            .into_iter()
            .filter(|b| b.starts_with(missions::mission::control::STICKY_MARKER))
            .collect()
    }

    /// Waits until the sticky comment shows the API's figures; returns them.
    pub async fn expect_sticky_matches_api(&self, issue: u64) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let api = self.api(issue).await;
            let stickies = self.stickies(issue);
            assert!(
                stickies.len() <= 1,
                "more than one sticky comment: {stickies:#?}"
            );
            if let Some(body) = stickies.first() {
                let figures = missions::mission::control::sticky_figures(body);
                let want_features = format!(
                    "{} of {} done",
                    api["features"]["done"], api["features"]["total"]
                );
                let want_assertions = format!(
                    "{} of {} passing",
                    api["assertions"]["done"], api["assertions"]["total"]
                );
                let want_budget = format!("${}", api["budget"]["spent"].as_str().unwrap());
                if figures.get("features") == Some(&want_features)
                    && figures.get("assertions") == Some(&want_assertions)
                    && figures
                        .get("budget")
                        .is_some_and(|b| b.starts_with(&want_budget))
                {
                    return api;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sticky comment never matched the API: {stickies:#?}\n{api:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
