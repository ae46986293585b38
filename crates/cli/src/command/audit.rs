//! `warrant audit verify|export`.
//!
//! `verify` never talks to a server: it reads the store directly, so it
//! still works when the server is down or not to be trusted.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use warrant_audit::{Report, Verifier};
use warrant_core::TaskId;
use warrant_crypto::{SigningKey, ed25519_kid};
use warrant_store::{AuditFilter, Store};

use super::Context;
use crate::error::UserError;
use crate::output::{self, OutputFormat};

/// Rows read per query while verifying or exporting offline.
const PAGE: u32 = 10_000;
/// Events asked for per request when exporting through the API (its maximum).
const API_PAGE: u32 = 1_000;
const DEFAULT_DATA_DIR: &str = "./warrant-data";

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every link of the audit chain and every checkpoint signature,
    /// offline, on the store itself
    Verify(VerifyArgs),
    /// Print audit events, one JSON object per line
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The server's data directory [default: ./warrant-data]
    #[arg(long, env = "WARRANT_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// The store's URL, when it is not `<data-dir>/warrant.db`
    #[arg(
        long,
        env = "WARRANT_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    store: Option<String>,

    /// Trust only this key: a PKCS#8 PEM signing key, or a file holding the
    /// Ed25519 public key as 64 hex digits [default: `<data-dir>/signing.key`
    /// and `<data-dir>/keys/*.pem` when readable, else the keys recorded in
    /// the store]
    #[arg(long, value_name = "FILE")]
    trusted_key: Option<PathBuf>,

    /// Also fail unless every event is covered by a signed checkpoint and
    /// the trusted key comes from outside the store (use on a stopped
    /// server, whose last checkpoint covers the whole chain)
    #[arg(long)]
    strict: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    format: ExportFormat,

    /// Only this task's events
    #[arg(long, value_name = "ID")]
    task: Option<TaskId>,

    /// Read the store in this data directory instead of asking the server
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Read this store instead of asking the server
    #[arg(long, value_name = "URL")]
    store: Option<String>,
}

pub async fn run(ctx: &Context, cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify(args) => verify(ctx, args).await,
        AuditCommand::Export(args) => export(ctx, args).await,
    }
}

/// Where a store is, and the data directory whose `signing.key` goes with it.
#[derive(Debug)]
struct Location {
    url: String,
    data_dir: Option<PathBuf>,
}

fn locate(data_dir: Option<PathBuf>, store: Option<String>) -> Result<Location, UserError> {
    let missing = |path: &Path| {
        UserError::new(format!("no store at `{}`", path.display())).hint(
            "pass the data directory `warrant serve` uses with --data-dir, \
             or the store's URL with --store",
        )
    };
    match store {
        Some(url) => {
            if let Some(path) = sqlite_path(&url)
                && !path.is_file()
            {
                return Err(missing(&path));
            }
            // A key file is only looked for where the user pointed.
            Ok(Location { url, data_dir })
        }
        None => {
            let dir = data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
            let db = dir.join("warrant.db");
            if !db.is_file() {
                return Err(missing(&db));
            }
            Ok(Location {
                url: format!("sqlite://{}", db.display()),
                data_dir: Some(dir),
            })
        }
    }
}

/// The file behind a `sqlite://PATH` URL; `None` for other stores.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

async fn open(loc: &Location) -> anyhow::Result<Arc<dyn Store>> {
    warrant_store::open(&loc.url).await.map_err(|e| {
        UserError::new(format!("cannot open the store: {e}"))
            .hint("check --data-dir or --store")
            .into()
    })
}

async fn verify(ctx: &Context, args: VerifyArgs) -> anyhow::Result<()> {
    let loc = locate(args.data_dir, args.store)?;
    let store = open(&loc).await?;
    let result = verify_store(&*store, &loc, args.trusted_key.as_deref(), args.strict).await;
    store.close().await;
    let (report, keys) = result?;
    match ctx.output {
        OutputFormat::Json => {
            let mut doc = serde_json::to_value(&report)?;
            if let Value::Object(map) = &mut doc {
                map.insert("trusted_keys".into(), json!(keys));
            }
            output::json(&doc)
        }
        OutputFormat::Table => {
            output::text_line(&format!(
                "audit log intact: {} events chained, {} signed checkpoints verified",
                report.events, report.checkpoints
            ))?;
            output::table(&output::details(vec![
                ("head sequence", report.head_seq.to_string()),
                ("head hash", hex::encode(report.head_hash)),
                ("checkpoints verified", report.checkpoints.to_string()),
                (
                    "events after the last checkpoint",
                    report.unanchored.to_string(),
                ),
                ("trusted keys", output::joined(&keys)),
            ]))?;
            if report.checkpoints == 0 && report.events > 0 {
                output::text_line(
                    "note: no signed checkpoint covers these events yet; their chain alone \
                     cannot show they were not rewritten",
                )?;
            }
            Ok(())
        }
    }
}

/// Verifies the whole chain; returns the report and the kids trusted.
async fn verify_store(
    store: &dyn Store,
    loc: &Location,
    trusted_key: Option<&Path>,
    strict: bool,
) -> anyhow::Result<(Report, Vec<String>)> {
    let (keys, independent) = match trusted_key {
        Some(path) => {
            let (kid, pk) = read_trusted_key(path)?;
            (HashMap::from([(kid, pk.to_vec())]), true)
        }
        None => trusted_keys(store, loc.data_dir.as_deref()).await?,
    };
    if strict && !independent {
        return Err(UserError::new(
            "--strict needs a key from outside the store, and no `signing.key` was found",
        )
        .hint("pass --data-dir with the server's signing.key, or --trusted-key FILE")
        .into());
    }
    let mut kids: Vec<String> = keys.keys().cloned().collect();
    kids.sort();
    let report = verify_chain(store, keys).await?;
    if strict && report.unanchored > 0 {
        return Err(UserError::new(format!(
            "{} event(s) after sequence {} are not covered by a signed checkpoint, so nothing \
             shows they were not rewritten or that later events were not cut off",
            report.unanchored,
            report.head_seq - report.unanchored
        ))
        .hint("stop the server (it signs a last checkpoint) and verify again")
        .into());
    }
    Ok((report, kids))
}

/// Streams the whole chain, in pages, through the verifier, against the
/// store's checkpoints and the given keys. Also what `warrant bench
/// audit-verify` measures.
pub(crate) async fn verify_chain(
    store: &dyn Store,
    keys: HashMap<String, Vec<u8>>,
) -> anyhow::Result<Report> {
    let checkpoints = store
        .list_checkpoints()
        .await
        .context("cannot read checkpoints")?;
    let mut verifier = Verifier::new(keys, checkpoints);
    let mut after = 0i64;
    loop {
        let page = store
            .raw_audit(after, PAGE)
            .await
            .context("cannot read audit events")?;
        let Some(last) = page.last().map(|r| r.seq) else {
            break;
        };
        for raw in page {
            verifier.push(raw)?;
        }
        // INVARIANT: rows come in ascending `seq` after `after`; if a store
        // broke that, stopping beats looping forever.
        if last <= after {
            break;
        }
        after = last;
    }
    Ok(verifier.finish()?)
}

/// The keys to trust, and whether they come from outside the store.
///
/// The data directory's key files are `signing.key` (the first key) and
/// every `keys/<kid>.pem` a rotation wrote. When any is readable, they are
/// the only keys trusted, retired ones included (checkpoints they signed
/// still verify): a key that only the store vouches for could have been
/// added by whoever rewrote the store, so any other key recorded there is
/// an error. Without key files, the store's recorded keys are all there is.
async fn trusted_keys(
    store: &dyn Store,
    data_dir: Option<&Path>,
) -> anyhow::Result<(HashMap<String, Vec<u8>>, bool)> {
    let mut recorded = HashMap::new();
    for rec in store
        .list_public_keys()
        .await
        .context("cannot read public keys")?
    {
        let matches = <[u8; 32]>::try_from(rec.public_key.as_slice())
            .is_ok_and(|pk| ed25519_kid(&pk) == rec.kid);
        if !matches {
            return Err(UserError::new(format!(
                "the store's public key `{}` does not match its key id: the key table was altered",
                rec.kid
            ))
            .into());
        }
        recorded.insert(rec.kid, rec.public_key);
    }
    let Some(data_dir) = data_dir else {
        return Ok((recorded, false));
    };
    let files = key_files(data_dir)?;
    if files.is_empty() {
        return Ok((recorded, false));
    }
    let mut trusted = HashMap::new();
    for path in files {
        let Some(pem) = read_key_file(&path)? else {
            continue;
        };
        let key = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| UserError::new(format!("cannot use `{}`: {e}", path.display())))?;
        if recorded
            .get(key.kid())
            .is_some_and(|pk| pk.as_slice() != key.public_key())
        {
            return Err(UserError::new(format!(
                "the store's record of key `{}` differs from `{}`",
                key.kid(),
                path.display()
            ))
            .into());
        }
        trusted.insert(key.kid().to_owned(), key.public_key().to_vec());
    }
    if trusted.is_empty() {
        return Ok((recorded, false));
    }
    if let Some(other) = recorded
        .keys()
        .find(|kid| !trusted.contains_key(kid.as_str()))
    {
        return Err(UserError::new(format!(
            "the store lists key `{other}`, which is not one of the server's keys in `{}`: \
             the key table was altered",
            data_dir.display()
        ))
        .hint("if you trust that key, pass it with --trusted-key")
        .into());
    }
    Ok((trusted, true))
}

/// `<data_dir>/signing.key` and every `<data_dir>/keys/*.pem`.
fn key_files(data_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = vec![data_dir.join("signing.key")];
    let dir = data_dir.join("keys");
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            for entry in entries {
                let path = entry
                    .map_err(|e| UserError::new(format!("cannot read `{}`: {e}", dir.display())))?
                    .path();
                if path.extension().is_some_and(|ext| ext == "pem") {
                    files.push(path);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(
                UserError::new(format!("cannot read `{}`: {e}", dir.display()))
                    .hint("run as the server's user, or pass --trusted-key with its public key")
                    .into(),
            );
        }
    }
    Ok(files)
}

/// A key file's PEM; `None` when it does not exist.
fn read_key_file(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(pem) => Ok(Some(pem)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(
            UserError::new(format!("cannot read `{}`: {e}", path.display()))
                .hint("run as the server's user, or pass --trusted-key with its public key")
                .into(),
        ),
    }
}

/// Reads `--trusted-key`: a PEM signing key, or a hex public key.
fn read_trusted_key(path: &Path) -> anyhow::Result<(String, [u8; 32])> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        UserError::new(format!("cannot read `{}`: {e}", path.display()))
            .hint("pass the server's signing.key or a file with its public key in hex")
    })?;
    if text.contains("-----BEGIN") {
        let key = SigningKey::from_pkcs8_pem(&text)
            .map_err(|e| UserError::new(format!("cannot use `{}`: {e}", path.display())))?;
        return Ok((key.kid().to_owned(), key.public_key()));
    }
    let pk: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            UserError::new(format!(
                "`{}` holds neither a PEM signing key nor a 64-hex-digit public key",
                path.display()
            ))
        })?;
    Ok((ed25519_kid(&pk), pk))
}

async fn export(ctx: &Context, args: ExportArgs) -> anyhow::Result<()> {
    let ExportFormat::Jsonl = args.format;
    let task = args.task.map(|t| t.to_string());
    if args.data_dir.is_none() && args.store.is_none() {
        return export_api(ctx, task).await;
    }
    let loc = locate(args.data_dir, args.store)?;
    let store = open(&loc).await?;
    let result = export_store(&*store, task).await;
    store.close().await;
    result
}

async fn export_store(store: &dyn Store, task: Option<String>) -> anyhow::Result<()> {
    let mut filter = AuditFilter {
        after: 0,
        task_id: task,
        kind: None,
        limit: Some(PAGE),
    };
    loop {
        let page = store
            .list_audit(&filter)
            .await
            .context("cannot read audit events")?;
        let Some(last) = page.last().map(|e| e.seq) else {
            return Ok(());
        };
        let mut lines = String::new();
        for event in &page {
            lines.push_str(&serde_json::to_string(event)?);
            lines.push('\n');
        }
        write_stdout(&lines)?;
        if last <= filter.after {
            return Ok(());
        }
        filter.after = last;
    }
}

async fn export_api(ctx: &Context, task: Option<String>) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct Page {
        events: Vec<Value>,
        next_after: Option<u64>,
    }
    let client = ctx.client()?;
    let mut after = 0u64;
    loop {
        let mut query = vec![
            ("after", after.to_string()),
            ("limit", API_PAGE.to_string()),
        ];
        if let Some(task) = &task {
            query.push(("task", task.clone()));
        }
        let page: Page = client.get(&["v1", "audit"], &query).await?;
        let mut lines = String::new();
        for event in &page.events {
            lines.push_str(&serde_json::to_string(event)?);
            lines.push('\n');
        }
        write_stdout(&lines)?;
        match page.next_after {
            Some(next) if next > after && !page.events.is_empty() => after = next,
            _ => return Ok(()),
        }
    }
}

fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite:///tmp/w/warrant.db?mode=rwc"),
            Some(PathBuf::from("/tmp/w/warrant.db"))
        );
        assert_eq!(
            sqlite_path("sqlite://./warrant-data/warrant.db"),
            Some(PathBuf::from("./warrant-data/warrant.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://u@127.0.0.1/w"), None);
    }

    #[test]
    fn a_missing_store_is_refused_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate(Some(dir.path().join("nope")), None).unwrap_err();
        assert!(err.to_string().contains("no store at"), "{err}");
        assert!(!dir.path().join("nope").exists());
        let url = format!("sqlite://{}/x.db", dir.path().display());
        assert!(locate(None, Some(url)).is_err());
    }

    #[test]
    fn trusted_keys_may_be_pem_or_hex() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        let hex_file = dir.path().join("pk.hex");
        std::fs::write(&hex_file, format!("{}\n", hex::encode(key.public_key()))).unwrap();
        let (kid, pk) = read_trusted_key(&hex_file).unwrap();
        assert_eq!((kid.as_str(), pk), (key.kid(), key.public_key()));
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "abcd").unwrap();
        assert!(read_trusted_key(&bad).is_err());
    }
}
