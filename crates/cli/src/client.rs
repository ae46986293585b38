//! The HTTP API client: a base address and a bearer token. Errors come back
//! as [`ClientError`], with RFC 9457 problems decoded into their `code`,
//! `status` and `detail`.

use std::time::Duration;

use reqwest::{RequestBuilder, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::credentials::ApiToken;
use crate::error::UserError;

/// The address used when neither a flag, the environment nor a saved login
/// gives one.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:8180";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach warrant at `{addr}`: {reason}")]
    Connect { addr: String, reason: String },
    #[error("no answer from warrant at `{addr}` in time")]
    Timeout { addr: String },
    #[error("no API token for `{addr}`")]
    NoToken { addr: String },
    /// The server answered with a problem document.
    #[error("{detail} (code: {code})")]
    Api {
        addr: String,
        status: u16,
        code: String,
        detail: String,
    },
    #[error("unexpected answer from `{addr}`{}: {why}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Unexpected {
        addr: String,
        status: Option<u16>,
        why: String,
    },
}

impl ClientError {
    /// How to fix it, when there is an obvious way.
    pub fn hint(&self) -> Option<String> {
        match self {
            ClientError::Connect { addr, .. } | ClientError::Timeout { addr } => Some(format!(
                "is `warrant serve` running at {addr}? point elsewhere with --addr or WARRANT_ADDR"
            )),
            ClientError::NoToken { addr } => Some(format!(
                "run `warrant login --addr {addr}` or set WARRANT_TOKEN"
            )),
            ClientError::Unexpected { addr, .. } => {
                Some(format!("check that {addr} is a warrant server"))
            }
            ClientError::Api { code, addr, .. } => api_hint(code, addr),
        }
    }
}

fn api_hint(code: &str, addr: &str) -> Option<String> {
    let hint = match code {
        "unauthenticated" => {
            format!("run `warrant login --addr {addr}` or set WARRANT_TOKEN to a valid token")
        }
        "forbidden" => "this needs an admin's token (or the task's delegator's)".to_owned(),
        "unknown_agent" | "agent_not_found" => "see `warrant agent list`".to_owned(),
        "unknown_user" | "user_not_found" => "see `warrant user list`".to_owned(),
        "task_not_found" => "see `warrant task list`".to_owned(),
        "user_exists" => "pick another name; see `warrant user list`".to_owned(),
        "agent_exists" => "pick another name; see `warrant agent list`".to_owned(),
        "store_unavailable" => "the server cannot reach its store: check its logs".to_owned(),
        "not_found" | "method_not_allowed" => {
            format!("check that {addr} is a warrant server of the same version as this client")
        }
        _ => return None,
    };
    Some(hint)
}

/// Parses an API address. A bare `host:port` means `http://host:port`.
pub fn parse_addr(raw: &str) -> Result<Url, UserError> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    let bad = |why: &str| {
        UserError::new(format!("invalid address `{raw}`: {why}"))
            .hint(format!("use a URL such as {DEFAULT_ADDR}"))
    };
    let mut url = Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be `http` or `https`"));
    }
    if url.host().is_none() || url.cannot_be_a_base() {
        return Err(bad("it has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not have a query or fragment"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// The address as users write it: no trailing slash.
pub fn display_addr(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    addr: String,
    token: Option<ApiToken>,
}

#[derive(serde::Deserialize)]
struct Problem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    title: String,
}

impl Client {
    pub fn new(base: Url, token: Option<ApiToken>) -> anyhow::Result<Self> {
        let addr = display_addr(&base);
        if base.scheme() == "http" && token.is_some() && !is_loopback(&base) {
            tracing::warn!("sending the API token to {addr} without TLS");
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("warrant/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            // An API never redirects; following one could carry the token away.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            base,
            addr,
            token,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `GET` the path made of `segments` (each percent-encoded) with a query.
    pub async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let url = self.url(segments, query);
        self.send(self.http.get(url)).await
    }

    /// `POST` a JSON body.
    pub async fn post<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(segments, &[]);
        self.send(self.http.post(url).json(body)).await
    }

    /// `PUT` a JSON body.
    pub async fn put<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(segments, &[]);
        self.send(self.http.put(url).json(body)).await
    }

    /// `DELETE` the path made of `segments`.
    pub async fn delete<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T, ClientError> {
        let url = self.url(segments, &[]);
        self.send(self.http.delete(url)).await
    }

    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        // INVARIANT: `parse_addr` only accepts http(s) URLs with a host,
        // which can always be a base.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        url
    }

    async fn send<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ClientError> {
        let Some(token) = &self.token else {
            return Err(ClientError::NoToken {
                addr: self.addr.clone(),
            });
        };
        let resp = req
            .bearer_auth(token.expose())
            .send()
            .await
            .map_err(|e| self.transport(&e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.transport(&e))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| ClientError::Unexpected {
                addr: self.addr.clone(),
                status: Some(status.as_u16()),
                why: format!("the body is not the expected JSON: {e}"),
            });
        }
        match serde_json::from_slice::<Problem>(&body) {
            Ok(p) if !p.code.is_empty() => Err(ClientError::Api {
                addr: self.addr.clone(),
                status: status.as_u16(),
                code: p.code,
                detail: if p.detail.is_empty() {
                    p.title
                } else {
                    p.detail
                },
            }),
            _ => Err(ClientError::Unexpected {
                addr: self.addr.clone(),
                status: Some(status.as_u16()),
                why: snippet(&body),
            }),
        }
    }

    fn transport(&self, e: &reqwest::Error) -> ClientError {
        let addr = self.addr.clone();
        if e.is_timeout() {
            return ClientError::Timeout { addr };
        }
        if e.is_connect() {
            return ClientError::Connect {
                addr,
                reason: root_cause(e),
            };
        }
        ClientError::Unexpected {
            addr,
            status: None,
            why: root_cause(e),
        }
    }
}

/// The innermost cause, which says what actually happened ("connection
/// refused") rather than the layers it travelled through.
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "empty body".to_owned();
    }
    let mut s: String = text.chars().take(200).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_a_scheme_and_a_trailing_slash() {
        let u = parse_addr("127.0.0.1:8180").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:8180/");
        assert_eq!(display_addr(&u), "http://127.0.0.1:8180");
        let u = parse_addr("https://w.example/base").unwrap();
        assert_eq!(u.as_str(), "https://w.example/base/");
    }

    #[test]
    fn bad_addresses_are_refused() {
        for bad in ["ftp://x", "http://", "http://x/?a=b", "http://x/#f"] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        let c = Client::new(parse_addr("http://127.0.0.1:1/base").unwrap(), None).unwrap();
        let u = c.url(&["v1", "agents", "../x/y"], &[("state", "a b".into())]);
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:1/base/v1/agents/..%2Fx%2Fy?state=a+b"
        );
    }

    #[test]
    fn unauthenticated_problems_hint_at_login() {
        let e = ClientError::Api {
            addr: "http://h".into(),
            status: 401,
            code: "unauthenticated".into(),
            detail: "no token".into(),
        };
        assert!(e.hint().unwrap().contains("warrant login"));
    }
}
