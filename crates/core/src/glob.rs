//! Globs as a task's scope writes them for branches (`main`, `feature/*`,
//! `release/**`) and as policies single out paths (`.github/workflows/**`):
//! `*` matches any run of characters within one path segment, `**` any run
//! including `/`. Nothing else is special.

/// `true` when `branch` (without `refs/heads/`) matches `glob`. Works the
/// same for `/`-separated file paths.
pub fn branch_glob_matches(glob: &str, branch: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Tok {
        Byte(u8),
        Star,
        DoubleStar,
    }
    let mut toks = Vec::with_capacity(glob.len());
    let g = glob.as_bytes();
    let mut i = 0;
    while i < g.len() {
        if g[i] == b'*' {
            if g.get(i + 1) == Some(&b'*') {
                toks.push(Tok::DoubleStar);
                while g.get(i) == Some(&b'*') {
                    i += 1;
                }
            } else {
                toks.push(Tok::Star);
                i += 1;
            }
        } else {
            toks.push(Tok::Byte(g[i]));
            i += 1;
        }
    }
    // Dynamic programming over (token, byte): linear in their product, so
    // a hostile pattern cannot make matching exponential.
    let b = branch.as_bytes();
    let mut row = vec![false; b.len() + 1];
    row[0] = true;
    for tok in toks {
        let mut next = vec![false; b.len() + 1];
        for j in 0..=b.len() {
            next[j] = match tok {
                Tok::Byte(c) => j > 0 && row[j - 1] && b[j - 1] == c,
                Tok::Star => row[j] || (j > 0 && next[j - 1] && b[j - 1] != b'/'),
                Tok::DoubleStar => row[j] || (j > 0 && next[j - 1]),
            };
        }
        row = next;
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::branch_glob_matches as m;

    #[test]
    fn literal_globs_match_only_themselves() {
        assert!(m("main", "main"));
        assert!(!m("main", "main2"));
        assert!(!m("main", "mai"));
        assert!(!m("main", ""));
    }

    #[test]
    fn a_star_stays_within_one_segment() {
        assert!(m("feature/*", "feature/x"));
        assert!(m("feature/*", "feature/"));
        assert!(!m("feature/*", "feature/x/y"));
        assert!(!m("feature/*", "feat/x"));
        assert!(m("*", "main"));
        assert!(!m("*", "a/b"));
        assert!(m("release-*-rc", "release-1.2-rc"));
    }

    #[test]
    fn a_double_star_crosses_segments() {
        assert!(m("release/**", "release/1/2"));
        assert!(m("**", "a/b/c"));
        assert!(!m("release/**", "hotfix/1"));
    }

    #[test]
    fn hostile_patterns_stay_cheap() {
        let glob = "*a".repeat(100);
        let branch = "a".repeat(199) + "b";
        assert!(!m(&glob, &branch));
    }
}
