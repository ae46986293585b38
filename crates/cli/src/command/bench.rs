//! `warrant bench`: measures the speed requirements of the issues, so the
//! figures quoted in notes come from a command anyone can rerun.
//!
//! Each benchmark builds its own store (a fresh SQLite file in a temporary
//! directory unless `--store` names one) and drives the same library code the
//! server runs. Nothing here is asserted: it reports.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use jiff::Timestamp;
use serde_json::json;
use warrant_audit::{Checkpoint, NewEvent};
use warrant_crypto::SigningKey;
use warrant_store::{GroupCommitter, PublicKeyRecord, Store};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    which: Which,
}

#[derive(Subcommand, Debug)]
enum Which {
    /// Audit append throughput and commit latency: durable one-event
    /// transactions vs. group commit.
    AuditAppend(AppendArgs),
    /// `warrant audit verify` speed on a store with many events.
    AuditVerify(VerifyArgs),
    /// Run-token issuance (claim grant) and the cost of DPoP + run-token
    /// verification per request, against an in-process server.
    Token(TokenArgs),
    /// In-process policy decision latency: the default pack and a synthetic
    /// set of many policies over many entities, with and without the
    /// per-action index.
    Policy(policy::PolicyArgs),
    /// HTTP decisions per second (`POST /v1/decisions` with DPoP, entity
    /// loading and a durable group-committed audit event) against an
    /// in-process server, at a stated concurrency.
    Decisions(DecisionsArgs),
    /// Dynamic PostgreSQL credentials issued and revoked per second by
    /// Warrant and by OpenBao's database secrets engine on the same
    /// PostgreSQL, and the mass revocation of a task's `kv` leases.
    Engines(engines::EnginesArgs),
    /// Added latency of a `tools/call` through the MCP gateway versus
    /// calling the upstream directly (p50/p99), and calls/s through the
    /// gateway at a stated concurrency, against in-process servers.
    Mcp(mcp::McpArgs),
}

#[derive(Args, Debug)]
struct DecisionsArgs {
    /// Decisions to time in all (split across the runs).
    #[arg(long, default_value_t = 5_000)]
    requests: usize,
    /// Concurrent agent runs asking for decisions.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

#[derive(Args, Debug)]
struct TokenArgs {
    /// Claim-grant redemptions to time (one task each, sequential).
    #[arg(long, default_value_t = 500)]
    issuances: usize,
    /// Requests to time for each of `GET /v1/runs/me` (DPoP) and
    /// `GET /v1/users/me` (bearer API token), sequential.
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
}

#[derive(Args, Debug)]
struct AppendArgs {
    /// Events to append in each mode.
    #[arg(long, default_value_t = 5_000)]
    events: usize,
    /// Concurrent producers in the concurrent modes.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Largest batch the group committer writes in one transaction.
    #[arg(long, default_value_t = 256)]
    max_batch: usize,
    /// Store URL to benchmark instead of a fresh SQLite file (each mode
    /// appends to it; use a scratch database).
    #[arg(long)]
    store: Option<String>,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// Events in the chain to verify.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// A signed checkpoint every this many events.
    #[arg(long, default_value_t = 1_000)]
    checkpoint_every: usize,
    /// Store URL to fill and verify instead of a fresh SQLite file (must be
    /// an empty scratch database).
    #[arg(long)]
    store: Option<String>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {
        Which::AuditAppend(a) => audit_append(a).await,
        Which::AuditVerify(a) => audit_verify(a).await,
        Which::Token(a) => token::run(a).await,
        Which::Policy(a) => policy::run(a),
        Which::Decisions(a) => decisions::run(a).await,
        Which::Engines(a) => engines::run(a).await,
        Which::Mcp(a) => mcp::run(a).await,
    }
}

mod decisions;
mod engines;
mod mcp;
mod policy;
mod token;

/// A scratch store: a temp SQLite file (removed on drop) or the given URL.
struct Scratch {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

async fn scratch(url: Option<&str>) -> anyhow::Result<Scratch> {
    match url {
        Some(url) => Ok(Scratch {
            store: warrant_store::open(url)
                .await
                .context("cannot open the store")?,
            _dir: None,
        }),
        None => {
            let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            Ok(Scratch {
                store: warrant_store::open(&url)
                    .await
                    .context("cannot open the store")?,
                _dir: Some(dir),
            })
        }
    }
}

/// An event shaped like a real `task.created` (about 400 bytes of data).
fn sample_event(i: usize) -> NewEvent {
    NewEvent {
        time: Timestamp::now(),
        kind: "task.created".into(),
        actor: "user:bench".into(),
        subject: format!("task:bench-{i}"),
        task_id: Some(format!("0192f5a4-7c1e-7b3a-9d2e-{i:012}")),
        data: json!({
            "agent": "claude-code",
            "delegator": "bench",
            "purpose": "fix the flaky integration test in the payments service",
            "ticket": format!("ACME-{i}"),
            "scope": {
                "repos": ["acme/payments", "acme/shared-lib"],
                "branches": ["fix/*"],
                "environments": ["staging"],
                "actions": ["repo.read", "repo.push", "ci.run"],
                "tools": [], "secrets": []
            },
            "expires_at": "2026-11-23T23:00:00Z"
        }),
    }
}

pub(super) struct Sample {
    pub(super) mode: String,
    pub(super) events: usize,
    pub(super) elapsed: Duration,
    pub(super) latencies: Vec<Duration>,
}

impl Sample {
    pub(super) fn print(&mut self) {
        self.latencies.sort_unstable();
        let pct = |p: f64| {
            let n = self.latencies.len();
            if n == 0 {
                return Duration::ZERO;
            }
            self.latencies[((n as f64 * p).ceil() as usize).clamp(1, n) - 1]
        };
        let rate = self.events as f64 / self.elapsed.as_secs_f64();
        println!(
            "{:<44} {:>6} ops  {:>8.0} ops/s  p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms",
            self.mode,
            self.events,
            rate,
            ms(pct(0.50)),
            ms(pct(0.99)),
            ms(pct(1.0)),
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn audit_append(a: AppendArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.events > 0 && a.concurrency > 0 && a.max_batch > 0,
        "--events, --concurrency and --max-batch must be positive"
    );
    let probe = scratch(a.store.as_deref()).await?;
    let backend = probe.store.backend();
    // Benchmark events are fake: never mix them into a real audit log.
    anyhow::ensure!(
        probe.store.audit_head().await?.is_none(),
        "the store already holds audit events: point --store at an empty scratch database"
    );
    probe.store.close().await;
    drop(probe);
    println!(
        "audit append on {backend}: {} events per mode, durable commits (SQLite: WAL, synchronous=FULL)",
        a.events
    );

    // 1. One event per transaction, one producer.
    {
        let s = scratch(a.store.as_deref()).await?;
        let mut lat = Vec::with_capacity(a.events);
        let start = Instant::now();
        for i in 0..a.events {
            let t = Instant::now();
            s.store.append_audit(vec![sample_event(i)]).await?;
            lat.push(t.elapsed());
        }
        Sample {
            mode: "one-event txn, 1 producer".into(),
            events: a.events,
            elapsed: start.elapsed(),
            latencies: lat,
        }
        .print();
        s.store.close().await;
    }

    // 2. One event per transaction, many producers contending for the lock.
    {
        let s = scratch(a.store.as_deref()).await?;
        let store = s.store.clone();
        let sample = concurrent(a.events, a.concurrency, move |i| {
            let store = store.clone();
            async move { store.append_audit(vec![sample_event(i)]).await.map(|_| ()) }
        })
        .await?;
        Sample {
            mode: format!("one-event txn, {} producers", a.concurrency),
            ..sample
        }
        .print();
        s.store.close().await;
    }

    // 3. Group commit: the same producers, batched into shared transactions;
    //    each producer still waits for its own commit.
    {
        let s = scratch(a.store.as_deref()).await?;
        let gc = GroupCommitter::new(s.store.clone(), a.max_batch);
        let sample = concurrent(a.events, a.concurrency, move |i| {
            let gc = gc.clone();
            async move { gc.append(sample_event(i)).await.map(|_| ()) }
        })
        .await?;
        Sample {
            mode: format!(
                "group commit, {} producers (≤{})",
                a.concurrency, a.max_batch
            ),
            ..sample
        }
        .print();
        s.store.close().await;
    }
    Ok(())
}

/// Runs `events` calls of `f` from `producers` tasks; records each call's
/// latency.
async fn concurrent<F, Fut>(events: usize, producers: usize, f: F) -> anyhow::Result<Sample>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), warrant_store::StoreError>> + Send,
{
    let start = Instant::now();
    let mut handles = Vec::with_capacity(producers);
    for p in 0..producers {
        let f = f.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = p;
            while i < events {
                let t = Instant::now();
                f(i).await?;
                lat.push(t.elapsed());
                i += producers;
            }
            Ok::<_, warrant_store::StoreError>(lat)
        }));
    }
    let mut latencies = Vec::with_capacity(events);
    for h in handles {
        latencies.extend(h.await.context("a producer task failed")??);
    }
    Ok(Sample {
        mode: String::new(),
        events,
        elapsed: start.elapsed(),
        latencies,
    })
}

async fn audit_verify(a: VerifyArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.events > 0 && a.checkpoint_every > 0,
        "--events and --checkpoint-every must be positive"
    );
    let s = scratch(a.store.as_deref()).await?;
    let store = s.store.clone();
    anyhow::ensure!(
        store.audit_head().await?.is_none(),
        "the store already holds audit events: point --store at an empty scratch database"
    );
    let key = SigningKey::generate()?;
    store
        .put_public_key(
            &PublicKeyRecord {
                kid: key.kid().to_owned(),
                alg: "EdDSA".into(),
                public_key: key.public_key().to_vec(),
                created_at: Timestamp::now(),
                retired_at: None,
            },
            warrant_server::events::keys_added(key.kid(), Timestamp::now()),
        )
        .await?;

    println!(
        "audit verify on {}: filling {} events ...",
        store.backend(),
        a.events
    );
    let fill = Instant::now();
    const BATCH: usize = 10_000;
    let mut written = 0;
    let mut next_cp = a.checkpoint_every;
    while written < a.events {
        let n = BATCH.min(a.events - written);
        let evs = store
            .append_audit((written..written + n).map(sample_event).collect())
            .await?;
        written += n;
        for ev in &evs {
            if ev.seq as usize == next_cp {
                store
                    .put_checkpoint(&Checkpoint::sign(ev.seq, ev.hash, Timestamp::now(), &key))
                    .await?;
                next_cp += a.checkpoint_every;
            }
        }
    }
    println!("filled in {:.1} s", fill.elapsed().as_secs_f64());

    let keys = HashMap::from([(key.kid().to_owned(), key.public_key().to_vec())]);
    let start = Instant::now();
    let report = super::audit::verify_chain(store.as_ref(), keys).await?;
    let elapsed = start.elapsed();
    println!(
        "verified {} events and {} checkpoints in {:.2} s: {:.0} events/s",
        report.events,
        report.checkpoints,
        elapsed.as_secs_f64(),
        report.events as f64 / elapsed.as_secs_f64()
    );
    store.close().await;
    Ok(())
}
