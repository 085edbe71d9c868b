//! The line protocol's encoders: whatever text a peer put in a token, a
//! name or a message, each answer is exactly one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prise_proto::line::encode;

fuzz_target!(|text: &str| {
    for write in [
        |o: &mut String, t: &str| encode::error(o, "BAD_REQUEST", t),
        |o: &mut String, t: &str| encode::bye(o, Some(t)),
        |o: &mut String, t: &str| encode::pong(o, Some(t)),
    ] {
        let mut out = String::new();
        write(&mut out, text);
        assert!(out.ends_with('\n'));
        assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        assert!(!out.contains('\r'));
    }
});
