//! The `echo` agent on the runtime: its one capability and the drills.
//!
//! The input decides what a task does, read by plain functions the unit
//! tests below exercise: [`failure`] (the failure modes), [`Call::read`]
//! (the agent-to-agent drill) and [`Echo::count`] (the side-effect counter).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentry::agent::{Agent, Context, Descriptor, Task, TaskError};
use agentry::error::chain;
use agentry::id::{AgentId, Capability};
use serde_json::Value;

/// Echo agent. `healed` turns every failure mode off (DLQ replay drills);
/// `executions` counts completed executions per `counter_key`.
#[derive(Default, Clone)]
pub struct Echo {
    pub healed: Arc<AtomicBool>,
    pub executions: Arc<Mutex<HashMap<String, u64>>>,
}

/// How long an agent-to-agent call waits without `timeout_ms`.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(5_000);

/// The failure `input` asks for on delivery `attempt` (`fail`: `retryable`,
/// `permanent`, or `until_attempt` with `fail_until_attempt`, default 1);
/// `None` when the task should succeed. Unknown modes succeed.
fn failure(input: &Value, attempt: u32) -> Option<TaskError> {
    match input.get("fail").and_then(Value::as_str).unwrap_or("none") {
        "retryable" => Some(TaskError::retryable("echo asked to fail (retryable)")),
        "permanent" => Some(TaskError::permanent("echo asked to fail (permanent)")),
        "until_attempt" => {
            let until = input
                .get("fail_until_attempt")
                .and_then(Value::as_u64)
                .unwrap_or(1);
            (u64::from(attempt) < until)
                .then(|| TaskError::retryable(format!("echo failing attempt {attempt} of {until}")))
        }
        _ => None,
    }
}

/// An agent-to-agent call the input asks for (`call`).
#[derive(Debug, PartialEq)]
enum Call {
    /// `{"ask": "<agent-id>", "capability"?: "<cap>"}`: ask that agent's
    /// capability (`echo` unless named) directly.
    Ask {
        agent: AgentId,
        capability: String,
        input: Value,
        timeout: Duration,
    },
    /// `{"delegate": "<capability>"}`: a child request through the engine.
    Delegate {
        capability: String,
        input: Value,
        timeout: Duration,
    },
}

impl Call {
    /// Reads `call`: `ask` wins over `delegate`; `input` defaults to null
    /// and `timeout_ms` to 5 s.
    fn read(call: &Value) -> Result<Self, TaskError> {
        let timeout = call
            .get("timeout_ms")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_CALL_TIMEOUT, Duration::from_millis);
        let input = call.get("input").cloned().unwrap_or(Value::Null);
        if let Some(target) = call.get("ask").and_then(Value::as_str) {
            let agent =
                AgentId::new(target).map_err(|e| TaskError::invalid_input(e.to_string()))?;
            let capability = call
                .get("capability")
                .and_then(Value::as_str)
                .unwrap_or("echo")
                .to_owned();
            return Ok(Self::Ask {
                agent,
                capability,
                input,
                timeout,
            });
        }
        if let Some(capability) = call.get("delegate").and_then(Value::as_str) {
            return Ok(Self::Delegate {
                capability: capability.to_owned(),
                input,
                timeout,
            });
        }
        Err(TaskError::invalid_input("call needs `ask` or `delegate`"))
    }

    async fn make(self, ctx: &Context) -> Result<Value, TaskError> {
        match self {
            Self::Ask {
                agent,
                capability,
                input,
                timeout,
            } => ctx
                .ask(&agent, Some(&capability), input, timeout)
                .await
                .map_err(|e| TaskError::permanent(format!("ask failed: {}", chain(&e)))),
            Self::Delegate {
                capability,
                input,
                timeout,
            } => ctx
                .delegate(&capability, input, timeout)
                .await
                .map_err(|e| TaskError::permanent(format!("delegate failed: {}", chain(&e)))),
        }
    }
}

impl Echo {
    pub fn executions_of(&self, key: &str) -> u64 {
        self.executions
            .lock()
            .map(|m| m.get(key).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Counts one execution under the input's `counter_key`, if it has one.
    fn count(&self, input: &Value) {
        if let Some(key) = input.get("counter_key").and_then(Value::as_str)
            && let Ok(mut m) = self.executions.lock()
        {
            *m.entry(key.to_owned()).or_default() += 1;
        }
    }
}

#[async_trait::async_trait]
impl Agent for Echo {
    fn descriptor(&self) -> Descriptor {
        Descriptor {
            kind: "echo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Returns its input; optional sleep and failure modes for tests and benchmarks"
                    .into(),
            capabilities: Capability::new("echo").into_iter().collect(),
        }
    }

    async fn handle(&self, task: Task, ctx: Context) -> Result<Value, TaskError> {
        let input = &task.input;
        if let Some(ms) = input.get("sleep_ms").and_then(Value::as_u64) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let healed = self.healed.load(Ordering::Relaxed)
            || std::env::var_os("AGENTRY_ECHO_HEALED").is_some();
        if !healed && let Some(e) = failure(input, task.attempt) {
            return Err(e);
        }
        if let Some(call) = input.get("call") {
            let called = Call::read(call)?.make(&ctx).await?;
            return Ok(
                serde_json::json!({"echo": input, "agent_id": ctx.agent_id().as_str(), "attempt": task.attempt, "called": called}),
            );
        }
        self.count(input);
        Ok(
            serde_json::json!({"echo": input, "agent_id": ctx.agent_id().as_str(), "attempt": task.attempt}),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Each failure mode gives its kind of error; no or an unknown mode succeeds.
    #[test]
    fn failure_modes() {
        let retryable = failure(&json!({"fail": "retryable"}), 1).unwrap();
        assert!(retryable.is_retryable());
        let permanent = failure(&json!({"fail": "permanent"}), 1).unwrap();
        assert_eq!(permanent.code(), "permanent");
        assert!(failure(&json!({"x": 1}), 1).is_none());
        assert!(failure(&json!({"fail": "sometimes"}), 1).is_none());
        assert!(failure(&json!({"fail": 7}), 1).is_none());
    }

    /// `until_attempt` fails (retryably) every attempt before the named one.
    #[test]
    fn fails_until_the_named_attempt() {
        let input = json!({"fail": "until_attempt", "fail_until_attempt": 3});
        for attempt in [1, 2] {
            let e = failure(&input, attempt).unwrap();
            assert!(e.is_retryable());
            assert_eq!(
                e.to_string(),
                format!("echo failing attempt {attempt} of 3")
            );
        }
        assert!(failure(&input, 3).is_none());
        assert!(failure(&input, 4).is_none());
        // Without a number: attempt 1 is already the one that succeeds.
        assert!(failure(&json!({"fail": "until_attempt"}), 1).is_none());
    }

    /// `ask` names an agent id, `delegate` a capability; defaults fill in.
    #[test]
    fn reads_calls() {
        let ask = Call::read(&json!({"ask": "echo-1", "input": {"a": 1}, "timeout_ms": 250}));
        assert_eq!(
            ask.unwrap(),
            Call::Ask {
                agent: AgentId::new("echo-1").unwrap(),
                capability: "echo".into(),
                input: json!({"a": 1}),
                timeout: Duration::from_millis(250),
            }
        );
        assert_eq!(
            Call::read(&json!({"delegate": "echo"})).unwrap(),
            Call::Delegate {
                capability: "echo".into(),
                input: Value::Null,
                timeout: DEFAULT_CALL_TIMEOUT,
            }
        );
        // Another capability of the asked agent.
        assert!(matches!(
            Call::read(&json!({"ask": "planning-1", "capability": "plan_tasks"})).unwrap(),
            Call::Ask { capability, .. } if capability == "plan_tasks"
        ));
        // Both named: the direct ask is made.
        assert!(matches!(
            Call::read(&json!({"ask": "echo-1", "delegate": "echo"})).unwrap(),
            Call::Ask { .. }
        ));
    }

    /// A call without a target, or with an agent id that is not one, is bad input.
    #[test]
    fn rejects_bad_calls() {
        for call in [
            json!({}),
            json!({"input": 1}),
            json!({"ask": "not an id!"}),
            json!({"ask": 5}),
        ] {
            let e = Call::read(&call).unwrap_err();
            assert_eq!(e.code(), "invalid_input", "{call}");
        }
    }

    /// Executions count per `counter_key`, shared by clones of the agent.
    #[test]
    fn counts_executions_per_key() {
        let echo = Echo::default();
        let clone = echo.clone();
        echo.count(&json!({"counter_key": "k"}));
        clone.count(&json!({"counter_key": "k"}));
        echo.count(&json!({"counter_key": "other"}));
        echo.count(&json!({"no_key": true}));
        assert_eq!(echo.executions_of("k"), 2);
        assert_eq!(echo.executions_of("other"), 1);
        assert_eq!(echo.executions_of("missing"), 0);
    }

    /// One capability, `echo`, under kind `echo`.
    #[test]
    fn describes_itself() {
        let d = Echo::default().descriptor();
        assert_eq!(d.kind, "echo");
        let caps: Vec<&str> = d.capabilities.iter().map(|c| c.as_str()).collect();
        assert_eq!(caps, ["echo"]);
    }
}
