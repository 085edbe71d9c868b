//! The line codec and the WebSocket JSON decoder.

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prise_proto::line::{Command, CommandLineDecoder};
use prise_proto::wsjson::Request;
use std::hint::black_box;

fn line_codec(c: &mut Criterion) {
    let mut input = Vec::new();
    for i in 0..1000 {
        input.extend_from_slice(
            format!("SAY general message number {i} from a netcat user\r\n").as_bytes(),
        );
    }
    let mut group = c.benchmark_group("line");
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.bench_function("decode_and_parse_1000_lines", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&input[..]);
            let mut d = CommandLineDecoder::new(8192);
            let mut n = 0;
            while let Ok(Some(l)) = d.decode(&mut buf) {
                if Command::parse(&l).is_ok() {
                    n += 1;
                }
            }
            black_box(n)
        });
    });
    group.finish();
    let frame =
        r#"{"type":"message","room":"general","content":"hello there, how are you?","id":42}"#;
    c.bench_function("wsjson_decode_message", |b| {
        b.iter(|| black_box(Request::decode(black_box(frame)).is_ok()));
    });
}

criterion_group!(benches, line_codec);
criterion_main!(benches);
