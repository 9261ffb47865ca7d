//! Errors of the evidence tools, and the problems found in audit lines.

use std::fmt;
use std::sync::Arc;

/// Why an evidence tool could not finish. Problems with single audit lines
/// are not errors: they are counted as [`LineIssue`]s and the line is
/// skipped (or, for an unknown field, read without it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// An audit file could not be read.
    #[error("`{source_name}`: cannot read: {error}; check the path and permissions")]
    Io {
        /// The file (or `<stdin>`).
        source_name: Arc<str>,
        /// What the operating system said.
        #[source]
        error: std::io::Error,
    },
    /// The logs hold decisions of several services and no target was
    /// chosen; a policy belongs to one service.
    #[error(
        "the audit lines hold decisions of {} services ({}); a policy is per service: choose one \
         with --target",
        targets.len(),
        targets.join(", ")
    )]
    SeveralTargets {
        /// The targets found, sorted.
        targets: Vec<String>,
    },
    /// The suggested policy did not compile. This is a defect of the
    /// suggester, reported rather than written out.
    #[error("the suggested policy does not compile: {0}")]
    Suggested(#[source] crate::policy::PolicyError),
}

/// What was wrong with one audit line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssueKind {
    /// Not a JSON object of the audit format (the parser's message).
    Malformed(String),
    /// A field this reader does not know; the line is read without it.
    UnknownField(String),
    /// The line declares a newer `format` than this reader knows; skipped.
    NewerFormat(u64),
    /// A field has a value this reader cannot use (a caller that is not a
    /// SPIFFE ID, an unknown decision); skipped.
    BadValue {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The line is longer than the reader's limit; skipped.
    TooLong {
        /// The limit, in bytes.
        limit: usize,
    },
}

impl IssueKind {
    /// A short, stable name: `malformed`, `unknown-field`, `newer-format`,
    /// `bad-value` or `too-long`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnknownField(_) => "unknown-field",
            Self::NewerFormat(_) => "newer-format",
            Self::BadValue { .. } => "bad-value",
            Self::TooLong { .. } => "too-long",
        }
    }

    /// `true` if the line was still read (an unknown field).
    pub fn line_was_read(&self) -> bool {
        matches!(self, Self::UnknownField(_))
    }
}

/// One problem in one audit line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LineIssue {
    /// The file (or `<stdin>`).
    pub source_name: Arc<str>,
    /// The line number, from 1.
    pub line: u64,
    /// What was wrong.
    pub kind: IssueKind,
}

impl fmt::Display for LineIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.source_name, self.line)?;
        match &self.kind {
            IssueKind::Malformed(message) => {
                write!(f, "not an audit record ({})", super::clean(message, 200))
            }
            IssueKind::UnknownField(name) => write!(
                f,
                "unknown field `{}`; read without it (a newer writer?)",
                super::clean(name, 64)
            ),
            IssueKind::NewerFormat(format) => write!(
                f,
                "audit format {format} is newer than {} (this reader's); skipped: upgrade zt",
                super::AUDIT_FORMAT
            ),
            IssueKind::BadValue { field, reason } => {
                write!(f, "field `{field}`: {}; skipped", super::clean(reason, 200))
            }
            IssueKind::TooLong { limit } => {
                write!(f, "longer than {limit} bytes; skipped")
            }
        }
    }
}
