//! A streaming reader of JSON-lines audit files.
//!
//! Lines are parsed in place from one reused buffer: strings without JSON
//! escapes are borrowed, never copied, and callers' SPIFFE IDs are parsed
//! once per distinct ID and then found by one hash lookup.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::sync::Arc;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::error::{EvidenceError, IssueKind, LineIssue};
use crate::audit::{AUDIT_FORMAT, Verdict};
use zt_core::SpiffeId;

/// The default longest line read, in bytes; longer lines are skipped and
/// reported.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// How many issues a report keeps in full; the rest are only counted.
pub const KEPT_ISSUES: usize = 1000;

/// The index of a caller in an [`AuditReader`]'s table of callers: equal
/// indexes are equal SPIFFE IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallerKey(pub u32);

/// One decision read from an audit line. Borrowed from the reader's buffer
/// for the duration of the callback.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Record<'a> {
    /// The file the line is in.
    pub source_name: &'a str,
    /// Its line number, from 1.
    pub line: u64,
    /// `time` as written (RFC 3339), empty if absent.
    pub time: &'a str,
    /// The caller, if the request had a verified one.
    pub caller: Option<(CallerKey, &'a SpiffeId)>,
    /// The service that decided.
    pub target: &'a str,
    /// The HTTP method.
    pub method: &'a str,
    /// The request path.
    pub path: &'a str,
    /// The route template the router matched.
    pub route: Option<&'a str>,
    /// The gRPC method.
    pub grpc_method: Option<&'a str>,
    /// The end user, if the request carried a user context.
    pub user: Option<&'a str>,
    /// The outcome.
    pub decision: Verdict,
    /// Why ([`DecisionReason::as_str`](crate::policy::DecisionReason::as_str)).
    pub reason: &'a str,
    /// The deciding rule.
    pub rule: Option<&'a str>,
    /// The version of the policy that decided.
    pub policy_version: &'a str,
}

impl Record<'_> {
    /// The caller's SPIFFE ID, if any.
    pub fn caller_id(&self) -> Option<&SpiffeId> {
        self.caller.map(|(_, id)| id)
    }

    /// `true` if the policy (not identity checks or code declarations)
    /// made this decision: the reason is `matched-allow`, `matched-deny`,
    /// `no-matching-rule` or `condition-not-met`.
    pub fn is_policy_decision(&self) -> bool {
        matches!(
            self.reason,
            "matched-allow" | "matched-deny" | "no-matching-rule" | "condition-not-met"
        )
    }
}

/// What reading produced: lines, records and the problems found.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ReadReport {
    /// Files (or streams) read.
    pub files: u64,
    /// Lines seen, blank ones included.
    pub lines: u64,
    /// Records handed on.
    pub records: u64,
    /// Lines skipped for a problem.
    pub skipped: u64,
    /// Problems found (a line may have one).
    pub issue_count: u64,
    /// The first [`KEPT_ISSUES`] problems.
    pub issues: Vec<LineIssue>,
}

impl ReadReport {
    fn push(&mut self, issue: LineIssue) {
        if !issue.kind.line_was_read() {
            self.skipped += 1;
        }
        self.issue_count += 1;
        if self.issues.len() < KEPT_ISSUES {
            self.issues.push(issue);
        }
    }

    /// One line: `N lines, N records, N skipped, N issues`.
    pub fn summary(&self) -> String {
        format!(
            "{} line{}, {} record{}, {} skipped, {} issue{}",
            self.lines,
            plural(self.lines),
            self.records,
            plural(self.records),
            self.skipped,
            self.issue_count,
            plural(self.issue_count)
        )
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Reads audit lines from one or more inputs, handing each good record to
/// a callback. Memory is bounded by the longest line and the number of
/// distinct callers, whatever the input's length.
///
/// # Examples
///
/// ```
/// use zt_authz::evidence::AuditReader;
///
/// let log = br#"{"format":1,"time":"2026-11-23T10:00:00.000Z","caller":"spiffe://example.org/orders","target":"ledger","method":"GET","path":"/entries/7","route":"/entries/{id}","decision":"allow","reason":"matched-allow","rule":"r1","policy_version":"v1"}
/// not json
/// "#;
/// let mut reader = AuditReader::new();
/// let mut paths = Vec::new();
/// reader.read("audit.jsonl", &log[..], |record| paths.push(record.path.to_owned()))?;
/// assert_eq!(paths, ["/entries/7"]);
/// assert_eq!(reader.report().issues[0].line, 2);
/// # Ok::<(), zt_authz::evidence::EvidenceError>(())
/// ```
pub struct AuditReader {
    buf: Vec<u8>,
    max_line: usize,
    callers: CallerTable,
    report: ReadReport,
}

impl fmt::Debug for AuditReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditReader")
            .field("max_line", &self.max_line)
            .field("callers", &self.callers.ids.len())
            .field("report", &self.report)
            .finish()
    }
}

impl Default for AuditReader {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Default)]
struct CallerTable {
    by_text: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    ids: Vec<SpiffeId>,
}

impl CallerTable {
    fn resolve(&mut self, text: &str) -> Result<(CallerKey, &SpiffeId), String> {
        let index = match self.by_text.get(text) {
            Some(&i) => i,
            None => {
                let id = SpiffeId::new(text).map_err(|e| e.to_string())?;
                let i = u32::try_from(self.ids.len())
                    .map_err(|_| "more than 4 billion distinct callers".to_owned())?;
                self.ids.push(id);
                self.by_text.insert(text.into(), i);
                i
            }
        };
        // `index` was found in or just added to `ids`.
        let id = self
            .ids
            .get(index as usize)
            .ok_or_else(|| "caller table out of step".to_owned())?;
        Ok((CallerKey(index), id))
    }
}

impl AuditReader {
    /// A reader with the default line limit ([`DEFAULT_MAX_LINE`]).
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            max_line: DEFAULT_MAX_LINE,
            callers: CallerTable::default(),
            report: ReadReport::default(),
        }
    }

    /// Sets the longest line read, in bytes (at least 1 KiB).
    #[must_use]
    pub fn max_line(mut self, bytes: usize) -> Self {
        self.max_line = bytes.max(1024);
        self
    }

    /// What has been read so far, over every input.
    pub fn report(&self) -> &ReadReport {
        &self.report
    }

    /// The SPIFFE ID of a caller key handed out by this reader.
    pub fn caller(&self, key: CallerKey) -> Option<&SpiffeId> {
        self.callers.ids.get(key.0 as usize)
    }

    /// Reads every line of `input`, calling `each` with every good record
    /// in order. Bad lines are counted in the [`report`](Self::report) with
    /// `source_name` and their line number, and skipped.
    ///
    /// # Errors
    ///
    /// [`EvidenceError::Io`] if `input` fails.
    pub fn read<R: Read>(
        &mut self,
        source_name: &str,
        mut input: R,
        mut each: impl FnMut(&Record<'_>),
    ) -> Result<(), EvidenceError> {
        let source: Arc<str> = Arc::from(source_name);
        let io_error = |error| EvidenceError::Io {
            source_name: Arc::clone(&source),
            error,
        };
        self.report.files += 1;
        let chunk = (self.max_line + 1).max(256 * 1024);
        if self.buf.len() < chunk {
            self.buf.resize(chunk, 0);
        }
        let Self {
            buf,
            max_line,
            callers,
            report,
        } = self;
        let max_line = *max_line;
        let mut line_no: u64 = 0;
        let (mut start, mut end) = (0usize, 0usize);
        let mut eof = false;
        // Set while skipping the rest of a line longer than the limit.
        let mut skipping = false;
        loop {
            while let Some(at) = buf
                .get(start..end)
                .and_then(|pending| memchr::memchr(b'\n', pending))
            {
                let line_end = start + at;
                line_no += 1;
                if skipping {
                    skipping = false;
                    report.lines += 1;
                    report.push(LineIssue {
                        source_name: Arc::clone(&source),
                        line: line_no,
                        kind: IssueKind::TooLong { limit: max_line },
                    });
                } else if line_end - start > max_line {
                    report.lines += 1;
                    report.push(LineIssue {
                        source_name: Arc::clone(&source),
                        line: line_no,
                        kind: IssueKind::TooLong { limit: max_line },
                    });
                } else if let Some(line) = buf.get(start..line_end) {
                    handle(line, &source, line_no, callers, report, &mut each);
                }
                start = line_end + 1;
            }
            if eof {
                // The last line, without a newline (or the rest of one
                // being skipped).
                if skipping || start < end {
                    line_no += 1;
                    if skipping || end - start > max_line {
                        report.lines += 1;
                        report.push(LineIssue {
                            source_name: Arc::clone(&source),
                            line: line_no,
                            kind: IssueKind::TooLong { limit: max_line },
                        });
                    } else if let Some(line) = buf.get(start..end) {
                        handle(line, &source, line_no, callers, report, &mut each);
                    }
                }
                return Ok(());
            }
            // Keep the unfinished line, at the front.
            if start > 0 {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            if end > max_line {
                // No newline within the limit: drop what is buffered and
                // skip to the next newline.
                skipping = true;
                end = 0;
            }
            let free = buf.get_mut(end..).unwrap_or_default();
            let n = loop {
                match input.read(free) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_error(e)),
                }
            };
            if n == 0 {
                eof = true;
            } else {
                end += n;
            }
        }
    }
}

/// Parses one line and hands it on, or records why not.
fn handle(
    line: &[u8],
    source: &Arc<str>,
    line_no: u64,
    callers: &mut CallerTable,
    report: &mut ReadReport,
    each: &mut impl FnMut(&Record<'_>),
) {
    report.lines += 1;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let issue = |kind| LineIssue {
        source_name: Arc::clone(source),
        line: line_no,
        kind,
    };
    // UTF-8 is checked once for the line, so the parser borrows each string
    // without checking it again.
    let Ok(text) = std::str::from_utf8(line) else {
        report.push(issue(IssueKind::Malformed("not UTF-8 text".to_owned())));
        return;
    };
    let mut raw = RawLine::default();
    let mut parser = serde_json::Deserializer::from_str(text);
    let parsed = serde::de::DeserializeSeed::deserialize(LineSeed(&mut raw), &mut parser)
        .and_then(|()| parser.end())
        .and_then(|()| raw.check_required());
    if let Err(e) = parsed {
        report.push(issue(IssueKind::Malformed(e.to_string())));
        return;
    }
    if raw.format > u64::from(AUDIT_FORMAT) {
        report.push(issue(IssueKind::NewerFormat(raw.format)));
        return;
    }
    let Some(decision) = raw.decision.as_deref().and_then(parse_verdict) else {
        report.push(issue(IssueKind::BadValue {
            field: "decision",
            reason: format!(
                "`{}` is not allow, deny or would-deny",
                super::clean(raw.decision.as_deref().unwrap_or(""), 40)
            ),
        }));
        return;
    };
    let caller = match raw.caller.as_deref() {
        None | Some("-") => None,
        Some(text) => match callers.resolve(text) {
            Ok(found) => Some(found),
            Err(reason) => {
                report.push(issue(IssueKind::BadValue {
                    field: "caller",
                    reason,
                }));
                return;
            }
        },
    };
    if let Some(name) = &raw.unknown {
        report.push(issue(IssueKind::UnknownField(name.to_string())));
    }
    fn dash(v: Option<&str>) -> Option<&str> {
        v.filter(|s| *s != "-")
    }
    let record = Record {
        source_name: source,
        line: line_no,
        time: raw.time.as_deref().unwrap_or(""),
        caller,
        target: raw.target.as_deref().unwrap_or(""),
        method: raw.method.as_deref().unwrap_or(""),
        path: raw.path.as_deref().unwrap_or(""),
        route: dash(raw.route.as_deref()),
        grpc_method: dash(raw.grpc_method.as_deref()),
        user: dash(raw.user.as_deref()),
        decision,
        reason: raw.reason.as_deref().unwrap_or(""),
        rule: dash(raw.rule.as_deref()),
        policy_version: raw.policy_version.as_deref().unwrap_or(""),
    };
    report.records += 1;
    each(&record);
}

fn parse_verdict(text: &str) -> Option<Verdict> {
    match text {
        "allow" => Some(Verdict::Allow),
        "deny" => Some(Verdict::Deny),
        "would-deny" => Some(Verdict::WouldDeny),
        _ => None,
    }
}

/// A string borrowed from the line when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The fields of an audit line this reader uses, filled in place.
#[derive(Default)]
struct RawLine<'a> {
    format: u64,
    time: Option<Cow<'a, str>>,
    caller: Option<Cow<'a, str>>,
    target: Option<Cow<'a, str>>,
    method: Option<Cow<'a, str>>,
    path: Option<Cow<'a, str>>,
    route: Option<Cow<'a, str>>,
    grpc_method: Option<Cow<'a, str>>,
    user: Option<Cow<'a, str>>,
    decision: Option<Cow<'a, str>>,
    reason: Option<Cow<'a, str>>,
    rule: Option<Cow<'a, str>>,
    policy_version: Option<Cow<'a, str>>,
    /// The first field this reader does not know.
    unknown: Option<Cow<'a, str>>,
}

impl RawLine<'_> {
    fn check_required(&self) -> Result<(), serde_json::Error> {
        for (value, name) in [
            (&self.target, "target"),
            (&self.method, "method"),
            (&self.path, "path"),
            (&self.decision, "decision"),
        ] {
            if value.is_none() {
                return Err(de::Error::missing_field(name));
            }
        }
        Ok(())
    }
}

/// The fields, told apart by length first: the key comparison runs for
/// every field of every line.
#[derive(Clone, Copy)]
enum Field {
    Format,
    Time,
    Caller,
    Target,
    Method,
    Path,
    Route,
    GrpcMethod,
    User,
    Decision,
    Reason,
    Rule,
    PolicyVersion,
    Ignored,
    Unknown,
}

fn field(key: &str) -> Field {
    let k = key.as_bytes();
    match (k.len(), k.first()) {
        (3, Some(b't')) if is(k, b"txn") => Field::Ignored,
        (4, Some(b't')) if is(k, b"time") => Field::Time,
        (4, Some(b't')) if is(k, b"task") => Field::Ignored,
        (4, Some(b'p')) if is(k, b"path") => Field::Path,
        (4, Some(b'u')) if is(k, b"user") => Field::User,
        (4, Some(b'r')) if is(k, b"rule") => Field::Rule,
        (5, Some(b'r')) if is(k, b"route") => Field::Route,
        (6, Some(b'f')) if is(k, b"format") => Field::Format,
        (6, Some(b'c')) if is(k, b"caller") => Field::Caller,
        (6, Some(b't')) if is(k, b"target") => Field::Target,
        (6, Some(b'm')) if is(k, b"method") => Field::Method,
        (6, Some(b'r')) if is(k, b"reason") => Field::Reason,
        (7, Some(b'e')) if is(k, b"eval_ns") => Field::Ignored,
        (8, Some(b'd')) if is(k, b"decision") => Field::Decision,
        (9, Some(b'a')) if is(k, b"act_chain") => Field::Ignored,
        (9, Some(b'c')) if is(k, b"condition") => Field::Ignored,
        (11, Some(b'g')) if is(k, b"grpc_method") => Field::GrpcMethod,
        (11, Some(b'a')) if is(k, b"audit_rules") => Field::Ignored,
        (11, Some(b't')) if is(k, b"tls_version") => Field::Ignored,
        (12, Some(b't')) if is(k, b"tls_kx_group") => Field::Ignored,
        (13, Some(b'c')) if is(k, b"caller_serial") => Field::Ignored,
        (14, Some(b'p')) if is(k, b"policy_version") => Field::PolicyVersion,
        (16, Some(b't')) if is(k, b"tls_cipher_suite") || is(k, b"tls_post_quantum") => {
            Field::Ignored
        }
        (16, Some(b'c')) if is(k, b"caller_not_after") => Field::Ignored,
        _ => Field::Unknown,
    }
}

/// `key == lit`, compared as a fixed-size array (word compares, no call).
fn is<const N: usize>(key: &[u8], lit: &[u8; N]) -> bool {
    <&[u8; N]>::try_from(key).is_ok_and(|k| k == lit)
}

/// Deserializes a line into a [`RawLine`] in place.
struct LineSeed<'r, 'de>(&'r mut RawLine<'de>);

impl<'de> serde::de::DeserializeSeed<'de> for LineSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

fn opt<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Cow<'de, str>>, A::Error> {
    Ok(map.next_value::<Option<Text<'de>>>()?.map(|t| t.0))
}

fn required<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Cow<'de, str>>, A::Error> {
    Ok(Some(map.next_value::<Text<'de>>()?.0))
}

impl<'de> Visitor<'de> for LineSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an audit record (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let raw = self.0;
        // Lines written before the field existed are format 1.
        raw.format = 1;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            match field(&key) {
                Field::Format => raw.format = map.next_value::<u64>()?,
                Field::Time => raw.time = opt(&mut map)?,
                Field::Caller => raw.caller = opt(&mut map)?,
                Field::Target => raw.target = required(&mut map)?,
                Field::Method => raw.method = required(&mut map)?,
                Field::Path => raw.path = required(&mut map)?,
                Field::Route => raw.route = opt(&mut map)?,
                Field::GrpcMethod => raw.grpc_method = opt(&mut map)?,
                Field::User => raw.user = opt(&mut map)?,
                Field::Decision => raw.decision = required(&mut map)?,
                Field::Reason => raw.reason = opt(&mut map)?,
                Field::Rule => raw.rule = opt(&mut map)?,
                Field::PolicyVersion => raw.policy_version = opt(&mut map)?,
                Field::Ignored => {
                    map.next_value::<IgnoredAny>()?;
                }
                Field::Unknown => {
                    map.next_value::<IgnoredAny>()?;
                    if raw.unknown.is_none() {
                        raw.unknown = Some(key);
                    }
                }
            }
        }
        Ok(())
    }
}
