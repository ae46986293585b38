//! `warrant bench decisions`: HTTP decisions per second against a real
//! server in this process (`serve` on 127.0.0.1:0, a fresh private data
//! directory, SQLite with durable commits), at a stated concurrency.
//!
//! Each client is one agent run (its own task, claim and DPoP key). A timed
//! request is the whole path an enforcement point pays for: the run token
//! and proof verified, the run and task checked in the store, the agent and
//! delegating user loaded (briefly cached), the run's history read, the
//! default pack evaluated, and the `decision` event committed durably
//! through the group committer before the answer. Proofs are signed before
//! the timer starts. The request is an allowed `repo.read`, which after the
//! first one adds nothing to the run's history, so every timed decision is
//! a standalone (group-committed) audit event.

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use warrant_crypto::jws::{JwsAlg, ProofKey};

use super::{DecisionsArgs, Sample};

struct Client {
    http: reqwest::Client,
    base: String,
}

fn proof(key: &ProofKey, method: &str, url: &str, token: Option<&str>) -> anyhow::Result<String> {
    let mut claims = json!({
        "jti": hex::encode(warrant_crypto::random_bytes::<16>()?),
        "htm": method,
        "htu": url,
        "iat": jiff::Timestamp::now().as_second(),
    });
    if let Some(t) = token {
        claims["ath"] = warrant_token::access_token_hash(t).into();
    }
    Ok(key.sign_with_jwk("dpop+jwt", &claims)?)
}

impl Client {
    async fn admin_post(&self, admin: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(admin)
            .json(&body)
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        anyhow::ensure!(status.is_success(), "`POST {path}` failed: {status} {body}");
        Ok(body)
    }

    /// A task and a run redeemed from it: the run's key and token.
    async fn run(&self, admin: &str) -> anyhow::Result<(ProofKey, String)> {
        let task = self
            .admin_post(
                admin,
                "/v1/tasks",
                json!({
                    "agent": "bench",
                    "purpose": "benchmark decisions",
                    "ttl": "8h",
                    "scope": {"repos": ["acme/api"], "actions": ["repo.read"]},
                }),
            )
            .await?;
        let claim = task["claim"].as_str().context("the task has no claim")?;
        let key = ProofKey::generate(JwsAlg::ES256)?;
        let url = format!("{}/v1/token", self.base);
        let res = self
            .http
            .post(&url)
            .header("DPoP", proof(&key, "POST", &url, None)?)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=urn%3Awarrant%3Agrant-type%3Atask-claim&claim={claim}"
            ))
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        anyhow::ensure!(status.is_success(), "the claim grant failed: {body}");
        let token = body["access_token"]
            .as_str()
            .context("no access token")?
            .to_owned();
        Ok((key, token))
    }

    async fn decide(&self, key: &ProofKey, token: &str) -> anyhow::Result<Duration> {
        let url = format!("{}/v1/decisions", self.base);
        let p = proof(key, "POST", &url, Some(token))?;
        let body = json!({"action": "repo.read", "resource": {"type": "Repo", "id": "acme/api"}})
            .to_string();
        let t = Instant::now();
        let res = self
            .http
            .post(&url)
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", p)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = res.status();
        let answer: Value = res.json().await?;
        let took = t.elapsed();
        anyhow::ensure!(
            status.is_success() && answer["decision"] == "allow",
            "the decision failed: {status} {answer}"
        );
        Ok(took)
    }
}

pub(super) async fn run(a: DecisionsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.requests > 0 && a.concurrency > 0,
        "--requests and --concurrency must be positive"
    );
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .context("cannot make the temporary directory private")?;
    let data_dir = dir.path().join("data");
    let opts = warrant_server::ServeOptions {
        data_dir: Some(data_dir.clone()),
        listen: Some("127.0.0.1:0".parse()?),
        store_url: None,
        config_file: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(warrant_server::serve(
        opts,
        async move {
            let _ = stop_rx.await;
        },
        move |ready: &warrant_server::Ready| {
            let _ = ready_tx.send(ready.clone());
        },
    ));
    let Ok(ready) = ready_rx.await else {
        server.await.context("the server task failed")??;
        anyhow::bail!("the server stopped before it was ready");
    };
    let admin = std::fs::read_to_string(data_dir.join("admin.token"))
        .context("cannot read the admin token")?
        .trim_end()
        .to_owned();
    let client = Client {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(a.concurrency)
            .build()?,
        base: ready.public_url.clone(),
    };
    let result = measure(&client, &admin, &a, ready.store).await;
    let _ = stop_tx.send(());
    server.await.context("the server task failed")??;
    result
}

async fn measure(
    client: &Client,
    admin: &str,
    a: &DecisionsArgs,
    backend: &str,
) -> anyhow::Result<()> {
    client
        .admin_post(
            admin,
            "/v1/agents",
            json!({"name": "bench", "tier": "propose"}),
        )
        .await?;
    let mut runs = Vec::with_capacity(a.concurrency);
    for _ in 0..a.concurrency {
        let (key, token) = client.run(admin).await?;
        // Warm-up: the first decision records the run's history.
        client.decide(&key, &token).await?;
        runs.push((key, token));
    }
    println!(
        "decision bench on an in-process server ({backend}, durable group-committed audit), \
         default pack, loopback HTTP, {} concurrent runs",
        a.concurrency
    );
    let per_client = a.requests.div_ceil(a.concurrency);
    let started = Instant::now();
    let tasks: Vec<_> = runs
        .into_iter()
        .map(|(key, token)| {
            let client = Client {
                http: client.http.clone(),
                base: client.base.clone(),
            };
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    latencies.push(client.decide(&key, &token).await?);
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(per_client * a.concurrency);
    for t in tasks {
        latencies.extend(t.await.context("a client task failed")??);
    }
    let elapsed = started.elapsed();
    Sample {
        mode: format!("POST /v1/decisions, {} concurrent", a.concurrency),
        events: latencies.len(),
        elapsed,
        latencies,
    }
    .print();
    Ok(())
}
