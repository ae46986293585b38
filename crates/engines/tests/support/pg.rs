//! A real PostgreSQL for the `postgres` engine's tests (the minimal parts
//! of `crates/store/tests/it/pg.rs`).
//!
//! One server per test binary, started on first use in a temp dir on a free
//! loopback port; every test gets a fresh database on it. As root, the
//! server runs as the `postgres` user, because `initdb` refuses to run as
//! root. Authentication is real for the roles the engine creates: the
//! `postgres` superuser (the engine's admin in most tests) is trusted on
//! 127.0.0.1, every other role must give its password (SCRAM), so a test
//! that logs in proves the issued password and `VALID UNTIL` work.
//!
//! Statics are never dropped in Rust, so the server is stopped by a small
//! watchdog process started next to it: it ignores SIGINT/SIGTERM/SIGHUP,
//! waits for this test process to exit (normally, by panic or by signal),
//! then shuts PostgreSQL down (SIGINT = fast shutdown; done when the
//! server removes its pid file; SIGKILL after 10 s) and deletes the temp
//! dir. No postgres process outlives the tests.
//!
//! If PostgreSQL cannot be found or started, every PostgreSQL test fails
//! with the reason: never a silent skip.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection as _;

struct Server {
    port: u16,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(1);

/// A fresh, empty database on the test server.
pub struct Database {
    pub port: u16,
    pub name: String,
}

impl Database {
    /// The superuser's URL for this database (trusted: no password).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, self.name)
    }
}

/// Creates a fresh, empty database.
pub async fn fresh_database() -> Database {
    let server = match SERVER.get_or_init(start) {
        Ok(s) => s,
        Err(why) => panic!("the postgres engine tests need a real postgresql server: {why}"),
    };
    let name = format!("warrant_engine_{}", NEXT_DB.fetch_add(1, Ordering::Relaxed));
    let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port);
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test postgresql at {admin}: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    conn.close().await.ok();
    Database {
        port: server.port,
        name,
    }
}

/// Only the superuser is trusted; every other role logs in with its
/// password over TCP.
const PG_HBA: &str = "\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
";

fn start() -> Result<Server, String> {
    let bindir = find_bindir()?;
    let root = is_root()?;
    let dir = tempfile::Builder::new()
        .prefix("warrant-pg-")
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))?
        // The watchdog deletes it once the tests are over.
        .keep();
    if root {
        if !run(Command::new("id").args(["-u", "postgres"]))?
            .status
            .success()
        {
            return Err(
                "tests run as root, and initdb refuses root: create a `postgres` user \
                        (the postgresql server package does) or run the tests as a normal user"
                    .into(),
            );
        }
        check(
            Command::new("chown").args(["-R", "postgres"]).arg(&dir),
            "chown the temp dir",
        )?;
    }
    let data = dir.join("data");
    check(
        pg_command(root, &bindir, "initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]),
        "initdb",
    )?;
    // Overwriting keeps the file's owner (`postgres`).
    std::fs::write(data.join("pg_hba.conf"), PG_HBA)
        .map_err(|e| format!("cannot write pg_hba.conf: {e}"))?;
    let log = dir.join("postgres.log");
    let mut last_error = String::new();
    // A free port can be taken between probing and binding: try a few.
    for _ in 0..5 {
        let port = free_port()?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} \
             -c fsync=off -c max_connections=100",
            dir.display()
        );
        let started = run(pg_command(root, &bindir, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &options, "start"]))?;
        if started.status.success() {
            let watched = std::fs::read_to_string(data.join("postmaster.pid"))
                .map_err(|e| format!("postgresql started but its pid file is unreadable: {e}"))
                .and_then(|pid| spawn_watchdog(pid.lines().next().unwrap_or("").trim(), &dir));
            if let Err(why) = watched {
                // Without a watchdog nothing would stop it: stop it now.
                let _ = run(pg_command(root, &bindir, "pg_ctl")
                    .arg("-D")
                    .arg(&data)
                    .args(["-m", "immediate", "stop"]));
                return Err(why);
            }
            return Ok(Server { port });
        }
        last_error = format!(
            "pg_ctl start failed: {}{}\n--- postgres.log ---\n{}",
            String::from_utf8_lossy(&started.stdout),
            String::from_utf8_lossy(&started.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    // Nothing is running; remove what initdb wrote.
    std::fs::remove_dir_all(&dir).ok();
    Err(last_error)
}

/// `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`, else
/// whatever `initdb` is on PATH.
fn find_bindir() -> Result<PathBuf, String> {
    let has_initdb = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_initdb(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_initdb(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| has_initdb(d))
        .ok_or_else(|| {
            "postgresql server binaries (initdb, pg_ctl) not found via `pg_config --bindir`, \
             /usr/lib/postgresql/*/bin or PATH: install the postgresql server package \
             (e.g. `apt-get install postgresql`)"
                .into()
        })
}

fn is_root() -> Result<bool, String> {
    let out = run(Command::new("id").arg("-u"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A PostgreSQL tool, run as `postgres` when we are root (`runuser`, or
/// `su` where util-linux's runuser is missing).
fn pg_command(root: bool, bindir: &Path, tool: &str) -> Command {
    let program = bindir.join(tool);
    if !root {
        return Command::new(program);
    }
    let has_runuser = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|d| d.join("runuser").is_file());
    let mut c;
    if has_runuser {
        c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
    } else {
        // `su` passes the words after the command as "$0" "$@".
        c = Command::new("su");
        c.args(["postgres", "-s", "/bin/sh", "-c", r#"exec "$0" "$@""#])
            .arg(program);
    }
    c
}

pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free loopback port: {e}"))
}

fn run(cmd: &mut Command) -> Result<std::process::Output, String> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))
}

fn check(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = run(cmd)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Starts the process that stops PostgreSQL once this test binary exits.
fn spawn_watchdog(pg_pid: &str, dir: &Path) -> Result<(), String> {
    const SCRIPT: &str = r#"
        trap '' INT TERM HUP
        while kill -0 "$1" 2>/dev/null; do sleep 0.2; done
        kill -INT "$2" 2>/dev/null
        i=0
        while kill -0 "$2" 2>/dev/null && [ -e "$3/data/postmaster.pid" ] && [ "$i" -lt 100 ]; do
            sleep 0.1; i=$((i + 1))
        done
        [ -e "$3/data/postmaster.pid" ] && kill -KILL "$2" 2>/dev/null
        rm -rf "$3"
    "#;
    if pg_pid.parse::<u32>().is_err() {
        return Err(format!("postgresql's pid file holds `{pg_pid}`, not a pid"));
    }
    Command::new("sh")
        .args(["-c", SCRIPT, "warrant-pg-watchdog"])
        .arg(std::process::id().to_string())
        .arg(pg_pid)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot start the postgresql watchdog: {e}"))
}
