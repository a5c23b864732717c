//! The merge queue, as GitHub runs it for a branch whose rules require one.
//!
//! *Merge when ready* (GraphQL's `enqueuePullRequest`; the simulator offers it
//! as [`Sim::enqueue`](super::Sim::enqueue)) queues a pull request that meets
//! the base's requirements. GitHub then builds a merge group: the base's tip
//! with the pull request merged in, on `gh-readonly-queue/<base>/pr-<n>-<head>`,
//! and asks for the base's required checks on it (`merge_group`
//! `checks_requested`). When they all pass, the base is fast-forwarded to the
//! group's commit and the pull request is closed as merged by
//! `github-merge-queue[bot]`; when one fails, the pull request leaves the queue
//! (`destroyed` with reason `dequeued`). A base that moved meanwhile
//! invalidates the group, which is built again on the new tip.

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use super::state::{AccountKind, IssueState, MergeGroup, Permission, RequiredChecks};
use super::{SimInner, git, gitapi, render};
use crate::sim_fields;

type Sim = std::sync::Arc<SimInner>;

/// The account the queue merges as.
pub const QUEUE_BOT: &str = "github-merge-queue[bot]";

/// `login` presses *Merge when ready* on pull request `number`.
pub(crate) async fn enqueue(sim: &Sim, name: &str, number: u64, login: &str) -> anyhow::Result<()> {
    {
        let mut world = sim.world();
        world.ensure_account(QUEUE_BOT, AccountKind::Bot);
        let repo = world.repos.get(name).context("no such repository")?;
        ensure!(
            world.permission(repo, login) >= Permission::Write,
            "@{login} may not merge pull requests in {name}"
        );
        let issue = repo.issues.get(&number).context("no such pull request")?;
        let pull = issue.pull.as_ref().context("not a pull request")?;
        ensure!(
            issue.state == IssueState::Open && pull.merged_at.is_none(),
            "pull request #{number} is not open"
        );
        ensure!(
            repo.merge_queue.contains(&pull.base_ref),
            "{} has no merge queue",
            pull.base_ref
        );
        ensure!(
            !repo.merge_groups.iter().any(|g| g.pr == number),
            "pull request #{number} is already queued"
        );
        // The queue takes a pull request that meets the base's requirements.
        match repo.required_checks(&pull.base_ref, &pull.head_sha, 0) {
            RequiredChecks::Passed => {}
            RequiredChecks::Waiting(check) | RequiredChecks::Failed(check) => {
                bail!("Required status check \"{check}\" is expected.")
            }
        }
    }
    emit_pull(
        sim,
        name,
        number,
        login,
        sim_fields!("action" => "enqueued"),
    )
    .await?;
    build_group(sim, name, number, login).await?;
    advance(sim, name).await;
    Ok(())
}

/// Settles every group whose required checks have all concluded. Called
/// whenever a check run completes.
pub(crate) async fn advance(sim: &Sim, name: &str) {
    loop {
        let settled = {
            let world = sim.world();
            let Some(repo) = world.repos.get(name) else {
                return;
            };
            repo.merge_groups.iter().find_map(|g| {
                match repo.required_checks(&g.base_ref, &g.head_sha, g.checks_after) {
                    RequiredChecks::Waiting(_) => None,
                    checks => Some((g.clone(), checks)),
                }
            })
        };
        let Some((group, checks)) = settled else {
            return;
        };
        let result = match checks {
            RequiredChecks::Failed(check) => dequeue(sim, name, &group, &check).await,
            _ => merge(sim, name, &group).await,
        };
        if let Err(e) = result {
            tracing::warn!(
                error = format!("{e:#}"),
                "the simulator's merge queue failed"
            );
            return;
        }
    }
}

async fn build_group(sim: &Sim, name: &str, number: u64, enqueued_by: &str) -> anyhow::Result<()> {
    let (base_ref, pull_head, pull_head_ref) = {
        let world = sim.world();
        let pull = world.repos[name].issues[&number]
            .pull
            .as_ref()
            .context("not a pull request")?;
        (
            pull.base_ref.clone(),
            pull.head_sha.clone(),
            pull.head_ref.clone(),
        )
    };
    let base_sha = sim
        .git
        .resolve_ref(name, &format!("refs/heads/{base_ref}"))
        .await?
        .context("the base branch is gone")?;
    let head_ref = format!("gh-readonly-queue/{base_ref}/pr-{number}-{pull_head}");
    sim.git
        .create_ref(name, &format!("refs/heads/{head_ref}"), &base_sha)
        .await?;
    let committer = git::Signature {
        name: "GitHub".into(),
        email: "noreply@github.com".into(),
        date: sim.clock.now(),
    };
    let owner = name.split('/').next().unwrap_or_default();
    let message = format!("Merge pull request #{number} from {owner}/{pull_head_ref}");
    let head_sha = sim
        .git
        .merge(
            name,
            &head_ref,
            &pull_head,
            git::MergeMethod::Merge,
            &message,
            &committer,
        )
        .await?;
    gitapi::after_ref_change(
        sim,
        name,
        &format!("refs/heads/{head_ref}"),
        None,
        Some(head_sha.clone()),
        QUEUE_BOT,
    )
    .await;
    let checks_after = sim.world().repos[name]
        .check_runs
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0);
    let group = MergeGroup {
        pr: number,
        base_ref,
        base_sha,
        head_ref,
        head_sha,
        enqueued_by: enqueued_by.to_owned(),
        checks_after,
    };
    let payload = group_json(sim, name, &group).await?;
    let mut world = sim.world();
    world
        .repos
        .get_mut(name)
        .expect("repo")
        .merge_groups
        .push(group);
    sim.emit(
        &world,
        "merge_group",
        name,
        QUEUE_BOT,
        sim_fields!("action" => "checks_requested", "merge_group" => payload),
    );
    drop(world);
    sim.bump();
    Ok(())
}

/// The required checks passed: the base moves to the group's commit and the
/// pull request is merged; a base that moved since gets a new group.
async fn merge(sim: &Sim, name: &str, group: &MergeGroup) -> anyhow::Result<()> {
    let base = format!("refs/heads/{}", group.base_ref);
    let tip = sim.git.resolve_ref(name, &base).await?;
    if tip.as_deref() != Some(group.base_sha.as_str()) {
        destroy(sim, name, group, "invalidated").await?;
        return build_group(sim, name, group.pr, &group.enqueued_by).await;
    }
    sim.git
        .update_ref(name, &base, &group.head_sha, false)
        .await?;
    gitapi::after_ref_change(
        sim,
        name,
        &base,
        tip,
        Some(group.head_sha.clone()),
        QUEUE_BOT,
    )
    .await;
    let now = sim.clock.now();
    {
        let mut world = sim.world();
        let repo = world.repos.get_mut(name).expect("repo");
        let issue = repo.issues.get_mut(&group.pr).context("no pull request")?;
        issue.state = IssueState::Closed;
        issue.closed_at = Some(now);
        issue.updated_at = now;
        if let Some(p) = issue.pull.as_mut() {
            p.merged_at = Some(now);
            p.merged_by = Some(QUEUE_BOT.to_owned());
            p.merge_commit_sha = Some(group.head_sha.clone());
        }
    }
    destroy(sim, name, group, "merged").await?;
    emit_pull(
        sim,
        name,
        group.pr,
        QUEUE_BOT,
        sim_fields!("action" => "closed"),
    )
    .await
}

/// Sends `pull_request` for pull request `number` with `fields` (its action).
async fn emit_pull(
    sim: &Sim,
    name: &str,
    number: u64,
    sender: &str,
    mut fields: serde_json::Map<String, Value>,
) -> anyhow::Result<()> {
    let pr = pull_json(sim, name, number).await?;
    fields.insert("number".into(), number.into());
    fields.insert("pull_request".into(), pr);
    let world = sim.world();
    sim.emit(&world, "pull_request", name, sender, fields);
    drop(world);
    sim.bump();
    Ok(())
}

/// A required check failed on the group: the pull request leaves the queue.
async fn dequeue(sim: &Sim, name: &str, group: &MergeGroup, check: &str) -> anyhow::Result<()> {
    destroy(sim, name, group, "dequeued").await?;
    let fields = sim_fields!("action" => "dequeued", "reason" => format!("CI_FAILURE: {check}"));
    emit_pull(sim, name, group.pr, QUEUE_BOT, fields).await
}

/// Removes the group and its branch, with `merge_group` `destroyed`.
async fn destroy(sim: &Sim, name: &str, group: &MergeGroup, reason: &str) -> anyhow::Result<()> {
    let refname = format!("refs/heads/{}", group.head_ref);
    sim.git.delete_ref(name, &refname).await?;
    gitapi::after_ref_change(
        sim,
        name,
        &refname,
        Some(group.head_sha.clone()),
        None,
        QUEUE_BOT,
    )
    .await;
    let payload = group_json(sim, name, group).await?;
    let mut world = sim.world();
    world
        .repos
        .get_mut(name)
        .expect("repo")
        .merge_groups
        .retain(|g| g.head_sha != group.head_sha);
    sim.emit(
        &world,
        "merge_group",
        name,
        QUEUE_BOT,
        sim_fields!("action" => "destroyed", "reason" => reason, "merge_group" => payload),
    );
    Ok(())
}

/// The webhooks' `merge_group` object.
async fn group_json(sim: &Sim, name: &str, group: &MergeGroup) -> anyhow::Result<Value> {
    let commit = sim
        .git
        .commit(name, &group.head_sha)
        .await?
        .context("the group's commit is gone")?;
    Ok(json!({
        "head_sha": group.head_sha,
        "head_ref": format!("refs/heads/{}", group.head_ref),
        "base_sha": group.base_sha,
        "base_ref": format!("refs/heads/{}", group.base_ref),
        "head_commit": {
            "id": commit.sha,
            "tree_id": commit.tree,
            "message": commit.message,
            "timestamp": render::timestamp(commit.committer.date),
            "author": { "name": commit.author.name, "email": commit.author.email },
            "committer": { "name": commit.committer.name, "email": commit.committer.email },
        },
    }))
}

async fn pull_json(sim: &Sim, name: &str, number: u64) -> anyhow::Result<Value> {
    super::api::render_pull(sim, name, number)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))
}
