//! Issue 8: git credentials (`POST /v1/git/credentials`), forward auth
//! (`/v1/authz/forward`) in each proxy's style, and ref-update checks
//! (`POST /v1/authz/git/ref-updates`) against the real server with the
//! default pack. The whole path through real nginx and git is in the CLI's
//! `git_nginx` tests.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use reqwest::Method;
use serde_json::{Value, json};
use warrant_core::FakeClock;

use crate::decisions::{Run, add_agent, add_user};
use crate::support::{Api, Resp, TestApp, into_resp};
use crate::tokens::redeem;

const GIT_HOST: &str = "git.example.test";
const UPLOAD_REFS: &str = "/acme/api.git/info/refs?service=git-upload-pack";

struct Setup {
    app: TestApp,
    clock: Arc<FakeClock>,
    bob: String,
    run: Run,
    task: Value,
}

/// A server on a fake clock, user `bob`, agent `claude` (tier `propose`)
/// and a run of a task over `acme/api` with `actions`.
async fn setup(actions: &[&str]) -> Setup {
    let clock = Arc::new(FakeClock::new(Timestamp::now()));
    let app = TestApp::start(clock.clone()).await;
    let bob = add_user(&app, "bob", &[]).await;
    add_agent(&app, "claude", "propose").await;
    let task = app
        .post(
            &bob,
            "/v1/tasks",
            json!({
                "agent": "claude",
                "purpose": "fix the build",
                "ttl": "1h",
                "scope": {"repos": ["acme/api"], "branches": ["feature/*", "main"], "actions": actions},
            }),
        )
        .await
        .assert_ok(201)
        .clone();
    let (key, token) = redeem(&app, &task).await;
    Setup {
        app,
        clock,
        bob,
        run: Run { key, token },
        task,
    }
}

impl Setup {
    /// `POST /v1/git/credentials` as the run (proof at the fake clock's now).
    async fn ask(&self, body: Value) -> Resp {
        let url = format!("{}/v1/git/credentials", self.app.base);
        let proof = self.run.key.proof_at(
            "POST",
            &url,
            Some(&self.run.token),
            warrant_core::Clock::now(&*self.clock),
        );
        let res = self
            .app
            .http
            .post(&url)
            .header("authorization", format!("DPoP {}", self.run.token))
            .header("DPoP", proof)
            .json(&body)
            .send()
            .await
            .unwrap();
        into_resp(res).await
    }

    async fn credential(&self) -> String {
        let r = self
            .ask(json!({"protocol": "https", "host": GIT_HOST, "path": "acme/api.git"}))
            .await;
        r.assert_ok(200)["credential"].as_str().unwrap().to_owned()
    }

    async fn kinds(&self, kind: &str) -> Vec<Value> {
        self.app
            .audit_events()
            .await
            .into_iter()
            .filter(|e| e["kind"] == kind)
            .collect()
    }
}

/// A forward-auth request as nginx `auth_request` sends it.
async fn nginx(api: &Api, method: &str, uri: &str, host: &str, auth: Option<&str>) -> Resp {
    let mut req = api
        .http
        .request(Method::POST, format!("{}/v1/authz/forward", api.base))
        .header("x-original-method", method)
        .header("x-original-uri", uri)
        .header("x-forwarded-host", host)
        .header("x-forwarded-proto", "https");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    into_resp(req.send().await.unwrap()).await
}

async fn forward_raw(
    api: &Api,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = api.http.request(method, format!("{}{path}", api.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn bearer(c: &str) -> String {
    format!("Bearer {c}")
}

fn basic(c: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x-warrant:{c}"))
    )
}

#[tokio::test]
async fn credentials_are_issued_for_covered_repositories_only() {
    let s = setup(&["repo.read", "repo.push"]).await;
    let r = s
        .ask(json!({"protocol": "https", "host": "Git.Example.Test:443", "path": "/acme/api.git"}))
        .await;
    let body = r.assert_ok(200).clone();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["username"], "x-warrant");
    assert_eq!(body["repo"], "acme/api");
    assert_eq!(body["audience"], "https://git.example.test");
    assert_eq!(body["expires_in"], 600);
    let credential = body["credential"].as_str().unwrap();
    let issued = s.kinds("git.credential.issued").await;
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0]["data"]["repo"], "acme/api");
    assert_eq!(issued[0]["task_id"], s.task["id"]);
    assert!(
        !issued[0].to_string().contains(credential),
        "the audit log must not hold the credential"
    );

    // Another repository: refused, recorded, nothing issued.
    let r = s
        .ask(json!({"host": GIT_HOST, "path": "acme/other.git"}))
        .await;
    r.assert_problem(403, "repo_not_in_scope");
    assert!(r.detail().contains("acme/other"), "{}", r.text);
    assert_eq!(s.kinds("git.credential.refused").await.len(), 1);
    assert_eq!(s.kinds("git.credential.issued").await.len(), 1);

    // Bad input changes nothing.
    let before = s.app.snapshot().await;
    for body in [
        json!({"host": GIT_HOST}),
        json!({"host": GIT_HOST, "path": "acme/api.git", "repo": "acme/api"}),
        json!({"host": "git.example.test/evil", "path": "acme/api.git"}),
        json!({"protocol": "ssh", "host": GIT_HOST, "path": "acme/api.git"}),
        json!({"host": GIT_HOST, "path": "acme/../api.git"}),
        json!({"host": GIT_HOST, "repo": "acme"}),
        json!({"host": GIT_HOST, "path": "acme/api.git", "ttl": 3600}),
    ] {
        s.ask(body.clone())
            .await
            .assert_problem(422, "invalid_body");
    }
    assert_eq!(s.app.snapshot().await, before);

    // A human's API token is not a run.
    let r = s
        .app
        .post(
            &s.bob,
            "/v1/git/credentials",
            json!({"host": GIT_HOST, "repo": "acme/api"}),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    s.app.stop().await;
}

#[tokio::test]
async fn forward_auth_answers_401_403_or_200_as_nginx_expects() {
    let s = setup(&["repo.read", "repo.push"]).await;
    let api = &s.app.api;
    let cred = s.credential().await;

    // No credential: 401 with a Basic challenge, and nothing recorded (git's
    // first try is always anonymous).
    let before = s.app.snapshot().await;
    let res = forward_raw(
        api,
        Method::GET,
        "/v1/authz/forward",
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", UPLOAD_REFS),
            ("x-forwarded-host", GIT_HOST),
        ],
    )
    .await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Basic realm=\"warrant\"");
    assert_eq!(into_resp(res).await.body["code"], "invalid_git_credential");
    assert_eq!(s.app.snapshot().await, before);

    // Allowed, as Bearer and as Basic: 200 with who it is for, a decision.
    for auth in [bearer(&cred), basic(&cred)] {
        let res = forward_raw(
            api,
            Method::POST,
            "/v1/authz/forward",
            &[
                ("x-original-method", "POST"),
                ("x-original-uri", "/acme/api.git/git-upload-pack"),
                ("x-forwarded-host", GIT_HOST),
                ("authorization", &auth),
            ],
        )
        .await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["x-warrant-task"],
            s.task["id"].as_str().unwrap()
        );
        assert!(res.headers().contains_key("x-warrant-run"));
        assert_eq!(res.headers()["x-warrant-action"], "repo.read");
    }
    let decisions = s.kinds("decision").await;
    assert_eq!(decisions.len(), 2);
    assert_eq!(decisions[0]["data"]["input"]["action"], "repo.read");
    assert_eq!(decisions[0]["data"]["input"]["resource"]["id"], "acme/api");
    assert_eq!(decisions[0]["data"]["outcome"]["decision"], "allow");

    // The push transport, allowed by the scope (refs are the hook's).
    let r = nginx(
        api,
        "GET",
        "/acme/api.git/info/refs?service=git-receive-pack",
        GIT_HOST,
        Some(&bearer(&cred)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["action"], "repo.push");

    // Another repository: 403, recorded.
    let r = nginx(
        api,
        "GET",
        "/acme/other.git/info/refs?service=git-upload-pack",
        GIT_HOST,
        Some(&bearer(&cred)),
    )
    .await;
    r.assert_problem(403, "git_repo_mismatch");
    // Not git smart HTTP (the dumb protocol, a bare path): 403.
    for uri in [
        "/acme/api.git/HEAD",
        "/acme/api.git/objects/info/packs",
        "/",
    ] {
        nginx(api, "GET", uri, GIT_HOST, Some(&bearer(&cred)))
            .await
            .assert_problem(403, "git_request_unknown");
    }
    // Another git server (audience): the credential is not accepted there.
    nginx(
        api,
        "GET",
        UPLOAD_REFS,
        "evil.example",
        Some(&bearer(&cred)),
    )
    .await
    .assert_problem(401, "invalid_git_credential");
    // Garbage, and a run token presented as a git credential.
    for auth in [
        "Bearer not-a-jwt".to_owned(),
        bearer(&s.run.token),
        "DPoP x".into(),
    ] {
        nginx(api, "GET", UPLOAD_REFS, GIT_HOST, Some(&auth))
            .await
            .assert_problem(401, "invalid_git_credential");
    }
    let refused = s.kinds("git.access.refused").await;
    let checks: Vec<&str> = refused
        .iter()
        .map(|e| e["data"]["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        [
            "repo_mismatch",
            "unknown_request",
            "unknown_request",
            "unknown_request",
            "credential_audience",
            "credential_malformed",
            "credential_type",
            "credential_header",
        ]
    );
    assert!(
        !refused.iter().any(|e| e.to_string().contains(&cred)),
        "refusal events must not hold the credential"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn traefik_and_envoy_styles_are_understood() {
    let s = setup(&["repo.read"]).await;
    let api = &s.app.api;
    let cred = s.credential().await;
    let auth = bearer(&cred);

    // Traefik ForwardAuth: always a GET, the original in X-Forwarded-*.
    let res = forward_raw(
        api,
        Method::GET,
        "/v1/authz/forward",
        &[
            ("x-forwarded-method", "POST"),
            ("x-forwarded-uri", "/acme/api.git/git-upload-pack"),
            ("x-forwarded-host", GIT_HOST),
            ("x-forwarded-proto", "https"),
            ("authorization", &auth),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    // Envoy ext_authz (HTTP): the original method and path appended, Host.
    let res = forward_raw(
        api,
        Method::GET,
        &format!("/v1/authz/forward{UPLOAD_REFS}"),
        &[("host", GIT_HOST), ("authorization", &auth)],
    )
    .await;
    assert_eq!(res.status(), 200);
    let res = forward_raw(
        api,
        Method::POST,
        "/v1/authz/forward/acme/api.git/git-upload-pack",
        &[("host", GIT_HOST), ("authorization", &auth)],
    )
    .await;
    assert_eq!(res.status(), 200);
    // A scheme other than the credential's is another origin.
    let res = forward_raw(
        api,
        Method::GET,
        "/v1/authz/forward",
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", UPLOAD_REFS),
            ("x-forwarded-host", GIT_HOST),
            ("x-forwarded-proto", "http"),
            ("authorization", &auth),
        ],
    )
    .await;
    assert_eq!(res.status(), 401);

    // A task without `repo.push`: its pushes stop at the transport.
    let r = nginx(
        api,
        "POST",
        "/acme/api.git/git-receive-pack",
        GIT_HOST,
        Some(&auth),
    )
    .await;
    r.assert_problem(403, "git_denied");
    assert!(r.detail().contains("repo.push"), "{}", r.text);
    // No description of the original request at all.
    let res = forward_raw(
        api,
        Method::GET,
        "/v1/authz/forward",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(res.status(), 403);
    s.app.stop().await;
}

#[tokio::test]
async fn an_expired_credential_is_refused() {
    let s = setup(&["repo.read"]).await;
    let api = &s.app.api;
    let cred = s.credential().await;
    nginx(api, "GET", UPLOAD_REFS, GIT_HOST, Some(&bearer(&cred)))
        .await
        .assert_ok(200);
    // Past its ten minutes (and the leeway), the task still open.
    s.clock.advance(SignedDuration::from_secs(11 * 60));
    nginx(api, "GET", UPLOAD_REFS, GIT_HOST, Some(&bearer(&cred)))
        .await
        .assert_problem(401, "invalid_git_credential");
    let refused = s.kinds("git.access.refused").await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["data"]["check"], "credential_expired");
    s.app.stop().await;
}

#[tokio::test]
async fn a_credential_dies_with_its_task() {
    let s = setup(&["repo.read"]).await;
    let api = &s.app.api;
    let cred = s.credential().await;
    nginx(api, "GET", UPLOAD_REFS, GIT_HOST, Some(&bearer(&cred)))
        .await
        .assert_ok(200);
    let id = s.task["id"].as_str().unwrap();
    s.app
        .post(&s.bob, &format!("/v1/tasks/{id}/end"), json!({}))
        .await
        .assert_ok(200);
    let r = nginx(api, "GET", UPLOAD_REFS, GIT_HOST, Some(&bearer(&cred))).await;
    r.assert_problem(401, "invalid_git_credential");
    assert!(r.detail().contains("revoked"), "{}", r.text);
    let checks: Vec<String> = s
        .kinds("git.access.refused")
        .await
        .iter()
        .map(|e| e["data"]["check"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(checks, ["run_revoked"]);
    s.app.stop().await;
}

#[tokio::test]
async fn ref_updates_are_decided_per_ref() {
    let s = setup(&["repo.read", "repo.push"]).await;
    let api = &s.app.api;
    let cred = s.credential().await;
    let zero = "0".repeat(40);
    let a = "a".repeat(40);
    let b = "b".repeat(40);
    let post = |body: Value, auth: Option<String>| {
        let mut req = api
            .http
            .post(format!("{}/v1/authz/git/ref-updates", api.base))
            .json(&body);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        async move { into_resp(req.send().await.unwrap()).await }
    };
    let origin = format!("https://{GIT_HOST}");

    let r = post(
        json!({"origin": origin, "repo": "acme/api", "updates": [
            {"ref": "refs/heads/feature/x", "old": zero, "new": a, "changed_paths": ["src/lib.rs"]},
        ]}),
        Some(basic(&cred)),
    )
    .await;
    let body = r.assert_ok(200);
    assert_eq!(body["allowed"], true, "{}", r.text);
    assert_eq!(body["updates"][0]["action"], "repo.push");

    // main is protected: the default pack forbids agents pushing to it; a
    // note ref is not something Warrant decides.
    let r = post(
        json!({"origin": origin, "repo": "acme/api", "updates": [
            {"ref": "refs/heads/main", "old": a, "new": b},
            {"ref": "refs/notes/commits", "old": zero, "new": b},
            {"ref": "refs/heads/feature/x", "old": a, "new": zero},
        ]}),
        Some(bearer(&cred)),
    )
    .await;
    let body = r.assert_ok(200).clone();
    assert_eq!(body["allowed"], false);
    let got: Vec<(&str, &str)> = body["updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["decision"].as_str().unwrap(), u["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("deny", "forbidden"),
            ("deny", "unsupported_ref"),
            ("deny", "out_of_scope")
        ]
    );
    let decisions = s.kinds("decision").await;
    let main = decisions
        .iter()
        .find(|d| d["data"]["input"]["context"]["branch"] == "main")
        .unwrap();
    assert_eq!(main["data"]["input"]["context"]["commit"], b);
    assert_eq!(main["data"]["input"]["context"]["branch_protected"], true);
    // The deletion was decided as `delete`.
    assert!(
        decisions
            .iter()
            .any(|d| d["data"]["input"]["action"] == "delete")
    );

    // The credential must be for the repository and server pushed to.
    post(
        json!({"origin": origin, "repo": "acme/web", "updates": [
            {"ref": "refs/heads/feature/x", "old": zero, "new": a},
        ]}),
        Some(bearer(&cred)),
    )
    .await
    .assert_problem(403, "git_repo_mismatch");
    post(
        json!({"origin": "https://other.example", "repo": "acme/api", "updates": [
            {"ref": "refs/heads/feature/x", "old": zero, "new": a},
        ]}),
        Some(bearer(&cred)),
    )
    .await
    .assert_problem(401, "invalid_git_credential");
    let r = post(
        json!({"origin": origin, "repo": "acme/api", "updates": [
            {"ref": "refs/heads/feature/x", "old": zero, "new": a},
        ]}),
        None,
    )
    .await;
    r.assert_problem(401, "invalid_git_credential");
    // Bad input.
    for updates in [
        json!([]),
        json!([{"ref": "refs/heads/x", "old": zero, "new": zero}]),
        json!([{"ref": "refs/heads/x", "old": "main", "new": a}]),
    ] {
        post(
            json!({"origin": origin, "repo": "acme/api", "updates": updates}),
            Some(bearer(&cred)),
        )
        .await
        .assert_problem(422, "invalid_body");
    }
    s.app.stop().await;
}

// Fail closed: a forward-auth answer is never 200 when its decision cannot
// be recorded.
#[tokio::test]
async fn forward_auth_fails_closed_when_the_audit_log_cannot_be_written() {
    let s = setup(&["repo.read"]).await;
    let cred = s.credential().await;
    let url = format!("sqlite://{}", s.app.dir.path().join("warrant.db").display());
    let exec = |sql: &'static str| {
        let url = url.clone();
        async move {
            use sqlx::Connection as _;
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
    };
    exec(
        "CREATE TRIGGER test_block BEFORE INSERT ON audit_events \
         BEGIN SELECT RAISE(ABORT, 'audit blocked by test'); END",
    )
    .await;
    let api = &s.app.api;
    let r = nginx(api, "GET", UPLOAD_REFS, GIT_HOST, Some(&bearer(&cred))).await;
    r.assert_problem(503, "store_unavailable");
    // Refusals that cannot be recorded are not answered as mere refusals.
    let r = nginx(
        api,
        "GET",
        UPLOAD_REFS,
        "evil.example",
        Some(&bearer(&cred)),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text);
    // Nor is a credential handed out.
    let r = s
        .ask(json!({"host": GIT_HOST, "path": "acme/api.git"}))
        .await;
    r.assert_problem(503, "store_unavailable");
    exec("DROP TRIGGER test_block").await;
    nginx(api, "GET", UPLOAD_REFS, GIT_HOST, Some(&bearer(&cred)))
        .await
        .assert_ok(200);
    s.app.stop().await;
}
