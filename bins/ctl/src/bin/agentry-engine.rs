use clap::Parser;

/// agentry-engine: request router and workflow engine.
#[derive(Parser)]
#[command(name = "agentry-engine", version)]
struct Cli {
    #[command(flatten)]
    cfg: agentry_engine::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    agentry::telemetry::init_tracing(cli.cfg.observe.log_format);
    // Span export (OTEL_EXPORTER_OTLP_ENDPOINT); flushed when main returns.
    let _trace = agentry::trace::init("agentry-engine");
    let shutdown = agentry::shutdown::on_signals();
    agentry_engine::run(cli.cfg, shutdown).await
}
