//! The suite's layout holds: a test file dropped into `tests/tests/` or
//! `bins/ctl/tests/` would compile into nothing and never run (`autotests =
//! false`), one in another `bins/*/tests/` would be a link step of its own
//! (the suite is `e2e`, an integration test of `agentry-ctl`, the package
//! that ships the four binaries); no source file passes 600 lines.

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
            files.is_empty(),
            "bins/{bin}/tests/{files:?}: scenarios belong in tests/e2e (one link step, and the package that builds the binaries), unit tests in the crate"
        );
    }
}

/// Every `.rs` file of the workspace, recursively under `dir` (build
/// output skipped).
fn rust_files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files_under(&path, out);
            }
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// No source file passes 600 lines: a module that grows past it becomes a
/// directory of smaller ones (there are no data or generated `.rs` files
/// to exempt).
#[test]
fn no_rust_file_over_600_lines() {
    const MAX_LINES: usize = 600;
    let root = repo_root();
    let mut files = Vec::new();
    for dir in ["shared", "bins", "agents", "tests", "fuzz"] {
        rust_files_under(&root.join(dir), &mut files);
    }
    assert!(
        files.len() > 100,
        "the walk found only {} files",
        files.len()
    );
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).ok()?.lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines})", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines, split into modules: {long:?}"
    );
}
