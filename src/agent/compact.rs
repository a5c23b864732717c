//! Context compaction: when a conversation nears the model's window, older
//! tool outputs are cut down and, if that is not enough, older turns are
//! replaced by a summary, so a long job keeps going instead of ending in the
//! provider's "context too long" error.
//!
//! The stable prefix (the system prompt, the tools and the first user message,
//! which holds the mission state) is never touched, so the provider's prompt
//! cache still serves it after a compaction. The summary is made by the
//! harness, not by a model call: it is free, deterministic, and a small model
//! cannot get it wrong — one line per earlier call with its outcome (ok or
//! error, and the size: never the text of a file or command, which is
//! untrusted and would otherwise stand in the model's own voice), and the
//! start of what the model wrote.
//!
//! Sizes are estimated at [`CHARS_PER_TOKEN`] characters a token (on the low
//! side for English and code, so the estimate errs towards compacting early;
//! usage a provider reports is not used, as scripted and proxied providers
//! report what they like). When a provider still answers that a request is
//! too long, the loop compacts once more, to half of the refused request.

use crate::llm::{ChatRequest, ContentBlock, Message, Role, ToolDef};

/// Characters per token assumed by the estimate.
pub const CHARS_PER_TOKEN: usize = 3;
/// Compact when the estimated prompt passes this share (per mille) of what
/// the window leaves after the answer's room.
const TRIGGER_PERMILLE: u64 = 850;
/// Compact down to this share, so that the next turns do not compact again.
const TARGET_PERMILLE: u64 = 550;
/// The most recent messages always kept in full (at least the last exchange).
const KEEP_RECENT: usize = 4;
/// What an older tool output is cut down to (characters, head and tail).
const CUT_HEAD: usize = 300;
const CUT_TAIL: usize = 200;
/// Starts the summary message, so that a later compaction can carry it on.
pub const SUMMARY_HEADER: &str = "Summary of my earlier turns (the harness compacted them to fit the model's context window; the files in the checkout are as I left them):";
/// The user message after the summary (roles must alternate).
pub const SUMMARY_FOLLOW_UP: &str = "Continue from there. The most recent turns follow in full; read files again if you need their content.";
/// Marks a tool output that was cut down.
const CUT_MARK: &str = "[… cut by the harness to fit the context window:";

/// The size of what every request of a run repeats: system prompt and tools.
pub fn fixed_chars(system: &str, tools: &[ToolDef]) -> usize {
    system.len()
        + tools
            .iter()
            .map(|t| t.name.len() + t.description.len() + t.input_schema.to_string().len())
            .sum::<usize>()
}

/// A whole request's size in tokens, as the loop estimates it.
pub fn request_tokens(request: &ChatRequest) -> u64 {
    estimate(
        fixed_chars(&request.system, &request.tools),
        &request.messages,
    )
}

/// How many tokens a request holds, estimated from its size: `fixed_chars`
/// of system prompt and tools, and the messages.
pub fn estimate(fixed_chars: usize, messages: &[Message]) -> u64 {
    ((fixed_chars + messages_chars(messages)) / CHARS_PER_TOKEN) as u64
}

fn messages_chars(messages: &[Message]) -> usize {
    messages.iter().map(message_chars).sum()
}

fn message_chars(message: &Message) -> usize {
    message
        .content
        .iter()
        .map(|b| match b {
            ContentBlock::Text { text } => text.len(),
            ContentBlock::ToolUse { name, input, .. } => name.len() + input.to_string().len() + 20,
            ContentBlock::ToolResult { content, .. } => content.len() + 20,
        })
        .sum::<usize>()
        + 10
}

/// The prompt tokens a request may hold: the window less the room for the
/// answer (at most a quarter of the window).
pub fn prompt_budget(context_window: u32, max_tokens: u32) -> u64 {
    let window = u64::from(context_window);
    window - u64::from(max_tokens).min(window / 4)
}

/// Whether a request of `estimate` tokens should be compacted first.
pub fn should_compact(estimate: u64, budget: u64) -> bool {
    estimate * 1000 > budget * TRIGGER_PERMILLE
}

/// The size compaction aims for; `urgent` (the provider already refused a
/// request as too long) aims at half of that.
pub fn target(budget: u64, urgent: bool) -> u64 {
    let t = budget * TARGET_PERMILLE / 1000;
    if urgent { t / 2 } else { t }
}

/// Compacts `messages` (the first is the stable initial message) until the
/// request estimated by `estimate` fits `target`, or nothing more can be cut.
/// Returns whether anything changed.
pub fn compact(
    messages: &mut Vec<Message>,
    target: u64,
    estimate: impl Fn(&[Message]) -> u64,
) -> bool {
    if messages.len() < 3 {
        return false;
    }
    let before = messages.clone();
    // The kept tail starts at an assistant message, so that every tool result
    // in it follows its call.
    let mut tail = messages.len().saturating_sub(KEEP_RECENT).max(1);
    while tail < messages.len() && messages[tail].role != Role::Assistant {
        tail += 1;
    }

    // 1. Cut older tool outputs down, oldest first.
    for i in 1..tail {
        if estimate(messages) <= target {
            break;
        }
        cut_results(&mut messages[i]);
    }
    // 2. Replace the older turns by a summary.
    if estimate(messages) > target && tail > 1 {
        let summary = summarise(&messages[1..tail], target);
        let mut compacted = vec![messages[0].clone()];
        compacted.push(Message::assistant_text(summary));
        compacted.push(Message::user_text(SUMMARY_FOLLOW_UP));
        compacted.extend(messages.drain(tail..));
        *messages = compacted;
    }
    // 3. Still too big: the recent outputs are cut as well.
    let first_recent = if messages.len() > 3 && is_summary(&messages[1]) {
        3
    } else {
        1
    };
    for i in first_recent..messages.len() {
        if estimate(messages) <= target {
            break;
        }
        cut_results(&mut messages[i]);
    }
    *messages != before
}

fn is_summary(message: &Message) -> bool {
    message.role == Role::Assistant && message.text().starts_with(SUMMARY_HEADER)
}

/// Cuts every long tool output of `message` to its head and tail.
fn cut_results(message: &mut Message) {
    for block in &mut message.content {
        if let ContentBlock::ToolResult { content, .. } = block
            && content.len() > CUT_HEAD + CUT_TAIL + 100
            && !content.contains(CUT_MARK)
        {
            let head = prefix_at_char(content, CUT_HEAD);
            let tail = suffix_at_char(content, CUT_TAIL);
            let cut = content.len() - head.len() - tail.len();
            *content = format!("{head}\n{CUT_MARK} {cut} bytes …]\n{tail}");
        }
    }
}

/// One line per earlier call (and the start of each text), newest kept when
/// the summary itself would be too long.
fn summarise(messages: &[Message], target: u64) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut results = std::collections::HashMap::new();
    for m in messages {
        for b in &m.content {
            if let ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } = b
            {
                results.insert(tool_use_id.clone(), (content.clone(), *is_error));
            }
        }
    }
    for m in messages {
        if is_summary(m) {
            // An earlier summary: its lines carry on.
            lines.extend(
                m.text()
                    .lines()
                    .skip(1)
                    .filter(|l| l.starts_with("- "))
                    .map(str::to_owned),
            );
            continue;
        }
        if m.role != Role::Assistant {
            continue;
        }
        for b in &m.content {
            match b {
                ContentBlock::Text { text } if !text.trim().is_empty() => {
                    lines.push(format!("- I wrote: {}", clip(text, 160)));
                }
                ContentBlock::ToolUse { id, name, input } => {
                    // Only the outcome and the size: the summary speaks in
                    // the model's own voice, where text from files and
                    // commands (untrusted) must not be quoted.
                    let outcome = match results.get(id) {
                        Some((content, true)) => format!("error ({} bytes)", content.len()),
                        Some((content, false)) => format!("ok ({} bytes)", content.len()),
                        None => "no result".to_owned(),
                    };
                    lines.push(format!(
                        "- {name} {} → {outcome}",
                        clip(&input.to_string(), 160)
                    ));
                }
                _ => {}
            }
        }
    }
    // The summary takes at most a quarter of the target.
    let max_chars = (target as usize * CHARS_PER_TOKEN / 4).max(400);
    let mut kept: Vec<String> = Vec::new();
    let mut size = 0;
    let mut omitted = 0;
    for line in lines.into_iter().rev() {
        if size + line.len() + 1 > max_chars {
            omitted += 1;
            continue;
        }
        size += line.len() + 1;
        kept.push(line);
    }
    kept.reverse();
    let mut out = String::from(SUMMARY_HEADER);
    if omitted > 0 {
        out.push_str(&format!("\n- ({omitted} earlier entries omitted)"));
    }
    for line in kept {
        out.push('\n');
        out.push_str(&line);
    }
    out
}

/// `text` on one line, at most `max` characters.
pub(super) fn clip(text: &str, max: usize) -> String {
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= max {
        one
    } else {
        format!("{}…", one.chars().take(max).collect::<String>())
    }
}

fn prefix_at_char(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn suffix_at_char(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn exchange(i: usize, output: &str) -> [Message; 2] {
        [
            Message {
                role: Role::Assistant,
                content: vec![ContentBlock::ToolUse {
                    id: format!("c{i}"),
                    name: "read_file".into(),
                    input: json!({"path": format!("f{i}.txt")}),
                }],
            },
            Message {
                role: Role::User,
                content: vec![ContentBlock::ToolResult {
                    tool_use_id: format!("c{i}"),
                    content: output.into(),
                    is_error: false,
                }],
            },
        ]
    }

    fn size(m: &[Message]) -> u64 {
        (messages_chars(m) / CHARS_PER_TOKEN) as u64
    }

    #[test]
    fn older_outputs_are_cut_first_and_the_first_message_stays() {
        let mut messages = vec![Message::user_text("mission state")];
        for i in 0..6 {
            messages.extend(exchange(i, &"x".repeat(3_000)));
        }
        let first = messages[0].clone();
        let target = size(&messages) / 2;
        assert!(compact(&mut messages, target, size));
        assert_eq!(messages[0], first);
        assert!(size(&messages) <= target, "{}", size(&messages));
        // Cutting was enough: every call is still there, the last in full.
        assert_eq!(messages.len(), 13);
        assert!(messages[2].content.iter().any(
            |b| matches!(b, ContentBlock::ToolResult { content, .. } if content.contains(CUT_MARK))
        ));
        assert_eq!(messages[12], exchange(5, &"x".repeat(3_000))[1]);
    }

    #[test]
    fn turns_are_summarised_when_cutting_is_not_enough_and_summaries_carry_on() {
        let mut messages = vec![Message::user_text("mission state")];
        for i in 0..40 {
            messages.extend(exchange(i, "short output"));
        }
        let target = size(&messages) / 4;
        assert!(compact(&mut messages, target, size));
        assert!(size(&messages) <= target);
        assert!(is_summary(&messages[1]), "{:?}", messages[1]);
        assert_eq!(messages[2], Message::user_text(SUMMARY_FOLLOW_UP));
        assert_eq!(messages[3].role, Role::Assistant);
        let summary = messages[1].text();
        assert!(summary.contains("read_file {\"path\":\"f37.txt\"} → ok (12 bytes)"));

        // A second compaction keeps the newest lines of the first summary.
        for i in 40..80 {
            messages.extend(exchange(i, "short output"));
        }
        assert!(compact(&mut messages, target, size));
        assert!(size(&messages) <= target);
        let summary = messages[1].text();
        assert!(summary.contains("f77.txt"), "{summary}");
        assert!(summary.contains("earlier entries omitted"), "{summary}");
        assert_eq!(summary.matches(SUMMARY_HEADER).count(), 1);
    }

    #[test]
    fn budgets_leave_room_for_the_answer() {
        assert_eq!(prompt_budget(16_384, 2_048), 14_336);
        assert_eq!(prompt_budget(16_384, 8_192), 12_288);
        assert!(!should_compact(10_000, 14_336));
        assert!(should_compact(13_000, 14_336));
        assert_eq!(target(10_000, false), 5_500);
        assert_eq!(target(10_000, true), 2_750);
    }
}
