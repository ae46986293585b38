//! `/v1/revocations`: the revocation stream for enforcement points.
//!
//! Every task end (by a user, the reaper or a kill) and every run
//! revocation leaves rows in the store's `revocations` table, written in the
//! same transaction, with increasing ids. `GET /v1/revocations?after=ID`
//! pages through them; `GET /v1/revocations/stream` sends them as
//! Server-Sent Events (`id:` = revocation id), resuming after
//! `Last-Event-ID` or `?after=`. New rows are found by polling the store,
//! which is correct however many servers share the database.
//!
//! The caller is an admin for now; enforcement points get their own
//! credentials later.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use warrant_store::Revocation;

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::routes::tasks::parse_limit;
use crate::state::AppState;

/// Rows per page unless `limit` says otherwise.
const DEFAULT_LIMIT: u32 = 100;
/// Most rows per page (and per store read of the stream).
const MAX_LIMIT: u32 = 1000;
/// How often the stream looks for new rows.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How often an idle stream sends a comment, so proxies keep it open and
/// clients notice a dead connection.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    after: Option<String>,
}

fn parse_after(what: &str, raw: &str) -> Result<i64, ApiError> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            ApiError::InvalidQuery(format!(
                "{what} is `{}`: expected a revocation id (a whole number, 0 or more)",
                raw.chars().take(32).collect::<String>()
            ))
        })
}

/// The JSON form of a revocation: the list's items and each event's data.
fn to_json(r: &Revocation) -> Value {
    json!({
        "id": r.id,
        "kind": r.kind.as_str(),
        "subject_id": r.subject_id.to_string(),
        "task_id": r.task_id,
        "reason": r.reason,
        "at": r.at,
    })
}

/// `GET /v1/revocations?after=ID&limit=N`: `{"revocations", "next_after"}`.
pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let after = match query.after.as_deref() {
        None => 0,
        Some(raw) => parse_after("`after`", raw)?,
    };
    let limit = parse_limit(query.limit.as_deref(), MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT);
    let rows = state.store.revocations_after(after, limit).await?;
    let next_after = rows.last().map(|r| r.id);
    Ok(Json(json!({
        "revocations": rows.iter().map(to_json).collect::<Vec<_>>(),
        "next_after": next_after,
    })))
}

/// `GET /v1/revocations/stream`: Server-Sent Events, `event: revocation`.
///
/// The first read happens before the response starts, so a store that
/// cannot be read is a `503`, not an empty stream. A later store failure
/// ends the stream; the client reconnects with `Last-Event-ID` and misses
/// nothing.
pub async fn stream(
    State(state): State<AppState>,
    _admin: Admin,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::InvalidQuery("`Last-Event-ID` is not text".into()))
        })
        .transpose()?;
    // The header wins: it is what the client saw last on this stream.
    let after = match (last_event_id, query.after.as_deref()) {
        (Some(raw), _) => parse_after("`Last-Event-ID`", raw)?,
        (None, Some(raw)) => parse_after("`after`", raw)?,
        (None, None) => 0,
    };
    let first = state.store.revocations_after(after, MAX_LIMIT).await?;
    let cursor = Cursor {
        after: first.last().map_or(after, |r| r.id),
        pending: first.into(),
        stop: state.shutdown.subscribe(),
        state,
    };
    let events = futures::stream::unfold(cursor, |mut cursor| async move {
        cursor.next().await.map(|event| (Ok(event), cursor))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE_EVERY)))
}

/// Where a stream is: rows fetched but not sent, and the last id fetched.
struct Cursor {
    state: AppState,
    after: i64,
    pending: VecDeque<Revocation>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Cursor {
    /// The next event; `None` ends the stream (server shutting down, or
    /// the store failed).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(r) = self.pending.pop_front() {
                return Some(
                    Event::default()
                        .id(r.id.to_string())
                        .event("revocation")
                        .data(to_json(&r).to_string()),
                );
            }
            if *self.stop.borrow() {
                return None;
            }
            tokio::select! {
                () = tokio::time::sleep(POLL_EVERY) => {}
                _ = self.stop.changed() => return None,
            }
            match self
                .state
                .store
                .revocations_after(self.after, MAX_LIMIT)
                .await
            {
                Ok(rows) => {
                    if let Some(last) = rows.last() {
                        self.after = last.id;
                    }
                    self.pending = rows.into();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "revocation stream: cannot read the store, closing");
                    return None;
                }
            }
        }
    }
}
