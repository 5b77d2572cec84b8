//! Continuous monitoring: the security monitor's background loop.
//!
//! Inputs, each turned into detector [`Observation`]s:
//! - durable consumer `security-dlq` on `AGENTRY_DLQ`: every dead-lettered
//!   rejection is `Rejected{reason}` for the source in `Agentry-Dlq-Source`
//!   (reason from `Agentry-Dlq-Reason`); dead-lettered task failures are
//!   left to the results below;
//! - durable consumer `security-events` on `AGENTRY_EVENTS`:
//!   `io.agentry.request.accepted` is a `Request` from its source;
//! - durable consumer `security-results` on `AGENTRY_RESULTS`:
//!   `task.completed` / `task.failed` are task outcomes of their capability
//!   (a pull consumer, because the agent user may not subscribe to
//!   `agentry.results.>`).
//!
//! Requests and rejections count per principal (tenant, source): the tenant
//! of an accepted request is the `tenant` of its fact, the tenant of a
//! rejection is derived from its `Agentry-Dlq-Subject` (the subject it
//! arrived on).
//!
//! Each alert is published as `io.agentry.security.incident`, opens an
//! incident in KV and, for the configured kinds, quarantines the source.
//!
//! Several replicas: the durable consumers and the queue group hand each
//! message to exactly one replica, so one alert is acted on by one replica.
//! Detection windows are per replica, though: with N replicas each sees about
//! 1/N of a source's traffic, so thresholds are effectively N times higher
//! (size them for the replica count, or run one replica).
//!
//! Each consumer is pulled by a [`consume::Pull`] with one message in
//! flight; its handler turns the message into an observation and hands it,
//! over a channel, to one task that owns the [`Detector`] and acts on its
//! alerts. The message is acknowledged once that task has handled it, so
//! observations reach the detector one at a time, in the order each
//! consumer delivers them. A failure to act on an alert (KV or NATS
//! trouble) is logged and the watch goes on. The consumers are bound once
//! `agentry setup` has created them (`consume::ready`); `Pull` reopens a
//! lost pull stream itself; the watch ends on shutdown.

use agentry::agent::Context;
use agentry::agent::runtime::server_time;
use agentry::consume::ready::{self, ReadyError};
use agentry::consume::{self, Disposition};
use agentry::event::{self, Limits, header, types};
use agentry::http::Pulse;
use agentry::reason::Reason;
use agentry::subject;
use async_nats::HeaderMap;
use async_nats::jetstream::Message;
use chrono::{DateTime, Utc};
use cloudevents::AttributesReader;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::agent::SecurityMonitor;
use super::alert_rules::{Alert, AlertKind, Detector, Observation, ObservationKind};
use super::respond::{self, Change};

/// How long a message waits for redelivery when the watch stopped before
/// handling it.
const STOPPED_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// An observation on its way to the detector, and who waits for it to be handled.
type Observed = (Observation, oneshot::Sender<()>);

/// Runs until `shutdown`.
pub async fn run(
    agent: &SecurityMonitor,
    ctx: Context,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let js = ctx.jetstream();
    let bind = |stream: &'static str, consumer: &'static str| {
        let shutdown = shutdown.clone();
        async move {
            match ready::consumer(js, stream, consumer, &shutdown).await {
                Ok(bound) => Ok(Some((consumer, bound))),
                Err(ReadyError::Cancelled { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        }
    };
    let (Some(events), Some(dlq), Some(results)) = (
        bind(subject::EVENTS_STREAM, subject::SECURITY_EVENTS_CONSUMER).await?,
        bind(subject::DLQ_STREAM, subject::SECURITY_DLQ_CONSUMER).await?,
        bind(subject::RESULTS_STREAM, subject::SECURITY_RESULTS_CONSUMER).await?,
    ) else {
        return Ok(());
    };
    info!("security monitor watching events, DLQ and results");

    let (tx, mut observed) = mpsc::channel::<Observed>(1);
    let work = TaskTracker::new();
    let pull = |(name, consumer), read: Reader| {
        let tx = tx.clone();
        // Stops on shutdown; pull errors are retried inside.
        consume::Pull::new(js.clone(), consumer, Pulse::unobserved(name))
            .concurrency(1)
            .run(shutdown.clone(), work.clone(), move |msg, permit| {
                let tx = tx.clone();
                async move {
                    let disposition = observe(&tx, read(&msg)).await;
                    drop(permit);
                    disposition
                }
            })
    };
    let (events, dlq, results) = (
        pull(events, from_event_msg),
        pull(dlq, from_dlq_msg),
        pull(results, from_result_msg),
    );
    drop(tx);
    let pulls = async {
        tokio::join!(events, dlq, results);
        work.close();
        work.wait().await;
    };
    // The detector's task: ends once every handler (each holds a sender) is gone.
    let detect = async {
        let mut detector = Detector::new(agent.config.detector.clone());
        while let Some((obs, handled)) = observed.recv().await {
            for alert in detector.observe(obs) {
                if let Err(e) = act(agent, &ctx, &alert).await {
                    warn!(error = %format!("{e:#}"), kind = ?alert.kind, source = ?alert.source, "acting on a security alert failed");
                }
            }
            let _ = handled.send(());
        }
    };
    tokio::join!(pulls, detect);
    Ok(())
}

/// Reads one consumer's message as an observation (`None`: nothing to observe).
type Reader = fn(&Message) -> Option<Observation>;

fn from_dlq_msg(msg: &Message) -> Option<Observation> {
    from_dlq(msg.headers.as_ref(), server_time(msg))
}

fn from_event_msg(msg: &Message) -> Option<Observation> {
    from_event(msg.headers.as_ref(), &msg.payload, server_time(msg))
}

fn from_result_msg(msg: &Message) -> Option<Observation> {
    from_result(msg.headers.as_ref(), &msg.payload, server_time(msg))
}

/// Hands `obs` to the detector's task and waits until it is handled: then
/// the message is acknowledged; if the watch stopped first it comes back.
async fn observe(tx: &mpsc::Sender<Observed>, obs: Option<Observation>) -> Disposition {
    let Some(obs) = obs else {
        return Disposition::Ack;
    };
    let (handled, done) = oneshot::channel();
    if tx.send((obs, handled)).await.is_err() || done.await.is_err() {
        return Disposition::Nak(STOPPED_RETRY);
    }
    Disposition::Ack
}

/// Publishes the incident, opens it in KV and quarantines the source when configured.
async fn act(agent: &SecurityMonitor, ctx: &Context, alert: &Alert) -> anyhow::Result<()> {
    let subject_of = alert_subject(alert);
    let incident_id = alert_incident_id(alert);
    warn!(
        kind = ?alert.kind,
        severity = %alert.severity,
        about = %subject_of,
        incident = %incident_id,
        summary = %alert.summary,
        "security alert"
    );
    ctx.emit(
        types::SECURITY_INCIDENT,
        incident_event(ctx, alert, &incident_id),
    )
    .await?;
    let quarantine = alert.source.is_some() && agent.config.auto_quarantine.contains(&alert.kind);
    let mut input = json!({
        "action": if quarantine { "quarantine" } else { "open" },
        "source": subject_of,
        "severity": alert.severity,
        "note": alert.summary,
    });
    if let Some(t) = &alert.tenant {
        input["tenant"] = t.as_str().into();
    }
    if quarantine {
        input["quarantine_minutes"] = agent.config.quarantine_minutes.into();
    }
    let buckets = agent.buckets(ctx).await?;
    let change = Change {
        input: &input,
        incident_id: &incident_id,
        change_id: &incident_id,
        announce_opening: false,
    };
    respond::apply(buckets, ctx, &change).await?;
    agent.count_incident(
        kind_name(alert.kind),
        &alert.severity.to_string(),
        alert.tenant.as_deref(),
    );
    Ok(())
}

/// What an alert is about: its source, else `capability/<name>`.
fn alert_subject(alert: &Alert) -> String {
    match (&alert.source, &alert.capability) {
        (Some(s), _) => s.clone(),
        (None, Some(c)) => format!("capability/{c}"),
        (None, None) => "unknown".to_owned(),
    }
}

fn kind_name(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Flood => "flood",
        AlertKind::Probing => "probing",
        AlertKind::FailureAnomaly => "failure_anomaly",
    }
}

/// `inc-<kind>-<hash of what it is about, with its tenant>-<alert time in ms>`.
fn alert_incident_id(alert: &Alert) -> String {
    let about = match &alert.tenant {
        Some(t) => format!("{t}\u{0}{}", alert_subject(alert)),
        None => alert_subject(alert),
    };
    let hash = about.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!(
        "inc-{}-{hash:016x}-{}",
        kind_name(alert.kind).replace('_', "-"),
        alert.at.timestamp_millis()
    )
}

/// Data of `io.agentry.security.incident` for an alert.
fn incident_event(ctx: &Context, alert: &Alert, incident_id: &str) -> Value {
    let mut data = json!({
        "incident_id": incident_id,
        "kind": kind_name(alert.kind),
        "severity": alert.severity,
        "summary": alert.summary,
        "evidence": alert.evidence,
        "detected_at": alert.at,
        "agent_id": ctx.agent_id().as_str(),
    });
    if let Some(s) = &alert.source {
        data["source"] = s.as_str().into();
    }
    if let Some(t) = &alert.tenant {
        data["tenant"] = t.as_str().into();
    }
    if let Some(c) = &alert.capability {
        data["capability"] = c.as_str().into();
    }
    data
}

fn header_str<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers?
        .get(name)
        .map(|v| v.as_str())
        .filter(|v| !v.is_empty())
}

/// A dead-lettered rejection as an observation (`None` for task failures
/// and entries without a reason).
fn from_dlq(headers: Option<&HeaderMap>, at: DateTime<Utc>) -> Option<Observation> {
    let reason = header_str(headers, header::DLQ_REASON)?;
    if !Reason::REJECTIONS.iter().any(|r| r.as_str() == reason) {
        return None;
    }
    // The tenant comes from the subject the request arrived on (contract 4).
    let tenant = header_str(headers, header::DLQ_SUBJECT)
        .and_then(|s| subject::tenant_of_request(s).ok().flatten())
        .map(|t| t.as_str().to_owned());
    Some(Observation {
        at,
        tenant,
        source: header_str(headers, header::DLQ_SOURCE).map(str::to_owned),
        kind: ObservationKind::Rejected {
            reason: reason.to_owned(),
        },
    })
}

/// An accepted request (`io.agentry.request.accepted`) as an observation.
fn from_event(
    headers: Option<&HeaderMap>,
    payload: &[u8],
    at: DateTime<Utc>,
) -> Option<Observation> {
    let decoded = event::decode(headers, payload, &Limits::default()).ok()?;
    if decoded.event.ty() != types::REQUEST_ACCEPTED {
        return None;
    }
    let data = event::data_json(&decoded.event).ok()?;
    let source = data["source"].as_str().filter(|s| !s.is_empty())?;
    Some(Observation {
        at,
        tenant: data["tenant"].as_str().map(str::to_owned),
        source: Some(source.to_owned()),
        kind: ObservationKind::Request,
    })
}

/// A task result as an observation of its capability's outcome.
fn from_result(
    headers: Option<&HeaderMap>,
    payload: &[u8],
    at: DateTime<Utc>,
) -> Option<Observation> {
    let decoded = match event::decode(headers, payload, &Limits::default()) {
        Ok(d) => d,
        Err(e) => {
            debug!(error = %e, "result is not a CloudEvent, ignored");
            return None;
        }
    };
    let failed = match decoded.event.ty() {
        types::TASK_COMPLETED => false,
        types::TASK_FAILED => true,
        _ => return None,
    };
    let data = event::data_json(&decoded.event).ok()?;
    let capability = data["capability"]
        .as_str()
        .filter(|c| !c.is_empty())?
        .to_owned();
    Some(Observation {
        at,
        source: None,
        tenant: None,
        kind: if failed {
            ObservationKind::TaskFailed { capability }
        } else {
            ObservationKind::TaskCompleted { capability }
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use agentry::event::Mode;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_741_514_400, 0).unwrap()
    }

    /// DLQ rejections become `Rejected` with the header's source; task failures are skipped.
    #[test]
    fn dlq_entries() {
        let mut h = HeaderMap::new();
        h.insert(header::DLQ_REASON, "unknown_type");
        h.insert(header::DLQ_SOURCE, "/attacker");
        let obs = from_dlq(Some(&h), at()).unwrap();
        assert_eq!(obs.source.as_deref(), Some("/attacker"));
        assert_eq!(
            obs.kind,
            ObservationKind::Rejected {
                reason: "unknown_type".into()
            }
        );
        let mut h = HeaderMap::new();
        h.insert(header::DLQ_REASON, "task_failed");
        assert!(from_dlq(Some(&h), at()).is_none());
        assert!(from_dlq(None, at()).is_none());
    }

    /// Accepted requests and task results are read from their CloudEvents.
    #[test]
    fn events_and_results() {
        let ev = event::new_event(
            "e1",
            "/agentry/engine",
            types::REQUEST_ACCEPTED,
            json!({"request_id": "r1", "type": "io.agentry.task.requested", "source": "/clients/a"}),
        );
        let (h, body) = event::encode(&ev, Mode::Binary).unwrap();
        let obs = from_event(Some(&h), &body, at()).unwrap();
        assert_eq!(obs.source.as_deref(), Some("/clients/a"));
        assert_eq!(obs.kind, ObservationKind::Request);

        let other = event::new_event("e2", "/x", types::SECURITY_INCIDENT, json!({}));
        let (h, body) = event::encode(&other, Mode::Binary).unwrap();
        assert!(from_event(Some(&h), &body, at()).is_none());

        let res = event::new_event(
            "e3",
            "/agents/x",
            types::TASK_FAILED,
            json!({"request_id": "r1", "error": {"code": "permanent", "message": "m"}, "capability": "echo"}),
        );
        let (h, body) = event::encode(&res, Mode::Structured).unwrap();
        assert_eq!(
            from_result(Some(&h), &body, at()).unwrap().kind,
            ObservationKind::TaskFailed {
                capability: "echo".into()
            }
        );
        let rej = event::new_event(
            "e4",
            "/e",
            types::REQUEST_REJECTED,
            json!({"request_id": "r1"}),
        );
        let (h, body) = event::encode(&rej, Mode::Binary).unwrap();
        assert!(from_result(Some(&h), &body, at()).is_none());
    }

    /// Incident ids are valid ids and differ by kind, subject and time.
    #[test]
    fn alert_ids() {
        let alert = |kind, source: Option<&str>, cap: Option<&str>, secs| Alert {
            kind,
            severity: crate::Severity::Medium,
            source: source.map(str::to_owned),
            tenant: None,
            capability: cap.map(str::to_owned),
            summary: "s".into(),
            evidence: vec![],
            at: at() + chrono::Duration::seconds(secs),
            count: 5,
            window_s: 60,
        };
        let a = alert_incident_id(&alert(AlertKind::Probing, Some("/attacker"), None, 0));
        let re = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        assert!(re(&a), "{a}");
        assert!(a.starts_with("inc-probing-"));
        assert_ne!(
            a,
            alert_incident_id(&alert(AlertKind::Flood, Some("/attacker"), None, 0))
        );
        assert_ne!(
            a,
            alert_incident_id(&alert(AlertKind::Probing, Some("/other"), None, 0))
        );
        assert_ne!(
            a,
            alert_incident_id(&alert(AlertKind::Probing, Some("/attacker"), None, 1))
        );
        let f = alert(AlertKind::FailureAnomaly, None, Some("echo"), 0);
        assert_eq!(alert_subject(&f), "capability/echo");
        assert!(alert_incident_id(&f).starts_with("inc-failure-anomaly-"));
    }
}
