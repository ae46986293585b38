use std::os::unix::fs::PermissionsExt as _;

use super::*;

fn ctx(dir: &Path) -> EngineContext {
    EngineContext {
        data_dir: dir.to_owned(),
        signing_key: Arc::new(warrant_crypto::SigningKey::generate().unwrap()),
        issuer: "https://warrant.test".into(),
    }
}

fn config(text: &str) -> toml::Value {
    toml::from_str(text).unwrap()
}

const ROLE: &str = r#"
name = "ops"
type = "ssh"
[[roles]]
name = "deploy"
principals = ["deploy", "www"]
"#;

fn build_err(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    build_ssh("ops", &config(text), &ctx(dir.path())).unwrap_err()
}

#[test]
fn the_ca_is_generated_once_with_private_permissions_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let a = build_ssh("ops", &config(ROLE), &ctx(dir.path())).unwrap();
    let ca = dir.path().join("engines/ops/ca");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ca), 0o600);
    assert_eq!(mode(&dir.path().join("engines/ops")), 0o700);
    assert!(
        a.ca_public_key().starts_with("ssh-ed25519 AAAA"),
        "{}",
        a.ca_public_key()
    );
    assert!(a.ca_fingerprint().starts_with("SHA256:"));
    let b = build_ssh("ops", &config(ROLE), &ctx(dir.path())).unwrap();
    assert_eq!(a.ca_public_key(), b.ca_public_key());

    // A CA key that others can read is refused.
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = build_ssh("ops", &config(ROLE), &ctx(dir.path())).unwrap_err();
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn a_configured_ca_key_file_must_exist() {
    let err = build_err(&format!("ca_key_file = \"/nonexistent/ca\"\n{ROLE}"));
    assert!(err.contains("`/nonexistent/ca`"), "{err}");
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let err = build_err(&format!("{ROLE}principal = \"x\"\n"));
    assert!(
        err.contains("role `deploy`") && err.contains("`principal`"),
        "{err}"
    );
    let err = build_err(&format!("ca_key = \"x\"\n{ROLE}"));
    assert!(err.contains("`ca_key`"), "{err}");
    let err = build_err(&format!(
        "{ROLE}critical_options = {{ permit-pty = \"\" }}\n"
    ));
    assert!(err.contains("`permit-pty`"), "{err}");
}

#[test]
fn roles_are_checked() {
    for (extra, expected) in [
        ("", ""),
        (
            "extensions = [\"permit-everything\"]",
            "unknown extension `permit-everything`",
        ),
        (
            "extensions = [\"permit-pty\", \"permit-pty\"]",
            "listed twice",
        ),
        ("key_types = [\"dsa\"]", "unknown key type `dsa`"),
        ("key_types = []", "must not be empty"),
        ("max_ttl = \"0s\"", "`max_ttl`"),
        (
            "critical_options = { source-address = \"10.0.0.0/33\" }",
            "`10.0.0.0/33` is not an address",
        ),
        (
            "critical_options = { source-address = \"10.0.0.1, example.com\" }",
            "`example.com` is not an address",
        ),
        (
            "critical_options = { force-command = \" \" }",
            "force-command",
        ),
    ] {
        let text = format!("{ROLE}{extra}\n");
        let dir = tempfile::tempdir().unwrap();
        let got = build_ssh("ops", &config(&text), &ctx(dir.path()));
        if expected.is_empty() {
            got.unwrap();
        } else {
            let err = got.unwrap_err();
            assert!(err.contains(expected), "{extra}: {err}");
        }
    }
    let err = build_err("[[roles]]\nname = \"all\"\nprincipals = []\n");
    assert!(err.contains("at least one principal"), "{err}");
    let err = build_err("[[roles]]\nname = \"a\"\nprincipals = [\"x,y\"]\n");
    assert!(err.contains("without spaces or commas"), "{err}");
    let err = build_err(&format!(
        "{ROLE}{}",
        ROLE.replace("name = \"ops\"\ntype = \"ssh\"", "")
    ));
    assert!(err.contains("defined twice"), "{err}");
    let err = build_err("[[roles]]\nname = \"Bad Name\"\nprincipals = [\"x\"]\n");
    assert!(err.contains("role name"), "{err}");
}

#[test]
fn source_addresses_are_normalised() {
    assert_eq!(
        check_source_address("127.0.0.1/32, ::1 ,10.1.2.3").unwrap(),
        "127.0.0.1/32,::1,10.1.2.3"
    );
}

#[test]
fn serials_are_deterministic_nonzero_and_fit_a_signed_integer() {
    let a = uuid::Uuid::now_v7();
    let b = uuid::Uuid::now_v7();
    assert_eq!(serial_for_lease(a), serial_for_lease(a));
    assert_ne!(serial_for_lease(a), serial_for_lease(b));
    for id in [a, b, uuid::Uuid::nil(), uuid::Uuid::max()] {
        let s = serial_for_lease(id);
        assert!(s != 0 && i64::try_from(s).is_ok());
    }
}

#[test]
fn rsa_sizes_are_counted_in_bits() {
    let key = |n: &[u8]| {
        KeyData::Rsa(ssh_key::public::RsaPublicKey {
            e: ssh_key::Mpint::from_positive_bytes(&[1, 0, 1]).unwrap(),
            n: ssh_key::Mpint::from_positive_bytes(n).unwrap(),
        })
    };
    let mut n = vec![0xffu8; 384];
    assert_eq!(rsa_bits(&key(&n)), 3072);
    n[0] = 0x7f;
    assert_eq!(rsa_bits(&key(&n)), 3071);
    assert_eq!(rsa_bits(&key(&[0x01; 256])), 2041);
}
