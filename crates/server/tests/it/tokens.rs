//! Issue 3: discovery, the task-claim grant with DPoP, and run-token
//! authentication at `/v1/runs/me`, against the real server.

use std::path::PathBuf;
use std::process::Command;

use reqwest::Method;
use serde_json::{Value, json};
use warrant_crypto::jws::{JwsAlg, ProofKey};
use warrant_token::access_token_hash;

use crate::support::{Api, Resp, Server};

/// A DPoP client: one proof key, fresh proofs per request.
pub struct Dpop {
    key: ProofKey,
}

impl Dpop {
    pub fn new(alg: JwsAlg) -> Self {
        Self {
            key: ProofKey::generate(alg).unwrap(),
        }
    }

    pub fn proof(&self, method: &str, url: &str, token: Option<&str>) -> String {
        self.proof_at(method, url, token, jiff::Timestamp::now())
    }

    /// A proof made at `iat` (for servers on a fake clock).
    pub fn proof_at(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        iat: jiff::Timestamp,
    ) -> String {
        let jti = hex::encode(warrant_crypto::random_bytes::<16>().unwrap());
        let mut claims = json!({
            "jti": jti,
            "htm": method,
            "htu": url,
            "iat": iat.as_second(),
        });
        if let Some(t) = token {
            claims["ath"] = access_token_hash(t).into();
        }
        self.key.sign_with_jwk("dpop+jwt", &claims).unwrap()
    }
}

pub const CLAIM_GRANT: &str = "urn:warrant:grant-type:task-claim";

pub async fn post_token(api: &Api, form: &[(&str, &str)], proof: Option<&str>) -> (Resp, String) {
    let mut req = api
        .http
        .post(format!("{}/v1/token", api.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form.iter()
                .map(|(k, v)| format!("{k}={}", urlencode(v)))
                .collect::<Vec<_>>()
                .join("&"),
        );
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    let res = req.send().await.unwrap();
    let cache = res
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (
        Resp {
            status,
            content_type: String::new(),
            body,
            text,
        },
        cache,
    )
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn me(api: &Api, token: &str, proof: Option<&str>, scheme: &str) -> Resp {
    let mut req = api
        .http
        .request(Method::GET, format!("{}/v1/runs/me", api.base))
        .header("authorization", format!("{scheme} {token}"));
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let www = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = res.text().await.unwrap();
    let mut body = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status == 401 {
        assert!(www.starts_with("DPoP "), "challenge: {www}");
        body["www"] = www.into();
    }
    Resp {
        status,
        content_type: String::new(),
        body,
        text,
    }
}

/// Redeems `task`'s claim with a fresh ES256 key: the client and its run token.
pub async fn redeem(api: &Api, task: &Value) -> (Dpop, String) {
    let client = Dpop::new(JwsAlg::ES256);
    let token_url = format!("{}/v1/token", api.base);
    let (r, _) = post_token(
        api,
        &[
            ("grant_type", CLAIM_GRANT),
            ("claim", task["claim"].as_str().unwrap()),
        ],
        Some(&client.proof("POST", &token_url, None)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    (client, r.body["access_token"].as_str().unwrap().to_owned())
}

/// `/v1/runs/me` with a fresh proof: its status.
pub async fn me_status(api: &Api, client: &Dpop, token: &str) -> u16 {
    let url = format!("{}/v1/runs/me", api.base);
    me(
        api,
        token,
        Some(&client.proof("GET", &url, Some(token))),
        "DPoP",
    )
    .await
    .status
}

#[track_caller]
pub fn assert_oauth(r: &Resp, status: u16, error: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["error"], error, "{}", r.text);
    assert!(r.body["error_description"].is_string(), "{}", r.text);
}

/// A server with user `bob`, agent `claude`, and a fresh task of bob's.
pub async fn setup() -> (Server, String, Value) {
    let server = Server::start().await;
    let bob = server.add_user("bob", false).await;
    server.add_agent("claude").await;
    let task = server.add_task(&bob, "claude", "30m").await;
    (server, bob, task)
}

async fn refusals(api: &Api, kind: &str) -> Vec<Value> {
    api.audit_events()
        .await
        .into_iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

#[tokio::test]
async fn discovery_names_the_endpoints_and_publishes_the_signing_key() {
    let (server, _, _) = setup().await;
    let r = server
        .send(
            Method::GET,
            "/.well-known/openid-configuration",
            None,
            None,
            None,
        )
        .await;
    let conf = r.assert_ok(200).clone();
    assert_eq!(conf["issuer"], server.base);
    assert_eq!(conf["token_endpoint"], format!("{}/v1/token", server.base));
    assert_eq!(
        conf["jwks_uri"],
        format!("{}/.well-known/jwks.json", server.base)
    );
    assert_eq!(
        conf["grant_types_supported"],
        json!([
            CLAIM_GRANT,
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "urn:ietf:params:oauth:grant-type:token-exchange",
            "urn:warrant:grant-type:refresh"
        ])
    );
    assert_eq!(
        conf["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA"])
    );
    let r = server
        .send(Method::GET, "/.well-known/jwks.json", None, None, None)
        .await;
    let keys = r.assert_ok(200)["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert!(keys[0].get("d").is_none(), "no private key material");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_claim_redeems_once_for_a_token_bound_to_the_proof_key() {
    let (server, bob, task) = setup().await;
    let claim = task["claim"].as_str().unwrap().to_owned();
    assert!(claim.starts_with("wcl_"));
    assert_eq!(task["state"], "pending");
    let token_url = format!("{}/v1/token", server.base);
    let client = Dpop::new(JwsAlg::ES256);

    let (r, cache) = post_token(
        &server,
        &[("grant_type", CLAIM_GRANT), ("claim", &claim)],
        Some(&client.proof("POST", &token_url, None)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(cache, "no-store");
    assert_eq!(r.body["token_type"], "DPoP");
    assert_eq!(r.body["task_id"], task["id"]);
    let expires_in = r.body["expires_in"].as_i64().unwrap();
    assert!(expires_in > 0 && expires_in <= 600, "{expires_in}");
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    let run_id = r.body["run_id"].as_str().unwrap().to_owned();

    // The task is active now; the claim is spent.
    let id = task["id"].as_str().unwrap();
    let shown = server.get(&bob, &format!("/v1/tasks/{id}")).await;
    assert_eq!(shown.assert_ok(200)["state"], "active");
    assert!(shown.body.get("claim").is_none(), "the claim is shown once");

    let me_url = format!("{}/v1/runs/me", server.base);
    let r = me(
        &server,
        &token,
        Some(&client.proof("GET", &me_url, Some(&token))),
        "DPoP",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["run_id"], run_id.as_str());
    assert_eq!(r.body["task_id"], task["id"]);
    assert_eq!(r.body["agent"], "claude");
    assert_eq!(r.body["delegator"], "bob");
    assert_eq!(r.body["jkt"], client.key.thumbprint());
    assert_eq!(
        r.body["sub"],
        format!("spiffe://warrant.local/agent/claude/run/{run_id}")
    );

    // A second redemption, even with a fresh proof, is refused.
    let (again, _) = post_token(
        &server,
        &[("grant_type", CLAIM_GRANT), ("claim", &claim)],
        Some(&Dpop::new(JwsAlg::EdDSA).proof("POST", &token_url, None)),
    )
    .await;
    assert_oauth(&again, 400, "invalid_grant");
    let refused = refusals(&server, "token.refused").await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["data"]["check"], "claim_used");
    assert_eq!(refused[0]["task_id"], task["id"]);
    let started = refusals(&server, "run.started").await;
    assert_eq!(started.len(), 1, "one run only");
    // Neither the claim nor the token is ever written to the audit log.
    let all = serde_json::to_string(&server.audit_events().await).unwrap();
    assert!(!all.contains(&claim) && !all.contains(&token));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_grants_are_refused_audited_and_start_no_run() {
    let (server, bob, task) = setup().await;
    let claim = task["claim"].as_str().unwrap().to_owned();
    let token_url = format!("{}/v1/token", server.base);
    let client = Dpop::new(JwsAlg::EdDSA);
    let good = [("grant_type", CLAIM_GRANT), ("claim", claim.as_str())];

    let replayed = client.proof("POST", &token_url, None);
    // (form, proof, status, OAuth error, audited check)
    type Case<'a> = (
        Vec<(&'a str, &'a str)>,
        Option<String>,
        u16,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            good.to_vec(),
            None,
            400,
            "invalid_dpop_proof",
            "dpop_missing",
        ),
        (
            good.to_vec(),
            Some(client.proof("GET", &token_url, None)),
            400,
            "invalid_dpop_proof",
            "dpop_htm",
        ),
        (
            good.to_vec(),
            Some(client.proof("POST", "http://evil.example/v1/token", None)),
            400,
            "invalid_dpop_proof",
            "dpop_htu",
        ),
        (
            vec![
                ("grant_type", CLAIM_GRANT),
                ("claim", "wcl_not-a-real-claim"),
            ],
            Some(client.proof("POST", &token_url, None)),
            400,
            "invalid_grant",
            "claim_unknown",
        ),
        (
            vec![("grant_type", "password"), ("claim", &claim)],
            Some(client.proof("POST", &token_url, None)),
            400,
            "unsupported_grant_type",
            "grant_type",
        ),
        (
            vec![("grant_type", CLAIM_GRANT)],
            Some(client.proof("POST", &token_url, None)),
            400,
            "invalid_request",
            "request_claim",
        ),
        // The first use of this proof is refused for its unknown claim; its
        // replay with the good claim must still be refused.
        (
            vec![("grant_type", CLAIM_GRANT), ("claim", "wcl_unknown")],
            Some(replayed.clone()),
            400,
            "invalid_grant",
            "claim_unknown",
        ),
        (
            good.to_vec(),
            Some(replayed),
            400,
            "invalid_dpop_proof",
            "dpop_replayed",
        ),
    ];
    for (i, (form, proof, status, error, check)) in cases.iter().enumerate() {
        let (r, cache) = post_token(&server, form, proof.as_deref()).await;
        assert_oauth(&r, *status, error);
        assert_eq!(cache, "no-store", "case {i}");
        let refused = refusals(&server, "token.refused").await;
        assert_eq!(refused.len(), i + 1, "case {i}: one event per refusal");
        assert_eq!(refused[i]["data"]["check"], *check, "case {i}");
        assert_eq!(refused[i]["data"]["error"], *error, "case {i}");
    }
    // A non-form body.
    let r = server
        .post_raw(&bob, "/v1/token", Some("application/json"), "{}")
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"], "invalid_request");

    // Nothing started: the task is still pending, and the claim still works.
    let id = task["id"].as_str().unwrap();
    assert_eq!(
        server.get(&bob, &format!("/v1/tasks/{id}")).await.body["state"],
        "pending"
    );
    assert!(refusals(&server, "run.started").await.is_empty());
    let (r, _) = post_token(
        &server,
        &good,
        Some(&client.proof("POST", &token_url, None)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // An ended task's claim is refused.
    let other = server.add_task(&bob, "claude", "30m").await;
    let other_id = other["id"].as_str().unwrap();
    server
        .post(&bob, &format!("/v1/tasks/{other_id}/end"), json!({}))
        .await
        .assert_ok(200);
    let (r, _) = post_token(
        &server,
        &[
            ("grant_type", CLAIM_GRANT),
            ("claim", other["claim"].as_str().unwrap()),
        ],
        Some(&client.proof("POST", &token_url, None)),
    )
    .await;
    assert_oauth(&r, 400, "invalid_grant");
    assert_eq!(
        refusals(&server, "token.refused").await.last().unwrap()["data"]["check"],
        "task_ended"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_run_token_needs_a_fresh_proof_from_its_key_and_a_live_task() {
    let (server, bob, task) = setup().await;
    let claim = task["claim"].as_str().unwrap();
    let token_url = format!("{}/v1/token", server.base);
    let me_url = format!("{}/v1/runs/me", server.base);
    let client = Dpop::new(JwsAlg::ES256);
    let (r, _) = post_token(
        &server,
        &[("grant_type", CLAIM_GRANT), ("claim", claim)],
        Some(&client.proof("POST", &token_url, None)),
    )
    .await;
    let token = r.body["access_token"].as_str().unwrap().to_owned();

    // No proof.
    let r = me(&server, &token, None, "DPoP").await;
    assert_oauth(&r, 401, "invalid_dpop_proof");
    // As a bearer token.
    let r = me(
        &server,
        &token,
        Some(&client.proof("GET", &me_url, Some(&token))),
        "Bearer",
    )
    .await;
    assert_oauth(&r, 401, "invalid_token");
    // A proof from another key (a thief's).
    let thief = Dpop::new(JwsAlg::ES256);
    let r = me(
        &server,
        &token,
        Some(&thief.proof("GET", &me_url, Some(&token))),
        "DPoP",
    )
    .await;
    assert_oauth(&r, 401, "invalid_token");
    // A proof without `ath`, or for another URL.
    let r = me(
        &server,
        &token,
        Some(&client.proof("GET", &me_url, None)),
        "DPoP",
    )
    .await;
    assert_oauth(&r, 401, "invalid_dpop_proof");
    let r = me(
        &server,
        &token,
        Some(&client.proof("GET", &token_url, Some(&token))),
        "DPoP",
    )
    .await;
    assert_oauth(&r, 401, "invalid_dpop_proof");
    // A good proof works once; its replay is refused.
    let proof = client.proof("GET", &me_url, Some(&token));
    assert_eq!(me(&server, &token, Some(&proof), "DPoP").await.status, 200);
    let r = me(&server, &token, Some(&proof), "DPoP").await;
    assert_oauth(&r, 401, "invalid_dpop_proof");
    // A tampered token.
    // One character inside the signature (not the last, whose spare bits
    // would make it non-canonical base64 rather than a bad signature).
    let mut forged: Vec<char> = token.chars().collect();
    let at = forged.len() - 20;
    forged[at] = if forged[at] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    let r = me(
        &server,
        &forged,
        Some(&client.proof("GET", &me_url, Some(&forged))),
        "DPoP",
    )
    .await;
    assert_oauth(&r, 401, "invalid_token");

    let checks: Vec<String> = refusals(&server, "run_token.refused")
        .await
        .iter()
        .map(|e| e["data"]["check"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        checks,
        [
            "dpop_missing",
            "token_scheme",
            "dpop_key_mismatch",
            "dpop_ath",
            "dpop_htu",
            "dpop_replayed",
            "token_signature"
        ]
    );

    // Ending the task revokes the token at once.
    let id = task["id"].as_str().unwrap();
    server
        .post(&bob, &format!("/v1/tasks/{id}/end"), json!({}))
        .await
        .assert_ok(200);
    let r = me(
        &server,
        &token,
        Some(&client.proof("GET", &me_url, Some(&token))),
        "DPoP",
    )
    .await;
    assert_oauth(&r, 401, "invalid_token");
    assert_eq!(
        refusals(&server, "run_token.refused").await.last().unwrap()["data"]["check"],
        "run_revoked"
    );
    server.stop().await.unwrap();
}

/// The Python with PyJWT the independent-verifier test runs: the
/// `WARRANT_PYTHON` interpreter, else `~/.cache/warrant-venv`, created
/// (with `pip install pyjwt[crypto]`) when missing. Never skipped: if
/// Python or PyJWT cannot be had, the test fails.
pub fn pyjwt_python() -> PathBuf {
    if let Ok(p) = std::env::var("WARRANT_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").expect("HOME must be set to find the PyJWT venv");
    let venv = PathBuf::from(home).join(".cache/warrant-venv");
    let python = venv.join("bin/python");
    let has_jwt = |p: &PathBuf| {
        Command::new(p)
            .args(["-c", "import jwt, cryptography"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_jwt(&python) {
        let made = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .expect("python3 is required for the independent verifier test");
        assert!(
            made.success(),
            "cannot create the venv at {}",
            venv.display()
        );
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "pyjwt[crypto]"])
            .status()
            .expect("pip is required for the independent verifier test");
        assert!(pip.success(), "cannot install pyjwt[crypto]");
    }
    assert!(
        has_jwt(&python),
        "PyJWT is not importable by {}",
        python.display()
    );
    python
}

#[tokio::test]
async fn pyjwt_verifies_a_run_token_against_the_published_jwks() {
    let python = pyjwt_python();
    let (server, _, task) = setup().await;
    let token_url = format!("{}/v1/token", server.base);
    let client = Dpop::new(JwsAlg::EdDSA);
    let (r, _) = post_token(
        &server,
        &[
            ("grant_type", CLAIM_GRANT),
            ("claim", task["claim"].as_str().unwrap()),
        ],
        Some(&client.proof("POST", &token_url, None)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/verify_run_token.py");
    let jwks_url = format!("{}/.well-known/jwks.json", server.base);
    let run = |token: &str| {
        let python = python.clone();
        let script = script.clone();
        let jwks_url = jwks_url.clone();
        let base = server.base.clone();
        let token = token.to_owned();
        tokio::task::spawn_blocking(move || {
            Command::new(python)
                .arg(script)
                .arg(jwks_url)
                .arg(base)
                .arg(token)
                .output()
                .unwrap()
        })
    };
    let out = run(&token).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "PyJWT refused the token: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verified: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(verified["claims"]["task"], task["id"]);
    assert_eq!(verified["claims"]["cnf"]["jkt"], client.key.thumbprint());
    assert_eq!(
        verified["claims"]["sub"],
        format!(
            "spiffe://warrant.local/agent/claude/run/{}",
            r.body["run_id"].as_str().unwrap()
        )
    );

    // The same verifier refuses a token whose payload was changed.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect();
    let out = run(&parts.join(".")).await.unwrap();
    assert!(!out.status.success(), "PyJWT accepted a tampered token");
    server.stop().await.unwrap();
}
