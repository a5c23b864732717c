//! Performs the state machine's effects on GitHub. Each effect is one or a few
//! REST calls; those that produce a fact the mission needs (a PR number, the ready
//! commit and its check runs) return it as an [`Event`] to apply.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::github::client::{GitHubError, InstallationClient, Method};
use crate::mission::control::Links;
use crate::mission::machine::{
    Effect, Event, ExternalCheck, Job, Mission, RequiredCheck, Target, ci_report_path,
    reports_branch,
};
use crate::mission::outputs::Validator;
use crate::store::missions::EffectScope;

/// Why an effect did not happen.
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    /// Worth another try later (GitHub unreachable, 5xx).
    #[error("{0}")]
    Transient(String),
    /// Worth another try, not before `retry_after`: GitHub asks for the wait,
    /// and trying earlier risks the App being banned.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: std::time::Duration,
    },
    /// GitHub refused it; trying again will not help.
    #[error("{0}")]
    Permanent(String),
}

impl From<GitHubError> for EffectError {
    fn from(e: GitHubError) -> Self {
        match &e {
            GitHubError::RateLimited { retry_after, .. } => EffectError::RateLimited {
                message: e.to_string(),
                retry_after: *retry_after,
            },
            GitHubError::Transport { .. } => EffectError::Transient(e.to_string()),
            GitHubError::Api { status, .. } if *status >= 500 => {
                EffectError::Transient(e.to_string())
            }
            _ => EffectError::Permanent(e.to_string()),
        }
    }
}

/// The workflow a mission job runs, and how jobs find their settings.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    /// File name under `.github/workflows/`.
    pub workflow_file: String,
    /// The REST API's base URL: links in comments point at its web pages.
    pub api_base: String,
    /// This App's id: its own comments are those GitHub says it made.
    pub app_id: u64,
    /// The server's `[model]` as JSON, when it is not the built-in default.
    pub server_model: Option<String>,
}

/// What must be escaped in a query value or a path segment: everything but the
/// unreserved characters (git allows `#`, `?`, `&` and `%` in branch names).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A query value.
pub fn query_value(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}

/// A ref or path inside a REST path: each `/`-separated segment escaped.
pub fn path_segments(value: &str) -> String {
    value
        .split('/')
        .map(|segment| utf8_percent_encode(segment, COMPONENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// A hidden marker naming the outbox row that posted a comment: lets a later
/// run tell whether the comment was already made.
pub fn effect_marker(outbox_id: i64) -> String {
    format!("<!-- missions:effect:{outbox_id} -->")
}

/// Whether `comment` (a REST issue comment) was posted by this App: by a bot
/// account through the App's installation (`performed_via_github_app`). A
/// marker in the text proves nothing, anyone can write it; being a bot neither,
/// another App's comment can carry it too.
pub fn is_own_comment(comment: &Value, app_id: u64) -> bool {
    comment["user"]["type"] == "Bot"
        && comment["performed_via_github_app"]["id"].as_u64() == Some(app_id)
}

/// One attempt at an outbox effect, and what is known of earlier ones:
/// whether GitHub may already have done it. Effects that create something
/// look for it first when so.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attempt {
    /// The effect's outbox id (its comment's hidden marker).
    pub effect_id: i64,
    /// An earlier attempt was made (it failed, or its outcome was lost).
    pub tried_before: bool,
    /// An earlier attempt began and the process died before recording how it
    /// ended: its calls may all have succeeded.
    pub interrupted: bool,
}

pub async fn perform(
    client: &InstallationClient,
    dispatcher: &Dispatcher,
    scope: &EffectScope,
    mission: Option<&Mission>,
    effect: &Effect,
    attempt: Attempt,
    now: i64,
) -> Result<Option<Event>, EffectError> {
    let repo = &scope.repo;
    match effect {
        Effect::UpdateSticky => {
            let mission = mission.ok_or_else(no_mission)?;
            update_sticky(client, dispatcher, mission, now).await
        }
        Effect::Comment { target, body } => {
            let number = resolve(scope, mission, *target)?;
            let marker = effect_marker(attempt.effect_id);
            if attempt.tried_before
                && comment_with(client, dispatcher.app_id, repo, number, &marker)
                    .await?
                    .is_some()
            {
                // An earlier attempt posted it and its answer was lost.
                return Ok(None);
            }
            let body = fit_body(client, dispatcher, scope, attempt.effect_id, body).await?;
            let body = format!("{body}\n\n{marker}");
            client
                .request_json(
                    Method::POST,
                    &format!("/repos/{repo}/issues/{number}/comments"),
                    Some(&json!({ "body": body })),
                )
                .await?;
            Ok(None)
        }
        Effect::CreateBranch { name, from } => {
            create_branch(client, repo, name, from).await?;
            Ok(None)
        }
        Effect::Dispatch { job } => {
            if attempt.interrupted {
                // The process died during the dispatch's one exchange, and GitHub
                // offers no way to look a dispatch up: a second one could run the
                // step twice. Count it as made; if it was not, the job is found
                // lost at the job timeout and its step runs again as a new try.
                tracing::warn!(
                    job = job.key,
                    "a dispatch was interrupted by a restart; not repeating it"
                );
                return Ok(None);
            }
            let run = dispatch(client, dispatcher, repo, scope.issue, mission, job).await?;
            // GitHub named the run (`return_run_details`): the job is matched
            // to it now, not by its name when its webhook comes.
            Ok(run.map(|(run_id, url)| Event::JobStarted {
                key: job.key.clone(),
                run_id,
                url,
            }))
        }
        Effect::OpenPlanPr {
            branch,
            title,
            body,
        } => {
            let base = mission.map(|m| m.base.clone()).ok_or_else(no_mission)?;
            let body = fit_body(client, dispatcher, scope, attempt.effect_id, body).await?;
            let number = open_pr(client, repo, branch, &base, title, &body).await?;
            Ok(Some(Event::PlanPrOpened { number }))
        }
        Effect::ClosePr { target } => {
            let number = resolve(scope, mission, *target)?;
            client
                .request_json(
                    Method::PATCH,
                    &format!("/repos/{repo}/pulls/{number}"),
                    Some(&json!({ "state": "closed" })),
                )
                .await?;
            Ok(None)
        }
        Effect::EnsureMilestonePr {
            index,
            branch,
            title,
            body,
        } => {
            let mission = mission.ok_or_else(no_mission)?;
            if mission.milestone_prs.contains_key(index) {
                return Ok(None);
            }
            let body = fit_body(client, dispatcher, scope, attempt.effect_id, body).await?;
            let number = open_pr(client, repo, branch, &mission.base, title, &body).await?;
            Ok(Some(Event::MilestonePrOpened {
                index: *index,
                number,
            }))
        }
        Effect::StartValidation {
            index,
            round,
            branch,
            message,
        } => {
            let mission = mission.ok_or_else(no_mission)?;
            // Read before the ready commit exists: its push starts the CI.
            let required = required_checks(client, repo, &mission.base).await?;
            let sha = ready_commit(client, repo, branch, message, attempt.tried_before).await?;
            let mut checks = BTreeMap::new();
            for validator in Validator::ALL {
                let id = open_check(client, repo, &sha, validator, attempt.tried_before).await?;
                checks.insert(validator, id);
            }
            Ok(Some(Event::ValidationStarted {
                index: *index,
                round: *round,
                sha,
                checks,
                required,
            }))
        }
        Effect::PollChecks { sha } => {
            let checks = external_checks(client, dispatcher.app_id, repo, sha).await?;
            Ok(Some(Event::ExternalChecks {
                sha: sha.clone(),
                checks,
            }))
        }
        Effect::WriteCiReport {
            milestone,
            round,
            sha,
            checks,
        } => {
            let issue = scope.issue;
            let mut entries = Vec::new();
            for check in checks {
                let failed = check.conclusion.is_some() && !check.passed();
                let log_tail = match check.check_run_id {
                    Some(id) if failed && check.app.as_deref() == Some(ACTIONS_APP) => Some(
                        client
                            .download_tail(
                                &format!("/repos/{repo}/actions/jobs/{id}/logs"),
                                CI_LOG_TAIL_BYTES,
                            )
                            .await
                            .map(|tail| redact_token_shapes(&tail))
                            .unwrap_or_else(|e| {
                                format!("(the job's log could not be read: {})", github_message(&e))
                            }),
                    ),
                    _ => None,
                };
                let state = match (&check.conclusion, check.passed()) {
                    (None, _) => "pending",
                    (Some(_), true) => "passed",
                    (Some(_), false) => "failed",
                };
                entries.push(json!({
                    "name": check.name,
                    "state": state,
                    "conclusion": check.conclusion,
                    "url": check.url,
                    "app": check.app,
                    "log_tail": log_tail,
                }));
            }
            let report = json!({
                "kind": "ci",
                "about": "The repository's own required checks on this round's ready commit. \
                          `failed` ones fail the milestone; `pending` ones had not concluded \
                          when the round ended (another check failed first).",
                "milestone": milestone,
                "round": round,
                "sha": sha,
                "failed": checks.iter().any(|c| c.conclusion.is_some() && !c.passed()),
                "checks": entries,
            });
            save_text(
                client,
                repo,
                &reports_branch(issue),
                &ci_report_path(issue, milestone),
                &format!(
                    "{}\n",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                ),
                &format!("missions #{issue}: the repository's CI on {milestone}, round {round}"),
                true,
            )
            .await?;
            Ok(None)
        }
        Effect::OpenCheck {
            index,
            round,
            validator,
            sha,
        } => {
            let id = open_check(client, repo, sha, *validator, attempt.tried_before).await?;
            Ok(Some(Event::CheckOpened {
                index: *index,
                round: *round,
                validator: *validator,
                check_run_id: id,
            }))
        }
        Effect::CompleteCheck {
            check_run_id,
            conclusion,
            title,
            summary,
            images,
        } => {
            let conclusion = conclusion.as_str();
            let mut output =
                json!({ "title": truncate(title, 1000), "summary": truncate(summary, 65_000) });
            if !images.is_empty() {
                // Screenshots on the reports branch, by their raw address:
                // GitHub shows them with the check run where it can fetch them.
                let links = Links::from_api(&dispatcher.api_base, repo);
                let branch = reports_branch(scope.issue);
                output["images"] = images
                    .iter()
                    .map(|path| {
                        json!({
                            "alt": path.rsplit('/').next().unwrap_or(path),
                            "image_url": links.raw(&branch, path),
                        })
                    })
                    .collect();
            }
            client
                .request_json(
                    Method::PATCH,
                    &format!("/repos/{repo}/check-runs/{check_run_id}"),
                    Some(&json!({
                        "status": "completed",
                        "conclusion": conclusion,
                        "output": output,
                    })),
                )
                .await?;
            Ok(None)
        }
        Effect::ReportGroupChecks {
            sha,
            conclusion,
            title,
            summary,
        } => {
            for validator in Validator::ALL {
                let name = validator.check_name();
                // A lost answer's try may have reported it already.
                if attempt.tried_before && any_check_run_on(client, repo, sha, name).await? {
                    continue;
                }
                client
                    .request_json(
                        Method::POST,
                        &format!("/repos/{repo}/check-runs"),
                        Some(&json!({
                            "name": name,
                            "head_sha": sha,
                            "status": "completed",
                            "conclusion": conclusion.as_str(),
                            "output": { "title": truncate(title, 1000), "summary": truncate(summary, 65_000) },
                        })),
                    )
                    .await?;
            }
            Ok(None)
        }
        Effect::CloseIssue => {
            client
                .request_json(
                    Method::PATCH,
                    &format!("/repos/{repo}/issues/{}", scope.issue),
                    Some(&json!({ "state": "closed", "state_reason": "completed" })),
                )
                .await?;
            Ok(None)
        }
    }
}

fn no_mission() -> EffectError {
    EffectError::Permanent("the effect needs its mission, which is gone".into())
}

fn resolve(
    scope: &EffectScope,
    mission: Option<&Mission>,
    target: Target,
) -> Result<u64, EffectError> {
    match target {
        Target::Issue => Ok(scope.issue),
        Target::PlanPr => mission
            .and_then(|m| m.plan_pr)
            .ok_or_else(|| EffectError::Permanent("the plan PR is not known".into())),
        Target::MilestonePr { index } => mission
            .and_then(|m| m.milestone_prs.get(&index).copied())
            .ok_or_else(|| EffectError::Permanent(format!("milestone {index}'s PR is not known"))),
    }
}

/// GitHub refuses issue comment and pull request bodies longer than this: 422
/// "Body is too long (maximum is 65536 characters)". Counted here in bytes,
/// never fewer than characters.
pub const MAX_BODY: usize = 65_536;
/// Room kept under [`MAX_BODY`] for the effect's marker and the note saying
/// where the rest is.
const BODY_ROOM: usize = 2_000;

/// `body` as GitHub will take it: unchanged when it fits. Otherwise the whole
/// text is saved first on the mission's reports branch, and what is posted is
/// its beginning, cut at a line end, under a note linking to the whole. (A 422
/// is permanent: a body GitHub refuses would pause the mission for good.)
async fn fit_body(
    client: &InstallationClient,
    dispatcher: &Dispatcher,
    scope: &EffectScope,
    effect_id: i64,
    body: &str,
) -> Result<String, EffectError> {
    if body.len() <= MAX_BODY - BODY_ROOM {
        return Ok(body.to_owned());
    }
    let issue = scope.issue;
    let branch = reports_branch(issue);
    // Named after the effect: a retry saves the same text at the same path.
    let path = format!(".missions/{issue}/comments/{effect_id}.md");
    save_text(
        client,
        &scope.repo,
        &branch,
        &path,
        body,
        &format!("missions #{issue}: the whole text of a comment too long for GitHub"),
        false,
    )
    .await?;
    let link = Links::from_api(&dispatcher.api_base, &scope.repo).blob(&branch, &path);
    Ok(format!(
        "*This text is {} KB, more than GitHub takes in one comment ({} characters): \
         it is cut below. The whole text is in [`{path}`]({link}) on `{branch}`.*\n\n{}\n\n*[… cut: the rest is in the whole text linked above]*",
        body.len().div_ceil(1024),
        MAX_BODY,
        cut_at_line(body, MAX_BODY - BODY_ROOM - 600)
    ))
}

/// The longest beginning of `text` within `max` bytes that ends at a line end
/// (a half table row or tag breaks less), or at a character boundary if no
/// line ends in its second half.
fn cut_at_line(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    match text[..end].rfind('\n') {
        Some(line_end) if line_end >= end / 2 => &text[..line_end],
        _ => &text[..end],
    }
}

/// Commits `text` at `path` on `branch`, making the branch (without history,
/// as the jobs' reports branch starts) when it does not exist yet. Already
/// there (an earlier try saved it): done; with `replace`, a file of other
/// text is updated.
async fn save_text(
    client: &InstallationClient,
    repo: &str,
    branch: &str,
    path: &str,
    text: &str,
    message: &str,
    replace: bool,
) -> Result<(), EffectError> {
    use base64::Engine;
    // The blob a replacing PUT names (GitHub refuses to overwrite blindly).
    let mut replaced = None;
    if let Some(found) = read_file(client, repo, path, branch).await? {
        if found == text || !replace {
            return Ok(());
        }
        let meta = client
            .request_json(
                Method::GET,
                &format!(
                    "/repos/{repo}/contents/{}?ref={}",
                    path_segments(path),
                    query_value(branch)
                ),
                None,
            )
            .await?;
        replaced = Some(meta["sha"].clone());
    } else if !ref_exists(client, repo, branch).await? {
        let tree = client
            .request_json(
                Method::POST,
                &format!("/repos/{repo}/git/trees"),
                Some(&json!({ "tree": [{ "path": path, "mode": "100644", "type": "blob", "content": text }] })),
            )
            .await?;
        let commit = client
            .request_json(
                Method::POST,
                &format!("/repos/{repo}/git/commits"),
                Some(&json!({ "message": message, "tree": tree["sha"], "parents": [] })),
            )
            .await?;
        match client
            .request_json(
                Method::POST,
                &format!("/repos/{repo}/git/refs"),
                Some(&json!({ "ref": format!("refs/heads/{branch}"), "sha": commit["sha"] })),
            )
            .await
        {
            Ok(_) => return Ok(()),
            // A job made the branch meanwhile: add the file on top of it.
            Err(e) if e.status() == Some(422) && ref_exists(client, repo, branch).await? => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut body = json!({
        "message": message,
        "content": base64::engine::general_purpose::STANDARD.encode(text),
        "branch": branch,
    });
    if let Some(sha) = replaced {
        body["sha"] = sha;
    }
    client
        .request_json(
            Method::PUT,
            &format!("/repos/{repo}/contents/{}", path_segments(path)),
            Some(&body),
        )
        .await?;
    Ok(())
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

async fn branch_head(
    client: &InstallationClient,
    repo: &str,
    branch: &str,
) -> Result<String, EffectError> {
    let r = client
        .request_json(
            Method::GET,
            &format!("/repos/{repo}/git/ref/heads/{branch}"),
            None,
        )
        .await?;
    r["object"]["sha"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| EffectError::Permanent(format!("branch {branch} has no head")))
}

async fn create_branch(
    client: &InstallationClient,
    repo: &str,
    name: &str,
    from: &str,
) -> Result<(), EffectError> {
    let sha = branch_head(client, repo, from).await?;
    match client
        .request_json(
            Method::POST,
            &format!("/repos/{repo}/git/refs"),
            Some(&json!({ "ref": format!("refs/heads/{name}"), "sha": sha })),
        )
        .await
    {
        Ok(_) => Ok(()),
        // GitHub answers 422 both when the branch exists (an earlier try of
        // this effect made it) and when it refuses to make it (a ruleset that
        // restricts creating branches, "Reference update failed"): look.
        Err(e) if e.status() == Some(422) => {
            if ref_exists(client, repo, name).await? {
                Ok(())
            } else {
                Err(EffectError::Permanent(format!(
                    "GitHub answered {} and the branch does not exist. A ruleset that restricts \
                     creating branches may cover `missions/**`: add this App to its bypass list \
                     or leave `missions/**` out of it (docs/install.md, \"Rulesets and branch \
                     protection\")",
                    github_message(&e)
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether `branch` exists.
/// GitHub Actions' app: its check runs are workflow jobs, their ids the jobs'.
const ACTIONS_APP: &str = "github-actions";
/// How much of a failed CI job's log the report keeps: its end, where the error is.
const CI_LOG_TAIL_BYTES: usize = 8 * 1024;

/// The checks of other apps a ready commit must pass: the base branch's
/// required status checks (its classic protection, each with the app it must
/// come from when it says) and `ci.required` of its `.github/missions.yml`,
/// less the App's own check runs. A settings file that does not parse is an
/// error: a round never starts without checks the maintainer named.
/// Rulesets are not read (`GET /rules/branches/{branch}` is outside the
/// REST description this project checks its calls against): their required
/// checks go in `ci.required`.
async fn required_checks(
    client: &InstallationClient,
    repo: &str,
    base: &str,
) -> Result<Vec<RequiredCheck>, EffectError> {
    let branch = client
        .request_json(
            Method::GET,
            &format!("/repos/{repo}/branches/{}", path_segments(base)),
            None,
        )
        .await?;
    let status = &branch["protection"]["required_status_checks"];
    let mut required: Vec<RequiredCheck> = Vec::new();
    for context in status["contexts"].as_array().into_iter().flatten() {
        if let Some(name) = context.as_str() {
            required.push(RequiredCheck::named(name));
        }
    }
    for check in status["checks"].as_array().into_iter().flatten() {
        if let Some(name) = check["context"].as_str() {
            // `contexts` lists the same names without their app.
            required.retain(|r| !(r.name == name && r.app_id.is_none()));
            required.push(RequiredCheck {
                name: name.to_owned(),
                app_id: check["app_id"].as_u64(),
            });
        }
    }
    if let Some(text) = read_file(client, repo, crate::llm::config::REPO_CONFIG_PATH, base).await? {
        let config = crate::repo_config::RepoConfig::parse(&text).map_err(|e| {
            EffectError::Permanent(format!(
                "{e} (on `{base}`); the round needs its `ci.required`: fix the file, then comment `/mission resume`"
            ))
        })?;
        required.extend(config.ci.required.iter().map(|n| RequiredCheck::named(n)));
    }
    required.retain(|r| !Validator::ALL.iter().any(|v| v.check_name() == r.name));
    required.sort_by(|a, b| (&a.name, a.app_id).cmp(&(&b.name, b.app_id)));
    required.dedup();
    Ok(required)
}

/// Every check of other apps on `sha`: check runs (the newest of each name
/// last) and commit statuses.
pub(crate) async fn external_checks(
    client: &InstallationClient,
    app_id: u64,
    repo: &str,
    sha: &str,
) -> Result<Vec<ExternalCheck>, EffectError> {
    let mut checks = Vec::new();
    // Ten pages of a hundred: more check runs than any CI makes on a commit,
    // and a bound should an answer never come up short.
    for page in 1..=MAX_CHECK_PAGES {
        let answer = client
            .request_json(
                Method::GET,
                &format!(
                    "/repos/{repo}/commits/{sha}/check-runs?filter=all&per_page=100&page={page}"
                ),
                None,
            )
            .await?;
        let runs = answer["check_runs"].as_array().cloned().unwrap_or_default();
        for run in &runs {
            if run["app"]["id"].as_u64() == Some(app_id) {
                continue;
            }
            checks.push(ExternalCheck {
                name: run["name"].as_str().unwrap_or_default().to_owned(),
                conclusion: (run["status"] == "completed")
                    .then(|| run["conclusion"].as_str().unwrap_or("failure").to_owned()),
                url: run["details_url"].as_str().map(str::to_owned),
                check_run_id: run["id"].as_u64(),
                app: run["app"]["slug"].as_str().map(str::to_owned),
                app_id: run["app"]["id"].as_u64(),
            });
        }
        if runs.len() < 100 {
            break;
        }
    }
    checks.sort_by_key(|c| c.check_run_id);
    // Commit statuses (the older API other CI services use); the combined
    // status holds the newest of each context. An App installed before it
    // asked for `statuses: read` is refused them: it goes on with the check
    // runs, and a required status then waits (and pauses) rather than passing.
    for page in 1..=MAX_CHECK_PAGES {
        let combined = match client
            .request_json(
                Method::GET,
                &format!("/repos/{repo}/commits/{sha}/status?per_page=100&page={page}"),
                None,
            )
            .await
        {
            Ok(answer) => answer,
            Err(e) if matches!(e.status(), Some(403 | 404)) => {
                tracing::warn!(
                    repo,
                    error = %e,
                    "cannot read commit statuses: grant the App `statuses: read` if a required check is a status"
                );
                break;
            }
            Err(e) => return Err(e.into()),
        };
        let statuses = combined["statuses"].as_array().cloned().unwrap_or_default();
        checks.extend(statuses.iter().map(status_check));
        if statuses.len() < 100 {
            break;
        }
    }
    Ok(checks)
}

/// `text` with what looks like a credential cut to its kind: GitHub masks
/// the repository's secrets in logs, not a token a step printed some other
/// way, and the tail is committed to a branch and read by a model.
pub fn redact_token_shapes(text: &str) -> String {
    const PREFIXES: [&str; 9] = [
        "github_pat_",
        "ghp_",
        "gho_",
        "ghu_",
        "ghs_",
        "ghr_",
        "sk-ant-",
        "sk-",
        "AKIA",
    ];
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while !rest.is_empty() {
        for prefix in PREFIXES {
            if let Some(after) = rest.strip_prefix(prefix) {
                let body = after.find(|c| !is_token_char(c)).unwrap_or(after.len());
                let at_word_start = out.chars().last().is_none_or(|c| !is_token_char(c));
                if body >= 16 && at_word_start {
                    out.push_str(prefix);
                    out.push_str("[redacted]");
                    rest = &after[body..];
                    continue 'scan;
                }
            }
        }
        let c = rest.chars().next().expect("not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The most pages of check runs or statuses read for one commit.
const MAX_CHECK_PAGES: u32 = 10;

/// A commit status as a check: `success` passes, `failure` and `error` fail,
/// `pending` has not concluded.
pub fn status_check(status: &Value) -> ExternalCheck {
    let conclusion = match status["state"].as_str() {
        Some("success") => Some("success"),
        Some("pending") | None => None,
        Some(_) => Some("failure"),
    };
    ExternalCheck {
        name: status["context"].as_str().unwrap_or_default().to_owned(),
        conclusion: conclusion.map(str::to_owned),
        url: status["target_url"].as_str().map(str::to_owned),
        check_run_id: None,
        app: Some("status".to_owned()),
        app_id: None,
    }
}

async fn ref_exists(
    client: &InstallationClient,
    repo: &str,
    branch: &str,
) -> Result<bool, EffectError> {
    match client
        .request_json(
            Method::GET,
            &format!("/repos/{repo}/git/ref/heads/{}", path_segments(branch)),
            None,
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.status() == Some(404) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// What GitHub said, without the request: for a message that names its own cause.
fn github_message(e: &GitHubError) -> String {
    match e {
        GitHubError::Api {
            status, message, ..
        } => format!("{status} ({message})"),
        other => other.to_string(),
    }
}

async fn dispatch(
    client: &InstallationClient,
    dispatcher: &Dispatcher,
    repo: &str,
    issue: u64,
    mission: Option<&Mission>,
    job: &Job,
) -> Result<Option<(u64, Option<String>)>, EffectError> {
    let config_ref = mission.map(|m| m.base.clone()).ok_or_else(no_mission)?;
    // The issue's text the job must take (empty: the mission has none, and
    // the job reads the issue as it is).
    let issue_sha256 = mission
        .and_then(|m| m.issue_text.as_ref())
        .map(|s| s.sha256.clone())
        .unwrap_or_default();
    let mut inputs = json!({
        "role": job.role().as_str(),
        "mission": issue.to_string(),
        "task": job.task.kind(),
        "feature": job.task.feature().unwrap_or(""),
        "job": job.key,
        "config_ref": config_ref,
        "issue_sha256": issue_sha256,
    });
    // Only with a budget: a workflow written before this input still runs
    // missions without one (GitHub refuses inputs a workflow does not declare).
    if let Some(limit) = job.spend_limit_micros {
        inputs["spend_limit_usd"] = json!(crate::mission::machine::usd_decimal(limit));
    }
    if let Some(model) = &dispatcher.server_model {
        inputs["server_model"] = json!(model);
    }
    // One exchange per attempt (the outbox retries): a crash can then only
    // leave a dispatch in doubt during that one exchange, not during waits.
    let route = format!(
        "/repos/{repo}/actions/workflows/{}/dispatches",
        dispatcher.workflow_file
    );
    let once = client.single_attempt();
    let answer = match once
        .request_json(
            Method::POST,
            &route,
            Some(&json!({ "ref": job.branch, "inputs": inputs, "return_run_details": true })),
        )
        .await
    {
        Ok(answer) => answer,
        // GitHub Enterprise Server before the parameter refuses it, and
        // dispatched nothing: ask again without it.
        Err(GitHubError::Api {
            status: 400 | 422,
            message,
            ..
        }) if message.contains("return_run_details") => {
            once.request_json(
                Method::POST,
                &route,
                Some(&json!({ "ref": job.branch, "inputs": inputs })),
            )
            .await?
        }
        // The workflow is looked up on the default branch: missing there, 404.
        Err(e) if e.status() == Some(404) => {
            return Err(EffectError::Permanent(format!(
                "{e}; GitHub runs `workflow_dispatch` only for workflows on the default branch: \
                 commit `.github/workflows/{}` there (`missions init` writes it)",
                dispatcher.workflow_file
            )));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(answer["workflow_run_id"]
        .as_u64()
        .map(|id| (id, answer["html_url"].as_str().map(str::to_owned))))
}

async fn open_pr(
    client: &InstallationClient,
    repo: &str,
    head: &str,
    base: &str,
    title: &str,
    body: &str,
) -> Result<u64, EffectError> {
    let created = client
        .request_json(
            Method::POST,
            &format!("/repos/{repo}/pulls"),
            Some(&json!({ "title": title, "head": head, "base": base, "body": body })),
        )
        .await;
    let pr = match created {
        Ok(pr) => pr,
        // "A pull request already exists": an earlier try opened it (its answer
        // was lost); take that one.
        Err(e) if e.status() == Some(422) => {
            let owner = repo.split('/').next().unwrap_or_default();
            let open = client
                .request_json(
                    Method::GET,
                    &format!(
                        "/repos/{repo}/pulls?state=open&head={}",
                        query_value(&format!("{owner}:{head}"))
                    ),
                    None,
                )
                .await?;
            match open.as_array().and_then(|prs| prs.first()) {
                Some(pr) => pr.clone(),
                None => return Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    pr["number"]
        .as_u64()
        .ok_or_else(|| EffectError::Permanent("pull request answer without a number".into()))
}

/// The milestone's ready commit: the head's tree, committed by the App on top of
/// the head, so that the check runs sit on a commit the App made and the
/// repository's own CI runs on it too.
async fn ready_commit(
    client: &InstallationClient,
    repo: &str,
    branch: &str,
    message: &str,
    tried_before: bool,
) -> Result<String, EffectError> {
    let b = client
        .request_json(
            Method::GET,
            &format!("/repos/{repo}/branches/{}", path_segments(branch)),
            None,
        )
        .await?;
    let head = b["commit"]["sha"]
        .as_str()
        .ok_or_else(|| EffectError::Permanent(format!("branch {branch} has no head")))?;
    let tree = b["commit"]["commit"]["tree"]["sha"]
        .as_str()
        .ok_or_else(|| EffectError::Permanent("commit without a tree".into()))?;
    // The message names the milestone and round: an earlier attempt made this one.
    if tried_before && b["commit"]["commit"]["message"].as_str() == Some(message) {
        return Ok(head.to_owned());
    }
    let new = client
        .request_json(
            Method::POST,
            &format!("/repos/{repo}/git/commits"),
            Some(&json!({ "message": message, "tree": tree, "parents": [head] })),
        )
        .await?;
    let sha = new["sha"]
        .as_str()
        .ok_or_else(|| EffectError::Permanent("commit answer without a sha".into()))?
        .to_owned();
    client
        .request_json(
            Method::PATCH,
            &format!("/repos/{repo}/git/refs/heads/{}", path_segments(branch)),
            Some(&json!({ "sha": sha, "force": false })),
        )
        .await?;
    Ok(sha)
}

/// The id of this App's comment on issue `number` whose body contains `needle`.
/// Pages through every comment: it runs only when an earlier attempt may have posted.
async fn comment_with(
    client: &InstallationClient,
    app_id: u64,
    repo: &str,
    number: u64,
    needle: &str,
) -> Result<Option<u64>, EffectError> {
    for page in 1.. {
        let comments = client
            .request_json(
                Method::GET,
                &format!("/repos/{repo}/issues/{number}/comments?per_page=100&page={page}"),
                None,
            )
            .await?;
        let list = comments.as_array().map(Vec::as_slice).unwrap_or_default();
        if let Some(id) = list
            .iter()
            .filter(|c| is_own_comment(c, app_id))
            .find(|c| c["body"].as_str().is_some_and(|b| b.contains(needle)))
            .and_then(|c| c["id"].as_u64())
        {
            return Ok(Some(id));
        }
        if list.len() < 100 {
            break;
        }
    }
    Ok(None)
}

/// Opens `validator`'s check run on `sha`, in progress. After an attempt
/// whose answer was lost, the one it made (still in progress) is taken.
async fn open_check(
    client: &InstallationClient,
    repo: &str,
    sha: &str,
    validator: Validator,
    tried_before: bool,
) -> Result<u64, EffectError> {
    if tried_before
        && let Some(id) = check_run_on(client, repo, sha, validator.check_name()).await?
    {
        return Ok(id);
    }
    let run = client
        .request_json(
            Method::POST,
            &format!("/repos/{repo}/check-runs"),
            Some(&json!({
                "name": validator.check_name(),
                "head_sha": sha,
                "status": "in_progress",
                "output": {
                    "title": "Validating",
                    "summary": format!("The {} validator is running on this commit.", validator.as_str()),
                },
            })),
        )
        .await?;
    run["id"]
        .as_u64()
        .ok_or_else(|| EffectError::Permanent("check run answer without an id".into()))
}

/// Whether commit `sha` has a check run named `name`, in any state.
async fn any_check_run_on(
    client: &InstallationClient,
    repo: &str,
    sha: &str,
    name: &str,
) -> Result<bool, EffectError> {
    Ok(check_runs_on(client, repo, sha, name)
        .await?
        .iter()
        .any(|r| r["name"].as_str() == Some(name)))
}

async fn check_runs_on(
    client: &InstallationClient,
    repo: &str,
    sha: &str,
    name: &str,
) -> Result<Vec<Value>, EffectError> {
    let answer = client
        .request_json(
            Method::GET,
            &format!(
                "/repos/{repo}/commits/{sha}/check-runs?check_name={}",
                query_value(name)
            ),
            None,
        )
        .await?;
    Ok(answer["check_runs"].as_array().cloned().unwrap_or_default())
}

/// The check run named `name` on commit `sha` that is still in progress, if
/// one exists (a completed one is a try that already ended).
async fn check_run_on(
    client: &InstallationClient,
    repo: &str,
    sha: &str,
    name: &str,
) -> Result<Option<u64>, EffectError> {
    Ok(check_runs_on(client, repo, sha, name)
        .await?
        .iter()
        .find(|r| r["name"].as_str() == Some(name) && r["status"].as_str() != Some("completed"))
        .and_then(|r| r["id"].as_u64()))
}

/// Edits the mission control comment in place; posts it (or finds the one an
/// earlier try posted, by its marker) when the mission knows none.
async fn update_sticky(
    client: &InstallationClient,
    dispatcher: &Dispatcher,
    mission: &Mission,
    now: i64,
) -> Result<Option<Event>, EffectError> {
    use crate::mission::control::{STICKY_MARKER, sticky};
    let repo = &mission.repo;
    let links = Links::from_api(&dispatcher.api_base, repo);
    let body = sticky(mission, now, &links);
    let mut known = mission.sticky_comment;
    if known.is_none() {
        // An earlier try may have posted it and crashed before recording its
        // id; on a busy issue it may be past the first page.
        known = comment_with(
            client,
            dispatcher.app_id,
            repo,
            mission.issue,
            STICKY_MARKER,
        )
        .await?;
    }
    if let Some(id) = known {
        match client
            .request_json(
                Method::PATCH,
                &format!("/repos/{repo}/issues/comments/{id}"),
                Some(&json!({ "body": body })),
            )
            .await
        {
            Ok(_) => {
                return Ok((mission.sticky_comment != Some(id))
                    .then_some(Event::StickyPosted { comment_id: id }));
            }
            // Someone deleted it: post a new one.
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let posted = client
        .request_json(
            Method::POST,
            &format!("/repos/{repo}/issues/{}/comments", mission.issue),
            Some(&json!({ "body": body })),
        )
        .await?;
    let id = posted["id"]
        .as_u64()
        .ok_or_else(|| EffectError::Permanent("comment answer without an id".into()))?;
    Ok(Some(Event::StickyPosted { comment_id: id }))
}

/// Reads a file from a branch through the contents API; `None` when absent.
/// Asks for the raw media type: in the JSON form a file over 1 MB comes back
/// with an empty `content` (`encoding: none`), which would read as no result.
pub async fn read_file(
    client: &InstallationClient,
    repo: &str,
    path: &str,
    git_ref: &str,
) -> Result<Option<String>, GitHubError> {
    match client
        .get_raw(&format!(
            "/repos/{repo}/contents/{}?ref={}",
            path_segments(path),
            query_value(git_ref)
        ))
        .await
    {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.status() == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shapes_in_a_log_tail_are_cut_to_their_kind() {
        let log = "curl -H 'Authorization: token ghp_0123456789abcdefABCDEF0123' failed\n\
                   key=AKIAABCDEFGHIJKLMNOP ok; ghs_short stays; xghp_0123456789abcdefABCD stays";
        let out = redact_token_shapes(log);
        assert!(out.contains("token ghp_[redacted]' failed"), "{out}");
        assert!(out.contains("key=AKIA[redacted] ok"), "{out}");
        assert!(out.contains("ghs_short stays"), "{out}");
        assert!(out.contains("xghp_0123456789abcdefABCD stays"), "{out}");
        assert!(!out.contains("0123456789abcdefABCDEF0123"), "{out}");
        assert_eq!(redact_token_shapes("é ghs_"), "é ghs_");
    }

    #[test]
    fn a_commit_status_is_a_check_that_passes_only_on_success() {
        let status = |state: &str| {
            status_check(&json!({"state": state, "context": "ci/x", "target_url": "https://ci/1"}))
        };
        assert!(status("success").passed());
        assert_eq!(status("pending").conclusion, None);
        for failed in ["failure", "error"] {
            let check = status(failed);
            assert_eq!(check.conclusion.as_deref(), Some("failure"));
            assert!(!check.passed());
        }
        assert_eq!(status("success").name, "ci/x");
        assert_eq!(status("success").app_id, None);
    }
}
