//! `prise`: one tool for socket work. This binary only parses flags, sets up
//! logging and signals, and calls the library crates.
#![warn(clippy::unwrap_used)]

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

/// `prise serve`: the hub's settings plus LAN discovery.
#[derive(Debug, clap::Args)]
struct ServeCmd {
    #[command(flatten)]
    serve: prise_server::ServeArgs,
    #[command(flatten)]
    announce: prise_net::discover::AnnounceArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub: Socket.IO, WebSocket, TCP lines, the web page, history and metrics.
    Serve(ServeCmd),
    /// Connect stdin/stdout (or a process, --exec) to tcp://, tls://, udp://, ws://, wss:// or unix: URLs.
    Connect(prise_net::connect::ConnectArgs),
    /// Listen on a URL and relay peers with stdin/stdout.
    Listen(prise_net::listen::ListenArgs),
    /// Accept on one URL and relay each connection to another (e.g. ws:// to tcp://).
    Bridge(prise_net::bridge::BridgeArgs),
    /// Echo server for TCP, TLS, UDP, WebSocket and Unix sockets.
    Echo(prise_net::echo::EchoArgs),
    /// Send a file (name, size, BLAKE3 hash; resumable).
    Send(prise_net::transfer::SendArgs),
    /// Receive files into a directory, verified.
    Recv(prise_net::transfer::RecvArgs),
    /// HTTP/1.1 forward proxy (absolute-form requests and CONNECT) with an access log.
    HttpProxy(prise_net::http_proxy::HttpProxyArgs),
    /// TCP reverse proxy and load balancer with health checks.
    Proxy(Box<prise_proxy::ProxyArgs>),
    /// Check that endpoints are up and measure connect/handshake latency.
    Probe(prise_net::probe::ProbeArgs),
    /// This machine's TCP, UDP and Unix sockets: state, queues, rtt; --summary counts per state.
    Ss(prise_net::ss::SsArgs),
    /// Find prise services on the LAN (UDP broadcast).
    Discover(prise_net::discover::DiscoverArgs),
    /// Load-test a hub: idle connections, fan-out, acknowledged round trips.
    Bench(prise_bench::BenchArgs),
    /// The configuration file of `prise serve`.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print a shell completion script (e.g. `prise completions bash > /etc/bash_completion.d/prise`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the manual page prise(1), or write one page per command into a directory.
    Man {
        /// Write prise.1 and prise-COMMAND.1 into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

/// The shells `prise completions` writes scripts for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// `prise completions SHELL`: the script on stdout.
fn completions(shell: CompletionShell) -> anyhow::Result<()> {
    use clap::CommandFactory as _;
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut Cli::command(), "prise", &mut out);
    out.flush()?;
    Ok(())
}

/// `prise man [--dir DIR]`.
fn man(dir: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    use clap::CommandFactory as _;
    let cmd = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing manual pages into {}", dir.display()))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            out.flush()?;
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Print the whole file: every setting with its default, flag and variable.
    Default,
    /// Check a file: every key known, every value valid.
    Check {
        /// The TOML file.
        file: std::path::PathBuf,
    },
}

/// The `serve` subcommand as clap knows it: the keys of its configuration file.
fn serve_command() -> clap::Command {
    use clap::CommandFactory as _;
    Cli::command()
        .find_subcommand("serve")
        .cloned()
        .expect("serve is a subcommand")
}

/// Parses the command line; for `serve --config FILE`, parses it again with
/// the file's settings under the flags given.
fn parse_cli() -> Cli {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = Cli::parse_from(&argv);
    let Command::Serve(cmd) = &cli.command else {
        return cli;
    };
    let Some(path) = cmd.serve.config.clone() else {
        return cli;
    };
    let at = argv
        .iter()
        .position(|a| a == "serve")
        .map_or(argv.len(), |i| i + 1);
    let parsed = prise_server::config_file::with_file(&serve_command(), argv, at, &path)
        .and_then(|argv| Ok((argv, prise_server::policy_file::policies(&path)?)));
    match parsed {
        Ok((argv, policies)) => {
            let mut cli = Cli::parse_from(argv);
            if let Command::Serve(cmd) = &mut cli.command {
                cmd.serve.policies = std::sync::Arc::new(policies);
            }
            cli
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "prise: {e}");
            std::process::exit(2);
        }
    }
}

/// `prise config default|check`.
fn config(cmd: ConfigCmd) -> anyhow::Result<()> {
    match cmd {
        ConfigCmd::Default => {
            let text = prise_server::config_file::default_file(&serve_command());
            std::io::stdout().write_all(text.as_bytes())?;
        }
        ConfigCmd::Check { file } => {
            let checked = prise_server::config_file::file_flags(&serve_command(), &file, &[])
                .and_then(|f| prise_server::policy_file::policies(&file).map(|_| f));
            let flags = match checked {
                Ok(flags) => flags,
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "prise: {e}");
                    std::process::exit(2);
                }
            };
            let mut argv = vec![std::ffi::OsString::from("prise"), "serve".into()];
            argv.extend(flags);
            if let Err(e) = Cli::try_parse_from(argv) {
                e.exit();
            }
            writeln!(std::io::stdout(), "{}: ok", file.display())?;
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = parse_cli();
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
            Command::Serve(cmd) => serve(cmd).await,
            Command::Proxy(args) => proxy(*args).await,
            Command::Bench(args) => {
                let mut out = std::io::stdout().lock();
                prise_bench::run(args, &mut out, &mut std::io::stderr()).await?;
                Ok(())
            }
            Command::Connect(a) => toolkit(prise_net::connect::run(a).await),
            Command::Listen(a) => toolkit(prise_net::listen::run(a).await),
            Command::Bridge(a) => toolkit(prise_net::bridge::run(a).await),
            Command::Echo(a) => toolkit(prise_net::echo::run(a).await),
            Command::Send(a) => toolkit(prise_net::transfer::send_run(a).await),
            Command::Recv(a) => toolkit(prise_net::transfer::recv_run(a).await),
            Command::HttpProxy(a) => toolkit(prise_net::http_proxy::run(a).await),
            Command::Probe(a) => toolkit(prise_net::probe::run(a).await),
            Command::Ss(a) => toolkit(prise_net::ss::run(a).await),
            Command::Discover(a) => toolkit(prise_net::discover::run(a).await),
            Command::Config(cmd) => config(cmd),
            Command::Completions { shell } => completions(shell),
            Command::Man { dir } => man(dir),
        }
    })
}

/// `prise proxy`: run the proxy, or with `ctl`, control a running one and print the answer.
async fn proxy(args: prise_proxy::ProxyArgs) -> anyhow::Result<()> {
    match &args.command {
        Some(prise_proxy::ProxyCommand::Ctl(ctl)) => {
            let out = prise_proxy::ctl::run(ctl).await?;
            std::io::stdout()
                .write_all(out.as_bytes())
                .context("cannot write to stdout")?;
            Ok(())
        }
        None => Ok(prise_proxy::run(args).await?),
    }
}

/// Ends a toolkit command with its documented exit code (docs/toolkit.md) and
/// one line on stderr. Exits at once: standard input may be held by a
/// blocking read that would otherwise delay the runtime's shutdown.
fn toolkit(result: Result<(), prise_net::NetError>) -> ! {
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "prise: {e}");
            std::process::exit(i32::from(e.exit_code()))
        }
    }
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

async fn serve(cmd: ServeCmd) -> anyhow::Result<()> {
    let shutdown = shutdown_on_signal()?;
    let announce_shutdown = shutdown.clone();
    let announce = cmd.announce;
    prise_server::run(cmd.serve, shutdown, move |bound| {
        // Scripts read these two lines to find the ports.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening http {}", bound.http);
        let _ = writeln!(out, "listening tcp {}", bound.tcp);
        let _ = out.flush();
        if let Some(name) = &announce.announce {
            let endpoint = format!("ws://{}/ws", bound.http).parse();
            let started = endpoint.and_then(|ep| {
                let a = prise_net::discover::Announcement::new(name, "serve", &ep, bound.http);
                prise_net::discover::spawn_announcer(a, announce.discovery_port, announce_shutdown)
            });
            if let Err(e) = started {
                tracing::warn!(error = %e, "cannot announce on the LAN");
            }
        }
    })
    .await?;
    Ok(())
}
