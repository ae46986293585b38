//! First-start and every-start set-up: the data directory, the signing
//! key, the first admin and the agents the config file declares.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::ExposeSecret;
use thiserror::Error;
use warrant_core::{Agent, Clock, Name, User};
use warrant_crypto::{SigningKey, generate_api_token};
use warrant_store::{PublicKeyRecord, Store, StoreError};

use crate::config::ConfigAgent;
use crate::events::{self, ACTOR_BOOTSTRAP, ACTOR_CONFIG};

pub const SIGNING_KEY_FILE: &str = "signing.key";
/// Keys rotated in by `warrant keys rotate`, one `<kid>.pem` each (0600).
pub const KEYS_DIR: &str = "keys";
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The key of the keyed hashes (HMAC-SHA-256) under which the audit log
/// keeps sensitive decision context (commands, URLs, paths, arguments).
pub const CONTEXT_KEY_FILE: &str = "context.key";
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_GROUP: &str = "admins";

#[derive(Debug, Error)]
pub enum BootstrapError {
    #[error(
        "cannot create the data directory `{}`: {source}: check its parent's permissions or choose another with --data-dir",
        path.display()
    )]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the data directory `{}` is accessible by group or others (mode {mode:o}): it holds the signing key and the admin token; run `chmod 700 {}` and start again",
        path.display(), path.display()
    )]
    DataDirNotPrivate { path: PathBuf, mode: u32 },
    #[error("cannot read the signing key `{}`: {why}: restore it from a backup, or move it away to generate a new key", path.display())]
    ReadKey { path: PathBuf, why: String },
    #[error("cannot write `{}`: {source}: check that the data directory is writable", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a key or token: {0}")]
    Crypto(String),
    #[error(
        "config agent `{agent}` names owner `{owner}`, who is not a user: create the user first or change the owner"
    )]
    UnknownOwner { agent: Name, owner: Name },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(
        "every signing key in the data directory was retired by a rotation, and the key that replaced them is missing from `{}`: restore it from a backup",
        path.display()
    )]
    NoActiveKey { path: PathBuf },
    #[error("internal error: {0}")]
    Internal(String),
}

/// What bootstrapping produced.
#[derive(Debug)]
pub struct Bootstrapped {
    pub key: Arc<SigningKey>,
    /// The admin token file, when it was written now (first start).
    pub admin_token_file: Option<PathBuf>,
}

/// Creates the data directory (mode 0700) if it does not exist. One that
/// exists must be private already: it holds the signing key and the admin
/// token, so a directory group or others can enter is refused rather than
/// silently changed (someone chose that mode, or something is wrong).
pub fn prepare_data_dir(path: &Path) -> Result<(), BootstrapError> {
    let create_err = |source| BootstrapError::DataDir {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(create_err)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(path) {
        // Made now with 0700 (less if the umask says so): nothing to check.
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(create_err(e)),
    }
    let meta = fs::metadata(path).map_err(create_err)?;
    if !meta.is_dir() {
        return Err(create_err(std::io::Error::new(
            ErrorKind::AlreadyExists,
            "it exists and is not a directory",
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(BootstrapError::DataDirNotPrivate {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Runs every start's set-up against an opened store.
pub async fn run(
    store: &dyn Store,
    clock: &dyn Clock,
    data_dir: &Path,
    agents: &[ConfigAgent],
) -> Result<Bootstrapped, BootstrapError> {
    let key = select_signing_key(store, clock, data_dir).await?;
    let admin_token_file = if store.count_users().await? == 0 {
        create_admin(store, clock, data_dir).await?
    } else {
        None
    };
    upsert_config_agents(store, clock, agents).await?;
    Ok(Bootstrapped {
        key: Arc::new(key),
        admin_token_file,
    })
}

/// Loads `<data_dir>/signing.key`, or generates it (mode 0600) when absent.
pub fn load_or_generate_key(path: &Path) -> Result<SigningKey, BootstrapError> {
    match fs::read_to_string(path) {
        Ok(pem) => {
            let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| BootstrapError::ReadKey {
                path: path.to_owned(),
                why: e.to_string(),
            })?;
            tighten(path)?;
            Ok(key)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let key = SigningKey::generate().map_err(|e| BootstrapError::Crypto(e.to_string()))?;
            let pem = key
                .to_pkcs8_pem()
                .map_err(|e| BootstrapError::Crypto(e.to_string()))?;
            write_private(path, pem.expose_secret().as_bytes(), true)?;
            tracing::info!(kid = key.kid(), path = %path.display(), "generated the signing key");
            Ok(key)
        }
        Err(e) => Err(BootstrapError::ReadKey {
            path: path.to_owned(),
            why: e.to_string(),
        }),
    }
}

/// Reads `<data-dir>/context.key` (64 hex digits), or generates it (0600)
/// on first start. Several servers sharing one store need the same file, so
/// their hashes of one value agree.
pub fn load_or_generate_context_key(data_dir: &Path) -> Result<[u8; 32], BootstrapError> {
    let path = data_dir.join(CONTEXT_KEY_FILE);
    let bad = |why: &str| BootstrapError::ReadKey {
        path: path.clone(),
        why: why.to_owned(),
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim()).map_err(|_| bad("not 64 hex digits"))?;
            let key =
                <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| bad("not 64 hex digits"))?;
            tighten(&path)?;
            Ok(key)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let key = warrant_crypto::random_bytes::<32>()
                .map_err(|e| BootstrapError::Crypto(e.to_string()))?;
            write_private(&path, hex::encode(key).as_bytes(), true)?;
            Ok(key)
        }
        Err(e) => Err(bad(&e.to_string())),
    }
}

/// Chooses the key this server signs with. `<data_dir>/signing.key` is the
/// first key (generated and recorded on first start, as before rotation
/// existed); keys rotated in since live under `<data_dir>/keys/<kid>.pem`.
/// The newest of these that the store has not retired signs.
async fn select_signing_key(
    store: &dyn Store,
    clock: &dyn Clock,
    data_dir: &Path,
) -> Result<SigningKey, BootstrapError> {
    let legacy = load_or_generate_key(&data_dir.join(SIGNING_KEY_FILE))?;
    record_public_key(store, clock, &legacy).await?;
    let keys_dir = data_dir.join(KEYS_DIR);
    let mut candidates = load_key_dir(&keys_dir)?;
    candidates.push(legacy);
    let records = store.list_public_keys().await?;
    let mut best: Option<(warrant_core::Timestamp, SigningKey)> = None;
    for key in candidates {
        let Some(record) = records.iter().find(|r| r.kid == key.kid()) else {
            // Written by a rotation whose store write failed: it never
            // signed anything.
            tracing::warn!(
                kid = key.kid(),
                "ignoring a key file the store does not know"
            );
            continue;
        };
        if record.retired_at.is_some() || record.public_key.as_slice() != key.public_key() {
            continue;
        }
        if best.as_ref().is_none_or(|(at, _)| record.created_at > *at) {
            best = Some((record.created_at, key));
        }
    }
    best.map(|(_, key)| key)
        .ok_or(BootstrapError::NoActiveKey { path: keys_dir })
}

/// Every `*.pem` key under `dir` (none when it does not exist).
pub fn load_key_dir(dir: &Path) -> Result<Vec<SigningKey>, BootstrapError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(BootstrapError::ReadKey {
                path: dir.to_owned(),
                why: e.to_string(),
            });
        }
    };
    let mut keys = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| BootstrapError::ReadKey {
                path: dir.to_owned(),
                why: e.to_string(),
            })?
            .path();
        if path.extension().is_none_or(|ext| ext != "pem") {
            continue;
        }
        let pem = fs::read_to_string(&path).map_err(|e| BootstrapError::ReadKey {
            path: path.clone(),
            why: e.to_string(),
        })?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| BootstrapError::ReadKey {
            path: path.clone(),
            why: e.to_string(),
        })?;
        tighten(&path)?;
        keys.push(key);
    }
    Ok(keys)
}

/// A new key: written to `<keys_dir>/<kid>.pem` (0600) and recorded as the
/// signing key with `retire` retired now, its `keys.added` and
/// `keys.rotated` events in the same transaction. The caller switches its
/// signer to the returned key. If the store refuses, the file is removed
/// again: an unrecorded key never signed anything.
pub async fn rotate_key(
    store: &dyn Store,
    now: warrant_core::Timestamp,
    keys_dir: &Path,
    retire: &str,
    actor: &str,
) -> Result<SigningKey, BootstrapError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(keys_dir)
        .map_err(|source| BootstrapError::Write {
            path: keys_dir.to_owned(),
            source,
        })?;
    let key = SigningKey::generate().map_err(|e| BootstrapError::Crypto(e.to_string()))?;
    let pem = key
        .to_pkcs8_pem()
        .map_err(|e| BootstrapError::Crypto(e.to_string()))?;
    let path = keys_dir.join(format!("{}.pem", key.kid()));
    write_private(&path, pem.expose_secret().as_bytes(), true)?;
    if let Err(e) = fs::File::open(keys_dir).and_then(|d| d.sync_all()) {
        tracing::warn!(error = %e, "cannot sync the keys directory");
    }
    let record = PublicKeyRecord {
        kid: key.kid().to_owned(),
        alg: "EdDSA".into(),
        public_key: key.public_key().to_vec(),
        created_at: now,
        retired_at: None,
    };
    let mut added = events::keys_added(key.kid(), now);
    actor.clone_into(&mut added.actor);
    let rotated = events::keys_rotated(key.kid(), retire, actor, now);
    if let Err(e) = store
        .rotate_public_key(&record, &[retire.to_owned()], vec![added, rotated])
        .await
    {
        remove_temp(&path);
        return Err(e.into());
    }
    tracing::info!(kid = key.kid(), retired = retire, "rotated the signing key");
    Ok(key)
}

/// A private file readable by group or others is made owner-only again.
fn tighten(path: &Path) -> Result<(), BootstrapError> {
    let write_err = |source| BootstrapError::Write {
        path: path.to_owned(),
        source,
    };
    let mode = fs::metadata(path).map_err(write_err)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "private file was readable by others; setting mode 0600");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(write_err)?;
    }
    Ok(())
}

/// Writes a private file with mode 0600. `new_only` refuses to replace an
/// existing file (so two starts racing cannot swap a key under each other).
fn write_private(path: &Path, contents: &[u8], new_only: bool) -> Result<(), BootstrapError> {
    let err = |source| BootstrapError::Write {
        path: path.to_owned(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if new_only {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    let mut file = options.open(path).map_err(err)?;
    // The mode only applies to a new file; an old one is tightened here.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)
}

/// Records the key's public half with its `keys.added` event, in one
/// transaction; a kid the store knows writes nothing.
async fn record_public_key(
    store: &dyn Store,
    clock: &dyn Clock,
    key: &SigningKey,
) -> Result<(), BootstrapError> {
    let now = clock.now();
    let added = store
        .put_public_key(
            &PublicKeyRecord {
                kid: key.kid().to_owned(),
                alg: "EdDSA".into(),
                public_key: key.public_key().to_vec(),
                created_at: now,
                retired_at: None,
            },
            events::keys_added(key.kid(), now),
        )
        .await?;
    if added.is_some() {
        tracing::info!(kid = key.kid(), "recorded the signing key's public key");
    }
    Ok(())
}

/// Creates the `admin` user and writes its token to `admin.token`.
/// `None` when another server (sharing the database) created it first.
///
/// The token goes to a private temp file first, the user is created, and
/// only then is the file renamed into place: `admin.token` only ever holds
/// the token of the admin that exists. If the user cannot be created, only
/// this start's temp file is removed; a concurrent first start that won
/// keeps its own file.
async fn create_admin(
    store: &dyn Store,
    clock: &dyn Clock,
    data_dir: &Path,
) -> Result<Option<PathBuf>, BootstrapError> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let token = generate_api_token().map_err(|e| BootstrapError::Crypto(e.to_string()))?;
    let suffix =
        warrant_crypto::random_bytes::<8>().map_err(|e| BootstrapError::Crypto(e.to_string()))?;
    let temp = data_dir.join(format!(
        ".{ADMIN_TOKEN_FILE}.{}.tmp",
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    let mut contents = token.token.expose_secret().as_bytes().to_vec();
    contents.push(b'\n');
    write_private(&temp, &contents, true)?;
    let user = User {
        name: fixed_name(ADMIN_USER)?,
        groups: vec![fixed_name(ADMIN_GROUP)?],
        admin: true,
        created_at: clock.now(),
    };
    let event = events::user_created(&user, ACTOR_BOOTSTRAP);
    match store.create_user(&user, &token.hash, event).await {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => {
            remove_temp(&temp);
            tracing::info!("another server created the admin user first");
            return Ok(None);
        }
        Err(e) => {
            // The token in the temp file belongs to no one.
            remove_temp(&temp);
            return Err(e.into());
        }
    }
    fs::rename(&temp, &path).map_err(|source| BootstrapError::Write {
        path: path.clone(),
        source,
    })?;
    // The rename is durable once the directory is.
    if let Err(e) = fs::File::open(data_dir).and_then(|d| d.sync_all()) {
        tracing::warn!(error = %e, "cannot sync the data directory");
    }
    tracing::info!(path = %path.display(), "created the admin user and wrote its token");
    Ok(Some(path))
}

fn remove_temp(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a temporary token file");
    }
}

/// A name spelled in this file: always valid, but parsed like any other.
fn fixed_name(s: &str) -> Result<Name, BootstrapError> {
    Name::parse("name", s).map_err(|e| BootstrapError::Internal(e.to_string()))
}

/// Creates config-declared agents that do not exist and updates those that
/// differ from their declaration. Several servers starting at once on one
/// database may race here: a `Conflict` on create means another one created
/// the agent first, so it is read again and compared.
async fn upsert_config_agents(
    store: &dyn Store,
    clock: &dyn Clock,
    agents: &[ConfigAgent],
) -> Result<(), BootstrapError> {
    for declared in agents {
        if let Some(owner) = &declared.owner
            && store.user_by_name(owner).await?.is_none()
        {
            return Err(BootstrapError::UnknownOwner {
                agent: declared.name.clone(),
                owner: owner.clone(),
            });
        }
        let existing = match store.agent_by_name(&declared.name).await? {
            Some(existing) => existing,
            None => {
                let agent = declared_agent(declared, clock.now());
                match store
                    .create_agent(&agent, events::agent_created(&agent, ACTOR_CONFIG))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(agent = %agent.name, "created agent from config");
                        continue;
                    }
                    Err(StoreError::Conflict(_)) => {
                        store.agent_by_name(&declared.name).await?.ok_or_else(|| {
                            BootstrapError::Internal(format!(
                                "agent `{}` was reported to exist but cannot be found",
                                declared.name
                            ))
                        })?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let agent = declared_agent(declared, existing.created_at);
        if agent != existing {
            store
                .update_agent(
                    &agent,
                    events::agent_updated(&agent, ACTOR_CONFIG, clock.now()),
                )
                .await?;
            tracing::info!(agent = %agent.name, "updated agent from config");
        }
    }
    Ok(())
}

fn declared_agent(declared: &ConfigAgent, created_at: warrant_core::Timestamp) -> Agent {
    Agent {
        name: declared.name.clone(),
        tier: declared.tier,
        owner: declared.owner.clone(),
        description: declared.description.clone(),
        source: "config".into(),
        created_at,
    }
}
