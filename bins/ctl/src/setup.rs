//! `agentry setup`: create or update the JetStream topology.

use std::process::ExitCode;

use agentry::topology::{self, Change, Settings, Topology};

use crate::Cli;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub settings: Settings,
    /// Write the topology as `nats` CLI JSON files into this directory instead of applying it.
    #[arg(long, value_name = "DIR")]
    pub write_cli_files: Option<std::path::PathBuf>,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let topo = Topology::new(&args.settings);
    if let Some(dir) = &args.write_cli_files {
        for (rel, text) in topo.cli_files() {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, text)?;
        }
        println!(
            "wrote {} files under {}",
            topo.cli_files().len(),
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let client = crate::connect(cli).await?;
    let js = async_nats::jetstream::new(client);
    match topology::ensure(&js, &topo).await {
        Ok(report) => {
            print_report(&report, cli.json);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("setup failed: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

pub fn print_report(report: &topology::Report, json: bool) {
    if json {
        let items: Vec<_> = report
            .items
            .iter()
            .map(|(name, c)| {
                let (change, fields) = match c {
                    Change::Created => ("created", vec![]),
                    Change::Updated(f) => ("updated", f.clone()),
                    Change::Unchanged => ("unchanged", vec![]),
                };
                serde_json::json!({"object": name, "change": change, "fields": fields})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"changed": report.changed(), "items": items})
        );
        return;
    }
    for (name, c) in &report.items {
        match c {
            Change::Created => println!("  created    {name}"),
            Change::Updated(f) => println!("  updated    {name} ({})", f.join(", ")),
            Change::Unchanged => {}
        }
    }
    if report.changed() {
        let n = report
            .items
            .iter()
            .filter(|(_, c)| *c != Change::Unchanged)
            .count();
        println!(
            "topology: {n} of {} objects created or updated",
            report.items.len()
        );
    } else {
        println!(
            "topology: all {} objects already up to date, nothing changed",
            report.items.len()
        );
    }
}
