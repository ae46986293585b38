//! Deliveries to real HTTP receivers on 127.0.0.1, and config parsing.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::*;

const SECRET: &str = "correct horse battery staple 42";
/// Only a guard against a hung test; no test measures time.
const GUARD: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// A receiver that records what it gets and answers from a script.

#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    RetryAfter(u16, &'static str),
    /// Never answers.
    Hang,
}

#[derive(Debug, Clone)]
struct Seen {
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}` header"))
            .to_str()
            .unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

struct Script {
    replies: Vec<Reply>,
    then: Reply,
    seen: Mutex<Vec<Seen>>,
    arrivals: mpsc::UnboundedSender<Seen>,
}

struct Receiver {
    url: Url,
    script: Arc<Script>,
    arrivals: mpsc::UnboundedReceiver<Seen>,
}

impl Receiver {
    /// Answers `replies` in order, then `then` to every later request.
    async fn start(replies: Vec<Reply>, then: Reply) -> Self {
        let (tx, arrivals) = mpsc::unbounded_channel();
        let script = Arc::new(Script {
            replies,
            then,
            seen: Mutex::new(Vec::new()),
            arrivals: tx,
        });
        let app = axum::Router::new()
            .route("/hook/secret-path", axum::routing::post(receive))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: Url::parse(&format!("http://{addr}/hook/secret-path")).unwrap(),
            script,
            arrivals,
        }
    }

    /// The next request to arrive.
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(GUARD, self.arrivals.recv())
            .await
            .expect("no request arrived")
            .unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.script.seen.lock().unwrap().clone()
    }
}

async fn receive(State(script): State<Arc<Script>>, headers: HeaderMap, body: Bytes) -> Response {
    let seen = Seen { headers, body };
    let reply = {
        let mut all = script.seen.lock().unwrap();
        all.push(seen.clone());
        script
            .replies
            .get(all.len() - 1)
            .copied()
            .unwrap_or(script.then)
    };
    let _ = script.arrivals.send(seen);
    match reply {
        Reply::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Reply::RetryAfter(code, after) => (
            StatusCode::from_u16(code).unwrap(),
            [("retry-after", after)],
        )
            .into_response(),
        Reply::Hang => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------
// Helpers.

fn hook(name: &str, url: &Url, format: WebhookFormat) -> WebhookConfig {
    WebhookConfig {
        name: name.to_owned(),
        url: url.clone(),
        format,
        secret: SecretString::from(SECRET),
        events: Vec::new(),
    }
}

/// Tiny backoffs, a long per-attempt timeout (a hanging receiver stays
/// hung for the whole test).
fn quick() -> RetrySettings {
    RetrySettings {
        attempts: 6,
        first_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        timeout: Duration::from_secs(120),
        queue_capacity: 64,
    }
}

fn notification(event: &str, id: &str) -> Notification {
    Notification {
        event: event.to_owned(),
        approval_id: id.to_owned(),
        body: json!({"approval": {"id": id, "action": "deploy", "environment": "production"}}),
        summary: format!("approval {id}: deploy to production"),
    }
}

/// Waits until the stats satisfy `done`, and returns them.
async fn stats_when(notifier: &Notifier, done: impl Fn(&NotifyStats) -> bool) -> NotifyStats {
    tokio::time::timeout(GUARD, async {
        loop {
            let stats = notifier.stats();
            if done(&stats) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("stats never got there: {:?}", notifier.stats()))
}

/// Checks the signature the way a receiver would: HMAC-SHA-256 under the
/// shared secret over `<timestamp>.<raw body>`.
fn assert_signed(seen: &Seen, secret: &str) {
    let timestamp = seen.header(HEADER_TIMESTAMP);
    assert!(
        timestamp.parse::<i64>().is_ok_and(|t| t > 1_600_000_000),
        "timestamp `{timestamp}`"
    );
    assert_eq!(seen.header(HEADER_SIGNATURE), signature(seen, secret));
}

fn signature(seen: &Seen, secret: &str) -> String {
    let mut signed = seen.header(HEADER_TIMESTAMP).as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(&seen.body);
    format!(
        "sha256={}",
        hex::encode(warrant_crypto::hmac_sha256(secret.as_bytes(), &signed))
    )
}

fn delivery_id(seen: &Seen) -> Uuid {
    let id = Uuid::parse_str(seen.header(HEADER_DELIVERY)).unwrap();
    assert_eq!(id.get_version_num(), 7);
    id
}

// ---------------------------------------------------------------------------
// Deliveries.

#[tokio::test]
async fn json_delivery_is_signed_and_carries_the_documented_headers_and_body() {
    let mut receiver = Receiver::start(vec![], Reply::Status(200)).await;
    let notifier = Notifier::new(
        vec![hook("ops", &receiver.url, WebhookFormat::Json)],
        quick(),
    )
    .unwrap();
    let n = notification("approval.requested", "ap-1");
    notifier.notify(n.clone());

    let seen = receiver.next().await;
    assert_eq!(seen.header("content-type"), "application/json");
    assert_eq!(seen.header(HEADER_EVENT), "approval.requested");
    assert!(seen.header("user-agent").starts_with("warrant-webhook/"));
    let delivery = delivery_id(&seen);
    assert_signed(&seen, SECRET);
    assert_eq!(
        seen.json(),
        json!({
            "event": "approval.requested",
            "delivery": delivery.to_string(),
            "approval_id": "ap-1",
            "data": n.body,
        })
    );

    // The same bytes under another secret do not verify.
    assert_ne!(
        seen.header(HEADER_SIGNATURE),
        signature(&seen, "another secret of some length")
    );

    let stats = stats_when(&notifier, |s| s.delivered == 1).await;
    assert_eq!(
        stats,
        NotifyStats {
            delivered: 1,
            ..NotifyStats::default()
        }
    );
}

#[tokio::test]
async fn chat_delivery_is_slack_shaped_signed_and_defuses_links_and_mentions() {
    let mut receiver = Receiver::start(vec![], Reply::Status(200)).await;
    let notifier = Notifier::new(
        vec![hook("chat", &receiver.url, WebhookFormat::Chat)],
        quick(),
    )
    .unwrap();
    notifier.notify(Notification {
        summary: "agent `bot` asks to deploy <!channel> <https://evil.example|docs> & @all"
            .to_owned(),
        ..notification("approval.requested", "ap-2")
    });

    let seen = receiver.next().await;
    assert_eq!(seen.header("content-type"), "application/json");
    assert_eq!(seen.header(HEADER_EVENT), "approval.requested");
    delivery_id(&seen);
    assert_signed(&seen, SECRET);
    let text = "agent `bot` asks to deploy &lt;!channel&gt; &lt;https://evil.example|docs&gt; &amp; @\u{200B}all";
    assert_eq!(
        seen.json(),
        json!({
            "text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        })
    );
}

#[test]
fn chat_text_stays_within_slacks_limit() {
    let text = chat_text(&"<".repeat(5000));
    assert!(text.chars().count() <= CHAT_TEXT_MAX);
    assert!(text.ends_with("&lt;…"));
    assert_eq!(chat_text("plain"), "plain");
}

#[tokio::test]
async fn server_errors_are_retried_under_the_same_delivery_id() {
    let receiver = Receiver::start(
        vec![Reply::Status(500), Reply::Status(503)],
        Reply::Status(200),
    )
    .await;
    let notifier = Notifier::new(
        vec![hook("ops", &receiver.url, WebhookFormat::Json)],
        quick(),
    )
    .unwrap();
    notifier.notify(notification("approval.approved", "ap-3"));

    let stats = stats_when(&notifier, |s| s.delivered == 1).await;
    assert_eq!(stats.retried, 2);
    assert_eq!(stats.failed_permanently, 0);
    assert_eq!(stats.pending, 0);
    let seen = receiver.seen();
    assert_eq!(seen.len(), 3);
    let first = delivery_id(&seen[0]);
    for attempt in &seen {
        assert_eq!(delivery_id(attempt), first);
        // Each attempt is signed for its own timestamp.
        assert_signed(attempt, SECRET);
        assert_eq!(attempt.json()["delivery"], first.to_string());
    }
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let receiver = Receiver::start(vec![], Reply::Status(400)).await;
    let notifier = Notifier::new(
        vec![hook("ops", &receiver.url, WebhookFormat::Json)],
        quick(),
    )
    .unwrap();
    notifier.notify(notification("approval.denied", "ap-4"));

    let stats = stats_when(&notifier, |s| s.failed_permanently == 1).await;
    assert_eq!(stats.retried, 0);
    assert_eq!(stats.delivered, 0);
    assert_eq!(receiver.seen().len(), 1);
}

#[tokio::test]
async fn too_many_requests_and_request_timeout_are_retried() {
    let receiver = Receiver::start(
        vec![Reply::RetryAfter(429, "0"), Reply::Status(408)],
        Reply::Status(204),
    )
    .await;
    let notifier = Notifier::new(
        vec![hook("ops", &receiver.url, WebhookFormat::Json)],
        quick(),
    )
    .unwrap();
    notifier.notify(notification("approval.expired", "ap-5"));

    let stats = stats_when(&notifier, |s| s.delivered == 1).await;
    assert_eq!(stats.retried, 2);
    assert_eq!(receiver.seen().len(), 3);
}

#[tokio::test]
async fn a_delivery_gives_up_after_its_attempts() {
    let receiver = Receiver::start(vec![], Reply::Status(502)).await;
    let settings = RetrySettings {
        attempts: 3,
        ..quick()
    };
    let notifier = Notifier::new(
        vec![hook("ops", &receiver.url, WebhookFormat::Json)],
        settings,
    )
    .unwrap();
    notifier.notify(notification("approval.revoked", "ap-6"));

    let stats = stats_when(&notifier, |s| s.failed_permanently == 1).await;
    assert_eq!(stats.retried, 2);
    assert_eq!(stats.delivered, 0);
    assert_eq!(receiver.seen().len(), 3);
}

#[tokio::test]
async fn a_receiver_that_refuses_connections_is_retried_then_given_up() {
    // A port that was free a moment ago and has no listener now.
    let addr: SocketAddr = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let url = Url::parse(&format!("http://{addr}/hook")).unwrap();
    let settings = RetrySettings {
        attempts: 2,
        ..quick()
    };
    let notifier = Notifier::new(vec![hook("gone", &url, WebhookFormat::Json)], settings).unwrap();
    notifier.notify(notification("approval.consumed", "ap-7"));

    let stats = stats_when(&notifier, |s| s.failed_permanently == 1).await;
    assert_eq!(stats.retried, 1);
    assert_eq!(stats.delivered, 0);
}

#[tokio::test]
async fn a_hanging_receiver_does_not_delay_another() {
    let mut stuck = Receiver::start(vec![], Reply::Hang).await;
    let mut fine = Receiver::start(vec![], Reply::Status(200)).await;
    let notifier = Notifier::new(
        vec![
            hook("stuck", &stuck.url, WebhookFormat::Json),
            hook("fine", &fine.url, WebhookFormat::Json),
        ],
        quick(),
    )
    .unwrap();
    for i in 0..3 {
        notifier.notify(notification("approval.requested", &format!("ap-{i}")));
    }

    // The stuck receiver has the first request and has not answered it...
    stuck.next().await;
    // ...while the other one gets all three.
    for i in 0..3 {
        let seen = fine.next().await;
        assert_eq!(seen.json()["approval_id"], format!("ap-{i}"));
    }
    let stats = stats_when(&notifier, |s| s.delivered == 3).await;
    assert_eq!(stats.failed_permanently, 0);
    assert_eq!(
        stats.pending, 3,
        "the stuck receiver's three are still pending"
    );
}

#[tokio::test]
async fn notify_on_a_full_queue_drops_instead_of_blocking() {
    let mut stuck = Receiver::start(vec![], Reply::Hang).await;
    let settings = RetrySettings {
        queue_capacity: 2,
        ..quick()
    };
    let notifier = Notifier::new(
        vec![hook("stuck", &stuck.url, WebhookFormat::Json)],
        settings,
    )
    .unwrap();
    notifier.notify(notification("approval.requested", "first"));
    stuck.next().await;

    let sender = notifier.clone();
    let sent = tokio::time::timeout(
        GUARD,
        tokio::task::spawn_blocking(move || {
            for i in 0..50 {
                sender.notify(notification("approval.requested", &format!("ap-{i}")));
            }
        }),
    )
    .await;
    assert!(matches!(sent, Ok(Ok(()))), "notify blocked or failed");

    let stats = notifier.stats();
    // At most the queue and the in-flight slots took any.
    assert!(stats.dropped >= 51 - 2 - MAX_IN_FLIGHT as u64, "{stats:?}");
    assert_eq!(stats.dropped + stats.pending, 51, "{stats:?}");
    assert_eq!(stats.delivered, 0);
}

#[tokio::test]
async fn a_webhook_gets_only_the_events_it_subscribed_to() {
    let mut picky = Receiver::start(vec![], Reply::Status(200)).await;
    let mut all = Receiver::start(vec![], Reply::Status(200)).await;
    let notifier = Notifier::new(
        vec![
            WebhookConfig {
                events: vec!["approval.approved".to_owned()],
                ..hook("picky", &picky.url, WebhookFormat::Json)
            },
            hook("all", &all.url, WebhookFormat::Json),
        ],
        quick(),
    )
    .unwrap();
    notifier.notify(notification("approval.requested", "ap-8"));
    notifier.notify(notification("approval.approved", "ap-8"));

    assert_eq!(picky.next().await.header(HEADER_EVENT), "approval.approved");
    let mut events = vec![
        all.next().await.header(HEADER_EVENT).to_owned(),
        all.next().await.header(HEADER_EVENT).to_owned(),
    ];
    events.sort();
    assert_eq!(events, ["approval.approved", "approval.requested"]);
    stats_when(&notifier, |s| s.delivered == 3).await;
    assert_eq!(picky.seen().len(), 1);
}

#[tokio::test]
async fn shutdown_flushes_queued_deliveries_then_refuses_more() {
    let receiver = Receiver::start(vec![Reply::Status(500)], Reply::Status(200)).await;
    let settings = RetrySettings {
        // A retry must not wait this long: shutdown makes it go at once.
        first_backoff: Duration::from_secs(3600),
        max_backoff: Duration::from_secs(3600),
        ..quick()
    };
    let notifier = Notifier::new(
        vec![hook("ops", &receiver.url, WebhookFormat::Json)],
        settings,
    )
    .unwrap();
    let observer = notifier.clone();
    for i in 0..3 {
        notifier.notify(notification("approval.requested", &format!("ap-{i}")));
    }
    notifier.shutdown(GUARD).await;

    let stats = observer.stats();
    assert_eq!(stats.delivered, 3, "{stats:?}");
    assert_eq!(stats.pending, 0);
    assert_eq!(receiver.seen().len(), 4);

    observer.notify(notification("approval.approved", "ap-0"));
    assert_eq!(observer.stats().dropped, 1);
    assert_eq!(receiver.seen().len(), 4);
}

#[tokio::test]
async fn shutdown_abandons_a_hanging_delivery_after_the_grace_period() {
    let mut stuck = Receiver::start(vec![], Reply::Hang).await;
    let notifier = Notifier::new(
        vec![hook("stuck", &stuck.url, WebhookFormat::Json)],
        quick(),
    )
    .unwrap();
    let observer = notifier.clone();
    notifier.notify(notification("approval.requested", "ap-9"));
    stuck.next().await;

    tokio::time::timeout(GUARD, notifier.shutdown(Duration::from_millis(50)))
        .await
        .expect("shutdown waited past its grace period");
    let stats = observer.stats();
    assert_eq!(stats.dropped, 1, "{stats:?}");
    assert_eq!(stats.pending, 0);
}

#[tokio::test]
async fn a_disabled_notifier_does_nothing() {
    let notifier = Notifier::disabled();
    notifier.notify(notification("approval.requested", "ap-10"));
    assert_eq!(notifier.stats(), NotifyStats::default());
    notifier.shutdown(Duration::ZERO).await;

    let none = Notifier::new(Vec::new(), quick()).unwrap();
    none.notify(notification("approval.requested", "ap-10"));
    assert_eq!(none.stats(), NotifyStats::default());
}

#[test]
fn backoff_doubles_is_capped_jittered_and_honours_retry_after() {
    let s = RetrySettings {
        first_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(60),
        ..RetrySettings::default()
    };
    assert_eq!(backoff(&s, 1, None, 1.0), Duration::from_secs(1));
    assert_eq!(backoff(&s, 1, None, 0.0), Duration::from_millis(500));
    assert_eq!(backoff(&s, 3, None, 1.0), Duration::from_secs(4));
    assert_eq!(backoff(&s, 30, None, 1.0), Duration::from_secs(60));
    assert_eq!(backoff(&s, 30, None, 0.0), Duration::from_secs(30));
    assert_eq!(
        backoff(&s, 1, Some(Duration::from_secs(20)), 0.0),
        Duration::from_secs(20)
    );
    assert_eq!(
        backoff(&s, 1, Some(Duration::from_secs(86_400)), 0.0),
        Duration::from_secs(60)
    );
    let j = jitter();
    assert!((0.0..1.0).contains(&j));
}

// ---------------------------------------------------------------------------
// Config.

#[derive(Deserialize)]
struct File {
    webhooks: Vec<RawWebhook>,
}

fn raw(toml_text: &str) -> Vec<RawWebhook> {
    toml::from_str::<File>(toml_text).unwrap().webhooks
}

/// A 0600 file holding `SECRET` and a newline.
fn secret_file() -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "{SECRET}").unwrap();
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    file
}

fn env(name: &str) -> Result<String, std::env::VarError> {
    match name {
        "HOOK_SECRET" => Ok(SECRET.to_owned()),
        "EMPTY" => Ok(String::new()),
        _ => Err(std::env::VarError::NotPresent),
    }
}

fn parse(toml_text: &str) -> Result<Vec<WebhookConfig>, String> {
    parse_webhooks_with(raw(toml_text), env)
}

fn refused(toml_text: &str, expected: &str) {
    match parse(toml_text) {
        Ok(hooks) => panic!("accepted {hooks:?}"),
        Err(e) => assert!(e.contains(expected), "`{e}` does not say `{expected}`"),
    }
}

#[test]
fn a_full_webhook_config_parses() {
    let file = secret_file();
    let hooks = parse(&format!(
        r#"
        [[webhooks]]
        name = "ops-chat"
        url = "https://hooks.slack.com/services/T0/B0/XXXX"
        format = "chat"
        secret_file = "{}"
        events = ["approval.requested", "approval.approved", "approval.requested"]

        [[webhooks]]
        name = "audit-sink"
        url = "http://127.0.0.1:9000/warrant"
        secret_env = "HOOK_SECRET"
        dangerous_allow_http_loopback = true
        "#,
        file.path().display()
    ))
    .unwrap();
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[0].name, "ops-chat");
    assert_eq!(hooks[0].format, WebhookFormat::Chat);
    assert_eq!(
        hooks[0].secret.expose_secret(),
        SECRET,
        "the newline is not part of it"
    );
    assert_eq!(hooks[0].events, ["approval.requested", "approval.approved"]);
    assert_eq!(hooks[1].format, WebhookFormat::Json);
    assert_eq!(hooks[1].secret.expose_secret(), SECRET);
    assert!(hooks[1].events.is_empty());
    assert!(hooks[1].wants("approval.consumed"));
    assert!(!hooks[0].wants("approval.consumed"));

    // Neither the secret nor the URL's secret path shows in Debug.
    let shown = format!(
        "{hooks:?} {:?}",
        raw(&format!(
            "[[webhooks]]\nname = \"a\"\nurl = \"https://hooks.slack.com/services/T0/B0/XXXX\"\nsecret_file = \"{}\"",
            file.path().display()
        ))
    );
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains("XXXX"), "{shown}");
    assert!(shown.contains("https://hooks.slack.com"), "{shown}");
}

#[test]
fn bad_urls_are_refused() {
    let base = "name = \"a\"\nsecret_env = \"HOOK_SECRET\"";
    refused(
        &format!("[[webhooks]]\n{base}\nurl = \"not a url\""),
        "`url`: not an absolute url",
    );
    refused(
        &format!("[[webhooks]]\n{base}\nurl = \"ftp://example.com/x\""),
        "https is required",
    );
    refused(
        &format!("[[webhooks]]\n{base}\nurl = \"https://user:pw@example.com/x\""),
        "user info is not allowed",
    );
    // Plain http: never beyond loopback, and on loopback only when allowed.
    refused(
        &format!(
            "[[webhooks]]\n{base}\nurl = \"http://example.com/x\"\ndangerous_allow_http_loopback = true"
        ),
        "https is required",
    );
    refused(
        &format!(
            "[[webhooks]]\n{base}\nurl = \"http://10.0.0.1/x\"\ndangerous_allow_http_loopback = true"
        ),
        "https is required",
    );
    refused(
        &format!("[[webhooks]]\n{base}\nurl = \"http://127.0.0.1:9/x\""),
        "dangerous_allow_http_loopback",
    );
    for ok in [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://[::1]:9/x",
    ] {
        parse(&format!(
            "[[webhooks]]\n{base}\nurl = \"{ok}\"\ndangerous_allow_http_loopback = true"
        ))
        .unwrap();
    }
    // A refused URL is not echoed: it may be a credential.
    let e = parse(&format!(
        "[[webhooks]]\n{base}\nurl = \"http://hooks.example.com/services/SECRETPATH\""
    ))
    .unwrap_err();
    assert!(!e.contains("SECRETPATH"), "{e}");
}

#[test]
fn exactly_one_secret_source_is_required() {
    let file = secret_file();
    refused(
        &format!(
            "[[webhooks]]\nname = \"a\"\nurl = \"https://x.example\"\nsecret_env = \"HOOK_SECRET\"\nsecret_file = \"{}\"",
            file.path().display()
        ),
        "set only one of `secret_env` and `secret_file`",
    );
    refused(
        "[[webhooks]]\nname = \"a\"\nurl = \"https://x.example\"",
        "a secret is required",
    );
}

#[test]
fn unusable_secrets_are_refused() {
    let hook =
        |source: &str| format!("[[webhooks]]\nname = \"a\"\nurl = \"https://x.example\"\n{source}");
    refused(
        &hook("secret_env = \"NOT_SET\""),
        "`NOT_SET` named by `secret_env` is not set",
    );
    refused(
        &hook("secret_env = \"EMPTY\""),
        "`EMPTY` named by `secret_env` is not set",
    );

    let file = secret_file();
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o640)).unwrap();
    refused(
        &hook(&format!("secret_file = \"{}\"", file.path().display())),
        "is accessible to other users",
    );
    refused(
        &hook("secret_file = \"/nonexistent/warrant-secret\""),
        "cannot read the secret file",
    );

    let mut short = tempfile::NamedTempFile::new().unwrap();
    write!(short, "too-short").unwrap();
    std::fs::set_permissions(short.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = parse(&hook(&format!(
        "secret_file = \"{}\"",
        short.path().display()
    )))
    .unwrap_err();
    assert!(e.contains("the secret is too short"), "{e}");
    assert!(!e.contains("too-short"), "the secret leaked: {e}");
}

#[test]
fn a_secret_comes_from_the_real_environment() {
    // Set by cargo for the tests it runs; setting one here would need
    // `unsafe`. Long enough to be a secret.
    let expected = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    assert!(expected.len() >= MIN_SECRET_BYTES);
    let hooks = parse_webhooks(raw(
        "[[webhooks]]\nname = \"a\"\nurl = \"https://x.example\"\nsecret_env = \"CARGO_MANIFEST_DIR\"",
    ))
    .unwrap();
    assert_eq!(hooks[0].secret.expose_secret(), expected);
    let e = parse_webhooks(raw(
        "[[webhooks]]\nname = \"a\"\nurl = \"https://x.example\"\nsecret_env = \"WARRANT_TEST_SURELY_UNSET_VARIABLE\"",
    ))
    .unwrap_err();
    assert!(e.contains("is not set"), "{e}");
}

#[test]
fn names_events_formats_and_fields_are_checked() {
    let base = "url = \"https://x.example\"\nsecret_env = \"HOOK_SECRET\"";
    refused(
        &format!(
            "[[webhooks]]\nname = \"a\"\n{base}\nevents = [\"approval.requested\", \"approval.nope\"]"
        ),
        "unknown event `approval.nope`",
    );
    refused(
        &format!("[[webhooks]]\nname = \"Bad Name\"\n{base}"),
        "invalid webhook name",
    );
    refused(
        &format!("[[webhooks]]\nname = \"a\"\n{base}\n[[webhooks]]\nname = \"a\"\n{base}"),
        "webhook `a` is declared twice",
    );
    // serde refuses these before parsing.
    assert!(
        toml::from_str::<File>(&format!(
            "[[webhooks]]\nname = \"a\"\n{base}\nformat = \"xml\""
        ))
        .is_err()
    );
    assert!(
        toml::from_str::<File>(&format!(
            "[[webhooks]]\nname = \"a\"\n{base}\nsecret = \"inline\""
        ))
        .is_err()
    );
}
