use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = agentry_ctl::Cli::parse();
    if !cli.is_service() {
        // `agentry agents | head` ends quietly, as Unix tools do, instead of
        // panicking on a closed stdout. Not for `up` and `bench`, which hold
        // many sockets for a long time and must see write errors as errors.
        sigpipe::reset();
    }
    agentry_ctl::output::init_logging(cli.verbose, cli.logs_at_info());
    // `up` and `bench` host components in-process: their spans are exported
    // when OTEL_EXPORTER_OTLP_ENDPOINT is set (flushed when main returns).
    let _trace = cli.is_service().then(|| agentry::trace::init("agentry"));
    match agentry_ctl::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            agentry_ctl::exit::for_error(&e)
        }
    }
}
