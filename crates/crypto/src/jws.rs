//! JWS/JWT signing and verification on top of `jsonwebtoken`.
//!
//! What this module adds to the library: an explicit algorithm allowlist that
//! can never contain `none` or an HMAC algorithm, strict public JWKs that
//! refuse private key material, RFC 7638 thumbprints, an Ed25519 JWKS built
//! from raw public keys (never from a PKCS#8 key, see DEPENDENCIES.md trap 3),
//! and keys for proof-of-possession clients (DPoP). Time-based claims are not
//! checked here: the caller checks them against its injected clock.

use std::sync::Once;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::Serialize;
use serde_json::{Map, Value};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::{SigningKey, ed25519_kid, sha256};

/// The largest compact JWS this module will look at. Run tokens and proofs
/// are well under 4 KiB; the bound keeps hostile input cheap to refuse.
pub const MAX_JWS_LEN: usize = 16 * 1024;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum JwsError {
    #[error("the token is not a compact JWS: {0}")]
    Malformed(&'static str),
    #[error("the token is longer than {MAX_JWS_LEN} bytes")]
    TooLong,
    #[error("algorithm `{0}` is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("the key does not fit algorithm `{0}`")]
    KeyMismatch(&'static str),
    #[error("invalid JWK: {0}")]
    InvalidJwk(&'static str),
    #[error("the JWK holds private key material")]
    PrivateKeyInJwk,
    #[error("the header names critical extensions this verifier does not understand")]
    CriticalHeader,
    #[error("signature does not verify")]
    BadSignature,
    #[error("the claims are not a JSON object")]
    ClaimsNotObject,
    #[error("another JWT crypto provider is already installed")]
    ProviderConflict,
    /// A bug or a broken environment, never something a caller sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The signature algorithms Warrant accepts anywhere. There is deliberately
/// no variant for `none` or for HMAC: a verifier cannot be configured into
/// the algorithm-confusion attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlg {
    EdDSA,
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048 to 8192-bit keys. Only for
    /// outside issuers' tokens (GitHub Actions, many IdPs sign RS256):
    /// Warrant never signs with it, and the run-token and DPoP allowlists
    /// never name it.
    RS256,
}

impl JwsAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
        }
    }

    /// Parses an `alg` header value. Everything outside the supported set
    /// (including `none`, `HS256`, `PS256` and `RS384`) is refused.
    pub fn parse(s: &str) -> Result<Self, JwsError> {
        match s {
            "EdDSA" => Ok(Self::EdDSA),
            "ES256" => Ok(Self::ES256),
            "RS256" => Ok(Self::RS256),
            other => Err(JwsError::AlgorithmNotAllowed(
                other.chars().take(32).collect(),
            )),
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            Self::EdDSA => Algorithm::EdDSA,
            Self::ES256 => Algorithm::ES256,
            Self::RS256 => Algorithm::RS256,
        }
    }
}

/// Installs `jsonwebtoken`'s aws-lc-rs provider for this process.
///
/// `jsonwebtoken` panics at run time when feature unification leaves it
/// with zero or two providers (DEPENDENCIES.md trap 2). Every function in
/// this module calls this first, so the choice never depends on features;
/// servers may also call it at start-up to fail early.
pub fn install_provider() -> Result<(), JwsError> {
    static INSTALL: Once = Once::new();
    let ours: &'static CryptoProvider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    let mut result = Ok(());
    INSTALL.call_once(|| {
        if let Err(existing) = ours.install_default()
            && !std::ptr::eq(existing, ours)
        {
            result = Err(JwsError::ProviderConflict);
        }
    });
    result
}

/// A public JWK of a kind Warrant accepts. Parsing is strict: unknown key
/// types and curves are refused, and so is any private key member.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PublicJwk {
    /// `{"kty":"OKP","crv":"Ed25519","x":...}`
    Ed25519([u8; 32]),
    /// `{"kty":"EC","crv":"P-256","x":...,"y":...}`
    P256 { x: [u8; 32], y: [u8; 32] },
    /// `{"kty":"RSA","n":...,"e":...}`, 2048 to 8192 bits; only ever used
    /// with [`JwsAlg::RS256`] (outside issuers' keys).
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// JWK members that only private (or symmetric) keys carry (RFC 7518 §6).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

impl PublicJwk {
    /// Reads a JWK from its JSON form. Members other than the key itself
    /// (`kid`, `alg`, `use`, ...) are ignored, never trusted.
    pub fn from_json(value: &Value) -> Result<Self, JwsError> {
        let obj = value
            .as_object()
            .ok_or(JwsError::InvalidJwk("not a JSON object"))?;
        if PRIVATE_MEMBERS.iter().any(|m| obj.contains_key(*m)) {
            return Err(JwsError::PrivateKeyInJwk);
        }
        let member = |name: &'static str| {
            obj.get(name)
                .and_then(Value::as_str)
                .ok_or(JwsError::InvalidJwk("a required member is missing"))
        };
        if member("kty")? == "RSA" {
            return rsa_from_members(member("n")?, member("e")?);
        }
        match (member("kty")?, member("crv")?) {
            ("OKP", "Ed25519") => Ok(Self::Ed25519(decode_32(member("x")?)?)),
            ("EC", "P-256") => Ok(Self::P256 {
                x: decode_32(member("x")?)?,
                y: decode_32(member("y")?)?,
            }),
            _ => Err(JwsError::InvalidJwk("unsupported key type or curve")),
        }
    }

    /// The JSON form with only the required members, in RFC 7638 order.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        match self {
            Self::Ed25519(x) => {
                m.insert("crv".into(), "Ed25519".into());
                m.insert("kty".into(), "OKP".into());
                m.insert("x".into(), URL_SAFE_NO_PAD.encode(x).into());
            }
            Self::P256 { x, y } => {
                m.insert("crv".into(), "P-256".into());
                m.insert("kty".into(), "EC".into());
                m.insert("x".into(), URL_SAFE_NO_PAD.encode(x).into());
                m.insert("y".into(), URL_SAFE_NO_PAD.encode(y).into());
            }
            Self::Rsa { n, e } => {
                m.insert("e".into(), URL_SAFE_NO_PAD.encode(e).into());
                m.insert("kty".into(), "RSA".into());
                m.insert("n".into(), URL_SAFE_NO_PAD.encode(n).into());
            }
        }
        Value::Object(m)
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url without padding. For a
    /// DPoP key this is the `jkt` a token is bound to.
    pub fn thumbprint(&self) -> String {
        match self {
            Self::Ed25519(x) => ed25519_kid(x),
            Self::P256 { x, y } => {
                // RFC 7638 §3.2: required members only, lexicographic order,
                // no whitespace.
                let canonical = format!(
                    r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                    URL_SAFE_NO_PAD.encode(x),
                    URL_SAFE_NO_PAD.encode(y)
                );
                URL_SAFE_NO_PAD.encode(sha256(canonical.as_bytes()))
            }
            Self::Rsa { n, e } => {
                let canonical = format!(
                    r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                    URL_SAFE_NO_PAD.encode(e),
                    URL_SAFE_NO_PAD.encode(n)
                );
                URL_SAFE_NO_PAD.encode(sha256(canonical.as_bytes()))
            }
        }
    }

    /// The one algorithm this key may be used with.
    pub fn alg(&self) -> JwsAlg {
        match self {
            Self::Ed25519(_) => JwsAlg::EdDSA,
            Self::P256 { .. } => JwsAlg::ES256,
            Self::Rsa { .. } => JwsAlg::RS256,
        }
    }

    fn decoding_key(&self) -> DecodingKey {
        match self {
            Self::Ed25519(x) => DecodingKey::from_ed_der(x),
            Self::P256 { x, y } => {
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                DecodingKey::from_ec_der(&point)
            }
            Self::Rsa { n, e } => DecodingKey::from_rsa_raw_components(n, e),
        }
    }
}

/// RSA public key members (RFC 7518 §6.3.1): big-endian, no leading zero
/// bytes; the modulus 2048 to 8192 bits, the exponent odd and at most
/// 64 bits.
fn rsa_from_members(n: &str, e: &str) -> Result<PublicJwk, JwsError> {
    let decode = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| JwsError::InvalidJwk("an RSA member is not base64url"))
    };
    let (n, e) = (decode(n)?, decode(e)?);
    let canonical = |v: &[u8]| v.first().is_some_and(|b| *b != 0);
    if !canonical(&n) || !(256..=1024).contains(&n.len()) {
        return Err(JwsError::InvalidJwk(
            "an RSA modulus is 2048 to 8192 bits without leading zeros",
        ));
    }
    if !canonical(&e) || e.len() > 8 || e.last().is_some_and(|b| b % 2 == 0) {
        return Err(JwsError::InvalidJwk(
            "an RSA exponent is odd and at most 64 bits",
        ));
    }
    Ok(PublicJwk::Rsa { n, e })
}

fn decode_32(s: &str) -> Result<[u8; 32], JwsError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or(JwsError::InvalidJwk(
            "a coordinate is not 32 bytes of base64url",
        ))
}

/// One key of a JWKS with its `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksKey {
    pub kid: String,
    pub key: PublicJwk,
}

/// A JSON Web Key Set: what `/.well-known/jwks.json` publishes and what a
/// verifier looks a token's `kid` up in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<JwksKey>,
}

impl Jwks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an Ed25519 public key under its RFC 7638 thumbprint, the same
    /// `kid` [`SigningKey::kid`] reports. Adding a key twice is a no-op.
    pub fn push_ed25519(&mut self, public_key: [u8; 32]) -> &mut Self {
        let kid = ed25519_kid(&public_key);
        if self.find(&kid).is_none() {
            self.keys.push(JwksKey {
                kid,
                key: PublicJwk::Ed25519(public_key),
            });
        }
        self
    }

    /// A set of the given signing keys' public halves.
    pub fn from_signing_keys<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> Self {
        let mut set = Self::new();
        for k in keys {
            set.push_ed25519(k.public_key());
        }
        set
    }

    pub fn find(&self, kid: &str) -> Option<&PublicJwk> {
        self.keys.iter().find(|k| k.kid == kid).map(|k| &k.key)
    }

    pub fn keys(&self) -> &[JwksKey] {
        &self.keys
    }

    /// `{"keys":[{"kty":"OKP","crv":"Ed25519","x":...,"kid":...,"alg":"EdDSA","use":"sig"}]}`
    pub fn to_json(&self) -> Value {
        let keys = self
            .keys
            .iter()
            .map(|k| {
                let mut v = k.key.to_json();
                if let Value::Object(m) = &mut v {
                    m.insert("kid".into(), k.kid.clone().into());
                    m.insert("alg".into(), k.key.alg().as_str().into());
                    m.insert("use".into(), "sig".into());
                }
                v
            })
            .collect::<Vec<_>>();
        serde_json::json!({ "keys": keys })
    }

    /// Reads a JWKS. Keys without a `kid`, of unsupported types, or meant
    /// for encryption are skipped; a key with private material refuses the
    /// whole set (the publisher is leaking secrets).
    pub fn from_json(value: &Value) -> Result<Self, JwsError> {
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwsError::InvalidJwk("a JWKS has a `keys` array"))?;
        let mut set = Self::new();
        for v in keys {
            let Some(kid) = v.get("kid").and_then(Value::as_str) else {
                continue;
            };
            if v.get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            match PublicJwk::from_json(v) {
                Ok(key) if set.find(kid).is_none() => set.keys.push(JwksKey {
                    kid: kid.to_owned(),
                    key,
                }),
                Ok(_) | Err(JwsError::InvalidJwk(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(set)
    }
}

/// The protected header of a JWS, read before its signature is checked.
/// Nothing in it is trusted until [`verify`] succeeds.
#[derive(Debug, Clone, PartialEq)]
pub struct JwsHeader {
    pub alg: JwsAlg,
    pub typ: Option<String>,
    pub kid: Option<String>,
    /// The `jwk` header (DPoP proofs carry their public key there).
    pub jwk: Option<PublicJwk>,
    /// Every member as sent, for checks this module does not know about.
    pub raw: Map<String, Value>,
}

impl JwsHeader {
    /// `true` when `typ` names `expected` (RFC 7515 §4.1.9: compared
    /// case-insensitively, the `application/` prefix may be left out).
    pub fn typ_is(&self, expected: &str) -> bool {
        self.typ.as_deref().is_some_and(|t| {
            let t = t
                .get(..12)
                .filter(|p| p.eq_ignore_ascii_case("application/"))
                .map_or(t, |_| &t[12..]);
            t.eq_ignore_ascii_case(expected)
        })
    }
}

/// Splits a compact JWS into its three base64url parts.
fn split(token: &str) -> Result<[&str; 3], JwsError> {
    if token.len() > MAX_JWS_LEN {
        return Err(JwsError::TooLong);
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() => Ok([h, p, s]),
        _ => Err(JwsError::Malformed("expected three dot-separated parts")),
    }
}

/// Reads the protected header without verifying anything. Use it to find
/// the key (`kid`, `jwk`), then call [`verify`].
pub fn decode_header(token: &str) -> Result<JwsHeader, JwsError> {
    let [h, _, _] = split(token)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| JwsError::Malformed("the header is not base64url"))?;
    let raw: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| JwsError::Malformed("the header is not a JSON object"))?;
    let alg = raw
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwsError::Malformed("the header has no `alg`"))
        .and_then(JwsAlg::parse)?;
    // RFC 7515 §4.1.11: a recipient must refuse extensions it does not
    // understand, and we understand none.
    if raw.contains_key("crit") {
        return Err(JwsError::CriticalHeader);
    }
    let text = |name: &str| -> Result<Option<String>, JwsError> {
        match raw.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(JwsError::Malformed("a header member has the wrong type")),
        }
    };
    let typ = text("typ")?;
    let kid = text("kid")?;
    let jwk = raw.get("jwk").map(PublicJwk::from_json).transpose()?;
    Ok(JwsHeader {
        alg,
        typ,
        kid,
        jwk,
        raw,
    })
}

/// A JWS whose signature verified with the given key.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedJws {
    pub header: JwsHeader,
    /// The claims, always a JSON object. Not yet checked: `exp`, `iss`,
    /// `aud` and friends are the caller's job.
    pub claims: Map<String, Value>,
}

/// Verifies a compact JWS signature with `key`, accepting only algorithms in
/// `allowed` that also fit the key's type.
///
/// Refused: any `alg` outside `allowed` (so `none` and HMAC always are), a
/// key of another type than the header's `alg` names, a bad signature, and
/// claims that are not a JSON object. Time claims are not checked.
pub fn verify(token: &str, key: &PublicJwk, allowed: &[JwsAlg]) -> Result<VerifiedJws, JwsError> {
    install_provider()?;
    let header = decode_header(token)?;
    if !allowed.contains(&header.alg) {
        return Err(JwsError::AlgorithmNotAllowed(header.alg.as_str().into()));
    }
    if key.alg() != header.alg {
        return Err(JwsError::KeyMismatch(header.alg.as_str()));
    }
    let [h, p, s] = split(token)?;
    // RFC 7515 §5.2: the signature covers the header and payload exactly as
    // sent, `BASE64URL(header) || '.' || BASE64URL(payload)`.
    let signing_input = &token.as_bytes()[..h.len() + 1 + p.len()];
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwsError::Malformed("the signature is not base64url"))?;
    verify_signature(header.alg, key, signing_input, &signature)?;
    // Only now, with the signature checked, is the payload looked at.
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| JwsError::Malformed("the payload is not base64url"))?;
    match serde_json::from_slice::<Value>(&payload) {
        Ok(Value::Object(claims)) => Ok(VerifiedJws { header, claims }),
        Ok(_) => Err(JwsError::ClaimsNotObject),
        Err(_) => Err(JwsError::Malformed("the payload is not JSON")),
    }
}

/// Checks a raw `signature` over `signing_input` with `key` under `alg`:
/// the one signature check behind [`verify`], exposed so that test vectors
/// (Wycheproof) that sign arbitrary messages exercise the same code.
///
/// `signature` is in its JWS form (RFC 7518 §3): 64 bytes `R || S` for
/// EdDSA and ES256 (never DER), the key's modulus length for RS256.
pub fn verify_signature(
    alg: JwsAlg,
    key: &PublicJwk,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), JwsError> {
    install_provider()?;
    if key.alg() != alg {
        return Err(JwsError::KeyMismatch(alg.as_str()));
    }
    // `jsonwebtoken` takes the signature as the base64url JWS segment.
    let verified = jsonwebtoken::crypto::verify(
        &URL_SAFE_NO_PAD.encode(signature),
        signing_input,
        &key.decoding_key(),
        alg.jwt(),
    )
    .map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::Provider(_) => JwsError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            JwsError::AlgorithmNotAllowed(alg.as_str().into())
        }
        _ => JwsError::Internal("the signature check failed unexpectedly".into()),
    })?;
    if verified {
        Ok(())
    } else {
        Err(JwsError::BadSignature)
    }
}

/// Signs `claims` as a JWT with Warrant's Ed25519 key: header
/// `{"alg":"EdDSA","typ":typ,"kid":key.kid()}`.
pub fn sign_jwt<T: Serialize>(key: &SigningKey, typ: &str, claims: &T) -> Result<String, JwsError> {
    install_provider()?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some(typ.to_owned());
    header.kid = Some(key.kid().to_owned());
    let der = key
        .key
        .to_pkcs8_der()
        .map_err(|e| JwsError::Internal(format!("cannot encode the signing key: {e}")))?;
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes()))
        .map_err(|e| JwsError::Internal(format!("cannot sign: {e}")))
}

/// A client's proof-of-possession key (a DPoP key): an ephemeral ES256 or
/// Ed25519 key pair that signs JWTs carrying its public JWK in the header.
pub struct ProofKey {
    encoding: EncodingKey,
    public: PublicJwk,
}

impl std::fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl ProofKey {
    /// A fresh key pair for `alg`.
    pub fn generate(alg: JwsAlg) -> Result<Self, JwsError> {
        match alg {
            JwsAlg::EdDSA => {
                let seed = Zeroizing::new(
                    crate::random_bytes::<32>().map_err(|e| JwsError::Internal(e.to_string()))?,
                );
                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                let der = key
                    .to_pkcs8_der()
                    .map_err(|e| JwsError::Internal(format!("cannot encode a key: {e}")))?;
                Ok(Self {
                    encoding: EncodingKey::from_ed_der(der.as_bytes()),
                    public: PublicJwk::Ed25519(key.verifying_key().to_bytes()),
                })
            }
            JwsAlg::ES256 => {
                use aws_lc_rs::signature::{
                    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
                };
                let internal = |_| JwsError::Internal("cannot generate a P-256 key".into());
                let pair =
                    EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(internal)?;
                let der = pair.to_pkcs8v1().map_err(internal)?;
                let point = pair.public_key().as_ref();
                let (x, y) = match point {
                    [0x04, rest @ ..] if rest.len() == 64 => rest.split_at(32),
                    _ => return Err(JwsError::Internal("unexpected P-256 point encoding".into())),
                };
                let coord = |c: &[u8]| {
                    <[u8; 32]>::try_from(c)
                        .map_err(|_| JwsError::Internal("unexpected P-256 point encoding".into()))
                };
                Ok(Self {
                    encoding: EncodingKey::from_ec_der(der.as_ref()),
                    public: PublicJwk::P256 {
                        x: coord(x)?,
                        y: coord(y)?,
                    },
                })
            }
            // Proof keys are small and fast; RSA is only for outside issuers.
            JwsAlg::RS256 => Err(JwsError::AlgorithmNotAllowed("RS256".into())),
        }
    }

    pub fn public_jwk(&self) -> &PublicJwk {
        &self.public
    }

    /// The RFC 7638 thumbprint of the public key (`jkt`).
    pub fn thumbprint(&self) -> String {
        self.public.thumbprint()
    }

    /// Signs `claims` with header `{"typ":typ,"alg":...,"jwk":<public key>}`,
    /// the shape of an RFC 9449 DPoP proof.
    pub fn sign_with_jwk<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, JwsError> {
        let mut header = Map::new();
        header.insert("typ".into(), typ.into());
        header.insert("alg".into(), self.public.alg().as_str().into());
        header.insert("jwk".into(), self.public.to_json());
        self.sign_with_header(&header, claims)
    }

    /// Signs `claims` under an arbitrary protected header, whose `alg` is
    /// replaced by this key's algorithm. Signing with one's own key cannot
    /// weaken anything, so this is not `dangerous_`; it lets tests build
    /// proofs that are wrong in exactly one way.
    pub fn sign_with_header<T: Serialize>(
        &self,
        header: &Map<String, Value>,
        claims: &T,
    ) -> Result<String, JwsError> {
        install_provider()?;
        let mut header = header.clone();
        header.insert("alg".into(), self.public.alg().as_str().into());
        let message = encode_signing_input(&Value::Object(header), claims)?;
        let sig =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, self.public.alg().jwt())
                .map_err(|e| JwsError::Internal(format!("cannot sign: {e}")))?;
        Ok(format!("{message}.{sig}"))
    }
}

fn encode_signing_input<T: Serialize>(header: &Value, claims: &T) -> Result<String, JwsError> {
    let h = serde_json::to_vec(header).map_err(|e| JwsError::Internal(e.to_string()))?;
    let c = serde_json::to_vec(claims).map_err(|e| JwsError::Internal(e.to_string()))?;
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(h),
        URL_SAFE_NO_PAD.encode(c)
    ))
}

/// Forgeries for tests: tokens that every verifier in Warrant must refuse.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;

    /// An unsecured JWS (`"alg":"none"`, empty signature) with the given
    /// header members.
    pub fn dangerous_unsigned(header: &Map<String, Value>, claims: &Value) -> String {
        let mut header = header.clone();
        header.insert("alg".into(), "none".into());
        let message = encode_signing_input(&Value::Object(header), claims).unwrap_or_default();
        format!("{message}.")
    }

    /// An HS256 JWS keyed with `secret` — e.g. the victim's public key, the
    /// classic algorithm-confusion attack.
    pub fn dangerous_hs256(header: &Map<String, Value>, claims: &Value, secret: &[u8]) -> String {
        let _ = install_provider();
        let mut header = header.clone();
        header.insert("alg".into(), "HS256".into());
        let message = encode_signing_input(&Value::Object(header), claims).unwrap_or_default();
        let sig = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(secret),
            Algorithm::HS256,
        )
        .unwrap_or_default();
        format!("{message}.{sig}")
    }
}

#[cfg(test)]
mod tests;
