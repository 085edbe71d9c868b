//! SOCKS5 answers from a proxy: never panic, never ask for more than
//! MAX_REPLY bytes, and a complete reply is never longer than its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prise_proto::socks5::{self, MAX_REPLY, ReplyProgress};

fuzz_target!(|data: &[u8]| {
    match socks5::connect_reply(data) {
        Ok(ReplyProgress::Need(n)) => assert!(n <= MAX_REPLY && n > data.len().min(4)),
        Ok(ReplyProgress::Done(n)) => assert!(n <= data.len() && n <= MAX_REPLY),
        Err(_) => {}
    }
    if let [a, b, ..] = *data {
        let _ = socks5::method_choice([a, b], true);
        let _ = socks5::password_status([a, b]);
    }
});
