//! `warrant attest verify` with the real binary, as a CI gate would run it:
//! exit 0 for a valid envelope and the right subject, exit 1 with a precise
//! error for anything else.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tempfile::TempDir;
use warrant_attest::{ApprovalPredicate, Approver, Envelope, Resource, Statement, Subject, sign};
use warrant_crypto::SigningKey;
use warrant_crypto::jws::Jwks;

use crate::util::{Server, TestCommand};

const COMMIT: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
const OTHER_COMMIT: &str = "5b825dc642cb6eb9a060e54bf8d69288fbee4904";
const DIGEST: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn statement() -> Statement {
    let commit = Subject::git_commit(COMMIT).unwrap();
    let image = Subject::sha256_hex(DIGEST).unwrap();
    Statement::approval(
        vec![
            commit.descriptor("acme/api"),
            image.descriptor("registry.example/acme/api"),
        ],
        ApprovalPredicate {
            approval_id: "01962a5e-7f3c-7a1b-9c2d-3e4f5a6b7c8d".into(),
            action: "deploy".into(),
            resource: Resource {
                kind: "environment".into(),
                id: "prod".into(),
            },
            request_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            context: serde_json::Map::new(),
            task: "01962a5e-0000-7000-8000-000000000001".into(),
            run: None,
            agent: "claude".into(),
            delegator: "alice".into(),
            approvers: vec![Approver {
                name: "bob".into(),
                reason: "release signed off".into(),
                at: "2026-03-01T10:05:00Z".parse().unwrap(),
            }],
            requested_at: "2026-03-01T10:00:00Z".parse().unwrap(),
            approved_at: "2026-03-01T10:05:00Z".parse().unwrap(),
            expires_at: "2026-03-01T10:30:00Z".parse().unwrap(),
            policies: vec!["deploy-prod".into()],
            quorum: 1,
        },
    )
}

/// A directory with a JWKS file for `key` and envelope files.
struct Gate {
    dir: TempDir,
    jwks: PathBuf,
}

impl Gate {
    fn new(key: &SigningKey) -> Self {
        let dir = TempDir::new().unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, Jwks::from_signing_keys([key]).to_json().to_string()).unwrap();
        Self { dir, jwks }
    }

    fn write(&self, name: &str, envelope: &Envelope) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, envelope.to_json().unwrap()).unwrap();
        path
    }

    /// `warrant attest verify --envelope FILE --jwks <the JWKS file>`.
    fn verify(&self, envelope: &Path) -> TestCommand {
        let mut cmd = TestCommand::new(self.dir.path());
        cmd.args(["attest", "verify", "--envelope"])
            .arg(envelope)
            .arg("--jwks")
            .arg(&self.jwks);
        cmd
    }
}

#[test]
fn attest_verify_accepts_the_right_subject_and_refuses_the_rest() {
    let key = SigningKey::generate().unwrap();
    let gate = Gate::new(&key);
    let envelope = sign(&statement(), &key).unwrap();
    let good = gate.write("good.json", &envelope);

    // The right commit, and the right image digest.
    let out = gate
        .verify(&good)
        .args(["--subject", &format!("sha1:{COMMIT}")])
        .json();
    assert_eq!(out["valid"], true);
    assert_eq!(out["keyid"], key.kid());
    assert_eq!(out["matched"], format!("sha1:{COMMIT}"));
    assert_eq!(out["statement"]["predicate"]["approvers"][0]["name"], "bob");
    assert_eq!(out["statement"]["predicate"]["action"], "deploy");
    let table = gate
        .verify(&good)
        .args([
            "--subject",
            &format!("sha256:{DIGEST}"),
            "--output",
            "table",
        ])
        .args(["--action", "deploy"])
        .stdout();
    assert!(table.starts_with("attestation valid: approval "), "{table}");
    assert!(
        table.contains("bob at 2026-03-01 10:05:00Z: release signed off"),
        "{table}"
    );

    // Another commit.
    let err = gate
        .verify(&good)
        .args(["--subject", &format!("sha1:{OTHER_COMMIT}")])
        .fails_with(1);
    assert!(
        err.contains(&format!(
            "error: attestation refused: the approval is not for `sha1:{OTHER_COMMIT}`"
        )),
        "{err}"
    );
    assert!(err.contains("hint: "), "{err}");

    // Another action.
    let err = gate
        .verify(&good)
        .args(["--subject", &format!("sha1:{COMMIT}"), "--action", "merge"])
        .fails_with(1);
    assert!(
        err.contains("approval is for action `deploy`, not `merge`"),
        "{err}"
    );

    // A modified payload: the approver's name changed, the signature kept.
    let mut modified = statement();
    modified.predicate.approvers[0].name = "eve".into();
    let mut tampered = envelope.clone();
    tampered.payload = sign(&modified, &key).unwrap().payload;
    assert_ne!(tampered.payload, envelope.payload);
    let path = gate.write("tampered.json", &tampered);
    let err = gate
        .verify(&path)
        .args(["--subject", &format!("sha1:{COMMIT}")])
        .fails_with(1);
    assert!(
        err.contains(&format!(
            "the signature by key `{}` does not verify",
            key.kid()
        )),
        "{err}"
    );

    // A foreign key, under its own key id and under the trusted one.
    let foreign = SigningKey::generate().unwrap();
    let forged = sign(&statement(), &foreign).unwrap();
    let path = gate.write("foreign.json", &forged);
    let err = gate
        .verify(&path)
        .args(["--subject", &format!("sha1:{COMMIT}")])
        .fails_with(1);
    assert!(err.contains("no signature is by a trusted key"), "{err}");
    assert!(err.contains(foreign.kid()), "{err}");
    let mut claimed = forged;
    claimed.signatures[0].keyid = key.kid().to_owned();
    let path = gate.write("claimed.json", &claimed);
    let err = gate
        .verify(&path)
        .args(["--subject", &format!("sha1:{COMMIT}")])
        .fails_with(1);
    assert!(err.contains("does not verify"), "{err}");
}

#[test]
fn attest_verify_refuses_bad_arguments_and_files_with_exit_1() {
    let key = SigningKey::generate().unwrap();
    let gate = Gate::new(&key);
    let good = gate.write("good.json", &sign(&statement(), &key).unwrap());

    let err = gate
        .verify(&good)
        .args(["--subject", &COMMIT.to_uppercase()])
        .fails_with(1);
    assert!(err.contains("invalid subject"), "{err}");
    assert!(err.contains("git rev-parse HEAD"), "{err}");

    let err = gate
        .verify(&good)
        .args(["--subject", &format!("sha1:{}", &COMMIT[..12])])
        .fails_with(1);
    assert!(err.contains("exactly 40 hex digits"), "{err}");

    let missing = gate.dir.path().join("nope.json");
    let err = gate.verify(&missing).fails_with(1);
    assert!(err.contains("cannot read"), "{err}");

    let junk = gate.dir.path().join("junk.json");
    std::fs::write(&junk, "{\"payload\": 1}").unwrap();
    let err = gate.verify(&junk).fails_with(1);
    assert!(err.contains("not a DSSE envelope"), "{err}");

    // Keys over plain HTTP from another host are refused before any request.
    let err = TestCommand::new(gate.dir.path())
        .args(["attest", "verify", "--envelope"])
        .arg(&good)
        .args([
            "--jwks",
            "http://warrant.example.invalid/.well-known/jwks.json",
        ])
        .fails_with(1);
    assert!(
        err.contains("refusing to fetch keys over plain HTTP"),
        "{err}"
    );
}

#[test]
fn attest_verify_reads_stdin_and_warns_without_a_subject() {
    let key = SigningKey::generate().unwrap();
    let gate = Gate::new(&key);
    let envelope = sign(&statement(), &key).unwrap();
    let out = gate
        .verify(Path::new("-"))
        .stdin(envelope.to_json().unwrap())
        .output();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("without --subject only the signature is checked"),
        "{stderr}"
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["matched"], Value::Null);
}

/// The default keys are the server's own JWKS: an envelope signed with the
/// server's key verifies against `--addr`, one signed with another key does
/// not, and so does `--jwks URL`.
#[test]
fn attest_verify_fetches_the_servers_jwks() {
    let server = Server::start();
    let pem = std::fs::read_to_string(server.data_dir.join("signing.key")).unwrap();
    let key = SigningKey::from_pkcs8_pem(&pem).unwrap();
    let dir = TempDir::new().unwrap();
    let write = |name: &str, envelope: &Envelope| {
        let path = dir.path().join(name);
        std::fs::write(&path, envelope.to_json().unwrap()).unwrap();
        path
    };
    let good = write("good.json", &sign(&statement(), &key).unwrap());
    let subject = format!("sha1:{COMMIT}");

    let out = server
        .cmd()
        .args(["attest", "verify", "--envelope"])
        .arg(&good)
        .args(["--subject", &subject])
        .json();
    assert_eq!(out["keyid"], key.kid());
    assert_eq!(
        out["jwks"],
        format!("{}/.well-known/jwks.json", server.addr)
    );

    let jwks_url = format!("{}/.well-known/jwks.json", server.addr);
    let out = TestCommand::new(dir.path())
        .args(["attest", "verify", "--envelope"])
        .arg(&good)
        .args(["--subject", &subject, "--jwks", &jwks_url])
        .json();
    assert_eq!(out["valid"], true);

    let foreign = write(
        "foreign.json",
        &sign(&statement(), &SigningKey::generate().unwrap()).unwrap(),
    );
    let err = server
        .cmd()
        .args(["attest", "verify", "--envelope"])
        .arg(&foreign)
        .args(["--subject", &subject])
        .fails_with(1);
    assert!(err.contains("no signature is by a trusted key"), "{err}");
}
