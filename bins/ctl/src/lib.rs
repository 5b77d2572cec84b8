//! `agentry`: the command line. `up` runs the whole system in one process
//! tree; the other commands talk to a running system over NATS.

use std::process::ExitCode;

use agentry::config;
use clap::{Parser, Subcommand};

mod agents;
pub mod bench;
mod check;
mod completions;
mod components;
pub mod console;
pub mod context;
mod dlq;
pub mod exit;
mod input;
pub mod mcp;
pub mod nats_child;
pub mod output;
mod setup;
pub mod status;
mod submit;
mod table;
mod up;
mod watch;
mod weather_dns;
pub mod workflow;

/// agentry: an event-driven multi-agent system on NATS JetStream.
#[derive(Debug, Parser)]
#[command(
    name = "agentry",
    version,
    about,
    propagate_version = true,
    after_help = exit::HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub nats: config::Nats,
    /// Machine-readable JSON output instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr: -v info, -vv debug (RUST_LOG, when set, decides instead).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything: a private nats-server (unless --nats-url), the topology, engine, monitor and agents.
    Up(Box<up::Args>),
    /// Create or update the JetStream topology (idempotent).
    Setup(setup::Args),
    /// Submit a task or workflow request and print its result.
    Submit(submit::Args),
    /// List registered agents (id, capabilities, status, load, heartbeat).
    Agents(agents::Args),
    /// Health, readiness, agents, queues, runs and DLQ in one view.
    Status(status::Args),
    /// Load test: N requests at C in flight; throughput, percentiles, RSS.
    Bench(bench::Args),
    /// Production readiness checks against a running system (table; non-zero exit on failure).
    Check(check::Args),
    /// Live tail of lifecycle events.
    Watch(watch::Args),
    /// Inspect and replay dead letters.
    #[command(subcommand)]
    Dlq(dlq::Command),
    /// Workflow definitions and runs: put, list, get, run, runs, show, signal, cancel.
    #[command(subcommand)]
    Workflow(workflow::Command),
    /// Serve the web console (agents, submit) for the system at --nats-url.
    Console(console::Args),
    /// Serve the live capabilities and stored workflows as MCP tools (stdio or Streamable HTTP).
    Mcp(mcp::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::Args),
}

impl Cli {
    /// Whether this command runs services (and so logs at info by default).
    pub fn is_service(&self) -> bool {
        matches!(
            self.command,
            Command::Up(_) | Command::Bench(_) | Command::Console(_) | Command::Mcp(_)
        )
    }

    /// Whether the command logs at info without `-v`: the services a person
    /// watches (`up`, `console`, `mcp`). Not `bench`: its client's
    /// connection messages would land between the rows of its figures.
    pub fn logs_at_info(&self) -> bool {
        self.is_service() && !matches!(self.command, Command::Bench(_))
    }

    /// The NATS config, falling back to `.agentry/context` when no URL is given.
    pub fn nats_config(&self) -> config::Nats {
        let mut cfg = self.nats.clone();
        if cfg.url.is_none()
            && std::env::var_os("NATS_URL").is_none()
            && let Some(ctx) = context::read()
        {
            cfg.url = Some(ctx.nats_url);
        }
        cfg
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Up(args) => up::run(&cli, args).await,
        Command::Setup(args) => setup::run(&cli, args).await,
        Command::Submit(args) => submit::run(&cli, args).await,
        Command::Agents(args) => agents::run(&cli, args).await,
        Command::Watch(args) => watch::run(&cli, args).await,
        Command::Check(args) => check::run(&cli, args).await,
        Command::Bench(args) => bench::run(&cli, args).await,
        Command::Status(args) => status::run(&cli, args).await,
        Command::Dlq(cmd) => dlq::run(&cli, cmd).await,
        Command::Workflow(cmd) => workflow::run(&cli, cmd).await,
        Command::Console(args) => console::run(&cli, args).await,
        Command::Mcp(args) => mcp::run(&cli, args).await,
        Command::Completions(args) => completions::run(args),
    }
}

/// Connects for a one-shot command, with a clear error.
pub async fn connect(cli: &Cli) -> anyhow::Result<async_nats::Client> {
    let cfg = cli.nats_config();
    Ok(agentry::connect::connect_once(&cfg, "agentry-cli").await?)
}
