//! Typed GitHub webhook events: the App's own small view of each payload.
//!
//! Only the fields the App acts on are parsed, and unknown fields are ignored, so
//! GitHub adding fields never breaks delivery handling. Every `action` is an enum
//! with a catch-all that keeps the raw string, so a new action is routed as
//! "not ours" instead of failing the whole delivery. Fields are `Option` wherever
//! GitHub's schemas (`webhook-schemas/`) or REST description allow them to be
//! absent or `null`.
//!
//! `Option` fields that GitHub may *omit* are skipped when serialising, and fields
//! GitHub sends as `null` are written as `null`, so serialised events keep the
//! shape GitHub documents.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// Declares a string enum that never fails to parse: known wire strings map to
/// named variants, anything else to `Other(raw)`. Build values through `From`
/// so a known string always lands on its named variant.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $($variant:ident = $wire:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
        #[serde(from = "String")]
        pub enum $name {
            $(#[doc = concat!("`", $wire, "`")] $variant,)+
            /// A value not named here, kept verbatim for logs and later matching.
            Other(String),
        }

        impl $name {
            /// Whether the value is one named here (not `Other`).
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Other(_))
            }

            /// The string exactly as it appears on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)+
                    Self::Other(raw) => raw.as_str(),
                }
            }
        }

        impl From<String> for $name {
            fn from(raw: String) -> Self {
                match raw.as_str() {
                    $($wire => Self::$variant,)+
                    _ => Self::Other(raw),
                }
            }
        }

        impl From<&str> for $name {
            fn from(raw: &str) -> Self {
                Self::from(raw.to_owned())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

// ---------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------

string_enum! {
    /// `issues` actions; `labeled` is how a mission starts.
    pub enum IssuesAction {
        Opened = "opened",
        Edited = "edited",
        Closed = "closed",
        Reopened = "reopened",
        Labeled = "labeled",
        Unlabeled = "unlabeled",
        Deleted = "deleted",
    }
}

string_enum! {
    /// `issue_comment` actions; scoping answers and `/mission` commands arrive here.
    pub enum IssueCommentAction {
        Created = "created",
        Edited = "edited",
        Deleted = "deleted",
    }
}

string_enum! {
    /// `pull_request` actions; plan and milestone PRs move through these.
    pub enum PullRequestAction {
        Opened = "opened",
        Edited = "edited",
        Closed = "closed",
        Reopened = "reopened",
        Synchronize = "synchronize",
        ReadyForReview = "ready_for_review",
        ConvertedToDraft = "converted_to_draft",
    }
}

string_enum! {
    /// `pull_request_review` actions; an approving review approves a plan.
    pub enum PullRequestReviewAction {
        Submitted = "submitted",
        Edited = "edited",
        Dismissed = "dismissed",
    }
}

string_enum! {
    /// `pull_request_review_comment` actions.
    pub enum PullRequestReviewCommentAction {
        Created = "created",
        Edited = "edited",
        Deleted = "deleted",
    }
}

string_enum! {
    /// `check_run` actions; validators are check runs owned by the App.
    pub enum CheckRunAction {
        Created = "created",
        Completed = "completed",
        Rerequested = "rerequested",
        RequestedAction = "requested_action",
    }
}

string_enum! {
    /// `merge_group` actions.
    pub enum MergeGroupAction {
        ChecksRequested = "checks_requested",
        Destroyed = "destroyed",
    }
}

string_enum! {
    /// `check_suite` actions.
    pub enum CheckSuiteAction {
        Requested = "requested",
        Rerequested = "rerequested",
        Completed = "completed",
    }
}

string_enum! {
    /// `workflow_run` actions; the server learns that a job ended from these.
    pub enum WorkflowRunAction {
        Requested = "requested",
        InProgress = "in_progress",
        Completed = "completed",
    }
}

string_enum! {
    /// `workflow_job` actions.
    pub enum WorkflowJobAction {
        Queued = "queued",
        InProgress = "in_progress",
        Completed = "completed",
        Waiting = "waiting",
    }
}

string_enum! {
    /// `installation` actions; they add and remove whole installations.
    pub enum InstallationAction {
        Created = "created",
        Deleted = "deleted",
        Suspend = "suspend",
        Unsuspend = "unsuspend",
        NewPermissionsAccepted = "new_permissions_accepted",
    }
}

string_enum! {
    /// `installation_repositories` actions.
    pub enum InstallationRepositoriesAction {
        Added = "added",
        Removed = "removed",
    }
}

string_enum! {
    /// Kind of account behind an actor; bots never count as a user's act.
    pub enum ActorType {
        User = "User",
        Bot = "Bot",
        Organization = "Organization",
    }
}

string_enum! {
    /// A review's verdict; only `Approved` approves a plan.
    pub enum ReviewState {
        Approved = "approved",
        ChangesRequested = "changes_requested",
        Commented = "commented",
        Dismissed = "dismissed",
    }
}

// ---------------------------------------------------------------------------
// Shared objects
// ---------------------------------------------------------------------------

/// The repository an event happened in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    /// Stable across renames and transfers, unlike `full_name`.
    pub id: u64,
    pub name: String,
    /// `owner/name`.
    pub full_name: String,
    pub owner: Owner,
    /// Per-repo settings are read from this branch, never from a mission branch.
    pub default_branch: String,
}

/// A repository's owner (user or organisation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub login: String,
}

/// A GitHub account acting on something: a sender, an author, a reviewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Stable across login renames: use it for identity checks.
    pub id: u64,
    pub login: String,
    #[serde(rename = "type")]
    pub kind: ActorType,
}

impl Actor {
    /// Bots (the App included) never start, steer or approve a mission.
    pub fn is_bot(&self) -> bool {
        self.kind == ActorType::Bot
    }
}

/// The installation a delivery was made for; absent on plain repository hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationRef {
    pub id: u64,
}

/// An issue or pull-request label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub name: String,
}

/// A repository named by its full name, as in installation repository lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryName {
    pub full_name: String,
}

/// A GitHub App named by id: tells the App's own check runs from others'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRef {
    pub id: u64,
    /// `github-actions` for workflow jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
}

// ---------------------------------------------------------------------------
// Issues and comments
// ---------------------------------------------------------------------------

/// An issue, or a pull request seen through the issues API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    /// `null` when the issue has no description.
    pub body: Option<String>,
    pub user: Actor,
    /// Not required by GitHub's schema; absent reads as no labels.
    #[serde(default)]
    pub labels: Vec<Label>,
    /// `open` or `closed`; not required by GitHub's schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Present only when the issue is a pull request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<IssuePullRequest>,
    /// When GitHub last changed the issue (ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

impl Issue {
    /// Comments on PRs arrive as `issue_comment` too; this tells them apart.
    pub fn is_pull_request(&self) -> bool {
        self.pull_request.is_some()
    }

    /// GitHub label names are unique case-insensitively, so compare that way.
    pub fn has_label(&self, name: &str) -> bool {
        self.labels
            .iter()
            .any(|l| l.name.eq_ignore_ascii_case(name))
    }
}

/// Marker that an issue is a pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuePullRequest {
    /// API URL of the pull request; every field of this object is optional in the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A comment on an issue or pull request conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueComment {
    /// Lets the App edit its own sticky comment in place.
    pub id: u64,
    pub body: String,
    pub user: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html_url: Option<String>,
}

/// `issues`: a mission starts when the `mission` label is added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuesEvent {
    pub action: IssuesAction,
    pub issue: Issue,
    /// The label added or removed; only on `labeled`/`unlabeled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Label>,
    pub repository: Repository,
    pub sender: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<InstallationRef>,
}

/// `issue_comment`: scoping answers and `/mission` commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueCommentEvent {
    pub action: IssueCommentAction,
    pub issue: Issue,
    pub comment: IssueComment,
    pub repository: Repository,
    pub sender: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<InstallationRef>,
}

// ---------------------------------------------------------------------------
// Pull requests and reviews
// ---------------------------------------------------------------------------

/// A pull request, in the shape shared by the PR, review and review-comment events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    /// `open` or `closed`; a merged PR is `closed` with `merged_at` set.
    pub state: String,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    /// Only sent by `pull_request` events (review events use a smaller PR
    /// object without it), and `null` while GitHub has not computed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<bool>,
    /// Set once merged; the reliable merge signal in every event shape.
    #[serde(default)]
    pub merged_at: Option<String>,
    /// Who merged it (`pull_request` events; `null` until merged). Not
    /// always the event's sender: a merge queue or auto-merge sends it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_by: Option<Actor>,
    /// Not required in the review-comment event's schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<bool>,
    pub user: Actor,
    pub head: PullRequestHead,
    pub base: PullRequestBase,
    pub html_url: String,
}

impl PullRequest {
    /// Fork PRs never run mission jobs. A deleted head repository counts as a
    /// fork, since the App cannot tell where the code came from.
    pub fn is_from_fork(&self, base_full_name: &str) -> bool {
        self.head
            .repo
            .as_ref()
            .is_none_or(|repo| repo.full_name != base_full_name)
    }

    /// Merged, whether or not the payload carries `merged`.
    pub fn is_merged(&self) -> bool {
        self.merged.unwrap_or(false) || self.merged_at.is_some()
    }
}

/// The branch a pull request wants to merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestHead {
    /// Branch name, without `refs/heads/`.
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub sha: String,
    /// `null` when the head repository (typically a fork) was deleted.
    #[serde(default)]
    pub repo: Option<RepositoryName>,
}

/// The branch a pull request merges into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestBase {
    /// Branch name, without `refs/heads/`.
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub sha: String,
}

/// `pull_request`: plan and milestone PR lifecycle (opened, merged, new commits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestEvent {
    pub action: PullRequestAction,
    pub number: u64,
    pub pull_request: PullRequest,
    pub repository: Repository,
    pub sender: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<InstallationRef>,
}

/// A pull-request review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub id: u64,
    /// Raw state as sent (webhooks use lowercase, the REST API uppercase);
    /// see [`Review::review_state`].
    pub state: String,
    #[serde(default)]
    pub body: Option<String>,
    pub user: Actor,
    /// The head commit the review judged; an approval of an older commit
    /// must not approve newer changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_id: Option<String>,
    /// `null` for pending reviews.
    #[serde(default)]
    pub submitted_at: Option<String>,
}

impl Review {
    /// The verdict, matched case-insensitively so REST and webhook spellings agree.
    pub fn review_state(&self) -> ReviewState {
        ReviewState::from(self.state.to_ascii_lowercase())
    }
}

/// `pull_request_review`: an approving review on the plan PR approves the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestReviewEvent {
    pub action: PullRequestReviewAction,
    pub review: Review,
    pub pull_request: PullRequest,
    pub repository: Repository,
    pub sender: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<InstallationRef>,
}

/// A comment on a line of a pull request's diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewComment {
    pub id: u64,
    pub body: String,
    pub user: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_id: Option<String>,
}

/// `pull_request_review_comment`: review feedback on the plan's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestReviewCommentEvent {
    pub action: PullRequestReviewCommentAction,
    pub comment: ReviewComment,
    pub pull_request: PullRequest,
    pub repository: Repository,
    pub sender: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<InstallationRef>,
}

// ---------------------------------------------------------------------------
// Checks and Actions
// ---------------------------------------------------------------------------

/// A check run; the validators are check runs on the milestone PR's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRun {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    /// `queued`, `in_progress`, `completed`, ...
    pub status: String,
    /// `null` until completed.
    #[serde(default)]
    pub conclusion: Option<String>,
    /// Which App owns the run; only the App's own runs are validators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppRef>,
    /// The App's own reference for the run; nullable in the REST description.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Its page (an Actions job's, for workflow jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details_url: Option<String>,
    /// The suite it belongs to: names the branch (webhooks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_suite: Option<CheckSuiteRef>,
}

/// The suite a check run belongs to, as its webhook names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSuiteRef {
    pub id: u64,
    /// `null` for commits not on a branch.
    #[serde(default)]
    pub head_branch: Option<String>,
}

/// A button on a check run that a user pressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedAction {
    /// Not required by GitHub's schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
}

/// `check_run`: re-runs and buttons on the validator check runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRunEvent {
    pub action: CheckRunAction,
    pub check_run: CheckRun,
    /// Only on `requested_action` (and `null` on some other actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_action: Option<RequestedAction>,
    pub repository: Repository,
    pub sender: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<InstallationRef>,
}

/// A check suite: all check runs of one App on one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSuite {
    pub id: u64,
    /// `null` for commits not on a branch (e.g. some fork PRs).
    #[serde(default)]
    pub head_branch: Option<String>,
    pub head_sha: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppRef>,
}

/// `check_suite`: "re-run all checks" on a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSuiteEvent {
    pub action: CheckSuiteAction,
    pub check_suite: CheckSuite,
    pub repository: Repository,
    pub sender: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<InstallationRef>,
}

/// A merge queue's group: the base's tip with queued pull requests merged in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeGroup {
    /// The group's commit, where required checks are reported.
    pub head_sha: String,
    /// `refs/heads/gh-readonly-queue/<base>/pr-<n>-<pull request head sha>`.
    pub head_ref: String,
    pub base_sha: String,
    pub base_ref: String,
}

impl MergeGroup {
    /// The pull request the group ends with and its head, from `head_ref`:
    /// the group merges that pull request (after any queued ahead of it).
    pub fn pull_request(&self) -> Option<(u64, &str)> {
        let branch = self
            .head_ref
            .strip_prefix("refs/heads/gh-readonly-queue/")?;
        let (_, last) = branch.rsplit_once("/pr-")?;
        let (number, sha) = last.split_once('-')?;
        let sha_ok = sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit());
        Some((number.parse().ok()?, sha)).filter(|_| sha_ok)
    }
}

/// `merge_group`: a merge queue asks for the required checks on its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeGroupEvent {
    pub action: MergeGroupAction,
    pub merge_group: MergeGroup,
    pub repository: Repository,
    pub sender: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<InstallationRef>,
}

/// A GitHub Actions workflow run; feature jobs are `workflow_dispatch` runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowRun {
    pub id: u64,
    /// Nullable in the REST description.
    #[serde(default)]
    pub name: Option<String>,
    /// Nullable in the REST description.
    #[serde(default)]
    pub head_branch: Option<String>,
    pub head_sha: String,
    /// Nullable in the REST description.
    #[serde(default)]
    pub status: Option<String>,
    /// `null` until completed.
    #[serde(default)]
    pub conclusion: Option<String>,
    /// What triggered the run, e.g. `workflow_dispatch`, `push`.
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_attempt: Option<u64>,
    /// Workflow file path, e.g. `.github/workflows/missions.yml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html_url: Option<String>,
    pub workflow_id: u64,
    /// ISO 8601; tells a run of the current job from an older one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// The run's name: the workflow's `run-name`, which names the mission's job key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_title: Option<String>,
}

/// The workflow a run belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowRef {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `workflow_run`: how the server learns that a mission job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowRunEvent {
    pub action: WorkflowRunAction,
    pub workflow_run: WorkflowRun,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowRef>,
    pub repository: Repository,
    pub sender: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<InstallationRef>,
}

/// One job of a workflow run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowJob {
    pub id: u64,
    pub run_id: u64,
    pub name: String,
    pub status: String,
    /// `null` until completed.
    #[serde(default)]
    pub conclusion: Option<String>,
    pub head_sha: String,
    /// `null` in GitHub's schema for some jobs.
    #[serde(default)]
    pub workflow_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html_url: Option<String>,
}

/// `workflow_job`: finer-grained job progress (queued, waiting for a runner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowJobEvent {
    pub action: WorkflowJobAction,
    pub workflow_job: WorkflowJob,
    pub repository: Repository,
    pub sender: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<InstallationRef>,
}

// ---------------------------------------------------------------------------
// Installations
// ---------------------------------------------------------------------------

/// An installation of the App, as sent with installation events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installation {
    pub id: u64,
    /// Nullable in the REST description.
    #[serde(default)]
    pub account: Option<Account>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u64>,
}

/// The account an installation belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Absent when the account is an enterprise (the REST description's
    /// `account` is a user *or* an enterprise, which has a `slug` instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
}

/// `installation`: the App was installed, removed, suspended or re-permissioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationEvent {
    pub action: InstallationAction,
    pub installation: Installation,
    /// The repositories the installation can access; only on some actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repositories: Option<Vec<RepositoryName>>,
    pub sender: Actor,
}

/// `installation_repositories`: repositories were added to or removed from an installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationRepositoriesEvent {
    pub action: InstallationRepositoriesAction,
    pub installation: Installation,
    pub repositories_added: Vec<RepositoryName>,
    pub repositories_removed: Vec<RepositoryName>,
    pub sender: Actor,
}

// ---------------------------------------------------------------------------
// Push and ping
// ---------------------------------------------------------------------------

/// Who pushed, as git knows them (a name, not necessarily a login).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pusher {
    pub name: String,
}

/// The commit a push moved its ref to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadCommit {
    pub id: String,
    pub message: String,
}

/// `push`: a branch moved; e.g. `.github/missions.yml` changed on the default branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushEvent {
    /// Full ref, e.g. `refs/heads/main` or `refs/tags/v1`.
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub before: String,
    /// All zeros when the ref was deleted.
    pub after: String,
    pub repository: Repository,
    pub sender: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<InstallationRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pusher: Option<Pusher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced: Option<bool>,
    /// `null` when the ref was deleted or points to no commit.
    #[serde(default)]
    pub head_commit: Option<HeadCommit>,
}

/// The webhook configuration a ping was sent for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Set when the hook is a GitHub App's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u64>,
    /// `Repository`, `Organization` or `App`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `ping`: sent when a hook is created; acknowledged, proves the secret works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<Hook>,
    /// Only for repository hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<Repository>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<Actor>,
}

// ---------------------------------------------------------------------------
// The event enum
// ---------------------------------------------------------------------------

/// One webhook delivery, typed by its `X-GitHub-Event` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    Issues(IssuesEvent),
    IssueComment(IssueCommentEvent),
    PullRequest(PullRequestEvent),
    PullRequestReview(PullRequestReviewEvent),
    PullRequestReviewComment(PullRequestReviewCommentEvent),
    CheckRun(CheckRunEvent),
    CheckSuite(CheckSuiteEvent),
    MergeGroup(MergeGroupEvent),
    WorkflowRun(WorkflowRunEvent),
    WorkflowJob(WorkflowJobEvent),
    Installation(InstallationEvent),
    InstallationRepositories(InstallationRepositoriesEvent),
    Push(PushEvent),
    Ping(PingEvent),
    /// An event the App has no use for: acknowledged and ignored.
    Unknown {
        event: String,
    },
}

impl WebhookEvent {
    /// The `X-GitHub-Event` names this module parses; the App's manifest
    /// subscribes to these.
    pub const KNOWN_EVENTS: [&'static str; 14] = [
        "issues",
        "issue_comment",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "check_run",
        "check_suite",
        "merge_group",
        "workflow_run",
        "workflow_job",
        "installation",
        "installation_repositories",
        "push",
        "ping",
    ];

    /// `event` is the X-GitHub-Event header. Unknown event names give
    /// `Ok(Unknown)` without parsing the body, so new event types are a 2xx.
    pub fn parse(event: &str, payload: &[u8]) -> Result<WebhookEvent, EventParseError> {
        Ok(match event {
            "issues" => Self::Issues(parse_payload(event, payload)?),
            "issue_comment" => Self::IssueComment(parse_payload(event, payload)?),
            "pull_request" => Self::PullRequest(parse_payload(event, payload)?),
            "pull_request_review" => Self::PullRequestReview(parse_payload(event, payload)?),
            "pull_request_review_comment" => {
                Self::PullRequestReviewComment(parse_payload(event, payload)?)
            }
            "check_run" => Self::CheckRun(parse_payload(event, payload)?),
            "check_suite" => Self::CheckSuite(parse_payload(event, payload)?),
            "merge_group" => Self::MergeGroup(parse_payload(event, payload)?),
            "workflow_run" => Self::WorkflowRun(parse_payload(event, payload)?),
            "workflow_job" => Self::WorkflowJob(parse_payload(event, payload)?),
            "installation" => Self::Installation(parse_payload(event, payload)?),
            "installation_repositories" => {
                Self::InstallationRepositories(parse_payload(event, payload)?)
            }
            "push" => Self::Push(parse_payload(event, payload)?),
            "ping" => Self::Ping(parse_payload(event, payload)?),
            other => Self::Unknown {
                event: other.to_owned(),
            },
        })
    }

    /// The header value this event was parsed from, e.g. `pull_request_review`.
    pub fn event_name(&self) -> &str {
        match self {
            Self::Issues(_) => "issues",
            Self::IssueComment(_) => "issue_comment",
            Self::PullRequest(_) => "pull_request",
            Self::PullRequestReview(_) => "pull_request_review",
            Self::PullRequestReviewComment(_) => "pull_request_review_comment",
            Self::CheckRun(_) => "check_run",
            Self::CheckSuite(_) => "check_suite",
            Self::MergeGroup(_) => "merge_group",
            Self::WorkflowRun(_) => "workflow_run",
            Self::WorkflowJob(_) => "workflow_job",
            Self::Installation(_) => "installation",
            Self::InstallationRepositories(_) => "installation_repositories",
            Self::Push(_) => "push",
            Self::Ping(_) => "ping",
            Self::Unknown { event } => event,
        }
    }

    /// The raw `action` string; `None` for push, ping and unknown events.
    pub fn action(&self) -> Option<&str> {
        match self {
            Self::Issues(e) => Some(e.action.as_str()),
            Self::IssueComment(e) => Some(e.action.as_str()),
            Self::PullRequest(e) => Some(e.action.as_str()),
            Self::PullRequestReview(e) => Some(e.action.as_str()),
            Self::PullRequestReviewComment(e) => Some(e.action.as_str()),
            Self::CheckRun(e) => Some(e.action.as_str()),
            Self::CheckSuite(e) => Some(e.action.as_str()),
            Self::MergeGroup(e) => Some(e.action.as_str()),
            Self::WorkflowRun(e) => Some(e.action.as_str()),
            Self::WorkflowJob(e) => Some(e.action.as_str()),
            Self::Installation(e) => Some(e.action.as_str()),
            Self::InstallationRepositories(e) => Some(e.action.as_str()),
            Self::Push(_) | Self::Ping(_) | Self::Unknown { .. } => None,
        }
    }

    /// Whether the App knows this event's action; `true` for events without one
    /// (push, ping). An unknown action still reaches handlers, which ignore it.
    pub fn action_is_known(&self) -> bool {
        match self {
            Self::Issues(e) => e.action.is_known(),
            Self::IssueComment(e) => e.action.is_known(),
            Self::PullRequest(e) => e.action.is_known(),
            Self::PullRequestReview(e) => e.action.is_known(),
            Self::PullRequestReviewComment(e) => e.action.is_known(),
            Self::CheckRun(e) => e.action.is_known(),
            Self::CheckSuite(e) => e.action.is_known(),
            Self::MergeGroup(e) => e.action.is_known(),
            Self::WorkflowRun(e) => e.action.is_known(),
            Self::WorkflowJob(e) => e.action.is_known(),
            Self::Installation(e) => e.action.is_known(),
            Self::InstallationRepositories(e) => e.action.is_known(),
            Self::Push(_) | Self::Ping(_) => true,
            Self::Unknown { .. } => false,
        }
    }

    /// The repository the event is about; `None` for installation events
    /// (which span repositories), organisation pings and unknown events.
    pub fn repository(&self) -> Option<&Repository> {
        match self {
            Self::Issues(e) => Some(&e.repository),
            Self::IssueComment(e) => Some(&e.repository),
            Self::PullRequest(e) => Some(&e.repository),
            Self::PullRequestReview(e) => Some(&e.repository),
            Self::PullRequestReviewComment(e) => Some(&e.repository),
            Self::CheckRun(e) => Some(&e.repository),
            Self::CheckSuite(e) => Some(&e.repository),
            Self::MergeGroup(e) => Some(&e.repository),
            Self::WorkflowRun(e) => Some(&e.repository),
            Self::WorkflowJob(e) => Some(&e.repository),
            Self::Push(e) => Some(&e.repository),
            Self::Ping(e) => e.repository.as_ref(),
            Self::Installation(_) | Self::InstallationRepositories(_) | Self::Unknown { .. } => {
                None
            }
        }
    }

    /// Who caused the event; checked for write access and for being the App itself.
    pub fn sender(&self) -> Option<&Actor> {
        match self {
            Self::Issues(e) => Some(&e.sender),
            Self::IssueComment(e) => Some(&e.sender),
            Self::PullRequest(e) => Some(&e.sender),
            Self::PullRequestReview(e) => Some(&e.sender),
            Self::PullRequestReviewComment(e) => Some(&e.sender),
            Self::CheckRun(e) => Some(&e.sender),
            Self::CheckSuite(e) => Some(&e.sender),
            Self::MergeGroup(e) => Some(&e.sender),
            Self::WorkflowRun(e) => Some(&e.sender),
            Self::WorkflowJob(e) => Some(&e.sender),
            Self::Installation(e) => Some(&e.sender),
            Self::InstallationRepositories(e) => Some(&e.sender),
            Self::Push(e) => Some(&e.sender),
            Self::Ping(e) => e.sender.as_ref(),
            Self::Unknown { .. } => None,
        }
    }

    /// The installation whose token answers this event; `None` on deliveries
    /// to plain (non-App) hooks.
    pub fn installation_id(&self) -> Option<u64> {
        match self {
            Self::Issues(e) => e.installation.map(|i| i.id),
            Self::IssueComment(e) => e.installation.map(|i| i.id),
            Self::PullRequest(e) => e.installation.map(|i| i.id),
            Self::PullRequestReview(e) => e.installation.map(|i| i.id),
            Self::PullRequestReviewComment(e) => e.installation.map(|i| i.id),
            Self::CheckRun(e) => e.installation.map(|i| i.id),
            Self::CheckSuite(e) => e.installation.map(|i| i.id),
            Self::MergeGroup(e) => e.installation.map(|i| i.id),
            Self::WorkflowRun(e) => e.installation.map(|i| i.id),
            Self::WorkflowJob(e) => e.installation.map(|i| i.id),
            Self::Installation(e) => Some(e.installation.id),
            Self::InstallationRepositories(e) => Some(e.installation.id),
            Self::Push(e) => e.installation.map(|i| i.id),
            Self::Ping(_) | Self::Unknown { .. } => None,
        }
    }

    /// False for events the App acknowledges and ignores.
    pub fn is_known(&self) -> bool {
        !matches!(self, Self::Unknown { .. })
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Longest serde message kept: serde quotes offending string values, and
/// those may be user text, so a long one is cut.
const MAX_MESSAGE_CHARS: usize = 160;

/// A known event whose payload did not match the App's types.
///
/// Carries where and why, never the payload: payloads are large and hold
/// untrusted user text that must not reach logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse {event:?} payload at {path}: {message}")]
pub struct EventParseError {
    /// The `X-GitHub-Event` header value.
    pub event: String,
    /// JSON path of the failing value, e.g. `issue.number` (`.` for the root).
    pub path: String,
    /// Serde's message, without position and cut to a bounded length.
    pub message: String,
}

fn parse_payload<T: serde::de::DeserializeOwned>(
    event: &str,
    payload: &[u8],
) -> Result<T, EventParseError> {
    // Fast path: path tracking costs time on every field, and is only needed to
    // explain a failure, so it runs only then.
    if let Ok(value) = serde_json::from_slice(payload) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(payload);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        parse_error(event, path, err.inner())
    })?;
    // Reject trailing bytes after the JSON document, as `from_slice` would.
    de.end()
        .map_err(|err| parse_error(event, ".".to_owned(), &err))?;
    Ok(value)
}

fn parse_error(event: &str, path: String, err: &serde_json::Error) -> EventParseError {
    EventParseError {
        event: event.to_owned(),
        path,
        message: serde_message(err),
    }
}

/// Serde's message without serde_json's " at line L column C" suffix (the path
/// says where), cut to [`MAX_MESSAGE_CHARS`].
fn serde_message(err: &serde_json::Error) -> String {
    let full = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full);
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::path::{Path, PathBuf};

    /// The number of webhook examples in the fixture set; a missing or partial
    /// directory must fail, not pass vacuously.
    const FIXTURE_COUNT: usize = 38;

    fn webhooks_dir() -> PathBuf {
        let dir = match std::env::var_os("MISSIONS_FIXTURES_DIR") {
            Some(root) => PathBuf::from(root).join("webhooks"),
            None => PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/github-fixtures/webhooks"
            )),
        };
        assert!(
            dir.is_dir(),
            "webhook fixtures not found at {}; set MISSIONS_FIXTURES_DIR to the github-fixtures directory",
            dir.display()
        );
        dir
    }

    /// Every `(event, file name, bytes)` under `webhooks/<event>/*.json`, sorted.
    fn fixtures() -> Vec<(String, String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut events: Vec<PathBuf> = std::fs::read_dir(webhooks_dir())
            .expect("read webhooks dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.is_dir())
            .collect();
        events.sort();
        for event_dir in events {
            let event = file_name(&event_dir);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&event_dir)
                .expect("read event dir")
                .map(|e| e.expect("dir entry").path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            for file in files {
                let bytes = std::fs::read(&file).expect("read fixture");
                out.push((event.clone(), file_name(&file), bytes));
            }
        }
        out
    }

    fn file_name(path: &Path) -> String {
        path.file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned()
    }

    fn fixture(event: &str, file: &str) -> Vec<u8> {
        let path = webhooks_dir().join(event).join(file);
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    fn fixture_json(event: &str, file: &str) -> Value {
        serde_json::from_slice(&fixture(event, file)).expect("fixture is JSON")
    }

    fn parse_fixture(event: &str, file: &str) -> WebhookEvent {
        WebhookEvent::parse(event, &fixture(event, file))
            .unwrap_or_else(|e| panic!("{event}/{file}: {e}"))
    }

    /// The header a variant stands for, written out independently of `event_name`.
    fn variant_event(ev: &WebhookEvent) -> Option<&'static str> {
        Some(match ev {
            WebhookEvent::Issues(_) => "issues",
            WebhookEvent::IssueComment(_) => "issue_comment",
            WebhookEvent::PullRequest(_) => "pull_request",
            WebhookEvent::PullRequestReview(_) => "pull_request_review",
            WebhookEvent::PullRequestReviewComment(_) => "pull_request_review_comment",
            WebhookEvent::CheckRun(_) => "check_run",
            WebhookEvent::CheckSuite(_) => "check_suite",
            WebhookEvent::MergeGroup(_) => "merge_group",
            WebhookEvent::WorkflowRun(_) => "workflow_run",
            WebhookEvent::WorkflowJob(_) => "workflow_job",
            WebhookEvent::Installation(_) => "installation",
            WebhookEvent::InstallationRepositories(_) => "installation_repositories",
            WebhookEvent::Push(_) => "push",
            WebhookEvent::Ping(_) => "ping",
            WebhookEvent::Unknown { .. } => return None,
        })
    }

    /// The event's payload struct serialised back to JSON.
    fn to_json(ev: &WebhookEvent) -> Vec<u8> {
        let value = match ev {
            WebhookEvent::Issues(e) => serde_json::to_vec(e),
            WebhookEvent::IssueComment(e) => serde_json::to_vec(e),
            WebhookEvent::PullRequest(e) => serde_json::to_vec(e),
            WebhookEvent::PullRequestReview(e) => serde_json::to_vec(e),
            WebhookEvent::PullRequestReviewComment(e) => serde_json::to_vec(e),
            WebhookEvent::CheckRun(e) => serde_json::to_vec(e),
            WebhookEvent::CheckSuite(e) => serde_json::to_vec(e),
            WebhookEvent::MergeGroup(e) => serde_json::to_vec(e),
            WebhookEvent::WorkflowRun(e) => serde_json::to_vec(e),
            WebhookEvent::WorkflowJob(e) => serde_json::to_vec(e),
            WebhookEvent::Installation(e) => serde_json::to_vec(e),
            WebhookEvent::InstallationRepositories(e) => serde_json::to_vec(e),
            WebhookEvent::Push(e) => serde_json::to_vec(e),
            WebhookEvent::Ping(e) => serde_json::to_vec(e),
            WebhookEvent::Unknown { .. } => panic!("unknown events have no payload"),
        };
        value.expect("serialise event")
    }

    fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
        v.pointer(pointer).and_then(Value::as_str)
    }

    #[test]
    fn every_fixture_parses_into_its_event() {
        let all = fixtures();
        for (event, file, bytes) in &all {
            let ctx = format!("{event}/{file}");
            let raw: Value = serde_json::from_slice(bytes).expect("fixture is JSON");
            let parsed = WebhookEvent::parse(event, bytes).unwrap_or_else(|e| panic!("{ctx}: {e}"));

            assert_eq!(
                variant_event(&parsed),
                Some(event.as_str()),
                "{ctx}: variant"
            );
            assert!(parsed.is_known(), "{ctx}");
            assert_eq!(parsed.event_name(), event, "{ctx}: event_name");
            assert_eq!(parsed.action(), str_at(&raw, "/action"), "{ctx}: action");
            if let Some(full_name) = str_at(&raw, "/repository/full_name") {
                let repo = parsed
                    .repository()
                    .unwrap_or_else(|| panic!("{ctx}: repository"));
                assert_eq!(repo.full_name, full_name, "{ctx}: repository.full_name");
                assert_eq!(
                    Some(repo.id),
                    raw.pointer("/repository/id").and_then(Value::as_u64)
                );
            }
            assert_eq!(
                parsed.sender().map(|s| s.login.as_str()),
                str_at(&raw, "/sender/login"),
                "{ctx}: sender.login"
            );
            assert_eq!(
                parsed.installation_id(),
                raw.pointer("/installation/id").and_then(Value::as_u64),
                "{ctx}: installation.id"
            );

            // What we serialise must parse back to the same value.
            let again = WebhookEvent::parse(event, &to_json(&parsed))
                .unwrap_or_else(|e| panic!("{ctx}: round trip: {e}"));
            assert_eq!(again, parsed, "{ctx}: round trip");
        }
        assert_eq!(all.len(), FIXTURE_COUNT, "fixture count");
    }

    #[test]
    fn issues_labeled_carries_the_label() {
        let WebhookEvent::Issues(ev) = parse_fixture("issues", "labeled.json") else {
            panic!("not an issues event");
        };
        assert_eq!(ev.action, IssuesAction::Labeled);
        assert_eq!(ev.label.as_ref().map(|l| l.name.as_str()), Some("bug"));
        assert_eq!(ev.issue.number, 1);
        assert!(ev.issue.has_label("BUG"));
        assert!(!ev.issue.is_pull_request());
        assert_eq!(ev.sender.kind, ActorType::User);
    }

    #[test]
    fn pull_request_review_submitted_state() {
        let WebhookEvent::PullRequestReview(ev) =
            parse_fixture("pull_request_review", "submitted.json")
        else {
            panic!("not a pull_request_review event");
        };
        assert_eq!(ev.action, PullRequestReviewAction::Submitted);
        assert_eq!(ev.review.state, "commented");
        assert_eq!(ev.review.review_state(), ReviewState::Commented);
        assert_eq!(
            ev.pull_request.merged, None,
            "review events carry no `merged`"
        );
        assert!(!ev.pull_request.is_from_fork(&ev.repository.full_name));

        let WebhookEvent::PullRequestReview(ev) =
            parse_fixture("pull_request_review", "dismissed.json")
        else {
            panic!("not a pull_request_review event");
        };
        assert_eq!(ev.review.review_state(), ReviewState::Dismissed);
    }

    #[test]
    fn review_state_ignores_case_and_keeps_unknowns() {
        let mut raw = fixture_json("pull_request_review", "submitted.json");
        raw["review"]["state"] = "APPROVED".into();
        let bytes = serde_json::to_vec(&raw).expect("json");
        let Ok(WebhookEvent::PullRequestReview(ev)) =
            WebhookEvent::parse("pull_request_review", &bytes)
        else {
            panic!("not a pull_request_review event");
        };
        assert_eq!(ev.review.state, "APPROVED");
        assert_eq!(ev.review.review_state(), ReviewState::Approved);
        assert_eq!(
            ReviewState::from("pending"),
            ReviewState::Other("pending".into())
        );
    }

    #[test]
    fn workflow_run_completed_conclusion() {
        let WebhookEvent::WorkflowRun(ev) = parse_fixture("workflow_run", "completed.json") else {
            panic!("not a workflow_run event");
        };
        assert_eq!(ev.action, WorkflowRunAction::Completed);
        assert_eq!(ev.workflow_run.conclusion.as_deref(), Some("success"));
        assert_eq!(ev.workflow_run.id, 289782451);
    }

    #[test]
    fn check_run_completed_conclusion() {
        let WebhookEvent::CheckRun(ev) = parse_fixture("check_run", "completed.json") else {
            panic!("not a check_run event");
        };
        assert_eq!(ev.action, CheckRunAction::Completed);
        assert_eq!(ev.check_run.conclusion.as_deref(), Some("success"));
        assert_eq!(ev.check_run.name, "Octocoders-linter");

        let WebhookEvent::CheckRun(ev) = parse_fixture("check_run", "requested_action.json") else {
            panic!("not a check_run event");
        };
        assert_eq!(ev.action, CheckRunAction::RequestedAction);
        assert_eq!(
            ev.requested_action.and_then(|a| a.identifier).as_deref(),
            Some("lgtm|26764")
        );
    }

    #[test]
    fn push_ref_and_after() {
        let WebhookEvent::Push(ev) = parse_fixture("push", "push-3.json") else {
            panic!("not a push event");
        };
        assert_eq!(ev.ref_name, "refs/heads/master");
        assert_eq!(ev.after, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
        assert_eq!(ev.created, Some(true));
        assert_eq!(
            ev.head_commit.map(|c| c.id).as_deref(),
            Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246")
        );

        let WebhookEvent::Push(ev) = parse_fixture("push", "push.json") else {
            panic!("not a push event");
        };
        assert_eq!(ev.ref_name, "refs/tags/simple-tag");
        assert_eq!(ev.after, "0000000000000000000000000000000000000000");
        assert_eq!(ev.deleted, Some(true));
        assert_eq!(ev.head_commit, None);
    }

    #[test]
    fn installation_repositories_added_list() {
        let WebhookEvent::InstallationRepositories(ev) =
            parse_fixture("installation_repositories", "added.json")
        else {
            panic!("not an installation_repositories event");
        };
        assert_eq!(ev.action, InstallationRepositoriesAction::Added);
        let added: Vec<&str> = ev
            .repositories_added
            .iter()
            .map(|r| r.full_name.as_str())
            .collect();
        assert_eq!(added, ["Codertocat/Space"]);
        assert!(ev.repositories_removed.is_empty());
        assert_eq!(ev.installation.id, 957387);
    }

    #[test]
    fn issue_comment_on_a_pull_request() {
        let mut raw = fixture_json("issue_comment", "created.json");
        raw["issue"]["pull_request"] =
            serde_json::json!({ "url": "https://api.github.com/repos/o/r/pulls/1" });
        let bytes = serde_json::to_vec(&raw).expect("json");
        let Ok(WebhookEvent::IssueComment(ev)) = WebhookEvent::parse("issue_comment", &bytes)
        else {
            panic!("not an issue_comment event");
        };
        assert!(ev.issue.is_pull_request());
        assert_eq!(
            ev.issue.pull_request.and_then(|p| p.url).as_deref(),
            Some("https://api.github.com/repos/o/r/pulls/1")
        );
    }

    #[test]
    fn unknown_event_is_not_parsed() {
        let ev = WebhookEvent::parse("star", b"\xff\xfe not json at all").expect("unknown is ok");
        assert_eq!(
            ev,
            WebhookEvent::Unknown {
                event: "star".into()
            }
        );
        assert!(!ev.is_known());
        assert_eq!(ev.event_name(), "star");
        assert_eq!(ev.action(), None);
        assert_eq!(ev.repository(), None);
        assert_eq!(ev.sender(), None);
        assert_eq!(ev.installation_id(), None);
    }

    #[test]
    fn unknown_action_uses_the_catch_all() {
        let mut raw = fixture_json("issues", "opened.json");
        raw["action"] = "some_future_action".into();
        let bytes = serde_json::to_vec(&raw).expect("json");
        let ev = WebhookEvent::parse("issues", &bytes).expect("parses");
        assert_eq!(ev.action(), Some("some_future_action"));
        let WebhookEvent::Issues(issues) = &ev else {
            panic!("not an issues event");
        };
        assert_eq!(
            issues.action,
            IssuesAction::Other("some_future_action".into())
        );
        // The raw string survives a round trip.
        let json: Value = serde_json::to_value(issues).expect("serialise");
        assert_eq!(json["action"], "some_future_action");
    }

    #[test]
    fn malformed_payload_names_the_path_not_the_payload() {
        let secret_text = "private-user-text-that-must-not-be-logged";
        let mut raw = fixture_json("issues", "opened.json");
        raw["issue"]["number"] = "x".into();
        raw["issue"]["body"] = secret_text.into();
        raw["issue"]["title"] = secret_text.into();
        let bytes = serde_json::to_vec(&raw).expect("json");

        let err = WebhookEvent::parse("issues", &bytes).expect_err("must fail");
        assert_eq!(err.event, "issues");
        assert_eq!(err.path, "issue.number");
        let shown = err.to_string();
        assert_eq!(
            shown,
            r#"cannot parse "issues" payload at issue.number: invalid type: string "x", expected u64"#
        );
        assert!(!shown.contains(secret_text));
        assert!(!format!("{err:?}").contains(secret_text));
    }

    #[test]
    fn long_offending_values_are_cut() {
        let long = "A".repeat(10_000);
        let mut raw = fixture_json("pull_request", "opened.json");
        raw["number"] = long.as_str().into();
        let bytes = serde_json::to_vec(&raw).expect("json");
        let err = WebhookEvent::parse("pull_request", &bytes).expect_err("must fail");
        assert_eq!(err.path, "number");
        assert!(err.message.chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert!(err.to_string().len() < 300);
    }

    #[test]
    fn missing_field_and_bad_json_are_errors() {
        let mut raw = fixture_json("workflow_run", "completed.json");
        raw["workflow_run"]
            .as_object_mut()
            .expect("object")
            .remove("head_sha");
        let bytes = serde_json::to_vec(&raw).expect("json");
        let err = WebhookEvent::parse("workflow_run", &bytes).expect_err("must fail");
        assert_eq!(err.path, "workflow_run");
        assert!(err.message.contains("head_sha"), "{err}");

        let err = WebhookEvent::parse("push", b"{").expect_err("truncated");
        assert_eq!(err.event, "push");
        assert!(!err.message.contains(" at line "), "{err}");

        let mut bytes = fixture("ping", "ping.json");
        bytes.extend_from_slice(b" trailing");
        let err = WebhookEvent::parse("ping", &bytes).expect_err("trailing bytes");
        assert_eq!(err.path, ".");
    }

    #[test]
    fn known_events_all_parse_as_known() {
        for (event, _, bytes) in fixtures() {
            assert!(
                WebhookEvent::KNOWN_EVENTS.contains(&event.as_str()),
                "{event}"
            );
            assert!(
                WebhookEvent::parse(&event, &bytes)
                    .expect("parse")
                    .is_known()
            );
        }
        assert_eq!(
            WebhookEvent::KNOWN_EVENTS.len(),
            14,
            "one entry per typed event"
        );
    }

    #[test]
    fn a_merge_group_names_its_last_pull_request_and_that_head() {
        let sha = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
        let group = |head_ref: &str| MergeGroup {
            head_sha: "0".repeat(40),
            head_ref: head_ref.into(),
            base_sha: "1".repeat(40),
            base_ref: "refs/heads/main".into(),
        };
        let named = group(&format!("refs/heads/gh-readonly-queue/main/pr-42-{sha}"));
        assert_eq!(named.pull_request(), Some((42, sha)));
        // A base with slashes in its name.
        let nested = group(&format!(
            "refs/heads/gh-readonly-queue/release/v2/pr-7-{sha}"
        ));
        assert_eq!(nested.pull_request(), Some((7, sha)));
        for other in [
            "refs/heads/main".to_owned(),
            format!("refs/heads/gh-readonly-queue/main/pr-x-{sha}"),
            "refs/heads/gh-readonly-queue/main/pr-42-abc".to_owned(),
        ] {
            assert_eq!(group(&other).pull_request(), None, "{other}");
        }
    }
}
