//! The mission handler: turns a handled webhook into a [`MissionInput`] recorded in
//! the event loop's transaction. Nothing here does I/O; permissions, repository
//! settings and job results are looked up by the driver, outside the transaction.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::engine::handler::{Handler, HandlerContext};
use crate::github::events::{
    Actor, CheckRunAction, CheckSuiteAction, IssueCommentAction, IssuesAction, MergeGroupAction,
    PullRequestAction, PullRequestReviewAction, ReviewState, WebhookEvent, WorkflowRunAction,
};
use crate::mission::machine::ExternalCheck;
use crate::store::missions as db;

/// Who sent an event, as the payload says; the driver checks their permission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    pub login: String,
    pub is_bot: bool,
}

impl From<&Actor> for Sender {
    fn from(a: &Actor) -> Self {
        Sender {
            login: a.login.clone(),
            is_bot: a.is_bot(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Requested,
    InProgress,
    Completed,
}

/// A fact from a webhook that may concern a mission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum MissionInput {
    Labeled {
        issue: u64,
        issue_author: String,
        label: String,
        sender: Sender,
        default_branch: String,
        /// The issue's text when it was labeled: the mission's jobs take it.
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        updated_at: Option<String>,
    },
    /// The issue's title or description was edited.
    Edited {
        issue: u64,
        title: String,
        body: Option<String>,
        updated_at: Option<String>,
        sender: Sender,
    },
    Comment {
        /// The issue, or the pull request when `on_pull_request`.
        issue: u64,
        issue_author: String,
        body: String,
        sender: Sender,
        /// On a plan or milestone PR only commands count (not scoping answers).
        #[serde(default)]
        on_pull_request: bool,
    },
    Review {
        pr: u64,
        head_branch: String,
        state: String,
        sender: Sender,
        /// The commit the review judged, and the PR's head when it was sent: an
        /// approval of an older revision of the plan does not approve the newer one.
        #[serde(default)]
        commit_id: Option<String>,
        #[serde(default)]
        head_sha: Option<String>,
    },
    Merged {
        pr: u64,
        head_branch: String,
        head_sha: String,
        sender: Sender,
    },
    /// New commits on a pull request's head branch (`synchronize`).
    Synchronized {
        pr: u64,
        head_branch: String,
        head_sha: String,
    },
    /// A check run of another app (the repository's CI) was created or
    /// completed on a branch.
    ExternalCheck {
        head_branch: String,
        head_sha: String,
        check: ExternalCheck,
        /// The app that owns it (the App's own are not external).
        app_id: Option<u64>,
    },
    /// Re-run on a check run (`check_name`), or Re-run all checks of a
    /// commit (`None`), on a branch.
    Rerun {
        head_branch: String,
        head_sha: String,
        #[serde(default)]
        check_name: Option<String>,
        sender: Sender,
    },
    /// A merge queue asks for the required checks on its group commit
    /// (`group_sha`), which merges pull request `pr` at `pr_head_sha`.
    MergeGroup {
        pr: u64,
        pr_head_sha: String,
        group_sha: String,
    },
    Run {
        run_id: u64,
        head_branch: String,
        status: RunStatus,
        conclusion: Option<String>,
        /// ISO 8601.
        created_at: Option<String>,
        /// `.github/workflows/<file>`: runs of other workflows are not jobs.
        #[serde(default)]
        workflow_path: Option<String>,
        /// The run's name; the mission workflow's `run-name` ends with the job key.
        #[serde(default)]
        display_title: Option<String>,
        /// The run's page.
        #[serde(default)]
        html_url: Option<String>,
    },
}

impl MissionInput {
    /// The input an event carries, if any. Fork PRs and events without an
    /// installation never concern a mission.
    pub fn from_event(event: &WebhookEvent) -> Option<MissionInput> {
        match event {
            WebhookEvent::Issues(e)
                if e.action == IssuesAction::Labeled && !e.issue.is_pull_request() =>
            {
                Some(MissionInput::Labeled {
                    issue: e.issue.number,
                    issue_author: e.issue.user.login.clone(),
                    label: e.label.as_ref()?.name.clone(),
                    sender: (&e.sender).into(),
                    default_branch: e.repository.default_branch.clone(),
                    title: Some(e.issue.title.clone()),
                    body: e.issue.body.clone(),
                    updated_at: e.issue.updated_at.clone(),
                })
            }
            WebhookEvent::Issues(e)
                if e.action == IssuesAction::Edited && !e.issue.is_pull_request() =>
            {
                Some(MissionInput::Edited {
                    issue: e.issue.number,
                    title: e.issue.title.clone(),
                    body: e.issue.body.clone(),
                    updated_at: e.issue.updated_at.clone(),
                    sender: (&e.sender).into(),
                })
            }
            WebhookEvent::IssueComment(e) if e.action == IssueCommentAction::Created => {
                Some(MissionInput::Comment {
                    issue: e.issue.number,
                    issue_author: e.issue.user.login.clone(),
                    body: e.comment.body.clone(),
                    sender: (&e.comment.user).into(),
                    on_pull_request: e.issue.is_pull_request(),
                })
            }
            WebhookEvent::PullRequestReview(e)
                if e.action == PullRequestReviewAction::Submitted =>
            {
                if e.pull_request.is_from_fork(&e.repository.full_name) {
                    return None;
                }
                let state = match e.review.review_state() {
                    ReviewState::Approved => "approved",
                    ReviewState::ChangesRequested => "changes_requested",
                    _ => return None,
                };
                Some(MissionInput::Review {
                    pr: e.pull_request.number,
                    head_branch: e.pull_request.head.ref_name.clone(),
                    state: state.into(),
                    sender: (&e.review.user).into(),
                    commit_id: e.review.commit_id.clone(),
                    head_sha: Some(e.pull_request.head.sha.clone()),
                })
            }
            WebhookEvent::PullRequest(e)
                if e.action == PullRequestAction::Closed && e.pull_request.is_merged() =>
            {
                if e.pull_request.is_from_fork(&e.repository.full_name) {
                    return None;
                }
                Some(MissionInput::Merged {
                    pr: e.number,
                    head_branch: e.pull_request.head.ref_name.clone(),
                    head_sha: e.pull_request.head.sha.clone(),
                    // Who merged, as the reconciliation path reads it too.
                    sender: e
                        .pull_request
                        .merged_by
                        .as_ref()
                        .unwrap_or(&e.sender)
                        .into(),
                })
            }
            WebhookEvent::PullRequest(e) if e.action == PullRequestAction::Synchronize => {
                if e.pull_request.is_from_fork(&e.repository.full_name) {
                    return None;
                }
                Some(MissionInput::Synchronized {
                    pr: e.number,
                    head_branch: e.pull_request.head.ref_name.clone(),
                    head_sha: e.pull_request.head.sha.clone(),
                })
            }
            WebhookEvent::CheckRun(e)
                if matches!(
                    e.action,
                    CheckRunAction::Created | CheckRunAction::Completed
                ) =>
            {
                let run = &e.check_run;
                Some(MissionInput::ExternalCheck {
                    head_branch: run.check_suite.as_ref()?.head_branch.clone()?,
                    head_sha: run.head_sha.clone(),
                    check: ExternalCheck {
                        name: run.name.clone(),
                        conclusion: (run.status == "completed")
                            .then(|| run.conclusion.clone().unwrap_or_else(|| "failure".into())),
                        url: run.details_url.clone(),
                        check_run_id: Some(run.id),
                        app: run.app.as_ref().and_then(|a| a.slug.clone()),
                        app_id: run.app.as_ref().map(|a| a.id),
                    },
                    app_id: run.app.as_ref().map(|a| a.id),
                })
            }
            WebhookEvent::CheckRun(e) if e.action == CheckRunAction::Rerequested => {
                Some(MissionInput::Rerun {
                    head_branch: e.check_run.check_suite.as_ref()?.head_branch.clone()?,
                    head_sha: e.check_run.head_sha.clone(),
                    check_name: Some(e.check_run.name.clone()),
                    sender: (&e.sender).into(),
                })
            }
            WebhookEvent::CheckSuite(e) if e.action == CheckSuiteAction::Rerequested => {
                Some(MissionInput::Rerun {
                    head_branch: e.check_suite.head_branch.clone()?,
                    head_sha: e.check_suite.head_sha.clone(),
                    check_name: None,
                    sender: (&e.sender).into(),
                })
            }
            WebhookEvent::MergeGroup(e) if e.action == MergeGroupAction::ChecksRequested => {
                let (pr, pr_head_sha) = e.merge_group.pull_request()?;
                Some(MissionInput::MergeGroup {
                    pr,
                    pr_head_sha: pr_head_sha.to_owned(),
                    group_sha: e.merge_group.head_sha.clone(),
                })
            }
            WebhookEvent::WorkflowRun(e) => {
                let status = match e.action {
                    WorkflowRunAction::Requested => RunStatus::Requested,
                    WorkflowRunAction::InProgress => RunStatus::InProgress,
                    WorkflowRunAction::Completed => RunStatus::Completed,
                    WorkflowRunAction::Other(_) => return None,
                };
                if e.workflow_run.event != "workflow_dispatch" {
                    return None;
                }
                Some(MissionInput::Run {
                    run_id: e.workflow_run.id,
                    head_branch: e.workflow_run.head_branch.clone()?,
                    status,
                    conclusion: e.workflow_run.conclusion.clone(),
                    created_at: e.workflow_run.created_at.clone(),
                    workflow_path: e.workflow_run.path.clone(),
                    display_title: e.workflow_run.display_title.clone(),
                    html_url: e.workflow_run.html_url.clone(),
                })
            }
            _ => None,
        }
    }

    /// The issue of the mission it concerns, as far as the input itself tells.
    pub fn issue(&self) -> Option<u64> {
        match self {
            MissionInput::Labeled { issue, .. }
            | MissionInput::Comment { issue, .. }
            | MissionInput::Edited { issue, .. } => Some(*issue),
            // Known once the pull request's branch is looked up.
            MissionInput::MergeGroup { .. } => None,
            MissionInput::Review { head_branch, .. }
            | MissionInput::Merged { head_branch, .. }
            | MissionInput::Rerun { head_branch, .. }
            | MissionInput::ExternalCheck { head_branch, .. }
            | MissionInput::Synchronized { head_branch, .. }
            | MissionInput::Run { head_branch, .. } => {
                crate::mission::machine::issue_of_branch(head_branch)
            }
        }
    }

    /// What the person did, for a message.
    pub fn describe(&self) -> String {
        match self {
            MissionInput::Labeled { sender, .. } => format!("@{}'s label", sender.login),
            MissionInput::Comment { sender, .. } => format!("@{}'s comment", sender.login),
            MissionInput::Edited { sender, .. } => {
                format!("@{}'s edit of the issue", sender.login)
            }
            MissionInput::Review { pr, sender, .. } => {
                format!("@{}'s review of #{pr}", sender.login)
            }
            MissionInput::Merged { pr, sender, .. } => {
                format!("@{}'s merge of #{pr}", sender.login)
            }
            MissionInput::Rerun {
                check_name, sender, ..
            } => format!(
                "@{}'s Re-run of {}",
                sender.login,
                check_name.as_deref().unwrap_or("all checks")
            ),
            MissionInput::Synchronized { pr, .. } => format!("new commits on #{pr}"),
            MissionInput::ExternalCheck { check, .. } => check.markdown(),
            MissionInput::MergeGroup { pr, .. } => format!("the merge queue's group for #{pr}"),
            MissionInput::Run { run_id, .. } => format!("the end of workflow run {run_id}"),
        }
    }

    /// Whether it can concern a mission at all: cheap filters, so that the
    /// driver is not woken for every comment in a busy repository.
    pub fn may_concern_a_mission(&self) -> bool {
        match self {
            MissionInput::Labeled { .. }
            | MissionInput::Comment { .. }
            | MissionInput::Edited { .. }
            | MissionInput::MergeGroup { .. } => true,
            MissionInput::Review { head_branch, .. }
            | MissionInput::Merged { head_branch, .. }
            | MissionInput::Rerun { head_branch, .. }
            | MissionInput::ExternalCheck { head_branch, .. }
            | MissionInput::Synchronized { head_branch, .. }
            | MissionInput::Run { head_branch, .. } => {
                crate::mission::machine::issue_of_branch(head_branch).is_some()
            }
        }
    }
}

/// The job key in a run's name (`missions #7 feature-F2.1 (worker)`): the word
/// after `#<issue>`, as the mission workflow's `run-name` writes it.
pub fn job_key_in_title(title: &str) -> Option<&str> {
    let words: Vec<&str> = title.split_whitespace().collect();
    words.windows(2).find_map(|pair| {
        let issue = pair[0].strip_prefix('#')?;
        if issue.is_empty() || !issue.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let key = pair[1];
        let (slug, try_number) = key.rsplit_once('.')?;
        let plain = !slug.is_empty()
            && slug
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        (plain && !try_number.is_empty() && try_number.chars().all(|c| c.is_ascii_digit()))
            .then_some(key)
    })
}

/// Records mission inputs; the driver acts on them after the commit.
#[derive(Debug, Clone, Copy)]
pub struct MissionHandler;

#[async_trait]
impl Handler for MissionHandler {
    fn name(&self) -> &'static str {
        "missions"
    }

    async fn handle(
        &self,
        cx: &mut HandlerContext<'_>,
        event: &WebhookEvent,
    ) -> anyhow::Result<()> {
        let Some(input) =
            MissionInput::from_event(event).filter(MissionInput::may_concern_a_mission)
        else {
            return Ok(());
        };
        let (Some(installation), Some(repo)) = (event.installation_id(), event.repository()) else {
            return Ok(());
        };
        let json = serde_json::to_string(&input)?;
        let repo = repo.full_name.clone();
        db::push_input(cx.db().await?, installation as i64, &repo, &json).await
    }
}

#[cfg(test)]
mod tests {
    use super::job_key_in_title;

    #[test]
    fn the_job_key_is_read_from_the_run_name() {
        assert_eq!(
            job_key_in_title("missions #7 feature-F2.1"),
            Some("feature-F2.1")
        );
        assert_eq!(
            job_key_in_title("missions #7 M1-user-testing-2.3"),
            Some("M1-user-testing-2.3")
        );
        assert_eq!(job_key_in_title("missions"), None);
        assert_eq!(job_key_in_title("CI for v1.2"), None);
        assert_eq!(job_key_in_title("release #12 v1.2"), Some("v1.2"));
        assert_eq!(job_key_in_title("deploy ./x.1"), None);
    }
}
