//! Least privilege from evidence: policy suggested from audit logs, a
//! replay of logged requests under a candidate policy, drift between two
//! windows of traffic, and the observed call graph.
//!
//! Every tool streams JSON-lines audit files (the records of
//! [`JsonLinesAuditWriter`](crate::audit::JsonLinesAuditWriter)) through an
//! [`AuditReader`]: memory is bounded by the longest line and the number of
//! distinct callers, routes and targets, not by the length of the logs.
//! Bad lines (not JSON, unknown fields, a newer `format`, a caller that is
//! not a SPIFFE ID) are counted with their file and line number in a
//! [`ReadReport`] and skipped, never a panic.
//!
//! | tool | answers |
//! |---|---|
//! | [`Suggester`] | the narrowest policy allowing every request the logs show as allowed or would-deny |
//! | [`Replayer`] | what a candidate policy would change: newly denied, newly allowed, unchanged |
//! | [`DriftDetector`] | callers reaching targets or routes they never reached in a baseline window |
//! | [`CallGraph`] | who calls whom, as SVG (drawn here, no external tool), DOT or Mermaid |
//!
//! Audit files are untrusted input: every ID, path and name from them is
//! escaped for the format it is written into.
//!
//! # Examples
//!
//! ```
//! use zt_authz::evidence::{AuditReader, Replayer, Suggester, SuggestOptions};
//! use zt_authz::policy::Policy;
//!
//! let log = br#"{"time":"2026-11-23T10:00:00.000Z","caller":"spiffe://example.org/orders","target":"ledger","method":"GET","path":"/entries/7","route":"/entries/{id}","decision":"would-deny","reason":"no-matching-rule","policy_version":"v1"}
//! "#;
//! let mut suggester = Suggester::new(SuggestOptions::default());
//! let mut reader = AuditReader::new();
//! reader.read("audit.jsonl", &log[..], |r| suggester.observe(r))?;
//! let suggestion = suggester.finish()?;
//! let policy = Policy::from_toml_str(&suggestion.toml, "suggested.toml")?;
//! assert!(policy.lint().is_empty());
//!
//! let mut replayer = Replayer::new(policy);
//! let mut reader = AuditReader::new();
//! reader.read("audit.jsonl", &log[..], |r| replayer.observe(r))?;
//! let report = replayer.finish();
//! assert_eq!(report.newly_denied, 0);
//! assert_eq!(report.unchanged, 1); // served before, still allowed
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod drift;
mod error;
mod graph;
mod intern;
mod reader;
mod replay;
mod suggest;

pub use crate::audit::AUDIT_FORMAT;
pub use drift::{DriftDetector, DriftFinding, DriftKind, DriftReport};
pub use error::{EvidenceError, IssueKind, LineIssue};
pub use graph::{CallGraph, GraphEdge, GraphNode};
pub use intern::Interner;
pub use reader::{AuditReader, CallerKey, DEFAULT_MAX_LINE, KEPT_ISSUES, ReadReport, Record};
pub use replay::{ChangeGroup, Disagreement, ReplayReport, Replayer};
pub use suggest::{SuggestOptions, Suggester, Suggestion};

/// Text from an audit file made safe for a one-line message: control
/// characters become `?`, and it is cut to `max` characters.
pub(crate) fn clean(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// The action of a record as people read it: `GET /entries/{id}` (the
/// route when there is one), or the gRPC method.
pub(crate) fn action_label(
    method: &str,
    path: &str,
    route: Option<&str>,
    grpc: Option<&str>,
) -> String {
    match grpc {
        Some(grpc) => clean(grpc, 200),
        None => format!(
            "{} {}",
            clean(method, 16),
            clean(route.unwrap_or(path), 200)
        ),
    }
}

/// A timestamp from an audit line, kept inline (no allocation per line):
/// RFC 3339 with milliseconds is 24 bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    len: u8,
    bytes: [u8; 40],
}

impl Stamp {
    /// The first 40 bytes of `text`, cut at a character boundary.
    pub(crate) fn of(text: &str) -> Self {
        let mut end = text.len().min(40);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; 40];
        if let (Some(to), Some(from)) = (bytes.get_mut(..end), text.as_bytes().get(..end)) {
            to.copy_from_slice(from);
        }
        Self {
            // `end` is at most 40.
            len: u8::try_from(end).unwrap_or(0),
            bytes,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        self.bytes
            .get(..usize::from(self.len))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

/// How often, when and where something was seen in the logs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    pub(crate) count: u64,
    pub(crate) first: Stamp,
    pub(crate) last: Stamp,
    /// The source (an index into the tool's interner of file names) and
    /// line of the first sighting.
    pub(crate) first_source: u32,
    pub(crate) first_line: u64,
}

impl Seen {
    pub(crate) fn new(time: &str, source: u32, line: u64) -> Self {
        let stamp = Stamp::of(time);
        Self {
            count: 1,
            first: stamp,
            last: stamp,
            first_source: source,
            first_line: line,
        }
    }

    /// Counts one more sighting at `time` (RFC 3339 times in UTC compare as
    /// text).
    pub(crate) fn add(&mut self, time: &str) {
        self.count += 1;
        if time.is_empty() {
            return;
        }
        if self.first.as_str().is_empty() || time < self.first.as_str() {
            self.first = Stamp::of(time);
        }
        if time > self.last.as_str() {
            self.last = Stamp::of(time);
        }
    }

    pub(crate) fn merge(&mut self, other: &Seen) {
        self.count += other.count;
        if !other.first.as_str().is_empty()
            && (self.first.as_str().is_empty() || other.first.as_str() < self.first.as_str())
        {
            self.first = other.first;
        }
        if other.last.as_str() > self.last.as_str() {
            self.last = other.last;
        }
    }
}
