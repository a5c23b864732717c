//! The webhook schema checker that the App's payload types and the simulator's
//! deliveries are held to (`tests/common/webhook_schemas.rs`), checked first against
//! GitHub's own example payloads.

mod common;

use common::webhook_schemas::{WebhookSchemas, example_for, missing_keys};
use serde_json::json;

/// Every event/action the fixtures' README lists, plus `workflow_run/in_progress`,
/// which has a schema but no example. `None`: `push` and `ping`.
const LISTED: &[(&str, &[Option<&str>])] = &[
    (
        "issues",
        &[
            Some("labeled"),
            Some("opened"),
            Some("edited"),
            Some("unlabeled"),
        ],
    ),
    ("issue_comment", &[Some("created"), Some("edited")]),
    (
        "pull_request",
        &[
            Some("opened"),
            Some("closed"),
            Some("synchronize"),
            Some("reopened"),
        ],
    ),
    (
        "pull_request_review",
        &[Some("submitted"), Some("dismissed")],
    ),
    ("pull_request_review_comment", &[Some("created")]),
    (
        "check_run",
        &[
            Some("completed"),
            Some("rerequested"),
            Some("requested_action"),
        ],
    ),
    ("check_suite", &[Some("completed"), Some("rerequested")]),
    (
        "workflow_run",
        &[Some("completed"), Some("requested"), Some("in_progress")],
    ),
    ("workflow_job", &[Some("completed"), Some("queued")]),
    ("installation", &[Some("created"), Some("deleted")]),
    ("installation_repositories", &[Some("added")]),
    ("push", &[None]),
    ("ping", &[None]),
];

#[test]
fn every_schema_file_is_registered_under_its_id() {
    let schemas = WebhookSchemas::get();
    let common = schemas
        .ids()
        .iter()
        .filter(|id| id.starts_with("common/"))
        .count();
    // README: 65 schemas, 28 event/action schemas and 37 common ones.
    assert_eq!(schemas.ids().len(), 65, "{:?}", schemas.ids());
    assert_eq!(common, 37);
    assert_eq!(schemas.event_schemas().count(), 28);
    assert!(schemas.ids().iter().any(|id| id == "issues$opened"));
    assert!(schemas.ids().iter().any(|id| id == "push$event"));
}

#[test]
fn every_published_example_validates_against_its_schema() {
    let schemas = WebhookSchemas::get();
    let fixtures = common::webhook_fixtures();
    assert_eq!(fixtures.len(), 38, "README: 38 examples");
    let failures: Vec<String> = fixtures
        .iter()
        .filter_map(|f| {
            schemas
                .validate(&f.event, &f.json)
                .err()
                .map(|errors| format!("{}/{}:\n  {}", f.event, f.file, errors.join("\n  ")))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn schemas_exist_for_every_listed_event_and_action() {
    let schemas = WebhookSchemas::get();
    let mut count = 0;
    for (event, actions) in LISTED {
        for action in *actions {
            assert!(
                schemas.schema_exists(event, *action),
                "no schema for {event}/{action:?}"
            );
            count += 1;
        }
    }
    assert_eq!(count, 28, "the list names every event schema");
    assert!(schemas.schema_exists("workflow_run", Some("in_progress")));
    // push and ping have one schema whatever the action.
    assert!(schemas.schema_exists("push", Some("push")));
    assert!(!schemas.schema_exists("issues", None));
    assert!(!schemas.schema_exists("issues", Some("transferred")));
    assert!(!schemas.schema_exists("deployment", Some("created")));
}

#[test]
fn a_payload_without_a_schema_is_an_error() {
    let schemas = WebhookSchemas::get();
    let mut payload = example_for("issues", Some("opened")).unwrap();
    payload["action"] = json!("transferred");
    let errors = schemas.validate("issues", &payload).unwrap_err();
    assert!(errors[0].contains("no webhook schema"), "{errors:?}");

    payload.as_object_mut().unwrap().remove("action");
    let errors = schemas.validate("issues", &payload).unwrap_err();
    assert!(errors[0].contains("action"), "{errors:?}");

    let errors = schemas
        .validate("deployment", &json!({"action": "created"}))
        .unwrap_err();
    assert!(errors[0].contains("deployment"), "{errors:?}");
}

#[test]
fn a_missing_required_nested_key_is_named_by_its_path() {
    let schemas = WebhookSchemas::get();
    let mut payload = example_for("issues", Some("opened")).unwrap();
    schemas.validate("issues", &payload).unwrap();
    payload["repository"]
        .as_object_mut()
        .unwrap()
        .remove("full_name")
        .expect("the example has repository.full_name");
    let errors = schemas.validate("issues", &payload).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("at /repository:") && e.contains("\"full_name\"")),
        "{errors:?}"
    );
    assert!(errors.len() <= 21, "errors are capped: {errors:?}");
}

#[test]
fn a_wrongly_typed_key_is_named_by_its_path() {
    let schemas = WebhookSchemas::get();
    let mut payload = example_for("pull_request", Some("opened")).unwrap();
    payload["sender"] = json!("Codertocat");
    let errors = schemas.validate("pull_request", &payload).unwrap_err();
    assert!(
        errors.iter().any(|e| e.starts_with("at /sender:")),
        "{errors:?}"
    );

    // Deep inside: an issue's user id must be an integer.
    let mut payload = example_for("issue_comment", Some("created")).unwrap();
    payload["issue"]["user"]["id"] = json!("21031067");
    let errors = schemas.validate("issue_comment", &payload).unwrap_err();
    assert!(
        errors.iter().any(|e| e.starts_with("at /issue/user/id:")),
        "{errors:?}"
    );
}

#[test]
fn unknown_properties_are_rejected() {
    // The schemas close almost every object (`additionalProperties: false`): a
    // payload carrying a field GitHub's schema does not know fails.
    let schemas = WebhookSchemas::get();
    let mut payload = example_for("pull_request", Some("opened")).unwrap();
    payload["repository"]["not_a_github_field"] = json!(1);
    let errors = schemas.validate("pull_request", &payload).unwrap_err();
    assert!(
        errors.iter().any(|e| e.starts_with("at /repository:")),
        "{errors:?}"
    );
}

#[test]
fn the_action_must_match_the_schema_chosen() {
    // An `opened` issue must be open; the schema says so, not only the action field.
    let schemas = WebhookSchemas::get();
    let mut payload = example_for("issues", Some("opened")).unwrap();
    payload["issue"]["state"] = json!("closed");
    let errors = schemas.validate("issues", &payload).unwrap_err();
    assert!(
        errors.iter().any(|e| e.starts_with("at /issue/state:")),
        "{errors:?}"
    );
}

#[test]
fn formats_are_asserted() {
    let schemas = WebhookSchemas::get();
    let mut payload = example_for("issues", Some("opened")).unwrap();
    payload["issue"]["created_at"] = json!("yesterday");
    payload["issue"]["html_url"] = json!("not a uri");
    let errors = schemas.validate("issues", &payload).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("at /issue/created_at:")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.starts_with("at /issue/html_url:")),
        "{errors:?}"
    );
}

#[test]
fn date_time_accepts_rfc3339_and_githubs_older_form_only() {
    // GitHub's check_run/rerequested example writes `2018-04-25 20:42:10`; the loader
    // accepts that form besides RFC 3339 (see tests/common/webhook_schemas.rs).
    let schemas = WebhookSchemas::get();
    let mut payload = example_for("issues", Some("opened")).unwrap();
    for good in [
        "2019-05-15T15:20:31Z",
        "2019-05-15T11:20:31-04:00",
        "2019-05-15T15:20:31.123Z",
        "2018-04-25 20:42:10",
    ] {
        payload["issue"]["created_at"] = json!(good);
        assert!(schemas.validate("issues", &payload).is_ok(), "{good}");
    }
    for bad in [
        "2019-05-15",
        "2019-05-15T15:20:31",
        "2019-13-15T15:20:31Z",
        "2018-04-25 20:42",
        "1557933631",
    ] {
        payload["issue"]["created_at"] = json!(bad);
        assert!(schemas.validate("issues", &payload).is_err(), "{bad}");
    }
}

#[test]
fn example_for_finds_the_first_example() {
    let push = example_for("push", None).unwrap();
    assert_eq!(
        push["ref"],
        json!("refs/tags/simple-tag"),
        "push.json is the tag push"
    );
    assert!(example_for("ping", None).unwrap().get("zen").is_some());
    let opened = example_for("issues", Some("opened")).unwrap();
    assert_eq!(opened["action"], json!("opened"));
    assert!(example_for("workflow_run", Some("in_progress")).is_none());
    assert!(example_for("nonsense", None).is_none());
}

#[test]
fn missing_keys_accepts_an_identical_copy() {
    for fixture in common::webhook_fixtures() {
        let copy = fixture.json.clone();
        assert_eq!(
            missing_keys(&fixture.json, &copy, usize::MAX),
            Vec::<String>::new(),
            "{}/{}",
            fixture.event,
            fixture.file
        );
    }
}

#[test]
fn missing_keys_finds_a_removed_nested_key() {
    let example = example_for("pull_request", Some("opened")).unwrap();
    let mut actual = example.clone();
    actual["pull_request"]["head"]["repo"]
        .as_object_mut()
        .unwrap()
        .remove("full_name")
        .unwrap();
    assert_eq!(
        missing_keys(&example, &actual, 10),
        vec!["$.pull_request.head.repo.full_name".to_owned()]
    );
    // Four object levels down: not seen with depth 3.
    assert!(missing_keys(&example, &actual, 3).is_empty());
    assert_eq!(missing_keys(&example, &actual, 4).len(), 1);
    assert!(missing_keys(&example, &actual, 0).is_empty());

    // A whole object missing is one path, not one per key.
    actual.as_object_mut().unwrap().remove("sender");
    assert_eq!(
        missing_keys(&example, &actual, 10),
        vec![
            "$.pull_request.head.repo.full_name".to_owned(),
            "$.sender".to_owned()
        ]
    );
}

#[test]
fn missing_keys_looks_into_the_first_array_element() {
    // push.json is a tag push without commits; push-3 (a new branch) has one.
    let example = common::fixture("push", "push-3.json").json;
    let mut actual = example.clone();
    actual["commits"][0]["author"]
        .as_object_mut()
        .unwrap()
        .remove("email")
        .unwrap();
    assert_eq!(
        missing_keys(&example, &actual, 10),
        vec!["$.commits[0].author.email".to_owned()]
    );
    // An empty array in actual compares nothing.
    actual["commits"] = json!([]);
    assert!(missing_keys(&example, &actual, 10).is_empty());
}

#[test]
fn missing_keys_accepts_null_and_reports_non_objects() {
    let example = json!({"a": {"b": 1, "c": null}, "d": [{"e": 1}], "f": null});
    let actual = json!({"a": {"b": 2, "c": {"x": 1}}, "d": [{"e": 2, "z": 0}], "f": {"g": 1}});
    assert!(missing_keys(&example, &actual, 5).is_empty());
    let actual = json!({"a": null, "d": [{}], "f": null});
    assert_eq!(
        missing_keys(&example, &actual, 5),
        vec!["$.d[0].e".to_owned()]
    );
    let actual = json!({"a": "string", "d": [], "f": 1});
    assert_eq!(
        missing_keys(&example, &actual, 5),
        vec!["$.a.b".to_owned(), "$.a.c".to_owned()]
    );
}
