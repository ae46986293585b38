//! The `ssh` engine against a real `sshd` on 127.0.0.1, the real `ssh`
//! client and `ssh-keygen` (certificates read with `-L`, KRLs checked with
//! `-Q`). No Warrant server: the test drives the engine directly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/sshd.rs"]
mod sshd;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use warrant_core::TaskId;
use warrant_engines::ssh::{SshEngine, build_ssh};
use warrant_engines::{Engine, EngineContext, EngineError, IssueRequest, Issued};

use sshd::{Sshd, describe_cert, keygen, krl_check};

/// An engine with three roles. `deploy` is what the sshd under test lets
/// log in (its principal `deploy` is in the user's principals file);
/// `intruder` names a principal the host does not authorize; `forced` pins a
/// command and a source address.
fn config(extra: &str) -> toml::Value {
    toml::from_str(&format!(
        r#"
name = "ops"
type = "ssh"
{extra}

[[roles]]
name = "deploy"
description = "deploy to the web hosts"
max_ttl = "1h"
principals = ["deploy", "www"]

[[roles]]
name = "intruder"
principals = ["intruder"]

[[roles]]
name = "forced"
principals = ["deploy"]
extensions = []
critical_options = {{ force-command = "echo forced-command-ran", source-address = "127.0.0.1/32,::1" }}

[[roles]]
name = "elsewhere"
principals = ["deploy"]
critical_options = {{ source-address = "192.0.2.0/24" }}

[[roles]]
name = "legacy"
principals = ["deploy"]
key_types = ["rsa", "ed25519"]
"#
    ))
    .unwrap()
}

struct Fixture {
    engine: Arc<SshEngine>,
    data: tempfile::TempDir,
    /// Client keys and certificates.
    work: tempfile::TempDir,
    key: PathBuf,
    public_key: String,
}

fn ctx(data_dir: &Path) -> EngineContext {
    EngineContext {
        data_dir: data_dir.to_owned(),
        signing_key: Arc::new(warrant_crypto::SigningKey::generate().unwrap()),
        issuer: "https://warrant.test".into(),
    }
}

fn fixture() -> Fixture {
    let data = tempfile::tempdir().unwrap();
    let engine = build_ssh("ops", &config(""), &ctx(data.path())).unwrap();
    let work = tempfile::tempdir().unwrap();
    let (key, public_key) = keygen(work.path(), "agent_key", &["-t", "ed25519"]);
    Fixture {
        engine,
        data,
        work,
        key,
        public_key,
    }
}

struct Request {
    lease_id: uuid::Uuid,
    task_id: TaskId,
    run_id: uuid::Uuid,
    role: String,
    expires_at: Timestamp,
    params: Value,
}

fn request(role: &str, params: Value, ttl: SignedDuration) -> Request {
    Request {
        lease_id: uuid::Uuid::now_v7(),
        task_id: TaskId::new(),
        run_id: uuid::Uuid::now_v7(),
        role: role.to_owned(),
        expires_at: Timestamp::now() + ttl,
        params,
    }
}

impl Request {
    fn get(&self) -> IssueRequest<'_> {
        IssueRequest {
            lease_id: self.lease_id,
            role: &self.role,
            task_id: self.task_id,
            run_id: self.run_id,
            agent: "claude",
            delegator: "alice",
            expires_at: self.expires_at,
            params: &self.params,
        }
    }
}

impl Fixture {
    fn request(&self, role: &str, ttl: SignedDuration) -> Request {
        request(role, json!({ "public_key": self.public_key }), ttl)
    }

    /// prepare + issue, and the certificate written next to the key (as
    /// `ssh` expects it).
    async fn issue(&self, req: &Request) -> (Value, Issued, PathBuf) {
        let handle = self.engine.prepare(&req.get()).unwrap();
        let issued = self.engine.issue(&req.get(), &handle).await.unwrap();
        let cert = self.work.path().join(format!("{}-cert.pub", req.lease_id));
        let line = issued.secrets["certificate"].expose_secret().to_owned();
        std::fs::write(&cert, format!("{line}\n")).unwrap();
        (handle, issued, cert)
    }

    fn sshd(&self) -> Sshd {
        Sshd::start(
            &self.engine.ca_public_key(),
            &["deploy"],
            &self.engine.krl(),
        )
    }

    fn krl_file(&self) -> PathBuf {
        let path = self.work.path().join("krl");
        std::fs::write(&path, self.engine.krl()).unwrap();
        path
    }
}

#[tokio::test]
async fn a_certificate_logs_in_until_it_is_revoked() {
    let f = fixture();
    let sshd = f.sshd();
    let req = f.request("deploy", SignedDuration::from_mins(10));
    let (handle, issued, cert) = f.issue(&req).await;

    // What OpenSSH reads in the certificate.
    let serial = handle["serial"].as_u64().unwrap();
    let key_id = format!("warrant:{}:claude", req.lease_id);
    let described = describe_cert(&cert);
    assert!(
        described.contains("Type: ssh-ed25519-cert-v01@openssh.com user certificate"),
        "{described}"
    );
    assert!(
        described.contains(&format!("Serial: {serial}")),
        "{described}"
    );
    assert!(
        described.contains(&format!("Key ID: \"{key_id}\"")),
        "{described}"
    );
    assert!(
        described.contains(&format!(
            "Signing CA: ED25519 {}",
            f.engine.ca_fingerprint()
        )),
        "{described}"
    );
    assert!(described.contains("permit-pty"), "{described}");
    assert_eq!(handle["key_id"], key_id);
    assert_eq!(issued.handle, handle);
    assert_eq!(issued.public["serial"], serial);
    assert_eq!(issued.public["principals"], json!(["deploy", "www"]));
    assert_eq!(issued.public["ca_fingerprint"], f.engine.ca_fingerprint());
    assert_eq!(issued.expires_at.as_second(), req.expires_at.as_second());
    assert_eq!(issued.public["valid_before"], issued.expires_at.to_string());

    assert_eq!(
        sshd.assert_login(&f.key, &cert, "echo logged-in").trim(),
        "logged-in"
    );
    krl_check(&f.krl_file(), &cert).unwrap();

    f.engine.revoke(&handle).await.unwrap();
    let krl = f.krl_file();
    let refused = krl_check(&krl, &cert).unwrap_err();
    assert!(refused.contains("REVOKED"), "{refused}");
    sshd.set_krl(&f.engine.krl());
    sshd.assert_refused(&f.key, &cert, "revoked by file");

    // Revoking again is a no-op, and other certificates still work.
    f.engine.revoke(&handle).await.unwrap();
    let other = f.request("deploy", SignedDuration::from_mins(10));
    let (_, _, other_cert) = f.issue(&other).await;
    krl_check(&f.krl_file(), &other_cert).unwrap();
    sshd.assert_login(&f.key, &other_cert, "true");

    // A revoked lease cannot be issued again.
    let err = f.engine.issue(&req.get(), &handle).await.unwrap_err();
    assert!(matches!(err, EngineError::BadRequest(_)), "{err}");
}

#[tokio::test]
async fn a_principal_the_host_does_not_authorize_is_refused() {
    let f = fixture();
    let sshd = f.sshd();
    let (_, issued, cert) = f
        .issue(&f.request("intruder", SignedDuration::from_mins(10)))
        .await;
    assert_eq!(issued.public["principals"], json!(["intruder"]));
    sshd.assert_refused(
        &f.key,
        &cert,
        "Certificate does not contain an authorized principal",
    );

    // The request may narrow the role's principals, never widen them.
    let narrowed = request(
        "deploy",
        json!({ "public_key": f.public_key, "principals": ["www"] }),
        SignedDuration::from_mins(10),
    );
    let (_, issued, cert) = f.issue(&narrowed).await;
    assert_eq!(issued.public["principals"], json!(["www"]));
    assert!(describe_cert(&cert).contains("www"));
    sshd.assert_refused(
        &f.key,
        &cert,
        "Certificate does not contain an authorized principal",
    );
    let narrowed = request(
        "deploy",
        json!({ "public_key": f.public_key, "principals": " www  deploy" }),
        SignedDuration::from_mins(10),
    );
    let handle = f.engine.prepare(&narrowed.get()).unwrap();
    let issued = f.engine.issue(&narrowed.get(), &handle).await.unwrap();
    assert_eq!(issued.public["principals"], json!(["www", "deploy"]));
    for asked in [
        json!(["root"]),
        json!(["deploy", "intruder"]),
        json!([]),
        json!(""),
        json!([1]),
        json!("deploy,www"),
    ] {
        let wider = request(
            "deploy",
            json!({ "public_key": f.public_key, "principals": asked }),
            SignedDuration::from_mins(10),
        );
        let err = f.engine.prepare(&wider.get()).unwrap_err();
        assert!(matches!(err, EngineError::BadRequest(_)), "{asked}: {err}");
    }
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let f = fixture();
    let sshd = f.sshd();
    let req = f.request("deploy", SignedDuration::from_secs(4));
    let (_, issued, cert) = f.issue(&req).await;
    assert!(issued.expires_at <= req.expires_at);
    sshd.assert_login(&f.key, &cert, "true");
    // Wait for sshd's clock to pass the certificate's end.
    while Timestamp::now() < issued.expires_at + SignedDuration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sshd.assert_refused(&f.key, &cert, "Certificate invalid: expired");
}

#[tokio::test]
async fn critical_options_bind_the_command_and_the_source_address() {
    let f = fixture();
    let sshd = f.sshd();
    let (_, _, cert) = f
        .issue(&f.request("forced", SignedDuration::from_mins(10)))
        .await;
    let described = describe_cert(&cert);
    assert!(
        described.contains("force-command echo forced-command-ran"),
        "{described}"
    );
    assert!(
        described.contains("source-address 127.0.0.1/32,::1"),
        "{described}"
    );
    assert!(!described.contains("permit-pty"), "{described}");
    // sshd runs the certificate's command, not the one asked for.
    assert_eq!(
        sshd.assert_login(&f.key, &cert, "echo other").trim(),
        "forced-command-ran"
    );

    let (_, _, cert) = f
        .issue(&f.request("elsewhere", SignedDuration::from_mins(10)))
        .await;
    sshd.assert_refused(&f.key, &cert, "Refused by certificate options");
}

#[tokio::test]
async fn malformed_or_weak_public_keys_are_bad_requests() {
    let f = fixture();
    let (_, rsa2048) = keygen(f.work.path(), "rsa2048", &["-t", "rsa", "-b", "2048"]);
    let (rsa_key, rsa3072) = keygen(f.work.path(), "rsa3072", &["-t", "rsa", "-b", "3072"]);
    let (_, ecdsa384) = keygen(f.work.path(), "ecdsa384", &["-t", "ecdsa", "-b", "384"]);
    let (_, ecdsa256) = keygen(f.work.path(), "ecdsa256", &["-t", "ecdsa", "-b", "256"]);
    let ed = f.public_key.clone();
    let truncated = ed[..ed.len() - 12].to_owned();
    let (alg, blob) = ed.split_once(' ').unwrap();
    let mislabeled = format!("ssh-rsa {}", blob.split(' ').next().unwrap());
    let _ = alg;

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "deploy",
            json!({ "public_key": "not a key" }),
            "not an OpenSSH public key",
        ),
        (
            "deploy",
            json!({ "public_key": truncated }),
            "not an OpenSSH public key",
        ),
        (
            "deploy",
            json!({ "public_key": mislabeled }),
            "not an OpenSSH public key",
        ),
        (
            "deploy",
            json!({ "public_key": "" }),
            "not an OpenSSH public key",
        ),
        (
            "deploy",
            json!({ "public_key": "x".repeat(10_000) }),
            "longer than",
        ),
        ("deploy", json!({ "public_key": 42 }), "invalid parameters"),
        ("deploy", json!({}), "`public_key` parameter is required"),
        (
            "deploy",
            json!({ "public_key": ed, "principal": ["deploy"] }),
            "unknown field `principal`",
        ),
        (
            "deploy",
            json!({ "public_key": rsa3072 }),
            "does not accept `ssh-rsa` keys",
        ),
        (
            "deploy",
            json!({ "public_key": ecdsa384 }),
            "does not accept `ecdsa-sha2-nistp384` keys",
        ),
        (
            "legacy",
            json!({ "public_key": rsa2048 }),
            "has 2048 bits: at least 3072",
        ),
    ];
    for (role, params, expected) in cases {
        let req = request(role, params.clone(), SignedDuration::from_mins(5));
        match f.engine.prepare(&req.get()) {
            Err(EngineError::BadRequest(msg)) => assert!(msg.contains(expected), "{params}: {msg}"),
            other => panic!("{params}: expected a bad request, got {other:?}"),
        }
    }
    // A certificate is not a public key.
    let (_, _, cert) = f
        .issue(&f.request("deploy", SignedDuration::from_mins(5)))
        .await;
    let cert_line = std::fs::read_to_string(&cert).unwrap();
    let req = request(
        "deploy",
        json!({ "public_key": cert_line }),
        SignedDuration::from_mins(5),
    );
    assert!(matches!(
        f.engine.prepare(&req.get()),
        Err(EngineError::BadRequest(_))
    ));

    let req = request(
        "nope",
        json!({ "public_key": f.public_key }),
        SignedDuration::from_mins(5),
    );
    assert!(
        matches!(f.engine.prepare(&req.get()), Err(EngineError::UnknownRole(r)) if r == "nope")
    );

    // Allowed types: ECDSA P-256 by default, RSA >= 3072 where the role says.
    let req = request(
        "deploy",
        json!({ "public_key": ecdsa256 }),
        SignedDuration::from_mins(5),
    );
    f.engine.prepare(&req.get()).unwrap();
    let sshd = f.sshd();
    let req = request(
        "legacy",
        json!({ "public_key": rsa3072 }),
        SignedDuration::from_mins(5),
    );
    let (_, _, cert) = f.issue(&req).await;
    assert!(describe_cert(&cert).contains("ssh-rsa-cert-v01@openssh.com"));
    sshd.assert_login(&rsa_key, &cert, "true");
}

#[tokio::test]
async fn revocations_and_the_ca_survive_a_restart() {
    let f = fixture();
    let req = f.request("deploy", SignedDuration::from_mins(10));
    let (handle, _, cert) = f.issue(&req).await;
    let kept = f.request("deploy", SignedDuration::from_mins(10));
    let (_, _, kept_cert) = f.issue(&kept).await;
    f.engine.revoke(&handle).await.unwrap();
    let ca = f.engine.ca_public_key();

    let again = build_ssh("ops", &config(""), &ctx(f.data.path())).unwrap();
    assert_eq!(again.ca_public_key(), ca);
    let krl = f.work.path().join("krl-after-restart");
    std::fs::write(&krl, again.krl()).unwrap();
    krl_check(&krl, &cert).unwrap_err();
    krl_check(&krl, &kept_cert).unwrap();
    // Each revocation is one fsync'ed line.
    let revoked = std::fs::read_to_string(f.data.path().join("engines/ops/revoked")).unwrap();
    assert_eq!(revoked.lines().count(), 1, "{revoked}");
    assert!(
        revoked.starts_with(&format!("{} ", handle["serial"])),
        "{revoked}"
    );
}

#[tokio::test]
async fn a_ca_key_made_by_ssh_keygen_can_be_configured() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (ca_key, ca_public) = keygen(dir.path(), "user_ca", &["-t", "ed25519"]);
    let engine = build_ssh(
        "ops",
        &config(&format!("ca_key_file = \"{}\"", ca_key.display())),
        &ctx(f.data.path()),
    )
    .unwrap();
    let mut theirs = ca_public.split(' ');
    let mut ours = engine.ca_public_key();
    ours.truncate(ours.rfind(' ').unwrap());
    assert_eq!(
        ours,
        format!("{} {}", theirs.next().unwrap(), theirs.next().unwrap())
    );

    // An RSA CA is refused: the engine signs with Ed25519 only.
    let (rsa_ca, _) = keygen(dir.path(), "rsa_ca", &["-t", "rsa", "-b", "3072"]);
    let err = build_ssh(
        "ops",
        &config(&format!("ca_key_file = \"{}\"", rsa_ca.display())),
        &ctx(f.data.path()),
    )
    .unwrap_err();
    assert!(err.contains("Ed25519 only"), "{err}");
}
