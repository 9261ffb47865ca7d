//! Audit records of authorization decisions.
//!
//! Every decision an [`Authorizer`](crate::Authorizer) makes becomes
//! one [`AuditEvent`]. It is emitted as a `tracing` event with target
//! `zt::audit` (level `INFO` for allowed requests, `WARN` otherwise) and,
//! if one is configured, handed to an [`AuditSink`] such as
//! [`JsonLinesAuditWriter`].
//!
//! # Fields
//!
//! | field | value |
//! |---|---|
//! | `format` | the record format, [`AUDIT_FORMAT`] (readers skip lines of a newer one) |
//! | `time` | when the decision was made (RFC 3339, UTC) |
//! | `caller` | the caller's SPIFFE ID, or `-` with none |
//! | `caller_serial` | its leaf certificate serial, hex |
//! | `target` | the service deciding (its name or SPIFFE ID) |
//! | `method`, `path` | the HTTP method and path |
//! | `route` | the route template the router matched, if any |
//! | `grpc_method` | `/package.Service/Method` for gRPC calls |
//! | `user` | the end user of a verified user context, or `-` |
//! | `act_chain` | the services the request passed through for the user, oldest first (`,`-separated in `tracing`, a list in JSON), or `-` |
//! | `decision` | `allow`, `deny`, or `would-deny` (dry run) |
//! | `reason` | [`DecisionReason::as_str`](crate::policy::DecisionReason::as_str) |
//! | `rule` | the deciding rule id, if a rule decided |
//! | `policy_version` | the version of the policy that decided |
//! | `audit_rules` | audit-only rules that matched |
//! | `condition` | for `condition-not-met`: the failed condition of `rule`, and whether its value was absent or different (JSON lines: only then present) |
//! | `eval_ns` | time to decide, in nanoseconds, when the authorizer times decisions ([`AuthorizerBuilder::time_decisions`](crate::AuthorizerBuilder::time_decisions)); else null (`-` in `tracing`) |
//! | `task` | the task ID of a task-scoped credential the request carried ([`zt_core::task`]), or `-` |
//! | `txn` | the transaction ID of a verified Transaction Token the request carried, or `-` |
//!
//! The JSON-lines writer writes the same fields, one object per line.
//! Records never contain request bodies, headers or tokens: a user context
//! contributes its subject and actor chain, never the token.

use std::cell::Cell;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::Serialize;
use serde::ser::Serializer;

use zt_core::SpiffeId;

mod packed;

/// The format of the JSON-lines records this version writes: the `format`
/// field of every line. Lines without the field are format 1.
pub const AUDIT_FORMAT: u32 = 1;

/// The outcome of a decision as the audit log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Verdict {
    /// The request proceeds.
    Allow,
    /// The request is refused.
    Deny,
    /// The policy denies the request, but dry-run mode lets it proceed.
    WouldDeny,
}

impl Verdict {
    /// `allow`, `deny` or `would-deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::WouldDeny => "would-deny",
        }
    }

    /// `true` if the request proceeds ([`Allow`](Self::Allow) or
    /// [`WouldDeny`](Self::WouldDeny)).
    pub fn proceeds(self) -> bool {
        !matches!(self, Self::Deny)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One authorization decision, as audited. Borrowed from the request being
/// decided; a sink that keeps it must copy what it needs.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct AuditEvent<'a> {
    /// The record format, [`AUDIT_FORMAT`].
    pub format: u32,
    /// When the decision was made.
    #[serde(serialize_with = "ser_time")]
    pub time: SystemTime,
    /// The caller's SPIFFE ID; `None` for a request without one.
    #[serde(serialize_with = "ser_id")]
    pub caller: Option<&'a SpiffeId>,
    /// The caller's leaf certificate serial (big-endian bytes).
    #[serde(serialize_with = "ser_serial")]
    pub caller_serial: Option<&'a [u8]>,
    /// The service deciding.
    pub target: &'a str,
    /// The HTTP method.
    pub method: &'a str,
    /// The request path.
    pub path: &'a str,
    /// The route template the router matched.
    pub route: Option<&'a str>,
    /// The gRPC method, for gRPC calls.
    pub grpc_method: Option<&'a str>,
    /// The end user of the request's verified user context.
    pub user: Option<&'a str>,
    /// The services that acted for the user, oldest first.
    #[serde(serialize_with = "ser_ids")]
    pub act_chain: &'a [SpiffeId],
    /// The outcome.
    pub decision: Verdict,
    /// Why (a [`DecisionReason`](crate::policy::DecisionReason) name).
    pub reason: &'static str,
    /// The deciding rule.
    pub rule: Option<&'a str>,
    /// The version of the policy that decided.
    pub policy_version: &'a str,
    /// Audit-only rules that matched.
    #[serde(serialize_with = "ser_list")]
    pub audit_rules: &'a [Arc<str>],
    /// Time to decide, in nanoseconds, when the authorizer times its
    /// decisions
    /// ([`AuthorizerBuilder::time_decisions`](crate::AuthorizerBuilder::time_decisions)).
    pub eval_ns: Option<u64>,
    /// When the caller's leaf certificate expires, when known.
    #[serde(serialize_with = "ser_opt_time")]
    pub caller_not_after: Option<SystemTime>,
    /// The TLS version of the request's connection (`TLSv1.3`).
    pub tls_version: Option<&'a str>,
    /// The cipher suite of the request's connection.
    pub tls_cipher_suite: Option<&'a str>,
    /// The key exchange group of the request's connection
    /// (`X25519MLKEM768`, `x25519`, ...).
    pub tls_kx_group: Option<&'a str>,
    /// Whether that key exchange was post-quantum.
    pub tls_post_quantum: Option<bool>,
    /// The task ID of the task-scoped credential (user context with a
    /// `task_id`) the request carried.
    pub task: Option<&'a str>,
    /// The transaction ID (`txn`) of the request's verified Transaction
    /// Token.
    pub txn: Option<&'a str>,
    /// For the reason `condition-not-met`: the condition of the named rule
    /// that the request failed, and whether its value was absent or
    /// different (never the value). Left out of JSON lines when `None`, so
    /// records of other decisions are as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<&'a str>,
}

fn ser_opt_time<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ser_time(t, s),
        None => s.serialize_none(),
    }
}

/// RFC 3339 in UTC with milliseconds, always three digits
/// (`2026-12-02T16:50:12.345Z`), so records sort as text in time order;
/// years past 9999 are written as seconds since the epoch.
fn ser_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let since_epoch = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    match rfc3339_millis(since_epoch) {
        Some(text) => match std::str::from_utf8(&text) {
            Ok(text) => s.serialize_str(text),
            Err(_) => s.serialize_u64(since_epoch.as_secs()),
        },
        None => s.serialize_u64(since_epoch.as_secs()),
    }
}

/// `since_epoch` as `YYYY-MM-DDTHH:MM:SS.mmmZ`, without allocating; `None`
/// past year 9999. Days to a civil date by the proleptic Gregorian
/// calendar (H. Hinnant's `civil_from_days`).
fn rfc3339_millis(since_epoch: std::time::Duration) -> Option<[u8; 24]> {
    let secs = since_epoch.as_secs();
    let days = secs / 86_400;
    let of_day = secs % 86_400;
    // Shifted to start on 0000-03-01, in 400-year eras of 146,097 days.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    if year > 9_999 {
        return None;
    }
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, value: u64, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            // `v % 10` is a single digit.
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, of_day / 3_600, 2);
    put(14, of_day % 3_600 / 60, 2);
    put(17, of_day % 60, 2);
    put(20, u64::from(since_epoch.subsec_millis()), 3);
    Some(out)
}

thread_local! {
    /// The last second each thread formatted, and its text.
    static LAST_SECOND: Cell<Option<(u64, [u8; 24])>> = const { Cell::new(None) };
}

/// [`rfc3339_millis`], reusing the date and time of the thread's previous
/// call when it fell in the same second (records of one second differ
/// only in their milliseconds).
fn rfc3339_millis_cached(since_epoch: std::time::Duration) -> Option<[u8; 24]> {
    let secs = since_epoch.as_secs();
    let mut text = match LAST_SECOND.try_with(Cell::get).ok().flatten() {
        Some((last, text)) if last == secs => text,
        _ => {
            let text = rfc3339_millis(since_epoch)?;
            // Err only while the thread is being torn down.
            let _ = LAST_SECOND.try_with(|last| last.set(Some((secs, text))));
            text
        }
    };
    let millis = since_epoch.subsec_millis();
    for (at, value) in [
        (20, millis / 100),
        (21, millis / 10 % 10),
        (22, millis % 10),
    ] {
        // Each value is a single digit: `millis` < 1000.
        text[at] = b'0' + u8::try_from(value).unwrap_or(0);
    }
    Some(text)
}

fn ser_list<S: Serializer>(list: &&[Arc<str>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(list.iter().map(|item| &**item))
}

fn ser_ids<S: Serializer>(ids: &&[SpiffeId], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ids.iter().map(ToString::to_string))
}

/// Writes SPIFFE IDs comma-separated, `-` when empty.
struct Ids<'a>(&'a [SpiffeId]);

impl fmt::Display for Ids<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        for (i, id) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            fmt::Display::fmt(id, f)?;
        }
        Ok(())
    }
}

fn ser_id<S: Serializer>(id: &Option<&SpiffeId>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.collect_str(id),
        None => s.serialize_none(),
    }
}

fn ser_serial<S: Serializer>(serial: &Option<&[u8]>, s: S) -> Result<S::Ok, S::Error> {
    match serial {
        Some(serial) => s.collect_str(&Hex(serial)),
        None => s.serialize_none(),
    }
}

/// Writes `-` for a missing value.
struct OrDash<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Writes a list comma-separated, `-` when empty.
struct List<'a>(&'a [Arc<str>]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(item)?;
        }
        Ok(())
    }
}

struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        // Serials are at most 20 bytes (RFC 5280); longer input is written
        // in pieces.
        let mut buf = [0u8; 64];
        for chunk in self.0.chunks(32) {
            for (i, b) in chunk.iter().enumerate() {
                buf[2 * i] = DIGITS[usize::from(b >> 4)];
                buf[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
            }
            let text = std::str::from_utf8(&buf[..2 * chunk.len()]).map_err(|_| fmt::Error)?;
            f.write_str(text)?;
        }
        Ok(())
    }
}

impl AuditEvent<'_> {
    /// Emits the event through `tracing`, target `zt::audit`: `INFO` when
    /// the request is allowed, `WARN` otherwise.
    pub fn emit(&self) {
        macro_rules! event {
            ($level:expr) => {
                tracing::event!(
                    target: "zt::audit",
                    $level,
                    caller = %OrDash(self.caller),
                    caller_serial = %OrDash(self.caller_serial.map(Hex)),
                    target_service = self.target,
                    method = self.method,
                    path = self.path,
                    route = %OrDash(self.route),
                    grpc_method = %OrDash(self.grpc_method),
                    user = %OrDash(self.user),
                    act_chain = %Ids(self.act_chain),
                    decision = self.decision.as_str(),
                    reason = self.reason,
                    rule = %OrDash(self.rule),
                    policy_version = self.policy_version,
                    audit_rules = %List(self.audit_rules),
                    eval_ns = %OrDash(self.eval_ns),
                    tls_version = %OrDash(self.tls_version),
                    tls_cipher_suite = %OrDash(self.tls_cipher_suite),
                    tls_kx_group = %OrDash(self.tls_kx_group),
                    tls_post_quantum = %OrDash(self.tls_post_quantum),
                    task = %OrDash(self.task),
                    txn = %OrDash(self.txn),
                    condition = %OrDash(self.condition),
                    "authorization decision"
                )
            };
        }
        match self.decision {
            Verdict::Allow => event!(tracing::Level::INFO),
            Verdict::Deny | Verdict::WouldDeny => event!(tracing::Level::WARN),
        }
    }

    /// The event as one line of JSON, with a trailing newline.
    pub fn to_json_line(&self) -> Vec<u8> {
        let mut line = Vec::with_capacity(512);
        self.write_json_line(&mut line);
        line
    }

    /// Appends the event to `out` as one line of JSON with a trailing
    /// newline: the object its [`Serialize`] implementation produces, with
    /// the same fields in the same order and the same string escapes,
    /// written directly (no serializer state, no formatting machinery,
    /// nothing allocated but `out`'s growth).
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        // The thread's scratch buffer is taken out while in use, so a call
        // made from inside another gets a fresh one.
        let mut record = PACKED.try_with(Cell::take).unwrap_or_default();
        record.clear();
        packed::pack(self, &mut record);
        for one in packed::records(&record) {
            // A record `pack` just made always formats.
            let _ = packed::format(one, out);
        }
        if record.capacity() <= KEPT_LINE_CAPACITY {
            // Err only while the thread is being torn down: the buffer is
            // then freed here.
            let _ = PACKED.try_with(|kept| kept.set(record));
        }
    }
}

thread_local! {
    /// Each thread's buffer for the packed record of
    /// [`AuditEvent::write_json_line`].
    static PACKED: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Writes one JSON object into a byte buffer, piece by piece.
struct JsonObject<'a> {
    out: &'a mut Vec<u8>,
}

impl JsonObject<'_> {
    /// Writes `text` as it is: JSON syntax and field names of this module.
    fn raw(&mut self, text: &str) -> &mut Self {
        self.out.extend_from_slice(text.as_bytes());
        self
    }

    fn null(&mut self) {
        self.out.extend_from_slice(b"null");
    }

    fn bool(&mut self, value: bool) {
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn uint(&mut self, value: u64) {
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn str(&mut self, value: &str) {
        self.out.push(b'"');
        escape_into(self.out, value);
        self.out.push(b'"');
    }

    fn opt_str(&mut self, value: Option<&str>) {
        match value {
            Some(value) => self.str(value),
            None => self.null(),
        }
    }

    /// A SPIFFE ID from its trust domain name and path.
    fn id(&mut self, trust_domain: &str, path: &str) {
        self.out.extend_from_slice(b"\"spiffe://");
        escape_into(self.out, trust_domain);
        escape_into(self.out, path);
        self.out.push(b'"');
    }

    fn hex(&mut self, bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        self.out.reserve(bytes.len() * 2 + 2);
        self.out.push(b'"');
        for b in bytes {
            self.out.push(DIGITS[usize::from(b >> 4)]);
            self.out.push(DIGITS[usize::from(b & 0x0f)]);
        }
        self.out.push(b'"');
    }

    /// A time since the epoch as [`ser_time`] writes it: RFC 3339 text,
    /// or seconds past year 9999.
    fn time(&mut self, since_epoch: std::time::Duration) {
        match rfc3339_millis_cached(since_epoch) {
            Some(text) => {
                self.out.push(b'"');
                self.out.extend_from_slice(&text);
                self.out.push(b'"');
            }
            None => self.uint(since_epoch.as_secs()),
        }
    }
}

/// Whether any of the eight bytes of `word` is a control character, `"`
/// or `\\` (exact: the bit tricks find "a byte below 0x20" and "a zero
/// byte" without false positives or misses when only existence is asked).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    let quote = has_zero(word ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
    below_space | quote | backslash != 0
}

/// Appends `value` with JSON's string escapes, the ones `serde_json`
/// writes: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, and `\u00XX` (lowercase
/// hex) for the other control characters; everything else, non-ASCII
/// included, is copied as it is.
fn escape_into(out: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = value.as_bytes();
    if !any_needs_escape(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = ESCAPES[usize::from(b)];
        if short == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(b"00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0f)]);
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// For each byte, the letter of its escape (`u` for `\u00XX`), or 0 if it
/// is written as it is.
const ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x0c] = b'f';
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Whether any byte of `bytes` needs an escape, eight at a time (the last
/// few padded with spaces, which need none).
fn any_needs_escape(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if needs_escape(u64::from_le_bytes(word)) {
            return true;
        }
    }
    let tail = chunks.remainder();
    if tail.is_empty() {
        return false;
    }
    let mut word = [b' '; 8];
    // `tail` is shorter than 8 bytes: the remainder of `chunks_exact(8)`.
    word[..tail.len()].copy_from_slice(tail);
    needs_escape(u64::from_le_bytes(word))
}

/// Somewhere audit events go besides `tracing`. Called on the request path,
/// so implementations must not block.
pub trait AuditSink: Send + Sync {
    /// Records one event.
    fn record(&self, event: &AuditEvent<'_>);
}

/// Default queue length of a [`JsonLinesAuditWriter`].
pub const DEFAULT_AUDIT_QUEUE: usize = 8192;

/// Records waiting for the writer thread, and callers of
/// [`JsonLinesAuditWriter::flush`] waiting for them to be written.
#[derive(Default)]
struct Queue {
    /// The queued records, packed end to end. The writer thread swaps it
    /// for its own emptied buffer, so neither side allocates once both have
    /// grown to a batch's size, and nothing is freed by another thread.
    buf: Vec<u8>,
    /// How many records `buf` holds.
    lines: usize,
    flushes: Vec<SyncSender<()>>,
    /// Whether the writer was already woken early for this batch.
    woken: bool,
    /// Set when the writer is dropped: the thread writes what is left and
    /// ends.
    closed: bool,
}

/// How long the writer thread sleeps between batches: the most a line
/// waits before it is written (unless the queue fills to half first, or
/// [`JsonLinesAuditWriter::flush`] is called).
pub const AUDIT_BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

/// Counters of a [`JsonLinesAuditWriter`].
#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// An [`AuditSink`] writing one JSON object per line, from a background
/// thread.
///
/// The request path only copies the event's fields into a bounded queue
/// (a packed record, no text); it never allocates once warm, never waits
/// for I/O and makes no system call. The writer thread formats the records
/// as JSON lines and writes them: it is not woken per record but wakes
/// every [`AUDIT_BATCH_INTERVAL`] (or when the queue is half full) and
/// writes the batch with one call. When the queue is full the line
/// is dropped and counted ([`dropped`](Self::dropped)); the writer thread
/// reports drops with a `WARN` event (target `zt::audit`) as soon as it
/// catches up. Write errors are counted too ([`failed`](Self::failed)).
pub struct JsonLinesAuditWriter {
    queue: Arc<Mutex<Queue>>,
    capacity: usize,
    counters: Arc<Counters>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    writer: std::thread::Thread,
}

impl fmt::Debug for JsonLinesAuditWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLinesAuditWriter")
            .field("written", &self.written())
            .field("dropped", &self.dropped())
            .field("failed", &self.failed())
            .finish()
    }
}

impl JsonLinesAuditWriter {
    /// A writer to `out` with a queue of `capacity` lines (at least 1).
    ///
    /// # Errors
    ///
    /// If the writer thread cannot be started.
    pub fn new<W: Write + Send + 'static>(out: W, capacity: usize) -> std::io::Result<Self> {
        let queue = Arc::new(Mutex::new(Queue::default()));
        let counters = Arc::new(Counters::default());
        let (thread_queue, thread_counters) = (Arc::clone(&queue), Arc::clone(&counters));
        let thread = std::thread::Builder::new()
            .name("zt-audit-writer".into())
            .spawn(move || write_lines(out, &thread_queue, &thread_counters))?;
        Ok(Self {
            queue,
            capacity: capacity.max(1),
            counters,
            writer: thread.thread().clone(),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue is consistent after every statement that changes it.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A writer appending to the file at `path` (created if missing), with
    /// a queue of [`DEFAULT_AUDIT_QUEUE`] lines.
    ///
    /// # Errors
    ///
    /// If the file cannot be opened or the thread started.
    pub fn append_to_file(path: impl AsRef<std::path::Path>) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Self::new(std::io::BufWriter::new(file), DEFAULT_AUDIT_QUEUE)
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Lines dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Lines lost to write errors.
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// Waits until every line queued before this call is written and the
    /// output flushed. Blocks: not for the request path.
    pub fn flush(&self) {
        let (done, wait) = mpsc::sync_channel(1);
        self.lock().flushes.push(done);
        self.writer.unpark();
        // Err only if the writer thread is gone (it panicked in `out`).
        let _ = wait.recv();
    }
}

impl Drop for JsonLinesAuditWriter {
    fn drop(&mut self) {
        self.flush();
        self.lock().closed = true;
        self.writer.unpark();
        // The thread ends once it sees `closed`; it is not joined, so
        // dropping never blocks on a stuck output.
        drop(
            self.thread
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}

impl AuditSink for JsonLinesAuditWriter {
    fn record(&self, event: &AuditEvent<'_>) {
        // The record is packed (copied) into the queue; the writer thread
        // formats it.
        let mut queue = self.lock();
        let accepted = queue.lines < self.capacity && !queue.closed;
        let mut wake = false;
        if accepted {
            packed::pack(event, &mut queue.buf);
            queue.lines += 1;
            wake = !queue.woken && queue.lines * 2 >= self.capacity;
            queue.woken |= wake;
        }
        drop(queue);
        if !accepted {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            zt_core::metrics::audit_dropped("json_lines");
        } else if wake {
            self.writer.unpark();
        }
    }
}

/// A thread keeps its scratch buffer for packed records between calls up
/// to this capacity (a record with an unusually long path does not pin a
/// large buffer).
const KEPT_LINE_CAPACITY: usize = 16 * 1024;

/// The writer thread keeps its batch buffer between batches up to this
/// capacity; a burst's larger buffer is released once written.
const KEPT_BATCH_CAPACITY: usize = 4 * 1024 * 1024;

fn write_lines<W: Write>(mut out: W, queue: &Mutex<Queue>, counters: &Counters) {
    let mut reported_drops = 0;
    let mut batch: Vec<u8> = Vec::new();
    let mut text: Vec<u8> = Vec::new();
    loop {
        let (lines, flushes, closed) = {
            let mut q = queue.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut q.buf, &mut batch);
            q.woken = false;
            (
                std::mem::take(&mut q.lines),
                std::mem::take(&mut q.flushes),
                q.closed,
            )
        };
        if lines > 0 {
            let mut formatted = 0;
            for record in packed::records(&batch) {
                if packed::format(record, &mut text).is_some() {
                    formatted += 1;
                }
            }
            // One write for the whole batch; a failed write loses (and
            // counts) the batch's lines, as does a record that would not
            // format (none: every record is one `pack` made).
            let written = if out.write_all(&text).is_ok() {
                formatted
            } else {
                0
            };
            counters
                .written
                .fetch_add(to_u64(written), Ordering::Relaxed);
            counters
                .failed
                .fetch_add(to_u64(lines - written), Ordering::Relaxed);
        }
        for buf in [&mut batch, &mut text] {
            buf.clear();
            if buf.capacity() > KEPT_BATCH_CAPACITY {
                *buf = Vec::new();
            }
        }
        // Flushed after every batch, so a buffered output never holds
        // lines while idle.
        if out.flush().is_err() {
            counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        for done in flushes {
            let _ = done.send(());
        }
        let dropped = counters.dropped.load(Ordering::Relaxed);
        if dropped != reported_drops {
            tracing::warn!(
                target: "zt::audit",
                dropped_total = dropped,
                dropped_since_last_report = dropped - reported_drops,
                "audit queue was full; JSON-lines records were dropped"
            );
            reported_drops = dropped;
        }
        if closed {
            return;
        }
        std::thread::park_timeout(AUDIT_BATCH_INTERVAL);
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use zt_core::SpiffeId;

    use super::{AUDIT_FORMAT, AuditEvent, Hex, Verdict, rfc3339_millis};

    fn text(since_epoch: Duration) -> String {
        String::from_utf8(rfc3339_millis(since_epoch).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn formats_as_rfc3339_with_three_digit_milliseconds() {
        assert_eq!(text(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            text(Duration::from_millis(1_764_694_212_345)),
            "2025-12-02T16:50:12.345Z"
        );
        // A leap day, and the last millisecond of a century year.
        assert_eq!(
            text(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            text(Duration::from_millis(4_107_542_399_999)),
            "2100-02-28T23:59:59.999Z"
        );
        assert!(rfc3339_millis(Duration::from_secs(253_402_300_800)).is_none());
    }

    #[test]
    fn agrees_with_the_time_crate_on_a_range_of_instants() {
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        let mut t = Duration::from_millis(1);
        while t < Duration::from_secs(253_402_300_000) {
            let expected = time::OffsetDateTime::from(UNIX_EPOCH + t)
                .format(&format)
                .unwrap();
            assert_eq!(text(t), expected, "{t:?}");
            t = t * 3 + Duration::from_millis(7_919);
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(
            text(now),
            time::OffsetDateTime::from(UNIX_EPOCH + now)
                .format(&format)
                .unwrap()
        );
    }

    /// Every string a record can carry, including each control character,
    /// quotes, backslashes, DEL and non-ASCII text.
    fn awkward_strings() -> Vec<String> {
        let mut all: String = (0u8..0x20).map(char::from).collect();
        all.push_str("\"\\/\u{7f}é→𝄞");
        vec![
            String::new(),
            "plain".to_owned(),
            all,
            "\"quoted\" and \\back\\slashed".to_owned(),
            "line\nbreak\ttab\r\u{8}\u{c}".to_owned(),
            "/invoices/7?q=a&b=\u{1}".to_owned(),
        ]
    }

    #[test]
    fn written_lines_are_byte_for_byte_what_serde_json_writes() {
        let caller = SpiffeId::new("spiffe://example.org/ns/prod/sa/billing").unwrap();
        let chain = vec![
            SpiffeId::new("spiffe://example.org/gateway").unwrap(),
            SpiffeId::new("spiffe://other.example/a/b.c-d_e").unwrap(),
        ];
        let rules: Vec<Arc<str>> = vec![Arc::from("watch \"all\""), Arc::from("r\u{1}")];
        let times = [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::from_millis(1_764_694_212_345),
            // Past year 9999: written as seconds.
            UNIX_EPOCH + Duration::from_secs(253_402_300_800),
            // Before the epoch: written as the epoch.
            UNIX_EPOCH - Duration::from_secs(5),
        ];
        let mut checked = 0;
        for (i, text) in awkward_strings().iter().enumerate() {
            for (j, time) in times.iter().enumerate() {
                let full = (i + j) % 2 == 0;
                let event = AuditEvent {
                    format: AUDIT_FORMAT,
                    time: *time,
                    caller: full.then_some(&caller),
                    caller_serial: full.then_some(&[0x00, 0x8f, 0xab][..]),
                    target: text,
                    method: "GET",
                    path: text,
                    route: full.then_some(text.as_str()),
                    grpc_method: (!full).then_some(text.as_str()),
                    user: full.then_some(text.as_str()),
                    act_chain: if full { &chain } else { &[] },
                    decision: [Verdict::Allow, Verdict::Deny, Verdict::WouldDeny][j % 3],
                    reason: "matched-allow",
                    rule: full.then_some(text.as_str()),
                    policy_version: text,
                    audit_rules: if full { &rules } else { &[] },
                    eval_ns: [Some(0), None, Some(4_294_967_296), Some(u64::MAX)][j],
                    caller_not_after: full.then_some(*time),
                    tls_version: full.then_some("TLSv1.3"),
                    tls_cipher_suite: full.then_some(text.as_str()),
                    tls_kx_group: (!full).then_some(text.as_str()),
                    tls_post_quantum: [Some(true), Some(false), None, Some(true)][j],
                    task: full.then_some(text.as_str()),
                    txn: (!full).then_some(text.as_str()),
                    condition: (j % 2 == 1).then_some(text.as_str()),
                };
                let mut expected = serde_json::to_vec(&event).unwrap();
                expected.push(b'\n');
                let written = event.to_json_line();
                assert_eq!(
                    String::from_utf8_lossy(&written),
                    String::from_utf8_lossy(&expected)
                );
                assert_eq!(written, expected);
                let mut appended = b"previous line\n".to_vec();
                event.write_json_line(&mut appended);
                assert_eq!(&appended[14..], &expected[..]);
                checked += 1;
            }
        }
        assert_eq!(checked, 24);
    }

    #[test]
    fn the_word_scan_flags_exactly_the_bytes_that_need_an_escape() {
        let needs = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        let fillers = [b'a', 0xff, 0x20, 0x80, 0x7f, b'!', b'#', b'['];
        for filler in fillers {
            for lane in 0..8 {
                for b in 0..=255u8 {
                    let mut word = [filler; 8];
                    word[lane] = b;
                    assert_eq!(
                        super::needs_escape(u64::from_le_bytes(word)),
                        needs(b),
                        "byte {b:#04x} in lane {lane} among {filler:#04x}"
                    );
                }
            }
        }
        // Every pair of bytes side by side.
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let word = [b'x', a, b, b'x', b'x', b'x', b'x', b'x'];
                assert_eq!(
                    super::needs_escape(u64::from_le_bytes(word)),
                    needs(a) || needs(b)
                );
            }
        }
    }

    #[test]
    fn the_cached_second_gives_the_same_text_as_formatting_afresh() {
        let mut t = Duration::from_millis(1_764_694_211_990);
        for _ in 0..2_500 {
            assert_eq!(super::rfc3339_millis_cached(t), rfc3339_millis(t), "{t:?}");
            t += Duration::from_micros(1_337);
        }
        // Back in time, and past the last year written as text.
        let earlier = Duration::from_millis(951_782_400_123);
        assert_eq!(
            super::rfc3339_millis_cached(earlier),
            rfc3339_millis(earlier)
        );
        assert!(super::rfc3339_millis_cached(Duration::from_secs(253_402_300_800)).is_none());
    }

    #[test]
    fn hex_is_lowercase_and_whole() {
        assert_eq!(Hex(&[0x00, 0x8f, 0xab]).to_string(), "008fab");
        let long: Vec<u8> = (0..=40).collect();
        assert_eq!(Hex(&long).to_string(), hex::encode(&long));
    }
}
