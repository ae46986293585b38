//! `warrant bench mcp` with tiny numbers, so that the benchmark cannot rot:
//! it sets up an upstream, a server and runs, passes every call directly and
//! through the gateway (it fails if a gateway call is refused or does not
//! echo), and reports every figure. Timings are never judged.

use serde_json::Value;
use tempfile::TempDir;

use crate::util::TestCommand;

#[test]
fn the_mcp_bench_completes_and_reports_well_formed_figures() {
    let home = TempDir::new().unwrap();
    let out = TestCommand::new(home.path())
        .args([
            "bench",
            "mcp",
            "--calls",
            "6",
            "--warmup",
            "1",
            "--concurrency",
            "2",
            "--json",
        ])
        .stdout();
    let report: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_eq!(report["store"], "sqlite", "{report}");
    assert_eq!(report["concurrency"], 2, "{report}");
    assert_eq!(report["proofs_signed_before_timer"], true, "{report}");
    for series in [
        "direct",
        "gateway",
        "direct_concurrent",
        "gateway_concurrent",
    ] {
        let f = &report[series];
        assert_eq!(f["calls"], 6, "{series}: {report}");
        assert!(
            f["mode"].as_str().is_some_and(|m| !m.is_empty()),
            "{report}"
        );
        let num = |k: &str| {
            let v = f[k]
                .as_f64()
                .unwrap_or_else(|| panic!("{series}.{k}: {report}"));
            assert!(v.is_finite() && v >= 0.0, "{series}.{k}: {report}");
            v
        };
        assert!(num("calls_per_s") > 0.0, "{series}: {report}");
        assert!(
            num("p50_ms") <= num("p99_ms") && num("p99_ms") <= num("max_ms"),
            "{series}: percentiles out of order: {report}"
        );
    }
    for k in ["p50_ms", "p99_ms"] {
        // A difference: it may be negative on a noisy machine, never absent.
        assert!(
            report["added"][k].as_f64().is_some_and(f64::is_finite),
            "added.{k}: {report}"
        );
    }
}

#[test]
fn the_mcp_bench_refuses_a_zero_concurrency() {
    let home = TempDir::new().unwrap();
    let err = TestCommand::new(home.path())
        .args(["bench", "mcp", "--concurrency", "0"])
        .fails_with(1);
    assert!(err.contains("--concurrency"), "{err}");
}
