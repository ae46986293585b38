//! Humans signing in to the API with an OpenID Connect ID token from a REAL
//! issuer on 127.0.0.1 (npm `oauth2-mock-server`): the first sign-in
//! creates the user linked to its identity, groups follow the token, a name
//! taken by a local user is refused, and bad tokens are `invalid_id_token`.

use serde_json::{Value, json};

use crate::support::{Server, options, private_tempdir};
use crate::workload::MockIssuer;

fn id_claims(changes: Value) -> Value {
    let mut base = json!({
        "aud": "warrant-cli",
        "sub": "00u-carol",
        "preferred_username": "carol",
        "groups": ["dev"],
        "hd": "acme.example",
    });
    for (k, v) in changes.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

#[tokio::test]
async fn id_tokens_sign_users_in_and_bad_ones_are_refused() {
    let mut idp = MockIssuer::start();
    let dir = private_tempdir();
    let config = dir.path().join("warrant.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[issuers]]
issuer = "{}"
discovery = true
audiences = ["warrant-cli"]
algorithms = ["ES256"]
dangerous_allow_http_loopback = true
[issuers.human]
user_claim = "preferred_username"
groups_claim = "groups"
required = {{ hd = "acme.example" }}
"#,
            idp.url
        ),
    )
    .unwrap();
    let mut opts = options(&dir.path().join("data"));
    opts.config_file = Some(config);
    let server = Server::start_with(opts).await.unwrap();
    server.add_user("bob", false).await;
    server.add_agent("claude").await;

    // First sign-in: carol is created, linked, with the token's groups.
    let carol = idp.token(id_claims(json!({})), 600);
    let me = server.get(&carol, "/v1/users/me").await;
    let me = me.assert_ok(200);
    assert_eq!(me["name"], "carol");
    assert_eq!(me["groups"], json!(["dev"]));
    assert_eq!(me["admin"], false);
    let created: Vec<Value> = server
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e["kind"] == "user.created" && e["subject"] == "user:carol")
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["actor"], "system:oidc");
    assert_eq!(created[0]["data"]["subject"], "00u-carol");

    // She can act as herself: delegate a task.
    let task = server.add_task(&carol, "claude", "30m").await;
    assert_eq!(task["delegator"], "carol");

    // Groups follow the identity provider on the next sign-in.
    let regrouped = idp.token(id_claims(json!({"groups": ["dev", "ops"]})), 600);
    let me = server.get(&regrouped, "/v1/users/me").await;
    assert_eq!(me.assert_ok(200)["groups"], json!(["dev", "ops"]));
    let updated = server
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e["kind"] == "user.updated" && e["subject"] == "user:carol")
        .count();
    assert_eq!(updated, 1);
    // The same groups again change nothing.
    let before = server.audit_events().await.len();
    server.get(&regrouped, "/v1/users/me").await.assert_ok(200);
    assert_eq!(server.audit_events().await.len(), before);

    // An identity naming the local user `bob` cannot take him over.
    let impostor = idp.token(
        id_claims(json!({"sub": "00u-mallory", "preferred_username": "bob"})),
        600,
    );
    let before = server.snapshot().await;
    server
        .get(&impostor, "/v1/users/me")
        .await
        .assert_problem(403, "identity_conflict");
    // Nor can a second identity take carol's name.
    let other = idp.token(id_claims(json!({"sub": "00u-other"})), 600);
    server
        .get(&other, "/v1/users/me")
        .await
        .assert_problem(403, "identity_conflict");

    // Bad tokens: expired, wrong audience, a required claim missing, an
    // issuer not configured for sign-in, a tampered signature.
    let expired = idp.token(id_claims(json!({})), -600);
    let audience = idp.token(id_claims(json!({"aud": "someone-else"})), 600);
    let unverified = idp.token(id_claims(json!({"hd": "evil.example"})), 600);
    let tampered = {
        let mut t: Vec<char> = carol.chars().collect();
        let i = t.len() - 10;
        t[i] = if t[i] == 'A' { 'B' } else { 'A' };
        t.into_iter().collect::<String>()
    };
    let foreign = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let parts: Vec<&str> = carol.split('.').collect();
        let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        payload["iss"] = "https://evil.example".into();
        format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(payload.to_string()),
            parts[2]
        )
    };
    for token in [&expired, &audience, &unverified, &tampered, &foreign] {
        server
            .get(token, "/v1/users/me")
            .await
            .assert_problem(401, "invalid_id_token");
    }
    // None of it created or changed anything.
    assert_eq!(server.snapshot().await, before);
    server.stop().await.unwrap();
}
