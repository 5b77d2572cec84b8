//! Every binary's argument definitions are consistent (`--help` works).

use agentry_tests::bin;

/// `--help` of each binary succeeds and names its key flags.
#[test]
fn every_binary_has_working_help() {
    for (name, flag) in [
        ("agentry", "--nats-url"),
        ("agentry-agent", "--agents"),
        ("agentry-engine", "--nats-url"),
        ("agentry-monitor", "--missed-heartbeats"),
    ] {
        let out = std::process::Command::new(bin(name))
            .arg("--help")
            .output()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name} --help failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(flag), "{name} --help lacks {flag}");
    }
    for sub in [
        "up",
        "setup",
        "submit",
        "agents",
        "watch",
        "dlq list",
        "dlq replay",
    ] {
        let mut args: Vec<&str> = sub.split(' ').collect();
        args.push("--help");
        let out = std::process::Command::new(bin("agentry"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "agentry {sub} --help: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
