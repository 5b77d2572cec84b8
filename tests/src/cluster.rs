//! A 3-node JetStream cluster on loopback with the production accounts.

use std::collections::HashMap;
use std::path::PathBuf;

use tempfile::TempDir;

use crate::{NatsOptions, NatsServer, auth, free_port, keep_if_asked, repo_root};

/// A 3-node JetStream cluster on loopback with the production accounts and
/// permissions (`nats/accounts.conf`, generated passwords); components
/// connect as their roles with [`Cluster::nats`] / [`Cluster::env`].
pub struct Cluster {
    pub nodes: Vec<NatsServer>,
    pub urls: Vec<String>,
    passwords: HashMap<String, String>,
    _dir: TempDir,
    confs: Vec<(PathBuf, u16)>,
}

impl Cluster {
    pub fn start() -> Self {
        let dir = keep_if_asked(tempfile::tempdir().expect("temp dir"), "cluster");
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_urls: Vec<String> = routes
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let passwords = auth::generate_passwords();
        // The accounts file inline, its `$AGENTRY_PW_*` references resolved
        // by variables defined in the same file (the server inherits no
        // passwords from this process's environment).
        let accounts = std::fs::read_to_string(repo_root().join("nats/accounts.conf"))
            .expect("read nats/accounts.conf");
        let vars: String = passwords
            .iter()
            .map(|(u, pw)| format!("AGENTRY_PW_{}: \"{pw}\"\n", u.to_uppercase()))
            .collect();
        let mut nodes = Vec::new();
        let mut confs = Vec::new();
        for i in 0..3 {
            let node_dir = dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let conf = node_dir.join("node.conf");
            // The store dir comes from `-sd` (NatsServer passes it); a `store_dir`
            // here too would be a "duplicate store_dir" start-up error.
            let text = format!(
                "{vars}server_name: n{i}\nmax_payload: 2MB\ncluster {{\n  name: agentry-test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n{accounts}\n",
                routes[i],
                route_urls.join(", ")
            );
            std::fs::write(&conf, text).expect("write conf");
            confs.push((conf.clone(), clients[i]));
            let server = NatsServer::start(NatsOptions {
                port: Some(clients[i]),
                dir: node_dir,
                extra_args: vec!["-c".into(), conf.display().to_string()],
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("{e}"));
            nodes.push(server);
        }
        let urls = nodes.iter().map(|n| n.url.clone()).collect();
        Self {
            nodes,
            urls,
            passwords,
            _dir: dir,
            confs,
        }
    }

    /// Connection settings for `role` (every node's URL).
    pub fn nats(&self, role: &str) -> agentry::config::Nats {
        auth::role_nats(&self.url_list(), &self.passwords, role)
    }

    /// Environment for a component child process connecting as `role`.
    pub fn env(&self, role: &str) -> Vec<(String, String)> {
        auth::nats_env(&self.nats(role))
    }

    /// Environment for an `agentry-agent` child process serving `agents`
    /// (the user [`AuthServer::agent_role`] would pick).
    pub fn agent_env(&self, agents: &str) -> Vec<(String, String)> {
        let role = auth::agent_role_of(agents, |u| self.passwords.contains_key(u));
        let mut env = self.env(&role);
        env.extend(auth::kind_env(agents, &self.passwords));
        env
    }

    pub fn url_list(&self) -> String {
        self.urls.join(",")
    }

    /// Restarts node `i` with its config and store.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].restart().unwrap_or_else(|e| panic!("{e}"));
        let _ = &self.confs;
    }
}
