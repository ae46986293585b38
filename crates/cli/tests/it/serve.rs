//! `warrant serve`: first start, restart, shutdown, bad configuration.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use tempfile::TempDir;

use crate::util::{BIN, Server, TestCommand};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Acceptance 1: no flags but a free port; the data directory defaults to
/// `./warrant-data`.
#[test]
fn first_start_without_config_serves_healthz_and_writes_a_private_admin_token() {
    let cwd = TempDir::new().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("WARRANT_DATA_DIR")
        .env_remove("WARRANT_STORE")
        .env_remove("WARRANT_CONFIG")
        .current_dir(cwd.path());
    let data_dir = cwd.path().join("warrant-data");
    let mut server = Server::spawn(cmd, data_dir.clone());

    let (status, body) = server.http_get("/healthz");
    assert_eq!(status, 200, "{body}");

    let token_file = data_dir.join("admin.token");
    assert_eq!(mode(&token_file), 0o600);
    assert!(server.admin_token().starts_with("wrt_"));
    assert_eq!(mode(&data_dir.join("signing.key")), 0o600);
    assert!(data_dir.join("warrant.db").is_file());

    let written = server.wait_for_line("admin token written to ");
    assert!(written.ends_with("admin.token"), "{written}");
    let login = server.wait_for_line("log in with: ");
    assert!(
        login.contains(&format!(
            "warrant login --addr {} --token-file ",
            server.addr
        )),
        "{login}"
    );
    assert!(
        server.stdout[0].ends_with("(store: sqlite)"),
        "{:?}",
        server.stdout
    );

    // The printed token works.
    let me = server.admin().args(["user", "me"]).json();
    assert_eq!(me["name"], "admin");
    assert_eq!(me["admin"], true);
}

#[test]
fn a_restart_keeps_the_admin_token_and_does_not_announce_a_new_one() {
    let mut first = Server::start();
    let token = first.admin_token();
    assert!(first.stop().success());
    assert!(
        first
            .stdout
            .iter()
            .any(|l| l.starts_with("admin token written to"))
    );

    let tmp = TempDir::new().unwrap();
    let mut second = Server::start_in(&first.data_dir, tmp.path());
    assert_eq!(second.admin_token(), token);
    assert!(second.stop().success());
    assert!(
        !second.stdout.iter().any(|l| l.contains("admin token")),
        "{:?}",
        second.stdout
    );
}

/// SIGTERM ends the process with exit code 0 after the final checkpoint.
#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start();
    server.admin().args(["user", "add", "carol"]).json();
    let status = server.stop();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());

    let report = TestCommand::new(server.config_dir())
        .args(["audit", "verify", "--data-dir"])
        .arg(&server.data_dir)
        .json();
    assert!(report["checkpoints"].as_u64().unwrap() >= 1, "{report}");
}

#[test]
fn a_missing_config_file_is_refused() {
    let tmp = TempDir::new().unwrap();
    let missing = tmp.path().join("nope.toml");
    let stderr = TestCommand::new(tmp.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .args(["--config"])
        .arg(&missing)
        .fails_with(1);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("nope.toml"), "{stderr}");
}
