//! Each path of the decision procedure, with the default pack unless a
//! test needs a policy of its own.

use warrant_policy::{Decision, Engine, ReasonCode, SCOPE_POLICY_ID};

use crate::util::{default_plus, input, operator, privileged, push, rescope};

#[test]
fn allow_within_scope_names_the_permitting_policies() {
    let o = Engine::default_pack().decide(&push("feature/x"));
    assert_eq!(o.decision, Decision::Allow, "{o:?}");
    assert_eq!(o.code, ReasonCode::Allowed);
    assert_eq!(o.policies, ["agent.tier.change", "user.read-change"]);
    assert_eq!(
        o.reasons,
        [
            "`propose` and `privileged` agents may make changes",
            "every user may read and make changes"
        ]
    );
    assert_eq!(o.risk, 20);
    assert!(o.errors.is_empty());
}

#[test]
fn scope_misses_name_the_dimension_and_value() {
    let e = Engine::default_pack();
    let miss = |i| {
        let o = e.decide(&i);
        assert_eq!(o.decision, Decision::Deny, "{o:?}");
        assert_eq!(o.code, ReasonCode::OutOfScope, "{o:?}");
        assert_eq!(o.policies, [SCOPE_POLICY_ID]);
        o.reasons.join(" ")
    };

    let mut i = push("feature/x");
    i.scope.repos = vec!["acme/web".into()];
    assert_eq!(miss(i), "repo `acme/api` is not in the task's scope");

    let mut i = push("main");
    i.scope.branches = vec!["feature/*".into()];
    assert_eq!(miss(i), "branch `main` is not in the task's scope");

    // A push must name its branch.
    let mut i = push("feature/x");
    i.context.branch = None;
    assert!(miss(i).contains("no branch"));

    // A merge checks the branch merged into too.
    let mut i = input("repo.merge", "Repo", "acme/api");
    i.context.branch = Some("feature/x".into());
    i.context.base_branch = Some("main".into());
    let mut i = rescope(i);
    i.scope.branches = vec!["feature/*".into()];
    assert_eq!(miss(i), "base branch `main` is not in the task's scope");

    let mut i = privileged(operator(input("deploy", "Environment", "production")));
    i.scope.environments = vec!["staging".into()];
    assert_eq!(
        miss(i),
        "environment `production` is not in the task's scope"
    );

    let mut i = input("mcp.call", "Tool", "github/delete_repo");
    i.scope.tools = vec!["github/create_pull_request".into()];
    assert_eq!(
        miss(i),
        "tool `github/delete_repo` is not in the task's scope"
    );

    let mut i = privileged(operator(input("secret.read", "Secret", "aws-root")));
    i.scope.secrets = vec!["db-password".into()];
    assert_eq!(miss(i), "secret `aws-root` is not in the task's scope");

    let mut i = push("feature/x");
    i.scope.actions = vec!["repo.read".into()];
    assert_eq!(miss(i), "action `repo.push` is not in the task's scope");

    // An empty list covers nothing.
    let mut i = push("feature/x");
    i.scope.branches.clear();
    assert_eq!(miss(i), "branch `feature/x` is not in the task's scope");
}

#[test]
fn no_policy_can_widen_the_scope() {
    let e = default_plus(&[(
        "wide.cedar",
        "@id(\"everything\")\npermit(principal, action, resource);\n",
    )]);
    let mut i = push("feature/x");
    i.scope.repos = vec!["acme/web".into()];
    assert_eq!(e.decide(&i).code, ReasonCode::OutOfScope);
}

#[test]
fn a_read_only_agent_cannot_push() {
    let mut i = push("feature/x");
    i.principal.tier = warrant_core::Tier::ReadOnly;
    let o = Engine::default_pack().decide(&i);
    assert_eq!(o.decision, Decision::Deny);
    assert_eq!(o.code, ReasonCode::NotPermittedForAgent);
    assert_eq!(
        o.policies,
        vec![warrant_policy::DEFAULT_DENY_POLICY_ID.to_owned()]
    );
    assert!(o.reasons[0].contains("tier `read-only`"), "{:?}", o.reasons);
}

#[test]
fn the_delegation_ceiling_denies_what_the_human_may_not_do() {
    // The agent's profile permits a deploy; alice (no operators group) may not.
    let i = privileged(input("deploy", "Environment", "staging"));
    let o = Engine::default_pack().decide(&i);
    assert_eq!(o.decision, Decision::Deny, "{o:?}");
    assert_eq!(o.code, ReasonCode::DelegationCeiling);
    assert!(o.reasons[0].contains("`alice`"), "{:?}", o.reasons);
    // The same request for an operator passes the ceiling.
    let o = Engine::default_pack().decide(&operator(i));
    assert_eq!(o.code, ReasonCode::ApprovalRequired, "{o:?}");
}

#[test]
fn a_forbid_denies_for_the_run_and_for_the_user() {
    let mut i = privileged(operator(input("secret.read", "Secret", "db-password")));
    i.run.tainted = true;
    let o = Engine::default_pack().decide(&i);
    assert_eq!(o.decision, Decision::Deny);
    assert_eq!(o.code, ReasonCode::Forbidden);
    assert_eq!(o.policies, ["guard.tainted-secrets"]);
    assert_eq!(
        o.reasons,
        ["a run that has ingested untrusted content may not read secrets or mint credentials"]
    );

    // A forbid on the user principal.
    let e = default_plus(&[(
        "freeze.cedar",
        "@id(\"freeze.alice\")\n@reason(\"alice is on leave\")\nforbid(principal == User::\"alice\", action, resource);\n",
    )]);
    let o = e.decide(&push("feature/x"));
    assert_eq!(o.code, ReasonCode::Forbidden);
    assert_eq!(o.policies, ["freeze.alice"]);
    assert_eq!(o.reasons, ["alice is on leave"]);
}

#[test]
fn approval_rules_require_approval_with_a_quorum() {
    let e = Engine::default_pack();
    let i = privileged(operator(input("deploy", "Environment", "staging")));
    let o = e.decide(&i);
    assert_eq!(o.decision, Decision::ApprovalRequired);
    assert_eq!(o.code, ReasonCode::ApprovalRequired);
    assert_eq!(o.policies, ["approval.deploy"]);
    assert_eq!(o.reasons, ["every deploy needs a human approval"]);
    assert_eq!(o.quorum, None);

    let mut i = privileged(operator(input("deploy", "Environment", "production")));
    i.context.production = true;
    let o = e.decide(&i);
    assert_eq!(o.decision, Decision::ApprovalRequired);
    assert_eq!(
        o.policies,
        ["approval.deploy", "approval.deploy.production"]
    );
    assert_eq!(o.quorum, Some(2));
    assert_eq!(o.risk, 70);
}

#[test]
fn taint_requires_approval_for_external_writes() {
    let e = Engine::default_pack();
    let mut i = push("feature/x");
    i.run.tainted = true;
    assert_eq!(e.decide(&i).code, ReasonCode::ApprovalRequired);
    // Untrusted content in this very request counts too.
    let mut i = push("feature/x");
    i.context.untrusted_input = true;
    assert_eq!(e.decide(&i).code, ReasonCode::ApprovalRequired);
    assert!(i.taints_run());
    assert!(input("web.fetch", "Tool", "web").taints_run());
    assert!(!push("feature/x").taints_run());
}

#[test]
fn an_evaluation_error_denies_instead_of_being_skipped() {
    // Validates (Long + Long is well typed) but overflows at run time
    // whenever the risk score is positive. Cedar alone would skip the
    // erroring forbid and allow.
    let e = default_plus(&[(
        "overflow.cedar",
        "@id(\"overflow\")\n@reason(\"never mind\")\nforbid(principal is Run, action, resource)\nwhen { context.risk_score + 9223372036854775807 < 0 };\n",
    )]);
    let o = e.decide(&push("feature/x"));
    assert_eq!(o.decision, Decision::Deny, "{o:?}");
    assert_eq!(o.code, ReasonCode::EvaluationError);
    assert_eq!(o.policies, ["overflow"]);
    assert_eq!(o.errors.len(), 1);
    assert!(o.errors[0].contains("overflow"), "{:?}", o.errors);
    // A request with risk 0 does not overflow, and is allowed.
    let read = input("repo.read", "Repo", "acme/api");
    assert_eq!(e.decide(&read).decision, Decision::Allow);
    // An erroring approval rule fails closed as well.
    let e = default_plus(&[(
        "overflow.cedar",
        "@id(\"appr.overflow\")\n@approval(\"required\")\npermit(principal is Run, action, resource)\nwhen { context.risk_score * 9223372036854775807 > 0 };\n",
    )]);
    assert_eq!(
        e.decide(&push("feature/x")).code,
        ReasonCode::EvaluationError
    );
}

#[test]
fn unknown_actions_and_wrong_resource_types_are_denied() {
    let e = Engine::default_pack();
    let o = e.decide(&input("repo.force-push", "Repo", "acme/api"));
    assert_eq!(o.decision, Decision::Deny);
    assert_eq!(o.code, ReasonCode::UnknownAction);
    // `approve` is in the schema but not an action agents can request.
    let o = e.decide(&input("approve", "Repo", "acme/api"));
    assert_eq!(o.code, ReasonCode::UnknownAction);
    let o = e.decide(&input("repo.push", "Secret", "db"));
    assert_eq!(o.code, ReasonCode::InvalidRequest);
    assert_eq!(o.reasons, ["`repo.push` applies to Repo, not to `Secret`"]);
    let o = e.decide(&input("repo.read", "Approval", "x"));
    assert_eq!(o.code, ReasonCode::InvalidRequest);
}

#[test]
fn policies_read_the_task_type_history_and_risk() {
    let e = default_plus(&[(
        "extra.cedar",
        r#"@id("no-deps-pushes-after-secrets")
@reason("dependency updates that touched secrets may not push")
forbid(principal is Run, action == Action::"repo.push", resource)
when { principal.task has type && principal.task.type == "dependency-update" && context.history.contains("secret") };

@id("risk-cap")
@reason("risk above 60 is refused")
forbid(principal is Run, action, resource) when { context.risk_score > 60 };
"#,
    )]);
    let mut i = push("feature/x");
    i.principal.task_type = Some("dependency-update".into());
    assert_eq!(e.decide(&i).decision, Decision::Allow);
    i.run.history = vec!["read".into(), "secret".into()];
    let o = e.decide(&i);
    assert_eq!(o.policies, ["no-deps-pushes-after-secrets"]);

    let mut i = privileged(operator(input("delete", "Repo", "acme/api")));
    i.context.branch_protected = true;
    let o = e.decide(&i);
    assert_eq!(o.risk, 75);
    assert_eq!(o.policies, ["risk-cap"]);
}

#[test]
fn who_may_approve() {
    use warrant_policy::ApproveInput;
    let e = Engine::default_pack();
    let request = privileged(operator(input("deploy", "Environment", "staging")));
    let approve = |who: &str, groups: &[&str], admin: bool| {
        e.decide_approve(&ApproveInput {
            approver: who.into(),
            approver_groups: groups.iter().map(|g| g.to_string()).collect(),
            approver_admin: admin,
            approval_id: "0192f5a4-0000-7000-8000-000000000001".into(),
            request: request.clone(),
        })
    };
    assert_eq!(
        approve("bob", &["approvers"], false).decision,
        Decision::Allow
    );
    assert_eq!(approve("root", &[], true).decision, Decision::Allow);
    assert_eq!(
        approve("bob", &["dev"], false).code,
        ReasonCode::NotAnApprover
    );
    // alice delegated the task: separation of duties.
    let o = approve("alice", &["approvers"], true);
    assert_eq!(o.code, ReasonCode::Forbidden);
    assert_eq!(o.policies, ["approve.separation-of-duties"]);
}

#[test]
fn the_engine_is_cheap_to_share_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Engine>();
    let e = Engine::default_pack();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let e = e.clone();
            std::thread::spawn(move || e.decide(&push("feature/x")).decision)
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), Decision::Allow);
    }
}
