use clap::Parser;

/// agentry-agent: runs built-in agents on NATS JetStream.
#[derive(Parser)]
#[command(name = "agentry-agent", version)]
struct Cli {
    #[command(flatten)]
    cfg: agentry_agent::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    agentry::telemetry::init_tracing(cli.cfg.observe.log_format);
    // Span export (OTEL_EXPORTER_OTLP_ENDPOINT); flushed when main returns.
    let _trace = agentry::trace::init("agentry-agent");
    let shutdown = agentry::shutdown::on_signals();
    agentry_agent::run(cli.cfg, shutdown).await
}
