//! `agentry dlq list|replay`.

use std::process::ExitCode;
use std::time::Duration;

use agentry::event::{self, Limits, Mode, ext, header, types};
use agentry::id::RequestId;
use agentry::subject;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::DeliverPolicy};
use chrono::{DateTime, Utc};
use cloudevents::AttributesReader;
use futures::StreamExt;

use crate::Cli;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List dead letters (newest last).
    List {
        /// Only this reason (e.g. task_failed, schema_invalid).
        #[arg(long)]
        reason: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Re-publish dead letters to their original subject as a new generation
    /// (`<id>-r<dlq-seq>`, extension `replayof=<id>`), with an audit event.
    Replay {
        /// DLQ stream sequence to replay.
        seq: Option<u64>,
        /// Replay every entry (optionally only --reason).
        #[arg(long, conflicts_with = "seq")]
        all: bool,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, serde::Serialize)]
pub struct Entry {
    pub seq: u64,
    pub time: DateTime<Utc>,
    pub reason: String,
    pub subject: String,
    pub request_id: Option<String>,
    pub attempts: Option<u64>,
    pub source: Option<String>,
    pub detail: String,
    pub bytes: usize,
}

fn hdr(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.as_str().to_owned())
}

async fn entries(
    js: &jetstream::Context,
    reason: Option<&str>,
    limit: usize,
) -> anyhow::Result<Vec<(Entry, jetstream::Message)>> {
    let stream = js.get_stream(subject::DLQ_STREAM).await?;
    let filter = reason
        .map(subject::dlq)
        .unwrap_or_else(|| subject::DLQ_ALL.to_owned());
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: filter,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut out = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_millis(500), messages.next()).await;
        let Ok(Some(Ok(msg))) = next else { break };
        let Ok(info) = msg.info() else { break };
        let pending = info.pending;
        let h = msg.headers.clone().unwrap_or_default();
        let time =
            DateTime::from_timestamp(info.published.unix_timestamp(), info.published.nanosecond())
                .unwrap_or_else(Utc::now);
        let e = Entry {
            seq: info.stream_sequence,
            time,
            reason: hdr(&h, header::DLQ_REASON).unwrap_or_default(),
            subject: hdr(&h, header::DLQ_SUBJECT).unwrap_or_default(),
            request_id: hdr(&h, header::DLQ_REQUEST_ID),
            attempts: hdr(&h, header::DLQ_ATTEMPTS).and_then(|a| a.parse().ok()),
            source: hdr(&h, header::DLQ_SOURCE),
            detail: hdr(&h, header::DLQ_DETAIL).unwrap_or_default(),
            bytes: msg.payload.len(),
        };
        out.push((e, msg));
        if pending == 0 {
            break;
        }
    }
    if out.len() > limit {
        out.drain(..out.len() - limit);
    }
    Ok(out)
}

pub async fn run(cli: &Cli, cmd: &Command) -> anyhow::Result<ExitCode> {
    let client = crate::connect(cli).await?;
    let js = jetstream::new(client.clone());
    match cmd {
        Command::List { reason, limit } => {
            let list = entries(&js, reason.as_deref(), *limit).await?;
            if cli.json {
                let v: Vec<&Entry> = list.iter().map(|(e, _)| e).collect();
                println!("{}", serde_json::to_string(&v)?);
            } else {
                let mut rows = vec![
                    [
                        "SEQ", "TIME", "REASON", "SUBJECT", "REQUEST", "ATTEMPTS", "DETAIL",
                    ]
                    .map(String::from)
                    .to_vec(),
                ];
                for (e, _) in &list {
                    rows.push(vec![
                        e.seq.to_string(),
                        e.time.format("%H:%M:%S").to_string(),
                        e.reason.clone(),
                        e.subject.clone(),
                        e.request_id.clone().unwrap_or_else(|| "-".into()),
                        e.attempts
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| "-".into()),
                        e.detail.chars().take(80).collect(),
                    ]);
                }
                print!("{}", crate::table::render(&rows));
                println!("{} dead letter(s)", list.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { seq, all, reason } => {
            let stream = js.get_stream_no_info(subject::DLQ_STREAM).await?;
            let targets: Vec<(u64, HeaderMap, bytes::Bytes)> = if let Some(seq) = seq {
                let m = stream
                    .get_raw_message(*seq)
                    .await
                    .map_err(|e| anyhow::anyhow!("DLQ entry {seq}: {e}"))?;
                vec![(*seq, m.headers, m.payload)]
            } else if *all {
                entries(&js, reason.as_deref(), usize::MAX)
                    .await?
                    .into_iter()
                    .map(|(e, m)| {
                        (
                            e.seq,
                            m.headers.clone().unwrap_or_default(),
                            m.payload.clone(),
                        )
                    })
                    .collect()
            } else {
                anyhow::bail!("give a DLQ sequence or --all");
            };
            let mut replayed = Vec::new();
            for (seq, headers, payload) in targets {
                let r = replay_one(&js, seq, &headers, payload).await?;
                if !cli.json {
                    println!("replayed DLQ #{seq} to {} as {}", r.0, r.1);
                }
                replayed
                    .push(serde_json::json!({"dlq_seq": seq, "subject": r.0, "request_id": r.1}));
            }
            if cli.json {
                println!("{}", serde_json::Value::Array(replayed));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The tenant of a dead letter: from the request subject it arrived on, or
/// for a task (`agentry.tasks.<cap>`) from the engine's `tenant` extension.
fn tenant_of(original_subject: &str, ev: &cloudevents::Event) -> Option<subject::Tenant> {
    match subject::tenant_of_request(original_subject) {
        Ok(t) => t,
        Err(_) => event::ext_str(ev, ext::TENANT).and_then(|t| subject::Tenant::new(t).ok()),
    }
}

/// Re-publishes one dead letter; returns (subject, new request id).
pub(crate) async fn replay_one(
    js: &jetstream::Context,
    seq: u64,
    headers: &HeaderMap,
    payload: bytes::Bytes,
) -> anyhow::Result<(String, String)> {
    let original_subject = hdr(headers, header::DLQ_SUBJECT)
        .ok_or_else(|| anyhow::anyhow!("DLQ #{seq} has no original subject"))?;
    let mut clean = HeaderMap::new();
    for (name, values) in headers.iter() {
        let n: &str = name.as_ref();
        if n.starts_with("Agentry-Dlq-") || n.starts_with("Nats-") {
            continue;
        }
        for v in values {
            clean.append(n, v.as_str());
        }
    }
    let (subject_out, new_id, headers_out, body_out) =
        match event::decode(Some(&clean), &payload, &Limits::default()) {
            Ok(d) => {
                let mut ev = d.event;
                let old = ev.id().to_owned();
                let base: String = old.chars().take(100).collect();
                let new_id = RequestId::new(format!("{base}-r{seq}"))?;
                use cloudevents::AttributesWriter;
                ev.set_id(new_id.as_str());
                ev.set_extension(ext::REPLAYOF, old.as_str());
                ev.remove_extension(ext::DEADLINE);
                // The tenant stays the original's: a request goes back to
                // the tenant subject it arrived on, its result to that
                // tenant's result subject.
                let tenant = tenant_of(&original_subject, &ev);
                if event::ext_str(&ev, ext::REPLYTO).is_some() {
                    ev.set_extension(ext::REPLYTO, subject::results_for(tenant.as_ref(), &new_id));
                }
                let (mut h, b) = event::encode(&ev, d.mode)?;
                let msg_id = subject::request_key(tenant.as_ref(), &new_id);
                h.insert(header::MSG_ID, msg_id.as_str());
                (original_subject.clone(), new_id.to_string(), h, b)
            }
            // Undecodable originals go back byte for byte (they will be rejected again, visibly).
            Err(_) => (
                original_subject.clone(),
                hdr(headers, header::DLQ_REQUEST_ID).unwrap_or_default(),
                clean,
                payload,
            ),
        };
    let ack = js
        .publish_with_headers(subject_out.clone(), headers_out, body_out)
        .await?;
    ack.await
        .map_err(|e| anyhow::anyhow!("replay of DLQ #{seq} refused: {e}"))?;
    let audit = serde_json::json!({
        "dlq_seq": seq,
        "original_subject": original_subject,
        "new_request_id": new_id,
        "replay_of": hdr(headers, header::DLQ_REQUEST_ID),
    });
    let eid = uuid::Uuid::now_v7().simple().to_string();
    let ev = event::new_event(&eid, "/cli/dlq", types::DLQ_REPLAYED, audit);
    let (h, b) = event::encode(&ev, Mode::Binary)?;
    js.publish_with_headers(subject::events_for_type(types::DLQ_REPLAYED), h, b)
        .await?
        .await?;
    Ok((subject_out, new_id))
}
