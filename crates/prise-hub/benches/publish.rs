//! The hub's publish path: order, store (memory), fan-out to N sessions.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prise_hub::clock::SystemClock;
use prise_hub::store::{MemoryStore, Retention};
use prise_hub::{Hub, HubConfig, Transport};
use prise_proto::message::User;
use std::sync::Arc;

fn publish(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("hub_publish");
    for subscribers in [1usize, 100, 1000] {
        let hub = rt.block_on(async {
            let store = Arc::new(MemoryStore::new(Retention {
                count: 1000,
                ..Retention::default()
            }));
            let config = HubConfig::default();
            let hub = Hub::start(config, store, Arc::new(SystemClock))
                .await
                .expect("hub");
            for _ in 0..subscribers {
                let (session, mut rx) = hub.connect(Transport::Ws, None).expect("session");
                hub.join(&session, "bench", None, None).await.expect("join");
                // Drain like a fast client would, keeping the session alive.
                tokio::spawn(async move {
                    let _keep = session;
                    let mut buf = Vec::with_capacity(256);
                    while rx.recv_many(&mut buf, 256).await > 0 {
                        buf.clear();
                    }
                });
            }
            hub
        });
        let user = User {
            id: "bench".into(),
            name: "bench".into(),
        };
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_with_input(
            BenchmarkId::new("subscribers", subscribers),
            &subscribers,
            |b, _| {
                b.to_async(&rt).iter(|| {
                    let hub = hub.clone();
                    let user = user.clone();
                    async move {
                        hub.publish_as(user, "bench", serde_json::Value::from("hello"))
                            .await
                            .expect("publish")
                    }
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, publish);
criterion_main!(benches);
