//! The `browser_*` tools as the model sees them, and their inputs as parsed.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::llm::ToolDef;

pub const OPEN: &str = "browser_open";
pub const READ: &str = "browser_read";
pub const CLICK: &str = "browser_click";
pub const TYPE: &str = "browser_type";
pub const SELECT: &str = "browser_select";
pub const SUBMIT: &str = "browser_submit";
pub const WAIT_FOR_TEXT: &str = "browser_wait_for_text";
pub const SCREENSHOT: &str = "browser_screenshot";
pub const CONSOLE: &str = "browser_console";

pub const NAMES: &[&str] = &[
    OPEN,
    READ,
    CLICK,
    TYPE,
    SELECT,
    SUBMIT,
    WAIT_FOR_TEXT,
    SCREENSHOT,
    CONSOLE,
];

/// The longest `browser_wait_for_text` may wait.
pub const MAX_WAIT_SECS: u64 = 120;

fn object(properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn def(name: &str, description: &str, input_schema: Value) -> ToolDef {
    ToolDef {
        name: name.to_owned(),
        description: description.to_owned(),
        input_schema,
    }
}

pub fn all() -> Vec<ToolDef> {
    let selector = json!({
        "type": "string",
        "description": "A CSS selector, e.g. `input[name=title]`, `#save`, `form.add-item`; \
                        the first visible element it matches is used."
    });
    vec![
        def(
            OPEN,
            "Open a URL in the browser (one tab, kept between calls) and wait for it to load. Only \
             the app under test's origins may be opened; others are refused, and so are requests \
             the page makes to them. Returns the final URL (after redirects), the HTTP status and \
             the page title. Starts a new record of console errors.",
            object(
                json!({"url": {
                    "type": "string",
                    "description": "A full http(s) URL on an allowed origin, or a path such as \
                                    `/items?page=2` taken relative to the current page."
                }}),
                &["url"],
            ),
        ),
        def(
            READ,
            "Read the current page, as a person would see it (`text`: its visible text) or as a \
             screen reader would (`accessibility`: one element per line, `role \"name\"` and \
             state such as value=, checked, disabled, indented by nesting). The accessibility \
             form shows form fields, buttons and their labels; use it to find what to click or \
             type into. Long pages are cut at 30000 characters with a note.",
            object(
                json!({"format": {
                    "type": "string",
                    "enum": ["text", "accessibility"],
                    "description": "`text` (the default) or `accessibility`."
                }}),
                &[],
            ),
        ),
        def(
            CLICK,
            "Click an element with the mouse, as a user would, after scrolling it into view; \
             waits (up to the action timeout, 10 s by default) for it to exist, be visible, \
             enabled and not covered by another element. Give exactly one of `selector` or \
             `text`. If the click starts a navigation, waits for the new page to load.",
            object(
                json!({
                    "selector": selector,
                    "text": {
                        "type": "string",
                        "description": "The visible text of the element to click (a button, link, \
                                        label, tab…), ignoring case and spacing; an exact match \
                                        wins over a partial one."
                    }
                }),
                &[],
            ),
        ),
        def(
            TYPE,
            "Type text into a text field (input, textarea or contenteditable) with key presses, \
             as a user would; `\\n` presses Enter. Returns the field's value afterwards.",
            object(
                json!({
                    "selector": selector,
                    "text": {"type": "string", "description": "What to type."},
                    "clear": {
                        "type": "boolean",
                        "description": "Empty the field first (default true); false appends."
                    }
                }),
                &["selector", "text"],
            ),
        ),
        def(
            SELECT,
            "Choose an option of a <select> element, firing its input and change events.",
            object(
                json!({
                    "selector": selector,
                    "value": {
                        "type": "string",
                        "description": "The option's value attribute, or else its visible label."
                    }
                }),
                &["selector", "value"],
            ),
        ),
        def(
            SUBMIT,
            "Submit a form as its submit button would (the browser's validation and the page's \
             submit handlers run), then wait for the resulting page to load. A form the browser \
             refuses to submit (a required field empty, say) comes back as an error naming the \
             fields.",
            object(
                json!({"selector": {
                    "type": "string",
                    "description": "A CSS selector for the form, or for any element inside it \
                                    (its submit button is best: its name and value are sent)."
                }}),
                &["selector"],
            ),
        ),
        def(
            WAIT_FOR_TEXT,
            "Wait until the page's visible text contains `text` (spacing ignored, case kept), \
             e.g. a message that appears after an action. Fails after `timeout_secs` with the \
             start of what the page shows instead.",
            object(
                json!({
                    "text": {"type": "string", "description": "The text to wait for."},
                    "timeout_secs": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_WAIT_SECS,
                        "description": "How long to wait (default: the action timeout, 10 s)."
                    }
                }),
                &["text"],
            ),
        ),
        def(
            SCREENSHOT,
            "Save a PNG of the whole page (not only the visible part) as evidence for your report. \
             Returns the file's path relative to the screenshots directory and its size.",
            object(
                json!({"name": {
                    "type": "string",
                    "description": "A short name such as `after-adding-item`; letters, digits, \
                                    `-` and `_` only (others become `-`). Files are numbered in \
                                    order: `01-after-adding-item.png`."
                }}),
                &["name"],
            ),
        ),
        def(
            CONSOLE,
            "The console errors, uncaught exceptions, failed resource loads and refused requests \
             since the last call, or since the current page was opened; `none` when there were \
             none. Check it after each step: a page can look right while its scripts fail.",
            object(json!({}), &[]),
        ),
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenInput {
    pub url: String,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum ReadFormat {
    #[default]
    Text,
    Accessibility,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadInput {
    #[serde(default)]
    pub format: ReadFormat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickInput {
    pub selector: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeInput {
    pub selector: String,
    pub text: String,
    pub clear: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectInput {
    pub selector: String,
    pub value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitInput {
    pub selector: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForTextInput {
    pub text: String,
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreenshotInput {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleInput {}

/// `input` as `T`, or an error the model can act on.
pub fn parse<T: serde::de::DeserializeOwned>(name: &str, input: &Value) -> Result<T, String> {
    // Some models send `null` or nothing for a tool without arguments.
    let input = if input.is_null() { &json!({}) } else { input };
    serde_json::from_value(input.clone()).map_err(|e| {
        let schema = all()
            .into_iter()
            .find(|d| d.name == name)
            .map(|d| d.input_schema["properties"].to_string())
            .unwrap_or_default();
        format!("bad input for {name}: {e}; its fields are {schema}")
    })
}

/// `name` cut down to `[A-Za-z0-9_-]` (others become `-`), at most 60
/// characters, `screenshot` if nothing is left.
pub fn sanitise_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(60)
        .collect();
    let clean = clean.trim_matches('-');
    if clean.is_empty() {
        "screenshot".to_owned()
    } else {
        clean.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_takes_a_closed_object() {
        let defs = all();
        assert_eq!(defs.len(), NAMES.len());
        for (def, name) in defs.iter().zip(NAMES) {
            assert_eq!(&def.name, name);
            assert_eq!(def.input_schema["type"], "object");
            assert_eq!(def.input_schema["additionalProperties"], false);
        }
    }

    #[test]
    fn screenshot_names_keep_only_safe_characters() {
        assert_eq!(
            sanitise_name("after adding/../item"),
            "after-adding----item"
        );
        assert_eq!(sanitise_name("../"), "screenshot");
        assert_eq!(sanitise_name("ok_1-2"), "ok_1-2");
    }

    #[test]
    fn bad_input_names_the_fields() {
        let err = parse::<OpenInput>(OPEN, &json!({"href": "x"})).unwrap_err();
        assert!(
            err.contains("unknown field `href`") && err.contains("\"url\""),
            "{err}"
        );
        assert!(parse::<ConsoleInput>(CONSOLE, &Value::Null).is_ok());
    }
}
