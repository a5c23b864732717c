//! GitHub's webhook payload schemas (`../shared/github-fixtures/webhook-schemas/`,
//! from octokit/webhooks) as a checker: a payload the App parses, serialises, or the
//! simulator delivers must validate against the schema of its event and action.
//!
//! The schemas are JSON Schema draft-07 whose references resolve against `$id`, and
//! every `$id` is a *relative* URI:
//! - an event schema has `$id` `"<event>$<action>"` (`push$event`, `ping$event`) and
//!   refers to `"common/<name>.schema.json"`;
//! - a common schema has `$id` `"common/<name>.schema.json"` and refers to its
//!   siblings by bare file name (`"user.schema.json"`).
//!
//! Python's `referencing` keys resources by those relative strings and joins them
//! like paths. The Rust `referencing` crate needs absolute URIs, and it resolves a
//! document's own `$id` against the URI the document is registered under. So a common
//! schema registered at `<BASE>common/issue.schema.json` while still carrying
//! `$id: "common/issue.schema.json"` would take the base
//! `<BASE>common/common/issue.schema.json`, and its `"user.schema.json"` would point
//! at `<BASE>common/common/user.schema.json`, which does not exist. The loader
//! therefore rewrites each `$id` to `<BASE><$id>` (an absolute URI) and registers the
//! document under that same URI. Relative references then resolve as intended:
//! `"common/user.schema.json"` from `<BASE>issues$opened` and `"user.schema.json"`
//! from `<BASE>common/issue.schema.json` both give `<BASE>common/user.schema.json`.
//! `BASE` is a made-up host (`.invalid` is reserved); nothing is fetched (the crate is
//! built without `resolve-http`/`resolve-file`, so an unregistered reference fails the
//! load instead).
//!
//! The custom keyword `tsAdditionalProperties` is an unknown keyword to draft-07 and
//! is ignored by the validator.
//!
//! Formats (`uri`, `uri-template`, `date-time`): the jsonschema crate asserts them
//! for draft-07 by default; Python's `jsonschema`, with which the README checked the
//! examples, only annotates them unless given a format checker. With the crate's
//! defaults one published example fails: `check_run/rerequested.json` has
//! `check_run.app.created_at` (and `updated_at`, also under `check_suite.app`) =
//! `"2018-04-25 20:42:10"`, GitHub's older timestamp form (space, no offset), which
//! is not RFC 3339. Rather than switch every format off, `date-time` is asserted
//! with a checker accepting RFC 3339 and exactly that `YYYY-MM-DD HH:MM:SS` form;
//! `uri` and `uri-template` keep the crate's checks (all examples pass them).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use jsonschema::{Registry, Validator};
use serde_json::{Value, json};

/// Where the relative `$id`s are made absolute. See the module comment.
const BASE: &str = "https://webhook-schemas.invalid/";

/// At most this many violations are reported for one payload.
const MAX_ERRORS: usize = 20;
/// A violation's message is cut after this many characters (a failing `anyOf` or
/// `type` would otherwise print a whole repository object).
const MAX_MESSAGE: usize = 300;

/// Events whose payload has no `action`: their schema is `<event>/event.schema.json`.
const ACTIONLESS: [&str; 2] = ["push", "ping"];

pub struct WebhookSchemas {
    /// `"<event>/<action>"` (`"push/event"`) -> validator for that event schema.
    validators: BTreeMap<String, Validator>,
    /// Every registered `$id`, as written in the file (relative).
    ids: Vec<String>,
}

impl WebhookSchemas {
    /// Loaded once per test binary.
    pub fn get() -> &'static WebhookSchemas {
        static SCHEMAS: OnceLock<WebhookSchemas> = OnceLock::new();
        SCHEMAS.get_or_init(|| {
            let root = super::fixtures_dir().join("webhook-schemas/api.github.com");
            WebhookSchemas::load(&root)
        })
    }

    fn load(root: &Path) -> WebhookSchemas {
        // (relative $id, schema with absolute $id, "<event>/<action>" for event schemas)
        let mut documents: Vec<(String, Value, Option<String>)> = Vec::new();
        let mut dirs: Vec<_> = std::fs::read_dir(root)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()))
            .map(|d| d.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            let folder = dir.file_name().unwrap().to_string_lossy().into_owned();
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|f| f.unwrap().path())
                .collect();
            files.sort();
            for path in files {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let Some(stem) = name.strip_suffix(".schema.json") else {
                    continue;
                };
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                let mut schema: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
                let id = schema["$id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{} has no $id", path.display()))
                    .to_owned();
                // The layout the README promises; a schema whose $id disagrees with its
                // file would be registered where nothing refers to it.
                let (expected_id, key) = if folder == "common" {
                    (format!("common/{name}"), None)
                } else {
                    (format!("{folder}${stem}"), Some(format!("{folder}/{stem}")))
                };
                assert_eq!(id, expected_id, "$id of {}", path.display());
                schema["$id"] = Value::String(format!("{BASE}{id}"));
                documents.push((id, schema, key));
            }
        }
        assert!(!documents.is_empty(), "no schemas under {}", root.display());

        let registry = Registry::new()
            .extend(
                documents
                    .iter()
                    .map(|(id, schema, _)| (format!("{BASE}{id}"), schema)),
            )
            .and_then(|builder| builder.prepare())
            .unwrap_or_else(|e| panic!("the webhook schemas do not load: {e}"));

        let mut validators = BTreeMap::new();
        for (id, _, key) in &documents {
            let Some(key) = key else { continue };
            // The event schema is already in the registry under its $id; the validator's
            // root only points at it.
            let validator = jsonschema::draft7::options()
                .with_registry(&registry)
                .should_validate_formats(true)
                .with_format("date-time", is_github_date_time)
                .build(&json!({ "$ref": format!("{BASE}{id}") }))
                .unwrap_or_else(|e| panic!("schema {id} does not compile: {e}"));
            validators.insert(key.clone(), validator);
        }
        // The registry borrows `documents`; the validators own what they compiled.
        drop(registry);
        WebhookSchemas {
            validators,
            ids: documents.into_iter().map(|(id, _, _)| id).collect(),
        }
    }

    /// The schema key for an event and action: `"<event>/<action>"`, or
    /// `"<event>/event"` for `push` and `ping` (whose action is ignored).
    fn key(event: &str, action: Option<&str>) -> Option<String> {
        if ACTIONLESS.contains(&event) {
            Some(format!("{event}/event"))
        } else {
            action.map(|action| format!("{event}/{action}"))
        }
    }

    /// Whether there is a schema for this event (the `X-GitHub-Event` value) and
    /// action (the payload's `action`; `None` for `push` and `ping`).
    pub fn schema_exists(&self, event: &str, action: Option<&str>) -> bool {
        Self::key(event, action).is_some_and(|key| self.validators.contains_key(&key))
    }

    /// `"<event>/<action>"` of every event schema loaded (`"push/event"`, `"ping/event"`).
    pub fn event_schemas(&self) -> impl Iterator<Item = &str> {
        self.validators.keys().map(String::as_str)
    }

    /// Every schema file's `$id` as written in it (`"issues$opened"`,
    /// `"common/user.schema.json"`), each registered under `<BASE><$id>`.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Checks a payload delivered with `X-GitHub-Event: <event>` against the schema of
    /// its event and `action` field. Errors: one line per violation (instance path as
    /// a JSON pointer, then the message; at most 20), or one line saying there is no
    /// schema for that event/action.
    pub fn validate(&self, event: &str, payload: &Value) -> Result<(), Vec<String>> {
        let action = payload.get("action").and_then(Value::as_str);
        let Some(key) = Self::key(event, action) else {
            return Err(vec![format!(
                "a {event} payload needs a string \"action\" to choose its schema"
            )]);
        };
        let Some(validator) = self.validators.get(&key) else {
            return Err(vec![format!(
                "no webhook schema for event {event:?} action {:?} (no {key}.schema.json)",
                action.unwrap_or_default()
            )]);
        };
        let mut errors: Vec<String> = Vec::new();
        let mut total = 0usize;
        for error in validator.iter_errors(payload) {
            total += 1;
            if errors.len() < MAX_ERRORS {
                let path = error.instance_path().to_string();
                let path = if path.is_empty() {
                    "/".to_owned()
                } else {
                    path
                };
                errors.push(format!("at {path}: {}", truncate(&error.to_string())));
            }
        }
        if total > errors.len() {
            errors.push(format!("... and {} more", total - errors.len()));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// `date-time` as GitHub's payloads write it: RFC 3339 (`2019-05-15T15:20:31Z`,
/// `2019-05-15T11:20:31-04:00`), or the older `2018-04-25 20:42:10` (no offset) that
/// GitHub's own `check_run/rerequested` example carries. See the module comment.
fn is_github_date_time(text: &str) -> bool {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    time::OffsetDateTime::parse(text, &Rfc3339).is_ok()
        || time::PrimitiveDateTime::parse(
            text,
            format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        )
        .is_ok()
}

fn truncate(message: &str) -> String {
    if message.chars().count() <= MAX_MESSAGE {
        message.to_owned()
    } else {
        let cut: String = message.chars().take(MAX_MESSAGE).collect();
        format!("{cut}…")
    }
}

/// The first published example for an event and action: `webhooks/<event>/<action>.json`
/// (`push/push.json`, `ping/ping.json` when `action` is `None`). Variants (`-2`, …)
/// are in `webhook_fixtures()`.
pub fn example_for(event: &str, action: Option<&str>) -> Option<Value> {
    let file = format!("{}.json", action.unwrap_or(event));
    super::webhook_fixtures()
        .into_iter()
        .find(|f| f.event == event && f.file == file)
        .map(|f| f.json)
}

/// Structural comparison with an example: the JSON paths (`$.pull_request.head.repo.id`,
/// `$.commits[0].author.name`) of keys that the example has and `actual` lacks.
///
/// Objects are compared key by key, down to `depth` levels of objects (`depth` 1: only
/// the top-level keys; 0: nothing). An array is compared through its first element
/// on each side (no level used); an empty array on either side compares nothing.
/// A key counts as present whatever its value: `null` in `actual` is accepted (it is
/// the schema's business whether that field is nullable), and nothing below it is
/// compared; likewise nothing is compared below a key whose example value is `null`.
/// If `actual` has a non-object where the example has an object, all the example's
/// keys there are reported.
pub fn missing_keys(example: &Value, actual: &Value, depth: usize) -> Vec<String> {
    let mut missing = Vec::new();
    compare(example, actual, depth, "$", &mut missing);
    missing
}

fn compare(example: &Value, actual: &Value, depth: usize, path: &str, out: &mut Vec<String>) {
    match (example, actual) {
        (Value::Object(expected), actual) if depth > 0 => {
            if actual.is_null() {
                return;
            }
            let actual = actual.as_object();
            for (key, value) in expected {
                let child = format!("{path}.{key}");
                match actual.and_then(|a| a.get(key)) {
                    None => out.push(child),
                    Some(found) => compare(value, found, depth - 1, &child, out),
                }
            }
        }
        (Value::Array(expected), Value::Array(actual)) => {
            if let (Some(first), Some(found)) = (expected.first(), actual.first()) {
                compare(first, found, depth, &format!("{path}[0]"), out);
            }
        }
        _ => {}
    }
}
