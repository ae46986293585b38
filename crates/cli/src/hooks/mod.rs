//! Agent hook adapters: `warrant hook claude-code|codex|cursor|copilot`.
//!
//! A coding agent runs its hook command before each tool call and waits
//! for the answer. The hook reads the agent's JSON on stdin, maps the call
//! to Warrant requests ([`mapping`]: shell, file read and write, web fetch,
//! MCP call, or an unknown tool decided as the most restrictive), asks
//! `POST /v1/decisions` as the run the agent belongs to ([`decide`],
//! through the per-run socket of the `warrant run` or `warrant exec` the
//! agent was started under), and answers in the agent's own format (one
//! module per agent).
//!
//! INVARIANT: the hook never lets a call through by accident. Whatever goes
//! wrong — input it cannot read, no run socket, Warrant unreachable or
//! refusing the run, no answer in time — the answer is a denial with the
//! reason, and the process exits the way the agent reads as "blocked"
//! (exit code 2 where the protocol says so). It never exits 1, which the
//! agents treat as a non-blocking hook error.
//!
//! An approval that Warrant requires is a denial naming the pending
//! approval (never the agent's own "ask": a human clicking yes in the
//! agent's prompt is not a Warrant approval, and an unattended agent cannot
//! answer anyway), unless `--wait-approval` lets the hook wait for it.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

pub mod claude_code;
pub mod codex;
pub mod copilot;
pub mod cursor;
mod decide;
pub mod mapping;

use mapping::{Plan, Request, Resource};

/// The agents whose hook protocols are implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    ClaudeCode,
    Codex,
    Cursor,
    Copilot,
}

/// What a tool call does, whichever agent describes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A shell command.
    Shell { command: String },
    /// Files read (or listed, or searched); none means the working tree.
    Read { paths: Vec<String> },
    /// Files written, edited, created or deleted.
    Write { paths: Vec<String> },
    /// A web fetch (`url`) or search (`arguments`).
    Fetch {
        url: Option<String>,
        arguments: Value,
    },
    /// A tool of an MCP server.
    Mcp {
        server: String,
        tool: String,
        arguments: Value,
    },
    /// An agent-internal tool that reaches nothing outside the agent (a
    /// to-do list, a question to the user, a sub-agent whose own tool
    /// calls are hooked one by one).
    Inert,
    /// A tool this hook does not know.
    Unknown { arguments: Value },
}

/// One tool call, as the agent's hook input described it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub agent: Agent,
    /// The agent's name for the tool (`Bash`, `mcp__github__create_issue`,
    /// `beforeShellExecution` for Cursor's shell hook).
    pub tool: String,
    pub op: Op,
    /// The agent's working directory: relative paths are resolved from it.
    pub cwd: PathBuf,
}

/// How the hook is configured (`warrant hook AGENT --help`).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The repository the agent works in (`--repo`, `WARRANT_REPO`).
    pub repo: Option<String>,
    /// MCP servers reached through Warrant's gateway, which decides their
    /// calls itself.
    pub gateway_servers: Vec<String>,
    /// How long to wait for a required approval before denying.
    pub wait_approval: Duration,
}

/// The hook's answer, before it is put in the agent's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Warrant allowed every request the call maps to.
    Allow(String),
    /// Nothing Warrant governs: the agent's own permission rules apply.
    Pass,
    /// Warrant decided against the call (policy, scope, approval).
    Deny(String),
    /// No decision could be made, so the call is denied.
    Fail(String),
}

/// What the hook process prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub code: i32,
}

/// Largest hook input read: a `Write` of a large file carries it whole.
const MAX_INPUT: u64 = 16 * 1024 * 1024;

/// Everything about one decision (socket, Warrant, git) must be done by
/// then: agents give a hook 30 s (Copilot) to 60 s (Claude Code) by default
/// and let the call through when a hook times out.
const DEADLINE: Duration = Duration::from_secs(20);

/// Longest reason passed to an agent.
const MAX_REASON: usize = 2000;

/// Reads the hook input from stdin, decides and returns the reply.
pub async fn handle_stdin(agent: Agent, options: &Options) -> Reply {
    use tokio::io::AsyncReadExt as _;
    let mut input = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::stdin()
            .take(MAX_INPUT + 1)
            .read_to_end(&mut input),
    )
    .await;
    let verdict = match read {
        Err(_) => Verdict::Fail("the hook input did not arrive on stdin in time".into()),
        Ok(Err(e)) => Verdict::Fail(format!("cannot read the hook input: {e}")),
        Ok(Ok(_)) if input.len() as u64 > MAX_INPUT => Verdict::Fail(format!(
            "the hook input is larger than {} MiB",
            MAX_INPUT / (1024 * 1024)
        )),
        Ok(Ok(_)) => return handle(agent, options, &input).await,
    };
    agent.reply(None, &verdict)
}

/// Decides the call described by `input` and returns the reply.
pub async fn handle(agent: Agent, options: &Options, input: &[u8]) -> Reply {
    match agent.parse(input) {
        Ok(call) => {
            let verdict = evaluate(&call, options).await;
            agent.reply(Some(&call), &verdict)
        }
        Err(why) => agent.reply(
            None,
            &Verdict::Fail(format!("unreadable hook input: {why}")),
        ),
    }
}

impl Agent {
    fn parse(self, input: &[u8]) -> Result<Call, String> {
        match self {
            Agent::ClaudeCode => claude_code::parse(input),
            Agent::Codex => codex::parse(input),
            Agent::Cursor => cursor::parse(input),
            Agent::Copilot => copilot::parse(input),
        }
    }

    fn reply(self, call: Option<&Call>, verdict: &Verdict) -> Reply {
        let verdict = match verdict {
            Verdict::Allow(r) => Verdict::Allow(clip(r)),
            Verdict::Deny(r) => Verdict::Deny(clip(r)),
            Verdict::Fail(r) => Verdict::Fail(clip(r)),
            Verdict::Pass => Verdict::Pass,
        };
        match self {
            Agent::ClaudeCode => claude_code::reply(&verdict),
            Agent::Codex => codex::reply(&verdict),
            Agent::Cursor => cursor::reply(call, &verdict),
            Agent::Copilot => copilot::reply(&verdict),
        }
    }
}

/// Decides `call` with Warrant.
pub async fn evaluate(call: &Call, options: &Options) -> Verdict {
    match mapping::plan(call, &options.gateway_servers) {
        Plan::Inert => Verdict::Pass,
        Plan::Gateway { server } => Verdict::Allow(format!(
            "calls to `{server}` go through Warrant's MCP gateway, which decides each one"
        )),
        Plan::Decide(requests) => {
            let budget = DEADLINE + options.wait_approval;
            match tokio::time::timeout(budget, decide_all(call, options, &requests)).await {
                Ok(verdict) => verdict,
                Err(_) => Verdict::Fail(format!(
                    "Warrant did not answer within {} s",
                    budget.as_secs()
                )),
            }
        }
    }
}

async fn decide_all(call: &Call, options: &Options, requests: &[Request]) -> Verdict {
    let warrant = match decide::Warrant::connect().await {
        Ok(w) => w,
        Err(why) => return fail(&why),
    };
    let repo = if requests.iter().any(|r| r.resource == Resource::Repo) {
        match warrant.repo(options.repo.as_deref(), &call.cwd).await {
            Ok(repo) => Some(repo),
            Err(why) => return fail(&why),
        }
    } else {
        None
    };
    let mut policies: Vec<String> = Vec::new();
    for request in requests {
        let what = request.describe(repo.as_deref());
        let body = request.body(repo.as_deref());
        let answer = match warrant.decide(&body).await {
            Ok(a) => a,
            Err(why) => return fail(&why),
        };
        let answer = match answer["decision"].as_str() {
            Some("approval_required") if !options.wait_approval.is_zero() => {
                match wait_for_approval(&warrant, &answer, &body, &what, options).await {
                    Ok(allowed) => allowed,
                    Err(verdict) => return verdict,
                }
            }
            _ => answer,
        };
        match answer["decision"].as_str() {
            Some("allow") => {
                for policy in strings(&answer["policies"]) {
                    if !policies.contains(&policy) {
                        policies.push(policy);
                    }
                }
            }
            Some("approval_required") => return Verdict::Deny(approval_needed(&what, &answer)),
            _ => return Verdict::Deny(denied(&what, &answer)),
        }
    }
    let what: Vec<String> = requests
        .iter()
        .map(|r| r.describe(repo.as_deref()))
        .collect();
    Verdict::Allow(format!(
        "Warrant allowed {} (policies: {})",
        what.join(", "),
        policies.join(", ")
    ))
}

/// Waits (up to `--wait-approval`) for a human to decide the approval in
/// `answer`, then asks again: an approved identical request is allowed
/// once. Returns the new answer, or the verdict to give.
async fn wait_for_approval(
    warrant: &decide::Warrant,
    answer: &Value,
    body: &Value,
    what: &str,
    options: &Options,
) -> Result<Value, Verdict> {
    let Some(id) = answer["approval_id"].as_str() else {
        return Err(Verdict::Deny(approval_needed(what, answer)));
    };
    let deadline = tokio::time::Instant::now() + options.wait_approval;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(Verdict::Deny(approval_needed(what, answer)));
        }
        let state = match warrant
            .approval_state(id, left.min(Duration::from_secs(25)))
            .await
        {
            Ok(s) => s,
            Err(why) => return Err(fail(&why)),
        };
        match state.as_str() {
            "pending" => {}
            "approved" => {
                return warrant.decide(body).await.map_err(|why| fail(&why));
            }
            other => {
                return Err(Verdict::Deny(format!(
                    "Warrant denied {what}: approval {id} is {other} ({})",
                    reasons(answer)
                )));
            }
        }
    }
}

fn fail(why: &str) -> Verdict {
    Verdict::Fail(format!(
        "Warrant could not decide this call, so it is denied: {why}"
    ))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn reasons(answer: &Value) -> String {
    let reasons = strings(&answer["reasons"]);
    if reasons.is_empty() {
        "no reason given".into()
    } else {
        reasons.join("; ")
    }
}

/// The reason for a denial, as the agent sees it.
fn denied(what: &str, answer: &Value) -> String {
    let code = answer["code"].as_str().unwrap_or("denied");
    let mut text = format!("Warrant denied {what} ({code}): {}", reasons(answer));
    let policies = strings(&answer["policies"]);
    if !policies.is_empty() {
        text.push_str(&format!(" [policies: {}]", policies.join(", ")));
    }
    text
}

/// The reason for an approval still pending, with what to do about it.
fn approval_needed(what: &str, answer: &Value) -> String {
    let id = answer["approval_id"].as_str().unwrap_or("(none)");
    format!(
        "Warrant requires a human approval for {what}: {}. Approval {id} is pending; \
         once a human approves it (`warrant approvals approve {id} --reason ...`), \
         make exactly the same call again",
        reasons(answer)
    )
}

fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_REASON {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX_REASON).collect();
    out.push('…');
    out
}

/// A string field of a JSON object.
fn field<'a>(input: &'a Value, name: &str) -> Option<&'a str> {
    input.get(name).and_then(Value::as_str)
}

/// A string field that must be there.
fn required(input: &Value, tool: &str, name: &str) -> Result<String, String> {
    field(input, name)
        .map(str::to_owned)
        .ok_or_else(|| format!("`{tool}` input has no string `{name}`"))
}

/// The process's working directory, for agents that do not say theirs.
fn process_cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))
}

/// `mcp__server__tool` as (server, tool), as Claude Code and Codex name MCP
/// tools.
fn mcp_name(tool: &str) -> Option<(String, String)> {
    let rest = tool.strip_prefix("mcp__")?;
    let (server, tool) = rest.split_once("__")?;
    (!server.is_empty() && !tool.is_empty()).then(|| (server.to_owned(), tool.to_owned()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn mcp_names_split_at_the_first_separator() {
        assert_eq!(
            mcp_name("mcp__github__create_issue"),
            Some(("github".into(), "create_issue".into()))
        );
        assert_eq!(
            mcp_name("mcp__fs__read__text"),
            Some(("fs".into(), "read__text".into()))
        );
        assert_eq!(mcp_name("mcp__github"), None);
        assert_eq!(mcp_name("mcp____x"), None);
        assert_eq!(mcp_name("Bash"), None);
    }

    #[test]
    fn denials_carry_the_code_reasons_and_policies() {
        let answer = json!({"decision": "deny", "code": "forbidden",
            "reasons": ["no rm -rf"], "policies": ["no-rm"]});
        assert_eq!(
            denied("`shell.exec` on Repo `acme/api`", &answer),
            "Warrant denied `shell.exec` on Repo `acme/api` (forbidden): no rm -rf [policies: no-rm]"
        );
        let pending = json!({"decision": "approval_required", "approval_id": "0193",
            "reasons": ["deploys need a human"]});
        let text = approval_needed("`deploy`", &pending);
        assert!(text.contains("Approval 0193 is pending"), "{text}");
        assert!(text.contains("deploys need a human"), "{text}");
        assert!(text.contains("same call again"), "{text}");
    }

    #[test]
    fn long_reasons_are_clipped() {
        let long = "x".repeat(MAX_REASON + 10);
        assert_eq!(clip(&long).chars().count(), MAX_REASON + 1);
        assert_eq!(clip("short"), "short");
    }

    #[tokio::test]
    async fn inert_tools_need_no_decision_and_unreadable_input_is_denied() {
        let options = Options::default();
        let call = Call {
            agent: Agent::ClaudeCode,
            tool: "TodoWrite".into(),
            op: Op::Inert,
            cwd: PathBuf::from("/"),
        };
        assert_eq!(evaluate(&call, &options).await, Verdict::Pass);
        let reply = handle(Agent::ClaudeCode, &options, b"not json").await;
        assert_eq!(reply.code, 2);
        assert!(reply.stderr.unwrap().contains("unreadable hook input"));
    }
}
