//! Issue 8, acceptance 1: `warrant run --task ID -- sh -c '...'` gives the
//! child working hooks (the Claude Code hook command `warrant run` wrote),
//! the MCP gateway (the MCP config it wrote, driven by the official Python
//! SDK's stdio client) and git credentials (git's own `credential fill`
//! through the configured helper, accepted by forward auth); once the
//! child exits, the run is ended, its lease revoked, and the git credential
//! it got is refused.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::util::{BIN, Server, mcp_python, server_everything};

const NPM_TOKEN: &str = "npm_run_5e4d3c2b1a09f8e7d6c5b4a3-wired-into-the-agent";

/// What the child does: copy what `warrant run` gave it to `$OUT`, use each
/// door once, then wait for the test to let it exit.
const SCRIPT: &str = r#"
set -eu
test -S "$WARRANT_RUN_SOCKET"
cp "$WARRANT_CLAUDE_SETTINGS" "$OUT/claude.json"
cp "$WARRANT_MCP_CONFIG" "$OUT/mcp.json"
printf '%s\n' "$NPM_TOKEN" > "$OUT/lease.txt"
printf '%s\n' "${WARRANT_GATEWAY_SERVERS:-}" > "$OUT/gateway.txt"
# The hook, exactly as Claude Code would run it from the settings file.
hook=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["hooks"]["PreToolUse"][0]["hooks"][0]["command"])' "$WARRANT_CLAUDE_SETTINGS")
printf '%s' "$HOOK_ALLOW" | sh -c "$hook" > "$OUT/hook-allow.json" || echo "exit $?" >> "$OUT/hook-allow.json"
printf '%s' "$HOOK_DENY" | sh -c "$hook" > "$OUT/hook-deny.json" 2>/dev/null || echo "exit $?" > "$OUT/hook-deny.exit"
# The MCP server, exactly as the MCP config names it.
cmd=$("$PY" -c 'import json,sys; s=json.load(open(sys.argv[1]))["mcpServers"]["everything"]; print(s["command"]); print(" ".join(s["args"]))' "$WARRANT_MCP_CONFIG")
exe=$(printf '%s\n' "$cmd" | sed -n 1p)
printf '%s\n' '{"op": "list"}' '{"op": "call", "name": "echo", "arguments": {"message": "wired"}}' '{"op": "exit"}' \
  | "$PY" "$AGENT" "$exe" mcp-proxy everything > "$OUT/mcp.txt"
# git, through the credential helper `warrant run` configured.
printf 'protocol=https\nhost=git.test\npath=acme/api.git\n\n' | git credential fill > "$OUT/credential.txt"
touch "$OUT/ready"
while [ ! -f "$OUT/go" ]; do sleep 0.1; done
"#;

fn hook_input(tool: &str, input: Value) -> String {
    json!({
        "session_id": "s-1", "transcript_path": "/dev/null", "cwd": "/",
        "permission_mode": "default", "hook_event_name": "PreToolUse",
        "tool_name": tool, "tool_input": input, "tool_use_id": "t-1"
    })
    .to_string()
}

/// Lets the child exit even when an assertion fails first.
struct Release(PathBuf);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("go"), "");
    }
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `GET /v1/authz/forward` as nginx would ask it for a clone of `acme/api`
/// from `https://git.test` with `credential`.
fn forward(server: &Server, credential: &str) -> u16 {
    let addr = server.addr.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    let basic = base64_basic(&format!("x-warrant:{credential}"));
    write!(
        stream,
        "GET /v1/authz/forward HTTP/1.1\r\nHost: {addr}\r\nX-Original-Method: GET\r\n\
         X-Original-URI: /acme/api.git/info/refs?service=git-upload-pack\r\n\
         X-Forwarded-Host: git.test\r\nX-Forwarded-Proto: https\r\n\
         Authorization: Basic {basic}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn base64_basic(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn warrant_run_wires_hooks_mcp_and_git_and_revokes_everything_after() {
    let entry = server_everything();
    let dir = TempDir::new().unwrap();
    let keys = dir.path().join("kv.keys");
    std::fs::write(&keys, format!("k1 {}\n", "ef".repeat(32))).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.path().join("warrant.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[engines]]
name = "vault"
type = "kv"
master_key_file = "{keys}"
[[engines.roles]]
name = "ci"
max_ttl = "10m"
secrets = ["npm-token"]

[[mcp.servers]]
name = "everything"
command = ["node", "{entry}", "stdio"]
"#,
            keys = keys.display(),
            entry = entry.display()
        ),
    )
    .unwrap();
    let server = Server::start_with_config(&dir.path().join("data"), &config, dir.path());
    let token_file = dir.path().join("npm-token");
    std::fs::write(&token_file, NPM_TOKEN).unwrap();
    server
        .admin()
        .args(["kv", "put", "vault", "npm-token", "--from-file"])
        .arg(&token_file)
        .json();
    let olga = server.add_user("olga", &["operators"]);
    server.add_agent("claude", "privileged");
    let task = server
        .as_user(&olga)
        .args(["task", "create", "--agent", "claude", "--purpose", "wired"])
        .args(["--repo", "acme/api", "--branch", "feature/*"])
        .args(["--action", "shell.exec", "--action", "repo.read"])
        .args(["--action", "secret.read", "--secret", "vault/ci"])
        .args(["--action", "mcp.call", "--tool", "everything/echo"])
        .json();
    let task_id = task["id"].as_str().unwrap().to_owned();
    let claim = dir.path().join("claim");
    std::fs::write(&claim, task["claim"].as_str().unwrap()).unwrap();

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let agent = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/mcp_stdio_agent.py");
    let mut child = server
        .command(BIN)
        .args(["run", "--task", &task_id, "--claim"])
        .arg(&claim)
        .args(["--lease", "vault/ci=NPM_TOKEN,secret=npm-token", "--"])
        .args(["sh", "-c", SCRIPT])
        .env("OUT", &out)
        .env("PY", mcp_python())
        .env("AGENT", &agent)
        .env(
            "HOOK_ALLOW",
            hook_input("Bash", json!({"command": "cargo test"})),
        )
        .env("HOOK_DENY", hook_input("Frobnicate", json!({"level": 11})))
        .env("WARRANT_REPO", "acme/api")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let release = Release(out.clone());
    let started = Instant::now();
    while !out.join("ready").exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            panic!("warrant run exited early ({status}): {err}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the child never got ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The lease's secret is in the child's environment.
    assert_eq!(read(&out, "lease.txt").trim(), NPM_TOKEN);
    // Hooks: the settings file runs `warrant hook claude-code`, which
    // decided as the run.
    let settings: Value = serde_json::from_str(&read(&out, "claude.json")).unwrap();
    let hook = settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
        .as_str()
        .unwrap();
    assert!(hook.ends_with(" hook claude-code"), "{hook}");
    let allowed: Value = serde_json::from_str(&read(&out, "hook-allow.json")).unwrap();
    assert_eq!(
        allowed["hookSpecificOutput"]["permissionDecision"], "allow",
        "{allowed}"
    );
    // A tool the task does not name is denied, with Warrant's reason.
    let denied: Value = serde_json::from_str(&read(&out, "hook-deny.json")).unwrap();
    assert_eq!(
        denied["hookSpecificOutput"]["permissionDecision"], "deny",
        "{denied}"
    );
    assert!(
        denied["hookSpecificOutput"]["permissionDecisionReason"]
            .as_str()
            .unwrap()
            .contains("out_of_scope"),
        "{denied}"
    );
    // MCP: the config names the shim for the one server the scope allows,
    // and the SDK used it.
    let mcp: Value = serde_json::from_str(&read(&out, "mcp.json")).unwrap();
    assert_eq!(
        mcp["mcpServers"]["everything"]["args"],
        json!(["mcp-proxy", "everything"])
    );
    assert_eq!(read(&out, "gateway.txt").trim(), "everything");
    let lines: Vec<Value> = read(&out, "mcp.txt")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["ready"], true, "{lines:?}");
    assert_eq!(lines[1]["tools"], json!(["echo"]), "{lines:?}");
    assert_eq!(lines[2]["is_error"], false, "{lines:?}");
    // git: the helper gave a credential, which forward auth accepts now.
    let credential = read(&out, "credential.txt");
    let password = credential
        .lines()
        .find_map(|l| l.strip_prefix("password="))
        .unwrap_or_else(|| panic!("no credential: {credential}"))
        .to_owned();
    assert_eq!(forward(&server, &password), 200);

    // The agent exits: everything is revoked.
    drop(release);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(forward(&server, &password), 401);
    let leases = server
        .admin()
        .args(["lease", "list", "--task", &task_id])
        .json();
    let leases = leases["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0]["state"], "revoked", "{leases:?}");
    let events: Vec<Value> = server
        .admin()
        .args(["audit", "export", "--format", "jsonl"])
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ended: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "run.revoked" && e["task_id"] == task_id.as_str())
        .collect();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["data"]["reason"], "ended");
    // The run's files went with it.
    let socket_dirs = events.iter().any(|e| e.to_string().contains(NPM_TOKEN));
    assert!(!socket_dirs, "the lease's secret reached the audit log");
}
