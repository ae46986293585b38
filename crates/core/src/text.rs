//! Free text a caller writes (a task's purpose, a ticket, an end note, an
//! agent's description): any printable Unicode, bounded in length.

use crate::CoreError;

/// Checks free text: at most `max_len` characters (Unicode scalar values)
/// and no control characters except line feed and tab.
///
/// NUL in particular is refused: PostgreSQL cannot store it in `TEXT`, so
/// the same input must not be accepted on one backend and refused on the
/// other. Carriage returns, escapes and the other C0/C1 controls are
/// refused because they can rewrite what a terminal shows of the audit log.
pub fn validate_text(what: &'static str, s: &str, max_len: usize) -> Result<(), CoreError> {
    let len = s.chars().count();
    if len > max_len {
        return Err(CoreError::TooLong {
            what,
            len,
            max: max_len,
        });
    }
    if let Some((at, c)) = s
        .chars()
        .enumerate()
        .find(|&(_, c)| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(CoreError::ControlCharacter {
            what,
            character: c.escape_unicode().to_string(),
            position: at + 1,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_text;
    use crate::CoreError;

    #[test]
    fn printable_text_with_newlines_and_tabs_is_accepted() {
        for ok in [
            "",
            "fix the flaky test",
            "line 1\nline 2\tend",
            "été ✓ 東京",
        ] {
            assert_eq!(validate_text("purpose", ok, 500), Ok(()), "{ok:?}");
        }
        // Length counts characters, not bytes.
        assert_eq!(validate_text("purpose", "ééé", 3), Ok(()));
    }

    // NUL made PostgreSQL refuse the insert (503 there, accepted on SQLite).
    #[test]
    fn nul_and_other_control_characters_are_refused() {
        for bad in ["a\0b", "a\rb", "\u{1b}[2J", "a\u{7f}", "a\u{85}b", "\u{0}"] {
            let err = validate_text("purpose", bad, 500).unwrap_err();
            assert!(
                matches!(
                    err,
                    CoreError::ControlCharacter {
                        what: "purpose",
                        ..
                    }
                ),
                "{bad:?}: {err:?}"
            );
        }
        let msg = validate_text("note", "ab\0", 500).unwrap_err().to_string();
        assert_eq!(
            msg,
            "`note` holds the control character \\u{0} at character 3: only printable text, line feeds and tabs are allowed"
        );
    }

    #[test]
    fn overlong_text_is_refused() {
        let err = validate_text("ticket", &"x".repeat(201), 200).unwrap_err();
        assert_eq!(
            err,
            CoreError::TooLong {
                what: "ticket",
                len: 201,
                max: 200
            }
        );
        assert_eq!(
            err.to_string(),
            "`ticket` is 201 characters long: at most 200 are allowed"
        );
    }
}
