//! The scripted provider: replays text and tool calls with generated ids,
//! records every request, estimates usage when the script gives none, fails
//! clearly when the script runs out, and loads JSON arrays and JSON Lines.

use std::sync::Arc;

use missions::llm::scripted::{Scripted, ScriptedCall, ScriptedTurn};
use missions::llm::{
    ChatRequest, ContentBlock, LlmError, Message, Provider, Role, StopReason, Usage,
};
use serde_json::json;

fn request(text: &str) -> ChatRequest {
    ChatRequest {
        model: "claude-sonnet-4-5".into(),
        system: "You are a test.".into(),
        tools: vec![],
        messages: vec![Message::user_text(text)],
        max_tokens: 1000,
    }
}

const SCRIPT: &str = r#"[
    {"text": "Let me look.", "tool_calls": [
        {"name": "read_file", "input": {"path": "README.md"}},
        {"name": "list_dir"}
    ]},
    {"tool_calls": [{"name": "write_file", "input": {"path": "README.md", "text": "hi"}}],
     "usage": {"input_tokens": 1200, "cache_read_tokens": 800}},
    {"text": "Done.", "stop_reason": "max_tokens"}
]"#;

#[tokio::test]
async fn replays_text_and_tool_calls_and_records_requests() {
    let scripted = Scripted::from_json(SCRIPT).unwrap();
    assert_eq!(scripted.name(), "scripted");
    assert_eq!((scripted.len(), scripted.remaining()), (3, 3));

    let first = scripted.chat(&request("one")).await.unwrap();
    assert_eq!(
        first.content,
        vec![
            ContentBlock::Text {
                text: "Let me look.".into()
            },
            ContentBlock::ToolUse {
                id: "call_1".into(),
                name: "read_file".into(),
                input: json!({"path": "README.md"}),
            },
            ContentBlock::ToolUse {
                id: "call_2".into(),
                name: "list_dir".into(),
                input: json!({}),
            },
        ]
    );
    assert_eq!(first.stop_reason, StopReason::ToolUse);
    assert_eq!(first.model, "claude-sonnet-4-5", "the requested model");
    // Estimated: bytes / 4 of the request and of the answer.
    let request_bytes = serde_json::to_vec(&request("one")).unwrap().len() as u64;
    let answer_bytes = serde_json::to_vec(&first.content).unwrap().len() as u64;
    assert_eq!(
        first.usage,
        Usage {
            input_tokens: request_bytes.div_ceil(4),
            output_tokens: answer_bytes.div_ceil(4),
            cache_read_tokens: 0,
            cache_write_tokens: 0,
        }
    );
    assert!(first.usage.input_tokens > 0 && first.usage.output_tokens > 0);

    let second = scripted.chat(&request("two")).await.unwrap();
    assert_eq!(
        second.content,
        vec![ContentBlock::ToolUse {
            id: "call_3".into(),
            name: "write_file".into(),
            input: json!({"path": "README.md", "text": "hi"}),
        }]
    );
    assert_eq!(
        second.usage,
        Usage {
            input_tokens: 1200,
            output_tokens: 0,
            cache_read_tokens: 800,
            cache_write_tokens: 0,
        },
        "the script's usage, missing counts 0"
    );

    let third = scripted.chat(&request("three")).await.unwrap();
    assert_eq!(third.message().text(), "Done.");
    assert_eq!(third.message().role, Role::Assistant);
    assert_eq!(third.stop_reason, StopReason::MaxTokens);
    assert_eq!(scripted.remaining(), 0);

    let sent: Vec<String> = scripted
        .requests()
        .iter()
        .map(|r| r.messages[0].text())
        .collect();
    assert_eq!(sent, ["one", "two", "three"]);
    assert_eq!(scripted.requests()[0], request("one"));
}

#[tokio::test]
async fn running_out_is_a_clear_error() {
    let scripted = Scripted::new(vec![ScriptedTurn::text("only")]);
    scripted.chat(&request("a")).await.unwrap();
    let error = scripted.chat(&request("b")).await.unwrap_err();
    assert!(matches!(error, LlmError::Script(_)), "{error:?}");
    assert_eq!(
        error.to_string(),
        "scripted model: the script has 1 turns; turn 2 was requested"
    );
    assert_eq!(
        scripted.requests().len(),
        2,
        "the failed request is recorded"
    );
}

#[tokio::test]
async fn built_in_code_with_helpers() {
    let scripted = Scripted::new(vec![
        ScriptedTurn::tool_calls([ScriptedCall::new("run", json!({"cmd": "ls"}))]),
        ScriptedTurn::text("bye")
            .with_usage(Usage {
                input_tokens: 7,
                ..Usage::default()
            })
            .with_stop_reason(StopReason::Refusal),
    ]);
    let first = scripted.chat(&request("x")).await.unwrap();
    assert_eq!(first.stop_reason, StopReason::ToolUse);
    assert_eq!(first.message().tool_uses().next().unwrap().0, "call_1");
    let second = scripted.chat(&request("y")).await.unwrap();
    assert_eq!(second.stop_reason, StopReason::Refusal);
    assert_eq!(second.usage.input_tokens, 7);
}

#[tokio::test]
async fn shared_between_tasks() {
    let turns = (0..20)
        .map(|i| ScriptedTurn::text(format!("t{i}")))
        .collect();
    let scripted = Arc::new(Scripted::new(turns));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let scripted = scripted.clone();
            tokio::spawn(async move { scripted.chat(&request("q")).await.unwrap() })
        })
        .collect();
    let mut texts = Vec::new();
    for task in tasks {
        texts.push(task.await.unwrap().message().text());
    }
    texts.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
    expected.sort();
    assert_eq!(texts, expected, "every turn exactly once");
    assert_eq!(scripted.requests().len(), 20);
}

#[tokio::test]
async fn loads_files_as_json_and_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let array = dir.path().join("script.json");
    std::fs::write(&array, SCRIPT).unwrap();
    assert_eq!(Scripted::from_file(&array).unwrap().len(), 3);

    let lines = dir.path().join("script.jsonl");
    std::fs::write(
        &lines,
        "# a demo script\n\
         {\"tool_calls\": [{\"name\": \"read_file\", \"input\": {\"path\": \"a\"}}]}\n\
         \n\
         {\"text\": \"done\", \"usage\": {\"output_tokens\": 3}}\n",
    )
    .unwrap();
    let scripted = Scripted::from_file(&lines).unwrap();
    assert_eq!(scripted.len(), 2);
    let first = scripted.chat(&request("a")).await.unwrap();
    assert_eq!(first.message().tool_uses().count(), 1);
    let second = scripted.chat(&request("b")).await.unwrap();
    assert_eq!(second.usage.output_tokens, 3);
}

#[test]
fn malformed_scripts_are_rejected_with_where() {
    let missing = Scripted::from_file("/nonexistent/script.json").unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/script.json"),
        "{missing}"
    );

    let typo = Scripted::from_json(r#"[{"txt": "hi"}]"#).unwrap_err();
    assert!(typo.to_string().contains("txt"), "{typo}");

    let empty_turn =
        Scripted::from_json(r#"[{"text": "a"}, {"usage": {"input_tokens": 1}}]"#).unwrap_err();
    assert!(
        empty_turn
            .to_string()
            .contains("turn 2 has neither \"text\" nor \"tool_calls\""),
        "{empty_turn}"
    );

    let bad_line = Scripted::from_json("{\"text\": \"a\"}\n{\"text\": \n").unwrap_err();
    assert!(bad_line.to_string().contains("line 2"), "{bad_line}");
}
