//! The cost of zt's metrics on the hottest path that records one: an
//! authorization decision (`Authorizer::authorize`: revocation check,
//! policy decision, audit event, and the `zt_authz_decisions_total`
//! increment).
//!
//! ```text
//! cargo bench -p zt-benches --bench metrics
//! ```
//!
//! Two authorizers over the same 100-rule policy decide the same allowed
//! request: one built and first used with no recorder (the facade's no-op),
//! one with a Prometheus recorder (`metrics-exporter-prometheus`, the one
//! `examples/metrics.rs` serves) installed for the bench's thread with
//! `metrics::with_local_recorder`. Criterion times each; the overhead figure
//! comes from a paired run afterwards: batches of decisions by the two
//! authorizers back to back, the median of their time ratios, which a
//! loaded machine disturbs less than two separate medians.
//!
//! The last line prints `metrics overhead = P%`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench code"
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::Criterion;
use metrics_exporter_prometheus::PrometheusBuilder;
use zt_authz::Authorizer;
use zt_authz::audit::Verdict;
use zt_authz::policy::{Policy, Request};
use zt_benches::criterion_median_ns as median_ns;
use zt_core::SpiffeId;
use zt_core::revocation::Revocations;

const RULES: usize = 100;
const ROUNDS: usize = 301;
const BATCH: usize = 2_000;

fn policy() -> Policy {
    let mut text = String::from("version = \"bench-1\"\n");
    for i in 0..RULES {
        text.push_str(&format!(
            "[[rule]]\nid = \"r{i}\"\neffect = \"allow\"\ncallers = [\"spiffe://example.org/svc-{i}\"]\nhttp = [{{ method = \"GET\", path = \"/api/svc-{i}/items/{{id}}\" }}]\n"
        ));
    }
    Policy::from_toml_str(&text, "bench.toml").unwrap()
}

fn authorizer() -> Authorizer {
    Authorizer::builder(policy())
        .target("billing")
        .revocations(Revocations::new())
        .build()
}

/// The median, over [`ROUNDS`] rounds, of the time of a batch of decisions
/// by `with` over the time of the same batch by `without`, in percent above
/// 1.
fn paired_overhead(without: &Authorizer, with: &Authorizer, request: &Request<'_>) -> f64 {
    let batch = |authz: &Authorizer| {
        let started = Instant::now();
        for _ in 0..BATCH {
            black_box(authz.authorize(black_box(request), Some(&[0x2a])));
        }
        started.elapsed()
    };
    let mut ratios: Vec<f64> = (0..ROUNDS)
        .map(|round| {
            // Alternate which goes first, so neither always runs on a warm
            // or a cold cache.
            let (a, b) = if round % 2 == 0 {
                let a = batch(without);
                (a, batch(with))
            } else {
                let b = batch(with);
                (batch(without), b)
            };
            b.as_secs_f64() / a.as_secs_f64()
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    (ratios[ROUNDS / 2] - 1.0) * 100.0
}

fn main() {
    let criterion_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion");
    let mut criterion = Criterion::default()
        .output_directory(&criterion_dir)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();

    let caller = SpiffeId::new("spiffe://example.org/svc-50").unwrap();
    let request = Request::new(Some(&caller), "GET", "/api/svc-50/items/7");

    // No recorder: every metric call is the facade's no-op.
    let without = authorizer();
    assert_eq!(
        without.authorize(&request, Some(&[0x2a])).verdict,
        Verdict::Allow
    );

    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let with = authorizer();
    let overhead = metrics::with_local_recorder(&recorder, || {
        assert_eq!(
            with.authorize(&request, Some(&[0x2a])).verdict,
            Verdict::Allow
        );
        let mut group = criterion.benchmark_group("metrics");
        group.bench_function("decision-without-recorder", |b| {
            b.iter(|| without.authorize(black_box(&request), Some(&[0x2a])))
        });
        group.bench_function("decision-with-prometheus", |b| {
            b.iter(|| with.authorize(black_box(&request), Some(&[0x2a])))
        });
        group.finish();
        paired_overhead(&without, &with, &request)
    });
    criterion.final_summary();

    // The recorder saw the decisions: the figure is not that of a no-op.
    let rendered = handle.render();
    let line = rendered
        .lines()
        .find(|l| l.starts_with("zt_authz_decisions_total{"))
        .expect("decisions recorded");
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= (ROUNDS * BATCH) as f64, "{line}");

    let none = median_ns(&criterion_dir, "metrics", "decision-without-recorder");
    let prometheus = median_ns(&criterion_dir, "metrics", "decision-with-prometheus");
    println!(
        "authorization decision (criterion medians): {none:.1} ns without a recorder, {prometheus:.1} ns with Prometheus ({:+.1}%)",
        (prometheus - none) / none * 100.0
    );
    println!("recorded: {line}");
    println!("metrics overhead = {overhead:.1}%");
}
