use clap::Parser;

/// agentry-monitor: agent registry, liveness, queue-depth and DLQ metrics.
#[derive(Parser)]
#[command(name = "agentry-monitor", version)]
struct Cli {
    #[command(flatten)]
    cfg: agentry_monitor::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    agentry::telemetry::init_tracing(cli.cfg.observe.log_format);
    let shutdown = agentry::shutdown::on_signals();
    agentry_monitor::run(cli.cfg, shutdown).await
}
