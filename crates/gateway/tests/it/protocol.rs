//! Bad input at the HTTP and JSON-RPC level, with a raw HTTP client: clear
//! errors, nothing forwarded.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::harness::{TestGateway, TestWarden, default_policy};

const ACCEPT: &str = "application/json, text/event-stream";

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}
    }})
}

struct Raw {
    http: reqwest::Client,
    url: String,
}

impl Raw {
    fn new(gw: &TestGateway) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: gw.url.clone(),
        }
    }

    async fn post(
        &self,
        token: &str,
        session: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(&self.url)
            .header("accept", ACCEPT)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(body);
        if let Some(session) = session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-06-18");
        }
        request.send().await.unwrap()
    }

    /// The first JSON-RPC message of an SSE (or JSON) answer.
    async fn message(response: reqwest::Response) -> Value {
        let body = response.text().await.unwrap();
        if let Ok(v) = serde_json::from_str(&body) {
            return v;
        }
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .find(|d| d.starts_with('{'))
            .map(|d| serde_json::from_str(d).unwrap())
            .unwrap_or_else(|| panic!("no JSON-RPC message in {body:?}"))
    }

    /// Initialize a session for `token`: its id.
    async fn open(&self, token: &str) -> String {
        let response = self.post(token, None, initialize().to_string()).await;
        assert_eq!(response.status(), 200);
        let session = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let init = Self::message(response).await;
        assert!(
            init["result"]["capabilities"]["tools"].is_object(),
            "{init}"
        );
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let response = self.post(token, Some(&session), note.to_string()).await;
        assert_eq!(response.status(), 202);
        session
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_are_refused_before_any_session() {
    let gw = TestGateway::start().await;
    gw.add_run("run-a", Arc::new(TestWarden::new(default_policy)));
    let raw = Raw::new(&gw);

    let response = raw.post("run-a", None, "{not json").await;
    assert!(response.status().is_client_error(), "{}", response.status());

    // Over the 64 KiB limit the test gateway is configured with.
    let mut big = initialize();
    big["params"]["clientInfo"]["name"] = json!("x".repeat(100 * 1024));
    let response = raw.post("run-a", None, big.to_string()).await;
    assert_eq!(response.status(), 413);

    // A non-initialize request without a session.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let response = raw.post("run-a", None, list.to_string()).await;
    assert!(response.status().is_client_error(), "{}", response.status());

    assert!(gw.registry.sessions("run-a").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_get_method_not_found() {
    let gw = TestGateway::start().await;
    gw.add_run("run-a", Arc::new(TestWarden::new(default_policy)));
    let raw = Raw::new(&gw);
    let session = raw.open("run-a").await;
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/teleport", "params": {}});
    let answer = Raw::message(raw.post("run-a", Some(&session), call.to_string()).await).await;
    assert_eq!(answer["error"]["code"], -32601, "{answer}");
}

/// A session id is not a credential: another run presenting it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_bound_to_the_run_that_opened_it() {
    let gw = TestGateway::start().await;
    let warden_b = Arc::new(TestWarden::new(default_policy));
    gw.add_run("run-a", Arc::new(TestWarden::new(default_policy)));
    gw.add_run("run-b", warden_b.clone());
    let raw = Raw::new(&gw);
    let session = raw.open("run-a").await;

    let call = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "hijack"}}});
    let answer = Raw::message(raw.post("run-b", Some(&session), call.to_string()).await).await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("belongs to another run"),
        "{answer}"
    );
    assert!(warden_b.decisions.lock().unwrap().is_empty());

    let answer = Raw::message(raw.post("run-a", Some(&session), call.to_string()).await).await;
    assert_eq!(
        answer["result"]["content"][0]["text"], "Echo: hijack",
        "{answer}"
    );
}
