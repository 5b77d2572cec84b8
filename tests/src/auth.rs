//! nats-server with the production permission model: a config from `nats/`
//! (`dev-auth.conf` = `dev.conf` + `accounts.conf`, or `dev-tls.conf` with
//! mutual TLS), a generated password for every user the accounts file names
//! (`$AGENTRY_PW_<USER>` -> user `<user>`), the store in a temp dir.
//!
//! Roles connect with [`AuthServer::nats`] (settings as the binaries take
//! them), [`AuthServer::env`] (child processes) or [`AuthServer::client`];
//! components get test-tuned configs for their role
//! ([`AuthServer::engine_config`], [`AuthServer::agent_config`], ...);
//! tenants are the `client_<tenant>` users ([`AuthServer::tenant`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentry::subject::{self, Tenant};
use agentry::topology::{Topology, ensure};
use async_nats::jetstream;
use serde_json::Value;

use crate::tenant::TenantClient;
use crate::{repo_root, test_settings};

/// Every user of `nats/accounts.conf`, read from its `$AGENTRY_PW_<USER>`
/// password references (so a user added there is known here at once).
pub fn users() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("nats/accounts.conf"))
        .expect("read nats/accounts.conf");
    let mut users: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split("$AGENTRY_PW_").nth(1))
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|u| !u.is_empty())
        .collect();
    users.sort();
    users.dedup();
    users
}

/// A generated password for every user of `nats/accounts.conf` (letters
/// in each, so the config parser reads it as a string).
pub fn generate_passwords() -> HashMap<String, String> {
    users()
        .into_iter()
        .map(|u| {
            let pw = format!("pw{}", uuid::Uuid::new_v4().simple());
            (u, pw)
        })
        .collect()
}

/// The kinds of a comma-separated `--agents` list.
pub fn kinds_of(agents: &str) -> impl Iterator<Item = &str> {
    agents.split(',').map(str::trim).filter(|k| !k.is_empty())
}

/// `AGENTRY_NATS_{USER,PASSWORD,INBOX_PREFIX}_<KIND>` for each of `agents`
/// whose `agent_<kind>` user exists in `passwords`.
pub fn kind_env(agents: &str, passwords: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for kind in kinds_of(agents) {
        let user = format!("agent_{kind}");
        if let Some(pw) = passwords.get(&user) {
            let upper = kind.to_uppercase();
            env.push((format!("AGENTRY_NATS_USER_{upper}"), user.clone()));
            env.push((format!("AGENTRY_NATS_PASSWORD_{upper}"), pw.clone()));
            env.push((
                format!("AGENTRY_NATS_INBOX_PREFIX_{upper}"),
                subject::inbox_prefix(&user),
            ));
        }
    }
    env
}

/// The user of an agent process serving `agents` (comma-separated kinds):
/// `agent_<kind>` for a single kind when `has_user` says it exists, else `agent`.
pub fn agent_role_of(agents: &str, has_user: impl Fn(&str) -> bool) -> String {
    let kinds: Vec<&str> = kinds_of(agents).collect();
    match kinds.as_slice() {
        [kind] if has_user(&format!("agent_{kind}")) => format!("agent_{kind}"),
        _ => "agent".to_owned(),
    }
}

/// Connection settings for `role` at `url` with `passwords` (no TLS).
pub fn role_nats(
    url: &str,
    passwords: &HashMap<String, String>,
    role: &str,
) -> agentry::config::Nats {
    let mut n = agentry::config::Nats::plain(url.to_owned());
    n.user = Some(role.to_owned());
    n.password = Some(
        passwords
            .get(role)
            .unwrap_or_else(|| panic!("no user {role:?} in nats/accounts.conf"))
            .clone(),
    );
    n.inbox_prefix = Some(subject::inbox_prefix(role));
    n
}

/// The environment a component child process reads `nats` from.
pub fn nats_env(nats: &agentry::config::Nats) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            env.push((k.to_owned(), v));
        }
    };
    put("AGENTRY_NATS_URL", nats.url.clone());
    put("AGENTRY_NATS_USER", nats.user.clone());
    put("AGENTRY_NATS_PASSWORD", nats.password.clone());
    put("AGENTRY_NATS_INBOX_PREFIX", nats.inbox_prefix.clone());
    put(
        "AGENTRY_NATS_TLS_CA",
        nats.tls_ca.as_ref().map(|p| p.display().to_string()),
    );
    put(
        "AGENTRY_NATS_TLS_CERT",
        nats.tls_cert.as_ref().map(|p| p.display().to_string()),
    );
    put(
        "AGENTRY_NATS_TLS_KEY",
        nats.tls_key.as_ref().map(|p| p.display().to_string()),
    );
    env
}

/// A CA with server and client certificates (`nats/certs/gen-dev-certs.sh`),
/// and a second, foreign CA with its own client certificates.
pub struct Certs {
    pub good: PathBuf,
    pub foreign: PathBuf,
    _dir: tempfile::TempDir,
}

impl Certs {
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = repo_root().join("nats/certs/gen-dev-certs.sh");
        let (good, foreign) = (dir.path().join("good"), dir.path().join("foreign"));
        for target in [&good, &foreign] {
            let out = Command::new("bash")
                .arg(&script)
                .arg(target)
                .output()
                .expect("bash");
            assert!(
                out.status.success(),
                "gen-dev-certs.sh: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Self {
            good,
            foreign,
            _dir: dir,
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.good.join("ca.pem")
    }

    pub fn pair(dir: &Path, role: &str) -> (PathBuf, PathBuf) {
        (
            dir.join(format!("{role}.pem")),
            dir.join(format!("{role}-key.pem")),
        )
    }
}

/// nats-server running a config from `nats/` with generated passwords, on
/// free ports, store in a temp dir; killed on drop. (The harness's
/// `Nats::start_with` passes `-sd`, which collides with the configs' `store_dir`.)
pub struct AuthServer {
    child: Child,
    pub url: String,
    pub port: u16,
    passwords: HashMap<String, String>,
    pub certs: Option<Arc<Certs>>,
    conf: String,
    _dir: tempfile::TempDir,
}

/// Starts nats-server with `nats/<conf>` in `dir` (store, log, ports file),
/// on `port` or a free one; returns the child and its client port once the
/// server listens.
fn spawn_server(
    conf: &str,
    dir: &Path,
    passwords: &HashMap<String, String>,
    certs: Option<&Certs>,
    port: Option<u16>,
) -> (Child, u16) {
    let ports = dir.join("ports");
    let _ = std::fs::remove_dir_all(&ports);
    std::fs::create_dir_all(&ports).expect("ports dir");
    let bin = agentry_ctl::nats_child::find_binary().unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(bin);
    let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
    cmd.arg("-c")
        .arg(repo_root().join("nats").join(conf))
        .args(["-p", &port_arg, "-m", "-1", "--ports_file_dir"])
        .arg(&ports)
        .arg("-l")
        .arg(dir.join("server.log"))
        .args(std::env::var_os("AGENTRY_TEST_NATS_TRACE").map(|_| "-DV"))
        .env("AGENTRY_NATS_STORE", dir.join("store"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (user, pw) in passwords {
        cmd.env(format!("AGENTRY_PW_{}", user.to_uppercase()), pw);
    }
    if let Some(c) = certs {
        cmd.env("AGENTRY_NATS_SERVER_CERT", c.good.join("server.pem"))
            .env("AGENTRY_NATS_SERVER_KEY", c.good.join("server-key.pem"))
            .env("AGENTRY_NATS_SERVER_CA", c.ca());
    }
    let child = cmd.spawn().expect("start nats-server");
    let start = Instant::now();
    let port = loop {
        if let Some(port) = listening_port(&ports) {
            break port;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "nats-server with {conf} did not start; log: {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (child, port)
}

/// The client port from the ports file nats-server writes once it listens.
fn listening_port(ports: &Path) -> Option<u16> {
    std::fs::read_dir(ports).ok()?.flatten().find_map(|e| {
        let text = std::fs::read_to_string(e.path()).ok()?;
        let v = serde_json::from_str::<Value>(&text).ok()?;
        v["nats"][0].as_str()?.rsplit(':').next()?.parse().ok()
    })
}

impl AuthServer {
    /// `nats/dev-auth.conf`: accounts, users and permissions (max_payload 2 MB).
    pub fn start() -> Self {
        Self::start_conf("dev-auth.conf", None)
    }

    /// `nats/dev-tls.conf`: the same plus mutual TLS with `certs`.
    pub fn start_tls(certs: Arc<Certs>) -> Self {
        Self::start_conf("dev-tls.conf", Some(certs))
    }

    pub fn start_conf(conf: &str, certs: Option<Arc<Certs>>) -> Self {
        let mut dir = tempfile::tempdir().expect("temp dir");
        // Debugging: AGENTRY_TEST_KEEP keeps the store and log, AGENTRY_TEST_NATS_TRACE traces the protocol.
        if std::env::var_os("AGENTRY_TEST_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("nats-server dir ({conf}): {}", dir.path().display());
        }
        let passwords = generate_passwords();
        let (child, port) = spawn_server(conf, dir.path(), &passwords, certs.as_deref(), None);
        if std::env::var_os("AGENTRY_TEST_KEEP").is_some() {
            // What a person needs to connect to the kept store afterwards
            // (`nats-server -c nats/dev-auth.conf` with these variables).
            let vars: String = passwords
                .iter()
                .map(|(u, pw)| format!("AGENTRY_PW_{}={pw}\n", u.to_uppercase()))
                .collect();
            let _ = std::fs::write(dir.path().join("passwords.env"), vars);
        }
        Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            port,
            passwords,
            certs,
            conf: conf.to_owned(),
            _dir: dir,
        }
    }

    /// Stops the server (SIGKILL); [`AuthServer::restart`] brings it back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the server (SIGKILL, if running) and starts it again on the same port with
    /// the same store, config and passwords; returns once it listens.
    pub fn restart(&mut self) {
        self.kill();
        let (child, _) = spawn_server(
            &self.conf,
            self._dir.path(),
            &self.passwords,
            self.certs.as_deref(),
            Some(self.port),
        );
        self.child = child;
    }

    /// The generated password of `role` (panics for a user the accounts file lacks).
    pub fn password(&self, role: &str) -> String {
        self.passwords
            .get(role)
            .unwrap_or_else(|| panic!("no user {role:?} in nats/accounts.conf"))
            .clone()
    }

    /// Whether the accounts file has user `role`.
    pub fn has_user(&self, role: &str) -> bool {
        self.passwords.contains_key(role)
    }

    /// Connection settings for `role` as the agentry binaries take them.
    pub fn nats(&self, role: &str) -> agentry::config::Nats {
        let mut n = role_nats(&self.url, &self.passwords, role);
        if let Some(c) = &self.certs {
            // `verify: true`: any certificate of the CA will do, the password
            // names the user; the script makes certificates for the generic
            // roles, so a per-kind agent user presents the `agent` one.
            let (mut cert, mut key) = Certs::pair(&c.good, role);
            if !cert.exists() && role.starts_with("agent_") {
                (cert, key) = Certs::pair(&c.good, "agent");
            }
            n.tls_ca = Some(c.ca());
            n.tls_cert = Some(cert);
            n.tls_key = Some(key);
        }
        n
    }

    /// Environment for a component child process connecting as `role`.
    pub fn env(&self, role: &str) -> Vec<(String, String)> {
        nats_env(&self.nats(role))
    }

    /// `env` as the borrowed pairs [`crate::ChildProc::spawn`] takes.
    pub fn env_pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// The user an agent process serving `agents` (comma-separated kinds)
    /// connects as: `agent_<kind>` for a single kind when the accounts file
    /// has that user, otherwise the generic `agent` (custom agents, SDKs,
    /// several kinds in one process).
    pub fn agent_role(&self, agents: &str) -> String {
        agent_role_of(agents, |u| self.has_user(u))
    }

    /// [`crate::engine_config`] connecting as `engine`.
    pub fn engine_config(&self) -> agentry_engine::Config {
        let mut c = crate::engine_config(&self.url);
        c.nats = self.nats("engine");
        c
    }

    /// [`crate::monitor_config`] connecting as `monitor`.
    pub fn monitor_config(&self) -> agentry_monitor::Config {
        let mut c = crate::monitor_config(&self.url);
        c.nats = self.nats("monitor");
        c
    }

    /// [`crate::agent_config`] connecting as [`AuthServer::agent_role`];
    /// in a process serving several kinds, each kind that has its own user
    /// connects as that user (`kind_nats`, what `AGENTRY_NATS_USER_<KIND>`
    /// sets for the binary).
    pub fn agent_config(&self, agents: &str) -> agentry_agent::Config {
        let mut c = crate::agent_config(&self.url, agents);
        c.nats = self.nats(&self.agent_role(agents));
        for kind in kinds_of(agents) {
            let user = format!("agent_{kind}");
            if self.has_user(&user) {
                c.kind_nats.insert(kind.to_owned(), self.nats(&user));
            }
        }
        c
    }

    /// Connection settings of the agent role for `agents` (SDK-level agents).
    pub fn agent_nats(&self, agents: &str) -> agentry::config::Nats {
        self.nats(&self.agent_role(agents))
    }

    /// Environment for an `agentry-agent` child process serving `agents`:
    /// [`AuthServer::agent_role`] as the base user, and
    /// `AGENTRY_NATS_{USER,PASSWORD,INBOX_PREFIX}_<KIND>` for each kind that
    /// has its own user.
    pub fn agent_env(&self, agents: &str) -> Vec<(String, String)> {
        let mut env = self.env(&self.agent_role(agents));
        env.extend(kind_env(agents, &self.passwords));
        env
    }

    /// A connected client of tenant `name` (user `client_<name>`).
    pub async fn tenant(&self, name: &str) -> TenantClient {
        let tenant = Tenant::new(name).unwrap_or_else(|e| panic!("tenant {name:?}: {e}"));
        let client = self.client(&format!("client_{name}")).await;
        let js = jetstream::new(client.clone());
        TenantClient { tenant, client, js }
    }

    /// An admin connection for inspection (streams, KV, consumers), without
    /// creating anything.
    pub async fn admin(&self) -> (async_nats::Client, jetstream::Context) {
        let admin = self.client("admin").await;
        let js = jetstream::new(admin.clone());
        (admin, js)
    }

    pub async fn client(&self, role: &str) -> async_nats::Client {
        agentry::connect::connect_once(&self.nats(role), role)
            .await
            .unwrap_or_else(|e| panic!("connect as {role}: {e}"))
    }

    /// Admin creates the whole topology (what `agentry setup` does).
    pub async fn setup(&self) -> (async_nats::Client, jetstream::Context) {
        let admin = self.client("admin").await;
        let js = jetstream::new(admin.clone());
        ensure(&js, &Topology::new(&test_settings()))
            .await
            .expect("topology as admin");
        (admin, js)
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
