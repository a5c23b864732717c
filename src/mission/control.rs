//! Mission control: what a person needs at a glance, computed from the mission's
//! state alone (no I/O). [`MissionView`] is what `/api/missions/…` serves and the
//! web page shows; [`sticky`] renders the same figures as the issue's one comment
//! the App edits in place.

use std::collections::BTreeMap;

use serde::Serialize;

use super::machine::{Mission, Phase, dollars, phase_word};
use super::outputs::{JobUsage, Validator};
use super::plan::one_line;

/// Marks the mission control comment, so it can be found again.
pub const STICKY_MARKER: &str = "<!-- missions:sticky -->";

/// Where GitHub's pages for the repository are (`https://github.com/owner/repo`).
#[derive(Debug, Clone)]
pub struct Links {
    pub repo_web: String,
}

impl Links {
    /// The web address of a repository, given the REST API's base URL:
    /// `api.github.com` → `github.com`, GHE.com's `api.<sub>.ghe.com` →
    /// `<sub>.ghe.com`, GitHub Enterprise Server's `/api/v3` dropped, anything
    /// else (the simulator) serves both on one origin.
    pub fn from_api(api_base: &str, repo: &str) -> Links {
        let base = api_base.trim_end_matches('/');
        let data_residency = base
            .strip_prefix("https://api.")
            .filter(|host| host.ends_with(".ghe.com") && !host.contains('/'));
        let web = if base == "https://api.github.com" {
            "https://github.com".to_owned()
        } else if let Some(host) = data_residency {
            format!("https://{host}")
        } else if let Some(host) = base.strip_suffix("/api/v3") {
            host.to_owned()
        } else {
            base.to_owned()
        };
        Links {
            repo_web: format!("{web}/{repo}"),
        }
    }

    pub fn issue(&self, number: u64) -> String {
        format!("{}/issues/{number}", self.repo_web)
    }

    pub fn pull(&self, number: u64) -> String {
        format!("{}/pull/{number}", self.repo_web)
    }

    /// A file's page on a branch.
    pub fn blob(&self, branch: &str, path: &str) -> String {
        format!("{}/blob/{branch}/{path}", self.repo_web)
    }

    /// A file's raw content on a branch (an image's address).
    pub fn raw(&self, branch: &str, path: &str) -> String {
        format!("{}/raw/{branch}/{path}", self.repo_web)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MilestoneView {
    pub id: String,
    pub title: String,
    pub features: Vec<String>,
    pub pull_request: Option<u64>,
    /// done, current or waiting.
    pub state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidatorVerdict {
    pub validator: Validator,
    pub passed: bool,
    pub evidence: String,
    pub milestone: String,
    pub round: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssertionRow {
    pub id: String,
    pub text: String,
    /// The features that claim it.
    pub features: Vec<String>,
    /// passing (every validator that judged it passed it), failing, or unchecked.
    pub status: &'static str,
    pub verdicts: Vec<ValidatorVerdict>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub spent_micros: u64,
    pub limit_micros: Option<u64>,
    pub spent: String,
    pub limit: Option<String>,
    pub tokens: JobUsage,
    /// Role → what its jobs spent.
    pub by_role: BTreeMap<String, JobUsage>,
    /// The part of `spent` that is estimated (runs that left no record of
    /// what they spent), with two decimals; `None` when all was measured.
    pub estimated_micros: u64,
    pub estimated: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveJob {
    pub key: String,
    pub role: String,
    pub branch: String,
    pub run_url: Option<String>,
    pub dispatched_at: i64,
    pub elapsed_secs: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    pub key: String,
    pub role: Option<String>,
    pub started_at: i64,
    pub ended_at: i64,
    pub outcome: String,
    pub cost_micros: u64,
    pub tokens: u64,
    pub run_url: Option<String>,
    /// `cost_micros` is the role's estimate: the run left no record.
    pub estimated: bool,
}

/// Cumulative cost after each job, by role: the chart's points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsagePoint {
    pub at: i64,
    pub role: Option<String>,
    pub cost_micros: u64,
    pub tokens: u64,
    pub total_cost_micros: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissionView {
    pub repo: String,
    pub issue: u64,
    pub issue_url: String,
    pub title: Option<String>,
    pub phase: &'static str,
    pub paused: Option<String>,
    pub milestone: Progress,
    pub milestones: Vec<MilestoneView>,
    pub features: Progress,
    pub assertions: Progress,
    pub contract: Vec<AssertionRow>,
    pub budget: Budget,
    pub active_job: Option<ActiveJob>,
    pub last_handoff: Option<super::machine::HandoffNote>,
    pub plan_pr: Option<u64>,
    pub timeline: Vec<TimelineEntry>,
    pub usage: Vec<UsagePoint>,
    /// What a maintainer should know about the mission's set-up (validators
    /// of the workers' model family).
    pub warnings: Vec<String>,
    /// The repository's required checks (its CI) on the round's ready commit.
    pub ci: Vec<CiCheckView>,
}

/// One of the repository's required checks on the ready commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CiCheckView {
    pub name: String,
    /// `success`, `failure`, …; `pending` while it runs or has not started.
    pub state: String,
    pub url: Option<String>,
}

impl MissionView {
    pub fn of(m: &Mission, now: i64, links: &Links) -> MissionView {
        let (done_features, total_features) = m.feature_progress();
        let plan = m.plan.as_ref();
        let coverage = plan.map(|p| p.coverage()).unwrap_or_default();
        let contract: Vec<AssertionRow> = plan
            .map(|p| {
                p.assertions
                    .iter()
                    .map(|a| {
                        let verdicts: Vec<ValidatorVerdict> = m
                            .verdicts
                            .get(&a.id)
                            .map(|by| {
                                by.iter()
                                    .map(|(v, r)| ValidatorVerdict {
                                        validator: *v,
                                        passed: r.passed,
                                        evidence: r.evidence.clone(),
                                        milestone: r.milestone.clone(),
                                        round: r.round,
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        let status = if verdicts.is_empty() {
                            "unchecked"
                        } else if verdicts.iter().all(|v| v.passed) {
                            "passing"
                        } else {
                            "failing"
                        };
                        AssertionRow {
                            id: a.id.clone(),
                            text: a.text.clone(),
                            features: coverage.get(&a.id).cloned().unwrap_or_default(),
                            status,
                            verdicts,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let passing = contract.iter().filter(|r| r.status == "passing").count();
        let count = plan.map_or(0, |p| p.milestones.len());
        let merged = if m.phase == Phase::Done {
            count
        } else {
            m.milestone
        };
        let milestones = plan
            .map(|p| {
                p.milestones
                    .iter()
                    .enumerate()
                    .map(|(i, ms)| MilestoneView {
                        id: ms.id.clone(),
                        title: ms.title.clone(),
                        features: ms.features.iter().map(|f| f.id.clone()).collect(),
                        pull_request: m.milestone_prs.get(&i).copied(),
                        state: if i < merged {
                            "done"
                        } else if i == m.milestone && m.phase != Phase::Done {
                            "current"
                        } else {
                            "waiting"
                        },
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut by_role: BTreeMap<String, JobUsage> = BTreeMap::new();
        let mut usage = Vec::new();
        let mut total = 0u64;
        let mut timeline = Vec::new();
        for h in &m.history {
            let role = h.role.map(|r| r.as_str().to_owned());
            if let Some(r) = &role {
                by_role.entry(r.clone()).or_default().add(&h.usage);
            }
            total = total.saturating_add(h.usage.cost_micros);
            let tokens = h.usage.input_tokens
                + h.usage.output_tokens
                + h.usage.cache_read_tokens
                + h.usage.cache_write_tokens;
            usage.push(UsagePoint {
                at: h.at,
                role: role.clone(),
                cost_micros: h.usage.cost_micros,
                tokens,
                total_cost_micros: total,
            });
            timeline.push(TimelineEntry {
                key: h.key.clone(),
                role,
                started_at: h.started_at,
                ended_at: h.at,
                outcome: h.outcome.clone(),
                cost_micros: h.usage.cost_micros,
                tokens,
                run_url: h.run_url.clone(),
                estimated: h.estimated,
            });
        }
        MissionView {
            repo: m.repo.clone(),
            issue: m.issue,
            issue_url: links.issue(m.issue),
            title: plan.map(|p| p.title.clone()),
            phase: phase_word(m.phase),
            paused: m.paused.clone(),
            milestone: Progress {
                done: merged,
                total: count,
            },
            milestones,
            features: Progress {
                done: done_features,
                total: total_features,
            },
            assertions: Progress {
                done: passing,
                total: contract.len(),
            },
            contract,
            budget: Budget {
                spent_micros: m.usage.cost_micros,
                limit_micros: m.settings.budget_micros,
                spent: dollars(m.usage.cost_micros),
                limit: m.settings.budget_micros.map(dollars),
                tokens: m.usage,
                by_role,
                estimated_micros: m.estimated_micros,
                estimated: (m.estimated_micros > 0).then(|| dollars(m.estimated_micros)),
            },
            active_job: m.job.as_ref().map(|j| ActiveJob {
                key: j.key.clone(),
                role: j.role().as_str().to_owned(),
                branch: j.branch.clone(),
                run_url: j.run_url.clone(),
                dispatched_at: j.dispatched_at,
                elapsed_secs: (now - j.dispatched_at).max(0),
            }),
            last_handoff: m.last_handoff.clone(),
            plan_pr: m.plan_pr,
            timeline,
            usage,
            warnings: m.settings.independence.warnings(),
            ci: if matches!(m.phase, Phase::Validating | Phase::AwaitingMerge) {
                m.validation
                    .ci_states()
                    .into_iter()
                    .map(|c| CiCheckView {
                        state: c.conclusion.clone().unwrap_or_else(|| "pending".into()),
                        name: c.name,
                        url: c.url,
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }
}

fn bar(done: usize, total: usize) -> String {
    const WIDTH: usize = 10;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(0).min(WIDTH);
    format!("{}{}", "█".repeat(filled), "░".repeat(WIDTH - filled))
}

/// The mission control comment: one per mission, edited in place.
pub fn sticky(m: &Mission, now: i64, links: &Links) -> String {
    let v = MissionView::of(m, now, links);
    let mut out = format!("{STICKY_MARKER}\n### Mission control\n\n");
    let state = match &v.paused {
        Some(reason) => format!("⏸️ paused: {}", one_line(reason)),
        None => v.phase.to_owned(),
    };
    out.push_str(&format!("**State**: {state}\n\n| | |\n|---|---|\n"));
    out.push_str(&format!(
        "| milestones | {} {} of {} merged |\n",
        bar(v.milestone.done, v.milestone.total),
        v.milestone.done,
        v.milestone.total
    ));
    out.push_str(&format!(
        "| features | {} of {} done |\n",
        v.features.done, v.features.total
    ));
    out.push_str(&format!(
        "| assertions | {} of {} passing |\n",
        v.assertions.done, v.assertions.total
    ));
    let t = &v.budget.tokens;
    out.push_str(&format!(
        "| budget | ${}{}{} · tokens {} in, {} out, {} cache read |\n",
        v.budget.spent,
        v.budget
            .limit
            .as_ref()
            .map(|l| format!(" of ${l}"))
            .unwrap_or_default(),
        v.budget
            .estimated
            .as_ref()
            .map(|e| format!(" (${e} of it estimated)"))
            .unwrap_or_default(),
        t.input_tokens,
        t.output_tokens,
        t.cache_read_tokens
    ));
    let job = match &v.active_job {
        Some(j) => {
            let key = match &j.run_url {
                Some(url) => format!("[`{}`]({url})", j.key),
                None => format!("`{}`", j.key),
            };
            format!("{key} ({}) on `{}`", j.role, j.branch)
        }
        None => "none".to_owned(),
    };
    out.push_str(&format!("| active job | {job} |\n"));
    if !v.ci.is_empty() {
        let checks: Vec<String> =
            v.ci.iter()
                .map(|c| {
                    let mark = match c.state.as_str() {
                        "success" | "neutral" | "skipped" => "✅",
                        "pending" => "⏳",
                        _ => "❌",
                    };
                    format!(
                        "{mark} {}",
                        super::machine::check_markdown(&c.name, c.url.as_deref())
                    )
                })
                .collect();
        out.push_str(&format!("| repository checks | {} |\n", checks.join(" · ")));
    }
    if let Some(h) = &v.last_handoff {
        out.push_str(&format!(
            "| last handoff | {}: {}{} |\n",
            one_line(&h.feature),
            one_line(&h.summary),
            if h.needs_triage {
                " (triage needed)"
            } else {
                ""
            }
        ));
    }
    let mut prs = Vec::new();
    if let Some(n) = v.plan_pr {
        prs.push(format!("plan [#{n}]({})", links.pull(n)));
    }
    for ms in &v.milestones {
        if let Some(n) = ms.pull_request {
            prs.push(format!("{} [#{n}]({})", ms.id, links.pull(n)));
        }
    }
    if !prs.is_empty() {
        out.push_str(&format!("| pull requests | {} |\n", prs.join(" · ")));
    }
    for warning in &v.warnings {
        out.push_str(&format!("\n{warning}\n"));
    }
    out.push_str("\nEdited in place as the mission moves; commands: `/mission status · pause · resume · abort · retry · replan`.\n");
    out
}

/// The figures of a sticky comment, read back: what tests compare with the API.
pub fn sticky_figures(body: &str) -> BTreeMap<String, String> {
    body.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            (cells.len() == 2 && !cells[0].is_empty() && cells[0] != "---")
                .then(|| (cells[0].to_owned(), cells[1].to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod link_tests {
    use super::Links;

    #[test]
    fn web_links_follow_each_kind_of_github() {
        let web = |api: &str| Links::from_api(api, "o/r").repo_web;
        assert_eq!(web("https://api.github.com"), "https://github.com/o/r");
        assert_eq!(
            web("https://api.octocorp.ghe.com/"),
            "https://octocorp.ghe.com/o/r"
        );
        assert_eq!(
            web("https://ghe.example.com/api/v3"),
            "https://ghe.example.com/o/r"
        );
        assert_eq!(web("http://127.0.0.1:8080"), "http://127.0.0.1:8080/o/r");
    }
}
