//! A flood of refused requests cannot grow the audit log at request rate:
//! past the budget, refusals are still refused but only counted, and the
//! counts are written as one `audit.refusals_suppressed` event. Every
//! refusal is either its own event or in a count.

use crate::support::{Server, open_store, options, private_tempdir};
use crate::tokens::post_token;
use warrant_store::AuditFilter;

#[tokio::test]
async fn refusals_past_the_budget_are_counted_not_lost() {
    let root = private_tempdir();
    let config = root.path().join("warrant.toml");
    std::fs::write(&config, "[audit]\nrefusal_events_per_second = 2\n").unwrap();
    let data = root.path().join("data");
    let mut opts = options(&data);
    opts.config_file = Some(config);
    let server = Server::start_with(opts).await.unwrap();
    const FLOOD: u64 = 40;
    for _ in 0..FLOOD {
        let (r, _) = post_token(&server, &[("grant_type", "password")], None).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.body["error"], "unsupported_grant_type");
    }
    server.stop().await.unwrap();

    let store = open_store(&data).await;
    let kind = |k: &str| {
        let store = store.clone();
        let k = k.to_owned();
        async move {
            store
                .list_audit(&AuditFilter {
                    after: 0,
                    task_id: None,
                    kind: Some(k),
                    limit: Some(1000),
                })
                .await
                .unwrap()
        }
    };
    let single = kind("token.refused").await.len() as u64;
    let summaries = kind("audit.refusals_suppressed").await;
    let counted: u64 = summaries
        .iter()
        .map(|e| e.data["total"].as_u64().unwrap())
        .sum();
    assert!(
        single < FLOOD,
        "no refusal was suppressed ({single} events)"
    );
    assert!(!summaries.is_empty());
    assert_eq!(single + counted, FLOOD, "a refusal was lost");
    let check = &summaries[0].data["counts"][0];
    assert_eq!(check["kind"], "token.refused");
    assert_eq!(check["check"], "grant_type");
    store.close().await;
}
