//! Issue 6: leases through the real server with a `kv` engine (acceptance
//! 4): the secret is sealed at rest (not in the SQLite file), released only
//! after an allowing decision, and the lease is revoked with its task.

use std::os::unix::fs::PermissionsExt as _;

use reqwest::Method;
use serde_json::{Value, json};

use crate::decisions::{Run, add_agent, add_user, run_for};
use crate::support::{Api, Resp, Server, into_resp, options, private_tempdir};

const SECRET: &str = "npm_9f8e7d6c5b4a39281706f5e4d3c2b1a0-plaintext-marker";

async fn lease(api: &Api, run: &Run, body: Value) -> Resp {
    let url = format!("{}/v1/leases", api.base);
    let proof = run.key.proof("POST", &url, Some(&run.token));
    let res = api
        .http
        .request(Method::POST, &url)
        .header("authorization", format!("DPoP {}", run.token))
        .header("DPoP", proof)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    into_resp(res).await
}

fn file_contains(path: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read(path)
        .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        .unwrap_or(false)
}

#[tokio::test]
async fn kv_secrets_are_sealed_and_released_only_after_an_allowing_decision() {
    let root = private_tempdir();
    let keys = root.path().join("kv.keys");
    std::fs::write(&keys, format!("k1 {}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = root.path().join("warrant.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[engines]]
name = "vault"
type = "kv"
master_key_file = "{}"
[[engines.roles]]
name = "ci"
max_ttl = "10m"
secrets = ["npm-token"]
"#,
            keys.display()
        ),
    )
    .unwrap();
    let data = root.path().join("data");
    let mut opts = options(&data);
    opts.config_file = Some(config);
    let server = Server::start_with(opts).await.unwrap();

    // An admin stores the secret; it is sealed in the store.
    let r = server
        .send(
            Method::PUT,
            "/v1/engines/vault/secrets/npm-token",
            Some(&server.admin),
            Some("application/json"),
            Some(json!({"value": SECRET}).to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.assert_ok(200)["key_id"], "k1");
    for file in ["warrant.db", "warrant.db-wal"] {
        assert!(
            !file_contains(&data.join(file), SECRET.as_bytes()),
            "the secret is readable in {file}"
        );
    }
    let events = serde_json::to_string(&server.audit_events().await).unwrap();
    assert!(!events.contains(SECRET));

    let olga = add_user(&server, "olga", &["operators"]).await;
    let bob = add_user(&server, "bob", &[]).await;
    add_agent(&server, "deployer", "privileged").await;
    add_agent(&server, "claude", "propose").await;
    // A static secret is released by a `secret.read` decision.
    let scope = json!({"secrets": ["vault/ci"], "actions": ["secret.read"]});

    // A propose agent may not get credentials (default pack): denied,
    // nothing issued.
    let weak = run_for(&server, &bob, "claude", scope.clone()).await;
    let r = lease(
        &server,
        &weak,
        json!({"engine": "vault", "role": "ci", "params": {"secret": "npm-token"}}),
    )
    .await;
    r.assert_problem(403, "lease_denied");
    assert!(!r.text.contains(SECRET));
    // Outside the task's scope: denied too.
    let narrow = run_for(
        &server,
        &olga,
        "deployer",
        json!({"secrets": ["vault/other"], "actions": ["secret.read"]}),
    )
    .await;
    let r = lease(
        &server,
        &narrow,
        json!({"engine": "vault", "role": "ci", "params": {"secret": "npm-token"}}),
    )
    .await;
    r.assert_problem(403, "lease_denied");
    // Unknown engine, unknown role, a secret the role does not release.
    let run = run_for(&server, &olga, "deployer", scope.clone()).await;
    lease(&server, &run, json!({"engine": "nope", "role": "ci"}))
        .await
        .assert_problem(404, "engine_not_found");
    lease(&server, &run, json!({"engine": "vault", "role": "nope"}))
        .await
        .assert_problem(404, "role_not_found");
    let r = lease(
        &server,
        &run,
        json!({"engine": "vault", "role": "ci", "params": {"secret": "aws-key"}}),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text);
    let r = server.get(&server.admin, "/v1/leases").await;
    assert_eq!(r.assert_ok(200)["leases"], json!([]), "{}", r.text);

    // Allowed: the secret is released, once, as a lease.
    let r = lease(
        &server,
        &run,
        json!({"engine": "vault", "role": "ci", "params": {"secret": "npm-token"}}),
    )
    .await;
    let issued = r.assert_ok(201).clone();
    assert_eq!(issued["secrets"]["value"], SECRET);
    assert_eq!(issued["state"], "active");
    let id = issued["id"].as_str().unwrap().to_owned();
    let listed = server.get(&server.admin, &format!("/v1/leases/{id}")).await;
    assert!(!listed.text.contains(SECRET));

    // Ending the task revokes the lease.
    let task = server
        .get(&olga, "/v1/tasks?state=active")
        .await
        .assert_ok(200)["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scope"]["secrets"] == json!(["vault/ci"]))
        .cloned()
        .unwrap();
    server
        .post(
            &olga,
            &format!("/v1/tasks/{}/end", task["id"].as_str().unwrap()),
            json!({}),
        )
        .await
        .assert_ok(200);
    let revoked = crate::support::eventually(10, || {
        let api = server.api.clone();
        let id = id.clone();
        async move {
            let r = api.get(&api.admin, &format!("/v1/leases/{id}")).await;
            (r.body["state"] == "revoked").then_some(r.body)
        }
    })
    .await
    .expect("the lease was not revoked when its task ended");
    assert_eq!(revoked["revoke_reason"], "task_ended", "{revoked}");
    let kinds: Vec<String> = server
        .audit_events()
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .filter(|k| k.starts_with("lease.") || k.starts_with("kv."))
        .collect();
    assert_eq!(
        kinds,
        [
            "kv.written",
            "lease.requested",
            "lease.issued",
            "lease.revoked"
        ]
    );
    server.stop().await.unwrap();
}

async fn introspect(api: &Api, token: &str, as_user: &str) -> Value {
    let r = api
        .post_raw(
            as_user,
            "/v1/introspect",
            Some("application/x-www-form-urlencoded"),
            &format!("token={token}"),
        )
        .await;
    r.assert_ok(200).clone()
}

#[tokio::test]
async fn jwt_leases_introspect_active_until_revoked() {
    let root = private_tempdir();
    let config = root.path().join("warrant.toml");
    std::fs::write(
        &config,
        r#"
[[engines]]
name = "svc"
type = "jwt"
[[engines.roles]]
name = "billing"
audience = "https://billing.internal"
max_ttl = "5m"
"#,
    )
    .unwrap();
    let mut opts = options(&root.path().join("data"));
    opts.config_file = Some(config);
    let server = Server::start_with(opts).await.unwrap();
    let olga = add_user(&server, "olga", &["operators"]).await;
    add_agent(&server, "deployer", "privileged").await;
    let run = run_for(
        &server,
        &olga,
        "deployer",
        json!({"secrets": ["svc/billing"], "actions": ["credential.issue"]}),
    )
    .await;
    let r = lease(&server, &run, json!({"engine": "svc", "role": "billing"})).await;
    let issued = r.assert_ok(201).clone();
    let token = issued["secrets"]["token"].as_str().unwrap().to_owned();

    // A resource server introspects it: active, for its audience.
    let answer = introspect(&server, &token, &olga).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["aud"], "https://billing.internal", "{answer}");
    assert_eq!(answer["lease_id"], issued["id"], "{answer}");

    // A token with another payload under this signature is inactive.
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        parts[1].chars().rev().collect::<String>(),
        parts[2]
    );
    assert_eq!(introspect(&server, &forged, &olga).await["active"], false);

    // The run revokes the lease: the token is inactive from then on.
    let url = format!(
        "{}/v1/leases/{}",
        server.base,
        issued["id"].as_str().unwrap()
    );
    let proof = run.key.proof("DELETE", &url, Some(&run.token));
    let r = server
        .http
        .request(Method::DELETE, &url)
        .header("authorization", format!("DPoP {}", run.token))
        .header("DPoP", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(introspect(&server, &token, &olga).await["active"], false);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn ssh_leases_are_certificates_and_revocation_reaches_the_served_krl() {
    let root = private_tempdir();
    let config = root.path().join("warrant.toml");
    std::fs::write(
        &config,
        r#"
[[engines]]
name = "ops"
type = "ssh"
[[engines.roles]]
name = "deploy"
max_ttl = "10m"
principals = ["deploy"]
"#,
    )
    .unwrap();
    let mut opts = options(&root.path().join("data"));
    opts.config_file = Some(config);
    let server = Server::start_with(opts).await.unwrap();
    let olga = add_user(&server, "olga", &["operators"]).await;
    add_agent(&server, "deployer", "privileged").await;
    let run = run_for(
        &server,
        &olga,
        "deployer",
        json!({"secrets": ["ops/deploy"], "actions": ["credential.issue"]}),
    )
    .await;
    // The agent's own key pair (real ssh-keygen).
    let key = root.path().join("id");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen (openssh-client) is needed");
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let r = lease(
        &server,
        &run,
        json!({"engine": "ops", "role": "deploy", "params": {"public_key": public.trim()}}),
    )
    .await;
    let issued = r.assert_ok(201).clone();
    let cert = root.path().join("id-cert.pub");
    std::fs::write(&cert, issued["secrets"]["certificate"].as_str().unwrap()).unwrap();

    // The served CA key is the one that signed the certificate.
    let ca = server
        .send(Method::GET, "/v1/engines/ops/ca", None, None, None)
        .await;
    assert_eq!(ca.status, 200);
    let shown = std::process::Command::new("ssh-keygen")
        .arg("-Lf")
        .arg(&cert)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(shown.contains("deploy"), "{shown}");
    let ca_file = root.path().join("ca.pub");
    std::fs::write(&ca_file, &ca.text).unwrap();
    let fp = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&ca_file)
        .output()
        .unwrap();
    let fp = String::from_utf8_lossy(&fp.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(
        shown.contains(&format!("Signing CA: ED25519 {fp}")),
        "{shown}\n{fp}"
    );
    let krl_says = |krl: &[u8]| {
        let path = root.path().join("krl");
        std::fs::write(&path, krl).unwrap();
        std::process::Command::new("ssh-keygen")
            .args(["-Q", "-f"])
            .arg(&path)
            .arg(&cert)
            .output()
            .unwrap()
    };
    let krl = server
        .http
        .get(format!("{}/v1/engines/ops/krl", server.base))
        .send()
        .await
        .unwrap();
    let before = krl_says(&krl.bytes().await.unwrap());
    assert!(before.status.success(), "not revoked yet: {before:?}");

    // Revoked: the served KRL now names it (real ssh-keygen -Q says so).
    let url = format!(
        "{}/v1/leases/{}",
        server.base,
        issued["id"].as_str().unwrap()
    );
    let r = server
        .send(
            Method::DELETE,
            &url.replace(&server.base, ""),
            Some(&server.admin),
            None,
            None,
        )
        .await;
    assert_eq!(r.assert_ok(200)["state"], "revoked");
    let krl = server
        .http
        .get(format!("{}/v1/engines/ops/krl", server.base))
        .send()
        .await
        .unwrap();
    let after = krl_says(&krl.bytes().await.unwrap());
    assert!(
        !after.status.success(),
        "the KRL does not revoke the certificate: {after:?}"
    );
    assert!(
        String::from_utf8_lossy(&after.stdout).contains("REVOKED"),
        "{after:?}"
    );
    server.stop().await.unwrap();
}
