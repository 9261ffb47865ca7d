//! Policy from evidence at scale: `zt audit replay`, `suggest` and `drift`
//! streaming 10 million generated audit lines.
//!
//! ```text
//! cargo bench --bench evidence
//! ```
//!
//! The lines are those `JsonLinesAuditWriter` writes (every field, about
//! 420 bytes each): 200 callers of 5 trust-domain namespaces, 40 routes with
//! varying ids, allow, deny and would-deny decisions, rising timestamps. A
//! pool of 50,000 distinct lines is generated once and read over and over
//! through a `Read` that hands it out in 64 KiB pieces, so the input is a
//! stream (nothing holds 10 million lines) and generating it costs a copy.
//!
//! Criterion times replay of 1 million lines under a 200-rule candidate
//! policy. Then one pass of 10 million lines each for replay, suggest and
//! drift is timed on this thread, and the process's peak resident memory
//! (`VmHWM`) is read after each: it stays flat, because the tools keep only
//! one buffer and what is distinct (callers, routes, change groups).
//!
//! Rates are lines per second of CPU time of the one thread doing the work
//! (`/proc/thread-self/schedstat`), so they hold on a shared machine; the
//! wall time is printed beside them. The last lines print
//! `audit replay lines/s = N`, the same for suggest and drift, and
//! `audit evidence peak RSS = N MiB`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench code"
)]

use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use zt_authz::evidence::{AuditReader, DriftDetector, Replayer, SuggestOptions, Suggester};
use zt_authz::policy::Policy;

const POOL: usize = 50_000;
const CALLERS: usize = 200;
const ROUTES: usize = 40;
const PASS_LINES: u64 = 10_000_000;

fn caller(i: usize) -> String {
    format!("spiffe://example.org/ns/team-{}/sa/svc-{i}", i % 5)
}

/// The pool of distinct lines, newline-terminated.
fn pool() -> Vec<u8> {
    let mut out = String::with_capacity(POOL * 440);
    for n in 0..POOL {
        let c = (n * 7919) % CALLERS;
        // Each caller uses 4 of the routes; one round in 50 strays.
        // Strays (a caller on a route not its own) come after the first
        // tenth of the pool, the drift baseline.
        let r = if (n / CALLERS) % 50 == 30 {
            (c + 17) % ROUTES
        } else {
            (c + n % 4) % ROUTES
        };
        // Decisions vary by round through the callers, so every caller has
        // some of each.
        let (decision, reason, rule) = match (n / CALLERS) % 50 {
            0 => ("deny", "no-matching-rule", "null".to_owned()),
            1 => ("would-deny", "no-matching-rule", "null".to_owned()),
            _ => ("allow", "matched-allow", format!("\"svc-{c}\"")),
        };
        let secs = n / 20;
        let _ = writeln!(
            out,
            r#"{{"format":1,"time":"2026-11-23T{:02}:{:02}:{:02}.{:03}Z","caller":"{}","caller_serial":"5f2c0e8a91d34b7790aa13c2e4f6d8b1","target":"ledger","method":"GET","path":"/r{r}/items/{}","route":"/r{r}/items/{{id}}","grpc_method":null,"user":null,"act_chain":[],"decision":"{decision}","reason":"{reason}","rule":{rule},"policy_version":"bench-1","audit_rules":[],"eval_ns":{}}}"#,
            10 + secs / 3600,
            (secs / 60) % 60,
            secs % 60,
            n % 1000,
            caller(c),
            n % 9973,
            150 + n % 97
        );
    }
    out.into_bytes()
}

/// The 200-rule candidate: each caller its own 4 routes.
fn candidate() -> Policy {
    let mut text = String::from("version = \"bench-1\"\n");
    for c in 0..CALLERS {
        let _ = write!(
            text,
            "\n[[rule]]\nid = \"svc-{c}\"\neffect = \"allow\"\ncallers = [\"{}\"]\nhttp = [",
            caller(c)
        );
        for k in 0..4 {
            let _ = write!(
                text,
                "{}{{ method = \"GET\", path = \"/r{}/items/{{id}}\" }}",
                if k == 0 { "" } else { ", " },
                (c + k) % ROUTES
            );
        }
        text.push_str("]\n");
    }
    Policy::from_toml_str(&text, "candidate.toml").unwrap()
}

/// `lines` lines from the pool, handed out as a stream.
struct Stream<'a> {
    pool: &'a [u8],
    at: usize,
    left: u64,
}

impl<'a> Stream<'a> {
    fn new(pool: &'a [u8], lines: u64) -> Self {
        assert_eq!(lines % POOL as u64, 0);
        Self {
            pool,
            at: 0,
            left: lines / POOL as u64,
        }
    }
}

impl Read for Stream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.pool.len() {
            if self.left == 0 {
                return Ok(0);
            }
            self.at = 0;
        }
        if self.at == 0 {
            self.left -= 1;
        }
        let n = buf.len().min(64 * 1024).min(self.pool.len() - self.at);
        buf[..n].copy_from_slice(&self.pool[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn replay(pool: &[u8], policy: &Policy, lines: u64) -> u64 {
    let mut replayer = Replayer::new(policy.clone());
    let mut reader = AuditReader::new();
    reader
        .read("bench", Stream::new(pool, lines), |r| replayer.observe(r))
        .unwrap();
    assert_eq!(reader.report().records, lines);
    let report = replayer.finish();
    report.newly_denied + report.unchanged + report.newly_allowed
}

fn suggest(pool: &[u8], lines: u64) -> usize {
    let mut suggester = Suggester::new(SuggestOptions::default());
    let mut reader = AuditReader::new();
    reader
        .read("bench", Stream::new(pool, lines), |r| suggester.observe(r))
        .unwrap();
    suggester.finish().unwrap().rules
}

fn drift(pool: &[u8], lines: u64) -> usize {
    let mut detector = DriftDetector::new();
    let mut reader = AuditReader::new();
    // The baseline: the first tenth of the pool.
    let tenth = &pool[..pool.len() / 10];
    reader
        .read("baseline", tenth, |r| detector.baseline(r))
        .unwrap();
    reader
        .read("current", Stream::new(pool, lines), |r| detector.current(r))
        .unwrap();
    detector.finish().findings.len()
}

/// Peak resident memory of this process so far, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU time this thread has run, from `/proc/thread-self/schedstat`
/// (nanoseconds on the CPU).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e9)
}

/// Runs `f` over `lines` lines; returns its result and the lines per second
/// of CPU time on this thread (one core, whatever else the machine runs).
fn timed<T>(what: &str, lines: u64, f: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let cpu = cpu_seconds();
    let out = f();
    let cpu = cpu_seconds() - cpu;
    let wall = started.elapsed().as_secs_f64();
    println!(
        "{what}: {lines} lines in {cpu:.2} s of CPU ({wall:.2} s wall): {:.0} lines/s per core, \
         peak RSS {:.1} MiB",
        lines as f64 / cpu,
        peak_rss_mib()
    );
    (out, lines as f64 / cpu)
}

fn main() {
    let pool = pool();
    let policy = candidate();
    println!(
        "pool: {POOL} distinct lines, {:.0} bytes per line; candidate: {} rules; RSS before the passes {:.1} MiB",
        pool.len() as f64 / POOL as f64,
        policy.rules().len(),
        peak_rss_mib()
    );

    let criterion_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion");
    let mut criterion = Criterion::default()
        .output_directory(&criterion_dir)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    let mut group = criterion.benchmark_group("evidence");
    group.throughput(Throughput::Elements(1_000_000));
    group.bench_function("replay 1M lines", |b| {
        b.iter(|| replay(&pool, &policy, 1_000_000));
    });
    group.finish();
    criterion.final_summary();

    let lines = std::env::var("ZT_BENCH_AUDIT_LINES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(PASS_LINES, |n| {
            n.max(POOL as u64) / POOL as u64 * POOL as u64
        });
    let (replayed, replay_rate) = timed("replay", lines, || replay(&pool, &policy, lines));
    assert_eq!(replayed, lines);
    let (rules, suggest_rate) = timed("suggest", lines, || suggest(&pool, lines));
    assert_eq!(rules, CALLERS);
    let (findings, drift_rate) = timed("drift", lines, || drift(&pool, lines));
    assert!(findings > 0);
    println!("audit replay lines/s = {replay_rate:.0}");
    println!("audit suggest lines/s = {suggest_rate:.0}");
    println!("audit drift lines/s = {drift_rate:.0}");
    println!("audit evidence peak RSS = {:.1} MiB", peak_rss_mib());
}
