//! Acceptance 3: log in, add a user and an agent, and take a task through
//! its life with the CLI.

use std::os::unix::fs::PermissionsExt as _;
use std::thread;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::util::Server;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `v` without its timestamps. The create responses carry nanoseconds that
/// the store truncates to microseconds, so a later read differs there.
fn timeless(v: &Value) -> Value {
    let mut v = v.clone();
    for field in ["created_at", "expires_at", "ended_at"] {
        if let Some(map) = v.as_object_mut() {
            map.remove(field);
        }
    }
    v
}

fn ids(list: &Value) -> Vec<String> {
    list["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn login_users_agents_and_the_task_lifecycle() {
    let server = Server::start();

    // Log in with the token file; later commands use the saved login.
    let me = server
        .cmd()
        .args(["login", "--token-file"])
        .arg(server.admin_token_file())
        .json();
    assert_eq!(me["name"], "admin");
    let creds = server.config_dir().join("credentials.json");
    assert_eq!(mode(&creds), 0o600);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    assert_eq!(saved["addr"], server.addr.as_str());
    assert_eq!(saved["token"], server.admin_token().as_str());
    let me = server.cmd().args(["user", "me"]).json();
    assert_eq!((&me["name"], &me["admin"]), (&json!("admin"), &json!(true)));

    // Users.
    let alice = server
        .cmd()
        .args(["user", "add", "alice", "--group", "dev", "--group", "ops"])
        .json();
    assert_eq!(alice["name"], "alice");
    assert_eq!(alice["groups"], json!(["dev", "ops"]));
    assert_eq!(alice["admin"], false);
    let alice_token = alice["token"].as_str().unwrap().to_owned();
    assert!(alice_token.starts_with("wrt_"), "{alice}");
    let users = server.cmd().args(["user", "list"]).json();
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"alice") && names.contains(&"admin"),
        "{users}"
    );
    // WARRANT_TOKEN beats the saved login.
    let me = server.as_user(&alice_token).args(["user", "me"]).json();
    assert_eq!(me["name"], "alice");
    assert!(me.get("token").is_none(), "{me}");

    // Agents.
    let agent = server
        .cmd()
        .args([
            "agent",
            "add",
            "claude-code",
            "--tier",
            "propose",
            "--owner",
            "alice",
        ])
        .args(["--description", "Claude Code in CI"])
        .json();
    assert_eq!(agent["name"], "claude-code");
    assert_eq!(agent["tier"], "propose");
    assert_eq!(agent["owner"], "alice");
    assert_eq!(agent["source"], "api");
    let agents = server.cmd().args(["agent", "list"]).json();
    assert_eq!(agents["agents"].as_array().unwrap().len(), 1, "{agents}");
    let shown = server.cmd().args(["agent", "show", "claude-code"]).json();
    assert_eq!(timeless(&shown), timeless(&agent));

    // Tasks.
    let mut task = server
        .cmd()
        .args([
            "task",
            "create",
            "--agent",
            "claude-code",
            "--purpose",
            "fix flaky test",
        ])
        .args([
            "--repo", "acme/api", "--repo", "acme/web", "--branch", "fix/*",
        ])
        .args(["--action", "repo.read", "--action", "repo.push"])
        .args(["--ttl", "30m", "--ticket", "ACME-12"])
        .json();
    let id = task["id"].as_str().unwrap().to_owned();
    assert!(id.parse::<warrant_core::TaskId>().is_ok(), "{task}");
    // `--output json` shows the one-time claim; `task show` never does.
    let fields = task.as_object_mut().unwrap();
    assert!(
        fields
            .remove("claim")
            .unwrap()
            .as_str()
            .unwrap()
            .starts_with("wcl_")
    );
    assert!(fields.remove("claim_expires_at").unwrap().is_string());
    assert_eq!(task["state"], "pending");
    assert_eq!(task["delegator"], "admin");
    assert_eq!(task["ticket"], "ACME-12");
    assert_eq!(task["scope"]["repos"], json!(["acme/api", "acme/web"]));
    assert_eq!(task["scope"]["branches"], json!(["fix/*"]));
    let created: Timestamp = task["created_at"].as_str().unwrap().parse().unwrap();
    let expires: Timestamp = task["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires.duration_since(created).as_secs(), 30 * 60);

    assert!(ids(&server.cmd().args(["task", "list"]).json()).contains(&id));
    assert!(
        ids(&server
            .cmd()
            .args([
                "task",
                "list",
                "--state",
                "pending",
                "--agent",
                "claude-code"
            ])
            .json())
        .contains(&id)
    );
    assert!(
        !ids(&server
            .cmd()
            .args(["task", "list", "--state", "ended"])
            .json())
        .contains(&id)
    );
    assert_eq!(
        timeless(&server.cmd().args(["task", "show", &id]).json()),
        timeless(&task)
    );
    let table = server
        .cmd()
        .args(["task", "show", &id, "--output", "table"])
        .stdout();
    assert!(
        table.contains(&id) && table.contains("fix flaky test"),
        "{table}"
    );

    // Someone else's task is not alice's to see.
    let stderr = server
        .as_user(&alice_token)
        .args(["task", "show", &id])
        .fails_with(1);
    assert!(stderr.contains("forbidden"), "{stderr}");

    // Narrowing keeps the lists not named.
    let narrowed = server
        .cmd()
        .args(["task", "narrow", &id, "--action", "repo.read"])
        .json();
    assert_eq!(narrowed["scope"]["actions"], json!(["repo.read"]));
    assert_eq!(narrowed["scope"]["repos"], json!(["acme/api", "acme/web"]));
    let stderr = server
        .cmd()
        .args(["task", "narrow", &id, "--action", "deploy"])
        .fails_with(1);
    assert!(stderr.contains("invalid_scope"), "{stderr}");

    let ended = server
        .cmd()
        .args(["task", "end", &id, "--reason", "done"])
        .json();
    assert_eq!(ended["state"], "ended");
    assert_eq!(ended["end_reason"], "completed");
    assert_eq!(ended["end_note"], "done");
    assert!(ended["ended_at"].is_string(), "{ended}");
    assert!(
        ids(&server
            .cmd()
            .args(["task", "list", "--state", "ended"])
            .json())
        .contains(&id)
    );

    let stderr = server.cmd().args(["task", "end", &id]).fails_with(1);
    assert!(stderr.contains("task_ended"), "{stderr}");
}

#[test]
fn login_reads_the_token_from_stdin_and_refuses_a_bad_one() {
    let server = Server::start();
    let creds = server.config_dir().join("credentials.json");

    let stderr = server
        .cmd()
        .args(["login"])
        .stdin("wrt_not-a-real-token\n")
        .fails_with(1);
    assert!(stderr.contains("unauthenticated"), "{stderr}");
    assert!(!creds.exists(), "a refused token must not be saved");

    let me = server
        .cmd()
        .args(["login"])
        .stdin(format!("{}\n", server.admin_token()))
        .json();
    assert_eq!(me["name"], "admin");
    assert!(creds.exists());
}

/// The reaper ends a task whose TTL ran out; nobody calls `task end`.
#[test]
fn a_task_with_a_one_minute_ttl_expires_on_its_own() {
    let server = Server::start();
    server
        .admin()
        .args(["agent", "add", "bot", "--tier", "read-only"])
        .json();
    let task = server
        .admin()
        .args([
            "task",
            "create",
            "--agent",
            "bot",
            "--purpose",
            "short job",
            "--ttl",
            "1m",
        ])
        .json();
    let id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(task["state"], "pending");

    // Not a timing assertion: 90 s is how long we are willing to wait.
    let deadline = Instant::now() + Duration::from_secs(90);
    let ended = loop {
        let shown = server.admin().args(["task", "show", &id]).json();
        if shown["state"] == "ended" {
            break shown;
        }
        assert!(
            Instant::now() < deadline,
            "task still {} after 90 s: {shown}",
            shown["state"]
        );
        thread::sleep(Duration::from_secs(2));
    };
    assert_eq!(ended["end_reason"], "expired", "{ended}");
    let expires: Timestamp = ended["expires_at"].as_str().unwrap().parse().unwrap();
    let ended_at: Timestamp = ended["ended_at"].as_str().unwrap().parse().unwrap();
    assert!(ended_at >= expires, "ended before it expired: {ended}");
}
