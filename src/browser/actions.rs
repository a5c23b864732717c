//! The tools' bodies. Each returns the text for the model, `Err` when the
//! action failed, and keeps to the call's deadline.

use std::time::Duration;

use base64::Engine;
use chromiumoxide::cdp::browser_protocol::input::InsertTextParams;
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams, Viewport,
};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::error::CdpError;
use chromiumoxide::layout::Point;
use chromiumoxide::types::{Command, Method, MethodId};
use reqwest::Url;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep, timeout};

use super::defs::{self, *};
use super::events::NavMark;
use super::snapshot::{self, READ_LIMIT};
use super::{BrowserTools, js, secs};

/// How often a condition is checked while waiting for it.
const POLL: Duration = Duration::from_millis(100);
/// How long after a click or key press a navigation may take to start.
const CLICK_GRACE: Duration = Duration::from_millis(300);
/// The same after a form is submitted (submit handlers may run first).
const SUBMIT_GRACE: Duration = Duration::from_millis(600);
/// How long a requested navigation may take to start loading.
const REQUEST_GRACE: Duration = Duration::from_secs(2);
/// The tallest screenshot, in CSS pixels.
const MAX_SCREENSHOT_HEIGHT: f64 = 16_384.0;

/// What [`locate`](BrowserTools::locate) must find before an action goes ahead.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// The element exists (a `<select>` may be hidden behind a custom widget).
    Exists,
    /// Visible and enabled: something to type into.
    Usable,
    /// Usable and not under another element: something to click.
    Clickable,
}

/// The answer of [`js::locate`].
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Located {
    error: Option<String>,
    found: bool,
    visible: bool,
    disabled: bool,
    covered: Option<String>,
    x: f64,
    y: f64,
    what: String,
}

/// `{ok}` or `{error}` from the page.
#[derive(Debug, Deserialize)]
struct Answer {
    ok: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PageInfo {
    url: String,
    title: String,
    status: Option<u16>,
}

/// `Accessibility.getFullAXTree`, its answer kept as JSON: Chromium is often
/// newer than chromiumoxide's typed protocol, and an unknown role or property
/// must not fail the whole reading.
#[derive(Debug, Serialize)]
struct GetFullAxTree {}

impl Method for GetFullAxTree {
    fn identifier(&self) -> MethodId {
        "Accessibility.getFullAXTree".into()
    }
}

impl Command for GetFullAxTree {
    type Response = Value;
}

impl BrowserTools {
    pub(super) async fn run(
        &self,
        name: &str,
        input: &Value,
        deadline: Instant,
    ) -> Result<String, String> {
        match name {
            OPEN => self.open(defs::parse(name, input)?, deadline).await,
            READ => self.read(defs::parse(name, input)?).await,
            CLICK => self.click(defs::parse(name, input)?, deadline).await,
            TYPE => self.type_text(defs::parse(name, input)?, deadline).await,
            SELECT => self.select(defs::parse(name, input)?, deadline).await,
            SUBMIT => self.submit(defs::parse(name, input)?, deadline).await,
            WAIT_FOR_TEXT => {
                self.wait_for_text(defs::parse(name, input)?, deadline)
                    .await
            }
            SCREENSHOT => self.screenshot(defs::parse(name, input)?).await,
            CONSOLE => {
                defs::parse::<ConsoleInput>(name, input)?;
                Ok(self.console())
            }
            _ => Err(format!(
                "no browser tool is called `{name}`; they are {}",
                defs::NAMES.join(", ")
            )),
        }
    }

    async fn open(&self, input: OpenInput, deadline: Instant) -> Result<String, String> {
        let url = self.resolve(&input.url).await?;
        if !matches!(url.scheme(), "http" | "https") || !self.shared.allows(url.as_str()) {
            let origin = url.origin();
            let origin = if origin.is_tuple() {
                origin.ascii_serialization()
            } else {
                format!("`{url}`")
            };
            return Err(format!(
                "refused: {origin} is not an allowed origin; this browser may open only {}",
                self.shared.allowed.join(", ")
            ));
        }
        // A new page starts a new console record.
        let (unread, dropped) = self.shared.take_console();
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, self.page.goto(url.as_str())).await {
            Err(_) => {
                return Err(format!(
                    "{url} did not finish loading within {}; browser_read or browser_screenshot \
                     shows what did load",
                    secs(self.config.action_timeout)
                ));
            }
            Ok(Err(CdpError::ChromeMessage(text))) => {
                let hint = match text.as_str() {
                    t if t.contains("ERR_CONNECTION_REFUSED") => {
                        " (is the app running and listening there?)"
                    }
                    t if t.contains("ERR_BLOCKED_BY_CLIENT") => {
                        " (it led to an origin that is not allowed: see browser_console)"
                    }
                    _ => "",
                };
                return Err(format!("could not open {url}: {text}{hint}"));
            }
            Ok(Err(e)) => return Err(self.cdp_error(e)),
            Ok(Ok(_)) => {}
        }
        let mut out = self.summary().await?;
        let unread = unread.len() + dropped;
        if unread > 0 {
            out.push_str(&format!(
                "\n({unread} console entries of the previous page were never read with \
                 browser_console; they are dropped)"
            ));
        }
        Ok(out)
    }

    /// A full URL, or a path taken relative to the current page.
    async fn resolve(&self, url: &str) -> Result<Url, String> {
        let url = url.trim();
        match Url::parse(url) {
            Ok(url) => Ok(url),
            Err(_) if url.starts_with('/') || url.starts_with('?') => {
                let current = self.page.url().await.map_err(|e| self.cdp_error(e))?;
                let base = current
                    .as_deref()
                    .and_then(|c| Url::parse(c).ok())
                    .filter(|c| matches!(c.scheme(), "http" | "https"))
                    .ok_or_else(|| {
                        format!(
                            "no page is open to resolve `{url}` against; give a full URL such as \
                             {}{url}",
                            self.shared.allowed[0]
                        )
                    })?;
                base.join(url)
                    .map_err(|e| format!("`{url}` is not a URL: {e}"))
            }
            Err(e) => Err(format!(
                "`{url}` is not a URL ({e}); give a full URL such as {}/",
                self.shared.allowed[0]
            )),
        }
    }

    async fn read(&self, input: ReadInput) -> Result<String, String> {
        let info = self.info().await?;
        let body = match input.format {
            ReadFormat::Text => self.eval::<String>(js::call(js::BODY_TEXT, &[])).await?,
            ReadFormat::Accessibility => {
                let tree = self
                    .page
                    .execute(GetFullAxTree {})
                    .await
                    .map_err(|e| self.cdp_error(e))?;
                snapshot::accessibility_tree(&tree.result)
            }
        };
        let head = format!("{} — {}\n\n", info.url, info.title);
        Ok(snapshot::cut(&format!("{head}{body}"), READ_LIMIT))
    }

    async fn click(&self, input: ClickInput, deadline: Instant) -> Result<String, String> {
        let (selector, text) = match (input.selector, input.text) {
            (Some(selector), None) => (Some(selector), None),
            (None, Some(text)) => (None, Some(text)),
            _ => return Err("give exactly one of `selector` or `text`".to_owned()),
        };
        let found = self
            .locate(
                selector.as_deref(),
                text.as_deref(),
                Need::Clickable,
                deadline,
            )
            .await?;
        let before = self.shared.nav();
        self.page
            .click(Point::new(found.x, found.y))
            .await
            .map_err(|e| self.cdp_error(e))?;
        let after = self.settle(before, CLICK_GRACE, deadline).await?;
        Ok(format!("clicked {}{after}", found.what))
    }

    async fn type_text(&self, input: TypeInput, deadline: Instant) -> Result<String, String> {
        let found = self
            .locate(Some(&input.selector), None, Need::Usable, deadline)
            .await?;
        #[derive(Deserialize)]
        struct Focused {
            error: Option<String>,
            #[serde(default)]
            focused: bool,
        }
        let clear = input.clear.unwrap_or(true);
        let focused: Focused = self
            .eval(js::call(
                &js::focus_field(),
                &[json!(input.selector), json!(clear)],
            ))
            .await?;
        if let Some(error) = focused.error {
            return Err(error);
        }
        if !focused.focused {
            return Err(format!(
                "{} did not take the focus (is a dialog or another field grabbing it?)",
                found.what
            ));
        }
        let before = self.shared.nav();
        // Key presses for what the US layout has (so the page sees keydown and
        // keyup), the rest inserted as text.
        let keys = self
            .page
            .find_element(input.selector.as_str())
            .await
            .map_err(|e| self.cdp_error(e))?;
        for c in input.text.chars() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "typing into {} took longer than {}",
                    found.what,
                    secs(self.config.action_timeout)
                ));
            }
            let key = match c {
                '\n' => "Enter".to_owned(),
                '\t' => "Tab".to_owned(),
                c => c.to_string(),
            };
            if chromiumoxide::keys::get_key_definition(&key).is_some() {
                keys.press_key(&key).await.map_err(|e| self.cdp_error(e))?;
            } else {
                self.page
                    .execute(InsertTextParams::new(c.to_string()))
                    .await
                    .map_err(|e| self.cdp_error(e))?;
            }
        }
        let after = self.settle(before, CLICK_GRACE, deadline).await?;
        if !after.is_empty() {
            return Ok(format!("typed into {}{after}", found.what));
        }
        let value: Option<String> = self
            .eval(js::call(&js::field_value(), &[json!(input.selector)]))
            .await?;
        Ok(format!(
            "typed into {}; its value is now {}",
            found.what,
            json!(value.unwrap_or_default())
        ))
    }

    async fn select(&self, input: SelectInput, deadline: Instant) -> Result<String, String> {
        self.locate(Some(&input.selector), None, Need::Exists, deadline)
            .await?;
        let before = self.shared.nav();
        let answer: Answer = self
            .eval(js::call(
                &js::select_option(),
                &[json!(input.selector), json!(input.value)],
            ))
            .await?;
        let done = answer_text(answer)?;
        let after = self.settle(before, CLICK_GRACE, deadline).await?;
        Ok(format!("{done}{after}"))
    }

    async fn submit(&self, input: SubmitInput, deadline: Instant) -> Result<String, String> {
        self.locate(Some(&input.selector), None, Need::Exists, deadline)
            .await?;
        let before = self.shared.nav();
        let answer: Answer = self
            .eval(js::call(&js::submit_form(), &[json!(input.selector)]))
            .await?;
        let done = answer_text(answer)?;
        let after = self.settle(before, SUBMIT_GRACE, deadline).await?;
        if after.is_empty() {
            return Ok(format!(
                "{done}; the page did not navigate (a script may have handled the submission: \
                 browser_wait_for_text or browser_read shows the result)"
            ));
        }
        Ok(format!("{done}{after}"))
    }

    async fn wait_for_text(
        &self,
        input: WaitForTextInput,
        deadline: Instant,
    ) -> Result<String, String> {
        let expression = js::call(js::HAS_TEXT, &[json!(input.text)]);
        let started = Instant::now();
        loop {
            // Errors while a new page replaces the old one are expected: retry.
            if let Ok(true) = self.eval::<bool>(expression.clone()).await {
                let waited = started.elapsed();
                return Ok(if waited < POLL {
                    format!("the page shows {}", json!(input.text))
                } else {
                    format!(
                        "the page shows {} (after {})",
                        json!(input.text),
                        secs(waited)
                    )
                });
            }
            if Instant::now() + POLL > deadline {
                break;
            }
            sleep(POLL).await;
        }
        let shown = self
            .eval::<String>(js::call(js::BODY_TEXT, &[]))
            .await
            .unwrap_or_default();
        let shown: String = shown.split_whitespace().collect::<Vec<_>>().join(" ");
        let shown: String = shown.chars().take(500).collect();
        let url = self.info().await.map(|i| i.url).unwrap_or_default();
        Err(format!(
            "{} did not appear within {}; the page ({url}) shows: {shown}",
            json!(input.text),
            secs(deadline.saturating_duration_since(started))
        ))
    }

    async fn screenshot(&self, input: ScreenshotInput) -> Result<String, String> {
        let metrics = self
            .page
            .layout_metrics()
            .await
            .map_err(|e| self.cdp_error(e))?;
        let size = &metrics.css_content_size;
        let viewport = &metrics.css_layout_viewport;
        // The whole page, not only the visible part, without resizing the
        // window (which could change the layout being photographed).
        let width = size.width.max(viewport.client_width as f64).ceil();
        let height = size
            .height
            .max(viewport.client_height as f64)
            .min(MAX_SCREENSHOT_HEIGHT)
            .ceil();
        let params = CaptureScreenshotParams::builder()
            .format(CaptureScreenshotFormat::Png)
            .clip(Viewport {
                x: 0.0,
                y: 0.0,
                width,
                height,
                scale: 1.0,
            })
            .capture_beyond_viewport(true)
            .build();
        let shot = self
            .page
            .execute(params)
            .await
            .map_err(|e| self.cdp_error(e))?;
        let data: &str = shot.result.data.as_ref();
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("Chromium sent a screenshot that is not base64: {e}"))?;

        let dir = &self.config.screenshots_dir;
        tokio::fs::create_dir_all(dir).await.map_err(|e| {
            format!(
                "cannot create the screenshots directory {}: {e}",
                dir.display()
            )
        })?;
        let file = {
            let mut shots = self.screenshots.lock().unwrap_or_else(|e| e.into_inner());
            let file = format!(
                "{:02}-{}.png",
                shots.len() + 1,
                defs::sanitise_name(&input.name)
            );
            shots.push(dir.join(&file));
            file
        };
        if let Err(e) = tokio::fs::write(dir.join(&file), &png).await {
            self.screenshots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|p| !p.ends_with(&file));
            return Err(format!("cannot write {}: {e}", dir.join(&file).display()));
        }
        let (w, h) = png_size(&png).unwrap_or((0, 0));
        Ok(format!(
            "saved {file} ({w}×{h} px, {} KB){}",
            png.len().div_ceil(1024),
            if height >= MAX_SCREENSHOT_HEIGHT {
                "; the page is taller and was cut"
            } else {
                ""
            }
        ))
    }

    fn console(&self) -> String {
        let (entries, dropped) = self.shared.take_console();
        if entries.is_empty() {
            return "none".to_owned();
        }
        let mut out = entries.join("\n");
        if dropped > 0 {
            out.push_str(&format!("\n(and {dropped} more, not kept)"));
        }
        out
    }

    /// Waits until the element is there and as usable as `need` says, up to
    /// `deadline`; the error says what was missing.
    async fn locate(
        &self,
        selector: Option<&str>,
        text: Option<&str>,
        need: Need,
        deadline: Instant,
    ) -> Result<Located, String> {
        let expression = js::call(&js::locate(), &[json!(selector), json!(text)]);
        let started = Instant::now();
        let mut last: Option<Located> = None;
        loop {
            match self.eval::<Located>(expression.clone()).await {
                Ok(Located { error: Some(e), .. }) => return Err(e),
                Ok(found) => {
                    let ready = found.found
                        && match need {
                            Need::Exists => true,
                            Need::Usable => found.visible && !found.disabled,
                            Need::Clickable => {
                                found.visible && !found.disabled && found.covered.is_none()
                            }
                        };
                    if ready {
                        return Ok(found);
                    }
                    last = Some(found);
                }
                // The page may be between documents: look again.
                Err(_) => {}
            }
            if Instant::now() + POLL > deadline {
                break;
            }
            sleep(POLL).await;
        }
        let waited = secs(deadline.saturating_duration_since(started).max(POLL));
        let what = match (selector, text) {
            (Some(selector), _) => format!("`{selector}`"),
            (None, text) => format!("the text {}", json!(text.unwrap_or_default())),
        };
        Err(match last {
            Some(found) if found.found && !found.visible => {
                format!(
                    "{what} matches {} but it stayed hidden for {waited}",
                    found.what
                )
            }
            Some(found) if found.found && found.disabled => {
                format!(
                    "{what} matches {} but it stayed disabled for {waited}",
                    found.what
                )
            }
            Some(Located {
                found: true,
                covered: Some(cover),
                what: element,
                ..
            }) => format!(
                "{what} matches {element} but {cover} covers it (still after {waited}); \
                 close or dismiss that first"
            ),
            _ if selector.is_some() => format!("no element matches {what} after {waited}"),
            _ => format!("no element shows {what} after {waited}"),
        })
    }

    /// After an action: if it started a navigation (within `grace`), waits for
    /// the new page to load and says where the browser is now; else "".
    async fn settle(
        &self,
        before: NavMark,
        grace: Duration,
        deadline: Instant,
    ) -> Result<String, String> {
        let acted = Instant::now();
        loop {
            let now = self.shared.nav();
            if now.started > before.started {
                break;
            }
            let waited = acted.elapsed();
            let requested = now.requested > before.requested;
            if (!requested && waited >= grace) || (requested && waited >= REQUEST_GRACE.max(grace))
            {
                return Ok(String::new());
            }
            if Instant::now() >= deadline {
                return Ok(String::new());
            }
            sleep(Duration::from_millis(25)).await;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, self.page.wait_for_navigation()).await {
            Err(_) => Err(format!(
                "the action started loading a new page that did not finish loading within {}",
                secs(self.config.action_timeout)
            )),
            Ok(Err(e)) => Err(self.cdp_error(e)),
            Ok(Ok(_)) => Ok(format!("; it led to {}", self.summary().await?)),
        }
    }

    async fn info(&self) -> Result<PageInfo, String> {
        self.eval(js::call(js::PAGE_INFO, &[])).await
    }

    /// `http://…/ (HTTP 200), titled "To-do"`.
    async fn summary(&self) -> Result<String, String> {
        let info = self.info().await?;
        let status = info
            .status
            .map(|s| format!(" (HTTP {s})"))
            .unwrap_or_default();
        Ok(format!(
            "{}{status}, titled {}",
            info.url,
            json!(info.title)
        ))
    }

    /// Evaluates `expression` in the page and parses its value.
    async fn eval<T: DeserializeOwned>(&self, expression: String) -> Result<T, String> {
        let params = EvaluateParams::builder()
            .expression(expression)
            .return_by_value(true)
            .await_promise(true)
            .build()
            .map_err(|e| format!("bad evaluation: {e}"))?;
        let result = self
            .page
            .evaluate_expression(params)
            .await
            .map_err(|e| match e {
                CdpError::JavascriptException(details) => {
                    format!("the page's script failed: {details}")
                }
                e => self.cdp_error(e),
            })?;
        let value = result.value().cloned().unwrap_or(Value::Null);
        serde_json::from_value(value).map_err(|e| format!("unexpected answer from the page: {e}"))
    }
}

fn answer_text(answer: Answer) -> Result<String, String> {
    match answer {
        Answer { error: Some(e), .. } => Err(e),
        Answer { ok: Some(ok), .. } => Ok(ok),
        _ => Err("the page gave no answer".to_owned()),
    }
}

/// Width and height from a PNG's IHDR chunk.
pub(super) fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 24 || &png[..8] != SIGNATURE || &png[12..16] != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(png[16..20].try_into().ok()?);
    let height = u32::from_be_bytes(png[20..24].try_into().ok()?);
    Some((width, height))
}
