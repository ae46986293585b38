//! `warrant bench policy`: in-process `Engine::decide` latency for the
//! default pack and for a synthetic set of many policies over a large
//! entity universe, each with the per-action index and without it (every
//! policy evaluated). Requests are generated up front; only `decide` is
//! timed. The workloads come from `warrant_policy::bench`.

use std::time::{Duration, Instant};

use clap::Args;
use warrant_policy::bench::{Workload, default_pack_workload, synthetic_workload};
use warrant_policy::{DecisionInput, Engine, Outcome};

use super::{Sample, ms};

#[derive(Args, Debug)]
pub(super) struct PolicyArgs {
    /// Decisions to time per workload and mode.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Policies in the synthetic set.
    #[arg(long, default_value_t = 200)]
    policies: usize,
    /// Entities (users, groups, repos, environments, tools, secrets) the
    /// synthetic policies and requests range over.
    #[arg(long, default_value_t = 1_000)]
    entities: usize,
    /// Seed for the generated policies and requests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn time(
    label: String,
    inputs: &[DecisionInput],
    decide: impl Fn(&DecisionInput) -> Outcome,
) -> Sample {
    // Warm up caches and the allocator on a slice of the inputs.
    for i in inputs.iter().take(500) {
        std::hint::black_box(decide(i));
    }
    let mut latencies = Vec::with_capacity(inputs.len());
    let start = Instant::now();
    for i in inputs {
        let t = Instant::now();
        std::hint::black_box(decide(i));
        latencies.push(t.elapsed());
    }
    Sample {
        mode: label,
        events: inputs.len(),
        elapsed: start.elapsed(),
        latencies,
    }
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let n = v.len();
    if n == 0 {
        return Duration::ZERO;
    }
    v[((n as f64 * p).ceil() as usize).clamp(1, n) - 1]
}

fn run_workload(w: &Workload) {
    let e: &Engine = &w.engine;
    let mut mix = std::collections::BTreeMap::<&str, usize>::new();
    for i in &w.inputs {
        *mix.entry(e.decide(i).code.as_str()).or_default() += 1;
    }
    let mix: Vec<String> = mix.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "{}: {} policies; outcomes: {}",
        w.name,
        e.policy_ids().len(),
        mix.join(", ")
    );
    let mut indexed = time("  indexed".into(), &w.inputs, |i| e.decide(i));
    indexed.print();
    let mut all = time("  unindexed (every policy)".into(), &w.inputs, |i| {
        e.decide_unindexed(i)
    });
    all.print();
    let rate = |s: &Sample| s.events as f64 / s.elapsed.as_secs_f64();
    println!(
        "  index gain: {:.1}x ops/s, p50 {:.3} -> {:.3} ms, p99 {:.3} -> {:.3} ms",
        rate(&indexed) / rate(&all),
        ms(pct(&all.latencies, 0.50)),
        ms(pct(&indexed.latencies, 0.50)),
        ms(pct(&all.latencies, 0.99)),
        ms(pct(&indexed.latencies, 0.99)),
    );
}

pub(super) fn run(a: PolicyArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.requests > 0 && a.policies > 0 && a.entities >= 20,
        "--requests and --policies must be positive and --entities at least 20"
    );
    println!(
        "policy decisions in process, one thread, {} requests per mode (scope, entities, context, run + user + approval evaluation)",
        a.requests
    );
    run_workload(&default_pack_workload(a.requests, a.seed));
    let synthetic =
        synthetic_workload(a.policies, a.entities, a.requests, a.seed).map_err(|errors| {
            anyhow::anyhow!(
                "the synthetic policies do not load: {}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
    run_workload(&synthetic);
    Ok(())
}
