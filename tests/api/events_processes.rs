//! Outbound deliveries across real processes: `tollgate serve --role worker` killed with
//! SIGKILL at random points while it delivers, then a fresh worker finishing the work.

use std::collections::HashSet;
use std::time::Duration;

use tollgate::store::events as store;
use tollgate::store::ledger::{self, Credit, EntryKind, Note, Target};
use tollgate::store::{identity, migrate};

use crate::fake_receiver::Receiver;
use crate::helpers::TestDb;
use crate::jobs::wait_until;
use crate::jobs_processes::spawn_worker;

#[tokio::test]
async fn every_event_is_delivered_with_its_one_id_after_workers_are_killed_mid_delivery() {
    let test_db = TestDb::new().await;
    let db = test_db.connect().await;
    migrate::run(&db).await.unwrap();
    let app = identity::create_app(&db, "shop", "shop")
        .await
        .unwrap()
        .unwrap();
    let (user, _) = identity::find_or_create_user(&db, app.id, "alice")
        .await
        .unwrap();
    let (rx, url) = Receiver::start().await;
    // Each answer waits, so a kill lands while deliveries are in flight.
    rx.hold(Duration::from_millis(150));
    let endpoint = store::create_endpoint(
        &db,
        app.id,
        &store::NewEndpoint {
            url: &url,
            purpose: "events",
            description: "",
            event_types: None,
            // The worker runs without ENCRYPTION_KEY (development): plain at rest.
            sealed_secret: "plain:whsec_c2VjcmV0c2VjcmV0c2VjcmV0",
        },
    )
    .await
    .unwrap();
    const EVENTS: usize = 20;
    let t = Target {
        app_id: app.id,
        user_id: user.id,
    };
    for i in 0..EVENTS {
        let key = format!("grant-{i}");
        let credit = Credit {
            kind: EntryKind::Grant,
            amount: 1_000_000,
            source: "promo",
            expires_at: None,
            note: Note {
                reason: None,
                reference: None,
                key: Some(&key),
            },
        };
        ledger::credit(&db, t, &credit, None).await.unwrap();
    }
    // Kill three workers, each at a random moment once it has started sending.
    let concurrency = [("TOLLGATE_JOBS__QUEUES__EVENTS__CONCURRENCY", "4")];
    for round in 0..3 {
        let before = rx.received().len();
        let mut worker = spawn_worker(&test_db, &concurrency);
        wait_until(Duration::from_secs(20), || async {
            rx.received().len() > before
        })
        .await;
        let delay = 20 + (uuid::Uuid::now_v7().as_u128() % 300) as u64;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        worker.start_kill().unwrap();
        worker.wait().await.unwrap();
        eprintln!(
            "round {round}: killed after {delay} ms, {} posts so far",
            rx.received().len()
        );
    }
    // A killed attempt counts: its job waits the schedule's next delay (up to hours by the
    // third). The leases of the killed workers run out (2 s), the rescuer returns their jobs,
    // and a worker whose clock is a day and a half ahead finishes everything.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let config = std::sync::Arc::new(test_db.config());
    let rt =
        tollgate::jobs::Runtime::new(db.clone(), config, tollgate::jobs::kinds::builtin().clone())
            .await;
    tollgate::jobs::maintenance::rescue(&db, &rt.registry)
        .await
        .unwrap();
    let later = tollgate::store::now_ms() + 36 * 3_600_000;
    rt.worker().at(later).run_available("events").await.unwrap();
    let rows = store::deliveries(&db, app.id, endpoint.id, None, 100)
        .await
        .unwrap();
    assert!(rows.iter().all(|d| d.state == "succeeded"), "{rows:?}");
    let events = store::events(&db, app.id, None, 100).await.unwrap();
    assert_eq!(
        events.len(),
        EVENTS,
        "one event per grant, none lost, none doubled"
    );
    let sent: HashSet<String> = events.iter().map(|e| e.msg_id.clone()).collect();
    let got: HashSet<String> = rx.received().into_iter().map(|r| r.id).collect();
    assert_eq!(
        got, sent,
        "every event reached the receiver, under its own id only"
    );
    let deliveries = store::deliveries(&db, app.id, endpoint.id, None, 100)
        .await
        .unwrap();
    assert_eq!(
        deliveries.len(),
        EVENTS,
        "one delivery per event, however often it ran"
    );
    eprintln!(
        "{} posts for {EVENTS} events ({} sent again after a kill)",
        rx.received().len(),
        rx.received().len() - EVENTS
    );
}
