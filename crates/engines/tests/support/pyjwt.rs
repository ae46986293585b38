//! The independent JWT verifier: Python PyJWT running
//! `tests/python/verify_service_token.py`.
//!
//! The interpreter is `$WARRANT_PYTHON`, else `~/.cache/warrant-venv/bin/python`
//! (the venv `scripts/test.sh` creates with `pyjwt[crypto]`). When PyJWT
//! cannot be imported the test fails, never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub fn python() -> PathBuf {
    let python = match std::env::var("WARRANT_PYTHON") {
        Ok(p) => PathBuf::from(p),
        Err(_) => {
            let home = std::env::var("HOME").expect("HOME must be set to find the PyJWT venv");
            PathBuf::from(home).join(".cache/warrant-venv/bin/python")
        }
    };
    let ok = Command::new(&python)
        .args(["-c", "import jwt, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "PyJWT is not importable by {}: run scripts/test.sh (it creates the venv) or set WARRANT_PYTHON",
        python.display()
    );
    python
}

/// Verifies `token` with PyJWT against the JWKS in `jwks_file`: the claims
/// and header on success, PyJWT's refusal otherwise.
pub fn verify(
    jwks_file: &Path,
    issuer: &str,
    audience: &str,
    token: &str,
) -> Result<Value, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/verify_service_token.py");
    let out = Command::new(python())
        .arg(script)
        .arg(jwks_file)
        .arg(issuer)
        .arg(audience)
        .arg(token)
        .output()
        .expect("cannot run the PyJWT verifier");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match out.status.code() {
        Some(0) => Ok(serde_json::from_str(&stdout).expect("the verifier prints JSON")),
        Some(1) if stdout.starts_with("refused: ") => Err(stdout),
        _ => panic!(
            "the PyJWT verifier failed: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
