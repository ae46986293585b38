//! The SSH engine's revoked serials, kept in memory and in an append-only
//! file (`<serial> <valid_before>` per line, fsync'ed before `revoke`
//! returns) so that a restart serves the same KRL.
//!
//! A serial stays listed until its certificate has been expired for
//! [`KEEP_AFTER_EXPIRY_SECS`]: after that `sshd` refuses the certificate on
//! its validity alone, and dropping it keeps the KRL from growing forever.
//! The margin covers an `sshd` host whose clock is behind Warrant's.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// How long a serial stays in the KRL after its certificate expired.
pub(super) const KEEP_AFTER_EXPIRY_SECS: i64 = 3600;

#[derive(Debug)]
pub(super) struct RevokedSerials {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// serial -> the certificate's `valid_before` (seconds since the epoch;
    /// `i64::MAX` when unknown).
    serials: BTreeMap<u64, i64>,
    /// The KRL version: increases with every change, and starts at the
    /// current time so that it also increases across restarts.
    version: u64,
    file: File,
}

fn still_listed(valid_before: i64, now: i64) -> bool {
    valid_before.saturating_add(KEEP_AFTER_EXPIRY_SECS) >= now
}

impl RevokedSerials {
    /// Loads the file (creating it, 0600, when missing) and rewrites it
    /// without the serials no longer listed and without a torn last line
    /// (a crash during an append: that `revoke` never returned, so the
    /// lease manager retries it).
    pub(super) fn open(path: &Path, now: i64) -> Result<Self, String> {
        let shown = path.display();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("cannot read `{shown}`: {e}")),
        };
        let mut serials = BTreeMap::new();
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        let mut dirty = complete.len() != text.len();
        for (n, line) in complete.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (serial, valid_before) = parse_line(line).ok_or_else(|| {
                format!(
                    "`{shown}` line {}: expected `<serial> <valid_before>`",
                    n + 1
                )
            })?;
            if still_listed(valid_before, now) {
                let v = serials.entry(serial).or_insert(valid_before);
                *v = (*v).max(valid_before);
            } else {
                dirty = true;
            }
        }
        if dirty {
            let mut body = String::new();
            for (s, vb) in &serials {
                body.push_str(&format!("{s} {vb}\n"));
            }
            super::write_atomically(path, body.as_bytes(), true)
                .map_err(|e| format!("cannot rewrite `{shown}`: {e}"))?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("cannot open `{shown}`: {e}"))?;
        Ok(Self {
            path: path.to_owned(),
            inner: Mutex::new(Inner {
                serials,
                version: u64::try_from(now).unwrap_or(0),
                file,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated
        // (the insert is the last step), so the data is still good.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn contains(&self, serial: u64) -> bool {
        self.lock().serials.contains_key(&serial)
    }

    /// Records `serial` durably. Returns once the line is on disk.
    pub(super) fn add(&self, serial: u64, valid_before: i64, now: i64) -> Result<(), String> {
        let mut inner = self.lock();
        if inner
            .serials
            .get(&serial)
            .is_some_and(|vb| *vb >= valid_before)
        {
            return Ok(());
        }
        let line = format!("{serial} {valid_before}\n");
        inner
            .file
            .write_all(line.as_bytes())
            .and_then(|()| inner.file.sync_data())
            .map_err(|e| format!("cannot append to `{}`: {e}", self.path.display()))?;
        inner.serials.insert(serial, valid_before);
        inner.version = inner
            .version
            .saturating_add(1)
            .max(u64::try_from(now).unwrap_or(0));
        Ok(())
    }

    /// The KRL version and the serials to list at `now`.
    pub(super) fn snapshot(&self, now: i64) -> (u64, Vec<u64>) {
        let inner = self.lock();
        let serials = inner
            .serials
            .iter()
            .filter(|(_, vb)| still_listed(**vb, now))
            .map(|(s, _)| *s)
            .collect();
        (inner.version, serials)
    }
}

fn parse_line(line: &str) -> Option<(u64, i64)> {
    let mut parts = line.split_ascii_whitespace();
    let serial = parts.next()?.parse::<u64>().ok().filter(|s| *s != 0)?;
    let valid_before = match parts.next() {
        Some(v) => v.parse::<i64>().ok()?,
        None => i64::MAX,
    };
    parts.next().is_none().then_some((serial, valid_before))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_survive_a_reopen_and_expired_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked");
        let r = RevokedSerials::open(&path, 1000).unwrap();
        r.add(5, 2000, 1000).unwrap();
        r.add(6, 1100, 1000).unwrap();
        r.add(5, 2000, 1000).unwrap(); // idempotent: no second line
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "5 2000\n6 1100\n");
        assert_eq!(r.snapshot(1000).1, vec![5, 6]);
        drop(r);

        // 6 expired at 1100 and is kept for an hour after that.
        let r = RevokedSerials::open(&path, 1100 + KEEP_AFTER_EXPIRY_SECS).unwrap();
        assert_eq!(r.snapshot(1100 + KEEP_AFTER_EXPIRY_SECS).1, vec![5, 6]);
        drop(r);
        let later = 1101 + KEEP_AFTER_EXPIRY_SECS;
        let r = RevokedSerials::open(&path, later).unwrap();
        assert_eq!(r.snapshot(later).1, vec![5]);
        assert!(r.contains(5) && !r.contains(6));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "5 2000\n");
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_a_corrupt_line_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked");
        std::fs::write(&path, "7 5000\n8 50").unwrap();
        let r = RevokedSerials::open(&path, 1000).unwrap();
        assert_eq!(r.snapshot(1000).1, vec![7]);
        r.add(9, 5000, 1000).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "7 5000\n9 5000\n");
        drop(r);

        std::fs::write(&path, "7 5000\nseven\n").unwrap();
        let err = RevokedSerials::open(&path, 1000).unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }
}
