//! `warrant policy validate|test|pack` with the real binary: offline
//! commands on policy directories.

use std::path::Path;

use crate::util::TestCommand;

fn warrant(home: &Path) -> TestCommand {
    let mut c = TestCommand::new(home);
    c.args(["--output", "table"]);
    c
}

/// `warrant policy pack --out DIR` into a fresh directory.
fn pack(home: &Path, dir: &Path) {
    let out = warrant(home)
        .args(["policy", "pack", "--out"])
        .arg(dir)
        .stdout();
    assert!(out.contains("wrote "), "{out}");
}

#[test]
fn pack_writes_a_pack_that_validates_and_passes_its_tests() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("policies");
    pack(home.path(), &dir);
    assert!(dir.join("agents.cedar").is_file());
    assert!(dir.join("tests/default.toml").is_file());

    let out = warrant(home.path())
        .args(["policy", "validate"])
        .arg(&dir)
        .stdout();
    assert!(out.starts_with("ok: 16 policies (fingerprint "), "{out}");

    let out = warrant(home.path())
        .args(["policy", "test"])
        .arg(&dir)
        .stdout();
    assert!(out.contains("ok     "), "{out}");
    assert!(!out.contains("FAILED"), "{out}");
    let summary = out.lines().last().unwrap();
    assert!(summary.ends_with(" passed, 0 failed"), "{out}");

    // Packing again refuses to overwrite.
    let err = warrant(home.path())
        .args(["policy", "pack", "--out"])
        .arg(&dir)
        .fails_with(1);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn the_shipped_tests_pass_without_a_directory() {
    let home = tempfile::tempdir().unwrap();
    let out = warrant(home.path()).args(["policy", "test"]).stdout();
    assert!(out.trim_end().ends_with(" passed, 0 failed"), "{out}");
    let json = TestCommand::new(home.path())
        .args(["policy", "test"])
        .json();
    assert_eq!(json["failed"], 0);
    assert!(json["passed"].as_u64().unwrap() >= 20);
}

#[test]
fn validate_reports_every_error_with_file_and_line() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("policies");
    pack(home.path(), &dir);
    std::fs::write(
        dir.join("broken.cedar"),
        "// a typo in the effect\n@id(\"x\")\npermt(principal, action, resource);\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("invalid.cedar"),
        "@id(\"y\")\npermit(principal is Run, action == Action::\"repo.push\", resource)\nwhen { context.branch_protectd };\n",
    )
    .unwrap();
    let err = warrant(home.path())
        .args(["policy", "validate"])
        .arg(&dir)
        .fails_with(1);
    let broken = format!("{}:3:1: ", dir.join("broken.cedar").display());
    let invalid = format!("{}:3:8: ", dir.join("invalid.cedar").display());
    assert!(err.contains(&broken), "{err}");
    assert!(err.contains(&invalid), "{err}");
    assert!(err.contains("branch_protectd"), "{err}");
    assert!(
        err.contains("error: the policy set is invalid: 2 errors"),
        "{err}"
    );

    // `policy test` refuses an invalid set too.
    let err = warrant(home.path())
        .args(["policy", "test"])
        .arg(&dir)
        .fails_with(1);
    assert!(err.contains(&broken), "{err}");
}

#[test]
fn a_broken_case_fails_with_a_diff_and_a_non_zero_exit() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("policies");
    pack(home.path(), &dir);
    std::fs::write(
        dir.join("tests/broken.toml"),
        r#"
[[case]]
name = "a read-only agent can push (wrong on purpose)"
expect = "allow"
code = "allowed"
[case.input]
action = "repo.push"
resource = { type = "Repo", id = "acme/api" }
principal = { tier = "read-only" }
context = { branch = "feature/x" }
"#,
    )
    .unwrap();
    let out = warrant(home.path())
        .args(["policy", "test"])
        .arg(&dir)
        .output();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("FAILED ")
            && stdout.contains("a read-only agent can push (wrong on purpose)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  decision:\n    - expected: allow\n    + actual:   deny"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("  code:\n    - expected: allowed\n    + actual:   not_permitted_for_agent"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with(" passed, 1 failed"), "{stdout}");
    assert!(stderr.contains("error: 1 policy test failed"), "{stderr}");
}
