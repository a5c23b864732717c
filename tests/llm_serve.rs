//! The scripted model served over HTTP: each API's answers, streaming and
//! not, in the wire shapes agents expect (event sequences, reassembled tool
//! arguments, usage in each API's terms); side requests that consume no
//! turn; the script running out; keys; `{{cwd}}`; and our own adapters
//! completing a turn against it.

use missions::llm::anthropic::Anthropic;
use missions::llm::openai::OpenAi;
use missions::llm::scripted::{ScriptedCall, ScriptedTurn, read_script};
use missions::llm::serve::{Api, ScriptServer};
use missions::llm::{
    ChatRequest, ContentBlock, LlmError, Message, Provider, StopReason, ToolDef, Usage,
};
use secrecy::SecretString;
use serde_json::{Value, json};

const KEY: &str = "sk-scripted-test-key";

fn client() -> reqwest::Client {
    missions::llm::http::client()
}

/// POSTs `body` as written (so its size is known) and returns the status and text.
async fn post(url: &str, headers: &[(&str, &str)], body: &Value) -> (u16, String, Option<String>) {
    let mut request = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.text().await.unwrap(), content_type)
}

/// SSE events as `(event name, data)`.
fn sse(text: &str) -> Vec<(Option<String>, String)> {
    assert!(text.ends_with("\n\n"), "{text:?}");
    text.split("\n\n")
        .filter(|block| !block.is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    assert!(data.is_none(), "one data line per event: {block:?}");
                    data = Some(d.to_owned());
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            (name, data.expect("every event has data"))
        })
        .collect()
}

/// Named events (`event:` equal to the data's `type`) as JSON.
fn named_events(text: &str) -> Vec<Value> {
    sse(text)
        .into_iter()
        .map(|(name, data)| {
            let data: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(name.as_deref(), data["type"].as_str(), "{data}");
            data
        })
        .collect()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// Collapses runs of the same type: `[a, b, b, c]` → `[a, b*, c]`.
fn shape(events: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in types(events) {
        match out.last_mut() {
            Some(last) if last.trim_end_matches('*') == t => {
                if !last.ends_with('*') {
                    last.push('*');
                }
            }
            _ => out.push(t.to_owned()),
        }
    }
    out
}

fn anthropic_tools() -> Value {
    json!([{"name": "Write", "description": "write a file",
            "input_schema": {"type": "object"}}])
}

fn write_turn() -> ScriptedTurn {
    ScriptedTurn {
        text: Some("I will write the notes, all of them, now.".into()),
        tool_calls: vec![ScriptedCall::new(
            "Write",
            json!({"file_path": "{{cwd}}/notes.txt", "content": "line one\nline \"two\" é", "n": 3}),
        )],
        ..ScriptedTurn::default()
    }
    .with_usage(Usage {
        input_tokens: 100,
        output_tokens: 20,
        cache_read_tokens: 300,
        cache_write_tokens: 50,
    })
}

#[tokio::test]
async fn messages_streams_text_and_a_tool_call_in_anthropics_events() {
    let server = ScriptServer::start(vec![write_turn()])
        .await
        .unwrap()
        .expect_key(KEY);
    // As Claude Code sends it: fields we do not model, a system message in
    // `messages`, the working directory in the system prompt.
    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": true,
        "metadata": {"user_id": "u"},
        "system": [{"type": "text", "text": "You are Claude Code.\n<env>\nPrimary working directory: /tmp/proj\nIs directory a git repo: Yes\n</env>",
                    "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "system", "content": "extra"},
            {"role": "user", "content": [{"type": "text", "text": "write notes"}]}
        ],
        "tools": anthropic_tools(),
    });
    let (status, text, content_type) = post(
        &format!("{}/v1/messages?beta=true", server.url()),
        &[("x-api-key", KEY), ("anthropic-version", "2023-06-01")],
        &body,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(content_type.unwrap().starts_with("text/event-stream"));
    let events = named_events(&text);
    assert_eq!(
        shape(&events),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta*",
            "content_block_stop",
            "content_block_start",
            "content_block_delta*",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );

    let start = &events[0]["message"];
    assert_eq!(start["role"], "assistant");
    assert_eq!(start["type"], "message");
    assert_eq!(start["model"], "claude-sonnet-4-5");
    assert_eq!(start["content"], json!([]));
    assert!(start["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(start["usage"]["input_tokens"], 100);
    assert_eq!(start["usage"]["cache_read_input_tokens"], 300);
    assert_eq!(start["usage"]["cache_creation_input_tokens"], 50);

    // Reassemble the blocks from their deltas.
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial: Vec<String> = Vec::new();
    let mut deltas = 0;
    for event in &events {
        match event["type"].as_str().unwrap() {
            "content_block_start" => {
                assert_eq!(event["index"], blocks.len());
                blocks.push(event["content_block"].clone());
                partial.push(String::new());
            }
            "content_block_delta" => {
                deltas += 1;
                let i = event["index"].as_u64().unwrap() as usize;
                let delta = &event["delta"];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => {
                        let text = blocks[i]["text"].as_str().unwrap().to_owned();
                        blocks[i]["text"] = json!(text + delta["text"].as_str().unwrap());
                    }
                    "input_json_delta" => {
                        partial[i].push_str(delta["partial_json"].as_str().unwrap())
                    }
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                let i = event["index"].as_u64().unwrap() as usize;
                if blocks[i]["type"] == "tool_use" {
                    blocks[i]["input"] = serde_json::from_str(&partial[i]).unwrap();
                }
            }
            _ => {}
        }
    }
    assert!(deltas > 3, "text and arguments come in several deltas");
    assert_eq!(
        blocks,
        [
            json!({"type": "text", "text": "I will write the notes, all of them, now."}),
            json!({"type": "tool_use", "id": "toolu_scripted_1", "name": "Write",
                   "input": {"file_path": "/tmp/proj/notes.txt",
                             "content": "line one\nline \"two\" é", "n": 3}}),
        ]
    );
    let delta = &events[events.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["delta"]["stop_sequence"], Value::Null);
    assert_eq!(delta["usage"]["output_tokens"], 20);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].api, Api::Messages);
    assert_eq!(requests[0].path, "/v1/messages?beta=true");
    assert_eq!(requests[0].key.as_deref(), Some(KEY));
    assert_eq!(requests[0].turn, Some(0));
    assert_eq!(requests[0].body, body);
    assert_eq!(server.remaining(), 0);
}

#[tokio::test]
async fn messages_answers_json_with_estimated_usage_and_side_requests_consume_nothing() {
    let server = ScriptServer::start(vec![ScriptedTurn::text("All done.")])
        .await
        .unwrap();
    let url = format!("{}/v1/messages", server.url());

    // A side request (no tools): "ok", tiny usage, no turn consumed.
    let side = json!({"model": "claude-haiku-4-5", "max_tokens": 1,
                      "messages": [{"role": "user", "content": "quota"}]});
    let (status, text, _) = post(&url, &[], &side).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["content"], json!([{"type": "text", "text": "ok"}]));
    assert_eq!(answer["stop_reason"], "end_turn");
    assert_eq!(answer["usage"]["input_tokens"], 1);
    assert_eq!(server.remaining(), 1);

    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 100,
                      "system": "be brief", "tools": anthropic_tools(),
                      "messages": [{"role": "user", "content": "go"}]});
    let (status, text, content_type) = post(&url, &[], &body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["role"], "assistant");
    assert_eq!(answer["model"], "claude-sonnet-4-5");
    assert_eq!(
        answer["content"],
        json!([{"type": "text", "text": "All done."}])
    );
    assert_eq!(answer["stop_reason"], "end_turn");
    // Estimated as the scripted provider does.
    let content = vec![ContentBlock::Text {
        text: "All done.".into(),
    }];
    let out = (serde_json::to_vec(&content).unwrap().len() as u64).div_ceil(4);
    let input = (body.to_string().len() as u64).div_ceil(4);
    assert_eq!(
        answer["usage"],
        json!({"input_tokens": input, "output_tokens": out,
               "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0})
    );

    let turns: Vec<_> = server.requests().iter().map(|r| r.turn).collect();
    assert_eq!(turns, [None, Some(0)]);
    assert!(server.requests().iter().all(|r| r.key.is_none()));
}

#[tokio::test]
async fn an_exhausted_script_is_a_400_in_each_apis_shape() {
    let server = ScriptServer::start(vec![ScriptedTurn::text("one")])
        .await
        .unwrap();
    let messages = json!({"model": "m", "max_tokens": 10, "tools": anthropic_tools(),
                          "messages": [{"role": "user", "content": "go"}], "stream": true});
    let url = format!("{}/v1/messages", server.url());
    assert_eq!(post(&url, &[], &messages).await.0, 200);
    let (status, text, _) = post(&url, &[], &messages).await;
    assert_eq!(status, 400);
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("no turn 2"), "{message}");
    assert!(message.contains("1 turn"), "{message}");

    let responses = json!({"model": "gpt-5", "input": "go", "stream": true,
                           "tools": [{"type": "function", "name": "shell", "parameters": {}}]});
    let (status, text, _) = post(&format!("{}/v1/responses", server.url()), &[], &responses).await;
    assert_eq!(status, 400);
    let error: Value = serde_json::from_str(&text).unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no turn 2"),
        "{error}"
    );
    assert_eq!(error["error"]["type"], "invalid_request_error");

    let requests = server.requests();
    assert_eq!(requests.len(), 3, "refused requests are recorded too");
    assert_eq!(requests[2].api, Api::Responses);
    assert_eq!(requests[2].turn, None);
}

#[tokio::test]
async fn a_wrong_or_missing_key_is_a_401_in_each_apis_shape() {
    let server = ScriptServer::start(vec![ScriptedTurn::text("hi")])
        .await
        .unwrap()
        .expect_key(KEY);
    let messages = json!({"model": "m", "max_tokens": 10, "tools": anthropic_tools(),
                          "messages": [{"role": "user", "content": "go"}]});
    let url = format!("{}/v1/messages", server.url());
    let (status, text, _) = post(&url, &[("x-api-key", "wrong")], &messages).await;
    assert_eq!(status, 401);
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "authentication_error");

    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "go"}],
                      "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]});
    let chat_url = format!("{}/v1/chat/completions", server.url());
    let (status, text, _) = post(&chat_url, &[], &chat).await;
    assert_eq!(status, 401);
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["error"]["code"], "invalid_api_key");
    let (status, _, _) = post(
        &format!("{}/v1/responses", server.url()),
        &[("authorization", "Bearer nope")],
        &json!({"input": "x"}),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(server.remaining(), 1, "refused requests consume no turn");

    // The right key as a bearer token is answered.
    let bearer = format!("Bearer {KEY}");
    let (status, text, _) = post(&chat_url, &[("authorization", &bearer)], &chat).await;
    assert_eq!(status, 200, "{text}");
    // And as Gemini's header.
    let (status, _, _) = post(
        &url,
        &[("x-goog-api-key", KEY)],
        &json!({"messages": [{"role": "user", "content": "title?"}]}),
    )
    .await;
    assert_eq!(status, 200);

    let keys: Vec<_> = server
        .requests()
        .into_iter()
        .map(|r| (r.key, r.turn))
        .collect();
    assert_eq!(
        keys,
        [
            (Some("wrong".to_owned()), None),
            (None, None),
            (Some("nope".to_owned()), None),
            (Some(KEY.to_owned()), Some(0)),
            (Some(KEY.to_owned()), None),
        ]
    );
}

fn codex_request(stream: bool) -> Value {
    json!({
        "model": "gpt-5-codex",
        "instructions": "You are Codex.",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text",
              "text": "<environment_context>\n  <cwd>/work/repo</cwd>\n  <sandbox_mode>workspace-write</sandbox_mode>\n</environment_context>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix it"}]}
        ],
        "tools": [{"type": "function", "name": "shell", "description": "run",
                   "strict": false, "parameters": {"type": "object"}}],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "store": false,
        "stream": stream,
        "include": [],
    })
}

fn codex_turn() -> ScriptedTurn {
    ScriptedTurn {
        text: Some("Looking around first.".into()),
        tool_calls: vec![
            ScriptedCall::new(
                "shell",
                json!({"command": ["bash", "-lc", "ls {{cwd}}"], "workdir": "{{cwd}}"}),
            ),
            ScriptedCall::new("shell", json!({"command": ["cat", "README.md"]})),
        ],
        ..ScriptedTurn::default()
    }
    .with_usage(Usage {
        input_tokens: 1000,
        output_tokens: 40,
        cache_read_tokens: 3000,
        cache_write_tokens: 0,
    })
}

#[tokio::test]
async fn responses_streams_output_items_and_completes_with_usage() {
    let server = ScriptServer::start(vec![codex_turn()]).await.unwrap();
    let (status, text, content_type) = post(
        &format!("{}/v1/responses", server.url()),
        &[("authorization", &format!("Bearer {KEY}"))],
        &codex_request(true),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(content_type.unwrap().starts_with("text/event-stream"));
    let events = named_events(&text);
    assert_eq!(
        shape(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta*",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta*",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta*",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (n, event) in events.iter().enumerate() {
        assert_eq!(event["sequence_number"], n, "{event}");
    }
    let created = &events[0]["response"];
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["object"], "response");
    assert_eq!(created["output"], json!([]));
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("resp_"));

    // Text from its deltas.
    let text_deltas: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text_deltas, "Looking around first.");

    // Each call's arguments from their deltas, per item.
    let mut calls = Vec::new();
    for added in events.iter().filter(|e| {
        e["type"] == "response.output_item.added" && e["item"]["type"] == "function_call"
    }) {
        let item = &added["item"];
        assert_eq!(item["status"], "in_progress");
        assert_eq!(item["arguments"], "");
        assert!(item["id"].as_str().unwrap().starts_with("fc_"));
        let arguments: String = events
            .iter()
            .filter(|e| {
                e["type"] == "response.function_call_arguments.delta" && e["item_id"] == item["id"]
            })
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        let done = events
            .iter()
            .find(|e| {
                e["type"] == "response.function_call_arguments.done" && e["item_id"] == item["id"]
            })
            .unwrap();
        assert_eq!(done["arguments"].as_str().unwrap(), arguments);
        assert_eq!(done["output_index"], added["output_index"]);
        calls.push((
            item["call_id"].as_str().unwrap().to_owned(),
            item["name"].as_str().unwrap().to_owned(),
            serde_json::from_str::<Value>(&arguments).unwrap(),
        ));
    }
    assert_eq!(
        calls,
        [
            (
                "call_scripted_1".to_owned(),
                "shell".to_owned(),
                json!({"command": ["bash", "-lc", "ls /work/repo"], "workdir": "/work/repo"})
            ),
            (
                "call_scripted_2".to_owned(),
                "shell".to_owned(),
                json!({"command": ["cat", "README.md"]})
            ),
        ]
    );

    let done_items: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "response.output_item.done")
        .map(|e| &e["item"])
        .collect();
    let completed = &events.last().unwrap()["response"];
    assert_eq!(completed["id"], id);
    assert_eq!(completed["status"], "completed");
    let output: Vec<&Value> = completed["output"].as_array().unwrap().iter().collect();
    assert_eq!(output, done_items);
    assert_eq!(output[0]["type"], "message");
    assert_eq!(output[0]["role"], "assistant");
    assert_eq!(output[0]["status"], "completed");
    assert_eq!(output[0]["content"][0]["type"], "output_text");
    assert_eq!(output[0]["content"][0]["text"], "Looking around first.");
    let fc = output[1].as_object().unwrap();
    let mut keys: Vec<&str> = fc.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["arguments", "call_id", "id", "name", "status", "type"]
    );
    assert_eq!(fc["type"], "function_call");
    assert_eq!(fc["status"], "completed");
    assert_eq!(
        serde_json::from_str::<Value>(fc["arguments"].as_str().unwrap()).unwrap(),
        calls[0].2
    );
    assert_eq!(
        completed["usage"],
        json!({"input_tokens": 4000, "input_tokens_details": {"cached_tokens": 3000},
               "output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 0},
               "total_tokens": 4040})
    );
    let requests = server.requests();
    assert_eq!(
        (requests[0].api, requests[0].turn),
        (Api::Responses, Some(0))
    );
    assert_eq!(requests[0].key.as_deref(), Some(KEY));
}

#[tokio::test]
async fn responses_answers_json_and_leaves_cwd_alone_when_unknown() {
    let server = ScriptServer::start(vec![codex_turn()]).await.unwrap();
    let mut request = codex_request(false);
    request["input"].as_array_mut().unwrap().remove(0);
    let (status, text, _) = post(&format!("{}/v1/responses", server.url()), &[], &request).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["object"], "response");
    assert_eq!(answer["status"], "completed");
    let output = answer["output"].as_array().unwrap();
    assert_eq!(output.len(), 3);
    assert_eq!(output[0]["type"], "message");
    assert_eq!(output[1]["type"], "function_call");
    assert_eq!(output[1]["call_id"], "call_scripted_1");
    let arguments: Value = serde_json::from_str(output[1]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments["workdir"], "{{cwd}}");
    assert_eq!(answer["usage"]["input_tokens"], 4000);
    assert_eq!(
        answer["usage"]["input_tokens_details"]["cached_tokens"],
        3000
    );
}

fn chat_request(stream: bool, include_usage: bool) -> Value {
    let mut body = json!({
        "model": "qwen",
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "go"}],
        "tools": [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}],
        "stream": stream,
    });
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn chat_turn() -> ScriptedTurn {
    ScriptedTurn {
        text: Some("Reading two files.".into()),
        tool_calls: vec![
            ScriptedCall::new("read_file", json!({"path": "src/lib.rs"})),
            ScriptedCall::new("read_file", json!({"path": "Cargo.toml", "limit": 20})),
        ],
        ..ScriptedTurn::default()
    }
    .with_usage(Usage {
        input_tokens: 10,
        output_tokens: 7,
        cache_read_tokens: 90,
        cache_write_tokens: 0,
    })
}

#[tokio::test]
async fn chat_completions_streams_chunks_with_and_without_usage() {
    let server = ScriptServer::start(vec![chat_turn(), chat_turn()])
        .await
        .unwrap();
    let url = format!("{}/v1/chat/completions", server.url());
    for include_usage in [true, false] {
        let (status, text, _) = post(&url, &[], &chat_request(true, include_usage)).await;
        assert_eq!(status, 200, "{text}");
        let events = sse(&text);
        assert!(events.iter().all(|(name, _)| name.is_none()));
        assert_eq!(events.last().unwrap().1, "[DONE]");
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|(_, data)| serde_json::from_str(data).unwrap())
            .collect();
        assert!(
            chunks
                .iter()
                .all(|c| c["object"] == "chat.completion.chunk")
        );
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");

        let mut content = String::new();
        let mut calls: Vec<(String, String, String)> = Vec::new();
        let mut finish = None;
        for chunk in &chunks {
            let Some(choice) = chunk["choices"].get(0) else {
                continue;
            };
            if let Some(piece) = choice["delta"]["content"].as_str() {
                content.push_str(piece);
            }
            for call in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let i = call["index"].as_u64().unwrap() as usize;
                if i == calls.len() {
                    assert_eq!(call["type"], "function");
                    calls.push((
                        call["id"].as_str().unwrap().to_owned(),
                        call["function"]["name"].as_str().unwrap().to_owned(),
                        String::new(),
                    ));
                }
                if let Some(piece) = call["function"]["arguments"].as_str() {
                    calls[i].2.push_str(piece);
                }
            }
            if !choice["finish_reason"].is_null() {
                finish = Some(choice["finish_reason"].clone());
            }
        }
        assert_eq!(content, "Reading two files.");
        assert_eq!(finish, Some(json!("tool_calls")));
        let parsed: Vec<(String, String, Value)> = calls
            .into_iter()
            .map(|(id, name, args)| (id, name, serde_json::from_str(&args).unwrap()))
            .collect();
        let first = if include_usage { 1 } else { 3 };
        assert_eq!(
            parsed,
            [
                (
                    format!("call_scripted_{first}"),
                    "read_file".to_owned(),
                    json!({"path": "src/lib.rs"})
                ),
                (
                    format!("call_scripted_{}", first + 1),
                    "read_file".to_owned(),
                    json!({"path": "Cargo.toml", "limit": 20})
                ),
            ]
        );
        let last = chunks.last().unwrap();
        if include_usage {
            assert_eq!(last["choices"], json!([]));
            assert_eq!(
                last["usage"],
                json!({"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107,
                       "prompt_tokens_details": {"cached_tokens": 90},
                       "completion_tokens_details": {"reasoning_tokens": 0}})
            );
        } else {
            assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        }
    }
    assert_eq!(server.remaining(), 0);
}

#[tokio::test]
async fn chat_completions_answers_json() {
    let server = ScriptServer::start(vec![chat_turn(), ScriptedTurn::text("Done.")])
        .await
        .unwrap();
    let url = format!("{}/v1/chat/completions", server.url());
    let (status, text, _) = post(&url, &[], &chat_request(false, false)).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["object"], "chat.completion");
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Reading two files.");
    assert_eq!(
        choice["message"]["tool_calls"][1],
        json!({"id": "call_scripted_2", "type": "function",
               "function": {"name": "read_file", "arguments": "{\"path\":\"Cargo.toml\",\"limit\":20}"}})
    );
    assert_eq!(answer["usage"]["prompt_tokens"], 100);
    assert_eq!(
        answer["usage"]["prompt_tokens_details"]["cached_tokens"],
        90
    );

    let (_, text, _) = post(&url, &[], &chat_request(false, false)).await;
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["choices"][0]["message"]["content"], "Done.");
    assert!(answer["choices"][0]["message"].get("tool_calls").is_none());
}

fn neutral_request() -> ChatRequest {
    ChatRequest {
        model: "claude-sonnet-4-5".into(),
        system: "Primary working directory: /srv/w".into(),
        tools: vec![ToolDef {
            name: "write_file".into(),
            description: "write".into(),
            input_schema: json!({"type": "object"}),
        }],
        messages: vec![Message::user_text("go")],
        max_tokens: 1000,
    }
}

#[tokio::test]
async fn our_adapters_complete_turns_against_the_server() {
    let turns = vec![
        ScriptedTurn {
            text: Some("Writing.".into()),
            tool_calls: vec![ScriptedCall::new(
                "write_file",
                json!({"path": "{{cwd}}/a.txt", "text": "hi"}),
            )],
            ..ScriptedTurn::default()
        }
        .with_usage(Usage {
            input_tokens: 5,
            output_tokens: 6,
            cache_read_tokens: 7,
            cache_write_tokens: 8,
        }),
        ScriptedTurn::text("Done.").with_stop_reason(StopReason::MaxTokens),
    ];
    let server = ScriptServer::start(turns.clone())
        .await
        .unwrap()
        .expect_key(KEY);

    let anthropic = Anthropic::new(SecretString::from(KEY), Some(&server.url()));
    let answer = anthropic.chat(&neutral_request()).await.unwrap();
    assert_eq!(
        answer.content,
        [
            ContentBlock::Text {
                text: "Writing.".into()
            },
            ContentBlock::ToolUse {
                id: "toolu_scripted_1".into(),
                name: "write_file".into(),
                input: json!({"path": "/srv/w/a.txt", "text": "hi"}),
            },
        ]
    );
    assert_eq!(answer.stop_reason, StopReason::ToolUse);
    assert_eq!(answer.model, "claude-sonnet-4-5");
    // Anthropic's terms map back to ours unchanged.
    assert_eq!(answer.usage, turns[0].usage.unwrap());
    let answer = anthropic.chat(&neutral_request()).await.unwrap();
    assert_eq!(answer.stop_reason, StopReason::MaxTokens);
    let LlmError::InvalidRequest {
        status, message, ..
    } = anthropic.chat(&neutral_request()).await.unwrap_err()
    else {
        panic!("an exhausted script is an invalid request");
    };
    assert_eq!(status, 400);
    assert!(message.contains("no turn 3"), "{message}");

    // Chat Completions, through the OpenAI adapter: OpenAI's terms have no
    // cache writes, so they come back as full-price input.
    let server = ScriptServer::start(turns).await.unwrap().expect_key(KEY);
    let openai = OpenAi::new(
        Some(SecretString::from(KEY)),
        format!("{}/v1", server.url()),
    );
    let answer = openai.chat(&neutral_request()).await.unwrap();
    assert_eq!(
        answer.content[1],
        ContentBlock::ToolUse {
            id: "call_scripted_1".into(),
            name: "write_file".into(),
            input: json!({"path": "/srv/w/a.txt", "text": "hi"}),
        }
    );
    assert_eq!(answer.stop_reason, StopReason::ToolUse);
    assert_eq!(
        answer.usage,
        Usage {
            input_tokens: 13,
            output_tokens: 6,
            cache_read_tokens: 7,
            cache_write_tokens: 0,
        }
    );
    assert_eq!(server.requests()[0].api, Api::ChatCompletions);
    assert_eq!(server.requests()[0].key.as_deref(), Some(KEY));

    let wrong = Anthropic::new(SecretString::from("wrong"), Some(&server.url()));
    assert!(matches!(
        wrong.chat(&neutral_request()).await,
        Err(LlmError::Auth { status: 401, .. })
    ));
}

#[tokio::test]
async fn count_tokens_and_unknown_paths() {
    let server = ScriptServer::start(vec![]).await.unwrap();
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}]});
    let (status, text, _) = post(
        &format!("{}/v1/messages/count_tokens?beta=true", server.url()),
        &[],
        &body,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        answer["input_tokens"],
        (body.to_string().len() as u64).div_ceil(4)
    );
    let (status, _, _) = post(&format!("{}/v1/embeddings", server.url()), &[], &body).await;
    assert_eq!(status, 404);
    assert_eq!(server.requests().len(), 1);
    server.shutdown().await;
}

#[test]
fn reads_a_script_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script.jsonl");
    std::fs::write(
        &path,
        "# a comment\n{\"text\": \"hi\"}\n\n{\"tool_calls\": [{\"name\": \"Write\", \"input\": {\"file_path\": \"{{cwd}}/x\"}}]}\n",
    )
    .unwrap();
    let turns = read_script(&path).unwrap();
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[0], ScriptedTurn::text("hi"));
    assert_eq!(turns[1].tool_calls[0].input["file_path"], "{{cwd}}/x");
    std::fs::write(&path, "{\"txet\": \"hi\"}\n").unwrap();
    let e = read_script(&path).unwrap_err().to_string();
    assert!(e.contains("script.jsonl") && e.contains("line 1"), "{e}");
}
