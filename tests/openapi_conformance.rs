//! The OpenAPI checker that the simulator and the App's requests are held to
//! (`tests/common/openapi.rs`), checked first against GitHub's own examples.

mod common;

use std::collections::BTreeSet;

use common::openapi::OpenApi;
use serde_json::json;

/// The examples that do not match their own schema, as the fixtures' README lists
/// them (found there with openapi-schema-validator). The directory listing of
/// `repos/get-content` fails there only because that validator applies the
/// `discriminator`; this checker, like JSON Schema, does not. And `checks/create`'s
/// in-progress example (`conclusion: null` for a `nullable` enum without null)
/// fails there but passes here: this checker lets `nullable` admit null into an
/// enum, because GitHub itself answers null there.
const KNOWN_BAD_EXAMPLES: &[(&str, &str)] = &[
    ("repos/get", "200"),
    ("actions/list-jobs-for-workflow-run", "200"),
    ("repos/get-collaborator-permission-level", "200"),
    ("pulls/list", "200"),
    ("pulls/create", "201"),
    ("pulls/get", "200"),
    ("pulls/update", "200"),
];

#[test]
fn the_checker_agrees_with_an_independent_validator_on_githubs_examples() {
    let api = OpenApi::get();
    let examples = api.response_examples();
    assert_eq!(examples.len(), 46, "JSON response examples in the subset");
    let mut failing = BTreeSet::new();
    for ex in &examples {
        if let Err(violations) = api.check_response_by_id(&ex.operation_id, &ex.status, &ex.value) {
            failing.insert((
                ex.operation_id.clone(),
                ex.status.clone(),
                ex.name.clone(),
                violations.join("; "),
            ));
        }
    }
    let failing_ops: BTreeSet<(String, String)> = failing
        .iter()
        .map(|(op, st, _, _)| (op.clone(), st.clone()))
        .collect();
    let expected: BTreeSet<(String, String)> = KNOWN_BAD_EXAMPLES
        .iter()
        .map(|(op, st)| (op.to_string(), st.to_string()))
        .collect();
    assert_eq!(failing_ops, expected, "failures: {failing:#?}");
    // The in-progress check run (`conclusion: null`) passes: null is admitted.
    assert!(failing.iter().all(|(op, ..)| op != "checks/create"));
}

#[test]
fn paths_match_their_templates() {
    let api = OpenApi::get();
    let (template, op) = api
        .operation("POST", "/app/installations/42/access_tokens")
        .unwrap();
    assert_eq!(
        template,
        "/app/installations/{installation_id}/access_tokens"
    );
    assert_eq!(op["operationId"], "apps/create-installation-access-token");
    let (template, _) = api
        .operation("get", "/repos/o/r/issues/7/comments")
        .unwrap();
    assert_eq!(
        template,
        "/repos/{owner}/{repo}/issues/{issue_number}/comments"
    );
    assert!(
        api.operation("GET", "/repos/o/r/issues/7/unknown")
            .is_none()
    );
}

#[test]
fn the_token_exchange_answer_the_fake_gives_conforms() {
    let api = OpenApi::get();
    // What tests/github_app_auth.rs serves: the published example, token and expiry changed.
    let mut body = api.example("installation-token");
    body["token"] = json!("ghs_fake_token_1");
    body["expires_at"] = json!("2026-11-25T01:00:00Z");
    api.check_response("POST", "/app/installations/42/access_tokens", 201, &body)
        .unwrap();

    // A wrong shape is caught, and an undocumented status is a finding in itself.
    body["expires_at"] = json!(1764032400);
    let err = api
        .check_response("POST", "/app/installations/42/access_tokens", 201, &body)
        .unwrap_err();
    assert!(err.iter().any(|v| v.contains("/expires_at")), "{err:?}");
    let err = api
        .check_response("POST", "/app/installations/42/access_tokens", 200, &body)
        .unwrap_err();
    assert!(err[0].contains("documents no 200"), "{err:?}");
}

#[test]
fn request_bodies_are_checked_against_the_operation() {
    let api = OpenApi::get();
    let path = "/repos/o/r/check-runs";
    api.check_request(
        "POST",
        path,
        &json!({"name": "missions / scrutiny", "head_sha": "a".repeat(40), "status": "in_progress"}),
    )
    .unwrap();
    let err = api
        .check_request("POST", path, &json!({"name": "missions / scrutiny"}))
        .unwrap_err();
    assert!(err.iter().any(|v| v.contains("head_sha")), "{err:?}");
    // A completed check run must say how it concluded: refused without, accepted with.
    let mut completed = json!({"name": "n", "head_sha": "a".repeat(40), "status": "completed"});
    assert!(api.check_request("POST", path, &completed).is_err());
    completed["conclusion"] = json!("success");
    api.check_request("POST", path, &completed).unwrap();
}

/// GitHub's own no-reply addresses for bots carry `[bot]`, which `format:
/// email` rejects; the checker lets exactly those through, nothing else.
#[test]
fn bot_noreply_addresses_pass_as_github_returns_them_and_nothing_else_does() {
    let api = OpenApi::get();
    let schema = json!({"type": "string", "format": "email"});
    for ok in [
        "41898282+github-actions[bot]@users.noreply.github.com",
        "missions[bot]@users.noreply.github.com",
        "alice@example.com",
    ] {
        assert!(api.check(&schema, &json!(ok)).is_ok(), "{ok}");
    }
    for bad in [
        "missions[bot]@example.com",
        "x+missions[bot]@users.noreply.github.com",
        "[bot]@users.noreply.github.com",
        "a b[bot]@users.noreply.github.com",
        "not an address",
    ] {
        assert!(api.check(&schema, &json!(bad)).is_err(), "{bad}");
    }
}
