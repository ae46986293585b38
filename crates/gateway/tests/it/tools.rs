//! Decisions: what the agent sees in `tools/list` and which calls reach the
//! upstream.

use std::sync::Arc;

use serde_json::json;
use warrant_gateway::Verdict;

use crate::harness::{Agent, TestGateway, TestWarden, default_policy, is_error, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_only_allowed_tools_and_calls_an_allowed_one() {
    let gw = TestGateway::start().await;
    let warden = Arc::new(TestWarden::new(default_policy));
    gw.add_run("run-a", warden.clone());
    let mut agent = Agent::connect(&gw.url, "run-a").await;

    let names = agent.tool_names().await;
    assert!(names.contains(&"echo".to_owned()), "{names:?}");
    assert!(names.contains(&"get-sum".to_owned()), "{names:?}");
    // Denied: not listed. Approval-required: listed.
    assert!(
        !names.contains(&"toggle-simulated-logging".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"get-tiny-image".to_owned()), "{names:?}");
    // Listing asks without arguments.
    assert_eq!(warden.decided("echo"), vec![None]);

    let result = agent.call("echo", json!({"message": "hello"})).await;
    assert!(!is_error(&result), "{result}");
    assert_eq!(text(&result), "Echo: hello");
    let result = agent.call("get-sum", json!({"a": 2, "b": 3})).await;
    assert!(!is_error(&result), "{result}");
    assert!(text(&result).contains('5'), "{result}");
    // The call was decided with its arguments.
    assert_eq!(
        warden.decided("get-sum"),
        vec![None, Some(json!({"a": 2, "b": 3}))]
    );

    let info = agent.ok(json!({"op": "info"})).await;
    assert!(info["capabilities"]["tools"].is_object(), "{info}");
    assert!(info["capabilities"].get("completions").is_none(), "{info}");
    assert!(info["capabilities"].get("tasks").is_none(), "{info}");
    agent.exit().await;
}

/// A denied call must never reach the upstream. `toggle-simulated-logging`
/// is stateful: if the refused call had been forwarded, the first allowed
/// call would answer "Stopped" instead of "Started".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_tool_is_refused_and_never_reaches_the_upstream() {
    let gw = TestGateway::start_with(|c| c.taints = vec!["toggle-simulated-logging".into()]).await;
    let warden = Arc::new(TestWarden::new(default_policy));
    gw.add_run("run-a", warden.clone());
    let mut agent = Agent::connect(&gw.url, "run-a").await;

    let result = agent.call("toggle-simulated-logging", json!({})).await;
    assert!(is_error(&result), "{result}");
    let t = text(&result);
    assert!(t.contains("denied by Warrant"), "{t}");
    assert!(t.contains("`everything/toggle-simulated-logging`"), "{t}");
    assert!(t.contains("policy_denied"), "{t}");
    assert!(t.contains("no policy permits this tool"), "{t}");
    assert!(warden.taints.lock().unwrap().is_empty());

    warden.set_policy(|_, _| Verdict::Allow);
    let result = agent.call("toggle-simulated-logging", json!({})).await;
    assert!(!is_error(&result), "{result}");
    assert!(text(&result).starts_with("Started"), "{result}");
    // Forwarded now, and configured as bringing outside content.
    assert_eq!(
        *warden.taints.lock().unwrap(),
        [(
            "everything".to_owned(),
            "toggle-simulated-logging".to_owned()
        )]
    );
    agent.exit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argument_policy_refuses_one_value_and_allows_another() {
    let gw = TestGateway::start().await;
    let warden = Arc::new(TestWarden::new(default_policy));
    gw.add_run("run-a", warden.clone());
    let mut agent = Agent::connect(&gw.url, "run-a").await;

    let refused = agent.call("echo", json!({"message": "/etc/shadow"})).await;
    assert!(is_error(&refused), "{refused}");
    assert!(text(&refused).contains("argument_denied"), "{refused}");
    assert!(
        text(&refused).contains("outside the task's directory"),
        "{refused}"
    );
    assert!(!text(&refused).contains("Echo:"), "{refused}");

    let allowed = agent
        .call("echo", json!({"message": "/work/task/notes.md"}))
        .await;
    assert!(!is_error(&allowed), "{allowed}");
    assert_eq!(text(&allowed), "Echo: /work/task/notes.md");
    agent.exit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_required_names_the_approval_and_what_to_do() {
    let gw = TestGateway::start().await;
    gw.add_run("run-a", Arc::new(TestWarden::new(default_policy)));
    let mut agent = Agent::connect(&gw.url, "run-a").await;
    let result = agent.call("get-tiny-image", json!({})).await;
    assert!(is_error(&result), "{result}");
    let t = text(&result);
    assert!(t.contains("approval `apr_0123`"), "{t}");
    assert!(t.contains("images need a human"), "{t}");
    assert!(t.contains("warrant approvals show apr_0123"), "{t}");
    // No image came back: the call was not forwarded.
    assert_eq!(result["content"].as_array().unwrap().len(), 1, "{result}");
    agent.exit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_and_prompts_follow_the_same_rules() {
    let gw = TestGateway::start().await;
    let warden = Arc::new(TestWarden::new(|tool, _| match tool {
        "prompts" => Verdict::Deny {
            reasons: vec!["prompts are off for this task".into()],
            code: "policy_denied".into(),
        },
        _ => Verdict::Allow,
    }));
    gw.add_run("run-a", warden.clone());
    let mut agent = Agent::connect(&gw.url, "run-a").await;

    let list = agent.ok(json!({"op": "list_resources"})).await;
    let resources = list["resources"].as_array().unwrap();
    assert!(!resources.is_empty(), "{list}");
    let uri = resources[0]["uri"].as_str().unwrap().to_owned();
    let read = agent.ok(json!({"op": "read_resource", "uri": uri})).await;
    assert_eq!(read["contents"][0]["uri"], uri, "{read}");
    assert_eq!(
        warden.decided("resources").last().unwrap(),
        &Some(json!({"uri": uri}))
    );

    let error = agent.err(json!({"op": "list_prompts"})).await;
    assert_eq!(error["code"], -32001, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("prompts are off"),
        "{error}"
    );
    let error = agent
        .err(json!({"op": "get_prompt", "name": "simple-prompt"}))
        .await;
    assert_eq!(error["code"], -32001, "{error}");

    // Denying resources afterwards refuses a read that worked before.
    warden.set_policy(|_, _| Verdict::Deny {
        reasons: vec![],
        code: "revoked".into(),
    });
    let error = agent.err(json!({"op": "read_resource", "uri": uri})).await;
    assert_eq!(error["code"], -32001, "{error}");
    agent.exit().await;
}
