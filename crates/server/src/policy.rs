//! The policy sets the server decides with: the live one, an optional
//! shadow candidate, their reload, and what the server computes for
//! policies from its configuration (protected branches, production
//! environments) and for the audit log (keyed hashes of sensitive context).
//!
//! A reload is all or nothing: a set that does not load is refused with
//! every error (file, line, column) and the previous set keeps serving.

use std::sync::{Arc, PoisonError, RwLock};

use warrant_policy::{Engine, LoadError};

use crate::config::PolicyConfig;

/// The server's policy state. Shared by every handler.
#[derive(Debug)]
pub struct Policies {
    live: RwLock<Engine>,
    shadow: RwLock<Option<Engine>>,
    pub config: PolicyConfig,
    /// The HMAC key of sensitive context values in decision events.
    context_key: [u8; 32],
    /// Serialises reloads (SIGHUP and the API) on this server.
    pub reloading: tokio::sync::Mutex<()>,
}

/// A loaded pair: the live set and the shadow candidate, if configured.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub live: Engine,
    pub shadow: Option<Engine>,
}

impl Policies {
    /// Loads the sets `config` names (the default pack without a `dir`).
    pub fn load(config: PolicyConfig, context_key: [u8; 32]) -> Result<Self, Vec<LoadError>> {
        let loaded = load(&config)?;
        Ok(Self {
            live: RwLock::new(loaded.live),
            shadow: RwLock::new(loaded.shadow),
            config,
            context_key,
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The default pack and default settings, with `context_key`.
    pub fn default_pack(context_key: [u8; 32]) -> Self {
        Self {
            live: RwLock::new(Engine::default_pack()),
            shadow: RwLock::new(None),
            config: PolicyConfig::default(),
            context_key,
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// The set decisions are made with.
    pub fn live(&self) -> Engine {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The candidate evaluated beside it, if any.
    pub fn shadow(&self) -> Option<Engine> {
        self.shadow
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the configured directories again. On success both sets are
    /// replaced (atomically each); on failure nothing changes.
    pub fn reload(&self) -> Result<Loaded, Vec<LoadError>> {
        let loaded = load(&self.config)?;
        *self.live.write().unwrap_or_else(PoisonError::into_inner) = loaded.live.clone();
        *self.shadow.write().unwrap_or_else(PoisonError::into_inner) = loaded.shadow.clone();
        Ok(loaded)
    }

    /// `hmac-sha256:<hex>` of a sensitive value.
    pub fn keyed_hash(&self, value: &str) -> String {
        format!(
            "hmac-sha256:{}",
            hex::encode(warrant_crypto::keyed_hash(
                &self.context_key,
                value.as_bytes()
            ))
        )
    }

    /// Whether `branch` is protected (matches a configured glob).
    pub fn branch_protected(&self, branch: &str) -> bool {
        self.config
            .protected_branches
            .iter()
            .any(|g| warrant_core::glob::branch_glob_matches(g, branch))
    }

    /// Whether `environment` is a production one.
    pub fn production(&self, environment: &str) -> bool {
        self.config
            .production_environments
            .iter()
            .any(|e| e == environment)
    }
}

fn load(config: &PolicyConfig) -> Result<Loaded, Vec<LoadError>> {
    let live = match &config.dir {
        Some(dir) => Engine::load_dir(dir)?,
        None => Engine::default_pack(),
    };
    let shadow = config
        .shadow_dir
        .as_ref()
        .map(|dir| Engine::load_dir(dir))
        .transpose()?;
    Ok(Loaded { live, shadow })
}

/// Shared handle.
pub type SharedPolicies = Arc<Policies>;
