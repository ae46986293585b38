//! Bad input through the CLI: a non-zero exit, `error:` with the API's
//! code on stderr, a hint where there is an obvious fix, and nothing
//! changed.

use tempfile::TempDir;

use crate::util::{Server, TestCommand};

fn audit_head(server: &Server) -> u64 {
    let lines = server.admin().args(["audit", "export"]).stdout();
    crate::util::json_lines(&lines)
        .last()
        .map_or(0, |e| e["seq"].as_u64().unwrap())
}

#[test]
fn a_task_for_an_unknown_agent_fails_with_its_code_and_changes_nothing() {
    let server = Server::start();
    let head = audit_head(&server);
    let stderr = server
        .admin()
        .args(["task", "create", "--agent", "ghost", "--purpose", "haunt"])
        .fails_with(1);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("(code: unknown_agent)"), "{stderr}");
    assert!(stderr.contains("hint: "), "{stderr}");

    let tasks = server.admin().args(["task", "list"]).json();
    assert_eq!(tasks["tasks"], serde_json::json!([]));
    assert_eq!(
        audit_head(&server),
        head,
        "no audit event for refused input"
    );
}

#[test]
fn a_bad_ttl_and_a_duplicate_name_are_refused_with_their_codes() {
    let server = Server::start();
    server
        .admin()
        .args(["agent", "add", "bot", "--tier", "propose"])
        .json();
    let head = audit_head(&server);

    let stderr = server
        .admin()
        .args([
            "task",
            "create",
            "--agent",
            "bot",
            "--purpose",
            "x",
            "--ttl",
            "30s",
        ])
        .fails_with(1);
    assert!(stderr.contains("invalid_ttl"), "{stderr}");

    let stderr = server
        .admin()
        .args(["agent", "add", "bot", "--tier", "read-only"])
        .fails_with(1);
    assert!(stderr.contains("agent_exists"), "{stderr}");
    assert_eq!(audit_head(&server), head);
}

#[test]
fn without_a_token_the_cli_says_how_to_log_in() {
    let server = Server::start();
    let stderr = server.cmd().args(["task", "list"]).fails_with(1);
    assert!(stderr.contains("error: no API token"), "{stderr}");
    assert!(stderr.contains("hint: run `warrant login"), "{stderr}");
}

#[test]
fn a_wrong_token_is_unauthenticated_and_the_cli_says_how_to_log_in() {
    let server = Server::start();
    let stderr = server
        .as_user("wrt_this-is-not-a-token")
        .args(["user", "me"])
        .fails_with(1);
    assert!(stderr.contains("unauthenticated"), "{stderr}");
    assert!(stderr.contains("hint: run `warrant login"), "{stderr}");
}

/// A saved token belongs to the server it was saved for: pointing the CLI
/// at another address must not send it there.
#[test]
fn the_saved_token_is_not_sent_to_another_address() {
    let server = Server::start();
    server
        .cmd()
        .args(["login", "--token-file"])
        .arg(server.admin_token_file())
        .json();
    let stderr = TestCommand::new(server.config_dir())
        .args(["user", "me", "--addr", "http://127.0.0.1:1"])
        .fails_with(1);
    assert!(
        stderr.contains("no API token for `http://127.0.0.1:1`"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_server_gets_a_hint_to_start_one() {
    let home = TempDir::new().unwrap();
    let stderr = TestCommand::new(home.path())
        .args([
            "user",
            "me",
            "--addr",
            "http://127.0.0.1:1",
            "--token",
            "wrt_x",
        ])
        .fails_with(1);
    assert!(
        stderr.contains("error: cannot reach warrant at `http://127.0.0.1:1`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: is `warrant serve` running at http://127.0.0.1:1?"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_with_2() {
    let home = TempDir::new().unwrap();
    let stderr = TestCommand::new(home.path())
        .args(["agent", "add", "bot", "--tier", "omnipotent"])
        .fails_with(2);
    assert!(stderr.contains("read-only"), "{stderr}");
    let stderr = TestCommand::new(home.path())
        .args(["task", "show", "not-a-uuid"])
        .fails_with(2);
    assert!(stderr.contains("not-a-uuid"), "{stderr}");
    TestCommand::new(home.path()).args(["task"]).fails_with(2);
}
