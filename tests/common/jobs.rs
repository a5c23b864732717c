//! `missions job` through the simulator, for the job tests and benches: the
//! simulator's Actions runner clones the branch and runs the real binary with
//! the dispatch's inputs, and the scripted model (configured in
//! `.github/missions.yml` on the default branch) drives the agent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use missions::sim::RepoSpec;
use missions::sim::sample;
use missions::sim::state::RunStatus;
use serde_json::{Value, json};

use super::scenario::{Scenario, ScenarioOptions};

/// A job runs a subprocess that clones, calls the model and pushes; the
/// simulator's own job timeout (60 s) ends it before this.
pub const RUN_DEADLINE: Duration = Duration::from_secs(120);
/// Every job token the simulator mints starts with this.
pub const TOKEN_PREFIX: &str = "ghs_job";

pub struct Harness {
    pub t: Scenario,
    pub scripts: tempfile::TempDir,
    pub transcripts: tempfile::TempDir,
}

/// What a finished run left.
pub struct Run {
    pub conclusion: String,
    pub log: String,
}

pub fn missions_yml(scripts: &Path, extra: &str) -> String {
    format!(
        "label: mission\n\
         models:\n  default:\n    provider: scripted\n    model: claude-sonnet-4-5\n    script: \"{}/{{agent}}.json\"\n{extra}",
        scripts.display()
    )
}

impl Harness {
    pub async fn start(extra_yml: &str) -> Harness {
        Self::start_with(extra_yml, &[]).await
    }

    /// As `start`, with more files on the default branch.
    pub async fn start_with(extra_yml: &str, files: &[(&str, &str)]) -> Harness {
        Self::start_opts(extra_yml, files, &[]).await
    }

    /// As `start_with`, with `job_env` in every job's environment, as a
    /// workflow maps secrets into `env:`. (The scenario does not pass the
    /// simulator's `job_env` on, so the job's command sources them from a
    /// file: the values never appear on its command line or in the run log.)
    pub async fn start_opts(
        extra_yml: &str,
        files: &[(&str, &str)],
        job_env: &[(&str, &str)],
    ) -> Harness {
        Self::start_full(extra_yml, files, job_env, None).await
    }

    /// As `start_opts`; with `between`, a job that runs between the agent's
    /// and the publish job (`sh -c` the script, with a read-only token): what
    /// an agent that took over its job's runner could do to the result.
    pub async fn start_full(
        extra_yml: &str,
        files: &[(&str, &str)],
        job_env: &[(&str, &str)],
        between: Option<String>,
    ) -> Harness {
        let scripts = tempfile::tempdir().unwrap();
        let transcripts = tempfile::tempdir().unwrap();
        // The mission workflow's two jobs: the agent's (read-only token; it
        // leaves its result) and the publish job's (it checks and pushes).
        let mut jobs =
            missions::demo::workflow_jobs(std::path::Path::new(env!("CARGO_BIN_EXE_missions")));
        let mut argv = std::mem::take(&mut jobs[0].command);
        argv.push("--transcript-dir".into());
        argv.push(transcripts.path().display().to_string());
        if !job_env.is_empty() {
            let env_file = scripts.path().join("job-env.sh");
            let exports: String = job_env
                .iter()
                .map(|(k, v)| {
                    if *k == "PATH" {
                        // May extend the runner's: `dir:$PATH`.
                        assert!(!v.contains('"') && !v.contains('`'), "{k}");
                        return format!("export PATH=\"{v}\"\n");
                    }
                    assert!(!v.contains('\''), "{k}");
                    format!("export {k}='{v}'\n")
                })
                .collect();
            std::fs::write(&env_file, exports).unwrap();
            let mut wrapped = vec![
                "sh".to_owned(),
                "-c".to_owned(),
                ". \"$0\" && exec \"$@\"".to_owned(),
                env_file.display().to_string(),
            ];
            wrapped.extend(argv);
            argv = wrapped;
        }
        let mut spec = RepoSpec::new(sample::REPO)
            .file(
                ".github/workflows/missions.yml",
                sample::WORKFLOW_YAML.as_bytes().to_vec(),
            )
            .file(
                "src/lib.rs",
                b"pub fn add(a: i32, b: i32) -> i32 { a + b }\n".to_vec(),
            )
            .file(
                ".github/missions.yml",
                missions_yml(scripts.path(), extra_yml).into_bytes(),
            );
        for (path, content) in files {
            spec = spec.file(path, content.as_bytes().to_vec());
        }
        jobs[0].command = argv;
        if let Some(script) = between {
            jobs.insert(
                1,
                missions::sim::SimJob {
                    name: "between".into(),
                    command: vec!["sh".into(), "-c".into(), script],
                    contents_write: false,
                    always: false,
                },
            );
        }
        let t = Scenario::start(ScenarioOptions {
            workflow_jobs: vec![(sample::WORKFLOW_FILE.to_owned(), jobs)],
            repo: Some(spec),
            ..ScenarioOptions::default()
        })
        .await;
        Harness {
            t,
            scripts,
            transcripts,
        }
    }

    pub fn alice(&self) -> String {
        self.t.world.maintainer.login.clone()
    }

    pub fn repo(&self) -> String {
        self.t.world.repo.clone()
    }

    pub fn script(&self, name: &str, turns: Vec<Value>) {
        std::fs::write(
            self.scripts.path().join(format!("{name}.json")),
            serde_json::to_vec_pretty(&Value::Array(turns)).unwrap(),
        )
        .unwrap();
    }

    /// Creates `branch` from main, with `files` committed on it; returns its head.
    pub async fn branch(&self, branch: &str, files: &[(&str, String)]) -> String {
        let main = self.t.expect_branch("main").await;
        let answer = self
            .t
            .act(
                &self.alice(),
                "POST",
                &format!("/repos/{}/git/refs", self.repo()),
                Some(json!({"ref": format!("refs/heads/{branch}"), "sha": main})),
            )
            .await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
        for (path, content) in files {
            // Replacing a file names the blob it replaces.
            let existing = self
                .t
                .act(
                    &self.alice(),
                    "GET",
                    &format!("/repos/{}/contents/{path}?ref={branch}", self.repo()),
                    None,
                )
                .await;
            let answer = self
                .t
                .act(
                    &self.alice(),
                    "PUT",
                    &format!("/repos/{}/contents/{path}", self.repo()),
                    Some(json!({
                        "message": format!("add {path}"),
                        "content": base64::engine::general_purpose::STANDARD.encode(content),
                        "branch": branch,
                        "sha": existing.body.get("sha"),
                    })),
                )
                .await;
            assert!(matches!(answer.status, 200 | 201), "{:?}", answer.body);
        }
        self.head(branch).await.unwrap()
    }

    pub async fn head(&self, branch: &str) -> Option<String> {
        self.t
            .sim
            .git()
            .resolve_ref(&self.repo(), &format!("refs/heads/{branch}"))
            .await
            .unwrap()
    }

    /// Dispatches the workflow on `branch` as the server would, and waits for
    /// the run to complete.
    pub async fn run_job(&self, branch: &str, inputs: Value) -> Run {
        let answer = self
            .t
            .act(
                &self.alice(),
                "POST",
                &format!(
                    "/repos/{}/actions/workflows/{}/dispatches",
                    self.repo(),
                    sample::WORKFLOW_FILE
                ),
                Some(json!({"ref": branch, "inputs": inputs, "return_run_details": true})),
            )
            .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let run_id = answer.body["workflow_run_id"].as_u64().unwrap();
        let repo = self.repo();
        let conclusion = self
            .t
            .sim
            .wait_for(&format!("run {run_id} to complete"), RUN_DEADLINE, |s| {
                s.read(|w| {
                    let run = &w.repos[&repo].runs[&run_id];
                    (run.status == RunStatus::Completed)
                        .then(|| run.conclusion.clone().unwrap_or_default())
                })
            })
            .await
            .unwrap();
        let log = self.t.sim.run_log(&repo, run_id).unwrap_or_default();
        Run { conclusion, log }
    }

    pub async fn json_file(&self, path: &str, branch: &str) -> Value {
        let text = self
            .t
            .file(path, branch)
            .await
            .unwrap_or_else(|| panic!("{path} is not on {branch}"));
        serde_json::from_str(&text).unwrap()
    }

    /// `git` in the simulator's bare repository.
    pub fn git(&self, args: &[&str]) -> String {
        let dir: PathBuf = self.t.sim.git().repo_path(&self.repo()).unwrap();
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every agent run's recorded conversation, by agent name.
    pub fn transcripts(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = std::fs::read_dir(self.transcripts.path())
            .unwrap()
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// A REST call with `token` (a user the scenario does not know).
    pub async fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let response = self
            .t
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", self.t.sim.url()),
            )
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "application/vnd.github+json")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `login` comments on issue (or PR) `number`.
    pub async fn comment(&self, login: &str, number: u64, body: &str) {
        let answer = self
            .t
            .act(
                login,
                "POST",
                &format!("/repos/{}/issues/{number}/comments", self.repo()),
                Some(json!({"body": body})),
            )
            .await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
    }

    pub fn transcript(&self, agent: &str) -> Value {
        let path = self.transcripts.path().join(format!("{agent}.json"));
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    /// Runs F1's worker job on `branch` with `turns` before its handoff.
    pub async fn run_f1(&self, branch: &str, issue: u64, mut turns: Vec<Value>) -> Run {
        turns.push(finish(handoff("F1")));
        self.script("feature-F1.1", turns);
        self.run_job(
            branch,
            inputs("worker", issue, "feature", "F1", "feature-F1.1"),
        )
        .await
    }

    pub async fn stop(self) {
        self.t.stop().await;
    }
}

pub fn inputs(role: &str, mission: u64, task: &str, feature: &str, job: &str) -> Value {
    json!({
        "role": role,
        "mission": mission.to_string(),
        "task": task,
        "feature": feature,
        "job": job,
        "config_ref": "main",
    })
}

pub fn call(name: &str, input: Value) -> Value {
    json!({"name": name, "input": input})
}

pub fn turn(calls: Vec<Value>) -> Value {
    json!({"tool_calls": calls})
}

pub fn finish(value: Value) -> Value {
    turn(vec![call("finish", value)])
}

pub fn handoff(feature: &str) -> Value {
    json!({
        "feature": feature,
        "summary": "Done.",
        "completed": ["the file"],
        "undone": [],
        "issues": [],
        "followed_procedures": true,
        // The model's own claim; the harness replaces it with its log.
        "commands": [{"command": "cargo test", "exit_code": 0}]
    })
}

/// What one scrutiny job of [`review_eight_features`] gave.
pub struct Reviewed {
    /// The scrutiny report on the reports branch.
    pub report: Value,
    /// The most reviewers running at the same time.
    pub most_at_once: usize,
    /// From the first reviewer's start to the last one's end.
    pub reviews: Duration,
    /// The job's run, dispatch to completion.
    pub job: Duration,
}

/// Scrutiny of one milestone of eight features (F3's reviewer fails it),
/// with `parallel` in `.github/missions.yml`; each reviewer reads a file,
/// then finishes, its model taking `latency(n)` ms per answer for the n-th
/// feature (0-based).
pub async fn review_eight_features(parallel: &str, latency: impl Fn(usize) -> u64) -> Reviewed {
    let h = Harness::start(parallel).await;
    let issue = h.t.open_issue(&h.alice(), "Count", "Eight files.").await;
    let ids: Vec<String> = (1..=8).map(|i| i.to_string()).collect();
    let plan = json!({
        "title": "Eight",
        "summary": "Eight files.",
        "assertions": ids.iter().map(|i| json!({"id": format!("A{i}"), "text": format!("`cat {i}.txt` prints {i}")})).collect::<Vec<_>>(),
        "milestones": [{"id": "M1", "title": "All eight", "features": ids.iter().map(|i| json!({
            "id": format!("F{i}"), "title": format!("File {i}"), "description": format!("Write {i}.txt."), "assertions": [format!("A{i}")]
        })).collect::<Vec<_>>()}]
    });
    let branch = format!("missions/{issue}/m1");
    h.branch(
        &branch,
        &[(&format!(".missions/{issue}/plan.json"), plan.to_string())],
    )
    .await;
    for (n, i) in ids.iter().enumerate() {
        let verdict = if i == "3" { "fail" } else { "pass" };
        let mut read = turn(vec![call(
            "read_file",
            json!({"path": format!(".missions/{issue}/plan.json")}),
        )]);
        read["latency_ms"] = json!(latency(n));
        let mut answer = finish(json!({
            "feature": format!("F{i}"),
            "verdict": verdict,
            "findings": if verdict == "fail" { json!([format!("{i}.txt is empty")]) } else { json!([]) },
            "assertions": [{"id": format!("A{i}"), "status": verdict, "evidence": format!("read {i}.txt")}]
        }));
        answer["latency_ms"] = json!(latency(n));
        h.script(&format!("M1-scrutiny-1.1-review-F{i}"), vec![read, answer]);
    }
    let started = std::time::Instant::now();
    let run = h
        .run_job(
            &branch,
            inputs("scrutiny", issue, "validate", "", "M1-scrutiny-1.1"),
        )
        .await;
    assert_eq!(run.conclusion, "success", "{}", run.log);
    let job = started.elapsed();
    let report = h
        .json_file(
            &format!(".missions/{issue}/reports/M1-scrutiny.json"),
            &format!("missions/{issue}/reports"),
        )
        .await;
    // When each reviewer ran, from its transcript: the most that overlapped.
    let spans: Vec<(u64, u64)> = ids
        .iter()
        .map(|i| {
            let t = h.transcript(&format!("M1-scrutiny-1.1-review-F{i}"));
            (
                t["started_at_ms"].as_u64().unwrap(),
                t["ended_at_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    let most = spans
        .iter()
        .map(|&(start, _)| {
            spans
                .iter()
                .filter(|&&(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap();
    let first = spans.iter().map(|s| s.0).min().unwrap();
    let last = spans.iter().map(|s| s.1).max().unwrap();
    h.stop().await;
    Reviewed {
        report,
        most_at_once: most,
        reviews: Duration::from_millis(last - first),
        job,
    }
}
