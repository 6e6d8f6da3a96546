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
            if format!("{e:#}").contains("database is locked") {
                // SQLite's write lock, held by another process past the wait: say what to do.
                eprintln!(
                    "hint: another process (a running `serve` under load, or another command) \
                     held the SQLite database's write lock longer than this command waits for \
                     it; run the command again"
                );
            }
            std::process::ExitCode::FAILURE
        }
    }
}
