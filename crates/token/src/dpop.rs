//! DPoP proofs (RFC 9449): verification of a proof JWT against the request
//! it came with, the `ath` hash, `htu` comparison, and a replay cache.
//!
//! The checks follow RFC 9449 §4.3. Binding the proof's key to a token
//! (`cnf.jkt`) is the token's side: see `RunToken::check_binding`.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::SignedDuration;
use serde_json::Value;
use thiserror::Error;
use warrant_core::{Clock, Timestamp};
use warrant_crypto::jws::{self, JwsAlg, JwsError, PublicJwk};

use crate::OAuthError;

/// The `typ` of a DPoP proof.
pub const DPOP_TYP: &str = "dpop+jwt";
/// The algorithms a proof may use (`dpop_signing_alg_values_supported`).
pub const DPOP_ALGS: [JwsAlg; 2] = [JwsAlg::ES256, JwsAlg::EdDSA];
/// The longest `jti` accepted; clients send 16 to 64 characters.
pub const MAX_JTI_LEN: usize = 256;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DpopError {
    #[error("the DPoP proof is malformed: {0}")]
    Malformed(JwsError),
    #[error("the DPoP proof's `typ` is not `dpop+jwt`")]
    WrongType,
    #[error("the DPoP proof's algorithm is not allowed: {0}")]
    AlgorithmNotAllowed(JwsError),
    #[error("the DPoP proof has no `jwk` header")]
    MissingJwk,
    #[error("the DPoP proof's `jwk` header carries a private key")]
    PrivateKeyInJwk,
    #[error("the DPoP proof's signature does not verify")]
    BadSignature,
    #[error("the DPoP proof has no valid `{0}` claim")]
    MissingClaim(&'static str),
    #[error("the DPoP proof is for method `{0}`, not this request's")]
    MethodMismatch(String),
    #[error("the DPoP proof is for URL `{0}`, not this request's")]
    UrlMismatch(String),
    #[error("the DPoP proof is too old")]
    Stale,
    #[error("the DPoP proof is issued in the future")]
    IssuedInFuture,
    #[error("the DPoP proof has no `ath` claim but an access token was presented")]
    MissingAccessTokenHash,
    #[error("the DPoP proof's `ath` does not match the access token")]
    AccessTokenHashMismatch,
    #[error("the DPoP proof's `jti` was already used")]
    Replayed,
    #[error("too many recent DPoP proofs to remember; try again shortly")]
    ReplayCacheFull,
    /// The server's own configuration is wrong (e.g. its URL does not parse).
    #[error("internal error: {0}")]
    Internal(String),
}

impl DpopError {
    /// The OAuth error code a server answers with.
    pub fn oauth_error(&self) -> OAuthError {
        match self {
            Self::ReplayCacheFull => OAuthError::TemporarilyUnavailable,
            Self::Internal(_) => OAuthError::ServerError,
            _ => OAuthError::InvalidDpopProof,
        }
    }
}

/// How fresh a proof must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DpopPolicy {
    /// How long after its `iat` a proof is accepted.
    pub max_age: SignedDuration,
    /// How far in the future an `iat` may be (client clock skew).
    pub max_future_skew: SignedDuration,
}

impl Default for DpopPolicy {
    fn default() -> Self {
        Self {
            max_age: SignedDuration::from_secs(60),
            max_future_skew: SignedDuration::from_secs(5),
        }
    }
}

impl DpopPolicy {
    /// How long the replay cache must remember a `jti`: as long as any
    /// proof carrying it could still pass the `iat` check.
    pub fn replay_ttl(&self) -> SignedDuration {
        self.max_age.saturating_add(self.max_future_skew)
    }
}

/// The request a proof is checked against.
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    /// The HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The request's absolute URL as the server's public base URL names it
    /// (not from the `Host` header); any query or fragment is ignored.
    pub url: &'a str,
    /// The access token sent with the request (`Authorization: DPoP ...`),
    /// which the proof must hash into `ath`.
    pub access_token: Option<&'a str>,
}

/// A proof that passed every check but replay; feed it to a
/// [`ReplayCache`] before acting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// RFC 7638 thumbprint of the proof's key: what `cnf.jkt` must equal.
    pub jkt: String,
    pub jti: String,
    pub iat: Timestamp,
    pub key: PublicJwk,
    /// The server-provided nonce, if the proof carries one.
    pub nonce: Option<String>,
}

/// Verifies a DPoP proof (RFC 9449 §4.3 checks 2 to 12) against `request`.
pub fn verify_proof(
    proof: &str,
    request: &ProofRequest<'_>,
    policy: &DpopPolicy,
    clock: &dyn Clock,
) -> Result<VerifiedProof, DpopError> {
    let expected_url = Htu::parse(request.url)
        .map_err(|_| DpopError::Internal("the request URL does not parse".into()))?;
    let header = jws::decode_header(proof).map_err(jws_error)?;
    if !header.typ_is(DPOP_TYP) {
        return Err(DpopError::WrongType);
    }
    let key = header.jwk.ok_or(DpopError::MissingJwk)?;
    let claims = jws::verify(proof, &key, &DPOP_ALGS)
        .map_err(jws_error)?
        .claims;

    let text = |name: &'static str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(DpopError::MissingClaim(name))
    };
    let jti = text("jti")?;
    if jti.len() > MAX_JTI_LEN {
        return Err(DpopError::MissingClaim("jti"));
    }
    let htm = text("htm")?;
    let htu = text("htu")?;
    let iat = claims
        .get("iat")
        .and_then(numeric_date)
        .ok_or(DpopError::MissingClaim("iat"))?;
    let nonce = match claims.get("nonce") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(DpopError::MissingClaim("nonce")),
    };

    // HTTP methods are case-sensitive (RFC 9110 §9.1).
    if htm != request.method {
        return Err(DpopError::MethodMismatch(truncate(htm)));
    }
    if Htu::parse(htu).ok().as_ref() != Some(&expected_url) {
        return Err(DpopError::UrlMismatch(truncate(htu)));
    }

    let now = clock.now();
    if iat > now.saturating_add(policy.max_future_skew).unwrap_or(now) {
        return Err(DpopError::IssuedInFuture);
    }
    if iat.saturating_add(policy.max_age).unwrap_or(iat) < now {
        return Err(DpopError::Stale);
    }

    if let Some(token) = request.access_token {
        let ath = claims
            .get("ath")
            .and_then(Value::as_str)
            .ok_or(DpopError::MissingAccessTokenHash)?;
        let want = access_token_hash(token);
        if !warrant_crypto::constant_time_eq(ath.as_bytes(), want.as_bytes()) {
            return Err(DpopError::AccessTokenHashMismatch);
        }
    }

    Ok(VerifiedProof {
        jkt: key.thumbprint(),
        jti: jti.to_owned(),
        iat,
        key,
        nonce,
    })
}

fn jws_error(e: JwsError) -> DpopError {
    match e {
        JwsError::AlgorithmNotAllowed(_) | JwsError::KeyMismatch(_) => {
            DpopError::AlgorithmNotAllowed(e)
        }
        JwsError::PrivateKeyInJwk => DpopError::PrivateKeyInJwk,
        JwsError::BadSignature => DpopError::BadSignature,
        JwsError::Internal(m) => DpopError::Internal(m),
        JwsError::ProviderConflict => DpopError::Internal(e.to_string()),
        other => DpopError::Malformed(other),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(128).collect()
}

/// A JWT NumericDate: seconds since the epoch, fractions dropped.
pub(crate) fn numeric_date(v: &Value) -> Option<Timestamp> {
    let secs = match v.as_i64() {
        Some(s) => s,
        None => {
            let f = v.as_f64()?;
            if !f.is_finite() || f.abs() > 1e15 {
                return None;
            }
            #[expect(
                clippy::cast_possible_truncation,
                reason = "bounded above; fractions of a second are dropped on purpose"
            )]
            let s = f.floor() as i64;
            s
        }
    };
    Timestamp::from_second(secs).ok()
}

/// `ath`: base64url(SHA-256(access token)), RFC 9449 §4.2.
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(warrant_crypto::sha256(access_token.as_bytes()))
}

/// An `htu` (or request URL) normalized for comparison per RFC 9449 §4.3:
/// scheme and host lowercased, default port dropped, empty path as `/`,
/// percent-encoding normalized, query and fragment ignored. Dot segments are
/// not resolved: a URL that has them never matches (fail closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Htu {
    scheme: String,
    host: String,
    port: Option<u16>,
    path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("not an absolute http(s) URL")]
pub struct HtuError;

impl Htu {
    pub fn parse(url: &str) -> Result<Self, HtuError> {
        let url = url.split_once('#').map_or(url, |(u, _)| u);
        let url = url.split_once('?').map_or(url, |(u, _)| u);
        let (scheme, rest) = url.split_once("://").ok_or(HtuError)?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return Err(HtuError),
        };
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        if authority.contains('@') {
            return Err(HtuError);
        }
        let (host, port) = split_host_port(authority)?;
        if host.is_empty()
            || !host.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
            })
        {
            return Err(HtuError);
        }
        let port = port.filter(|p| *p != default_port);
        let path = if path.is_empty() {
            "/".to_owned()
        } else {
            normalize_path(path)?
        };
        Ok(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), HtuError> {
    // An IPv6 literal keeps its colons inside brackets.
    let colon = match authority.rfind(']') {
        Some(end) => authority[end..].find(':').map(|i| end + i),
        None => authority.rfind(':'),
    };
    match colon {
        None => Ok((authority, None)),
        Some(i) => {
            let (host, port) = (&authority[..i], &authority[i + 1..]);
            if port.is_empty() {
                return Ok((host, None));
            }
            if !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HtuError);
            }
            port.parse().map(|p| (host, Some(p))).map_err(|_| HtuError)
        }
    }
}

/// Decodes percent-encoded unreserved characters and uppercases the hex of
/// the rest (RFC 3986 §6.2.2); refuses characters a path cannot hold.
fn normalize_path(path: &str) -> Result<String, HtuError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = path.get(i + 1..i + 3).ok_or(HtuError)?;
            let v = u8::from_str_radix(hex, 16).map_err(|_| HtuError)?;
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(v));
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else if b.is_ascii_graphic()
            && !matches!(
                b,
                b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            )
        {
            out.push(char::from(b));
            i += 1;
        } else {
            return Err(HtuError);
        }
    }
    Ok(out)
}

/// Remembers recent proof `jti`s (per key) so a proof is accepted once.
///
/// In memory and per process: with several servers, each remembers its own
/// proofs, so a proof replayed to another server inside the `iat` window is
/// not caught here. Entries expire after `ttl` (use
/// [`DpopPolicy::replay_ttl`]); time comes from the caller's clock.
#[derive(Debug)]
pub struct ReplayCache {
    ttl: SignedDuration,
    capacity: usize,
    inner: Mutex<ReplayInner>,
}

#[derive(Debug, Default)]
struct ReplayInner {
    seen: HashSet<String>,
    // INVARIANT: every key in `seen` is in `order` exactly once.
    order: VecDeque<(Timestamp, String)>,
}

impl ReplayCache {
    pub fn new(ttl: SignedDuration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            inner: Mutex::new(ReplayInner::default()),
        }
    }

    /// Records the proof's `jti`; refuses one seen within the TTL. When the
    /// cache is full of live entries the proof is refused too (fail closed).
    pub fn check_and_remember(
        &self,
        proof: &VerifiedProof,
        clock: &dyn Clock,
    ) -> Result<(), DpopError> {
        let now = clock.now();
        let key = format!("{}.{}", proof.jkt, proof.jti);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while inner.order.front().is_some_and(|(exp, _)| *exp <= now) {
            if let Some((_, k)) = inner.order.pop_front() {
                inner.seen.remove(&k);
            }
        }
        if inner.seen.contains(&key) {
            return Err(DpopError::Replayed);
        }
        if inner.seen.len() >= self.capacity {
            return Err(DpopError::ReplayCacheFull);
        }
        let expires = now.saturating_add(self.ttl).unwrap_or(now);
        inner.seen.insert(key.clone());
        inner.order.push_back((expires, key));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
