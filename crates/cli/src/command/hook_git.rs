//! `warrant hook git-pre-receive`: a git server's pre-receive hook that
//! asks Warrant about every ref a push updates.
//!
//! Installed as `hooks/pre-receive` of the bare repositories a git server
//! (e.g. `git http-backend` behind nginx with Warrant's forward auth)
//! serves:
//!
//! ```sh
//! #!/bin/sh
//! exec /usr/local/bin/warrant hook git-pre-receive --addr https://warrant.example
//! ```
//!
//! git gives the hook one `<old> <new> <ref>` line per ref on stdin. The
//! hook posts them, with the paths the new commits change, to `POST
//! /v1/authz/git/ref-updates` with the pusher's credential — the
//! `Authorization` value the proxy passed to the CGI environment
//! (`WARRANT_GIT_CREDENTIAL`, else `HTTP_AUTHORIZATION`) — and Warrant
//! decides each (`repo.push` of a branch with `branch` and `commit`,
//! `release` of a tag, `delete` of a deletion). Unless every ref is allowed
//! it prints the reasons (and the approval to ask for) on stderr, which
//! git shows the pusher as `remote:` lines, and exits 1 so git refuses the
//! whole push. Warrant unreachable, a refused credential, anything
//! unexpected: exit 1 too. The push goes ahead only on Warrant's explicit
//! allow.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args as ClapArgs;
use serde_json::{Value, json};

use super::Context;

/// The environment variable the proxy puts the pusher's `Authorization`
/// header in (e.g. nginx `fastcgi_param WARRANT_GIT_CREDENTIAL $http_authorization;`).
pub const CREDENTIAL_ENV: &str = "WARRANT_GIT_CREDENTIAL";
/// Most changed paths sent for one push (Warrant takes 1000 per ref and a
/// 64 KiB body).
const MAX_PATHS: usize = 1000;
/// Most of stdin read: git writes one short line per ref.
const MAX_INPUT: u64 = 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The git server's origin as pushers name it (`https://git.example.com`)
    /// [default: from the CGI variables `REQUEST_SCHEME`/`HTTPS` and `HTTP_HOST`]
    #[arg(long, env = "WARRANT_GIT_ORIGIN", value_name = "URL")]
    origin: Option<String>,
    /// The repository pushed to, `owner/name` [default: from the CGI
    /// variable `PATH_INFO`, else the repository's directory under
    /// `GIT_PROJECT_ROOT`]
    #[arg(long, env = "WARRANT_GIT_REPO", value_name = "OWNER/NAME")]
    repo: Option<String>,
}

/// One line of the hook's input.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Update {
    old: String,
    new: String,
    name: String,
}

fn parse_updates(input: &str) -> anyhow::Result<Vec<Update>> {
    input
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(old), Some(new), Some(name), None) => Ok(Update {
                    old: old.to_owned(),
                    new: new.to_owned(),
                    name: name.to_owned(),
                }),
                _ => anyhow::bail!(
                    "unexpected input line `{}`",
                    line.chars().take(200).collect::<String>()
                ),
            }
        })
        .collect()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The origin from the CGI environment git http-backend runs in.
fn cgi_origin() -> Option<String> {
    let host = env("HTTP_HOST")?;
    let scheme = env("REQUEST_SCHEME").unwrap_or_else(|| {
        match env("HTTPS").as_deref() {
            Some("on" | "ON" | "1") => "https",
            _ => "http",
        }
        .to_owned()
    });
    Some(format!("{scheme}://{host}"))
}

/// The repository path from the CGI environment: `PATH_INFO` without its
/// git service suffix, else `GIT_DIR` under `GIT_PROJECT_ROOT`.
fn cgi_repo() -> Option<String> {
    if let Some(info) = env("PATH_INFO") {
        for suffix in ["/git-receive-pack", "/info/refs"] {
            if let Some(p) = info.strip_suffix(suffix) {
                return Some(p.trim_matches('/').to_owned());
            }
        }
    }
    let root = std::fs::canonicalize(env("GIT_PROJECT_ROOT")?).ok()?;
    let dir = std::fs::canonicalize(env("GIT_DIR").unwrap_or_else(|| ".".into())).ok()?;
    dir.strip_prefix(root)
        .ok()
        .and_then(|p| p.to_str().map(str::to_owned))
}

fn zero(id: &str) -> bool {
    id.bytes().all(|b| b == b'0')
}

/// The paths the commits of `u` change (new commits only, for a new ref);
/// nothing for a deletion.
async fn changed_paths(u: &Update) -> anyhow::Result<BTreeSet<String>> {
    if zero(&u.new) {
        return Ok(BTreeSet::new());
    }
    let args: Vec<&str> = if zero(&u.old) {
        vec![
            "log",
            "--format=",
            "--name-only",
            "-z",
            &u.new,
            "--not",
            "--all",
        ]
    } else {
        vec!["diff", "--name-only", "-z", &u.old, &u.new]
    };
    let out = tokio::process::Command::new("git")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run git to list the changed paths")?;
    if !out.status.success() {
        anyhow::bail!(
            "`git {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect())
}

/// Runs the hook; 0 lets the push through, anything else refuses it.
pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<i32> {
    match check(ctx, args).await {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("warrant: the push is refused: {e:#}");
            Ok(1)
        }
    }
}

async fn check(ctx: &Context, args: Args) -> anyhow::Result<i32> {
    let mut input = String::new();
    std::io::stdin()
        .take(MAX_INPUT)
        .read_to_string(&mut input)
        .context("reading the ref updates git gave the hook")?;
    let updates = parse_updates(&input)?;
    if updates.is_empty() {
        return Ok(0);
    }
    let authorization = env(CREDENTIAL_ENV)
        .or_else(|| env("HTTP_AUTHORIZATION"))
        .with_context(|| {
            format!(
                "no credential: the proxy must pass the pusher's `Authorization` header to the git backend as {CREDENTIAL_ENV}"
            )
        })?;
    let origin = args
        .origin
        .or_else(cgi_origin)
        .context("the git server's origin is unknown: give `--origin` or set WARRANT_GIT_ORIGIN")?;
    let repo = args
        .repo
        .or_else(cgi_repo)
        .context("the repository is unknown: give `--repo` or set WARRANT_GIT_REPO")?;

    let mut total = 0;
    let mut body_updates = Vec::with_capacity(updates.len());
    for u in &updates {
        let paths = changed_paths(u).await?;
        total += paths.len();
        if total > MAX_PATHS {
            anyhow::bail!(
                "it changes more than {MAX_PATHS} paths, more than Warrant checks in one push: push it in smaller parts"
            );
        }
        body_updates
            .push(json!({"ref": u.name, "old": u.old, "new": u.new, "changed_paths": paths}));
    }

    let base = crate::client::display_addr(&ctx.addr()?);
    let url = format!("{base}/v1/authz/git/ref-updates");
    let http = reqwest::Client::builder()
        .user_agent(concat!(
            "warrant-git-pre-receive/",
            env!("CARGO_PKG_VERSION")
        ))
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let res = http
        .post(&url)
        .header("Authorization", authorization)
        .json(&json!({"origin": origin, "repo": repo, "updates": body_updates}))
        .send()
        .await
        .with_context(|| format!("cannot reach Warrant at {base}"))?;
    let status = res.status();
    let answer: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        anyhow::bail!(
            "Warrant refused to check it: {} ({})",
            answer["detail"].as_str().unwrap_or("no reason given"),
            answer["code"].as_str().unwrap_or(status.as_str())
        );
    }
    let results = answer["updates"].as_array().cloned().unwrap_or_default();
    for r in &results {
        let name = r["ref"].as_str().unwrap_or("?");
        let reasons = r["reasons"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        match r["decision"].as_str() {
            Some("allow") => eprintln!("warrant: {name}: allowed"),
            Some("approval_required") => {
                let id = r["approval_id"].as_str().unwrap_or("?");
                eprintln!("warrant: {name}: needs a human approval: {reasons}");
                eprintln!(
                    "warrant: approval {id} is pending for commit {}; once an approver runs `warrant approvals approve {id} --reason ...`, push the same commit again",
                    r["new"].as_str().unwrap_or("?")
                );
            }
            _ => eprintln!(
                "warrant: {name}: denied ({}): {reasons}",
                r["code"].as_str().unwrap_or("?")
            ),
        }
    }
    // Only an explicit allow of every ref the hook was given lets it pass.
    let allowed = answer["allowed"] == Value::Bool(true)
        && results.len() == updates.len()
        && results.iter().all(|r| r["decision"] == "allow");
    if allowed {
        Ok(0)
    } else {
        eprintln!("warrant: the push is refused");
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_input_is_one_update_per_line() {
        let z = "0".repeat(40);
        let a = "a".repeat(40);
        let input = format!("{z} {a} refs/heads/feature/x\n{a} {z} refs/tags/v1\n\n");
        assert_eq!(
            parse_updates(&input).unwrap(),
            vec![
                Update {
                    old: z.clone(),
                    new: a.clone(),
                    name: "refs/heads/feature/x".into()
                },
                Update {
                    old: a,
                    new: z,
                    name: "refs/tags/v1".into()
                },
            ]
        );
        assert!(parse_updates("only two\n").is_err());
        assert!(parse_updates("a b c d\n").is_err());
    }
}
