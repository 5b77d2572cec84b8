//! A client connected as a tenant's user (`client_<tenant>`), the way
//! production clients connect: requests on `agentry.requests.<tenant>`,
//! results on `agentry.results.<tenant>.<id>`.

use std::time::Duration;

use agentry::client::{self, Outcome, SubmitError};
use agentry::event::Mode;
use agentry::id::RequestId;
use agentry::subject::{self, Tenant};
use async_nats::jetstream;
use cloudevents::Event;

/// A client connected as a tenant's user: submits on
/// `agentry.requests.<tenant>`, reads `agentry.results.<tenant>.<id>`.
#[derive(Clone)]
pub struct TenantClient {
    pub tenant: Tenant,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

impl TenantClient {
    /// Publishes `event` (binary mode) and waits up to `timeout` for its result.
    pub async fn submit(&self, event: &Event, timeout: Duration) -> Result<Outcome, SubmitError> {
        self.submit_mode(event, Mode::Binary, timeout).await
    }

    pub async fn submit_mode(
        &self,
        event: &Event,
        mode: Mode,
        timeout: Duration,
    ) -> Result<Outcome, SubmitError> {
        client::submit_as(
            &self.client,
            &self.js,
            Some(&self.tenant),
            event,
            mode,
            timeout,
        )
        .await
    }

    /// Publishes `event` and waits for the PubAck only.
    pub async fn publish(&self, event: &Event, mode: Mode) -> Result<(), SubmitError> {
        client::publish_request_as(&self.js, Some(&self.tenant), event, mode).await
    }

    /// The stored result of request `id`, if any.
    pub async fn fetch_result(&self, id: &RequestId) -> Option<Outcome> {
        client::fetch_result_as(&self.js, Some(&self.tenant), id).await
    }

    /// `agentry.requests.<tenant>`.
    pub fn requests_subject(&self) -> String {
        subject::requests_for(Some(&self.tenant))
    }

    /// `agentry.results.<tenant>.<id>`.
    pub fn results_subject(&self, id: &RequestId) -> String {
        subject::results_for(Some(&self.tenant), id)
    }

    /// The subject filter of all of this tenant's results.
    pub fn results_all(&self) -> String {
        format!("{}.{}.>", subject::RESULTS_PREFIX, self.tenant)
    }
}
