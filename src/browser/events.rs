//! What the page does between tool calls, followed by background tasks: the
//! requests it makes (each one paused until its origin is checked), the
//! navigations it starts, and the errors it logs.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::fetch::{
    ContinueRequestParams, EventRequestPaused, FailRequestParams,
};
use chromiumoxide::cdp::browser_protocol::log::{EventEntryAdded, LogEntryLevel};
use chromiumoxide::cdp::browser_protocol::network::ErrorReason;
use chromiumoxide::cdp::browser_protocol::page::{
    EventFrameRequestedNavigation, EventFrameStartedLoading,
};
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown, RemoteObject, StackTrace,
};
use chromiumoxide::error::CdpError;
use futures::StreamExt;
use reqwest::Url;
use serde_json::Value;
use tokio::task::JoinHandle;

/// The most console entries kept between two `browser_console` calls.
const CONSOLE_LIMIT: usize = 200;

/// State the background tasks share with the tools.
pub(super) struct Shared {
    /// Allowed origins, serialised (`http://127.0.0.1:8000`).
    pub allowed: Vec<String>,
    console: Mutex<Console>,
    /// Navigations of the main frame requested by the page, and started.
    requested: AtomicU64,
    started: AtomicU64,
}

#[derive(Default)]
struct Console {
    entries: Vec<String>,
    dropped: usize,
}

/// How many navigations had been requested and started at some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NavMark {
    pub requested: u64,
    pub started: u64,
}

impl Shared {
    pub fn new(allowed: Vec<String>) -> Self {
        Shared {
            allowed,
            console: Mutex::default(),
            requested: AtomicU64::new(0),
            started: AtomicU64::new(0),
        }
    }

    /// Whether the page may fetch `url`. Only network schemes are checked:
    /// `data:`, `blob:` and `about:` URLs stay inside the page.
    pub fn allows(&self, url: &str) -> bool {
        let Ok(url) = Url::parse(url) else {
            return false;
        };
        match url.scheme() {
            "data" | "blob" | "about" => true,
            "http" | "https" => self.allowed.contains(&url.origin().ascii_serialization()),
            _ => false,
        }
    }

    pub fn nav(&self) -> NavMark {
        NavMark {
            requested: self.requested.load(Ordering::SeqCst),
            started: self.started.load(Ordering::SeqCst),
        }
    }

    pub fn note(&self, entry: String) {
        let mut console = self.console.lock().unwrap_or_else(|e| e.into_inner());
        if console.entries.len() < CONSOLE_LIMIT {
            console.entries.push(entry);
        } else {
            console.dropped += 1;
        }
    }

    /// The entries since the last call, and how many more there were.
    pub fn take_console(&self) -> (Vec<String>, usize) {
        let mut console = self.console.lock().unwrap_or_else(|e| e.into_inner());
        let taken = std::mem::take(&mut *console);
        (taken.entries, taken.dropped)
    }
}

/// Starts the listeners. They are registered before the page loads anything,
/// so no request is paused without one to continue it.
pub(super) async fn spawn(
    page: &Page,
    shared: &Arc<Shared>,
) -> Result<Vec<JoinHandle<()>>, CdpError> {
    let mut tasks = Vec::new();

    // Every request the page makes stops here (the Fetch domain, enabled by
    // `HandlerConfig::request_intercept`) until it is let through or failed.
    let mut paused = page.event_listener::<EventRequestPaused>().await?;
    let (page_, shared_) = (page.clone(), shared.clone());
    tasks.push(tokio::spawn(async move {
        while let Some(event) = paused.next().await {
            let url = &event.request.url;
            if shared_.allows(url) {
                let _ = page_
                    .execute(ContinueRequestParams::new(event.request_id.clone()))
                    .await;
            } else {
                shared_.note(format!(
                    "refused: a request ({}) to {url}: its origin is not one of {}",
                    event.resource_type.as_ref().to_lowercase(),
                    shared_.allowed.join(", ")
                ));
                let _ = page_
                    .execute(FailRequestParams::new(
                        event.request_id.clone(),
                        ErrorReason::BlockedByClient,
                    ))
                    .await;
            }
        }
    }));

    // Navigations of the main frame, so an action knows whether it started one.
    let main_frame = page.mainframe().await?;
    let is_main = move |frame: &str| {
        main_frame
            .as_ref()
            .is_none_or(|main| main.as_ref() == frame)
    };
    let mut requested = page
        .event_listener::<EventFrameRequestedNavigation>()
        .await?;
    let (shared_, is_main_) = (shared.clone(), is_main.clone());
    tasks.push(tokio::spawn(async move {
        while let Some(event) = requested.next().await {
            if is_main_(event.frame_id.as_ref()) {
                shared_.requested.fetch_add(1, Ordering::SeqCst);
            }
        }
    }));
    let mut started = page.event_listener::<EventFrameStartedLoading>().await?;
    let shared_ = shared.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(event) = started.next().await {
            if is_main(event.frame_id.as_ref()) {
                shared_.started.fetch_add(1, Ordering::SeqCst);
            }
        }
    }));

    // Console errors, uncaught exceptions and the browser's own error log
    // (failed loads, CSP violations).
    let mut calls = page.event_listener::<EventConsoleApiCalled>().await?;
    let shared_ = shared.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(event) = calls.next().await {
            let kind = match event.r#type {
                ConsoleApiCalledType::Error => "console.error",
                ConsoleApiCalledType::Assert => "console.assert",
                _ => continue,
            };
            let args: Vec<String> = event.args.iter().map(show).collect();
            shared_.note(format!(
                "{kind}: {}{}",
                args.join(" "),
                at(event.stack_trace.as_ref())
            ));
        }
    }));
    let mut exceptions = page.event_listener::<EventExceptionThrown>().await?;
    let shared_ = shared.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(event) = exceptions.next().await {
            let details = &event.exception_details;
            let what = details
                .exception
                .as_ref()
                .and_then(|e| e.description.clone())
                .unwrap_or_else(|| details.text.clone());
            // The message and the first frames of the stack are enough.
            let what: Vec<&str> = what.lines().take(4).collect();
            let place = match &details.url {
                Some(url) => format!(" (at {url} line {})", details.line_number + 1),
                None => at(details.stack_trace.as_ref()),
            };
            shared_.note(format!("uncaught exception: {}{place}", what.join("\n  ")));
        }
    }));
    let mut log = page.event_listener::<EventEntryAdded>().await?;
    let shared_ = shared.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(event) = log.next().await {
            let entry = &event.entry;
            // Refusals are noted above, with the reason; a missing favicon
            // (which Chromium asks for by itself) is no finding.
            let favicon = entry
                .url
                .as_deref()
                .is_some_and(|u| u.ends_with("/favicon.ico"));
            if entry.level != LogEntryLevel::Error
                || entry.text.contains("ERR_BLOCKED_BY_CLIENT")
                || favicon
            {
                continue;
            }
            let url = entry
                .url
                .as_deref()
                .map(|u| format!(" ({u})"))
                .unwrap_or_default();
            shared_.note(format!(
                "{}: {}{url}",
                entry.source.as_ref().to_lowercase(),
                entry.text
            ));
        }
    }));
    Ok(tasks)
}

/// A console argument as the page would print it.
fn show(arg: &RemoteObject) -> String {
    match &arg.value {
        Some(Value::String(s)) => s.clone(),
        Some(value) if !value.is_null() => value.to_string(),
        _ => arg
            .description
            .clone()
            .or_else(|| arg.unserializable_value.as_ref().map(|v| v.inner().clone()))
            .unwrap_or_else(|| format!("{:?}", arg.r#type).to_lowercase()),
    }
}

/// ` (at URL line N)` from the top of a stack, if it has one.
fn at(stack: Option<&StackTrace>) -> String {
    stack
        .and_then(|s| s.call_frames.first())
        .filter(|frame| !frame.url.is_empty())
        .map(|frame| format!(" (at {} line {})", frame.url, frame.line_number + 1))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allowed_origins_are_let_through() {
        let shared = Shared::new(vec!["http://127.0.0.1:8000".into()]);
        assert!(shared.allows("http://127.0.0.1:8000/add?x=1"));
        assert!(shared.allows("data:image/png;base64,AAAA"));
        assert!(!shared.allows("http://127.0.0.1:8001/"));
        assert!(!shared.allows("https://127.0.0.1:8000/"));
        assert!(!shared.allows("http://example.com/"));
        assert!(!shared.allows("file:///etc/passwd"));
        assert!(!shared.allows("not a url"));
    }

    #[test]
    fn the_console_keeps_a_bounded_record_until_read() {
        let shared = Shared::new(vec![]);
        for n in 0..CONSOLE_LIMIT + 3 {
            shared.note(format!("e{n}"));
        }
        let (entries, dropped) = shared.take_console();
        assert_eq!((entries.len(), dropped), (CONSOLE_LIMIT, 3));
        assert_eq!(shared.take_console(), (vec![], 0));
    }
}
