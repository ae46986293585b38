//! An independent DSSE implementation checks Warrant's envelopes, and
//! Warrant checks its envelopes: Python `securesystemslib`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use warrant_attest::{AttestError, Envelope, TrustedKeys, sign, verify};
use warrant_crypto::jws::Jwks;
use warrant_crypto::{SigningKey, ed25519_kid};

use super::{COMMIT, DIGEST, OTHER_COMMIT, commit, statement};

/// The Python with `securesystemslib` the test runs: the `WARRANT_PYTHON`
/// interpreter, else `~/.cache/warrant-venv` (the venv `scripts/test.sh`
/// sets up), created or completed with `pip install
/// securesystemslib[crypto]` when missing. Never skipped: if Python or the
/// package cannot be had, the test fails.
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("WARRANT_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").expect("HOME must be set to find the Python venv");
    let venv = PathBuf::from(home).join(".cache/warrant-venv");
    let python = venv.join("bin/python");
    let has_sslib = |p: &Path| {
        Command::new(p)
            .args(["-c", "import securesystemslib.dsse, cryptography"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_sslib(&python) {
        if !python.exists() {
            let made = Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&venv)
                .status()
                .expect("python3 is required for the independent DSSE verifier test");
            assert!(
                made.success(),
                "cannot create the venv at {}",
                venv.display()
            );
        }
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "securesystemslib[crypto]"])
            .status()
            .expect("pip is required for the independent DSSE verifier test");
        assert!(pip.success(), "cannot install securesystemslib[crypto]");
    }
    assert!(
        has_sslib(&python),
        "securesystemslib is not importable by {}",
        python.display()
    );
    python
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/dsse_check.py")
}

fn run(args: &[&Path]) -> Output {
    Command::new(python())
        .arg(script())
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

fn verify_in_python(files: &Files, envelope: &Envelope, jwks: &Path, subject: &str) -> Output {
    let env = files.write("envelope.json", envelope.to_json().unwrap());
    let subject = PathBuf::from(subject);
    run(&[Path::new("verify"), &env, jwks, &subject])
}

#[test]
fn securesystemslib_verifies_warrants_envelope_and_rejects_a_tampered_one() {
    let files = Files::new();
    let key = SigningKey::generate().unwrap();
    let jwks = files.write(
        "jwks.json",
        Jwks::from_signing_keys([&key]).to_json().to_string(),
    );
    let envelope = sign(&statement(), &key).unwrap();

    let out = verify_in_python(&files, &envelope, &jwks, &format!("sha1:{COMMIT}"));
    assert!(
        out.status.success(),
        "securesystemslib refused Warrant's envelope: {} {}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let verified: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(verified["keyid"], key.kid());
    assert_eq!(
        verified["statement"]["predicate"]["approvers"][0]["name"],
        "bob"
    );
    let out = verify_in_python(&files, &envelope, &jwks, &format!("sha256:{DIGEST}"));
    assert!(out.status.success(), "{}", stdout(&out));

    // The same verifier refuses: a changed payload, ...
    let text = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            &envelope.payload,
        )
        .unwrap(),
    )
    .unwrap();
    let mut tampered = envelope.clone();
    tampered.payload = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        text.replace("\"bob\"", "\"eve\""),
    );
    let out = verify_in_python(&files, &tampered, &jwks, &format!("sha1:{COMMIT}"));
    assert!(
        !out.status.success(),
        "securesystemslib accepted a tampered envelope"
    );
    assert!(
        stdout(&out).contains("VerificationError"),
        "{}",
        stdout(&out)
    );

    // ... another key under the trusted kid, ...
    let mut foreign = sign(&statement(), &SigningKey::generate().unwrap()).unwrap();
    foreign.signatures[0].keyid = key.kid().to_owned();
    let out = verify_in_python(&files, &foreign, &jwks, &format!("sha1:{COMMIT}"));
    assert!(
        !out.status.success(),
        "securesystemslib accepted a foreign key"
    );

    // ... and another commit.
    let out = verify_in_python(&files, &envelope, &jwks, &format!("sha1:{OTHER_COMMIT}"));
    assert!(
        !out.status.success(),
        "securesystemslib accepted another commit"
    );
}

#[test]
fn warrant_verifies_an_envelope_securesystemslib_signed() {
    let files = Files::new();
    let payload = files.write("statement.json", serde_json::to_vec(&statement()).unwrap());
    let out = run(&[Path::new("sign"), &payload]);
    assert!(
        out.status.success(),
        "securesystemslib could not sign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let public: [u8; 32] = hex_bytes(signed["public"].as_str().unwrap());
    let kid = ed25519_kid(&public);
    // Python computed the RFC 7638 thumbprint on its own: the same key id.
    assert_eq!(signed["envelope"]["signatures"][0]["keyid"], kid.as_str());

    let envelope = serde_json::to_vec(&signed["envelope"]).unwrap();
    let mut keys = TrustedKeys::new();
    keys.insert(kid.clone(), public);
    let v = verify(&envelope, &keys, Some(&commit())).unwrap();
    assert_eq!(v.keyid, kid);
    assert_eq!(v.statement, statement());

    let other = TrustedKeys::from_signing_key(&SigningKey::generate().unwrap());
    let err = verify(&envelope, &other, Some(&commit())).unwrap_err();
    assert!(matches!(err, AttestError::UnknownKey { .. }), "{err}");
}

fn hex_bytes(s: &str) -> [u8; 32] {
    (0..32)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap()
}
