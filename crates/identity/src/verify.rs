//! Turning an outside JWT into a principal: signature against the issuer's
//! JWKS, `iss`, `aud`, time claims with bounded skew, then the issuer's claim
//! rules (a workload's binding to a task, a human's user and groups).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde_json::{Map, Value};
use warrant_core::{Clock, Name, Task, TaskId};
use warrant_crypto::jws::{self, JwsError};
use warrant_token::SpiffeId;

use crate::config::{IssuerConfig, IssuerRole, SubjectKind, short};
use crate::error::IdentityError;
use crate::jwks::{FetchError, JwksCache, Keys};
use warrant_core::glob::branch_glob_matches;

/// A configured issuer with its key cache. Share one per issuer for the
/// life of the process so the cache (and its rate limit) is shared too.
#[derive(Debug)]
pub struct Issuer {
    config: IssuerConfig,
    cache: JwksCache,
}

impl Issuer {
    pub fn new(config: IssuerConfig) -> Result<Self, FetchError> {
        Ok(Self {
            config,
            cache: JwksCache::new()?,
        })
    }

    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }
}

/// A workload whose token verified and whose claims bind it to the task.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadPrincipal {
    pub issuer: String,
    pub subject: String,
    /// Set when the issuer's subjects are SPIFFE ids (JWT-SVIDs).
    pub spiffe_id: Option<SpiffeId>,
    pub task: TaskId,
    /// The repository claim's value, when the issuer binds repositories.
    pub repository: Option<String>,
    /// The branch from the ref claim, when the issuer binds refs.
    pub branch: Option<String>,
    pub jti: Option<String>,
    pub expires_at: Timestamp,
    /// Every claim, verified, for audit.
    pub claims: Map<String, Value>,
}

/// A human whose ID token verified, mapped to a Warrant user and groups.
#[derive(Debug, Clone, PartialEq)]
pub struct HumanPrincipal {
    pub issuer: String,
    pub subject: String,
    pub user: Name,
    pub groups: Vec<Name>,
    pub expires_at: Timestamp,
}

/// Reads `iss` from a token WITHOUT verifying anything, to pick the
/// [`Issuer`] to verify it with. Never trust the result beyond that.
pub fn peek_issuer(raw: &str) -> Result<String, IdentityError> {
    let malformed = |why| IdentityError::Malformed(JwsError::Malformed(why));
    if raw.len() > jws::MAX_JWS_LEN {
        return Err(IdentityError::Malformed(JwsError::TooLong));
    }
    let payload = raw
        .split('.')
        .nth(1)
        .ok_or_else(|| malformed("expected three dot-separated parts"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| malformed("the payload is not base64url"))?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| malformed("the payload is not a JSON object"))?;
    match claims.get("iss") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(IdentityError::ClaimType("iss".into())),
        None => Err(IdentityError::MissingClaim("iss".into())),
    }
}

/// Verifies a workload token (RFC 7523 assertion: a CI OIDC token or a
/// SPIFFE JWT-SVID) and checks that it may act for `task`.
pub async fn verify_workload_token(
    raw: &str,
    issuer: &Issuer,
    task: &Task,
    clock: &dyn Clock,
) -> Result<WorkloadPrincipal, IdentityError> {
    let IssuerRole::Workload(rules) = &issuer.config.role else {
        return Err(IdentityError::WrongRole {
            configured: "human",
            used: "workload",
        });
    };
    let now = clock.now();
    let checked = verify_common(raw, issuer, now).await?;
    let claims = checked.claims;

    if !task.is_live() || task.expires_at <= now {
        return Err(IdentityError::TaskNotLive);
    }
    let spiffe_id = match rules.subject {
        SubjectKind::Any => None,
        SubjectKind::Spiffe => {
            let id = SpiffeId::parse(&checked.subject).map_err(IdentityError::Spiffe)?;
            if let Some(td) = &rules.spiffe_trust_domain
                && id.trust_domain() != td
            {
                return Err(IdentityError::WrongTrustDomain(short(&checked.subject)));
            }
            Some(id)
        }
    };
    check_required(&claims, &rules.required)?;

    let repository = match &rules.repository_claim {
        None => None,
        Some(name) => {
            let value = string_claim(&claims, name)?;
            // GitHub and GitLab compare repository paths case-insensitively.
            if !task
                .scope
                .repos
                .iter()
                .any(|r| r.eq_ignore_ascii_case(value))
            {
                return Err(IdentityError::TaskMismatch {
                    claim: name.clone(),
                    value: short(value),
                    why: "not one of the task's repositories",
                });
            }
            Some(value.to_owned())
        }
    };
    let branch = match &rules.ref_claim {
        None => None,
        Some(name) => {
            let value = string_claim(&claims, name)?;
            let mismatch = |why| IdentityError::TaskMismatch {
                claim: name.clone(),
                value: short(value),
                why,
            };
            let branch = value
                .strip_prefix("refs/heads/")
                .filter(|b| !b.is_empty())
                .ok_or_else(|| mismatch("not a branch ref (`refs/heads/...`)"))?;
            if !task
                .scope
                .branches
                .iter()
                .any(|g| branch_glob_matches(g, branch))
            {
                return Err(mismatch("matches none of the task's branch globs"));
            }
            Some(branch.to_owned())
        }
    };
    let jti = match claims.get("jti") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(IdentityError::ClaimType("jti".into())),
    };
    Ok(WorkloadPrincipal {
        issuer: issuer.config.issuer.clone(),
        subject: checked.subject,
        spiffe_id,
        task: task.id,
        repository,
        branch,
        jti,
        expires_at: checked.expires_at,
        claims,
    })
}

/// Verifies a human's OpenID Connect ID token and maps it to a user and
/// groups. `nonce` is the value this sign-in sent to the IdP, if any.
pub async fn verify_id_token(
    raw: &str,
    issuer: &Issuer,
    nonce: Option<&str>,
    clock: &dyn Clock,
) -> Result<HumanPrincipal, IdentityError> {
    let IssuerRole::Human(mapping) = &issuer.config.role else {
        return Err(IdentityError::WrongRole {
            configured: "workload",
            used: "human",
        });
    };
    let checked = verify_common(raw, issuer, clock.now()).await?;
    let claims = &checked.claims;
    if let Some(expected) = nonce
        && claims.get("nonce").and_then(Value::as_str) != Some(expected)
    {
        return Err(IdentityError::NonceMismatch);
    }
    check_required(claims, &mapping.required)?;
    let value = string_claim(claims, &mapping.user_claim)?;
    let user = Name::parse("user", value).map_err(|_| IdentityError::BadUserName {
        claim: mapping.user_claim.clone(),
        value: short(value),
    })?;
    let mut groups: Vec<Name> = Vec::new();
    if let Some(name) = &mapping.groups_claim {
        let listed: Vec<&str> = match claims.get(name) {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(_) => return Err(IdentityError::ClaimType(name.clone())),
        };
        // Dropping a group can only take rights away.
        for g in listed {
            if let Ok(g) = Name::parse("group", g)
                && !groups.contains(&g)
            {
                groups.push(g);
            }
        }
    }
    Ok(HumanPrincipal {
        issuer: issuer.config.issuer.clone(),
        subject: checked.subject,
        user,
        groups,
        expires_at: checked.expires_at,
    })
}

struct Checked {
    claims: Map<String, Value>,
    subject: String,
    expires_at: Timestamp,
}

async fn verify_common(
    raw: &str,
    issuer: &Issuer,
    now: Timestamp,
) -> Result<Checked, IdentityError> {
    let config = &issuer.config;
    let header = jws::decode_header(raw).map_err(|e| match e {
        JwsError::AlgorithmNotAllowed(a) => IdentityError::AlgorithmNotAllowed(a),
        e => IdentityError::Malformed(e),
    })?;
    if !config.algorithms.contains(&header.alg) {
        return Err(IdentityError::AlgorithmNotAllowed(
            header.alg.as_str().into(),
        ));
    }
    let kid = header.kid.as_deref();
    let keys = match issuer.cache.keys(config, now, kid).await {
        Keys::Usable(keys) => keys,
        Keys::Unavailable(e) => {
            return Err(IdentityError::KeysUnavailable(e.map_or_else(
                || "no keys fetched yet".to_owned(),
                |e| e.to_string(),
            )));
        }
    };
    let mut verified = None;
    let mut tried = false;
    for key in keys.candidates(kid, header.alg) {
        tried = true;
        match jws::verify(raw, key, &config.algorithms) {
            Ok(v) => {
                verified = Some(v);
                break;
            }
            Err(JwsError::BadSignature) => {}
            Err(JwsError::AlgorithmNotAllowed(a)) => {
                return Err(IdentityError::AlgorithmNotAllowed(a));
            }
            Err(JwsError::Internal(e)) => return Err(IdentityError::Internal(e)),
            Err(e @ JwsError::ProviderConflict) => {
                return Err(IdentityError::Internal(e.to_string()));
            }
            Err(e) => return Err(IdentityError::Malformed(e)),
        }
    }
    let Some(verified) = verified else {
        return Err(match (tried, kid) {
            (true, _) => IdentityError::BadSignature,
            (false, Some(kid)) => IdentityError::UnknownKey(short(kid)),
            (false, None) => IdentityError::NoKeyWithoutKid,
        });
    };
    let claims = verified.claims;

    match claims.get("iss") {
        Some(Value::String(iss)) if *iss == config.issuer => {}
        Some(Value::String(iss)) => return Err(IdentityError::WrongIssuer(short(iss))),
        Some(_) => return Err(IdentityError::ClaimType("iss".into())),
        None => return Err(IdentityError::MissingClaim("iss".into())),
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => config.audiences.contains(a),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|a| config.audiences.iter().any(|c| c == a)),
        Some(_) => return Err(IdentityError::ClaimType("aud".into())),
        None => return Err(IdentityError::MissingClaim("aud".into())),
    };
    if !audience_ok {
        return Err(IdentityError::WrongAudience);
    }

    let skew = config.max_clock_skew;
    let exp = time_claim(&claims, "exp")?.ok_or(IdentityError::MissingClaim("exp".into()))?;
    if now > exp.saturating_add(skew).unwrap_or(exp) {
        return Err(IdentityError::Expired);
    }
    let latest_start = now.saturating_add(skew).unwrap_or(now);
    if time_claim(&claims, "nbf")?.is_some_and(|nbf| nbf > latest_start) {
        return Err(IdentityError::NotYetValid);
    }
    if time_claim(&claims, "iat")?.is_some_and(|iat| iat > latest_start) {
        return Err(IdentityError::IssuedInFuture);
    }
    let subject = string_claim(&claims, "sub")?.to_owned();
    Ok(Checked {
        claims,
        subject,
        expires_at: exp,
    })
}

/// A NumericDate claim (RFC 7519 §2), fractions dropped.
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<Timestamp>, IdentityError> {
    let Some(v) = claims.get(name) else {
        return Ok(None);
    };
    let secs = v
        .as_i64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f.trunc() as i64)
        })
        .ok_or_else(|| IdentityError::ClaimType(name.into()))?;
    Timestamp::from_second(secs)
        .map(Some)
        .map_err(|_| IdentityError::ClaimType(name.into()))
}

fn string_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<&'a str, IdentityError> {
    match claims.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(IdentityError::ClaimType(name.into())),
        None => Err(IdentityError::MissingClaim(name.into())),
    }
}

/// Each required claim's value, as text (`true`, `42` for non-strings),
/// must be one of the accepted values.
fn check_required(
    claims: &Map<String, Value>,
    required: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<(), IdentityError> {
    for (name, accepted) in required {
        let value = match claims.get(name) {
            None => return Err(IdentityError::MissingClaim(name.clone())),
            Some(Value::String(s)) => s.clone(),
            Some(v @ (Value::Bool(_) | Value::Number(_))) => v.to_string(),
            Some(_) => return Err(IdentityError::ClaimType(name.clone())),
        };
        if !accepted.contains(&value) {
            return Err(IdentityError::RequiredClaim {
                claim: name.clone(),
                value: short(&value),
            });
        }
    }
    Ok(())
}
