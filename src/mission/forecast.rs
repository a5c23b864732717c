//! What the rest of a mission will probably cost, shown on the plan PR next to
//! the budget before anyone approves it.
//!
//! The jobs a plan needs: one worker per feature, scrutiny and user testing
//! per milestone, an orchestrator's re-plan at each boundary between
//! milestones, and an allowance for failed validations: one follow-up
//! round (the orchestrator's follow-up plan, a worker, both validators again)
//! for every other milestone, rounded up. Each job at its role's mean cost in
//! this mission so far, else the role's default
//! ([`super::machine::default_job_cost`]).

use super::machine::{JobRole, dollars};
use super::plan::Plan;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forecast {
    /// The rest of the mission, in micro-dollars.
    pub micros: u64,
    pub features: usize,
    pub milestones: usize,
    /// Follow-up rounds allowed for.
    pub follow_up_rounds: usize,
    /// Re-plans, one after each milestone but the last.
    pub re_plans: usize,
    /// The cost of one job of each role the forecast used.
    pub worker: u64,
    pub scrutiny: u64,
    pub user_testing: u64,
    pub orchestrator: u64,
}

pub fn forecast(plan: &Plan, cost_of: impl Fn(JobRole) -> u64) -> Forecast {
    let features: usize = plan.milestones.iter().map(|m| m.features.len()).sum();
    let milestones = plan.milestones.len();
    let follow_up_rounds = milestones.div_ceil(2);
    let re_plans = milestones.saturating_sub(1);
    let worker = cost_of(JobRole::Worker);
    let scrutiny = cost_of(JobRole::Scrutiny);
    let user_testing = cost_of(JobRole::UserTesting);
    let orchestrator = cost_of(JobRole::Orchestrator);
    let validation = scrutiny.saturating_add(user_testing);
    let micros = (features as u64)
        .saturating_mul(worker)
        .saturating_add((milestones as u64).saturating_mul(validation))
        .saturating_add((re_plans as u64).saturating_mul(orchestrator))
        .saturating_add(
            (follow_up_rounds as u64).saturating_mul(
                orchestrator
                    .saturating_add(worker)
                    .saturating_add(validation),
            ),
        );
    Forecast {
        micros,
        features,
        milestones,
        follow_up_rounds,
        re_plans,
        worker,
        scrutiny,
        user_testing,
        orchestrator,
    }
}

impl Forecast {
    /// The plan PR's paragraph: the forecast, what was spent, the budget,
    /// and a warning when they do not fit.
    pub fn to_markdown(&self, spent: u64, budget: Option<u64>) -> String {
        let mut out = format!(
            "**Cost forecast**: about ${} for the rest of the mission ({} feature(s) × ${} for a \
             worker, {} milestone(s) × ${} for scrutiny and user testing, {} re-plan(s) between \
             milestones × ${}, and {} follow-up round(s) of ${} each in case a validation \
             fails), ${} spent so far",
            dollars(self.micros),
            self.features,
            dollars(self.worker),
            self.milestones,
            dollars(self.scrutiny.saturating_add(self.user_testing)),
            self.re_plans,
            dollars(self.orchestrator),
            self.follow_up_rounds,
            dollars(
                self.orchestrator
                    .saturating_add(self.worker)
                    .saturating_add(self.scrutiny)
                    .saturating_add(self.user_testing)
            ),
            dollars(spent),
        );
        match budget {
            Some(budget) => {
                out.push_str(&format!("; budget ${}.", dollars(budget)));
                let total = self.micros.saturating_add(spent);
                if total > budget {
                    out.push_str(&format!(
                        "\n\n⚠️ The forecast (${} with what was spent) is over the budget (${}): \
                         the mission would pause when the budget runs out. Raise `budget` in \
                         `.github/missions.yml` on the default branch, or ask for a smaller plan, \
                         before approving.",
                        dollars(total),
                        dollars(budget)
                    ));
                }
            }
            None => out.push_str("; no budget is set."),
        }
        out.push_str(
            "\nJobs are costed at this mission's mean per role so far, or at the defaults in \
             the README's \"Budgets\" section.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mission::plan::{Assertion, Feature, Milestone};

    fn plan(features_per_milestone: &[usize]) -> Plan {
        let mut n = 0;
        Plan {
            title: "t".into(),
            summary: "s".into(),
            assertions: vec![Assertion {
                id: "A1".into(),
                text: "a".into(),
                check: None,
            }],
            milestones: features_per_milestone
                .iter()
                .enumerate()
                .map(|(i, &count)| Milestone {
                    id: format!("M{}", i + 1),
                    title: "m".into(),
                    features: (0..count)
                        .map(|_| {
                            n += 1;
                            Feature {
                                id: format!("F{n}"),
                                title: "f".into(),
                                description: "d".into(),
                                assertions: vec!["A1".into()],
                            }
                        })
                        .collect(),
                })
                .collect(),
            skills: vec![],
        }
    }

    #[test]
    fn features_milestones_and_follow_ups_at_each_roles_cost() {
        let cost = |role: JobRole| match role {
            JobRole::Orchestrator => 1,
            JobRole::Worker => 10,
            JobRole::Scrutiny => 100,
            JobRole::UserTesting => 1000,
        };
        // 3 features, 2 milestones, 1 re-plan between them, 1 follow-up round.
        let f = forecast(&plan(&[2, 1]), cost);
        assert_eq!(f.micros, 3 * 10 + 2 * 1100 + 1 + (1 + 10 + 1100));
        assert_eq!(f.re_plans, 1);
        // 3 milestones: 2 follow-up rounds.
        assert_eq!(forecast(&plan(&[1, 1, 1]), cost).follow_up_rounds, 2);
    }

    #[test]
    fn a_forecast_over_the_budget_warns() {
        let f = forecast(&plan(&[2, 1]), |_| 1_000_000);
        assert_eq!(f.micros, 3_000_000 + 4_000_000 + 1_000_000 + 4_000_000);
        let fits = f.to_markdown(500_000, Some(20_000_000));
        assert!(
            fits.contains("about $12.00")
                && fits.contains("1 re-plan(s) between milestones × $1.00")
                && fits.contains("budget $20.00"),
            "{fits}"
        );
        assert!(!fits.contains("⚠️"), "{fits}");
        let over = f.to_markdown(500_000, Some(10_000_000));
        assert!(
            over.contains("⚠️") && over.contains("$12.50") && over.contains("Raise `budget`"),
            "{over}"
        );
        assert!(f.to_markdown(0, None).contains("no budget is set"));
    }
}
