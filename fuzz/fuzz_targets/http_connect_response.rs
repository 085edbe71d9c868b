//! HTTP CONNECT answers from a proxy: never panic, heads over the cap are
//! refused, and the safe read length never passes the end of a head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prise_proto::http_connect::{self, ConnectError, END, MAX_RESPONSE_HEAD};

fuzz_target!(|data: &[u8]| {
    let r = http_connect::parse_response(data);
    if data.len() > MAX_RESPONSE_HEAD {
        assert_eq!(r, Err(ConnectError::TooLarge));
    }
    let n = http_connect::safe_read_len(data);
    assert!((1..=END.len()).contains(&n));
});
