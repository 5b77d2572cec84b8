//! DLQ page: the newest dead letters of AGENTRY_DLQ (read by sequence, no
//! consumer), counted and filtered by reason; one letter's headers and
//! body; Replay, which re-publishes it as `agentry dlq replay` does
//! (`crate::dlq::replay_one`: a new generation `<id>-r<seq>` on its
//! original subject, with an audit event).

use std::collections::BTreeMap;

use agentry::event::header;
use agentry::subject;
use async_nats::jetstream::message::StreamMessage;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::auth::csrf_input;
use super::html::{esc, page};
use super::{Console, ROOT, unavailable};

/// How many of the newest letters the page reads.
const WINDOW: u64 = 200;

#[derive(Debug, Default, serde::Deserialize)]
pub struct Filter {
    #[serde(default)]
    reason: String,
}

fn hdr(m: &StreamMessage, name: &str) -> String {
    m.headers
        .get(name)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}

/// The newest letters, newest first.
async fn newest(c: &Console) -> Result<Vec<StreamMessage>, String> {
    let mut stream =
        c.js.get_stream(subject::DLQ_STREAM)
            .await
            .map_err(|e| e.to_string())?;
    let state = stream
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    let from = state
        .first_sequence
        .max(state.last_sequence.saturating_sub(WINDOW - 1));
    for seq in (from..=state.last_sequence).rev() {
        // Deleted sequences are gaps, not errors.
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push(m);
        }
    }
    Ok(out)
}

pub async fn list(State(c): State<Console>, Query(f): Query<Filter>) -> Response {
    let letters = match newest(&c).await {
        Ok(l) => l,
        Err(e) => return page("Dead letters", &unavailable("AGENTRY_DLQ", &e)),
    };
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for m in &letters {
        *by_reason.entry(hdr(m, header::DLQ_REASON)).or_default() += 1;
    }
    let reasons: String = by_reason
        .iter()
        .map(|(r, n)| {
            format!(
                "<li><a href=\"{ROOT}/dlq?reason={r}\" data-reason=\"{r}\">{r}</a> ({n})</li>",
                r = esc(r)
            )
        })
        .collect();
    let rows: String = letters
        .iter()
        .filter(|m| f.reason.is_empty() || hdr(m, header::DLQ_REASON) == f.reason)
        .map(|m| {
            format!(
                "<tr data-seq=\"{seq}\"><td><a href=\"{ROOT}/dlq/{seq}\">{seq}</a></td><td>{time}</td><td>{reason}</td>\
                 <td>{subj}</td><td>{id}</td><td>{detail}</td></tr>",
                seq = m.sequence,
                time = esc(&m.time.to_string()),
                reason = esc(&hdr(m, header::DLQ_REASON)),
                subj = esc(&hdr(m, header::DLQ_SUBJECT)),
                id = esc(&hdr(m, header::DLQ_REQUEST_ID)),
                detail = esc(&hdr(m, header::DLQ_DETAIL).chars().take(160).collect::<String>()),
            )
        })
        .collect();
    page(
        "Dead letters",
        &format!(
            "<ul class=\"reasons\"><li><a href=\"{ROOT}/dlq\">all</a> ({total})</li>{reasons}</ul>\
             <table class=\"dlq\"><thead><tr><th>Seq</th><th>Time</th><th>Reason</th><th>Subject</th>\
             <th>Request</th><th>Detail</th></tr></thead><tbody>{rows}</tbody></table>",
            total = letters.len()
        ),
    )
}

pub async fn show(State(c): State<Console>, Path(seq): Path<u64>) -> Response {
    let m = match get(&c, seq).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let headers: String = m
        .headers
        .iter()
        .flat_map(|(k, vs)| {
            vs.iter()
                .map(move |v| (k.to_string(), v.as_str().to_owned()))
        })
        .map(|(k, v)| format!("<tr><th>{}</th><td>{}</td></tr>", esc(&k), esc(&v)))
        .collect();
    let body = String::from_utf8_lossy(&m.payload);
    let body = match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_else(|_| body.to_string()),
        Err(_) => body.to_string(),
    };
    page(
        &format!("Dead letter {seq}"),
        &format!(
            "<p>subject <code>{subj}</code></p><table class=\"headers\">{headers}</table>\
             <h2>Body</h2><pre class=\"json\" id=\"dlq-body\">{body}</pre>\
             <form method=\"post\" action=\"{ROOT}/dlq/{seq}/replay\">{csrf}\
             <button type=\"submit\" id=\"replay\">Replay</button></form>",
            subj = esc(&m.subject),
            body = esc(&body),
            csrf = csrf_input(&c.auth),
        ),
    )
}

async fn get(c: &Console, seq: u64) -> Result<StreamMessage, Response> {
    let fail = |code, msg: String| {
        let mut r = page(
            "Dead letter",
            &format!("<p class=\"error\">{}</p>", esc(&msg)),
        );
        *r.status_mut() = code;
        r
    };
    let stream =
        c.js.get_stream_no_info(subject::DLQ_STREAM)
            .await
            .map_err(|e| fail(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    stream
        .get_raw_message(seq)
        .await
        .map_err(|e| fail(StatusCode::NOT_FOUND, format!("no dead letter #{seq}: {e}")))
}

pub async fn replay(State(c): State<Console>, Path(seq): Path<u64>) -> Response {
    let m = match get(&c, seq).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    match crate::dlq::replay_one(&c.js, seq, &m.headers, m.payload).await {
        Ok((subj, new_id)) => page(
            &format!("Replayed {seq}"),
            &format!(
                "<p id=\"replayed\">dead letter #{seq} re-published to <code>{}</code> as request \
                 <code id=\"new-request\">{}</code></p><p><a href=\"{ROOT}/results/{}\">its result</a></p>",
                esc(&subj),
                esc(&new_id),
                esc(&new_id)
            ),
        ),
        Err(e) => {
            let mut r = page(
                "Replay failed",
                &format!("<p class=\"error\">{}</p>", esc(&format!("{e:#}"))),
            );
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            r
        }
    }
    .into_response()
}
