//! `warrant kill` and `warrant revoke` with the real binary against a real
//! server: a run token stops working at Warrant and at introspection at once.

use serde_json::{Value, json};
use warrant_crypto::jws::{JwsAlg, ProofKey};
use warrant_token::access_token_hash;

use crate::util::Server;

/// Claims and run tokens are URL-safe as they are: no encoding needed.
const FORM: &str = "application/x-www-form-urlencoded";

/// An agent run: its DPoP key and run token.
struct Run {
    key: ProofKey,
    token: String,
    id: String,
}

/// Blocking HTTP for the agent's side, on a small runtime.
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

impl Http {
    fn new(base: &str) -> Self {
        Self {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: reqwest::Client::new(),
            base: base.to_owned(),
        }
    }

    fn proof(&self, key: &ProofKey, method: &str, path: &str, token: Option<&str>) -> String {
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

    fn redeem(&self, claim: &str) -> Run {
        let key = ProofKey::generate(JwsAlg::EdDSA).unwrap();
        let proof = self.proof(&key, "POST", "/v1/token", None);
        let body: Value = self.rt.block_on(async {
            let res = self
                .client
                .post(format!("{}/v1/token", self.base))
                .header("DPoP", proof)
                .header("content-type", FORM)
                .body(format!(
                    "grant_type=urn%3Awarrant%3Agrant-type%3Atask-claim&claim={claim}"
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.json().await.unwrap()
        });
        Run {
            key,
            token: body["access_token"].as_str().unwrap().to_owned(),
            id: body["run_id"].as_str().unwrap().to_owned(),
        }
    }

    /// `GET /v1/runs/me` with a fresh proof: the status.
    fn me(&self, run: &Run) -> u16 {
        let proof = self.proof(&run.key, "GET", "/v1/runs/me", Some(&run.token));
        self.rt.block_on(async {
            self.client
                .get(format!("{}/v1/runs/me", self.base))
                .header("Authorization", format!("DPoP {}", run.token))
                .header("DPoP", proof)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    }

    /// Whether introspection (as `api_token`'s user) says the token is active.
    fn active(&self, api_token: &str, run: &Run) -> bool {
        let body: Value = self.rt.block_on(async {
            let res = self
                .client
                .post(format!("{}/v1/introspect", self.base))
                .bearer_auth(api_token)
                .header("content-type", FORM)
                .body(format!("token={}", run.token))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.json().await.unwrap()
        });
        body["active"].as_bool().unwrap()
    }
}

fn create_task(server: &Server, token: &str, agent: &str) -> Value {
    server
        .as_user(token)
        .args(["task", "create", "--agent", agent, "--purpose", "work"])
        .args(["--ttl", "30m"])
        .json()
}

fn task_state(server: &Server, id: &str) -> (String, Value) {
    let t = server.admin().args(["task", "show", id]).json();
    (
        t["state"].as_str().unwrap().to_owned(),
        t["end_reason"].clone(),
    )
}

#[test]
fn kill_and_revoke_refuse_the_run_token_at_once() {
    let server = Server::start();
    let http = Http::new(&server.addr);
    for agent in ["claude", "codex"] {
        server
            .admin()
            .args(["agent", "add", agent, "--tier", "propose"])
            .json();
    }
    let bob = server.admin().args(["user", "add", "bob"]).json();
    let bob = bob["token"].as_str().unwrap().to_owned();

    let t1 = create_task(&server, &bob, "claude");
    let t2 = create_task(&server, &bob, "codex");
    let r1 = http.redeem(t1["claim"].as_str().unwrap());
    let r2 = http.redeem(t2["claim"].as_str().unwrap());
    assert_eq!((http.me(&r1), http.me(&r2)), (200, 200));
    assert!(http.active(&bob, &r1));

    // Only admins may pull the switch.
    let err = server
        .as_user(&bob)
        .args(["kill", "--agent", "claude"])
        .fails_with(1);
    assert!(err.contains("forbidden"), "{err}");
    assert_eq!(http.me(&r1), 200);

    // Kill everything of claude's: its run token is refused at once, and
    // introspection agrees; codex's task is untouched.
    let killed = server.admin().args(["kill", "--agent", "claude"]).json();
    assert_eq!(killed["ended"], json!([t1["id"]]));
    assert_eq!(http.me(&r1), 401);
    assert!(!http.active(&bob, &r1));
    assert_eq!(
        task_state(&server, t1["id"].as_str().unwrap()),
        ("ended".into(), json!("killed"))
    );
    assert_eq!(http.me(&r2), 200);

    // Revoking one run leaves its task live.
    server.admin().args(["revoke", "--run", &r2.id]).json();
    assert_eq!(http.me(&r2), 401);
    assert!(!http.active(&bob, &r2));
    assert_eq!(task_state(&server, t2["id"].as_str().unwrap()).0, "active");
    let err = server
        .admin()
        .args(["revoke", "--run", &r2.id])
        .fails_with(1);
    assert!(err.contains("run_revoked"), "{err}");

    // `revoke --task` ends a task as revoked.
    let t3 = create_task(&server, &bob, "codex");
    let t3_id = t3["id"].as_str().unwrap();
    server.admin().args(["revoke", "--task", t3_id]).json();
    assert_eq!(
        task_state(&server, t3_id),
        ("ended".into(), json!("revoked"))
    );

    // `kill --all` ends what is left.
    let killed = server.admin().args(["kill", "--all"]).json();
    assert_eq!(killed["ended"], json!([t2["id"]]));
    assert_eq!(
        task_state(&server, t2["id"].as_str().unwrap()),
        ("ended".into(), json!("killed"))
    );

    // All of it is audited.
    let events = server
        .admin()
        .args(["audit", "export", "--format", "jsonl"])
        .stdout();
    let events = crate::util::json_lines(&events);
    let killed: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "task.ended" && e["data"]["reason"] == "killed")
        .collect();
    assert_eq!(killed.len(), 2);
    assert!(killed.iter().all(|e| e["actor"] == "user:admin"));
    let revoked: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "run.revoked")
        .collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["data"]["run_id"], r2.id.as_str());
}
