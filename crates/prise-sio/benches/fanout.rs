//! Fan-out cost: one event to 1,000 Socket.IO sockets, serialized per socket
//! (`Socket::emit`) or once (`EncodedPacket` + `Socket::emit_encoded`).
//!
//! The sockets are real sessions of a real `SioLayer`, opened in-process
//! through `Engine`'s HTTP handler (long-polling requests), so the measured
//! path is exactly the one the hub uses; queues are drained between samples.
//!
//! ```text
//! cargo bench -p prise-sio --bench fanout -- --quick
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use prise_sio::{
    Ack, BoxFuture, ConnectOutcome, ConnectRefusal, DisconnectReason, EncodedPacket, Payload,
    RecoveryRequest, SioConfig, SioHandler, SioLayer, Socket,
};
use serde_json::{Value, json};
use tower::ServiceExt;

const SOCKETS: usize = 1_000;

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Socket>>>);

impl SioHandler for Collect {
    fn connect<'a>(
        &'a self,
        socket: Socket,
        _auth: Value,
        _recovery: Option<RecoveryRequest>,
    ) -> BoxFuture<'a, Result<ConnectOutcome, ConnectRefusal>> {
        Box::pin(async move {
            self.0.lock().unwrap().push(socket);
            Ok(ConnectOutcome::Fresh)
        })
    }
    fn event<'a>(&'a self, _: Socket, _: String, _: Payload, _: Option<Ack>) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
    fn disconnect<'a>(&'a self, _: Socket, _: DisconnectReason) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

async fn request(app: &axum::Router, method: &str, uri: &str, body: &'static str) -> String {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn message() -> Payload {
    Payload::new(vec![
        json!({
            "id": "01JD3Q6Z8W9XK2V4M7N5P0R1ST",
            "roomId": "general",
            "userId": "u-42",
            "userName": "ann",
            "content": "hello everyone, this is a typical chat message of moderate length",
            "timestamp": 1_795_000_000_000u64,
            "offset": 1234,
        }),
        json!("1234"),
    ])
}

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let handler = Collect::default();
    let mut config = SioConfig::default();
    config.engine.path = "/socket.io/".into();
    config.engine.max_queued_packets = 1 << 20;
    config.engine.max_queued_bytes = 1 << 30;
    config.engine.ping_interval = Duration::from_secs(3600);
    config.engine.ping_timeout = Duration::from_secs(3600);
    config.connect_timeout = Duration::from_secs(3600);
    let layer = SioLayer::new(config, handler.clone());
    let app = layer.router();
    let sids: Vec<String> = rt.block_on(async {
        let mut sids = Vec::new();
        for _ in 0..SOCKETS {
            let open = request(&app, "GET", "/socket.io/?EIO=4&transport=polling", "").await;
            let v: Value = serde_json::from_str(&open[1..]).unwrap();
            let sid = v["sid"].as_str().unwrap().to_owned();
            let uri = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
            request(&app, "POST", &uri, "40").await;
            request(&app, "GET", &uri, "").await; // the CONNECT answer
            sids.push(sid);
        }
        sids
    });
    let sockets = handler.0.lock().unwrap().clone();
    assert_eq!(sockets.len(), SOCKETS);
    let drain = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            for sid in &sids {
                let uri = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
                request(&app, "GET", &uri, "").await;
            }
        })
    };
    let payload = message();
    let mut g = c.benchmark_group("fanout_1000_sockets");
    g.bench_function("emit_per_socket", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                for s in &sockets {
                    s.emit("message", &payload).unwrap();
                }
                total += t.elapsed();
                drain(&rt);
            }
            total
        })
    });
    g.bench_function("encode_once_emit_encoded", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let packet = EncodedPacket::event("/", "message", &payload);
                for s in &sockets {
                    s.emit_encoded(&packet).unwrap();
                }
                total += t.elapsed();
                drain(&rt);
            }
            total
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = fanout
}
criterion_main!(benches);
