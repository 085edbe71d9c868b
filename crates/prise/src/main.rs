//! `prise`: one tool for socket work. This binary only parses flags, sets up
//! logging and signals, and calls the library crates.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::io::Write as _;

/// prise: a real-time messaging hub and a socket toolkit.
#[derive(Debug, Parser)]
#[command(name = "prise", version, about, propagate_version = true)]
struct Cli {
    /// Log filter (e.g. info, debug, prise_server=trace); also RUST_LOG.
    #[arg(long, global = true, env = "PRISE_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub: WebSocket, TCP lines, the web page, history and metrics.
    Serve(prise_server::ServeArgs),
    /// Load-test a hub: idle connections, fan-out, acknowledged round trips.
    Bench(prise_bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Bench(args) => {
                let mut out = std::io::stdout().lock();
                prise_bench::run(args, &mut out, &mut std::io::stderr()).await?;
                Ok(())
            }
        }
    })
}

/// A token cancelled on the first SIGINT or SIGTERM.
fn shutdown_on_signal() -> anyhow::Result<prise_server::CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = prise_server::CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        t.cancel();
    });
    Ok(token)
}

async fn serve(args: prise_server::ServeArgs) -> anyhow::Result<()> {
    let shutdown = shutdown_on_signal()?;
    prise_server::run(args, shutdown, |bound| {
        // Scripts read these two lines to find the ports.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening http {}", bound.http);
        let _ = writeln!(out, "listening tcp {}", bound.tcp);
        let _ = out.flush();
    })
    .await?;
    Ok(())
}
