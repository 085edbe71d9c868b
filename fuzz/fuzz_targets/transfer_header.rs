//! The file-transfer handshake (`prise send`/`recv`): the header and the
//! trailer a receiver reads from a sender, and the resume offer and verdict
//! a sender reads back. Never panics; a decoded name is one safe path
//! component; the size cap holds; a decoded header re-encodes and decodes to
//! itself; a trailer takes exactly its length and leaves what follows.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use prise_proto::transfer::{Header, MAX_NAME_LEN, Resume, Trailer, TransferLimits, Verdict};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let limits = TransferLimits {
        max_file_size: 1 << (u32::from(first) % 64),
    };
    // The header, fed in two parts split where the second byte says.
    let cut = rest.first().map_or(0, |&b| usize::from(b)).min(rest.len());
    let mut buf = BytesMut::from(&rest[..cut]);
    let mut header = Header::decode(&mut buf, &limits);
    if matches!(header, Ok(None)) {
        buf.extend_from_slice(&rest[cut..]);
        header = Header::decode(&mut buf, &limits);
    }
    if let Ok(Some(h)) = header {
        assert!(!h.name.is_empty() && h.name.len() <= MAX_NAME_LEN);
        assert!(!h.name.contains(['/', '\\', ':']), "unsafe name {:?}", h.name);
        assert!(!h.name.starts_with('.'), "hidden or relative name {:?}", h.name);
        assert!(!h.name.chars().any(char::is_control));
        assert!(h.size <= limits.max_file_size);
        let mut again = BytesMut::new();
        h.encode(&mut again).expect("a decoded header re-encodes");
        assert_eq!(Header::decode(&mut again, &limits), Ok(Some(h)));
        assert!(again.is_empty());
    }
    let mut buf = BytesMut::from(rest);
    if let Ok(Some(r)) = Resume::decode(&mut buf) {
        let mut again = BytesMut::new();
        r.encode(&mut again);
        assert_eq!(&again[..], &rest[..Resume::LEN]);
    }
    let mut buf = BytesMut::from(rest);
    match Trailer::decode(&mut buf) {
        Ok(Some(t)) => {
            let mut again = BytesMut::new();
            t.encode(&mut again);
            assert_eq!(&again[..], &rest[..Trailer::LEN]);
            assert_eq!(&buf[..], &rest[Trailer::LEN..]);
        }
        Ok(None) => assert_eq!(&buf[..], rest, "nothing taken from an incomplete trailer"),
        Err(_) => {}
    }
    let mut buf = BytesMut::from(rest);
    if let Ok(Some(v)) = Verdict::decode(&mut buf) {
        let mut again = BytesMut::new();
        v.encode(&mut again);
        assert_eq!(&again[..], &rest[..Verdict::LEN]);
    }
});
