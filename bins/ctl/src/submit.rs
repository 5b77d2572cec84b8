//! `agentry submit`: publish a task or workflow request and print its result.

use std::process::ExitCode;
use std::time::Duration;

use agentry::client::{self, SubmitError};
use agentry::event::Mode;
use agentry::id::RequestId;
use serde_json::Value;
use tracing::info;

use crate::Cli;
use crate::exit::{self, UsageError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Capability to run (e.g. `echo`), unless --workflow is given.
    pub capability: Option<String>,
    /// Run this workflow instead of a single task.
    #[arg(long, conflicts_with = "capability")]
    pub workflow: Option<String>,
    /// Workflow version (default: latest).
    #[arg(long = "workflow-version", requires = "workflow")]
    pub workflow_version: Option<u32>,
    /// Input as JSON: inline, `@file`, or `-` for stdin.
    #[arg(long, short, default_value = "{}")]
    pub input: String,
    /// Request id (default: a fresh UUIDv7). Resubmitting an id does not run it twice.
    #[arg(long)]
    pub id: Option<String>,
    /// CloudEvent source identifying the caller.
    #[arg(long, default_value = "/cli")]
    pub source: String,
    /// How long to wait for the result (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = agentry::config::parse_duration)]
    pub timeout: Duration,
    /// Task deadline passed to the engine (ms); default none.
    #[arg(long)]
    pub task_timeout_ms: Option<u64>,
    /// Send in structured mode (body is the JSON event) instead of binary mode.
    #[arg(long)]
    pub structured: bool,
    /// Read a complete task request data object (`{"capability": .., "input": ..}`,
    /// the format of `schemas/examples/tasks/*.json`) from this file.
    #[arg(long, conflicts_with_all = ["capability", "workflow"])]
    pub file: Option<std::path::PathBuf>,
    /// Submit as this client tenant: publish to `agentry.requests.<tenant>` and
    /// read the result from `agentry.results.<tenant>.<id>` (the subjects the
    /// NATS user `client_<tenant>` may use).
    #[arg(long, env = "AGENTRY_TENANT")]
    pub tenant: Option<agentry::subject::Tenant>,
    /// Only fetch the stored result of an earlier request id.
    #[arg(long, value_name = "ID", conflicts_with_all = ["capability", "workflow"])]
    pub result: Option<String>,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    if let Some(id) = &args.result {
        let id = RequestId::new(id.as_str())?;
        let js = async_nats::jetstream::new(crate::connect(cli).await?);
        return match client::fetch_result_as(&js, args.tenant.as_ref(), &id).await {
            Some(o) => Ok(print(cli, &o)),
            None => {
                eprintln!("no result stored for {id}");
                Ok(ExitCode::from(exit::TIMED_OUT))
            }
        };
    }
    let mut input: Value = if args.file.is_some() {
        Value::Null
    } else {
        crate::input::read_json(&args.input, "--input")?
    };
    let mut capability = args.capability.clone();
    let mut timeout_ms = args.task_timeout_ms;
    if let Some(path) = &args.file {
        let doc = crate::input::read_json(&format!("@{}", path.display()), "--file")?;
        capability = doc["capability"].as_str().map(str::to_owned);
        input = doc.get("input").cloned().unwrap_or(Value::Null);
        timeout_ms = timeout_ms.or(doc["timeout_ms"].as_u64());
        if capability.is_none() {
            return Err(UsageError::Invalid(format!(
                "{} has no \"capability\" (--file takes {{\"capability\", \"input\"}}; use --input @file for an input alone)",
                path.display()
            ))
            .into());
        }
    }
    let id = match &args.id {
        Some(id) => RequestId::new(id.as_str())?,
        None => RequestId::generate(),
    };
    let event = match (&args.workflow, &capability) {
        (Some(w), _) => {
            client::workflow_request(&id, &args.source, w, args.workflow_version, input)
        }
        (None, Some(c)) => client::task_request(&id, &args.source, c, input, timeout_ms),
        (None, None) => {
            return Err(UsageError::Invalid(
                "name a capability (e.g. `agentry submit echo`) or --workflow".into(),
            )
            .into());
        }
    };
    // Everything on the command line is checked before connecting.
    let nats = crate::connect(cli).await?;
    let js = async_nats::jetstream::new(nats.clone());
    let mode = if args.structured {
        Mode::Structured
    } else {
        Mode::Binary
    };
    info!(
        request_id = %id,
        results = %agentry::subject::results_for(args.tenant.as_ref(), &id),
        timeout = ?args.timeout,
        "submitting, waiting for the result"
    );
    let progress = crate::output::Progress::waiting(&format!("waiting for {id}"));
    let outcome =
        client::submit_as(&nats, &js, args.tenant.as_ref(), &event, mode, args.timeout).await;
    drop(progress);
    match outcome {
        Ok(o) => Ok(print(cli, &o)),
        Err(SubmitError::Timeout { id, timeout }) => {
            eprintln!(
                "no result for {id} within {timeout:?}: the request was accepted by JetStream and stays queued \
                 until an engine and an agent for it run (fetch it later with `agentry submit --result {id}`)"
            );
            Ok(ExitCode::from(exit::TIMED_OUT))
        }
        Err(e) => Err(e.into()),
    }
}

fn print(cli: &Cli, o: &client::Outcome) -> ExitCode {
    let doc = serde_json::json!({"request_id": o.request_id, "type": o.ty, "data": o.data});
    if cli.json {
        println!("{doc}");
    } else {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    exit::for_outcome(o)
}
