//! Starts the real server in-process and talks to it over HTTP.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warrant_core::{Clock, TtlBounds};
use warrant_server::{AppState, Ready, ServeOptions, ServerError, bootstrap, router};
use warrant_store::Store;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An HTTP response, body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
    pub text: String,
}

impl Resp {
    /// Asserts a problem+json response with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "status; body: {}", self.text);
        assert_eq!(
            self.content_type, PROBLEM_JSON,
            "content type; body: {}",
            self.text
        );
        assert_eq!(self.body["code"], code, "code; body: {}", self.text);
        assert_eq!(
            self.body["status"], status,
            "status field; body: {}",
            self.text
        );
        assert_eq!(
            self.body["type"],
            format!("https://warrant.dev/problems/{code}"),
            "type; body: {}",
            self.text
        );
        assert!(self.body["title"].is_string(), "title; body: {}", self.text);
        assert!(
            self.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "detail; body: {}",
            self.text
        );
    }

    #[track_caller]
    pub fn assert_ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "status; body: {}", self.text);
        assert!(
            self.content_type.starts_with("application/json"),
            "content type {}; body: {}",
            self.content_type,
            self.text
        );
        &self.body
    }

    pub fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or_default()
    }
}

/// A client for one server, holding the admin token.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    pub admin: String,
    pub http: reqwest::Client,
}

/// Everything the API lets an admin see, to show that a refused request
/// changed nothing.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub audit_head: Option<(u64, String)>,
    pub users: Value,
    pub agents: Value,
    pub tasks: Value,
}

impl Api {
    pub fn new(addr: SocketAddr, admin: String) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Self {
            base: format!("http://{addr}"),
            admin,
            http,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let res = req.send().await.unwrap();
        into_resp(res).await
    }

    pub async fn get(&self, token: &str, path: &str) -> Resp {
        self.send(Method::GET, path, Some(token), None, None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> Resp {
        self.send(
            Method::POST,
            path,
            Some(token),
            Some("application/json"),
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    /// A body sent exactly as given.
    pub async fn post_raw(
        &self,
        token: &str,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> Resp {
        self.send(
            Method::POST,
            path,
            Some(token),
            content_type,
            Some(body.as_bytes().to_vec()),
        )
        .await
    }

    /// Creates a user and returns its token.
    pub async fn add_user(&self, name: &str, admin: bool) -> String {
        let r = self
            .post(
                &self.admin,
                "/v1/users",
                json!({ "name": name, "admin": admin }),
            )
            .await;
        r.assert_ok(201)["token"].as_str().unwrap().to_owned()
    }

    pub async fn add_agent(&self, name: &str) {
        self.post(
            &self.admin,
            "/v1/agents",
            json!({ "name": name, "tier": "propose" }),
        )
        .await
        .assert_ok(201);
    }

    /// Creates a task as `token`'s user and returns it.
    pub async fn add_task(&self, token: &str, agent: &str, ttl: &str) -> Value {
        self.post(
            token,
            "/v1/tasks",
            json!({
                "agent": agent,
                "purpose": "fix the flaky test",
                "ttl": ttl,
                "scope": { "repos": ["acme/api", "acme/web"], "actions": ["repo.read", "repo.push"] },
            }),
        )
        .await
        .assert_ok(201)
        .clone()
    }

    /// Every audit event, paging through `/v1/audit`.
    pub async fn audit_events(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let r = self
                .get(&self.admin, &format!("/v1/audit?after={after}&limit=1000"))
                .await;
            let page = r.assert_ok(200);
            let events = page["events"].as_array().unwrap().clone();
            if events.is_empty() {
                assert!(page["next_after"].is_null());
                return all;
            }
            after = page["next_after"].as_u64().unwrap();
            all.extend(events);
        }
    }

    pub async fn snapshot(&self) -> Snapshot {
        let events = self.audit_events().await;
        let audit_head = events.last().map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["hash"].as_str().unwrap().to_owned(),
            )
        });
        Snapshot {
            audit_head,
            users: self
                .get(&self.admin, "/v1/users")
                .await
                .assert_ok(200)
                .clone(),
            agents: self
                .get(&self.admin, "/v1/agents")
                .await
                .assert_ok(200)
                .clone(),
            tasks: self
                .get(&self.admin, "/v1/tasks")
                .await
                .assert_ok(200)
                .clone(),
        }
    }
}

pub async fn into_resp(res: reqwest::Response) -> Resp {
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        content_type,
        body,
        text,
    }
}

/// `warrant serve` running in this process on 127.0.0.1:0.
pub struct Server {
    pub api: Api,
    pub ready: Ready,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), ServerError>>,
    /// Keeps the temp dir alive for the server's lifetime.
    _dir: Option<TempDir>,
}

impl Deref for Server {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

/// A temp dir only its owner may enter, as `serve` requires of an existing
/// data directory (`tempfile` creates them 0755 under the usual umask).
pub fn private_tempdir() -> TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// The options a test server uses for `data_dir`.
pub fn options(data_dir: &Path) -> ServeOptions {
    ServeOptions {
        data_dir: Some(data_dir.to_owned()),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        store_url: None,
        config_file: None,
    }
}

impl Server {
    /// A fresh server in a new temp dir.
    pub async fn start() -> Server {
        let dir = private_tempdir();
        let mut server = Server::start_with(options(dir.path())).await.unwrap();
        server._dir = Some(dir);
        server
    }

    /// Starts `serve(opts)`; the error if it fails before it is ready.
    pub async fn start_with(opts: ServeOptions) -> Result<Server, ServerError> {
        let data_dir = opts.data_dir.clone().unwrap();
        let (shutdown, stop) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel::<Ready>();
        let handle = tokio::spawn(warrant_server::serve(
            opts,
            async move {
                let _ = stop.await;
            },
            move |ready| {
                let _ = ready_tx.send(ready.clone());
            },
        ));
        // `serve` drops `on_ready` (and the sender) when it fails first.
        let Ok(ready) = ready_rx.await else {
            return Err(handle
                .await
                .unwrap()
                .expect_err("serve returned before it was ready"));
        };
        let token = std::fs::read_to_string(data_dir.join("admin.token")).unwrap();
        Ok(Server {
            api: Api::new(ready.addr, token.trim_end().to_owned()),
            ready,
            shutdown: Some(shutdown),
            handle,
            _dir: None,
        })
    }

    /// Graceful shutdown; returns what `serve` returned.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        (&mut self.handle).await.unwrap()
    }
}

/// The router served with a state the test built, so the test chooses the
/// clock and holds the store.
pub struct TestApp {
    pub api: Api,
    pub state: AppState,
    pub store: Arc<dyn Store>,
    pub dir: TempDir,
    pub key: Arc<warrant_crypto::SigningKey>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
}

impl Deref for TestApp {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl TestApp {
    pub async fn start(clock: Arc<dyn Clock>) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        let boot = bootstrap::run(&*store, &*clock, dir.path(), &[])
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut issuer = warrant_server::Issuer::new(
            boot.key.clone(),
            &format!("http://{addr}"),
            warrant_token::TrustDomain::parse("warrant.local").unwrap(),
        );
        issuer.keys_dir = Some(dir.path().join(bootstrap::KEYS_DIR));
        let state = AppState::new(store.clone(), clock, TtlBounds::default(), Arc::new(issuer));
        let (shutdown, stop) = oneshot::channel::<()>();
        let app = router(state.clone());
        let handle = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.await;
                })
                .await
                .unwrap();
        });
        let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
        TestApp {
            api: Api::new(addr, token.trim_end().to_owned()),
            state,
            store,
            dir,
            key: boot.key,
            shutdown: Some(shutdown),
            handle,
        }
    }

    pub async fn stop(mut self) -> TempDir {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        (&mut self.handle).await.unwrap();
        self.store.close().await;
        self.dir
    }
}

/// Opens the SQLite store in `dir` the way `serve` does by default.
pub async fn open_store(dir: &Path) -> Arc<dyn Store> {
    warrant_store::open(&format!("sqlite://{}", dir.join("warrant.db").display()))
        .await
        .unwrap()
}

/// Polls `check` until it returns `Some`, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
