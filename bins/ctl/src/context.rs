//! `.agentry/context`: where `agentry up` says its server is, so every other
//! command finds the system without flags.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const DIR: &str = ".agentry";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Context {
    pub nats_url: String,
    #[serde(default)]
    pub http_addr: Option<String>,
    #[serde(default)]
    pub monitoring_url: Option<String>,
    #[serde(default)]
    pub pid: Option<u32>,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join("context")
}

pub fn write(dir: &Path, ctx: &Context) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let text = serde_json::to_string_pretty(ctx).map_err(std::io::Error::other)?;
    std::fs::write(path(dir), text)
}

/// Reads `.agentry/context` from the current directory or its parents.
pub fn read() -> Option<Context> {
    let mut dir = std::env::current_dir().ok()?;
    loop {
        let p = path(&dir.join(DIR));
        if let Ok(text) = std::fs::read_to_string(&p) {
            return serde_json::from_str(&text).ok();
        }
        if !dir.pop() {
            return None;
        }
    }
}

pub fn remove(dir: &Path) {
    let _ = std::fs::remove_file(path(dir));
}
