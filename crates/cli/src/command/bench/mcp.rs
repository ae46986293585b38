//! `warrant bench mcp`: what the MCP gateway adds to a `tools/call`, and how
//! many calls per second it passes at a stated concurrency.
//!
//! Everything runs in this process on loopback: an upstream MCP server
//! (rmcp's streamable-HTTP server with one `echo` tool that does no work), a
//! real server (`serve` on 127.0.0.1:0, a fresh private data directory,
//! SQLite with durable commits) whose config declares that upstream as
//! `[[mcp.servers]] name = "bench"`, and a small JSON-RPC-over-HTTP client.
//! The same client code calls the upstream directly (the baseline) and
//! through `/mcp/bench` with its run token and a DPoP proof per request; a
//! gateway call pays for the proof and run checks, the audited `mcp.call`
//! decision (committed durably through the group committer), the scan for
//! issued values, and the upstream's own round trip.
//!
//! Latency: one client alternates direct and gateway calls, so both series
//! see the same machine load; the added latency is the difference of their
//! percentiles. Throughput: `--concurrency` clients, each its own run and
//! MCP sessions, directly and then through the gateway. Every request is
//! built (and its proof signed) before its timer starts; a timed call ends
//! when the whole answer has been read, and every answer is checked
//! afterwards (an echo of the message, not a tool error).

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use clap::Args;
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities, Tool,
    ToolsCapability,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde::Serialize;
use serde_json::{Value, json};
use warrant_crypto::jws::{JwsAlg, ProofKey};

use super::{Sample, ms};

#[derive(Args, Debug)]
pub struct McpArgs {
    /// Timed `tools/call`s in each series: direct and through the gateway
    /// by one client, then each again split across the concurrent clients.
    #[arg(long, default_value_t = 2_000)]
    calls: usize,
    /// Concurrent clients in the throughput series, each with its own run
    /// and MCP sessions.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Untimed calls on every session before the timed series.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Print the figures as JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// The upstream server's name in Warrant's config: `/mcp/bench`,
/// `Tool::"bench/echo"`.
const SERVER: &str = "bench";
/// What every call asks the upstream to echo.
const MESSAGE: &str = "hello from warrant bench mcp";
/// The newest handshake-era protocol revision, which the gateway speaks.
const PROTOCOL_VERSION: &str = "2025-11-25";

pub(super) async fn run(a: McpArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.calls > 0 && a.concurrency > 0,
        "--calls and --concurrency must be positive"
    );
    let (upstream_url, stop_upstream) = start_upstream().await?;
    let result = with_warrant(&a, &upstream_url).await;
    stop_upstream();
    let report = result?;
    if a.json {
        crate::output::json(&report)
    } else {
        Ok(())
    }
}

/// The in-process upstream: rmcp's streamable-HTTP server (sessions, SSE
/// answers, like most real servers) with the [`Echo`] handler. Returns its
/// URL and what stops it.
async fn start_upstream() -> anyhow::Result<(String, impl FnOnce())> {
    let config = StreamableHttpServerConfig::default();
    let cancel = config.cancellation_token.clone();
    let service = StreamableHttpService::new(
        || Ok(Echo),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().route_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on loopback for the upstream")?;
    let url = format!("http://{}/mcp", listener.local_addr()?);
    // Without TCP_NODELAY an SSE answer written in two pieces waits for the
    // client's delayed ACK (about 40 ms); Node's http server and Python's
    // asyncio set it by default, so the baseline does too.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the bench upstream stopped");
        }
    });
    Ok((url, move || {
        cancel.cancel();
        task.abort();
    }))
}

/// An MCP server with one tool, `echo`, that returns its `message`.
#[derive(Debug, Clone, Copy)]
struct Echo;

impl ServerHandler for Echo {
    fn get_info(&self) -> InitializeResult {
        let mut caps = ServerCapabilities::default();
        caps.tools = Some(ToolsCapability::default());
        let mut info = InitializeResult::new(caps);
        info.server_info = Implementation::new("warrant-bench-echo", env!("CARGO_PKG_VERSION"));
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let schema = json!({
            "type": "object",
            "properties": {"message": {"type": "string"}},
            "required": ["message"],
        });
        let Value::Object(schema) = schema else {
            return Err(McpError::internal_error(
                "the echo schema is not an object",
                None,
            ));
        };
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "echo",
            "Returns its message.",
            schema,
        )]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if request.name != "echo" {
            return Err(McpError::invalid_params(
                format!("unknown tool `{}`", request.name),
                None,
            ));
        }
        let message = request
            .arguments
            .as_ref()
            .and_then(|args| args.get("message"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(CallToolResult::success(vec![ContentBlock::text(message)]).into())
    }
}

/// Starts Warrant with the upstream in its config, measures, stops it.
async fn with_warrant(a: &McpArgs, upstream_url: &str) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .context("cannot make the temporary directory private")?;
    let config = dir.path().join("warrant.toml");
    std::fs::write(
        &config,
        format!("[[mcp.servers]]\nname = \"{SERVER}\"\nurl = \"{upstream_url}\"\n"),
    )
    .context("cannot write the config file")?;
    let data_dir = dir.path().join("data");
    let opts = warrant_server::ServeOptions {
        data_dir: Some(data_dir.clone()),
        listen: Some("127.0.0.1:0".parse()?),
        store_url: None,
        config_file: Some(config),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(warrant_server::serve(
        opts,
        async move {
            let _ = stop_rx.await;
        },
        move |ready: &warrant_server::Ready| {
            let _ = ready_tx.send(ready.clone());
        },
    ));
    let Ok(ready) = ready_rx.await else {
        server.await.context("the server task failed")??;
        anyhow::bail!("the server stopped before it was ready");
    };
    let admin = std::fs::read_to_string(data_dir.join("admin.token"))
        .context("cannot read the admin token")?
        .trim_end()
        .to_owned();
    let warrant = Warrant {
        // One connection per session and series, kept alive.
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(2 * a.concurrency)
            .build()?,
        base: ready.public_url.clone(),
        admin,
    };
    let result = measure(&warrant, a, upstream_url, ready.store).await;
    let _ = stop_tx.send(());
    server.await.context("the server task failed")??;
    result
}

/// The server's admin API, for setting up runs.
struct Warrant {
    http: reqwest::Client,
    base: String,
    admin: String,
}

impl Warrant {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        anyhow::ensure!(status.is_success(), "`POST {path}` failed: {status} {body}");
        Ok(body)
    }

    /// A task that may call `bench/echo` and a run redeemed from it.
    async fn run(&self) -> anyhow::Result<RunAuth> {
        let task = self
            .post(
                "/v1/tasks",
                json!({
                    "agent": "bench",
                    "purpose": "benchmark the mcp gateway",
                    "ttl": "8h",
                    "scope": {"actions": ["mcp.call"], "tools": [format!("{SERVER}/echo")]},
                }),
            )
            .await?;
        let claim = task["claim"].as_str().context("the task has no claim")?;
        let key = ProofKey::generate(JwsAlg::ES256)?;
        let url = format!("{}/v1/token", self.base);
        let res = self
            .http
            .post(&url)
            .header("DPoP", proof(&key, "POST", &url, None)?)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=urn%3Awarrant%3Agrant-type%3Atask-claim&claim={claim}"
            ))
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        anyhow::ensure!(status.is_success(), "the claim grant failed: {body}");
        let token = body["access_token"]
            .as_str()
            .context("no access token")?
            .to_owned();
        Ok(RunAuth { key, token })
    }
}

fn proof(key: &ProofKey, method: &str, url: &str, token: Option<&str>) -> anyhow::Result<String> {
    let mut claims = json!({
        "jti": hex::encode(warrant_crypto::random_bytes::<16>()?),
        "htm": method,
        "htu": url,
        "iat": jiff::Timestamp::now().as_second(),
    });
    if let Some(t) = token {
        claims["ath"] = warrant_token::access_token_hash(t).into();
    }
    Ok(key.sign_with_jwk("dpop+jwt", &claims)?)
}

/// A run's credentials: every request through the gateway carries the
/// token and a fresh proof signed with the key.
struct RunAuth {
    key: ProofKey,
    token: String,
}

/// One MCP session over streamable HTTP: JSON-RPC requests POSTed to one
/// URL, answered with a JSON body or an SSE stream.
struct Session {
    http: reqwest::Client,
    url: String,
    /// Present through the gateway, absent for the upstream.
    auth: Option<RunAuth>,
    /// `Mcp-Session-Id`, from the `initialize` answer.
    id: Option<String>,
    version: Option<String>,
    next_id: u64,
}

impl Session {
    /// `initialize`, then `notifications/initialized`.
    async fn open(
        http: &reqwest::Client,
        url: &str,
        auth: Option<RunAuth>,
    ) -> anyhow::Result<Self> {
        let mut session = Self {
            http: http.clone(),
            url: url.to_owned(),
            auth,
            id: None,
            version: None,
            next_id: 0,
        };
        let init = session.rpc(
            "initialize",
            json!({
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "warrant-bench", "version": env!("CARGO_PKG_VERSION")},
            }),
        );
        let res = session.request(Method::POST, Some(init.1))?.send().await?;
        session.id = res
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let result = answer(res, init.0).await?;
        session.version = Some(
            result["protocolVersion"]
                .as_str()
                .context("the `initialize` answer names no protocol version")?
                .to_owned(),
        );
        anyhow::ensure!(
            session.id.is_some(),
            "`{url}` opened no session (no `Mcp-Session-Id` header)"
        );
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
        let res = session.request(Method::POST, Some(note))?.send().await?;
        let status = res.status();
        anyhow::ensure!(
            status.is_success(),
            "`notifications/initialized` to `{url}` failed: {status}"
        );
        Ok(session)
    }

    /// A JSON-RPC request with the next id: the id and the body.
    fn rpc(&mut self, method: &str, params: Value) -> (u64, String) {
        self.next_id += 1;
        let body =
            json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        (self.next_id, body.to_string())
    }

    /// A request to the session's URL with its headers, ready to send (the
    /// DPoP proof is signed here, before any timer starts).
    fn request(
        &self,
        method: Method,
        body: Option<String>,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        let mut req = self
            .http
            .request(method.clone(), &self.url)
            .header(ACCEPT, "application/json, text/event-stream");
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        if let Some(id) = &self.id {
            req = req.header("mcp-session-id", id);
        }
        if let Some(version) = &self.version {
            req = req.header("mcp-protocol-version", version);
        }
        if let Some(auth) = &self.auth {
            req = req
                .header(AUTHORIZATION, format!("DPoP {}", auth.token))
                .header(
                    "DPoP",
                    proof(&auth.key, method.as_str(), &self.url, Some(&auth.token))?,
                );
        }
        Ok(req)
    }

    /// One `tools/call` of `echo`: the time from sending the request to
    /// having read the whole answer. The answer is checked afterwards.
    async fn echo(&mut self) -> anyhow::Result<Duration> {
        let (id, body) = self.rpc(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": MESSAGE}}),
        );
        let req = self.request(Method::POST, Some(body))?;
        let started = Instant::now();
        let res = req.send().await?;
        let status = res.status();
        let sse = is_sse(&res);
        let bytes = res.bytes().await?;
        let took = started.elapsed();
        let result = parse_answer(status, sse, &bytes, id)?;
        anyhow::ensure!(
            result["isError"] != true && result["content"][0]["text"] == MESSAGE,
            "`tools/call` of `echo` at `{}` did not echo: {result}",
            self.url
        );
        Ok(took)
    }

    /// Ends the session (HTTP `DELETE`); best effort.
    async fn close(self) {
        if let Ok(req) = self.request(Method::DELETE, None) {
            let _ = req.send().await;
        }
    }
}

fn is_sse(res: &reqwest::Response) -> bool {
    res.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// The `result` of the JSON-RPC answer with id `id` in a response.
async fn answer(res: reqwest::Response, id: u64) -> anyhow::Result<Value> {
    let status = res.status();
    let sse = is_sse(&res);
    let bytes = res.bytes().await?;
    parse_answer(status, sse, &bytes, id)
}

fn parse_answer(
    status: reqwest::StatusCode,
    sse: bool,
    body: &[u8],
    id: u64,
) -> anyhow::Result<Value> {
    let text = String::from_utf8_lossy(body);
    anyhow::ensure!(
        status.is_success(),
        "the MCP server answered {status}: {}",
        text.chars().take(500).collect::<String>()
    );
    let message = if sse {
        sse_messages(&text)
            .into_iter()
            .find(|m| m["id"] == id)
            .context("the event stream holds no answer to the request")?
    } else {
        serde_json::from_str(&text).context("the answer is not JSON")?
    };
    if let Some(error) = message.get("error") {
        anyhow::bail!("the MCP server answered with an error: {error}");
    }
    message
        .get("result")
        .cloned()
        .context("the answer has no `result`")
}

/// The JSON messages in an SSE body: each event's `data:` lines joined;
/// events without data (priming, keep-alive) skipped.
fn sse_messages(text: &str) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut data = String::new();
    let mut flush = |data: &mut String| {
        if !data.is_empty() {
            if let Ok(v) = serde_json::from_str(data) {
                messages.push(v);
            }
            data.clear();
        }
    };
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            flush(&mut data);
        } else if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    flush(&mut data);
    messages
}

/// One client's sessions: to the upstream directly and through Warrant.
struct Client {
    direct: Session,
    gateway: Session,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct Report {
    store: &'static str,
    concurrency: usize,
    warmup: usize,
    /// Every request was built and its DPoP proof signed before its timer
    /// started.
    proofs_signed_before_timer: bool,
    /// One client, direct and gateway calls alternating.
    direct: Figures,
    gateway: Figures,
    /// The gateway's percentiles minus the direct ones.
    added: Added,
    /// `concurrency` clients.
    direct_concurrent: Figures,
    gateway_concurrent: Figures,
}

#[derive(Debug, Serialize)]
struct Figures {
    mode: String,
    calls: usize,
    calls_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Serialize)]
struct Added {
    p50_ms: f64,
    p99_ms: f64,
}

impl Sample {
    /// The figures [`Sample::print`] prints, as values.
    fn figures(&mut self) -> Figures {
        self.latencies.sort_unstable();
        let n = self.latencies.len();
        let pct = |p: f64| {
            if n == 0 {
                return 0.0;
            }
            ms(self.latencies[((n as f64 * p).ceil() as usize).clamp(1, n) - 1])
        };
        Figures {
            mode: self.mode.clone(),
            calls: self.events,
            calls_per_s: self.events as f64 / self.elapsed.as_secs_f64(),
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            max_ms: pct(1.0),
        }
    }
}

/// A series run one call after the other: its rate is one over the mean
/// latency.
fn sequential(mode: String, latencies: Vec<Duration>) -> Sample {
    Sample {
        mode,
        events: latencies.len(),
        elapsed: latencies.iter().sum(),
        latencies,
    }
}

async fn measure(
    warrant: &Warrant,
    a: &McpArgs,
    upstream_url: &str,
    backend: &'static str,
) -> anyhow::Result<Report> {
    warrant
        .post("/v1/agents", json!({"name": "bench", "tier": "propose"}))
        .await?;
    let gateway_url = format!("{}/mcp/{SERVER}", warrant.base);
    let mut clients = Vec::with_capacity(a.concurrency);
    for _ in 0..a.concurrency {
        let auth = warrant.run().await?;
        let mut client = Client {
            direct: Session::open(&warrant.http, upstream_url, None).await?,
            gateway: Session::open(&warrant.http, &gateway_url, Some(auth)).await?,
        };
        for _ in 0..a.warmup {
            client.direct.echo().await?;
            client.gateway.echo().await?;
        }
        clients.push(client);
    }
    if !a.json {
        println!(
            "mcp gateway bench: `tools/call` of an echo tool on an in-process rmcp upstream \
             (streamable HTTP), directly and through an in-process Warrant ({backend}, durable \
             group-committed audit, DPoP); client, Warrant and upstream share this process and \
             its cores; requests and proofs are built before each timer starts"
        );
    }

    // Latency: one client, direct and gateway calls alternating.
    let (mut direct, mut gateway) = {
        let client = clients.first_mut().context("no client")?;
        let mut direct = Vec::with_capacity(a.calls);
        let mut gateway = Vec::with_capacity(a.calls);
        for _ in 0..a.calls {
            direct.push(client.direct.echo().await?);
            gateway.push(client.gateway.echo().await?);
        }
        (
            sequential("tools/call direct, 1 client".into(), direct),
            sequential("tools/call via gateway, 1 client".into(), gateway),
        )
    };
    let (direct_figures, gateway_figures) = (direct.figures(), gateway.figures());
    let added = Added {
        p50_ms: gateway_figures.p50_ms - direct_figures.p50_ms,
        p99_ms: gateway_figures.p99_ms - direct_figures.p99_ms,
    };
    if !a.json {
        direct.print();
        gateway.print();
        println!(
            "{:<44} p50 {:>+8.3} ms  p99 {:>+8.3} ms",
            "added by the gateway (percentile difference)", added.p50_ms, added.p99_ms
        );
    }

    // Throughput: every client at once, directly, then through the gateway.
    let (clients, mut direct_n) = concurrent(clients, a, false).await?;
    let (clients, mut gateway_n) = concurrent(clients, a, true).await?;
    let direct_concurrent = direct_n.figures();
    let gateway_concurrent = gateway_n.figures();
    if !a.json {
        direct_n.print();
        gateway_n.print();
    }
    for client in clients {
        client.gateway.close().await;
        client.direct.close().await;
    }
    Ok(Report {
        store: backend,
        concurrency: a.concurrency,
        warmup: a.warmup,
        proofs_signed_before_timer: true,
        direct: direct_figures,
        gateway: gateway_figures,
        added,
        direct_concurrent,
        gateway_concurrent,
    })
}

/// `--calls` calls split across every client at once, on each client's
/// direct or gateway session; the clients are handed back.
async fn concurrent(
    clients: Vec<Client>,
    a: &McpArgs,
    through_gateway: bool,
) -> anyhow::Result<(Vec<Client>, Sample)> {
    let per_client = a.calls.div_ceil(a.concurrency);
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    let session = if through_gateway {
                        &mut client.gateway
                    } else {
                        &mut client.direct
                    };
                    latencies.push(session.echo().await?);
                }
                anyhow::Ok((client, latencies))
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(tasks.len());
    let mut latencies = Vec::with_capacity(per_client * a.concurrency);
    for t in tasks {
        let (client, l) = t.await.context("a client task failed")??;
        clients.push(client);
        latencies.extend(l);
    }
    let elapsed = started.elapsed();
    let via = if through_gateway {
        "via gateway"
    } else {
        "direct"
    };
    Ok((
        clients,
        Sample {
            mode: format!("tools/call {via}, {} concurrent", a.concurrency),
            events: latencies.len(),
            elapsed,
            latencies,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_bodies_yield_their_json_messages() {
        let body = "id: 0\nretry: 3000\ndata:\n\n\
                    event: message\r\ndata: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":2,\"result\":{}}\r\n\r\n";
        let messages = sse_messages(body);
        assert_eq!(
            messages,
            vec![json!({"jsonrpc": "2.0", "id": 2, "result": {}})]
        );
        let result = parse_answer(reqwest::StatusCode::OK, true, body.as_bytes(), 2).unwrap();
        assert_eq!(result, json!({}));
        assert!(parse_answer(reqwest::StatusCode::OK, true, body.as_bytes(), 3).is_err());
    }

    #[test]
    fn json_rpc_errors_are_errors() {
        let body = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#;
        let err = parse_answer(reqwest::StatusCode::OK, false, body, 1).unwrap_err();
        assert!(err.to_string().contains("-32601"), "{err}");
        let err = parse_answer(reqwest::StatusCode::UNAUTHORIZED, false, b"{}", 1).unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
    }
}
