//! Runs: the list (KV `agentry-runs`, filters, newest first), a form that
//! starts a run, and a run's page: its step graph, each step's output or
//! error, Signal and Cancel, sent as requests on `agentry.requests` like
//! `agentry workflow signal|cancel`, and the run's events in order
//! ([`super::events`]).

use agentry::client;
use agentry::event::{self, Mode, types};
use agentry::id::RequestId;
use agentry::subject;
use agentry::workflow::state::RunState;
use agentry::workflow::{Definition, store};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use futures::StreamExt;
use serde_json::{Value, json};

use super::auth::csrf_input;
use super::dag::{self, Node};
use super::events;
use super::html::{esc, json_pre, page};
use super::{Console, ROOT, unavailable};

/// Most runs the list shows.
const LIST_LIMIT: usize = 200;

#[derive(Debug, Default, serde::Deserialize)]
pub struct Filter {
    #[serde(default)]
    workflow: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    tenant: String,
}

async fn all_runs(c: &Console, f: &Filter) -> Result<Vec<RunState>, String> {
    let kv =
        c.js.get_key_value(subject::RUNS_BUCKET)
            .await
            .map_err(|e| e.to_string())?;
    let mut keys = kv.keys().await.map_err(|e| e.to_string())?;
    let mut runs = Vec::new();
    while let Some(k) = keys.next().await {
        let k = k.map_err(|e| e.to_string())?;
        if let Ok(Some(bytes)) = kv.get(&k).await
            && let Ok(run) = serde_json::from_slice::<RunState>(&bytes)
            && (f.workflow.is_empty() || run.workflow == f.workflow)
            && (f.status.is_empty() || run.status.as_str() == f.status)
            && (f.tenant.is_empty() || run.tenant.as_deref() == Some(f.tenant.as_str()))
        {
            runs.push(run);
        }
    }
    runs.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    runs.truncate(LIST_LIMIT);
    Ok(runs)
}

async fn workflow_names(c: &Console) -> Vec<String> {
    match store::open(&c.js).await {
        Ok(kv) => store::versions(&kv)
            .await
            .map(|v| v.into_keys().collect())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

pub async fn list(State(c): State<Console>, Query(f): Query<Filter>) -> Response {
    let names = workflow_names(&c).await;
    let options: String = names
        .iter()
        .map(|n| format!("<option value=\"{n}\">{n}</option>", n = esc(n)))
        .collect();
    let start = format!(
        "<form method=\"post\" action=\"{ROOT}/runs/start\" class=\"start\">{csrf}\
         <label>Workflow <select name=\"workflow\" id=\"start-workflow\">{options}</select></label>\
         <label>Input (JSON) <textarea name=\"input\" id=\"start-input\" rows=\"2\">{{}}</textarea></label>\
         <button type=\"submit\" id=\"start\">Start run</button></form>",
        csrf = csrf_input(&c.auth)
    );
    let filters = format!(
        "<form method=\"get\" action=\"{ROOT}/runs\" class=\"filters\">\
         <label>workflow <input name=\"workflow\" value=\"{}\"></label> \
         <label>status <input name=\"status\" value=\"{}\"></label> \
         <label>tenant <input name=\"tenant\" value=\"{}\"></label> \
         <button type=\"submit\">Filter</button></form>",
        esc(&f.workflow),
        esc(&f.status),
        esc(&f.tenant)
    );
    let table = match all_runs(&c, &f).await {
        Ok(runs) => {
            let now = Utc::now();
            let rows: String = runs
                .iter()
                .map(|r| {
                    format!(
                        "<tr><td><a href=\"{ROOT}/runs/{key}\">{id}</a></td><td>{tenant}</td>\
                         <td>{wf} v{v}</td><td class=\"status-{st}\">{st}</td><td>{started}</td><td>{dur:.1}s</td></tr>",
                        key = esc(&r.run_id),
                        id = esc(&r.request_id),
                        tenant = esc(r.tenant.as_deref().unwrap_or("-")),
                        wf = esc(&r.workflow),
                        v = r.version,
                        st = r.status.as_str(),
                        started = r.created_at.format("%Y-%m-%d %H:%M:%S"),
                        dur = r.duration_ms(now) as f64 / 1000.0,
                    )
                })
                .collect();
            format!(
                "<table class=\"runs\"><thead><tr><th>Run</th><th>Tenant</th><th>Workflow</th>\
                 <th>Status</th><th>Started</th><th>Duration</th></tr></thead><tbody>{rows}</tbody></table>"
            )
        }
        Err(e) => unavailable("runs", &e),
    };
    page("Runs", &format!("{start}{filters}{table}"))
}

fn reply(status: StatusCode, title: &str, msg: &str) -> Response {
    let mut r = page(title, &format!("<p class=\"error\">{}</p>", esc(msg)));
    *r.status_mut() = status;
    r
}

#[derive(serde::Deserialize)]
pub struct StartForm {
    workflow: String,
    #[serde(default)]
    input: String,
}

pub async fn start(State(c): State<Console>, axum::Form(f): axum::Form<StartForm>) -> Response {
    let input: Value = if f.input.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str(&f.input) {
            Ok(v) => v,
            Err(e) => {
                return reply(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Start run",
                    &format!("input: {e}"),
                );
            }
        }
    };
    let id = RequestId::generate();
    let ev = client::workflow_request(&id, "/console", &f.workflow, None, input);
    match client::publish_request(&c.js, &ev, Mode::Binary).await {
        Ok(()) => Redirect::to(&format!("{ROOT}/runs/{id}")).into_response(),
        Err(e) => reply(
            StatusCode::BAD_GATEWAY,
            "Start run",
            &format!("not started: {e}"),
        ),
    }
}

async fn load(c: &Console, key: &str) -> Result<Option<RunState>, String> {
    let kv =
        c.js.get_key_value(subject::RUNS_BUCKET)
            .await
            .map_err(|e| e.to_string())?;
    match kv.get(key).await.map_err(|e| e.to_string())? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("run {key} is unreadable: {e}")),
        None => Ok(None),
    }
}

/// Steps in definition order with their needs (state order when the
/// definition cannot be read).
async fn nodes(c: &Console, run: &RunState) -> Vec<Node> {
    let def: Option<Definition> = match store::open(&c.js).await {
        Ok(kv) => store::get_key(&kv, &run.definition).await.ok().flatten(),
        Err(_) => None,
    };
    let order: Vec<(String, Vec<String>)> = match def {
        Some(d) => d
            .steps
            .iter()
            .map(|s| {
                (
                    s.id.to_string(),
                    s.needs.iter().map(ToString::to_string).collect(),
                )
            })
            .collect(),
        None => run.steps.keys().map(|k| (k.clone(), Vec::new())).collect(),
    };
    let now = Utc::now();
    order
        .into_iter()
        .map(|(id, needs)| {
            let rec = run.steps.get(&id);
            Node {
                status: rec.map_or("pending", |r| r.status().as_str()).to_owned(),
                attempts: rec.map_or(0, |r| r.unit.attempt),
                duration_ms: rec.and_then(|r| r.elapsed_ms(now)),
                id,
                needs,
            }
        })
        .collect()
}

pub async fn show(State(c): State<Console>, Path(key): Path<String>) -> Response {
    let run = match load(&c, &key).await {
        Ok(Some(run)) => run,
        Ok(None) => {
            return page(
                &format!("Run {key}"),
                &format!(
                    "<p>run <code>{}</code>: <span id=\"run-status\" data-reload=\"1000\">not started yet</span></p>",
                    esc(&key)
                ),
            );
        }
        Err(e) => return reply(StatusCode::SERVICE_UNAVAILABLE, "Run", &e),
    };
    let now = Utc::now();
    let terminal = run.status.is_terminal();
    let listing = events::of_run(&c.js, &run.run_id, run.created_at).await;
    // The run's last event follows its stored state by a moment: the page of
    // a run that just ended reloads until that event is listed (for 10 s).
    let last_event_due = terminal
        && (now - run.updated_at).num_seconds() < 10
        && !listing.as_ref().is_ok_and(|l| {
            l.items.iter().any(|i| {
                i.ty.starts_with("io.agentry.run.") && i.data["status"] == run.status.as_str()
            })
        });
    // Live while it runs: the page reloads itself until the run ends, every
    // second in its first minute, then every 5 s (each load reads the run's
    // events since its start, which grow with the run's age).
    let reload = if terminal && !last_event_due {
        String::new()
    } else if run.duration_ms(now) < 60_000 || last_event_due {
        " data-reload=\"1000\"".to_owned()
    } else {
        " data-reload=\"5000\"".to_owned()
    };
    let mut body = format!(
        "<p>run <code>{id}</code> · {wf} v{v} · <span class=\"status-{st}\" id=\"run-status\"{reload}>{st}</span> · \
         started {started} · {dur:.1}s{tenant}</p>",
        id = esc(&run.request_id),
        wf = esc(&run.workflow),
        v = run.version,
        st = run.status.as_str(),
        started = run.created_at.format("%Y-%m-%d %H:%M:%S"),
        dur = run.duration_ms(now) as f64 / 1000.0,
        tenant = run
            .tenant
            .as_ref()
            .map(|t| format!(" · tenant {}", esc(t)))
            .unwrap_or_default(),
    );
    let nodes = nodes(&c, &run).await;
    body.push_str(&dag::svg(&nodes));
    body.push_str("<h2>Steps</h2>");
    for n in &nodes {
        let rec = run.steps.get(&n.id);
        let detail = match rec {
            Some(r) => {
                let mut d = String::new();
                if let Some(cap) = &r.capability {
                    d.push_str(&format!("<p>capability <code>{}</code>", esc(cap)));
                    if let Some(a) = &r.unit.agent_id {
                        d.push_str(&format!(" · agent <code>{}</code>", esc(a)));
                    }
                    d.push_str("</p>");
                }
                if let Some(o) = &r.unit.output {
                    d.push_str(&format!("<h4>output</h4>{}", json_pre(o)));
                }
                if let Some(e) = &r.unit.error {
                    d.push_str(&format!("<h4>error</h4>{}", json_pre(&e.to_json())));
                }
                d
            }
            None => "<p>not reached yet</p>".to_owned(),
        };
        body.push_str(&format!(
            "<details class=\"step\" data-step=\"{id}\"><summary>{id} · <span class=\"status-{st}\">{st}</span> · \
             attempt {a}</summary>{detail}</details>",
            id = esc(&n.id),
            st = esc(&n.status),
            a = n.attempts,
        ));
    }
    body.push_str(&format!("<h2>Input</h2>{}", json_pre(&run.input)));
    if let Some(o) = &run.output {
        body.push_str(&format!(
            "<h2>Output</h2><div id=\"run-output\">{}</div>",
            json_pre(o)
        ));
    }
    if let Some(e) = &run.error {
        body.push_str(&format!("<h2>Error</h2>{}", json_pre(&e.to_json())));
    }
    if !terminal && run.tenant.is_none() {
        body.push_str(&actions(&c, &run.run_id));
    }
    body.push_str(&events::section(listing));
    page(&format!("Run {}", run.request_id), &body)
}

fn actions(c: &Console, key: &str) -> String {
    format!(
        "<h2>Actions</h2><form method=\"post\" action=\"{ROOT}/runs/{k}/signal\" class=\"signal\">{csrf}\
         <label>Signal <input name=\"name\" id=\"signal-name\" required></label>\
         <label>Payload (JSON) <textarea name=\"payload\" id=\"signal-payload\" rows=\"2\">{{}}</textarea></label>\
         <button type=\"submit\" id=\"signal\">Send signal</button></form>\
         <form method=\"post\" action=\"{ROOT}/runs/{k}/cancel\" class=\"cancel\">{csrf}\
         <label>Reason <input name=\"reason\" id=\"cancel-reason\"></label>\
         <button type=\"submit\" id=\"cancel\">Cancel run</button></form>",
        k = esc(key),
        csrf = csrf_input(&c.auth),
    )
}

#[derive(serde::Deserialize)]
pub struct SignalForm {
    name: String,
    #[serde(default)]
    payload: String,
}

pub async fn signal(
    State(c): State<Console>,
    Path(key): Path<String>,
    axum::Form(f): axum::Form<SignalForm>,
) -> Response {
    let payload: Value = if f.payload.trim().is_empty() {
        Value::Null
    } else {
        match serde_json::from_str(&f.payload) {
            Ok(v) => v,
            Err(e) => {
                return reply(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Signal",
                    &format!("payload: {e}"),
                );
            }
        }
    };
    let data = json!({"run_id": key, "signal": f.name, "payload": payload});
    send(&c, &key, types::WORKFLOW_SIGNAL, data).await
}

#[derive(serde::Deserialize)]
pub struct CancelForm {
    #[serde(default)]
    reason: String,
}

pub async fn cancel(
    State(c): State<Console>,
    Path(key): Path<String>,
    axum::Form(f): axum::Form<CancelForm>,
) -> Response {
    let mut data = json!({"run_id": key});
    if !f.reason.is_empty() {
        data["reason"] = f.reason.into();
    }
    send(&c, &key, types::WORKFLOW_CANCEL, data).await
}

/// Publishes a signal or cancel request for an untenanted, running run.
async fn send(c: &Console, key: &str, ty: &str, data: Value) -> Response {
    match load(c, key).await {
        Ok(Some(run)) if run.status.is_terminal() => {
            return reply(
                StatusCode::CONFLICT,
                "Run",
                &format!("run {key} already ended ({})", run.status.as_str()),
            );
        }
        Ok(Some(run)) if run.tenant.is_some() => {
            return reply(
                StatusCode::FORBIDDEN,
                "Run",
                "a tenant's run takes signals and cancels from its tenant only",
            );
        }
        Ok(Some(_)) => {}
        Ok(None) => {
            return reply(
                StatusCode::NOT_FOUND,
                "Run",
                &format!("no workflow run {key}"),
            );
        }
        Err(e) => return reply(StatusCode::SERVICE_UNAVAILABLE, "Run", &e),
    }
    let id = RequestId::generate();
    let ev = event::new_event(id.as_str(), "/console", ty, data);
    match client::publish_request(&c.js, &ev, Mode::Binary).await {
        Ok(()) => Redirect::to(&format!("{ROOT}/runs/{key}")).into_response(),
        Err(e) => reply(StatusCode::BAD_GATEWAY, "Run", &format!("not sent: {e}")),
    }
}
