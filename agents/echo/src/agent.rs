//! The `echo` agent on the runtime: its one capability and the drills.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentry::agent::{Agent, Context, Descriptor, Task, TaskError};
use agentry::id::{AgentId, Capability};
use serde_json::Value;

/// Echo agent. `healed` turns every failure mode off (DLQ replay drills);
/// `executions` counts completed executions per `counter_key`.
#[derive(Default, Clone)]
pub struct Echo {
    pub healed: Arc<AtomicBool>,
    pub executions: Arc<Mutex<HashMap<String, u64>>>,
}

impl Echo {
    /// A2A drill: `{"ask": "<agent-id>", "input": ..}` or `{"delegate": "<capability>", "input": ..}`.
    async fn call(&self, call: &Value, ctx: &Context) -> Result<Value, TaskError> {
        let timeout = Duration::from_millis(
            call.get("timeout_ms")
                .and_then(Value::as_u64)
                .unwrap_or(5_000),
        );
        let input = call.get("input").cloned().unwrap_or(Value::Null);
        if let Some(target) = call.get("ask").and_then(Value::as_str) {
            let id = AgentId::new(target).map_err(|e| TaskError::invalid_input(e.to_string()))?;
            return ctx
                .ask(&id, Some("echo"), input, timeout)
                .await
                .map_err(|e| TaskError::permanent(format!("ask failed: {e}")));
        }
        if let Some(cap) = call.get("delegate").and_then(Value::as_str) {
            return ctx
                .delegate(cap, input, timeout)
                .await
                .map_err(|e| TaskError::permanent(format!("delegate failed: {e}")));
        }
        Err(TaskError::invalid_input("call needs `ask` or `delegate`"))
    }

    pub fn executions_of(&self, key: &str) -> u64 {
        self.executions
            .lock()
            .map(|m| m.get(key).copied().unwrap_or(0))
            .unwrap_or(0)
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
        if !healed {
            match input.get("fail").and_then(Value::as_str).unwrap_or("none") {
                "retryable" => return Err(TaskError::retryable("echo asked to fail (retryable)")),
                "permanent" => return Err(TaskError::permanent("echo asked to fail (permanent)")),
                "until_attempt" => {
                    let until = input
                        .get("fail_until_attempt")
                        .and_then(Value::as_u64)
                        .unwrap_or(1);
                    if u64::from(task.attempt) < until {
                        return Err(TaskError::retryable(format!(
                            "echo failing attempt {} of {until}",
                            task.attempt
                        )));
                    }
                }
                _ => {}
            }
        }
        if let Some(call) = input.get("call") {
            let called = self.call(call, &ctx).await?;
            return Ok(
                serde_json::json!({"echo": input, "agent_id": ctx.agent_id().as_str(), "attempt": task.attempt, "called": called}),
            );
        }
        if let Some(key) = input.get("counter_key").and_then(Value::as_str)
            && let Ok(mut m) = self.executions.lock()
        {
            *m.entry(key.to_owned()).or_default() += 1;
        }
        Ok(
            serde_json::json!({"echo": input, "agent_id": ctx.agent_id().as_str(), "attempt": task.attempt}),
        )
    }
}
