//! The one harness behind the integration tests of the prise crates: real
//! sockets on loopback, real processes, and a bound on every wait.
//!
//! # Design
//! Each helper owns one concept and is written once:
//!
//! - [`wait`]: the default bound ([`WAIT`]) and waiting for state that has
//!   no event ([`eventually`]);
//! - [`listener`]: free ports and waiting for a listener to open or close;
//! - [`line`](mod@line): a client of line protocols ([`LineClient`]: send a line, read
//!   one with a timeout, read until a prefix);
//! - [`http`]: one raw HTTP/1.1 request per connection ([`HttpRequest`] →
//!   [`HttpResponse`]: status, head, body);
//! - [`websocket`]: a WebSocket client that speaks JSON ([`WsClient`]) and a
//!   hand-written upgrade for what a client library refuses to send
//!   ([`raw_upgrade`]);
//! - [`process`]: a child process whose output lines are read on threads, so
//!   that a test can wait (bounded) for its `listening` lines;
//! - [`dir`]: temporary directories with files in them;
//! - [`stream`]: reading a stream to its end, a half-closed exchange;
//! - `server` (feature `server`): `prise serve` in process, nodes of a
//!   cluster on their own runtimes, and a `redis-server` launcher;
//! - `jwt` (feature `jwt`), `tls` (feature `tls`).
//!
//! ```text
//! test ──LineClient──▶ tcp listener ─┐
//!      ──WsClient────▶ http listener ├─ TestServer / Node / ChildProcess
//!      ──HttpRequest─▶ http listener ┘
//! ```
//!
//! Helpers panic with a message saying what did not happen in time: a test
//! fails where it waited, and never hangs.

pub mod dir;
pub mod http;
#[cfg(feature = "jwt")]
pub mod jwt;
pub mod line;
pub mod listener;
pub mod process;
#[cfg(feature = "server")]
pub mod server;
pub mod sse;
pub mod stream;
#[cfg(feature = "tls")]
pub mod tls;
pub mod wait;
pub mod websocket;

pub use dir::TestDir;
pub use http::{HttpRequest, HttpResponse};
pub use line::LineClient;
pub use listener::{free_tcp_port, free_udp_port, wait_until_accepting, wait_until_refusing};
pub use process::ChildProcess;
pub use wait::{WAIT, eventually};
pub use websocket::{WsClient, raw_upgrade};
