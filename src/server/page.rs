//! Mission control's web page: `/` lists the missions, `/missions/{owner}/{repo}/{issue}`
//! shows one in depth. Server-rendered HTML (readable without JavaScript); the
//! script at `/assets/control.js` subscribes to the mission's feed and re-renders
//! the same markup from every `mission` event, and draws the cost chart.
//!
//! Everything shown comes from models and users: every text is escaped, links are
//! kept only when they are http(s), and a strict Content-Security-Policy forbids
//! inline scripts and styles (the script and the style sheet are served here, no
//! CDN). The routes sit behind the API's access rule (`super::control`: this
//! machine only, or the token and a known host).

use std::fmt::Write as _;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::control::ControlState;
use crate::mission::control::{Links, MissionView};
use crate::store::missions as db;

/// No inline script or style, nothing from elsewhere, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const SCRIPT: &str = include_str!("assets/control.js");
const STYLE: &str = include_str!("assets/control.css");
const ICON: &str = include_str!("assets/icon.svg");

/// The page's routes, for [`super::control::routes`] to put behind its access rule.
pub fn routes() -> Router<ControlState> {
    Router::new()
        .route("/", get(index))
        .route("/missions/{owner}/{repo}/{issue}", get(mission))
        .route("/assets/control.js", get(script))
        .route("/assets/control.css", get(style))
        .route("/assets/icon.svg", get(icon))
}

/// A response with the page's security headers.
fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    respond(status, "text/html; charset=utf-8", body)
}

async fn script() -> Response {
    respond(
        StatusCode::OK,
        "text/javascript; charset=utf-8",
        SCRIPT.to_owned(),
    )
}

async fn style() -> Response {
    respond(StatusCode::OK, "text/css; charset=utf-8", STYLE.to_owned())
}

async fn icon() -> Response {
    respond(StatusCode::OK, "image/svg+xml", ICON.to_owned())
}

fn failed(e: anyhow::Error) -> Response {
    tracing::error!(error = format!("{e:#}"), "mission control page failed");
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        document(
            "Mission control",
            "<p>Mission control could not read the database.</p>",
            false,
        ),
    )
}

async fn index(State(state): State<ControlState>) -> Response {
    let missions = match db::all(state.store.pool()).await {
        Ok(m) => m,
        Err(e) => return failed(e),
    };
    let now = state.clock.now().unix_timestamp();
    let views: Vec<MissionView> = missions
        .iter()
        .map(|stored| {
            let m = &stored.mission;
            MissionView::of(m, now, &Links::from_api(&state.api_base, &m.repo))
        })
        .collect();
    html(
        StatusCode::OK,
        document("Mission control", &render_list(&views), false),
    )
}

async fn mission(
    State(state): State<ControlState>,
    Path((owner, repo, issue)): Path<(String, String, u64)>,
) -> Response {
    let full = format!("{owner}/{repo}");
    let found = async {
        let mut conn = state.store.pool().acquire().await?;
        db::find(&mut conn, &full, issue).await
    }
    .await;
    let stored = match found {
        Ok(Some(stored)) => stored,
        Ok(None) => {
            let body = format!(
                "<h1>No such mission</h1><p>{} has no mission on issue #{issue}. <a href=\"/\">All missions</a></p>",
                esc(&full)
            );
            return html(
                StatusCode::NOT_FOUND,
                document("No such mission", &body, false),
            );
        }
        Err(e) => return failed(e),
    };
    let now = state.clock.now().unix_timestamp();
    let links = Links::from_api(&state.api_base, &full);
    let view = MissionView::of(&stored.mission, now, &links);
    let api = format!("/api/missions/{}/{}", view.repo, view.issue);
    let main = format!(
        "<main id=\"mission\" data-api=\"{}\" data-events=\"{}/events\" data-repo-web=\"{}\">{}</main>",
        esc(&api),
        esc(&api),
        esc(&links.repo_web),
        render_mission(&view, &links.repo_web)
    );
    let title = format!("{}#{} · mission control", view.repo, view.issue);
    html(StatusCode::OK, document(&title, &main, true))
}

/// The page around `body` (already HTML); with the script when `live`.
fn document(title: &str, body: &str, live: bool) -> String {
    let (script, status) = match live {
        true => (
            "<script src=\"/assets/control.js\" defer></script>",
            "<span class=\"live\" data-testid=\"live\">connecting…</span>",
        ),
        false => ("", ""),
    };
    let body = if body.starts_with("<main") {
        body.to_owned()
    } else {
        format!("<main>{body}</main>")
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/assets/control.css\">\
         <link rel=\"icon\" href=\"/assets/icon.svg\" type=\"image/svg+xml\">{script}</head>\
         <body><header class=\"top\"><a href=\"/\">Mission control</a>{status}</header>\n{body}\n</body></html>\n",
        esc(title)
    )
}

/// Text as HTML, for element content and quoted attributes alike.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A link to `url` only when it is http(s): a `javascript:` URL from a model is text.
fn link(url: Option<&str>, text: &str) -> String {
    match url {
        Some(u) if u.starts_with("https://") || u.starts_with("http://") => {
            format!(
                "<a href=\"{}\" rel=\"noopener noreferrer\">{}</a>",
                esc(u),
                esc(text)
            )
        }
        _ => esc(text),
    }
}

/// `2024-05-01 12:00:00 UTC`, as the script writes it.
fn when(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| at.to_string())
}

/// `42s`, `3m 05s`, `2h 07m`, as the script writes it.
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}

fn dollars(micros: u64) -> String {
    crate::mission::machine::dollars(micros)
}

/// A CSS class from a word (`waiting for merge` → `waiting-for-merge`).
fn class(word: &str) -> String {
    word.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

fn render_list(views: &[MissionView]) -> String {
    let mut out = String::from("<h1>Missions</h1>");
    if views.is_empty() {
        out.push_str(
            "<p data-testid=\"no-missions\">No missions yet: label an issue <code>mission</code> to start one.</p>",
        );
        return out;
    }
    out.push_str(
        "<table class=\"list\" data-testid=\"missions\"><thead><tr><th>repository</th><th>issue</th>\
         <th>title</th><th>phase</th><th>progress</th><th>spent</th></tr></thead><tbody>",
    );
    for v in views {
        let href = format!("/missions/{}/{}", v.repo, v.issue);
        let phase = match &v.paused {
            Some(_) => format!("{} (paused)", v.phase),
            None => v.phase.to_owned(),
        };
        let _ = write!(
            out,
            "<tr data-testid=\"mission-row\"><td>{repo}</td><td><a href=\"{href}\">#{issue}</a></td>\
             <td><a href=\"{href}\">{title}</a></td><td><span class=\"phase phase-{pc}\">{phase}</span></td>\
             <td><progress max=\"{mt}\" value=\"{md}\"></progress> {md}/{mt} milestones · {fd}/{ft} features · \
             {ad}/{at} assertions</td><td class=\"num\">${spent}</td></tr>",
            repo = esc(&v.repo),
            href = esc(&href),
            issue = v.issue,
            title = esc(v.title.as_deref().unwrap_or("(no plan yet)")),
            pc = class(v.phase),
            phase = esc(&phase),
            mt = v.milestone.total.max(1),
            md = v.milestone.done,
            fd = v.features.done,
            ft = v.features.total,
            ad = v.assertions.done,
            at = v.assertions.total,
            spent = esc(&v.budget.spent),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// The mission's markup; `control.js` builds the same from the view's JSON.
pub fn render_mission(v: &MissionView, repo_web: &str) -> String {
    let mut o = String::new();
    // Head: what, and in which state.
    let _ = write!(
        o,
        "<section class=\"head\"><h1>{} <span data-testid=\"title\">{}</span></h1>\
         <p class=\"state\">State: <span class=\"phase phase-{}\" data-testid=\"phase\">{}</span>",
        link(Some(&v.issue_url), &format!("{}#{}", v.repo, v.issue)),
        esc(v.title.as_deref().unwrap_or("(no plan yet)")),
        class(v.phase),
        esc(v.phase)
    );
    if let Some(reason) = &v.paused {
        let _ = write!(
            o,
            " <span class=\"paused\" data-testid=\"paused\">paused: {}</span>",
            esc(reason)
        );
    }
    o.push_str("</p></section>");

    // The figures.
    let t = &v.budget.tokens;
    let _ = write!(
        o,
        "<section class=\"cards\">\
         <div class=\"card\" data-testid=\"milestones\"><h2>Milestones</h2>\
         <progress max=\"{mt1}\" value=\"{md}\" data-testid=\"milestone-bar\"></progress>\
         <p><span class=\"big\" data-testid=\"milestones-done\">{md}</span> of <span data-testid=\"milestones-total\">{mt}</span> merged</p></div>\
         <div class=\"card\" data-testid=\"features\"><h2>Features</h2>\
         <progress max=\"{ft1}\" value=\"{fd}\"></progress>\
         <p><span class=\"big\" data-testid=\"features-done\">{fd}</span> of <span data-testid=\"features-total\">{ft}</span> done</p></div>\
         <div class=\"card\" data-testid=\"assertions\"><h2>Assertions</h2>\
         <progress max=\"{at1}\" value=\"{ad}\"></progress>\
         <p><span class=\"big\" data-testid=\"assertions-done\">{ad}</span> of <span data-testid=\"assertions-total\">{at}</span> passing</p></div>\
         <div class=\"card\" data-testid=\"budget\"><h2>Budget</h2>",
        mt1 = v.milestone.total.max(1),
        mt = v.milestone.total,
        md = v.milestone.done,
        ft1 = v.features.total.max(1),
        ft = v.features.total,
        fd = v.features.done,
        at1 = v.assertions.total.max(1),
        at = v.assertions.total,
        ad = v.assertions.done,
    );
    if let Some(limit) = v.budget.limit_micros {
        let _ = write!(
            o,
            "<progress max=\"{}\" value=\"{}\"></progress>",
            limit.max(1),
            v.budget.spent_micros.min(limit)
        );
    }
    let _ = write!(
        o,
        "<p><span class=\"big\">$<span data-testid=\"budget-spent\">{}</span></span> of <span data-testid=\"budget-limit\">{}</span></p>\
         <p class=\"small\" data-testid=\"budget-tokens\">tokens: <span data-testid=\"tokens-in\">{}</span> in · \
         <span data-testid=\"tokens-out\">{}</span> out · <span data-testid=\"tokens-cache-read\">{}</span> cache read · \
         <span data-testid=\"tokens-cache-write\">{}</span> cache write</p></div></section>",
        esc(&v.budget.spent),
        match &v.budget.limit {
            Some(l) => format!("${}", esc(l)),
            None => "no limit".to_owned(),
        },
        t.input_tokens,
        t.output_tokens,
        t.cache_read_tokens,
        t.cache_write_tokens
    );

    // Now: the active job, the last handoff, the pull requests.
    o.push_str("<section class=\"panels\"><div class=\"panel\" data-testid=\"active-job\"><h2>Active job</h2>");
    match &v.active_job {
        Some(j) => {
            let _ = write!(
                o,
                "<p><code data-testid=\"active-job-key\">{}</code> ({}) on <code>{}</code></p>\
                 <p>running for <span class=\"big\" data-testid=\"active-job-elapsed\">{}</span></p><p>{}</p>",
                esc(&j.key),
                esc(&j.role),
                esc(&j.branch),
                duration(j.elapsed_secs),
                link(j.run_url.as_deref(), "the job's run")
            );
        }
        None => o.push_str("<p class=\"none\">none</p>"),
    }
    o.push_str("</div><div class=\"panel\" data-testid=\"last-handoff\"><h2>Last handoff</h2>");
    match &v.last_handoff {
        Some(h) => {
            let _ = write!(
                o,
                "<p><code>{}</code> at {}{}</p><p class=\"prose\">{}</p>",
                esc(&h.feature),
                when(h.at),
                if h.needs_triage {
                    " <span class=\"flag\">triage needed</span>"
                } else {
                    ""
                },
                esc(&h.summary)
            );
        }
        None => o.push_str("<p class=\"none\">none yet</p>"),
    }
    o.push_str(
        "</div><div class=\"panel\" data-testid=\"pull-requests\"><h2>Pull requests</h2><ul>",
    );
    let pull = |n: u64| link(Some(&format!("{repo_web}/pull/{n}")), &format!("#{n}"));
    match v.plan_pr {
        Some(n) => {
            let _ = write!(o, "<li data-testid=\"plan-pr\">plan {}</li>", pull(n));
        }
        None => o.push_str("<li class=\"none\">no plan PR yet</li>"),
    }
    for ms in &v.milestones {
        let _ = write!(
            o,
            "<li data-testid=\"milestone-{}\"><code>{}</code> {} {} <span class=\"ms ms-{}\">{}</span></li>",
            esc(&ms.id),
            esc(&ms.id),
            esc(&ms.title),
            ms.pull_request.map(pull).unwrap_or_default(),
            class(ms.state),
            esc(ms.state)
        );
    }
    o.push_str("</ul></div>");
    if !v.ci.is_empty() {
        // The repository's own CI on the ready commit, which must pass too.
        o.push_str(
            "<div class=\"panel\" data-testid=\"repository-checks\"><h2>Repository checks</h2><ul>",
        );
        for c in &v.ci {
            let _ = write!(
                o,
                "<li>{} <span class=\"ms ms-{}\">{}</span></li>",
                link(c.url.as_deref(), &c.name),
                class(&c.state),
                esc(&c.state)
            );
        }
        o.push_str("</ul></div>");
    }
    o.push_str("</section>");

    // Cost over time: the script draws the chart from `usage`.
    o.push_str(
        "<section data-testid=\"cost\"><h2>Cost over time, by role</h2>\
         <div class=\"chart\" data-testid=\"cost-chart\"><p class=\"none\">The chart is drawn by the page's script.</p></div>\
         <table class=\"roles\" data-testid=\"by-role\"><thead><tr><th>role</th><th>cost</th><th>tokens in</th>\
         <th>tokens out</th><th>cache read</th><th>cache write</th></tr></thead><tbody>",
    );
    for (role, u) in &v.budget.by_role {
        let _ = write!(
            o,
            "<tr data-testid=\"role-{}\"><td>{}</td><td class=\"num\">${}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(role),
            esc(role),
            dollars(u.cost_micros),
            u.input_tokens,
            u.output_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens
        );
    }
    o.push_str("</tbody></table></section>");

    // The contract.
    o.push_str(
        "<section><h2>Validation contract</h2><table class=\"contract\" data-testid=\"contract\"><thead><tr>\
         <th>id</th><th>assertion</th><th>covered by</th><th>status</th><th>evidence</th></tr></thead><tbody>",
    );
    for row in &v.contract {
        let _ = write!(
            o,
            "<tr data-testid=\"contract-row-{id}\" class=\"st-{sc}\"><td data-testid=\"id\"><code>{id}</code></td>\
             <td data-testid=\"text\">{text}</td><td data-testid=\"covered-by\">{features}</td>\
             <td><span class=\"status st-{sc}\" data-testid=\"status\">{status}</span></td><td data-testid=\"evidence\">",
            id = esc(&row.id),
            text = esc(&row.text),
            features = esc(&row.features.join(", ")),
            sc = class(row.status),
            status = esc(row.status),
        );
        if row.verdicts.is_empty() {
            o.push_str("<span class=\"none\">not judged yet</span>");
        } else {
            o.push_str("<ul>");
            for verdict in &row.verdicts {
                let name = verdict.validator.as_str();
                let _ = write!(
                    o,
                    "<li data-testid=\"verdict-{name}\"><b>{name}</b> {mark} <span class=\"small\">({ms}, round {round})</span> {evidence}</li>",
                    mark = if verdict.passed {
                        "✓ passed"
                    } else {
                        "✗ failed"
                    },
                    ms = esc(&verdict.milestone),
                    round = verdict.round,
                    evidence = esc(&verdict.evidence),
                );
            }
            o.push_str("</ul>");
        }
        o.push_str("</td></tr>");
    }
    if v.contract.is_empty() {
        o.push_str("<tr><td colspan=\"5\" class=\"none\">no contract yet (it comes with the plan)</td></tr>");
    }
    o.push_str("</tbody></table></section>");

    // The timeline.
    o.push_str(
        "<section><h2>Timeline</h2><table class=\"timeline\" data-testid=\"timeline\"><thead><tr><th>ended</th>\
         <th>job</th><th>role</th><th>outcome</th><th>took</th><th>cost</th><th>tokens</th><th>run</th></tr></thead><tbody>",
    );
    for e in &v.timeline {
        let _ = write!(
            o,
            "<tr data-testid=\"timeline-row\"><td class=\"small\">{}</td><td><code>{}</code></td><td>{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">${}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            when(e.ended_at),
            esc(&e.key),
            esc(e.role.as_deref().unwrap_or("")),
            esc(&e.outcome),
            duration(e.ended_at - e.started_at),
            dollars(e.cost_micros),
            e.tokens,
            link(e.run_url.as_deref(), "run")
        );
    }
    if v.timeline.is_empty() {
        o.push_str("<tr><td colspan=\"8\" class=\"none\">no job has finished yet</td></tr>");
    }
    o.push_str("</tbody></table></section>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_only_web_links_are_links() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(link(Some("javascript:alert(1)"), "run"), "run");
        assert_eq!(
            link(Some("https://example.test/a?b=1&c=\"2\""), "<run>"),
            "<a href=\"https://example.test/a?b=1&amp;c=&quot;2&quot;\" rel=\"noopener noreferrer\">&lt;run&gt;</a>"
        );
    }

    #[test]
    fn mission_text_from_models_and_users_is_never_markup() {
        use crate::mission::control::*;
        use crate::mission::machine::HandoffNote;
        use crate::mission::outputs::{JobUsage, Validator};
        let evil = "<img src=x onerror=alert(1)>\"'&";
        let view = MissionView {
            repo: "o/r".into(),
            issue: 1,
            issue_url: "javascript:alert(1)".into(),
            title: Some(evil.into()),
            phase: "building",
            paused: Some(evil.into()),
            milestone: Progress { done: 0, total: 1 },
            milestones: vec![MilestoneView {
                id: evil.into(),
                title: evil.into(),
                features: vec![],
                pull_request: Some(3),
                state: "current",
            }],
            features: Progress { done: 0, total: 1 },
            assertions: Progress { done: 0, total: 1 },
            contract: vec![AssertionRow {
                id: evil.into(),
                text: evil.into(),
                features: vec![evil.into()],
                status: "failing",
                verdicts: vec![ValidatorVerdict {
                    validator: Validator::Scrutiny,
                    passed: false,
                    evidence: evil.into(),
                    milestone: evil.into(),
                    round: 1,
                }],
            }],
            budget: Budget {
                spent_micros: 0,
                limit_micros: None,
                spent: "0.00".into(),
                limit: None,
                tokens: JobUsage::default(),
                by_role: [(evil.to_owned(), JobUsage::default())].into(),
                estimated_micros: 1,
                estimated: Some(evil.into()),
            },
            active_job: Some(ActiveJob {
                key: evil.into(),
                role: evil.into(),
                branch: evil.into(),
                run_url: Some("javascript:alert(1)".into()),
                dispatched_at: 0,
                elapsed_secs: 5,
            }),
            last_handoff: Some(HandoffNote {
                feature: evil.into(),
                summary: evil.into(),
                needs_triage: true,
                at: 0,
            }),
            plan_pr: Some(2),
            timeline: vec![TimelineEntry {
                key: evil.into(),
                role: Some(evil.into()),
                started_at: 0,
                ended_at: 1,
                outcome: evil.into(),
                cost_micros: 0,
                tokens: 0,
                run_url: Some(evil.into()),
                estimated: true,
            }],
            usage: vec![],
            warnings: vec![evil.into()],
            ci: vec![crate::mission::control::CiCheckView {
                name: evil.into(),
                state: evil.into(),
                url: Some("javascript:alert(1)".into()),
            }],
        };
        let html = render_mission(&view, "https://github.com/o/r");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;"));
        assert!(html.contains("href=\"https://github.com/o/r/pull/2\""));
    }

    /// The page sits behind the API's access rule, with its security headers:
    /// without a token, requests made on this machine only (loopback peer, no
    /// proxy's forwarding header, a loopback `Host`); with one, the token and a
    /// known `Host`; nothing without a token when the server listens beyond loopback.
    #[tokio::test]
    async fn the_page_answers_loopback_or_the_token_only() {
        use axum::body::Body;
        use axum::extract::ConnectInfo;
        use axum::http::Request;
        use std::net::SocketAddr;
        use tower::ServiceExt;

        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::store::Store::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
                .await
                .unwrap();
        let (_tx, changes) = tokio::sync::watch::channel(0);
        let state = |token: Option<&str>, hosts: &[&str], beyond_loopback: bool| ControlState {
            store: store.clone(),
            clock: crate::clock::system(),
            api_base: "https://api.github.com".into(),
            token: token.map(|t| secrecy::SecretString::from(t.to_owned())),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            listens_beyond_loopback: beyond_loopback,
            changes: changes.clone(),
        };
        // A request from `from`, with `Host: host` and `headers`.
        let get = |path: &str, from: &str, host: &str, headers: &[(&str, &str)]| {
            let mut r = Request::get(path).header(header::HOST, host);
            for (name, value) in headers {
                r = r.header(*name, *value);
            }
            let mut r = r.body(Body::empty()).unwrap();
            r.extensions_mut()
                .insert(ConnectInfo(from.parse::<SocketAddr>().unwrap()));
            r
        };
        let status = |router: &axum::Router, request: Request<Body>| {
            let router = router.clone();
            async move { router.oneshot(request).await.unwrap().status() }
        };
        let body_of = |router: &axum::Router, request: Request<Body>| {
            let router = router.clone();
            async move {
                let r = router.oneshot(request).await.unwrap();
                let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
                String::from_utf8(bytes.to_vec()).unwrap()
            }
        };
        const LOCAL: &str = "127.0.0.1:5000";

        // Without a token: this machine only.
        let open = super::super::control::routes(state(None, &[], false));
        let r = open
            .clone()
            .oneshot(get("/", LOCAL, "127.0.0.1:3000", &[]))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        for host in ["localhost:3000", "LOCALHOST", "127.8.9.10:1", "[::1]:3000"] {
            assert_eq!(
                status(&open, get("/api/missions", LOCAL, host, &[])).await,
                StatusCode::OK,
                "{host}"
            );
        }
        assert_eq!(
            status(&open, get("/missions/o/r/1", LOCAL, "localhost:3000", &[])).await,
            StatusCode::NOT_FOUND
        );
        let r = open
            .clone()
            .oneshot(get("/assets/control.js", "[::1]:5000", "[::1]:3000", &[]))
            .await
            .unwrap();
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        // Another machine.
        assert_eq!(
            status(&open, get("/", "10.0.0.7:5000", "127.0.0.1:3000", &[])).await,
            StatusCode::UNAUTHORIZED
        );
        // Behind a proxy on this machine (Caddy, nginx): the peer is loopback,
        // the client anyone. Whatever the header claims.
        for forwarded in super::super::control::FORWARDING_HEADERS {
            let request = get("/", LOCAL, "127.0.0.1:3000", &[(forwarded, "127.0.0.1")]);
            assert_eq!(
                status(&open, request).await,
                StatusCode::UNAUTHORIZED,
                "{forwarded}"
            );
        }
        let told = body_of(
            &open,
            get(
                "/api/missions",
                LOCAL,
                "missions.example",
                &[("x-forwarded-for", "203.0.113.9")],
            ),
        )
        .await;
        assert!(told.contains("x-forwarded-for"), "{told}");
        assert!(told.contains("MISSIONS_CONTROL_TOKEN"), "{told}");
        assert!(told.contains("Authorization: Bearer"), "{told}");
        // A page elsewhere whose name was rebound to 127.0.0.1 (DNS rebinding),
        // and names that only look local.
        for host in [
            "evil.example",
            "evil.example:3000",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "[::2]:3000",
            "0.0.0.0:3000",
        ] {
            assert_eq!(
                status(&open, get("/api/missions", LOCAL, host, &[])).await,
                StatusCode::UNAUTHORIZED,
                "{host}"
            );
        }
        let told = body_of(&open, get("/", LOCAL, "evil.example", &[])).await;
        assert!(told.contains("`evil.example`"), "{told}");
        assert!(told.contains("control_token"), "{told}");
        // Two hosts at once, or none.
        let mut two = get("/", LOCAL, "127.0.0.1:3000", &[]);
        two.headers_mut()
            .append(header::HOST, "evil.example".parse().unwrap());
        assert_eq!(status(&open, two).await, StatusCode::UNAUTHORIZED);
        let mut none = get("/", LOCAL, "127.0.0.1:3000", &[]);
        none.headers_mut().remove(header::HOST);
        assert_eq!(status(&open, none).await, StatusCode::UNAUTHORIZED);
        let absolute = {
            let mut r = Request::get("http://evil.example/api/missions")
                .header(header::HOST, "127.0.0.1:3000")
                .body(Body::empty())
                .unwrap();
            r.extensions_mut()
                .insert(ConnectInfo(LOCAL.parse::<SocketAddr>().unwrap()));
            r
        };
        assert_eq!(status(&open, absolute).await, StatusCode::UNAUTHORIZED);

        // Listening beyond loopback without a token: off, even for this machine.
        let off = super::super::control::routes(state(None, &[], true));
        let told = body_of(&off, get("/", LOCAL, "127.0.0.1:3000", &[])).await;
        assert!(told.contains("off"), "{told}");
        assert!(told.contains("MISSIONS_CONTROL_TOKEN"), "{told}");
        assert_eq!(
            status(&off, get("/api/missions", LOCAL, "localhost", &[])).await,
            StatusCode::UNAUTHORIZED
        );

        // With a token: required from everyone, and the Host must be known.
        let guarded =
            super::super::control::routes(state(Some("s3cret"), &["missions.example"], true));
        let bearer = ("authorization", "Bearer s3cret");
        assert_eq!(
            status(&guarded, get("/", LOCAL, "127.0.0.1:3000", &[])).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(
                &guarded,
                get(
                    "/",
                    LOCAL,
                    "127.0.0.1:3000",
                    &[("authorization", "Bearer s3creT")]
                )
            )
            .await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(
                &guarded,
                get("/", "10.0.0.7:5000", "127.0.0.1:3000", &[bearer])
            )
            .await,
            StatusCode::OK
        );
        // Through the proxy, by the name people use.
        assert_eq!(
            status(
                &guarded,
                get(
                    "/api/missions",
                    LOCAL,
                    "Missions.Example:443",
                    &[bearer, ("x-forwarded-for", "203.0.113.9")]
                )
            )
            .await,
            StatusCode::OK
        );
        // A name not on the list, token or not.
        for headers in [&[bearer][..], &[]] {
            assert_eq!(
                status(
                    &guarded,
                    get("/api/missions", LOCAL, "evil.example", headers)
                )
                .await,
                StatusCode::MISDIRECTED_REQUEST
            );
        }
        let told = body_of(&guarded, get("/", LOCAL, "evil.example", &[bearer])).await;
        assert!(told.contains("`evil.example`"), "{told}");
        assert!(told.contains("control_hosts"), "{told}");
    }

    #[test]
    fn durations_and_times_read_as_the_script_writes_them() {
        assert_eq!(duration(-3), "0s");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(185), "3m 05s");
        assert_eq!(duration(7620), "2h 07m");
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(class("waiting for merge"), "waiting-for-merge");
    }
}
