//! Makes cargo build the binary for the end-to-end suite, and checks its flags parse.

#[test]
fn help_works() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agentry-monitor"))
        .arg("--help")
        .output()
        .expect("run binary");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
