//! Issue 7, acceptance 5: `warrant mcp-proxy` as a stdio MCP server for the
//! official Python MCP SDK client, in front of the real gateway and the real
//! `@modelcontextprotocol/server-everything`: under `warrant exec` (through
//! the per-run socket) and attesting on its own (`--task --claim`); with
//! Warrant stopped, a call fails with an error instead of hanging; and the
//! per-run socket itself (modes, refusals, proofs the server accepts).

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::util::{BIN, LineChild, Server, mcp_python, server_everything};

/// A server whose config mounts server-everything at `/mcp/everything`,
/// user `bob` and agent `claude`.
struct Setup {
    server: Server,
    bob: String,
    dir: TempDir,
}

impl Setup {
    fn start() -> Self {
        let entry = server_everything();
        let dir = TempDir::new().unwrap();
        let config = dir.path().join("warrant.toml");
        std::fs::write(
            &config,
            format!(
                "[[mcp.servers]]\nname = \"everything\"\ncommand = [\"node\", \"{}\", \"stdio\"]\n",
                entry.display()
            ),
        )
        .unwrap();
        let server = Server::start_with_config(&dir.path().join("data"), &config, dir.path());
        let bob = server.add_user("bob", &[]);
        server.add_agent("claude", "propose");
        Self { server, bob, dir }
    }

    /// A task that may call only `everything/echo`: its id and a claim file.
    fn task(&self) -> (String, PathBuf) {
        let task = self
            .server
            .as_user(&self.bob)
            .args([
                "task",
                "create",
                "--agent",
                "claude",
                "--purpose",
                "use tools",
            ])
            .args(["--action", "mcp.call", "--tool", "everything/echo"])
            .json();
        let id = task["id"].as_str().unwrap().to_owned();
        let claim = self.dir.path().join(format!("claim-{id}"));
        std::fs::write(&claim, task["claim"].as_str().unwrap()).unwrap();
        std::fs::set_permissions(&claim, std::fs::Permissions::from_mode(0o600)).unwrap();
        (id, claim)
    }

    fn audit(&self) -> Vec<Value> {
        self.server
            .admin()
            .args(["audit", "export", "--format", "jsonl"])
            .stdout()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The Python SDK agent with `warrant mcp-proxy everything PROXY_ARGS` as
/// its stdio server, run under `warrant EXEC_ARGS` when given (e.g. `exec
/// --task ...`).
fn agent_command(server: &Server, exec_args: &[&str], proxy_args: &[&str]) -> Command {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/mcp_stdio_agent.py");
    let mut cmd = if exec_args.is_empty() {
        server.command(mcp_python())
    } else {
        let mut cmd = server.command(BIN);
        cmd.args(exec_args).arg(mcp_python());
        cmd
    };
    cmd.arg(script)
        .args([BIN, "mcp-proxy", "everything"])
        .args(proxy_args);
    cmd
}

/// `(resource id, decision)` of every audited `mcp.call` decision of a
/// tool call (with arguments) for `task`.
fn tool_call_decisions(events: &[Value], task: &str) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| {
            e["kind"] == "decision"
                && e["task_id"] == task
                && e["data"]["input"]["action"] == "mcp.call"
                && e["data"]["input"]["context"]["arguments"].is_string()
        })
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
        .collect()
}

#[test]
fn under_exec_the_python_sdk_sees_only_allowed_tools_through_the_run_socket() {
    let setup = Setup::start();
    let (task, claim) = setup.task();
    let claim = claim.to_str().unwrap();
    let mut agent = LineChild::spawn(agent_command(
        &setup.server,
        &["exec", "--task", &task, "--claim", claim, "--"],
        &[],
    ));
    let ready = agent.read();
    assert_eq!(ready["ready"], true, "{ready}");
    // The shim got its credentials from exec's socket.
    let socket = PathBuf::from(ready["socket"].as_str().expect("no WARRANT_RUN_SOCKET"));

    let listed = agent.send(&json!({"op": "list"}));
    assert_eq!(listed["tools"], json!(["echo"]), "{listed}");
    let echoed = agent.send(
        &json!({"op": "call", "name": "echo", "arguments": {"message": "hello through the shim"}}),
    );
    assert_eq!(echoed["is_error"], false, "{echoed}");
    assert!(
        echoed["text"]
            .as_str()
            .unwrap()
            .contains("hello through the shim"),
        "{echoed}"
    );
    let refused = agent.send(&json!({"op": "call", "name": "get-env", "arguments": {}}));
    assert_eq!(
        refused["is_error"], true,
        "a disallowed tool was called: {refused}"
    );
    assert!(
        refused["text"].as_str().unwrap().contains("out_of_scope"),
        "{refused}"
    );
    let closed = agent.send(&json!({"op": "exit"}));
    assert_eq!(closed["closed"], true, "{closed}");
    assert!(agent.finish().success());

    // exec removed the socket's directory when its child exited.
    assert!(
        !socket.parent().unwrap().exists(),
        "{} outlived the run",
        socket.display()
    );
    let events = setup.audit();
    let called = tool_call_decisions(&events, &task);
    assert!(
        called.contains(&("everything/echo".into(), "allow".into())),
        "{called:?}"
    );
    assert!(
        called.contains(&("everything/get-env".into(), "deny".into())),
        "{called:?}"
    );
    // One run: exec's. The shim attested nothing of its own.
    let runs: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "run.revoked" && e["task_id"] == task.as_str())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["data"]["reason"], "ended", "{}", runs[0]);
}

#[test]
fn with_a_claim_the_shim_attests_and_ends_its_run_when_stdin_closes() {
    let setup = Setup::start();
    let (task, claim) = setup.task();
    let claim = claim.to_str().unwrap();
    let mut agent = LineChild::spawn(agent_command(
        &setup.server,
        &[],
        &["--task", &task, "--claim", claim],
    ));
    let ready = agent.read();
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["socket"], Value::Null, "{ready}");
    let listed = agent.send(&json!({"op": "list"}));
    assert_eq!(listed["tools"], json!(["echo"]), "{listed}");
    let echoed =
        agent.send(&json!({"op": "call", "name": "echo", "arguments": {"message": "claimed"}}));
    assert_eq!(echoed["is_error"], false, "{echoed}");
    let closed = agent.send(&json!({"op": "exit"}));
    assert_eq!(closed["closed"], true, "{closed}");
    assert!(agent.finish().success());

    let events = setup.audit();
    assert!(
        tool_call_decisions(&events, &task).contains(&("everything/echo".into(), "allow".into()))
    );
    let ended: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "run.revoked" && e["task_id"] == task.as_str())
        .collect();
    assert_eq!(ended.len(), 1, "the shim did not end its run: {ended:?}");
    assert_eq!(ended[0]["data"]["reason"], "ended", "{}", ended[0]);

    // The claim was one-time: a second shim cannot attest with it.
    let again = setup
        .server
        .cmd()
        .args(["mcp-proxy", "everything", "--task", &task, "--claim", claim])
        .stdin("")
        .fails_with(1);
    assert!(again.contains("refused"), "{again}");
}

#[test]
fn with_warrant_stopped_a_call_fails_with_an_error_instead_of_hanging() {
    let mut setup = Setup::start();
    let (task, claim) = setup.task();
    let claim = claim.to_str().unwrap();
    let mut agent = LineChild::spawn(agent_command(
        &setup.server,
        &[],
        &["--task", &task, "--claim", claim],
    ));
    assert_eq!(agent.read()["ready"], true);
    let listed = agent.send(&json!({"op": "list"}));
    assert_eq!(listed["tools"], json!(["echo"]), "{listed}");

    assert!(setup.server.stop().success());
    // `send` gives up after a bounded wait: an answer at all means no hang.
    let failed =
        agent.send(&json!({"op": "call", "name": "echo", "arguments": {"message": "anyone?"}}));
    assert_eq!(
        failed["ok"], false,
        "a call went through with Warrant down: {failed}"
    );
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("warrant mcp-proxy: cannot reach Warrant"),
        "the error is not the shim's: {error}"
    );
    let closed = agent.send(&json!({"op": "exit"}));
    assert_eq!(closed["closed"], true, "{closed}");
    assert!(agent.finish().success());
}

/// One HTTP/1.1 exchange on a Unix socket: `(status, JSON body)`.
fn socket_exchange(socket: &Path, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut conn = UnixStream::connect(socket).unwrap();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: run\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn the_run_socket_is_private_and_signs_only_for_warrant() {
    let setup = Setup::start();
    let (task, claim) = setup.task();
    let mut cmd = setup.server.command(BIN);
    cmd.args(["exec", "--task", &task, "--claim"])
        .arg(&claim)
        .args([
            "--",
            "sh",
            "-c",
            "echo \"$WARRANT_RUN_SOCKET $WARRANT_ADDR\"; read line",
        ]);
    let mut child = LineChild::spawn(cmd);
    let line = child.read_line();
    let (socket, addr) = line.split_once(' ').unwrap();
    let socket = PathBuf::from(socket);
    assert_eq!(addr, setup.server.addr);

    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dir = std::fs::metadata(socket.parent().unwrap()).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);

    let (status, run) = socket_exchange(&socket, "GET", "/v1/run", "");
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["task_id"], task.as_str(), "{run}");
    assert_eq!(run["warrant"], setup.server.addr.as_str(), "{run}");

    // Refusals: a proof for anything but this Warrant, or a bad request.
    let port = addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    for (htm, htu, code) in [
        (
            "POST",
            "http://evil.example/mcp/everything".to_owned(),
            "foreign_url",
        ),
        (
            "POST",
            format!("http://127.0.0.1:{}/mcp/everything", port + 1),
            "foreign_url",
        ),
        ("POST", format!("{addr}/mcp/everything?x=1"), "foreign_url"),
        ("POST", format!("{addr}/mcp/../../elsewhere"), "foreign_url"),
        ("CONNECT", format!("{addr}/mcp/everything"), "bad_method"),
    ] {
        let body = json!({"htm": htm, "htu": htu}).to_string();
        let (status, problem) = socket_exchange(&socket, "POST", "/v1/proof", &body);
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some(code)),
            "{htu}: {problem}"
        );
        assert!(problem.get("authorization").is_none(), "{problem}");
    }
    let (status, problem) = socket_exchange(&socket, "POST", "/v1/proof", "{not json");
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("bad_json")),
        "{problem}"
    );

    // A good proof works against the real server, for that request.
    let body = json!({"htm": "GET", "htu": format!("{addr}/v1/runs/me")}).to_string();
    let (status, proof) = socket_exchange(&socket, "POST", "/v1/proof", &body);
    assert_eq!(status, 200, "{proof}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let me: (u16, Value) = rt.block_on(async {
        let res = reqwest::Client::new()
            .get(format!("{addr}/v1/runs/me"))
            .header("Authorization", proof["authorization"].as_str().unwrap())
            .header("DPoP", proof["dpop"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    });
    assert_eq!(me.0, 200, "{}", me.1);
    assert_eq!(me.1["run_id"], run["run_id"], "{}", me.1);

    child.write_line("done");
    assert!(child.finish().success());
    assert!(
        !socket.parent().unwrap().exists(),
        "the socket's directory outlived the run"
    );
    assert!(UnixStream::connect(&socket).is_err());
}
