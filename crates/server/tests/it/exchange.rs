//! RFC 8693 token exchange at `/v1/token` against the real server
//! (acceptance 4): a child token with a nested `act` claim and a narrower
//! scope; asking for more, or past the depth limit, is refused and audited;
//! revoking a run revokes the runs delegated from it.

use serde_json::{Value, json};
use warrant_crypto::jws::JwsAlg;

use crate::support::{Api, Resp};
use crate::tokens::{Dpop, assert_oauth, me_status, post_token, redeem, setup};

pub const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The claims of a JWT, unverified (the server verifies; this reads).
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in payload.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url"),
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    serde_json::from_slice(&out).unwrap()
}

/// Exchanges `parent`'s token for a child bound to a new key.
pub async fn exchange(
    api: &Api,
    parent: &Dpop,
    parent_token: &str,
    child: &Dpop,
    extra: &[(&str, &str)],
) -> Resp {
    let url = format!("{}/v1/token", api.base);
    let subject_proof = parent.proof("POST", &url, Some(parent_token));
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", parent_token),
        ("subject_token_type", ACCESS_TOKEN),
        ("subject_token_dpop", subject_proof.as_str()),
    ];
    form.extend_from_slice(extra);
    post_token(api, &form, Some(&child.proof("POST", &url, None)))
        .await
        .0
}

async fn refused_checks(api: &Api) -> Vec<String> {
    let r = api.get(&api.admin, "/v1/audit?kind=token.refused").await;
    r.assert_ok(200)["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["check"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn exchange_narrows_nests_act_limits_depth_and_revokes_children() {
    let (server, bob, task) = setup().await;
    let (root, root_token) = redeem(&server, &task).await;
    let root_claims = claims(&root_token);

    // One hop: narrower repos and actions, shorter life, a nested `act`.
    let c1 = Dpop::new(JwsAlg::EdDSA);
    let r = exchange(
        &server,
        &root,
        &root_token,
        &c1,
        &[("scope", "repo:acme/api action:repo.read"), ("ttl", "5m")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(r.body["token_type"], "DPoP");
    let t1 = r.body["access_token"].as_str().unwrap().to_owned();
    let run1 = r.body["run_id"].as_str().unwrap().to_owned();
    let k1 = claims(&t1);
    assert_eq!(k1["act"], json!({"sub": root_claims["sub"]}));
    assert_eq!(k1["warrant_scope"]["repos"], json!(["acme/api"]));
    assert_eq!(k1["warrant_scope"]["actions"], json!(["repo.read"]));
    assert_eq!(k1["task"], task["id"]);
    assert!(k1["exp"].as_i64().unwrap() - k1["iat"].as_i64().unwrap() <= 300);
    assert_ne!(k1["cnf"]["jkt"], root_claims["cnf"]["jkt"]);
    // Bound to the child's key, usable at Warrant; the parent's key cannot use it.
    assert_eq!(me_status(&server, &c1, &t1).await, 200);
    assert_eq!(me_status(&server, &root, &t1).await, 401);

    // Asking for more than the parent has is refused, and audited.
    let wider = Dpop::new(JwsAlg::EdDSA);
    let r = exchange(&server, &c1, &t1, &wider, &[("scope", "repo:acme/web")]).await;
    assert_oauth(&r, 400, "invalid_grant");
    let r = exchange(&server, &c1, &t1, &wider, &[("scope", "action:repo.push")]).await;
    assert_oauth(&r, 400, "invalid_grant");
    let r = exchange(&server, &c1, &t1, &wider, &[("ttl", "20m")]).await;
    assert_oauth(&r, 400, "invalid_grant");
    // The child proof must be by a new key.
    let r = exchange(&server, &c1, &t1, &c1, &[]).await;
    assert_oauth(&r, 400, "invalid_grant");
    // Without the parent's own proof the subject token is not accepted.
    let url = format!("{}/v1/token", server.base);
    let r = post_token(
        &server,
        &[
            ("grant_type", EXCHANGE),
            ("subject_token", &t1),
            ("subject_token_type", ACCESS_TOKEN),
            ("subject_token_dpop", &wider.proof("POST", &url, Some(&t1))),
        ],
        Some(&wider.proof("POST", &url, None)),
    )
    .await
    .0;
    assert_oauth(&r, 400, "invalid_grant");
    let checks = refused_checks(&server).await;
    for check in [
        "scope_wider",
        "ttl_wider",
        "child_key_reused",
        "dpop_key_mismatch",
    ] {
        assert!(checks.iter().any(|c| c == check), "{check} in {checks:?}");
    }

    // Two more hops reach the default limit of 3; a fourth is refused.
    let c2 = Dpop::new(JwsAlg::ES256);
    let r = exchange(&server, &c1, &t1, &c2, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let t2 = r.body["access_token"].as_str().unwrap().to_owned();
    let c3 = Dpop::new(JwsAlg::EdDSA);
    let r = exchange(&server, &c2, &t2, &c3, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let t3 = r.body["access_token"].as_str().unwrap().to_owned();
    let k3 = claims(&t3);
    assert_eq!(k3["act"]["sub"], claims(&t2)["sub"]);
    assert_eq!(k3["act"]["act"]["sub"], k1["sub"]);
    assert_eq!(k3["act"]["act"]["act"], json!({"sub": root_claims["sub"]}));
    assert_eq!(k3["warrant_scope"]["repos"], json!(["acme/api"]));
    let c4 = Dpop::new(JwsAlg::EdDSA);
    let r = exchange(&server, &c3, &t3, &c4, &[]).await;
    assert_oauth(&r, 400, "invalid_grant");
    assert!(
        refused_checks(&server)
            .await
            .iter()
            .any(|c| c == "delegation_depth")
    );

    // Every hop is audited with its parent and depth.
    let r = server
        .get(&server.admin, "/v1/audit?kind=run.started")
        .await;
    let started = r.assert_ok(200)["events"].as_array().unwrap().clone();
    let depths: Vec<i64> = started
        .iter()
        .map(|e| e["data"]["depth"].as_i64().unwrap())
        .collect();
    assert_eq!(depths, [0, 1, 2, 3]);
    assert_eq!(started[1]["data"]["grant_type"], EXCHANGE);
    assert_eq!(
        started[1]["data"]["parent_run_id"],
        root_claims_run(&root_claims)
    );

    // Revoking a run revokes everything delegated from it, not its parent.
    server
        .post(&server.admin, &format!("/v1/runs/{run1}/revoke"), json!({}))
        .await
        .assert_ok(200);
    assert_eq!(me_status(&server, &c2, &t2).await, 401);
    assert_eq!(me_status(&server, &c3, &t3).await, 401);
    assert_eq!(me_status(&server, &root, &root_token).await, 200);
    let c5 = Dpop::new(JwsAlg::EdDSA);
    let r = exchange(&server, &c2, &t2, &c5, &[]).await;
    assert_oauth(&r, 400, "invalid_grant");

    // Ending the task revokes every run of it, delegated ones included.
    let r = exchange(&server, &root, &root_token, &c5, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let t5 = r.body["access_token"].as_str().unwrap().to_owned();
    let id = task["id"].as_str().unwrap();
    server
        .post(&bob, &format!("/v1/tasks/{id}/end"), json!({}))
        .await
        .assert_ok(200);
    assert_eq!(me_status(&server, &c5, &t5).await, 401);
    assert_eq!(me_status(&server, &root, &root_token).await, 401);
}

/// The run id in a run token's SPIFFE `sub` (`.../run/<id>`).
fn root_claims_run(claims: &Value) -> Value {
    claims["sub"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .into()
}
