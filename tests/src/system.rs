//! [`System::builder()`]: the system a test runs against, in one place
//! instead of a setup struct per test file.
//!
//! The server is the production one ([`AuthServer`]: `nats/dev-auth.conf`,
//! every component as its own role); `.tls(certs)` adds mutual TLS. The
//! open dev server is never implied: tests about dev mode use
//! [`crate::DevNats`] by name. `start()` creates the topology as `admin`
//! (what `agentry setup` does) and starts the components asked for,
//! in-process:
//!
//! ```ignore
//! let mut sys = System::builder()
//!     .engine(|cfg| cfg.max_runs = 5) // user `engine`, harness-tuned config
//!     .monitor()                      // user `monitor`
//!     .echo(32)                       // echo agent (user `agent_echo`), 32 at once
//!     .start()
//!     .await;
//! let acme = sys.tenant("acme").await;
//! assert_eq!(sys.echo.executions_of("id"), 1);
//! sys.stop().await;
//! ```
//!
//! More components can be added after the start ([`System::engine`],
//! [`System::echo_agent`], ...), for example after a restart drill.

use std::sync::Arc;
use std::time::Duration;

use agentry::http::Observer;
use agentry::topology::{Settings, Topology, ensure};
use agentry_echo::Echo;
use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use crate::{AuthServer, Certs, InProcess, TenantClient, test_settings};

type EngineTune = Box<dyn FnOnce(&mut agentry_engine::Config) + Send>;
type AgentTune = Box<dyn FnOnce(&mut agentry::agent::Config) + Send>;

/// What [`System::start`] brings up; see the module docs.
pub struct Builder {
    certs: Option<Arc<Certs>>,
    settings: Settings,
    engine: Option<EngineTune>,
    monitor: bool,
    echo: Option<(usize, AgentTune)>,
}

/// A running test system: the server, an admin JetStream context (the
/// topology exists), and the in-process components (cancelled on drop).
pub struct System {
    pub server: AuthServer,
    /// The operator's JetStream context (user `admin`): definitions and inspection.
    pub admin: jetstream::Context,
    pub parts: InProcess,
    /// The echo capability every echo agent of this system serves; it counts
    /// executions per request id.
    pub echo: Echo,
}

impl System {
    pub fn builder() -> Builder {
        Builder {
            certs: None,
            settings: test_settings(),
            engine: None,
            monitor: false,
            echo: None,
        }
    }

    /// Starts an engine as `engine` with the harness config, tuned by `tune`.
    pub fn engine(&mut self, tune: impl FnOnce(&mut agentry_engine::Config)) -> CancellationToken {
        let mut cfg = self.server.engine_config();
        tune(&mut cfg);
        self.parts
            .spawn(move |t| agentry_engine::run_with(cfg, Observer::new(), t))
    }

    /// Starts a monitor as `monitor` with the harness config.
    pub fn monitor(&mut self) -> CancellationToken {
        let cfg = self.server.monitor_config();
        self.parts
            .spawn(move |t| agentry_monitor::run_with(cfg, Observer::new(), t))
    }

    /// Starts an echo agent (user `agent_echo`, or `agent` without one)
    /// serving [`System::echo`], at most `capacity` tasks at once.
    pub fn echo_agent(&mut self, capacity: usize) -> CancellationToken {
        self.echo_agent_with(capacity, |_| {})
    }

    /// [`System::echo_agent`] with the agent runtime config tuned by `tune`.
    pub fn echo_agent_with(
        &mut self,
        capacity: usize,
        tune: impl FnOnce(&mut agentry::agent::Config),
    ) -> CancellationToken {
        let mut rc = agentry::agent::Config::new(self.server.agent_nats("echo"));
        rc.capacity = capacity;
        rc.heartbeat = Duration::from_secs(1);
        rc.topology = test_settings();
        tune(&mut rc);
        let echo = self.echo.clone();
        self.parts.spawn(move |t| async move {
            agentry::agent::run(vec![Arc::new(echo)], rc, Observer::new(), t).await
        })
    }

    /// A connected client of tenant `name` (user `client_<name>`).
    pub async fn tenant(&self, name: &str) -> TenantClient {
        self.server.tenant(name).await
    }

    /// Cancels every component and waits for each to return cleanly.
    pub async fn stop(self) {
        self.parts.stop().await;
    }
}

impl Builder {
    /// Mutual TLS (`nats/dev-tls.conf`) on top of the accounts.
    pub fn tls(mut self, certs: Arc<Certs>) -> Self {
        self.certs = Some(certs);
        self
    }

    /// Topology settings for `start()` (default: [`test_settings`]).
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// An engine, its harness config tuned by `tune`.
    pub fn engine(
        mut self,
        tune: impl FnOnce(&mut agentry_engine::Config) + Send + 'static,
    ) -> Self {
        self.engine = Some(Box::new(tune));
        self
    }

    /// A monitor.
    pub fn monitor(mut self) -> Self {
        self.monitor = true;
        self
    }

    /// An echo agent handling at most `capacity` tasks at once.
    pub fn echo(self, capacity: usize) -> Self {
        self.echo_with(capacity, |_| {})
    }

    /// An echo agent, its runtime config tuned by `tune`.
    pub fn echo_with(
        mut self,
        capacity: usize,
        tune: impl FnOnce(&mut agentry::agent::Config) + Send + 'static,
    ) -> Self {
        self.echo = Some((capacity, Box::new(tune)));
        self
    }

    /// Starts the server, creates the topology as `admin`, then the components.
    pub async fn start(self) -> System {
        let server = match self.certs {
            Some(certs) => AuthServer::start_tls(certs),
            None => AuthServer::start(),
        };
        let admin = jetstream::new(server.client("admin").await);
        ensure(&admin, &Topology::new(&self.settings))
            .await
            .expect("topology as admin");
        let mut sys = System {
            server,
            admin,
            parts: InProcess::new(),
            echo: Echo::default(),
        };
        if let Some(tune) = self.engine {
            sys.engine(tune);
        }
        if self.monitor {
            sys.monitor();
        }
        if let Some((capacity, tune)) = self.echo {
            sys.echo_agent_with(capacity, tune);
        }
        sys
    }
}
