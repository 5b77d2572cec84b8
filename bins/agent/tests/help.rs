//! The crate's one test binary (an integration test is what makes cargo
//! build the `agentry-agent` binary the end-to-end suite spawns, so the
//! library's own tests live here too, through its public API instead of a
//! second test binary): the binary's flags parse, and per-kind NATS users
//! are read from the environment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use agentry::config;
use agentry_agent::{AgentsError, Config, kind_nats_from_env, select};

#[test]
fn help_works() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agentry-agent"))
        .arg("--help")
        .output()
        .expect("run binary");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| m.get(k).cloned()
}

#[test]
fn per_kind_users_come_from_kind_variables() {
    let mut base = config::Nats::plain("nats://h:4222");
    base.user = Some("agent".into());
    base.password = Some("shared".into());
    let kinds = select("planning,weather,security_monitor").unwrap();
    let got = kind_nats_from_env(
        &base,
        &kinds,
        env(&[
            ("AGENTRY_NATS_USER_PLANNING", "agent_planning"),
            ("AGENTRY_NATS_PASSWORD_PLANNING", "p1"),
            (
                "AGENTRY_NATS_USER_SECURITY_MONITOR",
                "agent_security_monitor",
            ),
            ("AGENTRY_NATS_PASSWORD_SECURITY_MONITOR", "p2"),
            ("AGENTRY_NATS_INBOX_PREFIX_SECURITY_MONITOR", "_INBOX.sec"),
        ]),
    )
    .unwrap();
    assert_eq!(got.len(), 2, "weather keeps the shared user");
    let p = &got["planning"];
    assert_eq!(p.user.as_deref(), Some("agent_planning"));
    assert_eq!(p.password.as_deref(), Some("p1"));
    assert_eq!(p.inbox_prefix.as_deref(), Some("_INBOX.agent_planning"));
    assert_eq!(p.url.as_deref(), Some("nats://h:4222"));
    assert_eq!(
        got["security_monitor"].inbox_prefix.as_deref(),
        Some("_INBOX.sec")
    );
    let mut cfg = Config::for_url("nats://h:4222", "planning,weather");
    cfg.kind_nats = got;
    assert_eq!(cfg.nats_for("weather").user, None);
    assert_eq!(
        cfg.nats_for("planning").user.as_deref(),
        Some("agent_planning")
    );
}

#[test]
fn a_kind_user_without_password_is_an_error() {
    let base = config::Nats::plain("nats://h:4222");
    let kinds = select("echo").unwrap();
    let err = kind_nats_from_env(
        &base,
        &kinds,
        env(&[("AGENTRY_NATS_USER_ECHO", "agent_echo")]),
    )
    .unwrap_err();
    assert!(matches!(err, AgentsError::KindCredentials { .. }), "{err}");
}
