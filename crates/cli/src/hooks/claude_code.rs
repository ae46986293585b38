//! Claude Code's `PreToolUse` command hook
//! (<https://code.claude.com/docs/en/hooks>).
//!
//! Input on stdin: `{"session_id", "transcript_path", "cwd",
//! "permission_mode", "hook_event_name": "PreToolUse", "tool_name",
//! "tool_input", "tool_use_id"}`. Answer on stdout, exit 0:
//! `{"hookSpecificOutput": {"hookEventName": "PreToolUse",
//! "permissionDecision": "allow" | "deny", "permissionDecisionReason"}}`; a
//! denial's reason is shown to the model, so it can act on it. When no
//! decision could be made the same denial is printed and the hook exits 2
//! with the reason on stderr, which Claude Code treats as a block even if
//! it could not read the JSON. An agent-internal tool gets no output (the
//! normal permission flow applies). `ask` is never answered: see
//! [`super`].

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Agent, Call, Op, Reply, Verdict, field, mcp_name, process_cwd, required};

/// Tools that act only inside Claude Code: the to-do list, plan mode,
/// questions to the user, sub-agents (whose own tool calls are hooked),
/// background shells already started by an allowed `Bash`, tool search.
const INERT: &[&str] = &[
    "TodoWrite",
    "TodoRead",
    "ExitPlanMode",
    "EnterPlanMode",
    "AskUserQuestion",
    "Task",
    "Agent",
    "BashOutput",
    "KillShell",
    "KillBash",
    "ToolSearch",
];

#[derive(Deserialize)]
struct Input {
    #[serde(default)]
    hook_event_name: Option<String>,
    tool_name: String,
    #[serde(default)]
    tool_input: Value,
    #[serde(default)]
    cwd: Option<String>,
}

/// Parses Claude Code's hook input.
pub fn parse(input: &[u8]) -> Result<Call, String> {
    let input: Input =
        serde_json::from_slice(input).map_err(|e| format!("not Claude Code's hook JSON: {e}"))?;
    if let Some(event) = input.hook_event_name.as_deref()
        && event != "PreToolUse"
    {
        return Err(format!(
            "`{event}` is not `PreToolUse`: configure `warrant hook claude-code` as a \
             PreToolUse hook"
        ));
    }
    if !input.tool_input.is_object() {
        return Err(format!("`{}` input is not an object", input.tool_name));
    }
    let op = op(&input.tool_name, &input.tool_input)?;
    Ok(Call {
        agent: Agent::ClaudeCode,
        tool: input.tool_name,
        op,
        cwd: input.cwd.map_or_else(process_cwd, Into::into),
    })
}

/// What Claude Code's tool `tool` with input `input` does.
fn op(tool: &str, input: &Value) -> Result<Op, String> {
    let optional_path = |name: &str| field(input, name).map(str::to_owned).into_iter().collect();
    Ok(match tool {
        "Bash" => Op::Shell {
            command: required(input, tool, "command")?,
        },
        "Write" | "Edit" | "MultiEdit" => Op::Write {
            paths: vec![required(input, tool, "file_path")?],
        },
        "NotebookEdit" => Op::Write {
            paths: vec![required(input, tool, "notebook_path")?],
        },
        "Read" => Op::Read {
            paths: vec![required(input, tool, "file_path")?],
        },
        "NotebookRead" => Op::Read {
            paths: vec![required(input, tool, "notebook_path")?],
        },
        "Glob" | "Grep" | "LS" => Op::Read {
            paths: optional_path("path"),
        },
        "WebFetch" => Op::Fetch {
            url: Some(required(input, tool, "url")?),
            arguments: input.clone(),
        },
        "WebSearch" => Op::Fetch {
            url: None,
            arguments: input.clone(),
        },
        // MCP resources are decided as the server's `resources` tool, as
        // Warrant's gateway does.
        "ListMcpResourcesTool" | "ReadMcpResourceTool" => match field(input, "server") {
            Some(server) if !server.is_empty() => Op::Mcp {
                server: server.to_owned(),
                tool: "resources".into(),
                arguments: input.clone(),
            },
            _ => Op::Unknown {
                arguments: input.clone(),
            },
        },
        _ if INERT.contains(&tool) => Op::Inert,
        _ => match mcp_name(tool) {
            Some((server, name)) => Op::Mcp {
                server,
                tool: name,
                arguments: input.clone(),
            },
            None => Op::Unknown {
                arguments: input.clone(),
            },
        },
    })
}

fn decision(permission: &str, reason: &str) -> String {
    json!({
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": permission,
            "permissionDecisionReason": reason,
        }
    })
    .to_string()
}

/// The answer Claude Code reads.
pub fn reply(verdict: &Verdict) -> Reply {
    match verdict {
        Verdict::Allow(reason) => Reply {
            stdout: Some(decision("allow", reason)),
            stderr: None,
            code: 0,
        },
        Verdict::Pass => Reply {
            stdout: None,
            stderr: None,
            code: 0,
        },
        Verdict::Deny(reason) => Reply {
            stdout: Some(decision("deny", reason)),
            stderr: None,
            code: 0,
        },
        Verdict::Fail(reason) => Reply {
            stdout: Some(decision("deny", reason)),
            stderr: Some(reason.clone()),
            code: 2,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(tool: &str, input: Value) -> Op {
        let raw = json!({"session_id": "s", "transcript_path": "/t", "cwd": "/w",
            "hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": input});
        parse(raw.to_string().as_bytes()).unwrap().op
    }

    #[test]
    fn each_tool_maps_to_what_it_does() {
        assert_eq!(
            parsed("Bash", json!({"command": "ls", "description": "list"})),
            Op::Shell {
                command: "ls".into()
            }
        );
        for tool in ["Write", "Edit", "MultiEdit"] {
            assert_eq!(
                parsed(tool, json!({"file_path": "/w/a.rs", "content": "x"})),
                Op::Write {
                    paths: vec!["/w/a.rs".into()]
                },
                "{tool}"
            );
        }
        assert_eq!(
            parsed("Read", json!({"file_path": "/w/a.rs"})),
            Op::Read {
                paths: vec!["/w/a.rs".into()]
            }
        );
        assert_eq!(
            parsed("Grep", json!({"pattern": "x"})),
            Op::Read { paths: vec![] }
        );
        assert!(matches!(
            parsed("WebFetch", json!({"url": "https://e.com", "prompt": "p"})),
            Op::Fetch { url: Some(u), .. } if u == "https://e.com"
        ));
        assert!(matches!(
            parsed("mcp__github__create_issue", json!({"title": "t"})),
            Op::Mcp { server, tool, .. } if server == "github" && tool == "create_issue"
        ));
        assert_eq!(parsed("TodoWrite", json!({"todos": []})), Op::Inert);
        assert!(matches!(parsed("Teleport", json!({})), Op::Unknown { .. }));
    }

    #[test]
    fn missing_fields_and_other_events_are_unreadable() {
        let no_command = json!({"hook_event_name": "PreToolUse", "tool_name": "Bash",
            "tool_input": {}});
        assert!(parse(no_command.to_string().as_bytes()).is_err());
        let post = json!({"hook_event_name": "PostToolUse", "tool_name": "Bash",
            "tool_input": {"command": "ls"}});
        assert!(parse(post.to_string().as_bytes()).is_err());
        assert!(parse(b"[]").is_err());
    }

    #[test]
    fn failures_block_with_exit_code_two_and_denials_with_json() {
        let r = reply(&Verdict::Fail("down".into()));
        assert_eq!(r.code, 2);
        assert_eq!(r.stderr.as_deref(), Some("down"));
        let out: Value = serde_json::from_str(r.stdout.as_deref().unwrap()).unwrap();
        assert_eq!(out["hookSpecificOutput"]["permissionDecision"], "deny");
        let r = reply(&Verdict::Deny("no".into()));
        assert_eq!(r.code, 0);
        let out: Value = serde_json::from_str(r.stdout.as_deref().unwrap()).unwrap();
        assert_eq!(out["hookSpecificOutput"]["permissionDecisionReason"], "no");
        assert_eq!(reply(&Verdict::Pass).stdout, None);
    }
}
