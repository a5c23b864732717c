//! The few REST reads a job makes with its `GITHUB_TOKEN`: the repository's
//! default branch, the issue and its comments, and the plan PR's reviews.
//! Everything read here is untrusted text (see `context`).

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

use super::env::JobEnv;

/// Pages of 100 read at most from one list.
const MAX_PAGES: u32 = 10;

pub struct Rest {
    http: reqwest::Client,
    env: JobEnv,
}

/// An issue or a PR as the job reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    pub user: User,
    #[serde(default)]
    pub author_association: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub login: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// An issue comment, or a PR review (its state in `state`).
#[derive(Debug, Clone, Deserialize)]
pub struct Comment {
    #[serde(default)]
    pub body: Option<String>,
    pub user: Option<User>,
    #[serde(default)]
    pub author_association: Option<String>,
    #[serde(default, alias = "submitted_at")]
    pub created_at: Option<String>,
    /// Reviews only: APPROVED, CHANGES_REQUESTED, COMMENTED, …
    #[serde(default)]
    pub state: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Pull {
    number: u64,
}

impl Rest {
    pub fn new(env: &JobEnv) -> anyhow::Result<Rest> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent("missions-job")
            .build()?;
        Ok(Rest {
            http,
            env: env.clone(),
        })
    }

    /// GET `path` (from the API root), retrying what GitHub answers when busy.
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.env.api_url);
        let mut delay = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let answer = self
                .http
                .get(&url)
                .bearer_auth(&self.env.token)
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28")
                .send()
                .await;
            let retry_after = match answer {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let wait = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let body = response.bytes().await.unwrap_or_default();
                    if (200..300).contains(&status) {
                        return serde_json::from_slice(&body)
                            .with_context(|| format!("GET {path}: the answer is not JSON"));
                    }
                    let limited = status == 429
                        || (status == 403 && String::from_utf8_lossy(&body).contains("rate limit"));
                    if !(limited || status >= 500) || attempt >= 5 {
                        let message = serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|v| v["message"].as_str().map(str::to_owned))
                            .unwrap_or_default();
                        bail!("GET {path} answered {status} {message}");
                    }
                    wait
                }
                Err(e) => {
                    if attempt >= 5 {
                        return Err(anyhow::anyhow!(self.env.mask(&e.to_string())))
                            .with_context(|| format!("GET {path} failed"));
                    }
                    None
                }
            };
            let wait = retry_after.unwrap_or(delay).min(Duration::from_secs(60));
            tokio::time::sleep(wait).await;
            delay *= 2;
        }
    }

    /// Every item of a list, a page of 100 at a time (at most [`MAX_PAGES`]).
    async fn list<T: for<'de> Deserialize<'de>>(&self, path: &str) -> anyhow::Result<Vec<T>> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        for page in 1..=MAX_PAGES {
            let value = self
                .get(&format!("{path}{sep}per_page=100&page={page}"))
                .await?;
            let batch: Vec<T> = serde_json::from_value(value)
                .with_context(|| format!("GET {path}: unexpected answer"))?;
            let n = batch.len();
            items.extend(batch);
            if n < 100 {
                break;
            }
        }
        Ok(items)
    }

    fn repo(&self) -> &str {
        &self.env.repository
    }

    pub async fn default_branch(&self) -> anyhow::Result<String> {
        let repo = self.get(&format!("/repos/{}", self.repo())).await?;
        repo["default_branch"]
            .as_str()
            .map(str::to_owned)
            .context("the repository has no default_branch")
    }

    pub async fn issue(&self, number: u64) -> anyhow::Result<Issue> {
        let value = self
            .get(&format!("/repos/{}/issues/{number}", self.repo()))
            .await?;
        serde_json::from_value(value).context("unexpected issue answer")
    }

    /// The comments of an issue or a PR, oldest first.
    pub async fn comments(&self, number: u64) -> anyhow::Result<Vec<Comment>> {
        self.list(&format!("/repos/{}/issues/{number}/comments", self.repo()))
            .await
    }

    /// The newest PR (open or closed) whose head is `branch`.
    pub async fn pull_for_branch(&self, branch: &str) -> anyhow::Result<Option<u64>> {
        let owner = self.repo().split('/').next().unwrap_or_default();
        let pulls: Vec<Pull> = self
            .list(&format!(
                "/repos/{}/pulls?state=all&head={owner}:{branch}",
                self.repo()
            ))
            .await?;
        Ok(pulls.iter().map(|p| p.number).max())
    }

    /// A PR's reviews, oldest first.
    pub async fn reviews(&self, pull: u64) -> anyhow::Result<Vec<Comment>> {
        self.list(&format!("/repos/{}/pulls/{pull}/reviews", self.repo()))
            .await
    }
}
