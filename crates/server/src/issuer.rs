//! What the server needs to issue and check run tokens: its signing key,
//! its public URL (the `iss`, the `aud`, and the base every DPoP `htu` is
//! compared against), the trust domain of run SPIFFE ids, the DPoP policy
//! and the proof replay cache.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use jiff::{SignedDuration, Timestamp};
use warrant_crypto::SigningKey;
use warrant_crypto::jws::Jwks;
use warrant_store::{Store, StoreError};
use warrant_token::{DpopPolicy, ReplayCache, TrustDomain};

/// How long a task's one-time claim may wait to be redeemed.
pub const CLAIM_TTL: SignedDuration = SignedDuration::from_secs(10 * 60);
/// Token-exchange hops allowed below a claim-redeemed run, by default.
pub const DEFAULT_MAX_DELEGATION_DEPTH: u32 = 3;
/// The most the config may allow.
pub const MAX_DELEGATION_DEPTH: u32 = 16;
/// Most DPoP proofs remembered at once; past this, proofs are refused
/// (`temporarily_unavailable`) rather than forgotten early.
pub const REPLAY_CAPACITY: usize = 100_000;

/// The token side of the server. Shared by every handler.
#[derive(Debug)]
pub struct Issuer {
    /// The signing key; replaced in place by a rotation.
    key: RwLock<Arc<SigningKey>>,
    /// Where rotated-in keys are written (`<data-dir>/keys`); `None` when
    /// this server cannot rotate (a test built without a data directory).
    pub keys_dir: Option<PathBuf>,
    /// Serialises rotations on this server.
    pub rotating: tokio::sync::Mutex<()>,
    /// INVARIANT: an absolute `http(s)` URL without a trailing slash,
    /// query or fragment (checked by the config).
    issuer: String,
    pub trust_domain: TrustDomain,
    pub dpop: DpopPolicy,
    pub replay: ReplayCache,
    pub claim_ttl: SignedDuration,
    pub run_token_ttl: SignedDuration,
    /// Token-exchange hops allowed (`tokens.max_delegation_depth`).
    pub max_delegation_depth: u32,
    /// Workload issuers for the jwt-bearer grant, by exact `iss`, each
    /// with its own JWKS cache.
    pub workload_issuers: std::collections::HashMap<String, warrant_identity::Issuer>,
    /// Identity providers whose ID tokens sign humans in to the API, by
    /// exact `iss`, each with its own JWKS cache.
    pub human_issuers: std::collections::HashMap<String, warrant_identity::Issuer>,
}

impl Issuer {
    pub fn new(key: Arc<SigningKey>, public_url: &str, trust_domain: TrustDomain) -> Self {
        let dpop = DpopPolicy::default();
        Self {
            key: RwLock::new(key),
            keys_dir: None,
            rotating: tokio::sync::Mutex::new(()),
            issuer: public_url.trim_end_matches('/').to_owned(),
            trust_domain,
            dpop,
            replay: ReplayCache::new(dpop.replay_ttl(), REPLAY_CAPACITY),
            claim_ttl: CLAIM_TTL,
            run_token_ttl: warrant_token::run::DEFAULT_RUN_TOKEN_TTL,
            max_delegation_depth: DEFAULT_MAX_DELEGATION_DEPTH,
            workload_issuers: std::collections::HashMap::new(),
            human_issuers: std::collections::HashMap::new(),
        }
    }

    /// The key new tokens and checkpoints are signed with.
    pub fn key(&self) -> Arc<SigningKey> {
        // The lock only guards a pointer swap: a poisoned lock still holds
        // a whole key.
        self.key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes `key` the signing key from now on (after a rotation).
    pub fn set_key(&self, key: Arc<SigningKey>) {
        *self.key.write().unwrap_or_else(PoisonError::into_inner) = key;
    }

    /// When a key retired at `retired_at` leaves the JWKS: once every token
    /// it signed has expired (the longest run-token lifetime plus the
    /// verification leeway).
    pub fn published_until(&self, retired_at: Timestamp) -> Timestamp {
        retired_at
            .saturating_add(self.run_token_ttl)
            .and_then(|t| t.saturating_add(self.dpop.max_future_skew))
            .unwrap_or(Timestamp::MAX)
    }

    /// `iss` of every run token, and the base of every endpoint URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `aud` of run tokens: Warrant itself (resource servers introspect).
    pub fn audience(&self) -> &str {
        &self.issuer
    }

    /// The absolute URL of `path` (which starts with `/`) as clients name
    /// it: what a DPoP proof's `htu` must be.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// The published key set: every Ed25519 key recorded in the store that
    /// may still have live tokens, so tokens signed by another server on
    /// the same database, or by this server's key before a rotation, still
    /// verify. A key retired by a rotation leaves the set at
    /// [`Issuer::published_until`]. A store error is an error (the caller
    /// refuses), never an empty set.
    pub async fn jwks(&self, store: &dyn Store, now: Timestamp) -> Result<Jwks, StoreError> {
        let mut set = Jwks::new();
        for record in store.list_public_keys().await? {
            if record.alg != "EdDSA" {
                continue;
            }
            if record
                .retired_at
                .is_some_and(|retired| self.published_until(retired) < now)
            {
                continue;
            }
            match <[u8; 32]>::try_from(record.public_key.as_slice()) {
                Ok(key) => {
                    set.push_ed25519(key);
                }
                Err(_) => {
                    return Err(StoreError::Corrupt(format!(
                        "public key `{}` is not 32 bytes",
                        record.kid.chars().take(64).collect::<String>()
                    )));
                }
            }
        }
        Ok(set)
    }
}
