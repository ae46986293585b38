//! Issue 7 through the real server: the official Python MCP SDK client,
//! authenticated with its run token and DPoP, reaches real MCP servers
//! (`@modelcontextprotocol/server-everything`, `server-filesystem`) through
//! `/mcp/{server}`: only allowed tools are listed, a disallowed one is
//! refused when called anyway, a Cedar policy decides on a tool's
//! arguments, approval-required calls name their approval, upstream
//! credentials are leased per session and never reach the agent, every call
//! is an audited decision, and ending the task closes the session.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

use crate::decisions::{add_agent, add_user};
use crate::support::{Server, options, private_tempdir};

/// The entry point of a pinned npm MCP server, installed into the shared
/// npm cache when missing (scripts/test.sh installs them up front).
fn npm_server(package: &str, version: &str) -> PathBuf {
    let cache = std::env::var_os("WARRANT_NPM_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/warrant-npm"),
        PathBuf::from,
    );
    let entry = cache
        .join("node_modules")
        .join(package)
        .join("dist/index.js");
    if !entry.exists() {
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&cache)
            .arg(format!("{package}@{version}"))
            .status()
            .expect("npm is needed to install the MCP servers");
        assert!(status.success(), "npm install of {package} failed");
    }
    entry
}

fn server_everything() -> PathBuf {
    npm_server("@modelcontextprotocol/server-everything", "2026.8.31")
}

fn server_filesystem() -> PathBuf {
    npm_server("@modelcontextprotocol/server-filesystem", "2026.8.31")
}

/// The config declaring server-everything (at `entry`) as `everything`.
fn everything_config(entry: &std::path::Path) -> String {
    format!(
        "[[mcp.servers]]\nname = \"everything\"\ncommand = [\"node\", \"{}\", \"stdio\"]\n",
        entry.display()
    )
}

/// A server in `root` with `config` as its config file.
async fn serve(root: &tempfile::TempDir, config: &str) -> Server {
    let file = root.path().join("warrant.toml");
    std::fs::write(&file, config).unwrap();
    let mut opts = options(&root.path().join("data"));
    opts.config_file = Some(file);
    Server::start_with(opts).await.unwrap()
}

struct Agent {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Agent {
    fn start(base: &str, server: &str, claim: &str) -> Self {
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
            .args([base, server, claim])
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

    /// Starts an agent off the test's runtime thread (it blocks on pipes).
    async fn spawn(base: &str, server: &str, claim: &str) -> Self {
        let (base, server, claim) = (base.to_owned(), server.to_owned(), claim.to_owned());
        tokio::task::spawn_blocking(move || Self::start(&base, &server, &claim))
            .await
            .unwrap()
    }

    /// One command, answered off the runtime thread.
    async fn ask(self, cmd: Value) -> (Self, Value) {
        tokio::task::spawn_blocking(move || {
            let mut agent = self;
            let answer = agent.send(cmd);
            (agent, answer)
        })
        .await
        .unwrap()
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
    let server = serve(&root, &everything_config(&entry)).await;
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
    let task_id = task["id"].as_str().unwrap().to_owned();
    let agent = Agent::spawn(&server.base, "everything", task["claim"].as_str().unwrap()).await;
    let (agent, listed) = agent.ask(json!({"op": "list"})).await;
    assert_eq!(listed["tools"], json!(["echo"]), "{listed}");
    let (agent, echoed) = agent
        .ask(json!({"op": "call", "name": "echo", "arguments": {"message": "hello gateway"}}))
        .await;
    let (agent, refused) = agent
        .ask(json!({"op": "call", "name": "get-env", "arguments": {}}))
        .await;
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
    let (_agent, after) = agent
        .ask(json!({"op": "call", "name": "echo", "arguments": {"message": "still there?"}}))
        .await;
    assert!(
        after["ok"] == false || after["is_error"] == true,
        "a call after the task ended went through: {after}"
    );
    server.stop().await.unwrap();
}

impl Agent {
    /// Closes the MCP session (the SDK deletes it) and waits for the agent
    /// to exit.
    async fn exit(self) {
        let (mut agent, answer) = self.ask(json!({"op": "exit"})).await;
        assert_eq!(answer["ok"], true, "{answer}");
        tokio::task::spawn_blocking(move || agent.child.wait().unwrap())
            .await
            .unwrap();
    }
}

async fn mcp_decisions(server: &Server, tool: &str) -> Vec<Value> {
    server
        .audit_events()
        .await
        .into_iter()
        .filter(|e| {
            e["kind"] == "decision"
                && e["data"]["input"]["resource"]["id"] == tool
                && e["data"]["input"]["context"]["arguments"].is_string()
        })
        .collect()
}

/// Acceptance 2 and 6: a Cedar policy decides on a tool's arguments (a path
/// outside the task's directory, also when reached through `..`), the same
/// tool with an allowed argument works, an approval-required tool names its
/// approval and works once a human approved that exact call, and every call
/// is a decision event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argument_policies_and_approvals_decide_filesystem_tool_calls() {
    let entry = server_filesystem();
    let root = private_tempdir();
    let files = root.path().join("files");
    std::fs::create_dir_all(files.join("task")).unwrap();
    std::fs::create_dir_all(files.join("other")).unwrap();
    std::fs::write(files.join("task/notes.txt"), "task notes").unwrap();
    std::fs::write(files.join("other/secret.txt"), "not for this task").unwrap();
    let files = files.canonicalize().unwrap();
    let task_dir = files.join("task");
    let policies = crate::decisions::policy_dir(
        root.path(),
        &[(
            "mcp-files.cedar",
            &format!(
                r#"@id("test.files-in-task-dir")
@reason("this task may only touch files under {task}")
forbid (principal, action == Action::"mcp.call", resource)
when {{ resource in [Tool::"files/read_text_file", Tool::"files/write_file"] && context has arguments }}
unless {{ context has path && context.path like "{task}/*" }};

@id("test.files-write-approval")
@approval("required")
@reason("writing a file needs a human")
permit (principal is Run, action == Action::"mcp.call", resource == Tool::"files/write_file");
"#,
                task = task_dir.display()
            ),
        )],
    );
    let server = serve(
        &root,
        &format!(
            "[policy]\ndir = \"{}\"\n\n[[mcp.servers]]\nname = \"files\"\ncommand = [\"node\", \"{}\", \"{}\"]\n",
            policies.display(),
            entry.display(),
            files.display()
        ),
    )
    .await;
    let bob = add_user(&server, "bob", &[]).await;
    let alice = add_user(&server, "alice", &["approvers"]).await;
    add_agent(&server, "claude", "propose").await;
    let task = server
        .post(
            &bob,
            "/v1/tasks",
            json!({"agent": "claude", "purpose": "edit notes", "ttl": "30m",
                   "scope": {"actions": ["mcp.call"],
                             "tools": ["files/read_text_file", "files/write_file"]}}),
        )
        .await
        .assert_ok(201)
        .clone();
    let agent = Agent::spawn(&server.base, "files", task["claim"].as_str().unwrap()).await;

    let (agent, listed) = agent.ask(json!({"op": "list"})).await;
    assert_eq!(
        listed["tools"],
        json!(["read_text_file", "write_file"]),
        "{listed}"
    );

    // Inside the task's directory: allowed, and the real server answers.
    let inside = task_dir.join("notes.txt").display().to_string();
    let (agent, read) = agent
        .ask(json!({"op": "call", "name": "read_text_file", "arguments": {"path": inside}}))
        .await;
    assert_eq!(read["is_error"], false, "{read}");
    assert!(
        read["text"].as_str().unwrap().contains("task notes"),
        "{read}"
    );

    // Outside it, directly or through `..`: refused with the policy's
    // reason, and the file's content never comes back.
    let outside = files.join("other/secret.txt").display().to_string();
    let sneaky = format!("{}/../other/secret.txt", task_dir.display());
    let mut agent = agent;
    for path in [&outside, &sneaky] {
        let (a, refused) = agent
            .ask(json!({"op": "call", "name": "read_text_file", "arguments": {"path": path}}))
            .await;
        agent = a;
        assert_eq!(refused["is_error"], true, "{refused}");
        let text = refused["text"].as_str().unwrap();
        assert!(text.contains("denied by Warrant"), "{text}");
        assert!(text.contains("may only touch files under"), "{text}");
        assert!(!text.contains("not for this task"), "{text}");
    }
    let reads = mcp_decisions(&server, "files/read_text_file").await;
    let outcomes: Vec<&str> = reads
        .iter()
        .map(|d| d["data"]["outcome"]["decision"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["allow", "deny", "deny"], "{reads:?}");
    assert!(
        reads[1]["data"]["outcome"]["policies"]
            .to_string()
            .contains("test.files-in-task-dir"),
        "{}",
        reads[1]["data"]["outcome"]
    );

    // A write needs an approval: the tool error names it, nothing written.
    let target = task_dir.join("plan.txt");
    let write = json!({"op": "call", "name": "write_file",
                       "arguments": {"path": target.display().to_string(), "content": "the plan"}});
    let (agent, pending) = agent.ask(write.clone()).await;
    assert_eq!(pending["is_error"], true, "{pending}");
    let text = pending["text"].as_str().unwrap().to_owned();
    assert!(text.contains("approval required by Warrant"), "{text}");
    assert!(!target.exists(), "a write went through before approval");
    let approvals = server.get(&alice, "/v1/approvals?state=pending").await;
    let approval = approvals.assert_ok(200)["approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains(&approval), "{text} does not name {approval}");
    server
        .post(
            &alice,
            &format!("/v1/approvals/{approval}/approve"),
            json!({"reason": "plan reviewed"}),
        )
        .await
        .assert_ok(200);

    // The approved call, asked again, goes through.
    let (agent, written) = agent.ask(write).await;
    assert_eq!(written["is_error"], false, "{written}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "the plan");
    let writes = mcp_decisions(&server, "files/write_file").await;
    let outcomes: Vec<&str> = writes
        .iter()
        .map(|d| d["data"]["outcome"]["decision"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["approval_required", "allow"], "{writes:?}");

    agent.exit().await;
    server.stop().await.unwrap();
}

const API_KEY: &str = "evk_5f1c9a2e7b3d4c8e9f0a1b2c3d4e5f60-upstream-only";

/// Acceptance 3: the upstream's credential is leased for the session from
/// a sealed `kv` secret and handed to the upstream only; a tool result that
/// echoes it comes back redacted, the leak is recorded and the lease is
/// revoked; closing the session revokes the session's lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_credentials_are_leased_per_session_and_never_reach_the_agent() {
    use std::os::unix::fs::PermissionsExt as _;
    let entry = server_everything();
    let root = private_tempdir();
    let keys = root.path().join("kv.keys");
    std::fs::write(&keys, format!("k1 {}\n", "cd".repeat(32))).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = serve(
        &root,
        &format!(
            r#"
[[engines]]
name = "vault"
type = "kv"
master_key_file = "{keys}"
[[engines.roles]]
name = "everything"
max_ttl = "10m"
secrets = ["everything-api-key"]

[[mcp.servers]]
name = "everything"
command = ["node", "{entry}", "stdio"]
[[mcp.servers.credentials]]
env = "EVERYTHING_API_KEY"
engine = "vault"
role = "everything"
params = {{ secret = "everything-api-key" }}
"#,
            keys = keys.display(),
            entry = entry.display()
        ),
    )
    .await;
    server
        .send(
            reqwest::Method::PUT,
            "/v1/engines/vault/secrets/everything-api-key",
            Some(&server.admin),
            Some("application/json"),
            Some(json!({"value": API_KEY}).to_string().into_bytes()),
        )
        .await
        .assert_ok(200);
    let bob = add_user(&server, "bob", &[]).await;
    add_agent(&server, "claude", "propose").await;
    // The task grants tools, not the secret: the agent itself could not
    // lease it (a propose agent gets no secrets in the default pack).
    let task = server
        .post(
            &bob,
            "/v1/tasks",
            json!({"agent": "claude", "purpose": "use tools", "ttl": "30m",
                   "scope": {"actions": ["mcp.call"],
                             "tools": ["everything/echo", "everything/get-env"]}}),
        )
        .await
        .assert_ok(201)
        .clone();
    let task_id = task["id"].as_str().unwrap().to_owned();
    let agent = Agent::spawn(&server.base, "everything", task["claim"].as_str().unwrap()).await;

    let leases = server
        .get(&server.admin, &format!("/v1/leases?task={task_id}"))
        .await
        .assert_ok(200)["leases"]
        .clone();
    assert_eq!(leases.as_array().unwrap().len(), 1, "{leases}");
    assert_eq!(leases[0]["state"], "active", "{leases}");
    assert_eq!(leases[0]["role"], "everything");
    let lease_id = leases[0]["id"].as_str().unwrap().to_owned();

    // The upstream has it (`get-env` shows the variable), the agent sees
    // only the redaction marker.
    let (agent, env) = agent
        .ask(json!({"op": "call", "name": "get-env", "arguments": {}}))
        .await;
    assert_eq!(env["is_error"], false, "{env}");
    let raw = env.to_string();
    assert!(
        !raw.contains(API_KEY),
        "the credential reached the agent: {raw}"
    );
    let upstream_env: Value = serde_json::from_str(env["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        upstream_env["EVERYTHING_API_KEY"], "[REDACTED by Warrant]",
        "{upstream_env}"
    );

    // The leak is recorded and the leaked lease revoked.
    let events = server.audit_events().await;
    let leak = events
        .iter()
        .find(|e| e["kind"] == "mcp.leak")
        .expect("an mcp.leak event");
    assert_eq!(leak["data"]["lease_id"], lease_id.as_str(), "{leak}");
    assert_eq!(leak["data"]["tool"], "get-env", "{leak}");
    assert!(!serde_json::to_string(&events).unwrap().contains(API_KEY));
    let lease = server
        .get(&server.admin, &format!("/v1/leases/{lease_id}"))
        .await
        .assert_ok(200)
        .clone();
    assert_eq!(lease["state"], "revoked", "{lease}");
    assert_eq!(lease["revoke_reason"], "leaked", "{lease}");
    let requested = events
        .iter()
        .find(|e| e["kind"] == "lease.requested")
        .unwrap();
    assert_eq!(requested["data"]["for"], "mcp:everything", "{requested}");

    agent.exit().await;

    // Another run's session gets its own lease, revoked when the session
    // closes.
    let task = server
        .post(
            &bob,
            "/v1/tasks",
            json!({"agent": "claude", "purpose": "echo only", "ttl": "30m",
                   "scope": {"actions": ["mcp.call"], "tools": ["everything/echo"]}}),
        )
        .await
        .assert_ok(201)
        .clone();
    let second_task = task["id"].as_str().unwrap().to_owned();
    let agent = Agent::spawn(&server.base, "everything", task["claim"].as_str().unwrap()).await;
    let (agent, echoed) = agent
        .ask(json!({"op": "call", "name": "echo", "arguments": {"message": "hi"}}))
        .await;
    assert_eq!(echoed["is_error"], false, "{echoed}");
    let leases = server
        .get(&server.admin, &format!("/v1/leases?task={second_task}"))
        .await
        .assert_ok(200)["leases"]
        .clone();
    assert_eq!(leases[0]["state"], "active", "{leases}");
    let lease_id = leases[0]["id"].as_str().unwrap().to_owned();
    agent.exit().await;
    let mut state = Value::Null;
    for _ in 0..100 {
        let lease = server
            .get(&server.admin, &format!("/v1/leases/{lease_id}"))
            .await
            .assert_ok(200)
            .clone();
        state = lease["state"].clone();
        if state == "revoked" {
            assert_eq!(lease["revoke_reason"], "session_closed", "{lease}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        state, "revoked",
        "the closed session's lease is still {state}"
    );
    server.stop().await.unwrap();
}

/// A run whose task grants no tool of a server opens no session there: no
/// upstream starts and no credential is leased for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_tools_of_the_server_opens_no_session() {
    let entry = server_everything();
    let root = private_tempdir();
    let server = serve(&root, &everything_config(&entry)).await;
    let bob = add_user(&server, "bob", &[]).await;
    add_agent(&server, "claude", "propose").await;
    let task = server
        .post(
            &bob,
            "/v1/tasks",
            json!({"agent": "claude", "purpose": "read code", "ttl": "30m",
                   "scope": {"actions": ["repo.read"], "repos": ["acme/api"]}}),
        )
        .await
        .assert_ok(201)
        .clone();
    let (base, claim) = (
        server.base.clone(),
        task["claim"].as_str().unwrap().to_owned(),
    );
    let (ready, stderr) = tokio::task::spawn_blocking(move || {
        let python = crate::tokens::pyjwt_python();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/mcp_agent.py");
        let out = Command::new(python)
            .arg(script)
            .args([&base, "everything", &claim])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap();
    assert!(!ready.contains("\"ready\""), "a session opened: {ready}");
    assert!(
        stderr.contains("grants no tool of `everything`"),
        "{stderr}"
    );
    server.stop().await.unwrap();
}

/// `GET /v1/mcp/servers` lists the servers of which the run's scope names a
/// tool, with their gateway URLs; other servers and runs without `mcp.call`
/// see none.
#[tokio::test]
async fn a_run_lists_the_mcp_servers_it_can_use() {
    let root = private_tempdir();
    let server = serve(
        &root,
        "[[mcp.servers]]\nname = \"everything\"\ncommand = [\"node\", \"x.js\"]\n\n\
         [[mcp.servers]]\nname = \"files\"\ncommand = [\"node\", \"y.js\"]\n",
    )
    .await;
    let bob = add_user(&server, "bob", &[]).await;
    add_agent(&server, "claude", "propose").await;
    let run = crate::decisions::run_for(
        &server,
        &bob,
        "claude",
        json!({"actions": ["mcp.call"], "tools": ["everything/echo", "everything/add"]}),
    )
    .await;
    let listed = run.get(&server, "/v1/mcp/servers").await;
    assert_eq!(
        listed.assert_ok(200)["servers"],
        json!([{"name": "everything", "url": format!("{}/mcp/everything", server.base),
                "tools": ["echo", "add"]}])
    );
    let reader = crate::decisions::run_for(
        &server,
        &bob,
        "claude",
        json!({"actions": ["repo.read"], "repos": ["acme/api"], "tools": ["files/read_text_file"]}),
    )
    .await;
    let listed = reader.get(&server, "/v1/mcp/servers").await;
    assert_eq!(listed.assert_ok(200)["servers"], json!([]));
    // Not for humans: the endpoint needs a run token.
    let r = server.get(&bob, "/v1/mcp/servers").await;
    assert_eq!(r.status, 401, "{}", r.text);
    server.stop().await.unwrap();
}
