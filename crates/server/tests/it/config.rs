//! The config file: declared agents, and clear errors for bad files.

use serde_json::Value;
use warrant_server::ServerError;

use crate::support::{Server, options};

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("warrant.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn agent_events(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["kind"].as_str().unwrap().starts_with("agent."))
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn config_agents_are_created_then_updated_when_changed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let agents = r#"
[[agents]]
name = "claude-code"
tier = "propose"
owner = "admin"
description = "Claude Code in CI"

[[agents]]
name = "reader"
tier = "read-only"
"#;
    let mut opts = options(&data);
    opts.config_file = Some(write_config(dir.path(), agents));
    let s = Server::start_with(opts.clone()).await.unwrap();
    let r = s.get(&s.admin, "/v1/agents/claude-code").await;
    let a = r.assert_ok(200);
    assert_eq!(a["tier"], "propose");
    assert_eq!(a["owner"], "admin");
    assert_eq!(a["description"], "Claude Code in CI");
    assert_eq!(a["source"], "config");
    assert_eq!(
        s.get(&s.admin, "/v1/agents/reader").await.assert_ok(200)["tier"],
        "read-only"
    );
    let events = s.audit_events().await;
    assert_eq!(
        agent_events(&events),
        vec![
            ("agent.created".into(), "system:config".into()),
            ("agent.created".into(), "system:config".into())
        ]
    );
    s.stop().await.unwrap();

    // Unchanged: nothing written.
    let s = Server::start_with(opts.clone()).await.unwrap();
    assert_eq!(agent_events(&s.audit_events().await).len(), 2);
    s.stop().await.unwrap();

    // Changed tier: updated.
    write_config(dir.path(), &agents.replace("\"propose\"", "\"privileged\""));
    let s = Server::start_with(opts).await.unwrap();
    assert_eq!(
        s.get(&s.admin, "/v1/agents/claude-code")
            .await
            .assert_ok(200)["tier"],
        "privileged"
    );
    let events = agent_events(&s.audit_events().await);
    assert_eq!(events.len(), 3);
    assert_eq!(events[2], ("agent.updated".into(), "system:config".into()));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn invalid_config_files_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "listen = \"127.0.0.1:0\"\ncolour = \"blue\"\n",
            "unknown field `colour`",
        ),
        (
            "[tasks]\nreaper_interval = \"often\"\n",
            "`tasks.reaper_interval`",
        ),
        ("[tasks]\nmax_ttl = \"30s\"\n", "`tasks.max_ttl`"),
        ("[[agents]]\nname = \"x\"\ntier = \"god\"\n", "tier `god`"),
        ("listen = [\n", "TOML parse error"),
    ];
    for (text, expected) in cases {
        let path = write_config(dir.path(), text);
        let mut opts = options(&dir.path().join("data"));
        opts.config_file = Some(path.clone());
        let err = Server::start_with(opts).await.err().unwrap();
        assert!(matches!(err, ServerError::Config(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(expected), "{text:?}: {msg}");
    }
    // Nothing was started: no data directory.
    assert!(!dir.path().join("data").exists());
}

#[tokio::test]
async fn a_config_agent_with_an_unknown_owner_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(&dir.path().join("data"));
    opts.config_file = Some(write_config(
        dir.path(),
        "[[agents]]\nname = \"bot\"\ntier = \"propose\"\nowner = \"ghost\"\n",
    ));
    let err = Server::start_with(opts).await.err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("`bot`") && msg.contains("`ghost`"), "{msg}");
}
