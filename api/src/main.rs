#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = ml_connector::cli::Cli::parse();
    match ml_connector::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole cause chain on one line: what failed and why.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
