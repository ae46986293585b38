//! Issue 8: `warrant hook claude-code|codex|cursor|copilot` fed recorded
//! hook inputs (crates/cli/tests/hooks/AGENT/*.json, Claude Code's taken
//! from Claude Code 2.1.330 itself), the real binary under `warrant exec`
//! against a real `warrant serve`: allowed calls are allowed, denied ones
//! denied with Warrant's reason, a web fetch taints the run so a later
//! secret read is refused, unknown tools and unreadable input are denied,
//! and with no run, an ended task or Warrant stopped the answer is a
//! denial too (acceptance 4).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::util::{BIN, Server};

/// The value of the `kv` secret the runs may lease.
pub const SECRET: &str = "npm_hooks_5f4e3d2c1b0a-plaintext-marker";

/// The reason of the test policy that forbids `rm -rf`.
pub const RM_REASON: &str = "agents may not delete directory trees with `rm -rf`";

/// The recorded hook inputs.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hooks")
}

/// A server with the default policy pack plus a forbid on `rm -rf`, a `kv`
/// engine `vault` (role `ci` releasing `npm-token`) and a privileged agent
/// `claude`.
pub struct HookSetup {
    pub server: Server,
    pub dir: TempDir,
}

/// A task: its id and the file holding its claim.
pub struct Task {
    pub id: String,
    pub claim: PathBuf,
}

impl HookSetup {
    pub fn start() -> Self {
        let dir = TempDir::new().unwrap();
        let policies = dir.path().join("policies");
        let packed = Command::new(BIN)
            .args(["policy", "pack", "--out"])
            .arg(&policies)
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(packed.status.success(), "{packed:?}");
        std::fs::write(
            policies.join("hooks.cedar"),
            format!(
                "@id(\"test.no-rm-rf\")\n@reason(\"{}\")\nforbid (principal is Run, \
                 action == Action::\"shell.exec\", resource)\n\
                 when {{ context has command && context.command like \"rm -rf*\" }};\n",
                RM_REASON.replace('"', "\\\"")
            ),
        )
        .unwrap();
        let keys = dir.path().join("kv.keys");
        std::fs::write(&keys, format!("k1 {}\n", "cd".repeat(32))).unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = dir.path().join("warrant.toml");
        std::fs::write(
            &config,
            format!(
                "[policy]\ndir = \"{}\"\n\n[[engines]]\nname = \"vault\"\ntype = \"kv\"\n\
                 master_key_file = \"{}\"\n[[engines.roles]]\nname = \"ci\"\nmax_ttl = \"10m\"\n\
                 secrets = [\"npm-token\"]\n",
                policies.display(),
                keys.display()
            ),
        )
        .unwrap();
        let server = Server::start_with_config(&dir.path().join("data"), &config, dir.path());
        server
            .admin()
            .args(["kv", "put", "vault", "npm-token", "--from-stdin"])
            .stdin(SECRET)
            .stdout();
        server
            .admin()
            .args(["agent", "add", "claude", "--tier", "privileged"])
            .json();
        Self { server, dir }
    }

    /// A task of `claude` delegated by the admin on repository `acme/api`:
    /// shell, file reads and writes, web fetches (`Tool::"web"`) and the
    /// `vault/ci` secret.
    pub fn task(&self) -> Task {
        let task = self
            .server
            .admin()
            .args([
                "task",
                "create",
                "--agent",
                "claude",
                "--purpose",
                "fix the flaky test",
            ])
            .args(["--repo", "acme/api"])
            .args(["--action", "shell.exec", "--action", "file.read"])
            .args(["--action", "file.write", "--action", "web.fetch"])
            .args(["--tool", "web"])
            .args(["--action", "secret.read", "--secret", "vault/ci"])
            .json();
        let id = task["id"].as_str().unwrap().to_owned();
        let claim = self.dir.path().join(format!("claim-{id}"));
        std::fs::write(&claim, task["claim"].as_str().unwrap()).unwrap();
        std::fs::set_permissions(&claim, std::fs::Permissions::from_mode(0o600)).unwrap();
        Task { id, claim }
    }

    /// `warrant exec --task ... -- sh -c SCRIPT`, with `W` (the binary),
    /// `FIX` (the recorded inputs) and `OUT` (a directory for answers) in
    /// the environment, and the shell function `hook AGENT NAME` that feeds
    /// `$FIX/AGENT/NAME.json` to `warrant hook AGENT` and keeps its stdout,
    /// stderr and exit code in `$OUT`.
    pub fn exec(&self, task: &Task, out: &Path, script: &str) -> Command {
        let mut cmd = self.server.command(BIN);
        cmd.args(["exec", "--task", &task.id, "--claim"])
            .arg(&task.claim)
            .args(["--", "sh", "-c"])
            .arg(format!("{HOOK_FN}\n{script}"))
            .env("W", BIN)
            .env("FIX", fixtures())
            .env("OUT", out)
            .env("LEASE", fixtures().join("lease_as_run.py"));
        cmd
    }

    /// The audit log, as JSON events.
    pub fn audit(&self) -> Vec<Value> {
        self.server
            .admin()
            .args(["audit", "export", "--format", "jsonl"])
            .stdout()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// `(action, resource id, decision, code)` of every decision of `task`,
    /// in order.
    pub fn decisions(&self, task: &Task) -> Vec<(String, String, String, String)> {
        self.audit()
            .iter()
            .filter(|e| e["kind"] == "decision" && e["task_id"] == task.id.as_str())
            .map(|e| {
                let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                (
                    s(&e["data"]["input"]["action"]),
                    s(&e["data"]["input"]["resource"]["id"]),
                    s(&e["data"]["outcome"]["decision"]),
                    s(&e["data"]["outcome"]["code"]),
                )
            })
            .collect()
    }
}

const HOOK_FN: &str = r#"hook() {
  "$W" hook "$1" < "$FIX/$1/$2.json" > "$OUT/$1-$2.out" 2> "$OUT/$1-$2.err"
  echo $? > "$OUT/$1-$2.code"
}"#;

/// Runs `cmd` to completion (bounded) and asserts it succeeded.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One hook answer kept by the `hook` shell function.
#[derive(Debug)]
struct Answer {
    stdout: String,
    stderr: String,
    code: i32,
}

impl Answer {
    fn read(out: &Path, agent: &str, name: &str) -> Self {
        let read = |ext: &str| {
            std::fs::read_to_string(out.join(format!("{agent}-{name}.{ext}")))
                .unwrap_or_else(|e| panic!("no {ext} for {agent}/{name}: {e}"))
        };
        Self {
            stdout: read("out"),
            stderr: read("err"),
            code: read("code").trim().parse().unwrap(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Claude Code's and Codex's `(permissionDecision, reason)`.
    fn claude(&self) -> (String, String) {
        let v = self.json();
        let o = &v["hookSpecificOutput"];
        assert_eq!(o["hookEventName"], "PreToolUse", "{v}");
        (
            o["permissionDecision"].as_str().unwrap().to_owned(),
            o["permissionDecisionReason"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }
}

fn contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "`{needle}` not found in: {haystack}"
    );
}

#[test]
fn claude_code_inputs_are_decided_by_warrant_with_its_reasons() {
    let setup = HookSetup::start();
    let task = setup.task();
    let out = TempDir::new().unwrap();
    let names = [
        "bash-allowed",
        "bash-denied",
        "read",
        "edit",
        "write-workflow",
        "mcp-tool",
        "unknown-tool",
        "todowrite",
        "post-tool-use",
    ];
    let script: String = names
        .iter()
        .map(|n| format!("hook claude-code {n}\n"))
        .collect();
    run_ok(&mut setup.exec(&task, out.path(), &script));
    let answer = |name: &str| Answer::read(out.path(), "claude-code", name);

    for allowed in ["bash-allowed", "read", "edit"] {
        let a = answer(allowed);
        assert_eq!(a.code, 0, "{allowed}: {a:?}");
        let (decision, reason) = a.claude();
        assert_eq!(decision, "allow", "{allowed}: {reason}");
        contains(&reason, "Repo `acme/api`");
    }

    // The policy's own sentence reaches the model.
    let a = answer("bash-denied");
    assert_eq!(a.code, 0, "{a:?}");
    let (decision, reason) = a.claude();
    assert_eq!(decision, "deny");
    contains(&reason, RM_REASON);
    contains(&reason, "test.no-rm-rf");

    // A CI workflow is a sensitive path: the approval is pending, the
    // agent is told its id and to ask again once it is approved.
    let a = answer("write-workflow");
    let (decision, reason) = a.claude();
    assert_eq!(decision, "deny", "{reason}");
    contains(&reason, "requires a human approval");
    contains(&reason, "same call again");

    // An MCP tool the task does not name, an unknown tool: out of scope.
    for name in ["mcp-tool", "unknown-tool"] {
        let (decision, reason) = answer(name).claude();
        assert_eq!(decision, "deny", "{name}: {reason}");
        contains(&reason, "out_of_scope");
    }

    // Agent-internal: no opinion, the agent's own rules apply.
    let a = answer("todowrite");
    assert_eq!((a.code, a.stdout.as_str()), (0, ""), "{a:?}");

    // A hook configured on the wrong event cannot decide: blocked.
    let a = answer("post-tool-use");
    assert_eq!(a.code, 2, "{a:?}");
    assert_eq!(a.claude().0, "deny");
    contains(&a.stderr, "PostToolUse");

    // What Warrant decided, as the audit log has it.
    let decided = setup.decisions(&task);
    let seen = |action: &str, id: &str, decision: &str, code: &str| {
        assert!(
            decided
                .iter()
                .any(|d| (d.0.as_str(), d.1.as_str(), d.2.as_str(), d.3.as_str())
                    == (action, id, decision, code)),
            "no {action} {id} {decision} ({code}) in {decided:?}"
        );
    };
    seen("shell.exec", "acme/api", "allow", "allowed");
    seen("shell.exec", "acme/api", "deny", "forbidden");
    seen("file.read", "acme/api", "allow", "allowed");
    seen("file.write", "acme/api", "allow", "allowed");
    seen(
        "file.write",
        "acme/api",
        "approval_required",
        "approval_required",
    );
    seen("mcp.call", "github/create_issue", "deny", "out_of_scope");
    seen("mcp.call", "claude-code/Computer", "deny", "out_of_scope");
    // TodoWrite and the PostToolUse input asked nothing.
    assert_eq!(decided.len(), 7, "{decided:?}");
}

#[test]
fn a_web_fetch_taints_the_run_so_a_later_secret_read_is_denied() {
    let setup = HookSetup::start();
    let task = setup.task();
    let out = TempDir::new().unwrap();
    let script = r#"
python3 "$LEASE" vault ci npm-token > "$OUT/lease-before.json"
hook claude-code webfetch
python3 "$LEASE" vault ci npm-token > "$OUT/lease-after.json"
"#;
    run_ok(&mut setup.exec(&task, out.path(), script));
    let lease = |name: &str| -> Value {
        let text = std::fs::read_to_string(out.path().join(name)).unwrap();
        assert!(!text.contains(SECRET), "the helper printed the secret");
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
    };

    let before = lease("lease-before.json");
    assert_eq!(before["status"], 201, "{before}");
    let (decision, reason) = Answer::read(out.path(), "claude-code", "webfetch").claude();
    assert_eq!(decision, "allow", "{reason}");
    contains(&reason, "`web.fetch` on Tool `web`");
    let after = lease("lease-after.json");
    assert_eq!(after["status"], 403, "{after}");
    assert_eq!(after["code"], "lease_denied", "{after}");
    contains(
        after["detail"].as_str().unwrap(),
        "ingested untrusted content",
    );

    let decided: Vec<(String, String, String)> = setup
        .decisions(&task)
        .into_iter()
        .map(|(action, _, decision, code)| (action, decision, code))
        .collect();
    let want = [
        ("secret.read", "allow", "allowed"),
        ("web.fetch", "allow", "allowed"),
        ("secret.read", "deny", "forbidden"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, d, c)| ((*a).into(), (*d).into(), (*c).into()))
        .collect();
    assert_eq!(decided, want);
}

#[test]
fn codex_cursor_and_copilot_inputs_are_answered_in_their_formats() {
    let setup = HookSetup::start();
    let task = setup.task();
    let out = TempDir::new().unwrap();
    let calls = [
        ("codex", "bash-allowed"),
        ("codex", "bash-denied"),
        ("codex", "apply-patch"),
        ("codex", "apply-patch-workflow"),
        ("codex", "mcp-tool"),
        ("cursor", "shell-allowed"),
        ("cursor", "shell-denied"),
        ("cursor", "read-file"),
        ("cursor", "mcp-tool"),
        ("cursor", "stop"),
        ("copilot", "bash-allowed"),
        ("copilot", "bash-denied"),
        ("copilot", "view"),
        ("copilot", "edit-workflow"),
        ("copilot", "unknown-tool"),
    ];
    let script: String = calls
        .iter()
        .map(|(agent, name)| format!("hook {agent} {name}\n"))
        .collect();
    run_ok(&mut setup.exec(&task, out.path(), &script));
    let answer = |agent: &str, name: &str| Answer::read(out.path(), agent, name);

    // Codex acts on denials only: an allowed call prints nothing.
    for name in ["bash-allowed", "apply-patch"] {
        let a = answer("codex", name);
        assert_eq!((a.code, a.stdout.as_str()), (0, ""), "codex {name}: {a:?}");
    }
    let (decision, reason) = answer("codex", "bash-denied").claude();
    assert_eq!(decision, "deny");
    contains(&reason, RM_REASON);
    // One file of the patch is a CI workflow: the whole patch waits.
    let (decision, reason) = answer("codex", "apply-patch-workflow").claude();
    assert_eq!(decision, "deny");
    contains(&reason, "requires a human approval");
    let (decision, reason) = answer("codex", "mcp-tool").claude();
    assert_eq!(decision, "deny");
    contains(&reason, "out_of_scope");

    let cursor = |name: &str| {
        let a = answer("cursor", name);
        assert_eq!(a.code, 0, "cursor {name}: {a:?}");
        a.json()
    };
    assert_eq!(cursor("shell-allowed")["permission"], "allow");
    let denied = cursor("shell-denied");
    assert_eq!(denied["permission"], "deny", "{denied}");
    contains(denied["agent_message"].as_str().unwrap(), RM_REASON);
    contains(denied["user_message"].as_str().unwrap(), RM_REASON);
    // beforeReadFile answers carry the permission only.
    assert_eq!(
        cursor("read-file"),
        serde_json::json!({"permission": "allow"})
    );
    let mcp = cursor("mcp-tool");
    assert_eq!(mcp["permission"], "deny", "{mcp}");
    contains(
        mcp["agent_message"].as_str().unwrap(),
        "Tool `server-github/create_issue`",
    );
    let stop = cursor("stop");
    assert_eq!(stop["permission"], "deny", "{stop}");
    contains(stop["agent_message"].as_str().unwrap(), "`stop`");

    let copilot = |name: &str| {
        let a = answer("copilot", name);
        assert_eq!(a.code, 0, "copilot {name}: {a:?}");
        let v = a.json();
        (
            v["permissionDecision"].as_str().unwrap().to_owned(),
            v["permissionDecisionReason"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(copilot("bash-allowed").0, "allow");
    assert_eq!(copilot("view").0, "allow");
    let (decision, reason) = copilot("bash-denied");
    assert_eq!(decision, "deny");
    contains(&reason, RM_REASON);
    let (decision, reason) = copilot("edit-workflow");
    assert_eq!(decision, "deny");
    contains(&reason, "requires a human approval");
    let (decision, reason) = copilot("unknown-tool");
    assert_eq!(decision, "deny");
    contains(&reason, "Tool `copilot/deploy_to_production`");

    let decided = setup.decisions(&task);
    assert!(
        decided.contains(&(
            "file.write".into(),
            "acme/api".into(),
            "approval_required".into(),
            "approval_required".into()
        )),
        "{decided:?}"
    );
}

#[test]
fn unreadable_input_and_no_run_are_denied_in_every_format() {
    let setup = HookSetup::start();
    let task = setup.task();
    let out = TempDir::new().unwrap();
    let script = r#"
for agent in claude-code codex cursor copilot; do
  echo 'this is { not json' | "$W" hook $agent > "$OUT/$agent-garbage.out" 2> "$OUT/$agent-garbage.err"
  echo $? > "$OUT/$agent-garbage.code"
done
"#;
    run_ok(&mut setup.exec(&task, out.path(), script));
    for agent in ["claude-code", "codex"] {
        let a = Answer::read(out.path(), agent, "garbage");
        assert_eq!(a.code, 2, "{agent}: {a:?}");
        assert_eq!(a.claude().0, "deny", "{agent}");
        contains(&a.stderr, "unreadable hook input");
    }
    let a = Answer::read(out.path(), "cursor", "garbage");
    assert_eq!((a.code, &a.json()["permission"]), (0, &Value::from("deny")));
    let a = Answer::read(out.path(), "copilot", "garbage");
    assert_eq!(
        (a.code, &a.json()["permissionDecision"]),
        (0, &Value::from("deny"))
    );
    // Nothing was decided: unreadable input never reaches Warrant.
    assert!(setup.decisions(&task).is_empty());

    // Not under `warrant run`/`exec`: no run to act as.
    let input = std::fs::read(fixtures().join("claude-code/bash-allowed.json")).unwrap();
    let out = setup
        .server
        .cmd()
        .args(["hook", "claude-code"])
        .stdin(input)
        .output();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    contains(
        &String::from_utf8_lossy(&out.stderr),
        "WARRANT_RUN_SOCKET is not set",
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hookSpecificOutput"]["permissionDecision"], "deny");
}

/// Starts `warrant exec` whose child waits for `$OUT/go`, then runs the
/// allowed Bash input through the Claude Code hook.
fn waiting_hook(setup: &HookSetup, task: &Task, out: &Path) -> std::process::Child {
    let script = r#"
touch "$OUT/ready"
i=0
while [ ! -f "$OUT/go" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
hook claude-code bash-allowed
"#;
    let mut cmd = setup.exec(task, out, script);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !out.join("ready").exists() {
        assert!(Instant::now() < deadline, "warrant exec did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn finish(mut child: std::process::Child, out: &Path) -> Answer {
    std::fs::write(out.join("go"), "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("warrant exec did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Answer::read(out, "claude-code", "bash-allowed")
}

#[test]
fn with_warrant_stopped_the_hook_denies() {
    let mut setup = HookSetup::start();
    let task = setup.task();
    let out = TempDir::new().unwrap();
    let child = waiting_hook(&setup, &task, out.path());
    setup.server.stop();
    let a = finish(child, out.path());
    assert_eq!(a.code, 2, "{a:?}");
    let (decision, reason) = a.claude();
    assert_eq!(decision, "deny");
    contains(&reason, "could not decide");
    contains(&reason, "cannot reach Warrant");
}

#[test]
fn once_the_task_has_ended_the_hook_denies() {
    let setup = HookSetup::start();
    let task = setup.task();
    let out = TempDir::new().unwrap();
    let child = waiting_hook(&setup, &task, out.path());
    setup.server.admin().args(["task", "end", &task.id]).json();
    let a = finish(child, out.path());
    assert_eq!(a.code, 2, "{a:?}");
    let (decision, reason) = a.claude();
    assert_eq!(decision, "deny");
    contains(&reason, "Warrant refused the request");
    assert!(
        setup.decisions(&task).iter().all(|d| d.2 != "allow"),
        "something was allowed after the task ended"
    );
}

#[test]
fn with_wait_approval_the_hook_lets_the_call_run_once_a_human_approves_it() {
    let setup = HookSetup::start();
    let carol = setup
        .server
        .admin()
        .args(["user", "add", "carol", "--group", "approvers"])
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let task = setup.task();
    let out = TempDir::new().unwrap();
    let script = r#"
"$W" hook claude-code --wait-approval 120s < "$FIX/claude-code/write-workflow.json" \
  > "$OUT/claude-code-write-workflow.out" 2> "$OUT/claude-code-write-workflow.err"
echo $? > "$OUT/claude-code-write-workflow.code"
"#;
    let mut cmd = setup.exec(&task, out.path(), script);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();

    // The hook is waiting; a human (not the delegator) approves.
    let deadline = Instant::now() + Duration::from_secs(180);
    let id = loop {
        let listed = setup
            .server
            .as_user(&carol)
            .args([
                "approvals",
                "list",
                "--state",
                "pending",
                "--task",
                &task.id,
            ])
            .json();
        if let Some(id) = listed["approvals"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "no approval was requested");
        std::thread::sleep(Duration::from_millis(100));
    };
    setup
        .server
        .as_user(&carol)
        .args([
            "approvals",
            "approve",
            &id,
            "--reason",
            "the workflow change is reviewed",
        ])
        .json();
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the hook did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }

    let a = Answer::read(out.path(), "claude-code", "write-workflow");
    assert_eq!(a.code, 0, "{a:?}");
    let (decision, reason) = a.claude();
    assert_eq!(decision, "allow", "{reason}");
    let writes: Vec<(String, String)> = setup
        .decisions(&task)
        .into_iter()
        .filter(|d| d.0 == "file.write")
        .map(|d| (d.2, d.3))
        .collect();
    assert_eq!(
        writes,
        [
            (
                "approval_required".to_owned(),
                "approval_required".to_owned()
            ),
            ("allow".to_owned(), "approved".to_owned())
        ]
    );
}
