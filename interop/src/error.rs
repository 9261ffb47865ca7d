//! The harness's error type: every failure says what was attempted and, for
//! SPIRE, ends with the tail of the server and agent logs.

use std::fmt;

/// What went wrong in the harness. The message is meant for a human reading
/// a failed test: it names the step, the command or file, and what to do.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A tool or binary the harness needs is missing or could not be built
    /// (`go`, `spire-server`, `spire-agent`, the Go peers).
    Setup(String),
    /// A command ran but failed, or a process exited when it should not
    /// have. The message holds its output or log tail.
    Command(String),
    /// Something did not happen within its time limit (readiness, an event,
    /// an entry reaching the agent).
    Timeout(String),
    /// A file or process operation failed.
    Io(String),
    /// Output of a command or program could not be understood.
    Parse(String),
}

impl Error {
    /// The message without the variant name.
    #[must_use]
    pub fn message(&self) -> &str {
        match self {
            Self::Setup(m) | Self::Command(m) | Self::Timeout(m) | Self::Io(m) | Self::Parse(m) => {
                m
            }
        }
    }

    pub(crate) fn io(what: impl fmt::Display, err: &std::io::Error) -> Self {
        Self::Io(format!("{what}: {err}"))
    }

    /// The same error with `more` appended on a new line (a log tail, a hint).
    #[must_use]
    pub fn with_detail(self, more: impl fmt::Display) -> Self {
        let add = |m: String| format!("{m}\n{more}");
        match self {
            Self::Setup(m) => Self::Setup(add(m)),
            Self::Command(m) => Self::Command(add(m)),
            Self::Timeout(m) => Self::Timeout(add(m)),
            Self::Io(m) => Self::Io(add(m)),
            Self::Parse(m) => Self::Parse(add(m)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::Setup(_) => "interop setup",
            Self::Command(_) => "interop command",
            Self::Timeout(_) => "interop timeout",
            Self::Io(_) => "interop io",
            Self::Parse(_) => "interop parse",
        };
        write!(f, "{kind}: {}", self.message())
    }
}

// A test returning `Result<(), Error>` prints the error with `Debug`; show
// the readable message (with its log tails) rather than an escaped string.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {}

/// `Result` with the harness's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
