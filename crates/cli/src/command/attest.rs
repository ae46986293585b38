//! `warrant attest verify`: checks an approval attestation (a DSSE envelope
//! over an in-toto statement) against Warrant's public keys, offline but for
//! fetching the JWKS. Meant as a merge or deploy gate in CI: it exits 0
//! only when the envelope is valid, for the given subject and action.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Url;
use serde_json::json;
use warrant_attest::{AttestError, MAX_ENVELOPE_LEN, Subject, TrustedKeys, Verified};
use warrant_crypto::jws::Jwks;

use super::Context;
use crate::error::UserError;
use crate::output::{self, OutputFormat};

/// The JWKS path on a Warrant server.
const JWKS_PATH: &str = ".well-known/jwks.json";
/// A JWKS is a few keys; anything much larger is not one.
const MAX_JWKS_LEN: u64 = 1024 * 1024;

#[derive(Debug, Subcommand)]
pub enum AttestCommand {
    /// Verify an approval attestation: exit 0 only if Warrant signed it and,
    /// with --subject, it is for that commit or digest (a CI merge or
    /// deploy gate)
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The DSSE envelope, as `GET /v1/approvals/{id}/attestation` returns
    /// it (`-` reads stdin)
    #[arg(long, value_name = "FILE")]
    envelope: PathBuf,

    /// Require the approval to be for this artifact: `sha1:<git commit>`
    /// (40 hex digits) or `sha256:<digest>` (64), lowercase
    #[arg(long, value_name = "sha1:HEX|sha256:HEX")]
    subject: Option<String>,

    /// Require the approval to be for this action (`merge`, `deploy`, ...)
    #[arg(long, value_name = "ACTION")]
    action: Option<String>,

    /// Warrant's public keys: a JWKS URL or file [default: the address's
    /// /.well-known/jwks.json]
    #[arg(long, value_name = "URL|FILE")]
    jwks: Option<String>,
}

pub async fn run(ctx: &Context, cmd: AttestCommand) -> anyhow::Result<()> {
    match cmd {
        AttestCommand::Verify(args) => verify(ctx, args).await,
    }
}

async fn verify(ctx: &Context, args: VerifyArgs) -> anyhow::Result<()> {
    // Bad arguments first: they need no network.
    let subject = args
        .subject
        .as_deref()
        .map(Subject::parse)
        .transpose()
        .map_err(|e| {
            UserError::new(e.to_string())
                .hint("pass --subject sha1:$(git rev-parse HEAD), or sha256:<64 hex digits>")
        })?;
    let envelope = read_envelope(&args.envelope)?;
    let (keys, source) = load_keys(ctx, args.jwks.as_deref()).await?;

    let verified = warrant_attest::verify(&envelope, &keys, subject.as_ref())
        .map_err(|e| refused(&e, &source))?;
    let predicate = &verified.statement.predicate;
    if let Some(action) = &args.action
        && predicate.action != *action
    {
        return Err(UserError::new(format!(
            "attestation refused: the approval is for action `{}`, not `{action}`",
            predicate.action
        ))
        .hint(format!("this gate needs an approval for `{action}`"))
        .into());
    }
    if subject.is_none() {
        eprintln!(
            "note: without --subject only the signature is checked, not which commit or \
             digest the approval is for"
        );
    }
    print(ctx.output, &verified, &source)
}

/// The envelope's bytes, at most one byte more than the verifier accepts
/// (so that it can say the file is too large).
fn read_envelope(path: &Path) -> anyhow::Result<Vec<u8>> {
    let limit = u64::try_from(MAX_ENVELOPE_LEN)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut bytes = Vec::new();
    let result = if path == Path::new("-") {
        std::io::stdin().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    result.map_err(|e| {
        UserError::new(format!("cannot read `{}`: {e}", path.display())).hint(
            "save the envelope with `curl -H \"Authorization: Bearer $WARRANT_TOKEN\" \
             <addr>/v1/approvals/<id>/attestation > envelope.json`",
        )
    })?;
    Ok(bytes)
}

/// The trusted keys, and where they came from (for messages).
async fn load_keys(ctx: &Context, jwks: Option<&str>) -> anyhow::Result<(TrustedKeys, String)> {
    let (json, source) = match jwks {
        Some(s) if s.starts_with("http://") || s.starts_with("https://") => {
            let url = Url::parse(s)
                .map_err(|e| UserError::new(format!("invalid --jwks URL `{s}`: {e}")))?;
            (fetch_jwks(&url).await?, s.to_owned())
        }
        Some(file) => (read_jwks_file(Path::new(file))?, file.to_owned()),
        None => {
            let url = ctx.addr()?.join(JWKS_PATH).map_err(|e| {
                UserError::new(format!("cannot make the JWKS URL from the address: {e}"))
            })?;
            (fetch_jwks(&url).await?, url.to_string())
        }
    };
    let jwks = Jwks::from_json(&json).map_err(|e| {
        UserError::new(format!("`{source}` is not a usable JWKS: {e}"))
            .hint("point --jwks at a Warrant server's /.well-known/jwks.json")
    })?;
    Ok((TrustedKeys::from_jwks(&jwks), source))
}

fn read_jwks_file(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read(path).map_err(|e| {
        UserError::new(format!("cannot read the JWKS `{}`: {e}", path.display()))
            .hint("pass a JWKS file, or the URL of a Warrant server's /.well-known/jwks.json")
    })?;
    serde_json::from_slice(&text).map_err(|e| {
        UserError::new(format!("`{}` is not JSON: {e}", path.display()))
            .hint("pass a JWKS file as `curl <addr>/.well-known/jwks.json` prints it")
            .into()
    })
}

async fn fetch_jwks(url: &Url) -> anyhow::Result<serde_json::Value> {
    // A gate that fetched its keys over plain HTTP could be handed an
    // attacker's keys by anyone on the path.
    if url.scheme() == "http" && !is_loopback(url) {
        return Err(UserError::new(format!(
            "refusing to fetch keys over plain HTTP from `{url}`: anyone on the network path \
             could substitute their own"
        ))
        .hint(
            "use an https:// URL, or save the JWKS once from a trusted place and pass --jwks FILE",
        )
        .into());
    }
    let unreachable = |why: String| {
        UserError::new(format!("cannot fetch the JWKS from `{url}`: {why}")).hint(
            "is the Warrant server up? point --jwks at its /.well-known/jwks.json, or pass a \
             saved JWKS file",
        )
    };
    let http = reqwest::Client::builder()
        .user_agent(concat!("warrant/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut resp = http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| unreachable(root_cause(&e)))?;
    if !resp.status().is_success() {
        return Err(unreachable(format!("HTTP {}", resp.status().as_u16())).into());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| unreachable(root_cause(&e)))?
    {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > MAX_JWKS_LEN {
            return Err(
                unreachable(format!("the answer is larger than {MAX_JWKS_LEN} bytes")).into(),
            );
        }
    }
    serde_json::from_slice(&body)
        .map_err(|e| unreachable(format!("the answer is not JSON: {e}")).into())
}

fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The verifier's error as a refusal, with what to do about it.
fn refused(err: &AttestError, source: &str) -> anyhow::Error {
    let not_an_attestation = "pass the JSON that `GET /v1/approvals/<id>/attestation` returns, \
                              unchanged";
    let hint = match err {
        AttestError::TooLarge { .. }
        | AttestError::Malformed(_)
        | AttestError::NoSignatures
        | AttestError::PayloadType { .. }
        | AttestError::Statement(_)
        | AttestError::StatementType { .. }
        | AttestError::PredicateType { .. }
        | AttestError::Predicate(_)
        | AttestError::NoSubject => not_an_attestation.to_owned(),
        AttestError::NoTrustedKeys => {
            format!(
                "`{source}` has no Ed25519 key; point --jwks at Warrant's /.well-known/jwks.json"
            )
        }
        AttestError::UnknownKey { .. } => format!(
            "the envelope was signed by a key `{source}` does not list: check that --jwks names \
             the Warrant server that signed it; keys leave the JWKS some time after a rotation, \
             so keep a copy of the JWKS to verify old envelopes with --jwks FILE"
        ),
        AttestError::BadSignature { .. } => "do not trust this envelope: it was changed after \
                                             Warrant signed it, or forged"
            .to_owned(),
        AttestError::SubjectMismatch { .. } => {
            "this approval is for another commit or artifact: request an approval for this one"
                .to_owned()
        }
        AttestError::InvalidSubject { .. } | AttestError::Internal(_) => String::new(),
    };
    let user = UserError::new(format!("attestation refused: {err}"));
    if hint.is_empty() {
        user.into()
    } else {
        user.hint(hint).into()
    }
}

fn print(format: OutputFormat, v: &Verified, source: &str) -> anyhow::Result<()> {
    let statement = &v.statement;
    let p = &statement.predicate;
    let subjects: Vec<String> = statement
        .subject
        .iter()
        .map(|d| {
            let digests = Subject::describe(d).join(", ");
            if d.name.is_empty() {
                digests
            } else {
                format!("{digests} ({})", d.name)
            }
        })
        .collect();
    match format {
        OutputFormat::Json => output::json(&json!({
            "valid": true,
            "keyid": v.keyid,
            "jwks": source,
            "matched": v.matched,
            "statement": statement,
        })),
        OutputFormat::Table => {
            output::text_line(&format!(
                "attestation valid: approval {} for `{}` on {} `{}`, signed by key {}",
                p.approval_id, p.action, p.resource.kind, p.resource.id, v.keyid
            ))?;
            let approvers: Vec<String> = p
                .approvers
                .iter()
                .map(|a| format!("{} at {}: {}", a.name, output::time(a.at), a.reason))
                .collect();
            let mut rows = vec![
                (
                    "matched subject",
                    output::or_dash(v.matched.as_ref().map(ToString::to_string)),
                ),
                ("subjects", subjects.join("\n")),
                ("action", p.action.clone()),
                ("resource", format!("{} {}", p.resource.kind, p.resource.id)),
                ("approvers", approvers.join("\n")),
                ("quorum", p.quorum.to_string()),
                ("task", p.task.clone()),
                ("agent", p.agent.clone()),
                ("delegator", p.delegator.clone()),
            ];
            if let Some(run) = &p.run {
                rows.push(("run", run.clone()));
            }
            rows.extend([
                ("requested at", output::time(p.requested_at)),
                ("approved at", output::time(p.approved_at)),
                ("expires at", output::time(p.expires_at)),
                ("request hash", p.request_hash.clone()),
                ("policies", output::joined(&p.policies)),
            ]);
            output::table(&output::details(rows))
        }
    }
}
