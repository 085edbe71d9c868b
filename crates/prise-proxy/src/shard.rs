//! Relay threads: a fixed set of single-threaded tokio runtimes, one OS thread each.
//!
//! A relayed connection is a chain of tiny wake-ups (readable, splice, splice, readable...).
//! On a work-stealing runtime each wake-up may hop to another worker and unpark it, which
//! costs more than the splice itself for small request/response traffic. Here a connection
//! lives its whole life on one event loop (the HAProxy/nginx model): the accept loop hands
//! the socket over, round-robin, and never touches it again.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// The relay threads of one running proxy; dropping it stops them (tasks still running are
/// dropped, so drain before).
pub(crate) struct Shards {
    handles: Vec<Handle>,
    next: AtomicUsize,
    _stop: Vec<oneshot::Sender<()>>,
}

impl Shards {
    /// Starts `n` threads (at least one).
    ///
    /// # Errors
    /// A runtime or thread could not be created.
    pub(crate) fn start(n: usize) -> io::Result<Self> {
        let n = n.max(1);
        let mut handles = Vec::with_capacity(n);
        let mut stop = Vec::with_capacity(n);
        for i in 0..n {
            let rt = Builder::new_current_thread().enable_all().build()?;
            handles.push(rt.handle().clone());
            let (tx, rx) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("prise-proxy-{i}"))
                .spawn(move || {
                    // Runs until the sender drops, then drops the runtime on this thread.
                    rt.block_on(async move {
                        let _ = rx.await;
                    });
                })?;
            stop.push(tx);
        }
        Ok(Self {
            handles,
            next: AtomicUsize::new(0),
            _stop: stop,
        })
    }

    /// The runtime of the next thread in turn.
    pub(crate) fn next(&self) -> &Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }
}
