//! The repository's own CI, as GitHub Actions runs it on a push.
//!
//! When a branch moves to a commit, each workflow of
//! [`SimConfig::push_workflows`](super::SimConfig::push_workflows) whose file
//! exists in that commit and declares a push trigger ([`has_push_trigger`])
//! gets a run. Its jobs run independently, each in a fresh checkout of the
//! pushed commit through [`runner::run_job`], with a read-only
//! `GITHUB_TOKEN` revoked when the job ends and no secrets. Each job is a
//! check run of GitHub Actions (not of the installed App) whose id is the
//! job's id, in a check suite of its own run; it goes `queued` →
//! `in_progress` → `completed`, with `check_run` `created` and `completed`
//! sent to the App (GitHub sends other Apps' `created` and `completed` to
//! every App that may read checks), and `check_suite` `completed` once all
//! jobs of the run ended. Their logs are served as GitHub serves job logs: a
//! redirect to a short-lived signed address ([`job_logs`]).
//!
//! Not simulated: `workflow_run` / `workflow_job` webhooks and the runs API
//! for these runs, re-runs, annotations, branch and path filters.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::api::{ApiError, ApiResult, Caller, actor, full, require};
use super::faults::JobFault;
use super::git::PathContent;
use super::render::{self, SimpleCommit};
use super::runner::{self, Conclusion, JobSpec};
use super::state::{
    CheckApp, CheckOutput, CheckRun, LogLink, Permission, PushRun, Repo, RunStatus, World,
};
use super::{SimInner, SimJob, actions, queue};
use crate::sim_fields;

type Sim = Arc<SimInner>;

/// Who pushes with a job's `GITHUB_TOKEN`. GitHub starts no workflow for
/// events made with it (but `workflow_dispatch` and `repository_dispatch`),
/// so that workflows cannot trigger each other endlessly.
const JOB_TOKEN_LOGIN: &str = "github-actions[bot]";

/// How long a log address stays valid (GitHub's signed URLs: about a minute).
const LOG_LINK_TTL: time::Duration = time::Duration::minutes(1);

/// Whether a workflow file declares a push trigger. A textual test, not YAML:
/// a line `on: push`, `on: [.., push, ..]`, a `push:` key, or a `- push`
/// item (comments aside). Branch, tag and path filters are not interpreted.
pub fn has_push_trigger(workflow: &str) -> bool {
    workflow.lines().any(|line| {
        let line = line.split(" #").next().unwrap_or(line).trim();
        if line.starts_with('#') {
            return false;
        }
        if line == "push:" || line.starts_with("push: ") || line == "- push" {
            return true;
        }
        let value = ["on:", "\"on\":", "'on':"]
            .iter()
            .find_map(|key| line.strip_prefix(key))
            .map(str::trim);
        let unquote = |v: &str| v.trim().trim_matches(['"', '\'']).to_owned();
        match value {
            Some(v) if v.starts_with('[') => v
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .any(|item| unquote(item) == "push"),
            Some(v) => unquote(v) == "push",
            None => false,
        }
    })
}

/// A branch that moved to a commit, as the push-triggered workflows see it.
pub(crate) struct Push {
    pub repository: String,
    /// The branch name, without `refs/heads/`.
    pub branch: String,
    pub before: Option<String>,
    pub after: String,
    pub pusher: String,
    /// The `push` webhook's payload (with `repository` and `sender`): the
    /// job's `GITHUB_EVENT_PATH`.
    pub event: Value,
}

/// Starts the runs a push causes, in a task of their own: the push itself
/// (a REST call, a git push) answers at once.
pub(crate) fn on_push(sim: &Sim, push: Push) {
    if sim.config.push_workflows.is_empty()
        || push.pusher == JOB_TOKEN_LOGIN
        || sim.shutdown.is_cancelled()
    {
        return;
    }
    tokio::spawn(start_runs(sim.clone(), push));
}

async fn start_runs(sim: Sim, push: Push) {
    let mut files: Vec<(&String, &Vec<SimJob>)> = sim.config.push_workflows.iter().collect();
    files.sort_by_key(|(file, _)| file.as_str());
    let commit = actions::head_commit(&sim, &push.repository, &push.after).await;
    for (file, jobs) in files {
        let path = format!(".github/workflows/{file}");
        let text = match sim
            .git
            .read_path(&push.repository, &push.after, &path)
            .await
        {
            Ok(Some(PathContent::File { content, .. })) => content,
            _ => continue,
        };
        if jobs.is_empty() || !has_push_trigger(&String::from_utf8_lossy(&text)) {
            continue;
        }
        let Some((run_id, job_ids)) = create_run(&sim, &push, &path, jobs, commit.as_ref()) else {
            continue;
        };
        for (job, job_id) in jobs.iter().zip(job_ids) {
            tokio::spawn(run_job(
                sim.clone(),
                push.repository.clone(),
                run_id,
                job_id,
                job.command.clone(),
                push.event.clone(),
                commit.clone(),
            ));
        }
    }
}

/// Records a queued run with a queued check run per job, and sends their
/// `check_run` `created`; the run's id and its jobs' ids.
fn create_run(
    sim: &SimInner,
    push: &Push,
    path: &str,
    jobs: &[SimJob],
    commit: Option<&SimpleCommit>,
) -> Option<(u64, Vec<u64>)> {
    let name = &push.repository;
    let now = sim.clock.now();
    let mut world = sim.world();
    world.repos.get(name)?;
    let workflow_id = actions::workflow_id(&mut world, name, path, now);
    let run_id = world.next_id();
    let check_suite_id = world.next_id();
    let job_ids: Vec<u64> = jobs.iter().map(|_| world.next_id()).collect();
    let repo = world.repos.get_mut(name)?;
    // Run numbers count a workflow's runs, whatever started them.
    let run_number = (repo
        .runs
        .values()
        .filter(|r| r.workflow_id == workflow_id)
        .count()
        + repo
            .push_runs
            .values()
            .filter(|r| r.workflow_id == workflow_id)
            .count()) as u64
        + 1;
    for (job, &id) in jobs.iter().zip(&job_ids) {
        repo.check_runs.insert(
            id,
            CheckRun {
                id,
                app: CheckApp::Actions,
                name: job.name.clone(),
                head_sha: push.after.clone(),
                status: "queued".into(),
                conclusion: None,
                details_url: Some(format!(
                    "{}/{name}/actions/runs/{run_id}/job/{id}",
                    sim.urls.web
                )),
                external_id: Some(uuid::Uuid::new_v4().to_string()),
                started_at: now,
                completed_at: None,
                output: CheckOutput::default(),
                check_suite_id,
            },
        );
    }
    repo.push_runs.insert(
        run_id,
        PushRun {
            id: run_id,
            run_number,
            workflow_id,
            head_branch: push.branch.clone(),
            head_sha: push.after.clone(),
            before: push.before.clone(),
            actor: push.pusher.clone(),
            check_suite_id,
            created_at: now,
            jobs: job_ids.clone(),
        },
    );
    for &id in &job_ids {
        emit_check_run(sim, &world, name, run_id, id, "created", commit);
    }
    drop(world);
    sim.bump();
    Some((run_id, job_ids))
}

/// Sends `check_run` `<action>` for job `job_id` of push run `run_id`, its
/// `check_suite` whole (GitHub Actions' suite of the run, on the pushed branch).
fn emit_check_run(
    sim: &SimInner,
    world: &World,
    name: &str,
    run_id: u64,
    job_id: u64,
    action: &str,
    commit: Option<&SimpleCommit>,
) {
    let Some(repo) = world.repos.get(name) else {
        return;
    };
    let (Some(run), Some(check)) = (repo.push_runs.get(&run_id), repo.check_runs.get(&job_id))
    else {
        return;
    };
    let mut rendered = render::check_run(&sim.urls, world, repo, check);
    rendered["check_suite"] = render::actions_check_suite(&sim.urls, repo, run, commit);
    // The sender is whoever pushed, not `github-actions[bot]`: GitHub names
    // the actor whose event started the workflow as the sender of its runs'
    // check events (as it does for the run's `actor`).
    sim.emit(
        world,
        "check_run",
        name,
        &run.actor,
        sim_fields!("action" => action, "check_run" => rendered),
    );
}

/// Runs one job of a push run to its end and reports it.
async fn run_job(
    sim: Sim,
    name: String,
    run_id: u64,
    job_id: u64,
    command: Vec<String>,
    event: Value,
    commit: Option<SimpleCommit>,
) {
    // Queued until a runner is free; a simulator shutting down cancels it.
    let slot = tokio::select! {
        slot = sim.job_slots.clone().acquire_owned() => slot.ok(),
        () = sim.shutdown.cancelled() => None,
    };
    let now = sim.clock.now();
    let Some(_slot) = slot else {
        let outcome = not_run(
            Conclusion::Cancelled,
            "##[error]The operation was canceled.\n",
        );
        finish(&sim, &name, run_id, job_id, outcome, commit.as_ref()).await;
        return;
    };
    let started = {
        let mut world = sim.world();
        let Some(repo) = world.repos.get_mut(&name) else {
            return;
        };
        let Some(check) = repo.check_runs.get_mut(&job_id) else {
            return;
        };
        check.status = "in_progress".into();
        check.started_at = now;
        let job_name = check.name.clone();
        let Some(run) = repo.push_runs.get(&run_id) else {
            return;
        };
        let workflow_name = repo
            .workflows
            .iter()
            .find(|w| w.id == run.workflow_id)
            .map(|w| w.name.clone())
            .unwrap_or_default();
        let run = run.clone();
        let actor_id = world.account(&run.actor).id;
        (run, job_name, workflow_name, actor_id)
    };
    sim.bump();
    let (run, job_name, workflow_name, actor_id) = started;

    let fault = sim.faults.job();
    let outcome = if fault == JobFault::Fail {
        not_run(
            Conclusion::Failure,
            "##[error]The runner has received a shutdown signal (simulated runner failure).\n",
        )
    } else {
        let expires = now
            + time::Duration::try_from(sim.config.job_timeout).unwrap_or(time::Duration::hours(6))
            + time::Duration::minutes(10);
        let token = actions::issue_job_token(&sim, &name, run_id, false, expires);
        let spec = JobSpec {
            run_id,
            run_number: run.run_number,
            attempt: 1,
            job_name,
            workflow_name,
            repository: name.clone(),
            git_ref: format!("refs/heads/{}", run.head_branch),
            sha: run.head_sha.clone(),
            clone_url: format!("{}/{name}.git", sim.urls.web),
            token: token.clone(),
            api_url: sim.urls.api.clone(),
            server_url: sim.urls.web.clone(),
            actor: run.actor.clone(),
            actor_id,
            event_name: "push".into(),
            event_payload: event,
            command,
            // The environment every job gets; no secrets.
            extra_env: sim.config.job_env.clone(),
            masked_values: sim
                .config
                .job_secrets
                .iter()
                .map(|(_, v)| v.clone())
                .collect(),
            timeout: if fault == JobFault::TimeOut {
                Duration::from_millis(1)
            } else {
                sim.config.job_timeout
            },
            work_root: sim.config.data_dir.join("jobs"),
            keep_workspace: sim.config.keep_job_workspaces,
            max_log_bytes: sim.config.max_log_bytes,
        };
        let outcome = runner::run_job(spec, sim.shutdown.child_token()).await;
        sim.world().tokens.remove(&token);
        (outcome.conclusion, outcome.log)
    };
    finish(&sim, &name, run_id, job_id, outcome, commit.as_ref()).await;
}

/// A job that never ran: its conclusion and its log.
fn not_run(conclusion: Conclusion, log: &str) -> (Conclusion, String) {
    (conclusion, log.to_owned())
}

/// Completes job `job_id`'s check run, keeps its log, and sends `check_run`
/// `completed` (and `check_suite` `completed` after the run's last job);
/// then a merge queue waiting for the check may move.
async fn finish(
    sim: &Sim,
    name: &str,
    run_id: u64,
    job_id: u64,
    (conclusion, log): (Conclusion, String),
    commit: Option<&SimpleCommit>,
) {
    let now = sim.clock.now();
    {
        let mut world = sim.world();
        let Some(repo) = world.repos.get_mut(name) else {
            return;
        };
        let Some(check) = repo.check_runs.get_mut(&job_id) else {
            return;
        };
        check.status = "completed".into();
        check.conclusion = Some(conclusion.as_str().to_owned());
        check.completed_at = Some(now);
        // GitHub leaves an Actions job's `output` empty: why it failed
        // ("Process completed with exit code 1.") is an annotation and in
        // the log.
        repo.job_logs.insert(job_id, log);
        emit_check_run(sim, &world, name, run_id, job_id, "completed", commit);
        let repo = &world.repos[name];
        if let Some(run) = repo.push_runs.get(&run_id)
            && run.jobs.iter().all(|id| {
                repo.check_runs
                    .get(id)
                    .is_none_or(|c| c.status == "completed")
            })
        {
            let suite = render::actions_check_suite(&sim.urls, repo, run, commit);
            sim.emit(
                &world,
                "check_suite",
                name,
                &run.actor,
                sim_fields!("action" => "completed", "check_suite" => suite),
            );
        }
    }
    sim.bump();
    queue::advance(sim, name).await;
}

/// The log of job `job_id` of `repo` once the job ended: a push-triggered
/// workflow's job, or a dispatched run's one job.
pub(crate) fn job_log(repo: &Repo, job_id: u64) -> Option<String> {
    if let Some(log) = repo.job_logs.get(&job_id) {
        return Some(log.clone());
    }
    repo.runs
        .values()
        .find(|r| r.job.id == job_id && r.status == RunStatus::Completed)
        .map(|r| r.log.clone())
}

/// `GET /repos/{owner}/{repo}/actions/jobs/{job_id}/logs`: `302 Found` to a
/// plain-text log at a signed address that needs no token and expires after
/// a minute, as GitHub redirects to its blob storage. 404 for a job that is
/// unknown or has not ended.
pub async fn job_logs(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, job_id)): Path<(String, String, u64)>,
) -> ApiResult {
    let name = full(&owner, &repo);
    let now = sim.clock.now();
    let mut world = sim.world();
    require(&actor(&world, &caller, &name)?, Permission::Read)?;
    if job_log(&world.repos[&name], job_id).is_none() {
        return Err(ApiError::not_found());
    }
    let secret = uuid::Uuid::new_v4().simple().to_string();
    world.log_links.retain(|_, link| link.expires_at > now);
    world.log_links.insert(
        secret.clone(),
        LogLink {
            repository: name.clone(),
            job_id,
            expires_at: now + LOG_LINK_TTL,
        },
    );
    let location = format!(
        "{}/_sim/job-logs/{name}/{job_id}?token={secret}",
        sim.urls.web
    );
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

#[derive(Debug, serde::Deserialize)]
pub struct LogQuery {
    token: Option<String>,
}

/// The address [`job_logs`] redirects to: the log as `text/plain` for a
/// valid, unexpired signature (no `Authorization` needed); 403 otherwise.
pub async fn signed_job_log(
    State(sim): State<Sim>,
    Path((owner, repo, job_id)): Path<(String, String, u64)>,
    Query(query): Query<LogQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    // The address is on another host on GitHub: a client that carries its
    // token over the redirect gives it away. Refused here, so that a test
    // shows it.
    if headers.contains_key(header::AUTHORIZATION) {
        return (
            StatusCode::BAD_REQUEST,
            "Authorization is not accepted on a signed address.\n",
        )
            .into_response();
    }
    let name = full(&owner, &repo);
    let now = sim.clock.now();
    let world = sim.world();
    let signed = query
        .token
        .as_ref()
        .and_then(|t| world.log_links.get(t))
        .is_some_and(|l| l.repository == name && l.job_id == job_id && l.expires_at > now);
    if !signed {
        return (
            StatusCode::FORBIDDEN,
            "Server failed to authenticate the request.\n",
        )
            .into_response();
    }
    match world.repos.get(&name).and_then(|r| job_log(r, job_id)) {
        Some(log) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], log).into_response(),
        None => (StatusCode::NOT_FOUND, "Not Found\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_triggers_are_found_in_their_usual_forms() {
        for yes in [
            "on: push\njobs: {}\n",
            "on: [push, pull_request]\n",
            "on: [ pull_request, \"push\" ]\n",
            "'on': push # every push\n",
            "on:\n  push:\n    branches: [main]\n  pull_request:\n",
            "on:\n  push:\n",
            "on:\n  - pull_request\n  - push\n",
        ] {
            assert!(has_push_trigger(yes), "{yes:?}");
        }
        for no in [
            "on: workflow_dispatch\n",
            "on: [pull_request, pushy]\n",
            "on:\n  pull_request:\n# push:\n",
            "on: pull_request\njobs:\n  x:\n    steps:\n      - run: git push origin HEAD\n",
            "on: pull_request # not on push\n",
        ] {
            assert!(!has_push_trigger(no), "{no:?}");
        }
    }
}
