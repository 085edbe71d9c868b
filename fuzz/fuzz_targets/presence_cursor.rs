//! The presence cursor a client sends back (`after`): never panics, refuses
//! anything over the cap, and a cursor that decodes encodes back to the
//! same position.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prise_proto::presence::{Cursor, MAX_CURSOR};

fuzz_target!(|text: &str| {
    if let Ok(c) = Cursor::decode(text) {
        assert!(text.len() <= MAX_CURSOR);
        assert_eq!(Cursor::decode(&c.encode()), Ok(c));
    }
});
