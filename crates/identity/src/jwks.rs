//! An issuer's signing keys: fetched over HTTPS (the only IO in this crate),
//! cached with a TTL, refetched on an unknown `kid` at most once per
//! [`REFETCH_INTERVAL`], and never used past the configured staleness bound.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use reqwest::Url;
use serde_json::Value;
use thiserror::Error;
use tokio::sync::Mutex;
use warrant_crypto::jws::{JwsAlg, JwsError, PublicJwk};

use crate::config::{IssuerConfig, KeySource, checked_url, short};

/// The fewest seconds between two fetches of one issuer's keys, whatever
/// tokens arrive: an attacker sending unknown `kid`s cannot make Warrant
/// hammer an issuer.
pub const REFETCH_INTERVAL: SignedDuration = SignedDuration::from_secs(30);
/// The largest discovery document or JWKS read.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// The most keys kept from one JWKS.
pub const MAX_KEYS: usize = 32;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an issuer's keys could not be fetched.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FetchError {
    #[error("cannot reach `{url}`: {why}")]
    Unreachable { url: String, why: String },
    #[error("`{url}` answered with status {status}")]
    Status { url: String, status: u16 },
    #[error("`{url}` answered with more than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge { url: String },
    #[error("`{url}` did not answer with JSON")]
    NotJson { url: String },
    #[error("the discovery document names issuer `{0}`, not the configured one")]
    DiscoveryIssuer(String),
    #[error("the discovery document has no usable `jwks_uri`: {0}")]
    DiscoveryJwksUri(&'static str),
    #[error("invalid JWKS: {0}")]
    Jwks(JwsError),
    #[error("cannot build an HTTP client: {0}")]
    Client(String),
}

/// One key from an issuer's JWKS. Unlike Warrant's own JWKS, issuers may
/// publish keys without a `kid` (PyPI's `oidc-provider-mock` does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerKey {
    pub kid: Option<String>,
    /// The JWK's `alg` member, when it names one Warrant knows.
    pub alg: Option<JwsAlg>,
    pub key: PublicJwk,
}

/// A parsed issuer JWKS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    pub keys: Vec<IssuerKey>,
}

impl KeySet {
    /// Reads a JWKS. Keys of unsupported types and encryption keys are
    /// skipped; a key with private material refuses the whole set.
    pub fn from_json(value: &Value) -> Result<Self, JwsError> {
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwsError::InvalidJwk("a JWKS has a `keys` array"))?;
        let mut set = Self::default();
        for v in keys {
            if v.get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let key = match PublicJwk::from_json(v) {
                Ok(key) => key,
                Err(JwsError::InvalidJwk(_)) => continue,
                Err(e) => return Err(e),
            };
            let alg = match v.get("alg").and_then(Value::as_str) {
                None => None,
                Some(a) => match JwsAlg::parse(a) {
                    Ok(a) => Some(a),
                    // A key reserved for an algorithm Warrant refuses.
                    Err(_) => continue,
                },
            };
            let kid = v.get("kid").and_then(Value::as_str).map(str::to_owned);
            if set.keys.len() < MAX_KEYS {
                set.keys.push(IssuerKey { kid, alg, key });
            }
        }
        Ok(set)
    }

    /// The keys a token with this `kid` and `alg` may have been signed
    /// with: the one with that `kid`, or without a `kid` every key without
    /// one. Keys whose type or `alg` member does not fit `alg` are left out.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: JwsAlg,
    ) -> impl Iterator<Item = &'a PublicJwk> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.kid.as_deref() == kid || (kid.is_none() && k.kid.is_none()))
            .filter(move |k| k.key.alg() == alg && k.alg.is_none_or(|a| a == alg))
            .map(|k| &k.key)
    }

    pub fn has_kid(&self, kid: Option<&str>) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == kid)
    }
}

#[derive(Debug, Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    fetched_at: Option<Timestamp>,
    last_attempt: Option<Timestamp>,
    last_error: Option<FetchError>,
    /// The `jwks_uri` from discovery, kept with the keys.
    jwks_uri: Option<Url>,
}

/// The outcome of asking the cache for keys.
#[derive(Debug)]
pub(crate) enum Keys {
    Usable(Arc<KeySet>),
    /// No keys, or only keys older than the staleness bound.
    Unavailable(Option<FetchError>),
}

/// One issuer's key cache. Cheap to share; fetches are single-flight (the
/// lock is held while fetching, so concurrent callers wait for one fetch).
#[derive(Debug)]
pub struct JwksCache {
    http: reqwest::Client,
    state: Mutex<State>,
}

impl JwksCache {
    pub fn new() -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            // A redirect could leave https or the issuer's host.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        Ok(Self {
            http,
            state: Mutex::new(State::default()),
        })
    }

    /// Keys to verify a token with, fetching when the cache is empty or past
    /// its TTL, or when `want_kid` is not in it — each at most once per [`REFETCH_INTERVAL`].
    pub(crate) async fn keys(
        &self,
        config: &IssuerConfig,
        now: Timestamp,
        want_kid: Option<&str>,
    ) -> Keys {
        let mut state = self.state.lock().await;
        let fresh = state
            .fetched_at
            .is_some_and(|t| now.duration_since(t) < config.jwks_ttl);
        let missing_kid = state.keys.as_ref().is_some_and(|k| !k.has_kid(want_kid));
        if !fresh || missing_kid {
            self.try_fetch(&mut state, config, now).await;
        }
        match (&state.keys, state.fetched_at) {
            (Some(keys), Some(at)) if now.duration_since(at) <= config.jwks_max_staleness => {
                Keys::Usable(keys.clone())
            }
            _ => Keys::Unavailable(state.last_error.clone()),
        }
    }

    /// Fetches unless the last attempt was under [`REFETCH_INTERVAL`] ago.
    async fn try_fetch(&self, state: &mut State, config: &IssuerConfig, now: Timestamp) {
        if state
            .last_attempt
            .is_some_and(|t| now.duration_since(t) < REFETCH_INTERVAL)
        {
            return;
        }
        state.last_attempt = Some(now);
        match self.fetch(state, config).await {
            Ok(keys) => {
                state.keys = Some(Arc::new(keys));
                state.fetched_at = Some(now);
                state.last_error = None;
            }
            Err(e) => {
                tracing::warn!(issuer = %config.issuer, error = %e, "cannot fetch the issuer's keys");
                // Discovery may have moved the JWKS: look it up again next time.
                state.jwks_uri = None;
                state.last_error = Some(e);
            }
        }
    }

    async fn fetch(&self, state: &mut State, config: &IssuerConfig) -> Result<KeySet, FetchError> {
        let jwks_uri = match (&config.keys, &state.jwks_uri) {
            (KeySource::Jwks(uri), _) => uri.clone(),
            (KeySource::Discovery(_), Some(uri)) => uri.clone(),
            (KeySource::Discovery(discovery), None) => {
                let doc = self.get_json(discovery).await?;
                // OpenID Connect Discovery 1.0 §4.3: the document's issuer
                // must be exactly the one we asked about.
                match doc.get("issuer").and_then(Value::as_str) {
                    Some(iss) if iss == config.issuer => {}
                    other => {
                        return Err(FetchError::DiscoveryIssuer(short(other.unwrap_or(""))));
                    }
                }
                let raw = doc
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or(FetchError::DiscoveryJwksUri("missing"))?;
                let uri = checked_url(raw, config.dangerous_allow_http_loopback)
                    .map_err(FetchError::DiscoveryJwksUri)?;
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let doc = self.get_json(&jwks_uri).await?;
        KeySet::from_json(&doc).map_err(FetchError::Jwks)
    }

    async fn get_json(&self, url: &Url) -> Result<Value, FetchError> {
        let shown = || short(url.as_str());
        let mut response = self
            .http
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| FetchError::Unreachable {
                url: shown(),
                why: e.to_string(),
            })?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url: shown(),
                status: response.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| FetchError::Unreachable {
                url: shown(),
                why: e.to_string(),
            })?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(FetchError::TooLarge { url: shown() });
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| FetchError::NotJson { url: shown() })
    }
}
