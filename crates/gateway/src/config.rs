//! Upstream MCP servers as declared in the config: the raw serde form and
//! the typed [`Upstream`] it parses into in one step.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use warrant_core::Name;

/// How long one upstream request may take unless the config says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long an upstream may take to start and complete the MCP handshake
/// unless the config says otherwise (`npx` may download the package first).
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest message accepted from an upstream unless the config says
/// otherwise (a stdio line or an HTTP response body).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// One `[[mcp.servers]]` entry as written in the config file.
///
/// Exactly one of `command` (a stdio server, spawned per agent session) or
/// `url` (a streamable-HTTP server) is given. Secret values are never
/// written here: `[[mcp.servers.credentials]]` names an engine and role, and
/// the server leases the value per session and passes it as a
/// [`Launch`](crate::Launch).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The server's name: the `{server}` in `/mcp/{server}` and in
    /// `Tool::"{server}/{tool}"`.
    pub name: String,
    /// Program and arguments of a stdio server.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Plain (non-secret) environment variables for a stdio server. The
    /// child gets only these, `PATH`, `HOME`, `LANG`, and the launch
    /// credentials: never Warrant's own environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of a stdio server.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// URL of a streamable-HTTP server.
    #[serde(default)]
    pub url: Option<String>,
    /// Plain (non-secret) headers sent to a streamable-HTTP server.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Tools that bring outside content into the session: calling one
    /// taints the run.
    #[serde(default)]
    pub taints: Vec<String>,
    /// Also taint on tools whose annotations say `openWorldHint: true`.
    #[serde(default)]
    pub taint_open_world: bool,
    /// Upper bound on one upstream request, e.g. `"60s"` or `"2m"`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Upper bound on starting the upstream and its MCP handshake.
    #[serde(default)]
    pub startup_timeout: Option<String>,
    /// Largest message accepted from the upstream, in bytes.
    #[serde(default)]
    pub max_message_bytes: Option<usize>,
    /// Credentials leased for each session and handed to the upstream only.
    #[serde(default)]
    pub credentials: Vec<CredentialConfig>,
}

/// One `[[mcp.servers.credentials]]` entry: a lease of `engine`/`role`,
/// taken for each agent session before the upstream starts, given to the
/// upstream as an environment variable (stdio) or a header (HTTP), and
/// revoked when the session ends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// The environment variable a stdio server reads it from.
    #[serde(default)]
    pub env: Option<String>,
    /// The header an HTTP server reads it from.
    #[serde(default)]
    pub header: Option<String>,
    /// A configured `[[engines]]` name (a `kv` engine for sealed secrets).
    pub engine: String,
    pub role: String,
    /// Engine parameters, as in `POST /v1/leases`.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Which secret of the lease (`url`, `token`, `value`, `password`...);
    /// by default the main one.
    #[serde(default)]
    pub secret: Option<String>,
    /// The value as sent, with `{}` standing for the secret, e.g.
    /// `"Bearer {}"`. By default the secret alone.
    #[serde(default)]
    pub format: Option<String>,
    /// Lease lifetime (at most the role's maximum); by default the role's
    /// maximum, and never past the task's end.
    #[serde(default)]
    pub ttl: Option<String>,
}

/// Where an upstream receives a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialTarget {
    Env(String),
    Header(String),
}

/// A validated credential of one upstream.
#[derive(Debug, Clone)]
pub struct Credential {
    pub target: CredentialTarget,
    pub engine: String,
    pub role: String,
    pub params: BTreeMap<String, String>,
    pub secret: Option<String>,
    /// Text before and after the secret.
    pub format: (String, String),
    pub ttl: Option<String>,
}

impl Credential {
    /// The value the upstream gets.
    pub fn render(&self, secret: &str) -> String {
        format!("{}{secret}{}", self.format.0, self.format.1)
    }
}

/// A validated upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: Name,
    pub transport: UpstreamTransport,
    pub taints: BTreeSet<String>,
    pub taint_open_world: bool,
    pub timeout: Duration,
    pub startup_timeout: Duration,
    pub max_message_bytes: usize,
    pub credentials: Vec<Credential>,
}

#[derive(Debug, Clone)]
pub enum UpstreamTransport {
    Stdio {
        program: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<PathBuf>,
    },
    Http {
        url: String,
        headers: BTreeMap<String, String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("mcp server name `{name}` is invalid: {why}")]
    Name { name: String, why: String },
    #[error("mcp server `{server}`: {why}")]
    Invalid { server: String, why: String },
}

impl UpstreamConfig {
    /// Parse into an [`Upstream`], checking everything that can be checked
    /// without starting it.
    pub fn validate(self) -> Result<Upstream, ConfigError> {
        let name = Name::parse("mcp server", &self.name).map_err(|e| ConfigError::Name {
            name: self.name.chars().take(64).collect(),
            why: e.to_string(),
        })?;
        let invalid = |why: String| ConfigError::Invalid {
            server: name.as_str().to_owned(),
            why,
        };
        let transport = match (self.command, self.url) {
            (Some(_), Some(_)) => {
                return Err(invalid("give either `command` or `url`, not both".into()));
            }
            (None, None) => return Err(invalid("give `command` or `url`".into())),
            (Some(command), None) => {
                if !self.headers.is_empty() {
                    return Err(invalid("`headers` is for `url` servers".into()));
                }
                let mut parts = command.into_iter();
                let program = parts
                    .next()
                    .filter(|p| !p.trim().is_empty())
                    .ok_or_else(|| invalid("`command` is empty".into()))?;
                for key in self.env.keys() {
                    check_env_name(key).map_err(&invalid)?;
                }
                UpstreamTransport::Stdio {
                    program,
                    args: parts.collect(),
                    env: self.env,
                    cwd: self.cwd,
                }
            }
            (None, Some(url)) => {
                if !self.env.is_empty() || self.cwd.is_some() {
                    return Err(invalid("`env` and `cwd` are for `command` servers".into()));
                }
                let parsed = http::Uri::try_from(url.as_str())
                    .map_err(|_| invalid(format!("`url` `{url}` is not a URL")))?;
                if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none()
                {
                    return Err(invalid(format!("`url` `{url}` must be an http(s) URL")));
                }
                for key in self.headers.keys() {
                    check_header_name(key).map_err(&invalid)?;
                }
                UpstreamTransport::Http {
                    url,
                    headers: self.headers,
                }
            }
        };
        let timeout =
            positive_duration("timeout", self.timeout, DEFAULT_TIMEOUT).map_err(&invalid)?;
        let startup_timeout = positive_duration(
            "startup_timeout",
            self.startup_timeout,
            DEFAULT_STARTUP_TIMEOUT,
        )
        .map_err(&invalid)?;
        let max_message_bytes = self.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        if max_message_bytes < 1024 {
            return Err(invalid("`max_message_bytes` must be at least 1024".into()));
        }
        let credentials = self
            .credentials
            .into_iter()
            .map(|c| c.validate(&transport))
            .collect::<Result<Vec<_>, _>>()
            .map_err(&invalid)?;
        Ok(Upstream {
            name,
            transport,
            taints: self.taints.into_iter().collect(),
            taint_open_world: self.taint_open_world,
            timeout,
            startup_timeout,
            max_message_bytes,
            credentials,
        })
    }
}

impl CredentialConfig {
    fn validate(self, transport: &UpstreamTransport) -> Result<Credential, String> {
        let target = match (self.env, self.header, transport) {
            (Some(env), None, UpstreamTransport::Stdio { env: plain, .. }) => {
                check_env_name(&env)?;
                if plain.contains_key(&env) {
                    return Err(format!("`{env}` is both a plain `env` and a credential"));
                }
                CredentialTarget::Env(env)
            }
            (None, Some(header), UpstreamTransport::Http { headers: plain, .. }) => {
                check_header_name(&header)?;
                if plain.keys().any(|k| k.eq_ignore_ascii_case(&header)) {
                    return Err(format!(
                        "`{header}` is both a plain header and a credential"
                    ));
                }
                CredentialTarget::Header(header)
            }
            (Some(_), Some(_), _) => {
                return Err("a credential goes to `env` or `header`, not both".into());
            }
            (None, None, _) => {
                return Err("a credential needs `env` (stdio) or `header` (url)".into());
            }
            (Some(_), None, _) => return Err("credential `env` is for `command` servers".into()),
            (None, Some(_), _) => return Err("credential `header` is for `url` servers".into()),
        };
        for (what, v) in [("engine", &self.engine), ("role", &self.role)] {
            if v.is_empty() || v.len() > 128 {
                return Err(format!("credential `{what}` must be 1 to 128 characters"));
            }
        }
        let format = match self.format {
            None => (String::new(), String::new()),
            Some(f) => {
                let mut parts = f.splitn(3, "{}");
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(a), Some(b), None) => (a.to_owned(), b.to_owned()),
                    _ => {
                        return Err(format!(
                            "credential `format` `{f}` must hold `{{}}` exactly once"
                        ));
                    }
                }
            }
        };
        Ok(Credential {
            target,
            engine: self.engine,
            role: self.role,
            params: self.params,
            secret: self.secret,
            format,
            ttl: self.ttl,
        })
    }
}

fn positive_duration(
    key: &str,
    raw: Option<String>,
    default: Duration,
) -> Result<Duration, String> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    let d = warrant_core::task::parse_duration(&raw).map_err(|e| format!("`{key}`: {e}"))?;
    Duration::try_from(d)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{key}` `{raw}` must be positive"))
}

pub(crate) fn check_env_name(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("environment variable name `{key}` is invalid"))
    }
}

pub(crate) fn check_header_name(key: &str) -> Result<(), String> {
    http::HeaderName::try_from(key)
        .map(|_| ())
        .map_err(|_| format!("header name `{key}` is invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Upstream, String> {
        let raw: UpstreamConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        raw.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn stdio_server_with_defaults() {
        let u = parse(
            r#"name = "everything"
               command = ["npx", "-y", "@modelcontextprotocol/server-everything"]
               env = { LOG_LEVEL = "debug" }
               taints = ["fetch"]"#,
        )
        .unwrap();
        assert_eq!(u.name.as_str(), "everything");
        assert_eq!(u.timeout, DEFAULT_TIMEOUT);
        assert_eq!(u.startup_timeout, DEFAULT_STARTUP_TIMEOUT);
        assert!(u.taints.contains("fetch"));
        let UpstreamTransport::Stdio { program, args, .. } = u.transport else {
            panic!("expected stdio")
        };
        assert_eq!(program, "npx");
        assert_eq!(args, ["-y", "@modelcontextprotocol/server-everything"]);
    }

    #[test]
    fn http_server_with_timeout() {
        let u = parse(
            r#"name = "remote"
               url = "https://mcp.example.test/mcp"
               timeout = "2m"
               startup_timeout = "5m""#,
        )
        .unwrap();
        assert_eq!(u.timeout, Duration::from_secs(120));
        assert_eq!(u.startup_timeout, Duration::from_secs(300));
        assert!(matches!(u.transport, UpstreamTransport::Http { .. }));
    }

    #[test]
    fn credentials_parse_per_transport() {
        let u = parse(
            r#"name = "remote"
               url = "https://mcp.example.test/mcp"
               [[credentials]]
               header = "Authorization"
               engine = "vault"
               role = "remote-token"
               format = "Bearer {}""#,
        )
        .unwrap();
        let c = &u.credentials[0];
        assert_eq!(c.target, CredentialTarget::Header("Authorization".into()));
        assert_eq!(c.render("s3cret"), "Bearer s3cret");
        let u = parse(
            r#"name = "local"
               command = ["srv"]
               [[credentials]]
               env = "API_TOKEN"
               engine = "vault"
               role = "token"
               params = { secret = "api" }"#,
        )
        .unwrap();
        let c = &u.credentials[0];
        assert_eq!(c.target, CredentialTarget::Env("API_TOKEN".into()));
        assert_eq!(c.params["secret"], "api");
        assert_eq!(c.render("s3cret"), "s3cret");
    }

    #[test]
    fn bad_configs_are_refused() {
        for (text, needle) in [
            (r#"name = "x""#, "give `command` or `url`"),
            (
                r#"name = "x"
                command = ["a"]
                url = "http://h/""#,
                "not both",
            ),
            (
                r#"name = "x"
                command = []"#,
                "`command` is empty",
            ),
            (
                r#"name = "x"
                url = "ftp://h/""#,
                "http(s)",
            ),
            (
                r#"name = "x"
                command = ["a"]
                env = { "BAD-NAME" = "1" }"#,
                "BAD-NAME",
            ),
            (
                r#"name = "x"
                command = ["a"]
                timeout = "0s""#,
                "positive",
            ),
            (
                r#"name = "Has Space"
                command = ["a"]"#,
                "invalid",
            ),
            (
                r#"name = "x"
                command = ["a"]
                [[credentials]]
                header = "Authorization"
                engine = "vault"
                role = "r""#,
                "for `url` servers",
            ),
            (
                r#"name = "x"
                url = "http://h/"
                [[credentials]]
                env = "TOKEN"
                engine = "vault"
                role = "r""#,
                "for `command` servers",
            ),
            (
                r#"name = "x"
                command = ["a"]
                env = { TOKEN = "plain" }
                [[credentials]]
                env = "TOKEN"
                engine = "vault"
                role = "r""#,
                "both a plain",
            ),
            (
                r#"name = "x"
                url = "http://h/"
                [[credentials]]
                header = "Authorization"
                engine = "vault"
                role = "r"
                format = "Bearer""#,
                "exactly once",
            ),
            (
                r#"name = "x"
                command = ["a"]
                [[credentials]]
                env = "TOKEN"
                engine = "vault"
                role = "r"
                value = "hunter2""#,
                "unknown field",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
