//! The webhook receiver, the durable inbox and the event loop, driven the way GitHub
//! drives them: signed deliveries of GitHub's own example payloads.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use missions::engine::HandlerRegistry;
use missions::github::webhook::{MAX_PAYLOAD_BYTES, sign};
use missions::store::inbox::{self, Status};
use tokio::sync::Notify;

#[tokio::test]
async fn every_github_example_is_accepted_stored_and_parsed_into_its_typed_event() {
    let env = TestEnv::new();
    let server = env.server().await;
    let router = server.router();
    let fixtures = webhook_fixtures();
    assert_eq!(fixtures.len(), 38, "expected all 38 published examples");

    let mut ids = Vec::new();
    for f in &fixtures {
        let id = delivery_id();
        let (status, body) = send(&router, &Delivery::signed(&f.event, &id, &f.body)).await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "{}/{}: {body}",
            f.event,
            f.file
        );
        ids.push(id);
    }

    // What the inbox holds: the exact bytes and the envelope columns.
    let store = server.store().clone();
    for (f, id) in fixtures.iter().zip(&ids) {
        let row = inbox::get(store.pool(), id).await.unwrap().unwrap();
        let what = format!("{}/{}", f.event, f.file);
        assert_eq!(row.event, f.event, "{what}");
        assert_eq!(
            row.payload, f.body,
            "{what}: payload must be stored byte for byte"
        );
        assert_eq!(row.action.as_deref(), f.json["action"].as_str(), "{what}");
        assert_eq!(
            row.installation_id,
            f.json["installation"]["id"].as_i64(),
            "{what}"
        );
        assert_eq!(
            row.repository.as_deref(),
            f.json["repository"]["full_name"].as_str(),
            "{what}"
        );
        assert_eq!(row.status, Status::Pending, "{what}");
    }

    // The event loop parses each into the typed event of its header and hands it on.
    let event_loop = env
        .event_loop(HandlerRegistry::standard().with(Recorder::default()))
        .await;
    let pass = event_loop.run_until_idle().await.unwrap();
    assert_eq!(pass.processed, 38, "{pass:?}");
    assert_eq!((pass.retried, pass.parked), (0, 0), "{pass:?}");

    let handled = handled(&store).await;
    assert_eq!(handled.len(), 38);
    for ((f, id), (handled_id, event, action, attempt)) in fixtures.iter().zip(&ids).zip(&handled) {
        let what = format!("{}/{}", f.event, f.file);
        assert_eq!(handled_id, id, "handled in arrival order: {what}");
        assert_eq!(event, &f.event, "typed event variant for {what}");
        assert_eq!(action.as_deref(), f.json["action"].as_str(), "{what}");
        assert_eq!(*attempt, 1, "{what}");
    }
    let counts = inbox::counts(store.pool()).await.unwrap();
    assert_eq!(
        (counts.pending, counts.processed, counts.failed),
        (0, 38, 0)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_unknown_event_is_acknowledged_stored_and_ignored() {
    let env = TestEnv::new();
    let server = env.server().await;
    let body = br#"{"action":"started","starred_at":"2026-11-24T10:00:00Z","repository":{"full_name":"o/r"}}"#;
    let id = delivery_id();
    let (status, _) = send(&server.router(), &Delivery::signed("star", &id, body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let event_loop = env
        .event_loop(HandlerRegistry::new().with(Recorder::default()))
        .await;
    let pass = event_loop.run_until_idle().await.unwrap();
    assert_eq!(pass.processed, 1);
    let row = inbox::get(server.store().pool(), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.status,
        Status::Processed,
        "acknowledged, not left pending"
    );
    assert_eq!(row.repository.as_deref(), Some("o/r"));
    assert!(
        handled(server.store()).await.is_empty(),
        "no handler sees an unknown event"
    );
}

#[tokio::test]
async fn an_unknown_action_of_a_known_event_reaches_handlers_with_its_raw_name() {
    let env = TestEnv::new();
    let server = env.server().await;
    let mut json = fixture("issues", "labeled.json").json;
    json["action"] = "pinned".into();
    let body = serde_json::to_vec(&json).unwrap();
    let id = delivery_id();
    let (status, _) = send(&server.router(), &Delivery::signed("issues", &id, &body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let event_loop = env
        .event_loop(HandlerRegistry::standard().with(Recorder::default()))
        .await;
    assert_eq!(event_loop.run_until_idle().await.unwrap().processed, 1);
    let handled = handled(server.store()).await;
    assert_eq!(handled.len(), 1);
    assert_eq!(handled[0].2.as_deref(), Some("pinned"));
}

#[tokio::test]
async fn refused_requests_store_nothing() {
    let env = TestEnv::new();
    let server = env.server().await;
    let router = server.router();
    let f = fixture("issues", "labeled.json");
    let id = delivery_id();

    let mut tampered = Delivery::signed("issues", &id, &f.body);
    let at = tampered.body.len() / 2;
    tampered.body[at] ^= 0x01;
    assert_eq!(
        send(&router, &tampered).await.0,
        StatusCode::UNAUTHORIZED,
        "tampered body"
    );

    let mut wrong_secret = Delivery::signed("issues", &id, &f.body);
    wrong_secret.signature = Some(sign(b"not-the-secret", &f.body));
    assert_eq!(
        send(&router, &wrong_secret).await.0,
        StatusCode::UNAUTHORIZED,
        "wrong secret"
    );

    let mut unsigned = Delivery::signed("issues", &id, &f.body);
    unsigned.signature = None;
    assert_eq!(
        send(&router, &unsigned).await.0,
        StatusCode::UNAUTHORIZED,
        "no signature"
    );

    let mut sha1 = Delivery::signed("issues", &id, &f.body);
    sha1.signature = Some("sha1=0123456789abcdef0123456789abcdef01234567".into());
    assert_eq!(
        send(&router, &sha1).await.0,
        StatusCode::UNAUTHORIZED,
        "not sha256"
    );

    let mut no_event = Delivery::signed("issues", &id, &f.body);
    no_event.event = None;
    assert_eq!(
        send(&router, &no_event).await.0,
        StatusCode::BAD_REQUEST,
        "no event header"
    );

    let mut no_id = Delivery::signed("issues", &id, &f.body);
    no_id.delivery_id = None;
    assert_eq!(
        send(&router, &no_id).await.0,
        StatusCode::BAD_REQUEST,
        "no delivery header"
    );

    let bad_id = "has spaces in it";
    let with_bad_id = Delivery::signed("issues", bad_id, &f.body);
    assert_eq!(
        send(&router, &with_bad_id).await.0,
        StatusCode::BAD_REQUEST,
        "junk delivery id"
    );

    // Over GitHub's 25 MB cap: refused before it is read whole, even when signed.
    let mut huge = vec![b' '; MAX_PAYLOAD_BYTES + 1];
    huge[0] = b'{';
    huge[MAX_PAYLOAD_BYTES] = b'}';
    let oversize = Delivery::signed("issues", &id, &huge);
    assert_eq!(
        send(&router, &oversize).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    assert_eq!(
        inbox_rows(server.store()).await,
        0,
        "nothing refused may be stored"
    );

    // And the untampered original is still accepted afterwards.
    let good = Delivery::signed("issues", &id, &f.body);
    assert_eq!(send(&router, &good).await.0, StatusCode::ACCEPTED);
    assert_eq!(inbox_rows(server.store()).await, 1);
}

#[tokio::test]
async fn the_same_delivery_posted_ten_times_is_stored_once_and_handled_once() {
    let env = TestEnv::new();
    let server = env
        .server_with(HandlerRegistry::new().with(Recorder::default()), true)
        .await;
    let router = server.router();
    let f = fixture("issue_comment", "created.json");
    let id = delivery_id();
    let delivery = Delivery::signed("issue_comment", &id, &f.body);

    // Five at once (they meet in one group commit), then five one after another,
    // some after the first has been handled.
    let concurrent = futures::future::join_all((0..5).map(|_| send(&router, &delivery))).await;
    let mut statuses: Vec<StatusCode> = concurrent.into_iter().map(|(s, _)| s).collect();
    for _ in 0..5 {
        statuses.push(send(&router, &delivery).await.0);
    }
    assert!(statuses.iter().all(|s| s.is_success()), "{statuses:?}");
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::ACCEPTED)
            .count(),
        1,
        "exactly one answer says stored: {statuses:?}"
    );

    let store = server.store().clone();
    wait_until(|| async { inbox::counts(store.pool()).await.unwrap().processed == 1 }).await;
    server.shutdown().await;
    assert_eq!(inbox_rows(&store).await, 1);
    assert_eq!(handled(&store).await.len(), 1, "handled exactly once");
}

/// Three servers on one database, as replicas behind a load balancer are, and
/// each delivery sent to two of them at once (a redelivery racing the original,
/// or a balancer retrying): both answer 2xx, exactly one says "stored", and the
/// delivery is stored once and handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_delivery_sent_to_two_replicas_at_once_is_stored_once_and_handled_once() {
    let env = TestEnv::new();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            env.server_with(HandlerRegistry::new().with(Recorder::default()), true)
                .await,
        );
    }
    let routers: Vec<_> = replicas.iter().map(|r| r.router()).collect();
    let routers = &routers;
    let fixtures = webhook_fixtures();
    let deliveries: Vec<(String, &Fixture)> = (0..30)
        .map(|i| (delivery_id(), &fixtures[i % fixtures.len()]))
        .collect();
    let answers = futures::future::join_all(deliveries.iter().enumerate().map(
        |(i, (id, f))| async move {
            let delivery = Delivery::signed(&f.event, id, &f.body);
            let (first, second) = futures::join!(
                send(&routers[i % 3], &delivery),
                send(&routers[(i + 1) % 3], &delivery)
            );
            (first.0, second.0)
        },
    ))
    .await;
    for (first, second) in &answers {
        assert!(first.is_success() && second.is_success(), "{answers:?}");
        assert_eq!(
            [first, second]
                .iter()
                .filter(|s| ***s == StatusCode::ACCEPTED)
                .count(),
            1,
            "exactly one of the two says stored: {answers:?}"
        );
    }

    let store = replicas[0].store().clone();
    wait_until(|| async { inbox::counts(store.pool()).await.unwrap().processed == 30 }).await;
    for replica in replicas {
        replica.shutdown().await;
    }
    assert_eq!(inbox_rows(&store).await, 30);
    let handled = handled(&store).await;
    let mut ids: Vec<&str> = handled.iter().map(|h| h.0.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        (handled.len(), ids.len()),
        (30, 30),
        "each handled exactly once"
    );
}

#[tokio::test]
async fn deliveries_left_unprocessed_are_processed_exactly_once_by_the_next_server() {
    let env = TestEnv::new();
    let fixtures = webhook_fixtures();
    let ids: Vec<String> = fixtures.iter().take(6).map(|_| delivery_id()).collect();

    // First server: receives, stores, and stops before its event loop gets to them.
    let first = env.server().await;
    for (f, id) in fixtures.iter().zip(&ids) {
        let (status, _) = send(&first.router(), &Delivery::signed(&f.event, id, &f.body)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    first.shutdown().await;
    assert_eq!(
        inbox::counts(env.store().await.pool())
            .await
            .unwrap()
            .pending,
        6
    );

    // Second server on the same database, with its event loop running.
    let second = env
        .server_with(HandlerRegistry::new().with(Recorder::default()), true)
        .await;
    let store = second.store().clone();
    wait_until(|| async { inbox::counts(store.pool()).await.unwrap().processed == 6 }).await;
    second.shutdown().await;

    // A third start finds nothing left to do.
    let third = env
        .server_with(HandlerRegistry::new().with(Recorder::default()), true)
        .await;
    let report = env
        .event_loop(HandlerRegistry::new().with(Recorder::default()))
        .await
        .run_until_idle()
        .await
        .unwrap();
    assert_eq!(report.total(), 0);
    third.shutdown().await;

    let handled = handled(&store).await;
    let handled_ids: Vec<&str> = handled.iter().map(|h| h.0.as_str()).collect();
    assert_eq!(
        handled_ids,
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "each once, in arrival order"
    );
}

#[tokio::test]
async fn a_loop_killed_inside_a_handler_transaction_leaves_nothing_half_done() {
    let env = TestEnv::new();
    let server = env.server().await;
    let f = fixture("pull_request_review", "submitted.json");
    let id = delivery_id();
    let (status, _) = send(&server.router(), &Delivery::signed(&f.event, &id, &f.body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // The handler writes its row, then hangs; the loop is killed right there.
    let entered = Arc::new(Notify::new());
    let blocking = Recorder {
        block: Some(Arc::new(Notify::new())),
        entered: Some(entered.clone()),
        ..Recorder::default()
    };
    let event_loop = env.event_loop(HandlerRegistry::new().with(blocking)).await;
    let task = tokio::spawn(async move { event_loop.run_until_idle().await });
    tokio::time::timeout(Duration::from_secs(10), entered.notified())
        .await
        .expect("handler reached");
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    let store = server.store().clone();
    assert!(
        handled(&store).await.is_empty(),
        "the killed transaction's write is rolled back"
    );
    assert_eq!(
        inbox::counts(store.pool()).await.unwrap().pending,
        1,
        "still pending"
    );

    // Restarted: handled once.
    let report = env
        .event_loop(HandlerRegistry::new().with(Recorder::default()))
        .await
        .run_until_idle()
        .await
        .unwrap();
    assert_eq!(report.processed, 1);
    assert_eq!(handled(&store).await.len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_failing_handler_is_retried_with_backoff_and_its_writes_undone() {
    let env = TestEnv::new();
    let server = env.server().await;
    let f = fixture("check_run", "completed.json");
    let id = delivery_id();
    send(&server.router(), &Delivery::signed(&f.event, &id, &f.body)).await;
    let store = server.store().clone();

    let flaky = Recorder {
        fail_first: 2,
        ..Recorder::default()
    };
    let event_loop = env.event_loop(HandlerRegistry::new().with(flaky)).await;

    let pass = event_loop.run_until_idle().await.unwrap();
    assert_eq!(pass.retried, 1);
    let row = inbox::get(store.pool(), &id).await.unwrap().unwrap();
    assert_eq!((row.status, row.attempts), (Status::Pending, 1));
    assert!(
        row.last_error
            .unwrap()
            .contains("recorder told to fail attempt 1")
    );
    assert!(
        handled(&store).await.is_empty(),
        "a failed attempt's writes are rolled back"
    );

    // Not due yet: backoff is 10 s after the first failure.
    assert_eq!(event_loop.run_until_idle().await.unwrap().total(), 0);
    env.clock.advance(time::Duration::seconds(9));
    assert_eq!(event_loop.run_until_idle().await.unwrap().total(), 0);
    env.clock.advance(time::Duration::seconds(1));
    assert_eq!(event_loop.run_until_idle().await.unwrap().retried, 1);

    // Second backoff doubles to 20 s; then the third attempt succeeds.
    env.clock.advance(time::Duration::seconds(19));
    assert_eq!(event_loop.run_until_idle().await.unwrap().total(), 0);
    env.clock.advance(time::Duration::seconds(1));
    assert_eq!(event_loop.run_until_idle().await.unwrap().processed, 1);

    let row = inbox::get(store.pool(), &id).await.unwrap().unwrap();
    assert_eq!((row.status, row.attempts), (Status::Processed, 3));
    assert_eq!(row.last_error, None);
    let handled = handled(&store).await;
    assert_eq!(
        handled.len(),
        1,
        "only the successful attempt's write remains"
    );
    assert_eq!(handled[0].3, 3);
}

#[tokio::test]
async fn a_handler_that_keeps_failing_is_parked_with_its_error_and_can_be_requeued() {
    let env = TestEnv::new();
    let server = env.server().await;
    let f = fixture("workflow_run", "completed.json");
    let id = delivery_id();
    send(&server.router(), &Delivery::signed(&f.event, &id, &f.body)).await;
    // A second delivery behind it is not held up by the failing one.
    let f2 = fixture("issues", "opened.json");
    let id2 = delivery_id();
    send(
        &server.router(),
        &Delivery::signed(&f2.event, &id2, &f2.body),
    )
    .await;
    let store = server.store().clone();

    let broken = Recorder {
        always_fail: true,
        ..Recorder::default()
    };
    let event_loop = env.event_loop(HandlerRegistry::new().with(broken)).await;
    for _ in 0..3 {
        event_loop.run_until_idle().await.unwrap();
        env.clock.advance(time::Duration::minutes(5));
    }
    for id in [&id, &id2] {
        let row = inbox::get(store.pool(), id).await.unwrap().unwrap();
        assert_eq!(
            (row.status, row.attempts),
            (Status::Failed, 3),
            "parked after max_attempts"
        );
        assert!(
            row.last_error
                .unwrap()
                .contains("handler recorder: recorder told to fail attempt 3")
        );
    }
    // Parked is final until a person requeues it; nothing is lost.
    assert_eq!(event_loop.run_until_idle().await.unwrap().total(), 0);
    assert!(inbox::requeue_failed(store.pool(), &id).await.unwrap());
    assert!(
        !inbox::requeue_failed(store.pool(), "no-such-delivery")
            .await
            .unwrap()
    );
    let fixed = env
        .event_loop(HandlerRegistry::new().with(Recorder::default()))
        .await;
    assert_eq!(fixed.run_until_idle().await.unwrap().processed, 1);
    assert_eq!(
        inbox::get(store.pool(), &id).await.unwrap().unwrap().status,
        Status::Processed
    );
}

#[tokio::test]
async fn a_signed_payload_that_does_not_parse_is_kept_and_parked_with_the_json_path() {
    let env = TestEnv::new();
    let server = env.server().await;
    let mut json = fixture("issues", "opened.json").json;
    json["issue"]["number"] = "not-a-number".into();
    let body = serde_json::to_vec(&json).unwrap();
    let id = delivery_id();
    let (status, _) = send(&server.router(), &Delivery::signed("issues", &id, &body)).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "signed by GitHub: kept, not refused"
    );

    let id2 = delivery_id();
    let (status, _) = send(
        &server.router(),
        &Delivery::signed("issues", &id2, b"not json at all"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let event_loop = env
        .event_loop(HandlerRegistry::new().with(Recorder::default()))
        .await;
    let pass = event_loop.run_until_idle().await.unwrap();
    assert_eq!(
        pass.parked, 2,
        "a parse error is not retried: the bytes will never change"
    );
    let row = inbox::get(server.store().pool(), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, Status::Failed);
    let error = row.last_error.unwrap();
    assert!(error.contains("issue.number"), "{error}");
    assert!(
        !error.contains("Spelling error in the README file"),
        "no payload text in errors: {error}"
    );
    assert!(handled(server.store()).await.is_empty());
}

#[tokio::test]
async fn health_and_readiness() {
    let env = TestEnv::new();
    let server = env.server().await;
    assert_eq!(get(&server.router(), "/healthz").await.0, StatusCode::OK);
    assert_eq!(get(&server.router(), "/readyz").await.0, StatusCode::OK);
    let router = server.router();
    server.store().close().await;
    assert_eq!(
        get(&router, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

/// Waits for a condition the running event loop brings about, with a deadline.
async fn wait_until<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn two_event_loops_on_one_database_handle_each_delivery_once() {
    let env = TestEnv::new();
    let server = env.server().await;
    let mut ids = Vec::new();
    for f in webhook_fixtures() {
        let id = delivery_id();
        let (status, _) = send(&server.router(), &Delivery::signed(&f.event, &id, &f.body)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.push(id);
    }
    let a = env
        .event_loop(HandlerRegistry::new().with(Recorder::default()))
        .await;
    let b = env
        .event_loop(HandlerRegistry::new().with(Recorder::default()))
        .await;
    // Racing: a loop that finds rows already finished by the other rolls its batch back.
    let racing = async { tokio::join!(a.run_until_idle(), b.run_until_idle()) };
    let _ = tokio::time::timeout(Duration::from_secs(60), racing)
        .await
        .expect("two loops racing must not wait on each other for long");
    // Whoever lost a race reads again; a few tries at most, never a hang.
    for event_loop in [&a, &b] {
        let mut tries = 0;
        while let Err(e) = event_loop.run_until_idle().await {
            tries += 1;
            assert!(tries < 5, "still failing after {tries} tries: {e:#}");
        }
    }

    let store = server.store().clone();
    assert_eq!(
        inbox::counts(store.pool()).await.unwrap().processed,
        ids.len() as u64
    );
    let mut handled: Vec<String> = handled(&store).await.into_iter().map(|h| h.0).collect();
    handled.sort();
    ids.sort();
    assert_eq!(handled, ids, "every delivery handled exactly once");
}

#[tokio::test]
async fn readiness_fails_once_the_event_loop_has_stopped() {
    let env = TestEnv::new();
    let server = env.server_with(HandlerRegistry::standard(), true).await;
    let router = server.router();
    assert_eq!(get(&router, "/readyz").await.0, StatusCode::OK);
    server.shutdown().await;
    let (status, body) = get(&router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("event loop stopped"), "{body}");
}

#[tokio::test]
async fn a_handler_that_hangs_is_cut_off_and_retried() {
    let env = TestEnv::new();
    let server = env.server().await;
    let f = fixture("issues", "labeled.json");
    let id = delivery_id();
    send(&server.router(), &Delivery::signed(&f.event, &id, &f.body)).await;

    let hanging = Recorder {
        block: Some(Arc::new(Notify::new())),
        ..Recorder::default()
    };
    let event_loop = env
        .event_loop(HandlerRegistry::new().with(hanging))
        .await
        .with_handler_timeout(Duration::from_millis(200));
    let pass = tokio::time::timeout(Duration::from_secs(10), event_loop.run_until_idle())
        .await
        .expect("the event loop does not hang with its handler")
        .unwrap();
    assert_eq!(pass.retried, 1);
    let row = inbox::get(server.store().pool(), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, Status::Pending);
    assert!(
        row.last_error
            .unwrap()
            .contains("did not finish within 200 ms")
    );
    assert!(
        handled(server.store()).await.is_empty(),
        "its writes are rolled back"
    );

    // And the webhook receiver is not stuck behind it.
    let (status, _) = send(
        &server.router(),
        &Delivery::signed(&f.event, &delivery_id(), &f.body),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}
