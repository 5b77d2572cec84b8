//! `/health`, `/ready` and `/metrics`. One [`Observer`] collects the metric
//! registries and readiness checks of every component in a process, so
//! `agentry up` serves them all from one address and readiness is the
//! conjunction of every component's checks.
//!
//! Loops register a [`Pulse`]: `/ready` fails while a loop is not running or
//! its last pull failed; `/health` fails while a loop has been busy (neither
//! waiting for input nor back for its next item) for longer than the stall
//! bound: the process is wedged and should be restarted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::BoxFuture;
use prometheus::{Encoder, IntGauge, Registry, TextEncoder};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use crate::liveness::{LoopState, Pulse, Tracked};

/// One readiness check: `Ok` when ready, `Err(why)` otherwise.
pub type CheckFn = Arc<dyn Fn() -> BoxFuture<'static, Result<(), NotReady>> + Send + Sync>;

/// Why a readiness check fails (shown with its causes in `/ready`).
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("not yet")]
    NotYet,
    #[error("{0:?}")]
    Nats(async_nats::connection::State),
    #[error("unavailable")]
    Unavailable(#[source] async_nats::Error),
    #[error("invalid url")]
    RedisUrl(#[source] redis::RedisError),
    #[error("unreachable")]
    Unreachable(#[source] redis::RedisError),
    #[error("PING failed")]
    Ping(#[source] redis::RedisError),
}

/// A readiness flag a component sets once its consumers are bound.
#[derive(Clone, Default)]
pub struct Flag(Arc<AtomicBool>);

impl Flag {
    pub fn set(&self, v: bool) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Default bound on how long a loop may be busy before `/health` fails.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(300);

struct Inner {
    registries: Vec<Registry>,
    checks: Vec<(String, CheckFn)>,
    loops: Vec<Pulse>,
    stall_after: Duration,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            registries: Vec::new(),
            checks: Vec::new(),
            loops: Vec::new(),
            stall_after: DEFAULT_STALL_AFTER,
        }
    }
}

/// Registries and readiness checks of the components in this process.
#[derive(Clone)]
pub struct Observer {
    inner: Arc<Mutex<Inner>>,
    process: Registry,
    ready_gauge: IntGauge,
}

impl Default for Observer {
    fn default() -> Self {
        Self::new()
    }
}

impl Observer {
    pub fn new() -> Self {
        let process = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = process.register(Box::new(pc));
        }
        let ready_gauge = IntGauge::new("agentry_ready", "1 while every readiness check passes")
            .expect("valid metric");
        let _ = process.register(Box::new(ready_gauge.clone()));
        // Spans of failed exports (one counter per process, 0 with export off).
        let _ = process.register(Box::new(crate::trace::dropped_counter()));
        Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            process,
            ready_gauge,
        }
    }

    pub fn add_registry(&self, r: Registry) {
        if let Ok(mut g) = self.inner.lock() {
            g.registries.push(r);
        }
    }

    pub fn add_check(&self, name: impl Into<String>, f: CheckFn) {
        if let Ok(mut g) = self.inner.lock() {
            g.checks.push((name.into(), f));
        }
    }

    /// Sets how long a loop may stay busy before `/health` reports the
    /// process wedged.
    pub fn set_stall_after(&self, d: Duration) {
        if let Ok(mut g) = self.inner.lock() {
            g.stall_after = d;
        }
    }

    /// Registers a loop: `/ready` needs it running and not failing,
    /// `/health` needs it not stalled.
    pub fn add_loop(&self, name: impl Into<String>) -> Pulse {
        let pulse = Pulse::named(name.into());
        if let Ok(mut g) = self.inner.lock() {
            g.loops.push(pulse.clone());
        }
        pulse
    }

    /// Adds a check that a KV bucket answers (its stream info is readable).
    pub fn add_kv(&self, js: async_nats::jetstream::Context, bucket: &'static str) {
        self.add_check(
            format!("kv {bucket}"),
            Arc::new(move || {
                let js = js.clone();
                Box::pin(async move {
                    let kv = js
                        .get_key_value(bucket)
                        .await
                        .map_err(|e| NotReady::Unavailable(e.into()))?;
                    kv.status()
                        .await
                        .map(|_| ())
                        .map_err(|e| NotReady::Unavailable(e.into()))
                })
            }),
        );
    }

    /// Adds a check that Redis answers PING within the check bound.
    pub fn add_redis(&self, name: impl Into<String>, url: &str) {
        let client = redis::Client::open(url);
        self.add_check(
            name,
            Arc::new(move || {
                let client = client.clone();
                Box::pin(async move {
                    let client = client.map_err(NotReady::RedisUrl)?;
                    let mut conn = client
                        .get_multiplexed_async_connection()
                        .await
                        .map_err(NotReady::Unreachable)?;
                    redis::cmd("PING")
                        .query_async::<String>(&mut conn)
                        .await
                        .map(|_| ())
                        .map_err(NotReady::Ping)
                })
            }),
        );
    }

    /// Every loop's state, by name.
    pub fn loops(&self) -> Vec<(String, LoopState)> {
        match self.inner.lock() {
            Ok(g) => g
                .loops
                .iter()
                .map(|p| (p.name().to_owned(), p.state(g.stall_after)))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Liveness: which loops are stalled (empty when healthy).
    pub fn health(&self) -> Health {
        let stalled: Vec<CheckResult> = self
            .loops()
            .into_iter()
            .filter_map(|(name, st)| match st {
                LoopState::Stalled(d) => Some(CheckResult {
                    name,
                    ok: false,
                    detail: Some(format!("busy for {} ms without progress", d.as_millis())),
                }),
                _ => None,
            })
            .collect();
        Health {
            status: if stalled.is_empty() { "ok" } else { "wedged" }.to_owned(),
            stalled,
        }
    }

    /// Adds a flag-backed check and returns the flag.
    pub fn add_flag(&self, name: impl Into<String>) -> Flag {
        let flag = Flag::default();
        let f = flag.clone();
        self.add_check(
            name,
            Arc::new(move || {
                let ok = f.get();
                Box::pin(async move { if ok { Ok(()) } else { Err(NotReady::NotYet) } })
            }),
        );
        flag
    }

    /// Adds a check that the NATS client is connected.
    pub fn add_nats(&self, name: impl Into<String>, client: async_nats::Client) {
        self.add_check(
            name,
            Arc::new(move || {
                let state = client.connection_state();
                Box::pin(async move {
                    match state {
                        async_nats::connection::State::Connected => Ok(()),
                        other => Err(NotReady::Nats(other)),
                    }
                })
            }),
        );
    }

    /// Runs every check (each bounded by 2 s).
    pub async fn readiness(&self) -> Readiness {
        let checks: Vec<(String, CheckFn)> = match self.inner.lock() {
            Ok(g) => g.checks.clone(),
            Err(_) => Vec::new(),
        };
        let mut out = Vec::with_capacity(checks.len());
        for (name, st) in self.loops() {
            let (ok, detail) = match st {
                LoopState::Live => (true, None),
                LoopState::Stopped => (false, Some("loop not running".to_owned())),
                LoopState::Failing(e) => (false, Some(format!("pull failing: {e}"))),
                LoopState::Stalled(d) => (false, Some(format!("stalled for {} ms", d.as_millis()))),
            };
            out.push(CheckResult {
                name: format!("loop {name}"),
                ok,
                detail,
            });
        }
        for (name, f) in checks {
            let res = tokio::time::timeout(Duration::from_secs(2), f()).await;
            let (ok, detail) = match res {
                Ok(Ok(())) => (true, None),
                Ok(Err(e)) => (false, Some(crate::error::chain(&e))),
                Err(_) => (false, Some("check timed out".to_owned())),
            };
            out.push(CheckResult { name, ok, detail });
        }
        let ready = !out.is_empty() && out.iter().all(|c| c.ok);
        self.ready_gauge.set(i64::from(ready));
        Readiness { ready, checks: out }
    }

    /// Prometheus text of every registry, families of the same name merged.
    pub fn metrics_text(&self) -> String {
        let mut families: Vec<prometheus::proto::MetricFamily> = self.process.gather();
        if let Ok(g) = self.inner.lock() {
            for r in &g.registries {
                for fam in r.gather() {
                    if let Some(existing) = families.iter_mut().find(|f| f.name() == fam.name()) {
                        for m in fam.get_metric() {
                            existing.mut_metric().push(m.clone());
                        }
                    } else {
                        families.push(fam);
                    }
                }
            }
        }
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Serves the endpoints on `listener` until `shutdown`.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        self.serve_with(listener, Router::new(), shutdown).await
    }

    /// [`Observer::serve`] with `extra` routes beside the three endpoints
    /// (`agentry up` mounts the web console there).
    pub async fn serve_with(
        self,
        listener: tokio::net::TcpListener,
        extra: Router,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let app = Router::new()
            .route("/health", get(health))
            .route("/ready", get(ready))
            .route("/metrics", get(metrics))
            .with_state(self)
            .merge(extra);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    }

    /// An observer serving on the address `observe` configures (none when
    /// it is `off`): what each binary's `run` starts before its component.
    pub async fn for_component(
        observe: &crate::config::Observe,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let obs = Self::new();
        obs.set_stall_after(observe.stall_after()?);
        if let Some(addr) = observe.http_socket()? {
            let bound = obs.clone().spawn(addr, shutdown.clone()).await?;
            tracing::info!(%bound, "serving /health /ready /metrics");
        }
        Ok(obs)
    }

    /// Binds `addr` and serves in a background task owned by `shutdown`;
    /// returns the bound address (port 0 picks a free one).
    pub async fn spawn(
        self,
        addr: SocketAddr,
        shutdown: CancellationToken,
    ) -> std::io::Result<SocketAddr> {
        self.spawn_with(addr, Router::new(), shutdown).await
    }

    /// [`Observer::spawn`] serving `extra` routes too.
    pub async fn spawn_with(
        self,
        addr: SocketAddr,
        extra: Router,
        shutdown: CancellationToken,
    ) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        // Lives until shutdown; an error (listener failure) is logged, the component keeps running.
        tokio::spawn(async move {
            if let Err(e) = self.serve_with(listener, extra, shutdown).await {
                tracing::error!(error = %e, "http server failed");
            }
        });
        Ok(local)
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<CheckResult>,
}

/// Body of `/health`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Health {
    /// `ok` or `wedged`.
    pub status: String,
    /// The loops that stopped making progress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stalled: Vec<CheckResult>,
}

async fn health(State(obs): State<Observer>) -> impl IntoResponse {
    // Answering at all proves the runtime schedules tasks; the loops prove
    // the component's own work is not stuck.
    let h = obs.health();
    let code = if h.stalled.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(h))
}

async fn ready(State(obs): State<Observer>) -> impl IntoResponse {
    let r = obs.readiness().await;
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(r))
}

async fn metrics(State(obs): State<Observer>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        obs.metrics_text(),
    )
}
