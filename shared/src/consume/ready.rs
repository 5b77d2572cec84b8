//! Waiting for what `agentry setup` creates. Components may start before
//! setup has run (or while NATS restarts): they retry with backoff until
//! the stream, consumer or bucket exists, and give up only on shutdown or
//! on an error that retrying cannot fix.

use std::fmt::Display;
use std::future::Future;

use async_nats::jetstream::{self, consumer::PullConsumer, kv};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Why waiting for something ended without it.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError<E: std::error::Error + 'static> {
    #[error("shut down before {what} was available")]
    Cancelled { what: String },
    #[error("{what} is not available")]
    Failed {
        what: String,
        #[source]
        source: E,
    },
}

/// Calls `attempt` until it succeeds, backing off between tries
/// ([`super::Delays`]); an error for which `transient` is `false` ends
/// the wait at once.
pub async fn retry<T, E, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    mut attempt: F,
    transient: impl Fn(&E) -> bool,
) -> Result<T, ReadyError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error + Display + 'static,
{
    let mut delays = super::Delays::new();
    let mut tries = 0u32;
    loop {
        let res = tokio::select! {
            _ = shutdown.cancelled() => return Err(ReadyError::Cancelled { what: what.to_owned() }),
            r = attempt() => r,
        };
        match res {
            Ok(v) => return Ok(v),
            Err(e) if !transient(&e) => {
                return Err(ReadyError::Failed {
                    what: what.to_owned(),
                    source: e,
                });
            }
            Err(e) => {
                tries += 1;
                let delay = delays.next_delay();
                warn!(what, tries, error = %crate::error::Chain(&e), retry_in_ms = delay.as_millis() as u64, "not available yet, retrying");
                if !super::pause(shutdown, delay).await {
                    return Err(ReadyError::Cancelled {
                        what: what.to_owned(),
                    });
                }
            }
        }
    }
}

/// Why a consumer or bucket could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("stream {stream}")]
    Stream {
        stream: String,
        #[source]
        source: jetstream::context::GetStreamError,
    },
    #[error("consumer {stream}/{consumer}")]
    Consumer {
        stream: String,
        consumer: String,
        /// The client reports this lookup's failure untyped.
        #[source]
        source: async_nats::Error,
    },
    #[error("bucket {bucket}")]
    Bucket {
        bucket: String,
        #[source]
        source: jetstream::context::KeyValueError,
    },
}

/// The durable pull consumer `consumer` of `stream`, once both exist.
pub async fn consumer(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
    shutdown: &CancellationToken,
) -> Result<PullConsumer, ReadyError<LookupError>> {
    let what = format!("consumer {stream}/{consumer} (created by `agentry setup`)");
    retry(
        &what,
        shutdown,
        || async {
            let st = js
                .get_stream_no_info(stream)
                .await
                .map_err(|source| LookupError::Stream {
                    stream: stream.to_owned(),
                    source,
                })?;
            st.get_consumer(consumer)
                .await
                .map_err(|source| LookupError::Consumer {
                    stream: stream.to_owned(),
                    consumer: consumer.to_owned(),
                    source,
                })
        },
        |_| true,
    )
    .await
}

/// The KV bucket `bucket`, once it exists.
pub async fn bucket(
    js: &jetstream::Context,
    bucket: &str,
    shutdown: &CancellationToken,
) -> Result<kv::Store, ReadyError<LookupError>> {
    retry(
        &format!("bucket {bucket} (created by `agentry setup`)"),
        shutdown,
        || async {
            js.get_key_value(bucket)
                .await
                .map_err(|source| LookupError::Bucket {
                    bucket: bucket.to_owned(),
                    source,
                })
        },
        |_| true,
    )
    .await
}
