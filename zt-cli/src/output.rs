//! Writing to stdout and stderr without panicking when they are closed.

use std::io::Write as _;

use crate::error::{CliError, CliResult};

/// Writes `text` to standard output (adding a final newline if missing) and
/// flushes it.
pub(crate) fn emit(text: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    let newline = if text.ends_with('\n') { "" } else { "\n" };
    out.write_all(text.as_bytes())
        .and_then(|()| out.write_all(newline.as_bytes()))
        .and_then(|()| out.flush())
        .map_err(|e| CliError::failure(format!("cannot write to standard output: {e}")))
}

/// Writes one line to standard error; a closed stderr is ignored, as there
/// is nowhere left to report it.
pub(crate) fn warn_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
