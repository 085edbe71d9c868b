//! Presence: join and leave announcements, their coalescing into one diff
//! per interval in large rooms, bounded join answers, and paging.

use prise_hub::clock::SystemClock;
use prise_hub::store::{MemoryStore, Retention};
use prise_hub::{Hub, HubConfig, Outbound, Session, Transport};
use prise_proto::message::User;
use prise_proto::presence::{DEFAULT_PAGE, MAX_PAGE};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

async fn hub(max_presence_fanout: usize) -> Hub {
    let mut config = HubConfig::default();
    config.limits.max_presence_fanout = max_presence_fanout;
    config.limits.max_connections = 100_000;
    Hub::start(
        config,
        Arc::new(MemoryStore::new(Retention::default())),
        Arc::new(SystemClock),
    )
    .await
    .unwrap()
}

async fn member(hub: &Hub) -> (Arc<Session>, Receiver<Outbound>) {
    let (s, rx) = hub.connect(Transport::Ws, None).unwrap();
    hub.join(&s, "big", None, None).await.unwrap();
    (s, rx)
}

/// The joins, leaves and diffs queued for one member so far.
fn announcements(rx: &mut Receiver<Outbound>) -> (usize, usize, usize) {
    let (mut joined, mut left, mut diffs) = (0, 0, 0);
    while let Ok(ev) = rx.try_recv() {
        match ev {
            Outbound::Joined { .. } => joined += 1,
            Outbound::Left { .. } => left += 1,
            Outbound::PresenceDiff(_) => diffs += 1,
            _ => {}
        }
    }
    (joined, left, diffs)
}

#[tokio::test(start_paused = true)]
async fn above_the_cap_changes_are_coalesced_into_one_diff_per_interval() {
    let hub = hub(2).await;
    let (_a, mut a) = member(&hub).await;
    let (b_session, _b) = member(&hub).await; // announced to 1
    let (_c, _c_rx) = member(&hub).await; // announced to 2
    assert_eq!(announcements(&mut a), (2, 0, 0));
    // A fourth member would cost 3 pushes: over the cap, into the diff.
    let (d_session, _d) = member(&hub).await;
    let (e_session, _e) = member(&hub).await;
    hub.disconnect(&b_session);
    assert_eq!(
        announcements(&mut a),
        (0, 0, 0),
        "nothing before the interval"
    );
    assert_eq!(hub.presence_count("big"), 4, "counts are exact at once");
    // One diff after the interval, with who came and went.
    let Some(Outbound::PresenceDiff(diff)) = a.recv().await else {
        panic!("expected a presence diff");
    };
    let names = |v: &[User]| v.iter().map(|u| u.id.clone()).collect::<HashSet<_>>();
    assert_eq!(
        names(&diff.diff.joined),
        [d_session.user().id, e_session.user().id].into()
    );
    assert_eq!(names(&diff.diff.left), [b_session.user().id].into());
    assert_eq!(diff.diff.count, 4);
    assert!(diff.diff.complete);
    assert_eq!(
        announcements(&mut a),
        (0, 0, 0),
        "one diff, not one per change"
    );
    // A member who comes and goes within one interval is in no diff.
    let (f_session, _f) = member(&hub).await;
    hub.disconnect(&f_session);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(announcements(&mut a), (0, 0, 0));
    // Still above the cap: a diff.
    hub.disconnect(&d_session);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(announcements(&mut a), (0, 0, 1));
    // Back at the cap with no diff pending: announced at once again.
    hub.disconnect(&e_session);
    assert_eq!(announcements(&mut a), (0, 1, 0));
    let (_g, _g_rx) = member(&hub).await;
    assert_eq!(announcements(&mut a), (1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_diff_lists_a_bounded_number_of_users() {
    let hub = hub(1).await;
    let (_a, mut a) = member(&hub).await;
    let mut others = Vec::new();
    for _ in 0..300 {
        others.push(member(&hub).await);
    }
    let mut diffs = Vec::new();
    while diffs.is_empty() {
        match a.recv().await {
            Some(Outbound::PresenceDiff(d)) => diffs.push(d),
            Some(_) => {}
            None => panic!("queue closed"),
        }
    }
    let d = &diffs[0].diff;
    assert_eq!(d.count, 301);
    assert_eq!(d.joined.len(), prise_proto::presence::MAX_DIFF_USERS);
    assert!(!d.complete);
}

#[tokio::test]
async fn zero_means_no_cap() {
    let hub = hub(0).await;
    let (_a, mut a) = member(&hub).await;
    let mut others = Vec::new();
    for _ in 0..5 {
        others.push(member(&hub).await);
    }
    assert_eq!(announcements(&mut a), (5, 0, 0));
}

#[tokio::test]
async fn a_join_answer_stays_bounded_in_a_room_of_300() {
    let hub = hub(1000).await;
    let mut members = Vec::new();
    for _ in 0..299 {
        members.push(member(&hub).await);
    }
    let (s, _rx) = hub.connect(Transport::Ws, None).unwrap();
    let joined = hub.join(&s, "big", None, None).await.unwrap();
    assert_eq!(joined.members.count, 300);
    assert_eq!(joined.members.members.len(), DEFAULT_PAGE);
    assert!(!joined.members.complete());
    // The first page of the sorted list.
    let all = hub.presence("big");
    assert_eq!(all.len(), 300);
    assert_eq!(joined.members.members, all[..DEFAULT_PAGE]);
}

#[tokio::test]
async fn pages_list_every_member_once_while_others_come_and_go() {
    let hub = hub(0).await;
    let mut stable = Vec::new();
    for _ in 0..250 {
        stable.push(member(&hub).await);
    }
    let mut churn = Vec::new();
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = hub.presence_page("big", after.as_ref(), Some(7));
        assert!(page.members.len() <= 7);
        seen.extend(page.members.iter().map(|u| u.id.clone()));
        pages += 1;
        // Between pages: some join, some of those leave.
        churn.push(member(&hub).await);
        if pages % 3 == 0
            && let Some((s, _)) = churn.pop()
        {
            hub.disconnect(&s);
        }
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no member listed twice");
    for (s, _) in &stable {
        assert!(unique.contains(&s.user().id), "a stable member is listed");
    }
    // The limit is capped.
    let page = hub.presence_page("big", None, Some(usize::MAX));
    assert!(page.members.len() <= MAX_PAGE);
    assert_eq!(page.count, hub.presence_count("big"));
}

#[tokio::test]
async fn a_rename_moves_a_member_in_the_sorted_list() {
    let hub = hub(0).await;
    let (a, _a) = member(&hub).await;
    let (_b, _b_rx) = member(&hub).await;
    hub.rename(&a, "zzz").unwrap();
    let all = hub.presence("big");
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].name, "zzz");
    hub.rename(&a, "aaa").unwrap();
    assert_eq!(hub.presence("big")[0].name, "aaa");
}
