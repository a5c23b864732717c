//! Webhooks out: what GitHub sends to the App when something changes. Each
//! delivery gets a fresh id, is signed with the App's secret and posted to its
//! webhook URL, one at a time in the order the changes happened (unless fault
//! injection drops, duplicates, delays or reorders them). Every delivery is
//! recorded, so tests can check what was sent and what the App answered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::faults::Faults;

/// One delivery as GitHub's "Recent Deliveries" page shows it.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub id: String,
    pub event: String,
    pub action: Option<String>,
    pub payload: Value,
    /// The App's HTTP status; None when it was not sent or did not answer.
    pub status: Option<u16>,
    /// Why it was not delivered (dropped by fault injection, no webhook URL, an error).
    pub error: Option<String>,
    /// How many times it was posted (2 for an injected duplicate).
    pub sent: u32,
}

#[derive(Debug)]
pub(crate) struct Outgoing {
    pub event: String,
    pub payload: Value,
}

/// Where deliveries go; changeable while running (the App may start after the simulator).
#[derive(Debug, Clone, Default)]
pub struct WebhookTarget {
    pub url: Option<String>,
    pub secret: Option<SecretString>,
}

#[derive(Clone)]
pub(crate) struct Hooks {
    tx: mpsc::UnboundedSender<Outgoing>,
    pub log: Arc<Mutex<Vec<DeliveryRecord>>>,
    pub target: Arc<Mutex<WebhookTarget>>,
    pending: Arc<AtomicUsize>,
}

const HOOK_TIMEOUT: Duration = Duration::from_secs(10);

impl Hooks {
    /// Starts the delivery task. `changed` is bumped after every delivery so
    /// waiters can re-check what they wait for.
    pub fn start(target: WebhookTarget, faults: Arc<Faults>, changed: watch::Sender<u64>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let hooks = Self {
            tx,
            log: Arc::default(),
            target: Arc::new(Mutex::new(target)),
            pending: Arc::default(),
        };
        tokio::spawn(deliver_all(rx, hooks.clone(), faults, changed));
        hooks
    }

    /// Queues a delivery; the payload is trimmed to what GitHub's webhooks carry.
    pub fn send(&self, event: &str, mut payload: Value) {
        super::webhook_shape::shape(event, &mut payload);
        self.pending.fetch_add(1, Ordering::SeqCst);
        let _ = self.tx.send(Outgoing {
            event: event.to_owned(),
            payload,
        });
    }

    /// Deliveries queued or being sent.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }
}

async fn deliver_all(
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    hooks: Hooks,
    faults: Arc<Faults>,
    changed: watch::Sender<u64>,
) {
    crate::llm::http::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(HOOK_TIMEOUT)
        .build()
        .expect("an HTTP client with default settings builds");
    let window = faults.config.webhook_reorder_window.max(1);
    let mut batch = Vec::with_capacity(window);
    loop {
        batch.clear();
        if rx.recv_many(&mut batch, window).await == 0 {
            return;
        }
        if window > 1 {
            // Wait briefly for a window to fill, then shuffle it.
            tokio::time::sleep(Duration::from_millis(20)).await;
            while batch.len() < window {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            faults.shuffle(&mut batch);
        }
        for outgoing in batch.drain(..) {
            let record = deliver(&client, &hooks, &faults, outgoing).await;
            hooks.log.lock().expect("delivery log").push(record);
            hooks.pending.fetch_sub(1, Ordering::SeqCst);
            changed.send_modify(|v| *v += 1);
        }
    }
}

async fn deliver(
    client: &reqwest::Client,
    hooks: &Hooks,
    faults: &Faults,
    Outgoing { event, payload }: Outgoing,
) -> DeliveryRecord {
    let mut record = DeliveryRecord {
        id: uuid::Uuid::new_v4().to_string(),
        action: payload
            .get("action")
            .and_then(Value::as_str)
            .map(str::to_owned),
        event,
        payload,
        status: None,
        error: None,
        sent: 0,
    };
    if !faults.config.webhook_delay.is_zero() {
        tokio::time::sleep(faults.config.webhook_delay).await;
    }
    if faults.drop_webhook(&record.event, record.action.as_deref()) {
        record.error = Some("dropped by fault injection".into());
        return record;
    }
    let target = hooks.target.lock().expect("webhook target").clone();
    let (Some(url), Some(secret)) = (target.url, target.secret) else {
        record.error = Some("no webhook URL configured".into());
        return record;
    };
    let body = serde_json::to_vec(&record.payload).expect("JSON values serialize");
    let signature = crate::github::webhook::sign(secret.expose_secret().as_bytes(), &body);
    let times = if faults.duplicate_webhook() { 2 } else { 1 };
    for _ in 0..times {
        record.sent += 1;
        let result = client
            .post(&url)
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/missions-sim")
            .header("x-github-event", &record.event)
            .header("x-github-delivery", &record.id)
            .header("x-hub-signature-256", &signature)
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(response) => {
                record.status = Some(response.status().as_u16());
                record.error = None;
            }
            Err(e) => {
                record.status = None;
                record.error = Some(format!("could not deliver: {e}"));
            }
        }
    }
    record
}
