//! Acceptance 4: `warrant audit verify` passes on an untouched store and,
//! after someone edits the SQLite file directly, fails naming the first bad
//! sequence number and what is wrong. Plus `audit export`.

use std::path::Path;

use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, Connection as _};
use tempfile::TempDir;

use crate::util::{Server, TestCommand, copy_dir, json_lines};

/// A stopped server's data directory holding a realistic log: users, an
/// agent, tasks created and ended, start and stop, and the final checkpoint.
struct Fixture {
    server: Server,
    /// Events as `audit export` printed them while the server ran.
    online: Vec<Value>,
    /// A task with several events.
    task_id: String,
}

fn fixture() -> Fixture {
    let mut server = Server::start();
    server.admin().args(["user", "add", "bob"]).json();
    server
        .admin()
        .args([
            "agent", "add", "builder", "--tier", "propose", "--owner", "bob",
        ])
        .json();
    let mut ids = Vec::new();
    for purpose in ["one", "two", "three"] {
        let t = server
            .admin()
            .args(["task", "create", "--agent", "builder", "--purpose", purpose])
            .args(["--repo", "acme/api", "--ttl", "1h"])
            .json();
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    server
        .admin()
        .args(["task", "end", &ids[1], "--reason", "finished"])
        .json();
    let online = json_lines(&server.admin().args(["audit", "export"]).stdout());
    let status = server.stop();
    assert!(status.success(), "stderr:\n{}", server.stderr());
    Fixture {
        server,
        online,
        task_id: ids[1].clone(),
    }
}

impl Fixture {
    fn verify(&self, data_dir: &Path) -> TestCommand {
        let mut cmd = TestCommand::new(self.server.config_dir());
        cmd.args(["audit", "verify", "--data-dir"]).arg(data_dir);
        cmd
    }

    /// The sequence number of the first event of `kind`.
    fn seq_of(&self, kind: &str) -> i64 {
        self.online
            .iter()
            .find(|e| e["kind"] == kind)
            .and_then(|e| e["seq"].as_i64())
            .unwrap_or_else(|| panic!("no `{kind}` event in {:?}", self.online))
    }

    /// A fresh copy of the data directory with `statements` run on its
    /// database after dropping the append-only triggers.
    fn tampered(&self, statements: &[String]) -> TempDir {
        let copy = copy_dir(&self.server.data_dir);
        run_sql(&copy.path().join("warrant.db"), statements);
        copy
    }
}

fn run_sql(db: &Path, statements: &[String]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let opts = SqliteConnectOptions::new().filename(db);
        let mut conn = SqliteConnection::connect_with(&opts).await.unwrap();
        let triggers: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'trigger'")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert!(
            !triggers.is_empty(),
            "the store should guard its audit tables"
        );
        for (name,) in triggers {
            sqlx::query(AssertSqlSafe(format!("DROP TRIGGER \"{name}\"")))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        for sql in statements {
            let done = sqlx::query(AssertSqlSafe(sql.clone()))
                .execute(&mut conn)
                .await
                .unwrap();
            assert!(done.rows_affected() > 0, "`{sql}` changed nothing");
        }
        conn.close().await.unwrap();
    });
}

#[test]
fn verify_passes_on_an_untouched_store_and_names_the_first_bad_event_after_tampering() {
    let f = fixture();

    let report = f.verify(&f.server.data_dir).json();
    let head = f.online.last().unwrap()["seq"].as_u64().unwrap();
    assert!(report["events"].as_u64().unwrap() >= head, "{report}");
    assert_eq!(report["events"], report["head_seq"]);
    assert!(report["checkpoints"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["head_hash"].as_str().unwrap().len(), 64, "{report}");
    let table = f
        .verify(&f.server.data_dir)
        .args(["--output", "table"])
        .stdout();
    assert!(table.contains("audit log intact"), "{table}");

    let n = f.seq_of("task.created");
    assert!(n >= 2, "want an event with one before it: {n}");

    // Edit one event's data.
    let dir = f.tampered(&[format!(
        "UPDATE audit_events SET data = '{{\"purpose\":\"something else\"}}' WHERE seq = {n}"
    )]);
    let stderr = f.verify(dir.path()).fails_with(1);
    assert!(
        stderr.contains(&format!("audit chain broken at sequence {n}: modified")),
        "{stderr}"
    );

    // Delete one event.
    let dir = f.tampered(&[format!("DELETE FROM audit_events WHERE seq = {n}")]);
    let stderr = f.verify(dir.path()).fails_with(1);
    assert!(
        stderr.contains(&format!("audit chain broken at sequence {n}: missing")),
        "{stderr}"
    );

    // Swap two events.
    let m = n + 1;
    let dir = f.tampered(&[
        format!("UPDATE audit_events SET seq = -1 WHERE seq = {n}"),
        format!("UPDATE audit_events SET seq = {n} WHERE seq = {m}"),
        format!("UPDATE audit_events SET seq = {m} WHERE seq = -1"),
    ]);
    let stderr = f.verify(dir.path()).fails_with(1);
    assert!(
        stderr.contains(&format!("audit chain broken at sequence {n}: reordered")),
        "{stderr}"
    );

    // The untouched original still verifies.
    f.verify(&f.server.data_dir).json();
}

#[test]
fn verify_checks_checkpoints_against_the_key_it_is_told_to_trust() {
    let f = fixture();
    let ok = f
        .verify(&f.server.data_dir)
        .arg("--trusted-key")
        .arg(f.server.data_dir.join("signing.key"))
        .json();
    assert_eq!(ok["trusted_keys"].as_array().unwrap().len(), 1, "{ok}");

    let other = TempDir::new().unwrap();
    let stranger = other.path().join("stranger.hex");
    let key = warrant_crypto::SigningKey::generate().unwrap();
    std::fs::write(&stranger, hex::encode(key.public_key())).unwrap();
    let stderr = f
        .verify(&f.server.data_dir)
        .arg("--trusted-key")
        .arg(&stranger)
        .fails_with(1);
    assert!(stderr.contains("bad checkpoint"), "{stderr}");
    assert!(stderr.contains("unknown key"), "{stderr}");

    // A key record altered in the store is caught before any event.
    let dir = f.tampered(&["UPDATE public_keys SET public_key = randomblob(32)".to_owned()]);
    let stderr = f.verify(dir.path()).fails_with(1);
    assert!(stderr.contains("key table was altered"), "{stderr}");
}

#[test]
fn verify_trusts_only_the_servers_key_file_over_keys_the_store_lists() {
    // Regression: every key in the store's `public_keys` table was trusted,
    // so whoever could write the database could add a key of their own and
    // re-sign checkpoints over a rewritten chain.
    let f = fixture();
    let intruder = warrant_crypto::SigningKey::generate().unwrap();
    let dir = f.tampered(&[format!(
        "INSERT INTO public_keys (kid, alg, public_key, created_at) VALUES ('{}', 'EdDSA', X'{}', 0)",
        intruder.kid(),
        hex::encode(intruder.public_key())
    )]);
    let stderr = f.verify(dir.path()).fails_with(1);
    assert!(stderr.contains(intruder.kid()), "{stderr}");
    assert!(stderr.contains("key table was altered"), "{stderr}");

    // Without the key file only the store vouches for its keys: `--strict`
    // refuses to call that verified.
    std::fs::remove_file(dir.path().join("signing.key")).unwrap();
    let stderr = f.verify(dir.path()).arg("--strict").fails_with(1);
    assert!(stderr.contains("outside the store"), "{stderr}");
}

#[test]
fn strict_verify_fails_when_checkpoints_were_deleted() {
    // Deleting the signed checkpoints leaves a chain anyone could have
    // recomputed: plain verify passes but says how much is unanchored;
    // `--strict` fails.
    let f = fixture();
    let ok = f.verify(&f.server.data_dir).arg("--strict").json();
    assert_eq!(
        ok["unanchored"], 0,
        "a stopped server signs its last event: {ok}"
    );

    let dir = f.tampered(&["DELETE FROM audit_checkpoints".to_owned()]);
    let report = f.verify(dir.path()).json();
    assert_eq!(report["checkpoints"], 0, "{report}");
    assert_eq!(report["unanchored"], report["events"], "{report}");
    let stderr = f.verify(dir.path()).arg("--strict").fails_with(1);
    assert!(
        stderr.contains("not covered by a signed checkpoint"),
        "{stderr}"
    );
}

#[test]
fn verify_refuses_a_missing_store_instead_of_creating_one() {
    let tmp = TempDir::new().unwrap();
    let missing = tmp.path().join("nothing-here");
    let stderr = TestCommand::new(tmp.path())
        .args(["audit", "verify", "--data-dir"])
        .arg(&missing)
        .fails_with(1);
    assert!(stderr.contains("error: no store at"), "{stderr}");
    assert!(stderr.contains("hint: "), "{stderr}");
    assert!(!missing.exists());
}

#[test]
fn export_reads_the_same_events_offline_and_through_the_api() {
    let f = fixture();
    let offline = json_lines(
        &TestCommand::new(f.server.config_dir())
            .args(["audit", "export", "--format", "jsonl", "--data-dir"])
            .arg(&f.server.data_dir)
            .stdout(),
    );
    // The server may log its own stop after the online export.
    assert!(offline.len() >= f.online.len());
    assert_eq!(offline[..f.online.len()], f.online[..]);
    for (i, e) in offline.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1), "{e}");
    }

    let task = json_lines(
        &TestCommand::new(f.server.config_dir())
            .args(["audit", "export", "--task", &f.task_id, "--data-dir"])
            .arg(&f.server.data_dir)
            .stdout(),
    );
    let kinds: Vec<&str> = task.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["task.created", "task.ended"], "{task:?}");
    assert!(task.iter().all(|e| e["task_id"] == f.task_id.as_str()));
}
