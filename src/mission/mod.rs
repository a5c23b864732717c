//! The mission domain: plain data and pure functions, no I/O. The plan and its
//! validation contract (`plan.rs`), what jobs hand back (`outputs.rs`), and the
//! state machine that enforces the lifecycle's rules (`machine.rs`).

pub mod control;
pub mod forecast;
pub mod machine;
pub mod outputs;
pub mod plan;

pub use machine::{
    Actor, CheckConclusion, Command, Effect, Event, IssueSnapshot, Job, JobRole, Mission,
    PendingEdit, Phase, ReviewState, RunConclusion, Settings, Target, Task,
};
pub use outputs::{
    CommandRun, Handoff, JobOutput, JobResult, JobUsage, OrchestratorOutput, ValidationReport,
    Validator,
};
pub use plan::{Assertion, Feature, Milestone, Plan, PlanError};
