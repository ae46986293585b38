//! The per-run socket: how enforcement helpers started under `warrant exec`
//! (and, with issue #8, `warrant run`) act as the run without holding its
//! key.
//!
//! The process that holds the [`RunSession`] serves HTTP/1.1 on a Unix
//! socket, `run.sock` in a fresh directory of its own (mode 0700; the socket
//! file 0600), and tells its child where with `WARRANT_RUN_SOCKET`. Only
//! connections from the same user are answered (checked with the peer's
//! credentials, on top of the file modes). Two endpoints:
//!
//! - `GET /v1/run`: `{"run_id", "task_id", "warrant", "expires_at"}`, where
//!   `warrant` is the address the run belongs to;
//! - `POST /v1/proof` `{"htm": "POST", "htu": "<url>"}`:
//!   `{"authorization": "DPoP <token>", "dpop": "<proof>"}`, the two headers
//!   for that one request. `htu` must be under `warrant` and `htm` an HTTP
//!   method, else `400` with a problem document and a stable `code`
//!   (`bad_json`, `bad_method`, `foreign_url`).
//!
//! The private key never crosses the socket: a helper gets one proof per
//! request, for Warrant only, and only while the run's holder is alive. The
//! directory is removed when the holder stops serving.
//!
//! [`RunSocketClient`] is the other side, used through
//! [`crate::run_session::RunCredentials`].

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::{UnixListener, UnixStream};

use crate::run_session::{RunProof, RunSession};

/// The environment variable that names the socket in a run's children.
pub const RUN_SOCKET_ENV: &str = "WARRANT_RUN_SOCKET";

/// The socket file's name inside its private directory.
const SOCKET_NAME: &str = "run.sock";

/// Largest request or answer body on the socket: both are a few hundred
/// bytes.
const MAX_BODY: usize = 64 * 1024;

/// Bound on one socket exchange, so a helper never hangs on a stuck holder.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /v1/run`: which run this is and where its Warrant is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    pub task_id: String,
    /// Warrant's address, without a trailing slash.
    pub warrant: String,
    pub expires_at: Option<jiff::Timestamp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofRequest {
    htm: String,
    htu: String,
}

/// A served per-run socket. Dropping it stops serving and removes the
/// directory; [`RunSocket::shutdown`] does the same and waits for it.
pub struct RunSocket {
    path: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    // Last: removed after the server has stopped.
    _dir: tempfile::TempDir,
}

impl RunSocket {
    /// Serves `session` on a socket in a fresh private directory, under
    /// `$XDG_RUNTIME_DIR` when set, else the temporary directory. Needs a
    /// Tokio runtime.
    pub fn serve(session: Arc<RunSession>) -> anyhow::Result<Self> {
        let parent = socket_parent();
        let dir = tempfile::Builder::new()
            .prefix("warrant-run-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&parent)
            .with_context(|| {
                format!(
                    "cannot make the run socket's directory in `{}`",
                    parent.display()
                )
            })?;
        // The umask can only narrow 0700; set it anyway so the directory
        // is what protects the socket in the moment before its chmod.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        let path = dir.path().join(SOCKET_NAME);
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("cannot listen on `{}`", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let uid = std::fs::metadata(dir.path())?.uid();

        let app = Router::new()
            .route("/v1/run", get(run_info))
            .route("/v1/proof", post(proof))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(session);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let served = axum::serve(OwnerOnly { listener, uid }, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "the run socket stopped");
            }
        });
        Ok(Self {
            path,
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        })
    }

    /// The socket file, for `WARRANT_RUN_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops answering (requests in progress finish, briefly) and removes
    /// the directory.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            // A helper holding a connection open must not keep the run's
            // holder from ending it.
            if tokio::time::timeout(Duration::from_secs(2), server)
                .await
                .is_err()
            {
                tracing::debug!("the run socket did not drain in time");
            }
        }
    }
}

impl Drop for RunSocket {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

impl std::fmt::Debug for RunSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSocket")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Where the socket's directory goes: a short path (Unix socket paths are
/// limited to about 100 bytes) that only this user can list, if possible.
fn socket_parent() -> PathBuf {
    let candidates = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([std::env::temp_dir(), PathBuf::from("/tmp")]);
    for dir in candidates {
        // `<dir>/warrant-run-XXXXXX/run.sock`
        if dir.is_dir() && dir.as_os_str().len() + 30 < 100 {
            return dir;
        }
    }
    PathBuf::from("/tmp")
}

/// Accepts only connections from the user who owns the socket.
struct OwnerOnly {
    listener: UnixListener,
    uid: u32,
}

impl axum::serve::Listener for OwnerOnly {
    type Io = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (io, addr) = axum::serve::Listener::accept(&mut self.listener).await;
            match io.peer_cred() {
                Ok(cred) if cred.uid() == self.uid => return (io, addr),
                Ok(cred) => tracing::warn!(
                    uid = cred.uid(),
                    "refused a run socket connection from another user"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot identify a run socket peer"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "code": code,
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

async fn run_info(State(session): State<Arc<RunSession>>) -> Response {
    axum::Json(RunInfo {
        run_id: session.run_id().to_owned(),
        task_id: session.task_id().to_owned(),
        warrant: session.base().to_owned(),
        expires_at: session.expires_at(),
    })
    .into_response()
}

async fn proof(State(session): State<Arc<RunSession>>, body: Bytes) -> Response {
    let request: ProofRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad_json",
                &format!("the body is not `{{\"htm\": ..., \"htu\": ...}}`: {e}"),
            );
        }
    };
    match session.authorize(&request.htm, &request.htu).await {
        Ok(p) => {
            axum::Json(json!({"authorization": p.authorization, "dpop": p.dpop})).into_response()
        }
        Err(e @ crate::run_session::ProofError::Internal(_)) => {
            tracing::error!(error = %e, "cannot sign a proof");
            problem(StatusCode::INTERNAL_SERVER_ERROR, e.code(), &e.to_string())
        }
        Err(e) => problem(StatusCode::BAD_REQUEST, e.code(), &e.to_string()),
    }
}

async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        "the run socket serves `GET /v1/run` and `POST /v1/proof`",
    )
}

async fn method_not_allowed() -> Response {
    problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "the run socket serves `GET /v1/run` and `POST /v1/proof`",
    )
}

/// The client side of a per-run socket. Each call is one HTTP/1.1 exchange
/// on a fresh connection, bounded in time and size.
#[derive(Debug, Clone)]
pub struct RunSocketClient {
    path: PathBuf,
}

impl RunSocketClient {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The socket named by `WARRANT_RUN_SOCKET`, if set and not empty.
    pub fn from_env() -> Option<Self> {
        std::env::var_os(RUN_SOCKET_ENV)
            .filter(|p| !p.is_empty())
            .map(Self::new)
    }

    /// Which run this is and where its Warrant is.
    pub async fn run(&self) -> anyhow::Result<RunInfo> {
        let answer = self.exchange(hyper::Method::GET, "/v1/run", None).await?;
        serde_json::from_value(answer)
            .with_context(|| format!("unexpected answer from the run socket `{}`", self.display()))
    }

    /// The headers for one request `htm htu` made as the run.
    pub async fn authorize(&self, htm: &str, htu: &str) -> anyhow::Result<RunProof> {
        let answer = self
            .exchange(
                hyper::Method::POST,
                "/v1/proof",
                Some(json!({"htm": htm, "htu": htu})),
            )
            .await?;
        match (answer["authorization"].as_str(), answer["dpop"].as_str()) {
            (Some(authorization), Some(dpop)) => Ok(RunProof {
                authorization: authorization.to_owned(),
                dpop: dpop.to_owned(),
            }),
            _ => anyhow::bail!(
                "unexpected answer from the run socket `{}`: no proof",
                self.display()
            ),
        }
    }

    fn display(&self) -> String {
        self.path.display().to_string()
    }

    async fn exchange(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        tokio::time::timeout(
            EXCHANGE_TIMEOUT,
            self.exchange_unbounded(method, path, body),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!("no answer from the run socket `{}` in time", self.display())
        })?
    }

    async fn exchange_unbounded(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let stream = UnixStream::connect(&self.path).await.with_context(|| {
            format!(
                "cannot reach the run socket `{}` (has the run's `warrant exec` ended?)",
                self.display()
            )
        })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("the run socket does not speak HTTP/1.1")?;
        // Drives the connection until the exchange is over (dropping
        // `sender` ends it).
        let driver = tokio::spawn(connection);
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "warrant-run")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))?;
        let response = sender
            .send_request(request)
            .await
            .with_context(|| format!("the run socket `{}` did not answer", self.display()))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the run socket's answer: {e}"))?
            .to_bytes();
        drop(sender);
        let _ = driver.await;
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!(
                "the run socket refused: {} ({})",
                answer["detail"].as_str().unwrap_or("no reason given"),
                answer["code"].as_str().unwrap_or(status.as_str())
            );
        }
        Ok(answer)
    }
}
