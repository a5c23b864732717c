//! The issue's text a job takes: the one the App took in, not whatever the
//! issue says now.
//!
//! The App keeps a hash of the issue's title and description from when it was
//! labeled (or a person with write access edited it, or resumed the mission
//! after someone else's edit) and sends it with every dispatch. An edit by
//! anyone else after that must not reach the agents until a person with write
//! access has read it. So a job takes the live issue only when its hash is
//! the App's; else the copy in `.missions/<issue>/issue.json` on its branch
//! (written by the harness whenever a job saw the matching text, pinned like
//! everything under `.missions/`); else it stops with a reason a person can
//! act on.

use std::path::Path;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::github::Issue;
use crate::mission::IssueSnapshot;

/// The copy of the issue's text on a mission's branches.
pub fn snapshot_path(issue: u64) -> String {
    format!(".missions/{issue}/issue.json")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotFile {
    title: String,
    body: Option<String>,
    sha256: String,
}

/// Which text the job took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// No hash was sent (a mission started before snapshots): the live issue.
    Live,
    /// The live issue, which matches the hash; the copy to write on the branch.
    LiveMatching { file: (String, Vec<u8>) },
    /// The branch's copy; the live issue was edited since.
    Copy,
}

/// Sets `issue`'s title and body to the text the App took in (`expected`,
/// its hash); what it did, or an error saying why the job cannot go on.
pub fn choose(checkout: &Path, expected: Option<&str>, issue: &mut Issue) -> anyhow::Result<Taken> {
    let Some(expected) = expected.filter(|e| !e.trim().is_empty()) else {
        return Ok(Taken::Live);
    };
    let path = snapshot_path(issue.number);
    if IssueSnapshot::hash(&issue.title, issue.body.as_deref()) == expected {
        let file = SnapshotFile {
            title: issue.title.clone(),
            body: issue.body.clone(),
            sha256: expected.to_owned(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file)?;
        bytes.push(b'\n');
        return Ok(Taken::LiveMatching {
            file: (path, bytes),
        });
    }
    let copy = super::context::read_plain_file(checkout, &path)
        .and_then(|text| serde_json::from_str::<SnapshotFile>(&text).ok())
        // The file's own claim is not trusted: its text must hash to the App's.
        .filter(|f| IssueSnapshot::hash(&f.title, f.body.as_deref()) == expected);
    match copy {
        Some(file) => {
            issue.title = file.title;
            issue.body = file.body;
            Ok(Taken::Copy)
        }
        None => bail!(
            "issue #{} was edited after the mission took its text in, and {path} on this \
             branch holds no copy of the text the mission took in; a person with write access \
             can read the edit and comment `/mission resume` on the issue to take it in",
            issue.number
        ),
    }
}
