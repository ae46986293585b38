//! `warrant mcp-proxy SERVER [--task ID [--claim FILE]]`: the stdio shim.
//!
//! Speaks MCP over stdio to an agent that only supports stdio servers and
//! relays every JSON-RPC message, both ways, to Warrant's gateway at
//! `<warrant>/mcp/SERVER` (streamable HTTP), where each one is decided,
//! scanned and audited. Each HTTP request carries the run token and a fresh
//! DPoP proof, from:
//!
//! - `--task ID` with `--claim FILE` (or `WARRANT_CLAIM`): this process
//!   attests as a run of the task with a key of its own, and ends the run
//!   when the agent closes stdin (or on SIGTERM/SIGINT);
//! - otherwise the per-run socket named by `WARRANT_RUN_SOCKET`, set by the
//!   `warrant exec` (or `warrant run`) the agent runs under: proofs come
//!   from there and the key never enters this process.
//!
//! The relay is at the transport level (rmcp's stdio transport on one side,
//! its streamable-HTTP client on the other), so every request, notification
//! and reply passes as it is, including methods this code does not know.
//! When Warrant cannot be reached, refuses the run's credentials or has
//! lost the session, the agent gets a JSON-RPC error for that request:
//! nothing is sent anywhere else, no request is left without an answer, and
//! stdout carries only JSON-RPC (everything else goes to stderr).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use clap::Args;
use futures::stream::BoxStream;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use rmcp::RoleServer;
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, ErrorData, JsonRpcMessage, RequestId, ServerJsonRpcMessage,
};
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
    StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use rmcp::transport::{StreamableHttpClientTransport, Transport};
use serde_json::json;
use sse_stream::Sse;

use super::Context;
use crate::error::UserError;
use crate::run_session::{RunCredentials, RunSession, read_claim};
use crate::run_socket::{RUN_SOCKET_ENV, RunSocketClient};

#[derive(Debug, Args)]
pub struct McpProxyArgs {
    /// The MCP server, as named in Warrant's `[[mcp.servers]]`
    #[arg(value_name = "SERVER")]
    server: String,
    /// Attest as a run of this task instead of using the run socket of the
    /// `warrant exec` this runs under (`WARRANT_RUN_SOCKET`)
    #[arg(long, value_name = "TASK_ID")]
    task: Option<String>,
    /// With `--task`: a file holding the task's one-time claim (`wcl_...`)
    /// [default: the `WARRANT_CLAIM` environment variable]
    #[arg(long, value_name = "FILE", requires = "task")]
    claim: Option<PathBuf>,
}

/// A stalled connection to Warrant is given up after this long without a
/// byte. The gateway sends an SSE keep-alive every 15 s, so only a hung
/// Warrant reaches it.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

type Upstream = StreamableHttpClientTransport<DpopClient>;
type HttpError = StreamableHttpError<reqwest::Error>;

pub async fn run(ctx: &Context, args: McpProxyArgs) -> anyhow::Result<()> {
    let server = warrant_core::Name::parse("mcp server", &args.server)
        .map_err(|e| UserError::new(e.to_string()))?;
    let (credentials, base, owned) = match &args.task {
        Some(task) => {
            let claim = read_claim(args.claim.as_ref())?;
            let session = Arc::new(RunSession::redeem(&ctx.addr()?, task, &claim).await?);
            eprintln!(
                "warrant mcp-proxy: run {} started for task {task}",
                session.run_id()
            );
            let base = session.base().to_owned();
            (
                RunCredentials::Session(Arc::clone(&session)),
                base,
                Some(session),
            )
        }
        None => {
            let socket = RunSocketClient::from_env().ok_or_else(|| {
                UserError::new("no run to act as: not under `warrant exec`, and no `--task`").hint(
                    format!(
                        "run the agent under `warrant exec --task ID -- ...` (which sets \
                         {RUN_SOCKET_ENV}), or give `--task ID --claim FILE`"
                    ),
                )
            })?;
            let info = socket.run().await.map_err(|e| {
                UserError::new(format!("{e:#}")).hint(format!(
                    "{RUN_SOCKET_ENV} must name the socket of a live `warrant exec`"
                ))
            })?;
            (RunCredentials::Socket(socket), info.warrant, None)
        }
    };
    let url: Arc<str> = format!("{base}/mcp/{}", server.as_str()).into();
    let client = DpopClient {
        http: reqwest::Client::builder()
            .user_agent(concat!("warrant-mcp-proxy/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(READ_TIMEOUT)
            // rmcp's advice for streamable HTTP: no idle pool (stalls on
            // half-read bodies).
            .pool_max_idle_per_host(0)
            // A redirect could carry the run token away.
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        credentials: Arc::new(credentials),
        base: base.clone(),
    };

    // A run of our own is kept fresh here (under `warrant exec`, exec does).
    let refresher = owned.as_ref().map(|session| {
        let session = Arc::clone(session);
        tokio::spawn(async move { match session.keep_fresh().await {} })
    });

    let mut relay = Relay {
        client,
        url,
        upstream: None,
        pending: HashSet::new(),
    };
    let outcome = relay.run().await;
    if let Some(mut upstream) = relay.upstream.take() {
        // Ends the gateway session (HTTP DELETE), bounded by rmcp.
        let _ = upstream.close().await;
    }
    if let Some(refresher) = refresher {
        refresher.abort();
    }
    if let Some(session) = owned {
        session.finish(&[]).await;
    }
    outcome
}

/// The relay between the agent (stdio) and the gateway (streamable HTTP).
struct Relay {
    client: DpopClient,
    url: Arc<str>,
    /// The gateway connection: made at the agent's `initialize` (or
    /// `server/discover`), gone when rmcp gives up on it.
    upstream: Option<Upstream>,
    /// Requests forwarded and not answered yet: each gets exactly one
    /// answer, from the gateway or from here.
    pending: HashSet<RequestId>,
}

/// The end of a forwarded message's HTTP exchange that finished with an
/// error, when it was a request (whose answer is then ours to give).
type SendTail = Option<(RequestId, ErrorData)>;

impl Relay {
    async fn run(&mut self) -> anyhow::Result<()> {
        let (stdin, stdout) = rmcp::transport::stdio_pipes();
        let mut agent = AsyncRwTransport::<RoleServer, _, _>::new_server(stdin, stdout);
        let mut tails: tokio::task::JoinSet<SendTail> = tokio::task::JoinSet::new();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        loop {
            tokio::select! {
                incoming = agent.receive() => match incoming {
                    Some(message) => {
                        for answer in self.forward(message, &mut tails).await {
                            agent.send(answer).await?;
                        }
                    }
                    // The agent closed stdin: it is done with us.
                    None => break,
                },
                reply = receive(&mut self.upstream) => match reply {
                    Some(message) => {
                        if let Some(id) = answered(&message) {
                            self.pending.remove(id);
                        }
                        agent.send(message).await?;
                    }
                    None => {
                        // rmcp gave up on the gateway session: whatever
                        // was in flight will not be answered by it.
                        self.upstream = None;
                        tracing::warn!("the connection to Warrant's gateway ended");
                        for id in self.pending.drain() {
                            let error = relay_error(
                                "closed",
                                "the connection to Warrant's gateway ended before the answer"
                                    .to_owned(),
                            );
                            agent.send(ServerJsonRpcMessage::error(error, Some(id))).await?;
                        }
                    }
                },
                Some(done) = tails.join_next(), if !tails.is_empty() => {
                    if let Ok(Some((id, error))) = done
                        && self.pending.remove(&id)
                    {
                        agent.send(ServerJsonRpcMessage::error(error, Some(id))).await?;
                    }
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        Ok(())
    }

    /// Hands one agent message to the gateway connection. Returns the
    /// answers the agent gets from here at once (a refusal to forward).
    async fn forward(
        &mut self,
        message: ClientJsonRpcMessage,
        tails: &mut tokio::task::JoinSet<SendTail>,
    ) -> Vec<ServerJsonRpcMessage> {
        let request_id = match &message {
            JsonRpcMessage::Request(r) => Some(r.id.clone()),
            _ => None,
        };
        if self.upstream.is_none() {
            if opens_session(&message) {
                let config = StreamableHttpClientTransportConfig::with_uri(Arc::clone(&self.url));
                self.upstream = Some(StreamableHttpClientTransport::with_client(
                    self.client.clone(),
                    config,
                ));
            } else {
                return match request_id {
                    Some(id) => vec![ServerJsonRpcMessage::error(
                        relay_error(
                            "no_session",
                            "no session with Warrant's gateway: initialize again".to_owned(),
                        ),
                        Some(id),
                    )],
                    None => {
                        tracing::debug!("dropped a notification: no gateway session");
                        Vec::new()
                    }
                };
            }
        }
        let Some(upstream) = self.upstream.as_mut() else {
            return Vec::new();
        };
        if let Some(id) = &request_id {
            self.pending.insert(id.clone());
        }
        let mut send = Box::pin(upstream.send(message));
        // INVARIANT: messages reach rmcp's worker in the agent's order. The
        // first poll queues the message on the worker's channel (a FIFO,
        // fair even when full); only the HTTP exchange, which may be long
        // (a tool call), runs on in the background.
        let first = std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await;
        let base = self.client.base.clone();
        match first {
            Poll::Ready(Ok(())) => Vec::new(),
            Poll::Ready(Err(e)) => match request_id {
                Some(id) if self.pending.remove(&id) => {
                    vec![ServerJsonRpcMessage::error(describe(&e, &base), Some(id))]
                }
                _ => {
                    tracing::warn!(error = %e, "a message to Warrant's gateway failed");
                    Vec::new()
                }
            },
            Poll::Pending => {
                tails.spawn(async move {
                    match send.await {
                        Ok(()) => None,
                        Err(e) => match request_id {
                            Some(id) => Some((id, describe(&e, &base))),
                            None => {
                                tracing::warn!(error = %e, "a message to Warrant's gateway failed");
                                None
                            }
                        },
                    }
                });
                Vec::new()
            }
        }
    }
}

/// The next message from the gateway; never, without a connection.
async fn receive(upstream: &mut Option<Upstream>) -> Option<ServerJsonRpcMessage> {
    match upstream {
        Some(u) => u.receive().await,
        None => std::future::pending().await,
    }
}

/// The request a gateway message answers, if it is an answer.
fn answered(message: &ServerJsonRpcMessage) -> Option<&RequestId> {
    match message {
        JsonRpcMessage::Response(r) => Some(&r.id),
        JsonRpcMessage::Error(e) => e.id.as_ref(),
        _ => None,
    }
}

/// Whether a message may start a gateway session.
fn opens_session(message: &ClientJsonRpcMessage) -> bool {
    matches!(
        message,
        JsonRpcMessage::Request(r) if matches!(
            r.request,
            ClientRequest::InitializeRequest(_) | ClientRequest::DiscoverRequest(_)
        )
    )
}

/// A JSON-RPC error from the shim itself, with a stable code in `data`.
fn relay_error(code: &str, message: String) -> ErrorData {
    ErrorData::internal_error(
        format!("warrant mcp-proxy: {message}"),
        Some(json!({"warrant": code})),
    )
}

/// Why a message could not be relayed, as the agent sees it.
fn describe(error: &HttpError, base: &str) -> ErrorData {
    match error {
        StreamableHttpError::Client(e) if e.is_connect() => relay_error(
            "unreachable",
            format!("cannot reach Warrant at {base}: {}", root_cause(e)),
        ),
        StreamableHttpError::Client(e) if e.is_timeout() => relay_error(
            "timeout",
            format!("no answer from Warrant at {base} in time"),
        ),
        StreamableHttpError::Io(e) => relay_error("no_credentials", e.to_string()),
        StreamableHttpError::AuthRequired(_) => relay_error(
            "unauthenticated",
            "Warrant refused the run's credentials (has the run or task ended?)".to_owned(),
        ),
        StreamableHttpError::UnexpectedServerResponse(text) if text.starts_with("HTTP 401") => {
            relay_error(
                "unauthenticated",
                "Warrant refused the run's credentials (has the run or task ended?)".to_owned(),
            )
        }
        StreamableHttpError::SessionExpired
        | StreamableHttpError::SessionRecoveryTimeout
        | StreamableHttpError::ReinitializationFailed(_) => relay_error(
            "session_gone",
            format!("the gateway session is gone and could not be renewed: {error}"),
        ),
        StreamableHttpError::TransportChannelClosed => relay_error(
            "closed",
            "the connection to Warrant's gateway is closed".to_owned(),
        ),
        other => relay_error("gateway_error", format!("Warrant's gateway: {other}")),
    }
}

/// The innermost cause ("connection refused") of a transport error.
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// rmcp's reqwest client, with the run's `Authorization: DPoP` and a fresh
/// `DPoP` proof added to every request (rmcp lets custom headers through,
/// only its own protocol headers are reserved).
#[derive(Clone)]
struct DpopClient {
    http: reqwest::Client,
    credentials: Arc<RunCredentials>,
    /// Warrant's address, for messages.
    base: String,
}

impl DpopClient {
    async fn sign(
        &self,
        htm: &str,
        uri: &str,
        mut headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<HashMap<HeaderName, HeaderValue>, HttpError> {
        let proof = self.credentials.authorize(htm, uri).await.map_err(|e| {
            StreamableHttpError::Io(std::io::Error::other(format!(
                "cannot get the run's credentials: {e:#}"
            )))
        })?;
        let invalid = |_| {
            StreamableHttpError::Io(std::io::Error::other(
                "the run's credentials are not valid header values",
            ))
        };
        let mut authorization = HeaderValue::from_str(&proof.authorization).map_err(invalid)?;
        authorization.set_sensitive(true);
        let mut dpop = HeaderValue::from_str(&proof.dpop).map_err(invalid)?;
        dpop.set_sensitive(true);
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(HeaderName::from_static("dpop"), dpop);
        Ok(headers)
    }
}

impl StreamableHttpClient for DpopClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        let headers = self.sign("POST", &uri, custom_headers).await?;
        self.http
            .post_message(uri, message, session_id, None, headers)
            .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        let headers = self.sign("POST", &uri, custom_headers).await?;
        self.http
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                None,
                headers,
                max_sse_event_size,
            )
            .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        let headers = self.sign("POST", &uri, custom_headers).await?;
        self.http
            .post_message_with_response_limits(uri, message, session_id, None, headers, limits)
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), HttpError> {
        let headers = self.sign("DELETE", &uri, custom_headers).await?;
        self.http
            .delete_session(uri, session_id, None, headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        let headers = self.sign("GET", &uri, custom_headers).await?;
        self.http
            .get_stream(uri, session_id, last_event_id, None, headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        let headers = self.sign("GET", &uri, custom_headers).await?;
        self.http
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                None,
                headers,
                max_sse_event_size,
            )
            .await
    }
}
