//! The second demo project (`missions demo --project web`): `todo`, a to-do
//! list served by Python's standard library. The issue asks for a form that
//! adds items; the scripted worker writes it, and the scripted user tester
//! checks it the way a person would: in headless Chromium, typing into the
//! form, submitting it and reading the list, with screenshots that land
//! beside its report.

use std::path::Path;

use serde_json::{Value, json};

/// The demo's repository for this project.
pub const REPO: &str = "octo-org/todo";

pub const ISSUE_TITLE: &str = "todo: add items from the page";

pub const ISSUE_BODY: &str = "The page only lists the to-do items that are hard-coded.\n\n\
Please add a form above the list: a title field and an *Add* button. Submitting it adds \
the item to the end of the list and shows the page again. An empty title adds nothing.";

/// The app: the list, and (`with_form`) the form that adds to it.
pub fn app(with_form: bool) -> String {
    let mut out = String::from(
        "\"\"\"todo: a to-do list in the browser, on Python's standard library.\"\"\"\n\
         import html\n\
         import sys\n\
         from http.server import BaseHTTPRequestHandler, HTTPServer\n",
    );
    if with_form {
        out.push_str("from urllib.parse import parse_qs\n");
    }
    out.push_str(
        "\nTODOS = [\"water the plants\"]\n\n\n\
         def render(todos):\n    \
         items = \"\".join(f\"<li>{html.escape(t)}</li>\" for t in todos)\n    \
         return (\n        \
         \"<!doctype html><html><head><meta charset=utf-8><title>To-do</title></head><body>\"\n        \
         \"<h1>To-do</h1>\"\n",
    );
    if with_form {
        out.push_str(
            "        \"<form method=post action=/add>\"\n        \
             \"<label>Title <input id=title name=title></label> \"\n        \
             \"<button type=submit>Add</button></form>\"\n",
        );
    }
    out.push_str("        f\"<ul id=todos>{items}</ul></body></html>\"\n    )\n");
    if with_form {
        out.push_str(
            "\n\ndef add(todos, title):\n    \
             title = title.strip()\n    \
             if title:\n        \
             todos.append(title)\n    \
             return todos\n",
        );
    }
    out.push_str(
        "\n\nclass Todo(BaseHTTPRequestHandler):\n    \
         def do_GET(self):\n        \
         body = render(TODOS).encode()\n        \
         self.send_response(200)\n        \
         self.send_header(\"Content-Type\", \"text/html; charset=utf-8\")\n        \
         self.send_header(\"Content-Length\", str(len(body)))\n        \
         self.end_headers()\n        \
         self.wfile.write(body)\n",
    );
    if with_form {
        out.push_str(
            "\n    def do_POST(self):\n        \
             length = int(self.headers.get(\"Content-Length\", 0))\n        \
             form = parse_qs(self.rfile.read(length).decode())\n        \
             add(TODOS, form.get(\"title\", [\"\"])[0])\n        \
             self.send_response(303)\n        \
             self.send_header(\"Location\", \"/\")\n        \
             self.end_headers()\n",
        );
    }
    out.push_str(
        "\n    def log_message(self, *args):\n        \
         pass\n\n\n\
         if __name__ == \"__main__\":\n    \
         HTTPServer((\"127.0.0.1\", int(sys.argv[1])), Todo).serve_forever()\n",
    );
    out
}

/// The tests (`with_form`: the form's too).
pub fn tests(with_form: bool) -> String {
    let mut out = format!(
        "import unittest\n\nfrom todo import {}\n\n\n\
         class Todo(unittest.TestCase):\n    \
         def test_lists_every_item_escaped(self):\n        \
         page = render([\"a <b>\"])\n        \
         self.assertIn(\"<li>a &lt;b&gt;</li>\", page)\n",
        if with_form { "add, render" } else { "render" }
    );
    if with_form {
        out.push_str(
            "\n    def test_the_page_has_the_form(self):\n        \
             self.assertIn('<input id=title name=title>', render([]))\n\n    \
             def test_add_appends_and_ignores_empty_titles(self):\n        \
             self.assertEqual(add([\"a\"], \" b \"), [\"a\", \"b\"])\n        \
             self.assertEqual(add([\"a\"], \"  \"), [\"a\"])\n",
        );
    }
    out.push_str("\n\nif __name__ == \"__main__\":\n    unittest.main()\n");
    out
}

pub const README: &str = "# todo\n\nA to-do list in the browser.\n\n\
    ```\npython3 todo.py 8000   # then open http://127.0.0.1:8000/\n```\n\n\
    Tests: `python3 -m unittest -q`.\n";

pub const AGENTS_MD: &str = "# Notes for agents\n\n\
    - Run the tests with `python3 -m unittest -q` before you finish.\n\
    - Keep the app in one file, `todo.py`, on Python's standard library only.\n";

/// The sample project's test command.
pub const TEST_COMMAND: &str = "python3 -m unittest -q";

/// Where the app answers in the demo.
pub fn app_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/")
}

/// `app:` and `commands:` of `.github/missions.yml`: the harness starts the
/// app on `port` for the user tester, whose browser may open only it.
pub fn app_settings(port: u16) -> String {
    format!(
        "commands:\n  test: [\"{TEST_COMMAND}\"]\n\
         app:\n  start: \"python3 todo.py {port}\"\n  url: \"{}\"\n  ready_timeout_secs: 20\n",
        app_url(port)
    )
}

/// `.github/missions.yml` with the scripted model reading `script_dir`.
pub fn missions_yml(script_dir: &str, budget_usd: f64, port: u16) -> String {
    format!(
        "# The web demo's mission settings. See docs/configuration.md.\n\
         label: mission\n\
         budget:\n  usd: {budget_usd}\n\
         models:\n  default:\n    provider: scripted\n    model: scripted-demo\n    script: \"{script_dir}/{{agent}}.json\"\n\
         \x20   prices: {{ input: 3.0, output: 15.0, cache_read: 0.3, cache_write: 3.75 }}\n{}",
        app_settings(port)
    )
}

/// The repository's files at the start: path → content.
pub fn files(
    script_dir: &str,
    workflow_yaml: &str,
    budget_usd: f64,
    port: u16,
) -> Vec<(String, String)> {
    vec![
        ("README.md".into(), README.into()),
        ("AGENTS.md".into(), AGENTS_MD.into()),
        ("todo.py".into(), app(false)),
        ("test_todo.py".into(), tests(false)),
        (
            ".github/missions.yml".into(),
            missions_yml(script_dir, budget_usd, port),
        ),
        (
            ".github/workflows/missions.yml".into(),
            workflow_yaml.into(),
        ),
    ]
}

/// The item the user tester adds.
pub const NEW_ITEM: &str = "buy milk";

/// The screenshot of the filled form, as the tester names it.
pub const FILLED_FORM: &str = "filled-form";

fn call(name: &str, input: Value) -> Value {
    json!({ "name": name, "input": input })
}

fn turn(calls: Vec<Value>) -> Value {
    json!({ "tool_calls": calls })
}

fn finish(input: Value) -> Value {
    turn(vec![call("finish", input)])
}

/// The plan: one milestone, one feature, one assertion a browser checks.
pub fn plan() -> Value {
    json!({
        "title": "todo: add items from the page",
        "summary": "A form above the list adds an item; the page shows the list again.",
        "assertions": [
            {"id": "A1", "text": format!("In a browser, typing `{NEW_ITEM}` into the title field and submitting the form shows `{NEW_ITEM}` at the end of the list")},
            {"id": "A2", "text": "Submitting the form with an empty title adds nothing (`add` ignores blank titles; its unit test passes)"}
        ],
        "milestones": [{"id": "M1", "title": "Adding items", "features": [
            {"id": "F1", "title": "The add form", "description": "A form (title field, Add button) posting to /add; add(todos, title) appends non-blank titles; redirect back to the list; unit tests.", "assertions": ["A1", "A2"]}
        ]}]
    })
}

/// Every script: (agent-run name, turns); the user tester opens `url`.
pub fn scripts(url: &str) -> Vec<(String, Vec<Value>)> {
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    out.push((
        "scope-1".into(),
        vec![
            turn(vec![call("read_file", json!({"path": "todo.py"}))]),
            finish(json!({"kind": "plan", "plan": plan()})),
        ],
    ));
    out.push((
        "feature-F1".into(),
        vec![
            turn(vec![
                call(
                    "write_file",
                    json!({"path": "todo.py", "content": app(true)}),
                ),
                call(
                    "write_file",
                    json!({"path": "test_todo.py", "content": tests(true)}),
                ),
            ]),
            turn(vec![call(
                "bash",
                json!({"command": "python3 -m unittest -q 2>&1 | tail -n 3"}),
            )]),
            finish(json!({
                "feature": "F1",
                "summary": "Added the form and add(); POST /add redirects to the list; three unit tests pass.",
                "completed": ["the add form", "add(todos, title)", "unit tests"],
                "undone": [],
                "issues": [],
                "followed_procedures": true
            })),
        ],
    ));
    out.push((
        "M1-scrutiny-1-review-F1".into(),
        vec![
            turn(vec![call("read_file", json!({"path": "todo.py"}))]),
            finish(json!({
                "feature": "F1",
                "verdict": "pass",
                "findings": [],
                "assertions": [
                    {"id": "A1", "status": "pass", "evidence": "the form posts to /add, which appends and redirects to /"},
                    {"id": "A2", "status": "pass", "evidence": "add() strips the title and ignores blanks; test_add_appends_and_ignores_empty_titles"}
                ]
            })),
        ],
    ));
    out.push((
        "M1-user-testing-1".into(),
        vec![
            turn(vec![call("browser_open", json!({"url": url}))]),
            turn(vec![call(
                "browser_type",
                json!({"selector": "#title", "text": NEW_ITEM}),
            )]),
            turn(vec![call(
                "browser_screenshot",
                json!({"name": FILLED_FORM}),
            )]),
            turn(vec![call("browser_submit", json!({"selector": "#title"}))]),
            turn(vec![call(
                "browser_wait_for_text",
                json!({"text": NEW_ITEM}),
            )]),
            turn(vec![call(
                "browser_screenshot",
                json!({"name": "after-adding"}),
            )]),
            turn(vec![call("browser_submit", json!({"selector": "form"}))]),
            turn(vec![
                call("browser_read", json!({"format": "accessibility"})),
                call("browser_console", json!({})),
            ]),
            finish(json!({
                "summary": format!("Used the page in Chromium: the form adds `{NEW_ITEM}` to the list; an empty title adds nothing; no console errors."),
                "assertions": [
                    {"id": "A1", "status": "pass", "evidence": format!("typed `{NEW_ITEM}`, submitted: the list shows it last (screenshots {FILLED_FORM}, after-adding)")},
                    {"id": "A2", "status": "pass", "evidence": "submitted an empty form: the list has the same two items"}
                ]
            })),
        ],
    ));
    out
}

/// Writes every script into `dir` as `<name>.json`; the app answers at `url`.
pub fn write_scripts(dir: &Path, url: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, turns) in scripts(url) {
        let text = serde_json::to_string_pretty(&turns).expect("scripts are JSON");
        std::fs::write(dir.join(format!("{name}.json")), text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_meets_the_contracts_rules() {
        let plan: crate::mission::Plan = serde_json::from_value(plan()).unwrap();
        assert!(plan.check().is_empty(), "{:?}", plan.check());
    }

    #[test]
    fn the_settings_read_back() {
        let cfg = crate::repo_config::RepoConfig::parse(&missions_yml("/s", 5.0, 8123)).unwrap();
        assert_eq!(cfg.app.url.as_deref(), Some("http://127.0.0.1:8123/"));
        assert_eq!(cfg.app.start.as_deref(), Some("python3 todo.py 8123"));
        assert_eq!(cfg.commands.test, [TEST_COMMAND]);
    }
}
