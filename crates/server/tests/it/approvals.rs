//! Issue 5 against the real server: a webhook receiver started by the test
//! gets a correctly signed notification of a new approval request and of
//! its approval, and the run that asked long-polls the approval's state.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use reqwest::Method;
use serde_json::{Value, json};

use crate::decisions::{add_agent, add_user, run_for};
use crate::support::{Server, into_resp, options, private_tempdir};

type Seen = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A webhook receiver on 127.0.0.1 that records every delivery.
async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).unwrap().to_str().unwrap()
}

#[tokio::test]
async fn webhooks_get_signed_notifications_and_runs_long_poll() {
    let (url, seen) = receiver().await;
    let root = private_tempdir();
    let secret = "a-shared-secret-for-the-receiver";
    let secret_file = root.path().join("hook.secret");
    std::fs::write(&secret_file, secret).unwrap();
    std::fs::set_permissions(
        &secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let config = root.path().join("warrant.toml");
    std::fs::write(
        &config,
        format!(
            "[[approvals.webhooks]]\nname = \"ops\"\nurl = \"{url}\"\nsecret_file = \"{}\"\ndangerous_allow_http_loopback = true\n",
            secret_file.display()
        ),
    )
    .unwrap();
    let mut opts = options(&root.path().join("data"));
    opts.config_file = Some(config);
    let server = Server::start_with(opts).await.unwrap();
    let olga = add_user(&server, "olga", &["operators"]).await;
    let carol = add_user(&server, "carol", &["approvers"]).await;
    add_agent(&server, "deployer", "privileged").await;
    let run = run_for(
        &server,
        &olga,
        "deployer",
        json!({"environments": ["staging"], "actions": ["deploy"]}),
    )
    .await;
    let deploy = json!({"action": "deploy", "resource": {"type": "Environment", "id": "staging"},
                        "context": {"digest": format!("sha256:{}", "ab".repeat(32))}});
    let r = run.decide(&server, deploy.clone()).await;
    assert_eq!(r.body["decision"], "approval_required", "{}", r.text);
    let id = r.body["approval_id"].as_str().unwrap().to_owned();

    // The run long-polls; while it waits, carol approves.
    let poll = {
        let url = format!("{}/v1/approvals/{id}?wait=20s", server.base);
        let proof = run.key.proof(
            "GET",
            &format!("{}/v1/approvals/{id}", server.base),
            Some(&run.token),
        );
        let req = server
            .http
            .request(Method::GET, &url)
            .header("authorization", format!("DPoP {}", run.token))
            .header("DPoP", proof);
        tokio::spawn(async move { into_resp(req.send().await.unwrap()).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !poll.is_finished(),
        "the long-poll answered while still pending"
    );
    server
        .post(
            &carol,
            &format!("/v1/approvals/{id}/approve"),
            json!({"reason": "digest checked"}),
        )
        .await
        .assert_ok(200);
    let polled = poll.await.unwrap();
    assert_eq!(polled.status, 200, "{}", polled.text);
    assert_eq!(polled.body["state"], "approved", "{}", polled.text);
    assert!(
        polled.body.get("votes").is_none(),
        "a run sees the state, not who voted"
    );

    // Another run's token cannot see it.
    let other = run_for(
        &server,
        &olga,
        "deployer",
        json!({"environments": ["staging"], "actions": ["deploy"]}),
    )
    .await;
    let path = format!("{}/v1/approvals/{id}", server.base);
    let proof = other.key.proof("GET", &path, Some(&other.token));
    let r = server
        .http
        .request(Method::GET, &path)
        .header("authorization", format!("DPoP {}", other.token))
        .header("DPoP", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // The receiver got `approval.requested` and `approval.approved`, each
    // signed over "<timestamp>.<body>" with the shared secret.
    let deliveries = crate::support::eventually(10, || {
        let seen = seen.clone();
        async move {
            let got = seen.lock().unwrap().clone();
            (got.len() >= 2).then_some(got)
        }
    })
    .await
    .expect("the webhook receiver got no notifications");
    let events: Vec<&str> = deliveries
        .iter()
        .map(|(h, _)| header(h, "x-warrant-event"))
        .collect();
    assert_eq!(events, ["approval.requested", "approval.approved"]);
    for (h, body) in &deliveries {
        let ts = header(h, "x-warrant-timestamp");
        let signed = format!("{ts}.{body}");
        let expected = format!(
            "sha256={}",
            hex::encode(warrant_crypto::hmac_sha256(
                secret.as_bytes(),
                signed.as_bytes()
            ))
        );
        assert_eq!(header(h, "x-warrant-signature"), expected);
        let wrong = format!(
            "sha256={}",
            hex::encode(warrant_crypto::hmac_sha256(
                b"another secret",
                signed.as_bytes()
            ))
        );
        assert_ne!(header(h, "x-warrant-signature"), wrong);
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["approval_id"], id.as_str(), "{body}");
        assert_eq!(body["data"]["action"], "deploy", "{body}");
    }
    server.stop().await.unwrap();
}
