//! `agentry workflow put|list|get|run|runs|show|signal|cancel`: workflow
//! definitions in KV `agentry-workflows`, runs in KV `agentry-runs`, and
//! the requests that start, signal and cancel runs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agentry::client::{self, SubmitError};
use agentry::event::{self, Mode, types};
use agentry::id::{RequestId, RunId};
use agentry::subject::{self, Tenant};
use agentry::workflow::store::{self, PutOutcome, StoreError};
use anyhow::Context as _;
use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::Cli;

mod examples;
mod runs;
mod wait;

pub use examples::{EXAMPLES, load_examples, print_examples};
use runs::{load_run, runs, show};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate a definition (YAML or JSON) and store it as <name>.<version>.
    Put {
        /// The definition file.
        file: PathBuf,
    },
    /// List stored definitions (every version).
    List,
    /// Print a definition (the latest version unless --version).
    #[command(disable_version_flag = true)]
    Get {
        name: String,
        /// Definition version.
        #[arg(long)]
        version: Option<u32>,
    },
    /// Start a run; prints its id (or, with --wait, its result).
    #[command(disable_version_flag = true)]
    Run {
        name: String,
        /// Run input as JSON: inline, `@file`, or `-` for stdin.
        #[arg(long, short, default_value = "{}")]
        input: String,
        /// Definition version (default: the latest).
        #[arg(long)]
        version: Option<u32>,
        /// Wait for the run's result and print it.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits (e.g. 30s, 5m).
        #[arg(long, default_value = "60s", value_parser = agentry::config::parse_duration)]
        timeout: Duration,
        /// Run id (= request id; default: a fresh UUIDv7). Resubmitting an id does not start a second run.
        #[arg(long)]
        id: Option<String>,
        /// CloudEvent source identifying the caller.
        #[arg(long, default_value = "/cli")]
        source: String,
        /// The client tenant that owns the run (`agentry.requests.<tenant>`,
        /// run key `<tenant>.<run-id>`).
        #[arg(long, env = "AGENTRY_TENANT")]
        tenant: Option<Tenant>,
    },
    /// List runs (newest first).
    Runs {
        /// Only runs with this status (running, compensating, completed, failed, cancelled, timed_out).
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only this tenant's runs (default: every run the connection may read).
        #[arg(long, env = "AGENTRY_TENANT")]
        tenant: Option<Tenant>,
    },
    /// Show a run: status, output or error, and a table of its steps.
    Show {
        run_id: String,
        /// The client tenant that owns the run (`agentry.requests.<tenant>`,
        /// run key `<tenant>.<run-id>`).
        #[arg(long, env = "AGENTRY_TENANT")]
        tenant: Option<Tenant>,
    },
    /// Send a signal to a run (a `wait_for` step takes its payload as output).
    Signal {
        run_id: String,
        name: String,
        /// Payload as JSON.
        #[arg(long, default_value = "null")]
        payload: String,
        /// The client tenant that owns the run (`agentry.requests.<tenant>`,
        /// run key `<tenant>.<run-id>`).
        #[arg(long, env = "AGENTRY_TENANT")]
        tenant: Option<Tenant>,
    },
    /// Cancel a run: work in flight stops, completed steps are compensated.
    Cancel {
        run_id: String,
        #[arg(long)]
        reason: Option<String>,
        /// The client tenant that owns the run (`agentry.requests.<tenant>`,
        /// run key `<tenant>.<run-id>`).
        #[arg(long, env = "AGENTRY_TENANT")]
        tenant: Option<Tenant>,
    },
}

pub async fn run(cli: &Cli, cmd: &Command) -> anyhow::Result<ExitCode> {
    let nats = crate::connect(cli).await?;
    let js = jetstream::new(nats.clone());
    match cmd {
        Command::Put { file } => put(cli, &js, file).await,
        Command::List => list(cli, &js).await,
        Command::Get { name, version } => get(cli, &js, name, *version).await,
        Command::Run {
            name,
            input,
            version,
            wait,
            timeout,
            id,
            source,
            tenant,
        } => {
            let tenant = tenant.as_ref();
            let input = read_json(input, "--input")?;
            let id = match id {
                Some(id) => RequestId::new(id.as_str())?,
                None => RequestId::generate(),
            };
            let ev = client::workflow_request(&id, source, name, *version, input);
            if !*wait {
                client::publish_request_as(&js, tenant, &ev, Mode::Binary).await?;
                let flag = tenant.map(|t| format!(" --tenant {t}")).unwrap_or_default();
                if cli.json {
                    println!(
                        "{}",
                        json!({"run_id": id, "request_id": id, "tenant": tenant.map(Tenant::as_str)})
                    );
                } else {
                    println!(
                        "started run {id} (follow it with `agentry workflow show {id}{flag}`)"
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            match wait::submit_and_wait(&nats, &js, tenant, &ev, *timeout).await {
                Ok(o) => {
                    let doc = json!({"request_id": o.request_id, "run_id": o.request_id, "type": o.ty, "data": o.data});
                    if cli.json {
                        println!("{doc}");
                    } else {
                        println!("{}", serde_json::to_string_pretty(&doc)?);
                    }
                    Ok(crate::exit::for_outcome(&o))
                }
                Err(SubmitError::Timeout { id, timeout }) => {
                    eprintln!(
                        "run {id} did not finish within {timeout:?}; it goes on (`agentry workflow show {id}`)"
                    );
                    Ok(ExitCode::from(crate::exit::TIMED_OUT))
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Runs {
            status,
            workflow,
            limit,
            tenant,
        } => {
            let filter = runs::Filter {
                status: status.as_deref(),
                workflow: workflow.as_deref(),
                tenant: tenant.as_ref(),
            };
            runs(cli, &js, &filter, *limit).await
        }
        Command::Show { run_id, tenant } => {
            show(cli, &js, &run_key(tenant.as_ref(), run_id)?).await
        }
        Command::Signal {
            run_id,
            name,
            payload,
            tenant,
        } => {
            let payload = read_json(payload, "--payload")?;
            let data = json!({"run_id": run_id, "signal": name, "payload": payload});
            request(
                cli,
                &nats,
                &js,
                tenant.as_ref(),
                run_id,
                types::WORKFLOW_SIGNAL,
                data,
            )
            .await
        }
        Command::Cancel {
            run_id,
            reason,
            tenant,
        } => {
            let mut data = json!({"run_id": run_id});
            if let Some(r) = reason {
                data["reason"] = r.clone().into();
            }
            request(
                cli,
                &nats,
                &js,
                tenant.as_ref(),
                run_id,
                types::WORKFLOW_CANCEL,
                data,
            )
            .await
        }
    }
}

/// The key of `run_id` in `agentry-runs` for `tenant`.
fn run_key(tenant: Option<&Tenant>, run_id: &str) -> anyhow::Result<String> {
    Ok(subject::run_key(tenant, &RunId::new(run_id)?))
}

fn read_json(text: &str, what: &str) -> anyhow::Result<Value> {
    Ok(crate::input::read_json(text, what)?)
}

async fn put(cli: &Cli, js: &jetstream::Context, file: &PathBuf) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    match store::put(js, &text).await {
        Ok((def, outcome)) => {
            let status = match outcome {
                PutOutcome::Created => "created",
                PutOutcome::Unchanged => "unchanged",
            };
            if cli.json {
                println!("{}", json!({"key": def.key(), "status": status}));
            } else {
                println!("{status} {} ({} steps)", def.key(), def.steps.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(StoreError::Invalid(errors)) => {
            let list: Vec<Value> = errors
                .errors()
                .iter()
                .map(|e| json!({"path": e.path, "kind": e.kind.as_str(), "message": e.message}))
                .collect();
            if cli.json {
                println!("{}", json!({"file": file, "valid": false, "errors": list}));
            } else {
                println!(
                    "{} is not a valid workflow definition ({} errors):",
                    file.display(),
                    list.len()
                );
                for e in errors.errors() {
                    let path = if e.path.is_empty() {
                        "<definition>"
                    } else {
                        &e.path
                    };
                    println!("  {path}: {} [{}]", e.message, e.kind);
                }
            }
            Ok(ExitCode::from(1))
        }
        Err(e @ StoreError::VersionExists { .. }) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

async fn list(cli: &Cli, js: &jetstream::Context) -> anyhow::Result<ExitCode> {
    let kv = store::open(js).await?;
    let versions = store::versions(&kv).await?;
    let mut out = Vec::new();
    for (name, vs) in &versions {
        let latest = vs.last().copied().unwrap_or_default();
        let def = store::get(&kv, name, Some(latest)).await.ok().flatten();
        out.push(json!({
            "name": name,
            "versions": vs,
            "latest": latest,
            "steps": def.as_ref().map(|d| d.steps.len()),
            "description": def.as_ref().and_then(|d| d.description.clone()),
        }));
    }
    if cli.json {
        println!("{}", Value::Array(out));
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![vec![
        "NAME".to_owned(),
        "VERSIONS".into(),
        "STEPS".into(),
        "DESCRIPTION".into(),
    ]];
    for d in &out {
        let desc: String = d["description"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        rows.push(vec![
            d["name"].as_str().unwrap_or("").to_owned(),
            d["versions"]
                .as_array()
                .map(|v| v.iter().map(Value::to_string).collect::<Vec<_>>().join(","))
                .unwrap_or_default(),
            d["steps"].to_string(),
            desc,
        ]);
    }
    print!("{}", crate::table::render(&rows));
    Ok(ExitCode::SUCCESS)
}

async fn get(
    cli: &Cli,
    js: &jetstream::Context,
    name: &str,
    version: Option<u32>,
) -> anyhow::Result<ExitCode> {
    let kv = store::open(js).await?;
    let Some(def) = store::get(&kv, name, version).await? else {
        eprintln!(
            "no workflow definition {name}{}",
            version.map(|v| format!(" version {v}")).unwrap_or_default()
        );
        return Ok(ExitCode::from(1));
    };
    if cli.json {
        println!("{}", serde_json::to_string(&def)?);
    } else {
        print!("{}", serde_yaml::to_string(&def)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// How long a tenant's signal or cancel waits for a refusal.
const REFUSAL_WAIT: Duration = Duration::from_secs(2);

/// How long `--tenant` signal or cancel tries to read the run from
/// `agentry-runs` (operators can; a tenant's user is denied).
const RUNS_LOOKUP_WAIT: Duration = Duration::from_secs(1);

/// Publishes a signal or cancel request for an existing run of `tenant`.
///
/// The run is looked up in `agentry-runs` first (without a tenant this
/// must work; with `--tenant` it is tried briefly, for operators). A
/// tenant's own user may not read that bucket; then the request is sent
/// and the CLI listens briefly on the tenant's result subject: the engine answers an unknown (or another tenant's) run with a
/// `request.rejected` result there, and an accepted one with silence.
async fn request(
    cli: &Cli,
    nats: &async_nats::Client,
    js: &jetstream::Context,
    tenant: Option<&Tenant>,
    run_id: &str,
    ty: &str,
    data: Value,
) -> anyhow::Result<ExitCode> {
    // Credentials that can read `agentry-runs` (operators) get a definitive
    // answer from the bucket first, with or without `--tenant`, even while
    // no engine is up. A tenant's own user cannot read it: its lookup is
    // denied (which a client sees only as no reply), so it is bounded and
    // the request goes out as described above.
    let lookup = match tenant {
        None => Some(load_run(js, run_id).await?),
        Some(t) => {
            let key = run_key(Some(t), run_id)?;
            tokio::time::timeout(RUNS_LOOKUP_WAIT, load_run(js, &key))
                .await
                .ok()
                .and_then(Result::ok)
        }
    };
    if let Some(found) = lookup {
        let Some(run) = found else {
            eprintln!("no workflow run {run_id}");
            return Ok(ExitCode::from(1));
        };
        if run.status.is_terminal() {
            eprintln!(
                "run {run_id} already ended ({}); nothing to do",
                run.status.as_str()
            );
            return Ok(ExitCode::from(1));
        }
    }
    let id = RequestId::generate();
    let ev = event::new_event(id.as_str(), "/cli", ty, data);
    let what = if ty == types::WORKFLOW_SIGNAL {
        "signal"
    } else {
        "cancel"
    };
    let refused = match tenant {
        Some(t) => {
            let results = subject::results_for(Some(t), &id);
            let mut sub = nats.subscribe(results).await?;
            client::publish_request_as(js, Some(t), &ev, Mode::Binary).await?;
            match tokio::time::timeout(REFUSAL_WAIT, sub.next()).await {
                Ok(Some(_)) => client::fetch_result_as(js, Some(t), &id)
                    .await
                    .filter(|o| o.ty == types::REQUEST_REJECTED),
                _ => None,
            }
        }
        None => {
            client::publish_request_as(js, None, &ev, Mode::Binary).await?;
            None
        }
    };
    let tenant_name = tenant.map(Tenant::as_str);
    match refused {
        Some(o) => {
            let detail = o.data["detail"].as_str().unwrap_or_default().to_owned();
            if cli.json {
                println!(
                    "{}",
                    json!({"request_id": id, "run_id": run_id, "tenant": tenant_name, "refused": o.data})
                );
            } else {
                eprintln!("{what} refused: {detail}");
            }
            Ok(ExitCode::from(1))
        }
        None => {
            if cli.json {
                println!(
                    "{}",
                    json!({"request_id": id, "run_id": run_id, "tenant": tenant_name, "sent": what})
                );
            } else {
                println!("{what} sent to run {run_id} (request {id})");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
