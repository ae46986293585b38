//! `/v1/audit`: the audit log, for admins.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use warrant_audit::Event;
use warrant_core::{TaskId, validate_text};
use warrant_store::AuditFilter;

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::routes::tasks::parse_limit;
use crate::state::AppState;

/// Events per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: u32 = 100;
/// Most events per page.
pub const MAX_LIMIT: u32 = 1000;
/// Longest `kind` filter.
const MAX_KIND: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    after: Option<String>,
    task: Option<String>,
    kind: Option<String>,
    limit: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AuditPage {
    events: Vec<Event>,
    /// The last sequence number in this page, to pass as `after` for the
    /// next one; `null` when the page is empty.
    next_after: Option<u64>,
}

pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let after = match query.after.as_deref() {
        None => 0,
        Some(raw) => raw.parse::<u64>().map_err(|_| {
            ApiError::InvalidQuery(format!(
                "`after` is `{}`: expected a sequence number (a whole number, 0 or more)",
                raw.chars().take(32).collect::<String>()
            ))
        })?,
    };
    let task_id = query
        .task
        .as_deref()
        .map(str::parse::<TaskId>)
        .transpose()
        .map_err(|e| ApiError::InvalidQuery(format!("`task`: {e}")))?
        .map(|id| id.to_string());
    let kind = match query.kind {
        Some(k) if k.is_empty() || k.len() > MAX_KIND => {
            return Err(ApiError::InvalidQuery(format!(
                "`kind` must be 1 to {MAX_KIND} characters long, such as `task.created`"
            )));
        }
        Some(k) => {
            validate_text("kind", &k, MAX_KIND)
                .map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
            Some(k)
        }
        None => None,
    };
    let limit = parse_limit(query.limit.as_deref(), MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT);
    let filter = AuditFilter {
        after,
        task_id,
        kind,
        limit: Some(limit),
    };
    let events = state.store.list_audit(&filter).await?;
    let next_after = events.last().map(|e| e.seq);
    Ok(Json(AuditPage { events, next_after }))
}
