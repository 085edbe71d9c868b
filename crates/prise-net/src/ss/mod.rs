//! `prise ss`: this machine's TCP, UDP and Unix sockets, with their state
//! and queues, and for TCP the round-trip time, congestion window and
//! retransmits; `--summary` counts them per state, the way a monitoring
//! loop over `ss -tan` does.
//!
//! ```text
//! sock_diag netlink (netlink.rs) ──┐
//!        or, failing that          ├─▶ Vec<SocketInfo> ─▶ --state/--port ─▶ table | summary | JSON
//! /proc/net/* (procfs.rs) ─────────┘            (again every --watch D)
//! ```
//!
//! Netlink is read through rustix's safe socket calls and parsed as bytes,
//! so the crate stays free of `unsafe`. When it is not available (no
//! sock_diag module, a sandbox that forbids netlink) or with `--proc`, the
//! `/proc/net` files are read instead; they have no rtt or cwnd.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use serde_json::json;

pub mod netlink;
pub mod procfs;
pub mod socket;

pub use socket::{Proto, STATES, SocketInfo, TcpStats};

use crate::error::NetError;

/// Arguments of `prise ss`.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct SsArgs {
    /// Count sockets per state instead of listing them.
    #[arg(long)]
    pub summary: bool,
    /// Only sockets in this state (ESTABLISHED, LISTEN, TIME_WAIT, CLOSE_WAIT, SYN_RECV…).
    #[arg(long, value_name = "S", value_parser = parse_state)]
    pub state: Option<&'static str>,
    /// Only sockets with this local or peer port.
    #[arg(long, value_name = "P")]
    pub port: Option<u16>,
    /// Print again every D (e.g. 1s), until interrupted or --count rounds.
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    pub watch: Option<Duration>,
    /// With --watch: stop after N rounds.
    #[arg(long, value_name = "N", requires = "watch")]
    pub count: Option<u64>,
    /// JSON: one object per socket, or one summary object per round.
    #[arg(long)]
    pub json: bool,
    /// Only TCP sockets (may be combined with --udp and --unix).
    #[arg(long)]
    pub tcp: bool,
    /// Only UDP sockets.
    #[arg(long)]
    pub udp: bool,
    /// Only Unix sockets.
    #[arg(long)]
    pub unix: bool,
    /// Read /proc/net instead of the sock_diag netlink interface.
    #[arg(long)]
    pub proc: bool,
}

fn parse_state(s: &str) -> Result<&'static str, String> {
    let want = s.to_ascii_uppercase().replace('-', "_");
    let want = match want.as_str() {
        "ESTAB" => "ESTABLISHED",
        "FIN_WAIT_1" => "FIN_WAIT1",
        "FIN_WAIT_2" => "FIN_WAIT2",
        other => other,
    }
    .to_owned();
    STATES
        .iter()
        .find(|st| **st == want)
        .copied()
        .ok_or_else(|| format!("unknown state '{s}'; one of {}", STATES.join(", ")))
}

/// Where a listing came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// sock_diag netlink.
    Netlink,
    /// `/proc/net`.
    Proc,
}

/// Reads the sockets of `want`: over netlink unless `proc`, falling back
/// to `/proc/net` when netlink fails.
///
/// # Errors
/// Neither source could be read.
pub fn sockets(want: &[Proto], proc: bool) -> Result<(Vec<SocketInfo>, Source), NetError> {
    if !proc {
        match netlink::read_all(want) {
            Ok(s) => return Ok((s, Source::Netlink)),
            Err(e) => tracing::debug!(error = %e, "sock_diag unavailable; reading /proc/net"),
        }
    }
    procfs::read_all(want)
        .map(|s| (s, Source::Proc))
        .map_err(|e| NetError::io("reading /proc/net", e))
}

/// Keeps the sockets that pass `--state` and `--port`.
pub fn filter(sockets: Vec<SocketInfo>, state: Option<&str>, port: Option<u16>) -> Vec<SocketInfo> {
    sockets
        .into_iter()
        .filter(|s| state.is_none_or(|st| s.state == st))
        .filter(|s| port.is_none_or(|p| s.local_port() == Some(p) || s.peer_port() == Some(p)))
        .collect()
}

/// Counts per protocol and state.
pub fn summary(sockets: &[SocketInfo]) -> BTreeMap<Proto, BTreeMap<&'static str, usize>> {
    let mut counts: BTreeMap<Proto, BTreeMap<&'static str, usize>> = BTreeMap::new();
    for s in sockets {
        *counts
            .entry(s.proto)
            .or_default()
            .entry(s.state)
            .or_default() += 1;
    }
    counts
}

fn render(args: &SsArgs, sockets: &[SocketInfo]) -> String {
    let mut out = String::new();
    if args.summary {
        let counts = summary(sockets);
        if args.json {
            let v: serde_json::Map<String, serde_json::Value> = counts
                .iter()
                .map(|(p, states)| (p.as_str().to_owned(), json!(states)))
                .collect();
            out.push_str(&serde_json::Value::Object(v).to_string());
            out.push('\n');
        } else {
            for (proto, states) in &counts {
                let total: usize = states.values().sum();
                out.push_str(&format!("{} total: {total}\n", proto.as_str()));
                let mut by_count: Vec<_> = states.iter().collect();
                by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                for (state, n) in by_count {
                    out.push_str(&format!("  {state}: {n}\n"));
                }
            }
        }
        return out;
    }
    if args.json {
        for s in sockets {
            out.push_str(&serde_json::to_string(s).unwrap_or_default());
            out.push('\n');
        }
        return out;
    }
    out.push_str(&format!(
        "{:<5} {:<12} {:>7} {:>7} {:<40} {:<40} {}\n",
        "Proto", "State", "Recv-Q", "Send-Q", "Local", "Peer", "rtt/cwnd/retrans"
    ));
    for s in sockets {
        let tcp = s.tcp.map_or_else(String::new, |t| {
            format!(
                "{:.3}ms/{}/{}",
                f64::from(t.rtt_us) / 1000.0,
                t.cwnd,
                t.retrans
            )
        });
        out.push_str(&format!(
            "{:<5} {:<12} {:>7} {:>7} {:<40} {:<40} {}\n",
            s.proto.as_str(),
            s.state,
            s.recv_q,
            s.send_q,
            s.local,
            s.peer,
            tcp
        ));
    }
    out
}

/// Runs `prise ss`.
///
/// # Errors
/// Neither source could be read, or stdout is closed.
pub async fn run(args: SsArgs) -> Result<(), NetError> {
    let mut want = Vec::new();
    for (on, proto) in [
        (args.tcp, Proto::Tcp),
        (args.udp, Proto::Udp),
        (args.unix, Proto::Unix),
    ] {
        if on {
            want.push(proto);
        }
    }
    if want.is_empty() {
        want = vec![Proto::Tcp, Proto::Udp, Proto::Unix];
    }
    let mut round = 0u64;
    loop {
        let (want2, proc) = (want.clone(), args.proc);
        let (all, source) = tokio::task::spawn_blocking(move || sockets(&want2, proc))
            .await
            .map_err(|e| NetError::io("reading sockets", std::io::Error::other(e)))??;
        if round == 0 && source == Source::Proc {
            tracing::info!("reading /proc/net (no rtt, cwnd or retransmits)");
        }
        let shown = filter(all, args.state, args.port);
        std::io::stdout()
            .lock()
            .write_all(render(&args, &shown).as_bytes())
            .map_err(|e| NetError::io("writing output", e))?;
        round += 1;
        let Some(every) = args.watch else {
            return Ok(());
        };
        if args.count.is_some_and(|n| round >= n) {
            return Ok(());
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(proto: Proto, state: &'static str, local: &str, peer: &str) -> SocketInfo {
        SocketInfo {
            proto,
            state,
            recv_q: 0,
            send_q: 0,
            local: local.into(),
            peer: peer.into(),
            inode: 0,
            tcp: None,
        }
    }

    #[test]
    fn states_are_named_loosely() {
        assert_eq!(parse_state("time-wait"), Ok("TIME_WAIT"));
        assert_eq!(parse_state("estab"), Ok("ESTABLISHED"));
        assert!(parse_state("napping").is_err());
    }

    #[test]
    fn filters_and_counts() {
        let all = vec![
            sock(Proto::Tcp, "LISTEN", "127.0.0.1:80", "*"),
            sock(Proto::Tcp, "ESTABLISHED", "127.0.0.1:80", "127.0.0.1:5000"),
            sock(Proto::Tcp, "ESTABLISHED", "127.0.0.1:5000", "127.0.0.1:80"),
            sock(Proto::Tcp, "TIME_WAIT", "127.0.0.1:6000", "127.0.0.1:81"),
            sock(Proto::Udp, "UNCONN", "0.0.0.0:53", "*"),
        ];
        let on80 = filter(all.clone(), None, Some(80));
        assert_eq!(on80.len(), 3);
        let counts = summary(&on80);
        assert_eq!(counts[&Proto::Tcp]["ESTABLISHED"], 2);
        assert_eq!(filter(all.clone(), Some("TIME_WAIT"), None).len(), 1);
        let args = SsArgs {
            summary: true,
            state: None,
            port: None,
            watch: None,
            count: None,
            json: false,
            tcp: false,
            udp: false,
            unix: false,
            proc: false,
        };
        let text = render(&args, &all);
        assert!(
            text.starts_with("tcp total: 4\n  ESTABLISHED: 2\n"),
            "{text}"
        );
        assert!(text.contains("udp total: 1\n  UNCONN: 1\n"));
    }

    #[test]
    fn this_machine_has_sockets_in_both_sources() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        for proc in [false, true] {
            let (all, _) = sockets(&[Proto::Tcp], proc).unwrap();
            let mine = filter(all, Some("LISTEN"), Some(port));
            assert_eq!(mine.len(), 1, "proc={proc}");
        }
    }
}
