//! Issue 3, acceptance 7: a burst of every kind of token refusal against
//! the real binary, each leaving its audit event, and `warrant audit verify`
//! still passing on the data directory afterwards.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use warrant_crypto::jws::{JwsAlg, ProofKey};
use warrant_token::access_token_hash;

use crate::util::{Server, TestCommand};

const FORM: &str = "application/x-www-form-urlencoded";
const CLAIM: &str = "urn:warrant:grant-type:task-claim";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

pub struct Agent {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Agent {
    pub fn new(base: &str) -> Self {
        Self {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: reqwest::Client::new(),
            base: base.to_owned(),
        }
    }

    pub fn proof(&self, key: &ProofKey, method: &str, path: &str, token: Option<&str>) -> String {
        let mut claims = json!({
            "jti": hex::encode(warrant_crypto::random_bytes::<16>().unwrap()),
            "htm": method,
            "htu": format!("{}{path}", self.base),
            "iat": jiff::Timestamp::now().as_second(),
        });
        if let Some(t) = token {
            claims["ath"] = access_token_hash(t).into();
        }
        key.sign_with_jwk("dpop+jwt", &claims).unwrap()
    }

    fn token(&self, form: &[(&str, &str)], proof: Option<&str>) -> Reply {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.rt.block_on(async {
            let mut req = self
                .http
                .post(format!("{}/v1/token", self.base))
                .header("content-type", FORM)
                .body(body);
            if let Some(p) = proof {
                req = req.header("DPoP", p);
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            Reply {
                status,
                body: res.json().await.unwrap_or(Value::Null),
            }
        })
    }

    /// `POST /v1/leases` as the run holding `key` and `token`.
    pub fn post_lease(&self, key: &ProofKey, token: &str, body: &Value) -> Reply {
        let proof = self.proof(key, "POST", "/v1/leases", Some(token));
        self.rt.block_on(async {
            let res = self
                .http
                .post(format!("{}/v1/leases", self.base))
                .header("Authorization", format!("DPoP {token}"))
                .header("DPoP", proof)
                .json(body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            Reply {
                status,
                body: res.json().await.unwrap_or(Value::Null),
            }
        })
    }

    /// `GET path` with a user's bearer token: status and body text.
    pub fn get_as(&self, bearer: &str, path: &str) -> (u16, String) {
        self.rt.block_on(async {
            let res = self
                .http
                .get(format!("{}{path}", self.base))
                .bearer_auth(bearer)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        })
    }

    /// `POST /v1/decisions` as the run holding `key` and `token`.
    pub fn decide(&self, key: &ProofKey, token: &str, body: &Value) -> Reply {
        let proof = self.proof(key, "POST", "/v1/decisions", Some(token));
        self.rt.block_on(async {
            let res = self
                .http
                .post(format!("{}/v1/decisions", self.base))
                .header("Authorization", format!("DPoP {token}"))
                .header("DPoP", proof)
                .json(body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            Reply {
                status,
                body: res.json().await.unwrap_or(Value::Null),
            }
        })
    }

    fn me(&self, token: &str, proof: Option<&str>) -> u16 {
        self.rt.block_on(async {
            let mut req = self
                .http
                .get(format!("{}/v1/runs/me", self.base))
                .header("Authorization", format!("DPoP {token}"));
            if let Some(p) = proof {
                req = req.header("DPoP", p);
            }
            req.send().await.unwrap().status().as_u16()
        })
    }

    pub fn redeem(&self, key: &ProofKey, claim: &str) -> Reply {
        let proof = self.proof(key, "POST", "/v1/token", None);
        self.token(&[("grant_type", CLAIM), ("claim", claim)], Some(&proof))
    }

    fn exchange(
        &self,
        parent: &ProofKey,
        token: &str,
        child: &ProofKey,
        extra: &[(&str, &str)],
    ) -> Reply {
        let subject_proof = self.proof(parent, "POST", "/v1/token", Some(token));
        let mut form = vec![
            ("grant_type", EXCHANGE),
            ("subject_token", token),
            ("subject_token_type", ACCESS_TOKEN),
            ("subject_token_dpop", subject_proof.as_str()),
        ];
        form.extend_from_slice(extra);
        let proof = self.proof(child, "POST", "/v1/token", None);
        self.token(&form, Some(&proof))
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn key() -> ProofKey {
    ProofKey::generate(JwsAlg::ES256).unwrap()
}

#[track_caller]
fn refused(r: &Reply, error: &str) {
    assert!(
        r.status == 400 || r.status == 401,
        "{} {}",
        r.status,
        r.body
    );
    assert_eq!(r.body["error"], error, "{}", r.body);
    assert!(r.body["access_token"].is_null(), "{}", r.body);
}

#[test]
fn every_refusal_is_audited_and_the_chain_still_verifies() {
    let mut server = Server::start();
    let agent = Agent::new(&server.addr);
    server
        .admin()
        .args(["agent", "add", "claude", "--tier", "propose"])
        .json();
    let bob = server.admin().args(["user", "add", "bob"]).json();
    let bob = bob["token"].as_str().unwrap().to_owned();
    let task = server
        .as_user(&bob)
        .args(["task", "create", "--agent", "claude", "--purpose", "work"])
        .args([
            "--ttl",
            "30m",
            "--repo",
            "acme/api",
            "--action",
            "repo.read",
        ])
        .json();
    let claim = task["claim"].as_str().unwrap().to_owned();
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    let mut expect = |check: &'static str| *expected.entry(check).or_default() += 1;

    // --- the token endpoint ------------------------------------------------
    let k = key();
    refused(
        &agent.token(&[("grant_type", CLAIM), ("claim", &claim)], None),
        "invalid_dpop_proof",
    );
    expect("dpop_missing");
    let p = agent.proof(&k, "POST", "/v1/other", None);
    refused(
        &agent.token(&[("grant_type", CLAIM), ("claim", &claim)], Some(&p)),
        "invalid_dpop_proof",
    );
    expect("dpop_htu");
    let p = agent.proof(&k, "GET", "/v1/token", None);
    refused(
        &agent.token(&[("grant_type", CLAIM), ("claim", &claim)], Some(&p)),
        "invalid_dpop_proof",
    );
    expect("dpop_htm");
    refused(&agent.redeem(&k, "wcl_not-a-real-claim"), "invalid_grant");
    expect("claim_unknown");
    let p = agent.proof(&k, "POST", "/v1/token", None);
    refused(
        &agent.token(&[("grant_type", "password")], Some(&p)),
        "unsupported_grant_type",
    );
    expect("grant_type");

    // The claim once, then again (another key), then a replayed proof.
    let root = key();
    let first = agent.redeem(&root, &claim);
    assert_eq!(first.status, 200, "{}", first.body);
    let root_token = first.body["access_token"].as_str().unwrap().to_owned();
    refused(&agent.redeem(&key(), &claim), "invalid_grant");
    expect("claim_used");
    let replay = agent.proof(&k, "POST", "/v1/token", None);
    refused(
        &agent.token(&[("grant_type", CLAIM), ("claim", "wcl_x")], Some(&replay)),
        "invalid_grant",
    );
    expect("claim_unknown");
    refused(
        &agent.token(&[("grant_type", CLAIM), ("claim", "wcl_x")], Some(&replay)),
        "invalid_dpop_proof",
    );
    expect("dpop_replayed");

    // Token exchange: wider scope, then past the depth limit (3).
    let r = agent.exchange(&root, &root_token, &key(), &[("scope", "repo:acme/other")]);
    refused(&r, "invalid_grant");
    expect("scope_wider");
    let mut chain = (root, root_token.clone());
    for _ in 0..3 {
        let child = key();
        let r = agent.exchange(&chain.0, &chain.1, &child, &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        chain = (child, r.body["access_token"].as_str().unwrap().to_owned());
    }
    refused(
        &agent.exchange(&chain.0, &chain.1, &key(), &[]),
        "invalid_grant",
    );
    expect("delegation_depth");

    // --- a run endpoint ------------------------------------------------------
    assert_eq!(agent.me(&root_token, None), 401);
    expect("dpop_missing");
    let thief = key();
    let stolen = agent.proof(&thief, "GET", "/v1/runs/me", Some(&root_token));
    assert_eq!(agent.me(&root_token, Some(&stolen)), 401);
    expect("dpop_key_mismatch");
    let unsigned = {
        let parts: Vec<&str> = root_token.split('.').collect();
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1])
    };
    let own = agent.proof(&chain.0, "GET", "/v1/runs/me", Some(&unsigned));
    assert_eq!(agent.me(&unsigned, Some(&own)), 401);
    expect("token_algorithm");

    // After the task ends, its tokens are refused.
    server
        .as_user(&bob)
        .args(["task", "end", task["id"].as_str().unwrap()])
        .json();
    let late = agent.proof(&chain.0, "GET", "/v1/runs/me", Some(&chain.1));
    assert_eq!(agent.me(&chain.1, Some(&late)), 401);
    expect("run_revoked");

    // Every refusal left its event.
    let events: Vec<Value> = server
        .admin()
        .args(["audit", "export", "--format", "jsonl"])
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let refusals: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "token.refused" || e["kind"] == "run_token.refused")
        .collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for e in &refusals {
        *seen
            .entry(e["data"]["check"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    // Exactly one event per refused request, naming the check that failed.
    let expected: BTreeMap<String, usize> = expected
        .into_iter()
        .map(|(k, n)| (k.to_owned(), n))
        .collect();
    assert_eq!(seen, expected);

    // And the chain, with all of them in it, verifies.
    assert!(server.stop().success(), "{}", server.stderr());
    let report = TestCommand::new(server.config_dir())
        .args(["audit", "verify", "--strict", "--data-dir"])
        .arg(&server.data_dir)
        .json();
    assert_eq!(report["events"], report["head_seq"], "{report}");
    assert_eq!(report["unanchored"], 0, "{report}");
    assert!(report["events"].as_u64().unwrap() >= 14 + 5, "{report}");
}
