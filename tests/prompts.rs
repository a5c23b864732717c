//! The built-in prompts and `finish` schemas: every schema compiles and is a
//! valid tool input schema, realistic results pass the schema *and* deserialize
//! into the Rust types the server uses, wrong shapes are refused, the rules no
//! schema can express are caught by `Plan::check`, and a repository's override
//! directory replaces a prompt role by role.

use jsonschema::Validator as SchemaValidator;
use missions::agent::FinishSpec;
use missions::job::prompts::{SchemaKind, builtin_prompt, finish_schema, system_prompt};
use missions::mission::outputs::{AssertionResult, FeatureReview, Verdict};
use missions::mission::{
    Assertion, Feature, Handoff, JobRole, OrchestratorOutput, Plan, PlanError, ValidationReport,
    Validator,
};
use serde::Deserialize;
use serde_json::{Value, json};

const KINDS: [SchemaKind; 4] = [
    SchemaKind::Orchestrator,
    SchemaKind::Handoff,
    SchemaKind::Review,
    SchemaKind::UserTesting,
];

const ROLES: [JobRole; 4] = [
    JobRole::Orchestrator,
    JobRole::Worker,
    JobRole::Scrutiny,
    JobRole::UserTesting,
];

/// The schema a role's `finish` is checked against.
fn schema_of(role: JobRole) -> SchemaKind {
    match role {
        JobRole::Orchestrator => SchemaKind::Orchestrator,
        JobRole::Worker => SchemaKind::Handoff,
        JobRole::Scrutiny => SchemaKind::Review,
        JobRole::UserTesting => SchemaKind::UserTesting,
    }
}

/// The scrutiny reviewer's `finish` value, as the job harness reads it: a
/// `FeatureReview` plus the results for the assertions the feature claims.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Review {
    feature: String,
    verdict: Verdict,
    findings: Vec<String>,
    assertions: Vec<AssertionResult>,
}

impl Review {
    fn split(self) -> (FeatureReview, Vec<AssertionResult>) {
        (
            FeatureReview {
                feature: self.feature,
                verdict: self.verdict,
                findings: self.findings,
            },
            self.assertions,
        )
    }
}

/// The user tester's `finish` value; the harness adds the rest of the report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserTesting {
    summary: String,
    assertions: Vec<AssertionResult>,
}

impl UserTesting {
    fn into_report(self, milestone: &str) -> ValidationReport {
        ValidationReport {
            milestone: milestone.into(),
            validator: Validator::UserTesting,
            summary: self.summary,
            assertions: self.assertions,
            commands: vec![],
            reviews: vec![],
            screenshots: vec![],
            checks: vec![],
        }
    }
}

fn compile(kind: SchemaKind) -> SchemaValidator {
    jsonschema::draft202012::options()
        .build(&finish_schema(kind))
        .unwrap_or_else(|e| panic!("{kind:?} schema does not compile: {e}"))
}

fn schema_errors(kind: SchemaKind, value: &Value) -> Vec<String> {
    compile(kind)
        .iter_errors(value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[track_caller]
fn assert_valid(kind: SchemaKind, value: &Value) {
    let errors = schema_errors(kind, value);
    assert!(
        errors.is_empty(),
        "{kind:?} schema refuses a good value:\n{}\n{value:#}",
        errors.join("\n")
    );
}

/// Whether serde accepts `value` as the Rust type behind `kind`.
fn serde_accepts(kind: SchemaKind, value: &Value) -> bool {
    let v = value.clone();
    match kind {
        SchemaKind::Orchestrator => serde_json::from_value::<OrchestratorOutput>(v).is_ok(),
        SchemaKind::Handoff => serde_json::from_value::<Handoff>(v).is_ok(),
        SchemaKind::Review => serde_json::from_value::<Review>(v).is_ok(),
        SchemaKind::UserTesting => serde_json::from_value::<UserTesting>(v).is_ok(),
    }
}

// ---------------------------------------------------------------- examples

fn questions() -> Value {
    json!({
        "kind": "questions",
        "questions": [
            "Should the CSV export include archived projects, or only active ones?",
            "Is a streaming download required for large exports (over 100k rows), or may the whole file be built in memory? If unanswered I will stream."
        ]
    })
}

fn two_milestone_plan() -> Value {
    json!({
        "title": "CSV export of projects",
        "summary": "Add `GET /api/projects.csv` and an Export button on the projects page. M1 delivers the endpoint; M2 the UI and the large-export path.",
        "assertions": [
            {"id": "A1", "text": "`cargo test export::` passes, including a test that a field with a comma or quote is escaped per RFC 4180"},
            {"id": "A2", "text": "With the server running, `curl -s -D - localhost:8080/api/projects.csv` answers 200 with `content-type: text/csv` and a header row `id,name,owner,created_at`"},
            {"id": "A3", "text": "`curl -s -o /dev/null -w '%{http_code}' localhost:8080/api/projects.csv` without a session cookie prints 401"},
            {"id": "A4", "text": "The projects page at http://localhost:8080/projects shows an Export button whose link downloads projects.csv"},
            {"id": "A5", "text": "With 200000 seeded projects (`cargo run -- seed 200000`), the export completes and the server's RSS stays under 200 MB"}
        ],
        "milestones": [
            {
                "id": "M1",
                "title": "Export endpoint",
                "features": [
                    {
                        "id": "F1",
                        "title": "CSV writer",
                        "description": "src/export/csv.rs: a writer for project rows with RFC 4180 escaping; unit tests for commas, quotes and newlines in names.",
                        "assertions": ["A1"]
                    },
                    {
                        "id": "F2",
                        "title": "Authenticated endpoint",
                        "description": "Route GET /api/projects.csv in src/api/mod.rs behind the existing `require_session` middleware; integration test in tests/api_export.rs.",
                        "assertions": ["A2", "A3"]
                    }
                ]
            },
            {
                "id": "M2",
                "title": "UI and large exports",
                "features": [
                    {
                        "id": "F3",
                        "title": "Export button",
                        "description": "templates/projects.html: an Export link to /api/projects.csv with the download attribute.",
                        "assertions": ["A4"]
                    },
                    {
                        "id": "F4",
                        "title": "Streaming export",
                        "description": "Stream rows from the database cursor instead of collecting them; add the `seed` subcommand used by A5.",
                        "assertions": ["A5", "A2"]
                    }
                ]
            }
        ],
        "skills": [
            {
                "name": "run-the-server",
                "body": "Start with `cargo run -- serve --port 8080` and wait until `curl -sf localhost:8080/healthz` answers. Log in with `curl -c jar -d user=demo -d pass=demo localhost:8080/login`."
            }
        ]
    })
}

fn plan_output() -> Value {
    json!({"kind": "plan", "plan": two_milestone_plan()})
}

fn amend() -> Value {
    json!({
        "kind": "amend",
        "notes": "F2's handoff reports that owners with a deleted account export as an empty column. F5 fixes the join and adds an assertion for it; the flaky upload test is outside this mission.",
        "features": [
            {
                "id": "F5",
                "title": "Deleted owners in exports",
                "description": "Left-join users in the export query and write `(deleted)` for a missing owner; test in tests/api_export.rs.",
                "assertions": ["A6", "A2"]
            }
        ],
        "assertions": [
            {"id": "A6", "text": "A project whose owner was deleted exports with owner `(deleted)` (covered by `cargo test export::deleted_owner`)"}
        ]
    })
}

fn handoff_with_unresolved_issue() -> Value {
    json!({
        "feature": "F2",
        "summary": "Added GET /api/projects.csv behind require_session, streaming the writer from F1 into the response.",
        "completed": [
            "route and handler in src/api/export.rs",
            "tests/api_export.rs: 200 with header row, 401 without a session",
            "cargo test and cargo clippy pass"
        ],
        "undone": [],
        "issues": [
            {"description": "Projects whose owner was deleted export an empty owner column (inner join in ProjectRepo::all)", "resolved": false},
            {"description": "tests/api_export.rs needed the test server helper to accept cookies; extended it", "resolved": true}
        ],
        "followed_procedures": false,
        "procedures_note": "skills/run-the-server.md logs in with demo/demo, but the seed data names the user `admin`; used admin/admin"
    })
}

fn clean_handoff() -> Value {
    json!({
        "feature": "F1",
        "summary": "CSV writer with RFC 4180 escaping in src/export/csv.rs.",
        "completed": ["writer and 6 unit tests", "cargo test export:: passes"],
        "undone": [],
        "issues": [],
        "followed_procedures": true
    })
}

fn failing_review() -> Value {
    json!({
        "feature": "F2",
        "verdict": "fail",
        "findings": [
            "src/api/export.rs:41: the file name comes from the `name` query parameter and is put unescaped into Content-Disposition, allowing header injection",
            "The handoff says `cargo clippy` passes; the harness's lint command exited 1 on src/api/export.rs:12 (unused import)"
        ],
        "assertions": [
            {"id": "A2", "status": "pass", "evidence": "src/api/export.rs:20-38 writes the header row first; tests/api_export.rs::header_row checks it"},
            {"id": "A3", "status": "pass", "evidence": "route mounted inside require_session (src/api/mod.rs:57); tests/api_export.rs::needs_session expects 401"}
        ]
    })
}

fn user_testing_report() -> Value {
    json!({
        "summary": "Built with `cargo build`, started `cargo run -- serve --port 8080`, logged in with curl and exercised the export. The endpoint works; escaping of quotes is wrong.",
        "assertions": [
            {"id": "A1", "status": "fail", "evidence": "cargo test export:: → test export::quotes ... FAILED: left `\"a\"\"b\"`, right `\"a\"b\"`"},
            {"id": "A2", "status": "pass", "evidence": "curl -s -D - -b jar localhost:8080/api/projects.csv → HTTP/1.1 200, content-type: text/csv, first line id,name,owner,created_at"},
            {"id": "A3", "status": "pass", "evidence": "curl -s -o /dev/null -w '%{http_code}' localhost:8080/api/projects.csv → 401"}
        ]
    })
}

// ---------------------------------------------------------------- schemas

#[test]
fn every_schema_compiles_and_is_a_valid_tool_input_schema() {
    for kind in KINDS {
        let schema = finish_schema(kind);
        compile(kind);
        assert_eq!(
            schema["type"], "object",
            "{kind:?}: tool inputs are objects"
        );
        for keyword in ["oneOf", "anyOf", "allOf"] {
            assert!(
                schema.get(keyword).is_none(),
                "{kind:?}: the Anthropic API refuses `{keyword}` at the top of a tool's input schema"
            );
        }
        FinishSpec::new(schema, "").unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    }
}

#[test]
fn a_questions_answer_passes_and_deserializes() {
    let value = questions();
    assert_valid(SchemaKind::Orchestrator, &value);
    match serde_json::from_value::<OrchestratorOutput>(value).unwrap() {
        OrchestratorOutput::Questions { questions } => assert_eq!(questions.len(), 2),
        other => panic!("not questions: {other:?}"),
    }
}

#[test]
fn a_two_milestone_plan_passes_deserializes_and_is_sound() {
    let value = plan_output();
    assert_valid(SchemaKind::Orchestrator, &value);
    let OrchestratorOutput::Plan { plan } = serde_json::from_value(value).unwrap() else {
        panic!("not a plan")
    };
    assert_eq!(plan.check(), vec![]);
    assert_eq!(plan.milestones.len(), 2);
    assert_eq!(plan.skills[0].name, "run-the-server");
    let m2: Vec<_> = plan
        .milestone_assertions(1)
        .iter()
        .map(|a| a.id.as_str())
        .collect();
    assert_eq!(m2, ["A2", "A4", "A5"]);
    assert!(plan.to_markdown(42).contains("| A5 |"));

    // Skills are optional.
    let mut bare = two_milestone_plan();
    bare.as_object_mut().unwrap().remove("skills");
    let value = json!({"kind": "plan", "plan": bare});
    assert_valid(SchemaKind::Orchestrator, &value);
    assert!(serde_accepts(SchemaKind::Orchestrator, &value));
}

#[test]
fn an_amendment_passes_deserializes_and_keeps_the_plan_sound() {
    let value = amend();
    assert_valid(SchemaKind::Orchestrator, &value);
    let OrchestratorOutput::Amend {
        notes,
        features,
        assertions,
    } = serde_json::from_value(value).unwrap()
    else {
        panic!("not an amendment")
    };
    assert!(notes.contains("F5"));
    // Applied the way the server applies it: appended to the current milestone.
    let OrchestratorOutput::Plan { mut plan } = serde_json::from_value(plan_output()).unwrap()
    else {
        unreachable!()
    };
    plan.assertions.extend(assertions);
    plan.milestones[0].features.extend(features);
    assert_eq!(plan.check(), vec![]);
    assert!(plan.milestone_assertions(0).iter().any(|a| a.id == "A6"));

    // A triage that adds nothing: notes alone.
    let value = json!({"kind": "amend", "notes": "The undone item is F4's work; nothing to add."});
    assert_valid(SchemaKind::Orchestrator, &value);
    let OrchestratorOutput::Amend {
        features,
        assertions,
        ..
    } = serde_json::from_value(value).unwrap()
    else {
        panic!("not an amendment")
    };
    assert!(features.is_empty() && assertions.is_empty());
}

#[test]
fn a_handoff_with_an_unresolved_issue_passes_and_needs_triage() {
    let value = handoff_with_unresolved_issue();
    assert_valid(SchemaKind::Handoff, &value);
    let handoff: Handoff = serde_json::from_value(value).unwrap();
    assert!(handoff.needs_triage());
    assert!(handoff.commands.is_empty());
    assert!(!handoff.followed_procedures);
    assert!(
        handoff
            .to_markdown("Authenticated endpoint")
            .contains("Unresolved issues")
    );

    let clean: Handoff = serde_json::from_value(clean_handoff()).unwrap();
    assert_valid(SchemaKind::Handoff, &clean_handoff());
    assert!(!clean.needs_triage());

    // The harness fills `commands` (a killed command has no exit code) and
    // serializes the handoff; the schema accepts that too.
    let mut with_commands = handoff_with_unresolved_issue();
    with_commands["commands"] = json!([
        {"command": "cargo test", "exit_code": 0},
        {"command": "cargo run -- serve", "exit_code": null}
    ]);
    assert_valid(SchemaKind::Handoff, &with_commands);
    with_commands["compactions"] = json!(2);
    let handoff: Handoff = serde_json::from_value(with_commands).unwrap();
    assert_eq!(handoff.commands[1].exit_code, None);
    assert!(
        handoff
            .to_markdown("Authenticated endpoint")
            .contains("compacted 2 times to fit its model's context window"),
        "reviewers see that the worker's early context was cut"
    );
    assert_valid(
        SchemaKind::Handoff,
        &serde_json::to_value(&handoff).unwrap(),
    );
}

#[test]
fn a_review_passes_and_becomes_a_feature_review() {
    let value = failing_review();
    assert_valid(SchemaKind::Review, &value);
    let (review, results) = serde_json::from_value::<Review>(value).unwrap().split();
    assert_eq!(review.verdict, Verdict::Fail);
    assert_eq!(review.findings.len(), 2);
    assert_eq!(results.len(), 2);

    let passing = json!({"feature": "F1", "verdict": "pass", "findings": [], "assertions": [
        {"id": "A1", "status": "pass", "evidence": "src/export/csv.rs:30-52; tests export::commas, export::quotes"}
    ]});
    assert_valid(SchemaKind::Review, &passing);
    let (review, _) = serde_json::from_value::<Review>(passing).unwrap().split();
    assert_eq!(review.verdict, Verdict::Pass);
}

#[test]
fn a_user_testing_report_passes_and_judges_the_milestone() {
    let value = user_testing_report();
    assert_valid(SchemaKind::UserTesting, &value);
    let report = serde_json::from_value::<UserTesting>(value)
        .unwrap()
        .into_report("M1");
    let OrchestratorOutput::Plan { plan } = serde_json::from_value(plan_output()).unwrap() else {
        unreachable!()
    };
    let expected = plan.milestone_assertions(0);
    assert!(!report.passed(&expected));
    assert_eq!(report.failures(&expected).len(), 1);
    assert!(report.failures(&expected)[0].starts_with("A1 failed"));
}

/// Each wrong shape: the schema refuses it, and when `serde_too`, so does
/// serde (the rest are rules the schema adds, which `Plan::check` or the
/// server would catch later).
#[test]
fn wrong_shapes_are_refused() {
    let mut cases: Vec<(&str, SchemaKind, Value, bool)> = Vec::new();
    let mut add = |what, kind, value, serde_too| cases.push((what, kind, value, serde_too));

    let mut v = questions();
    v["extra"] = json!(1);
    add("unknown top-level field", SchemaKind::Orchestrator, v, true);
    add(
        "unknown kind",
        SchemaKind::Orchestrator,
        json!({"kind": "proposal", "questions": ["?"]}),
        true,
    );
    add(
        "missing kind",
        SchemaKind::Orchestrator,
        json!({"questions": ["Which database?"]}),
        true,
    );
    add(
        "questions without questions",
        SchemaKind::Orchestrator,
        json!({"kind": "questions"}),
        true,
    );
    add(
        "plan without plan",
        SchemaKind::Orchestrator,
        json!({"kind": "plan"}),
        true,
    );
    add(
        "plan under the wrong kind",
        SchemaKind::Orchestrator,
        json!({"kind": "questions", "plan": two_milestone_plan()}),
        true,
    );
    add(
        "a second variant's field",
        SchemaKind::Orchestrator,
        json!({"kind": "questions", "questions": ["?"], "notes": "n"}),
        true,
    );
    add(
        "amend without notes",
        SchemaKind::Orchestrator,
        json!({"kind": "amend", "features": []}),
        true,
    );
    add(
        "amend with questions",
        SchemaKind::Orchestrator,
        json!({"kind": "amend", "notes": "n", "questions": ["?"]}),
        true,
    );
    add(
        "no questions at all",
        SchemaKind::Orchestrator,
        json!({"kind": "questions", "questions": []}),
        false,
    );
    let mut v = plan_output();
    v["plan"]["milestones"][0]["features"][0]["priority"] = json!("high");
    add("unknown feature field", SchemaKind::Orchestrator, v, true);
    let mut v = plan_output();
    v["plan"]["assertions"][0]
        .as_object_mut()
        .unwrap()
        .remove("text");
    add("assertion without text", SchemaKind::Orchestrator, v, true);
    let mut v = plan_output();
    v["plan"]["owner"] = json!("alice");
    add("unknown plan field", SchemaKind::Orchestrator, v, true);
    let mut v = plan_output();
    v["plan"]["milestones"][1]["features"][0]["id"] = json!("../F3");
    add("path in a feature id", SchemaKind::Orchestrator, v, false);
    let mut v = plan_output();
    v["plan"]["milestones"][0]["id"] = json!("M".repeat(33));
    add("milestone id too long", SchemaKind::Orchestrator, v, false);
    let mut v = plan_output();
    v["plan"]["milestones"][0]["features"][0]["assertions"] = json!(["A 1"]);
    add("bad claimed id", SchemaKind::Orchestrator, v, false);
    let mut v = plan_output();
    v["plan"]["skills"][0]["name"] = json!("run the server");
    add("skill name with spaces", SchemaKind::Orchestrator, v, false);
    let mut v = plan_output();
    v["plan"]["milestones"][0]["features"][0]["assertions"] = json!([]);
    add(
        "feature claiming nothing",
        SchemaKind::Orchestrator,
        v,
        false,
    );
    let mut v = amend();
    v["features"][0]["id"] = json!("");
    add(
        "empty id in an amendment",
        SchemaKind::Orchestrator,
        v,
        false,
    );

    let mut v = clean_handoff();
    v.as_object_mut().unwrap().remove("followed_procedures");
    add(
        "handoff without followed_procedures",
        SchemaKind::Handoff,
        v,
        true,
    );
    let mut v = clean_handoff();
    v["confidence"] = json!(0.9);
    add("unknown handoff field", SchemaKind::Handoff, v, true);
    let mut v = handoff_with_unresolved_issue();
    v["issues"][0]["severity"] = json!("high");
    add("unknown issue field", SchemaKind::Handoff, v, true);
    let mut v = clean_handoff();
    v["undone"] = json!("nothing");
    add("undone as a string", SchemaKind::Handoff, v, true);
    let mut v = clean_handoff();
    v["feature"] = json!("F1; rm -rf /");
    add("bad feature id in a handoff", SchemaKind::Handoff, v, false);
    let mut v = clean_handoff();
    v.as_object_mut().unwrap().remove("issues");
    add(
        "handoff that does not state its issues",
        SchemaKind::Handoff,
        v,
        false,
    );

    let mut v = failing_review();
    v["verdict"] = json!("maybe");
    add("unknown verdict", SchemaKind::Review, v, true);
    let mut v = failing_review();
    v.as_object_mut().unwrap().remove("assertions");
    add("review without assertions", SchemaKind::Review, v, true);
    let mut v = failing_review();
    v["assertions"][0]["status"] = json!("skipped");
    add("unknown assertion status", SchemaKind::Review, v, true);
    let mut v = failing_review();
    v["score"] = json!(3);
    add("unknown review field", SchemaKind::Review, v, true);

    let mut v = user_testing_report();
    v.as_object_mut().unwrap().remove("summary");
    add("report without summary", SchemaKind::UserTesting, v, true);
    let mut v = user_testing_report();
    v["assertions"][1]
        .as_object_mut()
        .unwrap()
        .remove("evidence");
    add("result without evidence", SchemaKind::UserTesting, v, true);
    let mut v = user_testing_report();
    v["milestone"] = json!("M1");
    add(
        "a field the harness fills",
        SchemaKind::UserTesting,
        v,
        true,
    );
    let mut v = user_testing_report();
    v["assertions"][0]["evidence"] = json!("");
    add("empty evidence", SchemaKind::UserTesting, v, false);

    for (what, kind, value, serde_too) in cases {
        assert!(
            !schema_errors(kind, &value).is_empty(),
            "{kind:?} schema accepts {what}:\n{value:#}"
        );
        if serde_too {
            assert!(
                !serde_accepts(kind, &value),
                "serde accepts {what}, which the schema refuses:\n{value:#}"
            );
        }
    }
}

#[test]
fn bad_ids_that_slip_past_serde_are_caught_by_the_plan_check() {
    let mut v = two_milestone_plan();
    v["milestones"][1]["features"][0]["id"] = json!("../F3");
    let plan: Plan = serde_json::from_value(v).unwrap();
    assert!(plan.check().contains(&PlanError::BadId("../F3".into())));
}

/// Coverage and uniqueness span the whole plan: no JSON Schema says them, so
/// `Plan::check` must catch a schema-valid plan that breaks them.
#[test]
fn coverage_and_uniqueness_are_left_to_the_plan_check() {
    let mut v = two_milestone_plan();
    // F4 claims A9 (not in the contract) instead of A5 (now claimed by nobody),
    // and F3 reuses F1's id.
    v["milestones"][1]["features"][1]["assertions"] = json!(["A9"]);
    v["milestones"][1]["features"][0]["id"] = json!("F1");
    let output = json!({"kind": "plan", "plan": v});
    assert_valid(SchemaKind::Orchestrator, &output);
    let OrchestratorOutput::Plan { plan } = serde_json::from_value(output).unwrap() else {
        unreachable!()
    };
    let errors = plan.check();
    assert!(errors.contains(&PlanError::UncoveredAssertion("A5".into())));
    assert!(errors.contains(&PlanError::UnknownAssertion {
        feature: "F4".into(),
        assertion: "A9".into()
    }));
    assert!(errors.contains(&PlanError::DuplicateId("F1".into())));

    // An amendment adding an assertion no feature claims is schema-valid too.
    let mut plan: Plan = serde_json::from_value(two_milestone_plan()).unwrap();
    let output = json!({"kind": "amend", "notes": "n", "assertions": [{"id": "A7", "text": "t"}]});
    assert_valid(SchemaKind::Orchestrator, &output);
    let OrchestratorOutput::Amend { assertions, .. } = serde_json::from_value(output).unwrap()
    else {
        unreachable!()
    };
    plan.assertions.extend(assertions);
    assert_eq!(
        plan.check(),
        vec![PlanError::UncoveredAssertion("A7".into())]
    );

    // And one reusing an id already in the plan.
    let mut plan: Plan = serde_json::from_value(two_milestone_plan()).unwrap();
    plan.milestones[0].features.push(Feature {
        id: "F2".into(),
        title: "again".into(),
        description: "d".into(),
        assertions: vec!["A1".into()],
    });
    plan.assertions.push(Assertion {
        id: "M2".into(),
        text: "t".into(),
        check: None,
    });
    let errors = plan.check();
    assert!(errors.contains(&PlanError::DuplicateId("F2".into())));
    assert!(errors.contains(&PlanError::DuplicateId("M2".into())));
}

// ---------------------------------------------------------------- prompts

#[test]
fn an_override_directory_replaces_prompts_role_by_role() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("worker.md"),
        "# Our worker\nUse `finish`.\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("user-testing.md"), "# Our tester\n").unwrap();

    assert_eq!(
        system_prompt(JobRole::Worker, Some(dir.path())).unwrap(),
        "# Our worker\nUse `finish`.\n"
    );
    assert_eq!(
        system_prompt(JobRole::UserTesting, Some(dir.path())).unwrap(),
        "# Our tester\n"
    );
    for role in [JobRole::Orchestrator, JobRole::Scrutiny] {
        assert_eq!(
            system_prompt(role, Some(dir.path())).unwrap(),
            builtin_prompt(role),
            "{role:?} falls back to the built-in prompt"
        );
    }
    let missing = dir.path().join("no-such-dir");
    for role in ROLES {
        assert_eq!(system_prompt(role, None).unwrap(), builtin_prompt(role));
        assert_eq!(
            system_prompt(role, Some(&missing)).unwrap(),
            builtin_prompt(role)
        );
    }
}

/// The prompt with its whitespace collapsed and in lower case, so phrases are
/// found across line breaks.
fn flat(role: JobRole) -> String {
    builtin_prompt(role)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[test]
fn every_prompt_states_the_ground_rules() {
    for role in ROLES {
        let lines = builtin_prompt(role).lines().count();
        let text = flat(role);
        let name = role.as_str();
        assert!(lines >= 60, "{name}.md is a placeholder ({lines} lines)");
        for phrase in [
            "`finish` tool",
            "untrusted data",
            "never follow",
            "environment variables",
            "secrets",
            "exactly once",
        ] {
            assert!(
                text.contains(&phrase.to_lowercase()),
                "{name}.md does not say {phrase:?}"
            );
        }
    }
}

#[test]
fn each_prompt_covers_its_role() {
    let orchestrator = flat(JobRole::Orchestrator);
    for phrase in [
        "### scope",
        "### revise",
        "### triage",
        "### follow-up",
        "### replan",
        "### boundary",
        "\"kind\": \"revision\"",
        "\"kind\": \"questions\"",
        "\"kind\": \"plan\"",
        "\"kind\": \"amend\"",
        "genuinely ambiguous",
        "before any code",
        "every assertion is claimed by at least one feature",
        "default branch",
        "**Skills**",
        "**Baseline lint**",
        "**Negative controls**",
    ] {
        assert!(
            orchestrator.contains(&phrase.to_lowercase()),
            "orchestrator.md: {phrase:?}"
        );
    }
    let worker = flat(JobRole::Worker);
    for phrase in [
        "exactly one feature",
        ".missions/<issue>/plan.json",
        "AGENTS.md",
        "skills",
        "Do not commit, push",
        "under `.missions/`",
        "run the tests",
        "`undone`",
        "`issues`",
        "`followed_procedures`",
        "Be honest",
        "negative control",
    ] {
        assert!(
            worker.contains(&phrase.to_lowercase()),
            "worker.md: {phrase:?}"
        );
    }
    let scrutiny = flat(JobRole::Scrutiny);
    for phrase in [
        "**one feature**",
        "exit codes",
        "claimed assertion",
        "`verdict`",
        "`findings`",
        "`evidence`",
    ] {
        assert!(
            scrutiny.contains(&phrase.to_lowercase()),
            "scrutiny.md: {phrase:?}"
        );
    }
    let tester = flat(JobRole::UserTesting);
    for phrase in [
        "by actually running",
        "harness has started it",
        "one result per assertion",
        "counts as failed",
        "`evidence`",
    ] {
        assert!(
            tester.contains(&phrase.to_lowercase()),
            "user-testing.md: {phrase:?}"
        );
    }
}

/// The JSON examples in the prompts are what models imitate: each one must be
/// a value the role's `finish` accepts.
#[test]
fn the_examples_in_the_prompts_match_their_schemas() {
    for role in ROLES {
        let text = builtin_prompt(role);
        let mut examples = 0;
        let mut rest = text;
        while let Some(start) = rest.find("```json\n") {
            let body = &rest[start + "```json\n".len()..];
            let end = body.find("```").expect("closed code block");
            let value: Value = serde_json::from_str(&body[..end])
                .unwrap_or_else(|e| panic!("{}.md example is not JSON: {e}", role.as_str()));
            let kind = schema_of(role);
            assert_valid(kind, &value);
            assert!(serde_accepts(kind, &value), "{}.md example", role.as_str());
            examples += 1;
            rest = &body[end + 3..];
        }
        assert!(examples >= 1, "{}.md has no example", role.as_str());
    }
}
