//! Handlers react to typed events. They are registered in one list and each decides
//! for itself whether an event concerns it. A handler writes only through the
//! transaction it is given: that transaction also marks the delivery processed, so
//! its writes and the "done" mark land together or not at all.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::AnyConnection;

use crate::github::events::WebhookEvent;

/// What a handler knows about the delivery it is handling.
#[derive(Debug, Clone)]
pub struct DeliveryInfo {
    pub seq: i64,
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    /// 1 on the first try.
    pub attempt: u32,
}

pub struct HandlerContext<'a> {
    pub delivery: &'a DeliveryInfo,
    tx: &'a mut AnyConnection,
    savepoint_open: bool,
}

impl<'a> HandlerContext<'a> {
    pub(crate) fn new(delivery: &'a DeliveryInfo, tx: &'a mut AnyConnection) -> Self {
        Self {
            delivery,
            tx,
            savepoint_open: false,
        }
    }

    /// The open transaction, in which the delivery will also be marked processed.
    /// Run statements on it; never BEGIN, COMMIT, ROLLBACK or RELEASE: the event loop
    /// owns the transaction.
    /// The first call opens this delivery's savepoint, so that a failure undoes only
    /// this delivery's writes; handlers that never write cost no extra round trip.
    /// Commit and rollback belong to the event loop.
    pub async fn db(&mut self) -> sqlx::Result<&mut AnyConnection> {
        if !self.savepoint_open {
            sqlx::raw_sql("SAVEPOINT missions_delivery")
                .execute(&mut *self.tx)
                .await?;
            self.savepoint_open = true;
        }
        Ok(&mut *self.tx)
    }

    /// Ends the savepoint, if one was opened: kept on success, undone on failure.
    pub(crate) async fn finish(self, keep: bool) -> sqlx::Result<()> {
        if self.savepoint_open {
            let sql = if keep {
                "RELEASE missions_delivery"
            } else {
                "ROLLBACK TO missions_delivery; RELEASE missions_delivery"
            };
            sqlx::raw_sql(sql).execute(self.tx).await?;
        }
        Ok(())
    }
}

#[async_trait]
pub trait Handler: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// An error is retried with backoff and, after the configured number of
    /// attempts, parks the delivery as failed with the error's text.
    async fn handle(&self, cx: &mut HandlerContext<'_>, event: &WebhookEvent)
    -> anyhow::Result<()>;
}

/// The handlers in the order they run.
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    handlers: Vec<Arc<dyn Handler>>,
}

impl std::fmt::Debug for HandlerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.handlers.iter().map(|h| h.name()))
            .finish()
    }
}

impl HandlerRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The handlers `missions serve` runs.
    pub fn standard() -> Self {
        Self::new().with(LoggingHandler)
    }

    pub fn with(mut self, handler: impl Handler) -> Self {
        self.handlers.push(Arc::new(handler));
        self
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<dyn Handler>> {
        self.handlers.iter()
    }
}

/// Logs every known event with what identifies it. The first handler; later
/// issues add the mission handlers beside it.
#[derive(Debug, Clone, Copy)]
pub struct LoggingHandler;

#[async_trait]
impl Handler for LoggingHandler {
    fn name(&self) -> &'static str {
        "log"
    }

    async fn handle(
        &self,
        _cx: &mut HandlerContext<'_>,
        event: &WebhookEvent,
    ) -> anyhow::Result<()> {
        let installation = event
            .installation_id()
            .map_or_else(|| "-".to_owned(), |id| id.to_string());
        let repository = event.repository().map_or("-", |r| r.full_name.as_str());
        let sender = event.sender().map_or("-", |s| s.login.as_str());
        let action = event.action().unwrap_or("-");
        let event_name = event.event_name();
        if event.action_is_known() {
            tracing::info!(event = event_name, action, repository, sender, %installation, "event received");
        } else {
            tracing::debug!(event = event_name, action, repository, sender, %installation, "event received; action not used by the App");
        }
        Ok(())
    }
}
