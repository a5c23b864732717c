//! GitHub Actions, locally: `workflow_dispatch` queues a run, the runner
//! executes the workflow's configured command in a fresh clone of the ref, and
//! the run moves requested → in_progress → completed with the `workflow_run`
//! and `workflow_job` webhooks GitHub sends at each step.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::SimInner;
use super::api::{ApiError, ApiResult, Caller, JsonBody, actor, full, ok, required_str};
use super::faults::JobFault;
use super::gitapi::resolve_commitish;
use super::render::{self, RepoTimes, SimpleCommit};
use super::runner::{self, Conclusion, JobSpec};
use super::state::{
    Job, JobStep, Permission, RunStatus, Token, TokenSubject, Workflow, WorkflowRun, World,
};
use crate::sim_fields;

type Sim = Arc<SimInner>;

/// The workflow's top-level `run-name:` with `${{ inputs.X }}` replaced, as
/// GitHub shows it as the run's `display_title`; `None` without one. Only input
/// expressions are evaluated (the simulator does not interpret workflows).
pub fn run_name(workflow: &str, inputs: &serde_json::Map<String, Value>) -> Option<String> {
    let line = workflow.lines().find(|l| l.starts_with("run-name:"))?;
    let raw = line["run-name:".len()..].trim();
    let raw = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
        .unwrap_or(raw);
    let substituted = substitute_inputs(&[raw.to_owned()], inputs);
    Some(substituted.into_iter().next().unwrap_or_default())
}

/// Replaces `${{ inputs.NAME }}` in each argument, as an expression in a `run:` step would.
/// Arguments stay separate argv entries, so an input cannot inject a shell command.
pub fn substitute_inputs(args: &[String], inputs: &serde_json::Map<String, Value>) -> Vec<String> {
    args.iter()
        .map(|arg| {
            let mut out = arg.clone();
            for (name, value) in inputs {
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                for pattern in [
                    format!("${{{{ inputs.{name} }}}}"),
                    format!("${{{{inputs.{name}}}}}"),
                ] {
                    out = out.replace(&pattern, &text);
                }
            }
            // An input the dispatch did not send is '' in an expression, as
            // on GitHub (the template's optional inputs default to '').
            without_unsent_inputs(&out)
        })
        .collect()
}

/// `arg` with every remaining `${{ inputs.NAME }}` replaced by nothing.
fn without_unsent_inputs(arg: &str) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(start) = rest.find("${{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let inner = rest[start + 3..start + len].trim();
        let is_input = inner.strip_prefix("inputs.").is_some_and(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
        out.push_str(&rest[..start]);
        if !is_input {
            out.push_str(&rest[start..start + len + 2]);
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

pub(crate) async fn head_commit(sim: &SimInner, name: &str, sha: &str) -> Option<SimpleCommit> {
    let c = sim.git.commit(name, sha).await.ok().flatten()?;
    Some(SimpleCommit {
        id: c.sha,
        tree_id: c.tree,
        message: c.message,
        timestamp: c.committer.date,
        author_name: c.author.name,
        author_email: c.author.email,
        committer_name: c.committer.name,
        committer_email: c.committer.email,
    })
}

/// Sends `workflow_run.<action>` for a run.
fn emit_run(sim: &SimInner, name: &str, run_id: u64, action: &str, commit: Option<&SimpleCommit>) {
    let world = sim.world();
    let Some(repo) = world.repos.get(name) else {
        return;
    };
    let Some(run) = repo.runs.get(&run_id) else {
        return;
    };
    let Some(wf) = repo.workflows.iter().find(|w| w.id == run.workflow_id) else {
        return;
    };
    let fields = sim_fields!(
        "action" => action,
        "workflow" => render::workflow(&sim.urls, repo, wf),
        "workflow_run" => render::workflow_run(&sim.urls, &world, repo, run, commit),
    );
    sim.emit(&world, "workflow_run", name, &run.actor.clone(), fields);
}

fn emit_job(sim: &SimInner, name: &str, run_id: u64, action: &str) {
    let world = sim.world();
    let Some(repo) = world.repos.get(name) else {
        return;
    };
    let Some(run) = repo.runs.get(&run_id) else {
        return;
    };
    let fields = sim_fields!(
        "action" => action,
        "workflow_job" => render::job(&sim.urls, repo, run, &run.job),
    );
    sim.emit(&world, "workflow_job", name, &run.actor.clone(), fields);
}

/// `POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches`.
pub async fn dispatch(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, workflow_id)): Path<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    let login = {
        let world = sim.world();
        let a = actor(&world, &caller, &name)?;
        if a.permission < Permission::Write {
            return Err(ApiError::forbidden("Must have admin rights to Repository."));
        }
        a.login
    };
    let reference = required_str(&body, "Workflow", "ref")?;
    let inputs = match body.get("inputs") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                "Workflow",
                "inputs",
                "invalid",
                "inputs must be an object",
            ));
        }
    };
    if inputs.len() > 25 {
        return Err(ApiError::unprocessable(
            "You can only specify up to 25 inputs.",
        ));
    }
    let branch = reference
        .strip_prefix("refs/heads/")
        .unwrap_or(reference)
        .to_owned();
    let sha = resolve_commitish(&sim, &name, reference)
        .await
        .map_err(|_| ApiError::unprocessable(format!("No ref found for: {reference}")))?;

    // The workflow, by numeric id or file name; its file must exist at the ref.
    let path = {
        let world = sim.world();
        let repo = &world.repos[&name];
        match workflow_id.parse::<u64>() {
            Ok(id) => repo
                .workflows
                .iter()
                .find(|w| w.id == id)
                .map(|w| w.path.clone())
                .ok_or_else(ApiError::not_found)?,
            Err(_) => format!(".github/workflows/{workflow_id}"),
        }
    };
    // GitHub finds the workflow on the default branch, then runs the file
    // as it is at the ref: both must have it.
    let default_branch = sim.world().repos[&name].default_branch.clone();
    let on_default = resolve_commitish(&sim, &name, &default_branch).await?;
    if !matches!(
        sim.git.read_path(&name, &on_default, &path).await?,
        Some(super::git::PathContent::File { .. })
    ) {
        return Err(ApiError::not_found());
    }
    let file = match sim.git.read_path(&name, &sha, &path).await? {
        Some(super::git::PathContent::File { content, .. }) => content,
        _ => return Err(ApiError::not_found()),
    };
    if !String::from_utf8_lossy(&file).contains("workflow_dispatch") {
        return Err(ApiError::unprocessable(
            "Workflow does not have 'workflow_dispatch' trigger",
        ));
    }
    let file_name = path.rsplit('/').next().unwrap_or(&path).to_owned();
    let jobs = workflow_jobs(&sim.config, &file_name);
    let run_name = run_name(&String::from_utf8_lossy(&file), &inputs);

    let now = sim.clock.now();
    let run_id = {
        let mut world = sim.world();
        let workflow_id = self::workflow_id(&mut world, &name, &path, now);
        let run_id = world.next_id();
        let job_id = world.next_id();
        // A workflow run has a check suite of its own, GitHub Actions' (not
        // the suite of the App's check runs on the commit).
        let suite = world.next_id();
        let repo = world.repos.get_mut(&name).expect("repo");
        let run_number = repo
            .runs
            .values()
            .filter(|r| r.workflow_id == workflow_id)
            .count() as u64
            + 1;
        repo.runs.insert(
            run_id,
            WorkflowRun {
                id: run_id,
                run_number,
                workflow_id,
                head_branch: branch.clone(),
                head_sha: sha.clone(),
                actor: login.clone(),
                inputs: inputs.clone(),
                run_name,
                status: RunStatus::Queued,
                conclusion: None,
                created_at: now,
                updated_at: now,
                run_started_at: None,
                check_suite_id: suite,
                job: Job {
                    id: job_id,
                    name: "run".into(),
                    status: RunStatus::Queued,
                    conclusion: None,
                    created_at: now,
                    started_at: None,
                    completed_at: None,
                    steps: Vec::new(),
                },
                log: String::new(),
                secrets_masked: 0,
            },
        );
        run_id
    };
    let commit = head_commit(&sim, &name, &sha).await;
    emit_run(&sim, &name, run_id, "requested", commit.as_ref());
    emit_job(&sim, &name, run_id, "queued");
    sim.bump();

    let fault = sim.faults.job();
    tokio::spawn(execute(
        sim.clone(),
        name.clone(),
        run_id,
        jobs,
        fault,
        commit,
    ));

    if body.get("return_run_details").and_then(Value::as_bool) == Some(true) {
        let r = format!("{}/repos/{name}/actions/runs/{run_id}", sim.urls.api);
        return ok(
            StatusCode::OK,
            json!({
                "workflow_run_id": run_id,
                "run_url": r,
                "html_url": format!("{}/{name}/actions/runs/{run_id}", sim.urls.web),
            }),
        );
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The id of the workflow at `path` (`.github/workflows/<file>`) in
/// repository `name`, registered on first use.
pub(crate) fn workflow_id(
    world: &mut World,
    name: &str,
    path: &str,
    now: time::OffsetDateTime,
) -> u64 {
    let existing = world.repos[name]
        .workflows
        .iter()
        .find(|w| w.path == path)
        .map(|w| w.id);
    if let Some(id) = existing {
        return id;
    }
    let id = world.next_id();
    let file_name = path.rsplit('/').next().unwrap_or(path);
    let wf_name = file_name
        .trim_end_matches(".yml")
        .trim_end_matches(".yaml")
        .to_owned();
    world
        .repos
        .get_mut(name)
        .expect("repo")
        .workflows
        .push(Workflow {
            id,
            name: wf_name,
            path: path.to_owned(),
            created_at: now,
        });
    id
}

/// The jobs a dispatch of `file_name` runs: its configured jobs, else its one
/// command as a job with contents write (empty: nothing configured).
fn workflow_jobs(config: &super::SimConfig, file_name: &str) -> Vec<super::SimJob> {
    if let Some(jobs) = config.workflow_jobs.get(file_name) {
        return jobs.clone();
    }
    config
        .workflow_commands
        .get(file_name)
        .map(|command| {
            vec![super::SimJob {
                always: false,
                name: "run".into(),
                command: command.clone(),
                contents_write: true,
            }]
        })
        .unwrap_or_default()
}

/// A fresh `GITHUB_TOKEN` for one job of run `run_id` (the caller revokes
/// it when the job ends).
pub(crate) fn issue_job_token(
    sim: &SimInner,
    repository: &str,
    run_id: u64,
    write: bool,
    expires_at: time::OffsetDateTime,
) -> String {
    let token = format!("ghs_job{}", uuid::Uuid::new_v4().simple());
    sim.world().issue_token(
        token.clone(),
        Token {
            subject: TokenSubject::Job {
                repository: repository.to_owned(),
                run_id,
                write,
            },
            expires_at: Some(expires_at),
        },
    );
    token
}

/// Where `${{ sim.artifacts }}` points: shared by the jobs of one run.
const ARTIFACTS_PATTERN: &str = "${{ sim.artifacts }}";

/// The outcomes of a run's jobs as the run's one job record: the steps of
/// each (prefixed with the job's name when there are several), the logs one
/// after another, the conclusion of the last that ran.
fn combine(names: &[String], mut outcomes: Vec<runner::JobOutcome>) -> runner::JobOutcome {
    if outcomes.len() == 1 {
        return outcomes.pop().expect("one");
    }
    let last = outcomes.last().expect("at least one job ran").clone();
    let mut log = String::new();
    let mut steps = Vec::new();
    let mut secrets_masked = 0;
    for (name, outcome) in names.iter().zip(&outcomes) {
        log.push_str(&format!("##[group]job {name}\n"));
        log.push_str(&outcome.log);
        log.push_str("##[endgroup]\n");
        secrets_masked += outcome.secrets_masked;
        for step in &outcome.steps {
            steps.push(runner::StepOutcome {
                name: format!("{name}: {}", step.name),
                number: steps.len() as u32 + 1,
                ..step.clone()
            });
        }
    }
    // The run ends as its first job that did not succeed (a later job that
    // runs `always()` does not turn a failed run green).
    let first_failed = outcomes
        .iter()
        .find(|o| o.conclusion != Conclusion::Success)
        .unwrap_or(&last);
    runner::JobOutcome {
        conclusion: first_failed.conclusion,
        exit_code: first_failed.exit_code,
        log,
        secrets_masked,
        started_at: outcomes[0].started_at,
        completed_at: last.completed_at,
        steps,
    }
}

/// Runs one queued run to completion (or to its timeout), updating state and sending webhooks.
async fn execute(
    sim: Sim,
    name: String,
    run_id: u64,
    jobs: Vec<super::SimJob>,
    fault: JobFault,
    commit: Option<SimpleCommit>,
) {
    let Ok(_slot) = sim.job_slots.clone().acquire_owned().await else {
        return;
    };
    let now = sim.clock.now();
    let (spec_parts, inputs, expires) = {
        let mut world = sim.world();
        let Some(run) = world
            .repos
            .get_mut(&name)
            .and_then(|r| r.runs.get_mut(&run_id))
        else {
            return;
        };
        run.status = RunStatus::InProgress;
        run.run_started_at = Some(now);
        run.updated_at = now;
        run.job.status = RunStatus::InProgress;
        run.job.started_at = Some(now);
        let parts = (
            run.run_number,
            run.head_branch.clone(),
            run.head_sha.clone(),
            run.actor.clone(),
            run.workflow_id,
        );
        let inputs = run.inputs.clone();
        let expires = now
            + time::Duration::try_from(sim.config.job_timeout).unwrap_or(time::Duration::hours(6))
            + time::Duration::minutes(10);
        (parts, inputs, expires)
    };
    let (run_number, branch, sha, actor_login, workflow_id) = spec_parts;
    emit_job(&sim, &name, run_id, "in_progress");
    emit_run(&sim, &name, run_id, "in_progress", commit.as_ref());
    sim.bump();

    let (workflow_name, workflow_path, event_payload) = {
        let world = sim.world();
        let repo = &world.repos[&name];
        let wf = repo.workflows.iter().find(|w| w.id == workflow_id);
        let payload = json!({
            "inputs": inputs,
            "ref": format!("refs/heads/{branch}"),
            "repository": render::repository(&sim.urls, &world, repo, RepoTimes::Iso),
            "sender": render::user_by_login(&sim.urls, &world, &actor_login),
            "workflow": wf.map(|w| w.path.clone()),
        });
        (
            wf.map(|w| w.name.clone()).unwrap_or_default(),
            wf.map(|w| w.path.clone()).unwrap_or_default(),
            payload,
        )
    };

    // A job that never got to run: "Set up job" failed, the rest were skipped.
    let failed = |log: String| {
        let completed_at = sim.clock.now();
        let steps = runner::STEP_NAMES
            .iter()
            .zip(1..)
            .map(|(name, number)| runner::StepOutcome {
                name: (*name).to_owned(),
                number,
                conclusion: if number == 1 {
                    Conclusion::Failure
                } else {
                    Conclusion::Skipped
                },
                started_at: now,
                completed_at,
            })
            .collect();
        runner::JobOutcome {
            conclusion: Conclusion::Failure,
            exit_code: None,
            log,
            secrets_masked: 0,
            started_at: now,
            completed_at,
            steps,
        }
    };
    let outcome = if jobs.is_empty() {
        failed(format!(
            "##[error]The simulator has no command configured for {workflow_path}; \
             set it with SimConfig::workflow_commands (or `missions sim --workflow-command`).\n"
        ))
    } else if fault == JobFault::Fail {
        failed(
            "##[error]The runner has received a shutdown signal (simulated runner failure).\n"
                .into(),
        )
    } else {
        let artifacts = sim
            .config
            .data_dir
            .join("artifacts")
            .join(run_id.to_string());
        let _ = std::fs::create_dir_all(&artifacts);
        let mut outcomes = Vec::new();
        let mut names = Vec::new();
        // A workflow of `workflow_commands` is one job that both runs and
        // pushes (the older one-job layout): it gets the secrets. In a
        // workflow of several jobs only those that cannot push do, as the
        // mission workflow maps model keys into its `agent` job and none into
        // `publish`.
        let one_command_workflow = !sim.config.workflow_jobs.contains_key(
            workflow_path
                .rsplit('/')
                .next()
                .unwrap_or(workflow_path.as_str()),
        );
        let mut failed_before = false;
        for job in &jobs {
            // A later job `needs:` the earlier ones, unless it runs `always()`.
            if failed_before && !job.always {
                continue;
            }
            let secrets: &[(String, String)] = if one_command_workflow || !job.contents_write {
                &sim.config.job_secrets
            } else {
                &[]
            };
            // Each job its own token, with its own permissions, revoked when
            // it ends.
            let token = issue_job_token(&sim, &name, run_id, job.contents_write, expires);
            let timeout = if fault == JobFault::TimeOut {
                Duration::from_millis(1)
            } else {
                sim.config.job_timeout
            };
            let command: Vec<String> = substitute_inputs(&job.command, &inputs)
                .into_iter()
                .map(|arg| arg.replace(ARTIFACTS_PATTERN, &artifacts.display().to_string()))
                .collect();
            let spec = JobSpec {
                run_id,
                run_number,
                attempt: 1,
                job_name: job.name.clone(),
                workflow_name: workflow_name.clone(),
                repository: name.clone(),
                git_ref: format!("refs/heads/{branch}"),
                sha: sha.clone(),
                clone_url: format!("{}/{name}.git", sim.urls.web),
                token: token.clone(),
                api_url: sim.urls.api.clone(),
                server_url: sim.urls.web.clone(),
                actor: actor_login.clone(),
                actor_id: sim.world().account(&actor_login).id,
                event_name: "workflow_dispatch".into(),
                event_payload: event_payload.clone(),
                command,
                extra_env: sim.config.job_env.iter().chain(secrets).cloned().collect(),
                // Every job's log masks them, whether it got them or not.
                masked_values: sim
                    .config
                    .job_secrets
                    .iter()
                    .map(|(_, v)| v.clone())
                    .collect(),
                timeout,
                work_root: sim.config.data_dir.join("jobs"),
                keep_workspace: sim.config.keep_job_workspaces,
                max_log_bytes: sim.config.max_log_bytes,
            };
            let outcome = runner::run_job(spec, sim.shutdown.child_token()).await;
            sim.world().tokens.remove(&token);
            failed_before |= outcome.conclusion != Conclusion::Success;
            outcomes.push(outcome);
            names.push(job.name.clone());
        }
        let _ = std::fs::remove_dir_all(&artifacts);
        combine(&names, outcomes)
    };

    let done = sim.clock.now();
    {
        let mut world = sim.world();
        let Some(run) = world
            .repos
            .get_mut(&name)
            .and_then(|r| r.runs.get_mut(&run_id))
        else {
            return;
        };
        let conclusion = outcome.conclusion.as_str().to_owned();
        run.status = RunStatus::Completed;
        run.conclusion = Some(conclusion.clone());
        run.updated_at = done;
        run.log = outcome.log;
        run.secrets_masked = outcome.secrets_masked;
        run.job.status = RunStatus::Completed;
        run.job.conclusion = Some(conclusion);
        run.job.completed_at = Some(done);
        run.job.steps = outcome
            .steps
            .iter()
            .map(|s| JobStep {
                name: s.name.clone(),
                number: u64::from(s.number),
                conclusion: Some(s.conclusion.as_str().to_owned()),
                started_at: Some(s.started_at),
                completed_at: Some(s.completed_at),
            })
            .collect();
    }
    emit_job(&sim, &name, run_id, "completed");
    emit_run(&sim, &name, run_id, "completed", commit.as_ref());
    sim.bump();
}

pub async fn get_run(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, run_id)): Path<(String, String, u64)>,
) -> ApiResult {
    let name = full(&owner, &repo);
    let sha = {
        let world = sim.world();
        actor(&world, &caller, &name)?;
        world.repos[&name]
            .runs
            .get(&run_id)
            .ok_or_else(ApiError::not_found)?
            .head_sha
            .clone()
    };
    let commit = head_commit(&sim, &name, &sha).await;
    let world = sim.world();
    let repo = &world.repos[&name];
    let run = &repo.runs[&run_id];
    ok(
        StatusCode::OK,
        render::workflow_run(&sim.urls, &world, repo, run, commit.as_ref()),
    )
}

pub async fn list_jobs(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, run_id)): Path<(String, String, u64)>,
) -> ApiResult {
    let name = full(&owner, &repo);
    let world = sim.world();
    actor(&world, &caller, &name)?;
    let repo = &world.repos[&name];
    let run = repo.runs.get(&run_id).ok_or_else(ApiError::not_found)?;
    let jobs = vec![render::job(&sim.urls, repo, run, &run.job)];
    ok(StatusCode::OK, json!({"total_count": 1, "jobs": jobs}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_name_shows_the_inputs() {
        let mut inputs = serde_json::Map::new();
        inputs.insert("mission".into(), json!("7"));
        inputs.insert("job".into(), json!("feature-F1.1"));
        let wf = "name: missions\nrun-name: \"missions #${{ inputs.mission }} ${{ inputs.job }}\"\non: workflow_dispatch\n";
        assert_eq!(
            run_name(wf, &inputs).as_deref(),
            Some("missions #7 feature-F1.1")
        );
        assert_eq!(run_name("name: x\non: workflow_dispatch\n", &inputs), None);
    }

    #[test]
    fn an_input_not_sent_is_empty_and_other_expressions_stay() {
        let inputs = serde_json::Map::new();
        let args = vec![
            "--issue-sha256=${{ inputs.issue_sha256 }}".to_owned(),
            "${{ sim.artifacts }}/x".to_owned(),
            "a${{inputs.b}}c${{ inputs.d-e }}".to_owned(),
        ];
        assert_eq!(
            substitute_inputs(&args, &inputs),
            ["--issue-sha256=", "${{ sim.artifacts }}/x", "ac"]
        );
    }

    #[test]
    fn inputs_are_substituted_per_argument() {
        let mut inputs = serde_json::Map::new();
        inputs.insert("role".into(), json!("worker"));
        inputs.insert("mission".into(), json!(7));
        let args = vec![
            "missions".to_owned(),
            "job".into(),
            "--role=${{ inputs.role }}".into(),
            "${{inputs.mission}}".into(),
            "${{ inputs.other }}".into(),
        ];
        assert_eq!(
            substitute_inputs(&args, &inputs),
            ["missions", "job", "--role=worker", "7", ""]
        );
    }
}
