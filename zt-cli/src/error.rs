//! The error every command returns, and the exit code it maps to.

use std::fmt;
use std::path::Path;
use std::process::ExitCode;

use zt_dev::FakeCaError;

/// Exit code of a check that ran and said no (a rejected SVID or token, an
/// ID that does not match `--expect`), or of an operation that failed.
pub(crate) const EXIT_FAILURE: u8 = 1;

/// Exit code of a usage error or an unreadable input file (clap uses the
/// same code for bad arguments).
pub(crate) const EXIT_USAGE: u8 = 2;

/// A failure to report on stderr as `error: <message>`.
#[derive(Debug)]
pub(crate) struct CliError {
    code: u8,
    message: String,
}

impl CliError {
    /// A check that ran and failed, or an operation that failed (exit 1).
    pub(crate) fn failure(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_FAILURE,
            message: message.into(),
        }
    }

    /// A check that ran, said no and has printed its answer on standard
    /// output (a denied request, a policy with warnings): exit 1, with
    /// nothing more on standard error.
    pub(crate) fn answered_no() -> Self {
        Self {
            code: EXIT_FAILURE,
            message: String::new(),
        }
    }

    /// `true` if the answer is already printed and there is nothing to
    /// report on standard error.
    pub(crate) fn is_answered(&self) -> bool {
        self.message.is_empty()
    }

    /// A usage error or unusable input (exit 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// A file that could not be read or written (exit 2).
    pub(crate) fn io(path: &Path, error: &std::io::Error) -> Self {
        Self::usage(format!("`{}`: {error}", path.display()))
    }

    /// The process exit code for this error.
    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<FakeCaError> for CliError {
    /// Bad requests and unreadable CA directories are usage errors; failures
    /// of the CA itself are not.
    fn from(e: FakeCaError) -> Self {
        match e {
            FakeCaError::WrongTrustDomain { .. }
            | FakeCaError::InvalidTtl { .. }
            | FakeCaError::NoAudience
            | FakeCaError::Io { .. }
            | FakeCaError::Store { .. } => Self::usage(e.to_string()),
            _ => Self::failure(e.to_string()),
        }
    }
}

/// The result of a command.
pub(crate) type CliResult<T = ()> = Result<T, CliError>;
