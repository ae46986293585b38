//! Issue 6 with the real binary and a real PostgreSQL on 127.0.0.1:
//! `warrant exec` runs `psql` with a task-scoped role that is dropped when
//! it exits (acceptance 3); a lease outlives a `kill -9` of Warrant and is
//! revoked by the restarted server (acceptance 2); a lease whose backend
//! stays unreachable ends `irrevocable` and shows in `warrant lease list
//! --state irrevocable` (acceptance 5).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::refusals::{Agent, key};
use crate::util::Server;

#[path = "../../../engines/tests/support/pg.rs"]
#[allow(dead_code)]
mod pg;

fn private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn token_of(v: &Value) -> String {
    v["token"].as_str().unwrap().to_owned()
}

async fn roles_like(admin: &str, prefix: &str) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT rolname FROM pg_roles WHERE rolname LIKE $1 ORDER BY 1")
            .bind(format!("{prefix}%"))
            .fetch_all(&mut conn)
            .await
            .unwrap();
    conn.close().await.unwrap();
    rows.into_iter().map(|(r,)| r).collect()
}

async fn sql(admin: &str, statement: &str) {
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

const ROLE: &str = r#"
[[engines.roles]]
name = "ro"
max_ttl = "10m"
creation = [
  "CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expires}}'",
]
"#;

#[test]
fn postgres_leases_with_exec_crash_recovery_and_irrevocable() {
    // The agent helper runs its own runtime: this test is synchronous and
    // uses a second one for its own database checks.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(pg::fresh_database());
    let admin = db.admin_url();
    // A second admin the test can lock out later: its backend "stays down".
    rt.block_on(sql(
        &admin,
        "CREATE ROLE wadmin LOGIN CREATEROLE PASSWORD 'wadmin-password'",
    ));
    let weak_admin = format!(
        "postgres://wadmin:wadmin-password@127.0.0.1:{}/{}",
        db.port, db.name
    );

    let tmp = tempfile::TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let admin_file = tmp.path().join("pg.url");
    private(&admin_file, &admin);
    let weak_file = tmp.path().join("weak.url");
    private(&weak_file, &weak_admin);
    let config = tmp.path().join("warrant.toml");
    std::fs::write(
        &config,
        format!(
            "[tasks]\nreaper_interval = \"1s\"\n[leases]\nmax_revoke_attempts = 2\nrevoke_backoff = \"10ms\"\n\
             [[engines]]\nname = \"pg\"\ntype = \"postgres\"\nadmin_url_file = \"{}\"\n{ROLE}\n\
             [[engines]]\nname = \"weak\"\ntype = \"postgres\"\nadmin_url_file = \"{}\"\n{ROLE}",
            admin_file.display(),
            weak_file.display()
        ),
    )
    .unwrap();
    let mut server = Server::start_with_config(&data, &config, tmp.path());
    server
        .admin()
        .args(["agent", "add", "ops-bot", "--tier", "privileged"])
        .json();
    let olga = token_of(
        &server
            .admin()
            .args(["user", "add", "olga", "--group", "operators"])
            .json(),
    );
    let new_task = |server: &Server| {
        server
            .as_user(&olga)
            .args([
                "task",
                "create",
                "--agent",
                "ops-bot",
                "--purpose",
                "db work",
            ])
            .args([
                "--secret",
                "pg/ro",
                "--secret",
                "weak/ro",
                "--action",
                "credential.issue",
            ])
            .json()
    };

    // 3. `warrant exec` gives psql a role for the task; the role is gone
    //    once the command exits; the exit code is the command's.
    let task = new_task(&server);
    let claim = tmp.path().join("claim");
    private(&claim, task["claim"].as_str().unwrap());
    let out = tmp.path().join("who");
    let status = server
        .cmd()
        .args(["exec", "--task", task["id"].as_str().unwrap(), "--claim"])
        .arg(&claim)
        .args(["--lease", "pg/ro=DATABASE_URL", "--", "sh", "-c"])
        .arg(format!(
            "psql \"$DATABASE_URL\" -tAc 'select current_user' > {} && exit 7",
            out.display()
        ))
        .output();
    assert_eq!(
        status.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let who = std::fs::read_to_string(&out).unwrap();
    assert!(who.trim().starts_with("w_"), "{who}");
    assert!(
        rt.block_on(roles_like(&admin, who.trim())).is_empty(),
        "the role outlived the command"
    );

    // 2. A lease, then kill -9: the restarted server revokes it once expired.
    let agent = Agent::new(&server.addr);
    let task = new_task(&server);
    let run_key = key();
    let r = agent.redeem(&run_key, task["claim"].as_str().unwrap());
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    let leased = agent.post_lease(
        &run_key,
        &token,
        &json!({"engine": "pg", "role": "ro", "ttl": "3s"}),
    );
    assert_eq!(leased.status, 201, "{}", leased.body);
    let role = leased.body["public"]["username"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(rt.block_on(roles_like(&admin, &role)), vec![role.clone()]);
    server.kill_hard();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        rt.block_on(roles_like(&admin, &role)),
        vec![role.clone()],
        "nothing revoked it while down"
    );
    let mut server = Server::start_with_config(&data, &config, tmp.path());
    let mut gone = false;
    for _ in 0..100 {
        if rt.block_on(roles_like(&admin, &role)).is_empty() {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        gone,
        "the restarted server did not revoke the expired lease"
    );
    let events: Vec<Value> = server
        .admin()
        .args(["audit", "export", "--format", "jsonl"])
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let revoked = events
        .iter()
        .find(|e| e["kind"] == "lease.revoked" && e["data"]["lease_id"] == leased.body["id"])
        .expect("no lease.revoked event");
    assert_eq!(revoked["data"]["reason"], "expired", "{revoked}");

    // 5. A backend that stays unreachable: the lease ends irrevocable.
    let agent = Agent::new(&server.addr);
    let task = new_task(&server);
    let run_key = key();
    let r = agent.redeem(&run_key, task["claim"].as_str().unwrap());
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    let leased = agent.post_lease(&run_key, &token, &json!({"engine": "weak", "role": "ro"}));
    assert_eq!(leased.status, 201, "{}", leased.body);
    let id = leased.body["id"].as_str().unwrap().to_owned();
    let stuck = leased.body["public"]["username"]
        .as_str()
        .unwrap()
        .to_owned();
    rt.block_on(sql(&admin, "ALTER ROLE wadmin NOLOGIN"));
    rt.block_on(sql(
        &admin,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'wadmin'",
    ));
    server.admin().args(["lease", "revoke", &id]).json();
    let mut listed = Value::Null;
    for _ in 0..100 {
        listed = server
            .admin()
            .args(["lease", "list", "--state", "irrevocable"])
            .json();
        if listed["leases"].as_array().is_some_and(|l| !l.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(listed["leases"][0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed["leases"][0]["attempts"], 2, "{listed}");
    assert!(
        listed["leases"][0]["last_error"].as_str().is_some(),
        "{listed}"
    );
    assert_eq!(rt.block_on(roles_like(&admin, &stuck)), vec![stuck.clone()]);
    // Once the backend is back, a human retries it.
    rt.block_on(sql(&admin, "ALTER ROLE wadmin LOGIN"));
    let done = server.admin().args(["lease", "revoke", &id]).json();
    assert_eq!(done["state"], "revoked", "{done}");
    assert!(rt.block_on(roles_like(&admin, &stuck)).is_empty());
    let events = server
        .admin()
        .args(["audit", "export", "--format", "jsonl"])
        .stdout();
    assert!(events.contains("\"lease.irrevocable\""));
    assert!(server.stop().success(), "{}", server.stderr());
}
