//! `warrant exec --task ID [--claim FILE] [--lease ENGINE/ROLE=ENV_VAR[,k=v...]]... -- CMD...`
//!
//! Attests as a run of the task (the one-time claim, a DPoP key generated
//! here and kept in memory only), obtains each lease, puts its secret in
//! the child's environment, runs the child, and when the child exits —
//! normally, with an error, or by a signal — revokes the leases and ends
//! the run. The exit code is the child's (128 + the signal number when a
//! signal ended it). The run token is refreshed in the background while the
//! child runs, so a long command can still end its run cleanly.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde_json::{Value, json};
use warrant_crypto::jws::{JwsAlg, ProofKey};

use super::Context;
use crate::error::UserError;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The task to act for
    #[arg(long, value_name = "TASK_ID")]
    task: String,
    /// A file holding the task's one-time claim (`wcl_...`) [default: the
    /// `WARRANT_CLAIM` environment variable]
    #[arg(long, value_name = "FILE")]
    claim: Option<PathBuf>,
    /// A credential for the child: `ENGINE/ROLE=ENV_VAR`, optionally with
    /// engine parameters `,key=value` (e.g. `vault/ci=NPM_TOKEN,secret=npm-token`).
    /// The lease's main secret goes in ENV_VAR, any others in ENV_VAR_<NAME>
    #[arg(long = "lease", value_name = "ENGINE/ROLE=ENV_VAR")]
    leases: Vec<String>,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// One `--lease` argument.
struct LeaseSpec {
    engine: String,
    role: String,
    env: String,
    params: serde_json::Map<String, Value>,
}

fn parse_lease(raw: &str) -> Result<LeaseSpec, UserError> {
    let bad = || {
        UserError::new(format!(
            "`--lease {raw}` is not `ENGINE/ROLE=ENV_VAR[,key=value...]`"
        ))
        .hint("for example `--lease pg-main/readonly=DATABASE_URL`")
    };
    let mut parts = raw.split(',');
    let head = parts.next().ok_or_else(bad)?;
    let (path, env) = head.split_once('=').ok_or_else(bad)?;
    let (engine, role) = path.split_once('/').ok_or_else(bad)?;
    let env_ok = !env.is_empty()
        && env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !env.starts_with(|c: char| c.is_ascii_digit());
    if engine.is_empty() || role.is_empty() || !env_ok {
        return Err(bad());
    }
    let mut params = serde_json::Map::new();
    for p in parts {
        let (k, v) = p.split_once('=').ok_or_else(bad)?;
        params.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Ok(LeaseSpec {
        engine: engine.to_owned(),
        role: role.to_owned(),
        env: env.to_owned(),
        params,
    })
}

/// The run: its key, token and what it holds.
struct Run {
    http: reqwest::Client,
    base: String,
    key: ProofKey,
    token: tokio::sync::RwLock<String>,
}

impl Run {
    fn proof(&self, method: &str, path: &str, token: Option<&str>) -> anyhow::Result<String> {
        let mut claims = json!({
            "jti": hex::encode(warrant_crypto::random_bytes::<16>()?),
            "htm": method,
            "htu": format!("{}{path}", self.base),
            "iat": jiff::Timestamp::now().as_second(),
        });
        if let Some(t) = token {
            claims["ath"] = warrant_token::access_token_hash(t).into();
        }
        Ok(self.key.sign_with_jwk("dpop+jwt", &claims)?)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let token = self.token.read().await.clone();
        let proof = self.proof(method.as_str(), path, Some(&token))?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", proof);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach Warrant at {}", self.base))?;
        let status = res.status();
        let answer: Value = res.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!(UserError::new(format!(
                "{path}: {} ({})",
                answer["detail"]
                    .as_str()
                    .or(answer["error_description"].as_str())
                    .unwrap_or("refused"),
                answer["code"]
                    .as_str()
                    .or(answer["error"].as_str())
                    .unwrap_or(status.as_str())
            )));
        }
        Ok(answer)
    }

    async fn token_grant(&self, form: &[(&str, &str)]) -> anyhow::Result<Value> {
        let bearer = form
            .iter()
            .find(|(k, _)| *k == "subject_token")
            .map(|(_, v)| *v);
        let proof = self.proof("POST", "/v1/token", bearer)?;
        let res = self
            .http
            .post(format!("{}/v1/token", self.base))
            .header("DPoP", proof)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form.iter()
                    .map(|(k, v)| format!("{k}={}", urlencode(v)))
                    .collect::<Vec<_>>()
                    .join("&"),
            )
            .send()
            .await
            .with_context(|| format!("cannot reach Warrant at {}", self.base))?;
        let status = res.status();
        let answer: Value = res.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!(UserError::new(format!(
                "the token endpoint refused: {} ({})",
                answer["error_description"]
                    .as_str()
                    .unwrap_or("no reason given"),
                answer["error"].as_str().unwrap_or(status.as_str())
            )));
        }
        Ok(answer)
    }
}

fn read_claim(path: Option<&PathBuf>) -> anyhow::Result<String> {
    let raw = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| {
            UserError::new(format!("cannot read the claim file `{}`: {e}", p.display()))
        })?,
        None => std::env::var("WARRANT_CLAIM").map_err(|_| {
            UserError::new("no claim: give `--claim FILE` or set WARRANT_CLAIM")
                .hint("the claim is printed once by `warrant task create --output json`")
        })?,
    };
    let claim = raw.trim().to_owned();
    if claim.is_empty() {
        return Err(UserError::new("the claim is empty").into());
    }
    Ok(claim)
}

/// The lease's main secret: the one a program most likely wants.
fn main_secret(secrets: &serde_json::Map<String, Value>) -> Option<(&String, &str)> {
    for name in ["url", "token", "value", "certificate", "password"] {
        if let Some((k, Value::String(v))) = secrets.get_key_value(name) {
            return Some((k, v.as_str()));
        }
    }
    secrets.iter().find_map(|(k, v)| v.as_str().map(|s| (k, s)))
}

pub async fn run(ctx: &Context, args: ExecArgs) -> anyhow::Result<i32> {
    let specs: Vec<LeaseSpec> = args
        .leases
        .iter()
        .map(|l| parse_lease(l))
        .collect::<Result<_, _>>()?;
    let claim = read_claim(args.claim.as_ref())?;
    let base = ctx.addr()?.as_str().trim_end_matches('/').to_owned();
    let run = Run {
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        base,
        key: ProofKey::generate(JwsAlg::ES256)?,
        token: tokio::sync::RwLock::new(String::new()),
    };
    let granted = run
        .token_grant(&[
            ("grant_type", "urn:warrant:grant-type:task-claim"),
            ("claim", &claim),
        ])
        .await?;
    if granted["task_id"].as_str() != Some(args.task.as_str()) {
        anyhow::bail!(UserError::new(format!(
            "the claim is for task `{}`, not `{}`",
            granted["task_id"].as_str().unwrap_or("?"),
            args.task
        )));
    }
    let run_id = granted["run_id"].as_str().unwrap_or_default().to_owned();
    let ttl = granted["expires_in"].as_u64().unwrap_or(600);
    *run.token.write().await = granted["access_token"]
        .as_str()
        .context("no run token in the answer")?
        .to_owned();
    eprintln!("warrant: run {run_id} started for task {}", args.task);

    // The leases, all or nothing: a failure revokes what was obtained.
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut held: Vec<String> = Vec::new();
    for spec in &specs {
        let body = json!({"engine": spec.engine, "role": spec.role, "params": spec.params});
        match run
            .call(reqwest::Method::POST, "/v1/leases", Some(&body))
            .await
        {
            Ok(lease) => {
                held.push(lease["id"].as_str().unwrap_or_default().to_owned());
                let secrets = lease["secrets"].as_object().cloned().unwrap_or_default();
                if let Some((main, value)) = main_secret(&secrets) {
                    env.insert(spec.env.clone(), value.to_owned());
                    for (k, v) in &secrets {
                        if k != main
                            && let Some(v) = v.as_str()
                        {
                            env.insert(
                                format!("{}_{}", spec.env, k.to_ascii_uppercase()),
                                v.to_owned(),
                            );
                        }
                    }
                }
                eprintln!(
                    "warrant: lease {} ({}/{}) until {}",
                    lease["id"].as_str().unwrap_or("?"),
                    spec.engine,
                    spec.role,
                    lease["expires_at"].as_str().unwrap_or("?")
                );
            }
            Err(e) => {
                finish(&run, &held).await;
                return Err(e);
            }
        }
    }

    // Keep the run token fresh while the child runs.
    let refresher = {
        let every = Duration::from_secs((ttl / 2).max(5));
        let run = &run;
        async move {
            loop {
                tokio::time::sleep(every).await;
                let current = run.token.read().await.clone();
                match run
                    .token_grant(&[
                        ("grant_type", "urn:warrant:grant-type:refresh"),
                        ("subject_token", &current),
                    ])
                    .await
                {
                    Ok(fresh) => {
                        if let Some(t) = fresh["access_token"].as_str() {
                            *run.token.write().await = t.to_owned();
                        }
                    }
                    Err(e) => eprintln!("warrant: cannot refresh the run token: {e:#}"),
                }
            }
        }
    };

    let (program, rest) = args
        .command
        .split_first()
        .context("no command given after `--`")?;
    let mut child = tokio::process::Command::new(program);
    child.args(rest).envs(&env).env_remove("WARRANT_CLAIM");
    let status = match child.spawn() {
        Ok(mut child) => {
            let waited = async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                let mut int =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
                loop {
                    tokio::select! {
                        s = child.wait() => return s,
                        _ = term.recv() => forward(&child, libc_signal::TERM),
                        _ = int.recv() => forward(&child, libc_signal::INT),
                    }
                }
            };
            tokio::select! {
                s = waited => s,
                () = refresher => unreachable_refresher(),
            }
        }
        Err(e) => {
            finish(&run, &held).await;
            return Err(UserError::new(format!("cannot start `{program}`: {e}")).into());
        }
    };
    finish(&run, &held).await;
    let status = status.context("waiting for the command failed")?;
    Ok(exit_code(status))
}

/// Signal numbers, without a libc dependency.
mod libc_signal {
    pub const INT: i32 = 2;
    pub const TERM: i32 = 15;
}

/// Passes a signal on to the child (it decides how to end).
fn forward(child: &tokio::process::Child, signal: i32) {
    if let Some(pid) = child.id() {
        // `kill` the program: no unsafe code, no libc binding.
        let _ = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status();
    }
}

fn unreachable_refresher() -> std::io::Result<ExitStatus> {
    Err(std::io::Error::other("the token refresher stopped"))
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}

/// Revokes the leases and ends the run; problems are reported, not fatal
/// (the server revokes leases of an ended run or task on its own).
async fn finish(run: &Run, leases: &[String]) {
    for id in leases {
        if let Err(e) = run
            .call(reqwest::Method::DELETE, &format!("/v1/leases/{id}"), None)
            .await
        {
            eprintln!("warrant: revoking lease {id}: {e:#}");
        }
    }
    match run
        .call(reqwest::Method::POST, "/v1/runs/me/end", Some(&json!({})))
        .await
    {
        Ok(_) => eprintln!("warrant: run ended; its leases are revoked"),
        Err(e) => eprintln!("warrant: ending the run: {e:#} (its leases expire with the task)"),
    }
}

/// `application/x-www-form-urlencoded` value encoding.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
