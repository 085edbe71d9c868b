//! The hub's Socket.IO event decoder: never panics on any event name and
//! arguments; a decoded event is one of the vocabulary, an unknown name is
//! cut to at most 64 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prise_proto::sio_events::{ClientEvent, EventError};

fuzz_target!(|input: &str| {
    // `name\nJSON array of arguments`, as a Socket.IO EVENT carries them.
    let (name, rest) = input.split_once('\n').unwrap_or((input, "[]"));
    let mut args: Vec<serde_json::Value> = serde_json::from_str(rest).unwrap_or_default();
    match ClientEvent::decode(name, &mut args) {
        Ok(e) => {
            let _ = (e.is_chat(), e.has_ack());
        }
        Err(EventError::Unknown(n)) => {
            assert!(n.len() <= 64);
            assert!(name.starts_with(&n));
        }
    }
});
