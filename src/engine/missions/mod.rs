//! The mission driver: applies recorded inputs to missions and performs their
//! effects on GitHub.
//!
//! The event loop's [`MissionHandler`] records a [`MissionInput`] per relevant
//! webhook in the same transaction that marks the delivery processed. The driver
//! then, outside any transaction, looks up what the input needs (the sender's
//! permission, the repository's settings, a job's committed result), and in one
//! transaction applies the event to the mission, saves it and records the effects
//! in the outbox. Effects are performed afterwards, in order per mission; one that
//! yields a fact (a PR number, the ready commit) feeds it back the same way.
//! A periodic reconciliation recovers job completions whose webhook never came.

pub mod effects;
pub mod input;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::github::client::{GitHubApp, GitHubError, InstallationClient, Method};
use crate::mission::machine::{self, Actor, Command, Event, IssueSnapshot, Mission, RunConclusion};
use crate::mission::outputs::{JobOutput, JobUsage, UsageLedger, Validator, ledger_path};
use crate::repo_config::RepoConfig;
use crate::store::Store;
use crate::store::missions::{self as db, EffectScope};
pub use effects::Dispatcher;
use effects::{EffectError, read_file};
pub use input::{MissionHandler, MissionInput, RunStatus, Sender};

/// Where the repository's settings live, on its default branch.
pub const REPO_CONFIG_PATH: &str = ".github/missions.yml";
/// Tries of one input or effect before it is given up (with a comment).
const MAX_TRIES: i64 = 8;
/// The longest rate-limit wait slept inside the driver's loop.
const INLINE_RATE_LIMIT_WAIT: Duration = Duration::from_secs(10);

/// How long GitHub asked to wait, when `e` is a rate limit: the work waits
/// that long and is not counted as a failed try.
fn rate_limit_wait(e: &anyhow::Error) -> Option<Duration> {
    e.chain()
        .find_map(|cause| match cause.downcast_ref::<GitHubError>() {
            Some(GitHubError::RateLimited { retry_after, .. }) => Some(*retry_after),
            _ => None,
        })
}

#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The mission workflow's file name under `.github/workflows/`.
    pub workflow_file: String,
    /// How often running jobs are compared with GitHub's view of their runs.
    pub reconcile_every: Duration,
    /// A job with no sign of completion after this long counts as lost.
    pub job_timeout: Duration,
    /// The server's `[model]`: every repository's `models:` resolve over it,
    /// here and in the jobs (sent as the `server_model` input).
    pub server_model: crate::llm::config::ModelConfig,
    /// Several servers on one database: how long the driver's lease lasts
    /// without renewal, so how soon another server takes over from a dead one.
    pub lease_ttl: Duration,
    /// Several servers on one database: how often the driving server looks
    /// for inputs the others recorded (they cannot wake it).
    pub shared_poll: Duration,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            workflow_file: "missions.yml".into(),
            reconcile_every: Duration::from_secs(60),
            job_timeout: Duration::from_secs(6 * 3600),
            server_model: crate::llm::config::ModelConfig::default(),
            lease_ttl: Duration::from_secs(10),
            shared_poll: Duration::from_millis(250),
        }
    }
}

pub struct MissionDriver {
    store: Store,
    app: Arc<GitHubApp>,
    config: DriverConfig,
    clock: SharedClock,
    dispatcher: Dispatcher,
    /// Bumped after every pass that changed something: lets tests and the
    /// mission control page wait for progress.
    progress: tokio::sync::watch::Sender<u64>,
    /// Several servers on one database: whether this one holds the driver's
    /// lease (`None`: one server, which always drives). Checked before each
    /// input and effect, so that a server that lost it stops within one step.
    lease: Option<tokio::sync::watch::Receiver<bool>>,
    /// This server's name as the lease's holder, when it takes the lease.
    holder: Option<String>,
}

/// What an input amounts to once looked up.
// Short-lived, one at a time.
#[allow(clippy::large_enum_variant)]
enum Resolution {
    Ignore,
    /// A reply outside any mission (an invalid `.github/missions.yml`).
    Reply {
        issue: u64,
        effects: Vec<machine::Effect>,
    },
    /// A label by someone who may not start a mission: `reply`, unless they were
    /// already told on this issue.
    RefuseStart {
        issue: u64,
        login: String,
        reply: machine::Effect,
    },
    Start {
        mission: Mission,
        effects: Vec<machine::Effect>,
    },
    Apply {
        mission_id: i64,
        event: Event,
    },
    /// As `Apply`, and a comment first telling the person something they must know.
    ApplyWithNote {
        mission_id: i64,
        event: Event,
        note: String,
    },
}

fn now_ms(clock: &SharedClock) -> i64 {
    (clock.now().unix_timestamp_nanos() / 1_000_000) as i64
}

fn backoff_ms(attempts: i64) -> i64 {
    1000 * (1i64 << attempts.clamp(0, 6))
}

impl MissionDriver {
    pub fn new(
        store: Store,
        app: Arc<GitHubApp>,
        config: DriverConfig,
        clock: SharedClock,
    ) -> Self {
        let dispatcher = Dispatcher {
            workflow_file: config.workflow_file.clone(),
            api_base: app.base_url().to_owned(),
            app_id: app.app_id(),
            // Only a model other than the built-in default is sent: a
            // workflow written before this input still runs such missions.
            server_model: (config.server_model != crate::llm::config::ModelConfig::default())
                .then(|| serde_json::to_string(&config.server_model).expect("a model serializes")),
        };
        MissionDriver {
            store,
            app,
            config,
            clock,
            dispatcher,
            progress: tokio::sync::watch::Sender::new(0),
            lease: None,
            holder: None,
        }
    }

    /// A write transaction for the driver's work: when servers share the
    /// database, it fails unless this server still holds the driver's lease,
    /// and keeps the lease from changing hands until it commits.
    async fn begin_write(&self) -> anyhow::Result<crate::store::WriteTx> {
        let mut tx = self.store.begin_write().await?;
        if let Some(holder) = &self.holder {
            crate::store::lease::fence(
                &mut tx,
                self.store.engine(),
                crate::store::lease::MISSION_DRIVER,
                holder,
            )
            .await?;
        }
        Ok(tx)
    }

    /// Whether this server may drive missions now.
    fn drives(&self) -> bool {
        self.lease.as_ref().is_none_or(|held| *held.borrow())
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.progress.subscribe()
    }

    fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    /// Runs until `shutdown`; wakes when the event loop commits (`inputs`), when an
    /// effect's retry is due, and for reconciliation. When several servers share
    /// the database, only the one holding the driver's lease drives (and
    /// reconciles); the others wait to take over. The lease is given up only
    /// once this driver has stopped, so that no step is ever run twice at once.
    pub async fn run(
        mut self,
        inputs: tokio::sync::watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) {
        if !self.store.is_shared() {
            return self.drive(inputs, shutdown).await;
        }
        let stop_lease = CancellationToken::new();
        let holder = crate::store::lease::holder_name();
        let (held, keeper) = crate::store::lease::keep(
            self.store.clone(),
            crate::store::lease::MISSION_DRIVER,
            holder.clone(),
            self.config.lease_ttl,
            stop_lease.clone(),
        );
        self.lease = Some(held);
        self.holder = Some(holder);
        self.drive(inputs, shutdown).await;
        stop_lease.cancel();
        let _ = keeper.await;
    }

    async fn drive(
        &self,
        mut inputs: tokio::sync::watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) {
        let mut last_reconcile = tokio::time::Instant::now();
        // Reconcile once at start: a restart may follow lost webhooks.
        let mut reconcile_now = true;
        let mut lease = self.lease.clone();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            if let Some(held) = &mut lease
                && !*held.borrow_and_update()
            {
                // Another server drives. When this one takes over, it
                // reconciles first: the last driver may have died mid-way.
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = held.changed() => if changed.is_err() { return },
                }
                reconcile_now = true;
                continue;
            }
            let mut worked = match self.pass().await {
                Ok(worked) => worked,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "mission driver pass failed");
                    false
                }
            };
            if reconcile_now || last_reconcile.elapsed() >= self.config.reconcile_every {
                reconcile_now = false;
                last_reconcile = tokio::time::Instant::now();
                match self.reconcile().await {
                    Ok(n) => worked |= n > 0,
                    Err(e) => tracing::warn!(error = format!("{e:#}"), "reconciliation failed"),
                }
            }
            if worked {
                self.progress.send_modify(|n| *n += 1);
                continue;
            }
            let mut wait = self
                .config
                .reconcile_every
                .saturating_sub(last_reconcile.elapsed());
            let now = now_ms(&self.clock);
            for next in [
                db::next_effect_retry(self.store.pool(), now).await,
                db::next_input_retry(self.store.pool(), now).await,
            ]
            .into_iter()
            .flatten()
            .flatten()
            {
                let due_in = (next - now_ms(&self.clock)).max(0) as u64;
                wait = wait.min(Duration::from_millis(due_in.max(50)));
            }
            if lease.is_some() {
                wait = wait.min(self.config.shared_poll);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = inputs.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Applies due inputs, then performs due effects. True if anything happened.
    pub async fn pass(&self) -> anyhow::Result<bool> {
        let mut worked = false;
        loop {
            let applied = self.apply_inputs().await?;
            let performed = self.perform_effects().await?;
            if applied + performed == 0 {
                return Ok(worked);
            }
            worked = true;
        }
    }

    async fn apply_inputs(&self) -> anyhow::Result<usize> {
        let mut count = 0;
        // Missions with an input waiting for a retry: their later inputs wait too
        // (a mission's inputs apply in order); other missions go on.
        let mut blocked: std::collections::BTreeSet<(String, Option<u64>)> = Default::default();
        // Installations whose rate limit is spent: their inputs wait for the
        // reset; other installations' go on.
        let mut limited: std::collections::BTreeSet<i64> = Default::default();
        for pending in db::pending_inputs(self.store.pool()).await? {
            if !self.drives() {
                break;
            }
            let now = now_ms(&self.clock);
            let input: MissionInput = match serde_json::from_str(&pending.input) {
                Ok(i) => i,
                Err(e) => {
                    count += 1;
                    let mut tx = self.begin_write().await?;
                    db::finish_input(
                        &mut tx,
                        pending.seq,
                        false,
                        Some(&format!("unreadable input: {e}")),
                    )
                    .await?;
                    tx.commit().await?;
                    continue;
                }
            };
            let key = (pending.repo.clone(), input.issue());
            if blocked.contains(&key) || limited.contains(&pending.installation_id) {
                blocked.insert(key);
                continue;
            }
            if pending.next_attempt_at > now {
                blocked.insert(key);
                continue;
            }
            count += 1;
            let resolution = self
                .resolve(pending.installation_id as u64, &pending.repo, &input)
                .await;
            let mut tx = self.begin_write().await?;
            match resolution {
                Ok(resolution) => {
                    self.record(&mut tx, pending.installation_id, &pending.repo, resolution)
                        .await?;
                    db::finish_input(&mut tx, pending.seq, true, None).await?;
                }
                Err(e) if let Some(wait) = rate_limit_wait(&e) => {
                    let at = now + (wait.as_millis() as i64).max(1000);
                    tracing::warn!(
                        seq = pending.seq,
                        installation = pending.installation_id,
                        wait_ms = at - now,
                        "the installation's rate limit is spent; the input waits for its reset"
                    );
                    db::defer_input(&mut tx, pending.seq, &format!("{e:#}"), at).await?;
                    limited.insert(pending.installation_id);
                    blocked.insert(key);
                }
                Err(e) if pending.attempts + 1 >= MAX_TRIES => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        seq = pending.seq,
                        "giving up on a mission input"
                    );
                    db::finish_input(&mut tx, pending.seq, false, Some(&format!("{e:#}"))).await?;
                    // Say so where the person acted, so that nothing is lost
                    // silently (a CI check's news is read again by polling).
                    if let Some(issue) = input.issue()
                        && !matches!(input, MissionInput::ExternalCheck { .. })
                        && let Some(stored) = db::find(&mut tx, &pending.repo, issue).await?
                    {
                        let scope = EffectScope {
                            mission_id: Some(stored.id),
                            installation_id: pending.installation_id,
                            repo: pending.repo.clone(),
                            issue,
                        };
                        let body = format!(
                            "The App could not act on {} after {MAX_TRIES} tries (GitHub kept failing: {}). \
                             Please do it again once GitHub is reachable.",
                            input.describe(),
                            crate::mission::plan::one_line(&format!("{e:#}"))
                        );
                        db::push_effects(
                            &mut tx,
                            &scope,
                            &[machine::Effect::Comment {
                                target: machine::Target::Issue,
                                body,
                            }],
                            now,
                        )
                        .await?;
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        seq = pending.seq,
                        "mission input will be retried"
                    );
                    let at = now + backoff_ms(pending.attempts);
                    db::retry_input_later(&mut tx, pending.seq, &format!("{e:#}"), at).await?;
                    blocked.insert(key);
                }
            }
            tx.commit().await?;
        }
        Ok(count)
    }

    async fn record(
        &self,
        tx: &mut sqlx::AnyConnection,
        installation_id: i64,
        repo: &str,
        resolution: Resolution,
    ) -> anyhow::Result<()> {
        let now = now_ms(&self.clock);
        match resolution {
            Resolution::Ignore => {}
            Resolution::Reply { issue, effects } => {
                let scope = EffectScope {
                    mission_id: None,
                    installation_id,
                    repo: repo.to_owned(),
                    issue,
                };
                db::push_effects(tx, &scope, &effects, now).await?;
            }
            Resolution::RefuseStart {
                issue,
                login,
                reply,
            } => {
                if !db::first_label_refusal(tx, repo, issue, &login, now).await? {
                    tracing::debug!(
                        repo,
                        issue,
                        login,
                        "refused label ignored without a reply: this person was told once already"
                    );
                    return Ok(());
                }
                let scope = EffectScope {
                    mission_id: None,
                    installation_id,
                    repo: repo.to_owned(),
                    issue,
                };
                db::push_effects(tx, &scope, &[reply], now).await?;
            }
            Resolution::Start { mission, effects } => {
                // A second label event for the same issue (a redelivery, a re-label):
                // the mission exists, nothing starts twice.
                if db::find(tx, repo, mission.issue).await?.is_some() {
                    return Ok(());
                }
                let id = db::insert(tx, installation_id, &mission, now).await?;
                let mut effects = effects;
                effects.push(machine::Effect::UpdateSticky);
                let scope = EffectScope {
                    mission_id: Some(id),
                    installation_id,
                    repo: repo.to_owned(),
                    issue: mission.issue,
                };
                db::push_effects(tx, &scope, &effects, now).await?;
                tracing::info!(repo, issue = mission.issue, "mission started");
            }
            Resolution::Apply { mission_id, event } => {
                self.apply_event(tx, mission_id, event).await?;
            }
            Resolution::ApplyWithNote {
                mission_id,
                event,
                note,
            } => {
                let stored = db::get(tx, mission_id).await?;
                let scope = EffectScope {
                    mission_id: Some(mission_id),
                    installation_id,
                    repo: repo.to_owned(),
                    issue: stored.mission.issue,
                };
                let comment = machine::Effect::Comment {
                    target: machine::Target::Issue,
                    body: note,
                };
                db::push_effects(tx, &scope, &[comment], now).await?;
                self.apply_event(tx, mission_id, event).await?;
            }
        }
        Ok(())
    }

    /// Applies `event` to the mission as stored now, saves it, records its effects.
    async fn apply_event(
        &self,
        tx: &mut sqlx::AnyConnection,
        mission_id: i64,
        event: Event,
    ) -> anyhow::Result<()> {
        let now = now_ms(&self.clock);
        let mut stored = db::get(tx, mission_id).await?;
        // Mission control follows every change but the news of its own comment.
        let refresh = !matches!(event, Event::StickyPosted { .. });
        let mut effects = stored.mission.apply(event, self.now());
        if refresh && !db::has_pending_sticky(tx, mission_id).await? {
            effects.push(machine::Effect::UpdateSticky);
        }
        db::save(tx, mission_id, &stored.mission, now).await?;
        let scope = EffectScope {
            mission_id: Some(mission_id),
            installation_id: stored.installation_id,
            repo: stored.mission.repo.clone(),
            issue: stored.mission.issue,
        };
        db::push_effects(tx, &scope, &effects, now).await?;
        Ok(())
    }

    async fn client(&self, installation_id: u64) -> anyhow::Result<InstallationClient> {
        Ok(self
            .app
            .installation(installation_id)
            .await
            .context("cannot get an installation token")?
            // One loop serves every installation: a longer wait is the
            // caller's to schedule, not to sleep through.
            .with_rate_limit_wait(INLINE_RATE_LIMIT_WAIT))
    }

    /// Looks up what the input needs; errors are worth a retry.
    async fn resolve(
        &self,
        installation_id: u64,
        repo: &str,
        input: &MissionInput,
    ) -> anyhow::Result<Resolution> {
        let pool = self.store.pool();
        let mut conn = pool.acquire().await?;
        match input {
            MissionInput::Labeled {
                issue,
                issue_author,
                label,
                sender,
                default_branch,
                title,
                body,
                updated_at,
            } => {
                if db::find(&mut conn, repo, *issue).await?.is_some() {
                    return Ok(Resolution::Ignore);
                }
                let client = self.client(installation_id).await?;
                let config = load_repo_config(&client, repo, default_branch).await?;
                // With the file invalid, the default label still says what was meant.
                let starts_missions = match &config {
                    Ok(c) => c.label.as_str(),
                    Err(_) => "mission",
                };
                if !label.eq_ignore_ascii_case(starts_missions) {
                    return Ok(Resolution::Ignore);
                }
                let actor = actor(&client, repo, sender).await?;
                if !actor.is_trusted() {
                    return Ok(match Mission::refuse_start(&actor) {
                        Some(reply) => Resolution::RefuseStart {
                            issue: *issue,
                            login: actor.login,
                            reply,
                        },
                        None => Resolution::Ignore,
                    });
                }
                let config = match config {
                    Ok(c) => c,
                    Err(message) => {
                        return Ok(Resolution::Reply {
                            issue: *issue,
                            effects: vec![machine::Effect::Comment {
                                target: machine::Target::Issue,
                                body: format!(
                                    "The mission could not start: `{REPO_CONFIG_PATH}` on `{default_branch}` is invalid.\n\n```\n{message}\n```\n\nFix it, then remove and add the label again."
                                ),
                            }],
                        });
                    }
                };
                let (mission, effects) = Mission::start(
                    repo,
                    *issue,
                    issue_author.clone(),
                    default_branch.clone(),
                    config.settings_over(&self.config.server_model),
                    &actor.login,
                    self.now(),
                );
                // The text the mission's jobs take (see Mission::issue_text).
                let mission = mission.with_issue_text(
                    title
                        .as_deref()
                        .map(|t| IssueSnapshot::of(t, body.as_deref(), updated_at.clone())),
                );
                Ok(Resolution::Start { mission, effects })
            }
            MissionInput::Edited {
                issue,
                title,
                body,
                updated_at,
                sender,
            } => {
                let Some(stored) = db::find(&mut conn, repo, *issue).await? else {
                    return Ok(Resolution::Ignore);
                };
                let client = self.client(installation_id).await?;
                let actor = actor(&client, repo, sender).await?;
                Ok(Resolution::Apply {
                    mission_id: stored.id,
                    event: Event::IssueEdited {
                        actor,
                        snapshot: IssueSnapshot::of(title, body.as_deref(), updated_at.clone()),
                    },
                })
            }
            MissionInput::Comment {
                issue,
                issue_author,
                body,
                sender,
                on_pull_request,
            } => {
                if sender.is_bot {
                    // The App's own comments, and other bots', never steer a mission.
                    return Ok(Resolution::Ignore);
                }
                let stored = if *on_pull_request {
                    if Command::parse(body).is_none() {
                        return Ok(Resolution::Ignore);
                    }
                    // A command on one of a mission's PRs steers that mission.
                    db::all(self.store.pool()).await?.into_iter().find(|m| {
                        m.mission.repo == repo
                            && (m.mission.plan_pr == Some(*issue)
                                || m.mission.milestone_prs.values().any(|n| n == issue))
                    })
                } else {
                    db::find(&mut conn, repo, *issue).await?
                };
                let Some(stored) = stored else {
                    return Ok(Resolution::Ignore);
                };
                let client = self.client(installation_id).await?;
                let actor = actor(&client, repo, sender).await?;
                let mut note = None;
                let event = match Command::parse(body) {
                    Some(command) => {
                        let settings = if !actor.is_trusted() {
                            // Refused anyway: neither the settings nor their
                            // errors are this person's business.
                            stored.mission.settings
                        } else {
                            match load_repo_config(&client, repo, &stored.mission.base).await? {
                                Ok(c) => c.settings_over(&self.config.server_model),
                                Err(message) => {
                                    note = Some(format!(
                                        "`{REPO_CONFIG_PATH}` on `{}` is invalid, so the mission keeps its previous settings:\n\n```\n{message}\n```",
                                        stored.mission.base
                                    ));
                                    stored.mission.settings
                                }
                            }
                        };
                        Event::Command {
                            actor,
                            command,
                            settings,
                        }
                    }
                    None => Event::Comment {
                        is_author: sender.login == *issue_author,
                        actor,
                    },
                };
                Ok(match note {
                    Some(note) => Resolution::ApplyWithNote {
                        mission_id: stored.id,
                        event,
                        note,
                    },
                    None => Resolution::Apply {
                        mission_id: stored.id,
                        event,
                    },
                })
            }
            MissionInput::Review {
                pr,
                head_branch,
                state,
                sender,
                commit_id,
                head_sha,
            } => {
                let Some(stored) = self.mission_of_branch(&mut conn, repo, head_branch).await?
                else {
                    return Ok(Resolution::Ignore);
                };
                if let (Some(judged), Some(head)) = (commit_id, head_sha)
                    && judged != head
                    && !sender.is_bot
                    && stored.mission.plan_pr == Some(*pr)
                {
                    return Ok(Resolution::Reply {
                        issue: *pr,
                        effects: vec![machine::Effect::Comment {
                            target: machine::Target::Issue,
                            body: format!(
                                "@{} your review judged {}, an older revision of the plan; the head is now {}. \
                                 Please review the current plan.",
                                sender.login,
                                &judged[..judged.len().min(7)],
                                &head[..head.len().min(7)]
                            ),
                        }],
                    });
                }
                let client = self.client(installation_id).await?;
                let actor = actor(&client, repo, sender).await?;
                let state = if state == "approved" {
                    machine::ReviewState::Approved
                } else {
                    machine::ReviewState::ChangesRequested
                };
                Ok(Resolution::Apply {
                    mission_id: stored.id,
                    event: Event::Review {
                        pr: *pr,
                        actor,
                        state,
                    },
                })
            }
            MissionInput::Merged {
                pr,
                head_branch,
                head_sha,
                sender,
            } => {
                let Some(stored) = self.mission_of_branch(&mut conn, repo, head_branch).await?
                else {
                    return Ok(Resolution::Ignore);
                };
                let client = self.client(installation_id).await?;
                let actor = actor(&client, repo, sender).await?;
                Ok(Resolution::Apply {
                    mission_id: stored.id,
                    event: Event::PrMerged {
                        pr: *pr,
                        actor,
                        head_sha: head_sha.clone(),
                    },
                })
            }
            MissionInput::Synchronized {
                pr,
                head_branch,
                head_sha,
            } => {
                let Some(stored) = self.mission_of_branch(&mut conn, repo, head_branch).await?
                else {
                    return Ok(Resolution::Ignore);
                };
                Ok(Resolution::Apply {
                    mission_id: stored.id,
                    event: Event::HeadMoved {
                        pr: *pr,
                        sha: head_sha.clone(),
                    },
                })
            }
            MissionInput::MergeGroup {
                pr,
                pr_head_sha,
                group_sha,
            } => {
                // The group names only its pull request: its branch names the mission.
                let client = self.client(installation_id).await?;
                let pull = client
                    .request_json(Method::GET, &format!("/repos/{repo}/pulls/{pr}"), None)
                    .await?;
                let head_branch = pull["head"]["ref"].as_str().unwrap_or_default();
                let Some(stored) = self.mission_of_branch(&mut conn, repo, head_branch).await?
                else {
                    return Ok(Resolution::Ignore);
                };
                Ok(Resolution::Apply {
                    mission_id: stored.id,
                    event: Event::MergeGroupRequested {
                        pr: *pr,
                        pr_head_sha: pr_head_sha.clone(),
                        group_sha: group_sha.clone(),
                    },
                })
            }
            MissionInput::ExternalCheck {
                head_branch,
                head_sha,
                check,
                app_id,
            } => {
                if *app_id == Some(self.dispatcher.app_id) {
                    return Ok(Resolution::Ignore);
                }
                let Some(stored) = self.mission_of_branch(&mut conn, repo, head_branch).await?
                else {
                    return Ok(Resolution::Ignore);
                };
                // Only what the current round waits for: the check runs of
                // the mission's own jobs on its branches are news to no one.
                let validation = &stored.mission.validation;
                if stored.mission.phase != machine::Phase::Validating
                    || validation.sha.as_deref() != Some(head_sha.as_str())
                    || !validation.required.iter().any(|r| r.name == check.name)
                {
                    return Ok(Resolution::Ignore);
                }
                Ok(Resolution::Apply {
                    mission_id: stored.id,
                    event: Event::ExternalChecks {
                        sha: head_sha.clone(),
                        checks: vec![check.clone()],
                    },
                })
            }
            MissionInput::Rerun {
                head_branch,
                head_sha,
                check_name,
                sender,
            } => {
                let Some(stored) = self.mission_of_branch(&mut conn, repo, head_branch).await?
                else {
                    return Ok(Resolution::Ignore);
                };
                // Only the validators' check runs are the mission's to run again.
                let validators: Vec<Validator> = Validator::ALL
                    .into_iter()
                    .filter(|v| check_name.as_deref().is_none_or(|n| n == v.check_name()))
                    .collect();
                if validators.is_empty() {
                    return Ok(Resolution::Ignore);
                }
                let client = self.client(installation_id).await?;
                let actor = actor(&client, repo, sender).await?;
                Ok(Resolution::Apply {
                    mission_id: stored.id,
                    event: Event::RerunRequested {
                        sha: head_sha.clone(),
                        validators,
                        actor,
                    },
                })
            }
            MissionInput::Run {
                run_id,
                head_branch,
                status,
                conclusion,
                created_at,
                workflow_path,
                display_title,
                html_url,
            } => {
                let Some(stored) = self.mission_of_branch(&mut conn, repo, head_branch).await?
                else {
                    return Ok(Resolution::Ignore);
                };
                let Some(job) = stored.mission.job.clone() else {
                    return Ok(Resolution::Ignore);
                };
                let created = created_at
                    .as_deref()
                    .and_then(|t| {
                        OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .map(|t| t.unix_timestamp());
                let ours = job.branch == *head_branch
                    && workflow_path.as_deref().is_none_or(|p| {
                        p.rsplit('/').next() == Some(self.dispatcher.workflow_file.as_str())
                    })
                    && !stored.mission.consumed_runs.contains(run_id)
                    && match (
                        job.run_id,
                        display_title.as_deref().and_then(input::job_key_in_title),
                    ) {
                        (Some(known), _) => known == *run_id,
                        // The run names its job (the workflow's `run-name`): exact.
                        (None, Some(key)) => key == job.key,
                        // An older workflow without it: a run created since the
                        // dispatch (seconds on both sides: the same second counts).
                        (None, None) => created.is_none_or(|c| c >= job.dispatched_at - 1),
                    };
                if !ours {
                    return Ok(Resolution::Ignore);
                }
                let event = match status {
                    RunStatus::Requested | RunStatus::InProgress => Event::JobStarted {
                        url: html_url.clone(),
                        key: job.key.clone(),
                        run_id: *run_id,
                    },
                    RunStatus::Completed => {
                        let client = self.client(installation_id).await?;
                        self.job_finished(
                            &client,
                            &stored.mission,
                            Some(*run_id),
                            conclusion.as_deref(),
                        )
                        .await?
                    }
                };
                Ok(Resolution::Apply {
                    mission_id: stored.id,
                    event,
                })
            }
        }
    }

    async fn mission_of_branch(
        &self,
        conn: &mut sqlx::AnyConnection,
        repo: &str,
        branch: &str,
    ) -> anyhow::Result<Option<db::StoredMission>> {
        match machine::issue_of_branch(branch) {
            Some(issue) => db::find(conn, repo, issue).await,
            None => Ok(None),
        }
    }

    /// The completion of the mission's current job, with its committed output.
    async fn job_finished(
        &self,
        client: &InstallationClient,
        mission: &Mission,
        run_id: Option<u64>,
        conclusion: Option<&str>,
    ) -> anyhow::Result<Event> {
        let job = mission.job.as_ref().context("no job")?;
        let conclusion = match conclusion {
            Some("success") => RunConclusion::Success,
            Some("cancelled") => RunConclusion::Cancelled,
            Some("timed_out") => RunConclusion::TimedOut,
            _ => RunConclusion::Failure,
        };
        // Also after a failed run: an agent that stopped early fails its run
        // and still leaves its result (its reason and what it spent).
        let output = match conclusion {
            RunConclusion::Cancelled => None,
            _ => read_output(client, mission, job).await?,
        };
        // No output: what its usage ledger says it spent before it ended.
        let ledger = match output {
            Some(_) => None,
            None => read_ledger(client, mission, job).await?,
        };
        Ok(Event::JobFinished {
            ledger,
            key: job.key.clone(),
            run_id,
            conclusion,
            output,
        })
    }

    async fn perform_effects(&self) -> anyhow::Result<usize> {
        let now = now_ms(&self.clock);
        let due = db::due_effects(self.store.pool(), now).await?;
        let count = due.len();
        for pending in due {
            if !self.drives() {
                break;
            }
            let mission = match pending.scope.mission_id {
                Some(id) => {
                    let mut conn = self.store.pool().acquire().await?;
                    Some(db::get(&mut conn, id).await?.mission)
                }
                None => None,
            };
            // Recorded before any call: a crash from here on is known on restart.
            let mut tx = self.begin_write().await?;
            db::start_effect(&mut tx, pending.id, now).await?;
            tx.commit().await?;
            if pending.interrupted {
                tracing::warn!(
                    effect = pending.id,
                    "an effect was interrupted by a restart; checking what GitHub already has"
                );
            }
            let attempt = effects::Attempt {
                effect_id: pending.id,
                tried_before: pending.attempts > 0 || pending.interrupted,
                interrupted: pending.interrupted,
            };
            let result = match self.client(pending.scope.installation_id as u64).await {
                Ok(client) => {
                    effects::perform(
                        &client,
                        &self.dispatcher,
                        &pending.scope,
                        mission.as_ref(),
                        &pending.effect,
                        attempt,
                        self.now(),
                    )
                    .await
                }
                Err(e) => Err(EffectError::Transient(format!("{e:#}"))),
            };
            let mut tx = self.begin_write().await?;
            match result {
                Ok(event) => {
                    db::finish_effect(&mut tx, pending.id, true, None, now).await?;
                    if let (Some(event), Some(id)) = (event, pending.scope.mission_id) {
                        self.apply_event(&mut tx, id, event).await?;
                    }
                }
                // A spent rate limit is not a failed try: the effect waits for
                // the reset however often it comes (never sooner than asked).
                Err(error @ EffectError::RateLimited { retry_after, .. }) => {
                    let wait = (retry_after.as_millis() as i64).max(1000);
                    let e = error.to_string();
                    tracing::warn!(error = %e, effect = pending.id, wait_ms = wait, "effect waits for the rate limit's reset");
                    db::retry_effect_later(&mut tx, pending.id, &e, now + wait).await?;
                }
                Err(error @ EffectError::Transient(_)) if pending.attempts + 1 < MAX_TRIES => {
                    let wait = backoff_ms(pending.attempts);
                    let e = error.to_string();
                    tracing::warn!(error = %e, effect = pending.id, wait_ms = wait, "effect will be retried");
                    db::retry_effect_later(&mut tx, pending.id, &e, now + wait).await?;
                }
                Err(error) => {
                    let e = error.to_string();
                    tracing::error!(error = %e, effect = pending.id, "effect failed");
                    db::finish_effect(&mut tx, pending.id, false, Some(&e), now).await?;
                    if let Some(id) = pending.scope.mission_id {
                        let event = match &pending.effect {
                            machine::Effect::Dispatch { job } => Event::DispatchFailed {
                                key: job.key.clone(),
                                error: e,
                            },
                            machine::Effect::CreateBranch { name, from } => {
                                Event::BranchNotCreated {
                                    name: name.clone(),
                                    from: from.clone(),
                                    error: e,
                                }
                            }
                            machine::Effect::StartValidation { index, round, .. } => {
                                Event::ValidationStartFailed {
                                    index: *index,
                                    round: *round,
                                    error: e,
                                }
                            }
                            other => Event::EffectFailed {
                                what: effect_name(other),
                                error: e,
                            },
                        };
                        self.apply_event(&mut tx, id, event).await?;
                    }
                }
            }
            tx.commit().await?;
        }
        Ok(count)
    }

    /// Compares each running job with GitHub: a completed run whose webhook never
    /// came, a committed result, or a job gone silent past the timeout. Returns
    /// how many jobs it settled.
    pub async fn reconcile(&self) -> anyhow::Result<usize> {
        let mut settled = 0;
        for stored in db::all(self.store.pool()).await? {
            if !self.drives() {
                break;
            }
            // One mission GitHub cannot tell us about (a deleted run, an uninstalled
            // App) must not stop the others from being reconciled.
            let found = match self.settle(&stored).await {
                Ok(Some(event)) => Some((event, "a job whose completion webhook did not arrive")),
                Ok(None) => match self.people(&stored).await {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            repo = stored.mission.repo,
                            issue = stored.mission.issue,
                            "cannot check this mission's issue and pull requests now; will try again"
                        );
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        repo = stored.mission.repo,
                        issue = stored.mission.issue,
                        "cannot reconcile this mission's job now; will try again"
                    );
                    None
                }
            };
            let Some((event, what)) = found else {
                continue;
            };
            tracing::info!(
                repo = stored.mission.repo,
                issue = stored.mission.issue,
                "reconciliation found {what}"
            );
            let mut tx = self.begin_write().await?;
            self.apply_event(&mut tx, stored.id, event).await?;
            tx.commit().await?;
            settled += 1;
        }
        Ok(settled)
    }

    /// What people did that the mission waits for and whose webhook never came
    /// (GitHub lost it, or the App was down): an answer to the orchestrator's
    /// questions, a review of the plan, the merge of the milestone PR. The state
    /// machine ignores what it has already seen, so a late webhook changes nothing.
    async fn people(
        &self,
        stored: &db::StoredMission,
    ) -> anyhow::Result<Option<(Event, &'static str)>> {
        let mission = &stored.mission;
        let repo = &mission.repo;
        let now = self.now();
        // Webhooks get their chance first: a person's action older than this counts.
        let settled = |at: Option<i64>| {
            at.is_some_and(|t| now - t >= self.config.reconcile_every.as_secs() as i64)
        };
        match mission.phase {
            machine::Phase::AwaitingAnswers => {
                let Some(asked) = mission.asked_at else {
                    return Ok(None);
                };
                let client = self.client(stored.installation_id as u64).await?;
                let since = OffsetDateTime::from_unix_timestamp(asked)?
                    .format(&time::format_description::well_known::Rfc3339)?;
                for page in 1.. {
                    let comments = client
                        .request_json(
                            Method::GET,
                            &format!(
                                "/repos/{repo}/issues/{}/comments?since={}&per_page=100&page={page}",
                                mission.issue,
                                effects::query_value(&since)
                            ),
                            None,
                        )
                        .await?;
                    let list = comments.as_array().map(Vec::as_slice).unwrap_or_default();
                    for comment in list {
                        let sender = Sender {
                            login: comment["user"]["login"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                            is_bot: comment["user"]["type"] == "Bot",
                        };
                        let created = rfc3339(&comment["created_at"]);
                        if sender.is_bot || created.is_none_or(|c| c < asked) || !settled(created) {
                            continue;
                        }
                        let is_author = sender.login == mission.author;
                        let actor = actor(&client, repo, &sender).await?;
                        if is_author || actor.can_write {
                            return Ok(Some((
                                Event::Comment { actor, is_author },
                                "an answer to the orchestrator's questions",
                            )));
                        }
                    }
                    if list.len() < 100 {
                        break;
                    }
                }
                Ok(None)
            }
            machine::Phase::PlanReview | machine::Phase::RevisionReview => {
                let Some(pr) = mission.plan_pr else {
                    return Ok(None);
                };
                let client = self.client(stored.installation_id as u64).await?;
                let pull = client
                    .request_json(Method::GET, &format!("/repos/{repo}/pulls/{pr}"), None)
                    .await?;
                let Some(head) = pull["head"]["sha"].as_str() else {
                    return Ok(None);
                };
                let reviews = client
                    .request_json(
                        Method::GET,
                        &format!("/repos/{repo}/pulls/{pr}/reviews?per_page=100"),
                        None,
                    )
                    .await?;
                // The newest decision on the current plan, by someone who may decide.
                for review in reviews
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .rev()
                {
                    let state = match review["state"].as_str() {
                        Some("APPROVED") => machine::ReviewState::Approved,
                        Some("CHANGES_REQUESTED") => machine::ReviewState::ChangesRequested,
                        _ => continue,
                    };
                    if review["commit_id"].as_str() != Some(head)
                        || review["user"]["type"] == "Bot"
                        || !settled(rfc3339(&review["submitted_at"]))
                    {
                        continue;
                    }
                    let sender = Sender {
                        login: review["user"]["login"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        is_bot: false,
                    };
                    let actor = actor(&client, repo, &sender).await?;
                    if actor.can_write {
                        return Ok(Some((
                            Event::Review { pr, actor, state },
                            "a review of the plan",
                        )));
                    }
                }
                Ok(None)
            }
            machine::Phase::Building
            | machine::Phase::Validating
            | machine::Phase::AwaitingMerge => {
                let Some(&pr) = mission.milestone_prs.get(&mission.milestone) else {
                    return Ok(None);
                };
                if mission.merged_unvalidated {
                    return Ok(None);
                }
                let client = self.client(stored.installation_id as u64).await?;
                let pull = client
                    .request_json(Method::GET, &format!("/repos/{repo}/pulls/{pr}"), None)
                    .await?;
                if pull["merged"] != true || !settled(rfc3339(&pull["merged_at"])) {
                    // Not merged. A round waiting for the repository's CI
                    // asks again: its webhooks may be lost, and a commit
                    // status sends none the App reads.
                    let waiting = mission.phase == machine::Phase::Validating
                        && mission.validation.ci_waiting_since.is_some()
                        && mission.paused.is_none()
                        && mission.job.is_none()
                        && !mission.validation.ci_pending().is_empty();
                    if let (true, Some(sha)) = (waiting, mission.validation.sha.clone()) {
                        let checks =
                            effects::external_checks(&client, self.dispatcher.app_id, repo, &sha)
                                .await?;
                        return Ok(Some((
                            Event::ExternalChecks { sha, checks },
                            "the repository's checks on the ready commit",
                        )));
                    }
                    return Ok(None);
                }
                let sender = Sender {
                    login: pull["merged_by"]["login"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    is_bot: pull["merged_by"]["type"] == "Bot",
                };
                let actor = actor(&client, repo, &sender).await?;
                Ok(Some((
                    Event::PrMerged {
                        pr,
                        actor,
                        head_sha: pull["head"]["sha"].as_str().unwrap_or_default().to_owned(),
                    },
                    "the merge of the milestone pull request",
                )))
            }
            _ => Ok(None),
        }
    }

    /// The completion of the mission's running job, if GitHub shows one.
    async fn settle(&self, stored: &db::StoredMission) -> anyhow::Result<Option<Event>> {
        let now = self.now();
        let Some(job) = stored.mission.job.clone() else {
            return Ok(None);
        };
        // Give webhooks their chance first.
        if stored.mission.is_terminal()
            || now - job.dispatched_at < self.config.reconcile_every.as_secs() as i64
        {
            return Ok(None);
        }
        let timed_out = now - job.dispatched_at > self.config.job_timeout.as_secs() as i64;
        let lost = || Event::JobFinished {
            ledger: None,
            key: job.key.clone(),
            run_id: job.run_id,
            conclusion: RunConclusion::Lost,
            output: None,
        };
        let client = self.client(stored.installation_id as u64).await?;
        if let Some(run_id) = job.run_id {
            let run = client
                .request_json(
                    Method::GET,
                    &format!("/repos/{}/actions/runs/{run_id}", stored.mission.repo),
                    None,
                )
                .await?;
            if run["status"].as_str() == Some("completed") {
                let event = self
                    .job_finished(
                        &client,
                        &stored.mission,
                        Some(run_id),
                        run["conclusion"].as_str(),
                    )
                    .await?;
                return Ok(Some(event));
            }
            // A run that never ends (no runner picks it up) is as good as lost.
            return Ok(timed_out.then(lost));
        }
        if let Some(output) = read_output(&client, &stored.mission, &job).await? {
            return Ok(Some(Event::JobFinished {
                ledger: None,
                key: job.key.clone(),
                run_id: None,
                conclusion: RunConclusion::Success,
                output: Some(output),
            }));
        }
        Ok(timed_out.then(lost))
    }
}

/// Unix seconds of a GitHub timestamp.
fn rfc3339(value: &serde_json::Value) -> Option<i64> {
    let text = value.as_str()?;
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

fn effect_name(effect: &machine::Effect) -> String {
    use machine::Effect::*;
    match effect {
        Comment { .. } => "post a comment",
        CreateBranch { .. } => "create a branch",
        Dispatch { .. } => "dispatch the mission workflow",
        OpenPlanPr { .. } => "open the plan pull request",
        ClosePr { .. } => "close a pull request",
        EnsureMilestonePr { .. } => "open the milestone pull request",
        StartValidation { .. } => "make the ready commit and its check runs",
        OpenCheck { .. } => "open a check run",
        CompleteCheck { .. } => "complete a check run",
        ReportGroupChecks { .. } => "report the check runs on a merge queue's group",
        PollChecks { .. } => "read the repository's checks on the ready commit",
        WriteCiReport { .. } => "write the repository's CI report",
        CloseIssue => "close the issue",
        UpdateSticky => "update the mission control comment",
    }
    .to_owned()
}

/// The usage ledger the publish job pushed for a job that left no result.
async fn read_ledger(
    client: &InstallationClient,
    mission: &Mission,
    job: &machine::Job,
) -> anyhow::Result<Option<JobUsage>> {
    let path = ledger_path(mission.issue, &job.key);
    let branch = machine::reports_branch(mission.issue);
    let Some(text) = read_file(client, &mission.repo, &path, &branch).await? else {
        return Ok(None);
    };
    match serde_json::from_str::<UsageLedger>(&text) {
        Ok(ledger) if ledger.job == job.key => Ok(Some(ledger.usage)),
        Ok(_) | Err(_) => {
            tracing::warn!(
                job = job.key,
                path,
                "the usage ledger is not this job's; ignored"
            );
            Ok(None)
        }
    }
}

/// The job's committed output, if it is on its output branch.
async fn read_output(
    client: &InstallationClient,
    mission: &Mission,
    job: &machine::Job,
) -> anyhow::Result<Option<JobOutput>> {
    let path = format!(".missions/{}/jobs/{}.json", mission.issue, job.key);
    let Some(text) = read_file(client, &mission.repo, &path, &job.output_branch).await? else {
        return Ok(None);
    };
    match serde_json::from_str::<JobOutput>(&text) {
        Ok(out) => Ok(Some(out)),
        Err(e) => {
            tracing::warn!(error = %e, path, "a job's output is unreadable; counting the job as failed");
            Ok(None)
        }
    }
}

/// The sender as an [`Actor`], with their permission looked up.
async fn actor(
    client: &InstallationClient,
    repo: &str,
    sender: &Sender,
) -> Result<Actor, GitHubError> {
    if sender.is_bot {
        return Ok(Actor {
            login: sender.login.clone(),
            can_write: false,
            is_bot: true,
        });
    }
    let answer = client
        .request_json(
            Method::GET,
            &format!("/repos/{repo}/collaborators/{}/permission", sender.login),
            None,
        )
        .await;
    let can_write = match answer {
        Ok(v) => crate::github::grants_write(&v),
        Err(e) if e.status() == Some(404) => false,
        Err(e) => return Err(e),
    };
    Ok(Actor {
        login: sender.login.clone(),
        can_write,
        is_bot: false,
    })
}

/// The repository's settings from its default branch: `Ok(Err(message))` when
/// the file is there but invalid (the user must hear of it), defaults when absent.
async fn load_repo_config(
    client: &InstallationClient,
    repo: &str,
    default_branch: &str,
) -> Result<Result<RepoConfig, String>, GitHubError> {
    let text = read_file(client, repo, REPO_CONFIG_PATH, default_branch).await?;
    Ok(match text {
        None => Ok(RepoConfig::default()),
        Some(text) => RepoConfig::parse(&text).map_err(|e| e.to_string()),
    })
}
