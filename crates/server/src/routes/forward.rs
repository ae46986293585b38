//! `GET|POST /v1/authz/forward` (and `/v1/authz/forward/{path}`): forward
//! auth for a reverse proxy in front of a git server.
//!
//! The proxy asks before each request whether it may pass, and Warrant
//! answers `200` (pass; `X-Warrant-Run`, `X-Warrant-Task`, `X-Warrant-Repo`
//! and `X-Warrant-Action` say for whom), `401` (no credential, or one not
//! accepted: with `WWW-Authenticate: Basic realm="warrant"` so git asks its
//! credential helper) or `403` (refused: another repository, a request
//! Warrant does not know, or a policy deny or pending approval, then with
//! `X-Warrant-Approval`). Anything else — a store or audit failure — is a
//! `5xx`, which every proxy treats as a refusal.
//!
//! Where the original request is read from, first match wins:
//!
//! | proxy | method | path and query | host | scheme |
//! |---|---|---|---|---|
//! | nginx `auth_request` | `X-Original-Method` | `X-Original-URI` | `X-Forwarded-Host` | `X-Forwarded-Proto` |
//! | Traefik ForwardAuth | `X-Forwarded-Method` | `X-Forwarded-Uri` | `X-Forwarded-Host` | `X-Forwarded-Proto` |
//! | Envoy ext_authz (HTTP, `path_prefix: /v1/authz/forward`) | the request's | the request's, after the prefix | `X-Forwarded-Host`, else `Host` | `X-Forwarded-Proto` |
//!
//! The scheme defaults to `https`. The credential is the request's
//! `Authorization` (`Bearer <credential>`, or `Basic` with the credential as
//! password).
//!
//! Git smart HTTP is what is decided: `GET .../info/refs?service=git-upload-pack`
//! and `POST .../git-upload-pack` (fetch, clone) are `repo.read`;
//! `GET .../info/refs?service=git-receive-pack` and `POST .../git-receive-pack`
//! (push) need the task's scope to allow `repo.push` on the repository and are
//! then decided as `repo.read` (the transport reads refs); what a push
//! writes is decided per ref by `warrant hook git-pre-receive`. Everything
//! else (the dumb protocol, other paths and methods) is refused.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use warrant_core::ScopeCheck;

use crate::error::ApiError;
use crate::routes::decisions::{DecisionRequest, Purpose, decide_for};
use crate::routes::git::{
    AccessContext, GitCaller, authenticate, refuse, refuse_credential, refused_by, repo_from_path,
    repo_resource,
};
use crate::state::AppState;

pub const FORWARD_PATH: &str = "/v1/authz/forward";

/// What a git request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    /// fetch, clone: `git-upload-pack`.
    Read,
    /// push: `git-receive-pack`.
    Push,
}

/// The original request, as the proxy described it.
#[derive(Debug, Clone)]
struct Original {
    method: String,
    /// The path, percent-encoding and all (never decoded).
    path: String,
    query: Option<String>,
    host: Option<String>,
    scheme: String,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The first value of a header a proxy may have appended to.
fn first(value: &str) -> &str {
    value.split(',').next().unwrap_or_default().trim()
}

fn original(method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Original> {
    let (method, target, envoy) = if let Some(target) = header(headers, "x-original-uri") {
        let m = header(headers, "x-original-method").unwrap_or(method.as_str());
        (m.to_owned(), target.to_owned(), false)
    } else if let Some(target) = header(headers, "x-forwarded-uri") {
        let m = header(headers, "x-forwarded-method").unwrap_or(method.as_str());
        (m.to_owned(), target.to_owned(), false)
    } else {
        let rest = uri.path().strip_prefix(FORWARD_PATH)?;
        if !rest.starts_with('/') {
            return None;
        }
        let target = match uri.query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_owned(),
        };
        (method.as_str().to_owned(), target, true)
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target, None),
    };
    let host = header(headers, "x-forwarded-host")
        .map(first)
        .or_else(|| envoy.then(|| header(headers, "host")).flatten())
        .map(str::to_owned);
    let scheme = header(headers, "x-forwarded-proto")
        .map(first)
        .unwrap_or("https")
        .to_owned();
    Some(Original {
        method: method.to_ascii_uppercase(),
        path,
        query,
        host,
        scheme,
    })
}

/// The repository and service of a git smart-HTTP request, or `None` for
/// anything else.
fn classify(o: &Original) -> Option<(String, Service)> {
    let service_param = || {
        o.query.as_deref().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("service="))
                .map(str::to_owned)
        })
    };
    let (repo_path, service) = if let Some(p) = o.path.strip_suffix("/info/refs") {
        if o.method != "GET" {
            return None;
        }
        match service_param().as_deref() {
            Some("git-upload-pack") => (p, Service::Read),
            Some("git-receive-pack") => (p, Service::Push),
            _ => return None,
        }
    } else if let Some(p) = o.path.strip_suffix("/git-upload-pack") {
        (p, Service::Read)
    } else if let Some(p) = o.path.strip_suffix("/git-receive-pack") {
        (p, Service::Push)
    } else {
        return None;
    };
    if !o.path.ends_with("/info/refs") && o.method != "POST" {
        return None;
    }
    repo_from_path(repo_path).map(|r| (r, service))
}

pub async fn forward(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    match check(&state, &method, &uri, &headers).await {
        Ok(response) => response,
        Err((error, approval)) => {
            let mut response = error.into_response();
            if let Some(id) = approval.and_then(|id| HeaderValue::from_str(&id).ok()) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static("x-warrant-approval"), id);
            }
            response
        }
    }
}

/// The answer, or the refusal with the pending approval's id if any.
async fn check(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, (ApiError, Option<String>)> {
    let plain = |e| (e, None);
    let Some(o) = original(method, uri, headers) else {
        let context = AccessContext {
            endpoint: "forward",
            method: Some(method.as_str().to_owned()),
            ..AccessContext::default()
        };
        let err = ApiError::GitRequestUnknown(
            "no original request: send `X-Original-URI` (nginx), `X-Forwarded-Uri` (Traefik), or append the path to `/v1/authz/forward` (Envoy)"
                .into(),
        );
        return Err(plain(
            refuse(
                state,
                &context,
                None,
                "no_original_request",
                err,
                (None, None),
            )
            .await,
        ));
    };
    let mut context = AccessContext {
        endpoint: "forward",
        method: Some(o.method.clone()),
        path: Some(o.path.clone()),
        origin: None,
        repo: None,
        refs: Vec::new(),
    };
    let Some((repo, service)) = classify(&o) else {
        let err = ApiError::GitRequestUnknown(format!(
            "`{} {}` is not a git smart-HTTP request Warrant decides",
            o.method.chars().take(10).collect::<String>(),
            o.path.chars().take(200).collect::<String>()
        ));
        return Err(plain(
            refuse(state, &context, None, "unknown_request", err, (None, None)).await,
        ));
    };
    context.repo = Some(repo.clone());
    let Some(origin) = o
        .host
        .as_deref()
        .and_then(|h| warrant_token::git::origin(&o.scheme, h))
    else {
        let err = ApiError::GitRequestUnknown(
            "no valid forwarded host: the proxy must send `X-Forwarded-Host` (and `X-Forwarded-Proto`)"
                .into(),
        );
        return Err(plain(
            refuse(
                state,
                &context,
                None,
                "no_forwarded_host",
                err,
                (None, None),
            )
            .await,
        ));
    };
    context.origin = Some(origin.clone());

    let caller = match authenticate(state, headers, &origin).await {
        Ok(c) => c,
        Err(refusal) => return Err(plain(refuse_credential(state, &context, refusal).await)),
    };
    if caller.repo() != repo {
        let err = ApiError::GitRepoMismatch(caller.repo().to_owned(), repo.clone());
        return Err(plain(
            refuse(
                state,
                &context,
                Some(&caller),
                "repo_mismatch",
                err,
                (None, None),
            )
            .await,
        ));
    }
    let deciding = caller.deciding();
    if service == Service::Push {
        let covered = deciding.scope.covers(&ScopeCheck {
            action: "repo.push",
            repo: Some(&repo),
            repo_required: true,
            ..ScopeCheck::default()
        });
        if let Err(miss) = covered {
            let err = ApiError::GitDenied(miss.to_string());
            return Err(plain(
                refuse(
                    state,
                    &context,
                    Some(&caller),
                    "out_of_scope",
                    err,
                    (None, None),
                )
                .await,
            ));
        }
    }
    let decided = decide_for(
        state,
        &deciding,
        DecisionRequest {
            action: "repo.read".to_owned(),
            resource: repo_resource(&repo),
            context: None,
        },
        Purpose::Act,
    )
    .await
    .map_err(plain)?;
    if let Some(err) = refused_by(&decided) {
        return Err((err, decided.approval_id));
    }
    Ok(allowed(&caller, service))
}

fn allowed(caller: &GitCaller, service: Service) -> Response {
    let action = match service {
        Service::Read => "repo.read",
        Service::Push => "repo.push",
    };
    let mut response = axum::Json(json!({
        "allowed": true,
        "run_id": caller.run.id.to_string(),
        "task_id": caller.task.id.to_string(),
        "repo": caller.repo(),
        "action": action,
    }))
    .into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-warrant-run", caller.run.id.to_string()),
        ("x-warrant-task", caller.task.id.to_string()),
        ("x-warrant-repo", caller.repo().to_owned()),
        ("x-warrant-action", action.to_owned()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(method: &str, target: &str) -> Original {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.to_owned(), None),
        };
        Original {
            method: method.into(),
            path,
            query,
            host: None,
            scheme: "https".into(),
        }
    }

    #[test]
    fn git_smart_http_requests_are_classified() {
        let cases = [
            (
                "GET",
                "/acme/api.git/info/refs?service=git-upload-pack",
                Service::Read,
            ),
            ("POST", "/acme/api.git/git-upload-pack", Service::Read),
            (
                "GET",
                "/git/acme/api.git/info/refs?service=git-receive-pack",
                Service::Push,
            ),
            ("POST", "/acme/api/git-receive-pack", Service::Push),
        ];
        for (m, t, want) in cases {
            assert_eq!(
                classify(&o(m, t)),
                Some(("acme/api".to_owned(), want)),
                "{m} {t}"
            );
        }
        for (m, t) in [
            ("GET", "/acme/api.git/info/refs"),
            ("GET", "/acme/api.git/info/refs?service=git-other"),
            ("POST", "/acme/api.git/info/refs?service=git-upload-pack"),
            ("GET", "/acme/api.git/git-upload-pack"),
            ("GET", "/acme/api.git/HEAD"),
            ("GET", "/acme/api.git/objects/info/packs"),
            ("POST", "/acme/../other/api.git/git-upload-pack"),
            ("POST", "/acme/a%70i.git/git-upload-pack"),
            ("POST", "/git-upload-pack"),
            ("DELETE", "/acme/api.git/git-receive-pack"),
        ] {
            assert_eq!(classify(&o(m, t)), None, "{m} {t}");
        }
    }

    #[test]
    fn the_original_request_comes_from_each_proxy_style() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-original-uri",
            "/acme/api.git/info/refs?service=git-upload-pack"
                .parse()
                .unwrap(),
        );
        h.insert("x-original-method", "GET".parse().unwrap());
        h.insert("x-forwarded-host", "git.example:8443".parse().unwrap());
        let uri: Uri = FORWARD_PATH.parse().unwrap();
        let got = original(&Method::POST, &uri, &h).unwrap();
        assert_eq!(got.method, "GET");
        assert_eq!(got.path, "/acme/api.git/info/refs");
        assert_eq!(got.query.as_deref(), Some("service=git-upload-pack"));
        assert_eq!(got.host.as_deref(), Some("git.example:8443"));
        assert_eq!(got.scheme, "https");

        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-uri",
            "/acme/api.git/git-receive-pack".parse().unwrap(),
        );
        h.insert("x-forwarded-method", "POST".parse().unwrap());
        h.insert(
            "x-forwarded-host",
            "git.example, proxy.internal".parse().unwrap(),
        );
        h.insert("x-forwarded-proto", "http".parse().unwrap());
        let got = original(&Method::GET, &uri, &h).unwrap();
        assert_eq!(
            (got.method.as_str(), got.path.as_str()),
            ("POST", "/acme/api.git/git-receive-pack")
        );
        assert_eq!(got.host.as_deref(), Some("git.example"));
        assert_eq!(got.scheme, "http");

        // Envoy: the path after the prefix, the Host header.
        let mut h = HeaderMap::new();
        h.insert("host", "git.example".parse().unwrap());
        let uri: Uri = "/v1/authz/forward/acme/api.git/info/refs?service=git-upload-pack"
            .parse()
            .unwrap();
        let got = original(&Method::GET, &uri, &h).unwrap();
        assert_eq!(got.path, "/acme/api.git/info/refs");
        assert_eq!(got.host.as_deref(), Some("git.example"));

        // Plain `/v1/authz/forward` without a description: nothing to decide.
        let uri: Uri = FORWARD_PATH.parse().unwrap();
        assert!(original(&Method::GET, &uri, &HeaderMap::new()).is_none());
        // The Host header is Warrant's own outside the Envoy form.
        let mut h = HeaderMap::new();
        h.insert("host", "warrant.internal".parse().unwrap());
        h.insert(
            "x-original-uri",
            "/acme/api.git/git-upload-pack".parse().unwrap(),
        );
        assert_eq!(original(&Method::POST, &uri, &h).unwrap().host, None);
    }
}
