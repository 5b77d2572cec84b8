//! The `assistant` agent on the runtime: reads the live tools from the
//! registry, then alternates model calls and delegations
//! ([`crate::conversation`] keeps the state) until the model answers or the
//! budget is spent.
//!
//! Errors: a tool that fails (its agent refused the input, no live agent,
//! a timeout) is not the goal's failure; the model sees it and may recover.
//! The goal fails when the model cannot be asked ([`LlmError`]: retryable
//! for timeouts, unreachable endpoints, 5xx and 429; permanent otherwise),
//! when the budget is spent (permanent), on bad input (permanent), or when
//! delegation itself is broken (the registry or NATS: retryable).

use std::time::{Duration, Instant};

use agentry::agent::{A2aError, Agent, Context, Descriptor, Task, TaskError};
use agentry::client::SubmitError;
use agentry::id::Capability;
use agentry_agent_kit::{LogicError, input, invalid};
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;
use tracing::{info, warn};

use crate::conversation::{Budget, Call, Conversation, Next, ReplyError, StepError};
use crate::llm::{self, ChatRequest, ClientError, LlmError};
use crate::metrics::Metrics;
use crate::{CAPABILITY, Config, DEFAULT_MAX_STEPS, MAX_STEPS, tools};

/// The longest goal, in characters.
const MAX_GOAL_CHARS: usize = 20_000;

/// The task input (`schemas/capabilities/assistant.input.json`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub goal: String,
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    #[serde(default)]
    pub max_steps: Option<u32>,
    #[serde(default)]
    pub model: Option<String>,
}

impl Input {
    /// Decodes and checks the rules the types do not carry.
    pub fn parse(value: &Value) -> Result<Self, LogicError> {
        let i: Input = input::decode(value)?;
        if i.goal.trim().is_empty() {
            return Err(invalid("goal: must not be empty"));
        }
        if i.goal.chars().count() > MAX_GOAL_CHARS {
            return Err(LogicError::TooLarge(format!(
                "goal: more than {MAX_GOAL_CHARS} characters"
            )));
        }
        if let Some(n) = i.max_steps
            && !(1..=MAX_STEPS).contains(&n)
        {
            return Err(invalid(format!(
                "max_steps: must be between 1 and {MAX_STEPS}, got {n}"
            )));
        }
        if i.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
            return Err(invalid("model: must not be empty"));
        }
        Ok(i)
    }
}

/// Why a goal failed.
#[derive(Debug, thiserror::Error)]
pub enum AssistantError {
    #[error(transparent)]
    Input(#[from] LogicError),
    #[error("no model: the task names none and AGENTRY_LLM_MODEL is not set")]
    NoModel,
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error(transparent)]
    Budget(#[from] Budget),
    #[error("cannot read the live capabilities")]
    Registry(#[source] agentry::registry::RegistryError),
    #[error("cannot delegate {tool}")]
    Delegation {
        tool: String,
        #[source]
        source: A2aError,
    },
}

impl From<ReplyError> for AssistantError {
    fn from(e: ReplyError) -> Self {
        match e {
            ReplyError::Budget(b) => Self::Budget(b),
            ReplyError::Empty(e) => Self::Llm(e),
        }
    }
}

impl AssistantError {
    /// `answered` is never an error; this is the goal metric's outcome.
    fn outcome(&self) -> &'static str {
        match self {
            Self::Budget(_) => "step_budget",
            _ => "failed",
        }
    }
}

impl From<AssistantError> for TaskError {
    fn from(e: AssistantError) -> Self {
        let message = agentry::error::chain(&e);
        match e {
            AssistantError::Input(e) => e.into(),
            AssistantError::NoModel => TaskError::invalid_input(message),
            AssistantError::Llm(e) if e.is_retryable() => TaskError::Retryable(message),
            AssistantError::Llm(e) => TaskError::Permanent {
                code: e.code(),
                message,
            },
            AssistantError::Budget(_) => TaskError::Permanent {
                code: "step_budget_exhausted",
                message,
            },
            AssistantError::Registry(_) | AssistantError::Delegation { .. } => {
                TaskError::Retryable(message)
            }
        }
    }
}

/// The assistant agent.
pub struct Assistant {
    cfg: Config,
    llm: llm::Client,
    metrics: Metrics,
}

impl Assistant {
    pub fn new(cfg: Config) -> Result<Self, ClientError> {
        let llm = llm::Client::new(
            &cfg.base_url,
            cfg.api_key.as_ref().map(|k| k.0.clone()),
            cfg.llm_timeout,
        )?;
        Ok(Self {
            cfg,
            llm,
            metrics: Metrics::new(),
        })
    }

    /// The chat-completions URL the agent calls.
    pub fn endpoint(&self) -> &str {
        self.llm.url().as_str()
    }

    async fn pursue(
        &self,
        input: Input,
        task: &Task,
        ctx: &Context,
    ) -> Result<Value, AssistantError> {
        let model = input
            .model
            .or_else(|| self.cfg.model.clone())
            .ok_or(AssistantError::NoModel)?;
        let registry = ctx.registry().await.map_err(AssistantError::Registry)?;
        let records = registry.list().await.map_err(AssistantError::Registry)?;
        let live = tools::live_capabilities(&records);
        let specs = tools::select(&live, input.tools.as_deref())?;
        let offered: Vec<&str> = specs.iter().map(|t| t.function.name.as_str()).collect();
        let mut talk = Conversation::new(&input.goal, input.max_steps.unwrap_or(DEFAULT_MAX_STEPS));
        loop {
            let started = Instant::now();
            let reply = self
                .llm
                .complete(&ChatRequest {
                    model: &model,
                    messages: talk.messages(),
                    tools: &specs,
                })
                .await;
            let seconds = started.elapsed().as_secs_f64();
            self.metrics
                .llm_call(reply.as_ref().map(|r| r.usage), seconds);
            let calls = match talk.on_reply(reply?)? {
                Next::Answer(answer) => {
                    let out = talk.finish(answer, model);
                    info!(
                        steps = out.steps.len(),
                        tokens = out.usage.total_tokens,
                        "goal answered"
                    );
                    return serde_json::to_value(out).map_err(|e| {
                        LlmError::Malformed {
                            detail: e.to_string(),
                        }
                        .into()
                    });
                }
                Next::Run(calls) => calls,
            };
            for call in calls {
                let started = Instant::now();
                let outcome = if !offered.contains(&call.tool.as_str()) {
                    Err(StepError::new(
                        "unknown_tool",
                        format!(
                            "there is no tool `{}`; the tools are: {}",
                            call.tool,
                            offered.join(", ")
                        ),
                    ))
                } else {
                    match &call.input {
                        Err(e) => Err(e.clone()),
                        Ok(args) => self.delegate(&call, args.clone(), task, ctx).await?,
                    }
                };
                let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                self.metrics.tool_call(outcome.is_ok());
                match &outcome {
                    Ok(_) => info!(tool = %call.tool, ms, "tool call answered"),
                    Err(e) => {
                        info!(tool = %call.tool, ms, code = %e.code, "tool call failed; the model is told")
                    }
                }
                talk.record(&call, outcome, ms);
            }
        }
    }

    /// Runs one tool call as a delegated request. `Ok(Err(..))` is a tool
    /// failure for the model; `Err(..)` means delegation itself is broken.
    async fn delegate(
        &self,
        call: &Call,
        args: Value,
        task: &Task,
        ctx: &Context,
    ) -> Result<Result<Value, StepError>, AssistantError> {
        let timeout = match task.deadline {
            Some(d) => (d - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(self.cfg.tool_timeout),
            None => self.cfg.tool_timeout,
        };
        if timeout.is_zero() {
            return Ok(Err(StepError::new(
                "timeout",
                "the task's deadline has passed; no time is left for tools",
            )));
        }
        match ctx.delegate(&call.tool, args, timeout).await {
            Ok(output) => Ok(Ok(output)),
            Err(e) => tool_failure(&call.tool, e).map(Err),
        }
    }
}

/// A delegation error as the model sees it, or, when delegation itself is
/// broken (NATS, permissions), the goal's error.
fn tool_failure(tool: &str, e: A2aError) -> Result<StepError, AssistantError> {
    let message = agentry::error::chain(&e);
    match e {
        A2aError::Remote { code, message, .. } => Ok(StepError::new(code, message)),
        A2aError::NoAgent(_) => Ok(StepError::new("no_agent", message)),
        A2aError::Timeout { .. } | A2aError::Submit(SubmitError::Timeout { .. }) => {
            Ok(StepError::new("timeout", message))
        }
        source => Err(AssistantError::Delegation {
            tool: tool.to_owned(),
            source,
        }),
    }
}

#[async_trait::async_trait]
impl Agent for Assistant {
    fn descriptor(&self) -> Descriptor {
        Descriptor {
            kind: "assistant".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "A goal in plain language, planned by an LLM; each tool call runs on the live agents".into(),
            capabilities: Capability::new(CAPABILITY).into_iter().collect(),
        }
    }

    async fn handle(&self, task: Task, ctx: Context) -> Result<Value, TaskError> {
        if task.capability.as_str() != CAPABILITY {
            return Err(TaskError::permanent(format!(
                "the assistant does not serve {}",
                task.capability
            )));
        }
        let input = Input::parse(&task.input)?;
        match self.pursue(input, &task, &ctx).await {
            Ok(out) => {
                self.metrics.goal("answered");
                Ok(out)
            }
            Err(e) => {
                self.metrics.goal(e.outcome());
                warn!(error = %agentry::error::chain(&e), "goal not reached");
                Err(e.into())
            }
        }
    }

    fn register_metrics(&self, registry: &prometheus::Registry) {
        self.metrics.register(registry);
    }

    fn default_timeout(&self) -> Duration {
        Duration::from_secs(600)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn inputs_are_checked() {
        let i = Input::parse(&json!({"goal": "plan", "tools": ["plan_tasks"], "max_steps": 3}))
            .unwrap();
        assert_eq!(i.max_steps, Some(3));
        for (bad, says) in [
            (json!({}), "missing field `goal`"),
            (json!({"goal": " "}), "goal: must not be empty"),
            (
                json!({"goal": "g", "max_steps": 0}),
                "max_steps: must be between 1 and 32",
            ),
            (json!({"goal": "g", "max_steps": 99}), "got 99"),
            (
                json!({"goal": "g", "model": ""}),
                "model: must not be empty",
            ),
            (json!({"goal": "g", "tool": []}), "unknown field `tool`"),
            (json!({"goal": "g", "tools": "echo"}), "tools: invalid type"),
        ] {
            let e = Input::parse(&bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let long = "x".repeat(MAX_GOAL_CHARS + 1);
        assert!(matches!(
            Input::parse(&json!({ "goal": long })),
            Err(LogicError::TooLarge(_))
        ));
    }

    #[test]
    fn tool_failures_go_to_the_model_broken_delegation_retries() {
        let e = tool_failure(
            "plan_tasks",
            A2aError::Remote {
                target: "plan_tasks".into(),
                code: "invalid_input".into(),
                message: "tasks: too short".into(),
            },
        )
        .unwrap();
        assert_eq!(e, StepError::new("invalid_input", "tasks: too short"));
        let e = tool_failure("x", A2aError::NoAgent("x".into())).unwrap();
        assert_eq!(e.code, "no_agent");
        let broken = tool_failure("x", A2aError::NoResponders("agentry.a2a.x".into())).unwrap_err();
        assert!(TaskError::from(broken).is_retryable());
    }

    #[test]
    fn goal_errors_map_to_task_errors() {
        let budget = AssistantError::Budget(Budget {
            max_steps: 2,
            done: 2,
            asked: 1,
        });
        assert_eq!(budget.outcome(), "step_budget");
        match TaskError::from(budget) {
            TaskError::Permanent { code, message } => {
                assert_eq!(code, "step_budget_exhausted");
                assert!(message.contains("at most 2"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let busy = AssistantError::Llm(LlmError::Status {
            status: 503,
            detail: "overloaded".into(),
        });
        let e = TaskError::from(busy);
        assert!(e.is_retryable());
        assert!(e.to_string().contains("overloaded"), "{e}");
        let denied = AssistantError::Llm(LlmError::Status {
            status: 401,
            detail: "bad key".into(),
        });
        assert_eq!(TaskError::from(denied).code(), "llm_status");
        assert_eq!(
            TaskError::from(AssistantError::NoModel).code(),
            "invalid_input"
        );
    }
}
