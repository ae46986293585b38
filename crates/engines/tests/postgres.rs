//! The `postgres` engine against a real PostgreSQL on 127.0.0.1.
//!
//! Every test gets a fresh database on one server per test binary (see
//! `support/pg.rs`). Logins as the issued roles use their passwords (the
//! server trusts only its superuser), so a login that works proves the
//! credential, and one that fails proves the revocation or the expiry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/pg.rs"]
mod pg;

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection};
use warrant_core::TaskId;
use warrant_engines::{Engine, EngineContext, EngineError, IssueRequest, Issued};

const READONLY: &str = r#"
[[roles]]
name = "readonly"
description = "read the items"
max_ttl = "1h"
creation = [
    "CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expires}}'",
    "GRANT SELECT ON items TO \"{{name}}\"",
]
"#;

struct Setup {
    engine: Arc<dyn Engine>,
    db: pg::Database,
    _dir: tempfile::TempDir,
}

fn context(dir: &std::path::Path) -> EngineContext {
    EngineContext {
        data_dir: dir.to_path_buf(),
        signing_key: Arc::new(warrant_crypto::SigningKey::generate().unwrap()),
        issuer: "https://warrant.test".into(),
    }
}

/// Writes `url` to a 0600 file in `dir` and returns its path.
fn url_file(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("admin-url");
    std::fs::write(&path, url).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn engine_config(admin_file: &std::path::Path, roles: &str) -> toml::Value {
    let text = format!(
        "name = \"pg-main\"\ntype = \"postgres\"\nadmin_url_file = {:?}\n{roles}",
        admin_file.display().to_string()
    );
    toml::from_str(&text).unwrap()
}

/// A fresh database with a table `items` (3 rows) and an engine whose
/// admin is the superuser.
async fn setup(roles: &str) -> Setup {
    let db = pg::fresh_database().await;
    let mut admin = PgConnection::connect(&db.admin_url()).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE items (id int); INSERT INTO items VALUES (1), (2), (3); \
         CREATE TABLE revoked (name text)",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = engine_config(&url_file(dir.path(), &db.admin_url()), roles);
    let engine =
        warrant_engines::postgres::build("pg-main", &config, &context(dir.path())).unwrap();
    Setup {
        engine,
        db,
        _dir: dir,
    }
}

fn request<'a>(role: &'a str, params: &'a Value, expires_at: Timestamp) -> IssueRequest<'a> {
    IssueRequest {
        lease_id: uuid::Uuid::now_v7(),
        role,
        task_id: TaskId::new(),
        run_id: uuid::Uuid::now_v7(),
        agent: "build-bot",
        delegator: "alice",
        expires_at,
        params,
    }
}

fn in_minutes(m: i64) -> Timestamp {
    Timestamp::now() + SignedDuration::from_mins(m)
}

async fn issue(
    engine: &dyn Engine,
    req: &IssueRequest<'_>,
) -> Result<(Value, Issued), EngineError> {
    let handle = engine.prepare(req)?;
    let issued = engine.issue(req, &handle).await?;
    Ok((handle, issued))
}

fn secret(issued: &Issued, name: &str) -> String {
    issued.secrets[name].expose_secret().to_owned()
}

fn username(issued: &Issued) -> String {
    issued.public["username"].as_str().unwrap().to_owned()
}

async fn admin(db: &pg::Database) -> PgConnection {
    PgConnection::connect(&db.admin_url()).await.unwrap()
}

async fn role_exists(db: &pg::Database, name: &str) -> bool {
    let mut conn = admin(db).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = $1")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    n == 1
}

fn sqlstate(e: &sqlx::Error) -> String {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
        .unwrap_or_else(|| format!("not a database error: {e}"))
}

#[tokio::test]
async fn issued_credential_logs_in_and_its_grants_apply() {
    let s = setup(READONLY).await;
    let params = json!({});
    let req = request("readonly", &params, in_minutes(10));
    let (handle, issued) = issue(s.engine.as_ref(), &req).await.unwrap();

    assert_eq!(
        issued.secrets.keys().collect::<Vec<_>>(),
        ["password", "url"]
    );
    let name = username(&issued);
    assert!(name.starts_with("w_build_bo_"), "{name}");
    assert_eq!(handle["role"], name.as_str());
    assert_eq!(issued.handle, handle);
    assert_eq!(issued.public["database"], s.db.name.as_str());
    assert_eq!(issued.public["host"], "127.0.0.1");
    assert_eq!(issued.public["port"], s.db.port);
    let password = secret(&issued, "password");
    let url = secret(&issued, "url");
    assert_eq!(
        url,
        format!(
            "postgres://{name}:{password}@127.0.0.1:{}/{}",
            s.db.port, s.db.name
        )
    );
    // No secret in what is shown or stored.
    assert!(!issued.public.to_string().contains(&password));
    assert!(!handle.to_string().contains(&password));

    let mut conn = PgConnection::connect(&url).await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    let who: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(who, name);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 3);
    let denied = sqlx::query("INSERT INTO items VALUES (4)")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&denied), "42501", "{denied}");
    conn.close().await.unwrap();

    // The password is what lets it in.
    let wrong = format!(
        "postgres://{name}:not-the-password@127.0.0.1:{}/{}",
        s.db.port, s.db.name
    );
    let refused = PgConnection::connect(&wrong).await.unwrap_err();
    assert_eq!(sqlstate(&refused), "28P01", "{refused}");

    s.engine.revoke(&handle).await.unwrap();
}

#[tokio::test]
async fn role_is_valid_until_the_lease_expiry_even_when_statements_omit_it() {
    let roles = r#"
[[roles]]
name = "plain"
max_ttl = "1h"
creation = ["CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{password}}'"]
"#;
    let s = setup(roles).await;
    let params = json!({});
    let expires = in_minutes(7);
    let req = request("plain", &params, expires);
    let (handle, issued) = issue(s.engine.as_ref(), &req).await.unwrap();

    // Whole seconds, never past the lease.
    assert_eq!(issued.expires_at.as_second(), expires.as_second());
    assert!(issued.expires_at <= expires);
    assert_eq!(
        issued.public["valid_until"].as_str().unwrap(),
        issued.expires_at.to_string()
    );
    let mut conn = admin(&s.db).await;
    let until: Option<i64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM rolvaliduntil)::int8 FROM pg_roles WHERE rolname = $1",
    )
    .bind(username(&issued))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(until, Some(issued.expires_at.as_second()));

    s.engine.revoke(&handle).await.unwrap();
}

#[tokio::test]
async fn revoke_terminates_open_sessions_and_login_fails_after() {
    let s = setup(READONLY).await;
    let params = json!({});
    let req = request("readonly", &params, in_minutes(10));
    let (handle, issued) = issue(s.engine.as_ref(), &req).await.unwrap();
    let url = secret(&issued, "url");
    let name = username(&issued);

    // A session held open across the revocation.
    let mut open = PgConnection::connect(&url).await.unwrap();
    sqlx::query("SELECT count(*) FROM items")
        .execute(&mut open)
        .await
        .unwrap();

    s.engine.revoke(&handle).await.unwrap();

    let ended = sqlx::query("SELECT 1").execute(&mut open).await;
    assert!(ended.is_err(), "the open session survived the revocation");
    let refused = PgConnection::connect(&url).await.unwrap_err();
    assert_eq!(sqlstate(&refused), "28P01", "{refused}");
    assert!(!role_exists(&s.db, &name).await);
    let mut conn = admin(&s.db).await;
    let sessions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(sessions, 0);
}

#[tokio::test]
async fn revoke_is_idempotent() {
    let s = setup(READONLY).await;
    let params = json!({});
    let req = request("readonly", &params, in_minutes(10));
    let (handle, issued) = issue(s.engine.as_ref(), &req).await.unwrap();
    s.engine.revoke(&handle).await.unwrap();
    s.engine.revoke(&handle).await.unwrap();
    assert!(!role_exists(&s.db, &username(&issued)).await);

    // A handle whose issue never ran (the crash the lease manager recovers
    // from) revokes fine too.
    let other = request("readonly", &params, in_minutes(10));
    let never_issued = s.engine.prepare(&other).unwrap();
    s.engine.revoke(&never_issued).await.unwrap();
}

#[tokio::test]
async fn revoke_drops_a_role_that_owns_objects_and_keeps_them() {
    let roles = r#"
[[roles]]
name = "builder"
max_ttl = "1h"
creation = [
    "CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expires}}'",
    "GRANT CREATE, USAGE ON SCHEMA public TO \"{{name}}\"",
    "GRANT SELECT ON items TO \"{{name}}\"",
]
"#;
    let s = setup(roles).await;
    let params = json!({});
    let req = request("builder", &params, in_minutes(10));
    let (handle, issued) = issue(s.engine.as_ref(), &req).await.unwrap();
    let mut conn = PgConnection::connect(&secret(&issued, "url"))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE made_by_agent (x int)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    s.engine.revoke(&handle).await.unwrap();

    assert!(!role_exists(&s.db, &username(&issued)).await);
    let mut conn = admin(&s.db).await;
    let owner: String = sqlx::query_scalar(
        "SELECT tableowner::text FROM pg_tables WHERE tablename = 'made_by_agent'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(owner, "postgres");
}

#[tokio::test]
async fn custom_revocation_statements_run_after_sessions_end() {
    let roles = r#"
[[roles]]
name = "audited"
max_ttl = "1h"
creation = [
    "CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{password}}'",
    "GRANT SELECT ON items TO \"{{name}}\"",
]
revocation = [
    "INSERT INTO revoked (name) VALUES ('{{name}}')",
    "REVOKE SELECT ON items FROM \"{{name}}\"",
    "DROP ROLE \"{{name}}\"",
]
"#;
    let s = setup(roles).await;
    let params = json!({});
    let req = request("audited", &params, in_minutes(10));
    let (handle, issued) = issue(s.engine.as_ref(), &req).await.unwrap();
    let name = username(&issued);
    let mut open = PgConnection::connect(&secret(&issued, "url"))
        .await
        .unwrap();

    s.engine.revoke(&handle).await.unwrap();
    s.engine.revoke(&handle).await.unwrap();

    assert!(sqlx::query("SELECT 1").execute(&mut open).await.is_err());
    assert!(!role_exists(&s.db, &name).await);
    let mut conn = admin(&s.db).await;
    let logged: Vec<String> = sqlx::query_scalar("SELECT name FROM revoked")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    // Once: the second revoke found no role and ran nothing.
    assert_eq!(logged, [name]);
}

#[tokio::test]
async fn a_failing_creation_statement_creates_nothing() {
    let roles = r#"
[[roles]]
name = "broken"
max_ttl = "1h"
creation = [
    "CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{password}}'",
    "GRANT SELECT ON no_such_table TO \"{{name}}\"",
]
"#;
    let s = setup(roles).await;
    let params = json!({});
    let req = request("broken", &params, in_minutes(10));
    let handle = s.engine.prepare(&req).unwrap();
    let err = s.engine.issue(&req, &handle).await.unwrap_err();
    assert!(matches!(err, EngineError::Config(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("creation statement 2"), "{msg}");
    assert!(msg.contains("no_such_table"), "{msg}");
    let name = handle["role"].as_str().unwrap();
    assert!(!role_exists(&s.db, name).await);
    // The lease manager revokes the handle anyway: fine.
    s.engine.revoke(&handle).await.unwrap();
}

#[tokio::test]
async fn errors_never_quote_the_password() {
    // The server quotes the value it could not use, or the token it choked
    // on: both come from the password here.
    for statement in [
        "SELECT '{{password}}'::int",
        "CREATE ROLE \"{{name}}\" LOGIN PASSWORD {{password}}",
    ] {
        let roles = format!(
            r#"
[[roles]]
name = "leaky"
max_ttl = "1h"
creation = [
    "CREATE ROLE \"{{{{name}}}}\" LOGIN PASSWORD '{{{{password}}}}'",
    {statement:?},
]
"#
        );
        let s = setup(&roles).await;
        let params = json!({});
        let req = request("leaky", &params, in_minutes(10));
        let handle = s.engine.prepare(&req).unwrap();
        let err = s.engine.issue(&req, &handle).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("[redacted]"), "{msg}");
        // No run of password characters as long as a password survives.
        let longest = msg
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(longest < 43, "{msg}");
        assert!(!role_exists(&s.db, handle["role"].as_str().unwrap()).await);
    }
}

#[tokio::test]
async fn an_expired_credential_no_longer_logs_in() {
    let s = setup(READONLY).await;
    let params = json!({});
    let expires = Timestamp::now() + SignedDuration::from_secs(3);
    let req = request("readonly", &params, expires);
    let (handle, issued) = issue(s.engine.as_ref(), &req).await.unwrap();
    // PostgreSQL's own clock ends it; wait past it.
    let wait = issued.expires_at + SignedDuration::from_millis(1500) - Timestamp::now();
    tokio::time::sleep(wait.unsigned_abs()).await;
    let refused = PgConnection::connect(&secret(&issued, "url"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&refused), "28P01", "{refused}");
    s.engine.revoke(&handle).await.unwrap();
}

#[tokio::test]
async fn a_non_superuser_admin_with_createrole_issues_and_revokes() {
    let s = setup(READONLY).await;
    let mut conn = admin(&s.db).await;
    // Roles are cluster-wide; only this test makes this one.
    sqlx::raw_sql(
        "CREATE ROLE warrant_admin LOGIN CREATEROLE PASSWORD 'admin-pw'; \
         GRANT SELECT ON items TO warrant_admin WITH GRANT OPTION; \
         GRANT pg_signal_backend TO warrant_admin",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres://warrant_admin:admin-pw@127.0.0.1:{}/{}",
        s.db.port, s.db.name
    );
    let config = engine_config(&url_file(dir.path(), &url), READONLY);
    let engine =
        warrant_engines::postgres::build("pg-main", &config, &context(dir.path())).unwrap();
    let params = json!({});
    let req = request("readonly", &params, in_minutes(10));
    let (handle, issued) = issue(engine.as_ref(), &req).await.unwrap();
    let mut open = PgConnection::connect(&secret(&issued, "url"))
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&mut open)
        .await
        .unwrap();
    assert_eq!(rows, 3);

    engine.revoke(&handle).await.unwrap();

    assert!(sqlx::query("SELECT 1").execute(&mut open).await.is_err());
    assert!(!role_exists(&s.db, &username(&issued)).await);
}

#[tokio::test]
async fn a_backend_that_is_down_is_unavailable_and_nothing_is_issued() {
    let dir = tempfile::tempdir().unwrap();
    let port = pg::free_port().unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{port}/nothing");
    let config = engine_config(&url_file(dir.path(), &url), READONLY);
    let engine =
        warrant_engines::postgres::build("pg-main", &config, &context(dir.path())).unwrap();
    let params = json!({});
    let req = request("readonly", &params, in_minutes(10));
    let handle = engine.prepare(&req).unwrap();
    let err = engine.issue(&req, &handle).await.unwrap_err();
    assert!(matches!(err, EngineError::Unavailable(_)), "{err:?}");
    let err = engine.revoke(&handle).await.unwrap_err();
    assert!(matches!(err, EngineError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn unknown_roles_and_parameters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = engine_config(
        &url_file(dir.path(), "postgres://postgres@127.0.0.1:1/db"),
        READONLY,
    );
    let engine =
        warrant_engines::postgres::build("pg-main", &config, &context(dir.path())).unwrap();
    assert_eq!(engine.kind(), "postgres");
    assert_eq!(engine.name(), "pg-main");
    let roles = engine.roles();
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].name, "readonly");
    assert_eq!(roles[0].description, "read the items");
    assert_eq!(roles[0].max_ttl_secs, 3600);
    assert_eq!(
        engine.max_ttl("readonly").unwrap(),
        SignedDuration::from_hours(1)
    );
    assert!(matches!(
        engine.max_ttl("admin"),
        Err(EngineError::UnknownRole(_))
    ));

    let params = json!({});
    let req = request("admin", &params, in_minutes(10));
    assert!(matches!(
        engine.prepare(&req),
        Err(EngineError::UnknownRole(r)) if r == "admin"
    ));
    let params = json!({"database": "other"});
    let req = request("readonly", &params, in_minutes(10));
    assert!(matches!(
        engine.prepare(&req),
        Err(EngineError::BadRequest(_))
    ));

    // Deterministic in the lease: the handle names what issue creates.
    let params = json!({});
    let req = request("readonly", &params, in_minutes(10));
    assert_eq!(engine.prepare(&req).unwrap(), engine.prepare(&req).unwrap());
    // An expiry in the past is refused before any connection.
    let past = request(
        "readonly",
        &params,
        Timestamp::now() - SignedDuration::from_secs(5),
    );
    let handle = engine.prepare(&past).unwrap();
    assert!(matches!(
        engine.issue(&past, &handle).await,
        Err(EngineError::BadRequest(_))
    ));
    // A handle that is not this lease's is a bug, not a new role.
    let other = json!({"role": "w_x_y", "engine_role": "readonly"});
    assert!(matches!(
        engine.issue(&req, &other).await,
        Err(EngineError::Internal(_))
    ));
    // Revoke puts only generated names into statements.
    let evil = json!({"role": "postgres"});
    assert!(matches!(
        engine.revoke(&evil).await,
        Err(EngineError::Internal(_))
    ));
}

#[test]
fn config_errors_name_the_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let good = url_file(
        dir.path(),
        "postgres://postgres:pw-in-url@127.0.0.1:5432/app",
    );
    let open = dir.path().join("open-url");
    std::fs::write(&open, "postgres://postgres@127.0.0.1/app").unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mysql = dir.path().join("mysql-url");
    std::fs::write(&mysql, "mysql://root:hunter2@127.0.0.1/app").unwrap();
    std::fs::set_permissions(&mysql, std::fs::Permissions::from_mode(0o600)).unwrap();
    let file = |p: &std::path::Path| format!("admin_url_file = {:?}", p.display().to_string());
    let role = |body: &str| format!("[[roles]]\nname = \"r\"\nmax_ttl = \"1h\"\n{body}");
    let creation = r#"creation = ["CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{password}}'"]"#;

    let cases: Vec<(String, &str)> = vec![
        (
            format!("{}\nadmin_url = \"x\"\n{}", file(&good), role(creation)),
            "unknown field `admin_url`",
        ),
        (
            format!("{}\nadmin_url_env = \"X\"\n{}", file(&good), role(creation)),
            "not both",
        ),
        (
            role(creation),
            "one of `admin_url_env` and `admin_url_file` is required",
        ),
        (
            format!(
                "admin_url_env = \"WARRANT_TEST_NO_SUCH_VARIABLE\"\n{}",
                role(creation)
            ),
            "environment variable `WARRANT_TEST_NO_SUCH_VARIABLE` is not set",
        ),
        (
            format!("{}\n{}", file(&open), role(creation)),
            "accessible by group or others",
        ),
        (
            format!("{}\n{}", file(&mysql), role(creation)),
            "must start with `postgres://`",
        ),
        (
            format!("{}\nmax_connections = 0\n{}", file(&good), role(creation)),
            "`max_connections` must be at least 1",
        ),
        (file(&good), "no `[[engines.roles]]`"),
        (
            format!("{}\n{}\ncreatoin = []", file(&good), role(creation)),
            "role `r`: unknown field `creatoin`",
        ),
        (
            format!(
                "{}\n{}",
                file(&good),
                role(
                    r#"creation = ["CREATE ROLE {{name}} PASSWORD '{{password}}' IN ROLE {{group}}"]"#
                )
            ),
            "unknown placeholder `{{group}}`",
        ),
        (
            format!(
                "{}\n{}\nrevocation = [\"ALTER ROLE {{{{name}}}} PASSWORD '{{{{password}}}}'\"]",
                file(&good),
                role(creation)
            ),
            "revocation statement 1: placeholder `{{password}}` cannot be used here",
        ),
        (
            format!("{}\n{}\nrevocation = []", file(&good), role(creation)),
            "`revocation` is empty",
        ),
        (
            format!(
                "{}\n{}",
                file(&good),
                role(r#"creation = ["CREATE ROLE someone LOGIN PASSWORD '{{password}}'"]"#)
            ),
            "no creation statement uses `{{name}}`",
        ),
        (
            format!(
                "{}\n{}",
                file(&good),
                role(r#"creation = ["CREATE ROLE \"{{name}}\" LOGIN"]"#)
            ),
            "no creation statement uses `{{password}}`",
        ),
        (
            format!("{}\n{}", file(&good), role("creation = []")),
            "`creation` needs at least one statement",
        ),
        (
            format!(
                "{}\n{}\nconnect_url = \"postgres://u:p@db/app\"",
                file(&good),
                role(creation)
            ),
            "`connect_url` must not hold a user name or password",
        ),
        (
            format!(
                "{}\n[[roles]]\nname = \"r\"\nmax_ttl = \"soon\"\n{creation}",
                file(&good)
            ),
            "role `r`: `max_ttl`",
        ),
        (
            format!(
                "{}\n[[roles]]\nname = \"Read Only\"\nmax_ttl = \"1h\"\n{creation}",
                file(&good)
            ),
            "role `Read Only`:",
        ),
        (
            format!("{}\n{}\n{}", file(&good), role(creation), role(creation)),
            "role `r` is defined twice",
        ),
    ];
    for (text, expected) in cases {
        let config: toml::Value =
            toml::from_str(&format!("name = \"pg\"\ntype = \"postgres\"\n{text}"))
                .unwrap_or_else(|e| panic!("bad test toml {text}: {e}"));
        let err = warrant_engines::postgres::build("pg", &config, &context(dir.path()))
            .err()
            .unwrap_or_else(|| panic!("accepted: {text}"));
        assert!(err.contains(expected), "expected `{expected}` in `{err}`");
        assert!(err.starts_with("engine `pg`: "), "{err}");
        assert!(
            !err.contains("hunter2") && !err.contains("pw-in-url"),
            "{err}"
        );
    }

    // The good one builds, with `connect_url` giving runs another address.
    let config: toml::Value = toml::from_str(&format!(
        "{}\n{}\nconnect_url = \"postgres://db.internal:6432/app?sslmode=require\"",
        file(&good),
        role(creation)
    ))
    .unwrap();
    warrant_engines::postgres::build("pg", &config, &context(dir.path())).unwrap();
}
