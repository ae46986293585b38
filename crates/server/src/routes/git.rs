//! Git: credentials for runs, and the checks a git server asks Warrant for.
//!
//! - `POST /v1/git/credentials` (a run: run token + DPoP): a short-lived
//!   bearer credential for one repository the task covers, at one git
//!   server (its origin is the credential's `aud`). `warrant git-credential`
//!   asks for it on git's behalf. Issuing is checked against the scope the
//!   run holds and recorded (`git.credential.issued`); every *use* is then
//!   decided by policy, at forward auth ([`super::forward`]) and per ref in
//!   the pre-receive hook (below).
//! - `POST /v1/authz/git/ref-updates` (a git credential, as git sent it):
//!   what `warrant hook git-pre-receive` posts from inside the git server,
//!   the pusher's `<old> <new> <ref>` lines; each is decided (`repo.push`
//!   with `branch` and `commit` for a branch, `release` for a tag, `delete`
//!   for a deletion) and the answer says which may go ahead.
//!
//! A git credential is checked at every use like a run token: signature,
//! type, issuer, audience (the git server's origin), lifetime, and then
//! that its run and task are still live in the store, so ending the task
//! or revoking the run refuses it at once. Each refusal is a
//! `git.access.refused` event (within the refusal budget), written before
//! the answer; if it cannot be written the answer is 503, never a pass.

use axum::Json;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use warrant_audit::NewEvent;
use warrant_core::{Scope, ScopeCheck, Task};
use warrant_policy::{Decision, ResourceRef};
use warrant_store::{Run, StoreError};
use warrant_token::git::{
    self, GIT_USERNAME, GitCredential, GitCredentialError, GitCredentialExpectations,
    GitMintParams, MAX_GIT_CREDENTIAL_TTL,
};
use warrant_token::run::Unverified;

use crate::error::ApiError;
use crate::events::ACTOR_ANONYMOUS;
use crate::extract::ApiJson;
use crate::routes::decisions::{
    Deciding, DecisionRequest, DecisionResponse, Purpose, decide_for, held_scope,
};
use crate::routes::refresh::within;
use crate::run_auth::RunCaller;
use crate::state::AppState;

pub const CREDENTIALS_PATH: &str = "/v1/git/credentials";
pub const REF_UPDATES_PATH: &str = "/v1/authz/git/ref-updates";

/// Most ref updates one check takes (a push of more refs is refused).
const MAX_UPDATES: usize = 100;
/// Longest ref name accepted.
const MAX_REF: usize = 1024;

// ---------------------------------------------------------------------------
// Issuing

/// The body of `POST /v1/git/credentials`: the git remote as git's
/// credential protocol describes it. The repository comes from `path`
/// (its last two segments before an optional `.git`) or is named as `repo`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRequest {
    /// `https` (the default) or `http`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// `host[:port]`, as git sends it.
    pub host: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub repo: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CredentialResponse {
    pub credential: String,
    pub token_type: &'static str,
    /// What to give git as the user name (ignored by Warrant).
    pub username: &'static str,
    pub repo: String,
    /// The git server's origin: the credential is good there only.
    pub audience: String,
    pub expires_at: jiff::Timestamp,
    pub expires_in: i64,
}

pub async fn credentials(
    State(state): State<AppState>,
    caller: RunCaller,
    ApiJson(request): ApiJson<CredentialRequest>,
) -> Result<Response, ApiError> {
    let protocol = request.protocol.as_deref().unwrap_or("https");
    let audience = git::origin(protocol, &request.host).ok_or_else(|| {
        ApiError::InvalidBody(format!(
            "`protocol` and `host` must name an http(s) git server, such as `https` and `git.example.com:8443`; got `{}` and `{}`",
            clip(protocol),
            clip(&request.host)
        ))
    })?;
    let repo = match (&request.repo, &request.path) {
        (Some(repo), None) => valid_repo(repo),
        (None, Some(path)) => repo_from_path(path),
        _ => {
            return Err(ApiError::InvalidBody(
                "give the repository as `path` (as git sends it: set `credential.useHttpPath=true`) or as `repo`, not both"
                    .into(),
            ));
        }
    }
    .ok_or_else(|| {
        ApiError::InvalidBody(format!(
            "`{}` does not name a repository as `owner/name`",
            clip(request.repo.as_deref().or(request.path.as_deref()).unwrap_or_default())
        ))
    })?;

    let held = held_scope(&caller);
    if let Err(miss) = may_use(&held, &repo) {
        let why = miss.to_string();
        let event = NewEvent {
            time: state.now(),
            kind: "git.credential.refused".to_owned(),
            actor: caller.token.claims().sub.clone(),
            subject: format!("run:{}", caller.run.id),
            task_id: Some(caller.task.id.to_string()),
            data: json!({
                "run_id": caller.run.id.to_string(),
                "repo": repo,
                "audience": audience,
                "check": "out_of_scope",
                "reason": why,
            }),
        };
        record_refusal(&state, event, "out_of_scope").await?;
        return Err(ApiError::RepoNotInScope(why));
    }

    let ttl = credential_ttl(state.issuer.run_token_ttl);
    let issuer = &state.issuer;
    let minted = git::mint(
        &issuer.key(),
        &GitMintParams {
            issuer: issuer.issuer(),
            audience: &audience,
            trust_domain: &issuer.trust_domain,
            run: caller.token.spiffe_id().run,
            task: &caller.task,
            repo: &repo,
            scope: &held,
            ttl,
            not_after: caller.run.expires_at,
        },
        &*state.clock,
    )
    .map_err(|e| match e {
        GitCredentialError::TaskNotLive(id) | GitCredentialError::TaskExpired(id) => {
            ApiError::TaskEnded(id)
        }
        other => ApiError::Internal(format!("minting a git credential: {other}")),
    })?;
    let claims = &minted.claims;
    let expires_at =
        jiff::Timestamp::from_second(claims.exp).map_err(|e| ApiError::Internal(e.to_string()))?;
    // Recorded before it is handed out; no record, no credential.
    let event = NewEvent {
        time: state.now(),
        kind: "git.credential.issued".to_owned(),
        actor: claims.sub.clone(),
        subject: format!("run:{}", caller.run.id),
        task_id: Some(caller.task.id.to_string()),
        data: json!({
            "run_id": caller.run.id.to_string(),
            "repo": claims.repo,
            "audience": claims.aud,
            "jti": claims.jti,
            "expires_at": expires_at,
        }),
    };
    state.audit.append(event).await?;
    let body = CredentialResponse {
        credential: minted.credential.clone(),
        token_type: "Bearer",
        username: GIT_USERNAME,
        repo: claims.repo.clone(),
        audience: claims.aud.clone(),
        expires_at,
        expires_in: claims.exp.saturating_sub(claims.iat),
    };
    Ok((
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(body),
    )
        .into_response())
}

/// `Ok` when the run may read or push `repo` at all (branches are decided
/// per request later).
fn may_use(held: &Scope, repo: &str) -> Result<(), warrant_core::ScopeMiss> {
    let check = |action| {
        held.covers(&ScopeCheck {
            action,
            repo: Some(repo),
            repo_required: true,
            ..ScopeCheck::default()
        })
    };
    check("repo.read").or_else(|read| check("repo.push").map_err(|_| read))
}

/// `owner/name` if it is a valid repository name.
pub(crate) fn valid_repo(repo: &str) -> Option<String> {
    let scope = Scope {
        repos: vec![repo.to_owned()],
        ..Scope::default()
    };
    scope.validated().ok().map(|_| repo.to_owned())
}

/// The repository a git path names: its last two segments, the last one
/// without `.git` (`/git/acme/api.git` is `acme/api`). Refused: empty,
/// `.` or `..` segments and percent-encoding, so the name Warrant checks is
/// the one the git server serves.
pub(crate) fn repo_from_path(path: &str) -> Option<String> {
    let path = path.trim_matches('/');
    if path.contains('%') || path.contains('\\') {
        return None;
    }
    let segments: Vec<&str> = path.split('/').collect();
    if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return None;
    }
    let [.., owner, name] = segments.as_slice() else {
        return None;
    };
    let name = name.strip_suffix(".git").unwrap_or(name);
    valid_repo(&format!("{owner}/{name}"))
}

fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

// ---------------------------------------------------------------------------
// Checking a presented credential

/// A run acting through a git credential that passed every check.
#[derive(Debug, Clone)]
pub(crate) struct GitCaller {
    pub credential: GitCredential,
    pub run: Run,
    pub task: Task,
}

impl GitCaller {
    /// Whom decisions are for: the credential's run, with what it held at
    /// issue cut down to what the task grants now.
    pub(crate) fn deciding(&self) -> Deciding<'_> {
        Deciding {
            run: &self.run,
            task: &self.task,
            actor: &self.credential.claims().sub,
            scope: within(&self.credential.claims().warrant_scope, &self.task.scope),
        }
    }

    pub(crate) fn repo(&self) -> &str {
        &self.credential.claims().repo
    }
}

/// Why a presented credential was not accepted.
#[derive(Debug)]
pub(crate) enum CredentialRefusal {
    /// No `Authorization` header at all: git's first, anonymous try.
    Missing,
    /// Refused: the check that failed, and what to tell the client.
    Refused {
        check: &'static str,
        why: String,
        run_id: Option<String>,
        task_id: Option<String>,
    },
    /// The store cannot say whether the run is live: never a pass.
    Store(StoreError),
}

impl CredentialRefusal {
    fn refused(check: &'static str, why: impl Into<String>) -> Self {
        Self::Refused {
            check,
            why: why.into(),
            run_id: None,
            task_id: None,
        }
    }
}

/// The credential of the request's `Authorization` header.
fn presented(headers: &HeaderMap) -> Result<String, CredentialRefusal> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(CredentialRefusal::Missing);
    };
    if values.next().is_some() {
        return Err(CredentialRefusal::refused(
            "credential_header",
            "send one `Authorization` header",
        ));
    }
    value
        .to_str()
        .ok()
        .and_then(git::presented)
        .ok_or_else(|| {
            CredentialRefusal::refused(
                "credential_header",
                "the `Authorization` header is neither `Bearer <credential>` nor `Basic` with the credential as password",
            )
        })
}

/// Checks the credential of `headers` for the git server at `origin`:
/// everything but the repository and the decision.
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    origin: &str,
) -> Result<GitCaller, CredentialRefusal> {
    let raw = presented(headers)?;
    let issuer = &state.issuer;
    let keys = issuer
        .jwks(&*state.store, state.clock.now())
        .await
        .map_err(CredentialRefusal::Store)?;
    let credential = Unverified::<GitCredential>::new(raw)
        .verify(
            &keys,
            &GitCredentialExpectations {
                issuer: issuer.issuer(),
                audience: origin,
                trust_domain: &issuer.trust_domain,
                leeway: issuer.dpop.max_future_skew,
            },
            &*state.clock,
        )
        .map_err(|e| match e {
            GitCredentialError::Internal(m) => CredentialRefusal::Store(StoreError::Corrupt(m)),
            other => CredentialRefusal::refused(other.check(), other.to_string()),
        })?;
    let run_id = credential.spiffe_id().run;
    let revoked = |check| CredentialRefusal::Refused {
        check,
        why: "the credential has been revoked: its run or task has ended".into(),
        run_id: Some(run_id.to_string()),
        task_id: Some(credential.claims().task.to_string()),
    };
    let now = state.now();
    let run = state
        .store
        .get_run(run_id.0)
        .await
        .map_err(CredentialRefusal::Store)?
        .ok_or_else(|| revoked("run_unknown"))?;
    if !run.is_live_at(now) {
        return Err(revoked("run_revoked"));
    }
    if run.task_id != credential.claims().task || run.agent != credential.claims().agent {
        return Err(revoked("run_mismatch"));
    }
    let task = state
        .store
        .get_task(run.task_id)
        .await
        .map_err(CredentialRefusal::Store)?
        .ok_or_else(|| revoked("task_missing"))?;
    if !task.is_live() || task.expires_at <= now {
        return Err(revoked("task_ended"));
    }
    Ok(GitCaller {
        credential,
        run,
        task,
    })
}

/// Where a git request was refused, for its `git.access.refused` event.
#[derive(Debug, Clone, Default)]
pub(crate) struct AccessContext {
    /// `forward` or `ref-updates`.
    pub endpoint: &'static str,
    pub method: Option<String>,
    /// The git request's path (never its query).
    pub path: Option<String>,
    pub origin: Option<String>,
    /// The repository the request is for.
    pub repo: Option<String>,
    /// Refs refused without a decision (ref updates).
    pub refs: Vec<String>,
}

/// Records a refused git request (within the refusal budget) and returns
/// the error to answer with, or a store error if the record cannot be
/// written: the request is refused either way.
pub(crate) async fn refuse(
    state: &AppState,
    context: &AccessContext,
    caller: Option<&GitCaller>,
    check: &'static str,
    error: ApiError,
    refusal_ids: (Option<String>, Option<String>),
) -> ApiError {
    match record_access(state, context, caller, check, error.code(), refusal_ids).await {
        Ok(()) => error,
        Err(e) => e,
    }
}

/// Writes the `git.access.refused` event of a refused git request.
async fn record_access(
    state: &AppState,
    context: &AccessContext,
    caller: Option<&GitCaller>,
    check: &'static str,
    code: &'static str,
    refusal_ids: (Option<String>, Option<String>),
) -> Result<(), ApiError> {
    let (mut run_id, mut task_id) = refusal_ids;
    if let Some(c) = caller {
        run_id = Some(c.run.id.to_string());
        task_id = Some(c.task.id.to_string());
    }
    let subject = match (&run_id, &task_id) {
        (Some(run), _) => format!("run:{run}"),
        (None, Some(task)) => format!("task:{task}"),
        (None, None) => "git".to_owned(),
    };
    let event = NewEvent {
        time: state.now(),
        kind: "git.access.refused".to_owned(),
        actor: caller.map_or_else(
            || ACTOR_ANONYMOUS.to_owned(),
            |c| c.credential.claims().sub.clone(),
        ),
        subject,
        task_id: task_id.clone(),
        data: json!({
            "endpoint": context.endpoint,
            "method": context.method.as_deref().map(clip),
            "path": context.path.as_deref().map(|p| p.chars().take(200).collect::<String>()),
            "origin": context.origin.as_deref().map(clip),
            "repo": context.repo,
            "credential_repo": caller.map(GitCaller::repo),
            "refs": (!context.refs.is_empty()).then_some(&context.refs),
            "check": check,
            "error": code,
            "run_id": run_id,
        }),
    };
    record_refusal(state, event, check).await
}

/// Writes a refusal event unless the budget says to count it instead.
async fn record_refusal(state: &AppState, event: NewEvent, check: &str) -> Result<(), ApiError> {
    let kind = event.kind.clone();
    tracing::info!(kind = %kind, check, "git request refused");
    if !state.refusals.admit(&kind, check, state.now()) {
        return Ok(());
    }
    state.store.append_audit(vec![event]).await.map_err(|e| {
        tracing::error!(error = %e, "cannot record a git refusal");
        ApiError::Store(match e {
            StoreError::Unavailable(m) => StoreError::Unavailable(m),
            other => StoreError::Unavailable(other.to_string()),
        })
    })?;
    Ok(())
}

/// The refusal of a credential as an answer (and its event).
pub(crate) async fn refuse_credential(
    state: &AppState,
    context: &AccessContext,
    refusal: CredentialRefusal,
) -> ApiError {
    match refusal {
        CredentialRefusal::Missing => ApiError::GitCredentialInvalid(
            "no credential was sent: configure `warrant git-credential` as git's credential helper"
                .into(),
        ),
        CredentialRefusal::Store(e) => ApiError::Store(e),
        CredentialRefusal::Refused {
            check,
            why,
            run_id,
            task_id,
        } => {
            refuse(
                state,
                context,
                None,
                check,
                ApiError::GitCredentialInvalid(why),
                (run_id, task_id),
            )
            .await
        }
    }
}

/// A decision's answer as an error, for anything but `allow`.
pub(crate) fn refused_by(decided: &DecisionResponse) -> Option<ApiError> {
    match decided.decision {
        Decision::Allow => None,
        Decision::ApprovalRequired => Some(ApiError::GitNeedsApproval(
            decided.approval_id.clone().unwrap_or_default(),
        )),
        Decision::Deny => Some(ApiError::GitDenied(decided.reasons.join("; "))),
    }
}

/// `Repo::"owner/name"`.
pub(crate) fn repo_resource(repo: &str) -> ResourceRef {
    ResourceRef {
        kind: "Repo".to_owned(),
        id: repo.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Ref updates (the pre-receive hook)

/// The body of `POST /v1/authz/git/ref-updates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefUpdatesRequest {
    /// The git server's origin (`https://git.example.com`): the credential
    /// must be for it.
    pub origin: String,
    /// The repository pushed to, `owner/name` (or its path).
    pub repo: String,
    pub updates: Vec<RefUpdate>,
}

/// One line of what git gives the pre-receive hook.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefUpdate {
    #[serde(rename = "ref")]
    pub name: String,
    pub old: String,
    pub new: String,
    /// The paths the new commits change, when the hook knows them.
    #[serde(default)]
    pub changed_paths: Vec<String>,
}

/// The answer: `allowed` only if every update is.
#[derive(Debug, Serialize)]
pub struct RefUpdatesResponse {
    pub allowed: bool,
    pub updates: Vec<RefResult>,
}

#[derive(Debug, Serialize)]
pub struct RefResult {
    #[serde(rename = "ref")]
    pub name: String,
    pub old: String,
    pub new: String,
    /// The action it was decided as (`repo.push`, `release`, `delete`), or
    /// `null` for a ref Warrant does not decide.
    pub action: Option<&'static str>,
    pub decision: Decision,
    pub code: &'static str,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<u64>,
}

/// What one ref update is, for policy.
#[derive(Debug, PartialEq, Eq)]
enum RefKind<'a> {
    Branch(&'a str),
    Tag(&'a str),
    Other,
}

fn ref_kind(name: &str) -> RefKind<'_> {
    if let Some(b) = name.strip_prefix("refs/heads/")
        && ref_name_ok(b)
    {
        RefKind::Branch(b)
    } else if let Some(t) = name.strip_prefix("refs/tags/")
        && ref_name_ok(t)
    {
        RefKind::Tag(t)
    } else {
        RefKind::Other
    }
}

/// git's ref-name rules (`git check-ref-format`), near enough to refuse
/// anything git itself would.
fn ref_name_ok(s: &str) -> bool {
    !(s.is_empty()
        || s.len() > MAX_REF
        || s.starts_with('/')
        || s.ends_with('/')
        || s.ends_with('.')
        || s.ends_with(".lock")
        || s.contains("..")
        || s.contains("//")
        || s.contains("@{")
        || s == "@"
        || s.split('/').any(|c| c.starts_with('.'))
        || s.chars().any(|c| {
            c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\')
        }))
}

/// A full object id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
fn object_id_ok(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

/// Parses `https://host[:port]` into its normal origin.
fn parse_origin(raw: &str) -> Option<String> {
    let (scheme, rest) = raw.split_once("://")?;
    git::origin(scheme, rest.trim_end_matches('/'))
}

pub async fn ref_updates(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<RefUpdatesRequest>,
) -> Result<Json<RefUpdatesResponse>, ApiError> {
    let origin = parse_origin(&request.origin).ok_or_else(|| {
        ApiError::InvalidBody(format!(
            "`origin` must be the git server's `http(s)://host[:port]`; got `{}`",
            clip(&request.origin)
        ))
    })?;
    let repo = repo_from_path(&request.repo).ok_or_else(|| {
        ApiError::InvalidBody(format!(
            "`repo` must be `owner/name`; got `{}`",
            clip(&request.repo)
        ))
    })?;
    if request.updates.is_empty() || request.updates.len() > MAX_UPDATES {
        return Err(ApiError::InvalidBody(
            "`updates` holds 1 to 100 ref updates".into(),
        ));
    }
    for u in &request.updates {
        if u.name.is_empty() || u.name.len() > MAX_REF || u.name.chars().any(char::is_control) {
            return Err(ApiError::InvalidBody(
                "a `ref` must be 1 to 1024 characters without control characters".into(),
            ));
        }
        if !object_id_ok(&u.old) || !object_id_ok(&u.new) || (is_zero(&u.old) && is_zero(&u.new)) {
            return Err(ApiError::InvalidBody(format!(
                "`old` and `new` of `{}` must be full object ids, not both zero",
                clip(&u.name)
            )));
        }
    }

    let context = AccessContext {
        endpoint: "ref-updates",
        method: Some("POST".into()),
        path: None,
        origin: Some(origin.clone()),
        repo: Some(repo.clone()),
        refs: Vec::new(),
    };
    let caller = match authenticate(&state, &headers, &origin).await {
        Ok(c) => c,
        Err(refusal) => return Err(refuse_credential(&state, &context, refusal).await),
    };
    if caller.repo() != repo {
        let err = ApiError::GitRepoMismatch(caller.repo().to_owned(), repo.clone());
        return Err(refuse(
            &state,
            &context,
            Some(&caller),
            "repo_mismatch",
            err,
            (None, None),
        )
        .await);
    }

    let deciding = caller.deciding();
    let mut results = Vec::with_capacity(request.updates.len());
    let mut unsupported = Vec::new();
    for u in request.updates {
        let deleting = is_zero(&u.new);
        let (action, context) = match ref_kind(&u.name) {
            RefKind::Branch(branch) if deleting => {
                ("delete", json!({"branch": branch, "commit": u.old}))
            }
            RefKind::Branch(branch) => (
                "repo.push",
                json!({"branch": branch, "commit": u.new, "changed_paths": sorted(u.changed_paths)}),
            ),
            RefKind::Tag(_) if deleting => ("delete", json!({"commit": u.old})),
            RefKind::Tag(_) => (
                "release",
                json!({"commit": u.new, "changed_paths": sorted(u.changed_paths)}),
            ),
            RefKind::Other => {
                unsupported.push(u.name.clone());
                results.push(RefResult {
                    name: u.name,
                    old: u.old,
                    new: u.new,
                    action: None,
                    decision: Decision::Deny,
                    code: "unsupported_ref",
                    reasons: vec![
                        "Warrant decides pushes of branches (`refs/heads/...`) and tags (`refs/tags/...`) only"
                            .into(),
                    ],
                    approval_id: None,
                    audit_seq: None,
                });
                continue;
            }
        };
        let decided = decide_for(
            &state,
            &deciding,
            DecisionRequest {
                action: action.to_owned(),
                resource: repo_resource(&repo),
                context: Some(context),
            },
            Purpose::Act,
        )
        .await?;
        results.push(RefResult {
            name: u.name,
            old: u.old,
            new: u.new,
            action: Some(action),
            decision: decided.decision,
            code: decided.code,
            reasons: decided.reasons,
            approval_id: decided.approval_id,
            audit_seq: Some(decided.audit_seq),
        });
    }
    if !unsupported.is_empty() {
        let context = AccessContext {
            refs: unsupported,
            ..context
        };
        record_access(
            &state,
            &context,
            Some(&caller),
            "unsupported_ref",
            "git_request_unknown",
            (None, None),
        )
        .await?;
    }
    Ok(Json(RefUpdatesResponse {
        allowed: results.iter().all(|r| r.decision == Decision::Allow),
        updates: results,
    }))
}

/// Sorted without duplicates, so the same commit is the same request (and
/// the same approval).
fn sorted(mut paths: Vec<String>) -> Value {
    paths.sort();
    paths.dedup();
    json!(paths)
}

/// How long a git credential lives: never longer than a run token, so a
/// key retired by a rotation stays published until the credentials it
/// signed have expired.
fn credential_ttl(run_token_ttl: SignedDuration) -> SignedDuration {
    MAX_GIT_CREDENTIAL_TTL.min(run_token_ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_come_from_the_last_two_path_segments() {
        for (path, want) in [
            ("acme/api.git", "acme/api"),
            ("/acme/api.git/", "acme/api"),
            ("acme/api", "acme/api"),
            ("git/acme/api.git", "acme/api"),
            ("acme/api.js.git", "acme/api.js"),
        ] {
            assert_eq!(repo_from_path(path).as_deref(), Some(want), "{path}");
        }
        for bad in [
            "",
            "api.git",
            "acme//api.git",
            "acme/../api.git",
            "acme/./api",
            "acme/a%70i.git",
            "acme/.git",
            "acme/a pi.git",
        ] {
            assert_eq!(repo_from_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn refs_are_branches_tags_or_nothing_warrant_decides() {
        assert_eq!(ref_kind("refs/heads/main"), RefKind::Branch("main"));
        assert_eq!(
            ref_kind("refs/heads/feature/x"),
            RefKind::Branch("feature/x")
        );
        assert_eq!(ref_kind("refs/tags/v1.0"), RefKind::Tag("v1.0"));
        for other in [
            "refs/notes/commits",
            "refs/heads/",
            "refs/heads/a..b",
            "refs/heads/x.lock",
            "refs/heads/.hidden",
            "refs/heads/a b",
            "HEAD",
            "refs/pull/1/head",
        ] {
            assert_eq!(ref_kind(other), RefKind::Other, "{other}");
        }
    }

    #[test]
    fn object_ids_are_full_lowercase_hex() {
        assert!(object_id_ok(&"a".repeat(40)));
        assert!(object_id_ok(&"0".repeat(64)));
        assert!(!object_id_ok(&"A".repeat(40)));
        assert!(!object_id_ok(&"a".repeat(39)));
        assert!(!object_id_ok("main"));
    }

    #[test]
    fn credentials_never_outlive_a_run_token() {
        assert_eq!(
            credential_ttl(SignedDuration::from_secs(300)),
            SignedDuration::from_secs(300)
        );
        assert_eq!(
            credential_ttl(SignedDuration::from_secs(3600)),
            MAX_GIT_CREDENTIAL_TTL
        );
    }

    #[test]
    fn origins_are_parsed_from_urls() {
        assert_eq!(
            parse_origin("http://127.0.0.1:8080/").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(parse_origin("git.example"), None);
        assert_eq!(parse_origin("https://git.example/path"), None);
    }
}
