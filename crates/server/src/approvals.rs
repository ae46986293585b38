//! What happens around an approval besides its rows: telling the webhooks
//! (best effort, never blocking: the approval lives in the store) and the
//! signed in-toto attestation of an approved request.

use serde_json::{Map, Value, json};
use warrant_attest::{ApprovalPredicate, Approver, Resource, Statement, Subject};
use warrant_core::Name;
use warrant_store::{Approval, ApprovalState, Verdict};

use crate::error::ApiError;
use crate::notify::Notification;
use crate::state::AppState;

/// Tells the webhooks that `approval` is now in its current state
/// (`approval.requested`, `.approved`, `.denied`, `.voted`, `.expired`,
/// `.consumed`). Never fails: a store error while describing it is logged.
pub async fn notify_state(state: &AppState, approval: &Approval, by: Option<&Name>) {
    let event = match approval.state {
        ApprovalState::Pending if by.is_some() => "approval.voted",
        ApprovalState::Pending => "approval.requested",
        ApprovalState::Approved => "approval.approved",
        ApprovalState::Denied => "approval.denied",
        ApprovalState::Expired => "approval.expired",
        ApprovalState::Revoked => "approval.revoked",
        ApprovalState::Consumed => "approval.consumed",
    };
    let body = match crate::routes::approvals::human_view(state, approval).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, approval = %approval.id, "cannot describe an approval for its webhooks");
            json!({"id": approval.id.to_string(), "state": approval.state.as_str()})
        }
    };
    let resource = format!(
        "{} {}",
        body["resource"]["type"].as_str().unwrap_or("resource"),
        body["resource"]["id"].as_str().unwrap_or("?")
    );
    let summary = match approval.state {
        ApprovalState::Pending if by.is_none() => format!(
            "Approval needed: `{}` on {resource} for agent `{}` (task of `{}`): {}. Approve with `warrant approvals approve {} --reason ...`",
            approval.action,
            body["agent"].as_str().unwrap_or("?"),
            body["delegator"].as_str().unwrap_or("?"),
            approval.reasons.join("; "),
            approval.id
        ),
        s => format!(
            "Approval `{}` ({} on {resource}) is {}{}",
            approval.id,
            approval.action,
            s.as_str(),
            by.map(|b| format!(" (by `{b}`)")).unwrap_or_default()
        ),
    };
    state.notifier.notify(Notification {
        event: event.to_owned(),
        approval_id: approval.id.to_string(),
        body,
        summary,
    });
}

/// The artifacts an approval is bound to: the commit and the digest of its
/// request when it names them, else the request hash itself.
fn subjects(
    approval: &Approval,
    context: &Map<String, Value>,
) -> Vec<warrant_attest::ResourceDescriptor> {
    let name = context
        .get("repo")
        .and_then(Value::as_str)
        .unwrap_or("artifact")
        .to_owned();
    let mut out = Vec::new();
    if let Some(commit) = context.get("commit").and_then(Value::as_str)
        && let Ok(s) = Subject::git_commit(&commit.to_ascii_lowercase())
    {
        out.push(s.descriptor(name.clone()));
    }
    if let Some(digest) = context.get("digest").and_then(Value::as_str) {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        if let Ok(s) = Subject::sha256_hex(&hex.to_ascii_lowercase()) {
            out.push(s.descriptor(name));
        }
    }
    if out.is_empty() {
        out.push(Subject::sha256(&approval.request_hash).descriptor("warrant-request"));
    }
    out
}

/// The DSSE envelope (JSON) of an approved or consumed approval, signed
/// with the server's current key (published in the JWKS).
pub async fn attestation(state: &AppState, approval: &Approval) -> Result<Value, ApiError> {
    let input: warrant_policy::DecisionInput = serde_json::from_value(approval.request.clone())
        .map_err(|e| ApiError::Internal(format!("approval `{}` request: {e}", approval.id)))?;
    let votes = state.store.approval_votes(approval.id).await?;
    let approvers: Vec<Approver> = votes
        .iter()
        .filter(|v| v.verdict == Verdict::Approve)
        .map(|v| Approver {
            name: v.approver.to_string(),
            reason: v.reason.clone(),
            at: v.at,
        })
        .collect();
    let mut context = match serde_json::to_value(&input.context) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    // What the approver decided on, minus what only the audit log may hold.
    for field in warrant_policy::RequestContext::sensitive_fields() {
        context.remove(*field);
    }
    let predicate = ApprovalPredicate {
        approval_id: approval.id.to_string(),
        action: approval.action.clone(),
        resource: Resource {
            kind: input.resource.kind.clone(),
            id: input.resource.id.clone(),
        },
        request_hash: hex::encode(approval.request_hash),
        context: context.clone(),
        task: approval.task_id.to_string(),
        run: Some(approval.run_id.to_string()),
        agent: input.principal.agent.clone(),
        delegator: input.principal.user.clone(),
        approvers,
        requested_at: approval.created_at,
        approved_at: approval.decided_at.unwrap_or(approval.created_at),
        expires_at: approval.expires_at,
        policies: approval.policies.clone(),
        quorum: approval.quorum,
    };
    let statement = Statement::approval(subjects(approval, &context), predicate);
    let envelope = warrant_attest::sign(&statement, &state.issuer.key())
        .map_err(|e| ApiError::Internal(format!("cannot sign the attestation: {e}")))?;
    serde_json::to_value(&envelope).map_err(|e| ApiError::Internal(e.to_string()))
}
