//! The `kv` engine: static secrets that cannot be made dynamic (an npm
//! token, a third-party API key), released one lease at a time.
//!
//! The engine stores nothing itself: secrets live in Warrant's store as
//! [`Sealed`] blobs (XChaCha20-Poly1305 under a master key from a file or
//! the environment, see [`Keyring`]), read through a [`KvBackend`] the
//! server implements over the store. `issue` opens the blob and hands the
//! value to the run; `revoke` has nothing to remove: a static secret that
//! was read cannot be un-read. The lease records who got it, and rotating
//! the secret at its source is the remedy.

mod keyring;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::SignedDuration;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

pub use keyring::{Keyring, KeyringSpec, NONCE_LEN, Sealed};

use crate::{Engine, EngineContext, EngineError, IssueRequest, Issued, RoleInfo};

/// Where the sealed secrets are: Warrant's store, implemented by the
/// server.
#[async_trait]
pub trait KvBackend: Send + Sync + std::fmt::Debug {
    /// The secret `name` of engine `engine`, or `None` when none is stored.
    async fn get(&self, engine: &str, name: &str) -> Result<Option<Sealed>, EngineError>;
}

/// The common constructor cannot build a `kv` engine: it needs the store.
pub fn build(
    name: &str,
    _config: &toml::Value,
    _ctx: &EngineContext,
) -> Result<Arc<dyn Engine>, String> {
    Err(format!(
        "engine `{name}`: a `kv` engine needs the store: build it with `kv::build_with_backend`"
    ))
}

/// Builds a `kv` engine from its `[[engines]]` table, loading its keyring.
pub fn build_with_backend(
    name: &str,
    config: &toml::Value,
    _ctx: &EngineContext,
    backend: Arc<dyn KvBackend>,
) -> Result<Arc<dyn Engine>, String> {
    Ok(Arc::new(KvEngine::new(name, config, backend)?))
}

/// Checks a secret name: 1 to 63 lowercase letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit (the rule for every name in Warrant).
pub fn check_secret_name(name: &str) -> Result<(), String> {
    warrant_core::Name::parse("secret name", name)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[expect(dead_code, reason = "read by `KeyringSpec::from_config`")]
    master_key_file: Option<PathBuf>,
    #[expect(dead_code, reason = "read by `KeyringSpec::from_config`")]
    master_key_env: Option<String>,
    #[serde(default)]
    roles: Vec<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    name: String,
    #[serde(default)]
    description: String,
    max_ttl: String,
    secrets: Vec<String>,
}

#[derive(Debug)]
struct Role {
    name: String,
    description: String,
    max_ttl: SignedDuration,
    secrets: Vec<String>,
}

/// The `kv` engine.
#[derive(Debug)]
pub struct KvEngine {
    name: String,
    keyring: Keyring,
    roles: BTreeMap<String, Role>,
    backend: Arc<dyn KvBackend>,
}

impl KvEngine {
    /// Loads the keyring and the roles. Errors start with `engine `<name>`: `.
    pub fn new(
        name: &str,
        config: &toml::Value,
        backend: Arc<dyn KvBackend>,
    ) -> Result<Self, String> {
        Self::parse(name, config, backend).map_err(|e| format!("engine `{name}`: {e}"))
    }

    fn parse(
        name: &str,
        config: &toml::Value,
        backend: Arc<dyn KvBackend>,
    ) -> Result<Self, String> {
        let mut table = config
            .as_table()
            .cloned()
            .ok_or_else(|| "the engine's config must be a table".to_owned())?;
        table.remove("name");
        table.remove("type");
        let table = toml::Value::Table(table);
        let raw: RawConfig = table
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| clean(&e.to_string()))?;
        let keyring = Keyring::load(&KeyringSpec::from_config(&table)?)?;
        if raw.roles.is_empty() {
            return Err("no `[[engines.roles]]`: add at least one role".into());
        }
        let mut roles = BTreeMap::new();
        for (i, value) in raw.roles.into_iter().enumerate() {
            let role = parse_role(i, value)?;
            if roles.contains_key(&role.name) {
                return Err(format!("role `{}` is defined twice", role.name));
            }
            roles.insert(role.name.clone(), role);
        }
        Ok(Self {
            name: name.to_owned(),
            keyring,
            roles,
            backend,
        })
    }

    /// The keyring the engine opens secrets with.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    fn role(&self, role: &str) -> Result<&Role, EngineError> {
        self.roles
            .get(role)
            .ok_or_else(|| EngineError::UnknownRole(role.to_owned()))
    }

    /// The secret a request picks: `params.secret`, or the role's only
    /// secret when there is one.
    fn pick<'r>(&self, role: &'r Role, params: &Value) -> Result<&'r str, EngineError> {
        let asked = match params {
            Value::Null => None,
            Value::Object(map) => {
                if let Some(other) = map.keys().find(|k| k.as_str() != "secret") {
                    return Err(EngineError::BadRequest(format!(
                        "unknown parameter `{other}` (the kv engine takes `secret`)"
                    )));
                }
                match map.get("secret") {
                    None => None,
                    Some(Value::String(s)) => Some(s.as_str()),
                    Some(_) => {
                        return Err(EngineError::BadRequest(
                            "parameter `secret` must be a string".into(),
                        ));
                    }
                }
            }
            _ => {
                return Err(EngineError::BadRequest(
                    "the parameters must be an object such as `{\"secret\": \"npm-token\"}`".into(),
                ));
            }
        };
        match asked {
            Some(s) => role
                .secrets
                .iter()
                .find(|r| r.as_str() == s)
                .map(String::as_str)
                .ok_or_else(|| {
                    EngineError::BadRequest(format!(
                        "role `{}` does not release secret `{}`",
                        role.name,
                        s.chars().take(64).collect::<String>()
                    ))
                }),
            None => match role.secrets.as_slice() {
                [only] => Ok(only.as_str()),
                _ => Err(EngineError::BadRequest(format!(
                    "role `{}` releases several secrets: name one with `{{\"secret\": ...}}` ({})",
                    role.name,
                    role.secrets
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            },
        }
    }
}

fn clean(raw: &str) -> String {
    raw.trim().trim_end_matches('.').to_owned()
}

fn parse_role(index: usize, value: toml::Value) -> Result<Role, String> {
    let label = value
        .get("name")
        .and_then(|n| n.as_str())
        .map(|n| format!("role `{n}`"))
        .unwrap_or_else(|| format!("role #{}", index + 1));
    let raw: RawRole = value
        .try_into()
        .map_err(|e: toml::de::Error| format!("{label}: {}", clean(&e.to_string())))?;
    let name = warrant_core::Name::parse("role name", &raw.name)
        .map_err(|e| format!("{label}: {e}"))?
        .as_str()
        .to_owned();
    let max_ttl = crate::parse_ttl("max_ttl", &raw.max_ttl).map_err(|e| format!("{label}: {e}"))?;
    if raw.secrets.is_empty() {
        return Err(format!("{label}: `secrets` must name at least one secret"));
    }
    for (i, s) in raw.secrets.iter().enumerate() {
        check_secret_name(s).map_err(|e| format!("{label}: `secrets`: {e}"))?;
        if raw.secrets[..i].contains(s) {
            return Err(format!("{label}: `secrets` lists `{s}` twice"));
        }
    }
    Ok(Role {
        name,
        description: raw.description,
        max_ttl,
        secrets: raw.secrets,
    })
}

#[async_trait]
impl Engine for KvEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "kv"
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
        let role = self.role(req.role)?;
        let secret = self.pick(role, req.params)?;
        Ok(json!({ "secret": secret }))
    }

    async fn issue(&self, req: &IssueRequest<'_>, handle: &Value) -> Result<Issued, EngineError> {
        if *handle != self.prepare(req)? {
            return Err(EngineError::Internal(
                "the handle does not match the lease".into(),
            ));
        }
        let secret = self.pick(self.role(req.role)?, req.params)?;
        let sealed = self.backend.get(&self.name, secret).await?.ok_or_else(|| {
            EngineError::Config(format!(
                "secret `{secret}` of engine `{}` has no value stored",
                self.name
            ))
        })?;
        let plaintext = self.keyring.unseal(&self.name, secret, &sealed)?;
        let value = std::str::from_utf8(&plaintext)
            .map_err(|_| EngineError::Internal(format!("secret `{secret}` is not utf-8 text")))?;
        let mut secrets = BTreeMap::new();
        secrets.insert("value".to_owned(), SecretString::from(value.to_owned()));
        Ok(Issued {
            secrets,
            public: json!({ "secret": secret, "key_id": sealed.key_id }),
            handle: handle.clone(),
            expires_at: req.expires_at,
        })
    }

    /// Nothing to remove: the value cannot be recalled from the run that
    /// read it. Ending the lease still records that it is over.
    async fn revoke(&self, handle: &Value) -> Result<(), EngineError> {
        match handle.get("secret").and_then(Value::as_str) {
            Some(_) => Ok(()),
            None => Err(EngineError::Internal(
                "the handle does not name a secret".into(),
            )),
        }
    }
}
