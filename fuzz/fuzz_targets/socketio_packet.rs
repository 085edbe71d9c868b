//! Socket.IO packet text: never panics, respects the attachment and
//! namespace caps, and a decoded packet's header survives encode → decode.
//! (Its JSON data is not compared: serde_json's default float parsing is
//! not correctly rounded, so a number with a very long mantissa can come
//! back one ulp off.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use prise_proto::socketio::{self, PacketLimits};

fuzz_target!(|text: &str| {
    let limits = PacketLimits {
        max_attachments: 4,
        max_attachment_bytes: 1 << 16,
        max_namespace_len: 32,
    };
    if let Ok(p) = socketio::decode(text, &limits) {
        assert!(p.attachments <= limits.max_attachments);
        assert!(p.nsp.len() <= limits.max_namespace_len);
        let again = socketio::decode(&p.encode(), &limits).expect("re-encoded packet decodes");
        assert_eq!(
            (again.kind, &again.nsp, again.id, again.attachments),
            (p.kind, &p.nsp, p.id, p.attachments)
        );
        assert_eq!(again.data.is_some(), p.data.is_some());
    }
});
