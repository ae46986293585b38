//! Sessions: one upstream each, gone when the session, the run or the
//! upstream ends.

use std::sync::Arc;

use serde_json::json;

use crate::harness::{
    Agent, TestGateway, TestWarden, default_policy, gone, is_error, process_alive, text,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_session_kills_the_upstream_child() {
    let gw = TestGateway::start().await;
    gw.add_run("run-a", Arc::new(TestWarden::new(default_policy)));
    let mut agent = Agent::connect(&gw.url, "run-a").await;
    agent.call("echo", json!({"message": "hi"})).await;
    let pid = gw.upstream_pid("run-a");
    assert!(process_alive(pid));

    // The SDK client ends its session (HTTP DELETE) on exit.
    agent.ok(json!({"op": "close"})).await;
    assert!(
        gone(pid).await,
        "upstream {pid} still runs after the session closed"
    );
    agent.exit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_gets_its_own_upstream() {
    let gw = TestGateway::start().await;
    gw.add_run("run-a", Arc::new(TestWarden::new(default_policy)));
    gw.add_run("run-b", Arc::new(TestWarden::new(default_policy)));
    let mut a = Agent::connect(&gw.url, "run-a").await;
    let mut b = Agent::connect(&gw.url, "run-b").await;
    a.call("echo", json!({"message": "a"})).await;
    b.call("echo", json!({"message": "b"})).await;
    assert_ne!(gw.upstream_pid("run-a"), gw.upstream_pid("run-b"));
    a.exit().await;
    b.exit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_run_fails_the_next_call_and_stops_the_upstream() {
    let gw = TestGateway::start().await;
    let warden = Arc::new(TestWarden::new(default_policy));
    gw.add_run("run-a", warden.clone());
    let mut agent = Agent::connect(&gw.url, "run-a").await;
    let ok = agent.call("echo", json!({"message": "before"})).await;
    assert!(!is_error(&ok), "{ok}");
    let pid = gw.upstream_pid("run-a");

    *warden.live.lock().unwrap() = false;
    let refused = agent.call("echo", json!({"message": "after"})).await;
    assert!(is_error(&refused), "{refused}");
    assert!(text(&refused).contains("run has ended"), "{refused}");
    assert!(
        gone(pid).await,
        "upstream {pid} still runs after the run ended"
    );
    // Nothing more on this session, even if the run came back.
    *warden.live.lock().unwrap() = true;
    let error = agent.err(json!({"op": "list_tools"})).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("session is closed"),
        "{error}"
    );
    agent.exit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_run_ends_every_session_of_that_run_only() {
    let gw = TestGateway::start().await;
    gw.add_run("run-a", Arc::new(TestWarden::new(default_policy)));
    gw.add_run("run-b", Arc::new(TestWarden::new(default_policy)));
    let mut a = Agent::connect(&gw.url, "run-a").await;
    let mut b = Agent::connect(&gw.url, "run-b").await;
    a.call("echo", json!({"message": "a"})).await;
    b.call("echo", json!({"message": "b"})).await;
    let pid_a = gw.upstream_pid("run-a");
    let pid_b = gw.upstream_pid("run-b");

    assert_eq!(gw.registry.close_run("run-a").await, 1);
    assert!(!process_alive(pid_a), "upstream {pid_a} survived close_run");
    assert!(gw.registry.sessions("run-a").is_empty());
    // The agent's session is gone: its next request fails.
    a.err(json!({"op": "call_tool", "name": "echo", "arguments": {"message": "a"}}))
        .await;

    let still = b.call("echo", json!({"message": "b2"})).await;
    assert_eq!(text(&still), "Echo: b2");
    assert!(process_alive(pid_b));
    assert_eq!(gw.registry.close_run("run-a").await, 0);
    a.exit().await;
    b.exit().await;
}

/// A hung upstream: the agent gets a tool error after the configured
/// timeout, and the upstream is killed with its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_timeout_is_a_tool_error_and_kills_the_upstream() {
    let gw = TestGateway::start_with(|c| c.timeout = Some("2s".into())).await;
    gw.add_run("run-a", Arc::new(TestWarden::new(default_policy)));
    let mut agent = Agent::connect(&gw.url, "run-a").await;
    agent.call("echo", json!({"message": "warm"})).await;
    let pid = gw.upstream_pid("run-a");

    let result = agent
        .call(
            "trigger-long-running-operation",
            json!({"duration": 60, "steps": 2}),
        )
        .await;
    assert!(is_error(&result), "{result}");
    assert!(text(&result).contains("did not answer"), "{result}");
    assert!(text(&result).contains("within 2s"), "{result}");
    assert!(
        gone(pid).await,
        "upstream {pid} still runs after the timeout"
    );
    let error = agent
        .err(json!({"op": "call_tool", "name": "echo", "arguments": {"message": "x"}}))
        .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("session is closed"),
        "{error}"
    );
    agent.exit().await;
}

/// A request that reaches the gateway without an authenticated run opens
/// nothing: no session, no upstream process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_without_a_run_is_refused_and_starts_nothing() {
    let gw = TestGateway::start().await;
    let mut agent = Agent::start(&gw.url, Some("not-a-run")).await;
    let error = agent.err(json!({"op": "connect"})).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("no authenticated run"),
        "{error}"
    );
    assert!(gw.registry.sessions("not-a-run").is_empty());
    agent.exit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_run_cannot_open_a_session() {
    let gw = TestGateway::start().await;
    let warden = Arc::new(TestWarden::new(default_policy));
    *warden.live.lock().unwrap() = false;
    gw.add_run("run-a", warden);
    let mut agent = Agent::start(&gw.url, Some("run-a")).await;
    let error = agent.err(json!({"op": "connect"})).await;
    assert!(
        error["message"].as_str().unwrap().contains("run has ended"),
        "{error}"
    );
    assert!(gw.registry.sessions("run-a").is_empty());
    agent.exit().await;
}

/// Processes whose process group is `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command: state ppid pgrp ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            members.push(pid);
        }
    }
    members
}

/// An upstream that outlives its stdin (a wrapper script that keeps
/// running after the server exits) is still killed, with every process it
/// started: the gateway kills the whole process group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_upstream_is_killed_with_its_process_group() {
    let entry = crate::harness::everything_entry().display().to_string();
    let gw = TestGateway::start_with(|c| {
        c.command = Some(vec![
            "sh".into(),
            "-c".into(),
            "sleep 600 & exec node \"$0\" stdio".into(),
            entry,
        ]);
    })
    .await;
    gw.add_run("run-a", Arc::new(TestWarden::new(default_policy)));
    let mut agent = Agent::connect(&gw.url, "run-a").await;
    agent.call("echo", json!({"message": "hi"})).await;
    let pgid = gw.upstream_pid("run-a");
    // node and the sleep it outlives.
    assert!(group_members(pgid).len() >= 2, "{:?}", group_members(pgid));

    agent.ok(json!({"op": "close"})).await;
    assert!(gone(pgid).await, "upstream {pgid} still runs");
    let mut left = group_members(pgid);
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        left = group_members(pgid);
    }
    assert!(
        left.is_empty(),
        "processes of the upstream survived: {left:?}"
    );
    agent.exit().await;
}

/// A streamable-HTTP upstream gets the launch headers: here the upstream is
/// a second gateway that only admits requests bearing its run token, so a
/// session through it proves the header arrived. Closing the agent's session
/// ends the upstream's session too (its stdio child goes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_upstream_gets_launch_headers_and_is_closed_with_the_session() {
    let inner = TestGateway::start().await;
    inner.add_run("inner-run", Arc::new(TestWarden::new(default_policy)));
    let inner_url = inner.url.clone();
    let outer = TestGateway::start_with(|c| {
        c.command = None;
        c.url = Some(inner_url);
    })
    .await;
    let mut warden = TestWarden::new(default_policy);
    warden
        .launch_headers
        .insert("authorization".into(), "Bearer inner-run".into());
    outer.add_run("outer-run", Arc::new(warden));

    let mut agent = Agent::connect(&outer.url, "outer-run").await;
    let names = agent.tool_names().await;
    assert!(names.contains(&"echo".to_owned()), "{names:?}");
    let result = agent.call("echo", json!({"message": "through two"})).await;
    assert_eq!(text(&result), "Echo: through two", "{result}");
    let pid = inner.upstream_pid("inner-run");
    assert_eq!(outer.registry.sessions("outer-run")[0].upstream_pid, None);

    agent.ok(json!({"op": "close"})).await;
    assert!(gone(pid).await, "the inner upstream {pid} still runs");
    agent.exit().await;
}

/// Without the launch header the upstream refuses, and the agent gets a
/// clear error instead of a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_upstream_refusal_fails_initialize() {
    let inner = TestGateway::start().await;
    inner.add_run("inner-run", Arc::new(TestWarden::new(default_policy)));
    let inner_url = inner.url.clone();
    let outer = TestGateway::start_with(|c| {
        c.command = None;
        c.url = Some(inner_url);
    })
    .await;
    outer.add_run("outer-run", Arc::new(TestWarden::new(default_policy)));
    let mut agent = Agent::start(&outer.url, Some("outer-run")).await;
    let error = agent.err(json!({"op": "connect"})).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("`everything` is unavailable"),
        "{error}"
    );
    assert!(outer.registry.sessions("outer-run").is_empty());
    agent.exit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_that_cannot_start_fails_initialize() {
    let gw = TestGateway::start_with(|c| {
        c.command = Some(vec!["/nonexistent/mcp-server".into()]);
    })
    .await;
    gw.add_run("run-a", Arc::new(TestWarden::new(default_policy)));
    let mut agent = Agent::start(&gw.url, Some("run-a")).await;
    let error = agent.err(json!({"op": "connect"})).await;
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("cannot start `/nonexistent/mcp-server`"),
        "{error}"
    );
    assert!(gw.registry.sessions("run-a").is_empty());
    agent.exit().await;
}
