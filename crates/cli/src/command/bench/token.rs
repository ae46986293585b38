//! `warrant bench token`: a real server in this process (`serve` on
//! 127.0.0.1:0, a fresh private data directory, SQLite with durable
//! commits), driven over HTTP on loopback like any agent would.
//!
//! (a) claim-grant issuance: one task per redemption (created untimed), then
//! the timed `POST /v1/token` — DPoP verification, the claim spent, the run
//! created and its `run.started` event committed durably, the token minted.
//! (b) the cost of DPoP + run-token verification per request: `GET
//! /v1/runs/me` with `Authorization: DPoP` and a fresh proof vs `GET
//! /v1/users/me` with a bearer API token. Proofs are signed before the timer
//! starts, so only the server's work (and loopback HTTP) is measured.

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use warrant_crypto::jws::{JwsAlg, ProofKey};

use super::{Sample, TokenArgs, ms};

struct Bench {
    http: reqwest::Client,
    base: String,
    admin: String,
}

impl Bench {
    async fn post_json(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        anyhow::ensure!(status.is_success(), "`POST {path}` failed: {status} {body}");
        Ok(body)
    }

    async fn task(&self) -> anyhow::Result<String> {
        let task = self
            .post_json(
                "/v1/tasks",
                json!({
                    "agent": "bench",
                    "purpose": "benchmark run-token issuance",
                    "ttl": "30m",
                    "scope": {"repos": ["acme/api"], "actions": ["repo.read"]},
                }),
            )
            .await?;
        task["claim"]
            .as_str()
            .map(str::to_owned)
            .context("the task has no claim")
    }
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

pub(super) async fn run(a: TokenArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.issuances > 0 && a.requests > 0,
        "--issuances and --requests must be positive"
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
    let bench = Bench {
        http: reqwest::Client::builder().build()?,
        base: ready.public_url.clone(),
        admin,
    };
    let result = measure(&bench, &a, ready.store).await;
    let _ = stop_tx.send(());
    server.await.context("the server task failed")??;
    result
}

async fn measure(bench: &Bench, a: &TokenArgs, backend: &str) -> anyhow::Result<()> {
    bench
        .post_json("/v1/agents", json!({"name": "bench", "tier": "propose"}))
        .await?;
    println!(
        "token bench on an in-process server ({backend}, durable commits), loopback HTTP, sequential"
    );
    let token_url = format!("{}/v1/token", bench.base);

    // (a) Claim-grant issuance.
    let mut latencies = Vec::with_capacity(a.issuances);
    let mut elapsed = Duration::ZERO;
    let mut last = None;
    for _ in 0..a.issuances {
        let claim = bench.task().await?;
        let key = ProofKey::generate(JwsAlg::ES256)?;
        let p = proof(&key, "POST", &token_url, None)?;
        let t = Instant::now();
        let res = bench
            .http
            .post(&token_url)
            .header("DPoP", p)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=urn%3Awarrant%3Agrant-type%3Atask-claim&claim={}",
                urlencode(&claim)
            ))
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        let took = t.elapsed();
        anyhow::ensure!(status.is_success(), "the claim grant failed: {body}");
        latencies.push(took);
        elapsed += took;
        let token = body["access_token"]
            .as_str()
            .context("no access token")?
            .to_owned();
        last = Some((key, token));
    }
    Sample {
        mode: "claim grant -> run token (POST /v1/token)".into(),
        events: a.issuances,
        elapsed,
        latencies,
    }
    .print();

    // (b) Per-request verification cost.
    let (key, token) = last.context("no run token was issued")?;
    let me_url = format!("{}/v1/runs/me", bench.base);
    let mut dpop = Vec::with_capacity(a.requests);
    let mut dpop_total = Duration::ZERO;
    for _ in 0..a.requests {
        let p = proof(&key, "GET", &me_url, Some(&token))?;
        let t = Instant::now();
        let res = bench
            .http
            .get(&me_url)
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", p)
            .send()
            .await?;
        let status = res.status();
        res.bytes().await?;
        let took = t.elapsed();
        anyhow::ensure!(status.is_success(), "GET /v1/runs/me failed: {status}");
        dpop.push(took);
        dpop_total += took;
    }
    let users_url = format!("{}/v1/users/me", bench.base);
    let mut bearer = Vec::with_capacity(a.requests);
    let mut bearer_total = Duration::ZERO;
    for _ in 0..a.requests {
        let t = Instant::now();
        let res = bench
            .http
            .get(&users_url)
            .bearer_auth(&bench.admin)
            .send()
            .await?;
        let status = res.status();
        res.bytes().await?;
        let took = t.elapsed();
        anyhow::ensure!(status.is_success(), "GET /v1/users/me failed: {status}");
        bearer.push(took);
        bearer_total += took;
    }
    let mut d = Sample {
        mode: "GET /v1/runs/me, DPoP run token + proof".into(),
        events: a.requests,
        elapsed: dpop_total,
        latencies: dpop,
    };
    d.print();
    let mut b = Sample {
        mode: "GET /v1/users/me, bearer API token".into(),
        events: a.requests,
        elapsed: bearer_total,
        latencies: bearer,
    };
    b.print();
    let pct = |v: &[Duration], p: f64| {
        let n = v.len();
        v[((n as f64 * p).ceil() as usize).clamp(1, n) - 1]
    };
    println!(
        "added by DPoP + run-token verification: p50 {:+.3} ms, p99 {:+.3} ms",
        ms(pct(&d.latencies, 0.50)) - ms(pct(&b.latencies, 0.50)),
        ms(pct(&d.latencies, 0.99)) - ms(pct(&b.latencies, 0.99)),
    );
    Ok(())
}
