//! Security and bad input (issue 8), against real nats-server processes
//! started with the repository's `nats/` configs (`dev-auth.conf`,
//! `dev-tls.conf`): the permission matrix per role, refused connections,
//! mutual TLS end to end, a battery of bad input through the real request
//! path, rate limiting (Redis, Redis down, in-process), quarantine, tenant
//! isolation, and a scan of the repository for secrets.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentry::client::{self, task_request};
use agentry::event::{self, Mode};
use agentry::http::Observer;
use agentry::id::RequestId;
use agentry::subject::{self, Tenant};
use agentry::topology::{Topology, ensure};
use agentry_tests::*;
use async_nats::jetstream;
use async_nats::{ConnectOptions, HeaderMap};
use bytes::Bytes;
use cloudevents::AttributesReader as _;
use futures::StreamExt;
use serde_json::{Value, json};

mod bad_input;
mod cluster_configs;
mod fuzz;
mod matrix;
mod mtls;
mod rate_limit;
mod secrets;
mod tenancy;

/// How many connections named `name` the server has seen (open and closed),
/// from the system account's CONNZ: a reconnect is a second connection.
async fn connections_named(server: &AuthServer, name: &str) -> usize {
    let sys = server.client("sys").await;
    let reply = sys
        .request(
            "$SYS.REQ.SERVER.PING.CONNZ",
            // state 2 = open and closed (server.ConnState)
            Bytes::from(json!({"state": 2, "limit": 1024}).to_string()),
        )
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&reply.payload).unwrap();
    v["data"]["connections"]
        .as_array()
        .map(|cs| cs.iter().filter(|c| c["name"] == name).count())
        .unwrap_or(0)
}

fn acme() -> Tenant {
    Tenant::new("acme").unwrap()
}

/// A tenant client: its connection and JetStream context.
async fn tenant_client(
    server: &AuthServer,
    tenant: &str,
) -> (async_nats::Client, jetstream::Context) {
    let c = server.client(&format!("client_{tenant}")).await;
    let js = jetstream::new(c.clone());
    (c, js)
}

/// Submits an echo task as `tenant` and returns the outcome.
async fn echo_as(
    c: &async_nats::Client,
    js: &jetstream::Context,
    tenant: &Tenant,
    source: &str,
    input: Value,
) -> client::Outcome {
    let id = RequestId::generate();
    let ev = task_request(&id, source, "echo", input, None);
    client::submit_as(
        c,
        js,
        Some(tenant),
        &ev,
        Mode::Binary,
        Duration::from_secs(30),
    )
    .await
    .expect("result")
}

/// What one check observed.
#[derive(Debug, Default)]
struct Outcome {
    success: bool,
    detail: String,
    subjects: Vec<String>,
    violation: bool,
    server_error: bool,
}

impl Outcome {
    fn ok(detail: impl Into<String>, subjects: Vec<String>) -> Self {
        Self {
            success: true,
            detail: detail.into(),
            subjects,
            ..Default::default()
        }
    }
    fn no(detail: impl Into<String>, subjects: Vec<String>) -> Self {
        Self {
            success: false,
            detail: detail.into(),
            subjects,
            ..Default::default()
        }
    }
}

/// Speaks the NATS protocol without TLS to a server that requires it.
fn plaintext_connect(port: u16, user: &str, password: &str) -> Outcome {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return Outcome::no("refused", vec![]);
    };
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut info = String::new();
    let _ = r.read_line(&mut info);
    let connect = json!({"verbose": false, "pedantic": false, "user": user, "pass": password,
                         "tls_required": false, "lang": "raw", "version": "0", "protocol": 1});
    let _ = s.write_all(format!("CONNECT {connect}\r\nPING\r\n").as_bytes());
    let mut reply = String::new();
    let _ = r.read_line(&mut reply);
    if reply.starts_with("PONG") {
        Outcome::ok("connected without TLS", vec![])
    } else {
        Outcome::no(format!("refused: {}", reply.trim()), vec![])
    }
}

/// A running system; the engine runs on its own task so a test can prove it
/// never stopped (an engine that returned, even with `Ok`, would be a restart).
struct Stack {
    engine: tokio::task::JoinHandle<anyhow::Result<()>>,
    engine_stop: tokio_util::sync::CancellationToken,
    engine_obs: Observer,
    others: InProcess,
}

impl Stack {
    fn start(
        server: &AuthServer,
        tune: impl FnOnce(&mut agentry_engine::Config),
        monitor: bool,
    ) -> Self {
        let mut cfg = server.engine_config();
        tune(&mut cfg);
        let engine_obs = Observer::new();
        let engine_stop = tokio_util::sync::CancellationToken::new();
        let engine = tokio::spawn(agentry_engine::run_with(
            cfg,
            engine_obs.clone(),
            engine_stop.clone(),
        ));
        let mut others = InProcess::new();
        let nats = server.agent_nats("echo");
        others.spawn(move |t| async move {
            let mut rc = agentry::agent::Config::new(nats);
            rc.capacity = 32;
            rc.heartbeat = Duration::from_secs(1);
            rc.topology = test_settings();
            let echo = agentry_echo::Echo::default();
            agentry::agent::run(vec![Arc::new(echo)], rc, Observer::new(), t).await
        });
        if monitor {
            let mc = server.monitor_config();
            others.spawn(move |t| agentry_monitor::run_with(mc, Observer::new(), t));
        }
        Self {
            engine,
            engine_stop,
            engine_obs,
            others,
        }
    }

    async fn stop(self) {
        assert!(
            !self.engine.is_finished(),
            "the engine stopped during the test"
        );
        self.engine_stop.cancel();
        let res = tokio::time::timeout(Duration::from_secs(40), self.engine)
            .await
            .expect("engine stops")
            .expect("engine task");
        res.expect("engine returned an error");
        self.others.stop().await;
    }
}
