//! The few REST reads a job makes with its `GITHUB_TOKEN`: the repository's
//! default branch, the issue and its comments, and the plan PR's reviews.
//! Everything read here is untrusted text (see `context`).

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

use super::env::JobEnv;

/// Items per page (GitHub's largest).
const PER_PAGE: u64 = 100;
/// Items kept from one list: the newest.
const MAX_ITEMS: usize = 1_000;
/// Requests made at most for one list (a list read from its start, whose
/// length is unknown, is read this far, keeping the newest [`MAX_ITEMS`]).
const MAX_REQUESTS: u64 = 30;

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
    /// How many comments it has (to read the newest pages of them).
    #[serde(default)]
    pub comments: u64,
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

    /// The newest items of a list (at most [`MAX_ITEMS`]), oldest first:
    /// pages of 100 from `first_page` on, until a page is short.
    async fn list_from<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        first_page: u64,
    ) -> anyhow::Result<Vec<T>> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = std::collections::VecDeque::new();
        for page in first_page.max(1)..first_page.max(1) + MAX_REQUESTS {
            let value = self
                .get(&format!("{path}{sep}per_page={PER_PAGE}&page={page}"))
                .await?;
            let batch: Vec<T> = serde_json::from_value(value)
                .with_context(|| format!("GET {path}: unexpected answer"))?;
            let n = batch.len() as u64;
            items.extend(batch);
            while items.len() > MAX_ITEMS {
                items.pop_front();
            }
            if n < PER_PAGE {
                break;
            }
        }
        Ok(items.into())
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

    /// The newest comments (at most [`MAX_ITEMS`]) of an issue or a PR,
    /// oldest first. `count` is the issue's `comments`: reading starts at the
    /// page that holds the newest [`MAX_ITEMS`] of them, and goes on past the
    /// count's last page while pages are full (comments made since).
    /// Whether `login` has write, maintain or admin permission. Any error (the
    /// token may not read permissions, the user is gone) counts as no.
    pub async fn can_write(&self, login: &str) -> bool {
        let path = format!(
            "/repos/{}/collaborators/{}/permission",
            self.repo(),
            login.replace(['/', '?', '#', '%'], "")
        );
        match self.get(&path).await {
            Ok(v) => crate::github::grants_write(&v),
            Err(_) => false,
        }
    }

    pub async fn comments(&self, number: u64, count: u64) -> anyhow::Result<Vec<Comment>> {
        self.list_from(
            &format!("/repos/{}/issues/{number}/comments", self.repo()),
            first_page_of_newest(count),
        )
        .await
    }

    /// The newest PR (open or closed) whose head is `branch`.
    pub async fn pull_for_branch(&self, branch: &str) -> anyhow::Result<Option<u64>> {
        let owner = self.repo().split('/').next().unwrap_or_default();
        let pulls: Vec<Pull> = self
            .list_from(
                &format!(
                    "/repos/{}/pulls?state=all&head={owner}:{branch}",
                    self.repo()
                ),
                1,
            )
            .await?;
        Ok(pulls.iter().map(|p| p.number).max())
    }

    /// A PR's newest reviews (at most [`MAX_ITEMS`]), oldest first.
    pub async fn reviews(&self, pull: u64) -> anyhow::Result<Vec<Comment>> {
        self.list_from(&format!("/repos/{}/pulls/{pull}/reviews", self.repo()), 1)
            .await
    }
}

/// The page (of [`PER_PAGE`]) where the newest [`MAX_ITEMS`] of `count`
/// items begin.
fn first_page_of_newest(count: u64) -> u64 {
    let skip = count.saturating_sub(MAX_ITEMS as u64);
    skip / PER_PAGE + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_starts_where_the_newest_comments_are() {
        assert_eq!(first_page_of_newest(0), 1);
        assert_eq!(first_page_of_newest(1_000), 1);
        assert_eq!(first_page_of_newest(1_099), 1);
        assert_eq!(first_page_of_newest(1_100), 2);
        // 2,345 comments: the newest 1,000 are 1,346..=2,345, from page 14.
        assert_eq!(first_page_of_newest(2_345), 14);
        assert_eq!(first_page_of_newest(u64::MAX), u64::MAX / 100 - 9);
    }
}
