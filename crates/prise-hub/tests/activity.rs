//! Activity reports: first session in and last session out per user,
//! occupancy, and closed sessions with their reason, in order.

use prise_hub::activity::{Activity, ActivitySink};
use prise_hub::clock::SystemClock;
use prise_hub::store::{MemoryStore, Retention};
use prise_hub::{CloseReason, Hub, HubConfig, Transport};
use prise_proto::message::User;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl ActivitySink for Log {
    fn record(&self, a: Activity) {
        let line = match a {
            Activity::MemberJoined {
                room,
                user,
                occupied,
            } => {
                format!("joined {room} {} occupied={occupied}", user.id)
            }
            Activity::MemberLeft {
                room,
                user,
                vacated,
            } => {
                format!("left {room} {} vacated={vacated}", user.id)
            }
            Activity::SessionClosed { user, reason, .. } => {
                format!("closed {} {reason:?}", user.id)
            }
        };
        self.0.lock().unwrap().push(line);
    }
}

fn user(id: &str) -> Option<User> {
    Some(User {
        id: id.into(),
        name: id.into(),
    })
}

#[tokio::test]
async fn joins_leaves_and_closes_are_reported_per_user_in_order() {
    let hub = Hub::start(
        HubConfig::default(),
        Arc::new(MemoryStore::new(Retention::default())),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let log = Arc::new(Log::default());
    hub.set_activity(log.clone());
    let (a1, _r1) = hub.connect(Transport::Ws, user("ann")).unwrap();
    let (a2, _r2) = hub.connect(Transport::Tcp, user("ann")).unwrap();
    let (b, _r3) = hub.connect(Transport::SocketIo, user("bob")).unwrap();
    hub.join(&a1, "r", None, None).await.unwrap();
    hub.join(&a2, "r", None, None).await.unwrap();
    hub.join(&b, "r", None, None).await.unwrap();
    hub.leave(&a1, "r").unwrap();
    hub.disconnect(&a1);
    b.close(CloseReason::SlowConsumer);
    hub.disconnect(&b);
    hub.disconnect(&a2);
    assert_eq!(
        *log.0.lock().unwrap(),
        [
            "joined r ann occupied=true",
            "joined r bob occupied=false",
            "closed ann None",
            "left r bob vacated=false",
            "closed bob Some(SlowConsumer)",
            "left r ann vacated=true",
            "closed ann None",
        ]
    );
}
