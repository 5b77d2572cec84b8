//! Idempotency beyond the duplicate window: `AGENTRY_REQUESTS` drops a
//! resubmitted request id only within its `duplicate_window`; the results
//! stream keeps each request's one result far longer. Before a task or a
//! workflow is started, the engine looks its result up there (one direct
//! get); a request that already has one is answered with it and runs nothing.

use agentry::event::header;
use agentry::id::RequestId;
use agentry::publish::{self, PublishError, Published};
use agentry::subject::{self, Tenant};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream::DirectGetErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum AnsweredError {
    #[error("looking up the stored result of {subject} failed")]
    Lookup {
        subject: String,
        #[source]
        source: jetstream::stream::DirectGetError,
    },
    #[error("opening the results stream failed")]
    Stream(#[source] jetstream::context::GetStreamError),
    #[error("answering again with the stored result failed")]
    Replay(#[source] PublishError),
}

/// Answers the request again with its stored result, if it has one:
/// `Ok(true)` when it had one (nothing must run), `Ok(false)` when not.
///
/// The stored result is republished to the same subject with
/// `Nats-Expected-Last-Subject-Sequence: 0`: live subscribers receive it,
/// the stream refuses to store it twice.
pub async fn replay_stored(
    js: &jetstream::Context,
    tenant: Option<&Tenant>,
    id: &RequestId,
) -> Result<bool, AnsweredError> {
    let to = subject::results_for(tenant, id);
    let stream = js
        .get_stream_no_info(subject::RESULTS_STREAM)
        .await
        .map_err(AnsweredError::Stream)?;
    let stored = match stream.direct_get_last_for_subject(to.clone()).await {
        Ok(m) => m,
        Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => return Ok(false),
        Err(source) => {
            return Err(AnsweredError::Lookup {
                subject: to,
                source,
            });
        }
    };
    let mut headers = HeaderMap::new();
    for (name, values) in stored.headers.iter() {
        let n: &str = name.as_ref();
        if n.starts_with("Nats-") {
            continue;
        }
        for v in values {
            headers.append(n, v.as_str());
        }
    }
    headers.insert(header::EXPECTED_LAST_SUBJECT_SEQ, "0");
    match publish::acked(js, &to, headers, stored.payload).await {
        Ok(Published::DuplicateRefused | Published::Stored) => Ok(true),
        Err(e) => Err(AnsweredError::Replay(e)),
    }
}
