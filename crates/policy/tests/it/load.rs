//! Loading: precise errors with file, line and column; loading is pure.

use warrant_policy::{Decision, Engine, LoadError};

use crate::util::{push, source};

fn errors(files: &[(&str, &str)]) -> Vec<LoadError> {
    Engine::from_sources(files.iter().map(|(n, t)| source(n, t)).collect())
        .expect_err("the load should fail")
}

const OK: &str = "@id(\"read\")\n@reason(\"reads are fine\")\npermit(principal, action in Action::\"class:read\", resource);\n";

#[test]
fn a_parse_error_names_file_line_and_column() {
    let errs = errors(&[
        ("a.cedar", OK),
        (
            "b.cedar",
            "// header\n\n@id(\"x\")\npermt(principal, action, resource);\n",
        ),
    ]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = &errs[0];
    assert_eq!((e.file.as_str(), e.line, e.column), ("b.cedar", 4, 1));
    assert!(e.message.contains("permt"), "{}", e.message);
    assert!(e.to_string().starts_with("b.cedar:4:1: "), "{e}");
}

#[test]
fn a_validation_error_names_file_line_and_column() {
    let errs = errors(&[(
        "c.cedar",
        "@id(\"typo\")\npermit(principal is Run, action == Action::\"repo.push\", resource)\nwhen { context.branch_protectd };\n",
    )]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = &errs[0];
    assert_eq!((e.file.as_str(), e.line, e.column), ("c.cedar", 3, 8));
    assert!(e.message.contains("branch_protectd"), "{}", e.message);
    assert!(
        e.message.contains("policy") || !e.message.contains('#'),
        "{}",
        e.message
    );

    // An unknown action, and a type error.
    let errs = errors(&[(
        "d.cedar",
        "@id(\"a\")\npermit(principal, action == Action::\"repo.pull\", resource);\n\n@id(\"b\")\npermit(principal is Run, action == Action::\"repo.read\", resource)\nwhen { principal.tier == 3 };\n",
    )]);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!((errs[0].line, errs[0].column), (2, 29));
    assert!(errs[0].message.contains("repo.pull"));
    assert_eq!(errs[1].line, 6);
    assert!(!errs[1].message.contains('#'), "{}", errs[1].message);
}

#[test]
fn annotation_errors_point_at_the_policy() {
    let errs = errors(&[
        ("a.cedar", OK),
        (
            "b.cedar",
            concat!(
                "permit(principal, action in Action::\"class:read\", resource);\n", // no id
                "\n@id(\"read\")\npermit(principal, action in Action::\"class:read\", resource);\n", // duplicate
                "\n@id(\"f\")\nforbid(principal, action in Action::\"class:read\", resource);\n", // no reason
                "\n@id(\"g\")\n@approval(\"maybe\")\npermit(principal, action in Action::\"class:read\", resource);\n",
                "\n@id(\"h\")\n@quorum(\"2\")\npermit(principal, action in Action::\"class:read\", resource);\n",
                "\n@id(\"warrant.scope\")\npermit(principal, action in Action::\"class:read\", resource);\n",
            ),
        ),
    ]);
    let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let want = [
        ("b.cedar:1:1:", "no `@id"),
        (
            "b.cedar:3:1:",
            "duplicate policy id `read` (first used at a.cedar:1:1)",
        ),
        ("b.cedar:6:1:", "must say why"),
        ("b.cedar:9:1:", "`@approval(\"maybe\")` is not valid"),
        (
            "b.cedar:13:1:",
            "`@quorum` is only allowed on an approval rule",
        ),
        ("b.cedar:17:1:", "reserved"),
    ];
    assert_eq!(errs.len(), want.len(), "{shown:#?}");
    for ((loc, msg), got) in want.iter().zip(&shown) {
        assert!(
            got.starts_with(loc) && got.contains(msg),
            "{got} !~ {loc} {msg}"
        );
    }
}

#[test]
fn templates_are_refused() {
    let errs = errors(&[(
        "t.cedar",
        "@id(\"t\")\npermit(principal == ?principal, action, resource);\n",
    )]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].message.contains("templates"));
}

#[test]
fn a_failed_load_leaves_the_serving_engine_unchanged() {
    let serving = Engine::default_pack();
    let before = serving.fingerprint().to_owned();
    let mut bad = serving.sources().to_vec();
    bad.push(source(
        "zz.cedar",
        "@id(\"x\")\npermit(principal, action, resource",
    ));
    assert!(Engine::from_sources(bad).is_err());
    assert_eq!(serving.fingerprint(), before);
    assert_eq!(serving.decide(&push("feature/x")).decision, Decision::Allow);
}

#[test]
fn load_dir_reads_only_cedar_files_sorted_and_replaces_the_default_pack() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("b.cedar"),
        "@id(\"b\")\npermit(principal, action in Action::\"class:change\", resource);\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("a.cedar"), OK).unwrap();
    std::fs::write(dir.path().join("notes.md"), "not a policy").unwrap();
    std::fs::create_dir(dir.path().join("nested")).unwrap();
    std::fs::write(dir.path().join("nested/c.cedar"), "garbage").unwrap();
    let e = Engine::load_dir(dir.path()).unwrap();
    assert_eq!(e.policy_ids(), ["read", "b"]);
    // No tier policies, no approval rules: only what the directory holds.
    let o = e.decide(&push("feature/x"));
    assert_eq!(o.decision, Decision::Allow);
    assert_eq!(o.policies, ["b"]);

    // The same files elsewhere have the same fingerprint; a change changes it.
    let other = tempfile::tempdir().unwrap();
    for f in ["a.cedar", "b.cedar"] {
        std::fs::copy(dir.path().join(f), other.path().join(f)).unwrap();
    }
    assert_eq!(
        Engine::load_dir(other.path()).unwrap().fingerprint(),
        e.fingerprint()
    );
    std::fs::write(other.path().join("a.cedar"), format!("{OK}\n")).unwrap();
    assert_ne!(
        Engine::load_dir(other.path()).unwrap().fingerprint(),
        e.fingerprint()
    );
    assert_eq!(e.fingerprint().len(), 64);

    // A broken file is named with its path.
    std::fs::write(
        dir.path().join("c.cedar"),
        "@id(\"c\")\npermit(principal, action, resource) when { 1 };\n",
    )
    .unwrap();
    let errs = Engine::load_dir(dir.path()).unwrap_err();
    assert!(errs[0].file.ends_with("c.cedar"), "{errs:?}");
    assert_eq!(
        errs.iter().filter(|e| e.line == 2).count(),
        errs.len(),
        "{errs:?}"
    );

    let empty = tempfile::tempdir().unwrap();
    assert!(Engine::load_dir(empty.path()).is_err());
    assert!(Engine::load_dir(&empty.path().join("missing")).is_err());
}

#[test]
fn the_default_pack_files_load_from_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in warrant_policy::DEFAULT_PACK {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let e = Engine::load_dir(dir.path()).unwrap();
    assert_eq!(e.fingerprint(), Engine::default_pack().fingerprint());
    assert_eq!(e.policy_ids(), Engine::default_pack().policy_ids());
}
