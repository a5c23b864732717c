//! Git over REST (refs, commits, trees, blobs, contents, branches) and over
//! smart HTTP (clone, fetch, push), both on the same bare repositories, and
//! the `push` / `pull_request.synchronize` webhooks any ref change causes.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::SimInner;
use super::api::{
    ApiError, ApiResult, Caller, JsonBody, actor, caller_from_credential, full, ok, require,
    required_str,
};
use super::git::{self, PathContent, Signature};
use super::render::{self, RepoTimes, timestamp};
use super::state::{IssueState, Permission};
use crate::sim_fields;

type Sim = Arc<SimInner>;

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A branch name, tag name, `refs/...` or a full sha → the commit sha; 404/422 as GitHub.
pub async fn resolve_commitish(
    sim: &SimInner,
    name: &str,
    reference: &str,
) -> Result<String, ApiError> {
    if is_sha(reference) {
        return match sim.git.object_type(name, reference).await? {
            Some(_) => Ok(reference.to_owned()),
            None => Err(ApiError::unprocessable(format!(
                "No commit found for SHA: {reference}"
            ))),
        };
    }
    let candidates = if reference.starts_with("refs/") {
        vec![reference.to_owned()]
    } else {
        vec![
            format!("refs/heads/{reference}"),
            format!("refs/tags/{reference}"),
        ]
    };
    for candidate in candidates {
        if let Some(sha) = sim.git.resolve_ref(name, &candidate).await? {
            return Ok(sha);
        }
    }
    Err(ApiError::not_found())
}

fn signature_json(s: &Signature) -> Value {
    json!({"name": s.name, "email": s.email, "date": timestamp(s.date)})
}

fn signature_from(body: Option<&Value>, default: &Signature) -> Result<Signature, ApiError> {
    let Some(v) = body.filter(|v| !v.is_null()) else {
        return Ok(default.clone());
    };
    let name = v.get("name").and_then(Value::as_str);
    let email = v.get("email").and_then(Value::as_str);
    let (Some(name), Some(email)) = (name, email) else {
        return Err(ApiError::invalid(
            "Commit",
            "author",
            "missing_field",
            "author and committer need a name and an email",
        ));
    };
    let date = match v.get("date").and_then(Value::as_str) {
        Some(d) => time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
            ApiError::invalid(
                "Commit",
                "date",
                "invalid",
                format!("{d} is not an ISO 8601 date"),
            )
        })?,
        None => default.date,
    };
    Ok(Signature {
        name: name.to_owned(),
        email: email.to_owned(),
        date,
    })
}

pub(crate) fn default_signature(sim: &SimInner, login: &str) -> Signature {
    // GitHub writes `<id>+<slug>[bot]@users.noreply.github.com` for an App, which
    // the `format: email` of its own OpenAPI description rejects (`[` is not
    // allowed in an address); the simulator drops the brackets so that its answers
    // validate.
    let local = match login.strip_suffix("[bot]") {
        Some(slug) => format!("{slug}-bot"),
        None => login.to_owned(),
    };
    Signature {
        name: login.to_owned(),
        email: format!("{local}@users.noreply.sim"),
        date: sim.clock.now(),
    }
}

fn verification() -> Value {
    json!({"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null})
}

/// `git-commit`.
async fn git_commit_json(sim: &SimInner, name: &str, sha: &str) -> Result<Value, ApiError> {
    let c = sim
        .git
        .commit(name, sha)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let r = format!("{}/repos/{name}", sim.urls.api);
    Ok(json!({
        "sha": c.sha,
        "node_id": format!("C_{}", c.sha),
        "url": format!("{r}/git/commits/{}", c.sha),
        "html_url": format!("{}/{name}/commit/{}", sim.urls.web, c.sha),
        "author": signature_json(&c.author),
        "committer": signature_json(&c.committer),
        "tree": {"sha": c.tree, "url": format!("{r}/git/trees/{}", c.tree)},
        "message": c.message,
        "parents": c.parents.iter().map(|p| json!({
            "sha": p, "url": format!("{r}/git/commits/{p}"),
            "html_url": format!("{}/{name}/commit/{p}", sim.urls.web),
        })).collect::<Vec<_>>(),
        "verification": verification(),
    }))
}

/// `commit` (as in a branch): the commit with GitHub's wrapping.
async fn commit_json(sim: &SimInner, name: &str, sha: &str) -> Result<Value, ApiError> {
    let c = sim
        .git
        .commit(name, sha)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let r = format!("{}/repos/{name}", sim.urls.api);
    Ok(json!({
        "url": format!("{r}/commits/{}", c.sha),
        "sha": c.sha,
        "node_id": format!("C_{}", c.sha),
        "html_url": format!("{}/{name}/commit/{}", sim.urls.web, c.sha),
        "comments_url": format!("{r}/commits/{}/comments", c.sha),
        "commit": {
            "url": format!("{r}/git/commits/{}", c.sha),
            "author": signature_json(&c.author),
            "committer": signature_json(&c.committer),
            "message": c.message,
            "comment_count": 0,
            "tree": {"sha": c.tree, "url": format!("{r}/git/trees/{}", c.tree)},
            "verification": verification(),
        },
        "author": null,
        "committer": null,
        "parents": c.parents.iter().map(|p| json!({
            "sha": p, "url": format!("{r}/commits/{p}"),
            "html_url": format!("{}/{name}/commit/{p}", sim.urls.web),
        })).collect::<Vec<_>>(),
    }))
}

fn ref_json(sim: &SimInner, name: &str, refname: &str, sha: &str, kind: &str) -> Value {
    let r = format!("{}/repos/{name}", sim.urls.api);
    let object_kind = if kind == "commit" { "commits" } else { "tags" };
    json!({
        "ref": refname,
        "node_id": format!("REF_{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(refname)),
        "url": format!("{r}/git/{refname}"),
        "object": {"type": kind, "sha": sha, "url": format!("{r}/git/{object_kind}/{sha}")},
    })
}

fn check_access(
    sim: &SimInner,
    caller: &Caller,
    name: &str,
    needed: Permission,
) -> Result<String, ApiError> {
    let a = actor(&sim.world(), caller, name)?;
    require(&a, needed)?;
    Ok(a.login)
}

pub async fn get_branch(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, branch)): Path<(String, String, String)>,
) -> ApiResult {
    let name = full(&owner, &repo);
    check_access(&sim, &caller, &name, Permission::Read)?;
    let sha = sim
        .git
        .resolve_ref(&name, &format!("refs/heads/{branch}"))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Branch not found"))?;
    let r = format!("{}/repos/{name}", sim.urls.api);
    let protection = sim.world().repos[&name].protection.get(&branch).cloned();
    let (protected, protection) = match protection {
        // GitHub shows a protected branch's required checks to readers too;
        // a check required from any source has `app_id: null`.
        Some(p) => (
            true,
            json!({"enabled": true, "required_status_checks": {
                "enforcement_level": "non_admins",
                "contexts": p.required_checks,
                "checks": p.required_checks.iter()
                    .map(|c| json!({"context": c, "app_id": null}))
                    .collect::<Vec<_>>(),
                "strict": p.strict,
            }}),
        ),
        None => (
            false,
            json!({"enabled": false, "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []}}),
        ),
    };
    ok(
        StatusCode::OK,
        json!({
            "name": branch,
            "commit": commit_json(&sim, &name, &sha).await?,
            "_links": {"html": format!("{}/{name}/tree/{branch}", sim.urls.web), "self": format!("{r}/branches/{branch}")},
            "protected": protected,
            "protection": protection,
            "protection_url": format!("{r}/branches/{branch}/protection"),
        }),
    )
}

#[derive(Debug, serde::Deserialize)]
pub struct RefQuery {
    #[serde(rename = "ref")]
    reference: Option<String>,
}

fn content_links(
    sim: &SimInner,
    name: &str,
    path: &str,
    sha: &str,
    reference: &str,
    kind: &str,
) -> (String, String, String, Option<String>) {
    let r = format!("{}/repos/{name}", sim.urls.api);
    let url = format!("{r}/contents/{path}?ref={reference}");
    let git_url = if kind == "dir" {
        format!("{r}/git/trees/{sha}")
    } else {
        format!("{r}/git/blobs/{sha}")
    };
    let html_kind = if kind == "dir" { "tree" } else { "blob" };
    let html_url = format!("{}/{name}/{html_kind}/{reference}/{path}", sim.urls.web);
    let download =
        (kind == "file").then(|| format!("{}/{name}/raw/{reference}/{path}", sim.urls.web));
    (url, git_url, html_url, download)
}

fn entry_json(
    sim: &SimInner,
    name: &str,
    path: &str,
    sha: &str,
    size: u64,
    kind: &str,
    reference: &str,
) -> Value {
    let (url, git_url, html_url, download_url) =
        content_links(sim, name, path, sha, reference, kind);
    json!({
        "type": kind,
        "size": size,
        "name": path.rsplit('/').next().unwrap_or(path),
        "path": path,
        "sha": sha,
        "url": url,
        "git_url": git_url,
        "html_url": html_url,
        "download_url": download_url,
        "_links": {"self": url, "git": git_url, "html": html_url},
    })
}

/// Base64 in 60-column lines, as GitHub sends file contents.
fn wrapped_base64(bytes: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 60 + 1);
    for chunk in encoded.as_bytes().chunks(60) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out
}

/// Above this size GitHub's contents API leaves a file's `content` empty
/// (`encoding: "none"`) in its JSON form; the raw media type still has it.
pub const CONTENTS_JSON_MAX: u64 = 1024 * 1024;

pub async fn get_content(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, path)): Path<(String, String, String)>,
    Query(query): Query<RefQuery>,
    headers: axum::http::HeaderMap,
) -> ApiResult {
    let raw = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/vnd.github.raw"));
    let name = full(&owner, &repo);
    check_access(&sim, &caller, &name, Permission::Read)?;
    let default_branch = sim.world().repos[&name].default_branch.clone();
    let reference = query.reference.unwrap_or(default_branch);
    let sha = resolve_commitish(&sim, &name, &reference)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("No commit found for the ref {reference}"),
            )
        })?;
    let path = path.trim_matches('/').to_owned();
    let content = sim
        .git
        .read_path(&name, &sha, &path)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let body = match content {
        PathContent::File { content, .. } if raw => {
            return Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/vnd.github.raw")],
                content,
            )
                .into_response());
        }
        PathContent::File {
            sha, size, content, ..
        } => {
            let mut v = entry_json(&sim, &name, &path, &sha, size, "file", &reference);
            if size > CONTENTS_JSON_MAX {
                v["encoding"] = json!("none");
                v["content"] = json!("");
            } else {
                v["encoding"] = json!("base64");
                v["content"] = json!(wrapped_base64(&content));
            }
            v
        }
        PathContent::Symlink { sha, target, .. } => {
            let mut v = entry_json(
                &sim,
                &name,
                &path,
                &sha,
                target.len() as u64,
                "symlink",
                &reference,
            );
            v["target"] = json!(target);
            v
        }
        PathContent::Submodule { sha } => {
            entry_json(&sim, &name, &path, &sha, 0, "submodule", &reference)
        }
        PathContent::Dir(entries) => Value::Array(
            entries
                .iter()
                .map(|e| {
                    entry_json(
                        &sim,
                        &name,
                        &e.path,
                        &e.sha,
                        e.size,
                        e.kind.as_str(),
                        &reference,
                    )
                })
                .collect(),
        ),
    };
    ok(StatusCode::OK, body)
}

pub async fn put_content(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, path)): Path<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    let login = check_access(&sim, &caller, &name, Permission::Write)?;
    let message = required_str(&body, "Content", "message")?;
    let content = required_str(&body, "Content", "content")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(content.replace(['\n', '\r'], ""))
        .map_err(|_| {
            ApiError::invalid(
                "Content",
                "content",
                "invalid",
                "content is not valid Base64",
            )
        })?;
    let branch = match body.get("branch").and_then(Value::as_str) {
        Some(b) => b.to_owned(),
        None => sim.world().repos[&name].default_branch.clone(),
    };
    let default = default_signature(&sim, &login);
    let committer = signature_from(body.get("committer"), &default)?;
    let author = signature_from(body.get("author"), &committer)?;
    let path = path.trim_matches('/').to_owned();
    let refname = format!("refs/heads/{branch}");
    let before = sim.git.resolve_ref(&name, &refname).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, format!("Branch {branch} not found"))
    })?;
    let existed = matches!(
        sim.git.read_path(&name, &before, &path).await?,
        Some(PathContent::File { .. })
    );
    let expected = body.get("sha").and_then(Value::as_str);
    if existed && expected.is_none() {
        return Err(ApiError::invalid(
            "Content",
            "sha",
            "missing_field",
            "\"sha\" wasn't supplied.",
        ));
    }
    let (commit_sha, blob_sha) = sim
        .git
        .put_file(
            &name, &branch, &path, &bytes, message, expected, &author, &committer,
        )
        .await
        .map_err(|e| match e {
            git::GitError::Conflict(_) => {
                ApiError::conflict(format!("{path} does not match {}", expected.unwrap_or("")))
            }
            other => other.into(),
        })?;
    after_ref_change(
        &sim,
        &name,
        &refname,
        Some(before),
        Some(commit_sha.clone()),
        &login,
    )
    .await;
    let (url, git_url, html_url, download_url) =
        content_links(&sim, &name, &path, &blob_sha, &branch, "file");
    let content = json!({
        "name": path.rsplit('/').next().unwrap_or(&path),
        "path": path,
        "sha": blob_sha,
        "size": bytes.len(),
        "url": url,
        "html_url": html_url,
        "git_url": git_url,
        "download_url": download_url,
        "type": "file",
        "_links": {"self": url, "git": git_url, "html": html_url},
    });
    let commit = git_commit_json(&sim, &name, &commit_sha).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    ok(status, json!({"content": content, "commit": commit}))
}

pub async fn create_blob(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    check_access(&sim, &caller, &name, Permission::Write)?;
    let content = required_str(&body, "Blob", "content")?;
    let bytes = match body
        .get("encoding")
        .and_then(Value::as_str)
        .unwrap_or("utf-8")
    {
        "utf-8" => content.as_bytes().to_vec(),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(content.replace(['\n', '\r'], ""))
            .map_err(|_| {
                ApiError::invalid("Blob", "content", "invalid", "content is not valid Base64")
            })?,
        other => {
            return Err(ApiError::invalid(
                "Blob",
                "encoding",
                "invalid",
                format!("encoding {other} is not utf-8 or base64"),
            ));
        }
    };
    let sha = sim.git.create_blob(&name, &bytes).await?;
    ok(
        StatusCode::CREATED,
        json!({"url": format!("{}/repos/{name}/git/blobs/{sha}", sim.urls.api), "sha": sha}),
    )
}

pub async fn create_tree(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    check_access(&sim, &caller, &name, Permission::Write)?;
    let items = body
        .get("tree")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid("Tree", "tree", "missing_field", "tree is missing"))?;
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        let field = |k: &str| item.get(k).and_then(Value::as_str);
        let path = required_str(item, "Tree", "path")?;
        let mode = field("mode").unwrap_or("100644");
        if !["100644", "100755", "040000", "160000", "120000"].contains(&mode) {
            return Err(ApiError::invalid(
                "Tree",
                "mode",
                "invalid",
                format!("mode {mode} is not valid"),
            ));
        }
        let source = match (item.get("sha"), field("content")) {
            (Some(Value::String(sha)), None) => git::TreeEntrySource::Sha(sha.clone()),
            (Some(Value::Null), None) => git::TreeEntrySource::Delete,
            (None, Some(content)) => git::TreeEntrySource::Content(content.as_bytes().to_vec()),
            _ => {
                return Err(ApiError::invalid(
                    "Tree",
                    "tree",
                    "invalid",
                    "each entry needs exactly one of sha and content",
                ));
            }
        };
        entries.push(git::TreeEntryInput {
            path: path.to_owned(),
            mode: mode.to_owned(),
            source,
        });
    }
    let base = body.get("base_tree").and_then(Value::as_str);
    let sha = sim.git.create_tree(&name, base, &entries).await?;
    let tree = sim.git.tree_entries(&name, &sha, false).await?;
    let r = format!("{}/repos/{name}", sim.urls.api);
    let tree: Vec<Value> = tree
        .iter()
        .map(|e| {
            let kind = e.kind.as_str();
            let mut v = json!({"path": e.path, "mode": e.mode, "type": kind, "sha": e.sha,
                "url": format!("{r}/git/{}s/{}", kind, e.sha)});
            if let Some(size) = e.size {
                v["size"] = json!(size);
            }
            v
        })
        .collect();
    ok(
        StatusCode::CREATED,
        json!({"sha": sha, "url": format!("{r}/git/trees/{sha}"), "truncated": false, "tree": tree}),
    )
}

pub async fn create_commit(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    let login = check_access(&sim, &caller, &name, Permission::Write)?;
    let message = required_str(&body, "Commit", "message")?;
    let tree = required_str(&body, "Commit", "tree")?;
    let parents: Vec<String> = match body.get("parents") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|p| {
                p.as_str().map(str::to_owned).ok_or_else(|| {
                    ApiError::invalid("Commit", "parents", "invalid", "parents must be shas")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::invalid(
                "Commit",
                "parents",
                "invalid",
                "parents must be an array",
            ));
        }
    };
    let default = default_signature(&sim, &login);
    let author = signature_from(body.get("author"), &default)?;
    let committer = signature_from(body.get("committer"), &author)?;
    let sha = sim
        .git
        .create_commit(&name, message, tree, &parents, &author, &committer)
        .await?;
    ok(
        StatusCode::CREATED,
        git_commit_json(&sim, &name, &sha).await?,
    )
}

pub async fn get_ref(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, reference)): Path<(String, String, String)>,
) -> ApiResult {
    let name = full(&owner, &repo);
    check_access(&sim, &caller, &name, Permission::Read)?;
    let refname = format!("refs/{}", reference.trim_start_matches('/'));
    let sha = sim
        .git
        .resolve_ref(&name, &refname)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let kind = sim
        .git
        .object_type(&name, &sha)
        .await?
        .map(|k| k.as_str())
        .unwrap_or("commit");
    ok(StatusCode::OK, ref_json(&sim, &name, &refname, &sha, kind))
}

pub async fn create_ref(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    let login = check_access(&sim, &caller, &name, Permission::Write)?;
    let refname = required_str(&body, "Reference", "ref")?;
    let sha = required_str(&body, "Reference", "sha")?;
    if !refname.starts_with("refs/") || refname.matches('/').count() < 2 {
        return Err(ApiError::unprocessable(
            "Reference name must start with 'refs/' and have at least two slashes.",
        ));
    }
    if sim.git.object_type(&name, sha).await?.is_none() {
        return Err(ApiError::unprocessable("Object does not exist"));
    }
    // A ruleset that restricts creations: GitHub's REST answer names no rule
    // (git push says "Cannot create ref due to creations being restricted").
    if sim.world().repos[&name]
        .rulesets
        .iter()
        .any(|r| r.restrict_creation && r.applies_to(refname))
    {
        return Err(ApiError::unprocessable("Reference update failed"));
    }
    sim.git
        .create_ref(&name, refname, sha)
        .await
        .map_err(|e| match e {
            git::GitError::Conflict(_) => ApiError::unprocessable("Reference already exists"),
            other => other.into(),
        })?;
    after_ref_change(&sim, &name, refname, None, Some(sha.to_owned()), &login).await;
    let kind = sim
        .git
        .object_type(&name, sha)
        .await?
        .map(|k| k.as_str())
        .unwrap_or("commit");
    ok(
        StatusCode::CREATED,
        ref_json(&sim, &name, refname, sha, kind),
    )
}

pub async fn update_ref(
    State(sim): State<Sim>,
    caller: Caller,
    Path((owner, repo, reference)): Path<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = full(&owner, &repo);
    let login = check_access(&sim, &caller, &name, Permission::Write)?;
    let sha = required_str(&body, "Reference", "sha")?;
    let force = body.get("force").and_then(Value::as_bool).unwrap_or(false);
    let refname = format!("refs/{}", reference.trim_start_matches('/'));
    if sim.git.resolve_ref(&name, &refname).await?.is_none() {
        return Err(ApiError::unprocessable("Reference does not exist"));
    }
    if sim.git.object_type(&name, sha).await?.is_none() {
        return Err(ApiError::unprocessable("Object does not exist"));
    }
    let update = sim
        .git
        .update_ref(&name, &refname, sha, force)
        .await
        .map_err(|e| match e {
            git::GitError::NotFastForward(_) => {
                ApiError::unprocessable("Update is not a fast forward")
            }
            other => other.into(),
        })?;
    if update.old.as_deref() != Some(sha) {
        after_ref_change(
            &sim,
            &name,
            &refname,
            update.old.clone(),
            Some(sha.to_owned()),
            &login,
        )
        .await;
    }
    let kind = sim
        .git
        .object_type(&name, sha)
        .await?
        .map(|k| k.as_str())
        .unwrap_or("commit");
    ok(StatusCode::OK, ref_json(&sim, &name, &refname, sha, kind))
}

/// The `push` webhook's commit objects: new commits from `before` to `after`, oldest first (at most 20).
async fn push_commits(sim: &SimInner, name: &str, before: Option<&str>, after: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut next = Some(after.to_owned());
    while let Some(sha) = next.take() {
        if Some(sha.as_str()) == before || out.len() >= 20 {
            break;
        }
        if let Some(b) = before
            && sim.git.is_ancestor(name, &sha, b).await.unwrap_or(false)
        {
            break;
        }
        let Ok(Some(c)) = sim.git.commit(name, &sha).await else {
            break;
        };
        let person =
            |s: &Signature| json!({"name": s.name, "email": s.email, "date": timestamp(s.date)});
        out.push(json!({
            "id": c.sha,
            "tree_id": c.tree,
            "distinct": true,
            "message": c.message,
            "timestamp": timestamp(c.committer.date),
            "url": format!("{}/{name}/commit/{}", sim.urls.web, c.sha),
            "author": person(&c.author),
            "committer": person(&c.committer),
            "added": [],
            "removed": [],
            "modified": [],
        }));
        if before.is_none() {
            break; // a new branch: GitHub lists only the head commit
        }
        next = c.parents.first().cloned();
    }
    out.reverse();
    out
}

/// After a ref moved (REST, merge or git push): `push`, PR head/base updates and
/// `pull_request.synchronize`, as GitHub sends them; then the push-triggered
/// workflows of a branch that moved to a commit start (see [`super::ci`]).
pub async fn after_ref_change(
    sim: &Sim,
    name: &str,
    refname: &str,
    before: Option<String>,
    after: Option<String>,
    pusher: &str,
) {
    let commits = match &after {
        Some(a) => push_commits(sim, name, before.as_deref(), a).await,
        None => Vec::new(),
    };
    // GitHub marks a push that dropped commits (the old head is not in the new
    // history) as forced; Apps use it to tell a rewrite from new work.
    let forced = match (&before, &after) {
        (Some(b), Some(a)) => !sim.git.is_ancestor(name, b, a).await.unwrap_or(true),
        _ => false,
    };
    let branch = refname.strip_prefix("refs/heads/").map(str::to_owned);
    // Figures for PRs whose head moved, computed before taking the lock.
    let mut synced = Vec::new();
    if let (Some(branch), Some(after)) = (&branch, &after) {
        let pulls: Vec<(u64, String)> = {
            let world = sim.world();
            world
                .repos
                .get(name)
                .map(|r| {
                    r.pull_by_head(branch)
                        .filter_map(|i| i.pull.as_ref().map(|p| (i.number, p.base_ref.clone())))
                        .collect()
                })
                .unwrap_or_default()
        };
        for (number, base_ref) in pulls {
            let stats = super::api::pull_stats(sim, name, &base_ref, after, false).await;
            let base_sha = sim
                .git
                .resolve_ref(name, &format!("refs/heads/{base_ref}"))
                .await
                .ok()
                .flatten();
            synced.push((number, stats, base_sha));
        }
    }
    let mut world = sim.world();
    let now = sim.clock.now();
    let Some(repo) = world.repos.get_mut(name) else {
        return;
    };
    repo.pushed_at = now;
    let before_s = before.clone().unwrap_or_else(|| ZERO_SHA.to_owned());
    let after_s = after.clone().unwrap_or_else(|| ZERO_SHA.to_owned());
    let mut sync_payloads = Vec::new();
    for (number, stats, base_sha) in synced {
        if let Some(issue) = repo.issues.get_mut(&number)
            && issue.state == IssueState::Open
            && let Some(pull) = issue.pull.as_mut()
        {
            pull.head_sha = after_s.clone();
            if let Some(b) = base_sha {
                pull.base_sha = b;
            }
            issue.updated_at = now;
            sync_payloads.push((number, stats));
        }
    }
    let head_commit = commits.last().cloned().unwrap_or(Value::Null);
    let payload = sim_fields!(
        "ref" => refname,
        "before" => before_s,
        "after" => after_s,
        "created" => before.is_none(),
        "deleted" => after.is_none(),
        "forced" => forced,
        "base_ref" => Value::Null,
        "compare" => format!("{}/{name}/compare/{}...{}", sim.urls.web, &before_s[..12], &after_s[..12]),
        "commits" => commits,
        "head_commit" => head_commit,
        "pusher" => json!({"name": pusher, "email": format!("{pusher}@users.noreply.sim")}),
    );
    // What a push-triggered job finds at `GITHUB_EVENT_PATH`.
    let push_event = match (&branch, &after) {
        (Some(_), Some(_)) if !sim.config.push_workflows.is_empty() => {
            let mut event = payload.clone();
            event.insert(
                "repository".into(),
                render::repository(&sim.urls, &world, &world.repos[name], RepoTimes::PushEvent),
            );
            event.insert(
                "sender".into(),
                render::user_by_login(&sim.urls, &world, pusher),
            );
            Some(Value::Object(event))
        }
        _ => None,
    };
    sim.emit(&world, "push", name, pusher, payload);
    for (number, stats) in sync_payloads {
        let repo = &world.repos[name];
        let pr = render::pull(&sim.urls, &world, repo, &repo.issues[&number], stats);
        sim.emit(&world, "pull_request", name, pusher,
            sim_fields!("action" => "synchronize", "number" => number, "before" => before_s, "after" => after_s, "pull_request" => pr));
    }
    drop(world);
    sim.bump();
    if let (Some(branch), Some(after), Some(event)) = (branch, after, push_event) {
        super::ci::on_push(
            sim,
            super::ci::Push {
                repository: name.to_owned(),
                branch,
                before,
                after,
                pusher: pusher.to_owned(),
                event,
            },
        );
    }
}

/// Git smart HTTP at `/{owner}/{repo}.git/...`, authenticated like github.com:
/// HTTP Basic with a token as the password (`x-access-token:<token>`).
pub async fn git_http_or_404(State(sim): State<Sim>, request: Request) -> Response {
    match git_http(&sim, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn git_http(sim: &Sim, request: Request) -> Result<Response, ApiError> {
    let Some((name, rest)) = git::split_git_http_path(request.uri().path()) else {
        return Err(ApiError::not_found());
    };
    let query = request.uri().query().map(str::to_owned);
    let pushing =
        rest == "/git-receive-pack" || query.as_deref() == Some("service=git-receive-pack");

    let unauthorized = || {
        let mut r = (StatusCode::UNAUTHORIZED, "Authentication required\n").into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"GitHub\""),
        );
        r
    };
    let credential = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .map(|userpass| match userpass.split_once(':') {
            Some((user, "")) => user.to_owned(),
            Some((_, password)) => password.to_owned(),
            None => userpass,
        });
    let caller = match credential {
        Some(c) => match caller_from_credential(sim, &c) {
            Ok(caller) => caller,
            Err(_) => return Ok(unauthorized()),
        },
        None => {
            let public = sim.world().repos.get(&name).is_some_and(|r| !r.private);
            if pushing || !public {
                return Ok(unauthorized());
            }
            Caller::Anonymous
        }
    };
    let login = if matches!(caller, Caller::Anonymous) {
        "anonymous".to_owned()
    } else {
        let needed = if pushing {
            Permission::Write
        } else {
            Permission::Read
        };
        match check_access(sim, &caller, &name, needed) {
            Ok(login) => login,
            Err(e) if e.status == StatusCode::FORBIDDEN => {
                return Ok((
                    StatusCode::FORBIDDEN,
                    format!(
                        "Permission to {name}.git denied to {}.\n",
                        caller.describe()
                    ),
                )
                    .into_response());
            }
            Err(e) => return Err(e),
        }
    };

    let method = request.method().to_string();
    let (content_type, content_encoding, git_protocol) = {
        let header_str = |h: header::HeaderName| {
            request
                .headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (
            header_str(header::CONTENT_TYPE),
            header_str(header::CONTENT_ENCODING),
            header_str(header::HeaderName::from_static("git-protocol")),
        )
    };
    let body: Bytes = axum::body::to_bytes(request.into_body(), 512 << 20)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "push too large"))?;
    let signed_only: Vec<String> = sim
        .world()
        .repos
        .get(&name)
        .map(|r| {
            r.rulesets
                .iter()
                .filter(|set| set.require_signed_commits)
                .flat_map(|set| set.case_patterns())
                .collect()
        })
        .unwrap_or_default();
    let answer = sim
        .git
        .http_backend(git::HttpBackendRequest {
            full_name: name.clone(),
            method,
            path_info_suffix: rest,
            query,
            content_type,
            content_encoding,
            git_protocol,
            remote_user: login.clone(),
            body,
            signed_only,
        })
        .await?;
    for change in &answer.ref_changes {
        after_ref_change(
            sim,
            &name,
            &change.refname,
            change.before.clone(),
            change.after.clone(),
            &login,
        )
        .await;
    }
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    for (k, v) in answer.headers {
        if let (Ok(k), Ok(v)) = (
            header::HeaderName::try_from(k.as_str()),
            HeaderValue::from_str(&v),
        ) {
            response.headers_mut().insert(k, v);
        }
    }
    Ok(response)
}
