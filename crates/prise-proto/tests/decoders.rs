//! Property tests of the sans-IO decoders: arbitrary input never panics
//! and never makes them buffer past their caps; encoded frames decode back
//! whatever way the stream is cut.

use bytes::BytesMut;
use prise_proto::framing::{LengthDecoder, NewlineDecoder};
use prise_proto::transfer::{Header, Resume, TransferLimits, Verdict};
use proptest::prelude::*;

/// Feeds `wire` to `decode` in pieces cut at `cuts`, collecting frames.
fn feed<T, E>(
    wire: &[u8],
    cuts: &[usize],
    mut decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, E>,
) -> Result<Vec<T>, E> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    points.push(wire.len());
    points.sort_unstable();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    for p in points {
        buf.extend_from_slice(&wire[at..p]);
        at = p;
        while let Some(frame) = decode(&mut buf)? {
            out.push(frame);
        }
    }
    Ok(out)
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let mut lines = NewlineDecoder::new(64);
        if let Ok(frames) = feed(&data, &cuts, |b| lines.decode(b)) {
            prop_assert!(frames.iter().all(|f| f.len() <= 64));
        }
        let mut length = LengthDecoder::new(256);
        if let Ok(frames) = feed(&data, &cuts, |b| length.decode(b)) {
            prop_assert!(frames.iter().all(|f| f.len() <= 256));
        }
        let limits = TransferLimits::default();
        let _ = feed(&data, &cuts, |b| Header::decode(b, &limits));
        let _ = feed(&data, &cuts, Resume::decode);
        let _ = feed(&data, &cuts, Verdict::decode);
    }

    #[test]
    fn length_frames_survive_any_split(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..10), cuts in proptest::collection::vec(any::<usize>(), 0..16)) {
        let mut d = LengthDecoder::new(300);
        let mut wire = BytesMut::new();
        for f in &frames {
            d.encode(f, &mut wire).unwrap();
        }
        let got = feed(&wire, &cuts, |b| d.decode(b)).unwrap();
        prop_assert_eq!(got.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), frames);
    }

    #[test]
    fn lines_survive_any_split(lines in proptest::collection::vec("[^\n\r]{0,40}", 0..10), cuts in proptest::collection::vec(any::<usize>(), 0..16)) {
        let mut d = NewlineDecoder::new(40 * 4);
        let mut wire = BytesMut::new();
        for l in &lines {
            d.encode(l.as_bytes(), &mut wire).unwrap();
        }
        let got = feed(&wire, &cuts, |b| d.decode(b)).unwrap();
        prop_assert_eq!(got.iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect::<Vec<_>>(), lines);
    }
}

mod proxy_header {
    use prise_proto::proxy_header::{Addresses, Decoded, MAX_HEADER, Version, decode, encode};
    use proptest::prelude::*;
    use std::net::{IpAddr, SocketAddr};

    /// Reads `input` the way a server does: exactly what `decode` asks for.
    fn read(input: &[u8]) -> Option<(Addresses, usize)> {
        let mut have = 0;
        loop {
            match decode(&input[..have]) {
                Err(_) => return None,
                Ok(Decoded::Header { addrs, len }) => {
                    assert_eq!(len, have);
                    return Some((addrs, len));
                }
                Ok(Decoded::Need(n)) => {
                    assert!(n > 0 && have + n <= MAX_HEADER, "asked past the cap");
                    if have + n > input.len() {
                        return None;
                    }
                    have += n;
                }
            }
        }
    }

    fn addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_nor_read_past_the_cap(
            v2 in any::<bool>(),
            tail in proptest::collection::vec(any::<u8>(), 0..1200),
        ) {
            // Start most inputs with a signature so the parsers are reached.
            let mut input = if v2 { prise_proto::proxy_header::V2_SIGNATURE.to_vec() } else { b"PROXY ".to_vec() };
            input.extend_from_slice(&tail);
            let _ = read(&input);
            let _ = read(&tail);
        }

        #[test]
        fn every_encoded_header_decodes_back_and_stops_at_its_end(
            src in addr(),
            dst in addr(),
            v2 in any::<bool>(),
            after in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let version = if v2 { Version::V2 } else { Version::V1 };
            let mut wire = encode(version, src, dst);
            let len = wire.len();
            wire.extend_from_slice(&after);
            let (addrs, got) = read(&wire).expect("decodes");
            prop_assert_eq!(got, len);
            let Addresses::Proxied { src: s, dst: d } = addrs else {
                return Err(TestCaseError::fail("no addresses"));
            };
            // Mixed families travel as IPv6; the canonical address is the same.
            prop_assert_eq!(s.ip().to_canonical(), src.ip().to_canonical());
            prop_assert_eq!(d.ip().to_canonical(), dst.ip().to_canonical());
            prop_assert_eq!((s.port(), d.port()), (src.port(), dst.port()));
        }
    }
}
