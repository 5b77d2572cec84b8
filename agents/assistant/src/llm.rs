//! The OpenAI-compatible chat-completions client: the wire types of
//! `POST <base>/chat/completions` (messages, function tools, tool calls,
//! token usage) and one call with a deadline.
//!
//! Only the part of the API every compatible server (OpenAI, vLLM, Ollama,
//! llama.cpp, LiteLLM, ...) speaks is used: `model`, `messages` with the
//! roles `system`, `user`, `assistant` and `tool`, `tools` of type
//! `function`, and the answer's first choice and `usage`.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Longest piece of an error body kept in an error.
const MAX_DETAIL_CHARS: usize = 300;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One message of the conversation, as sent and as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    /// Text; `null` on an assistant message that only calls tools.
    #[serde(default)]
    pub content: Option<String>,
    /// The tools an assistant message calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn system(text: impl Into<String>) -> Self {
        Self::text(Role::System, text)
    }

    pub fn user(text: impl Into<String>) -> Self {
        Self::text(Role::User, text)
    }

    /// The answer to tool call `id`.
    pub fn tool(id: &str, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(id.to_owned()),
            ..Self::text(Role::Tool, content)
        }
    }

    fn text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: Some(text.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A function call the model asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".into()
}

/// The function's name and its arguments as a JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// A JSON text per the API; some servers send an object, which is
    /// accepted and kept as its text.
    #[serde(deserialize_with = "json_text")]
    pub arguments: String,
}

fn json_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => "{}".to_owned(),
        other => other.to_string(),
    })
}

/// A tool offered to the model: `{"type": "function", "function": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionSpec {
    pub name: String,
    pub description: String,
    /// The JSON Schema of the arguments.
    pub parameters: Value,
}

/// The request body.
#[derive(Debug, Serialize)]
pub struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: &'a [Message],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub tools: &'a [ToolSpec],
}

/// Token counts of one call (all zero when the server reports none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, rhs: Self) {
        self.prompt_tokens += rhs.prompt_tokens;
        self.completion_tokens += rhs.completion_tokens;
        self.total_tokens += rhs.total_tokens;
    }
}

#[derive(Debug, Deserialize)]
struct ChatResponse {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: Message,
}

/// What one call returned: the first choice's message and the usage.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub message: Message,
    pub usage: Usage,
}

/// Why a call to the endpoint gave no usable reply.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// No complete answer within the configured timeout.
    #[error("the LLM endpoint did not answer within {after:?}")]
    Timeout { after: Duration },
    /// Connecting, sending or reading failed.
    #[error("cannot reach the LLM endpoint")]
    Unreachable(#[source] reqwest::Error),
    /// The endpoint answered with an error status.
    #[error("the LLM endpoint returned HTTP {status}: {detail}")]
    Status { status: u16, detail: String },
    /// The body is not a chat completion with at least one choice.
    #[error("malformed chat completion from the LLM endpoint: {detail}")]
    Malformed { detail: String },
}

impl LlmError {
    /// True when the same call may succeed later (5xx, 408, 429, timeouts,
    /// connection failures); any other 4xx or a malformed body will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Unreachable(_) => true,
            Self::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            Self::Malformed { .. } => false,
        }
    }

    /// Snake-case token for the task error's `code` and the metrics' `outcome`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "llm_timeout",
            Self::Unreachable(_) => "llm_unreachable",
            Self::Status { .. } => "llm_status",
            Self::Malformed { .. } => "llm_malformed",
        }
    }
}

/// The endpoint and how to reach it. Cheap to share.
pub struct Client {
    http: reqwest::Client,
    url: Url,
    api_key: Option<String>,
    timeout: Duration,
}

/// Why a client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("AGENTRY_LLM_BASE_URL {url:?} is not an http(s) URL")]
    BaseUrl { url: String },
    #[error("the LLM timeout must be positive")]
    Timeout,
    #[error("cannot build the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// `<base>/chat/completions`; the base usually ends in `/v1`.
pub fn completions_url(base: &str) -> Result<Url, ClientError> {
    let bad = || ClientError::BaseUrl {
        url: base.to_owned(),
    };
    let url = Url::parse(&format!("{}/chat/completions", base.trim_end_matches('/')))
        .map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad());
    }
    Ok(url)
}

impl Client {
    pub fn new(
        base: &str,
        api_key: Option<String>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        if timeout.is_zero() {
            return Err(ClientError::Timeout);
        }
        let url = completions_url(base)?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("agentry-assistant/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError::Http)?;
        Ok(Self {
            http,
            url,
            api_key: api_key.filter(|k| !k.is_empty()),
            timeout,
        })
    }

    /// The endpoint's address (no secrets in it).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// One chat completion.
    pub async fn complete(&self, request: &ChatRequest<'_>) -> Result<Reply, LlmError> {
        let mut call = self.http.post(self.url.clone()).json(request);
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key);
        }
        let response = call.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.transport(e))?;
        if !status.is_success() {
            return Err(LlmError::Status {
                status: status.as_u16(),
                detail: error_detail(status, &body),
            });
        }
        parse_reply(&body)
    }

    fn transport(&self, e: reqwest::Error) -> LlmError {
        if e.is_timeout() {
            LlmError::Timeout {
                after: self.timeout,
            }
        } else {
            LlmError::Unreachable(e)
        }
    }
}

/// The first choice and the usage of a chat-completion body.
pub fn parse_reply(body: &[u8]) -> Result<Reply, LlmError> {
    let parsed: ChatResponse = serde_json::from_slice(body).map_err(|e| LlmError::Malformed {
        detail: e.to_string(),
    })?;
    let choice = parsed
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| LlmError::Malformed {
            detail: "no choices".into(),
        })?;
    Ok(Reply {
        message: choice.message,
        usage: parsed.usage.unwrap_or_default(),
    })
}

/// `error.message` of an OpenAI-style error body, else the start of the body.
fn error_detail(status: StatusCode, body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let text = if text.is_empty() {
        status.canonical_reason().unwrap_or("no detail").to_owned()
    } else {
        text
    };
    text.chars().take(MAX_DETAIL_CHARS).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_request_has_the_openai_shape() {
        let messages = [
            Message::system("be brief"),
            Message::user("weather in Berlin?"),
            Message {
                role: Role::Assistant,
                content: None,
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    kind: "function".into(),
                    function: FunctionCall {
                        name: "weather_forecast".into(),
                        arguments: r#"{"city":"Berlin"}"#.into(),
                    },
                }],
                tool_call_id: None,
            },
            Message::tool("call_1", r#"{"daily":{}}"#),
        ];
        let tools = [ToolSpec {
            kind: "function",
            function: FunctionSpec {
                name: "weather_forecast".into(),
                description: "Forecast".into(),
                parameters: json!({"type": "object"}),
            },
        }];
        let body = serde_json::to_value(ChatRequest {
            model: "m",
            messages: &messages,
            tools: &tools,
        })
        .unwrap();
        assert_eq!(
            body,
            json!({
                "model": "m",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "weather in Berlin?"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function",
                         "function": {"name": "weather_forecast", "arguments": "{\"city\":\"Berlin\"}"}}
                    ]},
                    {"role": "tool", "content": "{\"daily\":{}}", "tool_call_id": "call_1"}
                ],
                "tools": [{"type": "function", "function": {
                    "name": "weather_forecast", "description": "Forecast",
                    "parameters": {"type": "object"}}}]
            })
        );
        let bare = serde_json::to_value(ChatRequest {
            model: "m",
            messages: &messages[..1],
            tools: &[],
        })
        .unwrap();
        assert!(bare.get("tools").is_none(), "no empty tools list: {bare}");
    }

    #[test]
    fn replies_with_tool_calls_or_text_parse() {
        let body = json!({
            "id": "c1", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [{"id": "a", "type": "function",
                    "function": {"name": "plan_tasks", "arguments": "{\"tasks\":[]}"}},
                    {"id": "b", "function": {"name": "echo", "arguments": {"message": 1}}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        });
        let reply = parse_reply(body.to_string().as_bytes()).unwrap();
        let calls = &reply.message.tool_calls;
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].function.name, "plan_tasks");
        assert_eq!(calls[0].function.arguments, r#"{"tasks":[]}"#);
        assert_eq!(calls[1].kind, "function");
        assert_eq!(calls[1].function.arguments, r#"{"message":1}"#);
        assert_eq!(
            reply.usage,
            Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
                total_tokens: 15
            }
        );

        let body = json!({"choices": [{"message": {"role": "assistant", "content": "Done."}}]});
        let reply = parse_reply(body.to_string().as_bytes()).unwrap();
        assert_eq!(reply.message.content.as_deref(), Some("Done."));
        assert!(reply.message.tool_calls.is_empty());
        assert_eq!(reply.usage, Usage::default());
    }

    #[test]
    fn bodies_without_a_choice_are_malformed() {
        for body in [
            &b"<html>"[..],
            br#"{"choices": []}"#,
            br#"{"choices": [{}]}"#,
        ] {
            let e = parse_reply(body).unwrap_err();
            assert!(matches!(e, LlmError::Malformed { .. }), "{e:?}");
            assert!(!e.is_retryable());
            assert_eq!(e.code(), "llm_malformed");
        }
    }

    #[test]
    fn statuses_classify_and_name_the_servers_message() {
        let retryable = |status| LlmError::Status {
            status,
            detail: String::new(),
        };
        for s in [500, 502, 503, 408, 429] {
            assert!(retryable(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 422] {
            assert!(!retryable(s).is_retryable(), "{s}");
        }
        let d = error_detail(
            StatusCode::UNAUTHORIZED,
            br#"{"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}"#,
        );
        assert_eq!(d, "Incorrect API key");
        assert_eq!(
            error_detail(StatusCode::BAD_GATEWAY, b""),
            "Bad Gateway",
            "an empty body names the status"
        );
        assert_eq!(
            error_detail(StatusCode::BAD_GATEWAY, &[b'x'; 1000]).len(),
            MAX_DETAIL_CHARS
        );
    }

    #[test]
    fn base_urls_become_the_completions_endpoint() {
        assert_eq!(
            completions_url("http://127.0.0.1:8080/v1/")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8080/v1/chat/completions"
        );
        assert_eq!(
            completions_url("https://api.openai.com/v1")
                .unwrap()
                .as_str(),
            "https://api.openai.com/v1/chat/completions"
        );
        for bad in ["", "localhost:11434", "ftp://h/v1", "not a url"] {
            assert!(
                matches!(completions_url(bad), Err(ClientError::BaseUrl { .. })),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_a_retryable_error() {
        // Port 9 (discard) on loopback: nothing listens in the test environment.
        let client = Client::new("http://127.0.0.1:9/v1", None, Duration::from_secs(2)).unwrap();
        let e = client
            .complete(&ChatRequest {
                model: "m",
                messages: &[Message::user("hi")],
                tools: &[],
            })
            .await
            .unwrap_err();
        assert!(e.is_retryable(), "{e:?}");
        assert!(
            matches!(e, LlmError::Unreachable(_) | LlmError::Timeout { .. }),
            "{e:?}"
        );
    }
}
