//! What jobs hand back: the orchestrator's questions, plan or amendment, the
//! worker's handoff, a validator's report. Each is the `finish` value of the
//! role's agent (schemas in `prompts/schemas/`), wrapped by the job harness in a
//! [`JobOutput`] committed at `.missions/<issue>/jobs/<job>.json`.

use serde::{Deserialize, Serialize};

use super::plan::{Assertion, Feature, Milestone, Plan, Revision, Skill, one_line};

/// A command a job ran, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRun {
    pub command: String,
    /// `None` when it was killed (timeout) before exiting.
    pub exit_code: Option<i32>,
}

impl CommandRun {
    pub fn passed(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// Something a worker found that it did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveredIssue {
    pub description: String,
    #[serde(default)]
    pub resolved: bool,
}

/// The worker's structured handoff for one feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handoff {
    pub feature: String,
    pub summary: String,
    /// What was completed.
    pub completed: Vec<String>,
    /// What was left undone.
    #[serde(default)]
    pub undone: Vec<String>,
    /// Commands run, with exit codes. The harness fills this from its own log,
    /// not from what the model says it ran.
    #[serde(default)]
    pub commands: Vec<CommandRun>,
    #[serde(default)]
    pub issues: Vec<DiscoveredIssue>,
    /// Whether the worker followed the procedures (skills, AGENTS.md) it was given.
    pub followed_procedures: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub procedures_note: Option<String>,
    /// How many times the harness compacted the worker's conversation to fit
    /// its model's context window (filled by the harness): earlier turns were
    /// cut down, so the worker may have lost detail it read early on.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compactions: u32,
    /// The feature's checks run with and without it (filled by the harness,
    /// whatever the model says).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<NegativeControl>,
}

/// One assertion's `check` run on the commit with the feature and on the one
/// without it (the job's start): a check that does not fail without the
/// feature and pass with it does not show the feature works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NegativeControl {
    pub assertion: String,
    pub command: String,
    /// `None`: killed (time limit or signal).
    pub with_feature: Option<i32>,
    pub without_feature: Option<i32>,
}

impl NegativeControl {
    pub fn holds(&self) -> bool {
        self.with_feature == Some(0) && self.without_feature != Some(0)
    }

    /// What is wrong, for the handoff's unresolved issues; `None` when it holds.
    pub fn problem(&self, feature: &str) -> Option<String> {
        let passes_without = self.without_feature == Some(0);
        let fails_with = self.with_feature != Some(0);
        let what = match (passes_without, fails_with) {
            (false, false) => return None,
            (true, true) => format!(
                "fails with {feature} ({}) and passes without it: it tests something else",
                exit_text(self.with_feature)
            ),
            (true, false) => format!(
                "passes without {feature} too: it does not show that {feature} made {} true",
                self.assertion
            ),
            (false, true) => format!(
                "still fails with {feature} ({}): {feature} does not make {} true yet",
                exit_text(self.with_feature),
                self.assertion
            ),
        };
        Some(format!(
            "Negative control of {}: its check `{}` {what}",
            self.assertion,
            self.command
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        ))
    }
}

fn exit_text(code: Option<i32>) -> String {
    code.map_or_else(|| "killed".to_owned(), |c| format!("exit {c}"))
}

fn pass_or_fail(code: Option<i32>) -> String {
    match code {
        Some(0) => "passes".to_owned(),
        other => format!("fails ({})", exit_text(other)),
    }
}

/// The plan's checks run on the commit the plan was written on, before the
/// plan PR opens: a check that already passes there tests nothing new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineLint {
    /// The commit the checks ran on (the plan branch's, whose code is the base's).
    pub commit: String,
    pub checks: Vec<AssertionCheck>,
    /// The assertions flagged at first, whose plan went back to the
    /// orchestrator once (empty: it did not need to).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent_back: Vec<String>,
}

impl BaselineLint {
    /// The checks that passed on the base.
    pub fn flagged(&self) -> Vec<&AssertionCheck> {
        self.checks
            .iter()
            .filter(|c| c.exit_code == Some(0))
            .collect()
    }

    /// For the plan PR: what ran where, what is flagged, what went back.
    pub fn to_markdown(&self, base: &str) -> String {
        let short = &self.commit[..self.commit.len().min(12)];
        if self.checks.is_empty() {
            return format!(
                "**Baseline lint** (on `{short}`): no assertion carries a `check`, so every \
                 one is judged by the validators alone.\n"
            );
        }
        let flagged = self.flagged();
        let mut out = format!(
            "**Baseline lint**: {} of {} check(s) fail on `{short}` ({base}, before any \
             feature), as they must: a check that passes there tests nothing new.\n\n",
            self.checks.len() - flagged.len(),
            self.checks.len()
        );
        if !self.sent_back.is_empty() {
            out.push_str(&format!(
                "The first plan went back to the orchestrator once: {} passed on {base}.\n\n",
                self.sent_back.join(", ")
            ));
        }
        for f in &flagged {
            out.push_str(&format!(
                "> [!WARNING]\n> {} already passes on {base}: it tests nothing new (`{}`). \
                 Approve only if that is what you want, or request changes.\n\n",
                f.id,
                shown_command(&f.command)
            ));
        }
        out.push_str("| assertion | check | on the base |\n|---|---|---|\n");
        for c in &self.checks {
            out.push_str(&format!(
                "| {} | `{}` | {} |\n",
                c.id,
                shown_command(&c.command),
                match c.exit_code {
                    Some(0) => "passes ⚠".to_owned(),
                    other => format!("fails ({}) ✓", exit_text(other)),
                }
            ));
        }
        out
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Handoff {
    /// A handoff with undone work or unresolved issues blocks the next feature
    /// until the orchestrator has triaged it.
    pub fn needs_triage(&self) -> bool {
        !self.undone.is_empty() || self.issues.iter().any(|i| !i.resolved)
    }

    /// Markdown for the milestone PR: a readable summary, details folded.
    pub fn to_markdown(&self, title: &str) -> String {
        let mut out = format!(
            "### Handoff: {} {}\n\n{}\n\n",
            self.feature, title, self.summary
        );
        let list = |items: &[String]| {
            items
                .iter()
                .map(|i| format!("- {}\n", one_line(i)))
                .collect::<String>()
        };
        out.push_str("**Completed**\n\n");
        out.push_str(&list(&self.completed));
        if !self.undone.is_empty() {
            out.push_str("\n**Left undone**\n\n");
            out.push_str(&list(&self.undone));
        }
        let open: Vec<String> = self
            .issues
            .iter()
            .filter(|i| !i.resolved)
            .map(|i| i.description.clone())
            .collect();
        if !open.is_empty() {
            out.push_str("\n**Unresolved issues** (the orchestrator triages these before the next feature)\n\n");
            out.push_str(&list(&open));
        }
        if !self.controls.is_empty() {
            let held = self.controls.iter().filter(|c| c.holds()).count();
            out.push_str(&format!(
                "\n**Negative controls**: {held} of {} check(s) fail without {} and pass with it.\n\n\
                 | assertion | check | without {} | with {} |\n|---|---|---|---|\n",
                self.controls.len(),
                self.feature,
                self.feature,
                self.feature
            ));
            for c in &self.controls {
                out.push_str(&format!(
                    "| {}{} | `{}` | {} | {} |\n",
                    c.assertion,
                    if c.holds() { "" } else { " ⚠" },
                    shown_command(&c.command),
                    pass_or_fail(c.without_feature),
                    pass_or_fail(c.with_feature)
                ));
            }
        }
        if self.compactions > 0 {
            out.push_str(&format!(
                "\n*The worker's conversation was compacted {} time{} to fit its model's context window (older turns cut down): check details it read early on.*\n",
                self.compactions,
                if self.compactions == 1 { "" } else { "s" }
            ));
        }
        out.push_str("\n<details><summary>Details</summary>\n\n");
        out.push_str("| command | exit code |\n|---|---|\n");
        for c in &self.commands {
            let code = c
                .exit_code
                .map_or_else(|| "killed".to_owned(), |c| c.to_string());
            out.push_str(&format!("| `{}` | {} |\n", shown_command(&c.command), code));
        }
        let resolved: Vec<String> = self
            .issues
            .iter()
            .filter(|i| i.resolved)
            .map(|i| i.description.clone())
            .collect();
        if !resolved.is_empty() {
            out.push_str("\nIssues found and resolved:\n\n");
            out.push_str(&list(&resolved));
        }
        out.push_str(&format!(
            "\nFollowed the procedures: {}{}\n\n</details>\n",
            if self.followed_procedures {
                "yes"
            } else {
                "no"
            },
            self.procedures_note
                .as_deref()
                .map(|n| format!(" ({})", one_line(n)))
                .unwrap_or_default()
        ));
        out
    }
}

/// The most of one command a handoff's table shows: a heredoc carries the
/// whole file it writes. The job's output keeps every command whole.
const COMMAND_CHARS: usize = 300;

/// A command as one table cell: on one line, no backticks, cut when long.
fn shown_command(command: &str) -> String {
    let line = one_line(command).replace('`', "'");
    match line.char_indices().nth(COMMAND_CHARS) {
        Some((cut, _)) => format!(
            "{}… ({} characters in all)",
            &line[..cut],
            command.chars().count()
        ),
        None => line,
    }
}

/// Which validator wrote a report; also the check run's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Validator {
    Scrutiny,
    UserTesting,
}

impl Validator {
    pub const ALL: [Validator; 2] = [Validator::Scrutiny, Validator::UserTesting];

    pub fn as_str(self) -> &'static str {
        match self {
            Validator::Scrutiny => "scrutiny",
            Validator::UserTesting => "user-testing",
        }
    }

    /// The check run's name on the milestone PR's head.
    pub fn check_name(self) -> &'static str {
        match self {
            Validator::Scrutiny => "missions / scrutiny",
            Validator::UserTesting => "missions / user-testing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
}

/// One assertion as a validator judged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionResult {
    pub id: String,
    pub status: Verdict,
    /// What the validator saw: output, a command and its result, a file and line.
    pub evidence: String,
}

/// A scrutiny reviewer's verdict on one feature's code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureReview {
    pub feature: String,
    pub verdict: Verdict,
    pub findings: Vec<String>,
}

/// A validator's report for one milestone (`reports/<milestone>-<validator>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationReport {
    pub milestone: String,
    pub validator: Validator,
    pub summary: String,
    pub assertions: Vec<AssertionResult>,
    /// The repository's test/lint/typecheck commands (scrutiny), run by the harness.
    #[serde(default)]
    pub commands: Vec<CommandRun>,
    /// One per feature of the milestone (scrutiny).
    #[serde(default)]
    pub reviews: Vec<FeatureReview>,
    /// Screenshots the user tester took in the browser: paths of PNG files
    /// committed beside the report on the reports branch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub screenshots: Vec<String>,
    /// The assertions' `check` commands, as scrutiny ran them on the commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<AssertionCheck>,
}

/// An assertion's `check`, as it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionCheck {
    /// The assertion.
    pub id: String,
    pub command: String,
    /// `None` when it was killed (timeout) before exiting.
    pub exit_code: Option<i32>,
}

impl ValidationReport {
    /// Passed only if every expected assertion was judged and passed, every
    /// command exited 0 and every review passed. An assertion the validator
    /// skipped counts as failed: silence is not evidence.
    pub fn passed(&self, expected: &[&Assertion]) -> bool {
        self.failures(expected).is_empty()
    }

    /// Why the report fails, one line each; empty when it passes.
    pub fn failures(&self, expected: &[&Assertion]) -> Vec<String> {
        let mut out = Vec::new();
        for a in expected {
            match self.assertions.iter().find(|r| r.id == a.id) {
                Some(r) if r.status == Verdict::Pass => {}
                Some(r) => out.push(format!("{} failed: {}", a.id, one_line(&r.evidence))),
                None => out.push(format!("{} was not checked", a.id)),
            }
        }
        for c in self.commands.iter().filter(|c| !c.passed()) {
            out.push(format!(
                "`{}` exited {}",
                one_line(&c.command),
                c.exit_code.map_or("(killed)".to_owned(), |c| c.to_string())
            ));
        }
        // Every failure is one line (they become list items in comments);
        // model-given text may hold newlines anywhere.
        for r in self.reviews.iter().filter(|r| r.verdict == Verdict::Fail) {
            out.push(format!(
                "review of {} failed: {}",
                one_line(&r.feature),
                one_line(&r.findings.join("; "))
            ));
        }
        out
    }

    /// The check run's summary: the assertions as a table with evidence.
    pub fn to_markdown(&self, expected: &[&Assertion]) -> String {
        let mut out = format!(
            "{}\n\n| assertion | status | evidence |\n|---|---|---|\n",
            self.summary
        );
        for a in expected {
            let (status, evidence) = match self.assertions.iter().find(|r| r.id == a.id) {
                Some(r) if r.status == Verdict::Pass => ("✅ pass", one_line(&r.evidence)),
                Some(r) => ("❌ fail", one_line(&r.evidence)),
                None => ("❌ not checked", String::new()),
            };
            out.push_str(&format!(
                "| {}: {} | {} | {} |\n",
                a.id,
                one_line(&a.text),
                status,
                evidence
            ));
        }
        if !self.commands.is_empty() {
            out.push_str("\n| command | exit code |\n|---|---|\n");
            for c in &self.commands {
                let code = c.exit_code.map_or("killed".to_owned(), |c| c.to_string());
                out.push_str(&format!(
                    "| `{}` | {} |\n",
                    one_line(&c.command).replace('`', "'"),
                    code
                ));
            }
        }
        if !self.reviews.is_empty() {
            out.push_str("\n| feature | review | findings |\n|---|---|---|\n");
            for r in &self.reviews {
                let verdict = if r.verdict == Verdict::Pass {
                    "✅ pass"
                } else {
                    "❌ fail"
                };
                out.push_str(&format!(
                    "| {} | {} | {} |\n",
                    one_line(&r.feature),
                    verdict,
                    one_line(&r.findings.join("; "))
                ));
            }
        }
        if !self.checks.is_empty() {
            out.push_str("\n| assertion | check | exit code |\n|---|---|---|\n");
            for c in &self.checks {
                let code = c.exit_code.map_or("killed".to_owned(), |c| c.to_string());
                out.push_str(&format!(
                    "| {} | `{}` | {} |\n",
                    one_line(&c.id),
                    one_line(&c.command).replace('`', "'"),
                    code
                ));
            }
        }
        if !self.screenshots.is_empty() {
            out.push_str("\n**Screenshots** taken in the browser, on the reports branch:\n\n");
            for path in &self.screenshots {
                out.push_str(&format!("- `{}`\n", one_line(path).replace('`', "'")));
            }
        }
        out
    }
}

/// The orchestrator's answer to a scoping or revision turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OrchestratorOutput {
    /// It needs answers before it can plan.
    Questions { questions: Vec<String> },
    /// The plan (new or revised).
    Plan { plan: Plan },
    /// After triage or a failed validation: features added to the current
    /// milestone (possibly none), with new assertions if the contract grows.
    Amend {
        notes: String,
        #[serde(default)]
        features: Vec<Feature>,
        #[serde(default)]
        assertions: Vec<Assertion>,
    },
    /// At a milestone boundary: the rest of the plan as it is to be, each
    /// part absent when it does not change (see [`Plan::revised`]).
    Revision {
        notes: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        milestones: Option<Vec<Milestone>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assertions: Option<Vec<Assertion>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skills: Option<Vec<Skill>>,
    },
}

impl OrchestratorOutput {
    /// A revision's parts, to lay over the plan.
    pub fn revision(&self) -> Option<Revision> {
        match self {
            OrchestratorOutput::Revision {
                milestones,
                assertions,
                skills,
                ..
            } => Some(Revision {
                milestones: milestones.clone(),
                assertions: assertions.clone(),
                skills: skills.clone(),
            }),
            _ => None,
        }
    }
}

/// What a job's `finish` produced, by role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "kebab-case")]
pub enum JobResult {
    Orchestrator {
        output: OrchestratorOutput,
        /// A plan's checks as they ran on the base (the harness's, not the model's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lint: Option<BaselineLint>,
    },
    Worker {
        handoff: Handoff,
    },
    Validator {
        report: ValidationReport,
    },
    /// The agent stopped without a valid result (a limit, a refusal, repeated
    /// invalid output): a result, not a crash; the server decides what next.
    Incomplete {
        reason: String,
    },
}

/// Tokens and money one job spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub cost_micros: u64,
}

impl JobUsage {
    /// Adds `other`, saturating: counts a model reports are not trusted to be small.
    pub fn add(&mut self, other: &JobUsage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cache_read_tokens = self
            .cache_read_tokens
            .saturating_add(other.cache_read_tokens);
        self.cache_write_tokens = self
            .cache_write_tokens
            .saturating_add(other.cache_write_tokens);
        self.cost_micros = self.cost_micros.saturating_add(other.cost_micros);
    }
}

/// Where a job that left no result has its usage ledger (on the reports
/// branch): what it spent before it died.
pub fn ledger_path(issue: u64, job: &str) -> String {
    format!(".missions/{issue}/usage/{job}.json")
}

/// What a job spent so far, as its harness wrote it after every model call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageLedger {
    pub job: String,
    /// Model calls answered.
    pub calls: u32,
    pub usage: JobUsage,
}

/// The envelope the harness commits for every job it finishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutput {
    /// The job key the server dispatched; the server ignores an output whose key
    /// is not the one it waits for.
    pub job: String,
    pub result: JobResult,
    pub usage: JobUsage,
    /// The job stopped before a model call that could have passed its
    /// spending limit: another try would stop the same way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub budget_stop: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heredoc_command_is_cut_in_the_handoff_table_and_kept_whole_in_the_handoff() {
        let file = "x = 1\n".repeat(20_000);
        let handoff = Handoff {
            feature: "F1".into(),
            summary: "wrote it".into(),
            completed: vec!["it".into()],
            undone: vec![],
            commands: vec![
                CommandRun {
                    command: format!("cat > big.py <<'EOF'\n{file}EOF"),
                    exit_code: Some(0),
                },
                CommandRun {
                    command: "pytest -q".into(),
                    exit_code: Some(1),
                },
            ],
            issues: vec![],
            controls: vec![],
            followed_procedures: true,
            procedures_note: None,
            compactions: 0,
        };
        let md = handoff.to_markdown("Big file");
        assert!(md.len() < 2_000, "{} bytes", md.len());
        assert!(md.contains("| `cat > big.py <<'EOF' x = 1 x = 1"), "{md}");
        let whole = handoff.commands[0].command.chars().count();
        assert!(whole > 120_000);
        assert!(
            md.contains(&format!("… ({whole} characters in all)` | 0 |")),
            "{md}"
        );
        assert!(md.contains("| `pytest -q` | 1 |"), "{md}");
    }
}
