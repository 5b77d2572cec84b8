//! The agent host's library (`agentry-agent`) through its public API, no
//! server: per-kind NATS users read from the environment, and the kinds
//! table (a kind that is off for want of settings says why).

use std::collections::BTreeMap;

use agentry::config;
use agentry_agent::kinds::{self, Built, Settings};
use agentry_agent::{AgentsError, Config, kind_nats_from_env, select};

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

/// The assistant is off without an LLM base URL, and says what is missing.
#[test]
fn the_assistant_needs_an_llm_endpoint() {
    let mut s = Settings::default();
    match kinds::build("assistant", &s).unwrap() {
        Built::Off(why) => assert!(why.contains("AGENTRY_LLM_BASE_URL"), "{why}"),
        Built::Ready(_) => panic!("started without an endpoint"),
    }
    s.llm_base_url = Some("http://127.0.0.1:9/v1".into());
    s.llm_api_key = Some(agentry_assistant::ApiKey("k".into()));
    s.llm_model = Some("m".into());
    assert!(matches!(
        kinds::build("assistant", &s).unwrap(),
        Built::Ready(_)
    ));
    let cfg = s.assistant_config().unwrap();
    assert_eq!(cfg.model.as_deref(), Some("m"));
    s.llm_base_url = Some("localhost:11434".into());
    let e = kinds::build("assistant", &s).err().unwrap();
    assert!(matches!(e, AgentsError::AssistantSettings(_)), "{e}");
    assert!(kinds::names().any(|k| k == "assistant"));
}
