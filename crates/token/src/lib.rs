//! Warrant's tokens: run tokens, DPoP proofs and SPIFFE ids.
//!
//! It owns the run-token claims and their minting ([`run::mint`]), the
//! `Unverified<RunToken>` → [`RunToken`] verification, DPoP proof
//! verification with its `htu` comparison and replay cache ([`dpop`]),
//! git credentials ([`git`]: audience-bound bearer JWTs for one
//! repository, with a `typ` of their own) and strict SPIFFE id parsing
//! ([`spiffe`]). Every error says which OAuth error
//! a server answers with ([`OAuthError`]).
//!
//! It never does IO: keys, key sets and the clock come in as values, and
//! results go out as values. Time is read only through the injected
//! [`warrant_core::Clock`]. Signatures and JOSE go through `warrant-crypto`;
//! this crate names no crypto library.

pub mod dpop;
pub mod git;
pub mod run;
pub mod spiffe;

pub use dpop::{
    DpopError, DpopPolicy, ProofRequest, ReplayCache, VerifiedProof, access_token_hash,
    verify_proof,
};
pub use run::{
    Actor, MintError, MintParams, Minted, RunClaims, RunToken, RunTokenError, RunTokenExpectations,
    Unverified, mint,
};
pub use spiffe::{RunId, RunSpiffeId, SpiffeId, SpiffeIdError, TrustDomain};

/// The OAuth error codes token errors map to (RFC 6749 §5.2, RFC 6750 §3.1,
/// RFC 9449 §5 and §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OAuthError {
    InvalidRequest,
    InvalidGrant,
    UnsupportedGrantType,
    InvalidScope,
    InvalidToken,
    InvalidDpopProof,
    ServerError,
    TemporarilyUnavailable,
}

impl OAuthError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidGrant => "invalid_grant",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidToken => "invalid_token",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
