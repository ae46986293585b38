//! GitHub Copilot CLI's `preToolUse` hook
//! (<https://docs.github.com/en/copilot/reference/copilot-cli-reference/cli-hooks-reference>).
//!
//! Input on stdin: `{"timestamp", "cwd", "toolName", "toolArgs"}`, where
//! `toolArgs` is the tool's arguments as JSON text (an object is accepted
//! too). The answer on stdout, exit 0: `{"permissionDecision": "allow" |
//! "deny", "permissionDecisionReason"}`. Copilot's tools: `bash` (and
//! `write_bash`, input to a running shell) → `shell.exec`; `view`, `glob`,
//! `grep` → `file.read`; `create`, `edit`, `str_replace_editor` →
//! `file.write`; `web_fetch` → `web.fetch`; `SERVER-tool` or `SERVER/tool`
//! of an MCP server behind Warrant's gateway → decided there; anything else
//! is unknown, decided as the most restrictive.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Agent, Call, Op, Reply, Verdict, field, process_cwd, required};

/// Copilot CLI tools that act only inside the agent: its intent line, its
/// to-do list, reading or stopping a shell an allowed `bash` started.
const INERT: &[&str] = &[
    "report_intent",
    "update_todo",
    "read_bash",
    "stop_bash",
    "list_bash",
];

#[derive(Deserialize)]
struct Input {
    #[serde(default, alias = "tool_name")]
    #[serde(rename = "toolName")]
    tool_name: Option<String>,
    #[serde(default, alias = "tool_input")]
    #[serde(rename = "toolArgs")]
    tool_args: Value,
    #[serde(default)]
    cwd: Option<String>,
}

/// Parses Copilot CLI's hook input.
pub fn parse(input: &[u8]) -> Result<Call, String> {
    let input: Input =
        serde_json::from_slice(input).map_err(|e| format!("not Copilot CLI's hook JSON: {e}"))?;
    let tool = input
        .tool_name
        .ok_or_else(|| "the hook input has no `toolName`".to_owned())?;
    let args = match input.tool_args {
        Value::String(text) => serde_json::from_str(&text)
            .map_err(|e| format!("`{tool}` arguments are not JSON: {e}"))?,
        Value::Null => Value::Object(Default::default()),
        other => other,
    };
    if !args.is_object() {
        return Err(format!("`{tool}` arguments are not an object"));
    }
    let op = op(&tool, &args)?;
    Ok(Call {
        agent: Agent::Copilot,
        tool,
        op,
        cwd: input.cwd.map_or_else(process_cwd, Into::into),
    })
}

fn op(tool: &str, args: &Value) -> Result<Op, String> {
    let optional_path = || field(args, "path").map(str::to_owned).into_iter().collect();
    Ok(match tool {
        "bash" | "shell" | "powershell" => Op::Shell {
            command: required(args, tool, "command")?,
        },
        "write_bash" => Op::Shell {
            command: required(args, tool, "input")?,
        },
        "view" | "glob" | "grep" | "read" | "ls" => Op::Read {
            paths: optional_path(),
        },
        "create" | "edit" | "str_replace_editor" | "str_replace" | "insert" | "write" => {
            Op::Write {
                paths: vec![required(args, tool, "path")?],
            }
        }
        "web_fetch" => Op::Fetch {
            url: Some(required(args, tool, "url")?),
            arguments: args.clone(),
        },
        _ if INERT.contains(&tool) => Op::Inert,
        _ => match tool.split_once(['/', '-']) {
            // Decided as an MCP tool; the gateway check in the mapping
            // keeps only the servers it was told about out of Warrant's
            // decisions here.
            Some((server, name)) if !server.is_empty() && !name.is_empty() => Op::Mcp {
                server: server.to_owned(),
                tool: name.to_owned(),
                arguments: args.clone(),
            },
            _ => Op::Unknown {
                arguments: args.clone(),
            },
        },
    })
}

fn decision(permission: &str, reason: &str) -> String {
    json!({"permissionDecision": permission, "permissionDecisionReason": reason}).to_string()
}

/// The answer Copilot CLI reads.
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
            code: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(tool: &str, args: &str) -> Result<Op, String> {
        let raw = json!({"timestamp": 1704614600000u64, "cwd": "/w", "toolName": tool,
            "toolArgs": args});
        parse(raw.to_string().as_bytes()).map(|c| c.op)
    }

    #[test]
    fn tool_args_are_json_text() {
        assert_eq!(
            parsed("bash", r#"{"command":"rm -rf dist","description":"clean"}"#).unwrap(),
            Op::Shell {
                command: "rm -rf dist".into()
            }
        );
        assert_eq!(
            parsed("edit", r#"{"path":"/w/a.md","old_str":"a","new_str":"b"}"#).unwrap(),
            Op::Write {
                paths: vec!["/w/a.md".into()]
            }
        );
        assert_eq!(
            parsed("view", r#"{"path":"/w"}"#).unwrap(),
            Op::Read {
                paths: vec!["/w".into()]
            }
        );
        assert!(parsed("bash", "not json").is_err());
        assert!(matches!(
            parsed("github-create_issue", "{}").unwrap(),
            Op::Mcp { server, tool, .. } if server == "github" && tool == "create_issue"
        ));
        assert!(matches!(
            parsed("teleport", "{}").unwrap(),
            Op::Unknown { .. }
        ));
        assert_eq!(parsed("report_intent", "{}").unwrap(), Op::Inert);
    }

    #[test]
    fn snake_case_input_is_read_too() {
        let raw = json!({"cwd": "/w", "tool_name": "bash", "tool_input": {"command": "ls"}});
        assert_eq!(
            parse(raw.to_string().as_bytes()).unwrap().op,
            Op::Shell {
                command: "ls".into()
            }
        );
    }
}
