//! Cursor's agent hooks (<https://cursor.com/docs/agent/hooks>):
//! `beforeShellExecution`, `beforeMCPExecution` and `beforeReadFile`.
//!
//! Every input carries `conversation_id`, `generation_id`,
//! `hook_event_name` and `workspace_roots`; then `command` and `cwd` (shell),
//! `tool_name`, `tool_input` (JSON text) and the server's `url` or
//! `command` (MCP), `file_path` and `content` (file read). The answer on
//! stdout is `{"permission": "allow" | "deny", "user_message",
//! "agent_message"}` (`permission` only for `beforeReadFile`). Cursor gives
//! an MCP hook no server name: the server is the one named by `warrant
//! mcp-proxy NAME` in its command, else the host of its URL, else its
//! command's program name (the package's, for `npx`, `uvx` and the like).
//! Any other event is denied, so a hook configured
//! where it cannot decide fails closed.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Agent, Call, Op, Reply, Verdict, process_cwd};

#[derive(Deserialize)]
struct Input {
    hook_event_name: String,
    #[serde(default)]
    workspace_roots: Vec<String>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    tool_name: Option<String>,
    #[serde(default)]
    tool_input: Value,
    #[serde(default)]
    file_path: Option<String>,
}

/// Parses Cursor's hook input.
pub fn parse(input: &[u8]) -> Result<Call, String> {
    let input: Input =
        serde_json::from_slice(input).map_err(|e| format!("not Cursor's hook JSON: {e}"))?;
    let cwd = input
        .cwd
        .clone()
        .or_else(|| input.workspace_roots.first().cloned())
        .map_or_else(process_cwd, Into::into);
    let missing = |name: &str| format!("`{}` input has no `{name}`", input.hook_event_name);
    let (tool, op) = match input.hook_event_name.as_str() {
        "beforeShellExecution" => (
            "Shell".to_owned(),
            Op::Shell {
                command: input.command.clone().ok_or_else(|| missing("command"))?,
            },
        ),
        "beforeReadFile" => (
            "Read".to_owned(),
            Op::Read {
                paths: vec![
                    input
                        .file_path
                        .clone()
                        .ok_or_else(|| missing("file_path"))?,
                ],
            },
        ),
        "beforeMCPExecution" => {
            let tool = input
                .tool_name
                .clone()
                .ok_or_else(|| missing("tool_name"))?;
            let arguments = match &input.tool_input {
                // Documented as JSON text; an object is taken as it is.
                Value::String(text) => {
                    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
                }
                other => other.clone(),
            };
            (
                tool.clone(),
                Op::Mcp {
                    server: server_name(input.command.as_deref(), input.url.as_deref()),
                    tool,
                    arguments,
                },
            )
        }
        other => {
            return Err(format!(
                "`{other}` is not a hook `warrant hook cursor` decides \
                 (beforeShellExecution, beforeMCPExecution, beforeReadFile)"
            ));
        }
    };
    Ok(Call {
        agent: Agent::Cursor,
        tool,
        op,
        cwd,
    })
}

/// The MCP server's name: `NAME` of a `warrant mcp-proxy NAME` command,
/// else the URL's host, else the command's program name.
fn server_name(command: Option<&str>, url: Option<&str>) -> String {
    if let Some(name) = command.and_then(proxied_server) {
        return name;
    }
    if let Some(host) = url
        .and_then(|u| u.split_once("://"))
        .map(|(_, rest)| rest.split(['/', ':', '?']).next().unwrap_or_default())
        .filter(|h| !h.is_empty())
    {
        return host.to_owned();
    }
    let mut words = command.unwrap_or_default().split_whitespace();
    let program = words
        .next()
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or_default();
    // A package runner: the package names the server better.
    let name = if ["npx", "pnpx", "bunx", "uvx"].contains(&program) {
        words
            .find(|w| !w.starts_with('-'))
            .and_then(|package| package.rsplit('/').next())
            .map(|package| package.split('@').next().unwrap_or(package))
            .unwrap_or(program)
    } else {
        program
    };
    if name.is_empty() {
        "mcp".into()
    } else {
        name.to_owned()
    }
}

/// `NAME` in `... mcp-proxy [OPTIONS] NAME [OPTIONS]`.
fn proxied_server(command: &str) -> Option<String> {
    /// `warrant` options that take a value.
    const VALUED: [&str; 6] = ["--task", "--claim", "--addr", "--token", "--output", "-o"];
    let mut words = command
        .split_whitespace()
        .skip_while(|w| *w != "mcp-proxy")
        .skip(1);
    while let Some(word) = words.next() {
        if VALUED.contains(&word) {
            words.next();
        } else if !word.starts_with('-') {
            return Some(word.to_owned());
        }
    }
    None
}

/// The answer Cursor reads.
pub fn reply(call: Option<&Call>, verdict: &Verdict) -> Reply {
    let read_only = matches!(call.map(|c| &c.op), Some(Op::Read { .. }));
    let (permission, message) = match verdict {
        Verdict::Allow(reason) => ("allow", Some(reason)),
        Verdict::Pass => ("allow", None),
        Verdict::Deny(reason) | Verdict::Fail(reason) => ("deny", Some(reason)),
    };
    let answer = match message {
        Some(message) if !read_only => json!({
            "permission": permission,
            "user_message": message,
            "agent_message": message,
        }),
        _ => json!({"permission": permission}),
    };
    Reply {
        stdout: Some(answer.to_string()),
        stderr: match verdict {
            Verdict::Fail(reason) => Some(reason.clone()),
            _ => None,
        },
        code: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_map_to_shell_read_and_mcp() {
        let shell = json!({"hook_event_name": "beforeShellExecution", "conversation_id": "c",
            "generation_id": "g", "workspace_roots": ["/w"], "command": "npm test", "cwd": "/w/sub"});
        let call = parse(shell.to_string().as_bytes()).unwrap();
        assert_eq!(
            call.op,
            Op::Shell {
                command: "npm test".into()
            }
        );
        assert_eq!(call.cwd, std::path::PathBuf::from("/w/sub"));
        let read = json!({"hook_event_name": "beforeReadFile", "workspace_roots": ["/w"],
            "file_path": "/w/.env", "content": "A=1"});
        let call = parse(read.to_string().as_bytes()).unwrap();
        assert_eq!(call.cwd, std::path::PathBuf::from("/w"));
        let mcp = json!({"hook_event_name": "beforeMCPExecution", "tool_name": "echo",
            "tool_input": "{\"message\": \"hi\"}", "command": "/usr/bin/warrant mcp-proxy everything"});
        assert_eq!(
            parse(mcp.to_string().as_bytes()).unwrap().op,
            Op::Mcp {
                server: "everything".into(),
                tool: "echo".into(),
                arguments: json!({"message": "hi"})
            }
        );
        let stop = json!({"hook_event_name": "stop"});
        assert!(parse(stop.to_string().as_bytes()).is_err());
    }

    #[test]
    fn servers_are_named_from_proxy_url_or_program() {
        assert_eq!(
            server_name(Some("warrant mcp-proxy --task T gh"), None),
            "gh"
        );
        assert_eq!(
            server_name(Some("warrant mcp-proxy gh --claim f"), None),
            "gh"
        );
        assert_eq!(
            server_name(None, Some("https://mcp.example.com:443/sse")),
            "mcp.example.com"
        );
        assert_eq!(
            server_name(Some("npx -y @modelcontextprotocol/server-github@1.2"), None),
            "server-github"
        );
        assert_eq!(
            server_name(Some("/opt/bin/github-mcp stdio"), None),
            "github-mcp"
        );
        assert_eq!(server_name(None, None), "mcp");
    }

    #[test]
    fn read_answers_carry_only_the_permission() {
        let call = Call {
            agent: Agent::Cursor,
            tool: "Read".into(),
            op: Op::Read { paths: vec![] },
            cwd: "/w".into(),
        };
        let r = reply(Some(&call), &Verdict::Deny("no".into()));
        assert_eq!(r.stdout.as_deref(), Some(r#"{"permission":"deny"}"#));
        let r = reply(None, &Verdict::Fail("down".into()));
        let out: Value = serde_json::from_str(r.stdout.as_deref().unwrap()).unwrap();
        assert_eq!(out["permission"], "deny");
        assert_eq!(out["agent_message"], "down");
        assert_eq!(r.code, 0);
    }
}
