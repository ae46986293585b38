//! The `jwt` engine: short-lived, audience-bound access tokens for internal
//! HTTP services, signed with Warrant's own key so that they verify with
//! Warrant's JWKS (`/.well-known/jwks.json`).
//!
//! Tokens follow RFC 9068 (`typ: at+jwt`): `iss`, `sub`, `aud`, `exp`,
//! `iat`, `nbf`, `jti` (the lease id), `client_id`, plus Warrant's `task`,
//! `run` and `delegator`, plus the role's static claims. A role with
//! `dpop = true` binds the token to the run's DPoP key (`cnf.jkt`, RFC 9449
//! §6) so a stolen token is useless without that key.
//!
//! A JWT cannot be recalled: `revoke` has nothing to delete. Services that
//! must see revocation before `exp` ask Warrant's introspection endpoint
//! (RFC 7662) with the token's `jti`; the others rely on the short TTL.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use warrant_crypto::SigningKey;

use crate::{Engine, EngineContext, EngineError, IssueRequest, Issued, RoleInfo, parse_ttl};

/// The `typ` header of the tokens (RFC 9068 §2.1).
pub const TOKEN_TYPE: &str = "at+jwt";
const DEFAULT_MAX_TTL: SignedDuration = SignedDuration::from_mins(15);
/// Service tokens are bearer-ish credentials: keep them short.
const MAX_TTL_CAP: SignedDuration = SignedDuration::from_hours(1);

/// Claims the engine sets itself; a role's static `claims` cannot replace
/// them.
const RESERVED_CLAIMS: [&str; 12] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "cnf",
    "client_id",
    "task",
    "run",
    "delegator",
];

pub fn build(
    name: &str,
    config: &toml::Value,
    ctx: &EngineContext,
) -> Result<Arc<dyn Engine>, String> {
    let engine = JwtEngine::new(name, config, ctx).map_err(|e| format!("engine `{name}`: {e}"))?;
    Ok(Arc::new(engine))
}

/// Service tokens for the roles of one `[[engines]]` entry.
pub struct JwtEngine {
    name: String,
    issuer: String,
    key: Arc<SigningKey>,
    roles: BTreeMap<String, Role>,
}

impl std::fmt::Debug for JwtEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtEngine")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("kid", &self.key.kid())
            .field("roles", &self.roles.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, Clone)]
struct Role {
    name: String,
    description: String,
    max_ttl: SignedDuration,
    /// The audiences a token may be minted for; a token names exactly one.
    audiences: Vec<String>,
    claims: Map<String, Value>,
    dpop: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    // Read by the registry.
    #[serde(rename = "name")]
    _name: Option<toml::Value>,
    #[serde(rename = "type")]
    _kind: Option<toml::Value>,
    /// Read with [`roles_of`].
    #[serde(rename = "roles")]
    _roles: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    name: String,
    #[serde(default)]
    description: String,
    max_ttl: Option<String>,
    audience: toml::Value,
    /// Checked from the raw table (see [`parse_role`]).
    #[serde(rename = "claims")]
    _claims: Option<toml::Value>,
    #[serde(default)]
    dpop: bool,
}

fn toml_error(e: toml::de::Error) -> String {
    e.message().trim_end().to_owned()
}

/// The `[[engines.roles]]` tables as written in the config. Not taken from
/// the deserialized struct: turning a `toml::Value` into a struct rewrites
/// dates into private tables, and role checks want the original.
fn roles_of(config: &toml::Value) -> Result<&[toml::Value], String> {
    match config.get("roles") {
        None => Ok(&[]),
        Some(toml::Value::Array(roles)) => Ok(roles),
        Some(_) => Err("`roles` must be an array of tables (`[[engines.roles]]`)".into()),
    }
}

fn parse_role(raw: &toml::Value) -> Result<Role, String> {
    let shown = raw
        .get("name")
        .and_then(toml::Value::as_str)
        .map_or_else(|| "role".to_owned(), |n| format!("role `{n}`"));
    raw.clone()
        .try_into::<RawRole>()
        .map_err(toml_error)
        // The claims are read from the table as written: deserializing a
        // `toml::Value` into a struct turns dates into private tables.
        .and_then(|r| check_role(r, raw.get("claims")))
        .map_err(|e| format!("{shown}: {e}"))
}

fn check_role(raw: RawRole, claims: Option<&toml::Value>) -> Result<Role, String> {
    warrant_core::Name::parse("role name", &raw.name).map_err(|e| e.to_string())?;
    let max_ttl = match raw.max_ttl.as_deref() {
        None => DEFAULT_MAX_TTL,
        Some(t) => parse_ttl("max_ttl", t)?,
    };
    if max_ttl > MAX_TTL_CAP {
        return Err(format!(
            "`max_ttl` is {}: service tokens live at most 1h",
            raw.max_ttl.as_deref().unwrap_or_default()
        ));
    }
    let audiences = match raw.audience {
        toml::Value::String(a) => vec![a],
        toml::Value::Array(list) => list
            .into_iter()
            .map(|v| match v {
                toml::Value::String(a) => Ok(a),
                _ => Err("`audience` must be a string or an array of strings".to_owned()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err("`audience` must be a string or an array of strings".into()),
    };
    if audiences.is_empty() {
        return Err("`audience` must name at least one audience".into());
    }
    let mut seen = BTreeSet::new();
    for a in &audiences {
        if a.trim().is_empty() || a.trim() != a {
            return Err(format!(
                "audience `{}` is empty or has surrounding spaces",
                a.escape_default()
            ));
        }
        if !seen.insert(a) {
            return Err(format!("audience `{a}` is listed twice"));
        }
    }
    let mut out = Map::new();
    let table = match claims {
        None => &toml::Table::new(),
        Some(toml::Value::Table(t)) => t,
        Some(_) => return Err("`claims` must be a table".into()),
    };
    for (k, v) in table {
        if RESERVED_CLAIMS.contains(&k.as_str()) {
            return Err(format!(
                "`claims.{k}` is set by the engine and cannot be configured"
            ));
        }
        let v = toml_to_json(v).map_err(|e| format!("`claims.{k}`: {e}"))?;
        out.insert(k.clone(), v);
    }
    Ok(Role {
        name: raw.name,
        description: raw.description,
        max_ttl,
        audiences,
        claims: out,
        dpop: raw.dpop,
    })
}

fn toml_to_json(v: &toml::Value) -> Result<Value, String> {
    Ok(match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or("NaN and infinities are not JSON numbers")?,
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(_) => {
            return Err("dates are not JSON: use a string or a number of seconds".into());
        }
        toml::Value::Array(a) => {
            Value::Array(a.iter().map(toml_to_json).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| Ok((k.clone(), toml_to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// The request's parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    audience: Option<String>,
    jkt: Option<String>,
}

/// `true` for an RFC 7638 SHA-256 thumbprint: 32 bytes in base64url
/// without padding, i.e. 43 characters whose last one carries 2 zero bits.
fn is_sha256_thumbprint(s: &str) -> bool {
    const LAST: &str = "AEIMQUYcgkosw048";
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && s[42..].bytes().all(|b| LAST.as_bytes().contains(&b))
}

/// A request that passed [`JwtEngine::check`].
struct Checked<'a> {
    role: &'a Role,
    audience: &'a str,
    jkt: Option<String>,
}

impl JwtEngine {
    fn new(name: &str, config: &toml::Value, ctx: &EngineContext) -> Result<Self, String> {
        warrant_core::Name::parse("engine name", name).map_err(|e| e.to_string())?;
        let _: RawConfig = config.clone().try_into().map_err(toml_error)?;
        let mut roles = BTreeMap::new();
        for r in roles_of(config)? {
            let role = parse_role(r)?;
            let warrant = ctx.issuer.trim_end_matches('/');
            if let Some(a) = role
                .audiences
                .iter()
                .find(|a| a.trim_end_matches('/') == warrant)
            {
                // Tokens for Warrant itself are run tokens, minted by the
                // token endpoint, never by an engine.
                return Err(format!(
                    "role `{}`: audience `{a}` is Warrant itself",
                    role.name
                ));
            }
            if roles.contains_key(&role.name) {
                return Err(format!("role `{}` is defined twice", role.name));
            }
            roles.insert(role.name.clone(), role);
        }
        Ok(Self {
            name: name.to_owned(),
            issuer: ctx.issuer.clone(),
            key: Arc::clone(&ctx.signing_key),
            roles,
        })
    }

    fn role(&self, name: &str) -> Result<&Role, EngineError> {
        self.roles
            .get(name)
            .ok_or_else(|| EngineError::UnknownRole(name.to_owned()))
    }

    fn check<'s>(&'s self, req: &IssueRequest<'_>) -> Result<Checked<'s>, EngineError> {
        let role = self.role(req.role)?;
        let bad = EngineError::BadRequest;
        let params: Params = serde_json::from_value(req.params.clone())
            .map_err(|e| bad(format!("invalid parameters: {e}")))?;
        let audience = match (params.audience, role.audiences.as_slice()) {
            (None, [only]) => only.as_str(),
            (None, _) => {
                return Err(bad(format!(
                    "role `{}` has several audiences: pass `audience`",
                    role.name
                )));
            }
            (Some(asked), all) => all.iter().find(|a| **a == asked).ok_or_else(|| {
                bad(format!(
                    "audience `{}` is not allowed by role `{}`",
                    asked.escape_default(),
                    role.name
                ))
            })?,
        };
        let jkt = match (role.dpop, params.jkt) {
            (true, None) => {
                return Err(bad(format!(
                    "role `{}` binds tokens to a DPoP key: pass `jkt`, the key's RFC 7638 thumbprint",
                    role.name
                )));
            }
            (false, Some(_)) => {
                return Err(bad(format!(
                    "role `{}` does not bind tokens to a key: leave `jkt` out",
                    role.name
                )));
            }
            (true, Some(jkt)) if !is_sha256_thumbprint(&jkt) => {
                return Err(bad(
                    "`jkt` is not a SHA-256 JWK thumbprint (43 base64url characters)".into(),
                ));
            }
            (_, jkt) => jkt,
        };
        Ok(Checked {
            role,
            audience,
            jkt,
        })
    }
}

#[async_trait]
impl Engine for JwtEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "jwt"
    }

    fn roles(&self) -> Vec<RoleInfo> {
        self.roles
            .values()
            .map(|r| RoleInfo {
                name: r.name.clone(),
                description: r.description.clone(),
                max_ttl_secs: r.max_ttl.as_secs(),
            })
            .collect()
    }

    fn max_ttl(&self, role: &str) -> Result<SignedDuration, EngineError> {
        Ok(self.role(role)?.max_ttl)
    }

    fn prepare(&self, req: &IssueRequest<'_>) -> Result<Value, EngineError> {
        self.check(req)?;
        Ok(json!({ "jti": req.lease_id.to_string() }))
    }

    async fn issue(&self, req: &IssueRequest<'_>, handle: &Value) -> Result<Issued, EngineError> {
        let c = self.check(req)?;
        let jti = req.lease_id.to_string();
        if handle.get("jti").and_then(Value::as_str) != Some(jti.as_str()) {
            return Err(EngineError::Internal(
                "the revocation handle does not match the request".into(),
            ));
        }
        let now = Timestamp::now().as_second();
        // The lease manager already capped `expires_at`; the role's cap is
        // applied again so no path mints a longer token.
        let exp = req
            .expires_at
            .as_second()
            .min(now.saturating_add(c.role.max_ttl.as_secs()));
        if exp <= now {
            return Err(EngineError::BadRequest(
                "the lease has already expired".into(),
            ));
        }
        let mut claims = c.role.claims.clone();
        let agent = req.agent;
        for (k, v) in [
            ("iss", json!(self.issuer)),
            ("sub", json!(format!("agent:{agent}"))),
            ("aud", json!(c.audience)),
            ("iat", json!(now)),
            ("nbf", json!(now)),
            ("exp", json!(exp)),
            ("jti", json!(jti)),
            ("client_id", json!(agent)),
            ("task", json!(req.task_id.to_string())),
            ("run", json!(req.run_id.to_string())),
            ("delegator", json!(req.delegator)),
        ] {
            claims.insert(k.to_owned(), v);
        }
        if let Some(jkt) = &c.jkt {
            claims.insert("cnf".to_owned(), json!({ "jkt": jkt }));
        }
        let token = warrant_crypto::jws::sign_jwt(&self.key, TOKEN_TYPE, &claims)
            .map_err(|e| EngineError::Internal(format!("cannot sign the token: {e}")))?;
        let expires_at = Timestamp::from_second(exp)
            .map_err(|e| EngineError::Internal(format!("token expiry out of range: {e}")))?;
        Ok(Issued {
            secrets: BTreeMap::from([("token".to_owned(), SecretString::from(token))]),
            public: json!({
                "jti": jti,
                "audience": c.audience,
                "expires_at": expires_at.to_string(),
            }),
            handle: handle.clone(),
            expires_at,
        })
    }

    /// Nothing to delete: the token stays valid for its signature until
    /// `exp`. The lease manager marks the lease revoked, and introspection
    /// answers `active: false` for its `jti` from then on.
    async fn revoke(&self, _handle: &Value) -> Result<(), EngineError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> EngineContext {
        EngineContext {
            data_dir: std::env::temp_dir(),
            signing_key: Arc::new(SigningKey::generate().unwrap()),
            issuer: "https://warrant.test".into(),
        }
    }

    fn build_err(roles: &str) -> String {
        let config: toml::Value =
            toml::from_str(&format!("name = \"svc\"\ntype = \"jwt\"\n{roles}")).unwrap();
        build("svc", &config, &ctx()).unwrap_err()
    }

    #[test]
    fn roles_are_checked() {
        for (role, expected) in [
            ("name = \"a\"", "missing field `audience`"),
            (
                "name = \"a\"\naudience = \"x\"\nmax_ttl = \"2h\"",
                "at most 1h",
            ),
            ("name = \"a\"\naudience = []", "at least one audience"),
            ("name = \"a\"\naudience = [\"x\", \"x\"]", "listed twice"),
            ("name = \"a\"\naudience = 3", "string or an array"),
            (
                "name = \"a\"\naudience = \"x\"\nclaims = { aud = \"y\" }",
                "`claims.aud` is set by the engine",
            ),
            (
                "name = \"a\"\naudience = \"x\"\nclaims = { when = 1979-05-27 }",
                "`claims.when`: dates",
            ),
            (
                "name = \"a\"\naudience = \"x\"\ndpop = \"yes\"",
                "invalid type",
            ),
            (
                "name = \"a\"\naudience = \"x\"\nscope = \"read\"",
                "unknown field `scope`",
            ),
        ] {
            let err = build_err(&format!("[[roles]]\n{role}\n"));
            assert!(err.contains(expected), "{role}: {err}");
        }
        let err =
            build_err("[[roles]]\nname = \"a\"\naudience = [\"x\", \"https://warrant.test/\"]\n");
        assert!(err.contains("is Warrant itself"), "{err}");
        let err = build_err("ttl = \"1h\"\n");
        assert!(err.contains("unknown field `ttl`"), "{err}");
    }

    #[test]
    fn thumbprints_are_recognised() {
        let key =
            warrant_crypto::jws::ProofKey::generate(warrant_crypto::jws::JwsAlg::ES256).unwrap();
        assert!(is_sha256_thumbprint(&key.thumbprint()));
        assert!(!is_sha256_thumbprint(""));
        assert!(!is_sha256_thumbprint(&"A".repeat(44)));
        assert!(!is_sha256_thumbprint(&format!("{}B", "A".repeat(42))));
        assert!(!is_sha256_thumbprint(&format!("{}=", "A".repeat(42))));
    }
}
