//! Integration tests: sign and verify approval attestations through the
//! public API, tamper with them, and check them with an independent DSSE
//! implementation (Python `securesystemslib`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod python;
mod verify;

use warrant_attest::{
    ApprovalPredicate, Approver, Resource, ResourceDescriptor, Statement, Subject,
};

pub const COMMIT: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
pub const OTHER_COMMIT: &str = "5b825dc642cb6eb9a060e54bf8d69288fbee4904";
pub const DIGEST: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub fn commit() -> Subject {
    Subject::parse(&format!("sha1:{COMMIT}")).unwrap()
}

pub fn predicate() -> ApprovalPredicate {
    ApprovalPredicate {
        approval_id: "01962a5e-7f3c-7a1b-9c2d-3e4f5a6b7c8d".into(),
        action: "deploy".into(),
        resource: Resource {
            kind: "environment".into(),
            id: "prod".into(),
        },
        request_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        context: serde_json::json!({"commit": COMMIT, "environment": "prod"})
            .as_object()
            .unwrap()
            .clone(),
        task: "01962a5e-0000-7000-8000-000000000001".into(),
        run: Some("01962a5e-0000-7000-8000-000000000002".into()),
        agent: "claude".into(),
        delegator: "alice".into(),
        approvers: vec![Approver {
            name: "bob".into(),
            reason: "release 1.4 signed off".into(),
            at: "2026-03-01T10:05:00Z".parse().unwrap(),
        }],
        requested_at: "2026-03-01T10:00:00Z".parse().unwrap(),
        approved_at: "2026-03-01T10:05:00Z".parse().unwrap(),
        expires_at: "2026-03-01T10:30:00Z".parse().unwrap(),
        policies: vec!["deploy-prod-needs-approval".into()],
        quorum: 1,
    }
}

/// An approval for [`COMMIT`] in `acme/api` and the image [`DIGEST`].
pub fn statement() -> Statement {
    let image = Subject::sha256_hex(DIGEST).unwrap();
    Statement::approval(
        vec![
            commit().descriptor("acme/api"),
            image.descriptor("registry.example/acme/api"),
        ],
        predicate(),
    )
}

pub fn descriptors(subjects: &[Subject]) -> Vec<ResourceDescriptor> {
    subjects.iter().map(|s| s.descriptor("x")).collect()
}
