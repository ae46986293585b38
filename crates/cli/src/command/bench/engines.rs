//! `warrant bench engines`: dynamic PostgreSQL credentials issued and
//! revoked per second by Warrant and, when given one, by OpenBao's database
//! secrets engine against the same PostgreSQL; then the time to revoke every
//! lease of a task holding many `kv` leases.
//!
//! Warrant is a real server in this process (`serve` on 127.0.0.1:0, a
//! fresh private data directory, SQLite with durable commits, the default
//! policy pack) driven over loopback HTTP like any agent would. A timed
//! issuance is the whole `POST /v1/leases`: DPoP and run-token
//! verification, the `credential.issue` decision, the lease recorded and
//! its audit events committed durably, the real `CREATE ROLE ... VALID
//! UNTIL`. A timed revocation is `DELETE /v1/leases/{id}`: `NOLOGIN`, the
//! role's sessions terminated, `REASSIGN OWNED`, `DROP OWNED`, `DROP ROLE`,
//! the audit event. Proofs are signed before the timer starts.
//!
//! OpenBao: `GET /v1/database/creds/warrant-bench` and `PUT
//! /v1/sys/leases/revoke` (synchronous) on a mount at `database/` that the
//! caller configured (scripts/bench-engines.sh does).
//!
//! One request at a time, Warrant's and OpenBao's alternating (so both see
//! the same load on a shared machine); ops/s is the count over the summed
//! request latencies. The same series on Warrant's `kv` engine
//! (a `secret.read` decision, nothing downstream) shows Warrant's own share.
//!
//! Mass revocation: a task holding `--mass` `kv` leases is ended (`POST
//! /v1/tasks/{id}/end`), timed until none of its leases is issuing, active
//! or revoking.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};
use warrant_crypto::jws::{JwsAlg, ProofKey};

use super::Sample;

/// The OpenBao role scripts/bench-engines.sh creates.
const OPENBAO_ROLE: &str = "warrant-bench";
/// The lease TTL asked of both (OpenBao's role has this `default_ttl`).
const LEASE_TTL: &str = "10m";
/// Concurrent requests while filling the task for the mass revocation.
const FILL_CONCURRENCY: usize = 16;
/// Untimed issue + revoke pairs before each timed series.
const WARM_UP: usize = 10;

#[derive(Args, Debug)]
pub struct EnginesArgs {
    /// A PostgreSQL URL whose user may create and drop roles (the bench
    /// creates roles `w_*` and drops them); a scratch server
    #[arg(
        long,
        value_name = "URL",
        env = "WARRANT_BENCH_PG_ADMIN_URL",
        hide_env_values = true
    )]
    pg_admin_url: String,
    /// Credentials to issue, then revoke, with each broker (sequential)
    #[arg(long, default_value_t = 500)]
    count: usize,
    /// OpenBao's address, with the database secrets engine at `database/`
    /// and a role `warrant-bench` on the same PostgreSQL
    #[arg(long, value_name = "URL", requires = "openbao_token")]
    openbao_addr: Option<String>,
    /// An OpenBao token allowed to read `database/creds/warrant-bench` and
    /// revoke leases
    #[arg(
        long,
        value_name = "TOKEN",
        env = "WARRANT_BENCH_OPENBAO_TOKEN",
        hide_env_values = true,
        requires = "openbao_addr"
    )]
    openbao_token: Option<String>,
    /// `kv` leases one task holds when it ends (the mass revocation)
    #[arg(long, default_value_t = 10_000)]
    mass: usize,
}

/// The result of a timed series.
struct Series {
    sample: Sample,
}

impl Series {
    fn new(mode: &str, latencies: Vec<Duration>) -> Self {
        Self {
            sample: Sample {
                mode: mode.to_owned(),
                events: latencies.len(),
                elapsed: latencies.iter().sum(),
                latencies,
            },
        }
    }

    fn rate(&self) -> f64 {
        self.sample.events as f64 / self.sample.elapsed.as_secs_f64()
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

#[derive(Clone)]
struct Warrant {
    http: reqwest::Client,
    base: String,
    admin: String,
}

/// An agent run: its DPoP key and run token, and its task.
struct Run {
    key: ProofKey,
    token: String,
    task: String,
}

impl Warrant {
    async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(bearer);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await?;
        let status = res.status();
        let text = res.text().await?;
        anyhow::ensure!(
            status.is_success(),
            "`{method} {path}` failed: {status} {text}"
        );
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A task of `user` for agent `bench` allowed `action` on `secret`,
    /// and a run redeemed from it.
    async fn run(&self, user: &str, secret: &str, action: &str) -> anyhow::Result<Run> {
        let task = self
            .call(
                Method::POST,
                "/v1/tasks",
                user,
                Some(json!({
                    "agent": "bench",
                    "purpose": "benchmark credential engines",
                    "ttl": "2h",
                    "scope": {"secrets": [secret], "actions": [action]},
                })),
            )
            .await?;
        let claim = task["claim"].as_str().context("the task has no claim")?;
        let id = task["id"]
            .as_str()
            .context("the task has no id")?
            .to_owned();
        let key = ProofKey::generate(JwsAlg::ES256)?;
        let url = format!("{}/v1/token", self.base);
        let res = self
            .http
            .post(&url)
            .header("DPoP", proof(&key, "POST", &url, None)?)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=urn%3Awarrant%3Agrant-type%3Atask-claim&claim={}",
                urlencode(claim)
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
        Ok(Run {
            key,
            token,
            task: id,
        })
    }

    /// `POST /v1/leases`; the lease id and how long the request took.
    async fn lease(
        &self,
        run: &Run,
        engine: &str,
        role: &str,
        ttl: &str,
    ) -> anyhow::Result<(String, Duration)> {
        let url = format!("{}/v1/leases", self.base);
        let p = proof(&run.key, "POST", &url, Some(&run.token))?;
        let body = json!({"engine": engine, "role": role, "ttl": ttl}).to_string();
        let t = Instant::now();
        let res = self
            .http
            .post(&url)
            .header("Authorization", format!("DPoP {}", run.token))
            .header("DPoP", p)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = res.status();
        let answer: Value = res.json().await?;
        let took = t.elapsed();
        anyhow::ensure!(
            status.as_u16() == 201 && answer["state"] == "active",
            "`POST /v1/leases` for `{engine}/{role}` failed: {status} {}",
            answer["detail"]
        );
        let id = answer["id"].as_str().context("the lease has no id")?;
        Ok((id.to_owned(), took))
    }

    /// `DELETE /v1/leases/{id}` as the run; how long it took.
    async fn revoke(&self, run: &Run, id: &str) -> anyhow::Result<Duration> {
        let url = format!("{}/v1/leases/{id}", self.base);
        let p = proof(&run.key, "DELETE", &url, Some(&run.token))?;
        let t = Instant::now();
        let res = self
            .http
            .delete(&url)
            .header("Authorization", format!("DPoP {}", run.token))
            .header("DPoP", p)
            .send()
            .await?;
        let status = res.status();
        let answer: Value = res.json().await?;
        let took = t.elapsed();
        anyhow::ensure!(
            status.is_success() && answer["state"] == "revoked",
            "`DELETE /v1/leases/{id}` did not revoke it: {status} {answer}"
        );
        Ok(took)
    }

    /// Warm-up, then `count` leases of role `bench` of `engine` issued one
    /// by one, then revoked one by one: the latencies of each.
    async fn pairs(
        &self,
        run: &Run,
        engine: &str,
        count: usize,
    ) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
        for _ in 0..WARM_UP {
            let (id, _) = self.lease(run, engine, "bench", LEASE_TTL).await?;
            self.revoke(run, &id).await?;
        }
        let mut ids = Vec::with_capacity(count);
        let mut issued = Vec::with_capacity(count);
        for _ in 0..count {
            let (id, took) = self.lease(run, engine, "bench", LEASE_TTL).await?;
            ids.push(id);
            issued.push(took);
        }
        let mut revoked = Vec::with_capacity(count);
        for id in &ids {
            revoked.push(self.revoke(run, id).await?);
        }
        Ok((issued, revoked))
    }

    /// Whether task `task` still has a lease in `state`.
    async fn any_lease(&self, task: &str, state: &str) -> anyhow::Result<bool> {
        let answer = self
            .call(
                Method::GET,
                &format!("/v1/leases?task={task}&state={state}&limit=1"),
                &self.admin,
                None,
            )
            .await?;
        let leases = answer["leases"]
            .as_array()
            .context("the lease list has no `leases`")?;
        Ok(!leases.is_empty())
    }
}

struct OpenBao {
    http: reqwest::Client,
    addr: String,
    token: String,
}

impl OpenBao {
    /// `GET /v1/database/creds/<role>`: the lease id and how long it took.
    async fn issue(&self) -> anyhow::Result<(String, Duration)> {
        let url = format!("{}/v1/database/creds/{OPENBAO_ROLE}", self.addr);
        let t = Instant::now();
        let res = self
            .http
            .get(&url)
            .header("X-Vault-Token", &self.token)
            .send()
            .await?;
        let status = res.status();
        let answer: Value = res.json().await?;
        let took = t.elapsed();
        anyhow::ensure!(
            status.is_success() && answer["data"]["username"].is_string(),
            "OpenBao `GET /v1/database/creds/{OPENBAO_ROLE}` failed: {status} {}",
            answer["errors"]
        );
        let id = answer["lease_id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .context("OpenBao's answer has no lease id")?;
        Ok((id.to_owned(), took))
    }

    /// `PUT /v1/sys/leases/revoke`, synchronous: how long it took.
    async fn revoke(&self, lease_id: &str) -> anyhow::Result<Duration> {
        let url = format!("{}/v1/sys/leases/revoke", self.addr);
        let body = json!({"lease_id": lease_id, "sync": true}).to_string();
        let t = Instant::now();
        let res = self
            .http
            .put(&url)
            .header("X-Vault-Token", &self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = res.status();
        let text = res.text().await?;
        let took = t.elapsed();
        // 204: revoked before the answer (an asynchronous revocation is
        // `202 Accepted`).
        anyhow::ensure!(
            status.as_u16() == 204,
            "OpenBao `PUT /v1/sys/leases/revoke` did not revoke synchronously: {status} {text}"
        );
        Ok(took)
    }
}

pub(super) async fn run(a: EnginesArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.count > 0 && a.mass > 0,
        "--count and --mass must be positive"
    );
    let openbao = match (&a.openbao_addr, &a.openbao_token) {
        (Some(addr), Some(token)) => Some(OpenBao {
            http: reqwest::Client::builder().build()?,
            addr: addr.trim_end_matches('/').to_owned(),
            token: token.clone(),
        }),
        _ => None,
    };
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .context("cannot make the temporary directory private")?;
    let config = write_config(dir.path(), &a.pg_admin_url)?;
    let data_dir = dir.path().join("data");
    let opts = warrant_server::ServeOptions {
        data_dir: Some(data_dir.clone()),
        listen: Some("127.0.0.1:0".parse()?),
        store_url: None,
        config_file: Some(config),
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
    let warrant = Warrant {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(FILL_CONCURRENCY)
            .build()?,
        base: ready.public_url.clone(),
        admin,
    };
    let result = measure(&warrant, openbao.as_ref(), &a, ready.store).await;
    let _ = stop_tx.send(());
    server.await.context("the server task failed")??;
    result
}

/// The server's config: a `postgres` engine `pg` and a `kv` engine `kv`,
/// each with a role `bench`.
fn write_config(dir: &Path, admin_url: &str) -> anyhow::Result<std::path::PathBuf> {
    let private = |path: &Path, text: &str| -> anyhow::Result<()> {
        std::fs::write(path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make `{}` private", path.display()))
    };
    let url_file = dir.join("pg-admin-url");
    private(&url_file, admin_url)?;
    let keys = dir.join("kv.keys");
    private(
        &keys,
        &format!(
            "k1 {}\n",
            hex::encode(warrant_crypto::random_bytes::<32>()?)
        ),
    )?;
    let config = dir.join("warrant.toml");
    // The same creation statement as OpenBao's role (its `{{expiration}}`
    // is Warrant's `{{expires}}`); revocation is the engine's default.
    let text = format!(
        r#"[[engines]]
name = "pg"
type = "postgres"
admin_url_file = {url_file:?}

[[engines.roles]]
name = "bench"
max_ttl = "1h"
creation = ["CREATE ROLE \"{{{{name}}}}\" WITH LOGIN PASSWORD '{{{{password}}}}' VALID UNTIL '{{{{expires}}}}'"]

[[engines]]
name = "kv"
type = "kv"
master_key_file = {keys:?}

[[engines.roles]]
name = "bench"
max_ttl = "2h"
secrets = ["token"]
"#,
        url_file = url_file.display().to_string(),
        keys = keys.display().to_string(),
    );
    private(&config, &text)?;
    Ok(config)
}

async fn measure(
    warrant: &Warrant,
    openbao: Option<&OpenBao>,
    a: &EnginesArgs,
    backend: &str,
) -> anyhow::Result<()> {
    let admin = warrant.admin.clone();
    let user = warrant
        .call(
            Method::POST,
            "/v1/users",
            &admin,
            Some(json!({"name": "bench", "groups": ["operators"]})),
        )
        .await?["token"]
        .as_str()
        .context("the new user has no token")?
        .to_owned();
    warrant
        .call(
            Method::POST,
            "/v1/agents",
            &admin,
            Some(json!({"name": "bench", "tier": "privileged"})),
        )
        .await?;
    warrant
        .call(
            Method::PUT,
            "/v1/engines/kv/secrets/token",
            &admin,
            Some(json!({"value": hex::encode(warrant_crypto::random_bytes::<24>()?)})),
        )
        .await?;

    println!(
        "engines bench: {} dynamic PostgreSQL credentials issued then revoked by each broker, \
         sequential, loopback HTTP, lease ttl {LEASE_TTL}",
        a.count
    );
    println!(
        "  Warrant: in-process server ({backend}, durable commits), default policy pack, \
         run token + DPoP, {WARM_UP} untimed warm-up pairs"
    );

    // Dynamic PostgreSQL credentials. With OpenBao, the two brokers'
    // requests alternate, so both see the same load on a shared machine.
    let run = warrant.run(&user, "pg/bench", "credential.issue").await?;
    let pg_issue = "Warrant  issue  POST /v1/leases (postgres)";
    let pg_revoke = "Warrant  revoke DELETE /v1/leases/{id}";
    match openbao {
        None => {
            let (issued, revoked) = warrant.pairs(&run, "pg", a.count).await?;
            Series::new(pg_issue, issued).sample.print();
            Series::new(pg_revoke, revoked).sample.print();
            println!("  OpenBao: not measured (no --openbao-addr)");
        }
        Some(bao) => {
            println!(
                "  OpenBao: database secrets engine, role `{OPENBAO_ROLE}`; \
                 its requests alternate with Warrant's"
            );
            let [wi, wr, bi, br] = side_by_side(warrant, &run, bao, a.count).await?;
            let mut w_issue = Series::new(pg_issue, wi);
            let mut w_revoke = Series::new(pg_revoke, wr);
            let mut b_issue =
                Series::new(&format!("OpenBao  issue  GET .../creds/{OPENBAO_ROLE}"), bi);
            let mut b_revoke = Series::new("OpenBao  revoke PUT sys/leases/revoke", br);
            for s in [&mut w_issue, &mut w_revoke, &mut b_issue, &mut b_revoke] {
                s.sample.print();
            }
            println!(
                "Warrant/OpenBao throughput: issue {:.2}x, revoke {:.2}x",
                w_issue.rate() / b_issue.rate(),
                w_revoke.rate() / b_revoke.rate(),
            );
        }
    }

    // Warrant's own share: the same requests on a `kv` engine, whose
    // issue and revoke touch no other system.
    println!(
        "  Warrant without a downstream system (kv engine: the same HTTP, decision and audit)"
    );
    let run = warrant.run(&user, "kv/bench", "secret.read").await?;
    let (issued, revoked) = warrant.pairs(&run, "kv", a.count).await?;
    Series::new("Warrant  issue  POST /v1/leases (kv)", issued)
        .sample
        .print();
    Series::new("Warrant  revoke DELETE /v1/leases/{id} (kv)", revoked)
        .sample
        .print();

    mass_revocation(warrant, &user, a.mass).await
}

/// Warm-up, then `count` credentials issued by Warrant and OpenBao in
/// turn, then revoked in turn: the latencies of Warrant's issues and
/// revocations, then OpenBao's.
async fn side_by_side(
    warrant: &Warrant,
    run: &Run,
    bao: &OpenBao,
    count: usize,
) -> anyhow::Result<[Vec<Duration>; 4]> {
    for _ in 0..WARM_UP {
        let (id, _) = warrant.lease(run, "pg", "bench", LEASE_TTL).await?;
        warrant.revoke(run, &id).await?;
        let (id, _) = bao.issue().await?;
        bao.revoke(&id).await?;
    }
    let mut ids = Vec::with_capacity(count);
    let (mut wi, mut bi) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for _ in 0..count {
        let (w, took) = warrant.lease(run, "pg", "bench", LEASE_TTL).await?;
        wi.push(took);
        let (b, took) = bao.issue().await?;
        bi.push(took);
        ids.push((w, b));
    }
    let (mut wr, mut br) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for (w, b) in &ids {
        wr.push(warrant.revoke(run, w).await?);
        br.push(bao.revoke(b).await?);
    }
    Ok([wi, wr, bi, br])
}

/// One task holding `mass` `kv` leases (issued concurrently, untimed) is
/// ended; timed until none of its leases is issuing, active or revoking.
async fn mass_revocation(warrant: &Warrant, user: &str, mass: usize) -> anyhow::Result<()> {
    let run = std::sync::Arc::new(warrant.run(user, "kv/bench", "secret.read").await?);
    let fill = Instant::now();
    let workers: Vec<_> = (0..FILL_CONCURRENCY.min(mass))
        .map(|w| {
            let warrant = warrant.clone();
            let run = run.clone();
            tokio::spawn(async move {
                let mut i = w;
                while i < mass {
                    warrant.lease(&run, "kv", "bench", "1h").await?;
                    i += FILL_CONCURRENCY;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for w in workers {
        w.await.context("a lease worker failed")??;
    }
    let filled = fill.elapsed();
    println!(
        "mass revocation: one task holding {mass} kv leases (issued untimed in {:.1} s, \
         {FILL_CONCURRENCY} concurrent: {:.0} leases/s)",
        filled.as_secs_f64(),
        mass as f64 / filled.as_secs_f64()
    );

    let start = Instant::now();
    warrant
        .call(
            Method::POST,
            &format!("/v1/tasks/{}/end", run.task),
            user,
            Some(json!({})),
        )
        .await?;
    let ended = start.elapsed();
    loop {
        let mut pending = false;
        for state in ["issuing", "active", "revoking"] {
            if warrant.any_lease(&run.task, state).await? {
                pending = true;
                break;
            }
        }
        if !pending {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = start.elapsed();
    anyhow::ensure!(
        !warrant.any_lease(&run.task, "irrevocable").await?,
        "some kv leases ended irrevocable"
    );
    println!(
        "  POST /v1/tasks/{{id}}/end answered in {:.3} s; all {mass} leases revoked after \
         {:.2} s: {:.0} leases/s",
        ended.as_secs_f64(),
        took.as_secs_f64(),
        mass as f64 / took.as_secs_f64()
    );
    Ok(())
}
