use thiserror::Error;

/// Everything an outside caller can get wrong about a domain value.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    #[error("invalid {what} `{value}`: {why}")]
    Invalid {
        what: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("ttl `{value}` is out of bounds: must be between {min} and {max}")]
    TtlOutOfBounds {
        value: String,
        min: String,
        max: String,
    },
    #[error("scope is not a narrowing: {0}")]
    NotNarrowing(String),
    #[error("`{what}` is {len} characters long: at most {max} are allowed")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error(
        "`{what}` holds the control character {character} at character {position}: only printable text, line feeds and tabs are allowed"
    )]
    ControlCharacter {
        what: &'static str,
        /// The character escaped, e.g. `\u{0}`.
        character: String,
        /// 1-based, in characters.
        position: usize,
    },
}
