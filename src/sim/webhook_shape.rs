//! Webhook payloads carry the same objects as REST answers but with fewer keys
//! (GitHub's webhook schemas forbid the extra ones), and a few objects differ:
//! a check run's `check_suite` is a whole suite, a workflow run's repositories
//! are "lite". This trims the shared renderings to what webhooks carry.

use serde_json::{Map, Value, json};

const USER: &[&str] = &[
    "avatar_url",
    "email",
    "events_url",
    "followers_url",
    "following_url",
    "gists_url",
    "gravatar_id",
    "html_url",
    "id",
    "login",
    "name",
    "node_id",
    "organizations_url",
    "received_events_url",
    "repos_url",
    "site_admin",
    "starred_url",
    "subscriptions_url",
    "type",
    "url",
];

const REPOSITORY: &[&str] = &[
    "allow_auto_merge",
    "allow_forking",
    "allow_merge_commit",
    "allow_rebase_merge",
    "allow_squash_merge",
    "allow_update_branch",
    "archive_url",
    "archived",
    "assignees_url",
    "blobs_url",
    "branches_url",
    "clone_url",
    "collaborators_url",
    "comments_url",
    "commits_url",
    "compare_url",
    "contents_url",
    "contributors_url",
    "created_at",
    "custom_properties",
    "default_branch",
    "delete_branch_on_merge",
    "deployments_url",
    "description",
    "disabled",
    "downloads_url",
    "events_url",
    "fork",
    "forks",
    "forks_count",
    "forks_url",
    "full_name",
    "git_commits_url",
    "git_refs_url",
    "git_tags_url",
    "git_url",
    "has_discussions",
    "has_downloads",
    "has_issues",
    "has_pages",
    "has_projects",
    "has_wiki",
    "homepage",
    "hooks_url",
    "html_url",
    "id",
    "is_template",
    "issue_comment_url",
    "issue_events_url",
    "issues_url",
    "keys_url",
    "labels_url",
    "language",
    "languages_url",
    "license",
    "master_branch",
    "merges_url",
    "milestones_url",
    "mirror_url",
    "name",
    "node_id",
    "notifications_url",
    "open_issues",
    "open_issues_count",
    "owner",
    "private",
    "pulls_url",
    "pushed_at",
    "releases_url",
    "size",
    "ssh_url",
    "stargazers",
    "stargazers_count",
    "stargazers_url",
    "statuses_url",
    "subscribers_url",
    "subscription_url",
    "svn_url",
    "tags_url",
    "teams_url",
    "topics",
    "trees_url",
    "updated_at",
    "url",
    "visibility",
    "watchers",
    "watchers_count",
    "web_commit_signoff_required",
];

const REPOSITORY_LITE: &[&str] = &[
    "archive_url",
    "assignees_url",
    "blobs_url",
    "branches_url",
    "collaborators_url",
    "comments_url",
    "commits_url",
    "compare_url",
    "contents_url",
    "contributors_url",
    "deployments_url",
    "description",
    "downloads_url",
    "events_url",
    "fork",
    "forks_url",
    "full_name",
    "git_commits_url",
    "git_refs_url",
    "git_tags_url",
    "hooks_url",
    "html_url",
    "id",
    "issue_comment_url",
    "issue_events_url",
    "issues_url",
    "keys_url",
    "labels_url",
    "languages_url",
    "merges_url",
    "milestones_url",
    "name",
    "node_id",
    "notifications_url",
    "owner",
    "private",
    "pulls_url",
    "releases_url",
    "stargazers_url",
    "statuses_url",
    "subscribers_url",
    "subscription_url",
    "tags_url",
    "teams_url",
    "trees_url",
    "url",
];

const APP: &[&str] = &[
    "created_at",
    "description",
    "events",
    "external_url",
    "html_url",
    "id",
    "name",
    "node_id",
    "owner",
    "permissions",
    "slug",
    "updated_at",
];

const INSTALLATION: &[&str] = &[
    "access_tokens_url",
    "account",
    "app_id",
    "app_slug",
    "created_at",
    "events",
    "has_multiple_single_files",
    "html_url",
    "id",
    "permissions",
    "repositories_url",
    "repository_selection",
    "single_file_name",
    "single_file_paths",
    "suspended_at",
    "suspended_by",
    "target_id",
    "target_type",
    "updated_at",
];

fn retain(value: &mut Value, keys: &[&str]) {
    if let Value::Object(map) = value {
        map.retain(|k, _| keys.contains(&k.as_str()));
    }
}

fn field<'a>(value: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    value.as_object_mut()?.get_mut(key).filter(|v| !v.is_null())
}

fn user(value: Option<&mut Value>) {
    if let Some(v) = value {
        retain(v, USER);
    }
}

fn repository(value: &mut Value, keys: &[&str]) {
    retain(value, keys);
    user(field(value, "owner"));
}

fn app(value: Option<&mut Value>) {
    if let Some(v) = value {
        retain(v, APP);
        user(field(v, "owner"));
    }
}

fn labels(value: Option<&mut Value>) {
    if let Some(Value::Array(items)) = value {
        for label in items {
            retain(
                label,
                &[
                    "color",
                    "default",
                    "description",
                    "id",
                    "name",
                    "node_id",
                    "url",
                ],
            );
        }
    }
}

fn issue(value: &mut Value) {
    if let Value::Object(map) = value {
        map.remove("type");
    }
    user(field(value, "user"));
    user(field(value, "assignee"));
    labels(field(value, "labels"));
    app(field(value, "performed_via_github_app"));
}

fn pull_request(value: &mut Value, simple: bool) {
    if simple {
        super::render::simple_pull(value);
    }
    user(field(value, "user"));
    user(field(value, "merged_by"));
    labels(field(value, "labels"));
    for side in ["head", "base"] {
        if let Some(s) = field(value, side) {
            user(field(s, "user"));
            if let Some(repo) = field(s, "repo") {
                repository(repo, REPOSITORY);
            }
        }
    }
}

/// A check run's suite, as the `check_run` webhook carries it.
fn check_suite(check_run: &mut Value) {
    let head_sha = check_run["head_sha"].clone();
    let app = check_run["app"].clone();
    let pulls = check_run["pull_requests"].clone();
    // The branch the suite's commit was pushed to: for the App's check runs,
    // the head of the pull request they sit on.
    let head_branch = pulls[0]["head"]["ref"].clone();
    let url = check_run["url"].as_str().unwrap_or("").to_owned();
    let created = check_run["started_at"].clone();
    let updated = check_run["completed_at"].clone();
    let completed = check_run["status"] == "completed";
    if let Some(suite) = field(check_run, "check_suite")
        && suite.get("head_sha").is_some()
    {
        // Already whole: GitHub Actions' suite, rendered from its run; a
        // check run's suite has fewer keys than the `check_suite` event's.
        retain(
            suite,
            &[
                "after",
                "app",
                "before",
                "conclusion",
                "created_at",
                "head_branch",
                "head_sha",
                "id",
                "node_id",
                "pull_requests",
                "status",
                "updated_at",
                "url",
            ],
        );
        app_in(suite);
        return;
    }
    if let Some(suite) = field(check_run, "check_suite") {
        let id = suite["id"].clone();
        let base = url
            .rsplit_once("/check-runs/")
            .map(|(b, _)| b)
            .unwrap_or("");
        *suite = json!({
            "id": id,
            "head_branch": head_branch,
            "head_sha": head_sha,
            "status": if completed { "completed" } else { "in_progress" },
            "conclusion": if completed { check_run_conclusion(&updated) } else { Value::Null },
            "url": format!("{base}/check-suites/{id}"),
            "before": null,
            "after": head_sha,
            "pull_requests": pulls,
            "app": app,
            "created_at": created,
            "updated_at": if updated.is_null() { created.clone() } else { updated },
        });
        app_in(suite);
    }
}

fn check_run_conclusion(_completed_at: &Value) -> Value {
    // The suite of the App's own runs concludes as its last run did; the
    // simulator does not aggregate suites, so it reports `neutral`.
    Value::String("neutral".into())
}

fn app_in(value: &mut Value) {
    app(field(value, "app"));
}

fn commit_person(value: Option<&mut Value>) {
    if let Some(v) = value {
        retain(v, &["date", "email", "name", "username"]);
    }
}

/// Trims `payload` (of webhook `event`) to the keys GitHub's webhook schemas allow.
pub fn shape(event: &str, payload: &mut Value) {
    let Value::Object(map) = payload else { return };
    shape_object(event, map);
}

fn shape_object(event: &str, map: &mut Map<String, Value>) {
    if let Some(repo) = map.get_mut("repository") {
        repository(repo, REPOSITORY);
    }
    user(map.get_mut("sender"));
    match event {
        "issues" => {
            if let Some(v) = map.get_mut("issue") {
                issue(v);
            }
            if let Some(v) = map.get_mut("label") {
                retain(
                    v,
                    &[
                        "color",
                        "default",
                        "description",
                        "id",
                        "name",
                        "node_id",
                        "url",
                    ],
                );
            }
        }
        "issue_comment" => {
            if let Some(v) = map.get_mut("issue") {
                issue(v);
            }
            if let Some(c) = map.get_mut("comment") {
                user(field(c, "user"));
                app(field(c, "performed_via_github_app"));
            }
        }
        "pull_request" => {
            if let Some(v) = map.get_mut("pull_request") {
                pull_request(v, false);
            }
            if let Some(v) = map.get_mut("label") {
                retain(
                    v,
                    &[
                        "color",
                        "default",
                        "description",
                        "id",
                        "name",
                        "node_id",
                        "url",
                    ],
                );
            }
        }
        "pull_request_review" => {
            if let Some(v) = map.get_mut("pull_request") {
                pull_request(v, true);
            }
            if let Some(r) = map.get_mut("review") {
                user(field(r, "user"));
                // REST says APPROVED; the webhook says approved.
                if let Some(Value::String(state)) = field(r, "state") {
                    *state = state.to_lowercase();
                }
            }
        }
        "check_run" => {
            if let Some(c) = map.get_mut("check_run") {
                app_in(c);
                check_suite(c);
            }
        }
        "check_suite" => {
            if let Some(suite) = map.get_mut("check_suite") {
                app_in(suite);
            }
        }
        "workflow_run" => {
            if let Some(run) = map.get_mut("workflow_run") {
                if let Value::Object(m) = run {
                    m.remove("head_repository_id");
                }
                for key in ["repository", "head_repository"] {
                    if let Some(repo) = field(run, key) {
                        repository(repo, REPOSITORY_LITE);
                    }
                }
                user(field(run, "actor"));
                user(field(run, "triggering_actor"));
            }
        }
        "push" => {
            if let Some(Value::Array(commits)) = map.get_mut("commits") {
                for c in commits {
                    commit_person(field(c, "author"));
                    commit_person(field(c, "committer"));
                }
            }
            if let Some(c) = map.get_mut("head_commit").filter(|v| !v.is_null()) {
                commit_person(field(c, "author"));
                commit_person(field(c, "committer"));
            }
        }
        "installation" => {
            if let Some(i) = map.get_mut("installation") {
                retain(i, INSTALLATION);
                user(field(i, "account"));
            }
        }
        _ => {}
    }
}
