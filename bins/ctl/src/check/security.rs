//! Security rows: credentials are required, anonymous connections are
//! refused, and these credentials cannot delete streams. Each probe tells
//! "denied" (what we want) from "broken" (the probe could not tell) by the
//! error's kind, never by its text.

use std::error::Error as _;
use std::time::Duration;

use async_nats::jetstream::context::{
    AccountError, DeleteStreamError, DeleteStreamErrorKind, RequestError,
};
use async_nats::jetstream::{self, ErrorCode, context::RequestErrorKind};

use super::{Row, Verdict, row};
use crate::Cli;

/// What a probe of a forbidden operation found.
#[derive(Debug)]
enum Probe {
    /// The server refused it.
    Denied,
    /// The operation was allowed.
    Allowed,
    /// Something else went wrong: the probe says nothing about permissions.
    Broken(ProbeError),
}

/// Why a probe could not tell denied from allowed; the cause is kept.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("cannot prepare a connection without credentials")]
    Options(#[source] agentry::connect::ConnectError),
    #[error("connecting without credentials: no answer within 5 s")]
    ConnectTimeout,
    #[error("connecting without credentials")]
    Connect(#[source] async_nats::ConnectError),
    #[error("JetStream account info without credentials")]
    Account(#[source] AccountError),
    #[error("stream delete")]
    Delete(#[source] DeleteStreamError),
    #[error("stream delete unanswered and the JetStream API does not answer either")]
    Unanswered(#[source] AccountError),
}

/// The row's text for a broken probe: what failed and its causes.
fn broken(e: &ProbeError) -> String {
    format!("probe broken, cannot tell: {}", agentry::error::chain(e))
}

pub async fn security(cli: &Cli, dev: bool, rows: &mut Vec<Row>) {
    let cfg = cli.nats_config();
    let auth = cfg.creds.is_some()
        || cfg.user.is_some()
        || cfg.token.is_some()
        || cfg.nkey.is_some()
        || cfg.tls_cert.is_some();
    if !auth {
        let (verdict, detail) = if dev {
            (Verdict::Warn, "no NATS credentials (accepted with --dev)")
        } else {
            (
                Verdict::Fail,
                "no NATS credentials configured: a production system requires them (see nats/README.md; --dev accepts this on a development server)",
            )
        };
        rows.push(row("security", "authentication", verdict, detail));
        return;
    }
    let (verdict, detail) = match anonymous(&cfg).await {
        Probe::Denied => (Verdict::Pass, "anonymous connection refused".to_owned()),
        Probe::Allowed => (
            Verdict::Fail,
            "anonymous connection accepted and the JetStream API answers it".to_owned(),
        ),
        Probe::Broken(e) => (Verdict::Fail, broken(&e)),
    };
    rows.push(row("security", "unauthenticated access", verdict, detail));

    let me = match agentry::connect::connect_once(&cfg, "agentry-check-security").await {
        Ok(c) => c,
        Err(e) => {
            rows.push(row(
                "security",
                "configured credentials",
                Verdict::Fail,
                e.to_string(),
            ));
            return;
        }
    };
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(me);
    let (verdict, detail) = match stream_delete(&js).await {
        Probe::Denied => (Verdict::Pass, "refused".to_owned()),
        Probe::Allowed => (
            Verdict::Warn,
            "these credentials may delete streams (admin): run check as an operator role to test least privilege".to_owned(),
        ),
        Probe::Broken(e) => (Verdict::Fail, broken(&e)),
    };
    rows.push(row(
        "security",
        "forbidden operation (stream delete)",
        verdict,
        detail,
    ));
}

/// Connects without credentials (same URL and TLS settings).
async fn anonymous(cfg: &agentry::config::Nats) -> Probe {
    let anon = agentry::config::Nats {
        creds: None,
        user: None,
        password: None,
        token: None,
        nkey: None,
        tls_cert: None,
        tls_key: None,
        ..cfg.clone()
    };
    let url = anon.resolved_url();
    let (opts, servers) = match (
        agentry::connect::options(&anon, "agentry-check-anonymous", None).await,
        agentry::connect::servers(&url),
    ) {
        (Ok(o), Ok(s)) => (o, s),
        (Err(e), _) | (_, Err(e)) => return Probe::Broken(ProbeError::Options(e)),
    };
    let connected = tokio::time::timeout(Duration::from_secs(5), opts.connect(servers)).await;
    let client = match connected {
        Err(_) => return Probe::Broken(ProbeError::ConnectTimeout),
        Ok(Err(e)) => {
            return match e.kind() {
                async_nats::ConnectErrorKind::AuthorizationViolation
                | async_nats::ConnectErrorKind::Authentication => Probe::Denied,
                // A server that demands a client certificate ends the TLS handshake.
                async_nats::ConnectErrorKind::Tls if cfg.tls_cert.is_some() => Probe::Denied,
                _ => Probe::Broken(ProbeError::Connect(e)),
            };
        }
        Ok(Ok(c)) => c,
    };
    // Connected (a no_auth_user): it must not reach the JetStream API.
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client);
    match js.query_account().await {
        Ok(_) => Probe::Allowed,
        Err(e) => match e.kind() {
            jetstream::context::AccountErrorKind::TimedOut => Probe::Denied,
            jetstream::context::AccountErrorKind::JetStream(_)
            | jetstream::context::AccountErrorKind::JetStreamUnavailable => Probe::Denied,
            _ => Probe::Broken(ProbeError::Account(e)),
        },
    }
}

/// Tries to delete a stream that does not exist: "not found" means the
/// request was allowed; a request that gets no answer while an allowed
/// request (account info) does means it was denied.
async fn stream_delete(js: &jetstream::Context) -> Probe {
    let err = match js.delete_stream("AGENTRY_CHECK_NO_SUCH_STREAM").await {
        Ok(_) => return Probe::Allowed,
        Err(e) => e,
    };
    match err.kind() {
        DeleteStreamErrorKind::JetStream(api)
            if api.error_code() == ErrorCode::STREAM_NOT_FOUND =>
        {
            Probe::Allowed
        }
        DeleteStreamErrorKind::Request => {
            let kind = err
                .source()
                .and_then(|s| s.downcast_ref::<RequestError>())
                .map(|r| r.kind());
            match kind {
                Some(RequestErrorKind::TimedOut) | Some(RequestErrorKind::NoResponders) => {
                    // Unanswered: denied if the account API answers this connection.
                    match js.query_account().await {
                        Ok(_) => Probe::Denied,
                        Err(e) => Probe::Broken(ProbeError::Unanswered(e)),
                    }
                }
                _ => Probe::Broken(ProbeError::Delete(err)),
            }
        }
        _ => Probe::Broken(ProbeError::Delete(err)),
    }
}
