//! Run tokens: the JWT Warrant gives an agent run, bound to the run's DPoP
//! key (`cnf.jkt`) and never outliving its task.

use std::marker::PhantomData;

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use warrant_core::{Clock, CoreError, Name, Scope, Task, TaskId, Timestamp};
use warrant_crypto::SigningKey;
use warrant_crypto::jws::{self, Jwks, JwsAlg, JwsError};

use crate::OAuthError;
use crate::dpop::VerifiedProof;
use crate::spiffe::{RunId, RunSpiffeId, TrustDomain};

/// The `typ` header of a run token, so no other JWT (an ID token, a DPoP
/// proof) can pass for one.
pub const RUN_TOKEN_TYP: &str = "warrant-run+jwt";
/// How long a run token lives unless asked otherwise.
pub const DEFAULT_RUN_TOKEN_TTL: SignedDuration = SignedDuration::from_secs(10 * 60);
/// The longest a run token may live, whatever is asked.
pub const MAX_RUN_TOKEN_TTL: SignedDuration = SignedDuration::from_secs(60 * 60);
/// The most clock skew a verifier tolerates, whatever it is configured with.
pub const MAX_LEEWAY: SignedDuration = SignedDuration::from_secs(60);

/// RFC 7800 confirmation: the thumbprint of the key the token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    pub jkt: String,
}

/// RFC 8693 §4.1 actor: who acts on behalf of the subject, nested for a
/// chain (the outermost is the most recent actor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    pub fn new(sub: impl Into<String>, prior: Option<Actor>) -> Self {
        Self {
            sub: sub.into(),
            act: prior.map(Box::new),
        }
    }

    /// How many actors the chain holds (1 for a lone actor).
    pub fn depth(&self) -> usize {
        1 + self.act.as_ref().map_or(0, |a| a.depth())
    }
}

/// The claims of a run token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunClaims {
    pub iss: String,
    /// The run's SPIFFE id.
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub cnf: Confirmation,
    pub task: TaskId,
    pub agent: Name,
    /// The user who delegated the task.
    pub delegator: Name,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// What the run may do: the task's scope or a narrowing of it. Not
    /// named `scope`, which OAuth reserves for a space-separated string.
    pub warrant_scope: Scope,
}

impl RunClaims {
    pub fn expires_at(&self) -> Option<Timestamp> {
        Timestamp::from_second(self.exp).ok()
    }

    /// Length of the delegation chain in `act` (0 for a first-hand run).
    pub fn chain_depth(&self) -> usize {
        self.act.as_ref().map_or(0, Actor::depth)
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MintError {
    #[error("task `{0}` is not open")]
    TaskNotLive(TaskId),
    #[error("task `{0}` has expired")]
    TaskExpired(TaskId),
    #[error("a run token lives between 1 second and 1 hour")]
    BadTtl,
    #[error("the requested scope is wider than the task's: {0}")]
    ScopeNotNarrowing(CoreError),
    #[error("`cnf.jkt` must be an RFC 7638 SHA-256 thumbprint")]
    BadJkt,
    #[error("internal error: {0}")]
    Internal(String),
}

impl MintError {
    pub fn oauth_error(&self) -> OAuthError {
        match self {
            Self::TaskNotLive(_) | Self::TaskExpired(_) => OAuthError::InvalidGrant,
            Self::ScopeNotNarrowing(_) => OAuthError::InvalidScope,
            Self::BadTtl | Self::BadJkt => OAuthError::InvalidRequest,
            Self::Internal(_) => OAuthError::ServerError,
        }
    }
}

/// Everything a run token says, minus what `mint` decides itself (`iat`,
/// `exp`, `jti`).
#[derive(Debug, Clone)]
pub struct MintParams<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub trust_domain: &'a TrustDomain,
    pub run: RunId,
    pub task: &'a Task,
    /// Thumbprint of the run's DPoP key, from its verified proof.
    pub jkt: &'a str,
    /// Capped by the task's expiry. [`DEFAULT_RUN_TOKEN_TTL`] unless the
    /// caller has a reason.
    pub ttl: SignedDuration,
    /// `None` grants the task's whole scope; `Some` must narrow it.
    pub scope: Option<Scope>,
    /// The actor chain, for tokens obtained by token exchange.
    pub act: Option<Actor>,
}

/// A freshly signed run token and its claims.
#[derive(Clone)]
pub struct Minted {
    pub token: String,
    pub claims: RunClaims,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// Mints a run token for an open task. `exp` is `now + ttl`, but never past
/// the task's expiry.
pub fn mint(key: &SigningKey, p: &MintParams<'_>, clock: &dyn Clock) -> Result<Minted, MintError> {
    let task = p.task;
    if !task.is_live() {
        return Err(MintError::TaskNotLive(task.id));
    }
    if p.ttl < SignedDuration::from_secs(1) || p.ttl > MAX_RUN_TOKEN_TTL {
        return Err(MintError::BadTtl);
    }
    if !is_thumbprint(p.jkt) {
        return Err(MintError::BadJkt);
    }
    let scope = match &p.scope {
        None => task.scope.clone(),
        Some(s) => {
            s.check_narrowing_of(&task.scope)
                .map_err(MintError::ScopeNotNarrowing)?;
            s.clone()
        }
    };
    let now = clock.now().as_second();
    let exp = now
        .saturating_add(p.ttl.as_secs())
        .min(task.expires_at.as_second());
    if exp <= now {
        return Err(MintError::TaskExpired(task.id));
    }
    let jti =
        warrant_crypto::random_bytes::<16>().map_err(|e| MintError::Internal(e.to_string()))?;
    let claims = RunClaims {
        iss: p.issuer.to_owned(),
        sub: RunSpiffeId::new(p.trust_domain.clone(), task.agent.clone(), p.run).to_string(),
        aud: p.audience.to_owned(),
        iat: now,
        exp,
        jti: hex_lower(&jti),
        cnf: Confirmation {
            jkt: p.jkt.to_owned(),
        },
        task: task.id,
        agent: task.agent.clone(),
        delegator: task.delegator.clone(),
        act: p.act.clone(),
        warrant_scope: scope,
    };
    let token = jws::sign_jwt(key, RUN_TOKEN_TYP, &claims)
        .map_err(|e| MintError::Internal(e.to_string()))?;
    Ok(Minted { token, claims })
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A SHA-256 thumbprint: 43 characters of unpadded base64url.
fn is_thumbprint(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RunTokenError {
    #[error("the token is malformed: {0}")]
    Malformed(JwsError),
    #[error("the token's algorithm is not allowed: {0}")]
    AlgorithmNotAllowed(JwsError),
    #[error("the token is not a run token")]
    WrongType,
    #[error("the token names no signing key")]
    MissingKid,
    #[error("the token's signing key `{0}` is unknown")]
    UnknownKey(String),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's claims are invalid: {0}")]
    InvalidClaims(String),
    #[error("the token is for another issuer")]
    WrongIssuer,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token's subject is not a run of this trust domain and agent")]
    WrongSubject,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the DPoP proof's key is not the key the token is bound to")]
    NotBoundToProofKey,
    #[error("internal error: {0}")]
    Internal(String),
}

impl RunTokenError {
    pub fn oauth_error(&self) -> OAuthError {
        match self {
            Self::Internal(_) => OAuthError::ServerError,
            _ => OAuthError::InvalidToken,
        }
    }
}

/// A token string not yet checked. The only way to a `T` is `verify`.
pub struct Unverified<T> {
    raw: String,
    _kind: PhantomData<fn() -> T>,
}

impl<T> Unverified<T> {
    pub fn new(raw: impl Into<String>) -> Self {
        Self {
            raw: raw.into(),
            _kind: PhantomData,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl<T> std::fmt::Debug for Unverified<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unverified").finish_non_exhaustive()
    }
}

/// What a verifier expects of a run token.
#[derive(Debug, Clone)]
pub struct RunTokenExpectations<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub trust_domain: &'a TrustDomain,
    /// Clock skew tolerated on `exp` and `iat`; capped at [`MAX_LEEWAY`].
    pub leeway: SignedDuration,
}

/// A run token whose signature, type, issuer, audience, lifetime and
/// subject have been checked.
#[derive(Clone)]
pub struct RunToken {
    raw: String,
    kid: String,
    claims: RunClaims,
    id: RunSpiffeId,
}

impl std::fmt::Debug for RunToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunToken")
            .field("kid", &self.kid)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

impl Unverified<RunToken> {
    /// The `kid` the token claims to be signed with, unverified: a hint
    /// for choosing keys, never for trusting anything.
    pub fn kid(&self) -> Result<Option<String>, RunTokenError> {
        jws::decode_header(&self.raw)
            .map(|h| h.kid)
            .map_err(RunTokenError::Malformed)
    }

    pub fn verify(
        self,
        keys: &Jwks,
        expect: &RunTokenExpectations<'_>,
        clock: &dyn Clock,
    ) -> Result<RunToken, RunTokenError> {
        let header = jws::decode_header(&self.raw).map_err(jws_error)?;
        if !header.typ_is(RUN_TOKEN_TYP) {
            return Err(RunTokenError::WrongType);
        }
        let kid = header.kid.ok_or(RunTokenError::MissingKid)?;
        let key = keys
            .find(&kid)
            .ok_or_else(|| RunTokenError::UnknownKey(kid.chars().take(64).collect()))?;
        let verified = jws::verify(&self.raw, key, &[JwsAlg::EdDSA]).map_err(jws_error)?;
        let claims: RunClaims = serde_json::from_value(Value::Object(verified.claims))
            .map_err(|e| RunTokenError::InvalidClaims(e.to_string()))?;

        if claims.iss != expect.issuer {
            return Err(RunTokenError::WrongIssuer);
        }
        if claims.aud != expect.audience {
            return Err(RunTokenError::WrongAudience);
        }
        let leeway = expect
            .leeway
            .clamp(SignedDuration::ZERO, MAX_LEEWAY)
            .as_secs();
        let now = clock.now().as_second();
        if claims.exp <= claims.iat
            || claims.exp.saturating_sub(claims.iat) > MAX_RUN_TOKEN_TTL.as_secs()
        {
            return Err(RunTokenError::InvalidClaims(
                "the lifetime is out of bounds".into(),
            ));
        }
        // `exp` is the first second the token is no longer valid.
        if now >= claims.exp.saturating_add(leeway) {
            return Err(RunTokenError::Expired);
        }
        if claims.iat > now.saturating_add(leeway) {
            return Err(RunTokenError::NotYetValid);
        }
        let id = RunSpiffeId::parse(&claims.sub).map_err(|_| RunTokenError::WrongSubject)?;
        if &id.trust_domain != expect.trust_domain || id.agent != claims.agent {
            return Err(RunTokenError::WrongSubject);
        }
        if !is_thumbprint(&claims.cnf.jkt) {
            return Err(RunTokenError::InvalidClaims(
                "`cnf.jkt` is not a thumbprint".into(),
            ));
        }
        Ok(RunToken {
            raw: self.raw,
            kid,
            claims,
            id,
        })
    }
}

fn jws_error(e: JwsError) -> RunTokenError {
    match e {
        JwsError::AlgorithmNotAllowed(_) | JwsError::KeyMismatch(_) => {
            RunTokenError::AlgorithmNotAllowed(e)
        }
        JwsError::BadSignature => RunTokenError::BadSignature,
        JwsError::Internal(m) => RunTokenError::Internal(m),
        JwsError::ProviderConflict => RunTokenError::Internal(e.to_string()),
        other => RunTokenError::Malformed(other),
    }
}

impl RunToken {
    pub fn claims(&self) -> &RunClaims {
        &self.claims
    }

    pub fn spiffe_id(&self) -> &RunSpiffeId {
        &self.id
    }

    /// The `kid` of the key that signed it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The token as presented, e.g. to hash into a proof's `ath`.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// RFC 9449 §4.3 check 12: the proof's key is the one in `cnf.jkt`.
    pub fn check_binding(&self, proof: &VerifiedProof) -> Result<(), RunTokenError> {
        if warrant_crypto::constant_time_eq(proof.jkt.as_bytes(), self.claims.cnf.jkt.as_bytes()) {
            Ok(())
        } else {
            Err(RunTokenError::NotBoundToProofKey)
        }
    }
}

#[cfg(test)]
mod tests;
