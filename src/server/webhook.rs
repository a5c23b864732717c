//! `POST /webhook`: verify, store durably, answer. Nothing else happens on the
//! request path; the event loop does the work later.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::github::webhook::{
    DELIVERY_HEADER, EVENT_HEADER, Envelope, SIGNATURE_HEADER, valid_header_token,
};
use crate::server::AppState;
use crate::store::inbox::{InsertOutcome, NewDelivery};

/// Answers GitHub sees in its delivery log: short, and never echoing the payload.
fn answer(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

pub async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    // The signature comes first: until it verifies, nothing else of the request is trusted.
    let signature = headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes());
    if let Err(e) = state.secrets.verify(signature, &body) {
        tracing::warn!(reason = %e, delivery = header_for_log(&headers, DELIVERY_HEADER), "webhook refused: bad signature");
        crate::metrics::delivery_received("-", "refused");
        return answer(
            StatusCode::UNAUTHORIZED,
            "invalid or missing X-Hub-Signature-256\n",
        );
    }
    let Some(event) = header_token(&headers, EVENT_HEADER, 64) else {
        crate::metrics::delivery_received("-", "refused");
        return answer(
            StatusCode::BAD_REQUEST,
            "missing or invalid X-GitHub-Event\n",
        );
    };
    let Some(delivery_id) = header_token(&headers, DELIVERY_HEADER, 128) else {
        crate::metrics::delivery_received(event, "refused");
        return answer(
            StatusCode::BAD_REQUEST,
            "missing or invalid X-GitHub-Delivery\n",
        );
    };

    let envelope = Envelope::read(&body).unwrap_or_default();
    let delivery = NewDelivery {
        delivery_id: delivery_id.to_owned(),
        event: event.to_owned(),
        action: envelope.action.map(|a| a.into_owned()),
        installation_id: envelope.installation.map(|i| i.id),
        repository: envelope.repository.map(|r| r.full_name.into_owned()),
        received_at: state.clock.now(),
        payload: body.clone(),
    };
    match state.ingest.store(delivery).await {
        Ok(InsertOutcome::Stored) => {
            tracing::debug!(delivery = delivery_id, event, "delivery stored");
            crate::metrics::delivery_received(event, "stored");
            answer(StatusCode::ACCEPTED, "stored\n")
        }
        Ok(InsertOutcome::Duplicate) => {
            tracing::debug!(
                delivery = delivery_id,
                event,
                "delivery seen before; not stored again"
            );
            crate::metrics::delivery_received(event, "duplicate");
            answer(StatusCode::OK, "already stored\n")
        }
        Err(e) => {
            tracing::error!(delivery = delivery_id, event, error = %e, "delivery not stored");
            crate::metrics::delivery_received(event, "failed");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "not stored; please redeliver\n",
            )
        }
    }
}

fn header_token<'h>(headers: &'h HeaderMap, name: &str, max_len: usize) -> Option<&'h str> {
    let value = headers.get(name)?.to_str().ok()?;
    valid_header_token(value, max_len).then_some(value)
}

/// A header value fit for a log line: only when it looks like a real token.
fn header_for_log<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    header_token(headers, name, 128).unwrap_or("-")
}
