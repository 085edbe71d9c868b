//! Engine.IO long-polling payloads and single text packets: never panic,
//! respect the caps, and a decoded text packet re-encodes to its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prise_proto::engineio::{self, Packet, PayloadLimits};

fuzz_target!(|data: &[u8]| {
    let limits = PayloadLimits {
        max_payload: 4096,
        max_packets: 16,
    };
    if let Ok(packets) = engineio::decode_payload(data, limits) {
        assert!(data.len() <= limits.max_payload);
        assert!(packets.len() <= limits.max_packets);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(p @ Packet::Text(..)) = engineio::decode_text(text)
    {
        assert_eq!(p.encode_text().as_deref(), Some(text));
    }
});
