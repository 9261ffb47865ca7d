//! Audit events packed into bytes on the request thread and formatted as
//! JSON lines elsewhere.
//!
//! A packed record holds the event's fields in declaration order, copied:
//! numbers little-endian; strings, byte strings and counts as a two-byte
//! length and then their bytes (a length of [`LONG`] or more as [`LONG`]
//! and eight bytes), an absent optional value as the length [`NONE`]. A
//! typical record is about 220 bytes, of which the lengths take about 40:
//! the fewer cache lines a record spans, the less it costs the request
//! thread to write into a queue buffer the writer thread has just read.
//! Packing is
//! a handful of copies; every cost of the text format (escapes, the time as
//! RFC 3339, hex, integer digits) is paid by [`format`], on whichever
//! thread reads the record. Records are made and read by the same build of
//! this module and never leave the process.
//!
//! A run of records in one buffer is framed: each record is preceded by its
//! length, so [`records`] finds every record without reading its fields.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{AuditEvent, JsonObject, Verdict};

/// The length standing for an absent optional value.
const NONE: u16 = u16::MAX;

/// The length announcing a long one, in the next eight bytes.
const LONG: u16 = u16::MAX - 1;

/// Appends `event` to `out` as one framed record.
pub(super) fn pack(event: &AuditEvent<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME]);
    Packer { out: &mut *out }.fields(event);
    let len = u64::try_from(out.len() - start - FRAME).unwrap_or(u64::MAX);
    if let Some(frame) = out
        .get_mut(start..)
        .and_then(|tail| tail.first_chunk_mut::<FRAME>())
    {
        *frame = len.to_le_bytes();
    }
}

/// Bytes of a record's frame (its length).
const FRAME: usize = 8;

/// The records of a buffer filled by [`pack`], in order. Stops at the
/// first frame that does not fit the buffer (none, for a buffer that only
/// [`pack`] wrote).
pub(super) fn records(mut buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (len, rest) = buf.split_first_chunk::<8>()?;
        let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
        let (record, rest) = rest.split_at_checked(len)?;
        buf = rest;
        Some(record)
    })
}

/// Appends the record (one item of [`records`]) to `out` as a JSON line:
/// the object [`AuditEvent`]'s `Serialize` implementation produces, with
/// the same fields in the same order and the same escapes, and a newline.
///
/// `None`, with `out` as it was, if the record is not one [`pack`] made.
pub(super) fn format(record: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let start = out.len();
    let written = write(&mut Reader { bytes: record }, out);
    if written.is_none() {
        out.truncate(start);
    }
    written
}

fn write(r: &mut Reader<'_>, out: &mut Vec<u8>) -> Option<()> {
    // `,"name":` as one literal per field.
    macro_rules! key {
        ($json:ident, $name:literal) => {
            $json.raw(concat!(",\"", $name, "\":"))
        };
    }
    out.reserve(LINE_ESTIMATE + r.bytes.len());
    let mut json = JsonObject { out };
    json.raw("{\"format\":").uint(u64::from(r.u32()?));
    key!(json, "time").time(r.time()?);
    match r.opt_str()? {
        Some(trust_domain) => key!(json, "caller").id(trust_domain, r.str()?),
        None => key!(json, "caller").null(),
    }
    match r.opt_bytes()? {
        Some(serial) => key!(json, "caller_serial").hex(serial),
        None => key!(json, "caller_serial").null(),
    }
    key!(json, "target").str(r.str()?);
    key!(json, "method").str(r.str()?);
    key!(json, "path").str(r.str()?);
    key!(json, "route").opt_str(r.opt_str()?);
    key!(json, "grpc_method").opt_str(r.opt_str()?);
    key!(json, "user").opt_str(r.opt_str()?);
    key!(json, "act_chain").raw("[");
    for i in 0..r.len()? {
        if i > 0 {
            json.raw(",");
        }
        json.id(r.str()?, r.str()?);
    }
    json.raw("]");
    key!(json, "decision").str(verdict_of(r.u8()?)?.as_str());
    key!(json, "reason").str(r.str()?);
    key!(json, "rule").opt_str(r.opt_str()?);
    key!(json, "policy_version").str(r.str()?);
    key!(json, "audit_rules").raw("[");
    for i in 0..r.len()? {
        if i > 0 {
            json.raw(",");
        }
        json.str(r.str()?);
    }
    json.raw("]");
    match r.u8()? {
        0 => key!(json, "eval_ns").null(),
        1 => key!(json, "eval_ns").uint(r.u64()?),
        _ => return None,
    }
    match r.u8()? {
        0 => key!(json, "caller_not_after").null(),
        1 => key!(json, "caller_not_after").time(r.time()?),
        _ => return None,
    }
    key!(json, "tls_version").opt_str(r.opt_str()?);
    key!(json, "tls_cipher_suite").opt_str(r.opt_str()?);
    key!(json, "tls_kx_group").opt_str(r.opt_str()?);
    match r.u8()? {
        0 => key!(json, "tls_post_quantum").null(),
        1 => key!(json, "tls_post_quantum").bool(false),
        2 => key!(json, "tls_post_quantum").bool(true),
        _ => return None,
    }
    key!(json, "task").opt_str(r.opt_str()?);
    key!(json, "txn").opt_str(r.opt_str()?);
    if let Some(condition) = r.opt_str()? {
        key!(json, "condition").str(condition);
    }
    json.raw("}\n");
    r.bytes.is_empty().then_some(())
}

/// Bytes of a typical line besides the record's own text, reserved up
/// front.
const LINE_ESTIMATE: usize = 320;

fn verdict_code(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Allow => 0,
        Verdict::Deny => 1,
        Verdict::WouldDeny => 2,
    }
}

fn verdict_of(code: u8) -> Option<Verdict> {
    match code {
        0 => Some(Verdict::Allow),
        1 => Some(Verdict::Deny),
        2 => Some(Verdict::WouldDeny),
        _ => None,
    }
}

struct Packer<'a> {
    out: &'a mut Vec<u8>,
}

impl Packer<'_> {
    /// The event's fields, in the order [`write`] reads them.
    fn fields(&mut self, event: &AuditEvent<'_>) {
        self.u32(event.format);
        self.time(event.time);
        match event.caller {
            Some(id) => {
                self.str(id.trust_domain_name());
                self.str(id.path());
            }
            None => self.none(),
        }
        self.opt_bytes(event.caller_serial);
        self.str(event.target);
        self.str(event.method);
        self.str(event.path);
        self.opt_str(event.route);
        self.opt_str(event.grpc_method);
        self.opt_str(event.user);
        self.len(event.act_chain.len());
        for id in event.act_chain {
            self.str(id.trust_domain_name());
            self.str(id.path());
        }
        self.u8(verdict_code(event.decision));
        self.str(event.reason);
        self.opt_str(event.rule);
        self.str(event.policy_version);
        self.len(event.audit_rules.len());
        for rule in event.audit_rules {
            self.str(rule);
        }
        match event.eval_ns {
            Some(ns) => {
                self.u8(1);
                self.u64(ns);
            }
            None => self.u8(0),
        }
        match event.caller_not_after {
            Some(t) => {
                self.u8(1);
                self.time(t);
            }
            None => self.u8(0),
        }
        self.opt_str(event.tls_version);
        self.opt_str(event.tls_cipher_suite);
        self.opt_str(event.tls_kx_group);
        self.u8(match event.tls_post_quantum {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        });
        self.opt_str(event.task);
        self.opt_str(event.txn);
        self.opt_str(event.condition);
    }

    fn u8(&mut self, value: u8) {
        self.out.push(value);
    }

    fn u32(&mut self, value: u32) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    fn u64(&mut self, value: u64) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    /// A length or count: two bytes below [`LONG`], else [`LONG`] and
    /// eight.
    fn len(&mut self, len: usize) {
        match u16::try_from(len) {
            Ok(short) if short < LONG => self.out.extend_from_slice(&short.to_le_bytes()),
            // A `usize` fits a `u64` on every target Rust supports.
            _ => {
                self.out.extend_from_slice(&LONG.to_le_bytes());
                self.u64(u64::try_from(len).unwrap_or(u64::MAX));
            }
        }
    }

    fn none(&mut self) {
        self.out.extend_from_slice(&NONE.to_le_bytes());
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.len(bytes.len());
        self.out.extend_from_slice(bytes);
    }

    fn str(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }

    fn opt_bytes(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            Some(bytes) => self.bytes(bytes),
            None => self.none(),
        }
    }

    fn opt_str(&mut self, text: Option<&str>) {
        self.opt_bytes(text.map(str::as_bytes));
    }

    /// As seconds and nanoseconds since the epoch; a time before it as the
    /// epoch, which is how the text format writes it.
    fn time(&mut self, t: SystemTime) {
        let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        self.u64(since_epoch.as_secs());
        self.u32(since_epoch.subsec_nanos());
    }
}

/// Reads a record's fields in the order [`pack`] wrote them; every read is
/// `None` past the record's end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    /// A length as [`Packer::len`] writes it, or the absent marker.
    fn present_len(&mut self) -> Option<Option<usize>> {
        match u16::from_le_bytes(self.take()?) {
            NONE => Some(None),
            LONG => usize::try_from(self.u64()?).ok().map(Some),
            short => Some(Some(usize::from(short))),
        }
    }

    fn len(&mut self) -> Option<usize> {
        self.present_len()?
    }

    fn opt_bytes(&mut self) -> Option<Option<&'a [u8]>> {
        let Some(len) = self.present_len()? else {
            return Some(None);
        };
        let (bytes, rest) = self.bytes.split_at_checked(len)?;
        self.bytes = rest;
        Some(Some(bytes))
    }

    fn opt_str(&mut self) -> Option<Option<&'a str>> {
        match self.opt_bytes()? {
            Some(bytes) => std::str::from_utf8(bytes).ok().map(Some),
            None => Some(None),
        }
    }

    fn str(&mut self) -> Option<&'a str> {
        self.opt_str()?
    }

    fn time(&mut self) -> Option<Duration> {
        let secs = self.u64()?;
        let nanos = self.u32()?;
        (nanos < 1_000_000_000).then(|| Duration::new(secs, nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::{format, pack, records};
    use crate::audit::{AUDIT_FORMAT, AuditEvent, Verdict};

    fn event(path: &str) -> AuditEvent<'_> {
        AuditEvent {
            format: AUDIT_FORMAT,
            time: std::time::UNIX_EPOCH,
            caller: None,
            caller_serial: None,
            target: "billing",
            method: "GET",
            path,
            route: None,
            grpc_method: None,
            user: None,
            act_chain: &[],
            decision: Verdict::Deny,
            reason: "unauthenticated",
            rule: None,
            policy_version: "v1",
            audit_rules: &[],
            eval_ns: Some(7),
            caller_not_after: None,
            tls_version: None,
            tls_cipher_suite: None,
            tls_kx_group: None,
            tls_post_quantum: None,
            task: None,
            txn: None,
            condition: None,
        }
    }

    #[test]
    fn a_run_of_records_reads_back_one_line_each() {
        reads_back(&["/a", "", "/c/\"d\""]);
    }

    #[test]
    fn short_and_long_lengths_read_back() {
        // Paths of n + 1 bytes: 65_533 is the longest two-byte length,
        // 65_534 (`LONG`) and 65_535 (`NONE`) take the long form.
        let paths: Vec<String> = [0, 255, 256, 65_532, 65_533, 65_534, 70_000]
            .iter()
            .map(|n| format!("/{}", "p".repeat(*n)))
            .collect();
        reads_back(&paths);
    }

    /// Records of events with these paths, packed into one buffer, format
    /// as the events' own JSON lines.
    fn reads_back(paths: &[impl AsRef<str>]) {
        let mut buf = Vec::new();
        for path in paths {
            pack(&event(path.as_ref()), &mut buf);
        }
        let mut lines = Vec::new();
        for record in records(&buf) {
            format(record, &mut lines).unwrap();
        }
        let expected: Vec<u8> = paths
            .iter()
            .flat_map(|p| event(p.as_ref()).to_json_line())
            .collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn a_cut_or_padded_record_formats_nothing() {
        let mut buf = Vec::new();
        pack(&event("/a"), &mut buf);
        let record = &buf[8..];
        let mut out = b"kept".to_vec();
        for cut in 0..record.len() {
            assert_eq!(format(&record[..cut], &mut out), None, "cut at {cut}");
            assert_eq!(out, b"kept");
        }
        let mut padded = record.to_vec();
        padded.push(0);
        assert_eq!(format(&padded, &mut out), None);
        assert_eq!(out, b"kept");
        // A frame longer than what follows it ends the run.
        let mut framed = buf.clone();
        framed.truncate(framed.len() - 1);
        assert_eq!(records(&framed).count(), 0);
    }
}
