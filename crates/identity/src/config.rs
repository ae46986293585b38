//! Issuer configuration: the raw serde form and the typed [`IssuerConfig`]
//! it becomes in one step (`#[serde(try_from)]`), so a config that parsed is
//! a config that is safe to use.

use std::collections::BTreeMap;

use jiff::SignedDuration;
use reqwest::Url;
use serde::Deserialize;
use thiserror::Error;
use warrant_crypto::jws::JwsAlg;
use warrant_token::TrustDomain;

/// The largest clock skew an issuer may be granted.
pub const MAX_CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);
/// The default clock skew.
pub const DEFAULT_CLOCK_SKEW: SignedDuration = SignedDuration::from_secs(60);
/// JWKS time-to-live bounds and default.
pub const MIN_JWKS_TTL: SignedDuration = SignedDuration::from_secs(30);
pub const MAX_JWKS_TTL: SignedDuration = SignedDuration::from_hours(24);
pub const DEFAULT_JWKS_TTL: SignedDuration = SignedDuration::from_mins(10);
/// How long cached keys may still be used when the issuer cannot be reached.
pub const MAX_JWKS_STALENESS: SignedDuration = SignedDuration::from_hours(72);
pub const DEFAULT_JWKS_STALENESS: SignedDuration = SignedDuration::from_hours(1);

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid issuer url `{value}`: {why}")]
    IssuerUrl { value: String, why: &'static str },
    #[error("invalid jwks_uri `{value}`: {why}")]
    JwksUri { value: String, why: &'static str },
    #[error("set either `discovery = true` or `jwks_uri`, not both and not neither")]
    KeySource,
    #[error("at least one audience is required")]
    NoAudience,
    #[error("audience `{0}` is empty or too long")]
    BadAudience(String),
    #[error("at least one algorithm is required")]
    NoAlgorithm,
    #[error("algorithm `{0}` is not allowed (never `none`, never HMAC)")]
    Algorithm(String),
    #[error("invalid duration `{field}` = `{value}`: {why}")]
    Duration {
        field: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("an issuer has exactly one of a `[workload]` or a `[human]` table")]
    Role,
    #[error(
        "a workload issuer needs at least one claim rule (`repository_claim`, `ref_claim` or `required`)"
    )]
    NoWorkloadRule,
    #[error("invalid claim name `{0}`")]
    ClaimName(String),
    #[error("required claim `{0}` lists no accepted value")]
    EmptyRequired(String),
    #[error("`spiffe_trust_domain` needs `subject = \"spiffe\"`")]
    TrustDomainWithoutSpiffe,
    #[error("invalid spiffe_trust_domain `{value}`: {why}")]
    TrustDomain { value: String, why: String },
}

/// The raw form of one issuer, as written in the server's TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuerConfig {
    /// The exact `iss` value tokens carry.
    pub issuer: String,
    /// Find the JWKS through `<issuer>/.well-known/openid-configuration`.
    #[serde(default)]
    pub discovery: bool,
    /// Or name the JWKS directly.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    pub audiences: Vec<String>,
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub max_clock_skew: Option<String>,
    #[serde(default)]
    pub jwks_ttl: Option<String>,
    #[serde(default)]
    pub jwks_max_staleness: Option<String>,
    /// Allow `http://` for an issuer on the loopback interface (tests).
    #[serde(default)]
    pub dangerous_allow_http_loopback: bool,
    #[serde(default)]
    pub workload: Option<RawWorkloadRules>,
    #[serde(default)]
    pub human: Option<RawHumanMapping>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkloadRules {
    /// `"any"` (default) or `"spiffe"` (a JWT-SVID: `sub` is a SPIFFE id).
    #[serde(default)]
    pub subject: SubjectKind,
    #[serde(default)]
    pub spiffe_trust_domain: Option<String>,
    /// The claim that must equal one of the task's repositories.
    #[serde(default)]
    pub repository_claim: Option<String>,
    /// The claim that must be `refs/heads/<branch>` with the branch
    /// matching one of the task's branch globs.
    #[serde(default)]
    pub ref_claim: Option<String>,
    /// Claims that must equal one of the listed values.
    #[serde(default)]
    pub required: BTreeMap<String, OneOrMany>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHumanMapping {
    /// The claim whose value is the Warrant user name (`preferred_username`).
    pub user_claim: String,
    /// The claim listing the user's groups; values that are not valid
    /// Warrant names are dropped.
    #[serde(default)]
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub required: BTreeMap<String, OneOrMany>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    #[default]
    Any,
    Spiffe,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// OpenID Connect discovery at this URL; its `issuer` must equal ours.
    Discovery(Url),
    Jwks(Url),
}

/// A validated issuer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawIssuerConfig")]
pub struct IssuerConfig {
    /// Compared byte for byte with the token's `iss`.
    pub issuer: String,
    pub keys: KeySource,
    pub audiences: Vec<String>,
    pub algorithms: Vec<JwsAlg>,
    pub max_clock_skew: SignedDuration,
    pub jwks_ttl: SignedDuration,
    pub jwks_max_staleness: SignedDuration,
    pub dangerous_allow_http_loopback: bool,
    pub role: IssuerRole,
}

/// What an issuer's tokens prove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerRole {
    Workload(WorkloadRules),
    Human(HumanMapping),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadRules {
    pub subject: SubjectKind,
    pub spiffe_trust_domain: Option<TrustDomain>,
    pub repository_claim: Option<String>,
    pub ref_claim: Option<String>,
    pub required: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanMapping {
    pub user_claim: String,
    pub groups_claim: Option<String>,
    pub required: BTreeMap<String, Vec<String>>,
}

const MAX_AUDIENCE_LEN: usize = 512;

impl TryFrom<RawIssuerConfig> for IssuerConfig {
    type Error = ConfigError;

    fn try_from(raw: RawIssuerConfig) -> Result<Self, ConfigError> {
        let allow_http = raw.dangerous_allow_http_loopback;
        let issuer_url =
            checked_url(&raw.issuer, allow_http).map_err(|why| ConfigError::IssuerUrl {
                value: short(&raw.issuer),
                why,
            })?;
        if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
            return Err(ConfigError::IssuerUrl {
                value: short(&raw.issuer),
                why: "an issuer has no query or fragment",
            });
        }
        let keys = match (raw.discovery, raw.jwks_uri) {
            (true, None) => KeySource::Discovery(discovery_url(&raw.issuer).map_err(|why| {
                ConfigError::IssuerUrl {
                    value: short(&raw.issuer),
                    why,
                }
            })?),
            (false, Some(uri)) => {
                KeySource::Jwks(checked_url(&uri, allow_http).map_err(|why| {
                    ConfigError::JwksUri {
                        value: short(&uri),
                        why,
                    }
                })?)
            }
            _ => return Err(ConfigError::KeySource),
        };
        if raw.audiences.is_empty() {
            return Err(ConfigError::NoAudience);
        }
        if let Some(a) = raw
            .audiences
            .iter()
            .find(|a| a.is_empty() || a.len() > MAX_AUDIENCE_LEN)
        {
            return Err(ConfigError::BadAudience(short(a)));
        }
        if raw.algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithm);
        }
        let mut algorithms = Vec::new();
        for a in &raw.algorithms {
            let alg = JwsAlg::parse(a).map_err(|_| ConfigError::Algorithm(short(a)))?;
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        let max_clock_skew = duration(
            "max_clock_skew",
            raw.max_clock_skew.as_deref(),
            DEFAULT_CLOCK_SKEW,
            SignedDuration::ZERO,
            MAX_CLOCK_SKEW,
        )?;
        let jwks_ttl = duration(
            "jwks_ttl",
            raw.jwks_ttl.as_deref(),
            DEFAULT_JWKS_TTL,
            MIN_JWKS_TTL,
            MAX_JWKS_TTL,
        )?;
        let jwks_max_staleness = duration(
            "jwks_max_staleness",
            raw.jwks_max_staleness.as_deref(),
            DEFAULT_JWKS_STALENESS.max(jwks_ttl),
            jwks_ttl,
            MAX_JWKS_STALENESS,
        )?;
        let role = match (raw.workload, raw.human) {
            (Some(w), None) => IssuerRole::Workload(workload_rules(w)?),
            (None, Some(h)) => IssuerRole::Human(HumanMapping {
                user_claim: claim_name(h.user_claim)?,
                groups_claim: h.groups_claim.map(claim_name).transpose()?,
                required: required(h.required)?,
            }),
            _ => return Err(ConfigError::Role),
        };
        Ok(Self {
            issuer: raw.issuer,
            keys,
            audiences: raw.audiences,
            algorithms,
            max_clock_skew,
            jwks_ttl,
            jwks_max_staleness,
            dangerous_allow_http_loopback: allow_http,
            role,
        })
    }
}

fn workload_rules(w: RawWorkloadRules) -> Result<WorkloadRules, ConfigError> {
    let spiffe_trust_domain = match (w.subject, w.spiffe_trust_domain) {
        (_, None) => None,
        (SubjectKind::Spiffe, Some(td)) => {
            Some(
                TrustDomain::parse(&td).map_err(|e| ConfigError::TrustDomain {
                    value: short(&td),
                    why: e.to_string(),
                })?,
            )
        }
        (SubjectKind::Any, Some(_)) => return Err(ConfigError::TrustDomainWithoutSpiffe),
    };
    let rules = WorkloadRules {
        subject: w.subject,
        spiffe_trust_domain,
        repository_claim: w.repository_claim.map(claim_name).transpose()?,
        ref_claim: w.ref_claim.map(claim_name).transpose()?,
        required: required(w.required)?,
    };
    // INVARIANT: a workload issuer never accepts every token it signs; at
    // least one rule narrows which of its workloads may redeem a task.
    if rules.repository_claim.is_none() && rules.ref_claim.is_none() && rules.required.is_empty() {
        return Err(ConfigError::NoWorkloadRule);
    }
    Ok(rules)
}

fn required(
    raw: BTreeMap<String, OneOrMany>,
) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, values) in raw {
        let name = claim_name(name)?;
        let values = values.into_vec();
        if values.is_empty() {
            return Err(ConfigError::EmptyRequired(name));
        }
        out.insert(name, values);
    }
    Ok(out)
}

fn claim_name(name: String) -> Result<String, ConfigError> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
    {
        return Err(ConfigError::ClaimName(short(&name)));
    }
    Ok(name)
}

fn duration(
    field: &'static str,
    raw: Option<&str>,
    default: SignedDuration,
    min: SignedDuration,
    max: SignedDuration,
) -> Result<SignedDuration, ConfigError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    let d = warrant_core::task::parse_duration(raw).map_err(|_| ConfigError::Duration {
        field,
        value: short(raw),
        why: "expected a duration such as `60s` or `10m`",
    })?;
    if d < min || d > max {
        return Err(ConfigError::Duration {
            field,
            value: short(raw),
            why: "out of bounds (see the documented limits)",
        });
    }
    Ok(d)
}

/// `https://` with a host; `http://` only for a loopback host when the
/// dangerous allowance is set.
pub(crate) fn checked_url(raw: &str, allow_http_loopback: bool) -> Result<Url, &'static str> {
    let url = Url::parse(raw).map_err(|_| "not an absolute url")?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("user info is not allowed");
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_http_loopback && is_loopback(&url) => Ok(url),
        "http" => Err(
            "https is required (plain http only for a loopback issuer with `dangerous_allow_http_loopback`)",
        ),
        _ => Err("https is required"),
    }
}

fn is_loopback(url: &Url) -> bool {
    matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
}

/// OpenID Connect Discovery 1.0 §4: the issuer with any trailing `/`
/// removed, then `/.well-known/openid-configuration`.
fn discovery_url(issuer: &str) -> Result<Url, &'static str> {
    Url::parse(&format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    ))
    .map_err(|_| "cannot build the discovery url")
}

/// User input shown in an error: at most 128 characters.
pub(crate) fn short(s: &str) -> String {
    s.chars().take(128).collect()
}

#[cfg(test)]
mod tests;
