//! The revocation list and stream (`/v1/revocations`, `/v1/revocations/stream`)
//! against the real server, read by a real HTTP client as a byte stream.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Api, Server};
use crate::tokens::{redeem, setup};

/// Guards a read against a hang; never an assertion about speed.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// One Server-Sent Events connection, parsed as it arrives.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

/// One `revocation` event: its `id:` and its data.
#[derive(Debug)]
struct Received {
    id: i64,
    data: Value,
}

impl EventStream {
    async fn connect(api: &Api, last_event_id: Option<i64>) -> Self {
        Self::connect_to(api, "/v1/revocations/stream", last_event_id).await
    }

    async fn connect_to(api: &Api, path: &str, last_event_id: Option<i64>) -> Self {
        let mut req = api
            .http
            .get(format!("{}{path}", api.base))
            .bearer_auth(&api.admin);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let response = req.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let ct = response.headers()["content-type"].to_str().unwrap();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next `revocation` event, skipping keep-alive comments.
    async fn next(&mut self) -> Received {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse::<i64>().unwrap());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if event.is_none() && id.is_none() {
                    continue; // a keep-alive comment
                }
                assert_eq!(event.as_deref(), Some("revocation"), "{block}");
                let data: Value = serde_json::from_str(&data).unwrap();
                let id = id.unwrap();
                assert_eq!(data["id"], id, "the data names the event id");
                return Received { id, data };
            }
            let chunk = tokio::time::timeout(HANG_GUARD, self.response.chunk())
                .await
                .expect("no event arrived")
                .unwrap()
                .expect("the stream ended");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

async fn end(server: &Server, token: &str, task: &Value) {
    let id = task["id"].as_str().unwrap();
    server
        .post(token, &format!("/v1/tasks/{id}/end"), json!({}))
        .await
        .assert_ok(200);
}

#[tokio::test]
async fn a_client_sees_revocations_and_resumes_with_last_event_id_without_gaps_or_duplicates() {
    let (server, bob, task) = setup().await;
    let (_, _token) = redeem(&server, &task).await;
    let run_id = server
        .get(&bob, &format!("/v1/tasks/{}", task["id"].as_str().unwrap()))
        .await;
    run_id.assert_ok(200);

    let mut stream = EventStream::connect(&server, None).await;
    end(&server, &bob, &task).await;
    // The run's revocation, then the task's.
    let run = stream.next().await;
    assert_eq!(run.data["kind"], "run");
    assert_eq!(run.data["task_id"], task["id"]);
    assert_eq!(run.data["reason"], "completed");
    let ended = stream.next().await;
    assert_eq!(ended.data["kind"], "task");
    assert_eq!(ended.data["subject_id"], task["id"]);
    assert!(ended.id > run.id);
    drop(stream);

    // While disconnected, two more tasks end.
    let missed: Vec<Value> = {
        let mut v = Vec::new();
        for _ in 0..2 {
            let t = server.add_task(&bob, "claude", "30m").await;
            end(&server, &bob, &t).await;
            v.push(t);
        }
        v
    };
    let mut stream = EventStream::connect(&server, Some(ended.id)).await;
    let first = stream.next().await;
    let second = stream.next().await;
    assert_eq!(first.data["subject_id"], missed[0]["id"]);
    assert_eq!(second.data["subject_id"], missed[1]["id"]);
    assert!(first.id > ended.id && second.id > first.id);
    // Nothing else was pending: the next event is a new one.
    let later = server.add_task(&bob, "claude", "30m").await;
    end(&server, &bob, &later).await;
    let next = stream.next().await;
    assert_eq!(next.data["subject_id"], later["id"]);
    drop(stream);

    // `?after=` resumes too; the header wins over it.
    let path = format!("/v1/revocations/stream?after={}", second.id);
    let mut stream = EventStream::connect_to(&server, &path, None).await;
    assert_eq!(stream.next().await.id, next.id);
    drop(stream);
    let mut stream =
        EventStream::connect_to(&server, "/v1/revocations/stream?after=0", Some(second.id)).await;
    assert_eq!(stream.next().await.id, next.id);

    // The list holds the same rows in order.
    let r = server.get(&server.admin, "/v1/revocations?after=0").await;
    let list = r.assert_ok(200)["revocations"].as_array().unwrap().clone();
    let ids: Vec<i64> = list.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![run.id, ended.id, first.id, second.id, next.id]);
    let r = server
        .get(
            &server.admin,
            &format!("/v1/revocations?after={}", second.id),
        )
        .await;
    assert_eq!(r.assert_ok(200)["revocations"].as_array().unwrap().len(), 1);

    // Stopping the server ends an open stream instead of waiting on it.
    server.stop().await.unwrap();
    let rest = tokio::time::timeout(HANG_GUARD, stream.response.chunk())
        .await
        .expect("the stream did not end");
    assert!(matches!(rest, Ok(None) | Err(_)), "{rest:?}");
}

#[tokio::test]
async fn the_stream_is_for_admins_and_checks_its_resume_point() {
    let (server, bob, _) = setup().await;
    server
        .get(&bob, "/v1/revocations/stream")
        .await
        .assert_problem(403, "forbidden");
    server
        .get(&bob, "/v1/revocations")
        .await
        .assert_problem(403, "forbidden");
    server
        .send(Method::GET, "/v1/revocations/stream", None, None, None)
        .await
        .assert_problem(401, "unauthenticated");
    server
        .get(&server.admin, "/v1/revocations/stream?after=-1")
        .await
        .assert_problem(400, "invalid_query");
    let r = server
        .http
        .get(format!("{}/v1/revocations/stream", server.base))
        .bearer_auth(&server.admin)
        .header("Last-Event-ID", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn kill_and_run_revocation_are_admin_only_checked_and_on_the_stream() {
    let (server, bob, task) = setup().await;
    let (client, token) = redeem(&server, &task).await;
    let r = crate::introspect::introspect(&server, Some(&bob), &token).await;
    assert_eq!(r.body["active"], true);
    for bad in [
        json!({}),
        json!({"agent": "claude", "user": "bob"}),
        json!({"all": false}),
        json!({"agent": "Not A Name"}),
        json!({"task": "nope"}),
        json!({"everything": true}),
    ] {
        let r = server.post(&server.admin, "/v1/kill", bad.clone()).await;
        assert!(r.status == 422 || r.status == 400, "{bad}: {}", r.text);
    }
    server
        .post(&bob, "/v1/kill", json!({"all": true}))
        .await
        .assert_problem(403, "forbidden");
    server
        .post(
            &bob,
            "/v1/runs/00000000-0000-0000-0000-000000000000/revoke",
            json!({}),
        )
        .await
        .assert_problem(403, "forbidden");
    server
        .post(
            &server.admin,
            "/v1/runs/00000000-0000-0000-0000-000000000000/revoke",
            json!({}),
        )
        .await
        .assert_problem(404, "run_not_found");
    assert_eq!(
        crate::tokens::me_status(&server, &client, &token).await,
        200
    );

    let r = server
        .post(&server.admin, "/v1/kill", json!({"user": "bob"}))
        .await;
    assert_eq!(r.assert_ok(200)["ended"], json!([task["id"]]));
    assert_eq!(
        crate::tokens::me_status(&server, &client, &token).await,
        401
    );
    // Killing again matches nothing.
    let r = server
        .post(&server.admin, "/v1/kill", json!({"user": "bob"}))
        .await;
    assert_eq!(r.assert_ok(200)["ended"], json!([]));
    let r = server.get(&server.admin, "/v1/revocations").await;
    let rows = r.assert_ok(200)["revocations"].as_array().unwrap().clone();
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["run", "task"]);
    assert!(rows.iter().all(|r| r["reason"] == "killed"));
    server.stop().await.unwrap();
}
