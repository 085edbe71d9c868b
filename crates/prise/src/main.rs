//! The `prise` binary: parses the command line, sets up logging and runs one command.

use clap::{Parser, Subcommand};

/// One tool for socket work.
#[derive(Debug, Parser)]
#[command(name = "prise", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// TCP reverse proxy and load balancer with health checks.
    Proxy(prise_proxy::ProxyArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Proxy(args) => prise_proxy::run(args).await?,
    }
    Ok(())
}
