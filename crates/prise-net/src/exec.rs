//! `--exec CMD`: a process per connection, its standard input fed from the
//! socket and its standard output sent to the socket.
//!
//! `CMD` runs as `sh -c CMD`, exactly as given: nothing from the peer is
//! put into the command line. The peer's address is in the environment
//! variable `PRISE_PEER`; the process's standard error is prise's.
//!
//! The process runs in a process group of its own, so a pipeline is one
//! unit: when the connection is over (both directions ended, or a failure)
//! the group gets SIGTERM, then SIGKILL after [`KILL_GRACE`], and the shell
//! is reaped. A process that already exited is only reaped. When prise
//! itself shuts down (SIGINT, SIGTERM), [`terminate_all`] sends SIGTERM to
//! every group still running, since the process exits without dropping its
//! connection tasks.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::process::{Child, Command};

use crate::bridge::side::{Side, SideOptions};
use crate::error::NetError;

/// Time a process group has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(1);

/// Process groups started and not yet reaped. An entry is removed before
/// its shell is reaped, so a group id here never names a reused pid.
static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn live() -> std::sync::MutexGuard<'static, BTreeSet<i32>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends SIGTERM to every `--exec` process group still running.
pub fn terminate_all() {
    for &group in live().iter() {
        if let Some(pid) = Pid::from_raw(group) {
            let _ = kill_process_group(pid, Signal::TERM);
        }
    }
}

/// A running `--exec` process.
#[derive(Debug)]
pub struct ExecChild {
    child: Child,
    command: String,
}

/// Starts `sh -c command` for `peer` and returns it with the side that
/// talks to its pipes.
///
/// # Errors
/// The shell could not be started.
pub fn spawn(command: &str, peer: &str, opts: SideOptions) -> Result<(Side, ExecChild), NetError> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("PRISE_PEER", peer)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| NetError::io(format!("starting sh -c {command:?}"), e))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        // Both were set to piped just above, so both are present.
        return Err(NetError::Usage("the process has no pipes".into()));
    };
    tracing::debug!(pid = child.id(), %peer, command, "started");
    if let Some(id) = child.id().and_then(|id| i32::try_from(id).ok()) {
        live().insert(id);
    }
    let side = Side::from_pipes(
        Box::new(stdout),
        Box::new(stdin),
        &format!("sh -c {command:?}"),
        opts,
    );
    Ok((
        side,
        ExecChild {
            child,
            command: command.to_owned(),
        },
    ))
}

impl ExecChild {
    fn forget(&self) {
        if let Some(id) = self.child.id().and_then(|id| i32::try_from(id).ok()) {
            live().remove(&id);
        }
    }

    /// Ends the process group (if it still runs) and reaps the shell.
    pub async fn end(mut self) {
        self.forget();
        if let Ok(Some(status)) = self.child.try_wait() {
            tracing::debug!(%status, command = self.command, "exited");
            return;
        }
        let group = self
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw);
        if let Some(group) = group {
            let _ = kill_process_group(group, Signal::TERM);
        }
        match tokio::time::timeout(KILL_GRACE, self.child.wait()).await {
            Ok(status) => tracing::debug!(?status, command = self.command, "ended"),
            Err(_) => {
                if let Some(group) = group {
                    let _ = kill_process_group(group, Signal::KILL);
                }
                let _ = self.child.kill().await;
            }
        }
    }
}

/// A child dropped without [`ExecChild::end`] (its task was cancelled) is
/// killed by tokio (`kill_on_drop`); it leaves the registry first.
impl Drop for ExecChild {
    fn drop(&mut self) {
        self.forget();
    }
}
