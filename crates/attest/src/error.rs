use thiserror::Error;

/// Why an attestation could not be made or was refused.
///
/// Every variant but [`AttestError::Internal`] is something a caller or an
/// envelope's author can cause; the messages say which check failed, since
/// a CI gate prints them to whoever has to fix the build.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AttestError {
    #[error("the envelope is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("not a DSSE envelope: {0}")]
    Malformed(String),
    #[error("the envelope's payload type is `{found}`, not `{expected}`")]
    PayloadType {
        found: String,
        expected: &'static str,
    },
    #[error("the envelope has no signatures")]
    NoSignatures,
    #[error("no trusted Ed25519 key to verify with: the key set is empty")]
    NoTrustedKeys,
    #[error(
        "no signature is by a trusted key: the envelope names key id(s) {keyids}, \
         and the trusted keys are {trusted}"
    )]
    UnknownKey { keyids: String, trusted: String },
    #[error(
        "the signature by key `{keyid}` does not verify: the envelope was modified after \
         signing, or signed by another key under that key id"
    )]
    BadSignature { keyid: String },
    #[error("the payload is not an in-toto statement: {0}")]
    Statement(String),
    #[error("the statement type is `{found}`, not `{expected}`")]
    StatementType {
        found: String,
        expected: &'static str,
    },
    #[error("the predicate type is `{found}`, not `{expected}` (not a Warrant approval)")]
    PredicateType {
        found: String,
        expected: &'static str,
    },
    #[error("the approval predicate is invalid: {0}")]
    Predicate(String),
    #[error("the statement has no subject")]
    NoSubject,
    #[error("the approval is not for `{expected}`: it is for {found}")]
    SubjectMismatch { expected: String, found: String },
    #[error("invalid subject `{input}`: {why}")]
    InvalidSubject { input: String, why: &'static str },
    /// A bug, never something an envelope or a caller can cause.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Text from an envelope, made safe to print: at most 100 characters,
/// control characters escaped. Envelopes come from anywhere, and their
/// strings end up in a terminal or a CI log.
pub(crate) fn shown(s: &str) -> String {
    const MAX: usize = 100;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn envelope_text_is_escaped_and_bounded() {
        assert_eq!(shown("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        let long = "x".repeat(500);
        assert_eq!(shown(&long).chars().count(), 101);
    }
}
