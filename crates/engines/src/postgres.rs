//! The `postgres` engine: one PostgreSQL login role per lease.
//!
//! `issue` runs the role's creation statements in one transaction (so a
//! failing statement creates nothing), then sets the role `VALID UNTIL`
//! the lease expiry itself, whatever the statements said. `revoke` blocks
//! new logins (`NOLOGIN`), terminates the role's open sessions (`VALID
//! UNTIL` does not end them), runs the revocation statements (by default
//! `REASSIGN OWNED`, `DROP OWNED`, `DROP ROLE`), and terminates once more
//! any session that slipped in.
//!
//! Role names are generated (`w_<agent>_<lease id>`), passwords are 32
//! random bytes: no value in a statement ever comes from a request. The
//! statements themselves are the operator's and run as written.
//!
//! Never: log a statement (it holds the password; sqlx's statement logging
//! is off), or quote the admin URL or a password in an error.

mod config;
mod template;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions as _, PgConnection};
use zeroize::Zeroizing;

use crate::{Engine, EngineContext, EngineError, IssueRequest, Issued, RoleInfo};
use config::{Config, Role};
use template::Values;

/// How long `issue` and `revoke` wait for a connection (connecting
/// included) before answering `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `pg_terminate_backend` waits for a session to end.
const TERMINATE_WAIT_MS: i64 = 5000;

/// Builds a `postgres` engine from its `[[engines]]` table. Connects
/// lazily: a server that is down at start-up makes leases fail, not the
/// start-up.
pub fn build(
    name: &str,
    config: &toml::Value,
    _ctx: &EngineContext,
) -> Result<Arc<dyn Engine>, String> {
    Ok(Arc::new(PostgresEngine::new(name, config)?))
}

/// The `postgres` engine.
pub struct PostgresEngine {
    name: String,
    config: Config,
    options: PgConnectOptions,
    /// Created on first use, inside the runtime that uses it.
    pool: OnceLock<PgPool>,
}

impl std::fmt::Debug for PostgresEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEngine")
            .field("name", &self.name)
            .field("roles", &self.config.roles.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PostgresEngine {
    /// Errors start with `engine `<name>`: `.
    pub fn new(name: &str, config: &toml::Value) -> Result<Self, String> {
        Self::parse(name, config).map_err(|e| format!("engine `{name}`: {e}"))
    }

    fn parse(name: &str, config: &toml::Value) -> Result<Self, String> {
        let config = config::parse(config)?;
        let options = config
            .admin_url
            .expose_secret()
            .parse::<PgConnectOptions>()
            .map_err(|_| "the admin url is not a valid postgresql connection url".to_owned())?
            .application_name("warrant")
            // INVARIANT: statements hold passwords; never log them.
            .disable_statement_logging();
        Ok(Self {
            name: name.to_owned(),
            config,
            options,
            pool: OnceLock::new(),
        })
    }

    fn pool(&self) -> &PgPool {
        self.pool.get_or_init(|| {
            PgPoolOptions::new()
                .max_connections(self.config.max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy_with(self.options.clone())
        })
    }

    fn role(&self, role: &str) -> Result<&Role, EngineError> {
        self.config
            .roles
            .get(role)
            .ok_or_else(|| EngineError::UnknownRole(role.to_owned()))
    }

    async fn connect(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, EngineError> {
        self.pool()
            .acquire()
            .await
            .map_err(|e| match classify(&e, None) {
                Failure::Transient(why) => {
                    EngineError::Unavailable(format!("cannot connect to postgresql: {why}"))
                }
                Failure::Permanent(why) => {
                    EngineError::Config(format!("cannot connect to postgresql as the admin: {why}"))
                }
            })
    }
}

/// The PostgreSQL role name for a lease: `w_<agent, 8 chars>_<lease id,
/// 32 hex>`, at most 43 bytes of `[a-z0-9_]` (PostgreSQL's limit is 63).
/// The full lease id keeps names unique; the agent part is for people
/// reading `pg_stat_activity`.
fn role_name(agent: &str, lease_id: uuid::Uuid) -> String {
    let agent: String = agent
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '_',
        })
        .take(8)
        .collect();
    format!("w_{agent}_{}", lease_id.simple())
}

/// A name `role_name` could have made: the only kind `revoke` will put
/// into a statement.
fn is_generated_name(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with("w_")
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `"name"`: generated names need no escaping, quoting keeps them literal.
fn ident(name: &str) -> String {
    format!("\"{name}\"")
}

/// What went wrong with a statement or a connection.
enum Failure {
    /// The server is down, restarting, overloaded, or the connection broke.
    Transient(String),
    /// The statement or the admin's rights are wrong: retrying won't help.
    Permanent(String),
}

/// Sorts an error and describes it without secrets: `password` is cut out
/// of the server's message (a syntax error quotes the text near it).
fn classify(e: &sqlx::Error, password: Option<&str>) -> Failure {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = match password {
                Some(pw) if !pw.is_empty() => redact(db.message(), pw),
                _ => db.message().to_owned(),
            };
            let why = format!("{message} (sqlstate {code})");
            // Connection exception, insufficient resources, operator
            // intervention (shutdown), system error, transaction rollback,
            // object not in prerequisite state (lock not available).
            if ["08", "53", "57", "58", "40", "55"]
                .iter()
                .any(|class| code.starts_with(class))
            {
                Failure::Transient(why)
            } else {
                Failure::Permanent(why)
            }
        }
        sqlx::Error::PoolTimedOut => Failure::Transient(format!(
            "no connection within {}s",
            ACQUIRE_TIMEOUT.as_secs()
        )),
        sqlx::Error::Configuration(_) => Failure::Permanent("bad connection settings".into()),
        // Io, Tls, Protocol, PoolClosed, decoding: a broken connection or
        // server; none of these messages holds a statement.
        other => Failure::Transient(other.to_string()),
    }
}

/// `message` without `secret` or pieces of it. PostgreSQL quotes the
/// token it choked on (`syntax error at or near "..."`) or the value it
/// could not use, and a token may be a fragment of an unquoted password:
/// a quoted piece that is part of the secret goes, and so does any run of
/// 8 or more password characters that is.
fn redact(message: &str, secret: &str) -> String {
    const REDACTED: &str = "[redacted]";
    let whole = message.replace(secret, REDACTED);
    let quoted: String = whole
        .split('"')
        .enumerate()
        .map(|(i, piece)| {
            if i % 2 == 1 && !piece.is_empty() && secret.contains(piece) {
                REDACTED
            } else {
                piece
            }
        })
        .collect::<Vec<_>>()
        .join("\"");
    let mut out = String::with_capacity(quoted.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 8 && secret.contains(run.as_str()) {
            out.push_str(REDACTED);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in quoted.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

fn generate_password() -> Result<Zeroizing<String>, EngineError> {
    let bytes = Zeroizing::new(
        warrant_crypto::random_bytes::<32>()
            .map_err(|e| EngineError::Internal(format!("cannot generate a password: {e}")))?,
    );
    Ok(Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_slice()),
    ))
}

#[async_trait]
impl Engine for PostgresEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn roles(&self) -> Vec<RoleInfo> {
        self.config
            .roles
            .values()
            .map(|r| RoleInfo {
                name: r.name.clone(),
                description: r.description.clone(),
                max_ttl_secs: r.max_ttl.as_secs(),
            })
            .collect()
    }

    fn max_ttl(&self, role: &str) -> Result<SignedDuration, EngineError> {
        Ok(self.role(role)?.max_ttl)
    }

    fn prepare(&self, req: &IssueRequest<'_>) -> Result<Value, EngineError> {
        let role = self.role(req.role)?;
        let no_params = match req.params {
            Value::Null => true,
            Value::Object(map) => map.is_empty(),
            _ => false,
        };
        if !no_params {
            return Err(EngineError::BadRequest(
                "the postgres engine takes no parameters".into(),
            ));
        }
        Ok(json!({
            "role": role_name(req.agent, req.lease_id),
            "engine_role": role.name,
        }))
    }

    async fn issue(&self, req: &IssueRequest<'_>, handle: &Value) -> Result<Issued, EngineError> {
        let role = self.role(req.role)?;
        if *handle != self.prepare(req)? {
            return Err(EngineError::Internal(
                "the handle does not match the lease".into(),
            ));
        }
        let name = role_name(req.agent, req.lease_id);
        // Whole seconds, rounded down: never later than the lease.
        let expires = Timestamp::from_second(req.expires_at.as_second())
            .map_err(|e| EngineError::Internal(format!("lease expiry out of range: {e}")))?;
        if expires <= Timestamp::now() {
            return Err(EngineError::BadRequest(format!(
                "the lease expiry `{expires}` is not in the future"
            )));
        }
        let expires_text = expires.to_string();
        let password = generate_password()?;
        let url = role
            .target
            .url_for(&name, &password)
            .map_err(EngineError::Internal)?;

        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(|e| match classify(&e, None) {
                Failure::Transient(why) => {
                    EngineError::Unavailable(format!("cannot connect to postgresql: {why}"))
                }
                Failure::Permanent(why) => {
                    EngineError::Config(format!("cannot connect to postgresql as the admin: {why}"))
                }
            })?;
        let created = create_role(&mut tx, role, &name, &password, &expires_text).await;
        match created {
            Ok(()) => {}
            Err(e) => {
                // Nothing was committed; roll back now rather than when the
                // connection is next used.
                let _ = tx.rollback().await;
                return Err(e);
            }
        }
        tx.commit().await.map_err(|e| {
            let why = match classify(&e, None) {
                Failure::Transient(why) | Failure::Permanent(why) => why,
            };
            EngineError::Unavailable(format!("cannot commit role `{name}`: {why}"))
        })?;

        let mut secrets = BTreeMap::new();
        secrets.insert(
            "password".to_owned(),
            SecretString::from(password.as_str().to_owned()),
        );
        secrets.insert("url".to_owned(), SecretString::from(url));
        Ok(Issued {
            secrets,
            public: json!({
                "username": name,
                "database": role.target.database,
                "host": role.target.host,
                "port": role.target.port,
                "valid_until": expires_text,
            }),
            handle: handle.clone(),
            expires_at: expires,
        })
    }

    async fn revoke(&self, handle: &Value) -> Result<(), EngineError> {
        let name = handle
            .get("role")
            .and_then(Value::as_str)
            .filter(|n| is_generated_name(n))
            .ok_or_else(|| {
                EngineError::Internal("the handle does not name a generated role".into())
            })?;
        // A role removed from the config since the lease was issued falls
        // back to the default revocation.
        let custom = handle
            .get("engine_role")
            .and_then(Value::as_str)
            .and_then(|r| self.config.roles.get(r))
            .and_then(|r| r.revocation.as_ref());
        let statements: Vec<String> = match custom {
            Some(templates) => templates
                .iter()
                .map(|t| {
                    t.render(&Values {
                        name,
                        password: None,
                        expires: None,
                    })
                })
                .collect(),
            None => default_revocation(name),
        };

        let unavailable = |what: &str, e: &sqlx::Error| {
            let why = match classify(e, None) {
                Failure::Transient(why) | Failure::Permanent(why) => why,
            };
            EngineError::Unavailable(format!("revoking role `{name}`: {what}: {why}"))
        };
        let mut conn = self.connect().await.map_err(|e| match e {
            // Revocation is retried whatever the reason.
            EngineError::Config(why) => EngineError::Unavailable(why),
            other => other,
        })?;
        let oid: Option<i64> =
            sqlx::query_scalar("SELECT oid::int8 FROM pg_roles WHERE rolname = $1")
                .bind(name)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| unavailable("looking it up", &e))?;
        let Some(oid) = oid else {
            // Never created, or already dropped.
            return Ok(());
        };
        // First stop new logins, so no session starts between the
        // termination and the drop.
        sqlx::raw_sql(AssertSqlSafe(format!("ALTER ROLE {} NOLOGIN", ident(name))))
            .execute(&mut *conn)
            .await
            .map_err(|e| unavailable("ALTER ROLE NOLOGIN", &e))?;
        terminate_sessions(&mut conn, oid)
            .await
            .map_err(|e| e.in_role(name))?;

        let mut tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(|e| unavailable("BEGIN", &e))?;
        for (i, statement) in statements.into_iter().enumerate() {
            if let Err(e) = sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut *tx)
                .await
            {
                let _ = tx.rollback().await;
                return Err(unavailable(&format!("revocation statement {}", i + 1), &e));
            }
        }
        tx.commit().await.map_err(|e| unavailable("COMMIT", &e))?;
        // A login that was being authenticated while NOLOGIN committed.
        // Sessions keep their role's oid after the drop.
        terminate_sessions(&mut conn, oid)
            .await
            .map_err(|e| e.in_role(name))?;
        Ok(())
    }
}

/// The creation statements, then `VALID UNTIL`, inside `tx`.
async fn create_role(
    tx: &mut PgConnection,
    role: &Role,
    name: &str,
    password: &str,
    expires: &str,
) -> Result<(), EngineError> {
    let values = Values {
        name,
        password: Some(password),
        expires: Some(expires),
    };
    for (i, template) in role.creation.iter().enumerate() {
        let statement = template.render(&values);
        if let Err(e) = sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await
        {
            return Err(match classify(&e, Some(password)) {
                Failure::Transient(why) => EngineError::Unavailable(format!(
                    "creation statement {} of role `{}`: {why}",
                    i + 1,
                    role.name
                )),
                Failure::Permanent(why) => EngineError::Config(format!(
                    "creation statement {} of role `{}` failed: {why}",
                    i + 1,
                    role.name
                )),
            });
        }
    }
    let transient = |what: &str, e: &sqlx::Error| match classify(e, Some(password)) {
        Failure::Transient(why) => EngineError::Unavailable(format!("{what}: {why}")),
        Failure::Permanent(why) => EngineError::Config(format!("{what}: {why}")),
    };
    let can_login: Option<bool> =
        sqlx::query_scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| transient("checking the new role", &e))?;
    match can_login {
        None => {
            return Err(EngineError::Config(format!(
                "the creation statements of role `{}` did not create the role `{{{{name}}}}`",
                role.name
            )));
        }
        Some(false) => {
            return Err(EngineError::Config(format!(
                "the creation statements of role `{}` created `{{{{name}}}}` without LOGIN",
                role.name
            )));
        }
        Some(true) => {}
    }
    // INVARIANT: the role stops working at the lease expiry whatever the
    // operator's statements said.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER ROLE {} VALID UNTIL '{expires}'",
        ident(name)
    )))
    .execute(&mut *tx)
    .await
    .map_err(|e| transient("setting VALID UNTIL", &e))?;
    Ok(())
}

/// Hands what the role owns in the admin's database to the admin, drops
/// its privileges there, then drops the role.
///
/// `REASSIGN OWNED` and `DROP OWNED` need the privileges of the role, which
/// a non-superuser admin with `CREATEROLE` does not hold by creating it:
/// granting the role to the admin first gives them (PostgreSQL 15 lets a
/// `CREATEROLE` role grant any non-superuser role, 16 and later give the
/// creator the admin option). The grant dies with the role.
fn default_revocation(name: &str) -> Vec<String> {
    let role = ident(name);
    vec![
        format!("GRANT {role} TO CURRENT_USER"),
        format!("REASSIGN OWNED BY {role} TO CURRENT_USER"),
        format!("DROP OWNED BY {role}"),
        format!("DROP ROLE IF EXISTS {role}"),
    ]
}

struct TerminateError(String);

impl TerminateError {
    fn in_role(self, name: &str) -> EngineError {
        EngineError::Unavailable(format!("revoking role `{name}`: {}", self.0))
    }
}

/// Ends every session of the role with oid `oid` and checks none is left.
async fn terminate_sessions(conn: &mut PgConnection, oid: i64) -> Result<(), TerminateError> {
    let describe = |e: sqlx::Error| {
        let why = match classify(&e, None) {
            Failure::Transient(why) | Failure::Permanent(why) => why,
        };
        TerminateError(format!("terminating its sessions: {why}"))
    };
    // The two-argument form (PostgreSQL 14+) waits until each session has
    // ended.
    sqlx::query(
        "SELECT pg_terminate_backend(pid, $2) FROM pg_stat_activity \
         WHERE usesysid::int8 = $1 AND pid <> pg_backend_pid()",
    )
    .bind(oid)
    .bind(TERMINATE_WAIT_MS)
    .execute(&mut *conn)
    .await
    .map_err(describe)?;
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE usesysid::int8 = $1 AND pid <> pg_backend_pid()",
    )
    .bind(oid)
    .fetch_one(&mut *conn)
    .await
    .map_err(describe)?;
    if left > 0 {
        return Err(TerminateError(format!(
            "{left} of its sessions did not end"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_safe_and_unique_per_lease() {
        let a = uuid::Uuid::now_v7();
        let b = uuid::Uuid::now_v7();
        let na = role_name("Build-Bot.Prod", a);
        assert!(na.starts_with("w_build_bo_"), "{na}");
        assert!(is_generated_name(&na));
        assert!(na.len() <= 63);
        assert_ne!(na, role_name("Build-Bot.Prod", b));
        assert!(!is_generated_name("postgres"));
        assert!(!is_generated_name("w_x\"; DROP TABLE t; --"));
    }

    #[test]
    fn redaction_removes_the_password_and_its_fragments() {
        let pw = "Abc-def_GhijklmnopQRSTUVwxyz0123456789abcde";
        assert_eq!(
            redact(
                &format!("invalid input syntax for type integer: \"{pw}\""),
                pw
            ),
            "invalid input syntax for type integer: \"[redacted]\""
        );
        assert_eq!(
            redact("syntax error at or near \"Abc\"", pw),
            "syntax error at or near \"[redacted]\""
        );
        assert_eq!(
            redact("trailing junk after GhijklmnopQR here", pw),
            "trailing junk after [redacted] here"
        );
        assert_eq!(
            redact("relation \"items\" does not exist", pw),
            "relation \"items\" does not exist"
        );
    }

    #[test]
    fn passwords_are_43_base64url_characters() {
        let p = generate_password().unwrap();
        assert_eq!(p.len(), 43);
        assert!(
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
}
