//! Idempotency beyond the duplicate window: `AGENTRY_REQUESTS` drops a
//! resubmitted request id only within its `duplicate_window`; the results
//! stream keeps each request's one result far longer. Before a task or a
//! workflow is started, the engine looks its result up there; a request
//! that already has one is answered with it and runs nothing.
//!
//! A lookup begun while no other is under way is one direct get, sent from
//! the request's own task: at one request in flight the latency path has
//! no extra hop. The others are batched: [`Lookups`] sends one
//! multi-subject direct get (`multi_last`, nats-server 2.11 and later) for
//! every lookup waiting when a batch goes out, up to [`MAX_BATCH`]
//! subjects, one batch at a time: a lookup that arrives while a batch is
//! out goes in the next. Under load one server request answers many (at
//! 256 requests in flight, batches of tens). A server that refuses the
//! batched form, or an answer cut short by the server's byte limit, falls
//! back to one direct get per subject.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentry::event::header;
use agentry::publish::{self, PublishError, Published};
use async_nats::jetstream::{self, stream::DirectGetErrorKind};
use async_nats::{HeaderMap, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::MaybeDone;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::warn;

/// Most subjects in one batched lookup (the server allows 1,024).
const MAX_BATCH: usize = 256;
/// Most batches awaiting their answer at once. One: more batches out
/// means smaller ones (measured: four in flight saved nothing over a single
/// direct get per request at 256 in flight; one cut the engine's CPU per
/// task by about a sixth).
const MAX_IN_FLIGHT: usize = 1;
/// How long a batch may wait for its answer (the JetStream API's default).
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a stored result could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("subscribing to the lookup replies failed")]
    Subscribe(#[source] async_nats::SubscribeError),
    #[error("the lookup service has stopped")]
    Stopped,
    #[error("sending the batched lookup failed")]
    Send(#[source] async_nats::PublishError),
    #[error("no answer to the batched lookup within {0:?}")]
    TimedOut(Duration),
    #[error("opening the results stream failed")]
    Stream(#[source] jetstream::context::GetStreamError),
    #[error("looking up the stored result of {subject} failed")]
    Single {
        subject: String,
        #[source]
        source: jetstream::stream::DirectGetError,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AnsweredError {
    #[error("looking up the stored result failed")]
    Lookup(#[source] Arc<LookupError>),
    #[error("answering again with the stored result failed")]
    Replay(#[source] PublishError),
}

/// A result found in `AGENTRY_RESULTS`.
#[derive(Clone, Debug)]
pub struct Stored {
    headers: Option<HeaderMap>,
    payload: Bytes,
}

type Answer = Result<Option<Stored>, Arc<LookupError>>;

struct Waiting {
    subject: String,
    answer: oneshot::Sender<Answer>,
}

/// Hands lookups to the batching task; cheap to clone. The task ends when
/// every handle is dropped or the connection closes.
#[derive(Clone)]
pub struct Lookups {
    tx: mpsc::UnboundedSender<Waiting>,
    js: jetstream::Context,
    /// Lookups begun and not yet answered (or dropped).
    busy: Arc<AtomicUsize>,
}

/// A lookup under way: [`Pending::start`] sends it, [`Pending::answer`]
/// waits for it.
pub struct Pending {
    inner: Inner,
    _busy: Busy,
}

enum Inner {
    /// Sent by the batching task.
    Batched(oneshot::Receiver<Answer>),
    /// The only lookup under way: one direct get from the caller's task,
    /// without the hops to and from the batching task.
    Single(MaybeDone<Pin<Box<dyn Future<Output = Answer> + Send>>>),
}

impl Pending {
    /// Sends the request of a single lookup now, so that its round trip
    /// overlaps the caller's work (a batched one is already on its way).
    pub async fn start(&mut self) {
        if let Inner::Single(f) = &mut self.inner {
            let _ = futures::poll!(Pin::new(f));
        }
    }

    /// The stored result (`None` when the request has none).
    pub async fn answer(self) -> Result<Option<Stored>, AnsweredError> {
        let answer = match self.inner {
            Inner::Batched(rx) => rx.await.unwrap_or(Err(Arc::new(LookupError::Stopped))),
            Inner::Single(mut f) => {
                (&mut f).await;
                Pin::new(&mut f)
                    .take_output()
                    .unwrap_or(Err(Arc::new(LookupError::Stopped)))
            }
        };
        answer.map_err(AnsweredError::Lookup)
    }
}

/// Counts a lookup as under way until dropped.
struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Lookups {
    /// Subscribes to the replies and starts the batching task.
    pub async fn start(js: &jetstream::Context) -> Result<Self, LookupError> {
        let client = js.client();
        let prefix = client.new_inbox();
        let replies = client
            .subscribe(format!("{prefix}.*"))
            .await
            .map_err(LookupError::Subscribe)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let batcher = Batcher {
            js: js.clone(),
            api: agentry::subject::direct_get_api(agentry::subject::RESULTS_STREAM),
            prefix,
            in_flight: HashMap::new(),
            next_token: 0,
            refused_logged: false,
        };
        // Ends when every `Lookups` is dropped or the subscription closes.
        tokio::spawn(batcher.run(rx, replies));
        Ok(Self {
            tx,
            js: js.clone(),
            busy: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Begins looking up the stored result on `subject` (a result subject):
    /// alone, as one direct get; while others are under way, in the next
    /// batch. The number under way is bounded by the callers (the engine's
    /// permits).
    pub fn begin(&self, subject: String) -> Pending {
        let busy = Busy(self.busy.clone());
        if self.busy.fetch_add(1, Ordering::AcqRel) == 0 {
            let js = self.js.clone();
            let fut: Pin<Box<dyn Future<Output = Answer> + Send>> =
                Box::pin(async move { get_one(&js, &subject).await.map_err(Arc::new) });
            return Pending {
                inner: Inner::Single(MaybeDone::Future(fut)),
                _busy: busy,
            };
        }
        let (answer, rx) = oneshot::channel();
        // A stopped task drops the sender: the caller sees `Stopped`.
        let _ = self.tx.send(Waiting { subject, answer });
        Pending {
            inner: Inner::Batched(rx),
            _busy: busy,
        }
    }
}

struct Batch {
    waiting: Vec<Waiting>,
    found: HashMap<String, Stored>,
    deadline: Instant,
}

/// How a batch ended.
enum End {
    /// The server sent every match: a subject not found has no result.
    Complete,
    /// The answer was cut short or refused: look the rest up one by one.
    Partial,
    Failed(Arc<LookupError>),
}

struct Batcher {
    js: jetstream::Context,
    api: String,
    prefix: String,
    in_flight: HashMap<u64, Batch>,
    next_token: u64,
    refused_logged: bool,
}

impl Batcher {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Waiting>, mut replies: Subscriber) {
        loop {
            let deadline = self.in_flight.values().map(|b| b.deadline).min();
            tokio::select! {
                biased;
                m = replies.next() => match m {
                    Some(m) => self.on_reply(m),
                    None => return,
                },
                _ = sleep_until(deadline), if deadline.is_some() => self.expire(),
                w = rx.recv(), if self.in_flight.len() < MAX_IN_FLIGHT => match w {
                    Some(first) => {
                        let mut waiting = vec![first];
                        while waiting.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(w) => waiting.push(w),
                                Err(_) => break,
                            }
                        }
                        self.send(waiting).await;
                    }
                    None => return,
                },
            }
        }
    }

    async fn send(&mut self, waiting: Vec<Waiting>) {
        self.next_token += 1;
        let token = self.next_token;
        let mut subjects: Vec<&str> = waiting.iter().map(|w| w.subject.as_str()).collect();
        subjects.sort_unstable();
        subjects.dedup();
        let body = serde_json::json!({ "multi_last": subjects }).to_string();
        let reply = format!("{}.{token}", self.prefix);
        let sent = self
            .js
            .client()
            .publish_with_reply(self.api.clone(), reply, body.into())
            .await;
        let batch = Batch {
            waiting,
            found: HashMap::new(),
            deadline: Instant::now() + TIMEOUT,
        };
        match sent {
            Ok(()) => {
                self.in_flight.insert(token, batch);
            }
            Err(e) => self.finish(batch, End::Failed(Arc::new(LookupError::Send(e)))),
        }
    }

    fn on_reply(&mut self, m: async_nats::Message) {
        let token = m
            .subject
            .as_str()
            .strip_prefix(self.prefix.as_str())
            .and_then(|t| t.strip_prefix('.'))
            .and_then(|t| t.parse::<u64>().ok());
        // A reply to a batch that already timed out is ignored.
        let Some((token, batch)) = token.and_then(|t| self.in_flight.get_mut(&t).map(|b| (t, b)))
        else {
            return;
        };
        let end = match m.status.map(|s| s.as_u16()) {
            None | Some(200) => {
                let subject = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(header::NATS_SUBJECT))
                    .map(|v| v.as_str().to_owned());
                if let Some(s) = subject {
                    batch.found.insert(
                        s,
                        Stored {
                            headers: m.headers,
                            payload: m.payload,
                        },
                    );
                }
                return;
            }
            // End of batch; messages still pending mean the server's byte
            // limit cut the answer short.
            Some(204) => {
                let pending = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(header::NATS_NUM_PENDING))
                    .and_then(|v| v.as_str().parse::<u64>().ok())
                    .unwrap_or(0);
                if pending == 0 {
                    End::Complete
                } else {
                    End::Partial
                }
            }
            // No subject of the batch has a stored result.
            Some(404) => End::Complete,
            Some(code) => {
                if !self.refused_logged {
                    self.refused_logged = true;
                    warn!(
                        status = code,
                        description = m.description.as_deref().unwrap_or(""),
                        "the server refused a batched direct get (nats-server 2.11 or later \
                         needed); looking results up one by one"
                    );
                }
                End::Partial
            }
        };
        if let Some(batch) = self.in_flight.remove(&token) {
            self.finish(batch, end);
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, b)| b.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            if let Some(b) = self.in_flight.remove(&t) {
                self.finish(b, End::Failed(Arc::new(LookupError::TimedOut(TIMEOUT))));
            }
        }
    }

    fn finish(&self, batch: Batch, end: End) {
        let Batch {
            waiting, mut found, ..
        } = batch;
        for w in waiting {
            let answer = match (&end, found.remove(&w.subject)) {
                (_, Some(s)) => {
                    // The same subject twice in one batch: both get it.
                    found.insert(w.subject.clone(), s.clone());
                    Ok(Some(s))
                }
                (End::Complete, None) => Ok(None),
                (End::Failed(e), None) => Err(e.clone()),
                (End::Partial, None) => {
                    tokio::spawn(single(self.js.clone(), w));
                    continue;
                }
            };
            let _ = w.answer.send(answer);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d).await;
    }
}

/// One direct get for one subject (the fallback).
async fn single(js: jetstream::Context, w: Waiting) {
    let answer = get_one(&js, &w.subject).await.map_err(Arc::new);
    let _ = w.answer.send(answer);
}

async fn get_one(js: &jetstream::Context, subject: &str) -> Result<Option<Stored>, LookupError> {
    let stream = js
        .get_stream_no_info(agentry::subject::RESULTS_STREAM)
        .await
        .map_err(LookupError::Stream)?;
    match stream.direct_get_last_for_subject(subject).await {
        Ok(m) => Ok(Some(Stored {
            headers: Some(m.headers),
            payload: m.payload,
        })),
        Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => Ok(None),
        Err(source) => Err(LookupError::Single {
            subject: subject.to_owned(),
            source,
        }),
    }
}

/// Answers the request again with its stored result: republished to the
/// same subject with `Nats-Expected-Last-Subject-Sequence: 0`, so live
/// subscribers receive it and the stream refuses to store it twice.
pub async fn replay(
    js: &jetstream::Context,
    to: &str,
    stored: Stored,
) -> Result<(), AnsweredError> {
    let mut headers = HeaderMap::new();
    for (name, values) in stored.headers.iter().flat_map(|h| h.iter()) {
        let n: &str = name.as_ref();
        if n.starts_with("Nats-") {
            continue;
        }
        for v in values {
            headers.append(n, v.as_str());
        }
    }
    headers.insert(header::EXPECTED_LAST_SUBJECT_SEQ, "0");
    match publish::acked(js, to, headers, stored.payload).await {
        Ok(Published::DuplicateRefused | Published::Stored) => Ok(()),
        Err(e) => Err(AnsweredError::Replay(e)),
    }
}
