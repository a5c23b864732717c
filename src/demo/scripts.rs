//! The scripted model's answers for the demo mission, one file per agent run
//! (`<name>.json`, the harness's `{agent}` names). The workers' scripts make real
//! edits and run the real tests, so a broken edit really fails validation.
//! [`Story`] switches the variations the scenario tests need.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::llm::config::{Engine, Role};

use super::project::{self, Stage};

/// Which way the mission goes.
#[derive(Debug, Clone, Default)]
pub struct Story {
    /// The orchestrator first asks a question (scope-1), then plans (scope-2).
    pub ask_question: bool,
    /// The first plan names one milestone only; the maintainer requests changes
    /// and the revision (revise-1) is the two-milestone plan.
    pub revise: bool,
    /// F2's worker breaks `count_words`; scrutiny fails; the follow-up feature F4 fixes it.
    pub break_f2: bool,
    /// F1's handoff reports an unresolved issue; triage (triage-F1) answers it.
    pub f1_unresolved_issue: bool,
    /// F1's first this-many runs have no script (the job fails, as on a provider outage).
    pub f1_failed_runs: u32,
    /// The first plan gives A1 a check that already passes on main; the
    /// baseline lint sends it back (scope-1-lint), and the orchestrator
    /// fixes it, or with `keep_trivial_check` keeps it.
    pub trivial_check: bool,
    pub keep_trivial_check: bool,
    /// F1's worker adds a test but not `--lines`: its negative control fails,
    /// and triage (triage-F1) adds F5.
    pub f1_without_lines: bool,
    /// After M1 merges, the re-plan (boundary-M1) changes F3, adds F6 with a
    /// new assertion A5, and updates the run-tests skill; M2's workers read it.
    pub replan_m2: bool,
    /// After M1 merges, the re-plan drops the approved A3 for a looser A5:
    /// it waits for the maintainer's approval.
    pub replan_drops_a3: bool,
    /// F2's worker leaves a `TODO` in the program. The validators pass M1's
    /// first round, the repository's own CI lint ([`CI_LINT`]) fails it, and
    /// the follow-up (followup-M1-1) adds F4 with A4 ([`NO_TODO_CHECK`]).
    pub ci_lint_f2: bool,
}

/// The repository's own CI lint in the CI story: no `TODO` in the program.
pub const CI_LINT: &str = "if grep -n TODO textstats.py; then echo 'lint: TODO markers are not allowed on main' >&2; exit 1; fi";

/// A4 of the CI story: the check the follow-up writes from the CI's report.
pub const NO_TODO_CHECK: &str = "! grep -q TODO textstats.py";

/// The run-tests skill as the re-plan before M2 rewrites it.
pub const UPDATED_SKILL: &str = "Run `python3 -m unittest -q` from the repository root, then \
    `python3 textstats.py sample.txt --top 2` as a smoke test; both must succeed before you finish.";

/// The README as F6 leaves it.
pub const README_WITH_TOP: &str = "# textstats\n\nSmall statistics about a text file.\n\n\
    ```\npython3 textstats.py FILE [--lines | --chars | --top N]\n```\n\n\
    `--top N` prints the N most frequent words.\n\nTests: `python3 -m unittest -q`.\n";

fn turn_calls(calls: Vec<Value>) -> Value {
    json!({ "tool_calls": calls })
}

fn call(name: &str, input: Value) -> Value {
    json!({ "name": name, "input": input })
}

fn finish(input: Value) -> Value {
    turn_calls(vec![call("finish", input)])
}

/// The contract. Each assertion's `check` fails on the sample repository as
/// it is and passes once its feature is in (sample.txt: 3 lines, 52
/// characters, 11 words, `the` three times).
fn assertions() -> Value {
    json!([
        {"id": "A1", "text": "`python3 textstats.py FILE --lines` prints `lines: N`, N the number of lines of FILE",
         "check": A1_CHECK},
        {"id": "A2", "text": "`python3 textstats.py FILE --chars` prints `chars: N`, N the number of characters of FILE, and `python3 textstats.py FILE` still prints `words: N`",
         "check": "python3 textstats.py sample.txt --chars | grep -qx 'chars: 52'"},
        {"id": "A3", "text": "`python3 textstats.py FILE --top N` prints the N most frequent words as `word count` lines, ties in alphabetical order",
         "check": "test \"$(python3 textstats.py sample.txt --top 2)\" = \"$(printf 'the 3\\nbrown 1')\""}
    ])
}

/// The assertion the follow-up adds when F2 broke the word count: its check
/// fails with F2's slip and passes once F4 undoes it.
fn a4() -> Value {
    json!({"id": "A4", "text": "`python3 textstats.py FILE` prints `words: N`, N the number of words of FILE separated by any whitespace",
           "check": "python3 textstats.py sample.txt | grep -qx 'words: 11'"})
}

const A1_CHECK: &str = "python3 textstats.py sample.txt --lines | grep -qx 'lines: 3'";

/// A check that already passes on the sample repository: it tests nothing new.
pub const TRIVIAL_CHECK: &str = "python3 textstats.py sample.txt | grep -q words";

fn feature(id: &str, title: &str, description: &str, claims: &[&str]) -> Value {
    json!({"id": id, "title": title, "description": description, "assertions": claims})
}

/// The plan: M1 (F1 lines, F2 chars), M2 (F3 top); `one_milestone` folds F3 away
/// (the draft the maintainer sends back in the revise story).
pub fn plan(one_milestone: bool) -> Value {
    let f1 = feature(
        "F1",
        "Count lines",
        "Add count_lines(text) and a --lines flag printing `lines: N`, with a test.",
        &["A1"],
    );
    let f2 = feature(
        "F2",
        "Count characters",
        "Add count_chars(text) and a --chars flag printing `chars: N`, with a test; keep the word count unchanged.",
        &["A2"],
    );
    let f3 = feature(
        "F3",
        "Most frequent words",
        "Add top_words(text, n) and a --top N flag printing `word count` lines, ties alphabetical, with a test.",
        &["A3"],
    );
    let mut milestones =
        vec![json!({"id": "M1", "title": "Line and character counts", "features": [f1, f2]})];
    let mut contract = assertions();
    if one_milestone {
        contract.as_array_mut().unwrap().truncate(2);
    } else {
        milestones.push(json!({"id": "M2", "title": "Most frequent words", "features": [f3]}));
    }
    json!({
        "title": "textstats: lines, characters and top words",
        "summary": "Three small flags on the existing CLI, each with a unit test; the word count stays the default output.",
        "assertions": contract,
        "milestones": milestones,
        "skills": [{"name": "run-tests", "body": "Run `python3 -m unittest -q` from the repository root; all tests must pass before you finish."}]
    })
}

fn orchestrator_plan(one_milestone: bool) -> Vec<Value> {
    orchestrator_plan_of(plan(one_milestone))
}

fn orchestrator_plan_of(plan: Value) -> Vec<Value> {
    vec![
        turn_calls(vec![call("read_file", json!({"path": "textstats.py"}))]),
        finish(json!({"kind": "plan", "plan": plan})),
    ]
}

/// `plan` with A1's check replaced by one that passes on the sample as it is.
fn with_trivial_check(mut plan: Value) -> Value {
    plan["assertions"][0]["check"] = json!(TRIVIAL_CHECK);
    plan
}

fn worker(feature: &str, stage: Stage, did: &str, extra_issue: Option<&str>) -> Vec<Value> {
    let issues = match extra_issue {
        Some(text) => json!([{"description": text, "resolved": false}]),
        None => json!([]),
    };
    vec![
        turn_calls(vec![
            call(
                "write_file",
                json!({"path": "textstats.py", "content": project::program(stage)}),
            ),
            call(
                "write_file",
                json!({"path": "test_textstats.py", "content": project::tests(stage)}),
            ),
        ]),
        turn_calls(vec![call(
            "bash",
            json!({"command": "python3 -m unittest -q 2>&1 | tail -n 3"}),
        )]),
        finish(json!({
            "feature": feature,
            "summary": did,
            "completed": [did],
            "undone": [],
            "issues": issues,
            "followed_procedures": true,
            "procedures_note": "ran the test suite as skills/run-tests.md says"
        })),
    ]
}

fn review(feature: &str, claims: &[(&str, bool, &str)]) -> Vec<Value> {
    let pass = claims.iter().all(|c| c.1);
    let results: Vec<Value> = claims
        .iter()
        .map(|(id, ok, evidence)| json!({"id": id, "status": if *ok {"pass"} else {"fail"}, "evidence": evidence}))
        .collect();
    vec![
        turn_calls(vec![call("read_file", json!({"path": "textstats.py"}))]),
        finish(json!({
            "feature": feature,
            "verdict": if pass {"pass"} else {"fail"},
            "findings": if pass { json!([]) } else { json!(["the test suite fails: count_words splits on single spaces only"]) },
            "assertions": results
        })),
    ]
}

fn user_test(commands: &[&str], results: &[(&str, bool, &str)]) -> Vec<Value> {
    let runs: Vec<Value> = commands
        .iter()
        .map(|c| call("bash", json!({"command": c})))
        .collect();
    let all_pass = results.iter().all(|r| r.1);
    vec![
        turn_calls(runs),
        finish(json!({
            "summary": if all_pass { "Ran the CLI on sample.txt; every assertion holds." } else { "Ran the CLI on sample.txt; some output is wrong." },
            "assertions": results.iter().map(|(id, ok, evidence)| json!({"id": id, "status": if *ok {"pass"} else {"fail"}, "evidence": evidence})).collect::<Vec<_>>()
        })),
    ]
}

/// Every script of `story`: (agent-run name, turns).
pub fn scripts(story: &Story) -> Vec<(String, Vec<Value>)> {
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    let mut add = |name: &str, turns: Vec<Value>| out.push((name.to_owned(), turns));
    // Scoping.
    if story.ask_question {
        add(
            "scope-1",
            vec![finish(
                json!({"kind": "questions", "questions": ["For --top, should words that differ only in case count as the same word?"]}),
            )],
        );
        add("scope-2", orchestrator_plan(story.revise));
    } else if story.trivial_check {
        add(
            "scope-1",
            orchestrator_plan_of(with_trivial_check(plan(story.revise))),
        );
        let second = if story.keep_trivial_check {
            with_trivial_check(plan(story.revise))
        } else {
            plan(story.revise)
        };
        add(
            "scope-1-lint",
            vec![finish(json!({"kind": "plan", "plan": second}))],
        );
    } else {
        add("scope-1", orchestrator_plan(story.revise));
    }
    if story.revise {
        add("revise-1", orchestrator_plan(false));
    }
    // M1.
    let s1 = Stage {
        lines: true,
        ..Stage::START
    };
    let f1 = worker(
        "F1",
        if story.f1_without_lines { Stage::START } else { s1 },
        "Added count_lines and --lines, with a test; the suite passes.",
        story.f1_unresolved_issue.then_some("--lines counts a last line without a newline; should an empty file print 0? Left as 0."),
    );
    if story.f1_failed_runs > 0 {
        add(&format!("feature-F1.{}", story.f1_failed_runs + 1), f1);
    } else {
        add("feature-F1", f1);
    }
    if story.f1_without_lines {
        add(
            "triage-F1",
            vec![finish(
                json!({"kind": "amend", "notes": "The negative control shows F1 never added --lines: its check fails with F1. F5 adds the flag.", "features": [feature("F5", "Add the --lines flag", "Add the --lines flag that prints `lines: N`; count_lines exists.", &["A1"])], "assertions": []}),
            )],
        );
    }
    if story.f1_unresolved_issue {
        add(
            "triage-F1",
            vec![finish(
                json!({"kind": "amend", "notes": "An empty file has 0 lines; that is what `wc -l` says too. No follow-up work is needed.", "features": [], "assertions": []}),
            )],
        );
    }
    let s2 = Stage {
        lines: true,
        chars: true,
        ..Stage::START
    };
    let s2_written = Stage {
        broken_words: story.break_f2,
        todo_left: story.ci_lint_f2,
        ..s2
    };
    add(
        "feature-F2",
        worker(
            "F2",
            s2_written,
            "Added count_chars and --chars, with a test.",
            None,
        ),
    );
    let wc = "python3 textstats.py sample.txt";
    if story.break_f2 {
        add(
            "M1-scrutiny-1-review-F1",
            review("F1", &[("A1", true, "count_lines and its test are right")]),
        );
        add(
            "M1-scrutiny-1-review-F2",
            review(
                "F2",
                &[(
                    "A2",
                    false,
                    "python3 -m unittest fails: test_empty_text_has_no_words gets 1 from count_words(\"\"), which splits on single spaces",
                )],
            ),
        );
        add(
            "M1-user-testing-1",
            user_test(
                &[
                    "python3 textstats.py sample.txt --lines",
                    "python3 textstats.py sample.txt --chars",
                    wc,
                ],
                &[
                    ("A1", true, "lines: 3"),
                    (
                        "A2",
                        false,
                        "`python3 textstats.py sample.txt` prints a wrong word count",
                    ),
                ],
            ),
        );
        add(
            "followup-M1-1",
            vec![finish(
                json!({"kind": "amend", "notes": "Scrutiny found count_words broken by F2 (it splits on single spaces). F4 restores it, judged by the new A4.", "features": [feature("F4", "Restore the word count", "count_words must split on any whitespace again; the existing test covers it.", &["A4"])], "assertions": [a4()]}),
            )],
        );
        add(
            "feature-F4",
            worker(
                "F4",
                s2,
                "Restored count_words to split on any whitespace; the suite passes again.",
                None,
            ),
        );
        add(
            "M1-scrutiny-2-review-F1",
            review("F1", &[("A1", true, "count_lines and its test are right")]),
        );
        add(
            "M1-scrutiny-2-review-F2",
            review(
                "F2",
                &[("A2", true, "count_chars counts characters; test passes")],
            ),
        );
        add(
            "M1-scrutiny-2-review-F4",
            review(
                "F4",
                &[(
                    "A4",
                    true,
                    "count_words splits on whitespace; python3 -m unittest passes",
                )],
            ),
        );
        add(
            "M1-user-testing-2",
            user_test(
                &[
                    "python3 textstats.py sample.txt --lines",
                    "python3 textstats.py sample.txt --chars",
                    wc,
                ],
                &[
                    ("A1", true, "lines: 3"),
                    ("A2", true, "chars: 52; words: 11"),
                    ("A4", true, "words: 11"),
                ],
            ),
        );
    } else {
        add(
            "M1-scrutiny-1-review-F1",
            review(
                "F1",
                &[(
                    "A1",
                    true,
                    "count_lines uses splitlines; test_counts_lines passes",
                )],
            ),
        );
        add(
            "M1-scrutiny-1-review-F2",
            review(
                "F2",
                &[(
                    "A2",
                    true,
                    "count_chars is len(text); the word count is untouched",
                )],
            ),
        );
        add(
            "M1-user-testing-1",
            user_test(
                &[
                    "python3 textstats.py sample.txt --lines",
                    "python3 textstats.py sample.txt --chars",
                    wc,
                ],
                &[
                    ("A1", true, "lines: 3"),
                    ("A2", true, "chars: 52; words: 11"),
                ],
            ),
        );
    }
    if story.ci_lint_f2 {
        add(
            "followup-M1-1",
            vec![finish(
                json!({"kind": "amend", "notes": "Both validators passed, but the repository's CI lint failed on the ready commit: F2 left a TODO in textstats.py (M1-ci.json). F4 removes it, judged by the new A4.", "features": [feature("F4", "Remove the TODO F2 left", "The repository's CI lint refuses TODO markers: remove the one in textstats.py.", &["A4"])], "assertions": [{"id": "A4", "text": "textstats.py has no TODO markers (the repository's CI lint)", "check": NO_TODO_CHECK}]}),
            )],
        );
        add(
            "feature-F4",
            worker(
                "F4",
                s2,
                "Removed the TODO F2 left in textstats.py; the suite passes.",
                None,
            ),
        );
        for feature in ["F1", "F2", "F4"] {
            let (id, why) = match feature {
                "F1" => ("A1", "count_lines and its test are right"),
                "F2" => ("A2", "count_chars counts characters; test passes"),
                _ => ("A4", "no TODO is left in textstats.py"),
            };
            add(
                &format!("M1-scrutiny-2-review-{feature}"),
                review(feature, &[(id, true, why)]),
            );
        }
        add(
            "M1-user-testing-2",
            user_test(
                &[
                    "python3 textstats.py sample.txt --lines",
                    "python3 textstats.py sample.txt --chars",
                    wc,
                ],
                &[
                    ("A1", true, "lines: 3"),
                    ("A2", true, "chars: 52; words: 11"),
                    ("A4", true, "grep finds no TODO"),
                ],
            ),
        );
    }
    // The boundary before M2.
    add("boundary-M1", boundary_after_m1(story));
    // M2.
    let s3 = Stage {
        lines: true,
        chars: true,
        top: true,
        broken_words: false,
        todo_left: false,
    };
    add(
        "feature-F3",
        worker(
            "F3",
            s3,
            "Added top_words and --top N, ties alphabetical, with a test.",
            None,
        ),
    );
    let top = if story.replan_drops_a3 { "A5" } else { "A3" };
    add(
        "M2-scrutiny-1-review-F3",
        review(
            "F3",
            &[(top, true, "top_words sorts by (-count, word); test passes")],
        ),
    );
    let mut judged = vec![(top, true, "`the 3` then `brown 1`")];
    if story.replan_m2 {
        add(
            "feature-F6",
            vec![
                turn_calls(vec![call(
                    "write_file",
                    json!({"path": "README.md", "content": README_WITH_TOP}),
                )]),
                turn_calls(vec![call(
                    "bash",
                    json!({"command": "python3 -m unittest -q 2>&1 | tail -n 3 && python3 textstats.py sample.txt --top 2"}),
                )]),
                finish(json!({
                    "feature": "F6",
                    "summary": "README.md documents --lines, --chars and --top N.",
                    "completed": ["README.md documents the three flags"],
                    "undone": [],
                    "issues": [],
                    "followed_procedures": true,
                    "procedures_note": "ran the tests and the smoke test as skills/run-tests.md says"
                })),
            ],
        );
        add(
            "M2-scrutiny-1-review-F6",
            review("F6", &[("A5", true, "README.md documents --top N")]),
        );
        judged.push(("A5", true, "README.md shows `--top N`"));
    }
    add(
        "M2-user-testing-1",
        user_test(&["python3 textstats.py sample.txt --top 2"], &judged),
    );
    out
}

/// The orchestrator's re-plan once M1 is merged: as the story has it.
fn boundary_after_m1(story: &Story) -> Vec<Value> {
    let f3 = |claims: &[&str]| {
        feature(
            "F3",
            "Most frequent words",
            "Add top_words(text, n) and a --top N flag printing `word count` lines, ties \
             alphabetical (lower-cased words), with a test.",
            claims,
        )
    };
    let read = turn_calls(vec![call("read_file", json!({"path": "textstats.py"}))]);
    if story.replan_m2 {
        let mut contract = assertions();
        contract.as_array_mut().unwrap().push(json!({
            "id": "A5", "text": "README.md documents `--top N`",
            "check": "grep -q -- '--top N' README.md"
        }));
        let f6 = feature(
            "F6",
            "Document the flags",
            "Document --lines, --chars and --top N in README.md.",
            &["A5"],
        );
        return vec![
            read,
            finish(json!({
                "kind": "revision",
                "notes": "M1 taught that words must be lower-cased for --top; F3 says so. The README documents none of the flags: F6 adds that, judged by A5. Workers also smoke-test the CLI now.",
                "milestones": [{"id": "M2", "title": "Most frequent words", "features": [f3(&["A3"]), f6]}],
                "assertions": contract,
                "skills": [{"name": "run-tests", "body": UPDATED_SKILL}]
            })),
        ];
    }
    if story.replan_drops_a3 {
        let mut contract = assertions();
        let list = contract.as_array_mut().unwrap();
        list.truncate(2);
        list.push(
            json!({"id": "A5", "text": "`python3 textstats.py FILE --top N` prints N lines"}),
        );
        return vec![
            read,
            finish(json!({
                "kind": "revision",
                "notes": "Ties are rare in real texts; A5 asks only for N lines.",
                "milestones": [{"id": "M2", "title": "Most frequent words", "features": [f3(&["A5"])]}],
                "assertions": contract
            })),
        ];
    }
    vec![
        read,
        finish(json!({"kind": "revision", "notes": "M1 went as planned; M2 stands as it is."})),
    ]
}

/// The role an agent-run name belongs to (`feature-F1` a worker,
/// `M1-scrutiny-1-review-F1` a reviewer, …).
pub fn role_of(name: &str) -> Role {
    if name.starts_with("feature-") {
        Role::Worker
    } else if name.contains("-scrutiny-") {
        Role::Scrutiny
    } else if name.contains("-user-testing-") {
        Role::UserTesting
    } else {
        Role::Orchestrator
    }
}

/// The same work in a third-party engine's own tools, for the scripted model
/// served to it: Claude Code's `Read`/`Write`/`Bash`, Codex's `exec_command`,
/// and `finish` as each names the `missions` MCP server's tool. The built-in
/// engine's turns are returned as they are.
pub fn for_engine(turns: Vec<Value>, engine: &Engine) -> Vec<Value> {
    if engine.is_builtin() {
        return turns;
    }
    let mut out = Vec::new();
    for turn in turns {
        let calls = turn["tool_calls"].as_array().cloned().unwrap_or_default();
        let mut translated = Vec::new();
        let mut reads_first = Vec::new();
        for c in &calls {
            let input = &c["input"];
            let text = |k: &str| input[k].as_str().unwrap_or_default().to_owned();
            match (engine, c["name"].as_str().unwrap_or_default()) {
                (_, "finish") => translated.push(call("mcp__missions__finish", input.clone())),
                (Engine::ClaudeCode, "read_file") => translated.push(call(
                    "Read",
                    json!({"file_path": format!("{{{{cwd}}}}/{}", text("path"))}),
                )),
                (Engine::ClaudeCode, "write_file") => {
                    let file_path = format!("{{{{cwd}}}}/{}", text("path"));
                    // Claude Code writes over a file only after reading it.
                    reads_first.push(call("Read", json!({"file_path": file_path})));
                    translated.push(call(
                        "Write",
                        json!({"file_path": file_path, "content": text("content")}),
                    ));
                }
                (Engine::ClaudeCode, "bash") => translated.push(call(
                    "Bash",
                    json!({"command": text("command"), "description": "Run a command"}),
                )),
                (_, "read_file") => translated.push(call(
                    "exec_command",
                    json!({"cmd": format!("cat {}", text("path"))}),
                )),
                (_, "write_file") => translated.push(call(
                    "exec_command",
                    json!({"cmd": format!(
                        "cat > {} <<'MISSIONS_EOF'\n{}MISSIONS_EOF",
                        text("path"),
                        text("content")
                    )}),
                )),
                (_, "bash") => {
                    translated.push(call("exec_command", json!({"cmd": text("command")})))
                }
                (_, other) => translated.push(call(other, input.clone())),
            }
        }
        if !reads_first.is_empty() {
            out.push(turn_calls(reads_first));
        }
        let finishing = translated
            .iter()
            .any(|c| c["name"] == "mcp__missions__finish");
        let mut turn = turn.clone();
        turn["tool_calls"] = Value::Array(translated);
        out.push(turn);
        if finishing {
            // The agent answers the accepted finish with a last word (if the
            // harness has not stopped it already).
            out.push(json!({"text": "Done."}));
        }
    }
    out
}

/// Writes every script of `story` into `dir` as `<name>.json`, each in the
/// tools of its role's engine (`engines`: the roles not on the built-in one).
pub fn write(dir: &Path, story: &Story) -> std::io::Result<()> {
    write_for(dir, story, &BTreeMap::new())
}

pub fn write_for(
    dir: &Path,
    story: &Story,
    engines: &BTreeMap<Role, Engine>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, turns) in scripts(story) {
        let turns = match engines.get(&role_of(&name)) {
            Some(engine) => for_engine(turns, engine),
            None => turns,
        };
        let text = serde_json::to_string_pretty(&turns).expect("scripts are JSON");
        std::fs::write(dir.join(format!("{name}.json")), text)?;
    }
    Ok(())
}
