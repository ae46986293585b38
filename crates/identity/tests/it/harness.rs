//! Starts the real issuer. Installs `oauth2-mock-server` into a cache
//! outside the repo when it is missing, and FAILS (never skips) when Node.js
//! or the package cannot be had.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use warrant_core::{FakeClock, Scope, Task, TaskId, TaskState};
use warrant_identity::{Issuer, IssuerConfig};

/// The pinned package version the tests were written against.
const PACKAGE: &str = "oauth2-mock-server@9.3.0";

fn npm_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("WARRANT_NPM_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is not set; set WARRANT_NPM_CACHE");
    PathBuf::from(home).join(".cache/warrant-npm")
}

/// The package's ES module entry point, installing it on first use.
fn mock_server_entry() -> &'static PathBuf {
    static ENTRY: OnceLock<PathBuf> = OnceLock::new();
    ENTRY.get_or_init(|| {
        let dir = npm_cache();
        let entry = dir.join("node_modules/oauth2-mock-server/dist/index.mjs");
        if !entry.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            let status = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir)
                .arg(PACKAGE)
                .status()
                .unwrap_or_else(|e| {
                    panic!("cannot run npm to install {PACKAGE} (install Node.js and npm): {e}")
                });
            assert!(status.success(), "npm install {PACKAGE} failed: {status}");
            assert!(
                entry.exists(),
                "{} is missing after npm install",
                entry.display()
            );
        }
        entry
    })
}

/// One running issuer process.
pub struct MockIssuer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub url: String,
    pub kid: String,
}

impl MockIssuer {
    pub fn start() -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/issuer.mjs");
        let mut child = Command::new("node")
            .arg(&script)
            .arg(mock_server_entry())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node (install Node.js): {e}"));
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let hello = read_line(&mut stdout);
        Self {
            child,
            stdin,
            stdout,
            url: hello["issuer"].as_str().unwrap().to_owned(),
            kid: hello["kid"].as_str().unwrap().to_owned(),
        }
    }

    fn call(&mut self, command: Value) -> Value {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let answer = read_line(&mut self.stdout);
        assert!(answer.get("error").is_none(), "issuer: {answer}");
        answer
    }

    /// A token signed by `signer` (`main`, `unpublished`, `impostor` or a
    /// kid) with the issuer's defaults overridden by `claims` (null removes).
    pub fn token_from(&mut self, signer: &str, claims: Value) -> String {
        let answer = self
            .call(json!({"op": "token", "signer": signer, "claims": claims, "expires_in": 3600}));
        answer["token"].as_str().unwrap().to_owned()
    }

    pub fn token(&mut self, claims: Value) -> String {
        self.token_from("main", claims)
    }

    /// Publishes a new key for `alg` (`ES256`, `RS256`, ...).
    pub fn add_key(&mut self, alg: &str) -> String {
        self.call(json!({"op": "add_key", "alg": alg}))["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// How many times the JWKS endpoint has been fetched.
    pub fn jwks_fetches(&mut self) -> u64 {
        self.call(json!({"op": "jwks_fetches"}))["count"]
            .as_u64()
            .unwrap()
    }

    /// Stops serving: the issuer is down from now on.
    pub fn stop(&mut self) {
        self.call(json!({"op": "stop"}));
    }

    /// The issuer's published JWKS, fetched over HTTP like anyone could.
    pub async fn published_jwks(&self) -> Value {
        reqwest::get(format!("{}/jwks", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for MockIssuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_line(stdout: &mut BufReader<ChildStdout>) -> Value {
    let mut line = String::new();
    let n = stdout.read_line(&mut line).unwrap();
    assert!(n > 0, "the issuer process exited (see its stderr above)");
    serde_json::from_str(&line).unwrap()
}

/// Issuer config text shared by the tests: discovery on the loopback issuer,
/// a 60 s JWKS TTL and a 5 min staleness bound.
pub fn config(url: &str, role: &str) -> IssuerConfig {
    config_with_algorithms(url, r#"["ES256"]"#, role)
}

pub fn config_with_algorithms(url: &str, algorithms: &str, role: &str) -> IssuerConfig {
    let text = format!(
        r#"
issuer = "{url}"
discovery = true
audiences = ["warrant"]
algorithms = {algorithms}
dangerous_allow_http_loopback = true
max_clock_skew = "60s"
jwks_ttl = "60s"
jwks_max_staleness = "5m"
{role}
"#
    );
    toml::from_str(&text).unwrap()
}

pub const GITHUB_RULES: &str = r#"
[workload]
repository_claim = "repository"
ref_claim = "ref"
"#;

pub fn issuer(url: &str, role: &str) -> Issuer {
    Issuer::new(config(url, role)).unwrap()
}

/// The clock the verifier reads: the real time now, moved only by tests.
pub fn clock() -> FakeClock {
    FakeClock::new(Timestamp::now())
}

pub fn now_secs() -> i64 {
    Timestamp::now().as_second()
}

pub fn task(repos: &[&str], branches: &[&str]) -> Task {
    let now = Timestamp::now();
    Task {
        id: TaskId::new(),
        agent: warrant_core::Name::parse("agent", "builder").unwrap(),
        delegator: warrant_core::Name::parse("user", "alice").unwrap(),
        purpose: "fix the login page".into(),
        ticket: None,
        scope: Scope {
            repos: repos.iter().map(|s| s.to_string()).collect(),
            branches: branches.iter().map(|s| s.to_string()).collect(),
            ..Scope::default()
        }
        .validated()
        .unwrap(),
        state: TaskState::Pending,
        end_reason: None,
        end_note: None,
        created_at: now,
        expires_at: now + SignedDuration::from_hours(2),
        ended_at: None,
    }
}

/// A GitHub-Actions-shaped set of claims for `acme/web` on `feature/login`.
pub fn github_claims() -> Value {
    json!({
        "aud": "warrant",
        "sub": "repo:acme/web:ref:refs/heads/feature/login",
        "repository": "acme/web",
        "repository_owner": "acme",
        "ref": "refs/heads/feature/login",
        "jti": "run-1",
    })
}

/// `base` with `changes` applied. A null stays null, so the issuer removes
/// that claim (even one it sets by default, such as `exp`).
pub fn with(base: Value, changes: Value) -> Value {
    let mut m: Map<String, Value> = serde_json::from_value(base).unwrap();
    for (k, v) in changes.as_object().unwrap() {
        m.insert(k.clone(), v.clone());
    }
    Value::Object(m)
}
