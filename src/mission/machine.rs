//! The mission as a state machine: `apply(event, now) → effects`, no I/O. The
//! server feeds it events (webhooks turned into facts, results of its own effects)
//! and performs the effects it returns, in order. Every deterministic rule of the
//! lifecycle lives here, whatever a model says:
//!
//! - a plan is accepted only if every assertion is covered and every feature claims one;
//! - one job per mission at a time;
//! - a handoff with undone work or unresolved issues blocks the next feature until
//!   the orchestrator has triaged it;
//! - a milestone advances only when both validators passed on its head commit and
//!   a human merged its PR;
//! - failed attempts per step and the budget are bounded: hitting a bound pauses
//!   the mission with a comment saying why and how to resume.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::outputs::{
    BaselineLint, Handoff, JobOutput, JobResult, JobUsage, OrchestratorOutput, ValidationReport,
    Validator, Verdict,
};
use super::plan::{Assertion, Plan, one_line};

/// The rules' numbers, from the repository's `.github/missions.yml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Failed runs of one step before the mission pauses.
    pub max_attempts: u32,
    /// Validation rounds per milestone before the mission pauses.
    pub max_validation_rounds: u32,
    /// The mission's budget in micro-dollars; `None`: unbounded.
    pub budget_micros: Option<u64>,
    /// What must remain of the budget to start a job of each role.
    #[serde(default)]
    pub reserve: Reserves,
    /// Whether the validators' models come from another family than the
    /// workers', and what to do when they do not.
    #[serde(default)]
    pub independence: Independence,
    /// How long a validation round waits for the repository's required
    /// checks (its CI) on the ready commit before the mission pauses.
    #[serde(default = "default_ci_wait_secs")]
    pub ci_wait_secs: u64,
}

fn default_ci_wait_secs() -> u64 {
    60 * 60
}

/// `independent_validators` in `.github/missions.yml`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndependenceRule {
    /// Warn on the plan PR and in mission control.
    #[default]
    Warn,
    /// Refuse to dispatch such a validator: the mission pauses.
    Require,
    Off,
}

/// A model family, as far as independence goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Anthropic,
    OpenAi,
    Other,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Anthropic => "Anthropic's",
            Family::OpenAi => "OpenAI's",
            Family::Other => "the same",
        }
    }
}

/// The validators' models against the workers', as the App resolved them
/// from the repository's `models:` over the server's `[model]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Independence {
    #[serde(default)]
    pub rule: IndependenceRule,
    /// The workers' family, when the validators share it.
    #[serde(default)]
    pub family: Option<Family>,
    #[serde(default)]
    pub scrutiny_same: bool,
    #[serde(default)]
    pub user_testing_same: bool,
}

impl Independence {
    pub fn same(&self, validator: Validator) -> bool {
        match validator {
            Validator::Scrutiny => self.scrutiny_same,
            Validator::UserTesting => self.user_testing_same,
        }
    }

    /// One warning per validator that shares the workers' family (none when
    /// the rule is `off`).
    pub fn warnings(&self) -> Vec<String> {
        if self.rule == IndependenceRule::Off {
            return Vec::new();
        }
        let family = self.family.map_or("the same", Family::name);
        Validator::ALL
            .into_iter()
            .filter(|v| self.same(*v))
            .map(|v| {
                format!(
                    "⚠️ {} uses {family} models, like the workers: a validator of the same family tends \
                     to miss what the worker missed. Set `models.{}` in `.github/missions.yml` to another \
                     provider's model{}.",
                    v.as_str(),
                    v.as_str(),
                    if self.rule == IndependenceRule::Require {
                        " (`independent_validators: require` refuses to run it until then)"
                    } else {
                        ", or `independent_validators: require` to refuse such a validator"
                    }
                )
            })
            .collect()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_attempts: 2,
            max_validation_rounds: 3,
            budget_micros: None,
            reserve: Reserves::default(),
            independence: Independence::default(),
            ci_wait_secs: default_ci_wait_secs(),
        }
    }
}

/// Micro-dollars that must remain of the budget before a job of a role starts:
/// a job that starts with less could overspend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserves {
    #[serde(default)]
    pub orchestrator: u64,
    #[serde(default)]
    pub worker: u64,
    #[serde(default)]
    pub scrutiny: u64,
    #[serde(default)]
    pub user_testing: u64,
}

impl Reserves {
    pub fn for_role(&self, role: JobRole) -> u64 {
        match role {
            JobRole::Orchestrator => self.orchestrator,
            JobRole::Worker => self.worker,
            JobRole::Scrutiny => self.scrutiny,
            JobRole::UserTesting => self.user_testing,
        }
    }
}

/// Who did something, as the server established it (never as the text claims).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub login: String,
    /// write, maintain or admin on the repository.
    pub can_write: bool,
    /// A bot account, or the App itself: never counts as a person's act.
    pub is_bot: bool,
}

impl Actor {
    /// May start, steer or approve.
    pub fn is_trusted(&self) -> bool {
        self.can_write && !self.is_bot
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The orchestrator is scoping (or revising) the plan.
    Scoping,
    /// Questions are on the issue; waiting for the author or a maintainer.
    AwaitingAnswers,
    /// The plan PR is open; waiting for a review.
    PlanReview,
    /// Features of the current milestone run one after another.
    Building,
    /// The validators run on the milestone's ready commit.
    Validating,
    /// Both check runs passed; waiting for a person to merge the milestone PR.
    AwaitingMerge,
    /// A milestone was merged; the orchestrator revises the rest of the plan
    /// before the next one starts.
    Replanning,
    /// The revision removes or changes assertions the maintainer approved: its
    /// pull request waits for their review.
    RevisionReview,
    Done,
    Aborted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobRole {
    Orchestrator,
    Worker,
    Scrutiny,
    UserTesting,
}

impl JobRole {
    pub fn as_str(self) -> &'static str {
        match self {
            JobRole::Orchestrator => "orchestrator",
            JobRole::Worker => "worker",
            JobRole::Scrutiny => "scrutiny",
            JobRole::UserTesting => "user-testing",
        }
    }
}

/// One step of the mission that a job performs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Task {
    /// Scope the goal: questions or a plan. `round` counts answer rounds.
    Scope { round: u32 },
    /// Revise the plan after a review requested changes.
    Revise { round: u32 },
    /// Implement one feature.
    Feature { id: String },
    /// Triage a handoff that left work undone or issues unresolved.
    Triage { feature: String },
    /// Write follow-up features from a failed validation.
    FollowUp { milestone: String, round: u32 },
    /// `/mission replan` during a milestone: amend the remaining work.
    Replan { n: u32 },
    /// After milestone `after` merged: revise the milestones not merged yet.
    Boundary { after: String },
    /// Validate the milestone.
    Validate {
        milestone: String,
        validator: Validator,
        round: u32,
    },
}

impl Task {
    pub fn role(&self) -> JobRole {
        match self {
            Task::Scope { .. }
            | Task::Revise { .. }
            | Task::Triage { .. }
            | Task::FollowUp { .. }
            | Task::Replan { .. }
            | Task::Boundary { .. } => JobRole::Orchestrator,
            Task::Feature { .. } => JobRole::Worker,
            Task::Validate { validator, .. } => match validator {
                Validator::Scrutiny => JobRole::Scrutiny,
                Validator::UserTesting => JobRole::UserTesting,
            },
        }
    }

    /// Stable name of the step: attempts are counted per slug, and the job key
    /// is `<slug>.<try>`.
    pub fn slug(&self) -> String {
        match self {
            Task::Scope { round } => format!("scope-{round}"),
            Task::Revise { round } => format!("revise-{round}"),
            Task::Feature { id } => format!("feature-{id}"),
            Task::Triage { feature } => format!("triage-{feature}"),
            Task::FollowUp { milestone, round } => format!("followup-{milestone}-{round}"),
            Task::Replan { n } => format!("replan-{n}"),
            Task::Boundary { after } => format!("boundary-{after}"),
            Task::Validate {
                milestone,
                validator,
                round,
            } => format!("{milestone}-{}-{round}", validator.as_str()),
        }
    }

    /// The `task` input of the dispatched job: the slug's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Task::Scope { .. } => "scope",
            Task::Revise { .. } => "revise",
            Task::Feature { .. } => "feature",
            Task::Triage { .. } => "triage",
            Task::FollowUp { .. } => "follow-up",
            Task::Replan { .. } => "replan",
            Task::Boundary { .. } => "boundary",
            Task::Validate { .. } => "validate",
        }
    }

    pub fn feature(&self) -> Option<&str> {
        match self {
            Task::Feature { id } => Some(id),
            Task::Triage { feature } => Some(feature),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Task::Scope { .. } => "scoping".into(),
            Task::Revise { .. } => "the plan revision".into(),
            Task::Feature { id } => format!("feature {id}"),
            Task::Triage { feature } => format!("the triage of {feature}'s handoff"),
            Task::FollowUp { milestone, .. } => format!("the follow-up plan for {milestone}"),
            Task::Replan { .. } => "the replan".into(),
            Task::Boundary { after } => format!("the re-plan after {after}"),
            Task::Validate {
                milestone,
                validator,
                ..
            } => format!("{} of {milestone}", validator.as_str()),
        }
    }
}

/// A dispatched job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// `<slug>.<try>`: unique within the mission.
    pub key: String,
    pub task: Task,
    /// The branch the job runs on.
    pub branch: String,
    /// Where the job commits its output (`.missions/<issue>/jobs/<key>.json`).
    pub output_branch: String,
    /// Unix seconds when the server decided to dispatch it.
    pub dispatched_at: i64,
    /// The workflow run, once a webhook or the reconciler named it.
    pub run_id: Option<u64>,
    /// The run's page on GitHub, once known.
    #[serde(default)]
    pub run_url: Option<String>,
    /// What the job may spend (micro-dollars): the mission's remaining budget
    /// less what the other roles keep in reserve; `None`: no budget.
    #[serde(default)]
    pub spend_limit_micros: Option<u64>,
}

impl Job {
    pub fn role(&self) -> JobRole {
        self.task.role()
    }
}

/// Which PR an effect is about; the server resolves the number from the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "snake_case")]
pub enum Target {
    Issue,
    PlanPr,
    MilestonePr { index: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckConclusion {
    Success,
    Failure,
    /// The validator's job ran past its time limit, or was never seen to end.
    TimedOut,
    /// The mission was paused, aborted or replanned while the check was open.
    Cancelled,
    /// A person must change something before the validator can run.
    ActionRequired,
}

impl CheckConclusion {
    /// The check run's `conclusion` as GitHub's REST API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckConclusion::Success => "success",
            CheckConclusion::Failure => "failure",
            CheckConclusion::TimedOut => "timed_out",
            CheckConclusion::Cancelled => "cancelled",
            CheckConclusion::ActionRequired => "action_required",
        }
    }
}

/// The account GitHub's merge queue merges as (`merged_by`).
pub const MERGE_QUEUE: &str = "github-merge-queue[bot]";

/// What the server must do, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    Comment {
        target: Target,
        body: String,
    },
    /// Create `name` at the head of `from`, unless it exists.
    CreateBranch {
        name: String,
        from: String,
    },
    Dispatch {
        job: Job,
    },
    /// Open the plan PR (`branch` into the base); result: [`Event::PlanPrOpened`].
    OpenPlanPr {
        branch: String,
        title: String,
        body: String,
    },
    ClosePr {
        target: Target,
    },
    /// Open milestone `index`'s PR unless it is open; result: [`Event::MilestonePrOpened`].
    EnsureMilestonePr {
        index: usize,
        branch: String,
        title: String,
        body: String,
    },
    /// Make the ready commit on the milestone branch and open both check runs on
    /// it, in progress; result: [`Event::ValidationStarted`].
    StartValidation {
        index: usize,
        round: u32,
        branch: String,
        message: String,
    },
    /// Open a fresh check run for `validator` on the round's ready commit (its
    /// earlier one was completed without a report: a retry, or a resume);
    /// result: [`Event::CheckOpened`].
    OpenCheck {
        index: usize,
        round: u32,
        validator: Validator,
        sha: String,
    },
    CompleteCheck {
        check_run_id: u64,
        conclusion: CheckConclusion,
        title: String,
        summary: String,
        /// Screenshots on the reports branch (paths in the repository), shown
        /// with the check run's output where GitHub can show them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        images: Vec<String>,
    },
    /// Report both validators' check runs on a merge queue's group commit,
    /// completed at once: the group carries a verdict, it is not validated anew.
    ReportGroupChecks {
        sha: String,
        conclusion: CheckConclusion,
        title: String,
        summary: String,
    },
    /// Ask GitHub for the checks of other apps on `sha` (check runs and
    /// commit statuses); result: [`Event::ExternalChecks`].
    PollChecks {
        sha: String,
    },
    /// Write `.missions/<n>/reports/<milestone>-ci.json` on the reports
    /// branch: the required checks' states on the ready commit, with the
    /// failing Actions jobs' log tails, for the follow-up to read.
    WriteCiReport {
        milestone: String,
        round: u32,
        sha: String,
        checks: Vec<ExternalCheck>,
    },
    CloseIssue,
    /// Post or edit in place the mission control comment on the issue, rendered
    /// from the mission as it is when the effect runs.
    UpdateSticky,
}

/// How a workflow run ended, as GitHub reports it (or the reconciler decided).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunConclusion {
    Success,
    Failure,
    Cancelled,
    TimedOut,
    /// No completion seen within the job timeout.
    Lost,
}

/// A parsed `/mission …` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Status,
    Pause,
    Resume,
    Abort,
    Retry,
    Replan,
}

/// The columns of `line`'s leading whitespace, a tab reaching the next
/// multiple of four (as CommonMark counts indentation).
fn indent_columns(line: &str) -> usize {
    let mut columns = 0;
    for c in line.chars() {
        match c {
            ' ' => columns += 1,
            '\t' => columns += 4 - columns % 4,
            _ => break,
        }
    }
    columns
}

impl Command {
    /// The first line of `body` that starts with `/mission`, outside quotes,
    /// code blocks and HTML comments: only what GitHub shows as plain text
    /// counts, and text quoted from someone else is never a command.
    /// `Err` carries the unknown word, so the author can be told.
    pub fn parse(body: &str) -> Option<Result<Command, String>> {
        // The open fence's character and length (CommonMark: it is closed only
        // by a run of the same character at least as long, and nothing else).
        let mut fence: Option<(char, usize)> = None;
        let mut in_html_comment = false;
        for line in body.lines() {
            let indent = indent_columns(line);
            let trimmed = line.trim_start();
            if let Some((ch, len)) = fence {
                let run = trimmed.chars().take_while(|&c| c == ch).count();
                if indent < 4 && run >= len && trimmed[run * ch.len_utf8()..].trim().is_empty() {
                    fence = None;
                }
                continue;
            }
            if in_html_comment {
                // What follows `-->` on its line does not start the line, so
                // it cannot be a command: nothing more to read here.
                in_html_comment = !line.contains("-->");
                continue;
            }
            if indent >= 4 {
                // An indented code block (or a paragraph's continuation, which
                // cannot start with a command either).
                continue;
            }
            if let Some(ch) = trimmed.chars().next().filter(|c| *c == '`' || *c == '~') {
                let run = trimmed.chars().take_while(|&c| c == ch).count();
                // A backtick fence's info string has no backtick (else it is
                // inline code, like ```` ```x``` ````).
                let info = &trimmed[run..];
                if run >= 3 && !(ch == '`' && info.contains('`')) {
                    fence = Some((ch, run));
                    continue;
                }
            }
            if let Some(rest) = trimmed.strip_prefix("<!--") {
                if !rest.contains("-->") {
                    in_html_comment = true;
                }
                continue;
            }
            if trimmed.starts_with('>') {
                continue;
            }
            let mut words = trimmed.split_whitespace();
            if words.next() != Some("/mission") {
                continue;
            }
            let word = words.next().unwrap_or("");
            return Some(match word {
                "status" => Ok(Command::Status),
                "pause" => Ok(Command::Pause),
                "resume" => Ok(Command::Resume),
                "abort" => Ok(Command::Abort),
                "retry" => Ok(Command::Retry),
                "replan" => Ok(Command::Replan),
                other => Err(other.to_owned()),
            });
        }
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    Approved,
    ChangesRequested,
    Commented,
}

/// Facts the server feeds the mission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
// One event exists at a time; boxing the job output would only add noise.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// A comment on the issue that is not a command.
    Comment {
        actor: Actor,
        is_author: bool,
    },
    Command {
        actor: Actor,
        command: Result<Command, String>,
        /// Fresh settings from the default branch (resume applies them).
        settings: Settings,
    },
    Review {
        pr: u64,
        actor: Actor,
        state: ReviewState,
    },
    PrMerged {
        pr: u64,
        actor: Actor,
        head_sha: String,
    },
    /// The issue's title or body was edited (the snapshot of the new text).
    IssueEdited {
        actor: Actor,
        snapshot: IssueSnapshot,
    },
    /// A run for the current job was seen (requested / in progress).
    JobStarted {
        /// The run's page, when the webhook said.
        #[serde(default)]
        url: Option<String>,
        key: String,
        run_id: u64,
    },
    JobFinished {
        key: String,
        run_id: Option<u64>,
        conclusion: RunConclusion,
        /// The output the job committed, if the server found one with this key.
        output: Option<JobOutput>,
        /// Without an output: what the job's usage ledger says it spent.
        #[serde(default)]
        ledger: Option<JobUsage>,
    },
    PlanPrOpened {
        number: u64,
    },
    MilestonePrOpened {
        index: usize,
        number: u64,
    },
    ValidationStarted {
        index: usize,
        round: u32,
        sha: String,
        checks: BTreeMap<Validator, u64>,
        /// The repository's own checks the ready commit must pass: the base
        /// branch's required status checks and `ci.required`, less the App's.
        #[serde(default)]
        required: Vec<RequiredCheck>,
    },
    /// What GitHub shows of other apps' checks on commit `sha`: a webhook's
    /// one check run or status, or every one (a poll).
    ExternalChecks {
        sha: String,
        checks: Vec<ExternalCheck>,
    },
    /// A check run asked for with [`Effect::OpenCheck`] is open.
    CheckOpened {
        index: usize,
        round: u32,
        validator: Validator,
        check_run_id: u64,
    },
    /// The head of pull request `pr` is now `sha` (`pull_request.synchronize`).
    HeadMoved {
        pr: u64,
        sha: String,
    },
    /// A merge queue asks for the required checks on `group_sha`, its commit
    /// that merges pull request `pr` at `pr_head_sha` into the base.
    MergeGroupRequested {
        pr: u64,
        pr_head_sha: String,
        group_sha: String,
    },
    /// A person pressed Re-run on validator check runs of commit `sha` (one
    /// check run, or all of the App's on that commit).
    RerunRequested {
        sha: String,
        validators: Vec<Validator>,
        actor: Actor,
    },
    /// GitHub did not create branch `name` (from the head of `from`).
    BranchNotCreated {
        name: String,
        from: String,
        error: String,
    },
    /// An effect failed for good (after the client's retries).
    EffectFailed {
        what: String,
        error: String,
    },
    /// The mission control comment was posted (its id, to edit it in place).
    StickyPosted {
        comment_id: u64,
    },
    /// The dispatch of job `key` failed for good: it never ran.
    DispatchFailed {
        key: String,
        error: String,
    },
    /// The ready commit or its check runs could not be made.
    ValidationStartFailed {
        index: usize,
        round: u32,
        error: String,
    },
}

/// The current milestone's validation round.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Validation {
    pub round: u32,
    /// The ready commit both check runs sit on.
    pub sha: Option<String>,
    pub checks: BTreeMap<Validator, u64>,
    /// Whether each validator passed, once it reported.
    pub verdicts: BTreeMap<Validator, bool>,
    /// Validators whose check run was completed without a report (timed out,
    /// failed, cancelled): a new one is opened before their next job.
    #[serde(default)]
    pub closed: BTreeSet<Validator>,
    /// A validator whose fresh check run was asked for and not seen yet.
    #[serde(default)]
    pub opening: Option<Validator>,
    /// The repository's own checks (its CI: other apps' check runs and
    /// statuses) the ready commit must pass, named when the round started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required: Vec<RequiredCheck>,
    /// Their newest state on the ready commit from each source (an app's
    /// check runs, commit statuses), by [`ExternalCheck::source`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external: BTreeMap<String, ExternalCheck>,
    /// When both validators had reported and the round began waiting for
    /// the required checks (unix seconds); the App asked GitHub for them then.
    #[serde(default)]
    pub ci_waiting_since: Option<i64>,
}

/// A check run or commit status another app (the repository's CI) reported
/// on a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalCheck {
    pub name: String,
    /// `success`, `failure`, …; `None` while it runs.
    pub conclusion: Option<String>,
    /// Its page (the Actions job, the status's target).
    #[serde(default)]
    pub url: Option<String>,
    /// The check run's id when it is an Actions job (its log is fetched by it).
    #[serde(default)]
    pub check_run_id: Option<u64>,
    /// `github-actions`, another app's slug, or `status` for a commit status.
    #[serde(default)]
    pub app: Option<String>,
    /// The app that owns the check run (`None` for a commit status).
    #[serde(default)]
    pub app_id: Option<u64>,
}

/// A check the repository requires: its name, and the app it must come
/// from when branch protection says (`checks[].app_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequiredCheck {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u64>,
}

impl RequiredCheck {
    pub fn named(name: &str) -> RequiredCheck {
        RequiredCheck {
            name: name.to_owned(),
            app_id: None,
        }
    }

    /// Whether `check` may stand for it: the same name, from the app it must
    /// come from (a status, which names no app, only when none is set).
    pub fn accepts(&self, check: &ExternalCheck) -> bool {
        check.name == self.name && self.app_id.is_none_or(|id| check.app_id == Some(id))
    }
}

impl ExternalCheck {
    /// What keeps one state per check: its name and where it comes from.
    pub fn source(&self) -> String {
        format!("{}\u{1f}{}", self.name, self.app.as_deref().unwrap_or(""))
    }

    /// The check's name and link as markdown (see [`check_markdown`]).
    pub fn markdown(&self) -> String {
        check_markdown(&self.name, self.url.as_deref())
    }

    /// Concluded, and not in a way that blocks a merge (GitHub's rule for
    /// required checks: success, neutral and skipped pass).
    pub fn passed(&self) -> bool {
        matches!(
            self.conclusion.as_deref(),
            Some("success" | "neutral" | "skipped")
        )
    }
}

/// A check's name and link as markdown: the name without what could break
/// out of a code span or a table, the link only when it is a plain http(s)
/// URL (a status's `target_url` is anyone's text).
pub fn check_markdown(name: &str, url: Option<&str>) -> String {
    let name: String = one_line(name).replace('`', "'");
    match url {
        Some(url)
            if (url.starts_with("https://") || url.starts_with("http://"))
                && !url.chars().any(|c| {
                    c.is_whitespace() || c.is_control() || "()<>|[]`\\\"'".contains(c)
                }) =>
        {
            format!("[`{name}`]({url})")
        }
        _ => format!("`{name}`"),
    }
}

impl Validation {
    /// What stands for a required check on the ready commit: the newest
    /// state from each source it may come from.
    fn sources_of<'a>(
        &'a self,
        required: &'a RequiredCheck,
    ) -> impl Iterator<Item = &'a ExternalCheck> {
        self.external.values().filter(|c| required.accepts(c))
    }

    /// Required checks not decided yet: nothing reported, or something still
    /// running (and nothing failed).
    pub fn ci_pending(&self) -> Vec<String> {
        self.required
            .iter()
            .filter(|r| {
                let mut sources = self.sources_of(r).peekable();
                sources.peek().is_none()
                    || (self
                        .sources_of(r)
                        .all(|c| c.conclusion.is_none() || c.passed())
                        && self.sources_of(r).any(|c| c.conclusion.is_none()))
            })
            .map(|r| r.name.clone())
            .collect()
    }

    /// What failed among the required checks: a failure from any source
    /// fails the check (a passing status does not hide a failed job).
    pub fn ci_failed(&self) -> Vec<&ExternalCheck> {
        self.required
            .iter()
            .flat_map(|r| self.sources_of(r))
            .filter(|c| c.conclusion.is_some() && !c.passed())
            .collect()
    }

    /// Every required check's states for the CI report: each source's, or
    /// one that did not report at all.
    pub fn ci_states(&self) -> Vec<ExternalCheck> {
        let mut out = Vec::new();
        for r in &self.required {
            let before = out.len();
            out.extend(self.sources_of(r).cloned());
            if out.len() == before {
                out.push(ExternalCheck {
                    name: r.name.clone(),
                    conclusion: None,
                    url: None,
                    check_run_id: None,
                    app: None,
                    app_id: r.app_id,
                });
            }
        }
        out
    }

    /// The required checks' names as a list for a comment.
    pub fn ci_names(&self) -> String {
        self.required
            .iter()
            .map(|r| format!("`{}`", one_line(&r.name).replace('`', "'")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Validation {
    /// Check runs in progress on GitHub: opened, and neither reported on nor
    /// completed since.
    pub fn open_checks(&self) -> Vec<(Validator, u64)> {
        self.checks
            .iter()
            .filter(|(v, _)| !self.verdicts.contains_key(v) && !self.closed.contains(v))
            .map(|(v, id)| (*v, *id))
            .collect()
    }
}

/// A record of a finished step, for the final report and mission control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When the job ended (unix seconds).
    pub at: i64,
    pub key: String,
    pub outcome: String,
    #[serde(default)]
    pub role: Option<JobRole>,
    /// When it was dispatched.
    #[serde(default)]
    pub started_at: i64,
    /// What it spent: from its output or usage ledger, else estimated.
    #[serde(default)]
    pub usage: JobUsage,
    #[serde(default)]
    pub run_url: Option<String>,
    /// The run left neither output nor ledger: `usage` is its role's estimate.
    #[serde(default)]
    pub estimated: bool,
}

/// The latest verdict of one validator on one assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionVerdict {
    pub passed: bool,
    pub evidence: String,
    pub milestone: String,
    pub round: u32,
    pub at: i64,
}

/// The newest handoff, for mission control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffNote {
    pub feature: String,
    pub summary: String,
    pub needs_triage: bool,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mission {
    pub repo: String,
    pub issue: u64,
    pub author: String,
    /// The repository's default branch: milestone PRs target it.
    pub base: String,
    pub settings: Settings,
    pub phase: Phase,
    pub plan: Option<Plan>,
    pub plan_pr: Option<u64>,
    /// Index of the current milestone.
    pub milestone: usize,
    pub milestone_prs: BTreeMap<usize, u64>,
    pub done_features: BTreeSet<String>,
    /// A feature whose handoff awaits the orchestrator's triage.
    pub triage: Option<String>,
    pub job: Option<Job>,
    /// A step that must run before anything else (a retry, or a person's request).
    pub pending: Option<Task>,
    /// Runs per step slug, ever: the next try's number.
    pub tries: BTreeMap<String, u32>,
    /// Failed runs per step slug since the last resume.
    pub failures: BTreeMap<String, u32>,
    pub validation: Validation,
    /// The validation round at the last resume: the round bound counts from it,
    /// so a person who pushed a fix can have it validated.
    #[serde(default)]
    pub rounds_at_resume: u32,
    /// The head a passed validation judged; the merge must be of this commit.
    pub validated_sha: Option<String>,
    /// The current milestone's PR was merged without passing validation.
    pub merged_unvalidated: bool,
    /// Milestones whose unvalidated merge a person accepted, for the final report.
    #[serde(default)]
    pub unvalidated_merges: Vec<String>,
    pub scope_round: u32,
    pub revise_round: u32,
    pub replans: u32,
    pub paused: Option<String>,
    pub usage: JobUsage,
    /// Workflow runs already accounted for: a late duplicate is ignored.
    pub consumed_runs: BTreeSet<u64>,
    pub history: Vec<HistoryEntry>,
    /// Assertion id → validator → its latest verdict.
    #[serde(default)]
    pub verdicts: BTreeMap<String, BTreeMap<Validator, AssertionVerdict>>,
    #[serde(default)]
    pub last_handoff: Option<HandoffNote>,
    /// The mission control comment on the issue, once posted.
    #[serde(default)]
    pub sticky_comment: Option<u64>,
    /// When the orchestrator's latest questions were asked (unix seconds): an
    /// answer is a comment made since.
    #[serde(default)]
    pub asked_at: Option<i64>,
    /// Logins (lowercase) already told that they may not steer or approve this
    /// mission. Each person gets that reply once: answering every refused act
    /// would let anyone spend the App's rate limit on comments.
    #[serde(default)]
    pub refused: BTreeSet<String>,
    /// The issue's title and body as the mission's jobs take them: from when
    /// it was labeled, an edit by someone with write access, or a
    /// `/mission resume` after an edit. `None` for missions started before
    /// snapshots (their jobs read the issue as it is).
    #[serde(default)]
    pub issue_text: Option<IssueSnapshot>,
    /// An edit by someone without write access that the jobs do not take
    /// until a person with write access resumes the mission.
    #[serde(default)]
    pub issue_edit: Option<PendingEdit>,
    /// Who aborted the mission, for the check runs it leaves.
    #[serde(default)]
    pub aborted_by: Option<String>,
    /// Every check run the mission opened: a result that names one again (a
    /// late duplicate) must not complete it a second time.
    #[serde(default)]
    pub checks_seen: BTreeSet<u64>,
    /// The part of `usage.cost_micros` that is estimated: runs that died
    /// without leaving what they spent.
    #[serde(default)]
    pub estimated_micros: u64,
    /// Branches GitHub did not create (name → where from): a resume asks again
    /// before anything runs on them.
    #[serde(default)]
    pub missing_branches: BTreeMap<String, String>,
    /// The milestone PR's head moved during validation (a person's *Update
    /// branch*, a push): the round ends, then the new head is validated.
    #[serde(default)]
    pub head_moved: Option<String>,
    /// The latest plan's checks as they ran on the base (see [`BaselineLint`]).
    #[serde(default)]
    pub lint: Option<BaselineLint>,
    /// The commit the approved plan was written and linted on, pinned at
    /// approval: the base the mission's contract was judged against.
    #[serde(default)]
    pub base_commit: Option<String>,
    /// The contract as the maintainer last approved it: a revision that
    /// removes or changes one of these needs their approval again. Empty for
    /// missions approved before the rule: the plan then in force counts.
    #[serde(default)]
    pub approved: Vec<Assertion>,
    /// A revision waiting for the maintainer's review.
    #[serde(default)]
    pub revision: Option<PendingRevision>,
}

/// A boundary re-plan that waits for the maintainer's approval, and its pull
/// request as the App opens it (again, after a resume, if GitHub refused it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRevision {
    pub plan: Plan,
    /// The milestone merged before it (its re-plan branch).
    pub after: String,
    pub title: String,
    pub body: String,
}

impl PendingRevision {
    fn open_pr(&self, issue: u64) -> Effect {
        Effect::OpenPlanPr {
            branch: replan_branch(issue, &self.after),
            title: self.title.clone(),
            body: self.body.clone(),
        }
    }
}

/// The issue's title and body, by their hash (see [`IssueSnapshot::hash`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueSnapshot {
    pub sha256: String,
    /// When GitHub last changed the issue, as it said then (ISO 8601).
    #[serde(default)]
    pub updated_at: Option<String>,
}

impl IssueSnapshot {
    pub fn of(title: &str, body: Option<&str>, updated_at: Option<String>) -> IssueSnapshot {
        IssueSnapshot {
            sha256: IssueSnapshot::hash(title, body),
            updated_at,
        }
    }

    /// The hex SHA-256 of the title, a newline, and the body (empty when the
    /// issue has none): what the App sends jobs, and what they compare with.
    pub fn hash(title: &str, body: Option<&str>) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(title.as_bytes());
        hasher.update(b"\n");
        hasher.update(body.unwrap_or("").as_bytes());
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// An edit of the issue not taken in yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEdit {
    pub snapshot: IssueSnapshot,
    /// Who edited it.
    pub by: String,
}

/// Branch names, all under `missions/<issue>/`.
pub fn plan_branch(issue: u64) -> String {
    format!("missions/{issue}/plan")
}

pub fn milestone_branch(issue: u64, milestone_id: &str) -> String {
    format!("missions/{issue}/{}", milestone_id.to_ascii_lowercase())
}

/// Where the orchestrator revises the plan once milestone `merged` is merged:
/// the next milestone's branch starts from it, as milestone 1's from the plan
/// branch. Named after the merged milestone, which no revision can change, so
/// each boundary has a branch of its own whatever the revisions insert.
pub fn replan_branch(issue: u64, merged: &str) -> String {
    format!("{}-replan", milestone_branch(issue, merged))
}

pub fn reports_branch(issue: u64) -> String {
    format!("missions/{issue}/reports")
}

/// Where the App writes what the repository's own CI said of a milestone's
/// ready commit (on the reports branch, beside the validators' reports).
pub fn ci_report_path(issue: u64, milestone: &str) -> String {
    format!(".missions/{issue}/reports/{milestone}-ci.json")
}

/// The issue number of a mission branch, if `branch` is one.
pub fn issue_of_branch(branch: &str) -> Option<u64> {
    branch
        .strip_prefix("missions/")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

impl Mission {
    /// A user with write access labelled the issue.
    pub fn start(
        repo: impl Into<String>,
        issue: u64,
        author: impl Into<String>,
        base: impl Into<String>,
        settings: Settings,
        labeled_by: &str,
        now: i64,
    ) -> (Mission, Vec<Effect>) {
        let base = base.into();
        let mut m = Mission {
            repo: repo.into(),
            issue,
            author: author.into(),
            base: base.clone(),
            settings,
            phase: Phase::Scoping,
            plan: None,
            plan_pr: None,
            milestone: 0,
            milestone_prs: BTreeMap::new(),
            done_features: BTreeSet::new(),
            triage: None,
            job: None,
            pending: None,
            tries: BTreeMap::new(),
            failures: BTreeMap::new(),
            validation: Validation::default(),
            validated_sha: None,
            merged_unvalidated: false,
            unvalidated_merges: Vec::new(),
            scope_round: 1,
            revise_round: 0,
            replans: 0,
            paused: None,
            usage: JobUsage::default(),
            consumed_runs: BTreeSet::new(),
            history: Vec::new(),
            verdicts: BTreeMap::new(),
            last_handoff: None,
            sticky_comment: None,
            asked_at: None,
            rounds_at_resume: 0,
            refused: BTreeSet::new(),
            issue_text: None,
            issue_edit: None,
            aborted_by: None,
            checks_seen: BTreeSet::new(),
            estimated_micros: 0,
            missing_branches: BTreeMap::new(),
            head_moved: None,
            lint: None,
            base_commit: None,
            approved: Vec::new(),
            revision: None,
        };
        let mut effects = vec![
            Effect::CreateBranch {
                name: plan_branch(issue),
                from: base,
            },
            Effect::Comment {
                target: Target::Issue,
                body: format!(
                    "Mission started by @{labeled_by}. The orchestrator is scoping this issue; \
                     it will ask here if it needs answers, then propose a plan as a pull request.\n\n\
                     Commands (write access): `/mission status`, `pause`, `resume`, `abort`, `retry`, `replan`."
                ),
            },
        ];
        m.pending = Some(Task::Scope { round: 1 });
        effects.extend(m.advance(now));
        (m, effects)
    }

    /// Refusal for a label by someone who may not start a mission. No state.
    pub fn refuse_start(actor: &Actor) -> Option<Effect> {
        if actor.is_bot {
            return None;
        }
        Some(Effect::Comment {
            target: Target::Issue,
            body: format!(
                "@{} thanks for the interest! Only people with write access to this repository \
                 can start a mission, so nothing was started. A maintainer can add the label.",
                actor.login
            ),
        })
    }

    /// `reply` to a person's refused act, unless they were already told once.
    fn refuse_once(&mut self, actor: &Actor, reply: Effect) -> Vec<Effect> {
        // Later acts are ignored without a word (the domain does no logging;
        // the driver's log shows the input was applied).
        if self.refused.insert(actor.login.to_ascii_lowercase()) {
            vec![reply]
        } else {
            Vec::new()
        }
    }

    /// The mission with the issue's text as it was labeled (see
    /// [`Mission::issue_text`]).
    pub fn with_issue_text(mut self, issue_text: Option<IssueSnapshot>) -> Mission {
        self.issue_text = issue_text;
        self
    }

    /// An edit of the issue: taken in at once from a person with write access
    /// (they could steer the mission anyway); from anyone else it waits for a
    /// person with write access to `/mission resume`, and the issue says so
    /// once per waiting edit. Jobs keep the text of [`Mission::issue_text`].
    fn on_issue_edited(&mut self, actor: &Actor, snapshot: IssueSnapshot) -> Vec<Effect> {
        if self
            .issue_text
            .as_ref()
            .is_some_and(|s| s.sha256 == snapshot.sha256)
        {
            // Back to the text the jobs have.
            self.issue_edit = None;
            return Vec::new();
        }
        if actor.is_trusted() {
            self.issue_text = Some(snapshot);
            self.issue_edit = None;
            return Vec::new();
        }
        let first = self.issue_edit.is_none();
        self.issue_edit = Some(PendingEdit {
            snapshot,
            by: actor.login.clone(),
        });
        if !first {
            return Vec::new();
        }
        vec![self.issue_comment(format!(
            "@{} edited this issue's title or description after the mission started. The \
             mission's jobs keep the text they had{}: an edit by someone without write access \
             is not taken in until a person with write access has read it and comments \
             `/mission resume`.",
            actor.login,
            self.issue_text
                .as_ref()
                .and_then(|s| s.updated_at.as_deref())
                .map(|at| format!(" (as of {at})"))
                .unwrap_or_default()
        ))]
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self.phase, Phase::Done | Phase::Aborted)
    }

    pub fn current_milestone_id(&self) -> Option<&str> {
        self.plan
            .as_ref()?
            .milestones
            .get(self.milestone)
            .map(|m| m.id.as_str())
    }

    /// The milestone merged last (the one before the current).
    fn merged_milestone_id(&self) -> String {
        self.plan
            .as_ref()
            .and_then(|p| p.milestones.get(self.milestone.checked_sub(1)?))
            .map_or_else(String::new, |m| m.id.clone())
    }

    fn milestone_branch_now(&self) -> String {
        milestone_branch(self.issue, self.current_milestone_id().unwrap_or("m0"))
    }

    /// Applies one event; returns what the server must do, in order.
    ///
    /// Whatever the event, no check run stays open unless a validator job of
    /// its round is running: the rest are completed here, with the reason.
    pub fn apply(&mut self, event: Event, now: i64) -> Vec<Effect> {
        if self.is_terminal() {
            // Only a status request gets an answer once a mission has ended.
            if let Event::Command {
                actor,
                command: Ok(Command::Status),
                ..
            } = &event
                && actor.is_trusted()
            {
                return vec![self.status_comment()];
            }
            // A queue still holding one of its pull requests gets a verdict
            // (failure) at once rather than waiting out its timeout.
            if let Event::MergeGroupRequested {
                pr,
                pr_head_sha,
                group_sha,
            } = event
            {
                return self.on_merge_group(pr, &pr_head_sha, group_sha);
            }
            // Check runs opened by an effect that was under way when the
            // mission ended: nothing will ever report on them.
            let ids: Vec<u64> = match &event {
                Event::ValidationStarted { checks, .. } => checks.values().copied().collect(),
                Event::CheckOpened { check_run_id, .. } => vec![*check_run_id],
                _ => Vec::new(),
            };
            return self.cancel_unexpected_checks(ids);
        }
        let mut effects = self.apply_open(event, now);
        effects.extend(self.close_unattended_checks());
        effects
    }

    fn apply_open(&mut self, event: Event, now: i64) -> Vec<Effect> {
        match event {
            Event::Comment { actor, is_author } => self.on_comment(&actor, is_author, now),
            Event::Command {
                actor,
                command,
                settings,
            } => self.on_command(&actor, command, settings, now),
            Event::Review { pr, actor, state } => self.on_review(pr, &actor, state, now),
            Event::IssueEdited { actor, snapshot } => self.on_issue_edited(&actor, snapshot),
            Event::PrMerged {
                pr,
                actor,
                head_sha,
            } => self.on_merged(pr, &actor, &head_sha, now),
            Event::JobStarted { key, run_id, url } => {
                if let Some(job) = self.job.as_mut()
                    && job.key == key
                    && job.run_id.is_none_or(|r| r == run_id)
                    && !self.consumed_runs.contains(&run_id)
                {
                    job.run_id = Some(run_id);
                    if url.is_some() {
                        job.run_url = url;
                    }
                }
                Vec::new()
            }
            Event::RerunRequested {
                sha,
                validators,
                actor,
            } => self.on_rerun(&sha, &validators, &actor, now),
            Event::HeadMoved { pr, sha } => self.on_head_moved(pr, sha, now),
            Event::MergeGroupRequested {
                pr,
                pr_head_sha,
                group_sha,
            } => self.on_merge_group(pr, &pr_head_sha, group_sha),
            Event::StickyPosted { comment_id } => {
                self.sticky_comment = Some(comment_id);
                Vec::new()
            }
            Event::JobFinished {
                key,
                run_id,
                conclusion,
                output,
                ledger,
            } => self.on_job_finished(&key, run_id, conclusion, output, ledger, now),
            Event::PlanPrOpened { number } => {
                self.plan_pr = Some(number);
                Vec::new()
            }
            Event::MilestonePrOpened { index, number } => {
                self.milestone_prs.insert(index, number);
                Vec::new()
            }
            Event::ValidationStarted {
                index,
                round,
                sha,
                checks,
                required,
            } => {
                if index != self.milestone
                    || round != self.validation.round
                    || self.phase != Phase::Validating
                {
                    return self.cancel_unexpected_checks(checks.into_values().collect());
                }
                self.validation.sha = Some(sha);
                self.checks_seen.extend(checks.values().copied());
                self.validation.checks = checks;
                self.validation.required = required;
                // The ready commit was made on the head as it is now.
                self.head_moved = None;
                self.advance(now)
            }
            Event::ExternalChecks { sha, checks } => self.on_external_checks(&sha, checks, now),
            Event::CheckOpened {
                index,
                round,
                validator,
                check_run_id,
            } => {
                let expected = index == self.milestone
                    && round == self.validation.round
                    && self.phase == Phase::Validating
                    && self.validation.closed.contains(&validator)
                    && !self.validation.verdicts.contains_key(&validator);
                if self.validation.opening == Some(validator) {
                    self.validation.opening = None;
                }
                if !expected {
                    return self.cancel_unexpected_checks(vec![check_run_id]);
                }
                self.checks_seen.insert(check_run_id);
                self.validation.checks.insert(validator, check_run_id);
                self.validation.closed.remove(&validator);
                self.advance(now)
            }
            Event::DispatchFailed { key, error } => {
                let Some(job) = self.job.clone().filter(|j| j.key == key) else {
                    return Vec::new();
                };
                // It never ran: put the step back, so that a resume runs it.
                self.job = None;
                self.pending = Some(job.task);
                if self.paused.is_some() {
                    // Dispatched before the pause's cause showed (a branch GitHub
                    // did not make): the pause already says what to do.
                    return Vec::new();
                }
                let how = if error.contains("Unexpected inputs") {
                    "The mission workflow is older than the App (it lacks an input the App sends, \
                     such as `spend_limit_usd`): run `missions init --force` and commit \
                     `.github/workflows/missions.yml` to the default branch, then comment `/mission resume`."
                } else {
                    "Check that the mission workflow is on the default branch (GitHub dispatches only workflows it finds there) and that the App may run Actions, then comment `/mission resume`."
                };
                self.pause(
                    format!(
                        "GitHub refused to dispatch job `{key}`: {}",
                        one_line(&error)
                    ),
                    how,
                )
            }
            Event::ValidationStartFailed {
                index,
                round,
                error,
            } => {
                if index != self.milestone
                    || round != self.validation.round
                    || self.phase != Phase::Validating
                    || self.validation.sha.is_some()
                {
                    return Vec::new();
                }
                // Back to "every feature done": a resume starts this round again.
                self.phase = Phase::Building;
                self.validation = Validation {
                    round: round - 1,
                    ..Validation::default()
                };
                self.pause(
                    format!(
                        "the ready commit or its check runs could not be made: {}",
                        one_line(&error)
                    ),
                    "Check the App's permissions (contents and checks: write) and branch protection, then comment `/mission resume`.",
                )
            }
            Event::BranchNotCreated { name, from, error } => {
                if self.is_terminal() {
                    return Vec::new();
                }
                let first = self.paused.is_none();
                self.missing_branches.insert(name.clone(), from);
                let effects = self.pause(
                    format!("GitHub did not create branch `{name}`: {}", one_line(&error)),
                    "Fix the cause, then comment `/mission resume`: the App makes the branch again before any job runs on it.",
                );
                // Said once: a second branch refused for the same cause adds nothing.
                if first { effects } else { Vec::new() }
            }
            Event::EffectFailed { what, error } => {
                // A check run being opened may be what failed: the resume asks again.
                self.validation.opening = None;
                self.pause(
                format!("GitHub refused to {what}: {}", one_line(&error)),
                "Fix the cause (permissions, branch protection), then comment `/mission resume`.",
                )
            }
        }
    }

    /// Completes check runs that the mission does not follow (of a round
    /// that was superseded, or opened as the mission ended), each once.
    fn cancel_unexpected_checks(&mut self, ids: Vec<u64>) -> Vec<Effect> {
        let (title, summary) = self.why_checks_stop();
        ids.into_iter()
            .filter(|id| self.checks_seen.insert(*id))
            .map(|check_run_id| Effect::CompleteCheck {
                check_run_id,
                conclusion: CheckConclusion::Cancelled,
                title: title.clone(),
                summary: summary.clone(),
                images: Vec::new(),
            })
            .collect()
    }

    /// Whether a validator job of the current round is running: only then may
    /// the round's check runs stay open.
    fn validator_running(&self) -> bool {
        self.phase == Phase::Validating
            && matches!(&self.job, Some(Job { task: Task::Validate { round, .. }, .. })
                if *round == self.validation.round)
    }

    /// The rule every event ends with: a check run is open only while a
    /// validator job of its round runs. The others are cancelled with why.
    fn close_unattended_checks(&mut self) -> Vec<Effect> {
        if self.validator_running() {
            return Vec::new();
        }
        let open = self.validation.open_checks();
        if open.is_empty() {
            return Vec::new();
        }
        let (title, summary) = self.why_checks_stop();
        open.into_iter()
            .map(|(validator, check_run_id)| {
                self.validation.closed.insert(validator);
                Effect::CompleteCheck {
                    check_run_id,
                    conclusion: CheckConclusion::Cancelled,
                    title: title.clone(),
                    summary: summary.clone(),
                    images: Vec::new(),
                }
            })
            .collect()
    }

    /// A check run's title and summary when it ends without a report.
    fn why_checks_stop(&self) -> (String, String) {
        let issue = self.issue;
        if self.phase == Phase::Aborted || self.phase == Phase::Done {
            let by = self
                .aborted_by
                .as_deref()
                .map_or(String::new(), |login| format!(" by @{login}"));
            return (
                "Mission ended".into(),
                format!(
                    "The mission of #{issue} was aborted{by}: nothing will validate this commit."
                ),
            );
        }
        if let Some(reason) = &self.paused {
            return (
                "Mission paused".into(),
                format!(
                    "The mission of #{issue} is paused: {}.\n\nNothing is validated until a person \
                     with write access comments `/mission resume` on #{issue}; the validator then \
                     runs again and reports on a new check run.",
                    one_line(reason)
                ),
            );
        }
        let what = self
            .job
            .as_ref()
            .map(|j| j.task.describe())
            .or_else(|| self.pending.as_ref().map(Task::describe))
            .unwrap_or_else(|| "other work".into());
        (
            "Superseded".into(),
            format!(
                "This round of validation was stopped: {what} runs first. The milestone gets a new \
                 ready commit and new check runs after it."
            ),
        )
    }

    fn on_comment(&mut self, actor: &Actor, is_author: bool, now: i64) -> Vec<Effect> {
        if actor.is_bot || !(is_author || actor.can_write) {
            return Vec::new();
        }
        if self.phase != Phase::AwaitingAnswers {
            return Vec::new();
        }
        self.scope_round += 1;
        self.phase = Phase::Scoping;
        self.pending = Some(Task::Scope {
            round: self.scope_round,
        });
        self.advance(now)
    }

    fn on_command(
        &mut self,
        actor: &Actor,
        command: Result<Command, String>,
        settings: Settings,
        now: i64,
    ) -> Vec<Effect> {
        if actor.is_bot {
            return Vec::new();
        }
        if !actor.can_write {
            let reply = self.issue_comment(format!(
                "@{} only people with write access can steer a mission; nothing was changed.",
                actor.login
            ));
            return self.refuse_once(actor, reply);
        }
        let command = match command {
            Ok(c) => c,
            Err(word) => {
                return vec![self.issue_comment(format!(
                    "@{} `/mission {word}` is not a command. Try `status`, `pause`, `resume`, \
                     `abort`, `retry` or `replan`.",
                    actor.login
                ))];
            }
        };
        match command {
            Command::Status => vec![self.status_comment()],
            Command::Pause => {
                if self.paused.is_some() {
                    return vec![self.issue_comment("The mission is already paused.".into())];
                }
                self.paused = Some(format!("paused by @{}", actor.login));
                vec![self.issue_comment(format!(
                    "Paused by @{}. A running job finishes, nothing new starts. \
                     Comment `/mission resume` to continue.",
                    actor.login
                ))]
            }
            Command::Resume | Command::Retry => {
                self.settings = settings;
                if command == Command::Retry && self.job.is_some() {
                    return vec![self.issue_comment(
                        "A job is running; `/mission retry` applies once it has ended.".into(),
                    )];
                }
                if self.merged_unvalidated && self.job.is_some() {
                    // Its result must land on the merged milestone, not the next one.
                    return vec![self.issue_comment(
                        "A job of the merged milestone is still running; comment `/mission resume` \
                         again once it has ended."
                            .into(),
                    )];
                }
                // A waiting edit of the issue is taken in by whoever resumes.
                let edit_note = match self.issue_edit.take() {
                    Some(edit) => {
                        self.issue_text = Some(edit.snapshot);
                        format!(
                            " The edit of the issue by @{} is taken in: jobs from now on read \
                             the issue as it is.",
                            edit.by
                        )
                    }
                    None => String::new(),
                };
                let was = self.paused.take();
                // Failures count since the last resume, for every step: a replan
                // may have replaced the pending step that hit the bound.
                self.failures.clear();
                self.rounds_at_resume = self.validation.round;
                // A round that waited too long for the repository's checks
                // starts over on a new ready commit (its push starts the
                // workflows again, and the required names are read anew).
                let ci_stuck = self.phase == Phase::Validating
                    && self.job.is_none()
                    && self.validation.ci_waiting_since.is_some()
                    && !self.validation.ci_pending().is_empty();
                self.validation.ci_waiting_since = None;
                let mut effects = Vec::new();
                if self.merged_unvalidated {
                    // The person chose to accept the merge as it is.
                    self.merged_unvalidated = false;
                    let id = self.current_milestone_id().unwrap_or("?").to_owned();
                    self.unvalidated_merges
                        .push(format!("{id} (accepted by @{})", actor.login));
                    effects.push(self.issue_comment(format!(
                        "Resumed by @{}: the merge of {} is accepted as it is.{edit_note}",
                        actor.login,
                        self.current_milestone_id().unwrap_or("the milestone")
                    )));
                    effects.extend(self.next_milestone(now));
                    return effects;
                }
                effects.push(self.issue_comment(match was {
                    Some(reason) => {
                        format!("Resumed by @{} (was: {reason}).{edit_note}", actor.login)
                    }
                    None => format!(
                        "@{} the mission was not paused; continuing.{edit_note}",
                        actor.login
                    ),
                }));
                // Before anything is dispatched on them.
                effects.extend(
                    std::mem::take(&mut self.missing_branches)
                        .into_iter()
                        .map(|(name, from)| Effect::CreateBranch { name, from }),
                );
                // A revision whose pull request GitHub refused to open: again.
                if self.phase == Phase::RevisionReview
                    && self.plan_pr.is_none()
                    && let Some(pending) = &self.revision
                {
                    effects.push(pending.open_pr(self.issue));
                }
                if ci_stuck {
                    let target = Target::MilestonePr {
                        index: self.milestone,
                    };
                    effects.extend(
                        self.revalidate(
                            now,
                            "The repository's required checks did not conclude on the last ready \
                         commit: the App validates the head again on a new ready commit, which \
                         starts the repository's workflows anew."
                                .into(),
                            target,
                        ),
                    );
                    return effects;
                }
                effects.extend(self.advance(now));
                effects
            }
            Command::Abort => {
                self.phase = Phase::Aborted;
                self.pending = None;
                self.aborted_by = Some(actor.login.clone());
                vec![self.issue_comment(format!(
                    "Aborted by @{}. Branches and PRs are left as they are; a running job's \
                     result will be ignored.",
                    actor.login
                ))]
            }
            Command::Replan => {
                if matches!(self.phase, Phase::Replanning | Phase::RevisionReview) {
                    return vec![self.issue_comment(
                        "The orchestrator is re-planning the rest of the mission at this milestone \
                         boundary already (or its revision waits for a review); comment \
                         `/mission replan` again once the next milestone has started."
                            .into(),
                    )];
                }
                if self.job.is_some() {
                    return vec![
                        self.issue_comment(
                            "A job is running; comment `/mission replan` again once it has ended."
                                .into(),
                        ),
                    ];
                }
                let task = match self.phase {
                    Phase::Scoping | Phase::AwaitingAnswers => {
                        self.scope_round += 1;
                        self.phase = Phase::Scoping;
                        Task::Scope {
                            round: self.scope_round,
                        }
                    }
                    Phase::PlanReview => {
                        self.revise_round += 1;
                        Task::Revise {
                            round: self.revise_round,
                        }
                    }
                    _ => {
                        self.replans += 1;
                        Task::Replan { n: self.replans }
                    }
                };
                self.pending = Some(task);
                let mut effects = vec![self.issue_comment(format!(
                    "@{} asked for a new plan; the orchestrator reads this issue's comments.",
                    actor.login
                ))];
                effects.extend(self.advance(now));
                effects
            }
        }
    }

    fn on_review(&mut self, pr: u64, actor: &Actor, state: ReviewState, now: i64) -> Vec<Effect> {
        let reviewing = matches!(self.phase, Phase::PlanReview | Phase::RevisionReview);
        if !reviewing || self.plan_pr != Some(pr) || actor.is_bot {
            return Vec::new();
        }
        if state == ReviewState::Commented {
            return Vec::new();
        }
        if !actor.can_write {
            let reply = Effect::Comment {
                target: Target::PlanPr,
                body: format!(
                    "@{} thanks for the review. Only people with write access can approve or \
                     send back the plan, so it does not change the mission.",
                    actor.login
                ),
            };
            return self.refuse_once(actor, reply);
        }
        if self.job.is_some() {
            return vec![Effect::Comment {
                target: Target::PlanPr,
                body: "A revision is running; review again once it has been pushed.".into(),
            }];
        }
        if self.phase == Phase::RevisionReview {
            return self.on_revision_review(actor, state, now);
        }
        match state {
            ReviewState::Approved => {
                let Some(plan) = &self.plan else {
                    return Vec::new();
                };
                self.phase = Phase::Building;
                self.milestone = 0;
                // The approved plan stands: a revision asked for while paused is moot.
                self.pending = None;
                self.base_commit = self.lint.as_ref().map(|l| l.commit.clone());
                self.approved = plan.assertions.clone();
                let pinned = self.base_commit.as_deref().map_or_else(String::new, |c| {
                    format!(
                        " The plan was linted on `{}`, now the mission's pinned base.",
                        &c[..c.len().min(12)]
                    )
                });
                let first = &plan.milestones[0];
                let branch = milestone_branch(self.issue, &first.id);
                let mut effects = vec![
                    Effect::CreateBranch {
                        name: branch.clone(),
                        from: plan_branch(self.issue),
                    },
                    Effect::Comment {
                        target: Target::PlanPr,
                        body: format!(
                            "Approved by @{}. {} ({}) starts on `{branch}`; the plan files land \
                             with its pull request, so this one is closed.{pinned}",
                            actor.login, first.id, first.title
                        ),
                    },
                    Effect::ClosePr {
                        target: Target::PlanPr,
                    },
                ];
                effects.extend(self.advance(now));
                effects
            }
            ReviewState::ChangesRequested => {
                self.revise_round += 1;
                self.phase = Phase::Scoping;
                self.pending = Some(Task::Revise {
                    round: self.revise_round,
                });
                let mut effects = vec![Effect::Comment {
                    target: Target::PlanPr,
                    body: format!(
                        "@{} requested changes; the orchestrator is revising the plan with your review.",
                        actor.login
                    ),
                }];
                effects.extend(self.advance(now));
                effects
            }
            ReviewState::Commented => Vec::new(),
        }
    }

    /// A writer's review of a revision that changes the approved contract:
    /// approval adopts it (and makes its contract the approved one); changes
    /// requested set it aside, and the plan they approved goes on.
    fn on_revision_review(&mut self, actor: &Actor, state: ReviewState, now: i64) -> Vec<Effect> {
        let Some(PendingRevision {
            plan: revised,
            after,
            ..
        }) = self.revision.take()
        else {
            return Vec::new();
        };
        let approve = state == ReviewState::Approved;
        let from = if approve {
            self.approved = revised.assertions.clone();
            self.plan = Some(revised);
            replan_branch(self.issue, &after)
        } else {
            self.base.clone()
        };
        self.phase = Phase::Building;
        let branch = self.milestone_branch_now();
        let next = self.current_milestone_id().unwrap_or_default().to_owned();
        let body = if approve {
            format!(
                "Approved by @{}: the revised plan stands, and {next} starts on `{branch}`.",
                actor.login
            )
        } else {
            format!(
                "@{} requested changes: the revision is set aside, and {next} starts on \
                 `{branch}` with the plan as approved before.",
                actor.login
            )
        };
        let mut effects = vec![
            Effect::Comment {
                target: Target::PlanPr,
                body: body.clone(),
            },
            Effect::ClosePr {
                target: Target::PlanPr,
            },
            self.issue_comment(body),
            Effect::CreateBranch { name: branch, from },
        ];
        effects.extend(self.advance(now));
        effects
    }

    /// Re-run on a validator's check run: that validator judges the same
    /// ready commit again, on a fresh check run, while its round is on (a
    /// paused mission resumes for it). GitHub leaves Re-run of an App's check
    /// runs to the App; this is what it means here.
    fn on_rerun(
        &mut self,
        sha: &str,
        validators: &[Validator],
        actor: &Actor,
        now: i64,
    ) -> Vec<Effect> {
        if !actor.is_trusted() || self.is_terminal() || validators.is_empty() {
            return Vec::new();
        }
        let names = validators
            .iter()
            .map(|v| format!("`{}`", v.check_name()))
            .collect::<Vec<_>>()
            .join(" and ");
        let short = &sha[..sha.len().min(7)];
        let who = &actor.login;
        let round_on = matches!(self.phase, Phase::Validating | Phase::AwaitingMerge)
            && self.validation.sha.as_deref() == Some(sha);
        let following_up = [self.job.as_ref().map(|j| &j.task), self.pending.as_ref()]
            .into_iter()
            .flatten()
            .any(|t| matches!(t, Task::FollowUp { .. }));
        let refusal = if !round_on {
            Some(
                "that commit is no longer the one being validated; the next ready commit is \
                 validated when the work before it is done"
                    .to_owned(),
            )
        } else if following_up {
            Some("this round's failures are being turned into follow-up features, which a new round validates".to_owned())
        } else if self.merged_unvalidated || self.issue_edit.is_some() {
            Some("the mission waits for a `/mission resume` first (see its last pause)".to_owned())
        } else {
            None
        };
        let running = match self.job.as_ref().map(|j| &j.task) {
            Some(Task::Validate { validator, .. }) => Some(*validator),
            _ => None,
        };
        // Only a check run that has ended can run again.
        let again: Vec<Validator> = validators
            .iter()
            .copied()
            .filter(|v| {
                Some(*v) != running
                    && (self.validation.verdicts.contains_key(v)
                        || self.validation.closed.contains(v))
            })
            .collect();
        let refusal = refusal.or_else(|| {
            again
                .is_empty()
                .then(|| "it is running or about to run on this commit already".to_owned())
        });
        if let Some(why) = refusal {
            return vec![Effect::Comment {
                target: self.work_target(),
                body: format!("@{who} {names} on {short} was not run again: {why}."),
            }];
        }
        for v in &again {
            self.validation.verdicts.remove(v);
            self.validation.closed.insert(*v);
        }
        // The wait for the repository's checks starts again once the
        // validators have reported again.
        self.validation.ci_waiting_since = None;
        if self.phase == Phase::AwaitingMerge {
            self.phase = Phase::Validating;
            self.validated_sha = None;
        }
        let resumed = match self.paused.take() {
            Some(reason) => {
                self.failures.clear();
                self.rounds_at_resume = self.validation.round;
                format!(" The mission resumes for it (it was paused: {reason}).")
            }
            None => String::new(),
        };
        let again_names = again
            .iter()
            .map(|v| format!("`{}`", v.check_name()))
            .collect::<Vec<_>>()
            .join(" and ");
        let mut effects = vec![Effect::Comment {
            target: self.work_target(),
            body: format!(
                "@{who} asked to re-run {again_names} on {short}: it runs again on a fresh \
                 check run of the same commit.{resumed}"
            ),
        }];
        effects.extend(self.advance(now));
        effects
    }

    /// Other apps' checks on a commit: the current round records those it
    /// waits for, the newest run from each source; once none is pending it
    /// goes on. One still pending `ci_wait_secs` after the validators passed
    /// pauses the mission (a workflow that never runs on mission branches
    /// would otherwise hold it for ever).
    fn on_external_checks(
        &mut self,
        sha: &str,
        checks: Vec<ExternalCheck>,
        now: i64,
    ) -> Vec<Effect> {
        if self.phase != Phase::Validating || self.validation.sha.as_deref() != Some(sha) {
            return Vec::new();
        }
        for check in checks {
            if !self
                .validation
                .required
                .iter()
                .any(|r| r.name == check.name)
            {
                continue;
            }
            let key = check.source();
            let older = self.validation.external.get(&key).is_some_and(|known| {
                match (known.check_run_id, check.check_run_id) {
                    // A late `created` of a run already seen completed.
                    (Some(a), Some(b)) if a == b => {
                        known.conclusion.is_some() && check.conclusion.is_none()
                    }
                    // A re-run is a new check run with a higher id.
                    (Some(a), Some(b)) => b < a,
                    _ => false,
                }
            });
            if !older {
                self.validation.external.insert(key, check);
            }
        }
        let pending = self.validation.ci_pending();
        if let Some(since) = self.validation.ci_waiting_since
            && !pending.is_empty()
            && self.validation.ci_failed().is_empty()
            && self.paused.is_none()
            && self.job.is_none()
            && now - since >= self.settings.ci_wait_secs as i64
        {
            let short = &sha[..sha.len().min(7)];
            let names = pending
                .iter()
                .map(|n| format!("`{}`", one_line(n).replace('`', "'")))
                .collect::<Vec<_>>()
                .join(", ");
            return self.pause(
                format!(
                    "the repository's required check(s) {names} did not conclude on {short} within {} minutes",
                    self.settings.ci_wait_secs / 60
                ),
                "Make sure those workflows run on pushes to `missions/**` branches (a `paths:` filter \
                 skips the App's ready commit, which changes no file), or drop the names from \
                 `ci.required` in `.github/missions.yml` or from the base branch's required checks, \
                 then comment `/mission resume`: the App makes a new ready commit, which starts \
                 your workflows again, and reads the required checks anew.",
            );
        }
        self.advance(now)
    }

    /// The milestone PR's head moved after its ready commit was made: what
    /// the check runs judged is no longer what would be merged. The new head
    /// is validated afresh (a new ready commit on it, new check runs), not
    /// judged by carried checks: base's changes can break the milestone.
    /// Pushes while features are built, and the App's own ready commit, are
    /// not moves.
    fn on_head_moved(&mut self, pr: u64, sha: String, now: i64) -> Vec<Effect> {
        if self.milestone_prs.get(&self.milestone) != Some(&pr) || self.merged_unvalidated {
            return Vec::new();
        }
        let judged = match self.phase {
            Phase::Validating => self.validation.sha.clone(),
            Phase::AwaitingMerge => self.validated_sha.clone(),
            _ => None,
        };
        // No ready commit yet: the round's will be made on the head as it is.
        let Some(judged) = judged else {
            return Vec::new();
        };
        if judged == sha || self.head_moved.as_deref() == Some(sha.as_str()) {
            return Vec::new();
        }
        // The round failed and its follow-up is writing: the next round is
        // made on the head as the follow-up leaves it.
        if self.phase == Phase::Validating
            && self
                .job
                .as_ref()
                .is_some_and(|j| matches!(j.task, Task::FollowUp { .. }))
        {
            return Vec::new();
        }
        let short = &sha[..sha.len().min(7)];
        let target = Target::MilestonePr {
            index: self.milestone,
        };
        if self.phase == Phase::Validating {
            self.head_moved = Some(sha.clone());
            let mut effects = vec![Effect::Comment {
                target,
                body: format!(
                    "The head of this pull request moved to {short} during validation; the App \
                     validates the new head once this round has ended."
                ),
            }];
            // A round that only waits for the repository's checks has ended.
            if self.job.is_none() && self.validation.ci_waiting_since.is_some() {
                effects.extend(self.advance(now));
            }
            return effects;
        }
        self.revalidate(now, format!(
            "The head of this pull request moved to {short} after validation (an *Update branch* \
             or a push): the check runs judged an older commit, so the App validates the new head."
        ), target)
    }

    /// The merge queue's group passes the validators' checks when the pull
    /// request's head in it is the one both validators passed: the group only
    /// adds the base's newer changes, which the repository's own checks on
    /// `merge_group` judge. Anything else fails them, so that the queue drops
    /// the pull request at once rather than waiting out its timeout.
    fn on_merge_group(&self, pr: u64, pr_head_sha: &str, group_sha: String) -> Vec<Effect> {
        let short = &pr_head_sha[..pr_head_sha.len().min(7)];
        let id = self
            .current_milestone_id()
            .unwrap_or("the milestone")
            .to_owned();
        let current = self.milestone_prs.get(&self.milestone) == Some(&pr);
        let validated = current
            && !self.merged_unvalidated
            && self.phase == Phase::AwaitingMerge
            && self.validated_sha.as_deref() == Some(pr_head_sha);
        let (conclusion, title, summary) = if self.is_terminal() {
            (
                CheckConclusion::Failure,
                "The mission has ended".to_owned(),
                format!(
                    "The mission of #{pr} has ended ({}), so the App gives no verdict for it.",
                    if self.phase == Phase::Done {
                        "done"
                    } else {
                        "aborted"
                    }
                ),
            )
        } else if validated {
            (
                CheckConclusion::Success,
                format!("{id} validated at {short}"),
                format!(
                    "Both validators passed {id} on {short}, the head of #{pr} that this merge                      group merges. The group adds `{}`'s newer changes (and any pull requests                      queued ahead): your repository's own checks on `merge_group` judge those                      on this commit.",
                    self.base
                ),
            )
        } else if !current {
            (
                CheckConclusion::Failure,
                format!("#{pr} is not an open milestone"),
                format!(
                    "#{pr} is not the mission's open milestone pull request, so the App has no                      verdict for it."
                ),
            )
        } else {
            (
                CheckConclusion::Failure,
                format!("{id} is not validated at {short}"),
                format!(
                    "Both validators have not passed {id} on {short}, the head of #{pr} in this                      merge group. Wait for \"Ready to merge\" on #{pr}, then add it to the                      merge queue again."
                ),
            )
        };
        vec![Effect::ReportGroupChecks {
            sha: group_sha,
            conclusion,
            title,
            summary,
        }]
    }

    /// Back to "every feature done" with a new round on the head as it is;
    /// it is not counted as a failed round.
    fn revalidate(&mut self, now: i64, note: String, target: Target) -> Vec<Effect> {
        self.head_moved = None;
        self.phase = Phase::Building;
        self.validated_sha = None;
        self.rounds_at_resume = self.rounds_at_resume.max(self.validation.round);
        let mut effects = vec![Effect::Comment { target, body: note }];
        effects.extend(self.advance(now));
        effects
    }

    fn on_merged(&mut self, pr: u64, actor: &Actor, head_sha: &str, now: i64) -> Vec<Effect> {
        if self.milestone_prs.get(&self.milestone) != Some(&pr) || self.merged_unvalidated {
            return Vec::new();
        }
        let id = self
            .current_milestone_id()
            .unwrap_or("the milestone")
            .to_owned();
        let validated =
            self.phase == Phase::AwaitingMerge && self.validated_sha.as_deref() == Some(head_sha);
        // The merge queue merges only what a person with write access queued,
        // once the required checks passed on its group.
        let by_queue = actor.is_bot && actor.login == MERGE_QUEUE;
        if validated && (!actor.is_bot || by_queue) {
            let by = if by_queue {
                "the merge queue".to_owned()
            } else {
                format!("@{}", actor.login)
            };
            let mut effects = vec![self.issue_comment(format!("{id} was merged by {by}."))];
            effects.extend(self.next_milestone(now));
            return effects;
        }
        self.merged_unvalidated = true;
        let why = if validated {
            "by a bot; milestones are merged by people"
        } else {
            "before both check runs passed on its head"
        };
        self.pause(
            format!(
                "{id}'s pull request #{pr} was merged by @{} {why}",
                actor.login
            ),
            "The next milestone does not start on its own. Comment `/mission resume` to accept the merge as it is and continue.",
        )
    }

    fn next_milestone(&mut self, now: i64) -> Vec<Effect> {
        let count = self.plan.as_ref().map_or(0, |p| p.milestones.len());
        self.validation = Validation::default();
        self.rounds_at_resume = 0;
        self.validated_sha = None;
        if self.milestone + 1 >= count {
            self.phase = Phase::Done;
            return vec![
                Effect::Comment {
                    target: Target::Issue,
                    body: self.final_report(),
                },
                Effect::CloseIssue,
            ];
        }
        self.milestone += 1;
        self.phase = Phase::Building;
        if self
            .pending
            .as_ref()
            .is_some_and(|t| self.is_of_past_milestone(t))
        {
            self.pending = None;
        }
        // Before it starts, the orchestrator revises the rest of the plan
        // with what the merged milestones taught (see on_revision). A replan a
        // person asked for meanwhile is answered there: that job reads the
        // comments too.
        let merged = self.merged_milestone_id();
        self.phase = Phase::Replanning;
        self.pending = Some(Task::Boundary {
            after: merged.clone(),
        });
        let mut effects = vec![Effect::CreateBranch {
            name: replan_branch(self.issue, &merged),
            from: self.base.clone(),
        }];
        effects.extend(self.advance(now));
        effects
    }

    /// The orchestrator's revision before milestone `before`: laid over the
    /// plan, it must keep the plan's rules. Only additions and changes that
    /// leave the approved contract as it was apply at once; otherwise a pull
    /// request asks the maintainer (see on_review).
    fn on_revision(
        &mut self,
        after: &str,
        notes: &str,
        revision: &super::plan::Revision,
        now: i64,
    ) -> Result<Vec<Effect>, String> {
        let plan = self.plan.clone().ok_or("no plan to revise")?;
        let revised = plan
            .revised(self.milestone, revision)
            .map_err(|e| format!("the revised plan breaks the rules: {}", e.join("; ")))?;
        let approved = if self.approved.is_empty() {
            plan.assertions.clone()
        } else {
            self.approved.clone()
        };
        let changes = revised.unapproved_changes(&approved);
        let diff = plan.diff(&revised);
        let diff_text = if diff.is_empty() {
            "No change: the rest of the plan stands as approved.".to_owned()
        } else {
            format!(
                "What changes:\n\n{}",
                diff.iter().map(|d| format!("- {d}\n")).collect::<String>()
            )
        };
        let next = revised.milestones[self.milestone].id.clone();
        if changes.is_empty() {
            self.plan = Some(revised);
            self.phase = Phase::Building;
            let mut effects = vec![
                self.issue_comment(format!(
                    "### Re-plan before {next}\n\n{}\n\n{diff_text}",
                    notes.trim()
                )),
                Effect::CreateBranch {
                    name: self.milestone_branch_now(),
                    from: replan_branch(self.issue, after),
                },
            ];
            effects.extend(self.advance(now));
            return Ok(effects);
        }
        let list: String = changes.iter().map(|c| format!("- {c}\n")).collect();
        let pending = PendingRevision {
            plan: revised,
            after: after.to_owned(),
            title: format!("Plan revision before {next} for #{}", self.issue),
            body: format!(
                "The orchestrator revised the rest of the plan for #{} before {next} \
                 (`.missions/{}/plan.md`).\n\n{}\n\n{diff_text}\n\n**It removes or changes \
                 assertions you approved**, so it needs your approval:\n\n{list}\n\
                 Approve this pull request to go on with the revised plan, or request changes \
                 to set the revision aside and go on with the plan you approved.",
                self.issue,
                self.issue,
                notes.trim()
            ),
        };
        let open = pending.open_pr(self.issue);
        self.revision = Some(pending);
        self.phase = Phase::RevisionReview;
        // Only a review of the PR about to open counts: until it is known, an
        // old plan PR's approval must not pass for this one.
        self.plan_pr = None;
        Ok(vec![
            open,
            self.issue_comment(format!(
                "The re-plan before {next} removes or changes assertions that were approved:\n\n\
                 {list}\nIt waits for an approving review in its pull request; nothing runs \
                 until then."
            )),
        ])
    }

    fn on_job_finished(
        &mut self,
        key: &str,
        run_id: Option<u64>,
        conclusion: RunConclusion,
        output: Option<JobOutput>,
        ledger: Option<JobUsage>,
        now: i64,
    ) -> Vec<Effect> {
        let Some(job) = self.job.clone() else {
            return Vec::new();
        };
        if job.key != key || run_id.is_some_and(|r| self.consumed_runs.contains(&r)) {
            return Vec::new();
        }
        self.job = None;
        if let Some(r) = run_id {
            self.consumed_runs.insert(r);
        }
        // What it spent: from its output, else from the ledger it left, else
        // (a run that left nothing) its role's estimate, marked as such.
        let ran = job.run_id.is_some() || run_id.is_some();
        let (spent, estimated) = match (&output, ledger) {
            (Some(out), _) => (out.usage, false),
            (None, Some(ledger)) => (ledger, false),
            (None, None) if ran => (self.estimate(&job), true),
            (None, None) => (JobUsage::default(), false),
        };
        let budget_stop = output
            .as_ref()
            .is_some_and(|o| o.job == key && o.budget_stop);
        self.usage.add(&spent);
        if estimated {
            self.estimated_micros = self.estimated_micros.saturating_add(spent.cost_micros);
        }
        let result = match (conclusion, output) {
            (RunConclusion::Success, Some(out)) if out.job == key => Ok(out.result),
            (RunConclusion::Success, _) => {
                Err("the job succeeded but committed no result".to_owned())
            }
            // An agent that stopped early fails its run and says why.
            (
                _,
                Some(JobOutput {
                    job,
                    result: JobResult::Incomplete { reason },
                    ..
                }),
            ) if job == key => Err(format!("the agent stopped: {reason}")),
            (c, _) => Err(format!("the job's run ended: {}", conclusion_word(c))),
        };
        let outcome = match result {
            Ok(result) => self.on_result(&job, result, &spent, now),
            Err(reason) => Err(reason),
        };
        match outcome {
            Ok(effects) => {
                self.failures.remove(&job.task.slug());
                self.history.push(HistoryEntry {
                    at: now,
                    key: job.key.clone(),
                    outcome: "done".into(),
                    role: Some(job.role()),
                    started_at: job.dispatched_at,
                    usage: spent,
                    run_url: job.run_url.clone(),
                    estimated,
                });
                effects
            }
            Err(reason) => {
                self.history.push(HistoryEntry {
                    at: now,
                    key: job.key.clone(),
                    outcome: format!("failed: {reason}"),
                    role: Some(job.role()),
                    started_at: job.dispatched_at,
                    usage: spent,
                    run_url: job.run_url.clone(),
                    estimated,
                });
                // The failed validator's check run ends now, saying why; a
                // retry reports on a new one.
                let closed = self.close_failed_check(&job.task, conclusion);
                let mut effects = if budget_stop {
                    // Another try would stop the same way: the budget decides.
                    self.pending = Some(job.task.clone());
                    self.pause(
                        format!(
                            "the budget is spent: {} stopped before a model call that could pass its \
                             spending limit of ${} (${} of ${} spent)",
                            job.task.describe(),
                            dollars(job.spend_limit_micros.unwrap_or(0)),
                            dollars(self.usage.cost_micros),
                            dollars(self.settings.budget_micros.unwrap_or(0))
                        ),
                        "Raise `budget` in `.github/missions.yml` on the default branch, then comment `/mission resume` to run it again.",
                    )
                } else {
                    self.job_failed(job.task.clone(), reason.clone(), now)
                };
                if let Some((check_run_id, conclusion)) = closed {
                    let (title, summary) =
                        self.failed_check_text(&job, conclusion, &reason, &spent);
                    effects.insert(
                        0,
                        Effect::CompleteCheck {
                            check_run_id,
                            conclusion,
                            title,
                            summary,
                            images: Vec::new(),
                        },
                    );
                }
                effects
            }
        }
    }

    /// The plan PR's cost forecast for `plan`, against the budget.
    pub fn forecast(&self, plan: &Plan) -> String {
        super::forecast::forecast(plan, |role| {
            self.mean_cost(role)
                .unwrap_or_else(|| default_job_cost(role))
        })
        .to_markdown(self.usage.cost_micros, self.settings.budget_micros)
    }

    /// The line every handoff comment and check run ends with: what the job
    /// spent and the mission so far (the figures mission control shows).
    pub fn cost_note(&self, key: &str, spent: &JobUsage) -> String {
        let budget = self
            .settings
            .budget_micros
            .map_or(String::new(), |b| format!(" of ${}", dollars(b)));
        let estimated = if self.estimated_micros > 0 {
            format!(" (${} of it estimated)", dollars(self.estimated_micros))
        } else {
            String::new()
        };
        format!(
            "**Cost**: job `{key}` ${} ({} tokens in, {} out, {} cache reads) · mission so far ${}{budget}{estimated}",
            dollars(spent.cost_micros),
            spent.input_tokens,
            spent.output_tokens,
            spent.cache_read_tokens,
            dollars(self.usage.cost_micros),
        )
    }

    /// What a run that left nothing probably spent: the mean of its role's
    /// jobs so far (measured ones only), else the role's default; never more
    /// than the job was allowed.
    fn estimate(&self, job: &Job) -> JobUsage {
        let cost = self
            .mean_cost(job.role())
            .unwrap_or_else(|| default_job_cost(job.role()));
        JobUsage {
            cost_micros: job.spend_limit_micros.map_or(cost, |limit| cost.min(limit)),
            ..JobUsage::default()
        }
    }

    /// The mean cost of the role's jobs that reported what they spent.
    pub fn mean_cost(&self, role: JobRole) -> Option<u64> {
        let costs: Vec<u64> = self
            .history
            .iter()
            .filter(|h| h.role == Some(role) && !h.estimated && h.usage.cost_micros > 0)
            .map(|h| h.usage.cost_micros)
            .collect();
        (!costs.is_empty()).then(|| costs.iter().sum::<u64>() / costs.len() as u64)
    }

    /// Marks the check run of a failed validator job closed; returns its id and
    /// conclusion when it was open.
    fn close_failed_check(
        &mut self,
        task: &Task,
        run: RunConclusion,
    ) -> Option<(u64, CheckConclusion)> {
        let Task::Validate {
            validator, round, ..
        } = task
        else {
            return None;
        };
        if *round != self.validation.round {
            return None;
        }
        let (_, id) = self
            .validation
            .open_checks()
            .into_iter()
            .find(|(v, _)| v == validator)?;
        self.validation.closed.insert(*validator);
        let conclusion = match run {
            RunConclusion::TimedOut | RunConclusion::Lost => CheckConclusion::TimedOut,
            _ => CheckConclusion::Failure,
        };
        Some((id, conclusion))
    }

    fn failed_check_text(
        &self,
        job: &Job,
        conclusion: CheckConclusion,
        reason: &str,
        spent: &JobUsage,
    ) -> (String, String) {
        let who = job.task.role().as_str();
        let title = if conclusion == CheckConclusion::TimedOut {
            format!("The {who} job timed out")
        } else {
            format!("The {who} job ended without a report")
        };
        let next = if let Some(paused) = &self.paused {
            format!(
                "The mission is paused: {}. A person with write access can look at the run's \
                 log, fix the cause and comment `/mission resume` on #{} to run it again.",
                one_line(paused),
                self.issue
            )
        } else {
            "A new try runs on this commit and reports on a new check run.".to_owned()
        };
        let run = job
            .run_url
            .as_deref()
            .map_or(String::new(), |url| format!(" ([its run]({url}))"));
        (
            title,
            format!(
                "Job `{}`{run}: {}.\n\n{next}\n\n{}",
                job.key,
                one_line(reason),
                self.cost_note(&job.key, spent)
            ),
        )
    }

    /// A feature, validator or follow-up of a milestone before the current one:
    /// that milestone was merged and accepted as it is, so its steps do not run
    /// again (a triage still does: its amendment goes to the current milestone).
    fn is_of_past_milestone(&self, task: &Task) -> bool {
        let Some(plan) = &self.plan else {
            return false;
        };
        let index = match task {
            Task::Feature { id } => plan.feature(id).map(|(i, _)| i),
            Task::FollowUp { milestone, .. } | Task::Validate { milestone, .. } => {
                plan.milestones.iter().position(|m| &m.id == milestone)
            }
            _ => None,
        };
        index.is_some_and(|i| i < self.milestone)
    }

    /// A failed run: try again while attempts remain, else pause.
    fn job_failed(&mut self, task: Task, reason: String, now: i64) -> Vec<Effect> {
        if self.is_of_past_milestone(&task) {
            return self.advance(now);
        }
        let slug = task.slug();
        let failures = self.failures.entry(slug).or_insert(0);
        *failures += 1;
        let failures = *failures;
        let what = task.describe();
        let boundary = matches!(task, Task::Boundary { .. });
        self.pending = Some(task);
        if failures >= self.settings.max_attempts && boundary {
            // A re-plan only improves a plan that was approved as it is: one
            // that keeps failing must not hold the mission (nor a resume that
            // would run it again) — the next milestone goes on without it.
            self.pending = None;
            self.phase = Phase::Building;
            let next = self
                .current_milestone_id()
                .unwrap_or("the next milestone")
                .to_owned();
            let mut effects = vec![
                self.issue_comment(format!(
                    "{what} failed {failures} time(s) (last: {reason}), so {next} starts with the \
                     plan as it is. Look at the last run's log; `/mission replan` while {next} is \
                     built amends it."
                )),
                Effect::CreateBranch {
                    name: self.milestone_branch_now(),
                    from: self.base.clone(),
                },
            ];
            effects.extend(self.advance(now));
            return effects;
        }
        if failures >= self.settings.max_attempts {
            return self.pause(
                format!(
                    "{what} failed {} (last: {reason})",
                    if failures == 1 {
                        "once".to_owned()
                    } else {
                        format!("{failures} times")
                    }
                ),
                "Look at the last run's log, fix the cause, then comment `/mission resume` to try again.",
            );
        }
        self.advance(now)
    }

    /// A result in the right shape for the job's task, or why it is not.
    fn on_result(
        &mut self,
        job: &Job,
        result: JobResult,
        spent: &JobUsage,
        now: i64,
    ) -> Result<Vec<Effect>, String> {
        match (&job.task, result) {
            (_, JobResult::Incomplete { reason }) => Err(format!("the agent stopped: {reason}")),
            (
                Task::Scope { .. } | Task::Revise { .. },
                JobResult::Orchestrator { output, lint },
            ) => match output {
                OrchestratorOutput::Questions { questions } if !questions.is_empty() => {
                    self.phase = Phase::AwaitingAnswers;
                    self.asked_at = Some(now);
                    let list: String = questions
                        .iter()
                        .map(|q| format!("1. {}\n", one_line(q)))
                        .collect();
                    Ok(vec![self.issue_comment(format!(
                        "Before planning, the orchestrator has questions:\n\n{list}\n\
                             @{} please answer in a comment; a maintainer may answer too.",
                        self.author
                    ))])
                }
                OrchestratorOutput::Plan { plan } => {
                    let errors = plan.check();
                    if !errors.is_empty() {
                        let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                        return Err(format!("the plan breaks the rules: {}", list.join("; ")));
                    }
                    let revised = self.plan.is_some() && self.plan_pr.is_some();
                    let mut summary =
                        format!("{}\n\n{}", plan_summary(&plan), self.forecast(&plan));
                    for warning in self.settings.independence.warnings() {
                        summary.push_str(&format!("\n\n{warning}"));
                    }
                    if let Some(lint) = &lint {
                        summary.push_str(&format!("\n\n{}", lint.to_markdown(&self.base)));
                    }
                    self.lint = lint;
                    self.plan = Some(plan);
                    self.phase = Phase::PlanReview;
                    if revised {
                        Ok(vec![Effect::Comment {
                            target: Target::PlanPr,
                            body: format!(
                                "The plan was revised ({}). Please review it again.\n\n{summary}",
                                job.key
                            ),
                        }])
                    } else {
                        Ok(vec![
                            Effect::OpenPlanPr {
                                branch: plan_branch(self.issue),
                                title: format!("Mission plan for #{}", self.issue),
                                body: format!(
                                    "The plan for #{}: `.missions/{}/plan.md` (for people) and `plan.json`.\n\n{summary}\n\n\
                                         Approve this pull request to start the first milestone, or request changes \
                                         with what to change.",
                                    self.issue, self.issue
                                ),
                            },
                            self.issue_comment(
                                "The plan is ready for review in its pull request.".into(),
                            ),
                        ])
                    }
                }
                _ => Err("the orchestrator answered neither with questions nor with a plan".into()),
            },
            (
                Task::Triage { .. } | Task::FollowUp { .. } | Task::Replan { .. },
                JobResult::Orchestrator {
                    output:
                        OrchestratorOutput::Amend {
                            notes,
                            features,
                            assertions,
                        },
                    ..
                },
            ) => {
                let mut plan = self.plan.clone().ok_or("no plan to amend")?;
                let added: Vec<String> = features
                    .iter()
                    .map(|f| format!("{}: {}", f.id, f.title))
                    .collect();
                plan.assertions.extend(assertions);
                plan.milestones
                    .get_mut(self.milestone)
                    .ok_or("no current milestone")?
                    .features
                    .extend(features);
                let errors = plan.check();
                if !errors.is_empty() {
                    let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                    return Err(format!(
                        "the amended plan breaks the rules: {}",
                        list.join("; ")
                    ));
                }
                self.plan = Some(plan);
                let heading = match &job.task {
                    Task::Triage { feature } => format!("Triage of {feature}'s handoff"),
                    Task::FollowUp { milestone, .. } => {
                        format!("Follow-up to {milestone}'s failed validation")
                    }
                    _ => "Replan".to_owned(),
                };
                if matches!(job.task, Task::Triage { .. }) {
                    self.triage = None;
                }
                if matches!(job.task, Task::FollowUp { .. } | Task::Replan { .. }) {
                    self.phase = Phase::Building;
                }
                let added = if added.is_empty() {
                    "No features added.".to_owned()
                } else {
                    format!(
                        "Features added:\n{}",
                        added
                            .iter()
                            .map(|a| format!("- {}\n", one_line(a)))
                            .collect::<String>()
                    )
                };
                let mut effects = vec![Effect::Comment {
                    target: self.work_target(),
                    body: format!("### {heading}\n\n{}\n\n{added}", notes.trim()),
                }];
                effects.extend(self.advance(now));
                Ok(effects)
            }
            (
                Task::Boundary { after },
                JobResult::Orchestrator {
                    output: output @ OrchestratorOutput::Revision { .. },
                    ..
                },
            ) => {
                let OrchestratorOutput::Revision { notes, .. } = &output else {
                    unreachable!("matched above");
                };
                let revision = output.revision().unwrap_or_default();
                self.on_revision(after, notes, &revision, now)
            }
            (Task::Feature { id }, JobResult::Worker { handoff }) => {
                if &handoff.feature != id {
                    return Err(format!("the handoff is for {}, not {id}", handoff.feature));
                }
                let note = self.cost_note(&job.key, spent);
                Ok(self.on_handoff(id.clone(), handoff, &note, now))
            }
            (Task::Validate { validator, .. }, JobResult::Validator { report }) => {
                if report.validator != *validator {
                    return Err("the report is from the other validator".into());
                }
                let note = self.cost_note(&job.key, spent);
                Ok(self.on_report(*validator, &report, &note, now))
            }
            _ => Err("the job's result does not fit its task".into()),
        }
    }

    fn on_handoff(&mut self, id: String, handoff: Handoff, note: &str, now: i64) -> Vec<Effect> {
        let title = self
            .plan
            .as_ref()
            .and_then(|p| p.feature(&id))
            .map(|(_, f)| f.title.clone())
            .unwrap_or_default();
        self.done_features.insert(id.clone());
        self.last_handoff = Some(HandoffNote {
            feature: id.clone(),
            summary: handoff.summary.clone(),
            needs_triage: handoff.needs_triage(),
            at: now,
        });
        let mut effects = vec![
            self.ensure_milestone_pr(),
            Effect::Comment {
                target: Target::MilestonePr {
                    index: self.milestone,
                },
                body: format!("{}\n\n{note}", handoff.to_markdown(&title).trim_end()),
            },
        ];
        if handoff.needs_triage() {
            self.triage = Some(id.clone());
            self.pending = Some(Task::Triage { feature: id });
        }
        effects.extend(self.advance(now));
        effects
    }

    fn on_report(
        &mut self,
        validator: Validator,
        report: &ValidationReport,
        note: &str,
        now: i64,
    ) -> Vec<Effect> {
        let plan = self.plan.as_ref().expect("validating needs a plan");
        let expected = plan.milestone_assertions(self.milestone);
        let passed = report.passed(&expected);
        self.validation.verdicts.insert(validator, passed);
        let milestone = plan.milestones[self.milestone].id.clone();
        for a in &expected {
            let (ok, evidence) = match report.assertions.iter().find(|r| r.id == a.id) {
                Some(r) => (r.status == Verdict::Pass, r.evidence.clone()),
                None => (false, "not checked".to_owned()),
            };
            self.verdicts.entry(a.id.clone()).or_default().insert(
                validator,
                AssertionVerdict {
                    passed: ok,
                    evidence,
                    milestone: milestone.clone(),
                    round: self.validation.round,
                    at: now,
                },
            );
        }
        let mut effects = Vec::new();
        if let Some(&check_run_id) = self.validation.checks.get(&validator) {
            let failures = report.failures(&expected);
            let title = if passed {
                format!(
                    "{} assertion{} passed",
                    expected.len(),
                    if expected.len() == 1 { "" } else { "s" }
                )
            } else {
                format!(
                    "{} problem(s): {}",
                    failures.len(),
                    failures.first().cloned().unwrap_or_default()
                )
            };
            effects.push(Effect::CompleteCheck {
                check_run_id,
                conclusion: if passed {
                    CheckConclusion::Success
                } else {
                    CheckConclusion::Failure
                },
                title,
                summary: format!("{}\n\n{note}", report.to_markdown(&expected).trim_end()),
                images: report.screenshots.clone(),
            });
        }
        effects.extend(self.advance(now));
        effects
    }

    fn ensure_milestone_pr(&self) -> Effect {
        let plan = self.plan.as_ref();
        let m = plan.and_then(|p| p.milestones.get(self.milestone));
        let (id, title) = m.map_or(("M?", ""), |m| (m.id.as_str(), m.title.as_str()));
        let assertions: String = plan
            .map(|p| p.milestone_assertions(self.milestone))
            .unwrap_or_default()
            .iter()
            .map(|a| format!("- **{}**: {}\n", a.id, one_line(&a.text)))
            .collect();
        Effect::EnsureMilestonePr {
            index: self.milestone,
            branch: self.milestone_branch_now(),
            title: format!("Mission #{} {id}: {title}", self.issue),
            body: format!(
                "Milestone {id} of #{}. Each feature's handoff is posted here as a comment; the \
                 check runs `missions / scrutiny` and `missions / user-testing` judge this milestone \
                 against the contract:\n\n{assertions}\n\
                 Merge when both pass; the next milestone starts after the merge.",
                self.issue
            ),
        }
    }

    /// Where work-in-progress news goes: the milestone PR once it exists.
    fn work_target(&self) -> Target {
        if self.milestone_prs.contains_key(&self.milestone) {
            Target::MilestonePr {
                index: self.milestone,
            }
        } else {
            Target::Issue
        }
    }

    fn issue_comment(&self, body: String) -> Effect {
        Effect::Comment {
            target: Target::Issue,
            body,
        }
    }

    fn pause(&mut self, reason: String, how: &str) -> Vec<Effect> {
        let body = format!("⏸️ The mission is paused: {reason}.\n\n{how}");
        self.paused = Some(reason);
        vec![self.issue_comment(body)]
    }

    /// What runs next, if anything may: the single place jobs are dispatched.
    fn advance(&mut self, now: i64) -> Vec<Effect> {
        if self.is_terminal() || self.paused.is_some() || self.job.is_some() {
            return Vec::new();
        }
        if let Some(task) = self.pending.take() {
            return self.dispatch(task, now);
        }
        let Some(plan) = &self.plan else {
            return Vec::new();
        };
        match self.phase {
            Phase::Building => {
                if let Some(feature) = &self.triage {
                    let task = Task::Triage {
                        feature: feature.clone(),
                    };
                    return self.dispatch(task, now);
                }
                let Some(milestone) = plan.milestones.get(self.milestone) else {
                    return Vec::new();
                };
                if let Some(next) = milestone
                    .features
                    .iter()
                    .find(|f| !self.done_features.contains(&f.id))
                {
                    let task = Task::Feature {
                        id: next.id.clone(),
                    };
                    return self.dispatch(task, now);
                }
                // Every feature is done: validate.
                if self.validation.round - self.rounds_at_resume.min(self.validation.round)
                    >= self.settings.max_validation_rounds
                {
                    let rounds = self.validation.round;
                    return self.pause(
                        format!("{} failed validation {rounds} times", milestone.id),
                        "Look at the check runs on the milestone PR, push a fix or comment `/mission replan`, then `/mission resume`.",
                    );
                }
                let id = milestone.id.clone();
                self.phase = Phase::Validating;
                self.validation = Validation {
                    round: self.validation.round + 1,
                    ..Validation::default()
                };
                vec![
                    self.ensure_milestone_pr(),
                    Effect::StartValidation {
                        index: self.milestone,
                        round: self.validation.round,
                        branch: self.milestone_branch_now(),
                        message: format!(
                            "Mission #{} {id}: ready for validation (round {})",
                            self.issue, self.validation.round
                        ),
                    },
                ]
            }
            Phase::Validating => {
                if self.validation.sha.is_none() {
                    return Vec::new();
                }
                let milestone = plan.milestones[self.milestone].id.clone();
                if let Some(validator) = Validator::ALL
                    .into_iter()
                    .find(|v| !self.validation.verdicts.contains_key(v))
                {
                    let task = Task::Validate {
                        milestone,
                        validator,
                        round: self.validation.round,
                    };
                    return self.dispatch(task, now);
                }
                if let Some(moved) = self.head_moved.clone() {
                    let target = Target::MilestonePr {
                        index: self.milestone,
                    };
                    return self.revalidate(
                        now,
                        format!(
                            "This round judged a commit that is no longer the head ({} is): \
                             the App validates the new head.",
                            &moved[..moved.len().min(7)]
                        ),
                        target,
                    );
                }
                let sha = self.validation.sha.clone().unwrap_or_default();
                let validators_passed = self.validation.verdicts.values().all(|&passed| passed);
                let ci_failed: Vec<ExternalCheck> =
                    self.validation.ci_failed().into_iter().cloned().collect();
                // Once both validators passed, the repository's own CI must
                // conclude too; after a failure anywhere the follow-up need
                // not wait for the rest.
                if validators_passed
                    && ci_failed.is_empty()
                    && !self.validation.ci_pending().is_empty()
                {
                    if self.validation.ci_waiting_since.is_none() {
                        self.validation.ci_waiting_since = Some(now);
                        return vec![Effect::PollChecks { sha }];
                    }
                    return Vec::new();
                }
                let ci_note = if self.validation.required.is_empty() {
                    String::new()
                } else {
                    format!(
                        " and the repository's required check(s) {}",
                        self.validation.ci_names()
                    )
                };
                let target = Target::MilestonePr {
                    index: self.milestone,
                };
                if ci_failed.is_empty() && validators_passed {
                    self.phase = Phase::AwaitingMerge;
                    self.validated_sha = self.validation.sha.clone();
                    return vec![Effect::Comment {
                        target,
                        body: format!(
                            "✅ {milestone} passed both validators{ci_note} on {sha}. Ready to \
                             merge: the next milestone starts once a maintainer merges this pull \
                             request."
                        ),
                    }];
                }
                // Every failed round writes it (with no checks when none is
                // required), so a follow-up never reads an older round's CI
                // as this one's.
                let mut effects = vec![Effect::WriteCiReport {
                    milestone: milestone.clone(),
                    round: self.validation.round,
                    sha: sha.clone(),
                    checks: self.validation.ci_states(),
                }];
                if !ci_failed.is_empty() {
                    let lines: String = ci_failed
                        .iter()
                        .map(|c| {
                            format!(
                                "- {}: {}\n",
                                c.markdown(),
                                one_line(c.conclusion.as_deref().unwrap_or("pending"))
                                    .replace('`', "'")
                            )
                        })
                        .collect();
                    effects.push(Effect::Comment {
                        target,
                        body: format!(
                            "❌ The repository's own CI failed on {sha}, the ready commit of {milestone} \
                             (round {}):\n\n{lines}\nThe failure and its log are in \
                             `{}` on `{}`; a follow-up fixes it like a failed validation.",
                            self.validation.round,
                            ci_report_path(self.issue, &milestone),
                            reports_branch(self.issue)
                        ),
                    });
                }
                let task = Task::FollowUp {
                    milestone,
                    round: self.validation.round,
                };
                effects.extend(self.dispatch(task, now));
                effects
            }
            Phase::Replanning => {
                let after = self.merged_milestone_id();
                self.dispatch(Task::Boundary { after }, now)
            }
            _ => Vec::new(),
        }
    }

    fn dispatch(&mut self, task: Task, now: i64) -> Vec<Effect> {
        debug_assert!(self.job.is_none());
        let reserve = self.settings.reserve.for_role(task.role());
        if let Some(budget) = self.settings.budget_micros {
            let remaining = budget.saturating_sub(self.usage.cost_micros);
            if remaining == 0 || remaining < reserve {
                let what = task.describe();
                self.pending = Some(task);
                let why = if remaining == 0 {
                    format!(
                        "the budget is spent (${} of ${}) before {what}",
                        dollars(self.usage.cost_micros),
                        dollars(budget)
                    )
                } else {
                    format!(
                        "${} of the ${} budget is left, less than the ${} reserved for {what}",
                        dollars(remaining),
                        dollars(budget),
                        dollars(reserve)
                    )
                };
                return self.pause(
                    why,
                    "Raise `budget` in `.github/missions.yml` on the default branch, then comment `/mission resume`.",
                );
            }
        }
        if let Task::Validate { validator, .. } = &task
            && self.settings.independence.rule == IndependenceRule::Require
            && self.settings.independence.same(*validator)
        {
            let validator = *validator;
            let what = task.describe();
            self.pending = Some(task);
            let mut effects = Vec::new();
            if let Some((_, check_run_id)) = self
                .validation
                .open_checks()
                .into_iter()
                .find(|(v, _)| *v == validator)
            {
                self.validation.closed.insert(validator);
                effects.push(Effect::CompleteCheck {
                    check_run_id,
                    conclusion: CheckConclusion::ActionRequired,
                    title: "A validator of another model family is required".into(),
                    summary: format!(
                        "`independent_validators: require` is set, and {} uses {} models, like the \
                         workers. Set `models.{}` in `.github/missions.yml` on the default branch to \
                         another provider's model, then comment `/mission resume` on #{}.",
                        validator.as_str(),
                        self.settings.independence.family.map_or("the same", Family::name),
                        validator.as_str(),
                        self.issue
                    ),
                    images: Vec::new(),
                });
            }
            effects.extend(self.pause(
                format!(
                    "{what} would use the workers' model family, and `independent_validators: require` is set"
                ),
                &format!(
                    "Set `models.{}` in `.github/missions.yml` on the default branch to another provider's model (or drop the requirement), then comment `/mission resume`.",
                    validator.as_str()
                ),
            ));
            return effects;
        }
        if let Task::Validate {
            validator, round, ..
        } = &task
            && self.validation.closed.contains(validator)
        {
            // Its check run ended without a report: a fresh one first, so the
            // job's report has an open check run to complete.
            let (validator, round) = (*validator, *round);
            let Some(sha) = self.validation.sha.clone() else {
                return Vec::new();
            };
            let asked = self.validation.opening == Some(validator);
            self.pending = Some(task);
            if asked {
                return Vec::new();
            }
            self.validation.opening = Some(validator);
            return vec![Effect::OpenCheck {
                index: self.milestone,
                round,
                validator,
                sha,
            }];
        }
        let slug = task.slug();
        let tries = self.tries.entry(slug.clone()).or_insert(0);
        *tries += 1;
        let key = format!("{slug}.{tries}");
        let branch = match &task {
            Task::Scope { .. } | Task::Revise { .. } => plan_branch(self.issue),
            Task::Boundary { after } => replan_branch(self.issue, after),
            _ => self.milestone_branch_now(),
        };
        let output_branch = match &task {
            Task::Validate { .. } => reports_branch(self.issue),
            _ => branch.clone(),
        };
        let spend_limit_micros = self.settings.budget_micros.map(|budget| {
            spend_limit(
                budget.saturating_sub(self.usage.cost_micros),
                &self.settings.reserve,
                task.role(),
            )
        });
        let job = Job {
            key,
            task,
            branch,
            output_branch,
            dispatched_at: now,
            run_id: None,
            run_url: None,
            spend_limit_micros,
        };
        self.job = Some(job.clone());
        vec![Effect::Dispatch { job }]
    }

    /// Features done and in all, over the whole plan.
    pub fn feature_progress(&self) -> (usize, usize) {
        let total = self
            .plan
            .as_ref()
            .map_or(0, |p| p.milestones.iter().map(|m| m.features.len()).sum());
        (self.done_features.len(), total)
    }

    pub fn status_comment(&self) -> Effect {
        let (done, total) = self.feature_progress();
        let milestones = self.plan.as_ref().map_or(0, |p| p.milestones.len());
        let job = self.job.as_ref().map_or_else(
            || "none".to_owned(),
            |j| format!("`{}` ({}) on `{}`", j.key, j.role().as_str(), j.branch),
        );
        let mut body = format!(
            "**Mission status**: {}{}\n\n| | |\n|---|---|\n| milestone | {} of {} |\n| features done | {done} of {total} |\n| active job | {job} |\n| spent | ${} |\n",
            phase_word(self.phase),
            self.paused
                .as_ref()
                .map(|r| format!(" (paused: {r})"))
                .unwrap_or_default(),
            (self.milestone + 1).min(milestones.max(1)),
            milestones,
            dollars(self.usage.cost_micros),
        );
        if let Some(budget) = self.settings.budget_micros {
            body.push_str(&format!("| budget | ${} |\n", dollars(budget)));
        }
        self.issue_comment(body)
    }

    /// The issue's closing comment.
    pub fn final_report(&self) -> String {
        let mut out = String::from("## Mission complete\n\n");
        if let Some(plan) = &self.plan {
            out.push_str(&format!(
                "**{}**: {}\n\n",
                plan.title,
                one_line(&plan.summary)
            ));
            out.push_str("| milestone | pull request | features |\n|---|---|---|\n");
            for (i, m) in plan.milestones.iter().enumerate() {
                let pr = self
                    .milestone_prs
                    .get(&i)
                    .map_or("-".to_owned(), |n| format!("#{n}"));
                let features: Vec<&str> = m.features.iter().map(|f| f.id.as_str()).collect();
                out.push_str(&format!(
                    "| {}: {} | {pr} | {} |\n",
                    m.id,
                    one_line(&m.title),
                    features.join(", ")
                ));
            }
            if self.unvalidated_merges.is_empty() {
                out.push_str(&format!(
                    "\nAll {} assertions of the validation contract passed both validators.\n",
                    plan.assertions.len()
                ));
            } else {
                out.push_str(&format!(
                    "\nMerged without passing validation: {}. The other milestones passed both validators.\n",
                    self.unvalidated_merges.join(", ")
                ));
            }
        }
        let jobs = self.history.len();
        let failed = self.history.iter().filter(|h| h.outcome != "done").count();
        out.push_str(&format!(
            "\nJobs run: {jobs} ({failed} failed and retried). Tokens: {} in, {} out, {} cache reads. Cost: ${}.\n",
            self.usage.input_tokens,
            self.usage.output_tokens,
            self.usage.cache_read_tokens,
            dollars(self.usage.cost_micros)
        ));
        out
    }
}

/// What a job of `role` is assumed to cost before the mission has measured
/// one: for a run that left no trace, and for the plan's forecast. A worker
/// edits and tests for many turns; scrutiny reviews every feature; the
/// orchestrator and user testing make fewer calls.
pub fn default_job_cost(role: JobRole) -> u64 {
    match role {
        JobRole::Orchestrator => 500_000,
        JobRole::Worker => 2_000_000,
        JobRole::Scrutiny => 1_500_000,
        JobRole::UserTesting => 1_000_000,
    }
}

/// A job's spending limit: what is left of the budget less the largest
/// reserve of the other roles, so that whatever runs next can still start;
/// when that leaves less than the job's own reserve, its reserve (never more
/// than what is left).
pub fn spend_limit(remaining: u64, reserve: &Reserves, role: JobRole) -> u64 {
    let others = [
        JobRole::Orchestrator,
        JobRole::Worker,
        JobRole::Scrutiny,
        JobRole::UserTesting,
    ]
    .into_iter()
    .filter(|r| *r != role)
    .map(|r| reserve.for_role(r))
    .max()
    .unwrap_or(0);
    remaining
        .saturating_sub(others)
        .max(reserve.for_role(role).min(remaining))
}

fn plan_summary(plan: &Plan) -> String {
    let features: usize = plan.milestones.iter().map(|m| m.features.len()).sum();
    format!(
        "**{}**: {} milestone(s), {features} feature(s), {} assertion(s) in the validation contract.",
        one_line(&plan.title),
        plan.milestones.len(),
        plan.assertions.len()
    )
}

fn conclusion_word(c: RunConclusion) -> &'static str {
    match c {
        RunConclusion::Success => "success",
        RunConclusion::Failure => "failure",
        RunConclusion::Cancelled => "cancelled",
        RunConclusion::TimedOut => "timed out",
        RunConclusion::Lost => "no completion seen within the job timeout",
    }
}

pub fn phase_word(phase: Phase) -> &'static str {
    match phase {
        Phase::Scoping => "scoping",
        Phase::AwaitingAnswers => "waiting for answers",
        Phase::PlanReview => "plan in review",
        Phase::Building => "building",
        Phase::Validating => "validating",
        Phase::AwaitingMerge => "waiting for merge",
        Phase::Replanning => "re-planning",
        Phase::RevisionReview => "revision in review",
        Phase::Done => "done",
        Phase::Aborted => "aborted",
    }
}

/// Micro-dollars as exact dollars (`1.250000`): what a job is told it may spend.
pub fn usd_decimal(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// Micro-dollars as dollars with two decimals.
pub fn dollars(micros: u64) -> String {
    format!(
        "{}.{:02}",
        micros / 1_000_000,
        (micros % 1_000_000) / 10_000
    )
}
