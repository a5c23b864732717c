//! The mission state machine (`missions::mission::machine`) driven the way the
//! server drives it: examples that walk the whole lifecycle, then property tests
//! over random event sequences that check the lifecycle's rules after every step.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use missions::mission::machine::{ExternalCheck, RequiredCheck};
use missions::mission::outputs::{AssertionResult, DiscoveredIssue, Verdict};
use missions::mission::{
    Actor, Assertion, CheckConclusion, Command, Effect, Event, Feature, Handoff, IssueSnapshot,
    Job, JobOutput, JobResult, JobUsage, Milestone, Mission, OrchestratorOutput, Phase, Plan,
    ReviewState, RunConclusion, Settings, Target, Task, ValidationReport, Validator,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

// ---- fixtures -----------------------------------------------------------------

const T0: i64 = 1_700_000_000;
/// The most one model call costs in the random walks: what a job may pass
/// its spending limit by (its last call), and so the mission its budget.
const ONE_CALL: u64 = 10_000;
const ISSUE: u64 = 7;

/// A maintainer.
fn writer() -> Actor {
    Actor {
        login: "alice".into(),
        can_write: true,
        is_bot: false,
    }
}

/// A person without write access.
fn reader() -> Actor {
    Actor {
        login: "bob".into(),
        can_write: false,
        is_bot: false,
    }
}

/// The issue's author, without write access.
fn author() -> Actor {
    Actor {
        login: "carol".into(),
        can_write: false,
        is_bot: false,
    }
}

/// A bot with write access (the App itself, say).
fn bot() -> Actor {
    Actor {
        login: "missions[bot]".into(),
        can_write: true,
        is_bot: true,
    }
}

fn reading_bot() -> Actor {
    Actor {
        login: "dependabot[bot]".into(),
        can_write: false,
        is_bot: true,
    }
}

fn assertion(id: &str) -> Assertion {
    Assertion {
        id: id.into(),
        text: format!("assertion {id} holds"),
        check: None,
    }
}

fn feature(id: &str, claims: &[&str]) -> Feature {
    Feature {
        id: id.into(),
        title: format!("feature {id}"),
        description: "do it".into(),
        assertions: claims.iter().map(|s| s.to_string()).collect(),
    }
}

fn milestone(id: &str, features: Vec<Feature>) -> Milestone {
    Milestone {
        id: id.into(),
        title: format!("milestone {id}"),
        features,
    }
}

/// Two milestones, three features: M1 = F1, F2; M2 = F3.
fn sample_plan() -> Plan {
    Plan {
        title: "Widgets".into(),
        summary: "Make widgets".into(),
        assertions: vec![assertion("A1"), assertion("A2"), assertion("A3")],
        milestones: vec![
            milestone("M1", vec![feature("F1", &["A1"]), feature("F2", &["A2"])]),
            milestone("M2", vec![feature("F3", &["A3"])]),
        ],
        skills: vec![],
    }
}

/// Three milestones of one feature each.
fn long_plan() -> Plan {
    Plan {
        title: "Gadgets".into(),
        summary: "Make gadgets".into(),
        assertions: vec![assertion("A1"), assertion("A2"), assertion("A3")],
        milestones: vec![
            milestone("M1", vec![feature("F1", &["A1"])]),
            milestone("M2", vec![feature("F2", &["A2"])]),
            milestone("M3", vec![feature("F3", &["A3"])]),
        ],
        skills: vec![],
    }
}

fn short_plan() -> Plan {
    Plan {
        title: "Gizmo".into(),
        summary: "Make a gizmo".into(),
        assertions: vec![assertion("A1"), assertion("A2")],
        milestones: vec![milestone(
            "M1",
            vec![feature("F1", &["A1"]), feature("F2", &["A1", "A2"])],
        )],
        skills: vec![],
    }
}

/// A plan that breaks the rules: A3 is claimed by no feature.
fn broken_plan() -> Plan {
    let mut plan = sample_plan();
    plan.milestones[1].features[0].assertions = vec!["A2".into()];
    plan
}

fn questions(qs: &[&str]) -> JobResult {
    JobResult::Orchestrator {
        output: OrchestratorOutput::Questions {
            questions: qs.iter().map(|s| s.to_string()).collect(),
        },
        lint: None,
    }
}

fn plan_result(plan: Plan) -> JobResult {
    JobResult::Orchestrator {
        output: OrchestratorOutput::Plan { plan },
        lint: None,
    }
}

fn amend(features: Vec<Feature>, assertions: Vec<Assertion>) -> JobResult {
    JobResult::Orchestrator {
        output: OrchestratorOutput::Amend {
            notes: "Amended.".into(),
            features,
            assertions,
        },
        lint: None,
    }
}

/// A boundary re-plan's result: the parts given replace the plan's.
fn revision(milestones: Option<Vec<Milestone>>, assertions: Option<Vec<Assertion>>) -> JobResult {
    JobResult::Orchestrator {
        output: OrchestratorOutput::Revision {
            notes: "Revised.".into(),
            milestones,
            assertions,
            skills: None,
        },
        lint: None,
    }
}

/// M1 merged by a writer before validation, while F2 (of M1) runs: the
/// mission pauses; returns it and F2's job.
fn merged_while_f2_runs() -> (Sim, Job) {
    let (mut s, f1) = Sim::building(Settings::default());
    let f2 = dispatched(&s.finish(&f1, worker(clean_handoff("F1"))));
    s.apply(Event::MilestonePrOpened {
        index: 0,
        number: 101,
    });
    s.apply(Event::PrMerged {
        pr: 101,
        actor: writer(),
        head_sha: "zzz".into(),
    });
    assert!(s.m.paused.is_some());
    (s, f2)
}

/// After M1's merge (`fx`): the boundary re-plan runs on `m1-replan` and
/// keeps the plan; M2's branch starts from it. Returns M2's first job.
fn through_the_boundary(s: &mut Sim, fx: &[Effect]) -> Job {
    assert!(
        fx.contains(&Effect::CreateBranch {
            name: "missions/7/m1-replan".into(),
            from: "main".into()
        }),
        "{fx:?}"
    );
    let boundary = dispatched(fx);
    assert_eq!(boundary.task, Task::Boundary { after: "M1".into() });
    assert_eq!(boundary.branch, "missions/7/m1-replan");
    assert_eq!(s.m.phase, Phase::Replanning);
    let fx = s.finish(&boundary, revision(None, None));
    assert!(mentions(&fx, "### Re-plan before M2"), "{fx:?}");
    assert!(mentions(
        &fx,
        "No change: the rest of the plan stands as approved."
    ));
    assert!(fx.contains(&Effect::CreateBranch {
        name: "missions/7/m2".into(),
        from: "missions/7/m1-replan".into()
    }));
    assert_eq!(s.m.phase, Phase::Building);
    dispatched(&fx)
}

fn clean_handoff(id: &str) -> Handoff {
    Handoff {
        feature: id.into(),
        summary: format!("{id} is in"),
        completed: vec!["the code".into(), "its tests".into()],
        undone: vec![],
        commands: vec![],
        issues: vec![],
        followed_procedures: true,
        procedures_note: None,
        compactions: 0,
        controls: vec![],
    }
}

fn worker(handoff: Handoff) -> JobResult {
    JobResult::Worker { handoff }
}

/// A validator's report on milestone `index` of `plan`: every assertion passes,
/// or the first one fails.
fn report(plan: &Plan, index: usize, validator: Validator, pass: bool) -> JobResult {
    let assertions = plan
        .milestone_assertions(index)
        .iter()
        .enumerate()
        .map(|(i, a)| AssertionResult {
            id: a.id.clone(),
            status: if pass || i > 0 {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            evidence: "ran the scenario".into(),
        })
        .collect();
    JobResult::Validator {
        report: ValidationReport {
            milestone: plan
                .milestones
                .get(index)
                .map_or("M?".to_owned(), |m| m.id.clone()),
            validator,
            summary: "checked".into(),
            assertions,
            commands: vec![],
            reviews: vec![],
            screenshots: vec![],
            checks: vec![],
        },
    }
}

fn checks(first: u64) -> BTreeMap<Validator, u64> {
    BTreeMap::from([
        (Validator::Scrutiny, first),
        (Validator::UserTesting, first + 1),
    ])
}

fn dispatches(effects: &[Effect]) -> Vec<&Job> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Dispatch { job } => Some(job),
            _ => None,
        })
        .collect()
}

/// The one job `effects` dispatch.
#[track_caller]
fn dispatched(effects: &[Effect]) -> Job {
    let jobs = dispatches(effects);
    assert_eq!(
        jobs.len(),
        1,
        "expected exactly one dispatch in {effects:#?}"
    );
    jobs[0].clone()
}

#[track_caller]
fn no_dispatch(effects: &[Effect]) {
    assert!(
        dispatches(effects).is_empty(),
        "expected no dispatch in {effects:#?}"
    );
}

fn comments(effects: &[Effect]) -> Vec<(Target, &str)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Comment { target, body } => Some((*target, body.as_str())),
            _ => None,
        })
        .collect()
}

fn mentions(effects: &[Effect], needle: &str) -> bool {
    comments(effects).iter().any(|(_, b)| b.contains(needle))
}

/// The server stores the mission as JSON: it must come back equal.
#[track_caller]
fn assert_roundtrips(m: &Mission) {
    let json = serde_json::to_string(m).expect("serialize");
    let back: Mission = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(&back, m);
}

fn roundtrips(m: &Mission) -> Result<bool, String> {
    let json = serde_json::to_string(m).map_err(|e| e.to_string())?;
    let back: Mission = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    Ok(&back == m)
}

// ---- a small harness for the examples -------------------------------------------

struct Sim {
    m: Mission,
    now: i64,
    runs: u64,
}

impl Sim {
    fn start(settings: Settings) -> (Sim, Vec<Effect>) {
        let (m, effects) = Mission::start(
            "acme/widgets",
            ISSUE,
            "carol",
            "main",
            settings,
            "alice",
            T0,
        );
        let m = m.with_issue_text(Some(IssueSnapshot::of(
            "Widgets",
            Some("Make widgets."),
            None,
        )));
        assert_roundtrips(&m);
        (
            Sim {
                m,
                now: T0,
                runs: 0,
            },
            effects,
        )
    }

    fn apply(&mut self, event: Event) -> Vec<Effect> {
        self.now += 60;
        let effects = self.m.apply(event, self.now);
        assert_roundtrips(&self.m);
        effects
    }

    fn finish(&mut self, job: &Job, result: JobResult) -> Vec<Effect> {
        self.finish_costing(job, result, 0)
    }

    fn finish_costing(&mut self, job: &Job, result: JobResult, cost_micros: u64) -> Vec<Effect> {
        self.runs += 1;
        self.apply(Event::JobFinished {
            ledger: None,
            key: job.key.clone(),
            run_id: Some(self.runs),
            conclusion: RunConclusion::Success,
            output: Some(JobOutput {
                job: job.key.clone(),
                result,
                usage: JobUsage {
                    input_tokens: 1000,
                    output_tokens: 100,
                    cost_micros,
                    ..JobUsage::default()
                },
                budget_stop: false,
            }),
        })
    }

    fn fail(&mut self, job: &Job) -> Vec<Effect> {
        self.runs += 1;
        self.apply(Event::JobFinished {
            ledger: None,
            key: job.key.clone(),
            run_id: Some(self.runs),
            conclusion: RunConclusion::Failure,
            output: None,
        })
    }

    fn command(&mut self, actor: Actor, command: Command) -> Vec<Effect> {
        let settings = self.m.settings;
        self.command_with(actor, command, settings)
    }

    fn command_with(&mut self, actor: Actor, command: Command, settings: Settings) -> Vec<Effect> {
        self.apply(Event::Command {
            actor,
            command: Ok(command),
            settings,
        })
    }

    fn review(&mut self, pr: u64, actor: Actor, state: ReviewState) -> Vec<Effect> {
        self.apply(Event::Review { pr, actor, state })
    }

    /// Started, the plan (no questions) in PR #100, approved: F1 is dispatched.
    fn building(settings: Settings) -> (Sim, Job) {
        let (mut s, fx) = Sim::start(settings);
        let scope = dispatched(&fx);
        s.finish(&scope, plan_result(sample_plan()));
        s.apply(Event::PlanPrOpened { number: 100 });
        let fx = s.review(100, writer(), ReviewState::Approved);
        let f1 = dispatched(&fx);
        assert_eq!(f1.task, Task::Feature { id: "F1".into() });
        (s, f1)
    }

    /// F1 and F2 done, milestone PR #101, validation round 1 started on `aaa`:
    /// the scrutiny job is dispatched.
    fn validating() -> (Sim, Job) {
        Sim::validating_with(Settings::default(), Vec::new())
    }

    /// As [`Sim::validating`], with `settings` and the repository's
    /// `required` checks.
    fn validating_with(settings: Settings, required: Vec<RequiredCheck>) -> (Sim, Job) {
        let (mut s, f1) = Sim::building(settings);
        let fx = s.finish(&f1, worker(clean_handoff("F1")));
        let f2 = dispatched(&fx);
        s.apply(Event::MilestonePrOpened {
            index: 0,
            number: 101,
        });
        s.finish(&f2, worker(clean_handoff("F2")));
        let fx = s.apply(Event::ValidationStarted {
            index: 0,
            round: 1,
            sha: "aaa".into(),
            checks: checks(900),
            required,
        });
        (s, dispatched(&fx))
    }

    /// Both validators passed on `aaa`: waiting for the merge of #101.
    fn awaiting_merge() -> Sim {
        let (mut s, scrutiny) = Sim::validating();
        let plan = sample_plan();
        let fx = s.finish(&scrutiny, report(&plan, 0, Validator::Scrutiny, true));
        let testing = dispatched(&fx);
        s.finish(&testing, report(&plan, 0, Validator::UserTesting, true));
        assert_eq!(s.m.phase, Phase::AwaitingMerge);
        s
    }
}

// ---- examples ---------------------------------------------------------------------

#[test]
fn happy_path_walks_two_milestones_to_done() {
    let plan = sample_plan();
    let (mut s, fx) = Sim::start(Settings::default());
    assert_eq!(
        fx[0],
        Effect::CreateBranch {
            name: "missions/7/plan".into(),
            from: "main".into()
        }
    );
    let scope = dispatched(&fx);
    assert_eq!(scope.key, "scope-1.1");
    assert_eq!(scope.task, Task::Scope { round: 1 });
    assert_eq!(scope.branch, "missions/7/plan");
    assert_eq!(s.m.phase, Phase::Scoping);

    // Questions, then the author's answer.
    let fx = s.finish(&scope, questions(&["Which database?"]));
    no_dispatch(&fx);
    assert_eq!(s.m.phase, Phase::AwaitingAnswers);
    assert!(mentions(&fx, "Which database?") && mentions(&fx, "@carol"));
    assert!(s.m.job.is_none());
    // Someone else's comment is not an answer.
    let fx = s.apply(Event::Comment {
        actor: reader(),
        is_author: false,
    });
    assert!(fx.is_empty());
    assert_eq!(s.m.phase, Phase::AwaitingAnswers);
    let fx = s.apply(Event::Comment {
        actor: author(),
        is_author: true,
    });
    let scope2 = dispatched(&fx);
    assert_eq!(scope2.task, Task::Scope { round: 2 });
    assert_eq!(scope2.key, "scope-2.1");

    // The plan, in its pull request.
    let fx = s.finish(&scope2, plan_result(plan.clone()));
    no_dispatch(&fx);
    assert_eq!(s.m.phase, Phase::PlanReview);
    assert_eq!(s.m.plan.as_ref(), Some(&plan));
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::OpenPlanPr { branch, .. } if branch == "missions/7/plan"))
    );
    assert!(s.apply(Event::PlanPrOpened { number: 100 }).is_empty());
    assert_eq!(s.m.plan_pr, Some(100));

    // Approved by a maintainer: M1 starts with F1.
    let fx = s.review(100, writer(), ReviewState::Approved);
    assert!(fx.contains(&Effect::CreateBranch {
        name: "missions/7/m1".into(),
        from: "missions/7/plan".into()
    }));
    assert!(fx.contains(&Effect::ClosePr {
        target: Target::PlanPr
    }));
    let f1 = dispatched(&fx);
    assert_eq!(f1.task, Task::Feature { id: "F1".into() });
    assert_eq!(f1.key, "feature-F1.1");
    assert_eq!(f1.branch, "missions/7/m1");
    assert_eq!(f1.output_branch, "missions/7/m1");
    assert_eq!(s.m.phase, Phase::Building);

    // F1's handoff opens the milestone PR and starts F2.
    let fx = s.finish(&f1, worker(clean_handoff("F1")));
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::EnsureMilestonePr { index: 0, branch, .. } if branch == "missions/7/m1"
    )));
    assert!(
        comments(&fx)
            .iter()
            .any(|(t, b)| *t == Target::MilestonePr { index: 0 } && b.contains("Handoff: F1"))
    );
    let f2 = dispatched(&fx);
    assert_eq!(f2.task, Task::Feature { id: "F2".into() });
    s.apply(Event::MilestonePrOpened {
        index: 0,
        number: 101,
    });

    // F2 done: validation round 1.
    let fx = s.finish(&f2, worker(clean_handoff("F2")));
    no_dispatch(&fx);
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::StartValidation { index: 0, round: 1, branch, .. } if branch == "missions/7/m1"
    )));
    assert_eq!(s.m.phase, Phase::Validating);
    // A result for another round does not move the mission, and its check
    // runs, which nothing will report on, are cancelled.
    let fx = s.apply(Event::ValidationStarted {
        index: 0,
        round: 2,
        sha: "old".into(),
        checks: checks(800),
        required: Vec::new(),
    });
    assert_eq!(fx.len(), 2, "{fx:?}");
    assert!(fx.iter().all(|e| matches!(
        e,
        Effect::CompleteCheck { conclusion: CheckConclusion::Cancelled, check_run_id, .. }
            if *check_run_id == 800 || *check_run_id == 801
    )));
    assert_eq!(s.m.validation.sha, None);
    let fx = s.apply(Event::ValidationStarted {
        index: 0,
        round: 1,
        sha: "aaa".into(),
        checks: checks(900),
        required: Vec::new(),
    });
    let scrutiny = dispatched(&fx);
    assert_eq!(
        scrutiny.task,
        Task::Validate {
            milestone: "M1".into(),
            validator: Validator::Scrutiny,
            round: 1
        }
    );
    assert_eq!(scrutiny.key, "M1-scrutiny-1.1");
    assert_eq!(scrutiny.output_branch, "missions/7/reports");

    let fx = s.finish(&scrutiny, report(&plan, 0, Validator::Scrutiny, true));
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::CompleteCheck {
            check_run_id: 900,
            conclusion: CheckConclusion::Success,
            ..
        }
    )));
    let testing = dispatched(&fx);
    assert_eq!(testing.key, "M1-user-testing-1.1");
    let fx = s.finish(&testing, report(&plan, 0, Validator::UserTesting, true));
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::CompleteCheck {
            check_run_id: 901,
            conclusion: CheckConclusion::Success,
            ..
        }
    )));
    no_dispatch(&fx);
    assert!(mentions(&fx, "Ready to merge"));
    assert_eq!(s.m.phase, Phase::AwaitingMerge);
    assert_eq!(s.m.validated_sha.as_deref(), Some("aaa"));

    // A maintainer merges the validated head: the orchestrator re-plans the
    // rest, and M2 starts from what it committed.
    let fx = s.apply(Event::PrMerged {
        pr: 101,
        actor: writer(),
        head_sha: "aaa".into(),
    });
    let f3 = through_the_boundary(&mut s, &fx);
    assert_eq!(f3.task, Task::Feature { id: "F3".into() });
    assert_eq!(f3.branch, "missions/7/m2");
    assert_eq!(s.m.milestone, 1);
    assert_eq!(s.m.phase, Phase::Building);
    assert!(s.m.paused.is_none());

    let fx = s.finish(&f3, worker(clean_handoff("F3")));
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::EnsureMilestonePr { index: 1, .. }))
    );
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::StartValidation {
            index: 1,
            round: 1,
            ..
        }
    )));
    s.apply(Event::MilestonePrOpened {
        index: 1,
        number: 102,
    });
    let fx = s.apply(Event::ValidationStarted {
        index: 1,
        round: 1,
        sha: "bbb".into(),
        checks: checks(902),
        required: Vec::new(),
    });
    let scrutiny = dispatched(&fx);
    assert_eq!(scrutiny.key, "M2-scrutiny-1.1");
    let fx = s.finish(&scrutiny, report(&plan, 1, Validator::Scrutiny, true));
    let testing = dispatched(&fx);
    let fx = s.finish(&testing, report(&plan, 1, Validator::UserTesting, true));
    no_dispatch(&fx);
    assert_eq!(s.m.phase, Phase::AwaitingMerge);

    let fx = s.apply(Event::PrMerged {
        pr: 102,
        actor: writer(),
        head_sha: "bbb".into(),
    });
    no_dispatch(&fx);
    assert_eq!(s.m.phase, Phase::Done);
    assert!(fx.contains(&Effect::CloseIssue));
    assert!(
        comments(&fx)
            .iter()
            .any(|(t, b)| *t == Target::Issue && b.contains("Mission complete"))
    );
    assert_eq!(
        s.m.done_features,
        BTreeSet::from(["F1".into(), "F2".into(), "F3".into()])
    );
    // scope, F1, F2, two validators, the boundary re-plan, F3, two validators.
    assert_eq!(s.m.history.len(), 10);
    assert!(s.m.history.iter().all(|h| h.outcome == "done"));
    assert!(s.m.job.is_none());

    // Once done, only a status request is answered.
    assert!(
        s.command(writer(), Command::Resume).is_empty()
            && s.command(writer(), Command::Replan).is_empty()
    );
    assert_eq!(s.command(writer(), Command::Status).len(), 1);
    assert_eq!(s.m.phase, Phase::Done);
}

#[test]
fn failed_validation_gets_a_follow_up_then_validates_again() {
    let plan = sample_plan();
    let (mut s, scrutiny) = Sim::validating();
    let fx = s.finish(&scrutiny, report(&plan, 0, Validator::Scrutiny, false));
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::CompleteCheck {
            check_run_id: 900,
            conclusion: CheckConclusion::Failure,
            ..
        }
    )));
    // The other validator still runs in the same round.
    let testing = dispatched(&fx);
    assert_eq!(testing.key, "M1-user-testing-1.1");
    let fx = s.finish(&testing, report(&plan, 0, Validator::UserTesting, true));
    let follow_up = dispatched(&fx);
    assert_eq!(
        follow_up.task,
        Task::FollowUp {
            milestone: "M1".into(),
            round: 1
        }
    );
    assert_eq!(follow_up.key, "followup-M1-1.1");
    assert_eq!(s.m.phase, Phase::Validating);
    assert!(s.m.validated_sha.is_none());

    // The amendment adds F4 to M1, which runs next.
    let fx = s.finish(&follow_up, amend(vec![feature("F4", &["A1"])], vec![]));
    assert_eq!(s.m.phase, Phase::Building);
    let f4 = dispatched(&fx);
    assert_eq!(f4.task, Task::Feature { id: "F4".into() });
    assert_eq!(f4.branch, "missions/7/m1");
    let amended = s.m.plan.clone().unwrap();
    assert!(amended.check().is_empty());
    assert_eq!(amended.feature("F4").map(|(i, _)| i), Some(0));

    // Round 2 on a new ready commit; both pass.
    let fx = s.finish(&f4, worker(clean_handoff("F4")));
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::StartValidation {
            index: 0,
            round: 2,
            ..
        }
    )));
    // The first round's result arriving late changes nothing.
    assert!(
        s.apply(Event::ValidationStarted {
            index: 0,
            round: 1,
            sha: "aaa".into(),
            checks: checks(900),
            required: Vec::new(),
        })
        .is_empty()
    );
    let fx = s.apply(Event::ValidationStarted {
        index: 0,
        round: 2,
        sha: "ccc".into(),
        checks: checks(910),
        required: Vec::new(),
    });
    let scrutiny = dispatched(&fx);
    assert_eq!(scrutiny.key, "M1-scrutiny-2.1");
    let fx = s.finish(&scrutiny, report(&amended, 0, Validator::Scrutiny, true));
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::CompleteCheck {
            check_run_id: 910,
            conclusion: CheckConclusion::Success,
            ..
        }
    )));
    let testing = dispatched(&fx);
    s.finish(&testing, report(&amended, 0, Validator::UserTesting, true));
    assert_eq!(s.m.phase, Phase::AwaitingMerge);
    assert_eq!(s.m.validated_sha.as_deref(), Some("ccc"));

    // The head of round 1 is not the validated one.
    let fx = s.apply(Event::PrMerged {
        pr: 101,
        actor: writer(),
        head_sha: "aaa".into(),
    });
    no_dispatch(&fx);
    assert!(s.m.paused.is_some());
    assert_eq!(s.m.milestone, 0);
}

#[test]
fn a_worker_failing_twice_pauses_until_a_writer_resumes() {
    let (mut s, f1) = Sim::building(Settings::default());
    let fx = s.fail(&f1);
    let again = dispatched(&fx);
    assert_eq!(again.key, "feature-F1.2");
    assert!(s.m.paused.is_none());

    let fx = s.fail(&again);
    no_dispatch(&fx);
    assert!(s.m.paused.is_some());
    assert!(s.m.job.is_none());
    assert!(mentions(&fx, "/mission resume"));
    assert_eq!(s.m.failures.get("feature-F1"), Some(&2));

    // Neither a reader nor a bot can resume.
    let fx = s.command(reader(), Command::Resume);
    no_dispatch(&fx);
    assert!(s.command(bot(), Command::Resume).is_empty());
    assert!(s.m.paused.is_some());

    let fx = s.command(writer(), Command::Resume);
    let third = dispatched(&fx);
    assert_eq!(third.key, "feature-F1.3");
    assert_eq!(third.task, Task::Feature { id: "F1".into() });
    assert!(s.m.paused.is_none());
    assert!(!s.m.failures.contains_key("feature-F1"));

    // A success clears the count, and the next feature runs.
    let fx = s.finish(&third, worker(clean_handoff("F1")));
    assert_eq!(dispatched(&fx).task, Task::Feature { id: "F2".into() });
    assert!(s.m.failures.is_empty());
}

#[test]
fn retry_runs_the_failed_step_again() {
    let (mut s, f1) = Sim::building(Settings::default());
    let again = dispatched(&s.fail(&f1));
    // Retry while the job runs does nothing.
    let fx = s.command(writer(), Command::Retry);
    no_dispatch(&fx);
    assert_eq!(s.m.job.as_ref(), Some(&again));
    s.fail(&again);
    let fx = s.command(writer(), Command::Retry);
    assert_eq!(dispatched(&fx).key, "feature-F1.3");
}

#[test]
fn an_unresolved_issue_is_triaged_before_the_next_feature() {
    let (mut s, f1) = Sim::building(Settings::default());
    let mut handoff = clean_handoff("F1");
    handoff.issues = vec![
        DiscoveredIssue {
            description: "flaky test".into(),
            resolved: true,
        },
        DiscoveredIssue {
            description: "the API returns 500 on empty input".into(),
            resolved: false,
        },
    ];
    let fx = s.finish(&f1, worker(handoff));
    let triage = dispatched(&fx);
    assert_eq!(
        triage.task,
        Task::Triage {
            feature: "F1".into()
        }
    );
    assert_eq!(triage.key, "triage-F1.1");
    assert_eq!(s.m.triage.as_deref(), Some("F1"));

    // A failed triage is retried as triage, not skipped.
    let fx = s.fail(&triage);
    let triage2 = dispatched(&fx);
    assert_eq!(triage2.key, "triage-F1.2");

    let fx = s.finish(&triage2, amend(vec![feature("F1b", &["A1"])], vec![]));
    assert!(s.m.triage.is_none());
    let next = dispatched(&fx);
    assert_eq!(next.task, Task::Feature { id: "F2".into() });

    // Undone work needs triage too.
    let mut handoff = clean_handoff("F2");
    handoff.undone = vec!["the docs".into()];
    let fx = s.finish(&next, worker(handoff));
    assert_eq!(
        dispatched(&fx).task,
        Task::Triage {
            feature: "F2".into()
        }
    );
}

#[test]
fn only_a_writer_who_is_not_a_bot_can_approve_the_plan() {
    let (mut s, fx) = Sim::start(Settings::default());
    let scope = dispatched(&fx);
    s.finish(&scope, plan_result(sample_plan()));
    s.apply(Event::PlanPrOpened { number: 100 });
    for actor in [bot(), reading_bot()] {
        let fx = s.review(100, actor, ReviewState::Approved);
        assert!(fx.is_empty());
    }
    let fx = s.review(100, reader(), ReviewState::Approved);
    no_dispatch(&fx);
    assert_eq!(comments(&fx).len(), 1);
    let fx = s.review(100, reader(), ReviewState::ChangesRequested);
    no_dispatch(&fx);
    // Another PR, or a plain comment review, changes nothing.
    assert!(s.review(555, writer(), ReviewState::Approved).is_empty());
    assert!(s.review(100, writer(), ReviewState::Commented).is_empty());
    assert_eq!(s.m.phase, Phase::PlanReview);
    assert!(s.m.job.is_none());

    let fx = s.review(100, writer(), ReviewState::Approved);
    assert_eq!(dispatched(&fx).task, Task::Feature { id: "F1".into() });
}

#[test]
fn a_person_without_write_access_is_refused_once_then_ignored() {
    let (mut s, fx) = Sim::start(Settings::default());
    let scope = dispatched(&fx);
    s.finish(&scope, plan_result(sample_plan()));
    s.apply(Event::PlanPrOpened { number: 100 });
    let before = s.m.clone();
    // The same command three times: one reply.
    let replies: Vec<usize> = (0..3)
        .map(|_| comments(&s.command(reader(), Command::Abort)).len())
        .collect();
    assert_eq!(replies, [1, 0, 0]);
    // Told once, whatever they try next, however they spell their login.
    assert!(s.command(reader(), Command::Resume).is_empty());
    assert!(s.review(100, reader(), ReviewState::Approved).is_empty());
    let shouting = Actor {
        login: "BOB".into(),
        ..reader()
    };
    assert!(s.command(shouting, Command::Pause).is_empty());
    // Someone else is told once too, the issue's author included.
    let fx = s.review(100, author(), ReviewState::Approved);
    assert_eq!(comments(&fx), [(Target::PlanPr, fx_body(&fx))]);
    assert!(fx_body(&fx).starts_with("@carol thanks for the review"));
    assert!(s.command(author(), Command::Status).is_empty());
    // Nothing else changed.
    assert_eq!(
        s.m.refused,
        BTreeSet::from(["bob".to_owned(), "carol".to_owned()])
    );
    let mut unchanged = s.m.clone();
    unchanged.refused.clear();
    assert_eq!(unchanged, before);
    // A writer is never refused that way.
    assert!(mentions(
        &s.command(writer(), Command::Status),
        "Mission status"
    ));
    assert_roundtrips(&s.m);
    // A mission stored before people were remembered still loads.
    let mut json = serde_json::to_value(&s.m).unwrap();
    json.as_object_mut().unwrap().remove("refused").unwrap();
    let old: Mission = serde_json::from_value(json).unwrap();
    assert!(old.refused.is_empty());
}

#[test]
fn an_edit_of_the_issue_waits_for_a_writer_unless_a_writer_made_it() {
    let (mut s, fx) = Sim::start(Settings::default());
    let scope = dispatched(&fx);
    s.finish(&scope, plan_result(sample_plan()));
    let original = s.m.issue_text.clone().expect("the text at the label");
    let edit = |body: &str| IssueSnapshot::of("Widgets", Some(body), Some("later".into()));
    // An outsider's edit: the jobs keep the text; the issue says so once.
    let fx = s.apply(Event::IssueEdited {
        actor: reader(),
        snapshot: edit("steer"),
    });
    assert!(fx_body(&fx).starts_with("@bob edited this issue's title or description"));
    assert_eq!(s.m.issue_text.as_ref(), Some(&original));
    let fx = s.apply(Event::IssueEdited {
        actor: reader(),
        snapshot: edit("steer harder"),
    });
    assert!(fx.is_empty(), "told once per waiting edit: {fx:?}");
    assert_eq!(
        s.m.issue_edit.as_ref().unwrap().snapshot,
        edit("steer harder")
    );
    // A writer's resume takes the newest edit in, and says so.
    let fx = s.command(writer(), Command::Resume);
    assert!(
        mentions(&fx, "The edit of the issue by @bob is taken in"),
        "{fx:?}"
    );
    assert_eq!(s.m.issue_text, Some(edit("steer harder")));
    assert_eq!(s.m.issue_edit, None);
    // A writer's own edit is taken in at once, without a word.
    assert!(
        s.apply(Event::IssueEdited {
            actor: writer(),
            snapshot: edit("clarified"),
        })
        .is_empty()
    );
    assert_eq!(s.m.issue_text, Some(edit("clarified")));
    // Editing back to the text the jobs have drops a waiting edit.
    s.apply(Event::IssueEdited {
        actor: reader(),
        snapshot: edit("again"),
    });
    s.apply(Event::IssueEdited {
        actor: reader(),
        snapshot: edit("clarified"),
    });
    assert_eq!(s.m.issue_edit, None);
    // The hash covers the title too.
    assert_ne!(
        IssueSnapshot::hash("A", Some("b")),
        IssueSnapshot::hash("A\nb", None)
    );
    assert_roundtrips(&s.m);
}

/// The body of the one comment in `effects`.
fn fx_body(effects: &[Effect]) -> &str {
    match comments(effects).as_slice() {
        [(_, body)] => body,
        other => panic!("expected one comment: {other:?}"),
    }
}

#[test]
fn an_approval_drops_a_revision_asked_for_while_paused() {
    let (mut s, fx) = Sim::start(Settings::default());
    let scope = dispatched(&fx);
    s.finish(&scope, plan_result(sample_plan()));
    s.apply(Event::PlanPrOpened { number: 100 });
    s.command(writer(), Command::Pause);
    no_dispatch(&s.command(writer(), Command::Replan));
    assert_eq!(s.m.pending, Some(Task::Revise { round: 1 }));
    // A maintainer approves the plan as it is, then resumes: M1 starts.
    no_dispatch(&s.review(100, writer(), ReviewState::Approved));
    assert_eq!(s.m.phase, Phase::Building);
    let fx = s.command(writer(), Command::Resume);
    assert_eq!(dispatched(&fx).task, Task::Feature { id: "F1".into() });
}

#[test]
fn changes_requested_by_a_writer_revise_the_plan() {
    let (mut s, fx) = Sim::start(Settings::default());
    let scope = dispatched(&fx);
    s.finish(&scope, plan_result(sample_plan()));
    s.apply(Event::PlanPrOpened { number: 100 });
    let fx = s.review(100, writer(), ReviewState::ChangesRequested);
    let revise = dispatched(&fx);
    assert_eq!(revise.task, Task::Revise { round: 1 });
    assert_eq!(revise.branch, "missions/7/plan");
    // A review while the revision runs is refused.
    let fx = s.review(100, writer(), ReviewState::Approved);
    no_dispatch(&fx);
    assert_eq!(s.m.phase, Phase::Scoping);
    // The revision is posted on the same PR, not a new one.
    let fx = s.finish(&revise, plan_result(long_plan()));
    assert!(!fx.iter().any(|e| matches!(e, Effect::OpenPlanPr { .. })));
    assert_eq!(s.m.phase, Phase::PlanReview);
    assert_eq!(s.m.plan.as_ref(), Some(&long_plan()));
}

#[test]
fn a_plan_that_breaks_the_rules_is_not_accepted() {
    let (mut s, fx) = Sim::start(Settings::default());
    let scope = dispatched(&fx);
    let fx = s.finish(&scope, plan_result(broken_plan()));
    // Counted as a failed attempt and retried.
    let again = dispatched(&fx);
    assert_eq!(again.key, "scope-1.2");
    assert!(s.m.plan.is_none());
    assert_eq!(s.m.phase, Phase::Scoping);
}

#[test]
fn a_merge_before_validation_pauses_until_a_writer_accepts_it() {
    let (mut s, f1) = Sim::building(Settings::default());
    let fx = s.finish(&f1, worker(clean_handoff("F1")));
    let f2 = dispatched(&fx);
    s.apply(Event::MilestonePrOpened {
        index: 0,
        number: 101,
    });
    let fx = s.apply(Event::PrMerged {
        pr: 101,
        actor: writer(),
        head_sha: "zzz".into(),
    });
    no_dispatch(&fx);
    assert!(s.m.paused.is_some());
    assert!(s.m.merged_unvalidated);
    assert!(mentions(&fx, "/mission resume"));
    // The running job finishes; nothing new starts, no validation.
    let fx = s.finish(&f2, worker(clean_handoff("F2")));
    no_dispatch(&fx);
    assert!(
        !fx.iter()
            .any(|e| matches!(e, Effect::StartValidation { .. }))
    );
    assert_eq!(s.m.milestone, 0);
    // A reader cannot accept it.
    no_dispatch(&s.command(reader(), Command::Resume));
    assert_eq!(s.m.milestone, 0);

    let fx = s.command(writer(), Command::Resume);
    assert!(mentions(&fx, "accepted"));
    let f3 = through_the_boundary(&mut s, &fx);
    assert_eq!(f3.task, Task::Feature { id: "F3".into() });
    assert_eq!(s.m.milestone, 1);
    assert!(!s.m.merged_unvalidated);
    assert!(s.m.paused.is_none());
}

#[test]
fn a_re_plan_that_keeps_failing_lets_the_next_milestone_start_with_the_plan_as_it_is() {
    let (mut s, f2) = merged_while_f2_runs();
    no_dispatch(&s.fail(&f2));
    let fx = s.command(writer(), Command::Resume);
    let mut boundary = dispatched(&fx);
    assert_eq!(boundary.task, Task::Boundary { after: "M1".into() });
    let plan = s.m.plan.clone();
    for _ in 1..s.m.settings.max_attempts {
        boundary = dispatched(&s.fail(&boundary));
    }
    let fx = s.fail(&boundary);
    assert!(
        mentions(&fx, "so M2 starts with the plan as it is"),
        "{fx:?}"
    );
    assert!(fx.contains(&Effect::CreateBranch {
        name: "missions/7/m2".into(),
        from: "main".into()
    }));
    assert_eq!(dispatched(&fx).task, Task::Feature { id: "F3".into() });
    assert!(s.m.paused.is_none());
    assert_eq!(s.m.plan, plan);
}

#[test]
fn accepting_an_unvalidated_merge_drops_the_merged_milestones_leftover_steps() {
    let (mut s, f2) = merged_while_f2_runs();
    // F2's run fails while the mission is paused: it is left pending.
    no_dispatch(&s.fail(&f2));
    assert_eq!(s.m.pending, Some(Task::Feature { id: "F2".into() }));

    // Accepting M1 as it is moves on to M2's work, not M1's leftover.
    let fx = s.command(writer(), Command::Resume);
    let next = through_the_boundary(&mut s, &fx);
    assert_eq!(s.m.milestone, 1);
    assert_eq!(next.task, Task::Feature { id: "F3".into() });
    assert_eq!(next.branch, "missions/7/m2");
}

#[test]
fn a_job_of_the_merged_milestone_must_end_before_the_merge_is_accepted() {
    let (mut s, f2) = merged_while_f2_runs();
    // Not accepted while F2 (of the merged milestone) still runs.
    let fx = s.command(writer(), Command::Resume);
    no_dispatch(&fx);
    assert!(mentions(&fx, "still running"), "{fx:?}");
    assert_eq!(s.m.milestone, 0);
    // F2 fails; the mission stays paused (nothing retried on a merged milestone).
    no_dispatch(&s.fail(&f2));
    // Accepted now: the merged milestone's leftover F2 is dropped, M2 starts.
    let fx = s.command(writer(), Command::Resume);
    let next = through_the_boundary(&mut s, &fx);
    assert_eq!(s.m.milestone, 1);
    assert_eq!(next.task, Task::Feature { id: "F3".into() });
    assert_eq!(next.branch, "missions/7/m2");
    assert!(s.m.pending.is_none());
}

#[test]
fn a_replan_while_paused_does_not_carry_failures_past_the_resume() {
    let (mut s, f1) = Sim::building(Settings::default());
    let again = dispatched(&s.fail(&f1));
    no_dispatch(&s.fail(&again));
    assert!(s.m.paused.is_some());
    // A writer asks for a replan, then resumes: the replan runs first.
    no_dispatch(&s.command(writer(), Command::Replan));
    let replan = dispatched(&s.command(writer(), Command::Resume));
    assert_eq!(replan.task, Task::Replan { n: 1 });
    let f1 = dispatched(&s.finish(&replan, amend(vec![], vec![])));
    assert_eq!(f1.task, Task::Feature { id: "F1".into() });
    // F1 gets its attempts again after the resume: one failure is retried.
    let fx = s.fail(&f1);
    assert!(
        s.m.paused.is_none(),
        "paused after one failure since the resume"
    );
    assert_eq!(dispatched(&fx).task, Task::Feature { id: "F1".into() });
    assert!(
        s.m.failures
            .values()
            .all(|&n| n <= s.m.settings.max_attempts)
    );
}

#[test]
fn a_merge_of_another_head_or_by_a_bot_does_not_advance() {
    for (actor, sha) in [(writer(), "other"), (bot(), "aaa")] {
        let mut s = Sim::awaiting_merge();
        let fx = s.apply(Event::PrMerged {
            pr: 101,
            actor,
            head_sha: sha.into(),
        });
        no_dispatch(&fx);
        assert!(s.m.paused.is_some());
        assert_eq!(s.m.milestone, 0);
        assert_eq!(s.m.phase, Phase::AwaitingMerge);
    }
    // Another PR's merge is not the milestone's.
    let mut s = Sim::awaiting_merge();
    assert!(
        s.apply(Event::PrMerged {
            pr: 555,
            actor: writer(),
            head_sha: "aaa".into(),
        })
        .is_empty()
    );
    assert!(s.m.paused.is_none());
}

#[test]
fn spending_the_budget_pauses_instead_of_dispatching() {
    let settings = Settings {
        budget_micros: Some(1_000_000),
        ..Settings::default()
    };
    let (mut s, f1) = Sim::building(settings);
    let fx = s.finish_costing(&f1, worker(clean_handoff("F1")), 1_200_000);
    no_dispatch(&fx);
    assert!(s.m.job.is_none());
    assert!(s.m.paused.as_deref().unwrap().contains("budget"));
    assert!(mentions(&fx, "/mission resume"));
    assert_eq!(s.m.pending, Some(Task::Feature { id: "F2".into() }));

    // Resuming with the same budget pauses again.
    let fx = s.command(writer(), Command::Resume);
    no_dispatch(&fx);
    assert!(s.m.paused.is_some());

    // A raised budget (fresh settings come with the command) lets it go on.
    let raised = Settings {
        budget_micros: Some(5_000_000),
        ..settings
    };
    let fx = s.command_with(writer(), Command::Resume, raised);
    let f2 = dispatched(&fx);
    assert_eq!(f2.task, Task::Feature { id: "F2".into() });
    assert_eq!(s.m.settings, raised);
}

#[test]
fn pause_abort_and_stale_results() {
    let (mut s, f1) = Sim::building(Settings::default());
    // Paused: the running job finishes, nothing new starts.
    let fx = s.command(writer(), Command::Pause);
    assert!(mentions(&fx, "/mission resume"));
    let fx = s.finish(&f1, worker(clean_handoff("F1")));
    no_dispatch(&fx);
    let fx = s.command(writer(), Command::Resume);
    let f2 = dispatched(&fx);

    // A result for an old key, or a run already consumed, is ignored.
    let before = s.m.clone();
    assert!(s.finish(&f1, worker(clean_handoff("F1"))).is_empty());
    let fx = s.apply(Event::JobFinished {
        ledger: None,
        key: f2.key.clone(),
        run_id: Some(1),
        conclusion: RunConclusion::Success,
        output: Some(JobOutput {
            job: f2.key.clone(),
            result: worker(clean_handoff("F2")),
            usage: JobUsage::default(),
            budget_stop: false,
        }),
    });
    assert!(fx.is_empty());
    assert_eq!(s.m, before);

    // Aborted: the running job's result is ignored.
    s.command(writer(), Command::Abort);
    assert_eq!(s.m.phase, Phase::Aborted);
    let fx = s.finish(&f2, worker(clean_handoff("F2")));
    assert!(fx.is_empty());
    assert!(!s.m.done_features.contains("F2"));
}

// ---- random event sequences --------------------------------------------------------

/// What happens next, in the abstract: the driver turns it into an event that
/// fits the mission's state (the current job's key, the open PR's number, …).
#[derive(Debug, Clone)]
enum Op {
    /// The current job succeeds with a valid output for its task; `variant`
    /// picks which (questions or plan, clean or triage-needing handoff, …).
    Finish {
        variant: u8,
        cost: u32,
    },
    /// The current job fails (run failed, no output, output for another key,
    /// the agent gave up, a result of the wrong shape).
    Fail {
        how: u8,
    },
    /// A run is seen for the current job (possibly one already consumed).
    Started {
        reuse: bool,
    },
    /// A late result for an old job.
    Stale {
        pick: u8,
    },
    /// A duplicate completion of a run already consumed.
    Duplicate {
        current_key: bool,
        pick: u8,
    },
    Review {
        actor: u8,
        approve: bool,
        wrong_pr: bool,
    },
    Comment {
        actor: u8,
        is_author: bool,
    },
    Command {
        actor: u8,
        cmd: u8,
        raise_budget: bool,
    },
    /// The current milestone's PR is merged with the validated head or another.
    Merge {
        actor: u8,
        good_sha: bool,
    },
    /// New commits on the milestone PR's head (or the App's own ready commit
    /// seen again).
    Synchronize {
        new_head: bool,
    },
    /// Re-run pressed on validator check runs of the round's commit (or
    /// of another one).
    Rerun {
        actor: u8,
        which: u8,
        good_sha: bool,
    },
    /// A merge queue asks for checks on a group of the milestone PR at the
    /// validated head (or at another commit).
    MergeGroup {
        good_sha: bool,
    },
    /// The repository's own CI reports on the round's ready commit (or on
    /// another commit): passed or failed, or still running.
    Ci {
        pass: bool,
        good_sha: bool,
        running: bool,
    },
    /// The result of the oldest effect the server performed.
    Deliver,
    /// What a cooperative world does next: the author answers, a maintainer
    /// approves, merges the validated head or resumes, the job succeeds, or
    /// an effect's result comes back.
    Advance {
        variant: u8,
    },
    EffectFailed,
}

fn actor_of(i: u8) -> Actor {
    match i % 4 {
        0 => writer(),
        1 => reader(),
        2 => bot(),
        _ => reading_bot(),
    }
}

fn command_of(i: u8) -> Result<Command, String> {
    match i {
        0 => Ok(Command::Status),
        1 => Ok(Command::Pause),
        2 => Ok(Command::Resume),
        3 => Ok(Command::Retry),
        4 => Ok(Command::Replan),
        5 => Ok(Command::Abort),
        _ => Err("frobnicate".into()),
    }
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let actor = || prop_oneof![4 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)];
    let cmd = prop_oneof![
        1 => Just(0u8),
        2 => Just(1u8),
        5 => Just(2u8),
        2 => Just(3u8),
        2 => Just(4u8),
        1 => Just(5u8),
        1 => Just(6u8),
    ];
    prop_oneof![
        30 => (any::<u8>(), 0u32..600_000).prop_map(|(variant, cost)| Op::Finish { variant, cost }),
        3 => any::<u8>().prop_map(|how| Op::Fail { how }),
        3 => any::<bool>().prop_map(|reuse| Op::Started { reuse }),
        2 => any::<u8>().prop_map(|pick| Op::Stale { pick }),
        2 => (any::<bool>(), any::<u8>())
            .prop_map(|(current_key, pick)| Op::Duplicate { current_key, pick }),
        6 => (actor(), prop::bool::weighted(0.75), prop::bool::weighted(0.1)).prop_map(
            |(actor, approve, wrong_pr)| Op::Review {
                actor,
                approve,
                wrong_pr
            }
        ),
        3 => (actor(), any::<bool>())
            .prop_map(|(actor, is_author)| Op::Comment { actor, is_author }),
        7 => (actor(), cmd, any::<bool>()).prop_map(|(actor, cmd, raise_budget)| Op::Command {
            actor,
            cmd,
            raise_budget
        }),
        3 => (actor(), prop::bool::weighted(0.7))
            .prop_map(|(actor, good_sha)| Op::Merge { actor, good_sha }),
        12 => Just(Op::Deliver),
        20 => any::<u8>().prop_map(|variant| Op::Advance { variant }),
        1 => Just(Op::EffectFailed),
        2 => prop::bool::weighted(0.7).prop_map(|new_head| Op::Synchronize { new_head }),
        3 => (actor(), any::<u8>(), prop::bool::weighted(0.8))
            .prop_map(|(actor, which, good_sha)| Op::Rerun { actor, which, good_sha }),
        1 => prop::bool::weighted(0.7).prop_map(|good_sha| Op::MergeGroup { good_sha }),
        3 => (prop::bool::weighted(0.6), prop::bool::weighted(0.9), prop::bool::weighted(0.2))
            .prop_map(|(pass, good_sha, running)| Op::Ci { pass, good_sha, running }),
    ]
}

fn settings_strategy() -> impl Strategy<Value = Settings> {
    (
        1u32..=3,
        1u32..=3,
        prop_oneof![2 => Just(None), 1 => (1_000_000u64..6_000_000).prop_map(Some)],
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(max_attempts, max_validation_rounds, budget_micros, require)| Settings {
                max_attempts,
                max_validation_rounds,
                budget_micros,
                reserve: Default::default(),
                // Sometimes user testing must come from another model family
                // than the workers', and does not.
                independence: missions::mission::machine::Independence {
                    rule: if require {
                        missions::mission::machine::IndependenceRule::Require
                    } else {
                        missions::mission::machine::IndependenceRule::Warn
                    },
                    family: Some(missions::mission::machine::Family::Anthropic),
                    scrutiny_same: false,
                    user_testing_same: true,
                },
                ci_wait_secs: 3600,
            },
        )
}

/// Settings, whether the server feeds effect results back at once (else they
/// come back when a `Deliver` says so, racing other events), and the events.
fn case_strategy() -> impl Strategy<Value = (Settings, bool, Vec<Op>)> {
    (
        settings_strategy(),
        prop::bool::weighted(0.7),
        prop::collection::vec(op_strategy(), 1..=60),
    )
}

/// What the random walks reached, to check they cover the lifecycle.
#[derive(Debug, Default, Clone)]
struct Coverage {
    done: usize,
    second_milestone: usize,
    awaiting_merge: usize,
    triage: usize,
    follow_up: usize,
    replan: usize,
    failure_pause: usize,
    budget_pause: usize,
    accepted_unvalidated: usize,
    /// Check runs completed without a report, and fresh ones opened for a retry.
    checks_cancelled: usize,
    checks_timed_out: usize,
    checks_reopened: usize,
    /// Boundary re-plans that applied at once, and revisions a person approved.
    revised: usize,
    revision_approved: usize,
    /// Rounds that waited for the repository's CI: failed by it, and ready
    /// once it passed.
    ci_failed: usize,
    ci_ready: usize,
}

/// The server, its GitHub and its workers around one mission, with a model of
/// what people did that the mission must respect.
struct World {
    m: Mission,
    max_attempts: u32,
    now: i64,
    /// Results of effects the server performed, not yet fed back.
    outbox: VecDeque<Event>,
    next_number: u64,
    next_run: u64,
    next_sha: u64,
    next_check: u64,
    next_id: u32,
    /// Milestone PRs the server opened, by index (the latest for each).
    prs: BTreeMap<usize, u64>,
    merged_prs: BTreeSet<u64>,
    /// The ready commit of each (milestone, round).
    round_sha: BTreeMap<(usize, u32), String>,
    /// Validators that passed each (milestone, round).
    passed: BTreeMap<(usize, u32), BTreeSet<Validator>>,
    /// Milestones merged by a person with a head both validators passed.
    validated_merges: BTreeSet<usize>,
    /// Milestones whose PR was merged at all.
    merged: BTreeSet<usize>,
    /// Milestones merged unvalidated, then a writer resumed.
    accepted: BTreeSet<usize>,
    /// Every key ever dispatched.
    keys: BTreeSet<String>,
    /// Jobs the mission consumed a result for.
    finished: Vec<String>,
    consumed_runs: Vec<u64>,
    covered: Coverage,
    reached_second: bool,
    /// People without the right to act who got a refusal comment.
    told: BTreeSet<String>,
    /// Check runs on GitHub: their conclusion once completed.
    check_runs: BTreeMap<u64, Option<CheckConclusion>>,
    /// The repository's CI on each ready commit: what it concluded last.
    ci: BTreeMap<String, bool>,
    next_ci_run: u64,
}

impl World {
    fn new(settings: Settings) -> Result<World, TestCaseError> {
        let (m, effects) = Mission::start(
            "acme/widgets",
            ISSUE,
            "carol",
            "main",
            settings,
            "alice",
            T0,
        );
        let m = m.with_issue_text(Some(IssueSnapshot::of(
            "Widgets",
            Some("Make widgets."),
            None,
        )));
        let mut w = World {
            m,
            max_attempts: settings.max_attempts,
            now: T0,
            outbox: VecDeque::new(),
            next_number: 100,
            next_run: 1,
            next_sha: 1,
            next_check: 900,
            next_id: 1,
            prs: BTreeMap::new(),
            merged_prs: BTreeSet::new(),
            round_sha: BTreeMap::new(),
            passed: BTreeMap::new(),
            validated_merges: BTreeSet::new(),
            merged: BTreeSet::new(),
            accepted: BTreeSet::new(),
            keys: BTreeSet::new(),
            finished: Vec::new(),
            consumed_runs: Vec::new(),
            covered: Coverage::default(),
            reached_second: false,
            told: BTreeSet::new(),
            check_runs: BTreeMap::new(),
            ci: BTreeMap::new(),
            next_ci_run: 5000,
        };
        let jobs = dispatches(&effects);
        prop_assert_eq!(jobs.len(), 1);
        prop_assert_eq!(w.m.job.as_ref(), Some(jobs[0]));
        w.keys.insert(jobs[0].key.clone());
        w.perform(&effects);
        Ok(w)
    }

    fn fresh_run(&mut self) -> u64 {
        self.next_run += 1;
        self.next_run
    }

    fn unlocked(&self, index: usize) -> bool {
        self.validated_merges.contains(&index) || self.accepted.contains(&index)
    }

    /// A valid output for `job`'s task; `Some` validator if it is a passing report.
    fn valid_output(&mut self, job: &Job, variant: u8) -> (JobResult, Option<Validator>) {
        let plan = self.m.plan.clone();
        match &job.task {
            Task::Scope { .. } | Task::Revise { .. } => {
                let result = match variant % 9 {
                    0..=3 => plan_result(sample_plan()),
                    4 => plan_result(long_plan()),
                    5 => plan_result(short_plan()),
                    6 | 7 => questions(&["Which database?", "Which port?"]),
                    _ => plan_result(broken_plan()),
                };
                (result, None)
            }
            Task::Feature { id } => {
                let mut handoff = clean_handoff(id);
                match variant % 6 {
                    3 => handoff.issues.push(DiscoveredIssue {
                        description: "a crash on empty input".into(),
                        resolved: false,
                    }),
                    4 => handoff.undone.push("the error messages".into()),
                    5 => {
                        handoff.issues.push(DiscoveredIssue {
                            description: "a typo".into(),
                            resolved: true,
                        });
                        handoff.procedures_note = Some("skipped the linter".into());
                        handoff.followed_procedures = false;
                    }
                    _ => {}
                }
                (worker(handoff), None)
            }
            Task::Triage { .. } | Task::FollowUp { .. } | Task::Replan { .. } => {
                let claim = plan
                    .as_ref()
                    .and_then(|p| {
                        p.milestone_assertions(self.m.milestone)
                            .first()
                            .map(|a| a.id.clone())
                    })
                    .unwrap_or_else(|| "A1".into());
                let n = self.next_id;
                self.next_id += 1;
                let result = match variant % 4 {
                    0 | 1 => amend(vec![], vec![]),
                    2 => amend(vec![feature(&format!("X{n}"), &[claim.as_str()])], vec![]),
                    _ => amend(
                        vec![feature(&format!("X{n}"), &[&format!("B{n}")])],
                        vec![assertion(&format!("B{n}"))],
                    ),
                };
                (result, None)
            }
            Task::Boundary { .. } => {
                let Some(p) = &plan else {
                    return (
                        JobResult::Incomplete {
                            reason: "no plan".into(),
                        },
                        None,
                    );
                };
                let first = self.m.milestone.min(p.milestones.len());
                let rest: Vec<Milestone> = p.milestones[first..].to_vec();
                let merged_claims: BTreeSet<&str> = p.milestones[..first]
                    .iter()
                    .flat_map(|m| &m.features)
                    .flat_map(|f| f.assertions.iter().map(String::as_str))
                    .collect();
                let n = self.next_id;
                self.next_id += 1;
                let new_id = format!("B{n}");
                let result = match variant % 6 {
                    // Nothing changes.
                    0 | 1 => revision(None, None),
                    // A feature and an assertion added: applies at once.
                    2 if !rest.is_empty() => {
                        let mut rest = rest.clone();
                        rest[0]
                            .features
                            .push(feature(&format!("X{n}"), &[new_id.as_str()]));
                        let mut contract = p.assertions.clone();
                        contract.push(assertion(&new_id));
                        revision(Some(rest), Some(contract))
                    }
                    // An assertion only the rest claims is dropped for a new
                    // one: it needs the maintainer's approval.
                    3 => {
                        let dropped = rest
                            .iter()
                            .flat_map(|m| &m.features)
                            .flat_map(|f| &f.assertions)
                            .find(|a| !merged_claims.contains(a.as_str()))
                            .cloned();
                        match dropped {
                            Some(dropped) => {
                                let mut rest = rest.clone();
                                for f in rest.iter_mut().flat_map(|m| &mut m.features) {
                                    for a in &mut f.assertions {
                                        if *a == dropped {
                                            *a = new_id.clone();
                                        }
                                    }
                                    f.assertions.dedup();
                                }
                                let mut contract: Vec<Assertion> = p
                                    .assertions
                                    .iter()
                                    .filter(|a| a.id != dropped)
                                    .cloned()
                                    .collect();
                                contract.push(assertion(&new_id));
                                revision(Some(rest), Some(contract))
                            }
                            None => revision(None, None),
                        }
                    }
                    // An approved assertion reworded: needs approval too.
                    4 => {
                        let mut contract = p.assertions.clone();
                        if let Some(a) = contract.last_mut() {
                            a.text = format!("{} (roughly)", a.text);
                        }
                        revision(None, Some(contract))
                    }
                    // Breaks coverage (an assertion no feature claims), or drops
                    // every milestone left: refused.
                    _ => {
                        if variant.is_multiple_of(2) {
                            revision(Some(Vec::new()), None)
                        } else {
                            let mut contract = p.assertions.clone();
                            contract.push(assertion(&new_id));
                            revision(None, Some(contract))
                        }
                    }
                };
                (result, None)
            }
            Task::Validate { validator, .. } => {
                let pass = variant % 4 != 3;
                let result = match &plan {
                    Some(p) => report(p, self.m.milestone, *validator, pass),
                    None => JobResult::Incomplete {
                        reason: "no plan".into(),
                    },
                };
                (result, pass.then_some(*validator))
            }
        }
    }

    /// The event `op` stands for in the current state; `None`: nothing to do.
    /// The second value is the validator whose passing report this event carries.
    /// The repository's `ci` check run as GitHub shows it: a new run each
    /// time (a re-run has a higher id), concluded or not.
    fn ci_check(&mut self, sha: &str, passed: Option<bool>) -> ExternalCheck {
        self.next_ci_run += 1;
        ExternalCheck {
            name: "ci".into(),
            conclusion: passed.map(|p| if p { "success" } else { "failure" }.to_owned()),
            url: Some(format!(
                "https://github.com/acme/widgets/actions/runs/1/job/{sha}"
            )),
            check_run_id: Some(self.next_ci_run),
            app: Some("github-actions".into()),
            app_id: Some(15368),
        }
    }

    fn event_for(&mut self, op: &Op) -> (Option<Event>, Option<Validator>) {
        let current = self.m.job.clone();
        match op {
            Op::Finish { variant, cost } => {
                let Some(job) = current else {
                    return (self.outbox.pop_front(), None);
                };
                let (result, passes) = self.valid_output(&job, *variant);
                let run_id = job.run_id.unwrap_or_else(|| self.fresh_run());
                // A job keeps to its spending limit: one that would pass it
                // stops before the call that could (it fails its run and says
                // why in its output).
                let over = job
                    .spend_limit_micros
                    .filter(|limit| u64::from(*cost) > *limit);
                let (result, passes, cost, conclusion) = match over {
                    Some(limit) => (
                        JobResult::Incomplete {
                            reason: "spending limit reached".into(),
                        },
                        None,
                        limit.saturating_sub(ONE_CALL / 2),
                        RunConclusion::Failure,
                    ),
                    None => (result, passes, u64::from(*cost), RunConclusion::Success),
                };
                let event = Event::JobFinished {
                    ledger: None,
                    key: job.key.clone(),
                    run_id: Some(run_id),
                    conclusion,
                    output: Some(JobOutput {
                        job: job.key.clone(),
                        result,
                        usage: JobUsage {
                            input_tokens: 5000,
                            output_tokens: 500,
                            cost_micros: cost,
                            ..JobUsage::default()
                        },
                        budget_stop: over.is_some(),
                    }),
                };
                (Some(event), passes)
            }
            Op::Fail { how } => {
                let Some(job) = current else {
                    return (self.outbox.pop_front(), None);
                };
                let run_id = job.run_id.unwrap_or_else(|| self.fresh_run());
                let with = |result: JobResult, key: &str| JobOutput {
                    job: key.to_owned(),
                    result,
                    usage: JobUsage {
                        cost_micros: 10_000,
                        ..JobUsage::default()
                    },
                    budget_stop: false,
                };
                let (run_id, conclusion, output) = match how % 8 {
                    0 => (Some(run_id), RunConclusion::Failure, None),
                    1 => (Some(run_id), RunConclusion::Cancelled, None),
                    2 => (Some(run_id), RunConclusion::TimedOut, None),
                    3 => (None, RunConclusion::Lost, None),
                    4 => (Some(run_id), RunConclusion::Success, None),
                    5 => (
                        Some(run_id),
                        RunConclusion::Success,
                        Some(with(questions(&["?"]), "someone-else.1")),
                    ),
                    6 => (
                        Some(run_id),
                        RunConclusion::Success,
                        Some(with(
                            JobResult::Incomplete {
                                reason: "turn limit".into(),
                            },
                            &job.key,
                        )),
                    ),
                    _ => {
                        // A result of the wrong shape for the task.
                        let wrong = match job.task {
                            Task::Feature { .. } => questions(&["?"]),
                            _ => worker(clean_handoff("F1")),
                        };
                        (
                            Some(run_id),
                            RunConclusion::Success,
                            Some(with(wrong, &job.key)),
                        )
                    }
                };
                (
                    Some(Event::JobFinished {
                        ledger: None,
                        key: job.key,
                        run_id,
                        conclusion,
                        output,
                    }),
                    None,
                )
            }
            Op::Started { reuse } => {
                let run_id = if *reuse && !self.consumed_runs.is_empty() {
                    self.consumed_runs[self.consumed_runs.len() - 1]
                } else {
                    self.fresh_run()
                };
                let key = current.map_or_else(|| "scope-1.1".to_owned(), |j| j.key);
                (
                    Some(Event::JobStarted {
                        key,
                        run_id,
                        url: None,
                    }),
                    None,
                )
            }
            Op::Stale { pick } => {
                if self.finished.is_empty() {
                    return (None, None);
                }
                let key = self.finished[*pick as usize % self.finished.len()].clone();
                let run_id = self.fresh_run();
                let event = Event::JobFinished {
                    ledger: None,
                    key: key.clone(),
                    run_id: Some(run_id),
                    conclusion: RunConclusion::Success,
                    output: Some(JobOutput {
                        job: key,
                        result: worker(clean_handoff("F1")),
                        usage: JobUsage::default(),
                        budget_stop: false,
                    }),
                };
                (Some(event), None)
            }
            Op::Duplicate { current_key, pick } => {
                if self.consumed_runs.is_empty() {
                    return (None, None);
                }
                let run_id = self.consumed_runs[*pick as usize % self.consumed_runs.len()];
                let key = match (*current_key, current) {
                    (true, Some(job)) => job.key,
                    _ => self.finished[*pick as usize % self.finished.len()].clone(),
                };
                let event = Event::JobFinished {
                    ledger: None,
                    key: key.clone(),
                    run_id: Some(run_id),
                    conclusion: RunConclusion::Success,
                    output: Some(JobOutput {
                        job: key,
                        result: questions(&["again?"]),
                        usage: JobUsage::default(),
                        budget_stop: false,
                    }),
                };
                (Some(event), None)
            }
            Op::Review {
                actor,
                approve,
                wrong_pr,
            } => {
                let pr = match (wrong_pr, self.m.plan_pr) {
                    (false, Some(pr)) => pr,
                    _ => 9999,
                };
                let state = if *approve {
                    ReviewState::Approved
                } else {
                    ReviewState::ChangesRequested
                };
                let event = Event::Review {
                    pr,
                    actor: actor_of(*actor),
                    state,
                };
                (Some(event), None)
            }
            Op::Comment { actor, is_author } => {
                let actor = match (*is_author, actor_of(*actor)) {
                    (true, a) if !a.is_bot => author(),
                    (_, a) => a,
                };
                let event = Event::Comment {
                    actor,
                    is_author: *is_author,
                };
                (Some(event), None)
            }
            Op::Command {
                actor,
                cmd,
                raise_budget,
            } => {
                let mut settings = self.m.settings;
                settings.max_attempts = self.max_attempts;
                if *raise_budget {
                    settings.budget_micros = settings.budget_micros.map(|b| b + 3_000_000);
                }
                let event = Event::Command {
                    actor: actor_of(*actor),
                    command: command_of(*cmd),
                    settings,
                };
                (Some(event), None)
            }
            Op::Merge { actor, good_sha } => {
                let index = self.m.milestone;
                let Some(&pr) = self.m.milestone_prs.get(&index) else {
                    return (None, None);
                };
                if self.merged_prs.contains(&pr) || self.prs.get(&index) != Some(&pr) {
                    return (None, None);
                }
                let latest = self
                    .round_sha
                    .range((index, 0)..=(index, u32::MAX))
                    .next_back()
                    .map(|(_, sha)| sha.clone());
                let head_sha = match (good_sha, latest) {
                    (true, Some(sha)) => sha,
                    _ => {
                        self.next_sha += 1;
                        format!("other{}", self.next_sha)
                    }
                };
                let event = Event::PrMerged {
                    pr,
                    actor: actor_of(*actor),
                    head_sha,
                };
                (Some(event), None)
            }
            Op::Deliver => (self.outbox.pop_front(), None),
            Op::Advance { variant } => {
                let next = if self.m.paused.is_some() {
                    Op::Command {
                        actor: 0,
                        cmd: 2,
                        raise_budget: true,
                    }
                } else if !self.outbox.is_empty() {
                    Op::Deliver
                } else {
                    match self.m.phase {
                        Phase::AwaitingAnswers => Op::Comment {
                            actor: 1,
                            is_author: true,
                        },
                        Phase::PlanReview | Phase::RevisionReview if self.m.job.is_none() => {
                            Op::Review {
                                actor: 0,
                                approve: true,
                                wrong_pr: false,
                            }
                        }
                        Phase::AwaitingMerge if self.m.job.is_none() => Op::Merge {
                            actor: 0,
                            good_sha: true,
                        },
                        Phase::Validating
                            if self.m.job.is_none()
                                && self.m.validation.ci_waiting_since.is_some() =>
                        {
                            Op::Ci {
                                pass: *variant % 3 != 0,
                                good_sha: true,
                                running: false,
                            }
                        }
                        _ => Op::Finish {
                            variant: *variant,
                            cost: 100_000,
                        },
                    }
                };
                self.event_for(&next)
            }
            Op::Ci {
                pass,
                good_sha,
                running,
            } => {
                let sha = match (*good_sha, self.m.validation.sha.clone()) {
                    (true, Some(sha)) => sha,
                    _ => "0000000old".to_owned(),
                };
                let result = (!*running).then_some(*pass);
                if let Some(passed) = result {
                    self.ci.insert(sha.clone(), passed);
                }
                let check = self.ci_check(&sha, result);
                (
                    Some(Event::ExternalChecks {
                        sha,
                        checks: vec![check],
                    }),
                    None,
                )
            }
            Op::Synchronize { new_head } => {
                let Some(&pr) = self.m.milestone_prs.get(&self.m.milestone) else {
                    return (None, None);
                };
                let sha = match (*new_head, self.m.validation.sha.clone()) {
                    (false, Some(sha)) => sha,
                    _ => {
                        self.next_sha += 1;
                        format!("moved{}", self.next_sha)
                    }
                };
                (Some(Event::HeadMoved { pr, sha }), None)
            }
            Op::Rerun {
                actor,
                which,
                good_sha,
            } => {
                let sha = match (*good_sha, self.m.validation.sha.clone()) {
                    (true, Some(sha)) => sha,
                    _ => "0000000old".to_owned(),
                };
                let validators = match *which % 3 {
                    0 => vec![Validator::Scrutiny],
                    1 => vec![Validator::UserTesting],
                    _ => Validator::ALL.to_vec(),
                };
                (
                    Some(Event::RerunRequested {
                        sha,
                        validators,
                        actor: actor_of(*actor),
                    }),
                    None,
                )
            }
            Op::MergeGroup { good_sha } => {
                let Some(&pr) = self.m.milestone_prs.get(&self.m.milestone) else {
                    return (None, None);
                };
                let pr_head_sha = match (*good_sha, self.m.validated_sha.clone()) {
                    (true, Some(sha)) => sha,
                    _ => "0000000old".to_owned(),
                };
                self.next_sha += 1;
                (
                    Some(Event::MergeGroupRequested {
                        pr,
                        pr_head_sha,
                        group_sha: format!("group{}", self.next_sha),
                    }),
                    None,
                )
            }
            Op::EffectFailed => (
                Some(Event::EffectFailed {
                    what: "create a branch".into(),
                    error: "403 Resource not accessible by integration".into(),
                }),
                None,
            ),
        }
    }

    /// The server performs effects; results come back later through `Deliver`.
    fn perform(&mut self, effects: &[Effect]) {
        for effect in effects {
            match effect {
                Effect::OpenPlanPr { .. } => {
                    self.next_number += 1;
                    self.outbox.push_back(Event::PlanPrOpened {
                        number: self.next_number,
                    });
                }
                Effect::EnsureMilestonePr { index, .. } => {
                    let open = self
                        .prs
                        .get(index)
                        .is_some_and(|pr| !self.merged_prs.contains(pr));
                    if !open {
                        self.next_number += 1;
                        self.prs.insert(*index, self.next_number);
                        self.outbox.push_back(Event::MilestonePrOpened {
                            index: *index,
                            number: self.next_number,
                        });
                    }
                }
                Effect::StartValidation { index, round, .. } => {
                    self.next_sha += 1;
                    let sha = format!("ready{}", self.next_sha);
                    self.round_sha.insert((*index, *round), sha.clone());
                    self.next_check += 2;
                    let checks = checks(self.next_check);
                    for id in checks.values() {
                        self.check_runs.insert(*id, None);
                    }
                    // Every other round, main requires the repository's `ci`.
                    let required = if self.next_sha.is_multiple_of(2) {
                        vec![RequiredCheck::named("ci")]
                    } else {
                        Vec::new()
                    };
                    self.outbox.push_back(Event::ValidationStarted {
                        index: *index,
                        round: *round,
                        sha,
                        checks,
                        required,
                    });
                }
                Effect::PollChecks { sha } => {
                    let check = self.ci_check(sha, self.ci.get(sha).copied());
                    self.outbox.push_back(Event::ExternalChecks {
                        sha: sha.clone(),
                        checks: vec![check],
                    });
                }
                Effect::OpenCheck {
                    index,
                    round,
                    validator,
                    ..
                } => {
                    self.next_check += 2;
                    self.check_runs.insert(self.next_check, None);
                    self.outbox.push_back(Event::CheckOpened {
                        index: *index,
                        round: *round,
                        validator: *validator,
                        check_run_id: self.next_check,
                    });
                }
                Effect::CompleteCheck {
                    check_run_id,
                    conclusion,
                    ..
                } => {
                    // Completed once, and only a check run that exists.
                    assert_eq!(
                        self.check_runs.insert(*check_run_id, Some(*conclusion)),
                        Some(None),
                        "check run {check_run_id} completed twice or never opened"
                    );
                }
                _ => {}
            }
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let (event, passes) = self.event_for(op);
        let Some(event) = event else {
            return Ok(());
        };
        let before = self.m.clone();
        self.now += 60;
        let effects = self.m.apply(event.clone(), self.now);
        // The model learns what people did first: a resume may accept a merge.
        self.observe(&before, &event, &effects, passes);
        self.check(&before, &event, &effects)?;
        self.perform(&effects);
        self.check_runs_end()?;
        Ok(())
    }

    /// No check run stays open unless a validator job of its round runs, or
    /// the mission has not heard of it yet (its effect's result is on the way).
    fn check_runs_end(&self) -> Result<(), TestCaseError> {
        let m = &self.m;
        let open = m.validation.open_checks();
        if !open.is_empty() {
            let running = matches!(&m.job, Some(Job { task: Task::Validate { round, .. }, .. })
                if *round == m.validation.round);
            prop_assert!(
                running && m.phase == Phase::Validating,
                "check runs {:?} open with no validator job running ({:?}, job {:?})",
                open,
                m.phase,
                m.job.as_ref().map(|j| &j.key)
            );
        }
        let on_the_way: BTreeSet<u64> = self
            .outbox
            .iter()
            .flat_map(|e| match e {
                Event::ValidationStarted { checks, .. } => checks.values().copied().collect(),
                Event::CheckOpened { check_run_id, .. } => vec![*check_run_id],
                _ => Vec::new(),
            })
            .collect();
        for (id, conclusion) in &self.check_runs {
            if conclusion.is_none() {
                prop_assert!(
                    on_the_way.contains(id) || open.iter().any(|(_, o)| o == id),
                    "check run {} is open on GitHub, and the mission does not follow it",
                    id
                );
            }
        }
        Ok(())
    }

    /// The rules, after every step.
    fn check(
        &mut self,
        before: &Mission,
        event: &Event,
        effects: &[Effect],
    ) -> Result<(), TestCaseError> {
        let after = &self.m;
        let jobs = dispatches(effects);
        prop_assert!(jobs.len() <= 1, "two dispatches in one step: {:?}", effects);
        // Coverage holds after any revision; an approved assertion is never
        // removed or changed, and the approved contract changes only when a
        // person with write access approves.
        if let Some(plan) = &after.plan {
            prop_assert!(plan.check().is_empty(), "{:?}", plan.check());
            for a in &after.approved {
                prop_assert_eq!(
                    plan.assertion(&a.id),
                    Some(a),
                    "approved assertion {} removed or changed on {:?}",
                    &a.id,
                    event
                );
            }
        }
        if after.approved != before.approved {
            prop_assert!(
                matches!(event, Event::Review { state: ReviewState::Approved, actor, .. }
                    if actor.can_write && !actor.is_bot),
                "the approved contract changed on {:?}",
                event
            );
        }
        // Ready only once the repository's required checks passed on the
        // ready commit, as its CI last reported.
        if after.phase == Phase::AwaitingMerge
            && before.phase != Phase::AwaitingMerge
            && !after.validation.required.is_empty()
        {
            let sha = after.validation.sha.clone().unwrap_or_default();
            prop_assert_eq!(
                self.ci.get(&sha),
                Some(&true),
                "ready on {} without the repository's CI passing",
                sha
            );
        }
        let finished_current = matches!(event, Event::JobFinished { key, run_id, .. }
            if before.job.as_ref().is_some_and(|j| &j.key == key)
                && !run_id.is_some_and(|r| before.consumed_runs.contains(&r)));

        if let Some(job) = jobs.first() {
            // One job at a time, under a fresh key.
            prop_assert!(
                before.job.is_none() || finished_current,
                "dispatched {} while {:?} runs",
                job.key,
                before.job.as_ref().map(|j| &j.key)
            );
            prop_assert_eq!(after.job.as_ref(), Some(*job));
            prop_assert!(self.keys.insert(job.key.clone()), "key {} reused", job.key);
            // Never while paused or over.
            prop_assert!(
                after.paused.is_none(),
                "dispatched {} while paused",
                job.key
            );
            prop_assert!(!after.is_terminal());
            // Never over budget.
            if let Some(budget) = after.settings.budget_micros {
                prop_assert!(
                    after.usage.cost_micros < budget,
                    "dispatched {} with {} of {} spent",
                    job.key,
                    after.usage.cost_micros,
                    budget
                );
            }
            if let Task::Feature { id } = &job.task {
                // Triage first.
                prop_assert!(
                    after.triage.is_none(),
                    "feature {} before triage of {:?}",
                    id,
                    after.triage
                );
                prop_assert_eq!(after.phase, Phase::Building);
                // Milestone k+1 only after milestone k was merged properly (or accepted).
                let plan = after.plan.as_ref().expect("a feature needs a plan");
                let (index, _) = plan.feature(id).expect("the feature is in the plan");
                prop_assert_eq!(
                    index,
                    after.milestone,
                    "feature {} is not of the current milestone",
                    id
                );
                for earlier in 0..index {
                    prop_assert!(
                        self.unlocked(earlier),
                        "feature {} of milestone {} dispatched, but milestone {} was neither merged validated nor accepted",
                        id,
                        index,
                        earlier
                    );
                }
            }
            if matches!(job.task, Task::Scope { .. } | Task::Revise { .. }) {
                prop_assert!(
                    matches!(after.phase, Phase::Scoping | Phase::PlanReview),
                    "{} dispatched in {:?}",
                    job.key,
                    after.phase
                );
            }
            if let Task::Validate { round, .. } = &job.task {
                prop_assert_eq!(after.phase, Phase::Validating);
                prop_assert!(after.validation.sha.is_some());
                prop_assert_eq!(*round, after.validation.round);
            }
        } else if let Some(job) = &after.job {
            prop_assert_eq!(
                before.job.as_ref().map(|j| &j.key),
                Some(&job.key),
                "a job appeared without a dispatch"
            );
        }

        // Spending only grows, and never passes the budget by more than one
        // model call.
        prop_assert!(after.usage.cost_micros >= before.usage.cost_micros);
        if let Some(budget) = after.settings.budget_micros {
            prop_assert!(
                after.usage.cost_micros <= budget + ONE_CALL,
                "spent {} of a budget of {}",
                after.usage.cost_micros,
                budget
            );
        }
        // A job stopped by its spending limit pauses the mission (another
        // try would stop the same way).
        if finished_current
            && !before.is_terminal()
            && let Event::JobFinished {
                output: Some(out), ..
            } = event
            && out.budget_stop
        {
            prop_assert!(after.paused.is_some(), "a budget stop did not pause");
            prop_assert!(jobs.is_empty());
        }

        // Attempts are bounded; hitting the bound pauses.
        for (slug, n) in &after.failures {
            prop_assert!(
                *n <= self.max_attempts,
                "{} failed {} times, more than {}",
                slug,
                n,
                self.max_attempts
            );
        }
        if finished_current && let Some(job) = &before.job {
            let slug = job.task.slug();
            let was = before.failures.get(&slug).copied().unwrap_or(0);
            let now = after.failures.get(&slug).copied().unwrap_or(0);
            if now > was && now >= self.max_attempts {
                // Except a re-plan: the next milestone goes on with the plan
                // as it is, unchanged.
                if let Task::Boundary { .. } = job.task {
                    prop_assert!(
                        after.phase == Phase::Building && after.plan == before.plan,
                        "a re-plan that kept failing left {:?}",
                        after.phase
                    );
                } else {
                    prop_assert!(
                        after.paused.is_some(),
                        "{} failed {} times without a pause",
                        slug,
                        now
                    );
                }
            }
        }

        // Only sound plans are accepted.
        if let Some(plan) = &after.plan {
            prop_assert!(
                plan.check().is_empty(),
                "accepted plan breaks the rules: {:?}",
                plan.check()
            );
        }

        // Untrusted actors change nothing that matters.
        let untrusted = match event {
            Event::Comment { actor, is_author } => actor.is_bot || !(actor.can_write || *is_author),
            Event::Command { actor, .. } | Event::Review { actor, .. } => !actor.is_trusted(),
            _ => false,
        };
        if untrusted {
            prop_assert!(jobs.is_empty());
            // Only the list of people already refused may grow.
            let mut unchanged = after.clone();
            unchanged.refused = before.refused.clone();
            prop_assert_eq!(
                &unchanged,
                before,
                "an untrusted actor changed the mission: {:?}",
                event
            );
            prop_assert!(after.refused.is_superset(&before.refused));
            // A person is refused with a comment once per mission, then ignored.
            if let Event::Command { actor, .. } | Event::Review { actor, .. } = event
                && !effects.is_empty()
            {
                prop_assert!(
                    effects.len() == 1 && !comments(effects).is_empty(),
                    "more than a refusal: {:?}",
                    effects
                );
                prop_assert!(
                    self.told.insert(actor.login.clone()),
                    "{} was refused with a comment twice: {:?}",
                    actor.login,
                    effects
                );
            }
        }
        if let Event::PrMerged { actor, .. } = event
            && actor.is_bot
        {
            // A bot's merge is a fact the mission must notice (it pauses), but it
            // never advances the mission.
            prop_assert!(jobs.is_empty());
            prop_assert_eq!(after.phase, before.phase);
            prop_assert_eq!(after.milestone, before.milestone);
        }

        // A merge group gets a verdict and changes nothing; it passes only
        // at the head both validators passed, while that is awaiting merge.
        if let Event::MergeGroupRequested {
            pr, pr_head_sha, ..
        } = event
        {
            prop_assert_eq!(after, before, "a merge group changed the mission");
            prop_assert!(
                matches!(effects, [Effect::ReportGroupChecks { .. }]),
                "{:?}",
                effects
            );
            let passed = matches!(
                effects,
                [Effect::ReportGroupChecks {
                    conclusion: CheckConclusion::Success,
                    ..
                }]
            );
            if passed {
                prop_assert_eq!(before.phase, Phase::AwaitingMerge);
                prop_assert_eq!(before.validated_sha.as_deref(), Some(pr_head_sha.as_str()));
                prop_assert_eq!(before.milestone_prs.get(&before.milestone), Some(pr));
                prop_assert!(!before.merged_unvalidated);
            }
        }

        // Late or duplicate results are ignored.
        if matches!(event, Event::JobFinished { .. }) && !finished_current {
            prop_assert!(effects.is_empty());
            prop_assert_eq!(
                after,
                before,
                "a stale or duplicate result changed the mission"
            );
        }
        if let Event::JobStarted { run_id, .. } = event
            && before.consumed_runs.contains(run_id)
        {
            prop_assert_eq!(after, before);
        }

        // An ended mission stays ended and only answers status (and
        // completes check runs that were opened as it ended).
        if before.is_terminal() {
            let mut unchanged = after.clone();
            unchanged.checks_seen = before.checks_seen.clone();
            prop_assert_eq!(&unchanged, before);
            let cancels = effects
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        Effect::CompleteCheck {
                            conclusion: CheckConclusion::Cancelled,
                            ..
                        }
                    )
                })
                .count();
            let only_status = effects.len() - cancels <= 1
                && effects.iter().all(|e| {
                    matches!(
                        e,
                        Effect::Comment { .. }
                            | Effect::CompleteCheck { .. }
                            | Effect::ReportGroupChecks { .. }
                    )
                });
            prop_assert!(only_status, "an ended mission did something: {:?}", effects);
        }
        if after.phase == Phase::Done {
            let count = after.plan.as_ref().map_or(0, |p| p.milestones.len());
            for index in 0..count {
                prop_assert!(
                    self.unlocked(index),
                    "done without milestone {} merged",
                    index
                );
            }
        }

        // Stored as JSON.
        prop_assert!(
            roundtrips(after).map_err(TestCaseError::fail)?,
            "serde roundtrip changed the mission"
        );
        for effect in effects {
            let json = serde_json::to_string(effect).unwrap();
            prop_assert_eq!(&serde_json::from_str::<Effect>(&json).unwrap(), effect);
        }
        let json = serde_json::to_string(event).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Event>(&json).unwrap(), event);
        Ok(())
    }

    /// Updates the model of what happened outside the mission.
    fn observe(
        &mut self,
        before: &Mission,
        event: &Event,
        effects: &[Effect],
        passes: Option<Validator>,
    ) {
        let after = &self.m;
        if before.phase == Phase::Replanning
            && after.phase == Phase::Building
            && after.plan != before.plan
        {
            self.covered.revised += 1;
        }
        if before.phase == Phase::RevisionReview && after.approved != before.approved {
            self.covered.revision_approved += 1;
        }
        match event {
            Event::JobFinished { key, run_id, .. } => {
                let consumed = !before.is_terminal()
                    && before.job.as_ref().is_some_and(|j| &j.key == key)
                    && !run_id.is_some_and(|r| before.consumed_runs.contains(&r));
                if consumed {
                    self.finished.push(key.clone());
                    if let Some(r) = run_id {
                        self.consumed_runs.push(*r);
                    }
                    if let (
                        Some(validator),
                        Some(Task::Validate {
                            milestone, round, ..
                        }),
                    ) = (passes, before.job.as_ref().map(|j| &j.task))
                        && let Some(index) = before
                            .plan
                            .as_ref()
                            .and_then(|p| p.milestones.iter().position(|m| &m.id == milestone))
                    {
                        self.passed
                            .entry((index, *round))
                            .or_default()
                            .insert(validator);
                    }
                }
            }
            Event::PrMerged {
                pr,
                actor,
                head_sha,
            } => {
                self.merged_prs.insert(*pr);
                if !before.is_terminal()
                    && let Some((&index, _)) = self.prs.iter().find(|(_, n)| *n == pr)
                {
                    self.merged.insert(index);
                    let validated = self.round_sha.iter().any(|(&(i, round), sha)| {
                        i == index
                            && sha == head_sha
                            && self.passed.get(&(i, round)).is_some_and(|v| v.len() == 2)
                    });
                    if validated && !actor.is_bot {
                        self.validated_merges.insert(index);
                    }
                }
            }
            Event::Command {
                actor,
                command: Ok(Command::Resume | Command::Retry),
                ..
            } if actor.is_trusted()
                && !before.is_terminal()
                && self.merged.contains(&before.milestone) =>
            {
                self.accepted.insert(before.milestone);
                if after.milestone != before.milestone || after.phase == Phase::Done {
                    self.covered.accepted_unvalidated += 1;
                }
            }
            _ => {}
        }
        // Coverage.
        for effect in effects {
            match effect {
                Effect::CompleteCheck {
                    conclusion: CheckConclusion::Cancelled,
                    ..
                } => self.covered.checks_cancelled += 1,
                Effect::CompleteCheck {
                    conclusion: CheckConclusion::TimedOut,
                    ..
                } => self.covered.checks_timed_out += 1,
                Effect::OpenCheck { .. } => self.covered.checks_reopened += 1,
                _ => {}
            }
        }
        for job in dispatches(effects) {
            match job.task {
                Task::Triage { .. } => self.covered.triage += 1,
                Task::FollowUp { .. } => self.covered.follow_up += 1,
                Task::Replan { .. } => self.covered.replan += 1,
                _ => {}
            }
        }
        if after.paused.is_some() && before.paused.is_none() {
            let reason = after.paused.as_deref().unwrap_or("");
            if reason.contains("budget") {
                self.covered.budget_pause += 1;
            } else if reason.contains("failed")
                && (reason.contains("times") || reason.contains("once"))
            {
                self.covered.failure_pause += 1;
            }
        }
        if after.phase == Phase::AwaitingMerge && before.phase != Phase::AwaitingMerge {
            self.covered.awaiting_merge += 1;
            if !after.validation.required.is_empty() {
                self.covered.ci_ready += 1;
            }
        }
        if before.phase == Phase::Validating
            && !before.validation.required.is_empty()
            && matches!(event, Event::ExternalChecks { .. })
            && before
                .validation
                .sha
                .as_ref()
                .and_then(|sha| self.ci.get(sha))
                == Some(&false)
            && dispatches(effects)
                .iter()
                .any(|j| matches!(j.task, Task::FollowUp { .. }))
        {
            self.covered.ci_failed += 1;
        }
        if after.milestone >= 1 && !self.reached_second {
            self.reached_second = true;
            self.covered.second_milestone += 1;
        }
        if after.phase == Phase::Done && before.phase != Phase::Done {
            self.covered.done += 1;
        }
    }
}

fn run_case(settings: Settings, eager: bool, ops: &[Op]) -> Result<Coverage, TestCaseError> {
    let mut world = World::new(settings)?;
    for op in ops {
        world.step(op)?;
        while eager && !world.outbox.is_empty() {
            world.step(&Op::Deliver)?;
        }
    }
    Ok(world.covered)
}

proptest! {
    #![proptest_config(Config { cases: 256, ..Config::default() })]

    #[test]
    fn random_event_sequences_keep_the_rules((settings, eager, ops) in case_strategy()) {
        run_case(settings, eager, &ops)?;
    }
}

/// The random walks must reach the interesting parts of the lifecycle, or the
/// property above checks little.
#[test]
fn random_walks_cover_the_lifecycle() {
    let mut runner = TestRunner::deterministic();
    let strategy = case_strategy();
    let mut total = Coverage::default();
    for _ in 0..256 {
        let (settings, eager, ops) = strategy.new_tree(&mut runner).unwrap().current();
        let c = run_case(settings, eager, &ops)
            .unwrap_or_else(|e| panic!("{e}\n{settings:?} eager: {eager}\n{ops:#?}"));
        total.done += c.done;
        total.second_milestone += c.second_milestone;
        total.awaiting_merge += c.awaiting_merge;
        total.triage += c.triage;
        total.follow_up += c.follow_up;
        total.replan += c.replan;
        total.failure_pause += c.failure_pause;
        total.budget_pause += c.budget_pause;
        total.accepted_unvalidated += c.accepted_unvalidated;
        total.checks_cancelled += c.checks_cancelled;
        total.checks_timed_out += c.checks_timed_out;
        total.checks_reopened += c.checks_reopened;
        total.revised += c.revised;
        total.revision_approved += c.revision_approved;
        total.ci_failed += c.ci_failed;
        total.ci_ready += c.ci_ready;
    }
    eprintln!("{total:?}");
    assert!(total.awaiting_merge > 0, "{total:?}");
    assert!(total.second_milestone > 0, "{total:?}");
    assert!(total.done > 0, "{total:?}");
    assert!(total.triage > 0, "{total:?}");
    assert!(total.follow_up > 0, "{total:?}");
    assert!(total.replan > 0, "{total:?}");
    assert!(total.failure_pause > 0, "{total:?}");
    assert!(total.budget_pause > 0, "{total:?}");
    assert!(total.accepted_unvalidated > 0, "{total:?}");
    assert!(total.checks_cancelled > 0, "{total:?}");
    assert!(total.checks_timed_out > 0, "{total:?}");
    assert!(total.checks_reopened > 0, "{total:?}");
    assert!(total.revised > 0, "{total:?}");
    assert!(total.revision_approved > 0, "{total:?}");
    assert!(total.ci_failed > 0, "{total:?}");
    assert!(total.ci_ready > 0, "{total:?}");
}

#[test]
fn a_resume_after_the_validation_round_bound_validates_once_more() {
    let plan = sample_plan();
    let (mut s, mut scrutiny) = Sim::validating();
    s.m.settings.max_validation_rounds = 1;
    let mut sha = 0u64;
    // Round 1 fails; the follow-up adds nothing, so the bound is hit.
    let fx = s.finish(&scrutiny, report(&plan, 0, Validator::Scrutiny, false));
    let testing = dispatched(&fx);
    let fx = s.finish(&testing, report(&plan, 0, Validator::UserTesting, false));
    let follow_up = dispatched(&fx);
    let fx = s.finish(&follow_up, amend(vec![], vec![]));
    no_dispatch(&fx);
    assert!(mentions(&fx, "failed validation 1 times"), "{fx:?}");
    assert!(s.m.paused.is_some());
    // A person pushes a fix and resumes: a new round validates the new head.
    let fx = s.command(writer(), Command::Resume);
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::StartValidation { round: 2, .. })),
        "{fx:?}"
    );
    sha += 1;
    let fx = s.apply(Event::ValidationStarted {
        index: 0,
        round: 2,
        sha: format!("fix{sha}"),
        checks: checks(950),
        required: Vec::new(),
    });
    scrutiny = dispatched(&fx);
    assert_eq!(scrutiny.key, "M1-scrutiny-2.1");
    let fx = s.finish(&scrutiny, report(&plan, 0, Validator::Scrutiny, true));
    let testing = dispatched(&fx);
    s.finish(&testing, report(&plan, 0, Validator::UserTesting, true));
    assert_eq!(s.m.phase, Phase::AwaitingMerge);
}

#[test]
fn a_refused_dispatch_puts_the_step_back_for_the_resume() {
    let (mut s, f1) = Sim::building(Settings::default());
    let fx = s.apply(Event::DispatchFailed {
        key: f1.key.clone(),
        error: "404 Not Found".into(),
    });
    no_dispatch(&fx);
    assert!(
        mentions(&fx, "GitHub refused to dispatch job `feature-F1.1`"),
        "{fx:?}"
    );
    assert!(s.m.job.is_none() && s.m.paused.is_some());
    let fx = s.command(writer(), Command::Resume);
    let again = dispatched(&fx);
    assert_eq!(again.task, Task::Feature { id: "F1".into() });
    assert_eq!(again.key, "feature-F1.2");
}

#[test]
fn a_failed_ready_commit_is_made_again_after_the_resume() {
    let (mut s, f1) = Sim::building(Settings::default());
    let fx = s.finish(&f1, worker(clean_handoff("F1")));
    let f2 = dispatched(&fx);
    s.apply(Event::MilestonePrOpened {
        index: 0,
        number: 101,
    });
    let fx = s.finish(&f2, worker(clean_handoff("F2")));
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::StartValidation { round: 1, .. }))
    );
    let fx = s.apply(Event::ValidationStartFailed {
        index: 0,
        round: 1,
        error: "403 Resource not accessible by integration".into(),
    });
    assert!(mentions(&fx, "ready commit"), "{fx:?}");
    assert_eq!(s.m.phase, Phase::Building);
    let fx = s.command(writer(), Command::Resume);
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::StartValidation { round: 1, .. })),
        "{fx:?}"
    );
}

#[test]
fn an_early_merge_is_not_accepted_while_its_job_runs_and_the_report_says_so() {
    let (mut s, scrutiny) = Sim::validating();
    // Merged while scrutiny runs.
    let fx = s.apply(Event::PrMerged {
        pr: 101,
        actor: writer(),
        head_sha: "aaa".into(),
    });
    assert!(mentions(&fx, "before both check runs passed"), "{fx:?}");
    let fx = s.command(writer(), Command::Resume);
    assert!(mentions(&fx, "still running"), "{fx:?}");
    assert_eq!(s.m.milestone, 0);
    // The job ends (its verdict lands on M1); now the merge can be accepted.
    let plan = sample_plan();
    s.finish(&scrutiny, report(&plan, 0, Validator::Scrutiny, true));
    let fx = s.command(writer(), Command::Resume);
    assert!(mentions(&fx, "accepted as it is"), "{fx:?}");
    assert_eq!(s.m.milestone, 1);
    assert!(
        s.m.final_report()
            .contains("Merged without passing validation: M1")
    );
}

#[test]
fn a_jobs_spending_limit_leaves_the_other_roles_their_reserve() {
    use missions::mission::JobRole;
    use missions::mission::machine::{Reserves, spend_limit};
    let reserve = Reserves {
        orchestrator: 100_000,
        worker: 200_000,
        scrutiny: 300_000,
        user_testing: 0,
    };
    // What remains less the largest reserve of the others.
    assert_eq!(spend_limit(1_000_000, &reserve, JobRole::Worker), 700_000);
    assert_eq!(spend_limit(1_000_000, &reserve, JobRole::Scrutiny), 800_000);
    // Too little for that: the job's own reserve, never more than remains.
    assert_eq!(spend_limit(250_000, &reserve, JobRole::Worker), 200_000);
    assert_eq!(spend_limit(150_000, &reserve, JobRole::Worker), 150_000);
    assert_eq!(
        spend_limit(1_000_000, &Reserves::default(), JobRole::Worker),
        1_000_000
    );
}

#[test]
fn a_run_that_left_nothing_is_counted_at_its_roles_estimate_and_marked() {
    use missions::mission::JobRole;
    use missions::mission::machine::default_job_cost;
    let (mut s, f1) = Sim::building(Settings::default());
    // A run that left a ledger: counted as measured.
    s.runs += 1;
    let ledger = JobUsage {
        input_tokens: 30_000,
        cost_micros: 90_000,
        ..JobUsage::default()
    };
    let fx = s.apply(Event::JobFinished {
        ledger: Some(ledger),
        key: f1.key.clone(),
        run_id: Some(s.runs),
        conclusion: RunConclusion::TimedOut,
        output: None,
    });
    assert_eq!(s.m.usage.cost_micros, 90_000);
    assert_eq!(s.m.estimated_micros, 0);
    let retry = dispatched(&fx);
    // A run that left nothing at all: the mean of the measured worker runs
    // so far (the first), marked estimated.
    s.fail(&retry);
    assert_eq!(s.m.usage.cost_micros, 180_000);
    assert_eq!(s.m.estimated_micros, 90_000);
    let last = s.m.history.last().unwrap();
    assert!(
        last.estimated && last.outcome.contains("failure"),
        "{last:?}"
    );
    // With nothing measured yet, the role's default.
    let (mut s, f1) = Sim::building(Settings::default());
    s.fail(&f1);
    assert_eq!(s.m.estimated_micros, default_job_cost(JobRole::Worker));
    // A dispatch that never ran costs nothing.
    let (mut s, f1) = Sim::building(Settings::default());
    s.apply(Event::JobFinished {
        ledger: None,
        key: f1.key.clone(),
        run_id: None,
        conclusion: RunConclusion::Lost,
        output: None,
    });
    assert_eq!(s.m.usage.cost_micros, 0);
}

/// A pending (or absent) run of the repository's `test` on `sha`, then a
/// concluded one.
fn ci(sha: &str, id: u64, conclusion: Option<&str>) -> Event {
    Event::ExternalChecks {
        sha: sha.into(),
        checks: vec![ExternalCheck {
            name: "test".into(),
            conclusion: conclusion.map(str::to_owned),
            url: None,
            check_run_id: Some(id),
            app: Some("github-actions".into()),
            app_id: Some(15368),
        }],
    }
}

#[test]
fn a_required_check_that_never_concludes_pauses_the_mission_and_resume_waits_again() {
    let settings = Settings {
        ci_wait_secs: 300,
        ..Settings::default()
    };
    let (mut s, scrutiny) = Sim::validating_with(settings, vec![RequiredCheck::named("test")]);
    // The CI's run was created before the validators finished; a late
    // `created` of an older run, or news of another commit, change nothing.
    s.apply(ci("aaa", 5001, None));
    s.apply(ci("other", 5002, Some("success")));
    let plan = sample_plan();
    let fx = s.finish(&scrutiny, report(&plan, 0, Validator::Scrutiny, true));
    let testing = dispatched(&fx);
    let fx = s.finish(&testing, report(&plan, 0, Validator::UserTesting, true));
    // Both validators passed; the App asks GitHub for the checks once and waits.
    assert_eq!(fx.last(), Some(&Effect::PollChecks { sha: "aaa".into() }));
    no_dispatch(&fx);
    assert_eq!(s.m.phase, Phase::Validating);
    assert_eq!(s.m.validation.ci_pending(), ["test"]);
    // Reconciliation keeps finding it pending: within the limit, nothing.
    assert!(s.apply(ci("aaa", 5001, None)).is_empty());
    assert!(s.m.paused.is_none());
    for _ in 0..4 {
        s.apply(ci("aaa", 5001, None));
    }
    let reason = s.m.paused.clone().expect("paused past ci_wait_secs");
    assert!(
        reason.contains("`test`") && reason.contains("aaa"),
        "{reason}"
    );
    assert_eq!(s.m.phase, Phase::Validating);

    // Resumed, the round starts over on a new ready commit: its push starts
    // the workflows again, and the required names are read anew.
    let fx = s.command(writer(), Command::Resume);
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::StartValidation { round: 2, .. })),
        "{fx:?}"
    );
    assert!(s.m.paused.is_none());
    assert!(mentions(&fx, "starts the repository's workflows anew"));
    let fx = s.apply(Event::ValidationStarted {
        index: 0,
        round: 2,
        sha: "bbb".into(),
        checks: checks(910),
        required: vec![RequiredCheck::named("test")],
    });
    let scrutiny = dispatched(&fx);
    s.apply(ci("bbb", 5010, Some("success")));
    let fx = s.finish(&scrutiny, report(&plan, 0, Validator::Scrutiny, true));
    let testing = dispatched(&fx);
    let fx = s.finish(&testing, report(&plan, 0, Validator::UserTesting, true));
    assert_eq!(s.m.phase, Phase::AwaitingMerge);
    assert!(mentions(
        &fx,
        "passed both validators and the repository's required check(s) `test`"
    ));
}

#[test]
fn a_passing_status_does_not_hide_a_failed_job_and_a_required_app_is_enforced() {
    // `test` must come from GitHub Actions (branch protection's app_id).
    let (mut s, scrutiny) = Sim::validating_with(
        Settings::default(),
        vec![RequiredCheck {
            name: "test".into(),
            app_id: Some(15368),
        }],
    );
    // Another app's `test` passing stands for nothing.
    s.apply(Event::ExternalChecks {
        sha: "aaa".into(),
        checks: vec![ExternalCheck {
            name: "test".into(),
            conclusion: Some("success".into()),
            url: None,
            check_run_id: Some(4000),
            app: Some("impostor".into()),
            app_id: Some(99),
        }],
    });
    assert_eq!(s.m.validation.ci_pending(), ["test"]);
    // Actions' job fails; a commit status of the same name passing later
    // does not hide it.
    s.apply(ci("aaa", 5001, Some("failure")));
    s.apply(Event::ExternalChecks {
        sha: "aaa".into(),
        checks: vec![ExternalCheck {
            name: "test".into(),
            conclusion: Some("success".into()),
            url: Some("https://ci.example/1".into()),
            check_run_id: None,
            app: Some("status".into()),
            app_id: None,
        }],
    });
    let plan = sample_plan();
    let fx = s.finish(&scrutiny, report(&plan, 0, Validator::Scrutiny, true));
    let testing = dispatched(&fx);
    let fx = s.finish(&testing, report(&plan, 0, Validator::UserTesting, true));
    assert_ne!(s.m.phase, Phase::AwaitingMerge);
    let follow_up = dispatched(&fx);
    assert!(matches!(follow_up.task, Task::FollowUp { .. }));
    assert!(mentions(&fx, "The repository's own CI failed on aaa"));
    // The report lists every source of `test`.
    let report = fx
        .iter()
        .find_map(|e| match e {
            Effect::WriteCiReport { checks, .. } => Some(checks.clone()),
            _ => None,
        })
        .expect("a CI report");
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!(report[0].conclusion.as_deref(), Some("failure"));
}

#[test]
fn a_check_name_or_link_cannot_break_out_of_the_apps_markdown() {
    let check = ExternalCheck {
        name: "x`](https://evil) @org/team | y".into(),
        conclusion: Some("failure".into()),
        url: Some("https://ci.example/a)@org/team".into()),
        check_run_id: None,
        app: None,
        app_id: None,
    };
    // One code span (where neither a link nor a mention is rendered), no
    // link to the URL that would close its parenthesis early, and the
    // table's `|` escaped.
    let md = check.markdown();
    assert!(md.starts_with('`') && md.ends_with('`'), "{md}");
    assert_eq!(md.matches('`').count(), 2, "{md}");
    assert!(!md.contains("(https://ci.example"), "{md}");
    assert!(md.contains("\\|"), "{md}");
    let plain = ExternalCheck {
        name: "lint".into(),
        url: Some("https://ci.example/builds/7".into()),
        ..check
    };
    assert_eq!(plain.markdown(), "[`lint`](https://ci.example/builds/7)");
}

#[test]
fn the_newest_run_of_a_required_check_counts_and_a_late_created_does_not_undo_it() {
    let (mut s, scrutiny) =
        Sim::validating_with(Settings::default(), vec![RequiredCheck::named("test")]);
    // The first run failed; a re-run (a higher id) passed; the first run's
    // `created` arrives last.
    s.apply(ci("aaa", 5001, Some("failure")));
    s.apply(ci("aaa", 5003, Some("success")));
    s.apply(ci("aaa", 5001, None));
    s.apply(ci("aaa", 5003, None));
    assert!(s.m.validation.ci_pending().is_empty());
    let plan = sample_plan();
    let fx = s.finish(&scrutiny, report(&plan, 0, Validator::Scrutiny, true));
    let testing = dispatched(&fx);
    s.finish(&testing, report(&plan, 0, Validator::UserTesting, true));
    assert_eq!(s.m.phase, Phase::AwaitingMerge);
}
