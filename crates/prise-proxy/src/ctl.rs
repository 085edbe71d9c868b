//! `prise proxy ctl ADMIN ACTION`: the command-line form of the admin API, for scripts and
//! rolling deploys (`prise proxy ctl 127.0.0.1:9100 drain 2`).
//!
//! A minimal HTTP/1.1 client over one TCP connection (`Connection: close`): the request is
//! small and fixed, the answer is read to its end, capped at [`MAX_RESPONSE`] bytes, and the
//! whole exchange is bounded by [`CTL_TIMEOUT`].

use std::fmt::Write as _;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{BackendSpec, ConfigError};

/// Largest answer read from the admin endpoint.
pub const MAX_RESPONSE: u64 = 4 * 1024 * 1024;
/// Time the whole exchange may take.
pub const CTL_TIMEOUT: Duration = Duration::from_secs(10);

/// Arguments of `prise proxy ctl`.
#[derive(Debug, Clone, clap::Args)]
pub struct CtlArgs {
    /// The proxy's admin address (its --admin), e.g. 127.0.0.1:9100.
    pub admin: String,
    /// What to do.
    #[command(subcommand)]
    pub action: CtlAction,
}

/// One control action.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CtlAction {
    /// List every backend: id, listener, address, state, health, weight, connections.
    List,
    /// No new connection to backend ID; established ones finish (until --drain-timeout).
    Drain {
        /// Backend id (see `list`) or address.
        id: String,
    },
    /// Put backend ID back into service.
    Enable {
        /// Backend id or address.
        id: String,
    },
    /// No new connection to backend ID, and close its established ones now.
    Disable {
        /// Backend id or address.
        id: String,
    },
    /// Add a backend: `host:port[,weight=N][,backup][,maxconn=N][,slowstart=D]`.
    Add {
        /// The backend, in the --backend form.
        spec: String,
        /// Listener (index from 0 or address), when the proxy has several.
        #[arg(long)]
        listener: Option<String>,
    },
    /// Drain backend ID, then remove it.
    Remove {
        /// Backend id or address.
        id: String,
    },
}

/// Why a control command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The admin endpoint could not be reached or the exchange failed.
    #[error("admin endpoint {addr}: {source}")]
    Io {
        /// The address.
        addr: String,
        /// The cause.
        source: io::Error,
    },
    /// The answer is not HTTP.
    #[error("admin endpoint sent no valid HTTP answer")]
    BadResponse,
    /// The proxy refused the request.
    #[error("{status}: {message}")]
    Refused {
        /// HTTP status code.
        status: u16,
        /// The proxy's message.
        message: String,
    },
    /// The backend spec of `add` is invalid.
    #[error(transparent)]
    Spec(#[from] ConfigError),
}

/// Runs one control action and returns the text to print.
///
/// # Errors
/// The endpoint cannot be reached, answers with an error status, or the spec is invalid.
pub async fn run(args: &CtlArgs) -> Result<String, CtlError> {
    let (method, path, body) = match &args.action {
        CtlAction::List => ("GET", "/backends".to_owned(), None),
        CtlAction::Drain { id } => ("POST", format!("/backends/{}/drain", encode(id)), None),
        CtlAction::Enable { id } => ("POST", format!("/backends/{}/enable", encode(id)), None),
        CtlAction::Disable { id } => ("POST", format!("/backends/{}/disable", encode(id)), None),
        CtlAction::Remove { id } => ("DELETE", format!("/backends/{}", encode(id)), None),
        CtlAction::Add { spec, listener } => {
            let spec = BackendSpec::parse(spec)?;
            let mut v = serde_json::to_value(&spec).unwrap_or_default();
            if let (Some(l), Some(obj)) = (listener, v.as_object_mut()) {
                obj.insert("listener".into(), l.clone().into());
            }
            ("POST", "/backends".to_owned(), Some(v.to_string()))
        }
    };
    let (status, text) = tokio::time::timeout(
        CTL_TIMEOUT,
        request(&args.admin, method, &path, body.as_deref()),
    )
    .await
    .map_err(|_| CtlError::Io {
        addr: args.admin.clone(),
        source: io::ErrorKind::TimedOut.into(),
    })??;
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if !(200..300).contains(&status) {
        let message = json
            .get("error")
            .and_then(|e| e.as_str())
            .map_or_else(|| text.trim().to_owned(), str::to_owned);
        return Err(CtlError::Refused { status, message });
    }
    Ok(match json {
        serde_json::Value::Array(items) => table(&items),
        serde_json::Value::Object(_) => table(std::slice::from_ref(&json)),
        _ => text,
    })
}

/// Percent-encodes what is not safe in a path segment (an IPv6 address's brackets).
fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b".:-_".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), CtlError> {
    let io_err = |source| CtlError::Io {
        addr: addr.to_owned(),
        source,
    };
    let mut s = TcpStream::connect(addr).await.map_err(io_err)?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.map_err(io_err)?;
    let mut raw = Vec::new();
    s.take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .await
        .map_err(io_err)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").ok_or(CtlError::BadResponse)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or(CtlError::BadResponse)?;
    Ok((status, rest.to_owned()))
}

/// Backends as a table, one line each.
fn table(items: &[serde_json::Value]) -> String {
    let mut out = String::from(
        "ID   LISTENER              ADDRESS               STATE     UP    WEIGHT ACTIVE CHECK\n",
    );
    for b in items {
        let s = |k: &str| match b.get(k) {
            Some(serde_json::Value::String(v)) => v.clone(),
            Some(serde_json::Value::Null) | None => "-".to_owned(),
            Some(v) => v.to_string(),
        };
        let check = match b.get("check") {
            Some(c) if c.get("ok").and_then(|o| o.as_bool()) == Some(true) => "ok".to_owned(),
            Some(c) if c.is_object() => c
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("failed")
                .to_owned(),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<4} {:<21} {:<21} {:<9} {:<5} {:<6} {:<6} {check}",
            s("id"),
            s("listener"),
            s("addr"),
            s("state"),
            s("up"),
            s("weight"),
            s("active"),
        );
    }
    out
}
