//! The simulator's in-memory world: the App, its installations, users with
//! per-repository permissions, repositories, issues and pull requests (one
//! number space, as on GitHub), comments, labels, reviews, check runs and
//! workflow runs. Git objects live on disk (see [`super::git`]); this holds
//! everything else. Plain data: the REST handlers lock it, change it, and say
//! which webhooks to send.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use time::OffsetDateTime;

/// GitHub's repository roles, weakest first, so `>=` compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    None,
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

impl Permission {
    /// The `permission` field of the collaborator-permission answer, which
    /// GitHub reduces to admin/write/read/none (maintain → write, triage → read).
    pub fn legacy_name(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Maintain | Self::Write => "write",
            Self::Triage | Self::Read => "read",
            Self::None => "none",
        }
    }

    /// The `role_name` field: the role as configured.
    pub fn role_name(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Maintain => "maintain",
            Self::Write => "write",
            Self::Triage => "triage",
            Self::Read => "read",
            Self::None => "none",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "admin" => Self::Admin,
            "maintain" => Self::Maintain,
            "write" | "push" => Self::Write,
            "triage" => Self::Triage,
            "read" | "pull" => Self::Read,
            "none" => Self::None,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    User,
    Bot,
    Organization,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Bot => "Bot",
            Self::Organization => "Organization",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: u64,
    pub login: String,
    pub kind: AccountKind,
}

/// The one GitHub App the simulator hosts (the App under test).
#[derive(Debug, Clone)]
pub struct App {
    pub id: u64,
    pub slug: String,
    pub name: String,
    pub owner: String,
    /// PEM of the public half of the App's key: App JWTs are checked with it.
    pub public_key_pem: String,
    pub created_at: OffsetDateTime,
    /// The `<slug>[bot]` account the App acts as with installation tokens.
    pub bot_login: String,
}

#[derive(Debug, Clone)]
pub struct Installation {
    pub id: u64,
    pub account: String,
    pub repositories: Vec<String>,
    pub created_at: OffsetDateTime,
}

/// Who a bearer token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSubject {
    /// A user's personal access token.
    User(String),
    /// An installation access token from `POST /app/installations/{id}/access_tokens`.
    Installation { id: u64, repositories: Vec<String> },
    /// The `GITHUB_TOKEN` of one job of a workflow run: one repository, until
    /// the job ends; `write`: the job's `permissions:` grant contents write
    /// (else everything is read-only).
    Job {
        repository: String,
        run_id: u64,
        write: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Token {
    pub subject: TokenSubject,
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone)]
pub struct Label {
    pub id: u64,
    pub name: String,
    pub color: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueState {
    Open,
    Closed,
}

#[derive(Debug, Clone)]
pub struct Issue {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub user: String,
    pub labels: Vec<String>,
    pub state: IssueState,
    pub state_reason: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub closed_at: Option<OffsetDateTime>,
    /// Some for a pull request: GitHub's issues and pulls share numbers.
    pub pull: Option<Pull>,
}

#[derive(Debug, Clone)]
pub struct Pull {
    pub id: u64,
    pub head_ref: String,
    pub head_sha: String,
    pub base_ref: String,
    /// The base branch's commit when the PR was last updated (for `base.sha`).
    pub base_sha: String,
    pub draft: bool,
    pub merged_at: Option<OffsetDateTime>,
    pub merged_by: Option<String>,
    pub merge_commit_sha: Option<String>,
    pub reviews: Vec<Review>,
}

#[derive(Debug, Clone)]
pub struct Review {
    pub id: u64,
    pub user: String,
    pub body: String,
    /// APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED.
    pub state: String,
    pub commit_id: String,
    pub submitted_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub issue_number: u64,
    pub user: String,
    pub body: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// Set when an App made it with an installation token.
    pub via_app: bool,
}

#[derive(Debug, Clone)]
pub struct Reaction {
    pub id: u64,
    pub issue_number: u64,
    pub user: String,
    pub content: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Default)]
pub struct CheckOutput {
    pub title: Option<String>,
    pub summary: Option<String>,
    pub text: Option<String>,
    /// `output.images`: (alt, image_url), as last sent (GitHub shows them
    /// with the check run and does not return them).
    pub images: Vec<(String, String)>,
}

/// The App a check run belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckApp {
    /// The App the simulator hosts: created through `POST .../check-runs`.
    Installed,
    /// GitHub Actions (`github-actions`, app id 15368): a job of a workflow
    /// run, with the job's id (see [`super::SimConfig::push_workflows`]).
    Actions,
}

#[derive(Debug, Clone)]
pub struct CheckRun {
    pub id: u64,
    /// Who owns it: only that App may update it.
    pub app: CheckApp,
    pub name: String,
    pub head_sha: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub details_url: Option<String>,
    pub external_id: Option<String>,
    pub started_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
    pub output: CheckOutput,
    pub check_suite_id: u64,
}

/// A commit status: `context` is its name, `state` one of `error`,
/// `failure`, `pending`, `success`.
#[derive(Debug, Clone)]
pub struct CommitStatus {
    pub id: u64,
    pub sha: String,
    pub context: String,
    pub state: String,
    pub target_url: Option<String>,
    pub description: Option<String>,
    pub creator: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct Workflow {
    pub id: u64,
    pub name: String,
    /// `.github/workflows/<file>`.
    pub path: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Queued,
    InProgress,
    Completed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct JobStep {
    pub name: String,
    pub number: u64,
    pub conclusion: Option<String>,
    pub started_at: Option<OffsetDateTime>,
    pub completed_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone)]
pub struct WorkflowRun {
    pub id: u64,
    pub run_number: u64,
    pub workflow_id: u64,
    pub head_branch: String,
    pub head_sha: String,
    pub actor: String,
    pub inputs: serde_json::Map<String, serde_json::Value>,
    /// The workflow's `run-name` with its inputs, if it has one.
    pub run_name: Option<String>,
    pub status: RunStatus,
    pub conclusion: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub run_started_at: Option<OffsetDateTime>,
    pub check_suite_id: u64,
    pub job: Job,
    /// The job's combined output, masked; kept for tests and `missions sim`.
    pub log: String,
    /// How many secret values the job's own output held (masked in `log`).
    pub secrets_masked: usize,
}

/// A run of a push-triggered workflow ([`super::SimConfig::push_workflows`]).
/// Its jobs run independently of each other (no `needs:`); each is a check
/// run of GitHub Actions whose id is the job's id.
#[derive(Debug, Clone)]
pub struct PushRun {
    pub id: u64,
    pub run_number: u64,
    pub workflow_id: u64,
    pub head_branch: String,
    pub head_sha: String,
    /// The branch's commit before the push; `None` when the push created it.
    pub before: Option<String>,
    /// Who pushed (`GITHUB_ACTOR`, and the sender of its webhooks).
    pub actor: String,
    /// GitHub makes a check suite per workflow run, owned by GitHub Actions
    /// (not the suite of the App's own check runs on the commit).
    pub check_suite_id: u64,
    pub created_at: OffsetDateTime,
    /// Its jobs, in the workflow's order: ids of check runs in `check_runs`.
    pub jobs: Vec<u64>,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: u64,
    pub name: String,
    pub status: RunStatus,
    pub conclusion: Option<String>,
    pub created_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub completed_at: Option<OffsetDateTime>,
    pub steps: Vec<JobStep>,
}

#[derive(Debug, Clone)]
pub struct Repo {
    pub id: u64,
    pub owner: String,
    pub name: String,
    pub private: bool,
    pub default_branch: String,
    pub description: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub pushed_at: OffsetDateTime,
    pub collaborators: BTreeMap<String, Permission>,
    pub labels: BTreeMap<String, Label>,
    pub next_number: u64,
    pub issues: BTreeMap<u64, Issue>,
    pub comments: BTreeMap<u64, Comment>,
    pub reactions: Vec<Reaction>,
    pub check_runs: BTreeMap<u64, CheckRun>,
    /// Commit statuses (the older API other CI services use), oldest first.
    pub statuses: Vec<CommitStatus>,
    /// head sha → check suite id (one suite per commit for the one App; the
    /// suites of GitHub Actions are in their runs).
    pub check_suites: HashMap<String, u64>,
    pub workflows: Vec<Workflow>,
    pub runs: BTreeMap<u64, WorkflowRun>,
    /// Repository rulesets (only the rules the App meets).
    pub rulesets: Vec<Ruleset>,
    /// Branch protection by branch name (only what merges need).
    pub protection: BTreeMap<String, BranchProtection>,
    /// Branches whose pull requests merge only through a merge queue.
    pub merge_queue: BTreeSet<String>,
    /// The merge groups in the queues, oldest first.
    pub merge_groups: Vec<MergeGroup>,
    /// Runs of push-triggered workflows, by run id.
    pub push_runs: BTreeMap<u64, PushRun>,
    /// The masked log of each push-workflow job that has ended, by job id
    /// (a dispatched run keeps its job's log in [`WorkflowRun::log`]).
    pub job_logs: BTreeMap<u64, String>,
}

/// A pull request in a merge queue: GitHub's commit of the base's tip with the
/// pull request merged in, on a temporary branch, waiting for required checks.
#[derive(Debug, Clone)]
pub struct MergeGroup {
    pub pr: u64,
    /// The branch the group merges into (`main`).
    pub base_ref: String,
    /// The base's tip the group was built on.
    pub base_sha: String,
    /// `gh-readonly-queue/<base>/pr-<n>-<pull request head>`.
    pub head_ref: String,
    /// The group's commit: where required checks must pass.
    pub head_sha: String,
    pub enqueued_by: String,
    /// The newest check run id when the group was made: only later runs count.
    pub checks_after: u64,
}

/// Where a base branch's required checks stand on a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequiredChecks {
    Passed,
    /// The first required check with no run, or still running.
    Waiting(String),
    /// The first required check whose newest run did not succeed.
    Failed(String),
}

/// A protected branch's merge requirements.
#[derive(Debug, Clone, Default)]
pub struct BranchProtection {
    /// Check runs that must have succeeded on a pull request's head.
    pub required_checks: Vec<String>,
    /// "Require branches to be up to date before merging": the head must
    /// contain the base's tip.
    pub strict: bool,
}

/// A repository ruleset: rules on the branches its patterns include.
#[derive(Debug, Clone, Default)]
pub struct Ruleset {
    pub name: String,
    /// fnmatch patterns of full ref names (`refs/heads/missions/**`), as a
    /// ruleset's `conditions.ref_name.include`; `~ALL` is every branch.
    pub include: Vec<String>,
    /// "Require signed commits": a push of a commit without a verified
    /// signature to a matching branch is refused (GH013).
    pub require_signed_commits: bool,
    /// "Restrict creations": only bypass actors may create matching refs.
    pub restrict_creation: bool,
    /// "Require status checks to pass": contexts a pull request into a
    /// matching branch must have passed on its head.
    pub required_checks: Vec<String>,
}

impl Ruleset {
    /// The include patterns as `sh` `case` patterns (where `*` crosses `/`,
    /// so a `**` or a `*` before a segment end matches at least as much).
    pub fn case_patterns(&self) -> Vec<String> {
        self.include
            .iter()
            .map(|p| match p.as_str() {
                "~ALL" => "refs/heads/*".to_owned(),
                other => other.replace("**", "*"),
            })
            .collect()
    }

    pub fn applies_to(&self, refname: &str) -> bool {
        self.include
            .iter()
            .any(|p| (p == "~ALL" && refname.starts_with("refs/heads/")) || ref_glob(p, refname))
    }
}

/// fnmatch as rulesets use it: `*` within a path segment, `**` across them.
fn ref_glob(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("**") {
        Some(rest) => (0..=name.len())
            .filter(|&i| name.is_char_boundary(i))
            .any(|i| ref_glob(rest, &name[i..])),
        None => match pattern.strip_prefix('*') {
            Some(rest) => (0..=name.len())
                .filter(|&i| name.is_char_boundary(i) && !name[..i].contains('/'))
                .any(|i| ref_glob(rest, &name[i..])),
            None => match (pattern.chars().next(), name.chars().next()) {
                (None, None) => true,
                (Some(p), Some(n)) if p == n => {
                    ref_glob(&pattern[p.len_utf8()..], &name[n.len_utf8()..])
                }
                _ => false,
            },
        },
    }
}

impl Repo {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    pub fn open_issues(&self) -> usize {
        self.issues
            .values()
            .filter(|i| i.state == IssueState::Open)
            .count()
    }

    /// `base`'s required checks on `sha`; the newest run of each name decides,
    /// as on GitHub. Runs with ids up to `after` do not count (a merge group
    /// is a fresh commit on GitHub, which the simulator may make twice alike).
    pub fn required_checks(&self, base: &str, sha: &str, after: u64) -> RequiredChecks {
        let refname = format!("refs/heads/{base}");
        let mut required: Vec<&String> = self
            .protection
            .get(base)
            .map(|p| p.required_checks.iter().collect())
            .unwrap_or_default();
        for set in self.rulesets.iter().filter(|s| s.applies_to(&refname)) {
            required.extend(set.required_checks.iter());
        }
        for check in required {
            let newest = self
                .check_runs
                .values()
                .rev()
                .find(|r| r.head_sha == sha && &r.name == check && r.id > after);
            // A required context is a check run's name or a commit status's
            // context, whichever reported.
            let status = self
                .statuses
                .iter()
                .rev()
                .find(|s| s.sha == sha && &s.context == check && s.id > after)
                .map(|s| match s.state.as_str() {
                    "success" => Some("success"),
                    "pending" => None,
                    _ => Some("failure"),
                });
            let conclusion = match (newest, status) {
                (Some(run), _) => run.conclusion.as_deref(),
                (None, Some(state)) => state,
                (None, None) => None,
            };
            match conclusion {
                None => return RequiredChecks::Waiting(check.clone()),
                Some("success" | "neutral" | "skipped") => {}
                Some(_) => return RequiredChecks::Failed(check.clone()),
            }
        }
        RequiredChecks::Passed
    }

    pub fn pull_by_head(&self, head_ref: &str) -> impl Iterator<Item = &Issue> {
        self.issues.values().filter(move |i| {
            i.state == IssueState::Open && i.pull.as_ref().is_some_and(|p| p.head_ref == head_ref)
        })
    }
}

/// Everything but git objects. Ids come from one counter: unique across kinds,
/// which GitHub does not promise but which makes mix-ups visible in tests.
#[derive(Debug)]
pub struct World {
    next_id: u64,
    pub app: Option<App>,
    pub accounts: BTreeMap<String, Account>,
    pub tokens: HashMap<String, Token>,
    /// Every token ever put in `tokens`, in order, including those since
    /// revoked (a job's ends with its run): what tests look for in leaks.
    issued_tokens: Vec<String>,
    pub installations: BTreeMap<u64, Installation>,
    pub repos: BTreeMap<String, Repo>,
    /// Each caller's primary rate limit (`installation:<id>`, `user:<login>`,
    /// `app`, `job:<run>`), as GitHub keeps one per token owner.
    pub rate_limits: HashMap<String, RateWindow>,
    /// The short-lived addresses of job logs handed out by
    /// `GET .../actions/jobs/{job_id}/logs`, by their secret part.
    pub log_links: HashMap<String, LogLink>,
}

/// A signed, short-lived address of one job's log (GitHub redirects to blob
/// storage with a signature in the query; whoever holds it may read the log).
#[derive(Debug, Clone)]
pub struct LogLink {
    pub repository: String,
    pub job_id: u64,
    pub expires_at: OffsetDateTime,
}

/// One hour of a caller's primary rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    pub limit: u64,
    pub used: u64,
    /// Unix seconds when `used` goes back to 0.
    pub reset: i64,
}

impl RateWindow {
    /// GitHub's limit for an installation in a small organisation.
    pub const LIMIT: u64 = 5000;

    /// The window as it stands at `now` (a new one once the old has reset).
    pub fn at(self, now: i64) -> RateWindow {
        if now >= self.reset {
            RateWindow {
                limit: self.limit,
                used: 0,
                reset: now + 3600,
            }
        } else {
            self
        }
    }

    pub fn fresh(now: i64) -> RateWindow {
        RateWindow {
            limit: Self::LIMIT,
            used: 0,
            reset: now + 3600,
        }
    }

    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

impl Default for World {
    fn default() -> Self {
        Self {
            next_id: 1000,
            app: None,
            accounts: BTreeMap::new(),
            tokens: HashMap::new(),
            issued_tokens: Vec::new(),
            installations: BTreeMap::new(),
            repos: BTreeMap::new(),
            rate_limits: HashMap::new(),
            log_links: HashMap::new(),
        }
    }
}

impl World {
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Makes `value` a bearer token for `token`'s subject.
    pub fn issue_token(&mut self, value: String, token: Token) {
        self.issued_tokens.push(value.clone());
        self.tokens.insert(value, token);
    }

    /// Every token issued so far (users', installations', jobs'), revoked ones included.
    pub fn issued_tokens(&self) -> &[String] {
        &self.issued_tokens
    }

    /// The account, created on first use (a user or an organization).
    pub fn ensure_account(&mut self, login: &str, kind: AccountKind) -> Account {
        if let Some(account) = self.accounts.get(login) {
            return account.clone();
        }
        let account = Account {
            id: self.next_id(),
            login: login.to_owned(),
            kind,
        };
        self.accounts.insert(login.to_owned(), account.clone());
        account
    }

    pub fn account(&self, login: &str) -> Account {
        self.accounts.get(login).cloned().unwrap_or(Account {
            id: 0,
            login: login.to_owned(),
            kind: AccountKind::User,
        })
    }

    /// A user's role on a repository: the owner is admin; others as granted.
    pub fn permission(&self, repo: &Repo, login: &str) -> Permission {
        if repo.owner == login {
            return Permission::Admin;
        }
        if let Some(p) = repo.collaborators.get(login) {
            return *p;
        }
        if repo.private {
            Permission::None
        } else {
            Permission::Read
        }
    }

    /// The installation of the App on `full_name`, if any.
    pub fn installation_for(&self, full_name: &str) -> Option<&Installation> {
        self.installations
            .values()
            .find(|i| i.repositories.iter().any(|r| r == full_name))
    }

    /// The suite of the App's own check runs on `head_sha` (GitHub Actions
    /// makes one per workflow run instead: see [`PushRun::check_suite_id`]).
    pub fn check_suite_id(&mut self, full_name: &str, head_sha: &str) -> u64 {
        if let Some(id) = self
            .repos
            .get(full_name)
            .and_then(|r| r.check_suites.get(head_sha))
        {
            return *id;
        }
        let id = self.next_id();
        if let Some(repo) = self.repos.get_mut(full_name) {
            repo.check_suites.insert(head_sha.to_owned(), id);
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_patterns_match_as_fnmatch() {
        let set = |p: &str| Ruleset {
            include: vec![p.into()],
            ..Ruleset::default()
        };
        assert!(set("refs/heads/missions/**").applies_to("refs/heads/missions/7/plan"));
        assert!(set("refs/heads/missions/*").applies_to("refs/heads/missions/x"));
        assert!(!set("refs/heads/missions/*").applies_to("refs/heads/missions/7/plan"));
        assert!(!set("refs/heads/release/**").applies_to("refs/heads/missions/7/plan"));
        assert!(set("~ALL").applies_to("refs/heads/anything"));
        assert!(!set("~ALL").applies_to("refs/tags/v1"));
    }
}
