//! What an approval is for: a git commit or a SHA-256 digest, written
//! `sha1:<40 hex>` or `sha256:<64 hex>` on the command line.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{AttestError, shown};
use crate::statement::ResourceDescriptor;

/// The in-toto digest-set key for a git commit id ("gitCommit" in the
/// in-toto attestation spec's digest set).
const GIT_COMMIT_KEY: &str = "gitCommit";
/// The digest-set key a git commit may also appear under in statements
/// made by other tools (SHA-1 is what a git commit id is).
const SHA1_KEY: &str = "sha1";
const SHA256_KEY: &str = "sha256";

/// The kind of digest a [`Subject`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlg {
    /// A git commit id: SHA-1, 40 hex digits. Written `sha1:<hex>`; in a
    /// statement, as the digest-set entry `"gitCommit"` (statements from
    /// other tools that use `"sha1"` for it also match).
    GitCommit,
    /// A SHA-256 digest of an artifact (a container image manifest, a
    /// release archive), 64 hex digits. Written `sha256:<hex>`.
    Sha256,
}

impl DigestAlg {
    /// The prefix used on the command line: `sha1` or `sha256`.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::GitCommit => "sha1",
            Self::Sha256 => "sha256",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Self::GitCommit => 40,
            Self::Sha256 => 64,
        }
    }
}

/// One artifact an approval can be bound to: an algorithm and a lowercase
/// hex digest of exactly the algorithm's length.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    alg: DigestAlg,
    hex: String,
}

impl Subject {
    /// Parses `sha1:<40 hex>` (a git commit; `gitCommit:<40 hex>` is read
    /// the same) or `sha256:<64 hex>`. The hex must be lowercase and of
    /// exactly that length: a prefix of a commit id does not name it.
    pub fn parse(input: &str) -> Result<Self, AttestError> {
        let invalid = |why| AttestError::InvalidSubject {
            input: shown(input),
            why,
        };
        let (prefix, hex) = input
            .split_once(':')
            .ok_or_else(|| invalid("write it as `sha1:<git commit>` or `sha256:<digest>`"))?;
        let alg = match prefix {
            "sha1" | GIT_COMMIT_KEY => DigestAlg::GitCommit,
            "sha256" => DigestAlg::Sha256,
            _ => return Err(invalid("the algorithm must be `sha1` or `sha256`")),
        };
        Self::new(alg, hex).map_err(invalid)
    }

    /// A git commit by its 40-hex-digit id.
    pub fn git_commit(hex: &str) -> Result<Self, AttestError> {
        Self::parse(&format!("sha1:{hex}"))
    }

    /// A SHA-256 digest, given as 64 hex digits.
    pub fn sha256_hex(hex: &str) -> Result<Self, AttestError> {
        Self::parse(&format!("sha256:{hex}"))
    }

    /// A SHA-256 digest, given as bytes.
    pub fn sha256(digest: &[u8; 32]) -> Self {
        let hex = digest.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            alg: DigestAlg::Sha256,
            hex,
        }
    }

    fn new(alg: DigestAlg, hex: &str) -> Result<Self, &'static str> {
        if hex.len() != alg.hex_len() {
            return Err(match alg {
                DigestAlg::GitCommit => "a git commit id is exactly 40 hex digits",
                DigestAlg::Sha256 => "a SHA-256 digest is exactly 64 hex digits",
            });
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err("the digest must be lowercase hex (0-9, a-f)");
        }
        Ok(Self {
            alg,
            hex: hex.to_owned(),
        })
    }

    pub fn alg(&self) -> DigestAlg {
        self.alg
    }

    /// The digest as lowercase hex.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The in-toto subject entry for this artifact under `name` (a
    /// repository, an image name; informational only).
    pub fn descriptor(&self, name: impl Into<String>) -> ResourceDescriptor {
        let key = match self.alg {
            DigestAlg::GitCommit => GIT_COMMIT_KEY,
            DigestAlg::Sha256 => SHA256_KEY,
        };
        ResourceDescriptor {
            name: name.into(),
            digest: BTreeMap::from([(key.to_owned(), self.hex.clone())]),
        }
    }

    /// Whether `descriptor`'s digest set names this artifact. Only the
    /// digest counts, never the name.
    pub fn matches(&self, descriptor: &ResourceDescriptor) -> bool {
        let keys: &[&str] = match self.alg {
            DigestAlg::GitCommit => &[GIT_COMMIT_KEY, SHA1_KEY],
            DigestAlg::Sha256 => &[SHA256_KEY],
        };
        keys.iter()
            .any(|k| descriptor.digest.get(*k).is_some_and(|v| *v == self.hex))
    }

    /// The subjects a descriptor names, in the `alg:hex` form, for
    /// messages. Digest entries Warrant does not know are shown as they
    /// are (escaped and bounded: they come from the envelope).
    pub fn describe(descriptor: &ResourceDescriptor) -> Vec<String> {
        descriptor
            .digest
            .iter()
            .map(|(alg, hex)| match Self::parse(&format!("{alg}:{hex}")) {
                Ok(s) => s.to_string(),
                Err(_) => format!("{}:{}", shown(alg), shown(hex)),
            })
            .collect()
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.alg.prefix(), self.hex)
    }
}

impl FromStr for Subject {
    type Err = AttestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Subject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    const DIGEST: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn subjects_parse_and_print_back() {
        let s = Subject::parse(&format!("sha1:{COMMIT}")).unwrap();
        assert_eq!(s.alg(), DigestAlg::GitCommit);
        assert_eq!(s.to_string(), format!("sha1:{COMMIT}"));
        let g = Subject::parse(&format!("gitCommit:{COMMIT}")).unwrap();
        assert_eq!(g, s);
        let d = Subject::parse(&format!("sha256:{DIGEST}")).unwrap();
        assert_eq!(d.alg(), DigestAlg::Sha256);
        assert_eq!(d.hex(), DIGEST);
        let bytes: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(
            Subject::sha256(&bytes).to_string(),
            "sha256:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        );
    }

    #[test]
    fn subjects_are_strict() {
        let bad = [
            COMMIT.to_owned(),                                   // no algorithm
            format!("sha1:{}", &COMMIT[..39]),                   // short
            format!("sha1:{COMMIT}0"),                           // long
            format!("sha1:{}", COMMIT.to_uppercase()),           // uppercase
            format!("sha256:{COMMIT}"),                          // wrong length for alg
            format!("sha1:{}", &DIGEST[..40]).replace('e', "g"), // not hex
            format!("md5:{COMMIT}"),                             // unknown alg
            format!("SHA1:{COMMIT}"),                            // alg is case-sensitive
            format!("sha1: {}", &COMMIT[..39]),                  // whitespace
            String::new(),
        ];
        for input in bad {
            let err = Subject::parse(&input).unwrap_err();
            assert!(
                matches!(err, AttestError::InvalidSubject { .. }),
                "{input}: {err}"
            );
        }
    }

    #[test]
    fn git_commits_match_git_commit_and_sha1_digests_only() {
        let s = Subject::git_commit(COMMIT).unwrap();
        let mine = s.descriptor("acme/api");
        assert_eq!(
            mine.digest.get("gitCommit").map(String::as_str),
            Some(COMMIT)
        );
        assert!(s.matches(&mine));
        let other_tool = ResourceDescriptor {
            name: String::new(),
            digest: BTreeMap::from([("sha1".to_owned(), COMMIT.to_owned())]),
        };
        assert!(s.matches(&other_tool));
        // The same hex under another algorithm is another artifact.
        let sha256 = ResourceDescriptor {
            name: "acme/api".into(),
            digest: BTreeMap::from([("sha256".to_owned(), COMMIT.to_owned())]),
        };
        assert!(!s.matches(&sha256));
        let other = Subject::git_commit(&COMMIT.replace('0', "f")).unwrap();
        assert!(!other.matches(&mine));
    }
}
