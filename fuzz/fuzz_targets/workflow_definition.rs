//! Workflow definitions (YAML or JSON) through `Definition::parse` and
//! `Definition::check`: any text is either refused with errors or compiled,
//! never a panic, a hang or unbounded memory.
#![no_main]

use agentry::workflow::Definition;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(def) = Definition::parse(text) else {
        return;
    };
    let caps = |c: &str| agentry::topology::BUILTIN_CAPABILITIES.contains(&c);
    let workflows = |name: &str, _: Option<u32>| name.starts_with('w');
    if let Ok(compiled) = def.check(&caps, &workflows) {
        let _ = compiled.order();
    }
});
