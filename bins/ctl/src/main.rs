use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = agentry_ctl::Cli::parse();
    agentry::telemetry::init_tracing(agentry::config::LogFormat::Text);
    match agentry_ctl::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
