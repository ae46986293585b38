//! Warrant's approval attestations: an in-toto Statement v1 whose predicate
//! records one approval, carried in a DSSE envelope signed with Warrant's
//! Ed25519 key (the key behind `/.well-known/jwks.json`).
//!
//! - [`Statement`] and [`ApprovalPredicate`]: what is attested. The
//!   statement's subjects are the artifacts the approval was for (a git
//!   commit, a SHA-256 digest), each written as an in-toto
//!   `ResourceDescriptor`; [`Subject`] parses and matches them.
//! - [`sign`]: statement -> [`Envelope`] (payload type
//!   `application/vnd.in-toto+json`, signature over the DSSE
//!   pre-authentication encoding [`pae`], `keyid` = the key's RFC 7638
//!   thumbprint).
//! - [`verify`]: envelope bytes + [`TrustedKeys`] (+ the subject a gate
//!   expects) -> [`Verified`], or an [`AttestError`] that says exactly what
//!   failed.
//!
//! The format is specified in `docs/approvals.md` ("Attestations"), so that
//! any DSSE implementation can check an envelope without Warrant's code.
//!
//! This crate must never do IO or read a clock: keys come in as values, an
//! envelope comes in as bytes. It names no crypto library: signing and
//! verification go through `warrant-crypto`.

mod dsse;
mod error;
mod statement;
mod subject;

pub use dsse::{
    Envelope, EnvelopeSignature, MAX_ENVELOPE_LEN, PAYLOAD_TYPE, TrustedKeys, Verified, pae, sign,
    sign_payload, verify,
};
pub use error::AttestError;
pub use statement::{
    ApprovalPredicate, Approver, PREDICATE_TYPE, Resource, ResourceDescriptor, STATEMENT_TYPE,
    Statement,
};
pub use subject::{DigestAlg, Subject};
