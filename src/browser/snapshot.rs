//! The page as the model reads it: a compact accessibility tree (role and name
//! per line, indented) from `Accessibility.getFullAXTree`, and the cut that
//! keeps any reading under [`READ_LIMIT`] characters.

use std::collections::HashMap;
use std::fmt::Write;

use serde_json::Value;

/// The most characters one `browser_read` returns.
pub const READ_LIMIT: usize = 30_000;

/// Roles that only group or lay out: shown through their children.
const TRANSPARENT: &[&str] = &["none", "generic", "presentation", "LineBreak"];

/// Roles never shown (their children are): list bullets and text fragments.
const NOISE: &[&str] = &["ListMarker", "InlineTextBox"];

/// `text` cut to `limit` characters at a line end, with a note saying so.
pub fn cut(text: &str, limit: usize) -> String {
    let total = text.chars().count();
    if total <= limit {
        return text.to_owned();
    }
    let end = text
        .char_indices()
        .nth(limit)
        .map_or(text.len(), |(i, _)| i);
    let kept = &text[..end];
    let kept = kept.rfind('\n').map_or(kept, |i| &kept[..i]);
    format!(
        "{kept}\n[cut: {total} characters in all, only the first {} shown; read the \
         accessibility tree or wait for a narrower page]",
        kept.chars().count()
    )
}

/// The tree `Accessibility.getFullAXTree` returned (`{"nodes": [...]}`), one
/// node per line: `role "name"` and its state (`value=`, `checked`, …),
/// children indented by two spaces. Ignored and purely structural nodes are
/// left out (their children move up); a node without a name whose children are
/// all text shows that text after a colon: `listitem: Buy milk`.
pub fn accessibility_tree(result: &Value) -> String {
    let nodes: Vec<&Value> = result
        .get("nodes")
        .and_then(Value::as_array)
        .map(|nodes| nodes.iter().collect())
        .unwrap_or_default();
    let by_id: HashMap<&str, &Value> = nodes
        .iter()
        .filter_map(|node| Some((node.get("nodeId")?.as_str()?, *node)))
        .collect();
    let tree = Tree { by_id };
    let mut out = String::new();
    for node in &nodes {
        let parent = node.get("parentId").and_then(Value::as_str);
        if parent.is_none_or(|id| !tree.by_id.contains_key(id)) {
            tree.write(node, 0, "", &mut out);
        }
    }
    if out.is_empty() {
        "(the accessibility tree is empty: is a page open?)".to_owned()
    } else {
        out
    }
}

struct Tree<'a> {
    by_id: HashMap<&'a str, &'a Value>,
}

impl<'a> Tree<'a> {
    fn children(&self, node: &Value) -> Vec<&'a Value> {
        node.get("childIds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get(id.as_str()?).copied())
            .collect()
    }

    /// Whether `node` gets no line of its own.
    fn hidden(&self, node: &Value, parent_name: &str) -> bool {
        let role = role(node);
        let name = accessible_name(node);
        node.get("ignored").and_then(Value::as_bool) == Some(true)
            || NOISE.contains(&role)
            || (TRANSPARENT.contains(&role) && name.is_empty())
            // The text of a link or button repeats its name.
            || (role == "StaticText" && (name.is_empty() || name == parent_name))
    }

    /// The nodes shown under `node`, looking through hidden ones.
    fn shown_children(&self, node: &Value, name: &str) -> Vec<&'a Value> {
        let mut shown = Vec::new();
        for child in self.children(node) {
            if self.hidden(child, name) {
                shown.extend(self.shown_children(child, name));
            } else {
                shown.push(child);
            }
        }
        shown
    }

    fn write(&self, node: &Value, depth: usize, parent_name: &str, out: &mut String) {
        if self.hidden(node, parent_name) {
            for child in self.shown_children(node, parent_name) {
                self.write(child, depth, parent_name, out);
            }
            return;
        }
        let name = accessible_name(node);
        let children = self.shown_children(node, &name);
        let indent = "  ".repeat(depth);
        let _ = write!(out, "{indent}{}", display_role(role(node)));
        if !name.is_empty() {
            let _ = write!(out, " {}", quote(&name));
        }
        out.push_str(&state(node));
        let all_text = !children.is_empty() && children.iter().all(|c| role(c) == "StaticText");
        if name.is_empty() && all_text {
            let text: Vec<String> = children.iter().map(|c| accessible_name(c)).collect();
            let _ = writeln!(out, ": {}", text.join(" "));
            return;
        }
        out.push('\n');
        for child in children {
            self.write(child, depth + 1, &name, out);
        }
    }
}

fn role(node: &Value) -> &str {
    node.pointer("/role/value")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn display_role(role: &str) -> &str {
    match role {
        "StaticText" => "text",
        "" => "node",
        other => other,
    }
}

fn accessible_name(node: &Value) -> String {
    squeeze(
        node.pointer("/name/value")
            .and_then(Value::as_str)
            .unwrap_or(""),
    )
}

fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn quote(text: &str) -> String {
    const MAX: usize = 200;
    let short: String = text.chars().take(MAX).collect();
    let more = if text.chars().count() > MAX {
        "…"
    } else {
        ""
    };
    format!("\"{}{more}\"", short.replace('"', "\\\""))
}

/// ` value="…" checked disabled …`: what a tester needs besides role and name.
fn state(node: &Value) -> String {
    let mut out = String::new();
    if let Some(value) = node.pointer("/value/value") {
        let value = match value {
            Value::String(s) => squeeze(s),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        if !value.is_empty() {
            let _ = write!(out, " value={}", quote(&value));
        }
    }
    let properties = node.get("properties").and_then(Value::as_array);
    for property in properties.into_iter().flatten() {
        let Some(key) = property.get("name").and_then(Value::as_str) else {
            continue;
        };
        let value = property.pointer("/value/value").unwrap_or(&Value::Null);
        let on = value.as_bool() == Some(true);
        match key {
            "focused" | "disabled" | "required" | "readonly" | "selected" | "modal" if on => {
                let _ = write!(out, " {key}");
            }
            "checked" | "pressed" => match value.as_str() {
                Some("true") => {
                    let _ = write!(out, " {key}");
                }
                Some("mixed") => {
                    let _ = write!(out, " {key}=mixed");
                }
                _ if on => {
                    let _ = write!(out, " {key}");
                }
                _ => {}
            },
            "expanded" => {
                let _ = write!(out, " {}", if on { "expanded" } else { "collapsed" });
            }
            "invalid" if value.as_str().is_some_and(|v| v != "false") => {
                let _ = write!(out, " invalid");
            }
            "level" if value.is_number() && role(node) == "heading" => {
                let _ = write!(out, " level={value}");
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(id: &str, role: &str, name: &str, parent: Option<&str>, children: &[&str]) -> Value {
        let mut node = json!({
            "nodeId": id,
            "ignored": false,
            "role": {"type": "role", "value": role},
            "name": {"type": "computedString", "value": name},
            "childIds": children,
        });
        if let Some(parent) = parent {
            node["parentId"] = json!(parent);
        }
        node
    }

    #[test]
    fn the_tree_shows_roles_names_and_state_and_skips_structure() {
        let mut textbox = node("5", "textbox", "Title", Some("3"), &[]);
        textbox["value"] = json!({"type": "string", "value": "Buy milk"});
        textbox["properties"] =
            json!([{"name": "required", "value": {"type": "boolean", "value": true}}]);
        let tree = json!({"nodes": [
            node("1", "RootWebArea", "To-do", None, &["2"]),
            node("2", "generic", "", Some("1"), &["3", "6"]),
            node("3", "form", "", Some("2"), &["5", "4"]),
            node("4", "button", "Add", Some("3"), &["9"]),
            textbox,
            node("6", "list", "", Some("2"), &["7"]),
            node("7", "listitem", "", Some("6"), &["8"]),
            node("8", "StaticText", "Buy  milk", Some("7"), &["10"]),
            node("9", "StaticText", "Add", Some("4"), &[]),
            node("10", "InlineTextBox", "Buy milk", Some("8"), &[]),
        ]});
        assert_eq!(
            accessibility_tree(&tree),
            "RootWebArea \"To-do\"\n  form\n    textbox \"Title\" value=\"Buy milk\" required\n    \
             button \"Add\"\n  list\n    listitem: Buy milk\n"
        );
    }

    #[test]
    fn a_long_reading_is_cut_at_a_line_with_a_note() {
        let text = "line\n".repeat(10);
        let cut = cut(&text, 12);
        assert!(cut.starts_with("line\nline\n["), "{cut}");
        assert!(cut.contains("50 characters in all"), "{cut}");
        assert_eq!(super::cut("short", 12), "short");
    }
}
