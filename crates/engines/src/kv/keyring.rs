//! Sealing static secrets at rest: XChaCha20-Poly1305 under master keys
//! named by key ids, the last of which seals.
//!
//! A sealed blob is bound to where it lives: the additional data is
//! `warrant-kv-v1\0<engine>\0<name>\0<key-id>`, so a blob copied to another
//! secret name or engine, or relabelled with another key id, fails to open.
//! Each seal draws a fresh random 24-byte nonce (XChaCha's nonce is long
//! enough for random nonces to never repeat in practice).
//!
//! Key material lives only in the ciphers (zeroized on drop) and in
//! `Zeroizing` buffers while it is parsed; it is never printed.

use std::path::{Path, PathBuf};

use warrant_crypto::SealingKey;
use zeroize::Zeroizing;

use crate::EngineError;

/// Length of a nonce.
pub const NONCE_LEN: usize = 24;
const AAD_PREFIX: &[u8] = b"warrant-kv-v1\0";

/// A secret as the store keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The master key it is sealed under.
    pub key_id: String,
    /// 24 random bytes.
    pub nonce: Vec<u8>,
    /// The encrypted secret followed by the 16-byte Poly1305 tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("nonce_len", &self.nonce.len())
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// Where the master keys come from.
///
/// Both hold entries `<key-id> <64 hex digits>` (a 32-byte key); the last
/// entry is the current key, which seals. A file has one entry a line
/// (blank lines and `#` comments allowed) and must not be readable by group
/// or others; an environment variable separates entries with `;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringSpec {
    File(PathBuf),
    Env(String),
}

impl KeyringSpec {
    /// Reads `master_key_file` / `master_key_env` (exactly one) from a `kv`
    /// engine's `[[engines]]` table. Other keys are not checked here.
    pub fn from_config(config: &toml::Value) -> Result<Self, String> {
        let file = config.get("master_key_file");
        let env = config.get("master_key_env");
        match (file, env) {
            (Some(_), Some(_)) => {
                Err("set one of `master_key_file` and `master_key_env`, not both".into())
            }
            (None, None) => Err("one of `master_key_file` and `master_key_env` is required".into()),
            (Some(f), None) => f
                .as_str()
                .map(|s| Self::File(PathBuf::from(s)))
                .ok_or_else(|| "`master_key_file` must be a string".into()),
            (None, Some(e)) => e
                .as_str()
                .map(|s| Self::Env(s.to_owned()))
                .ok_or_else(|| "`master_key_env` must be a string".into()),
        }
    }
}

/// The master keys, by key id.
pub struct Keyring {
    /// In the order given; the last one is current.
    keys: Vec<(String, SealingKey)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.key_ids())
            .field("current", &self.current_id())
            .finish()
    }
}

impl Keyring {
    /// Loads the keys `spec` names.
    pub fn load(spec: &KeyringSpec) -> Result<Keyring, String> {
        match spec {
            KeyringSpec::File(path) => {
                let text = read_private_file(path)?;
                Self::parse(&text, '\n').map_err(|e| format!("`{}`: {e}", path.display()))
            }
            KeyringSpec::Env(var) => {
                let text = Zeroizing::new(std::env::var(var).map_err(|e| match e {
                    std::env::VarError::NotPresent => {
                        format!("`master_key_env`: environment variable `{var}` is not set")
                    }
                    std::env::VarError::NotUnicode(_) => {
                        format!("`master_key_env`: environment variable `{var}` is not valid utf-8")
                    }
                })?);
                Self::parse(&text, ';').map_err(|e| format!("environment variable `{var}`: {e}"))
            }
        }
    }

    /// Parses entries separated by `sep`. Errors name the entry, never
    /// its key.
    pub(crate) fn parse(text: &str, sep: char) -> Result<Keyring, String> {
        let mut keys: Vec<(String, SealingKey)> = Vec::new();
        for (i, entry) in text.split(sep).enumerate() {
            let entry = entry.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let mut words = entry.split_whitespace();
            let (Some(id), Some(hex_key), None) = (words.next(), words.next(), words.next()) else {
                return Err(format!("entry {n} must be `<key-id> <64 hex digits>`"));
            };
            check_key_id(id).map_err(|e| format!("entry {n}: {e}"))?;
            if keys.iter().any(|(k, _)| k == id) {
                return Err(format!("entry {n}: key id `{id}` appears twice"));
            }
            let mut bytes = Zeroizing::new([0u8; 32]);
            if hex_key.len() != 64 || hex::decode_to_slice(hex_key, bytes.as_mut_slice()).is_err() {
                return Err(format!(
                    "entry {n}: the key of `{id}` must be 64 hex digits (32 bytes)"
                ));
            }
            let cipher = SealingKey::new(&bytes);
            keys.push((id.to_owned(), cipher));
        }
        if keys.is_empty() {
            return Err("no master key: add a line `<key-id> <64 hex digits>`".into());
        }
        Ok(Keyring { keys })
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        // INVARIANT: `parse` refuses an empty keyring.
        self.keys.last().map(|(id, _)| id.as_str()).unwrap_or("")
    }

    /// Every key id, oldest first.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _)| id.as_str()).collect()
    }

    fn key(&self, id: &str) -> Option<&SealingKey> {
        self.keys.iter().find(|(k, _)| k == id).map(|(_, c)| c)
    }

    /// Seals `plaintext` as secret `name` of engine `engine` under the
    /// current key.
    pub fn seal(&self, engine: &str, name: &str, plaintext: &[u8]) -> Result<Sealed, EngineError> {
        let (key_id, cipher) = self
            .keys
            .last()
            .ok_or_else(|| EngineError::Internal("the keyring is empty".into()))?;
        let aad = aad(engine, name, key_id)?;
        let (nonce, ciphertext) = cipher
            .seal(plaintext, &aad)
            .map_err(|e| EngineError::Internal(format!("cannot seal secret `{name}`: {e}")))?;
        Ok(Sealed {
            key_id: key_id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Opens a blob sealed as secret `name` of engine `engine`.
    pub fn unseal(
        &self,
        engine: &str,
        name: &str,
        sealed: &Sealed,
    ) -> Result<Zeroizing<Vec<u8>>, EngineError> {
        let cipher = self.key(&sealed.key_id).ok_or_else(|| {
            EngineError::Config(format!(
                "secret `{name}` is sealed under key `{}`, which the keyring does not hold",
                sealed.key_id
            ))
        })?;
        let nonce: [u8; NONCE_LEN] = sealed.nonce.as_slice().try_into().map_err(|_| {
            EngineError::Internal(format!(
                "secret `{name}` has a {}-byte nonce, not {NONCE_LEN}",
                sealed.nonce.len()
            ))
        })?;
        let aad = aad(engine, name, &sealed.key_id)?;
        cipher.open(&nonce, &sealed.ciphertext, &aad).map_err(|_| {
            EngineError::Internal(format!(
                "secret `{name}` of engine `{engine}` does not open: it was altered, \
                     moved from another name, or sealed with another key of the same id"
            ))
        })
    }

    /// Opens `sealed` and seals it again under the current key (for
    /// `warrant kv rekey`).
    pub fn reseal(&self, engine: &str, name: &str, sealed: &Sealed) -> Result<Sealed, EngineError> {
        let plaintext = self.unseal(engine, name, sealed)?;
        self.seal(engine, name, &plaintext)
    }
}

/// `warrant-kv-v1\0<engine>\0<name>\0<key-id>`. A NUL inside a part would
/// make two different triples share additional data: refused.
fn aad(engine: &str, name: &str, key_id: &str) -> Result<Vec<u8>, EngineError> {
    if [engine, name, key_id].iter().any(|s| s.contains('\0')) {
        return Err(EngineError::BadRequest(
            "engine, secret and key names cannot contain NUL".into(),
        ));
    }
    let mut out =
        Vec::with_capacity(AAD_PREFIX.len() + engine.len() + name.len() + key_id.len() + 2);
    out.extend_from_slice(AAD_PREFIX);
    out.extend_from_slice(engine.as_bytes());
    out.push(0);
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.extend_from_slice(key_id.as_bytes());
    Ok(out)
}

fn check_key_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "key id `{}` must be 1 to 64 letters, digits, `.`, `_` or `-`",
            id.chars().take(64).collect::<String>()
        ));
    }
    Ok(())
}

/// Reads the key file, refusing one that group or others can read.
fn read_private_file(path: &Path) -> Result<Zeroizing<String>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("`master_key_file`: cannot read `{shown}`: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "`master_key_file`: `{shown}` is accessible by group or others (mode {:o}): \
                 `chmod 600` it",
                mode & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| format!("`master_key_file`: cannot read `{shown}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn env_format_uses_semicolons_and_the_last_key_is_current() {
        let ring = Keyring::parse(&format!(" k1 {K1} ; k2 {K2};"), ';').unwrap();
        assert_eq!(ring.current_id(), "k2");
        assert_eq!(ring.key_ids(), ["k1", "k2"]);
    }

    #[test]
    fn bad_entries_are_refused_without_quoting_the_key() {
        for text in [
            "",
            "# only a comment",
            "k1",
            &format!("k1 {K1} extra"),
            &format!("k1 {}", &K1[..62]),
            &format!("k1 {}zz", &K1[..62]),
            &format!("k/1 {K1}"),
            &format!("k1 {K1}\nk1 {K2}"),
        ] {
            let err = Keyring::parse(text, '\n').unwrap_err();
            assert!(!err.contains(&K1[..16]), "{err}");
        }
    }

    #[test]
    fn debug_shows_ids_only() {
        let ring = Keyring::parse(&format!("k1 {K1}"), '\n').unwrap();
        let shown = format!("{ring:?}");
        assert!(shown.contains("k1") && !shown.contains("1111"), "{shown}");
    }

    #[test]
    fn nul_in_names_is_refused() {
        let ring = Keyring::parse(&format!("k1 {K1}"), '\n').unwrap();
        assert!(matches!(
            ring.seal("kv", "a\0b", b"x"),
            Err(EngineError::BadRequest(_))
        ));
    }

    #[test]
    fn spec_from_config() {
        let c: toml::Value = toml::from_str("master_key_env = \"KEYS\"").unwrap();
        assert_eq!(
            KeyringSpec::from_config(&c).unwrap(),
            KeyringSpec::Env("KEYS".into())
        );
        let c: toml::Value =
            toml::from_str("master_key_env = \"KEYS\"\nmaster_key_file = \"/k\"").unwrap();
        assert!(KeyringSpec::from_config(&c).is_err());
        let c: toml::Value = toml::from_str("x = 1").unwrap();
        assert!(KeyringSpec::from_config(&c).is_err());
    }
}
