//! Where a rule, an entry or a mistake comes from: the position that
//! errors of policy files, revocation lists and declarations in code point
//! at.

use std::fmt;
use std::sync::Arc;

/// Where a rule or a mistake comes from: a source name (the name of a
/// policy or revocation file, or `<code>` for rules built in code) and, for
/// files, a 1-based line and column.
///
/// `Display` writes `source:line:column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    source: Arc<str>,
    line: Option<u32>,
    column: Option<u32>,
}

impl Origin {
    /// The origin of rules built in code.
    pub fn code() -> Self {
        Self {
            source: Arc::from("<code>"),
            line: None,
            column: None,
        }
    }

    /// The origin of routes checked against declarations.
    pub fn router() -> Self {
        Self {
            source: Arc::from("<router>"),
            line: None,
            column: None,
        }
    }

    /// The origin of a declaration in source code: `file:line`.
    pub fn in_code(file: &str, line: u32) -> Self {
        Self {
            source: Arc::from(file),
            line: Some(line),
            column: None,
        }
    }

    /// The origin of a whole file, with no position.
    pub fn file(source: &str) -> Self {
        Self {
            source: Arc::from(source),
            line: None,
            column: None,
        }
    }

    /// The origin of byte `offset` of `text`, read from `source`.
    pub fn at(source: &Arc<str>, text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = &text.as_bytes()[..offset];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = text
            .get(line_start..offset)
            .map_or(offset - line_start, |s| s.chars().count())
            + 1;
        Self {
            source: Arc::clone(source),
            line: u32::try_from(line).ok(),
            column: u32::try_from(column).ok(),
        }
    }

    /// The source name: a file name, or `<code>`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The 1-based line, for rules read from a file.
    pub fn line(&self) -> Option<u32> {
        self.line
    }

    /// The 1-based column (in characters), for rules read from a file.
    pub fn column(&self) -> Option<u32> {
        self.column
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}
