//! The one error type every command returns.
//!
//! An error is a one-line statement of what happened, an optional `hint:` line with the command
//! that fixes it, and the exit code (1 for runtime failures, 2 for a wrong command line). Messages
//! name *where* (slot, file, field) and never *what*: no secret value is ever formatted into one.

use std::fmt;
use std::io;
use std::path::Path;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit code for a runtime failure: missing, expired, refused, I/O.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a command line that cannot be carried out as written.
pub const EXIT_USAGE: u8 = 2;

/// An error's message followed by its causes, e.g. "client error (Connect): tcp connect
/// error: Connection refused". For errors of libraries that speak of addresses and
/// certificates, never of the secrets they carry.
pub fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[derive(Debug)]
pub struct Error {
    message: String,
    hint: Option<String>,
    code: u8,
    broken_pipe: bool,
}

impl Error {
    /// A runtime failure (exit 1).
    pub fn failure(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
            code: EXIT_FAILURE,
            broken_pipe: false,
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            ..Self::failure(message)
        }
    }

    /// An I/O failure on `path`, e.g. `io("cannot read", path, err)`.
    pub fn io(action: &str, path: &Path, err: io::Error) -> Self {
        let reason = match err.kind() {
            io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            io::ErrorKind::NotFound => "no such file or directory".to_string(),
            _ => strip_os_code(&err.to_string()),
        };
        Self::failure(format!("{action} {}: {reason}", path.display()))
    }

    /// Writing to stdout failed because the reader went away: a clean exit, not an error.
    pub fn from_stdout(err: io::Error) -> Self {
        let broken_pipe = err.kind() == io::ErrorKind::BrokenPipe;
        Self {
            broken_pipe,
            ..Self::failure(format!("cannot write to standard output: {err}"))
        }
    }

    /// The same failure with another exit code, e.g. 127 for a command that does not exist.
    pub fn with_exit_code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    pub fn exit_code(&self) -> u8 {
        self.code
    }

    pub fn is_broken_pipe(&self) -> bool {
        self.broken_pipe
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// `Permission denied (os error 13)` reads better without the trailing code.
fn strip_os_code(text: &str) -> String {
    match text.find(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text.to_string(),
    }
}
