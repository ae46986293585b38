//! What the server needs to issue and check run tokens: its signing key,
//! its public URL (the `iss`, the `aud`, and the base every DPoP `htu` is
//! compared against), the trust domain of run SPIFFE ids, the DPoP policy
//! and the proof replay cache.

use std::sync::Arc;

use jiff::SignedDuration;
use warrant_crypto::SigningKey;
use warrant_crypto::jws::Jwks;
use warrant_store::{Store, StoreError};
use warrant_token::{DpopPolicy, ReplayCache, TrustDomain};

/// How long a task's one-time claim may wait to be redeemed.
pub const CLAIM_TTL: SignedDuration = SignedDuration::from_secs(10 * 60);
/// Most DPoP proofs remembered at once; past this, proofs are refused
/// (`temporarily_unavailable`) rather than forgotten early.
pub const REPLAY_CAPACITY: usize = 100_000;

/// The token side of the server. Shared by every handler.
#[derive(Debug)]
pub struct Issuer {
    key: Arc<SigningKey>,
    /// INVARIANT: an absolute `http(s)` URL without a trailing slash,
    /// query or fragment (checked by the config).
    issuer: String,
    pub trust_domain: TrustDomain,
    pub dpop: DpopPolicy,
    pub replay: ReplayCache,
    pub claim_ttl: SignedDuration,
    pub run_token_ttl: SignedDuration,
}

impl Issuer {
    pub fn new(key: Arc<SigningKey>, public_url: &str, trust_domain: TrustDomain) -> Self {
        let dpop = DpopPolicy::default();
        Self {
            key,
            issuer: public_url.trim_end_matches('/').to_owned(),
            trust_domain,
            dpop,
            replay: ReplayCache::new(dpop.replay_ttl(), REPLAY_CAPACITY),
            claim_ttl: CLAIM_TTL,
            run_token_ttl: warrant_token::run::DEFAULT_RUN_TOKEN_TTL,
        }
    }

    /// The key new tokens are signed with.
    pub fn key(&self) -> &SigningKey {
        &self.key
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

    /// The published key set: every Ed25519 key recorded in the store, so
    /// tokens signed by another server on the same database, or by this
    /// server's earlier key, still verify. A store error is an error (the
    /// caller refuses), never an empty set.
    pub async fn jwks(&self, store: &dyn Store) -> Result<Jwks, StoreError> {
        let mut set = Jwks::new();
        for record in store.list_public_keys().await? {
            if record.alg != "EdDSA" {
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
