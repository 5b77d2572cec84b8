//! One goal's conversation, without I/O: the messages sent so far, the tool
//! calls made (the output's `steps`), the tokens used and the step budget.
//!
//! The driver ([`crate::agent`]) alternates two calls: [`Conversation::on_reply`]
//! with each model reply, which gives either the answer or the tool calls to
//! run, and [`Conversation::record`] with each call's outcome, which adds
//! the `tool` message the model sees next. A step is one tool call; a reply
//! asking for more calls than the budget has left ends the goal with
//! [`Budget`], so a model that never answers makes at most `max_steps`
//! calls and `max_steps + 1` requests.

use serde::Serialize;
use serde_json::{Value, json};

use crate::llm::{LlmError, Message, Reply, Role, Usage};

/// The longest tool result (bytes of JSON text) handed back to the model;
/// the step in the output keeps all of it.
pub const MAX_TOOL_CONTENT: usize = 64 * 1024;

/// What the model is told about its job.
pub const SYSTEM_PROMPT: &str = "You are the assistant of agentry, a system of agents. \
Reach the user's goal by calling the tools: each one runs as a request on a live agent \
and returns JSON. A tool that fails returns {\"error\": {\"code\", \"message\"}}: fix the \
arguments or take another way. When you have what the goal needs, answer in plain text \
without calling a tool.";

/// One tool call as the output reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub tool: String,
    /// The arguments as the model gave them (`null` when they were not JSON).
    pub input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// Time the call took, in milliseconds.
    pub ms: u64,
}

/// Why a tool call failed, as the model and the output see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepError {
    pub code: String,
    pub message: String,
}

impl StepError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// A tool call to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The model's id for the call (the `tool_call_id` of the answer).
    pub id: String,
    pub tool: String,
    /// The arguments, or why they cannot be used (fed back, not run).
    pub input: Result<Value, StepError>,
}

/// What to do after a reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Answer(String),
    Run(Vec<Call>),
}

/// The model asked for more tool calls than the budget allows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "step budget exhausted: the model asked for {asked} more tool call(s) after {done} of at most {max_steps}, without answering"
)]
pub struct Budget {
    pub max_steps: u32,
    pub done: usize,
    pub asked: usize,
}

/// Why a reply ends the goal.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error(transparent)]
    Budget(#[from] Budget),
    #[error(transparent)]
    Empty(LlmError),
}

/// The output of a goal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Output {
    pub answer: String,
    pub model: String,
    pub steps: Vec<Step>,
    pub usage: Usage,
}

pub struct Conversation {
    messages: Vec<Message>,
    steps: Vec<Step>,
    usage: Usage,
    max_steps: u32,
}

impl Conversation {
    pub fn new(goal: &str, max_steps: u32) -> Self {
        Self {
            messages: vec![Message::system(SYSTEM_PROMPT), Message::user(goal)],
            steps: Vec::new(),
            usage: Usage::default(),
            max_steps,
        }
    }

    /// The messages to send next.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Takes a model reply: its tokens count, and it is either the answer
    /// (text without tool calls) or tool calls within the budget.
    pub fn on_reply(&mut self, reply: Reply) -> Result<Next, ReplyError> {
        self.usage += reply.usage;
        let mut message = reply.message;
        if message.tool_calls.is_empty() {
            return match message.content {
                Some(text) if !text.trim().is_empty() => Ok(Next::Answer(text)),
                _ => Err(ReplyError::Empty(LlmError::Malformed {
                    detail: "the reply has neither text nor tool calls".into(),
                })),
            };
        }
        let asked = message.tool_calls.len();
        if self.steps.len() + asked > self.max_steps as usize {
            return Err(Budget {
                max_steps: self.max_steps,
                done: self.steps.len(),
                asked,
            }
            .into());
        }
        message.role = Role::Assistant;
        let calls = message
            .tool_calls
            .iter()
            .map(|c| Call {
                id: c.id.clone(),
                tool: c.function.name.clone(),
                input: arguments(&c.function.arguments),
            })
            .collect();
        self.messages.push(message);
        Ok(Next::Run(calls))
    }

    /// Records the outcome of `call`: a step in the output and the `tool`
    /// message (the result's JSON, or `{"error": ...}`) for the model.
    pub fn record(&mut self, call: &Call, outcome: Result<Value, StepError>, ms: u64) {
        let content = match &outcome {
            Ok(v) => v.to_string(),
            Err(e) => json!({"error": e}).to_string(),
        };
        self.messages
            .push(Message::tool(&call.id, clip(content, MAX_TOOL_CONTENT)));
        let (output, error) = match outcome {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        self.steps.push(Step {
            tool: call.tool.clone(),
            input: call.input.clone().unwrap_or(Value::Null),
            output,
            error,
            ms,
        });
    }

    pub fn finish(self, answer: String, model: String) -> Output {
        Output {
            answer,
            model,
            steps: self.steps,
            usage: self.usage,
        }
    }
}

/// The arguments of a call: a JSON object (an empty text counts as `{}`).
fn arguments(text: &str) -> Result<Value, StepError> {
    if text.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => Err(StepError::new(
            "invalid_arguments",
            format!(
                "the arguments must be a JSON object, got {}",
                agentry_agent_kit::kind_of(&other)
            ),
        )),
        Err(e) => Err(StepError::new(
            "invalid_arguments",
            format!("the arguments are not JSON: {e}"),
        )),
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), with a note
/// saying how much was left out.
fn clip(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}... [truncated: {} of {} bytes shown]",
        &text[..end],
        end,
        text.len()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::llm::{FunctionCall, ToolCall};

    fn calls(list: &[(&str, &str, &str)]) -> Reply {
        Reply {
            message: Message {
                role: Role::Assistant,
                content: None,
                tool_calls: list
                    .iter()
                    .map(|(id, name, args)| ToolCall {
                        id: (*id).into(),
                        kind: "function".into(),
                        function: FunctionCall {
                            name: (*name).into(),
                            arguments: (*args).into(),
                        },
                    })
                    .collect(),
                tool_call_id: None,
            },
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 2,
                total_tokens: 12,
            },
        }
    }

    fn text(t: &str) -> Reply {
        Reply {
            message: Message {
                role: Role::Assistant,
                content: Some(t.into()),
                tool_calls: Vec::new(),
                tool_call_id: None,
            },
            usage: Usage {
                prompt_tokens: 20,
                completion_tokens: 5,
                total_tokens: 25,
            },
        }
    }

    #[test]
    fn tool_calls_then_an_answer() {
        let mut c = Conversation::new("weather then plan", 4);
        assert_eq!(c.messages().len(), 2);
        let Next::Run(run) = c
            .on_reply(calls(&[("a", "weather_forecast", r#"{"city":"Berlin"}"#)]))
            .unwrap()
        else {
            panic!("expected calls")
        };
        assert_eq!(run[0].input, Ok(json!({"city": "Berlin"})));
        c.record(&run[0], Ok(json!({"daily": {}})), 12);
        let sent = serde_json::to_value(c.messages()).unwrap();
        assert_eq!(sent[2]["role"], "assistant");
        assert_eq!(sent[2]["tool_calls"][0]["id"], "a");
        assert_eq!(
            sent[3],
            json!({"role": "tool", "tool_call_id": "a", "content": "{\"daily\":{}}"})
        );
        let next = c.on_reply(text("Plan ready.")).unwrap();
        assert_eq!(next, Next::Answer("Plan ready.".into()));
        let out = c.finish("Plan ready.".into(), "m".into());
        assert_eq!(out.usage.total_tokens, 37);
        assert_eq!(out.usage.prompt_tokens, 30);
        let v = serde_json::to_value(&out).unwrap();
        assert_eq!(
            v["steps"],
            json!([{"tool": "weather_forecast", "input": {"city": "Berlin"},
                    "output": {"daily": {}}, "ms": 12}])
        );
    }

    #[test]
    fn a_tool_error_is_fed_back_as_a_tool_message() {
        let mut c = Conversation::new("g", 4);
        let Next::Run(run) = c
            .on_reply(calls(&[("x", "plan_tasks", r#"{"tasks": []}"#)]))
            .unwrap()
        else {
            panic!()
        };
        c.record(
            &run[0],
            Err(StepError::new("invalid_input", "tasks: too short")),
            3,
        );
        let last = c.messages().last().unwrap();
        assert_eq!(last.role, Role::Tool);
        let content: Value = serde_json::from_str(last.content.as_deref().unwrap()).unwrap();
        assert_eq!(
            content,
            json!({"error": {"code": "invalid_input", "message": "tasks: too short"}})
        );
        let step = serde_json::to_value(&c.steps()[0]).unwrap();
        assert!(step.get("output").is_none());
        assert_eq!(step["error"]["code"], "invalid_input");
    }

    #[test]
    fn bad_arguments_are_not_run() {
        let mut c = Conversation::new("g", 4);
        let Next::Run(run) = c
            .on_reply(calls(&[
                ("1", "echo", "not json"),
                ("2", "echo", "[1]"),
                ("3", "echo", ""),
            ]))
            .unwrap()
        else {
            panic!()
        };
        assert!(matches!(&run[0].input, Err(e) if e.code == "invalid_arguments"));
        assert!(matches!(&run[1].input, Err(e) if e.message.contains("an array")));
        assert_eq!(run[2].input, Ok(json!({})));
    }

    #[test]
    fn the_budget_stops_a_model_that_never_answers() {
        let mut c = Conversation::new("loop", 2);
        for i in 0..2 {
            let Next::Run(run) = c.on_reply(calls(&[("i", "echo", "{}")])).unwrap() else {
                panic!()
            };
            c.record(&run[0], Ok(json!({"n": i})), 1);
        }
        let e = c.on_reply(calls(&[("i", "echo", "{}")])).unwrap_err();
        assert!(
            matches!(
                e,
                ReplyError::Budget(Budget {
                    max_steps: 2,
                    done: 2,
                    asked: 1
                })
            ),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("step budget exhausted"), "{e}");
        // Two calls asked at once with one left: none runs.
        let mut c = Conversation::new("g", 1);
        assert!(matches!(
            c.on_reply(calls(&[("a", "echo", "{}"), ("b", "echo", "{}")])),
            Err(ReplyError::Budget(_))
        ));
        assert!(c.steps().is_empty());
    }

    #[test]
    fn an_empty_reply_is_malformed() {
        let mut c = Conversation::new("g", 2);
        let e = c.on_reply(text("  ")).unwrap_err();
        assert!(
            matches!(e, ReplyError::Empty(LlmError::Malformed { .. })),
            "{e:?}"
        );
    }

    #[test]
    fn long_results_are_clipped_on_a_char_boundary() {
        let long = "é".repeat(100);
        let clipped = clip(long.clone(), 51);
        assert!(clipped.starts_with(&"é".repeat(25)));
        assert!(
            clipped.ends_with("[truncated: 50 of 200 bytes shown]"),
            "{clipped}"
        );
        assert_eq!(clip("short".into(), 51), "short");
    }
}
