//! `missions demo`: a whole mission on one machine, no account, no network
//! (with the scripted model; `--model` runs it on real ones, `--repo` on a
//! repository of your own).

pub mod chaos;
pub mod local;
pub mod own_repo;
pub mod project;
pub mod run;
pub mod scripts;
pub mod web;

use std::path::Path;

use crate::sim::RepoSpec;
use crate::sim::sample;

/// The demo's repository.
pub const DEMO_REPO: &str = "octo-org/textstats";

/// The sample project as a simulator repository, its model scripts read from
/// `script_dir`.
pub fn repo_spec(script_dir: &Path) -> RepoSpec {
    let mut spec = RepoSpec::new(DEMO_REPO);
    for (path, content) in project::files(&script_dir.display().to_string(), sample::WORKFLOW_YAML)
    {
        spec = spec.file(&path, content.into_bytes());
    }
    spec
}

/// The argv the simulator's runner executes for a mission job: this binary's
/// `job` command with the dispatch inputs, as the workflow template's step does.
pub fn job_command(missions_binary: &Path) -> Vec<String> {
    let mut argv = vec![missions_binary.display().to_string(), "job".into()];
    for (flag, input) in [
        ("--role", "role"),
        ("--mission", "mission"),
        ("--task", "task"),
        ("--feature", "feature"),
        ("--job", "job"),
        ("--config-ref", "config_ref"),
        ("--issue-sha256", "issue_sha256"),
        ("--spend-limit-usd", "spend_limit_usd"),
        ("--server-model", "server_model"),
    ] {
        argv.push(flag.into());
        argv.push(format!("${{{{ inputs.{input} }}}}"));
    }
    argv
}

/// Where the agent's job leaves its result for the publish job, in the
/// simulator (on GitHub: an artifact uploaded by one job, downloaded by the
/// next).
const RESULT_DIR: &str = "${{ sim.artifacts }}/missions-result";

/// The mission workflow as the simulator runs it, job for job as in
/// `templates/missions.yml`: `agent` (read-only token) runs the agent and
/// leaves its result; `publish` (contents write, no agent code) checks and
/// pushes it.
pub fn workflow_jobs(missions_binary: &Path) -> Vec<crate::sim::SimJob> {
    let mut agent = job_command(missions_binary);
    agent.extend(["--result-dir".into(), RESULT_DIR.into()]);
    let mut publish = vec![missions_binary.display().to_string(), "publish".into()];
    for (flag, input) in [
        ("--role", "role"),
        ("--mission", "mission"),
        ("--feature", "feature"),
        ("--job", "job"),
        ("--config-ref", "config_ref"),
    ] {
        publish.push(flag.into());
        publish.push(format!("${{{{ inputs.{input} }}}}"));
    }
    publish.extend(["--result-dir".into(), RESULT_DIR.into()]);
    vec![
        crate::sim::SimJob {
            name: "agent".into(),
            command: agent,
            contents_write: false,
            always: false,
        },
        crate::sim::SimJob {
            name: "publish".into(),
            command: publish,
            contents_write: true,
            // As the template's `if: always()`: what the agent left (a result
            // of an incomplete run, its usage) is published whatever it exited with.
            always: true,
        },
    ]
}
