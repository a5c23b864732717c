//! A browser for the user-testing agent: headless Chromium driven over the
//! Chrome DevTools Protocol (CDP), offered to the model as `browser_*` tools
//! (open, read as text or accessibility tree, click, type, select, submit,
//! wait for text, screenshot, console errors).
//!
//! Why CDP from Rust (`chromiumoxide`) rather than a Playwright sidecar: the
//! job stays one binary on the runner. It needs a Chromium or Chrome (Debian's
//! `chromium` package; GitHub's Ubuntu runners ship Google Chrome, set
//! `MISSIONS_CHROMIUM`), but no Node, no `npm install` at job time, and no
//! second long-lived process with its own protocol and versions to supervise.
//! The tools' timeouts, errors and origin checks live in this crate, next to
//! the agent loop that calls them.
//!
//! # What the origin allow-list enforces
//!
//! - `browser_open` refuses a URL whose origin is not in
//!   [`BrowserConfig::allowed_origins`], naming the allowed ones.
//! - Every request of the page's tab (documents, redirects, form posts,
//!   scripts, images, `fetch`/XHR, iframes) is paused
//!   through CDP's Fetch domain and failed with `BlockedByClient` unless its
//!   origin is allowed; `browser_console` reports each refusal. So a
//!   redirect or link to another site loads nothing.
//! - Behind that, Chromium's resolver maps every host except the allowed
//!   origins' hosts to NOTFOUND (`--host-resolver-rules`; this holds for IP
//!   literals too: with only 127.0.0.1 allowed, `127.0.0.2` and `localhost`
//!   do not connect). That also covers what the interception does not see:
//!   WebSockets, service workers, windows the page opens (whose requests are
//!   never continued anyway) and Chromium's own background traffic (which the
//!   flags turn off as well).
//!
//! Not enforced: the port and scheme in those uninterceptable channels. A
//! WebSocket or service worker of the app can reach another port of an
//! allowed host (`ws://127.0.0.1:9000` when only `http://127.0.0.1:8000` is
//! allowed). The job's own tools (`bash`) reach that loopback anyway.
//!
//! # Process hygiene
//!
//! Chromium runs with a cleared environment (PATH, HOME set to a fresh
//! temporary directory, display and locale variables; never a name containing
//! KEY, TOKEN, SECRET or PASSWORD; Debian's `/usr/bin/chromium` wrapper
//! then exports its own public Google API keys, which are not ours), in its
//! own process group, with a temporary profile; [`BrowserTools::close`] (or, best effort, dropping it)
//! ends every Chromium process and removes the directory.

mod actions;
mod defs;
mod events;
mod js;
mod launch;
mod snapshot;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::{Browser, Page};
use futures::{FutureExt, StreamExt};
use reqwest::Url;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use self::defs::NAMES;
use self::events::Shared;
use self::launch::Chromium;
use crate::llm::ToolDef;

/// How long Chromium may take to accept the connection, and to open its tab.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the browser may go and what it may take.
#[derive(Debug, Clone)]
pub struct BrowserConfig {
    /// Chrome or Chromium: `$MISSIONS_CHROMIUM`, else `/usr/bin/chromium`.
    pub chromium: PathBuf,
    /// Origins such as `http://127.0.0.1:8000`; navigation and requests
    /// elsewhere are refused.
    pub allowed_origins: Vec<String>,
    /// Where screenshots are written (created when the first one is).
    pub screenshots_dir: PathBuf,
    /// An argv prefix Chromium runs under: the job's PID namespace, so that
    /// a page opened through its DevTools port (which the tester's commands
    /// can reach on loopback) sees none of the harness's processes, and
    /// nothing of it outlives the run. Empty: none.
    pub wrapper: Vec<String>,
    /// How long one action may take (10 s by default).
    pub action_timeout: Duration,
}

impl BrowserConfig {
    pub fn new(allowed_origins: Vec<String>, screenshots_dir: PathBuf) -> Self {
        BrowserConfig {
            chromium: launch::default_binary(),
            allowed_origins,
            screenshots_dir,
            wrapper: Vec::new(),
            action_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the browser could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error(
        "no Chromium at {}: install it (Debian/Ubuntu: `apt-get install chromium`) or set \
         MISSIONS_CHROMIUM to a Chrome or Chromium binary (GitHub-hosted Ubuntu runners have \
         Google Chrome: MISSIONS_CHROMIUM=$(command -v google-chrome))",
        path.display()
    )]
    NotInstalled { path: PathBuf },
    #[error("Chromium ({}) did not start: {reason}", path.display())]
    Launch { path: PathBuf, reason: String },
    #[error("cannot drive Chromium over the DevTools protocol: {0}")]
    Cdp(String),
    #[error("{0}")]
    Config(String),
}

/// One tool call's result, for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserOutput {
    pub content: String,
    pub is_error: bool,
}

/// Headless Chromium with one tab, driven by the `browser_*` tools. Calls run
/// one at a time, in the order they arrive.
pub struct BrowserTools {
    config: BrowserConfig,
    shared: Arc<Shared>,
    page: Page,
    browser: tokio::sync::Mutex<Option<Browser>>,
    chromium: Mutex<Option<Chromium>>,
    tasks: Vec<JoinHandle<()>>,
    screenshots: Mutex<Vec<PathBuf>>,
    turn: tokio::sync::Mutex<()>,
}

impl BrowserTools {
    /// Starts headless Chromium with a blank tab.
    pub async fn launch(mut config: BrowserConfig) -> Result<Self, BrowserError> {
        let (allowed, hosts) = origins(&config.allowed_origins)?;
        config.screenshots_dir = std::path::absolute(&config.screenshots_dir).map_err(|e| {
            BrowserError::Config(format!(
                "screenshots directory {}: {e}",
                config.screenshots_dir.display()
            ))
        })?;
        let mut chromium = Chromium::start(&config.chromium, &hosts, &config.wrapper).await?;
        match Self::connect(&config, &chromium, allowed).await {
            Ok((browser, page, shared, tasks)) => Ok(BrowserTools {
                config,
                shared,
                page,
                browser: tokio::sync::Mutex::new(Some(browser)),
                chromium: Mutex::new(Some(chromium)),
                tasks,
                screenshots: Mutex::default(),
                turn: tokio::sync::Mutex::new(()),
            }),
            Err(e) => {
                let tail = chromium.stderr_tail();
                chromium.stop(Duration::ZERO).await;
                Err(BrowserError::Cdp(format!("{e}; Chromium printed:\n{tail}")))
            }
        }
    }

    async fn connect(
        config: &BrowserConfig,
        chromium: &Chromium,
        allowed: Vec<String>,
    ) -> Result<(Browser, Page, Arc<Shared>, Vec<JoinHandle<()>>), String> {
        let handler_config = HandlerConfig {
            // A certificate error is something to report, not to click through.
            ignore_https_errors: false,
            // Chromium may be newer than the protocol chromiumoxide was built
            // for: an event it cannot parse is skipped, not fatal.
            ignore_invalid_messages: true,
            // The window size (`--window-size`) is the viewport.
            viewport: None,
            context_ids: Vec::new(),
            // Our own deadlines come first, with their clearer messages.
            request_timeout: config.action_timeout + Duration::from_secs(5),
            request_intercept: true,
            cache_enabled: true,
        };
        let connect = Browser::connect_with_config(chromium.ws_url.clone(), handler_config);
        let (browser, mut handler) = tokio::time::timeout(PAGE_TIMEOUT, connect)
            .await
            .map_err(|_| format!("no connection within {} s", PAGE_TIMEOUT.as_secs()))?
            .map_err(|e| e.to_string())?;
        let mut tasks = vec![tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if let Err(e) = event {
                    tracing::debug!("browser: the DevTools connection ended: {e}");
                    break;
                }
            }
        })];
        let page = tokio::time::timeout(PAGE_TIMEOUT, browser.new_page("about:blank"))
            .await
            .map_err(|_| format!("no tab opened within {} s", PAGE_TIMEOUT.as_secs()))?
            .map_err(|e| format!("opening a tab: {e}"))?;
        let shared = Arc::new(Shared::new(allowed));
        tasks.extend(
            events::spawn(&page, &shared)
                .await
                .map_err(|e| format!("listening to the tab: {e}"))?,
        );
        // Log entries: failed loads and the like, for `browser_console`.
        page.enable_log()
            .await
            .map_err(|e| format!("enabling the log: {e}"))?;
        Ok((browser, page, shared, tasks))
    }

    /// The tools' definitions, for the model.
    pub fn defs() -> Vec<ToolDef> {
        defs::all()
    }

    /// Whether `name` is one of the `browser_*` tools.
    pub fn has(name: &str) -> bool {
        defs::NAMES.contains(&name)
    }

    /// Runs one tool call. Never panics: failures, timeouts included, come back
    /// as `is_error` results that say what to try next.
    pub async fn call(&self, name: &str, input: &serde_json::Value) -> BrowserOutput {
        let _turn = self.turn.lock().await;
        let limit = self.limit(name, input);
        let deadline = Instant::now() + limit;
        let run = std::panic::AssertUnwindSafe(self.run(name, input, deadline)).catch_unwind();
        // Actions watch `deadline` themselves; this is the backstop.
        let result = match tokio::time::timeout(limit + Duration::from_secs(2), run).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(format!(
                "{name} failed unexpectedly (a bug in the browser tools)"
            )),
            Err(_) => Err(format!(
                "{name} did not finish within {}; the page may be busy: try browser_screenshot \
                 or browser_read to see its state",
                secs(limit)
            )),
        };
        match result {
            Ok(content) => BrowserOutput {
                content,
                is_error: false,
            },
            Err(content) => BrowserOutput {
                content,
                is_error: true,
            },
        }
    }

    /// The screenshots taken so far, in order.
    pub fn screenshots(&self) -> Vec<PathBuf> {
        self.screenshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Closes Chromium, ends all its processes and removes its profile.
    pub async fn close(self) {
        let _turn = self.turn.lock().await;
        if let Some(mut browser) = self.browser.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(3), browser.close()).await;
        }
        let chromium = self
            .chromium
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut chromium) = chromium {
            chromium.stop(Duration::from_secs(3)).await;
        }
        // `Drop` aborts the tasks.
    }

    /// How long a call may take.
    fn limit(&self, name: &str, input: &serde_json::Value) -> Duration {
        if name == defs::WAIT_FOR_TEXT
            && let Ok(defs::WaitForTextInput {
                timeout_secs: Some(secs),
                ..
            }) = serde_json::from_value(input.clone())
        {
            return Duration::from_secs(secs.clamp(1, defs::MAX_WAIT_SECS));
        }
        self.config.action_timeout
    }

    /// Says what became of Chromium when a DevTools call failed.
    fn cdp_error(&self, error: chromiumoxide::error::CdpError) -> String {
        let mut chromium = self.chromium.lock().unwrap_or_else(|e| e.into_inner());
        match chromium.as_mut() {
            Some(c) => match c.exited() {
                Some(status) => format!(
                    "Chromium has exited ({status}); the browser cannot be used again in this \
                     run. Its last output:\n{}",
                    c.stderr_tail()
                ),
                None => format!("the browser reported: {error}"),
            },
            None => "the browser is closed".to_owned(),
        }
    }
}

impl Drop for BrowserTools {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Kills the process group and removes the profile (see `Chromium`).
        drop(
            self.chromium
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
    }
}

/// The allowed origins, serialised (`http://127.0.0.1:8000`), and their hosts.
fn origins(allowed: &[String]) -> Result<(Vec<String>, Vec<String>), BrowserError> {
    if allowed.is_empty() {
        return Err(BrowserError::Config(
            "no allowed origins: the browser could open nothing; give the app's origin, e.g. \
             http://127.0.0.1:8000"
                .to_owned(),
        ));
    }
    let mut origins = Vec::new();
    let mut hosts = Vec::new();
    for origin in allowed {
        let url = Url::parse(origin)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .ok_or_else(|| {
                BrowserError::Config(format!(
                    "`{origin}` is not an http(s) origin such as http://127.0.0.1:8000"
                ))
            })?;
        origins.push(url.origin().ascii_serialization());
        if let Some(host) = url.host_str() {
            hosts.push(host.to_owned());
        }
    }
    Ok((origins, hosts))
}

/// `10 s`, `2.5 s`.
fn secs(duration: Duration) -> String {
    let secs = (duration.as_secs_f64() * 10.0).round() / 10.0;
    if secs.fract() == 0.0 {
        format!("{secs:.0} s")
    } else {
        format!("{secs:.1} s")
    }
}

/// Chromium started at the first `browser_*` call, not before: a tester that
/// never opens a page costs no browser. A failed start is answered to every
/// call with what to do.
pub struct LazyBrowser {
    config: BrowserConfig,
    tools: tokio::sync::OnceCell<Result<BrowserTools, String>>,
}

impl std::fmt::Debug for LazyBrowser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyBrowser")
            .field("allowed_origins", &self.config.allowed_origins)
            .field("started", &self.tools.initialized())
            .finish()
    }
}

impl LazyBrowser {
    pub fn new(config: BrowserConfig) -> Self {
        LazyBrowser {
            config,
            tools: tokio::sync::OnceCell::new(),
        }
    }

    /// Runs one call, starting Chromium first if no call did.
    pub async fn call(&self, name: &str, input: &serde_json::Value) -> BrowserOutput {
        let started = self
            .tools
            .get_or_init(|| async {
                BrowserTools::launch(self.config.clone())
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
        match started {
            Ok(tools) => tools.call(name, input).await,
            Err(why) => BrowserOutput {
                content: format!("the browser could not start: {why}"),
                is_error: true,
            },
        }
    }

    /// The screenshots taken so far, in order.
    pub fn screenshots(&self) -> Vec<PathBuf> {
        match self.tools.get() {
            Some(Ok(tools)) => tools.screenshots(),
            _ => Vec::new(),
        }
    }

    /// Ends Chromium, if it was started.
    pub async fn close(self) {
        if let Some(Ok(tools)) = self.tools.into_inner() {
            tools.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_and_must_be_http() {
        let (origins, hosts) =
            origins(&["http://127.0.0.1:8000/".into(), "https://localhost".into()]).unwrap();
        assert_eq!(origins, ["http://127.0.0.1:8000", "https://localhost"]);
        assert_eq!(hosts, ["127.0.0.1", "localhost"]);
        assert!(super::origins(&["file:///tmp".into()]).is_err());
        assert!(super::origins(&[]).is_err());
        assert_eq!(secs(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(secs(Duration::from_secs(10)), "10 s");
        assert_eq!(secs(Duration::from_millis(1998)), "2 s");
    }
}
