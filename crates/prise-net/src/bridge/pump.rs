//! Moves messages both ways between two [`Side`]s, with half-close.
//!
//! ```text
//!  first.reader ──▶ second.writer      (end of first: second.finish())
//!  first.writer ◀── second.reader      (end of second: first.finish(), or
//!                                       hand back for a redial)
//! ```
//!
//! Each direction ends on its own: the end of one side's messages is passed
//! on as a half-close (or a WebSocket Close) and the other direction keeps
//! going, so a peer that shuts down its sending side still gets its answer.
//! The pump returns when both directions have ended, on the first failure,
//! or after `idle` with nothing moving either way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::side::{MessageReader, MessageWriter, Side};
use crate::error::NetError;

/// After the non-datagram side ends, how long a datagram side (which has
/// no end of its own) still gets for late answers with nothing moving.
pub const DATAGRAM_LINGER: Duration = Duration::from_secs(1);

/// How a pump ended without failing.
#[derive(Debug)]
pub enum PumpEnd {
    /// Both directions ended.
    Done,
    /// The second side dropped (closed or failed) while the first was still
    /// sending; the first is intact, ready for another second side.
    SecondDropped(Option<NetError>),
}

/// Pump settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct PumpOptions {
    /// Give up when nothing moves either way for this long.
    pub idle: Option<Duration>,
    /// Hand the first side back when the second drops, instead of ending.
    pub redial_second: bool,
}

enum Fault {
    Read(NetError),
    Write(NetError),
}

struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

async fn forward(
    from: &mut MessageReader,
    to: &mut MessageWriter,
    finish: bool,
    activity: &Activity,
) -> Result<(), Fault> {
    while let Some(msg) = from.next().await.map_err(Fault::Read)? {
        activity.touch();
        if !to.send(msg).await.map_err(Fault::Write)? {
            // The receiving peer closed: nothing more goes that way.
            return Ok(());
        }
    }
    // The end of a direction counts as activity (it starts the linger).
    activity.touch();
    if finish {
        to.finish().await.map_err(Fault::Write)?;
    }
    Ok(())
}

/// Relays `first` and `second` both ways until both are done.
///
/// # Errors
/// Either side failed (unless `redial_second` and the failure is the
/// second's), or the idle timeout expired.
pub async fn pump(
    first: &mut Side,
    second: &mut Side,
    opts: PumpOptions,
) -> Result<PumpEnd, NetError> {
    let activity = Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    let redial = opts.redial_second;
    let (first_datagram, second_datagram) = (first.is_datagram(), second.is_datagram());
    let up = forward(&mut first.reader, &mut second.writer, true, &activity);
    let down = forward(&mut second.reader, &mut first.writer, !redial, &activity);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    loop {
        // A datagram side never ends by itself: the other side's end ends
        // the session (after a short wait for late datagrams).
        if down_done && first_datagram {
            return Ok(PumpEnd::Done);
        }
        let linger = up_done && second_datagram;
        let idle = async {
            match opts.idle {
                Some(d) => tokio::time::sleep_until(activity.last() + d).await,
                None => std::future::pending().await,
            }
        };
        let late = async {
            if linger {
                tokio::time::sleep_until(activity.last() + DATAGRAM_LINGER).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            r = &mut up, if !up_done => match r {
                Ok(()) => up_done = true,
                Err(Fault::Read(e)) => return Err(e),
                Err(Fault::Write(e)) if redial => return Ok(PumpEnd::SecondDropped(Some(e))),
                Err(Fault::Write(e)) => return Err(e),
            },
            r = &mut down, if !down_done => match r {
                Ok(()) if redial && !up_done => return Ok(PumpEnd::SecondDropped(None)),
                Ok(()) => down_done = true,
                Err(Fault::Read(e)) if redial && !up_done => {
                    return Ok(PumpEnd::SecondDropped(Some(e)));
                }
                Err(Fault::Read(e) | Fault::Write(e)) => return Err(e),
            },
            () = late => {
                if activity.last() + DATAGRAM_LINGER <= Instant::now() {
                    return Ok(PumpEnd::Done);
                }
            }
            () = idle => {
                // Activity may have moved the deadline since the sleep began.
                if let Some(d) = opts.idle && activity.last() + d <= Instant::now() {
                    return Err(NetError::TimedOut(format!(
                        "bridge idle for {}",
                        humantime::format_duration(d)
                    )));
                }
            }
        }
        if up_done && down_done {
            return Ok(PumpEnd::Done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::side::SideOptions;
    use crate::codec::Framing;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A side over one end of an in-memory pipe, and the other end.
    fn side(framing: Framing) -> (Side, DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(1024);
        let (r, w) = tokio::io::split(ours);
        let opts = SideOptions {
            framing,
            max_message: 64,
            text: false,
        };
        (
            Side::from_pipes(Box::new(r), Box::new(w), "peer", opts),
            theirs,
        )
    }

    #[tokio::test]
    async fn half_close_passes_through_and_answers_still_arrive() {
        let (mut a, mut a_peer) = side(Framing::Raw);
        let (mut b, mut b_peer) = side(Framing::Lines);
        let run = tokio::spawn(async move { pump(&mut a, &mut b, PumpOptions::default()).await });
        a_peer.write_all(b"question").await.unwrap();
        a_peer.shutdown().await.unwrap();
        // b sees the message as a line, then the end of its input.
        let mut got = Vec::new();
        b_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"question\n");
        // b answers after a's half-close, and ends.
        b_peer.write_all(b"answer\n").await.unwrap();
        b_peer.shutdown().await.unwrap();
        let mut answer = Vec::new();
        a_peer.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"answer");
        assert!(matches!(run.await.unwrap(), Ok(PumpEnd::Done)));
    }

    #[tokio::test]
    async fn a_dropped_second_side_is_handed_back_for_a_redial() {
        let (mut a, _a_peer) = side(Framing::Raw);
        let (mut b, b_peer) = side(Framing::Raw);
        drop(b_peer);
        let opts = PumpOptions {
            idle: None,
            redial_second: true,
        };
        let end = pump(&mut a, &mut b, opts).await.unwrap();
        assert!(matches!(end, PumpEnd::SecondDropped(None)), "{end:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_moving_ends_with_the_idle_timeout() {
        let (mut a, _a_peer) = side(Framing::Raw);
        let (mut b, _b_peer) = side(Framing::Raw);
        let opts = PumpOptions {
            idle: Some(Duration::from_secs(5)),
            redial_second: false,
        };
        let err = pump(&mut a, &mut b, opts).await.unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit_code::TIMED_OUT);
    }
}
