//! A run of a task held by this process: the run token and the DPoP key
//! that binds it, redeemed from the task's one-time claim.
//!
//! The private key is generated here and lives only in this process's
//! memory: it is never written anywhere, never put in a child's environment
//! and never sent over the per-run socket ([`crate::run_socket`] hands out
//! proofs, not the key). `warrant exec` and `warrant mcp-proxy --claim` hold
//! a [`RunSession`]; enforcement helpers started under them reach it through
//! the socket instead, with [`RunCredentials`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::Url;
use serde_json::{Value, json};
use warrant_crypto::jws::{JwsAlg, ProofKey};

use crate::error::UserError;
use crate::run_socket::RunSocketClient;

/// The headers that authenticate one HTTP request as the run:
/// `Authorization: DPoP <token>` and a fresh `DPoP: <proof>`.
#[derive(Clone)]
pub struct RunProof {
    /// The whole `Authorization` header value, `DPoP <token>`.
    pub authorization: String,
    /// The `DPoP` header value: a proof for one method and URL.
    pub dpop: String,
}

impl std::fmt::Debug for RunProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a bearer secret (if only for its DPoP key's holder).
        f.debug_struct("RunProof").finish_non_exhaustive()
    }
}

/// Why a proof was refused: the request it would authenticate is not one
/// the run may sign for.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// Not an HTTP method Warrant's API uses.
    #[error("`{0}` is not an HTTP method a proof can be made for")]
    Method(String),
    /// Not a URL under the Warrant address the run belongs to.
    #[error("`{htu}` is not under the Warrant address {base}: {why}")]
    ForeignUrl {
        htu: String,
        base: String,
        why: &'static str,
    },
    /// Signing failed (a bug or an exhausted random source).
    #[error("cannot sign the proof: {0}")]
    Internal(String),
}

impl ProofError {
    /// A stable code for the per-run socket's problem answers.
    pub fn code(&self) -> &'static str {
        match self {
            ProofError::Method(_) => "bad_method",
            ProofError::ForeignUrl { .. } => "foreign_url",
            ProofError::Internal(_) => "internal",
        }
    }
}

/// The methods a proof may name.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// Checks that `htu` is a URL on Warrant's origin, under its base path, in
/// the exact form the server will compare it with (no query, fragment or
/// credentials, no dot segments), so a proof can never authenticate a
/// request to anything but this Warrant.
pub fn check_htu(base: &Url, htu: &str) -> Result<(), ProofError> {
    let foreign = |why| ProofError::ForeignUrl {
        htu: htu.chars().take(200).collect(),
        base: crate::client::display_addr(base),
        why,
    };
    let url = Url::parse(htu).map_err(|_| foreign("it is not an absolute URL"))?;
    if url.origin() != base.origin() {
        return Err(foreign("another scheme, host or port"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(foreign("it carries credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(foreign("it has a query or fragment"));
    }
    if url.as_str() != htu {
        return Err(foreign("it is not in normal form"));
    }
    if !url.path().starts_with(base.path()) {
        return Err(foreign("another path"));
    }
    Ok(())
}

/// Which HTTP method a proof is for; refuses anything else.
pub fn check_htm(htm: &str) -> Result<&'static str, ProofError> {
    METHODS
        .iter()
        .find(|m| **m == htm)
        .copied()
        .ok_or_else(|| ProofError::Method(htm.chars().take(20).collect()))
}

/// A run of a task: its key, its current token and what the server said
/// about it.
pub struct RunSession {
    http: reqwest::Client,
    /// Warrant's address, with a trailing slash (as [`crate::client::parse_addr`] makes it).
    base_url: Url,
    /// The same, without the trailing slash: what paths are appended to.
    base: String,
    key: ProofKey,
    token: tokio::sync::RwLock<String>,
    run_id: String,
    task_id: String,
    expires_at: Option<jiff::Timestamp>,
    /// The token's lifetime, in seconds: the refresher renews it at half.
    ttl: u64,
}

impl std::fmt::Debug for RunSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSession")
            .field("base", &self.base)
            .field("run_id", &self.run_id)
            .field("task_id", &self.task_id)
            .finish_non_exhaustive()
    }
}

impl RunSession {
    /// Attests as a run of `task` at `addr`: a fresh ES256 key signs the
    /// proof that redeems the one-time `claim` for a run token bound to it.
    pub async fn redeem(addr: &Url, task: &str, claim: &str) -> anyhow::Result<Self> {
        let base = crate::client::display_addr(addr);
        let mut session = Self {
            http: reqwest::Client::builder()
                .user_agent(concat!("warrant/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(60))
                // A redirect could carry the run token away.
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            base_url: addr.clone(),
            base,
            key: ProofKey::generate(JwsAlg::ES256)?,
            token: tokio::sync::RwLock::new(String::new()),
            run_id: String::new(),
            task_id: String::new(),
            expires_at: None,
            ttl: 600,
        };
        let granted = session
            .token_grant(&[
                ("grant_type", "urn:warrant:grant-type:task-claim"),
                ("claim", claim),
            ])
            .await?;
        if granted["task_id"].as_str() != Some(task) {
            anyhow::bail!(UserError::new(format!(
                "the claim is for task `{}`, not `{task}`",
                granted["task_id"].as_str().unwrap_or("?"),
            )));
        }
        session.run_id = granted["run_id"].as_str().unwrap_or_default().to_owned();
        session.task_id = task.to_owned();
        session.ttl = granted["expires_in"].as_u64().unwrap_or(600);
        *session.token.get_mut() = granted["access_token"]
            .as_str()
            .context("no run token in the answer")?
            .to_owned();
        // The run's own end (the token is renewed until then). Only
        // informative: a failure here must not leave the new run unended.
        match session
            .call(reqwest::Method::GET, "/v1/runs/me", None)
            .await
        {
            Ok(me) => {
                session.expires_at = me["run_expires_at"].as_str().and_then(|t| t.parse().ok());
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the run's expiry"),
        }
        Ok(session)
    }

    /// Warrant's address, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// When the run ends at the latest, if the server said.
    pub fn expires_at(&self) -> Option<jiff::Timestamp> {
        self.expires_at
    }

    /// The headers for one request `htm htu` made as the run. `htu` must
    /// be under Warrant's address ([`check_htu`]): the run signs for
    /// nothing else.
    pub async fn authorize(&self, htm: &str, htu: &str) -> Result<RunProof, ProofError> {
        let htm = check_htm(htm)?;
        check_htu(&self.base_url, htu)?;
        let token = self.token.read().await.clone();
        let dpop = self
            .sign(htm, htu, Some(&token))
            .map_err(|e| ProofError::Internal(e.to_string()))?;
        Ok(RunProof {
            authorization: format!("DPoP {token}"),
            dpop,
        })
    }

    fn sign(&self, htm: &str, htu: &str, token: Option<&str>) -> anyhow::Result<String> {
        let mut claims = json!({
            "jti": hex::encode(warrant_crypto::random_bytes::<16>()?),
            "htm": htm,
            "htu": htu,
            "iat": jiff::Timestamp::now().as_second(),
        });
        if let Some(t) = token {
            claims["ath"] = warrant_token::access_token_hash(t).into();
        }
        Ok(self.key.sign_with_jwk("dpop+jwt", &claims)?)
    }

    /// A JSON API call as the run; a refusal is an error with the server's
    /// reason and code.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let token = self.token.read().await.clone();
        let proof = self.sign(method.as_str(), &url, Some(&token))?;
        let mut req = self
            .http
            .request(method, &url)
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", proof);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach Warrant at {}", self.base))?;
        let status = res.status();
        let answer: Value = res.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!(UserError::new(format!(
                "{path}: {} ({})",
                answer["detail"]
                    .as_str()
                    .or(answer["error_description"].as_str())
                    .unwrap_or("refused"),
                answer["code"]
                    .as_str()
                    .or(answer["error"].as_str())
                    .unwrap_or(status.as_str())
            )));
        }
        Ok(answer)
    }

    async fn token_grant(&self, form: &[(&str, &str)]) -> anyhow::Result<Value> {
        let bearer = form
            .iter()
            .find(|(k, _)| *k == "subject_token")
            .map(|(_, v)| *v);
        let url = format!("{}/v1/token", self.base);
        let proof = self.sign("POST", &url, bearer)?;
        let res = self
            .http
            .post(&url)
            .header("DPoP", proof)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form.iter()
                    .map(|(k, v)| format!("{k}={}", urlencode(v)))
                    .collect::<Vec<_>>()
                    .join("&"),
            )
            .send()
            .await
            .with_context(|| format!("cannot reach Warrant at {}", self.base))?;
        let status = res.status();
        let answer: Value = res.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!(UserError::new(format!(
                "the token endpoint refused: {} ({})",
                answer["error_description"]
                    .as_str()
                    .unwrap_or("no reason given"),
                answer["error"].as_str().unwrap_or(status.as_str())
            )));
        }
        Ok(answer)
    }

    /// Renews the run token at half its lifetime, for as long as it is
    /// polled (it never returns): a long command can still end its run
    /// cleanly, and proofs always carry a live token. A failed renewal is
    /// reported and retried at the next turn.
    pub async fn keep_fresh(&self) -> std::convert::Infallible {
        let every = Duration::from_secs((self.ttl / 2).max(5));
        loop {
            tokio::time::sleep(every).await;
            let current = self.token.read().await.clone();
            match self
                .token_grant(&[
                    ("grant_type", "urn:warrant:grant-type:refresh"),
                    ("subject_token", &current),
                ])
                .await
            {
                Ok(fresh) => {
                    if let Some(t) = fresh["access_token"].as_str() {
                        *self.token.write().await = t.to_owned();
                    }
                }
                Err(e) => eprintln!("warrant: cannot refresh the run token: {e:#}"),
            }
        }
    }

    /// Revokes `leases` and ends the run; problems are reported, not fatal
    /// (the server revokes leases of an ended run or task on its own).
    pub async fn finish(&self, leases: &[String]) {
        for id in leases {
            if let Err(e) = self
                .call(reqwest::Method::DELETE, &format!("/v1/leases/{id}"), None)
                .await
            {
                eprintln!("warrant: revoking lease {id}: {e:#}");
            }
        }
        match self
            .call(reqwest::Method::POST, "/v1/runs/me/end", Some(&json!({})))
            .await
        {
            Ok(_) => eprintln!("warrant: run ended; its leases are revoked"),
            Err(e) => {
                eprintln!("warrant: ending the run: {e:#} (its leases expire with the task)");
            }
        }
    }
}

/// Reads the task's one-time claim from `path`, else from `WARRANT_CLAIM`.
pub fn read_claim(path: Option<&PathBuf>) -> anyhow::Result<String> {
    let raw = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| {
            UserError::new(format!("cannot read the claim file `{}`: {e}", p.display()))
        })?,
        None => std::env::var("WARRANT_CLAIM").map_err(|_| {
            UserError::new("no claim: give `--claim FILE` or set WARRANT_CLAIM")
                .hint("the claim is printed once by `warrant task create --output json`")
        })?,
    };
    let claim = raw.trim().to_owned();
    if claim.is_empty() {
        return Err(UserError::new("the claim is empty").into());
    }
    Ok(claim)
}

/// Where a process gets the run's request credentials from: the run it
/// holds itself, or the per-run socket of the `warrant exec` (or `warrant
/// run`) it was started under. Both give the same [`RunProof`]s; only the
/// first holds the key.
#[derive(Debug, Clone)]
pub enum RunCredentials {
    /// This process attested and holds the key.
    Session(std::sync::Arc<RunSession>),
    /// Another process holds the key and signs through its socket.
    Socket(RunSocketClient),
}

impl RunCredentials {
    /// The headers for one request `htm htu` made as the run.
    pub async fn authorize(&self, htm: &str, htu: &str) -> anyhow::Result<RunProof> {
        match self {
            RunCredentials::Session(session) => Ok(session.authorize(htm, htu).await?),
            RunCredentials::Socket(socket) => socket.authorize(htm, htu).await,
        }
    }
}

/// `application/x-www-form-urlencoded` value encoding.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        crate::client::parse_addr("http://127.0.0.1:8180").unwrap()
    }

    #[test]
    fn urls_under_warrant_are_signed_for() {
        for ok in [
            "http://127.0.0.1:8180/mcp/everything",
            "http://127.0.0.1:8180/v1/decisions",
        ] {
            check_htu(&base(), ok).unwrap();
        }
        let prefixed = crate::client::parse_addr("https://w.example/warrant").unwrap();
        check_htu(&prefixed, "https://w.example/warrant/mcp/x").unwrap();
        assert!(check_htu(&prefixed, "https://w.example/other/mcp/x").is_err());
    }

    #[test]
    fn foreign_urls_are_refused() {
        for bad in [
            "http://evil.example/mcp/everything",
            "http://127.0.0.1:8181/mcp/everything",
            "https://127.0.0.1:8180/mcp/everything",
            "http://user:pw@127.0.0.1:8180/mcp/everything",
            "http://127.0.0.1:8180/mcp/everything?x=1",
            "http://127.0.0.1:8180/mcp/everything#f",
            "http://127.0.0.1:8180/mcp/../../etc",
            "http://127.0.0.1:8180",
            "/mcp/everything",
            "",
        ] {
            let err = check_htu(&base(), bad).unwrap_err();
            assert_eq!(err.code(), "foreign_url", "{bad}");
        }
    }

    #[test]
    fn only_http_methods_are_signed_for() {
        assert_eq!(check_htm("POST").unwrap(), "POST");
        for bad in ["post", "CONNECT", "", "GET "] {
            assert_eq!(check_htm(bad).unwrap_err().code(), "bad_method", "{bad}");
        }
    }
}
