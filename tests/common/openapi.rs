//! GitHub's REST description (the OpenAPI 3.0 subset in
//! `../shared/github-fixtures/rest/`) as a checker: what a fake or the simulator
//! answers, and what the App sends, must validate against GitHub's own schemas.
//!
//! OpenAPI 3.0 schemas are JSON Schema draft 4 plus a few keywords. The one that
//! changes validation is `nullable: true`, translated here into JSON Schema
//! (`type: [T, "null"]`, or `anyOf [..., {type: null}]` where there is no `type`).
//! `discriminator` is not enforced: it only says which `oneOf` branch to try first.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

pub struct OpenApi {
    /// The description with every schema translated to JSON Schema.
    doc: Value,
}

/// One response example published in the description.
#[derive(Debug, Clone)]
pub struct Example {
    pub operation_id: String,
    pub status: String,
    pub name: String,
    pub value: Value,
}

/// Where a body failed its schema: the JSON pointer in the body and the reason.
pub type Violations = Vec<String>;

impl OpenApi {
    /// Loaded once per test binary.
    pub fn get() -> &'static OpenApi {
        static API: OnceLock<OpenApi> = OnceLock::new();
        API.get_or_init(|| {
            let path = super::fixtures_dir().join("rest/api.github.com.subset.json");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let mut doc: Value = serde_json::from_str(&text).expect("the description is JSON");
            translate_nullable(&mut doc);
            OpenApi { doc }
        })
    }

    /// Every (method, path template) the description holds.
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (path, item) in self.doc["paths"].as_object().into_iter().flatten() {
            for method in item.as_object().into_iter().flat_map(|o| o.keys()) {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    out.push((method.clone(), path.clone()));
                }
            }
        }
        out
    }

    /// The operation for a method and a concrete path such as
    /// `/app/installations/42/access_tokens` (path templates are matched segment by
    /// segment; `{name}` matches one segment).
    pub fn operation(&self, method: &str, path: &str) -> Option<(&str, &Value)> {
        let method = method.to_ascii_lowercase();
        let paths = self.doc["paths"].as_object()?;
        let concrete: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        paths.iter().find_map(|(template, item)| {
            let parts: Vec<&str> = template.split('/').collect();
            let matches = parts.len() == concrete.len()
                && parts
                    .iter()
                    .zip(&concrete)
                    .all(|(t, c)| (t.starts_with('{') && !c.is_empty()) || t == c);
            let op = item.get(&method)?;
            matches.then_some((template.as_str(), op))
        })
    }

    /// Checks a response body against the schema the description gives for that
    /// operation and status. An undocumented status is itself a violation.
    pub fn check_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), Violations> {
        let (template, op) = self
            .operation(method, path)
            .ok_or_else(|| vec![format!("{method} {path} is not in the description")])?;
        let response = op["responses"].get(status.to_string()).ok_or_else(|| {
            vec![format!(
                "{method} {template} documents no {status} response"
            )]
        })?;
        let response = self.resolve(response);
        match response.pointer("/content/application~1json/schema") {
            Some(schema) => self.check(schema, body),
            None if body.is_null() => Ok(()),
            None => Err(vec![format!(
                "{method} {template} {status} has no JSON body"
            )]),
        }
    }

    /// Like `check_response`, for an operation named by its `operationId`.
    pub fn check_response_by_id(
        &self,
        operation_id: &str,
        status: &str,
        body: &Value,
    ) -> Result<(), Violations> {
        let op = self.doc["paths"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.values())
            .flat_map(|item| item.as_object().into_iter().flat_map(|o| o.values()))
            .find(|op| op["operationId"] == operation_id)
            .ok_or_else(|| vec![format!("no operation {operation_id}")])?;
        let response = self.resolve(&op["responses"][status]);
        let schema = response
            .pointer("/content/application~1json/schema")
            .ok_or_else(|| vec![format!("{operation_id} {status} has no JSON schema")])?;
        self.check(schema, body)
    }

    /// Checks a request body against the operation's `requestBody` schema.
    pub fn check_request(&self, method: &str, path: &str, body: &Value) -> Result<(), Violations> {
        let (template, op) = self
            .operation(method, path)
            .ok_or_else(|| vec![format!("{method} {path} is not in the description")])?;
        let schema = op
            .pointer("/requestBody/content/application~1json/schema")
            .ok_or_else(|| vec![format!("{method} {template} takes no JSON body")])?;
        self.check(schema, body)
    }

    /// Every JSON response example, with `$ref`s (also those inside `value`) followed.
    pub fn response_examples(&self) -> Vec<Example> {
        let mut out = Vec::new();
        for item in self.doc["paths"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.values())
        {
            for op in item.as_object().into_iter().flat_map(|o| o.values()) {
                let Some(operation_id) = op["operationId"].as_str() else {
                    continue;
                };
                for (status, response) in op["responses"].as_object().into_iter().flatten() {
                    let response = self.resolve(response);
                    let Some(examples) = response
                        .pointer("/content/application~1json/examples")
                        .and_then(Value::as_object)
                    else {
                        continue;
                    };
                    for (name, example) in examples {
                        let value = self.example_value(self.resolve(example)).clone();
                        out.push(Example {
                            operation_id: operation_id.to_owned(),
                            status: status.clone(),
                            name: name.clone(),
                            value,
                        });
                    }
                }
            }
        }
        out
    }

    /// The example object named in `components/examples`, e.g. `installation-token`.
    pub fn example(&self, name: &str) -> Value {
        let example = &self.doc["components"]["examples"][name];
        assert!(!example.is_null(), "no example {name:?} in the description");
        self.example_value(example).clone()
    }

    /// The body of an Example object. Its `value` may itself be a `$ref` to another
    /// Example object (as `issues/get` does), whose `value` is then the body.
    fn example_value<'a>(&'a self, example: &'a Value) -> &'a Value {
        let mut value = &example["value"];
        while value.get("$ref").is_some() {
            let target = self.resolve(value);
            value = match target.get("value") {
                Some(inner) => inner,
                None => return target,
            };
        }
        value
    }

    /// Checks `body` against a schema of the description. `$ref`s into `components`
    /// resolve because the schema is validated as part of a root that carries them.
    pub fn check(&self, schema: &Value, body: &Value) -> Result<(), Violations> {
        let mut root = match schema {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        };
        root.insert("components".into(), self.doc["components"].clone());
        let validator = jsonschema::draft4::options()
            .build(&Value::Object(root))
            .map_err(|e| vec![format!("the schema does not compile: {e}")])?;
        let violations: Violations = validator
            .iter_errors(body)
            .filter(|e| !is_github_bot_email_format_error(e))
            .map(|e| format!("at {:?}: {e}", e.instance_path().to_string()))
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// Follows a local `$ref` (`#/components/...`), repeatedly.
    fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        while let Some(reference) = value.get("$ref").and_then(Value::as_str) {
            let Some(pointer) = reference.strip_prefix('#') else {
                break;
            };
            match self.doc.pointer(pointer) {
                Some(target) => value = target,
                None => break,
            }
        }
        value
    }
}

/// Rewrites every `nullable: true` schema in place into its JSON Schema meaning.
fn translate_nullable(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for child in map.values_mut() {
                translate_nullable(child);
            }
            if map.remove("nullable") != Some(Value::Bool(true)) {
                return;
            }
            // `nullable` with an `enum` that lacks null: OpenAPI 3.0 leaves open
            // whether null is allowed; GitHub sends it (a queued check run's
            // `conclusion`, an open issue's `state_reason`), so this checker allows it.
            if let Some(Value::Array(values)) = map.get_mut("enum")
                && !values.contains(&Value::Null)
            {
                values.push(Value::Null);
            }
            match map.get("type").cloned() {
                Some(Value::String(t)) => {
                    map.insert("type".into(), json!([t, "null"]));
                }
                _ => {
                    let rest = Value::Object(std::mem::take(map));
                    map.insert("anyOf".into(), json!([rest, {"type": "null"}]));
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(translate_nullable),
        _ => {}
    }
}

/// GitHub's answers carry its bots' no-reply addresses
/// (`41898282+github-actions[bot]@users.noreply.github.com`, or an App's
/// `<id>+<slug>[bot]@…`) in fields its own description marks `format: email`,
/// which `[` breaks. A commit author or committer of that form is what GitHub
/// itself returns, so it is not a violation; any other bad address still is.
fn is_github_bot_email_format_error(e: &jsonschema::ValidationError<'_>) -> bool {
    let jsonschema::error::ValidationErrorKind::Format { format } = e.kind() else {
        return false;
    };
    let Some(address) = e.instance().as_str() else {
        return false;
    };
    let Some(local) = address.strip_suffix("[bot]@users.noreply.github.com") else {
        return false;
    };
    let slug = local.split_once('+').map_or(local, |(id, slug)| {
        if id.chars().all(|c| c.is_ascii_digit()) {
            slug
        } else {
            ""
        }
    });
    format == "email"
        && !slug.is_empty()
        && slug.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}
