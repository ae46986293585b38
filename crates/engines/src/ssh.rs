//! The `ssh` engine: OpenSSH user certificates signed by an Ed25519 CA that
//! belongs to this engine.
//!
//! The run sends its public key; it gets a certificate for the role's
//! principals (or a subset it asks for), valid from 30 s ago (clock skew)
//! until the lease ends, with a serial derived from the lease id.
//! Revocation adds the serial to the engine's key revocation list (KRL),
//! which the server publishes at `/v1/engines/{name}/krl` for `sshd`'s
//! `RevokedKeys`; hosts trust the CA through `TrustedUserCAKeys`.
//!
//! The CA key never leaves this module: it is read from (or generated into)
//! a 0600 file under the data directory and only ever signs certificates.

mod krl;
mod revoked;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use ssh_key::certificate::{Builder, CertType};
use ssh_key::public::KeyData;
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, LineEnding, PrivateKey, PublicKey};

use crate::{Engine, EngineContext, EngineError, IssueRequest, Issued, RoleInfo, parse_ttl};

use self::revoked::RevokedSerials;

/// Certificates start this long before they are issued, so that a host
/// whose clock is a little behind accepts them at once.
const CLOCK_SKEW_SECS: i64 = 30;
/// A longer `public_key` parameter is refused before it is parsed (an RSA
/// 16384-bit key is about 2.8 KiB).
const MAX_PUBLIC_KEY_LEN: usize = 8 * 1024;
/// The smallest RSA user key accepted when a role allows RSA at all.
const MIN_RSA_BITS: usize = 3072;
const DEFAULT_MAX_TTL: &str = "1h";

/// The extensions OpenSSH knows. Others must be vendor extensions
/// (`name@domain`), which `sshd` ignores.
const KNOWN_EXTENSIONS: [&str; 6] = [
    "no-touch-required",
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
];

/// Builds the engine as the registry wants it.
pub fn build(
    name: &str,
    config: &toml::Value,
    ctx: &EngineContext,
) -> Result<Arc<dyn Engine>, String> {
    Ok(build_ssh(name, config, ctx)?)
}

/// Builds the engine and returns its concrete type, for the server to serve
/// [`SshEngine::krl`] and [`SshEngine::ca_public_key`] next to the
/// `Arc<dyn Engine>` (clone the `Arc`: both are the same engine).
pub fn build_ssh(
    name: &str,
    config: &toml::Value,
    ctx: &EngineContext,
) -> Result<Arc<SshEngine>, String> {
    let engine = SshEngine::new(name, config, ctx).map_err(|e| format!("engine `{name}`: {e}"))?;
    Ok(Arc::new(engine))
}

/// An SSH certificate authority for one `[[engines]]` entry.
pub struct SshEngine {
    name: String,
    ca: PrivateKey,
    /// `ssh-ed25519 AAAA... warrant-ssh-ca:<name>`
    ca_public_line: String,
    /// The CA key in SSH wire form, as KRL sections name it.
    ca_key_blob: Vec<u8>,
    /// `SHA256:...`
    ca_fingerprint: String,
    roles: BTreeMap<String, Role>,
    revoked: Arc<RevokedSerials>,
}

impl std::fmt::Debug for SshEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshEngine")
            .field("name", &self.name)
            .field("ca_fingerprint", &self.ca_fingerprint)
            .field("roles", &self.roles.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct Role {
    name: String,
    description: String,
    max_ttl: SignedDuration,
    principals: Vec<String>,
    /// `force-command`, `source-address`, as they go into the certificate.
    critical_options: BTreeMap<String, String>,
    extensions: Vec<String>,
    key_types: Vec<KeyType>,
}

/// The user key types a role may accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Ed25519,
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    SkEd25519,
    SkEcdsaP256,
    /// At least [`MIN_RSA_BITS`].
    Rsa,
}

impl KeyType {
    const ALL: [Self; 7] = [
        Self::Ed25519,
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::EcdsaP521,
        Self::SkEd25519,
        Self::SkEcdsaP256,
        Self::Rsa,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::EcdsaP521 => "ecdsa-p521",
            Self::SkEd25519 => "sk-ed25519",
            Self::SkEcdsaP256 => "sk-ecdsa-p256",
            Self::Rsa => "rsa",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn of(algorithm: &Algorithm) -> Option<Self> {
        match algorithm {
            Algorithm::Ed25519 => Some(Self::Ed25519),
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            } => Some(Self::EcdsaP256),
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP384,
            } => Some(Self::EcdsaP384),
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP521,
            } => Some(Self::EcdsaP521),
            Algorithm::SkEd25519 => Some(Self::SkEd25519),
            Algorithm::SkEcdsaSha2NistP256 => Some(Self::SkEcdsaP256),
            Algorithm::Rsa { .. } => Some(Self::Rsa),
            _ => None,
        }
    }
}

// --- configuration ---------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    // Read by the registry.
    #[serde(rename = "name")]
    _name: Option<toml::Value>,
    #[serde(rename = "type")]
    _kind: Option<toml::Value>,
    ca_key_file: Option<PathBuf>,
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
    principals: Vec<String>,
    #[serde(default)]
    critical_options: RawCriticalOptions,
    extensions: Option<Vec<String>>,
    key_types: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCriticalOptions {
    #[serde(rename = "force-command")]
    force_command: Option<String>,
    #[serde(rename = "source-address")]
    source_address: Option<String>,
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
    let role = raw
        .clone()
        .try_into::<RawRole>()
        .map_err(toml_error)
        .and_then(check_role)
        .map_err(|e| format!("{shown}: {e}"))?;
    Ok(role)
}

fn check_role(raw: RawRole) -> Result<Role, String> {
    warrant_core::Name::parse("role name", &raw.name).map_err(|e| e.to_string())?;
    let max_ttl = parse_ttl("max_ttl", raw.max_ttl.as_deref().unwrap_or(DEFAULT_MAX_TTL))?;

    if raw.principals.is_empty() {
        // An empty principal list makes a certificate valid for every user.
        return Err("`principals` must name at least one principal".into());
    }
    let mut seen = BTreeSet::new();
    for p in &raw.principals {
        check_principal(p)?;
        if !seen.insert(p) {
            return Err(format!("principal `{p}` is listed twice"));
        }
    }

    let mut critical_options = BTreeMap::new();
    if let Some(cmd) = raw.critical_options.force_command {
        if cmd.trim().is_empty() || cmd.contains('\0') {
            return Err("`critical_options.force-command` must be a non-empty command".into());
        }
        critical_options.insert("force-command".to_owned(), cmd);
    }
    if let Some(addrs) = raw.critical_options.source_address {
        critical_options.insert("source-address".to_owned(), check_source_address(&addrs)?);
    }

    let extensions = raw
        .extensions
        .unwrap_or_else(|| vec!["permit-pty".to_owned()]);
    let mut seen = BTreeSet::new();
    for x in &extensions {
        if !KNOWN_EXTENSIONS.contains(&x.as_str()) && !is_vendor_name(x) {
            return Err(format!(
                "unknown extension `{x}`: expected one of {} or a `name@domain` extension",
                KNOWN_EXTENSIONS.map(|k| format!("`{k}`")).join(", ")
            ));
        }
        if !seen.insert(x) {
            return Err(format!("extension `{x}` is listed twice"));
        }
    }

    let key_types = match raw.key_types {
        None => vec![KeyType::Ed25519, KeyType::EcdsaP256],
        Some(names) if names.is_empty() => return Err("`key_types` must not be empty".into()),
        Some(names) => names
            .iter()
            .map(|n| {
                KeyType::parse(n).ok_or_else(|| {
                    format!(
                        "unknown key type `{n}`: expected one of {}",
                        KeyType::ALL.map(|k| format!("`{}`", k.as_str())).join(", ")
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };

    Ok(Role {
        name: raw.name,
        description: raw.description,
        max_ttl,
        principals: raw.principals,
        critical_options,
        extensions,
        key_types,
    })
}

/// Principals are user names (or whatever `AuthorizedPrincipalsFile`
/// lists): printable ASCII without spaces or commas, which would split
/// them in `sshd`'s matching.
fn check_principal(p: &str) -> Result<(), String> {
    let ok =
        !p.is_empty() && p.len() <= 255 && p.bytes().all(|b| b.is_ascii_graphic() && b != b',');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "principal `{}` must be 1 to 255 printable characters without spaces or commas",
            p.escape_default()
        ))
    }
}

fn is_vendor_name(x: &str) -> bool {
    x.split_once('@').is_some_and(|(name, domain)| {
        !name.is_empty()
            && !domain.is_empty()
            && x.bytes().all(|b| b.is_ascii_graphic() && b != b',')
    })
}

/// `source-address`: a comma-separated list of addresses or CIDR blocks, as
/// `sshd` reads it. Returned without whitespace.
fn check_source_address(raw: &str) -> Result<String, String> {
    let bad = |entry: &str| {
        format!(
            "`critical_options.source-address`: `{}` is not an address or CIDR block such as `10.0.0.0/8`",
            entry.escape_default()
        )
    };
    let mut out = Vec::new();
    for entry in raw.split(',').map(str::trim) {
        let (addr, prefix) = match entry.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (entry, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| bad(entry))?;
        if let Some(p) = prefix {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let p: u8 = p.parse().map_err(|_| bad(entry))?;
            if p > max {
                return Err(bad(entry));
            }
        }
        out.push(entry);
    }
    Ok(out.join(","))
}

// --- the CA key on disk ----------------------------------------------------

/// Writes `bytes` to `path` through a temporary file in the same directory
/// (0600, fsync'ed). `replace` renames over an existing file; otherwise an
/// existing file is left alone and `AlreadyExists` returned.
fn write_atomically(path: &Path, bytes: &[u8], replace: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{file_name}.{}.tmp",
        uuid::Uuid::now_v7().simple()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        if replace {
            std::fs::rename(&tmp, path)?;
        } else {
            // A hard link never replaces its target: two servers starting
            // at once cannot overwrite each other's CA.
            std::fs::hard_link(&tmp, path)?;
        }
        std::fs::File::open(dir)?.sync_all()
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))
}

/// Reads the CA key, or generates one when `generate` and the file is
/// missing.
fn load_ca(path: &Path, generate: bool, comment: &str) -> Result<PrivateKey, String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && generate => {
            let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
                .map_err(|e| format!("cannot generate the CA key: {e}"))?;
            key.set_comment(comment);
            let pem = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| format!("cannot encode the CA key: {e}"))?;
            match write_atomically(path, pem.as_bytes(), false) {
                Ok(()) => {
                    tracing::info!(path = %shown, fingerprint = %key.fingerprint(HashAlg::Sha256), "generated an SSH CA key");
                    return Ok(key);
                }
                // Someone else generated it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot write the CA key to `{shown}`: {e}")),
            }
        }
        Err(e) => return Err(format!("cannot read the CA key `{shown}`: {e}")),
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(format!(
                    "the CA key `{shown}` is accessible by other users: run `chmod 600 {shown}`"
                ));
            }
        }
    }
    let key = PrivateKey::read_openssh_file(path)
        .map_err(|e| format!("the CA key `{shown}` is not an OpenSSH private key: {e}"))?;
    if key.is_encrypted() {
        return Err(format!(
            "the CA key `{shown}` is encrypted: Warrant needs it unencrypted (mode 0600)"
        ));
    }
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(format!(
            "the CA key `{shown}` is a `{}` key: the engine signs with Ed25519 only",
            key.algorithm()
        ));
    }
    Ok(key)
}

// --- the engine ------------------------------------------------------------

/// The request's parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    public_key: Option<String>,
    /// An array, or a string of space-separated names (what
    /// `warrant exec --lease ENGINE/ROLE=VAR,principals=a b` sends).
    principals: Option<Value>,
}

fn principals_param(v: Value) -> Result<Vec<String>, EngineError> {
    let bad = || {
        EngineError::BadRequest(
            "`principals` must be an array of names or a space-separated string".into(),
        )
    };
    match v {
        Value::String(s) => Ok(s.split_ascii_whitespace().map(str::to_owned).collect()),
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => Ok(s),
                _ => Err(bad()),
            })
            .collect(),
        _ => Err(bad()),
    }
}

/// A request that passed [`SshEngine::check`].
struct Checked<'a> {
    role: &'a Role,
    public_key: PublicKey,
    principals: Vec<String>,
    serial: u64,
    key_id: String,
    /// Seconds since the epoch: the lease's end.
    valid_before: i64,
}

/// The certificate serial of a lease: the first 8 bytes of
/// SHA-256(`"warrant-ssh-serial:" || lease id`), top bit cleared (so it
/// fits a signed 64-bit integer in any database) and never 0 (a KRL cannot
/// revoke serial 0).
///
/// Deterministic, so `prepare` names it before `issue` runs; unique for
/// all practical purposes (a collision needs ~3 billion certificates, and
/// would only make a revocation revoke one extra certificate). The UUIDv7's
/// own leading bytes are not used: two leases created in the same
/// millisecond share them.
pub fn serial_for_lease(lease_id: uuid::Uuid) -> u64 {
    let mut input = b"warrant-ssh-serial:".to_vec();
    input.extend_from_slice(lease_id.as_bytes());
    let digest = warrant_crypto::sha256(&input);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) & (u64::MAX >> 1)).max(1)
}

impl SshEngine {
    fn new(name: &str, config: &toml::Value, ctx: &EngineContext) -> Result<Self, String> {
        warrant_core::Name::parse("engine name", name).map_err(|e| e.to_string())?;
        let raw: RawConfig = config.clone().try_into().map_err(toml_error)?;
        let mut roles = BTreeMap::new();
        for r in roles_of(config)? {
            let role = parse_role(r)?;
            if roles.contains_key(&role.name) {
                return Err(format!("role `{}` is defined twice", role.name));
            }
            roles.insert(role.name.clone(), role);
        }

        let dir = ctx.data_dir.join("engines").join(name);
        create_private_dir(&dir)?;
        let comment = format!("warrant-ssh-ca:{name}");
        let ca = match &raw.ca_key_file {
            Some(path) => load_ca(path, false, &comment)?,
            None => load_ca(&dir.join("ca"), true, &comment)?,
        };
        let mut public = ca.public_key().clone();
        public.set_comment(&comment);
        let ca_public_line = public
            .to_openssh()
            .map_err(|e| format!("cannot encode the CA public key: {e}"))?;
        let ca_key_blob = public
            .to_bytes()
            .map_err(|e| format!("cannot encode the CA public key: {e}"))?;
        let ca_fingerprint = public.fingerprint(HashAlg::Sha256).to_string();
        let revoked = RevokedSerials::open(&dir.join("revoked"), Timestamp::now().as_second())?;
        Ok(Self {
            name: name.to_owned(),
            ca,
            ca_public_line,
            ca_key_blob,
            ca_fingerprint,
            roles,
            revoked: Arc::new(revoked),
        })
    }

    /// The CA's public key as one OpenSSH line, for `sshd`'s
    /// `TrustedUserCAKeys` file.
    pub fn ca_public_key(&self) -> String {
        self.ca_public_line.clone()
    }

    /// The CA's SHA-256 fingerprint (`SHA256:...`).
    pub fn ca_fingerprint(&self) -> &str {
        &self.ca_fingerprint
    }

    /// The current OpenSSH KRL: this CA's revoked serials (certificates
    /// expired for over an hour are left out). Serve it as
    /// `application/octet-stream` for `sshd`'s `RevokedKeys`.
    pub fn krl(&self) -> Vec<u8> {
        let now = Timestamp::now().as_second();
        let (version, serials) = self.revoked.snapshot(now);
        let comment = format!("warrant ssh engine {}", self.name);
        krl::Krl {
            version,
            generated_at: u64::try_from(now).unwrap_or(0),
            comment: &comment,
            ca_key_blob: &self.ca_key_blob,
            serials: &serials,
        }
        .encode()
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
        let raw_key = params
            .public_key
            .ok_or_else(|| bad("the `public_key` parameter is required".into()))?;
        if raw_key.len() > MAX_PUBLIC_KEY_LEN {
            return Err(bad(format!(
                "`public_key` is longer than {MAX_PUBLIC_KEY_LEN} bytes"
            )));
        }
        let public_key = PublicKey::from_openssh(raw_key.trim()).map_err(|e| {
            bad(format!(
                "`public_key` is not an OpenSSH public key such as `ssh-ed25519 AAAA... comment`: {e}"
            ))
        })?;
        let algorithm = public_key.algorithm();
        let key_type = KeyType::of(&algorithm).filter(|k| role.key_types.contains(k));
        let Some(key_type) = key_type else {
            return Err(bad(format!(
                "role `{}` does not accept `{algorithm}` keys: it accepts {}",
                role.name,
                role.key_types
                    .iter()
                    .map(|k| format!("`{}`", k.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if key_type == KeyType::Rsa {
            let bits = rsa_bits(public_key.key_data());
            if bits < MIN_RSA_BITS {
                return Err(bad(format!(
                    "the RSA key has {bits} bits: at least {MIN_RSA_BITS} are required"
                )));
            }
        }

        let principals = match params.principals.map(principals_param).transpose()? {
            None => role.principals.clone(),
            Some(asked) if asked.is_empty() => {
                return Err(bad(
                    "`principals` must not be empty; leave it out to get all of the role's".into(),
                ));
            }
            Some(asked) => {
                let mut out: Vec<String> = Vec::new();
                for p in asked {
                    if !role.principals.contains(&p) {
                        return Err(bad(format!(
                            "principal `{}` is not allowed by role `{}`",
                            p.escape_default(),
                            role.name
                        )));
                    }
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
                out
            }
        };

        Ok(Checked {
            role,
            public_key,
            principals,
            serial: serial_for_lease(req.lease_id),
            key_id: format!("warrant:{}:{}", req.lease_id, req.agent),
            valid_before: req.expires_at.as_second(),
        })
    }
}

/// The size of an RSA key's modulus in bits (0 for other keys).
fn rsa_bits(key: &KeyData) -> usize {
    let Some(rsa) = key.rsa() else { return 0 };
    let n = rsa.n.as_positive_bytes().unwrap_or_default();
    let n = match n.iter().position(|b| *b != 0) {
        Some(i) => &n[i..],
        None => return 0,
    };
    (n.len() - 1) * 8 + (8 - n[0].leading_zeros() as usize)
}

#[async_trait]
impl Engine for SshEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "ssh"
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
        let c = self.check(req)?;
        Ok(json!({
            "serial": c.serial,
            "key_id": c.key_id,
            "valid_before": c.valid_before,
        }))
    }

    async fn issue(&self, req: &IssueRequest<'_>, handle: &Value) -> Result<Issued, EngineError> {
        let c = self.check(req)?;
        if handle.get("serial").and_then(Value::as_u64) != Some(c.serial) {
            return Err(EngineError::Internal(
                "the revocation handle does not match the request".into(),
            ));
        }
        if self.revoked.contains(c.serial) {
            return Err(EngineError::BadRequest(
                "this lease was already revoked".into(),
            ));
        }
        let now = Timestamp::now().as_second();
        let max_end = now.saturating_add(c.role.max_ttl.as_secs());
        let valid_before = c.valid_before.min(max_end);
        if valid_before <= now {
            return Err(EngineError::BadRequest(
                "the lease has already expired".into(),
            ));
        }
        let valid_after = now.saturating_sub(CLOCK_SKEW_SECS).max(0);
        let cert = self
            .sign(&c, valid_after, valid_before)
            .map_err(|e| EngineError::Internal(format!("cannot sign the certificate: {e}")))?;
        let line = cert
            .to_openssh()
            .map_err(|e| EngineError::Internal(format!("cannot encode the certificate: {e}")))?;
        let expires_at = Timestamp::from_second(valid_before)
            .map_err(|e| EngineError::Internal(format!("certificate expiry out of range: {e}")))?;
        tracing::debug!(engine = %self.name, role = %c.role.name, serial = c.serial, key_id = %c.key_id, "issued an SSH certificate");
        Ok(Issued {
            secrets: BTreeMap::from([("certificate".to_owned(), SecretString::from(line))]),
            public: json!({
                "serial": c.serial,
                "key_id": c.key_id,
                "principals": c.principals,
                "valid_before": expires_at.to_string(),
                "ca_fingerprint": self.ca_fingerprint,
            }),
            handle: handle.clone(),
            expires_at,
        })
    }

    async fn revoke(&self, handle: &Value) -> Result<(), EngineError> {
        let serial = handle
            .get("serial")
            .and_then(Value::as_u64)
            .filter(|s| *s != 0)
            .ok_or_else(|| EngineError::Internal("the revocation handle has no `serial`".into()))?;
        let valid_before = handle
            .get("valid_before")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MAX);
        let revoked = Arc::clone(&self.revoked);
        // The append is fsync'ed: keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            revoked.add(serial, valid_before, Timestamp::now().as_second())
        })
        .await
        .map_err(|e| EngineError::Internal(format!("the revocation task failed: {e}")))?
        .map_err(|e| EngineError::Unavailable(format!("cannot record the revocation: {e}")))?;
        tracing::info!(engine = %self.name, serial, "revoked an SSH certificate");
        Ok(())
    }
}

impl SshEngine {
    fn sign(
        &self,
        c: &Checked<'_>,
        valid_after: i64,
        valid_before: i64,
    ) -> ssh_key::Result<ssh_key::Certificate> {
        let to_u64 = |t: i64| u64::try_from(t).unwrap_or(0);
        let mut b = Builder::new_with_random_nonce(
            &mut OsRng,
            c.public_key.key_data().clone(),
            to_u64(valid_after),
            to_u64(valid_before),
        )?;
        b.serial(c.serial)?
            .cert_type(CertType::User)?
            .key_id(c.key_id.clone())?
            .comment(c.key_id.clone())?;
        for p in &c.principals {
            b.valid_principal(p.clone())?;
        }
        for (name, value) in &c.role.critical_options {
            b.critical_option(name.clone(), value.clone())?;
        }
        for x in &c.role.extensions {
            b.extension(x.clone(), "")?;
        }
        b.sign(&self.ca)
    }
}
