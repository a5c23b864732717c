//! A job's result as data, and the job that pushes it ("safe outputs").
//!
//! The mission workflow runs the agent in a job whose `GITHUB_TOKEN` can only
//! read. There `missions job --result-dir DIR` leaves what it would have pushed
//! in DIR: `result.json` ([`ResultArtifact`]) and, for a commit, `work.bundle`
//! (that one commit on the commit the job started from). The workflow uploads
//! DIR as an artifact. A second job, with contents write, no agent code, no
//! model key and no checkout of the agent's work, runs `missions publish`: it
//! treats the artifact as untrusted data, fetches the branch afresh from
//! GitHub, checks the result (one commit on the branch's current head, only
//! this job's own files under `.missions/`, nothing changed under `.github/`
//! or the repository's protected paths, its envelope present and readable,
//! sizes bounded), and pushes it. Whatever the agent did to the first job's
//! runner, git or files, the token that can write never shares a job with it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::env::{JobEnv, TempDir};
use super::git::{Git, RESULT_REF};
use super::output;
use crate::mission::machine::reports_branch;
use crate::mission::{JobOutput, JobRole};

/// The artifact's description.
pub const MANIFEST: &str = "result.json";
/// The artifact's commit, for workers and the orchestrator.
pub const BUNDLE: &str = "work.bundle";
/// Above these the result is refused (a feature's commit is code, not data).
const MAX_BUNDLE_BYTES: u64 = 200 << 20;
const MAX_MANIFEST_BYTES: u64 = 32 << 20;
const MAX_FILE_BYTES: usize = 8 << 20;

/// What a job leaves for the publish job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResultArtifact {
    /// One commit with `parent` as its only parent, for `branch`, in
    /// [`BUNDLE`] under [`RESULT_REF`].
    Commit {
        job: String,
        branch: String,
        parent: String,
        commit: String,
    },
    /// Files to commit on top of `branch` (a validator's report and envelope,
    /// for the reports branch, which other jobs also write).
    Files {
        job: String,
        branch: String,
        message: String,
        files: Vec<ArtifactFile>,
    },
    /// The job's result was already on `branch` (a repeated dispatch).
    Done { job: String, branch: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactFile {
    pub path: String,
    pub content_base64: String,
}

impl ArtifactFile {
    pub fn new(path: &str, content: &[u8]) -> ArtifactFile {
        ArtifactFile {
            path: path.to_owned(),
            content_base64: base64::engine::general_purpose::STANDARD.encode(content),
        }
    }
}

/// Writes `artifact` into `dir` (created; it must not hold an earlier result).
pub fn write_manifest(dir: &Path, artifact: &ResultArtifact) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the result directory {}", dir.display()))?;
    let path = dir.join(MANIFEST);
    if path.exists() {
        bail!(
            "{} already holds a result; give each job an empty result directory",
            dir.display()
        );
    }
    std::fs::write(&path, serde_json::to_vec_pretty(artifact)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// What `missions publish` is told by the workflow (the same dispatch inputs
/// as the agent's job).
#[derive(Debug, Clone)]
pub struct PublishArgs {
    pub role: JobRole,
    pub mission: u64,
    pub job: String,
    pub feature: Option<String>,
    pub config_ref: Option<String>,
    pub result_dir: PathBuf,
}

/// Checks the agent job's result against GitHub's state and pushes it; the
/// lines for the job's log. `Err` says why nothing was pushed.
pub async fn publish(args: PublishArgs) -> anyhow::Result<Vec<String>> {
    let env = JobEnv::from_process()?;
    let issue = args.mission;
    let manifest_path = args.result_dir.join(MANIFEST);
    let Ok(meta) = std::fs::metadata(&manifest_path) else {
        // No result: what the job spent before it died still reaches the App.
        return publish_ledger(&args, &env).await;
    };
    let size = meta.len();
    if size > MAX_MANIFEST_BYTES {
        bail!("{MANIFEST} is {size} bytes, over the {MAX_MANIFEST_BYTES} allowed; refused");
    }
    let artifact: ResultArtifact = serde_json::from_slice(&std::fs::read(&manifest_path)?)
        .with_context(|| format!("{MANIFEST} is not a result this version writes"))?;
    let (job, branch) = match &artifact {
        ResultArtifact::Commit { job, branch, .. }
        | ResultArtifact::Files { job, branch, .. }
        | ResultArtifact::Done { job, branch } => (job, branch),
    };
    if *job != args.job {
        bail!("the result is for job {job:?}, not {:?}; refused", args.job);
    }
    let expected_branch = match args.role {
        JobRole::Orchestrator | JobRole::Worker => env.ref_name.clone(),
        JobRole::Scrutiny | JobRole::UserTesting => reports_branch(issue),
    };
    if *branch != expected_branch {
        bail!(
            "the result is for branch {branch:?}, but a {} job of this run publishes to \
             {expected_branch:?}; refused",
            args.role.as_str()
        );
    }

    let (_dir, git) = fresh_repo(&env)?;
    let envelope_path = output::envelope_path(issue, &args.job);

    let (commit, lines) = match artifact {
        ResultArtifact::Done { .. } => {
            let head = git
                .fetch_head_only(&expected_branch)
                .await?
                .with_context(|| format!("{expected_branch} does not exist"))?;
            read_envelope(&git, &head, &envelope_path, &args.job)
                .await
                .with_context(|| {
                    format!(
                        "the agent job says its result is already on {expected_branch}, but it is not"
                    )
                })?;
            let line = format!(
                "missions publish: {} was already on {expected_branch} ({}); nothing to push",
                args.job,
                short(&head)
            );
            return Ok(vec![line]);
        }
        ResultArtifact::Commit { parent, commit, .. } => {
            let pinned = pinned_paths(&git, &args, &env).await?;
            verify_commit(&git, &args, &expected_branch, &pinned, &parent, &commit).await?;
            git.push(&commit, &expected_branch)
                .await
                .with_context(|| format!("cannot push the job's commit to {expected_branch}"))?;
            (commit, Vec::new())
        }
        ResultArtifact::Files { message, files, .. } => {
            if !matches!(args.role, JobRole::Scrutiny | JobRole::UserTesting) {
                bail!(
                    "a {} job's result is a commit, not files; refused",
                    args.role.as_str()
                );
            }
            check_message(&message, &args)?;
            let files = verify_report_files(issue, args.role, &args.job, &files)?;
            let commit = git
                .commit_files_to_branch(&expected_branch, &files, &message)
                .await?;
            (commit, Vec::new())
        }
    };
    let mut lines = lines;
    lines.push(format!(
        "missions publish: checked {}'s result and pushed {} to {expected_branch}",
        args.job,
        short(&commit)
    ));
    Ok(lines)
}

/// A fresh repository, nothing of the agent's job in it, that fetches only
/// the heads it checks against and builds on (no branch's history).
fn fresh_repo(env: &JobEnv) -> anyhow::Result<(TempDir, Git)> {
    let dir = TempDir::new("missions-publish-")?;
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo)?;
    let init = std::process::Command::new(super::sandbox::trusted_binary("git")?)
        .args(["init", "--quiet"])
        .arg(&repo)
        .env_clear()
        .env("PATH", super::sandbox::TRUSTED_PATH)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .context("cannot run git init")?;
    if !init.success() {
        bail!("git init failed in {}", repo.display());
    }
    let git = Git::new(&repo, env)?.fetch_heads_only();
    Ok((dir, git))
}

/// The agent's job left no result: pushes its usage ledger, if it left one,
/// to the reports branch where the App reads it, then fails (the job did).
async fn publish_ledger(args: &PublishArgs, env: &JobEnv) -> anyhow::Result<Vec<String>> {
    let issue = args.mission;
    let missing = format!(
        "the agent job left no result ({MANIFEST} is missing in {}): it failed before writing one",
        args.result_dir.display()
    );
    let Some(ledger) = super::usage::read_ledger(&args.result_dir, &args.job)? else {
        bail!("{missing}, and no usage ledger: it made no model call");
    };
    let (_dir, git) = fresh_repo(env)?;
    let branch = reports_branch(issue);
    let files = vec![(
        super::usage::ledger_path(issue, &args.job),
        // Written anew from what was checked, never copied as it came.
        serde_json::to_vec_pretty(&ledger)?,
    )];
    let message = format!(
        "missions #{issue}: usage of {} (it left no result)\n\nMission-Job: {}\n",
        args.job, args.job
    );
    let commit = git
        .commit_files_to_branch(&branch, &files, &message)
        .await
        .with_context(|| format!("cannot push the job's usage to {branch}"))?;
    bail!(
        "{missing}; its usage ({} model call(s), {} tokens in, {} out, {}) is recorded on {branch} ({})",
        ledger.calls,
        ledger.usage.input_tokens
            + ledger.usage.cache_read_tokens
            + ledger.usage.cache_write_tokens,
        ledger.usage.output_tokens,
        crate::llm::pricing::dollars(ledger.usage.cost_micros),
        short(&commit)
    )
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

async fn read_envelope(git: &Git, rev: &str, path: &str, job: &str) -> anyhow::Result<JobOutput> {
    let bytes = git
        .show(rev, path)
        .await?
        .with_context(|| format!("{path} is missing"))?;
    let output: JobOutput =
        serde_json::from_slice(&bytes).with_context(|| format!("{path} is not a job output"))?;
    if output.job != job {
        bail!("{path} is the output of job {:?}, not {job:?}", output.job);
    }
    Ok(output)
}

/// The repository's pinned paths, from its settings on the default branch.
async fn pinned_paths(git: &Git, args: &PublishArgs, env: &JobEnv) -> anyhow::Result<Vec<String>> {
    let config_ref = match &args.config_ref {
        Some(r) if !r.trim().is_empty() => r.trim().to_owned(),
        _ => super::github::Rest::new(env)?
            .default_branch()
            .await
            .context("cannot find the default branch")?,
    };
    let (config, _prompts) = super::read_settings(git, &config_ref)
        .await
        .context("cannot read the repository's settings")?;
    Ok(config.pinned_paths())
}

/// The agent job's commit may be pushed: one commit on the branch's current
/// head, carried whole by the bundle, changing only what this role's job may
/// change.
async fn verify_commit(
    git: &Git,
    args: &PublishArgs,
    branch: &str,
    pinned: &[String],
    parent: &str,
    commit: &str,
) -> anyhow::Result<()> {
    let issue = args.mission;
    let is_id = |s: &str| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_id(parent) || !is_id(commit) {
        bail!("the result names commits that are not commit ids; refused");
    }
    let head = git
        .fetch_head_only(branch)
        .await?
        .with_context(|| format!("the branch {branch} no longer exists; nothing pushed"))?;
    if head != parent {
        bail!(
            "{branch} moved since the agent job started (it is at {}, the job started from {}); \
             nothing pushed",
            short(&head),
            short(parent)
        );
    }
    let bundle = args.result_dir.join(BUNDLE);
    let size = std::fs::metadata(&bundle)
        .with_context(|| format!("the result has no {BUNDLE}"))?
        .len();
    if size > MAX_BUNDLE_BYTES {
        bail!("{BUNDLE} is {size} bytes, over the {MAX_BUNDLE_BYTES} allowed; refused");
    }
    let bundle_path = bundle.display().to_string();
    let heads = git
        .run(&["bundle", "list-heads", &bundle_path])
        .await?
        .text();
    let expected = format!("{commit} {RESULT_REF}");
    if heads.lines().map(str::trim).collect::<Vec<_>>() != [expected.as_str()] {
        bail!("{BUNDLE} must hold exactly {RESULT_REF} at {commit}; it holds {heads:?}; refused");
    }
    let spec = format!("{RESULT_REF}:refs/missions-publish/result");
    git.run(&[
        "-c",
        "fetch.fsckObjects=true",
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-write-fetch-head",
        &bundle_path,
        &spec,
    ])
    .await
    .context("the bundle does not apply on the branch's head; refused")?;
    let parents = git
        .run(&["rev-list", "--parents", "-n", "1", commit])
        .await?
        .text();
    if parents != format!("{commit} {parent}") {
        bail!("the job's commit must have the branch's head as its only parent; refused");
    }
    // The harness's commit: its identity, and only this job's Mission-* lines
    // (scrutiny finds a feature's commits by them).
    let made = git
        .run(&["show", "-s", "--format=%an%n%ae%n%cn%n%ce", commit])
        .await?
        .text();
    let (name, email) = git.identity();
    let bot = format!("{name}\n{email}");
    if made != format!("{bot}\n{bot}") {
        bail!("the job's commit is not the harness's ({name} as author and committer); refused");
    }
    let message = git
        .run(&["show", "-s", "--format=%B", commit])
        .await?
        .text();
    check_message(&message, args)?;
    let changed = git
        .run(&[
            "diff-tree",
            "-r",
            "--no-renames",
            "--name-only",
            "-z",
            parent,
            commit,
        ])
        .await?;
    let changed: Vec<String> = changed
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let mission_dir = format!(".missions/{issue}/");
    let envelope = output::envelope_path(issue, &args.job);
    let handoff = args
        .feature
        .as_deref()
        .map(|f| output::handoff_path(issue, f));
    let refused: Vec<&String> = changed
        .iter()
        .filter(|path| match args.role {
            // The orchestrator writes the mission's plan, skills and its own
            // envelope: never another job's result, a handoff or a report.
            JobRole::Orchestrator => {
                let others = ["jobs/", "handoffs/", "reports/"]
                    .iter()
                    .any(|d| path.starts_with(&format!("{mission_dir}{d}")));
                !path.starts_with(&mission_dir) || (others && **path != envelope)
            }
            // A worker: anything but the pinned paths, plus its own handoff
            // and envelope.
            _ => {
                let own = **path == envelope
                    || handoff.as_deref() == Some(path.as_str())
                    || **path == super::issue_text::snapshot_path(issue);
                let inside = |p: &String| *path == p || path.starts_with(&format!("{p}/"));
                !own && pinned.iter().any(inside)
            }
        })
        .collect();
    if !refused.is_empty() {
        let list: Vec<String> = refused.iter().take(10).map(|p| format!("{p:?}")).collect();
        bail!(
            "the result changes paths a {} job may not change ({}{}); refused, nothing pushed. \
             The harness in the agent job drops such changes, so this result was altered after it",
            args.role.as_str(),
            list.join(", "),
            if refused.len() > 10 { ", …" } else { "" }
        );
    }
    read_envelope(git, commit, &envelope, &args.job)
        .await
        .context("the job's commit has no readable envelope; refused")?;
    Ok(())
}

/// A commit message as the harness writes it: short, and its `Mission-*`
/// lines (which later jobs read) naming this job and its feature only.
fn check_message(message: &str, args: &PublishArgs) -> anyhow::Result<()> {
    const MAX_MESSAGE_BYTES: usize = 4096;
    if message.len() > MAX_MESSAGE_BYTES {
        bail!("the job's commit message is over {MAX_MESSAGE_BYTES} bytes; refused");
    }
    let job_line = format!("Mission-Job: {}", args.job);
    let feature_line = args
        .feature
        .as_deref()
        .filter(|_| args.role == JobRole::Worker)
        .map(|f| format!("Mission-Feature: {f}"));
    let mut named_job = false;
    for line in message.lines().map(str::trim) {
        if !line.starts_with("Mission-") {
            continue;
        }
        if line == job_line {
            named_job = true;
        } else if feature_line.as_deref() != Some(line) {
            bail!("the job's commit message says {line:?}, which is not this job's; refused");
        }
    }
    if !named_job {
        bail!("the job's commit message does not name the job ({job_line}); refused");
    }
    Ok(())
}

/// A validator's files: its envelope and its own report,
/// `.missions/<n>/reports/<milestone>-<role>.json`.
fn verify_report_files(
    issue: u64,
    role: JobRole,
    job: &str,
    files: &[ArtifactFile],
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let envelope = output::envelope_path(issue, job);
    let reports = format!(".missions/{issue}/reports/");
    let own_report = format!("-{}.json", role.as_str());
    // The user tester's screenshots: `<milestone>-user-testing/<name>.png`.
    let screenshot = |path: &str| {
        role == JobRole::UserTesting
            && path.strip_prefix(&reports).is_some_and(|rest| {
                rest.split_once('/').is_some_and(|(dir, name)| {
                    dir.len() > "-user-testing".len()
                        && dir.ends_with("-user-testing")
                        && !dir.contains('/')
                        && name.strip_suffix(".png").is_some_and(|stem| {
                            !stem.is_empty()
                                && stem
                                    .bytes()
                                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                        })
                })
            })
    };
    let mut out = Vec::new();
    let mut screenshots = 0;
    for file in files {
        let path = &file.path;
        let report = path.strip_prefix(&reports).is_some_and(|name| {
            name.len() > own_report.len() && !name.contains('/') && name.ends_with(&own_report)
        });
        let is_screenshot = screenshot(path);
        if *path != envelope && !report && !is_screenshot {
            bail!(
                "a validator's result may hold only its envelope, reports and (user testing) screenshots, not {path:?}; refused"
            );
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&file.content_base64)
            .with_context(|| format!("{path} is not base64"))?;
        if is_screenshot {
            screenshots += 1;
            if screenshots > output::MAX_SCREENSHOTS {
                bail!(
                    "the result holds more than {} screenshots; refused",
                    output::MAX_SCREENSHOTS
                );
            }
            if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
                bail!("{path} is not a PNG image; refused");
            }
        }
        if bytes.len() > MAX_FILE_BYTES {
            bail!(
                "{path} is {} bytes, over the {MAX_FILE_BYTES} allowed; refused",
                bytes.len()
            );
        }
        out.push((path.clone(), bytes));
    }
    let Some((_, bytes)) = out.iter().find(|(p, _)| *p == envelope) else {
        bail!("the result has no envelope {envelope}; refused");
    };
    let output: JobOutput = serde_json::from_slice(bytes)
        .with_context(|| format!("{envelope} is not a job output; refused"))?;
    if output.job != job {
        bail!(
            "{envelope} is the output of job {:?}, not {job:?}; refused",
            output.job
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_round_trips_and_rejects_unknown_fields() {
        let artifact = ResultArtifact::Files {
            job: "M1-scrutiny-1.1".into(),
            branch: "missions/7/reports".into(),
            message: "m".into(),
            files: vec![ArtifactFile::new(
                ".missions/7/reports/M1-scrutiny.json",
                b"{}",
            )],
        };
        let text = serde_json::to_string(&artifact).unwrap();
        assert_eq!(
            serde_json::from_str::<ResultArtifact>(&text).unwrap(),
            artifact
        );
        let extra = text.replacen("{", "{\"push_to\":\"main\",", 1);
        assert!(serde_json::from_str::<ResultArtifact>(&extra).is_err());
    }

    fn args(role: JobRole, feature: Option<&str>) -> PublishArgs {
        PublishArgs {
            role,
            mission: 7,
            job: "feature-F1.1".into(),
            feature: feature.map(str::to_owned),
            config_ref: None,
            result_dir: PathBuf::new(),
        }
    }

    #[test]
    fn a_commit_message_names_this_job_and_its_feature_only() {
        let worker = args(JobRole::Worker, Some("F1"));
        let good = "missions #7: feature-F1.1 (worker feature)\n\nMission-Job: feature-F1.1\nMission-Feature: F1\n";
        check_message(good, &worker).unwrap();
        for bad in [
            "missions #7: forged\n",
            "x\n\nMission-Job: feature-F2.1\n",
            "x\n\nMission-Job: feature-F1.1\nMission-Feature: F2\n",
            "x\n\nMission-Job: feature-F1.1\nMission-Approved: yes\n",
        ] {
            assert!(check_message(bad, &worker).is_err(), "{bad:?}");
        }
        // Only a worker's commit names a feature.
        let orchestrator = args(JobRole::Orchestrator, Some("F1"));
        assert!(check_message(good, &orchestrator).is_err());
        assert!(check_message(&"x".repeat(5000), &worker).is_err());
    }

    #[test]
    fn a_validator_result_holds_only_its_envelope_and_reports() {
        let envelope = output::envelope(&JobOutput {
            job: "M1-scrutiny-1.1".into(),
            result: crate::mission::JobResult::Incomplete { reason: "r".into() },
            usage: Default::default(),
            budget_stop: false,
        });
        let good = |path: &str| ArtifactFile::new(path, b"{}");
        let env_file = ArtifactFile::new(".missions/7/jobs/M1-scrutiny-1.1.json", &envelope);
        let scrutiny = |files: &[ArtifactFile]| {
            verify_report_files(7, JobRole::Scrutiny, "M1-scrutiny-1.1", files)
        };
        assert!(
            scrutiny(&[
                env_file.clone(),
                good(".missions/7/reports/M1-scrutiny.json")
            ])
            .is_ok()
        );
        for bad in [
            ".missions/7/plan.json",
            ".missions/7/reports/../plan.json",
            ".github/workflows/x.yml",
            ".missions/7/reports/sub/x.json",
            ".missions/8/reports/M1-scrutiny.json",
            // The other validator's report.
            ".missions/7/reports/M1-user-testing.json",
        ] {
            let err = scrutiny(&[env_file.clone(), good(bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("refused"), "{bad}: {err}");
        }
        // Without the envelope: refused too.
        assert!(
            verify_report_files(
                7,
                JobRole::Scrutiny,
                "M1-scrutiny-1.1",
                &[good(".missions/7/reports/M1-scrutiny.json")]
            )
            .is_err()
        );
    }

    #[test]
    fn only_the_user_tester_adds_screenshots_and_only_pngs_beside_its_report() {
        let envelope = |job: &str| {
            output::envelope(&JobOutput {
                job: job.into(),
                result: crate::mission::JobResult::Incomplete { reason: "r".into() },
                usage: Default::default(),
                budget_stop: false,
            })
        };
        let png = |path: &str| ArtifactFile::new(path, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
        let tester = |files: Vec<ArtifactFile>| {
            let mut all = vec![ArtifactFile::new(
                ".missions/7/jobs/M1-user-testing-1.1.json",
                &envelope("M1-user-testing-1.1"),
            )];
            all.extend(files);
            verify_report_files(7, JobRole::UserTesting, "M1-user-testing-1.1", &all)
        };
        let kept = tester(vec![
            ArtifactFile::new(".missions/7/reports/M1-user-testing.json", b"{}"),
            png(".missions/7/reports/M1-user-testing/01-form.png"),
        ])
        .unwrap();
        assert_eq!(kept.len(), 3);
        for (bad, why) in [
            (
                png(".missions/7/reports/M1-user-testing/../x.png"),
                "refused",
            ),
            (
                png(".missions/7/reports/M1-user-testing/a b.png"),
                "refused",
            ),
            (png(".missions/7/reports/M1-scrutiny/01.png"), "refused"),
            (png(".missions/7/reports/M1-user-testing/x.svg"), "refused"),
            (
                ArtifactFile::new(".missions/7/reports/M1-user-testing/x.png", b"<svg/>"),
                "is not a PNG image",
            ),
        ] {
            let err = tester(vec![bad]).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
        let many = (0..=output::MAX_SCREENSHOTS)
            .map(|n| png(&format!(".missions/7/reports/M1-user-testing/{n:02}.png")))
            .collect();
        let err = tester(many).unwrap_err().to_string();
        assert!(err.contains("more than 20 screenshots"), "{err}");
        // Scrutiny takes none.
        let err = verify_report_files(
            7,
            JobRole::Scrutiny,
            "M1-scrutiny-1.1",
            &[
                ArtifactFile::new(
                    ".missions/7/jobs/M1-scrutiny-1.1.json",
                    &envelope("M1-scrutiny-1.1"),
                ),
                png(".missions/7/reports/M1-scrutiny/01.png"),
            ],
        )
        .unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
    }
}
