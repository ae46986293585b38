//! Git credentials: the short-lived bearer JWT `warrant git-credential`
//! hands git for one repository on one git server.
//!
//! A git credential names the run it was issued to (`sub`, the run's SPIFFE
//! id), its task, the one repository it is for (`repo`), the git server's
//! origin (`aud`, e.g. `https://git.example.com`) and the scope the run held
//! (`warrant_scope`, cut down to that repository). It is signed with
//! Warrant's token key like a run token, but with its own `typ`
//! ([`GIT_CREDENTIAL_TYP`]), so a git credential never passes for a run
//! token and a run token never passes for a git credential. It is not
//! DPoP-bound: git can only send a bearer secret. That is why it lives at
//! most [`MAX_GIT_CREDENTIAL_TTL`], is good for one repository at one
//! origin, and why whoever checks it also checks that its run and task are
//! still live (the server does, at every use).

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use warrant_core::{Clock, Name, Scope, Task, TaskId, Timestamp};
use warrant_crypto::SigningKey;
use warrant_crypto::jws::{self, Jwks, JwsAlg, JwsError};

use crate::OAuthError;
use crate::run::{MAX_LEEWAY, Unverified};
use crate::spiffe::{RunId, RunSpiffeId, TrustDomain};

/// The `typ` header of a git credential.
pub const GIT_CREDENTIAL_TYP: &str = "warrant-git+jwt";
/// The longest a git credential lives, whatever is asked.
pub const MAX_GIT_CREDENTIAL_TTL: SignedDuration = SignedDuration::from_secs(10 * 60);
/// The user name helpers give git next to the credential (git wants one
/// for `Basic`; Warrant ignores it).
pub const GIT_USERNAME: &str = "x-warrant";

/// The claims of a git credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitClaims {
    pub iss: String,
    /// The SPIFFE id of the run it was issued to.
    pub sub: String,
    /// The git server's origin, `scheme://host[:port]` ([`origin`]).
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub task: TaskId,
    pub agent: Name,
    /// The user who delegated the task.
    pub delegator: Name,
    /// The one repository it is good for, `owner/name`.
    pub repo: String,
    /// What the run held when it was issued, cut down to `repo`.
    pub warrant_scope: Scope,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GitCredentialError {
    #[error("the credential is malformed: {0}")]
    Malformed(JwsError),
    #[error("the credential's algorithm is not allowed: {0}")]
    AlgorithmNotAllowed(JwsError),
    #[error("the credential is not a git credential")]
    WrongType,
    #[error("the credential names no signing key")]
    MissingKid,
    #[error("the credential's signing key `{0}` is unknown")]
    UnknownKey(String),
    #[error("the credential's signature does not verify")]
    BadSignature,
    #[error("the credential's claims are invalid: {0}")]
    InvalidClaims(String),
    #[error("the credential is for another issuer")]
    WrongIssuer,
    #[error("the credential is for another git server")]
    WrongAudience,
    #[error("the credential's subject is not a run of this trust domain and agent")]
    WrongSubject,
    #[error("the credential has expired")]
    Expired,
    #[error("the credential is not valid yet")]
    NotYetValid,
    #[error("task `{0}` is not open")]
    TaskNotLive(TaskId),
    #[error("task `{0}` has expired")]
    TaskExpired(TaskId),
    #[error("a git credential lives between 1 second and 10 minutes")]
    BadTtl,
    #[error("`{0}` is not a repository name (`owner/name`)")]
    BadRepo(String),
    #[error("repository `{0}` is not in the run's scope")]
    RepoNotInScope(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl GitCredentialError {
    pub fn oauth_error(&self) -> OAuthError {
        match self {
            Self::Internal(_) => OAuthError::ServerError,
            Self::BadTtl | Self::BadRepo(_) => OAuthError::InvalidRequest,
            Self::RepoNotInScope(_) => OAuthError::InvalidScope,
            Self::TaskNotLive(_) | Self::TaskExpired(_) => OAuthError::InvalidGrant,
            _ => OAuthError::InvalidToken,
        }
    }

    /// A short stable name of the failed check, for refusal events.
    pub fn check(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "credential_malformed",
            Self::AlgorithmNotAllowed(_) => "credential_algorithm",
            Self::WrongType => "credential_type",
            Self::MissingKid | Self::UnknownKey(_) => "credential_kid",
            Self::BadSignature => "credential_signature",
            Self::InvalidClaims(_) => "credential_claims",
            Self::WrongIssuer => "credential_issuer",
            Self::WrongAudience => "credential_audience",
            Self::WrongSubject => "credential_subject",
            Self::Expired => "credential_expired",
            Self::NotYetValid => "credential_not_yet_valid",
            Self::TaskNotLive(_) | Self::TaskExpired(_) => "task_ended",
            Self::BadTtl | Self::BadRepo(_) => "bad_request",
            Self::RepoNotInScope(_) => "out_of_scope",
            Self::Internal(_) => "internal",
        }
    }
}

/// The origin a git server is named by: lowercase `scheme://host[:port]`,
/// without the scheme's default port, so `https://Git.Example:443` and
/// `https://git.example` are one audience. `None` for anything but
/// `http`/`https` and a plain host name, IPv4 or bracketed IPv6 address
/// with an optional port.
pub fn origin(scheme: &str, host: &str) -> Option<String> {
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let host = host.to_ascii_lowercase();
    if host.is_empty() || host.len() > 255 {
        return None;
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if inner.is_empty() || !inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return None;
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{inner}]"), port)
    } else {
        let (name, port) = match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host.as_str(), None),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !name.split('.').all(label_ok) {
            return None;
        }
        (name.to_owned(), port)
    };
    match port {
        None => Some(format!("{scheme}://{name}")),
        Some(p) if p == default_port => Some(format!("{scheme}://{name}")),
        Some(p) => {
            let n: u16 = p.parse().ok()?;
            if n == 0 || p.starts_with('0') {
                return None;
            }
            Some(format!("{scheme}://{name}:{n}"))
        }
    }
}

/// Longest `Authorization` value [`presented`] reads.
const MAX_AUTHORIZATION_LEN: usize = 16 * 1024;

/// The credential in an `Authorization` header value: `Bearer <credential>`,
/// or the password of `Basic base64(user:credential)` with any user name
/// (what git sends unless its helper answered with `authtype`). `None` for
/// anything else, an empty credential included. Nothing is verified here.
pub fn presented(authorization: &str) -> Option<String> {
    if authorization.len() > MAX_AUTHORIZATION_LEN {
        return None;
    }
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    let rest = rest.trim_start_matches(' ');
    let credential = if scheme.eq_ignore_ascii_case("bearer") {
        rest.to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, rest).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_user, password) = text.split_once(':')?;
        password.to_owned()
    } else {
        return None;
    };
    (!credential.is_empty() && credential.bytes().all(|b| b.is_ascii_graphic()))
        .then_some(credential)
}

/// Everything a git credential says, minus what [`mint`] decides itself.
#[derive(Debug, Clone)]
pub struct GitMintParams<'a> {
    pub issuer: &'a str,
    /// The git server's origin, as [`origin`] makes it.
    pub audience: &'a str,
    pub trust_domain: &'a TrustDomain,
    pub run: RunId,
    pub task: &'a Task,
    /// `owner/name`.
    pub repo: &'a str,
    /// The scope the run holds; it is cut down to `repo` here.
    pub scope: &'a Scope,
    /// At most [`MAX_GIT_CREDENTIAL_TTL`]; capped by `not_after` and the
    /// task's expiry.
    pub ttl: SignedDuration,
    /// The run's own end: the credential never outlives it.
    pub not_after: Timestamp,
}

/// A freshly signed git credential and its claims.
#[derive(Clone)]
pub struct MintedGitCredential {
    pub credential: String,
    pub claims: GitClaims,
}

impl std::fmt::Debug for MintedGitCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedGitCredential")
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// Mints a git credential for `p.repo` at `p.audience`. `exp` is
/// `now + ttl`, but never past the task's expiry or the run's end.
pub fn mint(
    key: &SigningKey,
    p: &GitMintParams<'_>,
    clock: &dyn Clock,
) -> Result<MintedGitCredential, GitCredentialError> {
    let task = p.task;
    if !task.is_live() {
        return Err(GitCredentialError::TaskNotLive(task.id));
    }
    if p.ttl < SignedDuration::from_secs(1) || p.ttl > MAX_GIT_CREDENTIAL_TTL {
        return Err(GitCredentialError::BadTtl);
    }
    let one = Scope {
        repos: vec![p.repo.to_owned()],
        ..Scope::default()
    };
    if one.validated().is_err() {
        return Err(GitCredentialError::BadRepo(
            p.repo.chars().take(200).collect(),
        ));
    }
    if !p.scope.repos.iter().any(|r| r == p.repo) {
        return Err(GitCredentialError::RepoNotInScope(p.repo.to_owned()));
    }
    let now = clock.now().as_second();
    let exp = now
        .saturating_add(p.ttl.as_secs())
        .min(task.expires_at.as_second())
        .min(p.not_after.as_second());
    if exp <= now {
        return Err(GitCredentialError::TaskExpired(task.id));
    }
    let jti = warrant_crypto::random_bytes::<16>()
        .map_err(|e| GitCredentialError::Internal(e.to_string()))?;
    let claims = GitClaims {
        iss: p.issuer.to_owned(),
        sub: RunSpiffeId::new(p.trust_domain.clone(), task.agent.clone(), p.run).to_string(),
        aud: p.audience.to_owned(),
        iat: now,
        exp,
        jti: jti.iter().map(|b| format!("{b:02x}")).collect(),
        task: task.id,
        agent: task.agent.clone(),
        delegator: task.delegator.clone(),
        repo: p.repo.to_owned(),
        warrant_scope: for_repo(p.scope, p.repo),
    };
    let credential = jws::sign_jwt(key, GIT_CREDENTIAL_TYP, &claims)
        .map_err(|e| GitCredentialError::Internal(e.to_string()))?;
    Ok(MintedGitCredential { credential, claims })
}

/// `scope` with only `repo` left in its repositories.
fn for_repo(scope: &Scope, repo: &str) -> Scope {
    Scope {
        repos: scope.repos.iter().filter(|r| *r == repo).cloned().collect(),
        ..scope.clone()
    }
}

/// What a verifier expects of a git credential.
#[derive(Debug, Clone)]
pub struct GitCredentialExpectations<'a> {
    pub issuer: &'a str,
    /// The origin of the git server it is presented to ([`origin`]).
    pub audience: &'a str,
    pub trust_domain: &'a TrustDomain,
    /// Clock skew tolerated on `exp` and `iat`; capped at [`MAX_LEEWAY`].
    pub leeway: SignedDuration,
}

/// A git credential whose signature, type, issuer, audience, lifetime and
/// subject have been checked. Whether its run and task are still live is
/// the caller's to check.
#[derive(Clone)]
pub struct GitCredential {
    kid: String,
    claims: GitClaims,
    id: RunSpiffeId,
}

impl std::fmt::Debug for GitCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredential")
            .field("kid", &self.kid)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

impl GitCredential {
    pub fn claims(&self) -> &GitClaims {
        &self.claims
    }

    pub fn spiffe_id(&self) -> &RunSpiffeId {
        &self.id
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }
}

impl Unverified<GitCredential> {
    pub fn verify(
        self,
        keys: &Jwks,
        expect: &GitCredentialExpectations<'_>,
        clock: &dyn Clock,
    ) -> Result<GitCredential, GitCredentialError> {
        let raw = self.as_str();
        let header = jws::decode_header(raw).map_err(jws_error)?;
        if !header.typ_is(GIT_CREDENTIAL_TYP) {
            return Err(GitCredentialError::WrongType);
        }
        let kid = header.kid.ok_or(GitCredentialError::MissingKid)?;
        let key = keys
            .find(&kid)
            .ok_or_else(|| GitCredentialError::UnknownKey(kid.chars().take(64).collect()))?;
        let verified = jws::verify(raw, key, &[JwsAlg::EdDSA]).map_err(jws_error)?;
        let claims: GitClaims = serde_json::from_value(Value::Object(verified.claims))
            .map_err(|e| GitCredentialError::InvalidClaims(e.to_string()))?;

        if claims.iss != expect.issuer {
            return Err(GitCredentialError::WrongIssuer);
        }
        if !warrant_crypto::constant_time_eq(claims.aud.as_bytes(), expect.audience.as_bytes()) {
            return Err(GitCredentialError::WrongAudience);
        }
        if claims.exp <= claims.iat
            || claims.exp.saturating_sub(claims.iat) > MAX_GIT_CREDENTIAL_TTL.as_secs()
        {
            return Err(GitCredentialError::InvalidClaims(
                "the lifetime is out of bounds".into(),
            ));
        }
        let leeway = expect
            .leeway
            .clamp(SignedDuration::ZERO, MAX_LEEWAY)
            .as_secs();
        let now = clock.now().as_second();
        // `exp` is the first second the credential is no longer valid.
        if now >= claims.exp.saturating_add(leeway) {
            return Err(GitCredentialError::Expired);
        }
        if claims.iat > now.saturating_add(leeway) {
            return Err(GitCredentialError::NotYetValid);
        }
        let id = RunSpiffeId::parse(&claims.sub).map_err(|_| GitCredentialError::WrongSubject)?;
        if &id.trust_domain != expect.trust_domain || id.agent != claims.agent {
            return Err(GitCredentialError::WrongSubject);
        }
        if claims.warrant_scope.repos != [claims.repo.as_str()] {
            return Err(GitCredentialError::InvalidClaims(
                "the scope is not the credential's repository".into(),
            ));
        }
        Ok(GitCredential { kid, claims, id })
    }
}

fn jws_error(e: JwsError) -> GitCredentialError {
    match e {
        JwsError::AlgorithmNotAllowed(_) | JwsError::KeyMismatch(_) => {
            GitCredentialError::AlgorithmNotAllowed(e)
        }
        JwsError::BadSignature => GitCredentialError::BadSignature,
        JwsError::Internal(m) => GitCredentialError::Internal(m),
        JwsError::ProviderConflict => GitCredentialError::Internal(e.to_string()),
        other => GitCredentialError::Malformed(other),
    }
}

#[cfg(test)]
mod tests;
