//! The `prise` command line: parses flags, sets up tracing, and calls the
//! library function of the chosen command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// prise: sockets made simple — a messaging hub and a network toolkit.
#[derive(Debug, Parser)]
#[command(name = "prise", version, about, propagate_version = true)]
struct Cli {
    /// Log filter (e.g. `info`, `prise_net=debug`); also `RUST_LOG`.
    #[arg(long, global = true, env = "RUST_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect stdin/stdout to tcp://, tls://, udp://, ws://, wss:// or unix: URLs.
    Connect(prise_net::connect::ConnectArgs),
    /// Listen on a URL and relay the peer with stdin/stdout.
    Listen(prise_net::listen::ListenArgs),
    /// Echo server for TCP, TLS, UDP, WebSocket and Unix sockets.
    Echo(prise_net::echo::EchoArgs),
    /// Send a file (name, size, BLAKE3 hash; resumable).
    Send(prise_net::transfer::SendArgs),
    /// Receive files into a directory, verified.
    Recv(prise_net::transfer::RecvArgs),
    /// Check that endpoints are up and measure connect/handshake latency.
    Probe(prise_net::probe::ProbeArgs),
    /// Find prise services on the LAN (UDP broadcast).
    Discover(prise_net::discover::DiscoverArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("prise: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async {
        match cli.command {
            Command::Connect(a) => prise_net::connect::run(a).await.map_err(Into::into),
            Command::Listen(a) => prise_net::listen::run(a).await.map_err(Into::into),
            Command::Echo(a) => prise_net::echo::run(a).await.map_err(Into::into),
            Command::Send(a) => prise_net::transfer::send_run(a).await.map_err(Into::into),
            Command::Recv(a) => prise_net::transfer::recv_run(a).await.map_err(Into::into),
            Command::Probe(a) => prise_net::probe::run(a).await.map_err(Into::into),
            Command::Discover(a) => prise_net::discover::run(a).await.map_err(Into::into),
        }
    });
    // Standard input is read on a blocking thread that may never return;
    // do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prise: {e:#}");
            let code = e
                .downcast_ref::<prise_net::NetError>()
                .map_or(1, prise_net::NetError::exit_code);
            ExitCode::from(code)
        }
    }
}
