//! Replay lists exactly the recorded decisions a candidate would change.

use warrant_policy::{Decision, Engine, ReasonCode, replay};

use crate::util::{default_plus, input, operator, privileged, push};

#[test]
fn replay_lists_exactly_the_changed_decisions() {
    let live = Engine::default_pack();
    let requests = vec![
        push("feature/x"),                      // allow -> deny (stricter)
        input("repo.read", "Repo", "acme/api"), // allow -> allow
        privileged(operator(input("deploy", "Environment", "staging"))), // approval -> approval
        push("feature/y"),                      // allow -> deny
        input("repo.force-push", "Repo", "acme/api"), // deny -> deny
    ];
    let records: Vec<_> = requests
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let o = live.decide(&r);
            (i as i64 + 100, r, o)
        })
        .collect();
    let stricter = default_plus(&[(
        "stricter.cedar",
        "@id(\"no-pushes\")\n@reason(\"pushes are frozen\")\nforbid(principal is Run, action == Action::\"repo.push\", resource);\n",
    )]);
    let changes = replay(records.clone(), &stricter);
    let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [100, 103]);
    for c in &changes {
        assert_eq!(c.action, "repo.push");
        assert_eq!(c.run, "run-1");
        assert_eq!(c.before.decision, Decision::Allow);
        assert_eq!(c.after.code, ReasonCode::Forbidden);
        assert_eq!(c.after.policies, ["no-pushes"]);
    }
    // The same engine changes nothing.
    assert!(replay(records, &live).is_empty());
}
