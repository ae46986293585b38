//! Configuration: the optional TOML file, parsed into a typed [`Config`]
//! in one step, with command-line flags and `WARRANT_*` variables (given as
//! [`ServeOptions`]) taking precedence over the file.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use warrant_core::task::parse_duration;
use warrant_core::{Name, Tier, TtlBounds, validate_text};

use crate::ServeOptions;
use crate::routes::agents::MAX_DESCRIPTION;

pub const DEFAULT_DATA_DIR: &str = "./warrant-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8180";
pub const DEFAULT_TRUST_DOMAIN: &str = "warrant.local";
const DEFAULT_REAPER_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;
const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// How long in-flight requests may still run after the shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A configuration problem, naming where it is.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file `{}`: {source}: check the path given with --config or WARRANT_CONFIG", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file `{}`: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("invalid option: {0}")]
    Options(String),
}

/// The configuration `warrant serve` runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub trust_domain: String,
    /// The URL clients reach this server at: the run tokens' `iss` and
    /// `aud`, and what DPoP proofs' `htu` are compared with. `None` means
    /// `http://<the bound listen address>`.
    pub public_url: Option<String>,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub store_url: String,
    pub ttl: TtlBounds,
    pub reaper_interval: Duration,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
    /// After the shutdown signal, in-flight requests get this long; then
    /// the server stops regardless (workers, `server.stopped`, checkpoint).
    pub shutdown_grace: Duration,
    /// A request running longer is abandoned with `503 timeout`.
    pub request_timeout: Duration,
    pub agents: Vec<ConfigAgent>,
    /// `tokens.max_delegation_depth`: how many token-exchange hops a chain
    /// may have below the run that redeemed the claim (default 3).
    pub max_delegation_depth: u32,
    /// `[[issuers]]`: outside issuers, each unique by its exact `iss`:
    /// `[workload]` ones for the RFC 7523 jwt-bearer grant, `[human]` ones
    /// whose ID tokens sign users in to the API.
    pub issuers: Vec<warrant_identity::IssuerConfig>,
    /// `[policy]`: the policy set, shadow set and what the server computes
    /// for policies (protected branches, production environments).
    pub policy: PolicyConfig,
    /// `[[approvals.webhooks]]`: who is told about approval requests.
    pub webhooks: Vec<crate::notify::WebhookConfig>,
    /// `[[engines]]`, each built by `leases::build_engines` at start.
    pub engines: Vec<toml::Value>,
    /// `[leases]`: how revocations are retried.
    pub leases: crate::leases::LeaseSettings,
    /// `audit.refusal_events_per_second`: refusal events written one by one
    /// (after a burst of twice as many); the rest are counted.
    pub refusal_events_per_second: u32,
    /// `[[mcp.servers]]`: upstream MCP servers behind the gateway.
    pub mcp_servers: Vec<warrant_gateway::Upstream>,
}

/// Branches a push to (or merge into) counts as protected, by default.
pub const DEFAULT_PROTECTED_BRANCHES: &[&str] = &["main", "master", "release/**"];
/// Environments that count as production, by default.
pub const DEFAULT_PRODUCTION_ENVIRONMENTS: &[&str] = &["production", "prod"];
/// How long an approval request waits for a human, by default.
pub const DEFAULT_APPROVAL_TTL: Duration = Duration::from_secs(30 * 60);

/// `[policy]`.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// The policy directory; `None` serves the shipped default pack.
    pub dir: Option<PathBuf>,
    /// A candidate set evaluated beside the live one (shadow mode).
    pub shadow_dir: Option<PathBuf>,
    /// Branch globs (`main`, `release/**`) that are protected in every repo.
    pub protected_branches: Vec<String>,
    pub production_environments: Vec<String>,
    pub approval_ttl: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dir: None,
            shadow_dir: None,
            protected_branches: DEFAULT_PROTECTED_BRANCHES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            production_environments: DEFAULT_PRODUCTION_ENVIRONMENTS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            approval_ttl: DEFAULT_APPROVAL_TTL,
        }
    }
}

/// An agent declared in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigAgent {
    pub name: Name,
    pub tier: Tier,
    pub owner: Option<Name>,
    pub description: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    trust_domain: Option<String>,
    public_url: Option<String>,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    store: Option<String>,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    tasks: RawTasks,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    tokens: RawTokens,
    #[serde(default)]
    agents: Vec<RawAgent>,
    #[serde(default)]
    issuers: Vec<warrant_identity::IssuerConfig>,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    approvals: RawApprovals,
    #[serde(default)]
    engines: Vec<toml::Value>,
    #[serde(default)]
    leases: RawLeases,
    #[serde(default)]
    mcp: RawMcp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMcp {
    #[serde(default)]
    servers: Vec<warrant_gateway::UpstreamConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLeases {
    max_revoke_attempts: Option<u32>,
    revoke_backoff: Option<String>,
    max_revoke_backoff: Option<String>,
}

fn lease_settings(raw: RawLeases) -> Result<crate::leases::LeaseSettings, String> {
    let mut s = crate::leases::LeaseSettings::default();
    if let Some(n) = raw.max_revoke_attempts {
        if !(1..=100).contains(&n) {
            return Err("`leases.max_revoke_attempts` must be between 1 and 100".into());
        }
        s.max_attempts = n;
    }
    let dur = |what: &str, raw: &str| -> Result<Duration, String> {
        let d = parse_duration(raw).map_err(|e| format!("`leases.{what}`: {e}"))?;
        let ms = d.as_millis();
        if !(1..=86_400_000).contains(&ms) {
            return Err(format!("`leases.{what}` must be between 1ms and 24h"));
        }
        Ok(Duration::from_millis(u64::try_from(ms).unwrap_or(1)))
    };
    if let Some(b) = raw.revoke_backoff {
        s.backoff = dur("revoke_backoff", &b)?;
    }
    if let Some(b) = raw.max_revoke_backoff {
        s.max_backoff = dur("max_revoke_backoff", &b)?;
    }
    Ok(s)
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    #[serde(default)]
    webhooks: Vec<crate::notify::RawWebhook>,
}

impl std::fmt::Debug for RawApprovals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawApprovals")
            .field("webhooks", &self.webhooks.len())
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    dir: Option<PathBuf>,
    shadow_dir: Option<PathBuf>,
    protected_branches: Option<Vec<String>>,
    production_environments: Option<Vec<String>>,
    approval_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    shutdown_grace: Option<String>,
    request_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTasks {
    max_ttl: Option<String>,
    default_ttl: Option<String>,
    reaper_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    max_delegation_depth: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    checkpoint_every: Option<u64>,
    checkpoint_interval: Option<String>,
    refusal_events_per_second: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: String,
    tier: String,
    owner: Option<String>,
    description: Option<String>,
}

impl Config {
    /// Reads the config file named in `opts` (if any) and applies `opts`
    /// over it.
    pub fn load(opts: &ServeOptions) -> Result<Self, ConfigError> {
        match &opts.config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Self::from_toml(&text, opts).map_err(|message| ConfigError::Invalid {
                    path: path.clone(),
                    message,
                })
            }
            None => Self::from_raw(RawConfig::default(), opts).map_err(ConfigError::Options),
        }
    }

    /// Parses a config file's text (no file access); for tests and tools.
    pub fn from_toml(text: &str, opts: &ServeOptions) -> Result<Self, String> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        Self::from_raw(raw, opts)
    }

    fn from_raw(raw: RawConfig, opts: &ServeOptions) -> Result<Self, String> {
        let trust_domain = raw
            .trust_domain
            .unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.to_owned());
        if !valid_trust_domain(&trust_domain) {
            return Err(format!(
                "`trust_domain` is `{}`: expected a lowercase DNS name such as `warrant.local`",
                shown(&trust_domain)
            ));
        }
        let public_url = raw.public_url.map(|u| check_public_url(&u)).transpose()?;
        let listen = match opts.listen {
            Some(addr) => addr,
            None => {
                let text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
                text.parse().map_err(|_| {
                    format!(
                        "`listen` is `{}`: expected an address and port such as `127.0.0.1:8180`",
                        shown(text)
                    )
                })?
            }
        };
        let data_dir = opts
            .data_dir
            .clone()
            .or(raw.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if data_dir.as_os_str().is_empty() {
            return Err("`data_dir` is empty: give a directory such as `./warrant-data`".into());
        }
        let store_url = opts
            .store_url
            .clone()
            .or(raw.store)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("warrant.db").display()));

        let defaults = TtlBounds::default();
        let max_ttl =
            duration("tasks.max_ttl", raw.tasks.max_ttl.as_deref())?.unwrap_or(defaults.max);
        let default_ttl = duration("tasks.default_ttl", raw.tasks.default_ttl.as_deref())?
            .unwrap_or(defaults.default.min(max_ttl));
        if max_ttl < defaults.min {
            return Err(format!(
                "`tasks.max_ttl` is `{max_ttl:#}`: it must be at least the minimum ttl of {:#}",
                defaults.min
            ));
        }
        if default_ttl < defaults.min || default_ttl > max_ttl {
            return Err(format!(
                "`tasks.default_ttl` is `{default_ttl:#}`: it must be between {:#} and `tasks.max_ttl` ({max_ttl:#})",
                defaults.min
            ));
        }
        let ttl = TtlBounds {
            min: defaults.min,
            max: max_ttl,
            default: default_ttl,
        };
        let reaper_interval = positive(
            "tasks.reaper_interval",
            raw.tasks.reaper_interval.as_deref(),
        )?
        .unwrap_or(DEFAULT_REAPER_INTERVAL);
        let checkpoint_interval = positive(
            "audit.checkpoint_interval",
            raw.audit.checkpoint_interval.as_deref(),
        )?
        .unwrap_or(DEFAULT_CHECKPOINT_INTERVAL);
        let shutdown_grace = positive(
            "server.shutdown_grace",
            raw.server.shutdown_grace.as_deref(),
        )?
        .unwrap_or(DEFAULT_SHUTDOWN_GRACE);
        let request_timeout = positive(
            "server.request_timeout",
            raw.server.request_timeout.as_deref(),
        )?
        .unwrap_or(crate::state::DEFAULT_REQUEST_TIMEOUT);
        let checkpoint_every = raw
            .audit
            .checkpoint_every
            .unwrap_or(DEFAULT_CHECKPOINT_EVERY);
        if checkpoint_every == 0 {
            return Err("`audit.checkpoint_every` is 0: it must be at least 1".into());
        }

        let max_delegation_depth = raw
            .tokens
            .max_delegation_depth
            .unwrap_or(crate::issuer::DEFAULT_MAX_DELEGATION_DEPTH);
        if max_delegation_depth > crate::issuer::MAX_DELEGATION_DEPTH {
            return Err(format!(
                "`tokens.max_delegation_depth` is {max_delegation_depth}: it must be at most {}",
                crate::issuer::MAX_DELEGATION_DEPTH
            ));
        }

        let mut seen = HashSet::new();
        let mut agents = Vec::with_capacity(raw.agents.len());
        for (i, a) in raw.agents.into_iter().enumerate() {
            let at = format!("`agents[{i}]`");
            let name = Name::parse("agent name", &a.name).map_err(|e| format!("{at}: {e}"))?;
            if !seen.insert(name.clone()) {
                return Err(format!("{at}: agent `{name}` is declared twice"));
            }
            let tier = a.tier.parse().map_err(|e| format!("{at}: {e}"))?;
            let owner = a
                .owner
                .as_deref()
                .map(|o| Name::parse("owner name", o))
                .transpose()
                .map_err(|e| format!("{at}: {e}"))?;
            let description = a.description.unwrap_or_default();
            if description.chars().count() > MAX_DESCRIPTION {
                return Err(format!(
                    "{at}: `description` is longer than {MAX_DESCRIPTION} characters"
                ));
            }
            validate_text("description", &description, MAX_DESCRIPTION)
                .map_err(|e| format!("{at}: {e}"))?;
            agents.push(ConfigAgent {
                name,
                tier,
                owner,
                description,
            });
        }

        let mut seen_issuers = HashSet::new();
        for (i, issuer) in raw.issuers.iter().enumerate() {
            if !seen_issuers.insert(issuer.issuer.as_str()) {
                return Err(format!(
                    "`issuers[{i}]`: issuer `{}` is declared twice",
                    shown(&issuer.issuer)
                ));
            }
        }

        let policy = policy_config(raw.policy)?;
        let webhooks = crate::notify::parse_webhooks(raw.approvals.webhooks)
            .map_err(|e| format!("`approvals.webhooks`: {e}"))?;

        let leases = lease_settings(raw.leases)?;
        let refusal_events_per_second = match raw.audit.refusal_events_per_second {
            None => crate::refusals::DEFAULT_PER_SECOND,
            Some(n) if (1..=100_000).contains(&n) => n,
            Some(_) => {
                return Err(
                    "`audit.refusal_events_per_second` must be between 1 and 100000".into(),
                );
            }
        };
        let mut mcp_servers: Vec<warrant_gateway::Upstream> = Vec::new();
        for s in raw.mcp.servers {
            let up = s.validate().map_err(|e| format!("`mcp.servers`: {e}"))?;
            if mcp_servers.iter().any(|m| m.name == up.name) {
                return Err(format!("`mcp.servers`: `{}` is declared twice", up.name));
            }
            mcp_servers.push(up);
        }
        Ok(Config {
            mcp_servers,
            refusal_events_per_second,
            engines: raw.engines,
            leases,
            webhooks,
            policy,
            trust_domain,
            public_url,
            listen,
            data_dir,
            store_url,
            ttl,
            reaper_interval,
            checkpoint_every,
            checkpoint_interval,
            shutdown_grace,
            request_timeout,
            agents,
            max_delegation_depth,
            issuers: raw.issuers,
        })
    }
}

/// User input shown in a message: at most 64 characters.
fn shown(s: &str) -> String {
    s.chars().take(64).collect()
}

fn duration(key: &str, raw: Option<&str>) -> Result<Option<jiff::SignedDuration>, String> {
    raw.map(|r| parse_duration(r).map_err(|e| format!("`{key}`: {e}")))
        .transpose()
}

/// A duration that must be greater than zero, as a std `Duration`.
fn positive(key: &str, raw: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(d) = duration(key, raw)? else {
        return Ok(None);
    };
    match Duration::try_from(d) {
        Ok(std) if !std.is_zero() => Ok(Some(std)),
        _ => Err(format!("`{key}` is `{d:#}`: it must be greater than zero")),
    }
}

/// `http(s)://host[:port][/path]`, no query, fragment or user info; a
/// trailing slash is dropped.
fn check_public_url(url: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "`public_url` is `{}`: expected an absolute http or https URL such as \
             `https://warrant.example.com`, without query, fragment or user info",
            shown(url)
        )
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty()
        || authority.contains('@')
        || url.contains(['?', '#'])
        || !url.bytes().all(|b| b.is_ascii_graphic())
        || warrant_token::dpop::Htu::parse(url).is_err()
    {
        return Err(bad());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn valid_trust_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

#[cfg(test)]
mod tests;

fn policy_config(raw: RawPolicy) -> Result<PolicyConfig, String> {
    let mut policy = PolicyConfig {
        dir: raw.dir,
        shadow_dir: raw.shadow_dir,
        ..PolicyConfig::default()
    };
    if let Some(branches) = raw.protected_branches {
        for b in &branches {
            warrant_core::Scope {
                branches: vec![b.clone()],
                ..Default::default()
            }
            .validated()
            .map_err(|e| format!("`policy.protected_branches`: {e}"))?;
        }
        policy.protected_branches = branches;
    }
    if let Some(envs) = raw.production_environments {
        for e in &envs {
            warrant_core::Scope {
                environments: vec![e.clone()],
                ..Default::default()
            }
            .validated()
            .map_err(|err| format!("`policy.production_environments`: {err}"))?;
        }
        policy.production_environments = envs;
    }
    if let Some(ttl) = raw.approval_ttl {
        let d = parse_duration(&ttl).map_err(|e| format!("`policy.approval_ttl`: {e}"))?;
        let secs = d.as_secs();
        if !(60..=7 * 24 * 3600).contains(&secs) {
            return Err("`policy.approval_ttl` must be between 1m and 168h".into());
        }
        policy.approval_ttl = Duration::from_secs(secs.unsigned_abs());
    }
    for (what, dir) in [("dir", &policy.dir), ("shadow_dir", &policy.shadow_dir)] {
        if dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return Err(format!(
                "`policy.{what}` is empty: give a directory of `.cedar` files"
            ));
        }
    }
    Ok(policy)
}
