//! Embeds every JSON schema under `../schemas` (events, capabilities, the
//! agent record and workflow definitions) so binaries carry them.

use std::fmt::Write as _;
use std::path::Path;

fn collect(dir: &Path, rel: &str, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if p.is_file() && name.ends_with(".json") {
            out.push((
                format!("{rel}{name}"),
                p.canonicalize().unwrap_or(p.clone()).display().to_string(),
            ));
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    println!("cargo:rerun-if-changed={}", root.display());
    for sub in ["events", "capabilities"] {
        println!("cargo:rerun-if-changed={}", root.join(sub).display());
    }
    let mut files = Vec::new();
    collect(&root, "", &mut files);
    collect(&root.join("events"), "events/", &mut files);
    collect(&root.join("capabilities"), "capabilities/", &mut files);
    let mut src = String::from(
        "/// Embedded schema files: (path under schemas/, contents).\npub static FILES: &[(&str, &str)] = &[\n",
    );
    for (rel, abs) in &files {
        let _ = writeln!(src, "    ({rel:?}, include_str!({abs:?})),");
    }
    src.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap_or_default()).join("schemas.rs");
    if let Err(e) = std::fs::write(&out, src) {
        panic!("cannot write {}: {e}", out.display());
    }
}
