//! The plan: milestones of features, and the validation contract — numbered
//! assertions that define "done" before any code exists. Plain data; `check`
//! enforces the rules a model's plan must meet whatever the model says.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One assertion of the validation contract: a statement a validator can check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assertion {
    /// `A1`, `A2`, … unique in the plan.
    pub id: String,
    pub text: String,
    /// A shell command, run in the checkout, whose exit status says whether
    /// the assertion holds (0: it does). Scrutiny runs it on the ready
    /// commit, and a failing check fails the assertion whatever a reviewer
    /// says. Absent for what only a person or a browser can judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

/// One unit of work for one worker job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    /// `F1`, `F2`, … unique in the plan (follow-up features get new ids).
    pub id: String,
    pub title: String,
    pub description: String,
    /// Ids of the assertions this feature makes true (at least one).
    pub assertions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Milestone {
    /// `M1`, `M2`, … unique in the plan.
    pub id: String,
    pub title: String,
    pub features: Vec<Feature>,
}

/// A procedure the orchestrator writes for this mission's workers
/// (`.missions/<issue>/skills/<name>.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skill {
    pub name: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub title: String,
    pub summary: String,
    pub assertions: Vec<Assertion>,
    pub milestones: Vec<Milestone>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<Skill>,
}

/// One way a plan breaks the rules; the text is sent back to the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the plan has no milestones")]
    NoMilestones,
    #[error("milestone {0} has no features")]
    EmptyMilestone(String),
    #[error("the validation contract has no assertions")]
    NoAssertions,
    #[error("id {0} is used more than once (milestone, feature and assertion ids must be unique)")]
    DuplicateId(String),
    #[error("id {0:?} is not a valid id: use letters, digits, '-' or '_' (at most 32)")]
    BadId(String),
    #[error("feature {feature} claims assertion {assertion}, which is not in the contract")]
    UnknownAssertion { feature: String, assertion: String },
    #[error("feature {0} claims no assertion: every feature must make at least one true")]
    FeatureWithoutAssertion(String),
    #[error("assertion {0} is claimed by no feature: every assertion needs one")]
    UncoveredAssertion(String),
    #[error(
        "milestone id {0:?} is reserved (its branch would be the mission's plan, reports or a re-plan branch): use M1, M2, …"
    )]
    ReservedId(String),
    #[error("skill name {0:?} is not a valid file name: use letters, digits, '-' or '_'")]
    BadSkillName(String),
    #[error("assertion {0}'s check is empty: give the command to run, or leave `check` out")]
    EmptyCheck(String),
}

/// Milestone branches are `missions/<issue>/<id lowercased>`, beside these.
pub const RESERVED_MILESTONE_IDS: [&str; 2] = ["plan", "reports"];

/// Ids go into branch names, file names and job inputs: keep them plain.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Plan {
    /// Every rule the plan breaks, in a stable order; empty when it is sound.
    pub fn check(&self) -> Vec<PlanError> {
        let mut errors = Vec::new();
        if self.milestones.is_empty() {
            errors.push(PlanError::NoMilestones);
        }
        if self.assertions.is_empty() {
            errors.push(PlanError::NoAssertions);
        }
        // Ids name branches and files, which may be case-insensitive: `M1` and
        // `m1` are the same id.
        let mut seen = BTreeSet::new();
        let mut note_id = |id: &str, errors: &mut Vec<PlanError>| {
            if !valid_id(id) {
                errors.push(PlanError::BadId(id.to_owned()));
            } else if !seen.insert(id.to_ascii_lowercase()) {
                errors.push(PlanError::DuplicateId(id.to_owned()));
            }
        };
        for a in &self.assertions {
            note_id(&a.id, &mut errors);
            if a.check.as_ref().is_some_and(|c| c.trim().is_empty()) {
                errors.push(PlanError::EmptyCheck(a.id.clone()));
            }
        }
        let known: BTreeSet<&str> = self.assertions.iter().map(|a| a.id.as_str()).collect();
        let mut covered = BTreeSet::new();
        for m in &self.milestones {
            note_id(&m.id, &mut errors);
            if RESERVED_MILESTONE_IDS.contains(&m.id.to_ascii_lowercase().as_str())
                || m.id.to_ascii_lowercase().ends_with("-replan")
            {
                errors.push(PlanError::ReservedId(m.id.clone()));
            }
            if m.features.is_empty() {
                errors.push(PlanError::EmptyMilestone(m.id.clone()));
            }
            for f in &m.features {
                note_id(&f.id, &mut errors);
                if f.assertions.is_empty() {
                    errors.push(PlanError::FeatureWithoutAssertion(f.id.clone()));
                }
                for a in &f.assertions {
                    if known.contains(a.as_str()) {
                        covered.insert(a.as_str());
                    } else {
                        errors.push(PlanError::UnknownAssertion {
                            feature: f.id.clone(),
                            assertion: a.clone(),
                        });
                    }
                }
            }
        }
        for a in &self.assertions {
            if !covered.contains(a.id.as_str()) {
                errors.push(PlanError::UncoveredAssertion(a.id.clone()));
            }
        }
        for s in &self.skills {
            if !valid_id(&s.name) {
                errors.push(PlanError::BadSkillName(s.name.clone()));
            }
        }
        errors
    }

    pub fn feature(&self, id: &str) -> Option<(usize, &Feature)> {
        self.milestones
            .iter()
            .enumerate()
            .find_map(|(i, m)| m.features.iter().find(|f| f.id == id).map(|f| (i, f)))
    }

    pub fn assertion(&self, id: &str) -> Option<&Assertion> {
        self.assertions.iter().find(|a| a.id == id)
    }

    /// The assertions milestone `index` must make true: those its features claim,
    /// in contract order.
    pub fn milestone_assertions(&self, index: usize) -> Vec<&Assertion> {
        let Some(m) = self.milestones.get(index) else {
            return Vec::new();
        };
        let claimed: BTreeSet<&str> = m
            .features
            .iter()
            .flat_map(|f| f.assertions.iter().map(String::as_str))
            .collect();
        self.assertions
            .iter()
            .filter(|a| claimed.contains(a.id.as_str()))
            .collect()
    }

    /// Which features claim each assertion.
    pub fn coverage(&self) -> BTreeMap<String, Vec<String>> {
        let mut map: BTreeMap<String, Vec<String>> = self
            .assertions
            .iter()
            .map(|a| (a.id.clone(), Vec::new()))
            .collect();
        for f in self.milestones.iter().flat_map(|m| &m.features) {
            for a in &f.assertions {
                if let Some(list) = map.get_mut(a) {
                    list.push(f.id.clone());
                }
            }
        }
        map
    }

    /// The plan as markdown for people (`plan.md`).
    pub fn to_markdown(&self, issue: u64) -> String {
        let coverage = self.coverage();
        let mut out = format!(
            "# Mission plan for #{issue}: {}\n\n{}\n\n",
            self.title, self.summary
        );
        out.push_str("## Validation contract\n\n| id | assertion | features |\n|---|---|---|\n");
        for a in &self.assertions {
            let features = coverage
                .get(&a.id)
                .map(|f| f.join(", "))
                .unwrap_or_default();
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                a.id,
                one_line(&a.text),
                features
            ));
        }
        for m in &self.milestones {
            out.push_str(&format!("\n## {}: {}\n\n", m.id, m.title));
            for f in &m.features {
                out.push_str(&format!(
                    "- **{}: {}** (makes {} true). {}\n",
                    f.id,
                    f.title,
                    f.assertions.join(", "),
                    one_line(&f.description)
                ));
            }
        }
        if !self.skills.is_empty() {
            out.push_str("\n## Procedures for workers\n\n");
            for s in &self.skills {
                out.push_str(&format!("- `skills/{}.md`\n", s.name));
            }
        }
        out
    }
}

/// What the orchestrator revises at a milestone boundary; `None`: unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revision {
    /// Every milestone from the next one on, in order.
    pub milestones: Option<Vec<Milestone>>,
    /// The whole contract.
    pub assertions: Option<Vec<Assertion>>,
    /// Every skill.
    pub skills: Option<Vec<Skill>>,
}

impl Plan {
    /// The plan with `revision` laid over it at a boundary: milestones before
    /// `first` are merged and stay as they are. The errors, when the result
    /// breaks the plan's rules, are for the orchestrator to fix.
    pub fn revised(&self, first: usize, revision: &Revision) -> Result<Plan, Vec<String>> {
        let mut plan = self.clone();
        if let Some(rest) = &revision.milestones {
            if rest.is_empty() {
                return Err(vec![format!(
                    "no milestone is left: give every milestone from {} on (at least one); \
                     milestones merged already stay as they are",
                    self.milestones
                        .get(first)
                        .map_or("the next one", |m| m.id.as_str())
                )]);
            }
            plan.milestones.truncate(first);
            plan.milestones.extend(rest.iter().cloned());
        }
        if let Some(assertions) = &revision.assertions {
            plan.assertions = assertions.clone();
        }
        if let Some(skills) = &revision.skills {
            plan.skills = skills.clone();
        }
        let errors: Vec<String> = plan.check().iter().map(ToString::to_string).collect();
        if errors.is_empty() {
            Ok(plan)
        } else {
            Err(errors)
        }
    }

    /// The approved assertions `self` removes or changes (text or check), one
    /// line each. Any change counts: whether it weakens the assertion is for the
    /// maintainer who approved it to judge, not for the server.
    pub fn unapproved_changes(&self, approved: &[Assertion]) -> Vec<String> {
        approved
            .iter()
            .filter_map(|a| match self.assertion(&a.id) {
                None => Some(format!("{} removed (was: {})", a.id, one_line(&a.text))),
                Some(now) if now.text != a.text => Some(format!(
                    "{} changed from \"{}\" to \"{}\"",
                    a.id,
                    one_line(&a.text),
                    one_line(&now.text)
                )),
                Some(now) if now.check != a.check => Some(format!(
                    "{}'s check changed from {} to {}",
                    a.id,
                    shown_check(a.check.as_deref()),
                    shown_check(now.check.as_deref())
                )),
                Some(_) => None,
            })
            .collect()
    }

    /// What `new` changes in `self`, for people: one line per added, changed,
    /// moved or dropped milestone, feature, assertion and skill.
    pub fn diff(&self, new: &Plan) -> Vec<String> {
        let mut out = Vec::new();
        let ids = |p: &Plan| {
            p.milestones
                .iter()
                .map(|m| m.id.clone())
                .collect::<Vec<_>>()
        };
        let features = |p: &Plan| -> BTreeMap<String, (String, Feature)> {
            p.milestones
                .iter()
                .flat_map(|m| {
                    m.features
                        .iter()
                        .map(|f| (f.id.clone(), (m.id.clone(), f.clone())))
                })
                .collect()
        };
        let (old_ids, new_ids) = (ids(self), ids(new));
        for m in &new.milestones {
            if !old_ids.contains(&m.id) {
                out.push(format!(
                    "**added** milestone {}: {}",
                    m.id,
                    one_line(&m.title)
                ));
            }
        }
        for id in &old_ids {
            if !new_ids.contains(id) {
                out.push(format!("**dropped** milestone {id}"));
            }
        }
        let kept_old: Vec<&String> = old_ids.iter().filter(|id| new_ids.contains(id)).collect();
        let kept_new: Vec<&String> = new_ids.iter().filter(|id| old_ids.contains(id)).collect();
        if kept_old != kept_new {
            out.push(format!(
                "**reordered** milestones: {}",
                kept_new
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let (before, after) = (features(self), features(new));
        for (id, (milestone, f)) in &after {
            match before.get(id) {
                None => out.push(format!(
                    "**added** {id} to {milestone}: {} (makes {} true)",
                    one_line(&f.title),
                    f.assertions.join(", ")
                )),
                Some((was_in, old)) => {
                    if was_in != milestone {
                        out.push(format!("**moved** {id} from {was_in} to {milestone}"));
                    }
                    let mut what = Vec::new();
                    if old.title != f.title {
                        what.push(format!("title \"{}\"", one_line(&f.title)));
                    }
                    if old.description != f.description {
                        what.push("description".to_owned());
                    }
                    if old.assertions != f.assertions {
                        what.push(format!("now makes {} true", f.assertions.join(", ")));
                    }
                    if !what.is_empty() {
                        out.push(format!("**changed** {id}: {}", what.join("; ")));
                    }
                }
            }
        }
        for (id, (milestone, _)) in &before {
            if !after.contains_key(id) {
                out.push(format!("**dropped** {id} from {milestone}"));
            }
        }
        for a in &new.assertions {
            match self.assertion(&a.id) {
                None => out.push(format!("**added** {}: {}", a.id, one_line(&a.text))),
                Some(old) if old != a => out.push(format!(
                    "**changed** {}: \"{}\"{}",
                    a.id,
                    one_line(&a.text),
                    if old.check != a.check {
                        format!(", check {}", shown_check(a.check.as_deref()))
                    } else {
                        String::new()
                    }
                )),
                Some(_) => {}
            }
        }
        for a in &self.assertions {
            if new.assertion(&a.id).is_none() {
                out.push(format!("**removed** {}: {}", a.id, one_line(&a.text)));
            }
        }
        for s in &new.skills {
            match self.skills.iter().find(|o| o.name == s.name) {
                None => out.push(format!("**added** skill `{}`", s.name)),
                Some(old) if old.body != s.body => {
                    out.push(format!("**updated** skill `{}`", s.name))
                }
                Some(_) => {}
            }
        }
        for s in &self.skills {
            if !new.skills.iter().any(|n| n.name == s.name) {
                out.push(format!("**removed** skill `{}`", s.name));
            }
        }
        out
    }
}

fn shown_check(check: Option<&str>) -> String {
    check.map_or_else(|| "(none)".to_owned(), |c| format!("`{}`", one_line(c)))
}

/// Text for one table cell or list item: newlines and pipes would break markdown.
/// A pipe becomes `\|`; backslashes right before it are made an even run, so
/// that none of them escapes the escape (GitHub splits a row at `\\|`).
pub fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(joined.len());
    let mut backslashes = 0usize;
    for c in joined.chars() {
        match c {
            '\\' => backslashes += 1,
            '|' => {
                if backslashes % 2 == 1 {
                    out.push('\\');
                }
                out.push_str("\\|");
                backslashes = 0;
                continue;
            }
            _ => backslashes = 0,
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn one_line_escapes_pipes_whatever_precedes_them() {
        assert_eq!(one_line("a |\n b"), "a \\| b");
        assert_eq!(one_line("a\\|b"), "a\\\\\\|b");
        assert_eq!(one_line("a\\\\|b"), "a\\\\\\|b");
        assert_eq!(one_line("a\\b|"), "a\\b\\|");
    }

    pub fn sample_plan() -> Plan {
        let a = |id: &str| Assertion {
            id: id.into(),
            text: format!("assertion {id}"),
            check: None,
        };
        let f = |id: &str, claims: &[&str]| Feature {
            id: id.into(),
            title: format!("feature {id}"),
            description: "do it".into(),
            assertions: claims.iter().map(|s| s.to_string()).collect(),
        };
        Plan {
            title: "t".into(),
            summary: "s".into(),
            assertions: vec![a("A1"), a("A2"), a("A3")],
            milestones: vec![
                Milestone {
                    id: "M1".into(),
                    title: "first".into(),
                    features: vec![f("F1", &["A1"]), f("F2", &["A2"])],
                },
                Milestone {
                    id: "M2".into(),
                    title: "second".into(),
                    features: vec![f("F3", &["A3"])],
                },
            ],
            skills: vec![],
        }
    }

    #[test]
    fn a_sound_plan_has_no_errors() {
        assert_eq!(sample_plan().check(), vec![]);
    }

    #[test]
    fn coverage_and_ids_are_enforced() {
        let mut plan = sample_plan();
        plan.milestones[0].features[1].assertions = vec!["A9".into()];
        plan.milestones[1].features[0].id = "F1".into();
        plan.milestones[1].features[0].assertions.clear();
        let errors = plan.check();
        assert!(errors.contains(&PlanError::UnknownAssertion {
            feature: "F2".into(),
            assertion: "A9".into()
        }));
        assert!(errors.contains(&PlanError::DuplicateId("F1".into())));
        assert!(errors.contains(&PlanError::FeatureWithoutAssertion("F1".into())));
        assert!(errors.contains(&PlanError::UncoveredAssertion("A2".into())));
        assert!(errors.contains(&PlanError::UncoveredAssertion("A3".into())));
    }

    #[test]
    fn ids_differing_in_case_only_and_reserved_milestone_ids_are_refused() {
        let mut plan = sample_plan();
        plan.milestones[1].id = "m1".into();
        assert!(plan.check().contains(&PlanError::DuplicateId("m1".into())));
        plan.milestones[1].id = "Reports".into();
        assert!(
            plan.check()
                .contains(&PlanError::ReservedId("Reports".into()))
        );
    }

    #[test]
    fn ids_must_be_plain() {
        let mut plan = sample_plan();
        plan.milestones[0].id = "../x".into();
        assert!(plan.check().contains(&PlanError::BadId("../x".into())));
    }

    #[test]
    fn milestone_assertions_are_those_its_features_claim() {
        let plan = sample_plan();
        let ids: Vec<_> = plan
            .milestone_assertions(0)
            .iter()
            .map(|a| a.id.clone())
            .collect();
        assert_eq!(ids, ["A1", "A2"]);
    }
}
