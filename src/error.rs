//! Errors that carry an exit code and an optional `hint:` line to the command edge.
//!
//! Modules return their own `thiserror` enums; commands wrap them in `anyhow` with context.
//! A [`UserError`] anywhere in the chain decides the exit code (2 for usage, 1 otherwise) and
//! supplies the hint that `main` prints under the error. Messages never contain secrets.

use std::fmt;

/// How a failure maps to the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Bad input on the command line or in a file the user wrote: exit 2.
    Usage,
    /// Anything that went wrong while doing the work: exit 1.
    Runtime,
}

impl ExitKind {
    pub fn code(self) -> u8 {
        match self {
            ExitKind::Usage => 2,
            ExitKind::Runtime => 1,
        }
    }
}

/// An error meant for a person: a message, an exit kind and, where a fix exists, a hint.
#[derive(Debug)]
pub struct UserError {
    pub message: String,
    pub hint: Option<String>,
    pub kind: ExitKind,
}

impl UserError {
    /// Bad input: exit code 2.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
            kind: ExitKind::Usage,
        }
    }

    /// A failure while doing the work: exit code 1.
    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
            kind: ExitKind::Runtime,
        }
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}

/// Finds the first [`UserError`] in an error chain.
pub fn find_user_error(err: &anyhow::Error) -> Option<&UserError> {
    err.chain().find_map(|e| e.downcast_ref::<UserError>())
}

/// The exit code for an error chain: the first [`UserError`]'s kind, else runtime.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    find_user_error(err)
        .map_or(ExitKind::Runtime, |e| e.kind)
        .code()
}

/// The `hint:` for an error chain: that of the first [`UserError`], or of the first error
/// `other` knows (modules above this one bring their own error types, e.g.
/// [`crate::secrets::hint`]).
pub fn hint_with(
    err: &anyhow::Error,
    other: impl Fn(&(dyn std::error::Error + 'static)) -> Option<Option<String>>,
) -> Option<String> {
    err.chain()
        .find_map(|e| match e.downcast_ref::<UserError>() {
            Some(u) => Some(u.hint.clone()),
            None => other(e),
        })?
}
