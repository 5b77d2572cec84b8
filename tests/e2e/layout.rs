//! The suite's layout holds: with `autotests = false`, a test file dropped
//! into `tests/tests/` would compile into nothing and never run; each
//! `bins/*/tests/` keeps only `help.rs` (what makes cargo build that binary).

use agentry_tests::repo_root;

fn rust_files(dir: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(repo_root().join(dir)) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rs"))
        .collect()
}

#[test]
fn every_test_file_is_a_module_of_the_e2e_binary() {
    let stray = rust_files("tests/tests");
    assert!(
        stray.is_empty(),
        "tests/tests/{stray:?} never runs (autotests = false): move each into tests/e2e/<topic>.rs and add `mod <topic>;` to tests/e2e/main.rs"
    );
    for bin in ["agent", "ctl", "engine", "monitor"] {
        let files = rust_files(&format!("bins/{bin}/tests"));
        assert!(
            files.iter().all(|f| f == "help.rs"),
            "bins/{bin}/tests/{files:?}: scenarios belong in tests/e2e (one link step), unit tests in the crate"
        );
    }
}
