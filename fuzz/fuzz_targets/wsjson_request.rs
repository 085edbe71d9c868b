//! The WebSocket JSON request decoder: never panics; a decoded request's
//! `id` is echoed from the input unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prise_proto::wsjson::Request;

fuzz_target!(|text: &str| {
    match Request::decode(text) {
        Ok(r) => {
            if let Some(id) = r.id {
                // The id came from a JSON object in the input.
                assert!(text.contains('{'));
                let _ = id.to_string();
            }
        }
        Err(e) => {
            let _ = e.message.len();
        }
    }
});
