//! `agentry workflow runs` and `show`: runs as stored in KV `agentry-runs`.

use std::process::ExitCode;

use agentry::subject;
use agentry::workflow::Definition;
use agentry::workflow::state::{RunState, RunStatus, StepRecord};
use agentry::workflow::store;
use anyhow::Context as _;
use async_nats::jetstream;
use chrono::Utc;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::Cli;

pub(super) async fn load_run(
    js: &jetstream::Context,
    run_id: &str,
) -> anyhow::Result<Option<RunState>> {
    let kv = js.get_key_value(subject::RUNS_BUCKET).await?;
    let Some(bytes) = kv.get(run_id).await? else {
        return Ok(None);
    };
    Ok(Some(
        serde_json::from_slice(&bytes).with_context(|| format!("run {run_id} is unreadable"))?,
    ))
}

/// Which runs `agentry workflow runs` lists.
pub(super) struct Filter<'a> {
    pub status: Option<&'a str>,
    pub workflow: Option<&'a str>,
    /// Only this tenant's runs (keys `<tenant>.<id>`).
    pub tenant: Option<&'a subject::Tenant>,
}

pub(super) async fn runs(
    cli: &Cli,
    js: &jetstream::Context,
    filter: &Filter<'_>,
    limit: usize,
) -> anyhow::Result<ExitCode> {
    let (status, workflow) = (filter.status, filter.workflow);
    let prefix = filter.tenant.map(|t| format!("{t}."));
    if let Some(s) = status
        && RunStatus::from_name(s).is_none()
    {
        anyhow::bail!(
            "unknown status {s:?} (running, compensating, completed, failed, cancelled, timed_out)"
        );
    }
    let kv = js.get_key_value(subject::RUNS_BUCKET).await?;
    let mut all: Vec<RunState> = Vec::new();
    let mut keys = kv.keys().await?;
    while let Some(k) = keys.next().await {
        let k = k?;
        if prefix.as_ref().is_some_and(|p| !k.starts_with(p.as_str())) {
            continue;
        }
        if let Some(bytes) = kv.get(&k).await?
            && let Ok(run) = serde_json::from_slice::<RunState>(&bytes)
            && status.is_none_or(|s| run.status.as_str() == s)
            && workflow.is_none_or(|w| run.workflow == w)
        {
            all.push(run);
        }
    }
    all.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    all.truncate(limit);
    let now = Utc::now();
    if cli.json {
        let list: Vec<Value> = all
            .iter()
            .map(|r| json!({"run_id": r.request_id, "key": r.run_id, "tenant": r.tenant, "workflow": r.workflow, "version": r.version, "status": r.status.as_str(), "created_at": r.created_at, "ended_at": r.ended_at, "duration_ms": r.duration_ms(now)}))
            .collect();
        println!("{}", Value::Array(list));
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![vec![
        "RUN".to_owned(),
        "TENANT".into(),
        "WORKFLOW".into(),
        "STATUS".into(),
        "STARTED".into(),
        "DURATION".into(),
    ]];
    for r in &all {
        rows.push(vec![
            r.request_id.clone(),
            r.tenant.clone().unwrap_or_else(|| "-".into()),
            format!("{} v{}", r.workflow, r.version),
            r.status.as_str().to_owned(),
            r.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            secs(r.duration_ms(now)),
        ]);
    }
    print!("{}", crate::table::render(&rows));
    Ok(ExitCode::SUCCESS)
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// One row of the step table.
fn step_row(name: String, rec: Option<&StepRecord>, now: chrono::DateTime<Utc>) -> Vec<String> {
    let Some(rec) = rec else {
        return vec![
            name,
            "pending".into(),
            "0".into(),
            "-".into(),
            String::new(),
        ];
    };
    let mut status = rec.unit.status.as_str().to_owned();
    if let Some(c) = &rec.compensation
        && rec.unit.status.as_str() != "compensated"
    {
        status = format!("{status} (compensation {})", c.status.as_str());
    }
    let error = rec
        .unit
        .error
        .as_ref()
        .map(|e| format!("{}: {}", e.code, e.message))
        .unwrap_or_default();
    vec![
        name,
        status,
        rec.unit.attempt.to_string(),
        rec.elapsed_ms(now).map(secs).unwrap_or_else(|| "-".into()),
        error.chars().take(100).collect(),
    ]
}

pub(super) async fn show(
    cli: &Cli,
    js: &jetstream::Context,
    run_id: &str,
) -> anyhow::Result<ExitCode> {
    let Some(run) = load_run(js, run_id).await? else {
        // `run_id` is the key; the user named the id (and maybe --tenant).
        let id = run_id.split_once('.').map_or(run_id, |(_, id)| id);
        eprintln!("no workflow run {id}");
        return Ok(ExitCode::from(1));
    };
    if cli.json {
        println!("{}", serde_json::to_string(&run)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = Utc::now();
    println!("run       {}", run.request_id);
    if let Some(t) = &run.tenant {
        println!("tenant    {t}");
    }
    println!("workflow  {} v{}", run.workflow, run.version);
    println!("status    {}", run.status.as_str());
    println!("started   {}", run.created_at.to_rfc3339());
    println!("duration  {}", secs(run.duration_ms(now)));
    if let Some(p) = &run.parent {
        println!("parent    {} (step {})", p.run_id, p.slot);
    }
    if let Some(o) = &run.output {
        let text = o.to_string();
        let short: String = text.chars().take(200).collect();
        println!(
            "output    {short}{}",
            if short.len() < text.len() { "..." } else { "" }
        );
    }
    if let Some(e) = &run.error {
        println!("error     {}: {}", e.code, e.message);
    }
    // Steps in definition order when the definition is readable.
    let order: Vec<String> = match store::open(js).await {
        Ok(kv) => store::get_key(&kv, &run.definition)
            .await
            .ok()
            .flatten()
            .map(|d: Definition| d.steps.iter().map(|s| s.id.to_string()).collect())
            .unwrap_or_else(|| run.steps.keys().cloned().collect()),
        Err(_) => run.steps.keys().cloned().collect(),
    };
    let mut rows = vec![vec![
        "STEP".to_owned(),
        "STATUS".into(),
        "ATTEMPTS".into(),
        "DURATION".into(),
        "ERROR".into(),
    ]];
    for id in &order {
        let rec = run.steps.get(id);
        rows.push(step_row(id.clone(), rec, now));
        for (i, item) in rec
            .map(|r| r.items.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let error = item
                .error
                .as_ref()
                .map(|e| format!("{}: {}", e.code, e.message))
                .unwrap_or_default();
            let dur = match (item.attempt_started_at, item.ended_at) {
                (Some(s), Some(e)) => secs(u64::try_from((e - s).num_milliseconds()).unwrap_or(0)),
                _ => "-".into(),
            };
            rows.push(vec![
                format!("  {id}[{i}]"),
                item.status.as_str().into(),
                item.attempt.to_string(),
                dur,
                error,
            ]);
        }
    }
    println!();
    print!("{}", crate::table::render(&rows));
    Ok(ExitCode::SUCCESS)
}
