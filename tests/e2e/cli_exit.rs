//! `agentry submit` on real runs under the production accounts
//! (`nats/dev-auth.conf`): the engine and an echo agent as their own users,
//! the CLI as tenant `client_acme`. Exit codes are the documented ones
//! (0 completed, 1 failed, 2 rejected or usage, 3 timed out) and the output
//! is quiet: the result on stdout, nothing on stderr but warnings and errors,
//! no colour when not a terminal.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use agentry::http::Observer;
use agentry_tests::{
    AuthServer, InProcess, bin, engine_config, monitor_config, test_settings, wait_for_agents,
};
use serde_json::Value;

/// `agentry <args>` as client_acme, `stdin` fed to it; no log settings inherited.
fn agentry(server: &AuthServer, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(bin("agentry"));
    cmd.args(args)
        .arg("--tenant")
        .arg("acme")
        .env_remove("RUST_LOG")
        .env_remove("NATS_URL")
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in server.env("client_acme") {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn result_type(out: &Output) -> String {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    v["type"].as_str().unwrap_or_default().to_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Completed 0, failed 1, rejected 2, timed out 3, usage errors 2; stdout
/// carries only the result and stderr stays quiet and colourless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_exit_codes_and_quiet_output_on_real_runs() {
    let server = AuthServer::start();
    let (_admin, admin_js) = server.setup().await;
    let mut sys = InProcess::new();
    let mut engine = engine_config(&server.url);
    engine.nats = server.nats("engine");
    sys.spawn(move |t| agentry_engine::run_with(engine, Observer::new(), t));
    let mut monitor = monitor_config(&server.url);
    monitor.nats = server.nats("monitor");
    sys.spawn(move |t| agentry_monitor::run_with(monitor, Observer::new(), t));
    let agent_user = if server.has_user("agent_echo") {
        "agent_echo"
    } else {
        "agent"
    };
    let nats = server.nats(agent_user);
    sys.spawn(move |t| async move {
        let mut rc = agentry::agent::Config::new(nats);
        rc.heartbeat = Duration::from_secs(1);
        rc.topology = test_settings();
        let echo = agentry_echo::Echo::default();
        agentry::agent::run(vec![std::sync::Arc::new(echo)], rc, Observer::new(), t).await
    });
    wait_for_agents(&admin_js, "echo", 1).await;

    let s = server;
    let b = tokio::task::spawn_blocking(move || {
        // Completed, input from stdin.
        let out = agentry(
            &s,
            &["submit", "echo", "--input", "-"],
            r#"{"message":"hi"}"#,
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(result_type(&out), "io.agentry.task.completed");
        assert_eq!(stderr(&out), "", "a completed submit is quiet on stderr");

        // Completed, input from a file.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.json");
        std::fs::write(&file, r#"{"message":"from a file"}"#).unwrap();
        let arg = format!("@{}", file.display());
        let out = agentry(&s, &["submit", "echo", "--input", &arg], "");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["data"]["output"]["echo"]["message"], "from a file");

        // Failed task.
        let out = agentry(
            &s,
            &["submit", "echo", "--input", r#"{"fail":"permanent"}"#],
            "",
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert_eq!(result_type(&out), "io.agentry.task.failed");
        assert_eq!(stderr(&out), "");

        // Rejected request.
        let out = agentry(&s, &["submit", "no_such_capability"], "");
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(result_type(&out), "io.agentry.request.rejected");
        assert_eq!(stderr(&out), "");

        // Timed out waiting: nothing on stdout, one plain line on stderr.
        let out = agentry(
            &s,
            &[
                "submit",
                "echo",
                "--input",
                r#"{"sleep_ms":3000}"#,
                "--timeout",
                "500ms",
            ],
            "",
        );
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("agentry submit --result"), "{err}");

        // Usage errors: bad JSON and an unknown flag.
        let out = agentry(&s, &["submit", "echo", "--input", "{nope"], "");
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
        let out = agentry(&s, &["submit", "echo", "--no-such-flag"], "");
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

        // -v adds log lines, still without colour off a terminal.
        let out = agentry(&s, &["-v", "submit", "echo"], "");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("INFO"), "-v logs at info: {err}");
        assert!(
            !err.contains('\u{1b}'),
            "no ANSI colour when not a terminal: {err:?}"
        );
        s
    });
    let _server = b.await.unwrap();
    sys.stop().await;
}

/// `agentry completions` prints a script for each supported shell.
#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef agentry"),
        ("fish", "complete -c agentry"),
    ] {
        let out = Command::new(bin("agentry"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell} script lacks {marker:?}");
        assert!(
            text.contains("submit"),
            "{shell} script lacks the subcommands"
        );
    }
    let out = Command::new(bin("agentry"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}
