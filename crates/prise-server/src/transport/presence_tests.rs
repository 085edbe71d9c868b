//! The request layer and paged presence: a join's bounded answer, pages
//! that list every member once while members come and go, capped paging
//! input, and the coalesced diff of a large room, on every transport.

use super::reply::Reply;
use super::tests::{Policy, Server, join, presence, refusal};
use prise_hub::{Outbound, Transport};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Every transport, for tests that run on each.
const TRANSPORTS: [Transport; 3] = [Transport::Tcp, Transport::Ws, Transport::SocketIo];

/// The bytes a reply costs on each transport, as its encoder writes it.
fn encoded_sizes(reply: &Reply) -> [usize; 3] {
    let mut line = String::new();
    super::tcp::encode_reply(&mut line, reply);
    let (frames, _) = super::ws::encode_reply(None, reply.clone());
    let ws = frames.iter().map(|m| m.len()).sum();
    let sio = match reply {
        Reply::Joined(j) => prise_proto::sio_events::encode::join_ack(
            &j.room,
            &j.epoch,
            j.offset,
            &j.members,
            j.recovered,
        ),
        Reply::Presence { room, page } => prise_proto::sio_events::encode::presence(room, page),
        other => panic!("not a presence answer: {other:?}"),
    }
    .to_string()
    .len();
    [line.len(), ws, sio]
}

/// Clients of every transport in turn, each in `room`.
async fn members(
    s: &Server,
    room: &str,
    n: usize,
) -> Vec<(super::client::Client, mpsc::Receiver<Outbound>)> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let (mut c, rx) = s.client(TRANSPORTS[i % 3]).await;
        assert!(matches!(
            c.apply(s.ctx(), join(room)).await,
            Reply::Joined(_)
        ));
        v.push((c, rx));
    }
    v
}

#[tokio::test]
async fn a_join_answer_stays_bounded_with_300_members_on_every_transport() {
    let s = Server::start(Policy {
        max_connections: 1000,
        ..Policy::default()
    })
    .await;
    let ctx = s.ctx();
    let _small = members(&s, "small", 3).await;
    let (mut c, _rx) = s.client(Transport::Ws).await;
    let Reply::Joined(small) = c.apply(ctx, join("small")).await else {
        panic!("join")
    };
    assert!(small.members.complete());
    let small_sizes = encoded_sizes(&Reply::Joined(small));
    let _big = members(&s, "big", 299).await;
    let Reply::Joined(j) = c.apply(ctx, join("big")).await else {
        panic!("join")
    };
    assert_eq!(j.members.count, 300);
    assert_eq!(j.members.members.len(), prise_proto::presence::DEFAULT_PAGE);
    assert!(!j.members.complete());
    let sizes = encoded_sizes(&Reply::Joined(j));
    // The TCP answer names the count only; the JSON ones one page.
    assert!(sizes[0] < 200, "tcp join answer: {} bytes", sizes[0]);
    for (i, (&big, &small)) in sizes.iter().zip(&small_sizes).enumerate().skip(1) {
        assert!(
            big < 100 * 80 + small,
            "{:?} join answer: {big} bytes",
            TRANSPORTS[i]
        );
    }
}

#[tokio::test]
async fn presence_pages_list_every_member_once_while_members_come_and_go() {
    let s = Server::start(Policy {
        max_connections: 1000,
        ..Policy::default()
    })
    .await;
    let ctx = s.ctx();
    let stable = members(&s, "big", 240).await;
    for transport in TRANSPORTS {
        let (mut reader, _rx) = s.client(transport).await;
        let mut churn = Vec::new();
        let mut seen = Vec::new();
        let mut after = None;
        for round in 0.. {
            let Reply::Presence { page, .. } =
                reader.apply(ctx, presence("big", after, Some(25))).await
            else {
                panic!("presence")
            };
            assert!(page.members.len() <= 25);
            seen.extend(page.members.iter().map(|u| u.id.clone()));
            // Between pages some join and some leave again.
            churn.extend(members(&s, "big", 2).await);
            if round % 2 == 1
                && let Some((c, _)) = churn.pop()
            {
                s.hub.disconnect(c.session());
            }
            // Each page's cursor is one token on the line protocol too.
            let sizes = encoded_sizes(&Reply::Presence {
                room: "big".into(),
                page: page.clone(),
            });
            assert!(sizes.iter().all(|&n| n < 25 * 80 + 300), "{sizes:?}");
            match page.next_text() {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let unique: std::collections::HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "{transport:?}: a member listed twice"
        );
        for (c, _) in &stable {
            assert!(
                unique.contains(&c.session().user().id),
                "{transport:?}: a member present throughout is missing"
            );
        }
        for (c, _) in churn {
            s.hub.disconnect(c.session());
        }
    }
}

#[tokio::test]
async fn presence_paging_input_is_capped_and_checked() {
    let s = Server::start(Policy {
        max_connections: 2000,
        ..Policy::default()
    })
    .await;
    let ctx = s.ctx();
    let _m = members(&s, "big", 1100).await;
    let (mut c, _rx) = s.client(Transport::Tcp).await;
    let Reply::Presence { page, .. } = c.apply(ctx, presence("big", None, Some(usize::MAX))).await
    else {
        panic!("presence")
    };
    assert_eq!(page.members.len(), prise_proto::presence::MAX_PAGE);
    assert_eq!(page.count, 1100);
    let Reply::Presence { page, .. } = c.apply(ctx, presence("big", None, None)).await else {
        panic!("presence")
    };
    assert_eq!(page.members.len(), prise_proto::presence::DEFAULT_PAGE);
    for bad in [
        "not a cursor".to_owned(),
        "A".repeat(5000),
        "YWxpY2U".into(),
    ] {
        let r = c.apply(ctx, presence("big", Some(bad), None)).await;
        assert_eq!(refusal(&r).code, "BAD_REQUEST");
    }
    // A room with nobody in it is an empty, complete page.
    let Reply::Presence { page, .. } = c.apply(ctx, presence("nobody", None, None)).await else {
        panic!("presence")
    };
    assert!(page.members.is_empty() && page.complete() && page.count == 0);
}

#[tokio::test(start_paused = true)]
async fn a_large_room_coalesces_joins_into_one_diff_on_every_transport() {
    let s = Server::start(Policy {
        max_connections: 1000,
        max_presence_fanout: 3,
        ..Policy::default()
    })
    .await;
    // Up to the cap (3 others): told at once, one push per join.
    let mut first = members(&s, "big", 4).await;
    for (_, rx) in &mut first {
        while rx.try_recv().is_ok() {}
    }
    let _more = members(&s, "big", 30).await;
    let leaver = members(&s, "big", 1).await;
    s.hub.disconnect(leaver[0].0.session());
    for (_, rx) in &mut first {
        assert!(rx.try_recv().is_err(), "nothing before the interval");
    }
    for (i, (_, rx)) in first.iter_mut().enumerate() {
        let Some(ev) = rx.recv().await else {
            panic!("queue closed")
        };
        let Outbound::PresenceDiff(d) = &ev else {
            panic!("expected a diff, got {ev:?}")
        };
        assert_eq!(d.diff.joined.len(), 30, "the leaver came and went");
        assert!(d.diff.left.is_empty());
        assert_eq!(d.diff.count, 34);
        assert!(rx.try_recv().is_err(), "one diff for 31 changes");
        // Each transport encodes it as documented.
        match TRANSPORTS[i % 3] {
            Transport::Tcp => {
                let (mut out, mut line) = (Vec::new(), String::new());
                super::tcp::encode_push(&mut out, &mut line, &ev);
                let text = String::from_utf8(out).expect("utf-8");
                assert!(text.starts_with("PRESENCE big 34 +"), "{text}");
                assert_eq!(text.matches(" +").count(), 30);
            }
            Transport::Ws => {
                let frame = super::ws::push(&ev);
                let v: Value = serde_json::from_str(frame.to_text().expect("text")).expect("json");
                assert_eq!(v["type"], json!("presence_diff"));
                assert_eq!(v["count"], json!(34));
                assert_eq!(v["joined"].as_array().map(Vec::len), Some(30));
            }
            Transport::SocketIo => {
                let args = prise_proto::sio_events::encode::presence_diff(&d.diff, 0);
                assert_eq!(args[0]["roomId"], json!("big"));
                assert_eq!(args[0]["count"], json!(34));
            }
            Transport::Sse => unreachable!("not among the request transports"),
        }
    }
}
