//! How errors reach the user: `error: <what>` and, where there is an
//! obvious fix, `hint: <how>` on stderr, then a non-zero exit code.

use std::io::Write as _;
use std::process::ExitCode;

use crate::client::ClientError;

/// A failure the user can fix, with the fix.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UserError {
    message: String,
    hint: Option<String>,
}

impl UserError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Prints `err` and picks the exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    // Output piped into `head` and closed early: not worth a message.
    let broken_pipe = err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return ExitCode::SUCCESS;
    }
    let hint = err.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<UserError>() {
            return e.hint.clone();
        }
        cause
            .downcast_ref::<ClientError>()
            .and_then(ClientError::hint)
    });
    let mut stderr = std::io::stderr().lock();
    // Nothing sensible is left to do if stderr itself is gone.
    let _ = writeln!(stderr, "error: {err:#}");
    if let Some(hint) = hint {
        let _ = writeln!(stderr, "hint: {hint}");
    }
    ExitCode::FAILURE
}
