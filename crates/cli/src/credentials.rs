//! The saved login: `<config dir>/credentials.json` holding the address and
//! API token `warrant login` verified, readable by the user only.
//!
//! The config dir is `$WARRANT_CONFIG_DIR`, else `$XDG_CONFIG_HOME/warrant`,
//! else `$HOME/.config/warrant`.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::client::{display_addr, parse_addr};
use crate::error::UserError;

/// A token as given on the command line or in `WARRANT_TOKEN`, before
/// [`ApiToken::parse`] checks it. Parsing cannot fail here, so clap never
/// echoes the value in an error; `Debug` never prints it.
#[derive(Clone)]
pub struct RawToken(String);

impl std::str::FromStr for RawToken {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl RawToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RawToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawToken(<redacted>)")
    }
}

/// An API token. Never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// Accepts what a user pastes: surrounding whitespace is dropped.
    pub fn parse(raw: &str) -> Result<Self, UserError> {
        let token = raw.trim();
        if token.is_empty() {
            return Err(UserError::new("the API token is empty")
                .hint("pass the token `warrant user add` printed, or the admin.token file"));
        }
        // Sent in an HTTP header: visible ASCII only.
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(UserError::new(
                "the API token contains spaces or characters other than visible ASCII",
            )
            .hint("check that the token was copied whole and nothing else with it"));
        }
        Ok(Self(token.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// A saved login.
#[derive(Debug)]
pub struct Credentials {
    pub addr: Url,
    pub token: ApiToken,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    addr: String,
    token: String,
}

fn non_empty_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

pub fn config_dir() -> Result<PathBuf, UserError> {
    if let Some(dir) = non_empty_env("WARRANT_CONFIG_DIR") {
        return Ok(dir);
    }
    // The XDG spec says to ignore relative paths.
    if let Some(xdg) = non_empty_env("XDG_CONFIG_HOME").filter(|p| p.is_absolute()) {
        return Ok(xdg.join("warrant"));
    }
    if let Some(home) = non_empty_env("HOME") {
        return Ok(home.join(".config").join("warrant"));
    }
    Err(
        UserError::new("cannot find a config directory: HOME is not set")
            .hint("set WARRANT_CONFIG_DIR to a directory for warrant's saved login"),
    )
}

pub fn credentials_path() -> Result<PathBuf, UserError> {
    Ok(config_dir()?.join("credentials.json"))
}

/// The saved login, `None` if there is none.
pub fn load() -> anyhow::Result<Option<Credentials>> {
    let path = credentials_path()?;
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot read `{}`", path.display())));
        }
    };
    if let Ok(meta) = fs::metadata(&path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "`{}` is readable by other users: run `chmod 600` on it",
            path.display()
        );
    }
    let broken = |why: String| {
        UserError::new(format!(
            "the saved login in `{}` is unusable: {why}",
            path.display()
        ))
        .hint("run `warrant login` again")
    };
    let saved: Saved = serde_json::from_str(&text).map_err(|e| broken(e.to_string()))?;
    let addr = parse_addr(&saved.addr).map_err(|e| broken(e.to_string()))?;
    let token = ApiToken::parse(&saved.token).map_err(|e| broken(e.to_string()))?;
    Ok(Some(Credentials { addr, token }))
}

/// Saves a login (mode 0600, in a 0700 directory) and returns the file's path.
pub fn save(addr: &Url, token: &ApiToken) -> anyhow::Result<PathBuf> {
    let dir = config_dir()?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create `{}`", dir.display()))?;
    let path = dir.join("credentials.json");
    let body = serde_json::to_string_pretty(&Saved {
        addr: display_addr(addr),
        token: token.expose().to_owned(),
    })?;
    write_private(&path, body.as_bytes())
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(path)
}

/// Writes `path` atomically with mode 0600 from the start, so the token is
/// never readable by others, not even briefly.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let result = write_new(&tmp, contents).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_new(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_trimmed_and_never_debug_printed() {
        let t = ApiToken::parse("  wrt_abc\n").unwrap();
        assert_eq!(t.expose(), "wrt_abc");
        assert!(!format!("{t:?}").contains("wrt_abc"));
        assert!(ApiToken::parse(" \n").is_err());
        assert!(ApiToken::parse("wrt_a b").is_err());
    }

    #[test]
    fn private_files_are_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        write_private(&path, b"{}").unwrap();
        write_private(&path, b"{\"a\":1}").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"a\":1}\n");
    }
}
