//! `--output json|table`. Tables for people (the default on a terminal),
//! JSON with the API's own field names for scripts (the default otherwise).

use std::io::{IsTerminal as _, Write as _};

use comfy_table::{ContentArrangement, Table, presets};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Table,
}

impl OutputFormat {
    /// The flag's value, else table on a terminal and JSON otherwise.
    pub fn resolve(flag: Option<Self>) -> Self {
        flag.unwrap_or_else(|| {
            if std::io::stdout().is_terminal() {
                OutputFormat::Table
            } else {
                OutputFormat::Json
            }
        })
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn json(value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    text_line(&text)
}

/// Prints `text` and a newline on stdout, flushed.
pub fn text_line(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// A table with one row per item and a header row.
pub fn list(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.iter().map(|h| h.to_uppercase()));
    t
}

/// A two-column table of one item's fields.
pub fn details(rows: Vec<(&str, String)>) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic);
    for (k, v) in rows {
        t.add_row(vec![k.to_owned(), v]);
    }
    t
}

pub fn table(t: &Table) -> anyhow::Result<()> {
    // The borderless preset pads every cell, the last one too.
    let text: Vec<String> = t.lines().map(|line| line.trim_end().to_owned()).collect();
    text_line(&text.join("\n"))
}

/// A point in time to the second, in UTC.
pub fn time(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// A point in time and how far it is from now (`in 29m 59s`, `3m ago`).
pub fn time_relative(ts: Timestamp, now: Timestamp) -> String {
    let d = SignedDuration::from_secs(ts.duration_since(now).as_secs());
    if d.is_zero() {
        format!("{} (now)", time(ts))
    } else if d.is_negative() {
        format!("{} ({:#} ago)", time(ts), d.abs())
    } else {
        format!("{} (in {:#})", time(ts), d)
    }
}

pub fn or_dash(v: Option<impl ToString>) -> String {
    v.map(|v| v.to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

/// A list of strings on one line, `-` when empty.
pub fn joined<T: AsRef<str>>(items: &[T]) -> String {
    if items.is_empty() {
        return "-".to_owned();
    }
    items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let later: Timestamp = "2026-01-01T00:30:00.4Z".parse().unwrap();
        assert_eq!(time_relative(later, now), "2026-01-01 00:30:00Z (in 30m)");
        assert_eq!(time_relative(now, later), "2026-01-01 00:00:00Z (30m ago)");
    }

    #[test]
    fn empty_values_show_a_dash() {
        assert_eq!(or_dash(None::<&str>), "-");
        assert_eq!(or_dash(Some("")), "-");
        assert_eq!(joined::<&str>(&[]), "-");
        assert_eq!(joined(&["a", "b"]), "a, b");
    }
}
