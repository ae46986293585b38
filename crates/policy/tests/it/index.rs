//! The index selects only the policies that can apply to the action and
//! principal type; decisions must not change because of it.

use proptest::prelude::*;
use warrant_policy::Engine;
use warrant_policy::bench::{Rng, Universe, random_input, synthetic_workload};

fn engines() -> &'static [Engine] {
    static E: std::sync::OnceLock<Vec<Engine>> = std::sync::OnceLock::new();
    E.get_or_init(|| {
        vec![
            Engine::default_pack(),
            synthetic_workload(200, 1_000, 0, 7).unwrap().engine,
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn indexed_and_unindexed_decisions_agree(seed in any::<u64>(), out_of_scope in any::<bool>()) {
        let mut rng = Rng::new(seed);
        let mut input = random_input(&mut rng, &Universe::of(1_000));
        if out_of_scope {
            input.scope.repos.clear();
        }
        for e in engines() {
            prop_assert_eq!(e.decide(&input), e.decide_unindexed(&input));
        }
    }
}

#[test]
fn the_synthetic_workload_exercises_every_outcome() {
    let w = synthetic_workload(200, 1_000, 2_000, 1).unwrap();
    assert_eq!(w.engine.policy_ids().len(), 202);
    let mut codes = std::collections::BTreeSet::new();
    for i in &w.inputs {
        let o = w.engine.decide(i);
        assert_eq!(o, w.engine.decide_unindexed(i));
        codes.insert(o.code.as_str());
    }
    for c in [
        "allowed",
        "approval_required",
        "forbidden",
        "not_permitted_for_agent",
        "delegation_ceiling",
    ] {
        assert!(codes.contains(c), "{c} not seen: {codes:?}");
    }
}
