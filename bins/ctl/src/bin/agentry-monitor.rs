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
    // Span export (OTEL_EXPORTER_OTLP_ENDPOINT); flushed when main returns.
    let _trace = agentry::trace::init("agentry-monitor");
    let shutdown = agentry::shutdown::on_signals();
    agentry_monitor::run(cli.cfg, shutdown).await
}
