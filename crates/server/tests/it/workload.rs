//! The RFC 7523 jwt-bearer grant against a REAL OIDC issuer on 127.0.0.1
//! (npm `oauth2-mock-server`, driven by warrant-identity's
//! `tests/issuer.mjs`): a workload token bound to the task's repository and
//! branch becomes a run token; wrong repository, wrong audience, expired and
//! unknown issuer are refused with `invalid_grant` and an audit event.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};
use warrant_crypto::jws::JwsAlg;

use crate::support::{Server, options, private_tempdir};
use crate::tokens::{Dpop, assert_oauth, me_status, post_token};

const PACKAGE: &str = "oauth2-mock-server@9.3.0";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Shares warrant-identity's npm cache; installs the package when missing,
/// and FAILS (never skips) when Node.js or the package cannot be had.
fn mock_server_entry() -> &'static PathBuf {
    static ENTRY: OnceLock<PathBuf> = OnceLock::new();
    ENTRY.get_or_init(|| {
        let dir = std::env::var_os("WARRANT_NPM_CACHE").map_or_else(
            || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/warrant-npm"),
            PathBuf::from,
        );
        let entry = dir.join("node_modules/oauth2-mock-server/dist/index.mjs");
        if !entry.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            let status = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir)
                .arg(PACKAGE)
                .status()
                .unwrap_or_else(|e| panic!("cannot run npm to install {PACKAGE}: {e}"));
            assert!(status.success(), "npm install {PACKAGE} failed: {status}");
        }
        entry
    })
}

pub struct MockIssuer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub url: String,
}

impl MockIssuer {
    pub fn start() -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../identity/tests/issuer.mjs");
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
        }
    }

    pub fn token(&mut self, claims: Value, expires_in: i64) -> String {
        let cmd =
            json!({"op": "token", "signer": "main", "claims": claims, "expires_in": expires_in});
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let answer = read_line(&mut self.stdout);
        answer["token"].as_str().unwrap().to_owned()
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
    assert!(
        stdout.read_line(&mut line).unwrap() > 0,
        "the issuer exited"
    );
    serde_json::from_str(&line).unwrap()
}

fn claims(changes: Value) -> Value {
    let mut base = json!({
        "aud": "warrant",
        "sub": "repo:acme/web:ref:refs/heads/feature/login",
        "repository": "acme/web",
        "ref": "refs/heads/feature/login",
    });
    for (k, v) in changes.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

#[tokio::test]
async fn workload_tokens_from_a_real_issuer_become_run_tokens_or_are_refused() {
    let mut mock = MockIssuer::start();
    let dir = private_tempdir();
    let config = dir.path().join("warrant.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[issuers]]
issuer = "{}"
discovery = true
audiences = ["warrant"]
algorithms = ["ES256"]
dangerous_allow_http_loopback = true
jwks_ttl = "60s"
jwks_max_staleness = "5m"
[issuers.workload]
repository_claim = "repository"
ref_claim = "ref"

# An issuer whose JWKS cannot be fetched: nothing cached, so its tokens are
# refused (never accepted on no or stale trust).
[[issuers]]
issuer = "http://127.0.0.1:9"
jwks_uri = "http://127.0.0.1:9/jwks"
audiences = ["warrant"]
algorithms = ["ES256"]
dangerous_allow_http_loopback = true
[issuers.workload]
repository_claim = "repository"
"#,
            mock.url
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut opts = options(&data);
    opts.config_file = Some(config);
    let server = Server::start_with(opts).await.unwrap();
    let bob = server.add_user("bob", false).await;
    server.add_agent("claude").await;
    let task = server
        .post(
            &bob,
            "/v1/tasks",
            json!({
                "agent": "claude",
                "purpose": "ship the login page",
                "ttl": "30m",
                "scope": {"repos": ["acme/web"], "branches": ["feature/*"], "actions": ["repo.read"]},
            }),
        )
        .await
        .assert_ok(201)
        .clone();
    let task_id = task["id"].as_str().unwrap().to_owned();
    let token_url = format!("{}/v1/token", server.base);

    // Refusals first: each leaves the task pending, no run, and an event.
    // A real token with its `iss` rewritten (the signature no longer holds,
    // but the issuer is picked, and refused, before that).
    let reissued = |token: &str, iss: &str| {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let parts: Vec<&str> = token.split('.').collect();
        let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        payload["iss"] = iss.into();
        format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(payload.to_string()),
            parts[2]
        )
    };
    let good = mock.token(claims(json!({})), 600);
    let other_issuer = reissued(&good, "https://evil.example");
    let unreachable_issuer = reissued(&good, "http://127.0.0.1:9");
    let cases = [
        (
            mock.token(claims(json!({"repository": "evil/web"})), 600),
            "task_binding",
        ),
        (
            mock.token(claims(json!({"aud": "someone-else"})), 600),
            "audience",
        ),
        (mock.token(claims(json!({})), -600), "expired"),
        (other_issuer, "issuer_unknown"),
        (unreachable_issuer, "keys_unavailable"),
    ];
    for (assertion, check) in &cases {
        let client = Dpop::new(JwsAlg::ES256);
        let (r, _) = post_token(
            &server,
            &[
                ("grant_type", GRANT),
                ("assertion", assertion),
                ("task_id", &task_id),
            ],
            Some(&client.proof("POST", &token_url, None)),
        )
        .await;
        assert_oauth(&r, 400, "invalid_grant");
        let events = server.audit_events().await;
        let last = events.last().unwrap();
        assert_eq!(last["kind"], "token.refused", "{last}");
        assert_eq!(last["data"]["check"], *check, "{last}");
        assert_eq!(last["data"]["grant_type"], GRANT, "{last}");
        assert_eq!(last["task_id"], task_id.as_str(), "{last}");
        assert!(events.iter().all(|e| e["kind"] != "run.started"), "{last}");
        let now = server.get(&bob, &format!("/v1/tasks/{task_id}")).await;
        assert_eq!(now.assert_ok(200)["state"], "pending");
    }

    // The good token: a run token that works at /v1/runs/me.
    let client = Dpop::new(JwsAlg::ES256);
    let assertion = mock.token(claims(json!({})), 600);
    let (r, cache) = post_token(
        &server,
        &[
            ("grant_type", GRANT),
            ("assertion", &assertion),
            ("task_id", &task_id),
        ],
        Some(&client.proof("POST", &token_url, None)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(cache, "no-store");
    assert_eq!(r.body["token_type"], "DPoP");
    assert_eq!(r.body["task_id"], task_id.as_str());
    let run_token = r.body["access_token"].as_str().unwrap();
    assert_eq!(me_status(&server, &client, run_token).await, 200);
    let now = server.get(&bob, &format!("/v1/tasks/{task_id}")).await;
    assert_eq!(now.assert_ok(200)["state"], "active");
    let started: Vec<Value> = server
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e["kind"] == "run.started")
        .collect();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["data"]["grant_type"], GRANT);
    assert_eq!(started[0]["data"]["workload"]["repository"], "acme/web");
    assert_eq!(started[0]["data"]["workload"]["branch"], "feature/login");

    // Another key holding the run token cannot use it.
    let thief = Dpop::new(JwsAlg::ES256);
    assert_eq!(me_status(&server, &thief, run_token).await, 401);

    // The same workload token again (a copied CI token, a fresh key): it
    // has started its run, so it starts no other.
    let copier = Dpop::new(JwsAlg::ES256);
    let (r, _) = post_token(
        &server,
        &[
            ("grant_type", GRANT),
            ("assertion", &assertion),
            ("task_id", &task_id),
        ],
        Some(&copier.proof("POST", &token_url, None)),
    )
    .await;
    assert_oauth(&r, 400, "invalid_grant");
    let events = server.audit_events().await;
    let last = events.last().unwrap();
    assert_eq!(last["kind"], "token.refused", "{last}");
    assert_eq!(last["data"]["check"], "assertion_replayed", "{last}");
    let started = events.iter().filter(|e| e["kind"] == "run.started").count();
    assert_eq!(started, 1);
    // A fresh token from the same issuer starts another run.
    let again = mock.token(claims(json!({"attempt": 2})), 600);
    let (r, _) = post_token(
        &server,
        &[
            ("grant_type", GRANT),
            ("assertion", &again),
            ("task_id", &task_id),
        ],
        Some(&copier.proof("POST", &token_url, None)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    server.stop().await.unwrap();
}
