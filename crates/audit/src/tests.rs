use std::collections::HashMap;

use jiff::Timestamp;
use serde_json::json;
use warrant_crypto::SigningKey;

use crate::*;

fn chain(n: u64) -> Vec<Event> {
    let mut prev = GENESIS;
    (1..=n)
        .map(|seq| {
            let ev = NewEvent {
                time: Timestamp::from_second(1_700_000_000 + seq as i64).unwrap(),
                kind: "task.created".into(),
                actor: "user:alice".into(),
                subject: format!("task:{seq}"),
                task_id: Some(format!("t{seq}")),
                data: json!({"purpose": format!("fix #{seq}"), "n": seq, "f": 1.5}),
            }
            .chain(seq, prev);
            prev = ev.hash;
            ev
        })
        .collect()
}

fn verify(
    rows: Vec<RawEvent>,
    key: &SigningKey,
    cps: Vec<Checkpoint>,
) -> Result<Report, VerifyError> {
    let keys = HashMap::from([(key.kid().to_owned(), key.public_key().to_vec())]);
    let mut v = Verifier::new(keys, cps);
    for r in rows {
        v.push(r)?;
    }
    v.finish()
}

fn raws(evs: &[Event]) -> Vec<RawEvent> {
    evs.iter().map(Event::to_raw).collect()
}

fn cp(evs: &[Event], seq: u64, key: &SigningKey) -> Checkpoint {
    Checkpoint::sign(
        seq,
        evs[seq as usize - 1].hash,
        Timestamp::from_second(1_800_000_000).unwrap(),
        key,
    )
}

#[test]
fn an_untouched_chain_verifies() {
    let key = SigningKey::generate().unwrap();
    let evs = chain(50);
    let r = verify(
        raws(&evs),
        &key,
        vec![cp(&evs, 20, &key), cp(&evs, 40, &key)],
    )
    .unwrap();
    assert_eq!(
        (r.events, r.head_seq, r.checkpoints, r.unanchored),
        (50, 50, 2, 10)
    );
    assert_eq!(r.head_hash, evs[49].hash);
}

#[test]
fn an_empty_chain_verifies() {
    let key = SigningKey::generate().unwrap();
    let r = verify(vec![], &key, vec![]).unwrap();
    assert_eq!(r.events, 0);
}

#[test]
fn raw_rows_round_trip() {
    for ev in chain(5) {
        assert_eq!(ev.to_raw().decode().unwrap(), ev);
    }
}

#[test]
fn edited_data_is_modified_at_that_seq() {
    let key = SigningKey::generate().unwrap();
    let mut rows = raws(&chain(10));
    rows[6].data = r#"{"purpose":"innocent"}"#.into();
    let e = verify(rows, &key, vec![]).unwrap_err();
    assert_eq!((e.seq, e.problem), (7, Problem::Modified));
}

#[test]
fn unparseable_data_is_malformed_not_a_panic() {
    let key = SigningKey::generate().unwrap();
    let mut rows = raws(&chain(10));
    rows[2].data = "{not json".into();
    let e = verify(rows, &key, vec![]).unwrap_err();
    assert_eq!(e.seq, 3);
    assert!(matches!(e.problem, Problem::Malformed(_)));
}

#[test]
fn a_deleted_event_is_missing() {
    let key = SigningKey::generate().unwrap();
    let mut rows = raws(&chain(10));
    rows.remove(4);
    let e = verify(rows, &key, vec![]).unwrap_err();
    assert_eq!((e.seq, e.problem), (5, Problem::Missing { count: 1 }));
}

#[test]
fn a_deleted_and_renumbered_event_is_missing() {
    let key = SigningKey::generate().unwrap();
    let mut rows = raws(&chain(10));
    rows.remove(4);
    for r in rows.iter_mut().skip(4) {
        r.seq -= 1;
    }
    let e = verify(rows, &key, vec![]).unwrap_err();
    assert_eq!((e.seq, e.problem), (5, Problem::Missing { count: 1 }));
}

#[test]
fn two_swapped_events_are_reordered() {
    let key = SigningKey::generate().unwrap();
    let mut rows = raws(&chain(10));
    // Swap the contents of rows 4 and 5, keeping the sequence numbers.
    let (a, b) = (rows[3].clone(), rows[4].clone());
    rows[3] = RawEvent { seq: 4, ..b };
    rows[4] = RawEvent { seq: 5, ..a };
    let e = verify(rows, &key, vec![]).unwrap_err();
    assert_eq!(
        (e.seq, e.problem),
        (4, Problem::Reordered { belongs_at: 5 })
    );
}

#[test]
fn a_renumbered_insertion_is_inserted() {
    let key = SigningKey::generate().unwrap();
    let evs = chain(10);
    let mut rows = raws(&evs);
    // An attacker writes a new event at 4 (forging its link) and shifts the rest.
    let forged = NewEvent {
        time: Timestamp::from_second(1_700_000_100).unwrap(),
        kind: "task.ended".into(),
        actor: "user:mallory".into(),
        subject: "task:x".into(),
        task_id: None,
        data: json!({}),
    }
    .chain(4, evs[2].hash);
    for r in rows.iter_mut().skip(3) {
        r.seq += 1;
    }
    rows.insert(3, forged.to_raw());
    let e = verify(rows, &key, vec![]).unwrap_err();
    assert_eq!((e.seq, e.problem), (4, Problem::Inserted));
}

#[test]
fn a_rewritten_chain_fails_its_signed_checkpoint() {
    let key = SigningKey::generate().unwrap();
    let evs = chain(10);
    let cps = vec![cp(&evs, 8, &key)];
    // Rewrite event 3 and recompute every hash after it: the chain is
    // consistent again, but the checkpoint at 8 no longer matches.
    let mut prev = evs[1].hash;
    let mut rows = raws(&evs[..2]);
    for (i, ev) in evs[2..].iter().enumerate() {
        let mut data = ev.data.clone();
        if i == 0 {
            data = json!({"purpose": "rewritten"});
        }
        let e2 = NewEvent {
            time: ev.time,
            kind: ev.kind.clone(),
            actor: ev.actor.clone(),
            subject: ev.subject.clone(),
            task_id: ev.task_id.clone(),
            data,
        }
        .chain(ev.seq, prev);
        prev = e2.hash;
        rows.push(e2.to_raw());
    }
    let e = verify(rows, &key, cps).unwrap_err();
    assert_eq!(e.seq, 8);
    assert!(matches!(e.problem, Problem::BadCheckpoint(_)));
}

#[test]
fn a_truncated_tail_is_missing_when_a_checkpoint_covers_it() {
    let key = SigningKey::generate().unwrap();
    let evs = chain(10);
    let cps = vec![cp(&evs, 10, &key)];
    let rows = raws(&evs[..7]);
    let e = verify(rows, &key, cps).unwrap_err();
    assert_eq!((e.seq, e.problem), (8, Problem::Missing { count: 3 }));
}

#[test]
fn a_checkpoint_from_a_foreign_key_or_tampered_is_bad() {
    let key = SigningKey::generate().unwrap();
    let other = SigningKey::generate().unwrap();
    let evs = chain(10);
    let e = verify(raws(&evs), &key, vec![cp(&evs, 5, &other)]).unwrap_err();
    assert_eq!(e.seq, 5);
    assert!(matches!(e.problem, Problem::BadCheckpoint(_)));

    let mut c = cp(&evs, 5, &key);
    c.signature[0] ^= 1;
    let e = verify(raws(&evs), &key, vec![c]).unwrap_err();
    assert!(matches!(e.problem, Problem::BadCheckpoint(_)));
}

#[test]
fn canonical_encoding_is_stable() {
    // A fixed vector: if this changes, every stored chain breaks.
    let ev = NewEvent {
        time: Timestamp::from_second(1_700_000_000).unwrap(),
        kind: "user.created".into(),
        actor: "system:bootstrap".into(),
        subject: "user:admin".into(),
        task_id: None,
        data: json!({"groups": ["admins"], "admin": true}),
    }
    .chain(1, GENESIS);
    let bytes = canonical_bytes(
        1,
        1_700_000_000_000_000,
        "user.created",
        "system:bootstrap",
        "user:admin",
        None,
        &ev.data,
        &GENESIS,
    );
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        r#"{"actor":"system:bootstrap","data":{"admin":true,"groups":["admins"]},"kind":"user.created","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","seq":1,"subject":"user:admin","task_id":null,"time_us":1700000000000000,"v":1}"#
    );
    assert_eq!(
        hex::encode(ev.hash),
        hex::encode(warrant_crypto::sha256(&canonical_bytes(
            1,
            1_700_000_000_000_000,
            "user.created",
            "system:bootstrap",
            "user:admin",
            None,
            &ev.data,
            &GENESIS,
        )))
    );
}

#[test]
fn swapped_events_far_apart_are_reordered_not_missing() {
    // Regression: a swap of 3 and 7 was reported as "4 events missing".
    let key = SigningKey::generate().unwrap();
    let mut rows = raws(&chain(10));
    let (a, b) = (rows[2].clone(), rows[6].clone());
    rows[2] = RawEvent { seq: 3, ..b };
    rows[6] = RawEvent { seq: 7, ..a };
    let e = verify(rows, &key, vec![]).unwrap_err();
    assert_eq!(
        (e.seq, e.problem),
        (3, Problem::Reordered { belongs_at: 7 })
    );
}

#[test]
fn duplicate_keys_in_stored_data_are_modified() {
    // Regression: the hash covers the parsed value, and serde keeps the last
    // of duplicate keys, so `{"purpose":"evil","purpose":<original>}` verified
    // while raw readers of the column saw "evil".
    let key = SigningKey::generate().unwrap();
    let mut rows = raws(&chain(5));
    let original = rows[1].data.clone();
    rows[1].data = format!(r#"{{"purpose":"evil",{}"#, &original[1..]);
    let e = verify(rows, &key, vec![]).unwrap_err();
    assert_eq!((e.seq, e.problem), (2, Problem::Modified));
}
