//! `agentry agents`: the registry as a table.

use std::process::ExitCode;
use std::time::Duration;

use agentry::registry::{AgentRecord, Registry};
use chrono::Utc;

use crate::Cli;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Refresh every 2 s until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// Only agents serving this capability.
    #[arg(long)]
    pub capability: Option<String>,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let client = crate::connect(cli).await?;
    let js = async_nats::jetstream::new(client);
    let reg = Registry::open(&js).await?;
    loop {
        let mut list = reg.list().await?;
        if let Some(c) = &args.capability {
            list.retain(|r| r.capabilities.iter().any(|x| x == c));
        }
        if cli.json {
            println!("{}", serde_json::to_string(&list)?);
        } else {
            if args.watch {
                print!("\x1b[2J\x1b[H");
            }
            print!("{}", table(&list));
        }
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

pub fn table(list: &[AgentRecord]) -> String {
    let now = Utc::now();
    let mut rows = vec![vec![
        "ID".to_owned(),
        "KIND".into(),
        "CAPABILITIES".into(),
        "STATUS".into(),
        "LOAD".into(),
        "IN-FLIGHT".into(),
        "PROCESSED".into(),
        "FAILED".into(),
        "LAST HEARTBEAT".into(),
    ]];
    for r in list {
        let age = (now - r.last_heartbeat).num_milliseconds().max(0) as f64 / 1000.0;
        rows.push(vec![
            r.id.clone(),
            r.kind.clone(),
            r.capabilities.join(","),
            r.status.as_str().to_owned(),
            format!("{:.2}", r.load),
            format!("{}/{}", r.in_flight, r.capacity),
            r.processed.to_string(),
            r.failed.to_string(),
            format!("{age:.1}s ago"),
        ]);
    }
    crate::table::render(&rows)
}
