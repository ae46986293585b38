//! Starts the real pieces: the npm `@modelcontextprotocol/server-everything`
//! upstream (installed into a cache outside the repo when missing), the
//! gateway on a loopback axum server, and the official Python MCP SDK
//! client (`mcp` from PyPI, in a venv). FAILS, never skips, when Node.js,
//! the package, Python or the SDK cannot be had.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use warrant_gateway::{
    Caller, Gateway, Launch, LaunchError, ServiceOptions, SessionRegistry, UpstreamConfig, Verdict,
    Warden,
};

/// The pinned upstream the tests were written against.
const EVERYTHING: &str = "@modelcontextprotocol/server-everything@2026.8.31";
/// The pinned Python SDK.
const PYTHON_MCP: &str = "mcp==2.3.0";

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
}

fn npm_cache() -> PathBuf {
    std::env::var_os("WARRANT_NPM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/warrant-npm"))
}

/// server-everything's entry point, installing the package on first use.
pub fn everything_entry() -> &'static PathBuf {
    static ENTRY: OnceLock<PathBuf> = OnceLock::new();
    ENTRY.get_or_init(|| {
        let dir = npm_cache();
        let entry = dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
        if !entry.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            let status = std::process::Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir)
                .arg(EVERYTHING)
                .status()
                .unwrap_or_else(|e| {
                    panic!("cannot run npm to install {EVERYTHING} (install Node.js and npm): {e}")
                });
            assert!(
                status.success(),
                "npm install {EVERYTHING} failed: {status}"
            );
            assert!(
                entry.exists(),
                "{} is missing after npm install",
                entry.display()
            );
        }
        entry
    })
}

/// A Python interpreter that imports the MCP SDK: `$WARRANT_PYTHON`, else
/// `~/.cache/warrant-venv` (created and filled on first use).
pub fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let python = match std::env::var_os("WARRANT_PYTHON") {
            Some(p) => PathBuf::from(p),
            None => {
                let venv = home().join(".cache/warrant-venv");
                let python = venv.join("bin/python");
                if !python.exists() {
                    let status = std::process::Command::new("python3")
                        .args(["-m", "venv"])
                        .arg(&venv)
                        .status()
                        .unwrap_or_else(|e| panic!("cannot run python3 to create {venv:?}: {e}"));
                    assert!(status.success(), "python3 -m venv failed: {status}");
                }
                python
            }
        };
        let imports = |p: &PathBuf| {
            std::process::Command::new(p)
                .args(["-c", "import mcp.client.streamable_http"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !imports(&python) {
            let status = std::process::Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", PYTHON_MCP])
                .status()
                .unwrap_or_else(|e| panic!("cannot run pip to install {PYTHON_MCP}: {e}"));
            assert!(
                status.success(),
                "pip install {PYTHON_MCP} failed: {status}"
            );
            assert!(
                imports(&python),
                "{python:?} cannot import the MCP SDK after pip install"
            );
        }
        python
    })
}

/// A test double for Warrant's decision engine: a policy table plus a
/// record of what the gateway reported. (The real engine is tested in the
/// server crate.)
/// The policy table: tool and arguments to a verdict.
pub type Policy = Box<dyn Fn(&str, Option<&Value>) -> Verdict + Send + Sync>;

pub struct TestWarden {
    pub policy: Mutex<Policy>,
    pub live: Mutex<bool>,
    pub issued: Mutex<Vec<(String, String)>>,
    pub launch_env: BTreeMap<String, String>,
    pub launch_headers: BTreeMap<String, String>,
    pub decisions: Mutex<Vec<(String, Option<Value>)>>,
    pub leaks: Mutex<Vec<(String, String, String, String)>>,
    pub taints: Mutex<Vec<(String, String)>>,
    /// The lease ids `launch` hands out (one per session), and what came back.
    pub launch_leases: Mutex<u32>,
    pub released: Mutex<Vec<(String, Vec<String>)>>,
}

impl TestWarden {
    pub fn new(policy: impl Fn(&str, Option<&Value>) -> Verdict + Send + Sync + 'static) -> Self {
        Self {
            policy: Mutex::new(Box::new(policy)),
            live: Mutex::new(true),
            issued: Mutex::new(Vec::new()),
            launch_env: BTreeMap::new(),
            launch_headers: BTreeMap::new(),
            decisions: Mutex::new(Vec::new()),
            leaks: Mutex::new(Vec::new()),
            taints: Mutex::new(Vec::new()),
            launch_leases: Mutex::new(0),
            released: Mutex::new(Vec::new()),
        }
    }

    pub fn set_policy(
        &self,
        policy: impl Fn(&str, Option<&Value>) -> Verdict + Send + Sync + 'static,
    ) {
        *self.policy.lock().unwrap() = Box::new(policy);
    }

    pub fn decided(&self, tool: &str) -> Vec<Option<Value>> {
        self.decisions
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == tool)
            .map(|(_, a)| a.clone())
            .collect()
    }
}

#[async_trait]
impl Warden for TestWarden {
    async fn decide_call(&self, server: &str, tool: &str, arguments: Option<&Value>) -> Verdict {
        assert_eq!(server, "everything");
        self.decisions
            .lock()
            .unwrap()
            .push((tool.to_owned(), arguments.cloned()));
        (self.policy.lock().unwrap())(tool, arguments)
    }

    async fn issued_values(&self) -> Vec<(String, SecretString)> {
        self.issued
            .lock()
            .unwrap()
            .iter()
            .map(|(id, v)| (id.clone(), SecretString::from(v.clone())))
            .collect()
    }

    async fn leaked(&self, id: &str, server: &str, tool: &str, place: &str) {
        self.leaks
            .lock()
            .unwrap()
            .push((id.into(), server.into(), tool.into(), place.into()));
    }

    async fn tainted(&self, server: &str, tool: &str) {
        self.taints
            .lock()
            .unwrap()
            .push((server.into(), tool.into()));
    }

    async fn live(&self) -> bool {
        *self.live.lock().unwrap()
    }

    async fn launch(&self, _server: &str) -> Result<Launch, LaunchError> {
        let leases = if self.launch_env.is_empty() && self.launch_headers.is_empty() {
            Vec::new()
        } else {
            let mut n = self.launch_leases.lock().unwrap();
            *n += 1;
            vec![format!("launch-lease-{n}")]
        };
        Ok(Launch {
            leases,
            env: self
                .launch_env
                .iter()
                .map(|(k, v)| (k.clone(), SecretString::from(v.clone())))
                .collect(),
            headers: self
                .launch_headers
                .iter()
                .map(|(k, v)| (k.clone(), SecretString::from(v.clone())))
                .collect(),
        })
    }

    async fn release(&self, server: &str, leases: Vec<String>) {
        self.released
            .lock()
            .unwrap()
            .push((server.to_owned(), leases));
    }
}

/// The usual policy: everything allowed but `toggle-simulated-logging`
/// (denied), `get-tiny-image` (approval) and `echo` of anything under
/// `/etc` (denied by argument).
pub fn default_policy(tool: &str, arguments: Option<&Value>) -> Verdict {
    match tool {
        "toggle-simulated-logging" => Verdict::Deny {
            reasons: vec!["no policy permits this tool".into()],
            code: "policy_denied".into(),
        },
        "get-tiny-image" => Verdict::ApprovalRequired {
            approval_id: "apr_0123".into(),
            reasons: vec!["images need a human".into()],
        },
        "echo"
            if arguments
                .and_then(|a| a["message"].as_str())
                .is_some_and(|m| m.starts_with("/etc")) =>
        {
            Verdict::Deny {
                reasons: vec!["path `/etc` is outside the task's directory".into()],
                code: "argument_denied".into(),
            }
        }
        _ => Verdict::Allow,
    }
}

/// Tokens the test auth layer accepts, each naming a run and its warden.
type Runs = Arc<Mutex<HashMap<String, Caller>>>;

/// Stands in for the server's run-token authentication: `Bearer <token>`
/// becomes a [`Caller`] in the request extensions. Unknown or missing
/// tokens pass through without one, so the gateway's own refusal is tested.
async fn authenticate(State(runs): State<Runs>, mut request: Request, next: Next) -> Response {
    let caller = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| runs.lock().unwrap().get(t).cloned());
    if let Some(caller) = caller {
        request.extensions_mut().insert(caller);
    }
    next.run(request).await
}

/// The gateway for server-everything on a loopback axum server.
pub struct TestGateway {
    pub url: String,
    pub registry: SessionRegistry,
    runs: Runs,
    server: tokio::task::JoinHandle<()>,
}

impl TestGateway {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(edit: impl FnOnce(&mut UpstreamConfig)) -> Self {
        let mut config = UpstreamConfig {
            name: "everything".into(),
            command: Some(vec![
                "node".into(),
                everything_entry().display().to_string(),
                "stdio".into(),
            ]),
            env: BTreeMap::new(),
            cwd: None,
            url: None,
            headers: BTreeMap::new(),
            taints: vec![],
            taint_open_world: false,
            timeout: Some("30s".into()),
            startup_timeout: None,
            max_message_bytes: None,
            credentials: vec![],
        };
        edit(&mut config);
        let registry = SessionRegistry::new();
        let options = ServiceOptions {
            max_request_bytes: 64 * 1024,
            ..ServiceOptions::default()
        };
        let gateway = Gateway::new(config.validate().unwrap(), registry.clone(), options);
        let runs: Runs = Arc::default();
        let app = axum::Router::new()
            .nest_service("/mcp/everything", gateway.streamable_service())
            .layer(axum::middleware::from_fn_with_state(
                runs.clone(),
                authenticate,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp/everything", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            registry,
            runs,
            server,
        }
    }

    /// Register a run; its token is the run id.
    pub fn add_run(&self, run_id: &str, warden: Arc<TestWarden>) {
        self.runs
            .lock()
            .unwrap()
            .insert(run_id.into(), Caller::new(run_id, warden));
    }

    /// The upstream pid of the run's only session.
    pub fn upstream_pid(&self, run_id: &str) -> u32 {
        let sessions = self.registry.sessions(run_id);
        assert_eq!(sessions.len(), 1, "{sessions:?}");
        sessions[0]
            .upstream_pid
            .expect("a stdio upstream has a pid")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn process_alive(pid: u32) -> bool {
    // A zombie has exited; only a running (or sleeping) process counts.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits (bounded) until the process is gone; false if it never went.
pub async fn gone(pid: u32) -> bool {
    for _ in 0..300 {
        if !process_alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// One Python SDK client process.
pub struct Agent {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Agent {
    pub async fn start(url: &str, token: Option<&str>) -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/mcp_client.py");
        let mut cmd = tokio::process::Command::new(python());
        cmd.arg(script).arg(url);
        if let Some(token) = token {
            cmd.arg(token);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the Python MCP client: {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// A connected agent for `run`.
    pub async fn connect(url: &str, run: &str) -> Self {
        let mut agent = Self::start(url, Some(run)).await;
        agent.ok(json!({"op": "connect"})).await;
        agent
    }

    /// Send a command; the raw answer (`ok`, `result` or `error`).
    pub async fn send(&mut self, command: Value) -> Value {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(120), self.stdout.next_line())
            .await
            .expect("the Python client did not answer within 120 s")
            .unwrap()
            .expect("the Python client exited");
        serde_json::from_str(&answer).unwrap()
    }

    pub async fn ok(&mut self, command: Value) -> Value {
        let answer = self.send(command.clone()).await;
        assert_eq!(answer["ok"], true, "{command} failed: {answer}");
        answer["result"].clone()
    }

    pub async fn err(&mut self, command: Value) -> Value {
        let answer = self.send(command.clone()).await;
        assert_eq!(answer["ok"], false, "{command} should fail: {answer}");
        answer["error"].clone()
    }

    pub async fn call(&mut self, name: &str, arguments: Value) -> Value {
        self.ok(json!({"op": "call_tool", "name": name, "arguments": arguments}))
            .await
    }

    pub async fn tool_names(&mut self) -> Vec<String> {
        let list = self.ok(json!({"op": "list_tools"})).await;
        list["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn exit(mut self) {
        let _ = self.send(json!({"op": "exit"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

/// The text of a tool result's first content block.
pub fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

pub fn is_error(result: &Value) -> bool {
    result["isError"] == true
}
