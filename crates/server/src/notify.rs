//! Approval notifications: signed webhook deliveries, best effort.
//!
//! An approval lives in the store; a notification only tells people about
//! it. So this module never blocks the request path and never fails it:
//! [`Notifier::notify`] puts the notification on a bounded queue per
//! webhook and returns. One background task per webhook delivers it (a few
//! deliveries at a time), retrying with exponential backoff and jitter, so
//! a slow or broken receiver delays only its own deliveries.
//!
//! # What a receiver gets
//!
//! `POST <url>` with `Content-Type: application/json` and:
//!
//! - `X-Warrant-Event`: the event, e.g. `approval.requested`;
//! - `X-Warrant-Delivery`: a UUIDv7 naming this delivery to this webhook,
//!   the same on every retry (receivers deduplicate on it);
//! - `X-Warrant-Timestamp`: Unix seconds when this attempt was signed;
//! - `X-Warrant-Signature`: `sha256=<hex>`, the HMAC-SHA-256 under the
//!   webhook's shared secret of `<timestamp>.<raw body>` (the timestamp
//!   header's decimal text, a `.`, then the body bytes exactly as
//!   received).
//!
//! A receiver recomputes the HMAC over the raw body, compares it in
//! constant time, and rejects a timestamp more than a few minutes from its
//! clock, which refuses replays (as GitHub's and Stripe's signatures do).
//! Each attempt is signed afresh, so a retry carries a current timestamp.
//!
//! Bodies: `format = "json"` sends
//! `{"event", "delivery", "approval_id", "data"}` with the caller's JSON in
//! `data`; `format = "chat"` sends a Slack- and Mattermost-compatible
//! `{"text": summary, "blocks": [{"type": "section", "text": {"type":
//! "mrkdwn", "text": summary}}]}`. In chat text, `&`, `<` and `>` are
//! escaped and `@` is followed by a zero-width space, so text an agent
//! chose cannot become a link or an `@channel` mention.
//!
//! Retried: connection errors, timeouts, 408, 429 and 5xx (a `Retry-After`
//! in seconds is honoured, capped at the maximum backoff). Anything else
//! that is not 2xx (other 4xx, redirects, which are not followed) fails
//! the delivery at once. Deliveries to one webhook may arrive out of order.
//!
//! Never logged: the secret and the URL (a chat webhook's URL is itself a
//! credential); logs name the webhook.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, USER_AGENT};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

/// The events a webhook may subscribe to.
pub const EVENTS: [&str; 6] = [
    "approval.requested",
    "approval.approved",
    "approval.denied",
    "approval.expired",
    "approval.revoked",
    "approval.consumed",
];

pub const HEADER_EVENT: &str = "x-warrant-event";
pub const HEADER_DELIVERY: &str = "x-warrant-delivery";
pub const HEADER_TIMESTAMP: &str = "x-warrant-timestamp";
pub const HEADER_SIGNATURE: &str = "x-warrant-signature";

/// Shorter secrets are refused: they can be guessed offline from one
/// signed delivery.
pub const MIN_SECRET_BYTES: usize = 16;
/// Deliveries to one webhook in flight at once.
const MAX_IN_FLIGHT: usize = 4;
/// Slack refuses a section text longer than this.
const CHAT_TEXT_MAX: usize = 3000;
const AGENT: &str = concat!("warrant-webhook/", env!("CARGO_PKG_VERSION"));

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// `{"event", "delivery", "approval_id", "data"}`.
    #[default]
    Json,
    /// Slack/Mattermost incoming-webhook `{"text", "blocks"}`.
    Chat,
}

/// One `[[webhooks]]` entry of the config file, as written.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    /// The name of an environment variable holding the secret.
    pub secret_env: Option<String>,
    /// A file holding the secret (one trailing newline is ignored); it must
    /// not be accessible to the group or others.
    pub secret_file: Option<PathBuf>,
    /// Empty: every event.
    #[serde(default)]
    pub events: Vec<String>,
    /// Allows `http://` to `127.0.0.1`, `[::1]` or `localhost` (tests,
    /// a local relay).
    #[serde(default)]
    pub dangerous_allow_http_loopback: bool,
}

impl fmt::Debug for RawWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawWebhook")
            .field("name", &self.name)
            .field("url", &redacted_url(Url::parse(&self.url).ok().as_ref()))
            .field("format", &self.format)
            .field("secret_env", &self.secret_env)
            .field("secret_file", &self.secret_file)
            .field("events", &self.events)
            .field(
                "dangerous_allow_http_loopback",
                &self.dangerous_allow_http_loopback,
            )
            .finish()
    }
}

/// A checked webhook.
#[derive(Clone)]
pub struct WebhookConfig {
    pub name: String,
    pub url: Url,
    pub format: WebhookFormat,
    /// The HMAC key.
    pub secret: SecretString,
    /// Empty: every event.
    pub events: Vec<String>,
}

impl WebhookConfig {
    fn wants(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event)
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &redacted_url(Some(&self.url)))
            .field("format", &self.format)
            .field("secret", &"[REDACTED]")
            .field("events", &self.events)
            .finish()
    }
}

/// Scheme, host and port only: the path of a chat webhook URL is a secret.
fn redacted_url(url: Option<&Url>) -> String {
    match url {
        Some(url) => format!("{}/...", url.origin().ascii_serialization()),
        None => "(not a url)".to_owned(),
    }
}

/// Checks the config file's webhooks and reads their secrets.
pub fn parse_webhooks(raw: Vec<RawWebhook>) -> Result<Vec<WebhookConfig>, String> {
    parse_webhooks_with(raw, |name| std::env::var(name))
}

/// [`parse_webhooks`] with the environment given (tests cannot set
/// variables without `unsafe`).
fn parse_webhooks_with(
    raw: Vec<RawWebhook>,
    env: impl Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<Vec<WebhookConfig>, String> {
    let mut names = HashSet::new();
    let mut hooks = Vec::with_capacity(raw.len());
    for hook in raw {
        let hook = parse_webhook(hook, &env)?;
        if !names.insert(hook.name.clone()) {
            return Err(format!("webhook `{}` is declared twice", hook.name));
        }
        hooks.push(hook);
    }
    Ok(hooks)
}

fn parse_webhook(
    raw: RawWebhook,
    env: &impl Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<WebhookConfig, String> {
    let name = warrant_core::Name::parse("webhook name", &raw.name)
        .map_err(|e| e.to_string())?
        .as_str()
        .to_owned();
    let fail = |why: String| format!("webhook `{name}`: {why}");
    // The URL is never echoed: it may be a credential.
    let url = checked_url(&raw.url, raw.dangerous_allow_http_loopback)
        .map_err(|why| fail(format!("`url`: {why}")))?;
    let secret = match (&raw.secret_env, &raw.secret_file) {
        (Some(var), None) => secret_from_env(var, env),
        (None, Some(path)) => secret_from_file(path),
        (Some(_), Some(_)) => Err("set only one of `secret_env` and `secret_file`".to_owned()),
        (None, None) => Err("a secret is required: set `secret_env` or `secret_file`".to_owned()),
    }
    .map_err(fail)?;
    if secret.expose_secret().len() < MIN_SECRET_BYTES {
        return Err(fail(format!(
            "the secret is too short: use at least {MIN_SECRET_BYTES} bytes (`openssl rand -hex 32` makes one)"
        )));
    }
    let mut events: Vec<String> = Vec::with_capacity(raw.events.len());
    for event in raw.events {
        if !EVENTS.contains(&event.as_str()) {
            return Err(fail(format!(
                "unknown event `{}`: expected one of {}",
                short(&event),
                EVENTS.map(|e| format!("`{e}`")).join(", ")
            )));
        }
        if !events.contains(&event) {
            events.push(event);
        }
    }
    Ok(WebhookConfig {
        name,
        url,
        format: raw.format,
        secret,
        events,
    })
}

/// `https://` with a host; `http://` only for a loopback host when the
/// dangerous allowance is set.
fn checked_url(raw: &str, allow_http_loopback: bool) -> Result<Url, &'static str> {
    let url = Url::parse(raw).map_err(|_| "not an absolute url")?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("user info is not allowed");
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_http_loopback && is_loopback(&url) => Ok(url),
        "http" => Err(
            "https is required (plain http only to a loopback address with `dangerous_allow_http_loopback`)",
        ),
        _ => Err("https is required"),
    }
}

fn is_loopback(url: &Url) -> bool {
    matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
}

fn secret_from_env(
    var: &str,
    env: &impl Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<SecretString, String> {
    match env(var) {
        Ok(value) if !value.is_empty() => Ok(SecretString::from(value)),
        Ok(_) | Err(std::env::VarError::NotPresent) => Err(format!(
            "the environment variable `{}` named by `secret_env` is not set",
            short(var)
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "the environment variable `{}` named by `secret_env` is not valid UTF-8",
            short(var)
        )),
    }
}

fn secret_from_file(path: &Path) -> Result<SecretString, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the secret file `{shown}`: {e}"))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "the secret file `{shown}` is accessible to other users: run `chmod 600` on it"
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the secret file `{shown}`: {e}"))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok(SecretString::from(text.to_owned()))
}

/// User input shown in an error: at most 128 characters.
fn short(s: &str) -> String {
    s.chars().take(128).collect()
}

/// Something to tell the webhooks about.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// One of [`EVENTS`].
    pub event: String,
    pub approval_id: String,
    /// The JSON format's `data`.
    pub body: Value,
    /// One line for people: the chat format's text.
    pub summary: String,
}

/// How deliveries are retried, and how many may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    /// Attempts per delivery, the first included.
    pub attempts: u32,
    /// The wait before the first retry; it doubles for each retry after.
    pub first_backoff: Duration,
    /// The longest wait between attempts (also caps `Retry-After`).
    pub max_backoff: Duration,
    /// Per attempt, connecting included.
    pub timeout: Duration,
    /// Notifications waiting per webhook; past it, new ones are dropped.
    pub queue_capacity: usize,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            attempts: 6,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            queue_capacity: 1024,
        }
    }
}

/// Counts since start, over all webhooks; one notification sent to two
/// webhooks is two deliveries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifyStats {
    /// Deliveries a receiver accepted (2xx).
    pub delivered: u64,
    /// Deliveries given up: refused (4xx), out of attempts, or still
    /// failing when the server stopped.
    pub failed_permanently: u64,
    /// Attempts after a delivery's first.
    pub retried: u64,
    /// Deliveries never made: the webhook's queue was full, the notifier
    /// was shut down, or the shutdown grace period ran out.
    pub dropped: u64,
    /// Deliveries queued or in progress now.
    pub pending: u64,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed_permanently: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
    pending: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn done(&self) {
        // Saturating: a delivery aborted at shutdown may finish after its
        // count was already moved to `dropped`.
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }
}

/// Sends notifications to the configured webhooks. Cheap to clone; all
/// clones share the queues.
#[derive(Debug, Clone)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    queues: Vec<Queue>,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field(
                "webhooks",
                &self.queues.iter().map(|q| &q.hook.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

struct Queue {
    hook: Arc<WebhookConfig>,
    tx: mpsc::Sender<Arc<Notification>>,
}

/// What a webhook's deliveries share.
struct Target {
    hook: Arc<WebhookConfig>,
    http: reqwest::Client,
    settings: RetrySettings,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
}

impl Notifier {
    /// Starts one delivery task per webhook. Call inside a tokio runtime.
    /// With no webhooks this is [`Notifier::disabled`].
    pub fn new(hooks: Vec<WebhookConfig>, settings: RetrySettings) -> Result<Self, String> {
        if hooks.is_empty() {
            return Ok(Self::disabled());
        }
        let http = reqwest::Client::builder()
            // A redirect could leave https or the configured host.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|e| format!("cannot build the webhook http client: {}", chain(&e)))?;
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = watch::channel(false);
        let mut queues = Vec::with_capacity(hooks.len());
        let mut workers = Vec::with_capacity(hooks.len());
        for hook in hooks {
            let hook = Arc::new(hook);
            let (tx, rx) = mpsc::channel(settings.queue_capacity.max(1));
            let target = Arc::new(Target {
                hook: hook.clone(),
                http: http.clone(),
                settings,
                counters: counters.clone(),
                stop: stopped.clone(),
            });
            workers.push(tokio::spawn(run_webhook(target, rx)));
            queues.push(Queue { hook, tx });
        }
        Ok(Self {
            inner: Some(Arc::new(Inner {
                queues,
                counters,
                stop,
                workers: Mutex::new(workers),
            })),
        })
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Queues `n` for every webhook subscribed to its event. Never waits:
    /// a webhook whose queue is full (or a stopped notifier) drops it,
    /// logs a warning and counts it in [`NotifyStats::dropped`]. The newest
    /// notification is the one dropped, so the ones queued keep their order.
    pub fn notify(&self, n: Notification) {
        let Some(inner) = &self.inner else {
            return;
        };
        let n = Arc::new(n);
        for queue in inner.queues.iter().filter(|q| q.hook.wants(&n.event)) {
            // Counted before sending: the delivery may finish before
            // `try_send` returns.
            Counters::add(&inner.counters.pending, 1);
            let why = match queue.tx.try_send(n.clone()) {
                Ok(()) => continue,
                Err(TrySendError::Full(_)) => "its queue is full",
                Err(TrySendError::Closed(_)) => "notifications are shut down",
            };
            inner.counters.done();
            Counters::add(&inner.counters.dropped, 1);
            tracing::warn!(
                webhook = %queue.hook.name,
                event = %n.event,
                approval = %n.approval_id,
                "dropping a webhook notification: {why}"
            );
        }
    }

    pub fn stats(&self) -> NotifyStats {
        let Some(inner) = &self.inner else {
            return NotifyStats::default();
        };
        let c = &inner.counters;
        NotifyStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            failed_permanently: c.failed_permanently.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            pending: c.pending.load(Ordering::Relaxed),
        }
    }

    /// Stops taking notifications (for every clone) and tries to finish
    /// the queued and in-flight deliveries within `grace`: a delivery
    /// waiting to retry tries once more at once, then gives up. What is
    /// left after `grace` is abandoned and counted as dropped.
    pub async fn shutdown(self, grace: Duration) {
        let Some(inner) = self.inner else {
            return;
        };
        inner.stop.send_replace(true);
        let mut workers = std::mem::take(
            &mut *inner
                .workers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let flushed = tokio::time::timeout(grace, async {
            for worker in &mut workers {
                let _ = worker.await;
            }
        })
        .await;
        if flushed.is_ok() {
            return;
        }
        for worker in &workers {
            // Dropping a worker's task set aborts its deliveries.
            worker.abort();
        }
        for worker in workers {
            let _ = worker.await;
        }
        let left = inner.counters.pending.swap(0, Ordering::Relaxed);
        Counters::add(&inner.counters.dropped, left);
        tracing::warn!(
            deliveries = left,
            grace = ?grace,
            "webhook deliveries were still pending when the shutdown grace period ended: dropped"
        );
    }
}

async fn wait_stop(stop: &mut watch::Receiver<bool>) {
    // An error means the notifier is gone: stop as well.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// One webhook's delivery loop: takes notifications off its queue and
/// delivers up to [`MAX_IN_FLIGHT`] at once.
async fn run_webhook(target: Arc<Target>, mut rx: mpsc::Receiver<Arc<Notification>>) {
    let mut stop = target.stop.clone();
    let mut in_flight = JoinSet::new();
    loop {
        while in_flight.try_join_next().is_some() {}
        if in_flight.len() >= MAX_IN_FLIGHT {
            tokio::select! {
                () = wait_stop(&mut stop) => break,
                _ = in_flight.join_next() => continue,
            }
        }
        tokio::select! {
            () = wait_stop(&mut stop) => break,
            next = rx.recv() => match next {
                Some(n) => {
                    in_flight.spawn(deliver(target.clone(), n));
                }
                None => break,
            },
        }
    }
    // Stopping: refuse new notifications, then deliver what was queued.
    rx.close();
    while let Some(n) = rx.recv().await {
        while in_flight.len() >= MAX_IN_FLIGHT {
            in_flight.join_next().await;
        }
        in_flight.spawn(deliver(target.clone(), n));
    }
    while in_flight.join_next().await.is_some() {}
}

/// How one attempt went.
enum Attempt {
    Delivered,
    /// Worth trying again, after at least `retry_after` if the receiver
    /// said so.
    Retry {
        why: String,
        retry_after: Option<Duration>,
    },
    Refused(String),
}

async fn deliver(target: Arc<Target>, n: Arc<Notification>) {
    let hook = &target.hook;
    let settings = &target.settings;
    let counters = &target.counters;
    let delivery = Uuid::now_v7();
    let body = payload(hook.format, &n, delivery);
    let mut stop = target.stop.clone();
    let mut attempt = 1;
    let mut last_try = false;
    loop {
        let (why, retry_after) = match send(&target, &n.event, delivery, &body).await {
            Attempt::Delivered => {
                Counters::add(&counters.delivered, 1);
                tracing::debug!(webhook = %hook.name, event = %n.event, %delivery, attempt, "webhook delivered");
                break;
            }
            Attempt::Refused(why) => {
                Counters::add(&counters.failed_permanently, 1);
                tracing::warn!(webhook = %hook.name, event = %n.event, approval = %n.approval_id, %delivery, attempt, "webhook delivery refused, not retrying: {why}");
                break;
            }
            Attempt::Retry { why, retry_after } => (why, retry_after),
        };
        if attempt >= settings.attempts.max(1) || last_try {
            Counters::add(&counters.failed_permanently, 1);
            let reason = if last_try {
                "the server is stopping"
            } else {
                "no attempts left"
            };
            tracing::warn!(webhook = %hook.name, event = %n.event, approval = %n.approval_id, %delivery, attempt, "webhook delivery failed, giving up ({reason}): {why}");
            break;
        }
        let wait = backoff(settings, attempt, retry_after, jitter());
        tracing::info!(webhook = %hook.name, event = %n.event, %delivery, attempt, retry_in = ?wait, "webhook delivery failed, will retry: {why}");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            // Stopping: one more try now rather than a wait the shutdown
            // grace period may not cover.
            () = wait_stop(&mut stop) => last_try = true,
        }
        Counters::add(&counters.retried, 1);
        attempt += 1;
    }
    counters.done();
}

async fn send(target: &Target, event: &str, delivery: Uuid, body: &[u8]) -> Attempt {
    let timestamp = jiff::Timestamp::now().as_second().to_string();
    let signature = sign(target.hook.secret.expose_secret(), &timestamp, body);
    let Ok(event) = HeaderValue::from_str(event) else {
        return Attempt::Refused("the event name is not a valid header value".to_owned());
    };
    let sent = target
        .http
        .post(target.hook.url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, AGENT)
        .header(HEADER_EVENT, event)
        .header(HEADER_DELIVERY, delivery.to_string())
        .header(HEADER_TIMESTAMP, timestamp)
        .header(HEADER_SIGNATURE, signature)
        .body(body.to_vec())
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(e) if e.is_builder() => return Attempt::Refused(chain(&e.without_url())),
        Err(e) => {
            return Attempt::Retry {
                why: chain(&e.without_url()),
                retry_after: None,
            };
        }
    };
    let status = response.status();
    if status.is_success() {
        return Attempt::Delivered;
    }
    let why = format!("the receiver answered {status}");
    if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Attempt::Retry { why, retry_after }
    } else {
        Attempt::Refused(why)
    }
}

/// `sha256=<hex HMAC-SHA-256(secret, "<timestamp>.<body>")>`.
fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut signed = Vec::with_capacity(timestamp.len() + 1 + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    format!(
        "sha256={}",
        hex::encode(warrant_crypto::hmac_sha256(secret.as_bytes(), &signed))
    )
}

/// The wait after failed attempt `attempt` (1-based): `first_backoff`
/// doubled per retry, capped at `max_backoff`, its upper half scaled by
/// `jitter` (0..1) so receivers that come back are not hit by every
/// delivery at once; never shorter than the receiver's capped
/// `Retry-After`.
fn backoff(
    settings: &RetrySettings,
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let doubling = 2u32.saturating_pow(attempt.saturating_sub(1));
    let full = settings
        .first_backoff
        .saturating_mul(doubling)
        .min(settings.max_backoff);
    let half = full / 2;
    let wait = half + half.mul_f64(jitter.clamp(0.0, 1.0));
    match retry_after {
        Some(asked) => wait.max(asked.min(settings.max_backoff)),
        None => wait,
    }
}

/// A uniform value in 0..1; 1 when the system's generator fails (the
/// longest wait, never a storm).
fn jitter() -> f64 {
    match warrant_crypto::random_bytes::<8>() {
        Ok(bytes) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 1.0,
    }
}

fn payload(format: WebhookFormat, n: &Notification, delivery: Uuid) -> Vec<u8> {
    let value = match format {
        WebhookFormat::Json => json!({
            "event": n.event,
            "delivery": delivery.to_string(),
            "approval_id": n.approval_id,
            "data": n.body,
        }),
        WebhookFormat::Chat => {
            let text = chat_text(&n.summary);
            json!({
                "text": text,
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
            })
        }
    };
    // Serializing a `Value` cannot fail (its map keys are strings).
    serde_json::to_vec(&value).unwrap_or_default()
}

/// `summary` made safe for Slack mrkdwn and Mattermost markdown: `&`, `<`,
/// `>` escaped (Slack's links and mentions need `<`), `@` followed by a
/// zero-width space (Mattermost's `@channel`), cut to Slack's limit.
fn chat_text(summary: &str) -> String {
    let mut out = String::with_capacity(summary.len().min(CHAT_TEXT_MAX));
    // In characters, as Slack counts; one is kept for the ellipsis.
    let mut len = 0;
    for c in summary.chars() {
        let mut buf = [0u8; 4];
        let piece: &str = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '@' => "@\u{200B}",
            _ => c.encode_utf8(&mut buf),
        };
        let n = piece.chars().count();
        if len + n > CHAT_TEXT_MAX - 1 {
            out.push('…');
            break;
        }
        out.push_str(piece);
        len += n;
    }
    out
}

/// An error with its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests;
