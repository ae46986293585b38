//! The `postgres` engine's `[[engines]]` table, parsed into typed form in
//! one step: everything that can be wrong with it is found when the engine
//! is built, not when a lease is issued.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::SignedDuration;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;
use zeroize::Zeroizing;

use super::template::{Placeholder, Template};

const DEFAULT_MAX_CONNECTIONS: u32 = 4;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    admin_url_env: Option<String>,
    admin_url_file: Option<PathBuf>,
    max_connections: Option<u32>,
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
    creation: Vec<String>,
    revocation: Option<Vec<String>>,
    connect_url: Option<String>,
}

/// The engine's configuration.
#[derive(Debug)]
pub(crate) struct Config {
    /// The admin connection URL, with its password.
    pub admin_url: SecretString,
    pub max_connections: u32,
    pub roles: BTreeMap<String, Role>,
}

/// One `[[engines.roles]]` entry.
#[derive(Debug)]
pub(crate) struct Role {
    pub name: String,
    pub description: String,
    pub max_ttl: SignedDuration,
    pub creation: Vec<Template>,
    /// `None`: the default revocation (reassign and drop owned, drop role).
    pub revocation: Option<Vec<Template>>,
    /// Where the run connects: a `postgres://` URL without credentials.
    pub target: Target,
}

/// The server and database a credential is for.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Without user name and password; query parameters such as `sslmode`
    /// are kept.
    pub url: Url,
    pub host: String,
    pub port: u16,
    pub database: String,
}

impl Target {
    /// The URL a run connects with.
    pub(crate) fn url_for(&self, user: &str, password: &str) -> Result<String, String> {
        let mut url = self.url.clone();
        url.set_username(user)
            .and_then(|()| url.set_password(Some(password)))
            .map_err(|()| "cannot put credentials into the connection url".to_owned())?;
        Ok(url.to_string())
    }
}

pub(crate) fn parse(config: &toml::Value) -> Result<Config, String> {
    let mut table = config
        .as_table()
        .cloned()
        .ok_or_else(|| "the engine's config must be a table".to_owned())?;
    // The registry reads these two.
    table.remove("name");
    table.remove("type");
    let raw: RawConfig = toml::Value::Table(table)
        .try_into()
        .map_err(|e| clean_serde_error(&e.to_string()))?;

    let admin_url = read_admin_url(&raw)?;
    let admin = parse_admin_url(&admin_url)?;
    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        return Err("`max_connections` must be at least 1".into());
    }
    if raw.roles.is_empty() {
        return Err("no `[[engines.roles]]`: add at least one role".into());
    }
    let mut roles = BTreeMap::new();
    for (i, value) in raw.roles.into_iter().enumerate() {
        let role = parse_role(i, value, &admin)?;
        if roles.contains_key(&role.name) {
            return Err(format!("role `{}` is defined twice", role.name));
        }
        roles.insert(role.name.clone(), role);
    }
    Ok(Config {
        admin_url,
        max_connections,
        roles,
    })
}

/// toml's messages end with a newline and sometimes a period.
fn clean_serde_error(raw: &str) -> String {
    raw.trim().trim_end_matches('.').to_owned()
}

fn read_admin_url(raw: &RawConfig) -> Result<SecretString, String> {
    let text = match (&raw.admin_url_env, &raw.admin_url_file) {
        (Some(_), Some(_)) => {
            return Err("set one of `admin_url_env` and `admin_url_file`, not both".into());
        }
        (None, None) => {
            return Err("one of `admin_url_env` and `admin_url_file` is required".into());
        }
        (Some(var), None) => Zeroizing::new(std::env::var(var).map_err(|e| match e {
            std::env::VarError::NotPresent => {
                format!("`admin_url_env`: environment variable `{var}` is not set")
            }
            std::env::VarError::NotUnicode(_) => {
                format!("`admin_url_env`: environment variable `{var}` is not valid utf-8")
            }
        })?),
        (None, Some(path)) => Zeroizing::new(read_private_file(path)?),
    };
    let url = text.trim();
    if url.is_empty() {
        return Err("the admin url is empty".into());
    }
    Ok(SecretString::from(url.to_owned()))
}

/// Reads a file that holds a secret, refusing one others can read.
fn read_private_file(path: &std::path::Path) -> Result<String, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("`admin_url_file`: cannot read `{shown}`: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "`admin_url_file`: `{shown}` is accessible by group or others (mode {:o}): \
                 `chmod 600` it",
                mode & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    std::fs::read_to_string(path)
        .map_err(|e| format!("`admin_url_file`: cannot read `{shown}`: {e}"))
}

/// What the admin URL tells about the server, for building run URLs.
struct Admin {
    /// Without credentials.
    target: Option<Target>,
}

fn parse_admin_url(secret: &SecretString) -> Result<Admin, String> {
    // INVARIANT: no error message here quotes the URL: it holds a password.
    let url = Url::parse(secret.expose_secret())
        .map_err(|e| format!("the admin url is not a valid url: {e}"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "the admin url must start with `postgres://`, not `{}://`",
            url.scheme()
        ));
    }
    // The pool parses it again; make sure it can.
    secret
        .expose_secret()
        .parse::<sqlx::postgres::PgConnectOptions>()
        .map_err(|_| "the admin url is not a valid postgresql connection url".to_owned())?;
    let user = url.username().to_owned();
    let mut target = url;
    strip_credentials(&mut target);
    Ok(Admin {
        target: target_of(target, (!user.is_empty()).then_some(user)).ok(),
    })
}

fn strip_credentials(url: &mut Url) {
    // Cannot fail for a URL with a host; without one there are none to strip.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !matches!(k.as_ref(), "user" | "password" | "passfile"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
}

/// `url` without credentials; `default_db` is used when it names no
/// database (PostgreSQL's own default is the user name).
fn target_of(mut url: Url, default_db: Option<String>) -> Result<Target, String> {
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| "it names no host".to_owned())?
        .to_owned();
    let port = url.port().unwrap_or(5432);
    let path = url.path().trim_start_matches('/');
    let database = if path.is_empty() {
        let db = default_db.ok_or_else(|| "it names no database".to_owned())?;
        url.set_path(&format!("/{db}"));
        db
    } else {
        percent_decode(path)?
    };
    Ok(Target {
        url,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
        database,
    })
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "its database name has a bad `%` escape".to_owned())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "its database name is not utf-8".to_owned())
}

const CREATION: &[Placeholder] = &[
    Placeholder::Name,
    Placeholder::Password,
    Placeholder::Expires,
];
const REVOCATION: &[Placeholder] = &[Placeholder::Name];

fn parse_role(index: usize, value: toml::Value, admin: &Admin) -> Result<Role, String> {
    let label = value
        .get("name")
        .and_then(|n| n.as_str())
        .map(|n| format!("role `{n}`"))
        .unwrap_or_else(|| format!("role #{}", index + 1));
    let raw: RawRole = value
        .try_into()
        .map_err(|e| format!("{label}: {}", clean_serde_error(&e.to_string())))?;
    let name = warrant_core::Name::parse("role name", &raw.name)
        .map_err(|e| format!("{label}: {e}"))?
        .as_str()
        .to_owned();
    let max_ttl = crate::parse_ttl("max_ttl", &raw.max_ttl).map_err(|e| format!("{label}: {e}"))?;

    if raw.creation.is_empty() {
        return Err(format!("{label}: `creation` needs at least one statement"));
    }
    let creation = raw
        .creation
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Template::parse(s, CREATION)
                .map_err(|e| format!("{label}: creation statement {}: {e}", i + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for needed in [Placeholder::Name, Placeholder::Password] {
        if !creation.iter().any(|t| t.uses(needed)) {
            let which = if needed == Placeholder::Name {
                "`{{name}}`"
            } else {
                "`{{password}}`"
            };
            return Err(format!(
                "{label}: no creation statement uses {which}: the role must be created \
                 with the generated name and password"
            ));
        }
    }
    let revocation = match raw.revocation {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(format!(
                "{label}: `revocation` is empty: leave it out for the default"
            ));
        }
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, s)| {
                    Template::parse(s, REVOCATION)
                        .map_err(|e| format!("{label}: revocation statement {}: {e}", i + 1))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let target = match raw.connect_url {
        Some(raw_url) => parse_connect_url(&raw_url).map_err(|e| format!("{label}: {e}"))?,
        None => admin.target.clone().ok_or_else(|| {
            format!(
                "{label}: the admin url names no host or database to give runs: set `connect_url`"
            )
        })?,
    };
    Ok(Role {
        name,
        description: raw.description,
        max_ttl,
        creation,
        revocation,
        target,
    })
}

fn parse_connect_url(raw: &str) -> Result<Target, String> {
    let url = Url::parse(raw).map_err(|e| format!("`connect_url` is not a valid url: {e}"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "`connect_url` must start with `postgres://`, not `{}://`",
            url.scheme()
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "`connect_url` must not hold a user name or password: the engine adds them".into(),
        );
    }
    if url
        .query_pairs()
        .any(|(k, _)| matches!(k.as_ref(), "user" | "password" | "passfile"))
    {
        return Err("`connect_url` must not set `user`, `password` or `passfile`".into());
    }
    target_of(url, None).map_err(|e| format!("`connect_url`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_target_drops_credentials_and_keeps_options() {
        let secret = SecretString::from(
            "postgres://admin:s3cret@db.example:6543/app?sslmode=require&password=x".to_owned(),
        );
        let admin = parse_admin_url(&secret).unwrap();
        let t = admin.target.unwrap();
        assert_eq!(t.host, "db.example");
        assert_eq!(t.port, 6543);
        assert_eq!(t.database, "app");
        assert_eq!(
            t.url.as_str(),
            "postgres://db.example:6543/app?sslmode=require"
        );
        assert_eq!(
            t.url_for("w_x", "pw").unwrap(),
            "postgres://w_x:pw@db.example:6543/app?sslmode=require"
        );
    }

    #[test]
    fn admin_url_without_database_uses_the_user_name() {
        let secret = SecretString::from("postgres://admin@127.0.0.1".to_owned());
        let t = parse_admin_url(&secret).unwrap().target.unwrap();
        assert_eq!(t.database, "admin");
        assert_eq!(t.port, 5432);
        assert_eq!(t.url.as_str(), "postgres://127.0.0.1/admin");
    }

    #[test]
    fn bad_admin_url_never_echoes_it() {
        let secret = SecretString::from("mysql://root:hunter2@h/db".to_owned());
        let err = parse_admin_url(&secret).err().unwrap();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn connect_url_must_not_hold_credentials() {
        assert!(parse_connect_url("postgres://u:p@h/db").is_err());
        assert!(parse_connect_url("postgres://h/db?user=u").is_err());
        let t = parse_connect_url("postgres://[::1]:7000/my%20db").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 7000));
        assert_eq!(t.database, "my db");
    }
}
