//! permessage-deflate, inbound: frames from a peer (compressed or not, masked
//! or not, in arbitrary chunks) through the inflating layer beneath the
//! WebSocket framing, and the extension negotiation headers. Never panics;
//! each step does bounded work; inflation never hands up more than the
//! message cap per message; negotiation yields valid window bits.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use prise_ws::deflate::{INFLATE_CHUNK, Inbound, Side};
use prise_ws::extension::{
    DeflateConfig, MAX_WINDOW_BITS, MIN_WINDOW_BITS, Negotiated, accept_offer, check_answer,
};

/// Longest frame header.
const MAX_HEADER: usize = 14;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    negotiation(rest);
    let side = if flags & 1 == 0 { Side::Server } else { Side::Client };
    let n = Negotiated {
        level: 1,
        send_window_bits: 15,
        send_no_context_takeover: false,
        recv_no_context_takeover: flags & 2 != 0,
    };
    // A small cap, so deflate bombs reach it quickly.
    let max_message = 256 + usize::from(flags >> 2) * 64;
    let mut inbound = Inbound::new(side, &n, max_message, max_message);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    let sizes = [1usize, 7, 64, 1500];
    let (mut fed, mut k, mut steps) = (0usize, 0usize, 0usize);
    while fed < rest.len() {
        let take = sizes[k % sizes.len()].min(rest.len() - fed);
        k += 1;
        input.extend_from_slice(&rest[fed..fed + take]);
        fed += take;
        loop {
            let (before_in, before_out) = (input.len(), out.len());
            if !inbound.process(&mut input, &mut out) {
                break;
            }
            steps += 1;
            assert!(steps < 1_000_000, "no progress");
            let consumed = before_in - input.len();
            let produced = out.len() - before_out;
            assert!(
                produced <= consumed + INFLATE_CHUNK + 2 * MAX_HEADER,
                "one step produced {produced} bytes from {consumed}"
            );
            // What tungstenite would have read: keep memory flat.
            if out.len() > 1 << 20 {
                out.clear();
            }
        }
        if inbound.is_poisoned() {
            return;
        }
    }
});

fn negotiation(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let header = text.lines().next().unwrap_or_default();
    let mut small = DeflateConfig::default();
    small.level = 9;
    small.max_window_bits = 9;
    small.no_context_takeover = true;
    for config in [DeflateConfig::default(), small] {
        if let Some((answer, n)) = accept_offer([header], &config) {
            assert!((MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&n.send_window_bits));
            assert!(answer.starts_with("permessage-deflate"));
            assert!(!answer.contains(['\r', '\n']));
        }
        if let Ok(Some(n)) = check_answer([header], &config) {
            assert!((MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&n.send_window_bits));
        }
    }
}
