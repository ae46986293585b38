//! Unit tests that need the crate's internals.

use std::collections::BTreeSet;
use std::str::FromStr as _;

use cedar_policy::{EntityTypeName, EntityUid};
use proptest::prelude::*;

use super::*;
use crate::bench::{Rng, Universe, random_input};

fn names(it: impl Iterator<Item = impl ToString>) -> BTreeSet<String> {
    it.map(|n| n.to_string()).collect()
}

/// The Rust catalog and the Cedar schema must describe the same actions:
/// same names, same risk class (action group), same resource types, and
/// both principal types.
#[test]
fn the_catalog_and_the_schema_agree() {
    let schema = load::schema().unwrap();
    let actions = schema.action_entities().unwrap();
    let declared: BTreeSet<String> = schema
        .actions()
        .map(|a| a.id().unescaped().to_owned())
        .filter(|a| !a.starts_with("class:"))
        .collect();
    let mut expected: BTreeSet<String> = CATALOG.iter().map(|a| a.name.to_owned()).collect();
    expected.insert(catalog::APPROVE.to_owned());
    assert_eq!(declared, expected);

    let groups: BTreeSet<String> = schema
        .action_groups()
        .map(|a| a.id().unescaped().to_owned())
        .collect();
    let classes: BTreeSet<String> = RiskClass::ALL
        .iter()
        .map(|c| c.group().to_owned())
        .collect();
    assert_eq!(groups, classes);

    for spec in CATALOG {
        let uid = load::action_uid(spec.name).unwrap();
        let parents: Vec<String> = actions
            .ancestors(&uid)
            .unwrap()
            .map(|a| a.id().unescaped().to_owned())
            .collect();
        assert_eq!(
            parents,
            vec![spec.class.group().to_owned()],
            "{}",
            spec.name
        );
        let resources = names(schema.resources_for_action(&uid).unwrap());
        let want = names(spec.resources.iter().map(|r| r.as_str()));
        assert_eq!(resources, want, "{}", spec.name);
        let principals = names(schema.principals_for_action(&uid).unwrap());
        assert_eq!(principals, names(["Run", "User"].iter()), "{}", spec.name);
    }
    let approve = load::action_uid(catalog::APPROVE).unwrap();
    assert_eq!(
        names(schema.principals_for_action(&approve).unwrap()),
        names(["User"].iter())
    );
    assert!(catalog::action(catalog::APPROVE).is_none());
}

/// The index treats `principal in E` as possible for a Run when E is a Run
/// or an Agent, and for a User when E is a User or a Group: that must be
/// exactly what the schema allows.
#[test]
fn the_index_principal_hierarchy_matches_the_schema() {
    let schema = load::schema().unwrap();
    for (t, want) in [("Run", vec!["Agent"]), ("User", vec!["Group"])] {
        let ty = EntityTypeName::from_str(t).unwrap();
        let got: Vec<String> = schema
            .ancestors(&ty)
            .unwrap()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(got, want, "{t}");
    }
    let _ = EntityUid::from_str("Run::\"x\"").unwrap();
}

#[test]
fn the_default_pack_loads_and_its_shipped_tests_pass() {
    let engine = Engine::default_pack();
    assert!(engine.policy_ids().len() >= 15, "{:?}", engine.policy_ids());
    let files = cases::default_tests().unwrap();
    let report = cases::run(&engine, &files);
    assert!(report.results.len() >= 20);
    assert_eq!(report.failed(), 0, "{}", report.render());
}

#[test]
fn every_default_policy_has_a_reason() {
    let engine = Engine::default_pack();
    for id in engine.policy_ids() {
        assert!(engine.reason_of(id).is_some(), "{id}");
    }
}

#[test]
fn line_and_column_are_one_based_and_count_characters() {
    let text = "ab\ncdé\nfg";
    assert_eq!(load::line_col(text, 0), (1, 1));
    assert_eq!(load::line_col(text, 3), (2, 1));
    assert_eq!(load::line_col(text, 7), (2, 4)); // after the two-byte é
    assert_eq!(load::line_col(text, 8), (3, 1));
    assert_eq!(load::line_col(text, 999), (3, 3));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// What the engine hands Cedar conforms to the schema: entities,
    /// principal/resource types and the context record.
    #[test]
    fn requests_conform_to_the_schema(seed in any::<u64>()) {
        let engine = Engine::default_pack();
        let input = random_input(&mut Rng::new(seed), &Universe::of(1_000));
        prop_assert_eq!(engine.check_request_against_schema(&input), Ok(()));
    }
}
