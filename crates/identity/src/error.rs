use thiserror::Error;
use warrant_crypto::jws::JwsError;
use warrant_token::{OAuthError, SpiffeIdError};

use crate::jwks::FetchError;

/// Why an outside token was refused. Messages name the check that failed
/// and never include the token.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IdentityError {
    #[error("the token is not a JWS this issuer accepts: {0}")]
    Malformed(JwsError),
    #[error("algorithm `{0}` is not allowed for this issuer")]
    AlgorithmNotAllowed(String),
    #[error("no key of the issuer has kid `{0}`")]
    UnknownKey(String),
    #[error("the token has no kid and the issuer publishes no key without one")]
    NoKeyWithoutKid,
    #[error("signature does not verify with the issuer's key")]
    BadSignature,
    #[error("the issuer's keys cannot be fetched and no cached keys are fresh enough: {0}")]
    KeysUnavailable(String),
    #[error("issuer `{0}` is not the configured issuer")]
    WrongIssuer(String),
    #[error("the token's audience is not one this issuer accepts")]
    WrongAudience,
    #[error("claim `{0}` is missing")]
    MissingClaim(String),
    #[error("claim `{0}` has the wrong type")]
    ClaimType(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("`sub` is not a valid SPIFFE id: {0}")]
    Spiffe(SpiffeIdError),
    #[error("SPIFFE id `{0}` is outside the configured trust domain")]
    WrongTrustDomain(String),
    #[error("claim `{claim}` value `{value}` is not accepted by this issuer")]
    RequiredClaim { claim: String, value: String },
    #[error("claim `{claim}` value `{value}` does not match the task: {why}")]
    TaskMismatch {
        claim: String,
        value: String,
        why: &'static str,
    },
    #[error("the `nonce` claim does not match this sign-in")]
    NonceMismatch,
    #[error("the task is no longer live")]
    TaskNotLive,
    #[error("claim `{claim}` value `{value}` is not a valid Warrant name")]
    BadUserName { claim: String, value: String },
    #[error("this issuer is configured for {configured} tokens, not {used} tokens")]
    WrongRole {
        configured: &'static str,
        used: &'static str,
    },
    /// A bug or a broken environment, never something a caller sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IdentityError {
    /// The OAuth error a token endpoint answers with (RFC 6749 §5.2; RFC
    /// 7523 §3.1 uses `invalid_grant` for every bad assertion).
    pub fn oauth_error(&self) -> OAuthError {
        match self {
            Self::Internal(_) | Self::WrongRole { .. } => OAuthError::ServerError,
            _ => OAuthError::InvalidGrant,
        }
    }

    /// A short stable name of the check that failed, for audit events and
    /// metrics.
    pub fn check(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "format",
            Self::AlgorithmNotAllowed(_) => "algorithm",
            Self::UnknownKey(_) | Self::NoKeyWithoutKid => "key",
            Self::BadSignature => "signature",
            Self::KeysUnavailable(_) => "keys_unavailable",
            Self::WrongIssuer(_) => "issuer",
            Self::WrongAudience => "audience",
            Self::MissingClaim(_) | Self::ClaimType(_) => "claims",
            Self::Expired => "expired",
            Self::NotYetValid | Self::IssuedInFuture => "not_yet_valid",
            Self::Spiffe(_) | Self::WrongTrustDomain(_) => "spiffe_id",
            Self::RequiredClaim { .. } => "required_claim",
            Self::TaskMismatch { .. } | Self::TaskNotLive => "task_binding",
            Self::BadUserName { .. } => "user_mapping",
            Self::NonceMismatch => "nonce",
            Self::WrongRole { .. } => "config",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<FetchError> for IdentityError {
    fn from(e: FetchError) -> Self {
        Self::KeysUnavailable(e.to_string())
    }
}
