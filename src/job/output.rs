//! Where a job's results go: the files each role writes under
//! `.missions/<issue>/`, and the envelope every job writes.

use std::path::{Component, Path};

use anyhow::{Context, bail};

use crate::mission::outputs::DiscoveredIssue;
use crate::mission::plan::Feature;
use crate::mission::{Assertion, JobOutput, JobResult, Plan};

pub fn plan_path(issue: u64) -> String {
    format!(".missions/{issue}/plan.json")
}

pub fn plan_md_path(issue: u64) -> String {
    format!(".missions/{issue}/plan.md")
}

pub fn skill_path(issue: u64, name: &str) -> String {
    format!(".missions/{issue}/skills/{name}.md")
}

pub fn handoff_path(issue: u64, feature: &str) -> String {
    format!(".missions/{issue}/handoffs/{feature}.json")
}

pub fn report_path(issue: u64, milestone: &str, validator: crate::mission::Validator) -> String {
    format!(
        ".missions/{issue}/reports/{milestone}-{}.json",
        validator.as_str()
    )
}

/// The most screenshots one user-testing report carries.
pub const MAX_SCREENSHOTS: usize = 20;

/// `.missions/<n>/reports/<milestone>-user-testing/`, without the last `/`:
/// the user tester's screenshots, beside its report.
pub fn screenshots_dir(issue: u64, milestone: &str) -> String {
    format!(".missions/{issue}/reports/{milestone}-user-testing")
}

pub fn envelope_path(issue: u64, job: &str) -> String {
    format!(".missions/{issue}/jobs/{job}.json")
}

/// Pretty JSON with a final newline, as committed.
pub fn json_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("serializable");
    bytes.push(b'\n');
    bytes
}

pub fn envelope(output: &JobOutput) -> Vec<u8> {
    json_bytes(output)
}

/// The files of a whole plan: `plan.json`, `plan.md` and one file per skill.
pub fn plan_files(issue: u64, plan: &Plan) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        (plan_path(issue), json_bytes(plan)),
        (plan_md_path(issue), plan.to_markdown(issue).into_bytes()),
    ];
    for skill in &plan.skills {
        let mut body = skill.body.clone();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        files.push((skill_path(issue, &skill.name), body.into_bytes()));
    }
    files
}

/// Where orchestrator notes that workers follow are kept (they read it).
pub fn notes_path(issue: u64) -> String {
    format!(".missions/{issue}/notes.md")
}

/// `existing` notes with a section for `heading` appended.
pub fn notes_with(existing: Option<&str>, heading: &str, notes: &str) -> Vec<u8> {
    let mut text = existing.map_or_else(
        || {
            "# Notes from the orchestrator\n\nDecisions made while the mission runs; follow them.\n"
                .to_owned()
        },
        str::to_owned,
    );
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("\n## {heading}\n\n{}\n", notes.trim()));
    text.into_bytes()
}

/// Adds `note` to a worker's result: an unresolved issue of its handoff (so
/// the orchestrator triages it), rewriting the handoff file among `files`;
/// or, for an incomplete result, to its reason.
pub fn note_in_worker_result(
    result: &mut JobResult,
    files: &mut [(String, Vec<u8>)],
    issue: u64,
    note: &str,
) {
    match result {
        JobResult::Worker { handoff } => {
            handoff.issues.push(DiscoveredIssue {
                description: note.to_owned(),
                resolved: false,
            });
            let path = handoff_path(issue, &handoff.feature);
            for (p, bytes) in files.iter_mut() {
                if *p == path {
                    *bytes = json_bytes(handoff);
                }
            }
        }
        JobResult::Incomplete { reason } => {
            if !reason.is_empty() {
                reason.push_str("; ");
            }
            reason.push_str(note);
        }
        _ => {}
    }
}

/// `plan` with an amendment applied the way the server applies it: new
/// assertions appended to the contract, new features to milestone `index`.
pub fn amended(
    plan: &Plan,
    index: usize,
    features: &[Feature],
    assertions: &[Assertion],
) -> Option<Plan> {
    let mut plan = plan.clone();
    plan.assertions.extend(assertions.iter().cloned());
    plan.milestones
        .get_mut(index)?
        .features
        .extend(features.iter().cloned());
    Some(plan)
}

/// Writes `content` at `rel` (a plain relative path) inside the checkout,
/// replacing whatever is there: a symlink planted at the path or along it is
/// removed rather than followed, so the harness never writes outside.
pub fn write_in_checkout(checkout: &Path, rel: &str, content: &[u8]) -> anyhow::Result<()> {
    let rel_path = Path::new(rel);
    if rel_path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        bail!("{rel:?} is not a plain relative path");
    }
    let mut dir = checkout.to_path_buf();
    let parts: Vec<_> = rel_path.components().collect();
    for part in &parts[..parts.len() - 1] {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                std::fs::remove_file(&dir)?;
                std::fs::create_dir(&dir)?;
            }
            Err(_) => std::fs::create_dir(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?,
        }
    }
    let path = checkout.join(rel_path);
    remove_path(&path)?;
    std::fs::write(&path, content).with_context(|| format!("cannot write {rel}"))
}

/// Removes a file, symlink or directory inside the checkout, if it exists.
pub fn remove_in_checkout(checkout: &Path, rel: &str) -> anyhow::Result<()> {
    remove_path(&checkout.join(rel))
}

fn remove_path(path: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => Ok(std::fs::remove_dir_all(path)?),
        Ok(_) => Ok(std::fs::remove_file(path)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_discarded_change_is_an_open_issue_of_the_handoff() {
        let handoff: crate::mission::Handoff = serde_json::from_value(serde_json::json!({
            "feature": "F1", "summary": "s", "completed": [], "followed_procedures": true
        }))
        .unwrap();
        let mut result = JobResult::Worker { handoff };
        let mut files = vec![(handoff_path(7, "F1"), b"old".to_vec())];
        note_in_worker_result(&mut result, &mut files, 7, "dropped .missions/7/plan.json");
        let JobResult::Worker { handoff } = &result else {
            panic!("{result:?}")
        };
        assert!(handoff.needs_triage());
        assert_eq!(
            handoff.issues[0].description,
            "dropped .missions/7/plan.json"
        );
        assert_eq!(files[0].1, json_bytes(handoff));

        let mut result = JobResult::Incomplete {
            reason: "turn limit".into(),
        };
        note_in_worker_result(&mut result, &mut [], 7, "dropped");
        assert_eq!(
            result,
            JobResult::Incomplete {
                reason: "turn limit; dropped".into()
            }
        );
    }

    #[test]
    fn writes_never_follow_planted_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let co = dir.path().join("co");
        std::fs::create_dir_all(co.join(".missions")).unwrap();
        std::os::unix::fs::symlink(&outside, co.join(".missions/7")).unwrap();
        write_in_checkout(&co, ".missions/7/plan.json", b"{}").unwrap();
        assert_eq!(
            std::fs::read(co.join(".missions/7/plan.json")).unwrap(),
            b"{}"
        );
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());

        std::os::unix::fs::symlink(outside.join("x"), co.join(".missions/7/plan.md")).unwrap();
        write_in_checkout(&co, ".missions/7/plan.md", b"# plan").unwrap();
        assert!(!outside.join("x").exists());
        assert!(write_in_checkout(&co, "../escape", b"").is_err());
    }
}
