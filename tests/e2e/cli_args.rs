//! Every binary's argument definitions are consistent (`--help` and
//! `--version` work, `agentry --help` lists every command). The four
//! binaries are this test's package's own (`agentry-ctl`), so cargo builds
//! them before the suite runs and `CARGO_BIN_EXE_*` names each.

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

/// The binaries, as cargo built them for this test.
const BINARIES: [(&str, &str); 4] = [
    ("agentry", env!("CARGO_BIN_EXE_agentry")),
    ("agentry-agent", env!("CARGO_BIN_EXE_agentry-agent")),
    ("agentry-engine", env!("CARGO_BIN_EXE_agentry-engine")),
    ("agentry-monitor", env!("CARGO_BIN_EXE_agentry-monitor")),
];

/// Each binary answers `--version` with its own name and the workspace
/// version, and the harness (`bin`) spawns the binaries cargo built.
#[test]
fn every_binary_reports_its_name_and_version() {
    for (name, path) in BINARIES {
        let out = std::process::Command::new(path)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            out.status.success(),
            "{name} --version failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION"))
        );
        let built = std::fs::canonicalize(path).unwrap();
        assert_eq!(
            std::fs::canonicalize(bin(name)).ok().as_ref(),
            Some(&built),
            "the harness would spawn another {name} than the one cargo built"
        );
    }
}

/// `agentry --help` lists every command of the design.
#[test]
fn agentry_help_lists_every_command() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agentry"))
        .arg("--help")
        .output()
        .expect("run agentry");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "up", "setup", "submit", "workflow", "status", "agents", "watch", "dlq", "bench", "check",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{cmd} "))),
            "`agentry --help` does not list {cmd}:\n{text}"
        );
    }
}
