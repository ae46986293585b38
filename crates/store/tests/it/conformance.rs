//! The cases every backend must pass. Each takes a fresh, empty store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use warrant_audit::{Checkpoint, Event, Hash, NewEvent, Report, Verifier};
use warrant_core::{Agent, EndReason, Name, Scope, Task, TaskId, TaskState, Tier, User};
use warrant_crypto::SigningKey;
use warrant_store::{
    Approval, ApprovalFilter, ApprovalState, AuditFilter, DecisionWrite, GroupCommitter, Lease,
    LeaseFilter, LeaseState, PublicKeyRecord, RevocationKind, Run, RunState, SealedSecret, Store,
    StoreError, TaskClaim, TaskFilter, UsedAssertion, Verdict, Vote,
};

use crate::Db;

// --- fixtures --------------------------------------------------------------

/// A fixed point in time, whole microseconds (the precision the store keeps).
fn t0() -> Timestamp {
    Timestamp::from_second(1_900_000_000).unwrap()
}

fn mins(n: i64) -> SignedDuration {
    SignedDuration::from_mins(n)
}

fn name(s: &str) -> Name {
    Name::parse("name", s).unwrap()
}

fn token(n: u8) -> Hash {
    warrant_crypto::sha256(&[n])
}

fn user(n: &str, admin: bool, groups: &[&str]) -> User {
    User {
        name: name(n),
        groups: groups.iter().map(|g| name(g)).collect(),
        admin,
        created_at: t0(),
    }
}

fn agent(n: &str, tier: Tier) -> Agent {
    Agent {
        name: name(n),
        tier,
        owner: Some(name("alice")),
        description: format!("{n} does things"),
        source: "api".into(),
        created_at: t0(),
    }
}

fn scope() -> Scope {
    Scope {
        repos: vec!["acme/api".into(), "acme/web".into()],
        branches: vec!["main".into(), "feature/*".into()],
        environments: vec!["staging".into()],
        actions: vec!["repo.read".into(), "repo.push".into()],
        tools: vec!["github/create_pull_request".into()],
        secrets: vec![],
    }
}

fn task(agent: &str, delegator: &str, created: Timestamp, ttl_mins: i64) -> Task {
    Task {
        id: TaskId::new(),
        agent: name(agent),
        delegator: name(delegator),
        purpose: "fix the flaky test".into(),
        ticket: Some("ACME-42".into()),
        scope: scope(),
        state: TaskState::Pending,
        end_reason: None,
        end_note: None,
        created_at: created,
        expires_at: created + mins(ttl_mins),
        ended_at: None,
    }
}

fn event(kind: &str, subject: &str, task_id: Option<TaskId>) -> NewEvent {
    NewEvent {
        time: t0(),
        kind: kind.into(),
        actor: "user:alice".into(),
        subject: subject.into(),
        task_id: task_id.map(|t| t.to_string()),
        data: json!({"note": "test", "n": 1}),
    }
}

fn user_event(u: &User) -> NewEvent {
    event("user.created", &format!("user:{}", u.name), None)
}

fn agent_event(a: &Agent) -> NewEvent {
    event("agent.created", &format!("agent:{}", a.name), None)
}

fn task_event(kind: &str, t: &Task) -> NewEvent {
    event(kind, &format!("task:{}", t.id), Some(t.id))
}

/// alice (admin) and bob, agents `claude` and `codex`.
async fn seed(store: &Arc<dyn Store>) {
    for (i, u) in [user("alice", true, &["ops"]), user("bob", false, &[])]
        .iter()
        .enumerate()
    {
        store
            .create_user(u, &token(i as u8 + 100), user_event(u))
            .await
            .unwrap();
    }
    for a in [
        agent("claude", Tier::Propose),
        agent("codex", Tier::ReadOnly),
    ] {
        store.create_agent(&a, agent_event(&a)).await.unwrap();
    }
}

async fn head(store: &Arc<dyn Store>) -> Option<(u64, Hash)> {
    store.audit_head().await.unwrap()
}

async fn head_seq(store: &Arc<dyn Store>) -> u64 {
    head(store).await.map_or(0, |(s, _)| s)
}

/// Verifies the whole stored chain as `warrant audit verify` would: raw rows
/// in pages, every checkpoint, every known key.
async fn verify(store: &Arc<dyn Store>) -> Report {
    let keys: HashMap<String, Vec<u8>> = store
        .list_public_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.kid, k.public_key))
        .collect();
    let mut verifier = Verifier::new(keys, store.list_checkpoints().await.unwrap());
    let mut after = 0;
    loop {
        let page = store.raw_audit(after, 97).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for raw in page {
            verifier.push(raw).unwrap();
        }
    }
    let report = verifier.finish().unwrap();
    let head = head(store).await;
    assert_eq!(report.head_seq, head.map_or(0, |(s, _)| s));
    if let Some((_, hash)) = head {
        assert_eq!(report.head_hash, hash);
    }
    report
}

fn assert_gapless(events: &[Event], from: u64) {
    let mut seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    let expected: Vec<u64> = (from..from + events.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "sequence numbers must be unique and gapless"
    );
}

// --- cases -------------------------------------------------------------------

pub async fn reports_its_backend_and_answers_ping(store: Arc<dyn Store>) {
    assert!(matches!(store.backend(), "sqlite" | "postgres"));
    store.ping().await.unwrap();
    assert_eq!(head(&store).await, None);
    assert_eq!(store.count_users().await.unwrap(), 0);
}

pub async fn users_round_trip(store: Arc<dyn Store>) {
    let alice = user("alice", true, &["ops", "release"]);
    let ev = store
        .create_user(&alice, &token(1), user_event(&alice))
        .await
        .unwrap();
    assert_eq!((ev.seq, ev.kind.as_str()), (1, "user.created"));
    assert_eq!(ev.subject, "user:alice");

    assert_eq!(
        store.user_by_name(&name("alice")).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store.user_by_token_hash(&token(1)).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.user_by_token_hash(&token(2)).await.unwrap(), None);
    assert_eq!(store.user_by_name(&name("nobody")).await.unwrap(), None);

    let bob = user("bob", false, &[]);
    store
        .create_user(&bob, &token(2), user_event(&bob))
        .await
        .unwrap();
    assert_eq!(store.list_users().await.unwrap(), vec![alice, bob.clone()]);
    assert_eq!(store.count_users().await.unwrap(), 2);
    assert_eq!(
        store.user_by_token_hash(&token(2)).await.unwrap(),
        Some(bob)
    );
    assert_eq!(head_seq(&store).await, 2);
}

pub async fn duplicate_user_is_a_conflict_and_writes_nothing(store: Arc<dyn Store>) {
    let alice = user("alice", true, &[]);
    store
        .create_user(&alice, &token(1), user_event(&alice))
        .await
        .unwrap();
    let before = head(&store).await;

    let again = user("alice", false, &["other"]);
    match store
        .create_user(&again, &token(2), user_event(&again))
        .await
    {
        Err(StoreError::Conflict(what)) => assert!(what.contains("`alice`"), "{what}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Same token, other name: also refused.
    let carol = user("carol", false, &[]);
    assert!(matches!(
        store
            .create_user(&carol, &token(1), user_event(&carol))
            .await,
        Err(StoreError::Conflict(_))
    ));

    assert_eq!(head(&store).await, before, "no audit event may be appended");
    assert_eq!(store.count_users().await.unwrap(), 1);
    assert_eq!(
        store.user_by_name(&name("alice")).await.unwrap(),
        Some(alice)
    );
    assert_eq!(store.user_by_token_hash(&token(2)).await.unwrap(), None);
}

pub async fn agents_round_trip_and_update(store: Arc<dyn Store>) {
    let claude = agent("claude", Tier::Propose);
    let mut codex = agent("codex", Tier::ReadOnly);
    codex.owner = None;
    codex.source = "config".into();
    store
        .create_agent(&codex, agent_event(&codex))
        .await
        .unwrap();
    store
        .create_agent(&claude, agent_event(&claude))
        .await
        .unwrap();

    assert_eq!(
        store.agent_by_name(&name("claude")).await.unwrap(),
        Some(claude.clone())
    );
    assert_eq!(store.agent_by_name(&name("nobody")).await.unwrap(), None);
    assert_eq!(
        store.list_agents().await.unwrap(),
        vec![claude.clone(), codex.clone()]
    );

    let mut changed = claude.clone();
    changed.tier = Tier::Privileged;
    changed.owner = None;
    changed.description = "now trusted".into();
    changed.source = "config".into();
    let ev = store
        .update_agent(&changed, event("agent.updated", "agent:claude", None))
        .await
        .unwrap();
    assert_eq!((ev.seq, ev.kind.as_str()), (3, "agent.updated"));
    assert_eq!(
        store.agent_by_name(&name("claude")).await.unwrap(),
        Some(changed)
    );
}

pub async fn duplicate_or_unknown_agent_writes_nothing(store: Arc<dyn Store>) {
    let claude = agent("claude", Tier::Propose);
    store
        .create_agent(&claude, agent_event(&claude))
        .await
        .unwrap();
    let before = head(&store).await;

    let mut dup = agent("claude", Tier::Privileged);
    dup.description = "impostor".into();
    match store.create_agent(&dup, agent_event(&dup)).await {
        Err(StoreError::Conflict(what)) => assert!(what.contains("`claude`"), "{what}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let ghost = agent("ghost", Tier::ReadOnly);
    match store
        .update_agent(&ghost, event("agent.updated", "agent:ghost", None))
        .await
    {
        Err(StoreError::NotFound(what)) => assert!(what.contains("`ghost`"), "{what}"),
        other => panic!("expected not found, got {other:?}"),
    }

    assert_eq!(head(&store).await, before, "no audit event may be appended");
    assert_eq!(store.list_agents().await.unwrap(), vec![claude]);
}

pub async fn tasks_round_trip(store: Arc<dyn Store>) {
    seed(&store).await;
    let t = task("claude", "bob", t0(), 30);
    let ev = store
        .create_task(&t, task_event("task.created", &t))
        .await
        .unwrap();
    assert_eq!(ev.task_id, Some(t.id.to_string()));
    assert_eq!(ev.seq, 5);
    assert_eq!(store.get_task(t.id).await.unwrap(), Some(t.clone()));
    assert_eq!(store.get_task(TaskId::new()).await.unwrap(), None);

    // Optional fields empty, and a time with sub-microsecond digits: the
    // store keeps microseconds.
    let mut bare = task(
        "codex",
        "alice",
        t0() + SignedDuration::from_nanos(1_500),
        5,
    );
    bare.ticket = None;
    bare.scope = Scope::default();
    store
        .create_task(&bare, task_event("task.created", &bare))
        .await
        .unwrap();
    let got = store.get_task(bare.id).await.unwrap().unwrap();
    assert_eq!(got.created_at, t0() + SignedDuration::from_micros(1));
    assert_eq!(got.ticket, None);
    assert_eq!(got.scope, Scope::default());
}

pub async fn duplicate_task_id_is_a_conflict_and_writes_nothing(store: Arc<dyn Store>) {
    seed(&store).await;
    let t = task("claude", "bob", t0(), 30);
    store
        .create_task(&t, task_event("task.created", &t))
        .await
        .unwrap();
    let before = head(&store).await;

    let mut again = task("codex", "alice", t0(), 60);
    again.id = t.id;
    assert!(matches!(
        store
            .create_task(&again, task_event("task.created", &again))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(head(&store).await, before, "no audit event may be appended");
    assert_eq!(store.get_task(t.id).await.unwrap(), Some(t));
}

pub async fn create_task_with_unknown_agent_or_user_writes_nothing(store: Arc<dyn Store>) {
    seed(&store).await;
    let before = head(&store).await;

    let t = task("ghost", "bob", t0(), 30);
    match store.create_task(&t, task_event("task.created", &t)).await {
        Err(StoreError::NotFound(what)) => assert_eq!(what, "agent `ghost`"),
        other => panic!("expected not found, got {other:?}"),
    }
    let t2 = task("claude", "mallory", t0(), 30);
    match store
        .create_task(&t2, task_event("task.created", &t2))
        .await
    {
        Err(StoreError::NotFound(what)) => assert_eq!(what, "user `mallory`"),
        other => panic!("expected not found, got {other:?}"),
    }

    assert_eq!(head(&store).await, before, "no audit event may be appended");
    assert_eq!(store.get_task(t.id).await.unwrap(), None);
    assert!(
        store
            .list_tasks(&TaskFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn end_task_twice_is_invalid_and_writes_nothing(store: Arc<dyn Store>) {
    seed(&store).await;
    let t = task("claude", "bob", t0(), 30);
    store
        .create_task(&t, task_event("task.created", &t))
        .await
        .unwrap();

    let at = t0() + mins(10);
    let (ended, ev) = store
        .end_task(
            t.id,
            EndReason::Completed,
            Some("done"),
            at,
            task_event("task.ended", &t),
        )
        .await
        .unwrap();
    assert_eq!(ev.kind, "task.ended");
    assert_eq!(ended.state, TaskState::Ended);
    assert_eq!(ended.end_reason, Some(EndReason::Completed));
    assert_eq!(ended.end_note.as_deref(), Some("done"));
    assert_eq!(ended.ended_at, Some(at));
    assert_eq!(ended.scope, t.scope);
    assert_eq!(store.get_task(t.id).await.unwrap(), Some(ended.clone()));

    let before = head(&store).await;
    match store
        .end_task(
            t.id,
            EndReason::Revoked,
            None,
            at + mins(1),
            task_event("task.ended", &t),
        )
        .await
    {
        Err(StoreError::InvalidState(why)) => assert!(why.contains("already ended"), "{why}"),
        other => panic!("expected invalid state, got {other:?}"),
    }
    let missing = TaskId::new();
    assert!(matches!(
        store
            .end_task(
                missing,
                EndReason::Revoked,
                None,
                at,
                event("task.ended", "task:x", Some(missing))
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(head(&store).await, before, "no audit event may be appended");
    assert_eq!(
        store.get_task(t.id).await.unwrap(),
        Some(ended),
        "the task is unchanged"
    );
}

pub async fn expired_tasks_are_live_tasks_past_expiry(store: Arc<dyn Store>) {
    seed(&store).await;
    let first = task("claude", "bob", t0(), 1);
    let second = task("codex", "alice", t0(), 2);
    let later = task("claude", "alice", t0(), 60);
    let ended = task("claude", "bob", t0(), 1);
    for t in [&later, &second, &first, &ended] {
        store
            .create_task(t, task_event("task.created", t))
            .await
            .unwrap();
    }
    store
        .end_task(
            ended.id,
            EndReason::Revoked,
            None,
            t0(),
            task_event("task.ended", &ended),
        )
        .await
        .unwrap();

    let ids = |ts: Vec<Task>| ts.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert!(store.expired_tasks(t0(), 10).await.unwrap().is_empty());
    // Expiry is inclusive, oldest first, ended tasks never listed.
    assert_eq!(
        ids(store.expired_tasks(t0() + mins(2), 10).await.unwrap()),
        vec![first.id, second.id]
    );
    assert_eq!(
        ids(store.expired_tasks(t0() + mins(2), 1).await.unwrap()),
        vec![first.id]
    );

    // What the reaper does next.
    store
        .end_task(
            first.id,
            EndReason::Expired,
            None,
            t0() + mins(2),
            task_event("task.ended", &first),
        )
        .await
        .unwrap();
    assert_eq!(
        ids(store.expired_tasks(t0() + mins(90), 10).await.unwrap()),
        vec![second.id, later.id]
    );
}

// PostgreSQL refused a NUL in `purpose` and the store called that
// "unavailable" (503, retry later) although retrying can never succeed.
pub async fn text_the_database_refuses_is_rejected_and_writes_nothing(store: Arc<dyn Store>) {
    seed(&store).await;
    let before = head(&store).await;
    let mut t = task("claude", "bob", t0(), 60);
    t.purpose = "a\0b".into();
    let created = store.create_task(&t, task_event("task.created", &t)).await;
    let mut a = agent("gemini", Tier::ReadOnly);
    a.description = "nul \0 here".into();
    let agent_created = store.create_agent(&a, agent_event(&a)).await;
    match store.backend() {
        // SQLite stores any text, NUL included.
        "sqlite" => {
            created.unwrap();
            agent_created.unwrap();
            assert_eq!(store.get_task(t.id).await.unwrap().unwrap().purpose, "a\0b");
        }
        _ => {
            for result in [created.map(drop), agent_created.map(drop)] {
                match result {
                    Err(StoreError::Rejected(msg)) => {
                        assert!(msg.contains("sqlstate 22"), "{msg}")
                    }
                    other => panic!("expected a rejected value, got {other:?}"),
                }
            }
            assert_eq!(head(&store).await, before);
            assert_eq!(store.get_task(t.id).await.unwrap(), None);
            assert_eq!(store.agent_by_name(&a.name).await.unwrap(), None);
            // The store still works.
            store.ping().await.unwrap();
        }
    }
}

pub async fn list_tasks_filters_and_limits(store: Arc<dyn Store>) {
    seed(&store).await;
    let mut all = Vec::new();
    for i in 0..6 {
        let (a, d) = if i % 2 == 0 {
            ("claude", "bob")
        } else {
            ("codex", "alice")
        };
        let t = task(a, d, t0() + mins(i), 60);
        store
            .create_task(&t, task_event("task.created", &t))
            .await
            .unwrap();
        all.push(t);
    }
    store
        .end_task(
            all[0].id,
            EndReason::Completed,
            None,
            t0() + mins(30),
            task_event("task.ended", &all[0]),
        )
        .await
        .unwrap();
    let ids = |ts: Vec<Task>| ts.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let list = |f: TaskFilter| {
        let store = store.clone();
        async move { ids(store.list_tasks(&f).await.unwrap()) }
    };

    // Newest first.
    let newest_first: Vec<TaskId> = all.iter().rev().map(|t| t.id).collect();
    assert_eq!(list(TaskFilter::default()).await, newest_first);
    assert_eq!(
        list(TaskFilter {
            limit: Some(2),
            ..TaskFilter::default()
        })
        .await,
        newest_first[..2].to_vec()
    );
    assert!(
        list(TaskFilter {
            limit: Some(0),
            ..TaskFilter::default()
        })
        .await
        .is_empty()
    );
    assert_eq!(
        list(TaskFilter {
            state: Some(TaskState::Ended),
            ..TaskFilter::default()
        })
        .await,
        vec![all[0].id]
    );
    assert_eq!(
        list(TaskFilter {
            state: Some(TaskState::Pending),
            ..TaskFilter::default()
        })
        .await
        .len(),
        5
    );
    assert_eq!(
        list(TaskFilter {
            delegator: Some(name("alice")),
            ..TaskFilter::default()
        })
        .await,
        vec![all[5].id, all[3].id, all[1].id]
    );
    assert_eq!(
        list(TaskFilter {
            agent: Some(name("claude")),
            state: Some(TaskState::Pending),
            limit: Some(1),
            ..TaskFilter::default()
        })
        .await,
        vec![all[4].id]
    );
    assert!(
        list(TaskFilter {
            agent: Some(name("nobody")),
            ..TaskFilter::default()
        })
        .await
        .is_empty()
    );
}

pub async fn narrow_task_only_narrows(store: Arc<dyn Store>) {
    seed(&store).await;
    let t = task("claude", "bob", t0(), 60);
    store
        .create_task(&t, task_event("task.created", &t))
        .await
        .unwrap();

    let mut narrower = t.clone();
    narrower.scope.repos = vec!["acme/api".into()];
    narrower.scope.actions = vec!["repo.read".into()];
    narrower.expires_at = t0() + mins(30);
    let ev = store
        .narrow_task(&narrower, task_event("task.narrowed", &t))
        .await
        .unwrap();
    assert_eq!(ev.kind, "task.narrowed");
    assert_eq!(store.get_task(t.id).await.unwrap(), Some(narrower.clone()));

    let before = head(&store).await;
    let mut wider = narrower.clone();
    wider.scope.repos.push("acme/ops".into());
    assert!(matches!(
        store
            .narrow_task(&wider, task_event("task.narrowed", &t))
            .await,
        Err(StoreError::InvalidState(_))
    ));
    let mut longer = narrower.clone();
    longer.expires_at = t0() + mins(45);
    assert!(matches!(
        store
            .narrow_task(&longer, task_event("task.narrowed", &t))
            .await,
        Err(StoreError::InvalidState(_))
    ));
    let mut unknown = narrower.clone();
    unknown.id = TaskId::new();
    assert!(matches!(
        store
            .narrow_task(&unknown, task_event("task.narrowed", &unknown))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(head(&store).await, before, "no audit event may be appended");
    assert_eq!(store.get_task(t.id).await.unwrap(), Some(narrower.clone()));

    store
        .end_task(
            t.id,
            EndReason::Completed,
            None,
            t0() + mins(1),
            task_event("task.ended", &t),
        )
        .await
        .unwrap();
    let before = head(&store).await;
    let mut after_end = narrower.clone();
    after_end.scope = Scope::default();
    assert!(matches!(
        store
            .narrow_task(&after_end, task_event("task.narrowed", &t))
            .await,
        Err(StoreError::InvalidState(_))
    ));
    assert_eq!(head(&store).await, before);
}

pub async fn audit_chain_of_many_events_verifies(store: Arc<dyn Store>) {
    seed(&store).await;
    let t = task("claude", "bob", t0(), 60);
    store
        .create_task(&t, task_event("task.created", &t))
        .await
        .unwrap();
    assert!(store.append_audit(Vec::new()).await.unwrap().is_empty());

    let mut appended = Vec::new();
    for batch in 0..10 {
        let events = (0..100)
            .map(|i| NewEvent {
                data: json!({"batch": batch, "i": i, "text": "ünïcödé \"quoted\"", "f": 0.5}),
                ..event("server.started", "server:test", None)
            })
            .collect();
        let chained = store.append_audit(events).await.unwrap();
        assert_eq!(chained.len(), 100);
        appended.extend(chained);
    }
    assert_gapless(&appended, 6);
    // Events come back in the order given, each chained to the one before.
    for pair in appended.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    let report = verify(&store).await;
    assert_eq!(report.events, 1005);
    assert_eq!(report.head_seq, 1005);
    assert_eq!(report.checkpoints, 0);

    // What list_audit decodes is what append returned.
    let listed = store
        .list_audit(&AuditFilter {
            after: 5,
            limit: Some(100),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed, appended[..100].to_vec());
}

pub async fn list_audit_filters_and_pages(store: Arc<dyn Store>) {
    seed(&store).await;
    let t = task("claude", "bob", t0(), 60);
    let u = task("codex", "alice", t0(), 60);
    for x in [&t, &u] {
        store
            .create_task(x, task_event("task.created", x))
            .await
            .unwrap();
    }
    store
        .end_task(
            t.id,
            EndReason::Completed,
            None,
            t0(),
            task_event("task.ended", &t),
        )
        .await
        .unwrap();

    let seqs = |evs: Vec<Event>| evs.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    let list = |f: AuditFilter| {
        let store = store.clone();
        async move { seqs(store.list_audit(&f).await.unwrap()) }
    };
    assert_eq!(
        list(AuditFilter::default()).await,
        (1..=7).collect::<Vec<_>>()
    );
    assert_eq!(
        list(AuditFilter {
            after: 5,
            ..AuditFilter::default()
        })
        .await,
        vec![6, 7]
    );
    assert_eq!(
        list(AuditFilter {
            limit: Some(3),
            ..AuditFilter::default()
        })
        .await,
        vec![1, 2, 3]
    );
    assert_eq!(
        list(AuditFilter {
            task_id: Some(t.id.to_string()),
            ..AuditFilter::default()
        })
        .await,
        vec![5, 7]
    );
    assert_eq!(
        list(AuditFilter {
            kind: Some("agent.created".into()),
            ..AuditFilter::default()
        })
        .await,
        vec![3, 4]
    );
    assert_eq!(
        list(AuditFilter {
            task_id: Some(t.id.to_string()),
            kind: Some("task.ended".into()),
            ..AuditFilter::default()
        })
        .await,
        vec![7]
    );
    assert!(
        list(AuditFilter {
            after: 7,
            ..AuditFilter::default()
        })
        .await
        .is_empty()
    );

    let raw = store.raw_audit(2, 2).await.unwrap();
    assert_eq!(raw.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3, 4]);
    assert!(store.raw_audit(7, 10).await.unwrap().is_empty());
}

fn key_event(kid: &str) -> NewEvent {
    NewEvent {
        actor: "system:bootstrap".into(),
        data: json!({"kid": kid, "alg": "EdDSA"}),
        ..event("keys.added", &format!("key:{kid}"), None)
    }
}

pub async fn checkpoints_and_public_keys_round_trip(store: Arc<dyn Store>) {
    let key = SigningKey::generate().unwrap();
    let record = PublicKeyRecord {
        kid: key.kid().to_owned(),
        alg: "EdDSA".into(),
        public_key: key.public_key().to_vec(),
        created_at: t0(),
        retired_at: None,
    };
    let added = store
        .put_public_key(&record, key_event(key.kid()))
        .await
        .unwrap()
        .expect("a new kid is recorded with its event");
    assert_eq!((added.seq, added.kind.as_str()), (1, "keys.added"));
    // A known kid writes nothing, even with other fields: neither the key
    // nor a second `keys.added`.
    assert_eq!(
        store
            .put_public_key(
                &PublicKeyRecord {
                    created_at: t0() + mins(5),
                    retired_at: None,
                    ..record.clone()
                },
                key_event(key.kid()),
            )
            .await
            .unwrap(),
        None
    );
    assert_eq!(head_seq(&store).await, 1);
    assert_eq!(
        store.list_public_keys().await.unwrap(),
        vec![record.clone()]
    );
    let other = SigningKey::generate().unwrap();
    let other_record = PublicKeyRecord {
        kid: other.kid().to_owned(),
        alg: "EdDSA".into(),
        public_key: other.public_key().to_vec(),
        created_at: t0() + mins(1),
        retired_at: None,
    };
    let added = store
        .put_public_key(&other_record, key_event(other.kid()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(added.seq, 2);
    assert_eq!(
        store.list_public_keys().await.unwrap(),
        vec![record, other_record]
    );
    let key_events = store
        .list_audit(&AuditFilter {
            kind: Some("keys.added".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        key_events
            .iter()
            .map(|e| e.subject.as_str())
            .collect::<Vec<_>>(),
        vec![format!("key:{}", key.kid()), format!("key:{}", other.kid())]
    );

    assert_eq!(store.last_checkpoint().await.unwrap(), None);
    let events = (0..10)
        .map(|_| event("server.started", "server:test", None))
        .collect();
    let chained = store.append_audit(events).await.unwrap();
    // Seqs 1 and 2 are the two `keys.added`: these are 3 to 12.
    let at5 = Checkpoint::sign(5, chained[2].hash, t0(), &key);
    let at10 = Checkpoint::sign(10, chained[7].hash, t0() + mins(1), &other);
    store.put_checkpoint(&at5).await.unwrap();
    store.put_checkpoint(&at10).await.unwrap();
    // Another server signing the same head: accepted, the first one stays.
    store
        .put_checkpoint(&Checkpoint::sign(10, chained[7].hash, t0() + mins(2), &key))
        .await
        .unwrap();
    assert_eq!(
        store.list_checkpoints().await.unwrap(),
        vec![at5.clone(), at10.clone()]
    );
    assert_eq!(store.last_checkpoint().await.unwrap(), Some(at10));

    // A checkpoint that does not match the chain is refused.
    for bad in [
        Checkpoint::sign(6, chained[2].hash, t0(), &key),
        Checkpoint::sign(11, chained[7].hash, t0(), &key),
    ] {
        assert!(matches!(
            store.put_checkpoint(&bad).await,
            Err(StoreError::InvalidState(_))
        ));
    }

    let report = verify(&store).await;
    assert_eq!(
        (report.events, report.checkpoints, report.unanchored),
        (12, 2, 2)
    );
}

pub async fn concurrent_appends_form_one_gapless_chain(store: Arc<dyn Store>) {
    seed(&store).await;
    let start = head_seq(&store).await;
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for i in 0..50 {
                    let ev = if i % 10 == 0 {
                        // State changes interleave with standalone events.
                        let t = task("claude", "bob", t0(), 60);
                        store
                            .create_task(&t, task_event("task.created", &t))
                            .await
                            .unwrap()
                    } else {
                        let mut ev = event("server.started", &format!("worker:{w}"), None);
                        ev.data = json!({"worker": w, "i": i});
                        store.append_audit(vec![ev]).await.unwrap().remove(0)
                    };
                    mine.push(ev);
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        let mine = w.await.unwrap();
        // Each worker's own events are in the order it appended them.
        assert!(mine.windows(2).all(|p| p[0].seq < p[1].seq));
        all.extend(mine);
    }
    assert_gapless(&all, start + 1);
    let report = verify(&store).await;
    assert_eq!(report.events, start + 400);
}

pub async fn group_committer_batches_into_one_chain(store: Arc<dyn Store>) {
    let committer = GroupCommitter::new(store.clone(), 16);
    let callers: Vec<_> = (0..200u32)
        .map(|i| {
            let committer = committer.clone();
            tokio::spawn(async move {
                let mut ev = event("server.started", "server:test", None);
                ev.data = json!({"caller": i});
                (i, committer.append(ev).await.unwrap())
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in callers {
        let (i, ev) = c.await.unwrap();
        // Every caller gets its own event back, committed.
        assert_eq!(ev.data, json!({"caller": i}));
        all.push(ev);
    }
    assert_gapless(&all, 1);
    let stored = store.list_audit(&AuditFilter::default()).await.unwrap();
    let mut by_seq = all.clone();
    by_seq.sort_by_key(|e| e.seq);
    assert_eq!(stored, by_seq);
    assert_eq!(verify(&store).await.events, 200);

    // One caller, in order.
    let a = committer
        .append(event("server.stopped", "server:test", None))
        .await
        .unwrap();
    let b = committer
        .append(event("server.started", "server:test", None))
        .await
        .unwrap();
    assert_eq!((a.seq, b.seq), (201, 202));
    assert_eq!(b.prev_hash, a.hash);
}

pub async fn group_committer_fails_every_caller_when_the_store_is_closed(store: Arc<dyn Store>) {
    let committer = GroupCommitter::new(store.clone(), 8);
    committer
        .append(event("server.started", "server:test", None))
        .await
        .unwrap();
    store.close().await;
    let callers: Vec<_> = (0..5)
        .map(|_| {
            let committer = committer.clone();
            tokio::spawn(async move {
                committer
                    .append(event("server.started", "server:test", None))
                    .await
            })
        })
        .collect();
    for c in callers {
        assert!(matches!(c.await.unwrap(), Err(StoreError::Unavailable(_))));
    }
}

pub async fn closed_store_is_unavailable(store: Arc<dyn Store>) {
    store.close().await;
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    let u = user("alice", true, &[]);
    assert!(matches!(
        store.create_user(&u, &token(1), user_event(&u)).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store
            .append_audit(vec![event("server.stopped", "server:test", None)])
            .await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.audit_head().await,
        Err(StoreError::Unavailable(_))
    ));
}

// --- cases that need the database itself -------------------------------------

pub async fn two_stores_on_one_database_form_one_chain(db: &Db) {
    // Two pools on one database: two `warrant serve` processes.
    let other = warrant_store::open(&db.url).await.unwrap();
    let stores = [db.store.clone(), other.clone()];
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let store = stores[w % 2].clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for i in 0..25 {
                    let mut ev = event("server.started", &format!("server:{}", w % 2), None);
                    ev.data = json!({"worker": w, "i": i});
                    mine.extend(store.append_audit(vec![ev.clone(), ev]).await.unwrap());
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    assert_gapless(&all, 1);
    assert_eq!(verify(&db.store).await.events, 400);
    assert_eq!(verify(&other).await.events, 400);
    other.close().await;
}

/// Runs one statement directly on the database, bypassing the store.
async fn raw_sql(db: &Db, sql: &str) -> Result<u64, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if db.url.starts_with("sqlite:") {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await?;
        let done = sqlx::query(sql).execute(&mut conn).await?;
        conn.close().await?;
        Ok(done.rows_affected())
    } else {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&db.url).await?;
        let done = sqlx::query(sql).execute(&mut conn).await?;
        conn.close().await?;
        Ok(done.rows_affected())
    }
}

pub async fn audit_tables_refuse_update_and_delete(db: &Db) {
    let store = &db.store;
    let key = SigningKey::generate().unwrap();
    store
        .put_public_key(
            &PublicKeyRecord {
                kid: key.kid().to_owned(),
                alg: "EdDSA".into(),
                public_key: key.public_key().to_vec(),
                created_at: t0(),
                retired_at: None,
            },
            key_event(key.kid()),
        )
        .await
        .unwrap()
        .unwrap();
    let chained = store
        .append_audit(vec![event("server.started", "server:test", None); 2])
        .await
        .unwrap();
    store
        .put_checkpoint(&Checkpoint::sign(3, chained[1].hash, t0(), &key))
        .await
        .unwrap();
    let before = head(store).await;

    for sql in [
        "UPDATE audit_events SET data = '{}' WHERE seq = 2",
        "DELETE FROM audit_events WHERE seq = 3",
        "DELETE FROM audit_events",
        "UPDATE audit_checkpoints SET seq = 2",
        "DELETE FROM audit_checkpoints",
    ] {
        let err = raw_sql(db, sql).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    if !db.url.starts_with("sqlite:") {
        assert!(raw_sql(db, "TRUNCATE audit_events").await.is_err());
    }
    assert_eq!(head(store).await, before);
    assert_eq!(store.list_checkpoints().await.unwrap().len(), 1);
    assert_eq!(verify(store).await.events, 3);
}

pub async fn failed_audit_append_rolls_back_the_change(db: &Db) {
    let store = &db.store;
    seed(store).await;
    let t = task("claude", "bob", t0(), 60);
    store
        .create_task(&t, task_event("task.created", &t))
        .await
        .unwrap();
    let before = head(store).await;

    // Make every audit insert fail, as a full disk or a broken chain would.
    let (block, unblock) = if db.url.starts_with("sqlite:") {
        (
            "CREATE TRIGGER test_block BEFORE INSERT ON audit_events \
             BEGIN SELECT RAISE(ABORT, 'audit blocked by test'); END",
            "DROP TRIGGER test_block",
        )
    } else {
        (
            "CREATE TRIGGER test_block BEFORE INSERT ON audit_events \
             FOR EACH ROW EXECUTE FUNCTION warrant_append_only()",
            "DROP TRIGGER test_block ON audit_events",
        )
    };
    raw_sql(db, block).await.unwrap();

    let carol = user("carol", false, &[]);
    assert!(matches!(
        store
            .create_user(&carol, &token(9), user_event(&carol))
            .await,
        Err(StoreError::Unavailable(_))
    ));
    let gemini = agent("gemini", Tier::ReadOnly);
    assert!(
        store
            .create_agent(&gemini, agent_event(&gemini))
            .await
            .is_err()
    );
    let mut changed = agent("claude", Tier::Privileged);
    changed.description = "changed".into();
    assert!(
        store
            .update_agent(&changed, event("agent.updated", "agent:claude", None))
            .await
            .is_err()
    );
    let t2 = task("claude", "bob", t0(), 60);
    assert!(
        store
            .create_task(&t2, task_event("task.created", &t2))
            .await
            .is_err()
    );
    assert!(
        store
            .end_task(
                t.id,
                EndReason::Killed,
                None,
                t0(),
                task_event("task.ended", &t)
            )
            .await
            .is_err()
    );
    let mut narrower = t.clone();
    narrower.scope = Scope::default();
    assert!(
        store
            .narrow_task(&narrower, task_event("task.narrowed", &t))
            .await
            .is_err()
    );
    assert!(
        store
            .append_audit(vec![event("server.started", "server:test", None); 2])
            .await
            .is_err()
    );

    // Nothing changed.
    assert_eq!(head(store).await, before);
    assert_eq!(store.user_by_name(&name("carol")).await.unwrap(), None);
    assert_eq!(store.agent_by_name(&name("gemini")).await.unwrap(), None);
    assert_eq!(
        store.agent_by_name(&name("claude")).await.unwrap(),
        Some(agent("claude", Tier::Propose))
    );
    assert_eq!(store.get_task(t2.id).await.unwrap(), None);
    assert_eq!(store.get_task(t.id).await.unwrap(), Some(t.clone()));

    raw_sql(db, unblock).await.unwrap();
    let ids: HashSet<_> = store
        .list_tasks(&TaskFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, HashSet::from([t.id]));
    assert_eq!(verify(store).await.events, before.map_or(0, |(s, _)| s));
}

// One undecodable task row (always first by expires_at) failed the whole
// `expired_tasks` batch, so no task ever expired again.
pub async fn a_corrupt_task_row_does_not_hide_other_expired_tasks(db: &Db) {
    let store = &db.store;
    seed(store).await;
    let corrupt = task("claude", "bob", t0(), 1);
    let good = task("claude", "bob", t0(), 2);
    for t in [&corrupt, &good] {
        store
            .create_task(t, task_event("task.created", t))
            .await
            .unwrap();
    }
    let rows = raw_sql(
        db,
        &format!(
            "UPDATE tasks SET scope = 'not json' WHERE id = '{}'",
            corrupt.id
        ),
    )
    .await
    .unwrap();
    assert_eq!(rows, 1);
    let expired = store.expired_tasks(t0() + mins(10), 100).await.unwrap();
    assert_eq!(
        expired.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![good.id]
    );
    // The corrupt row is still refused where it is asked for by id.
    assert!(matches!(
        store.get_task(corrupt.id).await,
        Err(StoreError::Corrupt(_))
    ));
}

// --- claims and runs -----------------------------------------------------------

fn claim_for(t: &Task, n: u8, ttl_mins: i64) -> TaskClaim {
    TaskClaim {
        hash: warrant_crypto::sha256(&[b'c', n]),
        task_id: t.id,
        created_at: t.created_at,
        expires_at: t.created_at + mins(ttl_mins),
        used_at: None,
    }
}

fn run_for(t: &Task, jkt: &str, at: Timestamp) -> Run {
    Run {
        id: uuid::Uuid::now_v7(),
        task_id: t.id,
        agent: t.agent.clone(),
        jkt: jkt.into(),
        parent_run_id: None,
        depth: 0,
        state: RunState::Live,
        created_at: at,
        expires_at: at + mins(10),
    }
}

fn run_event(r: &Run) -> NewEvent {
    event("run.started", &format!("run:{}", r.id), Some(r.task_id))
}

/// A seeded store with one pending task and its claim (10 minutes).
async fn task_with_claim(store: &Arc<dyn Store>, n: u8) -> (Task, TaskClaim) {
    let t = task("claude", "bob", t0(), 60);
    let c = claim_for(&t, n, 10);
    store
        .create_task_with_claim(&t, &c, task_event("task.created", &t))
        .await
        .unwrap();
    (t, c)
}

pub async fn claims_redeem_once_and_start_a_run(store: Arc<dyn Store>) {
    seed(&store).await;
    let (t, c) = task_with_claim(&store, 1).await;
    assert_eq!(store.task_claim(&c.hash).await.unwrap(), Some(c.clone()));
    let now = t0() + mins(1);
    let run = run_for(&t, "jkt-one", now);
    let before = head_seq(&store).await;
    let (task, ev) = store
        .redeem_claim(&c.hash, &run, now, run_event(&run))
        .await
        .unwrap();
    assert_eq!(ev.seq, before + 1);
    assert_eq!(task.state, TaskState::Active);
    assert_eq!(store.get_run(run.id).await.unwrap(), Some(run.clone()));
    assert_eq!(store.task_runs(t.id).await.unwrap(), vec![run.clone()]);
    let used = store.task_claim(&c.hash).await.unwrap().unwrap();
    assert_eq!(used.used_at, Some(now));

    // A second redemption is refused and writes nothing.
    let again = run_for(&t, "jkt-two", now);
    let err = store
        .redeem_claim(&c.hash, &again, now, run_event(&again))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidState(_)), "{err:?}");
    assert_eq!(head_seq(&store).await, before + 1);
    assert_eq!(store.get_run(again.id).await.unwrap(), None);
    verify(&store).await;
}

pub async fn concurrent_redemptions_of_one_claim_start_one_run(store: Arc<dyn Store>) {
    seed(&store).await;
    let (t, c) = task_with_claim(&store, 2).await;
    let before = head_seq(&store).await;
    let now = t0() + mins(1);
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let run = run_for(&t, &format!("jkt-{i}"), now);
            let hash = c.hash;
            tokio::spawn(async move {
                store
                    .redeem_claim(&hash, &run, now, run_event(&run))
                    .await
                    .map(|_| run.id)
            })
        })
        .collect();
    let mut won = Vec::new();
    for a in attempts {
        match a.await.unwrap() {
            Ok(id) => won.push(id),
            Err(StoreError::InvalidState(_)) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one redemption wins");
    let runs = store.task_runs(t.id).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, won[0]);
    assert_eq!(head_seq(&store).await, before + 1);
    verify(&store).await;
}

pub async fn unusable_claims_are_refused_and_write_nothing(store: Arc<dyn Store>) {
    seed(&store).await;
    let (t, c) = task_with_claim(&store, 3).await;
    let before = head_seq(&store).await;
    let run = run_for(&t, "jkt", t0());

    // Unknown claim.
    let unknown = warrant_crypto::sha256(b"no such claim");
    assert!(matches!(
        store
            .redeem_claim(&unknown, &run, t0(), run_event(&run))
            .await,
        Err(StoreError::NotFound(_))
    ));
    // Expired claim (its expiry is inclusive).
    let late = t0() + mins(10);
    assert!(matches!(
        store
            .redeem_claim(&c.hash, &run, late, run_event(&run))
            .await,
        Err(StoreError::InvalidState(_))
    ));
    // A claim presented for another task.
    let (other, _) = task_with_claim(&store, 4).await;
    let before_other = head_seq(&store).await;
    let wrong = run_for(&other, "jkt", t0());
    assert!(matches!(
        store
            .redeem_claim(&c.hash, &wrong, t0(), run_event(&wrong))
            .await,
        Err(StoreError::InvalidState(_))
    ));
    assert_eq!(head_seq(&store).await, before_other);
    // An ended task's claim.
    store
        .end_task(
            t.id,
            EndReason::Completed,
            None,
            t0(),
            task_event("task.ended", &t),
        )
        .await
        .unwrap();
    let after_end = head_seq(&store).await;
    assert!(matches!(
        store
            .redeem_claim(&c.hash, &run, t0(), run_event(&run))
            .await,
        Err(StoreError::InvalidState(_))
    ));
    assert_eq!(head_seq(&store).await, after_end);
    assert_eq!(after_end, before + 2, "only the second task and the end");
    assert!(store.task_runs(t.id).await.unwrap().is_empty());
    assert_eq!(
        store.task_claim(&c.hash).await.unwrap().unwrap().used_at,
        None
    );
    // A claim must belong to the task it is created with.
    let t2 = task("claude", "bob", t0(), 60);
    let foreign = claim_for(&t, 9, 10);
    assert!(matches!(
        store
            .create_task_with_claim(&t2, &foreign, task_event("task.created", &t2))
            .await,
        Err(StoreError::InvalidState(_))
    ));
    assert_eq!(store.get_task(t2.id).await.unwrap(), None);
    verify(&store).await;
}

pub async fn ending_a_task_revokes_its_runs(store: Arc<dyn Store>) {
    seed(&store).await;
    let (t, c) = task_with_claim(&store, 5).await;
    let now = t0() + mins(1);
    let run = run_for(&t, "jkt", now);
    store
        .redeem_claim(&c.hash, &run, now, run_event(&run))
        .await
        .unwrap();
    assert!(
        store
            .get_run(run.id)
            .await
            .unwrap()
            .unwrap()
            .is_live_at(now)
    );
    store
        .end_task(
            t.id,
            EndReason::Killed,
            None,
            now,
            task_event("task.ended", &t),
        )
        .await
        .unwrap();
    let revoked = store.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(revoked.state, RunState::Revoked);
    assert!(!revoked.is_live_at(now));
    verify(&store).await;
}

pub async fn task_ends_write_revocations_in_order(store: Arc<dyn Store>) {
    seed(&store).await;
    assert!(store.revocations_after(0, 100).await.unwrap().is_empty());
    let (t, c) = task_with_claim(&store, 6).await;
    let now = t0() + mins(1);
    let run = run_for(&t, "jkt", now);
    store
        .redeem_claim(&c.hash, &run, now, run_event(&run))
        .await
        .unwrap();
    store
        .end_task(
            t.id,
            EndReason::Killed,
            None,
            now,
            task_event("task.ended", &t),
        )
        .await
        .unwrap();
    let rows = store.revocations_after(0, 100).await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].kind, RevocationKind::Run);
    assert_eq!(rows[0].subject_id, run.id);
    assert_eq!(rows[0].task_id, t.id);
    assert_eq!(rows[0].reason, "killed");
    assert_eq!(rows[0].at, now);
    assert_eq!(rows[1].kind, RevocationKind::Task);
    assert_eq!(rows[1].subject_id, t.id.0);
    assert!(rows[1].id > rows[0].id);

    // A task without runs: one row. Ending it again writes none.
    let (u, _) = task_with_claim(&store, 7).await;
    store
        .end_task(
            u.id,
            EndReason::Expired,
            None,
            now,
            task_event("task.ended", &u),
        )
        .await
        .unwrap();
    assert!(
        store
            .end_task(
                u.id,
                EndReason::Completed,
                None,
                now,
                task_event("task.ended", &u)
            )
            .await
            .is_err()
    );
    let last = rows[1].id;
    let more = store.revocations_after(last, 100).await.unwrap();
    assert_eq!(more.len(), 1, "{more:?}");
    assert_eq!(more[0].kind, RevocationKind::Task);
    assert_eq!(more[0].task_id, u.id);
    assert_eq!(more[0].reason, "expired");
    assert!(
        store
            .revocations_after(more[0].id, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.revocations_after(0, 1).await.unwrap(),
        rows[..1].to_vec()
    );
}

pub async fn revoking_a_run_leaves_its_task_live(store: Arc<dyn Store>) {
    seed(&store).await;
    let (t, c) = task_with_claim(&store, 8).await;
    let now = t0() + mins(1);
    let run = run_for(&t, "jkt", now);
    store
        .redeem_claim(&c.hash, &run, now, run_event(&run))
        .await
        .unwrap();
    let before = head_seq(&store).await;
    let (revoked, ev) = store
        .revoke_run(run.id, "revoked", now, run_event(&run))
        .await
        .unwrap();
    assert_eq!(ev.seq, before + 1);
    assert_eq!(revoked.state, RunState::Revoked);
    assert_eq!(store.get_run(run.id).await.unwrap(), Some(revoked));
    assert!(store.get_task(t.id).await.unwrap().unwrap().is_live());
    let rows = store.revocations_after(0, 100).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].kind, RevocationKind::Run);
    assert_eq!(rows[0].subject_id, run.id);
    assert_eq!(rows[0].task_id, t.id);
    assert_eq!(rows[0].reason, "revoked");

    // Twice, or an unknown run: refused, nothing written.
    assert!(matches!(
        store
            .revoke_run(run.id, "revoked", now, run_event(&run))
            .await,
        Err(StoreError::InvalidState(_))
    ));
    assert!(matches!(
        store
            .revoke_run(uuid::Uuid::now_v7(), "revoked", now, run_event(&run))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(head_seq(&store).await, before + 1);
    assert_eq!(store.revocations_after(0, 100).await.unwrap().len(), 1);
    // Ending the task later revokes no run again: only the task's row.
    store
        .end_task(
            t.id,
            EndReason::Killed,
            None,
            now,
            task_event("task.ended", &t),
        )
        .await
        .unwrap();
    let rows = store.revocations_after(rows[0].id, 100).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].kind, RevocationKind::Task);
    verify(&store).await;
}

pub async fn key_rotation_retires_the_old_key_atomically(store: Arc<dyn Store>) {
    let old = SigningKey::generate().unwrap();
    let old_record = PublicKeyRecord {
        kid: old.kid().to_owned(),
        alg: "EdDSA".into(),
        public_key: old.public_key().to_vec(),
        created_at: t0(),
        retired_at: None,
    };
    store
        .put_public_key(&old_record, key_event(old.kid()))
        .await
        .unwrap()
        .unwrap();
    let new = SigningKey::generate().unwrap();
    let new_record = PublicKeyRecord {
        kid: new.kid().to_owned(),
        alg: "EdDSA".into(),
        public_key: new.public_key().to_vec(),
        created_at: t0() + mins(3),
        retired_at: None,
    };
    let rotated = NewEvent {
        data: json!({"kid": new.kid(), "previous": [old.kid()]}),
        ..event("keys.rotated", &format!("key:{}", new.kid()), None)
    };
    let events = store
        .rotate_public_key(
            &new_record,
            &[old.kid().to_owned()],
            vec![key_event(new.kid()), rotated.clone()],
        )
        .await
        .unwrap();
    assert_eq!(
        events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["keys.added", "keys.rotated"]
    );
    let keys = store.list_public_keys().await.unwrap();
    assert_eq!(
        keys,
        vec![
            PublicKeyRecord {
                retired_at: Some(t0() + mins(3)),
                ..old_record
            },
            new_record.clone()
        ]
    );
    // Recording the same kid again is a conflict and writes nothing.
    let head = head_seq(&store).await;
    let again = store
        .rotate_public_key(&new_record, &[], vec![rotated])
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(head_seq(&store).await, head);
    assert_eq!(store.list_public_keys().await.unwrap(), keys);
}

pub async fn child_runs_start_under_a_live_parent_and_are_revoked_with_it(store: Arc<dyn Store>) {
    seed(&store).await;
    let (t, c) = task_with_claim(&store, 9).await;
    let now = t0() + mins(1);
    let root = run_for(&t, "jkt-root", now);
    store
        .redeem_claim(&c.hash, &root, now, run_event(&root))
        .await
        .unwrap();
    let child = Run {
        parent_run_id: Some(root.id),
        depth: 1,
        ..run_for(&t, "jkt-child", now)
    };
    store
        .start_child_run(&child, now, run_event(&child))
        .await
        .unwrap();
    let grandchild = Run {
        parent_run_id: Some(child.id),
        depth: 2,
        ..run_for(&t, "jkt-grandchild", now)
    };
    store
        .start_child_run(&grandchild, now, run_event(&grandchild))
        .await
        .unwrap();
    assert_eq!(
        store.get_run(grandchild.id).await.unwrap(),
        Some(grandchild.clone())
    );

    // An unknown parent: refused, nothing written.
    let before = head_seq(&store).await;
    let orphan = Run {
        parent_run_id: Some(uuid::Uuid::now_v7()),
        depth: 1,
        ..run_for(&t, "jkt-orphan", now)
    };
    assert!(matches!(
        store
            .start_child_run(&orphan, now, run_event(&orphan))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(head_seq(&store).await, before);

    // Revoking the child revokes the grandchild, not the root.
    store
        .revoke_run(child.id, "revoked", now, run_event(&child))
        .await
        .unwrap();
    let state = |id| {
        let store = store.clone();
        async move { store.get_run(id).await.unwrap().unwrap().state }
    };
    assert_eq!(state(child.id).await, RunState::Revoked);
    assert_eq!(state(grandchild.id).await, RunState::Revoked);
    assert_eq!(state(root.id).await, RunState::Live);
    let revoked: HashSet<uuid::Uuid> = store
        .revocations_after(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.subject_id)
        .collect();
    assert_eq!(revoked, HashSet::from([child.id, grandchild.id]));

    // A revoked parent starts no child; nothing is written.
    let late = Run {
        parent_run_id: Some(child.id),
        depth: 2,
        ..run_for(&t, "jkt-late", now)
    };
    let before = head_seq(&store).await;
    assert!(matches!(
        store.start_child_run(&late, now, run_event(&late)).await,
        Err(StoreError::InvalidState(_))
    ));
    assert_eq!(head_seq(&store).await, before);
    assert_eq!(store.get_run(late.id).await.unwrap(), None);
    verify(&store).await;
}

pub async fn a_workload_assertion_starts_one_run(store: Arc<dyn Store>) {
    seed(&store).await;
    let t = task("claude", "bob", t0(), 60);
    store
        .create_task(&t, task_event("task.created", &t))
        .await
        .unwrap();
    let now = t0() + mins(1);
    let spent = UsedAssertion {
        issuer: "https://ci.example".into(),
        jti: "jti-1".into(),
        expires_at: now + mins(5),
    };
    let first = run_for(&t, "jkt-a", now);
    store
        .start_run(&first, Some(&spent), now, run_event(&first))
        .await
        .unwrap();

    // The same assertion again: a conflict, and nothing is written.
    let before = head_seq(&store).await;
    let second = run_for(&t, "jkt-b", now);
    let err = store
        .start_run(&second, Some(&spent), now, run_event(&second))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(head_seq(&store).await, before);
    assert_eq!(store.get_run(second.id).await.unwrap(), None);

    // The same jti from another issuer is another assertion.
    let other = UsedAssertion {
        issuer: "https://other.example".into(),
        ..spent.clone()
    };
    store
        .start_run(&second, Some(&other), now, run_event(&second))
        .await
        .unwrap();

    // Once the first assertion has expired it is forgotten: its token
    // could no longer be presented, so the row has no purpose.
    let later = now + mins(6);
    let third = run_for(&t, "jkt-c", later);
    let fresh = UsedAssertion {
        jti: "jti-2".into(),
        expires_at: later + mins(5),
        ..spent.clone()
    };
    store
        .start_run(&third, Some(&fresh), later, run_event(&third))
        .await
        .unwrap();
    let fourth = run_for(&t, "jkt-d", later);
    let replayed_after_expiry = UsedAssertion {
        expires_at: later + mins(5),
        ..spent.clone()
    };
    store
        .start_run(
            &fourth,
            Some(&replayed_after_expiry),
            later,
            run_event(&fourth),
        )
        .await
        .unwrap();
    assert_eq!(store.task_runs(t.id).await.unwrap().len(), 4);
    verify(&store).await;
}

pub async fn refresh_extends_a_live_run_within_its_task_and_parent(store: Arc<dyn Store>) {
    seed(&store).await;
    let (t, c) = task_with_claim(&store, 11).await;
    let now = t0() + mins(1);
    let root = run_for(&t, "jkt-root", now);
    store
        .redeem_claim(&c.hash, &root, now, run_event(&root))
        .await
        .unwrap();
    let child = Run {
        parent_run_id: Some(root.id),
        depth: 1,
        expires_at: now + mins(5),
        ..run_for(&t, "jkt-child", now)
    };
    store
        .start_child_run(&child, now, run_event(&child))
        .await
        .unwrap();
    let refreshed = |r: &Run| event("run.refreshed", &format!("run:{}", r.id), Some(r.task_id));

    // The root, with its own key, moves its expiry on.
    let at = now + mins(8);
    let run = store
        .refresh_run(root.id, "jkt-root", at + mins(10), at, refreshed(&root))
        .await
        .unwrap();
    assert_eq!(run.expires_at, at + mins(10));
    assert_eq!(store.get_run(root.id).await.unwrap().unwrap(), run);

    let refused = |id, jkt: &'static str, until: Timestamp, at: Timestamp, r: Run| {
        let store = store.clone();
        async move {
            let before = head_seq(&store).await;
            let stored = store.get_run(id).await.unwrap();
            let err = store
                .refresh_run(id, jkt, until, at, refreshed(&r))
                .await
                .unwrap_err();
            assert_eq!(head_seq(&store).await, before, "{err:?}");
            assert_eq!(store.get_run(id).await.unwrap(), stored);
            err
        }
    };
    // Another key, past the task's end, an unknown run: refused.
    let err = refused(root.id, "jkt-other", at + mins(12), at, root.clone()).await;
    assert!(matches!(err, StoreError::InvalidState(_)), "{err:?}");
    let err = refused(
        root.id,
        "jkt-root",
        t.expires_at + mins(1),
        at,
        root.clone(),
    )
    .await;
    assert!(matches!(err, StoreError::InvalidState(_)), "{err:?}");
    let ghost = run_for(&t, "jkt-ghost", now);
    let err = refused(ghost.id, "jkt-ghost", at + mins(1), at, ghost.clone()).await;
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // The child, while live, up to its parent's expiry and not past it.
    let at_child = now + mins(4);
    let child_now = store
        .refresh_run(
            child.id,
            "jkt-child",
            at + mins(10),
            at_child,
            refreshed(&child),
        )
        .await
        .unwrap();
    assert_eq!(child_now.expires_at, at + mins(10));
    let err = refused(
        child.id,
        "jkt-child",
        at + mins(11),
        at_child,
        child.clone(),
    )
    .await;
    assert!(matches!(err, StoreError::InvalidState(_)), "{err:?}");

    // An expired run cannot be refreshed.
    let err = refused(
        child.id,
        "jkt-child",
        at + mins(10),
        at + mins(10),
        child.clone(),
    )
    .await;
    assert!(matches!(err, StoreError::InvalidState(_)), "{err:?}");

    // Nor a run whose parent was revoked.
    store
        .revoke_run(root.id, "revoked", at, run_event(&root))
        .await
        .unwrap();
    let err = refused(root.id, "jkt-root", at + mins(5), at, root.clone()).await;
    assert!(matches!(err, StoreError::InvalidState(_)), "{err:?}");
    verify(&store).await;
}

pub async fn outside_identities_provision_and_link_users(store: Arc<dyn Store>) {
    seed(&store).await;
    let carol = user("carol", false, &["dev"]);
    let issuer = "https://idp.example";
    assert_eq!(
        store.user_by_identity(issuer, "sub-carol").await.unwrap(),
        None
    );
    store
        .provision_user(&carol, &token(40), issuer, "sub-carol", user_event(&carol))
        .await
        .unwrap();
    assert_eq!(
        store.user_by_identity(issuer, "sub-carol").await.unwrap(),
        Some(carol.clone())
    );
    assert_eq!(
        store.user_by_identity(issuer, "sub-other").await.unwrap(),
        None
    );
    assert_eq!(
        store
            .user_by_identity("https://other.example", "sub-carol")
            .await
            .unwrap(),
        None
    );

    // A taken name, or an identity already linked: a conflict, nothing written.
    let before = head_seq(&store).await;
    let bob = user("bob", false, &[]);
    let err = store
        .provision_user(&bob, &token(41), issuer, "sub-bob", user_event(&bob))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        store.user_by_identity(issuer, "sub-bob").await.unwrap(),
        None
    );
    let dave = user("dave", false, &[]);
    let err = store
        .provision_user(&dave, &token(42), issuer, "sub-carol", user_event(&dave))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.user_by_name(&name("dave")).await.unwrap(), None);
    assert_eq!(head_seq(&store).await, before);

    // Groups follow the identity provider.
    store
        .set_user_groups(
            &name("carol"),
            &[name("ops"), name("approvers")],
            event("user.updated", "user:carol", None),
        )
        .await
        .unwrap();
    let now = store.user_by_name(&name("carol")).await.unwrap().unwrap();
    assert_eq!(now.groups, vec![name("ops"), name("approvers")]);
    let err = store
        .set_user_groups(
            &name("nobody"),
            &[],
            event("user.updated", "user:nobody", None),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    verify(&store).await;
}

pub async fn decisions_mark_runs_and_create_approvals(store: Arc<dyn Store>) {
    seed(&store).await;
    let (t, c) = task_with_claim(&store, 12).await;
    let now = t0() + mins(1);
    let run = run_for(&t, "jkt-decide", now);
    store
        .redeem_claim(&c.hash, &run, now, run_event(&run))
        .await
        .unwrap();
    assert!(store.run_marks(run.id).await.unwrap().is_empty());
    let decided = || event("decision", &format!("run:{}", run.id), Some(t.id));

    // Marks accumulate; repeating one keeps it once.
    store
        .record_decision(
            &DecisionWrite {
                run_id: run.id,
                task_id: t.id,
                marks: &["class:read".into()],
                approval: None,
                consume: None,
                at: now,
            },
            decided(),
        )
        .await
        .unwrap();
    store
        .record_decision(
            &DecisionWrite {
                run_id: run.id,
                task_id: t.id,
                marks: &["class:read".into(), "tainted".into()],
                approval: None,
                consume: None,
                at: now,
            },
            decided(),
        )
        .await
        .unwrap();
    assert_eq!(
        store.run_marks(run.id).await.unwrap(),
        vec!["class:read".to_owned(), "tainted".to_owned()]
    );

    // An approval, found again by its run and request hash while pending.
    let approval = Approval {
        id: uuid::Uuid::now_v7(),
        task_id: t.id,
        run_id: run.id,
        action: "deploy".into(),
        request: json!({"action": "deploy", "resource": {"type": "Environment", "id": "staging"}}),
        request_hash: warrant_crypto::sha256(b"deploy staging"),
        quorum: 2,
        policies: vec!["approve-deploys".into()],
        reasons: vec!["deploys need a human".into()],
        state: ApprovalState::Pending,
        created_at: now,
        expires_at: now + mins(30),
        decided_at: None,
        consumed_at: None,
    };
    store
        .record_decision(
            &DecisionWrite {
                run_id: run.id,
                task_id: t.id,
                marks: &[],
                approval: Some(&approval),
                consume: None,
                at: now,
            },
            decided(),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_approval(approval.id).await.unwrap(),
        Some(approval.clone())
    );
    let found = |state, at| {
        let store = store.clone();
        let hash = approval.request_hash;
        async move { store.find_approval(run.id, &hash, state, at).await.unwrap() }
    };
    assert_eq!(
        found(ApprovalState::Pending, now).await,
        Some(approval.clone())
    );
    assert_eq!(found(ApprovalState::Approved, now).await, None);
    assert_eq!(found(ApprovalState::Pending, now + mins(31)).await, None);
    let other = store
        .find_approval(
            run.id,
            &warrant_crypto::sha256(b"deploy prod"),
            ApprovalState::Pending,
            now,
        )
        .await
        .unwrap();
    assert_eq!(other, None);

    // An unknown run writes nothing.
    let before = head_seq(&store).await;
    let err = store
        .record_decision(
            &DecisionWrite {
                run_id: uuid::Uuid::now_v7(),
                task_id: t.id,
                marks: &["class:read".into()],
                approval: None,
                consume: None,
                at: now,
            },
            decided(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(head_seq(&store).await, before);

    // Ending the task revokes its open approvals.
    store
        .end_task(
            t.id,
            EndReason::Completed,
            None,
            now,
            task_event("task.ended", &t),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .get_approval(approval.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        ApprovalState::Revoked
    );
    verify(&store).await;
}

pub async fn approvals_take_votes_reach_quorum_and_are_consumed_once(store: Arc<dyn Store>) {
    seed(&store).await;
    for u in [
        user("carol", false, &["approvers"]),
        user("dave", false, &["approvers"]),
    ] {
        store
            .create_user(
                &u,
                &warrant_crypto::sha256(u.name.as_str().as_bytes()),
                user_event(&u),
            )
            .await
            .unwrap();
    }
    let (t, c) = task_with_claim(&store, 13).await;
    let now = t0() + mins(1);
    let run = run_for(&t, "jkt-vote", now);
    store
        .redeem_claim(&c.hash, &run, now, run_event(&run))
        .await
        .unwrap();
    let decided = || event("decision", &format!("run:{}", run.id), Some(t.id));
    let new = |quorum: u32, n: u8| Approval {
        id: uuid::Uuid::now_v7(),
        task_id: t.id,
        run_id: run.id,
        action: "deploy".into(),
        request: json!({"n": n}),
        request_hash: warrant_crypto::sha256(&[n]),
        quorum,
        policies: vec!["approval.deploy".into()],
        reasons: vec!["deploys need a human".into()],
        state: ApprovalState::Pending,
        created_at: now,
        expires_at: now + mins(30),
        decided_at: None,
        consumed_at: None,
    };
    let two = new(2, 1);
    store
        .record_decision(
            &DecisionWrite {
                run_id: run.id,
                task_id: t.id,
                marks: &[],
                approval: Some(&two),
                consume: None,
                at: now,
            },
            decided(),
        )
        .await
        .unwrap();
    let vote = |who: &str, verdict, id| Vote {
        approval_id: id,
        approver: name(who),
        verdict,
        reason: format!("{who} says so"),
        at: now + mins(2),
    };
    let voted_event = |a: &Approval| {
        event(
            &format!("approval.{}", a.state.as_str()),
            &format!("approval:{}", a.id),
            Some(a.task_id),
        )
    };
    let voted = || &voted_event;

    // One of two approvals: still pending. The same approver again: a
    // conflict that writes nothing. A second approver: approved.
    let a = store
        .vote_approval(&vote("carol", Verdict::Approve, two.id), voted())
        .await
        .unwrap();
    assert_eq!(a.state, ApprovalState::Pending);
    let before = head_seq(&store).await;
    let err = store
        .vote_approval(&vote("carol", Verdict::Approve, two.id), voted())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(head_seq(&store).await, before);
    let a = store
        .vote_approval(&vote("dave", Verdict::Approve, two.id), voted())
        .await
        .unwrap();
    assert_eq!(a.state, ApprovalState::Approved);
    assert_eq!(a.decided_at, Some(now + mins(2)));
    let votes = store.approval_votes(two.id).await.unwrap();
    assert_eq!(
        votes
            .iter()
            .map(|v| v.approver.as_str())
            .collect::<Vec<_>>(),
        ["carol", "dave"]
    );
    // An approved approval takes no more votes.
    let err = store
        .vote_approval(&vote("alice", Verdict::Deny, two.id), voted())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidState(_)), "{err:?}");

    // Consumed once; a second consumption writes nothing.
    let at = now + mins(3);
    store
        .record_decision(
            &DecisionWrite {
                run_id: run.id,
                task_id: t.id,
                marks: &[],
                approval: None,
                consume: Some(two.id),
                at,
            },
            decided(),
        )
        .await
        .unwrap();
    let a = store.get_approval(two.id).await.unwrap().unwrap();
    assert_eq!(
        (a.state, a.consumed_at),
        (ApprovalState::Consumed, Some(at))
    );
    let before = head_seq(&store).await;
    let err = store
        .record_decision(
            &DecisionWrite {
                run_id: run.id,
                task_id: t.id,
                marks: &[],
                approval: None,
                consume: Some(two.id),
                at,
            },
            decided(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidState(_)), "{err:?}");
    assert_eq!(head_seq(&store).await, before);

    // A deny closes it at once; an unknown approval is not found.
    let denied = new(1, 2);
    store
        .record_decision(
            &DecisionWrite {
                run_id: run.id,
                task_id: t.id,
                marks: &[],
                approval: Some(&denied),
                consume: None,
                at: now,
            },
            decided(),
        )
        .await
        .unwrap();
    let a = store
        .vote_approval(&vote("carol", Verdict::Deny, denied.id), voted())
        .await
        .unwrap();
    assert_eq!(a.state, ApprovalState::Denied);
    let err = store
        .vote_approval(
            &vote("carol", Verdict::Approve, uuid::Uuid::now_v7()),
            voted(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // Expiry: pending ones past their time expire, each with an event;
    // a vote after expiry is refused.
    let late = new(1, 3);
    store
        .record_decision(
            &DecisionWrite {
                run_id: run.id,
                task_id: t.id,
                marks: &[],
                approval: Some(&late),
                consume: None,
                at: now,
            },
            decided(),
        )
        .await
        .unwrap();
    let mut after = vote("dave", Verdict::Approve, late.id);
    after.at = now + mins(31);
    let err = store.vote_approval(&after, voted()).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidState(_)), "{err:?}");
    let before = head_seq(&store).await;
    let expired = store
        .expire_approvals(now + mins(31), 100, &|a: &Approval| {
            event(
                "approval.expired",
                &format!("approval:{}", a.id),
                Some(a.task_id),
            )
        })
        .await
        .unwrap();
    assert_eq!(
        expired.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![late.id]
    );
    assert_eq!(head_seq(&store).await, before + 1);
    assert_eq!(
        store.get_approval(late.id).await.unwrap().unwrap().state,
        ApprovalState::Expired
    );

    let listed = store
        .list_approvals(&ApprovalFilter {
            task_id: Some(t.id),
            ..ApprovalFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    let pending = store
        .list_approvals(&ApprovalFilter {
            state: Some(ApprovalState::Denied),
            ..ApprovalFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        pending.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![denied.id]
    );
    verify(&store).await;
}

fn lease_for(run: &Run, at: Timestamp, ttl_mins: i64) -> Lease {
    Lease {
        id: uuid::Uuid::now_v7(),
        engine: "pg-main".into(),
        role: "readonly".into(),
        task_id: run.task_id,
        run_id: run.id,
        handle: json!({"role": format!("w_{}", uuid::Uuid::now_v7().simple())}),
        public: json!({}),
        state: LeaseState::Issuing,
        issued_at: at,
        expires_at: at + mins(ttl_mins),
        revoke_reason: None,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        revoked_at: None,
    }
}

pub async fn leases_are_recorded_first_and_revoked_when_due(store: Arc<dyn Store>) {
    seed(&store).await;
    let (t, c) = task_with_claim(&store, 14).await;
    let now = t0() + mins(1);
    let run = run_for(&t, "jkt-lease", now);
    store
        .redeem_claim(&c.hash, &run, now, run_event(&run))
        .await
        .unwrap();
    let ev = |k: &str| event(k, "lease", Some(t.id));

    // Recorded as issuing, then active.
    let a = lease_for(&run, now, 5);
    store.create_lease(&a, ev("lease.issuing")).await.unwrap();
    assert_eq!(
        store.get_lease(a.id).await.unwrap().unwrap().state,
        LeaseState::Issuing
    );
    let active = store
        .activate_lease(
            a.id,
            &json!({"username": "w_x"}),
            now + mins(4),
            ev("lease.issued"),
        )
        .await
        .unwrap();
    assert_eq!(active.state, LeaseState::Active);
    assert_eq!(active.expires_at, now + mins(4));
    assert_eq!(active.public, json!({"username": "w_x"}));
    // Activating twice: refused, nothing written.
    let before = head_seq(&store).await;
    assert!(matches!(
        store.activate_lease(a.id, &json!({}), now, ev("x")).await,
        Err(StoreError::InvalidState(_))
    ));
    assert_eq!(head_seq(&store).await, before);

    // An interrupted issuance (a crash between record and activation) and an
    // expired active lease are due; a fresh active one is not.
    let crashed = lease_for(&run, now, 30);
    store
        .create_lease(&crashed, ev("lease.issuing"))
        .await
        .unwrap();
    let fresh = lease_for(&run, now, 30);
    store
        .create_lease(&fresh, ev("lease.issuing"))
        .await
        .unwrap();
    store
        .activate_lease(fresh.id, &json!({}), now + mins(30), ev("lease.issued"))
        .await
        .unwrap();
    let later = now + mins(6);
    let due = store.due_leases(later, now + mins(1), 100).await.unwrap();
    let mut ids: Vec<_> = due
        .iter()
        .map(|l| (l.id, l.revoke_reason.clone().unwrap()))
        .collect();
    ids.sort();
    let mut want = vec![
        (a.id, "expired".to_owned()),
        (crashed.id, "interrupted".to_owned()),
    ];
    want.sort();
    assert_eq!(ids, want);

    // A failed attempt is counted and rescheduled; then given up on.
    let l = store
        .fail_revoke(a.id, "connection refused", later + mins(1), false, None)
        .await
        .unwrap();
    assert_eq!((l.state, l.attempts), (LeaseState::Revoking, 1));
    assert!(
        store
            .due_leases(later, now, 100)
            .await
            .unwrap()
            .iter()
            .all(|d| d.id != a.id)
    );
    let l = store
        .fail_revoke(
            a.id,
            "connection refused",
            later + mins(2),
            true,
            Some(ev("lease.irrevocable")),
        )
        .await
        .unwrap();
    assert_eq!((l.state, l.attempts), (LeaseState::Irrevocable, 2));
    assert_eq!(l.last_error.as_deref(), Some("connection refused"));
    let irrevocable = store
        .list_leases(&LeaseFilter {
            state: Some(LeaseState::Irrevocable),
            ..LeaseFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        irrevocable.iter().map(|l| l.id).collect::<Vec<_>>(),
        vec![a.id]
    );
    // A later manual revocation still finishes it.
    let done = store
        .finish_revoke(a.id, later, ev("lease.revoked"))
        .await
        .unwrap();
    assert_eq!(
        (done.state, done.revoked_at),
        (LeaseState::Revoked, Some(later))
    );
    store
        .finish_revoke(crashed.id, later, ev("lease.revoked"))
        .await
        .unwrap();

    // Asked for; then the task ends: its active leases become due.
    let asked = store
        .request_revoke(fresh.id, "requested", later, ev("lease.revoke_requested"))
        .await
        .unwrap();
    assert_eq!(asked.state, LeaseState::Revoking);
    assert!(matches!(
        store
            .request_revoke(fresh.id, "requested", later, ev("x"))
            .await,
        Err(StoreError::InvalidState(_))
    ));
    store
        .finish_revoke(fresh.id, later, ev("lease.revoked"))
        .await
        .unwrap();
    let last = lease_for(&run, later, 30);
    store
        .create_lease(&last, ev("lease.issuing"))
        .await
        .unwrap();
    store
        .activate_lease(last.id, &json!({}), later + mins(30), ev("lease.issued"))
        .await
        .unwrap();
    store
        .end_task(
            t.id,
            EndReason::Completed,
            None,
            later,
            task_event("task.ended", &t),
        )
        .await
        .unwrap();
    let due = store.due_leases(later, now, 100).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, last.id);
    assert!(matches!(
        due[0].revoke_reason.as_deref(),
        Some("task_ended" | "run_ended")
    ));
    // And no lease starts under an ended task.
    let before = head_seq(&store).await;
    assert!(matches!(
        store
            .create_lease(&lease_for(&run, later, 5), ev("x"))
            .await,
        Err(StoreError::InvalidState(_))
    ));
    assert_eq!(head_seq(&store).await, before);
    verify(&store).await;
}

pub async fn kv_secrets_are_stored_sealed(store: Arc<dyn Store>) {
    let secret = SealedSecret {
        engine: "vault".into(),
        name: "npm-token".into(),
        key_id: "k1".into(),
        nonce: vec![7; 24],
        ciphertext: vec![1, 2, 3, 4],
        created_at: t0(),
        updated_at: t0(),
    };
    store
        .put_kv_secret(&secret, event("kv.written", "kv:vault/npm-token", None))
        .await
        .unwrap();
    assert_eq!(
        store.get_kv_secret("vault", "npm-token").await.unwrap(),
        Some(secret.clone())
    );
    let resealed = SealedSecret {
        key_id: "k2".into(),
        ciphertext: vec![9, 9],
        updated_at: t0() + mins(1),
        ..secret.clone()
    };
    store
        .put_kv_secret(&resealed, event("kv.written", "kv:vault/npm-token", None))
        .await
        .unwrap();
    let got = store
        .get_kv_secret("vault", "npm-token")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.key_id.as_str(), got.created_at), ("k2", t0()));
    assert_eq!(store.list_kv_secrets("vault").await.unwrap().len(), 1);
    assert!(
        store
            .get_kv_secret("other", "npm-token")
            .await
            .unwrap()
            .is_none()
    );
    verify(&store).await;
}
