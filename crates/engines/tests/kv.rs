//! The `kv` engine: sealing with a keyring, and releasing secrets through
//! a `KvBackend`.
//!
//! The backend here is an in-memory map: `KvBackend` is Warrant's own store
//! interface (the server implements it over the real store and tests that
//! side); nothing outside Warrant is stood in for.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use warrant_core::TaskId;
use warrant_engines::kv::{Keyring, KeyringSpec, KvBackend, Sealed};
use warrant_engines::{Engine, EngineContext, EngineError, IssueRequest};

const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const K2: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0f0102030405060708090a0b0c0d0e0f10";

fn key_file(dir: &Path, file: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn ring(dir: &Path, file: &str, text: &str) -> Keyring {
    Keyring::load(&KeyringSpec::File(key_file(dir, file, text))).unwrap()
}

fn one_key(dir: &Path) -> Keyring {
    ring(dir, "one", &format!("k1 {K1}\n"))
}

fn two_keys(dir: &Path) -> Keyring {
    ring(
        dir,
        "two",
        &format!("# old\nk1 {K1}\n\n# current\nk2 {K2}\n"),
    )
}

#[test]
fn seal_then_unseal_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let ring = one_key(dir.path());
    assert_eq!(ring.current_id(), "k1");
    let sealed = ring.seal("kv", "npm-token", b"npm_abcdef").unwrap();
    assert_eq!(sealed.key_id, "k1");
    assert_eq!(sealed.nonce.len(), 24);
    assert_eq!(sealed.ciphertext.len(), b"npm_abcdef".len() + 16);
    let opened = ring.unseal("kv", "npm-token", &sealed).unwrap();
    assert_eq!(opened.as_slice(), b"npm_abcdef");
    // Empty secrets seal too.
    let empty = ring.seal("kv", "empty", b"").unwrap();
    assert!(ring.unseal("kv", "empty", &empty).unwrap().is_empty());
}

#[test]
fn the_plaintext_never_appears_in_the_sealed_blob() {
    let dir = tempfile::tempdir().unwrap();
    let ring = one_key(dir.path());
    let secret = b"ghp_THISISAVERYRECOGNISABLESECRETVALUE0123456789";
    let a = ring.seal("kv", "gh", secret).unwrap();
    let b = ring.seal("kv", "gh", secret).unwrap();
    for sealed in [&a, &b] {
        let bytes = [sealed.key_id.as_bytes(), &sealed.nonce, &sealed.ciphertext].concat();
        assert!(
            !bytes.windows(6).any(|w| secret.windows(6).any(|s| s == w)),
            "6 bytes of the secret appear in the sealed blob"
        );
    }
    // A fresh nonce per seal: the same secret seals differently.
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.ciphertext, b.ciphertext);
}

#[test]
fn an_unknown_key_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let old = one_key(dir.path());
    let new = two_keys(dir.path());
    let sealed = new.seal("kv", "s", b"value").unwrap();
    assert_eq!(sealed.key_id, "k2");
    let err = old.unseal("kv", "s", &sealed).unwrap_err();
    assert!(matches!(err, EngineError::Config(_)), "{err:?}");
    assert!(err.to_string().contains("key `k2`"), "{err}");
}

#[test]
fn tampering_or_moving_a_blob_makes_it_fail_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let ring = two_keys(dir.path());
    let sealed = ring.seal("kv", "npm-token", b"npm_abcdef").unwrap();
    let fails = |engine: &str, name: &str, s: &Sealed| {
        let err = ring.unseal(engine, name, s).unwrap_err();
        assert!(matches!(err, EngineError::Internal(_)), "{err:?}");
        assert!(!err.to_string().contains("npm_abcdef"));
    };

    let mut bad = sealed.clone();
    bad.ciphertext[0] ^= 1;
    fails("kv", "npm-token", &bad);
    let mut bad = sealed.clone();
    let last = bad.ciphertext.len() - 1;
    bad.ciphertext[last] ^= 0x80; // the tag
    fails("kv", "npm-token", &bad);
    let mut bad = sealed.clone();
    bad.ciphertext.pop();
    fails("kv", "npm-token", &bad);
    let mut bad = sealed.clone();
    bad.nonce[23] ^= 1;
    fails("kv", "npm-token", &bad);
    let mut bad = sealed.clone();
    bad.nonce.pop();
    fails("kv", "npm-token", &bad);
    // Moved to another name or engine.
    fails("kv", "pypi-token", &sealed);
    fails("kv-other", "npm-token", &sealed);
    // Relabelled with the other key's id: the key id is in the AAD, and
    // the other key does not open it either.
    let mut bad = sealed.clone();
    bad.key_id = "k1".into();
    fails("kv", "npm-token", &bad);

    // The untouched blob still opens.
    assert_eq!(
        ring.unseal("kv", "npm-token", &sealed).unwrap().as_slice(),
        b"npm_abcdef"
    );
}

#[test]
fn a_keyring_with_two_keys_opens_old_blobs_and_seals_with_the_current() {
    let dir = tempfile::tempdir().unwrap();
    let old = one_key(dir.path());
    let new = two_keys(dir.path());
    assert_eq!(new.current_id(), "k2");
    assert_eq!(new.key_ids(), ["k1", "k2"]);
    let sealed_old = old.seal("kv", "s", b"v1").unwrap();
    assert_eq!(
        new.unseal("kv", "s", &sealed_old).unwrap().as_slice(),
        b"v1"
    );
    assert_eq!(new.seal("kv", "s", b"v2").unwrap().key_id, "k2");
}

#[test]
fn reseal_moves_a_blob_to_the_current_key() {
    let dir = tempfile::tempdir().unwrap();
    let old = one_key(dir.path());
    let new = two_keys(dir.path());
    let sealed = old.seal("kv", "s", b"value").unwrap();
    let resealed = new.reseal("kv", "s", &sealed).unwrap();
    assert_eq!(resealed.key_id, "k2");
    assert_ne!(resealed.nonce, sealed.nonce);
    assert_eq!(
        new.unseal("kv", "s", &resealed).unwrap().as_slice(),
        b"value"
    );
    // Only k2 opens it now.
    assert!(old.unseal("kv", "s", &resealed).is_err());
    // Resealing checks the blob: a tampered one is refused, not rewrapped.
    let mut bad = sealed.clone();
    bad.ciphertext[0] ^= 1;
    assert!(new.reseal("kv", "s", &bad).is_err());
}

#[test]
fn key_files_are_checked() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::write(&open, format!("k1 {K1}\n")).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = Keyring::load(&KeyringSpec::File(open)).unwrap_err();
    assert!(err.contains("accessible by group or others"), "{err}");

    let err = Keyring::load(&KeyringSpec::File(dir.path().join("missing"))).unwrap_err();
    assert!(err.contains("cannot read"), "{err}");

    for (text, expected) in [
        ("", "no master key"),
        (
            &format!("k1 {}", &K1[..60]) as &str,
            "must be 64 hex digits",
        ),
        (&format!("k1 {K1}\nk1 {K2}"), "key id `k1` appears twice"),
        (&format!("k 1 {K1}"), "entry 1 must be"),
    ] {
        let path = key_file(dir.path(), "bad", text);
        let err = Keyring::load(&KeyringSpec::File(path)).unwrap_err();
        assert!(err.contains(expected), "expected `{expected}` in `{err}`");
        assert!(
            !err.contains(&K1[..20]) && !err.contains(&K2[..20]),
            "{err}"
        );
    }

    let err = Keyring::load(&KeyringSpec::Env("WARRANT_TEST_NO_SUCH_KEYS".into())).unwrap_err();
    assert!(
        err.contains("`WARRANT_TEST_NO_SUCH_KEYS` is not set"),
        "{err}"
    );
}

/// Warrant's store, in memory.
#[derive(Debug, Default)]
struct MemoryStore {
    blobs: Mutex<HashMap<(String, String), Sealed>>,
    down: Mutex<bool>,
}

impl MemoryStore {
    fn put(&self, engine: &str, name: &str, sealed: Sealed) {
        self.blobs
            .lock()
            .unwrap()
            .insert((engine.to_owned(), name.to_owned()), sealed);
    }
}

#[async_trait]
impl KvBackend for MemoryStore {
    async fn get(&self, engine: &str, name: &str) -> Result<Option<Sealed>, EngineError> {
        if *self.down.lock().unwrap() {
            return Err(EngineError::Unavailable("the store is down".into()));
        }
        Ok(self
            .blobs
            .lock()
            .unwrap()
            .get(&(engine.to_owned(), name.to_owned()))
            .cloned())
    }
}

fn context(dir: &Path) -> EngineContext {
    EngineContext {
        data_dir: dir.to_path_buf(),
        signing_key: Arc::new(warrant_crypto::SigningKey::generate().unwrap()),
        issuer: "https://warrant.test".into(),
    }
}

const ROLES: &str = r#"
[[roles]]
name = "npm"
description = "publish packages"
max_ttl = "30m"
secrets = ["npm-token"]

[[roles]]
name = "registries"
max_ttl = "1h"
secrets = ["npm-token", "pypi-token", "not-stored"]
"#;

fn config(keys: &Path, roles: &str) -> toml::Value {
    toml::from_str(&format!(
        "name = \"kv\"\ntype = \"kv\"\nmaster_key_file = {:?}\n{roles}",
        keys.display().to_string()
    ))
    .unwrap()
}

struct Setup {
    engine: Arc<dyn Engine>,
    store: Arc<MemoryStore>,
    ring: Keyring,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path(), "keys", &format!("k1 {K1}\nk2 {K2}\n"));
    let store = Arc::new(MemoryStore::default());
    let engine = warrant_engines::kv::build_with_backend(
        "kv",
        &config(&keys, ROLES),
        &context(dir.path()),
        store.clone(),
    )
    .unwrap();
    let ring = Keyring::load(&KeyringSpec::File(keys)).unwrap();
    store.put(
        "kv",
        "npm-token",
        ring.seal("kv", "npm-token", b"npm_secret_1").unwrap(),
    );
    store.put(
        "kv",
        "pypi-token",
        ring.seal("kv", "pypi-token", b"pypi-secret-2").unwrap(),
    );
    Setup {
        engine,
        store,
        ring,
        _dir: dir,
    }
}

fn request<'a>(role: &'a str, params: &'a Value) -> IssueRequest<'a> {
    IssueRequest {
        lease_id: uuid::Uuid::now_v7(),
        role,
        task_id: TaskId::new(),
        run_id: uuid::Uuid::now_v7(),
        agent: "build-bot",
        delegator: "alice",
        expires_at: Timestamp::now() + SignedDuration::from_mins(10),
        params,
    }
}

#[tokio::test]
async fn issue_releases_the_unsealed_secret() {
    let s = setup();
    assert_eq!(s.engine.kind(), "kv");
    let roles = s.engine.roles();
    assert_eq!(
        roles.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["npm", "registries"]
    );
    assert_eq!(roles[0].max_ttl_secs, 1800);
    assert_eq!(roles[0].description, "publish packages");

    // A role with one secret needs no parameter.
    let params = json!({});
    let req = request("npm", &params);
    let handle = s.engine.prepare(&req).unwrap();
    assert_eq!(handle, json!({"secret": "npm-token"}));
    let issued = s.engine.issue(&req, &handle).await.unwrap();
    assert_eq!(issued.secrets.keys().collect::<Vec<_>>(), ["value"]);
    assert_eq!(issued.secrets["value"].expose_secret(), "npm_secret_1");
    assert_eq!(
        issued.public,
        json!({"secret": "npm-token", "key_id": "k2"})
    );
    assert_eq!(issued.handle, handle);
    assert_eq!(issued.expires_at, req.expires_at);

    // Several: the parameter picks one.
    let params = json!({"secret": "pypi-token"});
    let req = request("registries", &params);
    let handle = s.engine.prepare(&req).unwrap();
    let issued = s.engine.issue(&req, &handle).await.unwrap();
    assert_eq!(issued.secrets["value"].expose_secret(), "pypi-secret-2");

    // Revocation has nothing to remove, and says so by succeeding, twice.
    s.engine.revoke(&handle).await.unwrap();
    s.engine.revoke(&handle).await.unwrap();
}

#[tokio::test]
async fn secrets_outside_the_role_are_refused() {
    let s = setup();
    let bad = |role: &'static str, params: Value| {
        let engine = s.engine.clone();
        async move {
            let req = request(role, &params);
            engine.prepare(&req).map(drop)
        }
    };
    assert!(matches!(
        bad("npm", json!({"secret": "pypi-token"})).await,
        Err(EngineError::BadRequest(m)) if m.contains("does not release secret `pypi-token`")
    ));
    assert!(matches!(
        bad("registries", json!({})).await,
        Err(EngineError::BadRequest(m)) if m.contains("name one")
    ));
    assert!(matches!(
        bad("npm", json!({"secret": 7})).await,
        Err(EngineError::BadRequest(_))
    ));
    assert!(matches!(
        bad("npm", json!({"secret": "npm-token", "ttl": "1h"})).await,
        Err(EngineError::BadRequest(m)) if m.contains("unknown parameter `ttl`")
    ));
    assert!(matches!(
        bad("npm", json!(["npm-token"])).await,
        Err(EngineError::BadRequest(_))
    ));
    assert!(matches!(
        bad("admin", json!({})).await,
        Err(EngineError::UnknownRole(r)) if r == "admin"
    ));
    assert!(matches!(
        s.engine.max_ttl("admin"),
        Err(EngineError::UnknownRole(_))
    ));
}

#[tokio::test]
async fn missing_moved_and_unreachable_secrets_fail_cleanly() {
    let s = setup();
    // Listed in the role, never stored.
    let params = json!({"secret": "not-stored"});
    let req = request("registries", &params);
    let handle = s.engine.prepare(&req).unwrap();
    let err = s.engine.issue(&req, &handle).await.unwrap_err();
    assert!(matches!(err, EngineError::Config(_)), "{err:?}");

    // A blob copied over another secret's row does not open there.
    let pypi = s.ring.seal("kv", "pypi-token", b"pypi-secret-2").unwrap();
    s.store.put("kv", "not-stored", pypi);
    let err = s.engine.issue(&req, &handle).await.unwrap_err();
    assert!(matches!(err, EngineError::Internal(_)), "{err:?}");
    assert!(!err.to_string().contains("pypi-secret-2"));

    // The store down: the backend's answer passes through.
    *s.store.down.lock().unwrap() = true;
    let params = json!({});
    let req = request("npm", &params);
    let handle = s.engine.prepare(&req).unwrap();
    let err = s.engine.issue(&req, &handle).await.unwrap_err();
    assert!(matches!(err, EngineError::Unavailable(_)), "{err:?}");
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path(), "keys", &format!("k1 {K1}\n"));
    let ctx = context(dir.path());
    let store: Arc<dyn KvBackend> = Arc::new(MemoryStore::default());
    let keys_line = format!("master_key_file = {:?}", keys.display().to_string());

    // The common constructor points at the right one.
    let err = warrant_engines::kv::build("kv", &config(&keys, ROLES), &ctx).unwrap_err();
    assert!(err.contains("build_with_backend"), "{err}");

    let role = |body: &str| format!("[[roles]]\nname = \"r\"\nmax_ttl = \"1h\"\n{body}");
    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                "{keys_line}\nmaster_key = \"x\"\n{}",
                role("secrets = [\"a\"]")
            ),
            "unknown field `master_key`",
        ),
        (
            role("secrets = [\"a\"]"),
            "one of `master_key_file` and `master_key_env`",
        ),
        (keys_line.clone(), "no `[[engines.roles]]`"),
        (
            format!("{keys_line}\n{}", role("secrets = []")),
            "role `r`: `secrets` must name at least one secret",
        ),
        (
            format!("{keys_line}\n{}", role("secrets = [\"NPM_TOKEN\"]")),
            "role `r`: `secrets`:",
        ),
        (
            format!("{keys_line}\n{}", role("secrets = [\"a\", \"a\"]")),
            "lists `a` twice",
        ),
        (
            format!("{keys_line}\n{}\nsecret = \"a\"", role("secrets = [\"a\"]")),
            "role `r`: unknown field `secret`",
        ),
        (
            format!("{keys_line}\n[[roles]]\nname = \"r\"\nsecrets = [\"a\"]"),
            "role `r`: missing field `max_ttl`",
        ),
        (
            format!(
                "{keys_line}\n{}\n{}",
                role("secrets = [\"a\"]"),
                role("secrets = [\"a\"]")
            ),
            "role `r` is defined twice",
        ),
    ];
    for (text, expected) in cases {
        let value: toml::Value =
            toml::from_str(&format!("name = \"kv\"\ntype = \"kv\"\n{text}")).unwrap();
        let err = warrant_engines::kv::build_with_backend("kv", &value, &ctx, store.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted: {text}"));
        assert!(err.contains(expected), "expected `{expected}` in `{err}`");
        assert!(err.starts_with("engine `kv`: "), "{err}");
    }
}
