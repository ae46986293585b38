//! Asking Warrant as the run: the per-run socket signs a proof for each
//! request (the run's key never enters the hook), the request goes to the
//! Warrant address the socket names.
//!
//! Every failure is a sentence for the agent (lowercase, no secrets): the
//! caller turns it into a denial.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::mapping::repo_from_remote;
use crate::run_socket::{RUN_SOCKET_ENV, RunSocketClient};

/// Bound on one HTTP exchange with Warrant (waiting for an approval adds
/// its own wait).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest answer read from Warrant.
const MAX_ANSWER: usize = 1024 * 1024;

/// The run, as reached through its socket.
pub struct Warrant {
    socket: RunSocketClient,
    http: reqwest::Client,
    /// Warrant's address, without a trailing slash.
    base: String,
}

impl Warrant {
    /// The run of the `warrant run` or `warrant exec` this hook runs under.
    pub async fn connect() -> Result<Self, String> {
        let socket = RunSocketClient::from_env().ok_or_else(|| {
            format!(
                "no Warrant run to act as: {RUN_SOCKET_ENV} is not set (start the agent with \
                 `warrant run --task ID -- AGENT` or under `warrant exec`)"
            )
        })?;
        let info = socket.run().await.map_err(|e| format!("{e:#}"))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("warrant-hook/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .timeout(REQUEST_TIMEOUT)
            // A redirect could carry the run token away.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot set up an HTTP client: {e}"))?;
        Ok(Self {
            socket,
            http,
            base: info.warrant.trim_end_matches('/').to_owned(),
        })
    }

    /// One request as the run: `(status, JSON answer)`. `query` is sent
    /// but not signed (a DPoP proof names the URL without its query).
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.base);
        let proof = self
            .socket
            .authorize(method.as_str(), &url)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let mut request = self
            .http
            .request(method, format!("{url}{query}"))
            .header("Authorization", proof.authorization)
            .header("DPoP", proof.dpop);
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| format!("cannot reach Warrant at {}: {}", self.base, cause(&e)))?;
        let status = response.status().as_u16();
        let mut bytes: Vec<u8> = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading Warrant's answer: {}", cause(&e)))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err("Warrant's answer is too large".into());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// `POST /v1/decisions`: the answer, or why there is none.
    pub async fn decide(&self, body: &Value) -> Result<Value, String> {
        let (status, answer) = self
            .send(Method::POST, "/v1/decisions", "", Some(body))
            .await?;
        if status != 200 || answer["decision"].as_str().is_none() {
            return Err(refused(status, &answer));
        }
        Ok(answer)
    }

    /// The state of approval `id` (`pending`, `approved`, ...), waiting up
    /// to `wait` for it to leave `pending`.
    pub async fn approval_state(&self, id: &str, wait: Duration) -> Result<String, String> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!(
                "`{}` is not an approval id",
                id.chars().take(64).collect::<String>()
            ));
        }
        let query = format!("?wait={}s", wait.as_secs().max(1));
        let (status, answer) = self
            .send(Method::GET, &format!("/v1/approvals/{id}"), &query, None)
            .await?;
        match (status, answer["state"].as_str()) {
            (200, Some(state)) => Ok(state.to_owned()),
            _ => Err(refused(status, &answer)),
        }
    }

    /// The repository the agent works in: `configured` (`--repo`,
    /// `WARRANT_REPO`), else the `origin` remote of the git clone around
    /// `cwd`, else the task's only repository.
    pub async fn repo(&self, configured: Option<&str>, cwd: &Path) -> Result<String, String> {
        if let Some(repo) = configured.filter(|r| !r.trim().is_empty()) {
            return Ok(repo.trim().to_owned());
        }
        if let Some(repo) = git_origin(cwd).await {
            return Ok(repo);
        }
        let (status, me) = self.send(Method::GET, "/v1/runs/me", "", None).await?;
        if status != 200 {
            return Err(refused(status, &me));
        }
        let repos: Vec<&str> = me["scope"]["repos"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match repos.as_slice() {
            [one] => Ok((*one).to_owned()),
            [] => Err(
                "the task's scope names no repository, and the agent's working directory \
                 is not a clone with an `origin` remote: give the hook `--repo OWNER/NAME`"
                    .into(),
            ),
            many => Err(format!(
                "cannot tell which of the task's repositories ({}) the agent works in: \
                 give the hook `--repo OWNER/NAME` (or set WARRANT_REPO)",
                many.iter()
                    .map(|r| format!("`{r}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// Why Warrant gave no decision: its problem document's detail and code.
fn refused(status: u16, answer: &Value) -> String {
    let detail = answer["detail"]
        .as_str()
        .or(answer["error_description"].as_str())
        .unwrap_or("no reason given");
    let code = answer["code"]
        .as_str()
        .or(answer["error"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {status}"));
    format!(
        "Warrant refused the request: {} ({code})",
        detail.chars().take(500).collect::<String>()
    )
}

/// The innermost cause of an HTTP error, without the URL reqwest repeats.
fn cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    if e.is_timeout() {
        "no answer in time".into()
    } else {
        source.to_string()
    }
}

/// `owner/name` from the `origin` remote of the clone around `cwd`, if
/// any. `git config` runs no hooks and reads no work tree.
async fn git_origin(cwd: &Path) -> Option<String> {
    let output = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::process::Command::new("git")
            .arg("-C")
            .arg(cwd)
            .args(["config", "--get", "remote.origin.url"])
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    if !output.status.success() {
        return None;
    }
    repo_from_remote(&String::from_utf8_lossy(&output.stdout))
}
