//! Policy test files: parsing, running, and the report.

use warrant_policy::Engine;
use warrant_policy::cases::{self, CaseRequest};

const PASSING: &str = r#"
[[case]]
name = "propose may push"
expect = "allow"
policies = ["agent.tier.change", "user.read-change"]
[case.input]
action = "repo.push"
resource = { type = "Repo", id = "acme/api" }
context = { branch = "feature/x" }
"#;

const BROKEN: &str = r#"
[[case]]
name = "read-only agent cannot push"
expect = "allow"
code = "allowed"
[case.input]
action = "repo.push"
resource = { type = "Repo", id = "acme/api" }
principal = { tier = "read-only" }
context = { branch = "feature/x" }
"#;

#[test]
fn an_omitted_scope_covers_exactly_the_request() {
    let f = cases::parse("t.toml", PASSING).unwrap();
    let CaseRequest::Decide(i) = &f.cases[0].request else {
        panic!("not a decide case")
    };
    assert_eq!(i.scope.actions, ["repo.push"]);
    assert_eq!(i.scope.repos, ["acme/api"]);
    assert_eq!(i.scope.branches, ["feature/x"]);
    assert!(i.scope.environments.is_empty());
    assert_eq!(i.principal.user, "alice");
}

#[test]
fn a_broken_case_fails_with_a_readable_diff() {
    let files = vec![
        cases::parse("ok.toml", PASSING).unwrap(),
        cases::parse("broken.toml", BROKEN).unwrap(),
    ];
    let report = cases::run(&Engine::default_pack(), &files);
    assert_eq!((report.passed(), report.failed()), (1, 1));
    let text = report.render();
    assert!(
        text.contains("ok     ok.toml :: propose may push"),
        "{text}"
    );
    assert!(
        text.contains("FAILED broken.toml :: read-only agent cannot push"),
        "{text}"
    );
    assert!(
        text.contains("  decision:\n    - expected: allow\n    + actual:   deny"),
        "{text}"
    );
    assert!(
        text.contains("    - expected: allowed\n    + actual:   not_permitted_for_agent"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("1 passed, 1 failed"), "{text}");
}

#[test]
fn malformed_test_files_are_load_errors_with_a_line() {
    let bad = "[[case]]\nname = \"x\"\nexpect = \"alow\"\n[case.input]\naction = \"repo.read\"\nresource = { type = \"Repo\", id = \"a/b\" }\n";
    let errs = cases::parse("bad.toml", bad).unwrap_err();
    assert_eq!(errs[0].line, 3, "{errs:?}");
    let unknown = "[[case]]\nname = \"x\"\nexpect = \"allow\"\nsurprise = 1\n[case.input]\naction = \"repo.read\"\nresource = { type = \"Repo\", id = \"a/b\" }\n";
    let errs = cases::parse("bad.toml", unknown).unwrap_err();
    assert!(errs[0].message.contains("surprise"), "{errs:?}");
    let neither = "[[case]]\nname = \"x\"\nexpect = \"allow\"\n";
    let errs = cases::parse("bad.toml", neither).unwrap_err();
    assert!(errs[0].message.contains("exactly one"), "{errs:?}");
}

#[test]
fn load_dir_reads_the_tests_folder() {
    let dir = tempfile::tempdir().unwrap();
    assert!(cases::load_dir(dir.path()).unwrap().is_empty());
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::write(dir.path().join("tests/a.toml"), PASSING).unwrap();
    std::fs::write(dir.path().join("tests/b.toml"), BROKEN).unwrap();
    let files = cases::load_dir(dir.path()).unwrap();
    assert_eq!(files.len(), 2);
    assert!(files[0].name.ends_with("a.toml"));
}
