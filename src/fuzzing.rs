//! The bodies of the fuzz targets in `fuzz/` (cargo-fuzz, see `docs/fuzzing.md`),
//! kept here so that the targets are one-liners and `tests/fuzz_regressions.rs`
//! replays the seeds and every input that ever crashed on stable Rust.
//!
//! Each function takes arbitrary bytes, runs them through the App's real entry
//! for that kind of untrusted input, and asserts properties that must hold for
//! *every* input (a panic is a finding):
//! - [`webhook`]: a delivery as the App receives it: the `X-Hub-Signature-256`
//!   check, the envelope the inbox indexes, the typed event, and the mission
//!   input the event loop records.
//! - [`model_output`]: what models and job branches hand back: plans (with
//!   `check` and `to_markdown`), orchestrator outputs, handoffs, reviews,
//!   validation reports and job envelopes, and the role schemas the models are
//!   told to follow.
//! - [`repo_config`]: `.github/missions.yml`, untrusted YAML from repositories.

use std::sync::OnceLock;

use secrecy::SecretString;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::agent::FinishSpec;
use crate::engine::missions::MissionInput;
use crate::engine::missions::input::job_key_in_title;
use crate::github::events::{ActorType, WebhookEvent};
use crate::github::webhook::{Envelope, SignatureError, WebhookSecrets, sign, valid_header_token};
use crate::job::prompts::{SchemaKind, finish_schema};
use crate::mission::machine::{issue_of_branch, milestone_branch, plan_branch, reports_branch};
use crate::mission::outputs::{AssertionResult, FeatureReview, Verdict};
use crate::mission::plan::valid_id;
use crate::mission::{
    Assertion, Command, Handoff, JobOutput, JobResult, OrchestratorOutput, Plan, ValidationReport,
};
use crate::repo_config::RepoConfig;

/// The secret deliveries are signed with in [`webhook`], and the previous one
/// (still accepted during a rotation). Not secrets: fuzzing constants.
const SECRET: &[u8] = b"fuzz-webhook-secret";
const OLD_SECRET: &[u8] = b"fuzz-webhook-secret-before-rotation";

/// Longest `X-GitHub-Event` the receiver stores (as `server::webhook` checks it).
const MAX_EVENT_LEN: usize = 64;

/// [`webhook`]'s input as bytes: the `X-GitHub-Event` value, the
/// `X-Hub-Signature-256` value (empty: no header) and the body, one line each
/// for the first two. Seeds are written this way (see `.ci/fuzz`).
pub fn webhook_input(event: &str, signature: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{event}\n{signature}\n").into_bytes();
    out.extend_from_slice(body);
    out
}

/// One webhook delivery: `<X-GitHub-Event>\n<X-Hub-Signature-256>\n<body>`
/// (see [`webhook_input`]).
///
/// Checks that a signature made with [`sign`] verifies (with the current and the
/// previous secret), that one changed byte of the signature or of the body does
/// not, that the given header verifies exactly when it is `sha256=` and the
/// body's HMAC in hex; then, as the event loop does for a stored delivery, that
/// the typed event agrees with the envelope the inbox indexed, serialises and
/// parses back to itself, and that the mission input it yields survives the JSON
/// the store keeps it as.
pub fn webhook(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let event = parts.next().unwrap_or_default();
    let header = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();

    check_signatures(header, body);

    // The receiver refuses (400) an event name that is not a short token, so
    // only those reach the parser.
    let Ok(event) = std::str::from_utf8(event) else {
        return;
    };
    if !valid_header_token(event, MAX_EVENT_LEN) {
        return;
    }
    let envelope = Envelope::read(body);
    let parsed = WebhookEvent::parse(event, body);
    let known = WebhookEvent::KNOWN_EVENTS.contains(&event);
    let ev = match parsed {
        Ok(ev) => ev,
        Err(e) => {
            assert!(known, "an unknown event is never parsed, so never fails");
            assert_eq!(e.event, event);
            // The message is cut (it may quote user text), and so is the error.
            assert!(
                e.message.chars().count() <= 161,
                "error message not cut: {}",
                e.message.len()
            );
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(ev.event_name(), event);
    assert_eq!(ev.is_known(), known);
    if !known {
        assert!(ev.action().is_none() && ev.repository().is_none() && ev.sender().is_none());
        return;
    }
    check_envelope(&ev, envelope.as_ref());

    // What the App serialises of an event parses back to the same event.
    let json = event_json(&ev);
    let again = WebhookEvent::parse(event, &json)
        .unwrap_or_else(|e| panic!("a serialised {event} event does not parse: {e}"));
    assert_eq!(again, ev, "{event}: the JSON round trip changed the event");

    if let Some(sender) = ev.sender() {
        let s = crate::engine::missions::Sender::from(sender);
        assert_eq!(s.is_bot, sender.kind == ActorType::Bot);
    }
    if let Some(input) = MissionInput::from_event(&ev) {
        check_mission_input(&ev, &input);
    }
}

fn check_signatures(header: &[u8], body: &[u8]) {
    let secrets = WebhookSecrets::new(&[
        SecretString::from(String::from_utf8_lossy(SECRET).into_owned()),
        SecretString::from(String::from_utf8_lossy(OLD_SECRET).into_owned()),
    ]);
    let good = sign(SECRET, body);
    assert_eq!(secrets.verify(Some(good.as_bytes()), body), Ok(()));
    let old = sign(OLD_SECRET, body);
    assert_eq!(secrets.verify(Some(old.as_bytes()), body), Ok(()));
    // Hex is case-insensitive.
    let upper = format!("sha256={}", good["sha256=".len()..].to_ascii_uppercase());
    assert_eq!(secrets.verify(Some(upper.as_bytes()), body), Ok(()));
    // Signed with another secret.
    assert_eq!(
        secrets.verify(Some(sign(b"not-the-secret", body).as_bytes()), body),
        Err(SignatureError::Mismatch)
    );
    // One hex digit changed, anywhere (the position comes from the body).
    let mut flipped = good.clone().into_bytes();
    let at = "sha256=".len() + body.iter().map(|&b| b as usize).sum::<usize>() % 64;
    flipped[at] = if flipped[at] == b'0' { b'1' } else { b'0' };
    assert_eq!(
        secrets.verify(Some(&flipped), body),
        Err(SignatureError::Mismatch)
    );
    // One byte of the body changed.
    if !body.is_empty() {
        let mut tampered = body.to_vec();
        let at = body.len() / 2;
        tampered[at] ^= 0x01;
        assert_eq!(
            secrets.verify(Some(good.as_bytes()), &tampered),
            Err(SignatureError::Mismatch)
        );
    }
    // A truncated signature is malformed, not a mismatch.
    assert_eq!(
        secrets.verify(Some(&good.as_bytes()[..good.len() - 1]), body),
        Err(SignatureError::Malformed)
    );

    // The header given: exactly what the specification says.
    let header = (!header.is_empty()).then_some(header);
    let expected = match header {
        None => Err(SignatureError::Missing),
        Some(h) => match h.strip_prefix(b"sha256=") {
            Some(hex) if hex.len() == 64 && hex.iter().all(u8::is_ascii_hexdigit) => {
                let lower = hex.to_ascii_lowercase();
                if lower == good.as_bytes()["sha256=".len()..]
                    || lower == old.as_bytes()["sha256=".len()..]
                {
                    Ok(())
                } else {
                    Err(SignatureError::Mismatch)
                }
            }
            _ => Err(SignatureError::Malformed),
        },
    };
    assert_eq!(secrets.verify(header, body), expected, "header {header:?}");
}

/// The envelope the inbox stores in columns agrees with the typed event.
fn check_envelope(ev: &WebhookEvent, envelope: Option<&Envelope<'_>>) {
    let has_action = ev.action().is_some();
    let has_repo = !matches!(
        ev,
        WebhookEvent::Ping(_)
            | WebhookEvent::Installation(_)
            | WebhookEvent::InstallationRepositories(_)
    );
    let installation_fits = ev
        .installation_id()
        .is_none_or(|id| i64::try_from(id).is_ok());
    // Every field the envelope reads is one the typed event read too, so an
    // event with all three parsed has a readable envelope.
    let Some(envelope) = envelope else {
        assert!(
            !(has_action && has_repo && installation_fits),
            "the typed event parsed but the inbox's envelope did not"
        );
        return;
    };
    if has_action {
        assert_eq!(envelope.action.as_deref(), ev.action(), "envelope action");
    }
    if has_repo {
        assert_eq!(
            envelope.repository.as_ref().map(|r| r.full_name.as_ref()),
            ev.repository().map(|r| r.full_name.as_str()),
            "envelope repository"
        );
    }
    if !matches!(ev, WebhookEvent::Ping(_)) {
        assert_eq!(
            envelope.installation.as_ref().map(|i| i.id),
            ev.installation_id().map(|id| id as i64),
            "envelope installation"
        );
    }
}

/// The event's payload struct as JSON, as the App would write it.
fn event_json(ev: &WebhookEvent) -> Vec<u8> {
    fn to<T: Serialize>(value: &T) -> Vec<u8> {
        serde_json::to_vec(value).expect("events serialise")
    }
    match ev {
        WebhookEvent::Issues(e) => to(e),
        WebhookEvent::IssueComment(e) => to(e),
        WebhookEvent::PullRequest(e) => to(e),
        WebhookEvent::PullRequestReview(e) => to(e),
        WebhookEvent::PullRequestReviewComment(e) => to(e),
        WebhookEvent::CheckRun(e) => to(e),
        WebhookEvent::CheckSuite(e) => to(e),
        WebhookEvent::MergeGroup(e) => to(e),
        WebhookEvent::WorkflowRun(e) => to(e),
        WebhookEvent::WorkflowJob(e) => to(e),
        WebhookEvent::Installation(e) => to(e),
        WebhookEvent::InstallationRepositories(e) => to(e),
        WebhookEvent::Push(e) => to(e),
        WebhookEvent::Ping(e) => to(e),
        WebhookEvent::Unknown { .. } => Vec::new(),
    }
}

fn check_mission_input(ev: &WebhookEvent, input: &MissionInput) {
    // The event loop stores the input as JSON; the driver reads it back.
    round_trip(input, "mission input");
    let sender = match input {
        MissionInput::Labeled { sender, .. }
        | MissionInput::Comment { sender, .. }
        | MissionInput::Edited { sender, .. }
        | MissionInput::Review { sender, .. }
        | MissionInput::Merged { sender, .. }
        | MissionInput::Rerun { sender, .. } => Some(sender),
        MissionInput::Run { .. }
        | MissionInput::ExternalCheck { .. }
        | MissionInput::Synchronized { .. }
        | MissionInput::MergeGroup { .. } => None,
    };
    if let Some(sender) = sender {
        assert!(input.describe().contains(&format!("@{}", sender.login)));
    }
    match input {
        MissionInput::Labeled { .. } | MissionInput::Comment { .. } => {
            assert!(input.may_concern_a_mission());
        }
        MissionInput::MergeGroup { pr_head_sha, .. } => {
            // Only a group that names its pull request and that head.
            assert_eq!(pr_head_sha.len(), 40);
            assert!(input.may_concern_a_mission());
        }
        MissionInput::Edited { .. } => {
            assert!(input.may_concern_a_mission());
            // Only an issue's edits: a pull request's are not the mission's text.
            if let WebhookEvent::Issues(e) = ev {
                assert!(!e.issue.is_pull_request());
            }
        }
        MissionInput::Review { head_branch, .. }
        | MissionInput::Merged { head_branch, .. }
        | MissionInput::Rerun { head_branch, .. }
        | MissionInput::ExternalCheck { head_branch, .. }
        | MissionInput::Synchronized { head_branch, .. }
        | MissionInput::Run { head_branch, .. } => {
            assert_eq!(input.issue(), issue_of_branch(head_branch));
            assert_eq!(input.may_concern_a_mission(), input.issue().is_some());
            // Fork PRs never concern a mission.
            if let WebhookEvent::PullRequest(e) = ev {
                assert!(!e.pull_request.is_from_fork(&e.repository.full_name));
            }
            if let WebhookEvent::PullRequestReview(e) = ev {
                assert!(!e.pull_request.is_from_fork(&e.repository.full_name));
            }
        }
    }
    match input {
        MissionInput::Comment { body, .. } => {
            let _ = Command::parse(body);
            // Text quoted from someone else is never a command.
            let quoted: String = body.lines().map(|l| format!("> {l}\n")).collect();
            assert_eq!(Command::parse(&quoted), None, "a quoted command counted");
        }
        MissionInput::Run {
            display_title: Some(title),
            ..
        } => {
            if let Some(key) = job_key_in_title(title) {
                assert!(title.split_whitespace().any(|w| w == key));
                assert!(key.contains('.') && !key.starts_with('.'));
            }
        }
        _ => {}
    }
}

/// `value` survives its JSON: what is stored is what is read back.
fn round_trip<T>(value: &T, what: &str)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_string(value).expect("serialises");
    let back: T = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("{what}: its own JSON does not parse: {e}\n{json}"));
    assert_eq!(&back, value, "{what}: the JSON round trip changed it");
}

// ------------------------------------------------------------------ model output

/// The role schemas, compiled once.
fn schemas() -> &'static [(SchemaKind, FinishSpec); 4] {
    static SCHEMAS: OnceLock<[(SchemaKind, FinishSpec); 4]> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        [
            SchemaKind::Orchestrator,
            SchemaKind::Handoff,
            SchemaKind::Review,
            SchemaKind::UserTesting,
        ]
        .map(|kind| {
            let spec = FinishSpec::new(finish_schema(kind), "").expect("built-in schemas compile");
            (kind, spec)
        })
    })
}

/// Model output as JSON text: whatever it parses as (a plan, an orchestrator
/// output, a handoff, a review, a validation report, a job envelope), it is
/// checked as that.
///
/// Properties: every typed value survives its JSON; a value that matches a
/// role's schema (what the model is told) is one its type reads (what the
/// harness then does); a plan that passes `check` has distinct, readable
/// branch names and coverage for every assertion, and its markdown keeps every
/// table row on one line with the right number of cells; a report passes
/// exactly when it has no failures; failures are one line each.
pub fn model_output(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(plan) = serde_json::from_str::<Plan>(text) {
        check_plan(&plan);
    }
    if let Ok(out) = serde_json::from_str::<OrchestratorOutput>(text) {
        round_trip(&out, "orchestrator output");
        if let OrchestratorOutput::Plan { plan } = &out {
            check_plan(plan);
        }
    }
    if let Ok(handoff) = serde_json::from_str::<Handoff>(text) {
        check_handoff(&handoff);
    }
    if let Ok(review) = serde_json::from_str::<FeatureReview>(text) {
        round_trip(&review, "feature review");
    }
    if let Ok(report) = serde_json::from_str::<ValidationReport>(text) {
        check_report(&report);
    }
    if let Ok(job) = serde_json::from_str::<JobOutput>(text) {
        round_trip(&job, "job output");
        match &job.result {
            JobResult::Orchestrator {
                output: OrchestratorOutput::Plan { plan },
                ..
            } => check_plan(plan),
            JobResult::Worker { handoff } => check_handoff(handoff),
            JobResult::Validator { report } => check_report(report),
            _ => {}
        }
    }
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        check_schemas(&value);
    }
}

/// A value the schema accepts is one the harness can read as its type.
fn check_schemas(value: &Value) {
    for (kind, spec) in schemas() {
        if !spec.violations(value).is_empty() {
            continue;
        }
        match kind {
            SchemaKind::Orchestrator => {
                let out: OrchestratorOutput =
                    serde_json::from_value(value.clone()).unwrap_or_else(|e| {
                        panic!("matches the orchestrator schema but is no OrchestratorOutput: {e}")
                    });
                round_trip(&out, "orchestrator output");
            }
            SchemaKind::Handoff => {
                let handoff: Handoff = serde_json::from_value(value.clone()).unwrap_or_else(|e| {
                    panic!("matches the handoff schema but is no Handoff: {e}")
                });
                check_handoff(&handoff);
            }
            SchemaKind::Review => {
                // The reviewer's value is a FeatureReview plus its assertion results.
                let mut review = value.clone();
                let results = review
                    .as_object_mut()
                    .and_then(|o| o.remove("assertions"))
                    .expect("the review schema requires assertions");
                let review: FeatureReview = serde_json::from_value(review).unwrap_or_else(|e| {
                    panic!("matches the review schema but is no FeatureReview: {e}")
                });
                round_trip(&review, "feature review");
                let _: Vec<AssertionResult> = serde_json::from_value(results).unwrap_or_else(|e| {
                    panic!("matches the review schema but its assertions are not results: {e}")
                });
            }
            SchemaKind::UserTesting => {
                let _: Vec<AssertionResult> = serde_json::from_value(value["assertions"].clone())
                    .unwrap_or_else(|e| {
                        panic!("matches the user-testing schema but its assertions are not results: {e}")
                    });
                assert!(value["summary"].is_string());
            }
        }
    }
}

fn check_plan(plan: &Plan) {
    let errors = plan.check();
    assert_eq!(plan.check(), errors, "check is not deterministic");
    for e in &errors {
        let _ = e.to_string();
    }
    // Whatever the plan, these do not panic.
    let _ = plan.coverage();
    for i in 0..=plan.milestones.len() {
        let _ = plan.milestone_assertions(i);
    }
    if !errors.is_empty() {
        return;
    }
    // A sound plan: what the server stores it as, and what it derives from it.
    round_trip(plan, "plan");
    for (id, features) in plan.coverage() {
        assert!(!features.is_empty(), "sound plan, but {id} is uncovered");
    }
    let issue = 7;
    let mut branches = vec![plan_branch(issue), reports_branch(issue)];
    for (i, m) in plan.milestones.iter().enumerate() {
        let branch = milestone_branch(issue, &m.id);
        assert_eq!(issue_of_branch(&branch), Some(issue), "branch {branch}");
        assert!(
            !branches.contains(&branch),
            "sound plan, but milestone {} shares the branch {branch}",
            m.id
        );
        branches.push(branch);
        for f in &m.features {
            let (at, found) = plan.feature(&f.id).expect("its own feature");
            assert_eq!((at, found), (i, f), "feature ids are unique");
        }
        for a in plan.milestone_assertions(i) {
            assert!(plan.assertion(&a.id).is_some());
        }
    }

    let md = plan.to_markdown(issue);
    let head = format!(
        "# Mission plan for #{issue}: {}\n\n{}\n\n## Validation contract\n\n",
        plan.title, plan.summary
    );
    let rest = md
        .strip_prefix(&head)
        .expect("plan.md starts with the title, summary and contract");
    let mut lines = rest.lines();
    expect_table(
        &mut lines,
        "| id | assertion | features |",
        plan.assertions.len(),
    );
    for a in &plan.assertions {
        assert!(md.contains(&format!("| {} |", a.id)));
    }
    for m in &plan.milestones {
        assert!(md.contains(&format!("\n## {}: ", m.id)));
    }
}

/// Reads a markdown table from `lines`: the header, the delimiter row, then
/// `rows` rows, each with the header's number of cells.
fn expect_table<'a>(lines: &mut impl Iterator<Item = &'a str>, header: &str, rows: usize) {
    assert_eq!(lines.next(), Some(header), "table header");
    let cells = table_cells(header);
    let delimiter = lines.next().expect("delimiter row");
    assert_eq!(table_cells(delimiter), cells, "delimiter row {delimiter:?}");
    for _ in 0..rows {
        let row = lines.next().expect("a row per item");
        assert_eq!(
            table_cells(row),
            cells,
            "a table row with the wrong number of cells: {row:?}"
        );
    }
}

/// The number of cells of a GitHub-flavoured markdown table row: cells are
/// split at pipes that no backslash escapes (`\\` escapes a backslash, in code
/// spans too), and the leading and trailing pipes delimit rather than split.
fn table_cells(row: &str) -> usize {
    let mut pipes = 0usize;
    let mut chars = row.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '|' => pipes += 1,
            _ => {}
        }
    }
    pipes.saturating_sub(1)
}

fn check_handoff(handoff: &Handoff) {
    round_trip(handoff, "handoff");
    let open = handoff.issues.iter().filter(|i| !i.resolved).count();
    let resolved = handoff.issues.len() - open;
    assert_eq!(
        handoff.needs_triage(),
        !handoff.undone.is_empty() || open > 0
    );
    // The milestone PR's comment: every item one list line, the command table whole.
    let md = handoff.to_markdown("Title");
    let head = format!(
        "### Handoff: {} Title\n\n{}\n\n**Completed**\n\n",
        handoff.feature, handoff.summary
    );
    let rest = md
        .strip_prefix(&head)
        .expect("the handoff's markdown starts with its summary");
    let mut lines = rest.lines();
    expect_items(&mut lines, handoff.completed.len());
    if !handoff.undone.is_empty() {
        expect_section(&mut lines, "**Left undone**");
        expect_items(&mut lines, handoff.undone.len());
    }
    if open > 0 {
        expect_section(
            &mut lines,
            "**Unresolved issues** (the orchestrator triages these before the next feature)",
        );
        expect_items(&mut lines, open);
    }
    expect_section(&mut lines, "<details><summary>Details</summary>");
    expect_table(
        &mut lines,
        "| command | exit code |",
        handoff.commands.len(),
    );
    if resolved > 0 {
        expect_section(&mut lines, "Issues found and resolved:");
        expect_items(&mut lines, resolved);
    }
    assert_eq!(lines.next(), Some(""));
    let followed = lines.next().expect("whether procedures were followed");
    assert!(
        followed.starts_with("Followed the procedures: "),
        "{followed:?}"
    );
    assert_eq!(lines.next(), Some(""));
    assert_eq!(lines.next(), Some("</details>"));
    assert_eq!(lines.next(), None, "nothing after the details");
}

/// A blank line, `title`, a blank line.
fn expect_section<'a>(lines: &mut impl Iterator<Item = &'a str>, title: &str) {
    assert_eq!(lines.next(), Some(""), "a blank line before {title:?}");
    assert_eq!(lines.next(), Some(title));
    assert_eq!(lines.next(), Some(""), "a blank line after {title:?}");
}

/// `count` list items, one line each.
fn expect_items<'a>(lines: &mut impl Iterator<Item = &'a str>, count: usize) {
    for _ in 0..count {
        let item = lines.next().expect("a line per item");
        assert!(item.starts_with("- "), "a list item spans lines: {item:?}");
    }
}

fn check_report(report: &ValidationReport) {
    round_trip(report, "validation report");
    // What the plan expects: every assertion the report judged, and one it did not.
    // Ids come from a checked plan, so they are plain.
    let mut ids: Vec<String> = report
        .assertions
        .iter()
        .map(|a| a.id.clone())
        .filter(|id| valid_id(id))
        .collect();
    ids.push(
        (0..)
            .map(|n| format!("A{n}"))
            .find(|id| !ids.contains(id))
            .expect("a free id"),
    );
    let contract: Vec<Assertion> = ids
        .iter()
        .map(|id| Assertion {
            id: id.clone(),
            text: format!("assertion {id}"),
            check: None,
        })
        .collect();
    for n in [0, contract.len() - 1, contract.len()] {
        let expected: Vec<&Assertion> = contract[..n].iter().collect();
        let failures = report.failures(&expected);
        assert_eq!(report.passed(&expected), failures.is_empty());
        for f in &failures {
            assert!(!f.contains('\n'), "a failure is one line: {f:?}");
        }
        let judged_pass = |a: &&Assertion| {
            report
                .assertions
                .iter()
                .find(|r| r.id == a.id)
                .is_some_and(|r| r.status == Verdict::Pass)
        };
        let failing = expected.iter().filter(|a| !judged_pass(a)).count()
            + report.commands.iter().filter(|c| !c.passed()).count()
            + report
                .reviews
                .iter()
                .filter(|r| r.verdict == Verdict::Fail)
                .count();
        assert_eq!(failures.len(), failing, "one failure per problem");

        let md = report.to_markdown(&expected);
        let rest = md
            .strip_prefix(&format!("{}\n\n", report.summary))
            .expect("the report's markdown starts with its summary");
        let mut lines = rest.lines();
        expect_table(
            &mut lines,
            "| assertion | status | evidence |",
            expected.len(),
        );
        if !report.commands.is_empty() {
            assert_eq!(lines.next(), Some(""));
            expect_table(&mut lines, "| command | exit code |", report.commands.len());
        }
        if !report.reviews.is_empty() {
            assert_eq!(lines.next(), Some(""));
            expect_table(
                &mut lines,
                "| feature | review | findings |",
                report.reviews.len(),
            );
        }
        assert_eq!(lines.next(), None, "nothing after the tables");
    }
}

// ------------------------------------------------------------------- repo config

/// `.github/missions.yml` as a repository holds it: whatever the YAML, parsing
/// ends in a config or an error naming the file, never a panic; the same text
/// always gives the same answer; and an accepted config meets every rule the
/// App relies on (ranges, plain relative paths, http(s) URLs, non-blank
/// commands).
pub fn repo_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = RepoConfig::parse(text);
    match (&parsed, RepoConfig::parse(text)) {
        (Ok(a), Ok(b)) => assert_eq!(a, &b, "parse is not deterministic"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("parse is not deterministic"),
    }
    let cfg = match parsed {
        Ok(cfg) => cfg,
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains(crate::llm::config::REPO_CONFIG_PATH),
                "an error that does not name the file: {message}"
            );
            return;
        }
    };
    assert_eq!(cfg.label, cfg.label.trim());
    assert!((1..=50).contains(&cfg.label.chars().count()), "label");
    if let Some(usd) = cfg.budget_usd {
        assert!(
            usd.is_finite() && (0.0..=1e9).contains(&usd),
            "budget {usd}"
        );
    }
    let r = cfg.reserve;
    for micros in [r.orchestrator, r.worker, r.scrutiny, r.user_testing] {
        assert!(micros <= 1_000_000_000_000_000, "reserve {micros}");
    }
    assert!((1..=100).contains(&cfg.max_attempts));
    assert!((1..=100).contains(&cfg.max_validation_rounds));
    for (kind, command) in cfg.commands.all() {
        assert!(!command.trim().is_empty(), "a blank {kind} command");
    }
    if let Some(start) = &cfg.app.start {
        assert!(!start.trim().is_empty());
    }
    if let Some(url) = &cfg.app.url {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .expect("an http(s) URL");
        assert!(!rest.is_empty() && !rest.starts_with('/'), "url {url:?}");
    }
    assert!((1..=3600).contains(&cfg.app.ready_timeout_secs));
    let dir = &cfg.prompts_dir;
    assert!(
        !dir.is_empty()
            && !dir.starts_with('/')
            && dir
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != ".."),
        "prompts_dir {dir:?}"
    );
    cfg.models
        .validate()
        .expect("an accepted config's models validate");
    let settings = cfg.settings();
    assert_eq!(settings.max_attempts, cfg.max_attempts);
    assert_eq!(settings.budget_micros.is_some(), cfg.budget_usd.is_some());
}
