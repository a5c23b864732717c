//! `missions demo --repo PATH --issue-file FILE`: the mission on a person's
//! own repository. The tree of PATH's HEAD commit (committed files only) is
//! copied into the simulator; PATH itself is only read (`git rev-parse`,
//! `ls-tree`, `cat-file`), never changed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The answer the demo gives the orchestrator's questions about an issue
/// of the person's own.
pub const NO_PREFERENCE: &str =
    "No preference: choose what fits the code base and say so in the plan.";

/// The keys of `.github/missions.yml` the demo sets itself; the repository's
/// other keys (commands, app, prompts_dir, …) are kept.
pub const DEMO_KEYS: [&str; 3] = ["models", "label", "budget"];

/// The HEAD commit of a repository on disk, its files read out.
pub struct RepoCopy {
    /// The repository's name for the simulator (PATH's directory name).
    pub name: String,
    /// The top of PATH's work tree.
    pub top: PathBuf,
    pub commit: String,
    /// Path → content; links as files holding their target (the simulator's
    /// commits hold regular files only).
    pub files: Vec<(String, Vec<u8>)>,
    /// Submodules, which are not copied.
    pub submodules: Vec<String>,
}

fn git(path: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(path);
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn git_text(path: &Path, args: &[&str]) -> anyhow::Result<Result<String, String>> {
    let out = git(path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run git (the demo needs it)")?;
    Ok(if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    })
}

/// Reads PATH's HEAD commit: every file of its tree. Fails with what to do
/// when PATH is not a git repository or has no commit.
pub fn read_head(path: &Path) -> anyhow::Result<RepoCopy> {
    if !path.is_dir() {
        bail!(
            "--repo {}: no such directory; pass the checkout of a git repository",
            path.display()
        );
    }
    let top = match git_text(path, &["rev-parse", "--show-toplevel"])? {
        Ok(top) if !top.is_empty() => PathBuf::from(top),
        Ok(_) | Err(_) => bail!(
            "--repo {}: not a git repository (or a bare one); pass the checkout of a repository with at least one commit",
            path.display()
        ),
    };
    let commit = match git_text(path, &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])? {
        Ok(sha) if !sha.is_empty() => sha,
        _ => bail!(
            "--repo {}: the repository has no commits yet; commit the files the mission should see (the demo copies the HEAD commit, not the work tree)",
            path.display()
        ),
    };
    let out = git(path)
        .args(["ls-tree", "-r", "-z", "--full-tree", &commit])
        .stdin(Stdio::null())
        .output()
        .context("cannot run git ls-tree")?;
    if !out.status.success() {
        bail!(
            "git ls-tree in {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut blobs = Vec::new();
    let mut submodules = Vec::new();
    for entry in out.stdout.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let entry = String::from_utf8_lossy(entry);
        let Some((meta, file)) = entry.split_once('\t') else {
            continue;
        };
        let mut parts = meta.split(' ');
        let (_mode, kind, sha) = (parts.next(), parts.next(), parts.next());
        match (kind, sha) {
            (Some("blob"), Some(sha)) => blobs.push((file.to_owned(), sha.to_owned())),
            (Some("commit"), _) => submodules.push(file.to_owned()),
            _ => {}
        }
    }
    let contents = cat_blobs(&top, blobs.iter().map(|(_, sha)| sha.as_str()))?;
    let files = blobs
        .into_iter()
        .map(|(file, _)| file)
        .zip(contents)
        .collect();
    let name = repo_name(&top);
    Ok(RepoCopy {
        name,
        top,
        commit,
        files,
        submodules,
    })
}

/// The contents of blobs, in order, through one `git cat-file --batch`.
fn cat_blobs<'a>(repo: &Path, shas: impl Iterator<Item = &'a str>) -> anyhow::Result<Vec<Vec<u8>>> {
    let input: String = shas.map(|s| format!("{s}\n")).collect();
    let count = input.lines().count();
    let mut child = git(repo)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run git cat-file")?;
    let mut stdin = child.stdin.take().context("git's stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .context("git's stdout")?
        .read_to_end(&mut out)?;
    let _ = writer.join();
    let status = child.wait()?;
    if !status.success() {
        bail!("git cat-file failed in {}", repo.display());
    }
    let mut contents = Vec::with_capacity(count);
    let mut rest = &out[..];
    for _ in 0..count {
        let nl = rest
            .iter()
            .position(|b| *b == b'\n')
            .context("git cat-file: a truncated answer")?;
        let header = String::from_utf8_lossy(&rest[..nl]).into_owned();
        let size: usize = header
            .rsplit(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("git cat-file: unexpected header {header:?}"))?;
        let body = rest
            .get(nl + 1..nl + 1 + size)
            .context("git cat-file: a truncated object")?;
        contents.push(body.to_vec());
        rest = rest.get(nl + 2 + size..).unwrap_or(&[]);
    }
    Ok(contents)
}

/// PATH's directory name, as a GitHub repository name (`[A-Za-z0-9._-]`).
fn repo_name(top: &Path) -> String {
    let raw = top
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches(['.', '-']).to_owned();
    if name.is_empty() {
        "project".into()
    } else {
        name
    }
}

/// The issue in FILE: its first line the title (a leading `# ` dropped),
/// the rest the body.
pub fn read_issue(file: &Path) -> anyhow::Result<(String, String)> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("--issue-file {}: cannot read it", file.display()))?;
    parse_issue(&text).with_context(|| format!("--issue-file {}", file.display()))
}

fn parse_issue(text: &str) -> anyhow::Result<(String, String)> {
    let text = text.trim_start_matches('\u{feff}');
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let title = first.trim();
    let title = title
        .strip_prefix("# ")
        .or_else(|| title.strip_prefix('#'))
        .unwrap_or(title)
        .trim();
    if title.is_empty() {
        bail!(
            "the first line is empty: write the issue's title there (a leading `# ` is dropped) and its body below"
        );
    }
    Ok((title.to_owned(), rest.trim().to_owned()))
}

/// `.github/missions.yml` for the copy: the repository's own file with
/// [`DEMO_KEYS`] replaced by the demo's (`demo_yml`, a whole file), or the
/// demo's alone when the repository has none. Comments of the repository's
/// file are not kept (it is read and written back as YAML).
pub fn merged_missions_yml(theirs: Option<&[u8]>, demo_yml: &str) -> anyhow::Result<String> {
    let Some(theirs) = theirs else {
        return Ok(demo_yml.to_owned());
    };
    let text = String::from_utf8_lossy(theirs);
    let value: yaml_serde::Value = yaml_serde::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "the repository's .github/missions.yml is not YAML the demo can read ({e}); fix it, or commit without it"
        )
    })?;
    let mut map = match value {
        yaml_serde::Value::Mapping(map) => map,
        yaml_serde::Value::Null => Default::default(),
        _ => bail!("the repository's .github/missions.yml is not a mapping of settings"),
    };
    for key in DEMO_KEYS {
        map.remove(key);
    }
    let mut out = demo_yml.to_owned();
    if !map.is_empty() {
        out.push_str("# Kept from the repository's own .github/missions.yml:\n");
        out.push_str(&yaml_serde::to_string(&map).context("writing the settings back")?);
    }
    Ok(out)
}

/// A path for a shell command line: as is when it needs no quoting.
pub fn shell_word(path: &Path) -> String {
    let s = path.display().to_string();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%=".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issue_file_is_a_title_line_and_a_body() {
        assert_eq!(
            parse_issue("# Add --top\n\nPrint the N most frequent words.\n").unwrap(),
            (
                "Add --top".into(),
                "Print the N most frequent words.".into()
            )
        );
        assert_eq!(
            parse_issue("Title only").unwrap(),
            ("Title only".into(), String::new())
        );
        assert!(parse_issue("\nbody").is_err());
        assert!(parse_issue("# \nbody").is_err());
    }

    #[test]
    fn the_repositorys_settings_are_kept_but_models_label_and_budget() {
        let demo =
            "label: mission\nbudget:\n  usd: 5\nmodels:\n  default:\n    provider: anthropic\n";
        let theirs = b"# mine\nlabel: agents\nbudget: { usd: 100 }\nmodels:\n  default:\n    model: gpt-4.1\ncommands:\n  test: make test\nmax_attempts: 3\n";
        let merged = merged_missions_yml(Some(theirs), demo).unwrap();
        let cfg = crate::repo_config::RepoConfig::parse(&merged).unwrap();
        assert_eq!(cfg.label, "mission");
        assert_eq!(cfg.budget_usd, Some(5.0));
        assert_eq!(cfg.commands.test, ["make test"]);
        assert!(merged.contains("max_attempts: 3"), "{merged}");
        assert!(!merged.contains("gpt-4.1"), "{merged}");
        assert_eq!(merged_missions_yml(None, demo).unwrap(), demo);
        assert_eq!(merged_missions_yml(Some(b""), demo).unwrap(), demo);
        assert!(merged_missions_yml(Some(b"- a list"), demo).is_err());
        assert!(merged_missions_yml(Some(b"a: [unclosed"), demo).is_err());
    }

    #[test]
    fn names_and_words_are_safe() {
        assert_eq!(repo_name(Path::new("/home/a/my project!")), "my-project");
        assert_eq!(repo_name(Path::new("/")), "project");
        assert_eq!(shell_word(Path::new("/tmp/a-b/c.git")), "/tmp/a-b/c.git");
        assert_eq!(shell_word(Path::new("/tmp/a b")), "'/tmp/a b'");
    }
}
