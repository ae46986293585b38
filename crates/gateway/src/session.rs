//! One agent session through the gateway: the rmcp `ServerHandler` the
//! agent talks to, with its own upstream connection.
//!
//! Order of checks on every request: the session is open and bound to the
//! caller's run, the run is live, the decision allows, the arguments carry
//! no issued value; only then is anything forwarded, and the answer is
//! redacted before it goes back.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode,
    GetPromptRequestParams, GetPromptResponse, InitializeRequestParams, InitializeResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, PromptsCapability, ProtocolVersion, ReadResourceRequestParams,
    ReadResourceResponse, ResourcesCapability, ServerCapabilities, ToolsCapability,
};
use rmcp::service::{NotificationContext, Peer, RequestContext, ServiceError};
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::{ErrorData as McpError, RoleClient, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::config::Upstream;
use crate::registry::SessionRegistry;
use crate::scan::Needles;
use crate::upstream::Connection;
use crate::warden::{Caller, Verdict, Warden};

/// JSON-RPC error code of a request Warrant refused by decision (resources
/// and prompts; refused tool calls are tool results with `isError`).
pub const DENIED: ErrorCode = ErrorCode(-32001);

/// The header rmcp's streamable-HTTP transport names a session with.
const SESSION_HEADER: &str = "mcp-session-id";

/// What every session of one upstream shares.
pub(crate) struct Shared {
    pub(crate) upstream: Upstream,
    pub(crate) registry: SessionRegistry,
    pub(crate) http_sessions: Arc<LocalSessionManager>,
}

/// The per-session state; the registry holds it weakly so a run can be
/// closed from outside.
pub(crate) struct SessionState {
    server: String,
    bound: OnceLock<Bound>,
    closed: AtomicBool,
    session_id: Mutex<Option<Arc<str>>>,
    http_sessions: Arc<LocalSessionManager>,
}

/// The leases taken for one session, given back to the warden exactly once:
/// when the session closes, or when it is dropped without closing (idle
/// timeout, agent gone).
struct Held {
    server: String,
    warden: Arc<dyn Warden>,
    leases: Mutex<Vec<String>>,
}

impl Held {
    async fn release(&self) {
        let leases = std::mem::take(&mut *lock(&self.leases));
        if !leases.is_empty() {
            self.warden.release(&self.server, leases).await;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let leases = std::mem::take(&mut *lock(&self.leases));
        if leases.is_empty() {
            return;
        }
        let (warden, server) = (self.warden.clone(), self.server.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move { warden.release(&server, leases).await });
            }
            // No runtime left (shutdown): the leases expire with the run.
            Err(_) => tracing::warn!(server, "cannot release session leases at shutdown"),
        }
    }
}

struct Bound {
    run_id: String,
    warden: Arc<dyn Warden>,
    held: Held,
    info: InitializeResult,
    pid: Option<u32>,
    peer: Peer<RoleClient>,
    connection: tokio::sync::Mutex<Option<Connection>>,
    /// `openWorldHint` of the tools seen in the upstream's lists.
    open_world: Mutex<HashMap<String, bool>>,
}

impl SessionState {
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    pub(crate) fn upstream_pid(&self) -> Option<u32> {
        self.bound.get().and_then(|b| b.pid)
    }

    pub(crate) fn session_id(&self) -> Option<String> {
        lock(&self.session_id).as_deref().map(str::to_owned)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Stop the upstream now; later requests of the session fail.
    async fn close_upstream(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(bound) = self.bound.get() {
            let connection = bound.connection.lock().await.take();
            if let Some(connection) = connection {
                connection.close().await;
            }
            bound.held.release().await;
        }
    }

    /// Stop the upstream and end the HTTP session (the agent's next request
    /// gets 404). Never called from inside one of the session's own
    /// requests: ending the HTTP session cancels them.
    pub(crate) async fn close(&self) {
        self.close_upstream().await;
        let id = lock(&self.session_id).clone();
        if let Some(id) = id {
            let _ = self.http_sessions.close_session(&id).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The rmcp [`ServerHandler`] for one agent session. Built unbound by the
/// gateway's factory; `initialize` binds it to the caller's run and opens
/// the upstream.
pub struct SessionHandler {
    shared: Arc<Shared>,
    state: Arc<SessionState>,
    /// Set when the handler is served outside HTTP (stdio, in-process).
    fixed_caller: Option<Caller>,
}

impl SessionHandler {
    pub(crate) fn new(shared: Arc<Shared>, fixed_caller: Option<Caller>) -> Self {
        let state = Arc::new(SessionState {
            server: shared.upstream.name.as_str().to_owned(),
            bound: OnceLock::new(),
            closed: AtomicBool::new(false),
            session_id: Mutex::new(None),
            http_sessions: shared.http_sessions.clone(),
        });
        Self {
            shared,
            state,
            fixed_caller,
        }
    }

    fn server(&self) -> &str {
        self.shared.upstream.name.as_str()
    }

    fn timeout(&self) -> Duration {
        self.shared.upstream.timeout
    }

    fn caller(&self, extensions: &rmcp::model::Extensions) -> Result<Caller, McpError> {
        if let Some(caller) = &self.fixed_caller {
            return Ok(caller.clone());
        }
        extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Caller>())
            .or_else(|| extensions.get::<Caller>())
            .cloned()
            .ok_or_else(|| McpError::invalid_request("no authenticated run for this request", None))
    }

    fn note_session_id(&self, extensions: &rmcp::model::Extensions) {
        let Some(id) = extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.headers.get(SESSION_HEADER))
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        let mut slot = lock(&self.state.session_id);
        if slot.is_none() {
            *slot = Some(Arc::from(id));
        }
    }

    /// The checks before every request after `initialize`.
    fn open_session(&self, extensions: &rmcp::model::Extensions) -> Result<&Bound, McpError> {
        let bound = self
            .state
            .bound
            .get()
            .ok_or_else(|| McpError::invalid_request("the session is not initialized", None))?;
        let caller = self.caller(extensions)?;
        if caller.run_id() != bound.run_id {
            return Err(McpError::invalid_request(
                "the session belongs to another run",
                None,
            ));
        }
        self.note_session_id(extensions);
        if self.state.is_closed() {
            return Err(session_closed());
        }
        Ok(bound)
    }

    /// `live()`, closing the upstream when the run has ended.
    async fn live(&self, bound: &Bound) -> bool {
        if bound.warden.live().await {
            return true;
        }
        self.state.close_upstream().await;
        false
    }

    async fn open_live_session(
        &self,
        extensions: &rmcp::model::Extensions,
    ) -> Result<&Bound, McpError> {
        let bound = self.open_session(extensions)?;
        if !self.live(bound).await {
            return Err(run_ended());
        }
        Ok(bound)
    }

    /// Run one upstream request within the timeout; a timeout or a broken
    /// upstream closes the session's upstream.
    async fn forward<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, Forwarded> {
        match tokio::time::timeout(self.timeout(), request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(ServiceError::McpError(e))) => Err(Forwarded::Error(e)),
            Ok(Err(e)) => {
                tracing::warn!(server = self.server(), error = %e, "mcp upstream failed");
                self.state.close_upstream().await;
                Err(Forwarded::Broken(format!(
                    "mcp server `{}` failed during `{what}`; the session is closed",
                    self.server()
                )))
            }
            Err(_) => {
                tracing::warn!(server = self.server(), what, "mcp upstream timed out");
                self.state.close_upstream().await;
                Err(Forwarded::Broken(format!(
                    "mcp server `{}` did not answer `{what}` within {}; the session is closed",
                    self.server(),
                    human(self.timeout())
                )))
            }
        }
    }

    /// Redact issued values in an upstream answer, reporting each found.
    async fn redact<T>(&self, bound: &Bound, tool: &str, message: T) -> Result<T, McpError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let needles = Needles::new(bound.warden.issued_values().await);
        let (message, found) = needles.redact_typed(message).map_err(|e| {
            McpError::internal_error(format!("cannot scan the upstream answer: {e}"), None)
        })?;
        self.report(bound, tool, "result", &found).await;
        Ok(message)
    }

    async fn report(&self, bound: &Bound, tool: &str, place: &str, found: &BTreeSet<String>) {
        for id in found {
            tracing::warn!(
                server = self.server(),
                tool,
                place,
                id,
                "issued value leaked"
            );
            bound.warden.leaked(id, self.server(), tool, place).await;
        }
    }

    /// An upstream JSON-RPC error, redacted like a result.
    async fn upstream_error(&self, bound: &Bound, tool: &str, e: McpError) -> McpError {
        match self.redact(bound, tool, e).await {
            Ok(e) | Err(e) => e,
        }
    }

    /// Decide a resource or prompt request: anything but `Allow` is a
    /// JSON-RPC error.
    async fn decide_other(
        &self,
        bound: &Bound,
        kind: &str,
        arguments: Option<&Value>,
    ) -> Result<(), McpError> {
        match bound
            .warden
            .decide_call(self.server(), kind, arguments)
            .await
        {
            Verdict::Allow => Ok(()),
            verdict => Err(McpError::new(
                DENIED,
                refusal_text(self.server(), kind, &verdict),
                Some(verdict_data(&verdict)),
            )),
        }
    }

    /// Refuse arguments that carry an issued value, reporting the leak.
    async fn check_arguments(
        &self,
        bound: &Bound,
        tool: &str,
        arguments: Option<&Value>,
    ) -> Result<(), String> {
        let Some(arguments) = arguments else {
            return Ok(());
        };
        let needles = Needles::new(bound.warden.issued_values().await);
        let found = needles.find(arguments);
        if found.is_empty() {
            return Ok(());
        }
        self.report(bound, tool, "arguments", &found).await;
        let ids: Vec<String> = found.iter().map(|id| format!("`{id}`")).collect();
        Err(format!(
            "refused by Warrant: the arguments of `{}/{tool}` carry a value Warrant issued ({}); \
             it has been reported and revoked",
            self.server(),
            ids.join(", ")
        ))
    }

    async fn open_world(&self, bound: &Bound, tool: &str) -> bool {
        if let Some(hint) = lock(&bound.open_world).get(tool) {
            return *hint;
        }
        if let Ok(Ok(tools)) =
            tokio::time::timeout(self.timeout(), bound.peer.list_all_tools()).await
        {
            let mut map = lock(&bound.open_world);
            for t in tools {
                map.insert(t.name.to_string(), open_world_hint(&t));
            }
            return map.get(tool).copied().unwrap_or(false);
        }
        false
    }

    async fn call(
        &self,
        bound: &Bound,
        params: CallToolRequestParams,
    ) -> Result<CallToolResponse, McpError> {
        let server = self.server();
        let tool = params.name.to_string();
        let arguments = params.arguments.clone().map(Value::Object);
        let verdict = bound
            .warden
            .decide_call(server, &tool, arguments.as_ref())
            .await;
        if verdict != Verdict::Allow {
            return Ok(tool_error(refusal_text(server, &tool, &verdict)));
        }
        if let Err(text) = self.check_arguments(bound, &tool, arguments.as_ref()).await {
            return Ok(tool_error(text));
        }
        let mut forwarded = params;
        forwarded.meta = None;
        let response = match self
            .forward("tools/call", bound.peer.call_tool_once(forwarded))
            .await
        {
            Ok(response) => response,
            Err(Forwarded::Error(e)) => return Err(self.upstream_error(bound, &tool, e).await),
            Err(Forwarded::Broken(text)) => return Ok(tool_error(text)),
        };
        let CallToolResponse::Complete(result) = response else {
            return Ok(tool_error(format!(
                "mcp server `{server}` asked for input or started a task for `{tool}`, \
                 which the gateway does not relay"
            )));
        };
        let result = self.redact(bound, &tool, result).await?;
        let upstream = &self.shared.upstream;
        if upstream.taints.contains(&tool)
            || (upstream.taint_open_world && self.open_world(bound, &tool).await)
        {
            bound.warden.tainted(server, &tool).await;
        }
        Ok(CallToolResponse::Complete(result))
    }
}

enum Forwarded {
    /// The upstream answered with a JSON-RPC error.
    Error(McpError),
    /// Timeout or a broken upstream: the upstream is closed.
    Broken(String),
}

fn open_world_hint(tool: &rmcp::model::Tool) -> bool {
    tool.annotations
        .as_ref()
        .and_then(|a| a.open_world_hint)
        .unwrap_or(false)
}

fn tool_error(text: String) -> CallToolResponse {
    CallToolResponse::Complete(CallToolResult::error(vec![ContentBlock::text(text)]))
}

fn session_closed() -> McpError {
    McpError::invalid_request(
        "the session is closed (run ended, revoked, or the upstream failed): start a new session",
        None,
    )
}

fn run_ended() -> McpError {
    McpError::invalid_request(
        "the run has ended or was revoked: Warrant refuses further requests",
        None,
    )
}

/// What the agent reads when Warrant refuses: reasons, code, what to do.
fn refusal_text(server: &str, tool: &str, verdict: &Verdict) -> String {
    match verdict {
        Verdict::Allow => String::new(),
        Verdict::Deny { reasons, code } => {
            let mut text = format!("denied by Warrant: `{server}/{tool}` (code `{code}`)");
            if !reasons.is_empty() {
                text.push_str(": ");
                text.push_str(&reasons.join("; "));
            }
            text
        }
        Verdict::ApprovalRequired {
            approval_id,
            reasons,
        } => {
            let mut text = format!(
                "approval required by Warrant for `{server}/{tool}`: approval `{approval_id}`"
            );
            if !reasons.is_empty() {
                text.push_str(" (");
                text.push_str(&reasons.join("; "));
                text.push(')');
            }
            text.push_str(&format!(
                "; ask again once approved (warrant approvals show {approval_id})"
            ));
            text
        }
    }
}

fn verdict_data(verdict: &Verdict) -> Value {
    match verdict {
        Verdict::Allow => json!({}),
        Verdict::Deny { reasons, code } => json!({"code": code, "reasons": reasons}),
        Verdict::ApprovalRequired {
            approval_id,
            reasons,
        } => json!({"code": "approval_required", "approval_id": approval_id, "reasons": reasons}),
    }
}

fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs > 0 && d.subsec_nanos() == 0 {
        format!("{secs}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The capabilities the gateway relays: tools, resources, prompts, as the
/// upstream offers them; no subscriptions, list-changed notifications,
/// completions, logging or tasks.
fn relayed_capabilities(upstream: &ServerCapabilities) -> ServerCapabilities {
    let mut caps = ServerCapabilities::default();
    caps.tools = Some(ToolsCapability::default());
    if upstream.resources.is_some() {
        caps.resources = Some(ResourcesCapability::default());
    }
    if upstream.prompts.is_some() {
        caps.prompts = Some(PromptsCapability::default());
    }
    caps
}

impl ServerHandler for SessionHandler {
    fn get_info(&self) -> InitializeResult {
        match self.state.bound.get() {
            Some(bound) => bound.info.clone(),
            None => {
                let mut caps = ServerCapabilities::default();
                caps.tools = Some(ToolsCapability::default());
                InitializeResult::new(caps)
            }
        }
    }

    /// Handshake-era versions only: the gateway keeps one upstream per
    /// session, which the stateless 2026-07-28 revision does not have.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        let caller = self.caller(&context.extensions)?;
        if self.state.bound.get().is_some() || self.state.is_closed() {
            return Err(McpError::invalid_request(
                "the session is already initialized",
                None,
            ));
        }
        let server = self.server().to_owned();
        let warden = caller.warden().clone();
        if !warden.live().await {
            return Err(run_ended());
        }
        let mut launch = warden.launch(&server).await.map_err(|e| {
            McpError::internal_error(format!("cannot open mcp server `{server}`: {e}"), None)
        })?;
        // From here on every way out gives the leases back (`Held` on drop).
        let held = Held {
            server: server.clone(),
            warden: warden.clone(),
            leases: Mutex::new(std::mem::take(&mut launch.leases)),
        };
        let connection = match Connection::open(&self.shared.upstream, launch).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(server, error = %e, "cannot open mcp upstream");
                held.release().await;
                return Err(McpError::internal_error(
                    format!("mcp server `{server}` is unavailable: {e}"),
                    None,
                ));
            }
        };
        let peer = connection.peer().clone();
        let upstream_info = peer.peer_info();
        let mut info = InitializeResult::new(relayed_capabilities(
            &upstream_info
                .as_ref()
                .map(|i| i.capabilities.clone())
                .unwrap_or_default(),
        ));
        if let Some(upstream_info) = &upstream_info {
            if let Some(implementation) = &upstream_info.server_info {
                info.server_info = implementation.clone();
            }
            if let Some(instructions) = &upstream_info.instructions {
                let needles = Needles::new(warden.issued_values().await);
                let mut text = Value::String(instructions.clone());
                let found = needles.redact(&mut text);
                for id in &found {
                    warden.leaked(id, &server, "initialize", "result").await;
                }
                info.instructions = text.as_str().map(str::to_owned);
            }
        }
        let pid = connection.pid();
        let bound = Bound {
            run_id: caller.run_id().to_owned(),
            warden,
            held,
            info,
            pid,
            peer,
            connection: tokio::sync::Mutex::new(Some(connection)),
            open_world: Mutex::new(HashMap::new()),
        };
        if let Err(bound) = self.state.bound.set(bound) {
            if let Some(c) = bound.connection.into_inner() {
                c.close().await;
            }
            bound.held.release().await;
            return Err(McpError::invalid_request(
                "the session is already initialized",
                None,
            ));
        }
        self.shared.registry.register(caller.run_id(), &self.state);
        tracing::info!(server, run = caller.run_id(), pid, "mcp session opened");
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.note_session_id(&context.extensions);
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let bound = self.open_live_session(&context.extensions).await?;
        let request = request.map(|mut r| {
            r.meta = None;
            r
        });
        let page = match self
            .forward("tools/list", bound.peer.list_tools(request))
            .await
        {
            Ok(page) => page,
            Err(Forwarded::Error(e)) => {
                return Err(self.upstream_error(bound, "tools/list", e).await);
            }
            Err(Forwarded::Broken(text)) => return Err(McpError::internal_error(text, None)),
        };
        {
            let mut map = lock(&bound.open_world);
            for t in &page.tools {
                map.insert(t.name.to_string(), open_world_hint(t));
            }
        }
        let verdicts = futures::future::join_all(
            page.tools
                .iter()
                .map(|t| bound.warden.decide_call(self.server(), &t.name, None)),
        )
        .await;
        let mut result = page;
        let mut verdicts = verdicts.into_iter();
        // Approval-required tools stay listed: calling one names the approval.
        result
            .tools
            .retain(|_| !matches!(verdicts.next(), Some(Verdict::Deny { .. }) | None));
        self.redact(bound, "tools/list", result).await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let bound = self.open_session(&context.extensions)?;
        if !self.live(bound).await {
            return Ok(tool_error(
                "refused by Warrant: the run has ended or was revoked; the session is closed"
                    .into(),
            ));
        }
        self.call(bound, request).await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let bound = self.open_live_session(&context.extensions).await?;
        self.decide_other(bound, "resources", None).await?;
        let request = request.map(|mut r| {
            r.meta = None;
            r
        });
        match self
            .forward("resources/list", bound.peer.list_resources(request))
            .await
        {
            Ok(page) => self.redact(bound, "resources", page).await,
            Err(Forwarded::Error(e)) => Err(self.upstream_error(bound, "resources", e).await),
            Err(Forwarded::Broken(text)) => Err(McpError::internal_error(text, None)),
        }
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let bound = self.open_live_session(&context.extensions).await?;
        self.decide_other(bound, "resources", None).await?;
        let request = request.map(|mut r| {
            r.meta = None;
            r
        });
        match self
            .forward(
                "resources/templates/list",
                bound.peer.list_resource_templates(request),
            )
            .await
        {
            Ok(page) => self.redact(bound, "resources", page).await,
            Err(Forwarded::Error(e)) => Err(self.upstream_error(bound, "resources", e).await),
            Err(Forwarded::Broken(text)) => Err(McpError::internal_error(text, None)),
        }
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let bound = self.open_live_session(&context.extensions).await?;
        let arguments = json!({ "uri": request.uri });
        self.decide_other(bound, "resources", Some(&arguments))
            .await?;
        self.check_arguments(bound, "resources", Some(&arguments))
            .await
            .map_err(|text| McpError::new(DENIED, text, None))?;
        let forwarded = ReadResourceRequestParams::new(request.uri);
        match self
            .forward("resources/read", bound.peer.read_resource(forwarded))
            .await
        {
            Ok(result) => Ok(ReadResourceResponse::Complete(
                self.redact(bound, "resources", result).await?,
            )),
            Err(Forwarded::Error(e)) => Err(self.upstream_error(bound, "resources", e).await),
            Err(Forwarded::Broken(text)) => Err(McpError::internal_error(text, None)),
        }
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let bound = self.open_live_session(&context.extensions).await?;
        self.decide_other(bound, "prompts", None).await?;
        let request = request.map(|mut r| {
            r.meta = None;
            r
        });
        match self
            .forward("prompts/list", bound.peer.list_prompts(request))
            .await
        {
            Ok(page) => self.redact(bound, "prompts", page).await,
            Err(Forwarded::Error(e)) => Err(self.upstream_error(bound, "prompts", e).await),
            Err(Forwarded::Broken(text)) => Err(McpError::internal_error(text, None)),
        }
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let bound = self.open_live_session(&context.extensions).await?;
        let arguments = json!({ "name": request.name, "arguments": request.arguments });
        self.decide_other(bound, "prompts", Some(&arguments))
            .await?;
        self.check_arguments(bound, "prompts", Some(&arguments))
            .await
            .map_err(|text| McpError::new(DENIED, text, None))?;
        let mut forwarded = GetPromptRequestParams::new(request.name);
        forwarded.arguments = request.arguments;
        match self
            .forward("prompts/get", bound.peer.get_prompt(forwarded))
            .await
        {
            Ok(result) => Ok(GetPromptResponse::Complete(
                self.redact(bound, "prompts", result).await?,
            )),
            Err(Forwarded::Error(e)) => Err(self.upstream_error(bound, "prompts", e).await),
            Err(Forwarded::Broken(text)) => Err(McpError::internal_error(text, None)),
        }
    }
}
