//! `missions job`: one turn of one role inside an Actions job (or the
//! simulator's runner), on a checkout of the job's branch.
//!
//! 0. If this job's result is already on its output branch (a repeated
//!    dispatch), do nothing.
//! 1. Read the repository's settings (`.github/missions.yml`) and prompt
//!    overrides from the **default branch**, never from the job's own branch.
//! 2. Gather the mission's state from the checkout and the issue from GitHub
//!    (for the orchestrator, the comments of people trusted to steer it; for
//!    the other roles, the issue's title and body only).
//! 3. Run the role's agent(s) ([`roles`]) with the role's model.
//! 4. Write the result: the orchestrator's plan and the worker's handoff into
//!    the checkout, committed with all other changes onto the job's branch,
//!    as one commit on the commit the job started from; validators' reports
//!    onto `missions/<issue>/reports` only. Every job writes its envelope,
//!    [`crate::mission::JobOutput`], to `.missions/<issue>/jobs/<key>.json`.
//!    A worker's commit holds `.missions/` exactly as the job found it plus
//!    its handoff and envelope, and `.github/` (and the configured
//!    `protected_paths`) as the job found it: whatever the worker changed
//!    there is dropped, and its handoff says so.
//!
//! A run that ends without a valid result (a limit, a refusal, repeated
//! invalid output) is a result (`JobResult::Incomplete`): it is written like
//! any other, then `missions job` prints an `::error::` annotation with the
//! reason and exits 1, so the Actions run is red while the publish job
//! (`if: always()`) still pushes what the App reads. Infrastructure failures
//! (settings unreadable, provider or network errors, a rejected push) are
//! errors, and then nothing is pushed.

mod context;
mod env;
mod git;
mod github;
mod issue_text;
mod output;
pub mod prompts;
mod result;
mod roles;
mod sandbox;
mod usage;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, bail};

pub use env::protect_secrets;
pub use result::{PublishArgs, publish};

use crate::llm::config::{self, ModelConfig, REPO_CONFIG_PATH};
use crate::mission::machine::reports_branch;
use crate::mission::plan::valid_id;
use crate::mission::{JobOutput, JobResult, JobRole};
use crate::repo_config::RepoConfig;

/// A GitHub Actions error annotation (`::error title=…::…`): one line in
/// the log, shown on the run's summary page. Newlines and `%` are escaped as
/// the workflow-command syntax asks.
pub fn annotation(title: &str, message: &str) -> String {
    fn escape(s: &str, property: bool) -> String {
        let s = s
            .replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A");
        if property {
            s.replace(':', "%3A").replace(',', "%2C")
        } else {
            s
        }
    }
    format!(
        "::error title={}::{}",
        escape(title, true),
        escape(message, false)
    )
}

/// The `server_model` input: the App's `[model]` as JSON ("" → `None`),
/// checked as the server checks it.
pub fn parse_server_model(text: &str) -> anyhow::Result<Option<ModelConfig>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let model: ModelConfig = serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("--server-model is not a model's settings: {e}"))?;
    model
        .validate("the App's [model] (--server-model)")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Some(model))
}

/// An amount of US dollars as micro-dollars ("" → `None`).
pub fn parse_usd(text: &str) -> anyhow::Result<Option<u64>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(usd) if usd.is_finite() && (0.0..=1e9).contains(&usd) => {
            Ok(Some((usd * 1_000_000.0).round() as u64))
        }
        _ => bail!("--spend-limit-usd {text:?} is not an amount of US dollars (e.g. 1.25)"),
    }
}

/// The `task` input of a job: what kind of step it performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    Scope,
    Revise,
    Feature,
    Triage,
    FollowUp,
    Replan,
    Boundary,
    Validate,
}

impl TaskKind {
    /// As `mission::Task::kind` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Scope => "scope",
            TaskKind::Revise => "revise",
            TaskKind::Feature => "feature",
            TaskKind::Triage => "triage",
            TaskKind::FollowUp => "follow-up",
            TaskKind::Replan => "replan",
            TaskKind::Boundary => "boundary",
            TaskKind::Validate => "validate",
        }
    }

    /// The role that performs this task (validation: either validator).
    fn fits(self, role: JobRole) -> bool {
        match self {
            TaskKind::Scope
            | TaskKind::Revise
            | TaskKind::Triage
            | TaskKind::FollowUp
            | TaskKind::Replan
            | TaskKind::Boundary => role == JobRole::Orchestrator,
            TaskKind::Feature => role == JobRole::Worker,
            TaskKind::Validate => matches!(role, JobRole::Scrutiny | JobRole::UserTesting),
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "scope" => TaskKind::Scope,
            "revise" => TaskKind::Revise,
            "feature" => TaskKind::Feature,
            "triage" => TaskKind::Triage,
            "follow-up" | "followup" => TaskKind::FollowUp,
            "replan" => TaskKind::Replan,
            "boundary" => TaskKind::Boundary,
            "validate" => TaskKind::Validate,
            other => {
                return Err(format!(
                    "unknown task {other:?}; expected scope, revise, feature, triage, follow-up, replan, boundary or validate"
                ));
            }
        })
    }
}

/// `orchestrator`, `worker`, `scrutiny` or `user-testing` (for clap).
pub fn parse_role(s: &str) -> Result<JobRole, String> {
    Ok(match s {
        "orchestrator" => JobRole::Orchestrator,
        "worker" => JobRole::Worker,
        "scrutiny" => JobRole::Scrutiny,
        "user-testing" | "user_testing" => JobRole::UserTesting,
        other => {
            return Err(format!(
                "unknown role {other:?}; expected orchestrator, worker, scrutiny or user-testing"
            ));
        }
    })
}

/// What the server dispatched.
#[derive(Debug, Clone)]
pub struct JobArgs {
    pub role: JobRole,
    /// The mission's issue number.
    pub mission: u64,
    pub task: TaskKind,
    /// The job key, `<slug>.<try>` (e.g. `feature-F2.1`).
    pub job: String,
    /// The feature of a `feature` or `triage` task.
    pub feature: Option<String>,
    /// The default branch, where settings are read; asked of the API when `None`.
    pub config_ref: Option<String>,
    /// For debugging and tests: write each agent run's conversation here.
    pub transcript_dir: Option<PathBuf>,
    /// Leave the result here for `missions publish` instead of pushing it
    /// (the agent's job has a read-only token; see [`result`]).
    pub result_dir: Option<PathBuf>,
    /// The hash of the issue's text the App took in (see [`issue_text`]);
    /// `None`: read the issue as it is.
    pub issue_sha256: Option<String>,
    /// What the job may spend, in micro-dollars (the App's `spend_limit_usd`
    /// input); `None`: the repository's whole `budget`, if it sets one.
    pub spend_limit_micros: Option<u64>,
    /// The App's `[model]` (the `server_model` input): the layer under the
    /// repository's `models:`; the built-in default when `None`.
    pub server_model: Option<ModelConfig>,
}

impl JobArgs {
    /// Checks the inputs before anything runs: they name files and branches.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.mission == 0 {
            bail!("--mission must be an issue number");
        }
        let key_ok = !self.job.is_empty()
            && self.job.len() <= 100
            && !self.job.starts_with('.')
            && self
                .job
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !key_ok {
            bail!(
                "--job {:?} is not a job key (letters, digits, '-', '_', '.')",
                self.job
            );
        }
        if !self.task.fits(self.role) {
            bail!(
                "a {} job cannot perform the {} task",
                self.role.as_str(),
                self.task
            );
        }
        match (&self.feature, self.task) {
            (Some(f), _) if !valid_id(f) => bail!("--feature {f:?} is not a feature id"),
            (None, TaskKind::Feature | TaskKind::Triage) => {
                bail!("the {} task needs --feature", self.task)
            }
            _ => {}
        }
        if let Some(h) = &self.issue_sha256
            && !(h.is_empty() || (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())))
        {
            bail!("--issue-sha256 {h:?} is not a SHA-256 in hex");
        }
        if let Some(r) = &self.config_ref
            && (r.starts_with('-') || r.contains("..") || r.contains(':'))
        {
            bail!("--config-ref {r:?} is not a branch name");
        }
        Ok(())
    }
}

/// Where the missions' shared state lives in a repository.
const MISSIONS_DIR: &str = ".missions";
/// `paths`, quoted, for a note (the first few).
fn path_list(paths: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut list: Vec<String> = paths
        .iter()
        .take(SHOWN)
        .map(|p| format!("{:?}", context::truncate(p, 200)))
        .collect();
    if paths.len() > SHOWN {
        list.push(format!("and {} more", paths.len() - SHOWN));
    }
    format!("{} path(s): {}", paths.len(), list.join(", "))
}

/// What the handoff (or the incomplete result) says about a worker's changes
/// under `.missions/` that the harness dropped.
fn discarded_note(paths: &[String]) -> String {
    format!(
        "The harness discarded this job's changes under {MISSIONS_DIR}/ ({}): only \
         the harness writes there, so the plan, skills, handoffs and job results are as they \
         were before the job. A change the feature needs there has to come from the orchestrator.",
        path_list(paths)
    )
}

/// The same for changes under another protected path (`.github/`, the prompt
/// overrides, `protected_paths`).
fn discarded_protected_note(dir: &str, paths: &[String]) -> String {
    format!(
        "The harness discarded this job's changes under {dir} ({}): a mission's jobs never \
         change what the repository's CI, workflows or settings run or read (`.github/` and the \
         paths in `protected_paths`), since the App's ready commit runs them with the \
         repository's secrets before anyone has looked. A change the feature needs there has \
         to be made by a person.",
        path_list(paths)
    )
}

/// What the handoff (or the incomplete result) says about what the harness
/// refused in `.git/` (replace refs, grafts, …).
fn refused_git_note(refused: &[String]) -> String {
    format!(
        "The harness refused and removed what this job changed in git's own data: {}. The \
         commit is built from the files of the working tree on the commit the job started \
         from, as git stores them, never through replacements.",
        refused.join("; ")
    )
}

/// What a finished job did, for the caller's log.
#[derive(Debug, Clone)]
pub struct JobSummary {
    pub output: JobOutput,
    /// The branch the output was pushed to (or is for), and the commit
    /// (empty for a validator's result left for the publish job).
    pub pushed: (String, String),
    pub lines: Vec<String>,
}

/// The summary of this job's earlier run when its result is already on its
/// output branch: a repeated dispatch of the same job (GitHub may act on a
/// dispatch it answered with a 5xx, and the App then sends it again) does
/// nothing, so no step runs twice and nothing is pushed twice. The App reads
/// the result from the same place.
async fn already_done(
    git: &git::Git,
    env: &env::JobEnv,
    args: &JobArgs,
) -> anyhow::Result<Option<JobSummary>> {
    let branch = match args.role {
        JobRole::Orchestrator | JobRole::Worker => env.ref_name.clone(),
        JobRole::Scrutiny | JobRole::UserTesting => reports_branch(args.mission),
    };
    let path = output::envelope_path(args.mission, &args.job);
    let Some(head) = git.fetch(&branch).await? else {
        return Ok(None);
    };
    let Some(bytes) = git.show(&head, &path).await? else {
        return Ok(None);
    };
    let Ok(output) = serde_json::from_slice::<JobOutput>(&bytes) else {
        // Not a result the App could read either: run the job.
        return Ok(None);
    };
    if output.job != args.job {
        return Ok(None);
    }
    let lines = vec![format!(
        "missions job: {} already finished: its result is {path} on {branch} ({}); this run \
         repeats its dispatch and does nothing",
        args.job,
        &head[..head.len().min(12)]
    )];
    Ok(Some(JobSummary {
        output,
        pushed: (branch, head),
        lines,
    }))
}

/// The milestone a branch `missions/<n>/<m>` is for, by the plan's ids
/// (case-insensitive): its index and id. The re-plan after milestone `m`
/// runs on `<m>-replan` (ids never end so) and is for the milestone after it.
pub fn milestone_of_branch(
    branch: &str,
    issue: u64,
    plan: &crate::mission::Plan,
) -> Option<(usize, String)> {
    let rest = branch.strip_prefix(&format!("missions/{issue}/"))?;
    let (name, next) = match rest.strip_suffix("-replan") {
        Some(merged) => (merged, 1),
        None => (rest, 0),
    };
    let (index, _) = plan
        .milestones
        .iter()
        .enumerate()
        .find(|(_, m)| m.id.eq_ignore_ascii_case(name))?;
    let milestone = plan.milestones.get(index + next)?;
    Some((index + next, milestone.id.clone()))
}

fn config_role(role: JobRole) -> config::Role {
    match role {
        JobRole::Orchestrator => config::Role::Orchestrator,
        JobRole::Worker => config::Role::Worker,
        JobRole::Scrutiny => config::Role::Scrutiny,
        JobRole::UserTesting => config::Role::UserTesting,
    }
}

/// The settings and prompt overrides on the default branch.
async fn read_settings(
    git: &git::Git,
    config_ref: &str,
) -> anyhow::Result<(RepoConfig, Option<env::TempDir>)> {
    let head = git
        .fetch(config_ref)
        .await?
        .with_context(|| format!("the default branch {config_ref} does not exist"))?;
    let config = match git.show(&head, REPO_CONFIG_PATH).await? {
        None => RepoConfig::default(),
        Some(bytes) => {
            let text = String::from_utf8(bytes)
                .with_context(|| format!("{REPO_CONFIG_PATH} on {config_ref} is not UTF-8"))?;
            RepoConfig::parse(&text).with_context(|| format!("on branch {config_ref}"))?
        }
    };
    let files = git.list_files(&head, &config.prompts_dir).await?;
    let prompts: Vec<&String> = files
        .iter()
        .filter(|p| {
            let rest = &p[config.prompts_dir.len() + 1..];
            !rest.contains('/') && rest.ends_with(".md")
        })
        .collect();
    if prompts.is_empty() {
        return Ok((config, None));
    }
    let dir = env::TempDir::new("missions-prompts-")?;
    for path in prompts {
        if let Some(bytes) = git.show(&head, path).await? {
            let name = path.rsplit('/').next().unwrap_or(path);
            std::fs::write(dir.path().join(name), bytes)?;
        }
    }
    Ok((config, Some(dir)))
}

/// Runs the job to its end: see the module docs. `Err` is an infrastructure
/// failure; nothing was pushed then.
pub async fn run(args: JobArgs) -> anyhow::Result<JobSummary> {
    args.validate()?;
    let env = env::JobEnv::from_process()?;
    let issue = args.mission;
    // The system's git, found before any agent runs (never the job's PATH,
    // which agents can write), and how agent commands are contained.
    let git = git::Git::new(&env.workspace, &env)?;
    let containment = sandbox::Containment::detect();
    let checkout = git.checkout().to_path_buf();
    // Before any agent runs: what .git looks like, to undo its changes, and
    // the commit the job's own commit goes onto.
    let snapshot = git.snapshot()?;
    let start = git.head().await.context("the checkout has no commit")?;
    if let Some(done) = already_done(&git, &env, &args).await? {
        if let Some(dir) = &args.result_dir {
            result::write_manifest(
                dir,
                &result::ResultArtifact::Done {
                    job: args.job.clone(),
                    branch: done.pushed.0.clone(),
                },
            )?;
        }
        return Ok(done);
    }
    let rest = github::Rest::new(&env)?;

    let config_ref = match &args.config_ref {
        Some(r) if !r.trim().is_empty() => r.trim().to_owned(),
        _ => rest
            .default_branch()
            .await
            .context("cannot find the default branch")?,
    };
    let (config, prompts_dir) = read_settings(&git, &config_ref)
        .await
        .context("cannot read the repository's settings")?;
    let server_model = args.server_model.clone().unwrap_or_default();
    let model = config
        .models
        .resolve(config_role(args.role), &server_model)?;
    let explorer_model = config
        .models
        .resolve_explorer(config_role(args.role), &server_model)?;
    // What a worker's commit keeps as found, listed now: after the agent ran,
    // the object store is no longer to be trusted.
    let pinned = config.pinned_paths();
    let pinned_refs: Vec<&str> = pinned.iter().map(String::as_str).collect();
    let base = git.listing(&start, &pinned_refs).await?;

    let files = context::MissionFiles::read(&checkout, issue)?;
    let milestone = files
        .plan
        .as_ref()
        .and_then(|p| milestone_of_branch(&env.ref_name, issue, p));
    let mut issue_data = rest
        .issue(issue)
        .await
        .with_context(|| format!("cannot read issue #{issue}"))?;
    // The text the App took in, not an edit it has not (see issue_text).
    let issue_copy =
        match issue_text::choose(&checkout, args.issue_sha256.as_deref(), &mut issue_data)? {
            issue_text::Taken::LiveMatching { file } => Some(file),
            issue_text::Taken::Live | issue_text::Taken::Copy => None,
        };
    // Only the orchestrator reads the thread (and only trusted people's part).
    let orchestrating = args.role == JobRole::Orchestrator;
    let comments = if orchestrating {
        rest.comments(issue, issue_data.comments).await?
    } else {
        Vec::new()
    };
    let plan_pr = if args.task == TaskKind::Revise {
        let branch = crate::mission::machine::plan_branch(issue);
        match rest.pull_for_branch(&branch).await? {
            Some(pr) => {
                let count = rest.issue(pr).await?.comments;
                Some((pr, rest.reviews(pr).await?, rest.comments(pr, count).await?))
            }
            None => None,
        }
    } else {
        None
    };
    // Who may steer the orchestrator: people with write access, looked up once each.
    let mut writers = std::collections::BTreeSet::new();
    let mut logins: Vec<String> = comments
        .iter()
        .chain(
            plan_pr
                .iter()
                .flat_map(|(_, reviews, comments)| reviews.iter().chain(comments)),
        )
        .filter_map(|c| c.user.as_ref().map(|u| u.login.to_ascii_lowercase()))
        .filter(|l| !l.ends_with("[bot]"))
        .collect();
    logins.sort();
    logins.dedup();
    for login in logins.into_iter().take(100) {
        if rest.can_write(&login).await {
            writers.insert(login);
        }
    }
    let thread = context::Thread::new(issue_data, comments, plan_pr, env.app_bot(), writers);

    let mut lines = vec![format!(
        "missions job: {} {} ({}) for #{issue} on {}, model {} ({})",
        args.role.as_str(),
        args.job,
        args.task,
        env.ref_name,
        model.model,
        model.provider
    )];
    lines.push(format!("missions job: {}", containment.describe()));
    let ctx = roles::Ctx {
        args: args.clone(),
        env: env.clone(),
        checkout: checkout.clone(),
        config,
        model,
        explorer_model,
        prompts_dir: prompts_dir.as_ref().map(|d| d.path().to_path_buf()),
        files,
        thread,
        milestone,
        git,
        containment: containment.clone(),
        ledger: usage::Ledger::new(args.result_dir.as_deref(), &args.job),
    };
    let outcome = match args.role {
        JobRole::Orchestrator => roles::orchestrator(&ctx).await?,
        JobRole::Worker => roles::worker(&ctx).await?,
        JobRole::Scrutiny => roles::scrutiny(&ctx, &snapshot).await?,
        JobRole::UserTesting => roles::user_testing(&ctx).await?,
    };
    let mut outcome = outcome;
    let git = &ctx.git;
    // Nothing of the agent's may run while the harness uses git and its
    // token; then .git as it was, before git reads anything the agent wrote.
    tokio::task::spawn_blocking({
        let containment = containment.clone();
        move || containment.sweep()
    })
    .await
    .ok();
    let refused = git.restore(&snapshot).await?;
    let mut notes = Vec::new();
    if !refused.is_empty() {
        notes.push(refused_git_note(&refused));
    }
    if args.role == JobRole::Worker {
        // Only the harness writes under .missions/, and nothing a job pushes
        // changes what CI and the App run or read: what the worker changed
        // there (the plan it is judged by, other jobs' envelopes, a
        // workflow, settings, a CI script) is dropped.
        for dir in &pinned {
            let discarded = git.changes_under(&base, dir).await?;
            if !discarded.is_empty() {
                notes.push(if dir == MISSIONS_DIR {
                    discarded_note(&discarded)
                } else {
                    discarded_protected_note(dir, &discarded)
                });
            }
        }
    }
    for note in notes {
        outcome.log.push(note.clone());
        if args.role == JobRole::Worker {
            output::note_in_worker_result(&mut outcome.result, &mut outcome.files, issue, &note);
        }
    }
    lines.extend(outcome.log.iter().cloned());
    if let JobResult::Incomplete { reason } = &outcome.result {
        lines.push(format!("result: incomplete: {reason}"));
    }
    let job_output = JobOutput {
        job: args.job.clone(),
        result: outcome.result,
        usage: outcome.usage,
        budget_stop: outcome.budget_stop,
    };
    let envelope = (
        output::envelope_path(issue, &args.job),
        output::envelope(&job_output),
    );

    let trailer = match &args.feature {
        Some(f) if args.role == JobRole::Worker => format!("\nMission-Feature: {f}"),
        _ => String::new(),
    };
    let pushed = match args.role {
        JobRole::Orchestrator | JobRole::Worker => {
            let message = format!(
                "missions #{issue}: {} ({} {})\n\nMission-Job: {}{trailer}\n",
                args.job,
                args.role.as_str(),
                args.task,
                args.job
            );
            let commit = if args.role == JobRole::Worker {
                // .missions/ exactly as the job found it, plus this job's
                // handoff and envelope.
                let mut files = outcome.files.clone();
                files.push(envelope);
                files.extend(issue_copy.clone());
                let pins: Vec<git::Pin> = pinned
                    .iter()
                    .map(|dir| git::Pin {
                        dir,
                        files: if dir == MISSIONS_DIR { &files } else { &[] },
                    })
                    .collect();
                git.commit_all(&start, &base, &[], &pins, &message).await?
            } else {
                for path in &outcome.removed {
                    output::remove_in_checkout(&checkout, path)?;
                }
                for (path, bytes) in outcome
                    .files
                    .iter()
                    .chain(std::iter::once(&envelope))
                    .chain(issue_copy.iter())
                {
                    output::write_in_checkout(&checkout, path, bytes)?;
                }
                let dir = context::MissionFiles::dir(issue);
                git.commit_all(&start, &base, &[&dir], &[], &message)
                    .await?
            };
            match &args.result_dir {
                Some(dir) => {
                    std::fs::create_dir_all(dir).with_context(|| {
                        format!("cannot create the result directory {}", dir.display())
                    })?;
                    git.bundle(&commit, &start, &dir.join(result::BUNDLE))
                        .await
                        .context("cannot write the result's bundle")?;
                    result::write_manifest(
                        dir,
                        &result::ResultArtifact::Commit {
                            job: args.job.clone(),
                            branch: env.ref_name.clone(),
                            parent: start.clone(),
                            commit: commit.clone(),
                        },
                    )?;
                }
                None => git.push(&commit, &env.ref_name).await?,
            }
            (env.ref_name.clone(), commit)
        }
        JobRole::Scrutiny | JobRole::UserTesting => {
            let branch = reports_branch(issue);
            let mut files = outcome.files.clone();
            files.push(envelope);
            let message = format!(
                "missions #{issue}: {} ({} of {})\n\nMission-Job: {}\n",
                args.job,
                args.role.as_str(),
                ctx.milestone
                    .as_ref()
                    .map_or(env.ref_name.as_str(), |(_, m)| m.as_str()),
                args.job
            );
            let commit = match &args.result_dir {
                Some(dir) => {
                    result::write_manifest(
                        dir,
                        &result::ResultArtifact::Files {
                            job: args.job.clone(),
                            branch: branch.clone(),
                            message,
                            files: files
                                .iter()
                                .map(|(path, bytes)| result::ArtifactFile::new(path, bytes))
                                .collect(),
                        },
                    )?;
                    String::new()
                }
                None => {
                    git.commit_files_to_branch(&branch, &files, &message)
                        .await?
                }
            };
            (branch, commit)
        }
    };
    lines.push(format!(
        "usage: {} tokens in, {} out, {} cache reads, {}",
        job_output.usage.input_tokens,
        job_output.usage.output_tokens,
        job_output.usage.cache_read_tokens,
        crate::llm::pricing::dollars(job_output.usage.cost_micros)
    ));
    lines.push(match &args.result_dir {
        Some(dir) => format!(
            "result for {} left in {} for the publish job",
            pushed.0,
            dir.display()
        ),
        None => format!(
            "pushed {} to {}",
            &pushed.1[..pushed.1.len().min(12)],
            pushed.0
        ),
    });
    Ok(JobSummary {
        output: job_output,
        pushed,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(role: JobRole, task: TaskKind, feature: Option<&str>) -> JobArgs {
        JobArgs {
            role,
            mission: 7,
            task,
            job: "feature-F1.1".into(),
            feature: feature.map(str::to_owned),
            config_ref: Some("main".into()),
            transcript_dir: None,
            result_dir: None,
            issue_sha256: None,
            spend_limit_micros: None,
            server_model: None,
        }
    }

    #[test]
    fn inputs_are_checked() {
        assert!(
            args(JobRole::Worker, TaskKind::Feature, Some("F1"))
                .validate()
                .is_ok()
        );
        assert!(
            args(JobRole::Worker, TaskKind::Feature, None)
                .validate()
                .is_err()
        );
        assert!(
            args(JobRole::Worker, TaskKind::Scope, None)
                .validate()
                .is_err()
        );
        assert!(
            args(JobRole::Scrutiny, TaskKind::Validate, None)
                .validate()
                .is_ok()
        );
        assert!(
            args(JobRole::Worker, TaskKind::Feature, Some("../x"))
                .validate()
                .is_err()
        );
        let mut a = args(JobRole::Orchestrator, TaskKind::Scope, None);
        a.job = "../../etc/passwd".into();
        assert!(a.validate().is_err());
        assert_eq!("follow-up".parse::<TaskKind>(), Ok(TaskKind::FollowUp));
        assert_eq!(parse_role("user-testing"), Ok(JobRole::UserTesting));
        assert!(parse_role("tester").is_err());
    }

    #[test]
    fn the_milestone_comes_from_the_branch() {
        let plan: crate::mission::Plan = serde_json::from_value(serde_json::json!({
            "title": "t", "summary": "s",
            "assertions": [{"id": "A1", "text": "x"}],
            "milestones": [
                {"id": "M1", "title": "a", "features": [{"id": "F1", "title": "f", "description": "d", "assertions": ["A1"]}]},
                {"id": "M2", "title": "b", "features": []}
            ]
        }))
        .unwrap();
        assert_eq!(
            milestone_of_branch("missions/7/m2", 7, &plan),
            Some((1, "M2".to_owned()))
        );
        assert_eq!(milestone_of_branch("missions/7/plan", 7, &plan), None);
        assert_eq!(milestone_of_branch("missions/8/m1", 7, &plan), None);
        // The re-plan after M1 is for M2; there is none after the last.
        assert_eq!(
            milestone_of_branch("missions/7/m1-replan", 7, &plan),
            Some((1, "M2".to_owned()))
        );
        assert_eq!(milestone_of_branch("missions/7/m2-replan", 7, &plan), None);
    }
}
