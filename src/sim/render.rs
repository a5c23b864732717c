//! GitHub's JSON for the simulator's objects. One function per object kind,
//! used by both the REST answers and the webhook payloads, so the two agree
//! the way they do on GitHub. Every field GitHub's schemas mark required is
//! present (the conformance tests check them against the published schemas).

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::state::{
    Account, AccountKind, App, CheckApp, CheckRun, Comment, CommitStatus, Installation, Issue,
    IssueState, Job, Label, Permission, PushRun, Reaction, Repo, Review, RunStatus, Workflow,
    WorkflowRun, World,
};

/// Where the simulator is reachable: the REST API and the web/git host are the
/// same origin (`GITHUB_API_URL` = `GITHUB_SERVER_URL`), unlike github.com.
#[derive(Debug, Clone)]
pub struct Urls {
    pub api: String,
    pub web: String,
}

pub fn timestamp(t: OffsetDateTime) -> String {
    // Whole seconds and a `Z`, as GitHub writes them.
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

fn opt_time(t: Option<OffsetDateTime>) -> Value {
    t.map(|t| Value::String(timestamp(t)))
        .unwrap_or(Value::Null)
}

fn node_id(kind: &str, id: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(format!("{kind}:{id}"))
}

/// A login as it appears in a URL: bots' `[bot]` suffix is percent-encoded,
/// as GitHub writes it (`/users/missions%5Bbot%5D`).
fn url_login(login: &str) -> String {
    login.replace('[', "%5B").replace(']', "%5D")
}

/// `simple-user` (also the webhooks' `sender`, `owner`, `user`).
pub fn user(urls: &Urls, account: &Account) -> Value {
    let api = &urls.api;
    let login = &url_login(&account.login);
    json!({
        "login": account.login,
        "id": account.id,
        "node_id": node_id(account.kind.as_str(), account.id),
        "avatar_url": format!("{}/avatars/{login}", urls.web),
        "gravatar_id": "",
        "url": format!("{api}/users/{login}"),
        "html_url": format!("{}/{login}", urls.web),
        "followers_url": format!("{api}/users/{login}/followers"),
        "following_url": format!("{api}/users/{login}/following{{/other_user}}"),
        "gists_url": format!("{api}/users/{login}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/users/{login}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/users/{login}/subscriptions"),
        "organizations_url": format!("{api}/users/{login}/orgs"),
        "repos_url": format!("{api}/users/{login}/repos"),
        "events_url": format!("{api}/users/{login}/events{{/privacy}}"),
        "received_events_url": format!("{api}/users/{login}/received_events"),
        "type": account.kind.as_str(),
        "user_view_type": "public",
        "site_admin": false,
    })
}

pub fn user_by_login(urls: &Urls, world: &World, login: &str) -> Value {
    user(urls, &world.account(login))
}

/// The webhooks' `organization` object.
pub fn organization(urls: &Urls, account: &Account) -> Value {
    let api = &urls.api;
    let login = &account.login;
    json!({
        "login": login,
        "id": account.id,
        "node_id": node_id("Organization", account.id),
        "url": format!("{api}/orgs/{login}"),
        "repos_url": format!("{api}/orgs/{login}/repos"),
        "events_url": format!("{api}/orgs/{login}/events"),
        "hooks_url": format!("{api}/orgs/{login}/hooks"),
        "issues_url": format!("{api}/orgs/{login}/issues"),
        "members_url": format!("{api}/orgs/{login}/members{{/member}}"),
        "public_members_url": format!("{api}/orgs/{login}/public_members{{/member}}"),
        "avatar_url": format!("{}/avatars/{login}", urls.web),
        "description": null,
    })
}

/// How timestamps of a repository are written: ISO strings everywhere except
/// the `push` webhook, where GitHub writes `created_at`/`pushed_at` as Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoTimes {
    Iso,
    PushEvent,
}

/// `full-repository` (a superset of `repository` and `minimal-repository`),
/// plus the keys webhook payloads carry.
pub fn repository(urls: &Urls, world: &World, repo: &Repo, times: RepoTimes) -> Value {
    let api = &urls.api;
    let full = repo.full_name();
    let r = format!("{api}/repos/{full}");
    let owner = world.account(&repo.owner);
    let (created_at, pushed_at) = match times {
        RepoTimes::Iso => (
            json!(timestamp(repo.created_at)),
            json!(timestamp(repo.pushed_at)),
        ),
        RepoTimes::PushEvent => (
            json!(repo.created_at.unix_timestamp()),
            json!(repo.pushed_at.unix_timestamp()),
        ),
    };
    let open = repo.open_issues();
    let mut v = json!({
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": full,
        "private": repo.private,
        "owner": user(urls, &owner),
        "html_url": format!("{}/{full}", urls.web),
        "description": repo.description,
        "fork": false,
        "url": r,
        "archive_url": format!("{r}/{{archive_format}}{{/ref}}"),
        "assignees_url": format!("{r}/assignees{{/user}}"),
        "blobs_url": format!("{r}/git/blobs{{/sha}}"),
        "branches_url": format!("{r}/branches{{/branch}}"),
        "collaborators_url": format!("{r}/collaborators{{/collaborator}}"),
        "comments_url": format!("{r}/comments{{/number}}"),
        "commits_url": format!("{r}/commits{{/sha}}"),
        "compare_url": format!("{r}/compare/{{base}}...{{head}}"),
        "contents_url": format!("{r}/contents/{{+path}}"),
        "contributors_url": format!("{r}/contributors"),
        "deployments_url": format!("{r}/deployments"),
        "downloads_url": format!("{r}/downloads"),
        "events_url": format!("{r}/events"),
        "forks_url": format!("{r}/forks"),
        "git_commits_url": format!("{r}/git/commits{{/sha}}"),
        "git_refs_url": format!("{r}/git/refs{{/sha}}"),
        "git_tags_url": format!("{r}/git/tags{{/sha}}"),
        "git_url": format!("{}/{full}.git", urls.web),
        "issue_comment_url": format!("{r}/issues/comments{{/number}}"),
        "issue_events_url": format!("{r}/issues/events{{/number}}"),
        "issues_url": format!("{r}/issues{{/number}}"),
        "keys_url": format!("{r}/keys{{/key_id}}"),
        "labels_url": format!("{r}/labels{{/name}}"),
        "languages_url": format!("{r}/languages"),
        "merges_url": format!("{r}/merges"),
        "milestones_url": format!("{r}/milestones{{/number}}"),
        "notifications_url": format!("{r}/notifications{{?since,all,participating}}"),
        "pulls_url": format!("{r}/pulls{{/number}}"),
        "releases_url": format!("{r}/releases{{/id}}"),
        "ssh_url": format!("git@sim.invalid:{full}.git"),
        "stargazers_url": format!("{r}/stargazers"),
        "statuses_url": format!("{r}/statuses/{{sha}}"),
        "subscribers_url": format!("{r}/subscribers"),
        "subscription_url": format!("{r}/subscription"),
        "tags_url": format!("{r}/tags"),
        "teams_url": format!("{r}/teams"),
        "trees_url": format!("{r}/git/trees{{/sha}}"),
        "clone_url": format!("{}/{full}.git", urls.web),
        "mirror_url": null,
        "hooks_url": format!("{r}/hooks"),
        "svn_url": format!("{}/{full}", urls.web),
        "homepage": null,
        "language": null,
        "forks_count": 0,
        "forks": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "watchers": 0,
        "size": 0,
        "default_branch": repo.default_branch,
        "open_issues_count": open,
        "open_issues": open,
        "is_template": false,
        "topics": [],
        "has_issues": true,
        "has_projects": false,
        "has_wiki": false,
        "has_pages": false,
        "has_downloads": true,
        "has_discussions": false,
        "archived": false,
        "disabled": false,
        "visibility": if repo.private { "private" } else { "public" },
        "pushed_at": pushed_at,
        "created_at": created_at,
        "updated_at": timestamp(repo.updated_at),
        "allow_forking": true,
        "web_commit_signoff_required": false,
        "license": null,
        "custom_properties": {},
        "network_count": 0,
        "subscribers_count": 0,
    });
    if times == RepoTimes::PushEvent {
        // Keys only the push webhook's repository has.
        v["stargazers"] = json!(0);
        v["master_branch"] = json!(repo.default_branch);
    }
    v
}

/// GitHub's `author_association` of `login` on `repo`.
pub fn author_association(world: &World, repo: &Repo, login: &str) -> &'static str {
    if repo.owner == login {
        "OWNER"
    } else if world.permission(repo, login) >= Permission::Write
        && repo.collaborators.contains_key(login)
    {
        "COLLABORATOR"
    } else {
        "NONE"
    }
}

pub fn label(urls: &Urls, repo: &Repo, label: &Label) -> Value {
    json!({
        "id": label.id,
        "node_id": node_id("Label", label.id),
        "url": format!("{}/repos/{}/labels/{}", urls.api, repo.full_name(), label.name),
        "name": label.name,
        "description": label.description,
        "color": label.color,
        "default": false,
    })
}

fn issue_labels(urls: &Urls, repo: &Repo, issue: &Issue) -> Value {
    Value::Array(
        issue
            .labels
            .iter()
            .filter_map(|name| repo.labels.get(name))
            .map(|l| label(urls, repo, l))
            .collect(),
    )
}

fn reactions(urls: &Urls, repo: &Repo, url: String, issue_number: Option<u64>) -> Value {
    let count = |content: &str| {
        repo.reactions
            .iter()
            .filter(|r| Some(r.issue_number) == issue_number && r.content == content)
            .count()
    };
    let _ = urls;
    let kinds = [
        "+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket",
    ];
    let mut rollup = serde_json::Map::new();
    rollup.insert("url".into(), json!(url));
    let mut total = 0;
    for k in kinds {
        let n = count(k);
        total += n;
        rollup.insert(k.into(), json!(n));
    }
    rollup.insert("total_count".into(), json!(total));
    Value::Object(rollup)
}

fn state_str(state: &IssueState) -> &'static str {
    match state {
        IssueState::Open => "open",
        IssueState::Closed => "closed",
    }
}

/// `issue` (for a pull request too, with its `pull_request` key, as GitHub does).
pub fn issue(urls: &Urls, world: &World, repo: &Repo, issue: &Issue) -> Value {
    let r = format!("{}/repos/{}", urls.api, repo.full_name());
    let n = issue.number;
    let comments = repo
        .comments
        .values()
        .filter(|c| c.issue_number == n)
        .count();
    let html_kind = if issue.pull.is_some() {
        "pull"
    } else {
        "issues"
    };
    let mut v = json!({
        "id": issue.id,
        "node_id": node_id("Issue", issue.id),
        "url": format!("{r}/issues/{n}"),
        "repository_url": r,
        "labels_url": format!("{r}/issues/{n}/labels{{/name}}"),
        "comments_url": format!("{r}/issues/{n}/comments"),
        "events_url": format!("{r}/issues/{n}/events"),
        "timeline_url": format!("{r}/issues/{n}/timeline"),
        "html_url": format!("{}/{}/{html_kind}/{n}", urls.web, repo.full_name()),
        "number": n,
        "state": state_str(&issue.state),
        "state_reason": issue.state_reason,
        "title": issue.title,
        "body": issue.body,
        "user": user_by_login(urls, world, &issue.user),
        "labels": issue_labels(urls, repo, issue),
        "assignee": null,
        "assignees": [],
        "milestone": null,
        "locked": false,
        "active_lock_reason": null,
        "comments": comments,
        "closed_at": opt_time(issue.closed_at),
        "created_at": timestamp(issue.created_at),
        "updated_at": timestamp(issue.updated_at),
        "author_association": author_association(world, repo, &issue.user),
        "reactions": reactions(urls, repo, format!("{r}/issues/{n}/reactions"), Some(n)),
        "performed_via_github_app": null,
        "draft": false,
    });
    if let Some(pull) = &issue.pull {
        v["draft"] = json!(pull.draft);
        v["pull_request"] = json!({
            "url": format!("{r}/pulls/{n}"),
            "html_url": format!("{}/{}/pull/{n}", urls.web, repo.full_name()),
            "diff_url": format!("{}/{}/pull/{n}.diff", urls.web, repo.full_name()),
            "patch_url": format!("{}/{}/pull/{n}.patch", urls.web, repo.full_name()),
            "merged_at": opt_time(pull.merged_at),
        });
    }
    v
}

/// `integration`: the App as GitHub shows it.
pub fn integration(urls: &Urls, world: &World, app: &App) -> Value {
    json!({
        "id": app.id,
        "slug": app.slug,
        "node_id": node_id("App", app.id),
        "client_id": format!("Iv1.sim{}", app.id),
        "owner": user_by_login(urls, world, &app.owner),
        "name": app.name,
        "description": "The missions GitHub App, as the simulator hosts it",
        "external_url": format!("{}/missions", urls.web),
        "html_url": format!("{}/apps/{}", urls.web, app.slug),
        "created_at": timestamp(app.created_at),
        "updated_at": timestamp(app.created_at),
        "permissions": app_permissions(),
        "events": APP_EVENTS,
        "installations_count": world.installations.len(),
    })
}

/// GitHub Actions' App id (`github-actions`, the same on every GitHub.com
/// repository): the owner of workflow jobs' check runs.
pub const ACTIONS_APP_ID: u64 = 15368;

/// `integration`: GitHub Actions as GitHub shows it on its check runs and
/// suites, in the same shape as [`integration`]. The permissions and events
/// are those GitHub shows, less the few newer permissions (`attestations`,
/// `models`, ...) that GitHub's webhook schema does not know yet.
pub fn actions_integration(urls: &Urls) -> Value {
    let owner = Account {
        id: 9919,
        login: "github".into(),
        kind: AccountKind::Organization,
    };
    json!({
        "id": ACTIONS_APP_ID,
        "slug": "github-actions",
        "node_id": node_id("App", ACTIONS_APP_ID),
        "client_id": "Iv1.05c79e9ad1f6bdfa",
        "owner": user(urls, &owner),
        "name": "GitHub Actions",
        "description": "Automate your workflow from idea to production",
        "external_url": "https://help.github.com/en/actions",
        "html_url": format!("{}/apps/github-actions", urls.web),
        "created_at": "2018-07-30T09:30:17Z",
        "updated_at": "2019-12-10T19:04:12Z",
        "permissions": {
            "actions": "write", "administration": "read", "checks": "write",
            "contents": "write", "deployments": "write", "discussions": "write",
            "issues": "write", "merge_queues": "write", "metadata": "read",
            "packages": "write", "pages": "write", "pull_requests": "write",
            "repository_hooks": "write", "repository_projects": "write",
            "security_events": "write", "statuses": "write",
            "vulnerability_alerts": "read",
        },
        "events": [
            "branch_protection_rule", "check_run", "check_suite", "create", "delete",
            "deployment", "deployment_status", "discussion", "discussion_comment", "fork",
            "gollum", "issues", "issue_comment", "label", "merge_group", "milestone",
            "page_build", "public", "pull_request", "pull_request_review",
            "pull_request_review_comment", "push", "registry_package", "release",
            "repository", "repository_dispatch", "status", "watch", "workflow_dispatch",
            "workflow_run",
        ],
    })
}

/// The `app` of a check run or suite owned by `app`.
pub fn check_app(urls: &Urls, world: &World, app: CheckApp) -> Value {
    match app {
        CheckApp::Installed => world
            .app
            .as_ref()
            .map(|a| integration(urls, world, a))
            .unwrap_or(Value::Null),
        CheckApp::Actions => actions_integration(urls),
    }
}

/// The id of the App that owns a check run (what `app_id` filters by).
pub fn check_app_id(world: &World, app: CheckApp) -> Option<u64> {
    match app {
        CheckApp::Installed => world.app.as_ref().map(|a| a.id),
        CheckApp::Actions => Some(ACTIONS_APP_ID),
    }
}

/// What the simulated App may do: everything it needs, as a real App would be granted.
/// The permissions the App asks for in its manifest (`crate::manifest`): the
/// simulated App is registered as `missions app-manifest` would register it.
pub fn app_permissions() -> Value {
    let map: serde_json::Map<String, Value> = crate::manifest::PERMISSIONS
        .iter()
        .map(|(name, level, _why)| ((*name).to_owned(), json!(level)))
        .collect();
    Value::Object(map)
}

/// The events the simulated App is subscribed to (it receives all it sends).
pub const APP_EVENTS: &[&str] = &[
    "check_run",
    "check_suite",
    "issue_comment",
    "issues",
    "pull_request",
    "pull_request_review",
    "push",
    "workflow_job",
    "workflow_run",
];

pub fn installation(urls: &Urls, world: &World, app: &App, inst: &Installation) -> Value {
    let account = world.account(&inst.account);
    json!({
        "id": inst.id,
        "account": user(urls, &account),
        "repository_selection": "selected",
        "access_tokens_url": format!("{}/app/installations/{}/access_tokens", urls.api, inst.id),
        "repositories_url": format!("{}/installation/repositories", urls.api),
        "html_url": format!("{}/settings/installations/{}", urls.web, inst.id),
        "app_id": app.id,
        "client_id": format!("Iv1.sim{}", app.id),
        "target_id": account.id,
        "target_type": account.kind.as_str(),
        "permissions": app_permissions(),
        "events": APP_EVENTS,
        "created_at": timestamp(inst.created_at),
        "updated_at": timestamp(inst.created_at),
        "single_file_name": null,
        "has_multiple_single_files": false,
        "single_file_paths": [],
        "app_slug": app.slug,
        "suspended_by": null,
        "suspended_at": null,
        "contact_email": null,
    })
}

/// `issue-comment`.
pub fn comment(urls: &Urls, world: &World, repo: &Repo, comment: &Comment) -> Value {
    let r = format!("{}/repos/{}", urls.api, repo.full_name());
    let via_app = match (&world.app, comment.via_app) {
        (Some(app), true) => integration(urls, world, app),
        _ => Value::Null,
    };
    json!({
        "id": comment.id,
        "node_id": node_id("IssueComment", comment.id),
        "url": format!("{r}/issues/comments/{}", comment.id),
        "html_url": format!("{}/{}/issues/{}#issuecomment-{}", urls.web, repo.full_name(), comment.issue_number, comment.id),
        "issue_url": format!("{r}/issues/{}", comment.issue_number),
        "body": comment.body,
        "user": user_by_login(urls, world, &comment.user),
        "created_at": timestamp(comment.created_at),
        "updated_at": timestamp(comment.updated_at),
        "author_association": author_association(world, repo, &comment.user),
        "performed_via_github_app": via_app,
        "reactions": reactions(urls, repo, format!("{r}/issues/comments/{}/reactions", comment.id), None),
    })
}

pub fn reaction(urls: &Urls, world: &World, reaction: &Reaction) -> Value {
    json!({
        "id": reaction.id,
        "node_id": node_id("Reaction", reaction.id),
        "user": user_by_login(urls, world, &reaction.user),
        "content": reaction.content,
        "created_at": timestamp(reaction.created_at),
    })
}

/// Figures of a pull request that come from git, computed by the caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct PullStats {
    pub commits: u64,
    pub additions: u64,
    pub deletions: u64,
    pub changed_files: u64,
    /// None while GitHub has not computed it yet; Some(false) on conflicts.
    pub mergeable: Option<bool>,
}

fn branch_side(urls: &Urls, world: &World, repo: &Repo, branch: &str, sha: &str) -> Value {
    json!({
        "label": format!("{}:{branch}", repo.owner),
        "ref": branch,
        "sha": sha,
        "user": user_by_login(urls, world, &repo.owner),
        "repo": repository(urls, world, repo, RepoTimes::Iso),
    })
}

/// `pull-request` (the webhooks' `pull_request` has the same keys).
pub fn pull(urls: &Urls, world: &World, repo: &Repo, issue: &Issue, stats: PullStats) -> Value {
    let pull = issue
        .pull
        .as_ref()
        .expect("pull() is called for pull requests");
    let full = repo.full_name();
    let r = format!("{}/repos/{full}", urls.api);
    let n = issue.number;
    let html = format!("{}/{full}/pull/{n}", urls.web);
    let state = if pull.merged_at.is_some() || issue.state == IssueState::Closed {
        "closed"
    } else {
        "open"
    };
    let comments = repo
        .comments
        .values()
        .filter(|c| c.issue_number == n)
        .count();
    let mergeable_state = match (pull.merged_at, stats.mergeable) {
        (Some(_), _) => "unknown",
        (None, Some(true)) => "clean",
        (None, Some(false)) => "dirty",
        (None, None) => "unknown",
    };
    json!({
        "url": format!("{r}/pulls/{n}"),
        "id": pull.id,
        "node_id": node_id("PullRequest", pull.id),
        "html_url": html,
        "diff_url": format!("{html}.diff"),
        "patch_url": format!("{html}.patch"),
        "issue_url": format!("{r}/issues/{n}"),
        "commits_url": format!("{r}/pulls/{n}/commits"),
        "review_comments_url": format!("{r}/pulls/{n}/comments"),
        "review_comment_url": format!("{r}/pulls/comments{{/number}}"),
        "comments_url": format!("{r}/issues/{n}/comments"),
        "statuses_url": format!("{r}/statuses/{}", pull.head_sha),
        "number": n,
        "state": state,
        "locked": false,
        "title": issue.title,
        "user": user_by_login(urls, world, &issue.user),
        "body": issue.body,
        "labels": issue_labels(urls, repo, issue),
        "milestone": null,
        "active_lock_reason": null,
        "created_at": timestamp(issue.created_at),
        "updated_at": timestamp(issue.updated_at),
        "closed_at": opt_time(issue.closed_at),
        "merged_at": opt_time(pull.merged_at),
        "merge_commit_sha": pull.merge_commit_sha,
        "assignee": null,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": branch_side(urls, world, repo, &pull.head_ref, &pull.head_sha),
        "base": branch_side(urls, world, repo, &pull.base_ref, &pull.base_sha),
        "_links": {
            "self": {"href": format!("{r}/pulls/{n}")},
            "html": {"href": html},
            "issue": {"href": format!("{r}/issues/{n}")},
            "comments": {"href": format!("{r}/issues/{n}/comments")},
            "review_comments": {"href": format!("{r}/pulls/{n}/comments")},
            "review_comment": {"href": format!("{r}/pulls/comments{{/number}}")},
            "commits": {"href": format!("{r}/pulls/{n}/commits")},
            "statuses": {"href": format!("{r}/statuses/{}", pull.head_sha)},
        },
        "author_association": author_association(world, repo, &issue.user),
        "auto_merge": null,
        "draft": pull.draft,
        "merged": pull.merged_at.is_some(),
        "mergeable": stats.mergeable,
        "rebaseable": stats.mergeable,
        "mergeable_state": mergeable_state,
        "merged_by": pull.merged_by.as_deref().map(|l| user_by_login(urls, world, l)),
        "comments": comments,
        "review_comments": 0,
        "maintainer_can_modify": false,
        "commits": stats.commits,
        "additions": stats.additions,
        "deletions": stats.deletions,
        "changed_files": stats.changed_files,
    })
}

/// Trims a [`pull`] to `pull-request-simple` (lists, and the review webhook's
/// `pull_request`): no merge state and no git figures.
pub fn simple_pull(pr: &mut Value) {
    const DETAIL_KEYS: [&str; 12] = [
        "merged",
        "mergeable",
        "rebaseable",
        "mergeable_state",
        "merged_by",
        "comments",
        "review_comments",
        "maintainer_can_modify",
        "commits",
        "additions",
        "deletions",
        "changed_files",
    ];
    if let Value::Object(map) = pr {
        for key in DETAIL_KEYS {
            map.remove(key);
        }
    }
}

/// `pull-request-minimal`, as check runs and workflow runs list their PRs.
pub fn pull_minimal(urls: &Urls, repo: &Repo, issue: &Issue) -> Value {
    let pull = issue.pull.as_ref().expect("a pull request");
    let r = format!("{}/repos/{}", urls.api, repo.full_name());
    let side = |branch: &str, sha: &str| {
        json!({
            "ref": branch,
            "sha": sha,
            "repo": {"id": repo.id, "url": r, "name": repo.name},
        })
    };
    json!({
        "id": pull.id,
        "number": issue.number,
        "url": format!("{r}/pulls/{}", issue.number),
        "head": side(&pull.head_ref, &pull.head_sha),
        "base": side(&pull.base_ref, &pull.base_sha),
    })
}

/// Open PRs whose head is `sha` (GitHub lists these on check runs and workflow runs).
pub fn pulls_with_head(urls: &Urls, repo: &Repo, sha: &str) -> Value {
    Value::Array(
        repo.issues
            .values()
            .filter(|i| {
                i.state == IssueState::Open && i.pull.as_ref().is_some_and(|p| p.head_sha == sha)
            })
            .map(|i| pull_minimal(urls, repo, i))
            .collect(),
    )
}

pub fn review(urls: &Urls, world: &World, repo: &Repo, number: u64, review: &Review) -> Value {
    let full = repo.full_name();
    let html = format!(
        "{}/{full}/pull/{number}#pullrequestreview-{}",
        urls.web, review.id
    );
    let pr_url = format!("{}/repos/{full}/pulls/{number}", urls.api);
    json!({
        "id": review.id,
        "node_id": node_id("PullRequestReview", review.id),
        "user": user_by_login(urls, world, &review.user),
        "body": review.body,
        "state": review.state,
        "html_url": html,
        "pull_request_url": pr_url,
        "_links": {"html": {"href": html}, "pull_request": {"href": pr_url}},
        "submitted_at": timestamp(review.submitted_at),
        "commit_id": review.commit_id,
        "author_association": author_association(world, repo, &review.user),
    })
}

/// `check-run`.
pub fn check_run(urls: &Urls, world: &World, repo: &Repo, run: &CheckRun) -> Value {
    let full = repo.full_name();
    let url = format!("{}/repos/{full}/check-runs/{}", urls.api, run.id);
    let app = check_app(urls, world, run.app);
    let runs_page = format!("{}/{full}/runs/{}", urls.web, run.id);
    // An Actions job's check run links to the job's page both ways.
    let html_url = match (run.app, &run.details_url) {
        (CheckApp::Actions, Some(details)) => details.clone(),
        _ => runs_page.clone(),
    };
    json!({
        "id": run.id,
        "head_sha": run.head_sha,
        "node_id": node_id("CheckRun", run.id),
        "external_id": run.external_id.clone().unwrap_or_default(),
        "url": url,
        "html_url": html_url,
        "details_url": run.details_url.clone().unwrap_or(runs_page),
        "status": run.status,
        "conclusion": run.conclusion,
        "started_at": timestamp(run.started_at),
        "completed_at": opt_time(run.completed_at),
        "output": {
            "title": run.output.title,
            "summary": run.output.summary,
            "text": run.output.text,
            "annotations_count": 0,
            "annotations_url": format!("{url}/annotations"),
        },
        "name": run.name,
        "check_suite": {"id": run.check_suite_id},
        "app": app,
        "pull_requests": pulls_with_head(urls, repo, &run.head_sha),
    })
}

/// The webhooks' `check_suite` of a push-triggered workflow run: GitHub
/// Actions' suite for that run, summing up its jobs' check runs (completed
/// when all are; then `failure` if one failed, else `cancelled`, `timed_out`
/// or `success`, in that order). `head_commit` as in a workflow run.
pub fn actions_check_suite(
    urls: &Urls,
    repo: &Repo,
    run: &PushRun,
    head_commit: Option<&SimpleCommit>,
) -> Value {
    let full = repo.full_name();
    let url = format!(
        "{}/repos/{full}/check-suites/{}",
        urls.api, run.check_suite_id
    );
    let checks: Vec<&CheckRun> = run
        .jobs
        .iter()
        .filter_map(|id| repo.check_runs.get(id))
        .collect();
    let completed = checks.iter().all(|c| c.status == "completed");
    let status = if completed {
        "completed"
    } else if checks.iter().all(|c| c.status == "queued") {
        "queued"
    } else {
        "in_progress"
    };
    let conclusion = completed.then(|| {
        ["failure", "cancelled", "timed_out"]
            .into_iter()
            .find(|c| checks.iter().any(|r| r.conclusion.as_deref() == Some(*c)))
            .unwrap_or("success")
    });
    let updated = checks
        .iter()
        .filter_map(|c| c.completed_at)
        .max()
        .unwrap_or(run.created_at);
    json!({
        "id": run.check_suite_id,
        "node_id": node_id("CheckSuite", run.check_suite_id),
        "head_branch": run.head_branch,
        "head_sha": run.head_sha,
        "status": status,
        "conclusion": conclusion,
        "url": url,
        "before": run.before,
        "after": run.head_sha,
        "pull_requests": pulls_with_head(urls, repo, &run.head_sha),
        "app": actions_integration(urls),
        "created_at": timestamp(run.created_at),
        "updated_at": timestamp(updated),
        "rerequestable": true,
        "runs_rerequestable": true,
        "latest_check_runs_count": checks.len(),
        "check_runs_url": format!("{url}/check-runs"),
        "head_commit": head_commit.map(simple_commit),
    })
}

/// A commit status as the REST API shows it.
pub fn commit_status(urls: &Urls, world: &World, full_name: &str, s: &CommitStatus) -> Value {
    json!({
        "id": s.id,
        "node_id": node_id("StatusContext", s.id),
        "url": format!("{}/repos/{full_name}/statuses/{}", urls.api, s.sha),
        "avatar_url": Value::Null,
        "state": s.state,
        "description": s.description,
        "target_url": s.target_url,
        "context": s.context,
        "created_at": timestamp(s.created_at),
        "updated_at": timestamp(s.created_at),
        "creator": user_by_login(urls, world, &s.creator),
    })
}

/// The webhooks' `workflow` object.
pub fn workflow(urls: &Urls, repo: &Repo, wf: &Workflow) -> Value {
    let full = repo.full_name();
    json!({
        "id": wf.id,
        "node_id": node_id("Workflow", wf.id),
        "name": wf.name,
        "path": wf.path,
        "state": "active",
        "created_at": timestamp(wf.created_at),
        "updated_at": timestamp(wf.created_at),
        "url": format!("{}/repos/{full}/actions/workflows/{}", urls.api, wf.id),
        "html_url": format!("{}/{full}/blob/{}/{}", urls.web, repo.default_branch, wf.path),
        "badge_url": format!("{}/{full}/workflows/{}/badge.svg", urls.web, wf.name),
    })
}

/// The head commit of a workflow run (`nullable-simple-commit`).
#[derive(Debug, Clone)]
pub struct SimpleCommit {
    pub id: String,
    pub tree_id: String,
    pub message: String,
    pub timestamp: OffsetDateTime,
    pub author_name: String,
    pub author_email: String,
    pub committer_name: String,
    pub committer_email: String,
}

pub fn simple_commit(c: &SimpleCommit) -> Value {
    json!({
        "id": c.id,
        "tree_id": c.tree_id,
        "message": c.message,
        "timestamp": timestamp(c.timestamp),
        "author": {"name": c.author_name, "email": c.author_email},
        "committer": {"name": c.committer_name, "email": c.committer_email},
    })
}

/// `workflow-run`.
pub fn workflow_run(
    urls: &Urls,
    world: &World,
    repo: &Repo,
    run: &WorkflowRun,
    head_commit: Option<&SimpleCommit>,
) -> Value {
    let full = repo.full_name();
    let r = format!("{}/repos/{full}", urls.api);
    let url = format!("{r}/actions/runs/{}", run.id);
    let wf = repo.workflows.iter().find(|w| w.id == run.workflow_id);
    let name = wf.map(|w| w.name.clone()).unwrap_or_default();
    let path = wf.map(|w| w.path.clone()).unwrap_or_default();
    let actor = user_by_login(urls, world, &run.actor);
    json!({
        "id": run.id,
        "name": name,
        "node_id": node_id("WorkflowRun", run.id),
        "check_suite_id": run.check_suite_id,
        "check_suite_node_id": node_id("CheckSuite", run.check_suite_id),
        "head_branch": run.head_branch,
        "head_sha": run.head_sha,
        "path": path,
        "run_number": run.run_number,
        "run_attempt": 1,
        "referenced_workflows": [],
        "event": "workflow_dispatch",
        "status": run.status.as_str(),
        "conclusion": run.conclusion,
        "workflow_id": run.workflow_id,
        "url": url,
        "html_url": format!("{}/{full}/actions/runs/{}", urls.web, run.id),
        "pull_requests": pulls_with_head(urls, repo, &run.head_sha),
        "created_at": timestamp(run.created_at),
        "updated_at": timestamp(run.updated_at),
        "actor": actor,
        "triggering_actor": actor,
        "run_started_at": timestamp(run.run_started_at.unwrap_or(run.created_at)),
        "jobs_url": format!("{url}/jobs"),
        "logs_url": format!("{url}/logs"),
        "check_suite_url": format!("{r}/check-suites/{}", run.check_suite_id),
        "artifacts_url": format!("{url}/artifacts"),
        "cancel_url": format!("{url}/cancel"),
        "rerun_url": format!("{url}/rerun"),
        "previous_attempt_url": null,
        "workflow_url": format!("{r}/actions/workflows/{}", run.workflow_id),
        "head_commit": head_commit.map(simple_commit),
        "repository": repository(urls, world, repo, RepoTimes::Iso),
        "head_repository": repository(urls, world, repo, RepoTimes::Iso),
        "head_repository_id": repo.id,
        "display_title": run.run_name.clone().unwrap_or_else(|| name.clone()),
    })
}

/// `job` (the webhooks' `workflow_job`).
pub fn job(urls: &Urls, repo: &Repo, run: &WorkflowRun, job: &Job) -> Value {
    let full = repo.full_name();
    let r = format!("{}/repos/{full}", urls.api);
    let wf_name = repo
        .workflows
        .iter()
        .find(|w| w.id == run.workflow_id)
        .map(|w| w.name.clone());
    let started = job.status != RunStatus::Queued;
    let steps: Vec<Value> = job
        .steps
        .iter()
        .map(|s| {
            let status = match (s.started_at, s.completed_at) {
                (_, Some(_)) => "completed",
                (Some(_), None) => "in_progress",
                _ => "queued",
            };
            json!({
                "name": s.name,
                "status": status,
                "conclusion": s.conclusion,
                "number": s.number,
                "started_at": opt_time(s.started_at),
                "completed_at": opt_time(s.completed_at),
            })
        })
        .collect();
    json!({
        "id": job.id,
        "run_id": run.id,
        "run_url": format!("{r}/actions/runs/{}", run.id),
        "run_attempt": 1,
        "node_id": node_id("CheckRun", job.id),
        "head_sha": run.head_sha,
        "head_branch": run.head_branch,
        "url": format!("{r}/actions/jobs/{}", job.id),
        "html_url": format!("{}/{full}/actions/runs/{}/job/{}", urls.web, run.id, job.id),
        "status": job.status.as_str(),
        "conclusion": job.conclusion,
        "created_at": timestamp(job.created_at),
        "started_at": timestamp(job.started_at.unwrap_or(job.created_at)),
        "completed_at": opt_time(job.completed_at),
        "name": job.name,
        "steps": steps,
        "check_run_url": format!("{r}/check-runs/{}", job.id),
        "labels": ["ubuntu-latest"],
        "runner_id": if started { json!(1) } else { Value::Null },
        "runner_name": if started { json!("missions-sim-runner") } else { Value::Null },
        "runner_group_id": if started { json!(1) } else { Value::Null },
        "runner_group_name": if started { json!("Default") } else { Value::Null },
        "workflow_name": wf_name,
    })
}

/// GitHub's error body (`basic-error`).
pub fn error_body(status: u16, message: &str) -> Value {
    json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": status.to_string(),
    })
}
