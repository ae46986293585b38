//! Workload and human attestation: an outside JWT in, a verified principal
//! out.
//!
//! It owns the per-issuer configuration (typed in one step from its serde
//! form: issuer, key source, audiences, algorithm allowlist, bounded clock
//! skew, JWKS TTL and staleness bound, claim rules), the JWKS cache, and the
//! two verifications built on them: [`verify_workload_token`] (an RFC 7523
//! assertion — a CI OIDC token or a SPIFFE JWT-SVID — bound to a task by its
//! claims) and [`verify_id_token`] (a human's OpenID Connect ID token mapped
//! to a user and groups). Every refusal is an [`IdentityError`] that names
//! the failed check and maps to an OAuth error, without echoing the token.
//!
//! Its only IO is fetching issuers' discovery documents and JWKS over HTTPS
//! (plain HTTP only for a loopback issuer with
//! `dangerous_allow_http_loopback`). It never reads the system clock (time
//! comes from the injected [`warrant_core::Clock`]), never names a crypto or
//! JOSE library (signatures go through `warrant-crypto`), and never accepts
//! keys older than the issuer's staleness bound.

pub mod config;
pub mod error;
pub mod jwks;
pub mod verify;

pub use config::{
    ConfigError, HumanMapping, IssuerConfig, IssuerRole, KeySource, RawIssuerConfig, SubjectKind,
    WorkloadRules,
};
pub use error::IdentityError;
pub use jwks::{FetchError, JwksCache, KeySet, REFETCH_INTERVAL};
pub use verify::{
    HumanPrincipal, Issuer, WorkloadPrincipal, peek_issuer, verify_id_token, verify_workload_token,
};
