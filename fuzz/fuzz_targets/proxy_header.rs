//! PROXY protocol headers from a balancer: never panic, never ask for a byte
//! past MAX_HEADER, and a whole header is exactly the bytes asked for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prise_proto::proxy_header::{Decoded, MAX_HEADER, decode};

fuzz_target!(|data: &[u8]| {
    let mut have = 0;
    loop {
        match decode(&data[..have]) {
            Err(_) => break,
            Ok(Decoded::Header { len, .. }) => {
                assert_eq!(len, have);
                break;
            }
            Ok(Decoded::Need(n)) => {
                assert!(n > 0 && have + n <= MAX_HEADER);
                if have + n > data.len() {
                    break;
                }
                have += n;
            }
        }
    }
});
