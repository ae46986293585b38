//! OpenAI Codex CLI's `PreToolUse` command hook
//! (<https://developers.openai.com/codex/hooks>).
//!
//! Codex speaks Claude Code's wire format: stdin `{"session_id",
//! "transcript_path", "cwd", "hook_event_name": "PreToolUse", "model",
//! "turn_id", "tool_name", "tool_input", "tool_use_id"}` with `tool_name`
//! `Bash` (`tool_input.command`), `apply_patch` (the patch body in
//! `tool_input.command`: one `file.write` per file it adds, updates,
//! deletes or moves to) or `mcp__server__tool`. Codex enforces only
//! denials: `{"hookSpecificOutput": {"hookEventName": "PreToolUse",
//! "permissionDecision": "deny", "permissionDecisionReason"}}` on stdout,
//! or exit code 2 with the reason on stderr (done as well when no decision
//! could be made). An allowed call gets no output, since Codex does not
//! act on `allow` and its normal approval flow then applies.

use serde::Deserialize;
use serde_json::{Value, json};

use super::mapping::apply_patch_paths;
use super::{Agent, Call, Op, Reply, Verdict, mcp_name, process_cwd, required};

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

/// Parses Codex's hook input.
pub fn parse(input: &[u8]) -> Result<Call, String> {
    let input: Input =
        serde_json::from_slice(input).map_err(|e| format!("not Codex's hook JSON: {e}"))?;
    if let Some(event) = input.hook_event_name.as_deref()
        && event != "PreToolUse"
    {
        return Err(format!(
            "`{event}` is not `PreToolUse`: configure `warrant hook codex` as a PreToolUse hook"
        ));
    }
    if !input.tool_input.is_object() {
        return Err(format!("`{}` input is not an object", input.tool_name));
    }
    let tool = input.tool_name.as_str();
    let op = match tool {
        "Bash" => Op::Shell {
            command: command(&input.tool_input, tool)?,
        },
        "apply_patch" => {
            let patch = command(&input.tool_input, tool)?;
            let paths = apply_patch_paths(&patch);
            if paths.is_empty() {
                return Err("the `apply_patch` input names no file".into());
            }
            Op::Write { paths }
        }
        _ => match mcp_name(tool) {
            Some((server, name)) => Op::Mcp {
                server,
                tool: name,
                arguments: input.tool_input.clone(),
            },
            None => Op::Unknown {
                arguments: input.tool_input.clone(),
            },
        },
    };
    Ok(Call {
        agent: Agent::Codex,
        tool: input.tool_name,
        op,
        cwd: input.cwd.map_or_else(process_cwd, Into::into),
    })
}

/// `tool_input.command`: a string, or an argument vector (joined with
/// spaces, which is what a policy matching on the command line expects).
fn command(input: &Value, tool: &str) -> Result<String, String> {
    match input.get("command") {
        Some(Value::Array(words)) if !words.is_empty() => words
            .iter()
            .map(|w| w.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(|w| w.join(" "))
            .ok_or_else(|| format!("`{tool}` input has a `command` that is not text")),
        _ => required(input, tool, "command"),
    }
}

fn deny(reason: &str) -> String {
    json!({
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": reason,
        }
    })
    .to_string()
}

/// The answer Codex reads.
pub fn reply(verdict: &Verdict) -> Reply {
    match verdict {
        Verdict::Allow(_) | Verdict::Pass => Reply {
            stdout: None,
            stderr: None,
            code: 0,
        },
        Verdict::Deny(reason) => Reply {
            stdout: Some(deny(reason)),
            stderr: None,
            code: 0,
        },
        Verdict::Fail(reason) => Reply {
            stdout: Some(deny(reason)),
            stderr: Some(reason.clone()),
            code: 2,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(tool: &str, input: Value) -> Result<Op, String> {
        let raw = json!({"session_id": "s", "cwd": "/w", "hook_event_name": "PreToolUse",
            "model": "gpt", "turn_id": "t", "tool_name": tool, "tool_input": input});
        parse(raw.to_string().as_bytes()).map(|c| c.op)
    }

    #[test]
    fn bash_patches_and_mcp_tools_map() {
        assert_eq!(
            parsed("Bash", json!({"command": "cargo test"})).unwrap(),
            Op::Shell {
                command: "cargo test".into()
            }
        );
        assert_eq!(
            parsed(
                "apply_patch",
                json!({"command": "*** Begin Patch\n*** Update File: src/lib.rs\n@@\n-a\n+b\n*** End Patch"})
            )
            .unwrap(),
            Op::Write {
                paths: vec!["src/lib.rs".into()]
            }
        );
        assert!(parsed("apply_patch", json!({"command": "nothing"})).is_err());
        assert_eq!(
            parsed("Bash", json!({"command": ["bash", "-lc", "ls -la"]})).unwrap(),
            Op::Shell {
                command: "bash -lc ls -la".into()
            }
        );
        assert!(parsed("Bash", json!({"command": [1]})).is_err());
        assert!(matches!(
            parsed("mcp__docs__search", json!({"q": "x"})).unwrap(),
            Op::Mcp { server, .. } if server == "docs"
        ));
        assert!(matches!(
            parsed("web_search", json!({})).unwrap(),
            Op::Unknown { .. }
        ));
    }

    #[test]
    fn allowed_calls_print_nothing_and_failures_exit_two() {
        assert_eq!(reply(&Verdict::Allow("ok".into())).stdout, None);
        let r = reply(&Verdict::Fail("down".into()));
        assert_eq!(r.code, 2);
        assert!(r.stdout.unwrap().contains("\"deny\""));
    }
}
