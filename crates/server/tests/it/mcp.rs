//! Issue 7 through the real server: the official Python MCP SDK client,
//! authenticated with its run token and DPoP, reaches the real
//! `@modelcontextprotocol/server-everything` through `/mcp/everything`:
//! only allowed tools are listed, a disallowed one is refused when called
//! anyway, every call is an audited decision, and ending the task closes
//! the session.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

use crate::decisions::{add_agent, add_user};
use crate::support::{Server, options, private_tempdir};

fn server_everything() -> PathBuf {
    let cache = std::env::var_os("WARRANT_NPM_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/warrant-npm"),
        PathBuf::from,
    );
    let entry = cache.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if !entry.exists() {
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&cache)
            .arg("@modelcontextprotocol/server-everything@2026.8.31")
            .status()
            .expect("npm is needed to install server-everything");
        assert!(status.success(), "npm install of server-everything failed");
    }
    entry
}

struct Agent {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Agent {
    fn start(base: &str, claim: &str) -> Self {
        let python = crate::tokens::pyjwt_python();
        let ok = Command::new(&python)
            .args(["-c", "import mcp.client.streamable_http"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let pip = python.with_file_name("pip");
            let status = Command::new(pip)
                .args(["install", "--quiet", "mcp==2.3.0"])
                .status()
                .unwrap();
            assert!(status.success(), "cannot install the Python MCP SDK");
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/mcp_agent.py");
        let mut child = Command::new(python)
            .arg(script)
            .args([base, "everything", claim])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let ready = read(&mut stdout);
        assert_eq!(ready["ready"], true, "{ready}");
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, cmd: Value) -> Value {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        read(&mut self.stdout)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(stdout: &mut BufReader<ChildStdout>) -> Value {
    let mut line = String::new();
    assert!(stdout.read_line(&mut line).unwrap() > 0, "the agent exited");
    serde_json::from_str(&line).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_sees_only_allowed_tools_and_loses_its_session_with_the_task() {
    let entry = server_everything();
    let root = private_tempdir();
    let config = root.path().join("warrant.toml");
    std::fs::write(
        &config,
        format!(
            "[[mcp.servers]]\nname = \"everything\"\ncommand = [\"node\", \"{}\", \"stdio\"]\n",
            entry.display()
        ),
    )
    .unwrap();
    let mut opts = options(&root.path().join("data"));
    opts.config_file = Some(config);
    let server = Server::start_with(opts).await.unwrap();
    let bob = add_user(&server, "bob", &[]).await;
    add_agent(&server, "claude", "propose").await;
    let task = server
        .post(
            &bob,
            "/v1/tasks",
            json!({"agent": "claude", "purpose": "use tools", "ttl": "30m",
                   "scope": {"actions": ["mcp.call"], "tools": ["everything/echo"]}}),
        )
        .await
        .assert_ok(201)
        .clone();
    let base = server.base.clone();
    let claim = task["claim"].as_str().unwrap().to_owned();
    let task_id = task["id"].as_str().unwrap().to_owned();

    let mut agent = tokio::task::spawn_blocking(move || Agent::start(&base, &claim))
        .await
        .unwrap();
    let (agent_back, listed) = tokio::task::spawn_blocking(move || {
        let r = agent.send(json!({"op": "list"}));
        (agent, r)
    })
    .await
    .unwrap();
    agent = agent_back;
    assert_eq!(listed["tools"], json!(["echo"]), "{listed}");

    let (agent_back, echoed, refused) = tokio::task::spawn_blocking(move || {
        let e = agent
            .send(json!({"op": "call", "name": "echo", "arguments": {"message": "hello gateway"}}));
        let r = agent.send(json!({"op": "call", "name": "get-env", "arguments": {}}));
        (agent, e, r)
    })
    .await
    .unwrap();
    agent = agent_back;
    assert_eq!(echoed["is_error"], false, "{echoed}");
    assert!(
        echoed["text"].as_str().unwrap().contains("hello gateway"),
        "{echoed}"
    );
    assert!(
        refused["ok"] == false || refused["is_error"] == true,
        "a disallowed tool was called: {refused}"
    );

    // Every call was a decision in the audit log.
    let decisions: Vec<Value> = server
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e["kind"] == "decision" && e["data"]["input"]["action"] == "mcp.call")
        .collect();
    let called: Vec<(String, String)> = decisions
        .iter()
        .filter(|d| d["data"]["input"]["context"]["arguments"].is_string())
        .map(|d| {
            (
                d["data"]["input"]["resource"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                d["data"]["outcome"]["decision"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert!(
        called.contains(&("everything/echo".into(), "allow".into())),
        "{called:?}"
    );
    assert!(
        called.contains(&("everything/get-env".into(), "deny".into())),
        "{called:?}"
    );

    // The task ends: the next call fails.
    server
        .post(&bob, &format!("/v1/tasks/{task_id}/end"), json!({}))
        .await
        .assert_ok(200);
    let after = tokio::task::spawn_blocking(move || {
        agent.send(json!({"op": "call", "name": "echo", "arguments": {"message": "still there?"}}))
    })
    .await
    .unwrap();
    assert!(
        after["ok"] == false || after["is_error"] == true,
        "a call after the task ended went through: {after}"
    );
    server.stop().await.unwrap();
}
