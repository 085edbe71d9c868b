//! The seam between one Engine.IO server and the other servers of a cluster
//! that shares no sticky sessions.
//!
//! A long-polling session is a series of HTTP requests that must all reach
//! the server holding the session's queue. Behind a balancer without sticky
//! sessions they land anywhere, so the engine tells a [`SessionCluster`]
//! which sessions it holds ([`claim`](SessionCluster::claim) before the
//! handshake is answered, [`release`](SessionCluster::release) once the
//! session is gone) and hands it every request naming a session it does not
//! hold ([`forward`](SessionCluster::forward)). How the owner is found and
//! reached is the implementation's business (the `prise serve` one uses
//! Redis and HTTP); this crate stays free of both.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, Response};

use crate::handler::BoxFuture;

/// The other servers of a cluster, as one Engine.IO server sees them.
///
/// Every method must be bounded in time: the engine awaits them while a
/// client waits for its answer.
pub trait SessionCluster: Send + Sync + 'static {
    /// A polling session opened here; the handshake is answered once this
    /// completes, so a client's next request can already be routed to this
    /// server from any other. A failure is the implementation's to log: the
    /// session still works on this server.
    fn claim<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, ()>;

    /// A session this server claimed is gone.
    fn release<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, ()>;

    /// A request names session `sid`, which this server does not hold.
    /// `Some(response)` when the server holding it answered; `None` when no
    /// live server holds it (or the request was already forwarded once):
    /// the engine then answers `Session ID unknown`, and the client starts a
    /// new session.
    fn forward(&self, sid: &str, req: Request<Body>) -> BoxFuture<'static, Option<Response<Body>>>;
}

/// A shared cluster handle.
pub type SharedCluster = Arc<dyn SessionCluster>;

/// Most bytes of a session id worth looking up elsewhere: ours are 20
/// characters; anything longer or outside base64url is not one of ours.
const MAX_SID_LEN: usize = 64;

/// Whether `sid` could have been issued by an engine (base64url, bounded).
pub(crate) fn plausible_sid(sid: &str) -> bool {
    !sid.is_empty()
        && sid.len() <= MAX_SID_LEN
        && sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plausible_sids_are_forwarded() {
        assert!(plausible_sid("AbC-_09xyzAbC-_09xyz"));
        assert!(!plausible_sid(""));
        assert!(!plausible_sid("a%20b"));
        assert!(!plausible_sid("a/b"));
        assert!(!plausible_sid(&"a".repeat(65)));
    }
}
