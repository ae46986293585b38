use uuid::Uuid;
use warrant_core::{EndReason, FakeClock, TaskState};
use warrant_crypto::jws::Jwks;

use super::*;
use crate::run::{self, MintParams, RunToken, RunTokenError, RunTokenExpectations};

const NOW: i64 = 1_700_000_000;
const ISS: &str = "https://warrant.example";
const GIT: &str = "https://git.example";

struct Fixture {
    key: SigningKey,
    td: TrustDomain,
    task: Task,
    clock: FakeClock,
}

fn fixture() -> Fixture {
    let scope = Scope {
        repos: vec!["acme/api".into(), "acme/web".into()],
        branches: vec!["feature/*".into()],
        actions: vec!["repo.read".into(), "repo.push".into()],
        ..Scope::default()
    };
    let task = Task {
        id: TaskId(Uuid::from_u128(0x0192_f5a4_7c1e_7b3a_9d2e_5f8a_1b2c_3d4e)),
        agent: Name::parse("agent", "claude-code").unwrap(),
        delegator: Name::parse("user", "alice").unwrap(),
        purpose: "fix the login bug".into(),
        ticket: None,
        scope,
        state: TaskState::Active,
        end_reason: None,
        end_note: None,
        created_at: Timestamp::from_second(NOW - 60).unwrap(),
        expires_at: Timestamp::from_second(NOW + 3600).unwrap(),
        ended_at: None,
    };
    Fixture {
        key: SigningKey::generate().unwrap(),
        td: TrustDomain::parse("warrant.example").unwrap(),
        task,
        clock: FakeClock::new(Timestamp::from_second(NOW).unwrap()),
    }
}

impl Fixture {
    fn params(&self) -> GitMintParams<'_> {
        GitMintParams {
            issuer: ISS,
            audience: GIT,
            trust_domain: &self.td,
            run: RunId(Uuid::from_u128(0x0192_f5a4_7c1e_7b3a_9d2e_0000_0000_0001)),
            task: &self.task,
            repo: "acme/api",
            scope: &self.task.scope,
            ttl: MAX_GIT_CREDENTIAL_TTL,
            not_after: Timestamp::from_second(NOW + 7200).unwrap(),
        }
    }

    fn keys(&self) -> Jwks {
        Jwks::from_signing_keys([&self.key])
    }

    fn expect(&self) -> GitCredentialExpectations<'_> {
        GitCredentialExpectations {
            issuer: ISS,
            audience: GIT,
            trust_domain: &self.td,
            leeway: SignedDuration::from_secs(5),
        }
    }

    fn verify(&self, raw: &str) -> Result<GitCredential, GitCredentialError> {
        Unverified::<GitCredential>::new(raw).verify(&self.keys(), &self.expect(), &self.clock)
    }
}

#[test]
fn a_minted_credential_verifies_and_holds_only_its_repository() {
    let f = fixture();
    let minted = mint(&f.key, &f.params(), &f.clock).unwrap();
    assert_eq!(minted.claims.exp, NOW + 600);
    let cred = f.verify(&minted.credential).unwrap();
    assert_eq!(cred.claims().repo, "acme/api");
    assert_eq!(cred.claims().warrant_scope.repos, ["acme/api"]);
    assert_eq!(
        cred.claims().warrant_scope.actions,
        f.task.scope.actions,
        "everything but the repositories is the run's scope"
    );
    assert_eq!(cred.claims().task, f.task.id);
    assert_eq!(cred.spiffe_id().run, f.params().run);
    assert_eq!(cred.kid(), f.key.kid());
    assert!(
        !format!("{minted:?}").contains(&minted.credential),
        "Debug must not print the credential"
    );
}

#[test]
fn the_lifetime_is_capped_by_the_task_and_the_run() {
    let mut f = fixture();
    f.task.expires_at = Timestamp::from_second(NOW + 120).unwrap();
    let minted = mint(&f.key, &f.params(), &f.clock).unwrap();
    assert_eq!(minted.claims.exp, NOW + 120);

    let f = fixture();
    let params = GitMintParams {
        not_after: Timestamp::from_second(NOW + 30).unwrap(),
        ..f.params()
    };
    assert_eq!(
        mint(&f.key, &params, &f.clock).unwrap().claims.exp,
        NOW + 30
    );

    let params = GitMintParams {
        not_after: Timestamp::from_second(NOW).unwrap(),
        ..f.params()
    };
    assert_eq!(
        mint(&f.key, &params, &f.clock).unwrap_err(),
        GitCredentialError::TaskExpired(f.task.id)
    );
}

#[test]
fn minting_refuses_bad_requests() {
    let f = fixture();
    for ttl in [
        SignedDuration::ZERO,
        MAX_GIT_CREDENTIAL_TTL + SignedDuration::from_secs(1),
    ] {
        let params = GitMintParams { ttl, ..f.params() };
        assert_eq!(
            mint(&f.key, &params, &f.clock).unwrap_err(),
            GitCredentialError::BadTtl
        );
    }
    let params = GitMintParams {
        repo: "acme",
        ..f.params()
    };
    assert!(matches!(
        mint(&f.key, &params, &f.clock).unwrap_err(),
        GitCredentialError::BadRepo(_)
    ));
    let params = GitMintParams {
        repo: "acme/other",
        ..f.params()
    };
    assert_eq!(
        mint(&f.key, &params, &f.clock).unwrap_err(),
        GitCredentialError::RepoNotInScope("acme/other".into())
    );
    let mut ended = fixture();
    ended.task.state = TaskState::Ended;
    ended.task.end_reason = Some(EndReason::Completed);
    assert_eq!(
        mint(&ended.key, &ended.params(), &ended.clock).unwrap_err(),
        GitCredentialError::TaskNotLive(ended.task.id)
    );
}

// A git credential is a bearer secret git may log or cache: it must never
// be accepted where a DPoP-bound run token is expected, and the reverse.
#[test]
fn git_credentials_and_run_tokens_are_never_interchangeable() {
    let f = fixture();
    let git = mint(&f.key, &f.params(), &f.clock).unwrap().credential;
    let run_expect = RunTokenExpectations {
        issuer: ISS,
        audience: ISS,
        trust_domain: &f.td,
        leeway: SignedDuration::from_secs(5),
    };
    assert_eq!(
        Unverified::<RunToken>::new(git.as_str())
            .verify(&f.keys(), &run_expect, &f.clock)
            .unwrap_err(),
        RunTokenError::WrongType
    );

    let run = run::mint(
        &f.key,
        &MintParams {
            issuer: ISS,
            audience: GIT,
            trust_domain: &f.td,
            run: f.params().run,
            task: &f.task,
            jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
            ttl: SignedDuration::from_secs(600),
            scope: None,
            act: None,
        },
        &f.clock,
    )
    .unwrap();
    assert_eq!(
        f.verify(&run.token).unwrap_err(),
        GitCredentialError::WrongType
    );
}

#[test]
fn verification_refuses_what_it_must() {
    let f = fixture();
    let good = mint(&f.key, &f.params(), &f.clock).unwrap().credential;

    // Another git server.
    let other = GitCredentialExpectations {
        audience: "https://evil.example",
        ..f.expect()
    };
    assert_eq!(
        Unverified::<GitCredential>::new(good.as_str())
            .verify(&f.keys(), &other, &f.clock)
            .unwrap_err(),
        GitCredentialError::WrongAudience
    );
    // Another issuer.
    let other = GitCredentialExpectations {
        issuer: "https://other.example",
        ..f.expect()
    };
    assert_eq!(
        Unverified::<GitCredential>::new(good.as_str())
            .verify(&f.keys(), &other, &f.clock)
            .unwrap_err(),
        GitCredentialError::WrongIssuer
    );
    // Another trust domain.
    let td = TrustDomain::parse("other.example").unwrap();
    let other = GitCredentialExpectations {
        trust_domain: &td,
        ..f.expect()
    };
    assert_eq!(
        Unverified::<GitCredential>::new(good.as_str())
            .verify(&f.keys(), &other, &f.clock)
            .unwrap_err(),
        GitCredentialError::WrongSubject
    );
    // Expired: at `exp` plus the leeway, no longer valid.
    f.clock.advance(SignedDuration::from_secs(605));
    assert_eq!(f.verify(&good).unwrap_err(), GitCredentialError::Expired);

    // Signed by a key the verifier does not know.
    let f = fixture();
    let stranger = fixture();
    let foreign = mint(&stranger.key, &f.params(), &f.clock)
        .unwrap()
        .credential;
    assert!(matches!(
        f.verify(&foreign).unwrap_err(),
        GitCredentialError::UnknownKey(_)
    ));
    // A changed payload.
    let minted = mint(&f.key, &f.params(), &f.clock).unwrap();
    let [h, _, s]: [&str; 3] = minted
        .credential
        .split('.')
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let mut claims = minted.claims;
    claims.repo = "acme/web".into();
    claims.warrant_scope.repos = vec!["acme/web".into()];
    let payload = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        serde_json::to_vec(&claims).unwrap(),
    );
    assert_eq!(
        f.verify(&format!("{h}.{payload}.{s}")).unwrap_err(),
        GitCredentialError::BadSignature
    );
    assert!(matches!(
        f.verify("not a jwt").unwrap_err(),
        GitCredentialError::Malformed(_)
    ));
}

#[test]
fn origins_are_normalised_and_strict() {
    let ok = [
        ("https", "git.example", "https://git.example"),
        ("HTTPS", "Git.Example:443", "https://git.example"),
        ("http", "127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http", "localhost:80", "http://localhost"),
        ("https", "[::1]:8443", "https://[::1]:8443"),
    ];
    for (scheme, host, want) in ok {
        assert_eq!(
            origin(scheme, host).as_deref(),
            Some(want),
            "{scheme} {host}"
        );
    }
    let bad = [
        ("ssh", "git.example"),
        ("https", ""),
        ("https", "git.example:0"),
        ("https", "git.example:99999"),
        ("https", "git.example:08"),
        ("https", "user@git.example"),
        ("https", "git.example/path"),
        ("https", "-git.example"),
        ("https", "git..example"),
        ("https", "[::1"),
        ("https", "[::1]x"),
    ];
    for (scheme, host) in bad {
        assert_eq!(origin(scheme, host), None, "{scheme} {host}");
    }
}

#[test]
fn a_credential_is_presented_as_bearer_or_as_the_basic_password() {
    let basic = |s: &str| {
        format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s)
        )
    };
    assert_eq!(
        presented("Bearer abc.def.ghi").as_deref(),
        Some("abc.def.ghi")
    );
    assert_eq!(presented("bearer  abc").as_deref(), Some("abc"));
    assert_eq!(
        presented(&basic("x-warrant:abc.def")).as_deref(),
        Some("abc.def")
    );
    assert_eq!(presented(&basic("anyone:a:b")).as_deref(), Some("a:b"));
    for bad in [
        String::new(),
        "Bearer".into(),
        "Bearer ".into(),
        "DPoP abc".into(),
        "Basic !!!".into(),
        basic("no-colon"),
        basic("user:"),
        basic("user:has space"),
        format!("Bearer {}", "a".repeat(20_000)),
    ] {
        assert_eq!(presented(&bad), None, "{bad}");
    }
}
