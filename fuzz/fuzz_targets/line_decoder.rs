//! The TCP line decoder fed in arbitrary chunks: never panics, never yields
//! a line over the cap, never buffers more than the cap plus one chunk.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use prise_proto::line::{CommandLineDecoder, LineError};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    // First byte: the cap (1..=256) so short inputs reach the over-long path.
    let max = usize::from(first) + 1;
    let mut dec = CommandLineDecoder::new(max);
    let mut buf = BytesMut::new();
    // Chunk sizes cycle through 1, 2, 3, 5, 8, 13 bytes.
    let sizes = [1usize, 2, 3, 5, 8, 13];
    let mut i = 0;
    let mut k = 0;
    while i < rest.len() {
        let n = sizes[k % sizes.len()].min(rest.len() - i);
        k += 1;
        buf.extend_from_slice(&rest[i..i + n]);
        i += n;
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(line)) => {
                    assert!(line.len() <= max, "line over the cap");
                    assert!(!line.contains('\n'));
                }
                Ok(None) => break,
                Err(LineError::TooLong(m)) => assert_eq!(m, max),
                Err(LineError::BadUtf8) => {}
            }
        }
        assert!(buf.len() <= max + 1 + 13, "buffered {} with cap {max}", buf.len());
    }
});
