//! The CLI lists every command of the design (and, being an integration
//! test of this package, makes cargo build the `agentry` binary the
//! end-to-end suite runs).

#[test]
fn help_lists_every_command() {
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
