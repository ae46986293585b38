//! SPIFFE ids, parsed strictly (go-spiffe's rules), and the run id shape
//! Warrant issues: `spiffe://<trust-domain>/agent/<agent>/run/<run-id>`.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;
use uuid::Uuid;
use warrant_core::{Name, Timestamp};

const SCHEME: &str = "spiffe://";
/// SPIFFE-ID §2.3: a SPIFFE id is at most 2048 bytes.
pub const MAX_SPIFFE_ID_LEN: usize = 2048;
/// SPIFFE-ID §2.1: a trust domain is at most 255 bytes.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SpiffeIdError {
    #[error("a SPIFFE id cannot be empty")]
    Empty,
    #[error("a SPIFFE id is at most 2048 bytes")]
    TooLong,
    #[error("a SPIFFE id starts with `spiffe://`")]
    WrongScheme,
    #[error("the trust domain is missing")]
    MissingTrustDomain,
    #[error("a trust domain is at most 255 bytes")]
    TrustDomainTooLong,
    #[error(
        "trust domain characters are limited to lowercase letters, digits, `.`, `-` and `_` \
         (no port, user info, query or fragment)"
    )]
    BadTrustDomainChar,
    #[error("path segments cannot be empty")]
    EmptySegment,
    #[error("path segments cannot be `.` or `..`")]
    DotSegment,
    #[error(
        "path characters are limited to letters, digits, `.`, `-` and `_` \
         (no query, fragment or percent-encoding)"
    )]
    BadPathChar,
    #[error(
        "`{0}` is not a Warrant run id: expected `spiffe://<trust-domain>/agent/<agent>/run/<run-id>`"
    )]
    NotARunId(String),
}

/// A validated trust domain such as `warrant.example`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError::MissingTrustDomain);
        }
        if s.len() > MAX_TRUST_DOMAIN_LEN {
            return Err(SpiffeIdError::TrustDomainTooLong);
        }
        if !s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        }) {
            return Err(SpiffeIdError::BadTrustDomainChar);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Any valid SPIFFE id: a trust domain and a path (empty, or `/`-separated
/// non-empty segments).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    path: String,
}

impl SpiffeId {
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if s.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(SpiffeIdError::WrongScheme)?;
        let (td, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        let trust_domain = TrustDomain::parse(td)?;
        validate_path(path)?;
        Ok(Self {
            trust_domain,
            path: path.to_owned(),
        })
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path, empty or starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path's segments (none for an empty path).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path.split('/').skip(1)
    }
}

fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    // INVARIANT: a non-empty path starts with `/` (the caller split there).
    for segment in path.split('/').skip(1) {
        match segment {
            "" => return Err(SpiffeIdError::EmptySegment),
            "." | ".." => return Err(SpiffeIdError::DotSegment),
            s if !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) =>
            {
                return Err(SpiffeIdError::BadPathChar);
            }
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}{}", self.trust_domain, self.path)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The id of one agent run: a UUIDv7, so ids sort by start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub Uuid);

impl RunId {
    /// A fresh id for a run starting at `now` (time from the caller's
    /// clock; the random bits from the system's generator).
    pub fn at(now: Timestamp) -> Self {
        let secs = u64::try_from(now.as_second()).unwrap_or(0);
        let nanos = u32::try_from(now.subsec_nanosecond()).unwrap_or(0);
        Self(Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            secs,
            nanos,
        )))
    }

    /// Parses the canonical lowercase hyphenated form only, so one run has
    /// exactly one SPIFFE id.
    pub fn parse(s: &str) -> Option<Self> {
        let id = Uuid::try_parse(s).ok()?;
        (id.hyphenated().to_string() == s).then_some(Self(id))
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The SPIFFE id of a Warrant agent run:
/// `spiffe://<trust-domain>/agent/<agent>/run/<run-id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunSpiffeId {
    pub trust_domain: TrustDomain,
    pub agent: Name,
    pub run: RunId,
}

impl RunSpiffeId {
    pub fn new(trust_domain: TrustDomain, agent: Name, run: RunId) -> Self {
        Self {
            trust_domain,
            agent,
            run,
        }
    }

    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        let id = SpiffeId::parse(s)?;
        let not_run = || SpiffeIdError::NotARunId(s.chars().take(128).collect());
        let (agent, run) = {
            let mut seg = id.segments();
            let (Some("agent"), Some(agent), Some("run"), Some(run), None) =
                (seg.next(), seg.next(), seg.next(), seg.next(), seg.next())
            else {
                return Err(not_run());
            };
            let agent = Name::parse("agent", agent).map_err(|_| not_run())?;
            (agent, RunId::parse(run).ok_or_else(not_run)?)
        };
        Ok(Self {
            trust_domain: id.trust_domain,
            agent,
            run,
        })
    }
}

impl fmt::Display for RunSpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/agent/{}/run/{}",
            self.trust_domain, self.agent, self.run
        )
    }
}

impl FromStr for RunSpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests;
