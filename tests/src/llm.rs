//! [`LlmFixture`]: an offline OpenAI-compatible chat-completions server
//! (`POST /v1/chat/completions` on `127.0.0.1:<free port>`) for the
//! assistant's tests. It answers from a script of [`Turn`]s, one per
//! request (the last one repeats when the script is used up), and records
//! every request body it was sent, so a test can check what the model was
//! shown: the tools, the tool results, the tool errors.
//!
//! A turn sees the request it answers, so a scripted model can build its
//! next tool call from the previous tool result, as a real one would:
//!
//! ```ignore
//! let llm = LlmFixture::start(vec![
//!     calls(&[("weather_forecast", json!({"city": "Berlin", "days": 2}))]),
//!     with(|req| {
//!         let forecast = last_tool_result(req).unwrap();
//!         Reply::Calls(vec![("plan_tasks".into(), json!({"tasks": [...], "weather": {"forecast": forecast}}))])
//!     }),
//!     answer("Planned."),
//! ]).await;
//! ```
//!
//! Every reply reports usage `{prompt_tokens: 100, completion_tokens: 10}`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Tokens every reply reports.
pub const PROMPT_TOKENS: u64 = 100;
pub const COMPLETION_TOKENS: u64 = 10;

/// What the scripted model says.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Tool calls: `(function name, arguments)`; the arguments go out as a
    /// JSON text, as the API sends them.
    Calls(Vec<(String, Value)>),
    /// Raw argument texts, for malformed calls: `(function name, text)`.
    RawCalls(Vec<(String, String)>),
    /// The final answer.
    Answer(String),
    /// An HTTP error with an OpenAI-style error body.
    Status(u16, String),
}

/// One scripted step: the reply to the request it is given.
pub type Turn = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

/// A turn that calls `tools` regardless of the request.
pub fn calls(tools: &[(&str, Value)]) -> Turn {
    let list: Vec<(String, Value)> = tools
        .iter()
        .map(|(n, a)| ((*n).to_owned(), a.clone()))
        .collect();
    Arc::new(move |_| Reply::Calls(list.clone()))
}

/// A turn that answers `text`.
pub fn answer(text: &str) -> Turn {
    let text = text.to_owned();
    Arc::new(move |_| Reply::Answer(text.clone()))
}

/// A turn computed from the request.
pub fn with(f: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> Turn {
    Arc::new(f)
}

/// The last `tool` message of a request, its content parsed as JSON.
pub fn last_tool_result(request: &Value) -> Option<Value> {
    let content = request["messages"]
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["role"] == "tool")?["content"]
        .as_str()?
        .to_owned();
    serde_json::from_str(&content).ok()
}

/// The names of the tools a request offered.
pub fn tool_names(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Clone)]
struct Shared {
    script: Arc<Vec<Turn>>,
    requests: Arc<Mutex<Vec<Value>>>,
}

/// The fixture server; it stops when dropped.
pub struct LlmFixture {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Value>>>,
    shutdown: CancellationToken,
}

impl LlmFixture {
    /// Serves `script` (at least one turn) on a free loopback port.
    pub async fn start(script: Vec<Turn>) -> Self {
        assert!(!script.is_empty(), "an LLM script needs at least one turn");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the LLM fixture");
        let addr = listener.local_addr().expect("fixture address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(Shared {
                script: Arc::new(script),
                requests: requests.clone(),
            });
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        // Owned by the fixture: cancelled on drop; a serve error only ends it.
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        Self {
            addr,
            requests,
            shutdown,
        }
    }

    /// `http://127.0.0.1:<port>/v1`: the assistant's `AGENTRY_LLM_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request body received so far, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().expect("request log").clone()
    }
}

impl Drop for LlmFixture {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn complete(State(s): State<Shared>, Json(request): Json<Value>) -> Response {
    let n = {
        let mut log = s.requests.lock().expect("request log");
        log.push(request.clone());
        log.len()
    };
    let turn = &s.script[(n - 1).min(s.script.len() - 1)];
    let message = match turn(&request) {
        Reply::Status(code, text) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = json!({"error": {"message": text, "type": "fixture_error"}});
            return (status, Json(body)).into_response();
        }
        Reply::Answer(text) => json!({"role": "assistant", "content": text}),
        Reply::Calls(list) => tool_calls(
            n,
            list.into_iter()
                .map(|(name, args)| (name, args.to_string()))
                .collect(),
        ),
        Reply::RawCalls(list) => tool_calls(n, list),
    };
    let finish = if message["tool_calls"].is_array() {
        "tool_calls"
    } else {
        "stop"
    };
    Json(json!({
        "id": format!("chatcmpl-fixture-{n}"),
        "object": "chat.completion",
        "created": 0,
        "model": request["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS
        }
    }))
    .into_response()
}

fn tool_calls(n: usize, list: Vec<(String, String)>) -> Value {
    let calls: Vec<Value> = list
        .into_iter()
        .enumerate()
        .map(|(i, (name, args))| {
            json!({"id": format!("call_{n}_{i}"), "type": "function",
                   "function": {"name": name, "arguments": args}})
        })
        .collect();
    json!({"role": "assistant", "content": null, "tool_calls": calls})
}
