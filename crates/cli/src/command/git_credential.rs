//! `warrant git-credential get|store|erase`: git's credential helper
//! (git-credential(1)), for agents run under `warrant run` or `warrant exec`.
//!
//! ```text
//! git config credential.helper '/path/to/warrant git-credential'
//! git config credential.useHttpPath true
//! ```
//!
//! `get` reads git's `key=value` lines, and for an `http(s)` remote with a
//! path asks Warrant, as the run (through the per-run socket in
//! `WARRANT_RUN_SOCKET`), for a credential for that one repository at that
//! git server. It answers `username=x-warrant` and the credential as
//! `password` and, when git announced `capability[]=authtype` (git 2.46 and
//! later), also as `authtype=Bearer` + `credential`, which git then sends as
//! `Authorization: Bearer <credential>` and never stores (`ephemeral`).
//!
//! Whenever there is nothing to give — another protocol, no path, no run,
//! a repository the task does not cover, Warrant unreachable — it prints
//! nothing and exits 0, saying why on stderr: git then fails cleanly with
//! its own authentication error. `store` and `erase` read their input and do
//! nothing: a credential lives a few minutes and is asked for anew.

use std::io::Read as _;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde_json::{Value, json};

use super::Context;
use crate::run_socket::{RUN_SOCKET_ENV, RunSocketClient};

/// The most of git's description read (git limits a line to 64 KiB).
const MAX_INPUT: u64 = 256 * 1024;
/// How long Warrant gets to answer.
const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Args)]
pub struct GitCredentialArgs {
    /// What git asks for: `get`, `store` or `erase` (anything else is
    /// ignored, as the protocol requires)
    #[arg(value_name = "OPERATION")]
    operation: String,
}

/// What git tells a helper about the credential it wants.
#[derive(Debug, Default, PartialEq, Eq)]
struct Description {
    protocol: Option<String>,
    host: Option<String>,
    path: Option<String>,
    /// git announced `capability[]=authtype`.
    authtype: bool,
}

/// Reads `key=value` lines up to a blank line or the end.
fn parse(input: &str) -> Description {
    let mut d = Description::default();
    for line in input.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "protocol" => d.protocol = Some(value.to_owned()),
            "host" => d.host = Some(value.to_owned()),
            "path" => d.path = Some(value.to_owned()),
            "capability[]" if value == "authtype" => d.authtype = true,
            _ => {}
        }
    }
    d
}

/// The credential as git reads it back.
fn answer(credential: &str, expires_at: Option<i64>, authtype: bool) -> String {
    let mut out = format!(
        "username={}\npassword={credential}\n",
        warrant_token::git::GIT_USERNAME
    );
    if let Some(exp) = expires_at {
        out.push_str(&format!("password_expiry_utc={exp}\n"));
    }
    if authtype {
        out.push_str(&format!(
            "capability[]=authtype\nauthtype=Bearer\ncredential={credential}\nephemeral=1\n"
        ));
    }
    out
}

pub async fn run(_ctx: &Context, args: GitCredentialArgs) -> anyhow::Result<()> {
    let mut input = String::new();
    // git writes its description and closes; a helper that does not read
    // it could leave git blocked on a full pipe.
    std::io::stdin()
        .take(MAX_INPUT)
        .read_to_string(&mut input)
        .context("reading git's credential description")?;
    if args.operation != "get" {
        return Ok(());
    }
    let described = parse(&input);
    match get(&described).await {
        Ok(Some(out)) => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(out.as_bytes())?;
            stdout.flush()?;
        }
        Ok(None) => {}
        Err(e) => eprintln!("warrant git-credential: no credential: {e:#}"),
    }
    Ok(())
}

/// The answer for git, or `None` (with the reason on stderr) when this
/// helper has nothing to give.
async fn get(d: &Description) -> anyhow::Result<Option<String>> {
    let skip = |why: &str| {
        eprintln!("warrant git-credential: {why}");
        Ok(None)
    };
    let protocol = match d.protocol.as_deref() {
        Some(p @ ("http" | "https")) => p,
        _ => return Ok(None),
    };
    let Some(host) = d.host.as_deref().filter(|h| !h.is_empty()) else {
        return Ok(None);
    };
    let Some(path) = d.path.as_deref().filter(|p| !p.is_empty()) else {
        return skip(
            "git did not say which repository: set `git config credential.useHttpPath true`",
        );
    };
    let Some(socket) = RunSocketClient::from_env() else {
        return skip(&format!(
            "not under `warrant run` or `warrant exec` ({RUN_SOCKET_ENV} is not set)"
        ));
    };
    let info = socket.run().await?;
    let url = format!("{}/v1/git/credentials", info.warrant);
    let proof = socket.authorize("POST", &url).await?;
    let http = reqwest::Client::builder()
        .user_agent(concat!(
            "warrant-git-credential/",
            env!("CARGO_PKG_VERSION")
        ))
        .timeout(TIMEOUT)
        // A redirect could carry the run token away.
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let res = http
        .post(&url)
        .header("Authorization", &proof.authorization)
        .header("DPoP", &proof.dpop)
        .json(&json!({"protocol": protocol, "host": host, "path": path}))
        .send()
        .await
        .with_context(|| format!("cannot reach Warrant at {}", info.warrant))?;
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return skip(&format!(
            "Warrant refused a credential for `{protocol}://{host}/{path}`: {} ({})",
            body["detail"]
                .as_str()
                .or(body["error_description"].as_str())
                .unwrap_or("no reason given"),
            body["code"]
                .as_str()
                .or(body["error"].as_str())
                .unwrap_or(status.as_str()),
        ));
    }
    let Some(credential) = body["credential"]
        .as_str()
        .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_graphic()))
    else {
        anyhow::bail!("Warrant's answer holds no credential");
    };
    let expires_at = body["expires_at"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_second());
    Ok(Some(answer(credential, expires_at, d.authtype)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_descriptions_are_read_up_to_the_blank_line() {
        let d = parse(
            "capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=git.example:8443\npath=acme/api.git\nwwwauth[]=Basic realm=\"warrant\"\n\nhost=ignored\n",
        );
        assert_eq!(
            d,
            Description {
                protocol: Some("https".into()),
                host: Some("git.example:8443".into()),
                path: Some("acme/api.git".into()),
                authtype: true,
            }
        );
        let d = parse("protocol=http\r\nhost=h\r\nnonsense\r\n");
        assert_eq!(d.host.as_deref(), Some("h"));
        assert!(!d.authtype);
    }

    #[test]
    fn the_bearer_form_is_given_only_to_a_git_that_asked_for_it() {
        assert_eq!(
            answer("c.r.ed", Some(1700), false),
            "username=x-warrant\npassword=c.r.ed\npassword_expiry_utc=1700\n"
        );
        let out = answer("c.r.ed", None, true);
        assert!(out.contains("capability[]=authtype\nauthtype=Bearer\ncredential=c.r.ed\n"));
        assert!(out.starts_with("username=x-warrant\npassword=c.r.ed\n"));
    }

    #[tokio::test]
    async fn nothing_is_given_for_other_protocols_or_without_a_path() {
        for input in [
            "protocol=ssh\nhost=git.example\npath=acme/api.git\n",
            "protocol=https\npath=acme/api.git\n",
            "protocol=https\nhost=git.example\n",
        ] {
            assert_eq!(get(&parse(input)).await.unwrap(), None, "{input}");
        }
    }
}
