//! A `prise serve` node on its own runtime and thread, so a test can kill
//! it like `kill -9`: its runtime is dropped without any graceful step.

use super::WAIT;
use prise_server::{Bound, CancellationToken, ServeArgs};

/// A node on its own runtime.
pub(crate) struct Node {
    pub bound: Bound,
    stop: Option<std::sync::mpsc::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    pub(crate) fn spawn(redis: &str, prefix: &str, extra: &[&str]) -> Node {
        let mut flags = vec![
            "--http".to_owned(),
            "127.0.0.1:0".into(),
            "--tcp".into(),
            "127.0.0.1:0".into(),
            "--redis".into(),
            redis.into(),
            "--redis-prefix".into(),
            prefix.into(),
            "--presence-ttl".into(),
            "1s".into(),
            "--shutdown-timeout".into(),
            "2s".into(),
        ];
        flags.extend(extra.iter().map(|s| (*s).to_owned()));
        let args = ServeArgs::from_flags(flags).expect("flags");
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<bool>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            let token = CancellationToken::new();
            let t = token.clone();
            let task = rt.spawn(async move {
                prise_server::run(args, t, move |b| {
                    let _ = bound_tx.send(b);
                })
                .await
            });
            // true (or the test going away): kill; false: graceful stop.
            if stop_rx.recv().unwrap_or(true) {
                rt.shutdown_background();
            } else {
                token.cancel();
                let _ = rt.block_on(task);
            }
        });
        let bound = bound_rx.recv_timeout(WAIT).expect("node starts");
        Node {
            bound,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Like `kill -9`: the runtime is dropped, nothing graceful runs.
    pub(crate) fn kill(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("node thread");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(false);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
