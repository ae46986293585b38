//! The only crate in Warrant that names crypto libraries.
//!
//! It owns Ed25519 signing keys and their `kid`s, signature verification,
//! SHA-256, API-token generation and hashing, randomness, and (in [`jws`])
//! JWT signing and verification with an algorithm allowlist, JWKs, JWKS and
//! RFC 7638 thumbprints. Every other crate asks this one, so there is one
//! place to audit.
//!
//! It must never do IO: keys come in and go out as PEM text or bytes; the
//! caller decides where they live on disk.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::Zeroizing;

pub mod jws;

#[derive(Debug, Error)]
pub enum CryptoError {
    #[error("the system's random number generator failed: {0}")]
    Random(String),
    #[error("cannot read the signing key: {0}")]
    KeyDecode(String),
    #[error("cannot encode the signing key: {0}")]
    KeyEncode(String),
    #[error("invalid public key")]
    PublicKey,
    #[error("signature does not verify")]
    BadSignature,
    /// Sealing failed, or a sealed value does not open (altered, another
    /// key, another context).
    #[error("the sealed value does not open")]
    Seal,
}

/// A SHA-256 digest.
pub type Sha256Digest = [u8; 32];

pub fn sha256(data: &[u8]) -> Sha256Digest {
    Sha256::digest(data).into()
}

/// Incremental SHA-256, for hashing a value from several parts.
#[derive(Default, Clone)]
pub struct Sha256Hasher(Sha256);

impl Sha256Hasher {
    pub fn new() -> Self {
        Self(Sha256::new())
    }
    pub fn update(&mut self, data: &[u8]) -> &mut Self {
        self.0.update(data);
        self
    }
    pub fn finish(self) -> Sha256Digest {
        self.0.finalize().into()
    }
}

/// Fills `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| CryptoError::Random(e.to_string()))?;
    Ok(buf)
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An Ed25519 signing key and its `kid` (the RFC 7638 JWK thumbprint of
/// its public key).
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn generate() -> Result<Self, CryptoError> {
        let seed = Zeroizing::new(random_bytes::<32>()?);
        Ok(Self::from_key(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    fn from_key(key: ed25519_dalek::SigningKey) -> Self {
        let kid = ed25519_kid(&key.verifying_key().to_bytes());
        Self { key, kid }
    }

    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, CryptoError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map(Self::from_key)
            .map_err(|e| CryptoError::KeyDecode(e.to_string()))
    }

    /// The key as PKCS#8 PEM. The caller must keep it secret (mode 0600).
    pub fn to_pkcs8_pem(&self) -> Result<SecretString, CryptoError> {
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| CryptoError::KeyEncode(e.to_string()))?;
        Ok(SecretString::from(pem.as_str().to_owned()))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

/// The RFC 7638 thumbprint of an Ed25519 public key as an OKP JWK,
/// base64url without padding. Used as the key's `kid`.
pub fn ed25519_kid(public_key: &[u8; 32]) -> String {
    // RFC 7638: members in lexicographic order, no whitespace.
    let jwk = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public_key)
    );
    URL_SAFE_NO_PAD.encode(sha256(jwk.as_bytes()))
}

/// Verifies an Ed25519 signature (strict: rejects non-canonical and
/// small-order encodings).
pub fn verify_ed25519(public_key: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    let pk: [u8; 32] = public_key.try_into().map_err(|_| CryptoError::PublicKey)?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).map_err(|_| CryptoError::PublicKey)?;
    let sig: [u8; 64] = sig.try_into().map_err(|_| CryptoError::BadSignature)?;
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    vk.verify_strict(msg, &sig)
        .map_err(|_| CryptoError::BadSignature)
}

/// The prefix every Warrant API token starts with, so secret scanners can
/// find leaked ones.
pub const API_TOKEN_PREFIX: &str = "wrt_";

/// A freshly generated API token and the hash the store keeps.
pub struct NewApiToken {
    /// Shown once to its owner, never stored.
    pub token: SecretString,
    pub hash: Sha256Digest,
}

/// Generates a 256-bit API token.
pub fn generate_api_token() -> Result<NewApiToken, CryptoError> {
    let raw = Zeroizing::new(random_bytes::<32>()?);
    let token = format!(
        "{API_TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(raw.as_slice())
    );
    let hash = hash_api_token(&token);
    Ok(NewApiToken {
        token: SecretString::from(token),
        hash,
    })
}

/// The stored form of an API token. Tokens carry 256 bits of entropy, so a
/// plain SHA-256 is enough: there is nothing to brute-force.
pub fn hash_api_token(token: &str) -> Sha256Digest {
    let mut h = Sha256Hasher::new();
    h.update(b"warrant-api-token/v1\0").update(token.as_bytes());
    h.finish()
}

/// The prefix of one-time task claims, so secret scanners can find them.
pub const CLAIM_PREFIX: &str = "wcl_";

/// Generates a 256-bit one-time task claim and the hash the store keeps.
pub fn generate_claim() -> Result<NewApiToken, CryptoError> {
    let raw = Zeroizing::new(random_bytes::<32>()?);
    let claim = format!("{CLAIM_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw.as_slice()));
    let hash = hash_claim(&claim);
    Ok(NewApiToken {
        token: SecretString::from(claim),
        hash,
    })
}

/// The stored form of a task claim: domain-separated from API tokens, so
/// a claim's hash can never match a user's token hash.
pub fn hash_claim(claim: &str) -> Sha256Digest {
    let mut h = Sha256Hasher::new();
    h.update(b"warrant-task-claim/v1\0")
        .update(claim.as_bytes());
    h.finish()
}

/// Hashes a token given as a secret.
pub fn hash_secret_token(token: &SecretString) -> Sha256Digest {
    hash_api_token(token.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_key_round_trips_through_pem_and_signs() {
        let k = SigningKey::generate().unwrap();
        let pem = k.to_pkcs8_pem().unwrap();
        let k2 = SigningKey::from_pkcs8_pem(pem.expose_secret()).unwrap();
        assert_eq!(k.kid(), k2.kid());
        let sig = k2.sign(b"hello");
        assert!(verify_ed25519(&k.public_key(), b"hello", &sig).is_ok());
        assert!(verify_ed25519(&k.public_key(), b"hellO", &sig).is_err());
        let other = SigningKey::generate().unwrap();
        assert!(verify_ed25519(&other.public_key(), b"hello", &sig).is_err());
    }

    #[test]
    fn kid_matches_rfc7638_example_shape() {
        // RFC 8037 appendix A.3: the thumbprint of its Ed25519 example key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let x: [u8; 32] = x.try_into().unwrap();
        assert_eq!(
            ed25519_kid(&x),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn api_tokens_are_prefixed_and_hash_stably() {
        let t = generate_api_token().unwrap();
        assert!(t.token.expose_secret().starts_with(API_TOKEN_PREFIX));
        assert_eq!(hash_secret_token(&t.token), t.hash);
        let u = generate_api_token().unwrap();
        assert_ne!(t.hash, u.hash);
    }

    #[test]
    fn claims_are_prefixed_and_hash_apart_from_api_tokens() {
        let c = generate_claim().unwrap();
        assert!(c.token.expose_secret().starts_with(CLAIM_PREFIX));
        assert_eq!(hash_claim(c.token.expose_secret()), c.hash);
        assert_ne!(hash_api_token(c.token.expose_secret()), c.hash);
    }

    #[test]
    fn garbage_pem_is_an_error_not_a_panic() {
        assert!(SigningKey::from_pkcs8_pem("not a key").is_err());
    }
}

/// HMAC-SHA-256 of `value` under `key`: a keyed hash for values the audit
/// log must be able to match (the same command twice) without holding them
/// in clear. Without the key, a guessed value cannot be confirmed.
pub fn keyed_hash(key: &[u8; 32], value: &[u8]) -> Sha256Digest {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let tag = aws_lc_rs::hmac::sign(&key, value);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

#[cfg(test)]
mod keyed_hash_tests {
    use super::keyed_hash;

    // Checked against a value computed independently (Python: hmac.new(bytes(range(32)), b"what do ya want for nothing?",
    // hashlib.sha256).hexdigest()).
    #[test]
    fn keyed_hash_is_hmac_sha256() {
        let key: [u8; 32] = core::array::from_fn(|i| i as u8);
        let tag = keyed_hash(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(tag),
            "099805f4ac310786968565c098db515cc50862b420ae31e20238312344bed36a"
        );
        assert_ne!(keyed_hash(&key, b"a"), keyed_hash(&[0; 32], b"a"));
    }
}

/// HMAC-SHA-256 (RFC 2104) of `msg` under a key of any length: for shared
/// secrets chosen by people (webhook signing), where [`keyed_hash`]'s fixed
/// 32-byte key does not fit. Keys longer than the block size are hashed
/// first, as the RFC says, so receivers can verify with any HMAC library.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Sha256Digest {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let tag = aws_lc_rs::hmac::sign(&key, msg);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

#[cfg(test)]
mod hmac_sha256_tests {
    use super::hmac_sha256;

    // Each value computed independently with Python:
    // hmac.new(key, msg, hashlib.sha256).hexdigest(). The first two are RFC 4231
    // test cases 2 and 6 (a short key, and a key longer than the block size).
    #[test]
    fn hmac_sha256_matches_python_hmac() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(
            hex::encode(hmac_sha256(b"", b"")),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"
        );
    }
}

/// A 32-byte key for sealing data at rest with XChaCha20-Poly1305 (a
/// random 24-byte nonce per seal is safe at any volume). The key material
/// is zeroized when dropped.
pub struct SealingKey(chacha20poly1305::XChaCha20Poly1305);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

/// Length of a [`SealingKey`] nonce.
pub const SEAL_NONCE_LEN: usize = 24;

impl SealingKey {
    pub fn new(key: &[u8; 32]) -> Self {
        use chacha20poly1305::KeyInit as _;
        Self(chacha20poly1305::XChaCha20Poly1305::new(key.into()))
    }

    /// Encrypts `plaintext` bound to `aad` under a fresh random nonce:
    /// `(nonce, ciphertext || tag)`.
    pub fn seal(
        &self,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<([u8; SEAL_NONCE_LEN], Vec<u8>), CryptoError> {
        use chacha20poly1305::aead::{Aead as _, Payload};
        let nonce = random_bytes::<SEAL_NONCE_LEN>()?;
        let sealed = self
            .0
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        Ok((nonce, sealed))
    }

    /// Decrypts what [`SealingKey::seal`] produced with the same `aad`;
    /// any change to nonce, ciphertext, tag or `aad` is an error.
    pub fn open(
        &self,
        nonce: &[u8; SEAL_NONCE_LEN],
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        use chacha20poly1305::aead::{Aead as _, Payload};
        self.0
            .decrypt(nonce.into(), Payload { msg: sealed, aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Seal)
    }
}

#[cfg(test)]
mod sealing_tests {
    use super::SealingKey;

    #[test]
    fn seal_opens_only_with_the_same_key_and_aad() {
        let key = SealingKey::new(&[7; 32]);
        let (nonce, sealed) = key.seal(b"hunter2", b"ctx").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            key.open(&nonce, &sealed, b"ctx").unwrap().as_slice(),
            b"hunter2"
        );
        assert!(key.open(&nonce, &sealed, b"other").is_err());
        assert!(
            SealingKey::new(&[8; 32])
                .open(&nonce, &sealed, b"ctx")
                .is_err()
        );
        let mut bad = sealed.clone();
        bad[0] ^= 1;
        assert!(key.open(&nonce, &bad, b"ctx").is_err());
        let (again, _) = key.seal(b"hunter2", b"ctx").unwrap();
        assert_ne!(nonce, again, "a fresh nonce per seal");
    }
}
