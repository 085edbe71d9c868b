//! The toolkit's framings (`--framing lines|length`) fed in arbitrary
//! chunks: never panic, never yield a frame over the cap, never buffer more
//! than one frame plus one chunk, and re-encoding what was decoded gives back
//! exactly the bytes that were consumed.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use prise_proto::framing::{DecodeError, LENGTH_PREFIX_LEN, LengthDecoder, NewlineDecoder};

/// Chunk sizes cycle through these, so frames straddle reads.
const SIZES: [usize; 6] = [1, 2, 3, 5, 8, 13];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    // Low bit: which framing; the rest: the cap (0..=127) so short inputs
    // reach the over-long paths.
    let max = usize::from(first >> 1);
    if first & 1 == 0 {
        lines(max, rest);
    } else {
        lengths(max, rest);
    }
});

fn lines(max: usize, input: &[u8]) {
    let mut dec = NewlineDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut consumed = 0usize;
    let mut fed = 0usize;
    let mut k = 0;
    while fed < input.len() {
        let n = SIZES[k % SIZES.len()].min(input.len() - fed);
        k += 1;
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        loop {
            let before = buf.len();
            match dec.decode(&mut buf) {
                Ok(Some(line)) => {
                    assert!(line.len() <= max, "line over the cap");
                    assert!(!line.contains(&b'\n'));
                    let taken = before - buf.len();
                    let raw = &input[consumed..consumed + taken];
                    // The consumed bytes are the line plus `\n` or `\r\n`.
                    assert_eq!(&raw[..line.len()], &line[..]);
                    assert!(raw[line.len()..] == *b"\n" || raw[line.len()..] == *b"\r\n");
                    consumed += taken;
                }
                Ok(None) => break,
                Err(DecodeError::LineTooLong { max: m }) => {
                    assert_eq!(m, max);
                    return;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert!(buf.len() <= max + 2 + 13, "buffered {} with cap {max}", buf.len());
    }
    if let Ok(Some(last)) = dec.decode_eof(&mut buf) {
        assert!(last.len() <= max);
    }
}

fn lengths(max: usize, input: &[u8]) {
    let mut dec = LengthDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut reencoded = BytesMut::new();
    let mut fed = 0usize;
    let mut k = 0;
    while fed < input.len() {
        let n = SIZES[k % SIZES.len()].min(input.len() - fed);
        k += 1;
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max, "frame over the cap");
                    dec.encode(&frame, &mut reencoded).expect("a decoded frame re-encodes");
                }
                Ok(None) => break,
                Err(DecodeError::FrameTooLarge { len, max: m }) => {
                    assert_eq!(m, max);
                    assert!(len > max);
                    return;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert!(buf.len() < LENGTH_PREFIX_LEN + max + 13, "buffered {} with cap {max}", buf.len());
        let consumed = fed - buf.len();
        assert_eq!(&reencoded[..], &input[..consumed], "re-encoding differs");
    }
}
