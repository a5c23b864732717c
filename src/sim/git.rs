//! Git hosting for the simulator: bare repositories on disk driven by the
//! `git` CLI, so simulated GitHub serves real clones, pushes and merges
//! instead of faking git semantics.
//!
//! Every git process runs with a scrubbed environment so the host user's
//! configuration can never change results. Writes to one repository are
//! serialised by a per-repository async mutex (so compare-and-swap ref
//! updates and "before/after" ref diffs are meaningful); reads run
//! concurrently, which git's object store and ref backend allow.
//!
//! Error contract, so callers can map to HTTP like GitHub does:
//! `NotFound` → 404 (the repository, or the resource named in the URL);
//! `Invalid` → 422 (bad input, or a body referencing a missing/wrong object);
//! `Conflict` → 409 (stale sha, merge conflict, existing ref);
//! `NotFastForward` → 422 "Update is not a fast forward";
//! `Command`/`Io` → 500.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use time::{OffsetDateTime, UtcOffset};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::OwnedMutexGuard;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not a fast forward: {0}")]
    NotFastForward(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("git {} failed ({status}): {stderr}", .args.join(" "))]
    Command {
        args: Vec<String>,
        status: String,
        stderr: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T, E = GitError> = std::result::Result<T, E>;

/// Author or committer identity; the date keeps its UTC offset because git
/// records it and GitHub shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub email: String,
    pub date: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Blob,
    Tree,
    Commit,
    Tag,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Blob => "blob",
            ObjectKind::Tree => "tree",
            ObjectKind::Commit => "commit",
            ObjectKind::Tag => "tag",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "blob" => Some(ObjectKind::Blob),
            "tree" => Some(ObjectKind::Tree),
            "commit" => Some(ObjectKind::Commit),
            "tag" => Some(ObjectKind::Tag),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitObject {
    pub sha: String,
    pub tree: String,
    pub parents: Vec<String>,
    pub author: Signature,
    pub committer: Signature,
    pub message: String,
}

/// The contents API's notion of an entry type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirEntryKind {
    File,
    Dir,
    Symlink,
    Submodule,
}

impl DirEntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DirEntryKind::File => "file",
            DirEntryKind::Dir => "dir",
            DirEntryKind::Symlink => "symlink",
            DirEntryKind::Submodule => "submodule",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    /// Full path from the repository root.
    pub path: String,
    pub sha: String,
    pub kind: DirEntryKind,
    /// Blob size; 0 for directories and submodules (as GitHub reports).
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathContent {
    File {
        sha: String,
        size: u64,
        content: Vec<u8>,
        /// "100644" or "100755".
        mode: String,
    },
    Symlink {
        sha: String,
        target: String,
    },
    Submodule {
        /// The commit the gitlink points at (in another repository).
        sha: String,
    },
    Dir(Vec<DirEntry>),
}

/// One entry of a git tree listing (GET /git/trees).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub path: String,
    /// Six-digit octal mode as GitHub prints it ("100644", "040000", ...).
    pub mode: String,
    pub kind: ObjectKind,
    pub sha: String,
    /// Blob size; None for trees and submodules.
    pub size: Option<u64>,
}

/// What a POST /git/trees entry does to its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeEntrySource {
    /// Point the path at an existing object (a gitlink's commit need not exist).
    Sha(String),
    /// Store these bytes as a new blob.
    Content(Vec<u8>),
    /// `"sha": null`: remove the path (file or whole directory) from the base tree.
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntryInput {
    /// Slash-separated path; intermediate directories are created as needed.
    pub path: String,
    /// "100644", "100755", "040000", "160000" or "120000"; the object type
    /// follows from it (GitHub's redundant `type` field is not needed).
    pub mode: String,
    pub source: TreeEntrySource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub old: Option<String>,
    pub new: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeMethod {
    /// A merge commit with parents (base, head), even when a fast-forward is possible.
    Merge,
    /// One commit on base carrying the merged tree.
    Squash,
    /// Replay head's commits onto base (authors kept, committer replaced).
    Rebase,
}

/// One smart-HTTP request, already authenticated by the caller.
#[derive(Debug, Clone)]
pub struct HttpBackendRequest {
    /// "owner/repo" (a trailing ".git" is not part of it).
    pub full_name: String,
    pub method: String,
    /// "/info/refs", "/git-upload-pack" or "/git-receive-pack".
    pub path_info_suffix: String,
    pub query: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// The `Git-Protocol` request header; forwarding it enables protocol v2.
    pub git_protocol: Option<String>,
    pub remote_user: String,
    pub body: Bytes,
    /// `case` patterns of refs that take only signed commits (rulesets).
    pub signed_only: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct HttpBackendResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Refs changed by a receive-pack POST (empty for anything else), for push webhooks.
    pub ref_changes: Vec<RefChange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefChange {
    pub refname: String,
    /// None when the ref was created.
    pub before: Option<String>,
    /// None when the ref was deleted.
    pub after: Option<String>,
}

/// Smart-HTTP endpoints we serve; the dumb protocol's file paths are refused.
const HTTP_SUFFIXES: [&str; 3] = ["/info/refs", "/git-upload-pack", "/git-receive-pack"];

/// Splits a request path like `/owner/repo.git/info/refs` into
/// ("owner/repo", "/info/refs"), so a router can hand it to `http_backend`.
/// The ".git" is optional, as on GitHub.
pub fn split_git_http_path(path: &str) -> Option<(String, String)> {
    let suffix = HTTP_SUFFIXES.iter().find(|s| path.ends_with(*s))?;
    let repo_part = path[..path.len() - suffix.len()].strip_prefix('/')?;
    let (owner, repo) = repo_part.split_once('/')?;
    let repo = repo.strip_suffix(".git").unwrap_or(repo);
    let full = format!("{owner}/{repo}");
    split_full_name(&full).ok()?;
    Some((full, (*suffix).to_string()))
}

/// Hosts bare repositories under `root/<owner>/<repo>.git` (lower-cased,
/// because GitHub names are case-insensitive). Share it behind an `Arc`.
pub struct GitHost {
    root: PathBuf,
    home: PathBuf,
    path_env: OsString,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for GitHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHost").field("root", &self.root).finish()
    }
}

/// A parsed `ls-tree -z --long` line; `path` stays raw bytes so names that
/// are not UTF-8 survive a rewrite unchanged.
#[derive(Debug, Clone)]
struct RawEntry {
    mode: String,
    kind: ObjectKind,
    sha: String,
    size: Option<u64>,
    path: Vec<u8>,
}

#[derive(Debug, Clone)]
struct ObjInfo {
    sha: String,
    kind: ObjectKind,
}

/// In-memory tree under edit: only directories on edited paths are loaded.
#[derive(Debug, Default)]
struct DirNode {
    entries: BTreeMap<Vec<u8>, Node>,
}

#[derive(Debug)]
enum Node {
    Leaf(Leaf),
    Dir(DirNode),
}

#[derive(Debug, Clone)]
struct Leaf {
    mode: String,
    kind: ObjectKind,
    sha: String,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl GitHost {
    /// `root` is made absolute, because git runs with the repository as its
    /// working directory.
    pub fn new(root: PathBuf) -> Self {
        let root = std::path::absolute(&root).unwrap_or(root);
        let home = root.join(".home");
        let path_env = std::env::var_os("PATH")
            .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
        GitHost {
            root,
            home,
            path_env,
            locks: Mutex::new(HashMap::new()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/<owner>/<repo>.git`, after checking the name cannot escape `root`.
    pub fn repo_path(&self, full_name: &str) -> Result<PathBuf> {
        let (owner, repo) = split_full_name(full_name)?;
        Ok(self.root.join(owner).join(format!("{repo}.git")))
    }

    /// A bare repository with one initial commit on `default_branch` holding
    /// `files` (nested paths allowed). Returns the commit sha.
    pub async fn create_repo(
        &self,
        full_name: &str,
        default_branch: &str,
        files: &[(String, Vec<u8>)],
        author: &Signature,
        message: &str,
    ) -> Result<String> {
        let branch_ref = branch_ref(default_branch)?;
        for (path, _) in files {
            split_path(path)?;
        }
        check_signature(author)?;
        check_message(message)?;
        let (path, _guard) = self.lock_path(full_name).await?;
        self.init_locked(full_name, &path, &branch_ref).await?;
        let result = async {
            let mut root = DirNode::default();
            for (file, content) in files {
                let blob = self.hash_object(&path, content).await?;
                let comps = split_path(file)?;
                let leaf = Leaf {
                    mode: "100644".into(),
                    kind: ObjectKind::Blob,
                    sha: blob,
                };
                self.tree_set(&path, &mut root, &comps, Some(leaf)).await?;
            }
            let tree = self.write_root(&path, &root).await?;
            let commit = self
                .commit_tree(&path, &tree, &[], message, author, author)
                .await?;
            self.cas_ref(&path, &branch_ref, &commit, None).await?;
            Ok(commit)
        }
        .await;
        if result.is_err() {
            // Leave no half-made repository behind, so a retry can succeed.
            let _ = tokio::fs::remove_dir_all(&path).await;
        }
        result
    }

    /// Exact lookup of one ref; "heads/x" and "refs/heads/x" are the same ref.
    pub async fn resolve_ref(&self, full_name: &str, refname: &str) -> Result<Option<String>> {
        let refname = normalize_ref(refname)?;
        let path = self.open(full_name).await?;
        self.read_ref(&path, &refname).await
    }

    /// Every ref under refs/ with the object it points at, sorted by name.
    pub async fn list_refs(&self, full_name: &str) -> Result<Vec<(String, String)>> {
        let path = self.open(full_name).await?;
        self.all_refs(&path).await
    }

    /// The type of an object given by (possibly abbreviated) hex sha.
    pub async fn object_type(&self, full_name: &str, sha: &str) -> Result<Option<ObjectKind>> {
        let path = self.open(full_name).await?;
        Ok(self.object_info(&path, sha).await?.map(|i| i.kind))
    }

    pub async fn commit(&self, full_name: &str, sha: &str) -> Result<Option<CommitObject>> {
        let path = self.open(full_name).await?;
        self.read_commit(&path, sha).await
    }

    /// The contents API: what is at `path` in `commitish` ("" or "/" = root).
    pub async fn read_path(
        &self,
        full_name: &str,
        commitish: &str,
        path: &str,
    ) -> Result<Option<PathContent>> {
        let repo = self.open(full_name).await?;
        let Some(root) = self.peel(&repo, commitish, "tree").await? else {
            return Ok(None);
        };
        let Ok(comps) = split_path_lenient(path) else {
            return Ok(None);
        };
        if comps.is_empty() {
            return Ok(Some(PathContent::Dir(
                self.list_dir(&repo, &root, "").await?,
            )));
        }
        let path = comps.join("/");
        let Some(entry) = self.lookup(&repo, &root, &path).await? else {
            return Ok(None);
        };
        Ok(Some(match entry.kind {
            ObjectKind::Tree => PathContent::Dir(self.list_dir(&repo, &entry.sha, &path).await?),
            ObjectKind::Commit => PathContent::Submodule { sha: entry.sha },
            ObjectKind::Blob => {
                let content = self
                    .git_ok(&repo, &["cat-file", "blob", &entry.sha], &[], None)
                    .await?;
                if entry.mode == "120000" {
                    PathContent::Symlink {
                        sha: entry.sha,
                        target: String::from_utf8_lossy(&content).into_owned(),
                    }
                } else {
                    PathContent::File {
                        sha: entry.sha,
                        size: content.len() as u64,
                        content,
                        mode: entry.mode,
                    }
                }
            }
            ObjectKind::Tag => return Ok(None),
        }))
    }

    pub async fn create_blob(&self, full_name: &str, content: &[u8]) -> Result<String> {
        let path = self.open(full_name).await?;
        self.hash_object(&path, content).await
    }

    /// POST /git/trees. Entries apply in order on top of `base_tree` (or an
    /// empty tree); directories left empty by deletions disappear, as in git.
    /// Only objects are written, so no repository lock is needed.
    pub async fn create_tree(
        &self,
        full_name: &str,
        base_tree: Option<&str>,
        entries: &[TreeEntryInput],
    ) -> Result<String> {
        let repo = self.open(full_name).await?;
        let mut root = match base_tree {
            Some(base) => match self.object_info(&repo, base).await? {
                Some(info) if info.kind == ObjectKind::Tree => {
                    self.load_dir(&repo, &info.sha).await?
                }
                _ => {
                    return Err(GitError::Invalid(format!(
                        "base_tree {base} is not a valid tree"
                    )));
                }
            },
            None => DirNode::default(),
        };
        for entry in entries {
            let comps = split_path(&entry.path)?;
            let leaf = match &entry.source {
                TreeEntrySource::Delete => None,
                TreeEntrySource::Sha(sha) => {
                    let (mode, kind) = check_mode(&entry.mode, &entry.path)?;
                    let sha = if kind == ObjectKind::Commit {
                        // A gitlink names a commit in another repository.
                        if !is_full_hex(sha) {
                            return Err(GitError::Invalid(format!(
                                "tree.sha {sha} is not a valid commit id"
                            )));
                        }
                        sha.to_ascii_lowercase()
                    } else {
                        match self.object_info(&repo, sha).await? {
                            Some(info) if info.kind == kind && is_full_hex(sha) => info.sha,
                            Some(info) if is_full_hex(sha) => {
                                return Err(GitError::Invalid(format!(
                                    "tree.sha {sha} is a {}, not a {} (mode {mode})",
                                    info.kind.as_str(),
                                    kind.as_str()
                                )));
                            }
                            _ => {
                                return Err(GitError::Invalid(format!(
                                    "tree.sha {sha} is not a valid {}",
                                    kind.as_str()
                                )));
                            }
                        }
                    };
                    Some(Leaf { mode, kind, sha })
                }
                TreeEntrySource::Content(content) => {
                    let (mode, kind) = check_mode(&entry.mode, &entry.path)?;
                    if kind != ObjectKind::Blob {
                        return Err(GitError::Invalid(format!(
                            "{}: content is only allowed for blobs, not mode {mode}",
                            entry.path
                        )));
                    }
                    let sha = self.hash_object(&repo, content).await?;
                    Some(Leaf { mode, kind, sha })
                }
            };
            self.tree_set(&repo, &mut root, &comps, leaf).await?;
        }
        self.write_root(&repo, &root).await
    }

    /// GET /git/trees/{tree_sha} (tree-ish accepted); `recursive` lists
    /// subtrees and their contents, trees included, with full paths.
    pub async fn tree_entries(
        &self,
        full_name: &str,
        tree_sha: &str,
        recursive: bool,
    ) -> Result<Vec<TreeEntry>> {
        let repo = self.open(full_name).await?;
        let tree = self
            .peel(&repo, tree_sha, "tree")
            .await?
            .ok_or_else(|| GitError::NotFound(format!("tree {tree_sha}")))?;
        let mut args = vec!["ls-tree", "-z", "--long"];
        if recursive {
            args.extend(["-r", "-t"]);
        }
        args.push(&tree);
        let out = self.git_ok(&repo, &args, &[], None).await?;
        Ok(parse_ls_tree(&out)?
            .into_iter()
            .map(|e| TreeEntry {
                path: String::from_utf8_lossy(&e.path).into_owned(),
                mode: e.mode,
                kind: e.kind,
                sha: e.sha,
                size: e.size,
            })
            .collect())
    }

    /// POST /git/commits: tree and parents must exist with the right types.
    pub async fn create_commit(
        &self,
        full_name: &str,
        message: &str,
        tree: &str,
        parents: &[String],
        author: &Signature,
        committer: &Signature,
    ) -> Result<String> {
        check_message(message)?;
        check_signature(author)?;
        check_signature(committer)?;
        let repo = self.open(full_name).await?;
        let tree = match self.object_info(&repo, tree).await? {
            Some(info) if info.kind == ObjectKind::Tree => info.sha,
            _ => {
                return Err(GitError::Invalid(format!(
                    "tree {tree} is not a valid tree"
                )));
            }
        };
        let mut parent_shas = Vec::with_capacity(parents.len());
        for parent in parents {
            match self.object_info(&repo, parent).await? {
                Some(info) if info.kind == ObjectKind::Commit => parent_shas.push(info.sha),
                _ => {
                    return Err(GitError::Invalid(format!(
                        "parent {parent} is not a valid commit"
                    )));
                }
            }
        }
        self.commit_tree(&repo, &tree, &parent_shas, message, author, committer)
            .await
    }

    /// PATCH /git/refs: moves an existing ref. Without `force` the new commit
    /// must descend from the current one.
    pub async fn update_ref(
        &self,
        full_name: &str,
        refname: &str,
        new_sha: &str,
        force: bool,
    ) -> Result<RefUpdate> {
        let refname = normalize_ref(refname)?;
        let (repo, _guard) = self.lock_open(full_name).await?;
        let Some(current) = self.read_ref(&repo, &refname).await? else {
            return Err(GitError::Invalid("Reference does not exist".into()));
        };
        let new = self.ref_target(&repo, &refname, new_sha).await?;
        if !force && new.sha != current {
            let current_is_commit = matches!(
                self.object_info(&repo, &current).await?,
                Some(ObjInfo {
                    kind: ObjectKind::Commit,
                    ..
                })
            );
            if !current_is_commit
                || new.kind != ObjectKind::Commit
                || !self.ancestor(&repo, &current, &new.sha).await?
            {
                return Err(GitError::NotFastForward(format!(
                    "Update is not a fast forward: {refname} {current} -> {}",
                    new.sha
                )));
            }
        }
        self.cas_ref(&repo, &refname, &new.sha, Some(&current))
            .await?;
        Ok(RefUpdate {
            old: Some(current),
            new: new.sha,
        })
    }

    /// POST /git/refs: `refname` must be a full "refs/..." name with at least
    /// two slashes; Conflict when it (or a clashing parent/child ref) exists.
    pub async fn create_ref(&self, full_name: &str, refname: &str, sha: &str) -> Result<()> {
        if !refname.starts_with("refs/") || refname.matches('/').count() < 2 {
            return Err(GitError::Invalid(
                "Reference name must start with 'refs/' and have at least two slashes.".into(),
            ));
        }
        check_refname(refname)?;
        let (repo, _guard) = self.lock_open(full_name).await?;
        let target = self.ref_target(&repo, refname, sha).await?;
        for (existing, _) in self.all_refs(&repo).await? {
            // Loose refs are files, so "a" and "a/b" cannot both exist.
            if existing == refname
                || existing.starts_with(&format!("{refname}/"))
                || refname.starts_with(&format!("{existing}/"))
            {
                return Err(GitError::Conflict("Reference already exists".into()));
            }
        }
        self.cas_ref(&repo, refname, &target.sha, Some("")).await
    }

    /// Deletes a ref (a branch GitHub removes on its own, as a merge queue's).
    pub async fn delete_ref(&self, full_name: &str, refname: &str) -> Result<()> {
        let (repo, _guard) = self.lock_open(full_name).await?;
        let args = ["update-ref", "-d", refname];
        let out = self.git(&repo, &args, &[], None).await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(command_error(&args, &out))
        }
    }

    /// Whether `ancestor` is reachable from `descendant` (a commit is its own
    /// ancestor). Both are revisions; NotFound if either does not resolve.
    pub async fn is_ancestor(
        &self,
        full_name: &str,
        ancestor: &str,
        descendant: &str,
    ) -> Result<bool> {
        let repo = self.open(full_name).await?;
        let a = self.must_commit(&repo, ancestor).await?;
        let d = self.must_commit(&repo, descendant).await?;
        self.ancestor(&repo, &a, &d).await
    }

    /// Number of commits reachable from `head` but not from `base`.
    pub async fn count_commits(&self, full_name: &str, base: &str, head: &str) -> Result<u64> {
        let repo = self.open(full_name).await?;
        let base = self.must_commit(&repo, base).await?;
        let head = self.must_commit(&repo, head).await?;
        let exclude = format!("^{base}");
        let out = self
            .git_ok(&repo, &["rev-list", "--count", &head, &exclude], &[], None)
            .await?;
        let text = String::from_utf8_lossy(&out);
        text.trim().parse().map_err(|_| GitError::Command {
            args: vec!["rev-list".into(), "--count".into()],
            status: "ok".into(),
            stderr: format!("unexpected output {:?}", text.trim()),
        })
    }

    /// Whether `head` merges into `base` without conflicts (a PR's
    /// `mergeable`). Writes only unreferenced objects.
    pub async fn can_merge(&self, full_name: &str, base: &str, head: &str) -> Result<bool> {
        let repo = self.open(full_name).await?;
        let base = self.must_commit(&repo, base).await?;
        let head = self.must_commit(&repo, head).await?;
        if self.base_of(&repo, &base, &head).await?.is_none() {
            return Ok(false);
        }
        match self.merge_trees(&repo, &base, &head, None).await {
            Ok(_) => Ok(true),
            Err(GitError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// PUT /contents: commits `content` at `path` on an existing `branch`.
    /// When the file exists, `expected_blob_sha` is required (Invalid if
    /// absent, Conflict if stale). Returns (commit sha, blob sha).
    #[allow(clippy::too_many_arguments)]
    pub async fn put_file(
        &self,
        full_name: &str,
        branch: &str,
        path: &str,
        content: &[u8],
        message: &str,
        expected_blob_sha: Option<&str>,
        author: &Signature,
        committer: &Signature,
    ) -> Result<(String, String)> {
        let refname = branch_ref(branch)?;
        let comps = split_path(path)?;
        let path = comps.join("/");
        check_message(message)?;
        check_signature(author)?;
        check_signature(committer)?;
        let (repo, _guard) = self.lock_open(full_name).await?;
        let tip = self
            .read_ref(&repo, &refname)
            .await?
            .ok_or_else(|| GitError::NotFound(format!("Branch {branch} not found")))?;
        let tree = self.must_tree(&repo, &tip).await?;
        let mode = match self.lookup(&repo, &tree, &path).await? {
            Some(existing) if existing.kind == ObjectKind::Blob => {
                match expected_blob_sha {
                    None => {
                        return Err(GitError::Invalid(format!(
                            "\"sha\" wasn't supplied for existing file {path}"
                        )));
                    }
                    Some(sha) if !sha.eq_ignore_ascii_case(&existing.sha) => {
                        return Err(GitError::Conflict(format!("{path} does not match {sha}")));
                    }
                    Some(_) => {}
                }
                if existing.mode == "100755" {
                    "100755"
                } else {
                    "100644"
                }
            }
            Some(_) => {
                return Err(GitError::Invalid(format!("{path} is not a file")));
            }
            None => "100644",
        };
        let blob = self.hash_object(&repo, content).await?;
        let mut root = self.load_dir(&repo, &tree).await?;
        let leaf = Leaf {
            mode: mode.into(),
            kind: ObjectKind::Blob,
            sha: blob.clone(),
        };
        self.tree_set(&repo, &mut root, &comps, Some(leaf)).await?;
        let new_tree = self.write_root(&repo, &root).await?;
        let commit = self
            .commit_tree(
                &repo,
                &new_tree,
                std::slice::from_ref(&tip),
                message,
                author,
                committer,
            )
            .await?;
        self.cas_ref(&repo, &refname, &commit, Some(&tip)).await?;
        Ok((commit, blob))
    }

    /// PUT /pulls/{n}/merge: merges `head_sha` into `base_branch` without a
    /// worktree (`git merge-tree --write-tree`), then moves the branch with a
    /// compare-and-swap. Conflict (and base untouched) when the merge
    /// conflicts or the histories are unrelated; Invalid when head is already
    /// contained in base. `message` is unused for Rebase, which keeps each
    /// commit's author and message. Returns the new tip of base.
    /// The merge or squash commit is authored by `committer`; see `merge_as`.
    pub async fn merge(
        &self,
        full_name: &str,
        base_branch: &str,
        head_sha: &str,
        method: MergeMethod,
        message: &str,
        committer: &Signature,
    ) -> Result<String> {
        self.merge_as(
            full_name,
            base_branch,
            head_sha,
            method,
            message,
            committer,
            committer,
        )
        .await
    }

    /// `merge` with a separate author for the merge or squash commit (GitHub
    /// credits the merging user while "GitHub" commits).
    #[allow(clippy::too_many_arguments)]
    async fn merge_as(
        &self,
        full_name: &str,
        base_branch: &str,
        head_sha: &str,
        method: MergeMethod,
        message: &str,
        author: &Signature,
        committer: &Signature,
    ) -> Result<String> {
        let refname = branch_ref(base_branch)?;
        check_message(message)?;
        check_signature(author)?;
        check_signature(committer)?;
        let (repo, _guard) = self.lock_open(full_name).await?;
        let base = self
            .read_ref(&repo, &refname)
            .await?
            .ok_or_else(|| GitError::NotFound(format!("Branch {base_branch} not found")))?;
        let head = self.must_commit(&repo, head_sha).await?;
        if self.ancestor(&repo, &head, &base).await? {
            return Err(GitError::Invalid(format!(
                "{head} is already merged into {base_branch}"
            )));
        }
        if self.base_of(&repo, &base, &head).await?.is_none() {
            return Err(GitError::Conflict(format!(
                "{head} and {base_branch} have no common history"
            )));
        }
        let new = match method {
            MergeMethod::Merge => {
                let tree = self.merge_trees(&repo, &base, &head, None).await?;
                self.commit_tree(
                    &repo,
                    &tree,
                    &[base.clone(), head.clone()],
                    message,
                    author,
                    committer,
                )
                .await?
            }
            MergeMethod::Squash => {
                let tree = self.merge_trees(&repo, &base, &head, None).await?;
                self.commit_tree(
                    &repo,
                    &tree,
                    std::slice::from_ref(&base),
                    message,
                    author,
                    committer,
                )
                .await?
            }
            MergeMethod::Rebase => {
                let commits = self.rev_list(&repo, &head, &base).await?;
                if let Some((sha, _)) = commits.iter().find(|(_, parents)| parents.len() != 1) {
                    return Err(GitError::Invalid(format!(
                        "cannot rebase merge commit {sha}"
                    )));
                }
                let mut tip = base.clone();
                for (sha, parents) in &commits {
                    let tree = self
                        .merge_trees(&repo, &tip, sha, Some(&parents[0]))
                        .await?;
                    let original = self
                        .read_commit(&repo, sha)
                        .await?
                        .ok_or_else(|| GitError::NotFound(format!("commit {sha}")))?;
                    tip = self
                        .commit_tree(
                            &repo,
                            &tree,
                            std::slice::from_ref(&tip),
                            &original.message,
                            &original.author,
                            committer,
                        )
                        .await?;
                }
                tip
            }
        };
        self.cas_ref(&repo, &refname, &new, Some(&base)).await?;
        Ok(new)
    }

    /// A hooks directory whose `pre-receive` refuses commits without a
    /// verified signature on refs matching `$SIM_SIGNED_ONLY`, with GitHub's
    /// words for a ruleset's refusal.
    async fn signed_only_hooks(&self) -> Result<PathBuf> {
        const HOOK: &str = r#"#!/bin/sh
set -f
zero=0000000000000000000000000000000000000000
status=0
while read old new ref; do
  [ "$new" = "$zero" ] && continue
  match=
  for pattern in $SIM_SIGNED_ONLY; do
    case "$ref" in $pattern) match=1 ;; esac
  done
  [ -z "$match" ] && continue
  if [ "$old" = "$zero" ]; then
    commits=$(git rev-list "$new" --not --all)
  else
    commits=$(git rev-list "$old..$new")
  fi
  for commit in $commits; do
    if [ "$(git log -1 --format=%G? "$commit")" != G ]; then
      echo "error: GH013: Repository rule violations found for $ref." >&2
      echo "" >&2
      echo "- Commits must have verified signatures." >&2
      echo "  Found 1 violation:" >&2
      echo "" >&2
      echo "  $commit" >&2
      status=1
      break
    fi
  done
done
exit $status
"#;
        let dir = self.root.join(".sim-hooks");
        let hook = dir.join("pre-receive");
        if !tokio::fs::try_exists(&hook).await.unwrap_or(false) {
            use std::os::unix::fs::PermissionsExt as _;
            let io = |e| io_err(format!("writing {}", hook.display()), e);
            tokio::fs::create_dir_all(&dir).await.map_err(io)?;
            let staged = dir.join(format!("pre-receive.{}", std::process::id()));
            tokio::fs::write(&staged, HOOK).await.map_err(io)?;
            tokio::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755))
                .await
                .map_err(io)?;
            tokio::fs::rename(&staged, &hook).await.map_err(io)?;
        }
        Ok(dir)
    }

    /// Serves one smart-HTTP request by running `git http-backend` as a CGI.
    /// Receive-pack POSTs hold the repository lock and report ref changes.
    pub async fn http_backend(&self, req: HttpBackendRequest) -> Result<HttpBackendResponse> {
        if !HTTP_SUFFIXES.contains(&req.path_info_suffix.as_str()) {
            return Err(GitError::NotFound(format!(
                "git http path {}",
                req.path_info_suffix
            )));
        }
        let (owner, name) = split_full_name(&req.full_name)?;
        let is_push =
            req.path_info_suffix == "/git-receive-pack" && req.method.eq_ignore_ascii_case("POST");
        let (repo, guard) = if is_push {
            let (repo, guard) = self.lock_open(&req.full_name).await?;
            (repo, Some(guard))
        } else {
            (self.open(&req.full_name).await?, None)
        };
        let before = if is_push {
            Some(self.all_refs(&repo).await?)
        } else {
            None
        };

        let path_info = format!("/{owner}/{name}.git{}", req.path_info_suffix);
        let mut cmd = self.command();
        if is_push && !req.signed_only.is_empty() {
            // receive-pack runs the hook; `-c` reaches it through the environment.
            let hooks = self.signed_only_hooks().await?;
            cmd.arg("-c")
                .arg(format!("core.hooksPath={}", hooks.display()))
                .env("SIM_SIGNED_ONLY", req.signed_only.join("\n"));
        }
        cmd.current_dir(&repo)
            .arg("http-backend")
            .env("GIT_PROJECT_ROOT", &self.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("PATH_INFO", &path_info)
            .env("REQUEST_METHOD", req.method.to_ascii_uppercase())
            .env("QUERY_STRING", req.query.as_deref().unwrap_or(""))
            .env("REMOTE_USER", &req.remote_user)
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("SERVER_PROTOCOL", "HTTP/1.1");
        if let Some(ct) = &req.content_type {
            cmd.env("CONTENT_TYPE", ct);
        }
        if let Some(ce) = &req.content_encoding {
            cmd.env("HTTP_CONTENT_ENCODING", ce);
        }
        if let Some(proto) = &req.git_protocol {
            cmd.env("GIT_PROTOCOL", proto);
        }
        if req.method.eq_ignore_ascii_case("POST") {
            cmd.env("CONTENT_LENGTH", req.body.len().to_string());
        }
        let args = vec!["http-backend".to_string(), path_info.clone()];
        let out = run_command(cmd, &args, Some(req.body.clone())).await?;
        let Some((status, headers, body)) = parse_cgi(&out.stdout) else {
            return Err(command_error(&args, &out));
        };
        if !out.status.success() {
            tracing::debug!(
                path = %path_info,
                stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                "git http-backend exited with {}",
                out.status
            );
        }
        let mut ref_changes = Vec::new();
        if let Some(before) = before {
            let after = self.all_refs(&repo).await?;
            ref_changes = diff_refs(&before, &after);
        }
        drop(guard);
        Ok(HttpBackendResponse {
            status,
            headers,
            body: Bytes::copy_from_slice(body),
            ref_changes,
        })
    }

    // ---- internals -------------------------------------------------------

    /// A git command with a scrubbed, deterministic environment.
    fn command(&self) -> Command {
        let mut cmd = Command::new("git");
        cmd.env_clear()
            .env("PATH", &self.path_env)
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_ATTR_NOSYSTEM", "1")
            // Paths from API callers are names, never glob patterns.
            .env("GIT_LITERAL_PATHSPECS", "1")
            .env("GIT_NO_REPLACE_OBJECTS", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // No kill_on_drop: a cancelled request must not kill git halfway
        // through a ref update and leave a stale `.lock` file behind.
        cmd
    }

    /// Runs git in `repo`; returns the output whatever the exit status.
    async fn git(
        &self,
        repo: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Result<Output> {
        let mut cmd = self.command();
        cmd.current_dir(repo).env("GIT_DIR", repo).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        run_command(cmd, &args, stdin.map(Bytes::copy_from_slice)).await
    }

    /// Runs git in `repo` and returns stdout, failing on a non-zero exit.
    async fn git_ok(
        &self,
        repo: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let out = self.git(repo, args, env, stdin).await?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(command_error(args, &out))
        }
    }

    async fn git_line(
        &self,
        repo: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Result<String> {
        let out = self.git_ok(repo, args, env, stdin).await?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    fn lock_for(&self, full_name: &str) -> Result<Arc<tokio::sync::Mutex<()>>> {
        let (owner, repo) = split_full_name(full_name)?;
        let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map.entry(format!("{owner}/{repo}")).or_default().clone())
    }

    /// Takes the repository's write lock; the repository need not exist.
    async fn lock_path(&self, full_name: &str) -> Result<(PathBuf, OwnedMutexGuard<()>)> {
        let path = self.repo_path(full_name)?;
        let guard = self.lock_for(full_name)?.lock_owned().await;
        Ok((path, guard))
    }

    async fn lock_open(&self, full_name: &str) -> Result<(PathBuf, OwnedMutexGuard<()>)> {
        let (path, guard) = self.lock_path(full_name).await?;
        if tokio::fs::metadata(path.join("HEAD")).await.is_err() {
            return Err(GitError::NotFound(format!("repository {full_name}")));
        }
        Ok((path, guard))
    }

    async fn open(&self, full_name: &str) -> Result<PathBuf> {
        let path = self.repo_path(full_name)?;
        if tokio::fs::metadata(path.join("HEAD")).await.is_err() {
            return Err(GitError::NotFound(format!("repository {full_name}")));
        }
        Ok(path)
    }

    async fn init_locked(&self, full_name: &str, path: &Path, head_ref: &str) -> Result<()> {
        if tokio::fs::metadata(path).await.is_ok() {
            return Err(GitError::Conflict(format!(
                "repository {full_name} already exists"
            )));
        }
        let parent = path.parent().unwrap_or(&self.root);
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io_err(format!("creating {}", parent.display()), e))?;
        let branch = head_ref.strip_prefix("refs/heads/").unwrap_or(head_ref);
        let initial = format!("--initial-branch={branch}");
        let path_str = path.to_string_lossy().into_owned();
        // No templates: sample hooks and descriptions are noise here.
        let args: [&str; 6] = [
            "init",
            "--bare",
            "--quiet",
            "--template=",
            &initial,
            &path_str,
        ];
        let mut cmd = self.command();
        cmd.current_dir(parent).args(args);
        let arg_strings: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = run_command(cmd, &arg_strings, None).await?;
        if !out.status.success() {
            let _ = tokio::fs::remove_dir_all(path).await;
            return Err(command_error(&args, &out));
        }
        // receivepack: pushes are authorised by our HTTP layer, not by git.
        // allowAnySHA1InWant: runners fetch exact commits by sha.
        // No auto-gc: it would run detached after pushes and race deletes.
        let extra = "[http]\n\treceivepack = true\n\
                     [uploadpack]\n\tallowAnySHA1InWant = true\n\
                     [receive]\n\tautogc = false\n\
                     [gc]\n\tauto = 0\n";
        let config = path.join("config");
        let mut file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&config)
            .await
            .map_err(|e| io_err(format!("opening {}", config.display()), e))?;
        file.write_all(extra.as_bytes())
            .await
            .map_err(|e| io_err(format!("writing {}", config.display()), e))?;
        file.flush()
            .await
            .map_err(|e| io_err(format!("writing {}", config.display()), e))?;
        Ok(())
    }

    async fn read_ref(&self, repo: &Path, refname: &str) -> Result<Option<String>> {
        // for-each-ref matches by prefix, so filter for the exact name.
        let out = self
            .git_ok(
                repo,
                &["for-each-ref", "--format=%(refname) %(objectname)", refname],
                &[],
                None,
            )
            .await?;
        Ok(parse_refs(&out)
            .into_iter()
            .find(|(name, _)| name == refname)
            .map(|(_, sha)| sha))
    }

    async fn all_refs(&self, repo: &Path) -> Result<Vec<(String, String)>> {
        let out = self
            .git_ok(
                repo,
                &["for-each-ref", "--format=%(refname) %(objectname)"],
                &[],
                None,
            )
            .await?;
        Ok(parse_refs(&out))
    }

    /// Looks up hex object names; anything that is not plain hex is simply
    /// missing, so no revision syntax reaches `cat-file`.
    async fn object_info(&self, repo: &Path, sha: &str) -> Result<Option<ObjInfo>> {
        if !is_hex(sha) || sha.len() < 4 || sha.len() > 64 {
            return Ok(None);
        }
        let input = format!("{sha}\n");
        let out = self
            .git_ok(
                repo,
                &["cat-file", "--batch-check=%(objectname) %(objecttype)"],
                &[],
                Some(input.as_bytes()),
            )
            .await?;
        let text = String::from_utf8_lossy(&out);
        let mut parts = text.split_whitespace();
        // "<sha> missing" / "<sha> ambiguous" have no type.
        let (Some(name), Some(kind)) = (parts.next(), parts.next().and_then(ObjectKind::parse))
        else {
            return Ok(None);
        };
        Ok(Some(ObjInfo {
            sha: name.to_string(),
            kind,
        }))
    }

    /// Resolves a user-supplied revision to an object of type `to`.
    async fn peel(&self, repo: &Path, rev: &str, to: &str) -> Result<Option<String>> {
        if !is_plain_rev(rev) {
            return Ok(None);
        }
        let spec = format!("{rev}^{{{to}}}");
        let out = self
            .git(
                repo,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    "--end-of-options",
                    &spec,
                ],
                &[],
                None,
            )
            .await?;
        match out.status.code() {
            Some(0) => Ok(Some(
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            )),
            Some(1) => Ok(None),
            _ => Err(command_error(&["rev-parse", "--verify", &spec], &out)),
        }
    }

    async fn must_commit(&self, repo: &Path, rev: &str) -> Result<String> {
        self.peel(repo, rev, "commit")
            .await?
            .ok_or_else(|| GitError::NotFound(format!("commit {rev}")))
    }

    async fn must_tree(&self, repo: &Path, rev: &str) -> Result<String> {
        self.peel(repo, rev, "tree")
            .await?
            .ok_or_else(|| GitError::NotFound(format!("tree of {rev}")))
    }

    async fn read_commit(&self, repo: &Path, sha: &str) -> Result<Option<CommitObject>> {
        let Some(info) = self.object_info(repo, sha).await? else {
            return Ok(None);
        };
        if info.kind != ObjectKind::Commit {
            return Ok(None);
        }
        let raw = self
            .git_ok(repo, &["cat-file", "commit", &info.sha], &[], None)
            .await?;
        Ok(Some(parse_commit(&info.sha, &raw)))
    }

    async fn hash_object(&self, repo: &Path, content: &[u8]) -> Result<String> {
        self.git_line(
            repo,
            &["hash-object", "-w", "--no-filters", "--stdin"],
            &[],
            Some(content),
        )
        .await
    }

    /// The entry at `path` (normalised, non-empty) inside tree `tree`.
    async fn lookup(&self, repo: &Path, tree: &str, path: &str) -> Result<Option<RawEntry>> {
        let out = self
            .git_ok(
                repo,
                &["ls-tree", "-z", "--long", tree, "--", path],
                &[],
                None,
            )
            .await?;
        Ok(parse_ls_tree(&out)?
            .into_iter()
            .find(|e| e.path == path.as_bytes()))
    }

    async fn list_dir(&self, repo: &Path, tree: &str, prefix: &str) -> Result<Vec<DirEntry>> {
        let out = self
            .git_ok(repo, &["ls-tree", "-z", "--long", tree], &[], None)
            .await?;
        Ok(parse_ls_tree(&out)?
            .into_iter()
            .map(|e| {
                let name = String::from_utf8_lossy(&e.path).into_owned();
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                let kind = match (e.kind, e.mode.as_str()) {
                    (ObjectKind::Tree, _) => DirEntryKind::Dir,
                    (ObjectKind::Commit, _) => DirEntryKind::Submodule,
                    (_, "120000") => DirEntryKind::Symlink,
                    _ => DirEntryKind::File,
                };
                DirEntry {
                    name,
                    path,
                    sha: e.sha,
                    kind,
                    size: e.size.unwrap_or(0),
                }
            })
            .collect())
    }

    async fn load_dir(&self, repo: &Path, tree: &str) -> Result<DirNode> {
        let out = self
            .git_ok(repo, &["ls-tree", "-z", "--long", tree], &[], None)
            .await?;
        let mut node = DirNode::default();
        for e in parse_ls_tree(&out)? {
            node.entries.insert(
                e.path,
                Node::Leaf(Leaf {
                    mode: e.mode,
                    kind: e.kind,
                    sha: e.sha,
                }),
            );
        }
        Ok(node)
    }

    /// Sets (`Some`) or removes (`None`) the entry at `comps`, loading the
    /// directories on the way. Setting below an existing non-directory fails
    /// rather than silently dropping a file.
    async fn tree_set(
        &self,
        repo: &Path,
        root: &mut DirNode,
        comps: &[String],
        value: Option<Leaf>,
    ) -> Result<()> {
        let Some((last, dirs)) = comps.split_last() else {
            return Err(GitError::Invalid("empty path".into()));
        };
        let mut node = root;
        for (i, comp) in dirs.iter().enumerate() {
            let key = comp.as_bytes().to_vec();
            let loaded = match node.entries.get(&key) {
                None if value.is_none() => return Ok(()),
                None => Some(DirNode::default()),
                Some(Node::Dir(_)) => None,
                Some(Node::Leaf(leaf)) if leaf.kind == ObjectKind::Tree => {
                    Some(self.load_dir(repo, &leaf.sha).await?)
                }
                Some(Node::Leaf(_)) if value.is_none() => return Ok(()),
                Some(Node::Leaf(_)) => {
                    return Err(GitError::Invalid(format!(
                        "{} is not a directory",
                        comps[..=i].join("/")
                    )));
                }
            };
            if let Some(dir) = loaded {
                node.entries.insert(key.clone(), Node::Dir(dir));
            }
            node = match node.entries.get_mut(&key) {
                Some(Node::Dir(dir)) => dir,
                _ => return Err(GitError::Invalid(format!("{comp} is not a directory"))),
            };
        }
        let key = last.as_bytes().to_vec();
        match value {
            Some(leaf) => {
                node.entries.insert(key, Node::Leaf(leaf));
            }
            None => {
                node.entries.remove(&key);
            }
        }
        Ok(())
    }

    async fn write_root(&self, repo: &Path, root: &DirNode) -> Result<String> {
        match self.write_dir(repo, root).await? {
            Some(sha) => Ok(sha),
            None => self.git_line(repo, &["mktree", "-z"], &[], Some(b"")).await,
        }
    }

    /// Writes edited directories bottom-up with `git mktree`; None for a
    /// directory that ended up empty (git does not keep those).
    fn write_dir<'a>(
        &'a self,
        repo: &'a Path,
        dir: &'a DirNode,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            let mut input = Vec::new();
            for (name, node) in &dir.entries {
                let (mode, kind, sha) = match node {
                    Node::Leaf(leaf) => (leaf.mode.clone(), leaf.kind, leaf.sha.clone()),
                    Node::Dir(sub) => match self.write_dir(repo, sub).await? {
                        Some(sha) => ("040000".to_string(), ObjectKind::Tree, sha),
                        None => continue,
                    },
                };
                input.extend_from_slice(format!("{mode} {} {sha}\t", kind.as_str()).as_bytes());
                input.extend_from_slice(name);
                input.push(0);
            }
            if input.is_empty() {
                return Ok(None);
            }
            Ok(Some(
                self.git_line(repo, &["mktree", "-z"], &[], Some(&input))
                    .await?,
            ))
        })
    }

    async fn commit_tree(
        &self,
        repo: &Path,
        tree: &str,
        parents: &[String],
        message: &str,
        author: &Signature,
        committer: &Signature,
    ) -> Result<String> {
        let mut args = vec!["commit-tree", tree];
        for p in parents {
            args.push("-p");
            args.push(p);
        }
        args.extend(["-F", "-"]);
        let author_date = git_date(&author.date);
        let committer_date = git_date(&committer.date);
        let env = [
            ("GIT_AUTHOR_NAME", author.name.as_str()),
            ("GIT_AUTHOR_EMAIL", author.email.as_str()),
            ("GIT_AUTHOR_DATE", author_date.as_str()),
            ("GIT_COMMITTER_NAME", committer.name.as_str()),
            ("GIT_COMMITTER_EMAIL", committer.email.as_str()),
            ("GIT_COMMITTER_DATE", committer_date.as_str()),
        ];
        self.git_line(repo, &args, &env, Some(message.as_bytes()))
            .await
    }

    /// `git update-ref` with an expected old value: None = don't care,
    /// Some("") = must not exist, Some(sha) = must currently be sha.
    async fn cas_ref(
        &self,
        repo: &Path,
        refname: &str,
        new: &str,
        old: Option<&str>,
    ) -> Result<()> {
        let mut args = vec!["update-ref", "-m", "sim", refname, new];
        if let Some(old) = old {
            args.push(old);
        }
        let out = self.git(repo, &args, &[], None).await?;
        if out.status.success() {
            return Ok(());
        }
        if old.is_some() {
            // Our own lock serialises writers, so a failed compare means some
            // writer outside this process touched the ref.
            let current = self.read_ref(repo, refname).await?;
            if current.as_deref() != old.filter(|o| !o.is_empty()) {
                return Err(GitError::Conflict(format!(
                    "{refname} was updated concurrently"
                )));
            }
        }
        Err(command_error(&args, &out))
    }

    /// Validates the object a ref should point at: it must exist, and
    /// branches may only point at commits.
    async fn ref_target(&self, repo: &Path, refname: &str, sha: &str) -> Result<ObjInfo> {
        let info = match self.object_info(repo, sha).await? {
            Some(info) if is_full_hex(sha) => info,
            _ => return Err(GitError::Invalid(format!("Object {sha} does not exist"))),
        };
        if refname.starts_with("refs/heads/") && info.kind != ObjectKind::Commit {
            return Err(GitError::Invalid(format!(
                "{refname} can only point at a commit, {sha} is a {}",
                info.kind.as_str()
            )));
        }
        Ok(info)
    }

    async fn ancestor(&self, repo: &Path, ancestor: &str, descendant: &str) -> Result<bool> {
        let args = ["merge-base", "--is-ancestor", ancestor, descendant];
        let out = self.git(repo, &args, &[], None).await?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(command_error(&args, &out)),
        }
    }

    async fn base_of(&self, repo: &Path, a: &str, b: &str) -> Result<Option<String>> {
        let args = ["merge-base", a, b];
        let out = self.git(repo, &args, &[], None).await?;
        match out.status.code() {
            Some(0) => Ok(Some(
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            )),
            Some(1) => Ok(None),
            _ => Err(command_error(&args, &out)),
        }
    }

    /// (commit, parents) reachable from `head` but not `base`, oldest first.
    async fn rev_list(
        &self,
        repo: &Path,
        head: &str,
        base: &str,
    ) -> Result<Vec<(String, Vec<String>)>> {
        let exclude = format!("^{base}");
        let out = self
            .git_ok(
                repo,
                &[
                    "rev-list",
                    "--reverse",
                    "--topo-order",
                    "--parents",
                    head,
                    &exclude,
                ],
                &[],
                None,
            )
            .await?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|line| {
                let mut shas = line.split_whitespace().map(str::to_string);
                let sha = shas.next()?;
                Some((sha, shas.collect()))
            })
            .collect())
    }

    /// Three-way merge of two commits into a tree, without a worktree.
    /// `merge_base` overrides the computed base (used to cherry-pick).
    async fn merge_trees(
        &self,
        repo: &Path,
        ours: &str,
        theirs: &str,
        merge_base: Option<&str>,
    ) -> Result<String> {
        let base_arg = merge_base.map(|b| format!("--merge-base={b}"));
        let mut args = vec!["merge-tree", "--write-tree", "--name-only", "--no-messages"];
        if let Some(b) = &base_arg {
            args.push(b);
        }
        args.extend([ours, theirs]);
        let out = self.git(repo, &args, &[], None).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        match out.status.code() {
            Some(0) => Ok(text.lines().next().unwrap_or_default().trim().to_string()),
            Some(1) => {
                let files: BTreeSet<&str> =
                    text.lines().skip(1).take_while(|l| !l.is_empty()).collect();
                let files: Vec<&str> = files.into_iter().collect();
                Err(GitError::Conflict(format!(
                    "merge conflict in {}",
                    files.join(", ")
                )))
            }
            _ => Err(command_error(&args, &out)),
        }
    }
}

// ---- free helpers --------------------------------------------------------

/// Spawns `cmd`, feeding `stdin` concurrently with reading the output so a
/// large request body cannot deadlock against a full stdout pipe.
async fn run_command(mut cmd: Command, args: &[String], stdin: Option<Bytes>) -> Result<Output> {
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| io_err(format!("spawning git {}", args.join(" ")), e))?;
    let pipe = child.stdin.take();
    let write = async move {
        if let (Some(mut pipe), Some(data)) = (pipe, stdin) {
            // A write error means git exited early; its status tells why.
            let _ = pipe.write_all(&data).await;
            let _ = pipe.shutdown().await;
        }
    };
    let (_, out) = tokio::join!(write, child.wait_with_output());
    out.map_err(|e| io_err(format!("running git {}", args.join(" ")), e))
}

fn command_error<S: AsRef<str>>(args: &[S], out: &Output) -> GitError {
    let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if stderr.len() > 2000 {
        let mut cut = 2000;
        while !stderr.is_char_boundary(cut) {
            cut -= 1;
        }
        stderr.truncate(cut);
        stderr.push('…');
    }
    GitError::Command {
        args: args.iter().map(|a| a.as_ref().to_string()).collect(),
        status: out.status.to_string(),
        stderr,
    }
}

fn io_err(context: String, source: std::io::Error) -> GitError {
    GitError::Io { context, source }
}

/// ("owner", "repo") lower-cased, or Invalid; names may only use GitHub's
/// characters, so a name can never climb out of the root.
fn split_full_name(full_name: &str) -> Result<(String, String)> {
    let invalid = || GitError::Invalid(format!("invalid repository name {full_name:?}"));
    let (owner, repo) = full_name.split_once('/').ok_or_else(invalid)?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    // Owners never start with '.', which keeps `.home` free for git's HOME.
    if !ok(owner) || !ok(repo) || owner.starts_with('.') {
        return Err(invalid());
    }
    Ok((owner.to_ascii_lowercase(), repo.to_ascii_lowercase()))
}

/// "refs/heads/x" stays, "heads/x" becomes "refs/heads/x".
fn normalize_ref(refname: &str) -> Result<String> {
    let full = if refname.starts_with("refs/") {
        refname.to_string()
    } else {
        format!("refs/{refname}")
    };
    check_refname(&full)?;
    Ok(full)
}

fn branch_ref(branch: &str) -> Result<String> {
    let branch = branch.strip_prefix("refs/heads/").unwrap_or(branch);
    let full = format!("refs/heads/{branch}");
    check_refname(&full)?;
    Ok(full)
}

/// `git check-ref-format` rules, checked here so bad names never reach git.
fn check_refname(refname: &str) -> Result<()> {
    if ref_format_ok(refname) && refname.starts_with("refs/") && refname.len() > 5 {
        Ok(())
    } else {
        Err(GitError::Invalid(format!("invalid ref name {refname:?}")))
    }
}

fn ref_format_ok(name: &str) -> bool {
    if name.is_empty()
        || name == "@"
        || name.ends_with('/')
        || name.ends_with('.')
        || name.starts_with('/')
    {
        return false;
    }
    if name.contains("..") || name.contains("@{") || name.contains("//") {
        return false;
    }
    if name.chars().any(|c| {
        c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\')
    }) {
        return false;
    }
    name.split('/')
        .all(|comp| !comp.is_empty() && !comp.starts_with('.') && !comp.ends_with(".lock"))
}

/// A revision we pass to rev-parse: a hex sha or a ref-like name; anything
/// with revision operators (`:`, `^`, `~`, `..`) or a leading '-' is refused.
fn is_plain_rev(rev: &str) -> bool {
    !rev.starts_with('-') && (is_hex(rev) || ref_format_ok(rev))
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_full_hex(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && is_hex(s)
}

/// Components of a repository path for writing: no empty, ".", ".." or
/// ".git" components (git itself refuses those trees).
fn split_path(path: &str) -> Result<Vec<String>> {
    let invalid = || GitError::Invalid(format!("invalid path {path:?}"));
    if path.is_empty() || path.starts_with('/') || path.ends_with('/') || path.contains('\0') {
        return Err(invalid());
    }
    let comps: Vec<String> = path.split('/').map(str::to_string).collect();
    if comps
        .iter()
        .any(|c| c.is_empty() || c == "." || c == ".." || c.eq_ignore_ascii_case(".git"))
    {
        return Err(invalid());
    }
    Ok(comps)
}

/// Components of a path for reading: leading/trailing/double slashes are
/// tolerated, "" and "/" mean the root.
fn split_path_lenient(path: &str) -> Result<Vec<String>> {
    let trimmed: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    split_path(&trimmed.join("/"))
}

/// Normalised mode and the object type it implies.
fn check_mode(mode: &str, path: &str) -> Result<(String, ObjectKind)> {
    let (norm, kind) = match mode {
        "100644" => ("100644", ObjectKind::Blob),
        "100755" => ("100755", ObjectKind::Blob),
        "120000" => ("120000", ObjectKind::Blob),
        "040000" | "40000" => ("040000", ObjectKind::Tree),
        "160000" => ("160000", ObjectKind::Commit),
        _ => return Err(GitError::Invalid(format!("{path}: invalid mode {mode:?}"))),
    };
    Ok((norm.to_string(), kind))
}

fn check_signature(sig: &Signature) -> Result<()> {
    let bad = |s: &str| s.contains(['<', '>', '\n', '\0']);
    if sig.name.trim().is_empty() || bad(&sig.name) || bad(&sig.email) {
        return Err(GitError::Invalid(format!(
            "invalid identity {:?} <{:?}>",
            sig.name, sig.email
        )));
    }
    Ok(())
}

fn check_message(message: &str) -> Result<()> {
    if message.contains('\0') {
        return Err(GitError::Invalid(
            "commit message contains a NUL byte".into(),
        ));
    }
    Ok(())
}

/// git's raw date format, keeping the signature's UTC offset.
fn git_date(date: &OffsetDateTime) -> String {
    let offset = date.offset();
    let secs = offset.whole_seconds();
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.unsigned_abs();
    format!(
        "@{} {sign}{:02}{:02}",
        date.unix_timestamp(),
        abs / 3600,
        (abs % 3600) / 60
    )
}

fn parse_refs(out: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|line| {
            let (name, sha) = line.split_once(' ')?;
            Some((name.to_string(), sha.trim().to_string()))
        })
        .collect()
}

fn diff_refs(before: &[(String, String)], after: &[(String, String)]) -> Vec<RefChange> {
    let before: BTreeMap<&str, &str> = before
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_str()))
        .collect();
    let after: BTreeMap<&str, &str> = after
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_str()))
        .collect();
    let names: BTreeSet<&str> = before.keys().chain(after.keys()).copied().collect();
    names
        .into_iter()
        .filter_map(|name| {
            let b = before.get(name).copied();
            let a = after.get(name).copied();
            (b != a).then(|| RefChange {
                refname: name.to_string(),
                before: b.map(str::to_string),
                after: a.map(str::to_string),
            })
        })
        .collect()
}

fn parse_ls_tree(out: &[u8]) -> Result<Vec<RawEntry>> {
    let mut entries = Vec::new();
    for record in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let bad = || GitError::Command {
            args: vec!["ls-tree".into()],
            status: "ok".into(),
            stderr: format!("unexpected output {:?}", String::from_utf8_lossy(record)),
        };
        let tab = record.iter().position(|b| *b == b'\t').ok_or_else(bad)?;
        let meta = String::from_utf8_lossy(&record[..tab]);
        let mut parts = meta.split_whitespace();
        let (Some(mode), Some(kind), Some(sha)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let kind = ObjectKind::parse(kind).ok_or_else(bad)?;
        let size = parts.next().and_then(|s| s.parse().ok());
        entries.push(RawEntry {
            mode: mode.to_string(),
            kind,
            sha: sha.to_string(),
            size,
            path: record[tab + 1..].to_vec(),
        });
    }
    Ok(entries)
}

fn parse_commit(sha: &str, raw: &[u8]) -> CommitObject {
    let text = String::from_utf8_lossy(raw);
    let (headers, message) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut tree = String::new();
    let mut parents = Vec::new();
    let mut author = None;
    let mut committer = None;
    for line in headers.lines() {
        // Continuation lines (gpgsig, mergetag) start with a space.
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        match key {
            "tree" => tree = value.to_string(),
            "parent" => parents.push(value.to_string()),
            "author" => author = parse_signature(value),
            "committer" => committer = parse_signature(value),
            _ => {}
        }
    }
    let unknown = || Signature {
        name: String::new(),
        email: String::new(),
        date: OffsetDateTime::UNIX_EPOCH,
    };
    CommitObject {
        sha: sha.to_string(),
        tree,
        parents,
        author: author.unwrap_or_else(unknown),
        committer: committer.unwrap_or_else(unknown),
        message: message.to_string(),
    }
}

/// Parses "Name <email> 1700000000 +0130".
fn parse_signature(value: &str) -> Option<Signature> {
    let lt = value.find('<')?;
    let gt = lt + value[lt..].find('>')?;
    let name = value[..lt].trim_end().to_string();
    let email = value[lt + 1..gt].to_string();
    let mut rest = value[gt + 1..].split_whitespace();
    let ts: i64 = rest.next()?.parse().ok()?;
    let offset = rest.next().and_then(parse_offset).unwrap_or(UtcOffset::UTC);
    let date = OffsetDateTime::from_unix_timestamp(ts)
        .ok()?
        .to_offset(offset);
    Some(Signature { name, email, date })
}

fn parse_offset(tz: &str) -> Option<UtcOffset> {
    let (sign, digits) = match tz.as_bytes().first()? {
        b'+' => (1, &tz[1..]),
        b'-' => (-1, &tz[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i8 = digits[..2].parse().ok()?;
    let minutes: i8 = digits[2..].parse().ok()?;
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()
}

/// Splits CGI output into (status, headers, body); None if there is no
/// complete header block.
/// A CGI response: status, headers (without `Status`) and body.
type CgiParts<'a> = (u16, Vec<(String, String)>, &'a [u8]);

fn parse_cgi(out: &[u8]) -> Option<CgiParts<'_>> {
    let mut status = 200;
    let mut headers = Vec::new();
    let mut pos = 0;
    loop {
        let nl = pos + out[pos..].iter().position(|b| *b == b'\n')?;
        let line = &out[pos..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos = nl + 1;
        if line.is_empty() {
            return Some((status, headers, &out[pos..]));
        }
        let line = String::from_utf8_lossy(line);
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            status = value.split_whitespace().next()?.parse().ok()?;
        } else {
            headers.push((name.trim().to_string(), value.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_TREE_SHA1: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

    fn sig(name: &str, ts: i64) -> Signature {
        Signature {
            name: name.into(),
            email: format!("{}@example.com", name.to_lowercase()),
            date: OffsetDateTime::from_unix_timestamp(ts).unwrap(),
        }
    }

    async fn host_with_repo() -> (tempfile::TempDir, GitHost, String) {
        let dir = tempfile::tempdir().unwrap();
        let host = GitHost::new(dir.path().join("repos"));
        let files = vec![
            ("README.md".to_string(), b"hello\n".to_vec()),
            ("src/lib.rs".to_string(), b"pub fn a() {}\n".to_vec()),
            ("src/deep/x.txt".to_string(), b"x\n".to_vec()),
        ];
        let sha = host
            .create_repo(
                "Octo/Repo",
                "main",
                &files,
                &sig("Alice", 1_700_000_000),
                "init",
            )
            .await
            .unwrap();
        (dir, host, sha)
    }

    fn file_content(c: Option<PathContent>) -> (String, Vec<u8>) {
        match c {
            Some(PathContent::File { sha, content, .. }) => (sha, content),
            other => panic!("expected a file, got {other:?}"),
        }
    }

    #[test]
    fn names_and_refs_are_validated() {
        let host = GitHost::new(PathBuf::from("/r"));
        assert_eq!(
            host.repo_path("Octo/Repo").unwrap(),
            PathBuf::from("/r/octo/repo.git")
        );
        for bad in ["..", "a/..", "a/b/c", "a/b c", "/a", ".x/y", "a/"] {
            assert!(
                matches!(host.repo_path(bad), Err(GitError::Invalid(_))),
                "{bad}"
            );
        }
        assert_eq!(normalize_ref("heads/x").unwrap(), "refs/heads/x");
        for bad in [
            "heads/a..b",
            "heads/a:b",
            "heads/.x",
            "heads/x.lock",
            "heads/x/",
            "heads/a b",
        ] {
            assert!(normalize_ref(bad).is_err(), "{bad}");
        }
        assert_eq!(
            split_git_http_path("/o/r.git/info/refs"),
            Some(("o/r".into(), "/info/refs".into()))
        );
        assert_eq!(
            split_git_http_path("/o/r/git-upload-pack"),
            Some(("o/r".into(), "/git-upload-pack".into()))
        );
        assert_eq!(split_git_http_path("/o/r.git/HEAD"), None);
        assert_eq!(split_git_http_path("/../r.git/info/refs"), None);
        let date = OffsetDateTime::from_unix_timestamp(1_700_000_000)
            .unwrap()
            .to_offset(UtcOffset::from_hms(-5, -30, 0).unwrap());
        assert_eq!(git_date(&date), "@1700000000 -0530");
        let parsed = parse_signature("A B <a@b> 1700000000 -0530").unwrap();
        assert_eq!(parsed.date, date);
        assert_eq!(parsed.date.offset(), date.offset());
    }

    #[tokio::test]
    async fn create_and_read() {
        let (_dir, host, sha) = host_with_repo().await;
        let repo = "octo/repo";
        assert!(matches!(
            host.create_repo(repo, "main", &[], &sig("A", 1), "x").await,
            Err(GitError::Conflict(_))
        ));
        assert_eq!(
            host.resolve_ref(repo, "refs/heads/main").await.unwrap(),
            Some(sha.clone())
        );
        assert_eq!(
            host.resolve_ref(repo, "heads/main").await.unwrap(),
            Some(sha.clone())
        );
        assert_eq!(host.resolve_ref(repo, "heads/ma").await.unwrap(), None);
        assert_eq!(
            host.list_refs(repo).await.unwrap(),
            vec![("refs/heads/main".to_string(), sha.clone())]
        );
        assert_eq!(
            host.object_type(repo, &sha).await.unwrap(),
            Some(ObjectKind::Commit)
        );
        assert_eq!(host.object_type(repo, &"0".repeat(40)).await.unwrap(), None);
        assert_eq!(
            host.object_type(repo, "HEAD:README.md").await.unwrap(),
            None
        );
        assert!(matches!(
            host.object_type("octo/missing", &sha).await,
            Err(GitError::NotFound(_))
        ));

        let commit = host.commit(repo, &sha).await.unwrap().unwrap();
        assert_eq!(commit.parents, Vec::<String>::new());
        assert_eq!(commit.author, sig("Alice", 1_700_000_000));
        assert_eq!(commit.message, "init");
        assert_eq!(
            host.object_type(repo, &commit.tree).await.unwrap(),
            Some(ObjectKind::Tree)
        );

        let (_, content) = file_content(host.read_path(repo, "main", "README.md").await.unwrap());
        assert_eq!(content, b"hello\n");
        let (_, content) =
            file_content(host.read_path(repo, &sha, "/src/deep/x.txt").await.unwrap());
        assert_eq!(content, b"x\n");
        assert_eq!(host.read_path(repo, "main", "nope").await.unwrap(), None);
        assert_eq!(
            host.read_path(repo, "main", "README.md/x").await.unwrap(),
            None
        );
        assert_eq!(
            host.read_path(repo, "nobranch", "README.md").await.unwrap(),
            None
        );
        assert_eq!(
            host.read_path(repo, "main:src", "lib.rs").await.unwrap(),
            None
        );

        let Some(PathContent::Dir(root)) = host.read_path(repo, "main", "").await.unwrap() else {
            panic!("root is a dir")
        };
        let names: Vec<_> = root.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            names,
            vec![
                ("README.md", DirEntryKind::File),
                ("src", DirEntryKind::Dir)
            ]
        );
        assert_eq!(root[0].size, 6);
        let Some(PathContent::Dir(src)) = host
            .read_path(repo, "refs/heads/main", "src/")
            .await
            .unwrap()
        else {
            panic!("src is a dir")
        };
        let paths: Vec<_> = src.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["src/deep", "src/lib.rs"]);

        let flat = host.tree_entries(repo, &commit.tree, false).await.unwrap();
        assert_eq!(flat.len(), 2);
        let all = host.tree_entries(repo, "main", true).await.unwrap();
        let paths: Vec<_> = all
            .iter()
            .map(|e| (e.path.as_str(), e.mode.as_str(), e.size))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("README.md", "100644", Some(6)),
                ("src", "040000", None),
                ("src/deep", "040000", None),
                ("src/deep/x.txt", "100644", Some(2)),
                ("src/lib.rs", "100644", Some(14)),
            ]
        );
        assert!(matches!(
            host.tree_entries(repo, &"1".repeat(40), false).await,
            Err(GitError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn trees_commits_and_refs() {
        let (_dir, host, first) = host_with_repo().await;
        let repo = "octo/repo";
        let base_tree = host.commit(repo, &first).await.unwrap().unwrap().tree;
        let blob = host.create_blob(repo, b"blob\n").await.unwrap();
        let link = "a".repeat(40);
        let entries = vec![
            TreeEntryInput {
                path: "new/nested/file.txt".into(),
                mode: "100644".into(),
                source: TreeEntrySource::Content(b"nested\n".to_vec()),
            },
            TreeEntryInput {
                path: "bin/run".into(),
                mode: "100755".into(),
                source: TreeEntrySource::Sha(blob.clone()),
            },
            TreeEntryInput {
                path: "src/deep".into(),
                mode: "040000".into(),
                source: TreeEntrySource::Delete,
            },
            TreeEntryInput {
                path: "README.md".into(),
                mode: "100644".into(),
                source: TreeEntrySource::Delete,
            },
            TreeEntryInput {
                path: "vendor/lib".into(),
                mode: "160000".into(),
                source: TreeEntrySource::Sha(link.clone()),
            },
        ];
        let tree = host
            .create_tree(repo, Some(&base_tree), &entries)
            .await
            .unwrap();
        let listed: Vec<_> = host
            .tree_entries(repo, &tree, true)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.path, e.mode))
            .collect();
        let expected = [
            ("bin", "040000"),
            ("bin/run", "100755"),
            ("new", "040000"),
            ("new/nested", "040000"),
            ("new/nested/file.txt", "100644"),
            ("src", "040000"),
            ("src/lib.rs", "100644"),
            ("vendor", "040000"),
            ("vendor/lib", "160000"),
        ];
        assert_eq!(
            listed,
            expected
                .iter()
                .map(|(p, m)| (p.to_string(), m.to_string()))
                .collect::<Vec<_>>()
        );

        // A whole subtree by sha, and an empty tree without a base.
        let sub = host
            .tree_entries(repo, &base_tree, false)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.path == "src")
            .unwrap();
        let grafted = host
            .create_tree(
                repo,
                None,
                &[TreeEntryInput {
                    path: "copy/of/src".into(),
                    mode: "040000".into(),
                    source: TreeEntrySource::Sha(sub.sha.clone()),
                }],
            )
            .await
            .unwrap();
        assert_eq!(
            host.object_type(repo, &grafted).await.unwrap(),
            Some(ObjectKind::Tree)
        );
        let (_, c) = file_content(
            host.read_path(repo, &grafted, "copy/of/src/deep/x.txt")
                .await
                .unwrap(),
        );
        assert_eq!(c, b"x\n");
        assert_eq!(
            host.create_tree(repo, None, &[]).await.unwrap(),
            EMPTY_TREE_SHA1
        );

        // Bad entries are Invalid, not command failures.
        let bad = |path: &str, mode: &str, source| TreeEntryInput {
            path: path.into(),
            mode: mode.into(),
            source,
        };
        for entry in [
            bad("x", "100644", TreeEntrySource::Sha("f".repeat(40))),
            bad("x", "100644", TreeEntrySource::Sha(tree.clone())),
            bad("x", "040000", TreeEntrySource::Sha(blob.clone())),
            bad("x", "040000", TreeEntrySource::Content(vec![])),
            bad("x", "100600", TreeEntrySource::Content(vec![])),
            bad("../x", "100644", TreeEntrySource::Content(vec![])),
            bad("a//b", "100644", TreeEntrySource::Content(vec![])),
            bad("README.md/x", "100644", TreeEntrySource::Content(vec![])),
        ] {
            let r = host
                .create_tree(repo, Some(&base_tree), std::slice::from_ref(&entry))
                .await;
            assert!(matches!(r, Err(GitError::Invalid(_))), "{entry:?}: {r:?}");
        }
        assert!(matches!(
            host.create_tree(repo, Some(&"e".repeat(40)), &[]).await,
            Err(GitError::Invalid(_))
        ));

        // Commits.
        let later = sig("Bob", 1_700_000_100);
        let second = host
            .create_commit(
                repo,
                "second\n\nbody",
                &tree,
                std::slice::from_ref(&first),
                &later,
                &later,
            )
            .await
            .unwrap();
        let c = host.commit(repo, &second).await.unwrap().unwrap();
        assert_eq!(
            (c.tree.as_str(), c.parents.as_slice()),
            (tree.as_str(), std::slice::from_ref(&first))
        );
        assert_eq!(c.message, "second\n\nbody");
        assert_eq!(c.committer, later);
        assert!(matches!(
            host.create_commit(repo, "m", &blob, &[], &later, &later)
                .await,
            Err(GitError::Invalid(_))
        ));
        assert!(matches!(
            host.create_commit(
                repo,
                "m",
                &tree,
                std::slice::from_ref(&tree),
                &later,
                &later
            )
            .await,
            Err(GitError::Invalid(_))
        ));
        let sibling = host
            .create_commit(
                repo,
                "sibling",
                &base_tree,
                std::slice::from_ref(&first),
                &later,
                &later,
            )
            .await
            .unwrap();

        // Refs: fast-forward, non-fast-forward, force, create, delete.
        let up = host
            .update_ref(repo, "heads/main", &second, false)
            .await
            .unwrap();
        assert_eq!(
            up,
            RefUpdate {
                old: Some(first.clone()),
                new: second.clone()
            }
        );
        assert!(host.is_ancestor(repo, &first, &second).await.unwrap());
        assert!(!host.is_ancestor(repo, &second, &first).await.unwrap());
        assert!(matches!(
            host.update_ref(repo, "heads/main", &sibling, false).await,
            Err(GitError::NotFastForward(_))
        ));
        assert_eq!(
            host.resolve_ref(repo, "heads/main").await.unwrap(),
            Some(second.clone())
        );
        host.update_ref(repo, "refs/heads/main", &sibling, true)
            .await
            .unwrap();
        assert_eq!(
            host.resolve_ref(repo, "heads/main").await.unwrap(),
            Some(sibling.clone())
        );
        assert!(matches!(
            host.update_ref(repo, "heads/nope", &sibling, true).await,
            Err(GitError::Invalid(_))
        ));
        assert!(matches!(
            host.update_ref(repo, "heads/main", &blob, true).await,
            Err(GitError::Invalid(_))
        ));

        host.create_ref(repo, "refs/heads/feature", &second)
            .await
            .unwrap();
        assert!(matches!(
            host.create_ref(repo, "refs/heads/feature", &second).await,
            Err(GitError::Conflict(_))
        ));
        assert!(matches!(
            host.create_ref(repo, "refs/heads/feature/x", &second).await,
            Err(GitError::Conflict(_))
        ));
        assert!(matches!(
            host.create_ref(repo, "heads/other", &second).await,
            Err(GitError::Invalid(_))
        ));
        assert!(matches!(
            host.create_ref(repo, "refs/heads/other", &"f".repeat(40))
                .await,
            Err(GitError::Invalid(_))
        ));
        assert_eq!(
            host.count_commits(repo, "main", "feature").await.unwrap(),
            1
        );
    }

    #[tokio::test]
    async fn put_files() {
        let (_dir, host, first) = host_with_repo().await;
        let repo = "octo/repo";
        let bob = sig("Bob", 1_700_000_500);
        let (c1, b1) = host
            .put_file(
                repo,
                "main",
                "docs/new.md",
                b"one\n",
                "add",
                None,
                &bob,
                &bob,
            )
            .await
            .unwrap();
        assert_eq!(
            host.commit(repo, &c1).await.unwrap().unwrap().parents,
            vec![first]
        );
        let (sha, content) =
            file_content(host.read_path(repo, "main", "docs/new.md").await.unwrap());
        assert_eq!((sha, content), (b1.clone(), b"one\n".to_vec()));

        assert!(matches!(
            host.put_file(
                repo,
                "main",
                "docs/new.md",
                b"two\n",
                "upd",
                None,
                &bob,
                &bob
            )
            .await,
            Err(GitError::Invalid(_))
        ));
        let wrong = "0".repeat(40);
        assert!(matches!(
            host.put_file(
                repo,
                "main",
                "docs/new.md",
                b"two\n",
                "upd",
                Some(&wrong),
                &bob,
                &bob
            )
            .await,
            Err(GitError::Conflict(_))
        ));
        assert!(matches!(
            host.put_file(
                repo,
                "main",
                "src",
                b"two\n",
                "upd",
                Some(&wrong),
                &bob,
                &bob
            )
            .await,
            Err(GitError::Invalid(_))
        ));
        assert!(matches!(
            host.put_file(repo, "nobranch", "a.txt", b"", "m", None, &bob, &bob)
                .await,
            Err(GitError::NotFound(_))
        ));
        assert_eq!(
            host.resolve_ref(repo, "heads/main").await.unwrap(),
            Some(c1.clone())
        );

        let (c2, b2) = host
            .put_file(
                repo,
                "main",
                "docs/new.md",
                b"two\n",
                "upd",
                Some(&b1),
                &bob,
                &bob,
            )
            .await
            .unwrap();
        assert_ne!(b1, b2);
        let (_, content) = file_content(host.read_path(repo, &c2, "docs/new.md").await.unwrap());
        assert_eq!(content, b"two\n");
        // Untouched files survive the rewrite.
        let (_, content) = file_content(host.read_path(repo, &c2, "src/deep/x.txt").await.unwrap());
        assert_eq!(content, b"x\n");
    }

    /// Branch `name` off `from` with `files` changed; returns the commit.
    async fn branch_with(
        host: &GitHost,
        name: &str,
        from: &str,
        files: &[(&str, &str)],
        ts: i64,
    ) -> String {
        let repo = "octo/repo";
        let parent = match host
            .resolve_ref(repo, &format!("refs/heads/{from}"))
            .await
            .unwrap()
        {
            Some(sha) => sha,
            None => from.to_owned(),
        };
        let base_tree = host.commit(repo, &parent).await.unwrap().unwrap().tree;
        let entries: Vec<_> = files
            .iter()
            .map(|(p, c)| TreeEntryInput {
                path: p.to_string(),
                mode: "100644".into(),
                source: TreeEntrySource::Content(c.as_bytes().to_vec()),
            })
            .collect();
        let tree = host
            .create_tree(repo, Some(&base_tree), &entries)
            .await
            .unwrap();
        let who = sig("Carol", ts);
        let commit = host
            .create_commit(
                repo,
                &format!("change {name}"),
                &tree,
                &[parent],
                &who,
                &who,
            )
            .await
            .unwrap();
        host.create_ref(repo, &format!("refs/heads/{name}"), &commit)
            .await
            .unwrap();
        commit
    }

    #[tokio::test]
    async fn merges() {
        let (_dir, host, first) = host_with_repo().await;
        let repo = "octo/repo";
        let merger = sig("Merger", 1_700_001_000);
        let a = branch_with(&host, "a", "main", &[("a.txt", "a\n")], 1_700_000_100).await;
        branch_with(&host, "a2", "a", &[("a2.txt", "a2\n")], 1_700_000_150).await;
        let b = branch_with(&host, "b", "main", &[("b.txt", "b\n")], 1_700_000_200).await;
        let c = branch_with(
            &host,
            "c",
            "main",
            &[("README.md", "theirs\n")],
            1_700_000_300,
        )
        .await;
        let d = branch_with(
            &host,
            "d",
            "main",
            &[("README.md", "mine\n")],
            1_700_000_400,
        )
        .await;
        branch_with(&host, "e", "main", &[("e.txt", "e\n")], 1_700_000_500).await;

        assert!(host.can_merge(repo, "main", &a).await.unwrap());
        let m = host
            .merge(repo, "main", &a, MergeMethod::Merge, "Merge a", &merger)
            .await
            .unwrap();
        let mc = host.commit(repo, &m).await.unwrap().unwrap();
        assert_eq!(mc.parents, vec![first.clone(), a.clone()]);
        assert_eq!(mc.message, "Merge a");
        assert!(matches!(
            host.merge(repo, "main", &a, MergeMethod::Merge, "again", &merger)
                .await,
            Err(GitError::Invalid(_))
        ));

        let dave = sig("Dave", 1_700_001_001);
        let s = host
            .merge_as(
                repo,
                "main",
                &b,
                MergeMethod::Squash,
                "Squash b",
                &dave,
                &merger,
            )
            .await
            .unwrap();
        let sc = host.commit(repo, &s).await.unwrap().unwrap();
        assert_eq!(sc.parents, vec![m.clone()]);
        assert_eq!((&sc.author, &sc.committer), (&dave, &merger));
        for f in ["a.txt", "b.txt", "README.md"] {
            assert!(host.read_path(repo, &s, f).await.unwrap().is_some(), "{f}");
        }

        // c and d both edit README.md: the second one conflicts.
        host.merge(repo, "main", &c, MergeMethod::Merge, "Merge c", &merger)
            .await
            .unwrap();
        let before = host.resolve_ref(repo, "heads/main").await.unwrap();
        assert!(!host.can_merge(repo, "main", &d).await.unwrap());
        let err = host
            .merge(repo, "main", &d, MergeMethod::Merge, "Merge d", &merger)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, GitError::Conflict(m) if m.contains("README.md")),
            "{err}"
        );
        assert!(matches!(
            host.merge(repo, "main", &d, MergeMethod::Squash, "Squash d", &merger)
                .await,
            Err(GitError::Conflict(_))
        ));
        assert_eq!(host.resolve_ref(repo, "heads/main").await.unwrap(), before);

        // Rebase replays commits not yet in main: e's one, then only a2's own
        // (a2's parent a was merged above).
        let r = host
            .merge(repo, "main", "e", MergeMethod::Rebase, "", &merger)
            .await
            .unwrap();
        let rc = host.commit(repo, &r).await.unwrap().unwrap();
        assert_eq!(rc.parents, before.clone().into_iter().collect::<Vec<_>>());
        assert_eq!(rc.author, sig("Carol", 1_700_000_500));
        assert_eq!(rc.committer, merger);
        assert_eq!(rc.message, "change e");
        let r2 = host
            .merge(repo, "main", "a2", MergeMethod::Rebase, "", &merger)
            .await
            .unwrap();
        assert_eq!(host.count_commits(repo, &r, &r2).await.unwrap(), 1);
        assert!(
            host.read_path(repo, "main", "a2.txt")
                .await
                .unwrap()
                .is_some()
        );
    }

    /// Runs a client-side git command with the same scrubbed environment.
    async fn client_git(cwd: &Path, home: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .args([
                "-c",
                "user.name=Tester",
                "-c",
                "user.email=tester@example.com",
            ])
            .args(args)
            .current_dir(cwd)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    type Pushes = Arc<Mutex<Vec<RefChange>>>;

    async fn serve_git(
        axum::extract::State((host, pushes)): axum::extract::State<(Arc<GitHost>, Pushes)>,
        method: axum::http::Method,
        uri: axum::http::Uri,
        headers: axum::http::HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let Some((full_name, suffix)) = split_git_http_path(uri.path()) else {
            return axum::http::StatusCode::NOT_FOUND.into_response();
        };
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let req = HttpBackendRequest {
            full_name,
            method: method.to_string(),
            path_info_suffix: suffix,
            query: uri.query().map(str::to_string),
            content_type: header("content-type"),
            content_encoding: header("content-encoding"),
            git_protocol: header("git-protocol"),
            remote_user: "tester".into(),
            body,
            signed_only: Vec::new(),
        };
        match host.http_backend(req).await {
            Ok(resp) => {
                pushes.lock().unwrap().extend(resp.ref_changes);
                let mut builder = axum::http::Response::builder().status(resp.status);
                for (k, v) in resp.headers {
                    builder = builder.header(k, v);
                }
                builder.body(axum::body::Body::from(resp.body)).unwrap()
            }
            Err(GitError::NotFound(_)) => axum::http::StatusCode::NOT_FOUND.into_response(),
            Err(e) => {
                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn smart_http_clone_and_push() {
        let (dir, host, first) = host_with_repo().await;
        let host = Arc::new(host);
        let pushes: Pushes = Arc::default();
        let app = axum::Router::new()
            .fallback(serve_git)
            .with_state((host.clone(), pushes.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let home = dir.path().join("home");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        let url = format!("http://127.0.0.1:{port}/Octo/Repo.git");
        client_git(&work, &home, &["clone", "--quiet", &url, "clone"]).await;
        let clone = work.join("clone");
        assert_eq!(
            client_git(&clone, &home, &["rev-parse", "HEAD"]).await,
            first
        );
        assert_eq!(std::fs::read(clone.join("src/deep/x.txt")).unwrap(), b"x\n");

        std::fs::write(clone.join("pushed.txt"), "pushed\n").unwrap();
        client_git(&clone, &home, &["add", "pushed.txt"]).await;
        client_git(&clone, &home, &["commit", "--quiet", "-m", "from client"]).await;
        let pushed = client_git(&clone, &home, &["rev-parse", "HEAD"]).await;
        client_git(
            &clone,
            &home,
            &["push", "--quiet", "origin", "HEAD:refs/heads/feature"],
        )
        .await;
        assert_eq!(
            std::mem::take(&mut *pushes.lock().unwrap()),
            vec![RefChange {
                refname: "refs/heads/feature".into(),
                before: None,
                after: Some(pushed.clone()),
            }]
        );
        assert_eq!(
            host.resolve_ref("octo/repo", "refs/heads/feature")
                .await
                .unwrap(),
            Some(pushed.clone())
        );
        let c = host.commit("octo/repo", &pushed).await.unwrap().unwrap();
        assert_eq!(c.message, "from client\n");

        // Fast-forward main and delete feature in one push (protocol v0 this time).
        client_git(
            &clone,
            &home,
            &[
                "-c",
                "protocol.version=0",
                "push",
                "--quiet",
                "origin",
                "HEAD:main",
                ":feature",
            ],
        )
        .await;
        assert_eq!(
            std::mem::take(&mut *pushes.lock().unwrap()),
            vec![
                RefChange {
                    refname: "refs/heads/feature".into(),
                    before: Some(pushed.clone()),
                    after: None,
                },
                RefChange {
                    refname: "refs/heads/main".into(),
                    before: Some(first.clone()),
                    after: Some(pushed.clone()),
                },
            ]
        );

        // A server-side change is visible to a fetch by exact sha.
        let bob = sig("Bob", 1_700_000_900);
        let (server_commit, _) = host
            .put_file(
                "octo/repo",
                "main",
                "server.txt",
                b"s\n",
                "server",
                None,
                &bob,
                &bob,
            )
            .await
            .unwrap();
        client_git(
            &clone,
            &home,
            &["fetch", "--quiet", "origin", &server_commit],
        )
        .await;
        assert_eq!(
            client_git(&clone, &home, &["rev-parse", "FETCH_HEAD"]).await,
            server_commit
        );
        assert!(pushes.lock().unwrap().is_empty());

        // Unknown repositories are 404s, which git reports as a failure.
        let missing = format!("http://127.0.0.1:{port}/octo/missing.git");
        let out = Command::new("git")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .args(["ls-remote", &missing])
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
        server.abort();
    }

    #[tokio::test]
    async fn concurrent_writes_are_serialised() {
        let (_dir, host, first) = host_with_repo().await;
        let host = Arc::new(host);
        let mut tasks = Vec::new();
        for i in 0..8 {
            let host = host.clone();
            tasks.push(tokio::spawn(async move {
                let who = sig("Par", 1_700_000_000 + i);
                host.put_file(
                    "octo/repo",
                    "main",
                    &format!("f{i}.txt"),
                    b"x",
                    "p",
                    None,
                    &who,
                    &who,
                )
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(
            host.count_commits("octo/repo", &first, "main")
                .await
                .unwrap(),
            8
        );
        let entries = host.tree_entries("octo/repo", "main", false).await.unwrap();
        assert_eq!(
            entries.iter().filter(|e| e.path.starts_with('f')).count(),
            8
        );
    }
}
