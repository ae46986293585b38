//! From a tool call to the requests Warrant decides: the one mapping every
//! agent's hook shares.
//!
//! | tool call ([`Op`]) | action | resource | context |
//! |---|---|---|---|
//! | shell command | `shell.exec` | `Repo::"<repo>"` | `command` |
//! | file write (one request per file) | `file.write` | `Repo::"<repo>"` | `path` |
//! | file read | `file.read` | `Repo::"<repo>"` | `path` |
//! | web fetch / search | `web.fetch` | `Tool::"web"` | `url` and `method: GET`, or `arguments` |
//! | MCP tool `server`/`tool` | `mcp.call` | `Tool::"server/tool"` | `arguments`, and `path`, `url`, `command` lifted from them |
//! | anything else | `mcp.call` | `Tool::"<agent>/<tool>"` | `arguments` |
//!
//! Every request also carries `context.tool` (`<agent>/<tool>`, or
//! `server/tool` for MCP). Paths are relative to the repository's root (the
//! nearest directory above the agent's working directory holding `.git`,
//! else the working directory), with `.` and `..` resolved without touching
//! the file system, so the sensitive-path globs of the policies apply; a
//! path outside the root stays absolute. The repository itself is found at
//! decision time ([`super::decide`]).
//!
//! An unknown tool is decided as an `mcp.call` on a tool id no task names
//! unless someone wrote it there on purpose: never allowed by default, and
//! its arguments are in the audit log (as a keyed hash) like any other.

use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value, json};

use super::{Agent, Call, Op};

/// The resource of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// The repository the agent works in, found when deciding.
    Repo,
    /// A tool, by id.
    Tool(String),
}

/// One request to `POST /v1/decisions`, before the repository is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub action: &'static str,
    pub resource: Resource,
    pub context: Map<String, Value>,
}

impl Request {
    /// The body for `POST /v1/decisions`, with `repo` as the repository.
    pub fn body(&self, repo: Option<&str>) -> Value {
        let (kind, id) = match &self.resource {
            Resource::Repo => ("Repo", repo.unwrap_or_default()),
            Resource::Tool(id) => ("Tool", id.as_str()),
        };
        json!({
            "action": self.action,
            "resource": {"type": kind, "id": id},
            "context": self.context,
        })
    }

    /// `action` on `Type::"id"`, for messages.
    pub fn describe(&self, repo: Option<&str>) -> String {
        match &self.resource {
            Resource::Repo => format!(
                "`{}` on Repo `{}`",
                self.action,
                repo.unwrap_or("(unknown)")
            ),
            Resource::Tool(id) => format!("`{}` on Tool `{id}`", self.action),
        }
    }
}

/// What the hook does with one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Ask Warrant; every request must be allowed.
    Decide(Vec<Request>),
    /// An agent-internal tool that reaches nothing outside the agent: the
    /// hook has no opinion.
    Inert,
    /// An MCP tool of a server behind Warrant's gateway, which decides the
    /// call itself when it arrives (deciding it here too would decide it
    /// twice and use up its approvals).
    Gateway { server: String },
}

/// The plan for `call`. `gateway_servers` are the MCP servers the agent
/// reaches through Warrant's gateway (`warrant mcp-proxy SERVER`).
pub fn plan(call: &Call, gateway_servers: &[String]) -> Plan {
    let root = repo_root(&call.cwd);
    let builtin = format!("{}/{}", call.agent.label(), call.tool);
    let mut base = Map::new();
    base.insert("tool".into(), Value::String(builtin.clone()));
    match &call.op {
        Op::Inert => Plan::Inert,
        Op::Shell { command } => {
            let mut context = base;
            context.insert("command".into(), Value::String(command.clone()));
            Plan::Decide(vec![Request {
                action: "shell.exec",
                resource: Resource::Repo,
                context,
            }])
        }
        Op::Read { paths } | Op::Write { paths } => {
            let action = if matches!(call.op, Op::Read { .. }) {
                "file.read"
            } else {
                "file.write"
            };
            let mut requests: Vec<Request> = Vec::new();
            let defaulted = [String::from(".")];
            let paths = if paths.is_empty() {
                &defaulted[..]
            } else {
                &paths[..]
            };
            for raw in paths {
                let mut context = base.clone();
                let path = relative_path(&root, &call.cwd, raw);
                context.insert("path".into(), Value::String(path));
                let request = Request {
                    action,
                    resource: Resource::Repo,
                    context,
                };
                if !requests.contains(&request) {
                    requests.push(request);
                }
            }
            Plan::Decide(requests)
        }
        Op::Fetch { url, arguments } => {
            let mut context = base;
            match url {
                Some(url) => {
                    context.insert("url".into(), Value::String(url.clone()));
                    context.insert("method".into(), Value::String("GET".into()));
                }
                None => {
                    context.insert("arguments".into(), Value::String(arguments.to_string()));
                }
            }
            Plan::Decide(vec![Request {
                action: "web.fetch",
                resource: Resource::Tool("web".into()),
                context,
            }])
        }
        Op::Mcp {
            server,
            tool,
            arguments,
        } => {
            if gateway_servers.iter().any(|g| g == server) {
                return Plan::Gateway {
                    server: server.clone(),
                };
            }
            let id = format!("{server}/{tool}");
            let mut context = Map::new();
            context.insert("tool".into(), Value::String(id.clone()));
            context.insert("arguments".into(), Value::String(arguments.to_string()));
            lift_arguments(arguments, &root, &call.cwd, &mut context);
            Plan::Decide(vec![Request {
                action: "mcp.call",
                resource: Resource::Tool(id),
                context,
            }])
        }
        Op::Unknown { arguments } => {
            let mut context = base;
            context.insert("arguments".into(), Value::String(arguments.to_string()));
            Plan::Decide(vec![Request {
                action: "mcp.call",
                resource: Resource::Tool(builtin),
                context,
            }])
        }
    }
}

/// The fields Warrant's MCP gateway lifts from tool arguments (see
/// `crates/server/src/mcp.rs`), lifted the same way here so a policy reads
/// them alike whichever enforcement point asked.
fn lift_arguments(args: &Value, root: &Path, cwd: &Path, context: &mut Map<String, Value>) {
    for (field, v) in warrant_core::tool_args::lifted(args) {
        let v = if field == "path" {
            relative_path(root, cwd, v)
        } else {
            v.to_owned()
        };
        context.insert(field.into(), Value::String(v));
    }
}

/// The repository's root: the nearest directory at or above `cwd` holding
/// `.git` (a directory, or a file for worktrees), else `cwd` itself.
pub fn repo_root(cwd: &Path) -> PathBuf {
    let cwd = normalize(cwd);
    let mut dir: Option<&Path> = Some(&cwd);
    while let Some(d) = dir {
        if d.join(".git").exists() {
            return d.to_owned();
        }
        dir = d.parent();
    }
    cwd
}

/// `raw` (absolute, or relative to `cwd`) as a path relative to `root`,
/// `.` for the root itself; absolute when it is outside the root.
pub fn relative_path(root: &Path, cwd: &Path, raw: &str) -> String {
    let joined = if Path::new(raw).is_absolute() {
        PathBuf::from(raw)
    } else {
        cwd.join(raw)
    };
    let path = normalize(&joined);
    match path.strip_prefix(root) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".to_owned(),
        Ok(rel) => rel.to_string_lossy().into_owned(),
        Err(_) => path.to_string_lossy().into_owned(),
    }
}

/// `.` and `..` resolved lexically (a `..` above the root stays at the
/// root). Symbolic links are not followed: the hook decides on the name
/// the agent gave.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `owner/name` from a git remote URL: `https://host/owner/name(.git)`,
/// `git@host:owner/name(.git)`, `ssh://git@host/owner/name.git`, a path.
pub fn repo_from_remote(url: &str) -> Option<String> {
    let url = url.trim();
    let path = if let Some((_, rest)) = url.split_once("://") {
        rest.split_once('/').map(|(_, p)| p)?
    } else if let Some((host, rest)) = url.split_once(':')
        && !host.contains('/')
    {
        rest
    } else {
        url
    };
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let mut parts = path.rsplit('/').filter(|p| !p.is_empty());
    let name = parts.next()?;
    let owner = parts.next()?;
    Some(format!("{owner}/{name}"))
}

/// The files an `apply_patch` body (Codex's edit format) adds, updates,
/// deletes or moves to, in order, without repeats.
pub fn apply_patch_paths(patch: &str) -> Vec<String> {
    const MARKERS: [&str; 4] = [
        "*** Add File: ",
        "*** Update File: ",
        "*** Delete File: ",
        "*** Move to: ",
    ];
    let mut paths: Vec<String> = Vec::new();
    for line in patch.lines() {
        let line = line.trim_end();
        if let Some(path) = MARKERS.iter().find_map(|m| line.strip_prefix(m)) {
            let path = path.trim().to_owned();
            if !path.is_empty() && !paths.contains(&path) {
                paths.push(path);
            }
        }
    }
    paths
}

impl Agent {
    /// The agent's name in tool ids and messages.
    pub fn label(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude-code",
            Agent::Codex => "codex",
            Agent::Cursor => "cursor",
            Agent::Copilot => "copilot",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(tool: &str, op: Op, cwd: &str) -> Call {
        Call {
            agent: Agent::ClaudeCode,
            tool: tool.into(),
            op,
            cwd: PathBuf::from(cwd),
        }
    }

    fn only(plan: Plan) -> Request {
        match plan {
            Plan::Decide(mut r) if r.len() == 1 => r.remove(0),
            other => panic!("expected one request, got {other:?}"),
        }
    }

    #[test]
    fn paths_are_relative_to_the_root_and_normalized() {
        let root = Path::new("/w/repo");
        let cwd = Path::new("/w/repo/src");
        assert_eq!(relative_path(root, cwd, "main.rs"), "src/main.rs");
        assert_eq!(
            relative_path(root, cwd, "/w/repo/.github/workflows/ci.yml"),
            ".github/workflows/ci.yml"
        );
        assert_eq!(
            relative_path(root, cwd, "../.github/./workflows/ci.yml"),
            ".github/workflows/ci.yml"
        );
        assert_eq!(relative_path(root, cwd, ".."), ".");
        // Outside the root: absolute, normalized.
        assert_eq!(
            relative_path(root, cwd, "../../etc/passwd"),
            "/w/etc/passwd"
        );
        assert_eq!(relative_path(root, cwd, "/../../etc/shadow"), "/etc/shadow");
    }

    #[test]
    fn remotes_name_owner_and_repository() {
        for (url, want) in [
            ("https://github.com/acme/api.git", Some("acme/api")),
            ("https://github.com/acme/api", Some("acme/api")),
            ("git@github.com:acme/api.git", Some("acme/api")),
            (
                "ssh://git@git.example.test:2222/acme/api.git",
                Some("acme/api"),
            ),
            ("http://127.0.0.1:8080/git/acme/api.git/", Some("acme/api")),
            ("/srv/git/acme/api.git", Some("acme/api")),
            ("https://github.com/api", None),
            ("", None),
        ] {
            assert_eq!(repo_from_remote(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn apply_patch_names_every_file_once() {
        let patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** Update File: src/x.rs\n\
                     *** Move to: src/y.rs\n@@\n-a\n+b\n*** Delete File: old.txt\n\
                     *** Update File: a.txt\n*** End Patch\n";
        assert_eq!(
            apply_patch_paths(patch),
            ["a.txt", "src/x.rs", "src/y.rs", "old.txt"]
        );
        assert!(apply_patch_paths("echo hi").is_empty());
    }

    #[test]
    fn a_shell_command_is_shell_exec_on_the_repo() {
        let r = only(plan(
            &call(
                "Bash",
                Op::Shell {
                    command: "ls".into(),
                },
                "/nonexistent/w",
            ),
            &[],
        ));
        assert_eq!(r.action, "shell.exec");
        assert_eq!(r.resource, Resource::Repo);
        assert_eq!(r.context["command"], "ls");
        assert_eq!(r.context["tool"], "claude-code/Bash");
        assert_eq!(
            r.body(Some("acme/api"))["resource"],
            json!({"type": "Repo", "id": "acme/api"})
        );
    }

    #[test]
    fn writes_to_several_files_are_one_request_each() {
        let plan = plan(
            &call(
                "apply_patch",
                Op::Write {
                    paths: vec!["a.txt".into(), "/nonexistent/w/a.txt".into(), "b".into()],
                },
                "/nonexistent/w",
            ),
            &[],
        );
        let Plan::Decide(requests) = plan else {
            panic!("{plan:?}")
        };
        let paths: Vec<&Value> = requests.iter().map(|r| &r.context["path"]).collect();
        assert_eq!(paths, [&json!("a.txt"), &json!("b")]);
        assert!(requests.iter().all(|r| r.action == "file.write"));
    }

    #[test]
    fn mcp_tools_are_decided_unless_the_gateway_decides_them() {
        let op = Op::Mcp {
            server: "github".into(),
            tool: "create_issue".into(),
            arguments: json!({"title": "t", "path": "./README.md"}),
        };
        let r = only(plan(
            &call("mcp__github__create_issue", op.clone(), "/nonexistent/w"),
            &[],
        ));
        assert_eq!(r.action, "mcp.call");
        assert_eq!(r.resource, Resource::Tool("github/create_issue".into()));
        assert_eq!(r.context["tool"], "github/create_issue");
        assert_eq!(r.context["path"], "README.md");
        assert_eq!(
            serde_json::from_str::<Value>(r.context["arguments"].as_str().unwrap()).unwrap()["title"],
            "t"
        );
        assert_eq!(
            plan(
                &call("mcp__github__create_issue", op, "/nonexistent/w"),
                &["github".into()]
            ),
            Plan::Gateway {
                server: "github".into()
            }
        );
    }

    #[test]
    fn unknown_tools_are_an_mcp_call_on_a_tool_named_after_the_agent() {
        let r = only(plan(
            &call(
                "Teleport",
                Op::Unknown {
                    arguments: json!({"to": "prod"}),
                },
                "/nonexistent/w",
            ),
            &[],
        ));
        assert_eq!(r.action, "mcp.call");
        assert_eq!(r.resource, Resource::Tool("claude-code/Teleport".into()));
    }

    #[test]
    fn web_fetches_name_the_url_and_searches_their_query() {
        let r = only(plan(
            &call(
                "WebFetch",
                Op::Fetch {
                    url: Some("https://example.com/".into()),
                    arguments: json!({}),
                },
                "/nonexistent/w",
            ),
            &[],
        ));
        assert_eq!(r.action, "web.fetch");
        assert_eq!(r.resource, Resource::Tool("web".into()));
        assert_eq!(r.context["url"], "https://example.com/");
        assert_eq!(r.context["method"], "GET");
        let r = only(plan(
            &call(
                "WebSearch",
                Op::Fetch {
                    url: None,
                    arguments: json!({"query": "warrant"}),
                },
                "/nonexistent/w",
            ),
            &[],
        ));
        assert!(r.context["arguments"].as_str().unwrap().contains("warrant"));
        assert!(!r.context.contains_key("url"));
    }
}
