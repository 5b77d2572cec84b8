use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = agentry_ctl::Cli::parse();
    agentry_ctl::output::init_logging(cli.verbose, cli.is_service());
    match agentry_ctl::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            agentry_ctl::exit::for_error(&e)
        }
    }
}
